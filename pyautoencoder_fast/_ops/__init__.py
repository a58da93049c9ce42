"""Fake kernels of the compiled ops, one module per op.

Each module registers, for its op and the op's backward op(s), a fake
(meta) kernel for torch.compile / FakeTensor. They run once, after
``pyautoencoder_fast._C`` has loaded the schemas (see
``_backend._load_extension``). The autograd of every op is registered in
C++ (csrc/autograd/<op>.cpp), so neither the forward nor the backward of an
op passes through Python.
"""

from . import (
    adagvae_posterior,
    count_log_likelihood,
    elbo,
    iwae_bound,
    kl_diag_gaussian,
    log_likelihood,
    log_likelihood_sum,
    nb_mixture_log_likelihood,
    reparameterize,
)

_MODULES = (
    log_likelihood,
    log_likelihood_sum,
    kl_diag_gaussian,
    reparameterize,
    elbo,
    iwae_bound,
    count_log_likelihood,
    nb_mixture_log_likelihood,
    adagvae_posterior,
)
_registered = False


def register_all() -> None:
    global _registered
    if _registered:
        return
    for module in _MODULES:
        module.register()
    _registered = True
