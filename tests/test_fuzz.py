"""Property-based tests (hypothesis): random shapes, strides, dtypes,
likelihoods, broadcasting and value ranges (extremes included), every op
and its gradients, and the models' compute_loss, against the oracle.

Profiles: ``ci`` (the default: a few dozen examples per test, seconds in
all) and ``long`` (``PYAUTOENCODER_FAST_FUZZ=long``: thousands per test).
The examples are derandomised, so a CI failure reproduces.
"""

from __future__ import annotations

import os

import pytest
import torch

if os.environ.get("CI"):  # CI installs the test extra: a skipped fuzz run must not pass as green
    import hypothesis  # noqa: F401
else:
    hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import pyautoencoder_fast as paf  # noqa: E402
from pyautoencoder_fast import functional as F  # noqa: E402
from pyautoencoder_fast import reference  # noqa: E402
from pyautoencoder_fast.variational import VAEOutput  # noqa: E402
from conftest import DTYPES, LIKELIHOODS, check_against_oracle, reparameterize_with_oracle, requires_extension  # noqa: E402

pytestmark = requires_extension

_COMMON = dict(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, print_blob=True)
settings.register_profile("ci", max_examples=40, **_COMMON)
settings.register_profile("long", max_examples=2000, **_COMMON)
PROFILE = os.environ.get("PYAUTOENCODER_FAST_FUZZ", "ci")
settings.load_profile(PROFILE)

dtypes = st.sampled_from(DTYPES)
likelihoods = st.sampled_from(LIKELIHOODS)
layouts = st.sampled_from(["contiguous", "transposed", "strided", "expanded"])
scales = st.sampled_from([1e-3, 1.0, 4.0, 30.0])
SPECIALS = [float("inf"), float("-inf"), float("nan")]


def _values(draw, shape, kind, scale):
    """float64 values for a tensor of `shape`: targets in [0, 1] (kind 'x'
    of a Bernoulli), probabilities in (0, 1), or normals times `scale`."""
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    if kind == "unit":
        return torch.rand(shape, generator=g, dtype=torch.float64)
    if kind == "prob":  # kept off 0 and 1 in every dtype: there torch's d/dx ignores its own -100 clamp
        return torch.sigmoid(torch.randn(shape, generator=g, dtype=torch.float64) * 2).clamp(0.01, 0.99)
    return torch.randn(shape, generator=g, dtype=torch.float64) * scale


def _layout(draw, values):
    """values (float64) in a random memory layout with the same shape and contents."""
    layout = draw(layouts)
    if values.dim() < 2 or values.numel() == 0:
        return values
    if layout == "transposed":
        return values.transpose(-1, -2).contiguous().transpose(-1, -2)
    if layout == "strided":
        wide = torch.zeros(*values.shape[:-1], values.shape[-1] * 2, dtype=values.dtype)
        wide[..., ::2] = values
        return wide[..., ::2]
    if layout == "expanded" and values.shape[0] > 1:
        return values[:1].expand_as(values)
    return values


@st.composite
def likelihood_case(draw, *, sample_axis):
    likelihood = draw(likelihoods)
    batch = draw(st.integers(0, 5))
    samples = draw(st.integers(1, 3))
    features = tuple(draw(st.lists(st.integers(0 if batch else 1, 9), min_size=1, max_size=3)))
    scale = draw(scales)
    x_kind = "unit" if likelihood.startswith("bernoulli") else "real"
    h_kind = "prob" if likelihood == "bernoulli_probs" else "real"
    x = _layout(draw, _values(draw, (batch, *features), x_kind, scale))
    h_shape = (batch, samples, *features) if sample_axis else (batch, *features)
    x_hat = _layout(draw, _values(draw, h_shape, h_kind, scale))
    if not sample_axis and draw(st.booleans()) and batch > 0:  # broadcast x against x_hat
        x = x[:1]
    return likelihood, x, x_hat, draw(dtypes)


@given(likelihood_case(sample_axis=False))
def test_fuzz_log_likelihood(case):
    likelihood, x, x_hat, dtype = case
    check_against_oracle(lambda a, b: F.log_likelihood(a, b, likelihood),
                         [x.requires_grad_(), x_hat.requires_grad_()], dtype, loose=True)


@given(likelihood_case(sample_axis=True))
def test_fuzz_log_likelihood_sum(case):
    likelihood, x, x_hat, dtype = case
    check_against_oracle(lambda a, b: F.log_likelihood_sum(a, b, likelihood),
                         [x.requires_grad_(), x_hat.requires_grad_()], dtype, loose=True)


