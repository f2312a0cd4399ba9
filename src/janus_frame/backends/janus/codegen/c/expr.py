"""C text of the pieces of a kernel: types, size and index expressions,
constants, one op on printed operands (the render table ``C_OPS``, one entry
per ``ir.COMPUTE_OPS``), and the statements of one loop body (with common
subexpressions emitted once); plus the merging of loop axes.

In: IR expressions (:mod:`ir`).  Out: strings of C, for :mod:`codegen.c.kernel`.
"""
from __future__ import annotations

import math

import sympy
import torch

from ... import ir
from ...ir import Affine, Op
from ..common import SAME_TEXT, CodegenError

CTYPES = {
    torch.float32: "float", torch.float64: "double", torch.int64: "int64_t",
    torch.int32: "int32_t", torch.int16: "int16_t", torch.int8: "int8_t", torch.uint8: "uint8_t",
    torch.bool: "bool",
}


def cexpr(x) -> str:
    """A size expression (int or sympy) as C int64 arithmetic."""
    if isinstance(x, int):
        return str(x) if -(2 ** 31) < x < 2 ** 31 else f"{x}LL"
    if isinstance(x, sympy.Integer):
        return cexpr(int(x))
    if isinstance(x, sympy.Symbol):
        return str(x)
    if isinstance(x, sympy.Add):
        return "(" + " + ".join(cexpr(a) for a in x.args) + ")"
    if isinstance(x, sympy.Mul):
        return "(" + " * ".join(cexpr(a) for a in x.args) + ")"
    if isinstance(x, sympy.Pow) and x.exp.is_Integer and int(x.exp) > 0:
        return "(" + " * ".join([cexpr(x.base)] * int(x.exp)) + ")"
    name = type(x).__name__
    if name in ("FloorDiv", "CleanDiv", "IntTrueDiv") and len(x.args) == 2:
        return f"({cexpr(x.args[0])} / {cexpr(x.args[1])})"
    if name in ("Mod", "PythonMod") and len(x.args) == 2:
        return f"({cexpr(x.args[0])} % {cexpr(x.args[1])})"
    if name == "CeilDiv" and len(x.args) == 2:
        a, b = cexpr(x.args[0]), cexpr(x.args[1])
        return f"(({a} + {b} - 1) / {b})"
    if name in ("Max", "Min") and len(x.args) == 2:
        a, b = cexpr(x.args[0]), cexpr(x.args[1])
        op = ">" if name == "Max" else "<"
        return f"(({a}) {op} ({b}) ? ({a}) : ({b}))"
    raise CodegenError(f"cannot print size expression {x!r} ({name})")


def cconst(v, dtype):
    if dtype == torch.bool:
        return "true" if v else "false"
    if dtype.is_floating_point:
        suffix = "f" if dtype == torch.float32 else ""
        if math.isnan(v):
            return "NAN" if suffix else "((double)NAN)"
        if math.isinf(v):
            s = "INFINITY" if suffix else "((double)INFINITY)"
            return s if v > 0 else "(-" + s + ")"
        r = repr(float(v))
        if "e" not in r and "." not in r:
            r += ".0"
        return f"({r}{suffix})"
    v = int(v)
    if dtype == torch.int64:
        if v == -(2 ** 63):
            return "(-9223372036854775807LL - 1)"
        return f"((int64_t){v}LL)"
    return f"(({CTYPES[dtype]}){v})"


def affine_c(a: Affine) -> str:
    parts = []
    for v, c in a.terms:
        parts.append(v if (isinstance(c, int) and c == 1) else f"{cexpr(c)} * {v}")
    if not (isinstance(a.offset, int) and a.offset == 0) or not parts:
        parts.append(cexpr(a.offset))
    return "(" + " + ".join(parts) + ")"


# C text of each op (a test checks that every ir.COMPUTE_OPS has one): a
# template over the printed operands {0} {1} {2}, with {T} the result's C
# type and {f} the float32 suffix of a math function ('f' or ''), or a
# function (dtype, operands, operand dtypes) -> text where the text depends
# on the dtypes.
def _div(dtype, a, adt):
    if dtype.is_floating_point:
        return f"({a[0]} / {a[1]})"
    return C_OPS[Op.TRUNCDIV].format(*a, T=CTYPES[dtype])


def _extremum(op):
    def render(dtype, a, adt):
        # NaN from either side; on ties (0.0 vs -0.0) the second operand, as
        # eager's vectorised loops give (its scalar tail gives the first)
        if dtype.is_floating_point:
            return f"(({a[0]} != {a[0]} | {a[0]} {op} {a[1]}) ? {a[0]} : {a[1]})"
        return f"({a[0]} {op} {a[1]} ? {a[0]} : {a[1]})"

    return render


