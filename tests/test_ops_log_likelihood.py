"""log_likelihood and log_likelihood_sum against the oracle."""

import pytest
import torch

import pyautoencoder_fast as paf
from pyautoencoder_fast import functional as F
from pyautoencoder_fast import reference
from conftest import DTYPES, LIKELIHOODS, check_against_oracle, random_inputs, requires_extension

pytestmark = requires_extension

# (x shape, x_hat shape): odd feature counts (not multiples of the vector
# width), B = 1, B = 0, broadcasting either way.
ELEMENTWISE_SHAPES = [
    ((3, 17), (3, 17)),
    ((1, 1), (1, 1)),
    ((0, 5), (0, 5)),
    ((2, 3, 33), (2, 3, 33)),
    ((1, 19), (4, 19)),  # x broadcast over the batch
    ((4, 19), (19,)),  # x_hat broadcast
    ((5, 1), (5, 7)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("likelihood", LIKELIHOODS)
@pytest.mark.parametrize("shapes", ELEMENTWISE_SHAPES, ids=str)
def test_log_likelihood_matches_oracle(dtype, likelihood, shapes, device):
    x = random_inputs(shapes[0], likelihood, torch.float64, target=True, requires_grad=True)
    x_hat = random_inputs(shapes[1], likelihood, torch.float64, requires_grad=True)
    check_against_oracle(lambda a, b: F.log_likelihood(a, b, likelihood), [x, x_hat], dtype, device=device)


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_log_likelihood_non_contiguous(likelihood, device):
    x = random_inputs((33, 6), likelihood, torch.float64, target=True).t().requires_grad_()
    x_hat = random_inputs((6, 66), likelihood, torch.float64)[:, ::2].requires_grad_()
    assert not x.is_contiguous() and not x_hat.is_contiguous()
    check_against_oracle(lambda a, b: F.log_likelihood(a, b, likelihood), [x, x_hat], torch.float32, device=device)


def test_bernoulli_is_stable_for_large_logits(device):
    x = torch.tensor([0.0, 1.0, 0.0, 1.0, 0.5], device=device)
    logits = torch.tensor([200.0, -200.0, -200.0, 200.0, 80.0], device=device, requires_grad=True)
    ll = F.log_likelihood(x, logits, "bernoulli")
    expected = -torch.nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none")
    torch.testing.assert_close(ll, expected)
    assert torch.isfinite(ll).all()
    ll.sum().backward()
    assert torch.isfinite(logits.grad).all()


SUM_SHAPES = [
    # (B, S, feature shape)
    (4, 1, (17,)),
    (3, 3, (5, 7)),
    (1, 2, (1,)),
    (0, 2, (9,)),
    (2, 4, (3, 11, 13)),
    (2, 1, (1000,)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("likelihood", LIKELIHOODS)
@pytest.mark.parametrize("shape", SUM_SHAPES, ids=str)
def test_log_likelihood_sum_matches_oracle(dtype, likelihood, shape, device):
    batch, samples, features = shape
    x = random_inputs((batch, *features), likelihood, torch.float64, target=True, requires_grad=True)
    x_hat = random_inputs((batch, samples, *features), likelihood, torch.float64, requires_grad=True)
    out = check_against_oracle(lambda a, b: F.log_likelihood_sum(a, b, likelihood), [x, x_hat], dtype, device=device)
    assert out[0].shape == (batch, samples)


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_log_likelihood_sum_without_sample_axis(likelihood, device):
    x = random_inputs((5, 3, 4), likelihood, torch.float64, target=True, requires_grad=True)
    x_hat = random_inputs((5, 3, 4), likelihood, torch.float64, requires_grad=True)
    out = check_against_oracle(lambda a, b: F.log_likelihood_sum(a, b, likelihood), [x, x_hat], torch.float32, device=device)
    assert out[0].shape == (5, 1)


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_log_likelihood_sum_strided_and_expanded_inputs(likelihood, device):
    # x broadcast over the batch (stride 0), x_hat with permuted feature dims.
    x = random_inputs((1, 6, 5), likelihood, torch.float64, target=True).expand(4, 6, 5).requires_grad_()
    x_hat = random_inputs((4, 2, 5, 6), likelihood, torch.float64).transpose(2, 3).requires_grad_()
    assert not x_hat.is_contiguous()
    check_against_oracle(lambda a, b: F.log_likelihood_sum(a, b, likelihood), [x, x_hat], torch.float32, device=device)


def test_log_likelihood_sum_does_not_copy_x_over_samples(monkeypatch):
    # The op receives x as [B, ...], never expanded to [B, S, ...].
    seen = {}
    op = torch.ops.pyautoencoder_fast.log_likelihood_sum

    def spy(x, x_hat, likelihood):
        seen["x"] = tuple(x.shape)
        return op(x, x_hat, likelihood)

    monkeypatch.setattr(F, "_impl", lambda *t: type("NS", (), {"log_likelihood_sum": staticmethod(spy)}))
    F.log_likelihood_sum(torch.randn(3, 8), torch.randn(3, 5, 8))
    assert seen["x"] == (3, 8)


def test_log_likelihood_sum_accumulates_half_in_float(device):
    # 4096 terms of 0.5 each: a float16 accumulator would stall at 2048.
    x = torch.zeros(1, 4096, dtype=torch.float16, device=device)
    x_hat = torch.ones(1, 4096, dtype=torch.float16, device=device)
    out = F.log_likelihood_sum(x, x_hat, "gaussian")
    assert out.item() == -2048.0


def test_likelihood_names_are_case_insensitive():
    x, x_hat = torch.rand(2, 3), torch.randn(2, 3)
    torch.testing.assert_close(F.log_likelihood(x, x_hat, "BeRnOuLLi"), F.log_likelihood(x, x_hat, "bernoulli"))
    assert reference.LIKELIHOODS == ("gaussian", "bernoulli", "laplace", "bernoulli_probs")


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_nan_propagates_to_value_and_gradient(likelihood, device):
    # 20 elements: NaN both in the vectorised body and in the scalar tail.
    x_hat = torch.randn(20, device=device)
    x_hat[3] = x_hat[19] = float("nan")
    x_hat.requires_grad_()
    x = torch.rand(20, device=device)
    ll = F.log_likelihood_sum(x.unsqueeze(0), x_hat.unsqueeze(0), likelihood)
    assert torch.isnan(ll).all()
    latent = torch.zeros(1, 2, device=device)
    stats = F.elbo_stats(x.unsqueeze(0), x_hat.unsqueeze(0), latent, latent, 1.0, likelihood)
    (grad,) = torch.autograd.grad(stats[0], x_hat)
    assert torch.isnan(grad[[3, 19]]).all() and torch.isfinite(grad[[0, 1, 2, 4]]).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bernoulli_probs_is_undefined_outside_the_unit_interval(dtype, device):
    # torch's binary_cross_entropy refuses targets or probabilities outside
    # [0, 1] (on CUDA with a device-side assert); the kernels give NaN there
    # (body and scalar tail), and finite values at the ends 0 and 1.
    x, p = torch.rand(3, 21, dtype=dtype, device=device), torch.rand(3, 21, dtype=dtype, device=device)
    x[0, :] = torch.tensor([0.0, 1.0] * 10 + [0.5], dtype=dtype, device=device)
    x[1, 4], x[1, 20], x[2, 7] = 1.5, -0.25, 0.5
    p[2, 7] = 1.25
    value = F.log_likelihood(x, p, "bernoulli_probs")
    bad = torch.zeros(3, 21, dtype=torch.bool, device=device)
    bad[1, 4] = bad[1, 20] = bad[2, 7] = True
    assert value[bad].isnan().all() and value[~bad].isfinite().all()
    sums = F.log_likelihood_sum(x, p, "bernoulli_probs")[:, 0]
    assert sums[0].isfinite() and sums[1:].isnan().all()
    torch.testing.assert_close(value[0], -torch.nn.functional.binary_cross_entropy(p[0], x[0], reduction="none"))


def test_integer_and_bool_targets_are_promoted(device):
    x_hat = torch.randn(4, 9, device=device)
    bits = [torch.randint(0, 2, (4, 9), device=device) for _ in range(3)]
    for target in (bits[0], bits[1].bool(), bits[2].to(torch.uint8)):
        for likelihood in ("gaussian", "bernoulli", "laplace"):
            expected = F.log_likelihood(target.float(), x_hat, likelihood)
            torch.testing.assert_close(F.log_likelihood(target, x_hat, likelihood), expected)
            torch.testing.assert_close(F.log_likelihood_sum(target, x_hat, likelihood)[:, 0], expected.sum(1))
