"""The verifiers at the stage boundaries reject what they exist to catch: a
graph pass that changed what the graph returns or left a node without its
value, and schedules with overlapping live buffers in the workspace, a
consumer before its producer, a member outside its kernel's iteration space,
a value read before the pass that completes it, memory reuse that another
step sees, and a lost node.  (The loop-IR verifier's cases are in
test_infra.py.)"""
import pytest
import torch
import torch.fx as fx

from janus_frame.backends.janus import verify
from janus_frame.backends.janus.lower import lower
from janus_frame.backends.janus.passes.aten import to_aten
from janus_frame.backends.janus.schedule import Kernel, schedule


def _aten(f, *args):
    return to_aten(fx.symbolic_trace(f), list(args))


def _graph_copy(gm):
    g = fx.Graph()
    out = g.graph_copy(gm.graph, {})
    g.output(out)
    return fx.GraphModule(gm, g)


def test_graph_verifier_accepts_the_passes_output():
    x = torch.randn(4, 6)
    g = _aten(lambda x: (x * 2).sum(0), x)
    verify.graph_passes(g, g)
    verify.graph_passes(g, _graph_copy(g))


@pytest.mark.parametrize("bad", ["dtype", "shape", "count", "no_value", "lint"])
def test_graph_verifier_rejects(bad):
    x = torch.randn(4, 6)
    before = _aten(lambda x: (x * 2).sum(0), x)
    if bad == "dtype":
        after = _aten(lambda x: (x * 2).sum(0).double(), x)
    elif bad == "shape":
        after = _aten(lambda x: (x * 2).sum(1), x)
    elif bad == "count":
        after = _aten(lambda x: ((x * 2).sum(0), x), x)
    else:
        after = _graph_copy(before)
        mul = next(n for n in after.graph.nodes if n.op == "call_function")
        if bad == "no_value":
            del mul.meta["val"]
        else:  # a node moved before the value it reads
            user = next(iter(mul.users))
            mul.prepend(user)
    with pytest.raises(verify.GraphError):
        verify.graph_passes(before, after)


def _softmax_and_sums(x):
    y = x.exp()
    z = y.sum(0)
    t = (x * 2).sum(0)
    return torch.softmax(z + t, 0) * y.sum(), y.cumsum(0)


def _normalise(x, w):
    a = torch.softmax(x, 0)
    b = torch.tanh(x) @ w
    return a * 2, b


def _schedule(f, *args):
    return schedule(lower(_aten(f, *args)), cpp=True)


def _member(sched, node):
    return next(m for s in sched.steps if isinstance(s, Kernel) for m in s.members
                if m.node.name == node)


def test_schedule_verifier_accepts_real_schedules():
    s = _schedule(_softmax_and_sums, torch.randn(64, 32))
    verify.schedule(s)
    # two temps live at once share no byte of the workspace; a later one
    # reuses a dead one's bytes
    assert len(set(s.arena.values())) < len(s.arena)
    verify.schedule(_schedule(_normalise, torch.randn(64, 32), torch.randn(32, 8)))


def _break_overlap(s):
    live = [b for b, off in s.arena.items() if off != 0]
    s.arena[live[0]] = 0  # onto the bytes of a temp that is still live


def _break_extent(s):
    s.arena_bytes = max(s.arena.values())


def _break_order(s):
    s.steps[0], s.steps[1] = s.steps[1], s.steps[0]


def _break_role(s):
    _member(s, "n0").role = "outer"


def _break_pass(s):
    k = s.steps[0]
    last = max(k.members, key=lambda m: m.pass_)
    last.pass_ -= 1  # the normalisation in the pass that computes the column sums


def _break_row_scratch(s):
    k = s.steps[0]
    k.row_local.add(k.members[0].node.out.name)  # read by later steps too


def _break_lost_node(s):
    del s.steps[-1]


@pytest.mark.parametrize("bad", [_break_overlap, _break_extent, _break_order, _break_role,
                                 _break_pass, _break_row_scratch, _break_lost_node],
                         ids=lambda f: f.__name__[7:])
def test_schedule_verifier_rejects(bad):
    if bad is _break_pass:
        s = _schedule(_normalise, torch.randn(64, 32), torch.randn(32, 8))
    else:
        s = _schedule(_softmax_and_sums, torch.randn(64, 32))
    verify.schedule(s)
    bad(s)
    with pytest.raises(verify.ScheduleError):
        verify.schedule(s)
