"""One call that moves the installed scvi-tools onto the fused likelihoods.

scvi-tools builds its count distributions inside its own modules (some
import them inside functions, some at module level), so a user's import
cannot reach them. What every module shares is the classes and their
``log_prob`` methods, and the functions' module attributes. The switch
replaces exactly those and keeps the originals to put back:

* ``log_prob`` of ``scvi.distributions.NegativeBinomial``,
  ``ZeroInflatedNegativeBinomial``, ``NegativeBinomialMixture`` and
  ``Poisson``;
* ``log_nb_positive``, ``log_zinb_positive`` and ``log_mixture_nb`` in every
  loaded ``scvi`` module that holds scvi-tools' own function object (so also
  a model module that imported one at module level).

Each replacement runs scvi-tools' original code where the fused op would
not compute what scvi-tools computes: a non-default ``log_fn`` /
``lgamma_fn`` (scvi's MPS path), a device other than CPU or CUDA, JAX arrays
or non-tensors, and integer or mixed-dtype parameters.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import sys
import threading
import warnings
from typing import Callable, Iterator

import torch
from torch import Tensor

from .. import functional
from . import _distributions as fused

__all__ = [
    "TESTED_SCVI_VERSIONS",
    "disable_fused_likelihoods",
    "enable_fused_likelihoods",
    "fused_likelihoods",
    "fused_likelihoods_enabled",
]

#: scvi-tools releases whose models the tests train with and without the
#: switch (tests/test_scvi_tools.py); another version gets a warning, or an
#: error with ``untested_version="error"``.
TESTED_SCVI_VERSIONS = ("1.4.2",)

_CLASSES = ("NegativeBinomial", "ZeroInflatedNegativeBinomial", "NegativeBinomialMixture", "Poisson")
_FUNCTIONS = ("log_nb_positive", "log_zinb_positive", "log_mixture_nb")

_lock = threading.RLock()
# While enabled: every (owner, attribute name, original value) replaced, in order.
_replaced: list[tuple[object, str, object]] | None = None


def _fusable(*tensors: object) -> bool:
    """Whether the fused op computes what scvi-tools' torch code computes for
    these arguments (None entries are absent optional parameters)."""
    present = [t for t in tensors if t is not None]
    if not all(isinstance(t, Tensor) for t in present):
        return False
    if any(not t.is_floating_point() or t.device.type not in ("cpu", "cuda") for t in present[1:]):
        return False
    dtypes = {t.dtype for t in present[1:]}
    devices = {t.device for t in present}
    return len(dtypes) == 1 and len(devices) == 1


def _warn_outside_support(distribution, value: Tensor) -> None:
    """scvi-tools' reaction to a value outside the support: a warning."""
    try:
        distribution._validate_sample(value)
    except ValueError:
        warnings.warn("The value argument must be within the support of the distribution", UserWarning, stacklevel=3)


def _fused_count_log_prob(distribution, value: Tensor, reduce_sum: bool) -> Tensor | None:
    """log_prob(value) of one of scvi-tools' NB, ZINB or Poisson on the fused
    op (summed over the last dimension with reduce_sum), or None where
    scvi-tools' own code must run."""
    d = _scvi_distributions
    if isinstance(distribution, d.ZeroInflatedNegativeBinomial):  # (a NegativeBinomial too)
        if distribution.on_mps or not _fusable(value, distribution.mu, distribution.theta, distribution.zi_logits):
            return None
        if distribution._validate_args:  # scvi-tools validates on every call
            _warn_outside_support(distribution, value)
        return functional.count_log_likelihood(value, distribution.mu, distribution.theta, distribution.zi_logits,
                                               likelihood="zinb", eps=1e-8, reduce_sum=reduce_sum)
    if isinstance(distribution, d.NegativeBinomial):
        if distribution.on_mps or not _fusable(value, distribution.mu, distribution.theta):
            return None
        if distribution._validate_args:
            _warn_outside_support(distribution, value)
        return functional.count_log_likelihood(value, distribution.mu, distribution.theta, likelihood="nb",
                                               eps=distribution._eps, reduce_sum=reduce_sum)
    if isinstance(distribution, d.Poisson):
        if not _fusable(value, distribution.rate):
            return None
        if distribution._validate_args:  # torch's rule (its default is on): a ValueError
            distribution._validate_sample(value)
        return functional.count_log_likelihood(value, distribution.rate, likelihood="poisson", reduce_sum=reduce_sum)
    return None


