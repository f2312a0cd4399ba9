"""Triton code generation, checked with TRITON_INTERPRET=1 on CPU tensors
(small shapes: the interpreter costs ~1 ms per program instance) for the same
op families as the C++ path: pointwise, views, dtypes, persistent and looped
row reductions, softmax / layer norm fusion, gather. With a GPU and
TRITON_INTERPRET=0 (bench/gpu_check.py) the same tests run on CUDA tensors."""
import logging
import os

import pytest
import torch
import torch.nn.functional as F

from conftest import assert_close, graphs, jcompile
from janus_frame.backends.janus import reset_stats

pytest.importorskip("triton")

DEVICE = "cuda" if torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") == "0" else "cpu"


@pytest.fixture(autouse=True)
def _triton():
    from janus_frame.backends.janus import force_triton

    with force_triton():
        yield


def _run(f, *args, rtol=1e-5, atol=1e-6):
    args = [a.to(DEVICE) if isinstance(a, torch.Tensor) else a for a in args]
    cf = jcompile(f)
    assert_close(cf(*args), f(*args), rtol=rtol, atol=atol)
    g = graphs()[-1]
    assert g.backend == "triton" and g.triton_kernels
    return g


SPECIAL = torch.tensor([0.0, 1.0, -1.0, float("inf"), float("-inf"), float("nan"), 1e-20, 30.0, -30.0, 0.5])


@pytest.mark.parametrize("op", [torch.exp, torch.log, torch.tanh, torch.sigmoid, torch.erf, torch.sqrt,
                                torch.rsqrt, torch.log1p, torch.expm1, torch.abs, torch.relu, torch.round,
                                torch.floor, torch.sign, lambda x: x.pow(2.5), F.gelu, F.silu,
                                lambda x: torch.clamp(x, -0.5, 0.5)])
def test_triton_unary(op):
    x = torch.randn(6, 20) * 3
    s = SPECIAL if op not in (F.gelu,) else SPECIAL.nan_to_num(posinf=1e30, neginf=-1e30)  # eager: gelu(inf) is nan
    _run(lambda x, y: (op(x) * 2 + 1, op(y)), x, s)


def test_triton_binary_broadcast_strides_and_promotion():
    def f(a, b, c, i):
        return (a * b + c.t(), torch.maximum(a, b), torch.where(a > b, a, c.t()), a + i, i // 3, i % 4,
                a[:, ::2] - 1, torch.cat([a, c.t()], 1), (a > 0) & (b < 0))

    a, b = torch.randn(5, 8), torch.randn(1, 8)
    c = torch.randn(8, 5)
    i = torch.randint(-20, 20, (5, 8))
    _run(f, a, b, c, i)


def test_triton_softmax_persistent_one_kernel():
    x = torch.randn(16, 100)
    x[0, :50] = float("-inf")
    g = _run(lambda x: torch.softmax(x, -1), x)
    assert g.num_kernels == 1
    src = next(iter(g.triton_kernels.values())).source
    assert "for roff" not in src and "tl.max(" in src  # persistent: no loop over the row


def test_triton_looped_reduction():
    x = torch.randn(4, 3000)
    g = _run(lambda x: (x.sum(-1), x.amax(-1), torch.softmax(x, -1)), x, rtol=1e-4, atol=1e-5)
    src = "".join(k.source for k in g.triton_kernels.values())
    assert "for roff" in src


def test_triton_layer_norm_one_kernel():
    x = torch.randn(8, 64)
    w, b = torch.randn(64), torch.randn(64)
    g = _run(lambda x, w, b: F.layer_norm(x, (64,), w, b), x, w, b, rtol=1e-4, atol=1e-5)
    assert g.num_kernels == 1


def test_triton_reductions_over_axes():
    x = torch.randn(6, 5, 7)

    def f(x):
        return x.sum(1), x.mean((0, 2)), x.amax(0), x.argmax(-1), x.var(-1), (x > 1).any(-1)

    _run(f, x, rtol=1e-4, atol=1e-5)


def test_triton_gather_nll_and_bias_gelu():
    x, t = torch.randn(8, 10), torch.randint(0, 10, (8,))
    g = _run(lambda x, t: F.nll_loss(F.log_softmax(x, -1), t, reduction="none"), x, t)
    # one for the log-softmax and its gather (the range check reads the
    # targets as given: no kernel computing the masked class indices)
    assert g.num_kernels == 1
    torch._dynamo.reset()
    a, w, b = torch.randn(8, 16), torch.randn(16, 32), torch.randn(32)
    g = _run(lambda a, w, b: F.gelu(a @ w + b), a, w, b, rtol=1e-5, atol=1e-5)
    assert g.num_kernels == 1 and len(g.externs) == 1


