"""Runs one zoo model under one system, case by case, in this (fresh) process.

In:  ``python -m bench.zoo.worker --model NAME --system SYS --cases
     infer-mask,infer-nomask,train-mask,train-nomask [--quick] [--threads N]
     [--case-timeout S]``; started by bench/zoo/run.py, one process per
     (model, system) so a crash or hang loses only that process's cases (the
     parent restarts it for the cases left).
Out: JSON lines on the original stdout (anything else printed goes to
     stderr): ``{"event": "start", "case": ...}`` before each case,
     ``{"event": "case", "case": ..., "data": {...}}`` after it, ``{"event":
     "done"}`` at the end.

A case is one (mode, mask) of the model under the system. Eager is the
reference in every process: the same model (same seed, same weights) runs
the same calls beside the compiled one, so correctness and the speed ratio
are measured in one process. Per case, in order:

  first     the first call, cold: frontend caches reset, a fresh janus_frame
            kernel-cache directory; Inductor's FX-graph and AOT-autograd
            caches are off, so every case compiles for real
  correct   inference: the outputs (every tensor of the ModelOutput) vs
            eager; training: AdamW (lr 1e-3), the losses of 3 steps and every
            parameter after them vs eager, per leaf within
            max(1e-4, 10 x eager's own noise) (eager rerun with 1 thread)
  repeat    10 more identical calls: frames compiled and guard-failure
            recompiles during them
  timing    eager and the system interleaved, median seconds per call
  memory    one call under torch.profiler's allocator events: peak tensor
            bytes above the level at the call's start (both systems)
  var       3 new input sizes (sequence length; batch for ViT): frames
            compiled, recompiles, and the results vs eager at each size
Graphs and breaks come from janus_frame's compile events (``cache.listeners``:
every entry's graphs and breaks, whole-frame fallbacks, recompiles) during
the first call -- a training call compiles only the forward in the frontend
-- and from Dynamo's counters for torch.compile.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import statistics
import sys
import tempfile
import time
import traceback
import warnings

KEY_BIAS = __import__("re").compile(r"^param\..*\b(key|k_proj|k_lin|k)\.bias$")

CASES = ["infer-mask", "infer-nomask", "train-mask", "train-nomask"]


class CaseTimeout(BaseException):
    """Raised by SIGALRM when a case runs past its time (a BaseException so
    that the code under test cannot swallow it with ``except Exception``)."""


def _on_alarm(signum, frame):
    raise CaseTimeout()


class Events:
    """The JSON-lines channel to the parent (a private dup of stdout)."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        fd = os.dup(1)
        self.out = os.fdopen(fd, "w", buffering=1)
        os.dup2(2, 1)
        sys.stdout = sys.stderr

    def send(self, **event) -> None:
        event["t"] = round(time.perf_counter() - self.t0, 3)
        self.out.write(json.dumps(_clean(event), default=str) + "\n")
        self.out.flush()


def _clean(x):
    if isinstance(x, float):
        return x if math.isfinite(x) else str(x)
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


SRC_MARK = os.sep + "janus_frame" + os.sep


def exception_record(e: BaseException) -> dict:
    """Type, message, the innermost frames in janus_frame and in transformers."""
    tb = traceback.extract_tb(e.__traceback__)
    jf = [f"{f.filename.split(SRC_MARK, 1)[-1]}:{f.lineno} in {f.name}" for f in tb
          if SRC_MARK in f.filename and "/bench/" not in f.filename]
    tf = [f"{f.filename.split('site-packages' + os.sep, 1)[-1]}:{f.lineno} in {f.name}" for f in tb
          if "site-packages" + os.sep + "transformers" in f.filename]
    msg = str(e).strip()
    inner = [f"{f.filename.split('site-packages' + os.sep, 1)[-1]}:{f.lineno} in {f.name}"
             for f in tb[-3:]]
    return {"type": type(e).__name__, "message": msg[:1500], "innermost_frames": inner,
            "janus_frame_frames": jf[-6:], "transformers_frames": tf[-4:],
            "traceback": "".join(traceback.format_exception(e))[-6000:]}


def _leaves(out):
    """The tensors of a model output, by name (ModelOutput -> its items)."""
    import torch

    if isinstance(out, torch.Tensor):
        return out.detach().clone()
    if hasattr(out, "to_tuple") and hasattr(out, "keys"):  # transformers ModelOutput
        return {k: _leaves(v) for k, v in out.items() if _has_tensor(v)}
    if isinstance(out, dict):
        return {k: _leaves(v) for k, v in out.items() if _has_tensor(v)}
    if isinstance(out, (list, tuple)):
        return [_leaves(v) for v in out]
    return out


