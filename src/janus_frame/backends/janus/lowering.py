"""Lowering: an aten-level ``fx.GraphModule`` to the loop IR (:mod:`.ir`).

In: a decomposed, functional aten graph whose nodes carry ``meta['val']``
(FakeTensors / SymInts).  Out: an :class:`ir.Program`.

Tensor values are :class:`TV`: either a strided *view* of a buffer (graph
input, extern result, realized node) or a *lazy* pointwise function
``fn(index) -> E`` that consumers inline.  View ops only compose index maps;
a lazy value becomes a buffer (``realize``) when it is a graph output, an
extern argument, or is used several times and is expensive to recompute.
Ops without a lowering become :class:`ir.Extern` calls of the aten op itself.
The op lowerings live in :mod:`.lowering_ops`.
"""
from __future__ import annotations

import operator

import sympy
import torch
import torch.fx

from . import ir
from .ir import Affine, E

aten = torch.ops.aten


class Unsupported(Exception):
    """The graph cannot be compiled at all (the caller runs it eagerly)."""


def sz(x):
    """A size from a meta value: int, or a sympy expression when symbolic."""
    if isinstance(x, torch.SymInt):
        e = x.node.expr
        if e.is_number:
            return int(e)
        return e
    if isinstance(x, sympy.Expr):
        return int(x) if x.is_number else x
    return int(x)


def size_eq(a, b):
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    return sympy.simplify(sympy.sympify(a) - sympy.sympify(b)) == 0


def is_one(s):
    return isinstance(s, int) and s == 1


class TV:
    """A tensor value: a view of a buffer (``buf`` set) or lazy (``fn`` set)."""

    __slots__ = ("shape", "dtype", "buf", "strides", "offset", "fn", "_memo", "cost", "realized")

    def __init__(self, shape, dtype, buf=None, strides=None, offset=0, fn=None):
        self.shape = tuple(shape)
        self.dtype = dtype
        self.buf = buf
        self.strides = tuple(strides) if strides is not None else None
        self.offset = offset
        self.fn = fn
        self._memo = {}
        self.cost = None
        self.realized = None  # a lazy value's buffer view, once stored

    @property
    def is_view(self):
        return self.buf is not None

    @property
    def ndim(self):
        return len(self.shape)

    def load(self, idx):
        """The scalar expression of element ``idx`` (a list of Affine)."""
        if self.buf is not None:
            a = Affine(self.offset)
            for i, st in zip(idx, self.strides):
                a = a + i.scale(st)
            return ir.load(self.buf.name, a, self.dtype)
        key = tuple(i._key for i in idx)
        e = self._memo.get(key)
        if e is None:
            e = self.fn(idx)
            self._memo[key] = e
        return e

    def canonical_expr(self):
        return self.load([Affine.var("v%d" % i) for i in range(len(self.shape))])


def lazy(shape, dtype, fn):
    return TV(shape, dtype, fn=fn)


def view_of(buf, shape=None, strides=None, offset=None):
    return TV(buf.shape if shape is None else shape, buf.dtype, buf=buf,
              strides=buf.strides if strides is None else strides,
              offset=buf.offset if offset is None else offset)


def cast(e, dtype):
    if e.dtype == dtype:
        return e
    if e.kind == "const":
        return ir.const(e.aux, dtype)
    return E("cast", dtype, (e,))


def broadcast_to(tv, shape):
    """Read ``tv`` as if expanded to ``shape`` (numpy broadcasting rules)."""
    shape = tuple(shape)
    if tv.shape == shape:
        return tv
    nd = len(shape)
    lead = nd - tv.ndim
    if lead < 0:
        raise Unsupported(f"cannot broadcast {tv.shape} to {shape}")
    bdims = [d for d in range(tv.ndim) if is_one(tv.shape[d]) and not is_one(shape[lead + d])]
    if tv.is_view:
        strides = [0] * lead + [0 if d in bdims else tv.strides[d] for d in range(tv.ndim)]
        return TV(shape, tv.dtype, buf=tv.buf, strides=strides, offset=tv.offset)
    zero = Affine(0)

    def fn(idx):
        return tv.load([zero if d in bdims else idx[lead + d] for d in range(tv.ndim)])

    return lazy(shape, tv.dtype, fn)


