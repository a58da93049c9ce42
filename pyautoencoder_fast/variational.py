"""pyautoencoder's variational models (``pyautoencoder.variational``) on the fused ops.

* :class:`FullyFactorizedGaussian`: the Gaussian posterior head (lazy linear
  ``mu`` and ``log_var`` layers) and reparameterized sampling;
* :class:`VAE`: (beta-)VAE whose loss is one fused op
  (:func:`functional.elbo_stats`);
* :class:`AdaGVAE`: Ada-GVAE (Locatello et al., 2020) wrapping a :class:`VAE`.

Sampling uses :func:`functional.reparameterize`: the noise comes from a
Philox stream seeded from torch's generator, so ``torch.manual_seed`` makes
runs reproducible and both backends draw the same ``z``. It is not the
stream ``torch.randn`` would give, so samples differ numerically from
pyautoencoder's for the same seed (same distribution).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor, nn

from . import functional
from . import _validation as check
from .base import BaseAutoencoder, ModelOutput, require_built
from .loss import LikelihoodType, LossResult
from .vanilla import _module

__all__ = [
    "AdaGVAE",
    "AdaGVAEOutput",
    "FullyFactorizedGaussian",
    "VAE",
    "VAEDecodeOutput",
    "VAEEncodeOutput",
    "VAEOutput",
]


def _num_samples(S: object) -> int:
    """S as a Python int >= 1 (ValueError / TypeError naming S otherwise)."""
    return check.positive_int("S", S)


def _latent_dim(latent_dim: object) -> int:
    return check.positive_int("latent_dim", latent_dim)


# ------------------------------------------------------------------ outputs
@dataclass
class VAEEncodeOutput(ModelOutput):
    """Encoder stage: samples ``z`` ``[B, S, D_z]``, posterior ``mu`` and ``log_var`` ``[B, D_z]``."""

    z: Tensor
    mu: Tensor
    log_var: Tensor


@dataclass
class VAEDecodeOutput(ModelOutput):
    """Decoder stage: reconstructions (or logits) ``x_hat`` ``[B, S, ...]``."""

    x_hat: Tensor


@dataclass
class VAEOutput(ModelOutput):
    """Full VAE pass: ``x_hat`` ``[B, S, ...]``, ``z`` ``[B, S, D_z]``, ``mu`` and ``log_var`` ``[B, D_z]``."""

    x_hat: Tensor
    z: Tensor
    mu: Tensor
    log_var: Tensor


@dataclass
class AdaGVAEOutput(ModelOutput):
    """Ada-GVAE pass on a pair ``(x1, x2)``; index 1 refers to ``x1``, 2 to ``x2``.

    Attributes:
        x1_hat, x2_hat: reconstructions (or logits) ``[B, S, ...]``.
        z1, z2: latent samples ``[B, S, D_z]`` drawn from the adapted posteriors.
        mu1, log_var1, mu2, log_var2: the adapted posterior parameters
            ``[B, D_z]`` (dimensions judged shared are averaged), the ones the
            loss uses.
    """

    x1_hat: Tensor
    z1: Tensor
    mu1: Tensor
    log_var1: Tensor
    x2_hat: Tensor
    z2: Tensor
    mu2: Tensor
    log_var2: Tensor


# ------------------------------------------------------------ sampling layer
class FullyFactorizedGaussian(nn.Module):
    """Diagonal Gaussian posterior head ``q(z | x) = N(mu, diag(exp(log_var)))``.

    ``mu`` and ``log_var`` are ``nn.LazyLinear(latent_dim)`` layers on the
    encoder features ``f`` ``[B, F]``.
    """

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = _latent_dim(latent_dim)
        self.mu = nn.LazyLinear(self.latent_dim)
        self.log_var = nn.LazyLinear(self.latent_dim)

    def get_params(self, f: Tensor) -> tuple[Tensor, Tensor]:
        """``(mu, log_var)`` of the posterior for features ``f`` ``[B, F]``."""
        return self.mu(f), self.log_var(f)

    def forward(self, f: Tensor, S: int = 1) -> tuple[Tensor, Tensor, Tensor]:
        """``(z, mu, log_var)``: ``z`` ``[B, S, D]``, ``mu`` and ``log_var`` ``[B, D]``.

        Training mode: ``z = mu + exp(0.5 * log_var) * eps`` (reparameterized,
        differentiable in ``mu`` and ``log_var``). Eval mode: ``z`` is ``mu``
        repeated ``S`` times. ``S < 1`` raises ``ValueError``.
        """
        S = _num_samples(S)
        if f.dim() != 2:
            raise ValueError(
                f"f: expected encoder features of shape [B, F], got {tuple(f.shape)} "
                "(flatten the encoder output)"
            )
        mu, log_var = self.get_params(f)
        return self.sample(mu, log_var, S), mu, log_var

    def sample(self, mu: Tensor, log_var: Tensor, S: int = 1) -> Tensor:
        """``[B, S, D]`` samples of ``N(mu, exp(log_var))`` in training mode, ``mu``
        repeated ``S`` times (a broadcast view, no copy) in eval mode."""
        S = _num_samples(S)
        if self.training:
            return self._reparametrize(mu, log_var, S)
        return mu.unsqueeze(1).expand(-1, S, -1)

    def _reparametrize(self, mu: Tensor, log_var: Tensor, S: int = 1) -> Tensor:
        """``S`` reparameterized samples ``[B, S, D]`` (fused Philox kernel)."""
        return functional.reparameterize(mu, log_var, S)


# ----------------------------------------------------------------------- VAE
class VAE(BaseAutoencoder):
    """Variational autoencoder (Kingma & Welling, 2013).

    ``encoder`` maps ``x`` to features ``[B, F]``, the internal
    :class:`FullyFactorizedGaussian` (attribute ``sampling_layer``) turns them
    into ``(z, mu, log_var)``, and ``decoder`` maps ``z`` ``[B*S, D_z]`` to
    reconstructions (logits for Bernoulli).
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, latent_dim: int) -> None:
        super().__init__()
        self.encoder = _module("encoder", encoder)
        self.decoder = _module("decoder", decoder)
        self.latent_dim = _latent_dim(latent_dim)
        self.sampling_layer = FullyFactorizedGaussian(self.latent_dim)

    def _encode(self, x: Tensor, S: int = 1) -> VAEEncodeOutput:
        z, mu, log_var = self.sampling_layer(self.encoder(x), S)
        return VAEEncodeOutput(z=z, mu=mu, log_var=log_var)

    def _decode(self, z: Tensor) -> VAEDecodeOutput:
        """``z`` ``[B, S, D_z]`` -> ``x_hat`` ``[B, S, ...]`` (decoder run on ``[B*S, D_z]``).

        A 2-D ``z`` ``[B, D_z]`` (e.g. prior samples) is decoded as it is, to
        ``[B, ...]``.
        """
        if z.dim() == 2:
            return VAEDecodeOutput(x_hat=self.decoder(z))
        if z.dim() != 3:
            raise ValueError(f"z: expected shape [B, S, D_z] (or [B, D_z]), got {tuple(z.shape)}")
        batch, samples = z.shape[0], z.shape[1]
        x_hat = self.decoder(z.reshape(batch * samples, z.shape[2]))
        return VAEDecodeOutput(x_hat=x_hat.reshape(batch, samples, *x_hat.shape[1:]))

    def forward(self, x: Tensor, S: int = 1) -> VAEOutput:
        """Encode, draw ``S`` samples, decode: ``VAEOutput(x_hat, z, mu, log_var)``."""
        enc = self._encode(x, S)
        return VAEOutput(x_hat=self._decode(enc.z).x_hat, z=enc.z, mu=enc.mu, log_var=enc.log_var)

    def compute_loss(
        self,
        x: Tensor,
        vae_output: VAEOutput,
        beta: float = 1,
        likelihood: str | LikelihoodType = LikelihoodType.GAUSSIAN,
    ) -> LossResult:
        """Negative (beta-)ELBO, batch mean, in one fused op.

        ``elbo = mean_B( mean_S sum_features log p(x | x_hat_s) - beta * KL(q(z|x) || N(0, I)) )``.
        A ``[B, ...]`` ``x_hat`` gets a sample axis; ``x`` is broadcast over
        the S samples without a copy.

        Returns:
            ``LossResult(objective=-elbo, diagnostics={"elbo", "log_likelihood",
            "kl_divergence"})``, diagnostics as Python floats (batch means),
            read from the device with one transfer.
        """
        likelihood = check.likelihood(likelihood)
        stats = functional.elbo_stats(x, vae_output.x_hat, vae_output.mu, vae_output.log_var, beta, likelihood)
        _, elbo, log_likelihood, kl = stats.detach().tolist()
        return LossResult(
            objective=stats[0],
            diagnostics={"elbo": elbo, "log_likelihood": log_likelihood, "kl_divergence": kl},
        )


