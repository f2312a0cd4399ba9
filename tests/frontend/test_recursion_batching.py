"""Recursion batching (janus_frame/batching.py): the graph calls of a recursive
function's entries are recorded while the outermost recursive call runs and
then run one batched call per (entry, depth); a schedule that repeats (a
fixed tree) runs as one compiled graph of all its levels. Differential against eager:
losses, gradients and parameters after SGD steps; the batched-call counter
shows the batching happened; recursions that cannot be batched (side
effects, data-dependent recursion, exceptions) give eager's results."""
from __future__ import annotations

import copy
import random
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import janus_frame as jf
from janus_frame import batching
from janus_frame.cache import stats
from janus_frame.config import config


class Node:
    __slots__ = ("left", "right", "word", "h")

    def __init__(self, left=None, right=None, word=None):
        self.left, self.right, self.word = left, right, word


def random_tree(rng, leaves, vocab=40):
    if leaves == 1:
        return Node(word=rng.randrange(vocab))
    k = rng.randint(1, leaves - 1)
    return Node(random_tree(rng, k, vocab), random_tree(rng, leaves - k, vocab))


def balanced_tree(rng, leaves, vocab=40):
    if leaves == 1:
        return Node(word=rng.randrange(vocab))
    return Node(balanced_tree(rng, leaves // 2, vocab), balanced_tree(rng, leaves - leaves // 2, vocab))


class ModuleTreeLSTM(nn.Module):
    """nn.Linear gates, chunked (the bench's first spelling)."""

    def __init__(self, vocab=40, emb=8, hidden=8):
        super().__init__()
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


class FunctionalTreeLSTM(nn.Module):
    """Plain weights (``x @ W + b``), both children concatenated, split gates."""

    def __init__(self, vocab=40, emb=8, hidden=8):
        super().__init__()
        self.hidden = hidden
        self.emb = nn.Parameter(torch.randn(vocab, emb))
        self.w_leaf = nn.Parameter(torch.randn(emb, 3 * hidden) / emb ** 0.5)
        self.b_leaf = nn.Parameter(torch.zeros(3 * hidden))
        self.u = nn.Parameter(torch.randn(2 * hidden, 5 * hidden) / (2 * hidden) ** 0.5)
        self.b = nn.Parameter(torch.randn(5 * hidden) * 0.1)
        self.w_out = nn.Parameter(torch.randn(hidden, 3) / hidden ** 0.5)

    def node(self, tree):
        H = self.hidden
        if tree.word is not None:
            iou = self.emb[tree.word].unsqueeze(0) @ self.w_leaf + self.b_leaf
            c = torch.sigmoid(iou[:, :H]) * torch.tanh(iou[:, 2 * H:])
            return torch.sigmoid(iou[:, H:2 * H]) * torch.tanh(c), c
        hl, cl = self.node(tree.left)
        hr, cr = self.node(tree.right)
        g = torch.cat([hl, hr], 1) @ self.u + self.b
        i, fl, fr, o, u = g.split(H, 1)
        c = torch.sigmoid(i) * torch.tanh(u) + torch.sigmoid(fl) * cl + torch.sigmoid(fr) * cr
        return torch.sigmoid(o) * torch.tanh(c), c

    def forward(self, tree):
        return self.node(tree)[0] @ self.w_out


def close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.fixture(autouse=True)
def _batching_on():
    old, config.batch_recursion = config.batch_recursion, True
    jf.reset()
    yield
    config.batch_recursion = old
    jf.reset()


def _train(model_cls, trees, backend, on_step=None):
    torch.manual_seed(0)
    ref = model_cls()
    model = copy.deepcopy(ref)

    def make(m):
        opt = torch.optim.SGD(m.parameters(), lr=0.1)

        def step(tree, label):
            opt.zero_grad()
            loss = F.cross_entropy(m(tree), label)
            loss.backward()
            grads = [p.grad.clone() for p in m.parameters()]
            opt.step()
            return loss, grads
        return step

    ref_step, step = make(ref), jf.compile(make(model), backend=backend)
    rng = random.Random(1)
    for tree in trees:
        label = torch.tensor([rng.randrange(3)])
        (loss, grads), (rloss, rgrads) = step(tree, label), ref_step(tree, label)
        close(loss, rloss)
        for g, r in zip(grads, rgrads):
            close(g, r)
        if on_step is not None:
            on_step()
    for p, q in zip(model.parameters(), ref.parameters()):
        close(p, q)


@pytest.mark.parametrize("model_cls", [ModuleTreeLSTM, FunctionalTreeLSTM])
@pytest.mark.parametrize("backend", ["eager", "default"])
def test_treelstm_training_matches_eager_and_is_batched(model_cls, backend):
    rng = random.Random(0)
    fixed = balanced_tree(rng, 8)
    trees = [fixed] * 4 + [random_tree(rng, rng.randint(2, 12)) for _ in range(8)]
    _train(model_cls, trees, backend)
    # the calls of one kind at one depth ran together: far fewer batched
    # calls than nodes, and many rows in them
    assert stats.batched_calls > 0
    assert stats.batched_rows >= 3 * stats.batched_calls
    # the fusing backend compiled the batched graphs; the eager one runs
    # them as traced
    assert (stats.batched_compiled > 0) == (backend == "default")


def test_one_batched_call_per_level_on_a_balanced_tree():
    torch.manual_seed(0)
    model = ModuleTreeLSTM()
    f = jf.compile(model, backend="eager")
    tree = balanced_tree(random.Random(0), 8)  # levels of 8 leaves, 4, 2, then the root
    for _ in range(4):  # warm: every entry compiled
        out = f(tree)
    before, rows = stats.batched_calls, stats.batched_rows
    out = f(tree)
    close(out, model(tree))
    assert stats.batched_calls - before == 3
    assert stats.batched_rows - rows == 8 + 4 + 2


def test_random_trees_compile_a_bounded_number_of_graphs():
    torch.manual_seed(0)
    model = ModuleTreeLSTM()
    f = jf.compile(model, backend="eager")
    rng = random.Random(2)
    for i in range(30):
        tree = random_tree(rng, rng.randint(5, 30))
        close(f(tree), model(tree))
        if i == 5:
            compiled = stats.frames_compiled
    assert stats.frames_compiled == compiled  # nothing new after the first trees
    assert stats.batched_calls > 30


def test_turned_off_nothing_is_batched():
    config.batch_recursion = False
    torch.manual_seed(0)
    model = ModuleTreeLSTM()
    f = jf.compile(model, backend="eager")
    tree = balanced_tree(random.Random(0), 8)
    for _ in range(3):
        close(f(tree), model(tree))
    assert stats.batched_calls == 0


class SideEffectTree(ModuleTreeLSTM):
    """Each node's state kept on the tree and counted: Python side effects
    in the per-node entries, which a recording must not defer."""

    def __init__(self):
        super().__init__()
        self.visits = 0

    def node(self, tree):
        h, c = super().node(tree) if tree.word is not None else self._inner(tree)
        tree.h = h
        self.visits += 1
        return h, c

    def _inner(self, tree):
        hl, cl = self.node(tree.left)
        hr, cr = self.node(tree.right)
        i, fl, fr, o, u = (self.left(hl) + self.right(hr)).chunk(5, dim=1)
        c = torch.sigmoid(i) * torch.tanh(u) + torch.sigmoid(fl) * cl + torch.sigmoid(fr) * cr
        return torch.sigmoid(o) * torch.tanh(c), c


def test_side_effects_in_the_recursion_stay_eager_exact():
    torch.manual_seed(0)
    ref = SideEffectTree()
    model = copy.deepcopy(ref)
    f = jf.compile(model, backend="eager")
    rng = random.Random(3)
    for _ in range(5):
        tree = balanced_tree(rng, 6)
        twin = copy.deepcopy(tree)
        close(f(tree), ref(twin))
        close(tree.h, twin.h)
        close(tree.left.left.h, twin.left.left.h)
    assert model.visits == ref.visits
    assert stats.batched_calls == 0


class NormalisedTree(nn.Module):
    """Reductions inside the node (a softmax and a norm over the node's own
    features): per-row under vmap, so batched and still eager's numbers."""

    def __init__(self, vocab=40, hidden=8):
        super().__init__()
        self.emb = nn.Embedding(vocab, hidden)
        self.w = nn.Linear(2 * hidden, hidden)

    def node(self, tree):
        if tree.word is not None:
            x = self.emb.weight[tree.word].unsqueeze(0)
            return x / x.norm()
        a = self.node(tree.left)
        b = self.node(tree.right)
        h = torch.softmax(self.w(torch.cat([a, b], 1)), dim=1)
        return h - h.mean()

    def forward(self, tree):
        return self.node(tree)


def test_reductions_inside_a_node_are_per_row():
    torch.manual_seed(0)
    ref = NormalisedTree()
    model = copy.deepcopy(ref)
    f = jf.compile(model, backend="eager")
    rng = random.Random(4)
    for _ in range(12):
        tree = random_tree(rng, 9)
        out, r = f(tree), ref(tree)
        close(out, r)
        out.sum().backward()
        r.sum().backward()
    for p, q in zip(model.parameters(), ref.parameters()):
        close(p.grad, q.grad)
    assert stats.batched_calls > 0


class DataDependentTree(nn.Module):
    """The recursion follows a tensor's value (which child to descend)."""

    def __init__(self, vocab=40, hidden=8):
        super().__init__()
        self.emb = nn.Embedding(vocab, hidden)
        self.w = nn.Linear(hidden, hidden)

    def node(self, tree, h):
        if tree.word is not None:
            return h + self.emb.weight[tree.word]
        g = torch.tanh(self.w(h))
        if g.sum() > 0:
            return self.node(tree.left, g)
        return self.node(tree.right, g) * 2

    def forward(self, tree, h):
        return self.node(tree, h)


def test_data_dependent_recursion_stays_correct():
    torch.manual_seed(0)
    ref = DataDependentTree()
    model = copy.deepcopy(ref)
    f = jf.compile(model, backend="eager")
    rng = random.Random(5)
    for _ in range(8):
        tree = random_tree(rng, 12)
        h = torch.randn(8)
        close(f(tree, h), ref(tree, h))


class RaisingTree(ModuleTreeLSTM):
    def node(self, tree):
        if tree.word == 0:
            raise ValueError("word 0 is reserved")
        return super().node(tree)


def _no_zero(tree):
    if tree.word is not None:
        tree.word = tree.word or 1
    else:
        _no_zero(tree.left)
        _no_zero(tree.right)
    return tree


def test_an_exception_in_the_recursion_is_eager_s():
    torch.manual_seed(0)
    model = RaisingTree()
    f = jf.compile(model, backend="eager")
    rng = random.Random(6)
    for _ in range(4):
        tree = _no_zero(balanced_tree(rng, 8))
        close(f(tree), model(tree))
    assert stats.batched_calls > 0
    bad = _no_zero(balanced_tree(rng, 8))
    bad.right.right.right.word = 0
    with pytest.raises(ValueError, match="word 0 is reserved"):
        f(bad)
    ok = _no_zero(balanced_tree(rng, 8))
    close(f(ok), model(ok))


def test_recordings_are_per_thread():
    import threading

    torch.manual_seed(0)
    model = ModuleTreeLSTM()
    f = jf.compile(model, backend="eager")
    rng = random.Random(7)
    trees = [balanced_tree(rng, 8) for _ in range(6)]
    for t in trees[:3]:
        close(f(t), model(t))  # warm
    errors = []

    def run(k):
        try:
            for _ in range(10):
                for t in trees[k::2]:
                    close(f(t), model(t))
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_a_program_wrapping_the_batching_runtime_runs_it_natively(monkeypatch):
    # the wrapper is the program's own code and is compiled when the
    # replacement calls it; what it calls of janus_frame's run time is not
    # traced (its state is not the program's), so it runs as it is
    flushes = []
    original = batching.Recorder.flush

    def timed_flush(self):
        flushes.append(len(self.calls))
        return original(self)

    monkeypatch.setattr(batching.Recorder, "flush", timed_flush)
    torch.manual_seed(0)
    model = ModuleTreeLSTM()
    f = jf.compile(model, backend="eager")
    tree = balanced_tree(random.Random(0), 8)
    internal = stats.internal_errors
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no internal-error warning
        for _ in range(4):
            close(f(tree), model(tree))
    assert stats.internal_errors == internal
    assert flushes and stats.batched_calls > 0


def test_janus_frames_own_functions_are_not_traced():
    from janus_frame import trace_rules

    def f(x):
        return x + 1, trace_rules.is_internal_file(__file__)

    cf = jf.compile(f, backend="eager")
    x = torch.randn(3)
    with jf.profile() as prof:
        out, internal = cf(x)
    close(out, x + 1)
    assert internal is False
    assert [(s.break_id, "janus_frame's own" in s.reason) for s in prof.report().sites
            if s.break_id] == [("JF002", True)]


# -- a repeated schedule: one compiled graph of all its levels ------------------------


@pytest.mark.parametrize("model_cls", [ModuleTreeLSTM, FunctionalTreeLSTM])
def test_a_repeated_tree_runs_as_one_compiled_schedule(model_cls):
    rng = random.Random(8)
    first, second = balanced_tree(rng, 8), random_tree(rng, 9)
    ran = []
    seen = [stats.schedule_calls]

    def on_step():
        ran.append(stats.schedule_calls - seen[0])
        seen[0] = stats.schedule_calls

    # losses, gradients and parameters against eager at every step
    _train(model_cls, [first] * 6 + [second] * 6, "default", on_step)
    assert stats.schedules_compiled == 2  # one per tree
    # once each tree's frames are compiled and its schedule seen, every step
    # is one call of the compiled schedule
    assert ran[3:6] == [1, 1, 1] and ran[9:] == [1, 1, 1], ran


def test_new_trees_compile_no_schedule():
    rng = random.Random(9)
    trees = [random_tree(rng, n) for n in range(6, 18)]
    _train(ModuleTreeLSTM, trees, "default")
    assert stats.schedules_compiled == 0 and stats.schedule_calls == 0
    assert stats.batched_calls > 0  # (level by level)


def test_a_schedule_follows_the_tree_it_is_given():
    torch.manual_seed(0)
    ref = ModuleTreeLSTM()
    model = copy.deepcopy(ref)
    f = jf.compile(model)
    tree = balanced_tree(random.Random(10), 8)
    for _ in range(5):
        close(f(tree), ref(tree))
    assert stats.schedules_compiled == 1
    calls = stats.schedule_calls
    # the same shape over other words: the words are the graph's inputs
    leaf = tree.left.left.left
    leaf.word = (leaf.word + 1) % 40
    close(f(tree), ref(tree))
    assert stats.schedule_calls == calls + 1
    # another shape: level by level, then its own schedule from its second
    # call on
    tree.right.right.right = Node(Node(word=3), Node(word=4))
    for _ in range(3):
        close(f(tree), ref(tree))
    assert stats.schedules_compiled == 2
    assert stats.schedule_calls == calls + 1 + 2


class FeatureTree(nn.Module):
    """Leaves hold their own feature rows (tensors the recursion reads off
    the tree, stacked per level), inner nodes a gated sum of the children."""

    def __init__(self, feat=6, hidden=8):
        super().__init__()
        self.leaf = nn.Linear(feat, hidden)
        self.mix = nn.Linear(2 * hidden, 2 * hidden)

    def node(self, tree):
        if tree.word is not None:
            return torch.tanh(self.leaf(tree.h))
        a, b = self.node(tree.left), self.node(tree.right)
        gate, cand = self.mix(torch.cat([a, b], 1)).chunk(2, dim=1)
        return torch.sigmoid(gate) * torch.tanh(cand) + (a + b) / 2

    def forward(self, tree):
        return self.node(tree)


def _with_features(tree, rng):
    if tree.word is not None:
        tree.h = torch.randn(1, 6, generator=rng)
    else:
        _with_features(tree.left, rng)
        _with_features(tree.right, rng)
    return tree


def test_a_schedule_without_grad_is_its_own():
    torch.manual_seed(0)
    ref = FeatureTree()
    f = jf.compile(copy.deepcopy(ref))
    tree = _with_features(balanced_tree(random.Random(11), 8), torch.Generator().manual_seed(0))
    for _ in range(4):
        with torch.no_grad():
            out = f(tree)
        assert not out.requires_grad
        close(out, ref(tree))
        out = f(tree)
        assert out.requires_grad
        close(out, ref(tree))
    assert stats.schedules_compiled == 2  # one per grad mode
    calls = stats.schedule_calls
    # new feature values at the same leaves: inputs of the same schedule
    _with_features(tree, torch.Generator().manual_seed(1))
    with torch.no_grad():
        close(f(tree), ref(tree))
    assert stats.schedule_calls == calls + 1


def test_a_gather_from_an_expanded_table_reads_the_table():
    from janus_frame.torch_compat import make_fx

    aten = torch.ops.aten
    table = torch.randn(30, 6, requires_grad=True)
    words = torch.tensor([[3], [7], [3], [29]])

    def lookup(w, i):  # a leaf's embedding row (as traced), vmapped over the leaves
        return torch.index_select(w, 0, i) * 2

    traced = make_fx(torch.vmap(lookup, in_dims=(None, 0)))(table, words)

    def gathers_from_expanded():
        return [n for n in traced.graph.nodes if n.target is aten.gather.default
                and n.args[0].target is aten.expand.default]

    assert gathers_from_expanded()  # (vmap's rule; else this test shows nothing)
    batching._direct_gathers(traced)
    assert not gathers_from_expanded()
    assert not any(n.target is aten.expand.default and n.args[0].op == "placeholder"
                   for n in traced.graph.nodes)
    out = traced(table, words)
    ref = table[words.view(-1)].view(4, 1, 6) * 2
    close(out, ref)
    weights = torch.randn_like(ref)
    close(torch.autograd.grad((out * weights).sum(), table)[0],
          torch.autograd.grad((ref * weights).sum(), table)[0])


def test_an_inference_recursion_over_word_ids_is_batched():
    # leaves index an embedding table with their word (an int that differs
    # per leaf): under no_grad the row is a gather in the leaf's graph, as
    # with grad on, so the leaves batch instead of breaking each
    torch.manual_seed(0)
    ref = FunctionalTreeLSTM()
    f = jf.compile(copy.deepcopy(ref))
    rng = random.Random(12)
    fixed = balanced_tree(rng, 8)
    with torch.no_grad():
        for tree in [fixed] * 4 + [random_tree(rng, n) for n in (5, 9, 12)]:
            close(f(tree), ref(tree))
    assert stats.batched_calls > 0 and stats.schedules_compiled == 1
