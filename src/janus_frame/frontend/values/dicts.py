"""Dicts with constant keys, and instances of dict subclasses.

In: dicts built while tracing (``{...}``, ``dict(...)``, ``**kwargs``,
``OrderedDict(...)``, ``collections.defaultdict(...)``), dicts read from the
frame whose keys are all constants (lazily, like lists), instances of dict
subclasses constructed while tracing (an ``OrderedDict`` subclass that is
also a dataclass, as transformers' ``ModelOutput``).
Out: ``DictV``, ``DictObjV`` (also a defaultdict and its subclasses),
``RealDictV`` (a real dict subclass instance read from the frame: its builtin
dict reads), ``DictViewV`` (a live keys/values/items view) and what Python
does with them while tracing: items, membership, iteration over keys, their
methods (a mutation of a dict read from the frame is recorded and replayed
after the graph), the class's own methods run traced on a ``DictObjV``, how
they are rebuilt after the graph, and :func:`dict_key`, :func:`builtin_entry`.
"""
from __future__ import annotations

import collections
import gc
import operator
import types

from ..breaks import GraphBreak, would_raise
from ..sources import ExprSource, PinnedSource, Source
from .base import NO, Value, read_before_effects
from .constants import LITERAL_TYPES, Const, fold
from .containers import Container, IterV, ListV, SetV, TupleV, same_or_equal
from .methods import MethodV
from . import objects as _objects
from .objects import (
    BUILTIN_BASES, MISSING, ObjV, builtin_entry, class_attr, generic_attr_method,
    is_data_descriptor, lookup,
)

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
        if name in _VIEW_KINDS and not args and not kwargs:
            return DictViewV(self, name)  # live: reads the dict at each use
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
        if name == "clear" and not args and not kwargs:
            self.items.clear()
            return Const(None)
        if name == "popitem" and not args and not kwargs and self.cls is dict:
            if not self.items:
                raise would_raise(KeyError, "popitem(): dictionary is empty")
            k, v = self.items.popitem()  # the last inserted item
            return TupleV([Const(k), v])
        if name == "__setitem__":
            self.items[args[0].as_python()] = args[1]
            return Const(None)
        raise self._unsupported_method(name)

    def binary_op(self, tx, fn, a: Value, b: Value):
        """``d | other`` (a new dict) and ``d |= other`` (an update)."""
        if fn is operator.ior and a is self:
            if not isinstance(b, DictV):
                return NotImplemented  # (dict |= pairs also works: left to a break)
            self.will_mutate(tx)
            self.items.update(b.dict_items(tx))
            return self
        if fn is operator.or_ and isinstance(a, DictV) and isinstance(b, DictV) and \
                a.cls in (dict, collections.OrderedDict) and b.cls in (dict,
                                                                        collections.OrderedDict):
            merged = dict(a.items)
            merged.update(b.items)
            # dict | OrderedDict: OrderedDict.__ror__ decides, giving its class
            cls = collections.OrderedDict if collections.OrderedDict in (a.cls, b.cls) else dict
            return DictV(merged, cls=cls)
        return NotImplemented

    def reconstruct(self, rb) -> tuple[str, bool]:
        if self.source is not None:
            return self.source.expr(), read_before_effects(self.source)
        fb = rb.fb
        inner = ", ".join(
            f"{k!r}: {rb.expr(x)}" if type(k) in LITERAL_TYPES else
            f"{fb.const(k)}: {rb.expr(x)}" for k, x in self.items.items())
        if self.cls is dict:
            return f"{{{inner}}}", True
        # OrderedDict (subclasses with their own behaviour are DictObjV)
        return f"{fb.const(self.cls)}({{{inner}}})", True

    def replay_mutation(self, rb) -> list[str]:
        if self._lazy is not None:
            return self._replay_pending(rb)
        src = self.source.expr()
        items = ", ".join(f"{rb.fb.const(k)}: {rb.snapshot(x)}" for k, x in self.items.items())
        return [f"{src}.clear()", f"{src}.update({{{items}}})"]