def _fextremum(kind, integer):
    def render(dtype, a, adt):
        if dtype.is_floating_point:
            return f"{kind}{_f(dtype)}({a[0]}, {a[1]})"
        return integer(dtype, a, adt)

    return render


def _abs(dtype, a, adt):
    if dtype.is_floating_point:
        return f"__builtin_fabs{_f(dtype)}({a[0]})"
    return f"({a[0]} < 0 ? -{a[0]} : {a[0]})"


def _cast(dtype, a, adt):
    if dtype == torch.bool:
        return f"({a[0]} != 0)"
    return f"(({CTYPES[dtype]})({a[0]}))"  # C truncates float -> int as torch does


def _fabs_test(cmp):
    def render(dtype, a, adt):
        return f"(__builtin_fabs{_f(adt[0])}({a[0]}) {cmp} INFINITY)"

    return render


def _pow(dtype, a, adt):
    if not dtype.is_floating_point:
        return f"(({CTYPES[dtype]})jf_pow_i64({a[0]}, {a[1]}))"
    return f"jf_pow({a[0]}, {a[1]})" if dtype == torch.float32 else f"pow({a[0]}, {a[1]})"


def _remainder(dtype, a, adt):
    if not dtype.is_floating_point:
        return f"(({CTYPES[dtype]})jf_mod_i64({a[0]}, {a[1]}))"
    return f"jf_remainder_{'f' if dtype == torch.float32 else 'd'}({a[0]}, {a[1]})"


def _fmod(dtype, a, adt):
    if not dtype.is_floating_point:
        return f"({a[1]} == 0 ? ({CTYPES[dtype]})0 : ({CTYPES[dtype]})({a[0]} % {a[1]}))"
    return _libm("fmod")(dtype, a, adt)


def _libm(name):
    """A libm function (its float32 variant for float32)."""
    def render(dtype, a, adt):
        return f"{name}{_f(dtype)}({', '.join(a)})"

    return render


def _vector_math(name, double=None):
    """Our float32 function ``jf_<name>`` (vectorisable: codegen.c.prelude),
    libm's (or ``double``) for other dtypes."""
    def render(dtype, a, adt):
        if dtype == torch.float32:
            return f"jf_{name}({a[0]})"
        return f"{double}({a[0]})" if double else _libm(name)(dtype, a, adt)

    return render


def _f(dtype):
    return "f" if dtype == torch.float32 else ""


C_OPS = {
    **SAME_TEXT,
    Op.DIV: _div,
    Op.TRUNCDIV: "({1} == 0 ? ({T})0 : ({T})({0} / {1}))",
    Op.FLOORDIV: "(({T})jf_floordiv_i64({0}, {1}))",
    Op.REMAINDER: _remainder,
    Op.FMOD: _fmod,
    Op.POW: _pow,
    Op.ABS: _abs,
    Op.MAXIMUM: _extremum(">"),
    Op.MINIMUM: _extremum("<"),
    Op.FMAX: _fextremum("fmax", _extremum(">")),
    Op.FMIN: _fextremum("fmin", _extremum("<")),
    # (AND, OR: bitwise on bools; gcc does not if-convert short-circuit || / &&,
    # which stops vectorisation)
    Op.XOR: "({0} != {1})",
    Op.NOT: "(!{0})",
    Op.BITWISE_AND: "({T})({0} & {1})",
    Op.BITWISE_OR: "({T})({0} | {1})",
    Op.BITWISE_XOR: "({T})({0} ^ {1})",
    Op.BITWISE_NOT: "({T})(~{0})",
    Op.LSHIFT: "({T})({0} << {1})",
    Op.RSHIFT: "({T})({0} >> {1})",
    Op.WHERE: "({0} ? {1} : {2})",
    Op.CAST: _cast,
    Op.RELU: "({0} < 0 ? ({T})0 : {0})",
    Op.SIGN: "(({T})(({0} > 0) - ({0} < 0)))",  # torch.sign(nan) is 0, which this gives too
    Op.RECIPROCAL: "(({T})1 / {0})",
    Op.SQRT: "__builtin_sqrt{f}({0})",
    Op.RSQRT: "(({T})1 / __builtin_sqrt{f}({0}))",
    Op.FLOOR: "__builtin_floor{f}({0})",
    Op.CEIL: "__builtin_ceil{f}({0})",
    Op.TRUNC: "__builtin_trunc{f}({0})",
    Op.ROUND: "__builtin_rint{f}({0})",
    Op.ISINF: _fabs_test("=="),
    Op.ISFINITE: _fabs_test("<"),
    Op.SIGNBIT: "(__builtin_signbit({0}) != 0)",
    Op.EXP: _vector_math("exp"),
    Op.LOG: _vector_math("log"),
    Op.TANH: _vector_math("tanh"),
    Op.ERF: _vector_math("erf"),
    Op.LOG1P: _vector_math("log1p"),
    Op.EXPM1: _vector_math("expm1"),
    Op.SIGMOID: _vector_math("sigmoid", double="jf_sigmoid_d"),
    **{op: _libm(str(op)) for op in (
        Op.EXP2, Op.LOG2, Op.LOG10, Op.ERFC, Op.SIN, Op.COS, Op.TAN, Op.ASIN, Op.ACOS, Op.ATAN,
        Op.SINH, Op.COSH, Op.ASINH, Op.ACOSH, Op.ATANH, Op.ATAN2, Op.HYPOT, Op.COPYSIGN)},
}


