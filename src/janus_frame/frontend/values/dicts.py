"""Dicts with constant keys, and transformers ModelOutputs.

In: dicts built while tracing (``{...}``, ``dict(...)``, ``**kwargs``, dict
subclasses whose construction is plain), dicts read from the frame whose
keys are all constants (lazily, like lists), ModelOutputs built while
tracing.
Out: ``DictV`` and ``RecordDictV`` and what Python does with them while
tracing: items, membership, iteration over keys, their methods (a mutation
of a dict read from the frame is recorded and replayed after the graph), how
they are rebuilt after the graph, and :func:`dict_key`.
"""
from __future__ import annotations

import dataclasses
import inspect
import types

from ..breaks import GraphBreak, would_raise
from ..sources import Source
from .base import NO, Value, read_before_effects
from .constants import LITERAL_TYPES, Const
from .containers import Container, ListV, TupleV
from .methods import MethodV

_DICT_MUTATORS = ("pop", "update", "setdefault", "clear", "popitem", "__setitem__")


class DictV(Container, Value):
    """A dict with constant keys; ``cls`` for dict subclasses (e.g. ModelOutput)."""

    __slots__ = ("_items", "source", "cls", "_lazy", "_tguard", "pending")

    def __init__(self, items: dict | None, source: Source | None = None, cls: type = dict, *,
                 lazy=None, type_guard=None) -> None:
        self._items = dict(items) if items is not None else None
        self.source = source
        self.cls = cls
        self._lazy = lazy
        self._tguard = type_guard
        self.pending: list = []

    def python_type(self) -> type:
        self._type_guard()
        return self.cls

    def _repr(self) -> str:
        if self._lazy is not None:
            return "<lazy>"
        return ", ".join(f"{k!r}: {v!r}" for k, v in self._items.items())

    def _apply_pending(self, name: str, args: list) -> None:
        if name == "__setitem__":
            self._items[args[0].value] = args[1]
        elif name == "update":
            self._items.update(args[0].items)
        else:
            raise AssertionError(name)

    def as_python(self):
        vals = {k: x.as_python() for k, x in self.items.items()}
        return NO if any(x is NO for x in vals.values()) else vals

    def truth(self, tx) -> bool:
        return bool(self.items)

    def length(self, tx) -> int:
        return len(self.items)

    def iterate(self, tx) -> list[Value]:
        return [Const(k) for k in self.items]

    def dict_items(self, tx) -> dict:
        return dict(self.items)

    def contains(self, tx, item: Value) -> bool:
        key = item.as_python()
        if key is NO:
            raise GraphBreak("JF021", "membership test with a non-constant key")
        return key in self.items

    def get_item(self, tx, key: Value) -> Value:
        k = key.as_python()
        if k is NO:
            return super().get_item(tx, key)
        try:
            return self.items[k]
        except (KeyError, TypeError) as e:  # Python's own exception: exact
            raise would_raise(type(e), repr(k), exc=e) from None

    def store_item(self, tx, key: Value, value: Value) -> None:
        k = key.as_python()
        if k is NO:
            return super().store_item(tx, key, value)
        if self.source is not None and self._lazy is not None:
            self.pending.append(("__setitem__", [Const(k), value]))
            tx.output.effects.container_mutated(self)
            return
        self.will_mutate(tx)
        self.items[k] = value

    def delete_item(self, tx, key: Value) -> None:
        k = key.as_python()
        if k not in self.items:
            return super().delete_item(tx, key)
        self.will_mutate(tx)
        del self.items[k]

    def call_method(self, tx, name: str, args: list, kwargs: dict) -> Value:
        if self.source is not None and self._lazy is not None and not kwargs and \
                name == "update" and len(args) == 1:
            # a dict read from the frame and not looked into: record the
            # operation itself (replayed as is; no guard on its keys)
            self.pending.append((name, [DictV(args[0].dict_items(tx))]))
            tx.output.effects.container_mutated(self)
            return Const(None)
        if name == "keys":
            return ListV([Const(k) for k in self.items])
        if name == "values":
            return ListV(list(self.items.values()))
        if name == "items":
            return ListV([TupleV([Const(k), v]) for k, v in self.items.items()])
        if name == "get":
            key = args[0].as_python()
            default = args[1] if len(args) > 1 else Const(None)
            return self.items.get(key, default)
        if name in _DICT_MUTATORS:
            self.will_mutate(tx)
        if name == "pop":
            key = args[0].as_python()
            if key in self.items:
                return self.items.pop(key)
            if len(args) > 1:
                return args[1]
            raise would_raise(KeyError, repr(key), exc=KeyError(key))
        if name == "update":
            if args:
                self.items.update(args[0].dict_items(tx))
            self.items.update(kwargs)
            return Const(None)
        if name == "setdefault":
            key = args[0].as_python()
            return self.items.setdefault(key, args[1] if len(args) > 1 else Const(None))
        if name == "copy":
            return DictV(self.items, cls=self.cls)
        if name == "__setitem__":
            self.items[args[0].as_python()] = args[1]
            return Const(None)
        raise self._unsupported_method(name)

    def reconstruct(self, rb) -> tuple[str, bool]:
        if self.source is not None:
            return self.source.expr(), read_before_effects(self.source)
        fb = rb.fb
        inner = ", ".join(
            f"{k!r}: {rb.expr(x)}" if type(k) in LITERAL_TYPES else
            f"{fb.const(k)}: {rb.expr(x)}" for k, x in self.items.items())
        if self.cls is dict:
            return f"{{{inner}}}", True
        return f"{fb.const(_build_dict_subclass)}({fb.const(self.cls)}, {{{inner}}})", True

    def replay_mutation(self, rb) -> list[str]:
        if self._lazy is not None:
            return self._replay_pending(rb)
        src = self.source.expr()
        items = ", ".join(f"{rb.fb.const(k)}: {rb.snapshot(x)}" for k, x in self.items.items())
        return [f"{src}.clear()", f"{src}.update({{{items}}})"]


