"""Helpers shared by the per-op fake-kernel modules."""

from __future__ import annotations

import torch
from torch import Tensor


def empty_like_shape(t: Tensor, shape, dtype: torch.dtype | None = None) -> Tensor:
    """A fresh contiguous tensor with t's device (and dtype unless given)."""
    return t.new_empty(shape, dtype=dtype if dtype is not None else t.dtype)


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the kernels compute in: float32 for float16/bfloat16 (at::opmath_type)."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
