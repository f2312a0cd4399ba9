"""Per-op lowerings: aten OpOverload -> function(ctx, *args, **kwargs) -> TV.

In: a :class:`.lowering.Lowering` context (its ``node`` is the fx node being
lowered, whose ``meta['val']`` gives the result shape and dtype) and the op's
arguments with tensors already turned into :class:`.lowering.TV`.
Out: entries of :data:`lower.registry.LOWERINGS` for the pointwise, view,
creation and indexing ops (the reductions are in :mod:`lower.reduce`).  A
lowering returning ``None`` (or raising NotImplementedError) makes the op an
extern call instead.

Dtype rule: arithmetic is computed in the result dtype eager reports
(``meta['val'].dtype``, i.e. after type promotion); comparisons in the
promoted dtype of their operands.
"""
from __future__ import annotations

import torch
import torch.fx

from .. import ir
from ..ir import Affine, E, Op
from .bounds import clamp_index, less
from .registry import NATIVE, meta, register
from .tensor_values import (TV, as_tv, broadcast_to, cast, lazy, permute, reshape, select,
                            slice_, squeeze_dims, sz, unsqueeze)

aten = torch.ops.aten
prims = torch.ops.prims


def _check_inputs(args):
    for a in args:
        if isinstance(a, TV) and a.dtype not in NATIVE:
            raise NotImplementedError


def _scalar_kind(x):
    if isinstance(x, bool):
        return torch.bool
    if isinstance(x, (int, torch.SymInt)):
        return torch.int64
    return torch.float64


def promote(args):
    """torch's promotion of tensors and python scalars (for comparisons)."""
    metas = []
    for a in args:
        if isinstance(a, TV):
            metas.append(torch.empty((1,) if a.ndim else (), dtype=a.dtype, device="meta"))
        else:
            metas.append(a if not isinstance(a, torch.SymInt) else 1)
    r = metas[0]
    if len(metas) == 1:
        return r.dtype if isinstance(r, torch.Tensor) else _scalar_kind(r)
    d = torch.result_type(metas[0], metas[1])
    return d


def pointwise(ctx, kind, args, cdt=None, out_kind_dtype=None):
    """``kind`` applied elementwise to broadcast ``args`` computed in ``cdt``
    (default: the result dtype); ``out_kind_dtype`` is the dtype the op itself
    produces (bool for comparisons) before the final cast to the result."""
    _check_inputs(args)
    shape, odt = meta(ctx)
    cdt = cdt or odt
    kdt = out_kind_dtype or cdt
    tvs = [broadcast_to(as_tv(ctx, a, None), shape) for a in args]

    def fn(idx):
        es = [cast(t.load(idx), cdt) for t in tvs]
        return cast(make(kind, kdt, es), odt)

    return lazy(shape, odt, fn)


def make(kind, dtype, es):
    """An op node with bool-arithmetic mapped to logic (as torch does)."""
    if dtype == torch.bool and kind in (Op.ADD, Op.MAXIMUM):
        kind = Op.OR
    elif dtype == torch.bool and kind in (Op.MUL, Op.MINIMUM):
        kind = Op.AND
    return E(kind, dtype, es)


def _unary(kind, float_only=True):
    def low(ctx, x, *rest, **kw):
        return pointwise(ctx, kind, [x])

    return low


for _op, _k in [(aten.exp, Op.EXP), (aten.exp2, Op.EXP2), (aten.expm1, Op.EXPM1), (aten.log, Op.LOG),
                (aten.log2, Op.LOG2), (aten.log10, Op.LOG10), (aten.log1p, Op.LOG1P),
                (aten.tanh, Op.TANH), (aten.sigmoid, Op.SIGMOID), (aten.erf, Op.ERF),
                (aten.erfc, Op.ERFC), (aten.sqrt, Op.SQRT), (aten.rsqrt, Op.RSQRT),
                (aten.reciprocal, Op.RECIPROCAL), (aten.abs, Op.ABS), (aten.neg, Op.NEG),
                (aten.sin, Op.SIN), (aten.cos, Op.COS), (aten.tan, Op.TAN), (aten.asin, Op.ASIN),
                (aten.acos, Op.ACOS), (aten.atan, Op.ATAN), (aten.sinh, Op.SINH), (aten.cosh, Op.COSH),
                (aten.asinh, Op.ASINH), (aten.acosh, Op.ACOSH), (aten.atanh, Op.ATANH),
                (aten.relu, Op.RELU), (aten.sign, Op.SIGN), (aten.sgn, Op.SIGN)]:
    register(_op.default)(_unary(_k))


