"""The driver: options given to the backend are the ones it uses (the
process-wide config only when none are given), every refusal goes through
the one fallback point -- recorded with its stage and logged as a warning,
raised under strict -- and each graceful degradation keeps working."""
import logging
import pathlib

import pytest
import torch
import torch.fx as fx
import torch.nn as nn

from conftest import assert_close, graphs, jcompile
import janus_frame.backends as backends
from janus_frame.backends.janus import janus_backend, pipeline, stats
from janus_frame.config import Config, config


def _f(x):
    return torch.tanh(x) * 2 + x.sum(-1, keepdim=True)


def _broken(*a, **k):
    raise RuntimeError("injected lowering failure")


def test_options_reach_the_backend_strict_raises(monkeypatch):
    monkeypatch.setattr(config, "strict", False)
    monkeypatch.setattr(pipeline, "lower", _broken)
    x = torch.randn(4, 8)
    with pytest.raises(RuntimeError, match="injected") as e:
        janus_backend(fx.symbolic_trace(_f), [x], options=config.merged(strict=True))
    assert e.value.janus_stage == "lower"
    assert not stats.fallbacks


@pytest.mark.expect_fallback
def test_a_refusal_is_recorded_with_its_stage_and_logged(monkeypatch, caplog):
    monkeypatch.setattr(pipeline, "lower", _broken)
    x = torch.randn(4, 8)
    gm = fx.symbolic_trace(_f)
    gm.meta["janus_name"] = "f at test_pipeline.py"
    with caplog.at_level(logging.WARNING, logger="janus_frame.backend"):
        fn = janus_backend(gm, [x], options=config.merged(strict=False))
    assert_close(fn(x), _f(x))  # the graph as captured
    (fb,) = stats.fallbacks
    assert (fb.stage, fb.graph, fb.instead) == ("lower", "f at test_pipeline.py", "eager")
    assert "injected" in fb.reason
    (rec,) = [r for r in caplog.records if r.name == "janus_frame.backend"]
    assert rec.levelno == logging.WARNING and "f at test_pipeline.py" in rec.getMessage()


@pytest.mark.expect_fallback
def test_lean_runtime_failure_degrades_to_aotautograd(monkeypatch):
    from janus_frame.backends.janus.runtime import training

    def broken(*a, **k):
        raise RuntimeError("injected lean failure")

    monkeypatch.setattr(config, "strict", False)
    monkeypatch.setattr(training, "compile_lean", broken)
    w = torch.randn(8, 3, requires_grad=True)
    rw = w.detach().clone().requires_grad_(True)
    x = torch.randn(4, 8)
    jcompile(lambda x, w: torch.tanh(x @ w).sum())(x, w).backward()
    torch.tanh(x @ rw).sum().backward()
    assert_close(w.grad, rw.grad, rtol=1e-5, atol=1e-6)
    assert [(f.stage, f.instead) for f in stats.fallbacks] == [("training.lean", "AOTAutograd runtime")]
    assert len(graphs()) == 2  # forward and backward compiled all the same


@pytest.mark.expect_fallback
def test_channels_last_failure_degrades_to_the_captured_layout(monkeypatch):
    def broken(gm):
        raise RuntimeError("injected layout failure")

    monkeypatch.setattr(config, "strict", False)
    monkeypatch.setattr(pipeline, "channels_last_convs", broken)
    conv = nn.Conv2d(3, 4, 3)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert_close(jcompile(lambda x: torch.relu(conv(x)))(x), torch.relu(conv(x)), rtol=1e-5, atol=1e-5)
    assert [(f.stage, f.instead) for f in stats.fallbacks] == [("layout", "captured layout")]
    assert graphs()


def test_options_choose_checks_and_the_kernel_cache(monkeypatch, tmp_path):
    seen = []
    monkeypatch.setattr(pipeline.verify, "schedule", lambda s: seen.append(s))
    x = torch.randn(4, 8)
    janus_backend(fx.symbolic_trace(_f), [x], options=config.merged(checks=False))(x)
    assert not seen
    opts = config.merged(checks=True, cache_dir=str(tmp_path))
    assert_close(janus_backend(fx.symbolic_trace(lambda x: _f(x) + 3), [x], options=opts)(x), _f(x) + 3)
    assert len(seen) == 1
    assert pathlib.Path(graphs()[-1].build.path).parent == tmp_path


def test_lookup_backend_binds_the_options():
    opts = config.merged(strict=True)
    for spec in ("default", backends.default):
        fn = backends.lookup_backend(spec, opts)
        assert fn.func is backends.default and fn.keywords == {"options": opts}
    assert backends.lookup_backend("default") is backends.default
    assert backends.lookup_backend("eager", opts) is backends.eager


def test_backend_settings_come_from_the_environment_only_through_config(monkeypatch, tmp_path):
    for name, value in (("JANUS_CHECKS", "1"), ("JANUS_FRAME_CHANNELS_LAST", "0"),
                        ("JANUS_FRAME_LIBMVEC", "0"), ("JANUS_FRAME_CACHE_DIR", str(tmp_path))):
        monkeypatch.setenv(name, value)
    c = Config()
    assert (c.checks, c.channels_last, c.libmvec, c.cache_dir) == (True, False, False, str(tmp_path))
    src = pathlib.Path(pipeline.__file__).parent
    readers = [str(p.relative_to(src)) for p in src.rglob("*.py")
               if "os.environ" in p.read_text() or "getenv" in p.read_text()]
    assert readers == []


