"""Backend selection: environment variable, use_backend, fallback warning."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

import pyautoencoder_fast as paf
from pyautoencoder_fast import functional as F
from pyautoencoder_fast import reference


# Prepended by _run(hide_extension=True): simulates an unbuilt extension.
_HIDE_EXTENSION = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "pyautoencoder_fast._C":
            raise ImportError("simulated missing build")
sys.meta_path.insert(0, Block())
"""


def _run(code, hide_extension=False, **env):
    code = textwrap.dedent(code)
    if hide_extension:
        code = _HIDE_EXTENSION + code
    full_env = {**os.environ, **env}
    return subprocess.run([sys.executable, "-c", code], env=full_env, capture_output=True, text=True, timeout=120)


def test_reference_env_uses_reference_without_loading():
    r = _run(
        """
        import pyautoencoder_fast as p
        assert not p.extension_available()
        assert p.active_backend() == "reference"
        print(p.extension_load_error())
        """,
        PYAUTOENCODER_FAST_BACKEND="reference",
    )
    assert r.returncode == 0, r.stderr
    assert "PYAUTOENCODER_FAST_BACKEND=reference" in r.stdout


def test_bad_env_value_raises():
    r = _run("import pyautoencoder_fast", PYAUTOENCODER_FAST_BACKEND="gpu-magic")
    assert r.returncode != 0
    assert "PYAUTOENCODER_FAST_BACKEND='gpu-magic': expected one of auto, extension, reference" in r.stderr


def test_auto_falls_back_with_one_warning_when_extension_missing(tmp_path):
    r = _run(
        """
        import warnings
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import pyautoencoder_fast as p
            import torch
            p.functional.log_likelihood(torch.zeros(2), torch.ones(2))
        msgs = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
        assert len(msgs) == 1, msgs
        assert "simulated missing build" in msgs[0], msgs
        assert p.active_backend() == "reference" and not p.extension_available()
        """,
        hide_extension=True,
        PYAUTOENCODER_FAST_BACKEND="auto",
    )
    assert r.returncode == 0, r.stderr


def test_extension_env_raises_with_the_load_error():
    r = _run("import pyautoencoder_fast", hide_extension=True, PYAUTOENCODER_FAST_BACKEND="extension")
    assert r.returncode != 0
    assert "ImportError" in r.stderr and "simulated missing build" in r.stderr


def test_use_backend_switches_and_restores(monkeypatch):
    if not paf.extension_available():
        pytest.skip("extension not loaded")
    assert paf.active_backend() == "extension"
    calls = []
    original = reference.log_likelihood
    monkeypatch.setattr(reference, "log_likelihood", lambda *a: calls.append(1) or original(*a))
    x = torch.zeros(3)
    F.log_likelihood(x, x)
    assert calls == []  # extension path does not touch the reference
    with paf.use_backend("reference"):
        assert paf.active_backend() == "reference"
        F.log_likelihood(x, x)
        with paf.use_backend("auto"):
            assert paf.active_backend() == "extension"
        assert paf.active_backend() == "reference"
    assert calls == [1]
    assert paf.active_backend() == "extension"
    with pytest.raises(ValueError, match="backend: expected one of"):
        with paf.use_backend("fast"):
            pass


def test_extension_info_reports_the_build():
    info = paf.extension_info()
    assert info["loaded"] == paf.extension_available()
    if info["loaded"]:
        assert info["cpu_capability"] in {"DEFAULT", "AVX2", "AVX512"}
