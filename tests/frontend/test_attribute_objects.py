"""Attribute bags and attribute stores, reads and deletions (values/objects.py
NewObjV and ObjV, effects.py).

In:  ``types.SimpleNamespace`` (and a subclass of it) built inside the
     compiled function, user objects built there (properties, a class's own
     ``__setattr__`` / ``__delattr__``), user objects and namespaces passed
     in; ``setattr`` / ``getattr`` / ``delattr`` / ``hasattr`` and the
     ``STORE_ATTR`` / ``DELETE_ATTR`` opcodes on all of them.
Out: differential checks under ``fullgraph=True`` (a break fails the test):
     the same results (objects that escape compare by type and ``vars``, in
     order), the same inputs after the call (stores and deletions replayed),
     the same exceptions, one graph; a deletion guarded on the attribute
     being there.
"""
from __future__ import annotations

import types

import pytest
import torch

import janus_frame as jf
from jfutil import Jit, Recorder, assert_same


class Holder:
    scale = 0.5  # a class attribute that a deleted instance attribute uncovers

    def __init__(self, w):
        self.w = w


class Props:
    def __init__(self, v):
        self.v = v

    @property
    def v(self):
        return self._v * 2

    @v.setter
    def v(self, value):
        self._v = value + 1

    @v.deleter
    def v(self):
        del self._v


class Logged:
    def __init__(self):
        self.log = []

    def __setattr__(self, name, value):
        if name != "log":
            self.log.append(("set", name))
        super().__setattr__(name, value)

    def __delattr__(self, name):
        self.log.append(("del", name))
        object.__delattr__(self, name)


class Point(types.SimpleNamespace):
    def __init__(self, x, y, **extra):
        super().__init__(x=x, y=y, **extra)

    @property
    def norm(self):
        return (self.x * self.x + self.y * self.y).sqrt()


def test_namespace_built_set_read_deleted_and_returned():
    def f(x):
        o = types.SimpleNamespace()
        setattr(o, "w", x * 2)
        y = getattr(o, "w") + 1
        delattr(o, "w")
        return y, hasattr(o, "w"), getattr(o, "w", None), o

    Jit()(f, torch.randn(3), calls=2)


def test_namespace_keywords_order_and_opcodes():
    def f(x):
        o = types.SimpleNamespace(b=x + 1, a=2)
        o.c = o.b * o.a
        del o.b
        o.b = x - 1                     # back at the end of the attribute order
        return o, o.c + o.b

    Jit()(f, torch.randn(4), opcodes=("STORE_ATTR", "DELETE_ATTR"))


def test_namespace_escapes_into_an_input_and_a_list():
    def f(x, h, out):
        ns = types.SimpleNamespace(t=x.sin())
        h.ns = ns                       # a store replayed after the graph
        out.append(ns)
        ns.u = x.cos()                  # seen through both references
        return ns

    h, out = Holder(1.0), []
    expected = f(torch.ones(2), Holder(1.0), [])
    cf = jf.compile(f, backend=Recorder(), fullgraph=True)
    got = cf(torch.ones(2), h, out)
    assert_same(expected, got)
    assert h.ns is got and out[0] is got  # one object, aliased as in Python
    assert_same(vars(got), {"t": torch.ones(2).sin(), "u": torch.ones(2).cos()})


def test_namespace_subclass_with_init_and_property():
    def f(x):
        p = Point(x, x + 1, tag="p")
        p.x = p.x * 2
        return p.norm, p, isinstance(p, types.SimpleNamespace)

    Jit()(f, torch.randn(3), calls=2)


def test_namespace_positional_mapping_as_in_python():
    # 3.13 takes a mapping or iterable of pairs; 3.11 and 3.12 raise TypeError
    def f(x):
        try:
            o = types.SimpleNamespace({"a": x}, b=x + 1)
            p = types.SimpleNamespace([("c", x * 2)])
        except TypeError as e:
            return x, str(e)
        return o.a + o.b, o, p

    Jit()(f, torch.randn(3))


def test_user_object_built_with_properties_and_hooks():
    def f(x):
        p = Props(x)                    # the setter runs traced
        r = p.v + 1
        del p.v                         # the deleter
        g = Logged()
        g.a = x * 3
        setattr(g, "b", 1)
        delattr(g, "b")
        return r, hasattr(p, "_v"), g.log, g, p

    Jit()(f, torch.randn(3))


def test_input_object_attribute_deleted_and_class_attribute_uncovered():
    def f(x, h):
        y = x * h.w
        del h.w
        h.scale_seen = h.scale          # the class attribute, now
        return y, hasattr(h, "w"), getattr(h, "w", -1)

    Jit()(f, torch.randn(3), Holder(2.0), calls=2)


