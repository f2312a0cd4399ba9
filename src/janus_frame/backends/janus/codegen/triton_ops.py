"""Triton text of scalar ops and constants, and the math helpers kernels call.

In: IR ops (:class:`ir.Op`) on printed operands.  Out: ``op_t`` (the text of
one op, from :data:`TRITON_OPS`; a test checks that it covers
``ir.COMPUTE_OPS``), ``const_t`` (a constant), ``TL`` (dtype names) and the
helper source a kernel module starts with: ``HELPERS`` (always) plus, by
:func:`helpers_for`, those of :data:`MATH_HELPERS` its body calls.

Math uses ``tl`` core functions (libdevice is unavailable in the
interpreter, where these kernels are tested), with helpers for the rest.
Python float constants are float32 in Triton, so a float64 constant is
``tl.full([1], c, tl.float64)`` (:func:`const_t`), and helpers that need a
precise constant of the operand's dtype take it as an argument.  atan comes
in two precisions (Cephes' atanf and atan); asin, acos and atan2 are built
on it; erfc runs in float64 whatever its operand (1 - erf below 2, a
continued fraction above).
"""
from __future__ import annotations

import math
import re

import torch

from ..ir import Op
from .common import SAME_TEXT, CodegenError

TL = {torch.float32: "tl.float32", torch.float64: "tl.float64", torch.int64: "tl.int64",
      torch.int32: "tl.int32", torch.int16: "tl.int16", torch.int8: "tl.int8",
      torch.uint8: "tl.uint8", torch.bool: "tl.int1"}

HELPERS = '''
import triton
import triton.language as tl


@triton.jit
def _jf_tanh(x):
    a = tl.abs(x)
    z = x * x
    p = -5.70498872745e-3
    p = p * z + 2.06390887954e-2
    p = p * z - 5.37397155531e-2
    p = p * z + 1.33314422036e-1
    p = p * z - 3.33332819422e-1
    small = x + x * z * p
    e = tl.exp(2.0 * tl.minimum(a, 44.0))
    big = 1.0 - 2.0 / (e + 1.0)
    big = tl.where(x < 0, big * -1.0, big)
    small = tl.where(x == 0, x, small)  # odd: tanh(-0) = -0
    return tl.where(x != x, x, tl.where(a < 0.625, small, big))


@triton.jit
def _jf_log1p(x):
    u = 1.0 + x
    d = u - 1.0
    y = tl.log(u) - (d - x) / u
    y = tl.where(d == 0.0, x, y)
    y = tl.where(u == 0.0, -float("inf"), y)
    return tl.where(x == float("inf"), x, y)


@triton.jit
def _jf_expm1(x):
    u = tl.exp(x)
    um = u - 1.0
    l = tl.log(u)
    y = um * x / tl.where(l == 0.0, 1.0, l)
    y = tl.where(u == 1.0, x, y)
    y = tl.where(um == -1.0, -1.0, y)
    y = tl.where(tl.abs(x) > 0.5, um, y)
    return tl.where(x != x, x, y)


@triton.jit
def _jf_pow(a, b):
    b = tl.zeros_like(a) + b  # a python-scalar exponent becomes a tensor
    aa = tl.abs(a)
    r = tl.exp(b * tl.log(aa))
    bt = tl.where(b < 0, tl.ceil(b), tl.floor(b))
    bint = bt == b
    half = b * 0.5
    bodd = bint & ((tl.where(half < 0, tl.ceil(half), tl.floor(half))) != half)
    r = tl.where((a < 0) & bodd, r * -1.0, r)
    r = tl.where((a < 0) & (bint == 0) & (aa != float("inf")), float("nan"), r)
    r = tl.where((a != a) | (b != b), float("nan"), r)
    r = tl.where(b == 0, 1.0, r)
    return tl.where(a == 1.0, 1.0, r)


@triton.jit
def _jf_round(x):
    f = tl.floor(x + 0.5)
    tie = (f - x) == 0.5
    odd = (f - 2.0 * tl.floor(f * 0.5)) != 0.0
    return tl.where(tie & odd, f - 1.0, f)
'''

