"""Timing, memory, bandwidth, verification and output for the benchmarks.

Method (per case, all providers on the same inputs, one process):

1. Verify: every provider runs once and its results (objective, diagnostics,
   outputs, gradients) are compared with the float64 oracle; a mismatch
   raises :class:`ProviderMismatch` before anything is timed.
2. Warm up each provider (``torch.compile`` compiles here, outside timing).
3. Time: each call individually with ``time.perf_counter`` around the call
   (on CUDA with ``torch.cuda.synchronize()`` before and after, so the time
   is the wall time of a call including launches and host syncs). The
   providers are interleaved in rounds, so slow drifts of a shared machine
   hit them alike. Reported: median, p20, p80, and the minimum and maximum
   (how far single calls swing, e.g. when freed buffers go back to the OS).
4. Achieved GB/s = the workload's minimum bytes (see workloads.py) / median
   time, also as a percentage of the copy bandwidth measured in the same run
   (median of ``dst.copy_(src)`` on a 256 MiB float32 tensor, 2*size bytes).
5. Peak memory beyond the inputs: on CUDA ``max_memory_allocated`` minus
   ``memory_allocated`` before the call; on CPU the high-water mark of the
   CPU allocator's own running total, read from ``torch.profiler``
   allocation events (``profile_memory=True``), taken in a separate call.
   It includes the call's outputs (e.g. the gradients).
"""

from __future__ import annotations

import csv
import datetime as _dt
import gc
import io
import math
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch

import pyautoencoder_fast as paf
from pyautoencoder_fast import _backend

from . import workloads as W
from .workloads import Bench, Spec

RESULTS_DIR = Path(__file__).resolve().parent / "results"
TOLERANCE = {torch.float32: 1e-4, torch.float64: 1e-9, torch.bfloat16: 4e-2, torch.float16: 1e-2}


class ProviderMismatch(AssertionError):
    """A provider's result disagrees with the oracle: the benchmark is void."""


# ------------------------------------------------------------------ config
@dataclass
class Config:
    devices: Sequence[str] = ("cpu",)
    preset: str = "full"  # "full", "quick" or "smoke"
    dtypes: Sequence[torch.dtype] | None = None  # None: the preset's
    workloads: Sequence[str] | None = None  # None: all; else substrings of Spec.label
    providers: Sequence[str] = W.PROVIDERS
    min_time: float | None = None  # seconds of timed calls per provider and case
    min_reps: int | None = None
    max_reps: int | None = None
    warmup: int | None = None
    rounds: int | None = None
    copy_mib: int | None = None
    copy_reps: int | None = None
    out_dir: Path | str | None = RESULTS_DIR
    plot: bool = True
    progress: bool = True
    print_table: bool = True
    command: str = ""
    seed: int = 0
    # A case whose providers disagree with the oracle, or that raises, is
    # reported (printed, and listed in the files' "failed_cases") and the run
    # goes on; without it the first such case ends the run. For a first run
    # on new hardware, where one broken kernel must not hide the others' numbers.
    keep_going: bool = False

    def resolved(self) -> "Config":
        p = PRESETS[self.preset]
        out = Config(**{k: getattr(self, k) for k in self.__dataclass_fields__})
        for key, value in p.items():
            if getattr(out, key) is None:
                setattr(out, key, value)
        return out


PRESETS: dict[str, dict[str, Any]] = {
    "full": dict(dtypes=(torch.float32, torch.bfloat16), min_time=1.0, min_reps=25, max_reps=2000,
                 warmup=3, rounds=5, copy_mib=256, copy_reps=20),
    "quick": dict(dtypes=(torch.float32,), min_time=0.12, min_reps=10, max_reps=200,
                  warmup=2, rounds=2, copy_mib=256, copy_reps=5),
    "smoke": dict(dtypes=(torch.float32,), min_time=0.0, min_reps=2, max_reps=2,
                  warmup=1, rounds=1, copy_mib=8, copy_reps=2),
}


