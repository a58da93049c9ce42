"""Bad input raises a clear Python exception naming the argument."""

import numpy as np
import pytest
import torch

from pyautoencoder_fast import functional as F
from pyautoencoder_fast import loss

ops = torch.ops.pyautoencoder_fast


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: F.log_likelihood([1.0], torch.zeros(1)), TypeError, "x: expected a torch.Tensor"),
        (lambda: F.log_likelihood(torch.zeros(2), torch.zeros(2, dtype=torch.long)), TypeError, "x_hat: expected a floating-point"),
        (lambda: F.log_likelihood(torch.zeros(2), torch.zeros(2), "poisson"), ValueError, "Unsupported likelihood: 'poisson'"),
        (lambda: F.log_likelihood(torch.zeros(2), torch.zeros(2), 3), ValueError, "Unsupported likelihood: 3"),
        (lambda: F.log_likelihood(torch.zeros(2, 3), torch.zeros(4, 3)), ValueError, "shapes do not broadcast: x .2, 3., x_hat .4, 3."),
        (lambda: F.log_likelihood(torch.zeros(2), torch.zeros(2, device="meta")), ValueError, "x_hat: on device meta, but x is on cpu"),
        (lambda: F.log_likelihood_sum(torch.zeros(()), torch.zeros(3)), ValueError, r"x: expected shape \[B, ...\]"),
        (lambda: F.log_likelihood_sum(torch.zeros(2, 5), torch.zeros(2, 3, 4)), ValueError, "x_hat: shape"),
        (lambda: F.log_likelihood_sum(torch.zeros(2, 5), torch.zeros(2, 3, 4, 5, 6)), ValueError, r"x_hat: expected shape \[B, ...\] or \[B, S, ...\]"),
        (lambda: F.kl_diag_gaussian(torch.zeros(2, 3), torch.zeros(2, 4)), ValueError, "shapes do not broadcast"),
        (lambda: F.kl_diag_gaussian(torch.zeros(()), torch.zeros(())), ValueError, "at least one dimension"),
        (lambda: F.kl_diag_gaussian(torch.zeros(2, 3), torch.zeros(2, 3), clamp_min=2.0, clamp_max=1.0), ValueError, "clamp_min .2.0. must not exceed clamp_max"),
        (lambda: F.kl_diag_gaussian(torch.zeros(2, 3), torch.zeros(2, 3), clamp_min=float("nan")), ValueError, "clamp_min: expected a number, got nan"),
        (lambda: F.kl_diag_gaussian(torch.zeros(2, 3), None), TypeError, "log_var_q: expected a torch.Tensor, got NoneType"),
        (lambda: F.reparameterize(torch.zeros(2, 3), torch.zeros(2, 3), 0), ValueError, "num_samples: expected an integer >= 1, got 0"),
        (lambda: F.reparameterize(torch.zeros(2, 3), torch.zeros(2, 3), 1.5), TypeError, "num_samples: expected an int"),
        (lambda: F.reparameterize(torch.zeros(2, 3, 4), torch.zeros(2, 3, 4)), ValueError, r"mu, log_var: expected shape \[B, D\]"),
        (lambda: F.reparameterize(torch.zeros(2, 3), torch.zeros(2, 3), generator=0), TypeError, "generator: expected a torch.Generator or None, got int"),
        (lambda: F.reparameterize(torch.zeros(2, 3), torch.zeros(2, 3), 2, generator=np.random.default_rng(0)), TypeError,
         r"generator: expected a torch.Generator or None, got numpy\.random\..*Generator"),
        (lambda: F.draw_seed(torch.device("cpu"), 1234), TypeError, "generator: expected a torch.Generator or None, got int"),
        (lambda: F.elbo(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(2, 4), beta=float("inf")), ValueError, "beta: expected a finite number, got inf"),
        (lambda: F.elbo(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(3, 4), torch.zeros(3, 4)), ValueError, r"mu: expected batch size 2 \(from x\)"),
        # x_hat's shape as passed, not with the sample axis inserted: (24, 784), not (24, 1, 784)
        (lambda: F.elbo(torch.zeros(8, 784), torch.zeros(24, 784), torch.zeros(8, 4), torch.zeros(8, 4)), ValueError, r"x_hat: shape \(24, 784\) does not match x \(8, 784\)"),
        (lambda: F.elbo_stats(torch.zeros(8, 784), torch.zeros(8, 392), torch.zeros(8, 4), torch.zeros(8, 4)), ValueError, r"x_hat: shape \(8, 392\) does not match x \(8, 784\)"),
        (lambda: F.log_likelihood_sum(torch.zeros(8, 784), torch.zeros(24, 784)), ValueError, r"x_hat: shape \(24, 784\) does not match x \(8, 784\)"),
        (lambda: F.elbo(torch.zeros(8, 784), torch.zeros(24, 2, 784), torch.zeros(8, 4), torch.zeros(8, 4)), ValueError, r"x_hat: shape \(24, 2, 784\) does not match x \(8, 784\)"),
        (lambda: F.elbo(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(2, 4), likelihood="normal"), ValueError, "Unsupported likelihood: 'normal'"),
        (lambda: F.adagvae_posterior(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(2, 4)), ValueError, r"mu2: expected shape \(2, 3\)"),
        (lambda: loss.log_likelihood(torch.zeros(2), torch.zeros(2), "Cauchy"), ValueError, "Unsupported likelihood"),
        (lambda: F.log_likelihood(torch.zeros(2), torch.zeros(2, dtype=torch.complex64)), TypeError, "x_hat: expected a floating-point"),
        (lambda: F.log_likelihood(torch.zeros(2, dtype=torch.complex64), torch.zeros(2)), TypeError, "x: expected a real tensor"),
    ],
)
def test_functional_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# Each call takes z(*shape, dtype=...), a tensor of zeros on the test's device.
KERNEL_ERROR_CASES = [
    (lambda z: ops.log_likelihood(z(2), z(2), "poisson"), "likelihood: expected 'gaussian', 'bernoulli', 'laplace' or 'bernoulli_probs'"),
    (lambda z: ops.log_likelihood(z(2), z(2, dtype=torch.float64), "gaussian"), "x_hat: dtype Double differs from x's Float"),
    (lambda z: ops.log_likelihood_sum(z(2, 3), z(2, 3), "gaussian"), r"x_hat: expected shape \[B, S, ...\] matching x \[2, 3\], got \[2, 3\]"),
    (lambda z: ops.log_likelihood_sum_backward(z(3, 1), z(2, 3), z(2, 1, 3), "gaussian", "x_hat"), r"grad: expected shape \[2, 1\]"),
    (lambda z: ops.reparameterize(z(2, 3), z(2, 3), 0, z(dtype=torch.long)), "num_samples: expected S >= 1, got 0"),
    (lambda z: ops.reparameterize(z(2, 3), z(2, 3), 1, z(1)), "seed: expected a one-element int64 tensor"),
    (lambda z: ops.reparameterize(z(2, 3), z(3, 3), 1, z(dtype=torch.long)), r"log_var: expected shape \[2, 3\]"),
    (lambda z: ops.reparameterize_backward(z(2, 1, 3), z(2, 3), z(2, 3), z(dtype=torch.long), z(2, 1, 3, dtype=torch.float64)), "noise: expected Float"),
    (lambda z: ops.reparameterize_backward(z(2, 1, 3), z(2, 3), z(2, 3), z(dtype=torch.long), z(2, 2, 3)), r"noise: expected shape \[2, 1, 3\]"),
    (lambda z: ops.elbo(z(2, 3), z(2, 1, 3), z(3, 4), z(3, 4), 1.0, "gaussian", False), "mu: expected batch size 2"),
    (lambda z: ops.elbo_backward_x_hat(z(3), z(2, 3)), "grad_stats: expected 4 elements, got shape \\[3\\]"),
    (lambda z: ops.elbo_scale_x_hat_grad_(z(3), z(2, 3)), "grad_stats: expected 4 elements"),
    (lambda z: ops.elbo_backward_latent(z(5), z(2, 3), z(2, 3), 1.0), "grad_stats: expected 4 elements"),
    (lambda z: ops.kl_diag_gaussian(z(2, 3), z(2, 3), None, None, True, 1.0, 0.0), r"clamp_min \(1\) must not exceed clamp_max \(0\)"),
    (lambda z: ops.adagvae_posterior_backward(*(z(2, 3) for _ in range(6)), z(2, 3)), "mask: expected dtype bool"),
    (lambda z: ops.kl_diag_gaussian(z(2, 3, dtype=torch.long), z(2, 3), None, None, True, None, None), "mu_q: expected a floating-point tensor"),
    (lambda z: ops.count_log_likelihood(z(2, 3), z(2, 3), z(3), None, "gamma", 1e-8, False, False, False), "likelihood: expected 'nb', 'zinb' or 'poisson'"),
    (lambda z: ops.count_log_likelihood(z(2, 3), z(2, 3), None, None, "nb", 1e-8, True, True, False), "theta: required by likelihood 'nb'"),
    (lambda z: ops.count_log_likelihood(z(2, 3), z(2, 3), z(4), None, "nb", 1e-8, True, True, False), "size of tensor a|must match"),
    (lambda z: ops.count_log_likelihood(z(2, 3), z(2, 3), z(3), z(2, 3), "nb", 1e-8, False, False, False), "zi_logits: not used by likelihood 'nb'"),
    (lambda z: ops.count_log_likelihood(z(2, 3), z(2, 3), None, None, "poisson", -2.0, False, False, False), r"eps: expected a finite number >= 0, got -2"),
    (lambda z: ops.count_log_likelihood(z(2, 3, dtype=torch.float64), z(2, 3), None, None, "poisson", 1e-8, False, False, False), "x: dtype Double differs from mu's Float"),
]


@pytest.mark.parametrize("index", range(len(KERNEL_ERROR_CASES)))
def test_kernel_errors_for_direct_op_calls(index, device):
    # Direct torch.ops callers bypass the Python checks; the kernels still
    # refuse bad input with an exception (never a crash or a wrong number).
    # On CUDA a message holding a number once crashed the process instead
    # (tests/test_nvcc_sources.py says why); a crash fails the worker here.
    import pyautoencoder_fast

    if not pyautoencoder_fast.extension_available():
        pytest.skip("extension not loaded")
    call, match = KERNEL_ERROR_CASES[index]

    def z(*shape, dtype=torch.float32):
        return torch.zeros(shape, dtype=dtype, device=device)

    with pytest.raises((RuntimeError, ValueError), match=match):
        call(z)


def test_mixed_dtypes_are_promoted():
    out = F.log_likelihood(torch.zeros(3, dtype=torch.float16), torch.ones(3, dtype=torch.float64))
    assert out.dtype == torch.float64
    stats = F.elbo_stats(torch.zeros(2, 3), torch.ones(2, 3, dtype=torch.float64), torch.zeros(2, 2), torch.zeros(2, 2))
    assert stats.dtype == torch.float64
