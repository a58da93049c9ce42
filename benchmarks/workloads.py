"""The benchmark workloads: inputs, the three providers, and byte counts.

Every workload function takes a :class:`Spec` and returns a :class:`Bench`:

* ``providers``: zero-argument callables, one per provider, all on the same
  input tensors:

  - ``eager``: plain PyTorch written the way pyautoencoder writes it
    (several kernels; the VAE loss reads each diagnostic with its own
    ``.item()``);
  - ``compile``: ``torch.compile`` (default mode, static shapes) of that
    same eager function;
  - ``fast``: :mod:`pyautoencoder_fast.functional` on the compiled extension;
    the VAE loss through ``pyautoencoder_fast.VAE.compute_loss`` (one
    ``elbo_stats`` call, ``stats[0]`` as the objective and ONE
    ``stats.detach().tolist()`` for the diagnostics).

  A provider returns a flat ``dict`` of results (tensors or floats); in
  ``fwd+bwd`` mode it also contains the gradients (``grad_<input>``), taken
  with ``torch.autograd.grad`` so nothing accumulates between repetitions.
* ``min_bytes``: the MINIMUM number of bytes the workload has to move
  through memory (formula documented per workload below); GB/s are computed
  from it, whatever a provider actually moves.
* ``oracle``: the eager function on float64 copies of the inputs, against
  which every provider's results are verified before timing.

Forward-only cases run under ``torch.no_grad()`` (inference / evaluation);
``fwd+bwd`` cases have the differentiable inputs require grad, as the
decoder output and the encoder heads do in training (the data ``x`` does
not).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from pyautoencoder_fast import functional
from pyautoencoder_fast.loss import LossResult

PROVIDERS = ("eager", "compile", "fast")
LIKELIHOODS = ("gaussian", "bernoulli", "laplace")
MODES = ("fwd", "fwd+bwd")
LATENT = 32
BETA = 4.0  # a beta != 1 so the KL weight is exercised


@dataclass(frozen=True)
class Size:
    """Batch B, Monte Carlo samples S, feature shape of one x, latent dim L."""

    name: str
    batch: int
    samples: int
    features: tuple[int, ...]
    latent: int = LATENT

    @property
    def num_features(self) -> int:
        return math.prod(self.features)


SIZES = {
    "small": Size("small", 64, 1, (784,)),
    "small-b128": Size("small-b128", 128, 1, (784,)),
    "large": Size("large", 128, 4, (3, 64, 64)),
}
# Twice the batch and twice the samples of "large" (0.4 GB of x_hat in float32):
# the VAE loss at a size where a GPU runs at its memory bandwidth. CUDA only: on
# a 2-core CPU one eager call takes seconds.
LARGER = Size("larger", 256, 8, (3, 64, 64))


def sizes_for(device: str) -> list[Size]:
    """The VAE loss sizes benchmarked on a device."""
    return list(SIZES.values()) + ([LARGER] if device.startswith("cuda") else [])
SWEEP_FEATURES = (256, 1024, 4096, 12288, 49152)
# scVI's reconstruction loss: 128 cells, 2000 (scvi's usual highly variable
# genes) and 20000 genes (a whole transcriptome), one dispersion per gene.
COUNT_LIKELIHOODS = ("zinb", "nb", "poisson")
COUNT_SIZES = (Size("cells128-genes2000", 128, 1, (2000,)), Size("cells128-genes20000", 128, 1, (20000,)))
# 1024 cells of a whole transcriptome (82 MB of means in float32): CUDA only, as LARGER.
COUNT_LARGER = Size("cells1024-genes20000", 1024, 1, (20000,))


def count_sizes_for(device: str) -> list[Size]:
    """The count-loss sizes benchmarked on a device."""
    return list(COUNT_SIZES) + ([COUNT_LARGER] if device.startswith("cuda") else [])
# totalVI's protein panels (CITE-seq: tens to hundreds of antibodies), and a wide one.
PROTEIN_SIZES = (Size("cells128-proteins200", 128, 1, (200,)), Size("cells128-proteins2000", 128, 1, (2000,)))
SMOKE_SIZE = Size("tiny", 4, 2, (3, 5))
# The importance-weighted bound as IWAE trains it: 50 samples of 784 pixels.
IWAE_SIZE = Size("b128-s50-784", 128, 50, (784,))
IWAE_LIKELIHOODS = ("bernoulli", "gaussian")


def sweep_size(num_features: int) -> Size:
    return Size(f"D={num_features}", 64, 1, (num_features,))


@dataclass(frozen=True)
class Spec:
    """One benchmark case."""

    workload: str  # key of WORKLOADS
    variant: str  # likelihood, or "" where none applies
    size: Size
    dtype: torch.dtype
    mode: str  # "fwd" or "fwd+bwd"
    device: str
    sweep: bool = False  # part of the feature-count sweep

    @property
    def label(self) -> str:
        return case_label(self.workload, self.variant, self.size.name, dtype_name(self.dtype), self.mode)


@dataclass
class Bench:
    """A built case: providers on shared inputs, byte count, oracle."""

    spec: Spec
    providers: dict[str, Callable[[], dict[str, Any]]]
    oracle: Callable[[], dict[str, Any]]
    min_bytes: int
    bytes_formula: str
    ratio_name: str  # the tensor peak memory is compared with (e.g. x_hat)
    ratio_bytes: int
    random_keys: frozenset[str] = field(default_factory=frozenset)  # compare shapes only
    # Fraction of elements allowed outside tolerance: for discontinuous ops
    # (a threshold selection) whose low-precision rounding may flip near-ties.
    allowed_mismatch: float = 0.0


def dtype_name(dtype: torch.dtype) -> str:
    return {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16", torch.float64: "fp64"}[dtype]


def case_label(workload: str, variant: str, size: str, dtype: str, mode: str) -> str:
    """The row name of a case, e.g. ``vae_loss[gaussian] large fp32 fwd+bwd``."""
    name = f"{workload}[{variant}]" if variant else workload
    return f"{name} {size} {dtype} {mode}"

# ------------------------------------------------------------------ helpers
def _compiled(fn: Callable) -> Callable:
    """torch.compile, default mode, static shapes (a training loop with a fixed
    batch shape), one compiled artifact per case."""
    return torch.compile(fn, dynamic=False)


def _tensor_collector(key: str, grad: bool) -> Callable[[Tensor], dict[str, Any]]:
    """Result collector of a workload whose output is one tensor: its value
    under ``key`` and, for fwd+bwd, the tensor to differentiate."""

    def collect(out: Tensor) -> dict[str, Any]:
        res = {key: out.detach()}
        if grad:
            res["_diff"] = out
        return res

    return collect


def _loss_result_collector(grad: bool) -> Callable[[LossResult], dict[str, Any]]:
    """Result collector of a workload returning a LossResult: the objective
    and the diagnostics and, for fwd+bwd, the objective to differentiate."""

    def collect(res: LossResult) -> dict[str, Any]:
        out = {"objective": float(res.objective.detach()), **res.diagnostics}
        if grad:
            out["_diff"] = res.objective
        return out

    return collect


def _grads(outputs: Tensor | tuple[Tensor, ...], inputs: dict[str, Tensor], grad_outputs=None) -> dict[str, Tensor]:
    names = [name for name, t in inputs.items() if t.requires_grad]
    grads = torch.autograd.grad(outputs, [inputs[n] for n in names], grad_outputs)
    return {f"grad_{n}": g for n, g in zip(names, grads)}


def _run(fn: Callable[..., Any], mode: str, inputs: dict[str, Tensor], collect, grad_outputs=None):
    """One provider call: fn(**inputs) -> results dict (+ grads in fwd+bwd)."""
    if mode == "fwd":
        with torch.no_grad():
            return collect(fn(**inputs))
    out = fn(**inputs)
    results = collect(out)
    diff_out = results.pop("_diff")
    results.update(_grads(diff_out, inputs, grad_outputs))
    return results


def _to64(inputs: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.detach().to(torch.float64).requires_grad_(v.requires_grad) for k, v in inputs.items()}


def _make_bench(spec, eager, fast, inputs, collect, grad_outputs=None, **kwargs) -> Bench:
    compiled = _compiled(eager)
    mode = spec.mode
    providers = {
        "eager": lambda: _run(eager, mode, inputs, collect, grad_outputs),
        "compile": lambda: _run(compiled, mode, inputs, collect, grad_outputs),
        "fast": lambda: _run(fast, mode, inputs, collect, grad_outputs),
    }
    inputs64 = _to64(inputs)
    go64 = None
    if grad_outputs is not None:
        go64 = tuple(g.to(torch.float64) for g in grad_outputs)
    oracle = lambda: _run(eager, mode, inputs64, collect, go64)  # noqa: E731
    return Bench(spec=spec, providers=providers, oracle=oracle, **kwargs)


def _randn(shape, spec: Spec, generator, requires_grad=False, scale=1.0) -> Tensor:
    t = torch.randn(shape, generator=generator, dtype=torch.float32) * scale
    return t.to(device=spec.device, dtype=spec.dtype).requires_grad_(requires_grad)


def _x_for(likelihood: str, spec: Spec, generator) -> Tensor:
    shape = (spec.size.batch, *spec.size.features)
    if likelihood == "bernoulli":  # targets in [0, 1]
        t = torch.rand(shape, generator=generator, dtype=torch.float32)
        return t.to(device=spec.device, dtype=spec.dtype)
    return _randn(shape, spec, generator)


# ------------------------------------------------ eager (pyautoencoder style)
def eager_log_likelihood(x: Tensor, x_hat: Tensor, likelihood: str) -> Tensor:
    """pyautoencoder.loss.log_likelihood: elementwise."""
    if likelihood == "gaussian":
        return -0.5 * (x_hat - x) ** 2
    if likelihood == "bernoulli":
        return -F.binary_cross_entropy_with_logits(x_hat, x, reduction="none")
    if likelihood == "laplace":
        return -(x_hat - x).abs()
    raise ValueError(f"unknown likelihood {likelihood!r}")


def eager_kl_divergence_diag_gaussian(mu_q, log_var_q, mu_p=None, log_var_p=None, reduce_sum=True):
    """pyautoencoder.loss.kl_divergence_diag_gaussian."""
    if mu_p is None and log_var_p is None:
        kl = 0.5 * (torch.exp(log_var_q) + mu_q**2 - 1.0 - log_var_q)
    else:
        mu_p = torch.zeros_like(mu_q) if mu_p is None else mu_p
        log_var_p = torch.zeros_like(log_var_q) if log_var_p is None else log_var_p
        kl = 0.5 * (
            (log_var_p - log_var_q) + (torch.exp(log_var_q) + (mu_q - mu_p) ** 2) / torch.exp(log_var_p) - 1.0
        )
    return kl.sum(-1) if reduce_sum else kl


def eager_vae_loss(x, x_hat, mu, log_var, beta, likelihood) -> LossResult:
    """pyautoencoder's VAE.compute_loss, as written there."""
    if x_hat.dim() == x.dim():
        x_hat = x_hat.unsqueeze(1)
    x_expanded = x.unsqueeze(1).expand_as(x_hat)
    log_px_z = eager_log_likelihood(x_expanded, x_hat, likelihood)
    log_px_z = log_px_z.flatten(2).sum(-1).mean(1)  # [B]: sum features, mean over S
    kl = eager_kl_divergence_diag_gaussian(mu, log_var)  # [B]
    elbo = (log_px_z - beta * kl).mean()
    objective = -elbo
    diagnostics = {
        "elbo": elbo.item(),
        "log_likelihood": log_px_z.mean().item(),
        "kl_divergence": kl.mean().item(),
    }
    return LossResult(objective=objective, diagnostics=diagnostics)


