"""Python objects: real ones read from the frame, and instances of user
classes created while tracing.

In: real objects (functions, classes, modules, ``nn.Module``s, user objects,
builtin containers holding non-constant keys) wrapped with their source;
``object.__new__`` of a user class (or ``types.SimpleNamespace.__new__`` of
an attribute bag) plus the attributes its traced ``__init__`` stores;
``super(cls, obj)``.
Out: ``ObjV``, ``NewObjV`` (``SuperV``: supers.py) and what Python does with them while
tracing: attribute reads follow Python's lookup (instance dict, class,
descriptors, properties and ``__getattr__`` run traced) and are guarded
through their sources; ``nn.Module`` parameters, buffers and submodules
are read with fast sources (``m._parameters['w']``); containers of modules
index and iterate; attribute stores are recorded and replayed after the
graph, and so are deletions (``del obj.a``, ``delattr``: guarded on the
attribute being in the instance dict); calls go to the call semantics of
real objects (``tx.call_object``).

Every attribute found through a class is guarded by its resolution
(:func:`lookup`: the class's MRO still finds the same entry) and, for
instances, by the name's absence from the instance dict where that decides
the lookup; the object read (a function, a property's getter) is then
reached through a source (its own, or the pinned object), so its code,
defaults and cells are guarded where they are read.
"""
from __future__ import annotations

import enum
import functools
import inspect
import logging
import operator
import types
from typing import Any

import torch

from .. import polyfills
from ..breaks import GraphBreak, would_raise
from ..sources import (
    AttrSource, ExprSource, ItemSource, KeyedItemSource, PinnedSource, Source, key_expr,
)
from .attr_protocol import (  # noqa: F401 -- re-exported: callers import them from here
    _OBJECT_GETATTRIBUTE, BUILTIN_BASES, MISSING, _generic_getattribute, builtin_entry,
    generic_attr_method, is_data_descriptor, is_instance_dict_descriptor, lookup,
    lookup_succeeds)
from .base import NO, Value, read_before_effects
from .constants import Const, fold
from .methods import MethodV
from .module_slices import ModuleSliceV
from .tensors import TensorV

_SEQ_MODULES = (torch.nn.ModuleList, torch.nn.Sequential)
# builtin containers (and subclasses keeping their __len__, e.g. OrderedDict):
# truth and len() read the real object and are guarded
_BUILTIN_LEN = (dict.__len__, list.__len__, tuple.__len__, set.__len__, frozenset.__len__)
_TRUTH_BY_LEN = _BUILTIN_LEN + (str.__len__, bytes.__len__)


def callable_value(v: Value) -> bool:
    """``callable(v)``: whether its type has a ``__call__`` (a class's own or
    a builtin type's call slot, which both show in the type's dict). An
    object used as is answers itself: only its type matters, which is
    guarded for one guarded by recipe."""
    if isinstance(v, ObjV):
        return callable(v._obj if v.by_recipe() else v.obj)
    return any("__call__" in vars(k) for k in v.python_type().__mro__)


