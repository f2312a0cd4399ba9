"""Chaining with another PEP 523 user in the same process: TorchDynamo.

A function under ``torch.compile`` and one under ``janus_frame.compile`` are
called alternately and nested in both orders. Each JIT compiles its own
frames, results equal the plain functions', and afterwards neither hook is
left installed.

Known limit: while Dynamo's hook sits above ours, frames it hands down are
Dynamo's and are not intercepted, in any thread (a janus_frame wrapper
called inside reinstalls our hook on top for its own call).
"""
from __future__ import annotations

import pytest
import torch

import janus_frame as jf
from janus_frame import _C

from foundation_util import MARK, MARK_REPLACED  # noqa: F401

pytestmark = pytest.mark.usefixtures("clean_state")


def _idle():
    info = _C.hook_info()
    return info["installed"] is False and info["active_threads"] == 0


def test_alternate_and_nested_with_torch_compile(marking_transform):
    dynamo_graphs = []

    def counting_eager(gm, example_inputs):  # backend="eager", counted
        dynamo_graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    x = torch.arange(4.0)

    def dyn_plain(t):
        return t * 5

    def jf_plain(t):
        return MARK, t + 1

    dyn = torch.compile(dyn_plain, backend=counting_eager)
    jfc = jf.compile(jf_plain, backend="eager")

    # alternately
    for _ in range(3):
        torch.testing.assert_close(dyn(x), x * 5)
        r = jfc(x)
        assert r[0] == "replaced"
        torch.testing.assert_close(r[1], x + 1)
        assert _idle()
    assert len(dynamo_graphs) == 1
    assert marking_transform.names().count("jf_plain") == 1

    # janus_frame outside, torch.compile inside: both compile their own
    def jf_outer(t):
        return MARK, dyn(t + 1)

    jfo = jf.compile(jf_outer, backend="eager")
    for _ in range(2):
        r = jfo(x)
        assert r[0] == "replaced"
        torch.testing.assert_close(r[1], (x + 1) * 5)
        assert _idle()
    assert marking_transform.names().count("jf_outer") == 1
    # Dynamo's frames are Dynamo's: janus_frame compiled none of them
    assert "dyn_plain" not in marking_transform.names()

    # torch.compile outside, janus_frame inside: Dynamo cannot trace into
    # the (C) wrapper, so the callee's frame is janus_frame's
    def jf_inner(t):
        return MARK, t + 1

    jfi = jf.compile(jf_inner, backend="eager")

    def dyn_outer(t):
        tag, r = jfi(t * 2)
        return tag, r * 3

    dyo = torch.compile(dyn_outer, backend=counting_eager)
    n_graphs = len(dynamo_graphs)
    for _ in range(2):
        tag, r = dyo(x)
        assert tag == "replaced"
        torch.testing.assert_close(r, (x * 2 + 1) * 3)
        assert _idle()
    assert marking_transform.names().count("jf_inner") == 1
    assert "dyn_outer" not in marking_transform.names()
    assert len(dynamo_graphs) > n_graphs  # dyn_outer has graphs of its own

    # and the plain ones still work alone afterwards
    torch.testing.assert_close(dyn(x), x * 5)
    assert jfc(x)[0] == "replaced"
    assert _idle()
    assert _C.hook_info()["chained"] is False
    torch._dynamo.reset()


def test_janus_region_survives_dynamo_region(marking_transform):
    """A torch.compile'd call inside ``enable()`` removes Dynamo's hook on exit,
    leaving janus_frame's installed and intercepting."""
    torch._dynamo.reset()

    def leaf():
        return MARK

    dyn = torch.compile(lambda t: t + 1, backend="eager")
    with jf.enable(backend="eager"):
        assert leaf() == "replaced"
        dyn(torch.ones(2))
        assert _C.hook_info()["installed"] is True
        jf.reset()
        assert leaf() == "replaced"
    assert _idle()
    torch._dynamo.reset()


def test_cycle_guard_when_both_hooks_chain_to_each_other(marking_transform):
    """Another thread keeps janus_frame installed; Dynamo installs above it
    (its previous function is ours); a janus_frame wrapper called inside
    Dynamo's region reinstalls ours above Dynamo's (our previous function is
    Dynamo's). Each hook now hands frames it does not take to the other: a
    frame both skip (standard library) must run once, natively, not bounce
    between them forever."""
    import os.path
    import threading

    torch._dynamo.reset()
    inside, release = threading.Event(), threading.Event()

    def keep_enabled():
        with jf.enable(backend="eager"):
            inside.set()
            release.wait(30)

    t = threading.Thread(target=keep_enabled)
    t.start()
    inside.wait(10)
    try:
        def jf_inner(t_):
            # os.path.join: skipped by janus_frame (stdlib) and by Dynamo
            return MARK, os.path.join("a", "b"), t_ + 1

        jfi = jf.compile(jf_inner, backend="eager")

        def dyn_outer(t_):
            tag, p, r = jfi(t_ * 2)
            return tag, p, r * 3

        dyo = torch.compile(dyn_outer, backend="eager")
        x = torch.arange(3.0)
        for _ in range(2):
            tag, p, r = dyo(x)
            assert (tag, p) == ("replaced", "a/b")
            torch.testing.assert_close(r, (x * 2 + 1) * 3)
        assert _C.hook_info()["active_threads"] == 1
    finally:
        release.set()
        t.join()
    assert _idle()
    # The known limit of the chaining protocol (see eval_frame.c): this
    # non-LIFO order may leave Dynamo's function installed though Dynamo is
    # idle. Dynamo's next activation cycle removes it.
    torch.compile(lambda t_: t_ + 1, backend="eager")(torch.ones(1))
    assert _C.hook_info()["eval_frame"] == "default"
    torch._dynamo.reset()
