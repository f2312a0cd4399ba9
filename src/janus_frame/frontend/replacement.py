"""Printing a closed segment (segment.py) into the replacement function.

In: a closed :class:`~segment.Segment` and the backend's compiled graph.
Out: the replacement -- a function over the frame's argument slots (the
hook's calling convention) that loads the graph's inputs through their
sources, calls the compiled graph guarded by the segment's checks (on an
exception or a failed speculation: undo, then rerun the frame from its
original bytecode), rebuilds the values the exit needs, replays the side
effects and ends with the exit (return, or the native instruction and the
hand-over to a resume function; a segment continuing in itself loops).
:func:`compiled_entry` pairs it with the segment's guard into the cache
entry.
"""
from __future__ import annotations

import dataclasses
import time
import types
import weakref

import torch

from .. import _C, faults
from ..cache import CompiledEntry, positional_code, stats
from ..diagnostics.logs import artifact_logger
from ..diagnostics.probe import PROBE
from ..torch_compat import TensorBase
from .. import batching as runtime_batching
from . import batching
from .codegen import nargs_of
from .guards import Guards, user_modes_active
from .rebuild import function_expr
from .run_errors import in_range
from .segment import Segment, Undo
from .sources import AttrSource, ExprSource, ItemSource


def compiled_entry(seg: Segment, compiled, plan=None) -> CompiledEntry:
    """The cache entry of ``seg``: its replacement and its guard (built after
    the backend, which may have added conditions on symbolic sizes).
    ``plan``: the segment's graph call can be recorded by a recursion's
    batching (batching.py)."""
    replacement = print_replacement(seg, compiled, plan)
    guard, explain_failure = seg.guard()
    faults.point("frontend.guarded")
    if seg.rb.loop_guard is not None:
        seg.rb.loop_guard[0] = guard  # the looping replacement checks its own guard
    code, output = seg.code, seg.output
    lg = artifact_logger("guards")
    if lg is not None:
        lg.info("guards for %s (%s:%d)\n  %s", code.co_qualname, code.co_filename,
                code.co_firstlineno, "\n  ".join(output.guards.lines()))
    seg.site.compile_seconds = time.perf_counter() - seg.started
    return CompiledEntry(
        guard=guard, replacement=replacement, guard_lines=output.guards.lines(),
        explain_failure=explain_failure, graphs=[seg.graph] if seg.graph is not None else [],
        breaks=[], compile_seconds=seg.site.compile_seconds, site=seg.site,
        resume_codes=output.resume_codes, handover=output.handover,
    )


def print_replacement(seg: Segment, compiled, plan=None):
    """The replacement function of ``seg``; ``compiled`` is the backend's
    callable for ``seg.graph`` (None when there is no graph)."""
    fb, rb, brk = seg.fb, seg.rb, seg.brk
    p = fb.const(PROBE)
    body: list[str] = []
    rec = fb.const(runtime_batching.RECORDER)
    if plan is None and batching.segment_mode(seg) == "abort":
        # while a recursion is recorded, an entry that cannot be deferred
        # drops the recording before it does anything (janus_frame/batching.py)
        why = f"{seg.code.co_qualname}: {batching.segment_mode(seg, why=True)}"
        body.append(f"if {rec}.active: {fb.const(runtime_batching.abort)}(False, {why!r})")
    if seg.graph is not None:
        # inputs are loaded before the guarded call: their sources were just
        # validated by the guard, so a failure there is a bug to surface, not
        # a reason to rerun the frame natively
        body += load_inputs([v.source for v, _ in seg.inputs])
        inputs = ", ".join(f"__jf_i{i}" for i in range(len(seg.inputs)))
        call = f"__jf_o = {fb.const(compiled)}({inputs})"
        lines = [f"__jf_t = {p}.clock() if {p}.active else 0.0"]
        input_exprs = {v.node.name: f"__jf_i{i}" for i, (v, _) in enumerate(seg.inputs)}
        lines += _guarded_call(seg, call, input_exprs)
        lines.append(f"if __jf_t: __jf_t = {p}.graph_done({fb.const(seg.site)}, __jf_t)")
        if plan is not None:
            plan.compiled = compiled
            args = f"({inputs},)" if inputs else "()"
            body.append(f"if {rec}.active: __jf_o = {fb.const(plan.record)}({args})")
            body.append("else:")
            lines = ["    " + line for line in lines]
        body += lines
    elif brk is not None:
        body.append(f"__jf_t = {p}.clock() if {p}.active else 0.0")
    tail = seg.tail
    if brk is not None:  # time the instruction left to Python (the cost of the break)
        tail = _time_native(tail, p, fb.const(seg.site))
    body += rb.lines + seg.replay + tail
    if rb.loop_guard is not None:
        # a loop body continuing in itself: the replacement loops, checking
        # its own guard instead of going through the trampoline and the cache
        body = ["while True:"] + ["    " + line for line in body]
    func = seg.func
    return fb.build("__jf_replacement", body, seg.frame.lineno, "replacement", func.__globals__,
                    func.__closure__)


