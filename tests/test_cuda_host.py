"""The CUDA kernels' per-thread work, run on the CPU.

No GPU runs this suite on most machines (CI has none), so the functors of
the CUDA kernels (csrc/cuda/<op>.cuh: vector packs, tails, broadcast rows,
gradients, the Philox stream) are compiled for the host by
tests/_cuda_host_check.cpp and played thread by thread with the launch
shapes of cuda_utils.cuh; here they meet the CPU kernels (themselves tested
against the reference) on the same inputs. Not played: warp shuffles,
shared memory and the launches (tests/test_cuda.py, on a GPU).

The layouts make both paths run: rows aligned for 16-byte packs
("aligned", "long", "broadcast": zero-stride rows, "padded": a row stride
longer than the row, so packs end in a scalar tail) and a storage offset of
one element ("offset": one element at a time). Each call returns the pack
width it used and the tests check it.
"""

import math
import os
from pathlib import Path

import pytest
import torch

from conftest import LIKELIHOODS, random_inputs

ROOT = Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"
OPS = torch.ops.pyautoencoder_fast

DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]
TOL = {
    torch.float64: dict(rtol=1e-10, atol=1e-10),
    torch.float32: dict(rtol=2e-5, atol=2e-5),
    torch.float16: dict(rtol=4e-3, atol=4e-3),
    torch.bfloat16: dict(rtol=3e-2, atol=3e-2),
}
# (rows, cols) of each layout; "long" and "long16" take the block-per-chunk path
# (two chunks; long16's rows a whole number of 16-term packs).
LAYOUTS = {"aligned": (5, 24), "padded": (4, 13), "broadcast": (3, 24), "offset": (4, 24), "long": (2, 5000),
           "long16": (2, 4144)}
# The long-row variants of elbo's log-likelihood sum (PAF_CUDA_ROW_SUM; csrc/cuda/packs.h).
ROW_SUM_VARIANTS = ("ahead", "packs")


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    if not (CSRC / "cuda" / "packs.h").exists():
        pytest.skip("needs the source tree (csrc/): the installed package ships no sources")
    from torch.utils.cpp_extension import load

    build = tmp_path_factory.mktemp("cuda_host_check")
    return load(
        name="paf_cuda_host_check",
        sources=[str(ROOT / "tests" / "_cuda_host_check.cpp"), str(ROOT / "csrc" / "common" / "checks.cpp")],
        extra_include_paths=[str(CSRC)],
        extra_cflags=["-O1", "-Wall", "-Wextra", "-Werror", "-Wno-unknown-pragmas", "-Wno-unused-parameter"],
        build_directory=str(build),
        verbose=os.environ.get("PYAUTOENCODER_FAST_VERBOSE_BUILD") == "1",
    )


def tensor(layout, make, lead=None):
    """A [*lead, cols] tensor in the layout (lead: the layout's rows by
    default); make(shape) gives the values."""
    rows, cols = LAYOUTS[layout]
    lead = (rows,) if lead is None else tuple(lead)
    if layout == "padded":
        return make((*lead, 16))[..., :cols]
    if layout == "broadcast":
        return make((1,) * len(lead) + (cols,)).expand(*lead, cols)
    if layout == "offset":
        return make((math.prod(lead) * cols + 1,))[1:].view(*lead, cols)
    return make((*lead, cols))


def expect_width(width, layout, dtype, *, writes_elements):
    """16-byte packs where every row is aligned, single elements where not:
    a padded row stride keeps the inputs' rows aligned, but an op that
    writes per-element outputs writes them dense, 13 to a row."""
    pack = 16 // torch.empty((), dtype=dtype).element_size()
    if layout == "offset" or (layout == "padded" and writes_elements):
        assert width == 1
    else:
        assert width == pack


def expect_row_sum_width(width, layout, dtype, variant):
    """expect_width, and for the long rows of "ahead": 16-byte packs, as many
    loaded ahead as make 16 terms (the width reported is the two multiplied;
    double: one pack at a time)."""
    if variant == "packs" or not layout.startswith("long") or dtype == torch.float64:
        expect_width(width, layout, dtype, writes_elements=True)
    else:
        assert width == 16


def close(actual, expected, dtype):
    torch.testing.assert_close(actual.to(dtype), expected, **TOL[dtype], equal_nan=True)


def normal(dtype, scale=1.0):
    return lambda shape: (torch.randn(shape, dtype=torch.float64) * scale).to(dtype)


