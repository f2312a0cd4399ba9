"""Triton code generation, checked with TRITON_INTERPRET=1 on CPU tensors
(small shapes: the interpreter costs ~1 ms per program instance) for the same
op families as the C++ path: pointwise, views, dtypes, persistent and looped
row reductions, softmax / layer norm fusion, gather."""
import logging

import pytest
import torch
import torch.nn.functional as F

from conftest import assert_close, graphs, jcompile

pytest.importorskip("triton")


@pytest.fixture(autouse=True)
def _triton():
    from janus_frame.backends.janus import force_triton

    with force_triton():
        yield


def _run(f, *args, rtol=1e-5, atol=1e-6):
    cf = jcompile(f)
    assert_close(cf(*args), f(*args), rtol=rtol, atol=atol)
    g = graphs()[-1]
    assert g.backend == "triton" and g.triton_kernels
    return g


SPECIAL = torch.tensor([0.0, 1.0, -1.0, float("inf"), float("-inf"), float("nan"), 1e-20, 30.0, -30.0, 0.5])


@pytest.mark.parametrize("op", [torch.exp, torch.log, torch.tanh, torch.sigmoid, torch.erf, torch.sqrt,
                                torch.rsqrt, torch.log1p, torch.expm1, torch.abs, torch.relu, torch.round,
                                torch.floor, torch.sign, lambda x: x.pow(2.5), F.gelu, F.silu,
                                lambda x: torch.clamp(x, -0.5, 0.5)])
def test_triton_unary(op):
    x = torch.randn(6, 20) * 3
    s = SPECIAL if op not in (F.gelu,) else SPECIAL.nan_to_num(posinf=1e30, neginf=-1e30)  # eager: gelu(inf) is nan
    _run(lambda x, y: (op(x) * 2 + 1, op(y)), x, s)


def test_triton_binary_broadcast_strides_and_promotion():
    def f(a, b, c, i):
        return (a * b + c.t(), torch.maximum(a, b), torch.where(a > b, a, c.t()), a + i, i // 3, i % 4,
                a[:, ::2] - 1, torch.cat([a, c.t()], 1), (a > 0) & (b < 0))

    a, b = torch.randn(5, 8), torch.randn(1, 8)
    c = torch.randn(8, 5)
    i = torch.randint(-20, 20, (5, 8))
    _run(f, a, b, c, i)


def test_triton_softmax_persistent_one_kernel():
    x = torch.randn(16, 100)
    x[0, :50] = float("-inf")
    g = _run(lambda x: torch.softmax(x, -1), x)
    assert g.num_kernels == 1
    src = next(iter(g.triton_kernels.values())).source
    assert "for roff" not in src and "tl.max(" in src  # persistent: no loop over the row


def test_triton_looped_reduction():
    x = torch.randn(4, 3000)
    g = _run(lambda x: (x.sum(-1), x.amax(-1), torch.softmax(x, -1)), x, rtol=1e-4, atol=1e-5)
    src = "".join(k.source for k in g.triton_kernels.values())
    assert "for roff" in src


def test_triton_layer_norm_one_kernel():
    x = torch.randn(8, 64)
    w, b = torch.randn(64), torch.randn(64)
    g = _run(lambda x, w, b: F.layer_norm(x, (64,), w, b), x, w, b, rtol=1e-4, atol=1e-5)
    assert g.num_kernels == 1


def test_triton_reductions_over_axes():
    x = torch.randn(6, 5, 7)

    def f(x):
        return x.sum(1), x.mean((0, 2)), x.amax(0), x.argmax(-1), x.var(-1), (x > 1).any(-1)

    _run(f, x, rtol=1e-4, atol=1e-5)


def test_triton_gather_nll_and_bias_gelu():
    x, t = torch.randn(8, 10), torch.randint(0, 10, (8,))
    g = _run(lambda x, t: F.nll_loss(F.log_softmax(x, -1), t, reduction="none"), x, t)
    assert g.num_kernels == 1
    torch._dynamo.reset()
    a, w, b = torch.randn(8, 16), torch.randn(16, 32), torch.randn(32)
    g = _run(lambda a, w, b: F.gelu(a @ w + b), a, w, b, rtol=1e-5, atol=1e-5)
    assert g.num_kernels == 1 and len(g.externs) == 1


def test_triton_source_is_logged():
    records = []

    class H(logging.Handler):
        def emit(self, r):
            records.append(r.getMessage())

    lg = logging.getLogger("janus_frame.kernels")
    h, old = H(), lg.level
    lg.addHandler(h)
    lg.setLevel(logging.DEBUG)
    try:
        _run(lambda x: torch.tanh(x) + 1, torch.randn(10))
    finally:
        lg.removeHandler(h)
        lg.setLevel(old)
    assert any("@triton.jit" in r for r in records)


def test_triton_welford_variance_persistent_and_looped():
    def f(x, y):
        return torch.var_mean(x, -1), y.var(-1), y.std(0)

    x, y = torch.randn(4, 33) + 100.0, torch.randn(3, 1500) + 100.0
    out = jcompile(f)(x, y)
    assert graphs()[-1].backend == "triton"
    ref = f(x.double(), y.double())
    for a, e in zip(tuple(out[0]) + out[1:], tuple(ref[0]) + ref[1:]):
        torch.testing.assert_close(a.double(), e, rtol=1e-3, atol=1e-3)


def test_triton_symbolic_sizes_and_symbolic_float_scalar():
    # batch norm in training over a dynamic batch: its running variance uses
    # the symbolic float n / (n - 1)
    import janus_frame as jf

    mean, var = torch.zeros(4), torch.ones(4)
    rm, rv = mean.clone(), var.clone()

    def f(x, m, v):
        return F.batch_norm(x, m, v, training=True, momentum=0.1) * 2

    cf = jf.compile(f, dynamic=True)
    for n in (3, 5):
        x = torch.randn(n, 4)
        assert_close(cf(x, mean, var), f(x, rm, rv), rtol=1e-5, atol=1e-6)
        assert_close(mean, rm, rtol=1e-5, atol=1e-6)
        assert_close(var, rv, rtol=1e-5, atol=1e-6)
    g = graphs()[-1]
    assert g.backend == "triton" and g.prog.symbols
    jf.reset()