@register(aten.floor.default, aten.ceil.default, aten.round.default, aten.trunc.default)
def _rounding(ctx, x):
    shape, odt = meta(ctx)
    if not odt.is_floating_point:
        return broadcast_to(x, shape)
    return pointwise(ctx, Op(ctx.node.target._opname), [x])


@register(aten.isnan.default, aten.isinf.default, aten.isfinite.default, aten.signbit.default)
def _float_pred(ctx, x):
    if not x.dtype.is_floating_point:
        shape, _ = meta(ctx)
        v = ctx.node.target._opname in ("isfinite",)
        return lazy(shape, torch.bool, lambda idx: ir.const(v, torch.bool))
    return pointwise(ctx, Op(ctx.node.target._opname), [x], cdt=x.dtype, out_kind_dtype=torch.bool)


@register(aten.logical_not.default, aten.bitwise_not.default)
def _not(ctx, x):
    shape, odt = meta(ctx)
    if ctx.node.target._opname == "logical_not" or odt == torch.bool:
        return pointwise(ctx, Op.NOT, [x], cdt=torch.bool, out_kind_dtype=torch.bool)
    return pointwise(ctx, Op.BITWISE_NOT, [x])


def _alpha(ctx, b, alpha):
    if alpha is None or alpha == 1:
        return b
    shape, odt = meta(ctx)
    bt = as_tv(ctx, b)
    a = ir.const(alpha, odt)
    return lazy(bt.shape, odt, lambda idx: E(Op.MUL, odt, (cast(bt.load(idx), odt), a)))


@register(aten.add.Tensor, aten.add.Scalar)
def _add(ctx, a, b, alpha=None):
    return pointwise(ctx, Op.ADD, [a, _alpha(ctx, b, alpha)])


@register(aten.sub.Tensor, aten.sub.Scalar)
def _sub(ctx, a, b, alpha=None):
    return pointwise(ctx, Op.SUB, [a, _alpha(ctx, b, alpha)])


@register(aten.rsub.Scalar, aten.rsub.Tensor)
def _rsub(ctx, a, b, alpha=None):
    return pointwise(ctx, Op.SUB, [b, _alpha(ctx, a, alpha)])


@register(aten.mul.Tensor, aten.mul.Scalar)
def _mul(ctx, a, b):
    return pointwise(ctx, Op.MUL, [a, b])


@register(aten.div.Tensor, aten.div.Scalar)
def _div(ctx, a, b):
    return pointwise(ctx, Op.DIV, [a, b])


@register(aten.div.Tensor_mode, aten.div.Scalar_mode)
def _div_mode(ctx, a, b, rounding_mode=None):
    shape, odt = meta(ctx)
    if rounding_mode is None:
        return pointwise(ctx, Op.DIV, [a, b])
    if odt.is_floating_point:
        q = pointwise(ctx, Op.DIV, [a, b])
        return lazy(shape, odt, lambda idx: E(Op(rounding_mode), odt, (q.load(idx),)))
    return pointwise(ctx, Op.TRUNCDIV if rounding_mode == "trunc" else Op.FLOORDIV, [a, b])


@register(aten.floor_divide.default, aten.floor_divide.Scalar)
def _floordiv(ctx, a, b):
    shape, odt = meta(ctx)
    if odt.is_floating_point:
        q = pointwise(ctx, Op.DIV, [a, b])
        return lazy(shape, odt, lambda idx: E(Op.FLOOR, odt, (q.load(idx),)))
    return pointwise(ctx, Op.FLOORDIV, [a, b])