class InstanceDictV(DictV):
    """``obj.__dict__`` / ``vars(obj)`` of an object created while tracing
    (a ``NewObjV``): a dict whose storage *is* the object's attributes, so a
    store, deletion or update through it is an attribute change and an
    attribute store is seen through it. Rebuilt after the graph as the
    rebuilt object's own ``__dict__`` (the same dict, still live)."""

    __slots__ = ("owner",)

    def __init__(self, owner) -> None:
        super().__init__({})
        self._items = owner.attrs
        self.owner = owner

    def _check_keys(self, keys) -> None:
        # attribute names are strings; a dict key of another type stays out
        # of the traced object (it could not be read as an attribute anyway)
        if any(not isinstance(k, str) for k in keys):
            raise GraphBreak("JF021", "a non-string key in an instance dict")

    def store_item(self, tx, key: Value, value: Value) -> None:
        self._check_keys([key.as_python()])
        super().store_item(tx, key, value)

    def call_method(self, tx, name: str, args: list, kwargs: dict) -> Value:
        if name in ("__setitem__", "setdefault") and args:
            self._check_keys([args[0].as_python()])
        elif name == "update":
            self._check_keys([k for a in args for k in a.dict_items(tx)] + list(kwargs))
        return super().call_method(tx, name, args, kwargs)

    def binary_op(self, tx, fn, a: Value, b: Value):
        if fn is operator.ior and a is self and isinstance(b, DictV):
            self._check_keys(list(b.dict_items(tx)))
        return super().binary_op(tx, fn, a, b)

    def reconstruct(self, rb) -> tuple[str, bool]:
        return f"{rb.expr(self.owner)}.__dict__", True


_objects.INSTANCE_DICT = InstanceDictV