def plan(preset: str, device: str, dtypes: Sequence[torch.dtype]) -> list[Spec]:
    """The cases of a preset, in run order."""
    specs: list[Spec] = []

    def add(workload, variant, size, dtype, mode, sweep=False):
        specs.append(Spec(workload, variant, size, dtype, mode, device, sweep))

    sizes = W.sizes_for(device)
    if preset == "smoke":
        tiny = W.SMOKE_SIZE
        for dtype in dtypes:
            for lik in W.LIKELIHOODS:
                add("vae_loss", lik, tiny, dtype, "fwd+bwd")
            add("vae_loss", "gaussian", tiny, dtype, "fwd")
            add("log_likelihood_sum", "bernoulli", tiny, dtype, "fwd+bwd")
            for name in ("kl_diag_gaussian", "reparameterize", "adagvae_posterior"):
                add(name, "", tiny, dtype, "fwd+bwd")
        for lik in W.COUNT_LIKELIHOODS:  # scvi's code keeps float32 (its masks): float32 only
            add("count_loss", lik, W.Size("tiny", 4, 1, (9,)), torch.float32, "fwd+bwd")
        add("protein_loss", "", W.Size("tiny", 4, 1, (9,)), torch.float32, "fwd+bwd")
        for dtype in dtypes:
            add("vae_loss_learned_var", "gaussian", tiny, dtype, "fwd+bwd")
            for lik in W.IWAE_LIKELIHOODS:
                add("iwae_bound", lik, tiny, dtype, "fwd+bwd")
        return specs
    if preset == "quick":
        for dtype in dtypes:
            for size in sizes:
                for lik in ("gaussian", "bernoulli"):
                    add("vae_loss", lik, size, dtype, "fwd+bwd")
            large = W.SIZES["large"]
            add("log_likelihood_sum", "gaussian", large, dtype, "fwd+bwd")
            for name in ("kl_diag_gaussian", "reparameterize", "adagvae_posterior"):
                add(name, "", large, dtype, "fwd+bwd")
        add("count_loss", "zinb", W.COUNT_SIZES[0], torch.float32, "fwd+bwd")
        if device.startswith("cuda"):
            add("count_loss", "zinb", W.COUNT_LARGER, torch.float32, "fwd+bwd")
        add("protein_loss", "", W.PROTEIN_SIZES[0], torch.float32, "fwd+bwd")
        for dtype in dtypes:
            for size in (W.SIZES["small-b128"], W.SIZES["large"]):
                add("vae_loss_learned_var", "gaussian", size, dtype, "fwd+bwd")
            add("iwae_bound", "bernoulli", W.IWAE_SIZE, dtype, "fwd+bwd")
        return specs
    if preset != "full":
        raise ValueError(f"preset: expected one of {sorted(PRESETS)}, got {preset!r}")
    for dtype in dtypes:
        for lik in W.LIKELIHOODS:
            for size in sizes:
                for mode in W.MODES:
                    add("vae_loss", lik, size, dtype, mode)
        for lik in W.LIKELIHOODS:
            for d in W.SWEEP_FEATURES:
                add("vae_loss", lik, W.sweep_size(d), dtype, "fwd+bwd", sweep=True)
        for lik in W.LIKELIHOODS:
            for size in sizes:
                for mode in W.MODES:
                    add("log_likelihood_sum", lik, size, dtype, mode)
        for name in ("kl_diag_gaussian", "reparameterize", "adagvae_posterior"):
            for size in sizes:
                for mode in W.MODES:
                    add(name, "", size, dtype, mode)
    for lik in W.COUNT_LIKELIHOODS:  # scvi's code keeps float32 (its masks): float32 only
        for size in W.count_sizes_for(device):
            for mode in W.MODES:
                add("count_loss", lik, size, torch.float32, mode)
    for size in W.PROTEIN_SIZES:  # float32, as count_loss
        for mode in W.MODES:
            add("protein_loss", "", size, torch.float32, mode)
    for dtype in dtypes:
        for size in sizes:
            for mode in W.MODES:
                add("vae_loss_learned_var", "gaussian", size, dtype, mode)
        for lik in W.IWAE_LIKELIHOODS:
            for mode in W.MODES:
                add("iwae_bound", lik, W.IWAE_SIZE, dtype, mode)
    return specs


# ------------------------------------------------------------------ device
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def num_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")


def device_tag(device: str) -> str:
    """File-name stem naming the device, e.g. cpu-AMD-EPYC-2c, cuda-NVIDIA-H100-80GB-HBM3."""
    if device.startswith("cuda"):
        return "cuda-" + _slug(torch.cuda.get_device_name(torch.device(device)))
    return f"cpu-{_slug(cpu_model())}-{num_cores()}c"


