"""The likelihood names and their rules, written once.

Two kinds of likelihood, each with its names (the canonical spelling: lower
case) and two checks:

* the elementwise likelihoods of the reconstruction terms
  (``log_likelihood``, ``log_likelihood_sum``, ``elbo``, ``iwae_bound`` and
  the models' losses): :data:`LIKELIHOODS`;
* the count likelihoods (scvi-tools' names) of ``count_log_likelihood``:
  :data:`COUNT_LIKELIHOODS`.

The public functions take a name in any case (and, for the elementwise kind,
a :class:`LikelihoodType`) and canonicalise it once, with
:func:`canonical_likelihood` / :func:`canonical_count_likelihood`; the private
helpers they call receive the canonical name and do not check it again. The
ops themselves (and the pure-PyTorch reference standing in for them) take the
canonical names only: :func:`require_likelihood` /
:func:`require_count_likelihood`. Only the likelihoods in
:data:`LOG_VARIANCE_LIKELIHOODS` take a log-variance ``x_log_var``
(:func:`require_log_variance`).

These names must agree with the kernels' own parser, ``parse_likelihood``
and ``parse_count_likelihood`` in csrc/common/likelihood.h (and with its rule
for ``x_log_var``); tests/test_op_registration.py checks that every name here
is accepted by the compiled ops.
"""

from __future__ import annotations

from enum import Enum

# The elementwise likelihoods (order: as the documentation lists them).
LIKELIHOODS = ("gaussian", "bernoulli", "laplace", "bernoulli_probs")
# The count likelihoods: the negative binomial, its zero-inflated form, the Poisson.
COUNT_LIKELIHOODS = ("nb", "zinb", "poisson")
# The elementwise likelihoods that take a log-variance x_log_var (a learned variance).
LOG_VARIANCE_LIKELIHOODS = ("gaussian",)

_ELEMENTWISE = frozenset(LIKELIHOODS)
_COUNT = frozenset(COUNT_LIKELIHOODS)


class LikelihoodType(Enum):
    """Observation model of the reconstruction term (``pyautoencoder.loss.LikelihoodType``).

    Defined here, with the names it stands for, and re-exported by
    :mod:`pyautoencoder_fast.loss`; ``LAPLACE`` is this library's addition.
    """

    GAUSSIAN = "gaussian"
    BERNOULLI = "bernoulli"
    LAPLACE = "laplace"


LikelihoodType.__module__ = "pyautoencoder_fast.loss"


def _listed(names: tuple[str, ...]) -> str:
    return ", ".join(map(repr, names))


def canonical_likelihood(value: object) -> str:
    """An elementwise likelihood name (case-insensitive) or :class:`LikelihoodType`
    member -> its canonical lower-case name.

    Anything else, a member of another enum (pyautoencoder's own
    ``LikelihoodType`` included) or a non-string, raises
    ``ValueError("Unsupported likelihood: ...")`` as pyautoencoder does.
    """
    if type(value) is str and value in _ELEMENTWISE:  # the usual call
        return value
    if type(value) is LikelihoodType:
        return value.value
    name = value.lower() if isinstance(value, str) and not isinstance(value, Enum) else None
    if name not in _ELEMENTWISE:
        raise ValueError(f"Unsupported likelihood: {value!r} (expected one of {', '.join(LIKELIHOODS)})")
    return name


def canonical_count_likelihood(value: object, argument: str = "likelihood") -> str:
    """A count likelihood name (case-insensitive) -> its canonical lower-case
    name; anything else raises ``ValueError`` naming ``argument`` (the
    caller's parameter: ``likelihood``, ``gene_likelihood``)."""
    if type(value) is str and value in _COUNT:  # the usual call
        return value
    name = value.lower() if isinstance(value, str) else None
    if name not in _COUNT:
        raise ValueError(f"{argument}: expected one of {_listed(COUNT_LIKELIHOODS)} (any case), got {value!r}")
    return name


def require_likelihood(value: object) -> str:
    """The ops' contract: ``value`` is a canonical elementwise name, as is
    (``ValueError`` otherwise)."""
    if value not in LIKELIHOODS:
        raise ValueError(f"likelihood: expected one of {_listed(LIKELIHOODS)}, got {value!r}")
    return value


def require_count_likelihood(value: object) -> str:
    """The ops' contract: ``value`` is a canonical count name, as is
    (``ValueError`` otherwise)."""
    if value not in COUNT_LIKELIHOODS:
        raise ValueError(f"likelihood: expected one of {_listed(COUNT_LIKELIHOODS)}, got {value!r}")
    return value


def require_log_variance(likelihood: str) -> None:
    """Refuses a log-variance ``x_log_var`` for a (canonical) ``likelihood``
    that takes none: ``ValueError`` naming ``x_log_var``."""
    if likelihood not in LOG_VARIANCE_LIKELIHOODS:
        raise ValueError(
            f"x_log_var: only likelihood {' or '.join(map(repr, LOG_VARIANCE_LIKELIHOODS))} takes a log-variance, "
            f"got {likelihood!r}"
        )
