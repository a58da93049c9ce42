"""nb_mixture_log_likelihood (scvi-tools' log_mixture_nb as one fused op)
against the oracle, and its accuracy at any count against mpmath."""

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

OP = torch.ops.pyautoencoder_fast.nb_mixture_log_likelihood.default


def _counts(shape):
    """Counts with many zeros and a long tail, as float64."""
    return torch.poisson(torch.exp(torch.randn(shape, dtype=torch.float64) * 1.5))


def _params(shape, theta_shape, *, separate_theta, grad=True):
    """(mu_1, mu_2, theta_1, theta_2, pi_logits) as float64 leaves: component
    2 the larger mean (totalVI's foreground), thetas spanning theta = 10."""
    mu_1 = (torch.exp(torch.randn(shape, dtype=torch.float64)) * 3).requires_grad_(grad)
    mu_2 = (torch.exp(torch.randn(shape, dtype=torch.float64)) * 8).requires_grad_(grad)
    theta = lambda: torch.exp(torch.randn(theta_shape, dtype=torch.float64) * 2.5).requires_grad_(grad)
    theta_1 = theta()
    theta_2 = theta() if separate_theta else None
    pi = (torch.randn(shape, dtype=torch.float64) * 2).requires_grad_(grad)
    return mu_1, mu_2, theta_1, theta_2, pi


def _fn(reduce_sum):
    return lambda x, m1, m2, t1, t2, pi: F.nb_mixture_log_likelihood(x, m1, m2, t1, t2, pi, reduce_sum=reduce_sum)