for _op, _k in [(aten.maximum, Op.MAXIMUM), (aten.minimum, Op.MINIMUM), (aten.fmax, Op.FMAX),
                (aten.fmin, Op.FMIN), (aten.fmod, Op.FMOD), (aten.remainder, Op.REMAINDER),
                (aten.atan2, Op.ATAN2), (aten.copysign, Op.COPYSIGN), (aten.hypot, Op.HYPOT)]:
    register(_op)((lambda k: lambda ctx, a, b: pointwise(ctx, k, [a, b]))(_k))

# on bools the bitwise ops are the logical ones
_LOGICAL = {Op.BITWISE_AND: Op.AND, Op.BITWISE_OR: Op.OR, Op.BITWISE_XOR: Op.XOR}
for _op, _k in [(aten.bitwise_and, Op.BITWISE_AND), (aten.bitwise_or, Op.BITWISE_OR),
                (aten.bitwise_xor, Op.BITWISE_XOR)]:
    def _bw(ctx, a, b, _k=_k):
        shape, odt = meta(ctx)
        if odt == torch.bool:
            return pointwise(ctx, _LOGICAL[_k], [a, b], cdt=torch.bool)
        return pointwise(ctx, _k, [a, b])

    register(_op)(_bw)

for _op, _k in [(aten.bitwise_left_shift, Op.LSHIFT), (aten.bitwise_right_shift, Op.RSHIFT)]:
    register(_op)((lambda k: lambda ctx, a, b: pointwise(ctx, k, [a, b]))(_k))

for _op, _k in [(aten.logical_and, Op.AND), (aten.logical_or, Op.OR), (aten.logical_xor, Op.XOR)]:
    register(_op.default)((lambda k: lambda ctx, a, b: pointwise(ctx, k, [a, b], cdt=torch.bool))(_k))

for _op, _k in [(aten.lt, Op.LT), (aten.le, Op.LE), (aten.gt, Op.GT), (aten.ge, Op.GE),
                (aten.eq, Op.EQ), (aten.ne, Op.NE)]:
    def _cmp(ctx, a, b, _k=_k):
        _check_inputs([a, b])
        return pointwise(ctx, _k, [a, b], cdt=promote([a, b]), out_kind_dtype=torch.bool)

    register(_op.Tensor, _op.Scalar)(_cmp)


@register(aten.pow.Tensor_Scalar)
def _pow_scalar(ctx, x, p):
    shape, odt = meta(ctx)
    xt = broadcast_to(as_tv(ctx, x), shape)
    if isinstance(p, (int, float)) and not isinstance(p, bool):
        fp = float(p)
        if odt.is_floating_point:
            special = {2.0: lambda e: E(Op.MUL, odt, (e, e)),
                       3.0: lambda e: E(Op.MUL, odt, (E(Op.MUL, odt, (e, e)), e)),
                       1.0: lambda e: e, 0.5: lambda e: E(Op.SQRT, odt, (e,)),
                       -0.5: lambda e: E(Op.RSQRT, odt, (e,)),
                       -1.0: lambda e: E(Op.RECIPROCAL, odt, (e,)),
                       0.0: lambda e: ir.const(1.0, odt)}
            if fp in special:
                f = special[fp]
                return lazy(shape, odt, lambda idx: f(cast(xt.load(idx), odt)))
        elif fp == 2.0:
            return lazy(shape, odt, lambda idx: E(Op.MUL, odt, (cast(xt.load(idx), odt),) * 2))
    return pointwise(ctx, Op.POW, [x, p])


@register(aten.pow.Tensor_Tensor, aten.pow.Scalar)
def _pow(ctx, a, b):
    return pointwise(ctx, Op.POW, [a, b])


@register(aten.where.self, aten.where.ScalarSelf, aten.where.ScalarOther, aten.where.Scalar)
def _where(ctx, c, a, b):
    shape, odt = meta(ctx)
    _check_inputs([c, a, b])
    ct, at, bt = (broadcast_to(as_tv(ctx, v), shape) for v in (c, a, b))

    def fn(idx):
        return E(Op.WHERE, odt, (cast(ct.load(idx), torch.bool), cast(at.load(idx), odt),
                                cast(bt.load(idx), odt)))

    return lazy(shape, odt, fn)


