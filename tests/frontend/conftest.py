"""Fixtures for the symbolic interpreter's differential tests (helpers in jfutil.py)."""
from __future__ import annotations

import pytest
import torch

import janus_frame as jf
import janus_frame.hook  # noqa: F401 - stats
from jfutil import Jit


def pytest_configure(config):
    config.addinivalue_line("markers", "reruns_ok: the test makes compiled graphs raise on purpose")


@pytest.fixture(autouse=True)
def _fresh(request):
    jf.reset()
    torch.manual_seed(0)
    yield
    # A graph that raises reruns its frame natively and the test still passes:
    # unless the test wants that, it is a bug hidden by the fallback.
    reruns = jf.hook.stats.reruns
    jf.reset()
    if request.node.get_closest_marker("reruns_ok") is None:
        assert reruns == 0, f"{reruns} compiled graph(s) raised and fell back to native runs"


@pytest.fixture
def jit():
    return Jit()
