"""Frame conversion, the driver: one frame in, one guarded cache entry out.

In: the frame's function, its argument slots (from the hook) and the compile
context (configuration, backend, speculation store; context.py).
Out: a :class:`CompiledEntry`: the guard, the replacement, diagnostics, and
what the entry hands to other code objects (resume codes and their dynamic
sizes), which the frame compiler applies.

The pipeline, each step owned by one module: :func:`segment.trace` records a
:class:`~segment.Segment`; ``Segment.close`` completes it (exit, side-effect
replay, the closed fx graph, the undo set); the backend compiles the graph;
``replacement.print_replacement`` prints the record into the replacement and
``Segment.guard`` builds the guard.

This module owns the retry and re-trace policy. A graph break is found by
tracing the whole frame; the frame is then traced again up to the root
instruction during which the break happened (the CALL when it happened inside
an inlined callee), so the segment ends with exactly the frame's state before
that instruction. A trace may also settle a question and start over: an input
or an operator needs symbolic sizes (:class:`NeedsShapeEnv`), a speculated
segment mutates what it could not roll back (:class:`UnsafeSpeculation`), or
a branch site cannot be predicated (:class:`NoPredication`) -- each of those
changes the site or the mode for good, so the loop ends.

Raises :class:`SkipFrame` when the frame records no tensor operation and has
no break, and :class:`GraphBreak` when the break cannot be resumed from (the
whole frame then runs natively).
"""
from __future__ import annotations

import contextlib
import logging
import time
import weakref

from .. import _C, faults, torch_compat
from ..cache import CompiledEntry
from ..diagnostics.logs import artifact_logger
from .breaks import GraphBreak
from .guards import user_modes_active
from .handover import not_resumable
from .breaks import NoPredication
from .replacement import native_while_modes_active, print_replacement
from .segment import Segment, UnsafeSpeculation, trace
from .shapes import NeedsShapeEnv

log = logging.getLogger("janus_frame")


def compile_frame(func, args: tuple, ctx) -> CompiledEntry:
    """The entry for this frame. The fx sources the compile registered (for
    tracebacks) are forgotten when the entry's replacement code dies, or at
    once if the compile made no entry."""
    before = torch_compat.fx_source_keys()
    entry = None
    try:
        entry = _compile_frame(func, args, ctx)
        return entry
    finally:
        new = torch_compat.fx_source_keys() - before
        if new:
            if entry is not None and entry.replacement is not None:
                weakref.finalize(entry.replacement.__code__, torch_compat.forget_fx_sources, new)
            else:
                torch_compat.forget_fx_sources(new)


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
        except UnsafeSpeculation as e:
            for site in e.sites:  # those sites break the graph from now on
                if site.form == "relaxed":
                    site.predicated = False  # a predicated loop's bound cannot be checked
                site.form = "relaxed"
        except NoPredication as e:  # the site breaks the graph from now on
            e.site.predicated = False
            logging.getLogger("janus_frame.speculation").debug(
                "%s:%s: not predicated: %s", e.site.filename, e.site.lineno, e)
    raise GraphBreak("JF009", "could not settle the frame's speculation")


def _compile(func, args, ctx, symbolic: bool) -> CompiledEntry:
    try:
        return _entry(trace(func, args, ctx, None, symbolic), ctx)
    except GraphBreak as gb:
        if ctx.strict or not_resumable(func.__code__, gb) is not None:
            raise
        brk = gb
    try:
        entry = _entry_at_break(func, args, ctx, brk, symbolic)
    except GraphBreak as e:
        if e.filename is None:  # the state at the break cannot be handed back
            brk.detail += f" (the frame then runs natively: {e.reason})"
            raise brk from None
        raise
    except (NeedsShapeEnv, UnsafeSpeculation, NoPredication):
        raise
    except Exception as e:  # noqa: BLE001
        # no resume function could be made here (e.g. bytecode whose stack
        # the assembler cannot follow): the frame runs natively after all
        log.debug("cannot resume after %s: %s", brk.id, e)
        raise brk from None
    # kept for diagnostics: without its traceback, whose frames hold the
    # tracer and through it the user's globals
    brk.__traceback__ = brk.__context__ = brk.__cause__ = None
    entry.breaks.append(brk)
    lg = artifact_logger("graph_breaks")
    if lg is not None:
        lg.info("%s", brk)
    return entry


def _entry_at_break(func, args, ctx, brk: GraphBreak, symbolic: bool) -> CompiledEntry:
    """The entry of the frame traced up to the break. A value at the break
    that cannot be handed back but was made by an earlier instruction of
    the frame (a generator: ``retry_at``) moves the break there: that
    instruction runs natively."""
    while True:
        seg = trace(func, args, ctx, brk.root_ip, symbolic)
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
            if not_resumable(func.__code__, brk) is not None:
                raise


def _entry(seg: Segment, ctx) -> CompiledEntry:
    faults.point("frontend.traced")
    seg.close()
    faults.point("frontend.closed")
    code, output = seg.code, seg.output
    compiled = None
    if seg.graph is not None:
        lg = artifact_logger("graphs")
        if lg is not None:
            lg.info("graph for %s (%s:%d)\n%s", code.co_qualname, code.co_filename,
                    code.co_firstlineno, seg.graph.print_readable(print_output=False))
        # the backend's code (Inductor's generated modules, runtime wrappers)
        # runs with janus_frame off: it is not the user's to compile
        with _tracing(output):
            compiled = _C.Wrapper(ctx.backend(seg.graph, [real for _, real in seg.inputs]), None)
    faults.point("frontend.compiled")
    replacement = print_replacement(seg, compiled)
    guard, explain_failure = seg.guard()
    faults.point("frontend.guarded")
    if seg.rb.loop_guard is not None:
        seg.rb.loop_guard[0] = guard
    lg = artifact_logger("guards")
    if lg is not None:
        lg.info("guards for %s (%s:%d)\n  %s", code.co_qualname, code.co_filename,
                code.co_firstlineno, "\n  ".join(output.guards.lines()))
    seg.site.compile_seconds = _elapsed(seg)
    return CompiledEntry(
        guard=guard, replacement=replacement, guard_lines=output.guards.lines(),
        explain_failure=explain_failure, graphs=[seg.graph] if seg.graph is not None else [],
        breaks=[], compile_seconds=seg.site.compile_seconds, site=seg.site,
        resume_codes=output.resume_codes, handover=output.handover,
    )


def _elapsed(seg: Segment) -> float:
    return time.perf_counter() - seg.started


def _tracing(output):
    """Backends see the graph's fake inputs through the tracing context:
    AOTAutograd and Inductor then reuse the symbolic sizes of dynamic inputs
    (and compile size-generic code) instead of specialising on the example
    inputs' sizes."""
    if not output.sym_inputs:
        return contextlib.nullcontext()
    from torch._guards import TracingContext, tracing

    return tracing(TracingContext(output.fake_mode))
