"""Whole training steps: what a user of the models sees.

``python -m benchmarks.training [--quick | --smoke] [--device cpu|cuda] [--threads N]``

One training step = zero_grad, forward (encode, sample, decode), loss,
backward, Adam step. Two providers train the same model (same weights, same
data), interleaved step by step:

* ``eager``: pyautoencoder's code written out in plain PyTorch: sampling with
  ``mu + exp(0.5 * log_var) * randn_like``, the loss of
  :func:`benchmarks.workloads.eager_vae_loss` (elementwise log-likelihood,
  sums, means, one ``.item()`` per diagnostic);
* ``fast``: this library's ``VAE``/``AE`` (fused sampling op, fused loss op,
  one transfer for the diagnostics);
* ``fast+graph`` (CUDA, VAE and scVI cases): this library with the whole
  step captured in one CUDA graph and replayed: the model's forward, the
  fused loss (VAE: through ``functional.elbo_stats``, whose diagnostics stay
  on the device, a [4] tensor read whenever the user wants; scVI:
  ``scvi.scvi_loss``), backward and ``Adam(capturable=True)``. The eager
  code cannot be captured: its ``.item()`` calls read the device.

Reported per case and provider: median [p20, p80] ms per step, the speed-up,
and the loss's share of the step: the median time of the loss alone
(forward and backward, on ``x_hat``, ``mu``, ``log_var`` as leaf tensors
freshly computed by the model's forward, as in a step) divided by the
median step time.
"""

from __future__ import annotations

import argparse
import copy
import math
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

import pyautoencoder_fast as paf

from . import harness as H
from .workloads import eager_vae_loss, scvi_count_log_likelihood

PROVIDERS = ("eager", "fast", "fast+graph")


# ------------------------------------------------------------------ models
@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # "vae", "ae" or "scvi"
    batch: int
    samples: int
    likelihood: str
    beta: float
    make: Callable[[], tuple[nn.Module, nn.Module, int, int]]  # encoder, decoder, features, latent
    input_shape: tuple[int, ...]

    @property
    def label(self) -> str:
        s = f", S={self.samples}" if self.kind == "vae" else ""
        return f"{self.name} (B={self.batch}{s}, {self.likelihood})"


class ScviModel(nn.Module):
    """scVI's VAE in its usual shape (scvi/module/_vae.py, one hidden layer,
    observed library size, gene dispersion, no dropout): encoder
    log1p(x) -> G-128-(mean, variance) of 10 latents; z sampled; decoder
    10-128 -> softmax scale times the library size (the NB mean), dropout
    logits; theta = exp(px_r), one per gene. Returns (px_rate, theta,
    px_dropout, qz_m, qz_v), what scvi's loss reads."""

    def __init__(self, genes: int, hidden: int = 128, latent: int = 10):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(genes, hidden), nn.BatchNorm1d(hidden), nn.ReLU())
        self.z_mean, self.z_var = nn.Linear(hidden, latent), nn.Linear(hidden, latent)
        self.decoder = nn.Sequential(nn.Linear(latent, hidden), nn.BatchNorm1d(hidden), nn.ReLU())
        self.px_scale, self.px_dropout = nn.Linear(hidden, genes), nn.Linear(hidden, genes)
        self.px_r = nn.Parameter(torch.randn(genes))

    def forward(self, x):
        library = x.sum(1, keepdim=True)
        q = self.encoder(torch.log1p(x))
        qz_m, qz_v = self.z_mean(q), torch.exp(self.z_var(q)) + 1e-4
        z = qz_m + qz_v.sqrt() * torch.randn_like(qz_m) if self.training else qz_m
        h = self.decoder(z)
        px_rate = library * torch.softmax(self.px_scale(h), dim=-1)
        return px_rate, torch.exp(self.px_r), self.px_dropout(h), qz_m, qz_v


def eager_scvi_loss(x, px_rate, theta, px_dropout, qz_m, qz_v, likelihood):
    """scvi-tools' VAE.loss as its code runs it (observed library size): the
    reconstruction through its log_prob code, the KL through torch.distributions."""
    from torch.distributions import Normal, kl_divergence

    kl_z = kl_divergence(Normal(qz_m, qz_v.sqrt()), Normal(torch.zeros_like(qz_m), torch.ones_like(qz_v))).sum(-1)
    kl_l = torch.zeros_like(kl_z)
    reconst = -scvi_count_log_likelihood(x, px_rate, theta, px_dropout, likelihood).sum(-1)
    loss = torch.mean(reconst + (kl_z + kl_l))
    return paf.scvi.LossOutput(loss=loss, reconstruction_loss=reconst,
                               kl_local={"kl_divergence_l": kl_l, "kl_divergence_z": kl_z})