def permute(tv, perm):
    perm = [p % max(tv.ndim, 1) for p in perm]
    shape = [tv.shape[p] for p in perm]
    if tv.is_view:
        return TV(shape, tv.dtype, buf=tv.buf, strides=[tv.strides[p] for p in perm], offset=tv.offset)
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i

    def fn(idx):
        return tv.load([idx[inv[d]] for d in range(tv.ndim)])

    return lazy(shape, tv.dtype, fn)


def slice_(tv, dim, start, end, step):
    """``start``/``end`` already clamped; ``step`` > 0."""
    n = tv.shape[dim]
    length = (end - start + step - 1) // step if isinstance(end - start, int) else sympy.ceiling((end - start) / step)
    if isinstance(length, int):
        length = max(length, 0)
    shape = list(tv.shape)
    shape[dim] = length
    if tv.is_view:
        strides = list(tv.strides)
        off = tv.offset + start * strides[dim]
        strides[dim] = strides[dim] * step
        return TV(shape, tv.dtype, buf=tv.buf, strides=strides, offset=off)
    del n

    def fn(idx):
        idx = list(idx)
        idx[dim] = idx[dim].scale(step) + start
        return tv.load(idx)

    return lazy(shape, tv.dtype, fn)


def select(tv, dim, index):
    shape = tv.shape[:dim] + tv.shape[dim + 1:]
    if tv.is_view:
        strides = tv.strides[:dim] + tv.strides[dim + 1:]
        return TV(shape, tv.dtype, buf=tv.buf, strides=strides, offset=tv.offset + index * tv.strides[dim])

    def fn(idx):
        idx = list(idx)
        idx.insert(dim, Affine(index))
        return tv.load(idx)

    return lazy(shape, tv.dtype, fn)


def unsqueeze(tv, dim):
    shape = tv.shape[:dim] + (1,) + tv.shape[dim:]
    if tv.is_view:
        strides = tv.strides[:dim] + (0,) + tv.strides[dim:]
        return TV(shape, tv.dtype, buf=tv.buf, strides=strides, offset=tv.offset)

    def fn(idx):
        return tv.load(list(idx[:dim]) + list(idx[dim + 1:]))

    return lazy(shape, tv.dtype, fn)


def squeeze_dims(tv, dims):
    dims = sorted({d % max(tv.ndim, 1) for d in dims if tv.ndim and is_one(tv.shape[d % tv.ndim])})
    if not dims:
        return tv
    keep = [d for d in range(tv.ndim) if d not in dims]
    shape = [tv.shape[d] for d in keep]
    if tv.is_view:
        return TV(shape, tv.dtype, buf=tv.buf, strides=[tv.strides[d] for d in keep], offset=tv.offset)
    zero = Affine(0)

    def fn(idx):
        full = [zero] * tv.ndim
        for i, d in enumerate(keep):
            full[d] = idx[i]
        return tv.load(full)

    return lazy(shape, tv.dtype, fn)


def _view_strides(old_shape, old_strides, new_shape):
    """Strides that present a strided tensor as ``new_shape`` without a copy,
    or None (the algorithm of ``Tensor.view``: chunks of contiguous dims)."""
    if not all(isinstance(s, int) for s in tuple(old_shape) + tuple(old_strides) + tuple(new_shape)):
        return None
    numel = 1
    for s in old_shape:
        numel *= s
    if numel == 0:
        return list(ir.contiguous_strides(new_shape))
    new_strides = [0] * len(new_shape)
    view_d = len(new_shape) - 1
    chunk_base = old_strides[-1] if old_strides else 1
    tensor_numel = 1
    view_numel = 1
    for d in range(len(old_shape) - 1, -1, -1):
        tensor_numel *= old_shape[d]
        if d == 0 or (old_shape[d - 1] != 1 and old_strides[d - 1] != tensor_numel * chunk_base):
            while view_d >= 0 and (view_numel < tensor_numel or new_shape[view_d] == 1):
                new_strides[view_d] = view_numel * chunk_base
                view_numel *= new_shape[view_d]
                view_d -= 1
            if view_numel != tensor_numel:
                return None
            if d > 0:
                chunk_base = old_strides[d - 1]
                tensor_numel = 1
                view_numel = 1
    if view_d != -1:
        return None
    return new_strides


