"""Runs one workload under every requested system, in this (fresh) process.

In:  ``python -m bench.worker --workload NAME --systems a,b,... [--quick]
     [--threads N] [--cache-root DIR]``; started by bench/run.py, one process
     per workload so start-up costs, caches and peak memory are per workload.
Out: JSON lines on the original stdout: ``{"event": "progress", ...}`` while
     it runs and one ``{"event": "result", ...}`` per finished phase of a
     system, then ``{"event": "done", ...}``. Anything the workload or a
     compiler prints goes to stderr, so it cannot corrupt the event stream.

Phases, for each system in turn unless noted:
  probe     compile a trivial function: start-up cost, and "can it run at all"
  correct   first call (cold compile; cache directory fresh for this process
            and system) and 4 more steps; losses and the state after step 5
            are compared with eager
  warmup    a few more steps
  timing    interleaved rounds over all systems (order rotated every round)
  memory    one step under the profiler: peak tensor memory of a step
  var       the variable-size run: every size once, then every size again
            (losses compared with eager; frames compiled counted in both passes)
  explain   graphs / breaks from jf.explain or torch._dynamo.explain on a fresh copy
  warm      frontend caches reset, fresh copy: first-call time in a warm process
            (skipped with --quick)
Every system runs the same number of steps before each comparison, so all
copies of the model stay in step with eager. A phase that raises marks the
system n/a with the reason and the system takes no further part.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
import sys
import time
import traceback
import warnings


class Events:
    """The JSON-lines channel to the parent (a private dup of stdout)."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        fd = os.dup(1)
        self.out = os.fdopen(fd, "w", buffering=1)
        # From now on fd 1 is stderr: prints from user code and compilers
        # cannot interleave with the event stream.
        os.dup2(2, 1)
        sys.stdout = sys.stderr

    def send(self, **event) -> None:
        event["t"] = round(time.perf_counter() - self.t0, 3)
        self.out.write(json.dumps(event, default=_json_default) + "\n")
        self.out.flush()



def _double(x):
    import torch

    if isinstance(x, torch.Tensor) and x.is_floating_point():
        return x.double()
    if isinstance(x, (list, tuple)):
        return type(x)(_double(v) for v in x)
    if isinstance(x, dict):
        return {k: _double(v) for k, v in x.items()}
    return x


def _float64_noise(w, n_check, ref) -> dict:
    """Per-leaf distance of float32 eager from the same steps in float64, the
    model built as usual and converted (empty for a workload without a
    model, or one that cannot run in float64)."""
    import torch

    from . import measure

    inst = w.instance()
    if getattr(inst, "model", None) is None:
        return {}
    old = torch.get_default_dtype()
    try:
        inst.model.double()
        torch.set_default_dtype(torch.float64)
        outs = [measure.snapshot(inst.step(*_double(inst.args(i)))) for i in range(n_check)]
        out = measure.leaf_errors(outs, ref.check_outs, "output")
        out.update(measure.leaf_errors(measure.snapshot(inst.state()), ref.check_state, "state"))
        return {k: v for k, v in out.items() if math.isfinite(v)}
    except Exception:  # noqa: BLE001 -- fixed to float32 inside: no such reference
        return {}
    finally:
        torch.set_default_dtype(old)

def _json_default(o):
    if isinstance(o, float) and not math.isfinite(o):
        return str(o)
    return str(o)


