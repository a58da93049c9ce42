"""adagvae_posterior: fake kernels (kernels: csrc/<device>/adagvae_posterior; autograd: csrc/autograd/adagvae_posterior.cpp)."""

from __future__ import annotations

import torch

from ._common import empty_like_shape

OP = "pyautoencoder_fast::adagvae_posterior"
BACKWARD_OP = "pyautoencoder_fast::adagvae_posterior_backward"


def _fake(mu1, log_var1, mu2, log_var2):
    shape = mu1.shape
    return (
        *(empty_like_shape(mu1, shape) for _ in range(4)),
        empty_like_shape(mu1, shape, dtype=torch.bool),
    )


def _fake_backward(grad_mu1, grad_log_var1, grad_mu2, grad_log_var2, log_var1, log_var2, mask):
    return tuple(empty_like_shape(grad_mu1, grad_mu1.shape) for _ in range(4))


def register() -> None:
    torch.library.register_fake(OP, _fake)
    torch.library.register_fake(BACKWARD_OP, _fake_backward)
