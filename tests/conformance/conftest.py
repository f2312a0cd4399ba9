"""Fixtures of the conformance suite (programs in test_conf_*.py, harness in
harness.py, the map of today's failures in known_failures.py)."""
from __future__ import annotations

import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import janus_frame as jf  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "conformance: the differential conformance suite (tests/conformance)")
    config.addinivalue_line("markers", "slow: slow but run by default (the 10,000-function leak test)")


def pytest_collection_modifyitems(config, items):
    here = os.path.dirname(os.path.abspath(__file__))
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.conformance)


def pytest_collection_finish(session):
    # the leak children are slow: start the selected ones now, in the
    # background, so they run while the programs are checked
    if session.config.option.collectonly:
        return
    import leakcheck

    for item in session.items:
        for kind in leakcheck.JOBS:
            if item.name.startswith(f"test_leak_{kind}["):
                leakcheck.start(kind)


def pytest_unconfigure(config):
    import leakcheck

    leakcheck.stop_all()


@pytest.fixture(autouse=True)
def _fresh_conformance():
    jf.reset()
    grad = torch.is_grad_enabled()
    yield
    jf.reset()
    torch.set_grad_enabled(grad)