def _has_tensor(v) -> bool:
    import torch

    if isinstance(v, torch.Tensor):
        return True
    if isinstance(v, (list, tuple)):
        return any(_has_tensor(x) for x in v)
    if isinstance(v, dict):
        return any(_has_tensor(x) for x in v.values())
    return False


class Recorder:
    """janus_frame's compile events (graphs, breaks, recompiles, fallbacks)."""

    def __init__(self) -> None:
        self.events: list[tuple] = []

    def __call__(self, event, code, payload) -> None:
        self.events.append((event, code, payload))

    def take(self) -> dict:
        graphs = breaks = recompiles = frame_fallbacks = 0
        reasons = []
        for event, code, payload in self.events:
            if event == "entry":
                graphs += len(payload.graphs)
                for b in payload.breaks:
                    breaks += 1
                    reasons.append(_break(b))
            elif event == "break":  # the whole frame runs natively
                breaks += 1
                frame_fallbacks += 1
                reasons.append(_break(payload))
            elif event == "recompile":
                recompiles += 1
        self.events.clear()
        return {"graphs": graphs, "breaks": breaks, "recompiles": recompiles,
                "frame_fallbacks": frame_fallbacks, "break_list": reasons}


def _break(b) -> dict:
    fn = getattr(b, "filename", None) or ""
    for mark in ("site-packages" + os.sep, SRC_MARK):
        if mark in fn:
            fn = fn.split(mark, 1)[-1]
    return {"id": getattr(b, "id", "?"), "reason": str(getattr(b, "reason", b))[:300],
            "where": f"{fn}:{getattr(b, 'lineno', None)}", "frame": getattr(b, "frame_name", None)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--system", required=True)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--case-timeout", type=float, default=600.0)
    args = ap.parse_args(argv)
    ev = Events()
    try:
        run(args, ev)
    except BaseException as e:  # noqa: BLE001 - report, never die silently
        ev.send(event="fatal", error=exception_record(e))
        return 1
    ev.send(event="done")
    return 0


def run(args, ev: Events) -> None:
    import torch

    torch.set_num_threads(args.threads)
    from janus_frame.backends.janus.runtime import tune_malloc

    tune_malloc()  # the same allocator settings for every system (see bench/README.md)
    from .. import measure
    from . import models as Z
    from .systems import SYSTEMS

    system = SYSTEMS[args.system]
    root = tempfile.mkdtemp(prefix="janus-zoo-cache-")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(root, "inductor")
    os.environ["JANUS_FRAME_CACHE_DIR"] = os.path.join(root, "janus-probe")
    if system.frontend == "dynamo":
        import torch._functorch.config as fconf
        import torch._inductor.config as iconf

        iconf.fx_graph_cache = False
        fconf.enable_autograd_cache = False
    signal.signal(signal.SIGALRM, _on_alarm)

    log_records: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record):
            try:
                log_records.append(record.getMessage())
            except Exception:  # noqa: BLE001
                pass

    logging.getLogger("janus_frame").addHandler(_Collect(level=logging.WARNING))
    recorder = Recorder()
    if system.frontend == "janus":
        from janus_frame import cache as jcache

        jcache.listeners.append(recorder)

    startup = None
    if system.frontend:
        t = time.perf_counter()
        try:
            system.probe()
            startup = time.perf_counter() - t
        except Exception as e:  # noqa: BLE001
            startup = f"probe failed: {type(e).__name__}: {e}"[:300]
    ev.send(event="startup", seconds=startup)

    for case in [c for c in args.cases.split(",") if c]:
        mode, maskname = case.split("-")
        mask = maskname == "mask"
        ev.send(event="start", case=case)
        if mask and not Z.MODELS[args.model].has_mask:
            ev.send(event="case", case=case, data={"status": "n/a", "reason": "no attention mask"})
            continue
        data: dict = {"status": "ok", "warnings": [], "log_warnings": []}
        signal.alarm(int(args.case_timeout))
        try:
            run_case(args, system, Z, measure, mode, mask, data, recorder, log_records, root, ev, case)
        except CaseTimeout:
            data["status"] = "timeout"
            data["phase_at_timeout"] = data.get("phase")
            data["reason"] = f"case ran past {args.case_timeout:.0f} s in phase {data.get('phase')}"
        except Exception as e:  # noqa: BLE001
            if data.get("phase") in ("eager",):
                data["status"] = "n/a"
                data["reason"] = f"eager failed: {type(e).__name__}: {e}"[:500]
            else:
                data["status"] = "raised"
                data["error"] = exception_record(e)
                data["reason"] = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"[:500]
        finally:
            signal.alarm(0)
        if data["status"] in ("raised", "timeout") and system.frontend == "janus":
            # what the frontend had compiled before it raised
            data["at_failure"] = recorder.take()
        data["warnings"] = data["warnings"][:12]
        data["log_warnings"] = data["log_warnings"][:12]
        ev.send(event="case", case=case, data=data)


