"""The switch into the real scvi-tools (pyautoencoder_fast.scvi.enable_fused_likelihoods)
against the installed package (scvi-tools 1.4.2, the ``scvi`` extra): what it
replaces and puts back, the values and gradients of every replaced
``log_prob`` and function against scvi-tools' own, the cases left to
scvi-tools' code, and real models trained side by side with and without it.

Without scvi-tools these tests skip, saying so; with
``PAF_REQUIRE_SCVI_TOOLS=1`` (``.ci/run``) a missing scvi-tools fails them."""

from __future__ import annotations

import contextlib
import os
import warnings

import numpy as np
import pytest
import torch

import pyautoencoder_fast.scvi as ours
from pyautoencoder_fast import functional
from conftest import requires_extension

try:
    import scvi
    import scvi.distributions as sd
    import scvi.distributions._negative_binomial as nb_module
except ImportError as error:  # pragma: no cover - depends on the environment
    if os.environ.get("PAF_REQUIRE_SCVI_TOOLS") == "1":
        raise
    pytest.skip(
        f"scvi-tools is not installed ({error}): pip install -e '.[scvi]' (scvi-tools 1.4.2) runs these tests",
        allow_module_level=True,
    )

pytestmark = requires_extension

CLASSES = ("NegativeBinomial", "ZeroInflatedNegativeBinomial", "NegativeBinomialMixture", "Poisson")
FUNCTIONS = ("log_nb_positive", "log_zinb_positive", "log_mixture_nb")


@pytest.fixture(autouse=True)
def _switched_off():
    """Every test starts and ends with scvi-tools' own code."""
    ours.disable_fused_likelihoods()
    yield
    ours.disable_fused_likelihoods()


def _originals():
    return {name: getattr(sd, name).log_prob for name in CLASSES}, {
        name: getattr(nb_module, name) for name in FUNCTIONS
    }


# ----------------------------------------------------------------- mechanics
def test_tested_version_is_installed():
    assert scvi.__version__ in ours.TESTED_SCVI_VERSIONS, (
        f"scvi-tools {scvi.__version__} installed; the switch is tested with {ours.TESTED_SCVI_VERSIONS}"
    )


def test_enable_replaces_and_disable_restores_exactly():
    methods, functions = _originals()
    assert not ours.fused_likelihoods_enabled()
    ours.enable_fused_likelihoods()
    assert ours.fused_likelihoods_enabled()
    for name in CLASSES:
        assert getattr(sd, name).log_prob is not methods[name], name
        assert getattr(sd, name).log_prob.__name__ == "log_prob"
    for name in FUNCTIONS:
        assert getattr(nb_module, name) is not functions[name], name
        # scvi.distributions re-exports some of them: those are replaced too
        if name in vars(sd):
            assert getattr(sd, name) is getattr(nb_module, name)
    replaced = {name: getattr(sd, name).log_prob for name in CLASSES}
    ours.enable_fused_likelihoods()  # idempotent: nothing is wrapped twice
    assert {name: getattr(sd, name).log_prob for name in CLASSES} == replaced
    ours.disable_fused_likelihoods()
    ours.disable_fused_likelihoods()
    assert not ours.fused_likelihoods_enabled()
    assert _originals() == (methods, functions)


def test_context_manager_restores_and_nests():
    originals = _originals()
    with ours.fused_likelihoods():
        assert ours.fused_likelihoods_enabled()
        with ours.fused_likelihoods():
            assert ours.fused_likelihoods_enabled()
        assert ours.fused_likelihoods_enabled()  # the outer block is still on
    assert not ours.fused_likelihoods_enabled()
    assert _originals() == originals
    ours.enable_fused_likelihoods()
    with ours.fused_likelihoods():
        pass
    assert ours.fused_likelihoods_enabled()  # was on before the block: stays on
    with pytest.raises(KeyError), ours.fused_likelihoods():
        raise KeyError("inside")
    assert ours.fused_likelihoods_enabled()


def test_context_manager_restores_after_an_error():
    originals = _originals()
    with pytest.raises(RuntimeError, match="boom"), ours.fused_likelihoods():
        raise RuntimeError("boom")
    assert _originals() == originals


