"""nb_mixture_log_likelihood: fake kernel (kernels: csrc/<device>/nb_mixture_log_likelihood; autograd: csrc/autograd/nb_mixture_log_likelihood.cpp)."""

from __future__ import annotations

import torch

from ._common import accumulation_dtype, empty_like_shape

OP = "pyautoencoder_fast::nb_mixture_log_likelihood"


def _fake(x, mu_1, mu_2, theta_1, theta_2, pi_logits, eps, reduce_sum, need_grad, need_grad_x):
    args = [x, mu_1, mu_2, theta_1, pi_logits] + ([theta_2] if theta_2 is not None else [])
    shape = torch.broadcast_shapes(*(t.shape for t in args))
    out = empty_like_shape(mu_1, shape[:-1] if reduce_sum else shape)
    opmath = accumulation_dtype(mu_1.dtype)
    need_grad = need_grad or need_grad_x

    def buffer(wanted: bool):
        return empty_like_shape(mu_1, shape if wanted else (0,), dtype=opmath)

    return (
        out,
        buffer(need_grad_x),
        buffer(need_grad),
        buffer(need_grad),
        buffer(need_grad),
        buffer(need_grad and theta_2 is not None),
        buffer(need_grad),
    )


def register() -> None:
    torch.library.register_fake(OP, _fake)