# ------------------------------------------------------- the replacements
# Each takes scvi-tools' original and returns the method or function that
# stands in for it (functools.wraps keeps its name, signature and docs).
def _count_log_prob(original: Callable) -> Callable:
    """log_prob of NegativeBinomial, ZeroInflatedNegativeBinomial and Poisson."""

    @functools.wraps(original)
    def log_prob(self, value: Tensor) -> Tensor:
        out = _fused_count_log_prob(self, value, reduce_sum=False)
        return original(self, value) if out is None else out

    return log_prob


def _mixture_log_prob(original: Callable) -> Callable:
    @functools.wraps(original)
    def log_prob(self, value: Tensor) -> Tensor:
        if self.on_mps or not _fusable(value, self.mu1, self.mu2, self.theta1, self.theta2, self.mixture_logits):
            return original(self, value)
        if self._validate_args:  # scvi-tools validates on every call
            _warn_outside_support(self, value)
        return functional.nb_mixture_log_likelihood(
            value, self.mu1, self.mu2, self.theta1, self.theta2, self.mixture_logits, eps=1e-8
        )

    return log_prob


class _LogProbRows:
    """What px.log_prob(x) gives inside scvi-tools' VAE.loss under the
    switch: nothing computed yet. Its ``.sum(-1)`` (what VAE.loss does with
    it) is the fused op's summed form, whose derivatives are written in the
    forward pass and which writes no per-element tensor; anything else asks
    for the per-element log-pmf and works on that."""

    def __init__(self, px, value: Tensor):
        self._px, self._value, self._per_element = px, value, None

    def _tensor(self) -> Tensor:
        if self._per_element is None:
            self._per_element = self._px.log_prob(self._value)
        return self._per_element

    def sum(self, *args, **kwargs):
        if (args == (-1,) and not kwargs) or (not args and kwargs == {"dim": -1}):
            out = _fused_count_log_prob(self._px, self._value, reduce_sum=True)
            if out is not None:
                return out
        return self._tensor().sum(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._tensor(), name)

    def __neg__(self):
        return -self._tensor()


class _SummedInLoss:
    """px as scvi-tools' VAE.loss sees it under the switch: log_prob of the
    loss's own counts gives _LogProbRows; everything else is px's own."""

    def __init__(self, px, x: Tensor):
        self._px, self._x = px, x

    def log_prob(self, value):
        return _LogProbRows(self._px, value) if value is self._x else self._px.log_prob(value)

    def __getattr__(self, name):
        return getattr(self._px, name)


def _vae_loss(original: Callable) -> Callable:
    """scvi-tools' VAE.loss (SCVI's, LinearSCVI's) with its reconstruction
    term ``-px.log_prob(x).sum(-1)`` in the fused summed form: scvi-tools'
    own loss code, LossOutput and metrics, px wrapped for the call. Under
    torch.compile, and for any px but the NB, ZINB and Poisson, the
    per-element form as before."""

    @functools.wraps(original)
    def loss(self, tensors, inference_outputs, generative_outputs, *args, **kwargs):
        px = generative_outputs.get(_PX_KEY) if isinstance(generative_outputs, dict) else None
        x = tensors.get(_X_KEY) if isinstance(tensors, dict) else None
        d = _scvi_distributions
        if (
            px is not None
            and isinstance(x, Tensor)
            and isinstance(px, (d.NegativeBinomial, d.Poisson))
            and not torch.compiler.is_compiling()
        ):
            generative_outputs = {**generative_outputs, _PX_KEY: _SummedInLoss(px, x)}
        return original(self, tensors, inference_outputs, generative_outputs, *args, **kwargs)

    return loss


def _scvi_log_mixture_nb(x, mu_1, mu_2, theta_1, theta_2, pi_logits, eps=1e-8, log_fn=torch.log, lgamma_fn=torch.lgamma):
    """scvi-tools' log_mixture_nb as it computes: with a separate theta_2 its
    components are log_nb_positive at that function's default eps, 1e-8."""
    eps = 1e-8 if theta_2 is not None else eps
    return fused.log_mixture_nb(x, mu_1, mu_2, theta_1, theta_2, pi_logits, eps, log_fn, lgamma_fn)


