"""Opcode handlers for what Python 3.13 added to the topics of control.py and
containers.py (its superinstructions, CALL_KW and SET_FUNCTION_ATTRIBUTE are
beside their older forms in variables.py and calls.py): ``TO_BOOL`` and the
f-string field split into ``CONVERT_VALUE``, ``FORMAT_SIMPLE`` and
``FORMAT_WITH_SPEC``.

In/out: the frame's stack.
"""
from __future__ import annotations

from ..values import Const
from .containers import format_field
from .registry import handler


@handler("TO_BOOL", since=(3, 13))
def TO_BOOL(tx, ins):
    """The truth of the value on top, for the conditional jump or
    ``UNARY_NOT`` that always follows it. Those take the truth of any value
    (as 3.11 and 3.12's do), so it is left to them: the branch on a tensor is
    decided (speculated, predicated, or broken at) in one place, and a value
    is asked for its truth once."""


@handler("CONVERT_VALUE", since=(3, 13))
def CONVERT_VALUE(tx, ins):
    tx.stack.append(format_field(tx, tx.stack.pop(), int(ins.arg), Const("")))


@handler("FORMAT_SIMPLE", since=(3, 13))
def FORMAT_SIMPLE(tx, ins):
    tx.stack.append(format_field(tx, tx.stack.pop(), 0, Const("")))


@handler("FORMAT_WITH_SPEC", since=(3, 13))
def FORMAT_WITH_SPEC(tx, ins):
    spec = tx.stack.pop()
    tx.stack.append(format_field(tx, tx.stack.pop(), 0, spec))
