"""Sources: how to fetch a value again at run time.

In: where the interpreter found a value (an argument slot, a global, a closure
cell, an attribute or item of another source).
Out: a Python expression that re-reads it inside generated guard and
replacement functions, and a readable name for messages.

Generated functions are compiled from Python source in which placeholder
names are rewritten at the bytecode level (see codegen.py): ``__jf_k<N>``
becomes a constant object, ``__jf_h_<name>`` the builtin ``<name>`` as a
constant (immune to user globals shadowing it), ``__jf_g_<name>`` a global
(or builtin) lookup and ``__jf_c_<name>`` a closure-cell read. So ``expr()``
never collides with user names and needs no dictionary of helpers.
"""
from __future__ import annotations

import contextlib
import dataclasses


class Source:
    def expr(self) -> str:
        raise NotImplementedError

    def name(self) -> str:
        raise NotImplementedError

    def __str__(self) -> str:
        return self.name()


@dataclasses.dataclass(frozen=True)
class ArgSource(Source):
    """An argument slot of the compiled frame (positional, keyword-only,
    ``*args`` tuple or ``**kwargs`` dict)."""

    var: str
    index: int

    def expr(self) -> str:
        return f"__jf_a{self.index}"

    def name(self) -> str:
        return f"L[{self.var!r}]"


@dataclasses.dataclass(frozen=True)
class GlobalSource(Source):
    var: str

    def expr(self) -> str:
        return f"__jf_g_{self.var}"

    def name(self) -> str:
        return f"G[{self.var!r}]"


@dataclasses.dataclass(frozen=True)
class ClosureSource(Source):
    """The contents of a free variable's cell of the compiled frame."""

    var: str

    def expr(self) -> str:
        return f"__jf_c_{self.var}"

    def name(self) -> str:
        return f"C[{self.var!r}]"


@dataclasses.dataclass(frozen=True)
class AttrSource(Source):
    base: Source
    attr: str

    def expr(self) -> str:
        # (a name Python would mangle, ``__x``, is read by getattr)
        a = self.attr
        if a.isidentifier() and (not a.startswith("__") or a.endswith("__")):
            return f"{self.base.expr()}.{a}"
        return f"__jf_h_getattr({self.base.expr()}, {a!r})"

    def name(self) -> str:
        return f"{self.base.name()}.{self.attr}"


@dataclasses.dataclass(frozen=True)
class ItemSource(Source):
    """``base[key]`` for a constant key (int or str or other literal)."""

    base: Source
    key: object

    def expr(self) -> str:
        return f"{self.base.expr()}[{key_expr(self.key)}]"

    def name(self) -> str:
        return f"{self.base.name()}[{self.key!r}]"


_LITERALS = (int, str, bytes, bool, type(None))


def key_expr(key) -> str:
    """``key`` as a Python expression: its repr when that is a literal, else
    the object itself, pinned (a class, an enum member, a function used as
    a dict key: ``SUPPORTED_NODES[tuple]``)."""
    if type(key) in _LITERALS or type(key) is float and key == key and \
            key not in (float("inf"), float("-inf")) or \
            type(key) is tuple and all(type(k) in _LITERALS for k in key):
        return repr(key)
    return PinnedSource(key).expr()


@dataclasses.dataclass(frozen=True)
class KeyedItemSource(Source):
    """``base[key]`` where ``key`` is itself a value found at a source (a
    dict keyed by tensors: an optimizer's ``state[param]``).  Read with
    ``dict.get``, so a guard never inserts into a ``defaultdict`` and a
    missing key reads as None (failing the guards on what was read from it)."""

    base: Source
    key: Source

    def expr(self) -> str:
        return f"__jf_h_dict.get({self.base.expr()}, {self.key.expr()})"

    def name(self) -> str:
        return f"{self.base.name()}[{self.key.name()}]"


@dataclasses.dataclass(frozen=True)
class CellContentsSource(Source):
    """``base.cell_contents`` where base is a cell object (closures of
    functions reached through other sources)."""

    base: Source

    def expr(self) -> str:
        return f"{self.base.expr()}.cell_contents"

    def name(self) -> str:
        return f"{self.base.name()}.cell_contents"


@dataclasses.dataclass(frozen=True)
class TypeSource(Source):
    base: Source

    def expr(self) -> str:
        return f"__jf_h_type({self.base.expr()})"

    def name(self) -> str:
        return f"type({self.base.name()})"


@dataclasses.dataclass(frozen=True)
class IntTensorSource(Source):
    """An int (a float) read from ``base`` handed to the graph as a 0-d
    int64 (float64) tensor: a number whose value varies between calls, see
    output.py."""

    base: Source
    vector: bool = False  # [v] (an index for index_select) instead of a 0-d tensor
    floating: bool = False

    def expr(self) -> str:
        v = f"[{self.base.expr()}]" if self.vector else self.base.expr()
        if self.floating:
            return f"__jf_torch.tensor({v}, dtype=__jf_torch.float64)"
        return f"__jf_torch.tensor({v})"

    def name(self) -> str:
        return f"tensor({'[' if self.vector else ''}{self.base.name()}{']' if self.vector else ''})"


@dataclasses.dataclass(frozen=True)
class StackSource(Source):
    """``torch.stack(base)``: a list of tensors whose length varies, handed
    to the graph as one tensor (see values.TensorListV)."""

    base: Source

    def expr(self) -> str:
        return f"__jf_torch.stack({self.base.expr()})"

    def name(self) -> str:
        return f"stack({self.base.name()})"


class PinnedSource(Source):
    """An object the trace found by a route whose every step is guarded
    otherwise (a method found through its class, whose resolution the class
    guards pin; a module imported inside the function; the globals of an
    inlined function): the object itself, as a constant of the generated
    code. Reads through it (``fn.__code__``, ``fn.__closure__[0]``, a
    module's attribute) are then guarded like reads through any source.

    ``expr()`` names it by a placeholder that code generation resolves
    through :func:`pinned`; pins live until the next trace starts
    (:func:`clear_pins`), after every generated function of this one is
    built (code built later keeps the pins it reads:
    ``FunctionBuilder.build_later``)."""

    __slots__ = ("obj",)

    def __init__(self, obj) -> None:
        self.obj = obj
        _PINS[id(obj)] = obj

    def __eq__(self, other) -> bool:
        return isinstance(other, PinnedSource) and other.obj is self.obj

    def __hash__(self) -> int:
        return hash(id(self.obj))

    def __repr__(self) -> str:
        return f"PinnedSource({self.name()})"

    def expr(self) -> str:
        return f"__jf_p{id(self.obj)}"

    def name(self) -> str:
        obj = self.obj
        label = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
        if not isinstance(label, str):
            label = type(obj).__name__
        return f"<{label}>"


_PINS: dict[int, object] = {}


def pinned(key: int):
    """The object a ``__jf_p<key>`` placeholder stands for."""
    return _PINS[key]


def clear_pins() -> None:
    _PINS.clear()


@contextlib.contextmanager
def pins_kept():
    """The pins made so far stay valid through a trace made inside (a
    check's second trace of the same frame)."""
    saved = dict(_PINS)
    try:
        yield
    finally:
        _PINS.update(saved)


@dataclasses.dataclass(frozen=True)
class ExprSource(Source):
    """A value computed from other sources by a fixed expression (a tensor
    size handed to the graph as an int input)."""

    text: str
    readable: str

    def expr(self) -> str:
        return self.text

    def name(self) -> str:
        return self.readable