class DictObjV(DictV):
    """An instance of a dict subclass created while tracing (an
    ``OrderedDict`` subclass that is also a dataclass, as transformers'
    ``ModelOutput``): the dict storage (``items``, what the builtin dict
    methods of the class act on), the instance attributes (``attrs``) and the
    class, whose Python methods run traced -- ``__init__``,
    ``__post_init__``, ``__setattr__``, ``__getitem__``, ``__setitem__``, any
    other method -- as Python would call them. Builtin methods of ``dict``,
    ``OrderedDict`` and ``object`` (found through the class or through
    ``super()``) act on the storage or the attributes directly. Rebuilt after
    the graph as a real instance of the class (no method of it runs there)."""

    __slots__ = ("attrs", "factory")
    # super().__setitem__, super().__setattr__ ...: SuperV binds the builtin
    # method to this value (call_method)
    builtin_methods = True

    def __init__(self, cls: type) -> None:
        super().__init__({}, cls=cls)
        self.attrs: dict[str, Value] = {}
        self.factory: Value = Const(None)  # a defaultdict's default_factory

    def _repr(self) -> str:
        return f"{self.cls.__qualname__}: {super()._repr()}; attrs {list(self.attrs)}"

    def as_python(self):
        return NO

    def _hook(self, tx, name: str):
        """The Python function the class defines for ``name`` (a protocol
        method), or None where the builtin base's implementation applies."""
        found = lookup(tx, self.cls, name)
        if isinstance(found, types.FunctionType):
            return found
        if found is MISSING or builtin_entry(found):
            return None
        raise GraphBreak("JF022", f"{self.cls.__qualname__}.{name} is a "
                         f"{type(found).__name__}")

    def _inline(self, tx, fn, *args: Value) -> Value:
        return tx.inline_function(fn, [self, *args], {}, None)

    # -- the dict protocol: the class's methods, else the storage -------------
    def truth(self, tx) -> bool:
        for name in ("__bool__", "__len__"):
            fn = self._hook(tx, name)
            if fn is not None:
                return self._inline(tx, fn).truth(tx)  # bool(r) / r != 0
        return bool(self.items)

    def length(self, tx) -> int:
        fn = self._hook(tx, "__len__")
        if fn is not None:
            n = self._inline(tx, fn).as_python()
            if not isinstance(n, int):
                raise GraphBreak("JF022", f"{self.cls.__qualname__}.__len__ result")
            return n
        return len(self.items)

    def iterate(self, tx) -> list[Value]:
        fn = self._hook(tx, "__iter__")
        if fn is not None:
            return self._inline(tx, fn).iterate(tx)
        return [Const(k) for k in self.items]

    def dict_items(self, tx) -> dict:
        # dict(obj), **obj: the storage, unless the class iterates otherwise
        if self._hook(tx, "__iter__") is not None or self._hook(tx, "keys") is not None:
            raise GraphBreak("JF021", f"dict update from {self.cls.__qualname__}, which "
                             "defines its own keys")
        return dict(self.items)

    def contains(self, tx, item: Value) -> bool:
        fn = self._hook(tx, "__contains__")
        if fn is not None:
            return self._inline(tx, fn, item).truth(tx)
        return super().contains(tx, item)

    def get_item(self, tx, key: Value) -> Value:
        fn = self._hook(tx, "__getitem__")
        if fn is not None:
            return self._inline(tx, fn, key)
        return self._dict_getitem(tx, key)

    def _dict_getitem(self, tx, key: Value) -> Value:
        k = key.as_python()
        if k is not NO and k not in self.items:
            missing = self._hook(tx, "__missing__")
            if missing is not None:
                return self._inline(tx, missing, key)
            if self._defaultdict() and not (isinstance(self.factory, Const) and
                                            self.factory.value is None):
                value = self.factory.call(tx, [], {})  # defaultdict.__missing__
                DictV.store_item(self, tx, key, value)
                return value
        return DictV.get_item(self, tx, key)

    def _defaultdict(self) -> bool:
        return issubclass(self.cls, collections.defaultdict)

    def store_item(self, tx, key: Value, value: Value) -> None:
        fn = self._hook(tx, "__setitem__")
        if fn is not None:
            self._inline(tx, fn, key, value)
            return
        DictV.store_item(self, tx, key, value)

    def delete_item(self, tx, key: Value) -> None:
        fn = self._hook(tx, "__delitem__")
        if fn is not None:
            self._inline(tx, fn, key)
            return
        DictV.delete_item(self, tx, key)

    # -- attributes: object.__getattribute__ / __setattr__ over the class ---------
    def get_attr(self, tx, name: str) -> Value:
        if name == "__class__":
            return ObjV(self.cls)
        if name == "default_factory" and self._defaultdict():
            return self.factory
        fn = self._hook(tx, "__getattribute__")
        if fn is not None:
            return self._inline(tx, fn, Const(name))
        return self._generic_getattr(tx, name)

    def _generic_getattr(self, tx, name: str) -> Value:
        cls = self.cls
        found = lookup(tx, cls, name)
        if found is not MISSING and is_data_descriptor(found):
            return class_attr(tx, self, cls, name, found)
        if name in self.attrs:
            return self.attrs[name]
        if found is not MISSING:
            if builtin_entry(found):  # keys(), items(), ...: bound to this instance
                return MethodV(self, name)
            return class_attr(tx, self, cls, name, found)
        getattr_hook = lookup(tx, cls, "__getattr__")
        if isinstance(getattr_hook, types.FunctionType):
            return self._inline(tx, getattr_hook, Const(name))
        raise would_raise(AttributeError, f"{cls.__name__!r} object has no attribute {name!r}",
                          exc=AttributeError(f"{cls.__name__!r} object has no attribute "
                                             f"{name!r}"))

    def store_attr(self, tx, name: str, value: Value) -> None:
        if name == "default_factory" and self._defaultdict():
            self.will_mutate(tx)
            self.factory = value
            return
        fn = self._hook(tx, "__setattr__")
        if fn is not None:
            self._inline(tx, fn, Const(name), value)
            return
        self._generic_setattr(tx, name, value)

    def _generic_setattr(self, tx, name: str, value: Value) -> None:
        found = lookup(tx, self.cls, name)
        if found is not MISSING and is_data_descriptor(found):
            if isinstance(found, property) and isinstance(found.fset, types.FunctionType):
                self._inline(tx, found.fset, value)
                return
            raise GraphBreak("JF011", f"assignment to descriptor {name!r} of "
                             f"{self.cls.__qualname__}")
        self.will_mutate(tx)
        self.attrs[name] = value

    def delete_attr(self, tx, name: str) -> None:
        fn = self._hook(tx, "__delattr__")
        if fn is not None:
            self._inline(tx, fn, Const(name))
            return
        self._generic_delattr(tx, name)

    def _generic_delattr(self, tx, name: str) -> None:
        if name not in self.attrs or is_data_descriptor(lookup(tx, self.cls, name)):
            return super().delete_attr(tx, name)
        self.will_mutate(tx)
        del self.attrs[name]

    # -- builtin methods (reached only where the class resolved to them) ----------
    def call_method(self, tx, name: str, args: list, kwargs: dict) -> Value:
        n = len(args)
        done = generic_attr_method(self, tx, name, args, kwargs, _name)
        if done is not None:
            return done
        if name == "__init__" and self._defaultdict():  # defaultdict(factory, ...)
            if args:
                factory, args = args[0], args[1:]
                if not (isinstance(factory, Const) and factory.value is None or
                        _callable(factory)):
                    raise would_raise(TypeError, "first argument must be callable or None",
                                      exc=TypeError("first argument must be callable or None"))
                self.factory = factory
            return DictObjV.call_method(self, tx, "__dict_init__", list(args), kwargs)
        if name in ("__init__", "__dict_init__"):  # dict.__init__ / OrderedDict.__init__
            if n > 1:
                raise would_raise(TypeError, f"dict expected at most 1 argument, got {n}")
            self.will_mutate(tx)
            if args:
                self.items.update(_pairs(tx, args[0]))
            self.items.update(kwargs)
            return Const(None)
        if name == "__getitem__" and n == 1:
            return self._dict_getitem(tx, args[0])
        if name == "__setitem__" and n == 2:
            DictV.store_item(self, tx, args[0], args[1])
            return Const(None)
        if name == "__delitem__" and n == 1:
            DictV.delete_item(self, tx, args[0])
            return Const(None)
        if name == "__contains__" and n == 1:
            return Const(DictV.contains(self, tx, args[0]))
        if name == "__len__" and not n:
            return Const(len(self.items))
        if name in ("copy", "__copy__") and not n and not kwargs:
            found = lookup(tx, self.cls, name)
            if found is dict.__dict__.get(name):  # dict.copy makes a plain dict
                return DictV(dict(self.items))
            # defaultdict's calls type(self)(self.default_factory, self),
            # OrderedDict's type(self)(self): the class's own __init__ runs
            if found is collections.defaultdict.__dict__.get(name):
                return tx.call_object(ObjV(self.cls), self.cls, [self.factory, self], {})
            if found is collections.OrderedDict.__dict__.get(name):
                return tx.call_object(ObjV(self.cls), self.cls, [self], {})
            raise self._unsupported_method(name)
        if name in ("keys", "values", "items", "get", "pop", "update", "setdefault"):
            return super().call_method(tx, name, args, kwargs)
        if name == "clear" and not n:
            self.will_mutate(tx)
            self.items.clear()
            return Const(None)
        raise self._unsupported_method(name)

    def reconstruct(self, rb) -> tuple[str, bool]:
        fb = rb.fb
        items = ", ".join(f"{fb.const(k)}: {rb.expr(x)}" for k, x in self.items.items())
        attrs = ", ".join(f"{k!r}: {rb.expr(x)}" for k, x in self.attrs.items())
        factory = f", {rb.expr(self.factory)}" if self._defaultdict() else ""
        return (f"{fb.const(build_dict_object)}({fb.const(self.cls)}, {{{items}}}, "
                f"{{{attrs}}}{factory})"), True


