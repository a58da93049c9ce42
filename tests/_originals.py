"""The real packages this library reproduces, for the differential tests.

``pyautoencoder==2.0.0`` comes with the ``test`` extra; ``nidl==0.0.2`` is
installed with ``pip install --no-deps nidl==0.0.2`` (its dependencies are
heavy and its package ``__init__`` imports them), and only
``nidl/losses/beta_vae.py``, which needs nothing but torch, is loaded, by path.

Where a package is missing the differential tests are skipped, except under
CI (``CI`` set), where a missing original is a failure: a skipped comparison
must never pass for a checked one.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pytest

PYAUTOENCODER_VERSION = "2.0.0"
NIDL_VERSION = "0.0.2"


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
