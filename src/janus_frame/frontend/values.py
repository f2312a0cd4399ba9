"""Symbolic values: what the interpreter keeps on its stack and in its locals.

In: real Python objects read from the frame (wrapped with the source they
came from) and results of symbolic operations.
Out: values the opcode handlers operate on. Each carries ``source`` (how to
fetch it again at run time, or None for values created while tracing).

- ``Const``: a Python value known at trace time (int, float, str, None, dtype,
  torch.Size, ...), specialised and guarded when it came from the frame.
- ``TensorV``: an fx node plus its fake tensor (shape, dtype, strides).
- ``SymV``: a size of a tensor with dynamic dimensions (a SymInt and the fx
  node computing it); any use as a Python value specialises it.
- ``ListV`` / ``TupleV`` / ``DictV`` / ``SetV`` / ``SliceV``: containers of values.
- ``IterV``: a materialised iterator (loops are unrolled at trace time).
- ``ObjV``: a real Python object used as is (functions, classes, modules,
  nn.Modules, user objects); attribute reads go to the real object.
- ``FunctionV``: a function created by MAKE_FUNCTION during tracing.
- ``CellV``: a closure cell created during tracing.
- ``NullV``: the NULL that 3.11 pushes below callables.
- ``MethodV``: a bound method of a symbolic receiver (tensor methods,
  container methods, user methods on ObjV).
- ``CtxV``: a known context manager (grad mode, autocast).
"""
from __future__ import annotations

from typing import Any

from .sources import Source


class Value:
    source: Source | None = None

    def python_type(self) -> type:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._repr()})"

    def _repr(self) -> str:
        return ""


class Const(Value):
    """``guard`` (for values read from the frame) installs the guard on the
    value the first time the trace uses it: a constant that is only passed
    along (to a native call, or back to Python) is never specialised."""

    __slots__ = ("_value", "source", "_guard")

    def __init__(self, value: Any, source: Source | None = None, guard=None) -> None:
        self._value = value
        self.source = source
        self._guard = guard

    @property
    def value(self) -> Any:
        g = self._guard
        if g is not None:
            self._guard = None
            g()
        return self._value

    def python_type(self) -> type:
        return type(self.value)

    def _repr(self) -> str:
        return repr(self._value)


class DynInt(Const):
    """An int read from the frame whose value changed between calls before
    (automatic dynamic): tensor operations receive it as a graph input
    instead of a constant; any other use specialises it as usual."""

    __slots__ = ()


class DerivedConst(Const):
    """A Python value computed from constants read from the frame, whose guards
    are still pending (``self.counter + 1``). If the trace never uses its
    value, nothing is specialised: it is recomputed from its operands after
    the graph (so a counter that changes every call costs no recompile)."""

    __slots__ = ("fn", "args")

    def __init__(self, fn, args: list) -> None:
        raw = [a._value for a in args]
        super().__init__(fn(*raw), None, guard=self._guard_args)
        self.fn = fn
        self.args = args

    def _guard_args(self) -> None:
        for a in self.args:
            a.value  # noqa: B018 - installs the operand's guard


class SymV(Const):
    """A symbolic size (``x.shape[0]`` of a dynamic dimension, ``B * T``).

    ``node`` computes it in the graph (``sym_size`` and operator nodes), ``sym``
    is the SymInt of the shape environment. Tensor operations and size
    arithmetic keep it symbolic; reading ``value`` (any use as a Python int:
    ``range``, indexing a list, printing) specialises the size: the shape
    environment records ``sym == value`` and the entry's guards check it."""

    __slots__ = ("node", "sym")

    def __init__(self, node, sym) -> None:
        super().__init__(sym.node.hint, None, guard=self._specialise)
        self.node = node
        self.sym = sym

    def _specialise(self) -> None:
        from torch.fx.experimental.symbolic_shapes import guard_int

        guard_int(self.sym)

    def python_type(self) -> type:
        return int

    def _repr(self) -> str:
        return f"{self.sym} (now {self._value})"


def unguarded(v) -> bool:
    """A constant from the frame whose value the trace has not used yet."""
    return isinstance(v, Const) and v._guard is not None


