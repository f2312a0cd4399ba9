"""Opcode handlers for what Python 3.12 added to the topics of operators.py,
containers.py, control.py and generators.py (the loads, stores and calls 3.12
and 3.13 added are beside their 3.11 forms in variables.py and calls.py):
two-operand slices, ``END_FOR``, ``RETURN_CONST``, the intrinsics that
replaced several 3.11 opcodes (and the exception handler around a
generator's body), and ``yield from``'s ``END_SEND`` and ``CLEANUP_THROW``.

Semantics are shared with the 3.11 forms, never copied: a slice is
``BUILD_SLICE`` + subscript, an intrinsic is the operator it replaced.

In/out: the frame's stack.
"""
from __future__ import annotations

import operator

from bytecode import Intrinsic1Op, Intrinsic2Op

from ..breaks import GraphBreak
from ..pyversion import VERSION
from ..values import Const, SliceV, TupleV
from .exceptions import raising
from .registry import FrameReturn, handler, native_step

# -- slices (3.11: BUILD_SLICE 2, then BINARY_SUBSCR / STORE_SUBSCR) ------------------


def _slice(tx) -> SliceV:
    stop = tx.stack.pop()
    start = tx.stack.pop()
    return SliceV(start, stop, Const(None))


@handler("BINARY_SLICE", since=(3, 12))
def BINARY_SLICE(tx, ins):
    key = _slice(tx)
    obj = tx.stack.pop()
    tx.stack.append(obj.get_item(tx, key))


@handler("STORE_SLICE", since=(3, 12))
def STORE_SLICE(tx, ins):
    key = _slice(tx)
    obj = tx.stack.pop()
    value = tx.stack.pop()
    obj.store_item(tx, key, value)


@native_step("BINARY_SLICE", since=(3, 12))
def BINARY_SLICE_native(tx, ins, emit):
    stack, e = list(tx.stack), emit.expr
    lines = [f"__jf_r = {e(stack[-3])}[{e(stack[-2])}:{e(stack[-1])}]"]
    return lines + emit.cont(stack[:-3] + [emit.result("__jf_r")], tx.stop_at + 1)


@native_step("STORE_SLICE", since=(3, 12))
def STORE_SLICE_native(tx, ins, emit):
    stack, e = list(tx.stack), emit.expr
    lines = [f"{e(stack[-3])}[{e(stack[-2])}:{e(stack[-1])}] = {e(stack[-4])}"]
    return lines + emit.cont(stack[:-4], tx.stop_at + 1)

# -- loops and return -------------------------------------------------------------------


@handler("END_FOR", since=(3, 12))
def END_FOR(tx, ins):
    """Reached from an exhausted FOR_ITER (pyversion.FOR_ITER_EXHAUSTED_PUSHES):
    3.12 pops its value and the iterator, 3.13 its value (a POP_TOP follows)."""
    tx.stack.pop()
    if VERSION < (3, 13):
        tx.stack.pop()


@handler("RETURN_CONST", since=(3, 12))
def RETURN_CONST(tx, ins):
    tx.return_value = Const(ins.arg)
    raise FrameReturn()

# -- generators --------------------------------------------------------------------------


@handler("END_SEND", since=(3, 12))
def END_SEND(tx, ins):
    """The end of ``yield from``: the delegate's return value replaces it."""
    value = tx.stack.pop()
    tx.stack[-1] = value


@handler("CLEANUP_THROW", since=(3, 12))
def CLEANUP_THROW(tx, ins):
    """The handler around ``yield from``'s yield, reached by an exception
    thrown into the generator there (values/generators.py): a StopIteration
    ends the ``yield from`` with its value (an END_SEND follows); any other
    exception goes on to the frame's enclosing handler."""
    exc = tx.stack.pop()
    if not issubclass(exc.python_type(), StopIteration):
        raise raising(tx, exc, reraise=True)
    del tx.stack[-2:]  # the delegate and the value last sent to it
    tx.stack.append(Const(None))
    tx.stack.append(exc.get_attr(tx, "value"))

# -- intrinsics ----------------------------------------------------------------------------


def _unary_positive(tx, v):
    return v.unary_op(tx, operator.pos)


def _list_to_tuple(tx, v):
    return TupleV(list(v.items))


def _stopiteration_error(tx, exc):
    """The handler 3.12 wraps around a generator's whole body (3.11 does
    this in C when the exception leaves the frame): any exception but a
    StopIteration goes on unchanged (the RERAISE after it raises it out of
    the generator); a StopIteration would become a RuntimeError, which is
    left to Python as on 3.11 (values/generators.py)."""
    if issubclass(exc.python_type(), StopIteration):
        raise GraphBreak("JF012", "a StopIteration leaving a generator")
    return exc


# every intrinsic: a function of the operand(s), or the graph break it is
_INTRINSIC_1 = {
    Intrinsic1Op.INTRINSIC_UNARY_POSITIVE: _unary_positive,
    Intrinsic1Op.INTRINSIC_LIST_TO_TUPLE: _list_to_tuple,
    # a generator's handler turning a leaked StopIteration into RuntimeError:
    # only reached on an exception
    Intrinsic1Op.INTRINSIC_STOPITERATION_ERROR: _stopiteration_error,
    Intrinsic1Op.INTRINSIC_ASYNC_GEN_WRAP: "JF013",
    Intrinsic1Op.INTRINSIC_PRINT: "JF001",  # the interactive prompt's echo
    Intrinsic1Op.INTRINSIC_IMPORT_STAR: "JF001",
    # PEP 695 type parameters and aliases (class and function definitions)
    Intrinsic1Op.INTRINSIC_TYPEVAR: "JF001",
    Intrinsic1Op.INTRINSIC_PARAMSPEC: "JF001",
    Intrinsic1Op.INTRINSIC_TYPEVARTUPLE: "JF001",
    Intrinsic1Op.INTRINSIC_SUBSCRIPT_GENERIC: "JF001",
    Intrinsic1Op.INTRINSIC_TYPEALIAS: "JF001",
}
_INTRINSIC_2 = {
    Intrinsic2Op.INTRINSIC_PREP_RERAISE_STAR: "JF012",  # except*
    Intrinsic2Op.INTRINSIC_TYPEVAR_WITH_BOUND: "JF001",
    Intrinsic2Op.INTRINSIC_TYPEVAR_WITH_CONSTRAINTS: "JF001",
    Intrinsic2Op.INTRINSIC_SET_FUNCTION_TYPE_PARAMS: "JF001",
}
for _op in list(Intrinsic1Op)[1:] + list(Intrinsic2Op)[1:]:  # [0] is INVALID
    if _op not in _INTRINSIC_1 and _op not in _INTRINSIC_2:
        raise AssertionError(f"intrinsic {_op.name} is neither handled nor a graph break")


def _intrinsic(table: dict, op):
    impl = table.get(op)
    if impl is None or isinstance(impl, str):
        raise GraphBreak(impl or "JF001", f"intrinsic {op.name}")
    return impl


@handler("CALL_INTRINSIC_1", since=(3, 12))
def CALL_INTRINSIC_1(tx, ins):
    impl = _intrinsic(_INTRINSIC_1, ins.arg)
    tx.stack.append(impl(tx, tx.stack.pop()))


@handler("CALL_INTRINSIC_2", since=(3, 12))
def CALL_INTRINSIC_2(tx, ins):
    _intrinsic(_INTRINSIC_2, ins.arg)  # none is traced: each breaks
