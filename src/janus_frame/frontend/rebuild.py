"""Rebuilding Python values after a graph segment ran.

In: symbolic values the replacement must hand back to Python (the frame's
return value, the stack and live locals at a break, values written by side
effects), and the segment's FunctionBuilder (for constants).
Out: Python source lines that rebuild them -- reading graph outputs
(``__jf_o[i]``), re-reading inputs through their sources, building
containers, objects and functions made while tracing -- and the list of
tensors that must therefore be graph outputs (``Rebuilder.outputs``).
Objects whose identity matters are built once into a temporary, so every
reference sees the same object.
"""
from __future__ import annotations

import math
import types

import torch

from .breaks import GraphBreak
from .codegen import FunctionBuilder
from .resume import make_function
from .sources import ArgSource, ClosureSource
from .values import (
    CellV, Const, DerivedConst, DictV, ExitV, FunctionV, IterV, ItemV, ListV, MethodV, NewObjV,
    ObjV, SetV, SliceV, SymV, TensorV, TupleV, Value,
)


_LITERAL_TYPES = (int, str, bool, type(None), bytes)


class Rebuilder:
    """Python source that rebuilds symbolic values after the graph ran
    (``__jf_o`` holds the graph's outputs). Objects whose identity matters
    (containers, objects built while tracing) are built once into a
    temporary, so every reference sees the same object."""

    def __init__(self, fb: FunctionBuilder, grad_enabled: bool) -> None:
        self.fb = fb
        self.outputs: list[TensorV] = []
        self._out_index: dict = {}
        self.lines: list[str] = []
        self._memo: dict[int, str] = {}
        self.native_grad = grad_enabled  # grad mode after the graph (it restores the entry's)
        self.sym_text = None  # SymV -> Python expression over the inputs' sizes
        self.loop_guard = None  # [guard] when the replacement loops (see _continue)

    def set_grad_mode(self, enabled: bool) -> None:
        if self.native_grad != enabled:
            self.lines.append(f"{self.fb.const(torch._C._set_grad_enabled)}({enabled!r})")
            self.native_grad = enabled

    def reenter(self, ex: ExitV) -> str:
        """Enter the with-block of ``ex`` natively; its ``__exit__`` goes
        back on the stack for the resume function."""
        ctx = ex.ctx
        name = f"__jf_ctx{len(self._memo)}"
        if ctx.kind == "autocast":
            dev, dtype, enabled, cache = ctx.arg
            self.lines.append(
                f"{name} = {self.fb.const(torch.autocast)}({dev!r}, dtype={self.fb.const(dtype)}, "
                f"enabled={enabled!r}, cache_enabled={cache!r})")
            self.lines.append(f"{name}.__enter__()")
            return f"{name}.__exit__"
        if ctx.kind not in ("grad", "grad_set"):
            raise GraphBreak("JF016", f"a graph break inside a {ctx.kind} with-block")
        self.set_grad_mode(ex.restore)
        if ctx.kind == "grad":
            cls = torch.enable_grad if ctx.arg else torch.no_grad
            self.lines.append(f"{name} = {self.fb.const(cls)}()")
        else:
            self.lines.append(f"{name} = {self.fb.const(torch.set_grad_enabled)}({ctx.arg!r})")
        self.lines.append(f"{name}.__enter__()")
        self.native_grad = bool(ctx.arg)
        return f"{name}.__exit__"

    def snapshot(self, v: Value) -> str:
        """An expression for ``v`` safe to use after side effects are replayed."""
        return self.expr(v)

    def expr(self, v: Value) -> str:
        hit = self._memo.get(id(v))
        if hit is not None:
            return hit
        text, needs_temp = self._build(v)
        if needs_temp:
            name = f"__jf_v{len(self._memo)}"
            self.lines.append(f"{name} = {text}")
            self._memo[id(v)] = name
            return name
        return text

    def _build(self, v: Value) -> tuple[str, bool]:
        fb, e = self.fb, self.expr
        if isinstance(v, TensorV):
            if v.node.op == "placeholder" and v.source is not None:
                # the input object itself, read before side effects are
                # replayed (``x = lst[0]; lst.clear()``: lst[0] is gone after)
                return v.source.expr(), _derived(v.source)
            i = self._out_index.get(v.node)
            if i is None:
                i = self._out_index[v.node] = len(self.outputs)
                self.outputs.append(v)
            return f"__jf_o[{i}]", False
        if isinstance(v, ItemV):  # the number, read after the graph
            return f"{e(v.tensor)}.item()", True
        if isinstance(v, SymV):
            text = self.sym_text(v) if self.sym_text is not None else None
            if text is not None:
                return text, True
            return repr(v.value), False  # not a function of the inputs' sizes: specialised
        if v.source is not None and isinstance(v, Const):
            # read now, before any side effect is replayed: value semantics
            return v.source.expr(), True
        if isinstance(v, DerivedConst):
            args = ", ".join(e(a) for a in v.args)
            return f"{fb.const(v.fn)}({args})", True
        if v.source is not None and isinstance(v, (ListV, TupleV, DictV, ObjV)):
            return v.source.expr(), _derived(v.source)
        if isinstance(v, Const):
            x = v.value
            if type(x) in _LITERAL_TYPES or (type(x) is float and math.isfinite(x)):
                return repr(x), False
            return fb.const(x), False
        if isinstance(v, TupleV):
            inner = "".join(e(x) + ", " for x in v.items)
            if v.cls is torch.Size:
                return f"{fb.const(v.cls)}(({inner}))", False
            if v.cls is not None:
                return f"{fb.const(v.cls)}({inner})", False
            return f"({inner})", False
        if isinstance(v, ListV):
            return "[" + ", ".join(e(x) for x in v.items) + "]", True
        if isinstance(v, SetV):
            inner = ", ".join(e(x) for x in v.items)
            return (f"{{{inner}}}" if v.items else "__jf_h_set()"), True
        if isinstance(v, DictV):
            inner = ", ".join(
                f"{k!r}: {e(x)}" if type(k) in _LITERAL_TYPES else f"{fb.const(k)}: {e(x)}"
                for k, x in v.items.items())
            if v.cls is dict:
                return f"{{{inner}}}", True
            return f"{fb.const(_build_dict_subclass)}({fb.const(v.cls)}, {{{inner}}})", True
        if isinstance(v, SliceV):
            parts = ", ".join(e(x) for x in (v.start, v.stop, v.step))
            return f"__jf_h_slice({parts})", False
        if isinstance(v, NewObjV):
            inner = ", ".join(f"{k!r}: {e(x)}" for k, x in v.attrs.items())
            return f"{fb.const(_build_object)}({fb.const(v.cls)}, {{{inner}}})", True
        if isinstance(v, IterV):
            rest = "".join(e(x) + ", " for x in v.items[v.pos:])
            return f"__jf_h_iter(({rest}))", True
        if isinstance(v, MethodV):
            if v.func is not None:
                # the function the trace resolved (it may come from super()):
                # looking the name up again could find an override
                return f"{fb.const(types.MethodType)}({fb.const(v.func)}, {e(v.receiver)})", False
            return f"__jf_h_getattr({e(v.receiver)}, {v.name!r})", False
        if isinstance(v, ExitV):
            if v.source is not None:  # entered natively before: the same object
                return v.source.expr(), False
            return self.reenter(v), True
        if isinstance(v, ObjV):
            return fb.const(v.obj), False
        if isinstance(v, CellV) and not v.external:
            contents = "" if v.contents is None else e(v.contents)
            return f"{fb.const(types.CellType)}({contents})", True
        if isinstance(v, FunctionV):
            closure = "(" + "".join(e(c) + ", " for c in v.closure) + ")" if v.closure else "None"
            defaults = "(" + "".join(e(d) + ", " for d in v.defaults) + ")"
            kwdefaults = "{" + ", ".join(f"{k!r}: {e(d)}" for k, d in v.kwdefaults.items()) + "}"
            return (f"{fb.const(_build_function)}({fb.const(v.code)}, __jf_h_globals(), "
                    f"{v.qualname!r}, {defaults}, {kwdefaults}, {closure})"), True
        raise GraphBreak("JF009", f"a {v.python_type().__name__} built while tracing cannot "
                         "be handed back to Python")