def _vae_loss_module():
    """A VAE whose compute_loss the fast provider calls (encoder/decoder unused)."""
    try:
        from pyautoencoder_fast.variational import VAE, VAEOutput
    except ImportError:  # the models are not there: use the same code inline
        return None, None
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # LazyLinear's "under development" notice
        return VAE(torch.nn.Identity(), torch.nn.Identity(), LATENT), VAEOutput


_VAE, _VAE_OUTPUT = _vae_loss_module()


def fast_vae_loss(x, x_hat, mu, log_var, beta, likelihood) -> LossResult:
    """pyautoencoder_fast's VAE.compute_loss: one fused elbo_stats call, stats[0]
    as the objective and ONE stats.detach().tolist() for the diagnostics."""
    if _VAE is not None:
        out = _VAE_OUTPUT(x_hat=x_hat, z=mu.detach().unsqueeze(1), mu=mu, log_var=log_var)
        return _VAE.compute_loss(x, out, beta, likelihood)
    stats = functional.elbo_stats(x, x_hat, mu, log_var, beta, likelihood)
    _, elbo, log_likelihood, kl = stats.detach().tolist()
    return LossResult(
        objective=stats[0],
        diagnostics={"elbo": elbo, "log_likelihood": log_likelihood, "kl_divergence": kl},
    )


