"""pyautoencoder's loss record, on its own so that every loss module
(:mod:`pyautoencoder_fast.loss` and the peer modules it re-exports) can
import it without importing each other."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass(slots=True)
class LossResult:
    """A model's loss: the objective to minimise and detached float diagnostics."""

    objective: Tensor
    diagnostics: dict[str, float]


LossResult.__module__ = "pyautoencoder_fast.loss"
