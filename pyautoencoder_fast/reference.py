"""Pure-PyTorch implementation of every op: the fallback and the test oracle.

Each function has the signature and return values of the op of the same
name in ``torch.ops.pyautoencoder_fast`` (csrc/schemas.cpp), computes with
plain tensor operations in the inputs' dtype, and gets its gradients from
PyTorch autograd. The semantics are pyautoencoder's (its ``loss`` module:
``pyautoencoder.loss``) and scvi-tools' for the count likelihoods.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from . import _likelihoods
from ._likelihoods import COUNT_LIKELIHOODS, LIKELIHOODS  # noqa: F401 (public names of this module)


# ---------------------------------------------------------------- log_likelihood
def log_likelihood(x: Tensor, x_hat: Tensor, likelihood: str, x_log_var: Tensor | None = None) -> Tensor:
    """Elementwise log p(x | x_hat), in the broadcast shape of x and x_hat
    (and x_log_var: the Gaussian's log-variance, "gaussian" only)."""
    _likelihoods.require_likelihood(likelihood)
    if x_log_var is not None:
        _likelihoods.require_log_variance(likelihood)
        return _gaussian_log_var(x, x_hat, x_log_var)
    if likelihood == "gaussian":
        return -0.5 * (x_hat - x) ** 2
    if likelihood == "laplace":
        return -(x_hat - x).abs()
    x, x_hat = torch.broadcast_tensors(x, x_hat)
    if likelihood == "bernoulli_probs":  # x_hat are probabilities
        return -F.binary_cross_entropy(x_hat, x, reduction="none")
    return _bernoulli_logits(x, x_hat)


def _gaussian_log_var(x: Tensor, x_hat: Tensor, x_log_var: Tensor) -> Tensor:
    """-0.5 (lv + (x_hat - x)^2 exp(-lv)) (no -0.5 log(2 pi)); a zero residual
    counts 0 against an infinite precision (the density's limit)."""
    return -0.5 * (x_log_var + _mul_or_zero((x_hat - x) ** 2, torch.exp(-x_log_var)))


def _bernoulli_logits(x: Tensor, logits: Tensor) -> Tensor:
    """-binary_cross_entropy_with_logits, with the limits at infinite logits:
    x log sigmoid(l) + (1 - x) log sigmoid(-l), where a zero weight times an
    infinite log counts 0 (torch's formula gives inf - inf = NaN there)."""
    return _mul_or_zero(x, F.logsigmoid(logits)) + _mul_or_zero(1 - x, F.logsigmoid(-logits))


def _mul_or_zero(c: Tensor, v: Tensor) -> Tensor:
    """c * v, but 0 where c is exactly 0 and v infinite (finite v: plain c * v)."""
    product = c * v
    return torch.where((c == 0) & v.isinf(), torch.zeros_like(product), product)


def _exp_minus_self(t: Tensor) -> Tensor:
    """exp(t) - t, +inf at t = +inf (where the difference is inf - inf)."""
    return torch.where(t == math.inf, t, t.exp() - t)


# ------------------------------------------------------------ log_likelihood_sum
def log_likelihood_sum(x: Tensor, x_hat: Tensor, likelihood: str, x_log_var: Tensor | None = None) -> Tensor:
    """x [B, ...], x_hat [B, S, ...] (x_log_var broadcast to x_hat) -> [B, S]:
    ll summed over the features."""
    if x_log_var is not None and torch.broadcast_shapes(x_log_var.shape, x_hat.shape) != x_hat.shape:
        raise ValueError(
            f"x_log_var: shape {tuple(x_log_var.shape)} does not broadcast to x_hat's {tuple(x_hat.shape)}"
        )
    ll = log_likelihood(x.unsqueeze(1), x_hat, likelihood, x_log_var)
    return ll.flatten(2).sum(-1) if ll.dim() > 2 else ll


# -------------------------------------------------------------- kl_diag_gaussian
def kl_diag_gaussian(
    mu_q: Tensor,
    log_var_q: Tensor,
    mu_p: Tensor | None,
    log_var_p: Tensor | None,
    reduce_sum: bool,
    clamp_min: float | None,
    clamp_max: float | None,
) -> Tensor:
    """KL(q || p) per dimension, summed over the last one when reduce_sum."""
    if clamp_min is not None or clamp_max is not None:
        log_var_q = log_var_q.clamp(clamp_min, clamp_max)
        if log_var_p is not None:
            log_var_p = log_var_p.clamp(clamp_min, clamp_max)
    # (exp(lv) - lv and a zero mean difference over a zero variance are
    # written to give their limits at infinite log-variances, not NaN.)
    if mu_p is None and log_var_p is None:
        kl = 0.5 * (_exp_minus_self(log_var_q) + mu_q**2 - 1.0)
    else:
        mu_p = torch.zeros_like(mu_q) if mu_p is None else mu_p
        log_var_p = torch.zeros_like(log_var_q) if log_var_p is None else log_var_p
        mahalanobis = _mul_or_zero((mu_q - mu_p) ** 2, (-log_var_p).exp())
        kl = 0.5 * (_exp_minus_self(log_var_q - log_var_p) + mahalanobis - 1.0)
    return kl.sum(-1) if reduce_sum else kl


# ---------------------------------------------------------------- reparameterize
_PHILOX_MUL = (0xD2511F53, 0xCD9E8D57)
_PHILOX_WEYL = (0x9E3779B9, 0xBB67AE85)
_MASK32 = 0xFFFFFFFF


def _mulhilo32(a: int, b: Tensor) -> tuple[Tensor, Tensor]:
    # a * b for 32-bit a and b (int64 tensors holding uint32), without
    # overflowing int64: split b into 16-bit halves.
    p_lo = a * (b & 0xFFFF)
    p_hi = a * (b >> 16)
    mid = p_lo + ((p_hi & 0xFFFF) << 16)
    return (p_hi >> 16) + (mid >> 32), mid & _MASK32


def philox4x32_10(seed: int, counters: Tensor) -> Tensor:
    """Philox4x32-10 blocks for 64-bit counters: int64 [N] -> int64 [N, 4] of uint32."""
    seed &= (1 << 64) - 1
    k0, k1 = seed & _MASK32, seed >> 32
    c0, c1 = counters & _MASK32, (counters >> 32) & _MASK32
    c2 = torch.zeros_like(c0)
    c3 = torch.zeros_like(c0)
    for _ in range(10):
        hi0, lo0 = _mulhilo32(_PHILOX_MUL[0], c0)
        hi1, lo1 = _mulhilo32(_PHILOX_MUL[1], c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0 = (k0 + _PHILOX_WEYL[0]) & _MASK32
        k1 = (k1 + _PHILOX_WEYL[1]) & _MASK32
    return torch.stack([c0, c1, c2, c3], dim=-1)


def philox_normal(
    seed: int, numel: int, dtype: torch.dtype, device: torch.device | str = "cpu", start: int = 0
) -> Tensor:
    """The standard normals the kernels draw for flat indices [start, start + numel).

    Element i comes from block i // 4, lane i % 4, Box-Muller on lanes
    (0, 1) and (2, 3); computed in float32 (float64 for float64 outputs).
    """
    compute = torch.float64 if dtype == torch.float64 else torch.float32
    first_block = start // 4
    blocks = torch.arange(first_block, (start + numel + 3) // 4, dtype=torch.int64, device=device)
    bits = philox4x32_10(seed, blocks)
    if compute == torch.float32:
        u = ((bits >> 8).to(compute) + 0.5) * 2.0**-24
    else:
        u = (bits.to(compute) + 0.5) * 2.0**-32
    u1, u2 = u[:, 0::2], u[:, 1::2]
    radius = torch.sqrt(-2.0 * torch.log(u1))
    theta = (2.0 * math.pi) * u2
    normals = torch.stack([radius * torch.cos(theta), radius * torch.sin(theta)], dim=-1)
    # [N, 2 pairs, (cos, sin)] -> lanes (0, 1, 2, 3)
    skip = start - 4 * first_block
    return normals.reshape(-1)[skip:skip + numel]


def reparameterize(mu: Tensor, log_var: Tensor, num_samples: int, seed: Tensor) -> Tensor:
    """z [B, S, D] = mu + exp(0.5 * log_var) * eps, eps from Philox(seed)."""
    if num_samples < 1:
        raise ValueError(f"num_samples: expected S >= 1, got {num_samples}")
    batch, dim = mu.shape
    compute = torch.float64 if mu.dtype == torch.float64 else torch.float32
    eps = philox_normal(int(seed.item()), batch * num_samples * dim, mu.dtype, mu.device)
    eps = eps.reshape(batch, num_samples, dim)
    std = torch.exp(0.5 * log_var.to(compute)).unsqueeze(1)
    return (mu.to(compute).unsqueeze(1) + std * eps).to(mu.dtype)


# -------------------------------------------------------------------------- elbo
def elbo(
    x: Tensor,
    x_hat: Tensor,
    mu: Tensor,
    log_var: Tensor,
    beta: float,
    likelihood: str,
    need_grad: bool,
    x_log_var: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """pyautoencoder's VAE.compute_loss: ([objective, elbo, ll, kl], empty x4).

    The op's other outputs (gradients written by the forward pass) have no
    use here: autograd differentiates this function.
    """
    ll = log_likelihood_sum(x, x_hat, likelihood, x_log_var).mean(dim=1)  # [B], averaged over S
    kl = kl_diag_gaussian(mu, log_var, None, None, True, None, None)  # [B]
    elbo_mean = (ll - beta * kl).mean()
    stats = torch.stack([-elbo_mean, elbo_mean, ll.mean(), kl.mean()])
    empty = x_hat.new_empty(0)
    return stats, empty, empty, empty, empty


# -------------------------------------------------------------------- iwae_bound
def iwae_bound(
    x: Tensor,
    x_hat: Tensor,
    z: Tensor,
    mu: Tensor,
    log_var: Tensor,
    likelihood: str,
    need_grad: bool,
    x_log_var: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The importance-weighted bound [B] and its normalised weights [B, S]
    (the op's other outputs, gradients written by the forward, are empty):
    log (1/S) sum_s exp(log p(x | z_s) + log p(z_s) - log q(z_s | x)), with
    p(z) = N(0, I), q = N(mu, exp(log_var)) (their constants cancel) and
    log p(x | z_s) = log_likelihood_sum. Every term -inf gives -inf and
    weights 0, as the kernels (torch.logsumexp's gradient is NaN there)."""
    if x_hat.shape[1] < 1:
        raise ValueError(f"x_hat: expected S >= 1 samples, got shape {tuple(x_hat.shape)}")
    ll = log_likelihood_sum(x, x_hat, likelihood, x_log_var)  # [B, S]
    posterior = log_likelihood(z, mu.unsqueeze(1), "gaussian", log_var.unsqueeze(1))
    log_weights = ll + (-0.5 * z * z - posterior).sum(-1)
    top = log_weights.detach().amax(dim=1, keepdim=True)
    shift = torch.where(top.isfinite(), top, torch.zeros_like(top))  # (the kernels' limits at +-inf)
    terms = torch.exp(log_weights - shift)
    total = terms.sum(dim=1, keepdim=True)
    nonzero = total > 0  # else every term is -inf: the bound is -inf, flat (gradient 0)
    safe_total = torch.where(nonzero, total, torch.ones_like(total))
    bound = torch.where(nonzero, shift + torch.log(safe_total / x_hat.shape[1]), shift.new_tensor(-math.inf))
    bound = bound.squeeze(1)
    opmath = torch.float64 if x.dtype == torch.float64 else torch.float32
    weights = torch.where(nonzero, terms / safe_total, torch.zeros_like(terms)).detach().to(opmath)
    empty = x_hat.new_empty(0)
    return bound, weights, empty, empty


# ---------------------------------------------------------- count_log_likelihood
def _negative_binomial64(x64: Tensor, mu64: Tensor, theta64: Tensor, eps: float) -> tuple[Tensor, Tensor, Tensor]:
    """scvi's log NB(x) in float64, its value at x = 0 and where (x, mu,
    theta) are in the domain. theta = +inf: the Poisson limit, x log(mu +
    eps) - mu - lgamma(x + 1) (the formula would be inf - inf there)."""
    poisson_limit = torch.isposinf(theta64)
    th = torch.where(poisson_limit, 1.0, theta64)
    valid = (x64 >= 0) & (mu64 >= 0) & (th > 0)
    log_theta_mu_eps = torch.log(th + mu64 + eps)
    at_zero = torch.where(poisson_limit, -mu64, th * (torch.log(th + eps) - log_theta_mu_eps))
    ll = torch.where(
        poisson_limit,
        torch.xlogy(x64, mu64 + eps) - mu64 - torch.lgamma(x64 + 1),
        at_zero
        + x64 * (torch.log(mu64 + eps) - log_theta_mu_eps)
        + torch.lgamma(x64 + th)
        - torch.lgamma(th)
        - torch.lgamma(x64 + 1),
    )
    return ll, at_zero, valid


def count_log_likelihood(
    x: Tensor,
    mu: Tensor,
    theta: Tensor | None,
    zi_logits: Tensor | None,
    likelihood: str,
    eps: float,
    reduce_sum: bool,
    need_grad: bool = False,
    need_grad_x: bool = False,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(log p(x), empty x4) for counts x, log p(x), per element (broadcast shape) or summed over the
    last dimension: scvi-tools' ``log_nb_positive`` ("nb") and
    ``log_zinb_positive`` ("zinb", only the case that applies to each x), or
    torch's ``Poisson(mu).log_prob`` ("poisson"); NaN where x < 0, mu < 0 or
    theta <= 0. Computed in float64 whatever the dtype (float32's
    ``lgamma(x + theta) - lgamma(theta)`` loses everything at large theta),
    returned in mu's dtype. (The op's derivative outputs have no use here:
    autograd differentiates this function.)"""
    _likelihoods.require_count_likelihood(likelihood)
    x64, mu64 = x.double(), mu.double()
    if likelihood == "poisson":
        valid = (x64 >= 0) & (mu64 >= 0)
        ll = torch.xlogy(x64, mu64) - mu64 - torch.lgamma(x64 + 1)
    else:
        ll, at_zero, valid = _negative_binomial64(x64, mu64, theta.double(), eps)
        if likelihood == "zinb":
            pi = zi_logits.double()
            softplus_neg_pi = F.softplus(-pi)
            ll = torch.where(x64 < eps, F.softplus(at_zero - pi) - softplus_neg_pi, ll - pi - softplus_neg_pi)
    ll = torch.where(valid, ll, torch.full_like(ll, math.nan))
    if reduce_sum:
        ll = ll.sum(-1)
    empty = mu.new_empty(0)
    return ll.to(mu.dtype), empty, empty, empty, empty


# ---------------------------------------------------- nb_mixture_log_likelihood
def nb_mixture_log_likelihood(
    x: Tensor,
    mu_1: Tensor,
    mu_2: Tensor,
    theta_1: Tensor,
    theta_2: Tensor | None,
    pi_logits: Tensor,
    eps: float,
    reduce_sum: bool,
    need_grad: bool = False,
    need_grad_x: bool = False,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(log p(x), empty x6) for counts x under scvi-tools' ``log_mixture_nb``,
    ``log(sigmoid(pi) NB(x; mu_1, theta_1) + sigmoid(-pi) NB(x; mu_2,
    theta_2))``, both NBs with ``eps`` (theta_2 None: theta_1 for both), per
    element or summed over the last dimension; NaN where x < 0, a mean < 0 or
    a theta <= 0. In float64 whatever the dtype, returned in mu_1's."""
    x64 = x.double()
    theta_1_64 = theta_1.double()
    theta_2_64 = theta_1_64 if theta_2 is None else theta_2.double()
    ll_1, _, valid_1 = _negative_binomial64(x64, mu_1.double(), theta_1_64, eps)
    ll_2, _, valid_2 = _negative_binomial64(x64, mu_2.double(), theta_2_64, eps)
    pi = pi_logits.double()
    # scvi's logsumexp(ll_1, ll_2 - pi) - softplus(-pi), written so that
    # pi = -inf is component 2 alone (scvi's form is inf - inf there)
    ll = torch.logaddexp(ll_1 - F.softplus(-pi), ll_2 - F.softplus(pi))
    ll = torch.where(valid_1 & valid_2, ll, torch.full_like(ll, math.nan))
    if reduce_sum:
        ll = ll.sum(-1)
    empty = mu_1.new_empty(0)
    return (ll.to(mu_1.dtype),) + (empty,) * 6


# ------------------------------------------------------------- adagvae_posterior
def adagvae_posterior(
    mu1: Tensor, log_var1: Tensor, mu2: Tensor, log_var2: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Ada-GVAE adaptation: average the dimensions whose KL is below the row's mid-range."""
    kl = kl_diag_gaussian(mu1, log_var1, mu2, log_var2, False, None, None)
    tau = 0.5 * (kl.max(dim=1, keepdim=True).values + kl.min(dim=1, keepdim=True).values)
    mask = kl < tau
    mu_avg = 0.5 * (mu1 + mu2)
    log_var_avg = torch.log(0.5 * (log_var1.exp() + log_var2.exp()))
    return (
        torch.where(mask, mu_avg, mu1),
        torch.where(mask, log_var_avg, log_var1),
        torch.where(mask, mu_avg, mu2),
        torch.where(mask, log_var_avg, log_var2),
        mask,
    )
