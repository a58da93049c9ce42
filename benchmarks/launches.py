"""Kernel launches and device-to-host transfers per VAE-loss call (CUDA).

``python -m benchmarks.launches [--device cuda] [--batch 64] [--features 784] [--calls 20]``

For the VAE loss at the small size (default B=64, S=1, 784 features, latent
32; gaussian and bernoulli), eager pyautoencoder-style code (``.item()`` per
diagnostic) and this library's ``VAE.compute_loss`` (one ``.tolist()``), it
records ``calls`` calls under ``torch.profiler`` (CPU and CUDA activity) and
reports per call:

* ``kernels``: kernels that ran on the device (memcpy and memset not counted);
* ``DtoH``: device-to-host copies (each one waits for the device);
* ``syncs``: host calls that block on the device (``cudaStreamSynchronize``,
  ``cudaDeviceSynchronize``, ``cudaEventSynchronize``, and synchronous
  ``cudaMemcpy``), which is how ``.item()`` and ``.tolist()`` wait;

for ``compute_loss`` alone (the forward with its diagnostics) and for the
backward (``torch.autograd.grad`` of the objective). Then, for this
library's forward+backward at the small size and at B=256, S=8, 3x64x64,
and of its ZINB count loss at [128, 2000] and [1024, 20000], where its
device time goes: each kernel's launches and microseconds per call. Writes ``results/launches-<device>.md``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

import pyautoencoder_fast as paf

from . import harness as H
from .workloads import COUNT_LIKELIHOODS, Size, Spec, build, eager_vae_loss, fast_vae_loss

BLOCKING_RUNTIME_CALLS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize", "cudaMemcpy")


@dataclass
class Counts:
    kernels: float = 0
    dtoh: float = 0
    syncs: float = 0

    def per_call(self, calls: int) -> "Counts":
        return Counts(self.kernels / calls, self.dtoh / calls, self.syncs / calls)

    def __sub__(self, other: "Counts") -> "Counts":
        return Counts(self.kernels - other.kernels, self.dtoh - other.dtoh, self.syncs - other.syncs)


def count_device_work(events: Iterable) -> Counts:
    """Counts from profiler events (anything with ``name`` and ``device_type``)."""
    counts = Counts()
    for e in events:
        name = e.name
        on_device = getattr(e.device_type, "name", str(e.device_type)).upper().endswith("CUDA")
        if on_device:
            if name.startswith("Memcpy DtoH") or "Device -> Pageable" in name or "Device -> Pinned" in name:
                counts.dtoh += 1
            elif not name.startswith(("Memcpy", "Memset")):
                counts.kernels += 1
        elif name in BLOCKING_RUNTIME_CALLS:  # (cudaMemcpyAsync is not one of them: its wait shows as a sync)
            counts.syncs += 1
    return counts


def profile_counts(fn, calls: int) -> Counts:
    # (the profile's closing synchronize is the profiler's, not the code's)
    return count_device_work(H.profiled_events(fn, calls, host=True)) - Counts(syncs=1)


def median_us(fn, reps: int) -> float:
    for _ in range(5):
        fn()
    times = sorted(H.time_call(fn, "cuda") for _ in range(reps))
    return 1e6 * times[len(times) // 2]


def kernel_breakdown(fn, calls: int) -> list[tuple[str, float, float]]:
    """(kernel name, launches per call, device us per call) of fn, longest first."""
    totals: dict[str, list[float]] = {}
    for name, us in H.device_events(fn, calls):
        entry = totals.setdefault(name, [0, 0.0])
        entry[0] += 1
        entry[1] += us
    rows = [(name, n / calls, us / calls) for name, (n, us) in totals.items()]
    return sorted(rows, key=lambda r: -r[2])


def breakdown_table(heading: str, rows: list[tuple[str, float, float]]) -> str:
    """A kernel_breakdown as a markdown section: its total, then a row per kernel."""
    total = sum(us for _, _, us in rows)
    lines = [f"\n### {heading}: {total:.1f} us of device time per forward+backward\n",
             "| kernel | launches | us | share |", "|---|---:|---:|---:|"]
    for name, n, us in rows:
        short = name if len(name) <= 90 else name[:87] + "..."
        lines.append(f"| `{short}` | {n:g} | {us:.1f} | {100 * us / total:.0f}% |")
    return "\n".join(lines) + "\n"


def breakdown_markdown(batch: int, samples: int, feature_shape: tuple[int, ...], latent: int, calls: int,
                       device: str) -> str:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, *feature_shape, generator=g).to(device)
    x_hat = torch.randn(batch, samples, *feature_shape, generator=g).to(device).requires_grad_()
    mu = torch.randn(batch, latent, generator=g).to(device).requires_grad_()
    log_var = (0.5 * torch.randn(batch, latent, generator=g)).to(device).requires_grad_()
    leaves = [x_hat, mu, log_var]

    def step():
        torch.autograd.grad(fast_vae_loss(x, x_hat, mu, log_var, 1.0, "gaussian").objective, leaves)

    x_hat_mb = x_hat.numel() * x_hat.element_size() / 1e6
    return breakdown_table(f"fast, gaussian, B={batch}, S={samples}, features {feature_shape} (x_hat {x_hat_mb:.1f} MB)",
                           kernel_breakdown(step, calls))


def count_breakdown_markdown(cells: int, genes: int, likelihood: str, calls: int, device: str) -> str:
    """Where this library's count loss (scvi-tools' gene likelihood summed
    per cell, forward + backward) spends its device time."""
    if likelihood not in COUNT_LIKELIHOODS:
        raise ValueError(f"likelihood: expected one of {COUNT_LIKELIHOODS}, got {likelihood!r}")
    bench = build(Spec("count_loss", likelihood, Size(f"cells{cells}-genes{genes}", cells, 1, (genes,)),
                       torch.float32, "fwd+bwd", device))
    return breakdown_table(f"fast, count loss {likelihood}, [{cells}, {genes}]",
                           kernel_breakdown(bench.providers["fast"], calls))


@dataclass
class Row:
    likelihood: str
    provider: str
    forward: Counts
    backward: Counts
    fwd_bwd_us: float


def measure(likelihood: str, batch: int, features: int, latent: int, calls: int, device: str) -> list[Row]:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, features, generator=g)
    x_hat = torch.randn(batch, 1, features, generator=g)
    if likelihood == "bernoulli":
        x = (x > 0.5).float()
    mu, log_var = torch.randn(batch, latent, generator=g), 0.5 * torch.randn(batch, latent, generator=g)
    x, x_hat, mu, log_var = (t.to(device) for t in (x, x_hat, mu, log_var))
    leaves = [t.requires_grad_() for t in (x_hat, mu, log_var)]
    rows = []
    for provider, loss in (("eager", eager_vae_loss), ("fast", fast_vae_loss)):
        def forward(loss=loss):
            return loss(x, *leaves, 1.0, likelihood)

        def forward_backward(loss=loss):
            torch.autograd.grad(loss(x, *leaves, 1.0, likelihood).objective, leaves)

        fwd = profile_counts(forward, calls).per_call(calls)
        both = profile_counts(forward_backward, calls).per_call(calls)
        rows.append(Row(likelihood, provider, fwd, both - fwd, median_us(forward_backward, max(calls, 50))))
    return rows


def render_markdown(rows: list[Row], meta: dict[str, str]) -> str:
    lines = [f"- **{k}**: {v}" for k, v in meta.items()]
    lines += [
        "",
        "| VAE loss | provider | compute_loss: kernels | DtoH | host syncs | backward: kernels | DtoH | host syncs "
        "| fwd+bwd us (median) | speed-up |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    eager_us = {r.likelihood: r.fwd_bwd_us for r in rows if r.provider == "eager"}
    for r in rows:
        f, b = r.forward, r.backward
        lines.append(
            f"| {r.likelihood} | {r.provider} | {f.kernels:g} | {f.dtoh:g} | {f.syncs:g} | {b.kernels:g} | {b.dtoh:g} "
            f"| {b.syncs:g} | {r.fwd_bwd_us:.1f} | {eager_us[r.likelihood] / r.fwd_bwd_us:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    raw = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="python -m benchmarks.launches", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--features", type=int, default=784)
    p.add_argument("--latent", type=int, default=32)
    p.add_argument("--calls", type=int, default=20)
    p.add_argument("--out", default=str(H.RESULTS_DIR))
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(raw)
    if not args.device.startswith("cuda") or not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: counting kernel launches needs a CUDA device "
                         f"(torch.cuda.is_available() is {torch.cuda.is_available()})")
    if args.calls < 1:
        raise SystemExit(f"--calls: expected an integer >= 1, got {args.calls}")
    meta = {
        "device": H.device_description(args.device),
        "torch": torch.__version__,
        "extension": str(paf.extension_info()),
        "size": f"B={args.batch}, S=1, {args.features} features, latent {args.latent}, float32",
        "counted": f"per call, over {args.calls} calls under torch.profiler; the profiler's own closing "
                   "synchronize subtracted",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": " ".join(["python -m benchmarks.launches", *map(shlex.quote, raw)]),
    }
    rows = []
    for likelihood in ("gaussian", "bernoulli"):
        rows += measure(likelihood, args.batch, args.features, args.latent, args.calls, args.device)
    text = render_markdown(rows, meta)
    text += "\n## Where the device time goes (torch.profiler, kernel and copy durations)\n"
    text += breakdown_markdown(args.batch, 1, (args.features,), args.latent, args.calls, args.device)
    text += breakdown_markdown(256, 8, (3, 64, 64), args.latent, args.calls, args.device)
    # (on the H200 of 2026-12-04 the large one took 8.1 ms, eager 3.4 ms)
    text += count_breakdown_markdown(128, 2000, "zinb", args.calls, args.device)
    text += count_breakdown_markdown(1024, 20000, "zinb", args.calls, args.device)
    print(text)
    if not args.no_write:
        path = Path(args.out) / f"launches-{H.device_tag(args.device)}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("# Kernel launches and host syncs per VAE-loss call\n\n" + text)
        print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
