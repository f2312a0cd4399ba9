"""The segment record: what one trace of a frame produced.

In: the frame's function, its argument slots and the compile context; the
instruction to stop before (after a graph break) or None.
Out: a :class:`Segment`, built in two steps:

1. :func:`trace` runs the symbolic interpreter over the frame: the open
   graph with its inputs and their sources, the guards of everything read,
   the speculation predicates, the recorded side effects, and the exit --
   the return value, or the tracer stopped before the breaking instruction
   (its stack, live locals and cells are the frame's state there);
2. :meth:`Segment.close` decides what the replacement does after the graph:
   the Python lines rebuilding the exit's values (which makes the tensors
   they read graph outputs), the replay of the side effects and the exit's
   tail (a ``return``, or the native instruction and the hand-over to the
   resume function); then it closes the graph and derives the undo set
   (inputs the graph updates in place, whether it draws random numbers) that
   a failed check or an exception must roll back.

A closed segment is complete: the backend compiles ``graph``, the printer
(replacement.py) turns the record into the replacement function, and
:meth:`Segment.guard` the guard (after the backend, which may have added
conditions on symbolic sizes to the shape environment).
"""
from __future__ import annotations

import dataclasses
import operator
import time
import types

import torch

from ..cache import SkipFrame
from ..diagnostics.probe import Site
from .breaks import GraphBreak, LeafRowWritten, LoggingKept, RowAliased
from .codegen import FunctionBuilder, nargs_of, slot_names
from .handover import break_tail
from .interpreter import Translator
from .output import OutputGraph
from .rebuild import Rebuilder
from .run_errors import run_time_errors
from .sources import ArgSource, ClosureSource, pins_kept
from .values import Value
from .values.tensors import leaf_row as _leaf_row

_RANDOM_HINTS = ("rand", "dropout", "bernoulli", "normal", "multinomial", "uniform",
                 "exponential", "cauchy", "geometric", "poisson")


_INPLACE_FUNCTIONS = {"setitem", "iadd", "isub", "imul", "itruediv", "ifloordiv", "imod",
                      "ipow", "imatmul", "iand", "ior", "ixor", "ilshift", "irshift",
                      "_set_grad_enabled"}


class UnsafeSpeculation(Exception):
    """The segment speculates and mutates tensors that cannot be restored on
    a miss: its sites break the graph instead (the driver retraces)."""

    def __init__(self, sites: list) -> None:
        super().__init__(sites)
        self.sites = sites

    def settle(self) -> None:
        """Its sites break the graph from now on."""
        for site in self.sites:
            if site.form == "relaxed":
                site.predicated = False  # a predicated loop's bound cannot be checked
            site.form = "relaxed"


class ReusedRecordMismatch(AssertionError):
    """Under the checks flag: a record reused at a break is not the one a
    second trace up to the break makes (:func:`check_reused`)."""


@dataclasses.dataclass
class Undo:
    """What rolls the segment back when its graph raises or a check fails:
    inputs updated in place (graph placeholder names) are restored from
    copies, the RNG state is restored if the graph draws random numbers."""

    inputs: list[str]
    random: bool
    # the graph cannot raise once its inputs are known not to share memory
    # and its index inputs (``ranges``) to be in range (run_errors.py): the
    # copies are taken only on calls where they are not
    safe_if_disjoint: bool = False
    ranges: tuple = ()  # (placeholder name, bound, ignored value or None)