@register(aten.clamp.default, aten.clamp.Tensor, aten.clamp_min.default, aten.clamp_max.default,
          aten.clamp_min.Tensor, aten.clamp_max.Tensor)
def _clamp(ctx, x, lo=None, hi=None):
    name = ctx.node.target._opname
    if name == "clamp_max":
        lo, hi = None, lo
    shape, odt = meta(ctx)
    _check_inputs([x, lo, hi])
    xt = broadcast_to(as_tv(ctx, x), shape)
    lt = broadcast_to(as_tv(ctx, lo), shape) if lo is not None else None
    ht = broadcast_to(as_tv(ctx, hi), shape) if hi is not None else None

    # the bound first: NaN from either side and, on ties (0.0 vs -0.0), x,
    # as eager's kernels with a scalar bound (with a tensor bound eager gives
    # the bound); with a constant bound the compiler folds the bound's NaN
    # test away, leaving one compare-and-select (vmaxps)
    def fn(idx):
        e = cast(xt.load(idx), odt)
        if lt is not None:
            e = make(Op.MAXIMUM, odt, (cast(lt.load(idx), odt), e))
        if ht is not None:
            e = make(Op.MINIMUM, odt, (cast(ht.load(idx), odt), e))
        return e

    return lazy(shape, odt, fn)


@register(aten.gelu.default)
def _gelu(ctx, x, approximate="none"):
    """The formulas of torch's decomposition; at +-inf the exact form is NaN
    in float32, as eager's vectorised kernel gives (float64 eager: +inf)."""
    shape, odt = meta(ctx)
    if not odt.is_floating_point or approximate not in ("none", "tanh"):
        raise NotImplementedError
    xt = broadcast_to(as_tv(ctx, x), shape)

    def c(v):
        return ir.const(v, odt)

    def fn(idx):
        v = cast(xt.load(idx), odt)
        if approximate == "tanh":
            cube = E(Op.MUL, odt, (E(Op.MUL, odt, (v, v)), v))
            inner = E(Op.MUL, odt, (c(1.41421356237309504880 * 1.12837916709551257390 * 0.5), E(Op.ADD, odt, (v, E(Op.MUL, odt, (c(0.044715), cube))))))
            return E(Op.MUL, odt, (E(Op.MUL, odt, (v, c(0.5))), E(Op.ADD, odt, (c(1.0), E(Op.TANH, odt, (inner,))))))
        cdf = E(Op.ADD, odt, (c(1.0), E(Op.ERF, odt, (E(Op.MUL, odt, (v, c(0.7071067811865476))),))))
        y = E(Op.MUL, odt, (E(Op.MUL, odt, (v, c(0.5))), cdf))
        if odt == torch.float32:
            y = E(Op.WHERE, odt, (E(Op.ISINF, torch.bool, (v,)), c(float("nan")), y))
        return y

    return lazy(shape, odt, fn)


# ------------------------------------------------------------------ creation
def _fill(ctx, value):
    shape, odt = meta(ctx)
    if isinstance(value, TV):
        raise NotImplementedError
    if isinstance(value, torch.SymInt):
        t = as_tv(ctx, value)
        return lazy(shape, odt, lambda idx: cast(t.load([]), odt))
    c = ir.const(value, odt)
    return lazy(shape, odt, lambda idx: c)


@register(aten.full.default)
def _full(ctx, size, value, **kw):
    return _fill(ctx, value)


@register(aten.full_like.default)
def _full_like(ctx, x, value, **kw):
    return _fill(ctx, value)


@register(aten.scalar_tensor.default)
def _scalar_tensor(ctx, value, **kw):
    return _fill(ctx, value)


@register(aten.zeros.default, aten.zeros_like.default, aten.new_zeros.default,
          aten.empty.memory_format, aten.empty_like.default, aten.new_empty.default,
          aten.empty_strided.default, aten.new_empty_strided.default)
