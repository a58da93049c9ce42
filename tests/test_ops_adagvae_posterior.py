"""adagvae_posterior against the oracle."""

import pytest
import torch

from pyautoencoder_fast import functional as F
from conftest import DTYPES, check_against_oracle, requires_extension

pytestmark = requires_extension


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(6, 10), (1, 1), (0, 4), (3, 17), (9, 2)], ids=str)
def test_adagvae_matches_oracle(dtype, shape, device):
    inputs = [torch.randn(shape, dtype=torch.float64, requires_grad=True) for _ in range(4)]
    check_against_oracle(F.adagvae_posterior, inputs, dtype, device=device)


def test_adagvae_non_contiguous(device):
    # transposed, sliced and row-broadcast (stride 0) posteriors
    mu1 = torch.randn(7, 5, dtype=torch.float64).t().requires_grad_()
    lv1 = torch.randn(5, 14, dtype=torch.float64)[:, ::2].requires_grad_()
    mu2 = torch.randn(1, 7, dtype=torch.float64).expand(5, 7).requires_grad_()
    lv2 = torch.randn(5, 7, dtype=torch.float64, requires_grad=True)
    check_against_oracle(F.adagvae_posterior, [mu1, lv1, mu2, lv2], torch.float32, device=device)


def test_threshold_rule(device):
    # Row 0: KL per dim = [0, 0, large, large] -> dims 0, 1 (below the mid-range) are averaged.
    mu1 = torch.tensor([[0.0, 1.0, 0.0, 0.0], [0.5, 0.5, 0.5, 0.5]], device=device)
    mu2 = torch.tensor([[0.0, 1.0, 5.0, -4.0], [0.5, 0.5, 0.5, 0.5]], device=device)
    lv1 = torch.tensor([[0.0, -1.0, 0.0, 0.0], [0.1, 0.2, 0.3, 0.4]], device=device)
    lv2 = torch.tensor([[1.0, -1.0, 0.0, 0.0], [0.1, 0.2, 0.3, 0.4]], device=device)
    m1, l1, m2, l2 = F.adagvae_posterior(mu1, lv1, mu2, lv2)
    # dim 0: KL(N(0,1) || N(0,e)) > 0 but small; dim 1 identical -> 0
    expected_lv0 = torch.log(0.5 * (torch.exp(torch.tensor(0.0)) + torch.exp(torch.tensor(1.0)))).to(device)
    torch.testing.assert_close(l1[0, 0], expected_lv0)
    torch.testing.assert_close(l2[0, 0], expected_lv0)
    torch.testing.assert_close(m1[0, :2], m2[0, :2])
    assert torch.equal(m1[0, 2:], mu1[0, 2:]) and torch.equal(m2[0, 2:], mu2[0, 2:])
    # Row 1: identical posteriors, constant KL (0 everywhere): nothing averaged
    assert torch.equal(l1[1], lv1[1]) and torch.equal(l2[1], lv2[1])


def test_large_log_variances_do_not_overflow(device):
    lv1 = torch.tensor([[200.0, 0.0, 0.0]], device=device)
    lv2 = torch.tensor([[199.0, 5.0, 0.0]], device=device)
    mu = torch.zeros(1, 3, device=device)
    _, l1, _, _ = F.adagvae_posterior(mu, lv1, mu, lv2)
    assert torch.isfinite(l1).all()
