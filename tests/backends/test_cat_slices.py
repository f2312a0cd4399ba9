"""A cat of several inputs (5 to 8) lowered to one buffer that each input is computed
into (a slice per input), against eager, in C++ and in Triton-interpreter
mode: producers in different kernels and orders, readers fused after the
last writer, views of inputs, type promotion, a middle axis, the cat as a
graph output, and a dynamic cat axis (library cat)."""
import contextlib

import pytest
import torch

from conftest import assert_close, graphs, jcompile


def _sliced(cg):
    writers = {}
    for n in cg.prog.nodes:
        if not hasattr(n, "op"):
            writers[n.out.name] = writers.get(n.out.name, 0) + 1
    return sorted(k for k in writers.values() if k > 1)


def _externs(cg):
    return [str(n.op) for n in cg.prog.nodes if hasattr(n, "op")]


def _mixed(a, b, x, idx):
    # inputs from a reduction, from a library product, plain input views, an
    # int tensor promoted to float, and one computed from the others; the
    # result read by a pointwise kernel (which must run after every slice)
    # and by a reduction
    parts = [a.sum(1, keepdim=True), (a @ b)[:, :1], x[:, 2:3], idx.unsqueeze(1),
             torch.tanh(a[:, :1]), a[:, 1:2] * 3, x[:, :1] - 1]
    c = torch.cat(parts, 1)
    return torch.sigmoid(c) * 2, c.amax(1)


def _middle(xs):
    return torch.cat([t * (i + 1) for i, t in enumerate(xs.unbind(1))], 1).exp()


CASES = [
    ("mixed", _mixed, lambda: (torch.randn(6, 5), torch.randn(5, 4), torch.randn(6, 4),
                               torch.arange(6)), [7]),
    ("middle axis", _middle, lambda: (torch.randn(3, 6, 4, 5),), [6]),
    ("output", lambda *ts: torch.cat([t.relu() for t in ts], 0),
     lambda: tuple(torch.randn(2 + i, 3) for i in range(6)), [6]),
]


@pytest.mark.parametrize("triton", [False, True], ids=["cpp", "triton"])
@pytest.mark.parametrize("name,f,make,writers", CASES, ids=[c[0] for c in CASES])
def test_cat_into_slices(name, f, make, writers, triton):
    from janus_frame.backends.janus import force_triton

    args = make()
    with force_triton() if triton else contextlib.nullcontext():
        got = jcompile(f)(*args)
    assert_close(got, f(*args), rtol=1e-5, atol=1e-6)
    cg = graphs()[-1]
    assert cg.backend == ("triton" if triton else "cpp")
    assert "aten.cat.default" not in _externs(cg) and _sliced(cg) == writers


def test_gradient_through_many_input_cat():
    def f(*ts):
        return (torch.cat([torch.sin(t) for t in ts], 1) ** 2).sum()

    ts = [torch.randn(4, 3, requires_grad=True) for _ in range(6)]
    rs = [t.detach().clone().requires_grad_(True) for t in ts]
    jcompile(f)(*ts).backward()
    f(*rs).backward()
    assert_close([t.grad for t in ts], [r.grad for r in rs], rtol=1e-5, atol=1e-6)


def test_dynamic_cat_axis_stays_a_library_cat():
    def f(*ts):
        return torch.cat([t + 1 for t in ts], 0)

    cf = jcompile(f, dynamic=True)
    for n in (3, 5):
        ts = [torch.randn(n + i, 4) for i in range(6)]
        assert_close(cf(*ts), f(*ts))
    assert "aten.cat.default" in _externs(graphs()[-1])


def test_channels_last_inputs_give_eager_layout():
    def f(*ts):
        return torch.cat([t * 2 for t in ts], 1)

    ts = [torch.randn(2, 3, 5, 4).contiguous(memory_format=torch.channels_last) for _ in range(5)]
    got, ref = jcompile(f)(*ts), f(*ts)
    assert_close(got, ref)
    assert got.stride() == ref.stride()
    assert _sliced(graphs()[-1]) == [5]
