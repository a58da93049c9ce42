"""Every op is one row through the tree (docs/adding_an_op.md).

An op <row> declared in csrc/schemas.cpp (with its backward ops, named
<row>_...) has, each named after it:
  csrc/common/args/<row>.h        its argument checks, shared by both devices
  csrc/cpu/<row>.cpp              its CPU kernels, registered for every op of the row
  csrc/cuda/<row>.cu (<row>_*.cu) its CUDA kernels, the same
  csrc/autograd/<row>.cpp         its autograd kernel, registered for <row>
  pyautoencoder_fast/_ops/<row>.py  its fake kernels, for every op of the row
  pyautoencoder_fast/reference.py   <row>(), the pure-PyTorch oracle
  tests/test_ops_<row>.py         its tests against the oracle
These are read from the sources, so a new op that misses a piece fails here,
without a build; the fake kernels are also checked in the dispatcher when the
extension is loaded.
"""

import re
from pathlib import Path

import pytest
import torch

import pyautoencoder_fast as paf
from pyautoencoder_fast import reference

ROOT = Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"
NAMESPACE = "pyautoencoder_fast"

if not (CSRC / "schemas.cpp").is_file():
    # (.ci/wheel_check tests the installed wheel from a copy of tests/ alone;
    # the README's test step and .ci/cuda_build run this in the tree)
    pytest.skip("needs the source tree (csrc/)", allow_module_level=True)


def _declared_ops() -> list[str]:
    text = (CSRC / "schemas.cpp").read_text()
    ops = re.findall(r'"\s*([A-Za-z_][A-Za-z0-9_]*)\(', "".join(re.findall(r"m\.def\(\s*((?:\"[^\"]*\"\s*)+)", text)))
    assert ops, "no m.def(...) found in csrc/schemas.cpp"
    return ops


def _registered(path: Path, key: str) -> set[str]:
    """The op names a source registers for a dispatch key (m.impl("op", ...)
    inside TORCH_LIBRARY_IMPL(pyautoencoder_fast, key, m))."""
    text = path.read_text()
    names = set()
    for block in re.finditer(rf"TORCH_LIBRARY_IMPL\(\s*{NAMESPACE}\s*,\s*{key}\s*,\s*m\s*\)\s*\{{(.*?)\n\}}|"
                             rf"TORCH_LIBRARY_IMPL\(\s*{NAMESPACE}\s*,\s*{key}\s*,\s*m\s*\)\s*\{{([^\n]*)\}}",
                             text, re.S):
        body = block.group(1) or block.group(2) or ""
        names.update(re.findall(r'm\.impl\(\s*"([A-Za-z0-9_]+)"', body))
    return names


OPS = _declared_ops()
ROWS = sorted(p.stem for p in (CSRC / "cpu").glob("*.cpp"))


def _row_of(op: str) -> str:
    """The row an op belongs to: the longest row name it is or starts with."""
    matches = [r for r in ROWS if op == r or op.startswith(r + "_")]
    assert matches, f"{op}: no csrc/cpu/<row>.cpp whose name it starts with (rows: {ROWS})"
    return max(matches, key=len)


def test_schemas_declare_each_op_once_and_rows_are_ops():
    assert len(OPS) == len(set(OPS)), f"declared twice: {sorted({o for o in OPS if OPS.count(o) > 1})}"
    assert set(ROWS) <= set(OPS), f"csrc/cpu/<row>.cpp without the op <row> in csrc/schemas.cpp: {set(ROWS) - set(OPS)}"


@pytest.mark.parametrize("row", ROWS)
def test_row_has_every_piece(row):
    ops = [op for op in OPS if _row_of(op) == row]
    missing = []
    if not (CSRC / "common" / "args" / f"{row}.h").is_file():
        missing.append(f"csrc/common/args/{row}.h")
    cpu = _registered(CSRC / "cpu" / f"{row}.cpp", "CPU")
    missing += [f"csrc/cpu/{row}.cpp: CPU kernel of {op}" for op in ops if op not in cpu]
    cuda_files = sorted((CSRC / "cuda").glob(f"{row}.cu")) + sorted((CSRC / "cuda").glob(f"{row}_*.cu"))
    cuda = set().union(*(_registered(p, "CUDA") for p in cuda_files)) if cuda_files else set()
    missing += [f"csrc/cuda/{row}.cu: CUDA kernel of {op}" for op in ops if op not in cuda]
    autograd = CSRC / "autograd" / f"{row}.cpp"
    if not autograd.is_file() or row not in _registered(autograd, "Autograd"):
        missing.append(f"csrc/autograd/{row}.cpp: Autograd kernel of {row}")
    fake = ROOT / NAMESPACE / "_ops" / f"{row}.py"
    fake_text = fake.read_text() if fake.is_file() else ""
    missing += [f"{NAMESPACE}/_ops/{row}.py: fake kernel of {op}" for op in ops
                if f'"{NAMESPACE}::{op}"' not in fake_text]
    if "register_fake" not in fake_text:
        missing.append(f"{NAMESPACE}/_ops/{row}.py: register_fake")
    if not callable(getattr(reference, row, None)):
        missing.append(f"{NAMESPACE}/reference.py: {row}()")
    if not (ROOT / "tests" / f"test_ops_{row}.py").is_file():
        missing.append(f"tests/test_ops_{row}.py")
    assert not missing, f"op row {row} (ops {ops}) lacks:\n  " + "\n  ".join(missing)


def test_every_op_has_a_row():
    for op in OPS:
        _row_of(op)


def test_every_fake_module_is_registered():
    from pyautoencoder_fast import _ops

    registered = {m.__name__.rsplit(".", 1)[-1] for m in _ops._MODULES}
    assert registered == set(ROWS), f"_ops._MODULES {sorted(registered)} != rows {ROWS}"


@pytest.mark.skipif(not paf.extension_available(), reason="needs the compiled extension")
def test_loaded_ops_match_the_schemas_and_have_fake_kernels():
    loaded = sorted(n.split("::", 1)[1] for n in torch._C._dispatch_get_all_op_names() if n.startswith(f"{NAMESPACE}::"))
    assert loaded == sorted(OPS)
    from torch._library.simple_registry import singleton

    no_fake = [op for op in OPS if singleton.find(f"{NAMESPACE}::{op}").fake_impl.kernel is None]
    assert not no_fake, f"ops without a fake kernel: {no_fake}"


@pytest.mark.parametrize("folder,suffix", [("cpu", ".cpp"), ("autograd", ".cpp"), ("cuda", ".cu")])
def test_each_kernel_file_keeps_its_names_in_its_own_namespace(folder, suffix):
    """setup.py compiles each folder as a few translation units (a unity
    build), so one file's helpers would meet another's: a same-named helper
    would fail to compile or, worse, an overload of another file's could be
    picked. Each file opens only namespace paf::<folder>::<file>, and keeps its
    helpers in an anonymous namespace inside it."""
    wrong = []
    for path in sorted((CSRC / folder).glob("*" + suffix)):
        opened = re.findall(r"^namespace\s+([A-Za-z_:]*)\s*\{", path.read_text(), re.M)
        expected = f"paf::{folder}::{path.stem}"
        if not opened or opened[0] != expected or any(name not in (expected, "") for name in opened):
            wrong.append(f"csrc/{folder}/{path.name}: opens {opened}, expected [{expected!r}, '']")
    assert not wrong, "\n".join(wrong)
