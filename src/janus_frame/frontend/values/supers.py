"""``super()`` while tracing.

In: the class and the object (or class) ``super`` was called with.  Out:
:class:`SuperV`, whose attribute lookups start after the class in the MRO
and bind what they find as Python would (methods, classmethods, the builtin
methods an object's kind models).
"""
from __future__ import annotations

import types

from ..breaks import GraphBreak, would_raise
from ..sources import PinnedSource
from .base import Value
from .methods import MethodV
from .objects import _OBJECT_GETATTRIBUTE, MISSING, ObjV, _object_init, builtin_entry, lookup


class SuperV(Value):
    """``super(cls, obj)``: attribute lookups start after ``cls`` in the MRO."""

    __slots__ = ("cls", "obj", "source")

    def __init__(self, cls: type, obj: Value) -> None:
        self.cls = cls
        self.obj = obj
        self.source = None

    def python_type(self) -> type:
        return super

    def get_attr(self, tx, name: str) -> Value:
        owner = self.obj._obj if isinstance(self.obj, ObjV) else None
        if isinstance(owner, type) and issubclass(owner, self.cls):
            # super(cls, klass), as in a classmethod: the MRO of klass
            # itself; classmethods bind to klass, functions stay unbound
            attr = lookup(tx, owner, name, self.cls)
            if isinstance(attr, classmethod):
                return MethodV(self.obj, name, attr.__func__)
            if isinstance(attr, staticmethod):
                return tx.output.wrap(attr.__func__, PinnedSource(attr.__func__))
            if isinstance(attr, types.FunctionType):
                return tx.output.wrap(attr, PinnedSource(attr))
            if isinstance(attr, types.ClassMethodDescriptorType):
                # a C classmethod (torch 2.15's Function.apply): bound to klass
                bound = attr.__get__(None, owner)
                return tx.output.wrap(bound, PinnedSource(bound))
            raise GraphBreak("JF022", f"super() of a class: attribute {name!r}")
        objtype = self.obj.python_type()
        if self.cls not in objtype.__mro__:
            raise GraphBreak("JF022", "super() outside the class hierarchy")
        attr = lookup(tx, objtype, name, self.cls)
        if attr is MISSING:
            raise would_raise(AttributeError, f"super() has no attribute {name!r}")
        if isinstance(attr, types.FunctionType):
            return MethodV(self.obj, name, attr)
        if isinstance(attr, classmethod):
            return MethodV(ObjV(objtype), name, attr.__func__)
        if isinstance(attr, staticmethod):
            return tx.output.wrap(attr.__func__, PinnedSource(attr.__func__))
        if attr is _OBJECT_GETATTRIBUTE and isinstance(self.obj, ObjV):
            return MethodV(self.obj, name)  # ObjV.call_method
        if attr is object.__setattr__ and isinstance(self.obj, ObjV) and self.obj._plain_object():
            return MethodV(self.obj, name)  # ObjV.call_method: the generic store
        if getattr(self.obj, "builtin_methods", False) and builtin_entry(attr):
            # dict.__setitem__, object.__setattr__ ... on an instance whose
            # kind models them (a dict subclass made while tracing)
            return MethodV(self.obj, name)
        if attr is object.__init__:
            return MethodV(self.obj, name, _object_init)
        if name == "__init__" and isinstance(attr, types.WrapperDescriptorType) and \
                issubclass(attr.__objclass__, BaseException) and hasattr(self.obj, "_builtin_init"):
            # a builtin exception's __init__ on an exception made while
            # tracing: its kind applies it (values/exceptions.py); a real
            # instance would find the override again by name
            return MethodV(self.obj, name)
        raise GraphBreak("JF022", f"super().{name} of type {type(attr).__name__}")
