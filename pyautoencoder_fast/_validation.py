"""Argument checks with messages that name the argument and what was wrong.

Types and dtypes raise ``TypeError``; devices and values raise
``ValueError``; shapes that do not fit raise :class:`ShapeError`, a
``ValueError`` that is also the ``RuntimeError`` torch raises for them (so
code written against the pure-PyTorch originals catches it as before). The
C++ kernels check again (``RuntimeError``) for direct ``torch.ops`` callers.
"""

from __future__ import annotations

import math
import operator

import torch
from torch import Tensor

# The likelihood names and their checks live in _likelihoods; LIKELIHOODS
# stays importable from here (tests read it).
from ._likelihoods import LIKELIHOODS  # noqa: F401

FLOATING_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


class ShapeError(ValueError, RuntimeError):
    """Tensor shapes that do not match or broadcast.

    A ``ValueError`` (a bad argument) and a ``RuntimeError`` (what PyTorch's
    own broadcasting raises in the original pure-PyTorch code)."""


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


def real(name: str, value: object) -> Tensor:
    """A tensor of real numbers: floating, integer or bool (targets such as
    binarised images); it is promoted with the floating arguments, as
    PyTorch's arithmetic would."""
    t = tensor(name, value)
    if t.is_complex():
        raise TypeError(f"{name}: expected a real tensor, got {t.dtype}")
    return t


def same_device(**named: Tensor | None) -> None:
    items = [(n, t) for n, t in named.items() if t is not None]
    first_name, first = items[0]
    for name, t in items[1:]:
        if t.device != first.device:
            raise ValueError(f"{name}: on device {t.device}, but {first_name} is on {first.device}")


def promote(*tensors: Tensor | None) -> list[Tensor | None]:
    """Casts the given tensors to their common dtype (no copy if equal); one
    of them is floating, so the common dtype is floating."""
    present = [t for t in tensors if t is not None]
    dtype = present[0].dtype
    if all(t.dtype == dtype for t in present):  # the common case: nothing to do
        return list(tensors)
    for t in present[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    return [None if t is None else t.to(dtype) for t in tensors]


def min_dim(name: str, t: Tensor, dims: int, layout: str) -> None:
    if t.dim() < dims:
        raise ShapeError(f"{name}: expected shape {layout}, got {tuple(t.shape)}")


def exact_dim(name: str, t: Tensor, dims: int, layout: str) -> None:
    if t.dim() != dims:
        raise ShapeError(f"{name}: expected shape {layout}, got {tuple(t.shape)}")


def same_floating_tensors(*tensors: object) -> bool:
    """True for the usual call: tensors of one floating dtype on one device
    (one cheap test; anything else goes through the detailed checks, which
    name what is wrong)."""
    first = tensors[0]
    if not isinstance(first, Tensor) or first.dtype not in FLOATING_DTYPES:
        return False
    dtype, device = first.dtype, first.device
    for t in tensors[1:]:
        if not isinstance(t, Tensor) or t.dtype is not dtype or t.device != device:
            return False
    return True


def broadcastable(**named: Tensor | None) -> torch.Size:
    shapes = {n: t.shape for n, t in named.items() if t is not None}
    first = next(iter(shapes.values()))
    if all(s == first for s in shapes.values()):  # torch.broadcast_shapes costs ~8 us
        return first
    try:
        return torch.broadcast_shapes(*shapes.values())
    except RuntimeError:
        described = ", ".join(f"{n} {tuple(s)}" for n, s in shapes.items())
        raise ShapeError(f"shapes do not broadcast: {described}") from None


def finite_number(name: str, value: object) -> float:
    # (comparisons, not math.isfinite: under torch.compile(dynamic=True) a
    # float default argument may arrive as a symbolic float, which dynamo
    # compares but cannot pass to math.isfinite)
    if type(value) in (float, int) and -math.inf < value < math.inf:  # the usual call
        return float(value)
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


def positive_int(name: str, value: object, message: str = "{name}: expected an integer >= 1, got {value}") -> int:
    """An integer >= 1 (anything with __index__ but bool) as a Python int;
    ``message`` is the ``ValueError``'s text for one below 1."""
    if isinstance(value, bool) or not hasattr(type(value), "__index__"):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
    value = operator.index(value)
    if value < 1:
        raise ValueError(message.format(name=name, value=value))
    return value


def num_samples(S: object) -> int:
    """The Monte Carlo sample count ``S`` of the models, with the seed's
    ``ValueError("S must be >= 1. ...")`` when it is below 1."""
    return positive_int("S", S, "S must be >= 1. Got S={value}.")