@dataclasses.dataclass
class Segment:
    func: types.FunctionType
    output: OutputGraph  # the graph under construction, guards, effects
    frame: Translator  # the root tracer (stopped before ``brk``'s instruction)
    result: Value | None  # the return value (None after a break)
    brk: GraphBreak | None
    started: float  # perf_counter at the start of the trace
    # -- set by close() ------------------------------------------------------------
    fb: FunctionBuilder | None = None  # constants of the replacement
    rb: Rebuilder | None = None  # lines rebuilding values after the graph
    replay: list[str] = dataclasses.field(default_factory=list)  # side effects
    tail: list[str] = dataclasses.field(default_factory=list)  # the exit
    checks: list[str] = dataclasses.field(default_factory=list)  # speculation predicates
    spec_sites: list = dataclasses.field(default_factory=list)  # their sites, in order
    graph: torch.fx.GraphModule | None = None  # None: no graph to run
    inputs: list = dataclasses.field(default_factory=list)  # (value with .source, real)
    undo: Undo | None = None  # None: the segment cannot be rolled back
    site: Site | None = None  # what the profiler reports

    @property
    def code(self) -> types.CodeType:
        return self.func.__code__

    def close(self) -> "Segment":
        output, code = self.output, self.code
        fb = self.fb = FunctionBuilder(code, nargs_of(code))
        rb = self.rb = Rebuilder(fb, output.initial_grad_enabled)
        rb.sym_text = output.sym_text
        # a speculated branch's predicate is a graph output, checked first
        self.checks = [f"__jf_h_bool({rb.expr(pred)}) is not {predicted!r}"
                       for pred, predicted, _ in output.speculations]
        self.spec_sites = [site for _, _, site in output.speculations]
        if self.brk is None:
            if output.op_count == 0 and not output.effects and not output.inputs \
                    and not output.reads_process_state:
                # pure Python: skipped for good. (A frame that only passes tensors
                # along gets an entry under its guards: other inputs may need ops.)
                raise SkipFrame("no tensor operations")
            self.tail = [f"return {rb.expr(self.result)}"]
        else:
            # a recursive call's native step records the recursion (batching.py)
            self.frame.break_id = self.brk.id
            self.tail = break_tail(self.func, self.frame, rb)
        rb.set_grad_mode(output.grad_enabled)  # the mode the frame is in at this point
        self.replay = output.effects.replay(rb)  # before finish: it may need graph outputs
        escaped_row = next((r for r in map(_leaf_row, (v.fake for v in rb.outputs)) if r), None)
        if escaped_row is not None:  # a parameter's row leaves the graph: it must be a view
            raise LeafRowWritten(escaped_row)
        aliased = aliased_row(output.root_graph, rb.outputs)
        if aliased is not None:
            raise RowAliased(aliased)
        gm, self.inputs = output.finish(rb.outputs)
        if output.op_count or rb.outputs:
            self.graph = gm
            self.undo = _undo(gm, bool(self.checks), self.spec_sites)
            if self.undo is None and output.effects.deferred_calls and \
                    not output.ctx.config.reorder_logging:
                raise LoggingKept(code)  # (see methods.defer_logging)
        self.site = _site(code, output, self.brk)
        return self

    def summary(self) -> tuple:
        """What a record up to a break consists of, comparably (the checks
        flag compares a reused record with a second trace's: check_reused)."""
        out, tx = self.output, self.frame
        g = out.guards
        return (tx.stopped, tx.ip, tx.lineno, tx.kw_names, [type(v).__name__ for v in tx.stack],
                sorted(tx.locals), sorted(tx.lazy_args), out.graph.python_code("self").src,
                [v.source.name() if v.source is not None else None for v, _ in out.inputs],
                dict(g._clauses), {c: dict(d) for c, d in g._classes.items()}, dict(g._modules),
                out.effects.version, [kind for kind, _ in out.effects._order],
                len(out.speculations), list(out.spec_sites.items()), out.grad_enabled, out.mark()[1:])

    def guard(self):
        """The guard function and its explaining twin: every condition the
        trace relied on. Called after the backend compiled the graph."""
        output, code, func = self.output, self.code, self.func
        g = output.guards
        # a branch site the trace met changing form recompiles this entry;
        # one it did not meet (later in the frame, in a resume function) does
        # not: entries of a frame are not all recompiled when one site settles
        for site, version in output.spec_sites.items():
            g.add(f"{g.fb.const(site)}.version == {version}",
                  f"speculation site {site.filename.rsplit('/', 1)[-1]}:{site.lineno} "
                  f"unchanged ({site.current_form}, version {version})")
        for fn, src, expected, desc in getattr(self.brk, "guard_calls", ()):
            # a condition the break depends on (calls.stand_in)
            g.add(f"{g.fb.const(fn)}({src.expr()}) is {expected!r}", desc)
        output.shape_guards()  # after the backend: it may have added conditions
        output.instance_dict_guards()
        return g.build(code.co_firstlineno, func.__globals__, func.__closure__)