def _split_groups(old, new):
    """Match dims of ``new`` to dims of ``old`` when every old dim is a product
    of consecutive new dims (pure splits, size-1 dims anywhere).  Returns a list
    (per old dim) of new-dim lists, or None."""
    groups = []
    j = 0
    n_new = len(new)
    for s in old:
        g = []
        if is_one(s):
            while j < n_new and is_one(new[j]) and len(g) == 0:
                g.append(j)
                j += 1
            groups.append(g)
            continue
        p = 1
        while j < n_new and (p != s if isinstance(s, int) and isinstance(p, int) else not size_eq(p, s)):
            if isinstance(new[j], int) and isinstance(s, int) and isinstance(p, int) and p * new[j] > s:
                return None
            p = p * new[j]
            g.append(j)
            j += 1
            if not (isinstance(s, int) and isinstance(p, int)) and size_eq(p, s):
                break
        if not (isinstance(p, int) and isinstance(s, int) and p == s) and not size_eq(p, s):
            return None
        groups.append(g)
    while j < n_new:
        if not is_one(new[j]):
            return None
        j += 1
    return groups


def reshape(ctx, tv, new_shape):
    new_shape = list(new_shape)
    if -1 in new_shape:
        known = 1
        for s in new_shape:
            if not (isinstance(s, int) and s == -1):
                known = known * s
        total = ir.prod(tv.shape)
        new_shape[new_shape.index(-1)] = total // known if isinstance(total, int) and isinstance(known, int) else sympy.floor(total / known)
    new_shape = tuple(new_shape)
    if new_shape == tv.shape:
        return tv
    if tv.is_view:
        st = _view_strides(tv.shape, tv.strides, new_shape)
        if st is not None:
            return TV(new_shape, tv.dtype, buf=tv.buf, strides=st, offset=tv.offset)
    old_nz = [s for s in tv.shape if not is_one(s)]
    new_nz = [s for s in new_shape if not is_one(s)]
    if len(old_nz) == len(new_nz) and all(size_eq(a, b) for a, b in zip(old_nz, new_nz)):
        # only size-1 dims move: an index map even for symbolic sizes
        old_pos = [d for d, s in enumerate(tv.shape) if not is_one(s)]
        new_pos = [d for d, s in enumerate(new_shape) if not is_one(s)]
        zero = Affine(0)

        def fn1(idx):
            full = [zero] * tv.ndim
            for o, n in zip(old_pos, new_pos):
                full[o] = idx[n]
            return tv.load(full)

        if tv.is_view:
            strides = [0] * len(new_shape)
            for o, n in zip(old_pos, new_pos):
                strides[n] = tv.strides[o]
            return TV(new_shape, tv.dtype, buf=tv.buf, strides=strides, offset=tv.offset)
        return lazy(new_shape, tv.dtype, fn1)
    if not tv.is_view:
        groups = _split_groups(tv.shape, new_shape)
        if groups is not None:
            def fn2(idx):
                old = []
                for g in groups:
                    a = Affine(0)
                    for j in g:
                        a = a.scale(new_shape[j]) + idx[j]
                    old.append(a)
                return tv.load(old)

            return lazy(new_shape, tv.dtype, fn2)
    # merging non-contiguous dims: materialise contiguously, then view
    r = ctx.realize(tv, copy=True)
    st = ir.contiguous_strides(new_shape)
    return TV(new_shape, tv.dtype, buf=r.buf, strides=st, offset=r.buf.offset)


