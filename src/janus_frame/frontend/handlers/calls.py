"""Opcode handlers: attribute access (LOAD_ATTR, 3.11's LOAD_METHOD,
3.12's LOAD_SUPER_ATTR), calls (3.11's PRECALL, KW_NAMES before 3.13, CALL,
3.13's CALL_KW, CALL_FUNCTION_EX) and MAKE_FUNCTION (with 3.13's
SET_FUNCTION_ATTRIBUTE); and the native steps of those a graph segment can
end at.

What an attribute or a call means is the kind of the value's business
(values/; real objects go to callees.py); these handlers only lay out the
receiver and the arguments as the running version's calling convention has
them (pyversion.py: where the NULL slot goes).

In/out: the frame's stack.
"""
from __future__ import annotations

from ... import batching
from ..breaks import GraphBreak, would_raise
from ..pyversion import VERSION, split_call, split_call_ex, with_null
from ..values import CellV, Const, FunctionV, ObjV
from .registry import handler, native_step

# MAKE_FUNCTION's flags: what is on the stack below the code object
_MF_DEFAULTS, _MF_KWDEFAULTS, _MF_ANNOTATIONS, _MF_CLOSURE = 0x01, 0x02, 0x04, 0x08

# -- attributes ----------------------------------------------------------------------


def _attr_name(ins) -> tuple[bool, str]:
    """LOAD_ATTR's (method form?, name): 3.12 folded LOAD_METHOD into it."""
    return ins.arg if VERSION >= (3, 12) else (False, ins.arg)


@handler("LOAD_ATTR")
def LOAD_ATTR(tx, ins):
    method, name = _attr_name(ins)
    attr = tx.stack.pop().get_attr(tx, name)
    if method:
        # the bound attribute with a NULL is a valid method-call layout for
        # any callable
        tx.stack.extend(with_null(attr))
    else:
        tx.stack.append(attr)


@handler("LOAD_METHOD", until=(3, 12))
def LOAD_METHOD(tx, ins):
    obj = tx.stack.pop()
    tx.stack.extend(with_null(obj.get_attr(tx, ins.arg)))


@handler("LOAD_SUPER_ATTR", since=(3, 12))
def LOAD_SUPER_ATTR(tx, ins):
    """``super().name`` and ``super(cls, obj).name``: the stack holds the
    global ``super``, the class and the object. The interpreter calls
    ``super(cls, obj)`` when the global is the builtin, else the global with
    the arguments the source gave it (none for the zero-argument form)."""
    method, two_args, name = ins.arg
    glob, cls, obj = tx.popn(3)
    if isinstance(glob, ObjV) and glob.obj is super or two_args:
        sup = glob.call(tx, [cls, obj], {})
    else:
        sup = glob.call(tx, [], {})
    attr = sup.get_attr(tx, name)
    tx.stack.extend(with_null(attr) if method else [attr])


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


def _call(tx, nargs: int, kw_names) -> None:
    """CALL and CALL_KW: the callable's two slots, then ``nargs`` arguments,
    the last ``len(kw_names)`` of them passed by keyword."""
    stack = tx.stack
    args = tx.popn(nargs)
    b = stack.pop()
    a = stack.pop()
    fn, args = split_call(a, b, args)
    kwargs = {}
    if kw_names:
        vals = args[len(args) - len(kw_names):]
        args = args[: len(args) - len(kw_names)]
        kwargs = dict(zip(kw_names, vals))
    stack.append(fn.call(tx, args, kwargs))


@handler("CALL", stack_effect=lambda ins: -ins.arg - 1)
def CALL(tx, ins):
    names, tx.kw_names = tx.kw_names, None
    _call(tx, ins.arg, names)


@handler("CALL_KW", since=(3, 13))
def CALL_KW(tx, ins):
    names = tx.stack.pop()
    _call(tx, ins.arg, names.value)


@handler("CALL_FUNCTION_EX")
def CALL_FUNCTION_EX(tx, ins):
    stack = tx.stack
    kwargs = stack.pop().dict_items(tx) if ins.arg & 1 else {}
    args = stack.pop().iterate(tx)
    b = stack.pop()
    a = stack.pop()
    fn, receiver = split_call_ex(a, b)
    if receiver is not None:
        # a bound receiver in the NULL slot (not emitted by the compiler,
        # but keep the stack honest)
        args = [receiver] + args
    if not all(isinstance(k, str) for k in kwargs):
        raise would_raise(TypeError, "keywords must be strings")
    stack.append(fn.call(tx, args, kwargs))


def _cells(closure) -> tuple:
    for c in closure:
        if not isinstance(c, CellV):
            raise GraphBreak("JF023", "closure of non-cells")
    return tuple(closure)


def _function(tx, code, defaults=(), kwdefaults=None, closure=()) -> FunctionV:
    closure = _cells(closure)
    return FunctionV(code, code.co_qualname, tuple(defaults), dict(kwdefaults or {}),
                     tuple(closure), tx.f_globals)


