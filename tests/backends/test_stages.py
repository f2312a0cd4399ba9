"""Staged inner loops (codegen.c.stages): a pointwise body chaining several
transcendentals runs as blocks of short loops.  The staged kernels must give
eager's results within the pointwise tolerance and, with the inline
polynomial math, bitwise the results of the unstaged ones (same expressions,
same order per element), over lengths that are not multiples of the block,
strided and broadcast inputs, dynamic sizes, a value passed between stages as
bool, float64, and an input updated in place (a load of a buffer the kernel
writes is never repeated after the store).  With glibc's vector math the
elements a loop leaves to its scalar remainder call the scalar libm function
(another rounding): there, staged and unstaged agree to a few ulp."""
import re

import pytest
import torch

from conftest import assert_close, graphs, jcompile
from janus_frame.backends.janus.codegen.c import stages
from janus_frame.backends.janus import build as cpp_build


@pytest.fixture(autouse=True, params=["libmvec", "polynomial"])
def math_impl(request, monkeypatch):
    if request.param == "polynomial":
        monkeypatch.setattr(cpp_build, "libmvec_available", lambda: False)
    elif not cpp_build.libmvec_available():
        pytest.skip("glibc's vector math is not available here")
    return request.param


def _same(a, b, math_impl):
    if math_impl == "polynomial":
        assert torch.equal(a.nan_to_num(7.0), b.nan_to_num(7.0))
    else:
        assert_close(a, b, rtol=1e-6, atol=5e-7)


def chain(x, y):
    a = torch.tanh(x)
    b = torch.sigmoid(y)
    d = torch.exp(-(a * b).abs())
    e = torch.sqrt(d + 1.0)
    g = torch.tanh((e * x - y) * 0.5)
    h = torch.sigmoid(g + a)
    i = torch.log1p(h * h)
    return torch.erf(i - b) * 2.0 + e


def _kernel_src():
    src = graphs()[-1].source
    return src[src.index("/* k"):]


def _unstaged(fn, *args, dynamic=False):
    torch._dynamo.reset()
    old = stages.ENABLED
    stages.ENABLED = False
    try:
        out = jcompile(fn, dynamic=dynamic)(*args)
        assert f"+= {stages.STAGE_BLOCK})" not in _kernel_src()
        return out
    finally:
        stages.ENABLED = old
        torch._dynamo.reset()


def test_chain_is_staged_and_equal_to_unstaged(math_impl):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(517, 300, generator=g) * 3, torch.randn(517, 300, generator=g) * 3
    out = jcompile(chain)(x, y)
    src = _kernel_src()
    assert graphs()[-1].num_kernels == 1
    assert f"+= {stages.STAGE_BLOCK})" in src
    # eight transcendentals (and a sqrt): one per stage loop
    assert src.count("#pragma omp simd") >= 8
    assert "parallel for simd" not in src
    assert_close(out, chain(x, y), rtol=1e-5, atol=1e-5)
    _same(out, _unstaged(chain, x, y), math_impl)


@pytest.mark.parametrize("case", ["1d-short", "1d-tail", "strided", "broadcast", "3d"])
def test_staged_shapes(case, math_impl):
    g = torch.Generator().manual_seed(1)
    if case == "1d-short":
        x, y = torch.randn(37, generator=g), torch.randn(37, generator=g)
    elif case == "1d-tail":
        x, y = torch.randn(1000, generator=g), torch.randn(1000, generator=g)
    elif case == "strided":
        x = torch.randn(300, 200, generator=g).t()
        y = torch.randn(200, 600, generator=g)[:, ::2]
    elif case == "broadcast":
        x, y = torch.randn(64, 257, generator=g), torch.randn(257, generator=g)
    else:
        x, y = torch.randn(3, 50, 70, generator=g), torch.randn(3, 1, 70, generator=g)
    out = jcompile(chain)(x, y)
    assert f"+= {stages.STAGE_BLOCK})" in _kernel_src()
    assert_close(out, chain(x, y), rtol=1e-5, atol=1e-5)
    _same(out, _unstaged(chain, x, y), math_impl)


def test_staged_dynamic_sizes(math_impl):
    cf = jcompile(chain, dynamic=True)
    g = torch.Generator().manual_seed(2)
    for n in (5, 130, 999):
        x, y = torch.randn(n, 33, generator=g), torch.randn(n, 33, generator=g)
        out = cf(x, y)
        assert_close(out, chain(x, y), rtol=1e-5, atol=1e-5)
    assert f"+= {stages.STAGE_BLOCK})" in _kernel_src()
    _same(out, _unstaged(chain, x, y, dynamic=True), math_impl)