CASES = [
    ((6, 40), (40,)),  # theta per protein
    ((5, 33), (5, 33)),
    ((4, 7), (1, 7)),
    ((3, 1), (1,)),
    ((2, 3, 17), (17,)),
    ((0, 9), (9,)),
    ((3, 0), (0,)),
    ((2, 300), (300,)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduce_sum", [False, True], ids=["elementwise", "sum"])
@pytest.mark.parametrize("separate_theta", [False, True], ids=["shared_theta", "theta_2"])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_mixture_matches_oracle(dtype, reduce_sum, separate_theta, case, device):
    shape, theta_shape = case
    params = _params(shape, theta_shape, separate_theta=separate_theta)
    check_against_oracle(_fn(reduce_sum), [_counts(shape), *params], dtype, device=device)


@pytest.mark.parametrize("separate_theta", [False, True], ids=["shared_theta", "theta_2"])
def test_mixture_non_contiguous_and_broadcast(separate_theta, device):
    """Transposed mu_1, a sliced x, pi_logits broadcast from one column."""
    mu_1t, mu_2, _, _, _ = _params((30, 6), (6,), separate_theta=False)
    mu_1 = mu_1t.detach().t().requires_grad_()  # [6, 30], columns strided
    mu_2 = mu_2.detach().t().contiguous().requires_grad_()
    x = _counts((6, 60))[:, ::2]
    pi = torch.randn(6, 1, dtype=torch.float64).requires_grad_()
    theta_1 = torch.exp(torch.randn(30, dtype=torch.float64)).requires_grad_()
    theta_2 = torch.exp(torch.randn(1, 30, dtype=torch.float64) * 2).requires_grad_() if separate_theta else None
    for reduce_sum in (False, True):
        check_against_oracle(_fn(reduce_sum), [x, mu_1, mu_2, theta_1, theta_2, pi], torch.float32, device=device)


@pytest.mark.parametrize("reduce_sum", [False, True], ids=["elementwise", "sum"])
def test_mixture_gradient_of_x(reduce_sum, device):
    x = (_counts((4, 21)) + 0.25).requires_grad_()
    params = _params((4, 21), (21,), separate_theta=True)
    check_against_oracle(_fn(reduce_sum), [x, *params], torch.float64, device=device)
    check_against_oracle(_fn(reduce_sum), [x, *params], torch.float32, device=device)


@pytest.mark.parametrize("reduce_sum", [False, True], ids=["elementwise", "sum"])
@pytest.mark.parametrize("separate_theta", [False, True], ids=["shared_theta", "theta_2"])
def test_mixture_gradcheck(reduce_sum, separate_theta, device):
    x = (_counts((3, 12)) + 0.5).to(device).requires_grad_()
    params = [t.detach().to(device).requires_grad_() if t is not None else None
              for t in _params((3, 12), (12,), separate_theta=separate_theta)]
    with torch.no_grad():
        params[2][::3] *= 40  # the large-theta branch too
    fn = lambda *a: F.nb_mixture_log_likelihood(*a, reduce_sum=reduce_sum)
    assert torch.autograd.gradcheck(fn, (x, *params), eps=1e-6, atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("separate_theta", [False, True], ids=["shared_theta", "theta_2"])
def test_mixture_opcheck(separate_theta, device):
    x = _counts((3, 10)).float().to(device)
    params = [t.detach().float().to(device).requires_grad_() if t is not None else None
              for t in _params((3, 10), (10,), separate_theta=separate_theta)]
    for reduce_sum in (False, True):
        for need_grad, need_grad_x in ((False, False), (True, False), (True, True)):
            torch.library.opcheck(OP, (x, *params, 1e-8, reduce_sum, need_grad, need_grad_x))


@pytest.mark.parametrize("dynamic", [False, True])
def test_mixture_compiles_fullgraph(dynamic, device):
    """totalVI's protein loss compiled whole (the op, its fake kernel and C++
    autograd in one graph), values and gradients as eager."""
    torch._dynamo.reset()
    x = _counts((4, 24)).float().to(device)
    params = [t.detach().float().to(device).requires_grad_() for t in _params((4, 24), (24,), separate_theta=True)]

    def loss(x, m1, m2, t1, t2, pi):
        return -F.nb_mixture_log_likelihood(x, m1, m2, t1, t2, pi, reduce_sum=True).mean()

    compiled = torch.compile(loss, fullgraph=True, dynamic=dynamic, backend="aot_eager")
    eager_value = loss(x, *params)
    eager_grads = torch.autograd.grad(eager_value, params)
    value = compiled(x, *params)
    grads = torch.autograd.grad(value, params)
    torch.testing.assert_close(value, eager_value)
    for g, e in zip(grads, eager_grads):
        torch.testing.assert_close(g, e)


def test_mixture_retain_graph_and_grad_output(device):
    """Two backwards of one graph (the derivative buffers are not consumed
    nor changed) and a per-row gradient that is not 1."""
    x = _counts((5, 30)).to(device)
    params = [t.detach().to(device).requires_grad_() for t in _params((5, 30), (30,), separate_theta=True)]
    out = F.nb_mixture_log_likelihood(x, *params, reduce_sum=True)
    g = torch.linspace(-2, 3, 5, dtype=torch.float64, device=device)
    first = torch.autograd.grad(out, params, g, retain_graph=True)
    second = torch.autograd.grad(out, params, g)
    with paf.use_backend("reference"):
        ref = torch.autograd.grad(F.nb_mixture_log_likelihood(x, *params, reduce_sum=True), params, g)
    for a, b, r in zip(first, second, ref):
        assert torch.equal(a, b)
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-12)


def test_mixture_derivative_outputs_are_not_changed_by_backward():
    """The raw op's derivative outputs belong to the caller: a backward
    through the op leaves them as they were (the custom-op contract)."""
    x = _counts((3, 8))
    params = [t.detach().requires_grad_() for t in _params((3, 8), (8,), separate_theta=True)]
    outs = OP(x, *params, 1e-8, True, True, False)
    kept = [o.detach().clone() for o in outs[1:]]
    outs[0].backward(torch.full((3,), -3.5, dtype=torch.float64))
    for o, k in zip(outs[1:], kept):
        assert torch.equal(o, k)


def test_mixture_scalar_arguments():
    args = [torch.tensor(v) for v in (4.0, 2.0, 9.0, 3.0, 0.5, 0.3)]
    got = F.nb_mixture_log_likelihood(*args[:4], None, args[5])
    want = reference.nb_mixture_log_likelihood(*args[:4], None, args[5], 1e-8, False)[0]
    assert got.shape == () and torch.allclose(got, want)


# ------------------------------------------------------------- any count
def _mixture_truth(x, mu_1, mu_2, theta_1, theta_2, pi):
    l1, l2 = nb_log_pmf_mpmath(x, mu_1, theta_1), nb_log_pmf_mpmath(x, mu_2, theta_2)
    pi = mpmath.mpf(pi)
    # log(sigmoid(pi) e^l1 + sigmoid(-pi) e^l2)
    return mpmath.log(mpmath.exp(l1) / (1 + mpmath.exp(-pi)) + mpmath.exp(l2) / (1 + mpmath.exp(pi)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mixture_accurate_at_any_count(dtype):
    """Against mpmath at counts to 3e7, means 1e-6..1e8 and thetas
    1e-3..1e8: within max(1e-4, 1e-5 |log p|) nats in float32 (a thousand
    times tighter in float64), as the NB."""
    xs = [0.0, 1.0, 7.0, 32.0, 300.0, 3e4, 3e6, 2.0**24, 3e7]
    pairs = [(1e-6, 1e-2), (1.0, 30.0), (1e3, 1.1e3), (3.1e6, 2e7), (1e5, 1e8)]
    thetas = [(1e-3, 0.3), (9.99, 10.0), (50.0, 1e3), (1e5, 1e8)]
    grid = [(x, m1, m2, t1, t2, pi) for x in xs for m1, m2 in pairs for t1, t2 in thetas for pi in (-3.0, 0.4, 6.0)]
    grid += [(3e7, 2e7, 3e7, 50.0, 1e3, 0.0)]
    cols = [torch.tensor(c, dtype=dtype) for c in zip(*grid)]
    ours = F.nb_mixture_log_likelihood(*cols[:4], cols[4], cols[5]).double()
    scale = 1.0 if dtype == torch.float32 else 1e-3
    worst = []
    for i in range(len(grid)):
        args = [float(c[i]) for c in cols]  # the rounded inputs
        with mpmath.workdps(50):
            truth = float(_mixture_truth(*args))
        if not abs(float(ours[i]) - truth) <= scale * max(1e-4, 1e-5 * abs(truth)):
            worst.append((*args, float(ours[i]), truth))
    assert not worst, f"{len(worst)} of {len(grid)} off: {worst[:6]}"


def test_mixture_weights_the_components():
    """pi -> +inf is component 1 alone, pi -> -inf component 2 alone; with
    equal components the mixture is that NB whatever pi is."""
    x = torch.tensor([0.0, 3.0, 40.0, 1e5], dtype=torch.float64)
    mu_1, mu_2 = torch.tensor([1.0, 2.0, 30.0, 9e4]), torch.tensor([5.0, 0.1, 80.0, 2e5])
    mu_1, mu_2 = mu_1.double(), mu_2.double()
    theta = torch.tensor([2.0, 20.0, 300.0, 1e4], dtype=torch.float64)
    nb = lambda m: F.count_log_likelihood(x, m, theta, likelihood="nb")
    big = torch.full_like(x, 1e4)  # beyond the components' log-ratio (1700 nats at x = 1e5)
    close = dict(rtol=1e-12, atol=1e-8)  # (+-1e4 added and taken away again)
    torch.testing.assert_close(F.nb_mixture_log_likelihood(x, mu_1, mu_2, theta, None, big), nb(mu_1), **close)
    torch.testing.assert_close(F.nb_mixture_log_likelihood(x, mu_1, mu_2, theta, None, -big), nb(mu_2), **close)
    for pi in (-2.0, 0.0, 5.0):
        same = F.nb_mixture_log_likelihood(x, mu_1, mu_1, theta, theta, torch.full_like(x, pi))
        torch.testing.assert_close(same, nb(mu_1), rtol=1e-12, atol=1e-12)


def test_mixture_edge_values():
    """Infinite pi_logits, theta = inf (the Poisson limit), a zero mean with
    a positive count (that component's probability 0), and NaN where
    undefined, on the raw op."""
    x = torch.tensor([2.0, 2.0, 2.0, 0.0, 5.0], dtype=torch.float64)
    mu_1 = torch.tensor([1.0, 1.0, 0.0, 0.0, 3.0], dtype=torch.float64)
    mu_2 = torch.tensor([4.0, 4.0, 4.0, 0.0, 6.0], dtype=torch.float64)
    theta = torch.tensor([3.0, 3.0, 3.0, 3.0, math.inf], dtype=torch.float64)
    pi = torch.tensor([math.inf, -math.inf, 0.5, 0.5, 0.2], dtype=torch.float64)
    out = F.nb_mixture_log_likelihood(x, mu_1, mu_2, theta, None, pi)
    ref = reference.nb_mixture_log_likelihood(x, mu_1, mu_2, theta, None, pi, 1e-8, False)[0]
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    assert out.isfinite().all()
    raw = OP(torch.tensor([-1.0, 1.0, 1.0]), torch.tensor([1.0, -1.0, 1.0]), torch.tensor([1.0, 1.0, 1.0]),
             torch.tensor([1.0, 1.0, 0.0]), None, torch.zeros(3), 1e-8, False, False, False)[0]
    assert raw.isnan().all()


@pytest.mark.parametrize(
    "args, message",
    [
        (dict(x=torch.tensor([[-1.0, 2.0]])), "x: expected counts >= 0"),
        (dict(mu_1=torch.tensor([[-1.0, 2.0]])), "mu_1: expected means >= 0"),
        (dict(mu_2=torch.tensor([[math.nan, 2.0]])), "mu_2: expected means >= 0"),
        (dict(theta_1=torch.tensor([0.0, 1.0])), "theta_1: expected inverse dispersions > 0"),
        (dict(theta_2=torch.tensor([-2.0, 1.0])), "theta_2: expected inverse dispersions > 0"),
        (dict(pi_logits=torch.tensor([[math.nan, 0.0]])), "pi_logits: expected logits"),
    ],
)
def test_mixture_refuses_values_outside_the_domain(args, message):
    kwargs = dict(x=torch.tensor([[0.0, 2.0]]), mu_1=torch.tensor([[1.0, 2.0]]), mu_2=torch.tensor([[3.0, 5.0]]),
                  theta_1=torch.tensor([1.0, 3.0]), theta_2=torch.tensor([2.0, 4.0]),
                  pi_logits=torch.tensor([[0.0, 0.5]]))
    kwargs.update(args)
    for reduce_sum in (False, True):
        with pytest.raises(ValueError, match=message):
            F.nb_mixture_log_likelihood(**kwargs, reduce_sum=reduce_sum)


_ONES = torch.ones(2, 3)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: F.nb_mixture_log_likelihood(_ONES, _ONES, _ONES, torch.ones(4), None, _ONES), ValueError,
         "shapes do not broadcast"),
        (lambda: F.nb_mixture_log_likelihood(_ONES, _ONES, _ONES.long(), torch.ones(3), None, _ONES), TypeError,
         "mu_2: expected a floating-point tensor"),
        (lambda: F.nb_mixture_log_likelihood(_ONES, _ONES, _ONES, torch.ones(3), torch.ones(3).long(), _ONES),
         TypeError, "theta_2: expected a floating-point tensor"),
        (lambda: F.nb_mixture_log_likelihood(_ONES, _ONES, _ONES, torch.ones(3), None, _ONES, eps=-1.0), ValueError,
         "eps: expected a number >= 0"),
        (lambda: F.nb_mixture_log_likelihood(*(torch.tensor(1.0),) * 4, None, torch.tensor(0.0), reduce_sum=True),
         ValueError, "reduce_sum needs a last dimension"),
        (lambda: F.nb_mixture_log_likelihood(_ONES, _ONES, _ONES, torch.ones(3), None, "0"), TypeError, "pi_logits"),
        (lambda: OP(_ONES, _ONES, _ONES, torch.ones(4), None, _ONES, 1e-8, False, False, False), RuntimeError,
         "must match"),
        (lambda: OP(_ONES, _ONES, _ONES, torch.ones(3), None, _ONES, math.inf, False, False, False), ValueError,
         "eps: expected a finite number >= 0"),
        (lambda: OP(_ONES, _ONES, _ONES, torch.ones(3), torch.ones(3).double(), _ONES, 1e-8, False, False, False),
         RuntimeError, "theta_2: dtype Double differs from mu_1's Float"),
        (lambda: OP(_ONES.double(), _ONES, _ONES, torch.ones(3), None, _ONES, 1e-8, False, False, False),
         RuntimeError, "x: dtype Double differs from mu_1's Float"),
    ],
)
def test_mixture_bad_arguments(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_mixture_integer_counts_are_promoted():
    x = torch.tensor([[0, 3, 7]])
    mu_1, mu_2 = torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[4.0, 9.0, 1.0]])
    theta, pi = torch.tensor([0.5, 20.0, 4.0]), torch.tensor([[0.0, 1.0, -1.0]])
    torch.testing.assert_close(F.nb_mixture_log_likelihood(x, mu_1, mu_2, theta, None, pi),
                               F.nb_mixture_log_likelihood(x.float(), mu_1, mu_2, theta, None, pi))
