"""The fusing backend: ``janus_backend(gm, example_inputs, *, options=None) -> callable``.

The driver is :mod:`pipeline`; the stages live in ``passes/``, ``lower/``,
``ir``, ``schedule``, ``codegen/``, ``build`` and ``runtime/``, with
``verify`` checking each boundary.  This module re-exports what callers use:
``janus_backend``, ``compile_graph`` (one aten graph -> CompiledGraph),
``stats``/``reset_stats`` (every graph compiled in this process, every
refusal) and ``force_triton`` (Triton kernels for CPU tensors, for tests run
with ``TRITON_INTERPRET=1``).
"""
from __future__ import annotations

import contextlib

from ...config import config
from .pipeline import compile_graph, janus_backend
from .stats import Fallback, Stats, reset_stats, stats

__all__ = ["janus_backend", "compile_graph", "stats", "reset_stats", "Stats", "Fallback",
           "force_triton"]


@contextlib.contextmanager
def force_triton(options=None):
    """Generate Triton kernels even for CPU tensors while inside (sets
    ``triton_on_cpu`` of ``options``, the process-wide config by default)."""
    opts = config if options is None else options
    old = opts.triton_on_cpu
    opts.triton_on_cpu = True
    try:
        yield
    finally:
        opts.triton_on_cpu = old
