"""Fixtures for the symbolic interpreter's differential tests (helpers in jfutil.py)."""
from __future__ import annotations

import pytest
import torch

import janus_frame as jf
from jfutil import Jit


@pytest.fixture(autouse=True)
def _fresh():
    jf.reset()
    torch.manual_seed(0)
    yield
    jf.reset()


@pytest.fixture
def jit():
    return Jit()
