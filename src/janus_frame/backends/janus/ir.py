"""The loop-level IR of the fusing backend.

In: nothing (lowering builds it). Out: a :class:`Program` of buffers and nodes:

- :class:`Buffer` -- a named allocation with shape/strides/dtype and a kind
  (``input``, ``output``, ``temp``, ``extern``, ``sym``).  Sizes and strides are
  ints, or sympy expressions over the graph's symbolic sizes.
- :class:`Affine` -- an index expression ``offset + sum(coeff * var)``; views
  (permute, expand, slice, select, reshape that splits dims) are compositions
  of these index maps, never copies.
- :class:`E` -- a scalar expression DAG whose ``kind`` is an :class:`Op`:
  leaves ``load`` (buffer + Affine index), ``const``, ``index`` (the value of
  an Affine), ``sym`` (a size symbol), and arithmetic/transcendental ops.
  Every ``E`` carries its dtype.
- Nodes: :class:`Pointwise` (ranges + expression, stored contiguously into its
  buffer), :class:`Reduction` (outer ranges, reduction ranges, a
  :class:`Reduce` kind and the expression of its input), :class:`Extern` (an
  aten call on realized buffers).

Also the tables both code generators render: :data:`COMPUTE_OPS` (with
:data:`ARITY`) and :data:`REDUCTIONS` (identity, combine op and NaN rule of
every reduction).  ``Program.format()`` prints a program; :func:`verify.loop_ir`
checks its invariants.
"""
from __future__ import annotations

import dataclasses
import enum
import math

import torch

class Op(enum.StrEnum):
    """What an :class:`E` node computes.  The leaves (``CONST`` ... ``SYM``)
    carry their payload in ``E.aux``; every other op is a scalar function of
    ``E.args``, printed by each code generator from its render table
    (``codegen.c.expr.C_OPS``, ``codegen.triton_ops.TRITON_OPS``; a test
    checks that both cover :data:`COMPUTE_OPS`).  The values are the names
    the IR printer shows (a StrEnum: ``Op.ADD == "add"``)."""

    # leaves
    CONST = "const"  # aux: the python value
    LOAD = "load"  # aux: (buffer name, Affine index)
    MLOAD = "mload"  # a load where the bool args[0] holds, else 0; aux as LOAD
    INDEX = "index"  # aux: an Affine, its value as a number
    SYM = "sym"  # aux: a sympy size expression
    # unary
    NEG = "neg"
    EXP = "exp"
    EXP2 = "exp2"
    EXPM1 = "expm1"
    LOG = "log"
    LOG2 = "log2"
    LOG10 = "log10"
    LOG1P = "log1p"
    TANH = "tanh"
    SIGMOID = "sigmoid"
    ERF = "erf"
    ERFC = "erfc"
    SQRT = "sqrt"
    RSQRT = "rsqrt"
    RECIPROCAL = "reciprocal"
    ABS = "abs"
    SIGN = "sign"
    FLOOR = "floor"
    CEIL = "ceil"
    ROUND = "round"
    TRUNC = "trunc"
    SIN = "sin"
    COS = "cos"
    TAN = "tan"
    ASIN = "asin"
    ACOS = "acos"
    ATAN = "atan"
    SINH = "sinh"
    COSH = "cosh"
    ASINH = "asinh"
    ACOSH = "acosh"
    ATANH = "atanh"
    RELU = "relu"
    ISNAN = "isnan"
    ISINF = "isinf"
    ISFINITE = "isfinite"
    SIGNBIT = "signbit"
    NOT = "not"
    BITWISE_NOT = "bitwise_not"
    CAST = "cast"  # to E.dtype
    # binary
    ADD = "add"
    SUB = "sub"
    MUL = "mul"
    DIV = "div"
    TRUNCDIV = "truncdiv"  # integers: C's division
    FLOORDIV = "floordiv"  # integers: Python's
    REMAINDER = "remainder"  # the sign of the divisor (Python's %)
    FMOD = "fmod"  # the sign of the dividend (C's %)
    POW = "pow"
    MAXIMUM = "maximum"  # NaN from either side
    MINIMUM = "minimum"
    FMAX = "fmax"  # NaN only when both are
    FMIN = "fmin"
    ATAN2 = "atan2"
    COPYSIGN = "copysign"
    HYPOT = "hypot"
    LT = "lt"
    LE = "le"
    GT = "gt"
    GE = "ge"
    EQ = "eq"
    NE = "ne"
    AND = "and"  # logical, on bools
    OR = "or"
    XOR = "xor"
    BITWISE_AND = "bitwise_and"
    BITWISE_OR = "bitwise_or"
    BITWISE_XOR = "bitwise_xor"
    LSHIFT = "lshift"
    RSHIFT = "rshift"
    # ternary
    WHERE = "where"


