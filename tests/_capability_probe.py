"""Runs every op (values and gradients, four dtypes) and saves the results.

Run in a subprocess by ``test_cpu_capabilities.py`` with
``ATEN_CPU_CAPABILITY`` forced, so that each of the CPU kernel libraries
(DEFAULT, AVX2, AVX512) computes the same fixed inputs:

    python _capability_probe.py OUT.pt
"""

from __future__ import annotations

import sys

import torch

import pyautoencoder_fast as paf
from pyautoencoder_fast import functional as F

DTYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16)
LIKELIHOODS = ("gaussian", "bernoulli", "laplace", "bernoulli_probs")
B, S, FEATURES, LATENT = 3, 2, 37, 19  # odd sizes: vector bodies and scalar tails


def inputs(dtype: torch.dtype) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(11)
    r = lambda *shape: torch.randn(*shape, generator=g, dtype=torch.float64)
    u = lambda *shape: torch.rand(*shape, generator=g, dtype=torch.float64)
    t = {
        "x": u(B, FEATURES),
        "x_hat": r(B, S, FEATURES),
        "probs": u(B, S, FEATURES).clamp(0.05, 0.95),
        "mu": r(B, LATENT),
        "log_var": r(B, LATENT),
        "mu2": r(B, LATENT),
        "log_var2": r(B, LATENT),
        "grad": r(B, S, FEATURES),
    }
    return {k: v.to(dtype).requires_grad_(k not in ("x", "grad")) for k, v in t.items()}


def grads(outputs, wrt, weights=None):
    outputs = [o for o in (outputs if isinstance(outputs, (tuple, list)) else [outputs])]
    total = sum((o.float() * (w if w is not None else 1)).sum() for o, w in zip(outputs, weights or [None] * len(outputs)))
    return torch.autograd.grad(total, wrt, allow_unused=True)


def run(dtype: torch.dtype) -> dict[str, torch.Tensor]:
    t = inputs(dtype)
    out: dict[str, torch.Tensor] = {}
    for likelihood in LIKELIHOODS:
        x_hat = t["probs"] if likelihood == "bernoulli_probs" else t["x_hat"]
        ll = F.log_likelihood(t["x"][:, None], x_hat, likelihood)
        out[f"ll/{likelihood}"] = ll
        (out[f"ll/{likelihood}/grad"],) = grads(ll, [x_hat], [t["grad"].float()])
        lls = F.log_likelihood_sum(t["x"], x_hat, likelihood)
        out[f"lls/{likelihood}"] = lls
        (out[f"lls/{likelihood}/grad"],) = grads(lls, [x_hat])
        stats = F.elbo_stats(t["x"], x_hat, t["mu"], t["log_var"], 2.5, likelihood)
        out[f"elbo/{likelihood}"] = stats
        for name, g in zip(("x_hat", "mu", "log_var"), grads(stats, [x_hat, t["mu"], t["log_var"]], [torch.tensor([1.0, 0.3, -0.2, 0.1])])):
            out[f"elbo/{likelihood}/grad_{name}"] = g
    kl = F.kl_diag_gaussian(t["mu"], t["log_var"])
    out["kl/standard"] = kl
    for name, g in zip(("mu", "log_var"), grads(kl, [t["mu"], t["log_var"]])):
        out[f"kl/standard/grad_{name}"] = g
    kl = F.kl_diag_gaussian(t["mu"], t["log_var"], t["mu2"], t["log_var2"], reduce_sum=False, clamp_min=-1.0, clamp_max=1.5)
    out["kl/general"] = kl
    for name, g in zip(("mu", "log_var", "mu2", "log_var2"), grads(kl, [t[k] for k in ("mu", "log_var", "mu2", "log_var2")])):
        out[f"kl/general/grad_{name}"] = g
    z = F.reparameterize(t["mu"], t["log_var"], 4, generator=torch.Generator().manual_seed(5))
    out["z"] = z
    for name, g in zip(("mu", "log_var"), grads(z, [t["mu"], t["log_var"]])):
        out[f"z/grad_{name}"] = g
    adapted = F.adagvae_posterior(t["mu"], t["log_var"], t["mu2"], t["log_var2"])
    for i, a in enumerate(adapted):
        out[f"ada/{i}"] = a
    for name, g in zip(("mu", "log_var", "mu2", "log_var2"), grads(adapted, [t[k] for k in ("mu", "log_var", "mu2", "log_var2")])):
        out[f"ada/grad_{name}"] = g
    return {k: v.detach() for k, v in out.items()}


def main(path: str) -> None:
    assert paf.extension_available(), paf.extension_load_error()
    result = {"info": paf.extension_info(), "aten": torch.backends.cpu.get_cpu_capability()}
    for dtype in DTYPES:
        result[str(dtype)] = run(dtype)
    torch.save(result, path)


if __name__ == "__main__":
    main(sys.argv[1])
