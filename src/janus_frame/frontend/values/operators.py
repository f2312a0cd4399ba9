"""Binary operators, comparisons and identity tests between two values.

In: an operator function (``operator.add``, ``operator.lt``, ...) and two
symbolic operands of any kinds.
Out: the symbolic result. Each operand's kind may decide the operation
(``binary_op`` / ``compare_op`` / ``identical``, see base.py); the operand
of higher ``operand_rank`` is asked first (item of a tensor, tensor, size,
then the rest, left operand first), and a kind answers NotImplemented to
leave it to the other. Values made only of constants compare as Python
values. What no kind decides is a graph break.
"""
from __future__ import annotations

from ..breaks import GraphBreak
from .base import NO, Value
from .constants import fold


def _ranked(a: Value, b: Value) -> tuple[Value, Value]:
    return (a, b) if a.operand_rank >= b.operand_rank else (b, a)


def binary(tx, fn, a: Value, b: Value) -> Value:
    for v in _ranked(a, b):
        out = v.binary_op(tx, fn, a, b)
        if out is not NotImplemented:
            return out
    raise GraphBreak("JF024", f"operator {fn.__name__} on {a.python_type().__name__} and "
                     f"{b.python_type().__name__}")


def compare(tx, fn, a: Value, b: Value) -> Value:
    for v in _ranked(a, b):
        out = v.compare_op(tx, fn, a, b)
        if out is not NotImplemented:
            return out
    ca, cb = a.as_python(), b.as_python()
    if ca is not NO and cb is not NO:
        return fold(fn, ca, cb)
    raise GraphBreak("JF024", f"comparison {fn.__name__} of {a.python_type().__name__} and "
                     f"{b.python_type().__name__}")


def identical(tx, a: Value, b: Value) -> bool:
    if a is b:
        return True
    out = a.identical(tx, b)
    if out is NotImplemented:
        out = b.identical(tx, a)
    if out is not NotImplemented:
        return out
    if type(a) is not type(b):
        return False  # values of different kinds are different objects
    raise GraphBreak("JF024", f"identity test of {a.python_type().__name__} values")
