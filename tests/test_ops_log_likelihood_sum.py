"""log_likelihood_sum (x [B, ...] against x_hat [B, S, ...], per-row sums) against the oracle."""

import pytest
import torch

import pyautoencoder_fast as paf
from pyautoencoder_fast import functional as F
from pyautoencoder_fast import reference
from conftest import DTYPES, LIKELIHOODS, check_against_oracle, log_var_input, random_inputs, requires_extension

pytestmark = requires_extension
ops = torch.ops.pyautoencoder_fast

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

    def spy(x, x_hat, likelihood, x_log_var):
        seen["x"] = tuple(x.shape)
        return op(x, x_hat, likelihood, x_log_var)

    monkeypatch.setattr(F, "_impl", lambda *t: type("NS", (), {"log_likelihood_sum": staticmethod(spy)}))
    F.log_likelihood_sum(torch.randn(3, 8), torch.randn(3, 5, 8))
    assert seen["x"] == (3, 8)


def test_log_likelihood_sum_accumulates_half_in_float(device):
    # 4096 terms of 0.5 each: a float16 accumulator would stall at 2048.
    x = torch.zeros(1, 4096, dtype=torch.float16, device=device)
    x_hat = torch.ones(1, 4096, dtype=torch.float16, device=device)
    out = F.log_likelihood_sum(x, x_hat, "gaussian")
    assert out.item() == -2048.0


# (B, S, feature shape, x_log_var shape): per element of x_hat, shared by
# the samples ([B, 1, ...]), per feature, per sample, a 0-d scalar,
# broadcast within the features, long rows, an empty batch.
LOG_VAR_SUM_SHAPES = [
    (4, 3, (17,), (4, 3, 17)),
    (4, 3, (17,), (4, 1, 17)),
    (4, 3, (17,), (17,)),
    (3, 3, (5,), (1, 3, 5)),
    (4, 3, (17,), ()),
    (3, 2, (5, 7), (7,)),
    (3, 2, (5, 7), (3, 2, 5, 1)),
    (2, 1, (1000,), (2, 1, 1000)),
    (0, 2, (9,), (9,)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", LOG_VAR_SUM_SHAPES, ids=str)
def test_log_likelihood_sum_with_log_var_matches_oracle(dtype, shape, device):
    batch, samples, features, lv_shape = shape
    x = random_inputs((batch, *features), "gaussian", torch.float64, target=True, requires_grad=True)
    x_hat = random_inputs((batch, samples, *features), "gaussian", torch.float64, requires_grad=True)
    fn = lambda a, b, c: F.log_likelihood_sum(a, b, "gaussian", c)
    out = check_against_oracle(fn, [x, x_hat, log_var_input(lv_shape)], dtype, device=device,
                               what="log_likelihood_sum(x_log_var)")
    assert out[0].shape == (batch, samples)


def test_log_likelihood_sum_with_log_var_without_sample_axis(device):
    # x_hat [B, F] with a per-element x_log_var [B, F]: both get the sample axis.
    x = random_inputs((5, 12), "gaussian", torch.float64, target=True, requires_grad=True)
    x_hat = random_inputs((5, 12), "gaussian", torch.float64, requires_grad=True)
    fn = lambda a, b, c: F.log_likelihood_sum(a, b, "gaussian", c)
    out = check_against_oracle(fn, [x, x_hat, log_var_input((5, 12))], torch.float32, device=device)
    assert out[0].shape == (5, 1)
