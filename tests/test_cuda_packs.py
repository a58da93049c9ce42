"""The vector-pack split of the CUDA kernels (csrc/cuda/packs.h), checked on
the host: it is the index arithmetic every CUDA row sum and elementwise
kernel runs, and no GPU runs the suite on most machines. The C++ check
(tests/_cuda_packs_check.cpp) plays every thread of each launch shape and
fails on an element visited twice or never, or a pack that is misaligned
or leaves its row."""

import shutil
import subprocess
from pathlib import Path

import pytest
from torch.utils.cpp_extension import include_paths

ROOT = Path(__file__).resolve().parent.parent
CHECK = ROOT / "tests" / "_cuda_packs_check.cpp"


def test_packs_cover_every_element_once(tmp_path):
    compiler = shutil.which("c++") or shutil.which("g++")
    if compiler is None:
        pytest.skip("no C++ compiler on PATH")
    binary = tmp_path / "packs_check"
    includes = [f"-I{path}" for path in include_paths()]
    build = subprocess.run(
        [compiler, "-std=c++17", "-O1", "-Wall", "-Wextra", "-Werror", "-Wno-unknown-pragmas",
         *includes, str(CHECK), "-o", str(binary)],
        capture_output=True, text=True,
    )
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(binary)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.strip() == "packs ok"
