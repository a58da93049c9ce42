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
