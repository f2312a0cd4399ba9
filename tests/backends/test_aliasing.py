"""Aliasing between a graph's inputs and outputs, against eager.

Outputs that are views (of an input, of one intermediate, the base and its
view) come back as views with eager's size, stride and storage offset, and
writes through them reach what eager's would; in-place metadata ops on
inputs are applied; inputs sharing storage are compiled for that pattern and
a call with another pattern (the same tensor twice, overlapping slices, after
distinct tensors, or the reverse) gives eager's values.  Inference and
training (gradients through returned views), static and dynamic shapes.
"""
import pytest
import torch
import torch.fx as fx

from conftest import assert_close, jcompile

import janus_frame.backends.janus as jb
from janus_frame.backends.janus import janus_backend


def _same_view(a, e):
    assert a.shape == e.shape and a.stride() == e.stride(), (a.stride(), e.stride())
    assert a.storage_offset() == e.storage_offset()


def _shares(a, b):
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


def _views_of_input(x):
    x.mul_(3)
    return x[:, 2], x.diagonal(), x.t(), x.view(-1)[1:]


def _base_and_views(x):
    y = x * 2
    return y, y[1:], y[:, 1:].t()


def _views_of_intermediate(x):
    y = x + 1
    return y[:2], y[2:], y.unsqueeze(0)


@pytest.mark.parametrize("dynamic", [False, True])
@pytest.mark.parametrize("fn", [_views_of_input, _base_and_views, _views_of_intermediate])
def test_output_views_match_eager(fn, dynamic):
    cf = jcompile(fn, dynamic=dynamic)
    for n in (4, 6):
        x = torch.randn(n, n)
        xe = x.clone()
        outs, ref = cf(x), fn(xe)
        assert_close(x, xe)
        for a, e in zip(outs, ref):
            assert_close(a, e)
            _same_view(a, e)
        # memory shared exactly as in eager: writes through one output are
        # seen through every output (and input) eager's shares with
        for i, (a, e) in enumerate(zip(outs, ref)):
            for j, (b, f) in enumerate(zip(outs, ref)):
                assert _shares(a, b) == _shares(e, f), (i, j)
            assert _shares(a, x) == _shares(e, xe), i
        outs[0].fill_(-7.0)
        ref[0].fill_(-7.0)
        for a, e in zip(outs, ref):
            assert_close(a, e)
    assert jb.stats.graphs


@pytest.mark.parametrize("dynamic", [False, True])
def test_metadata_mutation_of_input(dynamic):
    def f(x):
        x.t_()
        y = x.unsqueeze_(0)
        return y * 2

    cf = jcompile(f, dynamic=dynamic)
    for n in (3, 5):
        x = torch.randn(n, 4)
        xe = x.clone()
        assert_close(cf(x), f(xe))
        _same_view(x, xe)


@pytest.mark.parametrize("dynamic", [False, True])
def test_training_gradients_through_returned_views(dynamic):
    def f(x, w):
        y = x @ w
        return y, y[1:], w.t()

    cf = jcompile(f, dynamic=dynamic)
    for n in (4, 6):
        x = torch.randn(n, 5)
        w = torch.randn(5, 3, requires_grad=True)
        we = w.detach().clone().requires_grad_()
        outs, ref = cf(x, w), f(x, we)
        for a, e in zip(outs, ref):
            assert_close(a, e)
            _same_view(a, e)
        sum((o * (i + 1)).sum() for i, o in enumerate(outs)).backward()
        sum((o * (i + 1)).sum() for i, o in enumerate(ref)).backward()
        assert_close(w.grad, we.grad)


def _mutate_first(a, b):
    a.mul_(2)
    return (a + b,)


def _backend_compiled(fn, example):
    """``fn`` through the backend alone: no frontend guard on the inputs'
    aliasing, so the backend's own per-call check is what is tested."""
    gm = fx.symbolic_trace(fn)
    return janus_backend(gm, [e.clone() if i == 0 else e for i, e in enumerate(example)])


def _patterns():
    t = torch.randn(10)
    same = torch.randn(4)
    return {
        "distinct": lambda: (torch.randn(4), torch.randn(4)),
        "same": lambda: (same.clone(),) * 2,
        "overlap": lambda: (lambda s: (s[:4], s[2:6]))(t.clone()),
    }


@pytest.mark.parametrize("first", ["distinct", "same", "overlap"])
def test_input_aliasing_pattern_checked_per_call(first):
    pats = _patterns()
    ex = pats[first]()
    if first == "same":
        ex = (ex[0], ex[0])
    gm = fx.symbolic_trace(_mutate_first)
    call = janus_backend(gm, list(ex))
    for name in ("distinct", "same", "overlap", first):
        args = pats[name]()
        if name == "same":
            b = args[0]
            args = (b, b)
        ref_args = _clone_preserving(args)
        before = jb.stats.alias_mismatches
        got = call(*args)
        ref = _mutate_first(*ref_args)
        assert_close(got[0], ref[0])
        assert_close(args[0], ref_args[0])
        assert_close(args[1], ref_args[1])
        mismatched = jb.stats.alias_mismatches > before
        assert mismatched == (name != first), name


def _clone_preserving(args):
    """Copies of ``args`` sharing storage as they do."""
    base = {}
    out = []
    for a in args:
        s = a.untyped_storage()
        key = s.data_ptr()
        if key not in base:
            base[key] = torch.empty(0, dtype=a.dtype).set_(
                torch.UntypedStorage(s.nbytes()).copy_(s), 0, (s.nbytes() // a.element_size(),))
        out.append(base[key].as_strided(a.shape, a.stride(), a.storage_offset()))
    return tuple(out)


def test_no_check_for_graphs_without_mutation_or_aliasing():
    def f(a, b, c, d):
        return (a * 2 + b * c - d,)

    gm = fx.symbolic_trace(f)
    call = janus_backend(gm, [torch.randn(3) for _ in range(4)])
    assert not hasattr(call, "janus_alias")  # the compiled graph itself: nothing per call