class ObjV(Value):
    """A real object. ``identity`` (functions, partials, modules read from
    the frame: see OutputGraph._wrap_new) installs the guard on the
    object's identity the first time a use depends on it (``obj``); the
    uses this kind models itself read ``_obj`` and guard what they read."""

    __slots__ = ("_obj", "source", "_identity")

    def __init__(self, obj: Any, source: Source | None = None, identity=None) -> None:
        self._obj = obj
        self.source = source
        self._identity = identity

    @property
    def obj(self) -> Any:
        g = self._identity
        if g is not None:
            self._identity = None
            g()
        return self._obj

    def by_recipe(self) -> bool:
        """Is the object's identity still unguarded (its uses so far are
        guarded by what they read)?"""
        return self._identity is not None

    def settle(self) -> None:
        """The caller guards what it reads from the object: its identity
        need not be (unless a later use depends on it: that one is then
        guarded by what it reads too, as it is no longer pending)."""
        self._identity = None

    def python_type(self) -> type:
        return type(self._obj)

    def _repr(self) -> str:
        return f"{type(self._obj).__name__} {getattr(self._obj, '__qualname__', '')}"

    def as_python(self):
        if isinstance(self._obj, (torch.dtype, torch.device, type)):
            return self._obj
        return NO

    # -- truth, len, iteration -------------------------------------------------
    def truth(self, tx) -> bool:
        obj = self._obj
        t = type(obj)
        if isinstance(obj, torch.nn.Module):
            if hasattr(t, "__len__"):
                return self.length(tx) > 0
            return True
        if not (hasattr(t, "__bool__") or hasattr(t, "__len__")):
            return True
        if isinstance(obj, (dict, list, tuple, set, frozenset, str, bytes)) and \
                t.__len__ in _TRUTH_BY_LEN:
            # a builtin container subclass (OrderedDict, ...): guard its emptiness
            result = bool(obj)
            if self.source is not None:
                tx.output.guards.add(f"__jf_h_bool({self.source.expr()}) is {result!r}",
                                     f"{self.source.name()} is {'non-' if result else ''}empty")
            return result
        if t.__module__ == "builtins" and self.source is None:
            return bool(obj)
        raise GraphBreak("JF022", f"truth value of a {t.__name__}")

    def length(self, tx) -> int:
        obj = self._obj
        # a builtin container (or a subclass such as OrderedDict), or a module
        if not (isinstance(obj, (dict, list, tuple, set, frozenset)) and
                type(obj).__len__ in _BUILTIN_LEN or
                isinstance(obj, torch.nn.Module) and hasattr(type(obj), "__len__")):
            return super().length(tx)
        n = len(obj)
        if self.source is not None:
            tx.output.guards.add(f"__jf_h_len({self.source.expr()}) == {n}",
                                 f"len({self.source.name()}) == {n}")
        return n

    def iterate(self, tx) -> list[Value]:
        obj, src = self._obj, self.source
        if isinstance(obj, _SEQ_MODULES):
            self.length(tx)
            return [tx.output.wrap(m, ItemSource(AttrSource(src, "_modules"), k) if src else None)
                    for k, m in obj._modules.items()]
        if isinstance(obj, torch.nn.ModuleDict):
            self.length(tx)
            if src is not None:
                tx.output.guards.add(
                    f"__jf_h_list({src.expr()}._modules) == {list(obj._modules)!r}",
                    f"keys of {src.name()} == {list(obj._modules)!r}")
            return [Const(k) for k in obj._modules]
        if isinstance(obj, torch.nn.ParameterList):
            self.length(tx)
            return [tx.output.wrap(p, ItemSource(AttrSource(src, "_parameters"), k)
                                   if src else None)
                    for k, p in obj._parameters.items()]
        return super().iterate(tx)

    # -- items -------------------------------------------------------------------
    def _tensor_key(self, tx, key: Value):
        """The real tensor of ``key`` when this is a real dict reached from the
        frame and ``key`` one of the graph's input tensors as it was passed in
        (dicts keyed by parameters: ``optimizer.state[p]``); else None."""
        if not (isinstance(self.obj, dict) and self.source is not None
                and isinstance(key, TensorV) and key.source is not None):
            return None
        for v, t in tx.output.inputs:
            if v is key:
                return t
        return None

    def contains(self, tx, item: Value) -> bool:
        t = self._tensor_key(tx, item)
        if t is not None:
            found = t in self.obj
            # the answer, guarded (identity of the key: tensors hash by id)
            expr = f"__jf_h_dict.__contains__({self.source.expr()}, {item.source.expr()})"
            tx.output.guards.add(f"{expr} is {found}", f"{item.source.name()} "
                                 f"{'in' if found else 'not in'} {self.source.name()}")
            return found
        if isinstance(self.obj, (dict, set, frozenset)):
            key = item.as_python()
            if key is NO:
                raise GraphBreak("JF021", "membership test with a non-constant key")
            if self.source is not None:
                tx.output.guards.add(
                    f"({key_expr(key)} in {self.source.expr()}) is {key in self.obj!r}",
                    f"{key!r} {'in' if key in self.obj else 'not in'} {self.source.name()}")
            return key in self.obj
        return super().contains(tx, item)

    def get_item(self, tx, key: Value) -> Value:
        t = self._tensor_key(tx, key)
        if t is not None:
            if t not in self.obj:  # (a defaultdict would insert: not a pure read)
                raise would_raise(KeyError, f"{key.source.name()} not in "
                                            f"{self.source.name()}")
            tx.output.guards.add(
                f"__jf_h_dict.__contains__({self.source.expr()}, {key.source.expr()})",
                f"{key.source.name()} in {self.source.name()}")
            return tx.output.wrap(self.obj[t], KeyedItemSource(self.source, key.source))
        k = key.as_python()
        if k is NO:
            return super().get_item(tx, key)
        real, src = self._obj, self.source
        if isinstance(real, _SEQ_MODULES) and isinstance(k, slice):
            # ``layers[:n]``: a new container of the same modules (built again
            # from the real one if it escapes)
            keys = list(real._modules.keys())[k]
            self.length(tx)
            return ModuleSliceV([tx.output.wrap(real._modules[name], ItemSource(AttrSource(
                src, "_modules"), name) if src else None) for name in keys], self, k)
        if isinstance(real, (*_SEQ_MODULES, torch.nn.ParameterList)) and isinstance(k, int):
            # an entry of a module or parameter list, read from its dict:
            # the guarded length fixes which entry an index names
            table = "_parameters" if isinstance(real, torch.nn.ParameterList) else "_modules"
            keys = list(getattr(real, table).keys())
            self.length(tx)
            if not -len(keys) <= k < len(keys):
                raise would_raise(IndexError, f"index {k} of {type(real).__name__}")
            name = keys[k]
            return tx.output.wrap(getattr(real, table)[name],
                                  ItemSource(AttrSource(src, table), name) if src else None)
        if isinstance(real, torch.nn.ModuleDict) and isinstance(k, str):
            return tx.output.wrap(real._modules[k], ItemSource(AttrSource(src, "_modules"), k)
                                  if src else None)
        if isinstance(real, (dict, torch.nn.ParameterDict)) or type(real).__module__ == "builtins":
            try:
                item = real[k]
            except Exception as e:  # noqa: BLE001
                raise would_raise(type(e), f"subscript of {type(real).__name__}") from None
            return tx.output.wrap(item, ItemSource(src, k) if src else None)
        getitem = lookup(tx, type(real), "__getitem__")
        if isinstance(getitem, types.FunctionType):
            return tx.inline_function(getitem, [self, Const(k)], {}, None)
        raise GraphBreak("JF022", f"subscript of {type(real).__name__}")

    # -- attributes ----------------------------------------------------------------
    def get_attr(self, tx, name: str) -> Value:
        obj, src = self._obj, self.source
        out = tx.output
        pending = out.effects.pending_attr(obj, name)
        if pending is not None and self._custom_getattribute(tx):
            pending = None  # the class's own lookup decides (_custom_attr)
        if pending is DELETED:  # deleted earlier in this trace: the class decides
            return self._attr_after_delete(tx, name)
        if pending is not None:  # written earlier in this trace
            return pending
        if isinstance(obj, types.ModuleType):
            return self._module_attr(tx, name)
        if isinstance(obj, type):
            return self._class_object_attr(tx, name)
        if isinstance(obj, (types.FunctionType, types.BuiltinFunctionType)):
            if name in ("__name__", "__qualname__", "__module__", "__doc__", "__wrapped__") \
                    and hasattr(obj, name):
                return out.wrap(getattr(obj, name), AttrSource(self._base(), name))
            raise GraphBreak("JF022", f"attribute {name!r} of a function")
        cls = type(obj)
        if isinstance(obj, torch.nn.Module):
            d = obj.__dict__
            for store in ("_parameters", "_buffers", "_modules"):
                table = d.get(store)
                if table is not None and name in table and lookup(tx, cls, name) is MISSING:
                    # Module.__getattr__ finds it (the class has no such name;
                    # Module.__setattr__ keeps it out of the instance dict)
                    s = ItemSource(AttrSource(src, store), name) if src is not None else None
                    return out.wrap(table[name], s)
        elif not _generic_getattribute(lookup(tx, cls, "__getattribute__")):
            return self._custom_attr(tx, name)
        found = lookup(tx, cls, name)
        if found is not MISSING and is_data_descriptor(found):
            return class_attr(tx, self, cls, name, found)  # before the instance dict
        inst_dict = getattr(obj, "__dict__", None)
        if not isinstance(inst_dict, dict):
            inst_dict = None
        if inst_dict is not None:
            out.instance_dict_aliasing(obj, attr_read=True)
        if inst_dict is not None and name in inst_dict:
            return out.wrap(inst_dict[name], AttrSource(src, name) if src is not None else None)
        if inst_dict is not None and src is not None:
            out.guards.instance_lacks(src, name)
        if found is not MISSING:
            return class_attr(tx, self, cls, name, found)
        getattr_hook = lookup(tx, cls, "__getattr__")
        if isinstance(getattr_hook, types.FunctionType) and not isinstance(obj, torch.nn.Module):
            return tx.inline_function(getattr_hook, [self, Const(name)], {}, None)
        raise would_raise(AttributeError, f"{cls.__name__} has no attribute {name!r}")

    def _attr_after_delete(self, tx, name: str) -> Value:
        """``obj.name`` after ``del obj.name`` in this trace (delete_attr
        checked the generic protocol): the class's attribute, ``__getattr__``,
        or AttributeError."""
        cls = type(self._obj)
        found = lookup(tx, cls, name)
        if found is not MISSING:
            return class_attr(tx, self, cls, name, found)
        getattr_hook = lookup(tx, cls, "__getattr__")
        if isinstance(getattr_hook, types.FunctionType):
            return tx.inline_function(getattr_hook, [self, Const(name)], {}, None)
        msg = f"{cls.__name__!r} object has no attribute {name!r}"
        raise would_raise(AttributeError, msg, exc=AttributeError(msg))

    def delete_attr(self, tx, name: str) -> None:
        """``del obj.name`` on an object read from the frame: recorded and
        replayed after the graph, like a store. The attribute must be in the
        instance dict (guarded) or stored earlier in this trace."""
        obj, src, out = self._obj, self.source, tx.output
        if src is None or isinstance(obj, (type, types.ModuleType, types.FunctionType)):
            return super().delete_attr(tx, name)
        effects = out.effects
        out.instance_dict_aliasing(obj, attr_read=False)
        pending = effects.pending_attr(obj, name)
        if pending is None:
            inst_dict = getattr(obj, "__dict__", None)
            if not isinstance(inst_dict, dict):
                return super().delete_attr(tx, name)
            if name in inst_dict:
                out.guards.instance_has(src, name)
            else:
                pending = DELETED  # nothing to delete
                out.guards.instance_lacks(src, name)
        if pending is DELETED:
            descr = lookup(tx, type(obj), name)
            if descr is not MISSING and hasattr(type(descr), "__delete__"):
                raise GraphBreak("JF011", f"deletion through the descriptor "
                                 f"{type(obj).__name__}.{name}")
            msg = f"{type(obj).__name__!r} object has no attribute {name!r}"
            raise would_raise(AttributeError, msg, exc=AttributeError(msg))
        effects.delete_attr(obj, src, name)

    def has_attr(self, tx, name: str) -> bool | None:
        """``hasattr`` after a store or deletion in this trace (None: none)."""
        pending = tx.output.effects.pending_attr(self._obj, name)
        if pending is None:
            return None
        return pending is not DELETED or lookup_succeeds(self._attr_after_delete, tx, name)

    def _base(self) -> Source:
        """Where the object is read: its source, or the object pinned."""
        return self.source if self.source is not None else PinnedSource(self._obj)

    def _class_object_attr(self, tx, name: str) -> Value:
        """An attribute of a class object (``Cls.method``, ``Cls.CONST``),
        re-read through the class at run time."""
        obj, out = self._obj, tx.output
        try:
            static = inspect.getattr_static(obj, name)
        except AttributeError:
            raise would_raise(AttributeError,
                              f"{obj.__name__} has no attribute {name!r}") from None
        lookup(tx, obj, name)
        if isinstance(static, classmethod):
            return MethodV(self, name, static.__func__)
        return out.wrap(getattr(obj, name), AttrSource(self._base(), name))

    def _module_attr(self, tx, name: str) -> Value:
        # library modules too: a patched torch.nn.functional.gelu is seen
        mod = self._obj
        if not hasattr(mod, name):
            raise would_raise(AttributeError, f"module {mod.__name__} has no attribute {name!r}")
        return tx.output.wrap(getattr(mod, name), AttrSource(self._base(), name))

    def _custom_attr(self, tx, name: str) -> Value:
        """Read through the class's own attribute access (config objects,
        ModelOutput); the guard re-reads it the same way."""
        obj, cls = self._obj, type(self._obj)
        if self.source is None:
            raise GraphBreak("JF022", f"{cls.__name__} customises attribute access")
        if tx.output.effects.pending_attrs_of(obj):
            # written in this trace: the class's own lookup, traced, sees the
            # writes (object.__getattribute__ in it reads them, call_method)
            fn = lookup(tx, cls, "__getattribute__")
            if not isinstance(fn, types.FunctionType):
                raise GraphBreak("JF022", f"{cls.__name__} customises attribute access and "
                                 "was written in this frame")
            return tx.inline_function(fn, [self, Const(name)], {}, None)
        try:
            value = getattr(obj, name)
        except Exception as e:  # noqa: BLE001
            raise would_raise(type(e), f"reading {cls.__name__}.{name}") from None
        if isinstance(value, types.MethodType) and value.__self__ is obj:
            return MethodV(self, name, value.__func__)
        return tx.output.wrap(value, AttrSource(self.source, name))

    def call_method(self, tx, name: str, args: list, kwargs: dict) -> Value:
        """Builtin methods bound through ``super()`` (see SuperV.get_attr)."""
        if name == "__getattribute__" and len(args) == 1 and not kwargs and \
                self.source is not None and isinstance(args[0].as_python(), str):
            # object.__getattribute__(self, key) inside a class's own
            # __getattribute__ (transformers' PretrainedConfig): the generic
            # lookup, read now and re-read the same way by the guards
            key = args[0].as_python()
            pending = tx.output.effects.pending_attr(self._obj, key)
            if pending is DELETED:
                return self._attr_after_delete(tx, key)
            if pending is not None:  # written earlier in this trace
                return pending
            try:
                value = object.__getattribute__(self._obj, key)
            except Exception as e:  # noqa: BLE001
                raise would_raise(type(e), f"object.__getattribute__(..., {key!r})") from None
            if isinstance(value, types.MethodType) and value.__self__ is self._obj and \
                    isinstance(value.__func__, types.FunctionType):
                lookup(tx, type(self._obj), key)
                return MethodV(self, key, value.__func__)
            getter = PinnedSource(object.__getattribute__)
            src = ExprSource(f"{getter.expr()}({self.source.expr()}, {key!r})",
                             f"object.__getattribute__({self.source.name()}, {key!r})")
            return tx.output.wrap(value, src)
        if name == "__setattr__" and len(args) == 2 and not kwargs and self._plain_object() \
                and isinstance(args[0].as_python(), str):
            # object.__setattr__(self, key, value), mostly inside a class's
            # own __setattr__ (transformers' PretrainedConfig): the generic store
            tx.output.instance_dict_aliasing(self._obj, attr_read=False)
            tx.output.effects.store_attr(self._obj, self.source, args[0].as_python(), args[1],
                                         generic=True)
            return Const(None)
        return super().call_method(tx, name, args, kwargs)

    def _plain_object(self) -> bool:
        """An instance read from the frame (not a class, module, function or
        nn.Module), whose attribute writes are recorded and replayed."""
        return self.source is not None and not isinstance(
            self._obj, (type, types.ModuleType, types.FunctionType, torch.nn.Module))

    def _custom_getattribute(self, tx) -> bool:
        return self._plain_object() and \
            not _generic_getattribute(lookup(tx, type(self._obj), "__getattribute__"))

    def store_attr(self, tx, name: str, value: Value) -> None:
        if self._plain_object():
            setattr_fn = lookup(tx, type(self._obj), "__setattr__")
            if isinstance(setattr_fn, types.FunctionType):
                # the class's own __setattr__, traced (it stores through
                # object.__setattr__ in the end: call_method)
                tx.inline_function(setattr_fn, [self, Const(name), value], {}, None)
                return
        if self.source is not None and not isinstance(
                self._obj, (type, types.ModuleType, types.FunctionType)):
            tx.output.instance_dict_aliasing(self._obj, attr_read=False)
            tx.output.effects.store_attr(self._obj, self.source, name, value)
            return
        super().store_attr(tx, name, value)

    # -- calls -------------------------------------------------------------------------
    def call(self, tx, args: list, kwargs: dict) -> Value:
        # call_object guards the callee by recipe or, where it depends on
        # the object itself, by identity
        return tx.call_object(self, self._obj, args, kwargs)

    def stand_in(self, tx, name: str, func) -> Value | None:
        """Inline the traceable stand-in for ``self.name()`` (polyfills.py:
        an optimizer step) when it applies now; None when there is none; a
        graph break when it does not apply yet (the call runs natively),
        carrying a guard that it still does not."""
        found = polyfills.for_call(self.obj, name, func)
        if found is None or self.source is None:
            return None
        stand_in, ready = found
        if ready(self.obj):
            g = tx.output.guards
            # module state of torch.optim: constants to the tracer, so guarded here
            g.add(f"{g.fb.const(polyfills.no_global_hooks)}()",
                  "no global optimizer step hooks")
            return tx.inline_function(stand_in, [self], {}, None)
        gb = GraphBreak("JF002", f"{type(self.obj).__qualname__}.{name} (torch.optim) runs "
                        "natively: its traced stand-in does not apply yet (first step, step "
                        "hooks, sparse or complex gradients, or options it does not reproduce)")
        # the entry made at this break re-checks, so the step is traced once it applies
        gb.guard_calls = [(ready, self.source, False, f"{self.source.name()}.{name}() "
                                                       "still runs natively")]
        raise gb

    # -- operands ----------------------------------------------------------------------
    def compare_op(self, tx, fn, a: Value, b: Value):
        ca, cb = a.as_python(), b.as_python()
        if ca is not NO and cb is not NO:
            return fold(fn, ca, cb)
        if fn in (operator.eq, operator.ne) and isinstance(a, ObjV) and isinstance(b, ObjV):
            if type(a.obj).__eq__ is object.__eq__:
                return Const((a.obj is b.obj) == (fn is operator.eq))
            if isinstance(a.obj, enum.Enum) and isinstance(b.obj, enum.Enum):
                # members are singletons guarded by identity: their equality
                # (also of str/int-valued enums) is a constant of the trace
                return Const(fn(a.obj, b.obj))
        return NotImplemented

    def identical(self, tx, other: Value):
        if isinstance(other, ObjV):
            return self.obj is other.obj
        return NotImplemented

    def reconstruct(self, rb) -> tuple[str, bool]:
        if self.source is not None:
            return self.source.expr(), read_before_effects(self.source)
        return rb.fb.const(self.obj), False


