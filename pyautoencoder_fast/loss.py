"""pyautoencoder's ``loss`` module on the fused ops.

``log_likelihood``, ``kl_divergence_diag_gaussian``, ``LossResult`` and
``LikelihoodType`` behave as in ``pyautoencoder.loss`` (seed 000), with one
addition: ``LikelihoodType.LAPLACE`` (``-|x_hat - x|``).

It also re-exports the loss APIs of peer libraries, built on the same fused
ops (one module per original library), each imported on first use (importing
this module imports none of those modules):

* ``BetaVAELoss`` (:mod:`pyautoencoder_fast.nidl`): ``nidl.losses.BetaVAELoss``;
* ``kl_div_single_loss``, ``kl_div_pair_loss`` (:mod:`pyautoencoder_fast.ml_starter`):
  ``ml.tasks.losses.kl``'s functions of those names;
* ``LossOutput`` (:mod:`pyautoencoder_fast.scvi`): ``scvi.module.base.LossOutput``.

``LossOutput.from_loss_result`` / ``LossOutput.to_loss_result`` convert
between scvi-tools' record and :class:`LossResult`.
"""

from __future__ import annotations

import importlib

from torch import Tensor

from . import functional
from ._likelihoods import LikelihoodType
from ._loss_result import LossResult

__all__ = [
    "BetaVAELoss",
    "LikelihoodType",
    "LossOutput",
    "LossResult",
    "UnsupportedDistributionError",
    "kl_div_pair_loss",
    "kl_div_single_loss",
    "kl_divergence_diag_gaussian",
    "log_likelihood",
]

# The peer libraries' losses: name -> the module (of this package) that
# defines it, imported on first access (PEP 562), then cached here.
_LAZY = {
    "BetaVAELoss": ".nidl",
    "UnsupportedDistributionError": ".nidl",
    "kl_div_pair_loss": ".ml_starter",
    "kl_div_single_loss": ".ml_starter",
    "LossOutput": ".scvi",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __package__), name)
    globals()[name] = value  # (later lookups do not come here)
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


def log_likelihood(
    x: Tensor, x_hat: Tensor, likelihood: str | LikelihoodType = LikelihoodType.GAUSSIAN
) -> Tensor:
    """Elementwise log p(x | x_hat), shape of ``x``.

    Gaussian: ``-0.5 * (x_hat - x)**2`` (unit variance, constant dropped).
    Bernoulli: ``x_hat`` are logits; numerically stable
    ``x log sigmoid(x_hat) + (1 - x) log(1 - sigmoid(x_hat))``.
    Laplace: ``-|x_hat - x|``. ``likelihood`` is a ``LikelihoodType`` or a
    case-insensitive string; an unknown one raises ``ValueError``.
    """
    return functional.log_likelihood(x, x_hat, likelihood)


def kl_divergence_diag_gaussian(
    mu_q: Tensor,
    log_var_q: Tensor,
    mu_p: Tensor | None = None,
    log_var_p: Tensor | None = None,
    reduce_sum: bool = True,
) -> Tensor:
    """Closed-form KL(q || p) of diagonal Gaussians; ``None`` p-parameters are 0.

    Returns ``[B]`` when ``reduce_sum`` (sum over the last dim), else ``[B, D_z]``.
    """
    return functional.kl_diag_gaussian(mu_q, log_var_q, mu_p, log_var_p, reduce_sum=reduce_sum)

