"""The training step as one graph (frontend/whole_step.py): ``loss.backward()``
traced into the graph of the forward, with ``opt.zero_grad()`` and the
optimizer step around it.

Differential: the compiled step and the plain one run on copies of a model
and an optimizer for several steps; losses, parameters, ``.grad`` and the
optimizer state are compared after every step, and the number of backward
calls traced into a graph (``whole_step.counts``) says that the step did not
silently run its backward natively.  The cases where eager's meaning cannot
be kept in the graph (``retain_graph``, ``create_graph``, hooks, a non-leaf
input requiring grad, a break in the forward) must run the backward natively
and stay right.
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

import janus_frame as jf
from janus_frame.frontend import whole_step

BACKENDS = ["default", "eager"]


class MLP(torch.nn.Module):
    def __init__(self, tied=False):
        super().__init__()
        self.emb = torch.nn.Linear(6, 8, bias=False)
        self.hidden = torch.nn.Linear(8, 8)
        self.out = torch.nn.Linear(8, 6, bias=False)
        self.tied = tied
        if tied:  # one parameter used twice (GPT-2's wte / lm_head)
            self.emb.weight = torch.nn.Parameter(torch.randn(8, 6) * 0.3)
            self.out.weight = self.emb.weight

    def forward(self, x):
        h = torch.tanh(self.emb(x))
        h = F.relu(self.hidden(h))
        return h @ self.emb.weight if self.tied else self.out(h)


def _pair(make_opt, tied=False):
    torch.manual_seed(0)
    a = MLP(tied)
    b = copy.deepcopy(a)
    return a, make_opt(a.parameters()), b, make_opt(b.parameters())


def _data(n, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(5, 6, generator=g), torch.randint(0, 6, (5,), generator=g))
            for _ in range(n)]


def _same(a, oa, b, ob):
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)
        assert (p.grad is None) == (q.grad is None), name
        if p.grad is not None:
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-6, msg=name)
    for sa, sb in zip(oa.state.values(), ob.state.values()):
        assert sa.keys() == sb.keys()
        for k in sa:
            torch.testing.assert_close(sa[k], sb[k], rtol=1e-5, atol=1e-6)


def _run(step_a, step_b, a, oa, b, ob, steps=4):
    for x, y in _data(steps):
        la, lb = step_a(x, y), step_b(x, y)
        torch.testing.assert_close(la, lb.detach(), rtol=1e-5, atol=1e-6)
        _same(a, oa, b, ob)


def _train_step(model, opt):
    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss
    return step


OPTIMIZERS = {
    "sgd": lambda ps: torch.optim.SGD(ps, lr=0.1),
    "sgd_momentum": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9),
    "adam": lambda ps: torch.optim.Adam(ps, lr=0.01),
    "adamw": lambda ps: torch.optim.AdamW(ps, lr=0.01, weight_decay=0.1),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("opt", list(OPTIMIZERS))
def test_step_is_one_graph_and_matches_eager(opt, backend):
    a, oa, b, ob = _pair(OPTIMIZERS[opt])
    before = whole_step.counts["traced"]
    _run(jf.compile(_train_step(a, oa), backend=backend), _train_step(b, ob), a, oa, b, ob)
    assert whole_step.counts["traced"] > before
    # the steady state: zero_grad, forward, backward and step in one graph
    a2, oa2, _, _ = _pair(OPTIMIZERS[opt])
    step = _train_step(a2, oa2)
    for x, y in _data(2):
        step(x, y)  # the optimizer's state exists from here on
    report = jf.explain(step)(*_data(1)[0])
    assert (report.graph_count, report.break_count) == (1, 0), str(report)


@pytest.mark.parametrize("backend", BACKENDS)
def test_tied_weights_get_one_gradient_and_one_update(backend):
    a, oa, b, ob = _pair(OPTIMIZERS["sgd_momentum"], tied=True)
    assert a.emb.weight is a.out.weight
    _run(jf.compile(_train_step(a, oa), backend=backend), _train_step(b, ob), a, oa, b, ob)
    assert a.emb.weight is a.out.weight


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradient_accumulation_adds_into_existing_grads(backend):
    # two micro-steps per update: the second backward adds into .grad
    def make(model, opt):
        def step(x, y):
            F.cross_entropy(model(x), y).backward()
            loss = F.cross_entropy(model(x * 0.5), y)
            loss.backward()
            opt.step()
            opt.zero_grad()
            return loss
        return step

    a, oa, b, ob = _pair(OPTIMIZERS["sgd"])
    before = whole_step.counts["traced"]
    _run(jf.compile(make(a, oa), backend=backend), make(b, ob), a, oa, b, ob)
    assert whole_step.counts["traced"] - before >= 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_grads_kept_between_calls_are_accumulated(backend):
    # no zero_grad in the step: .grad grows call after call, as in eager
    def make(model):
        def step(x, y):
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            return loss
        return step

    a, oa, b, ob = _pair(OPTIMIZERS["sgd"])
    _run(jf.compile(make(a), backend=backend), make(b), a, oa, b, ob)


def test_zero_grad_to_zeros_then_backward():
    def make(model, opt):
        def step(x, y):
            opt.zero_grad(set_to_none=False)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            return loss
        return step

    a, oa, b, ob = _pair(OPTIMIZERS["sgd"])
    _run(jf.compile(make(a, oa)), make(b, ob), a, oa, b, ob)
    assert all(p.grad is not None for p in a.parameters())


def test_returned_loss_and_grads_are_usable():
    a, oa, b, ob = _pair(OPTIMIZERS["sgd"])
    step = jf.compile(_train_step(a, oa))
    x, y = _data(1)[0]
    before = whole_step.counts["traced"]
    loss = step(x, y)
    assert whole_step.counts["traced"] > before
    assert isinstance(loss.item(), float)
    g = a.hidden.weight.grad
    assert g is not None and g.shape == a.hidden.weight.shape
    assert g.stride() == a.hidden.weight.stride()


@pytest.mark.parametrize("kwargs", [{"retain_graph": True}, {"create_graph": True}])
def test_backward_options_the_graph_cannot_keep_run_natively(kwargs):
    def make(model):
        def step(x, y):
            loss = F.cross_entropy(model(x), y)
            loss.backward(**kwargs)
            return loss.detach()
        return step

    a, oa, b, ob = _pair(OPTIMIZERS["sgd"])
    before = whole_step.counts["traced"]
    _run(jf.compile(make(a)), make(b), a, oa, b, ob, steps=2)
    assert whole_step.counts["traced"] == before
    if kwargs.get("create_graph"):
        assert a.hidden.weight.grad.requires_grad == b.hidden.weight.grad.requires_grad
    for m in (a, b):
        for p in m.parameters():
            p.grad = None  # (create_graph: gradients referring to themselves)


def test_hook_registered_after_compiling_is_run():
    a, oa, b, ob = _pair(OPTIMIZERS["sgd"])
    sa, sb = jf.compile(_train_step(a, oa)), _train_step(b, ob)
    data = _data(4)
    for x, y in data[:2]:
        sa(x, y), sb(x, y)
    seen = []
    for m, tag in ((a, "a"), (b, "b")):
        m.hidden.weight.register_hook(lambda g, tag=tag: seen.append(tag) or g * 2)
    for x, y in data[2:]:
        torch.testing.assert_close(sa(x, y), sb(x, y))
        _same(a, oa, b, ob)
    assert seen.count("a") == seen.count("b") == 2


def test_post_accumulate_grad_hook_is_run():
    a, oa, b, ob = _pair(OPTIMIZERS["sgd"])
    calls = []
    for m, tag in ((a, "a"), (b, "b")):
        m.out.weight.register_post_accumulate_grad_hook(lambda p, tag=tag: calls.append(tag))
    _run(jf.compile(_train_step(a, oa)), _train_step(b, ob), a, oa, b, ob, steps=3)
    assert calls.count("a") == calls.count("b") == 3


def test_non_leaf_input_requiring_grad_gets_its_gradient_through():
    # x comes from an autograd graph built outside the step: its gradient
    # must flow on into it (the backward runs natively)
    torch.manual_seed(0)
    wa = torch.randn(6, 6, requires_grad=True)
    wb = wa.detach().clone().requires_grad_(True)
    a, oa, b, ob = _pair(OPTIMIZERS["sgd"])

    def make(model):
        def step(x, y):
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            return loss
        return step

    sa, sb = jf.compile(make(a)), make(b)
    for x, y in _data(3):
        sa(x @ wa, y), sb(x @ wb, y)
        _same(a, oa, b, ob)
        torch.testing.assert_close(wa.grad, wb.grad)


def test_graph_break_in_forward_keeps_eager_semantics():
    def make(model, opt):
        def step(x, y):
            opt.zero_grad()
            h = model(x)
            print_ = h.sum().item()  # a graph break between forward and loss
            loss = F.cross_entropy(h, y) + 0 * print_
            loss.backward()
            opt.step()
            return loss
        return step

    a, oa, b, ob = _pair(OPTIMIZERS["sgd"])
    _run(jf.compile(make(a, oa)), make(b, ob), a, oa, b, ob, steps=3)


def test_switched_off_by_option():
    a, oa, b, ob = _pair(OPTIMIZERS["sgd"])
    before = whole_step.counts["traced"]
    _run(jf.compile(_train_step(a, oa), whole_step=False), _train_step(b, ob), a, oa, b, ob,
         steps=2)
    assert whole_step.counts["traced"] == before


@pytest.mark.parametrize("opt", ["sgd_momentum", "adamw"])
def test_learning_rate_schedule_does_not_recompile_every_step(opt):
    from janus_frame.cache import stats

    a, oa, b, ob = _pair(OPTIMIZERS[opt])
    sch_a = torch.optim.lr_scheduler.StepLR(oa, 1, gamma=0.9)
    sch_b = torch.optim.lr_scheduler.StepLR(ob, 1, gamma=0.9)
    sa, sb = jf.compile(_train_step(a, oa)), _train_step(b, ob)
    before = whole_step.counts["traced"]
    for i, (x, y) in enumerate(_data(8)):
        if i == 3:
            compiled = stats.frames_compiled
        torch.testing.assert_close(sa(x, y), sb(x, y))
        sch_a.step()
        sch_b.step()
        _same(a, oa, b, ob)
    # a new learning rate every step: the step graph takes it as an input
    assert stats.frames_compiled == compiled
    assert whole_step.counts["traced"] > before


def test_forward_after_the_step_keeps_its_autograd_history():
    # after the step, an evaluation with grad mode on: its output must carry
    # history (the caller differentiates it), so it is not in the step graph
    a, oa, b, ob = _pair(OPTIMIZERS["sgd"])

    def make(model, opt):
        def step(x, y):
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            return loss.detach(), model(x)
        return step

    sa, sb = jf.compile(make(a, oa)), make(b, ob)
    for x, y in _data(3):
        (la, oa_), (lb, ob_) = sa(x, y), sb(x, y)
        torch.testing.assert_close(la, lb)
        torch.testing.assert_close(oa_, ob_)
        assert oa_.requires_grad and oa_.grad_fn is not None
        oa_.sum().backward()
        ob_.sum().backward()
        _same(a, oa, b, ob)


def test_history_left_alive_by_the_backward_keeps_the_backward_native():
    # `aux` has history the loss does not consume: a caller may still
    # differentiate it, so the backward runs natively
    a, oa, b, ob = _pair(OPTIMIZERS["sgd"])

    def make(model):
        def step(x, y):
            aux = model.hidden.weight * 2
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            return aux
        return step

    before = whole_step.counts["traced"]
    sa, sb = jf.compile(make(a)), make(b)
    for x, y in _data(2):
        ra, rb = sa(x, y), sb(x, y)
        assert ra.requires_grad and ra.grad_fn is not None
        torch.testing.assert_close(ra, rb)
        _same(a, oa, b, ob)
    assert whole_step.counts["traced"] == before


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_compiled_model_inside_a_compiled_step_is_one_graph(backend):
    # model = jf.compile(model), then the step compiled around it: the
    # wrapper's forward is not traced (janus_frame's own code), the module
    # it wraps is, into the step's graph with the backward and the update
    torch.manual_seed(0)
    ref = MLP()
    model = copy.deepcopy(ref)
    cmodel = jf.compile(model, backend=backend)

    def make(m, params):
        opt = torch.optim.SGD(params, lr=0.1, momentum=0.9)

        def step(x, y):
            opt.zero_grad()
            loss = F.mse_loss(m(x), y)
            loss.backward()
            opt.step()
            return loss
        return step

    ref_step, step = make(ref, ref.parameters()), jf.compile(make(cmodel, model.parameters()),
                                                           backend=backend)
    before = whole_step.counts["traced"]
    with jf.profile() as prof:
        for i in range(4):
            x, y = torch.randn(5, 6), torch.randn(5, 6)
            torch.testing.assert_close(step(x, y), ref_step(x, y), rtol=1e-5, atol=1e-6)
    assert whole_step.counts["traced"] > before
    for p, q in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    # the only break: the first optimizer step, which makes its momentum natively
    assert [s.reason for s in prof.report().sites if s.break_id
            and "SGD.step" not in (s.reason or "")] == []


def test_a_hook_on_the_compiled_module_wrapper_still_runs():
    torch.manual_seed(0)
    model = MLP()
    cmodel = jf.compile(model, backend="eager")
    seen = []

    def f(x):
        return cmodel(x).sum()

    cf = jf.compile(f, backend="eager")
    x = torch.randn(3, 6)
    torch.testing.assert_close(cf(x), model(x).sum())
    h = cmodel.register_forward_hook(lambda mod, args, out: seen.append(out.shape))
    try:
        torch.testing.assert_close(cf(x), model(x).sum())  # the guard saw the hook
        assert seen == [torch.Size([3, 6])]
    finally:
        h.remove()
    torch.testing.assert_close(cf(x), model(x).sum())
    assert seen == [torch.Size([3, 6])]
