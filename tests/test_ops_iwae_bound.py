"""iwae_bound (the importance-weighted bound) against the oracle."""

import math

import pytest
import torch

import pyautoencoder_fast as paf
from pyautoencoder_fast import functional as F
from conftest import DTYPES, LIKELIHOODS, check_against_oracle, on_device, random_inputs, requires_extension

pytestmark = requires_extension


def _inputs(batch, samples, features, latent, likelihood, grad_x=False):
    x = random_inputs((batch, *features), likelihood, torch.float64, target=True, requires_grad=grad_x)
    x_hat = random_inputs((batch, samples, *features), likelihood, torch.float64, requires_grad=True)
    mu = torch.randn(batch, latent, dtype=torch.float64, requires_grad=True)
    lv = (torch.randn(batch, latent, dtype=torch.float64) * 0.5).requires_grad_()
    z = (mu.detach().unsqueeze(1) + torch.randn(batch, samples, latent, dtype=torch.float64)).requires_grad_()
    return x, x_hat, z, mu, lv


# (B, S, feature shape, D): S = 1, odd feature and latent counts (not
# multiples of the vector width), several feature dimensions, long rows.
SHAPES = [(4, 1, (17,), 3), (3, 5, (5, 7), 8), (1, 2, (1,), 1), (2, 4, (3, 9, 11), 5), (5, 7, (40,), 10),
          (2, 3, (1000,), 17)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("likelihood", LIKELIHOODS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_iwae_bound_matches_oracle(dtype, likelihood, shape, device):
    inputs = _inputs(*shape, likelihood, grad_x=likelihood != "bernoulli_probs")
    fn = lambda x, h, z, m, l: F.iwae_bound(x, h, z, m, l, likelihood)
    out = check_against_oracle(fn, list(inputs), dtype, device=device, what="iwae_bound")
    assert out[0].shape == (shape[0],)


# x_log_var per element of x_hat, shared by the samples, per feature, 0-d
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lv_shape", [(3, 4, 13), (3, 1, 13), (13,), ()], ids=str)
def test_iwae_bound_with_log_var_matches_oracle(dtype, lv_shape, device):
    inputs = _inputs(3, 4, (13,), 6, "gaussian", grad_x=True)
    x_log_var = (torch.randn(lv_shape, dtype=torch.float64) * 0.7).requires_grad_()
    fn = lambda x, h, z, m, l, v: F.iwae_bound(x, h, z, m, l, "gaussian", v)
    check_against_oracle(fn, [*inputs, x_log_var], dtype, device=device, what="iwae_bound(x_log_var)")


def test_iwae_bound_non_contiguous_and_without_sample_axis(device):
    x = torch.rand(1, 6, 5, dtype=torch.float64).expand(4, 6, 5)
    x_hat = torch.randn(4, 3, 5, 6, dtype=torch.float64).transpose(2, 3).requires_grad_()
    mu = torch.randn(3, 4, dtype=torch.float64).t().requires_grad_()
    lv = torch.randn(4, 3, dtype=torch.float64).requires_grad_()
    z = torch.randn(4, 3, 6, dtype=torch.float64)[..., ::2].requires_grad_()
    fn = lambda a, b, c, d, e: F.iwae_bound(a, b, c, d, e, "bernoulli")
    check_against_oracle(fn, [x, x_hat, z, mu, lv], torch.float32, device=device)
    # one sample: x_hat [B, ...] and z [B, D]
    fn1 = lambda a, b, c, d, e: F.iwae_bound(a, b, c, d, e, "gaussian")
    check_against_oracle(fn1, [x[:, 0], x_hat[:, 0, 0], z[:, 0], mu, lv], torch.float32, device=device)


def test_one_sample_is_the_elbo_with_a_monte_carlo_kl(device):
    # S = 1: log p(x | z) + log p(z) - log q(z | x) at that z, exactly.
    x, x_hat, z, mu, lv = on_device(device, *(t.detach() for t in _inputs(6, 1, (30,), 4, "bernoulli")))
    bound = F.iwae_bound(x, x_hat, z, mu, lv, "bernoulli")
    ll = F.log_likelihood_sum(x, x_hat, "bernoulli")[:, 0]
    log_p = (-0.5 * z[:, 0] ** 2 - 0.5 * math.log(2 * math.pi)).sum(-1)
    log_q = torch.distributions.Normal(mu, torch.exp(0.5 * lv)).log_prob(z[:, 0]).sum(-1)
    torch.testing.assert_close(bound, ll + log_p - log_q, rtol=1e-12, atol=1e-12)


def test_one_sample_bound_averages_to_the_analytic_elbo():
    # E_q[iwae_bound(S = 1)] = E_q[log p(x|z)] - KL(q || p); with x_hat not
    # depending on z the first term is log p(x|x_hat), so the average over
    # many z must approach ll - KL (within 4 standard errors).
    torch.manual_seed(3)
    batch, latent, draws = 4, 5, 20000
    x = torch.rand(batch, 9, dtype=torch.float64)
    x_hat = torch.randn(batch, 1, 9, dtype=torch.float64)
    mu = torch.randn(batch, latent, dtype=torch.float64)
    lv = torch.randn(batch, latent, dtype=torch.float64) * 0.5
    z = mu[:, None] + torch.exp(0.5 * lv)[:, None] * torch.randn(batch, draws, latent, dtype=torch.float64)
    rows = torch.arange(batch).repeat_interleave(draws)
    bounds = F.iwae_bound(x[rows], x_hat[rows], z.reshape(-1, 1, latent), mu[rows], lv[rows], "bernoulli")
    bounds = bounds.view(batch, draws)
    analytic = F.log_likelihood_sum(x, x_hat, "bernoulli")[:, 0] - F.kl_diag_gaussian(mu, lv)
    stderr = bounds.std(dim=1) / math.sqrt(draws)
    assert ((bounds.mean(dim=1) - analytic).abs() < 4 * stderr).all(), (bounds.mean(dim=1), analytic, stderr)
    # and the bound tightens with S: the S = 50 bound exceeds the analytic ELBO
    z50 = z[:, :50]
    assert (F.iwae_bound(x, x_hat.expand(batch, 50, 9), z50, mu, lv, "bernoulli") > analytic).all()


def test_weights_are_normalised_and_the_gradient_uses_them(device):
    x, x_hat, z, mu, lv = on_device(device, *(t.detach() for t in _inputs(3, 6, (8,), 4, "gaussian")))
    bound, weights, *_ = torch.ops.pyautoencoder_fast.iwae_bound(x, x_hat, z, mu, lv, "gaussian", False)
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(3, dtype=weights.dtype, device=device))
    x_hat.requires_grad_()
    (g,) = torch.autograd.grad(F.iwae_bound(x, x_hat, z, mu, lv, "gaussian").sum(), x_hat)
    torch.testing.assert_close(g, weights[..., None] * (x[:, None] - x_hat.detach()))


def test_gradcheck(device):
    inputs = [t.to(device).detach().requires_grad_() for t in _inputs(3, 4, (7,), 3, "gaussian", grad_x=True)]
    x_log_var = (torch.randn(7, dtype=torch.float64, device=device) * 0.5).requires_grad_()
    assert torch.autograd.gradcheck(lambda *a: F.iwae_bound(*a, "gaussian"), inputs)
    assert torch.autograd.gradcheck(lambda *a: F.iwae_bound(*a[:5], "gaussian", a[5]), [*inputs, x_log_var])
    bern = [t.to(device).detach().requires_grad_(i > 0) for i, t in enumerate(_inputs(2, 3, (5,), 2, "bernoulli"))]
    assert torch.autograd.gradcheck(lambda *a: F.iwae_bound(*a, "bernoulli"), bern)


@pytest.mark.parametrize("scale", [1.0, -2.5])
def test_backward_paths_agree(scale, device):
    # The forward's buffers (first backward), a retained second backward
    # (recomputed) and the reference all give the same gradients.
    x, x_hat, z, mu, lv = (t.detach().float().to(device) for t in _inputs(4, 5, (33,), 3, "bernoulli"))
    x_log_var = None
    leaves = [x_hat.requires_grad_(), z.requires_grad_(), mu.requires_grad_(), lv.requires_grad_()]
    out = F.iwae_bound(x, x_hat, z, mu, lv, "bernoulli") * scale
    grad_out = torch.linspace(-1, 2, 4, device=device)
    first = torch.autograd.grad(out, leaves, grad_out, retain_graph=True)
    second = torch.autograd.grad(out, leaves, grad_out)
    with paf.use_backend("reference"):
        want = torch.autograd.grad(F.iwae_bound(x, x_hat, z, mu, lv, "bernoulli", x_log_var) * scale, leaves, grad_out)
    for a, b, w in zip(first, second, want):
        torch.testing.assert_close(a, w)
        torch.testing.assert_close(b, w)


def test_edge_values(device):
    # one dominant term, every term -inf, a NaN: the log-mean-exp's limits
    x = torch.zeros(2, 2, device=device)
    x_hat = torch.zeros(2, 4, 2, device=device)
    z = torch.zeros(2, 4, 1, device=device)
    mu, lv = torch.zeros(2, 1, device=device), torch.zeros(2, 1, device=device)
    x_hat[0, 2] = 1e4  # ll = -1e8 for sample 2: its weight underflows to 0, the others share 1
    x_hat[1, 1, 0] = float("nan")
    x_hat.requires_grad_()
    bound = F.iwae_bound(x, x_hat, z, mu, lv, "gaussian")
    assert bound[0].item() == pytest.approx(math.log(3 / 4), rel=1e-6) and bound[1].isnan()
    (g,) = torch.autograd.grad(bound[0], x_hat)
    assert torch.isfinite(g[0]).all() and (g[0, 2] == 0).all()
    # every term -inf (targets 1 at logits -inf): -inf, and a zero gradient
    # where torch.logsumexp's is NaN (d ll / d logit is finite here)
    logits = torch.full((2, 3, 2), float("-inf"), device=device, requires_grad=True)
    ones = torch.ones(2, 2, device=device)
    bound = F.iwae_bound(ones, logits, z[:, :3], mu, lv, "bernoulli")
    assert (bound == float("-inf")).all()
    (g,) = torch.autograd.grad(bound.sum(), logits)
    assert (g == 0).all()
    # log-weights of -5e29 and +5e29 (z far out; a posterior of variance
    # e^1e30) next to ordinary ones: finite, the dominant term - log S
    zs = torch.tensor([[[0.0], [1e15]]], device=device)
    far = F.iwae_bound(x[:1], torch.zeros(1, 2, 2, device=device), zs, mu[:1], torch.full((1, 1), 60.0, device=device))
    assert far.item() == pytest.approx(30 - math.log(2), rel=1e-6)  # the z = 0 term, 0.5 * 60
    huge = F.iwae_bound(x[:1], torch.zeros(1, 2, 2, device=device), zs, mu[:1], torch.full((1, 1), 1e30, device=device))
    assert huge.item() == pytest.approx(0.5e30, rel=1e-6)


def test_bad_arguments():
    x, x_hat, z = torch.zeros(2, 3), torch.zeros(2, 4, 3), torch.zeros(2, 4, 5)
    mu, lv = torch.zeros(2, 5), torch.zeros(2, 5)
    with pytest.raises(ValueError, match=r"z: expected shape \[B, S, D\] = \(2, 4, 5\)"):
        F.iwae_bound(x, x_hat, z[:, :3], mu, lv)
    with pytest.raises(ValueError, match=r"z: expected shape \[B, S, D\]"):
        F.iwae_bound(x, x_hat, z, mu[:, :4], lv[:, :4])
    with pytest.raises(ValueError, match="x_log_var: only likelihood 'gaussian'"):
        F.iwae_bound(x, x_hat, z, mu, lv, "bernoulli", torch.zeros(3))
    with pytest.raises(TypeError, match="z: expected a floating-point tensor"):
        F.iwae_bound(x, x_hat, z.long(), mu, lv)
    with pytest.raises(ValueError, match="x_hat: expected S >= 1 samples"):
        F.iwae_bound(x, x_hat[:, :0], z[:, :0], mu, lv)
    ops = torch.ops.pyautoencoder_fast
    with pytest.raises(RuntimeError, match=r"z: expected shape \[2, 4, 5\]"):
        ops.iwae_bound(x, x_hat, z[:, :3], mu, lv, "gaussian", False)
    with pytest.raises(RuntimeError, match="weights: expected Float"):
        ops.iwae_bound_backward_latent(torch.zeros(2), torch.zeros(2, 4, dtype=torch.float64), z, mu, lv)
