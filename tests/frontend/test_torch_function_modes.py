"""Torch-function modes entered inside a compiled frame: the block is traced,
each operation dispatched through the mode's ``__torch_function__`` as torch
would (values/modes.py). Differential against eager; each test also checks
that the block was captured (graph count, no break) and that the real mode
stack is left as it was."""
from __future__ import annotations

import operator

import pytest
import torch
from torch.overrides import TorchFunctionMode

import janus_frame as jf
from janus_frame.torch_compat import len_torch_function_stack


class AddsOne(TorchFunctionMode):
    """Adds 1 to the result of every tensor addition."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func is torch.Tensor.add or func is torch.add:
            out = out + 1  # the mode is popped here: no recursion
        return out


class IndexSelect(TorchFunctionMode):
    """``t[i]`` with a 0-d tensor index as index_select (no int conversion)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is torch.Tensor.__getitem__ and isinstance(args[1], torch.Tensor) and \
                args[1].dim() == 0:
            return torch.index_select(args[0], 0, args[1].reshape(1)).squeeze(0)
        return func(*args, **(kwargs or {}))


class Doubles(TorchFunctionMode):
    """Doubles every addition's result (the ``*`` reaches the next mode)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func is torch.Tensor.add:
            out = out * 2
        return out


class ShiftsMul(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func is torch.Tensor.mul:
            out = out + 100
        return out


class Scaled(TorchFunctionMode):
    """State read by the handler: guarded like any attribute."""

    def __init__(self, scale):
        super().__init__()
        self.scale = scale

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func is torch.Tensor.sin:
            out = out * self.scale
        return out


class Records(TorchFunctionMode):
    """Sees factories and metadata too; records names (a side effect)."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.seen.append(getattr(func, "__name__", "?"))
        if func is torch.ones:
            return torch.full(tuple(args), 2.0)
        return func(*args, **(kwargs or {}))


def _check(fn, *args, graphs=1, fullgraph=True):
    from jfutil import Recorder, assert_same

    rec = Recorder()
    cf = jf.compile(fn, backend=rec, fullgraph=fullgraph)
    expected = fn(*args)
    assert len_torch_function_stack() == 0
    got = cf(*args)
    assert len_torch_function_stack() == 0, "the real mode stack changed"
    assert_same(expected, got)
    got = cf(*args)  # from the cache
    assert_same(expected, got)
    assert len(rec.graphs) == graphs, f"expected {graphs} graph(s), got {len(rec.graphs)}"
    return rec


def test_mode_rewrites_operators_methods_and_functions():
    def f(x, y):
        z = x * 2
        with AddsOne():
            a = x + y
            b = torch.add(a, 1)
            c = z.add(y)
        return a, b, c, z - y

    x, y = torch.randn(4, 3), torch.randn(4, 3)
    rec = _check(f, x, y)
    assert jf.explain(f)(x, y).break_count == 0
    assert len(rec.ops()) >= 7  # the handler's extra additions are in the graph


def test_getitem_with_0d_tensor_becomes_index_select():
    def f(x, i):
        with IndexSelect():
            return x[i] * 3

    x, i = torch.randn(5, 3), torch.tensor(2)
    rec = _check(f, x, i)
    assert torch.index_select in rec.ops()


def test_nested_modes_dispatch_inner_first_then_outer():
    def f(x, y):
        with ShiftsMul():
            with Doubles():
                r = x + y
            s = x * y
        return r, s

    x, y = torch.randn(3), torch.randn(3)
    _check(f, x, y)
    torch.testing.assert_close(f(x, y)[0], (x + y) * 2 + 100)


def test_mode_read_from_the_frame_and_its_state_is_guarded():
    mode = Scaled(3.0)

    def f(x):
        with mode:
            return x.sin() + 1

    x = torch.randn(4)
    rec = _check(f, x)
    mode.scale = 5.0  # the handler read it: the guard sees the change
    torch.testing.assert_close(jf.compile(f, backend=rec)(x), x.sin() * 5.0 + 1)


def test_mode_sees_factories_metadata_and_records_side_effects():
    def f(x):
        m = Records()
        with m:
            o = torch.ones(x.shape[0])
            n = x.dim()
            y = x * o + n
        return y, m.seen

    _check(f, torch.randn(3))


def test_different_mode_class_recompiles():
    def f(mode, x):
        with mode:
            return x + x

    x = torch.randn(3)
    rec = _check(f, AddsOne(), x)
    torch.testing.assert_close(jf.compile(f, backend=rec)(Doubles(), x), (x + x) * 2)
    assert len(rec.graphs) == 2


@jf.disable
def _native_step(x):
    return x + 10  # run natively: the real mode (re-entered) sees it


def test_break_inside_the_block_resumes_under_the_real_mode():
    def f(x):
        with AddsOne():
            a = x + 1
            b = _native_step(a)
            c = b + 1
        return a, b, c

    x = torch.randn(3)
    rec = _check(f, x, graphs=1, fullgraph=False)
    report = jf.explain(f)(x)
    assert report.break_count == 1 and report.breaks[0].id == "JF010"
    # the part before the break was traced through the mode
    assert rec.ops(0) == ["add", operator.add], rec.ops(0)


def test_exception_inside_the_block_pops_the_mode():
    def f(x):
        try:
            with AddsOne():
                y = x + 1
                raise ValueError("out")
        except ValueError:
            y = y + 1
        return y

    _check(f, torch.randn(3))


