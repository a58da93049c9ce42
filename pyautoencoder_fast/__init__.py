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
