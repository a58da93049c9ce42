"""scvi-tools on the fused ops: its count distributions and likelihood
functions (``scvi.distributions``), the scVI loss in one call
(:func:`scvi_loss`), its loss record (``scvi.module.base.LossOutput``, seed
004) and a bridge between that record and this library's
:class:`~pyautoencoder_fast.loss.LossResult`.

Drop-ins (scvi-tools 1.5.1's names, signatures and results; change the
import, keep the code): ``log_nb_positive``, ``log_zinb_positive``,
``NegativeBinomial``, ``ZeroInflatedNegativeBinomial``, ``Poisson``. Their
log-likelihoods run the fused ``count_log_likelihood`` op (one pass, the
derivatives written in the forward, float32-accurate at any dispersion) and
never read the device unless ``validate_args`` asks for it. Where they
knowingly differ from scvi-tools: see the README.

The loss record:

:class:`LossOutput` behaves as scvi-tools' dataclass (fields, defaults and
the post-init rules in order):

1. a dict ``loss`` is summed (:meth:`LossOutput.dict_sum`);
2. ``n_obs_minibatch`` and ``reconstruction_loss`` both missing -> ``ValueError``;
3. a missing ``reconstruction_loss`` / ``kl_local`` / ``kl_global`` becomes
   ``0 * loss``;
4. each of those three becomes a dict (``{"reconstruction_loss": t}``,
   ``{"kl_local": t}``, ``{"kl_global": t}``) unless it is one;
5. ``reconstruction_loss_sum = dict_sum(reconstruction_loss).sum()``,
   ``kl_local_sum = dict_sum(kl_local).sum()``,
   ``kl_global_sum = dict_sum(kl_global)`` (not summed further); sums passed
   in are overwritten;
6. ``n_obs_minibatch`` defaults to dim 0 of the first reconstruction value;
7. ``classification_loss`` without ``logits`` or ``true_labels`` -> ``ValueError``.

Only torch tensors are accepted (scvi-tools also takes JAX arrays), and
argument types are checked up front (``TypeError``/``ValueError`` naming the
field), where scvi-tools would fail later or not at all: an empty dict, or a
0-d reconstruction loss with no ``n_obs_minibatch``, raises ``ValueError``.

The two loss records, and how to go between them:

* :class:`~pyautoencoder_fast.loss.LossResult` (pyautoencoder, what the
  models' ``compute_loss`` returns): the objective and a dict of Python
  floats, for a plain training loop;
* :class:`LossOutput` (scvi-tools): the loss and its per-observation terms
  as tensors, for a scvi-style training loop that aggregates them per epoch.

:meth:`LossOutput.from_loss_result` wraps a ``LossResult`` (the objective
stays in the autograd graph; the float diagnostics become 0-d CPU tensors in
``extra_metrics``); :meth:`LossOutput.to_loss_result` goes back, reading
every scalar with one host transfer.
"""

from __future__ import annotations

import dataclasses
import numbers
import operator
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Union

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Distribution, Gamma, constraints
from torch.distributions import Poisson as _TorchPoisson
from torch.distributions.utils import broadcast_all, lazy_property, logits_to_probs, probs_to_logits

from . import functional
from ._loss_result import LossResult

__all__ = [
    "LossOutput",
    "NegativeBinomial",
    "Poisson",
    "ZeroInflatedNegativeBinomial",
    "log_nb_positive",
    "log_zinb_positive",
    "scvi_loss",
]

LossRecord = Union[dict[str, Tensor], Tensor]

_TERMS = ("reconstruction_loss", "kl_local", "kl_global")
_SUM_KEYS = ("reconstruction_loss_sum", "kl_local_sum", "kl_global_sum")


