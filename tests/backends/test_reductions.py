"""Reductions and fusion around them (C++ path): differential tests over axes,
keepdim, strides and dtypes; kernel counts for softmax, layer norm,
log-softmax + NLL and bias+GELU after a matmul."""
import re

import pytest
import torch
import torch.nn.functional as F

from conftest import assert_close, graphs, jcompile

RED = [lambda x, d: x.sum(d), lambda x, d: x.mean(d, keepdim=True), lambda x, d: x.amax(d),
       lambda x, d: x.amin(d, keepdim=True), lambda x, d: x.max(d).values + x.max(d).indices,
       lambda x, d: x.argmax(d), lambda x, d: x.argmin(d), lambda x, d: x.var(d),
       lambda x, d: x.std(d, correction=0), lambda x, d: torch.var_mean(x, d)[1],
       lambda x, d: torch.logsumexp(x, d), lambda x, d: (x > 0).any(d),
       lambda x, d: (x > -2).all(d), lambda x, d: x.prod(d), lambda x, d: (x * x).sum()]


@pytest.mark.parametrize("i", range(len(RED)))
@pytest.mark.parametrize("dim", [-1, 0, 1])
def test_reductions_over_axes_and_strides(i, dim):
    op = RED[i]

    def f(x, y):
        return op(x * 1.0 + 0.5, dim), op(y, dim)

    cf = jcompile(f)
    g = torch.Generator().manual_seed(i)
    x = torch.randn(6, 9, 17, generator=g)
    y = torch.randn(17, 9, 6, generator=g).permute(2, 1, 0)  # non-contiguous
    if i == 13:
        x, y = x.clamp(0.5, 1.5), y.clamp(0.5, 1.5)
    assert_close(cf(x, y), f(x, y), rtol=1e-4, atol=1e-5)


def test_reduction_nan_inf_semantics():
    def f(x):
        return x.amax(-1), x.argmax(-1), x.sum(-1), torch.softmax(x, -1), x.amin(-1)

    cf = jcompile(f)
    x = torch.randn(5, 40)
    x[0, 3] = float("nan")
    x[1, :] = float("-inf")
    x[2, 7] = float("inf")
    x[3, :20] = float("-inf")  # masked softmax row
    x[4, 10] = float("nan")
    x[4, 30] = float("nan")
    assert_close(cf(x), f(x))


def test_large_reductions_parallel_and_accurate():
    def f(x):
        return x.sum(), x.mean(0), x.amax(), torch.softmax(x, -1)

    cf = jcompile(f)
    x = torch.randn(1024, 2048)
    assert_close(cf(x), f(x), rtol=1e-4, atol=1e-4)


def test_softmax_is_one_kernel():
    cf = jcompile(lambda x: torch.softmax(x, -1))
    x = torch.randn(64, 1000)
    assert_close(cf(x), torch.softmax(x, -1), rtol=1e-5, atol=1e-7)
    assert graphs()[-1].num_kernels == 1
    assert not graphs()[-1].externs


def test_softmax_exp_computed_once_in_a_row_scratch():
    """exp(x - max) is stored once per row in a scratch array and read back by
    the normalisation: one kernel, no workspace, one exp in the C source."""
    def f(x):
        return torch.softmax(x, -1), torch.exp(x - x.amax(-1, keepdim=True)) / 3.0

    cf = jcompile(f)
    x = torch.randn(33, 1000)
    x[0, 5] = float("nan")
    x[1, :] = float("-inf")
    x[2, 3] = float("inf")
    x[3, :] = -1e30  # row sum 1000 * exp(0)
    assert_close(cf(x), f(x), rtol=1e-5, atol=1e-7)
    g = graphs()[-1]
    assert g.num_kernels == 1
    k = g.sched.kernels[0]
    assert k.row_local and not g.sched.arena
    body = g.source[g.source.index("/* k"):]
    assert body.count("jf_exp(") == 2, body  # one per exp(x - max), not one per use