def run_case(args, system, Z, measure, mode, mask, data, recorder, log_records, root, ev, case):
    import torch

    from .systems import frontend_counts, reset_frontend

    quick, name = args.quick, args.model
    train = mode == "train"
    steps = 3 if train else 1

    def phase(p):
        data["phase"] = p
        ev.send(event="progress", case=case, phase=p)

    # -- eager reference (and its noise: the same with 1 thread) ---------------
    phase("eager")
    kw = Z.inputs(name, quick, mode, mask)

    def make(seed=0):
        m = Z.build(name, quick, seed)
        m.train(train)
        opt = torch.optim.AdamW(m.parameters(), lr=1e-3) if train else None
        return m, opt

    def stepper(fn, model, opt):
        if train:
            def step(kwargs):
                opt.zero_grad(set_to_none=True)
                out = fn(**kwargs)
                loss = Z.loss(name, out)
                loss.backward()
                opt.step()
                return loss.detach()
        else:
            def step(kwargs):
                with torch.no_grad():
                    return fn(**kwargs)
        return step

    def run_ref(threads):
        old = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            m, opt = make()
            st = stepper(m, m, opt)
            outs = [_leaves(st(kw)) for _ in range(steps)]
            state = measure.snapshot({n: p.detach() for n, p in m.named_parameters()}) if train else {}
            return m, opt, st, outs, state
        finally:
            torch.set_num_threads(old)

    em, eopt, estep, eouts, estate = run_ref(args.threads)
    _, _, _, nouts, nstate = run_ref(1 if args.threads > 1 else 2)
    noise = measure.leaf_errors(nouts, eouts, "out")
    noise.update(measure.leaf_errors(nstate, estate, "param"))
    del nouts, nstate

    # -- the system: cold first call -----------------------------------------
    phase("first")
    reset_frontend(system.frontend)
    os.environ["JANUS_FRAME_CACHE_DIR"] = os.path.join(root, f"janus-{case}")
    sm, sopt = make()
    fn = system.compile(sm)
    sstep = stepper(fn, sm, sopt)

    import janus_frame.cache as jcache

    fallbacks0 = _backend_fallbacks()
    errors0 = jcache.stats.internal_errors

    def call(kwargs):
        del log_records[:]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = sstep(kwargs)
        for w in caught:
            text = f"{w.category.__name__}: {w.message}"[:400]
            if "janus_frame" in text and text not in data["warnings"]:
                data["warnings"].append(text)
        for text in log_records:
            if text[:400] not in data["log_warnings"]:
                data["log_warnings"].append(text[:400])
        return out

    recorder.take()
    c0 = frontend_counts(system.frontend)
    t = time.perf_counter()
    souts = [_leaves(call(kw))]
    data["first_call_s"] = time.perf_counter() - t
    c1 = frontend_counts(system.frontend)
    data["first"] = _delta(c0, c1)
    if system.frontend == "janus":
        data["first"].update(recorder.take())
    for _ in range(steps - 1):
        souts.append(_leaves(call(kw)))
    if system.frontend == "janus":
        data["later_steps"] = {k: v for k, v in recorder.take().items() if k != "break_list"}

    # -- correctness -------------------------------------------------------------
    phase("correct")
    errs = measure.leaf_errors(souts, eouts, "out")
    if train:
        sstate = measure.snapshot({n: p.detach() for n, p in sm.named_parameters()})
        errs.update(measure.leaf_errors(sstate, estate, "param"))
    # Attention key biases: softmax is invariant to them, their exact gradient
    # is zero and Adam turns the rounding noise of any evaluation order into
    # lr-sized steps (eager with 1 and 2 threads disagrees there by percent).
    # Reported, not judged.
    unjudged = {k: errs.pop(k) for k in list(errs) if KEY_BIAS.search(k)}
    verdict = measure.judge(errs, 1e-4, noise)
    data["correct"] = {"steps": steps, **verdict,
                       "max_abs_err": _max_abs(souts, eouts)}
    if unjudged:
        data["correct"]["key_bias_max_rel_err"] = max(unjudged.values())
    if not verdict["ok"]:
        data["status"] = "wrong"
        data["reason"] = (f"{verdict['where']} differs from eager by {verdict['max_rel_err']:.3g} "
                          f"(rel; allowed {verdict['allowed']:.3g})")

    # -- 10 identical calls --------------------------------------------------------
    phase("repeat")
    c0 = frontend_counts(system.frontend)
    last = None
    for _ in range(10):
        last = call(kw)
        eref = estep(kw)
    c1 = frontend_counts(system.frontend)
    data["repeat"] = _delta(c0, c1)
    if system.frontend == "janus":
        data["repeat"].update({k: v for k, v in recorder.take().items() if k != "break_list"})
    if not train:
        e, where = measure.max_rel_error(_leaves(last), _leaves(eref))
        data["repeat"]["max_rel_err"] = e
        if e > 1e-4 and data["status"] == "ok":
            data["status"] = "wrong"
            data["reason"] = f"call 11: {where} differs from eager by {e:.3g}"

    # -- interleaved timing ----------------------------------------------------------
    phase("timing")
    rounds, per = (3, 3) if quick else (5, 5)
    es, ss = [], []
    for r in range(rounds):
        order = [(estep, es), (call, ss)] if r % 2 == 0 else [(call, ss), (estep, es)]
        for f, acc in order:
            for _ in range(per):
                t = time.perf_counter()
                f(kw)
                acc.append(time.perf_counter() - t)
    data["eager_ms"] = statistics.median(es) * 1e3
    data["system_ms"] = statistics.median(ss) * 1e3
    data["speedup_vs_eager"] = data["eager_ms"] / data["system_ms"]
    recorder.take()

    # -- memory ----------------------------------------------------------------------
    phase("memory")
    data["eager_peak_mib"] = measure.step_peak_memory(estep, (kw,))
    data["system_peak_mib"] = measure.step_peak_memory(call, (kw,))

    # -- new sizes ---------------------------------------------------------------------
    phase("var")
    var = {"sizes": Z.var_sizes(name, quick), "dim": Z.MODELS[name].var, "errors": []}
    c0 = frontend_counts(system.frontend)
    for size in var["sizes"]:
        vkw = Z.inputs(name, quick, mode, mask, size=size)
        got = _leaves(call(vkw))
        ref = _leaves(estep(vkw))
        var["errors"].append(measure.max_rel_error(got, ref)[0])
    c1 = frontend_counts(system.frontend)
    var.update(_delta(c0, c1))
    if system.frontend == "janus":
        var.update({k: v for k, v in recorder.take().items() if k != "break_list"})
    data["var"] = var
    # Training runs are compared loss to loss after more than a dozen Adam
    # steps here; the parameter check above is the strict one.
    worst = max(var["errors"])
    if worst > (1e-3 if train else 1e-4) and data["status"] == "ok":
        data["status"] = "wrong"
        data["reason"] = f"new size: differs from eager by {worst:.3g}"

    data["backend_fallbacks"] = _backend_fallbacks() - fallbacks0
    data["internal_errors"] = jcache.stats.internal_errors - errors0
    if data["backend_fallbacks"]:
        mod = sys.modules["janus_frame.backends.janus"]
        data["backend_fallback_reasons"] = [x[:300] for x in mod.stats.fallbacks[-data["backend_fallbacks"]:]][:6]
    data["phase"] = "done"


def _backend_fallbacks() -> int:
    mod = sys.modules.get("janus_frame.backends.janus")
    return len(mod.stats.fallbacks) if mod is not None else 0


def _delta(a: dict, b: dict) -> dict:
    out = {}
    for k, v in b.items():
        if isinstance(v, dict):  # per-reason counters (Dynamo's graph breaks)
            old = a.get(k, {})
            out[k] = {r: n - old.get(r, 0) for r, n in v.items() if n - old.get(r, 0)}
        else:
            out[k] = v - a.get(k, 0)
    return out


def _max_abs(got, ref) -> float:
    import torch

    best = 0.0

    def walk(g, r):
        nonlocal best
        if isinstance(r, torch.Tensor) and isinstance(g, torch.Tensor) and g.shape == r.shape \
                and r.is_floating_point():
            best = max(best, (g.double() - r.double()).abs().max().item() if r.numel() else 0.0)
        elif isinstance(r, dict) and isinstance(g, dict):
            for k in r:
                if k in g:
                    walk(g[k], r[k])
        elif isinstance(r, (list, tuple)) and isinstance(g, (list, tuple)):
            for x, y in zip(g, r):
                walk(x, y)

    walk(got, ref)
    return best


if __name__ == "__main__":
    sys.exit(main())
