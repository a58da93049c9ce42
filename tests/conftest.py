"""Shared fixtures and oracle comparisons for the op tests.

Devices: the op, model and peer-API tests take the ``device`` fixture and run
once per entry of ``DEVICES`` (``cpu``, and ``cuda``, which skips without a
GPU and carries the ``cuda`` marker: ``pytest -m cuda`` runs only those).
On a GPU the cuda copies fail at once if the extension was built without
CUDA kernels (``require_cuda_kernels``): they would test the reference
fallback only. ``check_against_oracle`` runs the reference on the CPU and
compares there, whatever device the extension ran on.

Accuracy rule (per dtype), always against the reference evaluated in float64
on the same (rounded) inputs:
* float64: relative error < 1e-10;
* float32: relative error < 1e-5;
* float16/bfloat16: error at most ~2x that of the reference run in the
  same dtype (PyTorch's own error), plus one unit in the last place.
"""

from __future__ import annotations

import math
import os

import mpmath
import pytest
import torch

import pyautoencoder_fast as paf

DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]
HALF_DTYPES = (torch.float16, torch.bfloat16)
LIKELIHOODS = ["gaussian", "bernoulli", "laplace", "bernoulli_probs"]

requires_extension = pytest.mark.skipif(
    not paf.extension_available(), reason=f"extension not loaded: {paf.extension_load_error()}"
)
requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
DEVICES = ["cpu", pytest.param("cuda", marks=[requires_cuda, pytest.mark.cuda])]


def require_cuda_kernels() -> None:
    """Fails the calling test when a GPU is present but the loaded extension
    has no CUDA kernels: the functions would route CUDA tensors to the
    reference fallback and the cuda tests would check nothing of ours."""
    if paf.extension_available() and not paf.extension_info()["with_cuda"]:
        pytest.fail(
            "a CUDA GPU is present but pyautoencoder_fast was built without CUDA kernels "
            "(rebuild with a CUDA build of torch and nvcc, e.g. FORCE_CUDA=1): "
            "the cuda tests would only test the reference fallback",
            pytrace=False,
        )


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    """The device a test runs on: cpu, and cuda where a GPU is present."""
    if request.param == "cuda":
        require_cuda_kernels()
    return torch.device(request.param)


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: runs on a CUDA GPU (skipped without one)")


def pytest_report_header(config):
    return f"pyautoencoder_fast backend: {paf.active_backend()} {paf.extension_info()}"


def pytest_sessionstart(session):
    # CI runs with PYAUTOENCODER_FAST_BACKEND=extension: fail loudly rather than
    # pass on the fallback alone.
    if os.environ.get("PYAUTOENCODER_FAST_BACKEND") == "extension":
        assert paf.extension_available(), paf.extension_load_error()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def to64(value):
    if isinstance(value, torch.Tensor):
        return value.detach().to(torch.float64) if value.is_floating_point() else value
    if isinstance(value, (tuple, list)):
        return type(value)(to64(v) for v in value)
    return value


def _pairs(actual, expected):
    if isinstance(actual, torch.Tensor):
        return [(actual, expected)]
    return [p for a, e in zip(actual, expected) for p in _pairs(a, e)]