LEAF_KINDS = frozenset({Op.CONST, Op.LOAD, Op.INDEX, Op.SYM})  # (a MLOAD has an argument)
TERNARY_OPS = frozenset({Op.WHERE})
# (in declaration order: the leaves, the unary ops, the binary ones, WHERE)
UNARY_OPS = frozenset(list(Op)[list(Op).index(Op.NEG):list(Op).index(Op.ADD)])
BINARY_OPS = frozenset(list(Op)[list(Op).index(Op.ADD):list(Op).index(Op.WHERE)])
COMPUTE_OPS = UNARY_OPS | BINARY_OPS | TERNARY_OPS  # what the render tables must cover
ARITY = {**{op: 1 for op in UNARY_OPS}, **{op: 2 for op in BINARY_OPS}, **{op: 3 for op in TERNARY_OPS}}
PREDICATES = frozenset({Op.LT, Op.LE, Op.GT, Op.GE, Op.EQ, Op.NE, Op.AND, Op.OR, Op.XOR, Op.NOT,
                        Op.ISNAN, Op.ISINF, Op.ISFINITE, Op.SIGNBIT})  # produce bool
TRANSCENDENTAL = frozenset({Op.EXP, Op.EXP2, Op.EXPM1, Op.LOG, Op.LOG2, Op.LOG10, Op.LOG1P, Op.TANH,
                            Op.SIGMOID, Op.ERF, Op.ERFC, Op.POW, Op.SIN, Op.COS, Op.TAN, Op.ATAN,
                            Op.ATAN2, Op.ASIN, Op.ACOS})


class Reduce(enum.StrEnum):
    """The reduction a :class:`Reduction` node computes (its ``rtype``); what
    each one means is :data:`REDUCTIONS`."""

    SUM = "sum"
    PROD = "prod"
    MAX = "max"
    MIN = "min"
    ARGMAX = "argmax"
    ARGMIN = "argmin"
    ANY = "any"
    ALL = "all"
    # the mean and the sum of squared deviations from it (M2), both by
    # Welford's single-pass update; a pair over one expression shares the work
    WMEAN = "wmean"
    WM2 = "wm2"


class NaN(enum.Enum):
    """How a reduction treats NaN, which its combine op may not carry."""

    ARITHMETIC = "the combine op propagates it (sum, prod, Welford)"
    STICKY = "a NaN anywhere makes the result NaN; compare-and-select drops it, so a flag keeps it"
    FIRST = "an arg-reduction's result is the first NaN's position"
    TRUTH = "the input is reduced as (x != 0): NaN counts as true"


@dataclasses.dataclass(frozen=True)
class ReductionKind:
    """One entry of :data:`REDUCTIONS`: ``combine`` (the op folding a value
    into the accumulator; MAXIMUM/MINIMUM as compare-and-select), ``identity``
    (0 or 1 as a literal, else a function of the input dtype giving its
    extreme), ``nan`` (:class:`NaN`), ``index`` (the result is the position of
    the extremum, int64), ``welford`` (mean / M2, computed together)."""

    combine: Op
    identity: object
    nan: NaN
    index: bool = False
    welford: bool = False

    def identity_value(self, dtype):
        return self.identity(dtype) if callable(self.identity) else self.identity


def prod(sizes):
    p = 1
    for s in sizes:
        p = p * s
    return p


