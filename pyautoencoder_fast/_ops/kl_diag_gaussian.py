"""kl_diag_gaussian: fake kernels and autograd (kernel: csrc/cpu/kl_diag_gaussian.cpp)."""

from __future__ import annotations

import torch

from ._common import empty_like_shape, ops, sum_to

OP = "pyautoencoder_fast::kl_diag_gaussian"
BACKWARD_OP = "pyautoencoder_fast::kl_diag_gaussian_backward"


def _broadcast_shape(mu_q, log_var_q, mu_p, log_var_p):
    return torch.broadcast_shapes(*(t.shape for t in (mu_q, log_var_q, mu_p, log_var_p) if t is not None))


def _fake(mu_q, log_var_q, mu_p, log_var_p, reduce_sum, clamp_min, clamp_max):
    shape = _broadcast_shape(mu_q, log_var_q, mu_p, log_var_p)
    return empty_like_shape(mu_q, shape[:-1] if reduce_sum else shape)


def _fake_backward(grad, mu_q, log_var_q, mu_p, log_var_p, reduce_sum, clamp_min, clamp_max):
    shape = _broadcast_shape(mu_q, log_var_q, mu_p, log_var_p)
    p_shape = shape if (mu_p is not None or log_var_p is not None) else (0,)
    return (
        empty_like_shape(mu_q, shape),
        empty_like_shape(mu_q, shape),
        empty_like_shape(mu_q, p_shape),
        empty_like_shape(mu_q, p_shape),
    )


def _setup_context(ctx, inputs, output):
    mu_q, log_var_q, mu_p, log_var_p, reduce_sum, clamp_min, clamp_max = inputs
    ctx.save_for_backward(mu_q, log_var_q, mu_p, log_var_p)
    ctx.args = (reduce_sum, clamp_min, clamp_max)


def _backward(ctx, grad):
    mu_q, log_var_q, mu_p, log_var_p = ctx.saved_tensors
    grads = ops.kl_diag_gaussian_backward(grad, mu_q, log_var_q, mu_p, log_var_p, *ctx.args)
    inputs = (mu_q, log_var_q, mu_p, log_var_p)
    result = [
        sum_to(g, t.shape) if (t is not None and ctx.needs_input_grad[i]) else None
        for i, (g, t) in enumerate(zip(grads, inputs))
    ]
    return (*result, None, None, None)


def register() -> None:
    torch.library.register_fake(OP, _fake)
    torch.library.register_fake(BACKWARD_OP, _fake_backward)
    torch.library.register_autograd(OP, _backward, setup_context=_setup_context)
