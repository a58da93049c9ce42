"""pyautoencoder's variational models (``pyautoencoder.variational``) on the fused ops.

* :class:`FullyFactorizedGaussian`: the Gaussian posterior head (lazy linear
  ``mu`` and ``log_var`` layers) and reparameterized sampling;
* :class:`VAE`: (beta-)VAE whose loss is one fused op
  (:func:`functional.elbo_stats`);
* :class:`AdaGVAE`: Ada-GVAE (Locatello et al., 2020) wrapping a :class:`VAE`.

Sampling follows the seed: in training mode ``z`` is sampled, in eval mode it
is the posterior mean repeated ``S`` times. The optional ``sample`` argument
of pyautoencoder 2.x is accepted too: ``sample=True`` always samples,
``sample=False`` gives ``z = mu`` as ``[B, 1, D_z]`` (and refuses ``S != 1``);
``None`` (the default) keeps the seed's mode rule.

Sampling uses :func:`functional.reparameterize`: the noise comes from a
Philox stream seeded from torch's generator, so ``torch.manual_seed`` makes
runs reproducible and both backends draw the same ``z``. It is not the
stream ``torch.randn`` would give, so samples differ numerically from
pyautoencoder's for the same seed (same distribution).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from . import _likelihoods, functional
from . import _validation as check
from .base import BaseAutoencoder, ModelOutput, model_output, module_argument, require_built
from ._likelihoods import LikelihoodType
from ._loss_result import LossResult, read_diagnostics

__all__ = [
    "AdaGVAE",
    "AdaGVAEOutput",
    "FullyFactorizedGaussian",
    "VAE",
    "VAEDecodeOutput",
    "VAEEncodeOutput",
    "VAEOutput",
]


def _latent_dim(latent_dim: object) -> int:
    return check.positive_int("latent_dim", latent_dim)


def _sampling(sample: object, S: int, training: bool) -> bool:
    """Whether to draw samples: ``sample`` if given (pyautoencoder 2.x), else
    the seed's rule (sample in training mode, the mean in eval mode)."""
    if sample is None:
        return training
    if not isinstance(sample, bool):
        raise TypeError(f"sample: expected None, True or False, got {type(sample).__name__}")
    if not sample and S != 1:
        raise ValueError(
            f"S = {S} Monte Carlo samples were requested with sample=False. Without sampling z is "
            "the posterior mean, so S must be 1; pass sample=True to draw S samples."
        )
    return sample


def _is_posterior_mean(z: Tensor, mu: Tensor) -> bool:
    """Whether z is mu itself (the forward's z without sampling, a view of
    mu) rather than samples. Read from the storage, so not under
    torch.compile, where it is taken to be samples."""
    if torch.compiler.is_compiling() or not isinstance(z, Tensor) or not isinstance(mu, Tensor):
        return False
    return (mu.numel() > 0 and z.device == mu.device
            and z.untyped_storage().data_ptr() == mu.untyped_storage().data_ptr())


def _estimator(estimator: object) -> str:
    """compute_loss's estimator: "elbo" (the default) or "iwae"."""
    if estimator not in ("elbo", "iwae"):
        raise ValueError(f"estimator: expected 'elbo' or 'iwae', got {estimator!r}")
    return estimator


# ------------------------------------------------------------------ outputs
@dataclass(slots=True, repr=False)
class VAEEncodeOutput(ModelOutput):
    """Encoder stage: samples ``z`` ``[B, S, D_z]``, posterior ``mu`` and ``log_var`` ``[B, D_z]``."""

    z: Tensor
    mu: Tensor
    log_var: Tensor


@dataclass(slots=True, repr=False)
class VAEDecodeOutput(ModelOutput):
    """Decoder stage: reconstructions (or logits) ``x_hat`` ``[B, S, ...]``."""

    x_hat: Tensor


@dataclass(slots=True, repr=False)
class VAEOutput(ModelOutput):
    """Full VAE pass: ``x_hat`` ``[B, S, ...]``, ``z`` ``[B, S, D_z]``, ``mu`` and ``log_var`` ``[B, D_z]``."""

    x_hat: Tensor
    z: Tensor
    mu: Tensor
    log_var: Tensor


@dataclass(slots=True, repr=False)
class AdaGVAEOutput(ModelOutput):
    """Ada-GVAE pass on a pair ``(x1, x2)``: one :class:`VAEOutput` per input,
    each with the adapted posterior (``mu``, ``log_var``) the loss uses."""

    output1: VAEOutput
    output2: VAEOutput


