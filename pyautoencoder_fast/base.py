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
* :meth:`~BaseAutoencoder.load_state_dict` raises ``RuntimeError`` while a
  lazy module is still unmaterialised.
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


@dataclasses.dataclass
class ModelOutput:
    """Base of the dataclasses returned by the models.

    ``repr`` lists the fields, with every tensor shown as
    ``Tensor(shape=(...), dtype=...)``. Dataclass subclasses inherit this
    ``repr`` even when declared with a plain ``@dataclass``.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # @dataclass only adds __repr__ when the class does not define one, so
        # placing ours in the subclass keeps the tensor summary.
        if "__repr__" not in cls.__dict__:
            cls.__repr__ = ModelOutput.__repr__  # type: ignore[method-assign]

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{f.name}={_summarise(getattr(self, f.name))}" for f in dataclasses.fields(self) if f.repr
        )
        return f"{type(self).__name__}({fields})"


def unmaterialised_lazy_modules(module: nn.Module) -> list[str]:
    """Names of the lazy submodules of ``module`` (itself included, as ``""``)
    whose parameters or buffers are not materialised yet."""
    return [
        name
        for name, sub in module.named_modules()
        if isinstance(sub, LazyModuleMixin) and sub.has_uninitialized_params()
    ]


def _describe(names: list[str]) -> str:
    shown = ", ".join(repr(n or "<root>") for n in names[:5])
    return shown + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def require_built(module: nn.Module, action: str) -> None:
    """Raises ``RuntimeError`` naming the unmaterialised lazy modules, if any."""
    pending = unmaterialised_lazy_modules(module)
    if pending:
        raise RuntimeError(
            f"{action}: the model has unmaterialised lazy modules ({_describe(pending)}); "
            "call model.build(x) with an example input batch (or run one forward pass) first"
        )


class BaseAutoencoder(nn.Module, ABC):
    """Abstract base of the autoencoders.

    Subclasses implement ``_encode(x, ...)``, ``_decode(z, ...)``,
    ``forward(x, ...)`` and ``compute_loss(x, output, ...)``. ``encode`` and
    ``decode`` are the inference entry points (no autograd graph, tensors
    returned are inference tensors); ``forward`` is the training pass.
    """

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

    def build(self, x: Tensor, *args: Any, **kwargs: Any) -> "BaseAutoencoder":
        """Materialises lazy layers with one forward pass on ``x`` and returns ``self``.

        The pass runs under ``torch.no_grad()`` and in eval mode (the previous
        train/eval state is restored afterwards): it draws no sampling noise
        and updates no running statistics (BatchNorm), so the only random
        numbers it consumes are the lazy layers' initialisation. Extra
        arguments go to ``forward``. Returning ``self`` (pyautoencoder's code ignores the
        return value) allows ``model = VAE(...).build(x)``.
        """
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                self.forward(x, *args, **kwargs)
        finally:
            self.train(was_training)
        return self

    # ------------------------------------------------------------- state dict
    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):
        """``nn.Module.load_state_dict``, refused (``RuntimeError``) before :meth:`build`."""
        require_built(self, "load_state_dict")
        return super().load_state_dict(state_dict, strict=strict, assign=assign)
