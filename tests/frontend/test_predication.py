"""Predication: a relaxed branch site whose sides are pure computations is
traced with both sides in one graph and the results selected with
torch.where; sides that are not fit keep breaking the graph. Compared with
eager on values and gradients over mixed outcomes."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

import janus_frame as jf
from janus_frame import hook
from janus_frame.frontend import speculation
from jfutil import Recorder


def _sites(name):
    """Sites of frames named ``name`` learned by any compiler."""
    return [s for c in list(hook._compilers.values())
            for s in speculation.all_sites(c.speculation) if s.frame.endswith(name)]


def _mixed(n, gen):
    # outcomes alternating in runs too short to speculate on
    signs = [1, -1, -1, 1, -1, 1, 1, -1, 1, -1, -1, 1] * 3
    return [(torch.rand(4, generator=gen) + 0.1) * signs[i] for i in range(n)]


class Cell(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x):
        h = torch.tanh(self.lin(x))
        if h.sum() > 0:
            h = h * 0.9
            k = 2
        else:
            h = h + 0.1
            k = 2
        return (h * k).sum()


def test_relaxed_if_is_predicated_into_one_graph_with_equal_gradients():
    torch.manual_seed(0)
    ref = Cell()
    model = copy.deepcopy(ref)
    rec = Recorder()
    cm = jf.compile(model, backend=rec)
    gen = torch.Generator().manual_seed(0)
    for x in _mixed(24, gen):
        x = x * 4
        got, want = cm(x), ref(x)
        torch.testing.assert_close(got, want)
        g1 = torch.autograd.grad(got, list(model.parameters()))
        g2 = torch.autograd.grad(want, list(ref.parameters()))
        for a, b in zip(g1, g2):
            torch.testing.assert_close(a, b)
    site = _sites("Cell.forward")[0]
    assert site.current_form == "predicated", site.describe()
    last = rec.graphs[-1]
    assert torch.where in [n.target for n in last.graph.nodes]
    # after predication the whole forward is one graph with no break left
    n_graphs = len(rec.graphs)
    for x in _mixed(6, gen):
        torch.testing.assert_close(cm(x * 4), ref(x * 4))
    assert len(rec.graphs) == n_graphs


def test_side_with_side_effect_is_not_predicated():
    log = []

    def f(x):
        y = x * 2
        if y.sum() > 0:
            log.append("pos")
            y = y + 1
        else:
            y = y - 1
        return y

    cf = jf.compile(f, backend=Recorder())
    gen = torch.Generator().manual_seed(1)
    want_log = []
    for x in _mixed(16, gen):
        positive = bool((x * 2).sum() > 0)  # what eager does, without running f twice
        torch.testing.assert_close(cf(x), x * 2 + 1 if positive else x * 2 - 1)
        want_log += ["pos"] if positive else []
    assert log == want_log  # the append ran exactly when its side was taken
    site = _sites("not_predicated.<locals>.f")[0]
    assert site.form == "relaxed" and site.current_form == "break", site.describe()


def test_side_with_unbounded_derivative_is_not_predicated():
    def f(x):
        if x.sum() > 0:
            y = torch.sqrt(x)  # NaN gradient through where for negative x
        else:
            y = x * 0
        return y.sum()

    cf = jf.compile(f, backend=Recorder())
    gen = torch.Generator().manual_seed(2)
    for x in _mixed(16, gen):
        x1 = x.clone().requires_grad_()
        x2 = x.clone().requires_grad_()
        a, b = cf(x1), f(x2)
        torch.testing.assert_close(a, b)
        if x.sum() > 0:
            a.backward()
            b.backward()
            torch.testing.assert_close(x1.grad, x2.grad)
    site = _sites("derivative_is_not_predicated.<locals>.f")[0]
    assert site.current_form == "break", site.describe()


def test_sides_leaving_different_shapes_are_not_predicated():
    def f(x):
        if x.sum() > 0:
            y = x[:2]
        else:
            y = x
        return y * 2

    cf = jf.compile(f, backend=Recorder())
    gen = torch.Generator().manual_seed(3)
    for x in _mixed(16, gen):
        want = (x[:2] if x.sum() > 0 else x) * 2
        torch.testing.assert_close(cf(x), want)
    assert _sites("shapes_are_not_predicated.<locals>.f")[0].current_form == "break"


def test_if_without_else_and_nested_python_condition():
    def f(x, flag):
        y = x + 1
        if y.mean() > 1:
            if flag:
                y = y * 3
            y = y - 2
        return y

    cf = jf.compile(f, backend=Recorder())
    gen = torch.Generator().manual_seed(4)
    for i, x in enumerate(_mixed(20, gen)):
        x = x * 3
        flag = i % 2 == 0
        y = x + 1
        if y.mean() > 1:
            if flag:
                y = y * 3
            y = y - 2
        torch.testing.assert_close(cf(x, flag), y)
    assert _sites("nested_python_condition.<locals>.f")[0].current_form == "predicated"


class Shrink(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x, limit: float):
        h = self.lin(x)
        while h.norm() > limit:
            h = h * 0.5
        return h.sum()


def _shrink_case(scale, seed):
    return (torch.rand(4, generator=torch.Generator().manual_seed(seed)) + 0.1) * scale


@pytest.mark.reruns_ok  # a loop longer than unrolled reruns natively, by design
def test_while_on_tensor_is_unrolled_with_predicated_iterations():
    torch.manual_seed(0)
    ref = Shrink()
    model = copy.deepcopy(ref)
    rec = Recorder()
    cm = jf.compile(model, backend=rec)
    # 0 to 3 halvings, then (scale 60) a loop longer than the first unrolling
    scales = [1, 4, 0.5, 8, 2, 16, 1, 4, 8, 0.5, 16, 2] + [60, 60, 4, 1]
    for i, s in enumerate(scales):
        x = _shrink_case(s, i)
        got, want = cm(x, 1.0), ref(x, 1.0)
        torch.testing.assert_close(got, want)
        g1 = torch.autograd.grad(got, list(model.parameters()))
        g2 = torch.autograd.grad(want, list(ref.parameters()))
        for a, b in zip(g1, g2):
            torch.testing.assert_close(a, b)
    site = _sites("Shrink.forward")[0]
    assert site.current_form == "predicated", site.describe()
    assert site.misses >= 1 and site.trip_limit > 4, site.describe()
    graphs = len(rec.graphs)
    for i, s in enumerate([1, 4, 8, 2]):  # no new graph: one graph per call
        x = _shrink_case(s, 100 + i)
        torch.testing.assert_close(cm(x, 1.0), ref(x, 1.0))
    assert len(rec.graphs) == graphs


def test_while_with_side_effect_in_body_is_not_predicated():
    log = []

    def f(x):
        h = x * 1.0
        while h.norm() > 1:
            h = h * 0.5
            log.append(1)
        return h

    cf = jf.compile(f, backend=Recorder())
    expected = 0
    for i, s in enumerate([1, 4, 0.5, 8, 2, 16, 1, 4, 8, 0.5]):
        x = _shrink_case(s, i)
        h = x * 1.0
        while h.norm() > 1:
            h = h * 0.5
            expected += 1
        torch.testing.assert_close(cf(x), h)
    assert len(log) == expected
    site = _sites("not_predicated.<locals>.f")[0]
    assert site.current_form != "predicated", site.describe()


class ControlRNN(nn.Module):
    """The JANUS RNN: a tensor `if` and a tensor `while` every time step."""

    def __init__(self, inp=4, hidden=8, classes=3):
        super().__init__()
        self.w_in = nn.Linear(inp, hidden)
        self.w_h = nn.Linear(hidden, hidden, bias=False)
        self.head = nn.Linear(hidden, classes)

    def forward(self, xs):
        h = xs.new_zeros(xs.shape[1], self.w_h.in_features)
        for t in range(xs.shape[0]):
            h = torch.tanh(self.w_in(xs[t]) + self.w_h(h))
            if h.sum() > 0:
                h = h * 0.9
            else:
                h = h + 0.1
            while h.norm() > 1.0:
                h = h * 0.5
        return self.head(h)


@pytest.mark.reruns_ok  # mispredictions rerun natively, by design
def test_rnn_training_with_if_and_while_predicated_equals_eager():
    import torch.nn.functional as F

    torch.manual_seed(0)
    ref = ControlRNN()
    model = copy.deepcopy(ref)
    opt_r = torch.optim.SGD(ref.parameters(), lr=0.05)
    opt_c = torch.optim.SGD(model.parameters(), lr=0.05)

    def step(m, opt, xs, y):
        opt.zero_grad()
        loss = F.cross_entropy(m(xs), y)
        loss.backward()
        opt.step()
        return loss.detach()

    cstep = jf.compile(step)
    gen = torch.Generator().manual_seed(5)
    for i in range(20):
        # input scale varies: both branch outcomes and 0 to 4 halvings occur
        xs = torch.randn(3, 2, 4, generator=gen) * (1 + 2 * (i % 3))
        y = torch.randint(0, 3, (2,), generator=gen)
        torch.testing.assert_close(cstep(model, opt_c, xs, y), step(ref, opt_r, xs, y),
                                   rtol=1e-4, atol=1e-5)
    for p, q in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)
    sites = {s.lineno: s for s in _sites("ControlRNN.forward")}
    forms = {s.current_form for s in sites.values()}
    assert forms == {"predicated"}, [s.describe() for s in sites.values()]