def test_module_level_import_is_reached(monkeypatch):
    """A model module that bound a function at import time (as scvi-tools'
    modules bind the classes) holds the stand-in while the switch is on."""
    import types
    import sys

    module = types.ModuleType("scvi._paf_probe")
    module.log_nb_positive = nb_module.log_nb_positive
    monkeypatch.setitem(sys.modules, "scvi._paf_probe", module)
    original = module.log_nb_positive
    with ours.fused_likelihoods():
        assert module.log_nb_positive is nb_module.log_nb_positive
        assert module.log_nb_positive is not original
    assert module.log_nb_positive is original


def test_untested_version(monkeypatch):
    originals = _originals()
    monkeypatch.setattr(scvi, "__version__", "0.0.1")
    with pytest.raises(RuntimeError, match=r"scvi-tools 0\.0\.1 is not a version .*nothing was replaced"):
        ours.enable_fused_likelihoods(untested_version="error")
    assert _originals() == originals and not ours.fused_likelihoods_enabled()
    with pytest.warns(UserWarning, match=r"scvi-tools 0\.0\.1 is not a version the switch was tested with"):
        ours.enable_fused_likelihoods()
    assert ours.fused_likelihoods_enabled()
    ours.disable_fused_likelihoods()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ours.enable_fused_likelihoods(untested_version="ignore")
    with pytest.raises(ValueError, match="untested_version: expected"):
        ours.disable_fused_likelihoods() or ours.enable_fused_likelihoods(untested_version="maybe")


def test_a_release_without_a_class_is_refused(monkeypatch):
    originals = _originals()
    monkeypatch.delattr(sd, "NegativeBinomialMixture")
    with pytest.raises(RuntimeError, match="has no NegativeBinomialMixture .*nothing was replaced"):
        ours.enable_fused_likelihoods()
    monkeypatch.undo()
    assert _originals() == originals and not ours.fused_likelihoods_enabled()