@st.composite
def latent_case(draw, *, prior):
    batch, dims = draw(st.integers(0, 6)), draw(st.integers(0 if prior else 1, 40))
    scale = draw(st.sampled_from([0.1, 1.0, 3.0]))
    mu = _layout(draw, _values(draw, (batch, dims), "real", scale))
    log_var = _layout(draw, _values(draw, (batch, dims), "real", scale))
    tensors = [mu, log_var]
    if prior:
        shape = draw(st.sampled_from([(batch, dims), (dims,), (1, dims)]))
        tensors += [_values(draw, shape, "real", scale), _values(draw, shape, "real", scale)]
    return tensors, draw(dtypes)


@given(latent_case(prior=True), st.booleans(), st.sampled_from([None, (-2.0, 2.0)]))
def test_fuzz_kl_diag_gaussian(case, reduce_sum, clamp):
    tensors, dtype = case
    lo, hi = clamp or (None, None)
    check_against_oracle(
        lambda a, b, c, d: F.kl_diag_gaussian(a, b, c, d, reduce_sum=reduce_sum, clamp_min=lo, clamp_max=hi),
        [t.requires_grad_() for t in tensors], dtype, loose=True)


@given(latent_case(prior=False), st.integers(1, 4), st.integers(0, 2**62))
def test_fuzz_reparameterize(case, samples, seed):
    (mu, log_var), dtype = case
    check_against_oracle(reparameterize_with_oracle(samples, seed, dtype),
                         [mu.requires_grad_(), log_var.requires_grad_()], dtype, loose=True)


@given(latent_case(prior=False), latent_case(prior=False))
def test_fuzz_adagvae_posterior(first, second):
    (mu1, lv1), dtype = first
    (mu2, lv2), _ = second
    if mu1.shape != mu2.shape:
        mu2, lv2 = mu1.flip(-1) * 0.5, lv1 * 0.3
    if dtype in (torch.float16, torch.bfloat16):
        dtype = torch.float32  # near-ties of kl < tau flip under half rounding (tested separately)
    check_against_oracle(F.adagvae_posterior, [t.requires_grad_() for t in (mu1, lv1, mu2, lv2)], dtype, loose=True)


@given(likelihood_case(sample_axis=True), st.floats(0.0, 8.0), st.integers(1, 12))
def test_fuzz_elbo(case, beta, dims):
    likelihood, x, x_hat, dtype = case
    g = torch.Generator().manual_seed(dims)
    mu = torch.randn(x.shape[0], dims, generator=g, dtype=torch.float64)
    log_var = torch.randn(x.shape[0], dims, generator=g, dtype=torch.float64)
    check_against_oracle(lambda a, b, c, d: F.elbo_stats(a, b, c, d, beta, likelihood),
                         [t.requires_grad_() for t in (x, x_hat, mu, log_var)], dtype, loose=True)


@given(likelihood_case(sample_axis=True), st.sampled_from(SPECIALS), st.data())
def test_fuzz_non_finite_values_propagate_like_the_oracle(case, special, data):
    likelihood, x, x_hat, dtype = case
    if x_hat.numel() == 0 or likelihood == "bernoulli_probs":
        return  # (a probability of +-inf or NaN: torch's binary_cross_entropy, the oracle, refuses it)
    x_hat = x_hat.contiguous().clone()
    index = data.draw(st.integers(0, x_hat.numel() - 1))
    x_hat.view(-1)[index] = special
    check_against_oracle(lambda a, b: F.log_likelihood_sum(a, b, likelihood), [x, x_hat], dtype, grad=False, loose=True)
    check_against_oracle(lambda a, b: F.log_likelihood(a, b, likelihood), [x.unsqueeze(1), x_hat], dtype, grad=False, loose=True)


@given(likelihood_case(sample_axis=True), st.floats(0.0, 4.0))
def test_fuzz_vae_compute_loss(case, beta):
    likelihood, x, x_hat, dtype = case
    dims = 3
    g = torch.Generator().manual_seed(x.numel())
    mu = torch.randn(x.shape[0], dims, generator=g, dtype=torch.float64)
    log_var = torch.randn(x.shape[0], dims, generator=g, dtype=torch.float64)
    z = torch.zeros(x.shape[0], x_hat.shape[1], dims, dtype=torch.float64)
    model = paf.VAE(torch.nn.Identity(), torch.nn.Identity(), dims)

    def loss(a, b, c, d):
        out = model.compute_loss(a, VAEOutput(x_hat=b, z=z.to(b.dtype), mu=c, log_var=d), beta=beta, likelihood=likelihood)
        diagnostics = (torch.tensor(v, dtype=out.objective.dtype) for v in out.diagnostics.values())
        return (out.objective, *diagnostics)

    check_against_oracle(loss, [t.requires_grad_() for t in (x, x_hat, mu, log_var)], dtype, loose=True)