def _function(original: Callable, drop_in: Callable, n_tensors: int) -> Callable:
    """A stand-in for one of scvi-tools' functions: the drop-in where it is
    fusable with the default log and lgamma, the original otherwise."""

    @functools.wraps(original)
    def function(*args, **kwargs):
        if _replaced is None:  # switched off; a module imported it meanwhile
            return original(*args, **kwargs)
        try:
            bound = _signature(original).bind(*args, **kwargs)
        except TypeError:
            return original(*args, **kwargs)  # scvi-tools' own error
        arguments = bound.arguments
        tensors = list(arguments.values())[:n_tensors]
        default_fns = arguments.get("log_fn", torch.log) is torch.log and arguments.get(
            "lgamma_fn", torch.lgamma
        ) is torch.lgamma
        if not default_fns or not _fusable(*tensors):
            return original(*args, **kwargs)
        return drop_in(*args, **kwargs)

    return function


@functools.lru_cache(maxsize=None)
def _signature(function: Callable):
    import inspect

    return inspect.signature(function)


_CLASS_REPLACEMENTS = {
    "NegativeBinomial": _count_log_prob,
    "ZeroInflatedNegativeBinomial": _count_log_prob,
    "NegativeBinomialMixture": _mixture_log_prob,
    "Poisson": _count_log_prob,
}
# scvi-tools' distributions module and VAE's keys, set by enable_fused_likelihoods.
_scvi_distributions = None
_X_KEY, _PX_KEY = "X", "px"
# name -> (drop-in, how many leading arguments are tensors to check)
_FUNCTION_REPLACEMENTS = {
    "log_nb_positive": (fused.log_nb_positive, 3),
    "log_zinb_positive": (fused.log_zinb_positive, 4),
    "log_mixture_nb": (_scvi_log_mixture_nb, 6),
}


# ----------------------------------------------------------- the switch
def _import_scvi(untested_version: str):
    if untested_version not in ("warn", "error", "ignore"):
        raise ValueError(f"untested_version: expected 'warn', 'error' or 'ignore', got {untested_version!r}")
    try:
        scvi = importlib.import_module("scvi")
        distributions = importlib.import_module("scvi.distributions")
        # the submodule the package imported (sys.modules may have lost it)
        nb_module = getattr(distributions, "_negative_binomial", None) or importlib.import_module(
            "scvi.distributions._negative_binomial"
        )
    except ImportError as error:
        raise ImportError(
            "enable_fused_likelihoods: scvi-tools is not importable "
            f"({error}); install it, e.g. pip install 'pyautoencoder_fast[scvi]'"
        ) from error
    version = getattr(scvi, "__version__", "unknown")
    if version not in TESTED_SCVI_VERSIONS:
        message = (
            f"scvi-tools {version} is not a version the switch was tested with "
            f"({', '.join(TESTED_SCVI_VERSIONS)}); "
        )
        if untested_version == "error":
            raise RuntimeError(message + "nothing was replaced (untested_version='error')")
        if untested_version == "warn":
            warnings.warn(
                message + "its classes and functions are replaced all the same where they are found "
                "(untested_version='ignore' silences this, 'error' refuses)",
                UserWarning,
                stacklevel=3,
            )
    missing = [name for name in _CLASSES if not hasattr(getattr(distributions, name, None), "log_prob")]
    missing += [name for name in _FUNCTIONS if not callable(getattr(nb_module, name, None))]
    if missing:
        raise RuntimeError(
            f"scvi-tools {version}: scvi.distributions has no {', '.join(missing)} as the switch knows them; "
            "nothing was replaced"
        )
    return distributions, nb_module


def _modules_holding(function: object, also: tuple = ()) -> list[tuple[object, str]]:
    """Every loaded scvi module attribute (and those of the modules ``also``)
    that is this very function object."""
    found = []
    modules = [m for name, m in list(sys.modules.items()) if name == "scvi" or name.startswith("scvi.")]
    for module in {id(m): m for m in [*also, *modules] if m is not None}.values():
        namespace = getattr(module, "__dict__", {})
        for attribute, value in list(namespace.items()):
            if value is function:
                found.append((module, attribute))
    return found


