"""JANUS-style speculation: tensor-dependent branches speculated on with a
run-time check and exact fallback, recursion through cached per-node
entries, automatic dynamic ints, type-polymorphic frames."""
from __future__ import annotations

import copy
import random

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import janus_frame as jf
from janus_frame.frontend import speculation
from jfutil import Recorder


class BranchyRNN(nn.Module):
    """An RNN cell with a tensor-dependent if and while, dropout, a Python
    list and a counter: everything a misprediction must leave exact."""

    def __init__(self, d=8):
        super().__init__()
        self.cell = nn.Linear(2 * d, d)
        self.out = nn.Linear(d, 1)
        self.register_buffer("seen", torch.zeros(d))
        self.calls = 0

    def forward(self, xs, trace):
        h = xs.new_zeros(xs.shape[1], xs.shape[2])
        for t in range(xs.shape[0]):
            h = torch.tanh(self.cell(torch.cat([xs[t], h], dim=1)))
            if xs[t].sum() > 0:
                h = F.dropout(h, 0.2, self.training)
                trace.append("pos")
            else:
                h = h * 0.5
                trace.append("neg")
        while h.norm() > 1:
            h = h * 0.5
        self.calls += 1
        self.seen.add_(h.detach().mean(0))
        return self.out(h).sum()


def _step(model, opt, xs, trace):
    opt.zero_grad()
    loss = model(xs, trace)
    loss.backward()
    opt.step()
    return loss


def test_rnn_with_tensor_branches_equals_eager_through_speculation_and_misses():
    torch.manual_seed(0)
    ref = BranchyRNN()
    model = copy.deepcopy(ref)
    rec = Recorder()
    cmodel = jf.compile(model, backend=rec)
    opt_r = torch.optim.SGD(ref.parameters(), lr=0.05)
    opt_c = torch.optim.SGD(model.parameters(), lr=0.05)
    gen = torch.Generator().manual_seed(1)
    # mostly positive inputs (speculation), then forced mispredictions
    signs = [1.0] * 8 + [-1.0] * 3 + [1.0] * 5 + [-1.0, 1.0, -1.0, 1.0]
    tr_r, tr_c = [], []
    for i, sign in enumerate(signs):
        xs = (torch.rand(3, 4, 8, generator=gen) + 0.05) * sign
        torch.manual_seed(100 + i)
        lr_ = _step(ref, opt_r, xs, tr_r)
        torch.manual_seed(100 + i)
        lc = _step(cmodel, opt_c, xs, tr_c)
        torch.testing.assert_close(lc, lr_, rtol=1e-4, atol=1e-5)
        assert tr_c == tr_r
    for p, q in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(model.seen, ref.seen, rtol=1e-4, atol=1e-5)
    assert model.calls == ref.calls == len(signs)
    sites = [s for s in speculation.all_sites(cmodel._janus_compiler.speculation)
             if s.frame.startswith("BranchyRNN.forward")]
    assert sites, "no branch site recorded"
    if_site = min(sites, key=lambda s: s.lineno)
    assert if_site.hits > 0, if_site.describe()  # speculation ran
    assert if_site.misses > 0, if_site.describe()  # and was checked
    assert if_site.form == "relaxed"  # repeated misses relax the site for good


def test_misprediction_gives_eager_side_effects_and_rng():
    calls = []

    def f(x, log):
        y = torch.tanh(x) * 2
        if y.sum() > 0:
            z = F.dropout(y, 0.5, True)
            log.append("pos")
        else:
            z = y - 1
            log.append("neg")
        calls.append(1)
        return z + torch.rand(1)

    rec = Recorder()
    cf = jf.compile(f, backend=rec)
    pos = torch.ones(4)
    for _ in range(speculation.SPECULATE_AFTER + 2):
        cf(pos, [])
    site = [s for s in speculation.all_sites(cf._janus_compiler.speculation)
            if s.frame.endswith("rng.<locals>.f")][0]
    assert site.form == "speculate" and site.predicted is True
    hits = site.hits
    cf(pos, [])
    assert site.hits == hits + 1
    # a misprediction: results, list, counter and random numbers are eager's
    log_e, log_c = [], []
    torch.manual_seed(5)
    exp = f(-pos, log_e)
    rng_after_e = torch.get_rng_state()
    n = len(calls)
    torch.manual_seed(5)
    got = cf(-pos, log_c)
    torch.testing.assert_close(got, exp)
    assert log_c == log_e == ["neg"]
    assert len(calls) == n + 1  # the segment's deferred effects were discarded, eager's ran once
    assert torch.equal(torch.get_rng_state(), rng_after_e)
    assert site.misses == 1


def test_speculation_visible_in_logs(caplog):
    import logging

    from janus_frame.diagnostics.logs import set_logs

    def f(x):
        if x.sum() > 0:
            return x + 1
        return x - 1
    set_logs("speculation")
    try:
        with caplog.at_level(logging.INFO, logger="janus_frame"):
            cf = jf.compile(f, backend="eager")
            for _ in range(4):
                cf(torch.ones(2))
        msgs = [r.getMessage() for r in caplog.records if "now speculate" in r.getMessage()]
        assert msgs and __file__ in msgs[0]
    finally:
        set_logs("")


class Node:
    __slots__ = ("left", "right", "word")

    def __init__(self, left=None, right=None, word=None):
        self.left, self.right, self.word = left, right, word