def mlp(latent: int, hidden: int = 400, side: int = 28, ae: bool = False):
    features = side * side
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(features, hidden), nn.ReLU())
    if ae:
        encoder.append(nn.Linear(hidden, latent))
    decoder = nn.Sequential(
        nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, features), nn.Unflatten(1, (1, side, side))
    )
    return encoder, decoder, hidden, latent


def conv(latent: int = 32, width: int = 32):
    chans = [3, width, 2 * width, 4 * width, 8 * width]
    enc: list[nn.Module] = []
    for a, b in zip(chans, chans[1:]):
        enc += [nn.Conv2d(a, b, 4, 2, 1), nn.ReLU()]
    encoder = nn.Sequential(*enc, nn.Flatten())  # 64x64 -> 4x4
    dec: list[nn.Module] = [nn.Linear(latent, chans[-1] * 16), nn.ReLU(), nn.Unflatten(1, (chans[-1], 4, 4))]
    rev = chans[::-1]
    for i, (a, b) in enumerate(zip(rev, rev[1:])):
        dec.append(nn.ConvTranspose2d(a, b, 4, 2, 1))
        if i < len(rev) - 2:
            dec.append(nn.ReLU())
    return encoder, nn.Sequential(*dec), chans[-1] * 16, latent


CASES = [
    Case("MLP VAE 784-400-20", "vae", 128, 1, "bernoulli", 1.0, lambda: mlp(20), (1, 28, 28)),
    Case("MLP VAE 784-400-20", "vae", 128, 8, "bernoulli", 1.0, lambda: mlp(20), (1, 28, 28)),
    Case("conv VAE 3x64x64", "vae", 32, 1, "gaussian", 1.0, lambda: conv(32), (3, 64, 64)),
    Case("MLP AE 784-400-20", "ae", 128, 1, "bernoulli", 1.0, lambda: mlp(20, ae=True), (1, 28, 28)),
    Case("scVI 2000-128-10", "scvi", 128, 1, "zinb", 1.0, lambda: ScviModel(2000), (2000,)),
    Case("scVI 2000-128-10", "scvi", 128, 1, "nb", 1.0, lambda: ScviModel(2000), (2000,)),
    Case("scVI 20000-128-10", "scvi", 128, 1, "zinb", 1.0, lambda: ScviModel(20000), (20000,)),
]
SMOKE_CASES = [
    Case("MLP VAE tiny", "vae", 4, 2, "bernoulli", 1.0, lambda: mlp(3, hidden=8, side=4), (1, 4, 4)),
    Case("MLP AE tiny", "ae", 4, 1, "gaussian", 1.0, lambda: mlp(3, hidden=8, side=4, ae=True), (1, 4, 4)),
    Case("scVI tiny", "scvi", 4, 1, "zinb", 1.0, lambda: ScviModel(12, hidden=8, latent=3), (12,)),
]


class EagerVAE(nn.Module):
    """pyautoencoder's VAE in plain PyTorch (the seed: sample in training
    mode, the mean in eval mode), with its loss code."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, features: int, latent: int):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder
        self.mu, self.log_var = nn.Linear(features, latent), nn.Linear(features, latent)

    def forward(self, x, S=1):
        f = self.encoder(x)
        mu, log_var = self.mu(f), self.log_var(f)
        mu_e = mu.unsqueeze(1).expand(-1, S, -1)
        if self.training:
            std_e = torch.exp(0.5 * log_var).unsqueeze(1).expand(-1, S, -1)
            z = mu_e + std_e * torch.randn_like(std_e)
        else:
            z = mu_e
        B, S_, D = z.shape
        x_hat = self.decoder(z.reshape(B * S_, D))
        return x_hat.reshape(B, S_, *x_hat.shape[1:]), mu, log_var

    @staticmethod
    def loss(x, x_hat, mu, log_var, beta, likelihood):
        return eager_vae_loss(x, x_hat, mu, log_var, beta, likelihood)


class EagerAE(nn.Module):
    def __init__(self, encoder: nn.Module, decoder: nn.Module):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    def forward(self, x):
        return self.decoder(self.encoder(x))

    @staticmethod
    def loss(x, x_hat, likelihood):
        """pyautoencoder's AE.compute_loss: elementwise, sum, batch mean, .item()."""
        from .workloads import eager_log_likelihood

        nll = -eager_log_likelihood(x, x_hat, likelihood).reshape(x.shape[0], -1).sum(-1).mean()
        return nll, {"log_likelihood": -nll.item()}


