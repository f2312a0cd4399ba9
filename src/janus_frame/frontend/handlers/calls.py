"""Opcode handlers: attribute access, calls (PRECALL/KW_NAMES/CALL,
CALL_FUNCTION_EX) and MAKE_FUNCTION; and the native steps of those a graph
segment can end at.

What an attribute or a call means is the kind of the value's business
(values/; real objects go to callees.py); these handlers only lay out the
receiver and the arguments as 3.11's calling convention has them.

In/out: the frame's stack.
"""
from __future__ import annotations

from ..breaks import GraphBreak, would_raise
from ..values import NULL, CellV, FunctionV, NullV
from .registry import handler, native_step

# MAKE_FUNCTION's flags: what is on the stack below the code object
_MF_DEFAULTS, _MF_KWDEFAULTS, _MF_ANNOTATIONS, _MF_CLOSURE = 0x01, 0x02, 0x04, 0x08

# -- attributes ----------------------------------------------------------------------


@handler("LOAD_ATTR")
def LOAD_ATTR(tx, ins):
    obj = tx.stack.pop()
    tx.stack.append(obj.get_attr(tx, ins.arg))


@handler("LOAD_METHOD")
def LOAD_METHOD(tx, ins):
    obj = tx.stack.pop()
    # [NULL, bound-callable] is a valid 3.11 call layout for any callable
    tx.stack.append(NULL)
    tx.stack.append(obj.get_attr(tx, ins.arg))


@handler("STORE_ATTR")
def STORE_ATTR(tx, ins):
    obj = tx.stack.pop()
    value = tx.stack.pop()
    obj.store_attr(tx, ins.arg, value)


@handler("DELETE_ATTR")
def DELETE_ATTR(tx, ins):
    tx.stack.pop().delete_attr(tx, ins.arg)

# -- calls ---------------------------------------------------------------------------


# 3.11 counts a call's effect on the stack at PRECALL (the arguments) and at
# CALL (callable and receiver, and the result); CALL pops everything here
@handler("PRECALL", until=(3, 12), stack_effect=lambda ins: 0)
def PRECALL(tx, ins):
    pass


@handler("KW_NAMES", until=(3, 13))
def KW_NAMES(tx, ins):
    tx.kw_names = ins.arg


@handler("CALL", stack_effect=lambda ins: -ins.arg - 1)
def CALL(tx, ins):
    stack = tx.stack
    args = tx.popn(ins.arg)
    b = stack.pop()
    a = stack.pop()
    if isinstance(a, NullV):
        fn = b
    else:
        fn, args = a, [b] + args
    kwargs = {}
    if tx.kw_names:
        names = tx.kw_names
        tx.kw_names = None
        vals = args[len(args) - len(names):]
        args = args[: len(args) - len(names)]
        kwargs = dict(zip(names, vals))
    stack.append(fn.call(tx, args, kwargs))


@handler("CALL_FUNCTION_EX")
def CALL_FUNCTION_EX(tx, ins):
    stack = tx.stack
    kwargs = stack.pop().dict_items(tx) if ins.arg & 1 else {}
    args = stack.pop().iterate(tx)
    fn = stack.pop()
    null = stack.pop()
    if not isinstance(null, NullV):
        # a bound receiver below the callable (not emitted by 3.11's
        # compiler, but keep the stack honest)
        args = [fn] + args
        fn = null
    if not all(isinstance(k, str) for k in kwargs):
        raise would_raise(TypeError, "keywords must be strings")
    stack.append(fn.call(tx, args, kwargs))


@handler("MAKE_FUNCTION")
def MAKE_FUNCTION(tx, ins):
    flags, stack = ins.arg, tx.stack
    code = stack.pop().value
    closure = stack.pop().iterate(tx) if flags & _MF_CLOSURE else ()
    # annotations are not needed to run the function (inspect.signature reads them)
    annotations = stack.pop() if flags & _MF_ANNOTATIONS else None
    kwdefaults = stack.pop().dict_items(tx) if flags & _MF_KWDEFAULTS else {}
    defaults = tuple(stack.pop().iterate(tx)) if flags & _MF_DEFAULTS else ()
    for c in closure:
        if not isinstance(c, CellV):
            raise GraphBreak("JF023", "closure of non-cells")
    fn = FunctionV(code, code.co_qualname, defaults, dict(kwdefaults), tuple(closure),
                   tx.f_globals)
    fn.annotations = annotations
    stack.append(fn)

# -- native steps --------------------------------------------------------------------


@native_step("LOAD_ATTR")
def LOAD_ATTR_native(tx, ins, emit):
    stack = list(tx.stack)
    lines = [f"__jf_r = __jf_h_getattr({emit.expr(stack[-1])}, {ins.arg!r})"]
    return lines + emit.cont(stack[:-1] + [emit.result("__jf_r")], tx.stop_at + 1)


@native_step("LOAD_METHOD")
def LOAD_METHOD_native(tx, ins, emit):
    stack = list(tx.stack)
    lines = [f"__jf_r = __jf_h_getattr({emit.expr(stack[-1])}, {ins.arg!r})"]
    return lines + emit.cont(stack[:-1] + [NULL, emit.result("__jf_r")], tx.stop_at + 1)


@native_step("STORE_ATTR")
def STORE_ATTR_native(tx, ins, emit):
    stack, e = list(tx.stack), emit.expr
    lines = [f"__jf_h_setattr({e(stack[-1])}, {ins.arg!r}, {e(stack[-2])})"]
    return lines + emit.cont(stack[:-2], tx.stop_at + 1)


@native_step("CALL")
def CALL_native(tx, ins, emit):
    stack, e, n = list(tx.stack), emit.expr, ins.arg
    vals = stack[len(stack) - n - 2:]
    a, b, cargs = vals[0], vals[1], vals[2:]
    fn, pos = (b, cargs) if isinstance(a, NullV) else (a, [b] + cargs)
    kwn = tx.kw_names or ()
    kw = pos[len(pos) - len(kwn):] if kwn else []
    pos = pos[:len(pos) - len(kwn)] if kwn else pos
    call_args = [e(x) for x in pos] + [f"{k}={e(x)}" for k, x in zip(kwn, kw)]
    emit.call_hand_over(fn, pos)
    lines = [f"__jf_r = {e(fn)}({', '.join(call_args)})"]
    return lines + emit.cont(stack[:len(stack) - n - 2] + [emit.result("__jf_r")],
                             tx.stop_at + 1)


@native_step("CALL_FUNCTION_EX")
def CALL_FUNCTION_EX_native(tx, ins, emit):
    stack, e = list(tx.stack), emit.expr
    k = 4 if ins.arg & 1 else 3
    vals = stack[len(stack) - k:]
    fn, cargs = vals[1], vals[2]
    kwpart = f", **{e(vals[3])}" if ins.arg & 1 else ""
    lines = [f"__jf_r = {e(fn)}(*{e(cargs)}{kwpart})"]
    return lines + emit.cont(stack[:len(stack) - k] + [emit.result("__jf_r")], tx.stop_at + 1)