def random_tree(rng, leaves, vocab):
    if leaves == 1:
        return Node(word=rng.randrange(vocab))
    k = rng.randint(1, leaves - 1)
    return Node(random_tree(rng, k, vocab), random_tree(rng, leaves - k, vocab))


class TreeLSTM(nn.Module):
    def __init__(self, vocab=40, emb=8, hidden=8):
        super().__init__()
        self.hidden = hidden
        self.embed = nn.Embedding(vocab, emb)
        self.leaf = nn.Linear(emb, 3 * hidden)
        self.left = nn.Linear(hidden, 5 * hidden)
        self.right = nn.Linear(hidden, 5 * hidden, bias=False)
        self.classify = nn.Linear(hidden, 3)

    def node(self, tree):
        if tree.word is not None:
            x = self.embed.weight[tree.word].unsqueeze(0)
            i, o, u = self.leaf(x).chunk(3, dim=1)
            c = torch.sigmoid(i) * torch.tanh(u)
            return torch.sigmoid(o) * torch.tanh(c), c
        hl, cl = self.node(tree.left)
        hr, cr = self.node(tree.right)
        i, fl, fr, o, u = (self.left(hl) + self.right(hr)).chunk(5, dim=1)
        c = torch.sigmoid(i) * torch.tanh(u) + torch.sigmoid(fl) * cl + torch.sigmoid(fr) * cr
        return torch.sigmoid(o) * torch.tanh(c), c

    def forward(self, tree):
        return self.classify(self.node(tree)[0])


def test_treelstm_over_50_trees_compiles_a_constant_number_of_times():
    torch.manual_seed(0)
    ref = TreeLSTM()
    model = copy.deepcopy(ref)
    rec = Recorder()

    def make(m):
        opt = torch.optim.SGD(m.parameters(), lr=0.1)

        def step(tree, label):
            opt.zero_grad()
            loss = F.cross_entropy(m(tree), label)
            loss.backward()
            opt.step()
            return loss
        return step

    ref_step, step = make(ref), jf.compile(make(model), backend=rec)
    rng = random.Random(0)
    counts = []
    for i in range(50):
        tree = random_tree(rng, rng.randint(5, 40), 40)
        label = torch.tensor([rng.randrange(3)])
        torch.testing.assert_close(step(tree, label), ref_step(tree, label), rtol=1e-4, atol=1e-5)
        counts.append(len(rec.graphs))
    for p, q in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)
    assert counts[-1] <= 8, counts  # independent of the number and shapes of trees
    assert counts[-1] == counts[4], counts  # nothing new after the first trees
    assert jf.hook.stats.recompiles <= 3


@pytest.mark.reruns_ok
def test_varying_int_becomes_a_graph_input_after_one_recompile():
    table = torch.randn(10, 4)

    def f(t, i):
        return t[i] * 2

    rec = Recorder()
    cf = jf.compile(f, backend=rec)
    for i in [3, 7, 1, 9, 0, 5]:
        torch.testing.assert_close(cf(table, i), table[i] * 2)
    assert len(rec.graphs) == 2  # static first, then the int as an input
    with pytest.raises(IndexError):
        cf(table, 12)  # checked at run time like eager


def test_type_polymorphic_function_and_cache_limit():
    def f(x):
        if x is None:
            return torch.zeros(2)
        return torch.ones(2) * x

    rec = Recorder()
    cf = jf.compile(f, backend=rec, recompile_limit=4)
    inputs = [3, 2.5, torch.tensor([1.0, 2.0]), None, "ab"]
    for x in inputs[:4]:
        torch.testing.assert_close(cf(x), f(x))
    assert len(rec.graphs) <= 4
    with pytest.warns(RuntimeWarning, match="recompile limit"):
        with pytest.raises(TypeError):
            cf("ab")  # runs natively past the limit: eager's error


def test_comparison_on_item_is_a_speculation_site():
    seen = []

    def f(x):
        y = torch.tanh(x) * 3
        if y.sum().item() > 0:
            z = y * 2
        else:
            z = y - 1
        seen.append(1)
        return z + 1

    rec = Recorder()
    cf = jf.compile(f, backend=rec)
    pos = torch.ones(4)
    for _ in range(speculation.SPECULATE_AFTER + 3):
        torch.testing.assert_close(cf(pos), f(pos))
    site = [s for s in speculation.all_sites(cf._janus_compiler.speculation)
            if s.frame.endswith("item_is_a_speculation_site.<locals>.f")][0]
    assert site.form == "speculate" and site.predicted is True and site.hits > 0
    # the speculated graph holds the whole function: no .item() left in Python
    assert torch.tanh in [n.target for n in rec.graphs[-1].graph.nodes]
    neg = -torch.ones(4)
    torch.testing.assert_close(cf(neg), f(neg))  # a miss: eager's result
    assert site.misses == 1
    assert len(seen) == 2 * (speculation.SPECULATE_AFTER + 4)


def test_item_used_as_a_number_still_breaks_there():
    def f(x):
        v = x.sum().item()
        return x * v + 1

    rec = Recorder()
    cf = jf.compile(f, backend=rec)
    x = torch.randn(3)
    torch.testing.assert_close(cf(x), f(x))
    report = jf.explain(f)(x)
    assert "JF004" in [b.id for b in report.breaks]
