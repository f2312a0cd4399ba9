"""Pointwise lowerings through the C++ path: differential against eager over
fuzzed shapes, strides, broadcasts, non-contiguous inputs, dtypes and
special values; fusion of a 20-op chain into one kernel."""
import math

import pytest
import torch
import torch.nn.functional as F

from conftest import assert_close, graphs, jcompile
from janus_frame.backends.janus import build as cpp_build
from janus_frame.backends.janus.ir import op_count


@pytest.fixture(params=["libmvec", "polynomial"])
def math_impl(request, monkeypatch):
    """The float math of the C kernels: glibc's vector library where it is
    usable, and the inline polynomials used elsewhere (codegen.c.prelude)."""
    if request.param == "polynomial":
        monkeypatch.setattr(cpp_build, "libmvec_available", lambda: False)
    elif not cpp_build.libmvec_available():
        pytest.skip("glibc's vector math is not available here")
    return request.param

UNARY = [torch.exp, torch.log, torch.tanh, torch.sigmoid, torch.erf, torch.sqrt, torch.rsqrt,
         torch.abs, torch.neg, torch.relu, torch.log1p, torch.expm1, torch.floor, torch.ceil,
         torch.round, torch.trunc, torch.sign, torch.reciprocal, torch.sin, torch.cos,
         torch.nn.functional.gelu, torch.nn.functional.silu, torch.nn.functional.softplus,
         lambda x: torch.nn.functional.gelu(x, approximate="tanh"), torch.nn.functional.elu,
         lambda x: torch.clamp(x, -0.5, 0.7), torch.nn.functional.leaky_relu,
         torch.nn.functional.hardtanh, torch.isnan, lambda x: x.pow(3), lambda x: x.pow(2.5),
         lambda x: x.pow(-0.5), torch.nn.functional.mish, torch.atan]

SPECIAL = torch.tensor([0.0, -0.0, 1.0, -1.0, float("inf"), float("-inf"), float("nan"), 1e-30,
                        -1e-30, 88.0, -88.0, 100.0, -100.0, 1e-45, 3.0, -3.0, 0.5, 20.0, -20.0])


def _inputs(seed, shape, positive=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g) * 3
    if positive:
        x = x.abs() + 1e-3
    return x


@pytest.mark.parametrize("i", range(len(UNARY)))
def test_unary_ops_fuzzed_and_special_values(i, math_impl):
    op = UNARY[i]

    def f(x, y):
        return op(x) + 1.0, op(y.t())

    cf = jcompile(f)
    for seed, shape in enumerate([(7, 33), (16, 130)]):
        x = _inputs(seed, shape)
        y = _inputs(seed + 7, shape[::-1])  # read transposed: non-contiguous
        assert_close(cf(x, y), f(x, y), rtol=1e-5, atol=1e-6)
    s = SPECIAL.reshape(1, -1).expand(3, -1).contiguous()
    if i in (20, 23):
        s = s.nan_to_num(posinf=1e30, neginf=-1e30)  # eager's gelu gives nan at +-inf
    assert_close(cf(s, s.t().contiguous()), f(s, s.t().contiguous()), rtol=1e-5, atol=1e-6)
    assert graphs() and all(g.num_kernels >= 1 for g in graphs())


BINARY = [torch.add, torch.sub, torch.mul, torch.div, torch.maximum, torch.minimum, torch.pow,
          torch.atan2, torch.fmod, torch.remainder, lambda a, b: torch.where(a > b, a, b * 2),
          lambda a, b: a < b, lambda a, b: a == b, lambda a, b: torch.sub(a, b, alpha=0.5),
          lambda a, b: torch.div(a, b, rounding_mode="floor"),
          lambda a, b: torch.div(a, b, rounding_mode="trunc")]


