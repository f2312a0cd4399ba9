"""Generator objects whose frame runs traced, suspended at each yield.

In: a call of a generator function from traced code: its frame, a child
Translator made by ``tx.inline_code`` and not run yet.
Out: ``GeneratorV``. ``next()``/``send()``/``throw()``/``close()`` resume the
frame until it yields (the yielded value), returns (StopIteration) or
raises (the exception, raised where the generator was resumed), exactly as
Python runs it -- which ``@contextmanager`` managers need (contextlib's own
``__enter__``/``__exit__`` run traced over it). A for loop over it runs
the frame to the next yield for each item; ``list()``, ``sum()`` and the
like run it to the end at that point. A generator cannot
be handed back to Python (after a graph break): the frame then stops where
the generator was made, and the call making it runs natively
(``retry_at``, see convert.py).
"""
from __future__ import annotations

import types

from ..breaks import GraphBreak
from ..pyversion import VERSION
from .base import Value
from .constants import Const
from .methods import MethodV


class GeneratorYield(Exception):
    """YIELD_VALUE suspends the generator frame (its value: ``frame.gen.value``)."""


class GeneratorV(Value):
    """A generator over the suspended child Translator ``frame``; ``state``
    is 'created', 'suspended', 'running' or 'closed'; ``created_at`` is the
    compiled frame's instruction during which it was made (None if that
    cannot be a graph break's place)."""

    __slots__ = ("frame", "state", "value", "count", "created_at", "source")

    def __init__(self, frame, created_at: int | None) -> None:
        self.frame = frame
        self.state = "created"
        self.value = None  # the value last yielded
        self.count = 0
        self.created_at = created_at
        self.source = None
        frame.yields = self

    def python_type(self) -> type:
        return types.GeneratorType

    def truth(self, tx) -> bool:
        return True

    # -- running the frame -----------------------------------------------------------
    def yielded(self, tx, value: Value) -> None:
        """YIELD_VALUE of the frame (handlers/generators.py)."""
        self.count += 1
        if self.count > tx.config.unroll_limit:
            raise GraphBreak("JF007", f"generator produced more than "
                             f"{tx.config.unroll_limit} items")
        self.value = value
        raise GeneratorYield()

    def _run(self, tx, throw: Value | None = None) -> Value | None:
        """Resume the frame from ``tx`` (the resuming frame: its handled
        exception is what the generator's chains to); the value yielded, or
        None when the frame returned (then ``frame.return_value``)."""
        frame = self.frame
        frame.parent, frame.depth = tx, tx.depth + 1
        self.state = "running"
        try:
            done = frame.throw(throw) if throw is not None else frame.run()
        except GeneratorYield:
            self.state = "suspended"
            return self.value
        except GraphBreak as gb:
            self.state = "closed"
            exc = gb.exc_value
            if exc is None or issubclass(exc.python_type(), StopIteration):
                # a break (or a StopIteration leaving the frame, which Python
                # turns into a RuntimeError): the frame stops where the
                # generator was made, and that runs natively
                gb.exc_value = gb.exc = None
                if gb.root_ip is None and self.created_at is not None:
                    gb.root_ip = self.created_at
            raise
        del done
        self.state = "closed"
        return None

    def _stop(self, tx):
        """The StopIteration of a generator that returned."""
        from ..handlers.exceptions import raising
        from .exceptions import construct

        ret = self.frame.return_value
        args = [] if ret is None or isinstance(ret, Const) and ret.value is None else [ret]
        return raising(tx, construct(tx, StopIteration, args, {}))

    def resume(self, tx, value: Value, throw: Value | None = None) -> tuple[bool, Value]:
        """``send(value)`` (or ``throw(throw)``) as ``yield from`` resumes its
        delegate: (True, the value yielded), or (False, the value returned)
        instead of raising StopIteration; any other exception is raised."""
        if self.state == "closed":
            if throw is not None:
                from ..handlers.exceptions import raising

                raise raising(tx, throw, reraise=True)
            return False, Const(None)
        if throw is not None:
            out = self.throw(tx, throw, stop=False)
        else:
            out = self.send(tx, value, stop=False)
        if self.state == "closed":
            ret = self.frame.return_value
            return False, ret if ret is not None else Const(None)
        return True, out

    def send(self, tx, value: Value, stop: bool = True) -> Value:
        if self.state == "closed":
            raise self._stop(tx)
        if self.state == "running":
            raise GraphBreak("JF013", "a generator resumed while it runs")
        if self.state == "created":
            if not (isinstance(value, Const) and value.value is None):
                from .exceptions import construct
                from ..handlers.exceptions import raising

                raise raising(tx, construct(tx, TypeError, [Const(
                    "can't send non-None value to a just-started generator")], {}))
        else:
            self.frame.stack.append(value)
        out = self._run(tx)
        if out is None and self.state == "closed" and stop:
            raise self._stop(tx)
        return out

    def throw(self, tx, exc: Value, stop: bool = True) -> Value:
        from ..handlers.exceptions import raising

        if self.state == "running":
            raise GraphBreak("JF013", "a generator resumed while it runs")
        if self.state != "suspended":  # not started or finished: raised here
            self.state = "closed"
            raise raising(tx, exc, reraise=True)
        delegate = self._delegate()
        if isinstance(delegate, GeneratorV):
            out = self._throw_delegating(tx, delegate, exc)
        else:
            # (a materialised iterator has no throw(): raised at the yield
            # from, as Python does)
            out = self._run(tx, throw=exc)
        if out is None and self.state == "closed" and stop:
            raise self._stop(tx)
        return out

    def _delegate(self) -> Value | None:
        """The iterator ``yield from`` delegates to, where the frame is
        suspended in one: the yield is followed by a RESUME whose operand
        says 'after yield from' (2; 3: after await; 3.13 adds a flag in bit
        2), and the delegate is on top of the stack (how CPython's
        ``_PyGen_yf`` finds it)."""
        frame = self.frame
        if frame.ip >= len(frame.instrs) or not frame.stack:
            return None
        ins = frame.instrs[frame.ip]
        if ins.name != "RESUME" or (ins.arg & 3) != 2:
            return None
        return frame.stack[-1]

    def _throw_delegating(self, tx, delegate: "GeneratorV", exc: Value) -> Value | None:
        """``throw()`` into a generator suspended in ``yield from delegate``:
        thrown into the delegate first (CPython's ``_gen_throw``). Its next
        item is this generator's; its return is the ``yield from``'s value;
        any other exception it raises is raised here at the ``yield from``."""
        if isinstance(exc, Value) and issubclass(exc.python_type(), GeneratorExit):
            raise GraphBreak("JF013", "GeneratorExit thrown into a generator in yield from")
        self.state = "running"  # (as Python marks it while the delegate runs)
        try:
            yielded, value = delegate.resume(tx, Const(None), throw=exc)
        except GraphBreak as gb:
            self.state = "suspended"
            if gb.exc_value is None:
                raise
            if VERSION < (3, 12):
                # 3.11 pops the delegate before raising here; 3.12+ leaves
                # it to the CLEANUP_THROW handler around the yield from
                self.frame.stack.pop()
            return self._run(tx, throw=gb.exc_value)
        self.state = "suspended"
        if yielded:
            self.value = value
            return value
        # the delegate returned: go on after the yield from with its value
        # (where the SEND of the yield-from loop goes then: the JUMP after
        # the RESUME leads back to it)
        frame = self.frame
        back = frame.instrs[frame.ip + 1]
        send = frame.instrs[frame.labels[back.arg]]
        if send.name != "SEND":
            raise GraphBreak("JF013", "a yield from of an unexpected shape")
        send_exhausted(frame, send, value)
        return self._run(tx)

    def next_item(self, tx) -> Value | None:
        """FOR_ITER: the frame run to its next yield, as the loop asks for
        each item (the generator's code and the loop body interleave as in
        Python); None once it returned."""
        if self.state == "closed":
            return None
        if self.state == "running":
            raise GraphBreak("JF013", "a generator resumed while it runs")
        if self.state == "suspended":
            self.frame.stack.append(Const(None))
        out = self._run(tx)
        return out if self.state == "suspended" else None

    def iterate(self, tx) -> list[Value]:
        items = []
        while self.state != "closed":
            if self.state == "suspended":
                self.frame.stack.append(Const(None))
            out = self._run(tx)
            if self.state == "suspended":
                items.append(out)
        return items

    # -- Python's view -------------------------------------------------------------------
    def get_attr(self, tx, name: str) -> Value:
        if name in ("send", "throw", "close", "__next__"):
            return MethodV(self, name)
        return super().get_attr(tx, name)

    def call_method(self, tx, name: str, args: list, kwargs: dict) -> Value:
        if kwargs:
            return super().call_method(tx, name, args, kwargs)
        if name == "__next__" and not args:
            return self.send(tx, Const(None))
        if name == "send" and len(args) == 1:
            return self.send(tx, args[0])
        if name == "throw" and 1 <= len(args) <= 3:
            return self.throw(tx, _thrown(tx, args))
        if name == "close" and not args:
            return self._close(tx)
        return super().call_method(tx, name, args, kwargs)

    def _close(self, tx) -> Value:
        if self.state != "suspended":
            self.state = "closed"
            return Const(None)
        raise GraphBreak("JF013", "close() of a suspended generator")

    def reconstruct(self, rb):
        gb = GraphBreak("JF025", "a generator made in compiled code")
        gb.retry_at = self.created_at
        raise gb


def send_exhausted(tx, send, value) -> None:
    """``yield from``'s delegate returned ``value``: go on where ``send`` (the
    SEND instruction) jumps then, with the stack it leaves (3.11: the value
    replaces the delegate; 3.12+: END_SEND there drops the delegate)."""
    if VERSION >= (3, 12):
        tx.stack.append(value)
    else:
        tx.stack[-1] = value
    tx.jump(send.arg)


def _thrown(tx, args: list) -> Value:
    """The exception ``gen.throw(typ[, val[, tb]])`` raises in the frame."""
    from .exceptions import construct
    from .objects import ObjV

    typ = args[0]
    val = args[1] if len(args) > 1 else None
    if val is not None and not (isinstance(val, Const) and val.value is None):
        return val
    if isinstance(typ, ObjV) and isinstance(typ.obj, type):
        return construct(tx, typ.obj, [], {})
    return typ
