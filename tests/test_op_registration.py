"""opcheck for every op (forward and backward) on every device, gradcheck in
float64 for every differentiable op, and torch.compile(fullgraph=True)
through the ops."""

import pytest
import torch

import pyautoencoder_fast as paf
from pyautoencoder_fast import _likelihoods
from pyautoencoder_fast import functional as F
from conftest import on_device, requires_extension

pytestmark = requires_extension
ops = torch.ops.pyautoencoder_fast


def _t(*shape, grad=False, dtype=torch.float64):
    return torch.randn(*shape, dtype=dtype, requires_grad=grad)


def _x(*shape):
    return torch.rand(*shape, dtype=torch.float64)


def _counts(*shape):
    return torch.poisson(torch.full(shape, 2.0, dtype=torch.float64))


def _sample_args(grad):
    """(op, args) for every op; forward-op tensors require grad when `grad`."""
    seed = torch.tensor(77)
    mask = torch.tensor([[True, False, True], [False, False, True]])
    return [
        (ops.log_likelihood, (_x(3, 5), _t(3, 5, grad=grad), "gaussian")),
        (ops.log_likelihood, (_x(1, 5), _t(3, 5, grad=grad), "bernoulli")),
        (ops.log_likelihood, (_t(3, 5, grad=grad), _t(3, 5, grad=grad), "laplace")),
        (ops.log_likelihood, (_x(3, 5), _t(3, 5, grad=grad), "gaussian", _t(5, grad=grad))),
        (ops.log_likelihood_backward, (_t(3, 5), _x(3, 5), _t(3, 5), "bernoulli", "x_hat")),
        (ops.log_likelihood_backward, (_t(3, 5), _x(3, 5), _t(3, 5), "gaussian", "x")),
        (ops.log_likelihood_backward, (_t(3, 5), _x(3, 5), _t(3, 5), "gaussian", "x_log_var", _t(3, 1))),
        (ops.log_likelihood_sum, (_x(3, 4, 2), _t(3, 2, 4, 2, grad=grad), "bernoulli")),
        (ops.log_likelihood_sum, (_t(2, 7, grad=grad), _t(2, 1, 7, grad=grad), "laplace")),
        (ops.log_likelihood_sum, (_x(3, 4), _t(3, 2, 4, grad=grad), "gaussian", _t(3, 1, 4, grad=grad))),
        (ops.log_likelihood_sum, (_x(3, 4), _t(3, 2, 4, grad=grad), "gaussian", _t((), grad=grad))),
        (ops.log_likelihood_sum_backward, (_t(3, 2), _x(3, 4), _t(3, 2, 4), "gaussian", "x_hat")),
        (ops.log_likelihood_sum_backward, (_t(3, 2), _x(3, 4), _t(3, 2, 4), "bernoulli", "x")),
        (ops.log_likelihood_sum_backward, (_t(3, 2), _x(3, 4), _t(3, 2, 4), "gaussian", "x_log_var", _t(4))),
        (ops.log_likelihood_sum, (_x(3, 4), _x(3, 2, 4).requires_grad_(grad), "bernoulli_probs")),
        (ops.kl_diag_gaussian, (_t(4, 3, grad=grad), _t(4, 3, grad=grad), None, None, True, None, None)),
        (ops.kl_diag_gaussian, (_t(4, 3, grad=grad), _t(4, 3, grad=grad), _t(4, 3, grad=grad), _t(3, grad=grad), False, -2.0, 2.0)),
        (ops.kl_diag_gaussian_backward, (_t(4), _t(4, 3), _t(4, 3), None, None, True, None, None, True)),
        (ops.kl_diag_gaussian_backward, (_t(4, 3), _t(4, 3), _t(4, 3), _t(4, 3), None, False, -1.0, 1.0, False)),
        (ops.reparameterize, (_t(4, 3, grad=grad), _t(4, 3, grad=grad), 2, seed)),
        (ops.reparameterize_with_noise, (_t(4, 3), _t(4, 3), 2, seed)),
        (ops.reparameterize_backward, (_t(4, 2, 3), _t(4, 3), _t(4, 3), seed)),
        (ops.reparameterize_backward, (_t(4, 2, 3), _t(4, 3), _t(4, 3), seed, _t(4, 2, 3))),
        (ops.elbo, (_x(3, 6), _t(3, 2, 6, grad=grad), _t(3, 4, grad=grad), _t(3, 4, grad=grad), 2.0, "bernoulli", grad)),
        (ops.elbo, (_t(3, 6, grad=grad), _t(3, 1, 6, grad=grad), _t(3, 4, grad=grad), _t(3, 4, grad=grad), 1.0, "gaussian", grad)),
        (ops.elbo, (_x(3, 6), _t(3, 2, 6, grad=grad), _t(3, 4, grad=grad), _t(3, 4, grad=grad), 1.0, "gaussian", grad,
                    _t(3, 2, 6, grad=grad))),
        (ops.elbo, (_x(3, 6), _t(3, 2, 6, grad=grad), _t(3, 4, grad=grad), _t(3, 4, grad=grad), 2.0, "gaussian", grad,
                    _t(6, grad=grad))),
        (ops.iwae_bound, (_x(3, 6), _t(3, 2, 6, grad=grad), _t(3, 2, 4, grad=grad), _t(3, 4, grad=grad),
                          _t(3, 4, grad=grad), "bernoulli", grad)),
        (ops.iwae_bound, (_t(3, 6, grad=grad), _t(3, 2, 6, grad=grad), _t(3, 2, 4, grad=grad), _t(3, 4, grad=grad),
                          _t(3, 4, grad=grad), "gaussian", grad, _t(6, grad=grad))),
        (ops.iwae_bound_backward_latent, (_t(3), torch.softmax(_t(3, 2), 1), _t(3, 2, 4), _t(3, 4), _t(3, 4))),
        (ops.elbo_backward_x_hat, (_t(4), _t(3, 2, 6))),
        (ops.elbo_scale_x_hat_grad_, (_t(4), _t(3, 2, 6))),
        (ops.elbo_backward_latent, (_t(4), _t(3, 4), _t(3, 4), 0.5)),
        (ops.adagvae_posterior, tuple(_t(2, 3, grad=grad) for _ in range(4))),
        (ops.adagvae_posterior_backward, (*(_t(2, 3) for _ in range(6)), mask)),
        (ops.count_log_likelihood, (_counts(3, 5), _x(3, 5).add_(0.1).requires_grad_(grad), _x(5).add_(0.5).requires_grad_(grad),
                                    _t(3, 5, grad=grad), "zinb", 1e-8, False, grad, False)),
        (ops.count_log_likelihood, (_counts(3, 5).requires_grad_(grad), _x(3, 5).add_(0.1).requires_grad_(grad), None, None,
                                    "poisson", 1e-8, True, grad, grad)),
        (ops.nb_mixture_log_likelihood, (_counts(3, 5), _x(3, 5).add_(0.1).requires_grad_(grad),
                                         _x(3, 5).add_(2.0).requires_grad_(grad), _x(5).add_(0.5).requires_grad_(grad),
                                         None, _t(3, 5, grad=grad), 1e-8, False, grad, False)),
        (ops.nb_mixture_log_likelihood, (_counts(3, 5).requires_grad_(grad), _x(3, 5).add_(0.1).requires_grad_(grad),
                                         _x(1, 5).add_(2.0).requires_grad_(grad), _x(5).add_(0.5).requires_grad_(grad),
                                         _x(3, 1).add_(20.0).requires_grad_(grad), _t(3, 5, grad=grad), 1e-8, True,
                                         grad, grad)),
    ]


