"""log_likelihood_sum: fake kernels and autograd (kernel: csrc/cpu/log_likelihood_sum.cpp)."""

from __future__ import annotations

import torch

from ._common import empty_like_shape, ops

OP = "pyautoencoder_fast::log_likelihood_sum"
BACKWARD_OP = "pyautoencoder_fast::log_likelihood_sum_backward"


def _fake(x, x_hat, likelihood):
    return empty_like_shape(x, (x_hat.shape[0], x_hat.shape[1]))


def _fake_backward(grad, x, x_hat, likelihood, wrt_x):
    return empty_like_shape(x, x.shape if wrt_x else x_hat.shape)


def _setup_context(ctx, inputs, output):
    x, x_hat, likelihood = inputs
    ctx.save_for_backward(x, x_hat)
    ctx.likelihood = likelihood


def _backward(ctx, grad):
    x, x_hat = ctx.saved_tensors
    grad_x = grad_x_hat = None
    if ctx.needs_input_grad[0]:
        grad_x = ops.log_likelihood_sum_backward(grad, x, x_hat, ctx.likelihood, True)
    if ctx.needs_input_grad[1]:
        grad_x_hat = ops.log_likelihood_sum_backward(grad, x, x_hat, ctx.likelihood, False)
    return grad_x, grad_x_hat, None


def register() -> None:
    torch.library.register_fake(OP, _fake)
    torch.library.register_fake(BACKWARD_OP, _fake_backward)
    torch.library.register_autograd(OP, _backward, setup_context=_setup_context)
