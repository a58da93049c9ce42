"""Which implementation runs the ops: the compiled extension or the reference.

``PYAUTOENCODER_FAST_BACKEND`` chooses at import time:

* ``auto`` (default): the extension if it loads, else the pure-PyTorch
  reference, with one warning that says why;
* ``extension``: the extension, or an ``ImportError`` carrying the load error;
* ``reference``: always the pure-PyTorch reference.

In code: :func:`extension_available`, :func:`active_backend` and the context
manager :func:`use_backend`.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import warnings
from typing import Iterator

import torch

ENV_VAR = "PYAUTOENCODER_FAST_BACKEND"
BACKENDS = ("auto", "extension", "reference")

_load_error: str | None = None
_loaded = False
_with_cuda = False
# Module globals rather than thread-locals: torch.compile guards on them.
_default_backend = "reference"
_override: str | None = None


def _cpu_supports(capability: str) -> bool:
    if capability == "AVX512":
        return torch.cpu._is_avx512_supported()
    if capability == "AVX2":
        return torch.cpu._is_avx2_supported()
    return True


def _load_extension() -> str | None:
    """Loads ``_C`` and registers fake kernels and autograd; returns why not."""
    try:
        build_config = importlib.import_module("pyautoencoder_fast._build_config")
    except ImportError:
        return (
            "the compiled extension pyautoencoder_fast._C is not built "
            "(install with: pip install --no-build-isolation -e .)"
        )
    if not _cpu_supports(build_config.CPU_CAPABILITY):
        return (
            f"pyautoencoder_fast._C was compiled for {build_config.CPU_CAPABILITY}, which this "
            "CPU lacks; rebuild here or with PYAUTOENCODER_FAST_CPU_CAPABILITY=DEFAULT"
        )
    try:
        importlib.import_module("pyautoencoder_fast._C")
    except Exception as exc:  # noqa: BLE001 - any load failure means "use the reference"
        return f"importing pyautoencoder_fast._C failed: {type(exc).__name__}: {exc}"
    from . import _ops

    _ops.register_all()
    global _with_cuda
    _with_cuda = bool(build_config.WITH_CUDA)
    return None


def _initialise() -> None:
    global _load_error, _loaded, _default_backend
    requested = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    if requested not in BACKENDS:
        raise ValueError(f"{ENV_VAR}={requested!r}: expected one of {', '.join(BACKENDS)}")
    if requested == "reference":
        _load_error = f"not loaded: {ENV_VAR}=reference"
        _default_backend = "reference"
        return
    _load_error = _load_extension()
    _loaded = _load_error is None
    if _loaded:
        _default_backend = "extension"
        return
    if requested == "extension":
        raise ImportError(f"{ENV_VAR}=extension but the extension cannot be used: {_load_error}")
    _default_backend = "reference"
    warnings.warn(
        f"pyautoencoder_fast: using the pure-PyTorch reference ops because {_load_error}",
        RuntimeWarning,
        stacklevel=3,
    )


def extension_available() -> bool:
    """True when the compiled extension is loaded and its ops are registered."""
    return _loaded


def extension_load_error() -> str | None:
    """Why the extension is not in use (None when it is loaded)."""
    return _load_error


def active_backend() -> str:
    """``"extension"`` or ``"reference"``: what ops called now will run on."""
    return _override if _override is not None else _default_backend


def extension_info() -> dict[str, object]:
    """Build facts of the loaded extension (CPU instruction set, CUDA)."""
    if not _loaded:
        return {"loaded": False, "error": _load_error}
    from . import _C  # type: ignore[attr-defined]

    return {"loaded": True, "cpu_capability": _C.cpu_capability(), "with_cuda": _C.with_cuda()}


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Runs the enclosed code on ``"extension"``, ``"reference"`` or ``"auto"``.

    ``"extension"`` raises ``RuntimeError`` (with the load error) if the
    extension is not available. The choice is process-wide.
    """
    global _override
    if name not in BACKENDS:
        raise ValueError(f"backend: expected one of {', '.join(BACKENDS)}, got {name!r}")
    if name == "extension" and not _loaded:
        raise RuntimeError(f"backend 'extension' is not available: {_load_error}")
    chosen = "extension" if (name == "auto" and _loaded) else ("reference" if name == "auto" else name)
    previous = _override
    _override = chosen
    try:
        yield
    finally:
        _override = previous


def runs_on_extension(*tensors: torch.Tensor) -> bool:
    """Whether an op on these tensors runs on the compiled kernels.

    True when the extension backend is active and it has kernels for the
    tensors' device (CPU always; CUDA when compiled with CUDA).
    """
    if active_backend() != "extension":
        return False
    device = tensors[0].device.type
    if device == "cpu":
        return True
    return device == "cuda" and _with_cuda
