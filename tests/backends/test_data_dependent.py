"""Graphs whose sizes depend on data, against eager.

nonzero, boolean-mask indexing, masked_select, unique / unique_consecutive,
and a number read from a tensor (``int(t)``, ``.item()``, ``.tolist()``)
used as a size: the operation runs as a library call, the size is read off
its result at run time, and the fused kernels after it take it as a size
argument.  Checked: values, dtypes, shapes and strides as eager's, inputs
unchanged, gradients through the selection, empty and one-element
selections, no recompile when the selected count changes, and that the
graph really ran kernels over the data-dependent size (strict mode: a
refusal raises).
"""
import pytest
import torch

from conftest import assert_close, graphs, jcompile

import janus_frame as jf
from janus_frame.backends.janus import force_triton


def _same(actual, expected):
    """assert_close, and the strides eager gives where they mean anything:
    dims longer than one of a non-empty tensor (eager itself lays out an
    empty or one-row result of the same op differently by op: ``i * 3`` and
    ``i + i`` of nonzero's one-row result)."""
    if isinstance(expected, (tuple, list)):
        assert len(actual) == len(expected)
        for a, e in zip(actual, expected):
            _same(a, e)
        return
    assert_close(actual, expected)
    if isinstance(expected, torch.Tensor) and expected.numel():
        mine = [st for n, st in zip(actual.shape, actual.stride()) if n > 1]
        theirs = [st for n, st in zip(expected.shape, expected.stride()) if n > 1]
        assert mine == theirs, (actual.stride(), expected.stride())


def _data_dependent_graphs():
    """The compiled graphs with a size read off a library call's result and
    at least one kernel (so a test cannot pass with the size left out)."""
    return [g for g in graphs() if g.prog.unbacked and g.num_kernels]


def masked_then_pointwise(x):
    return x[x > 0] * 2 + 1


def masked_select_reduce(x):
    return torch.masked_select(x, x > 0).exp().sum() + x.sum()


def nonzero_arith(x):
    i = torch.nonzero(x > 0)
    return i * 3, i.float().mean(0)


def unique_ops(x):
    u, inv, c = torch.unique(x, sorted=True, return_inverse=True, return_counts=True)
    return u * 2, inv, c.float() / c.sum()


def unique_consecutive_ops(x):
    v, c = torch.unique_consecutive(x, return_counts=True)
    return v + c, c.cumsum(0)


def masked_softmax(x):
    y = x[x > 0]
    z = y.reshape(-1, 1) * x.new_ones(3)
    return z.softmax(-1), z.t().contiguous()


def masked_rows_matmul(x, w):
    return (x[x.sum(1) > 0] @ w).relu()


def nonzero_gather(x):
    idx = torch.nonzero(x > 0.5).squeeze(1)
    return x.index_select(0, idx) + idx


def masked_cat_slice(x):
    y = x[x > 0]
    return torch.cat([y, y * 2]), y[:2] * 1


def two_masks(x):
    a, b = x[x > 0.5], x[x < -0.5]
    return a.sum() - b.sum(), a * 2, b.abs()


def _vec(k):
    return torch.randn(11 + k)


def _mat(k):
    return torch.randn(5, 4)


def _ints(k):
    return torch.randint(0, 4, (9 + k,))


CASES = [
    (masked_then_pointwise, lambda k: (_mat(k),)),
    (masked_select_reduce, lambda k: (_mat(k),)),
    (nonzero_arith, lambda k: (_mat(k),)),
    (unique_ops, lambda k: (_ints(k),)),
    (unique_consecutive_ops, lambda k: (_ints(k),)),
    (masked_softmax, lambda k: (_vec(0),)),
    (masked_rows_matmul, lambda k: (torch.randn(8, 4), torch.randn(4, 3))),
    (nonzero_gather, lambda k: (torch.rand(9),)),
    (masked_cat_slice, lambda k: (_vec(0),)),
    (two_masks, lambda k: (_vec(0),)),
]


@pytest.mark.parametrize("fn,make", CASES, ids=[c[0].__name__ for c in CASES])
def test_data_dependent_sizes_match_eager(fn, make):
    torch.manual_seed(0)
    compiled = jf.compile(fn)
    for k in range(4):
        args = make(k)
        before = [a.clone() for a in args]
        _same(compiled(*args), fn(*args))
        for a, b in zip(args, before):
            assert torch.equal(a, b)
    assert _data_dependent_graphs(), "no kernel ran over a data-dependent size"


