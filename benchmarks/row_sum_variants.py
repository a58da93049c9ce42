"""The ELBO's row-sum kernel variants side by side on a GPU (CUDA only).

``python -m benchmarks.row_sum_variants [--device cuda] [--calls 20] [--no-compile]``

The fused VAE loss (forward + backward, float32) at B=64, 784 features and
at B=128, S=4 and B=256, S=8 of 3x64x64, gaussian and bernoulli, once per
value of ``PAF_CUDA_ROW_SUM`` (how each thread of the long-row kernel that
sums the log-likelihood and writes d objective / d x_hat takes its share:
``ahead``, the default, and ``packs``; csrc/cuda/packs.h), in one process: its device time per call
(torch.profiler's kernel and copy durations), that time against a 256 MiB
device copy timed alike (the minimum bytes: x and x_hat read once, the
gradient written once), the same against ``torch.compile`` of the eager loss,
and the longest kernel's share. Every variant's objective and gradients are
checked against the first's before it is timed. Writes
``results/row-sum-variants-<device>.md``.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

import pyautoencoder_fast as paf

from . import harness as H
from . import workloads as W
from .launches import kernel_breakdown

VARIABLE = "PAF_CUDA_ROW_SUM"
VARIANTS = ("ahead", "packs")
SIZES = (W.SIZES["small"], W.SIZES["large"], W.LARGER)
LIKELIHOODS = ("gaussian", "bernoulli")


@dataclass
class Row:
    case: str
    provider: str  # "compile" or "fast, <variant>"
    device_us: float
    pct_copy: float
    vs_compile: float  # device time over compile's
    top_kernel: str
    top_share: float


def _set_variant(value: str | None) -> None:
    if value is None:
        os.environ.pop(VARIABLE, None)
    else:
        os.environ[VARIABLE] = value


def _check_same(reference: dict, results: dict, label: str) -> None:
    """The variant computes the same loss: objective and gradients within
    float32 rounding of the first variant's."""
    for key, expected in reference.items():
        got = results[key]
        if isinstance(expected, torch.Tensor):
            scale = expected.abs().max().item() or 1.0
            err = (got - expected).abs().max().item() / scale
        else:
            err = abs(got - expected) / max(abs(expected), 1.0)
        if not err <= 1e-5:
            raise H.ProviderMismatch(f"{label}: {key} differs from {VARIANTS[0]}'s by {err:.3g} (relative)")


def measure_case(size: W.Size, likelihood: str, calls: int, copy_gbps: float, compile_too: bool) -> list[Row]:
    spec = W.Spec("vae_loss", likelihood, size, torch.float32, "fwd+bwd", "cuda")
    torch._dynamo.reset()
    bench = W.build(spec)
    fast = bench.providers["fast"]
    label = f"{likelihood}, B={size.batch}, S={size.samples}, {'x'.join(map(str, size.features))}"
    rows = []
    compile_us = math.nan
    if compile_too:
        compiled = bench.providers["compile"]
        for _ in range(3):
            compiled()
        compile_us = H.device_seconds(compiled, calls) * 1e6
        rows.append(Row(label, "compile", compile_us, 100.0 * bench.min_bytes / compile_us / 1e3 / copy_gbps, 1.0,
                        "", math.nan))
    reference = None
    for variant in VARIANTS:
        _set_variant(variant)
        results = fast()
        if reference is None:
            reference = results
        else:
            _check_same(reference, results, f"{label}, {variant}")
        us = H.device_seconds(fast, calls) * 1e6
        kernels = kernel_breakdown(fast, calls)
        name, _, top_us = kernels[0]
        total = sum(k[2] for k in kernels)
        rows.append(Row(label, f"fast, {variant}", us, 100.0 * bench.min_bytes / us / 1e3 / copy_gbps,
                        us / compile_us, name[:60], top_us / total))
    _set_variant(None)
    return rows


def render_markdown(rows: list[Row], meta: dict[str, str]) -> str:
    lines = [f"- **{k}**: {v}" for k, v in meta.items()]
    lines += ["", "| case | provider | device us | % copy (min bytes) | vs compile | longest kernel | its share |",
              "|---|---|---:|---:|---:|---|---:|"]
    for r in rows:
        vs = "" if math.isnan(r.vs_compile) else f"{r.vs_compile:.2f}x"
        share = "" if math.isnan(r.top_share) else f"{100 * r.top_share:.0f}%"
        kernel = f"`{r.top_kernel}`" if r.top_kernel else ""
        lines.append(f"| {r.case} | {r.provider} | {r.device_us:.1f} | {r.pct_copy:.0f} | {vs} | {kernel} | {share} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    raw = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="python -m benchmarks.row_sum_variants", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--calls", type=int, default=20)
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile's device time")
    p.add_argument("--out", default=str(H.RESULTS_DIR))
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(raw)
    if not args.device.startswith("cuda") or not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: the row-sum variants are CUDA kernels and need a CUDA device "
                         f"(torch.cuda.is_available() is {torch.cuda.is_available()})")
    if args.calls < 1:
        raise SystemExit(f"--calls: expected an integer >= 1, got {args.calls}")
    if not paf.extension_info().get("with_cuda"):
        raise SystemExit("the extension has no CUDA kernels (paf.extension_info()['with_cuda'] is false)")
    copy_gbps = H.measure_copy_device_bandwidth(256, args.device)
    meta = {
        "device": H.device_description(args.device),
        "torch": torch.__version__,
        "extension": str(paf.extension_info()),
        "copy": f"{copy_gbps:.0f} GB/s (256 MiB dst.copy_(src), device time, bytes = 2*size)",
        "timed": f"device time per forward+backward: torch.profiler's kernel and copy durations over {args.calls} calls",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": " ".join(["python -m benchmarks.row_sum_variants", *map(shlex.quote, raw)]),
    }
    rows = []
    for size in SIZES:
        for likelihood in LIKELIHOODS:
            rows += measure_case(size, likelihood, args.calls, copy_gbps, not args.no_compile)
            print(render_markdown(rows[-len(VARIANTS) - (0 if args.no_compile else 1):], {}), flush=True)
    text = render_markdown(rows, meta)
    print(text)
    if not args.no_write:
        path = Path(args.out) / f"row-sum-variants-{H.device_tag(args.device)}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# The ELBO's row-sum kernel variants ({VARIABLE})\n\n" + text)
        print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
