"""Shared fixtures for the fusing-backend tests.

Every test runs in strict mode (an internal compiler error raises instead of
falling back to eager, so a test cannot pass by not compiling), with the
kernel cache in a per-session temporary directory (cold builds are tested),
and with dynamo's caches reset so each test compiles its own graphs.
"""
import os

# Triton kernels are checked on CPU tensors by the interpreter (no GPU here);
# it must be chosen before anything imports triton.
os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _kernel_cache(tmp_path_factory):
    if "JANUS_TEST_KEEP_CACHE" not in os.environ:
        os.environ["JANUS_FRAME_CACHE_DIR"] = str(tmp_path_factory.mktemp("kernels"))
    yield


@pytest.fixture(autouse=True)
def _strict_and_reset():
    from janus_frame.config import config
    from janus_frame.backends.janus import reset_stats

    old = config.strict
    config.strict = True
    torch._dynamo.reset()
    reset_stats()
    yield
    config.strict = old


def jcompile(fn, dynamic=False):
    from janus_frame.backends.janus import janus_backend

    return torch.compile(fn, backend=janus_backend, dynamic=dynamic)


def graphs():
    from janus_frame.backends.janus import stats

    return stats.graphs


def assert_close(actual, expected, rtol=1e-5, atol=1e-6):
    if isinstance(expected, (tuple, list)):
        assert len(actual) == len(expected)
        for a, e in zip(actual, expected):
            assert_close(a, e, rtol, atol)
        return
    if not isinstance(expected, torch.Tensor):
        assert actual == expected
        return
    assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol, equal_nan=True)
