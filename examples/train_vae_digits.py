"""Train a VAE and an AE on scikit-learn's 8x8 digits with both op backends.

The digits (1797 images, pixel values 0..16) are scaled to [0, 1] and
modelled with a Bernoulli likelihood (the decoders output logits). Each model
is trained twice from the same seed: once on the compiled extension
(``use_backend("extension")``, when it is available) and once on the
pure-PyTorch reference ops (``use_backend("reference")``); the two runs should
follow the same loss curve up to float32 rounding. The script prints the
final ELBO of both and writes one PNG with the loss curves, reconstructions
and samples from the prior.

    pip install -e ".[examples]"        # scikit-learn, matplotlib, tqdm
    python examples/train_vae_digits.py --epochs 100 --out examples/output/vae_digits.png
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time

import torch
from torch import nn

import pyautoencoder_fast as paf

try:  # progress bars are optional
    from tqdm.auto import tqdm
except ImportError:  # pragma: no cover - depends on the environment
    tqdm = None

IMAGE_SIDE = 8
PIXELS = IMAGE_SIDE * IMAGE_SIDE


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100, help="training epochs per run (default 100)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--latent-dim", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=256, help="width of the MLP hidden layers")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--beta", type=float, default=1.0, help="KL weight of the VAE (beta-VAE)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join("examples", "output", "vae_digits.png"))
    parser.add_argument("--no-progress", action="store_true", help="no tqdm bars, one line per epoch")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (default 1: these matrices are tiny, and on a busy "
        "machine OpenMP threads waiting for each other cost more than they save; 0 = torch's default)",
    )
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error("--epochs must be >= 1")
    return args


def load_data(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Digits as float32 [N, 8, 8] in [0, 1], split 90/10 into train and test."""
    from sklearn.datasets import load_digits

    images = torch.as_tensor(load_digits().images, dtype=torch.float32) / 16.0
    order = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(seed))
    images = images[order]
    n_test = images.shape[0] // 10
    return images[n_test:], images[:n_test]


