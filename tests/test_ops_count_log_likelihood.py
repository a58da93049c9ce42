"""count_log_likelihood (nb, zinb, poisson) against the oracle, and its
accuracy at large dispersions against mpmath."""

from __future__ import annotations

import math

import mpmath
import pytest
import torch

import pyautoencoder_fast as paf
from pyautoencoder_fast import functional as F
from pyautoencoder_fast import reference
from conftest import DTYPES, check_against_oracle, nb_log_pmf_mpmath, requires_extension

pytestmark = requires_extension

COUNT_LIKELIHOODS = ["nb", "zinb", "poisson"]
OP = torch.ops.pyautoencoder_fast.count_log_likelihood.default


def _counts(shape, generator=None):
    """Counts with many zeros and a long tail, as float64."""
    rates = torch.exp(torch.randn(shape, dtype=torch.float64, generator=generator) * 1.5)
    return torch.poisson(rates, generator=generator)


def _params(likelihood, shape, theta_shape, *, grad=True):
    """mu [shape], theta [theta_shape] (spanning both sides of theta = 10)
    and zi_logits [shape], as float64 leaves (None where not used)."""
    mu = (torch.exp(torch.randn(shape, dtype=torch.float64)) * 3).requires_grad_(grad)
    theta = None
    if likelihood != "poisson":
        theta = torch.exp(torch.randn(theta_shape, dtype=torch.float64) * 2.5).requires_grad_(grad)
    zi = torch.randn(shape, dtype=torch.float64).requires_grad_(grad) if likelihood == "zinb" else None
    return mu, theta, zi


def _fn(likelihood, reduce_sum):
    return lambda x, mu, th, zi: F.count_log_likelihood(x, mu, th, zi, likelihood=likelihood, reduce_sum=reduce_sum)