def _check_record(name: str, value: object, *, optional: bool = True) -> None:
    """A tensor, or a non-empty dict of tensors (None where optional)."""
    if value is None and optional:
        return
    if isinstance(value, Tensor):
        return
    if isinstance(value, dict):
        if not value:
            raise ValueError(f"{name}: expected a tensor or a non-empty dict of tensors, got an empty dict")
        for key, item in value.items():
            if not isinstance(item, Tensor):
                raise TypeError(f"{name}[{key!r}]: expected a torch.Tensor, got {type(item).__name__}")
        return
    what = "a tensor or a dict of tensors" + (" (or None)" if optional else "")
    raise TypeError(f"{name}: expected {what}, got {type(value).__name__}")


def _check_optional_tensor(name: str, value: object) -> None:
    if value is not None and not isinstance(value, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor or None, got {type(value).__name__}")


@dataclass
class LossOutput:
    """Loss signature for models (scvi-tools' ``LossOutput``).

    Records the minibatch loss used for backpropagation and the ELBO's
    components used for logging and early stopping.

    Args:
        loss: the minibatch loss (a one-element tensor), or a dict of them
            that is summed.
        reconstruction_loss: per-observation reconstruction loss ``[B, ...]``
            (tensor, stored as ``{"reconstruction_loss": t}``, or a dict).
        kl_local: per-observation KL divergence (stored as ``{"kl_local": t}``
            or given as a dict).
        kl_global: global KL term (stored as ``{"kl_global": t}`` or a dict).
        classification_loss: classification loss; requires ``logits`` and
            ``true_labels``.
        logits, true_labels: for classification.
        extra_metrics: further metrics (name -> tensor), logged as they are.
        n_obs_minibatch: observations in the minibatch; inferred from dim 0
            of the first reconstruction value when not given.
        reconstruction_loss_sum, kl_local_sum, kl_global_sum: always
            recomputed after init (values passed in are overwritten).

    Example:
        >>> out = LossOutput(loss=loss, reconstruction_loss=rec, kl_local=kl,
        ...                  extra_metrics={"elbo": elbo})
    """

    loss: LossRecord
    reconstruction_loss: LossRecord | None = None
    kl_local: LossRecord | None = None
    kl_global: LossRecord | None = None
    classification_loss: LossRecord | None = None
    logits: Tensor | None = None
    true_labels: Tensor | None = None
    extra_metrics: dict[str, Tensor] | None = field(default_factory=dict)
    n_obs_minibatch: int | None = None
    reconstruction_loss_sum: Tensor = field(default=None)
    kl_local_sum: Tensor = field(default=None)
    kl_global_sum: Tensor = field(default=None)

    def __post_init__(self) -> None:
        self._check_types()
        # 1. a dict loss is summed
        self.loss = self.dict_sum(self.loss)
        # 2. something must give the minibatch size
        if self.n_obs_minibatch is None and self.reconstruction_loss is None:
            raise ValueError("n_obs_minibatch: must be given when reconstruction_loss is not (either one is required)")
        # 3. missing terms are 0 * loss (one tensor shared, as in scvi-tools)
        if any(getattr(self, name) is None for name in _TERMS):
            default = 0 * self.loss
            for name in _TERMS:
                if getattr(self, name) is None:
                    setattr(self, name, default)
        # 4. tensors -> {name: tensor}
        for name in _TERMS:
            value = getattr(self, name)
            if not isinstance(value, dict):
                setattr(self, name, {name: value})
        # 5. the sums (always recomputed)
        self.reconstruction_loss_sum = self.dict_sum(self.reconstruction_loss).sum()
        self.kl_local_sum = self.dict_sum(self.kl_local).sum()
        self.kl_global_sum = self.dict_sum(self.kl_global)
        # 6. minibatch size from the first reconstruction value
        if self.n_obs_minibatch is None:
            first = next(iter(self.reconstruction_loss.values()))
            if first.dim() == 0:
                raise ValueError(
                    "reconstruction_loss: a 0-d value has no observation dimension; pass a per-observation "
                    "tensor [B, ...] or n_obs_minibatch"
                )
            self.n_obs_minibatch = first.shape[0]
        # 7. classification needs its inputs
        if self.classification_loss is not None and (self.logits is None or self.true_labels is None):
            raise ValueError("classification_loss: `logits` and `true_labels` must be given with it")

    def _check_types(self) -> None:
        _check_record("loss", self.loss, optional=False)
        for name in (*_TERMS, "classification_loss"):
            _check_record(name, getattr(self, name))
        _check_optional_tensor("logits", self.logits)
        _check_optional_tensor("true_labels", self.true_labels)
        if self.extra_metrics is not None and not isinstance(self.extra_metrics, dict):
            raise TypeError(f"extra_metrics: expected a dict or None, got {type(self.extra_metrics).__name__}")
        if self.n_obs_minibatch is not None:
            if isinstance(self.n_obs_minibatch, bool):
                raise TypeError("n_obs_minibatch: expected an int or None, got bool")
            try:
                self.n_obs_minibatch = operator.index(self.n_obs_minibatch)
            except TypeError:
                raise TypeError(
                    f"n_obs_minibatch: expected an int or None, got {type(self.n_obs_minibatch).__name__}"
                ) from None
            if self.n_obs_minibatch < 0:
                raise ValueError(f"n_obs_minibatch: expected a count >= 0, got {self.n_obs_minibatch}")

    # --------------------------------------------------------------- API
    @staticmethod
    def dict_sum(dictionary: Mapping[str, Tensor] | Tensor) -> Any:
        """Sum of a dict's values (0 for an empty dict); anything else unchanged.

        A one-entry dict gives its value itself (``0 + t`` equals ``t``).
        """
        if not isinstance(dictionary, dict):
            return dictionary
        values = list(dictionary.values())
        if not values:
            return 0
        total = values[0]
        for value in values[1:]:
            total = total + value
        return total

    @property
    def extra_metrics_keys(self) -> Iterable[str]:
        """Keys for extra metrics (empty when ``extra_metrics`` is None)."""
        return (self.extra_metrics if self.extra_metrics is not None else {}).keys()

    def replace(self, **updates: Any) -> "LossOutput":
        """A new object with the given fields replaced; the others are carried
        over as stored (tensors already wrapped into dicts, and the
        ``n_obs_minibatch`` already inferred), and the post-init rules run
        again (the sums are recomputed).

        Raises:
            TypeError: an unknown field name.
        """
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(updates) - names)
        if unknown:
            raise TypeError(f"replace: unknown field(s) {', '.join(unknown)}; fields are {', '.join(sorted(names))}")
        return dataclasses.replace(self, **updates)

    # ------------------------------------------------------ LossResult bridge
    @classmethod
    def from_loss_result(
        cls,
        result: LossResult,
        *,
        reconstruction_loss: LossRecord | None = None,
        kl_local: LossRecord | None = None,
        kl_global: LossRecord | None = None,
        n_obs_minibatch: int | None = None,
        extra_metrics: Mapping[str, Tensor] | None = None,
    ) -> "LossOutput":
        """A :class:`LossOutput` from a model's ``compute_loss`` result.

        ``loss`` is ``result.objective`` (same tensor: gradients flow);
        ``result.diagnostics`` become ``extra_metrics`` as 0-d float64 CPU
        tensors (built from one list, no device transfer), updated with
        ``extra_metrics`` if given. A ``LossResult`` holds batch means only,
        so the per-observation terms and the minibatch size come from the
        arguments: give ``reconstruction_loss`` (``[B]``) or
        ``n_obs_minibatch``.

        Raises:
            TypeError: ``result`` is not a ``LossResult``, or a field of the
                wrong type.
            ValueError: neither ``reconstruction_loss`` nor
                ``n_obs_minibatch`` given.
        """
        if not isinstance(result, LossResult):
            raise TypeError(f"result: expected a pyautoencoder_fast LossResult, got {type(result).__name__}")
        if reconstruction_loss is None and n_obs_minibatch is None:
            raise ValueError(
                "from_loss_result: pass reconstruction_loss (per observation) or n_obs_minibatch; "
                "a LossResult carries neither"
            )
        if extra_metrics is not None and not isinstance(extra_metrics, Mapping):
            raise TypeError(f"extra_metrics: expected a dict or None, got {type(extra_metrics).__name__}")
        diagnostics = result.diagnostics
        metrics: dict[str, Tensor] = {}
        if diagnostics:
            values = torch.tensor([float(v) for v in diagnostics.values()], dtype=torch.float64)
            metrics = dict(zip(diagnostics.keys(), values.unbind()))
        if extra_metrics:
            metrics.update(extra_metrics)
        return cls(
            loss=result.objective,
            reconstruction_loss=reconstruction_loss,
            kl_local=kl_local,
            kl_global=kl_global,
            extra_metrics=metrics,
            n_obs_minibatch=n_obs_minibatch,
        )

    def to_loss_result(self) -> LossResult:
        """This record as a pyautoencoder :class:`LossResult`.

        ``objective`` is ``loss`` (same tensor). ``diagnostics`` (Python
        floats, read with one host transfer): ``reconstruction_loss_sum``,
        ``kl_local_sum``, ``kl_global_sum`` (summed if it has several
        elements), ``classification_loss`` (summed) when present,
        ``n_obs_minibatch``, and every extra metric that is a number or a
        one-element tensor (others, e.g. per-observation tensors or dicts, are
        left out).

        Raises:
            ValueError: an extra metric named like one of the standard
                diagnostics.
        """
        entries: list[tuple[str, Tensor | float]] = [
            ("reconstruction_loss_sum", self.reconstruction_loss_sum),
            ("kl_local_sum", self.kl_local_sum),
            ("kl_global_sum", self.kl_global_sum),
        ]
        if self.classification_loss is not None:
            entries.append(("classification_loss", self.dict_sum(self.classification_loss)))
        entries.append(("n_obs_minibatch", float(self.n_obs_minibatch)))
        standard = {name for name, _ in entries}
        for name, value in (self.extra_metrics or {}).items():
            if name in standard:
                raise ValueError(f"extra_metrics[{name!r}]: clashes with the standard diagnostic of that name")
            if isinstance(value, Tensor) and value.numel() == 1:
                entries.append((name, value))
            elif isinstance(value, numbers.Real) and not isinstance(value, bool):
                entries.append((name, float(value)))

        # One host transfer for every tensor (summed to one element first).
        tensors = [v.detach() for _, v in entries if isinstance(v, Tensor)]
        device = tensors[0].device
        dtype = torch.float32 if device.type == "mps" else torch.float64
        read = iter(
            torch.stack([(t if t.numel() == 1 else t.sum()).reshape(()).to(device=device, dtype=dtype) for t in tensors])
            .tolist()
        )
        diagnostics = {name: next(read) if isinstance(v, Tensor) else v for name, v in entries}
        return LossResult(objective=self.loss, diagnostics=diagnostics)


