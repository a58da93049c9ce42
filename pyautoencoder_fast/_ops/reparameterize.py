"""reparameterize: fake kernels (kernels: csrc/<device>/reparameterize; autograd: csrc/autograd/reparameterize.cpp).

The autograd saves (mu, log_var, seed) and, up to 2^20 elements, the noise
eps (from reparameterize_with_noise); the backward op reads eps back, or
regenerates it from the seed when it was not kept. z is never saved.
"""

from __future__ import annotations

import torch

from ._common import empty_like_shape

OP = "pyautoencoder_fast::reparameterize"
WITH_NOISE_OP = "pyautoencoder_fast::reparameterize_with_noise"
BACKWARD_OP = "pyautoencoder_fast::reparameterize_backward"


def _fake(mu, log_var, num_samples, seed):
    return empty_like_shape(mu, (mu.shape[0], num_samples, mu.shape[1]))


def _fake_with_noise(mu, log_var, num_samples, seed):
    shape = (mu.shape[0], num_samples, mu.shape[1])
    accumulation = torch.float32 if mu.dtype in (torch.float16, torch.bfloat16) else mu.dtype
    return empty_like_shape(mu, shape), empty_like_shape(mu, shape, accumulation)


def _fake_backward(grad_z, mu, log_var, seed, noise=None):
    return empty_like_shape(mu, mu.shape), empty_like_shape(mu, mu.shape)


def register() -> None:
    torch.library.register_fake(OP, _fake)
    torch.library.register_fake(WITH_NOISE_OP, _fake_with_noise)
    torch.library.register_fake(BACKWARD_OP, _fake_backward)
