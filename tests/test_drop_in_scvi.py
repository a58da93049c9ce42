"""The scvi-tools drop-ins against scvi-tools 1.5.1's own code
(``scvi/distributions/_negative_binomial.py``, loaded by tests/_originals.py):
log_nb_positive, log_zinb_positive, the three distributions and the scVI loss."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch.distributions import Normal, kl_divergence

import pyautoencoder_fast.scvi as ours
from conftest import requires_extension
from _originals import scvi_negative_binomial

pytestmark = requires_extension


@pytest.fixture(scope="module")
def scvi():
    return scvi_negative_binomial()


def _data(rows=16, genes=50, *, theta_per_cell=False, dtype=torch.float64, seed=0, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    mu = torch.exp(torch.randn(rows, genes, generator=g, dtype=torch.float64) * 1.5) * 2
    theta_shape = (rows, genes) if theta_per_cell else (genes,)
    theta = torch.exp(torch.randn(theta_shape, generator=g, dtype=torch.float64) * 2)
    zi = torch.randn(rows, genes, generator=g, dtype=torch.float64)
    x = torch.poisson(mu * torch.rand(rows, genes, generator=g, dtype=torch.float64) * 2, generator=g)
    x[:, ::5] = 0
    out = [t.to(dtype) for t in (x, mu, theta, zi)]
    return [out[0]] + [t.requires_grad_(requires_grad) for t in out[1:]]


def _close(a, b, dtype):
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == torch.float64 else dict(rtol=2e-5, atol=2e-4)
    torch.testing.assert_close(a.to(b.dtype), b, **tol)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("theta_per_cell", [False, True], ids=["theta_per_gene", "theta_per_cell"])
def test_log_nb_and_zinb_positive_values(scvi, dtype, theta_per_cell):
    """float64 against scvi's float64; float32 against scvi's float64 on the
    same (rounded) inputs too: scvi's own float32 loses digits at the
    larger thetas here (up to e^8), ours should not."""
    x, mu, theta, zi = _data(theta_per_cell=theta_per_cell, dtype=dtype)
    x64, mu64, theta64, zi64 = (t.double() for t in (x, mu, theta, zi))
    for ours_out, truth in (
        (ours.log_nb_positive(x, mu, theta), scvi.log_nb_positive(x64, mu64, theta64)),
        (ours.log_zinb_positive(x, mu, theta, zi), scvi.log_zinb_positive(x64, mu64, theta64, zi64)),
        (ours.log_nb_positive(x, mu, theta, eps=1e-3), scvi.log_nb_positive(x64, mu64, theta64, eps=1e-3)),
    ):
        assert ours_out.dtype == dtype
        # within a few roundings of the size of the formula's terms (below
        # theta = 10 the kernels shift lgamma's argument by 10, terms of ~20)
        lgammas = torch.lgamma(theta64).abs() + torch.lgamma(x64 + theta64).abs() + torch.lgamma(x64 + 1)
        scale = truth.abs() + lgammas + x64 * mu64.log().abs() + 1
        rel = 1e-12 if dtype == torch.float64 else 2e-6
        assert ((ours_out.double() - truth).abs() <= rel * scale).all()


@pytest.mark.parametrize("theta_per_cell", [False, True], ids=["theta_per_gene", "theta_per_cell"])
@pytest.mark.parametrize("which", ["nb", "zinb"])
def test_log_positive_gradients(scvi, theta_per_cell, which):
    """float64 gradients for mu, theta and the logits, grad_output != 1."""
    x, mu, theta, zi = _data(theta_per_cell=theta_per_cell, requires_grad=True)
    grad_out = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3)) * 1.7 + 0.3
    params = (mu, theta, zi) if which == "zinb" else (mu, theta)

    def run(module):
        out = module.log_zinb_positive(x, mu, theta, zi) if which == "zinb" else module.log_nb_positive(x, mu, theta)
        return torch.autograd.grad(out, params, grad_out)

    for a, b in zip(run(ours), run(scvi)):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


def test_zeros_tiny_means_and_huge_values(scvi):
    """Zeros, means of 0 and 1e-30, counts to 1e5 and theta to 1e8. In
    float64 both agree; in float32 ours stays near scvi's float64 value
    where scvi's own float32 result does not."""
    x = torch.tensor([0.0, 0.0, 3.0, 1e5, 50.0, 500.0, 7.0, 0.0])
    mu = torch.tensor([0.0, 1e-30, 1e-30, 1e5, 5.0, 5.0, 5.0, 5.0])
    theta = torch.tensor([1.0, 0.5, 2.0, 3.0, 1e4, 1e8, 1e8, 1e8])
    zi = torch.tensor([0.0, -3.0, 2.0, 0.5, -1.0, 1.0, -20.0, 20.0])
    x64, mu64, th64, zi64 = (t.double() for t in (x, mu, theta, zi))
    for fn, args in (("log_nb_positive", ()), ("log_zinb_positive", (zi,))):
        truth = getattr(scvi, fn)(x64, mu64, th64, *(a.double() for a in args))
        # (scvi's float64 lgamma(x + theta) - lgamma(theta) carries ~2e-7 at theta = 1e8)
        torch.testing.assert_close(getattr(ours, fn)(x64, mu64, th64, *(a.double() for a in args)), truth,
                                   rtol=1e-9, atol=1e-6)
        ours32 = getattr(ours, fn)(x, mu, theta, *args).double()
        scvi32 = getattr(scvi, fn)(x, mu, theta, *args).double()
        ours_err = (ours32 - truth).abs()
        assert (ours_err <= 1e-6 * (truth.abs() + 1e6 * (x64 >= 1e5)) + 1e-12).all(), ours_err
        assert (scvi32 - truth).abs().max() > 1.0  # scvi's float32 at theta = 1e8: nats off
        # (the count of 1e5 is allowed its float32 rounding of lgamma(1e5 + 1) = 1e6)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shared_theta", [True, False], ids=["theta_shared", "theta_2"])