# ------------------------------------------------------- count likelihoods
def _is_default(log_fn, lgamma_fn) -> bool:
    return log_fn is torch.log and lgamma_fn is torch.lgamma


def _nb_formula(x, mu, theta, eps, log, lgamma):
    """scvi's NB log-pmf written out with the given functions (the path of a
    non-default ``log_fn`` / ``lgamma_fn``); returns (value, log-pmf at 0)."""
    log_theta_mu_eps = log(theta + mu + eps)
    at_zero = theta * (log(theta + eps) - log_theta_mu_eps)
    value = at_zero + x * (log(mu + eps) - log_theta_mu_eps) + lgamma(x + theta) - lgamma(theta) - lgamma(x + 1)
    return value, at_zero


def log_nb_positive(
    x: Tensor, mu: Tensor, theta: Tensor, eps: float = 1e-8, log_fn=torch.log, lgamma_fn=torch.lgamma
) -> Tensor:
    """Log-likelihood of counts ``x`` under a negative binomial of mean ``mu``
    and inverse dispersion ``theta`` (scvi-tools' ``log_nb_positive``),
    elementwise in the broadcast shape:
    ``theta (log(theta + eps) - log(theta + mu + eps)) + x (log(mu + eps) -
    log(theta + mu + eps)) + lgamma(x + theta) - lgamma(theta) - lgamma(x + 1)``.

    Runs the fused op (float32-accurate at any theta); a non-default
    ``log_fn`` or ``lgamma_fn`` runs the formula above with those functions.
    """
    if not _is_default(log_fn, lgamma_fn):
        return _nb_formula(x, mu, theta, eps, log_fn, lgamma_fn)[0]
    return functional.count_log_likelihood(x, mu, theta, likelihood="nb", eps=eps)


