"""The exit of a segment that ends at a graph break: run the instruction
natively, then continue in a resume function.

In: the tracer stopped before the breaking instruction (its stack, locals and
cells are the frame's state at that point) and the segment's Rebuilder.
Out: replacement lines that rebuild the stack and the live locals, run the
instruction natively (one step per resumable opcode, :func:`break_tail`), and
hand over to the resume function of the following instruction (or of each
side of a branch) -- through the trampoline, or by looping in place when the
resume function is the segment itself. What the exit hands to other code
objects (resume codes, their dynamic sizes; callees run natively) is
recorded in the trace's ``OutputGraph.resume_codes``/``handover``.
"""
from __future__ import annotations

import types

import torch

from ..diagnostics.logs import artifact_logger
from .breaks import GraphBreak
from .bytecode_info import (
    RESUME_CODES, exception_handlers, instr_offsets, leading_argument, live_locals,
    load_instructions, original_position,
)
from .interpreter import Translator
from .handlers import NATIVE_STEPS
from .rebuild import Rebuilder, function_expr
from .resume import TailCall, resume_code, trampoline
from .values import ListV, MethodV, NullV, ObjV, SymV, TensorV




# instructions a segment can end at: each has a native step, which runs it
# natively in the replacement (handlers/, see break_tail)
_RESUMABLE = frozenset(NATIVE_STEPS)


def not_resumable(code, gb: GraphBreak) -> str | None:
    """Why the frame cannot continue after ``gb`` (None if it can)."""
    if gb.root_ip is None:
        return "no location"
    instrs, _ = load_instructions(code)
    ins = instrs[gb.root_ip]
    if gb.in_handler:
        return "inside an exception handler"
    if ins.name not in _RESUMABLE:
        return f"{ins.name} cannot run on its own"
    return None


def record_break(entry, brk: GraphBreak) -> None:
    """The cache entry of a segment ending at ``brk`` keeps the break (for
    diagnostics) and has the frames the break's native step enters compiled
    even where they are library code (the module a DistributedDataParallel
    wraps: ``compile_codes``, callees.py)."""
    # kept without its traceback, whose frames hold the tracer and through
    # it the user's globals
    brk.__traceback__ = brk.__context__ = brk.__cause__ = None
    entry.breaks.append(brk)
    entry.resume_codes.extend(getattr(brk, "compile_codes", ()))
    lg = artifact_logger("graph_breaks")
    if lg is not None:
        lg.info("%s", brk)


class _Result:
    """The value an instruction run natively leaves on the stack."""

    def __init__(self, name: str) -> None:
        self.name = name


class _Raised(_Result):
    """The exception the instruction run natively raised, for its handler."""


_LASTI = object()  # stack slot: the raising instruction's offset (see _continue)


def break_tail(func, tx: Translator, rb: Rebuilder) -> list[str]:
    """The tail after a break: the breaking instruction's registered native
    step (handlers/, ``@native_step``) runs it natively and hands over.

    An instruction covered by the exception table (in a try body, a
    with-block) runs under its handler's protection, as in the frame: an
    exception it raises goes to the resume function of the handler, with the
    stack cut back to the handler's depth, the offset of the instruction if
    the entry asks for it, and the exception. The hand-over itself runs
    after the ``try`` (the rest of the function is not protected by it)."""
    ins = tx.instrs[tx.stop_at]
    h = exception_handlers(tx.code)[tx.stop_at]
    if h is None:
        return NATIVE_STEPS[ins.name](tx, ins, _Emit(func, tx, rb))
    emit = _Emit(func, tx, rb, protected=True)
    body = NATIVE_STEPS[ins.name](tx, ins, emit)
    stack = list(tx.stack[:h.depth]) + ([_LASTI] if h.lasti else []) + [_Raised("__jf_e")]
    on_raise = _continue(func, tx, rb, stack, h.target, protected=True,
                         raising_at=tx.stop_at)
    lines = ["while True:", "    try:"]
    lines += ["        " + x for x in body]
    lines += ["    except BaseException as __jf_e:"]
    lines += ["        " + x for x in on_raise]
    return lines + ["return __jf_k[0](__jf_k[1], __jf_k[2])"]