class RealDictV(ObjV):
    """A real instance of a dict subclass read from the frame (a ModelOutput
    made before a graph break): an object like any other (ObjV: its class's
    methods run traced, attribute reads are guarded), whose builtin dict
    reads -- bound to it as builtin methods -- read its storage."""

    __slots__ = ()

    def call_method(self, tx, name: str, args: list, kwargs: dict) -> Value:
        if self.source is not None and name in _DICT_READS:
            return self._dict_read(tx, name, args, kwargs)
        return super().call_method(tx, name, args, kwargs)

    def _dict_read(self, tx, name: str, args: list, kwargs: dict) -> Value:
        """A builtin read of a real dict subclass's storage (``keys()``,
        ``items()`` of a ModelOutput made before a break): its keys guarded
        in order, each item read through the builtin ``dict.__getitem__``
        (not the class's own)."""
        obj, src = self._obj, self.source
        base = next(b for b in type(obj).__mro__ if b in (collections.OrderedDict, dict))
        keys = list(base.keys(obj))
        if not all(type(k) in (str, int, bool, type(None), float) for k in keys):
            raise GraphBreak("JF021", f"{type(obj).__name__} with non-constant keys")
        tx.output.guards.add(f"__jf_h_list({PinnedSource(base.keys).expr()}({src.expr()})) == "
                             f"{keys!r}", f"keys of {src.name()} == {keys!r}")
        getter = PinnedSource(dict.__getitem__)

        def item(k):
            return tx.output.wrap(dict.__getitem__(obj, k), ExprSource(
                f"{getter.expr()}({src.expr()}, {k!r})", f"{src.name()}[{k!r}]"))
        if kwargs:
            raise GraphBreak("JF023", f"{name}() with keyword arguments")
        if name == "keys" and not args:
            return ListV([Const(k) for k in keys])
        if name == "__iter__" and not args:
            return IterV([Const(k) for k in keys])
        if name == "values" and not args:
            return ListV([item(k) for k in keys])
        if name == "items" and not args:
            return ListV([TupleV([Const(k), item(k)]) for k in keys])
        if name == "__len__" and not args:
            return Const(len(keys))
        k = args[0].as_python() if args else NO
        if k is NO:
            raise GraphBreak("JF021", f"{name}() with a non-constant key")
        if name == "__contains__" and len(args) == 1:
            return Const(k in keys)
        if name == "get" and len(args) in (1, 2):
            return item(k) if k in keys else (args[1] if len(args) == 2 else Const(None))
        if name == "__getitem__" and len(args) == 1 and k in keys:
            return item(k)
        raise GraphBreak("JF023", f"{type(obj).__name__}.{name}{tuple(args)!r}")