# ------------------------------------------------------------ sampling layer
class FullyFactorizedGaussian(nn.Module):
    """Diagonal Gaussian posterior head ``q(z | x) = N(mu, diag(exp(log_var)))``.

    ``mu`` and ``log_var`` are ``nn.LazyLinear(latent_dim)`` layers on the
    encoder features ``x`` ``[B, F]``.
    """

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = _latent_dim(latent_dim)
        self.mu = nn.LazyLinear(self.latent_dim)
        self.log_var = nn.LazyLinear(self.latent_dim)

    def get_params(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(mu, log_var)`` of the posterior for features ``x`` ``[B, F]``."""
        check.tensor("x", x)
        if x.dim() != 2:
            raise check.ShapeError(
                f"FullyFactorizedGaussian expects encoder features of shape [B, F], got {tuple(x.shape)} "
                "(end the encoder with nn.Flatten())"
            )
        return self.mu(x), self.log_var(x)

    def forward(self, x: Tensor, S: int = 1, sample: bool | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """``(z, mu, log_var)``: ``z`` ``[B, S, D]``, ``mu`` and ``log_var`` ``[B, D]``.

        ``sample=None`` (default): in training mode ``z = mu + exp(0.5 *
        log_var) * eps`` (reparameterized, differentiable in ``mu`` and
        ``log_var``), in eval mode ``z`` is ``mu`` repeated ``S`` times (a
        broadcast view). ``sample=True`` samples in either mode;
        ``sample=False`` gives ``z = mu`` as ``[B, 1, D]`` and requires ``S == 1``.
        ``S < 1`` raises ``ValueError("S must be >= 1. ...")``.
        """
        S = check.num_samples(S)
        draw = _sampling(sample, S, self.training)
        mu, log_var = self.get_params(x)
        z = self._reparametrize(mu, log_var, S) if draw else mu.unsqueeze(1).expand(-1, S, -1)
        return z, mu, log_var

    def _reparametrize(self, mu: Tensor, log_var: Tensor, S: int = 1) -> Tensor:
        """``S`` reparameterized samples ``[B, S, D]`` of ``N(mu, exp(log_var))``
        (fused Philox kernel), in any mode."""
        return functional.reparameterize(mu, log_var, check.num_samples(S))

    def reparametrize(self, mu: Tensor, log_var: Tensor, S: int = 1) -> Tensor:
        """pyautoencoder 2.x's name for :meth:`_reparametrize`."""
        return self._reparametrize(mu, log_var, S)


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
        self.encoder = module_argument("encoder", encoder)
        self.decoder = module_argument("decoder", decoder)
        self.latent_dim = _latent_dim(latent_dim)
        self.sampling_layer = FullyFactorizedGaussian(self.latent_dim)

    def _encode(self, x: Tensor, S: int = 1, sample: bool | None = None) -> VAEEncodeOutput:
        """Posterior and ``S`` latent codes; ``sample`` as in
        :meth:`FullyFactorizedGaussian.forward`."""
        z, mu, log_var = self.sampling_layer(self.encoder(x), S, sample)
        return VAEEncodeOutput(z=z, mu=mu, log_var=log_var)

    def encode(self, x: Tensor, S: int = 1, sample: bool | None = None) -> VAEEncodeOutput:
        """:meth:`_encode` under ``torch.inference_mode()``. By default the
        seed's mode rule applies (eval mode: ``z`` is the mean repeated ``S``
        times); ``sample=True``/``False`` as in pyautoencoder 2.x."""
        require_built(self, "encode")
        with torch.inference_mode():
            return self._encode(x, S) if sample is None else self._encode(x, S, sample=sample)

    def _decode(self, z: Tensor) -> VAEDecodeOutput:
        """``z`` ``[B, S, D_z]`` -> ``x_hat`` ``[B, S, ...]`` (decoder run on ``[B*S, D_z]``).

        A 2-D ``z`` ``[B, D_z]`` (e.g. prior samples) is decoded as it is, to
        ``[B, ...]``.
        """
        check.tensor("z", z)
        if z.dim() not in (2, 3) or z.shape[-1] != self.latent_dim:
            raise check.ShapeError(
                f"z: expected shape [B, S, D_z] (or [B, D_z]) with D_z = {self.latent_dim}, got {tuple(z.shape)}"
            )
        if z.dim() == 2:
            return VAEDecodeOutput(x_hat=self.decoder(z))
        batch, samples = z.shape[0], z.shape[1]
        x_hat = self.decoder(z.reshape(batch * samples, z.shape[2]))
        return VAEDecodeOutput(x_hat=x_hat.reshape(batch, samples, *x_hat.shape[1:]))

    def forward(self, x: Tensor, S: int = 1, sample: bool | None = None) -> VAEOutput:
        """Encode, draw ``S`` samples (see ``sample`` in
        :meth:`FullyFactorizedGaussian.forward`), decode:
        ``VAEOutput(x_hat, z, mu, log_var)``."""
        enc = self._encode(x, S) if sample is None else self._encode(x, S, sample=sample)
        return VAEOutput(x_hat=self._decode(enc.z).x_hat, z=enc.z, mu=enc.mu, log_var=enc.log_var)

    def compute_loss(
        self,
        x: Tensor,
        vae_output: VAEOutput | None = None,
        beta: float = 1,
        likelihood: str | LikelihoodType = LikelihoodType.GAUSSIAN,
        *,
        output: VAEOutput | None = None,
        x_log_var: Tensor | None = None,
        estimator: str = "elbo",
    ) -> LossResult:
        """Negative (beta-)ELBO, batch mean, in one fused op.

        ``elbo = mean_B( mean_S sum_features log p(x | x_hat_s) - beta * KL(q(z|x) || N(0, I)) )``
        (:func:`functional.elbo_stats`).

        Args:
            x: ground truth ``[B, ...]``; broadcast over the S samples
                without a copy.
            vae_output: output of :meth:`forward`; ``x_hat`` (``[B, S, ...]``,
                or ``[B, ...]``, which gets a sample axis; logits for
                Bernoulli), ``mu`` and ``log_var`` (``[B, D_z]``) are used.
                ``output=`` is accepted as well (pyautoencoder 2.x's name).
            beta: weight of the KL term, a finite number (NaN or infinity
                raises ``ValueError``).
            likelihood: ``"gaussian"`` (unit variance, without the constant
                ``-0.5 * log(2 * pi)`` per element, as in pyautoencoder),
                ``"bernoulli"`` (``x_hat`` are logits), ``"laplace"`` or
                ``"bernoulli_probs"`` (``x_hat`` are probabilities), or a
                :class:`LikelihoodType`; anything else raises ``ValueError``.
            x_log_var: keyword only: the Gaussian decoder's learned
                log-variance, broadcastable to ``x_hat`` (per element, per
                feature, or a 0-d scalar); the Gaussian term becomes
                ``-0.5 * (x_log_var + (x - x_hat)**2 * exp(-x_log_var))``.
            estimator: keyword only: ``"elbo"`` (the default) or ``"iwae"``,
                the importance-weighted bound of the output's S samples
                (:func:`functional.iwae_bound`; ``z`` must be samples of
                ``q``, as in training mode or with ``sample=True``: the
                mean that eval mode gives instead raises ``ValueError``
                (checked in eager mode); ``beta`` must be 1).

        Returns:
            ``LossResult(objective=-elbo, diagnostics={"elbo", "log_likelihood",
            "kl_divergence"})``: ``objective`` a 0-d tensor, differentiable;
            the diagnostics Python floats (batch means; ``log_likelihood``
            averaged over S, ``kl_divergence`` not weighted by ``beta``),
            read from the device with one transfer. With ``estimator="iwae"``:
            ``objective = -mean_b iwae_bound`` and diagnostics
            ``{"iwae_bound", "num_samples"}``, which say which estimator ran.
        """
        out = model_output("vae_output", vae_output, output)
        likelihood = _likelihoods.canonical_likelihood(likelihood)
        if _estimator(estimator) == "iwae":
            return self._iwae_loss(x, out, beta, likelihood, x_log_var)
        stats = functional._elbo_stats(x, out.x_hat, out.mu, out.log_var, beta, likelihood, x_log_var)
        _, elbo, log_likelihood, kl = read_diagnostics(stats)  # one transfer for the three diagnostics
        return LossResult(
            objective=stats[0],
            diagnostics={"elbo": elbo, "log_likelihood": log_likelihood, "kl_divergence": kl},
        )

    def _iwae_loss(self, x: Tensor, out: VAEOutput, beta: float, likelihood: str,
                   x_log_var: Tensor | None) -> LossResult:
        """compute_loss(estimator="iwae"): -mean_b iwae_bound, one fused op."""
        beta = check.finite_number("beta", beta)
        if beta != 1:
            raise ValueError(f"beta: estimator='iwae' has no KL term to weight (beta must be 1), got {beta}")
        if _is_posterior_mean(out.z, out.mu):
            raise ValueError(
                "estimator='iwae': vae_output.z is the posterior mean (a model in eval mode draws no samples), "
                "and the bound needs samples of q(z|x); run the forward in training mode or with sample=True, "
                "or use log_likelihood_estimate() to evaluate"
            )
        bound = functional._iwae_bound(x, out.x_hat, out.z, out.mu, out.log_var, likelihood, x_log_var)
        objective = -bound.mean()
        samples = out.x_hat.shape[1] if out.x_hat.dim() == x.dim() + 1 else 1
        (bound_mean,) = read_diagnostics(-objective.reshape(1))
        return LossResult(objective=objective, diagnostics={"iwae_bound": bound_mean, "num_samples": float(samples)})

    @torch.no_grad()
    def log_likelihood_estimate(
        self,
        x: Tensor,
        S: int = 5000,
        chunk: int = 100,
        likelihood: str | LikelihoodType = LikelihoodType.GAUSSIAN,
        *,
        x_log_var: Tensor | None = None,
        progress: bool = False,
    ) -> Tensor:
        """Importance-sampled estimate of log p(x) per example, in nats.

        ``log p(x) ~ log (1/S) sum_s p(x | z_s) p(z_s) / q(z_s | x)`` with
        ``z_s ~ q(z | x)`` (the IWAE bound with S samples, Burda et al. 2016),
        the standard way papers report a VAE's test log-likelihood. The
        constants the losses leave out are included, so the numbers compare
        with published ones: ``-0.5 log(2 pi)`` per feature for
        ``"gaussian"`` (learned variance or not) and ``-log 2`` per feature
        for ``"laplace"`` (Bernoulli likelihoods have none).

        The S samples are drawn (always sampled, in any mode), decoded and
        weighed ``chunk`` at a time, and the chunks are combined with a
        running log-sum-exp: memory is one chunk's ``x_hat`` ``[B, chunk,
        ...]``, never S of them. Runs under ``torch.no_grad()``.

        Args:
            x: a batch ``[B, ...]``.
            S: importance samples per example (papers use 5000).
            chunk: samples decoded at once.
            likelihood: the decoder's likelihood, as in :meth:`compute_loss`.
            x_log_var: the Gaussian's learned log-variance, broadcastable to
                ``[B, chunk, ...]`` (per feature, or a 0-d scalar).
            progress: print the samples done to stderr as the chunks finish.

        Returns:
            ``[B]`` log p(x) estimates (nats); ``.mean()`` is the usual
            test-set number.
        """
        require_built(self, "log_likelihood_estimate")
        S = check.positive_int("S", S)
        chunk = check.positive_int("chunk", chunk)
        likelihood = _likelihoods.canonical_likelihood(likelihood)
        mu, log_var = self.sampling_layer.get_params(self.encoder(x))
        total = None  # log sum_s of the weights so far, [B]
        for start in range(0, S, chunk):
            n = min(chunk, S - start)
            z = functional.reparameterize(mu, log_var, n)
            x_hat = self._decode(z).x_hat
            part = functional._iwae_bound(x, x_hat, z, mu, log_var, likelihood, x_log_var) + math.log(n)
            del z, x_hat  # (before the next chunk is decoded: one chunk alive at a time)
            total = part if total is None else torch.logaddexp(total, part)
            if progress:
                print(f"\rlog_likelihood_estimate: {start + n}/{S} samples", end="", file=sys.stderr, flush=True)
        if progress:
            print(file=sys.stderr)
        features = math.prod(x.shape[1:])
        constant = {"gaussian": -0.5 * math.log(2 * math.pi), "laplace": -math.log(2.0)}.get(likelihood, 0.0)
        return total - math.log(S) + constant * features

# -------------------------------------------------------------------- AdaGVAE
def _pair(name: str, x: object) -> tuple[Tensor, Tensor]:
    """``x`` unpacked into two tensors of one batch size (a tuple, a list, or
    anything else that unpacks to two, as pyautoencoder's ``x1, x2 = x``)."""
    try:
        x1, x2 = x  # type: ignore[misc]
    except TypeError:
        raise TypeError(f"{name}: expected a pair (x1, x2) of tensors, got {type(x).__name__}") from None
    except ValueError:  # unpacked to more or fewer than two items
        raise ValueError(f"{name}: expected a pair (x1, x2) of tensors, got a {type(x).__name__} of another length") from None
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
    sampled and decoded, in training and in eval mode alike (as in the seed).
    All parameters live in ``self.vae``; for single-image inference use
    ``model.vae.encode`` / ``model.vae.decode``.
    """

    def __init__(self, vae: VAE) -> None:
        super().__init__()
        if not isinstance(vae, VAE):
            raise TypeError(f"vae: expected a VAE, got {type(vae).__name__}")
        self.vae = vae

    def _encode_pair(self, x1: Tensor, x2: Tensor, S: int = 1) -> tuple[VAEEncodeOutput, VAEEncodeOutput]:
        """Both posteriors, adapted, and ``S`` samples of each: ``(enc1, enc2)``
        with ``z`` ``[B, S, D_z]`` and the adapted ``mu``, ``log_var`` ``[B, D_z]``."""
        S = check.num_samples(S)
        vae, head = self.vae, self.vae.sampling_layer
        mu1, log_var1 = head.get_params(vae.encoder(x1))
        mu2, log_var2 = head.get_params(vae.encoder(x2))
        mu1, log_var1, mu2, log_var2 = functional.adagvae_posterior(mu1, log_var1, mu2, log_var2)
        # One sampling launch for both posteriors.
        z1, z2 = head._reparametrize(torch.cat([mu1, mu2]), torch.cat([log_var1, log_var2]), S).split(mu1.shape[0])
        return (
            VAEEncodeOutput(z=z1, mu=mu1, log_var=log_var1),
            VAEEncodeOutput(z=z2, mu=mu2, log_var=log_var2),
        )

    def forward(self, x: tuple[Tensor, Tensor], S: int = 1) -> AdaGVAEOutput:
        """Ada-GVAE pass on ``x = (x1, x2)`` (each ``[B, ...]``), ``S`` samples
        each: :meth:`_encode_pair`, then the VAE's decoder on each."""
        x1, x2 = _pair("x", x)
        enc1, enc2 = self._encode_pair(x1, x2, S)
        return AdaGVAEOutput(
            output1=VAEOutput(x_hat=self.vae._decode(enc1.z).x_hat, z=enc1.z, mu=enc1.mu, log_var=enc1.log_var),
            output2=VAEOutput(x_hat=self.vae._decode(enc2.z).x_hat, z=enc2.z, mu=enc2.mu, log_var=enc2.log_var),
        )

    def compute_loss(
        self,
        x: tuple[Tensor, Tensor],
        vae_output: AdaGVAEOutput | None = None,
        beta: float = 1,
        likelihood: str | LikelihoodType = LikelihoodType.GAUSSIAN,
        *,
        output: AdaGVAEOutput | None = None,
    ) -> LossResult:
        """Sum of the two VAE objectives on the adapted posteriors.

        Args:
            x: the pair ``(x1, x2)`` passed to :meth:`forward`, each ``[B, ...]``.
            vae_output: output of :meth:`forward`; each of ``output1`` and
                ``output2`` is scored against its input as in
                :meth:`VAE.compute_loss`. ``output=`` is accepted as well
                (pyautoencoder 2.x's name).
            beta: weight of the KL terms, a finite number.
            likelihood: as in :meth:`VAE.compute_loss`.

        Returns:
            ``LossResult(objective, diagnostics)`` with ``objective`` the sum of
            both negative mean ELBOs and diagnostics ``"elbo"`` (sum of both
            mean ELBOs), ``"log_likelihood_x1"``, ``"log_likelihood_x2"``,
            ``"kl_divergence_x1"``, ``"kl_divergence_x2"`` (floats, one host
            transfer).
        """
        out = model_output("vae_output", vae_output, output)
        x1, x2 = _pair("x", x)
        likelihood = _likelihoods.canonical_likelihood(likelihood)
        o1, o2 = out.output1, out.output2
        stats1 = functional._elbo_stats(x1, o1.x_hat, o1.mu, o1.log_var, beta, likelihood, None)
        stats2 = functional._elbo_stats(x2, o2.x_hat, o2.mu, o2.log_var, beta, likelihood, None)
        _, elbo1, ll1, kl1, _, elbo2, ll2, kl2 = read_diagnostics(torch.cat([stats1, stats2]))
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
        """Whether the wrapped VAE has been built (its lazy layers sized)."""
        return self.vae.built

    def build(self, input_sample: Tensor | tuple[Tensor, Tensor]) -> "AdaGVAE":
        """Materialises the VAE's lazy layers (``self.vae.build``) and returns ``self``.

        ``input_sample`` may be one batch or a pair ``(x1, x2)`` (``x1`` is used).
        """
        if not isinstance(input_sample, Tensor):
            input_sample = _pair("input_sample", input_sample)[0]
        self.vae.build(input_sample)
        return self

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):
        """``nn.Module.load_state_dict``, refused before :meth:`build`:
        ``RuntimeError("Call build() before load_state_dict(). ...")``."""
        require_built(self, "load_state_dict")
        return super().load_state_dict(state_dict, strict=strict, assign=assign)