class _Emit:
    """What a native step writes the tail of the replacement with: the
    break's instruction run natively, then the hand-over to the resume
    function."""

    def __init__(self, func, tx: Translator, rb: Rebuilder, protected: bool = False) -> None:
        self._func, self._tx, self._rb = func, tx, rb
        self._protected = protected

    @property
    def protected(self) -> bool:
        """Does the native step run under an exception handler of the frame?"""
        return self._protected

    def expr(self, v) -> str:
        """An expression rebuilding ``v`` after the graph."""
        return self._rb.expr(v)

    def const(self, obj) -> str:
        """An expression for the object ``obj`` itself."""
        return self._rb.fb.const(obj)

    def result(self, name: str) -> "_Result":
        """The value the native instruction leaves on the stack, in ``name``."""
        return _Result(name)

    def cont(self, stack_after: list, at: int) -> list[str]:
        """Lines continuing at instruction ``at`` with ``stack_after`` (the
        last statement of the block they are in)."""
        return _continue(self._func, self._tx, self._rb, stack_after, at,
                         protected=self._protected)

    def observed(self, cond: str, lines: list) -> str:
        """A branch condition evaluated once (and observed at a speculation site)."""
        return _observed(self._tx, self._rb, cond, lines)

    def call_hand_over(self, fn, args: list) -> None:
        """A call run natively gets its tensor arguments' dynamic dimensions."""
        _call_hand_over(self._tx, fn, args)


def _observed(tx: Translator, rb: "Rebuilder", cond: str, lines: list) -> str:
    """A branch condition evaluated once; a tensor condition at a site that
    is still being profiled records its outcome (see speculation.py)."""
    if not isinstance(tx.stack[-1], TensorV):
        return cond
    from . import speculation

    orig, index = original_position(tx.code, tx.stop_at)
    site = speculation.site(tx.output.ctx.speculation, orig, index, tx.lineno,
                           tx.code.co_qualname,
                           tx.instrs[tx.stop_at].name.startswith("POP_JUMP_BACKWARD"))
    tx.output.note_site(site)
    lines.append(f"__jf_c = __jf_h_bool({cond})")
    if site.form == "observe":
        lines.append(f"{rb.fb.const(site)}.observe(__jf_c)")
    return "__jf_c"


def _continue(func, tx: Translator, rb: "Rebuilder", stack_after: list, at: int, *,
              protected: bool = False, raising_at: int | None = None):
    """Lines that hand the stack and the live locals to the resume function
    for instruction ``at`` and return its result; ``protected``: inside the
    ``while``/``try`` of break_tail, they leave the hand-over in ``__jf_k``
    and break out. ``raising_at``: the instruction whose offset fills the
    ``_LASTI`` slot (as in the resume code: RERAISE may set it as the
    frame's last instruction)."""
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
    rcode = resume_code(orig, at, null_slots, tuple(live))
    stack_vals = [v.name if isinstance(v, _Result) else
                  repr(_offset_in(rcode, orig, code, raising_at)) if v is _LASTI else rb.expr(v)
                  for v in stack_after if not isinstance(v, NullV)]
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
    fn = function_expr(fb, rcode, cells)
    call = fb.const(TailCall if is_resume else trampoline)
    ordered = values[:1] + stack_vals + values[1:] if lead else stack_vals + values
    args = "".join(x + ", " for x in ordered)
    if protected:
        return [f"__jf_k = ({call}, {fn}, ({args}))", "break"]
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


def _offset_in(rcode, orig, code, index: int) -> int:
    """The offset in ``rcode`` (a resume code of ``orig``) of instruction
    ``index`` of ``code`` (the frame's code, ``orig`` or a resume code)."""
    _, i = original_position(code, index)
    return instr_offsets(rcode)[i - RESUME_CODES[rcode].offset]


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
              if not isinstance(v, (NullV, _Raised)) and v is not _LASTI]
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