def build_pair(case: Case, device: str, seed: int = 0):
    """(eager model, fast model) with the same weights, on ``device``."""
    torch.manual_seed(seed)
    if case.kind == "scvi":  # the same model; only the loss differs
        model = case.make()
        return model.to(device), copy.deepcopy(model).to(device)
    encoder, decoder, features, latent = case.make()
    if case.kind == "ae":
        eager = EagerAE(encoder, decoder)
        fast = paf.AE(copy.deepcopy(encoder), copy.deepcopy(decoder))
    else:
        eager = EagerVAE(encoder, decoder, features, latent)
        fast = paf.VAE(copy.deepcopy(encoder), copy.deepcopy(decoder), latent)
        fast.build(torch.zeros(2, *case.input_shape))
        fast.sampling_layer.mu.load_state_dict(eager.mu.state_dict())
        fast.sampling_layer.log_var.load_state_dict(eager.log_var.state_dict())
    return eager.to(device), fast.to(device)


def make_data(case: Case, device: str, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if case.kind == "scvi":  # counts with many zeros, no empty cell
        counts = torch.poisson(torch.exp(torch.randn(case.batch, *case.input_shape, generator=g) * 1.5 - 1), generator=g)
        counts[:, 0] += 1
        return counts.to(device)
    x = torch.rand(case.batch, *case.input_shape, generator=g)
    if case.likelihood == "gaussian":
        x = (x - 0.5) * 2
    return x.to(device)


# ------------------------------------------------------------ one provider
class Trainer:
    """One provider's model, optimiser and step / loss-only functions."""

    def __init__(self, provider: str, model: nn.Module, case: Case, x: torch.Tensor):
        self.provider, self.model, self.case, self.x = provider, model, case, x
        self.optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def forward(self):
        c, m, x = self.case, self.model, self.x
        if c.kind == "scvi":
            return m(x)
        if c.kind == "ae":
            out = m(x)
            return (out.x_hat,) if self.provider != "eager" else (out,)
        out = m(x, S=c.samples)
        return (out.x_hat, out.mu, out.log_var) if self.provider != "eager" else out

    def loss(self, x_hat, mu=None, log_var=None, *more):
        """(objective, diagnostics as floats)."""
        c, x = self.case, self.x
        if c.kind == "scvi":  # (x_hat, mu, log_var, *more): px_rate, theta, px_dropout, qz_m, qz_v
            if self.provider == "eager":
                out = eager_scvi_loss(x, x_hat, mu, log_var, *more, c.likelihood)
            else:
                out = paf.scvi.scvi_loss(x, x_hat, mu, log_var, *more, gene_likelihood=c.likelihood)
            return out.loss, {}
        if self.provider == "eager":
            if c.kind == "ae":
                return EagerAE.loss(x, x_hat, c.likelihood)
            result = EagerVAE.loss(x, x_hat, mu, log_var, c.beta, c.likelihood)
            return result.objective, result.diagnostics
        if c.kind == "ae":
            result = self.model.compute_loss(x, paf.AEOutput(x_hat=x_hat, z=x_hat), c.likelihood)
        else:
            z = mu.detach().unsqueeze(1)  # unused by the loss
            result = self.model.compute_loss(x, paf.VAEOutput(x_hat, z, mu, log_var), c.beta, c.likelihood)
        return result.objective, result.diagnostics

    def step(self) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        objective, _ = self.loss(*self.forward())
        objective.backward()
        self.optimizer.step()
        return objective.item()

    def loss_inputs(self) -> list[torch.Tensor]:
        with torch.no_grad():
            return [t.detach().clone().requires_grad_() for t in self.forward()]

    def loss_only(self, leaves: list[torch.Tensor]) -> None:
        for t in leaves:
            t.grad = None
        objective, _ = self.loss(*leaves)
        objective.backward()


class GraphTrainer(Trainer):
    """The fast provider's step captured whole in one CUDA graph (the recipe of
    torch.cuda.graphs: warm-up on a side stream, grads set to None, then
    forward, loss, backward and optimizer step inside the capture); ``step``
    replays it. The sampling noise stays fresh on every replay: its seed is
    drawn on the device from torch's CUDA generator, which advances in graphs."""

    def __init__(self, model: nn.Module, case: Case, x: torch.Tensor):
        super().__init__("fast", model, case, x)
        self.provider = "fast+graph"
        self.optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, capturable=True)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.stats: torch.Tensor | None = None

    def body(self) -> torch.Tensor:
        """One step without reading the device; returns elbo_stats' [4] tensor
        (scVI: the objective alone, as a [1] tensor)."""
        c = self.case
        if c.kind == "scvi":
            objective, _ = self.loss(*self.forward())
            objective.backward()
            self.optimizer.step()
            return objective.detach().reshape(1)
        x_hat, mu, log_var = self.forward()
        stats = paf.functional.elbo_stats(self.x, x_hat, mu, log_var, c.beta, c.likelihood)
        stats[0].backward()
        self.optimizer.step()
        return stats.detach()

    def capture(self, warmup: int = 3) -> None:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(warmup):
                self.optimizer.zero_grad(set_to_none=True)
                self.body()
        torch.cuda.current_stream().wait_stream(side)
        self.optimizer.zero_grad(set_to_none=True)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.stats = self.body()

    def step(self) -> float:
        self.graph.replay()
        return math.nan  # the objective stays on the device (self.stats[0])

    def check_training(self, replays: int = 5) -> None:
        """The replays train: the objective stays finite and the weights move."""
        before = [p.detach().clone() for p in self.model.parameters()]
        objectives = []
        for _ in range(replays):
            self.step()
            objectives.append(self.stats[0].item())
        moved = any(not torch.equal(a, p.detach()) for a, p in zip(before, self.model.parameters()))
        if not all(math.isfinite(o) for o in objectives) or not moved:
            raise H.ProviderMismatch(
                f"{self.case.label}: the captured step does not train (objectives {objectives}, weights moved: {moved})"
            )