def device_description(device: str) -> str:
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(device))
        return f"{props.name} ({props.total_memory / 2**30:.0f} GiB), CUDA {torch.version.cuda}"
    return f"CPU {cpu_model()}, {num_cores()} cores, {torch.get_num_threads()} threads"


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).resolve().parent,
            capture_output=True, text=True, timeout=5,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=Path(__file__).resolve().parent,
            capture_output=True, text=True, timeout=5,
        )
        if out.returncode == 0:
            return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


def metadata(device: str, config: Config, copy_gbps: float) -> dict[str, str]:
    probe = torch.empty(0, device=device)
    return {
        "device": device_description(device),
        "cpu_model": cpu_model(),
        "cpu_cores": str(num_cores()),
        "threads": str(torch.get_num_threads()),
        "torch": torch.__version__,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "pyautoencoder_fast": paf.__version__,
        "fast_backend": "extension" if _backend.runs_on_extension(probe) else "reference (extension not used!)",
        "extension": str(paf.extension_info()),
        "git_commit": _git_commit(),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "command": config.command or "(in-process)",
        "preset": config.preset,
        "copy_bandwidth_GBps": f"{copy_gbps:.2f}",
        "copy_method": f"median of dst.copy_(src), {config.copy_mib} MiB float32, bytes = 2*size",
        "timing": "perf_counter per call" + (" with cuda.synchronize" if device.startswith("cuda") else "")
        + "; median [p20, p80]",
        "compile": "torch.compile(eager fn, dynamic=False), default mode, warmed up; "
        "the VAE loss graph-breaks at its .item() diagnostics, as the original code would",
        "peak_memory": "CUDA max_memory_allocated - allocated before" if device.startswith("cuda")
        else "CPU allocator high-water mark via torch.profiler(profile_memory=True)",
    }


# ------------------------------------------------------------------ timing
def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(torch.device(device))


def time_call(fn: Callable[[], Any], device: str) -> float:
    """Wall seconds of one call (synchronized on CUDA)."""
    _sync(device)
    start = time.perf_counter()
    out = fn()
    _sync(device)
    elapsed = time.perf_counter() - start
    del out
    return elapsed


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile, q in [0, 100]."""
    data = sorted(values)
    if not data:
        return math.nan
    pos = (len(data) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def profiled_events(fn: Callable[[], Any], calls: int, host: bool = False) -> list:
    """torch.profiler's events of `calls` calls of fn on CUDA, after one call
    outside the profile (first-call allocations and lazy set-up stay out); the
    host's events too when `host`. The profile ends with a synchronize of its own."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    torch.cuda.synchronize()
    activities = [ProfilerActivity.CPU, ProfilerActivity.CUDA] if host else [ProfilerActivity.CUDA]
    with profile(activities=activities) as prof:
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
    return list(prof.events())


def device_events(fn: Callable[[], Any], calls: int) -> list[tuple[str, float]]:
    """(name, microseconds) of every kernel and copy that `calls` calls of fn
    ran on CUDA, from torch.profiler."""
    from torch.autograd import DeviceType

    return [(e.name, e.time_range.elapsed_us()) for e in profiled_events(fn, calls) if e.device_type == DeviceType.CUDA]


def device_seconds(fn: Callable[[], Any], calls: int = 5) -> float:
    """Device time per call of fn on CUDA: the summed durations of the kernels
    and copies it ran, without host overhead or idle gaps."""
    return sum(us for _, us in device_events(fn, calls)) * 1e-6 / calls


def measure_copy_device_bandwidth(mib: int, device: str) -> float:
    """GB/s of dst.copy_(src) from its device time (bytes = 2*size)."""
    numel = mib * 2**20 // 4
    src = torch.rand(numel, device=device)
    dst = torch.empty_like(src)
    return 2 * numel * 4 / device_seconds(lambda: dst.copy_(src), calls=10) / 1e9


