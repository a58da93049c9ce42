"""Model base classes of pyautoencoder, on the fused ops.

:class:`ModelOutput` is the base of every dataclass a model returns; its
``repr`` summarises tensors as ``Tensor(shape=(...), dtype=...)`` instead of
printing their values. :class:`BaseAutoencoder` is the ``nn.Module`` base of
:class:`~pyautoencoder_fast.vanilla.AE` and
:class:`~pyautoencoder_fast.variational.VAE`:

* subclasses implement ``_encode``, ``_decode``, ``forward`` and
  ``compute_loss``;
* :meth:`~BaseAutoencoder.encode` / :meth:`~BaseAutoencoder.decode` run
  ``_encode`` / ``_decode`` under ``torch.inference_mode()``;
* :meth:`~BaseAutoencoder.build` runs one no-grad forward pass to materialise
  lazy layers (``nn.LazyLinear`` and friends);
* :meth:`~BaseAutoencoder.load_state_dict` raises ``RuntimeError("Call
  build() before load_state_dict(). ...")`` while a lazy module is still
  unmaterialised.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from typing import Any, Mapping

import torch
from torch import Tensor, nn
from torch.nn.modules.lazy import LazyModuleMixin

__all__ = ["BaseAutoencoder", "ModelOutput"]


def _summarise(value: Any) -> str:
    if isinstance(value, Tensor):
        return f"Tensor(shape={tuple(value.shape)}, dtype={value.dtype})"
    return repr(value)


@dataclasses.dataclass(slots=True)
class ModelOutput(ABC):
    """Base of the dataclasses returned by the models (an ABC, as in the seed).

    ``repr`` lists the fields, with every tensor shown as
    ``Tensor(shape=(...), dtype=...)``. As in pyautoencoder, subclasses are
    declared ``@dataclass(slots=True, repr=False)`` to keep it.
    """

    def __repr__(self) -> str:
        parts = ", ".join(f"{f.name}={_summarise(getattr(self, f.name))}" for f in dataclasses.fields(self))
        return f"{type(self).__name__}({parts})"


def unmaterialised_lazy_modules(module: nn.Module) -> list[str]:
    """Names of the lazy submodules of ``module`` (itself included, as ``""``)
    whose parameters or buffers are not materialised yet."""
    return [
        name
        for name, sub in module.named_modules()
        if isinstance(sub, LazyModuleMixin) and sub.has_uninitialized_params()
    ]


def require_built(module: nn.Module, action: str) -> None:
    """Raises ``RuntimeError("Call build() before <action>(). ...")`` naming the
    unmaterialised lazy modules, if any."""
    pending = unmaterialised_lazy_modules(module)
    if pending:
        shown = ", ".join(repr(n or "<root>") for n in pending[:5])
        if len(pending) > 5:
            shown += f" and {len(pending) - 5} more"
        raise RuntimeError(
            f"Call build() before {action}(). The model has unmaterialised lazy modules ({shown}); "
            "model.build(x) with an example input batch materialises them."
        )


def build_in_eval_mode(model: nn.Module, input_sample: Any) -> None:
    """One no-grad forward pass of ``model`` in eval mode, to materialise lazy
    layers; every submodule's own train/eval flag is restored afterwards."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            model(input_sample)
    finally:
        for m, training in modes.items():
            m.training = training


def module_argument(name: str, value: object) -> nn.Module:
    """A model's constructor argument ``name`` (its encoder, its decoder): an
    ``nn.Module``, else ``TypeError`` naming it."""
    if not isinstance(value, nn.Module):
        raise TypeError(f"{name}: expected a torch.nn.Module, got {type(value).__name__}")
    return value


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


class BaseAutoencoder(nn.Module, ABC):
    """Abstract base of the autoencoders.

    Subclasses implement ``_encode(x, ...)``, ``_decode(z, ...)``,
    ``forward(x, ...)`` and ``compute_loss(x, output, ...)``. ``encode`` and
    ``decode`` are the inference entry points (no autograd graph, tensors
    returned are inference tensors); ``forward`` is the training pass.
    """

    def __init__(self) -> None:
        super().__init__()

    # ------------------------------------------------------------ abstract API
    @abstractmethod
    def _encode(self, x: Tensor, *args: Any, **kwargs: Any) -> ModelOutput:
        """Maps inputs to the latent space (with autograd)."""

    @abstractmethod
    def _decode(self, z: Tensor, *args: Any, **kwargs: Any) -> ModelOutput:
        """Maps latent codes to reconstructions (with autograd)."""

    @abstractmethod
    def forward(self, x: Tensor, *args: Any, **kwargs: Any) -> ModelOutput:
        """Full training pass."""

    @abstractmethod
    def compute_loss(self, x: Tensor, output: ModelOutput, *args: Any, **kwargs: Any) -> Any:
        """The objective to minimise and float diagnostics (a ``LossResult``)."""

    # -------------------------------------------------------------- inference
    def encode(self, x: Tensor, *args: Any, **kwargs: Any) -> ModelOutput:
        """``_encode`` under ``torch.inference_mode()``.

        Raises ``RuntimeError`` if lazy layers are not materialised yet: doing
        that under inference mode would create parameters that never receive
        gradients. Call :meth:`build` first.
        """
        require_built(self, "encode")
        with torch.inference_mode():
            return self._encode(x, *args, **kwargs)

    def decode(self, z: Tensor, *args: Any, **kwargs: Any) -> ModelOutput:
        """``_decode`` under ``torch.inference_mode()`` (see :meth:`encode`)."""
        require_built(self, "decode")
        with torch.inference_mode():
            return self._decode(z, *args, **kwargs)

    # ------------------------------------------------------------------ build
    @property
    def built(self) -> bool:
        """True when no lazy submodule is waiting to be materialised."""
        return not unmaterialised_lazy_modules(self)

    def build(self, input_sample: Tensor) -> "BaseAutoencoder":
        """Materialises lazy layers with one forward pass on ``input_sample``.

        The pass runs under ``torch.no_grad()`` and in eval mode, and every
        submodule's train/eval flag is restored afterwards: it applies no
        dropout and updates no running statistics (BatchNorm). Returns
        ``self`` (pyautoencoder returns ``None``; code that ignores the value
        is unaffected), which allows ``model = VAE(...).build(x)``.
        """
        build_in_eval_mode(self, input_sample)
        return self

    # ------------------------------------------------------------- state dict
    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):
        """``nn.Module.load_state_dict``, refused before :meth:`build`:
        ``RuntimeError("Call build() before load_state_dict(). ...")``."""
        require_built(self, "load_state_dict")
        return super().load_state_dict(state_dict, strict=strict, assign=assign)
