"""IR printer/verifier, build cache, runtime wrapper and dynamic sizes."""
import os
import subprocess
import sys

import pytest
import torch

from conftest import assert_close, graphs, jcompile
from janus_frame.backends.janus import ir, verify
from janus_frame.backends.janus.build import Build, cache_dir, cache_key


def _prog():
    p = ir.Program()
    a = p.new_buffer("in", (4, 8), (8, 1), torch.float32, "input", index=0)
    p.inputs = [a]
    out = p.new_buffer("out", (4, 8), (8, 1), torch.float32, "output")
    e = ir.E(ir.Op.EXP, torch.float32, (ir.load(a.name, ir.Affine(0, (("v0", 8), ("v1", 1))), torch.float32),))
    p.nodes.append(ir.Pointwise("n0", out, (4, 8), e))
    p.outputs = [("buf", ir.BufArg(out, out.shape, out.strides, 0))]
    return p, a, out


def test_verifier_accepts_valid_and_printer_shows_nodes():
    p, a, out = _prog()
    verify.loop_ir(p)
    text = p.format()
    assert "pointwise[4, 8]" in text and "exp(" in text


@pytest.mark.parametrize("bad", ["oob", "foreign_var", "dtype", "unwritten", "double_write", "op_name"])
def test_verifier_rejects_broken_programs(bad):
    p, a, out = _prog()
    n = p.nodes[0]
    if bad == "oob":
        n.expr = ir.load(a.name, ir.Affine(1, (("v0", 8), ("v1", 1))), torch.float32)
    elif bad == "foreign_var":
        n.expr = ir.load(a.name, ir.Affine(0, (("r0", 1),)), torch.float32)
    elif bad == "dtype":
        n.expr = ir.E(ir.Op.ADD, torch.float32, (n.expr, ir.const(1, torch.int64)))
    elif bad == "unwritten":
        t = p.new_buffer("buf", (4, 8), (8, 1), torch.float32, "temp")
        n.expr = ir.load(t.name, n.store, torch.float32)
    elif bad == "op_name":
        n.expr = ir.E("exp", torch.float32, n.expr.args)  # a name, not an ir.Op
    else:
        p.nodes.append(ir.Pointwise("n1", out, (4, 8), n.expr))
    with pytest.raises(verify.IRError):
        verify.loop_ir(p)


def test_cache_key_covers_source_and_flags():
    assert cache_key("int x;") != cache_key("int y;")
    assert cache_key("int x;", ["-O2"]) != cache_key("int x;", ["-O3"])


def test_build_is_cached_on_disk_and_reused():
    src = "int janus_probe_%d(void) { return 7; }\n" % os.getpid()
    b = Build(src)
    assert not b.cached
    assert b.lib()["janus_probe_%d" % os.getpid()]() == 7
    assert os.path.exists(b.path) and b.path.startswith(cache_dir())
    b2 = Build(src)
    assert b2.cached and b2.path == b.path
    # its temporary source is gone (other processes may be building theirs
    # in the same folder: only this build's key is looked at)
    key = os.path.basename(b.path).split(".")[0]
    leftovers = [f for f in os.listdir(cache_dir()) if f.endswith(".c") and f.startswith(key)]
    assert not leftovers


def test_concurrent_processes_build_same_key_safely(tmp_path):
    script = (
        "import os, sys\n"
        "from janus_frame.backends.janus.build import Build\n"
        "b = Build('int janus_conc(void){return 42;}\\n')\n"
        "sys.exit(0 if b.lib().janus_conc() == 42 else 1)\n")
    env = dict(os.environ, JANUS_FRAME_CACHE_DIR=str(tmp_path))
    procs = [subprocess.Popen([sys.executable, "-c", script], env=env) for _ in range(4)]
    assert all(p.wait() == 0 for p in procs)
    assert len([f for f in os.listdir(tmp_path) if f.endswith(".so")]) == 1


def test_second_compile_of_same_graph_hits_cache():
    def f(x):
        return torch.sigmoid(x) * 3 + 1

    x = torch.randn(8, 8)
    jcompile(f)(x)
    g1 = graphs()[-1]
    torch._dynamo.reset()
    jcompile(f)(x)
    g2 = graphs()[-1]
    assert g1.build.key == g2.build.key and g2.build.cached


def test_generated_source_is_also_valid_cpp():
    def f(x):
        return torch.softmax(x, -1) + torch.erf(x).sum(0)

    x = torch.randn(8, 16)
    jcompile(f)(x)
    src = graphs()[-1].source
    b = Build(src, cpp=True)
    b.wait()


def test_per_call_path_is_one_ctypes_call_per_segment():
    def f(x):
        y = x
        for i in range(10):
            y = y * 1.01 + 0.5
        return y

    x = torch.randn(4)
    cf = jcompile(f)
    assert_close(cf(x), f(x))
    g = graphs()[-1]
    assert g.num_kernels == 1
    assert g._wrapper_src.count("_seg") == 1


def test_dynamic_sizes_are_kernel_arguments():
    def f(x):
        return torch.softmax(x, -1) * 2 + x.sum(0)

    cf = jcompile(f, dynamic=True)
    for n in (5, 9, 17):
        x = torch.randn(n, n + 3)
        assert_close(cf(x), f(x), rtol=1e-5, atol=1e-6)
    g = graphs()[-1]
    assert g.prog.symbols, "expected symbolic sizes"
    src = g.source
    # sizes are parameters of the kernels, not literals baked into the loops
    for s, _ in g.prog.symbols:
        assert f"const int64_t {s}" in src
    assert len(graphs()) == 1  # one compile served every size


