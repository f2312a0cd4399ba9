"""Logging calls in compiled frames (methods.defer_logging).

A logging call whose arguments are constant atoms moves to the end of its
segment, so model code that warns (transformers' ``warning_once``, a cached
function installed on ``logging.Logger``) stays one graph; any other
logging call, and print, break the graph where they are. The messages come
out as eager's: once per call, in order, also when the graph raises (the
frame reruns natively), and a segment that could not rerun keeps the call
where it is.
"""
from __future__ import annotations

import functools
import logging

import pytest
import torch

import janus_frame as jf
from jfutil import Recorder

log = logging.getLogger("janus_frame_tests.logging_calls")


@functools.lru_cache(None)
def _warning_once(self, *args, **kwargs):
    self.warning(*args, **kwargs)


class _Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    @jf.disable  # (called from compiled frames: the handler itself runs natively)
    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def records(monkeypatch):
    monkeypatch.setattr(logging.Logger, "warning_once", _warning_once, raising=False)
    _warning_once.cache_clear()
    h = _Records()
    log.addHandler(h)
    log.propagate = False
    yield h.messages
    log.removeHandler(h)
    log.propagate = True


def test_constant_warnings_and_warning_once_stay_in_one_graph(records):
    def f(x, labels):
        h = x * 2
        loss_type = None
        log.warning_once(f"loss_type={loss_type} unrecognised; using the default")
        log.warning("computing the loss")
        return (h - labels).pow(2).mean()

    rec = Recorder()
    cf = jf.compile(f, backend=rec, fullgraph=True)
    x, t = torch.randn(3), torch.randn(3)
    want = [f(x, t) for _ in range(2)]
    eager_msgs = list(records)
    records.clear()
    _warning_once.cache_clear()
    got = [cf(x, t) for _ in range(2)]
    assert records == eager_msgs == ["loss_type=None unrecognised; using the default",
                                     "computing the loss", "computing the loss"]
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)
    assert len(rec.graphs) == 1


def test_logging_a_tensor_still_breaks_the_graph(records):
    def f(x):
        y = x + 1
        log.warning("value %s", y)
        return y * 2

    r = jf.explain(f)(torch.ones(2))
    assert r.break_count == 1 and r.breaks[0].id == "JF003"


@pytest.mark.reruns_ok
def test_a_deferred_warning_comes_out_once_when_the_graph_raises(records):
    def f(x, idx):
        y = x * 2
        log.warning("before the gather")
        return y[idx]                      # an index out of range raises here

    cf = jf.compile(f, backend=Recorder())
    x = torch.randn(4)
    ok = torch.tensor([0, 3])
    torch.testing.assert_close(cf(x, ok), f(x, ok))
    records.clear()
    bad = torch.tensor([0, 9])
    for fn in (f, cf):
        with pytest.raises(IndexError):
            fn(x, bad)
    assert records == ["before the gather"] * 2


def test_a_segment_that_cannot_rerun_keeps_the_call_where_it_is(records):
    def f(xs):
        torch._foreach_mul_(xs, 2.0)       # a list written in place: no undo
        log.warning("after the update")
        return xs[0] + xs[1]

    r = jf.explain(f)([torch.ones(2), torch.ones(2)])
    assert r.break_count == 1 and r.breaks[0].id == "JF003"
    a, b = [torch.ones(2), torch.ones(2)], [torch.ones(2), torch.ones(2)]
    records.clear()
    torch.testing.assert_close(jf.compile(f, backend="eager")(a), f(b))
    torch.testing.assert_close(a, b)
    assert records == ["after the update"] * 2


@pytest.mark.parametrize("reorder", [False, True])
def test_functions_of_the_logging_module_that_return_values_are_not_deferred(reorder):
    # only emitting calls may move: a record's message or a level check is
    # a value the program uses
    record = logging.LogRecord("n", logging.WARNING, "p", 1, "msg %s", ("a",), None)

    def f(x, rec):
        return x + 1, rec.getMessage(), log.isEnabledFor(logging.DEBUG), log.getEffectiveLevel()

    cf = jf.compile(f, backend="eager", reorder_logging=reorder)
    x = torch.ones(2)
    got, want = cf(x, record), f(x, record)
    assert got[1:] == want[1:] and got[1] == "msg a"
    torch.testing.assert_close(got[0], want[0])