def test_input_object_stored_then_deleted_and_hasattr_sees_pending_stores():
    def f(x, h):
        had = hasattr(h, "extra")
        setattr(h, "extra", x + 1)
        seen = hasattr(h, "extra")
        out = h.extra * 2
        delattr(h, "extra")
        h.w = out
        return out, had, seen, hasattr(h, "extra")

    Jit()(f, torch.randn(3), Holder(1.0), calls=2)


def test_input_namespace_mutated():
    def f(x, ns):
        ns.y = ns.a * x
        del ns.a
        return ns.y + 1, hasattr(ns, "a")

    Jit()(f, torch.randn(3), types.SimpleNamespace(a=3.0, k="keep"), calls=2)


def test_deleting_a_missing_attribute_raises_as_in_python():
    def f(x, h):
        o = types.SimpleNamespace()
        errs = []
        for target in (o, h):
            try:
                delattr(target, "nope")
            except AttributeError:
                errs.append(type(target).__name__)
        return x + 1, errs

    Jit()(f, torch.randn(3), Holder(1.0))


def test_deletion_is_guarded_on_the_attribute_being_there():
    def f(x, h):
        del h.w
        return x + 1

    rec = Recorder()
    cf = jf.compile(f, backend=rec)
    h = Holder(1.0)
    cf(torch.ones(2), h)
    assert len(rec.graphs) == 1 and jf.explain(f)(torch.ones(2), Holder(1.0)).break_count == 0
    assert not hasattr(h, "w")
    with pytest.raises(AttributeError):
        f(torch.ones(2), h)
    with pytest.raises(AttributeError):
        cf(torch.ones(2), h)            # the instance lacks it now: not the cached entry


def test_deletion_that_breaks_runs_natively_between_graphs():
    # nn.Module has its own __delattr__: the deletion is the graph break's
    # native step, the rest of the function resumes compiled
    def f(x, m):
        y = x * 2
        del m.tag
        return y + 1, hasattr(m, "tag")

    m = torch.nn.Linear(2, 2)
    m.tag = "t"
    rec = Recorder()
    cf = jf.compile(f, backend=rec)
    got = cf(torch.ones(2), m)
    assert not hasattr(m, "tag")
    assert_same(got, (torch.ones(2) * 2 + 1, False))
    assert len(rec.graphs) == 2


class Config:
    """transformers' PretrainedConfig's protocol: aliases mapped in both
    directions, every store through object.__setattr__ in the end."""
    attribute_map = {"n_labels": "num_labels"}

    def __init__(self):
        self.num_labels = 2
        self.problem_type = None

    def __setattr__(self, key, value):
        if key in super().__getattribute__("attribute_map"):
            key = super().__getattribute__("attribute_map")[key]
        super().__setattr__(key, value)

    def __getattribute__(self, key):
        if key != "attribute_map" and key in super().__getattribute__("attribute_map"):
            key = super().__getattribute__("attribute_map")[key]
        return super().__getattribute__(key)


STORES = []


class Counted:
    """A __setattr__ with its own effect, and object.__setattr__ called directly."""

    def __init__(self):
        object.__setattr__(self, "v", 1.0)

    def __setattr__(self, key, value):
        STORES.append(key)
        object.__setattr__(self, key, value * 2)


def test_input_object_with_its_own_setattr_and_getattribute_is_traced():
    def f(x, cfg):
        if cfg.problem_type is None:
            cfg.problem_type = "single" if cfg.n_labels > 1 else "regression"
        cfg.n_labels = 3                   # stored as num_labels
        y = x * cfg.num_labels             # read back through the alias map
        if cfg.problem_type == "single":
            y = y + 1
        return y, cfg.n_labels

    Jit()(f, torch.randn(3), Config(), calls=2)


def test_input_object_setattr_with_an_effect_runs_once_per_store():
    def f(x, c):
        c.v = c.v + 1.0
        c.w = x.sum()
        return x * c.v, c.w

    cf = jf.compile(f, backend=Recorder(), fullgraph=True)
    a, b = Counted(), Counted()
    x = torch.randn(3)
    for fn, obj in ((f, a), (cf, b)):
        STORES.clear()
        out = fn(x, obj)
        assert STORES == ["v", "w"]
        assert_same(out, (x * obj.v, obj.w))
    assert a.v == b.v == 4.0 and "w" in vars(b)
    torch.testing.assert_close(a.w, b.w)


class Doubling:
    """Reads through object.__getattribute__ called directly."""

    def __init__(self):
        self.scale = 2.0

    def __getattribute__(self, name):
        if name == "scale":
            return object.__getattribute__(self, "scale") * 2
        return object.__getattribute__(self, name)


def test_input_object_getattribute_calling_object_getattribute_directly_sees_writes():
    def f(x, d):
        d.scale = 3.0          # written in the trace: the class's lookup is traced
        return x * d.scale, d.scale

    Jit()(f, torch.randn(3), Doubling(), calls=2)