def eager_log_likelihood_sum(x, x_hat, likelihood):
    """Per-sample log-likelihood [B, S], pyautoencoder style."""
    ll = eager_log_likelihood(x.unsqueeze(1).expand_as(x_hat), x_hat, likelihood)
    return ll.flatten(2).sum(-1)


def eager_reparameterize(mu, log_var, num_samples):
    """FullyFactorizedGaussian._reparametrize: z = mu + std * eps, [B, S, D]."""
    std = torch.exp(0.5 * log_var)
    std = std.unsqueeze(1).expand(-1, num_samples, -1)
    eps = torch.randn_like(std)
    return mu.unsqueeze(1) + std * eps


def eager_adagvae_posterior(mu1, log_var1, mu2, log_var2):
    """AdaGVAE's posterior adaptation as pyautoencoder writes it."""
    kl = eager_kl_divergence_diag_gaussian(mu1, log_var1, mu2, log_var2, reduce_sum=False)
    tau = 0.5 * (kl.max(dim=1, keepdim=True).values + kl.min(dim=1, keepdim=True).values)
    mask = kl < tau
    mu_avg = 0.5 * (mu1 + mu2)
    log_var_avg = torch.log(0.5 * (torch.exp(log_var1) + torch.exp(log_var2)))
    return (
        torch.where(mask, mu_avg, mu1),
        torch.where(mask, log_var_avg, log_var1),
        torch.where(mask, mu_avg, mu2),
        torch.where(mask, log_var_avg, log_var2),
    )