def enable_fused_likelihoods(*, untested_version: str = "warn") -> None:
    """Run scvi-tools' count likelihoods on the fused ops, in this whole
    process, until :func:`disable_fused_likelihoods`.

    After it, ``scvi.model.SCVI(adata).train()`` (and every other model that
    uses scvi-tools' ``NegativeBinomial``, ``ZeroInflatedNegativeBinomial``,
    ``NegativeBinomialMixture``, ``Poisson`` or its ``log_nb_positive`` /
    ``log_zinb_positive`` / ``log_mixture_nb``) computes its reconstruction
    loss with the fused ``count_log_likelihood`` op: the same values to
    float rounding, its derivatives written in the forward pass, and no
    device read unless ``validate_args`` is on. Calling it again does
    nothing.

    Args:
        untested_version: what to do with an scvi-tools release not in
            :data:`TESTED_SCVI_VERSIONS`: ``"warn"`` (replace, with a
            warning), ``"error"`` (``RuntimeError``, nothing replaced) or
            ``"ignore"`` (replace silently).

    Raises:
        ImportError: scvi-tools is not installed.
        RuntimeError: an untested version with ``untested_version="error"``,
            or a release that lacks one of the classes or functions (nothing
            is replaced then).
    """
    global _replaced
    with _lock:
        if _replaced is not None:
            return
        distributions, nb_module = _import_scvi(untested_version)
        global _scvi_distributions, _X_KEY, _PX_KEY
        _scvi_distributions = distributions
        replaced: list[tuple[object, str, object]] = []
        try:
            vae = getattr(importlib.import_module("scvi.module"), "VAE", None)
            if vae is not None and "loss" in vae.__dict__:
                from scvi import REGISTRY_KEYS
                from scvi.module._constants import MODULE_KEYS

                _X_KEY, _PX_KEY = REGISTRY_KEYS.X_KEY, MODULE_KEYS.PX_KEY
                replaced.append((vae, "loss", vae.__dict__["loss"]))
                vae.loss = _vae_loss(vae.__dict__["loss"])
            for name, make in _CLASS_REPLACEMENTS.items():
                cls = getattr(distributions, name)
                original = cls.__dict__.get("log_prob", cls.log_prob)
                replaced.append((cls, "log_prob", cls.__dict__.get("log_prob")))
                cls.log_prob = make(original)
            for name, (drop_in, n_tensors) in _FUNCTION_REPLACEMENTS.items():
                original = getattr(nb_module, name)
                stand_in = _function(original, drop_in, n_tensors)
                for module, attribute in _modules_holding(original, also=(nb_module, distributions)):
                    replaced.append((module, attribute, original))
                    setattr(module, attribute, stand_in)
        except BaseException:
            _restore(replaced)
            raise
        _replaced = replaced


def _restore(replaced: list[tuple[object, str, object]]) -> None:
    for owner, attribute, original in reversed(replaced):
        if original is None:  # a class that inherited log_prob: drop ours
            delattr(owner, attribute)
        else:
            setattr(owner, attribute, original)


def disable_fused_likelihoods() -> None:
    """Put scvi-tools' own classes' ``log_prob`` and functions back (nothing
    to do when the switch is off)."""
    global _replaced
    with _lock:
        if _replaced is None:
            return
        _restore(_replaced)
        _replaced = None


def fused_likelihoods_enabled() -> bool:
    """Whether :func:`enable_fused_likelihoods` is in effect."""
    return _replaced is not None


@contextlib.contextmanager
def fused_likelihoods(*, untested_version: str = "warn") -> Iterator[None]:
    """The switch for one block: on inside it, and afterwards as it was
    before (off again unless it was already on; blocks nest).

    Example:
        >>> with fused_likelihoods():
        ...     model.train(max_epochs=10)
    """
    with _lock:
        was_enabled = fused_likelihoods_enabled()
        enable_fused_likelihoods(untested_version=untested_version)
    try:
        yield
    finally:
        if not was_enabled:
            disable_fused_likelihoods()
