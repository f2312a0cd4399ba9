"""Frame conversion: one frame in, one guarded cache entry out.

In: the frame's function and its argument slots (from the hook), and the
compile context (configuration, backend, speculation store; context.py).
Out: a :class:`CompiledEntry`: a guard over the argument slots, and a
replacement that loads the graph's inputs through their sources, calls the
backend's compiled graph, and then either rebuilds the frame's return value
or -- after a graph break -- rebuilds the Python stack and the live locals,
runs the unsupported instruction natively and continues in a resume function
(see resume.py) that the hook compiles in turn.

A break is found by tracing the whole frame; the frame is then traced again
up to the instruction during which the break happened (its own instruction,
e.g. the CALL when the break was inside an inlined callee), so the state the
segment ends with is exactly the state before that instruction.

Raises :class:`SkipFrame` when the frame records no tensor operation and has
no break, and :class:`GraphBreak` when the break cannot be resumed from (the
whole frame then runs natively).
"""
from __future__ import annotations

import contextlib
import logging
import operator
import time
import types
import weakref

import torch

from .. import _C
from ..diagnostics.logs import artifact_logger
from ..diagnostics.probe import PROBE, Site
from ..cache import CompiledEntry, SkipFrame, stats
from .breaks import GraphBreak, NoPredication
from .codegen import FunctionBuilder, nargs_of, slot_names
from .handlers import NATIVE_STEPS
from .interpreter import Translator
from .output import NeedsShapeEnv, OutputGraph
from .bytecode_info import RESUME_CODES, leading_argument, live_locals, load_instructions, \
    original_position, try_regions
from .resume import TailCall, make_function, resume_code, trampoline
from .sources import ArgSource, ClosureSource
from .values import ListV, MethodV, NullV, ObjV, SymV, TensorV, Value

# instructions a segment can end at: each has a native step, which runs it
# natively in the replacement (handlers/, see _break_tail)
_RESUMABLE = frozenset(NATIVE_STEPS)


def compile_frame(func, args: tuple, ctx) -> CompiledEntry:
    symbolic = False
    for _ in range(8):  # each retrace settles one question (shape env, a site)
        try:
            return _compile(func, args, ctx, symbolic)
        except NeedsShapeEnv:
            symbolic = True
        except _UnsafeSpeculation as e:
            for site in e.args[0]:  # those sites break the graph from now on
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
        return _build(func, args, ctx, None, symbolic)
    except GraphBreak as gb:
        if ctx.strict or _not_resumable(func.__code__, gb) is not None:
            raise
        brk = gb
    try:
        entry = _build(func, args, ctx, brk, symbolic)
    except GraphBreak as e:
        if e.filename is None:  # the state at the break cannot be handed back
            brk.detail += f" (the frame then runs natively: {e.reason})"
            raise brk from None
        raise
    except (NeedsShapeEnv, _UnsafeSpeculation, NoPredication):
        raise
    except Exception as e:  # noqa: BLE001
        # no resume function could be made here (e.g. bytecode whose stack
        # the assembler cannot follow): the frame runs natively after all
        import logging

        logging.getLogger("janus_frame").debug("cannot resume after %s: %s", brk.id, e)
        raise brk from None
    # kept for diagnostics: without its traceback, whose frames hold the
    # tracer and through it the user's globals
    brk.__traceback__ = brk.__context__ = brk.__cause__ = None
    entry.breaks.append(brk)
    lg = artifact_logger("graph_breaks")
    if lg is not None:
        lg.info("%s", brk)
    return entry


def _not_resumable(code, gb: GraphBreak) -> str | None:
    """Why the frame cannot continue after ``gb`` (None if it can)."""
    if gb.root_ip is None:
        return "no location"
    instrs, _ = load_instructions(code)
    ins = instrs[gb.root_ip]
    if ins.name not in _RESUMABLE:
        return f"{ins.name} cannot run on its own"
    if try_regions(code)[gb.root_ip]:
        return "inside a try or with block"
    return None


