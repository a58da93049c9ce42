"""log_likelihood: fake kernels (kernels: csrc/<device>/log_likelihood; autograd: csrc/autograd/log_likelihood.cpp)."""

from __future__ import annotations

import torch

from ._common import empty_like_shape

OP = "pyautoencoder_fast::log_likelihood"
BACKWARD_OP = "pyautoencoder_fast::log_likelihood_backward"


def _fake(x, x_hat, likelihood):
    return empty_like_shape(x, torch.broadcast_shapes(x.shape, x_hat.shape))


def _fake_backward(grad, x, x_hat, likelihood, wrt_x):
    return empty_like_shape(x, torch.broadcast_shapes(grad.shape, x.shape, x_hat.shape))


def register() -> None:
    torch.library.register_fake(OP, _fake)
    torch.library.register_fake(BACKWARD_OP, _fake_backward)