# Helpers included in a kernel's module only when its body calls them (so
# the modules of kernels that call none are as before they existed).
MATH_HELPERS = {
    "_jf_atan": '''
@triton.jit
def _jf_atan(x):  # float32: Cephes' atanf, within 2 ulp
    a = tl.abs(x)
    big = a > 2.414213562373095
    mid = a > 0.4142135623730950
    xr = tl.where(big, -1.0 / tl.where(big, a, 1.0), tl.where(mid, (a - 1.0) / (a + 1.0), a))
    y0 = tl.where(big, 1.5707963267948966, tl.where(mid, 0.7853981633974483, 0.0))
    z = xr * xr
    p = (((8.05374449538e-2 * z - 1.38776856032e-1) * z + 1.99777106478e-1) * z
         - 3.33329491539e-1) * z * xr + xr
    r = y0 + p
    return tl.where(x < 0, r * -1.0, tl.where(x == 0, x, r))
''',
    "_jf_atan64": '''
@triton.jit
def _jf_atan64(x):  # float64: Cephes' atan, within 2 ulp
    one = tl.full([1], 1.0, tl.float64)
    a = tl.abs(x)
    big = a > 2.414213562373095
    mid = a > 0.66
    xr = tl.where(big, -one / tl.where(big, a, one), tl.where(mid, (a - one) / (a + one), a))
    y0 = tl.where(big, tl.full([1], 1.5707963267948966, tl.float64),
                  tl.where(mid, tl.full([1], 0.7853981633974483, tl.float64), 0.0 * one))
    lo = tl.where(big, tl.full([1], 6.123233995736766e-17, tl.float64),
                  tl.where(mid, tl.full([1], 3.061616997868383e-17, tl.float64), 0.0 * one))
    z = xr * xr
    pn = tl.full([1], -0.8750608600031904, tl.float64)
    pn = pn * z + tl.full([1], -16.157537187333652, tl.float64)
    pn = pn * z + tl.full([1], -75.00855792314705, tl.float64)
    pn = pn * z + tl.full([1], -122.88666844901361, tl.float64)
    pn = pn * z + tl.full([1], -64.85021904942025, tl.float64)
    qd = z + tl.full([1], 24.858464901423062, tl.float64)
    qd = qd * z + tl.full([1], 165.02700983169885, tl.float64)
    qd = qd * z + tl.full([1], 432.88106049129027, tl.float64)
    qd = qd * z + tl.full([1], 485.3903996359137, tl.float64)
    qd = qd * z + tl.full([1], 194.5506571482614, tl.float64)
    r = y0 + ((xr * (z * pn / qd) + xr) + lo)
    return tl.where(x < 0, r * -1.0, tl.where(x == 0, x, r))
''',
    "_jf_atan2": '''
@triton.jit
def _jf_atan2(y, x, t, pi, ys, xs):
    # t: atan(|y| / |x|); pi in the operands' dtype; ys, xs: their sign bits
    ay = tl.abs(y)
    ax = tl.abs(x)
    t = tl.where((ax == 0) & (ay == 0), 0.0, t)
    t = tl.where((ax == float("inf")) & (ay == float("inf")), pi * 0.25, t)
    t = tl.where(xs, pi - t, t)
    return tl.where(ys, t * -1.0, t)
''',
    "_jf_sinh": '''
@triton.jit
def _jf_sinh(x):
    a = tl.abs(x)
    s = (_jf_expm1(a) - _jf_expm1(-a)) * 0.5
    e = tl.exp(a * 0.5)
    s = tl.where(a > 20.0, (e * 0.5) * e, s)  # (e^a / 2 without overflowing first)
    return tl.where(x < 0, s * -1.0, tl.where(x == 0, x, s))
''',
    "_jf_cosh": '''
@triton.jit
def _jf_cosh(x):
    a = tl.abs(x)
    ea = tl.exp(tl.where(a > 20.0, 0.0, a))
    e = tl.exp(a * 0.5)
    return tl.where(a > 20.0, (e * 0.5) * e, 0.5 * ea + 0.5 / ea)
''',
    "_jf_asinh": '''
@triton.jit
def _jf_asinh(x, ln2):
    a = tl.abs(x)
    y = _jf_log1p(a + a * a / (1.0 + tl.sqrt(1.0 + a * a)))
    y = tl.where(a > 1e18, tl.log(a) + ln2, y)
    return tl.where(x < 0, y * -1.0, tl.where(x == 0, x, y))
''',
    "_jf_acosh": '''
@triton.jit
def _jf_acosh(x, ln2):
    t = x - 1.0
    y = _jf_log1p(t + tl.sqrt(2.0 * t + t * t))
    y = tl.where(x > 1e18, tl.log(x) + ln2, y)
    return tl.where(x < 1.0, float("nan"), y)
''',
    "_jf_atanh": '''
@triton.jit
def _jf_atanh(x):
    return 0.5 * _jf_log1p(2.0 * x / (1.0 - x))
''',
    "_jf_erfc": '''
@triton.jit
def _jf_erfc(z):  # float64 in and out
    near = 1.0 - tl.erf(z)  # below 2: within 2e-14, relative
    t = tl.where(z < 2.0, 2.0, z)
    f = t
    for i in range(40):  # the continued fraction, from its 40th term
        f = t + (40 - i) * 0.5 / f
    far = tl.exp(-t * t) * tl.full([1], 0.5641895835477563, tl.float64) / f
    return tl.where(z < 2.0, near, far)
''',
    "_jf_hypot": '''
@triton.jit
def _jf_hypot(a, b):
    aa = tl.abs(a)
    bb = tl.abs(b)
    m = tl.where(aa > bb, aa, bb)
    n = tl.where(aa > bb, bb, aa)
    r = n / tl.where(m == 0, 1.0, m)
    h = m * tl.sqrt(1.0 + r * r)
    h = tl.where((a != a) | (b != b), float("nan"), h)
    return tl.where((aa == float("inf")) | (bb == float("inf")), float("inf"), h)
''',
    "_jf_mul": '''
@triton.jit
def _jf_mul(a, b):  # the combine of a product reduction (tl.reduce)
    return a * b
''',
    "_jf_pow_i": '''
@triton.jit
def _jf_pow_i(a, b):  # integers, as the C backend's jf_pow_i64
    b = tl.zeros_like(a) + b
    neg = b < 0
    e = tl.where(neg, 0, b)
    r = tl.zeros_like(a) + 1
    base = a
    for i in range(64):
        r = tl.where((e & 1) != 0, r * base, r)
        base = base * base
        e = e >> 1
    small = tl.where(a == 1, 1, tl.where(a == -1, tl.where((b & 1) != 0, -1, 1), 0))
    return tl.where(neg, small, r)
''',
}
def helpers_for(body: str) -> str:
    """The source of the :data:`MATH_HELPERS` that ``body`` calls."""
    used = [name for name in MATH_HELPERS if re.search(rf"\b{name}\b", body)]
    return "".join(MATH_HELPERS[name] for name in used)