@pytest.mark.parametrize("i", range(len(BINARY)))
def test_binary_ops_broadcast_and_strides(i, math_impl):
    op = BINARY[i]

    def f(a, b, c):
        scalar = 2.5 if i not in (4, 5, 7) else torch.tensor(2.5)  # these take tensors only
        return op(a, b), op(a[:, :, ::2], c), op(b, scalar)

    cf = jcompile(f)
    a = _inputs(1, (5, 6, 8))
    b = _inputs(2, (6, 1))
    c = _inputs(3, (8, 5, 6)).permute(1, 2, 0)[:, :, ::2]  # (5, 6, 4) strided
    if op is torch.pow:
        a = a.abs()
    assert_close(cf(a, b, c), f(a, b, c), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dt", [torch.int64, torch.int32, torch.bool, torch.float64, torch.uint8])
def test_int_bool_dtypes_and_promotion(dt):
    def f(a, b, x):
        r = [a + b, a * 3, a == b, (a > 0) & (b >= 0) if dt != torch.bool else a & b,
             a + x, x * a, torch.where(a > 0, x, 1)]
        if dt not in (torch.bool, torch.uint8):
            r += [a // 2 if dt != torch.bool else a, a % 3, -a, torch.abs(a), torch.maximum(a, b), a / 2]
        return r

    cf = jcompile(f)
    g = torch.Generator().manual_seed(0)
    if dt == torch.bool:
        a = torch.rand(4, 9, generator=g) > 0.5
        b = torch.rand(4, 9, generator=g) > 0.5
    elif dt == torch.uint8:
        a = torch.randint(0, 200, (4, 9), generator=g, dtype=dt)
        b = torch.randint(0, 200, (4, 9), generator=g, dtype=dt)
    else:
        a = torch.randint(-50, 50, (4, 9), generator=g).to(dt)
        b = torch.randint(-50, 50, (4, 9), generator=g).to(dt)
    x = torch.randn(4, 9, generator=g)
    assert_close(cf(a, b, x), f(a, b, x))


def test_views_as_index_maps_not_copies():
    def f(x, y):
        a = x.permute(2, 0, 1) * 2  # (4, 3, 5)
        b = a[1:, ::2, 1:4] + y.unsqueeze(0)  # (3, 2, 3)
        c = b.reshape(3, 6).t() - 1  # split/merge of a lazy value
        d = x.select(1, 2).expand(2, 3, 4).sum(0) if False else x.select(1, 2) * 3
        e = torch.cat([x[:, :2], x[:, 2:] * 2, x[:, :1]], dim=1)
        p = torch.nn.functional.pad(x, (1, 2, 0, 1), value=-1.0)
        return c, d, e, p, x.transpose(0, 2).contiguous()

    cf = jcompile(f)
    x = _inputs(0, (3, 5, 4))
    y = _inputs(1, (2, 3))
    assert_close(cf(x, y), f(x, y))
    # no copy kernels for pure views: one kernel per output, plus one for the
    # reshape of a lazy value (the last output is a fresh contiguous tensor in
    # eager, so it is written too, not returned as a transposed view of x)
    assert graphs()[-1].num_kernels <= 6
    out = cf(x, y)[-1]
    assert out.is_contiguous() and out.untyped_storage().data_ptr() != x.untyped_storage().data_ptr()


def test_twenty_op_pointwise_chain_is_one_kernel():
    def f(x, y):
        a = x * 1.5 + y
        a = torch.tanh(a) - 0.5 * y
        a = torch.sigmoid(a) * x
        a = torch.exp(a * 0.1) + torch.sqrt(y.abs() + 1)
        a = a / (1 + x * x)
        a = torch.relu(a - 0.2) + torch.erf(a)
        a = a * a - x
        a = torch.log(a * a + 1.0) + 3.0
        return a

    cf = jcompile(f)
    x, y = _inputs(0, (64, 257)), _inputs(1, (64, 257))
    assert_close(cf(x, y), f(x, y), rtol=1e-5, atol=1e-5)
    g = graphs()[-1]
    assert g.num_kernels == 1
    (k,) = g.sched.kernels
    # only the result goes to memory: shared intermediates stay in registers
    assert [b for b in k.stored] == [g.prog.outputs[0][1].buf.name]
    # 20+ ops really are in that one kernel
    assert sum(op_count(m.node.expr) for m in k.members) >= 20


def test_nan_inf_propagation_pointwise():
    def f(x):
        return torch.maximum(x, torch.zeros_like(x)), torch.clamp(x, 0, 1), x * 0, torch.exp(x) - torch.exp(x)

    cf = jcompile(f)
    assert_close(cf(SPECIAL), f(SPECIAL))


def test_no_graph_rejected_unknown_op_runs_as_extern():
    def f(x, idx):
        y = torch.sin(x) * 2
        z = torch.cumsum(y, 0)  # no lowering: extern call
        return z.gather(1, idx) + 1

    cf = jcompile(f)
    x = _inputs(0, (5, 6))
    idx = torch.randint(0, 6, (5, 3))
    assert_close(cf(x, idx), f(x, idx))
    g = graphs()[-1]
    assert any("cumsum" in e for e in g.externs)
    assert g.num_kernels >= 1


def test_large_parallel_pointwise_and_noncontiguous_output():
    def f(x):
        return (torch.sigmoid(x) * x).t()

    cf = jcompile(f)
    x = _inputs(0, (512, 300))
    out = cf(x)
    assert_close(out, f(x))
    assert out.stride() == f(x).stride()


def test_input_mutation_is_applied():
    def f(x, y):
        x.add_(1)
        return x * y

    cf = jcompile(f)
    x1, y = _inputs(0, (4, 5)), _inputs(1, (4, 5))
    x2 = x1.clone()
    r1 = cf(x1, y)
    r2 = f(x2, y)
    assert_close(r1, r2)
    assert_close(x1, x2)


def test_math_constants_are_finite():
    assert math.isfinite(1.0)


@pytest.mark.parametrize("dt", [torch.float32, torch.float64])
def test_signed_zero_and_gelu_at_infinity_match_eager(dt):
    """tanh(-0) is -0; gelu at +-inf is what eager gives (NaN in float32's
    vectorised kernel, +inf/NaN in float64), forward and backward."""
    def f(x):
        return (torch.tanh(x), F.gelu(x), F.gelu(x, approximate="tanh"), x.clamp(min=0.0),
                F.hardtanh(x), torch.sign(x), x * -1.0, x.clamp(-1.0, 1.0), x.clamp(max=-0.0),
                torch.clamp(x, min=x.flip(0)), torch.clamp(x, max=x.flip(0)))  # NaN bounds too

    x = torch.tensor([-0.0, 0.0, float("inf"), float("-inf"), float("nan"), 1.0, -1.0, 1e-30,
                      -3.0, 50.0] * 3, dtype=dt)
    with torch.no_grad():
        got, ref = jcompile(f)(x), f(x)
    for a, e in zip(got, ref):
        assert_close(a, e)
        num = ~e.isnan()
        assert torch.equal(torch.signbit(a)[num], torch.signbit(e)[num])
    torch._dynamo.reset()
    xg = x.clone().requires_grad_()
    rg = x.clone().requires_grad_()
    jcompile(lambda t: F.gelu(t).sum())(xg).backward()
    F.gelu(rg).sum().backward()
    assert_close(xg.grad, rg.grad)


def test_vector_math_library_is_called_from_vectorised_loops():
    # with glibc's vector math the loop calls its 16/8/4-lane variants
    # (_ZGV<isa>N<lanes>v_<name>): a call of the scalar function per element
    # would be several times slower than the inline polynomials
    if not cpp_build.libmvec_available():
        pytest.skip("glibc's vector math is not available here")
    import re

    def f(x):
        return torch.tanh(x) * torch.erf(x) + torch.log1p(x.abs()) + torch.sigmoid(x)

    x = torch.randn(64, 1000, dtype=torch.float64).float()
    assert_close(jcompile(f)(x), f(x), rtol=1e-5, atol=1e-6)
    lib = open(graphs()[-1].build.path, "rb").read()
    for name in (b"tanhf", b"erff", b"log1pf", b"expf"):
        assert re.search(rb"_ZGV[bcde]N\d+v_" + name, lib), name
    xd = x.double()
    assert_close(jcompile(f)(xd), f(xd), rtol=1e-12, atol=1e-14)
    lib = open(graphs()[-1].build.path, "rb").read()
    assert re.search(rb"_ZGV[bcde]N\d+v_tanh\b", lib)
