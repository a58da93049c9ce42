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
import json
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


def _fake_build(root: Path, suffix: str = ".cpython-312-x86_64-linux-gnu.so") -> None:
    """A tree as a build leaves it: setup.py, csrc/ and the package's libraries."""
    (root / "csrc" / "cuda").mkdir(parents=True)
    (root / "setup.py").write_text("setup()\n")
    (root / "csrc" / "ops.cpp").write_text("// ops\n")
    (root / "csrc" / "cuda" / "elbo.cu").write_text("// elbo\n")
    (root / "csrc" / "notes.txt").write_text("not read by the build\n")
    package = root / "pyautoencoder_fast"
    package.mkdir()
    (package / "_build_config.py").write_text("CPU_CAPABILITIES = ('DEFAULT', 'AVX2', 'AVX512')\nWITH_CUDA = True\n")
    for name in ("_C", "_cpu_default", "_cpu_avx2", "_cpu_avx512"):
        (package / f"{name}{suffix}").write_bytes(b"\x7fELF")


def test_prebuilt_stands_in_only_for_its_own_build(gpu_check, tmp_path):
    """.prebuilt/ is used when its stamp matches the tree and the machine, and
    each difference is named otherwise."""
    gpu = {**H200, "torch_git": "70d99e9", "ext_suffix": ".cpython-312-x86_64-linux-gnu.so"}
    tree, prebuilt = tmp_path / "tree", tmp_path / "tree" / ".prebuilt"
    tree.mkdir()
    _fake_build(tree)
    stamp = gpu_check.prebuilt_stamp(gpu, "9.0", root=tree)
    assert stamp["files"] == ["_C.cpython-312-x86_64-linux-gnu.so", "_cpu_avx2.cpython-312-x86_64-linux-gnu.so",
                              "_cpu_avx512.cpython-312-x86_64-linux-gnu.so",
                              "_cpu_default.cpython-312-x86_64-linux-gnu.so", "_build_config.py"]
    assert gpu_check.prebuilt_mismatch(gpu, prebuilt, root=tree) == "none carried"
    (prebuilt / "pyautoencoder_fast").mkdir(parents=True)
    for name in stamp["files"]:
        (prebuilt / "pyautoencoder_fast" / name).write_bytes((tree / "pyautoencoder_fast" / name).read_bytes())
    (prebuilt / "STAMP.json").write_text(json.dumps(stamp))

    assert gpu_check.prebuilt_mismatch(gpu, prebuilt, root=tree) is None
    (tree / "csrc" / "notes.txt").write_text("edited\n")  # not a source
    assert gpu_check.prebuilt_mismatch(gpu, prebuilt, root=tree) is None

    def why(**changes):
        return gpu_check.prebuilt_mismatch({**gpu, **changes}, prebuilt, root=tree) or ""

    assert "torch (2.11.0+cu130 there, 2.12.0+cu130 here)" in why(torch="2.12.0+cu130")
    assert "torch" in why(torch_git="other")
    assert "Python (.cpython-312-x86_64-linux-gnu.so there, .cpython-311-x86_64-linux-gnu.so here)" in why(
        ext_suffix=".cpython-311-x86_64-linux-gnu.so")
    assert "GPU architecture (9.0 there, 10.0 here)" in why(capability=[10, 0])
    assert "CPU library" not in why(cpu_capability="AVX2")
    assert why(cpu_capability="SVE256").startswith("it differs in: CPU library (['DEFAULT', 'AVX2', 'AVX512'] there, SVE256 here)")
    # a source edited, added or removed: other sources
    (tree / "csrc" / "cuda" / "elbo.cu").write_text("// elbo, faster\n")
    assert why() == "it differs in: sources (setup.py or csrc/ changed since)"
    (tree / "csrc" / "cuda" / "elbo.cu").write_text("// elbo\n")
    (tree / "csrc" / "cuda" / "new.cuh").write_text("// new\n")
    assert why() == "it differs in: sources (setup.py or csrc/ changed since)"
    (tree / "csrc" / "cuda" / "new.cuh").unlink()
    assert why() == ""
    (prebuilt / "pyautoencoder_fast" / stamp["files"][0]).unlink()
    assert why() == f"it differs in: files ({stamp['files'][0]} missing)"
    (prebuilt / "STAMP.json").write_text("{")
    assert why().startswith("unreadable STAMP.json")

    # the plan: copy the prebuilt files, check that they load; the build is the fallback
    (prebuilt / "pyautoencoder_fast" / stamp["files"][0]).write_bytes(b"\x7fELF")
    steps = {s.name: s for s in gpu_check.plan(gpu, "python3", prebuilt=prebuilt)}
    install, load = steps["build"].commands
    assert install.argv[:2] == ["cp", "-p"] and install.argv[-1] == "pyautoencoder_fast/"
    assert sorted(Path(a).name for a in install.argv[2:-1]) == sorted(stamp["files"])
    assert "with_cuda" in load.argv[-1]
    default = {s.name: s for s in gpu_check.plan(gpu, "python3")}["build"]
    assert steps["build"].fallback == default.commands and not default.fallback


def test_a_failed_step_runs_its_fallback(gpu_check, tmp_path):
    """The prebuilt extension that fails its load check: the build runs in the
    rest of the step's budget, and the summary says so; one that passes
    never starts the build."""
    def build_step(load_code):
        step = _step(gpu_check, "build", 30, "print('copied')", load_code, needs_build=False)
        step.fallback = [gpu_check.Command([sys.executable, "-c", "print('built here')"]),
                         gpu_check.Command([sys.executable, "-c", "print({'loaded': True, 'with_cuda': True})"])]
        step.notes = ("prebuilt", "the prebuilt extension failed, built here")
        return step

    fails = build_step("raise SystemExit('ImportError: GLIBC_2.38 not found')")
    (result,) = gpu_check.run_steps([fails], tmp_path, deadline=60, started=time.monotonic(), summary=io.StringIO())
    log = (tmp_path / "build.log").read_text()
    assert result.status == "passed" and result.detail.startswith("the prebuilt extension failed, built here: ")
    assert "GLIBC_2.38" in log and "built here" in log and "now the fallback" in log

    loads = build_step("print({'loaded': True, 'with_cuda': True})")
    (result,) = gpu_check.run_steps([loads], tmp_path, deadline=60, started=time.monotonic(), summary=io.StringIO())
    assert result.status == "passed" and result.detail.startswith("prebuilt: ")
    assert "built here" not in (tmp_path / "build.log").read_text()