def test_packs_cover_every_element_once(host):
    """packs.h: every thread of each launch shape (a warp per row, 256
    threads per 4096-column chunk, grid-stride loops) for pack widths 1, 2,
    4 and 8 and edge column counts: each element visited exactly once, each
    pack aligned within its row, at most 16 terms (+1 tail) per thread."""
    assert host.check_packs() == []


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_log_likelihood_sum(host, layout, dtype, likelihood):
    x = tensor(layout, lambda s: random_inputs(s, likelihood, dtype, target=True))
    x_hat = tensor(layout, lambda s: random_inputs(s, likelihood, dtype), lead=(x.shape[0], 2))
    out, width = host.log_likelihood_sum(x, x_hat, likelihood, None)
    close(out, OPS.log_likelihood_sum(x, x_hat, likelihood), dtype)
    expect_width(width, layout, dtype, writes_elements=False)
    grad = normal(dtype)(out.shape)
    for wrt in ("x_hat", "x"):
        g, width = host.log_likelihood_sum_backward(grad, x, x_hat, likelihood, wrt, None)
        close(g, OPS.log_likelihood_sum_backward(grad, x, x_hat, likelihood, wrt), dtype)
        expect_width(width, layout, dtype, writes_elements=True)


def _x_log_var(kind, layout, dtype, x_hat):
    """The Gaussian's log-variance: per element of x_hat (its layout), shared
    by the samples (x's rows), per feature (a zero row stride) or 0-d."""
    make = normal(dtype, 0.7)
    if kind == "element":
        return tensor(layout, make, lead=x_hat.shape[:2])
    if kind == "per_x":
        return tensor(layout, make, lead=(x_hat.shape[0], 1))
    return make(x_hat.shape[2:]) if kind == "feature" else make(())


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["element", "per_x", "feature", "scalar"])
def test_log_likelihood_sum_with_log_var(host, layout, dtype, kind):
    x = tensor(layout, normal(dtype))
    x_hat = tensor(layout, normal(dtype), lead=(x.shape[0], 2))
    x_log_var = _x_log_var(kind, layout, dtype, x_hat)
    out, _ = host.log_likelihood_sum(x, x_hat, "gaussian", x_log_var)
    close(out, OPS.log_likelihood_sum(x, x_hat, "gaussian", x_log_var), dtype)
    grad = normal(dtype)(out.shape)
    for wrt in ("x_hat", "x", "x_log_var"):
        g, _ = host.log_likelihood_sum_backward(grad, x, x_hat, "gaussian", wrt, x_log_var)
        close(g, OPS.log_likelihood_sum_backward(grad, x, x_hat, "gaussian", wrt, x_log_var).to(dtype), dtype)
    _, want_x_hat, _, _, want_x_log_var = OPS.elbo(x, x_hat, x[:, :3], x[:, :3], 1.0, "gaussian", True, x_log_var)
    for variant in ROW_SUM_VARIANTS:
        ll_rows, _, d_x_hat, _, _, d_x_log_var, width, _ = host.elbo_rows(x, x_hat, x[:, :3], x[:, :3], 1.0,
                                                                        "gaussian", True, x_log_var, variant)
        close(ll_rows.view(out.shape), out.to(dtype), dtype)
        close(d_x_hat, want_x_hat, dtype)
        close(d_x_log_var, want_x_log_var.to(dtype), dtype)
        if kind == "element":  # (the other kinds broadcast x_log_var: packs where its rows allow)
            expect_row_sum_width(width, layout, dtype, variant)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("prior", ["standard", "general"])
@pytest.mark.parametrize("clamp", [None, (-2.0, 1.5)])
def test_kl_diag_gaussian(host, layout, dtype, prior, clamp):
    make = normal(dtype, 1.5)
    # log-variances on a grid of halves: many lie exactly on the clamp bounds
    make_lv = lambda shape: (make(shape).double() * 2).round().div(2).to(dtype)
    mu_q, lv_q = tensor(layout, make), tensor(layout, make_lv)
    mu_p = lv_p = None
    if prior == "general":  # mu_p broadcast over the rows (a zero row stride)
        mu_p = make((1, mu_q.shape[1])).expand(mu_q.shape)
        lv_p = tensor(layout, make_lv)
    lo, hi = clamp if clamp else (None, None)
    for reduce_sum in (True, False):
        args = (mu_q, lv_q, mu_p, lv_p, reduce_sum, lo, hi)
        out, width = host.kl_diag_gaussian(*args)
        close(out, OPS.kl_diag_gaussian(*args), dtype)
        expect_width(width, layout, dtype, writes_elements=not reduce_sum)
        grad = make(out.shape)
        for at_bounds in (True, False):  # torch.clamp's gradient at a bound: up to 2.13, from 2.14
            *grads, width = host.kl_diag_gaussian_backward(grad, *args, at_bounds)
            for got, want in zip(grads, OPS.kl_diag_gaussian_backward(grad, *args, at_bounds)):
                close(got, want, dtype)
            expect_width(width, layout, dtype, writes_elements=True)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("likelihood", LIKELIHOODS)