def test_triton_source_is_logged():
    records = []

    class H(logging.Handler):
        def emit(self, r):
            records.append(r.getMessage())

    lg = logging.getLogger("janus_frame.kernels")
    h, old = H(), lg.level
    lg.addHandler(h)
    lg.setLevel(logging.DEBUG)
    try:
        _run(lambda x: torch.tanh(x) + 1, torch.randn(10))
    finally:
        lg.removeHandler(h)
        lg.setLevel(old)
    assert any("@triton.jit" in r for r in records)


def test_triton_welford_variance_persistent_and_looped():
    def f(x, y):
        return torch.var_mean(x, -1), y.var(-1), y.std(0)

    x, y = torch.randn(4, 33, device=DEVICE) + 100.0, torch.randn(3, 1500, device=DEVICE) + 100.0
    out = jcompile(f)(x, y)
    assert graphs()[-1].backend == "triton"
    ref = f(x.double(), y.double())
    for a, e in zip(tuple(out[0]) + out[1:], tuple(ref[0]) + ref[1:]):
        torch.testing.assert_close(a.double(), e, rtol=1e-3, atol=1e-3)


def test_triton_symbolic_sizes_and_symbolic_float_scalar():
    # batch norm in training over a dynamic batch: its running variance uses
    # the symbolic float n / (n - 1)
    import janus_frame as jf

    mean, var = torch.zeros(4, device=DEVICE), torch.ones(4, device=DEVICE)
    rm, rv = mean.clone(), var.clone()

    def f(x, m, v):
        return F.batch_norm(x, m, v, training=True, momentum=0.1) * 2

    cf = jf.compile(f, dynamic=True)
    for n in (3, 5):
        x = torch.randn(n, 4, device=DEVICE)
        assert_close(cf(x, mean, var), f(x, rm, rv), rtol=1e-5, atol=1e-6)
        assert_close(mean, rm, rtol=1e-5, atol=1e-6)
        assert_close(var, rv, rtol=1e-5, atol=1e-6)
    g = graphs()[-1]
    assert g.backend == "triton" and g.prog.symbols
    jf.reset()


# ---------------------------------------------------------------- block sizes
CASES = [  # (function, inputs): a pointwise kernel, a persistent and a looped row reduction
    (lambda x: torch.tanh(x) * 2 + x, (torch.randn(3000, device=DEVICE),)),
    (lambda x: torch.softmax(x, -1), (torch.randn(12, 100, device=DEVICE),)),
    (lambda x: (x.sum(-1), torch.softmax(x, -1)), (torch.randn(3, 1500, device=DEVICE),)),
]


@pytest.fixture
def tune(monkeypatch, tmp_path):
    """Tuning on (the interpreter is timed too), in a cache directory of its own."""
    from janus_frame.config import config

    monkeypatch.setattr(config, "triton_autotune", "always")
    monkeypatch.setattr(config, "cache_dir", str(tmp_path))
    return tmp_path


def _kernels():
    return [k for g in graphs() for k in g.triton_kernels.values()]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_triton_every_block_config_matches_eager(case):
    f, args = CASES[case]
    want = f(*args)
    cf = jcompile(f)
    assert_close(cf(*args), want, rtol=1e-4, atol=1e-5)
    kernels = _kernels()
    assert kernels and all(len(k.configs) >= 2 for k in kernels)
    for k in kernels:
        default = k._chosen[()]
        for cfg in k.configs:
            k._chosen[()] = cfg
            assert_close(cf(*args), want, rtol=1e-4, atol=1e-5)
        k._chosen[()] = default


def test_triton_fastest_config_is_chosen(tune, monkeypatch):
    from janus_frame.backends.janus.codegen import triton as CT

    f, args = CASES[2]
    for pick in (lambda c: c[0], lambda c: -c[0], lambda c: c[1] * 10000 + c[0]):
        for p in tune.glob("triton/*.tune.json"):
            p.unlink()
        torch._dynamo.reset()
        monkeypatch.setattr(CT, "measure", lambda launch, a, cfg, dev, _p=pick: float(_p(cfg)))
        assert_close(jcompile(f)(*args), f(*args), rtol=1e-4, atol=1e-5)
        for k in _kernels():
            best = min(k.configs, key=lambda c: (pick(c), k.configs.index(c)))
            assert list(k._chosen.values()) == [best]
        reset_stats()


