"""Opcode handlers: generator frames.

A generator called from traced code (a generator expression, a generator
function) is a GeneratorV (values/generators.py) whose frame runs traced
when it is resumed, and suspends at each yield. Anywhere else these opcodes
are a graph break (JF013), like the coroutine opcodes (unsupported.py).

In/out: the frame's stack and ``tx.yields``, the frame's GeneratorV.
"""
from __future__ import annotations

from ..breaks import GraphBreak
from ..values import Const, IterV
from .registry import handler


# 3.11's RETURN_GENERATOR leaves nothing on the stack of the code object that
# runs it; the generator's first resumption (here, at once) pushes the sent None
@handler("RETURN_GENERATOR", stack_effect=lambda ins: 1)
def RETURN_GENERATOR(tx, ins):
    if tx.yields is None:
        raise GraphBreak("JF013", "generator")
    tx.stack.append(Const(None))


@handler("GET_YIELD_FROM_ITER")
def GET_YIELD_FROM_ITER(tx, ins):
    if tx.yields is None:
        raise GraphBreak("JF013", "yield from")
    v = tx.stack.pop()
    tx.stack.append(v if isinstance(v, IterV) else IterV(v.iterate(tx)))


@handler("SEND")
def SEND(tx, ins):
    """``yield from``: the next item of the delegate, or its end."""
    if tx.yields is None:
        raise GraphBreak("JF013", "send")
    tx.stack.pop()  # the value sent in: always None when run to exhaustion
    it = tx.stack[-1]
    if it.pos < len(it.items):
        tx.stack.append(it.items[it.pos])
        it.pos += 1
    else:
        tx.stack[-1] = Const(None)  # the delegate's return value
        tx.jump(ins.arg)


@handler("YIELD_VALUE")
def YIELD_VALUE(tx, ins):
    if tx.yields is None:
        raise GraphBreak("JF013", "yield")
    # suspends the frame; resuming it pushes the value sent in
    tx.yields.yielded(tx, tx.stack.pop())