def check_same_numbers(eager: Trainer, fast: Trainer) -> float:
    """Both compute the same objective at z = mu (eval mode); returns it."""
    eager.model.eval(), fast.model.eval()
    with torch.no_grad():
        a = eager.loss(*eager.forward())[0].item()
        b = fast.loss(*fast.forward())[0].item()
    eager.model.train(), fast.model.train()
    if abs(a - b) > 1e-4 * max(1.0, abs(a)):
        raise H.ProviderMismatch(f"{eager.case.label}: eager objective {a} != fast {b}")
    return a


# ------------------------------------------------------------------ timing
@dataclass
class Result:
    case: str
    provider: str
    step_ms: float
    step_p20_ms: float
    step_p80_ms: float
    loss_ms: float
    loss_share: float
    speedup: float = 1.0  # eager step median / this provider's
    note: str = ""  # why a provider has no numbers

    @property
    def steps_per_s(self) -> float:
        return 1e3 / self.step_ms


PRESETS = {
    "full": dict(warmup=5, rounds=40, loss_rounds=60),
    "quick": dict(warmup=2, rounds=10, loss_rounds=15),
    "smoke": dict(warmup=1, rounds=2, loss_rounds=2),
}


def run_case(case: Case, device: str, preset: str) -> list[Result]:
    p = PRESETS[preset]
    eager_model, fast_model = build_pair(case, device)
    x = make_data(case, device)
    graph_model = copy.deepcopy(fast_model) if device.startswith("cuda") and case.kind in ("vae", "scvi") else None
    trainers = {"eager": Trainer("eager", eager_model, case, x), "fast": Trainer("fast", fast_model, case, x)}
    check_same_numbers(trainers["eager"], trainers["fast"])
    failed: dict[str, str] = {}
    if graph_model is not None:
        graph = GraphTrainer(graph_model, case, x)
        try:
            check_same_numbers(trainers["eager"], graph)
            graph.capture()
            graph.check_training()
            trainers["fast+graph"] = graph
        except Exception as exc:  # noqa: BLE001 - reported in the results, the other providers still run
            failed["fast+graph"] = f"{type(exc).__name__}: {exc}".replace("\n", " ")[:300]
            print(f"{case.label}: fast+graph failed: {failed['fast+graph']}", file=sys.stderr)
    for _ in range(p["warmup"]):
        for t in trainers.values():
            t.step()
    steps: dict[str, list[float]] = {k: [] for k in trainers}
    for _ in range(p["rounds"]):  # interleaved: one step of each, in turn
        for name, t in trainers.items():
            steps[name].append(1e3 * H.time_call(t.step, device))
    losses: dict[str, list[float]] = {k: [] for k in trainers if k != "fast+graph"}
    for _ in range(p["loss_rounds"]):
        for name in losses:
            t = trainers[name]
            # As in a step, the loss reads the x_hat the decoder has just written.
            leaves = t.loss_inputs()
            losses[name].append(1e3 * H.time_call(lambda: t.loss_only(leaves), device))
    results = []
    for name in trainers:
        median = H.percentile(steps[name], 50)
        loss = H.percentile(losses[name], 50) if name in losses else math.nan  # (not separable from a graph)
        results.append(
            Result(case.label, name, median, H.percentile(steps[name], 20), H.percentile(steps[name], 80), loss, loss / median)
        )
    for name, why in failed.items():
        results.append(Result(case.label, name, math.nan, math.nan, math.nan, math.nan, math.nan, note=why))
    eager_ms = results[0].step_ms
    for r in results:
        r.speedup = eager_ms / r.step_ms
    return results


