"""The process environment, ``os.environ``, read while tracing.

In: the real ``os.environ`` (an ``os._Environ``) read from the frame, with
its source (``os.environ`` through a module, or ``environ`` in ``os``'s own
globals when ``os.getenv`` is inlined).
Out: :class:`EnvironV`, whose reads -- ``get(key[, default])``,
``environ[key]``, ``key in environ`` -- are constants of the trace, each
guarded on what it read: the value of that variable, or its absence. A
variable set, unset or changed between calls fails the guard and the frame
is traced again, as eager would see the new value. Everything else
(writes, ``pop``, iteration, ``keys()``) is what a real object gets
(:class:`ObjV`): a graph break before it, run natively.

Reading the variable through ``Mapping.get`` as Python code would trace
``_Environ.__getitem__`` raising ``KeyError`` inside a ``try`` -- hence a
kind of its own instead.
"""
from __future__ import annotations

from ..breaks import GraphBreak, would_raise
from .base import Value
from .constants import Const
from .methods import MethodV
from .objects import ObjV

_READS = ("get", "__getitem__", "__contains__")


def env_value(env, key):
    """The variable ``key`` of ``env``, or None when unset (what a guard
    compares with what the trace read)."""
    return env.get(key)


class EnvironV(ObjV):
    """``os.environ``: reads are guarded constants; the rest as ObjV."""

    __slots__ = ()

    def _read(self, tx, key: Value):
        """The value of variable ``key`` now (None: unset), guarded."""
        k = key.as_python()
        if type(k) is not str:
            raise GraphBreak("JF022", "os.environ read with a key that is not a constant str")
        value = env_value(self._obj, k)
        tx.output.reads_process_state = True
        g = tx.output.guards
        g.add(f"{g.fb.const(env_value)}({self.source.expr()}, {k!r}) == {value!r}",
              f"environment variable {k!r} " + ("unset" if value is None else f"== {value!r}"))
        return value

    def get_attr(self, tx, name: str) -> Value:
        if name in _READS:
            return MethodV(self, name)
        return super().get_attr(tx, name)

    def call_method(self, tx, name: str, args: list, kwargs: dict) -> Value:
        if name == "get" and set(kwargs) <= {"default"} and len(args) + len(kwargs) in (1, 2) \
                and args:
            default = args[1] if len(args) == 2 else kwargs.get("default", Const(None))
            value = self._read(tx, args[0])
            return default if value is None else Const(value)
        if name == "__getitem__" and not kwargs and len(args) == 1:
            return self.get_item(tx, args[0])
        if name == "__contains__" and not kwargs and len(args) == 1:
            return Const(self.contains(tx, args[0]))
        return super().call_method(tx, name, args, kwargs)

    def get_item(self, tx, key: Value) -> Value:
        value = self._read(tx, key)
        if value is None:
            # what _Environ.__getitem__ raises (``raise KeyError(key) from None``)
            k = key.as_python()
            raise would_raise(KeyError, f"os.environ[{k!r}]: the variable is unset", KeyError(k))
        return Const(value)

    def contains(self, tx, item: Value) -> bool:
        return self._read(tx, item) is not None
