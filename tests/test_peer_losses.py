"""Peer-library loss APIs (nidl BetaVAELoss, ml-starter KL helpers, scvi-tools
LossOutput) against references written here from the documented semantics
with plain PyTorch and torch.distributions: values, gradients, errors, every
dtype, both backends, on cpu and cuda, and the extension ops really being used."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
import textwrap
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Bernoulli, Categorical, Independent, Laplace, Normal, kl_divergence

import pyautoencoder_fast as paf
from pyautoencoder_fast import loss as L
from pyautoencoder_fast import ml_starter, nidl, reference, scvi
from pyautoencoder_fast.loss import (
    BetaVAELoss,
    LossOutput,
    LossResult,
    UnsupportedDistributionError,
    kl_div_pair_loss,
    kl_div_single_loss,
)

DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]
TOL = {torch.float64: 1e-10, torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 4e-2}
BACKENDS = [
    pytest.param(
        "extension",
        marks=pytest.mark.skipif(not paf.extension_available(), reason="extension not loaded"),
    ),
    "reference",
]
needs_extension = pytest.mark.skipif(not paf.extension_available(), reason="extension not loaded")


def assert_close(actual, expected, dtype, what="", same_dtype=None):
    """actual (computed in dtype) vs the float64 reference on the same rounded
    inputs. Half types: within TOL of the scale plus twice the error of the
    torch reference run in the same dtype (``same_dtype``), the rule of the
    other op tests (PyTorch's own rounding sets the bar)."""
    if expected is None:
        assert actual is None, f"{what}: expected no gradient"
        return
    assert actual is not None, f"{what}: no gradient"
    assert actual.dtype == dtype, f"{what}: dtype {actual.dtype} != {dtype}"
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    a, e = actual.detach().double().cpu(), expected.detach().double().cpu()  # compared on the CPU
    finite = e[torch.isfinite(e)]
    scale = max(finite.abs().max().item() if finite.numel() else 0.0, 1.0)
    tol = TOL[dtype]
    if same_dtype is not None and dtype in (torch.float16, torch.bfloat16) and e.numel():
        mask = torch.isfinite(e)
        torch_err = (same_dtype.detach().double().cpu() - e)[mask].abs().max().item() if mask.any() else 0.0
        err = (a - e)[mask].abs().max().item() if mask.any() else 0.0
        bound = 2 * torch_err + tol * scale
        assert err <= bound, f"{what}: error {err:.3g} > 2 x torch's {torch_err:.3g} + {tol * scale:.3g}"
        assert torch.equal(torch.isfinite(a), mask), f"{what}: non-finite values differ"
        return
    torch.testing.assert_close(a, e, rtol=tol, atol=tol * scale, equal_nan=True, msg=what)


def leaves(*tensors, dtype, device="cpu"):
    """Each float64 master tensor (on the CPU) rounded to dtype, as (leaf in
    dtype on `device`, leaf in float64 on the CPU)."""
    low = [t.to(device=device, dtype=dtype).requires_grad_() for t in tensors]
    high = [t.detach().to(dtype).double().requires_grad_() for t in tensors]
    return low, high


def grads(outputs, weights, inputs):
    """d(sum_i weights_i * outputs_i)/d inputs, None where unused."""
    total = sum(w * o for w, o in zip(weights, outputs))
    return torch.autograd.grad(total, inputs, allow_unused=True)


# ============================================================ lazy re-exports
def test_loss_module_imports_the_peer_modules_on_first_use():
    # pyautoencoder_fast.loss re-exports the peers' losses lazily (PEP 562):
    # importing it (or the package) loads none of nidl, ml_starter, scvi;
    # asking for a name loads its module only, and that name is the peer's own.
    code = textwrap.dedent("""
        import sys
        import pyautoencoder_fast.loss as L
        peers = ("pyautoencoder_fast.nidl", "pyautoencoder_fast.ml_starter", "pyautoencoder_fast.scvi")
        assert not [m for m in peers if m in sys.modules], [m for m in peers if m in sys.modules]
        assert set(L.__all__) <= set(dir(L))
        from pyautoencoder_fast.loss import BetaVAELoss
        assert "pyautoencoder_fast.nidl" in sys.modules and "pyautoencoder_fast.scvi" not in sys.modules
        import pyautoencoder_fast.nidl
        assert BetaVAELoss is pyautoencoder_fast.nidl.BetaVAELoss
        assert L.LossOutput is sys.modules["pyautoencoder_fast.scvi"].LossOutput
        assert L.kl_div_pair_loss is sys.modules["pyautoencoder_fast.ml_starter"].kl_div_pair_loss
        try:
            L.no_such_name
        except AttributeError as e:
            assert "no_such_name" in str(e)
        else:
            raise AssertionError("no AttributeError")
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_loss_all_names_are_exported():
    namespace = {}
    exec("from pyautoencoder_fast.loss import *", namespace)
    assert set(L.__all__) <= set(namespace)
    assert namespace["BetaVAELoss"] is nidl.BetaVAELoss and namespace["LossOutput"] is scvi.LossOutput
    assert namespace["UnsupportedDistributionError"] is nidl.UnsupportedDistributionError
    assert namespace["kl_div_single_loss"] is ml_starter.kl_div_single_loss


# ================================================================ nidl BetaVAELoss
def ref_beta_vae(x, p, q, beta, default_dist):
    """nidl's BetaVAELoss written from its documentation."""
    if isinstance(p, torch.Tensor):
        p = {
            "normal": lambda t: Normal(t, torch.ones_like(t)),
            "laplace": lambda t: Laplace(t, torch.ones_like(t)),
            "bernoulli": lambda t: Bernoulli(probs=t),
        }[default_dist](p)
    batch = x.shape[0]
    if isinstance(p, Bernoulli):
        rec = F.binary_cross_entropy(p.probs, x, reduction="sum") / batch
    elif isinstance(p, Normal):
        rec = F.mse_loss(p.loc, x, reduction="sum") / batch
    elif isinstance(p, Laplace):
        rec = F.l1_loss(p.loc, x, reduction="sum") / batch
    else:
        raise AssertionError(p)
    prior = Normal(torch.zeros_like(q.loc), torch.ones_like(q.scale))
    kl = kl_divergence(q, prior).mean(0).sum()
    return rec, kl, rec + beta * kl


# kind -> (default_dist, builder of p from (param, p_scale)), param meaning
P_KINDS = {
    "Normal": ("laplace", lambda a, s: Normal(a, s)),  # the type decides, not default_dist
    "Laplace": ("bernoulli", lambda a, s: Laplace(a, s)),
    "Bernoulli(probs)": ("normal", lambda a, s: Bernoulli(probs=a)),
    "Bernoulli(logits)": ("normal", lambda a, s: Bernoulli(logits=a)),
    "tensor/normal": ("normal", lambda a, s: a),
    "tensor/laplace": ("laplace", lambda a, s: a),
    "tensor/bernoulli": ("bernoulli", lambda a, s: a),
}
PROBS = ("Bernoulli(probs)", "tensor/bernoulli")
SHAPES = [(4, 3, 5, 5), (6, 10), (1, 1), (7,)]


def beta_vae_inputs(kind, shape, latent=5):
    bern = kind.startswith("Bernoulli") or kind == "tensor/bernoulli"
    x = torch.rand(shape, dtype=torch.float64) if bern else torch.randn(shape, dtype=torch.float64)
    if kind in PROBS:
        param = torch.sigmoid(torch.randn(shape, dtype=torch.float64) * 1.5)
    else:
        param = torch.randn(shape, dtype=torch.float64) * (2.0 if bern else 1.0)
    p_scale = torch.rand(shape, dtype=torch.float64) + 0.5
    q_loc = torch.randn(shape[0], latent, dtype=torch.float64)
    q_scale = torch.exp(0.4 * torch.randn(shape[0], latent, dtype=torch.float64))
    return x, param, p_scale, q_loc, q_scale


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("kind", list(P_KINDS))
def test_beta_vae_loss_matches_torch(kind, shape, dtype, backend, device):
    default_dist, make_p = P_KINDS[kind]
    beta = 2.5
    low, high = leaves(*beta_vae_inputs(kind, shape), dtype=dtype, device=device)
    with paf.use_backend(backend):
        out = BetaVAELoss(beta=beta, default_dist=default_dist)(low[0], make_p(low[1], low[2]), Normal(low[3], low[4]))
    rec, kl, loss = ref_beta_vae(high[0], make_p(high[1], high[2]), Normal(high[3], high[4]), beta, default_dist)
    same = [t.detach().clone().requires_grad_() for t in low]  # torch's own result in dtype, on device
    same_out = ref_beta_vae(same[0], make_p(same[1], same[2]), Normal(same[3], same[4]), beta, default_dist)
    assert set(out) == {"rec_loss", "kl_loss", "loss"}
    for name, expected, r in zip(("rec_loss", "kl_loss", "loss"), (rec, kl, loss), same_out):
        assert out[name].dim() == 0
        assert_close(out[name], expected, dtype, f"{kind} {name}", r)
    weights = [1.3, -0.7, 0.4]
    g_low = grads([out["rec_loss"], out["kl_loss"], out["loss"]], weights, low)
    g_high = grads([rec, kl, loss], weights, high)
    g_same = grads(same_out, weights, same)
    for i, (a, e, r) in enumerate(zip(g_low, g_high, g_same)):
        assert_close(a, e, dtype, f"{kind} grad[{i}]", r)
    assert g_low[3] is not None and g_low[4] is not None  # q's parameters get gradients
    assert g_low[1] is not None  # so do p's


@pytest.mark.parametrize("backend", BACKENDS)
def test_beta_vae_loss_methods(backend, device):
    x, param, _, q_loc, q_scale = (t.to(device) for t in beta_vae_inputs("Normal", (5, 8)))
    loss = BetaVAELoss()
    assert loss.beta == 4.0 and loss.default_dist == "normal"
    with paf.use_backend(backend):
        rec = loss.reconstruction_loss(Normal(param, 1.0), x)
        kl = loss.kl_normal_loss(Normal(q_loc, q_scale))
        with pytest.raises(NotImplementedError):  # torch has no KL(Independent || Normal), nor has nidl
            loss.kl_normal_loss(Independent(Normal(q_loc, q_scale), 1))
        rec_laplace_tensor = BetaVAELoss(default_dist="laplace").reconstruction_loss(param, x)
    torch.testing.assert_close(rec, F.mse_loss(param, x, reduction="sum") / 5, rtol=1e-12, atol=0)
    expected_kl = kl_divergence(Normal(q_loc, q_scale), Normal(0.0, 1.0)).mean(0).sum()
    torch.testing.assert_close(kl, expected_kl, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(rec_laplace_tensor, F.l1_loss(param, x, reduction="sum") / 5, rtol=1e-12, atol=0)


@pytest.mark.parametrize("beta", [0.0, 1.0, 4.0, -0.5, 3])
def test_beta_vae_loss_beta_weights_kl(beta):
    x, param, _, q_loc, q_scale = beta_vae_inputs("Laplace", (3, 4))
    out = BetaVAELoss(beta=beta)(x, Laplace(param, 1.0), Normal(q_loc, q_scale))
    torch.testing.assert_close(out["loss"], out["rec_loss"] + beta * out["kl_loss"], rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("backend", BACKENDS)
def test_beta_vae_loss_broadcast_mean_like_mse_loss(backend, device):
    # mse_loss / l1_loss broadcast their arguments (with a warning); so do we.
    x = torch.randn(4, 6, dtype=torch.float64, device=device)
    loc = torch.randn(6, dtype=torch.float64, device=device, requires_grad=True)
    with paf.use_backend(backend):
        ours = BetaVAELoss().reconstruction_loss(loc, x)
        ours_l1 = BetaVAELoss(default_dist="laplace").reconstruction_loss(loc, x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = F.mse_loss(loc, x, reduction="sum") / 4
        expected_l1 = F.l1_loss(loc, x, reduction="sum") / 4
    torch.testing.assert_close(ours, expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(ours_l1, expected_l1, rtol=1e-12, atol=0)
    (g,) = torch.autograd.grad(ours, loc)
    (g_ref,) = torch.autograd.grad(expected, loc)
    torch.testing.assert_close(g, g_ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_beta_vae_loss_probabilities_out_of_range(backend):
    q = Normal(torch.zeros(2, 2), torch.ones(2, 2))
    probs = torch.tensor([[1.5, 0.5, 0.5], [0.5, -0.2, 0.5]])
    loss = BetaVAELoss(default_dist="bernoulli")
    previous = torch.distributions.Distribution._validate_args
    try:
        with paf.use_backend(backend):
            # Validation on: what nidl's Bernoulli(probs=p) raises.
            torch.distributions.Distribution.set_default_validate_args(True)
            with pytest.raises(ValueError, match="probs"):
                loss(torch.rand(2, 3), probs, q)
            # Validation off: what binary_cross_entropy raises on CPU.
            torch.distributions.Distribution.set_default_validate_args(False)
            with pytest.raises(RuntimeError, match="between 0 and 1"):
                F.binary_cross_entropy(probs, torch.rand(2, 3), reduction="sum")
            with pytest.raises(RuntimeError, match="between 0 and 1"):
                loss(torch.rand(2, 3), probs, q)
            with pytest.raises(RuntimeError, match="between 0 and 1"):  # targets too
                loss(torch.full((2, 3), 2.0), torch.full((2, 3), 0.5), q)
    finally:
        torch.distributions.Distribution.set_default_validate_args(previous)


def test_beta_vae_loss_empty_batch_is_nan_like_nidl(device):
    x, param, _, q_loc, q_scale = (t.to(device) for t in beta_vae_inputs("Normal", (0, 3)))
    out = BetaVAELoss()(x, Normal(param, 1.0), Normal(q_loc, q_scale))
    rec, kl, loss = ref_beta_vae(x, Normal(param, 1.0), Normal(q_loc, q_scale), 4.0, "normal")
    for name, expected in (("rec_loss", rec), ("kl_loss", kl), ("loss", loss)):
        assert math.isnan(expected.item())
        assert math.isnan(out[name].item()), name


@pytest.mark.parametrize("bad", ["Normal", "gaussian", "", None, 1, "bernoulli_probs"])
def test_beta_vae_loss_rejects_default_dist(bad):
    with pytest.raises(ValueError, match="default_dist"):
        BetaVAELoss(default_dist=bad)


def test_beta_vae_loss_rejects_beta():
    with pytest.raises(TypeError, match="beta"):
        BetaVAELoss(beta="4")
    with pytest.raises(TypeError, match="beta"):
        BetaVAELoss(beta=True)
    with pytest.raises(ValueError, match="beta"):
        BetaVAELoss(beta=float("nan"))


@pytest.mark.parametrize(
    "bad_p",
    [
        Categorical(probs=torch.full((4, 3), 1 / 3)),
        [[0.5] * 3] * 4,
        None,
        0.5,
    ],
    ids=["Categorical", "list", "None", "float"],
)
def test_beta_vae_loss_rejects_p_type(bad_p):
    x = torch.rand(4, 3)
    q = Normal(torch.zeros(4, 2), torch.ones(4, 2))
    for call in (lambda: BetaVAELoss()(x, bad_p, q), lambda: BetaVAELoss().reconstruction_loss(bad_p, x)):
        with pytest.raises(TypeError, match="p: expected"):
            call()
        with pytest.raises(ValueError, match="p: expected"):  # nidl documents ValueError
            call()
        with pytest.raises(UnsupportedDistributionError):
            call()


def test_beta_vae_loss_rejects_q_type():
    x = torch.rand(4, 3)
    # Anything but a Normal goes to torch.distributions.kl_divergence, as in nidl.
    for bad_q in (torch.zeros(4, 2), Bernoulli(probs=torch.full((4, 2), 0.5)), None):
        with pytest.raises(NotImplementedError):
            BetaVAELoss()(x, x, bad_q)
    # A 0-d Normal: nidl's mean(dim=0) of a 0-d KL is the KL itself.
    kl = BetaVAELoss().kl_normal_loss(Normal(torch.tensor(0.5), torch.tensor(2.0)))
    torch.testing.assert_close(kl, kl_divergence(Normal(0.5, 2.0), Normal(0.0, 1.0)))


def test_beta_vae_loss_rejects_data_and_shapes():
    q = Normal(torch.zeros(4, 2), torch.ones(4, 2))
    p = torch.rand(4, 3)
    with pytest.raises(TypeError, match="x: expected a torch.Tensor"):
        BetaVAELoss()([[0.0] * 3] * 4, p, q)
    with pytest.raises(TypeError, match="data: expected a torch.Tensor"):
        BetaVAELoss().reconstruction_loss(p, [[0.0] * 3] * 4)
    # integer targets are promoted, as mse_loss does
    torch.testing.assert_close(
        BetaVAELoss()(torch.ones(4, 3, dtype=torch.long), p, q)["rec_loss"], F.mse_loss(p, torch.ones(4, 3), reduction="sum") / 4
    )
    with pytest.raises(TypeError, match="p: expected a floating-point"):
        BetaVAELoss()(p, torch.ones(4, 3, dtype=torch.long), q)
    with pytest.raises(TypeError, match="x: expected a batch dimension"):  # nidl: len() of a 0-d tensor
        BetaVAELoss()(torch.tensor(0.5), torch.tensor(0.5), q)
    with pytest.raises(ValueError, match="p: mean of shape"):
        BetaVAELoss()(torch.rand(4, 3), torch.rand(4, 5), q)
    # binary_cross_entropy needs equal shapes (torch raises ValueError too)
    with pytest.raises(ValueError):
        F.binary_cross_entropy(torch.rand(3), torch.rand(4, 3))
    with pytest.raises(ValueError, match="p: probabilities of shape"):
        BetaVAELoss(default_dist="bernoulli")(torch.rand(4, 3), torch.rand(3), q)
    with pytest.raises(ValueError, match="p: probabilities of shape"):
        BetaVAELoss()(torch.rand(4, 3), Bernoulli(probs=torch.rand(1, 3)), q)


# ========================================================= ml-starter KL helpers
def ref_single(mu, lv, clamp_min=-30.0, clamp_max=20.0):
    if clamp_min is not None or clamp_max is not None:
        lv = torch.clamp(lv, min=clamp_min, max=clamp_max)
    return -0.5 * (1 + lv - mu**2 - torch.exp(lv))


def ref_pair(mu_p, lv_p, mu_q, lv_q, clamp_min=-30.0, clamp_max=20.0):
    lv_p = torch.clamp(lv_p, min=clamp_min, max=clamp_max)
    lv_q = torch.clamp(lv_q, min=clamp_min, max=clamp_max)
    return (lv_q - lv_p) + (torch.exp(lv_p) + (mu_p - mu_q) ** 2) / torch.exp(lv_q) - 0.5


# shapes of (mu, log_var) or (mu_p, lv_p, mu_q, lv_q): equal, broadcast, 0-d, empty
SINGLE_SHAPES = [((6, 10), (6, 10)), ((3, 4, 5), (5,)), ((), ()), ((7,), ()), ((0, 4), (0, 4))]
PAIR_SHAPES = [
    ((6, 10),) * 4,
    ((5, 9), (5, 9), (9,), (9,)),  # one q shared by every row
    ((),) * 4,
    ((0, 3),) * 4,
]


def _gauss_params(shapes):
    out = []
    for i, s in enumerate(shapes):
        t = torch.randn(s, dtype=torch.float64)
        out.append(t * 1.2 if i % 2 else t)
    return out


def _check_kl_helper(fn, ref, shapes, clamp, dtype, backend, device):
    """fn on `backend` in `dtype` on `device` vs the literal formula `ref` in
    float64 (and in `dtype`, for the half-type error bound): values and
    gradients for random output weights."""
    low, high = leaves(*_gauss_params(shapes), dtype=dtype, device=device)
    with paf.use_backend(backend):
        out = fn(*low, clamp_min=clamp[0], clamp_max=clamp[1])
    expected = ref(*high, *clamp)
    same = [t.detach().clone().requires_grad_() for t in low]
    same_out = ref(*same, *clamp)
    assert_close(out, expected, dtype, "value", same_out)
    w = torch.randn(expected.shape, dtype=torch.float64) * 1.7 + 0.3
    g_low = torch.autograd.grad(out, low, w.to(device=device, dtype=dtype), allow_unused=True)
    g_high = torch.autograd.grad(expected, high, w, allow_unused=True)
    g_same = torch.autograd.grad(same_out, same, w.to(device=device, dtype=dtype), allow_unused=True)
    for i, (a, e, r) in enumerate(zip(g_low, g_high, g_same)):
        assert_close(a, e, dtype, f"grad[{i}]", r)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("clamp", [(-30.0, 20.0), (-0.5, 0.7), (-0.5, None), (None, None)], ids=str)
@pytest.mark.parametrize("shapes", SINGLE_SHAPES, ids=str)
def test_kl_div_single_loss_matches_formula(shapes, clamp, dtype, backend, device):
    _check_kl_helper(kl_div_single_loss, ref_single, shapes, clamp, dtype, backend, device)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("clamp", [(-30.0, 20.0), (-0.5, 0.7), (None, 0.7)], ids=str)
@pytest.mark.parametrize("shapes", PAIR_SHAPES, ids=str)
def test_kl_div_pair_loss_matches_formula(shapes, clamp, dtype, backend, device):
    _check_kl_helper(kl_div_pair_loss, ref_pair, shapes, clamp, dtype, backend, device)


def test_kl_div_pair_loss_is_twice_the_kl_plus_half():
    mu_p, lv_p, mu_q, lv_q = _gauss_params([(4, 6)] * 4)
    kl = kl_divergence(Normal(mu_p, torch.exp(0.5 * lv_p)), Normal(mu_q, torch.exp(0.5 * lv_q)))
    torch.testing.assert_close(kl_div_pair_loss(mu_p, lv_p, mu_q, lv_q), 2 * kl + 0.5, rtol=1e-12, atol=1e-12)
    same = kl_div_pair_loss(mu_p, lv_p, mu_p, lv_p)
    torch.testing.assert_close(same, torch.full_like(same, 0.5), rtol=0, atol=1e-12)
    doc = " ".join(kl_div_pair_loss.__doc__.split())
    assert "2 * KL(p || q) + 0.5" in doc and "NOT the KL divergence itself" in doc
    # single is the KL itself
    single = kl_div_single_loss(mu_p, lv_p)
    expected = kl_divergence(Normal(mu_p, torch.exp(0.5 * lv_p)), Normal(0.0, 1.0))
    torch.testing.assert_close(single, expected, rtol=1e-12, atol=1e-12)


# log-variances exactly at, just inside and beyond the default bounds
AT_BOUNDS = [-45.0, -30.0, -29.5, -3.0, 0.0, 2.0, 19.5, 20.0, 26.0]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_clamp_gradient_at_and_beyond_bounds(dtype, backend, device):
    lv = torch.tensor(AT_BOUNDS, dtype=torch.float64)
    n = lv.numel()
    mu = torch.linspace(-1.5, 1.5, n, dtype=torch.float64)
    # single: every bound case
    low, high = leaves(mu, lv, dtype=dtype, device=device)
    with paf.use_backend(backend):
        out = kl_div_single_loss(*low)
    expected = ref_single(*high)
    assert_close(out, expected, dtype, "single value")
    g_low = torch.autograd.grad(out.sum(), low)
    g_high = torch.autograd.grad(expected.sum(), high)
    for i, (a, e) in enumerate(zip(g_low, g_high)):
        assert_close(a, e, dtype, f"single grad[{i}]")
    g_lv = g_low[1].cpu()
    beyond = (lv < -30) | (lv > 20)
    assert torch.all(g_lv[beyond] == 0)
    at = (lv == -30) | (lv == 20)
    # at exactly a bound, what the installed torch.clamp does (passes the
    # gradient up to torch 2.13, stops it from 2.14), each bound alone
    for bound, clamp in ((-30.0, dict(min=-30.0)), (20.0, dict(max=20.0))):
        probe = torch.tensor([bound], dtype=torch.float64, requires_grad=True)
        (torch_grad,) = torch.autograd.grad(probe.clamp(**clamp).sum(), probe)
        assert torch.all((g_lv[lv == bound] != 0) == (torch_grad != 0))
    assert at.sum() == 2
    # pair: every combination of lv_p and lv_q bound cases
    lv_p, lv_q = torch.meshgrid(lv, lv, indexing="ij")
    mu_p = torch.randn(n, n, dtype=torch.float64)
    mu_q = torch.randn(n, n, dtype=torch.float64)
    low, high = leaves(mu_p, lv_p, mu_q, lv_q, dtype=dtype, device=device)
    with paf.use_backend(backend):
        out = kl_div_pair_loss(*low)
    expected = ref_pair(*high)
    assert_close(out, expected, dtype, "pair value")
    w = torch.rand(n, n, dtype=torch.float64) + 0.5
    g_low = [g.cpu() for g in torch.autograd.grad(out, low, w.to(device=device, dtype=dtype))]
    g_high = torch.autograd.grad(expected, high, w)
    for i, (a, e) in enumerate(zip(g_low, g_high)):
        assert_close(a, e, dtype, f"pair grad[{i}]")
    assert torch.all(g_low[1][beyond.unsqueeze(1).expand(n, n)] == 0)
    assert torch.all(g_low[3][beyond.unsqueeze(0).expand(n, n)] == 0)


def test_kl_helpers_gradcheck():
    mu, lv = (torch.randn(3, 4, dtype=torch.float64, requires_grad=True) for _ in range(2))
    assert torch.autograd.gradcheck(lambda a, b: kl_div_single_loss(a, b, clamp_min=-5.0, clamp_max=5.0), (mu, lv))
    args = [torch.randn(3, 4, dtype=torch.float64, requires_grad=True) for _ in range(4)]
    assert torch.autograd.gradcheck(lambda *a: kl_div_pair_loss(*a, clamp_min=-5.0, clamp_max=5.0), args)


def test_kl_helpers_errors():
    t = torch.zeros(3, 4)
    with pytest.raises(TypeError, match="mu: expected a torch.Tensor"):
        kl_div_single_loss([0.0], t)
    with pytest.raises(TypeError, match="log_var: expected a floating-point"):
        kl_div_single_loss(t, torch.zeros(3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="shapes do not broadcast"):
        kl_div_single_loss(t, torch.zeros(5))
    with pytest.raises(TypeError, match="mu_q: expected a torch.Tensor"):
        kl_div_pair_loss(t, t, None, t)
    with pytest.raises(TypeError, match="log_var_p: expected a floating-point"):
        kl_div_pair_loss(t, torch.zeros(3, 4, dtype=torch.int32), t, t)
    with pytest.raises(ValueError, match="shapes do not broadcast"):
        kl_div_pair_loss(t, t, torch.zeros(2, 4), t)
    for fn, args in ((kl_div_single_loss, (t, t)), (kl_div_pair_loss, (t, t, t, t))):
        with pytest.raises(ValueError, match="clamp_min"):
            fn(*args, clamp_min=1.0, clamp_max=0.0)
        with pytest.raises(TypeError, match="clamp_min"):
            fn(*args, clamp_min="-30")
        with pytest.raises(TypeError, match="clamp_max"):
            fn(*args, clamp_max=torch.tensor(20.0))
        with pytest.raises(ValueError, match="clamp_max"):
            fn(*args, clamp_max=float("nan"))
        with pytest.raises(TypeError):  # the bounds are keyword-only
            fn(*args, -30.0, 20.0)


# ============================================================ scvi-tools LossOutput
def test_loss_output_post_init_rules():
    rec = torch.rand(5, 3)
    kl_local = torch.rand(5)
    loss = torch.tensor(2.5)
    out = LossOutput(loss=loss, reconstruction_loss=rec, kl_local=kl_local, kl_global=torch.tensor(0.25))
    assert out.loss is loss
    assert out.reconstruction_loss == {"reconstruction_loss": rec}
    assert out.kl_local == {"kl_local": kl_local}
    assert set(out.kl_global) == {"kl_global"}
    torch.testing.assert_close(out.reconstruction_loss_sum, rec.sum())
    torch.testing.assert_close(out.kl_local_sum, kl_local.sum())
    torch.testing.assert_close(out.kl_global_sum, torch.tensor(0.25))
    assert out.n_obs_minibatch == 5
    assert out.extra_metrics == {} and list(out.extra_metrics_keys) == []
    assert out.classification_loss is None and out.logits is None and out.true_labels is None


def test_loss_output_dicts_and_sums():
    rec = {"x": torch.rand(4, 2), "y": torch.rand(4, 2)}
    kl = {"z1": torch.rand(4), "z2": torch.rand(4)}
    kl_global = torch.rand(3)  # kl_global_sum is not summed further
    out = LossOutput(
        loss={"a": torch.tensor(1.0), "b": torch.tensor(2.0)},
        reconstruction_loss=rec,
        kl_local=kl,
        kl_global=kl_global,
        reconstruction_loss_sum=torch.tensor(-1.0),  # overwritten
        kl_local_sum=torch.tensor(-1.0),
        kl_global_sum=torch.tensor(-1.0),
    )
    torch.testing.assert_close(out.loss, torch.tensor(3.0))
    assert out.reconstruction_loss is rec and out.kl_local is kl
    torch.testing.assert_close(out.reconstruction_loss_sum, (rec["x"] + rec["y"]).sum())
    torch.testing.assert_close(out.kl_local_sum, (kl["z1"] + kl["z2"]).sum())
    assert out.kl_global_sum.shape == (3,)
    torch.testing.assert_close(out.kl_global_sum, kl_global)
    assert out.n_obs_minibatch == 4  # dim 0 of the first reconstruction value


def test_loss_output_defaults_are_zero_times_loss():
    w = torch.tensor([1.5, -2.0], requires_grad=True)
    loss = (w**2).sum()
    out = LossOutput(loss=loss, n_obs_minibatch=7)
    for name in ("reconstruction_loss", "kl_local", "kl_global"):
        value = getattr(out, name)[name]
        assert value.shape == loss.shape and value.item() == 0.0
        assert value.grad_fn is not None  # 0 * loss, still in the graph
    assert out.n_obs_minibatch == 7
    assert out.reconstruction_loss_sum.item() == 0.0 and out.kl_global_sum.item() == 0.0
    out.loss.backward()
    torch.testing.assert_close(w.grad, 2 * w.detach())


def test_loss_output_gradients_flow():
    w = torch.randn(6, requires_grad=True)
    rec = w.unsqueeze(0).expand(3, 6) ** 2
    out = LossOutput(loss={"r": rec.sum(1).mean(), "k": w.abs().sum()}, reconstruction_loss=rec.sum(1))
    (g,) = torch.autograd.grad(out.loss + out.reconstruction_loss_sum, w)
    torch.testing.assert_close(g, 2 * w.detach() + torch.sign(w.detach()) + 3 * 2 * w.detach())


def test_loss_output_classification():
    logits, labels = torch.randn(4, 3), torch.tensor([0, 2, 1, 0])
    ce = F.cross_entropy(logits, labels)
    out = LossOutput(loss=ce, classification_loss=ce, logits=logits, true_labels=labels, n_obs_minibatch=4)
    assert out.classification_loss is ce
    with pytest.raises(ValueError, match="logits"):
        LossOutput(loss=ce, classification_loss=ce, logits=logits, n_obs_minibatch=4)
    with pytest.raises(ValueError, match="true_labels"):
        LossOutput(loss=ce, classification_loss=ce, true_labels=labels, n_obs_minibatch=4)


def test_loss_output_needs_batch_size():
    with pytest.raises(ValueError, match="n_obs_minibatch"):
        LossOutput(loss=torch.tensor(1.0))
    with pytest.raises(ValueError, match="n_obs_minibatch"):
        LossOutput(loss=torch.tensor(1.0), kl_local=torch.rand(3))
    with pytest.raises(ValueError, match="reconstruction_loss: a 0-d value"):
        LossOutput(loss=torch.tensor(1.0), reconstruction_loss=torch.tensor(2.0))
    assert LossOutput(loss=torch.tensor(1.0), reconstruction_loss=torch.tensor(2.0), n_obs_minibatch=3).n_obs_minibatch == 3


def test_loss_output_type_errors():
    t = torch.tensor(1.0)
    cases = [
        (TypeError, "loss: expected", dict(loss=1.0, n_obs_minibatch=1)),
        (TypeError, "loss: expected", dict(loss=None, n_obs_minibatch=1)),
        (TypeError, r"loss\['a'\]: expected", dict(loss={"a": 1.0}, n_obs_minibatch=1)),
        (ValueError, "loss: expected .* non-empty", dict(loss={}, n_obs_minibatch=1)),
        (TypeError, "reconstruction_loss: expected", dict(loss=t, reconstruction_loss=[1.0, 2.0])),
        (ValueError, "kl_local: expected .* non-empty", dict(loss=t, kl_local={}, n_obs_minibatch=1)),
        (TypeError, r"kl_global\['g'\]", dict(loss=t, kl_global={"g": 0.0}, n_obs_minibatch=1)),
        (TypeError, "classification_loss: expected", dict(loss=t, classification_loss=0.5, n_obs_minibatch=1)),
        (TypeError, "logits: expected", dict(loss=t, logits=[0.0], n_obs_minibatch=1)),
        (TypeError, "true_labels: expected", dict(loss=t, true_labels=[0], n_obs_minibatch=1)),
        (TypeError, "extra_metrics: expected", dict(loss=t, extra_metrics=[("a", t)], n_obs_minibatch=1)),
        (TypeError, "n_obs_minibatch: expected", dict(loss=t, n_obs_minibatch="4")),
        (TypeError, "n_obs_minibatch: expected", dict(loss=t, n_obs_minibatch=True)),
        (ValueError, "n_obs_minibatch: expected", dict(loss=t, n_obs_minibatch=-1)),
    ]
    for exc, match, kwargs in cases:
        with pytest.raises(exc, match=match):
            LossOutput(**kwargs)


def test_loss_output_dict_sum_and_extra_metrics_keys():
    a, b = torch.tensor([1.0, 2.0]), torch.tensor([3.0, 4.0])
    torch.testing.assert_close(LossOutput.dict_sum({"a": a, "b": b}), a + b)
    assert LossOutput.dict_sum({"a": a}) is a
    assert LossOutput.dict_sum(a) is a and LossOutput.dict_sum(None) is None
    assert LossOutput.dict_sum({}) == 0
    assert isinstance(LossOutput.__dict__["dict_sum"], staticmethod)
    out = LossOutput(loss=a.sum(), n_obs_minibatch=2, extra_metrics={"x": a, "y": b})
    assert list(out.extra_metrics_keys) == ["x", "y"]
    assert out.dict_sum({"a": a}) is a
    assert list(LossOutput(loss=a.sum(), n_obs_minibatch=2, extra_metrics=None).extra_metrics_keys) == []


def test_loss_output_fields_match_scvi():
    names = [f.name for f in dataclasses.fields(LossOutput)]
    assert names == [
        "loss", "reconstruction_loss", "kl_local", "kl_global", "classification_loss", "logits",
        "true_labels", "extra_metrics", "n_obs_minibatch", "reconstruction_loss_sum", "kl_local_sum",
        "kl_global_sum",
    ]  # fmt: skip
    assert LossOutput(loss=torch.tensor(0.0), n_obs_minibatch=1).extra_metrics is not (
        LossOutput(loss=torch.tensor(0.0), n_obs_minibatch=1).extra_metrics
    )


def test_loss_output_replace():
    rec = torch.rand(4)
    out = LossOutput(loss=torch.tensor(1.0), reconstruction_loss=rec, extra_metrics={"m": torch.tensor(3.0)})
    new_kl = torch.rand(4)
    new = out.replace(kl_local=new_kl, loss={"a": torch.tensor(2.0), "b": torch.tensor(0.5)})
    assert new is not out and isinstance(new, LossOutput)
    torch.testing.assert_close(new.loss, torch.tensor(2.5))
    assert new.kl_local == {"kl_local": new_kl}
    torch.testing.assert_close(new.kl_local_sum, new_kl.sum())  # recomputed
    assert new.reconstruction_loss == {"reconstruction_loss": rec} and new.n_obs_minibatch == 4
    assert new.extra_metrics == out.extra_metrics
    # the original is untouched
    torch.testing.assert_close(out.loss, torch.tensor(1.0))
    assert out.kl_local_sum.item() == 0.0
    with pytest.raises(TypeError, match="unknown field"):
        out.replace(kl=new_kl)
    with pytest.raises(ValueError, match="logits"):
        out.replace(classification_loss=torch.tensor(1.0))


def _small_vae(device="cpu"):
    torch.manual_seed(0)
    enc = nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.ReLU())
    dec = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 12))
    vae = paf.VAE(enc, dec, 3)
    x = torch.rand(8, 12)
    vae.build(x)
    return vae.to(device), x.to(device)


def test_loss_result_to_loss_output_and_back(device):
    vae, x = _small_vae(device)
    result = vae.compute_loss(x, vae(x, S=2), likelihood="bernoulli")
    out = LossOutput.from_loss_result(result, n_obs_minibatch=x.shape[0], extra_metrics={"lr": torch.tensor(1e-3)})
    assert out.loss is result.objective  # same graph
    assert out.n_obs_minibatch == 8
    assert set(out.extra_metrics_keys) == set(result.diagnostics) | {"lr"}
    for name, value in result.diagnostics.items():
        metric = out.extra_metrics[name]
        assert metric.dim() == 0 and metric.device.type == "cpu"
        assert metric.item() == value
    out.loss.backward()
    assert any(p.grad is not None for p in vae.parameters())
    back = out.to_loss_result()
    assert isinstance(back, LossResult) and back.objective is result.objective
    for name, value in result.diagnostics.items():
        assert back.diagnostics[name] == value
    assert back.diagnostics["n_obs_minibatch"] == 8.0
    assert back.diagnostics["reconstruction_loss_sum"] == 0.0  # not given: 0 * loss
    assert back.diagnostics["lr"] == pytest.approx(1e-3)
    assert all(type(v) is float for v in back.diagnostics.values())


def test_from_loss_result_with_per_observation_terms(device):
    torch.manual_seed(1)
    x, x_hat = torch.rand(5, 7, device=device), torch.randn(5, 7, device=device, requires_grad=True)
    mu, lv = torch.randn(5, 3, device=device, requires_grad=True), torch.randn(5, 3, device=device, requires_grad=True)
    rec = -paf.functional.log_likelihood_sum(x, x_hat, "bernoulli")[:, 0]
    kl = paf.functional.kl_diag_gaussian(mu, lv)
    result = LossResult(objective=(rec + kl).mean(), diagnostics={"elbo": -(rec + kl).mean().item()})
    out = LossOutput.from_loss_result(result, reconstruction_loss=rec, kl_local=kl)
    assert out.n_obs_minibatch == 5
    torch.testing.assert_close(out.reconstruction_loss_sum, rec.sum())
    torch.testing.assert_close(out.kl_local_sum, kl.sum())
    back = out.to_loss_result()
    assert back.diagnostics["reconstruction_loss_sum"] == pytest.approx(rec.sum().item(), rel=1e-6)
    assert back.diagnostics["kl_local_sum"] == pytest.approx(kl.sum().item(), rel=1e-6)
    assert back.diagnostics["elbo"] == pytest.approx(result.diagnostics["elbo"], rel=1e-6)


def test_from_loss_result_errors():
    result = LossResult(objective=torch.tensor(1.0), diagnostics={"a": 1.0})
    with pytest.raises(TypeError, match="result: expected"):
        LossOutput.from_loss_result({"objective": torch.tensor(1.0)}, n_obs_minibatch=1)
    with pytest.raises(ValueError, match="reconstruction_loss .* or n_obs_minibatch"):
        LossOutput.from_loss_result(result)
    with pytest.raises(TypeError, match="extra_metrics"):
        LossOutput.from_loss_result(result, n_obs_minibatch=1, extra_metrics=[1.0])
    out = LossOutput.from_loss_result(LossResult(torch.tensor(1.0), {}), n_obs_minibatch=2)
    assert out.extra_metrics == {}


def test_to_loss_result_contents_and_one_transfer(monkeypatch, device):
    on = dict(device=device)
    rec = torch.rand(4, 3, **on)
    logits, labels = torch.randn(4, 2, **on), torch.tensor([0, 1, 1, 0], **on)
    out = LossOutput(
        loss=torch.tensor(3.0, **on),
        reconstruction_loss=rec,
        kl_local=torch.rand(4, **on),
        kl_global=torch.tensor([0.5, 0.25], **on),
        classification_loss={"c1": torch.tensor(0.5, **on), "c2": torch.tensor(1.0, **on)},
        logits=logits,
        true_labels=labels,
        extra_metrics={"s": torch.tensor(2.0, **on), "n": 3, "per_obs": torch.rand(4, **on), "nested": {"a": torch.tensor(1.0, **on)}},
    )
    calls = {"tolist": 0, "item": 0}
    tolist, item = torch.Tensor.tolist, torch.Tensor.item
    monkeypatch.setattr(torch.Tensor, "tolist", lambda self: calls.__setitem__("tolist", calls["tolist"] + 1) or tolist(self))
    monkeypatch.setattr(torch.Tensor, "item", lambda self: calls.__setitem__("item", calls["item"] + 1) or item(self))
    res = out.to_loss_result()
    assert calls == {"tolist": 1, "item": 0}
    monkeypatch.undo()
    assert list(res.diagnostics) == [
        "reconstruction_loss_sum", "kl_local_sum", "kl_global_sum", "classification_loss", "n_obs_minibatch", "s", "n",
    ]  # fmt: skip
    d = res.diagnostics
    assert d["reconstruction_loss_sum"] == pytest.approx(rec.sum().item(), rel=1e-6)
    assert d["kl_global_sum"] == pytest.approx(0.75)
    assert d["classification_loss"] == 1.5 and d["n_obs_minibatch"] == 4.0 and d["s"] == 2.0 and d["n"] == 3.0
    with pytest.raises(ValueError, match="clashes"):
        out.replace(extra_metrics={"kl_local_sum": torch.tensor(1.0, **on)}).to_loss_result()


# ================================================= backends, extension, exports
@needs_extension
def test_backends_agree(device):
    x, param, _, q_loc, q_scale = beta_vae_inputs("Normal", (6, 2, 5), latent=4)
    x, param, q_loc, q_scale = (t.float().to(device) for t in (x, param, q_loc, q_scale))
    bern_x, probs = torch.rand(6, 10).to(device), torch.sigmoid(torch.randn(6, 10)).to(device)
    lv = torch.tensor(AT_BOUNDS)
    mu, lv = torch.randn(lv.shape).to(device), lv.to(device)

    def run(backend):
        ins = [t.clone().requires_grad_() for t in (x, param, q_loc, q_scale, probs, mu, lv)]
        xx, pp, ql, qs, pr, m, v = ins
        with paf.use_backend(backend):
            outs = [
                *BetaVAELoss()(xx, Normal(pp, 1.0), Normal(ql, qs)).values(),
                BetaVAELoss(default_dist="laplace")(xx, pp, Normal(ql, qs))["loss"],
                BetaVAELoss(default_dist="bernoulli")(bern_x, pr, Normal(ql, qs))["loss"],
                kl_div_single_loss(m, v).sum(),
                kl_div_pair_loss(m, v, m.flip(0), v.flip(0)).sum(),
            ]
            g = torch.autograd.grad(sum(outs), ins)
        return outs, g

    (o_ext, g_ext), (o_ref, g_ref) = run("extension"), run("reference")
    for a, b in zip(o_ext, o_ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    for a, b in zip(g_ext, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * max(b.abs().max().item(), 1.0))


def _ops_seen(fn) -> set[str]:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return {e.key for e in prof.key_averages() if e.key.startswith("pyautoencoder_fast::")}


def _peer_workload(device):
    x = torch.rand(4, 6, device=device)
    p_param = torch.randn(4, 6, device=device, requires_grad=True)
    q_loc, q_scale = torch.randn(4, 3, device=device, requires_grad=True), torch.rand(4, 3, device=device).add(0.5).requires_grad_()
    mu, lv = torch.randn(4, 3, device=device, requires_grad=True), torch.randn(4, 3, device=device, requires_grad=True)

    def beta_vae(dist_fn):
        def run():
            BetaVAELoss()(x, dist_fn(p_param), Normal(q_loc, q_scale))["loss"].backward()
        return run

    return {
        "normal": (beta_vae(lambda a: Normal(a, 1.0)), {"log_likelihood_sum", "kl_diag_gaussian"}),
        "laplace": (beta_vae(lambda a: Laplace(a, 1.0)), {"log_likelihood_sum", "kl_diag_gaussian"}),
        "bernoulli": (beta_vae(lambda a: Bernoulli(logits=a)), {"log_likelihood_sum", "kl_diag_gaussian"}),
        "single": (lambda: kl_div_single_loss(mu, lv).sum().backward(), {"kl_diag_gaussian"}),
        "pair": (lambda: kl_div_pair_loss(mu, lv, lv, mu).sum().backward(), {"kl_diag_gaussian"}),
    }


@needs_extension
def test_extension_ops_are_used(device):
    for name, (run, ops) in _peer_workload(device).items():
        with paf.use_backend("extension"):
            seen = _ops_seen(run)
        expected = {f"pyautoencoder_fast::{op}" for op in ops} | {f"pyautoencoder_fast::{op}_backward" for op in ops}
        assert expected <= seen, (name, seen)
        with paf.use_backend("reference"):
            assert not _ops_seen(run), name


@needs_extension
def test_reference_not_called_on_extension(monkeypatch, device):
    calls = []

    def fail(*args, **kwargs):
        raise AssertionError("reference op called while the extension backend is active")

    for op in ("log_likelihood_sum", "kl_diag_gaussian", "log_likelihood"):
        monkeypatch.setattr(reference, op, fail)
    with paf.use_backend("extension"):
        for name, (run, _) in _peer_workload(device).items():
            run()
    monkeypatch.undo()
    original = reference.kl_diag_gaussian
    monkeypatch.setattr(reference, "kl_diag_gaussian", lambda *a: calls.append(1) or original(*a))
    with paf.use_backend("reference"):
        _peer_workload(device)["single"][0]()
    assert calls == [1]


def test_exports():
    names = ["BetaVAELoss", "UnsupportedDistributionError", "kl_div_single_loss", "kl_div_pair_loss", "LossOutput"]
    for name in names:
        assert name in L.__all__
    assert L.BetaVAELoss is nidl.BetaVAELoss and L.UnsupportedDistributionError is nidl.UnsupportedDistributionError
    assert L.kl_div_single_loss is ml_starter.kl_div_single_loss and L.kl_div_pair_loss is ml_starter.kl_div_pair_loss
    assert L.LossOutput is scvi.LossOutput
    for name in ("LikelihoodType", "LossResult", "kl_divergence_diag_gaussian", "log_likelihood"):
        assert name in L.__all__  # what was there stays