@pytest.mark.parametrize("grad", [False, True])
@pytest.mark.parametrize("index", range(len(_sample_args(False))))
def test_opcheck(index, grad, device):
    op, args = _sample_args(grad)[index]
    args = tuple(on_device(device, a)[0] if isinstance(a, torch.Tensor) else a for a in args)
    torch.library.opcheck(op, args)


def test_every_op_is_covered_by_opcheck():
    covered = {op._qualified_op_name for op, _ in _sample_args(False)}
    defined = {n for n in torch._C._dispatch_get_all_op_names() if n.startswith("pyautoencoder_fast::")}
    assert len(defined) == 19 and defined <= covered, defined - covered


GRADCHECK_CASES = {
    "log_likelihood_gaussian": (lambda x, h: F.log_likelihood(x, h, "gaussian"), (_t(3, 4, grad=True), _t(1, 4, grad=True))),
    "log_likelihood_bernoulli": (lambda x, h: F.log_likelihood(x, h, "bernoulli"), (_x(3, 4).requires_grad_(), _t(3, 4, grad=True))),
    "log_likelihood_laplace": (lambda x, h: F.log_likelihood(x, h, "laplace"), (_t(3, 4, grad=True), _t(3, 4, grad=True))),
    "log_likelihood_bernoulli_probs": (
        lambda x, h: F.log_likelihood(x, h, "bernoulli_probs"),
        (_x(3, 4).requires_grad_(), (_x(3, 4) * 0.8 + 0.1).requires_grad_()),
    ),
    "log_likelihood_sum": (lambda x, h: F.log_likelihood_sum(x, h, "bernoulli"), (_x(3, 5).requires_grad_(), _t(3, 2, 5, grad=True))),
    "log_likelihood_sum_laplace": (lambda x, h: F.log_likelihood_sum(x, h, "laplace"), (_t(3, 5, grad=True), _t(3, 2, 5, grad=True))),
    "kl_standard": (lambda m, l: F.kl_diag_gaussian(m, l), (_t(3, 4, grad=True), _t(3, 4, grad=True))),
    "kl_general": (
        lambda a, b, c, d: F.kl_diag_gaussian(a, b, c, d, reduce_sum=False, clamp_min=-1.5, clamp_max=1.5),
        (_t(3, 4, grad=True), _t(3, 4, grad=True), _t(4, grad=True), _t(3, 4, grad=True)),
    ),
    "reparameterize": (lambda m, l: ops.reparameterize(m, l, 3, torch.tensor(5)), (_t(3, 4, grad=True), _t(3, 4, grad=True))),
    "elbo": (
        lambda x, h, m, l: F.elbo_stats(x, h, m, l, 2.0, "bernoulli"),
        (_x(3, 5).requires_grad_(), _t(3, 2, 5, grad=True), _t(3, 4, grad=True), _t(3, 4, grad=True)),
    ),
    "elbo_gaussian_no_sample_axis": (
        lambda x, h, m, l: F.elbo_stats(x, h, m, l, 0.5, "gaussian"),
        (_t(3, 5, grad=True), _t(3, 5, grad=True), _t(3, 4, grad=True), _t(3, 4, grad=True)),
    ),
    "adagvae_posterior": (F.adagvae_posterior, tuple(_t(3, 5, grad=True) for _ in range(4))),
    "log_likelihood_x_log_var": (
        lambda x, h, v: F.log_likelihood(x, h, "gaussian", v),
        (_t(3, 4, grad=True), _t(1, 4, grad=True), _t(4, grad=True)),
    ),
    "log_likelihood_sum_x_log_var": (
        lambda x, h, v: F.log_likelihood_sum(x, h, "gaussian", v),
        (_t(3, 5, grad=True), _t(3, 2, 5, grad=True), _t(3, 1, 5, grad=True)),
    ),
    "iwae_bound": (
        lambda x, h, z, m, l: F.iwae_bound(x, h, z, m, l, "bernoulli"),
        (_x(3, 5).requires_grad_(), _t(3, 4, 5, grad=True), _t(3, 4, 2, grad=True), _t(3, 2, grad=True), _t(3, 2, grad=True)),
    ),
    "iwae_bound_x_log_var": (
        lambda x, h, z, m, l, v: F.iwae_bound(x, h, z, m, l, "gaussian", v),
        (_t(3, 5, grad=True), _t(3, 4, 5, grad=True), _t(3, 4, 2, grad=True), _t(3, 2, grad=True), _t(3, 2, grad=True),
         _t(3, 1, 5, grad=True)),
    ),
    "elbo_x_log_var": (
        lambda x, h, m, l, v: F.elbo_stats(x, h, m, l, 2.0, "gaussian", v),
        (_t(3, 5, grad=True), _t(3, 2, 5, grad=True), _t(3, 4, grad=True), _t(3, 4, grad=True), _t((), grad=True)),
    ),
}