def const_t(v, dtype):
    """A constant of ``dtype`` as Triton source."""
    if dtype == torch.bool:
        return "1" if v else "0"
    if dtype.is_floating_point:
        if math.isnan(v):
            s = 'float("nan")'
        elif math.isinf(v):
            s = 'float("inf")' if v > 0 else '-float("inf")'
        else:
            s = repr(float(v))
        return s if dtype == torch.float32 else f"tl.full([1], {s}, {TL[dtype]})"
    v = int(v)
    if dtype == torch.int32 or (-(2 ** 31) < v < 2 ** 31 and dtype != torch.int64):
        return str(v)
    return f"tl.full([1], {v}, tl.int64)"


# Triton text of each op (a test checks that every ir.COMPUTE_OPS has one):
# a template over the printed operands {0} {1} {2}, with {T} the result's
# tl dtype, or a function (dtype, operands, operand dtypes) -> text.
def _div(dtype, a, adt):
    if dtype.is_floating_point:
        return f"({a[0]} / {a[1]})"
    return f"tl.where({a[1]} == 0, 0, {a[0]} // tl.where({a[1]} == 0, 1, {a[1]}))"


def _extremum(op):
    def render(dtype, a, adt):
        # NaN from either side; on ties (0.0 vs -0.0) the second operand, as
        # eager's vectorised loops give (its scalar tail gives the first)
        if dtype.is_floating_point:
            return f"tl.where(({a[0]} != {a[0]}) | ({a[0]} {op} {a[1]}), {a[0]}, {a[1]})"
        return f"tl.where({a[0]} {op} {a[1]}, {a[0]}, {a[1]})"

    return render