def log_zinb_positive(
    x: Tensor, mu: Tensor, theta: Tensor, pi: Tensor, eps: float = 1e-8, log_fn=torch.log, lgamma_fn=torch.lgamma
) -> Tensor:
    """Log-likelihood of counts ``x`` under a zero-inflated negative binomial
    (scvi-tools' ``log_zinb_positive``): ``pi`` are the logits of the dropout
    probability; a 1-D ``theta`` is viewed as ``[1, G]``. Where ``x < eps``,
    ``softplus(-pi + theta (log(theta + eps) - log(theta + mu + eps))) -
    softplus(-pi)``; elsewhere ``log_nb_positive(x, mu, theta) - softplus(pi)``.

    Runs the fused op; a non-default ``log_fn`` or ``lgamma_fn`` runs the
    formula with those functions. Only the case that applies to each element
    is evaluated and the result keeps the inputs' dtype (scvi-tools mixes the
    two cases with float32 masks).
    """
    if theta.dim() == 1:
        theta = theta.view(1, theta.size(0))
    if not _is_default(log_fn, lgamma_fn):
        value, at_zero = _nb_formula(x, mu, theta, eps, log_fn, lgamma_fn)
        softplus_neg_pi = F.softplus(-pi)
        return torch.where(x < eps, F.softplus(at_zero - pi) - softplus_neg_pi, value - pi - softplus_neg_pi)
    return functional.count_log_likelihood(x, mu, theta, pi, likelihood="zinb", eps=eps)


