"""Fixtures for the foundation tests (hook, API, start-up), shared by the test tree.

In: the helpers of foundation_util.py. Out: ``clean_state`` (janus_frame off
and every cache empty before and after a test; used explicitly by the
foundation modules, not autouse, so other suites are unaffected) and
``identity_transform`` / ``marking_transform`` (frame transforms standing in
for the symbolic interpreter, installed with monkeypatch).
"""
from __future__ import annotations

import pytest

import janus_frame
from janus_frame import _C, hook

from foundation_util import Recorder


@pytest.fixture
def clean_state():
    assert _C.get_eval_frame() is None, "a previous test left janus_frame on"
    janus_frame.reset()
    yield
    cb = _C.set_eval_frame(None)
    janus_frame.reset()
    assert cb is None, "the test left janus_frame on in this thread"
    assert _C.hook_info()["active_threads"] == 0, _C.hook_info()


@pytest.fixture
def identity_transform(monkeypatch):
    rec = Recorder()
    monkeypatch.setattr(hook, "frame_transform", rec)
    return rec


@pytest.fixture
def marking_transform(monkeypatch):
    rec = Recorder(rename={"MARK": "MARK_REPLACED"})
    monkeypatch.setattr(hook, "frame_transform", rec)
    return rec