def _zeros(ctx, *a, **kw):
    return _fill(ctx, 0)


@register(aten.ones.default, aten.ones_like.default, aten.new_ones.default)
def _ones(ctx, *a, **kw):
    return _fill(ctx, 1)


@register(aten.new_full.default)
def _new_full(ctx, x, size, value, **kw):
    return _fill(ctx, value)


@register(aten.arange.start_step, aten.arange.start, aten.arange.default)
def _arange(ctx, *args, **kw):
    shape, odt = meta(ctx)
    vals = list(args)
    if len(vals) == 1:
        vals = [0, vals[0], 1]
    elif len(vals) == 2:
        vals = [vals[0], vals[1], 1]
    start, _, step = vals[:3]
    if any(isinstance(v, (TV, torch.SymInt, torch.SymFloat)) for v in (start, step)):
        raise NotImplementedError

    def fn(idx):
        i = E(Op.INDEX, torch.int64, (), idx[0])
        if odt.is_floating_point:
            return E(Op.ADD, odt, (E(Op.MUL, odt, (cast(i, odt), ir.const(step, odt))), ir.const(start, odt)))
        return cast(E(Op.ADD, torch.int64, (E(Op.MUL, torch.int64, (i, ir.const(step, torch.int64))),
                                           ir.const(start, torch.int64))), odt)

    return lazy(shape, odt, fn)


@register(prims.iota.default)
def _iota(ctx, length, *, start, step, dtype, device, requires_grad):
    return _arange(ctx, start, start + step * length, step)


# ------------------------------------------------------------------ copies and casts
@register(aten._to_copy.default)
def _to_copy(ctx, x, **kw):
    v = ctx.node.meta.get("val")
    if not isinstance(x, TV) or v is None or v.device.type != "cpu" and "device" in kw:
        return None
    shape, odt = meta(ctx)
    _check_inputs([x])
    return lazy(shape, odt, lambda idx: cast(x.load(idx), odt))


@register(aten.alias.default, aten.lift_fresh_copy.default, aten.detach.default,
          aten.contiguous.default, prims.view_of.default, aten.positive.default)
def _identity(ctx, x, **kw):
    return x if isinstance(x, TV) else None


_NHWC = (torch.channels_last, torch.channels_last_3d)


@register(aten.clone.default)
def _clone(ctx, x, memory_format=None):
    """A value (views are index maps, so its layout is free), except that a
    channels-last clone is stored channels-last: it is asked for to hand a
    library call (a convolution) that layout."""
    if not isinstance(x, TV):
        return None
    v = ctx.node.meta.get("val")
    if memory_format not in _NHWC or not isinstance(v, torch.Tensor):
        return x
    if x.is_view and tuple(x.strides) == tuple(sz(s) for s in v.stride()):
        return x
    y = lazy(x.shape, x.dtype, x.load)
    y.traced = v
    return ctx.realize(y)


@register(aten.copy.default)
def _copy(ctx, dst, src, non_blocking=False):
    shape, odt = meta(ctx)
    s = broadcast_to(as_tv(ctx, src), shape)
    return lazy(shape, odt, lambda idx: cast(s.load(idx), odt))


# ------------------------------------------------------------------ views
@register(aten.view.default, aten._unsafe_view.default, aten.reshape.default, aten.view_copy.default)
def _view(ctx, x, size):
    if not isinstance(x, TV) or x.dtype not in NATIVE:
        return None
    return reshape(ctx, x, [sz(s) if not (isinstance(s, int) and s == -1) else -1 for s in size])


@register(aten.permute.default, aten.permute_copy.default)
def _permute(ctx, x, dims):
    return permute(x, dims)


@register(aten.t.default)
def _t(ctx, x):
    return permute(x, [1, 0]) if x.ndim == 2 else x


@register(aten.transpose.int)
def _transpose(ctx, x, a, b):
    if x.ndim < 2:
        return x
    p = list(range(x.ndim))
    a, b = a % x.ndim, b % x.ndim
    p[a], p[b] = p[b], p[a]
    return permute(x, p)


