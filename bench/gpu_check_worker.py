"""One worker process of bench/gpu_check.py: a list of workloads under one
Triton tuning setting.

In:  ``python bench/gpu_check_worker.py --events FILE --workloads a,b --systems eager,janus_untuned,inductor
     [--dry-run] [--deadline EPOCH] [--inductor-rows a,b]``. The parent sets the environment:
     ``JANUS_FRAME_TRITON_AUTOTUNE`` (read when janus_frame is imported, so one
     setting per process), fresh ``JANUS_FRAME_CACHE_DIR`` / ``TRITON_CACHE_DIR`` /
     ``TORCHINDUCTOR_CACHE_DIR`` (cold first calls), ``TRITON_INTERPRET``.
Out: JSON lines appended to ``--events`` as results arrive (``hello``, then per
     workload ``start``, ``system`` (the whole result of one system, sent again
     whenever it grows), ``done`` or ``skip``), so a parent that kills this
     process at a timeout keeps everything already measured.

Per workload: eager first (the reference), then each system:
  1. first call, cold caches (compile, Triton compile, tuning);
  2. ``checks`` calls in all, outputs and then the state (parameters, buffers)
     compared with eager's; a leaf may differ by the workload's rtol, or by ten
     times what eager itself moves there when only its reduction order changes
     (the same steps on the CPU for a CUDA run, another thread count on a CPU);
  3. warm-up, then interleaved rounds (system order rotated): CUDA events around
     ``inner`` calls, median of the rounds; the host's enqueue time per call too
     (close to the GPU time: launch- or Python-bound);
  4. one call under torch.profiler: kernels launched per call and their summed time.
A workload whose error is a CUDA one (the context is lost after it) ends this
process with exit code 3: the parent starts a fresh one for the rest.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import statistics
import sys
import time
import traceback
import warnings
from typing import Any, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
for p in (REPO, HERE):
    if p not in sys.path:
        sys.path.insert(0, p)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from bench.measure import judge, leaf_errors  # noqa: E402
from bench.workloads.base import fresh_function  # noqa: E402

# the check's rows, most informative (and cheapest) first
WORKLOADS = ["pointwise_cheap", "pointwise_transcendental", "softmax", "layer_norm",
             "mlp", "resnet", "gpt", "lstm"]
CUDA_ERRORS = ("CUDA error", "illegal memory access", "device-side assert", "CUBLAS_STATUS",
               "cudaError", "CUDA_ERROR", "unspecified launch failure")


# ----------------------------------------------------------------- workloads
@dataclasses.dataclass
class Inst:
    step: Callable
    args: Callable[[int], tuple]
    state: Callable[[], Any]


@dataclasses.dataclass
class Spec:
    name: str
    title: str
    kind: str            # infer | train
    rtol: float          # fp32: 1e-5 pointwise, 1e-4 through reductions and training
    size: str
    build: Callable[[str], Inst]   # device -> a fresh instance (same seed every time)
    traffic: int = 0     # compulsory bytes per call (inference rows): GB/s


def softmax_rows(x):
    return torch.softmax(x, -1)


def layer_norm_rows(x, w, b):
    return F.layer_norm(x, (x.shape[-1],), w, b)


def _infer(name, title, fn, make_inputs, rtol, size, traffic):
    def build(device):
        g = torch.Generator().manual_seed(9)
        tensors = tuple(t.to(device) for t in make_inputs(g))
        return Inst(fresh_function(fn), lambda i: tensors, lambda: {})

    return Spec(name, title, "infer", rtol, size, build, traffic)


def _train(cls, dry):
    w = cls(quick=dry)

    def build(device):
        inst = w.instance()
        cells = [c.cell_contents for c in (inst.step.__closure__ or ())]
        modules = [v for v in cells if isinstance(v, torch.nn.Module)]
        if not modules:
            raise RuntimeError(f"{w.name}: no module found in the step's closure")
        for m in modules:
            m.to(device)  # parameters keep their identity: the optimizer still holds them
        for opt in (v for v in cells if isinstance(v, torch.optim.Optimizer)):
            for group in opt.param_groups:
                for p in group["params"]:
                    if p.device.type != torch.device(device).type:
                        raise RuntimeError(f"{w.name}: an optimizer parameter stayed on {p.device}")
        batches = [tuple(a.to(device) if isinstance(a, torch.Tensor) else a for a in inst.args(i))
                   for i in range(8)]
        return Inst(inst.step, lambda i: batches[i % len(batches)], inst.state)

    return Spec(w.name, w.title, "train", w.rtol, w.size, build)


def make_spec(name: str, dry: bool) -> Spec:
    from bench.workloads import pointwise
    from bench.workloads.gpt import GPTTrain
    from bench.workloads.lstm import LSTMTrain
    from bench.workloads.mlp import MLPTrain
    from bench.workloads.resnet import ResNetTrain

    n = 64 if dry else 2048
    rows, cols = (8, 1500) if dry else (4096, 4096)  # dry: still past one block (a looped row)
    if name in ("pointwise_cheap", "pointwise_transcendental"):
        fn = pointwise.chain_cheap if name == "pointwise_cheap" else pointwise.chain_transcendental
        kind = "cheap ops" if name == "pointwise_cheap" else "tanh/sigmoid/exp/sqrt/log1p/erf"
        return _infer(name, f"20-op pointwise chain, {kind} (inference)", fn,
                      lambda g: (torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)),
                      1e-5, f"{n}x{n} fp32, 2 inputs", 3 * n * n * 4)
    if name == "softmax":
        return _infer(name, "softmax over rows (inference)", softmax_rows,
                      lambda g: (torch.randn(rows, cols, generator=g) * 4,), 1e-4,
                      f"{rows}x{cols} fp32", 2 * rows * cols * 4)
    if name == "layer_norm":
        return _infer(name, "layer norm over rows, affine (inference)", layer_norm_rows,
                      lambda g: (torch.randn(rows, cols, generator=g) * 3 + 1,
                                 torch.randn(cols, generator=g), torch.randn(cols, generator=g)),
                      1e-4, f"{rows}x{cols} fp32", 2 * rows * cols * 4)
    cls = {"mlp": MLPTrain, "resnet": ResNetTrain, "gpt": GPTTrain, "lstm": LSTMTrain}[name]
    return _train(cls, dry)


# ------------------------------------------------------------------- helpers
class Events:
    def __init__(self, path):
        self.f = open(path, "a", buffering=1)

    def send(self, **ev):
        ev["time"] = round(time.time(), 3)
        self.f.write(json.dumps(_clean(ev)) + "\n")
        self.f.flush()


def _clean(x):
    if isinstance(x, float):
        return x if math.isfinite(x) else str(x)
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, (str, int, bool)) or x is None:
        return x
    return str(x)


def _reason(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}".strip()
    return text if len(text) <= 600 else text[:600] + " ..."


def _cpu(v):
    """A detached CPU copy (kept while the steps go on; compared on the CPU)."""
    if isinstance(v, torch.Tensor):
        return v.detach().to("cpu", copy=True)
    if isinstance(v, (list, tuple)):
        return [_cpu(x) for x in v]
    if isinstance(v, dict):
        return {k: _cpu(x) for k, x in v.items()}
    return v


def _sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def _janus_stats():
    from janus_frame.backends.janus import stats

    return stats


def _hook_counters() -> dict:
    """Frame-hook counters where janus_frame has them (frames compiled after
    the first call are recompiles); absent, never invented."""
    try:
        from janus_frame import hook

        st = hook.stats
        return {k: float(getattr(st, k)) for k in ("frames_compiled", "frames_failed", "frames_skipped")
                if hasattr(st, k)}
    except Exception:  # noqa: BLE001
        return {}


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.msgs = []

    def emit(self, record):
        try:
            self.msgs.append(record.getMessage())
        except Exception:  # noqa: BLE001
            pass


# ------------------------------------------------------------------- systems
def compile_system(name: str, step: Callable, dry: bool, backend_only: bool):
    """(callable, frontend) for a system; janus under the interpreter runs
    inside force_triton() (CPU tensors get Triton kernels)."""
    if name.startswith("eager"):
        return step, None
    if name == "inductor":
        return torch.compile(step), "dynamo"
    import janus_frame as jf

    if name == "dynamo+janus" or backend_only:
        fn, frontend = torch.compile(step, backend=jf.backend), "dynamo"
    else:
        fn, frontend = jf.compile(step), "janus"
    if not dry:
        return fn, frontend
    from janus_frame.backends.janus import force_triton

    def interpreted(*args):
        with force_triton():
            return fn(*args)

    return interpreted, frontend


class Run:
    """One system on one workload: its instance, callable and result."""

    def __init__(self, name, spec, device, dry, backend_only):
        self.name = name
        self.spec = spec
        self.device = device
        self.calls = 0
        self.kernel_names = None
        self.res: dict[str, Any] = {"status": "running", "notes": []}
        self.inst = spec.build(device)
        self.fn, self.frontend = compile_system(name, self.inst.step, dry, backend_only)
        if self.frontend:
            self.res["frontend"] = self.frontend

    @property
    def alive(self):
        return self.res["status"] in ("running", "ok")

    def call(self):
        out = self.fn(*self.inst.args(self.calls))
        self.calls += 1
        return out

    def fail(self, status, e):
        self.res["status"] = status
        self.res["reason"] = e if isinstance(e, str) else _reason(e)
        if isinstance(e, BaseException):
            self.res["traceback"] = "".join(traceback.format_exception(e))[-3000:]


def first_calls(r: Run, checks: int):
    """First call (timed, cold) and the checked calls; outputs and final state on the CPU."""
    is_janus = r.name.startswith("janus") or r.name == "dynamo+janus"
    stats = _janus_stats() if is_janus else None
    g0 = stats.compiled if stats else 0  # graphs are numbered (.seq) in compile order
    f0 = len(stats.fallbacks) if stats else 0
    h0 = _hook_counters() if r.frontend == "janus" else {}
    collect = _Collect()
    lg = logging.getLogger("janus_frame")
    lg.addHandler(collect)
    outs = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _sync(r.device)
            t = time.perf_counter()
            outs.append(_cpu(r.call()))
            _sync(r.device)
            r.res["first_call_s"] = time.perf_counter() - t
            if stats is not None:
                r.res["graphs_first_call"] = stats.compiled - g0
            t = time.perf_counter()
            outs.append(_cpu(r.call()))
            _sync(r.device)
            r.res["second_call_s"] = time.perf_counter() - t
            for _ in range(2, checks):
                outs.append(_cpu(r.call()))
            state = _cpu(r.inst.state())
    finally:
        lg.removeHandler(collect)
    msgs = []
    for m in [str(w.message) for w in caught] + collect.msgs:
        m = m[:400]
        if m not in msgs and len(msgs) < 6:
            msgs.append(m)
    if msgs:
        r.res["warnings"] = msgs
    if stats is not None:
        graphs = [g for g in stats.graphs if g.seq >= g0]
        r.res["graphs"] = len(graphs)
        r.res["graph_backends"] = sorted({str(getattr(g, "backend", "?")) for g in graphs})
        r.res["kernels_per_graph"] = [int(getattr(g, "num_kernels", 0)) for g in graphs]
        r.res["externs_per_graph"] = [len(getattr(g, "externs", ()) or ()) for g in graphs]
        r.res["triton_kernels"] = sum(len(getattr(g, "triton_kernels", {}) or {}) for g in graphs)
        r.kernel_names = {str(n) for g in graphs for n in (getattr(g, "triton_kernels", {}) or {})}
        cs = [getattr(g, "compile_seconds", None) for g in graphs]
        if all(isinstance(c, float) for c in cs):
            r.res["backend_compile_s"] = sum(cs)
        fallbacks = stats.fallbacks[f0:]
        if not graphs:
            r.fail("fallback", "no graph reached the fusing backend: the step ran eagerly"
                   + (f" ({msgs[0]})" if msgs else ""))
        elif fallbacks:
            r.fail("partial", f"{len(fallbacks)} graph(s) ran eagerly after an internal error: {fallbacks[0][:300]}")
        elif r.device == "cuda" and r.res["graph_backends"] != ["triton"]:
            r.res["notes"].append(f"graph backends on CUDA: {r.res['graph_backends']}")
    if h0:
        h1 = _hook_counters()
        r.res["hook_first_calls"] = {k: h1.get(k, 0.0) - v for k, v in h0.items()}
    return outs, state


def check(r: Run, outs, state, ref, noise):
    errs = leaf_errors(outs, ref[0], "output")
    errs.update(leaf_errors(state, ref[1], "state"))
    verdict = judge(errs, r.spec.rtol, noise)
    r.res["correct"] = {"calls": len(outs), "rtol": r.spec.rtol, **verdict}
    if not verdict["ok"] and r.alive:
        r.fail("WRONG", f"after {len(outs)} calls {verdict['where']} differs from eager by "
                        f"{verdict['max_rel_err']:.3g} (relative; allowed {verdict['allowed']:.3g})")


def one_sample(r: Run, inner: int):
    """(GPU seconds per call from CUDA events, host seconds per call)."""
    if r.device == "cuda":
        torch.cuda.synchronize()
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        h = time.perf_counter()
        for _ in range(inner):
            r.call()
        h = time.perf_counter() - h
        e1.record()
        e1.synchronize()
        return e0.elapsed_time(e1) / 1e3 / inner, h / inner
    h = time.perf_counter()
    for _ in range(inner):
        r.call()
    h = time.perf_counter() - h
    return h / inner, h / inner


LAUNCH_APIS = ("cudaLaunchKernel", "cuLaunchKernel", "cuLaunchKernelEx", "cudaLaunchKernelExC",
               "cudaLaunchCooperativeKernel", "cudaGraphLaunch")


def profile_call(r: Run):
    """Kernels per call from one profiled call (CUDA kernels; memcpy/memset
    apart), the launch API calls the host made, and the kernels' summed time."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if r.device == "cuda" else [])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with profile(activities=acts) as prof:
            r.call()
            _sync(r.device)
        events = list(prof.events())
    dev = [e for e in events if e.device_type == DeviceType.CUDA]
    kernels = [e for e in dev if not e.name.startswith(("Memcpy", "Memset", "[memcpy", "[memset"))]
    apis = [e for e in events if e.device_type == DeviceType.CPU and e.name.startswith(LAUNCH_APIS)]
    out = {"launch_api_calls": len(apis), "memcpy_memset": len(dev) - len(kernels)}
    if r.device == "cuda":
        out["kernels_per_call"] = len(kernels)
        # generated kernels (janus: its kernel names; Inductor: triton_*) apart from library ones
        names = getattr(r, "kernel_names", None)
        gen = [e for e in kernels if (e.name in names if names else e.name.startswith("triton"))]
        out["generated_kernels_per_call"] = len(gen)
        out["library_kernels_per_call"] = len(kernels) - len(gen)
        if not kernels and apis:  # no device records came back: count the host's launch calls
            out["kernels_per_call"] = len(apis)
            out["kernels_counted_from"] = "launch API calls (the profiler returned no kernel records)"
        out["kernel_ms"] = sum(e.time_range.elapsed_us() for e in kernels) / 1e3
        top: dict[str, float] = {}
        for e in kernels:
            top[e.name] = top.get(e.name, 0.0) + e.time_range.elapsed_us()
        out["top_kernels_us"] = [[k[:80], round(v, 1)] for k, v in
                                 sorted(top.items(), key=lambda kv: -kv[1])[:5]]
    return out


