"""One representative CUDA case per op and dtype, forward and backward, for
compute-sanitizer (``.ci/gpu_check memcheck`` / ``racecheck``): few enough
to run under the sanitizers in a minute, varied enough to reach every kernel
path of each op (a warp per short row, several blocks per long row, 16-byte
packs and the one-element path, broadcast rows, the packed and the plain
sampler). Each case is also checked against the oracle, so it runs in the
ordinary GPU test step too. Skipped without a GPU.

The row sums (the ops whose threads share memory: ``log_likelihood_sum``,
``kl_diag_gaussian`` summed, ``elbo``) are the cases racecheck runs
(``-k row_sum``).
"""

from __future__ import annotations

import pytest
import torch

from pyautoencoder_fast import functional as F
from conftest import (
    DTYPES,
    check_against_oracle,
    random_inputs,
    reparameterize_with_oracle,
    require_cuda_kernels,
    requires_cuda,
    requires_extension,
)

pytestmark = [requires_cuda, requires_extension, pytest.mark.cuda]

# Row lengths: odd (one element at a time, a warp per row) and past one
# 4096-column chunk, a multiple of every pack width (several blocks per row).
SHORT, LONG = 37, 4104


@pytest.fixture(autouse=True)
def _cuda_kernels_built():
    require_cuda_kernels()


def _leaf(t):
    return t.requires_grad_()


@pytest.mark.parametrize("dtype", DTYPES)
def test_log_likelihood(dtype):
    for likelihood, (batch, features) in (("bernoulli", (5, SHORT)), ("gaussian", (3, LONG))):
        x = random_inputs((batch, 1, features), likelihood, torch.float64, target=True, requires_grad=True)
        x_hat = random_inputs((batch, 2, features), likelihood, torch.float64, requires_grad=True)
        check_against_oracle(lambda a, b: F.log_likelihood(a, b, likelihood), [x, x_hat], dtype, device="cuda")


@pytest.mark.parametrize("dtype", DTYPES)
def test_row_sum_log_likelihood_sum(dtype):
    for likelihood, (batch, features) in (("laplace", (9, SHORT)), ("bernoulli", (2, LONG))):
        x = random_inputs((batch, features), likelihood, torch.float64, target=True, requires_grad=True)
        x_hat = random_inputs((batch, 3, features), likelihood, torch.float64, requires_grad=True)
        check_against_oracle(lambda a, b: F.log_likelihood_sum(a, b, likelihood), [x, x_hat], dtype, device="cuda")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduce_sum", [True, False], ids=["row_sum", "elementwise"])
def test_kl_diag_gaussian(dtype, reduce_sum):
    for rows, cols in ((7, SHORT), (2, LONG)):
        mu_q, lv_q = _leaf(torch.randn(rows, cols, dtype=torch.float64)), _leaf(torch.randn(rows, cols, dtype=torch.float64))
        mu_p, lv_p = _leaf(torch.randn(cols, dtype=torch.float64)), _leaf(torch.randn(rows, cols, dtype=torch.float64))
        fn = lambda a, b, c, d: F.kl_diag_gaussian(a, b, c, d, reduce_sum=reduce_sum, clamp_min=-1.0, clamp_max=1.0)
        check_against_oracle(fn, [mu_q, lv_q, mu_p, lv_p], dtype, device="cuda")
        check_against_oracle(lambda a, b: F.kl_diag_gaussian(a, b, reduce_sum=reduce_sum), [mu_q, lv_q], dtype, device="cuda")


@pytest.mark.parametrize("dtype", DTYPES)
def test_reparameterize(dtype):
    for batch, latent in ((9, 16), (5, 7)):  # the packed sampler (a multiple of 4) and the plain one
        mu = _leaf(torch.randn(batch, latent, dtype=torch.float64))
        lv = _leaf(torch.randn(batch, latent, dtype=torch.float64) * 0.5)
        check_against_oracle(reparameterize_with_oracle(3, 2024, dtype), [mu, lv], dtype, device="cuda")


@pytest.mark.parametrize("dtype", DTYPES)
def test_row_sum_elbo(dtype):
    for likelihood, (batch, samples, features, latent) in (("gaussian", (6, 2, SHORT, 10)), ("bernoulli", (2, 1, LONG, 8))):
        x = random_inputs((batch, features), likelihood, torch.float64, target=True)
        x_hat = random_inputs((batch, samples, features), likelihood, torch.float64, requires_grad=True)
        mu = _leaf(torch.randn(batch, latent, dtype=torch.float64))
        lv = _leaf(torch.randn(batch, latent, dtype=torch.float64) * 0.5)
        fn = lambda a, b, c, d: F.elbo_stats(a, b, c, d, 2.0, likelihood)
        check_against_oracle(fn, [x, x_hat, mu, lv], dtype, device="cuda")


@pytest.mark.parametrize("dtype", DTYPES)
def test_adagvae_posterior(dtype):
    inputs = [_leaf(torch.randn(11, 10, dtype=torch.float64)) for _ in range(4)]
    check_against_oracle(F.adagvae_posterior, inputs, dtype, device="cuda")


def _counts_case(likelihood, batch, genes, *, x_grad=False):
    """(x, mu, theta per gene, zi_logits) as float64 leaves; theta spans both
    sides of 10 (the kernels' two branches)."""
    mu = _leaf(torch.exp(torch.randn(batch, genes, dtype=torch.float64)) * 3)
    x = torch.poisson(mu.detach())
    if x_grad:
        x = _leaf(x + 0.25)
    theta = _leaf(torch.exp(torch.randn(genes, dtype=torch.float64) * 2.5)) if likelihood != "poisson" else None
    zi = _leaf(torch.randn(batch, genes, dtype=torch.float64)) if likelihood == "zinb" else None
    return [x, mu, theta, zi]


