"""elbo: fake kernels and autograd (kernel: csrc/cpu/elbo.cpp).

The forward op already wrote d objective / d x_hat (when x_hat needs a
gradient). Backward rescales it by (g_objective - g_elbo - g_log_likelihood);
for the usual ``objective.backward()`` that factor is 1 and the saved tensor
is returned as it is: no second pass over x_hat-sized memory.
"""

from __future__ import annotations

import torch

from ._common import empty_like_shape, is_plain_cpu_tensor, ops

OP = "pyautoencoder_fast::elbo"
BACKWARD_X_HAT_OP = "pyautoencoder_fast::elbo_backward_x_hat"
BACKWARD_LATENT_OP = "pyautoencoder_fast::elbo_backward_latent"
NUM_STATS = 4  # objective, elbo, log_likelihood, kl_divergence
_OBJECTIVE_ONLY = (1.0, 0.0, 0.0, 0.0)


def _fake(x, x_hat, mu, log_var, beta, likelihood, need_grad):
    stats = empty_like_shape(x, (NUM_STATS,))
    return stats, empty_like_shape(x, x_hat.shape if need_grad else (0,))


def _fake_backward_x_hat(grad_stats, dobj_dx_hat):
    return empty_like_shape(dobj_dx_hat, dobj_dx_hat.shape)


def _fake_backward_latent(grad_stats, mu, log_var, beta):
    return empty_like_shape(mu, mu.shape), empty_like_shape(mu, mu.shape)


def _setup_context(ctx, inputs, output):
    x, x_hat, mu, log_var, beta, likelihood, need_grad = inputs
    stats, dobj_dx_hat = output
    ctx.mark_non_differentiable(dobj_dx_hat)
    ctx.save_for_backward(x, x_hat, mu, log_var, dobj_dx_hat)
    ctx.beta = beta
    ctx.likelihood = likelihood


def _grad_x_hat(grad_stats, x, x_hat, dobj_dx_hat, likelihood):
    if dobj_dx_hat.shape != x_hat.shape:
        # The forward ran with need_grad=False: differentiate the ll rows.
        return ops.log_likelihood_sum_backward(_ll_row_grad(grad_stats, x_hat), x, x_hat, likelihood, False)
    if is_plain_cpu_tensor(grad_stats) and tuple(grad_stats.tolist()) == _OBJECTIVE_ONLY:
        return dobj_dx_hat
    return ops.elbo_backward_x_hat(grad_stats, dobj_dx_hat)


def _ll_row_grad(grad_stats, x_hat):
    # d stats / d ll[b, s] = (-1, 1, 1, 0) / (B * S)
    batch, samples = x_hat.shape[0], x_hat.shape[1]
    per_row = (grad_stats[1] + grad_stats[2] - grad_stats[0]) / max(batch * samples, 1)
    return per_row.expand(batch, samples).contiguous()


def _backward(ctx, grad_stats, _grad_dobj):
    x, x_hat, mu, log_var, dobj_dx_hat = ctx.saved_tensors
    grad_x = grad_x_hat = grad_mu = grad_log_var = None
    if ctx.needs_input_grad[0]:
        grad_x = ops.log_likelihood_sum_backward(_ll_row_grad(grad_stats, x_hat), x, x_hat, ctx.likelihood, True)
    if ctx.needs_input_grad[1]:
        grad_x_hat = _grad_x_hat(grad_stats, x, x_hat, dobj_dx_hat, ctx.likelihood)
    if ctx.needs_input_grad[2] or ctx.needs_input_grad[3]:
        grad_mu, grad_log_var = ops.elbo_backward_latent(grad_stats, mu, log_var, ctx.beta)
    return grad_x, grad_x_hat, grad_mu, grad_log_var, None, None, None


def register() -> None:
    torch.library.register_fake(OP, _fake)
    torch.library.register_fake(BACKWARD_X_HAT_OP, _fake_backward_x_hat)
    torch.library.register_fake(BACKWARD_LATENT_OP, _fake_backward_latent)
    torch.library.register_autograd(OP, _backward, setup_context=_setup_context)