def measure_copy_bandwidth(device: str, mib: int, reps: int) -> float:
    """GB/s of dst.copy_(src) for a float32 tensor of `mib` MiB (bytes = 2*size)."""
    numel = mib * 2**20 // 4
    src = torch.rand(numel, device=device)
    dst = torch.empty_like(src)
    for _ in range(2):
        dst.copy_(src)
    times = [time_call(lambda: dst.copy_(src), device) for _ in range(max(reps, 1))]
    return 2 * numel * 4 / percentile(times, 50) / 1e9


def time_providers(
    providers: dict[str, Callable[[], Any]], device: str, cfg: Config
) -> dict[str, list[float]]:
    """Warm up, then time every provider in interleaved rounds."""
    estimates = {}
    for name, fn in providers.items():
        t = math.inf
        for _ in range(max(cfg.warmup, 1)):
            t = time_call(fn, device)
        estimates[name] = t
    reps = {
        name: int(min(max(math.ceil(cfg.min_time / max(t, 1e-7)), cfg.min_reps), cfg.max_reps))
        for name, t in estimates.items()
    }
    rounds = max(cfg.rounds, 1)
    times: dict[str, list[float]] = {name: [] for name in providers}
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        for r in range(rounds):
            for name, fn in providers.items():
                n = reps[name] // rounds + (1 if r < reps[name] % rounds else 0)
                times[name].extend(time_call(fn, device) for _ in range(n))
    finally:
        if gc_was_enabled:
            gc.enable()
    return times


# ------------------------------------------------------------------ memory
def _allocation_events(prof) -> list:
    from torch._C._profiler import _EventType

    out, stack = [], list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        node = stack.pop()
        stack.extend(node.children)
        if node.tag == _EventType.Allocation:
            out.append(node)
    out.sort(key=lambda e: e.start_time_ns)
    return out


def peak_memory(fn: Callable[[], Any], device: str) -> int:
    """Bytes allocated at the high-water mark of one call, beyond what existed before."""
    gc.collect()
    if device.startswith("cuda"):
        dev = torch.device(device)
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        before = torch.cuda.memory_allocated(dev)
        out = fn()
        torch.cuda.synchronize(dev)
        peak = torch.cuda.max_memory_allocated(dev) - before
        del out
        return int(peak)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = fn()
        del out
    events = [e for e in _allocation_events(prof) if e.extra_fields.device.type == "cpu"]
    if not events:
        return 0
    first = events[0].extra_fields
    base = first.total_allocated - first.alloc_size
    return int(max(e.extra_fields.total_allocated for e in events) - base)


# ------------------------------------------------------------ verification
def _rel_err(value: torch.Tensor, expected: torch.Tensor, tol: float, allowed_mismatch: float) -> float:
    """max |value - expected| / max(max |expected|, 1), ignoring the worst
    `allowed_mismatch` fraction of elements (NaN anywhere counts as inf)."""
    value = value.detach().to(torch.float64).cpu()
    expected = expected.detach().to(torch.float64).cpu()
    if expected.numel() == 0:
        return 0.0
    scale = max(expected.abs().max().item(), 1.0)
    err = ((value - expected).abs() / scale).flatten()
    err = torch.where(torch.isnan(err), torch.full_like(err, math.inf), err)
    skip = int(allowed_mismatch * err.numel())
    if skip and int((err > tol).sum()) <= skip:
        return 0.0
    return err.max().item()


def compare(results: dict[str, Any], oracle: dict[str, Any], dtype: torch.dtype, random_keys=frozenset(),
            allowed_mismatch: float = 0.0):
    """[(key, error, tolerance)] for every key that disagrees (empty: all agree).

    Errors are max |value - oracle| / max(max |oracle|, 1) per result; up to
    `allowed_mismatch` of a tensor's elements may exceed the tolerance.
    """
    tol = TOLERANCE[dtype]
    bad = []
    if set(results) != set(oracle):
        bad.append((f"keys {sorted(results)} != {sorted(oracle)}", math.inf, tol))
        return bad
    for key, expected in oracle.items():
        value = results[key]
        if isinstance(expected, torch.Tensor):
            if tuple(value.shape) != tuple(expected.shape):
                bad.append((f"{key} shape {tuple(value.shape)} != {tuple(expected.shape)}", math.inf, tol))
                continue
            if value.dtype != dtype:
                bad.append((f"{key} dtype {value.dtype} != {dtype}", math.inf, tol))
                continue
            if key in random_keys:
                continue
            err = _rel_err(value, expected, tol, allowed_mismatch)
        else:
            err = abs(float(value) - float(expected)) / max(abs(float(expected)), 1.0)
        if not err <= tol:  # also catches NaN
            bad.append((key, err, tol))
    return bad