class _Optional(constraints.Constraint):
    """A constraint that a missing (None) parameter satisfies."""

    def __init__(self, constraint: constraints.Constraint):
        self.constraint = constraint
        super().__init__()

    def check(self, value):
        return torch.ones(1, dtype=torch.bool) if value is None else self.constraint.check(value)

    def __repr__(self) -> str:
        return f"Optional({self.constraint})"


def _warn_outside_support(distribution: Distribution, value: Tensor) -> None:
    """scvi-tools' handling of an invalid sample: a warning, not an error."""
    try:
        distribution._validate_sample(value)
    except ValueError:
        warnings.warn("The value argument must be within the support of the distribution", UserWarning, stacklevel=3)


def _parameters_repr(distribution: Distribution) -> str:
    parts = []
    for name in distribution.arg_constraints:
        value = distribution.__dict__.get(name)
        if value is not None:
            parts.append(f"{name}: {value if value.numel() == 1 else value.size()}")
    return f"{type(distribution).__name__}({', '.join(parts)})"


class Poisson(_TorchPoisson):
    """Poisson distribution (scvi-tools' ``Poisson``: torch's, plus ``scale``).

    ``log_prob`` runs the fused op. Validation is torch's: with
    ``validate_args`` on (torch's default) the value is checked against the
    support, which reads the device; pass ``validate_args=False`` to skip it.

    Args:
        rate: the rate (mean).
        validate_args: whether to validate parameters and values.
        scale: normalised mean expression, stored, not used.
    """

    def __init__(self, rate: Tensor, validate_args: bool | None = None, scale: Tensor | None = None):
        super().__init__(rate=rate, validate_args=validate_args)
        self.scale = scale

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        return functional.count_log_likelihood(value, self.rate, likelihood="poisson")

    def get_normalized(self, key: str) -> Tensor:
        if key == "mu":
            return self.rate
        if key == "scale":
            return self.scale
        raise ValueError(f"normalized key {key} not recognized")

    def __repr__(self) -> str:
        return _parameters_repr(self)


