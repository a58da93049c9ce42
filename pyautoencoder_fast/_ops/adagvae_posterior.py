"""adagvae_posterior: fake kernels and autograd (kernel: csrc/cpu/adagvae_posterior.cpp)."""

from __future__ import annotations

import torch

from ._common import empty_like_shape, ops

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


def _setup_context(ctx, inputs, output):
    mu1, log_var1, mu2, log_var2 = inputs
    mask = output[4]
    ctx.mark_non_differentiable(mask)
    ctx.set_materialize_grads(False)  # unused outputs arrive as None
    ctx.save_for_backward(log_var1, log_var2, mask)


def _backward(ctx, grad_mu1, grad_log_var1, grad_mu2, grad_log_var2, _grad_mask):
    log_var1, log_var2, mask = ctx.saved_tensors
    grads = [
        torch.zeros_like(log_var1) if g is None else g
        for g in (grad_mu1, grad_log_var1, grad_mu2, grad_log_var2)
    ]
    result = ops.adagvae_posterior_backward(*grads, log_var1, log_var2, mask)
    return tuple(g if ctx.needs_input_grad[i] else None for i, g in enumerate(result))


def register() -> None:
    torch.library.register_fake(OP, _fake)
    torch.library.register_fake(BACKWARD_OP, _fake_backward)
    torch.library.register_autograd(OP, _backward, setup_context=_setup_context)