def test_nothing_changes_outside_the_block():
    def f(x):
        y = x + 1
        with AddsOne():
            pass
        return y + 1

    x = torch.randn(2)
    _check(f, x)


@pytest.mark.parametrize("op", ["neg", "getattr", "setitem", "len"])
def test_unary_attributes_and_subscripts(op):
    class Negates(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if isinstance(out, torch.Tensor):
                out = -out
            return out

    def f(x):
        x = x.clone()
        with Negates():
            if op == "neg":
                r = -x
            elif op == "getattr":
                r = x.T
            elif op == "setitem":
                x[0] = 5.0
                r = x
            else:
                r = len(x)
        return r, x

    _check(f, torch.randn(3, 3))


# -- torch.vmap ----------------------------------------------------------------------

W = torch.randn(3)


@pytest.mark.parametrize("in_dims", [0, (0, None), (1, 0)])
def test_vmap_in_dims_and_closures(in_dims):
    scale = torch.tensor(2.0)

    def f(x, y):
        def g(a, b):
            return (a * W).sum() * scale + b  # a module global and a closure tensor
        return torch.vmap(g, in_dims=in_dims)(x, y)

    x = torch.randn(3, 3)
    y = torch.randn(3) if in_dims != (0, None) else torch.randn(())
    rec = _check(f, x, y)
    assert all(not isinstance(op, str) or op != "sum" for op in rec.ops())  # inside the vmap


def test_vmap_nested_out_dims_and_tuple_outputs():
    def f(x, y):
        inner = torch.vmap(lambda a, b: (a * b, a - b), in_dims=(0, None))
        outer = torch.vmap(inner, in_dims=(1, 0), out_dims=(0, 1))
        return outer(x, y)

    _check(f, torch.randn(4, 5), torch.randn(5, 2))


def test_vmap_of_torch_func_vmap_and_partial():
    import functools

    def add(a, b, c):
        return a * c + b

    def f(x, y):
        return torch.func.vmap(functools.partial(add, c=3.0))(x, y)

    _check(f, torch.randn(4, 2), torch.randn(4, 2))


def test_vmap_closure_guarded():
    state = {"k": 2.0}

    def f(x):
        return torch.vmap(lambda a: a * state["k"])(x)

    x = torch.randn(3, 2)
    rec = _check(f, x)
    state["k"] = 5.0
    torch.testing.assert_close(jf.compile(f, backend=rec)(x), x * 5.0)


def test_vmap_under_a_mode_with_0d_index():
    # transformers' mask construction: vmapped indexing by the batched
    # 0-d indices, under a mode that turns those subscripts into index ops
    def f(mask, q, k):
        def fn(qi, ki):
            return (ki <= qi) & mask[ki].bool()
        with IndexSelect():
            return torch.vmap(torch.vmap(fn, in_dims=(None, 0)), in_dims=(0, None))(q, k)

    mask = torch.tensor([1, 1, 0, 1])
    _check(f, mask, torch.arange(3), torch.arange(4))


def test_vmap_default_backend():
    def f(x):
        return torch.vmap(lambda a: torch.tanh(a) * 2 + a.sum())(x)

    x = torch.randn(4, 8)
    torch.testing.assert_close(jf.compile(f, fullgraph=True)(x), f(x))


def test_mode_state_queries_inside_the_block_break_soundly():
    def f(x):
        z = x * 2
        with AddsOne():
            n = torch._C._len_torch_function_stack()  # 1: the mode is entered
            y = z + n
        return y, n

    x = torch.randn(3)
    rec = _check(f, x, graphs=1, fullgraph=False)
    assert jf.explain(f)(x).break_count == 1


# -- autograd.Function where no gradient flows (transformers' mask indexing) ---------

class Square(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(x, shift):
        return x * x + shift

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 2 * x * g, None


class SquareApply(Square):
    @classmethod
    def apply(cls, *args):  # an override reaching Function.apply through super()
        return super().apply(*args)


class OldStyle(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.mark_non_differentiable(x)
        return x.exp()

    @staticmethod
    def backward(ctx, g):
        return g


@pytest.mark.parametrize("cls", [Square, SquareApply])
def test_function_apply_without_grad_is_traced(cls):
    def f(x):
        with torch.no_grad():
            return cls.apply(x, 1.0) * 2, OldStyle.apply(x)

    _check(f, torch.randn(4))


def test_function_apply_under_vmap():
    def f(x):
        return torch.vmap(lambda a: Square.apply(a, 2.0).sum())(x)

    _check(f, torch.randn(3, 4))


def test_function_apply_needing_grad_runs_natively():
    def f(x):
        return Square.apply(x, 1.0).sum()

    x = torch.randn(4, requires_grad=True)
    _check(f, x, graphs=2, fullgraph=False)  # around Function.apply, run natively
    assert {b.id for b in jf.explain(f)(x).breaks} == {"JF002"}
    f(x).backward()
    g = x.grad.clone()
    x.grad = None
    jf.compile(f, backend="eager")(x).backward()
    torch.testing.assert_close(x.grad, g)


# -- guards on dict entries whose key is not a literal --------------------------------

TABLE = {tuple: 2.0, list: 3.0}


def test_dict_keyed_by_a_class_is_guarded():
    def f(x):
        return x * TABLE[tuple], (tuple in TABLE)

    x = torch.randn(3)
    rec = _check(f, x)
    TABLE[tuple] = 5.0
    try:
        torch.testing.assert_close(jf.compile(f, backend=rec)(x)[0], x * 5.0)
    finally:
        TABLE[tuple] = 2.0