def verify(bench: Bench, providers: Iterable[str]) -> dict[str, float]:
    """Runs every provider once against the float64 oracle; raises ProviderMismatch.

    Returns the VAE-loss style objective of each provider (for reporting),
    or an empty dict for workloads without one.
    """
    oracle = bench.oracle()
    objectives = {}
    problems = []
    for name in providers:
        results = bench.providers[name]()
        for key, err, tol in compare(results, oracle, bench.spec.dtype, bench.random_keys, bench.allowed_mismatch):
            problems.append(f"  {name}: {key}: error {err:.3g} > tolerance {tol:.1g}")
        if "objective" in results:
            objectives[name] = float(results["objective"])
    if problems:
        raise ProviderMismatch(
            f"providers disagree on {bench.spec.label} ({bench.spec.device}); "
            "results vs the float64 oracle:\n" + "\n".join(problems)
        )
    return objectives


# ------------------------------------------------------------------ running
@dataclass
class Row:
    device: str
    workload: str
    variant: str
    size: str
    sweep: bool
    B: int
    S: int
    F: int
    L: int
    dtype: str
    mode: str
    provider: str
    reps: int
    median_ms: float
    p20_ms: float
    p80_ms: float
    min_ms: float  # the fastest and the slowest timed call: the run-to-run swing
    max_ms: float
    GBps: float
    pct_copy: float
    peak_bytes: int
    peak_ratio: float
    ratio_ref: str
    fast_speedup: float  # this provider's median / fast's median (fast is N x faster)
    objective: float
    min_bytes: int
    bytes_formula: str
    # CUDA: the device's own time per call (kernels and copies, from torch.profiler),
    # without the host's launches and waits; its GB/s against the copy's, timed alike
    device_ms: float = math.nan
    device_pct_copy: float = math.nan

    @property
    def case(self) -> str:
        return W.case_label(self.workload, self.variant, self.size, self.dtype, self.mode)


@dataclass
class DeviceReport:
    device: str
    tag: str
    meta: dict[str, str]
    rows: list[Row] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


