"""Helpers shared by the per-op registration modules."""

from __future__ import annotations

import torch
from torch import Tensor

ops = torch.ops.pyautoencoder_fast


def sum_to(grad: Tensor | None, shape: torch.Size) -> Tensor | None:
    """Reduces a gradient computed in a broadcast shape to an input's shape."""
    if grad is None or grad.shape == shape:
        return grad
    return grad.sum_to_size(shape)


def empty_like_shape(t: Tensor, shape, dtype: torch.dtype | None = None) -> Tensor:
    """A fresh contiguous tensor with t's device (and dtype unless given)."""
    return t.new_empty(shape, dtype=dtype if dtype is not None else t.dtype)


def is_plain_cpu_tensor(t: Tensor) -> bool:
    """A real CPU tensor outside tracing: its values may be read on the host."""
    return type(t) is torch.Tensor and t.device.type == "cpu" and not torch.compiler.is_compiling()