class NewObjV(Value):
    """An instance created while tracing: of a user class (``object.__new__``
    plus what its traced ``__init__`` stores) or of an attribute bag whose
    builtin ``__new__`` makes an empty object (``types.SimpleNamespace`` and
    its subclasses, :data:`NAMESPACE_NEW`). Attribute reads, stores and
    deletions follow Python's generic protocol over the class: a Python
    ``__getattribute__`` / ``__setattr__`` / ``__delattr__`` / ``__getattr__``
    of the class runs traced, data descriptors (properties) come before the
    instance attributes (``attrs``), the builtin generic methods (reached
    through ``super()`` or ``object.__setattr__``) act on ``attrs``. Rebuilt
    after the graph if it escapes, with the builtin ``__new__`` and the
    attributes it ended with (none of the class's methods runs again)."""

    __slots__ = ("cls", "attrs", "source", "new", "_dict_view")
    # super().__setattr__, object.__setattr__(self, ...), SimpleNamespace's
    # __init__: SuperV binds the builtin method to this value (call_method)
    builtin_methods = True

    def __init__(self, cls: type, new=object.__new__) -> None:
        self.cls = cls
        self.attrs: dict[str, Value] = {}
        self.source = None
        self.new = new  # the builtin __new__ the class resolves to
        self._dict_view = None

    def python_type(self) -> type:
        return self.cls

    def _repr(self) -> str:
        return f"{self.cls.__qualname__} attrs {list(self.attrs)}"

    def instance_dict(self) -> Value:
        """``obj.__dict__`` / ``vars(obj)``: one live dict over ``attrs``
        (the same storage, so a store through either is seen by the other;
        the same value each time, so ``vars(o) is o.__dict__``)."""
        if self._dict_view is None:
            if INSTANCE_DICT is None:
                raise GraphBreak("JF022", "instance dict of an object created while tracing")
            self._dict_view = INSTANCE_DICT(self)
        return self._dict_view

    def truth(self, tx) -> bool:
        if hasattr(self.cls, "__bool__") or hasattr(self.cls, "__len__"):
            raise GraphBreak("JF022", f"truth value of a {self.cls.__name__}")
        return True

    def _hook(self, tx, name: str):
        """The Python function the class defines for the attribute protocol
        method ``name``, or None where the builtin generic one applies."""
        found = lookup(tx, self.cls, name)
        if isinstance(found, types.FunctionType):
            return found
        if found is MISSING or builtin_entry(found):
            return None
        raise GraphBreak("JF022", f"{self.cls.__qualname__}.{name} is a {type(found).__name__}")

    def get_attr(self, tx, name: str) -> Value:
        if name == "__class__":
            return ObjV(self.cls)
        fn = self._hook(tx, "__getattribute__")
        if fn is not None:
            return tx.inline_function(fn, [self, Const(name)], {}, None)
        return self._generic_getattr(tx, name)

    def _generic_getattr(self, tx, name: str) -> Value:
        cls = self.cls
        found = lookup(tx, cls, name)
        if name == "__dict__" and is_instance_dict_descriptor(found):
            return self.instance_dict()
        if found is not MISSING and is_data_descriptor(found):
            return class_attr(tx, self, cls, name, found)
        if name in self.attrs:
            return self.attrs[name]
        if found is not MISSING:
            if builtin_entry(found) and name in _GENERIC_METHODS:
                return MethodV(self, name)  # bound to this instance (call_method)
            return class_attr(tx, self, cls, name, found)
        getattr_hook = lookup(tx, cls, "__getattr__")
        if isinstance(getattr_hook, types.FunctionType):
            return tx.inline_function(getattr_hook, [self, Const(name)], {}, None)
        msg = f"{cls.__name__!r} object has no attribute {name!r}"
        raise would_raise(AttributeError, msg, exc=AttributeError(msg))

    def store_attr(self, tx, name: str, value: Value) -> None:
        fn = self._hook(tx, "__setattr__")
        if fn is not None:
            tx.inline_function(fn, [self, Const(name), value], {}, None)
            return
        self._generic_setattr(tx, name, value)

    def _generic_setattr(self, tx, name: str, value: Value) -> None:
        found = lookup(tx, self.cls, name)
        if is_data_descriptor(found):
            if isinstance(found, property) and isinstance(found.fset, types.FunctionType):
                tx.inline_function(found.fset, [self, value], {}, None)
                return
            raise GraphBreak("JF011", f"assignment through the descriptor "
                             f"{self.cls.__qualname__}.{name}")
        self.attrs[name] = value

    def delete_attr(self, tx, name: str) -> None:
        fn = self._hook(tx, "__delattr__")
        if fn is not None:
            tx.inline_function(fn, [self, Const(name)], {}, None)
            return
        self._generic_delattr(tx, name)

    def _generic_delattr(self, tx, name: str) -> None:
        found = lookup(tx, self.cls, name)
        if is_data_descriptor(found):
            if isinstance(found, property) and isinstance(found.fdel, types.FunctionType):
                tx.inline_function(found.fdel, [self], {}, None)
                return
            raise GraphBreak("JF011", f"deletion through the descriptor "
                             f"{self.cls.__qualname__}.{name}")
        if name not in self.attrs:
            msg = f"{self.cls.__name__!r} object has no attribute {name!r}"
            raise would_raise(AttributeError, msg, exc=AttributeError(msg))
        del self.attrs[name]

    def has_attr(self, tx, name: str) -> bool:
        """``hasattr``: the lookup succeeds (an AttributeError it would raise
        answers False; anything else it cannot decide breaks)."""
        return lookup_succeeds(self.get_attr, tx, name)

    def call_method(self, tx, name: str, args: list, kwargs: dict) -> Value:
        """The builtin generic attribute methods, and an attribute bag's
        builtin ``__init__``; reached only where the class resolves to them."""
        n = len(args)
        done = generic_attr_method(self, tx, name, args, kwargs, _attr_name)
        if done is not None:
            return done
        if name == "__init__" and self.new is NAMESPACE_NEW:
            self.namespace_init(tx, args, kwargs)
            return Const(None)
        if name == "__init__" and not n and not kwargs:
            return Const(None)  # object.__init__
        return super().call_method(tx, name, args, kwargs)

    def namespace_init(self, tx, args: list, kwargs: dict) -> None:
        """``SimpleNamespace.__init__``: the keyword arguments (and, where the
        running Python accepts one, the positional mapping or iterable of
        pairs before them) become attributes, in order."""
        if len(args) > (1 if NAMESPACE_POSITIONAL else 0):
            msg = (f"SimpleNamespace expected at most 1 positional argument, got {len(args)}"
                   if NAMESPACE_POSITIONAL else "no positional arguments expected")
            raise would_raise(TypeError, msg, exc=TypeError(msg))
        items: dict = {}
        if args:
            src = args[0]
            if issubclass(src.python_type(), dict):
                pairs = list(src.dict_items(tx).items())
            else:  # an iterable of pairs, as dict() takes it
                pairs = []
                for pair in src.iterate(tx):
                    kv = pair.iterate(tx)
                    if len(kv) != 2:
                        msg = "dictionary update sequence element has the wrong length"
                        raise would_raise(ValueError, msg)
                    pairs.append((kv[0].as_python(), kv[1]))
            for k, x in pairs:
                key = getattr(k, "value", k)
                if not isinstance(key, str):
                    msg = "keywords must be strings"
                    raise would_raise(TypeError, msg, exc=TypeError(msg))
                items[key] = x
        items.update(kwargs)
        self.attrs.update(items)

    def reconstruct(self, rb) -> tuple[str, bool]:
        fb = rb.fb
        inner = ", ".join(f"{k!r}: {rb.expr(x)}" for k, x in self.attrs.items())
        return (f"{fb.const(_build_object)}({fb.const(self.new)}, {fb.const(self.cls)}, "
                f"{{{inner}}})", True)