def mlp_encoder(hidden: int) -> nn.Module:
    # The VAE's sampling layer adds the lazy mu/log_var heads on these features.
    return nn.Sequential(nn.Flatten(), nn.Linear(PIXELS, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())


def mlp_decoder(latent_dim: int, hidden: int) -> nn.Module:
    return nn.Sequential(
        nn.Linear(latent_dim, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, PIXELS),
        nn.Unflatten(1, (IMAGE_SIDE, IMAGE_SIDE)),  # logits [B, 8, 8]
    )


def make_models(args: argparse.Namespace, example: torch.Tensor) -> tuple[paf.VAE, paf.AE]:
    torch.manual_seed(args.seed)
    vae = paf.VAE(mlp_encoder(args.hidden), mlp_decoder(args.latent_dim, args.hidden), args.latent_dim)
    vae.build(example)  # materialise the lazy heads before creating the optimizer
    ae = paf.AE(
        nn.Sequential(mlp_encoder(args.hidden), nn.Linear(args.hidden, args.latent_dim)),
        mlp_decoder(args.latent_dim, args.hidden),
    )
    return vae, ae


def loss_of(model: nn.Module, batch: torch.Tensor, beta: float) -> paf.LossResult:
    if isinstance(model, paf.VAE):
        return model.compute_loss(batch, model(batch), beta=beta, likelihood="bernoulli")
    return model.compute_loss(batch, model(batch), likelihood="bernoulli")


def train(
    model: nn.Module,
    train_x: torch.Tensor,
    args: argparse.Namespace,
    backend: str,
    label: str,
) -> list[float]:
    """Trains ``model`` in place on ``backend``; returns the mean objective per epoch."""
    torch.manual_seed(args.seed + 1)  # same shuffling and sampling noise for every backend
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    history: list[float] = []
    n = train_x.shape[0]
    show_bar = tqdm is not None and not args.no_progress
    epochs = range(1, args.epochs + 1)
    bar = tqdm(epochs, desc=label, leave=True, dynamic_ncols=True) if show_bar else epochs
    model.train()
    with paf.use_backend(backend):
        for epoch in bar:
            total, seen = 0.0, 0
            for idx in torch.randperm(n).split(args.batch_size):
                batch = train_x[idx]
                result = loss_of(model, batch, args.beta)
                optimizer.zero_grad(set_to_none=True)
                result.objective.backward()
                optimizer.step()
                # diagnostics are floats already: no extra device sync
                value = -result.diagnostics["elbo"] if "elbo" in result.diagnostics else -result.diagnostics["log_likelihood"]
                total += value * batch.shape[0]
                seen += batch.shape[0]
            history.append(total / seen)
            if show_bar:
                bar.set_postfix(loss=f"{history[-1]:.3f}")
            else:
                print(f"{label}: epoch {epoch:3d}/{args.epochs}  loss {history[-1]:.4f}", flush=True)
    return history


@torch.no_grad()
def evaluate(model: nn.Module, test_x: torch.Tensor, backend: str, beta: float) -> dict[str, float]:
    """Test-set diagnostics (eval mode: the VAE decodes the posterior means)."""
    model.eval()
    with paf.use_backend(backend):
        return loss_of(model, test_x, beta).diagnostics


def plot(
    path: str,
    histories: dict[str, list[float]],
    vae: paf.VAE,
    ae: paf.AE,
    test_x: torch.Tensor,
    latent_dim: int,
    seed: int,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_show = 10
    originals = test_x[:n_show]
    vae.eval()
    ae.eval()
    vae_recon = torch.sigmoid(vae.decode(vae.encode(originals).z).x_hat[:, 0])  # [n, 8, 8]
    ae_recon = torch.sigmoid(ae.decode(ae.encode(originals).z).x_hat)
    prior = torch.randn(n_show, latent_dim, generator=torch.Generator().manual_seed(seed))
    samples = torch.sigmoid(vae.decode(prior).x_hat)  # 2-D z decodes to [n, 8, 8]

    fig = plt.figure(figsize=(11, 7.5), constrained_layout=True)
    grid = fig.add_gridspec(2, 1, height_ratios=[1.0, 1.15])
    top = grid[0].subgridspec(1, 2)
    for col, kind in enumerate(("VAE", "AE")):
        ax = fig.add_subplot(top[0, col])
        for name, values in histories.items():
            if name.startswith(kind + " "):
                style = "-" if "extension" in name else "--"
                ax.plot(range(1, len(values) + 1), values, style, label=name.split(" ", 1)[1], linewidth=1.6)
        ax.set_title(f"{kind}: training loss ({'-ELBO' if kind == 'VAE' else 'NLL'}, nats/image)")
        ax.set_xlabel("epoch")
        ax.legend(title="backend")
        ax.grid(alpha=0.3)

    rows = [
        ("test digits", originals),
        ("VAE reconstruction", vae_recon),
        ("AE reconstruction", ae_recon),
        ("VAE samples from N(0, I)", samples),
    ]
    bottom = grid[1].subgridspec(len(rows), n_show)
    for r, (title, images) in enumerate(rows):
        for c in range(n_show):
            ax = fig.add_subplot(bottom[r, c])
            ax.imshow(images[c].numpy(), cmap="gray_r", vmin=0.0, vmax=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(title, rotation=0, ha="right", va="center", fontsize=9)
    fig.suptitle("pyautoencoder_fast on sklearn digits (Bernoulli likelihood)")
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    try:
        import matplotlib  # noqa: F401
        import sklearn  # noqa: F401
    except ImportError as exc:
        print(f"this example needs scikit-learn and matplotlib: pip install -e '.[examples]' ({exc})", file=sys.stderr)
        return 2

    backends = ["extension", "reference"] if paf.extension_available() else ["reference"]
    if "extension" not in backends:
        print(f"note: compiled extension unavailable ({paf.extension_load_error()}); reference only")
    train_x, test_x = load_data(args.seed)
    print(f"digits: {train_x.shape[0]} train / {test_x.shape[0]} test images, backends: {', '.join(backends)}")

    vae0, ae0 = make_models(args, train_x[:2])
    histories: dict[str, list[float]] = {}
    trained: dict[str, tuple[paf.VAE, paf.AE]] = {}
    final: dict[str, dict[str, float]] = {}
    for backend in backends:
        vae, ae = copy.deepcopy(vae0), copy.deepcopy(ae0)  # identical initial weights
        start = time.perf_counter()
        histories[f"VAE {backend}"] = train(vae, train_x, args, backend, f"VAE [{backend}]")
        histories[f"AE {backend}"] = train(ae, train_x, args, backend, f"AE  [{backend}]")
        elapsed = time.perf_counter() - start
        final[backend] = {
            "train_elbo": -histories[f"VAE {backend}"][-1],
            **{f"test_{k}": v for k, v in evaluate(vae, test_x, backend, args.beta).items()},
            "ae_test_log_likelihood": evaluate(ae, test_x, backend, args.beta)["log_likelihood"],
            "seconds": elapsed,
        }
        trained[backend] = (vae, ae)

    print("\nfinal results (nats per image; higher ELBO / log-likelihood is better)")
    for backend, r in final.items():
        print(
            f"  {backend:9s}  final ELBO (train, last epoch) {r['train_elbo']:9.4f}   "
            f"test ELBO {r['test_elbo']:9.4f}   test KL {r['test_kl_divergence']:7.4f}   "
            f"AE test log-lik {r['ae_test_log_likelihood']:9.4f}   ({r['seconds']:.1f} s)"
        )
    if len(final) == 2:
        a, b = final["extension"]["train_elbo"], final["reference"]["train_elbo"]
        print(f"  |ELBO(extension) - ELBO(reference)| = {abs(a - b):.2e} (relative {abs(a - b) / abs(b):.1e})")

    vae, ae = trained[backends[0]]
    plot(args.out, histories, vae, ae, test_x, args.latent_dim, args.seed)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