def assert_accurate(actual, truth, same_dtype_ref=None, dtype=None, what="", loose=False):
    """actual (in dtype) vs truth (float64); same_dtype_ref: the reference's
    own result in dtype, required for the half types."""
    for i, (a, t) in enumerate(_pairs(actual, truth)):
        if a is None and t is None:
            continue
        label = f"{what}[{i}]"
        a, t = a.cpu(), t.cpu()  # compared on the CPU, whatever device produced them
        assert a.shape == t.shape, f"{label}: shape {tuple(a.shape)} != {tuple(t.shape)}"
        if not a.is_floating_point():
            assert torch.equal(a, t), label
            continue
        dt = dtype or a.dtype
        assert a.dtype == dt, f"{label}: dtype {a.dtype} != {dt}"
        a64, t64 = a.detach().double(), t.detach().double()
        if a64.numel() == 0:
            continue
        finite_truth = t64[torch.isfinite(t64)]  # the scale of the absolute tolerance
        scale = finite_truth.abs().max().clamp_min(1.0) if finite_truth.numel() else torch.tensor(1.0)
        if dt == torch.float64:
            torch.testing.assert_close(a64, t64, rtol=1e-10, atol=1e-10 * scale.item(), equal_nan=True, msg=label)
        elif dt == torch.float32:
            torch.testing.assert_close(a64, t64, rtol=1e-5, atol=1e-5 * scale.item(), equal_nan=True, msg=label)
        else:
            assert same_dtype_ref is not None, "half types need the reference's own result"
            r64 = _pairs(same_dtype_ref, truth)[i][0].detach().double().cpu()
            finite = torch.isfinite(t64)
            a_nf, t_nf = a64[~finite], t64[~finite]  # infinities and NaNs must match exactly
            assert ((a_nf == t_nf) | (a_nf.isnan() & t_nf.isnan())).all(), f"{label}: non-finite values differ"
            # a true value beyond the dtype's range rounds to +-inf: expect that there
            overflow = finite & (t64.abs() > torch.finfo(dt).max * (1 + torch.finfo(dt).eps))
            assert (a64[overflow] == t64[overflow].sign() * math.inf).all(), f"{label}: overflow is not +-inf"
            finite &= ~overflow
            if not finite.any():
                continue
            err = (a64 - t64)[finite].abs().max().item()
            ref_err = (r64 - t64)[finite].abs().max().item()
            ulp = torch.finfo(dt).eps * t64[finite].abs().max().item()
            # (loose: also within a few units of rounding of O(1) values, for
            # sums that cancel, where either rounding order may be the luckier)
            loose_ok = loose and err <= 4 * torch.finfo(dt).eps * max(1.0, t64[finite].abs().max().item())
            assert err <= 2 * ref_err + ulp or loose_ok, f"{label}: error {err:.3g} > 2 x torch's {ref_err:.3g} + ulp {ulp:.3g}"


def log_var_input(shape, requires_grad=True):
    """A Gaussian decoder's log-variance x_log_var, float64, of spread 0.7."""
    return (torch.randn(shape, dtype=torch.float64) * 0.7).requires_grad_(requires_grad)


def random_inputs(shape, likelihood, dtype, *, target=False, requires_grad=False):
    """x (targets in [0, 1] for Bernoulli) or x_hat (logits, or probabilities
    in (0, 1) for bernoulli_probs) of a given dtype."""
    if target and likelihood.startswith("bernoulli"):
        t = torch.rand(shape, dtype=torch.float64)
    elif likelihood == "bernoulli_probs":  # off 0 and 1 after rounding (see docs/differences.md: d/dx there)
        t = torch.sigmoid(torch.randn(shape, dtype=torch.float64) * 2.0).clamp(0.01, 0.99)
    else:
        t = torch.randn(shape, dtype=torch.float64) * (2.0 if likelihood == "bernoulli" else 1.0)
    return t.to(dtype).requires_grad_(requires_grad)


def grads_of(outputs, inputs, grad_outputs):
    """d(outputs . grad_outputs)/d inputs (None for inputs without grad)."""
    outs = [o for o in (outputs if isinstance(outputs, (tuple, list)) else (outputs,))]
    gos = grad_outputs if isinstance(grad_outputs, (tuple, list)) else (grad_outputs,)
    pairs = [(o, g) for o, g in zip(outs, gos) if o.requires_grad]
    need = [i for i in inputs if i is not None and i.requires_grad]
    gs = torch.autograd.grad([o for o, _ in pairs], need, [g for _, g in pairs], allow_unused=True)
    it = iter(gs)
    return [next(it) if (i is not None and i.requires_grad) else None for i in inputs]


def on_device(device, *tensors):
    """The tensors as leaves on `device` (made on the CPU, so that every device
    gets the same values), each requiring grad where the original does."""
    return [t.detach().to(device).requires_grad_(t.requires_grad) for t in tensors]