def _attr_name(v: Value) -> str:
    name = v.as_python()
    if not isinstance(name, str):
        msg = f"attribute name must be string, not '{type(name).__name__}'"
        raise would_raise(TypeError, msg, exc=TypeError(msg))
    return name


# attribute bags: the builtin __new__ of types.SimpleNamespace makes an empty
# instance with a __dict__ whose attribute access is the generic one (on
# 3.11 the type lists the generic __getattribute__/__setattr__/__delattr__ in
# its own dict, on 3.12+ it inherits object's)
NAMESPACE_NEW = types.SimpleNamespace.__dict__["__new__"]


def _namespace_positional() -> bool:
    """Does SimpleNamespace take a positional mapping (Python 3.13+)? Asked
    of the running interpreter rather than its version number."""
    try:
        types.SimpleNamespace({})
    except TypeError:
        return False
    return True


NAMESPACE_POSITIONAL = _namespace_positional()
# builtin methods a NewObjV binds to itself when its class resolves to them
_GENERIC_METHODS = ("__getattribute__", "__setattr__", "__delattr__", "__init__")


# what effects.pending_attr answers for an attribute deleted in this trace
DELETED = object()


def class_attr(tx, v: Value, cls: type, name: str, static=None) -> Value:
    """Attribute ``name`` of the instance ``v`` of ``cls`` found on the class
    (``static``: the entry ``cls``'s MRO holds, when known): methods bind,
    properties run traced, plain class attributes are read."""
    if static is None:
        static = lookup(tx, cls, name)
    else:
        tx.output.guards.class_attr(cls, name, static)
    if static is MISSING:
        raise would_raise(AttributeError, f"{cls.__name__} has no attribute {name!r}")
    if isinstance(static, staticmethod):
        return tx.output.wrap(static.__func__, PinnedSource(static.__func__))
    if isinstance(static, classmethod):
        return MethodV(ObjV(cls), name, static.__func__)
    if isinstance(static, types.FunctionType):
        return MethodV(v, name, static)
    if isinstance(static, property):
        if static.fget is None:
            raise would_raise(AttributeError, f"unreadable property {name!r}")
        if isinstance(static.fget, types.FunctionType):
            return tx.inline_function(static.fget, [v], {}, None)
        return ObjV(static.fget).call(tx, [v], {})
    if isinstance(static, (types.MemberDescriptorType, types.GetSetDescriptorType)):
        if isinstance(v, ObjV):
            try:
                value = getattr(v._obj, name)
            except Exception as e:  # noqa: BLE001 - an unset slot: eager raises here
                raise would_raise(type(e), f"{cls.__name__}.{name}: {e}") from None
            return tx.output.wrap(value, AttrSource(v.source, name) if v.source else None)
        raise GraphBreak("JF022", f"descriptor {name!r} on an object created while tracing")
    if isinstance(static, (types.BuiltinFunctionType, types.MethodDescriptorType,
                           types.WrapperDescriptorType, types.MethodWrapperType)):
        if isinstance(v, ObjV):
            # a method of the receiver, bound anew at run time: read through
            # the receiver (whose type and class are guarded), never the
            # first call's bound method (it would hold the first receiver)
            return ObjV(getattr(v._obj, name),
                        AttrSource(v.source, name) if v.source is not None else None)
        raise GraphBreak("JF022", f"builtin method {name!r} of {cls.__name__}")
    if isinstance(static, functools._lru_cache_wrapper) and isinstance(v, ObjV) and \
            isinstance(v._obj, logging.Logger):
        # a cached function installed as a Logger method binds like one
        # (transformers' warning_once): a logging call (MethodV.call)
        return MethodV(v, name, static)
    if hasattr(static, "__get__") and not isinstance(static, (int, float, str, tuple)):
        raise GraphBreak("JF022", f"descriptor {type(static).__name__} {name!r}")
    # a plain class attribute (shared by all instances): its contents are
    # read through the instance, or the class, and guarded as read
    if isinstance(v, ObjV) and v.source is not None:
        src = AttrSource(v.source, name)
    else:
        src = AttrSource(PinnedSource(cls), name)
    return tx.output.wrap(static, src)


def _object_init(self):
    """Stands for object.__init__ reached through super()."""
    return None


def _build_object(new, cls, attrs: dict):
    """Rebuild an object created while tracing with the builtin ``new`` its
    class resolved to (its __init__ already ran symbolically, so only the
    resulting attributes are set, bypassing the class's own __setattr__ --
    and its data descriptors: ``attrs`` is what the instance dict held,
    which a store through ``obj.__dict__`` may fill under a property's name)."""
    obj = new(cls)
    descr = next((k.__dict__["__dict__"] for k in cls.__mro__ if "__dict__" in k.__dict__), None)
    if is_instance_dict_descriptor(descr):
        descr.__get__(obj, cls).update(attrs)
        return obj
    for k, x in attrs.items():
        object.__setattr__(obj, k, x)
    return obj


# dicts.InstanceDictV, set by dicts.py (which imports this module)
INSTANCE_DICT = None
