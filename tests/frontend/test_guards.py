"""Guards: what changes between calls must recompile (and stay correct);
what the trace did not read must not."""
from __future__ import annotations

import logging
import warnings

import pytest
import torch
import torch.nn as nn

import janus_frame as jf
from janus_frame.diagnostics.logs import set_logs
from jfutil import Recorder

SCALE = 2.0


def scaled(x):
    return x * SCALE


def compiled(fn, **kw):
    rec = Recorder()
    return jf.compile(fn, backend=rec, **kw), rec


def test_shape_dtype_requires_grad_device_changes_recompile():
    def f(x):
        return x * 2 + 1
    cf, rec = compiled(f)
    inputs = [torch.randn(3), torch.randn(4), torch.randn(4, dtype=torch.float64),
              torch.randn(4, requires_grad=True), torch.randn(4, device="meta"),
              torch.randn(4, 2).t()]
    for x in inputs:
        got = cf(x)
        assert got.shape == x.shape and got.dtype == x.dtype and got.device == x.device
        if x.device.type != "meta":
            torch.testing.assert_close(got, f(x))
    assert len(rec.graphs) == len(inputs)
    for x in inputs:  # every entry is reused: no further compiles
        cf(x)
    assert len(rec.graphs) == len(inputs)


def test_unread_arguments_are_not_guarded():
    def f(x, unused):
        return x + 1
    cf, rec = compiled(f)
    cf(torch.randn(3), torch.randn(2))
    cf(torch.randn(3), torch.randn(7, 7))
    cf(torch.randn(3), "anything")
    assert len(rec.graphs) == 1


def test_global_change_recompiles():
    global SCALE
    cf, rec = compiled(scaled)
    x = torch.randn(3)
    torch.testing.assert_close(cf(x), x * 2.0)
    SCALE = 5.0
    try:
        torch.testing.assert_close(cf(x), x * 5.0)
    finally:
        SCALE = 2.0
    assert len(rec.graphs) == 2


def test_python_value_specialised_and_guarded():
    def f(x, n):
        return x * n
    cf, rec = compiled(f)
    x = torch.randn(3)
    torch.testing.assert_close(cf(x, 2), x * 2)
    torch.testing.assert_close(cf(x, 3), x * 3)
    torch.testing.assert_close(cf(x, 2.0), x * 2.0)
    assert len(rec.graphs) == 3


class Scaler(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 3)
        self.scale = 2.0
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        return self.drop(self.lin(x)) * self.scale


def test_module_attribute_and_train_eval_and_requires_grad():
    m = Scaler()
    rec = Recorder()
    cm = jf.compile(m, backend=rec)
    x = torch.randn(4, 3)
    m.eval()
    torch.testing.assert_close(cm(x), m(x))
    m.scale = 3.0
    torch.testing.assert_close(cm(x), m(x))
    assert len(rec.graphs) == 2
    m.train()
    torch.manual_seed(1)
    got = cm(x)
    torch.manual_seed(1)
    torch.testing.assert_close(got, m(x))
    assert len(rec.graphs) == 3
    m.lin.weight.requires_grad_(False)
    m.eval()
    out = cm(x)
    assert len(rec.graphs) == 4
    torch.testing.assert_close(out, m(x))
    m.lin = nn.Linear(3, 3)  # a new submodule of the same type and parameter shapes:
    torch.testing.assert_close(cm(x), m(x))  # its parameters are graph inputs
    assert len(rec.graphs) == 4
    m.lin = nn.Linear(3, 3, bias=False)  # what the trace read differs: recompiled
    torch.testing.assert_close(cm(x), m(x))
    assert len(rec.graphs) == 5


def test_grad_mode_is_guarded():
    def f(x):
        return x * 2
    cf, rec = compiled(f)
    w = torch.randn(3, requires_grad=True)
    assert cf(w).requires_grad
    with torch.no_grad():
        assert not cf(w).requires_grad
    assert len(rec.graphs) == 2


def test_recompile_limit_and_reason_logged(caplog):
    def f(x):
        return x + 1
    set_logs("recompiles")
    try:
        cf, rec = compiled(f, recompile_limit=3, dynamic=False)  # every size compiles
        with warnings.catch_warnings(record=True) as w, \
                caplog.at_level(logging.INFO, logger="janus_frame"):
            warnings.simplefilter("always")
            for n in range(1, 8):
                x = torch.randn(n)
                torch.testing.assert_close(cf(x), x + 1)
        limit_warnings = [m for m in w if "recompile limit" in str(m.message)]
        assert len(limit_warnings) == 1
        assert len(rec.graphs) == 3
        assert any("size" in r.getMessage() or "shape" in r.getMessage() or "(1,)" in
                   r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]
        assert cf(torch.randn(2)).shape == (2,)  # cached entries still used
    finally:
        set_logs("")


