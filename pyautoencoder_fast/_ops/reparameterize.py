"""reparameterize: fake kernels and autograd (kernel: csrc/cpu/reparameterize.cpp).

Only (mu, log_var, seed) are saved: the backward op regenerates the noise
from the seed, so neither eps nor z is kept alive.
"""

from __future__ import annotations

import torch

from ._common import empty_like_shape, ops

OP = "pyautoencoder_fast::reparameterize"
BACKWARD_OP = "pyautoencoder_fast::reparameterize_backward"


def _fake(mu, log_var, num_samples, seed):
    return empty_like_shape(mu, (mu.shape[0], num_samples, mu.shape[1]))


def _fake_backward(grad_z, mu, log_var, seed):
    return empty_like_shape(mu, mu.shape), empty_like_shape(mu, mu.shape)


def _setup_context(ctx, inputs, output):
    mu, log_var, num_samples, seed = inputs
    ctx.save_for_backward(mu, log_var, seed)


def _backward(ctx, grad_z):
    mu, log_var, seed = ctx.saved_tensors
    grad_mu, grad_log_var = ops.reparameterize_backward(grad_z, mu, log_var, seed)
    return (
        grad_mu if ctx.needs_input_grad[0] else None,
        grad_log_var if ctx.needs_input_grad[1] else None,
        None,
        None,
    )


def register() -> None:
    torch.library.register_fake(OP, _fake)
    torch.library.register_fake(BACKWARD_OP, _fake_backward)
    torch.library.register_autograd(OP, _backward, setup_context=_setup_context)
