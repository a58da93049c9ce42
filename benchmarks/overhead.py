"""Where the time of one small VAE-loss call goes (per-call overhead).

``python -m benchmarks.overhead [--likelihood gaussian] [--batch 64] [--features 784] [--device cpu|cuda]``

Times, in a tight loop (median of individually timed calls, microseconds;
on CUDA each call is followed by a synchronize, so a row is the wall time
until its kernels have finished), the layers of ``VAE.compute_loss``
forward+backward one inside the other: one small torch op (the host's cost
per op), the bare autograd engine, the fused op alone, the op with its
backward, ``functional.elbo_stats``, ``VAE.compute_loss``, and the whole call
with ``torch.autograd.grad``; last, the eager loss forward+backward for
comparison. Differences between rows are what each layer adds.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

import pyautoencoder_fast as paf
from pyautoencoder_fast import functional

from .workloads import eager_vae_loss, fast_vae_loss


def median_us(fn, reps: int = 3000, warmup: int = 100, sync=lambda: None) -> float:
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    times.sort()
    return 1e6 * times[len(times) // 2]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.overhead", description=__doc__.split("\n\n")[0])
    p.add_argument("--likelihood", default="gaussian")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--features", type=int, default=784)
    p.add_argument("--latent", type=int, default=32)
    p.add_argument("--reps", type=int, default=3000)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if not paf.extension_available():
        raise SystemExit(f"the extension is not loaded: {paf.extension_load_error()}")
    B, F, L, lik = args.batch, args.features, args.latent, args.likelihood
    dev = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    x = torch.rand(B, F, device=dev)
    x_hat = torch.randn(B, 1, F, device=dev, requires_grad=True)
    mu = torch.randn(B, L, device=dev, requires_grad=True)
    log_var = (0.5 * torch.randn(B, L, device=dev)).requires_grad_()
    leaves = [x_hat, mu, log_var]
    op = torch.ops.pyautoencoder_fast.elbo.default

    def engine_only():
        torch.autograd.grad(mu.sum(), [mu])

    def op_forward():
        op(x, x_hat, mu, log_var, 4.0, lik, True)

    def op_forward_backward():
        torch.autograd.grad(op(x, x_hat, mu, log_var, 4.0, lik, True)[0][0], leaves)

    def elbo_stats():
        functional.elbo_stats(x, x_hat, mu, log_var, 4.0, lik)

    def compute_loss():
        fast_vae_loss(x, x_hat, mu, log_var, 4.0, lik)

    def compute_loss_backward():
        torch.autograd.grad(fast_vae_loss(x, x_hat, mu, log_var, 4.0, lik).objective, leaves)

    def one_op():
        torch.add(mu, 1.0)

    def eager_backward():
        torch.autograd.grad(eager_vae_loss(x, x_hat, mu, log_var, 4.0, lik).objective, leaves)

    rows = [
        ("one small torch op (torch.add(mu, 1.0))", one_op),
        ("torch.autograd.grad of mu.sum() (the engine alone)", engine_only),
        ("fused op forward (torch.ops...elbo.default)", op_forward),
        ("fused op forward + autograd.grad", op_forward_backward),
        ("functional.elbo_stats forward", elbo_stats),
        ("VAE.compute_loss forward (with the diagnostics)", compute_loss),
        ("VAE.compute_loss forward + autograd.grad", compute_loss_backward),
        ("eager loss (pyautoencoder-style, 3 .item()) forward + autograd.grad", eager_backward),
    ]
    where = f"{torch.cuda.get_device_name(dev)}, synchronized per call" if dev.type == "cuda" else (
        f"{torch.get_num_threads()} threads, {paf.extension_info()['cpu_capability']} kernels")
    print(f"B={B}, S=1, {F} features, latent {L}, {lik}, {where}; median us of {args.reps} calls")
    for name, fn in rows:
        print(f"{median_us(fn, args.reps, sync=sync):9.1f}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