# builtin dict methods that only read (RealDictV._dict_read)
_DICT_READS = ("keys", "values", "items", "get", "__len__", "__contains__", "__getitem__",
               "__iter__")


def _callable(v: Value) -> bool:
    t = v.python_type()
    if isinstance(v, ObjV) or v.as_python() is not NO:
        obj = v.obj if isinstance(v, ObjV) else v.as_python()
        return callable(obj)
    return hasattr(t, "__call__")


def _name(v: Value) -> str:
    n = v.as_python()
    if not isinstance(n, str):
        raise GraphBreak("JF015", "attribute name is not a constant string")
    return n


def _pairs(tx, v: Value) -> dict:
    """The items of ``dict(v)``: a mapping's, or an iterable of pairs'."""
    if isinstance(v, DictV):
        return v.dict_items(tx)
    out = {}
    for pair in v.iterate(tx):
        kv = pair.iterate(tx)
        if len(kv) != 2:
            raise would_raise(ValueError, "dictionary update sequence element has the wrong "
                              "length")
        out[dict_key(kv[0])] = kv[1]
    return out


def build_dict_object(cls, items: dict, attrs: dict, factory=None):
    """An instance of the dict subclass ``cls`` made while tracing: created
    by the builtin ``__new__`` (the trace checked that the class resolves to
    it), its items stored by the builtin base's ``__setitem__`` and its
    attributes put in its ``__dict__``: none of the class's own methods runs
    (they ran in the trace)."""
    obj = cls.__new__(cls)
    if factory is not None:
        collections.defaultdict.__init__(obj, factory)
    setitem = next(b.__setitem__ for b in cls.__mro__ if b in BUILTIN_BASES)
    for k, v in items.items():
        setitem(obj, k, v)
    if attrs:
        obj.__dict__.update(attrs)
    return obj


