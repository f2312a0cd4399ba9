"""Parameter gradients of a small graph called many times per step, summed
once at the end of backward (grad_accumulation), against eager: every way
of asking autograd for gradients, with whether the sum was deferred
asserted.

Tolerances: the gradients reach ~30 here, and float32 sums of the same
terms in another order (one product over the stacked factors, or a product
computed in the other orientation) differ from eager's by ~2e-6, as far as
eager itself is from the float64 result; atol 1e-5 is about 4 ulp of them."""
import pytest
import torch

from conftest import assert_close

from janus_frame.backends.janus.runtime import grad_accumulation as ga


def _cell(x, h, w, u, b):
    return torch.tanh(x @ w.t() + h @ u.t() + b)


def _model(seed=0, hidden=12, inp=7):
    g = torch.Generator().manual_seed(seed)
    params = [torch.randn(hidden, inp, generator=g) * 0.3, torch.randn(hidden, hidden, generator=g) * 0.3,
              torch.randn(hidden, generator=g) * 0.1]
    xs = [torch.randn(1, inp, generator=g) for _ in range(6)]
    return [p.requires_grad_(True) for p in params], xs


def _loss(cell, params, xs):
    h = torch.zeros(1, params[1].shape[0])
    for x in xs:  # one graph call per step, batch 1: thin weight gradients
        h = cell(x, h, *params)
    return (h * torch.arange(1.0, h.shape[1] + 1)).sum()


@pytest.fixture
def compiled_cell():
    from janus_frame.backends.janus import janus_backend

    return torch.compile(_cell, backend=janus_backend)


def _twins():
    pa, xs = _model()
    pb = [p.detach().clone().requires_grad_(True) for p in pa]
    return pa, pb, xs


def test_backward_sums_once_per_pass(compiled_cell):
    pa, pb, xs = _twins()
    before = dict(ga.counts)
    _loss(compiled_cell, pa, xs).backward()
    _loss(_cell, pb, xs).backward()
    # every cell call left its three gradients to the end of the pass,
    # summed there once per parameter
    assert ga.counts["calls"] - before["calls"] == len(xs)
    assert ga.counts["sums"] - before["sums"] == 3
    for a, b in zip(pa, pb):
        assert a.grad.shape == b.grad.shape and a.grad.stride() == b.grad.stride()
        assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-5)
    # a second pass adds into the existing .grad, as eager does
    _loss(compiled_cell, pa, xs).backward()
    _loss(_cell, pb, xs).backward()
    assert_close([p.grad for p in pa], [p.grad for p in pb], rtol=1e-5, atol=1e-5)


def test_retained_graph_backward_twice(compiled_cell):
    pa, pb, xs = _twins()
    la, lb = _loss(compiled_cell, pa, xs), _loss(_cell, pb, xs)
    for _ in range(2):
        la.backward(retain_graph=True)
        lb.backward(retain_graph=True)
    assert_close([p.grad for p in pa], [p.grad for p in pb], rtol=1e-5, atol=1e-5)


def test_autograd_grad_returns_dense_gradients(compiled_cell):
    pa, pb, xs = _twins()
    before = ga.counts["calls"]
    ga_ = torch.autograd.grad(_loss(compiled_cell, pa, xs), pa)
    gb = torch.autograd.grad(_loss(_cell, pb, xs), pb)
    assert ga.counts["calls"] == before  # nothing accumulates: nothing deferred
    assert_close(ga_, gb, rtol=1e-5, atol=1e-5)
    assert all(p.grad is None for p in pa)


def test_backward_with_inputs_leaving_parameters_out(compiled_cell):
    pa, pb, xs = _twins()
    xa = [x.clone().requires_grad_(True) for x in xs]
    xb = [x.clone().requires_grad_(True) for x in xs]
    _loss(compiled_cell, pa, xa).backward(inputs=xa)
    _loss(_cell, pb, xb).backward(inputs=xb)
    assert all(p.grad is None for p in pa)
    assert_close([x.grad for x in xa], [x.grad for x in xb], rtol=1e-5, atol=1e-5)
    # and with only one parameter asked for
    _loss(compiled_cell, pa, xs).backward(inputs=[pa[1]])
    _loss(_cell, pb, xs).backward(inputs=[pb[1]])
    assert pa[0].grad is None and pa[2].grad is None
    assert_close(pa[1].grad, pb[1].grad, rtol=1e-5, atol=1e-5)


def test_hooks_see_what_they_see_in_eager(compiled_cell):
    pa, pb, xs = _twins()
    seen = {"a": [], "b": []}
    for key, ps in (("a", pa), ("b", pb)):
        ps[0].register_hook(lambda g: g * 2)
        ps[1].register_post_accumulate_grad_hook(lambda p, k=key: seen[k].append(p.grad.clone()))
    before = ga.counts["calls"]
    _loss(compiled_cell, pa, xs).backward()
    _loss(_cell, pb, xs).backward()
    assert ga.counts["calls"] == before  # watched parameters: dense gradients
    assert_close([p.grad for p in pa], [p.grad for p in pb], rtol=1e-5, atol=1e-5)
    assert len(seen["a"]) == len(seen["b"]) == 1  # once per pass, with the sum
    assert_close(seen["a"], seen["b"], rtol=1e-5, atol=1e-5)


