"""Attribute access on symbolic values.

In: a symbolic value and an attribute name.
Out: the attribute as a symbolic value: tensor metadata as constants, tensor
views as graph nodes, bound methods (``MethodV``), module parameters and
buffers as graph inputs with fast sources (``m._parameters['w']``), and
attributes of real objects wrapped with their source (and so guarded).
"""
from __future__ import annotations

import inspect
import types

import torch

from .breaks import GraphBreak
from .sources import AttrSource, ItemSource
from .values import (
    Const, DictV, FunctionV, ListV, MethodV, NewObjV, ObjV, RecordDictV, SetV, SuperV, TensorV,
    TupleV, Value,
)

# Tensor attributes that are metadata (constants under the static-shape guards)
_TENSOR_META = {
    "shape", "dtype", "device", "ndim", "is_cuda", "is_cpu", "is_sparse", "is_quantized",
    "is_meta", "layout", "requires_grad", "is_leaf", "is_mkldnn", "is_nested",
}
# Tensor attributes that are tensors derived from the tensor (views)
_TENSOR_VIEWS = {"T", "mT", "H", "mH", "real", "imag", "data"}

# Library modules whose attributes are taken as constants (never guarded):
# re-assigning torch.nn.functional.relu at run time is not supported.
_LIBRARY_PREFIXES = ("torch", "math", "operator", "builtins", "functools", "itertools",
                     "collections", "typing", "numpy", "einops", "dataclasses", "enum",
                     "contextlib", "warnings", "logging", "inspect", "abc", "numbers")


def is_library_module(mod: types.ModuleType) -> bool:
    name = getattr(mod, "__name__", "") or ""
    return name.split(".", 1)[0] in _LIBRARY_PREFIXES