class NegativeBinomial(Distribution):
    """Negative binomial distribution (scvi-tools' ``NegativeBinomial``).

    Give either ``mu`` and ``theta`` (mean and inverse dispersion, scvi's
    parameterisation) or ``total_count`` with ``probs`` or ``logits``
    (converted: ``theta = total_count``, ``mu = exp(logits) * theta``,
    ``scale = mu / mu.sum(-1)``). Samples are Gamma-Poisson:
    ``w ~ Gamma(theta, theta / mu)``, ``x ~ Poisson(min(w, 1e8))``.

    ``log_prob`` runs the fused op and reads nothing back from the device;
    with ``validate_args`` a value outside the support warns, as in scvi.

    Args:
        total_count, probs, logits: the (failures, success probability)
            parameterisation.
        mu, theta: the mean / inverse-dispersion parameterisation.
        scale: normalised mean expression, stored, not used.
        validate_args: validate the parameters (``ValueError``) and values (a warning).
    """

    arg_constraints = {
        "mu": _Optional(constraints.greater_than_eq(0)),
        "theta": _Optional(constraints.greater_than_eq(0)),
        "scale": _Optional(constraints.greater_than_eq(0)),
    }
    support = constraints.nonnegative_integer
    _likelihood = "nb"

    def __init__(
        self,
        total_count: Tensor | None = None,
        probs: Tensor | None = None,
        logits: Tensor | None = None,
        mu: Tensor | None = None,
        theta: Tensor | None = None,
        scale: Tensor | None = None,
        validate_args: bool = False,
    ):
        self._device = mu.device if total_count is None else total_count.device
        self.on_mps = self._device.type == "mps"
        self._eps = 1e-8
        if (mu is None) == (total_count is None):
            raise ValueError(
                "Please use one of the two possible parameterizations: (mu, theta) or "
                "(total_count, probs / logits)."
            )
        if total_count is not None and (logits is not None or probs is not None):
            logits = logits if logits is not None else probs_to_logits(probs)
            total_count, logits = broadcast_all(total_count.type_as(logits), logits)
            theta = total_count
            mu = logits.exp() * theta
            scale = mu / torch.sum(mu, dim=-1, keepdim=True)
        else:
            mu, theta = broadcast_all(mu, theta)
        self.mu = mu
        self.theta = theta
        self.scale = scale
        super().__init__(validate_args=validate_args)

    @property
    def mean(self) -> Tensor:
        return self.mu

    @property
    def variance(self) -> Tensor:
        return self.mean + self.mean**2 / self.theta

    def get_normalized(self, key: str) -> Tensor:
        if key == "mu":
            return self.mu
        if key == "scale":
            return self.scale
        raise ValueError(f"normalized key {key} not recognized")

    @torch.inference_mode()
    def sample(self, sample_shape: torch.Size | tuple | None = None) -> Tensor:
        """Gamma-Poisson samples of shape ``sample_shape + mu.shape``."""
        rates = Gamma(concentration=self.theta, rate=self.theta / self.mu).sample(sample_shape or torch.Size())
        return _TorchPoisson(torch.clamp(rates, max=1e8)).sample().to(self._device)

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            _warn_outside_support(self, value)
        return functional.count_log_likelihood(value, self.mu, self.theta, likelihood="nb", eps=self._eps)

    def __repr__(self) -> str:
        return _parameters_repr(self)


