"""pyautoencoder's loss record, on its own so that every loss module
(:mod:`pyautoencoder_fast.loss` and the peer modules it re-exports) can
import it without importing each other."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(slots=True)
class LossResult:
    """A model's loss: the objective to minimise and detached float diagnostics
    (detached 0-d tensors when the loss was computed under ``torch.compile``)."""

    objective: Tensor
    diagnostics: dict[str, float]


LossResult.__module__ = "pyautoencoder_fast.loss"


def read_diagnostics(values: Tensor) -> list:
    """The diagnostics in ``values`` (a 1-d tensor) as Python floats, read
    from the device in one transfer; under ``torch.compile`` the detached
    0-d tensors instead, since reading them would end the graph (a step
    compiled with ``fullgraph=True`` reads them after it returns)."""
    values = values.detach()
    if torch.compiler.is_compiling():
        return list(values.unbind())
    return values.tolist()
