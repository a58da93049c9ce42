"""Determinism and threads: bitwise identical results run to run (and for
any thread count: every row is reduced by one task in a fixed order), and
ops called from several Python threads at once. (Seeded sampling:
tests/test_ops_reparameterize.py.)"""

from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from pyautoencoder_fast import functional as F
from conftest import DTYPES, requires_extension

pytestmark = requires_extension


def _inputs(dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64).to(dtype).requires_grad_()  # noqa: E731
    return {
        "x": torch.rand(64, 3000, generator=g, dtype=torch.float64).to(dtype),
        "x_hat": r(64, 2, 3000),
        "mu": r(64, 40),
        "log_var": r(64, 40),
        "mu2": r(64, 40),
        "log_var2": r(64, 40),
    }


def _run_everything(t):
    """Every op, forward and backward, on the inputs t; returns all tensors produced."""
    out = []
    for likelihood in ("gaussian", "bernoulli", "laplace"):
        ll = F.log_likelihood(t["x"], t["x_hat"][:, 0], likelihood)
        lls = F.log_likelihood_sum(t["x"], t["x_hat"], likelihood)
        stats = F.elbo_stats(t["x"], t["x_hat"], t["mu"], t["log_var"], 2.0, likelihood)
        out += [ll, lls, stats]
        out += torch.autograd.grad(ll.sum() + lls.sum() + stats[0], (t["x_hat"], t["mu"], t["log_var"]))
    kl = F.kl_diag_gaussian(t["mu"], t["log_var"], t["mu2"], t["log_var2"])
    z = F.reparameterize(t["mu"], t["log_var"], 3, generator=torch.Generator().manual_seed(11))
    adapted = F.adagvae_posterior(t["mu"], t["log_var"], t["mu2"], t["log_var2"])
    total = kl.sum() + (z * z).sum() + sum(a.sum() for a in adapted)
    out += [kl, z, *adapted]
    out += torch.autograd.grad(total, (t["mu"], t["log_var"], t["mu2"], t["log_var2"]))
    return [o.detach() for o in out]


def _assert_bitwise_equal(a, b):
    assert len(a) == len(b)
    for i, (u, v) in enumerate(zip(a, b)):
        assert torch.equal(u, v) or (u.isnan() == v.isnan()).all() and torch.equal(u.nan_to_num(), v.nan_to_num()), i


@pytest.mark.parametrize("dtype", DTYPES)
def test_bitwise_identical_run_to_run(dtype):
    first = _run_everything(_inputs(dtype))
    second = _run_everything(_inputs(dtype))
    _assert_bitwise_equal(first, second)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_bitwise_identical_for_any_thread_count(dtype):
    threads = torch.get_num_threads()
    try:
        results = []
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            results.append(_run_everything(_inputs(dtype)))
    finally:
        torch.set_num_threads(threads)
    _assert_bitwise_equal(results[0], results[1])
    _assert_bitwise_equal(results[0], results[2])


def test_concurrent_calls_from_python_threads_match_serial_calls():
    inputs = [_inputs(torch.float32, seed) for seed in range(6)]
    serial = [_run_everything(t) for t in inputs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        for _ in range(2):
            concurrent = list(pool.map(_run_everything, inputs))
            for a, b in zip(serial, concurrent):
                _assert_bitwise_equal(a, b)