def test_temps_of_static_and_symbolic_size_never_share_workspace():
    # a dynamic batch: the softmax rows are a temp of symbolic size, the
    # column sums one of static size planned after it while it is live; the
    # static block used to be placed where the symbolic region began
    def f(x):
        t = torch.softmax(x, 1)
        s = (x * 2).sum(0)
        return (t * s).sum(0) + torch.tanh(t).sum(0) * s, s.exp().sum()

    cf = jcompile(f)
    for n in (5, 9):
        x = torch.randn(n, 16)
        torch._dynamo.mark_dynamic(x, 0)
        assert_close(cf(x), f(x), rtol=1e-5, atol=1e-5)
    g = graphs()[-1]
    sizes = [g.prog.buffers[b].numel for b in g.sched.arena]
    assert any(isinstance(n, int) for n in sizes) and not all(isinstance(n, int) for n in sizes)
    verify.schedule(g.sched)  # no overlap of live buffers


def test_hand_built_fx_graph_single_output_and_symbolic_trace():
    from janus_frame.backends.janus import janus_backend

    class M(torch.nn.Module):
        def forward(self, x, y):
            return torch.nn.functional.layer_norm(x + y, (16,)) * torch.sigmoid(y)

    gm = torch.fx.symbolic_trace(M())
    x, y = torch.randn(4, 16), torch.randn(4, 16)
    fn = janus_backend(gm, [x, y])
    out = fn(x, y)
    assert isinstance(out, torch.Tensor)
    assert_close(out, M()(x, y), rtol=1e-5, atol=1e-5)
    assert graphs()[-1].num_kernels == 1


_MALLOC_PROBE = """
import torch
from janus_frame.backends.janus import janus_backend
from janus_frame.backends.janus.runtime import graph as runtime
f = torch.compile(lambda x: (x * 2).exp(), backend=janus_backend)
f(torch.randn(8))
heap = [l.split()[0] for l in open('/proc/self/maps') if l.rstrip().endswith('[heap]')]
lo, hi = (int(v, 16) for v in heap[0].split('-')) if heap else (0, 0)
t = torch.empty(1 << 20)  # 4 MiB: mmapped under glibc's initial threshold
print(runtime.malloc_state, lo <= t.data_ptr() < hi)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc")
@pytest.mark.parametrize("setting", ["1", "0"])
def test_malloc_thresholds_pinned_once_the_c_backend_runs(setting):
    env = dict(os.environ, JANUS_FRAME_MALLOC_TUNING=setting)
    out = subprocess.run([sys.executable, "-c", _MALLOC_PROBE], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    if setting == "0":
        assert out[0] == "disabled"
    else:
        # a block of a few MiB now comes from the heap, not a fresh mapping
        assert out == ["pinned", "True"]


def test_lifetimes_allocate_late_and_drop_early():
    from janus_frame.backends.janus.runtime import graph as runtime

    body = ["    _seg0(in0.data_ptr(), buf1.data_ptr())",
            "    ext2 = _op_n1(buf1, in0)",
            "    _seg1(ext2.data_ptr(), buf3.data_ptr(), out4.data_ptr())",
            "    ext5 = _op_n2(buf3)",
            "    return (out4, ext5)"]
    deferred = {n: f"    {n} = _empty_strided((4,), (1,), dtype=_dt_float32)" for n in ("buf1", "buf3")}
    out = runtime._lifetimes(body, deferred, {"buf1", "buf3", "ext2", "ext5"})
    assert out == [deferred["buf1"], body[0], body[1], "    del buf1",
                   deferred["buf3"], body[2], "    del ext2", body[3], "    del buf3", body[4]]
    # a temp stored over a library result (its alias line), a restride, a view argument
    body = ["    ext2 = _op_n1(in0)",
            "    if ext2.stride() != (1, 4): ext2 = _restride(ext2, (1, 4))",
            "    buf3 = ext2",
            "    _seg0(buf3.data_ptr(), out4.data_ptr())",
            "    ext5 = _op_n2(buf3.as_strided((2, 2), (2, 1)))",
            "    return (out4, ext5)"]
    out = runtime._lifetimes(body, {}, {"ext2", "buf3", "ext5"})
    assert out == body[:3] + ["    del ext2", body[3], body[4], "    del buf3", body[5]]


def test_backward_wrapper_frees_what_it_no_longer_reads():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1, bias=False), torch.nn.BatchNorm2d(8),
                              torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3, padding=1, bias=False),
                              torch.nn.BatchNorm2d(8))
    x, r = torch.randn(2, 3, 8, 8), torch.randn(2, 8, 8, 8)
    want = torch.autograd.grad((net(x) * r).sum(), list(net.parameters()))
    got = torch.autograd.grad(jcompile(lambda x: (net(x) * r).sum())(x), list(net.parameters()))
    assert_close(got, want, rtol=1e-4, atol=1e-5)
    src = graphs()[-1]._wrapper_src  # the backward graph
    assert "\n    del " in src
    lines = src.split("\n")
    first_call = next(i for i, ln in enumerate(lines) if "_seg" in ln or "_op_" in ln)
    allocs = [i for i, ln in enumerate(lines) if "_empty_strided" in ln and ln.lstrip().startswith("buf")]
    assert allocs and max(allocs) > first_call  # a temp allocated after the first call


def test_outputs_allocated_on_the_graph_device_not_the_default_device():
    """The wrapper allocates outputs, temporaries and the workspace on the
    inputs' device, whatever the process's default device is."""
    def f(x):
        return torch.softmax(x * 2, dim=-1) + 1

    x = torch.randn(8, 16)
    cf = jcompile(f)
    expected = f(x)
    cf(x)  # compiled with the CPU as default device
    with torch.device("meta"):
        out = cf(x)
    assert out.device.type == "cpu"
    torch.testing.assert_close(out, expected)