def test_softmax_wide_rows_and_tiny_row_sums():
    def f(x, y):
        return torch.softmax(x, -1), y / y.sum(-1, keepdim=True)

    cf = jcompile(f)
    x = torch.randn(3, 20000)  # wider than a row scratch
    y = torch.rand(4, 8)
    y[0] = 1e-41  # subnormal sum: its reciprocal overflows
    y[1] = 0.0
    y[2, 0] = float("inf")
    assert_close(cf(x, y), f(x, y), rtol=1e-5, atol=1e-7)


def test_softmax_inner_dim_of_4d_is_one_kernel():
    cf = jcompile(lambda x: torch.softmax(x, 1))
    x = torch.randn(2, 7, 3, 5)
    assert_close(cf(x), torch.softmax(x, 1))
    assert graphs()[-1].num_kernels == 1


def test_layer_norm_forward_is_one_kernel():
    ln = torch.nn.LayerNorm(256)
    with torch.no_grad():
        ln.weight.uniform_(0.5, 1.5)
        ln.bias.uniform_(-0.5, 0.5)

    def f(x):
        return ln(x)

    cf = jcompile(f)
    x = torch.randn(4, 32, 256) * 2 + 1
    with torch.no_grad():
        assert_close(cf(x), f(x), rtol=1e-4, atol=1e-5)
    assert graphs()[-1].num_kernels == 1


def test_log_softmax_nll_is_one_reduction_kernel():
    def f(x, t):
        return F.nll_loss(F.log_softmax(x, -1), t, reduction="none")

    cf = jcompile(f)
    x = torch.randn(32, 10)
    t = torch.randint(0, 10, (32,))
    assert_close(cf(x, t), f(x, t), rtol=1e-5, atol=1e-6)
    g = graphs()[-1]
    # the log-softmax, the gather of the targets' entries and the loss are
    # one reduction kernel; the range check reads the targets as given (no
    # kernel of its own computing the class indices with ignore_index
    # mapped to 0: the gather computes them inline)
    assert g.num_kernels == 1, g.sched.format()
    text = g.sched.format()
    assert text.count("reduction") == 1 and "check_target" in text, text


def test_bias_gelu_after_matmul_is_extern_plus_one_kernel():
    def f(x, w, b):
        return F.gelu(x @ w + b)

    cf = jcompile(f)
    x, w, b = torch.randn(64, 128), torch.randn(128, 256), torch.randn(256)
    assert_close(cf(x, w, b), f(x, w, b), rtol=1e-5, atol=1e-5)
    g = graphs()[-1]
    assert g.num_kernels == 1
    assert len(g.externs) == 1 and "mm" in g.externs[0]


