"""The real packages this library reproduces, for the differential tests.

``pyautoencoder==2.0.0`` comes with the ``test`` extra; ``nidl==0.0.2`` is
installed with ``pip install --no-deps nidl==0.0.2`` (its dependencies are
heavy and its package ``__init__`` imports them), and only
``nidl/losses/beta_vae.py``, which needs nothing but torch, is loaded, by path.
scvi-tools 1.5.1 needs Python >= 3.12 and a heavy stack to install, so its
wheel is downloaded (``pip download``, cached in
``~/.cache/pyautoencoder_fast``, or the path in ``PAF_SCVI_WHEEL``) and only
``scvi/distributions/_negative_binomial.py`` (torch only, plus one attribute
of ``scvi.settings``) and its two sibling files are loaded, by path, under a
stand-in ``scvi`` package.

Where a package is missing the differential tests are skipped, except under
CI (``CI`` set), where a missing original is a failure: a skipped comparison
must never pass for a checked one.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

PYAUTOENCODER_VERSION = "2.0.0"
NIDL_VERSION = "0.0.2"
SCVI_VERSION = "1.5.1"
SCVI_WHEEL = f"scvi_tools-{SCVI_VERSION}-py3-none-any.whl"
_SCVI_FILES = ("_negative_binomial.py", "_constraints.py", "_utils.py")


def _missing(what: str, install: str) -> None:
    message = f"{what} is not installed ({install})"
    if os.environ.get("CI"):
        pytest.fail(message + "; CI must run the differential tests", pytrace=False)
    pytest.skip(message, allow_module_level=True)


def pyautoencoder() -> ModuleType:
    """``pyautoencoder`` 2.0.0 with its ``loss``, ``vanilla`` and ``variational`` modules."""
    try:
        module = importlib.import_module("pyautoencoder")
    except ImportError:
        _missing(f"pyautoencoder=={PYAUTOENCODER_VERSION}", 'pip install -e ".[test]"')
    if module.__version__ != PYAUTOENCODER_VERSION:
        pytest.fail(f"the differential tests pin pyautoencoder {PYAUTOENCODER_VERSION}, found {module.__version__}")
    return module


def nidl_beta_vae() -> ModuleType:
    """``nidl/losses/beta_vae.py`` of the installed nidl 0.0.2, loaded by path."""
    spec = importlib.util.find_spec("nidl")
    if spec is None or not spec.submodule_search_locations:
        _missing(f"nidl=={NIDL_VERSION}", f"pip install --no-deps nidl=={NIDL_VERSION}")
    from importlib.metadata import version

    if version("nidl") != NIDL_VERSION:
        pytest.fail(f"the differential tests pin nidl {NIDL_VERSION}, found {version('nidl')}")
    path = Path(spec.submodule_search_locations[0]) / "losses" / "beta_vae.py"
    module_spec = importlib.util.spec_from_file_location("nidl_losses_beta_vae", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def _scvi_wheel() -> Path | None:
    given = os.environ.get("PAF_SCVI_WHEEL")
    if given:
        return Path(given) if Path(given).is_file() else None
    cache = Path.home() / ".cache" / "pyautoencoder_fast"
    wheel = cache / SCVI_WHEEL
    if not wheel.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version",
                   "3.12", f"scvi-tools=={SCVI_VERSION}", "-d", str(cache), "-q", "--disable-pip-version-check"]
        try:
            subprocess.run(command, check=True, capture_output=True, timeout=300)
        except (subprocess.SubprocessError, OSError):
            return None
    return wheel if wheel.is_file() else None


_scvi_module: ModuleType | None = None


def scvi_negative_binomial() -> ModuleType:
    """scvi-tools 1.5.1's ``scvi/distributions/_negative_binomial.py`` (with
    ``log_nb_positive``, ``log_zinb_positive``, ``NegativeBinomial``,
    ``ZeroInflatedNegativeBinomial``, ``Poisson``), loaded from its wheel."""
    global _scvi_module
    if _scvi_module is not None:
        return _scvi_module
    wheel = _scvi_wheel()
    if wheel is None:
        _missing(f"scvi-tools=={SCVI_VERSION}'s wheel", "network access for pip download, or PAF_SCVI_WHEEL=<wheel>")
    directory = Path(tempfile.mkdtemp(prefix="paf_scvi_"))
    with zipfile.ZipFile(wheel) as archive:
        for name in _SCVI_FILES:
            (directory / name).write_bytes(archive.read(f"scvi/distributions/{name}"))
    # The stand-in packages live in sys.modules only while the file loads.
    scvi = ModuleType("scvi")
    scvi.settings = SimpleNamespace(warnings_stacklevel=2)
    distributions = ModuleType("scvi.distributions")
    distributions.__path__ = [str(directory)]
    # (an installed scvi-tools' own modules, when already imported, are put
    # back as they were: tests/test_scvi_tools.py patches them)
    saved = {name: module for name, module in sys.modules.items() if name == "scvi" or name.startswith("scvi.")}
    for name in saved:
        sys.modules.pop(name)
    sys.modules["scvi"], sys.modules["scvi.distributions"] = scvi, distributions
    try:
        _scvi_module = importlib.import_module("scvi.distributions._negative_binomial")
    finally:
        for name in list(sys.modules):
            if name == "scvi" or name.startswith("scvi."):
                sys.modules.pop(name)
        sys.modules.update(saved)
    return _scvi_module