def test_empty_and_single_selections():
    x_none, x_one = -torch.rand(4, 3), -torch.rand(4, 3)
    x_one[2, 1] = 0.5
    compiled = jf.compile(nonzero_arith)
    for x in (torch.randn(4, 3), x_none, x_one, torch.rand(4, 3)):
        _same(compiled(x), nonzero_arith(x))
    compiled = jf.compile(masked_softmax)
    for x in (torch.randn(6), -torch.rand(6), torch.tensor([-1.0, 2.0, -3.0])):
        _same(compiled(x), masked_softmax(x))


def test_new_selected_count_does_not_recompile():
    from janus_frame.cache import stats as cache_stats

    compiled = jf.compile(masked_then_pointwise)
    x = torch.randn(6, 5)
    _same(compiled(x), masked_then_pointwise(x))
    compiled_frames, n_graphs = cache_stats.frames_compiled, len(graphs())
    counts = set()
    for t in (-1.0, -0.5, 0.0, 0.5, 1.0, 2.0):
        x = torch.randn(6, 5) + t
        counts.add(int((x > 0).sum()))
        _same(compiled(x), masked_then_pointwise(x))
    assert len(counts) > 3
    assert cache_stats.frames_compiled == compiled_frames
    assert len(graphs()) == n_graphs


def selected_loss(x, w):
    y = x[x.sum(1) > 0]
    return ((y @ w).tanh() * 2).sum(), y * 1


def nonzero_loss(x):
    i = torch.nonzero(x > 0)
    v = x[i[:, 0], i[:, 1]]
    return (v.exp() * 3).mean()


@pytest.mark.parametrize("fn,make", [
    (selected_loss, lambda k: (torch.randn(8, 4) if k != 1 else -torch.rand(8, 4),
                               torch.randn(4, 3))),
    (nonzero_loss, lambda k: (torch.randn(5, 4) + 0.5,)),
    (masked_then_pointwise, lambda k: (torch.randn(3 + k, 4),)),
], ids=["selected_rows_matmul", "nonzero_gather", "masked_pointwise"])
def test_training_through_data_dependent_sizes(fn, make):
    torch.manual_seed(0)
    compiled = jf.compile(fn)
    for k in range(3):
        args = make(k)
        mine = [a.clone().requires_grad_() for a in args]
        ref = [a.clone().requires_grad_() for a in args]
        out, expected = compiled(*mine), fn(*ref)
        _same(out, expected)
        outs = out if isinstance(out, tuple) else (out,)
        refs = expected if isinstance(expected, tuple) else (expected,)
        for o, e in zip(outs, refs):
            assert o.requires_grad == e.requires_grad and (o.grad_fn is None) == (e.grad_fn is None)
        sum(o.sum() for o in outs).backward()
        sum(e.sum() for e in refs).backward()
        for a, b in zip(mine, ref):
            assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-6)
    assert _data_dependent_graphs(), "no kernel ran over a data-dependent size"
    # both halves compiled: a backward graph reads the saved size as an input
    assert any(g.prog.symbols and not g.prog.unbacked for g in graphs()) or \
        len(_data_dependent_graphs()) > 1


def item_as_size(x):
    n = int(x[0])
    return torch.ones(n) * x[1], torch.arange(n) + x.sum()


def tolist_sizes(x):
    a, b = x.tolist()
    return torch.zeros(a, 2) + b, x * 2


@pytest.mark.parametrize("fn", [item_as_size, tolist_sizes])
def test_number_read_from_data_as_size(fn):
    """Dynamo captures ``.item()`` / ``.tolist()`` (capture_scalar_outputs):
    the backend reads the number at run time (``_local_scalar_dense``), checks
    the graph's run-time assertions on it, and sizes the kernels by it."""
    with torch._dynamo.config.patch(capture_scalar_outputs=True):
        compiled = jcompile(fn)
        for k in range(4):
            x = torch.tensor([k + 1, 3])
            _same(compiled(x), fn(x))
    assert len(graphs()) == 1
    assert _data_dependent_graphs()


def test_triton_kernels_take_data_dependent_sizes():
    pytest.importorskip("triton")
    with force_triton():
        compiled = jf.compile(two_masks)
        for x in (torch.randn(10), torch.randn(10) + 0.5, -torch.rand(10)):
            _same(compiled(x), two_masks(x))
    g = graphs()[-1]
    assert g.backend == "triton" and g.prog.unbacked and g.triton_kernels