# ---------------------------------------------------------------- workloads
def vae_loss(spec: Spec, generator: torch.Generator) -> Bench:
    """Full (beta-)VAE loss: objective + 3 diagnostics (+ backward).

    Bytes (e = element size, F = features per x, L = latent):
      fwd:     read x (B*F) + x_hat (B*S*F) + mu, log_var (2*B*L)       -> e*(B*F + B*S*F + 2*B*L)
      fwd+bwd: the above + write grad_x_hat (B*S*F), grad_mu, grad_log_var (2*B*L)
               -> e*(B*F + 2*B*S*F + 4*B*L)
    The objective is a scalar, so d objective / d x_hat can be written during
    the forward pass: no second read of x and x_hat is needed.
    """
    s, lik = spec.size, spec.variant
    grad = spec.mode == "fwd+bwd"
    B, S, Fn, L = s.batch, s.samples, s.num_features, s.latent
    inputs = {
        "x": _x_for(lik, spec, generator),
        "x_hat": _randn((B, S, *s.features), spec, generator, grad),
        "mu": _randn((B, L), spec, generator, grad),
        "log_var": _randn((B, L), spec, generator, grad, scale=0.5),
    }

    def eager(x, x_hat, mu, log_var):
        return eager_vae_loss(x, x_hat, mu, log_var, BETA, lik)

    def fast(x, x_hat, mu, log_var):
        return fast_vae_loss(x, x_hat, mu, log_var, BETA, lik)

    collect = _loss_result_collector(grad)

    e = spec.dtype.itemsize
    if grad:
        nbytes, formula = e * (B * Fn + 2 * B * S * Fn + 4 * B * L), "e*(B*F + 2*B*S*F + 4*B*L)"
    else:
        nbytes, formula = e * (B * Fn + B * S * Fn + 2 * B * L), "e*(B*F + B*S*F + 2*B*L)"
    return _make_bench(
        spec, eager, fast, inputs, collect,
        min_bytes=nbytes, bytes_formula=formula, ratio_name="x_hat", ratio_bytes=e * B * S * Fn,
    )


def log_likelihood_sum(spec: Spec, generator: torch.Generator) -> Bench:
    """Per-sample log-likelihood summed over the features, [B, S].

    Bytes:
      fwd:     read x (B*F) + x_hat (B*S*F), write out (B*S)          -> e*(B*F + B*S*F + B*S)
      fwd+bwd: the above + backward: read grad_out (B*S), x (B*F), x_hat (B*S*F),
               write grad_x_hat (B*S*F)                               -> e*(2*B*F + 3*B*S*F + 2*B*S)
    (grad_out is only known after the forward, so backward re-reads x and x_hat.)
    """
    s, lik = spec.size, spec.variant
    grad = spec.mode == "fwd+bwd"
    B, S, Fn = s.batch, s.samples, s.num_features
    inputs = {
        "x": _x_for(lik, spec, generator),
        "x_hat": _randn((B, S, *s.features), spec, generator, grad),
    }
    grad_outputs = (_randn((B, S), spec, generator),) if grad else None

    def eager(x, x_hat):
        return eager_log_likelihood_sum(x, x_hat, lik)

    def fast(x, x_hat):
        return functional.log_likelihood_sum(x, x_hat, lik)

    collect = _tensor_collector("ll", grad)

    e = spec.dtype.itemsize
    if grad:
        nbytes, formula = e * (2 * B * Fn + 3 * B * S * Fn + 2 * B * S), "e*(2*B*F + 3*B*S*F + 2*B*S)"
    else:
        nbytes, formula = e * (B * Fn + B * S * Fn + B * S), "e*(B*F + B*S*F + B*S)"
    return _make_bench(
        spec, eager, fast, inputs, collect, grad_outputs,
        min_bytes=nbytes, bytes_formula=formula, ratio_name="x_hat", ratio_bytes=e * B * S * Fn,
    )


def kl_diag_gaussian(spec: Spec, generator: torch.Generator) -> Bench:
    """KL(q || N(0, I)) summed over the latent dims, [B].

    Bytes:
      fwd:     read mu, log_var (2*B*L), write kl (B)                        -> e*(2*B*L + B)
      fwd+bwd: + read grad_out (B), mu, log_var (2*B*L), write 2 grads (2*B*L) -> e*(6*B*L + 2*B)
    """
    s = spec.size
    grad = spec.mode == "fwd+bwd"
    B, L = s.batch, s.latent
    inputs = {
        "mu": _randn((B, L), spec, generator, grad),
        "log_var": _randn((B, L), spec, generator, grad, scale=0.5),
    }
    grad_outputs = (_randn((B,), spec, generator),) if grad else None

    def eager(mu, log_var):
        return eager_kl_divergence_diag_gaussian(mu, log_var)

    def fast(mu, log_var):
        return functional.kl_diag_gaussian(mu, log_var)

    collect = _tensor_collector("kl", grad)

    e = spec.dtype.itemsize
    if grad:
        nbytes, formula = e * (6 * B * L + 2 * B), "e*(6*B*L + 2*B)"
    else:
        nbytes, formula = e * (2 * B * L + B), "e*(2*B*L + B)"
    return _make_bench(
        spec, eager, fast, inputs, collect, grad_outputs,
        min_bytes=nbytes, bytes_formula=formula, ratio_name="mu", ratio_bytes=e * B * L,
    )


