"""Numerics: long reductions, limits at infinite and extreme inputs, and
double backward (refused with a clear error, never a silent None or zero)."""

import math

import pytest
import torch

import pyautoencoder_fast as paf
from pyautoencoder_fast import functional as F
from conftest import DTYPES, requires_extension

pytestmark = requires_extension
INF = math.inf


# ------------------------------------------------------------ long row sums
def _kl_terms64(mu, lv):
    mu, lv = mu.double(), lv.double()
    return 0.5 * (lv.exp() + mu**2 - 1 - lv)


def _gaussian_terms64(x, x_hat):
    return -0.5 * (x_hat.double() - x.double()) ** 2


@pytest.mark.parametrize("length", [10_000, 1_000_000, 10_000_000, 1 << 24])
@pytest.mark.parametrize("op", ["kl", "log_likelihood_sum", "elbo"])
def test_float32_row_sums_are_as_accurate_as_torch_sum(op, length):
    # One row of `length` positive terms, the worst case for a running sum.
    g = torch.Generator().manual_seed(length)
    a = torch.rand(1, length, generator=g)
    b = torch.rand(1, length, generator=g) * 0.5
    if op == "kl":
        ours = F.kl_diag_gaussian(a, b)[0]
        terms64 = _kl_terms64(a, b)
    elif op == "log_likelihood_sum":
        ours = -F.log_likelihood_sum(a, b.unsqueeze(1), "gaussian")[0, 0]
        terms64 = -_gaussian_terms64(a, b)
    else:  # the log-likelihood term of the fused ELBO (batch of one)
        stats = F.elbo_stats(a, b.unsqueeze(1), torch.zeros(1, 1), torch.zeros(1, 1), 1.0, "gaussian")
        ours = -stats[2]
        terms64 = -_gaussian_terms64(a, b)
    truth = terms64.sum().item()
    torch_error = abs(terms64.float().sum().item() - truth)
    our_error = abs(ours.item() - truth)
    # within a small factor of torch.sum on the same float32 terms (or of
    # the float32 rounding of the result itself, whichever is larger)
    assert our_error <= 4 * max(torch_error, 2**-24 * abs(truth)), (our_error, torch_error, truth)


def test_float64_row_sum_of_a_long_row():
    a = torch.rand(1, 3_000_000, dtype=torch.float64)
    ours = F.kl_diag_gaussian(a, a)[0].item()
    truth = math.fsum(_kl_terms64(a, a).flatten().tolist())
    assert abs(ours - truth) <= 1e-13 * abs(truth)


def test_infinite_terms_propagate_through_blocked_sums():
    mu = torch.zeros(3, 5000)
    lv = torch.zeros(3, 5000)
    mu[0, 4321] = INF
    lv[1, 17] = -INF
    mu[2, 4999] = math.nan
    kl = F.kl_diag_gaussian(mu, lv)
    assert kl[0] == INF and kl[1] == INF and math.isnan(kl[2])


# ----------------------------------------------------------------- limits
# (likelihood, x, x_hat, value, d value / d x_hat): the mathematical limits.
LIKELIHOOD_LIMITS = [
    ("bernoulli", 0.5, INF, -INF, -0.5),
    ("bernoulli", 0.5, -INF, -INF, 0.5),
    ("bernoulli", 1.0, INF, 0.0, 0.0),
    ("bernoulli", 0.0, -INF, 0.0, 0.0),
    ("bernoulli", 0.0, INF, -INF, -1.0),
    ("bernoulli", 1.0, -INF, -INF, 1.0),
    ("bernoulli", 0.25, math.nan, math.nan, math.nan),
    ("bernoulli", 0.0, math.nan, math.nan, math.nan),
    ("gaussian", 1.0, INF, -INF, -INF),
    ("gaussian", 1.0, -INF, -INF, INF),
    ("gaussian", INF, INF, math.nan, math.nan),
    ("laplace", 1.0, INF, -INF, -1.0),
    ("laplace", -2.0, -INF, -INF, 1.0),
    ("bernoulli_probs", 1.0, 0.0, -100.0, 1e12),
    ("bernoulli_probs", 0.0, 1.0, -100.0, -1e12),
    ("bernoulli_probs", 0.5, 1.0, -50.0, -0.5e12),
]


