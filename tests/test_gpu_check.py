"""The GPU driver's logic (.ci/gpu_check), checked on the CPU: its plan for a
GPU machine (the build for that GPU and CPU only, the parallel tests, the
sanitizer cases), its budgets (a step is cut off at its budget and no step
runs past the run's deadline), its summary written step by step, a failed
build skipping what needs it, the second run's list of failed tests, and its
refusal without a GPU. Nothing here needs a GPU or the extension."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import io
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DRIVER = ROOT / ".ci" / "gpu_check"

pytestmark = pytest.mark.skipif(not DRIVER.is_file(), reason="needs the source tree (.ci/)")


@pytest.fixture(scope="module")
def gpu_check():
    loader = importlib.machinery.SourceFileLoader("gpu_check", str(DRIVER))
    spec = importlib.util.spec_from_loader("gpu_check", loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # (its dataclasses look their module up)
    try:
        loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("gpu_check", None)


H200 = {"torch": "2.11.0+cu130", "cuda": "13.0", "gpus": 1, "cpu_capability": "AVX512", "cores": 16,
        "name": "NVIDIA H200", "capability": [9, 0]}


def test_plan_for_a_gpu_machine(gpu_check):
    steps = {s.name: s for s in gpu_check.plan(H200, "python3")}
    assert list(steps) == ["build", "errors", "test", "memcheck", "racecheck", "bench"]
    assert steps["errors"].commands[0].argv == ["python3", ".ci/gpu_error_probe"]
    build = steps["build"].commands[0]
    assert build.env == {"FORCE_CUDA": "1", "TORCH_CUDA_ARCH_LIST": "9.0",
                         "PYAUTOENCODER_FAST_CPU_CAPABILITIES": "AVX512", "MAX_JOBS": "16"}
    assert build.argv[1:] == ["setup.py", "build_ext", "--inplace", "-j", "3"]
    test = steps["test"].commands[0].argv
    assert test[test.index("-n") + 1] == "16" and test[-3:] == ["-m", "cuda", "tests"] and "-v" in test and "-q" not in test
    memcheck = steps["memcheck"].commands[0]
    assert memcheck.argv[:1] == ["compute-sanitizer"] and "memcheck" in memcheck.argv
    assert memcheck.argv[-1] == "tests/test_cuda_sanitizer_cases.py"
    assert memcheck.env == {"PYTORCH_NO_CUDA_MEMORY_CACHING": "1"}
    race = steps["racecheck"].commands[0].argv
    assert "racecheck" in race and race[-2:] == ["-k", "row_sum"]
    assert (ROOT / "tests" / "test_cuda_sanitizer_cases.py").is_file()
    # the fixed budgets leave the benchmarks at least a minute of the run
    fixed = sum(s.budget for s in steps.values())
    assert steps["bench"].budget == 0 and fixed <= gpu_check.DEADLINE - 60


def test_rerun_lists_only_the_failed_tests(gpu_check, tmp_path):
    log = tmp_path / "test.log"
    log.write_text(
        "[gw0] [ 10%] PASSED tests/test_cuda.py::test_ok\n"
        "[gw3] [ 41%] FAILED tests/test_cuda.py::test_graph_step[S=8]\n"
        "[gw1] [ 42%] ERROR tests/test_models.py::test_a[cuda-x y]\n"
        "FAILED tests/test_cuda.py::test_graph_step[S=8] - AssertionError: x\n"
        "ERROR tests/test_ops_elbo.py::test_elbo_matches_oracle[cuda-1.0-(4, 1, (17,), 3)-gaussian-dtype0]\n"
        "FAILED tests/test_cuda.py::test_graph_step[S=8] - AssertionError: x\n"
        "=== 1 failed, 6 passed, 1 error in 3.1s ===\n"
    )
    ids = gpu_check.failed_tests(log)
    assert ids == ["tests/test_cuda.py::test_graph_step[S=8]", "tests/test_models.py::test_a[cuda-x y]",
                   "tests/test_ops_elbo.py::test_elbo_matches_oracle[cuda-1.0-(4, 1, (17,), 3)-gaussian-dtype0]"]
    test = {s.name: s for s in gpu_check.plan(H200, "python3", rerun=ids)}["test"].commands[0].argv
    assert test[-3:] == ids and "cuda" not in test and "tests" not in test


def _step(gpu_check, name, budget, *scripts, needs_build=True):
    return gpu_check.Step(name, budget, [gpu_check.Command([sys.executable, "-c", s]) for s in scripts], needs_build)


def test_budgets_summary_and_a_forced_failure(gpu_check, tmp_path):
    steps = [
        _step(gpu_check, "build", 20, "print('built')", needs_build=False),
        _step(gpu_check, "test", 20, "print('3 passed, 1 failed in 0.1s'); raise SystemExit(1)"),
        _step(gpu_check, "memcheck", 1.5, "import time; print('started', flush=True); time.sleep(60)"),
        _step(gpu_check, "racecheck", 20, "print('========= RACECHECK SUMMARY: 0 hazards displayed')"),
        _step(gpu_check, "bench", 0, "raise SystemExit(3)", "print('training done')"),
    ]
    summary = io.StringIO()
    start = time.monotonic()
    results = gpu_check.run_steps(steps, tmp_path, deadline=40, started=start, summary=summary)
    assert time.monotonic() - start < 20  # the hanging step was cut off at its budget
    status = {r.step: r.status for r in results}
    assert status == {"build": "passed", "test": "FAILED", "memcheck": "TIMEOUT", "racecheck": "passed", "bench": "FAILED"}
    lines = summary.getvalue().splitlines()
    assert [l.split()[0] for l in lines] == ["build", "test", "memcheck", "racecheck", "bench"]
    assert "3 passed, 1 failed" in lines[1] and "exit 1" in lines[1]
    assert "cut off" in (tmp_path / "memcheck.log").read_text()
    assert "RACECHECK SUMMARY" in lines[3]
    # a failed benchmark still lets the training benchmark run
    assert "training done" in (tmp_path / "bench.log").read_text()
    for name in status:
        assert (tmp_path / f"{name}.log").is_file()


def test_a_failed_build_skips_the_rest_and_the_deadline_holds(gpu_check, tmp_path):
    steps = [
        _step(gpu_check, "build", 20, "raise SystemExit('error: nvcc failed')", needs_build=False),
        _step(gpu_check, "test", 20, "print('never')"),
    ]
    results = gpu_check.run_steps(steps, tmp_path, deadline=40, started=time.monotonic(), summary=io.StringIO())
    assert [(r.step, r.status) for r in results] == [("build", "FAILED"), ("test", "skipped")]
    assert "nvcc failed" in results[0].detail and not (tmp_path / "test.log").exists()
    # a run whose deadline has passed starts nothing more
    late = [_step(gpu_check, "test", 20, "print('never')", needs_build=False),
            _step(gpu_check, "bench", 0, "print('never')")]
    results = gpu_check.run_steps(late, tmp_path, deadline=3, started=time.monotonic() - 10, summary=io.StringIO())
    assert [r.status for r in results] == ["skipped", "skipped"]
    assert "no time left" in results[0].detail


def test_refuses_without_a_gpu(tmp_path):
    """The real command on this CPU: a summary saying why, exit status 1."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    done = subprocess.run([sys.executable, str(DRIVER), "all"], capture_output=True, text=True,
                          env={"OUT": str(tmp_path), "PATH": "/usr/bin:/bin"}, timeout=300)
    assert done.returncode == 1, done.stderr
    summary = (tmp_path / "summary.txt").read_text()
    assert summary.startswith("carried wheels: ")
    assert "no CUDA GPU visible to torch" in summary and "'gpus': 0" in summary
    unknown = subprocess.run([sys.executable, str(DRIVER), "tests"], capture_output=True, text=True, timeout=60)
    assert unknown.returncode == 2 and "unknown step" in unknown.stderr