class Affine:
    """``offset + sum(coeff * var)``; vars are loop-variable names."""

    __slots__ = ("offset", "terms", "_key")

    def __init__(self, offset=0, terms=()):
        # drop zero coefficients; keep terms sorted so equal maps compare equal.
        # A var is a loop-variable name, or an int64 E (data-dependent index,
        # e.g. gather): those sort after names, by identity.
        t = tuple(sorted(((v, c) for v, c in terms if not (isinstance(c, int) and c == 0)),
                         key=_term_key))
        self.offset = offset
        self.terms = t
        self._key = (offset, t)

    @staticmethod
    def var(name):
        return Affine(0, ((name, 1),))

    def __add__(self, other):
        if not isinstance(other, Affine):
            return Affine(self.offset + other, self.terms)
        d = dict(self.terms)
        for v, c in other.terms:
            d[v] = d.get(v, 0) + c
        return Affine(self.offset + other.offset, d.items())

    def scale(self, k):
        return Affine(self.offset * k, [(v, c * k) for v, c in self.terms])

    def subst(self, mapping):
        """Replace vars by Affines (``mapping``: var -> Affine); unmapped vars stay."""
        out = Affine(self.offset)
        for v, c in self.terms:
            if not isinstance(v, str):
                out = out + Affine(0, ((subst_vars(v, mapping), c),))
            else:
                out = out + (mapping[v].scale(c) if v in mapping else Affine(0, ((v, c),)))
        return out

    def rename(self, mapping):
        return Affine(self.offset, [(mapping.get(v, v) if isinstance(v, str) else rename_vars(v, mapping), c)
                                    for v, c in self.terms])

    def dynamic_terms(self):
        return [(v, c) for v, c in self.terms if not isinstance(v, str)]

    def coeff(self, v):
        for name, c in self.terms:
            if name == v:
                return c
        return 0

    def vars(self):
        return [v for v, _ in self.terms if isinstance(v, str)]

    def __eq__(self, other):
        return isinstance(other, Affine) and self._key == other._key

    def __hash__(self):
        return hash(self._key)

    def __repr__(self):
        parts = []
        for v, c in self.terms:
            name = v if isinstance(v, str) else "(" + format_expr(v) + ")"
            parts.append(name if (isinstance(c, int) and c == 1) else f"{c}*{name}")
        if not (isinstance(self.offset, int) and self.offset == 0) or not parts:
            parts.append(str(self.offset))
        return " + ".join(parts)


def _term_key(t):
    v = t[0]
    return (0, v, 0) if isinstance(v, str) else (1, "", id(v))


class E:
    """One scalar expression node.  ``kind`` is an :class:`Op`; ``aux`` holds
    the leaf payload (const value, (buffer, Affine), Affine, sympy symbol)
    or, for ``cast``, nothing (the target is ``dtype``)."""

    __slots__ = ("kind", "dtype", "args", "aux", "_h")

    def __init__(self, kind, dtype, args=(), aux=None):
        self.kind = kind
        self.dtype = dtype
        self.args = tuple(args)
        self.aux = aux
        self._h = None

    def key(self):
        aux = self.aux
        if self.kind == Op.CONST:
            v = aux
            # distinguish 0.0 from -0.0 and NaN from itself
            aux = (type(v).__name__, repr(v))
        return (self.kind, self.dtype, aux, tuple(id(a) for a in self.args))

    def __repr__(self):
        return format_expr(self)


def const(value, dtype):
    if dtype.is_floating_point:
        value = float(value)
    elif dtype == torch.bool:
        value = bool(value)
    else:
        value = int(value)
    return E(Op.CONST, dtype, (), value)


def load(buf, index, dtype):
    return E(Op.LOAD, dtype, (), (buf, index))


def walk(expr):
    """Every node of the DAG once, children before parents."""
    seen = set()
    order = []
    stack = [(expr, False)]
    while stack:
        e, done = stack.pop()
        if done:
            order.append(e)
            continue
        if id(e) in seen:
            continue
        seen.add(id(e))
        stack.append((e, True))
        for a in reversed(children(e)):
            if id(a) not in seen:
                stack.append((a, False))
    return order


def children(e):
    """Operands, plus the data-dependent index terms of loads/index values."""
    if e.kind in (Op.LOAD, Op.MLOAD):
        dyn = [v for v, _ in e.aux[1].terms if not isinstance(v, str)]
        return list(e.args) + dyn if dyn else e.args
    if e.kind == Op.INDEX:
        return [v for v, _ in e.aux.terms if not isinstance(v, str)]
    return e.args


def loads_of(expr):
    """Loads (plain and masked) of ``expr``."""
    return [e for e in walk(expr) if e.kind in (Op.LOAD, Op.MLOAD)]