@register(aten.expand.default, aten.expand_copy.default)
def _expand(ctx, x, size, implicit=False):
    lead = len(size) - x.ndim
    shape = []
    for i, s in enumerate(size):
        if isinstance(s, int) and s == -1:
            shape.append(x.shape[i - lead])
        else:
            shape.append(sz(s))
    return broadcast_to(x, shape)


@register(aten.unsqueeze.default, aten.unsqueeze_copy.default)
def _unsqueeze(ctx, x, dim):
    return unsqueeze(x, dim % (x.ndim + 1))


@register(aten.squeeze.default, aten.squeeze.dim, aten.squeeze.dims, aten.squeeze_copy.dims)
def _squeeze(ctx, x, dims=None):
    if dims is None:
        dims = list(range(x.ndim))
    elif isinstance(dims, int):
        dims = [dims]
    return squeeze_dims(x, dims)


@register(aten.slice.Tensor, aten.slice_copy.Tensor)
def _slice(ctx, x, dim=0, start=None, end=None, step=1):
    dim %= x.ndim
    n = x.shape[dim]
    s = clamp_index(ctx, start, n, 0)
    e = clamp_index(ctx, end, n, n)
    if less(ctx, e, s):
        e = s
    return slice_(x, dim, s, e, step)


@register(aten.select.int, aten.select_copy.int)
def _select(ctx, x, dim, index):
    dim %= x.ndim
    index = sz(index)
    # a negative index counts from the end, also when it or the size is
    # symbolic (torch decided the sign on the trace's sizes and guarded it)
    if less(ctx, index, 0):
        index = sz(index + x.shape[dim])
    return select(x, dim, index)


@register(aten.split.Tensor, aten.split_with_sizes.default)
def _split(ctx, x, sizes, dim=0):
    dim %= x.ndim
    n = x.shape[dim]
    if isinstance(sizes, int):
        if not isinstance(n, int):
            raise NotImplementedError
        sizes = [min(sizes, n - i) for i in range(0, n, sizes)]
    out = []
    off = 0
    for s in sizes:
        s = sz(s)
        out.append(slice_(x, dim, off, off + s, 1))
        off = off + s
    return out


@register(aten.unbind.int)
def _unbind(ctx, x, dim=0):
    dim %= x.ndim
    n = x.shape[dim]
    if not isinstance(n, int):
        raise NotImplementedError
    return [select(x, dim, i) for i in range(n)]


@register(aten.as_strided.default)
def _as_strided(ctx, x, size, stride, storage_offset=None):
    if not x.is_view or x.buf.kind != "input":
        return None
    v = ctx.node.args[0].meta.get("val")
    base = 0
    if isinstance(v, torch.Tensor) and x.buf.offset == 0:
        base = sz(v.storage_offset())
    off = x.offset if storage_offset is None else sz(storage_offset) - base
    return TV([sz(s) for s in size], x.dtype, buf=x.buf, strides=[sz(s) for s in stride], offset=off)


def mask_loads(expr, mask):
    """``expr`` with every load guarded by ``mask`` (reads nothing when false),
    for cat/pad branches whose indices are out of range where not selected."""
    def visit(e, rec):
        if e.kind == Op.LOAD:
            return E(Op.MLOAD, e.dtype, (mask,), e.aux)
        if e.kind == Op.MLOAD:
            return E(Op.MLOAD, e.dtype, (E(Op.AND, torch.bool, (mask, e.args[0])),), e.aux)
        return None

    return ir.transform(expr, visit)


def _in_range(i, lo, hi):
    """bool expression lo <= i < hi (either bound may be None)."""
    iv = E(Op.INDEX, torch.int64, (), i)
    conds = []
    if lo is not None:
        conds.append(E(Op.GE, torch.bool, (iv, _int_e(lo))))
    if hi is not None:
        conds.append(E(Op.LT, torch.bool, (iv, _int_e(hi))))
    c = conds[0]
    for x in conds[1:]:
        c = E(Op.AND, torch.bool, (c, x))
    return c


def _int_e(v):
    if isinstance(v, int):
        return ir.const(v, torch.int64)
    return E(Op.SYM, torch.int64, (), v)