class _Progress:
    def __init__(self, total: int, enabled: bool, desc: str):
        self.bar = None
        self.enabled = enabled
        self.total, self.count = total, 0
        if not enabled:
            return
        try:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="case", file=sys.stderr, dynamic_ncols=True)
        except ImportError:
            print(f"{desc}: {total} cases (install tqdm for a progress bar)", file=sys.stderr)

    def start(self, label: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(label, refresh=True)
        elif self.enabled:
            print(f"[{self.count + 1}/{self.total}] {label}", file=sys.stderr, flush=True)

    def step(self) -> None:
        self.count += 1
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class _DropItemGraphBreakWarning:
    """Logging filter: the eager VAE loss reads its diagnostics with .item(),
    which graph-breaks under torch.compile by design (as in the original)."""

    def filter(self, record) -> bool:
        return "Graph break from `Tensor.item()`" not in str(record.msg)


def _configure_dynamo() -> None:
    import logging

    logger = logging.getLogger("torch._dynamo.variables.tensor")
    if not any(isinstance(f, _DropItemGraphBreakWarning) for f in logger.filters):
        logger.addFilter(_DropItemGraphBreakWarning())
    cfg = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(cfg, name):
            setattr(cfg, name, max(getattr(cfg, name), 64))
    if hasattr(cfg, "accumulated_recompile_limit"):
        cfg.accumulated_recompile_limit = max(cfg.accumulated_recompile_limit, 4096)


def run_case(spec: Spec, cfg: Config, copy_gbps: float, copy_device_gbps: float = math.nan) -> list[Row]:
    torch._dynamo.reset()  # one fresh compiled artifact per case, no guard build-up
    bench = W.build(spec, cfg.seed)
    providers = {name: bench.providers[name] for name in cfg.providers}
    objectives = verify(bench, providers)
    times = time_providers(providers, spec.device, cfg)
    medians = {name: percentile(t, 50) for name, t in times.items()}
    rows = []
    s = spec.size
    for name, t in times.items():
        med = medians[name]
        peak = peak_memory(providers[name], spec.device)
        gbps = bench.min_bytes / med / 1e9
        rows.append(Row(
            device=spec.device, workload=spec.workload, variant=spec.variant, size=s.name,
            sweep=spec.sweep, B=s.batch, S=s.samples, F=s.num_features, L=s.latent,
            dtype=W.dtype_name(spec.dtype), mode=spec.mode, provider=name, reps=len(t),
            median_ms=med * 1e3, p20_ms=percentile(t, 20) * 1e3, p80_ms=percentile(t, 80) * 1e3,
            min_ms=min(t) * 1e3, max_ms=max(t) * 1e3,
            GBps=gbps, pct_copy=100.0 * gbps / copy_gbps,
            peak_bytes=peak, peak_ratio=peak / bench.ratio_bytes, ratio_ref=bench.ratio_name,
            fast_speedup=med / medians["fast"] if "fast" in medians else math.nan,
            objective=objectives.get(name, math.nan),
            min_bytes=bench.min_bytes, bytes_formula=bench.bytes_formula,
        ))
    if spec.device.startswith("cuda"):
        for row in rows:
            seconds = device_seconds(providers[row.provider])
            row.device_ms = seconds * 1e3
            row.device_pct_copy = 100.0 * bench.min_bytes / seconds / 1e9 / copy_device_gbps
    return rows


def default_devices() -> list[str]:
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def run(config: Config) -> list[DeviceReport]:
    """Runs the benchmark; writes and prints the results; returns them."""
    cfg = config.resolved()
    unknown = set(cfg.providers) - set(W.PROVIDERS)
    if unknown:
        raise ValueError(f"providers: unknown {sorted(unknown)}; expected a subset of {W.PROVIDERS}")
    _configure_dynamo()
    reports = []
    for device in cfg.devices:
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError(f"device {device!r} requested but CUDA is not available")
        if not _backend.runs_on_extension(torch.empty(0, device=device)):
            print(f"WARNING: 'fast' runs on the pure-PyTorch reference on {device} "
                  f"({paf.extension_load_error() or 'no kernels for this device'})", file=sys.stderr)
        specs = plan(cfg.preset, device, cfg.dtypes)
        if cfg.workloads:
            specs = [s for s in specs if any(w in s.label for w in cfg.workloads)]
        copy_gbps = measure_copy_bandwidth(device, cfg.copy_mib, cfg.copy_reps)
        report = DeviceReport(device, device_tag(device), metadata(device, cfg, copy_gbps))
        copy_device_gbps = math.nan
        if device.startswith("cuda"):
            copy_device_gbps = measure_copy_device_bandwidth(cfg.copy_mib, device)
            report.meta["copy_device_bandwidth_GBps"] = f"{copy_device_gbps:.2f}"
            report.meta["device_time"] = ("per call, the summed kernel and copy durations from torch.profiler "
                                          "(5 calls); device % copy: min bytes / device time against the "
                                          "copy's device-time bandwidth")
        progress = _Progress(len(specs), cfg.progress, f"benchmarks {device}")
        started = time.perf_counter()
        failed: list[str] = []
        try:
            for spec in specs:
                progress.start(spec.label)
                try:
                    report.rows.extend(run_case(spec, cfg, copy_gbps, copy_device_gbps))
                except Exception as exc:  # noqa: BLE001 - re-raised unless keep_going
                    if not cfg.keep_going:
                        raise
                    failed.append(f"{spec.label}: {type(exc).__name__}: {exc}".replace("\n", " ")[:400])
                    print(f"FAILED {failed[-1]}", file=sys.stderr)
                    report.meta["failed_cases"] = " | ".join(failed)
                progress.step()
                if cfg.out_dir is not None:  # each finished case is on disk at once (a run cut off keeps them)
                    write_outputs(report, Path(cfg.out_dir), cfg, plot=False)
        finally:
            progress.close()
        report.meta["elapsed_s"] = f"{time.perf_counter() - started:.1f}"
        if cfg.print_table:
            print(render_text(report))
        if cfg.out_dir is not None:
            report.files = write_outputs(report, Path(cfg.out_dir), cfg)
            for path in report.files:
                print(f"wrote {path}", file=sys.stderr)
        reports.append(report)
    return reports


# ------------------------------------------------------------------ output
COLUMNS = [
    ("case", "case", "{}"),
    ("provider", "provider", "{}"),
    ("median ms", "median_ms", "{:.4f}"),
    ("p20 ms", "p20_ms", "{:.4f}"),
    ("p80 ms", "p80_ms", "{:.4f}"),
    ("min ms", "min_ms", "{:.4f}"),
    ("max ms", "max_ms", "{:.4f}"),
    ("GB/s", "GBps", "{:.2f}"),
    ("% copy", "pct_copy", "{:.1f}"),
    ("peak", "peak_bytes", "bytes"),
    ("peak / ref", "peak_ratio", "{:.2f}"),
    ("ref", "ratio_ref", "{}"),
    ("fast speed-up", "fast_speedup", "{:.2f}x"),
    ("device ms", "device_ms", "{:.4f}"),
    ("device % copy", "device_pct_copy", "{:.1f}"),
]

_TEXT_COLUMNS = {i for i, (_, key, _) in enumerate(COLUMNS) if key in ("case", "provider", "ratio_ref")}  # left-aligned


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} GiB"