class DictViewV(Value):
    """``d.keys()``, ``d.values()`` or ``d.items()`` of a dict value: a live
    view, as in Python. It holds the dict value, not a copy, so every use
    (``len``, ``in``, iteration, set operators) sees the dict's later
    changes; it is rebuilt as ``<the dict>.keys()`` and so on."""

    __slots__ = ("dict", "kind", "source")

    def __init__(self, d: DictV, kind: str) -> None:
        self.dict = d
        self.kind = kind
        self.source = None

    def python_type(self) -> type:
        base = collections.OrderedDict if issubclass(self.dict.python_type(),
                                                     collections.OrderedDict) else dict
        return _VIEW_TYPES[(base, self.kind)]

    def _repr(self) -> str:
        return f"{self.kind} of {self.dict!r}"

    def _members(self) -> list[Value]:
        items = self.dict.items
        if self.kind == "keys":
            return [Const(k) for k in items]
        if self.kind == "values":
            return list(items.values())
        return [TupleV([Const(k), v]) for k, v in items.items()]

    def _python_members(self) -> list | None:
        """The members as Python values (keys, or (key, value) pairs of
        constants), or None."""
        if self.kind == "keys":
            return list(self.dict.items)
        if self.kind == "items":
            out = []
            for k, v in self.dict.items.items():
                pv = v.as_python()
                if pv is NO:
                    return None
                out.append((k, pv))
            return out
        return None  # values views are not sets

    def as_python(self):
        d = self.dict.as_python()
        if d is NO and self.kind == "keys":
            d = dict.fromkeys(self.dict.items)  # the keys are constants
        return NO if d is NO else getattr(d, self.kind)()

    def truth(self, tx) -> bool:
        return bool(self.dict.items)

    def length(self, tx) -> int:
        return len(self.dict.items)

    def iterate(self, tx) -> list[Value]:
        return self._members()

    def contains(self, tx, item: Value) -> bool:
        if self.kind == "keys":
            return self.dict.contains(tx, item)
        if self.kind == "items":
            # (k, v) in d.items(): k is a key and d[k] is v or equals it
            pair = item.iterate(tx) if isinstance(item, TupleV) else None
            if pair is None or len(pair) != 2:
                pk = item.as_python()
                if pk is NO:
                    raise GraphBreak("JF021", "membership test in dict items of a non-pair")
                if not (isinstance(pk, tuple) and len(pk) == 2):
                    return False
                pair = [Const(pk[0]), Const(pk[1])]
            if not self.dict.contains(tx, pair[0]):
                return False
            return same_or_equal(tx, self.dict.get_item(tx, pair[0]), pair[1])
        return any(same_or_equal(tx, v, item) for v in self._members())

    def get_attr(self, tx, name: str) -> Value:
        if name == "isdisjoint" and self.kind != "values":
            return MethodV(self, name)
        if name == "mapping":
            raise GraphBreak("JF022", "the mapping of a dict view")
        return super().get_attr(tx, name)

    def call_method(self, tx, name: str, args: list, kwargs: dict) -> Value:
        if name == "isdisjoint" and len(args) == 1 and not kwargs:
            other = _as_set(tx, args[0])
            mine = self._python_members()
            if mine is None or other is None:
                raise GraphBreak("JF021", "isdisjoint() of non-constant members")
            return Const(set(mine).isdisjoint(other))
        return super().call_method(tx, name, args, kwargs)

    def binary_op(self, tx, fn, a: Value, b: Value):
        # keys and items views are sets: & | - ^ with any iterable give a set
        if fn not in _SET_OPS or self.kind == "values":
            return NotImplemented
        left, right = _as_set(tx, a), _as_set(tx, b)
        if left is None or right is None:
            raise GraphBreak("JF021", f"set operator {fn.__name__} on a dict view of "
                             "non-constant members")
        out = fold(_SET_OPS[fn], left, right).value
        return SetV([Const(x) for x in out])

    def compare_op(self, tx, fn, a: Value, b: Value):
        if self.kind == "values":
            # dict_values compares by identity
            if fn in (operator.eq, operator.ne):
                same = isinstance(a, DictViewV) and isinstance(b, DictViewV) and a is b
                return Const(same == (fn is operator.eq))
            return NotImplemented
        if fn not in (operator.eq, operator.ne, operator.lt, operator.le, operator.gt,
                      operator.ge):
            return NotImplemented
        other = b if a is self else a
        if not isinstance(other, (DictViewV, SetV)) and not isinstance(
                other.as_python(), (set, frozenset)):
            # a view equals only sets and set-like views
            if fn in (operator.eq, operator.ne):
                return Const(fn is operator.ne)
            return NotImplemented
        left, right = _as_set(tx, a), _as_set(tx, b)
        if left is None or right is None:
            raise GraphBreak("JF021", "comparison of a dict view of non-constant members")
        return fold(fn, left, right)

    def reconstruct(self, rb) -> tuple[str, bool]:
        if self.source is not None:
            return self.source.expr(), read_before_effects(self.source)
        return f"{rb.expr(self.dict)}.{self.kind}()", True