class TensorV(Value):
    """A tensor in the graph: ``node`` is an fx.Node, ``fake`` its fake tensor."""

    __slots__ = ("node", "fake", "source", "cls")

    def __init__(self, node, fake, source: Source | None = None, cls: type | None = None) -> None:
        self.node = node
        self.fake = fake
        self.source = source
        self.cls = cls  # the real class of an input (Parameter, Buffer, Tensor)

    def python_type(self) -> type:
        import torch

        return self.cls or torch.Tensor

    def _repr(self) -> str:
        return f"{self.node.name}: {tuple(self.fake.shape)} {self.fake.dtype}"


class ItemV(Value):
    """``t.item()`` of a one-element tensor about to be compared for a branch
    (``if loss.item() > 0``): the comparison is made on the tensor, so the
    branch is a speculation site like ``if loss > 0``; any other use needs
    the number and breaks the graph there (the value is read after it)."""

    __slots__ = ("tensor",)

    def __init__(self, tensor: TensorV) -> None:
        self.tensor = tensor

    def python_type(self) -> type:
        import torch

        dt = self.tensor.fake.dtype
        if dt is torch.bool:
            return bool
        return float if dt.is_floating_point else int

    def _repr(self) -> str:
        return f"{self.tensor.node.name}.item()"


class _Lazy:
    """Containers read from the frame realise their items (and install the
    guards on length/keys and items) only when the trace looks inside; a
    container only passed along costs at most a type guard."""

    __slots__ = ()

    def _realize(self):
        if self._lazy is not None:
            realize, self._lazy = self._lazy, None
            self._tguard = None
            self._items = realize()
            for name, args in self.pending:  # mutations recorded before realising
                if name == "append":
                    self._items.append(args[0])
                elif name == "extend":
                    self._items.extend(args[0].items)
                elif name == "__setitem__":
                    self._items[args[0].value] = args[1]
                elif name == "update" and isinstance(self._items, dict):
                    self._items.update(args[0].items)
                elif name in ("add", "discard", "update"):  # sets: no Python set of Values
                    raise AssertionError("set operations realise the set first")
                else:
                    raise AssertionError(name)
        return self._items

    @property
    def items(self):
        return self._items if self._lazy is None else self._realize()

    @items.setter
    def items(self, value) -> None:
        self._lazy = None
        self._items = value

    def _type_guard(self) -> None:
        g = self._tguard
        if g is not None:
            self._tguard = None
            g()


class _Seq(_Lazy, Value):
    __slots__ = ("_items", "source", "_lazy", "_tguard", "pending")

    def __init__(self, items, source: Source | None = None, *, lazy=None,
                 type_guard=None) -> None:
        self._items = list(items) if items is not None else None
        self.source = source
        self._lazy = lazy
        self._tguard = type_guard
        self.pending: list = []  # (method, args) recorded while not realised

    def _repr(self) -> str:
        return "<lazy>" if self._lazy is not None else ", ".join(map(repr, self._items))


class ListV(_Seq):
    def python_type(self) -> type:
        self._type_guard()
        return list


class TensorListV(ListV):
    """A list of same-shaped tensors whose length varies between calls (a
    list grown in a loop over a dynamic size). It enters the graph as one
    stacked input of symbolic length: ``torch.stack``/``torch.cat`` over it,
    ``len`` and constant indexing stay symbolic; any other use realises the
    items (specialising the length, like any list)."""

    __slots__ = ("stacked", "length")

    def __init__(self, source: Source, stacked, length, realize, type_guard) -> None:
        super().__init__(None, source, lazy=realize, type_guard=type_guard)
        self.stacked = stacked  # TensorV: torch.stack of the items
        self.length = length  # SymV: the list's length

    @property
    def symbolic(self) -> bool:
        """Still one stacked tensor (its items never looked at one by one)."""
        return self._lazy is not None and not self.pending


class TupleV(_Seq):
    """A tuple; ``cls`` is set for namedtuples (then built as ``cls(*items)``)."""

    __slots__ = ("cls",)

    def __init__(self, items, source: Source | None = None, cls: type | None = None, *,
                 lazy=None, type_guard=None) -> None:
        super().__init__(items, source, lazy=lazy, type_guard=type_guard)
        self.cls = cls

    def python_type(self) -> type:
        self._type_guard()
        return self.cls or tuple


class SetV(_Seq):
    """A set of constants (items deduplicated by value)."""

    def python_type(self) -> type:
        self._type_guard()
        return set