def sym_float(x) -> E:
    """A float-valued sympy expression over size symbols as an IR expression
    in float64: integer parts become ``sym`` leaves, the rest float ops."""
    f64 = torch.float64
    if x.is_number:
        return ir.const(float(x), f64)
    if x.is_integer and x.free_symbols:
        return cast(E("sym", torch.int64, (), x), f64)
    name = type(x).__name__
    if isinstance(x, sympy.Add):
        out = sym_float(x.args[0])
        for a in x.args[1:]:
            out = E("add", f64, (out, sym_float(a)))
        return out
    if isinstance(x, sympy.Mul):
        out = sym_float(x.args[0])
        for a in x.args[1:]:
            out = E("mul", f64, (out, sym_float(a)))
        return out
    if isinstance(x, sympy.Pow) and x.exp.is_Integer:
        n = int(x.exp)
        base = sym_float(x.base)
        out = base
        for _ in range(abs(n) - 1):
            out = E("mul", f64, (out, base))
        return E("div", f64, (ir.const(1.0, f64), out)) if n < 0 else out
    if name in ("ToFloat",) and len(x.args) == 1:
        return sym_float(x.args[0])
    if name in ("FloatTrueDiv", "IntTrueDiv") and len(x.args) == 2:
        return E("div", f64, (sym_float(x.args[0]), sym_float(x.args[1])))
    raise Unsupported(f"symbolic float scalar {x} ({name})")


def as_tv(ctx, x, dtype=None):
    """Turn a python scalar / SymInt into a 0-d lazy value."""
    if isinstance(x, TV):
        return x
    if isinstance(x, torch.SymInt) or isinstance(x, sympy.Expr):
        s = sz(x)
        if isinstance(s, int):
            x = s
        else:
            e = E("sym", torch.int64, (), s)
            return lazy((), torch.int64 if dtype is None else dtype, lambda idx: cast(e, torch.int64 if dtype is None else dtype))
    if isinstance(x, torch.SymFloat):
        # e.g. BatchNorm's 1/N with a dynamic batch: float arithmetic over
        # the graph's int size symbols, evaluated in the kernel
        e = sym_float(x.node.expr)
        d = torch.get_default_dtype() if dtype is None else dtype
        return lazy((), d, lambda idx: cast(e, d))
    if isinstance(x, bool):
        d = torch.bool
    elif isinstance(x, int):
        d = torch.int64
    elif isinstance(x, float):
        d = torch.get_default_dtype()
    else:
        raise Unsupported(f"scalar of type {type(x).__name__}")
    d = dtype or d
    c = ir.const(x, d)
    return lazy((), d, lambda idx: c)