@pytest.mark.parametrize("name", sorted(GRADCHECK_CASES))
def test_gradcheck(name):
    fn, inputs = GRADCHECK_CASES[name]
    if "laplace" in name:  # keep |x_hat - x| away from the kink at 0
        x, x_hat = inputs
        x_b = x.data.unsqueeze(1) if x_hat.dim() > x.dim() else x.data
        x_hat.data += torch.sign(x_hat.data - x_b) * 0.1
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


def _vae_loss(x, x_hat, mu, log_var):
    stats = F.elbo_stats(x, x_hat, mu, log_var, 4.0, "bernoulli")
    kl = F.kl_diag_gaussian(mu, log_var).mean()
    return stats[0] + 0.0 * kl, stats


@pytest.mark.parametrize("dynamic", [False, True])
def test_torch_compile_fullgraph_vae_loss(dynamic):
    torch._dynamo.reset()
    compiled = torch.compile(_vae_loss, fullgraph=True, dynamic=dynamic)
    for batch in (4, 6):
        x = torch.rand(batch, 20)
        x_hat = torch.randn(batch, 3, 20, requires_grad=True)
        mu = torch.randn(batch, 5, requires_grad=True)
        lv = torch.randn(batch, 5, requires_grad=True)
        loss, stats = compiled(x, x_hat, mu, lv)
        loss_e, stats_e = _vae_loss(x, x_hat, mu, lv)
        torch.testing.assert_close(stats, stats_e)
        grads = torch.autograd.grad(loss * 1.5, (x_hat, mu, lv))
        grads_e = torch.autograd.grad(loss_e * 1.5, (x_hat, mu, lv))
        for g, ge in zip(grads, grads_e):
            torch.testing.assert_close(g, ge)


