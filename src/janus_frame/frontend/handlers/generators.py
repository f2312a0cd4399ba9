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
from ..values.generators import GeneratorV, send_exhausted
from .registry import handler


# 3.11 and 3.12's RETURN_GENERATOR leaves nothing on the stack of the code object that
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
    # a generator delegate is resumed item by item (SEND), so that what is
    # sent or thrown into the delegating generator reaches it (values/generators.py)
    tx.stack.append(v if isinstance(v, (IterV, GeneratorV)) else IterV(v.iterate(tx)))


@handler("SEND")
def SEND(tx, ins):
    """``yield from``: the next item of the delegate, or its end."""
    if tx.yields is None:
        raise GraphBreak("JF013", "send")
    sent = tx.stack.pop()
    it = tx.stack[-1]
    if isinstance(it, GeneratorV):
        yielded, value = it.resume(tx, sent)
        if yielded:
            tx.stack.append(value)
        else:
            send_exhausted(tx, ins, value)
        return
    if not (isinstance(sent, Const) and sent.value is None):
        # (Python would call the iterator's send(), which a materialised one has not)
        raise GraphBreak("JF013", "a value sent to an iterator delegated to by yield from")
    if it.pos < len(it.items):
        tx.stack.append(it.items[it.pos])
        it.pos += 1
    else:
        send_exhausted(tx, ins, Const(None))


@handler("YIELD_VALUE")
def YIELD_VALUE(tx, ins):
    if tx.yields is None:
        raise GraphBreak("JF013", "yield")
    # suspends the frame; resuming it pushes the value sent in
    tx.yields.yielded(tx, tx.stack.pop())
