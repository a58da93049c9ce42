"""kl_diag_gaussian: fake kernels (kernels: csrc/<device>/kl_diag_gaussian; autograd: csrc/autograd/kl_diag_gaussian.cpp)."""

from __future__ import annotations

import torch

from ._common import empty_like_shape

OP = "pyautoencoder_fast::kl_diag_gaussian"
BACKWARD_OP = "pyautoencoder_fast::kl_diag_gaussian_backward"


def _broadcast_shape(mu_q, log_var_q, mu_p, log_var_p):
    return torch.broadcast_shapes(*(t.shape for t in (mu_q, log_var_q, mu_p, log_var_p) if t is not None))


def _fake(mu_q, log_var_q, mu_p, log_var_p, reduce_sum, clamp_min, clamp_max):
    shape = _broadcast_shape(mu_q, log_var_q, mu_p, log_var_p)
    return empty_like_shape(mu_q, shape[:-1] if reduce_sum else shape)


def _fake_backward(grad, mu_q, log_var_q, mu_p, log_var_p, reduce_sum, clamp_min, clamp_max, clamp_grad_at_bounds):
    shape = _broadcast_shape(mu_q, log_var_q, mu_p, log_var_p)
    p_shape = shape if (mu_p is not None or log_var_p is not None) else (0,)
    return (
        empty_like_shape(mu_q, shape),
        empty_like_shape(mu_q, shape),
        empty_like_shape(mu_q, p_shape),
        empty_like_shape(mu_q, p_shape),
    )


def register() -> None:
    torch.library.register_fake(OP, _fake)
    torch.library.register_fake(BACKWARD_OP, _fake_backward)
