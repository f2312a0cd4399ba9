"""The attribute protocol's predicates, shared by every kind of object value.

In: class-dict entries found by an MRO lookup, and a value's own lookup.
Out: whether an entry is a builtin method of a base the values model
(``builtin_entry``) or the builtin instance-dict descriptor
(``is_instance_dict_descriptor``); ``hasattr`` through a lookup
(``lookup_succeeds``); ``object.__getattribute__/__setattr__/__delattr__``
applied through a value's generic methods (``generic_attr_method``).
"""
from __future__ import annotations

import collections
import types

from ... import _C

from ..breaks import GraphBreak
from .constants import Const
from .base import Value

BUILTIN_BASES = (object, dict, collections.OrderedDict, collections.defaultdict)
# the types whose builtin entries builtin_entry accepts: SimpleNamespace's are
# its generic attribute methods, its __init__ (NewObjV.namespace_init), and
# methods no kind models (__repr__, __eq__ ...: calling them breaks)
_BUILTIN_OWNERS = BUILTIN_BASES + (types.SimpleNamespace,)
_BUILTIN_KINDS = (types.WrapperDescriptorType, types.MethodDescriptorType,
                  types.BuiltinFunctionType, types.ClassMethodDescriptorType)


def builtin_entry(found) -> bool:
    """Is the class-dict entry ``found`` a builtin method of ``object``,
    ``dict``, ``OrderedDict``, ``defaultdict`` (which DictObjV models) or
    ``types.SimpleNamespace`` (NewObjV)?"""
    if not isinstance(found, _BUILTIN_KINDS):
        return False
    owner = getattr(found, "__objclass__", None) or getattr(found, "__self__", None)
    return any(owner is b for b in _BUILTIN_OWNERS)


def is_instance_dict_descriptor(found) -> bool:
    """Is ``found`` (a class's ``__dict__`` entry) the builtin descriptor of
    the instance dict (not a property or other override of ``__dict__``)?"""
    return type(found) in (types.GetSetDescriptorType, types.MemberDescriptorType) and \
        getattr(found, "__name__", None) == "__dict__"


def lookup_succeeds(get, tx, name: str) -> bool:
    """``hasattr`` through ``get(tx, name)``: an AttributeError the lookup
    would raise answers False; anything else it cannot decide breaks."""
    try:
        get(tx, name)
    except GraphBreak as gb:
        if getattr(gb, "exc_type", None) is AttributeError:
            return False
        raise
    return True


def generic_attr_method(v: Value, tx, name: str, args: list, kwargs: dict, name_of):
    """``object.__getattribute__/__setattr__/__delattr__(v, ...)`` applied by
    ``v``'s kind (its ``_generic_*`` methods), or None for any other call."""
    if kwargs:
        return None
    if name == "__getattribute__" and len(args) == 1:
        return v._generic_getattr(tx, name_of(args[0]))
    if name == "__setattr__" and len(args) == 2:
        v._generic_setattr(tx, name_of(args[0]), args[1])
        return Const(None)
    if name == "__delattr__" and len(args) == 1:
        v._generic_delattr(tx, name_of(args[0]))
        return Const(None)
    return None


MISSING = _C.MISSING  # what a failed MRO lookup returns

_OBJECT_GETATTRIBUTE = object.__dict__["__getattribute__"]


def _generic_getattribute(found) -> bool:
    """Is the ``__getattribute__`` a class resolves to the generic lookup
    (object's, or a builtin attribute bag's own copy of it, see
    builtin_entry)?"""
    return found is _OBJECT_GETATTRIBUTE or (
        builtin_entry(found) and getattr(found, "__objclass__", None) is types.SimpleNamespace)


def lookup(tx, cls: type, name: str, start: type | None = None):
    """What ``cls``'s MRO holds for ``name`` (after ``start``, for
    ``super()``): the raw class-dict entry, or MISSING. The entry guards
    that the resolution still holds."""
    found = _C.type_lookup(cls, name, start)
    tx.output.guards.class_attr(cls, name, found, start)
    return found


def is_data_descriptor(attr) -> bool:
    return attr is not MISSING and hasattr(type(attr), "__set__") and \
        hasattr(type(attr), "__get__")