def _trace(func, args, ctx, stop_at, symbolic):
    code = func.__code__
    names = slot_names(code)
    output = OutputGraph(ctx, code, nargs_of(code), symbolic, ctx.hints)
    cells = {}
    for i, name in enumerate(code.co_freevars):
        cells[name] = output.real_cell(func.__closure__[i], name, ClosureSource(name))
    tx = Translator(output, code, func.__globals__, {}, cells, root_func=func)
    tx.lazy_args = {name: (args[i], ArgSource(name, i)) for i, name in enumerate(names)}
    tx.stop_at = stop_at
    result = tx.run()
    return output, tx, result


def _build(func, args, ctx, brk: GraphBreak | None, symbolic: bool = False) -> CompiledEntry:
    t0 = time.perf_counter()
    code = func.__code__
    output, tx, result = _trace(func, args, ctx, brk.root_ip if brk else None, symbolic)
    fb = FunctionBuilder(code, nargs_of(code))
    rb = Rebuilder(fb, output.initial_grad_enabled)
    rb.sym_text = output.sym_text
    # a speculated branch's predicate is a graph output, checked first
    checks = [f"__jf_h_bool({rb.expr(pred)}) is not {predicted!r}"
              for pred, predicted, _ in output.speculations]
    spec_sites = [site for _, _, site in output.speculations]
    if brk is None:
        if output.op_count == 0 and not output.effects and not output.inputs:
            # pure Python: skipped for good. (A frame that only passes tensors
            # along gets an entry under its guards: other inputs may need ops.)
            raise SkipFrame("no tensor operations")
        tail = [f"return {rb.expr(result)}"]
    else:
        if not tx.stopped:
            raise brk
        tail = _break_tail(func, tx, rb)
    rb.set_grad_mode(output.grad_enabled)  # the mode the frame is in at this point
    replay = output.effects.replay(rb)  # before finish: it may need graph outputs
    gm, used = output.finish(rb.outputs)
    body = []
    graphs = []
    site = _site(code, output, brk)
    if output.op_count or rb.outputs:
        lg = artifact_logger("graphs")
        if lg is not None:
            lg.info("graph for %s (%s:%d)\n%s", code.co_qualname, code.co_filename,
                    code.co_firstlineno, gm.print_readable(print_output=False))
        # the backend's code (Inductor's generated modules, runtime wrappers)
        # runs with janus_frame off: it is not the user's to compile
        with _tracing(output):
            compiled = _C.Wrapper(ctx.backend(gm, [real for _, real in used]), None)
        # inputs are loaded before the guarded call: their sources were just
        # validated by the guard, so a failure there is a bug to surface, not
        # a reason to rerun the frame natively
        for i, (v, _) in enumerate(used):
            body.append(f"__jf_i{i} = {v.source.expr()}")
        inputs = ", ".join(f"__jf_i{i}" for i in range(len(used)))
        call = f"__jf_o = {fb.const(compiled)}({inputs})"
        p = fb.const(PROBE)
        body.append(f"__jf_t = {p}.clock() if {p}.active else 0.0")
        input_exprs = {v.node.name: f"__jf_i{i}" for i, (v, _) in enumerate(used)}
        body += _guarded_call(func, fb, gm, call, checks, spec_sites, input_exprs, site)
        body.append(f"if __jf_t: __jf_t = {p}.graph_done({fb.const(site)}, __jf_t)")
        graphs.append(gm)
    elif brk is not None:
        p = fb.const(PROBE)
        body.append(f"__jf_t = {p}.clock() if {p}.active else 0.0")
    if brk is not None:  # time the instruction left to Python (the cost of the break)
        tail = _time_native(tail, fb.const(PROBE), fb.const(site))
    body += rb.lines + replay + tail
    if rb.loop_guard is not None:
        # a loop body continuing in itself: the replacement loops, checking
        # its own guard instead of going through the trampoline and the cache
        body = ["while True:"] + ["    " + line for line in body]
    replacement = fb.build("__jf_replacement", body, tx.lineno, "replacement", func.__globals__,
                           func.__closure__)
    for spec in output.spec_codes:  # a branch site changing form recompiles this entry
        g = output.guards
        g.add(f"{g.fb.const(spec)}.epoch == {spec.epoch}",
              f"speculation state of {code.co_qualname} unchanged (epoch {spec.epoch})")
    for fn, src, expected, desc in getattr(brk, "guard_calls", ()):
        g = output.guards  # a condition the break depends on (calls.stand_in)
        g.add(f"{g.fb.const(fn)}({src.expr()}) is {expected!r}", desc)
    output.shape_guards()  # after the backend: it may have added conditions
    guard, explain_failure = output.guards.build(code.co_firstlineno, func.__globals__,
                                                 func.__closure__)
    if rb.loop_guard is not None:
        rb.loop_guard[0] = guard
    lg = artifact_logger("guards")
    if lg is not None:
        lg.info("guards for %s (%s:%d)\n  %s", code.co_qualname, code.co_filename,
                code.co_firstlineno, "\n  ".join(output.guards.lines()))
    site.compile_seconds = time.perf_counter() - t0
    entry = CompiledEntry(
        guard=guard, replacement=replacement, guard_lines=output.guards.lines(),
        explain_failure=explain_failure, graphs=graphs, breaks=[],
        compile_seconds=site.compile_seconds, site=site,
        resume_codes=output.resume_codes, handover=output.handover,
    )
    return entry