@pytest.mark.parametrize("variant", ROW_SUM_VARIANTS)
def test_elbo(host, layout, dtype, likelihood, variant):
    beta = 0.7
    x = tensor(layout, lambda s: random_inputs(s, likelihood, dtype, target=True))
    rows = x.shape[0]
    x_hat = tensor(layout, lambda s: random_inputs(s, likelihood, dtype), lead=(rows, 2))
    mu, lv = tensor(layout, normal(dtype)), tensor(layout, normal(dtype))
    ll_rows, kl_rows, d_x_hat, d_mu, d_lv, _, ll_width, kl_width = host.elbo_rows(x, x_hat, mu, lv, beta, likelihood,
                                                                                  True, None, variant)
    close(ll_rows.view(rows, 2), OPS.log_likelihood_sum(x, x_hat, likelihood), dtype)
    close(kl_rows, OPS.kl_diag_gaussian(mu, lv, None, None, True, None, None), dtype)
    _, want_x_hat, want_mu, want_lv, _ = OPS.elbo(x, x_hat, mu, lv, beta, likelihood, True)
    close(d_x_hat, want_x_hat, dtype)
    close(d_mu, want_mu, dtype)
    close(d_lv, want_lv, dtype)
    expect_row_sum_width(ll_width, layout, dtype, variant)
    expect_width(kl_width, layout, dtype, writes_elements=True)
    if variant != "packs":
        return  # (the variants are the forward's log-likelihood rows)
    # the backward: d (stats . grad_stats), with the weights of elbo.cuh
    grad_stats = torch.tensor([1.5, -0.25, 0.5, 2.0], dtype=torch.float64).to(dtype)
    scaled, width = host.elbo_backward_x_hat(grad_stats, want_x_hat, False)
    close(scaled, OPS.elbo_backward_x_hat(grad_stats, want_x_hat), dtype)
    assert width == 16 // want_x_hat.element_size()  # one dense row
    # in place (autograd's first backward): the buffer becomes the gradient ...
    buffer = want_x_hat.clone()
    in_place, _ = host.elbo_backward_x_hat(grad_stats, buffer, True)
    assert in_place.data_ptr() == buffer.data_ptr()
    close(buffer, scaled, dtype)
    # ... and a coefficient of 1 (grad_stats [1, 0, 0, 0]) leaves every element untouched
    poisoned = torch.full_like(want_x_hat, float("nan"))
    host.elbo_backward_x_hat(torch.tensor([1.0, 0, 0, 0], dtype=dtype), poisoned, True)
    assert poisoned.isnan().all()
    buffer = want_x_hat.clone()
    host.elbo_backward_x_hat(torch.tensor([2.0, 0.5, 0.5, 3.0], dtype=dtype), buffer, True)
    assert torch.equal(buffer, want_x_hat)  # 2 - 0.5 - 0.5 = 1 as well
    g_mu, g_lv, width = host.elbo_backward_latent(grad_stats, mu, lv, beta)
    for got, want in zip((g_mu, g_lv), OPS.elbo_backward_latent(grad_stats, mu, lv, beta)):
        close(got, want, dtype)
    expect_width(width, layout, dtype, writes_elements=True)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian", "gaussian+x_log_var"])
def test_iwae_bound(host, layout, dtype, likelihood):
    likelihood, _, with_log_var = likelihood.partition("+")
    x = tensor(layout, lambda s: random_inputs(s, likelihood, dtype, target=True))
    rows = x.shape[0]
    x_hat = tensor(layout, lambda s: random_inputs(s, likelihood, dtype), lead=(rows, 3))
    z = tensor(layout, normal(dtype), lead=(rows, 3))  # the layout's columns as the latent size
    mu, lv = tensor(layout, normal(dtype)), tensor(layout, normal(dtype, 0.5))
    x_log_var = _x_log_var("feature", layout, dtype, x_hat) if with_log_var else None
    bound, weights, d_x_hat, d_x_log_var, ll_width, latent_width = host.iwae_bound(
        x, x_hat, z, mu, lv, likelihood, True, x_log_var)
    want = OPS.iwae_bound(x, x_hat, z, mu, lv, likelihood, True, x_log_var)
    for got, expected in zip((bound, weights, d_x_hat, d_x_log_var), want):
        close(got, expected.to(dtype), dtype)  # (weights and d_x_log_var: the accumulation dtype)
    expect_width(ll_width, layout, dtype, writes_elements=True)
    expect_width(latent_width, layout, dtype, writes_elements=False)
    grad = normal(dtype)((rows,))
    *grads, width = host.iwae_bound_backward_latent(grad, weights, z, mu, lv)
    for got, expected in zip(grads, OPS.iwae_bound_backward_latent(grad, weights, z, mu, lv)):
        close(got, expected, dtype)
    expect_width(width, layout, dtype, writes_elements=True)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("samples", [1, 3])
