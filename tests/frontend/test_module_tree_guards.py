"""Module-tree guards: the checks a module tree implies (submodule types and
identities, number and string attributes, instance-dict absences, parameter
tables) are skipped while the dicts they were read from are unchanged. Every
change after the fast path is in use must still be seen: a parameter or a
submodule replaced, a hook registered, ``training`` flipped, an attribute
changed, a class swapped or given a descriptor, a parameter's metadata
changed in place. Each case compiles a few calls first (the first call runs
the full check and records the trees; later ones take the fast path), then
changes the model and compares with eager."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import janus_frame as jf
from janus_frame import _C
from jfutil import Recorder


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.act = nn.ReLU()
        self.drop = nn.Dropout(0.5)
        self.k = 2
        self.register_buffer("shift", torch.ones(4))

    def forward(self, x):
        return self.drop(self.act(self.lin(x))) * self.k + self.shift


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([Block(), Block()])
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        return self.head(x)


def _warm(net, x, calls=3):
    rec = Recorder()
    cf = jf.compile(net, backend=rec)
    for _ in range(calls):
        torch.testing.assert_close(cf(x), net(x))
    return cf, rec


def _fast_path_in_use():
    (guard, _, _), = _C.code_entries(Net.forward.__code__)[:1]
    names = guard.__code__.co_varnames
    return "__jf_t" in names


def _same(cf, net, x, seed=0):
    torch.manual_seed(seed)
    want = net(x)
    torch.manual_seed(seed)
    got = cf(x)
    torch.testing.assert_close(got, want)


@pytest.fixture
def setup():
    jf.reset()
    torch.manual_seed(0)
    net = Net().eval()
    x = torch.randn(3, 4)
    cf, rec = _warm(net, x)
    assert _fast_path_in_use()
    yield net, x, cf, rec
    jf.reset()


def test_fast_path_skips_module_checks(setup):
    net, x, cf, rec = setup
    entry = _C.code_entries(Net.forward.__code__)[0]
    assert len(rec.graphs) == 1
    from janus_frame.cache import code_state

    lines = code_state(Net.forward.__code__).entries[0][1].guard_lines
    assert "skipped while the module trees are unchanged" in lines[-1], lines[-1]
    # the full check ran once and recorded the tree: later calls take the fast path
    guard = entry[0]
    states = [c for c in guard.__code__.co_consts
              if type(c) is list and len(c) == 6 and type(c[4]) is bytes]
    assert len(states) == 1 and states[0][0] == (net,)
    assert _C.tree_same(states[0], (net,))
    net.blocks[0].act.note = "unread"  # an attribute the trace never read: a new version
    assert not _C.tree_same(states[0], (net,))
    _same(cf, net, x)  # the full check passes (no recompile) and records again
    assert _C.tree_same(states[0], (net,)) and len(rec.graphs) == 1


def test_parameter_replaced(setup):
    net, x, cf, rec = setup
    net.blocks[1].lin.weight = nn.Parameter(torch.randn(4, 4))
    _same(cf, net, x)
    net.head.bias = nn.Parameter(torch.randn(2, 2)[0])  # same shape, new object
    _same(cf, net, x)


def test_parameter_metadata_changed_in_place(setup):
    net, x, cf, rec = setup
    net.blocks[0].lin.weight.requires_grad_(False)
    _same(cf, net, x)
    with torch.no_grad():
        net.blocks[0].lin.weight.data = torch.randn(4, 4).t()  # another stride, same object
    _same(cf, net, x)
    net.double()  # parameters converted in place: p.data = p.data.double()
    _same(cf, net, x.double())


def test_hook_registered_after_first_calls(setup):
    net, x, cf, rec = setup
    h = net.blocks[1].act.register_forward_hook(lambda m, i, o: o * 10)
    _same(cf, net, x)
    h.remove()
    _same(cf, net, x)
    h = net.blocks[0].register_forward_pre_hook(lambda m, i: (i[0] + 1,))
    _same(cf, net, x)
    h.remove()


def test_submodule_swapped(setup):
    net, x, cf, rec = setup
    net.blocks[0].act = nn.Tanh()
    _same(cf, net, x)
    net.blocks[1] = Block()
    _same(cf, net, x)
    net.blocks.append(Block())
    _same(cf, net, x)
    del net.blocks[0]
    _same(cf, net, x)


def test_training_flipped(setup):
    net, x, cf, rec = setup
    net.blocks[1].drop.train()  # one submodule only
    _same(cf, net, x, seed=3)
    net.train()
    _same(cf, net, x, seed=4)
    net.eval()
    _same(cf, net, x)


def test_attributes_changed(setup):
    net, x, cf, rec = setup
    net.blocks[1].k = 3
    _same(cf, net, x)
    net.blocks[0].drop.p = 0.1
    net.train()
    _same(cf, net, x, seed=5)
    net.eval()
    net.blocks[0].shift = torch.zeros(4)  # a buffer replaced
    _same(cf, net, x)
    net.blocks[0].lin.__dict__["forward"] = lambda t: t * 7  # an instance forward
    _same(cf, net, x)


def test_class_swapped_or_given_a_descriptor(setup):
    net, x, cf, rec = setup

    class Block2(Block):
        def forward(self, x):
            return super().forward(x) - 1

    net.blocks[0].__class__ = Block2  # no dict changes: the C check compares classes
    _same(cf, net, x)
    net.blocks[0].__class__ = Block
    _same(cf, net, x)
    Block.k = property(lambda self: 5)  # shadows the instance's k
    try:
        _same(cf, net, x)
    finally:
        del Block.k
    _same(cf, net, x)


def test_new_model_each_call_same_types():
    """A model made anew (same classes, same shapes) is the same entry, not
    the first model's pinned tree: its own parameters are used."""
    jf.reset()
    rec = Recorder()
    torch.manual_seed(0)
    x = torch.randn(3, 4)

    def run(net, x):
        return net(x)

    cf = jf.compile(run, backend=rec)
    for _ in range(4):
        net = Net().eval()
        torch.testing.assert_close(cf(net, x), net(x))
    jf.reset()