def test_create_graph_is_never_deferred(compiled_cell):
    # gradients with history (differentiated again) are computed per call,
    # never summed later: and they are eager's, second order included
    pa, pb, xs = _twins()
    before = ga.counts["calls"]
    gs = torch.autograd.grad(_loss(compiled_cell, pa, xs), pa, create_graph=True)
    gr = torch.autograd.grad(_loss(_cell, pb, xs), pb, create_graph=True)
    assert ga.counts["calls"] == before
    for g, r in zip(gs, gr):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-5)
    # (this backward is a plain one: through the graphs' own nodes it may be)
    sum((g * g).sum() for g in gs).backward()
    sum((g * g).sum() for g in gr).backward()
    for p, q in zip(pa, pb):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5)


def test_a_failed_pass_leaves_nothing_behind(compiled_cell):
    pa, pb, xs = _twins()

    def boom(g):
        raise ValueError("hook failed")

    h0 = torch.zeros(1, 12, requires_grad=True)
    h0.register_hook(boom)

    def loss(cell, ps):
        h = h0 * 1
        for x in xs:
            h = cell(x, h, *ps)
        return h.sum()

    with pytest.raises(ValueError, match="hook failed"):
        loss(compiled_cell, pa).backward()  # the cells' factors were stashed
    for p in pa:
        p.grad = None
    _loss(compiled_cell, pa, xs).backward()
    _loss(_cell, pb, xs).backward()
    assert_close([p.grad for p in pa], [p.grad for p in pb], rtol=1e-5, atol=1e-5)


def test_wide_products_keep_dense_gradients():
    from janus_frame.backends.janus import janus_backend

    cell = torch.compile(_cell, backend=janus_backend)
    pa, pb, _ = _twins()
    xs = [torch.randn(ga.THIN + 1, 7) for _ in range(3)]  # a batch wider than THIN
    before = ga.counts["calls"]
    h = torch.zeros(ga.THIN + 1, 12)
    for x in xs:
        h = cell(x, h, *pa)
    h.sum().backward()
    h = torch.zeros(ga.THIN + 1, 12)
    for x in xs:
        h = _cell(x, h, *pb)
    h.sum().backward()
    assert ga.counts["calls"] == before
    assert_close([p.grad for p in pa], [p.grad for p in pb], rtol=1e-5, atol=1e-5)


def test_row_gradients_are_added_straight_into_grad():
    # an embedding lookup per call: its gradient is a zero table with the
    # looked-up rows added; repeated rows must add up
    from janus_frame.backends.janus import janus_backend

    def leaf(table, word, w):
        return torch.tanh(table[word] @ w)

    cleaf = torch.compile(leaf, backend=janus_backend)
    g = torch.Generator().manual_seed(5)
    ta, wa = torch.randn(20, 6, generator=g), torch.randn(6, 4, generator=g)
    tb, wb = ta.clone(), wa.clone()
    for t in (ta, wa, tb, wb):
        t.requires_grad_(True)
    words = [torch.tensor([k]) for k in (3, 7, 3, 19, 0)]
    before = dict(ga.counts)
    for _ in range(2):  # the second pass adds into the first one's .grad
        sum(cleaf(ta, w_, wa).sum() * (i + 1) for i, w_ in enumerate(words)).backward()
        sum(leaf(tb, w_, wb).sum() * (i + 1) for i, w_ in enumerate(words)).backward()
    assert ga.counts["calls"] - before["calls"] == 2 * len(words)
    assert ga.counts["sums"] - before["sums"] == 2 * 2  # table and w, once per pass
    assert_close([ta.grad, wa.grad], [tb.grad, wb.grad], rtol=1e-5, atol=1e-5)
    assert int((ta.grad.abs().sum(1) > 0).sum()) == 4


def test_an_intermediate_where_the_graph_saw_a_parameter_gets_its_gradient():
    # the compiled callable is reused for whatever its caller passes: a
    # graph compiled with leaf weights, called with a scaled weight, must
    # hand that intermediate its gradient (nothing to accumulate into)
    import torch.fx as fx

    from janus_frame.backends.janus import janus_backend

    pa, pb, xs = _twins()
    # (the raw callable has no guards: every call keeps the example's
    # requires_grad pattern, the state included)
    h0 = torch.zeros(1, 12, requires_grad=True)
    fn = janus_backend(fx.symbolic_trace(_cell), [xs[0], h0, *pa])
    sa, sb = (torch.tensor(2.0, requires_grad=True) for _ in range(2))
    before = ga.counts["calls"]

    def loss(cell, ps, s):
        ws = [ps[0] * s, ps[1], ps[2]]
        h = h0
        for x in xs:
            out = cell(x, h, *ws)
            h = out[0] if isinstance(out, (tuple, list)) else out
        return h.sum()

    loss(fn, pa, sa).backward()
    loss(_cell, pb, sb).backward()
    assert ga.counts["calls"] == before  # one input is no parameter: dense gradients
    assert_close([sa.grad] + [p.grad for p in pa], [sb.grad] + [p.grad for p in pb],
                 rtol=1e-5, atol=1e-5)


def test_switched_off_by_config_and_under_torch_distributed(compiled_cell, monkeypatch):
    from janus_frame.config import config

    pa, pb, xs = _twins()
    before = ga.counts["calls"]
    monkeypatch.setattr(config, "defer_grads", False)
    _loss(compiled_cell, pa, xs).backward()
    monkeypatch.setattr(config, "defer_grads", True)
    # DDP/FSDP/ZeRO hook AccumulateGrad nodes and read .grad during the pass
    monkeypatch.setattr(ga, "_distributed", lambda: True)
    _loss(compiled_cell, pa, xs).backward()
    for _ in range(2):
        _loss(_cell, pb, xs).backward()
    assert ga.counts["calls"] == before
    assert_close([p.grad for p in pa], [p.grad for p in pb], rtol=1e-5, atol=1e-5)