def render_markdown(results: list[Result], meta: dict[str, str]) -> str:
    lines = [f"- **{k}**: {v}" for k, v in meta.items()]
    lines += [
        "",
        "| training step | provider | ms / step [p20, p80] | steps / s | speed-up | loss ms | loss share |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if r.note:
            lines.append(f"| {r.case} | {r.provider} | failed: {r.note} | | | | |")
            continue
        loss = "-" if math.isnan(r.loss_ms) else f"{r.loss_ms:.3f}"
        share = "-" if math.isnan(r.loss_share) else f"{100 * r.loss_share:.1f}%"
        lines.append(
            f"| {r.case} | {r.provider} | {r.step_ms:.2f} [{r.step_p20_ms:.2f}, {r.step_p80_ms:.2f}] | "
            f"{r.steps_per_s:.0f} | {r.speedup:.2f}x | {loss} | {share} |"
        )
    return "\n".join(lines) + "\n"


def run(device: str = "cpu", preset: str = "full", command: str = "", out_dir: Path | None = None,
        cases: list[Case] | None = None, name: str | None = None) -> list[Result]:
    """Runs the cases (default: the preset's) and writes
    training-<device>[-<name>][-<preset>].md when out_dir is given."""
    cases = cases if cases is not None else (SMOKE_CASES if preset == "smoke" else CASES)
    meta = {
        "device": H.device_description(device),
        "threads": str(torch.get_num_threads()),
        "torch": torch.__version__,
        "extension": str(paf.extension_info()),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": command or "(in-process)",
    }
    results = []
    for case in cases:
        results += run_case(case, device, preset)
    text = render_markdown(results, meta)
    print(text)
    if out_dir is not None:
        suffix = ("" if not name else f"-{H._slug(name)}") + ("" if preset == "full" else f"-{preset}")
        path = Path(out_dir) / f"training-{H.device_tag(device)}{suffix}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("# Training steps\n\n" + text)
        print(f"wrote {path}", file=sys.stderr)
    return results


def main(argv: list[str] | None = None) -> int:
    raw = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="python -m benchmarks.training", description=__doc__.split("\n\n")[0])
    preset = p.add_mutually_exclusive_group()
    preset.add_argument("--quick", action="store_true", help="fewer steps")
    preset.add_argument("--smoke", action="store_true", help="tiny models, 2 steps (for tests)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: all cores)")
    p.add_argument("--out", default=str(H.RESULTS_DIR))
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--case", metavar="TEXT",
                   help="only the cases whose label contains TEXT (e.g. 'scVI'); the file name then says TEXT")
    args = p.parse_args(raw)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    preset_name = "quick" if args.quick else "smoke" if args.smoke else "full"
    command = " ".join(["python -m benchmarks.training", *map(shlex.quote, raw)])
    cases = None
    if args.case:
        pool = SMOKE_CASES if preset_name == "smoke" else CASES
        cases = [c for c in pool if args.case in c.label]
        if not cases:
            raise SystemExit(f"--case: no case label contains {args.case!r}")
    run(args.device, preset_name, command, None if args.no_write else Path(args.out), cases=cases, name=args.case)
    return 0


if __name__ == "__main__":
    sys.exit(main())
