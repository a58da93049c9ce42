"""scvi-tools on the fused ops.

* **The switch** (:func:`enable_fused_likelihoods`, :func:`fused_likelihoods`):
  one call moves the installed scvi-tools' own models (SCVI, SCANVI,
  TOTALVI, ...) onto the fused count likelihoods; ``_switch.py``.
* **Drop-ins** (scvi-tools' names, signatures and results; change the
  import, keep the code): ``log_nb_positive``, ``log_zinb_positive``,
  ``log_mixture_nb``, ``NegativeBinomial``, ``ZeroInflatedNegativeBinomial``,
  ``NegativeBinomialMixture``, ``Poisson``; ``_distributions.py``. Their
  log-likelihoods run the fused ``count_log_likelihood`` op (one pass, the
  derivatives written in the forward, float32-accurate at any dispersion)
  and never read the device unless ``validate_args`` asks for it.
* **The scVI loss in one call**: :func:`scvi_loss`; ``_loss.py``.
* **The loss record** ``LossOutput`` (``scvi.module.base.LossOutput``) and its
  bridge to :class:`~pyautoencoder_fast.loss.LossResult`; ``_loss_output.py``.

Where they knowingly differ from scvi-tools: see docs/differences.md; what
the switch covers: docs/scvi_tools.md.
"""

from ._distributions import (
    NegativeBinomial,
    NegativeBinomialMixture,
    Poisson,
    ZeroInflatedNegativeBinomial,
    log_mixture_nb,
    log_nb_positive,
    log_zinb_positive,
)
from ._loss import GENE_LIKELIHOODS, scvi_loss
from ._loss_output import LossOutput
from ._switch import (
    TESTED_SCVI_VERSIONS,
    disable_fused_likelihoods,
    enable_fused_likelihoods,
    fused_likelihoods,
    fused_likelihoods_enabled,
)

__all__ = [
    "LossOutput",
    "NegativeBinomial",
    "NegativeBinomialMixture",
    "Poisson",
    "TESTED_SCVI_VERSIONS",
    "ZeroInflatedNegativeBinomial",
    "disable_fused_likelihoods",
    "enable_fused_likelihoods",
    "fused_likelihoods",
    "fused_likelihoods_enabled",
    "log_mixture_nb",
    "log_nb_positive",
    "log_zinb_positive",
    "scvi_loss",
]
