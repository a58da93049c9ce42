"""log_likelihood (elementwise) against the oracle."""

import pytest
import torch

import pyautoencoder_fast as paf
from pyautoencoder_fast import functional as F
from pyautoencoder_fast import reference
from conftest import DTYPES, LIKELIHOODS, check_against_oracle, log_var_input, random_inputs, requires_extension

pytestmark = requires_extension
ops = torch.ops.pyautoencoder_fast

# (x shape, x_hat shape): odd feature counts (not multiples of the vector
# width), B = 1, B = 0, broadcasting either way.
ELEMENTWISE_SHAPES = [
    ((3, 17), (3, 17)),
    ((1, 1), (1, 1)),
    ((0, 5), (0, 5)),
    ((2, 3, 33), (2, 3, 33)),
    ((1, 19), (4, 19)),  # x broadcast over the batch
    ((4, 19), (19,)),  # x_hat broadcast
    ((5, 1), (5, 7)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("likelihood", LIKELIHOODS)
@pytest.mark.parametrize("shapes", ELEMENTWISE_SHAPES, ids=str)
def test_log_likelihood_matches_oracle(dtype, likelihood, shapes, device):
    x = random_inputs(shapes[0], likelihood, torch.float64, target=True, requires_grad=True)
    x_hat = random_inputs(shapes[1], likelihood, torch.float64, requires_grad=True)
    check_against_oracle(lambda a, b: F.log_likelihood(a, b, likelihood), [x, x_hat], dtype, device=device)


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_log_likelihood_non_contiguous(likelihood, device):
    x = random_inputs((33, 6), likelihood, torch.float64, target=True).t().requires_grad_()
    x_hat = random_inputs((6, 66), likelihood, torch.float64)[:, ::2].requires_grad_()
    assert not x.is_contiguous() and not x_hat.is_contiguous()
    check_against_oracle(lambda a, b: F.log_likelihood(a, b, likelihood), [x, x_hat], torch.float32, device=device)


def test_bernoulli_is_stable_for_large_logits(device):
    x = torch.tensor([0.0, 1.0, 0.0, 1.0, 0.5], device=device)
    logits = torch.tensor([200.0, -200.0, -200.0, 200.0, 80.0], device=device, requires_grad=True)
    ll = F.log_likelihood(x, logits, "bernoulli")
    expected = -torch.nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none")
    torch.testing.assert_close(ll, expected)
    assert torch.isfinite(ll).all()
    ll.sum().backward()
    assert torch.isfinite(logits.grad).all()


def test_likelihood_names_are_case_insensitive():
    x, x_hat = torch.rand(2, 3), torch.randn(2, 3)
    torch.testing.assert_close(F.log_likelihood(x, x_hat, "BeRnOuLLi"), F.log_likelihood(x, x_hat, "bernoulli"))
    assert reference.LIKELIHOODS == ("gaussian", "bernoulli", "laplace", "bernoulli_probs")


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_nan_propagates_to_value_and_gradient(likelihood, device):
    # 20 elements: NaN both in the vectorised body and in the scalar tail.
    x_hat = torch.rand(20, device=device) if likelihood == "bernoulli_probs" else torch.randn(20, device=device)
    x_hat[3] = x_hat[19] = float("nan")
    x_hat.requires_grad_()
    x = torch.rand(20, device=device)
    latent = torch.zeros(1, 2, device=device)
    if likelihood == "bernoulli_probs" and device.type == "cpu":
        # The functions refuse a NaN probability on the CPU (next tests);
        # the ops themselves propagate it.
        with pytest.raises(ValueError, match=r"x_hat: expected probabilities in \[0, 1\], found nan"):
            F.log_likelihood_sum(x.unsqueeze(0), x_hat.unsqueeze(0), likelihood)
        ll_sum = lambda a, b: ops.log_likelihood_sum(a, b.unsqueeze(1), likelihood)  # noqa: E731
        elbo_stats = lambda a, b: ops.elbo(a, b.unsqueeze(1), latent, latent, 1.0, likelihood, True)[0]  # noqa: E731
    else:
        ll_sum = lambda a, b: F.log_likelihood_sum(a, b, likelihood)  # noqa: E731
        elbo_stats = lambda a, b: F.elbo_stats(a, b, latent, latent, 1.0, likelihood)  # noqa: E731
    ll = ll_sum(x.unsqueeze(0), x_hat.unsqueeze(0))
    assert torch.isnan(ll).all()
    stats = elbo_stats(x.unsqueeze(0), x_hat.unsqueeze(0))
    (grad,) = torch.autograd.grad(stats[0], x_hat)
    assert torch.isnan(grad[[3, 19]]).all() and torch.isfinite(grad[[0, 1, 2, 4]]).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bernoulli_probs_is_undefined_outside_the_unit_interval(dtype, device):
    # torch's binary_cross_entropy refuses targets or probabilities outside
    # [0, 1] (on CUDA with a device-side assert); the kernels give NaN there
    # (body and scalar tail), and finite values at the ends 0 and 1. On CUDA
    # the functions return that NaN (checking would sync the device); on
    # the CPU they raise (next test), so the ops are called directly there.
    x, p = torch.rand(3, 21, dtype=dtype, device=device), torch.rand(3, 21, dtype=dtype, device=device)
    x[0, :] = torch.tensor([0.0, 1.0] * 10 + [0.5], dtype=dtype, device=device)
    x[1, 4], x[1, 20], x[2, 7] = 1.5, -0.25, 0.5
    p[2, 7] = 1.25
    if device.type == "cpu":
        value = ops.log_likelihood(x, p, "bernoulli_probs")
        sums = ops.log_likelihood_sum(x, p.unsqueeze(1), "bernoulli_probs")[:, 0]
    else:
        value = F.log_likelihood(x, p, "bernoulli_probs")
        sums = F.log_likelihood_sum(x, p, "bernoulli_probs")[:, 0]
    bad = torch.zeros(3, 21, dtype=torch.bool, device=device)
    bad[1, 4] = bad[1, 20] = bad[2, 7] = True
    assert value[bad].isnan().all() and value[~bad].isfinite().all()
    assert sums[0].isfinite() and sums[1:].isnan().all()
    torch.testing.assert_close(value[0], -torch.nn.functional.binary_cross_entropy(p[0], x[0], reduction="none"))
    torch.testing.assert_close(F.log_likelihood(x[0], p[0], "bernoulli_probs"), value[0])  # the valid row passes


# The functions that take "bernoulli_probs", each as f(x, x_hat) (x_hat [B, F]).
BERNOULLI_PROBS_CALLS = {
    "log_likelihood": lambda x, p: F.log_likelihood(x, p, "bernoulli_probs"),
    "log_likelihood_sum": lambda x, p: F.log_likelihood_sum(x, p, "bernoulli_probs"),
    "log_likelihood_sum/samples": lambda x, p: F.log_likelihood_sum(x, torch.stack([p.flip(0), p], 1), "bernoulli_probs"),
    "elbo": lambda x, p: F.elbo(x, p, torch.zeros(x.shape[0], 2), torch.zeros(x.shape[0], 2), likelihood="bernoulli_probs"),
    "elbo_stats/samples": lambda x, p: F.elbo_stats(
        x, torch.stack([p, p.flip(0)], 1), torch.zeros(x.shape[0], 2), torch.zeros(x.shape[0], 2), 2.0, "bernoulli_probs"
    ),
    "loss.log_likelihood": lambda x, p: paf.loss.log_likelihood(x, p, "bernoulli_probs"),
}


@pytest.mark.parametrize("call", list(BERNOULLI_PROBS_CALLS))
@pytest.mark.parametrize(
    "where, value, message",
    [
        ("x_hat", 2.5, r"x_hat: expected probabilities in \[0, 1\], found 2.5"),
        ("x_hat", -0.75, r"x_hat: expected probabilities in \[0, 1\], found -0.75"),
        ("x_hat", float("nan"), r"x_hat: expected probabilities in \[0, 1\], found nan"),
        ("x", 1.5, r"x: expected targets in \[0, 1\], found 1.5"),
        ("x", float("nan"), r"x: expected targets in \[0, 1\], found nan"),
    ],
)
def test_bernoulli_probs_refuses_values_outside_the_unit_interval_on_cpu(call, where, value, message):
    # torch's binary_cross_entropy raises on the CPU for probabilities (e.g.
    # logits passed by mistake) or targets outside [0, 1]; the fused result
    # is NaN there, and a NaN result is looked into: ValueError naming the
    # argument and its first bad value (17 columns: body and scalar tail).
    x, p = torch.rand(4, 17), torch.rand(4, 17)
    (p if where == "x_hat" else x)[2, 16] = value
    with pytest.raises(ValueError, match=message):
        BERNOULLI_PROBS_CALLS[call](x, p)
    (p if where == "x_hat" else x)[2, 16] = 0.5
    assert BERNOULLI_PROBS_CALLS[call](x, p)[0].isfinite().all()


def test_bernoulli_probs_refusal_counts_the_bad_values_and_looks_only_into_nan_results(monkeypatch):
    x, p = torch.rand(3, 9, dtype=torch.float64), torch.randn(3, 9, dtype=torch.float64) * 4  # logits by mistake
    outside = int(((p < 0) | (p > 1)).sum())
    with pytest.raises(ValueError, match=rf"x_hat: .*\(and {outside - 1} more outside the domain\)"):
        F.log_likelihood_sum(x, p, "bernoulli_probs")
    # Integer targets are promoted, and checked like floating ones.
    with pytest.raises(ValueError, match=r"x: expected targets in \[0, 1\], found 2"):
        F.log_likelihood(torch.tensor([[0, 1, 2]]), torch.full((1, 3), 0.5), "bernoulli_probs")
    # A valid call reads nothing beyond the isnan of its result; other
    # likelihoods never look.
    seen = []
    for name, (what, ok) in list(F._PROBABILITY_DOMAINS.items()):
        monkeypatch.setitem(F._PROBABILITY_DOMAINS, name, (what, lambda t, ok=ok: seen.append(t) or ok(t)))
    F.log_likelihood(x, p.sigmoid(), "bernoulli_probs")
    F.elbo(x, p.sigmoid(), torch.zeros(3, 2), torch.zeros(3, 2), likelihood="bernoulli_probs")
    assert F.log_likelihood_sum(x, p, "gaussian").isfinite().all()
    assert seen == []


def test_integer_and_bool_targets_are_promoted(device):
    x_hat = torch.randn(4, 9, device=device)
    bits = [torch.randint(0, 2, (4, 9), device=device) for _ in range(3)]
    for target in (bits[0], bits[1].bool(), bits[2].to(torch.uint8)):
        for likelihood in ("gaussian", "bernoulli", "laplace"):
            expected = F.log_likelihood(target.float(), x_hat, likelihood)
            torch.testing.assert_close(F.log_likelihood(target, x_hat, likelihood), expected)
            torch.testing.assert_close(F.log_likelihood_sum(target, x_hat, likelihood)[:, 0], expected.sum(1))


# ------------------------------------------ the Gaussian with a learned variance
# (x shape, x_hat shape, x_log_var shape): per element, per feature, a 0-d
# scalar, broadcast against x too, an empty batch.
LOG_VAR_ELEMENTWISE_SHAPES = [
    ((3, 17), (3, 17), (3, 17)),
    ((3, 17), (3, 17), (17,)),
    ((3, 17), (3, 17), ()),
    ((1, 19), (4, 19), (4, 1)),
    ((5, 1), (5, 7), (1, 7)),
    ((0, 5), (0, 5), (5,)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shapes", LOG_VAR_ELEMENTWISE_SHAPES, ids=str)
def test_log_likelihood_with_log_var_matches_oracle(dtype, shapes, device):
    x = random_inputs(shapes[0], "gaussian", torch.float64, target=True, requires_grad=True)
    x_hat = random_inputs(shapes[1], "gaussian", torch.float64, requires_grad=True)
    fn = lambda a, b, c: F.log_likelihood(a, b, "gaussian", c)
    check_against_oracle(fn, [x, x_hat, log_var_input(shapes[2])], dtype, device=device, what="log_likelihood(x_log_var)")


def test_log_var_zero_is_the_unit_gaussian(device):
    # elementwise bit for bit; summed, up to the order of the float32
    # roundings (the compiler may fuse a multiply-add differently)
    x = torch.randn(6, 3, 37, device=device)
    x_hat = torch.randn(6, 3, 37, device=device)
    zero = torch.zeros(37, device=device)
    assert torch.equal(F.log_likelihood(x, x_hat, "gaussian", zero), F.log_likelihood(x, x_hat))
    torch.testing.assert_close(F.log_likelihood_sum(x[:, 0], x_hat, "gaussian", zero),
                               F.log_likelihood_sum(x[:, 0], x_hat), rtol=1e-6, atol=0)


@pytest.mark.parametrize("lv_shape", [(4, 3, 9), (9,), ()], ids=str)
def test_log_var_gradcheck(lv_shape, device):
    x = torch.randn(4, 9, dtype=torch.float64, device=device, requires_grad=True)
    x_hat = torch.randn(4, 3, 9, dtype=torch.float64, device=device, requires_grad=True)
    lv = (torch.randn(lv_shape, dtype=torch.float64, device=device) * 0.5).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b, c: F.log_likelihood_sum(a, b, "gaussian", c), (x, x_hat, lv))
    assert torch.autograd.gradcheck(lambda a, b, c: F.log_likelihood(a[:, None], b, "gaussian", c), (x, x_hat, lv))


def test_log_var_accumulates_a_broadcast_gradient_in_float(device):
    # A 0-d log-variance of bfloat16 over many elements: its gradient sums
    # 2^16 terms, which bfloat16 additions would lose.
    x = torch.zeros(64, 1024, device=device, dtype=torch.bfloat16)
    x_hat = torch.full((64, 1, 1024), 2.0, device=device, dtype=torch.bfloat16)
    lv = torch.zeros((), device=device, dtype=torch.bfloat16, requires_grad=True)
    F.log_likelihood_sum(x, x_hat, "gaussian", lv).sum().backward()
    # d/dlv = 0.5 * (d^2 exp(-lv) - 1) = 1.5 per element
    assert lv.grad.item() == pytest.approx(1.5 * 64 * 1024, rel=1e-2)
    lv.grad = None
    F.log_likelihood(x[:, None], x_hat, "gaussian", lv).sum().backward()
    assert lv.grad.item() == pytest.approx(1.5 * 64 * 1024, rel=1e-2)


def test_log_var_edge_values(device):
    x = torch.tensor([0.0, 0.0, 1.0, 0.0], device=device)
    x_hat = torch.tensor([0.0, 1.0, 1.0, 0.5], device=device)
    lv = torch.tensor([float("-inf"), float("inf"), 0.0, float("nan")], device=device)
    ll = F.log_likelihood(x, x_hat, "gaussian", lv)
    # zero variance at zero residual: an infinite density; infinite variance: -inf
    assert ll[0].item() == float("inf") and ll[1].item() == float("-inf") and ll[2].item() == 0.0
    assert ll[3].isnan()
    with paf.use_backend("reference"):
        expected = F.log_likelihood(x, x_hat, "gaussian", lv)
    torch.testing.assert_close(ll, expected, equal_nan=True)


def test_log_var_bad_arguments():
    x, x_hat = torch.zeros(2, 3), torch.zeros(2, 3)
    with pytest.raises(ValueError, match="x_log_var: only likelihood 'gaussian' takes a log-variance, got 'bernoulli'"):
        F.log_likelihood(x, x_hat, "bernoulli", torch.zeros(3))
    with pytest.raises(ValueError, match="x_log_var: only likelihood 'gaussian'"):
        F.log_likelihood_sum(x, x_hat, "laplace", torch.zeros(3))
    with pytest.raises(ValueError, match=r"x_log_var: shape \(4,\) does not broadcast to x_hat's \(2, 3\)"):
        F.log_likelihood_sum(x, x_hat, "gaussian", torch.zeros(4))
    with pytest.raises(ValueError, match=r"x_log_var: shape \(2, 2, 3\) does not broadcast"):
        F.log_likelihood_sum(x, x_hat[:, None], "gaussian", torch.zeros(2, 2, 3))
    with pytest.raises(TypeError, match="x_log_var"):
        F.log_likelihood(x, x_hat, "gaussian", torch.zeros(3, dtype=torch.long))
    with pytest.raises(TypeError, match="x_log_var"):
        F.log_likelihood(x, x_hat, "gaussian", 0.0)
    ops = torch.ops.pyautoencoder_fast
    with pytest.raises(ValueError, match="x_log_var: only likelihood 'gaussian'"):
        ops.log_likelihood_sum(x, x_hat[:, None], "bernoulli", torch.zeros(3))
    with pytest.raises(RuntimeError, match=r"x_log_var: shape \[4\] does not broadcast to x_hat's \[2, 1, 3\]"):
        ops.log_likelihood_sum(x, x_hat[:, None], "gaussian", torch.zeros(4))
    with pytest.raises(ValueError, match="wrt: 'x_log_var' needs x_log_var"):
        ops.log_likelihood_sum_backward(torch.zeros(2, 1), x, x_hat[:, None], "gaussian", "x_log_var")
    with pytest.raises(ValueError, match="wrt: expected 'x', 'x_hat' or 'x_log_var', got 'mu'"):
        ops.log_likelihood_backward(x, x, x_hat, "gaussian", "mu")
