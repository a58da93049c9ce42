"""The fused ops as documented functions.

Every function validates its arguments (clear ``TypeError``/``ValueError``
naming the argument), promotes mixed floating dtypes, and runs on the compiled
extension when it is active and has kernels for the tensors' device, else on
the pure-PyTorch reference (:mod:`pyautoencoder_fast.reference`). All accept
float16, bfloat16, float32 and float64, any batch size (0 included) and
non-contiguous inputs, and are differentiable where stated. Targets ``x``
may also be integer or bool tensors (binarised images): they are promoted
to the floating dtype of ``x_hat``, as PyTorch's arithmetic would. Shapes
that do not fit raise :class:`~pyautoencoder_fast._validation.ShapeError`
(a ``ValueError`` and a ``RuntimeError``). Values outside a likelihood's
domain (``bernoulli_probs`` probabilities or targets outside [0, 1], negative
counts, ...) give NaN; on the CPU the functions then raise ``ValueError``
naming the argument and its first bad value (looked into only when the
result holds a NaN, so valid input costs nothing); on CUDA the NaN stays,
as reading it back would stall the device on every call.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from . import _backend, _likelihoods, reference
from . import _validation as check

__all__ = [
    "ElboTerms",
    "adagvae_posterior",
    "count_log_likelihood",
    "nb_mixture_log_likelihood",
    "elbo",
    "elbo_stats",
    "iwae_bound",
    "kl_diag_gaussian",
    "log_likelihood",
    "log_likelihood_sum",
    "reparameterize",
]


class _ExtensionOps:
    """The compiled ops by name, as their default overloads (calling one
    directly skips the overload resolution of ``torch.ops.<ns>.<name>``)."""

    def __getattr__(self, name: str):
        op = getattr(torch.ops.pyautoencoder_fast, name).default
        setattr(self, name, op)
        return op


_EXTENSION_OPS = _ExtensionOps()


def _impl(*tensors: Tensor):
    """The namespace whose functions implement the ops for these tensors."""
    return _EXTENSION_OPS if _backend.runs_on_extension(*tensors) else reference


# ---------------------------------------------------------------- log_likelihood
def log_likelihood(
    x: Tensor, x_hat: Tensor, likelihood: str = "gaussian", x_log_var: Tensor | None = None
) -> Tensor:
    """Elementwise log-likelihood log p(x | x_hat).

    ``gaussian``: ``-0.5 * (x_hat - x)**2`` (unit variance, no log(2 pi));
    with ``x_log_var`` (a learned variance, ``gaussian`` only):
    ``-0.5 * (x_log_var + (x_hat - x)**2 * exp(-x_log_var))`` (no log(2 pi)
    either, so ``x_log_var = 0`` is the unit-variance Gaussian);
    ``bernoulli``: ``x_hat`` are logits, equal to
    ``-binary_cross_entropy_with_logits(x_hat, x, reduction="none")``;
    ``laplace``: ``-|x_hat - x|`` (unit scale, no log 2);
    ``bernoulli_probs``: ``x_hat`` are probabilities, equal to
    ``-binary_cross_entropy(x_hat, x, reduction="none")`` (logs clamped at -100).

    Args:
        x: targets, any shape.
        x_hat: reconstructions (logits for Bernoulli), broadcastable with ``x``.
        likelihood: name (case-insensitive) or ``LikelihoodType``.
        x_log_var: the Gaussian's log-variance, broadcastable with ``x`` and
            ``x_hat`` (per element, per feature, or a 0-d scalar).

    Returns:
        Tensor of the broadcast shape. Differentiable in ``x``, ``x_hat``
        and ``x_log_var``.

    Raises:
        ValueError: ``bernoulli_probs`` on the CPU with a probability
            ``x_hat`` or a target ``x`` outside [0, 1] or NaN (where torch's
            ``binary_cross_entropy`` raises), naming the argument and its
            first bad value; checked only when the result holds a NaN. On
            CUDA those elements are NaN. (The reference backend calls
            ``binary_cross_entropy``, whose ``RuntimeError`` comes first.)
    """
    likelihood = _likelihoods.canonical_likelihood(likelihood)
    x, x_hat = check.real("x", x), check.floating("x_hat", x_hat)
    x_log_var = _x_log_var(x_log_var, likelihood)
    check.same_device(x=x, x_hat=x_hat, x_log_var=x_log_var)
    check.broadcastable(x=x, x_hat=x_hat, x_log_var=x_log_var)
    x, x_hat, x_log_var = check.promote(x, x_hat, x_log_var)
    out = _impl(x).log_likelihood(x, x_hat, likelihood, x_log_var)
    if likelihood == "bernoulli_probs":
        _refuse_out_of_domain(out, _PROBABILITY_DOMAINS, x_hat=x_hat, x=x)
    return out


def _x_log_var(x_log_var: object, likelihood: str) -> Tensor | None:
    """The Gaussian's log-variance: a floating tensor, for a (canonical)
    likelihood that takes one ("gaussian") only."""
    if x_log_var is None:
        return None
    _likelihoods.require_log_variance(likelihood)
    return check.floating("x_log_var", x_log_var)


def _x_log_var_rows(x_log_var: Tensor | None, x_hat_given: Tensor, x_hat: Tensor) -> Tensor | None:
    """x_log_var against x_hat [B, S, ...]: given with x_hat's full rank while
    x_hat had no sample axis, it gets that axis too; it must broadcast to x_hat."""
    if x_log_var is None:
        return None
    if x_hat.dim() != x_hat_given.dim() and x_log_var.dim() == x_hat_given.dim():
        x_log_var = x_log_var.unsqueeze(1)
    if x_log_var.dim() > x_hat.dim() or any(
        a != 1 and a != b for a, b in zip(reversed(x_log_var.shape), reversed(x_hat.shape))
    ):
        raise check.ShapeError(
            f"x_log_var: shape {tuple(x_log_var.shape)} does not broadcast to x_hat's {tuple(x_hat_given.shape)}"
        )
    return x_log_var


# ------------------------------------------------------------ log_likelihood_sum
def _sample_axis(x: Tensor, x_hat: Tensor) -> tuple[Tensor, Tensor]:
    """Checks x [B, ...] against x_hat [B, ...] or [B, S, ...]; returns x_hat as
    [B, S, ...] and x as a (possibly broadcast, never copied) [B, ...] view."""
    check.min_dim("x", x, 1, "[B, ...]")
    given = tuple(x_hat.shape)  # errors name this, not the shape with the sample axis inserted
    if x_hat.dim() == x.dim():
        x_hat = x_hat.unsqueeze(1)
    if x_hat.dim() != x.dim() + 1:
        raise check.ShapeError(
            f"x_hat: expected shape [B, ...] or [B, S, ...] for x of shape {tuple(x.shape)}, got {given}"
        )
    target = (x_hat.shape[0], *x_hat.shape[2:])
    if tuple(x.shape) != target:
        try:
            x = x.expand(target)
        except RuntimeError:
            raise check.ShapeError(
                f"x_hat: shape {given} does not match x {tuple(x.shape)} "
                "(expected [B, ...] or [B, S, ...] with the batch and feature sizes of x)"
            ) from None
    return x, x_hat


def log_likelihood_sum(
    x: Tensor, x_hat: Tensor, likelihood: str = "gaussian", x_log_var: Tensor | None = None
) -> Tensor:
    """Per-sample log-likelihood summed over the feature dimensions.

    Args:
        x: targets ``[B, ...]``.
        x_hat: ``[B, ...]`` (one sample) or ``[B, S, ...]`` (S Monte Carlo
            samples); ``x`` is broadcast over S without a copy.
        likelihood: ``"gaussian"``, ``"bernoulli"`` (logits), ``"laplace"``
            or ``"bernoulli_probs"`` (probabilities), or a ``LikelihoodType``.
        x_log_var: the Gaussian's log-variance (``"gaussian"`` only),
            broadcastable to ``x_hat`` as given (per element, per feature,
            or a 0-d scalar); read in place, never expanded.

    Returns:
        ``[B, S]`` (``S = 1`` for a ``[B, ...]`` x_hat). Differentiable in
        ``x``, ``x_hat`` and ``x_log_var``. The elementwise term and the sum
        run in one pass.

    Raises:
        ValueError: ``bernoulli_probs`` values outside [0, 1] on the CPU, as
            in :func:`log_likelihood`.
    """
    likelihood = _likelihoods.canonical_likelihood(likelihood)
    return _log_likelihood_sum(x, x_hat, likelihood, x_log_var, refuse_bad_probabilities=True)


def _log_likelihood_sum(
    x: Tensor,
    x_hat: Tensor,
    likelihood: str,
    x_log_var: Tensor | None = None,
    *,
    refuse_bad_probabilities: bool = False,
) -> Tensor:
    """:func:`log_likelihood_sum` for a canonical ``likelihood`` name (not
    checked again). Out-of-range probabilities are refused as there only
    with ``refuse_bad_probabilities``; else a NaN stays (nidl's loss refuses
    them with nidl's own error and argument names)."""
    x_given, x_hat_given = x, x_hat  # (a bad value is looked up in what the caller passed)
    x, x_hat = check.real("x", x), check.floating("x_hat", x_hat)
    x_log_var = _x_log_var(x_log_var, likelihood)
    check.same_device(x=x, x_hat=x_hat, x_log_var=x_log_var)
    x, x_hat, x_log_var = check.promote(x, x_hat, x_log_var)
    x_hat_promoted = x_hat
    x, x_hat = _sample_axis(x, x_hat)
    x_log_var = _x_log_var_rows(x_log_var, x_hat_promoted, x_hat)
    out = _impl(x).log_likelihood_sum(x, x_hat, likelihood, x_log_var)
    if refuse_bad_probabilities and likelihood == "bernoulli_probs":
        _refuse_out_of_domain(out, _PROBABILITY_DOMAINS, x_hat=x_hat_given, x=x_given)
    return out


# -------------------------------------------------------------- kl_diag_gaussian
def kl_diag_gaussian(
    mu_q: Tensor,
    log_var_q: Tensor,
    mu_p: Tensor | None = None,
    log_var_p: Tensor | None = None,
    *,
    reduce_sum: bool = True,
    clamp_min: float | None = None,
    clamp_max: float | None = None,
) -> Tensor:
    """KL(q || p) between diagonal Gaussians given means and log-variances.

    ``0.5 * ((lv_p - lv_q) + (exp(lv_q) + (mu_q - mu_p)**2) / exp(lv_p) - 1)``
    per dimension; ``mu_p``/``log_var_p`` of ``None`` mean 0 (both ``None``:
    the standard normal prior). All four broadcast against each other.

    Args:
        reduce_sum: sum over the last dimension (``[..., D] -> [...]``).
        clamp_min, clamp_max: if given, both log-variances are clamped to
            this range first; the gradient then flows like ``torch.clamp``'s.

    Returns:
        ``[...]`` or ``[..., D]``. Differentiable in all four tensors.
    """
    if (
        mu_p is None
        and log_var_p is None
        and clamp_min is None
        and clamp_max is None
        and check.same_floating_tensors(mu_q, log_var_q)
        and mu_q.dim() >= 1
        and mu_q.shape == log_var_q.shape
    ):  # the usual call (KL to N(0, I)): nothing to promote, broadcast or clamp
        return _impl(mu_q).kl_diag_gaussian(mu_q, log_var_q, None, None, bool(reduce_sum), None, None)
    mu_q = check.floating("mu_q", mu_q)
    log_var_q = check.floating("log_var_q", log_var_q)
    if mu_p is not None:
        check.floating("mu_p", mu_p)
    if log_var_p is not None:
        check.floating("log_var_p", log_var_p)
    check.same_device(mu_q=mu_q, log_var_q=log_var_q, mu_p=mu_p, log_var_p=log_var_p)
    shape = check.broadcastable(mu_q=mu_q, log_var_q=log_var_q, mu_p=mu_p, log_var_p=log_var_p)
    if len(shape) == 0:
        raise check.ShapeError("mu_q: expected at least one dimension [..., D], got 0-d tensors")
    clamp_min = check.optional_number("clamp_min", clamp_min)
    clamp_max = check.optional_number("clamp_max", clamp_max)
    if clamp_min is not None and clamp_max is not None and clamp_min > clamp_max:
        raise ValueError(f"clamp_min ({clamp_min}) must not exceed clamp_max ({clamp_max})")
    mu_q, log_var_q, mu_p, log_var_p = check.promote(mu_q, log_var_q, mu_p, log_var_p)
    return _impl(mu_q).kl_diag_gaussian(
        mu_q, log_var_q, mu_p, log_var_p, bool(reduce_sum), clamp_min, clamp_max
    )


# ---------------------------------------------------------------- reparameterize
def _latent_pair(mu: Tensor, log_var: Tensor, names=("mu", "log_var")) -> tuple[Tensor, Tensor]:
    """Two [B, D] tensors (broadcast against each other) of one dtype."""
    mu, log_var = check.floating(names[0], mu), check.floating(names[1], log_var)
    check.same_device(**{names[0]: mu, names[1]: log_var})
    shape = check.broadcastable(**{names[0]: mu, names[1]: log_var})
    if len(shape) != 2:
        raise check.ShapeError(
            f"{names[0]}, {names[1]}: expected shape [B, D], got {tuple(mu.shape)} and {tuple(log_var.shape)}"
        )
    mu, log_var = check.promote(mu, log_var)
    if mu.shape != shape:
        mu = mu.expand(shape)
    if log_var.shape != shape:
        log_var = log_var.expand(shape)
    return mu, log_var


def draw_seed(device: torch.device, generator: torch.Generator | None = None) -> Tensor:
    """A 63-bit seed for the in-kernel Philox noise, drawn from torch's generator
    (``generator``, a ``torch.Generator``, or ``None`` for the default one)."""
    if generator is not None and not isinstance(generator, torch.Generator):
        kind = type(generator)  # (a NumPy Generator is named with its module)
        got = kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
        raise TypeError(f"generator: expected a torch.Generator or None, got {got}")
    seed_device = device if device.type == "cuda" else torch.device("cpu")
    # Out of place (torch.randint, not Tensor.random_): torch.compile traces
    # it into the graph (fullgraph=True holds through sampling) and a CUDA
    # graph captures it as any RNG op. Under inductor the draw comes from
    # inductor's RNG unless torch._inductor.config.fallback_random is set.
    return torch.randint(_SEED_BOUND, (), dtype=torch.int64, device=seed_device, generator=generator)


_SEED_BOUND = 2**63 - 1  # seeds in [0, 2**63 - 1): the kernels' 63 bits


def reparameterize(
    mu: Tensor,
    log_var: Tensor,
    num_samples: int = 1,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Reparameterized samples ``z = mu + exp(0.5 * log_var) * eps``.

    The noise is drawn inside the kernel from a counter-based Philox stream
    whose seed comes from torch's generator (``torch.manual_seed`` or
    ``generator`` make it reproducible). For the gradient, eps is kept while
    it is small (``B * S * D <= 2**20``, in float32 or float64) and
    regenerated from the seed above that, so a large model keeps no second
    ``[B, S, D]`` tensor alive; z is never kept. Both give the same gradients.

    Args:
        mu, log_var: ``[B, D]`` (broadcast against each other).
        num_samples: S >= 1 samples per row.
        generator: the ``torch.Generator`` the seed is drawn from (on the
            tensors' device for CUDA, else a CPU one); ``None``: torch's
            default generator. Anything else raises ``TypeError``.

    Returns:
        ``z`` of shape ``[B, S, D]``. Differentiable in ``mu`` and ``log_var``.
    """
    if not (
        check.same_floating_tensors(mu, log_var)
        and mu.dim() == 2
        and mu.shape == log_var.shape
        and type(num_samples) is int
        and num_samples >= 1
    ):  # anything but the usual call: the detailed checks
        mu, log_var = _latent_pair(mu, log_var)
        num_samples = check.positive_int("num_samples", num_samples)
    seed = draw_seed(mu.device, generator)
    return _impl(mu).reparameterize(mu, log_var, num_samples, seed)


# -------------------------------------------------------------------------- elbo
class ElboTerms(NamedTuple):
    """The (beta-)VAE objective and its diagnostics, all 0-d tensors (batch
    means); ``kl_divergence`` is not weighted by beta."""

    objective: Tensor
    elbo: Tensor
    log_likelihood: Tensor
    kl_divergence: Tensor


def elbo_stats(
    x: Tensor,
    x_hat: Tensor,
    mu: Tensor,
    log_var: Tensor,
    beta: float = 1.0,
    likelihood: str = "gaussian",
    x_log_var: Tensor | None = None,
) -> Tensor:
    """Like :func:`elbo` but returns the four values as one ``[4]`` tensor
    ``[objective, elbo, log_likelihood, kl_divergence]`` (one host transfer
    reads them all)."""
    return _elbo_stats(x, x_hat, mu, log_var, beta, _likelihoods.canonical_likelihood(likelihood), x_log_var)


def _elbo_stats(
    x: Tensor, x_hat: Tensor, mu: Tensor, log_var: Tensor, beta: float, likelihood: str, x_log_var: Tensor | None
) -> Tensor:
    """:func:`elbo_stats` for a canonical ``likelihood`` name (not checked again)."""
    beta = check.finite_number("beta", beta)
    x_given, x_hat_given = x, x_hat  # (a bad value is looked up in what the caller passed)
    if x_log_var is not None:  # the learned-variance Gaussian: its argument checked too
        x_log_var = _x_log_var(x_log_var, likelihood)
        x_hat_given = check.floating("x_hat", x_hat)
        x, x_hat, mu, log_var, x_log_var = _elbo_arguments(x, x_hat, mu, log_var, x_log_var)
        x_log_var = _x_log_var_rows(x_log_var, x_hat_given, x_hat)
    elif not (
        check.same_floating_tensors(x_hat, x, mu, log_var)
        and x.dim() >= 1
        and mu.dim() == 2
        and log_var.shape == mu.shape
        and x_hat.dim() == x.dim() + 1
        and x_hat.shape[0] == x.shape[0] == mu.shape[0]
        and x_hat.shape[2:] == x.shape[1:]
    ):  # anything but the usual call: the detailed checks (and promotion, broadcasting)
        x, x_hat, mu, log_var = _elbo_arguments(x, x_hat, mu, log_var)
    # need_grad=False: the derivative buffers stay autograd's (it has the op
    # write them when a gradient is recorded; docs/custom_op_contract.md)
    stats = _impl(x).elbo(x, x_hat, mu, log_var, beta, likelihood, False, x_log_var)[0]
    if likelihood == "bernoulli_probs":
        _refuse_out_of_domain(stats, _PROBABILITY_DOMAINS, x_hat=x_hat_given, x=x_given)
    return stats


def _elbo_arguments(x, x_hat, mu, log_var, x_log_var=None):
    """elbo's arguments checked one by one (errors name them), promoted to one
    dtype, x_hat with its sample axis and x broadcast to it (x_log_var, when
    given, is promoted here and aligned with x_hat by the caller)."""
    x, x_hat = check.real("x", x), check.floating("x_hat", x_hat)
    mu, log_var = _latent_pair(mu, log_var)
    check.same_device(x=x, x_hat=x_hat, mu=mu, x_log_var=x_log_var)
    x, x_hat, mu, log_var, x_log_var = check.promote(x, x_hat, mu, log_var, x_log_var)
    x, x_hat = _sample_axis(x, x_hat)
    if mu.shape[0] != x.shape[0]:
        raise check.ShapeError(f"mu: expected batch size {x.shape[0]} (from x), got shape {tuple(mu.shape)}")
    if x_log_var is None:
        return x, x_hat, mu, log_var
    return x, x_hat, mu, log_var, x_log_var


def elbo(
    x: Tensor,
    x_hat: Tensor,
    mu: Tensor,
    log_var: Tensor,
    beta: float = 1.0,
    likelihood: str = "gaussian",
    x_log_var: Tensor | None = None,
) -> ElboTerms:
    """The whole (beta-)VAE loss of pyautoencoder's ``VAE.compute_loss`` in one op.

    ``elbo = mean_b(mean_s sum_features ll(x, x_hat[:, s]) - beta * KL(q_b || N(0, I)))``,
    ``objective = -elbo``; ``ll`` is the elementwise term of
    :func:`log_likelihood`.

    Args:
        x: targets ``[B, ...]``.
        x_hat: ``[B, ...]`` (one sample; a sample axis is inserted) or
            ``[B, S, ...]`` (S Monte Carlo samples); ``x`` is broadcast over
            S without a copy.
        mu, log_var: posterior parameters ``[B, D]``.
        beta: weight of the KL term in ``elbo`` and ``objective``; a finite
            number (NaN or infinity raises ``ValueError``).
        likelihood: a name (case-insensitive) or a ``LikelihoodType``:

            * ``"gaussian"``: ``-0.5 * (x_hat - x)**2``, unit variance. The
              constant ``-0.5 * log(2 * pi)`` per element is omitted, as in
              pyautoencoder (it does not change the gradients);
            * ``"bernoulli"``: ``x_hat`` are logits;
            * ``"laplace"``: ``-|x_hat - x|``, unit scale (no ``-log 2``);
            * ``"bernoulli_probs"``: ``x_hat`` are probabilities in [0, 1]
              (``binary_cross_entropy`` semantics, logs clamped at -100).

    Returns:
        :class:`ElboTerms` of batch means: ``objective`` (``-elbo``),
        ``elbo``, ``log_likelihood`` (averaged over S) and ``kl_divergence``,
        which is the plain KL, NOT weighted by ``beta`` (only ``elbo`` and
        ``objective`` are). Each is differentiable in ``x``, ``x_hat``,
        ``mu`` and ``log_var``; the gradient for ``x_hat`` is computed
        during the forward pass.

    Raises:
        ShapeError: shapes that do not fit; the message names ``x_hat``'s
            shape as passed.
        ValueError: ``bernoulli_probs`` values outside [0, 1] on the CPU, as
            in :func:`log_likelihood`.
    """
    return ElboTerms(*elbo_stats(x, x_hat, mu, log_var, beta, likelihood, x_log_var).unbind())


# -------------------------------------------------------------------- iwae_bound
def iwae_bound(
    x: Tensor,
    x_hat: Tensor,
    z: Tensor,
    mu: Tensor,
    log_var: Tensor,
    likelihood: str = "gaussian",
    x_log_var: Tensor | None = None,
) -> Tensor:
    """The importance-weighted bound (IWAE, Burda et al. 2016) per row, fused.

    ``bound[b] = log (1/S) sum_s exp(log p(x_b | z_bs) + log p(z_bs) - log q(z_bs | x_b))``
    with ``p(z) = N(0, I)`` and ``q = N(mu, exp(log_var))`` (full normal
    densities: their constants cancel) and ``log p(x | z)`` the
    :func:`log_likelihood_sum` term (the same convention: no Gaussian
    constant). With S = 1 it is the single-sample ELBO whose KL is the
    Monte-Carlo term ``log q(z|x) - log p(z)`` at that ``z``; it increases
    towards log p(x) with S. The log-mean-exp over S is stable (one huge
    term, all ``-inf``: ``-inf`` with zero gradient, NaN propagates).

    Args:
        x: targets ``[B, ...]``.
        x_hat: ``[B, S, ...]`` decoded from ``z`` (logits for Bernoulli);
            ``[B, ...]`` is one sample.
        z: the samples ``[B, S, D]`` (``[B, D]`` for one sample).
        mu, log_var: the posterior ``q(z | x)``, ``[B, D]``.
        likelihood: as :func:`log_likelihood`.
        x_log_var: the Gaussian's log-variance (``"gaussian"`` only),
            broadcastable to ``x_hat`` as given.

    Returns:
        ``[B]``, differentiable in ``x``, ``x_hat``, ``z``, ``mu``,
        ``log_var`` and ``x_log_var``; the backward weighs each sample by
        its normalised importance weight. Each (b, s) term is summed over
        the features in one pass that also writes the gradient for
        ``x_hat``. To estimate log p(x), see :meth:`VAE.log_likelihood_estimate`.
    """
    return _iwae_bound(x, x_hat, z, mu, log_var, _likelihoods.canonical_likelihood(likelihood), x_log_var)


def _iwae_bound(
    x: Tensor, x_hat: Tensor, z: Tensor, mu: Tensor, log_var: Tensor, likelihood: str, x_log_var: Tensor | None
) -> Tensor:
    """:func:`iwae_bound` for a canonical ``likelihood`` name (not checked again)."""
    x, x_hat = check.real("x", x), check.floating("x_hat", x_hat)
    z = check.floating("z", z)
    mu, log_var = _latent_pair(mu, log_var)
    x_log_var = _x_log_var(x_log_var, likelihood)
    check.same_device(x=x, x_hat=x_hat, z=z, mu=mu, x_log_var=x_log_var)
    x, x_hat, z, mu, log_var, x_log_var = check.promote(x, x_hat, z, mu, log_var, x_log_var)
    x_hat_given = x_hat
    x, x_hat = _sample_axis(x, x_hat)
    x_log_var = _x_log_var_rows(x_log_var, x_hat_given, x_hat)
    if z.dim() == 2 and x_hat.shape[1] == 1:
        z = z.unsqueeze(1)
    expected = (x_hat.shape[0], x_hat.shape[1], mu.shape[1])
    if tuple(z.shape) != expected or mu.shape[0] != x_hat.shape[0]:
        raise check.ShapeError(
            f"z: expected shape [B, S, D] = {expected} (B, S from x_hat, D from mu {tuple(mu.shape)}), "
            f"got {tuple(z.shape)}"
        )
    if x_hat.shape[1] < 1:
        raise check.ShapeError(f"x_hat: expected S >= 1 samples, got shape {tuple(x_hat_given.shape)}")
    # (need_grad=False: the derivative buffers stay autograd's, as in elbo_stats)
    bound = _impl(x).iwae_bound(x, x_hat, z, mu, log_var, likelihood, False, x_log_var)[0]
    if likelihood == "bernoulli_probs":
        _refuse_out_of_domain(bound, _PROBABILITY_DOMAINS, x_hat=x_hat, x=x)
    return bound


# ---------------------------------------------------------- count_log_likelihood
COUNT_LIKELIHOODS = _likelihoods.COUNT_LIKELIHOODS  # (the one definition's public alias)


def count_log_likelihood(
    x: Tensor,
    mu: Tensor,
    theta: Tensor | None = None,
    zi_logits: Tensor | None = None,
    likelihood: str = "nb",
    eps: float = 1e-8,
    reduce_sum: bool = False,
) -> Tensor:
    """Log-likelihood of counts (scvi-tools' count models), in one pass.

    ``"nb"``: scvi-tools' ``log_nb_positive(x, mu, theta, eps)``,
    ``theta (log(theta + eps) - log(theta + mu + eps)) + x (log(mu + eps) -
    log(theta + mu + eps)) + lgamma(x + theta) - lgamma(theta) - lgamma(x + 1)``;
    ``"zinb"``: ``log_zinb_positive(x, mu, theta, zi_logits, eps)``, the
    dropout logits mixing in a point mass at 0 (``x < eps`` counts as 0);
    ``"poisson"``: ``torch.distributions.Poisson(mu).log_prob(x)``.

    Accurate in float32 at any dispersion and any count: from theta >= 10 the
    lgamma difference is taken from Stirling's series analytically (scvi's
    float32 formula is off by 1e-3 at theta = 1e4 and by tens of nats at
    1e8), and from x = 32 on the log-pmf is formed in saddle-point form from
    terms of its own size (the plain sum of O(x log x) terms gave +32 nats
    for a log-probability of -20.9 at x = 3e7). ``theta = inf`` gives the
    Poisson limit ``x log(mu + eps) - mu - lgamma(x + 1)``.

    Args:
        x: counts (float, integer or bool), broadcastable with the parameters.
        mu: means (rates for Poisson), >= 0.
        theta: inverse dispersions > 0 (``nb``, ``zinb``; e.g. one per gene, ``[G]``).
        zi_logits: logits of the dropout probability (``zinb``).
        likelihood: ``"nb"``, ``"zinb"`` or ``"poisson"``.
        eps: scvi's stability constant inside the logs (``nb``, ``zinb``).
        reduce_sum: sum over the last dimension (the genes).

    Returns:
        The broadcast shape, less the last dimension when ``reduce_sum``, in
        the promoted dtype. Differentiable in every tensor argument; the
        derivatives are computed in the forward pass. Values outside the
        domain (x < 0, mu < 0, theta <= 0) give NaN; on the CPU such an
        argument, or a NaN one, raises ``ValueError`` naming it (checked only
        when the result holds a NaN, so valid input costs nothing).
    """
    likelihood = _likelihoods.canonical_count_likelihood(likelihood)
    return _count_log_likelihood(x, mu, theta, zi_logits, likelihood, eps, reduce_sum)


def _count_log_likelihood(
    x: Tensor, mu: Tensor, theta: Tensor | None, zi_logits: Tensor | None, likelihood: str, eps: float,
    reduce_sum: bool,
) -> Tensor:
    """:func:`count_log_likelihood` for a canonical ``likelihood`` name (not
    checked again)."""
    eps = check.finite_number("eps", eps)
    if eps < 0:
        raise ValueError(f"eps: expected a number >= 0, got {eps}")
    x, mu = check.real("x", x), check.floating("mu", mu)
    wants_theta, wants_zi = likelihood != "poisson", likelihood == "zinb"
    for name, t, wanted in (("theta", theta, wants_theta), ("zi_logits", zi_logits, wants_zi)):
        if wanted and t is None:
            raise ValueError(f"{name}: required by likelihood {likelihood!r}")
        if not wanted and t is not None:
            raise ValueError(f"{name}: not used by likelihood {likelihood!r}; pass None")
        if t is not None:
            check.floating(name, t)
    check.same_device(x=x, mu=mu, theta=theta, zi_logits=zi_logits)
    shape = check.broadcastable(x=x, mu=mu, theta=theta, zi_logits=zi_logits)
    if reduce_sum and len(shape) == 0:
        raise check.ShapeError("mu: reduce_sum needs a last dimension (the genes), got 0-d arguments")
    x, mu, theta, zi_logits = check.promote(x, mu, theta, zi_logits)
    scalar = len(shape) == 0
    if scalar:  # the kernels want a gene dimension
        x, mu, theta, zi_logits = (t.reshape(1) if t is not None else None for t in (x, mu, theta, zi_logits))
    # (need_grad(_x)=False: the derivative buffers stay autograd's, as in elbo_stats)
    out = _impl(mu).count_log_likelihood(x, mu, theta, zi_logits, likelihood, eps, reduce_sum, False, False)[0]
    _refuse_out_of_domain(out, _COUNT_DOMAINS, x=x, mu=mu, theta=theta, zi_logits=zi_logits)
    return out.reshape(()) if scalar else out


def nb_mixture_log_likelihood(
    x: Tensor,
    mu_1: Tensor,
    mu_2: Tensor,
    theta_1: Tensor,
    theta_2: Tensor | None,
    pi_logits: Tensor,
    eps: float = 1e-8,
    reduce_sum: bool = False,
) -> Tensor:
    """Log-likelihood of counts under a mixture of two negative binomials
    that share ``x`` (scvi-tools' ``log_mixture_nb``, totalVI's protein
    background and foreground), in one pass.

    ``log(sigmoid(pi) NB(x; mu_1, theta_1) + sigmoid(-pi) NB(x; mu_2, theta_2))
    = logsumexp(log NB_1, log NB_2 - pi) - softplus(-pi)`` (computed as
    ``logaddexp(log NB_1 - softplus(-pi), log NB_2 - softplus(pi))``, which
    at ``pi_logits = -inf``, where scvi-tools' form is ``inf - inf``, is
    component 2's log-pmf), each NB scvi's
    ``log_nb_positive`` with ``eps`` and as accurate in float32 as
    :func:`count_log_likelihood`'s (any count, any theta, ``theta = inf`` the
    Poisson limit).

    Args:
        x: counts (float, integer or bool), broadcastable with the parameters.
        mu_1, mu_2: the components' means, >= 0.
        theta_1: component 1's inverse dispersions > 0 (e.g. one per protein, ``[G]``).
        theta_2: component 2's, or ``None`` for ``theta_1`` in both.
        pi_logits: logits of component 1's weight.
        eps: scvi's stability constant inside the logs, for both components.
        reduce_sum: sum over the last dimension.

    Returns:
        The broadcast shape, less the last dimension when ``reduce_sum``, in
        the promoted dtype. Differentiable in every tensor argument; the
        derivatives are computed in the forward pass. Values outside the
        domain give NaN; on the CPU such an argument, or a NaN one, raises
        ``ValueError`` naming it (checked only when the result holds a NaN).
    """
    eps = check.finite_number("eps", eps)
    if eps < 0:
        raise ValueError(f"eps: expected a number >= 0, got {eps}")
    x = check.real("x", x)
    mu_1, mu_2, theta_1, pi_logits = (
        check.floating(name, t) for name, t in (("mu_1", mu_1), ("mu_2", mu_2), ("theta_1", theta_1), ("pi_logits", pi_logits))
    )
    if theta_2 is not None:
        check.floating("theta_2", theta_2)
    tensors = dict(x=x, mu_1=mu_1, mu_2=mu_2, theta_1=theta_1, theta_2=theta_2, pi_logits=pi_logits)
    check.same_device(**tensors)
    shape = check.broadcastable(**tensors)
    if reduce_sum and len(shape) == 0:
        raise check.ShapeError("mu_1: reduce_sum needs a last dimension (the genes), got 0-d arguments")
    x, mu_1, mu_2, theta_1, theta_2, pi_logits = check.promote(x, mu_1, mu_2, theta_1, theta_2, pi_logits)
    scalar = len(shape) == 0
    if scalar:  # the kernels want a gene dimension
        x, mu_1, mu_2, theta_1, theta_2, pi_logits = (
            t.reshape(1) if t is not None else None for t in (x, mu_1, mu_2, theta_1, theta_2, pi_logits)
        )
    # (need_grad(_x)=False: the derivative buffers stay autograd's, as in elbo_stats)
    out = _impl(mu_1).nb_mixture_log_likelihood(x, mu_1, mu_2, theta_1, theta_2, pi_logits, eps, reduce_sum, False,
                                                False)[0]
    _refuse_out_of_domain(out, _COUNT_DOMAINS, x=x, mu_1=mu_1, mu_2=mu_2, theta_1=theta_1, theta_2=theta_2,
                          pi_logits=pi_logits)
    return out.reshape(()) if scalar else out


def _in_unit_interval(t: Tensor) -> Tensor:
    return (t >= 0) & (t <= 1)


# argument name -> (what it must be, elementwise test); NaN fails every test.
_MEANS = ("means >= 0", lambda t: t >= 0)
_INVERSE_DISPERSIONS = ("inverse dispersions > 0", lambda t: t > 0)
_LOGITS = ("logits", lambda t: ~t.isnan())
_COUNT_DOMAINS = {"x": ("counts >= 0", lambda t: t >= 0), "mu": _MEANS, "mu_1": _MEANS, "mu_2": _MEANS,
                  "theta": _INVERSE_DISPERSIONS, "theta_1": _INVERSE_DISPERSIONS, "theta_2": _INVERSE_DISPERSIONS,
                  "zi_logits": _LOGITS, "pi_logits": _LOGITS}
_PROBABILITY_DOMAINS = {"x_hat": ("probabilities in [0, 1]", _in_unit_interval),
                        "x": ("targets in [0, 1]", _in_unit_interval)}


def _refuse_out_of_domain(out: Tensor, domains: dict, **args: Tensor | None) -> None:
    """On the CPU, a NaN result is looked into (the valid case costs one
    isnan pass over the result): an argument that is NaN or outside its
    domain (``domains[name]``) raises ``ValueError`` naming it and its first
    bad value. On other devices the NaN stays (reading it would stall the
    device every call)."""
    if out.device.type != "cpu" or torch.compiler.is_compiling() or not bool(out.isnan().any()):
        return
    for name, t in args.items():
        if t is None:
            continue
        what, ok = domains[name]
        bad = ~ok(t.detach())
        if bool(bad.any()):
            first = t.detach()[bad].flatten()[0].item()
            raise ValueError(f"{name}: expected {what}, found {first} (and {int(bad.sum()) - 1} more outside the domain)")


# ------------------------------------------------------------- adagvae_posterior
def adagvae_posterior(
    mu1: Tensor, log_var1: Tensor, mu2: Tensor, log_var2: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Ada-GVAE posterior adaptation for a pair of posteriors ``[B, D]``.

    Per row, ``kl = KL(q1 || q2)`` per dimension and ``tau = (max + min) / 2``;
    where ``kl < tau`` both posteriors are replaced by their average (mean
    ``(mu1 + mu2) / 2``, log-variance ``log((exp(lv1) + exp(lv2)) / 2)``).

    Returns:
        ``(mu1, log_var1, mu2, log_var2)`` adapted, each ``[B, D]``;
        differentiable in all four inputs (the selection itself is not).
    """
    if not (
        check.same_floating_tensors(mu1, log_var1, mu2, log_var2)
        and mu1.dim() == 2
        and mu1.shape == log_var1.shape == mu2.shape == log_var2.shape
    ):  # anything but the usual call: the detailed checks, promotion, broadcasting
        mu1, log_var1 = _latent_pair(mu1, log_var1, ("mu1", "log_var1"))
        mu2, log_var2 = _latent_pair(mu2, log_var2, ("mu2", "log_var2"))
        check.same_device(mu1=mu1, mu2=mu2)
        if mu1.shape != mu2.shape:
            raise check.ShapeError(f"mu2: expected shape {tuple(mu1.shape)} (from mu1), got {tuple(mu2.shape)}")
        mu1, log_var1, mu2, log_var2 = check.promote(mu1, log_var1, mu2, log_var2)
    mu1a, log_var1a, mu2a, log_var2a, _mask = _impl(mu1).adagvae_posterior(mu1, log_var1, mu2, log_var2)
    return mu1a, log_var1a, mu2a, log_var2a
