"""The lean training runtime (one autograd.Function per graph) against eager:
outputs and gradients, with the path taken asserted, for the cases its
run time must get right itself (gradient layouts autograd hands over,
outputs without gradients, unused outputs, saved sizes of dynamic shapes,
saved tensors modified before backward, double backward (a re-run of the
captured graph differentiated), buffers updated
in place), and the graphs that must keep AOTAutograd's runtime (mutations
autograd must record, outputs aliasing inputs)."""
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


def test_double_backward_differentiates_a_rerun_of_the_graph():
    def f(x):
        return torch.tanh(x).pow(3).sum()

    seen = []
    cf = _compile(f, seen)
    x = torch.randn(4, requires_grad=True)
    xr = x.detach().clone().requires_grad_()
    (g,) = torch.autograd.grad(cf(x), x, create_graph=True)
    (gr,) = torch.autograd.grad(f(xr), xr, create_graph=True)
    assert_close(g, gr, rtol=1e-5, atol=1e-6)
    assert g.requires_grad
    (g * g).sum().backward()
    (gr * gr).sum().backward()
    assert_close(x.grad, xr.grad, rtol=1e-5, atol=1e-6)
    assert seen == ["lean"]


def test_gradient_penalty_trains_like_eager():
    # a WGAN-GP critic step: the penalty on the input gradient's norm is
    # differentiated again, through the compiled graph, into the parameters
    torch.manual_seed(0)
    critic = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(),
                                 torch.nn.Linear(16, 1))
    ref = __import__("copy").deepcopy(critic)
    seen = []
    cc = _compile(critic, seen)

    def step(model, x):
        x = x.detach().requires_grad_()
        out = model(x)
        (g,) = torch.autograd.grad(out.sum(), x, create_graph=True)
        loss = out.mean() + 10 * ((g.norm(dim=1) - 1) ** 2).mean()
        loss.backward()
        return loss

    for i in range(3):
        x = torch.randn(8, 6)
        assert_close(step(cc, x), step(ref, x), rtol=1e-5, atol=1e-6)
        for p, q in zip(critic.parameters(), ref.parameters()):
            assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6)
    assert "lean" in seen


def test_double_backward_of_a_graph_with_random_draws_raises():
    # a re-run would draw other numbers: no derivative rather than a wrong one
    def f(x):
        return torch.nn.functional.dropout(torch.tanh(x), 0.5, training=True).pow(3).sum()

    seen = []
    cf = _compile(f, seen)
    x = torch.randn(4, requires_grad=True)
    (g,) = torch.autograd.grad(cf(x), x, create_graph=True)
    with pytest.raises(RuntimeError, match="cannot be differentiated again"):
        g.sum().backward()
    assert seen == ["lean"]


def test_running_statistics_update_in_the_lean_forward():
    # BatchNorm's running statistics are inputs mutated under no_grad:
    # AOTAutograd keeps the copy_ in the forward graph, whose kernels update
    # them in place; no AOTAutograd epilogue is needed
    bn_ref = torch.nn.BatchNorm1d(6)
    bn = torch.nn.BatchNorm1d(6)
    bn.load_state_dict(bn_ref.state_dict())

    def step(mod, x):
        return torch.relu(mod(x)).pow(2).sum()

    seen = []
    cf = _compile(step, seen)
    for i in range(3):
        x = torch.randn(8, 6, generator=torch.Generator().manual_seed(i))
        cf(bn, x).backward()
        step(bn_ref, x).backward()
        assert_close(bn.running_mean, bn_ref.running_mean, rtol=1e-5, atol=1e-6)
        assert_close(bn.running_var, bn_ref.running_var, rtol=1e-5, atol=1e-6)
        assert_close(bn.weight.grad, bn_ref.weight.grad, rtol=1e-5, atol=1e-5)
    assert bn.num_batches_tracked.item() == bn_ref.num_batches_tracked.item() == 3
    assert seen == ["lean"]