def function_expr(fb: FunctionBuilder, code, cells) -> str:
    """An expression making a function of ``code`` in the running frame's
    globals, with closure ``cells`` (cell expressions). Made at run time: a
    function object kept as a constant would tie the cache (invisible to the
    garbage collector) to the user's globals."""
    closure = "(" + "".join(f"{c}, " for c in cells) + ")" if cells else "None"
    return f"{fb.const(make_function)}({fb.const(code)}, __jf_h_globals(), {closure})"


def _derived(source) -> bool:
    """Is ``source`` read through an item or attribute (which replayed side
    effects may change)?"""
    return not isinstance(source, (ArgSource, ClosureSource)) and \
        type(source).__name__ != "GlobalSource"


def _build_function(code, globals_, qualname, defaults, kwdefaults, closure):
    """Rebuild a function made by MAKE_FUNCTION while tracing (its cells are
    the ones the frame and its resume function share)."""
    fn = types.FunctionType(code, globals_, code.co_name, defaults or None, closure)
    fn.__qualname__ = qualname
    if kwdefaults:
        fn.__kwdefaults__ = kwdefaults
    return fn


def _build_object(cls, attrs: dict):
    """Rebuild an object created while tracing (its __init__ already ran
    symbolically, so only the resulting attributes are set)."""
    obj = object.__new__(cls)
    for k, x in attrs.items():
        object.__setattr__(obj, k, x)
    return obj


def _build_dict_subclass(cls, items: dict):
    import dataclasses

    if dataclasses.is_dataclass(cls):
        return cls(**items)
    return cls(items)