CAT_FUSE_MAX = 4
CAT_SLICES_MAX = 8


@register(aten.cat.default)
def _cat(ctx, tensors, dim=0):
    shape, odt = meta(ctx)
    tvs = [t for t in tensors if not (t.ndim == 1 and isinstance(t.shape[0], int) and t.shape[0] == 0 and len(shape) != 1)]
    dim %= len(shape)
    if len(tvs) == 1:
        return lazy(shape, odt, lambda idx: cast(tvs[0].load(idx), odt))
    if len(tvs) > CAT_FUSE_MAX:
        # every element of a fused cat evaluates one masked load per input:
        # past a few inputs each input is computed into its slice of one
        # buffer instead (a TreeLSTM's five gate gradients); past a few more
        # (an RNN's torch.stack of its 32 states, built in 32 kernels) the
        # library's copy of each slab measured faster, and g++ took twice as
        # long on the kernels writing the slices
        if len(tvs) > CAT_SLICES_MAX:
            return None
        return ctx.cat_into(tvs, dim, shape, odt)
    offs = [0]
    for t in tvs:
        offs.append(offs[-1] + t.shape[dim])

    def fn(idx):
        e = None
        for k in reversed(range(len(tvs))):
            sub = list(idx)
            sub[dim] = idx[dim] + (-offs[k])
            lo = offs[k] if k > 0 else None
            hi = offs[k + 1] if k < len(tvs) - 1 else None
            v = cast(tvs[k].load(sub), odt)
            cond = _in_range(idx[dim], lo, hi)
            v = mask_loads(v, cond)
            e = v if e is None else E(Op.WHERE, odt, (E(Op.LT, torch.bool, (E(Op.INDEX, torch.int64, (), idx[dim]), _int_e(offs[k + 1]))), v, e))
        return e

    return lazy(shape, odt, fn)


