"""Argument checks with messages that name the argument and what was wrong.

Types and dtypes raise ``TypeError``; shapes, devices and values raise
``ValueError``. The C++ kernels check again (``RuntimeError``) for direct
``torch.ops`` callers.
"""

from __future__ import annotations

import enum
import math
import operator

import torch
from torch import Tensor

FLOATING_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
LIKELIHOODS = ("gaussian", "bernoulli", "laplace", "bernoulli_probs")


def tensor(name: str, value: object) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(value).__name__}")
    return value


def floating(name: str, value: object) -> Tensor:
    t = tensor(name, value)
    if t.dtype not in FLOATING_DTYPES:
        raise TypeError(
            f"{name}: expected a floating-point tensor (float16, bfloat16, float32 or float64), got {t.dtype}"
        )
    return t


def same_device(**named: Tensor | None) -> None:
    items = [(n, t) for n, t in named.items() if t is not None]
    first_name, first = items[0]
    for name, t in items[1:]:
        if t.device != first.device:
            raise ValueError(f"{name}: on device {t.device}, but {first_name} is on {first.device}")


def promote(*tensors: Tensor | None) -> list[Tensor | None]:
    """Casts the given tensors to their common floating dtype (no copy if equal)."""
    present = [t for t in tensors if t is not None]
    dtype = present[0].dtype
    if all(t.dtype == dtype for t in present):  # the common case: nothing to do
        return list(tensors)
    for t in present[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    return [None if t is None else t.to(dtype) for t in tensors]


def min_dim(name: str, t: Tensor, dims: int, layout: str) -> None:
    if t.dim() < dims:
        raise ValueError(f"{name}: expected shape {layout}, got {tuple(t.shape)}")


def exact_dim(name: str, t: Tensor, dims: int, layout: str) -> None:
    if t.dim() != dims:
        raise ValueError(f"{name}: expected shape {layout}, got {tuple(t.shape)}")


def broadcastable(**named: Tensor | None) -> torch.Size:
    shapes = {n: t.shape for n, t in named.items() if t is not None}
    first = next(iter(shapes.values()))
    if all(s == first for s in shapes.values()):  # torch.broadcast_shapes costs ~8 us
        return first
    try:
        return torch.broadcast_shapes(*shapes.values())
    except RuntimeError:
        described = ", ".join(f"{n} {tuple(s)}" for n, s in shapes.items())
        raise ValueError(f"shapes do not broadcast: {described}") from None


def likelihood(value: object) -> str:
    """A likelihood name or LikelihoodType member -> its canonical lower-case name."""
    if isinstance(value, enum.Enum):
        value = value.value
    if not isinstance(value, str):
        raise TypeError(f"likelihood: expected a str or LikelihoodType, got {type(value).__name__}")
    name = value.lower()
    if name not in LIKELIHOODS:
        raise ValueError(f"likelihood: unknown likelihood {value!r}; expected one of {', '.join(LIKELIHOODS)}")
    return name


def finite_number(name: str, value: object) -> float:
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name}: expected a number, got a tensor of shape {tuple(value.shape)}")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: expected a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value}")
    return value


def optional_number(name: str, value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: expected a number or None, got {type(value).__name__}")
    value = float(value)
    if math.isnan(value):
        raise ValueError(f"{name}: expected a number, got nan")
    return value


def positive_int(name: str, value: object) -> int:
    """An integer >= 1 (anything with __index__ but bool) as a Python int."""
    if isinstance(value, bool) or not hasattr(type(value), "__index__"):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
    value = operator.index(value)
    if value < 1:
        raise ValueError(f"{name}: expected an integer >= 1, got {value}")
    return value
