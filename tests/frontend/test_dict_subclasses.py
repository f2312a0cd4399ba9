"""Instances of dict subclasses made while tracing (values/dicts.py DictObjV).

In:  a stand-alone ``OrderedDict`` subclass written the way transformers
     writes ``ModelOutput`` (a dataclass whose ``__post_init__`` copies the
     non-None fields into the dict, item assignment also setting the
     attribute, ``__setattr__`` also updating an existing item through
     ``super().__setitem__``, ``__getitem__`` by key or by position through
     ``to_tuple``), and plain dict subclasses with their own methods.
Out: differential checks under ``fullgraph=True`` (a break fails the test):
     the same items, in order, the same instance attributes, the same type,
     one graph, no recompile over repeated calls; and an object that
     crosses a graph break is handed over as a real instance.
"""
from __future__ import annotations

import dataclasses
import warnings
from collections import OrderedDict, defaultdict
from typing import Optional

import pytest
import torch

import janus_frame as jf
from jfutil import Recorder, assert_same


class Output(OrderedDict):
    """ModelOutput's contract, without transformers."""

    def __post_init__(self):
        class_fields = dataclasses.fields(self)
        first_field = getattr(self, class_fields[0].name)
        other_fields_are_none = all(getattr(self, f.name) is None for f in class_fields[1:])
        if other_fields_are_none and not isinstance(first_field, torch.Tensor):
            raise ValueError("the first field must be a tensor")
        for f in class_fields:
            v = getattr(self, f.name)
            if v is not None:
                self[f.name] = v

    def __delitem__(self, *args, **kwargs):
        raise Exception(f"You cannot use ``__delitem__`` on a {self.__class__.__name__}")

    def update(self, *args, **kwargs):
        raise Exception(f"You cannot use ``update`` on a {self.__class__.__name__}")

    def __getitem__(self, k):
        if isinstance(k, str):
            inner_dict = dict(self.items())
            return inner_dict[k]
        return self.to_tuple()[k]

    def __setattr__(self, name, value):
        if name in self.keys() and value is not None:
            super().__setitem__(name, value)
        super().__setattr__(name, value)

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        super().__setattr__(key, value)

    def to_tuple(self) -> tuple:
        return tuple(self[k] for k in self.keys())


@dataclasses.dataclass
class LMOutput(Output):
    loss: Optional[torch.Tensor] = None
    logits: torch.Tensor = None
    hidden_states: Optional[tuple] = None
    attentions: Optional[tuple] = None


@dataclasses.dataclass
class BaseOutput(Output):
    last_hidden_state: torch.Tensor = None
    pooler_output: Optional[torch.Tensor] = None


def _same_object(a, b):
    """Same type, items in the same order, same instance attributes."""
    assert type(a) is type(b), (type(a), type(b))
    assert list(a.keys()) == list(b.keys())
    assert_same(dict(a), dict(b), "items")
    assert_same(vars(a), vars(b), "attributes")


def _check(fn, *args, calls=3):
    """``fn`` compiled with fullgraph=True: eager's results on every call,
    one graph for all of them."""
    rec = Recorder()
    cf = jf.compile(fn, backend=rec, fullgraph=True)
    for _ in range(calls):
        expected, got = fn(*args), cf(*args)
        assert type(expected) is type(got)
        for e, g in zip(expected, got) if isinstance(expected, tuple) else [(expected, got)]:
            if isinstance(e, dict) and type(e) not in (dict, OrderedDict):
                _same_object(e, g)
            else:
                assert_same(e, g)
    assert len(rec.graphs) == 1, f"{len(rec.graphs)} graphs"
    return rec


def test_model_output_built_and_read():
    def f(x):
        out = LMOutput(logits=x * 2, hidden_states=(x + 1, x - 1))
        first = out[0]                      # by position: the first non-None field
        by_key = out["logits"]
        tail = out[1:]                      # a slice of to_tuple()
        n = len(out)
        return out, first + by_key + tail[0][1] * n, out.logits, out.loss is None

    _check(f, torch.randn(2, 3))


def test_model_output_mutated_after_construction():
    def f(x):
        out = LMOutput(logits=x)
        out.loss = x.sum()                  # not an item yet: attribute only
        out.logits = x * 3                  # an item: __setattr__ updates it too
        out["attentions"] = (x,)            # __setitem__ sets the attribute too
        return out, out.to_tuple()[0], "loss" in out, list(out.keys())

    _check(f, torch.randn(4))


def test_model_output_post_init_error_is_raised_as_in_python():
    def f(x):
        try:
            LMOutput(loss=None, logits=None)
        except ValueError as e:
            return x + 1, str(e)
        return x, ""

    _check(f, torch.randn(3))


def test_model_output_overridden_dict_methods_raise():
    def f(x):
        out = BaseOutput(last_hidden_state=x)
        try:
            out.update(pooler_output=x)
        except Exception as e:  # noqa: BLE001
            return out, x * 2, str(e)
        return out, x, ""

    _check(f, torch.randn(3))


def test_model_output_passed_through_functions_and_unpacked():
    def encoder(x):
        return BaseOutput(last_hidden_state=torch.tanh(x), pooler_output=x.mean(0))

    def head(x):
        enc = encoder(x)
        hidden = enc[0]
        pooled = enc.pooler_output
        return LMOutput(logits=hidden @ hidden.T + pooled.sum(), hidden_states=tuple(enc.values()))

    def f(x):
        out = head(x)
        d = dict(out)
        return out, {**out}["logits"], d["hidden_states"][1]

    _check(f, torch.randn(3, 3))


class Counts(dict):
    """A dict subclass with its own constructor, __missing__ and methods."""

    def __init__(self, name, **kw):
        super().__init__(**kw)
        self.name = name

    def __missing__(self, key):
        return 0

    def bump(self, key, by):
        self[key] = self[key] + by
        return self


