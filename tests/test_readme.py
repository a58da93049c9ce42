"""Every ```python block of README.md and of the pages docs/*.md runs as
written, on its own.

The blocks are found by parsing those files (so a block or a page added
later is tested without touching this file); each runs in a fresh interpreter
(``sys.executable -c``) in an empty temporary directory, with the
environment of the test run (``PYAUTOENCODER_FAST_BACKEND`` included) and
the package under test importable. A block that truly cannot run says so in
its first line, ``# not run by tests/test_readme.py: <reason>``, and is
skipped with that reason; no block does today. A block that needs an
optional package names it in its first line, ``# needs <module> (<how to
install>)``: it is skipped, saying so, where that module is missing, except
that ``PAF_REQUIRE_SCVI_TOOLS=1`` (``.ci/run``) makes a missing ``scvi`` fail.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import pyautoencoder_fast as paf

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"  # the documentation site's pages (mkdocs.yml)
PYTHON_INFO = {"python", "py", "python3"}
SKIP_MARK = "# not run by tests/test_readme.py:"
NEEDS_MARK = re.compile(r"^# needs (?P<module>[A-Za-z_][A-Za-z0-9_.]*)\b")
TIMEOUT_S = 300

_FENCE = re.compile(r"^ {0,3}(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`\s]*)")


def python_blocks(text: str) -> list[tuple[int, str]]:
    """(line number of the opening fence, code) of every fenced block whose
    info string is python (CommonMark fences: ``` or ~~~, closed by a fence
    of the same character at least as long)."""
    blocks, lines = [], text.splitlines()
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, info = opening["fence"], opening["info"].lower()
        start, body = i + 1, []
        i += 1
        while i < len(lines):
            closing = _FENCE.match(lines[i])
            if closing and closing["fence"][0] == fence[0] and len(closing["fence"]) >= len(fence) and not closing["info"]:
                break
            body.append(lines[i])
            i += 1
        i += 1  # past the closing fence (or the end: an unclosed block runs to the end)
        if info in PYTHON_INFO:
            blocks.append((start, "\n".join(body) + "\n"))
    return blocks


if not README.is_file() or not DOCS.is_dir():  # (.ci/wheel_check copies both next to tests/)
    message = f"{README} or {DOCS} is missing: the documentation's examples cannot be run"
    if os.environ.get("CI"):
        pytest.fail(message + "; CI must run them", pytrace=False)
    pytest.skip(message, allow_module_level=True)
PAGES = [README, *sorted(DOCS.glob("*.md"))]
# (file name relative to the root, line number of the opening fence, code)
BLOCKS = [
    (page.relative_to(ROOT).as_posix(), line, code)
    for page in PAGES
    for line, code in python_blocks(page.read_text(encoding="utf-8"))
]


def _block_id(block: tuple[str, int, str]) -> str:
    name, line, code = block
    first = next((s.strip() for s in code.splitlines() if s.strip()), "")
    return f"{name}:L{line}:{first[:50]}"


def test_the_readme_has_python_blocks():
    # A parser that found nothing would make every other test here vacuous.
    assert sum(name == "README.md" for name, _, _ in BLOCKS) >= 4, BLOCKS
    assert any(name.startswith("docs/") for name, _, _ in BLOCKS), BLOCKS
    assert python_blocks("```python\na = 1\n```\n\n~~~~ Python\n```\nb = 2\n~~~~\n```bash\nls\n```\n") == [
        (1, "a = 1\n"),
        (5, "```\nb = 2\n"),
    ]


@pytest.mark.parametrize("block", BLOCKS, ids=[_block_id(b) for b in BLOCKS])
def test_readme_python_block_runs(block, tmp_path):
    name, line, code = block
    first = code.lstrip().splitlines()[0] if code.strip() else ""
    if first.startswith(SKIP_MARK):
        pytest.skip(f"{name} line {line}: {first[len(SKIP_MARK):].strip()}")
    needs = NEEDS_MARK.match(first)
    if needs:
        import importlib.util

        module = needs["module"]
        required = module == "scvi" and os.environ.get("PAF_REQUIRE_SCVI_TOOLS") == "1"
        if importlib.util.find_spec(module) is None and not required:
            pytest.skip(f"{name} line {line}: {module} is not installed ({first[1:].strip()})")
    # The package this test session imported, whether installed or run from the checkout.
    package_root = str(Path(paf.__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT_S
    )
    assert proc.returncode == 0, (
        f"{name} block at line {line} exited with {proc.returncode}\n"
        f"--- stderr ---\n{proc.stderr[-6000:]}\n--- stdout ---\n{proc.stdout[-2000:]}"
    )
