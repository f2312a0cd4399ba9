"""Symbolic sizes for OutputGraph (mixed into it): tensor inputs with
dynamic dimensions, sizes as values, size arithmetic, stacked lists of
varying length, and the shape environment's guards.

In: real tensors (and lists of them) whose dimensions are dynamic -- marked
with ``mark_dynamic``, seen to change before (automatic dynamic), or all of
them under ``dynamic=True`` -- and the sizes the trace reads.
Out: fake inputs with symbolic sizes (from one ShapeEnv), ``SymV`` values
whose fx nodes compute sizes in the graph, Python expressions recomputing a
size after the graph, and guard clauses (ranges, relations between sizes,
specialisations) rendered over the frame's argument slots.
"""
from __future__ import annotations

import functools
import re

import torch

from .breaks import GraphBreak
from .sources import ArgSource, ExprSource, ItemSource, Source, StackSource
from .values import Const, SymV, TensorListV, TensorV, TupleV, Value


class NeedsShapeEnv(Exception):
    """An operator's output shape depends on data, or an input has dynamic
    sizes: trace again with a shape environment (kept off by default:
    creating one costs a second of imports the first time)."""


class SizeSymbol:
    """A size symbol of an input: its SymInt and how to read it at run time."""

    __slots__ = ("sym_int", "source")

    def __init__(self, sym_int, source) -> None:
        self.sym_int = sym_int
        self.source = source


class SizeInput:
    """A graph input holding a size (an int at run time)."""

    __slots__ = ("node", "source")

    def __init__(self, node, source) -> None:
        self.node = node
        self.source = source