def _cast(dtype, a, adt):
    if dtype == torch.bool:
        return f"({a[0]} != 0)"
    return f"{a[0]}.to({TL[dtype]})"


def _float_only(template):
    def render(dtype, a, adt):
        if not dtype.is_floating_point:
            raise CodegenError(f"no Triton for this op on {dtype}")
        return template.format(*a, T=TL[dtype])

    return render


def _int_only(template):
    def render(dtype, a, adt):
        if dtype.is_floating_point:
            raise CodegenError(f"no Triton for this op on {dtype} (integers only)")
        return template.format(*a, T=TL[dtype])

    return render


_Q = "({0} // tl.where({1} == 0, 1, {1}))"  # triton // truncates


def _pow(dtype, a, adt):
    if dtype.is_floating_point:
        return f"_jf_pow({a[0]}, {a[1]})"
    return f"_jf_pow_i({a[0]}, {a[1]})"


def _remainder(dtype, a, adt):
    if dtype.is_floating_point:
        return f"({a[0]} - tl.floor({a[0]} / {a[1]}) * {a[1]})"
    r = f"({a[0]} % tl.where({a[1]} == 0, 1, {a[1]}))"
    return f"tl.where(({r} != 0) & (({r} < 0) != ({a[1]} < 0)), {r} + {a[1]}, {r})"


def _fmod(dtype, a, adt):
    if dtype.is_floating_point:
        q = f"({a[0]} / {a[1]})"
        return f"({a[0]} - tl.where({q} < 0, tl.ceil({q}), tl.floor({q})) * {a[1]})"
    return f"tl.where({a[1]} == 0, 0, {a[0]} % tl.where({a[1]} == 0, 1, {a[1]}))"


def _sign_bit(x, dtype):
    """``x`` (of float ``dtype``) has its sign bit set (-0.0 and -nan too)."""
    bits = "tl.int64" if dtype == torch.float64 else "tl.int32"
    return f"({x}.to({bits}, bitcast=True) < 0)"


def _atan(dtype):
    return "_jf_atan64" if dtype == torch.float64 else "_jf_atan"


def _with_ln2(helper):
    def render(dtype, a, adt):
        return f"{helper}({a[0]}, {const_t(math.log(2.0), dtype)})"

    return render


def _neg(dtype, a, adt):
    """``-x``: Triton 3.6 (torch 2.11's) lowers unary minus to ``0 - x``, +0.0
    for +0.0 (3.9 negates), and folds the literal ``-0.0`` to +0.0 too;
    ``x * -1.0`` is the exact negation of every float (zeros, NaN and
    infinities included). Integers keep ``-x``."""
    if dtype.is_floating_point:
        return f"({a[0]} * -1.0)"
    return f"(-{a[0]})"