def transform(expr, visit, memo=None):
    """A copy of ``expr``, made bottom-up and once per shared node:
    ``visit(e, rec)`` gives node ``e``'s replacement (``rec`` maps one of its
    children), or None for a copy over its mapped arguments."""
    if memo is None:
        memo = {}

    def rec(e):
        out = memo.get(id(e))
        if out is None:
            out = visit(e, rec)
            if out is None:
                out = E(e.kind, e.dtype, [rec(a) for a in e.args], e.aux) if e.args else e
            memo[id(e)] = out
        return out

    return rec(expr)


def map_indices(expr, fn, memo=None):
    """A copy of ``expr`` with every Affine index replaced by ``fn(index)``."""
    def visit(e, rec):
        if e.kind in (Op.LOAD, Op.MLOAD):
            return E(e.kind, e.dtype, [rec(a) for a in e.args], (e.aux[0], fn(e.aux[1])))
        if e.kind == Op.INDEX:
            return E(Op.INDEX, e.dtype, (), fn(e.aux))
        return None

    return transform(expr, visit, memo)


def subst_vars(expr, mapping, memo=None):
    """A copy of ``expr`` whose Affine indices have vars replaced by Affines."""
    return map_indices(expr, lambda idx: idx.subst(mapping), memo)


def rename_vars(expr, mapping, memo=None):
    """A copy of ``expr`` whose Affine indices have their vars renamed."""
    return map_indices(expr, lambda idx: idx.rename(mapping), memo)


def op_count(expr):
    return sum(1 for e in walk(expr) if e.kind not in LEAF_KINDS)


def format_expr(expr):
    names = {}
    lines = []
    for e in walk(expr):
        if e.kind == Op.CONST:
            s = repr(e.aux)
        elif e.kind == Op.LOAD:
            s = f"{e.aux[0]}[{e.aux[1]!r}]"
        elif e.kind == Op.MLOAD:
            s = f"{e.aux[0]}[{e.aux[1]!r}] if {names[id(e.args[0])]} else 0"
        elif e.kind == Op.INDEX:
            s = f"idx({e.aux!r})"
        elif e.kind == Op.SYM:
            s = f"sym({e.aux})"
        else:
            s = f"{e.kind}({', '.join(names[id(a)] for a in e.args)})"
        if e.kind in LEAF_KINDS and e is not expr:
            names[id(e)] = s
            continue
        n = f"t{len(lines)}"
        names[id(e)] = n
        lines.append(f"{n}:{str(e.dtype).replace('torch.', '')} = {s}")
    return "; ".join(lines) if lines else names[id(expr)]


class Buffer:
    """A named allocation.  ``kind``: input (graph argument), output (fresh
    per call), temp (workspace arena), extern (returned by a library call),
    view (an input or extern seen through ``base`` with offset/strides),
    scalar (a number a library call returns, ``_local_scalar_dense``: no
    memory; its value may define a size symbol)."""

    __slots__ = ("name", "shape", "strides", "dtype", "kind", "offset", "base", "index")

    def __init__(self, name, shape, strides, dtype, kind, offset=0, base=None, index=None):
        self.name = name
        self.shape = tuple(shape)
        self.strides = tuple(strides)
        self.dtype = dtype
        self.kind = kind
        self.offset = offset
        self.base = base
        self.index = index  # position among graph inputs / outputs

    @property
    def numel(self):
        return prod(self.shape)

    def __repr__(self):
        d = str(self.dtype).replace("torch.", "")
        return f"{self.name}: {self.kind} {d}{list(self.shape)} strides={list(self.strides)}"


def contiguous_strides(shape):
    st = []
    acc = 1
    for s in reversed(shape):
        st.append(acc)
        acc = acc * s
    return tuple(reversed(st))


class Node:
    __slots__ = ("name", "out")


class Pointwise(Node):
    """``out[store_index(v)] = expr(v)`` for v over ``ranges`` (vars ``v0..``)."""

    __slots__ = ("ranges", "expr", "store")

    def __init__(self, name, out, ranges, expr, store=None):
        self.name = name
        self.out = out
        self.ranges = tuple(ranges)
        self.expr = expr
        self.store = store if store is not None else store_index(out, ["v%d" % i for i in range(len(ranges))])

    @property
    def vars(self):
        return ["v%d" % i for i in range(len(self.ranges))]

    def reads(self):
        return {e.aux[0] for e in loads_of(self.expr)}

    def format(self):
        return f"{self.name} = pointwise{list(self.ranges)} -> {self.out.name}[{self.store!r}]: {format_expr(self.expr)}"


