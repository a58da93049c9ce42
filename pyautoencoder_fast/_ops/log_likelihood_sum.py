"""log_likelihood_sum: fake kernels (kernels: csrc/<device>/log_likelihood_sum; autograd: csrc/autograd/log_likelihood_sum.cpp)."""

from __future__ import annotations

import torch

from ._common import accumulation_dtype, empty_like_shape

OP = "pyautoencoder_fast::log_likelihood_sum"
BACKWARD_OP = "pyautoencoder_fast::log_likelihood_sum_backward"


def _fake(x, x_hat, likelihood, x_log_var=None):
    return empty_like_shape(x, (x_hat.shape[0], x_hat.shape[1]))


def _fake_backward(grad, x, x_hat, likelihood, wrt, x_log_var=None):
    if wrt == "x_log_var":  # per element of x_hat, in the accumulation dtype
        return empty_like_shape(x, x_hat.shape, dtype=accumulation_dtype(x.dtype))
    return empty_like_shape(x, x.shape if wrt == "x" else x_hat.shape)


def register() -> None:
    torch.library.register_fake(OP, _fake)
    torch.library.register_fake(BACKWARD_OP, _fake_backward)