@handler("MAKE_FUNCTION")
def MAKE_FUNCTION(tx, ins):
    stack = tx.stack
    code = stack.pop().value
    if VERSION >= (3, 13):
        # a bare function; SET_FUNCTION_ATTRIBUTE adds what it has
        stack.append(_function(tx, code))
        return
    flags = ins.arg
    closure = stack.pop().iterate(tx) if flags & _MF_CLOSURE else ()
    # annotations are not needed to run the function (inspect.signature reads them)
    annotations = stack.pop() if flags & _MF_ANNOTATIONS else None
    kwdefaults = stack.pop().dict_items(tx) if flags & _MF_KWDEFAULTS else {}
    defaults = tuple(stack.pop().iterate(tx)) if flags & _MF_DEFAULTS else ()
    fn = _function(tx, code, defaults, kwdefaults, closure)
    fn.annotations = annotations
    stack.append(fn)


@handler("SET_FUNCTION_ATTRIBUTE", since=(3, 13))
def SET_FUNCTION_ATTRIBUTE(tx, ins):
    """3.13: one of MAKE_FUNCTION's former flags, applied to the function
    on top (the value below it)."""
    fn = tx.stack.pop()
    value = tx.stack.pop()
    flag = ins.arg
    if flag == _MF_CLOSURE:
        fn.closure = _cells(value.iterate(tx))
    elif flag == _MF_KWDEFAULTS:
        fn.kwdefaults = dict(value.dict_items(tx))
    elif flag == _MF_DEFAULTS:
        fn.defaults = tuple(value.iterate(tx))
    elif flag == _MF_ANNOTATIONS:  # (inspect.signature reads them)
        fn.annotations = value
    else:
        raise GraphBreak("JF001", f"SET_FUNCTION_ATTRIBUTE {flag}")
    tx.stack.append(fn)

# -- native steps --------------------------------------------------------------------


@native_step("LOAD_ATTR")
def LOAD_ATTR_native(tx, ins, emit):
    method, name = _attr_name(ins)
    stack = list(tx.stack)
    lines = [f"__jf_r = __jf_h_getattr({emit.expr(stack[-1])}, {name!r})"]
    r = emit.result("__jf_r")
    return lines + emit.cont(stack[:-1] + (with_null(r) if method else [r]), tx.stop_at + 1)


@native_step("LOAD_METHOD", until=(3, 12))
def LOAD_METHOD_native(tx, ins, emit):
    stack = list(tx.stack)
    lines = [f"__jf_r = __jf_h_getattr({emit.expr(stack[-1])}, {ins.arg!r})"]
    return lines + emit.cont(stack[:-1] + with_null(emit.result("__jf_r")), tx.stop_at + 1)


@native_step("STORE_ATTR")
def STORE_ATTR_native(tx, ins, emit):
    stack, e = list(tx.stack), emit.expr
    lines = [f"__jf_h_setattr({e(stack[-1])}, {ins.arg!r}, {e(stack[-2])})"]
    return lines + emit.cont(stack[:-2], tx.stop_at + 1)


@native_step("DELETE_ATTR")
def DELETE_ATTR_native(tx, ins, emit):
    stack = list(tx.stack)
    lines = [f"__jf_h_delattr({emit.expr(stack[-1])}, {ins.arg!r})"]
    return lines + emit.cont(stack[:-1], tx.stop_at + 1)


def _call_native(tx, emit, stack: list, n: int, kwn: tuple) -> list[str]:
    """CALL (and CALL_KW, its names already off ``stack``) run natively."""
    e = emit.expr
    vals = stack[len(stack) - n - 2:]
    fn, pos = split_call(vals[0], vals[1], vals[2:])
    kw = pos[len(pos) - len(kwn):] if kwn else []
    pos = pos[:len(pos) - len(kwn)] if kwn else pos
    call_args = [e(x) for x in pos] + [f"{k}={e(x)}" for k, x in zip(kwn, kw)]
    emit.call_hand_over(fn, pos)
    callee = e(fn)
    if tx.break_id == "JF018" and not emit.protected:
        # a recursive call: the outermost one batches the recursion's graph
        # calls by depth (janus_frame/batching.py); not inside a try, whose
        # handler would take the recording's Abort for the user's exception
        call_args.insert(0, callee)
        callee = emit.const(batching.recursive_call)
        tx.batchable_call = True
    lines = [f"__jf_r = {callee}({', '.join(call_args)})"]
    return lines + emit.cont(stack[:len(stack) - n - 2] + [emit.result("__jf_r")],
                             tx.stop_at + 1)


@native_step("CALL")
def CALL_native(tx, ins, emit):
    return _call_native(tx, emit, list(tx.stack), ins.arg, tx.kw_names or ())


@native_step("CALL_KW", since=(3, 13))
def CALL_KW_native(tx, ins, emit):
    stack = list(tx.stack)
    names = stack.pop()
    return _call_native(tx, emit, stack, ins.arg, names.value if isinstance(names, Const) else ())


@native_step("CALL_FUNCTION_EX")
def CALL_FUNCTION_EX_native(tx, ins, emit):
    stack, e = list(tx.stack), emit.expr
    k = 4 if ins.arg & 1 else 3
    vals = stack[len(stack) - k:]
    fn, receiver = split_call_ex(vals[0], vals[1])
    cargs = e(vals[2]) if receiver is None else f"({e(receiver)},) + __jf_h_tuple({e(vals[2])})"
    kwpart = f", **{e(vals[3])}" if ins.arg & 1 else ""
    lines = [f"__jf_r = {e(fn)}(*{cargs}{kwpart})"]
    return lines + emit.cont(stack[:len(stack) - k] + [emit.result("__jf_r")], tx.stop_at + 1)