def load_inputs(sources: list) -> list[str]:
    """Statements binding ``__jf_i<n>`` to the value at ``sources[n]``, each
    attribute or item read that leads to two or more inputs made once.

    A module's parameters sit at the ends of long shared chains
    (``self._modules['encoder']._modules['layer']._modules['0']...``): read
    one by one, a BERT-sized model's 47 inputs cost about 370 reads a call
    (some 35 us at hidden size 64, a twentieth of the call); shared, about
    150.  The guard, which has just validated the same chains, reads every
    prefix once too, so the replacement sees what the guard saw."""
    chains = []
    below: dict = {}  # an inner read -> how many inputs are reached through it
    for src in sources:
        chain = []
        b = src
        while isinstance(b, (AttrSource, ItemSource)):
            b = b.base
            if isinstance(b, (AttrSource, ItemSource)):
                chain.append(b)
        chains.append(chain)
        for b in set(chain):
            below[b] = below.get(b, 0) + 1
    bound: dict = {}
    lines = []

    def rebased(src):
        if src in bound:
            return bound[src]
        if isinstance(src, (AttrSource, ItemSource)):
            return dataclasses.replace(src, base=rebased(src.base))
        return src

    for i, (src, chain) in enumerate(zip(sources, chains)):
        for b in reversed(chain):  # outermost first
            if below[b] > 1 and b not in bound:
                name = f"__jf_l{len(bound)}"
                lines.append(f"{name} = {rebased(b).expr()}")
                bound[b] = ExprSource(name, b.name())
        lines.append(f"__jf_i{i} = {rebased(src).expr()}")
    return lines


def _guarded_call(seg: Segment, call: str, input_exprs: dict) -> list[str]:
    """The graph call, and what happens when the segment's assumptions fail.

    Nothing visible has happened when the graph returns (side effects are
    replayed after it) except in-place tensor updates. If the graph raises,
    or a speculated branch went the other way (``checks``), the segment's
    results are discarded -- inputs it updated in place restored, the RNG
    state restored if it drew random numbers -- and the frame reruns from its
    original bytecode: the call gives exactly eager's results, side effects
    and exceptions (from the user's own line)."""
    undo_set: Undo | None = seg.undo
    if undo_set is None:
        return [call]  # cannot be undone: no rerun (the exception propagates)
    fb, code = seg.fb, seg.code
    native = _native_code(code)
    slots = "".join(f"__jf_a{i}, " for i in range(nargs_of(code)))
    fn = function_expr(fb, native, [f"__jf_cell_{n}" for n in code.co_freevars])
    undo = []
    lines = []
    if undo_set.random:
        lines.append(f"__jf_rng = {fb.const(torch.get_rng_state)}()")
        undo.append(f"{fb.const(torch.set_rng_state)}(__jf_rng)")
    saving = bool(undo_set.inputs)
    if saving and undo_set.safe_if_disjoint and not seg.checks:
        # nothing to restore unless the inputs share memory or an index
        # input is out of range (see Undo)
        every = ", ".join(input_exprs.values())
        # ... and once the graph has run: until then it may still fail
        # inside its backend (a kernel that does not run here), which the
        # copies turn into a native rerun instead of an error for the user
        ran = fb.const([False])
        keep = f"not {ran}[0] or not {fb.const(_disjoint)}(({every},))"
        if undo_set.ranges:
            ranges = ", ".join(f"({input_exprs[name]}, {bound}, {ignore})"
                               for name, bound, ignore in undo_set.ranges)
            keep += f" or not {fb.const(in_range)}(({ranges},))"
        lines.append(f"__jf_keep = {keep}")
        guard = "if __jf_keep: "
    else:
        guard = ""
    for i, name in enumerate(undo_set.inputs):
        lines.append(f"{guard}__jf_saved{i} = {fb.const(_save)}({input_exprs[name]})")
    if saving:
        # (with grad mode off: a parameter is a leaf that requires grad, which
        # eager lets no one update in place with it on)
        pairs = "".join(f"({input_exprs[name]}, __jf_saved{i}), "
                        for i, name in enumerate(undo_set.inputs))
        undo.append(f"{fb.const(_restore)}(({pairs}))")
    lines += ["try:", f"    {call}", "except Exception:"]
    if guard:
        # a graph that ran before, inputs apart: it raised before touching
        # them, or on an error no rerun can avoid (out of memory): as it stands
        lines.append("    if not __jf_keep: raise")
    lines += ["    " + u for u in undo]
    lines.append(f"    {fb.const(_note_rerun)}({fb.const(seg.site)})")
    lines.append(f"    return {fn}({slots})")
    if guard:
        lines.append(f"{ran}[0] = True")
    for check, site in zip(seg.checks, seg.spec_sites):
        k = fb.const(site)
        lines.append(f"if {check}:")
        lines.append(f"    {k}.miss()")
        lines += ["    " + u for u in undo]
        lines.append(f"    return {fn}({slots})")
    for site in seg.spec_sites:
        lines.append(f"{fb.const(site)}.hit()")
    return lines