def _fmt(value, fmt: str) -> str:
    if fmt == "bytes":
        return human_bytes(value)
    if isinstance(value, float) and math.isnan(value):
        return "-"
    return fmt.format(value)


def _cells(row: Row) -> list[str]:
    return [_fmt(getattr(row, attr), fmt) for _, attr, fmt in COLUMNS]


def _table_rows(report: DeviceReport) -> list[list[str]]:
    out, previous = [], None
    for row in report.rows:
        cells = _cells(row)
        if row.case == previous:
            cells[0] = ""
        previous = row.case
        out.append(cells)
    return out


def _header_lines(report: DeviceReport) -> list[str]:
    return [f"{k}: {v}" for k, v in report.meta.items()]


def render_text(report: DeviceReport) -> str:
    headers = [h for h, _, _ in COLUMNS]
    rows = _table_rows(report)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    def line(cells):
        return "  ".join(c.ljust(w) if i in _TEXT_COLUMNS else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    buf = io.StringIO()
    buf.write("\n".join(_header_lines(report)) + "\n\n")
    buf.write(line(headers) + "\n" + "  ".join("-" * w for w in widths) + "\n")
    for cells in rows:
        buf.write(line(cells) + "\n")
    buf.write("\nfast speed-up: this provider's median / fast's median. peak: allocation high-water mark "
              "beyond the inputs, as a multiple of the 'ref' tensor's bytes (target for the VAE loss "
              "fwd+bwd: <= 1.2x x_hat).\n")
    return buf.getvalue()


def render_markdown(report: DeviceReport) -> str:
    buf = io.StringIO()
    buf.write(f"# Benchmarks: {report.meta['device']}\n\n")
    for k, v in report.meta.items():
        buf.write(f"- **{k}**: `{v}`\n" if k == "command" else f"- **{k}**: {v}\n")
    summary = [r for r in report.rows if r.provider == "fast"]
    if summary:
        buf.write("\n## Summary: fast vs the others\n\n")
        on_device = any(not math.isnan(r.device_ms) for r in summary)
        device_head, device_rule = (" device ms | device % copy | device vs compile |", "---:|---:|---:|") if on_device else ("", "")
        buf.write(f"| case | fast ms | GB/s | % copy | peak / ref | vs eager | vs compile |{device_head}\n")
        buf.write(f"|---|---:|---:|---:|---:|---:|---:|{device_rule}\n")
        by_case = {}
        for r in report.rows:
            by_case.setdefault(r.case, {})[r.provider] = r
        for r in summary:
            others = by_case[r.case]
            def speed(name):
                return f"{others[name].fast_speedup:.2f}x" if name in others else "-"
            device = ""
            if on_device:
                vs = f"{others['compile'].device_ms / r.device_ms:.2f}x" if "compile" in others else "-"
                device = f" {r.device_ms:.4f} | {r.device_pct_copy:.1f} | {vs} |"
            buf.write(f"| {r.case} | {r.median_ms:.4f} | {r.GBps:.2f} | {r.pct_copy:.1f} | "
                      f"{r.peak_ratio:.2f} {r.ratio_ref} | {speed('eager')} | {speed('compile')} |{device}\n")
    buf.write("\n## All results\n\n")
    headers = [h for h, _, _ in COLUMNS]
    buf.write("| " + " | ".join(headers) + " |\n")
    buf.write("|" + "|".join("---" if i in _TEXT_COLUMNS else "---:" for i in range(len(headers))) + "|\n")
    for cells in _table_rows(report):
        buf.write("| " + " | ".join(cells) + " |\n")
    buf.write("\nTimes: median [p20, p80] (and min, max) of individually timed calls after warm-up. GB/s from the minimum "
              "bytes of each workload (formula column in the CSV; see benchmarks/workloads.py). "
              "fast speed-up = provider median / fast median. Peak: allocation high-water mark beyond "
              "the inputs, including outputs; ratio against the 'ref' tensor "
              "(target for the VAE loss fwd+bwd: <= 1.2x x_hat).\n")
    return buf.getvalue()


CSV_FIELDS = list(Row.__dataclass_fields__)


def render_csv(report: DeviceReport) -> str:
    buf = io.StringIO()
    for line in _header_lines(report):
        buf.write(f"# {line}\n")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["case", *CSV_FIELDS])
    for row in report.rows:
        values = []
        for name in CSV_FIELDS:
            v = getattr(row, name)
            values.append(f"{v:.6g}" if isinstance(v, float) else v)
        writer.writerow([row.case, *values])
    return buf.getvalue()