def test_log_mixture_nb_values_and_gradients(scvi, dtype, shared_theta):
    """log_mixture_nb against scvi's float64 (its theta_2 path takes its
    default eps, which is also what is passed here); gradients in float64,
    grad_output != 1."""
    x, mu, theta, pi = _data(dtype=dtype, requires_grad=dtype == torch.float64)
    mu_2 = (mu.detach() * 3 + 0.5).requires_grad_(dtype == torch.float64)
    theta_2 = None if shared_theta else (theta.detach() * 0.3 + 0.1).requires_grad_(dtype == torch.float64)
    args64 = [t.double() if t is not None else None for t in (x, mu, mu_2, theta, theta_2, pi)]
    truth = scvi.log_mixture_nb(*args64)
    value = ours.log_mixture_nb(x, mu, mu_2, theta, theta_2, pi)
    assert value.dtype == dtype and value.shape == truth.shape
    x64, mu64, mu2_64, th64 = args64[:4]
    lgammas = torch.lgamma(th64).abs() + torch.lgamma(x64 + th64).abs() + torch.lgamma(x64 + 1)
    scale = truth.abs() + lgammas + x64 * (mu64.log().abs() + mu2_64.log().abs()) + 1
    rel = 1e-12 if dtype == torch.float64 else 2e-6
    assert ((value.double() - truth).abs() <= rel * scale).all()
    if dtype == torch.float64:
        params = [t for t in (mu, mu_2, theta, theta_2, pi) if t is not None]
        grad_out = torch.rand(x.shape, dtype=dtype, generator=torch.Generator().manual_seed(2)) * 2 - 0.5
        ours_grads = torch.autograd.grad(value, params, grad_out)
        theirs_grads = torch.autograd.grad(scvi.log_mixture_nb(x, mu, mu_2, theta, theta_2, pi), params, grad_out)
        for a, b in zip(ours_grads, theirs_grads):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


