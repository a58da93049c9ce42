"""reparameterize: fake kernels (kernels: csrc/<device>/reparameterize; autograd: csrc/autograd/reparameterize.cpp).

Only (mu, log_var, seed) are saved: the backward op regenerates the noise
from the seed, so neither eps nor z is kept alive.
"""

from __future__ import annotations

import torch

from ._common import empty_like_shape

OP = "pyautoencoder_fast::reparameterize"
BACKWARD_OP = "pyautoencoder_fast::reparameterize_backward"


def _fake(mu, log_var, num_samples, seed):
    return empty_like_shape(mu, (mu.shape[0], num_samples, mu.shape[1]))


def _fake_backward(grad_z, mu, log_var, seed):
    return empty_like_shape(mu, mu.shape), empty_like_shape(mu, mu.shape)


def register() -> None:
    torch.library.register_fake(OP, _fake)
    torch.library.register_fake(BACKWARD_OP, _fake_backward)