class ShapeMixin:
    def _tensor_list(self, obj: list, source: Source) -> "TensorListV | None":
        """A list whose length changed before (automatic dynamic), made of
        tensors alike in everything but values: one stacked input with a
        symbolic length (see values.TensorListV); None when it does not fit."""
        if len(obj) < 2 or any(type(x) is not torch.Tensor for x in obj):
            return None
        first = obj[0]
        meta = (first.dtype, first.shape, first.device, first.requires_grad, first.layout)
        if meta[4] is not torch.strided or any(
                (x.dtype, x.shape, x.device, x.requires_grad, x.layout) != meta for x in obj):
            return None
        if self.fake_mode.shape_env is None:
            raise NeedsShapeEnv()
        k = self.guards.fb.const
        e = source.expr()
        self.guards.add(
            f"{k(_uniform_tensors)}({e}, {k(first.dtype)}, {tuple(first.shape)!r}, "
            f"{first.requires_grad!r}, {k(first.device)})",
            f"{source.name()}: list of >= 2 tensors {first.dtype} {tuple(first.shape)} "
            f"requires_grad={first.requires_grad} on {first.device}")
        src = StackSource(source)
        real = torch.stack(obj)
        name = self._unique_name(re.sub(r"\W+", "_", source.name()).strip("_") + "_stacked")
        node = self.root_graph.placeholder(name)
        fake = self._symbolic_fake(real, src, [0], length_of=e)
        node.meta["example_value"] = fake
        stacked = TensorV(node, fake, src)
        self.inputs.append((stacked, real))
        length = self.size_of(stacked, 0)

        def realize():  # items one by one: the length becomes a constant
            if isinstance(length, SymV):
                length.value  # noqa: B018 - specialises (guarded by the shape environment)
            return [self.wrap(x, ItemSource(source, i)) for i, x in enumerate(obj)]
        return TensorListV(source, stacked, length, realize, None)

    def list_op(self, target, args: tuple, kwargs: dict) -> Value | None:
        """``torch.stack`` / ``torch.cat`` over a symbolic TensorListV."""
        lst = args[0] if args else kwargs.get("tensors")
        if not (isinstance(lst, TensorListV) and lst.symbolic) or len(args) > 2 or \
                set(kwargs) - {"tensors", "dim"}:
            return None
        dim = args[1] if len(args) > 1 else kwargs.get("dim", Const(0))
        if not isinstance(dim, Const) or type(dim.value) is not int:
            return None
        d, n = dim.value, lst.stacked.fake.dim() - 1  # n: an item's dims
        s = lst.stacked
        if target is torch.stack:
            d = d + n + 1 if d < 0 else d
            if not 0 <= d <= n:
                return None
            return s if d == 0 else self.call("call_method", "movedim", (s, Const(0), Const(d)), {})
        d = d + n if d < 0 else d
        if n == 0 or not 0 <= d < n:
            return None
        if d:
            s = self.call("call_method", "movedim", (s, Const(0), Const(d)), {})
        return self.call("call_method", "flatten", (s, Const(d), Const(d + 1)), {})

    def _dynamic_dims(self, t: torch.Tensor, source: Source) -> list[int]:
        """The dimensions of input ``t`` traced with symbolic sizes: marked
        with ``mark_dynamic``, seen to change before (automatic dynamic), or
        all dimensions of argument tensors under ``dynamic=True``. Only
        contiguous tensors: their strides follow from their sizes."""
        marked = getattr(t, "_jf_dynamic_dims", None)
        dims = set(marked) if marked else set()
        if self.dynamic_all is not False:
            name = source.name()
            dims |= {d[1] for d in self.dynamic if isinstance(d, tuple) and d[0] == name}
        if self.dynamic_all is True and is_argument(source):
            dims |= set(range(t.dim()))
        if not dims or t.layout is not torch.strided or not t.is_contiguous():
            return []
        return sorted(d for d in dims if d < t.dim())

    def _symbolic_fake(self, t: torch.Tensor, source: Source, dims: list[int],
                       length_of: str | None = None):
        from ..torch_compat import DimDynamic, StatelessSymbolicContext

        ctx = StatelessSymbolicContext(dynamic_sizes=[
            DimDynamic.DYNAMIC if d in dims else DimDynamic.STATIC for d in range(t.dim())])
        fake = self.fake_mode.from_tensor(t, symbolic_context=ctx,
                                          source=_shape_source(source.expr(), length_of))
        for d, n in enumerate(fake.shape):
            if isinstance(n, torch.SymInt) and n.node.expr.is_Symbol:
                if n.node.expr not in self.size_symbols:
                    expr = f"__jf_h_len({length_of})" if length_of and d == 0 else \
                        f"{source.expr()}.shape[{d}]"
                    self.size_symbols[n.node.expr] = SizeSymbol(
                        n, ExprSource(expr, f"{source.name()}.size({d})"))
        self.sym_inputs.append((fake, source))
        return fake

    def sym_value(self, x, node_fn) -> Value:
        """A size read from a fake tensor as a value: ints stay constants, a
        SymInt becomes a SymV computed by ``node_fn()`` in the graph."""
        if isinstance(x, torch.SymInt):
            if x.node.expr.is_number:
                return Const(int(x.node.expr))
            if not x.node.has_hint():
                raise GraphBreak("JF006", "reading a size that depends on data")
            node = node_fn()
            node.meta["example_value"] = x
            return SymV(node, x)
        return Const(x)

    def size_of(self, t: TensorV, dim: int | None = None) -> Value:
        """``t.shape`` / ``t.size()`` (a torch.Size of values) or ``t.size(dim)``."""
        shape = t.fake.shape
        if dim is not None:
            d = dim + len(shape) if dim < 0 else dim
            return self.sym_value(shape[d], lambda: self.graph.call_function(
                torch.ops.aten.sym_size.int, (t.node, d)))
        if all(isinstance(n, int) for n in shape):
            return Const(shape)
        return TupleV([self.size_of(t, d) for d in range(len(shape))], cls=torch.Size)

    def sym_call(self, fn, a: Value, b: Value | None = None) -> Value:
        """Size arithmetic (``B * T``, ``n // 2``, ``-n``) kept in the graph."""
        args = (a,) if b is None else (a, b)
        from .fake import to_fake, to_node

        fake = fn(*(to_fake(x) for x in args))
        return self.sym_value(fake, lambda: self.graph.call_function(
            fn, tuple(to_node(x) for x in args)))

    def note_sizes_before_backend(self) -> None:
        """Remembers which dynamic input sizes the trace itself turned into
        constants, so that the guards can tell those the backend pins apart."""
        env = self.fake_mode.shape_env if self.fake_mode is not None else None
        if env is None or not self.sym_inputs:
            return
        self.sizes_before_backend = {
            (src.name(), d) for fake, src in self.sym_inputs for d, n in enumerate(fake.shape)
            if isinstance(n, torch.SymInt) and env.simplify(n.node.expr).is_number}

    def shape_guards(self) -> None:
        """The shape environment's conditions on the symbolic sizes (relations
        found while tracing, ranges, specialisations), as guard clauses. Called
        after the backend compiled: it may add conditions of its own."""
        env = self.fake_mode.shape_env
        if env is None or not self.sym_inputs:
            return
        fakes = [f for f, _ in self.sym_inputs]
        sources = [_shape_source(s.expr(), _length_of(s)) for _, s in self.sym_inputs]
        names = {_shape_source(s.expr(), _length_of(s)): s.name() for _, s in self.sym_inputs}
        exprs = env.produce_guards(fakes, sources, source_ref=_source_ref)
        readable = env.produce_guards(fakes, sources,
                                      source_ref=lambda s: _source_ref(s, names))
        # A dynamic dimension whose size the trace used as a Python int is
        # now a constant of the environment: check it like a static size
        # (produce_guards leaves sizes it considers static to the caller).
        # One the backend pinned says so: nothing in the frame needed it.
        frontend = self.sizes_before_backend
        for fake, src in self.sym_inputs:
            for d, n in enumerate(fake.shape):
                if isinstance(n, torch.SymInt):
                    value = env.simplify(n.node.expr)
                    if value.is_number:
                        at = f"__jf_h_len({_length_of(src)})" if d == 0 and _length_of(src) \
                            else f"{src.expr()}.shape[{d}]"
                        exprs.append(f"{at} == {int(value)}")
                        why = "" if frontend is None or (src.name(), d) in frontend else \
                            " (specialised by the backend while compiling the graph)"
                        readable.append(f"{src.name()}.size({d}) == {int(value)}{why}")
        for ex, desc in zip(exprs, readable):
            self.guards.add(_bind_sympy_helpers(ex, self.guards.fb.const), desc)

    def size_inputs(self) -> list:
        """One SymInt placeholder per free size symbol (as Dynamo's graphs
        have): AOTAutograd's passes look symbols up among the graph's nodes,
        e.g. to turn a symbolic float (BatchNorm's 1/N) into a tensor. Returns
        (value, real int) pairs for the inputs list."""
        env = self.fake_mode.shape_env
        if env is None or not self.size_symbols:
            return []
        last = [n for n in self.root_graph.nodes if n.op == "placeholder"][-1]
        out = []
        for sym, size in self.size_symbols.items():
            if not env.simplify(sym).is_Symbol:
                continue  # specialised while tracing
            with self.root_graph.inserting_after(last):
                node = self.root_graph.placeholder(self._unique_name(str(sym)))
            node.meta["example_value"] = size.sym_int
            last = node
            # the example input is the SymInt itself: AOTAutograd then keeps
            # the symbol instead of making a new one for a plain int
            out.append((SizeInput(node, size.source), size.sym_int))
        return out

    def sym_text(self, v: "SymV") -> str | None:
        """A Python expression recomputing a symbolic size from the frame's
        inputs after the graph (None when it is not a function of them)."""
        from torch.utils._sympy.printers import PythonPrinter

        env = self.fake_mode.shape_env
        expr = env.simplify(v.sym.node.expr) if env is not None else v.sym.node.expr
        if not expr.free_symbols <= set(self.size_symbols):
            return None
        text = PythonPrinter().doprint(expr)
        for sym in sorted(expr.free_symbols, key=lambda s: -len(s.name)):
            text = re.sub(rf"\b{sym.name}\b", self.size_symbols[sym].source.expr(), text)
        if re.search(r"\b(?!__jf_)[A-Za-z_]\w*\s*\(", text):
            return None  # a sympy function without a plain Python spelling
        return f"({text})"


