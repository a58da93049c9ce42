"""CUDA only (skipped without a GPU): every op has a CUDA kernel; CPU and
CUDA draw the same noise for the same seed; a VAE training step captured in
a CUDA graph replays like eager steps; VAE.compute_loss launches a few
kernels and reads the device once, whatever the input's rank; rows split
across blocks sum as accurately as on the CPU, and bitwise the same from run
to run.

Every op and its backward against the oracle, in every dtype and in
non-contiguous layouts, runs on cuda in tests/test_ops_*.py (the ``device``
fixture); the models and the peer APIs in tests/test_models.py,
tests/test_peer_losses.py and tests/test_drop_in_*.py.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import pyautoencoder_fast as paf
from pyautoencoder_fast import functional as F
from pyautoencoder_fast.variational import VAEOutput
from conftest import assert_accurate, check_against_oracle, require_cuda_kernels, requires_cuda, requires_extension

pytestmark = [requires_cuda, requires_extension, pytest.mark.cuda]
ops = torch.ops.pyautoencoder_fast
CUDA = torch.device("cuda")


@pytest.fixture(autouse=True)
def _cuda_kernels_built():
    require_cuda_kernels()


def test_every_op_has_a_cuda_kernel():
    names = sorted(n for n in torch._C._dispatch_get_all_op_names() if n.startswith("pyautoencoder_fast::"))
    assert names, "no pyautoencoder_fast ops registered"
    missing = [n for n in names if not torch._C._dispatch_has_kernel_for_dispatch_key(n, "CUDA")]
    assert not missing, f"no CUDA kernel registered for {missing}"


# ------------------------------------------------------- the same noise
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("seed", [0, 2024, 2**62 + 12345])  # the last sets both 32-bit words of the key
@pytest.mark.parametrize("shape", [(37, 5, 19), (700, 3, 513)], ids=str)
def test_cpu_and_cuda_draw_the_same_noise(shape, seed, dtype):
    # The seed is a 0-d int64 tensor on the device of mu, as functional.draw_seed gives it.
    batch, samples, dim = shape
    mu, log_var = torch.randn(batch, dim, dtype=dtype), torch.randn(batch, dim, dtype=dtype)
    grad_z = torch.randn(batch, samples, dim, dtype=dtype)

    def run(device):
        seed_t = torch.tensor(seed, device=device)
        m, lv, g = (t.to(device) for t in (mu, log_var, grad_z))
        z_with_noise, noise = ops.reparameterize_with_noise(m, lv, samples, seed_t)
        return {
            "z": ops.reparameterize(m, lv, samples, seed_t),
            "z (with noise)": z_with_noise,
            "noise": noise,
            "grads from the noise": ops.reparameterize_backward(g, m, lv, seed_t, noise),
            "grads from the seed": ops.reparameterize_backward(g, m, lv, seed_t),
        }

    on_cuda, on_cpu = run(CUDA), run("cpu")
    assert on_cuda["noise"].dtype == on_cpu["noise"].dtype
    for name, value in on_cuda.items():
        for t in value if isinstance(value, tuple) else (value,):
            assert t.device.type == "cuda", name
        assert_accurate(value, on_cpu[name], what=name)  # per-dtype tolerance: the math functions may round differently


# ------------------------------------------------------------ CUDA graph
def test_cuda_graph_replays_a_training_step_like_eager():
    """A VAE training step (sampling with the in-kernel noise, decoder, fused
    loss, backward into static .grad buffers) captured in one CUDA graph after
    PyTorch's whole-network recipe replays like eager steps from the same
    seed. The seed of each step is drawn on the CUDA generator
    (functional.draw_seed), which graphs replay with fresh offsets, and the
    kernels must read it on the device.

    The graph holds functional.elbo_stats, the op VAE.compute_loss runs:
    compute_loss also reads the diagnostics to the host, which no graph can
    capture. The eager steps run compute_loss itself."""
    batch, samples, features, latent, beta = 16, 3, 48, 4, 2.0
    torch.manual_seed(0)
    vae = paf.VAE(
        nn.Sequential(nn.Flatten(), nn.Linear(features, 32), nn.Tanh()),
        nn.Sequential(nn.Linear(latent, 32), nn.Tanh(), nn.Linear(32, features)),
        latent,
    )
    vae.build(torch.rand(2, features)).to(CUDA).train()
    eager = copy.deepcopy(vae)  # no optimizer step: both keep these weights
    batches = torch.rand(4, batch, features, device=CUDA)  # in [0, 1], Bernoulli targets
    static_x = batches[0].clone()

    def step(model, x):
        out = model(x, S=samples)
        stats = F.elbo_stats(x, out.x_hat, out.mu, out.log_var, beta, "bernoulli")
        stats[0].backward()
        return out.z, stats

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up on a side stream
        for _ in range(3):
            vae.zero_grad(set_to_none=True)
            step(vae, static_x)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    vae.zero_grad(set_to_none=True)  # backward allocates the .grad buffers from the graph's pool
    with torch.cuda.graph(graph):
        static_z, static_stats = step(vae, static_x)
    static_grads = {name: p.grad for name, p in vae.named_parameters()}

    def replay(x):
        static_x.copy_(x)
        graph.replay()
        return static_z.clone(), static_stats.detach().clone(), {n: g.clone() for n, g in static_grads.items()}

    def eager_step(x):
        eager.zero_grad(set_to_none=True)
        out = eager(x, S=samples)
        result = eager.compute_loss(x, out, beta=beta, likelihood="bernoulli")
        result.objective.backward()
        stats = torch.tensor([result.objective.item(), *result.diagnostics.values()], device=CUDA)
        return out.z.detach(), stats, {n: p.grad for n, p in eager.named_parameters()}

    replayed, expected = [], []
    for seed in (11, 12):  # two steps per seed: the graph advances the generator as eager steps do
        torch.manual_seed(seed)
        replayed += [replay(batches[0]), replay(batches[1])]
        torch.manual_seed(seed)
        expected += [eager_step(batches[0]), eager_step(batches[1])]
    for k, ((z, stats, grads), (z_e, stats_e, grads_e)) in enumerate(zip(replayed, expected)):
        torch.testing.assert_close(z, z_e, msg=lambda m: f"step {k}, z: {m}")
        torch.testing.assert_close(stats, stats_e, msg=lambda m: f"step {k}, stats: {m}")
        for name in grads_e:
            torch.testing.assert_close(grads[name], grads_e[name], msg=lambda m: f"step {k}, grad of {name}: {m}")
    # fresh noise on every replay, the same noise for the same seed
    assert not torch.equal(replayed[0][0], replayed[2][0]), "replays with different seeds drew the same noise"
    torch.manual_seed(11)
    assert torch.equal(replay(batches[0])[0], replayed[0][0])


# --------------------------------------- VAE.compute_loss: launches, transfers
# VAE.compute_loss is one elbo op and one read of its [4] stats
# (stats.tolist()). The op's kernels: the row pass (log-likelihood and its
# gradient), the KL pass and the combination of partial sums into the
# stats, in a fixed order (no atomics); 8 leaves room for a row sum split in
# two kernels or a buffer fill, and is far below the eager loss (the
# reference backend launches about 35 kernels, checked below).
MAX_LOSS_KERNELS = 8
# Its backward (torch.autograd.grad of the objective): autograd's own seed and
# select-backward kernels, the in-place x_hat rescale (each thread returns
# at once for objective.backward()) and the latent gradients.
MAX_LOSS_BACKWARD_KERNELS = 6


def _cuda_activity(fn) -> tuple[list[str], int]:
    """(names of the CUDA kernels fn launched, number of device-to-host copies)."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    on_device = [e.name for e in prof.events() if e.device_type == DeviceType.CUDA]
    kernels = [name for name in on_device if not name.startswith(("Memcpy", "Memset"))]
    to_host = [name for name in on_device if name.startswith("Memcpy DtoH")]
    return kernels, len(to_host)