def test_reparameterize(host, layout, dtype, samples):
    mu, lv = tensor(layout, normal(dtype)), tensor(layout, normal(dtype))
    seed = torch.tensor([0x1234_5678_9ABC], dtype=torch.int64)
    z, noise, packed = host.reparameterize(mu, lv, samples, seed, True)
    want_z, want_noise = OPS.reparameterize_with_noise(mu, lv, samples, seed)
    close(z, want_z, dtype)
    close(noise, want_noise, want_noise.dtype)
    # packed: a latent width that is a multiple of 4, rows aligned
    assert packed == (layout in ("aligned", "long", "long16", "broadcast"))
    grad_z = normal(dtype)(z.shape)
    for saved in (noise, None):
        g_mu, g_lv, packed = host.reparameterize_backward(grad_z, mu, lv, seed, saved)
        for got, want in zip((g_mu, g_lv), OPS.reparameterize_backward(grad_z, mu, lv, seed, saved)):
            close(got, want, dtype)
        assert packed == (layout in ("aligned", "long", "long16", "broadcast"))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("likelihood", ["nb", "zinb", "poisson"])
@pytest.mark.parametrize("reduce_sum", [False, True], ids=["elementwise", "sum"])
def test_count_log_likelihood(host, layout, dtype, likelihood, reduce_sum):
    """The count functor (per element, or as a row-sum term writing the
    derivatives) against the CPU kernel, theta broadcast over the rows in
    the "broadcast" layout."""
    counts = lambda s: torch.poisson(torch.exp(torch.randn(s, dtype=torch.float64) * 1.5)).to(dtype)
    positive = lambda scale: (lambda s: (torch.exp(torch.randn(s, dtype=torch.float64) * scale) * 2).to(dtype))
    x = tensor(layout, counts)
    mu = tensor(layout, positive(1.0))
    theta = tensor(layout, positive(2.5)) if likelihood != "poisson" else None
    zi = tensor(layout, normal(dtype)) if likelihood == "zinb" else None
    for need_grad, need_grad_x in ((False, False), (True, False), (True, True)):
        *got, width = host.count_log_likelihood(x, mu, theta, zi, likelihood, 1e-8, reduce_sum, need_grad, need_grad_x)
        want = OPS.count_log_likelihood(x, mu, theta, zi, likelihood, 1e-8, reduce_sum, need_grad, need_grad_x)
        for g, w in zip(got, want):
            assert g.shape == w.shape
            if w.numel():
                compare_dtype = dtype if w.dtype == dtype else w.dtype
                torch.testing.assert_close(g.to(compare_dtype), w, **TOL[dtype], equal_nan=True)
        expect_width(width, layout, dtype, writes_elements=need_grad or not reduce_sum)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("separate_theta", [False, True], ids=["shared_theta", "theta_2"])
@pytest.mark.parametrize("reduce_sum", [False, True], ids=["elementwise", "sum"])
def test_nb_mixture_log_likelihood(host, layout, dtype, separate_theta, reduce_sum):
    """The NB mixture functor (per element, or as a row-sum term writing the
    derivatives) against the CPU kernel, the thetas broadcast over the rows
    in the "broadcast" layout."""
    counts = lambda s: torch.poisson(torch.exp(torch.randn(s, dtype=torch.float64) * 1.5)).to(dtype)
    positive = lambda scale: (lambda s: (torch.exp(torch.randn(s, dtype=torch.float64) * scale) * 2).to(dtype))
    x = tensor(layout, counts)
    mu_1, mu_2 = tensor(layout, positive(1.0)), tensor(layout, positive(1.5))
    theta_1 = tensor(layout, positive(2.5))
    theta_2 = tensor(layout, positive(2.5)) if separate_theta else None
    pi = tensor(layout, normal(dtype))
    for need_grad, need_grad_x in ((False, False), (True, False), (True, True)):
        args = (x, mu_1, mu_2, theta_1, theta_2, pi, 1e-8, reduce_sum, need_grad, need_grad_x)
        *got, width = host.nb_mixture_log_likelihood(*args)
        want = OPS.nb_mixture_log_likelihood(*args)
        for g, w in zip(got, want):
            assert g.shape == w.shape
            if w.numel():
                compare_dtype = dtype if w.dtype == dtype else w.dtype
                torch.testing.assert_close(g.to(compare_dtype), w, **TOL[dtype], equal_nan=True)
        expect_width(width, layout, dtype, writes_elements=need_grad or not reduce_sum)
