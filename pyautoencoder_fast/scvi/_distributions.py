"""scvi-tools' count likelihoods on the fused ``count_log_likelihood`` op:
the functions ``log_nb_positive``, ``log_zinb_positive``, ``log_mixture_nb``
and the distributions ``NegativeBinomial``, ``ZeroInflatedNegativeBinomial``,
``NegativeBinomialMixture`` and ``Poisson`` (scvi-tools' names, signatures
and results)."""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Distribution, Gamma, constraints
from torch.distributions import Poisson as _TorchPoisson
from torch.distributions.utils import broadcast_all, lazy_property, logits_to_probs, probs_to_logits

from .. import functional

__all__ = [
    "NegativeBinomial",
    "NegativeBinomialMixture",
    "Poisson",
    "ZeroInflatedNegativeBinomial",
    "log_mixture_nb",
    "log_nb_positive",
    "log_zinb_positive",
]


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
        """Log-probability of the counts ``value``, per element, from the fused count kernel."""
        if self._validate_args:
            self._validate_sample(value)
        return functional.count_log_likelihood(value, self.rate, likelihood="poisson")

    def get_normalized(self, key: str) -> Tensor:
        """The parameter named ``key``, as scvi-tools' ``get_normalized``: ``"mu"``
        the mean, ``"scale"`` the stored normalised mean."""
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
        """The mean of the distribution."""
        return self.mu

    @property
    def variance(self) -> Tensor:
        """The variance of the distribution."""
        return self.mean + self.mean**2 / self.theta

    def get_normalized(self, key: str) -> Tensor:
        """The parameter named ``key``, as scvi-tools' ``get_normalized``: ``"mu"``
        the mean, ``"scale"`` the stored normalised mean."""
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
        """Log-probability of the counts ``value``, per element, from the fused count kernel."""
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
        """The mean of the distribution."""
        return (1 - self.zi_probs) * self.mu

    @property
    def variance(self) -> Tensor:
        """The variance of the distribution."""
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
        """Log-probability of the counts ``value``, per element, from the fused count kernel."""
        if self._validate_args:
            _warn_outside_support(self, value)
        return functional.count_log_likelihood(
            value, self.mu, self.theta, self.zi_logits, likelihood="zinb", eps=self._eps
        )



def _mixture_formula(x, mu_1, mu_2, theta_1, theta_2, pi_logits, eps, log, lgamma):
    """scvi's two NB log-pmfs of log_mixture_nb written out with the given
    functions (the path of a non-default ``log_fn`` / ``lgamma_fn``)."""
    return _nb_formula(x, mu_1, theta_1, eps, log, lgamma)[0], _nb_formula(x, mu_2, theta_2, eps, log, lgamma)[0]


def log_mixture_nb(
    x: Tensor,
    mu_1: Tensor,
    mu_2: Tensor,
    theta_1: Tensor,
    theta_2: Tensor | None,
    pi_logits: Tensor,
    eps: float = 1e-8,
    log_fn=torch.log,
    lgamma_fn=torch.lgamma,
) -> Tensor:
    """Log-likelihood of counts ``x`` under a mixture of two negative
    binomials that share ``x`` (scvi-tools' ``log_mixture_nb``, totalVI's
    protein background and foreground): ``pi_logits`` are the logits of the
    first component's weight; ``theta_2 = None`` shares ``theta_1`` (a 1-D
    one is viewed as ``[1, G]``).
    ``log(sigmoid(pi) NB(x; mu_1, theta_1) + sigmoid(-pi) NB(x; mu_2, theta_2))
    = logsumexp(log NB_1, log NB_2 - pi) - softplus(-pi)``.

    One fused op (:func:`~pyautoencoder_fast.functional.nb_mixture_log_likelihood`,
    float32-accurate at any count and theta). A non-default ``log_fn`` or
    ``lgamma_fn`` runs the formula with those functions. ``eps`` is used by
    both components also when ``theta_2`` is given (scvi-tools then uses its
    default, 1e-8, whatever ``eps`` is passed).
    """
    if _is_default(log_fn, lgamma_fn):
        return functional.nb_mixture_log_likelihood(x, mu_1, mu_2, theta_1, theta_2, pi_logits, eps=eps)
    if theta_2 is None:
        theta_1 = theta_1.view(1, theta_1.size(0)) if theta_1.dim() == 1 else theta_1
        theta_2 = theta_1
    log_nb_1, log_nb_2 = _mixture_formula(x, mu_1, mu_2, theta_1, theta_2, pi_logits, eps, log_fn, lgamma_fn)
    return torch.logaddexp(log_nb_1, log_nb_2 - pi_logits) - F.softplus(-pi_logits)


