"""ml-starter's clamped KL helpers (``ml.tasks.losses.kl``, seed 003) on the fused ops.

Both functions clamp every log-variance to ``[clamp_min, clamp_max]`` first
(gradient as ``torch.clamp``'s: passed through inside the range, bounds
included, zero outside) and return an elementwise tensor, no reduction, in
the broadcast shape of their inputs. Each is one
:func:`~pyautoencoder_fast.functional.kl_diag_gaussian` op (clamp, KL and
their gradients fused), plus one scale-and-shift for the pair version.
"""

from __future__ import annotations

from torch import Tensor

from . import _validation as check
from . import functional

__all__ = ["kl_div_pair_loss", "kl_div_single_loss"]


def _clamp_range(clamp_min: object, clamp_max: object) -> tuple[float | None, float | None]:
    lo = check.optional_number("clamp_min", clamp_min)
    hi = check.optional_number("clamp_max", clamp_max)
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"clamp_min ({lo}) must not exceed clamp_max ({hi})")
    return lo, hi


def _checked(**named: Tensor) -> list[Tensor]:
    """Floating tensors on one device that broadcast; 0-d ones get a dim
    (the fused op wants ``[..., D]``), see :func:`_restore`."""
    tensors = [check.floating(name, t) for name, t in named.items()]
    check.same_device(**named)
    shape = check.broadcastable(**named)
    if len(shape) == 0:
        tensors = [t.reshape(1) for t in tensors]
    return tensors


def _restore(out: Tensor, inputs: list[Tensor]) -> Tensor:
    return out.reshape(()) if all(t.dim() == 0 for t in inputs) else out


def kl_div_single_loss(
    mu: Tensor,
    log_var: Tensor,
    *,
    clamp_min: float | None = -30.0,
    clamp_max: float | None = 20.0,
) -> Tensor:
    """KL divergence of ``N(mu, exp(log_var))`` from the standard normal, elementwise.

    ``-0.5 * (1 + lv - mu**2 - exp(lv))`` with ``lv = clamp(log_var,
    clamp_min, clamp_max)``, i.e. ``KL(N(mu, exp(lv)) || N(0, 1))`` per
    element (sum it over the latent dimension for the KL of the vector).

    Args:
        mu: means.
        log_var: log-variances; broadcast with ``mu``.
        clamp_min, clamp_max: clamp range of the log-variance (defaults
            -30 and 20, as ml-starter's; ``None`` leaves that side open).

    Returns:
        Tensor of the broadcast shape, differentiable in ``mu`` and ``log_var``.

    Raises:
        TypeError: a non-floating tensor or a non-numeric bound.
        ValueError: shapes that do not broadcast, different devices,
            ``clamp_min > clamp_max``.
    """
    lo, hi = _clamp_range(clamp_min, clamp_max)
    args = _checked(mu=mu, log_var=log_var)
    out = functional.kl_diag_gaussian(*args, reduce_sum=False, clamp_min=lo, clamp_max=hi)
    return _restore(out, [mu, log_var])


def kl_div_pair_loss(
    mu_p: Tensor,
    log_var_p: Tensor,
    mu_q: Tensor,
    log_var_q: Tensor,
    *,
    clamp_min: float | None = -30.0,
    clamp_max: float | None = 20.0,
) -> Tensor:
    """ml-starter's pair "KL" loss, elementwise: ``2 * KL(p || q) + 0.5``.

    Reproduces ml-starter's formula exactly,
    ``(lv_q - lv_p) + (exp(lv_p) + (mu_p - mu_q)**2) / exp(lv_q) - 0.5``
    with both log-variances clamped to ``[clamp_min, clamp_max]``. That is
    NOT the KL divergence itself: it equals ``2 * KL(p || q) + 0.5`` per
    element (it lacks the 1/2 factor and subtracts 0.5 instead of 1), so it
    is 0.5, not 0, when ``p == q``. Its minimiser and gradient direction are
    the KL's (the gradient is twice the KL's). For the true KL use
    :func:`pyautoencoder_fast.functional.kl_diag_gaussian`
    ``(mu_p, log_var_p, mu_q, log_var_q, reduce_sum=False, clamp_min=...,
    clamp_max=...)``.

    Args:
        mu_p, log_var_p: mean and log-variance of ``p`` (the first argument
            of the KL).
        mu_q, log_var_q: mean and log-variance of ``q``.
        clamp_min, clamp_max: clamp range of both log-variances (defaults -30
            and 20; ``None`` leaves that side open).

    Returns:
        Tensor of the broadcast shape of the four inputs, differentiable in
        all four.

    Raises:
        TypeError: a non-floating tensor or a non-numeric bound.
        ValueError: shapes that do not broadcast, different devices,
            ``clamp_min > clamp_max``.
    """
    lo, hi = _clamp_range(clamp_min, clamp_max)
    args = _checked(mu_p=mu_p, log_var_p=log_var_p, mu_q=mu_q, log_var_q=log_var_q)
    kl = functional.kl_diag_gaussian(*args, reduce_sum=False, clamp_min=lo, clamp_max=hi)
    return _restore(kl.mul(2.0).add_(0.5), [mu_p, log_var_p, mu_q, log_var_q])
