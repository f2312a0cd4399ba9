"""Opcode handlers: generator frames.

A generator called from traced code (a generator expression, a generator
function) is a GeneratorV (values/generators.py) whose frame runs traced
when it is resumed, and suspends at each yield. Anywhere else these opcodes
are a graph break (JF013), like the coroutine opcodes (unsupported.py).

In/out: the frame's stack and ``tx.yields``, the frame's GeneratorV.
"""
from __future__ import annotations

from ..breaks import GraphBreak
from ..pyversion import VERSION
from ..values import Const, IterV
from ..values.generators import GeneratorV
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
    # a traced generator stays lazy: SEND resumes it one item at a time, as
    # Python does, so a consumer that stops early (``for p in
    # m.parameters(): return p.dtype``) runs (and guards) only what Python
    # runs, and the delegate's side effects interleave with the caller's
    tx.stack.append(v if isinstance(v, (IterV, GeneratorV)) else IterV(v.iterate(tx)))


@handler("SEND")
def SEND(tx, ins):
    """``yield from``: the next item of the delegate, or its end."""
    if tx.yields is None:
        raise GraphBreak("JF013", "send")
    sent = tx.stack.pop()
    it = tx.stack[-1]
    if isinstance(it, GeneratorV):
        out = it.resume(tx, sent)
        if it.state == "suspended":
            tx.yields.delegate = it  # a throw() now belongs to the delegate
            tx.stack.append(out)
            return
        tx.yields.delegate = None
        ret = it.frame.return_value
        ret = Const(None) if ret is None else ret
        if VERSION >= (3, 12):
            tx.stack.append(ret)  # END_SEND drops the delegate
        else:
            tx.stack[-1] = ret
        tx.jump(ins.arg)
        return
    if it.pos < len(it.items):
        tx.stack.append(it.items[it.pos])
        it.pos += 1
    elif VERSION >= (3, 12):
        tx.stack.append(Const(None))  # its return value; END_SEND drops the delegate
        tx.jump(ins.arg)
    else:
        tx.stack[-1] = Const(None)  # the delegate's return value
        tx.jump(ins.arg)


@handler("YIELD_VALUE")
def YIELD_VALUE(tx, ins):
    if tx.yields is None:
        raise GraphBreak("JF013", "yield")
    # suspends the frame; resuming it pushes the value sent in
    tx.yields.yielded(tx, tx.stack.pop())