def test_aliased_arguments_are_guarded():
    def f(a, b):
        a.add_(1)
        return b * 2
    cf, rec = compiled(f)
    x = torch.zeros(3)
    out = cf(x, x)  # same tensor twice: b sees a's update
    torch.testing.assert_close(out, torch.full((3,), 2.0))
    y, z = torch.zeros(3), torch.zeros(3)
    out = cf(y, z)
    torch.testing.assert_close(out, torch.zeros(3))
    torch.testing.assert_close(y, torch.ones(3))
    assert len(rec.graphs) == 2


def test_internal_error_falls_back_with_warning_and_strict_raises(monkeypatch):
    from janus_frame.frontend.handlers import HANDLERS

    def broken(tx, ins):
        raise RuntimeError("injected interpreter bug")
    monkeypatch.setitem(HANDLERS, "BINARY_OP", broken)

    def f(x):
        return x * 2
    x = torch.randn(3)
    with pytest.warns(RuntimeWarning, match="injected interpreter bug"):
        out = jf.compile(f, backend="eager")(x)
    torch.testing.assert_close(out, x * 2)
    jf.reset()
    with pytest.raises(RuntimeError, match="injected"):
        jf.compile(f, backend="eager", fullgraph=True)(x)
    jf.reset()
    monkeypatch.setenv("JANUS_STRICT", "1")
    with pytest.raises(RuntimeError, match="injected"):
        jf.compile(f, backend="eager", strict=True)(x)


def test_inductor_backend_calling_convention():
    # Inductor's compiled functions take one list ("boxed"): the adapter
    # must hand them the graph's inputs correctly, several calls in a row
    def f(x, w, lst):
        lst.append(1)
        return torch.relu(x @ w) * 2 + x.sum()

    cf = jf.compile(f, backend="inductor")
    for _ in range(3):
        x, w = torch.randn(4, 4), torch.randn(4, 4)
        torch.testing.assert_close(cf(x, w, []), f(x, w, []))


class _Counted:
    """An object whose attribute reads are counted (a property per name)."""

    def __init__(self, log, **attrs):
        self._log, self._attrs = log, attrs

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        self._log.append(name)
        return self._attrs[name]


def test_shared_reads_evaluate_each_path_once_and_keep_short_circuits():
    from janus_frame.frontend.guards import shared_reads

    clauses = ["type(o.a.b) is int and o.a.b == 3",
               "o.a.c is None",
               "(o.flag or o.a.d == 1)",      # o.a.d: read only when o.flag is falsy
               "o.a.d == 1",
               "0 < o.a.b < o.a.e",           # o.a.e: a chained comparison's tail
               "o.a.e > 0",
               "len([o.a.b for _ in range(2)]) == 2"]  # a comprehension: its own scope
    text = shared_reads(clauses)
    plain = " and ".join(f"({c})" for c in clauses)
    for flag in (True, False):
        for b in (3, 4):
            runs = {}
            for name, src in (("plain", plain), ("shared", text)):
                log = []
                o = _Counted(log, flag=flag, a=_Counted(log, b=b, c=None, d=1, e=5))
                runs[name] = (eval(src, {"o": o}), log)
            assert runs["shared"][0] == runs["plain"][0]
            # never a read the plain expression did not do, in the same order
            shared_log, plain_log = runs["shared"][1], runs["plain"][1]
            it = iter(plain_log)
            assert all(any(r == p for p in it) for r in shared_log)
            if b == 3:
                assert shared_log.count("a") < plain_log.count("a")


def test_module_guard_binds_shared_paths_once():
    # a module step's guard walks the same module paths for many checks:
    # the installed guard binds them to locals (:=) instead of re-reading
    from janus_frame import _C

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
                                        for _ in range(2))

        def forward(self, x):
            for b in self.blocks:
                x = b(x)
            return x

    net = Net()
    cf, rec = compiled(net)
    x = torch.randn(2, 4)
    torch.testing.assert_close(cf(x), net(x))
    (guard, _, _), = _C.code_entries(Net.forward.__code__)
    shared = [v for v in guard.__code__.co_varnames if v.startswith("__jf_r")]
    assert len(shared) >= 4
    net.blocks[1][1].eps = 1e-3  # a specialised constant behind a shared path: recompiles
    torch.testing.assert_close(cf(x), net(x))
    assert len(rec.graphs) == 2


def test_shared_reads_leave_dict_displays_alone():
    from janus_frame.frontend.guards import shared_reads

    text = shared_reads(["{o.k: o.a, o.a: 1} != {}", "o.a == 1"])

    class O:
        k, a = "k", 1

    assert eval(text, {"o": O()}) is True


