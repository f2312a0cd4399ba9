"""The differential conformance suite under fault injection.

In: ``tests/conformance`` run in a child pytest with
``JANUS_FAULT_INJECTION=<rate>:<seed>``: every stage boundary of the frame
compiler and of the fusing backend (and, at a tenth of the rate, every traced
instruction) raises an internal error at random (janus_frame/faults.py).
Out: the child must pass: each program gives eager's results, inputs after
the call, exceptions and side effects on every call, and the faults show only
as native runs and backend fallbacks (graph counts are not checked there; the
harness reads ``JANUS_FAULT_INJECTION``).  A test here also checks that the
faults fire at all, so the run cannot pass by injecting nothing.

The other tests place one fault where a class of internal error once
escaped: a backward graph built on the first backward, a compile that ran a
torch setter while tracing, a kernel build dropped or failing, and every
single point of programs whose breaks fall inside exception regions
(fault_sweep_child.py).

Cost: the whole conformance run under injection takes about 110 s of CPU
(1053 programs x backends; measured with /usr/bin/time), so it runs in
full rather than on a subset of topics.
"""
from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys
import warnings

import pytest
import torch

import janus_frame as jf
from janus_frame import faults
from janus_frame.cache import stats
from janus_frame.config import config

ROOT = pathlib.Path(__file__).resolve().parents[1]
RATE = "0.05"


def _child(seed: int, extra=()) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JANUS_")}
    env["JANUS_FAULT_INJECTION"] = f"{RATE}:{seed}"
    # the leak children and the JANUS_FRAME=1 process programs compare whole
    # processes' output (a fault's warning is output): not part of this run
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
           "tests/conformance", "-k", "not leak and not process", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=3000)


@pytest.mark.expect_fallback
def test_faults_fire_and_end_as_native_runs(monkeypatch):
    """In-process: with every point raising, a compiled function still
    returns eager's result, with one warning and an internal error counted."""
    monkeypatch.setattr(config, "fault_injection", "1.0:0")

    def f(x, n):
        y = x * 2
        for _ in range(n):
            y = y.sin() + 1
        return y

    x = torch.randn(5)
    jf.reset()
    before = stats.internal_errors
    cf = jf.compile(f, backend="default")
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter("always")
        got = cf(x, 3)
    torch.testing.assert_close(got, f(x, 3))
    assert stats.internal_errors > before
    assert any("internal error" in str(w.message) or "injected fault" in str(w.message)
               for w in ws), [str(w.message) for w in ws]
    with pytest.raises(faults.InjectedFault):
        faults.point("here")
    jf.reset()


@pytest.mark.expect_fallback
def test_backend_faults_run_the_graph_eagerly(monkeypatch):
    """A fault inside the fusing backend ends at its one fallback point."""
    from janus_frame.backends import janus as jb

    def f(x):
        return (x.exp() * 3).sum(0)

    x = torch.randn(4, 3)
    jf.reset()
    n0 = len(jb.stats.fallbacks)

    def point(name, scale=1.0):
        # the frontend's own points would end the frame first: only the backend's
        if name.startswith("backend."):
            raise faults.InjectedFault(f"injected fault at {name}")

    monkeypatch.setattr(faults, "point", point)
    got = jf.compile(f, backend="default")(x)
    torch.testing.assert_close(got, f(x))
    assert len(jb.stats.fallbacks) > n0
    assert "injected" in jb.stats.fallbacks[-1].reason
    jf.reset()


@pytest.mark.timeout(3600)
def test_conformance_suite_under_fault_injection():
    r = _child(seed=1)
    tail = (r.stdout + r.stderr)[-8000:]
    assert r.returncode == 0, tail
    m = re.search(r"(\d+) passed", r.stdout)
    assert m and int(m.group(1)) > 500, tail


def _backend_faults_from_now(monkeypatch):
    """From now on every backend stage raises (the frontend's points stay off)."""
    def point(name, scale=1.0):
        if name.startswith("backend."):
            raise faults.InjectedFault(f"injected fault at {name}")

    monkeypatch.setattr(faults, "point", point)


@pytest.mark.expect_fallback
@pytest.mark.parametrize("lean", [True, False], ids=["lean", "aot"])
def test_backward_fault_runs_the_backward_graph_eagerly(monkeypatch, lean):
    """The backward graph is compiled on the first backward, inside the
    user's ``backward()`` call: a fault there must not reach the user, and
    the gradients are eager's.  Both training paths: the lean
    autograd.Function, and AOTAutograd's runtime (which an output aliasing
    an input needs)."""
    from janus_frame.backends import janus as jb
    from janus_frame.backends.janus.runtime import training

    def f(x, w):
        loss = ((x @ w).tanh() * 2).sum()
        return (loss, w[0]) if not lean else (loss,)

    paths = []
    compile_lean = training.compile_lean

    def recorded(*a, **k):
        r = compile_lean(*a, **k)
        paths.append(r is not None)
        return r

    monkeypatch.setattr(training, "compile_lean", recorded)
    torch.manual_seed(0)
    x, w = torch.randn(4, 3), torch.randn(3, 3, requires_grad=True)
    jf.reset()
    n0 = len(jb.stats.fallbacks)
    got = jf.compile(f, backend="default")(x, w)  # the forward compiled without faults
    assert paths == [lean] and len(jb.stats.fallbacks) == n0
    _backend_faults_from_now(monkeypatch)
    got[0].backward()
    g_got, w.grad = w.grad, None
    want = f(x, w)
    want[0].backward()
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(g_got, w.grad)
    assert len(jb.stats.fallbacks) > n0
    assert "backward" in jb.stats.fallbacks[-1].graph and "injected" in jb.stats.fallbacks[-1].reason
    jf.reset()


