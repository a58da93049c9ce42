"""Runs the bad-input matrix of tests/_bad_input_cases.py in a subprocess
(a crash there fails the case that was running instead of the test run) and
checks each case: the expected exception with a message naming the
argument, or a correct result."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import requires_extension
from _bad_input_cases import CASES

pytestmark = requires_extension
HERE = Path(__file__).parent


def _run_matrix() -> dict[int, dict]:
    """Runs every case; after a crash, goes on from the case after it."""
    records: dict[int, dict] = {}
    start = 0
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])))
    while start < len(CASES):
        proc = subprocess.run(
            [sys.executable, str(HERE / "_bad_input_cases.py"), str(start)],
            capture_output=True, text=True, timeout=600, env=env,
        )
        running = None
        for line in proc.stdout.splitlines():
            entry = json.loads(line)
            if "start" in entry:
                running = entry["start"]
            else:
                records[entry["index"]] = entry
                running = None
        if running is None:  # finished (or died between cases)
            if proc.returncode != 0 and len(records) < len(CASES):
                raise AssertionError(f"case runner failed outside a case:\n{proc.stderr[-3000:]}")
            break
        records[running] = {
            "index": running, "id": CASES[running][0], "ok": False,
            # (the head of stderr: where a sanitizer report or a fatal error begins)
            "message": f"the process died (exit {proc.returncode}): {_report(proc.stderr)}",
        }
        start = running + 1
    return records


def _report(stderr: str) -> str:
    start = max(stderr.find("=="), 0) if "ERROR:" in stderr or "runtime error" in stderr else 0
    return stderr[start:start + 4000]


@pytest.fixture(scope="module")
def matrix():
    return _run_matrix()


@pytest.mark.parametrize("index", range(len(CASES)), ids=[c[0] for c in CASES])
def test_bad_input_case(matrix, index):
    if index not in matrix:
        pytest.skip("PYAUTOENCODER_FAST_SKIP_HUGE=1: the > 2^31-element cases are not run")
    record = matrix[index]
    case_id, code, expectation = CASES[index]
    assert record["ok"], f"{case_id}: {code}\nexpected {expectation[:1] + expectation[1:2]}\ngot {record}"


def test_matrix_size():
    # the closing note of issue 10 quotes this count
    assert len(CASES) >= 100
