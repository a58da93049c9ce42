"""Command line: ``python -m benchmarks [--quick | --smoke] [--device cpu|cuda|all] ...``."""

from __future__ import annotations

import argparse
import shlex
import sys
import time

import torch

from . import harness
from .workloads import PROVIDERS

DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
          "fp16": torch.float16, "float16": torch.float16}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Time eager PyTorch, torch.compile and pyautoencoder_fast on the VAE loss and the ops.",
    )
    preset = p.add_mutually_exclusive_group()
    preset.add_argument("--quick", action="store_true",
                        help="short run: small+large, float32, VAE loss gaussian+bernoulli fwd+bwd "
                             "and one case of each other op")
    preset.add_argument("--smoke", action="store_true", help="tiny sizes, 2 repetitions (for tests)")
    p.add_argument("--device", default="auto",
                   help="cpu, cuda, cuda:N, all, or auto (default: cpu, and cuda when a GPU is present)")
    p.add_argument("--dtype", action="append", choices=sorted(DTYPES),
                   help="repeatable; default: fp32 and bf16 (quick/smoke: fp32)")
    p.add_argument("--workload", action="append", metavar="TEXT",
                   help="only cases whose label contains TEXT (repeatable), e.g. 'vae_loss[gaussian]', 'large'")
    p.add_argument("--providers", default=",".join(PROVIDERS),
                   help=f"comma-separated subset of {','.join(PROVIDERS)}")
    p.add_argument("--min-time", type=float, help="seconds of timed calls per provider and case")
    p.add_argument("--min-reps", type=int)
    p.add_argument("--max-reps", type=int)
    p.add_argument("--warmup", type=int)
    p.add_argument("--threads", type=int,
                   help="torch.set_num_threads (default: torch's default, all cores); 1 gives steadier "
                        "numbers on a machine shared with other work")
    p.add_argument("--copy-mib", type=int, help="size of the copy-bandwidth tensor (default 256 MiB)")
    p.add_argument("--out", default=str(harness.RESULTS_DIR), help="output folder (default benchmarks/results)")
    p.add_argument("--no-write", action="store_true", help="print only, write no files")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--keep-going", action="store_true",
                   help="a case that fails its check against the oracle (or raises) is reported and "
                        "skipped; the other cases still run and are written")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    raw = sys.argv[1:] if argv is None else argv
    args = parse_args(raw)
    if args.device == "auto":
        devices = harness.default_devices()
    elif args.device == "all":
        devices = ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    else:
        devices = [args.device]
    if args.threads is not None:
        if args.threads < 1:
            raise SystemExit("--threads: expected an integer >= 1")
        torch.set_num_threads(args.threads)
    dtypes = None
    if args.dtype:
        dtypes = tuple(dict.fromkeys(DTYPES[d] for d in args.dtype))
    config = harness.Config(
        devices=devices,
        preset="quick" if args.quick else "smoke" if args.smoke else "full",
        dtypes=dtypes,
        workloads=args.workload,
        providers=tuple(x.strip() for x in args.providers.split(",") if x.strip()),
        min_time=args.min_time,
        min_reps=args.min_reps,
        max_reps=args.max_reps,
        warmup=args.warmup,
        copy_mib=args.copy_mib,
        out_dir=None if args.no_write else args.out,
        plot=not args.no_plot,
        progress=not args.no_progress,
        command=" ".join(["python -m benchmarks", *map(shlex.quote, raw)]),
        keep_going=args.keep_going,
    )
    start = time.perf_counter()
    harness.run(config)
    print(f"total: {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