def reparameterize(spec: Spec, generator: torch.Generator) -> Bench:
    """Reparameterized sampling z = mu + exp(0.5*log_var) * eps, [B, S, L].

    Bytes:
      fwd:     read mu, log_var (2*B*L), write z (B*S*L)                        -> e*(2*B*L + B*S*L)
      fwd+bwd: + read grad_z (B*S*L), mu, log_var (2*B*L), write 2 grads (2*B*L) -> e*(6*B*L + 2*B*S*L)
    (The noise is regenerated, not stored: it costs no memory traffic.)
    The providers draw different noise: only shapes and grad_mu (= sum over
    S of grad_z, independent of the noise) are compared.
    """
    s = spec.size
    grad = spec.mode == "fwd+bwd"
    B, S, L = s.batch, s.samples, s.latent
    inputs = {
        "mu": _randn((B, L), spec, generator, grad),
        "log_var": _randn((B, L), spec, generator, grad, scale=0.5),
    }
    grad_outputs = (_randn((B, S, L), spec, generator),) if grad else None

    def eager(mu, log_var):
        return eager_reparameterize(mu, log_var, S)

    def fast(mu, log_var):
        return functional.reparameterize(mu, log_var, S)

    collect = _tensor_collector("z", grad)

    e = spec.dtype.itemsize
    if grad:
        nbytes, formula = e * (6 * B * L + 2 * B * S * L), "e*(6*B*L + 2*B*S*L)"
    else:
        nbytes, formula = e * (2 * B * L + B * S * L), "e*(2*B*L + B*S*L)"
    return _make_bench(
        spec, eager, fast, inputs, collect, grad_outputs,
        min_bytes=nbytes, bytes_formula=formula, ratio_name="z", ratio_bytes=e * B * S * L,
        random_keys=frozenset({"z", "grad_log_var"}),
    )


def adagvae_posterior(spec: Spec, generator: torch.Generator) -> Bench:
    """Ada-GVAE posterior adaptation of a pair of [B, L] posteriors.

    Verification allows a few elements (near-ties of ``kl < tau`` that the
    provider's rounding flips: ~0.1% in bfloat16 eager) to differ.

    Bytes:
      fwd:     read mu1, lv1, mu2, lv2 (4*B*L), write 4 adapted (4*B*L)   -> e*8*B*L
      fwd+bwd: + read 4 grads (4*B*L), lv1, lv2 (2*B*L; the averaged log-variance's
               gradient needs them), the selection mask (B*L bytes), write 4 grads (4*B*L)
               -> e*18*B*L + B*L
    """
    s = spec.size
    grad = spec.mode == "fwd+bwd"
    B, L = s.batch, s.latent
    inputs = {
        "mu1": _randn((B, L), spec, generator, grad),
        "log_var1": _randn((B, L), spec, generator, grad, scale=0.5),
        "mu2": _randn((B, L), spec, generator, grad),
        "log_var2": _randn((B, L), spec, generator, grad, scale=0.5),
    }
    grad_outputs = tuple(_randn((B, L), spec, generator) for _ in range(4)) if grad else None

    def eager(mu1, log_var1, mu2, log_var2):
        return eager_adagvae_posterior(mu1, log_var1, mu2, log_var2)

    def fast(mu1, log_var1, mu2, log_var2):
        return functional.adagvae_posterior(mu1, log_var1, mu2, log_var2)

    def collect(out):
        res = {name: t.detach() for name, t in zip(("mu1", "log_var1", "mu2", "log_var2"), out)}
        if grad:
            res["_diff"] = tuple(out)
        return res

    e = spec.dtype.itemsize
    if grad:
        nbytes, formula = e * 18 * B * L + B * L, "e*18*B*L + B*L"
    else:
        nbytes, formula = e * 8 * B * L, "e*8*B*L"
    return _make_bench(
        spec, eager, fast, inputs, collect, grad_outputs,
        min_bytes=nbytes, bytes_formula=formula, ratio_name="mu1", ratio_bytes=e * B * L,
        # kl < tau is a hard threshold: rounding (bf16 eager especially) flips near-ties.
        allowed_mismatch=0.01 if spec.dtype in (torch.bfloat16, torch.float16) else 0.001,
    )