class Reduction(Node):
    """``out[store_index(v)] = reduce_{r}(expr(v, r))``: vars ``v0..`` over
    ``ranges`` (kept dims) and ``r0..`` over ``rranges`` (reduced dims).
    ``full_shape``/``red_axes`` record the input's iteration space so that
    pointwise nodes of that shape can join the same kernel."""

    __slots__ = ("ranges", "rranges", "rtype", "expr", "store", "full_shape", "red_axes")

    def __init__(self, name, out, ranges, rranges, rtype, expr, full_shape, red_axes):
        self.name = name
        self.out = out
        self.ranges = tuple(ranges)
        self.rranges = tuple(rranges)
        self.rtype = rtype
        self.expr = expr
        self.full_shape = tuple(full_shape)
        self.red_axes = tuple(red_axes)
        self.store = store_index(out, ["v%d" % i for i in range(len(ranges))], self.ranges)

    @property
    def vars(self):
        return ["v%d" % i for i in range(len(self.ranges))]

    @property
    def rvars(self):
        return ["r%d" % i for i in range(len(self.rranges))]

    @property
    def spec(self):
        """What the reduction is: its :class:`ReductionKind` in :data:`REDUCTIONS`."""
        return REDUCTIONS[self.rtype]

    def reads(self):
        return {e.aux[0] for e in loads_of(self.expr)}

    def format(self):
        return (f"{self.name} = {self.rtype}{list(self.ranges)}x{list(self.rranges)} -> "
                f"{self.out.name}[{self.store!r}]: {format_expr(self.expr)}")


class Extern(Node):
    """An aten call.  ``args``/``kwargs`` hold python values where tensors are
    replaced by :class:`BufArg`; ``outs`` are the buffers it returns (a tuple
    result gives one per tensor element, ``None`` for non-tensor elements)."""

    __slots__ = ("op", "args", "kwargs", "outs", "multi")

    def __init__(self, name, op, args, kwargs, outs, multi):
        self.name = name
        self.op = op
        self.args = args
        self.kwargs = kwargs
        self.outs = outs
        self.multi = multi
        self.out = outs[0] if outs else None

    def reads(self):
        names = set()

        def visit(a):
            if isinstance(a, BufArg):
                names.add(a.buf.name)
            elif isinstance(a, (list, tuple)):
                for x in a:
                    visit(x)

        visit(self.args)
        visit(list(self.kwargs.values()))
        return names

    def format(self):
        outs = ", ".join(o.name if o is not None else "_" for o in self.outs)
        return f"{self.name} = extern {self.op}({self.args!r}, {self.kwargs!r}) -> ({outs})"


def is_check(node) -> bool:
    """Is ``node`` a run-time check (an extern of the ``janus_frame`` ops,
    :mod:`lower.checks`): it returns nothing and raises eager's error, and
    nothing after it may run before it."""
    return isinstance(node, Extern) and getattr(node.op, "namespace", None) == "janus_frame"


class BufArg:
    """A tensor argument of an extern: ``buf`` seen with shape/strides/offset."""

    __slots__ = ("buf", "shape", "strides", "offset")

    def __init__(self, buf, shape, strides, offset):
        self.buf = buf
        self.shape = tuple(shape)
        self.strides = tuple(strides)
        self.offset = offset

    @property
    def is_plain(self):
        b = self.buf
        return self.shape == b.shape and self.strides == b.strides and self.offset == b.offset

    def __repr__(self):
        if self.is_plain:
            return self.buf.name
        return f"view({self.buf.name}, {list(self.shape)}, {list(self.strides)}, {self.offset})"


class SymArg:
    """A symbolic int argument of an extern call (evaluated per call)."""

    __slots__ = ("expr",)

    def __init__(self, expr):
        self.expr = expr

    def __repr__(self):
        return f"sym({self.expr})"


def store_index(buf, vars_, ranges=None):
    """Index of element ``vars_`` in ``buf`` (size-1 dims of the buffer that
    have no var -- keepdim reductions -- are skipped)."""
    shape = buf.shape
    if ranges is not None and len(ranges) != len(shape):
        # reduction output with keepdim: buffer dims of size 1 have no var
        dims = [i for i, s in enumerate(shape) if not (isinstance(s, int) and s == 1)]
        if len(dims) != len(vars_):
            dims = list(range(len(shape)))[: len(vars_)]
        terms = [(v, buf.strides[d]) for v, d in zip(vars_, dims)]
        return Affine(buf.offset, terms)
    return Affine(buf.offset, [(v, st) for v, st in zip(vars_, buf.strides)])


