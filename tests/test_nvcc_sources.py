"""The sources nvcc compiles build no error message by streaming a number.

The second GPU run (NVIDIA H200, torch 2.11.0+cu130, nvcc 13.0 with the
machine's own host gcc) found that a failed TORCH_CHECK in a .cu file whose
message held an integer or a double crashed the process (SIGSEGV in
std::ostream::_M_insert<long>, backtrace by cuda-gdb) instead of raising, while
the same check in the CPU kernels raised. The checks that CUDA code reaches use
PAF_CHECK (csrc/common/checks.h), which makes the message's text out of line
in C++-compiled code. torch's own inline checks still stream numbers in their
error paths (c10::str in ArrayRef and intrusive_ptr asserts); those are not
reachable from user input past our checks. This test keeps ours from coming back.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STREAMING = re.compile(r"\b(TORCH_CHECK\w*|AT_ASSERT\w*|c10::str|std::(?:o|i)?stringstream|std::ostream|std::cout|std::cerr)\b")


def _nvcc_sources() -> list[Path]:
    cuda = sorted((ROOT / "csrc" / "cuda").glob("*"))
    # the shared headers the .cu files include, common/args/ and common/formulas/
    # too (checks.cpp is compiled by the C++ compiler only)
    return cuda + sorted((ROOT / "csrc" / "common").rglob("*.h"))


def test_nvcc_compiled_sources_build_messages_without_streams():
    sources = _nvcc_sources()
    if not sources:
        pytest.skip("needs the source tree (csrc/)")
    offenders = []
    for path in sources:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("//", 1)[0]
            if STREAMING.search(code):
                offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not offenders, "use PAF_CHECK (csrc/common/checks.h) in code nvcc compiles:\n" + "\n".join(offenders)


def test_paf_check_messages_match_torch_check():
    """PAF_CHECK writes numbers, shapes, dtypes and devices as TORCH_CHECK did."""
    import torch

    import pyautoencoder_fast as paf

    if not paf.extension_available():
        pytest.skip("extension not loaded")
    ops = torch.ops.pyautoencoder_fast
    cases = [
        (lambda: ops.kl_diag_gaussian(torch.zeros(2, 3), torch.zeros(2, 3), None, None, True, 1.5, -0.25),
         ValueError, "clamp_min (1.5) must not exceed clamp_max (-0.25)"),
        (lambda: ops.reparameterize(torch.zeros(2, 3), torch.zeros(2, 3), -3, torch.tensor(1)),
         ValueError, "num_samples: expected S >= 1, got -3"),
        (lambda: ops.elbo_backward_x_hat(torch.zeros(2, 3), torch.zeros(2, 3)),
         RuntimeError, "grad_stats: expected 4 elements, got shape [2, 3]"),
        (lambda: ops.reparameterize(torch.zeros(2, 3), torch.zeros(2, 3), 1, torch.tensor([1.0])),
         RuntimeError, "seed: expected a one-element int64 tensor, got dtype Float and shape [1]"),
    ]
    for call, exc, message in cases:
        with pytest.raises(exc) as info:
            call()
        assert message in str(info.value), str(info.value)
