"""elbo: fake kernels (kernels: csrc/<device>/elbo; autograd: csrc/autograd/elbo.cpp)."""

from __future__ import annotations

import torch

from ._common import accumulation_dtype, empty_like_shape

OP = "pyautoencoder_fast::elbo"
BACKWARD_X_HAT_OP = "pyautoencoder_fast::elbo_backward_x_hat"
SCALE_X_HAT_GRAD_OP = "pyautoencoder_fast::elbo_scale_x_hat_grad_"
BACKWARD_LATENT_OP = "pyautoencoder_fast::elbo_backward_latent"
NUM_STATS = 4  # objective, elbo, log_likelihood, kl_divergence


def _fake(x, x_hat, mu, log_var, beta, likelihood, need_grad, x_log_var=None):
    stats = empty_like_shape(x, (NUM_STATS,))
    if not need_grad:
        return stats, *(empty_like_shape(x, (0,)) for _ in range(4))
    # d objective / d x_log_var per element of x_hat, in the accumulation dtype
    dobj_dx_log_var = (empty_like_shape(x, x_hat.shape, dtype=accumulation_dtype(x.dtype))
                       if x_log_var is not None else empty_like_shape(x, (0,)))
    return (stats, empty_like_shape(x, x_hat.shape), empty_like_shape(x, mu.shape), empty_like_shape(x, mu.shape),
            dobj_dx_log_var)


def _fake_backward_x_hat(grad_stats, dobj_dx_hat):
    return empty_like_shape(dobj_dx_hat, dobj_dx_hat.shape)


def _fake_scale_x_hat_grad(grad_stats, dobj_dx_hat):
    return None  # (in place on dobj_dx_hat)


def _fake_backward_latent(grad_stats, mu, log_var, beta):
    return empty_like_shape(mu, mu.shape), empty_like_shape(mu, mu.shape)


def register() -> None:
    torch.library.register_fake(OP, _fake)
    torch.library.register_fake(BACKWARD_X_HAT_OP, _fake_backward_x_hat)
    torch.library.register_fake(SCALE_X_HAT_GRAD_OP, _fake_scale_x_hat_grad)
    torch.library.register_fake(BACKWARD_LATENT_OP, _fake_backward_latent)
