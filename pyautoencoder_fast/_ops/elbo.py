"""elbo: fake kernels and autograd (kernel: csrc/cpu/elbo.cpp).

With need_grad the forward op already wrote d objective / d (x_hat, mu,
log_var). For the usual ``objective.backward()`` (grad_stats = [1, 0, 0, 0])
those tensors are the gradients and are returned as they are: backward
launches nothing and touches no x_hat-sized memory. Other grad_stats rescale
the x_hat gradient by (g_objective - g_elbo - g_log_likelihood) and recompute
the small latent gradients.
"""

from __future__ import annotations

import torch

from ._common import empty_like_shape, is_plain_cpu_tensor, ops

OP = "pyautoencoder_fast::elbo"
BACKWARD_X_HAT_OP = "pyautoencoder_fast::elbo_backward_x_hat"
BACKWARD_LATENT_OP = "pyautoencoder_fast::elbo_backward_latent"
NUM_STATS = 4  # objective, elbo, log_likelihood, kl_divergence
_OBJECTIVE_ONLY = [1.0, 0.0, 0.0, 0.0]


def _fake(x, x_hat, mu, log_var, beta, likelihood, need_grad):
    stats = empty_like_shape(x, (NUM_STATS,))
    if not need_grad:
        return stats, *(empty_like_shape(x, (0,)) for _ in range(3))
    return stats, empty_like_shape(x, x_hat.shape), empty_like_shape(x, mu.shape), empty_like_shape(x, mu.shape)


def _fake_backward_x_hat(grad_stats, dobj_dx_hat):
    return empty_like_shape(dobj_dx_hat, dobj_dx_hat.shape)


def _fake_backward_latent(grad_stats, mu, log_var, beta):
    return empty_like_shape(mu, mu.shape), empty_like_shape(mu, mu.shape)


def _setup_context(ctx, inputs, output):
    x, x_hat, mu, log_var, beta, likelihood, need_grad = inputs
    _, dobj_dx_hat, dobj_dmu, dobj_dlv = output
    ctx.mark_non_differentiable(dobj_dx_hat, dobj_dmu, dobj_dlv)
    # Without this autograd would build an x_hat-sized zero gradient for the
    # (never used) dobj_dx_hat output: a full extra write and 2x the memory.
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(x, x_hat, mu, log_var, dobj_dx_hat, dobj_dmu, dobj_dlv)
    ctx.beta = beta
    ctx.likelihood = likelihood


def _ll_row_grad(grad_stats, x_hat):
    # d stats / d ll[b, s] = (-1, 1, 1, 0) / (B * S)
    batch, samples = x_hat.shape[0], x_hat.shape[1]
    per_row = (grad_stats[1] + grad_stats[2] - grad_stats[0]) / max(batch * samples, 1)
    return per_row.expand(batch, samples).contiguous()


def _backward(ctx, grad_stats, *_grads_of_gradient_buffers):
    if grad_stats is None:  # only the non-differentiable buffers were used
        return (None,) * 7
    x, x_hat, mu, log_var, dobj_dx_hat, dobj_dmu, dobj_dlv = ctx.saved_tensors
    needs = ctx.needs_input_grad
    have_buffers = dobj_dx_hat.shape == x_hat.shape
    objective_only = have_buffers and is_plain_cpu_tensor(grad_stats) and grad_stats.tolist() == _OBJECTIVE_ONLY
    grad_x = grad_x_hat = grad_mu = grad_log_var = None
    if needs[0]:
        grad_x = ops.log_likelihood_sum_backward(_ll_row_grad(grad_stats, x_hat), x, x_hat, ctx.likelihood, True)
    if needs[1]:
        if objective_only:
            grad_x_hat = dobj_dx_hat
        elif have_buffers:
            grad_x_hat = ops.elbo_backward_x_hat(grad_stats, dobj_dx_hat)
        else:  # the forward ran without gradient buffers
            row_grad = _ll_row_grad(grad_stats, x_hat)
            grad_x_hat = ops.log_likelihood_sum_backward(row_grad, x, x_hat, ctx.likelihood, False)
    if needs[2] or needs[3]:
        if objective_only:
            grad_mu, grad_log_var = dobj_dmu, dobj_dlv
        else:
            grad_mu, grad_log_var = ops.elbo_backward_latent(grad_stats, mu, log_var, ctx.beta)
    return grad_x, grad_x_hat, grad_mu, grad_log_var, None, None, None


def register() -> None:
    torch.library.register_fake(OP, _fake)
    torch.library.register_fake(BACKWARD_X_HAT_OP, _fake_backward_x_hat)
    torch.library.register_fake(BACKWARD_LATENT_OP, _fake_backward_latent)
    torch.library.register_autograd(OP, _backward, setup_context=_setup_context)