class AttrOps:
    def getattr_value(self, obj: Value, name: str) -> Value:
        if isinstance(obj, TensorV):
            return self.tensor_attr(obj, name)
        if isinstance(obj, ObjV):
            return self.object_attr(obj, name)
        if isinstance(obj, Const):
            try:
                return Const(getattr(obj.value, name))
            except AttributeError:
                raise GraphBreak("JF012", f"{type(obj.value).__name__} has no attribute "
                                 f"{name!r}") from None
        if isinstance(obj, RecordDictV):
            if name in obj.fields:
                return obj.fields[name]
            attr = inspect.getattr_static(obj.cls, name, None)
            if isinstance(attr, types.FunctionType):  # to_tuple() and other methods
                return MethodV(obj, name, attr)
        if isinstance(obj, (ListV, DictV, SetV)) or (isinstance(obj, TupleV) and obj.cls is None):
            if not hasattr(obj.python_type(), name):
                raise GraphBreak("JF012", f"{obj.python_type().__name__} has no attribute "
                                 f"{name!r}")
            return MethodV(obj, name)
        if isinstance(obj, TupleV):  # namedtuple
            fields = getattr(obj.cls, "_fields", ())
            if name in fields:
                return obj.items[fields.index(name)]
            return self._class_attr(obj, obj.cls, name)
        if isinstance(obj, DictV) and obj.cls is not dict:
            if name in obj.items:
                return obj.items[name]
        if isinstance(obj, NewObjV):
            if name in obj.attrs:
                return obj.attrs[name]
            return self._class_attr(obj, obj.cls, name)
        if isinstance(obj, SuperV):
            return self.super_attr(obj, name)
        if isinstance(obj, FunctionV):
            if name in ("__name__", "__qualname__"):
                return Const(obj.code.co_name if name == "__name__" else obj.qualname)
            if name == "__code__":
                return Const(obj.code)
        raise GraphBreak("JF009", f"attribute {name!r} of {obj.python_type().__name__}")

    # -- tensors -------------------------------------------------------------------
    def tensor_attr(self, t: TensorV, name: str) -> Value:
        if name in _TENSOR_META:
            if name == "shape":
                check_static(t)
                return self.output.size_of(t)
            if name == "requires_grad" and t.node.op != "placeholder":
                return Const(t.fake.requires_grad)
            return Const(getattr(t.fake, name))
        if name in _TENSOR_VIEWS:
            return self.output.call("call_function", getattr, (t, Const(name)), {})
        if name == "grad":
            if t.source is not None and t.node.op == "placeholder":
                real = self.real_of(t)
                pending = self.output.effects.pending_attr(real, "grad")
                if pending is not None:  # assigned earlier in this trace
                    return pending
                return self.output.wrap(real.grad, AttrSource(t.source, "grad"))
            raise GraphBreak("JF009", ".grad of a tensor computed in the graph")
        if name in ("grad_fn", "_version", "_base"):
            raise GraphBreak("JF009", f"tensor attribute {name}")
        attr = getattr(torch.Tensor, name, None)
        if attr is None:
            raise GraphBreak("JF012", f"Tensor has no attribute {name!r}")
        if callable(attr) or isinstance(attr, (types.MethodDescriptorType,)):
            return MethodV(t, name)
        raise GraphBreak("JF009", f"tensor attribute {name}")

    def real_of(self, t: TensorV) -> torch.Tensor:
        for v, real in self.output.inputs:
            if v is t:
                return real
        raise GraphBreak("JF009", "tensor input not found")

    # -- real objects ------------------------------------------------------------------
    def object_attr(self, v: ObjV, name: str) -> Value:
        obj = v.obj
        src = v.source
        pending = self.output.effects.pending_attr(obj, name)
        if pending is not None:  # written earlier in this trace
            return pending
        if isinstance(obj, torch.nn.Module):
            d = obj.__dict__
            for store in ("_parameters", "_buffers", "_modules"):
                table = d.get(store)
                if table is not None and name in table:
                    s = ItemSource(AttrSource(src, store), name) if src is not None else None
                    return self.output.wrap(table[name], s)
        if isinstance(obj, types.ModuleType):
            if not hasattr(obj, name):
                raise GraphBreak("JF012", f"module {obj.__name__} has no attribute {name!r}")
            value = getattr(obj, name)
            if is_library_module(obj):
                return self.output.wrap(value, None)
            return self.output.wrap(value, AttrSource(src, name) if src is not None else None)
        if isinstance(obj, type):
            try:
                static = inspect.getattr_static(obj, name)
            except AttributeError:
                raise GraphBreak("JF012", f"{obj.__name__} has no attribute {name!r}") from None
            if isinstance(static, classmethod):
                return MethodV(v, name, static.__func__)
            value = getattr(obj, name)
            return self.output.wrap(value, AttrSource(src, name) if src is not None else None)
        if isinstance(obj, (types.FunctionType, types.BuiltinFunctionType)):
            if name in ("__name__", "__qualname__", "__module__", "__doc__"):
                return Const(getattr(obj, name))
            if name == "__wrapped__" and hasattr(obj, name):
                return self.output.wrap(obj.__wrapped__,
                                        AttrSource(src, name) if src is not None else None)
            raise GraphBreak("JF009", f"attribute {name!r} of a function")
        cls = type(obj)
        if cls.__getattribute__ is not object.__getattribute__ and not isinstance(
                obj, torch.nn.Module):
            # read through the class's own attribute access (config objects,
            # ModelOutput); the guard re-reads it the same way
            if src is None:
                raise GraphBreak("JF009", f"{cls.__name__} customises attribute access")
            try:
                value = getattr(obj, name)
            except Exception as e:  # noqa: BLE001
                raise GraphBreak("JF012", f"{cls.__name__}.{name} raised "
                                 f"{type(e).__name__}") from None
            if isinstance(value, types.MethodType) and value.__self__ is obj:
                return MethodV(v, name, value.__func__)
            return self.output.wrap(value, AttrSource(src, name))
        try:
            static = inspect.getattr_static(obj, name)
        except AttributeError:
            getattr_hook = getattr(cls, "__getattr__", None)
            if getattr_hook is not None and not isinstance(obj, torch.nn.Module):
                return self.call_value(ObjV(getattr_hook), [v, Const(name)], {})
            raise GraphBreak("JF012", f"{cls.__name__} has no attribute {name!r}") from None
        inst_dict = getattr(obj, "__dict__", None)
        if inst_dict is not None and name in inst_dict and not _is_data_descriptor(
                getattr(cls, name, None)):
            return self.output.wrap(inst_dict[name],
                                    AttrSource(src, name) if src is not None else None)
        return self._class_attr(v, cls, name, static)

    def _class_attr(self, v: Value, cls: type, name: str, static=None) -> Value:
        if static is None:
            try:
                static = inspect.getattr_static(cls, name)
            except AttributeError:
                raise GraphBreak("JF012", f"{cls.__name__} has no attribute {name!r}") from None
        if isinstance(static, staticmethod):
            return self.output.wrap(static.__func__, None)
        if isinstance(static, classmethod):
            return MethodV(ObjV(cls), name, static.__func__)
        if isinstance(static, types.FunctionType):
            return MethodV(v, name, static)
        if isinstance(static, property):
            if static.fget is None:
                raise GraphBreak("JF012", f"unreadable property {name!r}")
            return self.call_value(ObjV(static.fget), [v], {})
        if isinstance(static, (types.MemberDescriptorType, types.GetSetDescriptorType)):
            if isinstance(v, ObjV):
                value = getattr(v.obj, name)
                return self.output.wrap(value, AttrSource(v.source, name) if v.source else None)
            raise GraphBreak("JF009", f"descriptor {name!r} on an object created while tracing")
        if isinstance(static, (types.BuiltinFunctionType, types.MethodDescriptorType,
                               types.WrapperDescriptorType, types.MethodWrapperType)):
            if isinstance(v, ObjV):
                return ObjV(getattr(v.obj, name))
            raise GraphBreak("JF009", f"builtin method {name!r} of {cls.__name__}")
        if hasattr(static, "__get__") and not isinstance(static, (int, float, str, tuple)):
            raise GraphBreak("JF009", f"descriptor {type(static).__name__} {name!r}")
        # a plain class attribute (constant-like, shared by all instances)
        src = None
        if isinstance(v, ObjV) and v.source is not None:
            src = AttrSource(v.source, name)
        return self.output.wrap(static, src)

    def super_attr(self, s: SuperV, name: str) -> Value:
        mro = s.obj.python_type().__mro__
        try:
            start = mro.index(s.cls) + 1
        except ValueError:
            raise GraphBreak("JF009", "super() outside the class hierarchy") from None
        for klass in mro[start:]:
            if name in klass.__dict__:
                attr = klass.__dict__[name]
                if isinstance(attr, types.FunctionType):
                    return MethodV(s.obj, name, attr)
                if isinstance(attr, classmethod):
                    return MethodV(ObjV(s.obj.python_type()), name, attr.__func__)
                if isinstance(attr, staticmethod):
                    return self.output.wrap(attr.__func__, None)
                if klass is object and name == "__init__":
                    return MethodV(s.obj, name, _object_init)
                raise GraphBreak("JF009", f"super().{name} of type {type(attr).__name__}")
        raise GraphBreak("JF012", f"super() has no attribute {name!r}")


def check_static(t: TensorV) -> None:
    """Sizes read into Python must be known numbers or sizes of dynamic
    dimensions (backed by the inputs' sizes), not data-dependent."""
    if any(not isinstance(d, int) and not d.node.has_hint() for d in t.fake.shape):
        raise GraphBreak("JF006", "reading the size of a tensor whose shape depends on data")


def _object_init(self):
    """Stands for object.__init__ reached through super()."""
    return None


def _is_data_descriptor(attr) -> bool:
    return attr is not None and hasattr(type(attr), "__set__") and hasattr(type(attr), "__get__")