def test_triton_tuning_is_kept_on_disk(tune, monkeypatch):
    import json

    from janus_frame.backends.janus.codegen import triton as CT

    timed = []
    real = CT.measure

    def spy(launch, args, cfg, dev, reps=3):
        timed.append(cfg)
        return real(launch, args, cfg, dev, reps=1)

    monkeypatch.setattr(CT, "measure", spy)
    f, args = CASES[1]
    assert_close(jcompile(f)(*args), f(*args))
    k = _kernels()[0]
    assert timed == k.configs  # every configuration timed once, the first call
    files = list(tune.glob("triton/*.tune.json"))
    assert len(files) == 1
    saved = json.loads(files[0].read_text())
    assert list(saved.values()) == [list(k._chosen[()])]
    # a new compilation (as in another process) reads the choice back
    torch._dynamo.reset()

    def refuse(*a, **kw):
        raise AssertionError("timed again")

    monkeypatch.setattr(CT, "measure", refuse)
    assert_close(jcompile(f)(*args), f(*args))
    assert list(_kernels()[-1]._chosen.values()) == [k._chosen[()]]


def test_triton_in_place_kernels_are_not_timed(tune, monkeypatch):
    from janus_frame.backends.janus.codegen import triton as CT

    def refuse(*a, **kw):
        raise AssertionError("an in-place kernel ran more than once")

    monkeypatch.setattr(CT, "measure", refuse)

    def f(x, y):
        x.mul_(2).add_(1)
        return y * 3

    x, y = torch.randn(300, device=DEVICE), torch.randn(300, device=DEVICE)
    x0 = x.clone()
    out = jcompile(f)(x, y)
    assert_close(out, y * 3)
    assert_close(x, x0 * 2 + 1)  # updated exactly once
    assert any(not k.rerunnable for k in _kernels())


def test_triton_auto_tunes_on_cuda_only(monkeypatch):
    from janus_frame.backends.janus.codegen import triton as CT
    from janus_frame.config import config

    assert config.triton_autotune in ("auto", "always", "off")
    if DEVICE == "cuda":
        pytest.skip("the CPU half of the rule (CUDA kernels are timed in the tests above)")
    monkeypatch.setattr(config, "triton_autotune", "auto")
    monkeypatch.setattr(CT, "measure", lambda *a, **kw: pytest.fail("timed on CPU"))
    f, args = CASES[0]
    assert_close(jcompile(f)(*args), f(*args))
    k = _kernels()[0]
    assert list(k._chosen.values()) == [k.configs[0]]


def test_triton_autotune_setting_is_checked(monkeypatch):
    from janus_frame.config import Config

    monkeypatch.setenv("JANUS_FRAME_TRITON_AUTOTUNE", "sometimes")
    with pytest.raises(ValueError, match="JANUS_FRAME_TRITON_AUTOTUNE"):
        Config()


def test_triton_tuning_keyed_on_the_sizes_a_kernel_reads(tune, monkeypatch):
    # two dynamic sizes; the kernel over y reads only y's: a new x size
    # must not time it again
    import janus_frame as jf
    from janus_frame.backends.janus.codegen import triton as CT

    timed = []
    monkeypatch.setattr(CT, "measure", lambda launch, a, cfg, dev: timed.append(cfg) or 1.0)

    def f(x, y):
        return x * 2, torch.tanh(y) + 1

    cf = jf.compile(f, dynamic=True)
    for n in (5, 6, 7):
        x, y = torch.randn(n, device=DEVICE), torch.randn(9, device=DEVICE)
        assert_close(cf(x, y), f(x, y))
    ky = [k for k in _kernels() if "_jf_tanh(" in k.source.split("@triton.jit")[-1]]
    kx = [k for k in _kernels() if k not in ky]
    assert ky and all(len(k._chosen) == 1 for k in ky)
    assert kx and sum(len(k._chosen) for k in kx) == 3  # x's kernel: one choice per size


def test_triton_tuning_survives_a_read_only_cache(tune, monkeypatch):
    from janus_frame.backends.janus.codegen import triton as CT

    monkeypatch.setattr(CT, "measure", lambda launch, a, cfg, dev: float(cfg[0]))

    def refuse(*a, **kw):
        raise PermissionError("read-only")

    monkeypatch.setattr(CT.json, "dump", refuse)
    f, args = CASES[0]
    assert_close(jcompile(f)(*args), f(*args))
    k = _kernels()[0]
    assert list(k._chosen.values()) == [min(k.configs)]
    assert not list(tune.glob("triton/*.tune.json*"))  # nothing half-written left behind


@pytest.mark.parametrize("f", [
    lambda x, s: (x * 2).sum(),  # a reduction to a 0-d result
    lambda x, s: x.mean() + x.amax(),
    lambda x, s: x * s + s.exp(),  # a 0-d input read by every element
    lambda x, s: F.cross_entropy(x, torch.tensor([1, 2, 0, 5])),
])
def test_triton_zero_dimensional_results_and_inputs(f):
    _run(f, torch.randn(4, 6), torch.tensor(0.5), rtol=1e-5, atol=1e-5)
