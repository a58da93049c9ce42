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
import importlib.util
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


# Most capable first; ATen's names (torch.backends.cpu.get_cpu_capability()).
CPU_CAPABILITY_ORDER = ("AVX512", "AVX2", "DEFAULT")
_cpu_capability: str | None = None


def cpu_library_for(aten_capability: str, built: tuple[str, ...]) -> str | None:
    """The CPU kernel library to load: the most capable one built that ATen's
    capability includes (ATen reports what this CPU supports, lowered by
    ``ATEN_CPU_CAPABILITY``; other architectures' names mean DEFAULT); None
    when the build has none of those (it left DEFAULT out)."""
    if aten_capability in CPU_CAPABILITY_ORDER:
        allowed = CPU_CAPABILITY_ORDER[CPU_CAPABILITY_ORDER.index(aten_capability):]
    else:
        allowed = ("DEFAULT",)
    return next((c for c in allowed if c in built), None)


def torch_clamp_grad_at_bounds() -> bool:
    """Whether the installed torch's ``torch.clamp`` passes the gradient at
    exactly a bound: it does up to torch 2.13 (``[-3, -2, 3, 4]`` clamped to
    ``[-3, 3]`` has gradient ``[1, 1, 1, 0]``) and not from 2.14
    (``[0, 1, 0, 0]``). The clamped KL's kernels follow it (decided once, when
    the extension loads), as the reference does by calling torch.clamp."""
    with torch.inference_mode(False), torch.enable_grad():
        bounds = torch.tensor([-1.0, 1.0], requires_grad=True)
        (grad,) = torch.autograd.grad(bounds.clamp(-1.0, 1.0).sum(), bounds)
    return bool(grad.all())


def _load_extension() -> str | None:
    """Loads ``_C``, then the CPU kernel library for this CPU, and registers
    fake kernels and autograd; returns why not."""
    try:
        build_config = importlib.import_module("pyautoencoder_fast._build_config")
    except ImportError:
        return (
            "the compiled extension pyautoencoder_fast._C is not built "
            "(install with: pip install --no-build-isolation -e .)"
        )
    built = tuple(getattr(build_config, "CPU_CAPABILITIES", ()))
    aten_capability = torch.backends.cpu.get_cpu_capability()
    capability = cpu_library_for(aten_capability, built)
    if capability is None:
        return (
            f"no CPU kernel library built for this CPU: built {list(built)}, ATen's CPU capability is "
            f"{aten_capability} (rebuild with DEFAULT in PYAUTOENCODER_FAST_CPU_CAPABILITIES, or unset it)"
        )
    try:
        importlib.import_module("pyautoencoder_fast._C").set_clamp_grad_at_bounds(torch_clamp_grad_at_bounds())
        spec = importlib.util.find_spec(f"pyautoencoder_fast._cpu_{capability.lower()}")
        if spec is None or spec.origin is None:
            raise ImportError(f"the CPU kernel library _cpu_{capability.lower()} is missing")
        torch.ops.load_library(spec.origin)
    except Exception as exc:  # noqa: BLE001 - any load failure means "use the reference"
        return f"loading pyautoencoder_fast's compiled libraries failed: {type(exc).__name__}: {exc}"
    from . import _ops

    _ops.register_all()
    global _with_cuda, _cpu_capability
    _with_cuda = bool(build_config.WITH_CUDA)
    _cpu_capability = capability
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
    """Facts of the loaded extension: the instruction set of the CPU kernels
    in use (``cpu_capability``), ATen's own choice, the ones built, CUDA, and
    the clamp-gradient convention followed (:func:`torch_clamp_grad_at_bounds`)."""
    if not _loaded:
        return {"loaded": False, "error": _load_error}
    from . import _C  # type: ignore[attr-defined]
    from . import _build_config  # type: ignore[attr-defined]

    return {
        "loaded": True,
        "cpu_capability": _cpu_capability,
        "aten_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_capabilities_built": list(_build_config.CPU_CAPABILITIES),
        "with_cuda": _C.with_cuda(),
        "clamp_grad_at_bounds": _C.clamp_grad_at_bounds(),
    }


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