@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
def test_vae_loss_launches_few_kernels_and_reads_the_device_once(likelihood):
    batch, samples, latent, image = 8, 2, 4, (3, 16, 16)
    features = image[0] * image[1] * image[2]
    vae = paf.VAE(nn.Flatten(), nn.Identity(), latent)  # compute_loss uses none of its layers
    counts = {}
    for rank, feature_shape in ((2, (features,)), (4, image)):  # the same features, flat or as images
        x = torch.rand(batch, *feature_shape, device=CUDA)
        x_hat = torch.randn(batch, samples, *feature_shape, device=CUDA, requires_grad=True)
        mu = torch.randn(batch, latent, device=CUDA, requires_grad=True)
        log_var = torch.randn(batch, latent, device=CUDA, requires_grad=True)
        out = VAEOutput(x_hat=x_hat, z=mu.unsqueeze(1).expand(-1, samples, -1), mu=mu, log_var=log_var)

        def loss():
            return vae.compute_loss(x, out, beta=2.0, likelihood=likelihood)

        loss()  # first call outside the profile
        kernels, to_host = _cuda_activity(loss)
        assert to_host == 1, f"rank {rank}: {to_host} device-to-host copies (one reads all diagnostics)"
        assert 1 <= len(kernels) <= MAX_LOSS_KERNELS, f"rank {rank}: {len(kernels)} kernels: {kernels}"
        counts[rank] = len(kernels)
        both, to_host = _cuda_activity(lambda: torch.autograd.grad(loss().objective, [x_hat, mu, log_var]))
        backward = both[len(kernels):]
        assert to_host == 1, f"rank {rank}: the backward read the device ({to_host} copies in all)"
        assert len(backward) <= MAX_LOSS_BACKWARD_KERNELS, f"rank {rank}: backward kernels: {backward}"
    assert counts[2] == counts[4], counts
    # The count is meaningful: the eager loss code launches many more.
    with paf.use_backend("reference"):
        eager_kernels, _ = _cuda_activity(loss)
    assert len(eager_kernels) > MAX_LOSS_KERNELS, eager_kernels


