"""Differential tests: ``BetaVAELoss`` against nidl 0.0.2's own class.

nidl's ``nidl/losses/beta_vae.py`` is loaded from the installed files (see
``_originals.py``); both classes get the same ``x``, ``p`` and ``q`` (the
same leaf tensors, cloned), and the returned dicts, their values, the
gradients for every input, and the exceptions are compared.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.distributions import Bernoulli, Laplace, Normal, Poisson

from pyautoencoder_fast import functional
from pyautoencoder_fast.loss import BetaVAELoss

from _originals import nidl_beta_vae

NidlBetaVAELoss = nidl_beta_vae().BetaVAELoss

DISTS = ["normal", "laplace", "bernoulli"]
DTYPES = [torch.float32, torch.float64]
TOL = {torch.float32: dict(rtol=2e-5, atol=1e-5), torch.float64: dict(rtol=1e-10, atol=1e-12)}
X_SHAPE, Q_SHAPE = (6, 2, 3, 5), (6, 4)


def leaves(dtype, seed=0, device="cpu"):
    """x, the decoder parameter (mean or probability) and q's loc and scale
    (drawn on the CPU, then moved: every device gets the same values)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(X_SHAPE, generator=g, dtype=dtype)
    mean = torch.randn(X_SHAPE, generator=g, dtype=dtype)
    probs = torch.rand(X_SHAPE, generator=g, dtype=dtype).clamp(0.02, 0.98)
    loc = torch.randn(Q_SHAPE, generator=g, dtype=dtype)
    scale = torch.rand(Q_SHAPE, generator=g, dtype=dtype) + 0.3
    return tuple(t.to(device) for t in (x, mean, probs, loc, scale))


def decoder(kind, as_tensor, mean, probs):
    if as_tensor:
        return probs if kind == "bernoulli" else mean
    if kind == "bernoulli":
        return Bernoulli(probs=probs)
    return (Normal if kind == "normal" else Laplace)(mean, torch.full_like(mean, 0.7))


def run(cls, kind, as_tensor, beta, dtype, device):
    """One call from fresh leaves; returns (dict, grads by input name)."""
    x, mean, probs, loc, scale = (t.requires_grad_() for t in leaves(dtype, device=device))
    loss = cls(beta=beta, default_dist=kind if as_tensor else "normal")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nidl's mse_loss broadcast warnings
        out = loss(x, decoder(kind, as_tensor, mean, probs), Normal(loc, scale))
    out["loss"].backward()
    grads = {"x": x.grad, "mean": mean.grad, "probs": probs.grad, "loc": loc.grad, "scale": scale.grad}
    return out, grads


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("beta", [4.0, 0.5])
@pytest.mark.parametrize("as_tensor", [False, True], ids=["distribution", "tensor"])
@pytest.mark.parametrize("kind", DISTS)
def test_same_dict_values_and_gradients(kind, as_tensor, beta, dtype, device):
    # torch's binary_cross_entropy has no derivative for its target, so for
    # Bernoulli nidl cannot backpropagate into x: x stays out of the graph.
    if kind == "bernoulli":
        theirs, their_grads = run_bernoulli(NidlBetaVAELoss, as_tensor, beta, dtype, device)
        ours, our_grads = run_bernoulli(BetaVAELoss, as_tensor, beta, dtype, device)
    else:
        theirs, their_grads = run(NidlBetaVAELoss, kind, as_tensor, beta, dtype, device)
        ours, our_grads = run(BetaVAELoss, kind, as_tensor, beta, dtype, device)
    assert list(ours) == list(theirs) == ["rec_loss", "kl_loss", "loss"]
    for key in theirs:
        assert ours[key].shape == theirs[key].shape == ()
        assert ours[key].dtype == theirs[key].dtype
        torch.testing.assert_close(ours[key], theirs[key], **TOL[dtype], msg=key)
    for name, g in their_grads.items():
        assert (g is None) == (our_grads[name] is None), name
        if g is not None:
            torch.testing.assert_close(our_grads[name], g, **TOL[dtype], msg=f"grad of {name}")


