"""scvi-tools' loss record (``scvi.module.base.LossOutput``) and its bridge
to this library's :class:`~pyautoencoder_fast.loss.LossResult`.

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

import torch
from torch import Tensor

from .._loss_result import LossResult

__all__ = ["LossOutput"]

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

