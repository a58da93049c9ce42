"""Benchmark harness: ``python -m benchmarks`` (``--quick`` for a short run).

Compares three providers of every op on the same inputs: ``eager`` (plain
PyTorch written like pyautoencoder), ``compile`` (``torch.compile`` of that)
and ``fast`` (this library's fused ops). See :mod:`benchmarks.harness` for
the method and :mod:`benchmarks.workloads` for the workloads and their byte
formulas.
"""

from .harness import Config, ProviderMismatch, read_csv, run

__all__ = ["Config", "ProviderMismatch", "read_csv", "run"]
