"""reparameterize: noise statistics, reproducibility, oracle gradients."""

import pytest
import torch

import pyautoencoder_fast as paf
from pyautoencoder_fast import functional as F
from conftest import DTYPES, assert_accurate, check_against_oracle, reparameterize_with_oracle, requires_extension

pytestmark = requires_extension


def test_noise_is_standard_normal(device):
    mu, lv = torch.zeros(2000, 64, device=device), torch.zeros(2000, 64, device=device)
    z = F.reparameterize(mu, lv, 4)
    assert z.shape == (2000, 4, 64)
    n = z.numel()
    assert abs(z.mean().item()) < 5 / n**0.5
    assert abs(z.var().item() - 1) < 5 * (2 / n) ** 0.5
    # third and fourth moments of N(0, 1): 0 and 3
    assert abs((z**3).mean().item()) < 0.02
    assert abs((z**4).mean().item() - 3) < 0.05
    # neighbouring elements (same Philox block, the two Box-Muller lanes) are uncorrelated
    flat = z.flatten()
    for lag in (1, 2, 3, 4):
        corr = (flat[:-lag] * flat[lag:]).mean().item()
        assert abs(corr) < 0.01, lag


@pytest.mark.parametrize("dtype", DTYPES)
def test_mean_and_scale(dtype, device):
    mu = torch.tensor([[1.5, -2.0, 0.0]], dtype=dtype, device=device).expand(4000, 3)
    lv = torch.tensor([[0.0, 2.0, -2.0]], dtype=dtype, device=device).expand(4000, 3)
    z = F.reparameterize(mu, lv, 2).double().cpu()
    torch.testing.assert_close(z.mean((0, 1)), torch.tensor([1.5, -2.0, 0.0], dtype=torch.float64), atol=0.1, rtol=0)
    torch.testing.assert_close(z.std((0, 1)), torch.tensor([1.0, 2.718281828, 0.367879441], dtype=torch.float64), rtol=0.05, atol=0)


def test_reproducible_under_seed_and_generator(device):
    mu, lv = torch.randn(5, 7, device=device), torch.randn(5, 7, device=device)
    torch.manual_seed(123)
    a = F.reparameterize(mu, lv, 3)
    torch.manual_seed(123)
    b = F.reparameterize(mu, lv, 3)
    c = F.reparameterize(mu, lv, 3)
    assert torch.equal(a, b)
    assert not torch.equal(b, c)
    g1, g2 = torch.Generator(device).manual_seed(7), torch.Generator(device).manual_seed(7)
    assert torch.equal(F.reparameterize(mu, lv, 3, generator=g1), F.reparameterize(mu, lv, 3, generator=g2))
    # a generator's draws do not touch the global generator's state
    torch.manual_seed(123)
    F.reparameterize(mu, lv, 3, generator=torch.Generator(device).manual_seed(1))
    assert torch.equal(F.reparameterize(mu, lv, 3), a)


def test_independent_of_thread_count():
    mu, lv = torch.randn(64, 33), torch.randn(64, 33)
    seed = torch.tensor(987654321)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        a = torch.ops.pyautoencoder_fast.reparameterize(mu, lv, 5, seed)
        torch.set_num_threads(max(threads, 2))
        b = torch.ops.pyautoencoder_fast.reparameterize(mu, lv, 5, seed)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(4, 1, 6), (3, 4, 17), (1, 1, 1), (0, 2, 3), (2, 3, 1)], ids=str)
def test_values_and_gradients_match_oracle_given_the_same_noise(dtype, shape, device):
    batch, samples, dim = shape
    mu = torch.randn(batch, dim, dtype=torch.float64, requires_grad=True)
    lv = torch.randn(batch, dim, dtype=torch.float64, requires_grad=True)
    # Both backends draw eps from the same Philox stream; the float64 oracle
    # recomputes z = mu + exp(lv / 2) * eps by plain autograd.
    check_against_oracle(reparameterize_with_oracle(samples, 2024, dtype), [mu, lv], dtype, device=device)


