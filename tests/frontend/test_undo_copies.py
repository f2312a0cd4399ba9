"""The copies a graph takes of the inputs it updates in place (the undo set,
frontend/segment.py and run_errors.py).

A training step's graph updates the parameters and the optimizer state in
place; if it raised midway, the frame must rerun natively from the state it
started in, so it copies them first.  When every error left to the graph is
an index out of range (an embedding's tokens, a loss's class targets, read
from the step's inputs), the replacement checks those indices first and
takes the copies only on a call that could raise.

Differential: the compiled and the plain step run on copies of one model and
optimizer; losses, parameters and the optimizer state are compared after
every step, and so are the exception and the state after a call whose index
is out of range.  The copies taken are counted on the steady calls: the
copies must be gone where the indices decide every error, and kept where
they cannot be checked before the graph runs.
"""
from __future__ import annotations

import contextlib
import copy

import pytest
import torch
import torch.nn.functional as F

import janus_frame as jf
from janus_frame.frontend import replacement, whole_step
from janus_frame.frontend.run_errors import in_range, run_time_errors

BACKENDS = ["default", "eager"]
VOCAB, CLASSES = 20, 6


class Tagger(torch.nn.Module):
    def __init__(self, shift=False, positions=False):
        super().__init__()
        self.emb = torch.nn.Embedding(VOCAB, 8)
        self.pos = torch.nn.Embedding(5, 8)
        self.out = torch.nn.Linear(8, CLASSES)
        self.shift, self.positions = shift, positions

    def forward(self, tokens):
        # shift: the index is computed in the graph (no check of an input
        # decides it); positions: an arange of constants (decided when traced)
        h = self.emb(tokens + 1 if self.shift else tokens)
        if self.positions:
            h = h + self.pos(torch.arange(5))
        return self.out(torch.tanh(h)).reshape(-1, CLASSES)


def _step(model, opt, **loss_kw):
    def step(tokens, labels):
        opt.zero_grad()
        loss = F.cross_entropy(model(tokens), labels.reshape(-1), **loss_kw)
        loss.backward()
        opt.step()
        return loss
    return step


def _pair(**kw):
    torch.manual_seed(0)
    a = Tagger(**kw)
    b = copy.deepcopy(a)
    opt = (lambda m: torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9))
    return a, opt(a), b, opt(b)


def _batch(seed, high=VOCAB - 1, ignored=False):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, CLASSES, (3, 5), generator=g)
    if ignored:
        labels[0, :2] = -100
    return torch.randint(0, high, (3, 5), generator=g), labels


def _same(a, oa, b, ob):
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)
    for sa, sb in zip(oa.state.values(), ob.state.values()):
        for k in sa:
            torch.testing.assert_close(sa[k], sb[k], rtol=1e-5, atol=1e-6)


@contextlib.contextmanager
def _counting_clones():
    """The copies the replacements take (``replacement._save``), counted."""
    calls = []
    orig = replacement._CLONE

    def clone(tensor):
        calls.append(tuple(tensor.shape))
        return orig(tensor)

    replacement._CLONE = clone
    try:
        yield calls
    finally:
        replacement._CLONE = orig


def _steady(compiled, plain, a, oa, b, ob, ignored=False):
    """Two warm-up steps, then three counted ones; the copies taken on them."""
    for seed in (1, 2):
        torch.testing.assert_close(compiled(*_batch(seed)), plain(*_batch(seed)).detach())
    before = whole_step.counts["traced"]
    with _counting_clones() as calls:
        losses = [compiled(*_batch(seed, ignored=ignored)) for seed in (3, 4, 5)]
    assert whole_step.counts["traced"] == before, "recompiled in the counted steps"
    for seed, loss in zip((3, 4, 5), losses):
        torch.testing.assert_close(loss, plain(*_batch(seed, ignored=ignored)).detach(),
                                   rtol=1e-5, atol=1e-6)
    _same(a, oa, b, ob)
    return calls


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("positions", [False, True], ids=["tokens", "tokens+arange"])
def test_step_whose_errors_are_its_indices_copies_nothing(backend, positions):
    a, oa, b, ob = _pair(positions=positions)
    compiled = jf.compile(_step(a, oa), backend=backend)
    before = whole_step.counts["traced"]
    calls = _steady(compiled, _step(b, ob), a, oa, b, ob)
    assert whole_step.counts["traced"] > before  # the backward is in the graph
    assert calls == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_ignored_targets_are_in_range(backend):
    a, oa, b, ob = _pair()
    calls = _steady(jf.compile(_step(a, oa), backend=backend), _step(b, ob), a, oa, b, ob,
                    ignored=True)
    assert calls == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_index_computed_in_the_graph_keeps_the_copies(backend):
    a, oa, b, ob = _pair(shift=True)
    calls = _steady(jf.compile(_step(a, oa), backend=backend), _step(b, ob), a, oa, b, ob)
    n = len(list(a.parameters()))
    assert len(calls) >= 3 * n  # every parameter (and momentum buffer) each call


