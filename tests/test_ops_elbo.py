"""elbo (the fused beta-VAE objective) against the oracle."""

import pytest
import torch

import pyautoencoder_fast as paf
from pyautoencoder_fast import _validation as check
from pyautoencoder_fast import functional as F
from conftest import DTYPES, LIKELIHOODS, check_against_oracle, on_device, random_inputs, requires_extension

pytestmark = requires_extension


def _inputs(batch, samples, features, latent, likelihood):
    x = random_inputs((batch, *features), likelihood, torch.float64, target=True)
    x_hat = random_inputs((batch, samples, *features), likelihood, torch.float64, requires_grad=True)
    mu = torch.randn(batch, latent, dtype=torch.float64, requires_grad=True)
    lv = (torch.randn(batch, latent, dtype=torch.float64) * 0.5).requires_grad_()
    return x, x_hat, mu, lv


SHAPES = [(4, 1, (17,), 3), (3, 3, (5, 7), 8), (1, 2, (1,), 1), (2, 4, (3, 9, 11), 5), (16, 2, (64,), 10)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("likelihood", LIKELIHOODS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("beta", [1.0, 4.0])
def test_elbo_matches_oracle(dtype, likelihood, shape, beta, device):
    x, x_hat, mu, lv = _inputs(*shape, likelihood)
    fn = lambda a, b, c, d: F.elbo_stats(a, b, c, d, beta, likelihood)
    check_against_oracle(fn, [x, x_hat, mu, lv], dtype, device=device)


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_elbo_gradient_for_x_and_without_sample_axis(likelihood, device):
    x = random_inputs((5, 12), likelihood, torch.float64, target=True, requires_grad=True)
    x_hat = random_inputs((5, 12), likelihood, torch.float64, requires_grad=True)
    mu = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    lv = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    check_against_oracle(lambda a, b, c, d: F.elbo_stats(a, b, c, d, 0.5, likelihood), [x, x_hat, mu, lv], torch.float32, device=device)


def test_elbo_strided_inputs(device):
    x = torch.rand(1, 6, 5, dtype=torch.float64).expand(4, 6, 5)
    x_hat = torch.randn(4, 3, 5, 6, dtype=torch.float64).transpose(2, 3).requires_grad_()
    mu = torch.randn(3, 4, dtype=torch.float64).t().requires_grad_()
    lv = torch.randn(4, 3, dtype=torch.float64).requires_grad_()
    check_against_oracle(lambda a, b, c, d: F.elbo_stats(a, b, c, d, 2.0, "bernoulli"), [x, x_hat, mu, lv], torch.float32, device=device)


def test_objective_backward_returns_the_forward_gradient_without_copy(device):
    # The common case: objective.backward() hands back d objective / d x_hat
    # written by the forward pass (no extra x_hat-sized buffer).
    x, x_hat, mu, lv = (t.detach().float().to(device) for t in _inputs(8, 2, (100,), 4, "gaussian"))
    x_hat.requires_grad_()
    stats = F.elbo_stats(x, x_hat, mu, lv)
    (grad,) = torch.autograd.grad(stats[0], x_hat)
    with paf.use_backend("reference"):
        (expected,) = torch.autograd.grad(F.elbo_stats(x, x_hat, mu, lv)[0], x_hat)
    torch.testing.assert_close(grad, expected)


def test_diagnostic_gradients(device):
    # Gradients through each diagnostic, not only the objective.
    x, x_hat, mu, lv = _inputs(3, 2, (7,), 4, "laplace")
    for k in range(4):
        fn = lambda a, b, c, d: F.elbo_stats(a, b, c, d, 3.0, "laplace")[k]
        check_against_oracle(fn, [x, x_hat, mu, lv], torch.float64, device=device)


def test_elbo_terms_and_empty_batch(device):
    x, x_hat, mu, lv = on_device(device, *_inputs(4, 2, (9,), 3, "gaussian"))
    terms = F.elbo(x, x_hat, mu, lv, beta=2.0)
    torch.testing.assert_close(terms.objective, -terms.elbo)
    torch.testing.assert_close(terms.elbo, terms.log_likelihood - 2.0 * terms.kl_divergence)
    empty = F.elbo(x[:0], x_hat[:0], mu[:0], lv[:0])
    with paf.use_backend("reference"):
        empty_ref = F.elbo(x[:0], x_hat[:0], mu[:0], lv[:0])
    for a, b in zip(empty, empty_ref):  # torch.mean of nothing is NaN
        assert torch.isnan(a) and torch.isnan(b)


def test_elbo_docstring_lists_every_likelihood_and_what_beta_weights():
    doc = " ".join(F.elbo.__doc__.split())
    for name in check.LIKELIHOODS:  # every name the functions accept
        assert f'``"{name}"``' in doc, name
    assert "LikelihoodType" in doc
    assert "-0.5 * log(2 * pi)" in doc and "omitted" in doc  # as pyautoencoder's Gaussian
    assert "NOT weighted by ``beta``" in doc
    # ... which is what the numbers say:
    x, x_hat, mu, lv = _inputs(3, 2, (5,), 4, "gaussian")
    one, four = F.elbo(x, x_hat, mu, lv, beta=1.0), F.elbo(x, x_hat, mu, lv, beta=4.0)
    torch.testing.assert_close(one.kl_divergence, four.kl_divergence)
    torch.testing.assert_close(four.elbo, four.log_likelihood - 4.0 * four.kl_divergence)


def test_elbo_without_grad_writes_no_gradient_buffer(device):
    x, x_hat, mu, lv = on_device(device, *_inputs(4, 2, (9,), 3, "gaussian"))
    with torch.no_grad():
        stats, dobj, dmu, dlv, dxlv = torch.ops.pyautoencoder_fast.elbo(x, x_hat, mu, lv, 1.0, "gaussian", False)
    assert dobj.numel() == 0 and dmu.numel() == 0 and dlv.numel() == 0 and dxlv.numel() == 0
    with torch.no_grad():
        expected = F.elbo_stats(x, x_hat, mu, lv)
    torch.testing.assert_close(stats, expected)


def _reference_grads(fn, leaves):
    with paf.use_backend("reference"):
        return torch.autograd.grad(fn(*leaves), leaves)


@pytest.mark.parametrize("seed_grad", [1.0, 0.25, -3.0, 0.0])
def test_scaled_objective_gradient_rescales_the_buffer_in_place(seed_grad, device):
    # Anything but objective.backward() on the CPU (a scaled loss, grad scalers,
    # and every backward on a GPU, where grad_stats is not read) scales the
    # forward's x_hat buffer in place: that buffer is the gradient returned.
    x, x_hat, mu, lv = on_device(device, *_inputs(5, 3, (33,), 4, "bernoulli"))
    leaves = [x_hat, mu, lv]
    fn = lambda h, m, v: seed_grad * F.elbo_stats(x, h, m, v, 2.0, "bernoulli")[0]
    got = torch.autograd.grad(fn(*leaves), leaves)
    for g, want in zip(got, _reference_grads(fn, leaves)):
        torch.testing.assert_close(g, want)


@pytest.mark.parametrize("stat", [0, 1, 2, 3])
def test_repeated_backward_with_retain_graph(stat, device):
    # A later backward of the same node recomputes (the first one may have
    # rescaled the buffers or handed them to .grad): every one is right.
    x, x_hat, mu, lv = on_device(device, *_inputs(4, 2, (19,), 3, "gaussian"))
    leaves = [x_hat, mu, lv]
    out = F.elbo_stats(x, x_hat, mu, lv, 1.5, "gaussian")[stat]
    once = _reference_grads(lambda h, m, v: F.elbo_stats(x, h, m, v, 1.5, "gaussian")[stat], leaves)
    for k in range(3):
        out.backward(torch.tensor(0.5 + k, dtype=out.dtype, device=out.device), retain_graph=True)
        expected = sum(0.5 + i for i in range(k + 1))
        for leaf, want in zip(leaves, once):
            torch.testing.assert_close(leaf.grad, expected * want, msg=lambda m: f"backward {k + 1}: {m}")
    for leaf in leaves:
        leaf.grad = None


@pytest.mark.parametrize("dtype", DTYPES)
def test_scale_x_hat_grad_in_place_op(dtype, device):
    op = torch.ops.pyautoencoder_fast.elbo_scale_x_hat_grad_
    buffer = torch.randn(3, 2, 7, dtype=dtype, device=device)
    grad_stats = torch.tensor([1.5, -0.25, 0.5, 2.0], dtype=dtype, device=device)
    expected = torch.ops.pyautoencoder_fast.elbo_backward_x_hat(grad_stats, buffer)
    assert op(grad_stats, buffer) is None
    torch.testing.assert_close(buffer, expected)
    # a coefficient of exactly 1 leaves the buffer as it is (NaN stays, nothing is written)
    poisoned = torch.full((4, 5), float("nan"), dtype=dtype, device=device)
    op(torch.tensor([2.0, 0.5, 0.5, 9.0], dtype=dtype, device=device), poisoned)
    assert poisoned.isnan().all()
    with pytest.raises(RuntimeError, match="grad_stats: expected 4 elements"):
        op(torch.zeros(3, dtype=dtype, device=device), buffer)


# ------------------------------------------ the Gaussian with a learned variance
# (B, S, feature shape, latent, x_log_var shape): per element of x_hat,
# shared by the samples, per feature, a 0-d scalar, broadcast within the
# features.
LOG_VAR_SHAPES = [
    (4, 1, (17,), 3, (4, 1, 17)),
    (3, 3, (5, 7), 8, (3, 3, 5, 7)),
    (3, 3, (5, 7), 8, (3, 1, 5, 7)),
    (4, 2, (33,), 5, (33,)),
    (4, 2, (33,), 5, ()),
    (2, 4, (3, 9), 5, (2, 4, 3, 1)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", LOG_VAR_SHAPES, ids=str)
def test_elbo_with_log_var_matches_oracle(dtype, shape, device):
    *sizes, lv_shape = shape
    x, x_hat, mu, lv = _inputs(*sizes, "gaussian")
    x_log_var = (torch.randn(lv_shape, dtype=torch.float64) * 0.7).requires_grad_()
    fn = lambda a, b, c, d, e: F.elbo_stats(a, b, c, d, 2.0, "gaussian", e)
    check_against_oracle(fn, [x, x_hat, mu, lv, x_log_var], dtype, device=device, what="elbo(x_log_var)")


def test_elbo_with_log_var_for_x_and_without_sample_axis(device):
    x = random_inputs((5, 12), "gaussian", torch.float64, target=True, requires_grad=True)
    x_hat = random_inputs((5, 12), "gaussian", torch.float64, requires_grad=True)
    mu = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    lv = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    x_log_var = torch.randn(5, 12, dtype=torch.float64, requires_grad=True)  # gets the sample axis with x_hat
    fn = lambda a, b, c, d, e: F.elbo_stats(a, b, c, d, 0.5, "gaussian", e)
    check_against_oracle(fn, [x, x_hat, mu, lv, x_log_var], torch.float32, device=device)


@pytest.mark.parametrize("lv_shape", [(3, 2, 7), (7,), ()], ids=str)
def test_elbo_with_log_var_gradcheck(lv_shape, device):
    x, x_hat, mu, lv = (t.to(device).detach().requires_grad_() for t in _inputs(3, 2, (7,), 4, "gaussian"))
    x_log_var = (torch.randn(lv_shape, dtype=torch.float64, device=device) * 0.5).requires_grad_()
    for k in range(4):
        fn = lambda a, b, c, d, e: F.elbo_stats(a, b, c, d, 1.5, "gaussian", e)[k]
        assert torch.autograd.gradcheck(fn, (x, x_hat, mu, lv, x_log_var))


@pytest.mark.parametrize("seed_grad", [1.0, -2.5])
def test_elbo_with_log_var_writes_both_gradients_in_the_forward(seed_grad, device):
    # objective.backward() (and a scaled one) against the reference; the
    # per-element x_log_var's gradient is the forward's buffer.
    x, x_hat, mu, lv = (t.detach().float().to(device) for t in _inputs(8, 2, (100,), 4, "gaussian"))
    x_log_var = (torch.randn(8, 2, 100, device=device) * 0.5)
    leaves = [x_hat.requires_grad_(), x_log_var.requires_grad_()]
    stats = F.elbo_stats(x, x_hat, mu, lv, 1.0, "gaussian", x_log_var)
    got = torch.autograd.grad(stats[0] * seed_grad, leaves)
    with paf.use_backend("reference"):
        want = torch.autograd.grad(F.elbo_stats(x, x_hat, mu, lv, 1.0, "gaussian", x_log_var)[0] * seed_grad, leaves)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)


def test_elbo_with_log_var_zero_is_the_unit_gaussian(device):
    x, x_hat, mu, lv = (t.detach().float().to(device) for t in _inputs(6, 3, (37,), 4, "gaussian"))
    zero = torch.zeros((), device=device)
    torch.testing.assert_close(F.elbo_stats(x, x_hat, mu, lv, 2.0, "gaussian", zero), F.elbo_stats(x, x_hat, mu, lv, 2.0),
                               rtol=1e-6, atol=0)


@pytest.mark.parametrize("stat", [0, 2])
def test_elbo_with_log_var_repeated_backward(stat, device):
    x, x_hat, mu, lv = (t.detach().float().to(device) for t in _inputs(4, 2, (9,), 3, "gaussian"))
    x_log_var = torch.randn(9, device=device, requires_grad=True)
    x_hat.requires_grad_()
    out = F.elbo_stats(x, x_hat, mu, lv, 1.0, "gaussian", x_log_var)[stat]
    first = torch.autograd.grad(out, [x_hat, x_log_var], retain_graph=True)
    second = torch.autograd.grad(out, [x_hat, x_log_var])
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b)


def test_elbo_with_log_var_bad_arguments():
    x, x_hat, mu, lv = torch.zeros(2, 3), torch.zeros(2, 1, 3), torch.zeros(2, 4), torch.zeros(2, 4)
    with pytest.raises(ValueError, match="x_log_var: only likelihood 'gaussian' takes a log-variance, got 'bernoulli'"):
        F.elbo(x, x_hat, mu, lv, likelihood="bernoulli", x_log_var=torch.zeros(3))
    with pytest.raises(ValueError, match=r"x_log_var: shape \(2, 2, 3\) does not broadcast to x_hat's \(2, 1, 3\)"):
        F.elbo(x, x_hat, mu, lv, x_log_var=torch.zeros(2, 2, 3))
    with pytest.raises(TypeError, match="x_log_var"):
        F.elbo(x, x_hat, mu, lv, x_log_var=[0.0])


def test_vae_compute_loss_with_log_var(device):
    torch.manual_seed(0)
    vae = paf.VAE(encoder=torch.nn.Linear(12, 16), decoder=torch.nn.Linear(4, 12), latent_dim=4).to(device)
    x = torch.rand(6, 12, device=device)
    vae.build(x)
    out = vae(x, S=3)
    x_log_var = torch.zeros(12, device=device, requires_grad=True)  # one learned log-variance per feature
    result = vae.compute_loss(x, out, beta=2.0, x_log_var=x_log_var)
    result.objective.backward()
    with paf.use_backend("reference"):
        ref = F.elbo(x, out.x_hat.detach(), out.mu.detach(), out.log_var.detach(), 2.0, "gaussian", x_log_var)
    assert result.objective.item() == pytest.approx(ref.objective.item(), rel=1e-5)
    assert result.diagnostics["log_likelihood"] == pytest.approx(ref.log_likelihood.item(), rel=1e-5)
    assert x_log_var.grad is not None and x_log_var.grad.shape == (12,)
