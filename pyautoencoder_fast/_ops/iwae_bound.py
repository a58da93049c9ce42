"""iwae_bound: fake kernels (kernels: csrc/<device>/iwae_bound; autograd: csrc/autograd/iwae_bound.cpp)."""

from __future__ import annotations

import torch

from ._common import accumulation_dtype, empty_like_shape

OP = "pyautoencoder_fast::iwae_bound"
BACKWARD_LATENT_OP = "pyautoencoder_fast::iwae_bound_backward_latent"


def _fake(x, x_hat, z, mu, log_var, likelihood, need_grad, x_log_var=None):
    batch, samples = x_hat.shape[0], x_hat.shape[1]
    opmath = accumulation_dtype(x.dtype)
    bound = empty_like_shape(x, (batch,))
    weights = empty_like_shape(x, (batch, samples), dtype=opmath)
    if not need_grad:
        return bound, weights, empty_like_shape(x, (0,)), empty_like_shape(x, (0,))
    # d ll / d x_log_var per element of x_hat, in the accumulation dtype
    d_x_log_var = empty_like_shape(x, x_hat.shape, dtype=opmath) if x_log_var is not None else empty_like_shape(x, (0,))
    return bound, weights, empty_like_shape(x, x_hat.shape), d_x_log_var


def _fake_backward_latent(grad, weights, z, mu, log_var):
    return empty_like_shape(z, z.shape), empty_like_shape(mu, mu.shape), empty_like_shape(mu, mu.shape)


def register() -> None:
    torch.library.register_fake(OP, _fake)
    torch.library.register_fake(BACKWARD_LATENT_OP, _fake_backward_latent)