class DictV(_Lazy, Value):
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


class SliceV(Value):
    __slots__ = ("start", "stop", "step", "source")

    def __init__(self, start: Value, stop: Value, step: Value) -> None:
        self.start, self.stop, self.step = start, stop, step
        self.source = None

    def python_type(self) -> type:
        return slice


class IterV(Value):
    """A materialised iterator over symbolic items."""

    __slots__ = ("items", "pos", "source")

    def __init__(self, items) -> None:
        self.items = list(items)
        self.pos = 0
        self.source = None

    def python_type(self) -> type:
        return type(iter([]))


class ObjV(Value):
    __slots__ = ("obj", "source")

    def __init__(self, obj: Any, source: Source | None = None) -> None:
        self.obj = obj
        self.source = source

    def python_type(self) -> type:
        return type(self.obj)

    def _repr(self) -> str:
        return f"{type(self.obj).__name__} {getattr(self.obj, '__qualname__', '')}"


class NewObjV(Value):
    """An instance of a user class created while tracing (``object.__new__``
    plus attribute stores); rebuilt after the graph if it escapes."""

    __slots__ = ("cls", "attrs", "source")

    def __init__(self, cls: type) -> None:
        self.cls = cls
        self.attrs: dict[str, Value] = {}
        self.source = None

    def python_type(self) -> type:
        return self.cls


class FunctionV(Value):
    """A function made by MAKE_FUNCTION while tracing."""

    __slots__ = ("code", "qualname", "defaults", "kwdefaults", "closure", "globals", "source")

    def __init__(self, code, qualname, defaults, kwdefaults, closure, globals_) -> None:
        self.code = code
        self.qualname = qualname
        self.defaults = defaults  # tuple of Value
        self.kwdefaults = kwdefaults  # dict name -> Value
        self.closure = closure  # tuple of CellV
        self.globals = globals_
        self.source = None

    def python_type(self) -> type:
        import types

        return types.FunctionType


class CellV(Value):
    """A closure cell. ``external`` cells belong to a function that outlives
    the frame (stores to them are side effects); ``pending`` holds a real
    cell and its source until the contents are first read."""

    __slots__ = ("contents", "source", "name", "external", "pending", "write_target")

    def __init__(self, contents: Value | None, name: str = "", *, external: bool = False,
                 pending=None) -> None:
        self.contents = contents
        self.name = name
        self.source = None
        self.external = external
        self.pending = pending
        # where a store to an external cell is replayed (None: cannot be)
        self.write_target = pending[1] if pending is not None else None

    def python_type(self) -> type:
        import types

        return types.CellType


class NullV(Value):
    def python_type(self) -> type:
        return type(None)


NULL = NullV()


class MethodV(Value):
    """``receiver.name`` for a symbolic receiver; ``func`` is the underlying
    function object when known (user methods), else None."""

    __slots__ = ("receiver", "name", "func", "source")

    def __init__(self, receiver: Value, name: str, func: Any = None) -> None:
        self.receiver = receiver
        self.name = name
        self.func = func
        self.source = None

    def python_type(self) -> type:
        import types

        return types.MethodType


class SuperV(Value):
    """``super(cls, obj)``: attribute lookups start after ``cls`` in the MRO."""

    __slots__ = ("cls", "obj", "source")

    def __init__(self, cls: type, obj: Value) -> None:
        self.cls = cls
        self.obj = obj
        self.source = None

    def python_type(self) -> type:
        return super


class CtxV(Value):
    """A known context manager: ``kind`` is 'grad' (``arg`` = enabled) or
    'autocast' (``arg`` = kwargs for torch.autocast) or 'nullcontext'."""

    __slots__ = ("kind", "arg", "source")

    def __init__(self, kind: str, arg: Any) -> None:
        self.kind = kind
        self.arg = arg
        self.source = None

    def python_type(self) -> type:
        return object


class ExitV(Value):
    """The ``__exit__`` BEFORE_WITH leaves on the stack for a CtxV."""

    __slots__ = ("ctx", "restore", "source")

    def __init__(self, ctx: CtxV, restore: Any) -> None:
        self.ctx = ctx
        self.restore = restore
        self.source = None

    def python_type(self) -> type:
        return object



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