def trace(func, args: tuple, ctx, stop_at: int | None, symbolic: bool) -> Segment:
    """Trace the frame (up to instruction ``stop_at``, if given). A graph
    break propagates unless the trace stopped before reaching it; a break
    met by a trace to the end carries the record up to it in ``record``
    when the tracer could stop right before the breaking instruction (else
    ``retrace`` says why the segment must be traced again)."""
    ctx.stats.traces += 1
    t0 = time.perf_counter()
    code = func.__code__
    output = OutputGraph(ctx, code, nargs_of(code), symbolic, ctx.hints)
    cells = {}
    for i, name in enumerate(code.co_freevars):
        cells[name] = output.real_cell(func.__closure__[i], name, ClosureSource(name))
    tx = Translator(output, code, func.__globals__, {}, cells, root_func=func)
    tx.lazy_args = {name: (args[i], ArgSource(name, i))
                    for i, name in enumerate(slot_names(code))}
    tx.stop_at = stop_at
    try:
        result = tx.run()
    except GraphBreak as gb:
        if stop_at is None and tx.stopped:  # rewound (interpreter._rewind)
            gb.record = Segment(func, output, tx, None, None, t0)
        raise
    return Segment(func, output, tx, result, None, t0)


def check_reused(seg: Segment, args: tuple, ctx, stop_at: int, symbolic: bool) -> None:
    """The checks flag: a record reused at a break (before instruction
    ``stop_at``) must be the one a second trace up to the break makes (the
    same graph, inputs, guards, effects, stack and locals). The second trace
    is not counted in the statistics, and leaves the reused record's pinned
    objects in place."""
    ctx.stats.traces -= 1
    with pins_kept():
        again = trace(seg.func, args, ctx, stop_at, symbolic)
    mine, theirs = seg.summary(), again.summary()
    if mine != theirs:
        raise ReusedRecordMismatch(
            f"the record reused at the break of {seg.code.co_qualname} "
            f"(instruction {stop_at}) differs from a second trace:\n"
            f"reused: {mine}\ntraced again: {theirs}")


def _undo(gm, speculates: bool, sites: list) -> Undo | None:
    """The segment's undo set, or None when what it mutates cannot be
    restored (a view that may alias an input): then the graph's exception
    propagates as is, and a speculating segment is unsafe.

    Inputs updated in place are restored whether or not the segment
    speculates: a graph that raises (an overlapping in-place update, an
    index out of range) must leave the frame to rerun natively from the
    state it started in, so that the error comes from the user's own line
    with the inputs as eager leaves them there -- without the undo, the
    error would come from the segment's last line with the inputs updated
    by whatever ran before it."""
    direct, other = _mutations(gm)
    if other:
        if speculates:
            raise UnsafeSpeculation(sites)
        return None
    names = [n.target if isinstance(n.target, str) else getattr(n.target, "__name__", "")
             for n in gm.graph.nodes if n.op in ("call_function", "call_method")]
    checks = run_time_errors(gm) if direct else None
    return Undo(direct, any(h in n.lower() for n in names for h in _RANDOM_HINTS),
                checks is not None, checks or ())


def _storage(node):
    """An id of the (fake) storage behind ``node``'s value, or None."""
    v = node.meta.get("example_value") if hasattr(node, "meta") else None
    if not isinstance(v, torch.Tensor):
        return None
    try:
        return v.untyped_storage()._cdata
    except Exception:  # a value without storage (sparse, nested): unknown
        return None