def test_negative_binomial_mixture_distribution(scvi):
    x, mu, theta, pi = _data()
    mu_2 = mu * 3 + 0.5
    a = ours.NegativeBinomialMixture(mu1=mu, mu2=mu_2, theta1=theta, mixture_logits=pi)
    b = scvi.NegativeBinomialMixture(mu1=mu, mu2=mu_2, theta1=theta, mixture_logits=pi)
    for name in ("mean", "mixture_probs", "mu1", "mu2", "theta1", "mixture_logits"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.testing.assert_close(a.log_prob(x), b.log_prob(x), rtol=1e-10, atol=1e-10)
    assert repr(a) == repr(b).replace("scvi.distributions._negative_binomial.", "")
    # theta2: scvi-tools stores the pair broadcast_all returns; this keeps theta2
    c = ours.NegativeBinomialMixture(mu1=mu, mu2=mu_2, theta1=theta, mixture_logits=pi, theta2=theta * 2)
    assert c.theta2.shape == mu.shape
    torch.testing.assert_close(c.log_prob(x), ours.log_mixture_nb(x, mu, mu_2, theta, theta * 2, pi))
    # validation: only with validate_args, a warning (scvi-tools: every call)
    v = ours.NegativeBinomialMixture(mu1=mu, mu2=mu_2, theta1=theta, mixture_logits=pi, validate_args=True)
    with pytest.warns(UserWarning, match="support"):
        v.log_prob(x + 0.5)
    # sampling: one component drawn per element (as scvi-tools: once, not per
    # sample_shape entry), then Gamma-Poisson counts of it
    torch.manual_seed(0)
    n = 40000
    samples = ours.NegativeBinomialMixture(
        mu1=torch.full((1, n), 2.0), mu2=torch.full((1, n), 40.0), theta1=torch.full((n,), 5.0),
        mixture_logits=torch.full((1, n), 0.5),
    ).sample()
    expected = torch.sigmoid(torch.tensor(0.5)) * 2 + torch.sigmoid(torch.tensor(-0.5)) * 40
    assert samples.shape == (1, n) and (samples == samples.round()).all()
    assert abs(samples.mean() - expected) < 0.03 * expected


def test_non_default_functions_run_the_formula(scvi):
    x, mu, theta, zi = _data()
    calls = []

    def lgamma(v):
        calls.append(1)
        return torch.lgamma(v)

    _close(ours.log_nb_positive(x, mu, theta, lgamma_fn=lgamma), scvi.log_nb_positive(x, mu, theta), torch.float64)
    _close(ours.log_zinb_positive(x, mu, theta, zi, log_fn=lambda v: torch.log(v)),
           scvi.log_zinb_positive(x, mu, theta, zi), torch.float64)
    assert len(calls) == 3


def test_distribution_properties(scvi):
    x, mu, theta, zi = _data()
    for cls, kwargs in (("NegativeBinomial", dict(mu=mu, theta=theta)),
                        ("ZeroInflatedNegativeBinomial", dict(mu=mu, theta=theta, zi_logits=zi))):
        a, b = getattr(ours, cls)(**kwargs), getattr(scvi, cls)(**kwargs)
        for name in ("mean", "variance", "mu", "theta"):
            torch.testing.assert_close(getattr(a, name), getattr(b, name))
        if cls.startswith("Zero"):
            torch.testing.assert_close(a.zi_probs, b.zi_probs)
            torch.testing.assert_close(a.zi_logits, b.zi_logits)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # scvi's log_prob warns on its float32 masks? (no: checks support)
                torch.testing.assert_close(a.log_prob(x), b.log_prob(x), rtol=1e-10, atol=1e-10)
        else:
            torch.testing.assert_close(a.log_prob(x), b.log_prob(x), rtol=1e-10, atol=1e-10)
        assert repr(a) == repr(b).replace("scvi.distributions._negative_binomial.", "")
        assert a.get_normalized("mu") is a.mu
    # the (total_count, logits) parameterisation
    logits, total = torch.randn(4, 6, dtype=torch.float64), torch.rand(4, 6, dtype=torch.float64) * 5 + 0.1
    a, b = ours.NegativeBinomial(total_count=total, logits=logits), scvi.NegativeBinomial(total_count=total, logits=logits)
    for name in ("mu", "theta", "scale"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name))
    probs = torch.rand(4, 6, dtype=torch.float64)
    a, b = ours.NegativeBinomial(total_count=total, probs=probs), scvi.NegativeBinomial(total_count=total, probs=probs)
    torch.testing.assert_close(a.mu, b.mu)
    with pytest.raises(ValueError, match="parameterizations"):
        ours.NegativeBinomial(mu=mu, theta=theta, total_count=total)
    # Poisson
    rate = mu.float()
    a, b = ours.Poisson(rate, scale=rate), scvi.Poisson(rate, scale=rate)
    torch.testing.assert_close(a.log_prob(x.float()), b.log_prob(x.float()), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(ours.Poisson(mu).log_prob(x), scvi.Poisson(mu).log_prob(x), rtol=1e-10, atol=1e-10)
    assert repr(a) == repr(b)
    assert a.get_normalized("scale") is rate


def test_sampling_moments():
    """Gamma-Poisson samples: the mean and variance of the distribution;
    the zero-inflated one has the extra zeros."""
    torch.manual_seed(0)
    mu, theta, zi = torch.tensor([[4.0, 20.0]]), torch.tensor([2.0, 50.0]), torch.tensor([[0.0, -2.0]])
    for dist in (ours.NegativeBinomial(mu=mu, theta=theta), ours.ZeroInflatedNegativeBinomial(mu=mu, theta=theta, zi_logits=zi)):
        samples = dist.sample((40000,))
        assert samples.shape == (40000, 1, 2) and samples.dtype == mu.dtype
        assert (samples == samples.round()).all() and (samples >= 0).all()
        torch.testing.assert_close(samples.mean(0), dist.mean, rtol=0.03, atol=0.05)
        torch.testing.assert_close(samples.var(0), dist.variance, rtol=0.06, atol=0.2)


def test_validation(scvi):
    mu, theta = torch.ones(2, 3), torch.ones(3)
    with pytest.raises(ValueError):
        ours.NegativeBinomial(mu=-mu, theta=theta, validate_args=True)
    with pytest.raises(ValueError):
        scvi.NegativeBinomial(mu=-mu, theta=theta, validate_args=True)
    nb = ours.ZeroInflatedNegativeBinomial(mu=mu, theta=theta, zi_logits=torch.zeros(2, 3), validate_args=True)
    with pytest.warns(UserWarning, match="support"):
        nb.log_prob(torch.full((2, 3), 0.5))
    with pytest.raises(ValueError):  # torch's Poisson validates the value
        ours.Poisson(mu).log_prob(torch.full((2, 3), -1.0))
    # without validation a negative count is refused on the CPU by the op's domain check
    with pytest.raises(ValueError, match="x: expected counts >= 0"):
        ours.NegativeBinomial(mu=mu, theta=theta).log_prob(torch.full((2, 3), -1.0))


def _scvi_vae_loss(scvi, x, px_rate, theta, px_dropout, qz_m, qz_v, kl_weight, gene_likelihood):
    """scvi-tools' VAE.loss (scvi/module/_vae.py) with an observed library
    size, on scvi's own distributions (the module itself needs the full stack)."""
    if gene_likelihood == "zinb":
        px = scvi.ZeroInflatedNegativeBinomial(mu=px_rate, theta=theta, zi_logits=px_dropout, scale=px_rate)
    elif gene_likelihood == "nb":
        px = scvi.NegativeBinomial(mu=px_rate, theta=theta, scale=px_rate)
    else:
        px = scvi.Poisson(rate=px_rate, scale=px_rate)
    kl_z = kl_divergence(Normal(qz_m, qz_v.sqrt()), Normal(torch.zeros_like(qz_m), torch.ones_like(qz_v))).sum(dim=-1)
    kl_l = torch.zeros_like(kl_z)
    reconst = -px.log_prob(x).sum(-1)
    loss = torch.mean(reconst + (kl_weight * kl_z + kl_l))
    return loss, reconst, kl_l, kl_z


@pytest.mark.parametrize("gene_likelihood", ["zinb", "nb", "poisson"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_scvi_loss_matches_vae_loss(scvi, gene_likelihood, dtype):
    x, mu, theta, zi = _data(rows=12, genes=40, dtype=dtype, requires_grad=True)
    g = torch.Generator().manual_seed(5)
    qz_m = torch.randn(12, 10, generator=g, dtype=torch.float64).to(dtype).requires_grad_()
    qz_v = (torch.exp(torch.randn(12, 10, generator=g, dtype=torch.float64)) + 1e-4).to(dtype).requires_grad_()
    out = ours.scvi_loss(x, mu, theta, zi, qz_m, qz_v, kl_weight=0.7, gene_likelihood=gene_likelihood)
    loss, reconst, kl_l, kl_z = _scvi_vae_loss(scvi, x, mu, theta, zi, qz_m, qz_v, 0.7, gene_likelihood)
    assert isinstance(out, ours.LossOutput)
    assert set(out.kl_local) == {"kl_divergence_l", "kl_divergence_z"}
    assert out.n_obs_minibatch == 12
    _close(out.loss, loss, dtype)
    _close(out.reconstruction_loss["reconstruction_loss"], reconst, dtype)
    _close(out.kl_local["kl_divergence_z"], kl_z, dtype)
    assert torch.equal(out.kl_local["kl_divergence_l"], kl_l)
    _close(out.reconstruction_loss_sum, reconst.sum(), dtype)
    _close(out.kl_local_sum, (kl_l + kl_z).sum(), dtype)
    params = [t for t, used in ((mu, True), (theta, gene_likelihood != "poisson"), (zi, gene_likelihood == "zinb"),
                                (qz_m, True), (qz_v, True)) if used]
    for a, b in zip(torch.autograd.grad(out.loss, params), torch.autograd.grad(loss, params)):
        _close(a, b, dtype)


def test_scvi_loss_bad_likelihood():
    with pytest.raises(ValueError, match="gene_likelihood"):
        ours.scvi_loss(torch.ones(2, 3), torch.ones(2, 3), torch.ones(3), None, torch.zeros(2, 4), torch.ones(2, 4),
                       gene_likelihood="gaussian")


def test_scvi_loss_likelihood_names_in_any_case():
    # One rule for names across the library: case-insensitive, as
    # count_log_likelihood(likelihood="NB") is.
    args = (torch.ones(2, 3), torch.ones(2, 3), torch.ones(3), torch.zeros(2, 3), torch.zeros(2, 4), torch.ones(2, 4))
    for name in ("zinb", "nb", "poisson"):
        lower = ours.scvi_loss(*args, gene_likelihood=name)
        upper = ours.scvi_loss(*args, gene_likelihood=name.upper())
        torch.testing.assert_close(upper.loss, lower.loss)
    with pytest.raises(ValueError, match="gene_likelihood: expected one of"):
        ours.scvi_loss(*args, gene_likelihood=None)


def test_scvi_loss_refuses_a_variance_that_is_a_log_variance():
    # A log-variance passed as qz_v (negative values) makes the loss NaN:
    # refused naming qz_v, as the count arguments are.
    qz_v = torch.ones(2, 4)
    qz_v[1, 2] = -0.5
    with pytest.raises(ValueError, match=r"qz_v: expected variances > 0 .*found -0.5"):
        ours.scvi_loss(torch.ones(2, 3), torch.ones(2, 3), torch.ones(3), torch.zeros(2, 3), torch.zeros(2, 4), qz_v)