def test_an_input_traced_strided_is_read_with_the_strides_it_arrives_in():
    # AOTAutograd traces a backward reading what the forward saved with the
    # strides of the forward's fake outputs (a chunk of the gates: row stride
    # 4H); the forward's kernels store such an output densely.  The backward
    # must read the values, whatever layout they arrive in.
    from torch.fx.experimental.proxy_tensor import make_fx

    def f(g, h):
        return torch.sigmoid(g) * h + g.sum(0)

    gates = torch.randn(3, 64)
    g = gates[:, 16:32]  # [3, 16], strides (64, 1), offset 16
    h = torch.randn(3, 16)
    gm = make_fx(f, tracing_mode="fake")(g, h)
    cg = pipeline.compile_graph(gm)
    ref = f(g, h)
    assert_close(cg(g, h), ref)
    assert_close(cg(g.contiguous(), h), ref)  # the same values laid out densely
    assert_close(cg(gates.t().contiguous().t()[:, 16:32], h), ref)  # column-major


def test_an_input_traced_strided_with_symbolic_sizes_is_read_as_it_arrives():
    # the same with a symbolic row count (Mamba's saved time-step chunk
    # [B*L, 4] of the projection, row stride 20, stored densely by the
    # forward of a graph compiled for a new sequence length): the layout
    # check must not be skipped because the shape is symbolic
    from torch.fx.experimental.proxy_tensor import make_fx

    def f(g, h):
        return torch.sigmoid(g) * h + g.sum(0)

    def inputs(n):
        gates = torch.randn(n, 64)
        return gates, gates[:, 16:32], torch.randn(n, 16)

    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.symbolic_shapes import (DimDynamic, ShapeEnv,
                                                       StatelessSymbolicContext)

    # traced as the backward sees it: rows symbolic, the row stride 64 static
    mode = FakeTensorMode(shape_env=ShapeEnv())
    gates = mode.from_tensor(torch.randn(5, 64), symbolic_context=StatelessSymbolicContext(
        dynamic_sizes=[DimDynamic.DYNAMIC, DimDynamic.STATIC]))
    with mode:
        g = gates[:, 16:32]
        h = torch.empty_strided(g.shape, (16, 1))
        gm = make_fx(f, tracing_mode="fake")(g, h)
    assert g.stride() == (64, 1) and isinstance(g.shape[0], torch.SymInt)
    cg = pipeline.compile_graph(gm)
    for n in (5, 7, 11):
        gates, g, h = inputs(n)
        ref = f(g, h)
        assert_close(cg(g, h), ref)
        assert_close(cg(g.contiguous(), h), ref)
        assert_close(cg(gates.t().contiguous().t()[:, 16:32], h), ref)


def _fake_with_symbolic_strides(real):
    """``real`` as a fake input with symbolic sizes: a stride that no size
    product gives (``x[::2]``'s row stride) becomes a symbol of its own."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.symbolic_shapes import (DimDynamic, ShapeEnv,
                                                       StatelessSymbolicContext)

    mode = FakeTensorMode(shape_env=ShapeEnv())
    fake = mode.from_tensor(real, symbolic_context=StatelessSymbolicContext(
        dynamic_sizes=[DimDynamic.DYNAMIC] * real.dim()))
    return mode, fake


def test_an_input_with_a_stride_symbol_arriving_in_another_layout_is_made_contiguous():
    # Its stride symbol is read off the input itself, so the check used to be
    # skipped: a transposed input arriving for a graph traced with x[::2]
    # (strides (s, 1)) was read row-major -- wrong values.
    from torch.fx.experimental.proxy_tensor import make_fx

    def f(x, y):
        return torch.sin(x) * 2 + y

    mode, x = _fake_with_symbolic_strides(torch.randn(8, 5)[::2])
    assert isinstance(x.stride()[0], torch.SymInt) and x.stride()[1] == 1
    with mode:
        gm = make_fx(f, tracing_mode="fake")(x, torch.empty(x.shape))
    cg = pipeline.compile_graph(gm)
    for real in (torch.randn(8, 5)[::2], torch.randn(18, 6)[::3], torch.randn(5, 4).t(),
                 torch.randn(4, 5), torch.randn(1, 5).expand(4, 5),
                 torch.randn(40)[7:27].view(4, 5), torch.randn(4, 10)[:, 1:6]):
        y = torch.randn(real.shape)
        assert_close(cg(real, y), f(real, y))


@pytest.mark.expect_fallback
def test_a_stride_symbol_layout_no_contiguous_copy_fits_is_refused():
    # strides (s, 2): a contiguous copy has (n, 1), which (s, 2) never is;
    # the graph runs as captured rather than read a copy wrongly
    from torch.fx.experimental.proxy_tensor import make_fx

    def f(x):
        return torch.sin(x) + 1

    mode, x = _fake_with_symbolic_strides(torch.randn(8, 10)[::2, ::2])
    assert isinstance(x.stride()[0], torch.SymInt) and x.stride()[1] == 2
    with mode:
        gm = make_fx(f, tracing_mode="fake")(x)
    before = len(stats.fallbacks)
    fn = janus_backend(gm, [x], options=config.merged(strict=False))
    assert len(stats.fallbacks) == before + 1 and "no contiguous copy" in stats.fallbacks[-1].reason
    for real in (torch.randn(8, 10)[::2, ::2], torch.randn(5, 4).t()):
        assert_close(fn(real), f(real))