class Program:
    """Buffers and nodes of one graph, in execution order; ``outputs`` lists
    what the graph returns: ("buf", BufArg) or ("const", python value)."""

    def __init__(self):
        self.buffers: dict[str, Buffer] = {}
        self.nodes: list[Node] = []
        self.inputs: list = []  # Buffer (tensor or sym) per graph input, in order
        self.outputs: list = []
        self.symbols: list = []  # sympy symbols used in sizes, with their input position
        # symbols an extern's result defines (data-dependent sizes): known
        # only once that call has run
        self.unbacked: set = set()
        # the index range checks done on graph inputs, by placeholder name
        # (Lowering.check_index): a backward graph reading the same saved
        # tensor need not check it again
        self.input_checks: set = set()

    def new_buffer(self, prefix, shape, strides, dtype, kind, **kw):
        name = f"{prefix}{len(self.buffers)}"
        b = Buffer(name, shape, strides, dtype, kind, **kw)
        self.buffers[name] = b
        return b

    def format(self):
        lines = ["inputs: " + ", ".join(repr(b) for b in self.inputs)]
        for b in self.buffers.values():
            if b.kind not in ("input",):
                lines.append("  " + repr(b))
        for n in self.nodes:
            lines.append(n.format())
        lines.append("return " + ", ".join(repr(o[1]) for o in self.outputs))
        return "\n".join(lines)


def dtype_min(dtype):
    if dtype.is_floating_point:
        return -math.inf
    if dtype == torch.bool:
        return False
    return torch.iinfo(dtype).min


def dtype_max(dtype):
    if dtype.is_floating_point:
        return math.inf
    if dtype == torch.bool:
        return True
    return torch.iinfo(dtype).max


# What each reduction means, for both code generators (C: codegen.c.reduce,
# Triton: codegen.triton_reduce); a test checks that both render every entry.
REDUCTIONS = {
    Reduce.SUM: ReductionKind(Op.ADD, 0, NaN.ARITHMETIC),
    Reduce.PROD: ReductionKind(Op.MUL, 1, NaN.ARITHMETIC),
    Reduce.MAX: ReductionKind(Op.MAXIMUM, dtype_min, NaN.STICKY),
    Reduce.MIN: ReductionKind(Op.MINIMUM, dtype_max, NaN.STICKY),
    Reduce.ARGMAX: ReductionKind(Op.MAXIMUM, dtype_min, NaN.FIRST, index=True),
    Reduce.ARGMIN: ReductionKind(Op.MINIMUM, dtype_max, NaN.FIRST, index=True),
    Reduce.ANY: ReductionKind(Op.OR, 0, NaN.TRUTH),
    Reduce.ALL: ReductionKind(Op.AND, 1, NaN.TRUTH),
    Reduce.WMEAN: ReductionKind(Op.ADD, 0, NaN.ARITHMETIC, welford=True),
    Reduce.WM2: ReductionKind(Op.ADD, 0, NaN.ARITHMETIC, welford=True),
}


def index_key(a, ids):
    """Structural key of an index; data-dependent terms by their emitted names."""
    if not a.dynamic_terms():
        return a._key
    return (a.offset, tuple((v if isinstance(v, str) else ("dyn", ids[id(v)]), c)
                            for v, c in a.terms))


class CSEEmitter:
    """Emits an expression DAG once per distinct subexpression (shared by the
    C and Triton code generators; subclasses provide ``memo`` and ``_one``)."""

    def emit(self, e):
        # ids are only stable while ``e`` is alive (one call); across calls
        # common subexpressions are found by structure
        ids = {}
        for x in walk(e):
            aux = x.aux
            if x.kind == Op.CONST:
                aux = (type(aux).__name__, repr(aux))
            elif x.kind in (Op.LOAD, Op.MLOAD):
                aux = (aux[0], index_key(aux[1], ids))
            elif x.kind == Op.INDEX:
                aux = index_key(aux, ids)
            key = (x.kind, x.dtype, aux, tuple(ids[id(a)] for a in x.args))
            name = self.memo.get(key)
            if name is None:
                self._ids = ids
                name = self._one(x)
                self.memo[key] = name
            ids[id(x)] = name
        return ids[id(e)]