def test_batchnorm_eval_and_train_forward():
    bn = torch.nn.BatchNorm2d(8)
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)

    def f(x):
        return torch.relu(bn(x))

    x = torch.randn(4, 8, 6, 6)
    bn.eval()
    cf = jcompile(f)
    with torch.no_grad():
        assert_close(cf(x), f(x), rtol=1e-5, atol=1e-5)
    torch._dynamo.reset()
    bn.train()
    bn2 = torch.nn.BatchNorm2d(8)
    bn2.load_state_dict(bn.state_dict())
    cf = jcompile(f)
    with torch.no_grad():
        out = cf(x)
        bn_state = {k: v.clone() for k, v in bn.state_dict().items()}
        bn.load_state_dict(bn2.state_dict())
        ref = f(x)
    assert_close(out, ref, rtol=1e-4, atol=1e-5)
    for k, v in bn.state_dict().items():
        assert_close(bn_state[k], v, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("n", [5, 16, 37, 4100])
def test_variance_is_single_pass_welford_and_stable(n):
    """var/std/var_mean: mean and M2 by Welford in one pass over the row (one
    pass of the kernel); a large offset costs no precision (float64 reference)."""
    def f(x):
        return x.var(-1), x.std(-1, correction=0), torch.var_mean(x, -1, keepdim=True)

    cf = jcompile(f)
    g = torch.Generator().manual_seed(n)
    x = 1e4 + torch.randn(6, n, generator=g)
    out = cf(x)
    ref = f(x.double())
    for a, e in zip(out[:2] + tuple(out[2]), ref[:2] + tuple(ref[2])):
        torch.testing.assert_close(a.double(), e, rtol=2e-3, atol=1e-3)
    assert_close(cf(x * 0 + 3.0), f(x * 0 + 3.0))  # constant rows: exactly zero variance
    k = graphs()[-1].sched.kernels[0]
    reds = [m for m in k.members if m.node.__class__.__name__ == "Reduction"]
    assert {m.node.rtype for m in reds} == {"wmean", "wm2"}
    assert {m.pass_ for m in reds} == {0}


@pytest.mark.parametrize("shape", [(5, 3, 37), (16, 4, 64), (7, 2, 3), (3, 5, 2, 21)])
def test_variance_over_non_adjacent_axes_merges_rows(shape):
    """Batch-norm statistics (reduced axes around the kept one): each inner
    row is reduced in vectorised lanes, rows merged into a running total;
    rows shorter than the lane count, tails and a large offset included."""
    dims = (0, 2) if len(shape) == 3 else (0, 2, 3)

    def f(x):
        return torch.var_mean(x, dims, correction=0), x.var(dims)

    cf = jcompile(f)
    g = torch.Generator().manual_seed(sum(shape))
    x = 1e4 + torch.randn(*shape, generator=g)
    out, ref = cf(x), f(x.double())
    for a, e in zip(tuple(out[0]) + (out[1],), tuple(ref[0]) + (ref[1],)):
        torch.testing.assert_close(a.double(), e, rtol=2e-3, atol=1e-3)
    assert_close(cf(x * 0 + 3.0), f(x * 0 + 3.0))
    y = torch.randn(*shape, generator=g)
    y.view(-1)[1] = float("nan")
    assert_close(cf(y), f(y), rtol=1e-4, atol=1e-5)


def test_variance_dynamic_shapes_and_layer_norm_grad_fp64():
    cf = jcompile(lambda x: torch.var_mean(x, 1), dynamic=True)
    for shape in [(3, 7), (4, 40), (2, 1)]:
        x = torch.randn(*shape)
        assert_close(cf(x), torch.var_mean(x, 1), rtol=1e-4, atol=1e-6)
    torch._dynamo.reset()

    def ln(x, w, b):
        return F.layer_norm(x, (x.shape[-1],), w, b)

    x = torch.randn(4, 21, dtype=torch.float64, requires_grad=True)
    w = torch.randn(21, dtype=torch.float64, requires_grad=True)
    b = torch.randn(21, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(jcompile(ln), (x, w, b))


@pytest.mark.parametrize("rows,cols,double", [
    (4096, 32, True),   # one accumulator per column over every row
    (300, 8, True),
    (200, 8, False),
    (4096, 16, True),   # few columns: rows split in 8 fixed chunks of 512
    (2048, 24, False),  # ... of 256: float
])
def test_column_reductions_accumulate_accurately(rows, cols, double):
    # a column (outer-axis) reduction walks every row with one accumulator:
    # in float, 4096 rows of values near 10 drift ~3e-6 from the exact sums
    # (eager's: ~1e-7); past DOUBLE_ACC_MIN rows per accumulator it accumulates
    # in double
    torch.manual_seed(0)
    x = torch.rand(rows, cols) + 10.0

    def f(x):
        return (x.sum(0),) + tuple(torch.var_mean(x, 0))

    got = jcompile(f)(x)
    exact = f(x.double())
    # (short float accumulations stay within the backend's 1e-5 on the variance)
    bound = 5e-7 if double else 1e-5
    for g, e in zip(got, exact):
        assert g.dtype == torch.float32
        assert ((g.double() - e).abs().max() / e.abs().max()).item() < bound
    src = graphs()[-1].source
    assert bool(re.search(r"double (acc|ca|cm|wm)_", src)) == double


@pytest.mark.parametrize("n,acc", [(1000, "float"), (2048, "jf_rsum_t"), (5000, "double")])
def test_row_sum_accumulator_follows_its_partials(n, acc):
    # a row sum keeps one partial per vector lane: up to 1024 elements float,
    # to 4096 float only with AVX-512's 16 lanes (jf_rsum_t), then double
    x = torch.rand(4, n) + 10.0
    got = jcompile(lambda x: x.sum(-1))(x)
    assert ((got.double() - x.double().sum(-1)).abs().max() / (10 * n)).item() < 1e-6
    assert re.search(rf"\b{acc} acc_", graphs()[-1].source)