def scvi_count_log_likelihood(x, mu, theta, zi_logits, likelihood):
    """scvi-tools 1.5.1's count log-likelihoods as its code computes them
    (``scvi/distributions/_negative_binomial.py``): ``log_nb_positive``,
    ``log_zinb_positive`` (the two cases mixed by float32 masks), and for
    ZINB the support check its ``log_prob`` makes on every call (one read of
    the device); Poisson is torch's ``Poisson.log_prob`` without validation."""
    eps = 1e-8
    if likelihood == "poisson":
        return torch.distributions.Poisson(mu, validate_args=False).log_prob(x)
    log_theta_mu_eps = torch.log(theta + mu + eps)
    log_gammas = torch.lgamma(x + theta) - torch.lgamma(theta) - torch.lgamma(x + 1)
    if likelihood == "nb":
        return (theta * (torch.log(theta + eps) - log_theta_mu_eps) + x * (torch.log(mu + eps) - log_theta_mu_eps)
                + log_gammas)
    if not bool(torch.distributions.constraints.nonnegative_integer.check(x).all()):
        raise ValueError("x: outside the support")  # (scvi warns)
    softplus_pi = F.softplus(-zi_logits)
    pi_theta_log = -zi_logits + theta * (torch.log(theta + eps) - log_theta_mu_eps)
    case_zero = F.softplus(pi_theta_log) - softplus_pi
    case_non_zero = -softplus_pi + pi_theta_log + x * (torch.log(mu + eps) - log_theta_mu_eps) + log_gammas
    return (x < eps).type(torch.float32) * case_zero + (x > eps).type(torch.float32) * case_non_zero


def count_loss(spec: Spec, generator: torch.Generator) -> Bench:
    """scVI's reconstruction loss ``-log p(x).sum(-1)``, [B], for counts x
    [B, G] with means mu [B, G], one dispersion theta per gene [G] (scvi's
    ``exp(px_r)``, px_r ~ N(0, 1)) and, for ZINB, dropout logits [B, G].

    Bytes (P = the [B, G] parameters: mu, and the logits for zinb; T = 1
    with a theta [G], 0 for poisson):
      fwd:     read x and P (B*G each), theta (T*G), write the loss (B)    -> e*((1+P)*B*G + T*G + B)
      fwd+bwd: + read grad_out (B), write the gradients of P and theta     -> e*((1+2P)*B*G + 2*T*G + 2*B)
    (a fused kernel computes the gradients in the forward's pass.)
    """
    s, lik = spec.size, spec.variant
    grad = spec.mode == "fwd+bwd"
    B, G = s.batch, s.num_features
    mu = torch.exp(torch.randn((B, G), generator=generator) * 1.5)
    x = torch.poisson(mu * torch.rand((B, G), generator=generator) * 2, generator=generator)
    inputs = {
        "x": x.to(device=spec.device, dtype=spec.dtype),
        "mu": mu.to(device=spec.device, dtype=spec.dtype).requires_grad_(grad),
    }
    if lik != "poisson":
        inputs["theta"] = _randn((G,), spec, generator).exp().detach().requires_grad_(grad)
    if lik == "zinb":
        inputs["zi_logits"] = _randn((B, G), spec, generator, grad)
    grad_outputs = (_randn((B,), spec, generator),) if grad else None

    def eager(x, mu, theta=None, zi_logits=None):
        return -scvi_count_log_likelihood(x, mu, theta, zi_logits, lik).sum(-1)

    def fast(x, mu, theta=None, zi_logits=None):
        return -functional.count_log_likelihood(x, mu, theta, zi_logits, likelihood=lik, reduce_sum=True)

    collect = _tensor_collector("reconst", grad)
    e = spec.dtype.itemsize
    P = 2 if lik == "zinb" else 1
    T = 0 if lik == "poisson" else 1  # theta [G]
    if grad:
        nbytes, formula = e * ((1 + 2 * P) * B * G + 2 * T * G + 2 * B), f"e*({1 + 2 * P}*B*G + {2 * T}*G + 2*B)"
    else:
        nbytes, formula = e * ((1 + P) * B * G + T * G + B), f"e*({1 + P}*B*G + {T}*G + B)"
    return _make_bench(
        spec, eager, fast, inputs, collect, grad_outputs,
        min_bytes=nbytes, bytes_formula=formula, ratio_name="mu", ratio_bytes=e * B * G,
    )


def scvi_log_mixture_nb(x, mu_1, mu_2, theta_1, pi_logits):
    """scvi-tools 1.4.2's ``log_mixture_nb`` with a shared theta as its code
    computes it (``scvi/distributions/_negative_binomial.py``), after the
    support check ``NegativeBinomialMixture.log_prob`` makes on every call
    (one read of the device)."""
    if not bool(torch.distributions.constraints.nonnegative_integer.check(x).all()):
        raise ValueError("x: outside the support")  # (scvi warns)
    eps = 1e-8
    theta = theta_1.view(1, theta_1.size(0)) if theta_1.ndimension() == 1 else theta_1
    log_theta_mu_1_eps = torch.log(theta + mu_1 + eps)
    log_theta_mu_2_eps = torch.log(theta + mu_2 + eps)
    lgamma_x_theta = torch.lgamma(x + theta)
    lgamma_theta = torch.lgamma(theta)
    lgamma_x_plus_1 = torch.lgamma(x + 1)
    log_nb_1 = (theta * (torch.log(theta + eps) - log_theta_mu_1_eps) + x * (torch.log(mu_1 + eps) - log_theta_mu_1_eps)
                + lgamma_x_theta - lgamma_theta - lgamma_x_plus_1)
    log_nb_2 = (theta * (torch.log(theta + eps) - log_theta_mu_2_eps) + x * (torch.log(mu_2 + eps) - log_theta_mu_2_eps)
                + lgamma_x_theta - lgamma_theta - lgamma_x_plus_1)
    logsumexp = torch.logsumexp(torch.stack((log_nb_1, log_nb_2 - pi_logits)), dim=0)
    return logsumexp - F.softplus(-pi_logits)


