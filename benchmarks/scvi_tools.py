"""Real scvi-tools training, with and without the switch.

``python -m benchmarks.scvi_tools [--quick] [--case NAME ...] [--epochs N] [--repeats N] [--compile] [--out DIR]``

Seconds per epoch of scvi-tools' own ``model.train()`` (the installed
scvi-tools, CPU), each case trained several ways one after another in the
same process, from the same seed and data:

* ``scvi-tools``: scvi-tools as installed;
* ``switch``: the same, inside ``pyautoencoder_fast.scvi.fused_likelihoods()``;
* ``scvi-tools+compile`` / ``switch+compile`` (``--compile``): scvi-tools'
  own ``plan_kwargs={"compile": True}`` (it compiles the module with
  ``torch.compile`` and sets dynamo's ``suppress_errors``); each run counts
  dynamo's graph breaks and the fused ops in the compiled graphs, so a fused
  op that fell back to eager would show.

An epoch's time is the wall time between Lightning's epoch-start and
epoch-end hooks (training batches only, no validation); the first epoch
(warm-up, compilation) is reported apart and left out of the median.
``--repeats`` runs the whole round again, so each way gets one median per
repeat; each repeat runs in a fresh interpreter (the ways one after another
on the same data there). The last epoch's ``elbo_train`` of each way is
reported beside it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import datetime as _dt
import shlex
import statistics
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

import pyautoencoder_fast as paf

from . import harness as H


TRAIN_SIZE = 0.9  # of the cells; Case.cells counts the training cells


@dataclass(frozen=True)
class Case:
    name: str
    model: str  # "SCVI" or "TOTALVI"
    likelihood: str
    cells: int
    genes: int
    proteins: int = 0


CASES = [
    Case("SCVI zinb 2000", "SCVI", "zinb", 5120, 2000),
    Case("SCVI zinb 20000", "SCVI", "zinb", 5120, 20000),
    Case("SCVI nb 2000", "SCVI", "nb", 5120, 2000),
    Case("SCVI nb 20000", "SCVI", "nb", 5120, 20000),
    Case("TOTALVI 2000+100", "TOTALVI", "nb", 5120, 2000, 100),
]
QUICK = [Case("SCVI zinb 200", "SCVI", "zinb", 512, 200), Case("TOTALVI 200+20", "TOTALVI", "nb", 512, 200, 20)]


def _epoch_timer():
    from lightning.pytorch.callbacks import Callback

    class EpochTimer(Callback):
        def __init__(self):
            self.seconds: list[float] = []

        def on_train_epoch_start(self, trainer, module):
            self._start = time.perf_counter()

        def on_train_epoch_end(self, trainer, module):
            self.seconds.append(time.perf_counter() - self._start)

    return EpochTimer()


def _adata(case: Case):
    from scvi.data import synthetic_iid

    # 2 batches of n / 2 cells; scvi-tools trains on ceil(TRAIN_SIZE n) = case.cells of them
    return synthetic_iid(
        batch_size=int(case.cells / TRAIN_SIZE) // 2,
        n_genes=case.genes,
        n_proteins=max(case.proteins, 1),
        n_batches=2,
        n_labels=3,
    )


def _model(case: Case, adata):
    import scvi

    if case.model == "SCVI":
        scvi.model.SCVI.setup_anndata(adata, batch_key="batch")
        return scvi.model.SCVI(adata, gene_likelihood=case.likelihood)
    scvi.model.TOTALVI.setup_anndata(adata, batch_key="batch", protein_expression_obsm_key="protein_expression")
    return scvi.model.TOTALVI(adata, gene_likelihood=case.likelihood)


class _DynamoCounts:
    """Dynamo's graph breaks during a block (torch._dynamo's counters)."""

    def __enter__(self):
        from torch._dynamo.utils import counters

        self.counters = counters
        self.before = sum(counters["graph_break"].values())
        return self

    def __exit__(self, *exc):
        self.graph_breaks = sum(self.counters["graph_break"].values()) - self.before
        return False


def _train(case: Case, way: str, epochs: int, adata) -> dict:
    import scvi

    from pyautoencoder_fast.scvi import fused_likelihoods

    scvi.settings.seed = 0
    switched, compiled = way.startswith("switch"), way.endswith("+compile")
    timer = _epoch_timer()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with fused_likelihoods() if switched else contextlib.nullcontext():
            model = _model(case, adata)
            if compiled:
                torch._dynamo.reset()
            counts = _DynamoCounts()
            with counts:
                model.train(
                    max_epochs=epochs,
                    batch_size=128,
                    accelerator="cpu",
                    train_size=TRAIN_SIZE,
                    early_stopping=False,
                    check_val_every_n_epoch=10**6,  # no validation epoch (the split exists: TOTALVI needs one)
                    enable_progress_bar=False,
                    callbacks=[timer],
                    plan_kwargs={"compile": True} if compiled else None,
                )
    elbo = model.history["elbo_train"].to_numpy().ravel()
    return {
        "first": timer.seconds[0],
        "median": statistics.median(timer.seconds[1:]) if len(timer.seconds) > 1 else timer.seconds[0],
        "elbo": float(elbo[-1]),
        "graph_breaks": counts.graph_breaks if compiled else None,
        "train_cells": len(model.train_indices),
    }


def _repeat_in_a_process(case: Case, ways: list[str], epochs: int) -> dict[str, dict]:
    """One repeat of a case, every way one after another on the same data,
    in a fresh interpreter: a trained scvi-tools model is not freed when it
    goes out of scope (20000 genes: about 1 GB a model), so a whole run in
    one process ran out of memory."""
    command = [sys.executable, "-m", "benchmarks.scvi_tools", "--worker", case.name, "--epochs", str(epochs),
               "--ways", ",".join(ways)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    if done.returncode != 0:
        raise RuntimeError(f"{case.name}: the worker failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _worker(name: str, ways: list[str], epochs: int) -> int:
    case = next(c for c in CASES + QUICK if c.name == name)
    torch.set_num_threads(H.num_cores())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adata = _adata(case)
    results = {way: _train(case, way, epochs, adata) for way in ways}
    print(json.dumps(results))
    return 0


def compiled_ops(case: Case) -> dict[str, int]:
    """With the switch and ``plan_kwargs={"compile": True}``: how many calls of
    each pyautoencoder_fast op one compiled training step's graphs hold (0 for
    the count op would mean dynamo dropped it to eager)."""
    import scvi

    from pyautoencoder_fast.scvi import fused_likelihoods

    seen: dict[str, int] = {}

    def backend(gm, example_inputs):
        for node in gm.graph.nodes:
            if node.op == "call_function" and "pyautoencoder_fast" in str(node.target):
                seen[str(node.target)] = seen.get(str(node.target), 0) + 1
        return gm.forward

    scvi.settings.seed = 0
    small = Case(case.name, case.model, case.likelihood, 256, min(case.genes, 200), min(case.proteins, 20))
    with warnings.catch_warnings(), fused_likelihoods():
        warnings.simplefilter("ignore")
        model = _model(small, _adata(small))
        torch._dynamo.reset()
        module = model.module
        compiled = torch.compile(module, backend=backend)
        tensors = next(iter(model._make_data_loader(model.adata, batch_size=128)))
        compiled(tensors)
        torch._dynamo.reset()
    return seen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scvi_tools", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small cases, 3 epochs, 1 repeat (a smoke run)")
    parser.add_argument("--case", action="append", help="only the cases whose name contains this (repeatable)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also scvi-tools' plan_kwargs={'compile': True}")
    parser.add_argument("--out", type=Path, default=None, help="write <out>/<device>-scvi-tools.md")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # one repeat of the case of this name (JSON out)
    parser.add_argument("--ways", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return _worker(args.worker, args.ways.split(","), args.epochs)
    try:
        import scvi
    except ImportError as error:
        print(f"scvi-tools is not installed ({error}): pip install -e '.[scvi]'", file=sys.stderr)
        return 2
    cases = QUICK if args.quick else CASES
    if args.case:
        cases = [c for c in cases if any(k.lower() in c.name.lower() for k in args.case)]
    epochs, repeats = (3, 1) if args.quick else (args.epochs, args.repeats)
    ways = ["scvi-tools", "switch"] + (["scvi-tools+compile", "switch+compile"] if args.compile else [])
    torch.set_num_threads(H.num_cores())
    lines = [
        "# scvi-tools training with and without the switch",
        "",
        f"- **device**: {H.device_description('cpu')}",
        f"- **torch**: {torch.__version__}; **scvi-tools**: {scvi.__version__}",
        f"- **extension**: {paf.extension_info()}",
        f"- **date**: {_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- **commit**: {H._git_commit()}",
        f"- **command**: python -m benchmarks.scvi_tools {shlex.join(argv if argv is not None else sys.argv[1:])}",
        f"- **method**: `model.train(max_epochs={epochs}, batch_size=128, train_size={TRAIN_SIZE}, early_stopping=False)`, no validation epoch, on "
        "`scvi.data.synthetic_iid` counts; seconds per epoch = median over epochs 2..N (training batches); "
        f"{repeats} repeat(s), the ways interleaved within each; speed-up = scvi-tools' median / the way's",
        "",
        "| case (training cells) | way | s / epoch, per repeat | first epoch s | speed-up, per repeat | ELBO (last epoch) |"
        + (" graph breaks |" if args.compile else ""),
        "|---|---|---|---:|---|---:|" + ("---:|" if args.compile else ""),
    ]
    print("\n".join(lines), flush=True)
    for case in cases:
        results: dict[str, list[dict]] = {way: [] for way in ways}
        for _ in range(repeats):
            for way, result in _repeat_in_a_process(case, ways, epochs).items():
                results[way].append(result)
        base = [r["median"] for r in results["scvi-tools"]]
        for way in ways:
            rs = results[way]
            medians = ", ".join(f"{r['median']:.3f}" for r in rs)
            speedups = ", ".join(f"{b / r['median']:.2f}x" for b, r in zip(base, rs))
            row = (
                f"| {case.name} ({rs[0]['train_cells']}) | {way} | {medians} | {rs[0]['first']:.2f} | {speedups} | "
                f"{rs[-1]['elbo']:.4f} |"
            )
            if args.compile:
                row += f" {rs[-1]['graph_breaks'] if rs[-1]['graph_breaks'] is not None else '-'} |"
            lines.append(row)
            print(row, flush=True)
    if args.compile:
        ops = compiled_ops(cases[0])
        note = f"\nWith the switch under torch.compile, the graphs of one {cases[0].name} step hold: {ops or 'no fused op'}"
        lines.append(note)
        print(note, flush=True)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / f"{H.device_tag('cpu')}-scvi-tools{'-quick' if args.quick else ''}.md"
        path.write_text("\n".join(lines) + "\n")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