def test_dict_subclass_with_init_missing_and_methods():
    def f(x):
        c = Counts("c", a=x)
        c.bump("a", 1).bump("b", 2)
        return c, c["a"] * c["zzz"] + c["b"], c.get("b"), list(c)

    _check(f, torch.randn(3))


def test_object_crossing_a_graph_break_is_a_real_instance():
    @jf.disable
    def opaque(out):
        assert type(out) is LMOutput and list(out.keys()) == ["logits", "loss"]
        return out.logits + 1

    def f(x):
        out = LMOutput(logits=x * 2)
        out["loss"] = x.sum()
        y = opaque(out)
        return out, y * 2

    jf.reset()
    cf = jf.compile(f, backend="eager")
    x = torch.randn(3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(3):
            expected, got = f(x), cf(x)
            _same_object(expected[0], got[0])
            assert_same(expected[1], got[1])
        report = jf.explain(f)(x)
    assert report.break_count == 1 and report.breaks[0].id == "JF010", \
        [str(b) for b in report.breaks]


def test_no_recompile_and_rebuilt_without_running_class_methods():
    calls = []

    @dataclasses.dataclass
    class Watched(Output):
        value: torch.Tensor = None

        def __post_init__(self):
            calls.append("post_init")
            super().__post_init__()

    def f(x):
        return Watched(value=x + 1)

    rec = _check(f, torch.randn(2), calls=4)
    # the append is replayed once per compiled call, as eager makes it once
    # per call: rebuilding the object after the graph runs none of its methods
    assert calls.count("post_init") == 4 + 4, calls
    assert len(rec.graphs) == 1


@pytest.mark.parametrize("cls", [OrderedDict, dict])
def test_builtin_dicts_still_plain(cls):
    def f(x):
        d = cls(a=x)
        d["b"] = x * 2
        return d, d["a"] + d["b"]

    _check(f, torch.randn(3))


def test_defaultdict_made_while_tracing():
    def f(x):
        collected = defaultdict(tuple)          # transformers' check_model_inputs
        for i in range(3):
            collected["hidden"] += (x * i,)
        counts = defaultdict(int, seen=1)
        counts["layers"] += 2
        lists = defaultdict(list)
        lists["q"].append(x + 1)
        return collected, counts, lists, sum(collected["hidden"]), collected.default_factory

    rec = Recorder()
    cf = jf.compile(f, backend=rec, fullgraph=True)
    x = torch.randn(3)
    for _ in range(3):
        expected, got = f(x), cf(x)
        for e, g in zip(expected[:3], got[:3]):
            assert type(g) is defaultdict and g.default_factory is e.default_factory
            assert_same(dict(e), dict(g))
        assert_same(expected[3:], got[3:])
    assert len(rec.graphs) == 1


class Tally(defaultdict):
    def __init__(self, factory, *args, **kwargs):
        super().__init__(factory, *args, **kwargs)
        self.copies = getattr(self, "copies", 0) + 1   # set by each construction


class Ordered(OrderedDict):
    pass


class Plain(dict):
    pass


def test_copies_of_dict_subclasses_call_the_class():
    # defaultdict.copy() is type(d)(d.default_factory, d), OrderedDict.copy()
    # type(d)(d): a subclass's __init__ runs for the copy; dict.copy() of a
    # dict subclass is a plain dict
    def f(x):
        c = Tally(int, a=1)
        c["b"] += 2
        o = Ordered(k=x)
        o["j"] = x * 2
        p = Plain(a=x)
        return c.copy(), c.__copy__(), o.copy(), p.copy(), x + c["a"]

    _check(f, torch.randn(3))


class Config:
    """transformers' PretrainedConfig: names mapped through attribute_map."""

    attribute_map = {"hidden": "hidden_size"}

    def __init__(self):
        self.hidden_size = 3

    def __getattribute__(self, key):
        if key != "attribute_map" and key in super().__getattribute__("attribute_map"):
            key = super().__getattribute__("attribute_map")[key]
        return super().__getattribute__(key)


def test_super_getattribute_in_an_own_getattribute():
    cfg = Config()

    def f(x, c):
        # the class's __getattribute__ run traced (as when its frame is compiled)
        return x * Config.__getattribute__(c, "hidden") + c.hidden_size

    rec = Recorder()
    cf = jf.compile(f, backend=rec, fullgraph=True)
    x = torch.randn(3)
    assert_same(f(x, cfg), cf(x, cfg))
    cfg.hidden_size = 5  # guarded: read again the same way
    assert_same(f(x, cfg), cf(x, cfg))
    assert len(rec.graphs) == 2


def test_real_instance_read_from_the_frame():
    """A ModelOutput made outside (or before a break): its own methods run
    traced on the real object, the builtin dict reads guard its keys."""
    def f(x, out):
        t = out.to_tuple()
        return x + t[0] + out["logits"] + out[1][0], len(out), "loss" in out, list(out.keys())

    rec = Recorder()
    cf = jf.compile(f, backend=rec, fullgraph=True)
    x = torch.randn(3)
    a = LMOutput(logits=torch.randn(3), hidden_states=(torch.randn(3),))
    b = LMOutput(logits=torch.randn(3), hidden_states=(torch.randn(3),))
    for out in (a, b, a):
        assert_same(f(x, out), cf(x, out))
    assert len(rec.graphs) == 1
    c = LMOutput(loss=torch.randn(()), logits=torch.randn(3), hidden_states=(torch.randn(3),))
    assert_same(f(x, c), cf(x, c))  # other keys: guarded, traced again
    assert len(rec.graphs) == 2