def protein_loss(spec: Spec, generator: torch.Generator) -> Bench:
    """totalVI's protein reconstruction loss ``-log p(y).sum(-1)``, [B], for
    protein counts y [B, P] under the mixture of a background NB (mu_1) and a
    foreground NB (mu_2 = mu_1 (1 + alpha)) sharing one theta per protein
    [P], with the background's logits pi [B, P].

    Bytes:
      fwd:     read y, mu_1, mu_2, pi (B*P each), theta (P), write the loss (B) -> e*(4*B*P + P + B)
      fwd+bwd: + read grad_out (B), write the gradients of mu_1, mu_2, pi, theta -> e*(7*B*P + 2*P + 2*B)
    """
    s = spec.size
    grad = spec.mode == "fwd+bwd"
    B, P = s.batch, s.num_features
    mu_1 = torch.exp(torch.randn((B, P), generator=generator) + 2)
    mu_2 = mu_1 * (1 + torch.exp(torch.randn((B, P), generator=generator) + 1))
    foreground = torch.rand((B, P), generator=generator) < 0.6
    y = torch.poisson(torch.where(foreground, mu_2, mu_1), generator=generator)
    inputs = {
        "x": y.to(device=spec.device, dtype=spec.dtype),
        "mu_1": mu_1.to(device=spec.device, dtype=spec.dtype).requires_grad_(grad),
        "mu_2": mu_2.to(device=spec.device, dtype=spec.dtype).requires_grad_(grad),
        "theta_1": _randn((P,), spec, generator).exp().detach().requires_grad_(grad),
        "pi_logits": _randn((B, P), spec, generator, grad),
    }
    grad_outputs = (_randn((B,), spec, generator),) if grad else None

    def eager(x, mu_1, mu_2, theta_1, pi_logits):
        return -scvi_log_mixture_nb(x, mu_1, mu_2, theta_1, pi_logits).sum(-1)

    def fast(x, mu_1, mu_2, theta_1, pi_logits):
        return -functional.nb_mixture_log_likelihood(x, mu_1, mu_2, theta_1, None, pi_logits, reduce_sum=True)

    collect = _tensor_collector("reconst", grad)
    e = spec.dtype.itemsize
    if grad:
        nbytes, formula = e * (7 * B * P + 2 * P + 2 * B), "e*(7*B*P + 2*P + 2*B)"
    else:
        nbytes, formula = e * (4 * B * P + P + B), "e*(4*B*P + P + B)"
    return _make_bench(
        spec, eager, fast, inputs, collect, grad_outputs,
        min_bytes=nbytes, bytes_formula=formula, ratio_name="mu_1", ratio_bytes=e * B * P,
    )


def eager_vae_loss_learned_var(x, x_hat, mu, log_var, x_log_var, beta) -> LossResult:
    """pyautoencoder's VAE.compute_loss with a decoder that also predicts a
    log-variance per element: the Gaussian -0.5 (lv + (x - x_hat)^2 exp(-lv))."""
    x_expanded = x.unsqueeze(1).expand_as(x_hat)
    log_px_z = -0.5 * (x_log_var + (x_expanded - x_hat) ** 2 * torch.exp(-x_log_var))
    log_px_z = log_px_z.flatten(2).sum(-1).mean(1)
    kl = eager_kl_divergence_diag_gaussian(mu, log_var)
    elbo = (log_px_z - beta * kl).mean()
    diagnostics = {"elbo": elbo.item(), "log_likelihood": log_px_z.mean().item(), "kl_divergence": kl.mean().item()}
    return LossResult(objective=-elbo, diagnostics=diagnostics)