@given(
    st.sampled_from(["nb", "zinb", "poisson"]),
    dtypes,
    st.integers(0, 6),
    st.integers(1, 70),
    st.sampled_from(["gene", "cell"]),
    st.sampled_from([0.5, 2.0, 6.0]),  # spread of log mu
    st.sampled_from([0.5, 3.0, 8.0]),  # spread of log theta (up to ~e^30)
    st.booleans(),
    st.integers(0, 2**31 - 1),
)
def test_fuzz_count_log_likelihood(likelihood, dtype, rows, genes, theta_per, mu_spread, theta_spread, reduce_sum, seed):
    """Counts with zeros and long tails, means and dispersions over many
    orders of magnitude, per-gene or per-cell theta, against the oracle."""
    g = torch.Generator().manual_seed(seed)
    mu = (torch.exp(torch.randn(rows, genes, generator=g, dtype=torch.float64) * mu_spread)).requires_grad_()
    x = torch.poisson(mu.detach() * torch.rand(rows, genes, generator=g, dtype=torch.float64) * 2, generator=g)
    theta = zi = None
    if likelihood != "poisson":
        shape = (genes,) if theta_per == "gene" else (rows, genes)
        theta = torch.exp(torch.randn(shape, generator=g, dtype=torch.float64) * theta_spread)
        theta = theta.clamp(1e-3, torch.finfo(dtype).max / 4).requires_grad_()  # positive in the dtype
    if likelihood == "zinb":
        zi = (torch.randn(rows, genes, generator=g, dtype=torch.float64) * 3).requires_grad_()
    fn = lambda *a: F.count_log_likelihood(*a, likelihood=likelihood, reduce_sum=reduce_sum)
    if dtype == torch.float64 and mu_spread <= 2.0 and theta_spread <= 3.0:
        # values and gradients, the oracle's tolerance (beyond these ranges the
        # float64 oracle's own lgamma differences carry more than 1e-10)
        check_against_oracle(fn, [x, mu, theta, zi], dtype)
    # The value, within a few roundings of the size of its terms (counts of
    # thousands make lgamma(x + 1) and x log mu ~1e5 that cancel to a few
    # nats: no formula in the dtype keeps those digits); NaN where both are.
    rounded = [t.detach().to(dtype) if t is not None else None for t in (x, mu, theta, zi)]
    x64, mu64, theta64, zi64 = (t.double() if t is not None else None for t in rounded)
    truth = reference.count_log_likelihood(x64, mu64, theta64, zi64, likelihood, 1e-8, False, False, False)[0]
    terms = truth.abs() + torch.lgamma(x64 + 1) + x64 * (mu64 + 1e-8).log().abs() + mu64 + 1
    if theta64 is not None:
        terms = terms + torch.lgamma(theta64).abs() + torch.lgamma(x64 + theta64).abs()
    ours = F.count_log_likelihood(*rounded, likelihood=likelihood).double()
    eps = torch.finfo(dtype).eps if dtype in (torch.float32, torch.float64) else 2 * torch.finfo(dtype).eps
    ok = ((ours - truth).abs() <= 16 * eps * terms) | (ours.isnan() & truth.isnan()) | (ours == truth)
    assert ok.all(), (ours[~ok], truth[~ok])
    if reduce_sum:  # the sum in one pass: the sum of the terms, to the same tolerance
        summed = F.count_log_likelihood(*rounded, likelihood=likelihood, reduce_sum=True).double()
        total = truth.sum(-1)
        ok = ((summed - total).abs() <= 16 * eps * terms.sum(-1) + 1e-6) | (summed.isnan() & total.isnan())
        assert ok.all(), (summed[~ok], total[~ok])


