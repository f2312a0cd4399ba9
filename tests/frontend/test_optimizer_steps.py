"""``opt.step()`` of torch's SGD, Adam and AdamW traced through their stand-ins
(frontend/polyfills.py) against the real step run eagerly on a copy:
parameters, optimizer state (step counters, moments, momentum buffers) after
several steps, for the options the stand-ins reproduce; and the cases that
must keep the real step (first step, hooks, a closure, options not
reproduced), with the switch to the traced step once it applies.

Also the interpreter features the stand-ins rest on: a dict keyed by
parameters (``opt.state[p]``, ``p in opt.state``) read and guarded by key
identity, and a refused stand-in's guard carried by the graph break.
"""
from __future__ import annotations

import collections
import copy

import pytest
import torch

import janus_frame as jf
from jfutil import Recorder
from torch.optim.optimizer import register_optimizer_step_post_hook


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))


def _pair(make_opt, groups=False):
    a = _model()
    b = copy.deepcopy(a)
    if groups:  # two groups with different hyper-parameters
        def params(m):
            return [{"params": m[0].parameters()}, {"params": m[2].parameters(), "lr": 0.003}]
        return a, make_opt(params(a)), b, make_opt(params(b))
    return a, make_opt(a.parameters()), b, make_opt(b.parameters())


def _grads(m, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(4, 6, generator=g)
    m.zero_grad()
    m(x).pow(2).sum().backward()


def _state(opt):
    return {i: {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in s.items()}
            for i, s in enumerate(opt.state.values())}


def _same(a, oa, b, ob):
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    sa, sb = _state(oa), _state(ob)
    assert sa.keys() == sb.keys()
    for i in sa:
        assert sa[i].keys() == sb[i].keys()
        for k in sa[i]:
            torch.testing.assert_close(sa[i][k], sb[i][k], rtol=1e-5, atol=1e-6)


def _run(make_opt, steps=5, groups=False, expect_graph=True):
    a, oa, b, ob = _pair(make_opt, groups)
    rec = Recorder()

    def step(opt):
        opt.step()

    cstep = jf.compile(step, backend=rec)
    for i in range(steps):
        _grads(a, i)
        _grads(b, i)
        step(oa)
        cstep(ob)
        _same(a, oa, b, ob)
    traced = [g for g in rec.graphs if any(n.op == "call_method" and n.target == "add_"
                                           for n in g.graph.nodes)]
    assert bool(traced) == expect_graph
    return rec


@pytest.mark.parametrize("make_opt", [
    lambda p: torch.optim.AdamW(p, lr=0.01),
    lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1, betas=(0.8, 0.99), eps=1e-6),
    lambda p: torch.optim.Adam(p, lr=0.01),
    lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=0.05, maximize=True),
    lambda p: torch.optim.Adam(p, lr=0.01, foreach=False),
    lambda p: torch.optim.SGD(p, lr=0.1),
    lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01),
    lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, dampening=0.0),
    lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.5, dampening=0.3, maximize=True),
], ids=["adamw", "adamw-wd", "adam", "adam-wd-maximize", "adam-single", "sgd", "sgd-momentum",
        "sgd-nesterov", "sgd-dampening-maximize"])
def test_step_matches_eager(make_opt):
    rec = _run(make_opt)
    # the first step creates state natively (SGD without momentum has none)
    # and the next one compiles once: no recompile after that
    assert len(rec.graphs) == 1


def test_param_groups_and_missing_grads():
    a, oa, b, ob = _pair(lambda p: torch.optim.AdamW(p, lr=0.01), groups=True)
    rec = Recorder()
    cstep = jf.compile(lambda o: o.step(), backend=rec)
    for i in range(4):
        _grads(a, i)
        _grads(b, i)
        if i >= 2:  # a parameter without a gradient is skipped, as eagerly
            a[2].bias.grad = None
            b[2].bias.grad = None
        oa.step()
        cstep(ob)
        _same(a, oa, b, ob)
    assert len(rec.graphs) == 2  # traced from step 2; a grad turning None retraces