def test_recompile_explained_through_a_pinned_object_after_later_traces():
    # A module imported inside the function is read through a pinned source;
    # the guard's explaining twin is made at the first recompile, after other
    # frames were traced (which drops the pins): it must still explain which
    # attribute changed, and the recompiled entry must use the new value.
    import sys
    import types

    from janus_frame import hook

    mod = types.ModuleType("jf_test_pinned_mod")
    mod.K = 2.0
    sys.modules[mod.__name__] = mod
    try:
        def f(x):
            import jf_test_pinned_mod
            return x * jf_test_pinned_mod.K

        def g(x):
            return x + 1

        cf, rec = compiled(f)
        x = torch.randn(3)
        torch.testing.assert_close(cf(x), f(x))
        torch.testing.assert_close(jf.compile(g, backend=Recorder())(x), g(x))  # a later trace
        mod.K = 3.0
        torch.testing.assert_close(cf(x), f(x))
        assert len(rec.graphs) == 2
        why, = hook.code_state(f.__code__).recompiles
        assert ".K == 2.0" in why and "not explained" not in why, why
    finally:
        del sys.modules[mod.__name__]


@pytest.fixture
def patched_clone():
    """torch.Tensor.clone replaced by a Python function that counts its
    calls and calls the original C method; restored afterwards."""
    orig = torch.Tensor.clone
    calls = []

    def counting_clone(self, *args, **kwargs):
        calls.append(1)
        return orig(self, *args, **kwargs)

    torch.Tensor.clone = counting_clone
    try:
        yield orig, calls
    finally:
        torch.Tensor.clone = orig


@pytest.mark.parametrize("backend", ["recorder", "janus"])
def test_a_tensor_method_the_program_replaced_is_traced_and_called_once(patched_clone, backend):
    _, calls = patched_clone

    def f(x):
        return x.clone() * 2 + 1

    rec = Recorder()
    cf = jf.compile(f, backend=rec if backend == "recorder" else jf.backend, strict=True)
    x = torch.randn(5)
    for i in range(3):
        before = len(calls)
        torch.testing.assert_close(cf(x), x * 2 + 1)
        if i or backend == "recorder":
            # eager calls it once per call: so does the compiled function
            # (the fusing backend's first call traces the graph to aten under
            # make_fx's torch-function mode, which torch hands the attribute)
            assert len(calls) == before + 1
    if backend == "recorder":
        assert len(rec.graphs) == 1
        # the replacement was inlined: the graph calls the C method, never
        # the attribute (which would dispatch to the Python function again)
        assert "clone" not in [n.target for n in rec.graphs[0].graph.nodes
                               if n.op == "call_method"]


def test_a_tensor_method_replaced_after_compiling_recompiles():
    def f(x):
        return x.clone() + 1

    rec = Recorder()
    cf = jf.compile(f, backend=rec, strict=True)
    x = torch.randn(4)
    torch.testing.assert_close(cf(x), x + 1)
    orig = torch.Tensor.clone
    torch.Tensor.clone = lambda self: orig(self) * 10
    try:
        torch.testing.assert_close(cf(x), f(x))
        torch.testing.assert_close(cf(x), x * 10 + 1)
    finally:
        torch.Tensor.clone = orig
    torch.testing.assert_close(cf(x), x + 1)
    assert len(rec.graphs) == 2


@pytest.mark.parametrize("backend", ["recorder", "janus"])
def test_the_original_tensor_method_kept_apart_is_called_in_the_graph(patched_clone, backend):
    orig, calls = patched_clone

    def f(x):
        return orig(x) * 2

    rec = Recorder()
    cf = jf.compile(f, backend=rec if backend == "recorder" else jf.backend, strict=True)
    x = torch.randn(3, requires_grad=True)
    out = cf(x)
    torch.testing.assert_close(out, x * 2)
    out.sum().backward()
    torch.testing.assert_close(x.grad, torch.full((3,), 2.0))
    calls.clear()  # (the fusing backend's compile: see above)
    torch.testing.assert_close(cf(x), x * 2)
    assert calls == []  # the replacement is never called: eager does not call it
    if backend == "recorder":
        assert len(rec.graphs) == 1 and len(rec.ops()) == 2


def test_an_in_place_tensor_method_kept_apart_breaks_the_graph_and_writes():
    orig = torch.Tensor.add_
    torch.Tensor.add_ = lambda self, other: orig(self, other * 100)
    try:
        def f(x):
            y = x * 1
            orig(y, 1)
            return y * 2

        cf = jf.compile(f, backend="eager")
        x = torch.randn(3)
        with jf.profile() as prof:
            torch.testing.assert_close(cf(x), (x + 1) * 2)
        assert [s.break_id for s in prof.report().sites if s.break_id] == ["JF022"]
        torch.testing.assert_close(cf(x), f(x))
    finally:
        torch.Tensor.add_ = orig