def _fault_at(monkeypatch, when):
    """Raise at the first injection point for which ``when(name)`` holds."""
    fired = []

    def point(name, scale=1.0):
        if not fired and when(name):
            fired.append(name)
            raise faults.InjectedFault(f"injected fault at {name}")

    monkeypatch.setattr(faults, "point", point)
    return fired


@pytest.mark.expect_fallback
@pytest.mark.parametrize("backend", ["eager", "default"])
def test_fault_after_a_traced_setter_leaves_the_callers_settings(monkeypatch, backend):
    """Tracing ran ``torch.set_default_dtype`` for real (inlined down to the
    C setter); a fault after it must not leave that setting behind: the
    native run would save float64 as the caller's dtype and restore it."""
    def f(x):
        old = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)
        y = torch.ones(3)
        torch.set_default_dtype(old)
        return x + y, y.dtype

    # the fault comes once the trace has set float64
    fired = _fault_at(monkeypatch, lambda name: torch.get_default_dtype() is torch.float64)
    x = torch.randn(3)
    jf.reset()
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter("always")
        got = jf.compile(f, backend=backend)(x)
    assert fired
    assert torch.get_default_dtype() is torch.float32
    want = f(x)
    torch.testing.assert_close(got[0], want[0])
    assert got[1] is want[1] is torch.float64
    assert [str(w.message) for w in ws if "internal error" in str(w.message)], ws
    jf.reset()


@pytest.mark.timeout(900)
def test_each_single_fault_in_exception_regions_is_a_native_run():
    """One fault at a time at every injection point of programs whose
    graph breaks fall inside ``with`` blocks and ``try`` bodies (their
    resume codes start inside exception regions and run natively when
    their compile fails): results, output and settings stay eager's, and
    nothing crashes (a resume code whose exception table the interpreter
    cannot unwind crashed the conformance run under injection).  In a child:
    a crash fails this test, not the session."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JANUS_")}
    r = subprocess.run([sys.executable, "tests/fault_sweep_child.py"], capture_output=True,
                       text=True, env=env, cwd=ROOT, timeout=850)
    assert r.returncode == 0, (r.stdout + r.stderr)[-6000:]
    assert r.stdout.count("each fault a native run") == 4, r.stdout


@pytest.mark.expect_fallback
def test_fault_before_the_kernels_loaded_stops_their_build(monkeypatch, tmp_path):
    """A compile fails after the fusing backend started compiling the
    kernels (in the background) and before it waited for them: the dropped
    build stops its compiler and leaves no files behind, and no
    ResourceWarning reaches the user."""
    import gc

    from janus_frame.backends import janus as jb

    monkeypatch.setattr(config, "cache_dir", str(tmp_path))  # nothing built yet: a real compile
    fired = _fault_at(monkeypatch, lambda name: name == "backend.load")

    def f(x):
        return (x.exp() * 3 + 1).sin()

    x = torch.randn(8)
    jf.reset()
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter("always")
        got = jf.compile(f, backend="default")(x)
        jf.reset()
        jb.stats.clear()  # (it holds the latest graphs)
        gc.collect()
    torch.testing.assert_close(got, f(x))
    assert fired
    assert not [w for w in ws if issubclass(w.category, ResourceWarning)], \
        [str(w.message) for w in ws]
    left = [p for p in os.listdir(tmp_path) if p.endswith((".c", ".so"))]
    assert left == [], left


@pytest.mark.expect_fallback
def test_failed_kernel_build_falls_back_when_compiled(monkeypatch, tmp_path):
    """Kernels are built in the background; a build that fails is found
    while compiling (stage "load": one fallback record, the graph runs
    eagerly), not at the graph's first call, where it used to send every
    call of the frame to native code without a word."""
    from janus_frame.backends import janus as jb
    from janus_frame.backends.janus import build

    cc = tmp_path / "cc"
    cc.write_text('#!/bin/sh\nif [ "$1" = --version ]; then echo broken-cc 1; exit 0; fi\n'
                  'echo "cc: broken" >&2\nexit 1\n')
    cc.chmod(0o755)
    monkeypatch.setattr(build, "COMPILER", str(cc))
    monkeypatch.setattr(config, "cache_dir", str(tmp_path / "kernels"))
    build.compiler_version.cache_clear()

    def f(x):
        return (x.exp() * 3 + 1).sin()

    x = torch.randn(8)
    jf.reset()
    n0 = len(jb.stats.fallbacks)
    try:
        cf = jf.compile(f, backend="default")
        for _ in range(2):
            torch.testing.assert_close(cf(x), f(x))
    finally:
        build.compiler_version.cache_clear()
    new = jb.stats.fallbacks[n0:]
    assert [(fb.stage, fb.instead) for fb in new] == [("load", "eager")], new
    assert "cc: broken" in new[0].reason
    jf.reset()
