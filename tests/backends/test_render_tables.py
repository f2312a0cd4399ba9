"""The IR's ops and reductions are tables, and each code generator renders all
of them: every ``ir.COMPUTE_OPS`` has a C and a Triton rendering, every
``ir.REDUCTIONS`` entry renders in both, and what the Triton generator
renders is checked against eager under TRITON_INTERPRET=1 (the ops it
gained when the tables were made complete, in float32 and float64, special
values included; products and looped arg-reductions)."""
import types

import pytest
import torch

from conftest import assert_close, graphs, jcompile
from janus_frame.backends.janus import ir
from janus_frame.backends.janus.codegen.c import expr as c_expr
from janus_frame.backends.janus.codegen.c import reduce as c_reduce
from janus_frame.backends.janus.ir import Op, Reduce

F32, F64, I64, B = torch.float32, torch.float64, torch.int64, torch.bool
INT_OPS = {Op.TRUNCDIV, Op.FLOORDIV, Op.BITWISE_AND, Op.BITWISE_OR, Op.BITWISE_XOR, Op.BITWISE_NOT,
           Op.LSHIFT, Op.RSHIFT}
BOOL_OPS = {Op.AND, Op.OR, Op.XOR, Op.NOT}


def _cases(op):
    """(result dtype, operand dtypes) the lowering produces ``op`` with."""
    n = ir.ARITY[op]
    if op in INT_OPS:
        return [(I64, (I64,) * n)]
    if op in BOOL_OPS:
        return [(B, (B,) * n)]
    if op in ir.PREDICATES:
        return [(B, (F32,) * n), (B, (F64,) * n)]
    if op is Op.WHERE:
        return [(F32, (B, F32, F32)), (I64, (B, I64, I64))]
    if op is Op.CAST:
        return [(F32, (I64,)), (B, (F32,)), (I64, (F64,))]
    out = [(F32, (F32,) * n), (F64, (F64,) * n)]
    if op in (Op.ADD, Op.SUB, Op.MUL, Op.DIV, Op.NEG, Op.ABS, Op.MAXIMUM, Op.MINIMUM, Op.POW,
              Op.REMAINDER, Op.FMOD, Op.SIGN, Op.RELU):
        out.append((I64, (I64,) * n))
    return out


def test_the_op_tables_cover_every_op():
    assert ir.COMPUTE_OPS == set(ir.ARITY) and not ir.COMPUTE_OPS & ir.LEAF_KINDS
    assert set(c_expr.C_OPS) == ir.COMPUTE_OPS
    from janus_frame.backends.janus.codegen import triton_ops

    assert set(triton_ops.TRITON_OPS) == ir.COMPUTE_OPS
    names = ["a", "b", "c"]
    for op in ir.COMPUTE_OPS:
        for dtype, adt in _cases(op):
            a = names[:ir.ARITY[op]]
            for text in (c_expr.op_c(op, dtype, a, list(adt)),
                         triton_ops.op_t(op, dtype, a, list(adt))):
                assert isinstance(text, str) and all(x in text for x in a), (op, dtype, text)


def _member(rtype, dtype):
    out_dtype = I64 if ir.REDUCTIONS[rtype].index else (B if rtype in (Reduce.ANY, Reduce.ALL) else dtype)
    node = types.SimpleNamespace(rtype=rtype, expr=types.SimpleNamespace(dtype=dtype),
                                 out=types.SimpleNamespace(name="buf1", dtype=out_dtype))
    return types.SimpleNamespace(node=node)


@pytest.mark.parametrize("dtype", [F32, I64])
def test_the_reduction_table_renders_in_both_generators(dtype):
    from janus_frame.backends.janus.codegen import triton as T

    assert set(ir.REDUCTIONS) == set(Reduce)
    for rtype, kind in ir.REDUCTIONS.items():
        m = _member(rtype, dtype)
        if kind.welford:
            # mean and M2 of one expression: the C generator's Welford code
            # (codegen.c.kernel), the same lines in Triton as before
            assert T._reduce_lines(m, "t0", True, "8") and T._final_looped(m)
            continue
        decl, clauses, finals = c_reduce.declare(m, "T", "acc")
        assert decl and (clauses or kind.index)
        assert c_reduce.update(m, "t0", "acc", "  ", index="i0")
        if not kind.index:  # (column reductions exclude arg-reductions)
            assert c_reduce.identity(m) and c_reduce.vec_update(m, "t0", "acc[j]", "  ")
        for persistent in (True, False):
            assert T._reduce_lines(m, "t0", persistent, "8")
        assert T._accumulators(m) and T._final_looped(m)


@pytest.fixture
def triton_kernels():
    pytest.importorskip("triton")
    from janus_frame.backends.janus import force_triton

    with force_triton():
        yield