def test_learning_rate_change_recompiles():
    a, oa, b, ob = _pair(lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9))
    rec = Recorder()
    cstep = jf.compile(lambda o: o.step(), backend=rec)
    for i in range(5):
        for o in (oa, ob):
            o.param_groups[0]["lr"] = 0.1 / (1 + i // 3)
        _grads(a, i)
        _grads(b, i)
        oa.step()
        cstep(ob)
        _same(a, oa, b, ob)
    assert len(rec.graphs) == 2  # lr 0.1 then 0.05, each a constant of its graph


@pytest.mark.parametrize("make_opt", [
    lambda p: torch.optim.Adam(p, lr=0.01, amsgrad=True),
    lambda p: torch.optim.AdamW(p, lr=0.01, fused=True),
], ids=["amsgrad", "fused"])
def test_options_not_reproduced_run_the_real_step(make_opt):
    _run(make_opt, steps=3, expect_graph=False)


def test_step_hooks_run_the_real_step():
    a, oa, b, ob = _pair(lambda p: torch.optim.AdamW(p, lr=0.01))
    seen = []
    ob.register_step_post_hook(lambda opt, args, kwargs: seen.append(len(opt.state)))
    oa.register_step_post_hook(lambda opt, args, kwargs: None)
    rec = Recorder()
    cstep = jf.compile(lambda o: o.step(), backend=rec)
    for i in range(3):
        _grads(a, i)
        _grads(b, i)
        oa.step()
        cstep(ob)
        _same(a, oa, b, ob)
    assert seen == [4, 4, 4] and not rec.graphs


def test_hook_added_later_is_seen():
    a, oa, b, ob = _pair(lambda p: torch.optim.SGD(p, lr=0.1))
    seen = []
    rec = Recorder()
    cstep = jf.compile(lambda o: o.step(), backend=rec)
    for i in range(4):
        if i == 2:
            assert len(rec.graphs) == 1  # traced until the hook appears
            ob.register_step_pre_hook(lambda opt, args, kwargs: seen.append(i))
        _grads(a, i)
        _grads(b, i)
        oa.step()
        cstep(ob)
        _same(a, oa, b, ob)
    assert seen == [2, 3]


def test_global_hook_registered_after_compiling_runs():
    a, oa, b, ob = _pair(lambda p: torch.optim.SGD(p, lr=0.1))
    seen = []
    cstep = jf.compile(lambda o: o.step(), backend=Recorder())
    handle = None
    try:
        for i in range(4):
            if i == 2:
                handle = register_optimizer_step_post_hook(
                    lambda opt, args, kwargs: seen.append(opt is ob))
            _grads(a, i)
            _grads(b, i)
            oa.step()
            cstep(ob)
            _same(a, oa, b, ob)
    finally:
        if handle is not None:
            handle.remove()
    assert seen == [False, True, False, True]  # eager's step, then ours, twice


def test_closure_runs_the_real_step():
    a, oa, b, ob = _pair(lambda p: torch.optim.SGD(p, lr=0.1))
    x = torch.randn(4, 6)

    def closure_of(m, o):
        def closure():
            o.zero_grad()
            loss = m(x).pow(2).sum()
            loss.backward()
            return loss
        return closure

    rec = Recorder()
    cstep = jf.compile(lambda o, c: o.step(c), backend=rec)
    for _ in range(3):
        la = oa.step(closure_of(a, oa))
        lb = cstep(ob, closure_of(b, ob))
        torch.testing.assert_close(la, lb)
        _same(a, oa, b, ob)
    assert not any(n.op == "call_method" and n.target == "add_"
                   for g in rec.graphs for n in g.graph.nodes)  # the real step ran


def test_subclass_keeps_its_own_step():
    class Mine(torch.optim.SGD):
        def step(self, closure=None):
            self.calls = getattr(self, "calls", 0) + 1
            return super().step(closure)

    m = _model()
    o = Mine(m.parameters(), lr=0.1)
    cstep = jf.compile(lambda o: o.step(), backend=Recorder())
    for i in range(3):
        _grads(m, i)
        cstep(o)
    assert o.calls == 3


def test_training_step_in_one_graph_after_backward():
    # the usual loop: zero_grad, forward, backward, then the update: all of
    # it one graph (frontend/whole_step.py), which mutates the parameters
    a, oa, b, ob = _pair(lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.01))
    x = torch.randn(8, 6)

    def train(m, o):
        o.zero_grad()
        loss = m(x).pow(2).mean()
        loss.backward()
        o.step()
        return loss

    ctrain = jf.compile(train)  # the fusing backend
    for _ in range(4):
        torch.testing.assert_close(ctrain(b, ob), train(a, oa), rtol=1e-5, atol=1e-6)
        _same(a, oa, b, ob)
    report = jf.explain(train)(b, ob)  # (state exists: the step is traced)
    assert report.breaks == [] and report.graph_count == 1, report


def test_dict_keyed_by_parameters():
    w = torch.nn.Parameter(torch.randn(3))
    v = torch.nn.Parameter(torch.randn(3))
    table = {w: torch.ones(3) * 2, v: torch.ones(3) * 3}
    rec = Recorder()

    def f(p, table):
        if p in table:
            return p * table[p]
        return p

    cf = jf.compile(f, backend=rec)
    with torch.no_grad():
        assert torch.equal(cf(w, table), w * 2)
        # another key present: the same graph, its input read as table[p]
        assert torch.equal(cf(v, table), v * 3)
        del table[v]
        assert torch.equal(cf(v, table), v)  # the membership guard fails: no graph
    assert len(rec.graphs) == 1


def test_missing_parameter_key_raises_as_eagerly():
    w = torch.nn.Parameter(torch.randn(3))
    v = torch.nn.Parameter(torch.randn(3))

    def f(p, table):
        s = table[p]  # read, not otherwise used: the key's presence must be guarded
        return p * 2

    cf = jf.compile(f, backend=Recorder())
    table = collections.defaultdict(dict, {w: {}})
    with torch.no_grad():
        cf(w, table)
        cf(v, table)  # a defaultdict inserts, as eagerly
        assert v in table
        with pytest.raises(KeyError):
            cf(v, {w: {}})