@pytest.mark.parametrize("dynamic", [False, True])
def test_torch_compile_fullgraph_learned_variance(dynamic):
    # The Gaussian with a per-feature learned log-variance: the elbo op's
    # fifth output and the log_likelihood_sum op, forward and backward.
    torch._dynamo.reset()

    def loss(x, x_hat, mu, log_var, x_log_var):
        stats = F.elbo_stats(x, x_hat, mu, log_var, 2.0, "gaussian", x_log_var)
        return stats[0] - 0.1 * F.log_likelihood_sum(x, x_hat, "gaussian", x_log_var).mean()

    compiled = torch.compile(loss, fullgraph=True, dynamic=dynamic)
    for batch in (4, 6):
        inputs = (torch.randn(batch, 20), torch.randn(batch, 3, 20, requires_grad=True),
                  torch.randn(batch, 5, requires_grad=True), torch.randn(batch, 5, requires_grad=True),
                  torch.randn(20, requires_grad=True))
        out, out_e = compiled(*inputs), loss(*inputs)
        torch.testing.assert_close(out, out_e)
        grads = torch.autograd.grad(out * 1.5, inputs[1:])
        grads_e = torch.autograd.grad(out_e * 1.5, inputs[1:])
        for g, ge in zip(grads, grads_e):
            torch.testing.assert_close(g, ge)


@pytest.mark.parametrize("dynamic", [False, True])
def test_torch_compile_fullgraph_iwae(dynamic):
    # Sampling, decoding and the importance-weighted bound in one graph.
    torch._dynamo.reset()
    decoder = torch.nn.Linear(5, 12)

    def loss(x, mu, log_var, seed):
        z = ops.reparameterize(mu, log_var, 3, seed)
        return -F.iwae_bound(x, decoder(z), z, mu, log_var, "bernoulli").mean()

    compiled = torch.compile(loss, fullgraph=True, dynamic=dynamic)
    for batch in (4, 6):
        x = torch.rand(batch, 12)
        mu, lv = torch.randn(batch, 5, requires_grad=True), torch.randn(batch, 5, requires_grad=True)
        seed = torch.tensor(7)
        out, out_e = compiled(x, mu, lv, seed), loss(x, mu, lv, seed)
        torch.testing.assert_close(out, out_e)
        params = (mu, lv, decoder.weight)
        for g, ge in zip(torch.autograd.grad(out, params), torch.autograd.grad(out_e, params)):
            torch.testing.assert_close(g, ge)