@given(
    dtypes,
    st.integers(0, 6),
    st.integers(1, 70),
    st.booleans(),  # a separate theta_2
    st.sampled_from([0.5, 2.0, 6.0]),  # spread of log mu
    st.sampled_from([0.5, 3.0, 8.0]),  # spread of log theta
    st.booleans(),
    st.integers(0, 2**31 - 1),
)
def test_fuzz_nb_mixture_log_likelihood(dtype, rows, genes, separate_theta, mu_spread, theta_spread, reduce_sum, seed):
    """The NB mixture with means and dispersions over many orders of
    magnitude and weights near 0 and 1, against the oracle: the value within
    a few roundings of the size of its components' terms."""
    g = torch.Generator().manual_seed(seed)
    mu_1 = torch.exp(torch.randn(rows, genes, generator=g, dtype=torch.float64) * mu_spread)
    mu_2 = mu_1 * torch.exp(torch.rand(rows, genes, generator=g, dtype=torch.float64) * 3)
    x = torch.poisson(mu_2 * torch.rand(rows, genes, generator=g, dtype=torch.float64) * 2, generator=g)
    theta = lambda: torch.exp(torch.randn(genes, generator=g, dtype=torch.float64) * theta_spread).clamp(
        1e-3, torch.finfo(dtype).max / 4)
    theta_1, theta_2 = theta(), theta() if separate_theta else None
    pi = torch.randn(rows, genes, generator=g, dtype=torch.float64) * 4
    args = [x, mu_1, mu_2, theta_1, theta_2, pi]
    fn = lambda *a: F.nb_mixture_log_likelihood(*a, reduce_sum=reduce_sum)
    if dtype == torch.float64 and mu_spread <= 2.0 and theta_spread <= 3.0:
        check_against_oracle(fn, [t.requires_grad_() if t is not None else None for t in args], dtype)
    rounded = [t.detach().to(dtype) if t is not None else None for t in args]
    x64, mu1_64, mu2_64, t1_64, t2_64, pi64 = (t.double() if t is not None else None for t in rounded)
    truth = reference.nb_mixture_log_likelihood(x64, mu1_64, mu2_64, t1_64, t2_64, pi64, 1e-8, False)[0]
    terms = truth.abs() + torch.lgamma(x64 + 1) + x64 * (mu1_64.log().abs() + mu2_64.log().abs()) + mu2_64 + 1
    for t in (t1_64, t2_64 if t2_64 is not None else t1_64):
        terms = terms + torch.lgamma(t).abs() + torch.lgamma(x64 + t).abs()
    ours = F.nb_mixture_log_likelihood(*rounded).double()
    eps = torch.finfo(dtype).eps if dtype in (torch.float32, torch.float64) else 2 * torch.finfo(dtype).eps
    ok = ((ours - truth).abs() <= 16 * eps * terms) | (ours.isnan() & truth.isnan()) | (ours == truth)
    assert ok.all(), (ours[~ok], truth[~ok])
    if reduce_sum:
        summed = F.nb_mixture_log_likelihood(*rounded, reduce_sum=True).double()
        total = truth.sum(-1)
        ok = ((summed - total).abs() <= 16 * eps * terms.sum(-1) + 1e-6) | (summed.isnan() & total.isnan())
        assert ok.all(), (summed[~ok], total[~ok])


def _log_var_like(draw, x_hat, scale):
    """A Gaussian log-variance that broadcasts to x_hat [B, S, ...]: per
    element, shared by the samples, per feature, broadcast within the
    features, or 0-d."""
    kind = draw(st.sampled_from(["element", "per_x", "feature", "partial", "scalar"]))
    shape = {
        "element": tuple(x_hat.shape),
        "per_x": (x_hat.shape[0], 1, *x_hat.shape[2:]),
        "feature": tuple(x_hat.shape[2:]),
        "partial": (*x_hat.shape[:-1], 1),
        "scalar": (),
    }[kind]
    return _layout(draw, _values(draw, shape, "real", min(scale, 1.0)))


@given(likelihood_case(sample_axis=True), st.floats(0.0, 8.0), st.integers(1, 12), st.data())
def test_fuzz_elbo_learned_variance(case, beta, dims, data):
    _, x, x_hat, dtype = case
    x_log_var = _log_var_like(data.draw, x_hat, 1.0)
    g = torch.Generator().manual_seed(dims)
    mu = torch.randn(x.shape[0], dims, generator=g, dtype=torch.float64)
    log_var = torch.randn(x.shape[0], dims, generator=g, dtype=torch.float64)
    check_against_oracle(lambda a, b, c, d, e: F.elbo_stats(a, b, c, d, beta, "gaussian", e),
                         [t.requires_grad_() for t in (x, x_hat, mu, log_var, x_log_var)], dtype, loose=True)
    check_against_oracle(lambda a, b, e: F.log_likelihood_sum(a, b, "gaussian", e),
                         [t.detach().requires_grad_() for t in (x, x_hat, x_log_var)], dtype, loose=True)


@given(likelihood_case(sample_axis=True), st.integers(1, 12), st.booleans(), st.data())
def test_fuzz_iwae_bound(case, dims, learned_variance, data):
    likelihood, x, x_hat, dtype = case
    batch, samples = x_hat.shape[0], x_hat.shape[1]
    g = torch.Generator().manual_seed(dims)
    mu = torch.randn(batch, dims, generator=g, dtype=torch.float64)
    log_var = torch.randn(batch, dims, generator=g, dtype=torch.float64) * 0.5
    z = mu[:, None] + torch.exp(0.5 * log_var)[:, None] * torch.randn(batch, samples, dims, generator=g,
                                                                         dtype=torch.float64)
    tensors = [x, x_hat, z, mu, log_var]
    if learned_variance and likelihood == "gaussian":
        tensors.append(_log_var_like(data.draw, x_hat, 1.0))
    fn = lambda *a: F.iwae_bound(*a[:5], likelihood, *a[5:])  # noqa: E731
    check_against_oracle(fn, [t.requires_grad_() for t in tensors], dtype, loose=True)