def run_bernoulli(cls, as_tensor, beta, dtype, device):
    x, _, probs, loc, scale = leaves(dtype, device=device)
    probs, loc, scale = (t.requires_grad_() for t in (probs, loc, scale))
    loss = cls(beta=beta, default_dist="bernoulli" if as_tensor else "normal")
    out = loss(x, probs if as_tensor else Bernoulli(probs=probs), Normal(loc, scale))
    out["loss"].backward()
    return out, {"probs": probs.grad, "loc": loc.grad, "scale": scale.grad}


@pytest.mark.parametrize("kind", DISTS)
def test_methods_agree(kind):
    x, mean, probs, loc, scale = leaves(torch.float64)
    p = decoder(kind, False, mean, probs)
    q = Normal(loc, scale)
    theirs, ours = NidlBetaVAELoss(), BetaVAELoss()
    torch.testing.assert_close(ours.reconstruction_loss(p, x), theirs.reconstruction_loss(p, x), **TOL[torch.float64])
    torch.testing.assert_close(ours.kl_normal_loss(q), theirs.kl_normal_loss(q), **TOL[torch.float64])


def test_bernoulli_from_logits_and_broadcast_means():
    x, mean, _, loc, scale = leaves(torch.float64)
    q = Normal(loc, scale)
    theirs, ours = NidlBetaVAELoss(beta=2.0), BetaVAELoss(beta=2.0)
    p = Bernoulli(logits=mean)
    for key, value in theirs(x, p, q).items():
        torch.testing.assert_close(ours(x, p, q)[key], value)
    narrow = mean[:, :1]  # mse_loss / l1_loss broadcast the mean
    for dist_cls in (Normal, Laplace):
        p = dist_cls(narrow, torch.ones_like(narrow))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = theirs(x, p, q)
        for key, value in expected.items():
            torch.testing.assert_close(ours(x, p, q)[key], value)


def test_other_posteriors_go_through_torch_like_nidl():
    x, mean, _, loc, scale = leaves(torch.float64)
    q = Laplace(loc, scale)  # torch knows KL(Laplace || Normal)
    theirs, ours = NidlBetaVAELoss(), BetaVAELoss()
    for key, value in theirs(x, mean, q).items():
        torch.testing.assert_close(ours(x, mean, q)[key], value)
    zero_d = Normal(torch.tensor(0.3, dtype=torch.float64), torch.tensor(0.8, dtype=torch.float64))
    torch.testing.assert_close(ours.kl_normal_loss(zero_d), theirs.kl_normal_loss(zero_d))


def test_integer_targets_like_nidl():
    x = torch.randint(0, 2, X_SHAPE)
    _, mean, _, loc, scale = leaves(torch.float32)
    q = Normal(loc, scale)
    for kind in ("normal", "laplace"):
        theirs, ours = NidlBetaVAELoss(default_dist=kind), BetaVAELoss(default_dist=kind)
        for key, value in theirs(x, mean, q).items():
            torch.testing.assert_close(ours(x, mean, q)[key], value)


# ------------------------------------------------------------------ errors
def _error_cases():
    x, mean, probs, loc, scale = leaves(torch.float32)
    q = Normal(loc, scale)
    from torch.distributions import Independent

    return {
        "default_dist unknown": lambda cls: cls(default_dist="gaussian"),
        "default_dist wrong case": lambda cls: cls(default_dist="Normal"),
        "p a list": lambda cls: cls()(x, [0.5], q),
        "p a Poisson": lambda cls: cls()(x, Poisson(probs + 0.1), q),
        "p a NaN mean": lambda cls: cls()(x, torch.full_like(mean, float("nan")), q),
        "p probabilities above 1": lambda cls: cls(default_dist="bernoulli")(x, probs + 1.0, q),
        "p probabilities below 0": lambda cls: cls(default_dist="bernoulli")(x, probs - 1.0, q),
        "p probabilities of another shape": lambda cls: cls(default_dist="bernoulli")(x, probs[:, :1], q),
        "p mean does not broadcast": lambda cls: cls()(x, mean[:3], q),
        "q a tensor": lambda cls: cls()(x, mean, loc),
        "q independent": lambda cls: cls()(x, mean, Independent(q, 1)),
        "x 0-d": lambda cls: cls()(torch.tensor(0.5), torch.tensor(0.5), q),
    }


