"""Opcode handlers: binary and unary operators, comparisons, identity and
membership tests, subscripts; and their native steps (the operation run by
the replacement when a graph segment ends at it).

What an operation does to its operands is their kinds' business (values/:
tensor operands become graph operations, constants fold, containers are
modelled); these handlers only move values between the stack and the kinds.

In/out: the frame's stack.
"""
from __future__ import annotations

import operator

from ..values import Const
from ..values.operators import binary, compare, identical
from .registry import handler, named, native_step

BINARY = {
    "ADD": operator.add, "AND": operator.and_, "FLOOR_DIVIDE": operator.floordiv,
    "LSHIFT": operator.lshift, "MATRIX_MULTIPLY": operator.matmul, "MULTIPLY": operator.mul,
    "REMAINDER": operator.mod, "OR": operator.or_, "POWER": operator.pow,
    "RSHIFT": operator.rshift, "SUBTRACT": operator.sub, "TRUE_DIVIDE": operator.truediv,
    "XOR": operator.xor,
    "INPLACE_ADD": operator.iadd, "INPLACE_AND": operator.iand,
    "INPLACE_FLOOR_DIVIDE": operator.ifloordiv, "INPLACE_LSHIFT": operator.ilshift,
    "INPLACE_MATRIX_MULTIPLY": operator.imatmul, "INPLACE_MULTIPLY": operator.imul,
    "INPLACE_REMAINDER": operator.imod, "INPLACE_OR": operator.ior,
    "INPLACE_POWER": operator.ipow, "INPLACE_RSHIFT": operator.irshift,
    "INPLACE_SUBTRACT": operator.isub, "INPLACE_TRUE_DIVIDE": operator.itruediv,
    "INPLACE_XOR": operator.ixor,
}
COMPARE = {"LT": operator.lt, "LE": operator.le, "EQ": operator.eq, "NE": operator.ne,
           "GT": operator.gt, "GE": operator.ge}

# -- operators -----------------------------------------------------------------------


@handler("BINARY_OP")
def BINARY_OP(tx, ins):
    b = tx.stack.pop()
    a = tx.stack.pop()
    tx.stack.append(binary(tx, BINARY[ins.arg.name], a, b))


def _comparison(ins) -> tuple:
    """COMPARE_OP's operator, and whether 3.13 asks for its result as a
    bool (the ``*_CAST`` forms, compiled where a TO_BOOL would follow; the
    jump or UNARY_NOT after it take the truth of the value, see TO_BOOL)."""
    name = ins.arg.name
    return COMPARE[name.removesuffix("_CAST")], name.endswith("_CAST")


@handler("COMPARE_OP")
def COMPARE_OP(tx, ins):
    b = tx.stack.pop()
    a = tx.stack.pop()
    tx.stack.append(compare(tx, _comparison(ins)[0], a, b))


@handler("IS_OP")
def IS_OP(tx, ins):
    b = tx.stack.pop()
    a = tx.stack.pop()
    tx.stack.append(Const(identical(tx, a, b) != bool(ins.arg)))


@handler("CONTAINS_OP")
def CONTAINS_OP(tx, ins):
    container = tx.stack.pop()
    item = tx.stack.pop()
    tx.stack.append(Const(container.contains(tx, item) != bool(ins.arg)))


@handler("UNARY_NOT")
def UNARY_NOT(tx, ins):
    tx.stack.append(Const(tx.stack.pop().logical_not(tx)))


def _unary(name: str, fn, **versions):
    def op(tx, ins):
        tx.stack.append(tx.stack.pop().unary_op(tx, fn))
    handler(name, **versions)(named(op, name))


_unary("UNARY_NEGATIVE", operator.neg)
_unary("UNARY_POSITIVE", operator.pos, until=(3, 12))
_unary("UNARY_INVERT", operator.invert)

# -- subscripts ----------------------------------------------------------------------


@handler("BINARY_SUBSCR")
def BINARY_SUBSCR(tx, ins):
    key = tx.stack.pop()
    obj = tx.stack.pop()
    tx.stack.append(obj.get_item(tx, key))


@handler("STORE_SUBSCR")
def STORE_SUBSCR(tx, ins):
    key = tx.stack.pop()
    obj = tx.stack.pop()
    value = tx.stack.pop()
    obj.store_item(tx, key, value)


@handler("DELETE_SUBSCR")
def DELETE_SUBSCR(tx, ins):
    key = tx.stack.pop()
    obj = tx.stack.pop()
    obj.delete_item(tx, key)

# -- native steps --------------------------------------------------------------------


@native_step("BINARY_OP")
def BINARY_OP_native(tx, ins, emit):
    stack, e = list(tx.stack), emit.expr
    lines = [f"__jf_r = {emit.const(BINARY[ins.arg.name])}({e(stack[-2])}, {e(stack[-1])})"]
    return lines + emit.cont(stack[:-2] + [emit.result("__jf_r")], tx.stop_at + 1)


@native_step("COMPARE_OP")
def COMPARE_OP_native(tx, ins, emit):
    stack, e = list(tx.stack), emit.expr
    fn, as_bool = _comparison(ins)
    r = f"{emit.const(fn)}({e(stack[-2])}, {e(stack[-1])})"
    lines = [f"__jf_r = __jf_h_bool({r})" if as_bool else f"__jf_r = {r}"]
    return lines + emit.cont(stack[:-2] + [emit.result("__jf_r")], tx.stop_at + 1)


@native_step("UNARY_NOT")
def UNARY_NOT_native(tx, ins, emit):
    stack = list(tx.stack)
    lines = [f"__jf_r = not {emit.expr(stack[-1])}"]
    return lines + emit.cont(stack[:-1] + [emit.result("__jf_r")], tx.stop_at + 1)


@native_step("BINARY_SUBSCR")
def BINARY_SUBSCR_native(tx, ins, emit):
    stack, e = list(tx.stack), emit.expr
    lines = [f"__jf_r = {e(stack[-2])}[{e(stack[-1])}]"]
    return lines + emit.cont(stack[:-2] + [emit.result("__jf_r")], tx.stop_at + 1)


@native_step("STORE_SUBSCR")
def STORE_SUBSCR_native(tx, ins, emit):
    stack, e = list(tx.stack), emit.expr
    lines = [f"{e(stack[-2])}[{e(stack[-1])}] = {e(stack[-3])}"]
    return lines + emit.cont(stack[:-3], tx.stop_at + 1)


@native_step("DELETE_SUBSCR")
def DELETE_SUBSCR_native(tx, ins, emit):
    stack, e = list(tx.stack), emit.expr
    lines = [f"del {e(stack[-2])}[{e(stack[-1])}]"]
    return lines + emit.cont(stack[:-2], tx.stop_at + 1)