def _raise_like_eager(compiled, plain, a, oa, b, ob, batch):
    errors = []
    for fn in (compiled, plain):
        with pytest.raises(IndexError) as e:
            fn(*batch)
        errors.append(str(e.value))
    assert errors[0] == errors[1]
    _same(a, oa, b, ob)
    for p, q in zip(a.parameters(), b.parameters()):
        assert (p.grad is None) == (q.grad is None)


@pytest.mark.reruns_ok
@pytest.mark.parametrize("backend", BACKENDS)
def test_token_out_of_range_raises_eagers_error_with_the_state_untouched(backend):
    a, oa, b, ob = _pair()
    compiled, plain = jf.compile(_step(a, oa), backend=backend), _step(b, ob)
    _steady(compiled, plain, a, oa, b, ob)
    tokens, labels = _batch(9)
    tokens[2, 3] = VOCAB
    _raise_like_eager(compiled, plain, a, oa, b, ob, (tokens, labels))
    # and the step goes on compiled, still right
    _steady(compiled, plain, a, oa, b, ob)


@pytest.mark.reruns_ok
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bad", [CLASSES, -1, -100 + 1])
def test_target_out_of_range_raises_eagers_error_with_the_state_untouched(backend, bad):
    a, oa, b, ob = _pair()
    compiled, plain = jf.compile(_step(a, oa), backend=backend), _step(b, ob)
    _steady(compiled, plain, a, oa, b, ob)
    tokens, labels = _batch(9, ignored=True)
    labels[1, 1] = bad
    _raise_like_eager(compiled, plain, a, oa, b, ob, (tokens, labels))


def test_in_range():
    t = torch.tensor([[0, 3], [4, 1]])
    assert in_range(((t, 5, None),))
    assert not in_range(((t, 4, None),))
    assert in_range(((torch.tensor([-100, 2]), 3, -100),))
    assert not in_range(((torch.tensor([-100, 3]), 3, -100),))
    assert not in_range(((torch.tensor([-1, 2]), 3, -100),))
    assert in_range(((torch.empty(0, dtype=torch.long), 0, None),))


def _graph(fn, *args):
    graphs = []

    def backend(gm, example):
        graphs.append(gm)
        return gm
    jf.compile(fn, backend=backend)(*args)
    return graphs[0]


def test_what_decides_the_errors_of_a_graph():
    w = torch.randn(10, 3)
    tok = torch.tensor([1, 2, 3])
    # a view of an input: checked on the input as a whole
    g = _graph(lambda t, w: F.embedding(t[1:], w).sum(), tok, w)
    (name, bound, ignore), = run_time_errors(g)
    assert (bound, ignore) == (10, None)
    # torch.embedding takes the weight first
    g = _graph(lambda t, w: torch.embedding(w, t.view(-1)).sum(), tok, w)
    assert [c[1:] for c in run_time_errors(g)] == [(10, None)]
    # the loss's class count and ignored value
    g = _graph(lambda x, y: F.nll_loss(x, y, ignore_index=7), torch.randn(3, 4), tok)
    assert [c[1:] for c in run_time_errors(g)] == [(4, 7)]
    # class probabilities: nothing to check
    g = _graph(lambda x, y: F.cross_entropy(x, y), torch.randn(3, 4), torch.rand(3, 4))
    assert run_time_errors(g) == ()
    # an index computed from data: undecided
    g = _graph(lambda t, w: F.embedding(t * 2, w).sum(), tok, w)
    assert run_time_errors(g) is None
    # an op that checks the values it reads
    g = _graph(lambda x, y: F.binary_cross_entropy(x, y), torch.rand(3), torch.rand(3))
    assert run_time_errors(g) is None
    # integer division by a tensor
    g = _graph(lambda a, b: a // b, tok, tok)
    assert run_time_errors(g) is None


@pytest.mark.reruns_ok
def test_a_graph_failing_in_its_backend_before_it_ever_ran_is_rolled_back():
    # a backend whose compiled callable updates the inputs and then fails
    # on its first call (a kernel that does not run on this machine): the
    # copies are taken until the graph has run once, so the frame reruns
    # natively with its inputs as they were, and the error never reaches
    # the program
    calls = []

    def flaky(gm, example):
        def run(*args):
            calls.append(1)
            if len(calls) == 1:
                for a in args:  # (what the graph updates: m)
                    if isinstance(a, torch.Tensor) and a.data_ptr() == m.data_ptr():
                        a.data.add_(100.0)
                raise RuntimeError("kernel failed")
            return gm(*args)
        return run

    def f(x, m):
        m.mul_(0.5).add_(x)  # updated in place; only shape-decided ops
        return (x * 2).sum()

    x, m = torch.randn(4), torch.ones(4)
    x2, m2 = x.clone(), m.clone()
    cf = jf.compile(f, backend=flaky)
    for _ in range(3):
        torch.testing.assert_close(cf(x, m), f(x2, m2))
        torch.testing.assert_close((x, m), (x2, m2))
    assert len(calls) == 3  # the failed call, then two that ran compiled
