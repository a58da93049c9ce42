"""kl_diag_gaussian against the oracle."""

import pytest
import torch

from pyautoencoder_fast import functional as F
from conftest import DTYPES, check_against_oracle, requires_extension

pytestmark = requires_extension


def _param(shape, *, log_var=False):
    t = torch.randn(shape, dtype=torch.float64)
    return (t * 0.8 if log_var else t).requires_grad_()


# (mu_q/log_var_q shape, mu_p shape or None, log_var_p shape or None)
CASES = [
    ((6, 10), None, None),
    ((6, 10), (6, 10), (6, 10)),
    ((5, 19), (5, 19), None),
    ((5, 19), None, (5, 19)),
    ((7, 33), (33,), (33,)),  # one prior shared by every row
    ((1, 1), None, None),
    ((0, 4), (0, 4), (0, 4)),
    ((2, 3, 9), (2, 3, 9), (2, 3, 9)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduce_sum", [True, False])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_kl_matches_oracle(dtype, reduce_sum, case, device):
    q_shape, mp_shape, lp_shape = case
    inputs = [
        _param(q_shape),
        _param(q_shape, log_var=True),
        None if mp_shape is None else _param(mp_shape),
        None if lp_shape is None else _param(lp_shape, log_var=True),
    ]
    check_against_oracle(
        lambda mq, lq, mp, lp: F.kl_diag_gaussian(mq, lq, mp, lp, reduce_sum=reduce_sum), inputs, dtype, device=device
    )


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("with_p", [False, True])
def test_kl_clamp_values_and_gradients(dtype, with_p, device):
    # log-variances beyond both bounds, and exactly on them.
    lv_q = torch.tensor([[-40.0, -3.0, -3.0, 0.5, 3.0, 25.0, 3.5, -2.5]], dtype=torch.float64, requires_grad=True)
    mu_q = torch.randn(1, 8, dtype=torch.float64, requires_grad=True)
    mu_p = torch.randn(1, 8, dtype=torch.float64, requires_grad=True) if with_p else None
    lv_p = (torch.randn(1, 8, dtype=torch.float64) * 4).requires_grad_() if with_p else None
    fn = lambda mq, lq, mp, lp: F.kl_diag_gaussian(mq, lq, mp, lp, reduce_sum=False, clamp_min=-3.0, clamp_max=3.0)
    check_against_oracle(fn, [mu_q, lv_q, mu_p, lv_p], dtype, device=device)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("at_bounds", [True, False], ids=["passes_at_bounds", "stops_at_bounds"])
def test_kl_backward_clamp_conventions(dtype, at_bounds, device):
    """The backward op under both torch.clamp conventions (the autograd
    kernel passes the installed torch's): at exactly a bound the gradient of
    a clamped log-variance is the unclamped one (torch <= 2.13) or 0 (2.14);
    inside it always passes, beyond it and at NaN never; a missing bound stops
    nothing, infinities included."""
    ops = torch.ops.pyautoencoder_fast
    on = dict(dtype=dtype, device=device)
    # repeated so that the vectorised body of a row is tested, not only its tail
    lv = torch.tensor([[-5.0, -3.0, -2.5, 0.0, 3.0, 4.0, float("-inf"), float("inf"), float("nan")]], **on).repeat(1, 7)
    mu = torch.linspace(-1, 1, lv.shape[1], **on).unsqueeze(0)
    grad = torch.full_like(lv, 1.5)
    for lo, hi in ((-3.0, 3.0), (-3.0, None), (None, 3.0), (None, None)):
        _, g_lv, _, _ = ops.kl_diag_gaussian_backward(grad, mu, lv, None, None, False, lo, hi, at_bounds)
        raw = lv.double()
        never = torch.zeros_like(raw, dtype=torch.bool)
        below, above = (raw < lo if lo is not None else never), (raw > hi if hi is not None else never)
        on_bound = (raw == lo if lo is not None else never) | (raw == hi if hi is not None else never)
        passes = ~below & ~above & (~on_bound if not at_bounds else ~never)
        if lo is not None or hi is not None:  # torch.clamp stops the gradient at NaN
            passes &= ~raw.isnan()
        clamped = raw.clamp(lo, hi) if (lo is not None or hi is not None) else raw
        # d KL / d lv = 0.5 (exp(lv) - 1) at the clamped value, where it passes
        want = torch.where(passes, 0.5 * (clamped.exp() - 1) * 1.5, torch.zeros_like(raw))
        torch.testing.assert_close(g_lv.double().cpu(), want.cpu(), rtol=1e-2 if dtype.itemsize == 2 else 1e-6, atol=0, equal_nan=True,
                                   msg=lambda m: f"clamp ({lo}, {hi}): {m}")


def test_kl_autograd_follows_installed_torch_clamp(device):
    """What the fused op's autograd gives at the bounds is what torch.clamp
    gives there, whichever torch is installed."""
    lv = torch.tensor([[-3.0, 0.0, 3.0]], dtype=torch.float64, device=device, requires_grad=True)
    mu = torch.zeros_like(lv)
    (g_fused,) = torch.autograd.grad(F.kl_diag_gaussian(mu, lv, clamp_min=-3.0, clamp_max=3.0).sum(), lv)
    (g_clamp,) = torch.autograd.grad(lv.clamp(-3.0, 3.0).sum(), lv)
    assert torch.equal(g_fused[0, [0, 2]] != 0, g_clamp[0, [0, 2]] != 0)
    assert g_fused[0, 1] == 0  # d/dlv of the KL is 0.5 (exp(lv) - 1): 0 at lv = 0


def test_kl_without_clamp_overflows_like_torch(device):
    # exp(100) overflows float32 in both implementations: no silent clamping.
    mu, lv = torch.zeros(1, 2, device=device), torch.tensor([[100.0, 0.0]], device=device)
    assert torch.isinf(F.kl_diag_gaussian(mu, lv)).all()
    assert torch.isfinite(F.kl_diag_gaussian(mu, lv, clamp_max=20.0)).all()


def test_kl_non_contiguous(device):
    mu = torch.randn(12, 5, dtype=torch.float64).t().requires_grad_()
    lv = torch.randn(5, 24, dtype=torch.float64)[:, ::2].requires_grad_()
    check_against_oracle(lambda a, b: F.kl_diag_gaussian(a, b), [mu, lv], torch.float32, device=device)


def test_kl_matches_torch_distributions(device):
    f64 = dict(dtype=torch.float64, device=device)
    q = torch.distributions.Normal(torch.randn(4, 6, **f64), torch.rand(4, 6, **f64) + 0.1)
    p = torch.distributions.Normal(torch.randn(4, 6, **f64), torch.rand(4, 6, **f64) + 0.1)
    expected = torch.distributions.kl_divergence(q, p).sum(-1)
    actual = F.kl_diag_gaussian(q.loc, 2 * q.scale.log(), p.loc, 2 * p.scale.log())
    torch.testing.assert_close(actual, expected)
