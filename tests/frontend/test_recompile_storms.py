"""No recompile storms under speculation: a training step whose model
branches on tensors (``if`` and ``while``) run over several sequence lengths
compiles each of its code objects at most once more after the first length
(the dynamic-size entry), nothing after the sweep, and gives eager's losses
and parameters at every call. Sites settle (relaxed, predicated) instead of
re-speculating; a site changing form recompiles only the entries that met it.
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import janus_frame as jf
from janus_frame import hook
from janus_frame.cache import listeners
from janus_frame.frontend import speculation


class ControlRNN(nn.Module):
    """A tensor ``if`` and a tensor ``while`` every time step; the limit is
    a module attribute (read through the class, guarded by version)."""

    def __init__(self, inp=4, hidden=8, classes=3, limit=1.0):
        super().__init__()
        self.hidden = hidden
        self.limit = limit
        self.w_in = nn.Linear(inp, hidden)
        self.w_h = nn.Linear(hidden, hidden, bias=False)
        self.head = nn.Linear(hidden, classes)

    def forward(self, xs):
        h = xs.new_zeros(xs.shape[1], self.hidden)
        for t in range(xs.shape[0]):
            h = torch.tanh(self.w_in(xs[t]) + self.w_h(h))
            if h.sum() > 0:
                h = h * 0.9
            else:
                h = h + 0.1
            while h.norm() > self.limit:
                h = h * 0.5
        return self.head(h)


def _step(m, opt, xs, y):
    opt.zero_grad()
    loss = F.cross_entropy(m(xs), y)
    loss.backward()
    opt.step()
    return loss.detach()


class _Compiles:
    """Every entry compiled, by code object, tagged with the phase it came in."""

    def __init__(self):
        self.phase = None
        self.log: list[tuple] = []

    def __call__(self, event, code, payload):
        if event == "entry":
            self.log.append((self.phase, code))

    def per_code(self, phases) -> dict:
        out: dict = {}
        for ph, code in self.log:
            if ph in phases:
                out[code] = out.get(code, 0) + 1
        return out


@pytest.mark.reruns_ok  # mispredictions rerun natively, by design
def test_rnn_with_tensor_if_and_while_over_five_lengths_recompiles_at_most_once_per_code():
    torch.manual_seed(0)
    ref = ControlRNN()
    model = copy.deepcopy(ref)
    opt_r = torch.optim.SGD(ref.parameters(), lr=0.05)
    opt_c = torch.optim.SGD(model.parameters(), lr=0.05)
    cstep = jf.compile(_step)
    gen = torch.Generator().manual_seed(3)
    lengths = [4, 6, 8, 10, 12]
    # input scale 2: both branch outcomes and 0 to 3 halvings occur
    data = {T: [(2 * torch.randn(T, 2, 4, generator=gen), torch.randint(0, 3, (2,), generator=gen))
                for _ in range(3)] for T in lengths}
    rec = _Compiles()
    listeners.append(rec)
    failed0 = hook.stats.frames_failed
    try:
        for phase in ("sweep", "after"):
            for T in lengths:
                rec.phase = (phase, T)
                for xs, y in data[T]:
                    torch.testing.assert_close(cstep(model, opt_c, xs, y), _step(ref, opt_r, xs, y),
                                               rtol=1e-4, atol=1e-5)
    finally:
        listeners.remove(rec)
    for p, q in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)
    assert hook.stats.frames_failed == failed0  # no frame fell back to a native entry

    first = rec.per_code({("sweep", lengths[0])})
    later = rec.per_code({("sweep", T) for T in lengths[1:]})
    after = rec.per_code({("after", T) for T in lengths})
    names = lambda d: {c.co_qualname: n for c, n in d.items()}  # noqa: E731
    assert first and any("forward" in c.co_qualname for c in first), names(first)
    # the new lengths: each code object compiles at most one more entry (its
    # dynamic-size one), not one per length or per site that settles late
    assert all(n <= 1 for n in later.values()), names(later)
    # the later lengths are far fewer compiles than the first length
    assert sum(later.values()) < sum(first.values()), (names(first), names(later))
    assert after == {}, names(after)
    # the sites settled into graph forms: both branches are in the graphs
    sites = [s for c in hook._compilers.values() for s in speculation.all_sites(c.speculation)
             if s.frame.startswith("ControlRNN.forward") and not s.loop_edge]
    assert sites and all(s.current_form in ("predicated", "speculate") for s in sites), \
        [s.describe() for s in sites]


def test_mixed_site_relaxes_without_speculating_on_a_short_run():
    """Outcomes T, F, F, F, T, ...: a run of three after a mixed start is no
    reason to speculate (it would recompile now and miss later)."""
    def f(x):
        if x.sum() > 0:
            return x * 2
        return x - 1

    cf = jf.compile(f)
    signs = [1, -1, -1, -1, 1, 1, -1, 1, -1]
    for s in signs:
        x = torch.rand(4) * s + 0.1 * s
        torch.testing.assert_close(cf(x), f(x))
    sites = [s for c in hook._compilers.values() for s in speculation.all_sites(c.speculation)
             if s.frame.endswith("f")]
    assert len(sites) == 1, [s.describe() for s in sites]
    assert sites[0].misses == 0 and sites[0].form == "relaxed", sites[0].describe()


def test_biased_site_still_speculates():
    def f(x):
        if x.sum() > 0:
            return x * 2
        return x - 1

    cf = jf.compile(f)
    for s in [-1, 1, 1, 1, 1, 1, 1]:
        x = torch.rand(4) * s + 0.1 * s
        torch.testing.assert_close(cf(x), f(x))
    site = [s for c in hook._compilers.values() for s in speculation.all_sites(c.speculation)
            if s.frame.endswith("f")][0]
    assert site.form == "speculate" and site.predicted is True and site.hits >= 1, site.describe()


def test_site_changing_form_recompiles_only_entries_that_met_it():
    """The frame's first entry breaks at site A (mixed outcomes); site B,
    after it, is met only by the resume functions. B settling (speculated)
    leaves the first entry valid; A settling (relaxed) recompiles it."""
    def f(x):
        y = torch.sin(x)
        if y.sum() > 0:  # A: alternates
            y = y * 2
        else:
            y = y - 1
        z = torch.cos(y)
        if z.sum() > -100:  # B: always taken
            z = z + 1
        return z * 3

    cf = jf.compile(f)
    compiled = []

    def listen(event, code, payload):
        if event == "entry":
            compiled.append(code.co_qualname)

    listeners.append(listen)
    try:
        for i in range(10):
            x = (torch.rand(4) + 0.1) * (1 if i % 2 == 0 else -1)
            torch.testing.assert_close(cf(x), f(x))
    finally:
        listeners.remove(listen)
    sites = {s.lineno: s for c in hook._compilers.values()
             for s in speculation.all_sites(c.speculation) if s.frame.startswith(f.__qualname__)}
    a, b = sites[min(sites)], sites[max(sites)]
    assert a.form == "relaxed" and b.form == "speculate", [s.describe() for s in sites.values()]
    # the first entry and the one after A settled; B's change recompiled only
    # the resume functions that met it
    assert compiled.count(f.__qualname__) == 2, compiled


def test_failed_check_before_a_tensor_does_not_hide_its_new_size():
    """The explaining guard reads every tensor's sizes, also after another
    check failed (a resume function's stack item of another type, a branch
    site's version): the recompile is dynamic in every size that changed."""
    from janus_frame.frontend.guards import Guards
    from janus_frame.frontend.sources import ArgSource

    def f(it, x):
        return x

    g = Guards(f.__code__, 2)
    it, x = ArgSource("it", 0), ArgSource("x", 1)
    g.type_is(it, iter(()))  # checked first, as a resume function's stack item is
    g.tensor(x, torch.randn(3, 4))
    _, explain = g.build(f.__code__.co_firstlineno, f.__globals__)
    why = explain(f, (iter(range(3)), torch.randn(5, 4)))
    assert why.dynamic_dims == (("L['x']", 0),), why
    assert "tuple_iterator" in why and "now sizes (5, 4)" in why, why
    # a check after the failed one that raises (it assumed the failed one
    # held) counts as failed, without an exception
    g = Guards(f.__code__, 2)
    g.type_is(it, iter(()))
    g.add("__jf_a0.__length_hint__() == 0", "the iterator is exhausted")
    g.tensor(x, torch.randn(3, 4))
    _, explain = g.build(f.__code__.co_firstlineno, f.__globals__)
    why = explain(f, (object(), torch.randn(6, 4)))
    assert why.dynamic_dims == (("L['x']", 0),) and "now sizes (6, 4)" in why, why