class ZeroInflatedNegativeBinomial(NegativeBinomial):
    """Zero-inflated negative binomial (scvi-tools' ``ZeroInflatedNegativeBinomial``):
    a negative binomial mixed with a point mass at 0 of probability
    ``sigmoid(zi_logits)``. Parameters as :class:`NegativeBinomial`, plus
    ``zi_logits`` (broadcast with ``mu`` and ``theta``).

    ``log_prob`` runs the fused op and never reads the device unless
    ``validate_args`` (scvi-tools validates the value on every call whatever
    ``validate_args`` says, one device read each).
    """

    arg_constraints = {
        "mu": _Optional(constraints.greater_than_eq(0)),
        "theta": _Optional(constraints.greater_than_eq(0)),
        "zi_logits": _Optional(constraints.real),
        "scale": _Optional(constraints.greater_than_eq(0)),
    }
    support = constraints.nonnegative_integer

    def __init__(
        self,
        total_count: Tensor | None = None,
        probs: Tensor | None = None,
        logits: Tensor | None = None,
        mu: Tensor | None = None,
        theta: Tensor | None = None,
        zi_logits: Tensor | None = None,
        scale: Tensor | None = None,
        validate_args: bool = False,
    ):
        super().__init__(
            total_count=total_count, probs=probs, logits=logits, mu=mu, theta=theta, scale=scale,
            validate_args=validate_args,
        )
        self.zi_logits, self.mu, self.theta = broadcast_all(zi_logits, self.mu, self.theta)

    @property
    def mean(self) -> Tensor:
        return (1 - self.zi_probs) * self.mu

    @property
    def variance(self) -> Tensor:
        pi = self.zi_probs
        return (1 - pi) * self.mu * (self.mu + self.theta + pi * self.mu * self.theta) / self.theta

    @lazy_property
    def zi_logits(self) -> Tensor:
        return probs_to_logits(self.zi_probs, is_binary=True)

    @lazy_property
    def zi_probs(self) -> Tensor:
        return logits_to_probs(self.zi_logits, is_binary=True)

    @torch.inference_mode()
    def sample(self, sample_shape: torch.Size | tuple | None = None) -> Tensor:
        """Negative binomial samples, set to 0 with probability ``zi_probs``."""
        counts = super().sample(sample_shape=sample_shape)
        dropped = torch.rand_like(counts) <= self.zi_probs
        return torch.where(dropped, torch.zeros_like(counts), counts)

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            _warn_outside_support(self, value)
        return functional.count_log_likelihood(
            value, self.mu, self.theta, self.zi_logits, likelihood="zinb", eps=self._eps
        )


# ------------------------------------------------------------------ scVI loss
GENE_LIKELIHOODS = ("zinb", "nb", "poisson")


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
            log-variance, as scvi's encoder returns it).
        kl_weight: the KL warm-up weight (a number or a tensor).
        gene_likelihood: ``"zinb"`` (scvi's default), ``"nb"`` or ``"poisson"``.
        kl_divergence_l: the library-size KL ``[B]`` when the library size
            is not observed; zeros (scvi's value for an observed one) when None.
    """
    if gene_likelihood not in GENE_LIKELIHOODS:
        raise ValueError(f"gene_likelihood: expected one of {', '.join(map(repr, GENE_LIKELIHOODS))}, got {gene_likelihood!r}")
    if gene_likelihood == "poisson":
        theta = None
    if gene_likelihood != "zinb":
        px_dropout = None
    reconst = -functional.count_log_likelihood(
        x, px_rate, theta, px_dropout, likelihood=gene_likelihood, eps=1e-8, reduce_sum=True
    )
    kl_z = functional.kl_diag_gaussian(qz_m, torch.log(qz_v), reduce_sum=True)
    kl_l = torch.zeros_like(kl_z) if kl_divergence_l is None else kl_divergence_l
    loss = torch.mean(reconst + kl_weight * kl_z + kl_l)
    return LossOutput(
        loss=loss,
        reconstruction_loss=reconst,
        kl_local={"kl_divergence_l": kl_l, "kl_divergence_z": kl_z},
        extra_metrics={},
    )