# -------------------------------------------------------------------- AdaGVAE
def _pair(name: str, x: object) -> tuple[Tensor, Tensor]:
    if isinstance(x, Tensor) or not isinstance(x, Sequence):
        raise TypeError(f"{name}: expected a pair (x1, x2) of tensors, got {type(x).__name__}")
    if len(x) != 2:
        raise ValueError(f"{name}: expected a pair (x1, x2) of tensors, got {len(x)} items")
    x1, x2 = x
    check.tensor(f"{name}[0]", x1)
    check.tensor(f"{name}[1]", x2)
    if x1.shape[:1] != x2.shape[:1]:
        raise ValueError(
            f"{name}: x1 and x2 must have the same batch size, got {tuple(x1.shape)} and {tuple(x2.shape)}"
        )
    return x1, x2


class AdaGVAE(nn.Module):
    """Adaptive Group VAE (Locatello et al., 2020) around a :class:`VAE`.

    :meth:`forward` takes a pair ``(x1, x2)`` assumed to share some factors of
    variation. Both are encoded; per row, the dimensions whose
    ``KL(q1 || q2)`` is below ``(max + min) / 2`` are treated as shared and
    both posteriors are replaced there by their average
    (:func:`functional.adagvae_posterior`); then each adapted posterior is
    sampled and decoded. All parameters live in ``self.vae``; for single-image
    inference use ``model.vae.encode`` / ``model.vae.decode``.
    """

    def __init__(self, vae: VAE) -> None:
        super().__init__()
        if not isinstance(vae, VAE):
            raise TypeError(f"vae: expected a VAE, got {type(vae).__name__}")
        self.vae = vae

    def forward(self, x: tuple[Tensor, Tensor], S: int = 1) -> AdaGVAEOutput:
        """Ada-GVAE pass on ``x = (x1, x2)`` (each ``[B, ...]``), ``S`` samples each.

        Training mode samples the adapted posteriors (one fused sampling call
        for both); eval mode uses their means repeated ``S`` times.
        """
        x1, x2 = _pair("x", x)
        S = _num_samples(S)
        vae, head = self.vae, self.vae.sampling_layer
        f1, f2 = vae.encoder(x1), vae.encoder(x2)
        for name, f in (("x1", f1), ("x2", f2)):
            if f.dim() != 2:
                raise ValueError(f"encoder({name}): expected features of shape [B, F], got {tuple(f.shape)}")
        mu1, log_var1 = head.get_params(f1)
        mu2, log_var2 = head.get_params(f2)
        mu1, log_var1, mu2, log_var2 = functional.adagvae_posterior(mu1, log_var1, mu2, log_var2)
        if head.training:
            # One Philox launch for both posteriors.
            z = head.sample(torch.cat([mu1, mu2]), torch.cat([log_var1, log_var2]), S)
            z1, z2 = z.split(mu1.shape[0])
        else:
            z1, z2 = head.sample(mu1, log_var1, S), head.sample(mu2, log_var2, S)
        return AdaGVAEOutput(
            x1_hat=vae._decode(z1).x_hat,
            z1=z1,
            mu1=mu1,
            log_var1=log_var1,
            x2_hat=vae._decode(z2).x_hat,
            z2=z2,
            mu2=mu2,
            log_var2=log_var2,
        )

    def compute_loss(
        self,
        x: tuple[Tensor, Tensor],
        vae_output: AdaGVAEOutput,
        beta: float = 1,
        likelihood: str | LikelihoodType = LikelihoodType.GAUSSIAN,
    ) -> LossResult:
        """Sum of the two VAE objectives on the adapted posteriors.

        Returns:
            ``LossResult(objective, diagnostics)`` with ``objective`` the sum of
            both negative mean ELBOs and diagnostics ``"elbo"`` (sum of both
            mean ELBOs), ``"log_likelihood_x1"``, ``"log_likelihood_x2"``,
            ``"kl_divergence_x1"``, ``"kl_divergence_x2"`` (one host transfer).
        """
        x1, x2 = _pair("x", x)
        likelihood = check.likelihood(likelihood)
        out = vae_output
        stats1 = functional.elbo_stats(x1, out.x1_hat, out.mu1, out.log_var1, beta, likelihood)
        stats2 = functional.elbo_stats(x2, out.x2_hat, out.mu2, out.log_var2, beta, likelihood)
        (_, elbo1, ll1, kl1), (_, elbo2, ll2, kl2) = torch.stack([stats1, stats2]).detach().tolist()
        return LossResult(
            objective=stats1[0] + stats2[0],
            diagnostics={
                "elbo": elbo1 + elbo2,
                "log_likelihood_x1": ll1,
                "log_likelihood_x2": ll2,
                "kl_divergence_x1": kl1,
                "kl_divergence_x2": kl2,
            },
        )

    # ---------------------------------------------------------- build / state
    @property
    def built(self) -> bool:
        return self.vae.built

    def build(self, x: Tensor | tuple[Tensor, Tensor], *args: Any, **kwargs: Any) -> "AdaGVAE":
        """Materialises the VAE's lazy layers (``self.vae.build``) and returns ``self``.

        ``x`` may be a pair ``(x1, x2)`` (``x1`` is used) or one batch.
        """
        if not isinstance(x, Tensor):
            x = _pair("x", x)[0]
        self.vae.build(x, *args, **kwargs)
        return self

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):
        """``nn.Module.load_state_dict``, refused (``RuntimeError``) before :meth:`build`."""
        require_built(self, "load_state_dict")
        return super().load_state_dict(state_dict, strict=strict, assign=assign)