def aliased_row(graph, outputs) -> types.CodeType | None:
    """The code of a row gathered for a varying index (``x[i]``,
    values/tensors.py) whose copy would differ from eager's view: the row
    (or a view of it) is written in place, is a graph output (Python keeps
    it past the graph), or the tensor it was read from (any view of that
    memory) is written after the read. None when every such row is safe."""
    rows: dict = {}  # fake storage of a gathered row -> its code
    sources: dict = {}  # fake storage its tensor reads -> the row's code
    for n in graph.nodes:
        v = n.meta.get("example_value")
        mark = getattr(v, "_janus_row_of", None)
        if mark is not None:
            key = _storage(n)
            try:
                src = mark[0].untyped_storage()._cdata
            except Exception:  # noqa: BLE001 - memory of unknown origin: a view
                return mark[1]
            if key is None:
                return mark[1]
            rows[key] = sources[src] = mark[1]
            continue
        if not rows or n.op not in ("call_function", "call_method"):
            continue
        for target in _written(n):
            key = _storage(target) if isinstance(target, torch.fx.Node) else None
            if key is None:
                return next(iter(rows.values()))  # written memory unknown
            code = rows.get(key) or sources.get(key)
            if code is not None:
                return code
    for v in outputs:
        key = _storage(v.node) if hasattr(v, "node") else None
        if key is not None and key in rows:
            return rows[key]
    return None


def _mutations(gm) -> tuple[list[str], bool]:
    """(placeholders mutated in place, whether anything else is mutated in
    place that cannot be restored -- memory of unknown origin).

    An in-place update of a view (``a[1:].add_(b)``, ``a.view(-1).mul_(2)``,
    ``a.float()`` returning ``a`` itself) writes into the memory of the inputs
    whose storage it shares: those inputs are restored as a whole. One of a
    fresh intermediate (``(a * 2).add_(b)``) changes nothing the caller sees."""
    direct, other = [], False
    owners: dict = {}  # fake storage -> placeholders holding it
    for n in gm.graph.nodes:
        if n.op == "placeholder":
            key = _storage(n)
            if key is not None:
                owners.setdefault(key, []).append(n.name)
    for n in gm.graph.nodes:
        if n.op not in ("call_function", "call_method"):
            continue
        for target in _written(n):
            if getattr(target, "op", None) == "placeholder":
                names = [target.name]
            else:
                key = _storage(target) if isinstance(target, torch.fx.Node) else None
                if key is None:
                    other = True
                    continue
                names = owners.get(key, ())
            for name in names:
                if name not in direct:
                    direct.append(name)
    return direct, other


# functions updating arguments in place without saying so in their name:
# (flag position, written positions) -- batch statistics update the running
# ones when training (torch.nn.functional's order; torch's own one after it)
_NORM_UPDATES = {
    torch.nn.functional.batch_norm: (5, (1, 2)),
    torch.nn.functional.instance_norm: (5, (1, 2)),
    torch.batch_norm: (5, (3, 4)),
    torch.instance_norm: (5, (3, 4)),
}
_NORM_KEYWORDS = {"training": None, "use_input_stats": None}


def _written(n) -> list:
    """The arguments of call ``n`` it updates in place."""
    name = n.target if isinstance(n.target, str) else getattr(n.target, "__name__", "")
    out = []
    if name == "_set_grad_enabled" or n.target in (operator.and_, operator.or_):
        return out  # `a & b`, `a | b`: the operator module's names end in "_"
    if (name.endswith("_") and not name.endswith("__")) or name in _INPLACE_FUNCTIONS:
        out.append(n.args[0] if n.args else None)
    if "out" in n.kwargs:  # torch.add(a, b, out=c)
        o = n.kwargs["out"]
        out.extend(o if isinstance(o, (list, tuple)) else [o])
    norm = _NORM_UPDATES.get(n.target) if not isinstance(n.target, str) else None
    if norm is not None:
        flag_at, written = norm
        names = ("running_mean", "running_var") if written == (1, 2) else ()
        flag = n.args[flag_at] if len(n.args) > flag_at else next(
            (n.kwargs[k] for k in _NORM_KEYWORDS if k in n.kwargs), False)
        if flag is not False:  # True, or not known while tracing: updated
            for i, at in enumerate(written):
                arg = n.args[at] if len(n.args) > at else (
                    n.kwargs.get(names[i]) if names else None)
                if arg is not None:
                    out.append(arg)
    return out


def _site(code, output, brk) -> Site:
    s = Site(code.co_qualname, code.co_filename, code.co_firstlineno, output.op_count)
    if brk is not None:
        s.break_id, s.break_reason, s.break_hint = brk.id, brk.reason, brk.hint
        s.break_lineno, s.break_source = brk.lineno, brk.source_line
    return s
