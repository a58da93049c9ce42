"""pyautoencoder_fast: fused C++/CUDA loss and sampling ops for autoencoders.

``import pyautoencoder_fast`` loads the compiled extension (or falls back to
the pure-PyTorch reference, see :mod:`pyautoencoder_fast._backend`).
"""

from ._backend import (
    active_backend,
    extension_available,
    extension_info,
    extension_load_error,
    use_backend,
)

from ._backend import _initialise

_initialise()
del _initialise

from . import functional, loss, reference  # noqa: E402
from .loss import LikelihoodType, LossResult, kl_divergence_diag_gaussian, log_likelihood  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "LikelihoodType",
    "LossResult",
    "active_backend",
    "extension_available",
    "extension_info",
    "extension_load_error",
    "functional",
    "kl_divergence_diag_gaussian",
    "log_likelihood",
    "loss",
    "reference",
    "use_backend",
]

# Models (pyautoencoder's base, vanilla and variational modules).
from . import base, vanilla, variational  # noqa: E402
from .base import BaseAutoencoder, ModelOutput  # noqa: E402
from .vanilla import AE, AEDecodeOutput, AEEncodeOutput, AEOutput  # noqa: E402
from .variational import (  # noqa: E402
    VAE,
    AdaGVAE,
    AdaGVAEOutput,
    FullyFactorizedGaussian,
    VAEDecodeOutput,
    VAEEncodeOutput,
    VAEOutput,
)

__all__ += [
    "AE",
    "AEDecodeOutput",
    "AEEncodeOutput",
    "AEOutput",
    "AdaGVAE",
    "AdaGVAEOutput",
    "BaseAutoencoder",
    "FullyFactorizedGaussian",
    "ModelOutput",
    "VAE",
    "VAEDecodeOutput",
    "VAEEncodeOutput",
    "VAEOutput",
    "base",
    "vanilla",
    "variational",
]


# The peer libraries' APIs (pyautoencoder_fast.nidl, .ml_starter, .scvi)
# load on first use, as pyautoencoder_fast.loss's re-exports of them do:
# ``paf.scvi`` works after a plain ``import pyautoencoder_fast``.
_LAZY_SUBMODULES = ("ml_starter", "nidl", "scvi")


def __getattr__(name: str) -> object:
    if name in _LAZY_SUBMODULES:
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_SUBMODULES))