# -------------------------------------------------------------- long rows
LONG = 1_000_000  # far longer than one block's share of a row


def _long_row_case(name: str):
    """(fn, float64 master inputs on the CPU, requires_grad marking what is
    differentiated) for an op on rows of LONG elements, reductions in the
    forward or (for broadcast inputs) in the backward."""
    g = torch.Generator().manual_seed(0)

    def normal(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).requires_grad_()

    def unit(*shape):  # Bernoulli targets
        return torch.rand(*shape, generator=g, dtype=torch.float64)

    if name == "log_likelihood_sum":  # the gradient for x sums over the samples
        return lambda x, h: F.log_likelihood_sum(x, h, "gaussian"), [normal(2, LONG), normal(2, 3, LONG)]
    if name == "log_likelihood":  # x shared by the rows: its gradient sums over them
        return lambda x, h: F.log_likelihood(x, h, "bernoulli"), [unit(1, LONG).requires_grad_(), normal(3, LONG, scale=2.0)]
    if name == "kl_diag_gaussian":  # one prior shared by every row
        return (
            lambda mq, lq, mp, lp: F.kl_diag_gaussian(mq, lq, mp, lp),
            [normal(4, LONG), normal(4, LONG, scale=0.5), normal(LONG), normal(LONG, scale=0.5)],
        )
    if name == "elbo":
        return (
            lambda x, h, m, lv: F.elbo_stats(x, h, m, lv, 2.0, "bernoulli"),
            [unit(2, LONG), normal(2, 3, LONG, scale=2.0), normal(2, LONG), normal(2, LONG, scale=0.5)],
        )
    if name == "adagvae_posterior":
        return F.adagvae_posterior, [normal(2, LONG), normal(2, LONG, scale=0.5), normal(2, LONG), normal(2, LONG, scale=0.5)]
    assert name == "reparameterize", name  # log_var broadcast over the batch
    return (
        lambda m, lv: F.reparameterize(m, lv, 2, generator=torch.Generator(m.device).manual_seed(5)),
        [normal(LONG // 1000, 1000), normal(1000, scale=0.5)],
    )


# (float16 sums of 10^6 terms overflow; float16 accumulation is checked on short rows)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name", ["log_likelihood_sum", "kl_diag_gaussian", "elbo"])
def test_long_rows_match_the_oracle(name, dtype):
    fn, masters = _long_row_case(name)
    check_against_oracle(fn, masters, dtype, device=CUDA, what=name)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    "name", ["log_likelihood_sum", "log_likelihood", "kl_diag_gaussian", "elbo", "adagvae_posterior", "reparameterize"]
)
def test_long_rows_bitwise_identical_run_to_run(name, dtype):
    fn, masters = _long_row_case(name)
    inputs = [m.detach().to(CUDA, dtype).requires_grad_(m.requires_grad) for m in masters]
    differentiable = [i for i in inputs if i.requires_grad]

    def run():
        outs = fn(*inputs)
        outs = list(outs) if isinstance(outs, tuple) else [outs]
        weights = [torch.linspace(-1.0, 2.0, o.numel(), device=CUDA).reshape(o.shape).to(dtype) for o in outs]
        return [o.detach() for o in outs] + list(torch.autograd.grad(outs, differentiable, weights))

    first = run()
    for _ in range(2):
        for k, (a, b) in enumerate(zip(first, run())):
            assert torch.equal(a, b), f"{name} output/gradient {k} differs between runs"