def _validation(enabled: bool):
    previous = torch.distributions.Distribution._validate_args
    torch.distributions.Distribution.set_default_validate_args(enabled)
    yield
    torch.distributions.Distribution.set_default_validate_args(previous)


@pytest.fixture
def distribution_validation():
    # On by default, but torch.compile turns it off for the whole process.
    yield from _validation(True)


@pytest.fixture
def no_distribution_validation():
    yield from _validation(False)


@pytest.mark.parametrize("case", list(_error_cases()))
def test_same_errors(case, distribution_validation):
    call = _error_cases()[case]
    with pytest.raises(Exception) as theirs:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            call(NidlBetaVAELoss)
    with pytest.raises(type(theirs.value)) as ours:
        call(BetaVAELoss)
    assert str(ours.value)


def test_difference_non_tensor_x_is_a_type_error():
    _, mean, _, loc, scale = leaves(torch.float32)
    q = Normal(loc, scale)
    with pytest.raises(AttributeError):
        NidlBetaVAELoss()([[0.5] * 5] * 6, mean, q)
    with pytest.raises(TypeError, match="x: expected a torch.Tensor"):
        BetaVAELoss()([[0.5] * 5] * 6, mean, q)


@pytest.mark.parametrize("as_tensor", [False, True])
@pytest.mark.parametrize("bad", ["p above 1", "p below 0", "x above 1", "x NaN"])
def test_out_of_range_bernoulli_without_validation(no_distribution_validation, as_tensor, bad):
    # Without distribution validation nidl reaches binary_cross_entropy, which
    # raises on CPU for probabilities or targets outside [0, 1]; the fused
    # path gives NaN there and looks into it only when its sum is NaN.
    x, _, probs, loc, scale = leaves(torch.float32)
    q = Normal(loc, scale)
    value = {"p above 1": 1.5, "p below 0": -0.25, "x above 1": 1.5, "x NaN": float("nan")}[bad]
    (probs if bad.startswith("p") else x)[0, 0, 0, 0] = value
    p = probs if as_tensor else Bernoulli(probs=probs)
    for cls in (NidlBetaVAELoss, BetaVAELoss):
        with pytest.raises(RuntimeError, match="between 0 and 1"):
            cls(default_dist="bernoulli")(x, p, q)


def test_nan_mean_without_validation_is_nan(no_distribution_validation):
    x, mean, _, loc, scale = leaves(torch.float32)
    mean[0, 0, 0, 0] = float("nan")
    for cls in (NidlBetaVAELoss, BetaVAELoss):
        out = cls()(x, mean, Normal(loc, scale))
        assert out["rec_loss"].isnan() and out["loss"].isnan() and not out["kl_loss"].isnan()


def test_runs_on_the_fused_ops():
    from torch.profiler import ProfilerActivity, profile

    import pyautoencoder_fast as paf

    if not paf.extension_available():
        pytest.skip("extension not loaded")
    x, mean, _, loc, scale = leaves(torch.float32)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        BetaVAELoss()(x, mean, Normal(loc, scale))
    seen = {e.key for e in prof.key_averages()}
    assert {"pyautoencoder_fast::log_likelihood_sum", "pyautoencoder_fast::kl_diag_gaussian"} <= seen
    assert functional  # the module under test is the fused one