def wrap_dict_view(output, view, source: Source) -> Value | None:
    """A dict view read from the frame (one handed to a resume function):
    a live view of its dict, which is wrapped like any dict found in the
    frame (reached through the view, so a dict also passed by itself is
    the same value, guarded to be the same object); None when its dict is
    not one the interpreter models."""
    real = gc.get_referents(view)
    if len(real) != 1 or type(real[0]) not in (dict, collections.OrderedDict):
        return None
    kind = _KIND_OF_VIEW[type(view)]
    output.guards.type_is(source, view)
    d = output.wrap(real[0], ExprSource(
        f"__jf_h___import__('gc').get_referents({source.expr()})[0]",
        f"{source.name()}.mapping"))
    if not isinstance(d, DictV):
        return None
    v = DictViewV(d, kind)
    v.source = source
    return v


_VIEW_KINDS = ("keys", "values", "items")
_VIEW_TYPES = {(base, kind): type(getattr(base(), kind)())
               for base in (dict, collections.OrderedDict) for kind in _VIEW_KINDS}
_KIND_OF_VIEW = {t: kind for (_, kind), t in _VIEW_TYPES.items()}
VIEW_TYPES = frozenset(_KIND_OF_VIEW)
_SET_OPS = {operator.and_: operator.and_, operator.or_: operator.or_,
            operator.sub: operator.sub, operator.xor: operator.xor}


def _as_set(tx, v: Value) -> set | None:
    """The members of a set-like operand as a Python set, or None."""
    if isinstance(v, DictViewV):
        m = v._python_members()
        return None if m is None else set(m)
    py = v.as_python()
    if py is not NO and isinstance(py, (set, frozenset)):
        return set(py)
    try:
        items = v.iterate(tx)
    except GraphBreak:
        return None
    vals = [x.as_python() for x in items]
    if any(x is NO for x in vals):
        return None
    try:
        return set(vals)
    except TypeError:
        raise would_raise(TypeError, "unhashable member of a set operand") from None


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
