"""The lean training runtime (one autograd.Function per graph) against eager:
outputs and gradients, with the path taken asserted, for the cases its
run time must get right itself (gradient layouts autograd hands over,
outputs without gradients, unused outputs, saved sizes of dynamic shapes,
saved tensors modified before backward, double backward), and the graphs
that must keep AOTAutograd's runtime (input mutations, outputs aliasing
inputs)."""
import pytest
import torch

from conftest import assert_close


def _backend(seen):
    from janus_frame.backends.janus import janus_backend

    def backend(gm, example_inputs):
        fn = janus_backend(gm, example_inputs)
        seen.append("lean" if getattr(fn, "janus_lean", False) else "aot")
        return fn

    return backend


def _compile(fn, seen, dynamic=False):
    return torch.compile(fn, backend=_backend(seen), dynamic=dynamic)


def _grads(fn, make_inputs, backward):
    args = make_inputs()
    out = fn(*args)
    backward(out)
    return out, [a.grad for a in args if isinstance(a, torch.Tensor) and a.requires_grad]


def _inputs(seed, *shapes):
    g = torch.Generator().manual_seed(seed)
    return lambda: tuple(torch.randn(*s, generator=g.manual_seed(seed + i)).requires_grad_(True)
                         for i, s in enumerate(shapes))


def test_gradients_through_every_output_kind():
    # a float output used twice, one used through a transpose (autograd hands
    # the backward a non-contiguous gradient), one expanded (sum().backward()),
    # an integer output (no gradient) and an output nobody uses (its gradient
    # is materialised as zeros)
    def f(x, w):
        h = torch.tanh(x @ w)
        return h, torch.sigmoid(h).t() * 2, (h > 0).sum(), h.exp()

    seen = []
    cf = _compile(f, seen)
    make = _inputs(0, (6, 5), (5, 7))

    def backward(out):
        h, t, count, _unused = out
        (h.sum() + (t * torch.arange(6.0)).sum()).backward()

    got, got_g = _grads(cf, make, backward)
    ref, ref_g = _grads(f, make, backward)
    assert seen == ["lean"]
    assert_close(got, ref, rtol=1e-5, atol=1e-6)
    assert got[2].dtype == torch.int64 and not got[2].requires_grad
    assert_close(got_g, ref_g, rtol=1e-5, atol=1e-6)


def test_saved_sizes_of_dynamic_shapes():
    # the backward of a mean over a dynamic dimension needs that size
    def f(x, w):
        return (torch.tanh(x @ w).mean(0) * x.shape[0]).sum()

    seen = []
    cf = _compile(f, seen, dynamic=True)
    for n in (4, 9, 13):
        make = _inputs(n, (n, 8), (8, 3))
        got, got_g = _grads(cf, make, lambda o: o.backward())
        ref, ref_g = _grads(f, make, lambda o: o.backward())
        assert_close(got, ref, rtol=1e-5, atol=1e-5)
        assert_close(got_g, ref_g, rtol=1e-5, atol=1e-6)
    assert seen == ["lean"]  # one symbolic graph for every size


def test_saved_input_modified_before_backward_raises_as_in_eager():
    def f(x, w):
        return (torch.sin(x) * w).sum()

    seen = []
    cf = _compile(f, seen)
    for fn in (f, cf):
        x = torch.randn(5, requires_grad=True)
        w = torch.randn(5)
        loss = fn(x * 1, w)
        w.add_(1)  # saved for the gradient of x
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            loss.backward()
    assert seen == ["lean"]


def test_double_backward_raises_instead_of_a_wrong_answer():
    def f(x):
        return torch.tanh(x).pow(3).sum()

    seen = []
    cf = _compile(f, seen)
    x = torch.randn(4, requires_grad=True)
    (g,) = torch.autograd.grad(cf(x), x, create_graph=True)
    assert_close(g, torch.autograd.grad(f(x), x)[0], rtol=1e-5, atol=1e-6)
    with pytest.raises(RuntimeError, match="cannot be differentiated again"):
        g.sum().backward()
    assert seen == ["lean"]


def test_input_mutation_keeps_aotautograd_runtime():
    bn_ref = torch.nn.BatchNorm1d(6)
    bn = torch.nn.BatchNorm1d(6)
    bn.load_state_dict(bn_ref.state_dict())

    def step(mod, x):
        return torch.relu(mod(x)).pow(2).sum()

    seen = []
    cf = _compile(step, seen)
    x = torch.randn(8, 6)
    cf(bn, x).backward()
    step(bn_ref, x).backward()
    assert seen == ["aot"]
    assert_close(bn.running_mean, bn_ref.running_mean, rtol=1e-5, atol=1e-6)
    assert_close(bn.running_var, bn_ref.running_var, rtol=1e-5, atol=1e-6)
    assert_close(bn.weight.grad, bn_ref.weight.grad, rtol=1e-5, atol=1e-5)


def test_output_aliasing_an_input_keeps_aotautograd_runtime():
    def f(x, w):
        return x.view(-1), torch.tanh(x @ w)

    seen = []
    cf = _compile(f, seen)
    make = _inputs(3, (4, 5), (5, 2))

    def backward(out):
        (out[0].sum() * 3 + out[1].sum()).backward()

    got, got_g = _grads(cf, make, backward)
    ref, ref_g = _grads(f, make, backward)
    assert seen == ["aot"]
    assert got[0]._base is not None  # still a view, as in eager
    assert_close(got_g, ref_g, rtol=1e-5, atol=1e-6)


def test_dtype_conversions_in_a_training_graph():
    # export-mode tracing records each conversion as a metadata assertion
    # with no result; the graphs must still run
    def f(x, w, table, ids):
        y = (x.half().float() @ w).to(torch.float64)
        return y.sum() + table[ids.long()].sum()

    seen = []
    cf = _compile(f, seen)
    data = (torch.randn(4, 3), torch.randn(3, 2), torch.randn(10, 5))

    def make():
        x, w, table = (d.clone() for d in data)
        return x, w.requires_grad_(True), table.requires_grad_(True), torch.tensor([1, 7, 1], dtype=torch.int32)

    got, got_g = _grads(cf, make, lambda o: o.backward())
    ref, ref_g = _grads(f, make, lambda o: o.backward())
    assert seen == ["lean"]
    assert got.dtype == torch.float64
    assert_close(got, ref, rtol=1e-5, atol=1e-5)
    assert_close(got_g, ref_g, rtol=1e-5, atol=1e-5)


def test_what_export_refuses_runs_through_aotautograd():
    # two views of one base, one mutated: the joint export refuses, the
    # general runtime compiles it (never the eager fallback)
    from janus_frame.backends.janus import stats

    def f(a, b, w):
        a.mul_(2)
        return torch.tanh(b @ w).sum()

    seen = []
    cf = _compile(f, seen)
    base, rbase = torch.randn(6, 3), None
    rbase = base.clone()
    w = torch.randn(3, 2, requires_grad=True)
    rw = w.detach().clone().requires_grad_(True)
    cf(base[:4], base[2:], w).backward()
    f(rbase[:4], rbase[2:], rw).backward()
    assert seen == ["aot"] and not stats.fallbacks
    assert_close(base, rbase)
    assert_close(w.grad, rw.grad, rtol=1e-5, atol=1e-6)