class Lowering:
    """Walks an fx graph in order and fills a Program."""

    def __init__(self, gm: torch.fx.GraphModule):
        from .lowering_ops import LOWERINGS

        self.gm = gm
        self.lowerings = LOWERINGS
        self.prog = ir.Program()
        self.env = {}
        self.sym_sources = {}  # sympy symbol -> ("arg", i) | ("size", i, dim) | ("stride", i, dim)
        self.node = None
        self.extern_count = 0
        self.order = {}  # fx node -> position (liveness across mutations)
        self.storage_of = {}  # input buffer name -> its placeholder's storage
        self.inputs_written = set()  # input buffers a kernel stores into

    # ----------------------------------------------------------- buffers
    def realize(self, tv, out=None, copy=False):
        """Materialise ``tv`` into a buffer (a fresh contiguous temp, or ``out``)
        and return a view of it.  Views of buffers are returned unchanged
        unless ``copy`` (a reshape that no strides can express)."""
        if tv.is_view and out is None and not copy:
            return tv
        if out is None and not copy and tv.realized is not None:
            return tv.realized  # stored once, however many consumers need a buffer
        if out is None:
            out = self.prog.new_buffer("buf", tv.shape, ir.contiguous_strides(tv.shape), tv.dtype, "temp")
        vars_ = [Affine.var("v%d" % i) for i in range(tv.ndim)]
        expr = tv.load(vars_)
        if expr.dtype != out.dtype:
            expr = cast(expr, out.dtype)
        node = ir.Pointwise(f"n{len(self.prog.nodes)}", out, tv.shape, expr)
        self.prog.nodes.append(node)
        r = view_of(out)
        if not tv.is_view and out.kind == "temp":
            tv.realized = r
        return r

    def maybe_realize_shared(self, tv, fx_node):
        """Realize a lazy value used several times when recomputing it in every
        consumer would cost more than storing it once."""
        if tv.is_view:
            return tv
        if _feeds_library_call(fx_node, self.lowerings):
            # a library call needs it in memory anyway: store it once, in its
            # natural layout, and let every consumer (a transposed matmul
            # operand, a reduction, the graph output) read that buffer
            return self.realize(tv)
        users = len(fx_node.users)
        if users <= 1:
            return tv
        e = tv.canonical_expr()
        nodes = ir.walk(e)
        ops = sum(1 for x in nodes if x.kind not in ir.LEAF_KINDS)
        heavy = any(x.kind in ir.TRANSCENDENTAL for x in nodes)
        nloads = len({x.aux[0] for x in nodes if x.kind == "load"})
        if ops > 24 or nloads > 4 or (heavy and users > 1 and ops >= 2):
            return self.realize(tv)
        return tv

    def bufarg(self, tv):
        tv = self.realize(tv)
        return ir.BufArg(tv.buf, tv.shape, tv.strides, tv.offset)

    # ----------------------------------------------------------- graph walk
    def run(self):
        g = self.gm.graph
        inputs = []
        for n in g.nodes:
            if n.op == "placeholder":
                inputs.append(self.placeholder(n, len(inputs)))
        self.prog.inputs = inputs
        self.order = {n: i for i, n in enumerate(g.nodes)}
        for n in g.nodes:
            if n.op == "placeholder":
                continue
            self.node = n
            if n.op == "call_function":
                self.env[n] = self.call(n)
            elif n.op == "output":
                self.output(n.args[0])
            elif n.op == "get_attr":
                self.env[n] = self.constant(n)
            else:
                raise Unsupported(f"fx op {n.op}")
        self.prog.symbols = list(self.sym_sources.items())
        return self.prog

    def placeholder(self, n, i):
        val = n.meta.get("val", n.meta.get("example_value"))
        if isinstance(val, torch.SymInt) or isinstance(val, int):
            s = sz(val)
            b = self.prog.new_buffer("s", (), (), torch.int64, "sym", index=i)
            if isinstance(s, sympy.Symbol):
                self.sym_sources.setdefault(s, ("arg", i))
            self.env[n] = val if isinstance(val, int) else val
            return b
        if not isinstance(val, torch.Tensor):
            raise Unsupported(f"input {n.name} of type {type(val).__name__}")
        shape = [sz(s) for s in val.shape]
        strides = [sz(s) for s in val.stride()]
        for d, s in enumerate(shape):
            if isinstance(s, sympy.Symbol):
                self.sym_sources.setdefault(s, ("size", i, d))
        for d, s in enumerate(strides):
            if isinstance(s, sympy.Symbol):
                self.sym_sources.setdefault(s, ("stride", i, d))
        b = self.prog.new_buffer("in", shape, strides, val.dtype, "input", index=i)
        self.storage_of[b.name] = _storage(val)
        self.env[n] = view_of(b)
        return b

    def constant(self, n):
        """A tensor attribute of the module (a lifted constant): bound into
        the wrapper once, read like an input."""
        t = getattr(self.gm, n.target)
        if not isinstance(t, torch.Tensor):
            raise Unsupported(f"get_attr of {type(t).__name__}")
        # a real constant (e.g. an empty tensor the model built), lowered
        # while AOTAutograd's fake mode may still be active
        from torch._subclasses.fake_tensor import unset_fake_temporarily

        with unset_fake_temporarily():
            t = t.detach()
        b = self.prog.new_buffer("const", list(t.shape), list(t.stride()), t.dtype, "const")
        b.index = t
        return view_of(b)

    def arg(self, a):
        if isinstance(a, torch.fx.Node):
            return self.env[a]
        if isinstance(a, (list, tuple)):
            return type(a)(self.arg(x) for x in a)
        return a

    def call(self, n):
        target = n.target
        if target is operator.getitem:
            seq = self.arg(n.args[0])
            return seq[n.args[1]]
        if target in (operator.add, operator.sub, operator.mul, operator.floordiv, operator.neg,
                      torch.sym_max, torch.sym_min) or getattr(target, "__module__", "") == "_operator":
            args = [self.arg(a) for a in n.args]
            return n.meta.get("val", target(*args)) if not any(isinstance(a, TV) for a in args) else self._unsupported(n)
        if target in (aten.sym_size.int, aten.sym_stride.int, aten.sym_numel.default):
            return n.meta["val"]
        if target is aten.size.default:  # left by decompositions of symbolic graphs
            v = n.meta.get("val")
            return list(v) if v is not None else list(self.arg(n.args[0]).shape)
        args = [self.arg(a) for a in n.args]
        kwargs = {k: self.arg(v) for k, v in n.kwargs.items()}
        low = self.lowerings.get(target)
        if low is not None:
            try:
                out = low(self, *args, **kwargs)
            except NotImplementedError:
                out = None
            if out is not None:
                if isinstance(out, TV):
                    out = self.maybe_realize_shared(out, n)
                return out
        return self.extern(n, target, args, kwargs)

    def _read_later(self, k):
        here = self.order.get(self.node, -1)
        return any(self.order.get(u, -1) > here for u in k.users)

    def _before_write(self, written, keep=None, exact=False):
        """Before a mutation of the buffers ``written`` (name -> storage of
        the written fx value): lazily-read values must see the data as it is
        now, and so must values held as views of a written buffer without
        sharing its memory in the program (a ``clone`` lowers to its input)
        if they are read after the write.  ``keep``: a lazy value the write
        itself stores (not realized separately); ``exact``: no other buffer
        shares memory with the written ones, so lazy values reading none of
        them stay lazy."""
        for k, v in list(self.env.items()):
            if not isinstance(v, TV) or v is keep or not self._read_later(k):
                continue
            if not v.is_view:
                if exact and not any(e.aux[0] in written for e in ir.loads_of(v.canonical_expr())):
                    continue
                self.env[k] = self.realize(v)
            elif v.buf.name in written:
                mine, theirs = _storage_of_node(k), written[v.buf.name]
                if mine is not None and theirs is not None and mine != theirs:
                    self.env[k] = self.realize(v, copy=True)

    def _library_views(self, names=None):
        """Has an extern returned a view of one of the buffers ``names`` (of
        any buffer when None): memory shared under another name?"""
        for x in self.prog.nodes:
            if isinstance(x, ir.Extern) and any(r.alias_info is not None for r in x.op._schema.returns):
                if names is None or x.reads() & set(names):
                    return True
        return False

    def _copy_into_input(self, n, args):
        """``copy_(input, value)`` (the write-back of a functionalized
        mutation, e.g. an optimizer's parameter update) with ``value`` lazy
        and elementwise in the input: the kernel computing ``value`` stores
        straight into the input's memory, instead of into a temporary that
        a library copy then moves (one pass over the data instead of three).
        Returns False when that does not apply (the copy stays an extern)."""
        dst, src = args[0], args[1] if len(args) > 1 else None
        if not (isinstance(dst, TV) and isinstance(src, TV) and dst.is_view and not src.is_view):
            return False
        b = dst.buf
        if b.kind != "input" or b.name in self.inputs_written or dst.shape != b.shape \
                or dst.strides != b.strides or dst.offset != b.offset or b.dtype not in _native():
            return False
        if src.shape != dst.shape:
            src = broadcast_to(src, dst.shape)
        vars_ = ["v%d" % i for i in range(len(b.shape))]
        expr = cast(src.load([Affine.var(v) for v in vars_]), b.dtype)
        store = ir.store_index(b, vars_)
        if any(e.aux[0] == b.name and e.aux[1] != store for e in ir.loads_of(expr)):
            return False  # reads the input elsewhere than where it writes
        if self._library_views([b.name]):
            return False  # a library view may share the input's memory
        self._before_write({b.name: _storage_of_node(n.args[0])}, keep=args[1], exact=True)
        self.prog.nodes.append(ir.Pointwise(f"n{len(self.prog.nodes)}", b, b.shape, expr, store))
        self.inputs_written.add(b.name)
        new = view_of(b)
        for k, v in list(self.env.items()):
            if v is args[1]:
                self.env[k] = new  # the value now lives in the input
        self.env_value_of_write = new
        return True

    def _unsupported(self, n):
        raise Unsupported(f"symbolic arithmetic on tensors: {n.format_node()}")

    def extern(self, n, op, args, kwargs):
        if not isinstance(op, torch._ops.OpOverload):
            raise Unsupported(f"non-aten call {op}")
        if op is aten.copy_.default and self._copy_into_input(n, args):
            return self.env_value_of_write
        if op._schema.is_mutable:
            written = {}
            for i, a in enumerate(op._schema.arguments):
                if i < len(args) and a.alias_info is not None and a.alias_info.is_write \
                        and isinstance(args[i], TV) and args[i].is_view:
                    written[args[i].buf.name] = _storage_of_node(n.args[i])
            exact = all(self.prog.buffers[b].kind == "input" for b in written) \
                and not self._library_views(written)
            self._before_write(written, exact=exact)

        def conv(a):
            if isinstance(a, TV):
                return self.bufarg(a)
            if isinstance(a, (list, tuple)):
                return type(a)(conv(x) for x in a)
            if isinstance(a, torch.SymInt):
                s = sz(a)
                if isinstance(s, int):
                    return s
                return SymArg(s)
            return a

        cargs = conv(args)
        ckw = {k: conv(v) for k, v in kwargs.items()}
        val = n.meta.get("val")
        multi = isinstance(val, (list, tuple))
        vals = list(val) if multi else [val]
        outs = []
        for v in vals:
            if isinstance(v, torch.Tensor):
                b = self.prog.new_buffer("ext", [sz(s) for s in v.shape], [sz(s) for s in v.stride()],
                                         v.dtype, "extern")
                outs.append(b)
            elif v is None:
                outs.append(None)
            else:
                raise Unsupported(f"extern {op} returns {type(v).__name__}")
        node = ir.Extern(f"n{len(self.prog.nodes)}", op, cargs, ckw, outs, multi)
        self.prog.nodes.append(node)
        self.extern_count += 1
        tvs = [view_of(b) if b is not None else None for b in outs]
        return tvs if multi else tvs[0]

    def output(self, outs):
        # a graph returning one bare value (hand-built graphs) keeps that shape
        self.prog.single_output = not isinstance(outs, (list, tuple))
        if self.prog.single_output:
            outs = [outs]
        res = []
        claimed = {}  # buffer name -> storage of the first output using it
        for o in outs:
            v = self.arg(o)
            if isinstance(v, TV) and not v.is_view and v.realized is not None:
                v = v.realized
            meta = o.meta.get("val") if isinstance(o, torch.fx.Node) else None
            if v is None or not isinstance(v, TV):
                if isinstance(v, torch.SymInt):
                    s = sz(v)
                    res.append(("sym", s) if not isinstance(s, int) else ("const", s))
                else:
                    res.append(("const", v))
                continue
            if v.is_view and self._may_alias(v.buf, meta, claimed):
                b = v.buf
                producer = self._producer(b)
                if b.kind == "temp" and producer is not None and b.name not in claimed:
                    b.kind = "output"
                if isinstance(meta, torch.Tensor):
                    claimed.setdefault(b.name, _storage(meta))
                else:
                    claimed.setdefault(b.name, None)
                res.append(("buf", ir.BufArg(b, v.shape, v.strides, v.offset)))
                continue
            strides = ir.contiguous_strides(v.shape)
            if isinstance(meta, torch.Tensor):
                ms = [sz(s) for s in meta.stride()]
                if _dense_non_overlapping(v.shape, ms):
                    strides = tuple(ms)
            out = self.prog.new_buffer("out", v.shape, strides, v.dtype, "output")
            claimed[out.name] = _storage(meta) if isinstance(meta, torch.Tensor) else None
            self.realize(v, out)
            res.append(("buf", ir.BufArg(out, out.shape, out.strides, out.offset)))
        self.prog.outputs = res

    def _may_alias(self, b, meta, claimed):
        """May an output whose value is a view of ``b`` be returned as that
        view?  Only if the graph's own output aliases the same memory: the
        lowering drops ``clone`` and friends, but a caller keeps the output
        (an optimizer's new momentum buffer, ``grad.clone()``) and must not
        find it to be the input, or another output, it was copied from."""
        if not isinstance(meta, torch.Tensor):
            return True  # no metadata (hand-built graphs): as before
        mine = _storage(meta)
        if b.kind == "input":
            theirs = self.storage_of.get(b.name)
            return theirs is not None and theirs == mine
        if b.kind == "const":
            return False
        if b.name in claimed:
            return claimed[b.name] is not None and claimed[b.name] == mine
        return True

    def _producer(self, b):
        for n in self.prog.nodes:
            if n.out is b:
                return n
        return None