SPECIAL = [0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 1e-30, -1e-30, 2.0, -2.0, 3.0, 7.5, -7.5, 30.0, -30.0,
           100.0, 1e20, -1e20, float("inf"), float("-inf"), float("nan")]
NEW_UNARY = [torch.tan, torch.atan, torch.asin, torch.acos, torch.sinh, torch.cosh, torch.asinh,
             torch.acosh, torch.atanh, torch.erfc, torch.signbit]
NEW_BINARY = [torch.atan2, torch.hypot, torch.copysign]


@pytest.mark.parametrize("dtype", [F32, F64])
def test_triton_math_added_for_the_tables_matches_eager(dtype, triton_kernels):
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.tensor(SPECIAL, dtype=dtype), torch.randn(43, generator=g, dtype=dtype) * 4,
                   torch.rand(16, generator=g, dtype=dtype) * 2 - 1])
    y = x.flip(0)

    def f(x, y):
        return tuple(op(x) for op in NEW_UNARY) + tuple(op(x, y) for op in NEW_BINARY)

    got, want = jcompile(f)(x, y), f(x, y)
    assert graphs()[-1].backend == "triton"
    tol = 1e-5 if dtype == F32 else 1e-12
    for op, a, e in zip(NEW_UNARY + NEW_BINARY, got, want):
        name = getattr(op, "__name__", op)
        assert a.dtype == e.dtype, name
        if e.dtype == torch.bool:
            assert torch.equal(a, e), name
            continue
        torch.testing.assert_close(a, e, rtol=tol, atol=tol * 1e-3, equal_nan=True, msg=name)
        finite = e.isfinite()
        assert torch.equal(torch.signbit(a)[finite], torch.signbit(e)[finite]), name


@pytest.mark.parametrize("dtype", [F32, F64])
def test_triton_negation_keeps_the_sign_of_zero(dtype, triton_kernels):
    """-x of +0.0 is -0.0, in neg, atan2 and copysign alike (Triton 3.6 lowers
    unary minus to 0 - x, which is +0.0)."""
    x = torch.tensor([0.0, -0.0, 1.5, -2.0, float("inf"), float("nan")], dtype=dtype)
    y = torch.tensor([-1.0, -1.0, -0.0, 0.0, -3.0, 1.0], dtype=dtype)

    def f(x, y):
        return -x, torch.neg(x * 2), torch.atan2(x, y.abs()), torch.copysign(x, y)

    got, want = jcompile(f)(x, y), f(x, y)
    assert graphs()[-1].backend == "triton"
    for a, e in zip(got, want):
        torch.testing.assert_close(a, e, equal_nan=True)
        num = ~e.isnan()  # (a NaN's sign bit is not specified)
        assert torch.equal(torch.signbit(a)[num], torch.signbit(e)[num])


def test_triton_integer_pow_and_fmod_match_eager(triton_kernels):
    a = torch.tensor([0, 1, -1, 2, -2, 3, 5, -7, 10, 2, -3, 7], dtype=torch.int64)
    b = torch.tensor([0, 5, 3, 10, 3, -1, 0, 2, 3, 62, 4, -2], dtype=torch.int64)

    def f(a, b):
        return torch.pow(a, b.abs()), torch.fmod(a, torch.where(b == 0, 1, b)), torch.pow(a, b)

    # eager raises for negative integer exponents of tensors only if they
    # are scalars; elementwise it gives 0 (1 and -1 aside), as our kernels do
    assert_close(jcompile(f)(a, b), f(a, b))
    assert graphs()[-1].backend == "triton"


@pytest.mark.parametrize("shape", [(4, 33), (3, 1500)], ids=["persistent", "looped"])
def test_triton_products_and_arg_reductions_match_eager(shape, triton_kernels):
    g = torch.Generator().manual_seed(1)
    x = 1 + torch.randn(shape, generator=g) * 0.01
    x[1, 7] = x[1].max() + 1  # one maximum; two equal minima below: the first wins
    x[2, 5] = x[2, shape[1] - 3] = x[2].min() - 1
    y = x.clone()
    y[0, shape[1] // 2] = float("nan")  # the first NaN is the arg-extremum

    def f(x, y):
        return x.prod(-1), x.argmax(-1), x.argmin(-1), y.argmax(-1), y.argmin(-1), \
            x.to(torch.int64).argmax(-1)

    got, want = jcompile(f)(x, y), f(x, y)
    assert_close(got, want, rtol=1e-5, atol=1e-6)
    src = "".join(k.source for k in graphs()[-1].triton_kernels.values())
    assert ("for roff" in src) == (shape[1] > 1024)