TRITON_OPS = {
    **SAME_TEXT,
    Op.NEG: _neg,
    Op.DIV: _div,
    Op.TRUNCDIV: _int_only(_Q),
    Op.FLOORDIV: _int_only(f"({_Q} - ((({{0}} % tl.where({{1}} == 0, 1, {{1}})) != 0) & "
                           f"(({{0}} < 0) != ({{1}} < 0))).to({{T}}))"),
    Op.REMAINDER: _remainder,
    Op.FMOD: _fmod,
    Op.POW: _pow,
    Op.ABS: "tl.abs({0})",
    Op.MAXIMUM: _extremum(">"),
    Op.MINIMUM: _extremum("<"),
    Op.FMAX: "tl.maximum({0}, {1})",
    Op.FMIN: "tl.minimum({0}, {1})",
    Op.XOR: "({0} ^ {1})",
    Op.NOT: "({0} == 0)",
    Op.BITWISE_AND: "({0} & {1})",
    Op.BITWISE_OR: "({0} | {1})",
    Op.BITWISE_XOR: "({0} ^ {1})",
    Op.BITWISE_NOT: "(~{0})",
    Op.LSHIFT: "({0} << {1})",
    Op.RSHIFT: "({0} >> {1})",
    Op.WHERE: "tl.where({0}, {1}, {2})",
    Op.CAST: _cast,
    Op.RELU: "tl.where({0} < 0, 0, {0})",
    Op.SIGN: "(({0} > 0).to({T}) - ({0} < 0).to({T}))",
    Op.RECIPROCAL: "(1.0 / {0})",
    Op.SQRT: "tl.sqrt({0})",
    Op.RSQRT: "(1.0 / tl.sqrt({0}))",
    Op.FLOOR: "tl.floor({0})",
    Op.CEIL: "tl.ceil({0})",
    Op.TRUNC: "tl.where({0} < 0, tl.ceil({0}), tl.floor({0}))",
    Op.ROUND: "_jf_round({0})",
    Op.ISINF: "(tl.abs({0}) == float('inf'))",
    Op.ISFINITE: "(tl.abs({0}) < float('inf'))",
    Op.SIGNBIT: lambda dtype, a, adt: _sign_bit(a[0], adt[0]),
    Op.EXP: "tl.exp({0})",
    Op.EXP2: "tl.exp2({0})",
    Op.EXPM1: "_jf_expm1({0})",
    Op.LOG: "tl.log({0})",
    Op.LOG2: "tl.log2({0})",
    Op.LOG10: "(tl.log({0}) * 0.4342944819032518)",
    Op.LOG1P: "_jf_log1p({0})",
    Op.TANH: "_jf_tanh({0})",
    Op.SIGMOID: "(1.0 / (1.0 + tl.exp(-{0})))",
    Op.ERF: "tl.erf({0})",
    Op.ERFC: _float_only("_jf_erfc({0}.to(tl.float64)).to({T})"),
    Op.SIN: "tl.sin({0})",
    Op.COS: "tl.cos({0})",
    Op.TAN: "(tl.sin({0}) / tl.cos({0}))",
    Op.ATAN: lambda dtype, a, adt: f"{_atan(dtype)}({a[0]})",
    # asin(x) = atan(x / sqrt(1 - x^2)), acos(x) = 2 atan(sqrt((1 - x) / (1 + x))):
    # 1 - x and 1 + x are exact where they matter (|x| near 1)
    Op.ASIN: lambda dtype, a, adt: f"{_atan(dtype)}({a[0]} / tl.sqrt((1.0 - {a[0]}) * (1.0 + {a[0]})))",
    Op.ACOS: lambda dtype, a, adt: f"(2.0 * {_atan(dtype)}(tl.sqrt((1.0 - {a[0]}) / (1.0 + {a[0]}))))",
    Op.ATAN2: lambda dtype, a, adt: (
        f"_jf_atan2({a[0]}, {a[1]}, {_atan(dtype)}(tl.abs({a[0]}) / tl.abs({a[1]})), "
        f"{const_t(math.pi, dtype)}, {_sign_bit(a[0], dtype)}, {_sign_bit(a[1], dtype)})"),
    Op.SINH: "_jf_sinh({0})",
    Op.COSH: "_jf_cosh({0})",
    Op.ASINH: _with_ln2("_jf_asinh"),
    Op.ACOSH: _with_ln2("_jf_acosh"),
    Op.ATANH: "_jf_atanh({0})",
    Op.HYPOT: "_jf_hypot({0}, {1})",
    Op.COPYSIGN: lambda dtype, a, adt: (
        f"tl.where({_sign_bit(a[1], adt[1])}, tl.abs({a[0]}) * -1.0, tl.abs({a[0]}))"),
}


def op_t(kind, dtype, a, adt):
    """Triton text of one op on already-printed operands ``a`` (:data:`TRITON_OPS`)."""
    r = TRITON_OPS.get(kind)
    if r is None:
        raise CodegenError(f"no Triton lowering for {kind} on {dtype}")
    if isinstance(r, str):
        return r.format(*a, T=TL[dtype])
    return r(dtype, a, adt)