def is_argument(source: Source) -> bool:
    """Reached from the frame's arguments through items only (not a module's
    parameter or buffer): what ``dynamic=True`` makes dynamic."""
    while isinstance(source, ItemSource):
        source = source.base
    return isinstance(source, ArgSource)


@functools.lru_cache(maxsize=None)
def _shape_source(text: str, length_of: str | None = None):
    """The shape environment names symbols after torch._guards sources; this
    one stands for an input by its expression in the generated guard
    (``length_of``: a stacked list, whose dim 0 is read as the list's len)."""
    return _ShapeSource(text, length_of)


def _length_of(source: Source) -> str | None:
    return source.base.expr() if isinstance(source, StackSource) else None


def _uniform_tensors(lst, dtype, shape, requires_grad, device) -> bool:
    """Guard of a stacked list: a list of >= 2 plain tensors alike."""
    if type(lst) is not list or len(lst) < 2:
        return False
    for x in lst:
        if type(x) is not torch.Tensor or x.dtype is not dtype or x.shape != shape or \
                x.requires_grad is not requires_grad or x.device != device:
            return False
    return True


def _make_shape_source_class():
    import dataclasses

    from ..torch_compat import GuardSource, TorchSource

    @dataclasses.dataclass(frozen=True)
    class ShapeSource(TorchSource):
        text: str
        length_of: str | None = None

        @property
        def _name_template(self) -> str:
            return self.text

        @property
        def guard_source(self):
            return GuardSource.LOCAL

    return ShapeSource


_ShapeSource = _make_shape_source_class()


def _source_ref(s, names: dict | None = None) -> str:
    """A shape-environment source as Python: ``x.shape[0]`` for a size (the
    fastest spelling), a readable name when ``names`` maps our inputs."""
    prop = getattr(s, "prop", None)
    if prop is not None:
        base = _source_ref(s.base, names)
        kind = prop.name
        length_of = getattr(s.base, "length_of", None)
        if kind == "SIZE" and s.idx == 0 and length_of is not None:  # a stacked list
            return f"__jf_h_len({length_of})" if names is None else f"len({base})"
        if kind == "SIZE":
            return f"{base}.shape[{s.idx}]" if names is None else f"{base}.size({s.idx})"
        if kind == "STRIDE":
            return f"{base}.stride({s.idx})"
        return f"{base}.storage_offset()"
    if names is not None and s in names:
        return names[s]
    return s.name


def _bind_sympy_helpers(text: str, const) -> str:
    """Guard text from the shape environment may call its helper functions
    and modules (``math.floor``): bind them as constants of the guard."""
    from ..torch_compat import SYMPY_INTERP

    def sub(m):
        name = m.group(1)
        return const(SYMPY_INTERP[name]) if name in SYMPY_INTERP else name
    return re.sub(r"(?<![\w.])([A-Za-z_]\w*)\b", sub, text)