@pytest.mark.parametrize("dtype", DTYPES)
def test_count_log_likelihood(dtype):
    for likelihood, (batch, genes) in (("zinb", (5, SHORT)), ("nb", (3, LONG)), ("poisson", (4, SHORT))):
        fn = lambda *a: F.count_log_likelihood(*a, likelihood=likelihood)
        check_against_oracle(fn, _counts_case(likelihood, batch, genes), dtype, device="cuda")


@pytest.mark.parametrize("dtype", DTYPES)
def test_row_sum_count_log_likelihood(dtype):
    cases = (("zinb", (9, SHORT), False), ("nb", (2, LONG), False), ("zinb", (3, SHORT), True))
    for likelihood, (batch, genes), x_grad in cases:
        fn = lambda *a: F.count_log_likelihood(*a, likelihood=likelihood, reduce_sum=True)
        check_against_oracle(fn, _counts_case(likelihood, batch, genes, x_grad=x_grad), dtype, device="cuda")


def _mixture_case(batch, genes, *, separate_theta, x_grad=False):
    """(x, mu_1, mu_2, theta_1, theta_2, pi_logits) as float64 leaves."""
    mu_1 = _leaf(torch.exp(torch.randn(batch, genes, dtype=torch.float64)) * 3)
    mu_2 = _leaf(torch.exp(torch.randn(batch, genes, dtype=torch.float64)) * 9)
    x = torch.poisson(mu_2.detach())
    if x_grad:
        x = _leaf(x + 0.25)
    theta = lambda: _leaf(torch.exp(torch.randn(genes, dtype=torch.float64) * 2.5))
    return [x, mu_1, mu_2, theta(), theta() if separate_theta else None, _leaf(torch.randn(batch, genes, dtype=torch.float64))]


@pytest.mark.parametrize("dtype", DTYPES)
def test_nb_mixture_log_likelihood(dtype):
    cases = (((5, SHORT), False, False, False), ((3, LONG), True, False, False), ((9, SHORT), True, True, False),
             ((2, LONG), False, True, False), ((3, SHORT), True, True, True))
    for (batch, genes), separate_theta, reduce_sum, x_grad in cases:
        fn = lambda *a: F.nb_mixture_log_likelihood(*a, reduce_sum=reduce_sum)
        check_against_oracle(fn, _mixture_case(batch, genes, separate_theta=separate_theta, x_grad=x_grad), dtype,
                             device="cuda")


@pytest.mark.parametrize("dtype", DTYPES)
def test_log_likelihood_learned_variance(dtype):
    x = random_inputs((5, 1, SHORT), "gaussian", torch.float64, target=True, requires_grad=True)
    x_hat = random_inputs((5, 2, SHORT), "gaussian", torch.float64, requires_grad=True)
    x_log_var = _leaf(torch.randn(SHORT, dtype=torch.float64) * 0.5)
    fn = lambda a, b, c: F.log_likelihood(a, b, "gaussian", c)
    check_against_oracle(fn, [x, x_hat, x_log_var], dtype, device="cuda")


@pytest.mark.parametrize("dtype", DTYPES)
def test_row_sum_learned_variance(dtype):
    # log_likelihood_sum and elbo with x_log_var per element of x_hat (long
    # rows) and shared by the samples (short rows, x's row index)
    for (batch, samples, features), shape in (((2, 2, LONG), (2, 2, LONG)), ((6, 3, SHORT), (6, 1, SHORT))):
        x = random_inputs((batch, features), "gaussian", torch.float64, target=True, requires_grad=True)
        x_hat = random_inputs((batch, samples, features), "gaussian", torch.float64, requires_grad=True)
        x_log_var = _leaf(torch.randn(shape, dtype=torch.float64) * 0.5)
        fn = lambda a, b, c: F.log_likelihood_sum(a, b, "gaussian", c)
        check_against_oracle(fn, [x, x_hat, x_log_var], dtype, device="cuda")
        mu = _leaf(torch.randn(batch, 8, dtype=torch.float64))
        lv = _leaf(torch.randn(batch, 8, dtype=torch.float64) * 0.5)
        fn = lambda a, b, c, d, e: F.elbo_stats(a, b, c, d, 2.0, "gaussian", e)
        check_against_oracle(fn, [x.detach(), x_hat, mu, lv, x_log_var], dtype, device="cuda")


@pytest.mark.parametrize("dtype", DTYPES)
def test_row_sum_iwae_bound(dtype):
    # a warp per short row, blocks per long row; an odd latent size (the
    # one-element path) and a multiple of 8 (packs)
    for likelihood, (batch, samples, features, latent) in (("bernoulli", (5, 7, SHORT, 9)), ("gaussian", (2, 3, LONG, 16))):
        x = random_inputs((batch, features), likelihood, torch.float64, target=True, requires_grad=True)
        x_hat = random_inputs((batch, samples, features), likelihood, torch.float64, requires_grad=True)
        mu = _leaf(torch.randn(batch, latent, dtype=torch.float64))
        lv = _leaf(torch.randn(batch, latent, dtype=torch.float64) * 0.5)
        z = _leaf(mu.detach()[:, None] + torch.randn(batch, samples, latent, dtype=torch.float64))
        fn = lambda a, b, c, d, e: F.iwae_bound(a, b, c, d, e, likelihood)
        check_against_oracle(fn, [x, x_hat, z, mu, lv], dtype, device="cuda")
