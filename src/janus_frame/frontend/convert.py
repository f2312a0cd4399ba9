"""Frame conversion, the driver: one frame in, one guarded cache entry out.

In: the frame's function, its argument slots (from the hook) and the compile
context (configuration, backend, speculation store; context.py).
Out: a :class:`CompiledEntry`: the guard, the replacement, diagnostics, and
what the entry hands to other code objects (resume codes and their dynamic
sizes), which the frame compiler applies.

The pipeline (:func:`_entry`), one module per step: ``segment.trace`` records a
``Segment``; ``Segment.close`` completes it (exit, side-effect replay, the fx
graph, the undo set); ``backend_call.compile_graph`` has the backend compile
the graph; ``replacement.compiled_entry`` prints the replacement and the guard.

This module owns the retry and re-trace policy. A graph break is found by
tracing the whole frame; the segment ends with exactly the frame's state
before the root instruction during which the break happened (the CALL when it
happened inside an inlined callee). That record is the first trace's own when
the breaking instruction recorded nothing before it broke: one trace per
break. The frame is traced again up to that instruction -- :func:`_segment_before`,
the one place that decides it -- when the first trace went past that state
(``Translator._rewind`` says when: the instruction recorded or inlined before
breaking, ran before in an unrolled loop, or the break was placed elsewhere),
or the record turned out unusable there and the break moved back (``retry_at``).
A trace may also settle a question and start over: an input or an operator
needs symbolic sizes (:class:`NeedsShapeEnv`), a speculated segment mutates
what it could not roll back (:class:`UnsafeSpeculation`), or a branch site
cannot be predicated (:class:`NoPredication`) -- each of those changes the
site or the mode for good, so the loop ends.

Raises :class:`SkipFrame` when the frame records no tensor operation and has
no break, and :class:`GraphBreak` when the break cannot be resumed from (the
whole frame then runs natively).
"""
from __future__ import annotations

import logging

from .. import faults, torch_compat
from ..cache import CompiledEntry
from . import batching
from .backend_call import compile_graph
from .breaks import GraphBreak, NoPredication, RetraceCode
from .guards import user_modes_active
from .handover import not_resumable, record_break
from .replacement import compiled_entry, native_while_modes_active
from .segment import ReusedRecordMismatch, Segment, UnsafeSpeculation, check_reused, trace
from .shapes import NeedsShapeEnv

log = logging.getLogger("janus_frame")


def compile_frame(func, args: tuple, ctx) -> CompiledEntry:
    """The entry for this frame. The fx sources the compile registered (for
    tracebacks) are forgotten when the entry's replacement code dies, or at
    once if the compile made no entry."""
    before, entry = torch_compat.fx_source_keys(), None
    try:
        entry = _compile_frame(func, args, ctx)
        return entry
    finally:
        torch_compat.forget_fx_sources_since(before, entry.replacement if entry else None)


def _compile_frame(func, args: tuple, ctx) -> CompiledEntry:
    if user_modes_active():
        # a torch-function/dispatch mode of the program decides what each
        # torch call does: this frame runs natively while one is active
        return native_while_modes_active(func)
    symbolic = False
    for _ in range(8):  # each retrace settles one question (shape env, a site)
        try:
            return _compile(func, args, ctx, symbolic)
        except NeedsShapeEnv:
            symbolic = True
        except (UnsafeSpeculation, NoPredication, RetraceCode) as e:
            e.settle()  # the sites break the graph from now on
    raise GraphBreak("JF009", "could not settle the frame's speculation")


def _compile(func, args, ctx, symbolic: bool) -> CompiledEntry:
    try:
        return _entry(trace(func, args, ctx, None, symbolic), ctx)
    except GraphBreak as gb:
        if ctx.strict or not_resumable(func.__code__, gb) is not None:
            gb.record = None  # (the trace's state is not kept with the error)
            raise
        brk = gb
    try:
        entry = _entry_at_break(func, args, ctx, brk, symbolic)
    except GraphBreak as e:
        if e.filename is None:  # the state at the break cannot be handed back
            brk.detail += f" (the frame then runs natively: {e.reason})"
            raise brk from None
        raise
    except (NeedsShapeEnv, UnsafeSpeculation, NoPredication, RetraceCode,
            ReusedRecordMismatch):
        raise
    except Exception as e:  # noqa: BLE001
        # no resume function could be made here (e.g. bytecode whose stack
        # the assembler cannot follow): the frame runs natively after all
        log.debug("cannot resume after %s: %s", brk.id, e)
        raise brk from None
    record_break(entry, brk)
    return entry


def _entry_at_break(func, args, ctx, brk: GraphBreak, symbolic: bool) -> CompiledEntry:
    """The entry of the frame traced up to the break. A value at the break
    that cannot be handed back but was made by an earlier instruction of
    the frame (a generator: ``retry_at``) moves the break there: that
    instruction runs natively."""
    while True:
        seg = _segment_before(func, args, ctx, brk, symbolic)
        if not seg.frame.stopped:
            raise brk
        seg.brk = brk
        try:
            return _entry(seg, ctx)
        except GraphBreak as e:
            at = getattr(e, "retry_at", None)
            if e.filename is not None or at is None or at >= brk.root_ip:
                raise
            brk.root_ip = at
            brk.retrace = "the break moved to an earlier instruction (retry_at)"
            if not_resumable(func.__code__, brk) is not None:
                raise


def _segment_before(func, args, ctx, brk: GraphBreak, symbolic: bool) -> Segment:
    """The record of the frame up to ``brk.root_ip``: the first trace's,
    when it stopped there (``brk.record``), else a second trace stopping
    there (``brk.retrace`` says why). Under the checks flag a reused record
    is compared with the one a second trace makes."""
    seg, brk.record = brk.record, None
    if seg is None:
        ctx.stats.break_retraces += 1
        log.debug("%s:%s: traced again up to the break: %s", func.__code__.co_filename,
                  brk.lineno, brk.retrace)
        return trace(func, args, ctx, brk.root_ip, symbolic)
    if ctx.config.checks:
        check_reused(seg, args, ctx, brk.root_ip, symbolic)
    return seg


def _entry(seg: Segment, ctx) -> CompiledEntry:
    """A traced segment through the rest of the pipeline (fault points between stages)."""
    faults.point("frontend.traced")
    seg.close()
    faults.point("frontend.closed")
    plan = batching.plan_for(seg, ctx.backend)  # before the backend: it may rewrite the graph
    compiled = compile_graph(seg, ctx)
    faults.point("frontend.compiled")
    return compiled_entry(seg, compiled, plan)