def _tracing(output):
    """Backends see the graph's fake inputs through the tracing context:
    AOTAutograd and Inductor then reuse the symbolic sizes of dynamic inputs
    (and compile size-generic code) instead of specialising on the example
    inputs' sizes."""
    if not output.sym_inputs:
        return contextlib.nullcontext()
    from torch._guards import TracingContext, tracing

    return tracing(TracingContext(output.fake_mode))


def _site(code, output, brk) -> Site:
    s = Site(code.co_qualname, code.co_filename, code.co_firstlineno, output.op_count)
    if brk is not None:
        s.break_id, s.break_reason, s.break_hint = brk.id, brk.reason, brk.hint
        s.break_lineno, s.break_source = brk.lineno, brk.source_line
    return s


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


_RANDOM_HINTS = ("rand", "dropout", "bernoulli", "normal", "multinomial", "uniform",
                 "exponential", "cauchy", "geometric", "poisson")


_INPLACE_FUNCTIONS = {"setitem", "iadd", "isub", "imul", "itruediv", "ifloordiv", "imod",
                      "ipow", "imatmul", "iand", "ior", "ixor", "ilshift", "irshift",
                      "_set_grad_enabled"}


def _mutations(gm) -> tuple[list[str], bool]:
    """(placeholders mutated in place, whether anything else is mutated in
    place -- a view that may alias an input)."""
    direct, other = [], False
    for n in gm.graph.nodes:
        if n.op not in ("call_function", "call_method"):
            continue
        name = n.target if isinstance(n.target, str) else getattr(n.target, "__name__", "")
        if name == "_set_grad_enabled" or n.target in (operator.and_, operator.or_):
            continue  # `a & b`, `a | b`: the operator module's names end in "_"
        if (name.endswith("_") and not name.endswith("__")) or name in _INPLACE_FUNCTIONS:
            target = n.args[0] if n.args else None
            if getattr(target, "op", None) == "placeholder":
                if target.name not in direct:
                    direct.append(target.name)
            else:
                other = True
    return direct, other


class _UnsafeSpeculation(Exception):
    """The segment mutates tensors that cannot be restored on a miss."""


