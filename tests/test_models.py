"""Models (AE, VAE, AdaGVAE) on the fused ops: semantics, backend equivalence, API."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import pyautoencoder_fast as paf
from pyautoencoder_fast import base, vanilla, variational
from pyautoencoder_fast.loss import LikelihoodType, LossResult

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "train_vae_digits.py"

LIKELIHOODS = ["gaussian", "bernoulli", "laplace"]
RTOL, ATOL = 1e-5, 1e-6  # float32

needs_extension = pytest.mark.skipif(
    not paf.extension_available(), reason=f"compiled extension unavailable: {paf.extension_load_error()}"
)

# Features per example: inputs are [B, 3, 4] to exercise the reshape paths.
SHAPE = (3, 4)
FEATURES = 12
LATENT = 3
HIDDEN = 16


# ------------------------------------------------------------------ helpers
def make_encoder() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(FEATURES, HIDDEN), nn.Tanh())


def make_decoder() -> nn.Module:
    return nn.Sequential(nn.Linear(LATENT, HIDDEN), nn.Tanh(), nn.Linear(HIDDEN, FEATURES), nn.Unflatten(1, SHAPE))


# Models and data are made on the CPU and then moved, so that every device
# computes on the same weights and inputs.
def make_data(batch: int = 6, seed: int = 1, device="cpu") -> torch.Tensor:
    # In [0, 1] so that every likelihood (Bernoulli included) is valid.
    return torch.rand(batch, *SHAPE, generator=torch.Generator().manual_seed(seed)).to(device)


def make_vae(seed: int = 0, build: bool = True, device="cpu") -> variational.VAE:
    torch.manual_seed(seed)
    vae = paf.VAE(make_encoder(), make_decoder(), LATENT)
    if build:
        vae.build(make_data()).to(device)
    return vae


def make_ae(seed: int = 0, device="cpu") -> vanilla.AE:
    torch.manual_seed(seed)
    return paf.AE(nn.Sequential(make_encoder(), nn.Linear(HIDDEN, LATENT)), make_decoder()).to(device)


def make_ada(seed: int = 0, device="cpu") -> variational.AdaGVAE:
    return paf.AdaGVAE(make_vae(seed, device=device))


def make_pair(batch: int = 6, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    x1 = make_data(batch, seed=1)
    x2 = x1.clone()
    x2[:, 0] = make_data(batch, seed=2)[:, 0]  # share part of the image
    return x1.to(device), x2.to(device)


def step(model: nn.Module, kind: str, x, backend: str, *, S: int, likelihood: str, beta: float, train: bool):
    """One forward + loss + backward on ``backend`` from a fixed seed."""
    model.train(train)
    model.zero_grad(set_to_none=True)
    with paf.use_backend(backend):
        torch.manual_seed(1234)
        if kind == "ae":
            out = model(x)
            result = model.compute_loss(x, out, likelihood=likelihood)
        else:
            out = model(x, S=S)
            result = model.compute_loss(x, out, beta=beta, likelihood=likelihood)
        result.objective.backward()
    grads = {name: p.grad.detach().clone() for name, p in model.named_parameters()}
    return out, result, grads


def assert_outputs_close(a, b) -> None:
    for field in dataclasses.fields(a):
        va, vb = getattr(a, field.name), getattr(b, field.name)
        if dataclasses.is_dataclass(va):  # AdaGVAEOutput holds two VAEOutputs
            assert_outputs_close(va, vb)
        else:
            torch.testing.assert_close(va, vb, rtol=RTOL, atol=ATOL)


def assert_diagnostics_close(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert isinstance(a[key], float) and isinstance(b[key], float), key
        assert math.isclose(a[key], b[key], rel_tol=RTOL, abs_tol=ATOL), (key, a[key], b[key])


# ----------------------------------------------- backend equivalence (models)
MODEL_KINDS = ["ae", "vae", "ada"]


def _model(kind: str, device) -> nn.Module:
    return {"ae": make_ae, "vae": make_vae, "ada": make_ada}[kind](device=device)


def _input(kind: str, device):
    return make_pair(device=device) if kind == "ada" else make_data(device=device)


EQUIVALENCE_CASES = [
    pytest.param(kind, S, likelihood, train, id=f"{kind}-S{S}-{likelihood}-{'train' if train else 'eval'}")
    for kind in MODEL_KINDS
    for S in ([1] if kind == "ae" else [1, 3])  # the AE has no latent samples
    for likelihood in LIKELIHOODS
    for train in (True, False)
]


@needs_extension
@pytest.mark.parametrize("kind, S, likelihood, train", EQUIVALENCE_CASES)
def test_backends_agree(kind, S, likelihood, train, device):
    beta = 1.0 if S == 1 else 2.5
    model = _model(kind, device)
    twin = copy.deepcopy(model)
    x = _input(kind, device)
    out_e, res_e, grads_e = step(model, kind, x, "extension", S=S, likelihood=likelihood, beta=beta, train=train)
    out_r, res_r, grads_r = step(twin, kind, x, "reference", S=S, likelihood=likelihood, beta=beta, train=train)

    assert res_e.objective.dim() == 0 and res_e.objective.requires_grad
    torch.testing.assert_close(res_e.objective, res_r.objective, rtol=RTOL, atol=ATOL)
    assert_diagnostics_close(res_e.diagnostics, res_r.diagnostics)
    assert_outputs_close(out_e, out_r)
    assert grads_e.keys() == grads_r.keys()
    for name in grads_e:
        torch.testing.assert_close(grads_e[name], grads_r[name], rtol=RTOL, atol=ATOL, msg=lambda m: f"{name}: {m}")
    assert all(g.abs().sum() > 0 for n, g in grads_e.items() if "weight" in n), "some weights got no gradient"


# ------------------------------------------------------- semantics (oracles)
def _ll(x, x_hat, likelihood):
    """Independent elementwise log-likelihood for the oracle checks."""
    if likelihood == "gaussian":
        return -0.5 * (x - x_hat) ** 2
    if likelihood == "laplace":
        return -(x - x_hat).abs()
    return x * torch.nn.functional.logsigmoid(x_hat) + (1 - x) * torch.nn.functional.logsigmoid(-x_hat)


def _kl(mu, log_var):
    return 0.5 * (mu**2 + log_var.exp() - 1 - log_var).sum(-1)


@pytest.mark.parametrize("backend", ["extension", "reference"])
@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_ae_loss_matches_formula(backend, likelihood, device):
    if backend == "extension" and not paf.extension_available():
        pytest.skip("extension unavailable")
    model, x = make_ae(device=device), make_data(device=device)
    with paf.use_backend(backend):
        out = model(x)
        result = model.compute_loss(x, out, likelihood=likelihood)
    x_hat = out.x_hat.detach().double()
    expected = -_ll(x.double(), x_hat, likelihood).flatten(1).sum(1).mean()
    assert isinstance(result, LossResult)
    torch.testing.assert_close(result.objective.double(), expected, rtol=RTOL, atol=ATOL)
    assert result.diagnostics == {"log_likelihood": pytest.approx(-expected.item(), rel=RTOL)}
    assert out.x_hat.shape == x.shape and out.z.shape == (x.shape[0], LATENT)


@pytest.mark.parametrize("backend", ["extension", "reference"])
@pytest.mark.parametrize("likelihood", LIKELIHOODS)
@pytest.mark.parametrize("S", [1, 3])
def test_vae_loss_matches_formula(backend, likelihood, S, device):
    if backend == "extension" and not paf.extension_available():
        pytest.skip("extension unavailable")
    model, x, beta = make_vae(device=device), make_data(device=device), 0.7
    model.train()
    with paf.use_backend(backend):
        out = model(x, S=S)
        result = model.compute_loss(x, out, beta=beta, likelihood=likelihood)
    x_hat, mu, lv = (t.detach().double() for t in (out.x_hat, out.mu, out.log_var))
    ll = _ll(x.double().unsqueeze(1), x_hat, likelihood).flatten(2).sum(2).mean(1)  # [B]
    kl = _kl(mu, lv)
    elbo = (ll - beta * kl).mean()
    torch.testing.assert_close(result.objective.double(), -elbo, rtol=RTOL, atol=ATOL)
    d = result.diagnostics
    assert set(d) == {"elbo", "log_likelihood", "kl_divergence"}
    assert d["elbo"] == pytest.approx(elbo.item(), rel=RTOL)
    assert d["log_likelihood"] == pytest.approx(ll.mean().item(), rel=RTOL)
    assert d["kl_divergence"] == pytest.approx(kl.mean().item(), rel=RTOL)


def test_vae_loss_inserts_sample_axis(device):
    model, x = make_vae(device=device), make_data(device=device)
    model.eval()
    out = model(x, S=1)
    flat = variational.VAEOutput(x_hat=out.x_hat[:, 0], z=out.z, mu=out.mu, log_var=out.log_var)
    a = model.compute_loss(x, out, likelihood="bernoulli")
    b = model.compute_loss(x, flat, likelihood="bernoulli")
    torch.testing.assert_close(a.objective, b.objective)
    assert a.diagnostics == b.diagnostics


def test_vae_shapes_and_decode_reshape(device):
    model, x = make_vae(device=device), make_data(device=device)
    model.train()
    out = model(x, S=4)
    assert out.z.shape == (6, 4, LATENT)
    assert out.mu.shape == out.log_var.shape == (6, LATENT)
    assert out.x_hat.shape == (6, 4, *SHAPE)
    # x_hat[b, s] is decoder(z[b, s])
    torch.testing.assert_close(out.x_hat[2, 3], model.decoder(out.z[2, 3].unsqueeze(0))[0])
    # training samples differ across S; eval repeats the mean
    assert not torch.allclose(out.z[:, 0], out.z[:, 1])
    model.eval()
    out = model(x, S=3)
    for s in range(3):
        torch.testing.assert_close(out.z[:, s], out.mu)


def test_sampling_follows_reparameterization(device):
    layer = paf.FullyFactorizedGaussian(4)
    f = torch.randn(5, 7)
    layer(f)  # materialise
    layer.to(device).train()
    f = f.to(device)
    torch.manual_seed(3)
    z, mu, lv = layer(f, S=2)
    torch.manual_seed(3)
    expected = paf.functional.reparameterize(mu, lv, 2)
    torch.testing.assert_close(z, expected)
    assert isinstance(layer.mu, nn.Linear) and layer.mu.out_features == 4
    assert isinstance(layer.log_var, nn.Linear) and layer.log_var.out_features == 4
    mu2, lv2 = layer.get_params(f)
    torch.testing.assert_close(mu2, mu)
    torch.testing.assert_close(lv2, lv)
    # same seed -> same samples; mean/scale statistics of a large draw
    big_mu, big_lv = torch.full((1, 2), 1.5, device=device), torch.log(torch.tensor([[0.25, 4.0]], device=device))
    zz = layer._reparametrize(big_mu, big_lv, 20000)[0]
    torch.testing.assert_close(zz.mean(0), big_mu[0], atol=0.05, rtol=0)
    torch.testing.assert_close(zz.std(0), big_lv[0].mul(0.5).exp(), atol=0.05, rtol=0)


@needs_extension
def test_same_seed_same_samples_across_backends(device):
    model, x = make_vae(device=device), make_data(device=device)
    model.train()
    outs = []
    for backend in ("extension", "reference"):
        with paf.use_backend(backend), torch.no_grad():
            torch.manual_seed(7)
            outs.append(model(x, S=3))
    torch.testing.assert_close(outs[0].z, outs[1].z, rtol=RTOL, atol=ATOL)


def test_adagvae_loss_is_sum_of_vae_losses(device):
    ada, (x1, x2) = make_ada(device=device), make_pair(device=device)
    ada.train()
    torch.manual_seed(5)
    out = ada((x1, x2), S=2)
    result = ada.compute_loss((x1, x2), out, beta=2.0, likelihood="bernoulli")
    vae = ada.vae
    assert isinstance(out.output1, variational.VAEOutput) and isinstance(out.output2, variational.VAEOutput)
    r1 = vae.compute_loss(x1, out.output1, 2.0, "bernoulli")
    r2 = vae.compute_loss(x2, out.output2, 2.0, "bernoulli")
    torch.testing.assert_close(result.objective, r1.objective + r2.objective)
    d = result.diagnostics
    assert set(d) == {"elbo", "log_likelihood_x1", "log_likelihood_x2", "kl_divergence_x1", "kl_divergence_x2"}
    assert all(isinstance(v, float) for v in d.values())
    assert d["elbo"] == pytest.approx(r1.diagnostics["elbo"] + r2.diagnostics["elbo"], rel=1e-6)
    assert d["log_likelihood_x1"] == pytest.approx(r1.diagnostics["log_likelihood"], rel=1e-6)
    assert d["log_likelihood_x2"] == pytest.approx(r2.diagnostics["log_likelihood"], rel=1e-6)
    assert d["kl_divergence_x1"] == pytest.approx(r1.diagnostics["kl_divergence"], rel=1e-6)
    assert d["kl_divergence_x2"] == pytest.approx(r2.diagnostics["kl_divergence"], rel=1e-6)
    assert out.output1.x_hat.shape == (6, 2, *SHAPE) and out.output2.z.shape == (6, 2, LATENT)


# ------------------------------------------------------ Ada-GVAE threshold rule
def _identity_ada(dim: int, device) -> variational.AdaGVAE:
    """An AdaGVAE whose posterior for input [mu, log_var] is exactly (mu, log_var)."""
    vae = paf.VAE(nn.Identity(), nn.Linear(dim, 2), dim)
    vae.build(torch.zeros(1, 2 * dim))
    eye, zero = torch.eye(dim), torch.zeros(dim, dim)
    with torch.no_grad():
        vae.sampling_layer.mu.weight.copy_(torch.cat([eye, zero], 1))
        vae.sampling_layer.log_var.weight.copy_(torch.cat([zero, eye], 1))
        vae.sampling_layer.mu.bias.zero_()
        vae.sampling_layer.log_var.bias.zero_()
    return paf.AdaGVAE(vae).to(device)


@pytest.mark.parametrize("backend", ["extension", "reference"])
def test_adagvae_threshold_rule(backend, device):
    if backend == "extension" and not paf.extension_available():
        pytest.skip("extension unavailable")
    log3 = math.log(3.0)
    mu1 = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.0, 1.0, 2.0, 3.0], [0.5, 0.5, 0.5, 0.5]], device=device)
    mu2 = torch.tensor([[0.0, 0.1, 3.0, 5.0], [1.0, 2.0, 3.0, 4.0], [0.5, 0.5, 0.5, 0.5]], device=device)
    lv1 = torch.zeros(3, 4, device=device)
    lv2 = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [log3, 0.0, 0.0, 2.0]], device=device)
    # Row 0: KL = 0.5 * dmu^2 = [0, .005, 4.5, 12.5], tau = 6.25 -> dims 0-2 shared.
    # Row 1: KL is 0.5 in every dim (constant) -> nothing averaged.
    # Row 2: KL = [0.216, 0, 0, 0.568], tau = 0.284 -> dims 0-2 shared.
    shared = torch.tensor([[True, True, True, False], [False] * 4, [True, True, True, False]], device=device)
    ada = _identity_ada(4, device).eval()
    with paf.use_backend(backend), torch.no_grad():
        out = ada((torch.cat([mu1, lv1], 1), torch.cat([mu2, lv2], 1)))
    mu_avg = 0.5 * (mu1 + mu2)
    lv_avg = torch.log(0.5 * (lv1.exp() + lv2.exp()))
    o1, o2 = out.output1, out.output2
    torch.testing.assert_close(o1.mu, torch.where(shared, mu_avg, mu1))
    torch.testing.assert_close(o2.mu, torch.where(shared, mu_avg, mu2))
    torch.testing.assert_close(o1.log_var, torch.where(shared, lv_avg, lv1))
    torch.testing.assert_close(o2.log_var, torch.where(shared, lv_avg, lv2))
    torch.testing.assert_close(o1.log_var[2, 0].cpu(), torch.tensor(math.log(2.0)))  # variance-space average
    # Eval mode too (the seed): z is sampled from the adapted posteriors.
    for o in (o1, o2):
        assert o.z.shape == (3, 1, 4) and not torch.equal(o.z[:, 0], o.mu)


# ------------------------------------------------------- build / state dict
def test_build_materialises_and_returns_self():
    vae = make_vae(build=False)
    assert not vae.built
    assert any(isinstance(p, nn.parameter.UninitializedParameter) for p in vae.parameters())
    twin = copy.deepcopy(vae)
    vae.train()
    torch.manual_seed(11)
    assert vae.build(make_data()) is vae
    after = torch.rand(3)
    # build draws only the lazy layers' initialisation, no sampling noise:
    # same generator use as an eval-mode forward pass.
    torch.manual_seed(11)
    with torch.no_grad():
        twin.eval()(make_data())
    assert torch.equal(after, torch.rand(3)), "build() drew sampling noise"
    torch.testing.assert_close(twin.sampling_layer.mu.weight, vae.sampling_layer.mu.weight)
    assert vae.built and vae.training
    assert vae.sampling_layer.mu.weight.shape == (LATENT, HIDDEN)
    assert not vae.sampling_layer.mu.weight.is_inference()
    ada = paf.AdaGVAE(make_vae(build=False))
    assert ada.build(make_pair()) is ada and ada.built


def test_state_dict_round_trip():
    src, x = make_vae(seed=0), make_data()
    dst = make_vae(seed=99)
    assert not torch.equal(src.sampling_layer.mu.weight, dst.sampling_layer.mu.weight)
    dst.load_state_dict(src.state_dict())
    src.eval(), dst.eval()
    a, b = src(x, S=2), dst(x, S=2)
    assert_outputs_close(a, b)
    for (n1, p1), (n2, p2) in zip(src.state_dict().items(), dst.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2)
    ada_src, ada_dst = make_ada(0), make_ada(5)
    ada_dst.load_state_dict(ada_src.state_dict())
    for p1, p2 in zip(ada_src.parameters(), ada_dst.parameters()):
        assert torch.equal(p1, p2)
    ae_src, ae_dst = make_ae(0), make_ae(5)
    ae_dst.load_state_dict(ae_src.state_dict())
    torch.testing.assert_close(ae_dst(x).x_hat, ae_src(x).x_hat)


def test_load_state_dict_refused_before_build():
    state = make_vae().state_dict()
    with pytest.raises(RuntimeError, match="build"):
        make_vae(build=False).load_state_dict(state)
    with pytest.raises(RuntimeError, match="build"):
        paf.AdaGVAE(make_vae(build=False)).load_state_dict(paf.AdaGVAE(make_vae()).state_dict())


def test_encode_decode_inference_mode(device):
    vae, x = make_vae(device=device), make_data(device=device)
    vae.train()
    enc = vae.encode(x, S=2)
    assert isinstance(enc, variational.VAEEncodeOutput)
    assert enc.z.shape == (6, 2, LATENT) and enc.z.is_inference() and not enc.z.requires_grad
    dec = vae.decode(enc.z)
    assert isinstance(dec, variational.VAEDecodeOutput)
    assert dec.x_hat.shape == (6, 2, *SHAPE) and dec.x_hat.is_inference()
    assert vae.decode(torch.randn(5, LATENT, device=device)).x_hat.shape == (5, *SHAPE)  # 2-D z: prior samples
    ae = make_ae(device=device)
    z = ae.encode(x)
    assert isinstance(z, vanilla.AEEncodeOutput) and z.z.is_inference()
    assert isinstance(ae.decode(z.z), vanilla.AEDecodeOutput)
    with pytest.raises(RuntimeError, match="build"):
        make_vae(build=False).encode(x)


# ------------------------------------------------------------- validation
def test_invalid_sample_count():
    vae, x = make_vae(), make_data()
    for S in (0, -2):
        with pytest.raises(ValueError, match="S"):
            vae(x, S=S)
        with pytest.raises(ValueError, match="S"):
            vae.sampling_layer(torch.randn(2, HIDDEN), S)
        with pytest.raises(ValueError, match="S"):
            make_ada()(make_pair(), S=S)
    vae.eval()
    with pytest.raises(ValueError, match="S"):
        vae(x, S=0)
    with pytest.raises(TypeError, match="S"):
        vae(x, S=1.5)


def test_unknown_likelihood():
    x = make_data()
    ae, vae, ada = make_ae(), make_vae(), make_ada()
    with pytest.raises(ValueError, match="likelihood"):
        ae.compute_loss(x, ae(x), likelihood="poisson")
    with pytest.raises(ValueError, match="likelihood"):
        vae.compute_loss(x, vae(x), likelihood="poisson")
    with pytest.raises(ValueError, match="likelihood"):
        ada.compute_loss(make_pair(), ada(make_pair()), likelihood="poisson")
    # case-insensitive names and the enum are accepted
    a = vae.eval().compute_loss(x, vae(x), likelihood="BERNOULLI")
    b = vae.compute_loss(x, vae(x), likelihood=LikelihoodType.BERNOULLI)
    assert a.diagnostics == b.diagnostics


def test_vae_loss_shape_errors_name_the_x_hat_passed():
    # A [B, ...] x_hat gets a sample axis before it is matched against x;
    # the error names the shape the caller passed, not [B, 1, ...].
    vae, ada, x = make_vae(), make_ada(), make_data()  # x [6, 3, 4]
    out = vae(x)
    for x_hat in (torch.zeros(18, *SHAPE), torch.zeros(6, 4, 3), torch.zeros(18, 2, *SHAPE)):
        wrong = variational.VAEOutput(x_hat=x_hat, z=out.z, mu=out.mu, log_var=out.log_var)
        message = rf"x_hat: shape {re.escape(str(tuple(x_hat.shape)))} does not match x \(6, 3, 4\)"
        with pytest.raises(ValueError, match=message):
            vae.compute_loss(x, wrong)
        with pytest.raises(ValueError, match=message):
            ada.compute_loss((x, x), variational.AdaGVAEOutput(output1=wrong, output2=out))


def test_compute_loss_docstrings_document_every_argument():
    for method in (vanilla.AE.compute_loss, variational.VAE.compute_loss, variational.AdaGVAE.compute_loss):
        doc = inspect.getdoc(method)
        assert "Args:" in doc and "Returns:" in doc, method.__qualname__
        args = doc.split("Args:")[1].split("Returns:")[0]
        for name in inspect.signature(method).parameters:
            if name not in ("self", "output"):  # output= is the alias, named in its parameter's entry
                assert f"\n{name}:" in "\n" + "\n".join(line.strip() for line in args.splitlines()), (method.__qualname__, name)
    vae_doc = " ".join(inspect.getdoc(variational.VAE.compute_loss).split())
    for name in ("gaussian", "bernoulli", "laplace", "bernoulli_probs", "LikelihoodType", "output="):
        assert name in vae_doc, name


def test_adagvae_argument_checks():
    ada, (x1, x2) = make_ada(), make_pair()
    with pytest.raises(ValueError, match="pair"):  # unpacks to 6 rows, as pyautoencoder's x1, x2 = x
        ada(x1)
    with pytest.raises(TypeError, match="pair"):
        ada(3)
    with pytest.raises(ValueError, match="pair"):
        ada((x1, x2, x1))
    with pytest.raises(ValueError, match="pair"):  # an iterator of another length (no len())
        ada(t for t in (x1, x2, x1))
    with pytest.raises(ValueError, match="batch"):
        ada((x1, x2[:3]))
    with pytest.raises(ValueError, match="pair"):
        ada.compute_loss(x1, ada((x1, x2)))
    assert ada(torch.stack([x1, x2])).output1.mu.shape == (6, LATENT)  # a stacked pair unpacks too
    with pytest.raises(TypeError, match="VAE"):
        paf.AdaGVAE(make_ae())


def test_constructor_checks():
    with pytest.raises(ValueError, match="latent_dim"):
        paf.FullyFactorizedGaussian(0)
    with pytest.raises(TypeError, match="encoder"):
        paf.VAE(lambda x: x, make_decoder(), LATENT)
    with pytest.raises(TypeError, match="decoder"):
        paf.AE(make_encoder(), "decoder")
    with pytest.raises(TypeError):
        base.BaseAutoencoder()  # abstract


# ------------------------------------------------------------------ repr
def test_output_repr():
    out = vanilla.AEOutput(x_hat=torch.zeros(2, 3), z=torch.zeros(2, 1, dtype=torch.float64))
    assert repr(out) == (
        "AEOutput(x_hat=Tensor(shape=(2, 3), dtype=torch.float32), "
        "z=Tensor(shape=(2, 1), dtype=torch.float64))"
    )
    vae_out = make_vae()(make_data(), S=2)
    text = repr(vae_out)
    assert text.startswith("VAEOutput(x_hat=Tensor(shape=(6, 2, 3, 4), dtype=torch.float32), z=Tensor(shape=(6, 2, 3)")
    assert "tensor(" not in text
    assert "AdaGVAEOutput(output1=VAEOutput(x_hat=Tensor(shape=(6, 1, 3, 4)" in repr(make_ada()(make_pair()))

    @dataclasses.dataclass(slots=True, repr=False)
    class Custom(base.ModelOutput):
        a: torch.Tensor
        n: int

    assert repr(Custom(torch.ones(4), 3)) == "Custom(a=Tensor(shape=(4,), dtype=torch.float32), n=3)"


def test_exports():
    for name in ("AE", "AEOutput", "AEEncodeOutput", "AEDecodeOutput"):
        assert getattr(paf, name) is getattr(vanilla, name)
        assert name in paf.__all__
    for name in ("VAE", "AdaGVAE", "FullyFactorizedGaussian", "VAEOutput", "VAEEncodeOutput", "VAEDecodeOutput", "AdaGVAEOutput"):
        assert getattr(paf, name) is getattr(variational, name)
        assert name in paf.__all__
    for name in ("BaseAutoencoder", "ModelOutput"):
        assert getattr(paf, name) is getattr(base, name)
        assert name in paf.__all__
    assert isinstance(make_vae().sampling_layer, variational.FullyFactorizedGaussian)


# ---------------------------------------------------- extension really used
def _ops_run(fn) -> set[str]:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return {e.key for e in prof.key_averages() if e.key.startswith("pyautoencoder_fast::")}


@needs_extension
def test_models_run_on_extension_ops(device):
    if os.environ.get("PYAUTOENCODER_FAST_BACKEND", "auto") in ("", "auto", "extension"):
        assert paf.active_backend() == "extension"
    x = make_data(device=device)

    def train_step(model, inputs, kind):
        model.train()
        out = model(inputs) if kind == "ae" else model(inputs, S=2)
        model.compute_loss(inputs, out, likelihood="bernoulli").objective.backward()

    cases = [
        ("vae", make_vae(device=device), x, {"pyautoencoder_fast::reparameterize", "pyautoencoder_fast::elbo"}),
        ("ae", make_ae(device=device), x, {"pyautoencoder_fast::log_likelihood_sum"}),
        ("ada", make_ada(device=device), make_pair(device=device), {"pyautoencoder_fast::adagvae_posterior", "pyautoencoder_fast::elbo"}),
    ]
    for kind, model, inputs, expected in cases:
        with paf.use_backend("extension"):
            seen = _ops_run(lambda: train_step(model, inputs, kind))
        assert expected <= seen, (kind, seen)
        with paf.use_backend("reference"):
            seen = _ops_run(lambda: train_step(model, inputs, kind))
        assert not seen, (kind, seen)


# ------------------------------------- no eager arithmetic on x_hat-sized data
class _OpLog:
    """A TorchDispatchMode recording (op, largest tensor touched) for every call."""

    def __init__(self):
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils._pytree import tree_flatten

        calls = self.calls = []

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                leaves = tree_flatten((args, kwargs, out))[0]
                calls.append((func, max((t.numel() for t in leaves if isinstance(t, torch.Tensor)), default=0)))
                return out

        self.mode = Mode()

    def __enter__(self):
        self.mode.__enter__()
        return self

    def __exit__(self, *exc):
        self.mode.__exit__(*exc)


# Ops that move no data element by element: views and metadata, and the
# matmuls of the user's own Linear layers (the encoder reading x, the decoder
# writing x_hat and its weight gradient reading the x_hat gradient).
_METADATA_OR_USER_MATMUL = {
    "view", "_unsafe_view", "reshape", "t", "transpose", "permute", "expand", "unsqueeze", "squeeze",
    "select", "slice", "split", "split_with_sizes", "unflatten", "as_strided", "alias", "detach", "mm", "addmm",
}


@needs_extension
@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_models_do_no_eager_arithmetic_on_x_hat(likelihood, device):
    """VAE.forward (training), the three compute_loss methods with backward and
    AdaGVAE.forward run the extension's ops, and no op outside them does
    per-element work on a tensor as large as x_hat."""
    B, S, D, hidden, image = 4, 2, 3, 2, (4, 16)  # hidden * features < B * features: weight grads stay smaller than x
    features = image[0] * image[1]

    def encoder(out=None):
        layers = [nn.Flatten(), nn.Linear(features, hidden), nn.Tanh()]
        return nn.Sequential(*layers, *([nn.Linear(hidden, out)] if out else []))

    def decoder():  # no bias: its gradient would be a (user-side) sum over x_hat
        return nn.Sequential(nn.Linear(D, features, bias=False), nn.Unflatten(1, image))

    x = torch.rand(B, *image)
    vae = paf.VAE(encoder(), decoder(), D).build(x).to(device).train()
    ae = paf.AE(encoder(D), decoder()).to(device)
    ada = paf.AdaGVAE(paf.VAE(encoder(), decoder(), D).build(x)).to(device).train()
    x = x.to(device)
    x_pair = (x, torch.rand(B, *image, device=device))
    vae_out, ada_out = vae(x, S=S), ada(x_pair, S=S)

    steps = {
        # (sampling with grad keeps its small noise for backward: reparameterize_with_noise)
        "VAE.forward": (lambda: vae(x, S=S), {"reparameterize_with_noise"}),
        "VAE.compute_loss": (lambda: vae.compute_loss(x, vae_out, likelihood=likelihood).objective.backward(), {"elbo"}),
        "AE.compute_loss": (lambda: ae.compute_loss(x, ae(x), likelihood=likelihood).objective.backward(), {"log_likelihood_sum"}),
        "AdaGVAE.forward": (lambda: ada(x_pair, S=S), {"adagvae_posterior", "reparameterize_with_noise"}),
        "AdaGVAE.compute_loss": (
            lambda: ada.compute_loss(x_pair, ada_out, likelihood=likelihood).objective.backward(),
            {"elbo"},
        ),
    }
    x_hat_numel = B * S * features
    for name, (step, expected) in steps.items():
        with paf.use_backend("extension"), _OpLog() as log:
            step()
        ours = {f._opname for f, _ in log.calls if f.namespace == "pyautoencoder_fast"}
        assert expected <= ours, (name, ours)
        eager = sorted(
            {
                str(f)
                for f, numel in log.calls
                if f.namespace != "pyautoencoder_fast" and numel >= min(x_hat_numel, x.numel())
                and f._opname not in _METADATA_OR_USER_MATMUL
            }
        )
        assert not eager, f"{name}: eager ops on x_hat-sized tensors: {eager}"
    # The check can fail: the reference backend does exactly that arithmetic.
    with paf.use_backend("reference"), _OpLog() as log:
        vae.compute_loss(x, vae(x, S=S), likelihood=likelihood).objective.backward()
    assert any(f._opname not in _METADATA_OR_USER_MATMUL and n >= x_hat_numel for f, n in log.calls)


# ------------------------------------------------------------- training
def _train(backend: str, model: nn.Module, data: torch.Tensor, steps: int, kind: str) -> list[float]:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    model.train()
    torch.manual_seed(2024)
    with paf.use_backend(backend):
        for _ in range(steps):
            batch = data[torch.randint(0, data.shape[0], (32,))]
            if kind == "vae":
                result = model.compute_loss(batch, model(batch, S=2), beta=1.0, likelihood="gaussian")
            else:
                result = model.compute_loss(batch, model(batch), likelihood="gaussian")
            optimizer.zero_grad(set_to_none=True)
            result.objective.backward()
            optimizer.step()
            losses.append(result.objective.item())
    return losses


@pytest.fixture
def one_thread():
    # Tiny matmuls run faster on one thread, and far faster on a busy machine.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@needs_extension
@pytest.mark.parametrize("kind", ["vae", "ae"])
def test_short_training_backends_agree(kind, one_thread, device):
    g = torch.Generator().manual_seed(0)
    factors = torch.randn(256, 2, generator=g)
    data = (factors @ torch.randn(2, FEATURES, generator=g) + 0.1 * torch.randn(256, FEATURES, generator=g)).reshape(
        256, *SHAPE
    ).to(device)
    model = make_vae(device=device) if kind == "vae" else make_ae(device=device)
    twin = copy.deepcopy(model)
    steps = 200
    ext = _train("extension", model, data, steps, kind)
    ref = _train("reference", twin, data, steps, kind)
    first, last = sum(ext[:10]) / 10, sum(ext[-10:]) / 10
    assert last < 0.8 * first, f"did not learn: {first:.3f} -> {last:.3f}"
    assert ext[-1] == pytest.approx(ref[-1], rel=1e-3)
    assert last == pytest.approx(sum(ref[-10:]) / 10, rel=1e-3)
    for p1, p2 in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(p1, p2, rtol=1e-3, atol=1e-4)


# -------------------------------------------------------------- example
def test_example_script_runs(tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    out = tmp_path / "digits.png"
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE), "--epochs", "1", "--no-progress", "--threads", "1", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ELBO" in proc.stdout
    for backend in (["extension"] if paf.extension_available() else []) + ["reference"]:
        assert backend in proc.stdout
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------ the importance-weighted bound
@pytest.mark.parametrize("backend", ["extension", "reference"])
@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_vae_iwae_loss(backend, likelihood, device):
    if backend == "extension" and not paf.extension_available():
        pytest.skip("compiled extension unavailable")
    vae = make_vae(device=device).train()
    x = make_data(device=device)
    with paf.use_backend(backend):
        out = vae(x, S=5)
        result = vae.compute_loss(x, out, likelihood=likelihood, estimator="iwae")
        elbo = vae.compute_loss(x, out, likelihood=likelihood)
    bound = paf.functional.iwae_bound(x, out.x_hat, out.z, out.mu, out.log_var, likelihood)
    torch.testing.assert_close(result.objective, -bound.mean())
    assert set(result.diagnostics) == {"iwae_bound", "num_samples"} and result.diagnostics["num_samples"] == 5.0
    assert set(elbo.diagnostics) == {"elbo", "log_likelihood", "kl_divergence"}  # the default: the ELBO
    result.objective.backward()
    assert all(p.grad is not None for p in vae.parameters())
    with pytest.raises(ValueError, match="estimator: expected 'elbo' or 'iwae', got 'iw'"):
        vae.compute_loss(x, out, estimator="iw")
    with pytest.raises(ValueError, match="beta: estimator='iwae' has no KL term"):
        vae.compute_loss(x, out, beta=4.0, estimator="iwae")


def test_vae_iwae_loss_refuses_the_posterior_mean(device):
    # In eval mode the forward gives z = mu (no samples): the bound of those
    # is not an importance-weighted bound, so it raises instead of returning
    # a number; sample=True in eval mode gives samples, which it takes.
    vae = make_vae(device=device).eval()
    x = make_data(device=device)
    with pytest.raises(ValueError, match="estimator='iwae': vae_output.z is the posterior mean"):
        vae.compute_loss(x, vae(x, S=4), estimator="iwae")
    with pytest.raises(ValueError, match="posterior mean"):
        vae.compute_loss(x, vae(x, S=1), estimator="iwae")
    sampled = vae.compute_loss(x, vae(x, S=4, sample=True), estimator="iwae")
    assert torch.isfinite(sampled.objective)


def _mlp_vae(features=784, latent=8, seed=0):
    torch.manual_seed(seed)
    encoder = nn.Sequential(nn.Linear(features, 64), nn.Tanh())
    decoder = nn.Sequential(nn.Linear(latent, 64), nn.Tanh(), nn.Linear(64, features))
    return paf.VAE(encoder, decoder, latent).build(torch.rand(2, features))


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_log_likelihood_estimate_chunked_equals_unchunked(likelihood, monkeypatch):
    # The same samples, decoded in chunks of 7 and combined by a running
    # log-sum-exp, give the bound of all S at once (plus the constants).
    vae = _mlp_vae(features=50)
    x = torch.rand(4, 50)
    S = 30
    z_all = torch.randn(4, S, 8)
    draws = iter(z_all.split(7, dim=1))
    monkeypatch.setattr(paf.functional, "reparameterize", lambda mu, lv, n: next(draws))
    got = vae.log_likelihood_estimate(x, S=S, chunk=7, likelihood=likelihood)
    with torch.no_grad():
        mu, lv = vae.sampling_layer.get_params(vae.encoder(x))
        x_hat = vae._decode(z_all).x_hat
        want = paf.functional.iwae_bound(x, x_hat, z_all, mu, lv, likelihood)
    if likelihood == "gaussian":
        want = want - 0.5 * math.log(2 * math.pi) * 50
    torch.testing.assert_close(got, want, rtol=2e-6, atol=2e-5)
    assert not got.requires_grad


def test_log_likelihood_estimate_is_a_tight_bound():
    # A VAE whose decoder ignores z has log p(x) = log p(x | x_hat) exactly;
    # the estimate must find it (every importance weight is then p(z)/q(z),
    # whose mean is 1), and with S samples it lies below the truth less
    # often than the ELBO does.
    torch.manual_seed(0)
    features, latent = 20, 3
    encoder = nn.Linear(features, 8)
    decoder = nn.Sequential(nn.Linear(latent, features))
    vae = paf.VAE(encoder, decoder, latent).build(torch.rand(2, features))
    with torch.no_grad():
        decoder[0].weight.zero_()
    x = torch.rand(5, features)
    est = vae.log_likelihood_estimate(x, S=4000, chunk=500, likelihood="bernoulli")
    with torch.no_grad():
        truth = paf.functional.log_likelihood_sum(x, decoder(torch.zeros(1, latent)).expand(5, -1), "bernoulli")[:, 0]
        mu, lv = vae.sampling_layer.get_params(encoder(x))
        elbo = truth - paf.functional.kl_diag_gaussian(mu, lv)
    assert (est <= truth + 0.05).all() and (est > elbo).all()
    assert (truth - est).abs().max() < 0.2


def test_log_likelihood_estimate_memory_is_set_by_the_chunk(capsys):
    # S = 5000 on a 784-feature MLP VAE: the allocation high-water mark is
    # that of S = 100 (one chunk's x_hat and the decoder's activations),
    # not S samples' worth.
    sys.path.insert(0, str(REPO))
    from benchmarks.harness import peak_memory

    vae = _mlp_vae()
    x = torch.rand(8, 784)
    chunk_x_hat = 8 * 50 * 784 * 4
    small = peak_memory(lambda: vae.log_likelihood_estimate(x, S=100, chunk=50, likelihood="bernoulli"), "cpu")
    large = peak_memory(lambda: vae.log_likelihood_estimate(x, S=5000, chunk=50, likelihood="bernoulli",
                                                            progress=True), "cpu")
    assert large <= small * 1.1 + 4096 and large < 4 * chunk_x_hat, (small, large, chunk_x_hat)
    assert "5000/5000 samples" in capsys.readouterr().err
    est = vae.log_likelihood_estimate(x, S=200, chunk=64, likelihood="bernoulli")
    assert est.shape == (8,) and torch.isfinite(est).all()
    with pytest.raises(ValueError, match="S: expected an integer >= 1, got 0"):
        vae.log_likelihood_estimate(x, S=0)
    with pytest.raises(ValueError, match="chunk: expected an integer >= 1"):
        vae.log_likelihood_estimate(x, chunk=0)
