"""pyautoencoder's vanilla autoencoder (``pyautoencoder.vanilla``) on the fused ops."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from . import functional
from . import _validation as check
from .base import BaseAutoencoder, ModelOutput
from ._loss_result import read_diagnostics
from .loss import LikelihoodType, LossResult

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


def _module(name: str, value: object) -> nn.Module:
    if not isinstance(value, nn.Module):
        raise TypeError(f"{name}: expected a torch.nn.Module, got {type(value).__name__}")
    return value


class AE(BaseAutoencoder):
    """Autoencoder made of a user-defined ``encoder`` (x -> z) and ``decoder`` (z -> x_hat)."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module) -> None:
        super().__init__()
        self.encoder = _module("encoder", encoder)
        self.decoder = _module("decoder", decoder)

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
        likelihood = check.likelihood(likelihood)
        x, x_hat = check.tensor("x", x), check.tensor("ae_output.x_hat", ae_output.x_hat)
        if x_hat.shape != x.shape:
            raise check.ShapeError(
                f"x and x_hat must have the same shape, got {tuple(x.shape)} and {tuple(x_hat.shape)}."
            )
        ll = functional.log_likelihood_sum(x, x_hat, likelihood)  # [B, 1]
        objective = -ll.mean()
        (log_likelihood,) = read_diagnostics(-objective.reshape(1))
        return LossResult(objective=objective, diagnostics={"log_likelihood": log_likelihood})


def model_output(name: str, value: object, alias: object) -> object:
    """The forward output passed to ``compute_loss`` as ``name`` (the seed's
    parameter name) or as ``output`` (pyautoencoder 2.x's), not both."""
    if alias is None:
        if value is None:
            raise TypeError(f"compute_loss() missing required argument: '{name}'")
        return value
    if value is not None:
        raise TypeError(f"compute_loss() got both '{name}' and 'output'; pass one")
    return alias