def _assert_same(actual, expected, dtype, what, rtol=None):
    actual = float(actual.detach()) if isinstance(actual, torch.Tensor) else float(actual)
    if math.isnan(expected):
        assert math.isnan(actual), (what, actual)
    elif math.isinf(expected):
        assert actual == expected, (what, actual)
    else:
        tol = {torch.float64: 1e-12, torch.float32: 1e-6, torch.float16: 1e-3, torch.bfloat16: 1e-2}[dtype]
        tol = max(tol, rtol or 0.0)
        assert abs(actual - expected) <= tol * max(1.0, abs(expected)), (what, actual, expected)


def _rounded(value, dtype):
    return torch.tensor(value, dtype=torch.float64).to(dtype).double().item()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", LIKELIHOOD_LIMITS, ids=lambda c: f"{c[0]}-x={c[1]}-x_hat={c[2]}")
@pytest.mark.parametrize("backend", ["extension", "reference"])
def test_likelihood_limits(case, dtype, backend):
    likelihood, x_value, x_hat_value, value, grad = case
    if likelihood == "bernoulli_probs" and not math.isnan(grad):
        grad = _rounded(grad, dtype) if abs(grad) < torch.finfo(dtype).max else math.copysign(INF, grad)
    # 19 columns: the vector body and the scalar tail both see the value
    x = torch.full((2, 19), x_value, dtype=dtype)
    x_hat = torch.full((2, 19), x_hat_value, dtype=dtype, requires_grad=True)
    with paf.use_backend(backend):
        ll = F.log_likelihood(x, x_hat, likelihood)
        (d,) = torch.autograd.grad(ll.sum(), x_hat)
        ll_sum = F.log_likelihood_sum(x, x_hat.unsqueeze(1), likelihood)
    for v in ll.flatten():
        _assert_same(v, value, dtype, "value")
    for v in d.flatten():  # (torch's binary_cross_entropy clamps at float32's 1e-12)
        _assert_same(v, grad, dtype, "grad", rtol=1e-6 if likelihood == "bernoulli_probs" else None)
    for v in ll_sum.flatten():
        _assert_same(v, value * 19 if not math.isnan(value) else value, dtype, "sum")