def test_bool_and_float64_values_cross_stages(math_impl):
    def f(x):
        m = x > 0.25
        t = torch.tanh(torch.sigmoid(x) * 3.0)
        return torch.where(m, torch.erf(t), torch.exp(-t * x)) + m.to(x.dtype)

    g = torch.Generator().manual_seed(3)
    for dt in (torch.float32, torch.float64):
        torch._dynamo.reset()
        x = torch.randn(70, 90, generator=g, dtype=dt)
        x[0, :4] = torch.tensor([float("nan"), float("inf"), -float("inf"), -0.0], dtype=dt)
        out = jcompile(f)(x)
        src = _kernel_src()
        assert f"+= {stages.STAGE_BLOCK})" in src
        if dt == torch.float32:
            assert "bool s_" in src  # the mask is passed to a later stage
        assert_close(out, f(x), rtol=1e-5, atol=1e-6)
        _same(out, _unstaged(f, x), math_impl)


def test_input_updated_in_place_is_passed_between_stages_not_reloaded():
    def f(x, y):
        old = x.clone()
        x.copy_(torch.sigmoid(torch.tanh(y) * old))
        return torch.erf(torch.exp(old)) * old

    g = torch.Generator().manual_seed(4)
    x0, y = torch.randn(129, 65, generator=g), torch.randn(129, 65, generator=g)
    xe, xj = x0.clone(), x0.clone()
    expected = f(xe, y)
    out = jcompile(f)(xj, y)
    src = _kernel_src()
    assert f"+= {stages.STAGE_BLOCK})" in src
    # the kernel stores into x and reads its old value in several stages:
    # that value goes through a block array, x is loaded once
    written = re.findall(r"[(,] ?float\* JF_RESTRICT (\w+)", src)
    assert written
    for p in written:
        assert src.count(f"= {p}[") <= 1, p
    assert_close(out, expected, rtol=1e-5, atol=1e-6)
    assert_close(xj, xe, rtol=1e-5, atol=1e-6)


def test_one_expensive_call_is_not_staged():
    def f(x):
        return torch.nn.functional.gelu(x) * 2.0 + x

    x = torch.randn(300, 300)
    assert_close(jcompile(f)(x), f(x))
    assert f"+= {stages.STAGE_BLOCK})" not in _kernel_src()


def test_divisions_and_roots_alone_are_not_staged():
    def f(a, b, c, d):
        return a / (torch.sqrt(b.abs()) + 1e-8) + c / torch.sqrt(d.abs() + 1.0) - a / (c.abs() + 1)

    args = [torch.randn(300, 300) for _ in range(4)]
    assert_close(jcompile(f)(*args), f(*args), rtol=1e-5, atol=1e-5)
    assert f"+= {stages.STAGE_BLOCK})" not in _kernel_src()


def test_cost_model():
    assert stages.cost("jf_tanh(t2_1)") == 1.0
    assert stages.cost("(t2_1 / t2_2)") == 0.5
    assert stages.cost("__builtin_sqrtf(t2_8)") == 0.5
    assert stages.cost("(t2_1 * t2_3)") == 0.0
    assert stages.cost("sinf(t2_1)") == 1.0


def test_library_call_inlined_where_many_values_stay_live():
    # a vector-math call across which many values of the body stay live
    # becomes the inline polynomial (the library call would spill them)
    big = ["  for (int64_t i1 = 0; i1 < n; ++i1) {"]
    big += [f"    const float t4_{k} = p_in{k}[(i1)];" for k in range(6)]
    big += ["    const float t4_6 = jf_tanh(t4_0);"]
    big += ["    const float t4_7 = (t4_6 + t4_1 + t4_2 + t4_3 + t4_4 + t4_5);",
            "    p_out[(i1)] = t4_7;", "  }"]
    small = ["  for (int64_t i1 = 0; i1 < n; ++i1) {",
             "    const float t3_0 = p_in0[(i1)];", "    const float t3_1 = jf_exp((t3_0 - h1));",
             "    row[(i1)] = t3_1;", "    acc += t3_1;", "  }"]
    lines = ["void k(void) {", *big, *small, "}"]
    stages.inline_math(lines)
    text = "\n".join(lines)
    assert "jf_tanh_p(t4_0)" in text
    assert "jf_exp((t3_0 - h1))" in text and "jf_exp_p" not in text


def test_inlined_polynomials_in_a_large_body_match_eager(math_impl):
    # the LSTM gate gradient: four slices of one concatenated result, one
    # of them through tanh, summed over the batch in the same kernel
    def f(d, a, b, c, e, g):
        gi = d * a * (1 - a)
        gf = d * b * (1 - b)
        gg = d * c * (1 - c * c)
        go = e * torch.tanh(g) * a * (1 - a)
        cat = torch.cat([gi, gf, gg, go], 1)
        return cat, cat.sum(0)

    gen = torch.Generator().manual_seed(7)
    args = [torch.randn(16, 256, generator=gen) for _ in range(6)]
    out = jcompile(f)(*args)
    assert_close(out, f(*args), rtol=1e-5, atol=1e-5)
    src = _kernel_src()
    assert "jf_tanh" in src
    if math_impl == "libmvec":
        assert "jf_tanh_p(" in src