def test_buffer_updated_then_read_with_gradients():
    # a buffer updated in place under no_grad and then used by the
    # differentiable computation: the backward sees the updated value
    def f(x, w, buf):
        with torch.no_grad():
            buf.mul_(0.9).add_((x @ w).mean(0), alpha=0.1)
        return (torch.tanh(x @ w) * buf).sum()

    seen = []
    cf = _compile(f, seen)
    g = torch.Generator().manual_seed(5)
    w0 = torch.randn(4, 3, generator=g)
    bufs = [torch.zeros(3), torch.zeros(3)]
    for i in range(3):
        x = torch.randn(6, 4, generator=g)
        grads = []
        for fn, buf in ((cf, bufs[0]), (f, bufs[1])):
            xx, w = x.clone().requires_grad_(True), w0.clone().requires_grad_(True)
            fn(xx, w, buf).backward()
            grads.append((xx.grad, w.grad))
        assert_close(bufs[0], bufs[1], rtol=1e-6, atol=1e-7)
        assert_close(list(grads[0]), list(grads[1]), rtol=1e-5, atol=1e-6)
    assert seen == ["lean"]


def test_buffer_updated_after_being_saved_elsewhere_raises_as_in_eager():
    # eager code saves buf for a gradient; a compiled training graph then
    # updates buf in place: backward must refuse (version check), as it does
    # when the update runs eagerly, not use the new value silently
    def upd(w, buf):
        with torch.no_grad():
            buf.mul_(0.5)
        return (w * 2).sum()

    seen = []
    cupd = _compile(upd, seen)
    for fn in (upd, cupd):
        x = torch.randn(5, requires_grad=True)
        w = torch.randn(5, requires_grad=True)
        buf = torch.randn(5)
        y = (x * buf).sum()
        fn(w, buf).backward()
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            y.backward()
    assert seen == ["lean"]


def test_running_statistics_versions_move():
    bn_ref, bn = torch.nn.BatchNorm1d(3), torch.nn.BatchNorm1d(3)
    seen = []
    cf = _compile(lambda m, x: m(x).sum(), seen)
    x = torch.randn(4, 3)
    before = [b._version for b in bn.buffers()], [b._version for b in bn_ref.buffers()]
    cf(bn, x).backward()
    bn_ref(x).sum().backward()
    got = [b._version - v for b, v in zip(bn.buffers(), before[0])]
    ref = [b._version - v for b, v in zip(bn_ref.buffers(), before[1])]
    assert seen == ["lean"]
    # every buffer the graph updated moved (as under AOTAutograd's runtime);
    # eager's batch norm kernel moves num_batches_tracked's only
    assert ref == [0, 0, 1] and all(g >= 1 for g in got)


def test_mutation_autograd_must_see_keeps_aotautograd_runtime():
    # an input requiring grad mutated with grad enabled: autograd records
    # the in-place op on the caller's tensor, which only AOTAutograd's
    # epilogue reproduces
    def f(a, w):
        a.add_(w * 2)
        return (a * a).sum()

    seen = []
    cf = _compile(f, seen)
    g = torch.Generator().manual_seed(6)
    x0, w0 = torch.randn(5, generator=g), torch.randn(5, generator=g)
    res = []
    for fn in (cf, f):
        x, w = x0.clone().requires_grad_(True), w0.clone().requires_grad_(True)
        a = x * 1
        fn(a, w).backward()
        res.append((a.detach(), x.grad, w.grad))
    assert seen == ["aot"]
    assert_close(list(res[0]), list(res[1]), rtol=1e-5, atol=1e-6)


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


def test_a_graph_that_makes_tensors_requiring_grad_keeps_their_history():
    # the leaf is the graph's own: the compiled graphs (whose leaves are
    # their inputs) would return outputs without history; it runs as captured
    import janus_frame as jf

    def f(x):
        w = torch.ones(3, requires_grad=True)
        return (w * x).sum(), w

    cf = jf.compile(f, strict=True)
    x = torch.randn(3)
    for _ in range(2):
        y, w = cf(x)
        assert y.requires_grad and w.requires_grad and w.is_leaf
        y.backward()
        assert_close(w.grad, x)
