"""scVI's ``VAE.loss`` in fused ops: :func:`scvi_loss`."""

from __future__ import annotations

import torch
from torch import Tensor

from .. import _likelihoods, functional
from ._loss_output import LossOutput

__all__ = ["GENE_LIKELIHOODS", "scvi_loss"]

GENE_LIKELIHOODS = _likelihoods.COUNT_LIKELIHOODS  # scvi's gene likelihoods: the count likelihoods
_VARIANCE_DOMAIN = {"qz_v": ("variances > 0 (qz_v is the variance, not the log-variance)", lambda t: t > 0)}


def scvi_loss(
    x: Tensor,
    px_rate: Tensor,
    theta: Tensor | None,
    px_dropout: Tensor | None,
    qz_m: Tensor,
    qz_v: Tensor,
    kl_weight: float | Tensor = 1.0,
    gene_likelihood: str = "zinb",
    kl_divergence_l: Tensor | None = None,
) -> LossOutput:
    """scvi-tools' ``VAE.loss`` in fused ops: the reconstruction term summed
    over the genes in one pass (its derivatives written in the forward) and
    the KL to N(0, I) in one more.

    ``reconst = -log p(x | px).sum(-1)``, ``kl_z = KL(N(qz_m, qz_v) || N(0, I)).sum(-1)``,
    ``loss = mean(reconst + kl_weight * kl_z + kl_l)``, returned as
    ``LossOutput(loss, reconstruction_loss=reconst, kl_local={"kl_divergence_l":
    kl_l, "kl_divergence_z": kl_z})``.

    Args:
        x: counts ``[B, G]``.
        px_rate: NB / Poisson means ``[B, G]`` (library size times the decoder's scale).
        theta: inverse dispersions (``px_r`` after ``exp``), e.g. ``[G]``;
            None for ``"poisson"``.
        px_dropout: dropout logits ``[B, G]`` for ``"zinb"``, else None (ignored).
        qz_m, qz_v: the posterior's mean and variance ``[B, D]`` (variance, not
            log-variance, as scvi's encoder returns it). A negative or NaN
            variance makes the loss NaN; on the CPU that raises
            ``ValueError`` naming ``qz_v`` instead.
        kl_weight: the KL warm-up weight (a number or a tensor).
        gene_likelihood: ``"zinb"`` (scvi's default), ``"nb"`` or ``"poisson"``,
            in any case (``"ZINB"`` too), as the library's likelihood names.
        kl_divergence_l: the library-size KL ``[B]`` when the library size
            is not observed; zeros (scvi's value for an observed one) when None.
    """
    # (names are case-insensitive, as everywhere in this library: "ZINB" is "zinb")
    gene_likelihood = _likelihoods.canonical_count_likelihood(gene_likelihood, "gene_likelihood")
    if gene_likelihood == "poisson":
        theta = None
    if gene_likelihood != "zinb":
        px_dropout = None
    reconst = -functional._count_log_likelihood(
        x, px_rate, theta, px_dropout, likelihood=gene_likelihood, eps=1e-8, reduce_sum=True
    )
    kl_z = functional.kl_diag_gaussian(qz_m, torch.log(qz_v), reduce_sum=True)
    # A variance <= 0 (a log-variance passed as the variance) makes the KL NaN:
    # named, as the count arguments are (on the CPU; elsewhere the NaN stays).
    functional._refuse_out_of_domain(kl_z, _VARIANCE_DOMAIN, qz_v=qz_v)
    kl_l = torch.zeros_like(kl_z) if kl_divergence_l is None else kl_divergence_l
    loss = torch.mean(reconst + kl_weight * kl_z + kl_l)
    return LossOutput(
        loss=loss,
        reconstruction_loss=reconst,
        kl_local={"kl_divergence_l": kl_l, "kl_divergence_z": kl_z},
        extra_metrics={},
    )