def op_c(kind, dtype, a, arg_dtypes):
    """C text of one op on already-printed operands ``a`` (:data:`C_OPS`)."""
    r = C_OPS.get(kind)
    if r is None:
        raise CodegenError(f"no C for op {kind} on {dtype}")
    if isinstance(r, str):
        return r.format(*a, T=CTYPES[dtype], f=_f(dtype))
    return r(dtype, a, arg_dtypes)


class Body(ir.CSEEmitter):
    """Statements of one loop body with CSE over expression nodes."""

    def __init__(self, bufvar, locals_, indent):
        self.lines = []
        self.memo = {}
        self.bufvar = bufvar  # buffer name -> C pointer name
        self.locals = locals_  # (buffer name, Affine key) -> C variable
        self.indent = indent
        self.n = 0
        self.row_sub = {}  # row-local buffer -> substitution giving its in-row index
        self.inner = ()  # vars of the innermost loop around these statements
        # Statements not depending on the innermost loop go to ``hoisted``
        # when the caller places them before that loop (``hoist_tag`` set):
        # scalar loads left inside are sunk by gcc under a select into masked
        # loads of an invariant address, which it then cannot vectorise.
        self.hoisted = []
        self.hoist_tag = None  # unique per kernel scope: names of hoisted temps
        self.written = frozenset()  # buffers stored by the kernel (never hoisted)
        self._hoisted_names = set()
        # register values that exist before this body: finals of earlier
        # passes, defined outside the innermost loop
        self.outer_locals = frozenset(locals_)

    def tmp(self, ctype, text, prefix="t", hoist=False):
        if hoist and self.hoist_tag is not None:
            name = f"h{self.hoist_tag}_{self.n}"
            self.n += 1
            self.hoisted.append(f"{'  ' * (self.indent - 1)}const {ctype} {name} = {text};")
            self._hoisted_names.add(name)
            return name
        name = f"{prefix}{self.indent}_{self.n}"
        self.n += 1
        self.lines.append(f"{'  ' * self.indent}const {ctype} {name} = {text};")
        return name

    def _loop_invariant(self, x) -> bool:
        """Whether node ``x`` (its arguments already emitted) can be computed
        once before the innermost loop."""
        if self.hoist_tag is None or not self.inner:
            return False
        inner = set(self.inner)
        if x.kind == Op.LOAD:
            buf, idx = x.aux
            if (buf, idx._key) in self.outer_locals:
                return True  # a value an earlier pass finished (a row's max or sum)
            return (buf not in self.written and buf not in self.row_sub
                    and (buf, idx._key) not in self.locals
                    and not idx.dynamic_terms() and not inner & set(idx.vars()))
        if x.kind in (Op.MLOAD, Op.INDEX, Op.CONST, Op.SYM) or not x.args:
            return False
        return all(a.kind in (Op.CONST, Op.SYM)
                   or (a.kind == Op.INDEX and not a.aux.dynamic_terms()
                       and not inner & set(a.aux.vars()))
                   or self._ids[id(a)] in self._hoisted_names
                   for a in x.args)


    def affine(self, a):
        """C text of an index; data-dependent terms use their emitted temps."""
        if not a.dynamic_terms():
            return affine_c(a)
        parts = []
        for v, c in a.terms:
            name = v if isinstance(v, str) else self._ids[id(v)]
            parts.append(name if (isinstance(c, int) and c == 1) else f"{cexpr(c)} * {name}")
        parts.append(cexpr(a.offset))
        return "(" + " + ".join(parts) + ")"

    def _one(self, x):
        k = x.kind
        T = CTYPES[x.dtype]
        if k == Op.CONST:
            return cconst(x.aux, x.dtype)
        if k == Op.SYM:
            return f"(({T}){cexpr(x.aux)})"
        if k == Op.INDEX:
            return f"(({T}){self.affine(x.aux)})"
        if k in (Op.LOAD, Op.MLOAD):
            buf, idx = x.aux
            loc = self.locals.get((buf, idx._key))
            if loc is not None:
                text = loc
            else:
                if buf in self.row_sub:
                    idx = idx.subst(self.row_sub[buf])
                text = f"{self.bufvar[buf]}[{self.affine(idx)}]"
            if k == Op.MLOAD:
                text = f"({self._ids[id(x.args[0])]} ? {text} : ({T})0)"
            return self.tmp(T, text, hoist=self._loop_invariant(x))
        args = [self._ids[id(a)] for a in x.args]
        if self._loop_invariant(x):
            return self.tmp(T, op_c(k, x.dtype, args, [a.dtype for a in x.args]), hoist=True)
        if k == Op.DIV and x.dtype.is_floating_point and self.inner and x.args[1].kind != Op.CONST \
                and self._invariant(x.args[1]):
            # a divisor fixed across the inner loop (a softmax's row sum):
            # one reciprocal, hoisted by the compiler, and a multiply per
            # element, as eager's row kernels do (within an ulp of dividing);
            # a divisor so small that its reciprocal overflows divides.  The
            # test is a select, not a short-circuit ||: control flow in the
            # loop stops vectorisation (gcc does not unswitch a loop this big)
            a, b = args
            fl = "f" if x.dtype == torch.float32 else ""
            if b in self._hoisted_names:
                # computed before the loop: the reciprocal of 2^64 b when 1/b
                # overflows, and the factor 2^64 to apply after multiplying
                # (exact: a power of two), so no element divides
                r = self.tmp(T, f"(({T})1 / {b})", hoist=True)
                ok = f"(__builtin_fabs{fl}({r}) < INFINITY | {b} == 0)"
                rr = self.tmp(T, f"({ok} ? {r} : ({T})1 / ({b} * ({T})0x1p64))", hoist=True)
                sc = self.tmp(T, f"({ok} ? ({T})1 : ({T})0x1p64)", hoist=True)
                return self.tmp(T, f"({a} * {rr}) * {sc}")
            r = self.tmp(T, f"(({T})1 / {b})")
            return self.tmp(T, f"(__builtin_fabs{fl}({r}) < INFINITY | {b} == 0 ? "
                               f"{a} * {r} : {a} / {b})")
        return self.tmp(T, op_c(k, x.dtype, args, [a.dtype for a in x.args]))

    def _invariant(self, e):
        inner = set(self.inner)
        for x in ir.walk(e):
            if x.kind in (Op.LOAD, Op.MLOAD):
                if inner & set(x.aux[1].vars()):
                    return False
            elif x.kind == Op.INDEX and inner & set(x.aux.vars()):
                return False
        return True