def _restore(pairs) -> None:
    """Copy each saved tensor back into the input it was taken from."""
    with torch.no_grad():
        for tensor, saved in pairs:
            _COPY(tensor, saved)


def _save(tensor):
    """A copy of ``tensor`` to restore it from."""
    return _CLONE(tensor)


# (the C methods: what a program put on torch.Tensor is not run)
_CLONE, _COPY = TensorBase.clone, TensorBase.copy_


def _disjoint(tensors) -> bool:
    """Do the tensors (graph inputs) each have memory no other one has?
    Compared by the address ranges of their storages: views of one tensor
    share it, and so do two storages over one buffer (``from_numpy`` of
    overlapping arrays)."""
    spans = []
    for t in tensors:
        if isinstance(t, torch.Tensor):
            s = t.untyped_storage()
            n = s.nbytes()
            if n:
                spans.append((s.data_ptr(), n))
    spans.sort()
    end = None
    for start, n in spans:
        if end is not None and start < end:
            return False
        end = start + n
    return True


def _note_rerun(site) -> None:
    """A graph raised: the frame reruns natively (counted, and logged under
    JANUS_LOGS=perf, so a segment that keeps failing is visible)."""
    stats.reruns += 1
    lg = artifact_logger("perf")
    if lg is not None:
        lg.info("graph of %s (%s:%s) raised; the frame reran natively", site.frame,
                site.filename, site.lineno)


_native_codes: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _native_code(code):
    """The frame's original bytecode with its argument slots positional (the
    replacement's calling convention), marked to run natively."""
    native = _native_codes.get(code)
    if native is None:
        # The marker keeps it distinct from the original when both are
        # constants of one generated function: a resume function continuing
        # in itself would otherwise hand over to this natively-run copy.
        native = positional_code(code, marker="janus_frame: runs natively")
        _native_codes[code] = native
    _C.set_code_strategy(native, _C.SKIP, _C.DEFAULT)  # again after a reset()
    return native


def _time_native(tail: list[str], probe: str, site: str) -> list[str]:
    """Report the time from the graph's end to each hand-over to the resume
    function (the native instruction and the rebuilding around it)."""
    out = []
    for line in tail:
        stripped = line.lstrip()
        if stripped.startswith("return ") or stripped == "continue":
            indent = line[:len(line) - len(stripped)]
            out.append(f"{indent}if __jf_t: {probe}.native_done({site}, __jf_t)")
        out.append(line)
    return out


def native_while_modes_active(func) -> CompiledEntry:
    """An entry running the frame's original bytecode whenever a program's
    torch-function or dispatch mode is active."""
    code = func.__code__
    g = Guards(code, nargs_of(code))
    g.add(f"{g.fb.const(user_modes_active)}() is True",
          "a torch function or dispatch mode is active")
    guard, explain_failure = g.build(code.co_firstlineno, func.__globals__, func.__closure__)
    native = positional_code(code)
    rep = types.FunctionType(native, func.__globals__, code.co_name, None, func.__closure__)
    return CompiledEntry(guard=guard, replacement=rep, guard_lines=g.lines(),
                         explain_failure=explain_failure)