def with_layout(t, dtype, device="cpu"):
    """t (detached) in `dtype` on `device` with t's strides and storage
    offset: a sliced or expanded view stays one (Tensor.to would copy it
    into contiguous memory, and the kernels would never see the layout)."""
    t = t.detach()
    storage = torch.empty(0, dtype=t.dtype, device=t.device)
    storage.set_(t.untyped_storage(), 0, (t.untyped_storage().nbytes() // t.element_size(),), (1,))
    return storage.to(device=device, dtype=dtype).as_strided(t.shape, t.stride(), t.storage_offset())


def _cast_inputs(inputs, dtype, device="cpu"):
    out = []
    for i in inputs:
        if isinstance(i, torch.Tensor) and i.is_floating_point():
            out.append(with_layout(i, dtype, device).requires_grad_(i.requires_grad))
        elif isinstance(i, torch.Tensor):
            out.append(with_layout(i, i.dtype, device))
        else:
            out.append(i)
    return out


def _as_tuple(out):
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def check_against_oracle(fn, inputs, dtype, *, device="cpu", grad=True, what="op", loose=False):
    """Runs fn(*inputs) on the extension in `dtype` on `device` and compares
    values and gradients (for random grad_outputs != 1), on the CPU, with the
    reference run on the CPU in float64 on the same rounded inputs (and, for
    half types, in `dtype` too).

    `inputs` are float64 master tensors on the CPU (requires_grad marks what
    to differentiate; every copy keeps their strides, see with_layout) or
    other arguments, passed through unchanged.
    """
    rounded = [with_layout(i, dtype).requires_grad_(i.requires_grad) if isinstance(i, torch.Tensor) and i.is_floating_point() else i for i in inputs]

    def run(backend, dt, dev="cpu"):
        ins = _cast_inputs(rounded, dt, dev)
        with paf.use_backend(backend):
            out = _as_tuple(fn(*ins))
        return ins, out

    ins_a, out_a = run("extension", dtype, device)
    assert all(o.device.type == torch.device(device).type for o in out_a), f"{what}: outputs not on {device}"
    ins_t, out_t = run("reference", torch.float64)
    ins_r, out_r = run("reference", dtype) if dtype in HALF_DTYPES else (None, None)
    assert_accurate(out_a, out_t, out_r, dtype, what=f"{what} value", loose=loose)
    if not grad:
        return out_a
    g = torch.Generator().manual_seed(1234)  # the same grad_outputs on every run
    grad_outs = [torch.randn(o.shape, generator=g, dtype=torch.float64) * 1.7 + 0.3 if o.is_floating_point() else None for o in out_t]
    def grads(ins, out, dt):
        tensors = [i if isinstance(i, torch.Tensor) else None for i in ins]
        dev = out[0].device
        gos = [g.to(device=dev, dtype=dt) if g is not None else None for g in grad_outs]
        keep = [(o, g) for o, g in zip(out, gos) if g is not None and o.requires_grad]
        return grads_of([o for o, _ in keep], tensors, [g for _, g in keep])
    g_a = grads(ins_a, out_a, dtype)
    g_t = grads(ins_t, out_t, torch.float64)
    g_r = grads(ins_r, out_r, dtype) if ins_r is not None else None
    for k, (a, t) in enumerate(zip(g_a, g_t)):
        if a is None and t is None:
            continue
        assert a is not None and t is not None, f"{what} grad[{k}]: one side has no gradient"
        assert_accurate(a, t, g_r[k] if g_r is not None else None, dtype, what=f"{what} grad[{k}]", loose=loose)
    return out_a


def reparameterize_with_oracle(samples, seed, dtype):
    """fn(mu, log_var) for check_against_oracle: the kernel on the extension
    backend (the seed on mu's device, as functional.draw_seed gives it); on
    the reference, z = mu + exp(log_var / 2) * eps with the kernel's own
    noise (drawn in float32 unless `dtype` is float64), computed in the
    dtype fn is given."""
    from pyautoencoder_fast import reference

    seed_t = torch.tensor(seed)

    def sample(mu, log_var):
        if paf.active_backend() == "extension":
            return torch.ops.pyautoencoder_fast.reparameterize(mu, log_var, samples, seed_t.to(mu.device))
        noise_dtype = torch.float64 if dtype == torch.float64 else torch.float32
        eps = reference.philox_normal(seed, mu.shape[0] * samples * mu.shape[1], noise_dtype)
        eps = eps.reshape(mu.shape[0], samples, mu.shape[1])
        return mu.unsqueeze(1) + torch.exp(0.5 * log_var).unsqueeze(1) * eps.to(mu.dtype)

    return sample


def nb_log_pmf_mpmath(x, mu, theta, eps=1e-8):
    """scvi's NB log-pmf (its eps included) in mpmath (callers set 40+ digits)."""
    x, mu, theta = mpmath.mpf(x), mpmath.mpf(mu), mpmath.mpf(theta)
    log_theta_mu_eps = mpmath.log(theta + mu + eps)
    return (theta * (mpmath.log(theta + eps) - log_theta_mu_eps) + x * (mpmath.log(mu + eps) - log_theta_mu_eps)
            + mpmath.loggamma(x + theta) - mpmath.loggamma(theta) - mpmath.loggamma(x + 1))