def _guarded_call(func, fb: FunctionBuilder, gm, call: str, checks: list[str],
                  sites: list, input_exprs: dict, probe_site) -> list[str]:
    """The graph call, and what happens when the segment's assumptions fail.

    Nothing visible has happened when the graph returns (side effects are
    replayed after it) except in-place tensor updates. If the graph raises,
    or a speculated branch went the other way (``checks``), the segment's
    results are discarded -- inputs it updated in place restored, the RNG
    state restored if it drew random numbers -- and the frame reruns from its
    original bytecode: the call gives exactly eager's results, side effects
    and exceptions (from the user's own line)."""
    direct, other = _mutations(gm)
    if other or (direct and not checks):
        if checks:
            raise _UnsafeSpeculation(sites)
        return [call]  # cannot be undone: no rerun (the exception propagates)
    names = [n.target if isinstance(n.target, str) else getattr(n.target, "__name__", "")
             for n in gm.graph.nodes if n.op in ("call_function", "call_method")]
    random = any(h in n.lower() for n in names for h in _RANDOM_HINTS)
    native = _native_code(func.__code__)
    slots = "".join(f"__jf_a{i}, " for i in range(nargs_of(func.__code__)))
    fn = _function_expr(fb, native, [f"__jf_cell_{n}" for n in func.__code__.co_freevars])
    undo = []
    lines = []
    if random:
        lines.append(f"__jf_rng = {fb.const(torch.get_rng_state)}()")
        undo.append(f"{fb.const(torch.set_rng_state)}(__jf_rng)")
    for i, name in enumerate(direct):
        lines.append(f"__jf_saved{i} = {input_exprs[name]}.clone()")
        undo.append(f"{input_exprs[name]}.copy_(__jf_saved{i})")
    lines += ["try:", f"    {call}", "except Exception:"]
    lines += ["    " + u for u in undo]
    lines.append(f"    {fb.const(_note_rerun)}({fb.const(probe_site)})")
    lines.append(f"    return {fn}({slots})")
    for check, site in zip(checks, sites):
        k = fb.const(site)
        lines.append(f"if {check}:")
        lines.append(f"    {k}.miss()")
        lines += ["    " + u for u in undo]
        lines.append(f"    return {fn}({slots})")
    for site in sites:
        lines.append(f"{fb.const(site)}.hit()")
    return lines


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
        n = nargs_of(code)
        # The extra constant keeps it distinct from the original when both are
        # constants of one generated function: the bytecode assembler merges
        # constants that marshal alike, and a resume function continuing in
        # itself would then hand over to this natively-run copy.
        native = code.replace(co_argcount=n, co_posonlyargcount=0, co_kwonlyargcount=0,
                              co_flags=code.co_flags & ~(0x04 | 0x08),
                              co_consts=code.co_consts + ("janus_frame: runs natively",))
        _native_codes[code] = native
    _C.set_code_strategy(native, _C.SKIP, _C.DEFAULT)  # again after a reset()
    return native


# ---------------------------------------------------------------------------
# After a break: run the instruction natively, then continue


class _Result:
    """The value an instruction run natively leaves on the stack."""

    def __init__(self, name: str) -> None:
        self.name = name


class _Emit:
    """What a native step (handlers/, ``@native_step``) writes the tail of
    the replacement with: the break's instruction run natively, then the
    hand-over to the resume function."""

    def __init__(self, func, tx: Translator, rb: "Rebuilder") -> None:
        self._func, self._tx, self._rb = func, tx, rb

    def expr(self, v: Value) -> str:
        """An expression rebuilding ``v`` after the graph."""
        return self._rb.expr(v)

    def const(self, obj) -> str:
        """An expression for the object ``obj`` itself."""
        return self._rb.fb.const(obj)

    def result(self, name: str) -> "_Result":
        """The value the native instruction leaves on the stack, in ``name``."""
        return _Result(name)

    def cont(self, stack_after: list, at: int) -> list[str]:
        """Lines continuing at instruction ``at`` with ``stack_after``."""
        return _continue(self._func, self._tx, self._rb, stack_after, at)

    def observed(self, cond: str, lines: list) -> str:
        """A branch condition evaluated once (and observed at a speculation site)."""
        return _observed(self._tx, self._rb, cond, lines)

    def call_hand_over(self, fn, args: list) -> None:
        """A call run natively gets its tensor arguments' dynamic dimensions."""
        _call_hand_over(self._tx, fn, args)


def _break_tail(func, tx: Translator, rb: "Rebuilder") -> list[str]:
    ins = tx.instrs[tx.stop_at]
    return NATIVE_STEPS[ins.name](tx, ins, _Emit(func, tx, rb))


def _function_expr(fb: FunctionBuilder, code, cells) -> str:
    """An expression making a function of ``code`` in the running frame's
    globals, with closure ``cells`` (cell expressions). Made at run time: a
    function object kept as a constant would tie the cache (invisible to the
    garbage collector) to the user's globals."""
    closure = "(" + "".join(f"{c}, " for c in cells) + ")" if cells else "None"
    return f"{fb.const(make_function)}({fb.const(code)}, __jf_h_globals(), {closure})"


