"""Shared fixtures for the fusing-backend tests.

Every test runs in strict mode (an internal compiler error raises instead of
falling back to eager, so a test cannot pass by not compiling), with the
verifiers of every stage boundary on (``checks``), with the kernel cache in a
per-session temporary directory (cold builds are tested), and with dynamo's
caches reset so each test compiles its own graphs.  (A test fails if the
backend recorded a refusal unless it is marked ``expect_fallback``: the root
conftest checks that for every test.)
"""
import os

# Triton kernels are checked on CPU tensors by the interpreter (no GPU here);
# it must be chosen before anything imports triton.
os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _kernel_cache(tmp_path_factory):
    from janus_frame.config import config

    old = config.cache_dir
    if "JANUS_TEST_KEEP_CACHE" not in os.environ:
        d = str(tmp_path_factory.mktemp("kernels"))
        config.cache_dir = d
        os.environ["JANUS_FRAME_CACHE_DIR"] = d  # (for the subprocesses tests start)
    yield
    config.cache_dir = old


@pytest.fixture(autouse=True)
def _strict_and_reset():
    from janus_frame.config import config
    from janus_frame.backends.janus import reset_stats

    old = config.strict, config.checks
    config.strict = True
    config.checks = True
    torch._dynamo.reset()
    reset_stats()
    yield
    config.strict, config.checks = old


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