def read_csv(path: Path | str) -> list[dict[str, str]]:
    """The rows of a results CSV (the '# key: value' header lines skipped)."""
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(line for line in f if not line.startswith("#")))


def plot_report(report: DeviceReport, path: Path) -> Path | None:
    """GB/s of the VAE loss (fwd+bwd) against the feature count, one line per provider."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: skipping the plot", file=sys.stderr)
        return None
    rows = [r for r in report.rows if r.workload == "vae_loss" and r.mode == "fwd+bwd"]
    if any(r.sweep for r in rows):
        rows = [r for r in rows if r.sweep]
        xlabel = "features D per x (B=64, S=1)"
    else:
        xlabel = "features per x (small: B=64 S=1; large: B=128 S=4)"
    if not rows:
        print("no VAE-loss fwd+bwd results: skipping the plot", file=sys.stderr)
        return None
    panels = sorted({(r.dtype, r.variant) for r in rows})
    dtypes = sorted({d for d, _ in panels})
    variants = [v for v in W.LIKELIHOODS if any(v == pv for _, pv in panels)]
    fig, axes = plt.subplots(len(dtypes), len(variants), figsize=(4.2 * len(variants), 3.4 * len(dtypes)),
                             squeeze=False, sharex=True)
    copy_gbps = float(report.meta["copy_bandwidth_GBps"])
    for i, dtype in enumerate(dtypes):
        for j, variant in enumerate(variants):
            ax = axes[i][j]
            for provider in W.PROVIDERS:
                pts = sorted((r.F, r.GBps) for r in rows
                             if r.dtype == dtype and r.variant == variant and r.provider == provider)
                if pts:
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=provider)
            ax.axhline(copy_gbps, color="gray", linestyle="--", linewidth=1, label="copy")
            ax.set_xscale("log", base=2)
            ax.set_title(f"VAE loss fwd+bwd, {variant}, {dtype}", fontsize=9)
            ax.set_ylabel("GB/s (minimum bytes)")
            ax.set_xlabel(xlabel, fontsize=8)
            ax.grid(True, alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(report.meta["device"], fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_outputs(report: DeviceReport, out_dir: Path, cfg: Config, plot: bool | None = None) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = report.tag + ("" if cfg.preset == "full" else f"-{cfg.preset}")
    files = []
    for suffix, text in ((".csv", render_csv(report)), (".md", render_markdown(report))):
        path = out_dir / (stem + suffix)
        tmp = path.with_suffix(suffix + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
        files.append(path)
    if cfg.plot if plot is None else plot:
        try:
            png = plot_report(report, out_dir / (stem + ".png"))
        except Exception as exc:  # noqa: BLE001 - a plot must never lose the measurements
            print(f"plot failed ({type(exc).__name__}: {exc}): skipping it", file=sys.stderr)
            png = None
        if png is not None:
            files.append(png)
    return files