def test_reparameterize_non_contiguous(device):
    mu = torch.randn(6, 4, dtype=torch.float64).t().requires_grad_()
    lv = torch.randn(4, 12, dtype=torch.float64)[:, ::2].requires_grad_()
    check_against_oracle(reparameterize_with_oracle(3, 99, torch.float32), [mu, lv], torch.float32, device=device)


def test_functional_backends_draw_the_same_noise(device):
    mu, lv = torch.randn(6, 5, dtype=torch.float64, device=device), torch.randn(6, 5, dtype=torch.float64, device=device)
    torch.manual_seed(5)
    a = F.reparameterize(mu, lv, 3)
    torch.manual_seed(5)
    with paf.use_backend("reference"):
        b = F.reparameterize(mu, lv, 3)
    assert_accurate(a, b)


def _saved_shapes_and_dtypes(mu, lv, samples):
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append((tuple(t.shape), t.dtype)) or t, lambda t: t):
        z = F.reparameterize(mu, lv, samples)
    return z, saved


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_backward_keeps_small_noise_in_the_accumulation_dtype(dtype, device):
    mu = torch.randn(8, 4, dtype=dtype, device=device, requires_grad=True)
    lv = torch.randn(8, 4, dtype=dtype, device=device, requires_grad=True)
    z, saved = _saved_shapes_and_dtypes(mu, lv, 16)
    assert z.shape == (8, 16, 4)
    assert ((8, 16, 4), torch.float32) in saved, saved  # eps, never z (which is z's dtype)
    assert all(shape in {(8, 4), (), (8, 16, 4)} for shape, _ in saved), saved


def test_backward_keeps_no_large_noise_tensor(device):
    mu = torch.randn(1024, 64, device=device, requires_grad=True)
    lv = torch.randn(1024, 64, device=device, requires_grad=True)
    z, saved = _saved_shapes_and_dtypes(mu, lv, 17)  # 1024 * 17 * 64 > 2^20 elements
    assert z.shape == (1024, 17, 64)
    assert saved and all(shape in {(1024, 64), ()} for shape, _ in saved), saved
    z_no_grad, saved_no_grad = _saved_shapes_and_dtypes(mu.detach(), lv.detach(), 2)
    assert saved_no_grad == []


@pytest.mark.parametrize("dtype", DTYPES)
def test_saved_and_regenerated_noise_give_the_same_gradients_bitwise(dtype, device):
    ops = torch.ops.pyautoencoder_fast
    mu, lv = torch.randn(33, 19, dtype=dtype, device=device), torch.randn(33, 19, dtype=dtype, device=device)
    seed = torch.tensor(31337, device=device)  # where functional.draw_seed puts it
    z, noise = ops.reparameterize_with_noise(mu, lv, 5, seed)
    assert torch.equal(z, ops.reparameterize(mu, lv, 5, seed))
    grad_z = torch.randn_like(z)
    from_noise = ops.reparameterize_backward(grad_z, mu, lv, seed, noise)
    regenerated = ops.reparameterize_backward(grad_z, mu, lv, seed)
    for a, b in zip(from_noise, regenerated):
        assert torch.equal(a, b)
    # and the autograd paths above and below the saved-noise limit agree with them
    mu_g, lv_g = mu.clone().requires_grad_(), lv.clone().requires_grad_()
    grads = torch.autograd.grad(ops.reparameterize(mu_g, lv_g, 5, seed), (mu_g, lv_g), grad_z)
    for a, b in zip(grads, regenerated):
        assert torch.equal(a, b)


def test_broadcast_log_var(device):
    mu = torch.randn(5, 3, dtype=torch.float64, device=device, requires_grad=True)
    lv = torch.randn(3, dtype=torch.float64, device=device, requires_grad=True)
    z = F.reparameterize(mu, lv, 2)
    z.sum().backward()
    assert lv.grad.shape == (3,)
    assert torch.equal(mu.grad, torch.full_like(mu, 2.0))