# (mu_q, lv_q, mu_p, lv_p, KL): None prior parameters mean the standard normal.
KL_LIMITS = [
    (0.0, INF, None, None, INF),
    (0.0, -INF, None, None, INF),
    (INF, 0.0, None, None, INF),
    (0.0, 0.0, None, None, 0.0),
    (1.0, INF, 1.0, 0.0, INF),
    (1.0, 0.0, 1.0, -INF, INF),
    (1.0, 0.0, 1.0, INF, INF),
    (1.0, INF, 1.0, INF, math.nan),
    (math.nan, 0.0, None, None, math.nan),
    (0.0, 1000.0, None, None, INF),  # exp overflows every dtype: KL is +inf there
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", KL_LIMITS, ids=str)
@pytest.mark.parametrize("backend", ["extension", "reference"])
def test_kl_limits(case, dtype, backend):
    mu_q, lv_q, mu_p, lv_p, expected = case
    full = lambda v: None if v is None else torch.full((2, 19), v, dtype=dtype)  # noqa: E731
    with paf.use_backend(backend):
        kl = F.kl_diag_gaussian(full(mu_q), full(lv_q), full(mu_p), full(lv_p), reduce_sum=False)
        kl_sum = F.kl_diag_gaussian(full(mu_q), full(lv_q), full(mu_p), full(lv_p))
    for v in kl.flatten():
        _assert_same(v, expected, dtype, "kl")
    for v in kl_sum.flatten():
        _assert_same(v, expected, dtype, "kl sum")


@pytest.mark.parametrize("dtype", DTYPES)
def test_extreme_finite_values(dtype):
    big = torch.finfo(dtype).max
    # KL at the largest finite log-variance: +inf (exp overflows), never NaN
    kl = F.kl_diag_gaussian(torch.zeros(1, 3, dtype=dtype), torch.full((1, 3), big, dtype=dtype))
    assert kl.item() == INF
    # Bernoulli at the largest finite logits: finite where the answer is
    ll = F.log_likelihood(torch.tensor([1.0, 0.0], dtype=dtype), torch.tensor([big, -big], dtype=dtype), "bernoulli")
    assert torch.equal(ll, torch.zeros(2, dtype=dtype))
    ll = F.log_likelihood(torch.tensor([0.0, 0.5], dtype=dtype), torch.tensor([big, big], dtype=dtype), "bernoulli")
    expected = torch.tensor([-big, -0.5 * big], dtype=torch.float64).to(dtype)
    torch.testing.assert_close(ll, expected, rtol=1e-2, atol=0)
    # reparameterize with a huge log-variance: z is +-inf, mu's gradient still exact
    mu = torch.zeros(2, 3, dtype=dtype, requires_grad=True)
    lv = torch.full((2, 3), 2000.0, dtype=dtype, requires_grad=True)  # std overflows in every dtype
    z = F.reparameterize(mu, lv, 2)
    assert torch.isinf(z).all()
    (g_mu,) = torch.autograd.grad(z.sum(), mu)
    assert torch.equal(g_mu, torch.full_like(g_mu, 2.0))


# --------------------------------------------------------- double backward
def _double_backward_cases():
    x = torch.rand(3, 4, dtype=torch.float64)
    t = lambda *s: torch.randn(*s, dtype=torch.float64, requires_grad=True)  # noqa: E731
    return {
        "log_likelihood": (lambda h: F.log_likelihood(x, h, "bernoulli").sum(), t(3, 4)),
        "log_likelihood_sum": (lambda h: F.log_likelihood_sum(x, h, "gaussian").sum(), t(3, 2, 4)),
        "kl_diag_gaussian": (lambda m: F.kl_diag_gaussian(m, m * 0.5).sum(), t(3, 4)),
        "reparameterize": (lambda lv: (F.reparameterize(lv * 0, lv, 2) ** 2).sum(), t(3, 4)),
        "elbo": (lambda h: F.elbo_stats(x, h, torch.zeros(3, 2), torch.zeros(3, 2), 1.0, "bernoulli")[0], t(3, 1, 4)),
        "adagvae_posterior": (lambda m: sum(o.sum() for o in F.adagvae_posterior(m, m * 2, m * 3, m)[:4]), t(3, 4)),
    }


@pytest.mark.parametrize("name", sorted(_double_backward_cases()))
def test_double_backward_is_refused_clearly(name):
    fn, inp = _double_backward_cases()[name]
    torch.manual_seed(1)  # the same noise for both calls (reparameterize)
    (g,) = torch.autograd.grad(fn(inp), inp, create_graph=True)
    # first-order gradients are unaffected by create_graph
    torch.manual_seed(1)
    (g_plain,) = torch.autograd.grad(fn(inp), inp)
    torch.testing.assert_close(g.detach(), g_plain)
    with pytest.raises(RuntimeError, match=f"pyautoencoder_fast::{name}: double backward .* not supported"):
        torch.autograd.grad(g.pow(2).sum(), inp, allow_unused=True)


@pytest.mark.parametrize("name", sorted(_double_backward_cases()))
def test_double_backward_works_on_the_reference_backend(name):
    fn, inp = _double_backward_cases()[name]
    with paf.use_backend("reference"):
        (g,) = torch.autograd.grad(fn(inp), inp, create_graph=True)
        (gg,) = torch.autograd.grad(g.pow(2).sum(), inp, allow_unused=True)
    assert gg is not None or name == "reparameterize"