def vae_loss_learned_var(spec: Spec, generator: torch.Generator) -> Bench:
    """The (beta-)VAE loss of a Gaussian decoder with a learned log-variance
    per element (x_log_var shaped like x_hat).

    Bytes (as vae_loss, with x_log_var read and its gradient written):
      fwd:     e*(B*F + 2*B*S*F + 2*B*L)
      fwd+bwd: e*(B*F + 4*B*S*F + 4*B*L)
    """
    s = spec.size
    grad = spec.mode == "fwd+bwd"
    B, S, Fn, L = s.batch, s.samples, s.num_features, s.latent
    inputs = {
        "x": _x_for("gaussian", spec, generator),
        "x_hat": _randn((B, S, *s.features), spec, generator, grad),
        "mu": _randn((B, L), spec, generator, grad),
        "log_var": _randn((B, L), spec, generator, grad, scale=0.5),
        "x_log_var": _randn((B, S, *s.features), spec, generator, grad, scale=0.5),
    }

    def eager(x, x_hat, mu, log_var, x_log_var):
        return eager_vae_loss_learned_var(x, x_hat, mu, log_var, x_log_var, BETA)

    def fast(x, x_hat, mu, log_var, x_log_var):
        out = _VAE_OUTPUT(x_hat=x_hat, z=mu.detach().unsqueeze(1), mu=mu, log_var=log_var)
        return _VAE.compute_loss(x, out, BETA, "gaussian", x_log_var=x_log_var)

    collect = _loss_result_collector(grad)

    e = spec.dtype.itemsize
    if grad:
        nbytes, formula = e * (B * Fn + 4 * B * S * Fn + 4 * B * L), "e*(B*F + 4*B*S*F + 4*B*L)"
    else:
        nbytes, formula = e * (B * Fn + 2 * B * S * Fn + 2 * B * L), "e*(B*F + 2*B*S*F + 2*B*L)"
    return _make_bench(
        spec, eager, fast, inputs, collect,
        min_bytes=nbytes, bytes_formula=formula, ratio_name="x_hat", ratio_bytes=e * B * S * Fn,
    )


def eager_iwae_bound(x, x_hat, z, mu, log_var, likelihood) -> Tensor:
    """The importance-weighted bound as IWAE code writes it: the per-sample
    log-likelihood, the two latent log-densities, torch.logsumexp over S."""
    samples = x_hat.shape[1]
    log_px_z = eager_log_likelihood_sum(x, x_hat, likelihood)  # [B, S]
    log_pz = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    log_qz = torch.distributions.Normal(mu.unsqueeze(1), torch.exp(0.5 * log_var).unsqueeze(1)).log_prob(z).sum(-1)
    return torch.logsumexp(log_px_z + log_pz - log_qz, dim=1) - math.log(samples)


def iwae_bound(spec: Spec, generator: torch.Generator) -> Bench:
    """The importance-weighted bound [B] of S samples z [B, S, L] decoded to
    x_hat [B, S, F].

    Bytes:
      fwd:     read x (B*F), x_hat (B*S*F), z (B*S*L), mu, log_var (2*B*L), write B
               -> e*(B*F + B*S*F + B*S*L + 2*B*L + B)
      fwd+bwd: + read grad_out (B), write grad_x_hat (B*S*F), grad_z (B*S*L), grad_mu, grad_log_var
               -> e*(B*F + 2*B*S*F + 2*B*S*L + 4*B*L + 2*B)
    """
    s, lik = spec.size, spec.variant
    grad = spec.mode == "fwd+bwd"
    B, S, Fn, L = s.batch, s.samples, s.num_features, s.latent
    mu = _randn((B, L), spec, generator)
    log_var = _randn((B, L), spec, generator, scale=0.5)
    z = mu.unsqueeze(1) + torch.exp(0.5 * log_var).unsqueeze(1) * _randn((B, S, L), spec, generator)
    inputs = {
        "x": _x_for(lik, spec, generator),
        "x_hat": _randn((B, S, *s.features), spec, generator, grad),
        "z": z.detach().requires_grad_(grad),
        "mu": mu.requires_grad_(grad),
        "log_var": log_var.requires_grad_(grad),
    }
    grad_outputs = (_randn((B,), spec, generator),) if grad else None

    def eager(x, x_hat, z, mu, log_var):
        return eager_iwae_bound(x, x_hat, z, mu, log_var, lik)

    def fast(x, x_hat, z, mu, log_var):
        return functional.iwae_bound(x, x_hat, z, mu, log_var, lik)

    collect = _tensor_collector("bound", grad)
    e = spec.dtype.itemsize
    if grad:
        nbytes = e * (B * Fn + 2 * B * S * Fn + 2 * B * S * L + 4 * B * L + 2 * B)
        formula = "e*(B*F + 2*B*S*F + 2*B*S*L + 4*B*L + 2*B)"
    else:
        nbytes, formula = e * (B * Fn + B * S * Fn + B * S * L + 2 * B * L + B), "e*(B*F + B*S*F + B*S*L + 2*B*L + B)"
    return _make_bench(
        spec, eager, fast, inputs, collect, grad_outputs,
        min_bytes=nbytes, bytes_formula=formula, ratio_name="x_hat", ratio_bytes=e * B * S * Fn,
    )


WORKLOADS: dict[str, Callable[[Spec, torch.Generator], Bench]] = {
    "vae_loss": vae_loss,
    "log_likelihood_sum": log_likelihood_sum,
    "kl_diag_gaussian": kl_diag_gaussian,
    "reparameterize": reparameterize,
    "adagvae_posterior": adagvae_posterior,
    "count_loss": count_loss,
    "protein_loss": protein_loss,
    "vae_loss_learned_var": vae_loss_learned_var,
    "iwae_bound": iwae_bound,
}


def build(spec: Spec, seed: int = 0) -> Bench:
    generator = torch.Generator().manual_seed(seed)
    return WORKLOADS[spec.workload](spec, generator)