@register(aten.constant_pad_nd.default)
def _pad(ctx, x, pad, value=0):
    shape, odt = meta(ctx)
    pads = {}
    for i in range(len(pad) // 2):
        pads[x.ndim - 1 - i] = (sz(pad[2 * i]), sz(pad[2 * i + 1]))
    fill = ir.const(value, odt)

    def fn(idx):
        sub = list(idx)
        cond = None
        for d, (left, _) in pads.items():
            sub[d] = idx[d] + (-left)
            c = _in_range(sub[d], 0, x.shape[d])
            cond = c if cond is None else E(Op.AND, torch.bool, (cond, c))
        v = cast(x.load(sub), odt)
        if cond is None:
            return v
        return E(Op.WHERE, odt, (cond, mask_loads(v, cond), fill))

    return lazy(shape, odt, fn)


def _safe_index(iv, n):
    """A gathered index clamped into [0, n).  Out-of-range indices are an
    error in eager, which the range check before the kernel raises
    (``ctx.check_index``); the clamp keeps the kernel inside the buffer
    should it ever run on unchecked indices."""
    iv = cast(iv, torch.int64)
    hi = ir.const(n - 1, torch.int64) if isinstance(n, int) else E(
        Op.SUB, torch.int64, (E(Op.SYM, torch.int64, (), n), ir.const(1, torch.int64)))
    return E(Op.MINIMUM, torch.int64, (E(Op.MAXIMUM, torch.int64, (iv, ir.const(0, torch.int64))), hi))


def _nll_target(idx):
    """``(t, ignore)`` where the index ``idx`` (an fx node) is torch's
    decomposition of ``nll_loss``'s class targets ``t`` with ignored ones
    replaced by 0 -- ``unsqueeze(where(ne(t, ignore), t, 0), d)`` as the loss
    gathers with it, ``where(ne(u, ignore), u, 0)`` of ``u = unsqueeze(t, d)``
    as its backward scatters with it; else None.  Eager's loss raises its
    own error for a target out of range."""
    w = idx
    if isinstance(w, torch.fx.Node) and w.target is aten.unsqueeze.default:
        w = w.args[0]
    if not (isinstance(w, torch.fx.Node) and w.target is aten.where.self and len(w.args) == 3):
        return None
    cond, t, zero = w.args
    if not (isinstance(cond, torch.fx.Node) and cond.target is aten.ne.Scalar
            and cond.args[0] is t and isinstance(t, torch.fx.Node)):
        return None
    ignore = cond.args[1]
    if type(ignore) is not int:
        return None
    if isinstance(zero, torch.fx.Node):  # a scalar tensor 0
        if zero.target is not aten.scalar_tensor.default or zero.args[0] != 0:
            return None
    elif zero != 0:
        return None
    return t, ignore


def _check_index(ctx, index, x, dim, op):
    """``ctx.check_index`` for the index argument (``ctx.node.args[2]``) of
    a gather or scatter: an ``nll_loss`` target index is checked on the
    targets themselves (the index stays lazy: loaded as the ``where`` in the
    consuming kernel, no index buffer of its own), else the index."""
    nll = _nll_target(ctx.node.args[2] if len(ctx.node.args) > 2 else None)
    if nll is not None:
        t = ctx.env.get(nll[0])
        if isinstance(t, TV) and t.is_view:
            ctx.check_index(t, x.shape, dim, "nll_loss", ignore=nll[1])
            return index
    return ctx.check_index(index, x.shape, dim, op)


@register(aten.gather.default)
def _gather(ctx, x, dim, index, sparse_grad=False):
    shape, odt = meta(ctx)
    if not isinstance(x, TV) or not isinstance(index, TV) or x.ndim == 0:
        return None
    dim %= x.ndim
    index = _check_index(ctx, index, x, dim, "gather")

    def fn(idx):
        iv = _safe_index(index.load(idx), x.shape[dim])
        sub = list(idx)
        sub[dim] = Affine(0, ((iv, 1),))
        return cast(x.load(sub), odt)

    return lazy(shape, odt, fn)


@register(aten.scatter.value)
def _scatter_value(ctx, x, dim, index, value):
    """``x`` with ``value`` where some index along ``dim`` names the position
    (a one-hot, as in cross-entropy's backward): a select per element, for a
    few static indices per row; other shapes stay a library call."""
    shape, odt = meta(ctx)
    if not isinstance(x, TV) or not isinstance(index, TV) or isinstance(value, TV) \
            or x.ndim == 0 or index.ndim != x.ndim:
        return None
    dim %= x.ndim
    k = index.shape[dim]
    if not isinstance(k, int) or not 1 <= k <= 8:
        return None
    from .tensor_values import size_eq
    if not all(size_eq(index.shape[d], x.shape[d]) for d in range(x.ndim) if d != dim):
        return None
    v = ir.const(value, odt)
    # (an out-of-range index would only be missed by the comparisons; eager raises)
    index = _check_index(ctx, index, x, dim, "scatter")

    def fn(idx):
        pos = E(Op.INDEX, torch.int64, (), idx[dim])
        hit = None
        for j in range(k):
            sub = list(idx)
            sub[dim] = Affine(j)
            c = E(Op.EQ, torch.bool, (cast(index.load(sub), torch.int64), pos))
            hit = c if hit is None else E(Op.OR, torch.bool, (hit, c))
        return E(Op.WHERE, odt, (hit, v, cast(x.load(idx), odt)))

    return lazy(shape, odt, fn)


@register(aten.index_select.default)
def _index_select(ctx, x, dim, index):
    shape, odt = meta(ctx)
    if not isinstance(x, TV) or not isinstance(index, TV) or x.ndim == 0 or index.ndim > 1:
        return None
    dim %= x.ndim
    index = ctx.check_index(index, x.shape, dim, "index_select")

    def fn(idx):
        iv = _safe_index(index.load([idx[dim]] if index.ndim else []), x.shape[dim])
        sub = list(idx)
        sub[dim] = Affine(0, ((iv, 1),))
        return cast(x.load(sub), odt)

    return lazy(shape, odt, fn)


@register(prims.squeeze.default)
def _prims_squeeze(ctx, x, dims):
    return squeeze_dims(x, dims)