# ---------------------------------------------------------------------- main
def probe(name, device, dry, backend_only) -> float:
    """Compile and run a trivial function: start-up (imports, Inductor's
    workers, Triton's launcher build) paid before the first workload."""
    def start_up_probe(x):
        return torch.sin(x * 2.0) + 1.0

    fn, _ = compile_system(name, fresh_function(start_up_probe), dry, backend_only)
    x = torch.arange(64, dtype=torch.float32, device=device)
    t = time.perf_counter()
    out = fn(x)
    _sync(device)
    dt = time.perf_counter() - t
    torch.testing.assert_close(out, start_up_probe(x), rtol=1e-5, atol=1e-5)
    return dt


def run_workload(spec: Spec, systems, ev: Events, device, dry, backend_only, deadline):
    checks = 2 if spec.kind == "infer" else 3
    runs: list[Run] = []

    def send(r):
        ev.send(event="system", workload=spec.name, system=r.name, result=r.res)

    def phase(name, what):
        ev.send(event="phase", workload=spec.name, system=name, phase=what)

    def start(name):
        phase(name, "first calls")
        try:
            r = Run(name, spec, device, dry, backend_only)
        except Exception as e:  # noqa: BLE001
            r = Run.__new__(Run)
            r.name, r.spec, r.device, r.calls, r.res = name, spec, device, 0, {"status": "running", "notes": []}
            r.fail("crashed", e)
            send(r)
            return r
        runs.append(r)
        try:
            outs, state = first_calls(r, checks)
        except Exception as e:  # noqa: BLE001
            r.fail("crashed", e)
            send(r)
            if any(s in str(e) for s in CUDA_ERRORS):
                raise
            return r
        r.outs, r.state = outs, state
        return r

    eager = start(systems[0])
    if not eager.alive:
        raise RuntimeError(f"eager failed: {eager.res.get('reason')}")
    ref = (eager.outs, eager.state)
    # eager's own noise: the same calls with another reduction order
    phase("eager", "noise reference")
    t = time.perf_counter()
    if device == "cuda":
        alt, threads = "cpu", torch.get_num_threads()
    else:
        alt, threads = "cpu", (1 if torch.get_num_threads() > 1 else 2)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        ainst = spec.build(alt)
        aouts = [_cpu(ainst.step(*ainst.args(i))) for i in range(len(eager.outs))]
        noise = leaf_errors(aouts, ref[0], "output")
        noise.update(leaf_errors(_cpu(ainst.state()), ref[1], "state"))
        del ainst
    finally:
        torch.set_num_threads(old)
    eager.res["status"] = "ok"
    eager.res["correct"] = {"reference": True, "calls": len(eager.outs), "rtol": spec.rtol,
                            "noise_from": f"eager on {alt}, {threads} threads",
                            "max_noise": max(noise.values(), default=0.0),
                            "noise_s": time.perf_counter() - t}
    send(eager)

    names = list(systems[1:])
    while names:
        name = names.pop(0)
        r = start(name)
        if r.alive and hasattr(r, "outs"):
            check(r, r.outs, r.state, ref, noise)
            if r.alive:
                r.res["status"] = "ok"
        send(r)
        if r.res["status"] == "fallback" and name.startswith("janus") and "dynamo+janus" not in systems:
            # the frontend did not hand the backend a graph: measure the backend through Dynamo's
            names.insert(0, "dynamo+janus")
            systems = list(systems) + ["dynamo+janus"]

    # warm-up and interleaved timing
    phase("all", "warm-up and timing")
    live = [r for r in runs if r.alive]
    rounds, target = (2, 0.0) if dry else (9, 0.025)
    inner = {}
    for r in live:
        try:
            for _ in range(1 if dry else 3):
                r.call()
            _sync(device)
            t = time.perf_counter()
            r.call()
            _sync(device)
            est = max(time.perf_counter() - t, 1e-6)
            inner[r.name] = max(1, min(2000, int(target / est))) if target else 1
        except Exception as e:  # noqa: BLE001
            r.fail("crashed", e)
            send(r)
    live = [r for r in live if r.alive]
    samples = {r.name: [] for r in live}
    for k in range(rounds):
        if time.time() > deadline:
            for r in live:
                r.res["notes"].append(f"timing cut short by the deadline after {k} rounds")
            break
        order = live[k % len(live):] + live[:k % len(live)] if live else []
        for r in order:
            if not r.alive:
                continue
            try:
                samples[r.name].append(one_sample(r, inner[r.name]))
            except Exception as e:  # noqa: BLE001
                r.fail("crashed", e)
                send(r)
    base = None
    for r in live:
        s = samples[r.name]
        if not r.alive or not s:
            continue
        gpu = [a for a, _ in s]
        host = [b for _, b in s]
        r.res.update({"ms": statistics.median(gpu) * 1e3, "min_ms": min(gpu) * 1e3,
                      "max_ms": max(gpu) * 1e3, "host_ms": statistics.median(host) * 1e3,
                      "samples": len(s), "inner": inner[r.name],
                      "timer": "cuda events" if device == "cuda" else "perf_counter"})
        if spec.traffic:
            r.res["GBps"] = spec.traffic / (r.res["ms"] / 1e3) / 1e9
        if r is eager:
            base = r.res["ms"]
        elif base:
            r.res["speedup_vs_eager"] = base / r.res["ms"]
        if r.frontend == "janus":
            h0 = _hook_counters()
        phase(r.name, "profiled call")
        try:
            r.res.update(profile_call(r))
        except Exception as e:  # noqa: BLE001 -- the profiler is a diagnostic: a note
            r.res["notes"].append(f"profiler: {_reason(e)}")
        if r.frontend == "janus" and h0:
            h1 = _hook_counters()
            fc = h1.get("frames_compiled", 0.0) - h0.get("frames_compiled", 0.0)
            if fc:
                r.res["notes"].append(f"{fc:.0f} frame(s) compiled again in steady state")
        send(r)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", required=True)
    ap.add_argument("--workloads", required=True)
    ap.add_argument("--systems", required=True)
    ap.add_argument("--inductor-rows", default=None, help="rows that also run Inductor (default: all)")
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--deadline", type=float, default=float("inf"))
    args = ap.parse_args(argv)
    ev = Events(args.events)
    dry = args.dry_run
    device = "cpu" if dry else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        ev.send(event="fatal", reason="no CUDA device (use --dry-run)")
        return 2
    # fp32 means fp32: no TF32 in cuDNN convolutions (eager's default) or matmuls
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    from gpu_check_stub import install

    backend_only = install(force=os.environ.get("JANUS_GPU_CHECK_STUB") == "1")
    systems = args.systems.split(",")
    hello: dict[str, Any] = {"pid": os.getpid(), "device": device,
                             "autotune": os.environ.get("JANUS_FRAME_TRITON_AUTOTUNE", "auto"),
                             "frontend": "janus" if not backend_only else "dynamo (backend only)",
                             "torch": torch.__version__, "python": sys.version.split()[0],
                             "threads": torch.get_num_threads()}
    if backend_only:
        hello["backend_only_reason"] = backend_only
    try:
        import triton

        hello["triton"] = triton.__version__
    except Exception as e:  # noqa: BLE001
        hello["triton"] = f"unavailable: {_reason(e)}"
    if device == "cuda":
        p = torch.cuda.get_device_properties(0)
        hello.update(gpu=p.name, capability=f"{p.major}.{p.minor}", sms=p.multi_processor_count,
                     gpu_mem_gib=round(p.total_memory / 2**30, 1), cuda=torch.version.cuda)
        a = torch.empty(256 << 20, dtype=torch.float32, device="cuda")
        b = torch.empty_like(a)
        for _ in range(3):
            b.copy_(a)
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        for _ in range(10):
            b.copy_(a)
        e1.record()
        e1.synchronize()
        hello["copy_GBps"] = round(2 * a.numel() * 4 * 10 / (e0.elapsed_time(e1) / 1e3) / 1e9, 1)
        del a, b
    rows = args.workloads.split(",")
    ind_rows = set(args.inductor_rows.split(",")) if args.inductor_rows is not None else set(rows)
    startup = {}
    for name in systems[1:]:
        if name == "inductor" and not (ind_rows & set(rows)):
            continue
        try:
            startup[name] = probe(name, device, dry, backend_only)
        except Exception as e:  # noqa: BLE001 -- the workloads say more
            startup[name] = f"failed: {_reason(e)}"
    hello["startup_s"] = startup
    ev.send(event="hello", **hello)

    for i, name in enumerate(rows):
        if time.time() > args.deadline - (5 if dry else 15):
            for rest in rows[i:]:
                ev.send(event="skip", workload=rest, reason="time budget spent before it started")
            break
        spec = make_spec(name, dry)
        ev.send(event="start", workload=name, size=spec.size, title=spec.title, kind=spec.kind,
                rtol=spec.rtol)
        sys_here = [s for s in systems if s != "inductor" or name in ind_rows]
        try:
            run_workload(spec, sys_here, ev, device, dry, backend_only, args.deadline)
        except Exception as e:  # noqa: BLE001
            ev.send(event="error", workload=name, reason=_reason(e),
                    traceback="".join(traceback.format_exception(e))[-3000:])
            if any(s in str(e) for s in CUDA_ERRORS):
                ev.send(event="done", workload=name)
                return 3  # the CUDA context is lost: the parent goes on in a fresh process
        ev.send(event="done", workload=name)
        if device == "cuda":
            torch.cuda.empty_cache()
    ev.send(event="exit")
    return 0


if __name__ == "__main__":
    sys.exit(main())