def _loops(axes, sizes, accesses):
    """Merge adjacent loop axes (outer to inner order) when every access is
    linear across them.  Returns [(loop var, size, [axes])] and a substitution
    axis var -> Affine over loop vars."""
    groups = []
    for ax in axes:
        if isinstance(sizes[ax], int) and sizes[ax] == 1:
            continue
        groups.append([ax])
    merged = True
    while merged:
        merged = False
        for gi in range(len(groups) - 1):
            outer, inner = groups[gi], groups[gi + 1]
            o = outer[-1]
            # merged dims must keep a_o * c_o == a_i-block * c_i * size(inner group)
            inner_size = ir.prod([sizes[a] for a in inner])
            ok = True
            for acc in accesses:
                co, ci = acc.coeff(f"a{o}"), acc.coeff(f"a{inner[-1]}")
                if not _eq(co, ci * inner_size):
                    ok = False
                    break
                # inside the inner group the coefficients must already be linear
            if ok:
                groups[gi] = outer + inner
                del groups[gi + 1]
                merged = True
                break
    loops = []
    sub = {}
    for ax in axes:
        if isinstance(sizes[ax], int) and sizes[ax] == 1:
            sub[f"a{ax}"] = Affine(0)
    for g in groups:
        lv = f"i{g[0]}"
        size = ir.prod([sizes[a] for a in g])
        loops.append((lv, size, g))
        # a linear access over the merged loop only uses the innermost coefficient
        for a in g[:-1]:
            sub[f"a{a}"] = Affine(0)
        sub[f"a{g[-1]}"] = Affine.var(lv)
    return loops, sub


def _eq(a, b):
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    try:
        return sympy.expand(sympy.sympify(a) - sympy.sympify(b)) == 0
    except Exception:
        return False