def _clean(x):
    """Make floats JSON-safe (inf/nan -> strings)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else str(x)
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def _reason(e: BaseException) -> str:
    msg = str(e).strip().splitlines()
    first = msg[0] if msg else ""
    return f"{type(e).__name__}: {first}"[:300]


class SystemRun:
    """Everything measured for one system in this workload."""

    def __init__(self, name: str, system) -> None:
        self.name = name
        self.system = system
        self.result: dict = {"system": name, "status": "ok", "reason": None, "notes": [],
                             "warnings": []}
        self.alive = True
        self.fn = None
        self.inst = None
        self.steps = 0
        self.counter_totals: dict[str, float] = {}

    def fail(self, phase: str, e: BaseException | str) -> None:
        self.alive = False
        self.result["status"] = "n/a"
        reason = e if isinstance(e, str) else _reason(e)
        self.result["reason"] = f"{phase}: {reason}"
        if not isinstance(e, str):
            self.result["traceback"] = "".join(traceback.format_exception(e))[-4000:]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workload", required=True)
    ap.add_argument("--systems", default="eager,janus,torch.compile,janus+inductor,dynamo+janus")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache-root", default=None)
    ap.add_argument("--var-budget", type=float, default=0.0,
                    help="seconds per system for the variable-size run (0: no limit)")
    args = ap.parse_args(argv)
    ev = Events()
    try:
        run(args, ev)
    except BaseException as e:  # noqa: BLE001 - report, never die silently
        ev.send(event="fatal", reason=_reason(e), traceback=traceback.format_exc()[-4000:])
        return 1
    return 0


def run(args, ev: Events) -> None:
    import importlib.util
    import tempfile

    import torch

    from . import measure
    from .machine import copy_bandwidth, load_average
    from .systems import SYSTEMS, counters, probe, reset_frontend
    from .workloads import WORKLOADS

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    # janus_frame pins glibc malloc's thresholds when its C backend first
    # runs; pinned here, before anything allocates, every system is measured
    # under the same allocator from the start (otherwise eager's 20-op chain
    # ran at 35 or 105 ms depending on the heap's layout at start-up)
    from janus_frame.backends.janus.runtime.graph import tune_malloc
    tune_malloc()
    cache_root = args.cache_root or tempfile.mkdtemp(prefix="janus-bench-cache-")
    quick = args.quick
    names = [s for s in args.systems.split(",") if s]
    if "eager" not in names:
        names.insert(0, "eager")  # eager is the reference for speed and correctness
    cls = WORKLOADS[args.workload]
    header = {"workload": cls.name, "title": cls.title, "kind": cls.kind, "unit": cls.unit,
              "load_average_start": load_average(), "threads": args.threads}

    missing = [m for m in cls.needs if importlib.util.find_spec(m) is None]
    if missing:
        reason = (f"needs {', '.join(missing)} (pip install -e '.[bench]' -- "
                  f"installs without changing torch)")
        # the workload's size does not need the package: the row still says it
        ev.send(event="header", **header, size=cls(quick=quick).size, error=reason)
        for n in names:
            ev.send(event="result", system=n, data={"system": n, "status": "n/a", "reason": reason})
        ev.send(event="done")
        return

    w = cls(quick=quick)
    header.update(size=w.size, var_desc=w.var_desc, inner=w.inner, rtol=w.rtol)
    if cls.kind == "infer" and cls.name.startswith("pointwise"):
        ev.send(event="progress", phase="bandwidth", system=None)
        header["copy_bandwidth"] = copy_bandwidth(quick=quick)
    ev.send(event="header", **header)

    runs = [SystemRun(n, SYSTEMS[n]) for n in names]
    rmap = {r.name: r for r in runs}
    ref = rmap["eager"]

    # janus_frame reports some fallbacks (e.g. the backend running a graph
    # eagerly after an internal error) through logging, not warnings: collect
    # its WARNING records so they reach the results as well.
    log_records: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record):
            try:
                log_records.append(record.getMessage())
            except Exception:  # noqa: BLE001
                pass

    jf_logger = logging.getLogger("janus_frame")
    jf_logger.addHandler(_Collect(level=logging.WARNING))

    # Every call of a system is bracketed by its frontend's counters; deltas
    # are accumulated per system because two systems share each frontend.
    def call(r: SystemRun, args_, phase_counts: dict | None = None):
        before = counters(r.system.frontend)
        del log_records[:]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = r.fn(*args_)
        after = counters(r.system.frontend)
        if log_records:
            r.result["log_warnings"] = r.result.get("log_warnings", 0) + len(log_records)
            for text in log_records:
                if text[:500] not in r.result["warnings"] and len(r.result["warnings"]) < 10:
                    r.result["warnings"].append(text[:500])
            del log_records[:]
        for k in after:
            d = after[k] - before.get(k, 0.0)
            r.counter_totals[k] = r.counter_totals.get(k, 0.0) + d
            if phase_counts is not None:
                phase_counts[k] = phase_counts.get(k, 0.0) + d
        for wmsg in caught:
            text = str(wmsg.message)
            if text not in r.result["warnings"] and len(r.result["warnings"]) < 10:
                r.result["warnings"].append(text[:500])
        r.steps += 1
        return out

    def phase(name: str, r: SystemRun, body, fatal: bool = True) -> None:
        if not r.alive:
            return
        ev.send(event="progress", phase=name, system=r.name)
        try:
            body(r)
        except Exception as e:  # noqa: BLE001
            if fatal:
                r.fail(name, e)
            else:
                # Phases after the timing (memory, warm compile) do not void
                # what was already measured: the failure is a note.
                r.result["notes"].append(f"{name} phase failed: {_reason(e)}")
                r.result.setdefault("phase_errors", {})[name] = "".join(traceback.format_exception(e))[-2000:]

    def set_cache_dirs(r: SystemRun) -> None:
        # A fresh cache directory per system and process: "first call" is a
        # cold-cache compile (effective where a library reads the variable
        # when it compiles, as Inductor does).
        d = os.path.join(cache_root, r.name.replace("+", "_").replace(".", "_"))
        os.makedirs(d, exist_ok=True)
        os.environ["JANUS_FRAME_CACHE_DIR"] = os.path.join(d, "janus")
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(d, "inductor")

    # -- probe + correctness --------------------------------------------------
    n_check = 2 if quick else 5

    def do_probe(r):
        set_cache_dirs(r)
        if not r.system.frontend:
            r.result["startup_s"] = 0.0
            return
        try:
            r.result["startup_s"] = probe(r.system)
        except Exception as e:  # noqa: BLE001
            # Not fatal: the workload itself may still run, and if it fails
            # too, its own error is the more useful reason.
            r.result["startup_s"] = None
            r.result["notes"].append(f"start-up probe failed: {_reason(e)}")

    def do_correct(r):
        set_cache_dirs(r)
        r.inst = w.instance()
        r.fn = r.system.compile(r.inst.step)
        outs, counts = [], {}
        t = time.perf_counter()
        outs.append(measure.snapshot(call(r, r.inst.args(0), counts)))
        r.result["first_call_s"] = time.perf_counter() - t
        r.result["first_call_counters"] = dict(counts)
        t = time.perf_counter()
        outs.append(measure.snapshot(call(r, r.inst.args(1))))
        r.result["second_call_s"] = time.perf_counter() - t
        for i in range(2, n_check):
            outs.append(measure.snapshot(call(r, r.inst.args(i))))
        r.check_outs = outs
        r.check_state = measure.snapshot(r.inst.state())

    for r in runs:
        phase("probe", r, do_probe)
        phase("correct", r, do_correct)
    if not ref.alive:
        raise RuntimeError(f"eager failed: {ref.result['reason']}")

    # Eager's own numerical noise: the same steps with another thread count
    # (a different reduction order), so the check below can tell a compiler
    # that computes something else from one that rounds differently.
    ev.send(event="progress", phase="noise", system="eager")
    noise_threads = 1 if args.threads > 1 else 2
    torch.set_num_threads(noise_threads)
    try:
        ninst = w.instance()
        nouts = [measure.snapshot(ninst.step(*ninst.args(i))) for i in range(n_check)]
        noise = measure.leaf_errors(nouts, ref.check_outs, "output")
        noise.update(measure.leaf_errors(measure.snapshot(ninst.state()), ref.check_state, "state"))
    finally:
        torch.set_num_threads(args.threads)
    del ninst
    # ... and the same steps from the same initial weights in float64: where
    # float32 eager is far from it (a parameter whose gradient is zero in
    # exact arithmetic, an attention key bias, is moved only by rounding
    # noise, which Adam scales up to a fraction of the learning rate), any
    # other reduction order is too
    for k, v in _float64_noise(w, n_check, ref).items():
        noise[k] = max(noise.get(k, 0.0), v)
    for r in runs:
        if r is ref or not r.alive:
            continue
        errs = measure.leaf_errors(r.check_outs, ref.check_outs, "output")
        errs.update(measure.leaf_errors(r.check_state, ref.check_state, "state"))
        verdict = measure.judge(errs, w.rtol, noise)
        r.result["correct"] = _clean({"steps": n_check, "rtol": w.rtol, **verdict})
        if not verdict["ok"]:
            r.result["status"] = "WRONG"
            r.result["reason"] = (f"after {n_check} steps {verdict['where']} differs from eager by "
                                  f"{verdict['max_rel_err']:.3g} (rel; allowed {verdict['allowed']:.3g})")
        fc = r.result.get("first_call_counters", {})
        fallbacks = [m for m in r.result["warnings"] if "internal error" in m or "running it natively" in m]
        if r.system.frontend == "janus" and fallbacks and not fc.get("frames_compiled"):
            # janus_frame caught its own error and ran the step eagerly: the
            # numbers would be eager's plus hook overhead -- not a result.
            r.fail("compile", f"fell back to eager: {fallbacks[0]}")
        elif r.system.frontend and fc.get("frames_compiled", 1) == 0:
            r.result["notes"].append("no frame compiled on the first call (ran natively)")
        eager_graphs = [m for m in r.result["warnings"] if "running graph eagerly" in m]
        if eager_graphs:
            r.result["notes"].append(f"backend ran graph(s) eagerly after an internal error: {eager_graphs[0][:200]}")
    ref.result["correct"] = _clean({"steps": n_check, "max_rel_err": 0.0, "where": "", "rtol": w.rtol,
                                    "ok": True, "reference": True,
                                    "noise_threads": noise_threads,
                                    "max_noise": max(noise.values(), default=0.0)})

    # -- warm-up and interleaved timing ---------------------------------------
    warm_steps = 1 if quick else 3
    rounds, per_round = (2, 1) if quick else (5, 5)
    base = n_check
    for r in runs:
        def do_warm(r):
            for i in range(warm_steps):
                call(r, r.inst.args(base + i))
        phase("warmup", r, do_warm)
        r.samples = []
        r.counts_timing = {}
    step_i = base + warm_steps
    for rnd in range(rounds):
        live = [r for r in runs if r.alive]
        order = live[rnd % len(live):] + live[:rnd % len(live)] if live else []
        for r in order:
            def do_time(r, rnd=rnd):
                for k in range(per_round):
                    a = r.inst.args(step_i + rnd * per_round + k)
                    # Counters are read outside the timed region; warnings
                    # are silenced (they were recorded during the first calls).
                    before = counters(r.system.frontend)
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        r.samples.append(measure.time_calls(r.fn, a, w.inner))
                    r.steps += w.inner
                    after = counters(r.system.frontend)
                    for key in after:
                        d = after[key] - before.get(key, 0.0)
                        r.counts_timing[key] = r.counts_timing.get(key, 0.0) + d
                        r.counter_totals[key] = r.counter_totals.get(key, 0.0) + d
            ev.send(event="progress", phase=f"timing {rnd + 1}/{rounds}", system=r.name)
            try:
                do_time(r)
            except Exception as e:  # noqa: BLE001
                r.fail("timing", e)
    for r in runs:
        if not r.alive or not r.samples:
            continue
        med = statistics.median(r.samples)
        r.result.update(median_s=med, min_s=min(r.samples), max_s=max(r.samples),
                        samples=len(r.samples), inner=w.inner)
        r.result["compile_s"] = max(r.result["first_call_s"] - med, 0.0)
        r.result["extra"] = {k: float(f"{v:.4g}") for k, v in w.extra_metrics(med).items()}
        # Compiles after the first call, over the whole main run (the same
        # input shapes every step): should be 0 for a good cache/guard design,
        # 1 where e.g. optimizer state appears after the first step.
        fc = r.result.get("first_call_counters", {})
        tot = r.counter_totals
        if "frames_compiled" in tot:
            r.result["recompiles"] = int(tot["frames_compiled"] - fc.get("frames_compiled", 0))
        if r.counts_timing.get("frames_compiled"):
            r.result["notes"].append(f"{int(r.counts_timing['frames_compiled'])} compile(s) during timing")
        r.result["counters_main"] = dict(tot)

    # -- memory ----------------------------------------------------------------
    mem_i = step_i + rounds * per_round
    for r in runs:
        def do_mem(r):
            a = r.inst.args(mem_i)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                r.result["peak_step_mem_mib"] = measure.step_peak_memory(r.fn, a)
            r.steps += 1
        phase("memory", r, do_mem, fatal=False)

    # -- variable-size run -----------------------------------------------------
    var_args = ref.inst.var_args if ref.inst is not None else None
    if var_args:
        var_rtol = max(1e-3, w.rtol)
        for r in runs:
            def do_var(r):
                # The sweep (every size once), then every size again: the
                # second pass counts what was compiled after the sweep (a
                # branch site still settling, a size-generic entry that did
                # not cover the sizes it was made for).
                counts, counts_after, outs = {}, {}, []
                t = time.perf_counter()
                stopped = False
                for a in r.inst.var_args:
                    outs.append(measure.snapshot(call(r, a, counts)))
                    if (args.var_budget and r is not ref
                            and time.perf_counter() - t > args.var_budget):
                        # A system compiling every new size can take tens of
                        # minutes here; the budget keeps a full run bounded and
                        # the result says where it stopped.
                        stopped = True
                        break
                sweep_s = time.perf_counter() - t
                after = 0
                if not stopped:
                    t1 = time.perf_counter()
                    for a in r.inst.var_args:
                        outs.append(measure.snapshot(call(r, a, counts_after)))
                        after += 1
                    after_s = time.perf_counter() - t1
                r.var_outs = outs

                def n(c, k):
                    return int(c[k]) if k in c else None

                r.result["var"] = {"desc": w.var_desc, "calls": len(outs) - after, "of": len(r.inst.var_args),
                                   "total_s": sweep_s,
                                   "compiles": n(counts, "frames_compiled"),
                                   "graphs": n(counts, "graphs"),
                                   "counters": counts}
                if after:
                    r.result["var"].update(after_calls=after, after_s=after_s,
                                           compiles_after=n(counts_after, "frames_compiled"),
                                           counters_after=counts_after)
            phase("var", r, do_var)
        for r in runs:
            if r is ref or not r.alive or "var" not in r.result:
                continue
            # Copies have trained for the same steps as eager but through
            # ~40 steps of rounding drift, hence the looser tolerance here.
            n = min(len(r.var_outs), len(ref.var_outs))
            err, where = measure.max_rel_error(r.var_outs[:n], ref.var_outs[:n], "var loss")
            r.result["var"].update(max_rel_err=_clean(err), rtol=var_rtol, ok=err <= var_rtol)
            if err > var_rtol and r.result["status"] == "ok":
                r.result["status"] = "WRONG"
                r.result["reason"] = f"variable-size run: {where} differs from eager by {err:.3g} (rel)"

    # -- explain (per frontend, on a fresh copy) ---------------------------------
    explained: dict[str, dict] = {}
    for frontend in ("janus", "dynamo"):
        if not any(r.system.frontend == frontend and r.alive for r in runs):
            continue
        ev.send(event="progress", phase="explain", system=frontend)
        try:
            explained[frontend] = explain(frontend, w)
        except Exception as e:  # noqa: BLE001
            explained[frontend] = {"error": _reason(e)}
    for r in runs:
        if r.system.frontend in explained:
            r.result["explain"] = explained[r.system.frontend]

    # -- warm-process compile ------------------------------------------------------
    for r in runs:
        if not r.system.frontend or quick:
            continue  # --quick: a third compile per system is not worth the smoke test's time

        def do_warmcompile(r):
            reset_frontend(r.system.frontend)
            inst = w.instance()
            fn = r.system.compile(inst.step)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t = time.perf_counter()
                fn(*inst.args(0))
                r.result["warm_first_call_s"] = time.perf_counter() - t
            if "median_s" in r.result:
                r.result["warm_compile_s"] = max(r.result["warm_first_call_s"] - r.result["median_s"], 0.0)
        phase("warm", r, do_warmcompile, fatal=False)

    for r in runs:
        r.result["steps_run"] = r.steps
        ev.send(event="result", system=r.name, data=_clean(r.result))
    ev.send(event="done", load_average_end=load_average(), maxrss_mib=measure.maxrss_mib())


def explain(frontend: str, w) -> dict:
    """Graph and break counts of one call of the step, on a fresh copy."""
    import warnings as _w

    inst = w.instance()
    a = inst.args(0)
    with _w.catch_warnings():
        _w.simplefilter("ignore")
        if frontend == "janus":
            import janus_frame as jf

            rep = jf.explain(inst.step)(*a)
            breaks = []
            for b in list(getattr(rep, "breaks", []) or [])[:10]:
                breaks.append(" ".join(str(x) for x in (getattr(b, "id", ""), getattr(b, "reason", b),
                                                         f"{getattr(b, 'filename', '')}:{getattr(b, 'lineno', '')}")))
            return {"graphs": getattr(rep, "graph_count", None), "breaks": getattr(rep, "break_count", None),
                    "break_reasons": breaks}
        import torch._dynamo

        torch._dynamo.reset()
        rep = torch._dynamo.explain(inst.step)(*a)
        reasons = [str(getattr(b, "reason", b)).splitlines()[0][:200] for b in rep.break_reasons[:10]]
        return {"graphs": rep.graph_count, "breaks": rep.graph_break_count, "break_reasons": reasons}


if __name__ == "__main__":
    sys.exit(main())
