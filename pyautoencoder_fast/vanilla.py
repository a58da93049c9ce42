"""pyautoencoder's vanilla autoencoder (``pyautoencoder.vanilla``) on the fused ops."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from . import _likelihoods, functional
from . import _validation as check
from .base import BaseAutoencoder, ModelOutput, model_output, module_argument
from ._likelihoods import LikelihoodType
from ._loss_result import LossResult, read_diagnostics

__all__ = ["AE", "AEDecodeOutput", "AEEncodeOutput", "AEOutput"]


@dataclass(slots=True, repr=False)
class AEEncodeOutput(ModelOutput):
    """Output of the encoder stage: latent code ``z`` ``[B, ...]``."""

    z: Tensor


@dataclass(slots=True, repr=False)
class AEDecodeOutput(ModelOutput):
    """Output of the decoder stage: reconstruction (or logits) ``x_hat`` ``[B, ...]``."""

    x_hat: Tensor


@dataclass(slots=True, repr=False)
class AEOutput(ModelOutput):
    """Output of the full forward pass: ``x_hat`` ``[B, ...]`` and ``z`` ``[B, ...]``."""

    x_hat: Tensor
    z: Tensor


class AE(BaseAutoencoder):
    """Autoencoder made of a user-defined ``encoder`` (x -> z) and ``decoder`` (z -> x_hat)."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module) -> None:
        super().__init__()
        self.encoder = module_argument("encoder", encoder)
        self.decoder = module_argument("decoder", decoder)

    def _encode(self, x: Tensor) -> AEEncodeOutput:
        return AEEncodeOutput(z=self.encoder(x))

    def _decode(self, z: Tensor) -> AEDecodeOutput:
        return AEDecodeOutput(x_hat=self.decoder(z))

    def forward(self, x: Tensor) -> AEOutput:
        """Training pass: ``z = encoder(x)``, ``x_hat = decoder(z)``."""
        z = self._encode(x).z
        return AEOutput(x_hat=self._decode(z).x_hat, z=z)

    def compute_loss(
        self,
        x: Tensor,
        ae_output: AEOutput | None = None,
        likelihood: str | LikelihoodType = LikelihoodType.GAUSSIAN,
        *,
        output: AEOutput | None = None,
    ) -> LossResult:
        """Batch-mean reconstruction negative log-likelihood (nats).

        Elementwise log-likelihood, summed over the features, averaged over
        the batch (one fused pass: :func:`functional.log_likelihood_sum`).

        Args:
            x: ground truth ``[B, ...]``.
            ae_output: output of :meth:`forward`; only ``x_hat`` (the shape
                of ``x``, logits for Bernoulli) is used. ``output=`` is
                accepted as well (pyautoencoder 2.x's name).
            likelihood: ``"gaussian"``, ``"bernoulli"`` (logits), ``"laplace"``
                or ``"bernoulli_probs"`` (probabilities), or a
                :class:`LikelihoodType`; anything else raises ``ValueError``.

        Returns:
            ``LossResult(objective, {"log_likelihood": -objective})``, the
            diagnostic a Python float.
        """
        ae_output = model_output("ae_output", ae_output, output)
        likelihood = _likelihoods.canonical_likelihood(likelihood)
        x, x_hat = check.tensor("x", x), check.tensor("ae_output.x_hat", ae_output.x_hat)
        if x_hat.shape != x.shape:
            raise check.ShapeError(
                f"x and x_hat must have the same shape, got {tuple(x.shape)} and {tuple(x_hat.shape)}."
            )
        ll = functional._log_likelihood_sum(x, x_hat, likelihood, refuse_bad_probabilities=True)  # [B, 1]
        objective = -ll.mean()
        (log_likelihood,) = read_diagnostics(-objective.reshape(1))
        return LossResult(objective=objective, diagnostics={"log_likelihood": log_likelihood})