# (mu / x shape, theta shape)
CASES = [
    ((6, 40), (40,)),  # theta per gene
    ((5, 33), (5, 33)),  # theta per cell and gene
    ((4, 7), (1, 7)),
    ((3, 3), (3, 1)),  # theta per cell, as many cells as genes (not per gene)
    ((3, 1), (1,)),
    ((2, 3, 17), (17,)),
    ((0, 9), (9,)),
    ((3, 0), (0,)),
    ((2, 300), (300,)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduce_sum", [False, True], ids=["elementwise", "sum"])
@pytest.mark.parametrize("likelihood", COUNT_LIKELIHOODS)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_count_matches_oracle(dtype, reduce_sum, likelihood, case, device):
    shape, theta_shape = case
    mu, theta, zi = _params(likelihood, shape, theta_shape)
    check_against_oracle(_fn(likelihood, reduce_sum), [_counts(shape), mu, theta, zi], dtype, device=device)


@pytest.mark.parametrize("likelihood", COUNT_LIKELIHOODS)
def test_count_non_contiguous_and_broadcast(likelihood, device):
    """Transposed mu, a sliced x and zi_logits broadcast from one column."""
    mu_t, theta, _ = _params(likelihood, (50, 6), (6,))
    mu = mu_t.detach().t().requires_grad_()  # [6, 50], columns strided
    x = _counts((6, 100))[:, ::2]
    zi = torch.randn(6, 1, dtype=torch.float64).requires_grad_() if likelihood == "zinb" else None
    theta = torch.exp(torch.randn(50, dtype=torch.float64)).requires_grad_() if theta is not None else None
    for reduce_sum in (False, True):
        check_against_oracle(_fn(likelihood, reduce_sum), [x, mu, theta, zi], torch.float32, device=device)


@pytest.mark.parametrize("likelihood", COUNT_LIKELIHOODS)
@pytest.mark.parametrize("reduce_sum", [False, True], ids=["elementwise", "sum"])
def test_count_gradient_of_x(likelihood, reduce_sum, device):
    """d/dx (a continuous relaxation of the counts), at x > 0 (at 0 torch's
    xlogy takes the derivative of x log mu as 0, the kernels as log mu)."""
    x = (_counts((4, 21)) + 0.25).requires_grad_()
    mu, theta, zi = _params(likelihood, (4, 21), (21,))
    check_against_oracle(_fn(likelihood, reduce_sum), [x, mu, theta, zi], torch.float64, device=device)
    check_against_oracle(_fn(likelihood, reduce_sum), [x, mu, theta, zi], torch.float32, device=device)


@pytest.mark.parametrize("likelihood", COUNT_LIKELIHOODS)
@pytest.mark.parametrize("reduce_sum", [False, True], ids=["elementwise", "sum"])
def test_count_gradcheck(likelihood, reduce_sum, device):
    x = (_counts((3, 12)) + 0.5).to(device).requires_grad_()
    mu, theta, zi = (t.detach().to(device).requires_grad_() if t is not None else None
                     for t in _params(likelihood, (3, 12), (12,)))
    if theta is not None:
        with torch.no_grad():
            theta[::3] *= 40  # the large-theta branch too
    fn = lambda *a: F.count_log_likelihood(*a, likelihood=likelihood, reduce_sum=reduce_sum)
    assert torch.autograd.gradcheck(fn, (x, mu, theta, zi), eps=1e-6, atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("likelihood", COUNT_LIKELIHOODS)
def test_count_opcheck(likelihood, device):
    x = _counts((3, 10)).float().to(device)
    mu, theta, zi = (t.detach().float().to(device).requires_grad_() if t is not None else None
                     for t in _params(likelihood, (3, 10), (10,)))
    for reduce_sum in (False, True):
        for need_grad, need_grad_x in ((False, False), (True, False), (True, True)):
            torch.library.opcheck(OP, (x, mu, theta, zi, likelihood, 1e-8, reduce_sum, need_grad, need_grad_x))


@pytest.mark.parametrize("dynamic", [False, True])
@pytest.mark.parametrize("likelihood", COUNT_LIKELIHOODS)
def test_count_compiles_fullgraph(likelihood, dynamic, device):
    """(dynamic=True once broke the graph: the default eps arrived as a
    symbolic float, which math.isfinite refused.)"""
    torch._dynamo.reset()
    x = _counts((4, 24)).float().to(device)
    mu, theta, zi = (t.detach().float().to(device).requires_grad_() if t is not None else None
                     for t in _params(likelihood, (4, 24), (24,)))

    def loss(x, mu, theta, zi):
        return -F.count_log_likelihood(x, mu, theta, zi, likelihood=likelihood, reduce_sum=True).mean()

    compiled = torch.compile(loss, fullgraph=True, dynamic=dynamic, backend="aot_eager")
    params = [t for t in (mu, theta, zi) if t is not None]
    eager_value = loss(x, mu, theta, zi)
    eager_grads = torch.autograd.grad(eager_value, params)
    value = compiled(x, mu, theta, zi)
    grads = torch.autograd.grad(value, params)
    torch.testing.assert_close(value, eager_value)
    for g, e in zip(grads, eager_grads):
        torch.testing.assert_close(g, e)


def test_count_retain_graph_and_grad_output(device):
    """Two backwards of one graph (the derivative buffers are not consumed)
    and a per-row gradient that is not 1."""
    x = _counts((5, 30)).to(device)
    mu, theta, zi = (t.detach().to(device).requires_grad_() for t in _params("zinb", (5, 30), (30,)))
    out = F.count_log_likelihood(x, mu, theta, zi, likelihood="zinb", reduce_sum=True)
    g = torch.linspace(-2, 3, 5, dtype=torch.float64, device=device)
    first = torch.autograd.grad(out, (mu, theta, zi), g, retain_graph=True)
    second = torch.autograd.grad(out, (mu, theta, zi), g)
    with paf.use_backend("reference"):
        ref = torch.autograd.grad(F.count_log_likelihood(x, mu, theta, zi, likelihood="zinb", reduce_sum=True),
                                  (mu, theta, zi), g)
    for a, b, r in zip(first, second, ref):
        assert torch.equal(a, b)
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-12)


def test_count_scalar_arguments():
    rate, x = torch.tensor(3.0), torch.tensor(2.0)
    torch.testing.assert_close(F.count_log_likelihood(x, rate, likelihood="poisson"),
                               torch.distributions.Poisson(rate).log_prob(x))


# ------------------------------------------------------------ large theta


THETAS = [0.05, 1.0, 9.99, 10.0, 1e2, 1e4, 1e6, 1e8]
MUS = [1e-3, 5.0, 1e3]
XS = [0.0, 1.0, 2.0, 5.0, 50.0, 500.0, 1e5]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_nb_accurate_at_any_theta(dtype, device):
    """Within a few roundings of the terms' size: 8 eps (|value| +
    lgamma(x + 1) + x |log mu| + 1, and below theta = 10 the two lgammas of
    the difference), against mpmath, at theta up to 1e8 and counts up to
    1e5, where scvi's float32 formula is off by up to hundreds."""
    grid = [(x, m, t) for t in THETAS for m in MUS for x in XS]
    x, mu, theta = (torch.tensor(col, dtype=dtype, device=device) for col in zip(*grid))
    ours = F.count_log_likelihood(x, mu, theta, likelihood="nb").double().cpu()
    eps = torch.finfo(dtype).eps
    for i, (xv, mv, tv) in enumerate(grid):
        xv, mv, tv = float(x[i]), float(mu[i]), float(theta[i])  # the rounded inputs
        with mpmath.workdps(40):
            truth = float(nb_log_pmf_mpmath(xv, mv, tv))
        scale = abs(truth) + math.lgamma(xv + 1) + xv * abs(math.log(mv + 1e-8)) + 1
        if tv < 10:  # the kernels' lgamma(x + theta) - lgamma(theta), each shifted by 10: terms of ~10-20
            scale += abs(math.lgamma(tv)) + abs(math.lgamma(xv + tv))
        assert abs(float(ours[i]) - truth) <= 8 * eps * scale, (xv, mv, tv, float(ours[i]), truth)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_nb_gradients_accurate_at_any_theta(dtype, device):
    """d/dmu and d/dtheta against mpmath's derivatives, within 64 eps of the
    size of the terms they are formed from (d/dtheta is O(1/theta^2) at
    large theta: the formula must not cancel terms of O(1/theta))."""
    grid = [(x, m, t) for t in THETAS[:-1] for m in MUS[:2] for x in XS[:-1]]
    cols = [torch.tensor(col, dtype=dtype, device=device) for col in zip(*grid)]
    x, mu, theta = cols[0], cols[1].requires_grad_(), cols[2].requires_grad_()
    d_mu, d_theta = torch.autograd.grad(F.count_log_likelihood(x, mu, theta, likelihood="nb").sum(), (mu, theta))
    eps = torch.finfo(dtype).eps
    for i in range(len(grid)):
        xv, mv, tv = float(x[i]), float(mu[i]), float(theta[i])
        for got, wrt in ((d_mu[i], 1), (d_theta[i], 2)):
            args = [xv, mv, tv]
            f = lambda v: nb_log_pmf_mpmath(*(args[:wrt] + [v] + args[wrt + 1:]))
            with mpmath.workdps(50):
                truth = float(mpmath.diff(f, mpmath.mpf(args[wrt])))
            # d/dmu = theta (x - m) / (m (theta + m)), m = mu + eps: x - m is as
            # exact as its inputs are (x = mu: only eps is left), so its scale
            # is x / m. d/dtheta from the Stirling form (theta >= 10) is held
            # to its own size; below, digamma(x + theta) - digamma(theta) -
            # x / (theta + m) may cancel, so its terms set the scale.
            # (theta >= 10: digamma(x + theta) - digamma(theta) - x / theta is
            # formed from log1p(t) - t and x / (2 theta (theta + x)), t = x /
            # theta, which cancel to O(x / theta^2): their size sets the scale.)
            scale = abs(truth)
            if wrt == 1:
                scale += xv / (mv + 1e-8)
            elif tv < 10:
                scale += abs(float(mpmath.digamma(tv))) + abs(float(mpmath.digamma(xv + tv))) + xv / (tv + mv)
            else:
                scale += (xv / tv) ** 2 / 2 + xv / (2 * tv * (tv + xv))
            assert abs(float(got) - truth) <= 64 * eps * scale + 1e-300, (wrt, xv, mv, tv, float(got), truth)


# ------------------------------------------------------------- any count
# Counts to 2^24 (and the 3e7 of a bulk sample), means from 1e-6 to 1e8,
# inverse dispersions from 1e-3 to 1e8: the log-pmf is O(log x) there while
# its terms are O(x log x).
ANY_XS = [1.0, 2.0, 7.0, 31.0, 32.0, 33.0, 100.0, 255.0, 256.0, 1000.0, 3e4, 1e6, 3e6, 2.0**24, 3e7]
ANY_MUS = [1e-6, 1e-2, 1.0, 30.0, 1e3, 1e5, 3.1e6, 2e7, 1e8]
ANY_THETAS = [1e-3, 0.3, 9.99, 10.0, 50.0, 1e3, 1e5, 1e8]


def _poisson_truth(x, m):
    x, m = mpmath.mpf(x), mpmath.mpf(m)
    return x * mpmath.log(m) - m - mpmath.loggamma(x + 1)


def _any_count_tolerance(dtype, truth):
    """The goal: max(1e-4, 1e-5 |log p|) nats in float32; a thousand times
    tighter in float64."""
    scale = 1.0 if dtype == torch.float32 else 1e-3
    return scale * max(1e-4, 1e-5 * abs(truth))


def _rounded(dtype, *columns):
    return [torch.tensor(c, dtype=dtype) for c in columns]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("likelihood", ["nb", "zinb"])
def test_nb_accurate_at_any_count(dtype, likelihood):
    """NB and ZINB (x > 0) against mpmath at every count, mean and dispersion
    of the grid, including the two bulk-count cases where the sum of the
    terms in float32 gave +32.0 (value -20.908) and -16.0 (value -12.911)."""
    grid = [(x, m, t) for t in ANY_THETAS for m in ANY_MUS for x in ANY_XS]
    grid += [(3e7, 2e7, 50.0), (3e6, 3.1e6, 1000.0)]
    x, mu, theta = _rounded(dtype, *zip(*grid))
    pi = torch.full_like(mu, -1.5)
    args = (pi,) if likelihood == "zinb" else ()
    ours = F.count_log_likelihood(x, mu, theta, *args, likelihood=likelihood).double()
    worst = []
    for i in range(len(grid)):
        xv, mv, tv = float(x[i]), float(mu[i]), float(theta[i])
        with mpmath.workdps(40):
            truth = nb_log_pmf_mpmath(xv, mv, tv)
            if likelihood == "zinb":
                truth -= mpmath.log1p(mpmath.exp(-1.5))  # - softplus(pi)
            truth = float(truth)
        err = abs(float(ours[i]) - truth)
        if not err <= _any_count_tolerance(dtype, truth):
            worst.append((xv, mv, tv, float(ours[i]), truth))
    assert not worst, f"{len(worst)} of {len(grid)} off: {worst[:8]}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_poisson_accurate_at_any_count(dtype):
    grid = [(x, m) for m in ANY_MUS for x in [0.0] + ANY_XS]
    x, mu = _rounded(dtype, *zip(*grid))
    ours = F.count_log_likelihood(x, mu, likelihood="poisson").double()
    for i in range(len(grid)):
        xv, mv = float(x[i]), float(mu[i])
        with mpmath.workdps(40):
            truth = float(_poisson_truth(xv, mv))
        assert abs(float(ours[i]) - truth) <= _any_count_tolerance(dtype, truth), (xv, mv, float(ours[i]), truth)


@pytest.mark.parametrize("likelihood", ["nb", "zinb"])
def test_infinite_theta_is_the_poisson_limit(likelihood):
    """theta = +inf: x log(mu + eps) - mu - lgamma(x + 1) (minus softplus(pi)
    for ZINB's x > 0; its zero case is softplus(-mu - pi) - softplus(-pi)),
    with d/dmu = x / (mu + eps) - 1 and d/dtheta = 0, at small and bulk counts."""
    x = torch.tensor([0.0, 1.0, 5.0, 40.0, 1e6, 3e7], dtype=torch.float64)
    mu = torch.tensor([2.0, 0.5, 7.0, 35.0, 1.1e6, 2e7], dtype=torch.float64, requires_grad=True)
    theta = torch.full_like(mu, math.inf).requires_grad_()
    pi = torch.full_like(mu, 0.7)
    args = (pi,) if likelihood == "zinb" else ()
    out = F.count_log_likelihood(x, mu, theta, *args, likelihood=likelihood)
    d_mu, d_theta = torch.autograd.grad(out.sum(), (mu, theta))
    m = mu.detach() + 1e-8
    limit = torch.xlogy(x, m) - mu.detach() - torch.lgamma(x + 1)
    if likelihood == "zinb":
        sp = torch.nn.functional.softplus
        limit = torch.where(x == 0, sp(-mu.detach() - pi) - sp(-pi), limit - sp(pi))
    with mpmath.workdps(40):
        for i in range(3, 6):  # bulk counts: against mpmath, not the float64 formula
            truth = float(_poisson_truth(float(x[i]), float(m[i])) + mpmath.mpf(1e-8))
            if likelihood == "zinb":
                truth -= math.log1p(math.exp(0.7))  # softplus(pi)
            limit[i] = truth
    torch.testing.assert_close(out.detach(), limit, rtol=1e-12, atol=1e-9)
    expected_d_mu = x / m - 1
    if likelihood == "zinb":  # the zero case: sigmoid(-mu - pi) * -1
        expected_d_mu[0] = -torch.sigmoid(-mu.detach()[0] - pi[0])
    torch.testing.assert_close(d_mu, expected_d_mu, rtol=1e-10, atol=1e-12)
    assert (d_theta == 0).all()
    # float32 and the reference agree with it
    out32 = F.count_log_likelihood(x.float(), mu.detach().float(), theta.detach().float(), *(a.float() for a in args),
                                   likelihood=likelihood)
    assert torch.isfinite(out32).all()
    ref = reference.count_log_likelihood(x, mu.detach(), theta.detach(), pi if args else None, likelihood, 1e-8, False)[0]
    torch.testing.assert_close(ref[:4], out.detach()[:4], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("likelihood", COUNT_LIKELIHOODS)
def test_count_edge_values(likelihood):
    """x = 0 is exact; mu = 0 and zero-inflation limits; NaN where undefined."""
    kwargs = dict(theta=torch.tensor([2.0, 2.0, 2.0]) if likelihood != "poisson" else None,
                  zi_logits=torch.tensor([0.0, 30.0, -30.0]) if likelihood == "zinb" else None)
    mu = torch.tensor([0.0, 0.0, 0.0])
    out = F.count_log_likelihood(torch.zeros(3), mu, likelihood=likelihood, **kwargs)
    ref = reference.count_log_likelihood(torch.zeros(3).double(), mu.double(), *(
        t.double() if t is not None else None for t in kwargs.values()), likelihood, 1e-8, False)[0]
    torch.testing.assert_close(out.double(), ref, rtol=1e-6, atol=1e-7)
    x = torch.tensor([0.0, 1.0])
    p = F.count_log_likelihood(x, torch.tensor([4.0, 4.0]), likelihood="poisson")
    assert p[0].item() == -4.0  # x = 0: exactly -mu (lgamma(1) = 0)
    assert p[1].item() == pytest.approx(math.log(4) - 4, rel=1e-6)
    # domain: NaN on the device path (no check there); ValueError on the CPU functional path
    raw = OP(torch.tensor([-1.0, 1.0]), torch.tensor([1.0, -1.0]), kwargs["theta"][:2] if kwargs["theta"] is not None else None,
             kwargs["zi_logits"][:2] if kwargs["zi_logits"] is not None else None, likelihood, 1e-8, False, False, False)[0]
    assert raw.isnan().all()


@pytest.mark.parametrize(
    "args, message",
    [
        (dict(x=torch.tensor([[-1.0, 2.0]])), "x: expected counts >= 0"),
        (dict(mu=torch.tensor([[-1.0, 2.0]])), "mu: expected means >= 0"),
        (dict(mu=torch.tensor([[math.nan, 2.0]])), "mu: expected means >= 0"),
        (dict(theta=torch.tensor([0.0, 1.0])), "theta: expected inverse dispersions > 0"),
        (dict(theta=torch.tensor([-2.0, 1.0])), "theta: expected inverse dispersions > 0"),
        (dict(zi_logits=torch.tensor([[math.nan, 0.0]])), "zi_logits: expected logits"),
    ],
)
def test_count_refuses_values_outside_the_domain(args, message):
    kwargs = dict(x=torch.tensor([[0.0, 2.0]]), mu=torch.tensor([[1.0, 2.0]]), theta=torch.tensor([1.0, 3.0]),
                  zi_logits=torch.tensor([[0.0, 0.5]]))
    kwargs.update(args)
    for reduce_sum in (False, True):
        with pytest.raises(ValueError, match=message):
            F.count_log_likelihood(**kwargs, likelihood="zinb", reduce_sum=reduce_sum)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: F.count_log_likelihood(torch.ones(2, 3), torch.ones(2, 3), likelihood="nb"), ValueError,
         "theta: required by likelihood 'nb'"),
        (lambda: F.count_log_likelihood(torch.ones(2, 3), torch.ones(2, 3), torch.ones(3), likelihood="poisson"),
         ValueError, "theta: not used by likelihood 'poisson'"),
        (lambda: F.count_log_likelihood(torch.ones(2, 3), torch.ones(2, 3), torch.ones(3), likelihood="zinb"),
         ValueError, "zi_logits: required"),
        (lambda: F.count_log_likelihood(torch.ones(2, 3), torch.ones(2, 3), torch.ones(4), likelihood="nb"),
         ValueError, "shapes do not broadcast"),
        (lambda: F.count_log_likelihood(torch.ones(2, 3), torch.ones(2, 3), torch.ones(3), likelihood="gamma"),
         ValueError, "likelihood: expected one of"),
        (lambda: F.count_log_likelihood(torch.ones(2, 3), torch.ones(2, 3, dtype=torch.int64), torch.ones(3)),
         TypeError, "mu: expected a floating-point tensor"),
        (lambda: F.count_log_likelihood(torch.ones(2, 3), torch.ones(2, 3), torch.ones(3), eps=-1.0),
         ValueError, "eps: expected a number >= 0"),
        (lambda: F.count_log_likelihood(torch.tensor(1.0), torch.tensor(1.0), torch.tensor(1.0), reduce_sum=True),
         ValueError, "reduce_sum needs a last dimension"),
        (lambda: OP(torch.ones(2, 3), torch.ones(2, 3), torch.ones(4), None, "nb", 1e-8, False, False, False),
         RuntimeError, "must match"),
        (lambda: OP(torch.ones(2, 3), torch.ones(2, 3), None, None, "nb", 1e-8, False, False, False),
         ValueError, "theta: required by likelihood 'nb'"),
        (lambda: OP(torch.ones(2, 3), torch.ones(2, 3), None, None, "poisson", -1.0, False, False, False),
         ValueError, "eps: expected a finite number >= 0"),
        (lambda: OP(torch.ones(2, 3).double(), torch.ones(2, 3), None, None, "poisson", 1e-8, False, False, False),
         RuntimeError, "x: dtype Double differs from mu's Float"),
    ],
)
def test_count_bad_arguments(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_count_integer_counts_are_promoted():
    x = torch.tensor([[0, 3, 7]])
    mu, theta = torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([0.5, 20.0, 4.0])
    torch.testing.assert_close(F.count_log_likelihood(x, mu, theta), F.count_log_likelihood(x.float(), mu, theta))


def test_count_random_sweep():
    """Random shapes, dtypes and values (zeros, tiny and huge means and
    dispersions) against the oracle: float32 within 1e-5 of the terms' size."""
    g = torch.Generator().manual_seed(7)
    for trial in range(40):
        likelihood = COUNT_LIKELIHOODS[trial % 3]
        rows, genes = int(torch.randint(1, 9, (), generator=g)), int(torch.randint(1, 70, (), generator=g))
        x = torch.poisson(torch.exp(torch.randn(rows, genes, generator=g, dtype=torch.float64) * 3), generator=g)
        mu = torch.exp(torch.randn(rows, genes, generator=g, dtype=torch.float64) * 4)
        theta = torch.exp(torch.randn(genes, generator=g, dtype=torch.float64) * 6) if likelihood != "poisson" else None
        zi = torch.randn(rows, genes, generator=g, dtype=torch.float64) * 5 if likelihood == "zinb" else None
        args = [t.float() if t is not None else None for t in (x, mu, theta, zi)]
        x, mu, theta, zi = (t.double() if t is not None else None for t in args)  # the rounded inputs
        truth = reference.count_log_likelihood(x, mu, theta, zi, likelihood, 1e-8, False)[0]
        ours = F.count_log_likelihood(*args, likelihood=likelihood).double()
        scale = truth.abs() + torch.lgamma(x + 1) + x * (mu + 1e-8).log().abs() + 1
        bad = (ours - truth).abs() > 1e-5 * scale
        assert not bad.any(), (trial, likelihood, x[bad][:3], mu[bad][:3], ours[bad][:3], truth[bad][:3])
