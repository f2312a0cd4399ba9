"""The public activation API: ``compile`` (functions, decorators, modules),
``enable``, ``disable``, ``reset`` and their error messages.

The symbolic interpreter is replaced by the marking transform of
foundation_util.py, so results say whether the compiled replacement ran.
"""
from __future__ import annotations

import pytest
import torch

import janus_frame as jf
from janus_frame import _C

from foundation_util import MARK, MARK_REPLACED  # noqa: F401

pytestmark = pytest.mark.usefixtures("clean_state")


def test_compile_plain_and_as_decorator(marking_transform):
    def f(x):
        return MARK, x

    assert jf.compile(f, backend="eager")(1) == ("replaced", 1)

    @jf.compile
    def g(x):
        return MARK, x

    @jf.compile(backend="eager", fullgraph=False)
    def h(x):
        return MARK, x

    assert g(2) == ("replaced", 2) and h(3) == ("replaced", 3)
    assert g.__name__ == "g" and h.__wrapped__.__name__ == "h"
    assert f(0) == ("native", 0)  # the original is untouched


def test_enable_and_disable_as_decorators(marking_transform):
    def leaf():
        return MARK

    @jf.enable(backend="eager")
    def run():
        return leaf()

    @jf.disable
    def off():
        return leaf()

    assert run() == "replaced"
    assert off() == "native"
    with jf.enable(backend="eager"):
        assert off() == "native"
        assert leaf() == "replaced"


def test_bad_input_errors():
    with pytest.raises(TypeError, match="expects a function, callable or nn.Module"):
        jf.compile(42)
    with pytest.raises(ValueError, match="unknown janus_frame backend 'nope'"):
        jf.compile(lambda x: x, backend="nope")
    with pytest.raises(ValueError, match="unknown janus_frame backend"):
        jf.compile(backend="nope")  # decorator form fails early, not at decoration
    with pytest.raises(TypeError, match="unknown janus_frame option.*no_such_option"):
        jf.compile(lambda x: x, no_such_option=1)
    with pytest.raises(TypeError, match="unknown janus_frame option"):
        jf.enable(colour="red")
    with pytest.raises(TypeError, match="backend must be a name or a callable"):
        jf.compile(lambda x: x, backend=3)
    with pytest.raises(TypeError, match="disable expects a callable"):
        jf.disable(3)
    assert _C.hook_info()["active_threads"] == 0


def test_callable_backend_accepted(marking_transform):
    def my_backend(gm, example_inputs):
        return gm.forward

    def f(x):
        return MARK, x

    assert jf.compile(f, backend=my_backend)(1) == ("replaced", 1)


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 2)
        self.register_buffer("steps", torch.zeros(()))
        self.drop = torch.nn.Dropout(0.5)
        self.scale = 2.0

    def forward(self, x):
        return self.drop(self.lin(x)) * self.scale


def test_module_wrapper(identity_transform):
    torch.manual_seed(0)
    net = Net()
    c = jf.compile(net, backend="eager")
    assert isinstance(c, torch.nn.Module)
    # state_dict / parameters are the original's, with the original's names
    assert list(c.state_dict().keys()) == list(net.state_dict().keys())
    assert [id(p) for p in c.parameters()] == [id(p) for p in net.parameters()]
    assert [n for n, _ in c.named_parameters()] == [n for n, _ in net.named_parameters()]
    c.load_state_dict(net.state_dict())
    # attribute access, get and set, reaches the original
    assert c.scale == 2.0 and c.lin is net.lin
    c.scale = 3.0
    assert net.scale == 3.0
    c.new_attr = "x"
    assert net.new_attr == "x"
    # train()/eval() reach the original and read back on the wrapper
    c.eval()
    assert net.training is False and net.drop.training is False and c.training is False
    x = torch.randn(4, 3)
    torch.testing.assert_close(c(x), net(x))
    assert "forward" in identity_transform.names()
    c.train()
    assert net.training is True and c.training is True
    assert "Net" in repr(c)


def test_module_wrapper_calls_the_module_it_holds_now(identity_transform):
    """The wrapper's call path keeps its own reference to the wrapped module
    (no nn.Module.__getattr__ per call): a module assigned to ``_orig_mod``
    later, or a deep copy of the wrapper, calls its own module."""
    import copy

    torch.manual_seed(0)
    net, other = Net().eval(), Net().eval()
    c = jf.compile(net, backend="eager")
    x = torch.randn(4, 3)
    torch.testing.assert_close(c(x), net(x))
    assert "_janus_mod" in vars(c)  # (the attribute the call path reads)
    c._orig_mod = other
    assert c._orig_mod is other and list(c.parameters())[0] is other.lin.weight
    torch.testing.assert_close(c(x), other(x))
    d = copy.deepcopy(c)
    assert d._orig_mod is not other and d._janus_mod is d._orig_mod
    torch.testing.assert_close(d(x), other(x))
    assert list(d.state_dict().keys()) == list(other.state_dict().keys())


def test_module_state_dict_round_trip(identity_transform):
    net = Net()
    c = jf.compile(net, backend="eager")
    other = Net()
    other.load_state_dict(c.state_dict())
    for (k1, v1), (k2, v2) in zip(other.state_dict().items(), net.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2)


def test_reset_drops_compiled_state(marking_transform):
    def f(x):
        return MARK, x

    g = jf.compile(f, backend="eager")
    g(1)
    g(2)
    assert marking_transform.names() == ["f"]
    jf.reset()
    assert _C.code_entries(f.__code__) == []
    g(3)
    assert marking_transform.names() == ["f", "f"]


def test_wrapper_metadata_binding_and_lifetime(marking_transform):
    import gc
    import inspect
    import weakref

    def f(a, b=2, *, c=3):
        """doc of f"""
        return MARK, a + b + c

    g = jf.compile(f, backend="eager")
    assert g.__name__ == "f" and g.__doc__ == "doc of f" and g.__wrapped__ is f
    assert str(inspect.signature(g)) == "(a, b=2, *, c=3)"
    assert g._janus_original is f
    assert g(1, c=1) == ("replaced", 4)

    class K:
        m = jf.compile(lambda self, x: (MARK, x), backend="eager")
        off = jf.disable(lambda self: _C.get_eval_frame())

    k = K()
    assert k.m(5) == ("replaced", 5)
    assert K.m(k, 6) == ("replaced", 6)
    assert k.off() is None
    # wrappers take part in garbage collection (a cycle through __dict__)
    h = jf.compile(lambda: None, backend="eager")
    h.self_ref = h
    r = weakref.ref(h)
    del h
    gc.collect()
    assert r() is None
