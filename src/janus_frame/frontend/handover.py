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

from .breaks import GraphBreak
from .bytecode_info import (
    RESUME_CODES, leading_argument, live_locals, load_instructions, original_position,
    try_regions,
)
from .interpreter import Translator
from .ops_arith import BINARY, COMPARE
from .rebuild import Rebuilder, function_expr
from .resume import TailCall, resume_code, trampoline
from .values import NULL, ListV, MethodV, NullV, ObjV, SymV, TensorV


_SENTINEL = object()


# instructions a segment can end at: each is re-expressed natively in the
# replacement (see break_tail)
_RESUMABLE = {
    "CALL", "CALL_FUNCTION_EX", "LOAD_ATTR", "LOAD_METHOD", "STORE_ATTR", "STORE_SUBSCR",
    "DELETE_SUBSCR", "BINARY_SUBSCR", "BINARY_OP", "COMPARE_OP", "UNARY_NOT", "GET_ITER",
    "FOR_ITER", "POP_JUMP_FORWARD_IF_TRUE", "POP_JUMP_FORWARD_IF_FALSE",
    "POP_JUMP_BACKWARD_IF_TRUE", "POP_JUMP_BACKWARD_IF_FALSE", "JUMP_IF_TRUE_OR_POP",
    "JUMP_IF_FALSE_OR_POP", "BEFORE_WITH",
}


def not_resumable(code, gb: GraphBreak) -> str | None:
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


class _Result:
    """The value an instruction run natively leaves on the stack."""

    def __init__(self, name: str) -> None:
        self.name = name


def break_tail(func, tx: Translator, rb: "Rebuilder") -> list[str]:
    idx = tx.stop_at
    ins = tx.instrs[idx]
    stack = list(tx.stack)
    e = rb.expr
    lines: list[str] = []
    name = ins.name
    R = _Result("__jf_r")
    fallthrough = idx + 1

    def cont(stack_after, at):
        return _continue(func, tx, rb, stack_after, at)

    if name == "CALL":
        n = ins.arg
        vals = stack[len(stack) - n - 2:]
        a, b, cargs = vals[0], vals[1], vals[2:]
        fn, pos = (b, cargs) if isinstance(a, NullV) else (a, [b] + cargs)
        kwn = tx.kw_names or ()
        kw = pos[len(pos) - len(kwn):] if kwn else []
        pos = pos[:len(pos) - len(kwn)] if kwn else pos
        call_args = [e(x) for x in pos] + [f"{k}={e(x)}" for k, x in zip(kwn, kw)]
        _call_hand_over(tx, fn, pos)
        lines.append(f"__jf_r = {e(fn)}({', '.join(call_args)})")
        lines += cont(stack[:len(stack) - n - 2] + [R], fallthrough)
    elif name == "CALL_FUNCTION_EX":
        k = 4 if ins.arg & 1 else 3
        vals = stack[len(stack) - k:]
        fn, cargs = vals[1], vals[2]
        kwpart = f", **{e(vals[3])}" if ins.arg & 1 else ""
        lines.append(f"__jf_r = {e(fn)}(*{e(cargs)}{kwpart})")
        lines += cont(stack[:len(stack) - k] + [R], fallthrough)
    elif name in ("LOAD_ATTR", "LOAD_METHOD"):
        lines.append(f"__jf_r = __jf_h_getattr({e(stack[-1])}, {ins.arg!r})")
        after = [NULL, R] if name == "LOAD_METHOD" else [R]
        lines += cont(stack[:-1] + after, fallthrough)
    elif name == "STORE_ATTR":
        lines.append(f"__jf_h_setattr({e(stack[-1])}, {ins.arg!r}, {e(stack[-2])})")
        lines += cont(stack[:-2], fallthrough)
    elif name == "STORE_SUBSCR":
        lines.append(f"{e(stack[-2])}[{e(stack[-1])}] = {e(stack[-3])}")
        lines += cont(stack[:-3], fallthrough)
    elif name == "DELETE_SUBSCR":
        lines.append(f"del {e(stack[-2])}[{e(stack[-1])}]")
        lines += cont(stack[:-2], fallthrough)
    elif name == "BINARY_SUBSCR":
        lines.append(f"__jf_r = {e(stack[-2])}[{e(stack[-1])}]")
        lines += cont(stack[:-2] + [R], fallthrough)
    elif name in ("BINARY_OP", "COMPARE_OP"):
        op = (BINARY if name == "BINARY_OP" else COMPARE)[ins.arg.name]
        lines.append(f"__jf_r = {rb.fb.const(op)}({e(stack[-2])}, {e(stack[-1])})")
        lines += cont(stack[:-2] + [R], fallthrough)
    elif name == "UNARY_NOT":
        lines.append(f"__jf_r = not {e(stack[-1])}")
        lines += cont(stack[:-1] + [R], fallthrough)
    elif name == "BEFORE_WITH":
        mgr = e(stack[-1])
        # as the interpreter does: __exit__ looked up before __enter__ runs
        lines.append(f"__jf_x = __jf_h_type({mgr}).__exit__.__get__({mgr})")
        lines.append(f"__jf_r = __jf_h_type({mgr}).__enter__({mgr})")
        lines += cont(stack[:-1] + [_Result("__jf_x"), R], fallthrough)
    elif name == "GET_ITER":
        lines.append(f"__jf_r = __jf_h_iter({e(stack[-1])})")
        lines += cont(stack[:-1] + [R], fallthrough)
    elif name == "FOR_ITER":
        it = stack[-1]
        sentinel = rb.fb.const(_SENTINEL)
        lines.append(f"__jf_r = __jf_h_next({e(it)}, {sentinel})")
        lines.append(f"if __jf_r is {sentinel}:")
        lines += ["    " + x for x in cont(stack[:-1], tx.labels[ins.arg])]
        lines += cont(stack + [R], fallthrough)
    elif name.startswith("POP_JUMP"):
        cond = _observed(tx, rb, e(stack[-1]), lines)
        jump_when = name.endswith("TRUE")
        target = tx.labels[ins.arg]
        lines.append(f"if {'' if jump_when else 'not '}{cond}:")
        lines += ["    " + x for x in cont(stack[:-1], target)]
        lines += cont(stack[:-1], fallthrough)
    elif name in ("JUMP_IF_TRUE_OR_POP", "JUMP_IF_FALSE_OR_POP"):
        cond = _observed(tx, rb, e(stack[-1]), lines)
        jump_when = name == "JUMP_IF_TRUE_OR_POP"
        lines.append(f"if {'' if jump_when else 'not '}{cond}:")
        lines += ["    " + x for x in cont(stack, tx.labels[ins.arg])]
        lines += cont(stack[:-1], fallthrough)
    else:  # guarded by _RESUMABLE
        raise AssertionError(name)
    return lines


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
    fn = function_expr(fb, rcode, cells)
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
