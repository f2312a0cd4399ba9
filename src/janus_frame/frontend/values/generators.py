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

    __slots__ = ("frame", "state", "value", "count", "created_at", "source", "delegate")

    def __init__(self, frame, created_at: int | None) -> None:
        self.frame = frame
        self.state = "created"
        self.value = None  # the value last yielded
        self.count = 0
        self.created_at = created_at
        self.source = None
        self.delegate = None  # the generator a ``yield from`` of the frame is suspended in
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

    def send(self, tx, value: Value) -> Value:
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
        if out is None and self.state == "closed":
            raise self._stop(tx)
        return out

    def throw(self, tx, exc: Value) -> Value:
        from ..handlers.exceptions import raising

        if self.state == "running":
            raise GraphBreak("JF013", "a generator resumed while it runs")
        if self.delegate is not None and self.state == "suspended":
            raise GraphBreak("JF013", "throw() into a generator suspended in yield from")
        if self.state != "suspended":  # not started or finished: raised here
            self.state = "closed"
            raise raising(tx, exc, reraise=True)
        out = self._run(tx, throw=exc)
        if out is None and self.state == "closed":
            raise self._stop(tx)
        return out

    def resume(self, tx, value: Value) -> Value | None:
        """``yield from`` this generator (the SEND handler): ``value`` sent
        in, the next value yielded, or None once the frame returned (its
        ``frame.return_value``); an exception leaving the frame is raised
        where it was resumed."""
        if self.state == "closed":
            return None
        if self.state == "running":
            raise GraphBreak("JF013", "a generator resumed while it runs")
        if self.state == "created":
            if not (isinstance(value, Const) and value.value is None):
                return self.send(tx, value)  # raises Python's TypeError
        else:
            self.frame.stack.append(value)
        out = self._run(tx)
        return out if self.state == "suspended" else None

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