def _observed(tx: Translator, rb: "Rebuilder", cond: str, lines: list) -> str:
    """A branch condition evaluated once; a tensor condition at a site that
    is still being profiled records its outcome (see speculation.py)."""
    if not isinstance(tx.stack[-1], TensorV):
        return cond
    from . import speculation

    orig, index = original_position(tx.code, tx.stop_at)
    site = speculation.site(tx.output.ctx.speculation, orig, index, tx.lineno,
                           tx.code.co_qualname)
    tx.output.spec_codes.add(site.code_spec)
    lines.append(f"__jf_c = __jf_h_bool({cond})")
    if site.form == "observe":
        lines.append(f"{rb.fb.const(site)}.observe(__jf_c)")
    return "__jf_c"


def _continue(func, tx: Translator, rb: "Rebuilder", stack_after: list, at: int):
    """Lines that hand the stack and the live locals to the resume function
    for instruction ``at`` and return its result."""
    code = func.__code__
    is_resume = code in RESUME_CODES
    orig, at = original_position(code, at)
    live = []
    values = []
    lead = leading_argument(orig)
    names = sorted(live_locals(orig, at) | ({lead} if lead else set()))
    if lead:
        names.remove(lead)
        names.insert(0, lead)
    for name in names:
        if name in tx.locals:
            live.append(name)
            values.append(rb.expr(tx.locals[name]))
        elif name in tx.lazy_args:
            live.append(name)
            values.append(tx.lazy_args[name][1].expr())
    null_slots = tuple(isinstance(v, NullV) for v in stack_after)
    stack_vals = [v.name if isinstance(v, _Result) else rb.expr(v)
                  for v in stack_after if not isinstance(v, NullV)]
    rcode = resume_code(orig, at, null_slots, tuple(live))
    tx.output.resume_codes.append(rcode)
    if tx.output.sym_inputs or tx.output.dynamic:
        _hand_over_dynamic(rcode, tx, live, stack_after)
    fb = rb.fb
    cells = []
    for name in orig.co_cellvars + orig.co_freevars:
        if name in code.co_freevars:
            cells.append(f"__jf_cell_{name}")
        else:  # a cell of this frame: one new cell holding its current contents,
            # shared with the functions built here that captured it
            c = tx.cells.get(name)
            cells.append(rb.expr(c) if c is not None else f"{fb.const(types.CellType)}()")
    fn = _function_expr(fb, rcode, cells)
    call = fb.const(TailCall if is_resume else trampoline)
    ordered = values[:1] + stack_vals + values[1:] if lead else stack_vals + values
    args = "".join(x + ", " for x in ordered)
    if rcode is code and not code.co_freevars and not code.co_cellvars and \
            code.co_argcount == len(ordered):
        # the next iteration of a loop whose body is this very segment: when
        # this entry's guard holds for the next arguments, run again in
        # place (no tail call, no cache lookup); else hand over as usual
        if rb.loop_guard is None:
            rb.loop_guard = [None]
        holder = fb.const(rb.loop_guard)
        slots = "".join(f"__jf_a{i}, " for i in range(len(ordered)))
        return [f"__jf_next = ({args})",
                f"if {holder}[0](*__jf_next):",
                f"    {slots}= __jf_next",
                "    continue",
                f"return {call}({fn}, __jf_next)"]
    return [f"return {call}({fn}, ({args}))"]


# ---------------------------------------------------------------------------
# Rebuilding Python values after the graph ran


