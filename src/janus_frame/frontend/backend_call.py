"""Handing a closed segment's graph to the backend.

In: a closed :class:`~segment.Segment` (its fx graph, the real example
inputs, the trace's fake mode when inputs have symbolic sizes) and the
compile context (the backend, the options).
Out: the compiled graph wrapped for the replacement to call (a
``_C.Wrapper``), or None when the segment has no graph. The backend sees the
graph and its example inputs only; inside a ``DistributedDataParallel``
forward it sees the graph's pieces, one per gradient bucket (ddp.py).
"""
from __future__ import annotations

import contextlib

import torch

from .. import _C
from ..diagnostics.logs import artifact_logger
from .ddp import compile_bucketed
from .whole_step import consumed_outputs, has_backward, lower, without_grad


def compile_graph(seg, ctx):
    """The backend's callable for ``seg.graph`` (None when there is none)."""
    if seg.graph is None:
        return None
    code = seg.code
    lg = artifact_logger("graphs")
    if lg is not None:
        lg.info("graph for %s (%s:%d)\n%s", code.co_qualname, code.co_filename,
                code.co_firstlineno, seg.graph.print_readable(print_output=False))
    # the backend's code (Inductor's generated modules, runtime wrappers)
    # runs with janus_frame off: it is not the user's to compile
    example = [real for _, real in seg.inputs]
    seg.output.note_sizes_before_backend()
    if has_backward(seg.graph):
        # forward, backward and update in one graph: traced to aten ops with
        # the backward written out, compiled and run with grad mode off
        out = seg.output
        with _tracing(out):
            gm = lower(seg.graph, example, out.initial_grad_enabled)
        with _tracing(out), torch.no_grad():
            fn = ctx.backend(gm, example)
        return _C.Wrapper(without_grad(fn, consumed_outputs(seg.graph, out), out.backward_error),
                          None)
    with _tracing(seg.output):
        # inside a DistributedDataParallel forward: pieces of one gradient
        # bucket each, so that DDP's all-reduces overlap backward (ddp.py)
        fn = compile_bucketed(seg.graph, example, ctx.backend, seg.output, ctx.config)
        return _C.Wrapper(fn if fn is not None else ctx.backend(seg.graph, example), None)


def _tracing(output):
    """Backends see the graph's fake inputs through the tracing context:
    AOTAutograd and Inductor then reuse the symbolic sizes of dynamic inputs
    (and compile size-generic code) instead of specialising on the example
    inputs' sizes."""
    if not output.sym_inputs:
        return contextlib.nullcontext()
    from ..torch_compat import TracingContext, tracing

    return tracing(TracingContext(output.fake_mode))
