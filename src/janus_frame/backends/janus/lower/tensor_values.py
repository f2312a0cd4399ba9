"""Tensor values of the lowering and their index-map views.

In: buffers of an :class:`ir.Program` and Python scalars / SymInts / SymFloats.
Out: :class:`TV` values -- a strided view of a buffer, or a lazy pointwise
function ``fn(index) -> E`` that consumers inline -- and the view operations
on them (broadcast, permute, slice, select, (un)squeeze, reshape) as pure
index maps, never copies.  Used by :mod:`.lowering` and the op lowerings.
"""
from __future__ import annotations

import sympy
import torch

from .. import ir
from ..ir import Affine, E, Op


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

    __slots__ = ("shape", "dtype", "buf", "strides", "offset", "fn", "_memo", "cost", "realized", "traced")

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
        self.traced = None  # the fx value it was lowered from: the layout to store it in

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
    if e.kind == Op.CONST:
        return ir.const(e.aux, dtype)
    return E(Op.CAST, dtype, (e,))


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
        # eager's stride for the new dimension (never read by an index, but
        # a returned view or an input's unsqueeze_ shows it): size * stride
        # of the dimension it goes before, 1 at the end
        new = tv.strides[dim] * tv.shape[dim] if dim < tv.ndim else 1
        strides = tuple(tv.strides[:dim]) + (new,) + tuple(tv.strides[dim:])
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
        return cast(E(Op.SYM, torch.int64, (), x), f64)
    name = type(x).__name__
    if isinstance(x, sympy.Add):
        out = sym_float(x.args[0])
        for a in x.args[1:]:
            out = E(Op.ADD, f64, (out, sym_float(a)))
        return out
    if isinstance(x, sympy.Mul):
        out = sym_float(x.args[0])
        for a in x.args[1:]:
            out = E(Op.MUL, f64, (out, sym_float(a)))
        return out
    if isinstance(x, sympy.Pow) and x.exp.is_Integer:
        n = int(x.exp)
        base = sym_float(x.base)
        out = base
        for _ in range(abs(n) - 1):
            out = E(Op.MUL, f64, (out, base))
        return E(Op.DIV, f64, (ir.const(1.0, f64), out)) if n < 0 else out
    if name in ("ToFloat",) and len(x.args) == 1:
        return sym_float(x.args[0])
    if name in ("FloatTrueDiv", "IntTrueDiv") and len(x.args) == 2:
        return E(Op.DIV, f64, (sym_float(x.args[0]), sym_float(x.args[1])))
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
            e = E(Op.SYM, torch.int64, (), s)
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
