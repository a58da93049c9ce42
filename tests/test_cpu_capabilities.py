"""One build, every x86-64 CPU: the CPU kernels per instruction set agree.

The extension holds one CPU kernel library per instruction set (DEFAULT,
AVX2, AVX512) and loads the one ATen's capability names. Each capability
this CPU supports is forced with ``ATEN_CPU_CAPABILITY`` in a subprocess
that runs every op (values and gradients, four dtypes, odd sizes that hit
vector bodies and scalar tails; ``_capability_probe.py``); the results must
agree with the DEFAULT library's within the dtype's tolerance.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import pyautoencoder_fast as paf
from pyautoencoder_fast import _backend

pytestmark = pytest.mark.skipif(not paf.extension_available(), reason="extension not loaded")

PROBE = Path(__file__).with_name("_capability_probe.py")
ORDER = ("DEFAULT", "AVX2", "AVX512")
# Different vector widths sum in a different order; these bound the difference.
TOL = {
    "torch.float64": dict(rtol=1e-12, atol=1e-12),
    "torch.float32": dict(rtol=1e-5, atol=1e-5),
    "torch.float16": dict(rtol=4e-3, atol=4e-3),
    "torch.bfloat16": dict(rtol=3e-2, atol=3e-2),
}


def _this_cpu_supports() -> list[str]:
    """The capabilities this CPU supports that the build can load (a build
    without DEFAULT has no library for ATEN_CPU_CAPABILITY=default)."""
    best = torch.backends.cpu.get_cpu_capability()  # without ATEN_CPU_CAPABILITY set here
    if os.environ.get("ATEN_CPU_CAPABILITY"):
        pytest.skip("ATEN_CPU_CAPABILITY is set for the whole run")
    supported = list(ORDER[: ORDER.index(best) + 1]) if best in ORDER else ["DEFAULT"]
    built = tuple(paf.extension_info()["cpu_capabilities_built"])
    return [c for c in supported if _backend.cpu_library_for(c, built) is not None]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = {}
    for capability in _this_cpu_supports():
        path = tmp_path_factory.mktemp("cap") / f"{capability}.pt"
        env = {**os.environ, "ATEN_CPU_CAPABILITY": capability.lower(), "PYAUTOENCODER_FAST_BACKEND": "extension"}
        proc = subprocess.run([sys.executable, str(PROBE), str(path)], env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        out[capability] = torch.load(path)
    return out


def test_each_capability_loads_its_own_library(results):
    built = tuple(paf.extension_info()["cpu_capabilities_built"])
    for capability, result in results.items():
        assert result["aten"] == capability
        # the most capable library built within ATen's capability (an
        # unbuilt AVX512 falls back to AVX2 when that was built)
        assert result["info"]["cpu_capability"] == _backend.cpu_library_for(capability, built)


@pytest.mark.parametrize("capability", ["AVX2", "AVX512"])
def test_same_results_as_default(results, capability):
    if capability not in results:
        pytest.skip(f"this CPU lacks {capability} (ATen reports {torch.backends.cpu.get_cpu_capability()})")
    if "DEFAULT" not in results:
        pytest.skip("the build has no DEFAULT library")
    base, other = results["DEFAULT"], results[capability]
    compared = 0
    for dtype, tol in TOL.items():
        assert base[dtype].keys() == other[dtype].keys()
        for key, expected in base[dtype].items():
            torch.testing.assert_close(other[dtype][key], expected, **tol, equal_nan=True, msg=f"{dtype} {key}")
            compared += 1
    assert compared > 150


def test_library_choice_follows_aten():
    built = ("DEFAULT", "AVX2", "AVX512")
    assert _backend.cpu_library_for("AVX512", built) == "AVX512"
    assert _backend.cpu_library_for("AVX2", built) == "AVX2"
    assert _backend.cpu_library_for("DEFAULT", built) == "DEFAULT"
    assert _backend.cpu_library_for("AVX512", ("DEFAULT", "AVX2")) == "AVX2"
    assert _backend.cpu_library_for("AVX2", ("DEFAULT", "AVX512")) == "DEFAULT"  # never above ATen's choice
    assert _backend.cpu_library_for("SVE256", built) == "DEFAULT"  # other architectures
    # a build without DEFAULT (PYAUTOENCODER_FAST_CPU_CAPABILITIES=AVX2): nothing for a lesser CPU
    assert _backend.cpu_library_for("AVX512", ("AVX2",)) == "AVX2"
    assert _backend.cpu_library_for("DEFAULT", ("AVX2",)) is None
    assert _backend.cpu_library_for("SVE256", ("AVX2", "AVX512")) is None


def test_a_build_without_a_library_for_this_cpu_says_so(tmp_path):
    """The build config of PYAUTOENCODER_FAST_CPU_CAPABILITIES=AVX512 on a CPU
    that ATen runs at DEFAULT: no crash and no stray library loaded; the
    package says why and runs on its reference (the real AVX2-only build is
    checked the same way by .ci/sanitizers)."""
    code = (
        "import sys, types; "
        "sys.modules['pyautoencoder_fast._build_config'] = types.SimpleNamespace("
        "CPU_CAPABILITIES=('AVX512',), WITH_CUDA=False); "
        "import pyautoencoder_fast as p; "
        "print(p.extension_available(), p.active_backend()); print(p.extension_load_error())"
    )
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "default", "PYAUTOENCODER_FAST_BACKEND": "auto"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    state, error = done.stdout.splitlines()[-2:]
    assert state == "False reference"
    assert error.startswith("no CPU kernel library built for this CPU: built ['AVX512'], ATen's CPU capability is DEFAULT")
