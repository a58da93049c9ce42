"""nidl's beta-VAE loss (``nidl.losses.BetaVAELoss``, seed 002) on the fused ops.

:class:`BetaVAELoss` computes what nidl's class computes, term for term:

* reconstruction, summed over every element and divided by the batch size
  ``data.shape[0]``:

  - ``Normal``: ``mse_loss(p.loc, data, reduction="sum")`` (no 1/2, the scale
    is ignored) = ``-2 * sum(log_likelihood(data, p.loc, "gaussian"))``;
  - ``Laplace``: ``l1_loss(p.loc, data, reduction="sum")`` (scale ignored)
    = ``-sum(log_likelihood(data, p.loc, "laplace"))``;
  - ``Bernoulli``: ``binary_cross_entropy(p.probs, data, reduction="sum")``
    = ``-sum(log_likelihood(data, p.probs, "bernoulli_probs"))`` (logs
    clamped at -100, torch's gradient);

  each one :func:`~pyautoencoder_fast.functional.log_likelihood_sum` pass
  (elementwise term and sum fused) instead of an elementwise loss tensor;
* KL: ``KL(q || N(0, 1))`` from ``q.loc`` and ``q.scale``
  (``log_var = 2 log(scale)``), averaged over the batch (dim 0), then summed
  over the remaining dimensions, with
  :func:`~pyautoencoder_fast.functional.kl_diag_gaussian`;
* ``loss = rec_loss + beta * kl_loss``.

Which reconstruction applies: the distribution's type when ``p`` is a
``torch.distributions`` object (``Normal``/``Laplace``/``Bernoulli`` or a
subclass, whatever ``default_dist`` says); ``default_dist`` when ``p`` is a
tensor (the mean for normal/laplace, the success PROBABILITY, not logits,
for bernoulli). Nothing else is accepted; see
:class:`UnsupportedDistributionError`. A ``q`` that is not a ``Normal`` goes
to ``torch.distributions.kl_divergence`` as in nidl (same values, same
``NotImplementedError`` for pairs torch does not know).

Errors are nidl's: a tensor ``p`` is validated as nidl's wrapping of it into
a distribution would validate it (``ValueError`` for a NaN mean or a
probability outside [0, 1], while ``torch.distributions`` validation is on,
its default); with validation off, CPU probabilities outside [0, 1] raise
torch's ``RuntimeError`` (checked only when the sum came out NaN, so the
valid case costs nothing). Tensors are not wrapped into distribution
objects, and argument errors name the argument.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch import distributions as dist

from . import _validation as check
from . import functional

__all__ = ["BetaVAELoss", "UnsupportedDistributionError"]

DISTRIBUTIONS = ("normal", "laplace", "bernoulli")


class UnsupportedDistributionError(TypeError, ValueError):
    """``p`` (or ``q``) is not a distribution this loss handles.

    A ``TypeError`` (what nidl raises for a ``p`` of another type in
    ``__call__``) and a ``ValueError`` (what its documentation promises for
    an unsupported distribution), so code catching either keeps working.
    """


class BetaVAELoss:
    """Beta-VAE loss (Higgins et al., ICLR 2017): ``rec_loss + beta * kl_loss``.

    Args:
        beta: weight of the KL term (default 4.0).
        default_dist: ``"normal"`` (L2), ``"laplace"`` (L1) or
            ``"bernoulli"`` (cross-entropy): the decoder distribution assumed
            when ``p`` is given as a tensor.

    Raises:
        ValueError: ``default_dist`` is not one of the three names (exact,
            case-sensitive match, as in nidl), or ``beta`` is not finite.
        TypeError: ``beta`` is not a real number.
    """

    def __init__(self, beta: float = 4.0, default_dist: str = "normal"):
        if not isinstance(default_dist, str) or default_dist not in DISTRIBUTIONS:
            raise ValueError(
                f"default_dist: expected one of {', '.join(map(repr, DISTRIBUTIONS))}, got {default_dist!r}"
            )
        self.beta = check.finite_number("beta", beta)
        self.default_dist = default_dist

    def __repr__(self) -> str:
        return f"{type(self).__name__}(beta={self.beta}, default_dist={self.default_dist!r})"

    def __call__(self, x: Tensor, p: dist.Distribution | Tensor, q: dist.Distribution) -> dict[str, Tensor]:
        """The loss and its terms.

        Args:
            x: the input data ``[B, ...]``.
            p: the decoder distribution ``p(x | z)``: ``Normal``, ``Laplace``
                or ``Bernoulli``, or a tensor interpreted by ``default_dist``
                (mean, or probability of success for bernoulli).
            q: the encoder distribution ``q(z | x)``, a ``Normal``
                (anything with tensor ``loc`` and ``scale``, or an
                ``Independent`` wrapping one).

        Returns:
            ``{"rec_loss", "kl_loss", "loss"}``, 0-d tensors; gradients flow
            to ``x``, to ``p``'s parameters and to ``q``'s.

        Raises:
            UnsupportedDistributionError (a TypeError and ValueError): ``p``
                or ``q`` of an unsupported type.
            TypeError: ``x`` is not a floating-point tensor.
            ValueError: shapes that do not match (see
                :meth:`reconstruction_loss`), ``x`` without a batch dimension.
        """
        rec_loss = self._reconstruction(p, x, "x")
        kl_loss = self.kl_normal_loss(q)
        loss = torch.add(rec_loss, kl_loss, alpha=self.beta)  # rec + beta * kl, one op
        return {"rec_loss": rec_loss, "kl_loss": kl_loss, "loss": loss}

    def reconstruction_loss(self, p: dist.Distribution | Tensor, data: Tensor) -> Tensor:
        """Per-example reconstruction loss (negative log-likelihood, up to
        constants), summed over all elements and divided by ``data.shape[0]``.

        ``Normal``: squared error (``p.loc``); ``Laplace``: absolute error
        (``p.loc``); ``Bernoulli``: binary cross-entropy on ``p.probs``. A
        tensor ``p`` is read according to ``default_dist``.

        Raises:
            UnsupportedDistributionError: ``p`` is another type.
            ValueError: ``data`` is 0-d; ``p``'s mean does not broadcast with
                ``data``; ``p``'s probabilities do not have ``data``'s shape
                (as ``binary_cross_entropy`` requires).
        """
        return self._reconstruction(p, data, "data")

    def kl_normal_loss(self, q: dist.Distribution) -> Tensor:
        """``KL(q || N(0, 1))`` of a diagonal Normal, mean over dim 0, then sum.

        A ``Normal`` runs on the fused KL op; any other distribution goes to
        ``torch.distributions.kl_divergence`` (``NotImplementedError`` where
        torch has no formula, as in nidl).
        """
        if not isinstance(q, dist.Normal):
            # Whatever torch.distributions knows (or its NotImplementedError), as nidl.
            return dist.kl_divergence(q, dist.Normal(0, 1)).mean(dim=0).sum()
        loc, scale = q.loc, q.scale
        if loc.dim() == 0:  # nidl's mean(dim=0) of a 0-d KL is the KL itself
            loc, scale = loc[None], scale[None]
        kl = functional.kl_diag_gaussian(loc, 2.0 * torch.log(scale), reduce_sum=False)
        return kl.mean(0).sum()

    # ------------------------------------------------------------ internals
    def _reconstruction(self, p: object, data: object, data_name: str) -> Tensor:
        kind, param = self._decoder_parameter(p)
        data = check.real(data_name, data)
        param = check.floating("p", param)
        if data.dim() == 0:  # nidl divides by len(data): TypeError for a 0-d tensor
            raise TypeError(f"{data_name}: expected a batch dimension [B, ...], got a 0-d tensor")
        check.same_device(**{data_name: data, "p": param})
        if isinstance(p, Tensor) and dist.Distribution._validate_args:
            _validate_like_distribution(kind, param)
        if kind == "bernoulli":
            # F.binary_cross_entropy refuses a target of another size.
            if param.shape != data.shape:
                raise check.ShapeError(
                    f"p: probabilities of shape {tuple(param.shape)} do not match {data_name} "
                    f"of shape {tuple(data.shape)} (binary cross-entropy needs equal shapes)"
                )
            likelihood, factor = "bernoulli_probs", -1.0
            data_b = data
        else:
            # mse_loss / l1_loss broadcast their arguments.
            if param.shape != data.shape:
                try:
                    shape = torch.broadcast_shapes(param.shape, data.shape)
                except RuntimeError:
                    raise check.ShapeError(
                        f"p: mean of shape {tuple(param.shape)} does not broadcast with {data_name} "
                        f"of shape {tuple(data.shape)}"
                    ) from None
                param, data_b = param.expand(shape), data.expand(shape)
            else:
                data_b = data
            likelihood, factor = ("gaussian", -2.0) if kind == "normal" else ("laplace", -1.0)
        # Both [B, ...]: log_likelihood_sum gives [B, 1]; the batch size is
        # data's dim 0 (before any broadcast), as in nidl.
        total = functional._log_likelihood_sum(data_b, param, likelihood).sum()
        if kind == "bernoulli":
            _refuse_out_of_range(total, data, param)
        batch = data.shape[0]
        return total * (factor / batch if batch else math.nan)

    def _decoder_parameter(self, p: object) -> tuple[str, object]:
        """(kind, tensor) for the decoder: the mean or the probabilities."""
        if isinstance(p, Tensor):
            return self.default_dist, p
        if isinstance(p, dist.Bernoulli):
            return "bernoulli", p.probs
        if isinstance(p, dist.Normal):
            return "normal", p.loc
        if isinstance(p, dist.Laplace):
            return "laplace", p.loc
        raise UnsupportedDistributionError(
            "p: expected a torch.distributions Normal, Laplace or Bernoulli, or a tensor, "
            f"got {type(p).__name__}"
        )


_CONSTRAINTS = {"normal": ("loc", dist.constraints.real), "laplace": ("loc", dist.constraints.real),
                "bernoulli": ("probs", dist.constraints.unit_interval)}


def _validate_like_distribution(kind: str, param: Tensor) -> None:
    """The check nidl's ``Normal(p, 1)`` / ``Laplace(p, 1)`` /
    ``Bernoulli(probs=p)`` makes of a tensor ``p`` (``ValueError``)."""
    name, constraint = _CONSTRAINTS[kind]
    if not torch.compiler.is_compiling() and not bool(constraint.check(param).all()):
        raise ValueError(
            f"p: expected parameter {name} (tensor of shape {tuple(param.shape)}) of a {kind} distribution "
            f"to satisfy the constraint {constraint}, but found invalid values"
        )


def _refuse_out_of_range(total: Tensor, target: Tensor, probs: Tensor) -> None:
    """torch's ``binary_cross_entropy`` raises on CPU for probabilities or
    targets outside [0, 1] (NaN included); the fused sum is NaN then, so
    only a NaN sum is looked into (the valid case costs one scalar read)."""
    if probs.device.type != "cpu" or torch.compiler.is_compiling() or not bool(total.isnan()):
        return
    for name, t in (("p", probs), ("x", target)):
        if not bool(((t >= 0) & (t <= 1)).all()):
            raise RuntimeError(f"{name}: all elements should be between 0 and 1 (binary cross-entropy)")
