"""Fixtures shared by the whole test tree.

Every test runs with the internal verifiers on (``JANUS_CHECKS``) and fails
when janus_frame silently degraded during it -- a frame whose compile failed
internally (its warning is an error, see pyproject.toml) or a graph the
fusing backend refused and ran as captured -- unless the test is marked
``expect_fallback`` (it provokes that on purpose).

For the foundation tests (hook, API, start-up), from the helpers of
foundation_util.py: ``clean_state`` (janus_frame off
and every cache empty before and after a test; used explicitly by the
foundation modules, not autouse, so other suites are unaffected) and
``identity_transform`` / ``marking_transform`` (frame transforms standing in
for the symbolic interpreter, installed with ``api.frame_transform_override``).
"""
from __future__ import annotations

import contextlib
import sys

import pytest

import janus_frame
from janus_frame import _C, api

from foundation_util import Recorder


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "expect_fallback: the test makes a frame or a graph fall back on purpose")


@pytest.fixture(autouse=True, scope="session")
def _checks():
    from janus_frame.config import config

    old, config.checks = config.checks, True
    yield
    config.checks = old


def _backend_fallbacks() -> list:
    mod = sys.modules.get("janus_frame.backends.janus")
    return list(mod.stats.fallbacks) if mod is not None else []


@pytest.fixture(autouse=True)
def _no_silent_fallback(request):
    from janus_frame.cache import stats

    errors, before = stats.internal_errors, {id(f) for f in _backend_fallbacks()}
    yield
    if request.node.get_closest_marker("expect_fallback") is not None:
        return
    new_errors = stats.internal_errors - errors
    assert new_errors <= 0, f"{new_errors} frame(s) failed to compile internally and ran natively"
    new = [f for f in _backend_fallbacks() if id(f) not in before]
    assert not new, f"the fusing backend refused {len(new)} graph(s): {new}"


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
def use_transform():
    """``use_transform(fn)``: compilers made by the public API for the rest
    of the test use ``fn`` as their frame transform."""
    with contextlib.ExitStack() as stack:
        yield lambda fn: stack.enter_context(api.frame_transform_override(fn))


@pytest.fixture
def identity_transform(use_transform):
    return use_transform(Recorder())


@pytest.fixture
def marking_transform(use_transform):
    return use_transform(Recorder(rename={"MARK": "MARK_REPLACED"}))
