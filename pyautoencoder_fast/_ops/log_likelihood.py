"""log_likelihood: fake kernels (kernels: csrc/<device>/log_likelihood; autograd: csrc/autograd/log_likelihood.cpp)."""

from __future__ import annotations

import torch

from ._common import empty_like_shape

OP = "pyautoencoder_fast::log_likelihood"
BACKWARD_OP = "pyautoencoder_fast::log_likelihood_backward"


def _operand_shapes(x, x_hat, x_log_var):
    return (x.shape, x_hat.shape) + ((x_log_var.shape,) if x_log_var is not None else ())


def _fake(x, x_hat, likelihood, x_log_var=None):
    return empty_like_shape(x, torch.broadcast_shapes(*_operand_shapes(x, x_hat, x_log_var)))


def _fake_backward(grad, x, x_hat, likelihood, wrt, x_log_var=None):
    return empty_like_shape(x, torch.broadcast_shapes(grad.shape, *_operand_shapes(x, x_hat, x_log_var)))


def register() -> None:
    torch.library.register_fake(OP, _fake)
    torch.library.register_fake(BACKWARD_OP, _fake_backward)