class NegativeBinomialMixture(Distribution):
    """Mixture of two negative binomials (scvi-tools' ``NegativeBinomialMixture``):
    component 1 (mean ``mu1``, inverse dispersion ``theta1``) with probability
    ``sigmoid(mixture_logits)``, component 2 (``mu2``, ``theta2``, or
    ``theta1`` when ``theta2`` is None) otherwise.

    ``log_prob`` is :func:`log_mixture_nb` and never reads the device unless
    ``validate_args`` (scvi-tools validates the value on every call, one
    device read each); a value outside the support then warns, as in scvi.

    Args:
        mu1, mu2: the components' means.
        theta1: inverse dispersion of component 1 (and 2 when ``theta2`` is None).
        mixture_logits: logits of the probability of component 1.
        theta2: inverse dispersion of component 2, broadcast with ``mu1``.
        validate_args: validate the parameters (``ValueError``) and values (a warning).
    """

    arg_constraints = {
        "mu1": constraints.greater_than_eq(0),
        "mu2": constraints.greater_than_eq(0),
        "theta1": constraints.greater_than_eq(0),
        "mixture_probs": constraints.half_open_interval(0.0, 1.0),
        "mixture_logits": constraints.real,
    }
    support = constraints.nonnegative_integer

    def __init__(
        self,
        mu1: Tensor,
        mu2: Tensor,
        theta1: Tensor,
        mixture_logits: Tensor,
        theta2: Tensor | None = None,
        validate_args: bool = False,
    ):
        self.mu1, self.theta1, self.mu2, self.mixture_logits = broadcast_all(mu1, theta1, mu2, mixture_logits)
        self.on_mps = mu1.device.type == "mps"
        super().__init__(validate_args=validate_args)
        # scvi-tools stores the pair broadcast_all returns (and then fails in
        # log_prob); this keeps the broadcast theta2 itself
        self.theta2 = None if theta2 is None else broadcast_all(mu1, theta2)[1]

    @property
    def mean(self) -> Tensor:
        """The mean of the distribution."""
        pi = self.mixture_probs
        return pi * self.mu1 + (1 - pi) * self.mu2

    @lazy_property
    def mixture_probs(self) -> Tensor:
        return logits_to_probs(self.mixture_logits, is_binary=True)

    def get_normalized(self, key: str) -> Tensor:
        """The parameter named ``key``, as scvi-tools' ``get_normalized``: ``"mu"`` the mean."""
        if key == "mu":
            return self.mean
        raise ValueError(f"normalized key {key} not recognized")

    @torch.inference_mode()
    def sample(self, sample_shape: torch.Size | tuple | None = None) -> Tensor:
        """A Bernoulli draw picks each element's component; then Gamma-Poisson
        samples of it, as :meth:`NegativeBinomial.sample`."""
        first = torch.distributions.Bernoulli(self.mixture_probs).sample()
        mu = self.mu1 * first + self.mu2 * (1 - first)
        theta = self.theta1 if self.theta2 is None else self.theta1 * first + self.theta2 * (1 - first)
        rates = Gamma(concentration=theta, rate=theta / mu).sample(sample_shape or torch.Size())
        return _TorchPoisson(torch.clamp(rates, max=1e8)).sample()

    def log_prob(self, value: Tensor) -> Tensor:
        """Log-probability of the counts ``value``, per element, from the fused count kernel."""
        if self._validate_args:
            _warn_outside_support(self, value)
        return log_mixture_nb(value, self.mu1, self.mu2, self.theta1, self.theta2, self.mixture_logits, eps=1e-8)

    def __repr__(self) -> str:
        return _parameters_repr(self)
