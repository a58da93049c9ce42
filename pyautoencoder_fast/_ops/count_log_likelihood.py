"""count_log_likelihood: fake kernel (kernels: csrc/<device>/count_log_likelihood; autograd: csrc/autograd/count_log_likelihood.cpp)."""

from __future__ import annotations

import torch

from ._common import accumulation_dtype, empty_like_shape

OP = "pyautoencoder_fast::count_log_likelihood"


def _fake(x, mu, theta, zi_logits, likelihood, eps, reduce_sum, need_grad, need_grad_x):
    shapes = [x.shape, mu.shape] + [t.shape for t in (theta, zi_logits) if t is not None]
    shape = torch.broadcast_shapes(*shapes)
    out = empty_like_shape(mu, shape[:-1] if reduce_sum else shape)
    opmath = accumulation_dtype(mu.dtype)
    need_grad = need_grad or need_grad_x

    def buffer(wanted: bool):
        return empty_like_shape(mu, shape if wanted else (0,), dtype=opmath)

    return (
        out,
        buffer(need_grad_x),
        buffer(need_grad),
        buffer(need_grad and theta is not None),
        buffer(need_grad and zi_logits is not None),
    )


def register() -> None:
    torch.library.register_fake(OP, _fake)