class RecordDictV(DictV):
    """A transformers ``ModelOutput`` built while tracing: a dataclass whose
    fields are attributes, and whose non-None fields, in field order, are also
    its dict items (``out.loss``, ``out["logits"]``, ``out[0]`` = the first
    non-None field, ``out.to_tuple()``)."""

    __slots__ = ("fields",)

    def __init__(self, cls: type, fields: dict) -> None:
        super().__init__({k: v for k, v in fields.items()
                          if not (isinstance(v, Const) and v.value is None)}, cls=cls)
        self.fields = fields

    def get_item(self, tx, key: Value) -> Value:
        k = key.as_python()
        if not isinstance(k, (int, slice)) or isinstance(k, bool):
            return super().get_item(tx, key)
        values = list(self.items.values())  # by position among non-None fields
        if isinstance(k, slice):
            return TupleV(values[k])
        try:
            return values[k]
        except IndexError:
            raise would_raise(IndexError, "index out of range") from None

    def get_attr(self, tx, name: str) -> Value:
        if name in self.fields:
            return self.fields[name]
        attr = inspect.getattr_static(self.cls, name, None)
        if isinstance(attr, types.FunctionType):  # to_tuple() and other methods
            return MethodV(self, name, attr)
        return super().get_attr(tx, name)


def dict_key(v: Value):
    """``v`` as a dict key: a hashable constant."""
    k = v.as_python()
    if k is NO:
        raise GraphBreak("JF021", f"dict key of type {v.python_type().__name__}")
    try:
        hash(k)
    except TypeError:
        raise would_raise(TypeError, "unhashable dict key") from None
    return k


def _build_dict_subclass(cls, items: dict):
    """Rebuild a dict subclass (a ModelOutput: a dataclass) made while tracing."""
    if dataclasses.is_dataclass(cls):
        return cls(**items)
    return cls(items)