# ------------------------------------------------------------------- values
def _counts(rows=24, genes=40, dtype=torch.float32, seed=0, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    mu = torch.exp(torch.randn(rows, genes, generator=g, dtype=torch.float64) * 1.5) * 3
    mu2 = mu * torch.exp(torch.rand(rows, genes, generator=g, dtype=torch.float64) * 2)
    theta = torch.exp(torch.randn(genes, generator=g, dtype=torch.float64) * 1.5)
    logits = torch.randn(rows, genes, generator=g, dtype=torch.float64) * 2
    x = torch.poisson(mu * torch.rand(rows, genes, generator=g, dtype=torch.float64) * 2, generator=g)
    x[:, ::4] = 0
    out = [t.to(dtype) for t in (x, mu, mu2, theta, logits)]
    return [out[0]] + [t.requires_grad_(requires_grad) for t in out[1:]]


def _distributions(mu, mu2, theta, logits):
    """One scvi-tools distribution of each replaced class, built as its
    modules build them (theta [G] broadcast with the means)."""
    return {
        "NegativeBinomial": lambda: sd.NegativeBinomial(mu=mu, theta=theta),
        "ZeroInflatedNegativeBinomial": lambda: sd.ZeroInflatedNegativeBinomial(mu=mu, theta=theta, zi_logits=logits),
        "NegativeBinomialMixture": lambda: sd.NegativeBinomialMixture(
            mu1=mu, mu2=mu2, theta1=theta, mixture_logits=logits
        ),
        "Poisson": lambda: sd.Poisson(mu),
    }


@pytest.mark.parametrize("name", CLASSES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_log_prob_values_and_gradients_match_scvi_tools(name, dtype):
    x, mu, mu2, theta, logits = _counts(dtype=dtype, requires_grad=True)
    params = [mu, mu2, theta, logits]
    grad_out = torch.rand(x.shape, dtype=dtype, generator=torch.Generator().manual_seed(5)) * 2 + 0.25
    build = _distributions(mu, mu2, theta, logits)[name]

    def run():
        value = build().log_prob(x)
        grads = torch.autograd.grad(value, params, grad_out, allow_unused=True)
        return value.detach(), grads

    own_log_prob = _originals()[0][name]
    theirs = run()
    with ours.fused_likelihoods():
        fused = run()
        assert type(build()).log_prob is not own_log_prob  # the switch was in effect
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == torch.float64 else dict(rtol=2e-5, atol=2e-4)
    assert fused[0].dtype == theirs[0].dtype and fused[0].shape == theirs[0].shape
    torch.testing.assert_close(fused[0], theirs[0], **tol)
    for a, b in zip(fused[1], theirs[1]):
        if b is None:
            assert a is None or not a.abs().any()
        else:
            torch.testing.assert_close(a, b, **tol)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_functions_match_scvi_tools(name):
    x, mu, mu2, theta, logits = _counts(dtype=torch.float64)
    args = {
        "log_nb_positive": (x, mu, theta),
        "log_zinb_positive": (x, mu, theta, logits),
        "log_mixture_nb": (x, mu, mu2, theta, None, logits),
    }[name]
    theirs = getattr(nb_module, name)(*args, eps=1e-8)
    with ours.fused_likelihoods():
        fused = getattr(nb_module, name)(*args, eps=1e-8)
        also_exported = getattr(sd, name, None)
        if also_exported is not None:
            torch.testing.assert_close(also_exported(*args), fused, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fused, theirs, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("eps", [1e-8, 1e-3])
def test_log_mixture_nb_with_theta_2_matches_scvi_tools(eps):
    """A separate theta_2: scvi-tools' components then use log_nb_positive's
    default eps (1e-8) whatever eps is passed, and so does the switched
    function (the fused op, with values and gradients as scvi-tools')."""
    x, mu, mu2, theta, logits = _counts(dtype=torch.float64, requires_grad=True)
    theta_2 = (theta.detach() * 3 + 0.5).requires_grad_()
    params = [mu, mu2, theta, theta_2, logits]

    def run():
        value = nb_module.log_mixture_nb(x, mu, mu2, theta, theta_2, logits, eps=eps)
        return value.detach(), torch.autograd.grad(value.sum(), params)

    theirs, own = run(), nb_module.log_mixture_nb
    with ours.fused_likelihoods():
        assert nb_module.log_mixture_nb is not own
        fused = run()
    for a, b in zip((fused[0], *fused[1]), (theirs[0], *theirs[1])):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_nondefault_lgamma_and_other_inputs_run_scvi_tools_code():
    """A non-default lgamma_fn (scvi's MPS path) and integer parameters run
    the original function: its lgamma_fn is called, its result returned."""
    x, mu, _, theta, logits = _counts(dtype=torch.float64)
    calls = []

    def counting_lgamma(t):
        calls.append(1)
        return torch.lgamma(t)

    with ours.fused_likelihoods():
        value = nb_module.log_zinb_positive(x, mu, theta, logits, lgamma_fn=counting_lgamma)
        assert calls, "the original function (with the given lgamma_fn) should have run"
        # integer parameters: scvi-tools' code decides (here: its own promotion)
        integer = nb_module.log_nb_positive(x, mu.round().long() + 1, theta)
    torch.testing.assert_close(value, nb_module.log_zinb_positive(x, mu, theta, logits), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(integer, nb_module.log_nb_positive(x, mu.round().long() + 1, theta))


def test_separate_theta2_runs_scvi_tools_code():
    """NegativeBinomialMixture with theta2: scvi-tools stores a pair there and
    its log_prob fails; the switch leaves that to scvi-tools unchanged."""
    x, mu, mu2, theta, logits = _counts(dtype=torch.float64)
    dist = sd.NegativeBinomialMixture(mu1=mu, mu2=mu2, theta1=theta, mixture_logits=logits, theta2=theta * 2)
    with pytest.raises(Exception) as theirs:
        dist.log_prob(x)
    with ours.fused_likelihoods(), pytest.raises(type(theirs.value)):
        dist.log_prob(x)


def test_no_device_read_unless_validation_is_asked_for(monkeypatch):
    """scvi-tools' ZINB and mixture validate the value on every call (a device
    read); with the switch only validate_args=True does, and then a value
    outside the support warns as in scvi-tools."""
    x, mu, mu2, theta, logits = _counts(dtype=torch.float32)
    reads = []
    original = torch.distributions.Distribution._validate_sample

    def counting(self, value):
        reads.append(type(self).__name__)
        return original(self, value)

    monkeypatch.setattr(torch.distributions.Distribution, "_validate_sample", counting)
    dists = _distributions(mu, mu2, theta, logits)
    with ours.fused_likelihoods():
        for name in ("NegativeBinomial", "ZeroInflatedNegativeBinomial", "NegativeBinomialMixture"):
            dists[name]().log_prob(x)
        assert reads == []
        zinb = sd.ZeroInflatedNegativeBinomial(mu=mu, theta=theta, zi_logits=logits, validate_args=True)
        with pytest.warns(UserWarning, match="within the support"):
            zinb.log_prob(x + 0.5)
        assert reads == ["ZeroInflatedNegativeBinomial"]


# ---------------------------------------------------------- real training
def _data(cells=256, genes=60):
    from scvi.data import synthetic_iid

    return synthetic_iid(batch_size=cells // 2, n_genes=genes, n_proteins=8, n_regions=40, n_batches=2, n_labels=3)


def _scvi(likelihood):
    def build(adata):
        scvi.model.SCVI.setup_anndata(adata, batch_key="batch")
        return scvi.model.SCVI(adata, gene_likelihood=likelihood, n_latent=5)

    return build


def _scanvi(adata):
    scvi.model.SCANVI.setup_anndata(adata, batch_key="batch", labels_key="labels", unlabeled_category="label_0")
    return scvi.model.SCANVI(adata, n_latent=5)


def _linear(adata):
    scvi.model.LinearSCVI.setup_anndata(adata, batch_key="batch")
    return scvi.model.LinearSCVI(adata, n_latent=5)


def _totalvi(adata):
    scvi.model.TOTALVI.setup_anndata(adata, batch_key="batch", protein_expression_obsm_key="protein_expression")
    return scvi.model.TOTALVI(adata, n_latent=5)


def _autozi(adata):
    scvi.model.AUTOZI.setup_anndata(adata, batch_key="batch")
    return scvi.model.AUTOZI(adata, n_latent=5)


def _condscvi(adata):
    scvi.model.CondSCVI.setup_anndata(adata, labels_key="labels")
    return scvi.model.CondSCVI(adata, n_latent=5)


def _multivi(adata):
    from scvi.data import synthetic_iid

    mdata = synthetic_iid(
        batch_size=adata.n_obs // 2, n_genes=adata.n_vars, n_proteins=8, n_regions=40, n_batches=2, return_mudata=True
    )
    scvi.model.MULTIVI.setup_mudata(
        mdata,
        batch_key="batch",
        modalities={"rna_layer": "rna", "protein_layer": "protein_expression", "atac_layer": "accessibility"},
    )
    return scvi.model.MULTIVI(mdata, n_latent=5)


# Every model of scvi.model 1.4.2 whose module builds these distributions.
# Not here: DestVI (its module, MRDeconv, uses NegativeBinomial.log_prob, which
# the switch covers), since DestVI.from_rna_model fails in scvi-tools 1.4.2
# itself on each of its prior paths (KeyError 'prior'; UnboundLocalError
# mp_vprior; a numpy array assigned to a buffer), with or without the switch;
# PEAKVI and AmortizedLDA use none of them.
MODELS = {
    "SCVI-zinb": _scvi("zinb"),
    "SCVI-nb": _scvi("nb"),
    "SCVI-poisson": _scvi("poisson"),
    "SCANVI": _scanvi,
    "LinearSCVI": _linear,
    "TOTALVI": _totalvi,
    "AUTOZI": _autozi,
    "CondSCVI": _condscvi,
    "MULTIVI": _multivi,
}


def _train(build, switched: bool, epochs: int = 5, calls: list | None = None):
    """Train a fresh model (seed 0); ``calls`` collects the likelihoods the
    fused count op ran with meanwhile."""
    scvi.settings.seed = 0
    count_op = functional.count_log_likelihood

    def counting(*args, **kwargs):
        if calls is not None:
            calls.append((kwargs.get("likelihood", "nb"), kwargs.get("reduce_sum", False)))
        return count_op(*args, **kwargs)

    with ours.fused_likelihoods() if switched else contextlib.nullcontext(), warnings.catch_warnings(), \
            _patched(functional, "count_log_likelihood", counting):
        warnings.simplefilter("ignore")
        model = build(_data())
        model.train(
            max_epochs=epochs,
            batch_size=64,
            accelerator="cpu",
            enable_progress_bar=False,
            train_size=0.8,
            check_val_every_n_epoch=1,
        )
    return model


@contextlib.contextmanager
def _patched(owner, name, value):
    saved = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, saved)


def _histories(model) -> dict[str, np.ndarray]:
    return {name: frame.to_numpy(dtype=np.float64).ravel() for name, frame in model.history.items()}


@pytest.mark.parametrize("name", ["NegativeBinomial", "ZeroInflatedNegativeBinomial", "Poisson"])
def test_vae_loss_sums_in_the_fused_op_and_falls_back_for_the_rest(name):
    """Inside scvi-tools' VAE.loss the switch hands it px wrapped:
    px.log_prob(x).sum(-1) is the fused op's summed form (the same as the
    per-element log-pmf summed, gradients too); any other use of
    px.log_prob(x), or of px, is px's own."""
    x, mu, mu2, theta, logits = _counts(requires_grad=True)
    params = {"NegativeBinomial": [mu, theta], "ZeroInflatedNegativeBinomial": [mu, theta, logits], "Poisson": [mu]}[name]
    grad_out = torch.rand(x.shape[0], generator=torch.Generator().manual_seed(3)) + 0.5
    with ours.fused_likelihoods():
        px = _distributions(mu, mu2, theta, logits)[name]()
        wrapped = ours._switch._SummedInLoss(px, x)
        summed = wrapped.log_prob(x).sum(-1)
        per_element = px.log_prob(x)
        torch.testing.assert_close(summed, per_element.sum(-1), rtol=1e-5, atol=1e-4)
        for a, b in zip(torch.autograd.grad(summed, params, grad_out),
                        torch.autograd.grad(per_element.sum(-1), params, grad_out)):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(wrapped.log_prob(x).sum(0), per_element.sum(0))
        assert wrapped.log_prob(x).shape == x.shape
        torch.testing.assert_close(-wrapped.log_prob(x), -per_element)
        torch.testing.assert_close(wrapped.log_prob(x.clone()), per_element)  # other counts: px's own
        assert wrapped.mean is px.mean or torch.equal(wrapped.mean, px.mean)
    assert type(px).log_prob is _originals()[0][name]  # off again


@pytest.mark.parametrize("name", list(MODELS))
def test_training_histories_match_scvi_tools(name):
    """The same seed, five epochs, with and without the switch: every logged
    history (ELBO, reconstruction loss, KL, ...) agrees within 1e-4 relative,
    and the latent representations closely."""
    calls_off, calls_on = [], []
    theirs = _train(MODELS[name], switched=False, calls=calls_off)
    fused = _train(MODELS[name], switched=True, calls=calls_on)
    assert not calls_off and calls_on, "the switch should route the training's likelihoods to the fused op"
    if name.startswith("SCVI") or name == "LinearSCVI":  # VAE.loss: the summed form
        assert any(summed for _, summed in calls_on), calls_on[:3]
    h_theirs, h_fused = _histories(theirs), _histories(fused)
    assert h_theirs.keys() == h_fused.keys()
    assert any("elbo" in key or "reconstruction" in key for key in h_theirs), sorted(h_theirs)
    for key in h_theirs:
        a, b = h_theirs[key], h_fused[key]
        assert a.shape == b.shape, key
        assert np.isfinite(b).all() == np.isfinite(a).all(), key
        scale = np.maximum(np.abs(a), 1e-3 * np.abs(a).max() + 1e-12)
        assert (np.abs(a - b) <= 1e-4 * scale).all(), f"{key}: {a} vs {b}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        za, zb = theirs.get_latent_representation(), fused.get_latent_representation()
    za, zb = np.asarray(za if not isinstance(za, tuple) else za[0]), np.asarray(zb if not isinstance(zb, tuple) else zb[0])
    np.testing.assert_allclose(zb, za, rtol=1e-3, atol=1e-3 * np.abs(za).max())


def test_scvi_downstream_calls_run_with_the_switch():
    """A trained SCVI's evaluation calls run with the switch, and the ELBO and
    reconstruction error (same seed) agree with scvi-tools' own."""
    model = _train(MODELS["SCVI-zinb"], switched=False, epochs=2)

    def evaluate():
        scvi.settings.seed = 0
        return float(model.get_elbo()), {k: float(v) for k, v in model.get_reconstruction_error().items()}

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        elbo, reconstruction = evaluate()
        with ours.fused_likelihoods():
            fused_elbo, fused_reconstruction = evaluate()
            expression = model.get_normalized_expression(n_samples=2)
            samples = model.posterior_predictive_sample(n_samples=2)
            de = model.differential_expression(groupby="labels", group1="label_1", group2="label_2")
    assert np.isfinite(np.asarray(expression)).all()
    assert samples.shape[:2] == (model.adata.n_obs, model.adata.n_vars)
    assert len(de) == model.adata.n_vars and np.isfinite(de["bayes_factor"]).all()
    assert abs(fused_elbo - elbo) <= 1e-4 * abs(elbo)
    assert fused_reconstruction.keys() == reconstruction.keys()
    for key, value in reconstruction.items():
        assert abs(fused_reconstruction[key] - value) <= 1e-4 * abs(value), key