# ops that only re-index their first argument (lowered as index maps)
_VIEW_OPS = {aten.view.default, aten._unsafe_view.default, aten.reshape.default,
             aten.permute.default, aten.t.default, aten.transpose.int, aten.expand.default,
             aten.unsqueeze.default, aten.squeeze.dim, aten.squeeze.dims, aten.squeeze.default,
             aten.slice.Tensor, aten.select.int, aten.alias.default, aten.clone.default}


def _feeds_library_call(n, lowerings, depth=0):
    """Is the value of fx node ``n`` an argument of an op without a lowering
    (an extern), directly or through view ops?"""
    for u in n.users:
        if u.op != "call_function":
            continue
        t = u.target
        if t in _VIEW_OPS:
            if u.args and u.args[0] is n and depth < 8 and _feeds_library_call(u, lowerings, depth + 1):
                return True
        elif isinstance(t, torch._ops.OpOverload) and t not in lowerings:
            if t is aten.copy_.default and len(u.args) > 1 and u.args[1] is n \
                    and u.args[0].op == "placeholder":
                continue  # a write-back into an input: stored there in place
            return True
    return False


class SymArg:
    """A symbolic int argument of an extern call (evaluated per call)."""

    __slots__ = ("expr",)

    def __init__(self, expr):
        self.expr = expr

    def __repr__(self):
        return f"sym({self.expr})"


def _storage(val):
    """An identity for ``val``'s memory (fake tensors: views share it)."""
    from torch.multiprocessing.reductions import StorageWeakRef

    try:
        return StorageWeakRef(val.untyped_storage())
    except Exception:  # noqa: BLE001 -- e.g. sparse or opaque tensors
        return None


def _storage_of_node(n):
    val = n.meta.get("val") if isinstance(n, torch.fx.Node) else None
    return _storage(val) if isinstance(val, torch.Tensor) else None


def _dense_non_overlapping(shape, strides):
    if not all(isinstance(s, int) for s in list(shape) + list(strides)):
        return tuple(strides) == tuple(ir.contiguous_strides(shape))
    dims = sorted((st, s) for s, st in zip(shape, strides) if s != 1)
    expect = 1
    for st, s in dims:
        if st != expect:
            return False
        expect *= s
    return True


def _native():
    from .lowering_ops import _NATIVE

    return _NATIVE


def lower(gm) -> ir.Program:
    return Lowering(gm).run()