class Rebuilder:
    """Python source that rebuilds symbolic values after the graph ran
    (``__jf_o`` holds the graph's outputs). Objects whose identity matters
    (containers, objects built while tracing) are built once into a
    temporary, so every reference sees the same object."""

    def __init__(self, fb: FunctionBuilder, grad_enabled: bool) -> None:
        self.fb = fb
        self.outputs: list[TensorV] = []
        self._out_index: dict = {}
        self.lines: list[str] = []
        self._memo: dict[int, str] = {}
        self.native_grad = grad_enabled  # grad mode after the graph (it restores the entry's)
        self.sym_text = None  # SymV -> Python expression over the inputs' sizes
        self.loop_guard = None  # [guard] when the replacement loops (see _continue)

    def set_grad_mode(self, enabled: bool) -> None:
        if self.native_grad != enabled:
            self.lines.append(f"{self.fb.const(torch._C._set_grad_enabled)}({enabled!r})")
            self.native_grad = enabled

    def reenter(self, ex: ExitV) -> str:
        """Enter the with-block of ``ex`` natively; its ``__exit__`` goes
        back on the stack for the resume function."""
        ctx = ex.ctx
        name = f"__jf_ctx{len(self._memo)}"
        if ctx.kind == "autocast":
            dev, dtype, enabled, cache = ctx.arg
            self.lines.append(
                f"{name} = {self.fb.const(torch.autocast)}({dev!r}, dtype={self.fb.const(dtype)}, "
                f"enabled={enabled!r}, cache_enabled={cache!r})")
            self.lines.append(f"{name}.__enter__()")
            return f"{name}.__exit__"
        if ctx.kind not in ("grad", "grad_set"):
            raise GraphBreak("JF016", f"a graph break inside a {ctx.kind} with-block")
        self.set_grad_mode(ex.restore)
        if ctx.kind == "grad":
            cls = torch.enable_grad if ctx.arg else torch.no_grad
            self.lines.append(f"{name} = {self.fb.const(cls)}()")
        else:
            self.lines.append(f"{name} = {self.fb.const(torch.set_grad_enabled)}({ctx.arg!r})")
        self.lines.append(f"{name}.__enter__()")
        self.native_grad = bool(ctx.arg)
        return f"{name}.__exit__"

    def snapshot(self, v: Value) -> str:
        """An expression for ``v`` safe to use after side effects are replayed."""
        return self.expr(v)

    def expr(self, v: Value) -> str:
        hit = self._memo.get(id(v))
        if hit is not None:
            return hit
        text, needs_temp = self._build(v)
        if needs_temp:
            name = f"__jf_v{len(self._memo)}"
            self.lines.append(f"{name} = {text}")
            self._memo[id(v)] = name
            return name
        return text

    def _build(self, v: Value) -> tuple[str, bool]:
        return v.reconstruct(self)


def _hand_over_dynamic(rcode, tx, live: list, stack_after: list) -> None:
    """A trace with dynamic sizes hands its dynamism to the resume function
    it continues in, instead of letting it find out by recompiling: tensors
    keep their dynamic dimensions, sizes and the values a loop produces
    (``__jf_r`` of FOR_ITER) stay dynamic ints, lists (grown in a loop over
    a dynamic size) get a dynamic length."""
    dyn = tx.output.handover.setdefault(rcode, set())
    mine = tx.output.dynamic
    for n in live:
        if n not in tx.locals:  # an argument the trace did not read: as it came
            name = f"L[{n!r}]"
            dyn.update(d for d in mine if d == name or isinstance(d, tuple) and d[0] == name)
    if not tx.output.sym_inputs:
        return
    named = [(f"L[{n!r}]", tx.locals[n]) for n in live if n in tx.locals]
    named += [(f"L['__jf_s{i}']", v) for i, v in enumerate(stack_after)
              if not isinstance(v, NullV)]
    for name, v in named:
        if isinstance(v, TensorV):
            dyn.update((name, d) for d, n in enumerate(v.fake.shape)
                       if isinstance(n, torch.SymInt))
        elif isinstance(v, (SymV, _Result, ListV)):
            dyn.add(name)
        if isinstance(v, _Result):
            # the result of a native call on dynamic inputs: its leading
            # (batch / sequence) dimensions are dynamic too if it is a tensor
            dyn.update(((name, 0), (name, 1)))


def _call_hand_over(tx, fn, args: list) -> None:
    """A call run natively at a break (its callee broke while inlined) gets
    the dynamic dimensions of its tensor arguments as its own from the start."""
    if not tx.output.sym_inputs:
        return
    obj = fn.obj if isinstance(fn, ObjV) else None
    func = getattr(fn, "func", None) if isinstance(fn, MethodV) else None
    skip = 1 if func is not None else 0
    if isinstance(obj, torch.nn.Module):
        func, skip = getattr(type(obj).forward, "__func__", type(obj).forward), 1
    elif isinstance(obj, types.FunctionType):
        func = obj
    code = getattr(func, "__code__", None)
    if code is None:
        return
    dyn = tx.output.handover.setdefault(code, set())
    names = code.co_varnames[skip:code.co_argcount]
    for name, v in zip(names, args):
        if isinstance(v, TensorV):
            dyn.update((f"L[{name!r}]", d) for d, n in enumerate(v.fake.shape)
                       if isinstance(n, torch.SymInt))