def test_torch_compile_fullgraph_sampling_and_decoder():
    torch._dynamo.reset()
    decoder = torch.nn.Linear(5, 12)

    def step(x, mu, log_var, seed):
        z = ops.reparameterize(mu, log_var, 2, seed)
        x_hat = decoder(z)
        return F.elbo_stats(x, x_hat, mu, log_var, 1.0, "gaussian")[0]

    compiled = torch.compile(step, fullgraph=True)
    x, mu, lv = torch.randn(4, 12), torch.randn(4, 5, requires_grad=True), torch.randn(4, 5, requires_grad=True)
    seed = torch.tensor(11)
    out, out_e = compiled(x, mu, lv, seed), step(x, mu, lv, seed)
    torch.testing.assert_close(out, out_e)
    torch.testing.assert_close(torch.autograd.grad(out, mu), torch.autograd.grad(out_e, mu))


def test_compiled_graph_calls_the_custom_ops():
    torch._dynamo.reset()
    seen = []

    def backend(gm, example_inputs):
        seen.extend(str(n.target) for n in gm.graph.nodes if n.op == "call_function")
        return gm

    fn = torch.compile(lambda x, h, m, l: F.elbo_stats(x, h, m, l), backend=backend, fullgraph=True)
    fn(torch.randn(2, 3), torch.randn(2, 3), torch.randn(2, 4), torch.randn(2, 4))
    assert any("pyautoencoder_fast.elbo" in s for s in seen), seen


# ------------------------------------------------- the likelihood names agree
# The Python list of names (pyautoencoder_fast/_likelihoods.py) and the
# kernels' parser (csrc/common/likelihood.h) are written apart: every name
# the Python side accepts must be one the ops take, with the same rule for
# x_log_var, and the ops take the canonical spelling only.
def test_every_elementwise_likelihood_name_is_accepted_by_the_ops():
    x, x_hat, x_log_var = _x(2, 3), _x(2, 3), _t(3)
    for name in _likelihoods.LIKELIHOODS:
        assert ops.log_likelihood(x, x_hat, name).shape == (2, 3), name
        assert ops.log_likelihood_sum(x, x_hat.unsqueeze(1), name).shape == (2, 1), name
        if name in _likelihoods.LOG_VARIANCE_LIKELIHOODS:
            assert ops.log_likelihood(x, x_hat, name, x_log_var).shape == (2, 3), name
        else:
            with pytest.raises(ValueError, match="x_log_var: only likelihood 'gaussian' takes a log-variance"):
                ops.log_likelihood(x, x_hat, name, x_log_var)
    for name in ("GAUSSIAN", "poisson", "nb", ""):
        with pytest.raises(ValueError, match="likelihood: expected"):
            ops.log_likelihood(x, x_hat, name)


def test_every_count_likelihood_name_is_accepted_by_the_ops():
    x, mu, theta, zi = _counts(2, 3), _x(2, 3) + 0.5, _x(3) + 0.5, _t(2, 3)
    for name in _likelihoods.COUNT_LIKELIHOODS:
        out = ops.count_log_likelihood(
            x, mu, None if name == "poisson" else theta, zi if name == "zinb" else None, name, 1e-8, False, False, False
        )[0]
        assert out.shape == (2, 3) and bool(out.isfinite().all()), name
    for name in ("NB", "gaussian", ""):
        with pytest.raises(ValueError, match="likelihood: expected"):
            ops.count_log_likelihood(x, mu, theta, None, name, 1e-8, False, False, False)
