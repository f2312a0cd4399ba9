"""GPU check of janus_frame's Triton backend: install, Triton tests on CUDA,
workloads against eager and torch.compile (Inductor), tuning on and off.

    python3 bench/gpu_check.py --out $OUT        # on the GPU machine: at most 8 minutes
    python bench/gpu_check.py --dry-run --out D  # on a CPU: Triton's interpreter, tiny sizes

Steps (each bounded in time; what does not fit in ``--budget`` is skipped and
said so; the JSON and markdown are rewritten after every result, so a run cut
short still leaves everything it measured):
  1. install the project over the machine's own torch into a fresh target
     folder (pip with no index, no dependencies, no build isolation; wheels of
     missing pure-Python packages travel in bench/wheels/). If pip cannot
     build it, the C extension is compiled directly from csrc/*.c; if that
     fails too, only the backend is checked (through Dynamo's frontend, see
     gpu_check_stub.py) and the run is marked so;
  2. tests/backends/test_triton.py with real CUDA tensors (TRITON_INTERPRET=0);
  3. the workloads (bench/gpu_check_worker.py, one process per tuning setting,
     each with fresh kernel caches): 20-op pointwise chains at 2048x2048,
     softmax and layer norm at 4096x4096, the MLP, CNN, GPT and LSTM training
     steps. First the process with tuning off (eager, janus, Inductor), then
     the one with tuning on (eager, janus): results vs eager, CUDA-event
     timings, first-call times (tuning time = tuned minus untuned first call),
     kernels launched per call, host time per call;
  4. gpu_check.json, gpu_check.md, triton_tests.log, install.log and
     workers.log in ``--out``.
Exit status: 0 all correct and complete; 1 something wrong, crashed, timed
out or fell back (install and tests included); 2 only skipped for time.
"""
from __future__ import annotations

import argparse
import datetime
import glob
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if REPO not in sys.path:
    sys.path.insert(0, REPO)

WORKER = os.path.join(HERE, "gpu_check_worker.py")
WHEELS = os.path.join(HERE, "wheels")
INFER_ROWS = ["pointwise_cheap", "pointwise_transcendental", "softmax", "layer_norm"]
ALL_ROWS = INFER_ROWS + ["mlp", "resnet", "gpt", "lstm"]
SYSTEM_ORDER = ["eager", "janus_untuned", "inductor", "eager_2", "janus_tuned", "dynamo+janus"]
FAILED = ("WRONG", "crashed", "timeout", "fallback", "partial")
LOG_CAP = 4 << 20  # bytes of each log copied into --out


# ------------------------------------------------------------------ results
class Report:
    """The results document, written (JSON and markdown) after every change."""

    def __init__(self, out_dir: str, meta: dict):
        self.out = out_dir
        self.doc = {"meta": meta, "install": {}, "triton_tests": {}, "workers": [],
                    "workloads": [], "notes": [], "summary": {}}

    def workload(self, name: str) -> dict:
        for w in self.doc["workloads"]:
            if w["name"] == name:
                return w
        w = {"name": name, "systems": {}}
        self.doc["workloads"].append(w)
        self.doc["workloads"].sort(key=lambda x: ALL_ROWS.index(x["name"]) if x["name"] in ALL_ROWS else 99)
        return w

    def set_system(self, wl: str, system: str, result: dict) -> None:
        w = self.workload(wl)
        w["systems"][system] = result
        w["systems"] = {k: w["systems"][k] for k in sorted(
            w["systems"], key=lambda s: SYSTEM_ORDER.index(s) if s in SYSTEM_ORDER else 99)}

    def summarize(self) -> dict:
        counts = {"workloads": len(self.doc["workloads"]), "results": 0, "ok": 0, "wrong": 0,
                  "crashed": 0, "timeout": 0, "fallback": 0, "skipped": 0, "disabled": 0}
        failures = []
        for w in self.doc["workloads"]:
            for s, r in w["systems"].items():
                st = r.get("status")
                counts["results"] += 1
                if st == "ok":
                    counts["ok"] += 1
                elif st == "WRONG":
                    counts["wrong"] += 1
                elif st in ("crashed", "running"):
                    counts["crashed"] += 1
                elif st == "timeout":
                    counts["timeout"] += 1
                elif st in ("fallback", "partial"):
                    counts["fallback"] += 1
                elif st == "skipped":
                    counts["skipped"] += 1
                elif st == "disabled":
                    counts["disabled"] += 1
                if st in FAILED or st == "running":
                    failures.append(f"{w['name']} / {s}: {st}: {r.get('reason', '')}")
        tests = self.doc["triton_tests"]
        install = self.doc["install"]
        bad = counts["wrong"] + counts["crashed"] + counts["timeout"] + counts["fallback"]
        tests_bad = tests.get("status") not in (None, "ok", "skipped")
        install_bad = install.get("status") not in (None, "ok", "skipped")
        counts["exit_code"] = 1 if (bad or tests_bad or install_bad) else (2 if counts["skipped"] else 0)
        counts["failures"] = failures
        self.doc["summary"] = counts
        return counts

    def save(self) -> None:
        self.summarize()
        self.doc["meta"]["elapsed_s"] = round(time.time() - self.doc["meta"]["started_epoch"], 1)
        os.makedirs(self.out, exist_ok=True)
        try:
            md = render_md(self.doc)
        except Exception as e:  # noqa: BLE001 -- the JSON must be written whatever the table does
            md = f"# janus_frame GPU check\n\n(markdown failed: {type(e).__name__}: {e}; see gpu_check.json)"
        for name, text in (("gpu_check.json", json.dumps(self.doc, indent=1, default=str)),
                           ("gpu_check.md", md)):
            path = os.path.join(self.out, name)
            tmp = path + ".tmp"
            with open(tmp, "w") as f:
                f.write(text + "\n")
            os.replace(tmp, path)


def _f(v, fmt="{:.3g}"):
    if v is None:
        return "–"
    try:
        return fmt.format(v)
    except (TypeError, ValueError):
        return str(v)


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _ratio(num: dict, den: dict):
    """num's time / den's time (> 1: den is faster), both measured and ok."""
    a, b = num.get("ms"), den.get("ms")
    if num.get("status") == "ok" and den.get("status") == "ok" and _num(a) and _num(b) and b > 0:
        return a / b
    return None


def _status(r: dict | None) -> str:
    if r is None:
        return "–"
    st = r.get("status", "?")
    return "ok" if st == "ok" else f"**{st}**" if st in FAILED else st


def render_md(doc: dict) -> str:
    m, s = doc["meta"], doc.get("summary", {})
    L = [f"# janus_frame GPU check{' (DRY RUN: CPU, Triton interpreter, tiny sizes)' if m.get('dry_run') else ''}",
         "",
         f"- command: `{m.get('command')}`",
         f"- started {m.get('started')}, {m.get('elapsed_s', 0):.0f} s of a {m.get('budget_s')} s budget; "
         f"host {m.get('hostname')}, {m.get('cores')} cores",
         f"- {m.get('gpu', 'no GPU')}; Python {m.get('python')}, torch {m.get('torch')}, "
         f"Triton {m.get('triton')}",
         f"- install: {doc['install'].get('status', '–')} ({doc['install'].get('method', '–')})"
         + (f" — {doc['install'].get('reason')}" if doc["install"].get("reason") else ""),
         f"- Triton tests ({doc['triton_tests'].get('device', '–')}): {doc['triton_tests'].get('status', '–')}"
         f" — {doc['triton_tests'].get('summary', '')}",
         f"- results: {s.get('ok', 0)} ok, {s.get('wrong', 0)} WRONG, {s.get('crashed', 0)} crashed, "
         f"{s.get('timeout', 0)} timed out, {s.get('fallback', 0)} fell back, {s.get('skipped', 0)} skipped "
         f"(of {s.get('results', 0)} system results over {s.get('workloads', 0)} workloads); "
         f"exit status {s.get('exit_code')}",
         ""]
    for w in doc.get("workers", []):
        L.append(f"- worker (tuning {w.get('autotune')}): frontend {w.get('frontend')}, "
                 f"{w.get('gpu', w.get('device'))}"
                 + (f", copy {w['copy_GBps']} GB/s" if w.get("copy_GBps") else "")
                 + f", start-up s {w.get('startup_s')}")
    L += ["", "## Time per call (ms, median; CUDA events around back-to-back calls after warm-up)", "",
          "| workload | size | eager | janus untuned | janus tuned | Inductor | tuned janus vs Inductor "
          "| tuned janus vs eager | GB/s eager / janus / Inductor |",
          "|---|---|---|---|---|---|---|---|---|"]
    for w in doc["workloads"]:
        S = w["systems"]
        e, ju, jt, ind, e2 = (S.get(k, {}) for k in ("eager", "janus_untuned", "janus_tuned", "inductor", "eager_2"))

        def ms(r):
            return _f(r.get("ms"), "{:.3f}") if r.get("status") == "ok" else _status(r or None)

        vs_ind = _ratio(ind, jt)
        vs_e = _ratio(e2 or e, jt)
        gb = " / ".join(_f(r.get("GBps"), "{:.0f}") for r in (e, jt or ju, ind))
        L.append(f"| {w['name']} | {w.get('size', '')} | {ms(e)} | {ms(ju)} | {ms(jt)} | {ms(ind)} | "
                 f"{_f(vs_ind, '{:.2f}x')} | {_f(vs_e, '{:.2f}x')} | {gb} |")
    L += ["", "## First call, tuning, launches",
          "",
          "First call: seconds, cold caches (compile, Triton compile, tuning). Tuning: tuned minus "
          "untuned first call. Launches: CUDA kernels in one profiled call (a training step calls each of its graphs once). Host: the host's "
          "time per call, close to the GPU time when a step is launch- or Python-bound (where "
          "capturing its kernels in a CUDA graph would pay).",
          "",
          "| workload | first call s: janus untuned / tuned / Inductor | tuning s | graphs | Triton kernels "
          "| launches/call: eager / janus / Inductor | janus host ms / GPU ms | max rel err janus (allowed) |",
          "|---|---|---|---|---|---|---|---|"]
    for w in doc["workloads"]:
        S = w["systems"]
        e, ju, jt, ind = (S.get(k, {}) for k in ("eager", "janus_untuned", "janus_tuned", "inductor"))
        j = jt if jt.get("status") == "ok" else ju
        tune = (jt["first_call_s"] - ju["first_call_s"]) if _num(jt.get("first_call_s")) \
            and _num(ju.get("first_call_s")) else None
        fc = " / ".join(_f(r.get("first_call_s"), "{:.2f}") for r in (ju, jt, ind))
        la = " / ".join(_f(r.get("kernels_per_call"), "{:d}") for r in (e, j, ind))
        if _num(j.get("generated_kernels_per_call")):
            la += f" ({j['generated_kernels_per_call']} janus kernels, {j.get('library_kernels_per_call')} library)"
        host = f"{_f(j.get('host_ms'), '{:.3f}')} / {_f(j.get('ms'), '{:.3f}')}"
        errs = []
        for r in (ju, jt):
            c = r.get("correct") or {}
            if "max_rel_err" in c:
                errs.append(f"{_f(c['max_rel_err'], '{:.1e}')} ({_f(c.get('allowed'), '{:.0e}')})")
        L.append(f"| {w['name']} | {fc} | {_f(tune, '{:.2f}')} | {_f(j.get('graphs'), '{:d}')} | "
                 f"{_f(j.get('triton_kernels'), '{:d}')} | {la} | {host} | {'; '.join(errs) or '–'} |")
    fails = s.get("failures") or []
    if fails:
        L += ["", "## Failures", ""] + [f"- {x}" for x in fails]
    notes = list(doc.get("notes", []))
    for w in doc["workloads"]:
        for k, r in w["systems"].items():
            for n in r.get("notes", []):
                notes.append(f"{w['name']} / {k}: {n}")
            for n in r.get("warnings", [])[:2]:
                notes.append(f"{w['name']} / {k} warned: {n[:200]}")
    if notes:
        L += ["", "## Notes", ""] + [f"- {x}" for x in notes]
    return "\n".join(L)


# ------------------------------------------------------------------ helpers
def _tail(text: str, n: int = 2500) -> str:
    return text if len(text) <= n else "..." + text[-n:]


def _run(cmd, log, env=None, timeout=None, cwd=REPO):
    """Run ``cmd``, appending its output to the open file ``log``; returns
    (exit code or 'timeout', the output's tail)."""
    log.write(f"\n$ {' '.join(cmd)}\n")
    log.flush()
    p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, errors="replace", start_new_session=True)
    try:
        out, _ = p.communicate(timeout=timeout)
        rc = p.returncode
    except subprocess.TimeoutExpired:
        _kill(p)
        out, _ = p.communicate()
        rc = "timeout"
    log.write(out or "")
    log.write(f"[exit: {rc}]\n")
    log.flush()
    return rc, out or ""


def _kill(p):
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _import_probe(env) -> dict:
    """Where janus_frame and its frame hook import from in a fresh interpreter,
    and whether the hook works: a function compiled by the frontend (eager
    backend: no kernel build) must give the plain function's result."""
    code = ("import json\nr = {}\ntry:\n import janus_frame; r['file'] = janus_frame.__file__\n"
            " import janus_frame._C as c; r['c'] = c.__file__\n import torch\n"
            " def f(x):\n  return torch.sin(x) * 2 + 1\n"
            " x = torch.arange(5.0)\n"
            " r['smoke'] = 'ok' if torch.equal(janus_frame.compile(f, backend='eager')(x), f(x)) else 'wrong result'\n"
            "except Exception as e:\n r['error'] = f'{type(e).__name__}: {e}'\nprint('PROBE' + json.dumps(r))\n")
    try:
        p = subprocess.run([sys.executable, "-c", code], cwd=tempfile.gettempdir(), env=env,
                           capture_output=True, text=True, timeout=180)
    except subprocess.TimeoutExpired:
        return {"error": "import timed out"}
    for line in p.stdout.splitlines():
        if line.startswith("PROBE"):
            return json.loads(line[5:])
    return {"error": f"exit {p.returncode} (a crash in the frame hook?): " + (_tail(p.stderr, 600) or "no output")}


def _hook_ok(found: dict) -> bool:
    return "c" in found and found.get("smoke") == "ok"


def _wheel_module(path: str) -> str:
    return os.path.basename(path).split("-")[0].lower().replace("-", "_")


def install(rep: Report, mode: str, log_path: str, base_env: dict) -> dict:
    """Install janus_frame for this interpreter; returns the environment the
    tests and workers run in (PYTHONPATH set to the install target)."""
    info = rep.doc["install"]
    t0 = time.time()
    env = dict(base_env)
    found = _import_probe(env)
    own = os.path.join(REPO, "src", "janus_frame") + os.sep
    if mode == "no" or (mode == "auto" and _hook_ok(found) and found["file"].startswith(own)):
        info.update(status="skipped", method="existing",
                    reason=f"janus_frame already imports from {os.path.dirname(found.get('file', '?'))}"
                    if "file" in found else f"--install no ({found.get('error')})")
        with open(log_path, "a") as log:
            log.write(f"install skipped: {info['reason']}\n")
        return env
    target = tempfile.mkdtemp(prefix="jf-gpu-site-")
    env["PYTHONPATH"] = os.pathsep.join([target, REPO] + [p for p in [env.get("PYTHONPATH")] if p])
    pip = [sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--no-build-isolation",
           "--no-compile", "--disable-pip-version-check", "--target", target]
    steps = []
    with open(log_path, "a") as log:
        wheels = [w for w in sorted(glob.glob(os.path.join(WHEELS, "*.whl")))
                  if importlib.util.find_spec(_wheel_module(w)) is None]
        if wheels:
            rc, out = _run(pip + wheels, log, env, timeout=120)
            steps.append(f"wheels {[os.path.basename(w) for w in wheels]}: exit {rc}")
        build_dir = tempfile.mkdtemp(prefix="jf-gpu-build-")
        penv = dict(env, CMAKE_BUILD_PARALLEL_LEVEL=str(os.cpu_count() or 4))
        rc, out = _run(pip + ["--ignore-requires-python", f"--config-settings=build-dir={build_dir}", REPO],
                       log, penv, timeout=180)
        steps.append(f"pip (scikit-build-core): exit {rc}")
        shutil.rmtree(build_dir, ignore_errors=True)
        found = _import_probe(env) if rc == 0 else {"error": f"pip exit {rc}: {_tail(out, 800)}"}
        method = "pip"
        refused = rc != 0 and "CMake Error" in out
        if not _hook_ok(found) and not refused:
            # no usable build backend here (scikit-build-core or cmake missing):
            # compile the hook directly, as CMakeLists.txt does (C11, Python
            # headers only). Not where CMake itself ran and failed: that is the
            # project refusing this Python, which a direct build must not override.
            method = "cc"
            pkg = os.path.join(target, "janus_frame")
            shutil.copytree(os.path.join(REPO, "src", "janus_frame"), pkg, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.so"))
            inc = sysconfig.get_paths()["include"]
            so = os.path.join(pkg, "_C" + sysconfig.get_config_var("EXT_SUFFIX"))
            cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or "cc"
            srcs = sorted(glob.glob(os.path.join(REPO, "csrc", "*.c")))
            rc, out = _run([cc, "-shared", "-fPIC", "-O2", "-std=c11", f"-I{inc}", *srcs, "-o", so],
                           log, env, timeout=180)
            steps.append(f"cc: exit {rc}")
            found = _import_probe(env) if rc == 0 else {"error": f"cc exit {rc}: {_tail(out, 800)}"}
        if _hook_ok(found):
            info.update(status="ok", method=method)
            if not found["file"].startswith(target):
                info["note"] = f"another janus_frame shadows the one installed: {found['file']}"
        else:
            # the package may still import with a stand-in hook: the backend is checked alone
            benv = dict(env, JANUS_GPU_CHECK_STUB="1",
                        PYTHONPATH=os.pathsep.join([HERE, env["PYTHONPATH"]]))
            if not os.path.isdir(os.path.join(target, "janus_frame")):
                shutil.copytree(os.path.join(REPO, "src", "janus_frame"), os.path.join(target, "janus_frame"),
                                ignore=shutil.ignore_patterns("__pycache__", "*.so"))
            stub = subprocess.run([sys.executable, "-c", "import gpu_check_stub, janus_frame.backends.janus"],
                                  cwd=tempfile.gettempdir(), env=benv, capture_output=True, text=True, timeout=180)
            why = found.get("error") or f"hook smoke test: {found.get('smoke')}"
            if stub.returncode == 0:
                env = benv
                info.update(status="failed", method="backend-only",
                            reason=f"the frame hook does not build or work here ({why[:400]}): only the "
                                   "backend is checked, through Dynamo's frontend")
            else:
                info.update(status="failed", method="none",
                            reason=f"{why[:400]}; without the hook: {_tail(stub.stderr, 400)}")
    info.update(target=target, steps=steps, seconds=round(time.time() - t0, 1),
                janus_frame=found.get("file"), hook=found.get("c"), hook_smoke=found.get("smoke"))
    return env


def run_tests(rep: Report, env: dict, out_dir: str, dry: bool, timeout: float, backend_only: bool) -> None:
    info = rep.doc["triton_tests"]
    log_path = os.path.join(out_dir, "triton_tests.log")
    cmd = [sys.executable, "-m", "pytest", "-q", "-rfEs", "-p", "no:cacheprovider",
           "tests/backends/test_triton.py"]
    if importlib.util.find_spec("pytest_timeout") is not None:
        cmd += ["--timeout", "120"]
    if dry:  # the full file runs in the test suite itself; two tests show the wiring works
        cmd += ["-k", "softmax_persistent_one_kernel or layer_norm_one_kernel"]
    tenv = dict(env, TRITON_INTERPRET="1" if dry else "0", PYTHONUNBUFFERED="1")
    if backend_only:  # (env holds JANUS_GPU_CHECK_STUB=1 and bench/ on the path)
        cmd[3:3] = ["-p", "gpu_check_stub"]
    t0 = time.time()
    with open(log_path, "w") as log:
        rc, out = _run(cmd, log, tenv, timeout=timeout)
    counts = {k: int(n) for n, k in re.findall(
        r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed|deselected)", out.splitlines()[-1] if out.strip() else "")}
    last = out.strip().splitlines()[-1] if out.strip() else ""
    info.update(device="interpreter (CPU)" if dry else "CUDA", seconds=round(time.time() - t0, 1),
                exit=rc, counts=counts, summary=last.strip("= "), log="triton_tests.log")
    if rc == 0:
        info["status"] = "ok"
    elif rc == "timeout":
        info["status"] = "timeout"
    else:
        info["status"] = "failed"
        info["failures"] = [ln for ln in out.splitlines() if ln.startswith(("FAILED", "ERROR"))][:20]


# ------------------------------------------------------------------ workers
def run_workers(rep: Report, env: dict, args, tmp: str, deadline: float) -> None:
    dry = args.dry_run
    rows = args.rows
    tuned_rows = [r for r in rows if r in args.tuned_rows]
    ind_rows = [r for r in rows if r in args.inductor_rows]
    plans = [("off", ["eager", "janus_untuned", "inductor"], rows),
             ("always" if dry else "auto", ["eager_2", "janus_tuned"], tuned_rows)]
    for r in rows:
        w = rep.workload(r)
        if r not in ind_rows:
            rep.set_system(r, "inductor", {"status": "disabled", "reason": "not requested (--inductor-rows)"})
        if r not in tuned_rows:
            rep.set_system(r, "janus_tuned", {"status": "disabled", "reason": "not requested (--tuned-rows)"})
        w.setdefault("size", "")
    rep.save()
    wlog = open(os.path.join(tmp, "workers.log"), "a")
    for i, (tune, systems, todo) in enumerate(plans):
        # the untuned process first (correctness, Inductor); the tuned one gets
        # what is left, but the first may not take more than its share
        share = deadline if i == len(plans) - 1 else time.time() + args.first_share * (deadline - time.time())
        remaining = list(todo)
        n, last_rc = 0, 0
        while remaining:
            if deadline - time.time() < (8 if dry else 25) or time.time() > share - 5:
                for wname in remaining:
                    for s in systems:
                        if s not in rep.workload(wname)["systems"]:
                            rep.set_system(wname, s, {"status": "skipped", "reason": "time budget spent"})
                rep.save()
                break
            n += 1
            cdir = os.path.join(tmp, f"tune-{tune}-{n}")
            cenv = dict(env, JANUS_FRAME_TRITON_AUTOTUNE=tune, TRITON_CACHE_DIR=os.path.join(cdir, "triton"),
                        TORCHINDUCTOR_CACHE_DIR=os.path.join(cdir, "inductor"), PYTHONUNBUFFERED="1",
                        TRITON_INTERPRET="1" if dry else "0")
            if dry:
                # under the interpreter, kernels are Python that the frame hook
                # would trace (5-10x slower): kept where it skips library code
                cenv["JANUS_FRAME_CACHE_DIR"] = os.path.join(cdir, "inductor", "janus")
                cenv["TORCHINDUCTOR_COMPILE_THREADS"] = "1"
            else:
                cenv["JANUS_FRAME_CACHE_DIR"] = os.path.join(cdir, "janus")
            events = os.path.join(cdir, "events.jsonl")
            os.makedirs(cdir, exist_ok=True)
            cmd = [sys.executable, WORKER, "--events", events, "--workloads", ",".join(remaining),
                   "--systems", ",".join(systems), "--deadline", str(min(share, deadline)),
                   "--inductor-rows", ",".join(ind_rows)] + (["--dry-run"] if dry else [])
            wlog.write(f"\n==== worker tuning={tune} #{n}: {' '.join(cmd)}\n")
            wlog.flush()
            p = subprocess.Popen(cmd, cwd=REPO, env=cenv, stdout=wlog, stderr=subprocess.STDOUT,
                                 start_new_session=True)
            st = {"current": None, "started": None, "phase": None}
            pos, buf, killed = 0, "", None
            while True:
                done = p.poll() is not None
                if os.path.exists(events):
                    with open(events) as f:
                        f.seek(pos)
                        chunk = f.read()
                        pos = f.tell()
                    buf += chunk
                    *lines, buf = buf.split("\n")
                    for line in lines:
                        if line.strip():
                            _event(rep, json.loads(line), tune, systems, remaining, st)
                    rep.save()
                if done:
                    break
                now = time.time()
                if st["current"] and now - st["started"] > args.workload_timeout:
                    killed = f"the workload ran past its {args.workload_timeout:.0f} s limit"
                elif now > min(share, deadline):
                    killed = "the time budget ran out"
                if killed:
                    _kill(p)
                    p.wait()
                    continue  # read what it wrote last, then stop
                time.sleep(0.2)
            rc = p.returncode
            last_rc = rc
            current = st["current"]
            if current is not None:
                status = "timeout" if killed else "crashed"
                where = st["phase"] or "start-up"
                reason = (f"{killed} (killed in {where}, {time.time() - st['started']:.0f} s into the workload)"
                          if killed else f"worker exited ({rc}) in {where}; see workers.log")
                for s in systems:
                    r = rep.workload(current)["systems"].get(s)
                    if r is None or r.get("status") == "running":
                        rep.set_system(current, s, dict(r or {}, status=status, reason=reason))
                    elif r.get("status") == "ok" and "ms" not in r:
                        r.setdefault("notes", []).append(f"correct, but not timed: {reason}")
                if current in remaining:
                    remaining.remove(current)
            elif rc != 3 and remaining:
                rep.doc["notes"].append(f"worker tuning={tune} exited {rc} before "
                                        f"{', '.join(remaining)}; see workers.log")
                if n >= 3 or rc == 0 or killed:
                    break
            rep.save()
            if killed and "budget" in killed:
                continue  # the loop's head marks the rest skipped
        for wname in todo:  # never silently absent
            for s in systems:
                if s not in rep.workload(wname)["systems"]:
                    rep.set_system(wname, s, {"status": "crashed", "reason": f"the worker failed (exit {last_rc}) "
                                              "before it; see workers.log"} if last_rc not in (0, 3) else
                                   {"status": "skipped", "reason": "worker never reached it"})
        rep.save()
    wlog.close()


def _event(rep: Report, ev: dict, tune: str, systems, remaining, st: dict) -> None:
    """Merge one worker event into the report; ``st`` tracks the workload
    and phase in progress (for a timeout's reason)."""
    kind = ev.get("event")
    if kind == "hello":
        rep.doc["workers"].append(dict(ev, tuning_env=tune))
        for k in ("gpu", "triton"):
            if ev.get(k) and not rep.doc["meta"].get(k):
                rep.doc["meta"][k] = ev[k]
        if ev.get("backend_only_reason"):
            note = f"backend only: {ev['backend_only_reason']}"
            if note not in rep.doc["notes"]:
                rep.doc["notes"].append(note)
    elif kind == "start":
        w = rep.workload(ev["workload"])
        w.update({k: ev[k] for k in ("title", "size", "kind", "rtol") if k in ev})
        st.update(current=ev["workload"], started=time.time(), phase=None)
    elif kind == "phase":
        st["phase"] = f"{ev.get('system')}: {ev.get('phase')}"
    elif kind == "system":
        rep.set_system(ev["workload"], ev["system"], dict(ev["result"], tuning=tune))
    elif kind == "skip":
        for s in systems:
            if s not in rep.workload(ev["workload"])["systems"]:
                rep.set_system(ev["workload"], s, {"status": "skipped", "reason": ev.get("reason", "")})
        if ev["workload"] in remaining:
            remaining.remove(ev["workload"])
    elif kind == "error":
        w = rep.workload(ev["workload"])
        w.setdefault("errors", []).append({"tuning": tune, "reason": ev.get("reason"),
                                           "traceback": ev.get("traceback")})
        for s in systems:
            r = w["systems"].get(s)
            if r is None or r.get("status") == "running":
                rep.set_system(ev["workload"], s, dict(r or {}, status="crashed",
                                                       reason=f"workload failed: {ev.get('reason')}"))
    elif kind == "done":
        if ev["workload"] in remaining:
            remaining.remove(ev["workload"])
        st.update(current=None, started=None, phase=None)
    elif kind == "fatal":
        rep.doc["notes"].append(f"worker tuning={tune}: {ev.get('reason')}")


# --------------------------------------------------------------------- main
def _versions() -> dict:
    out = {"python": sys.version.split()[0]}
    try:
        import torch

        out["torch"] = torch.__version__
        out["cuda_available"] = bool(torch.cuda.is_available())
    except Exception as e:  # noqa: BLE001
        out["torch"] = f"unavailable: {e}"
        out["cuda_available"] = False
    try:
        from importlib.metadata import version

        out["triton"] = version("triton")
    except Exception:  # noqa: BLE001
        out["triton"] = None
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="GPU check of janus_frame's Triton backend (see the module docstring)")
    ap.add_argument("--out", default=os.path.join(HERE, "results"), help="folder for the JSON, markdown and logs")
    ap.add_argument("--dry-run", action="store_true",
                    help="CPU: Triton's interpreter, tiny sizes, 2 timing rounds (automatic without CUDA)")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds for the whole check (default 450 on a GPU, 240 dry)")
    ap.add_argument("--only", default=None, help=f"comma list of rows (default: {','.join(ALL_ROWS)})")
    ap.add_argument("--install", choices=("auto", "yes", "no"), default="auto",
                    help="auto: install unless janus_frame already imports from this checkout")
    ap.add_argument("--install-only", action="store_true", help="stop after the install step")
    ap.add_argument("--no-tests", action="store_true", help="skip the Triton test subset")
    ap.add_argument("--inductor-rows", default=None,
                    help="rows also compiled by torch.compile (default: all; dry run: pointwise_cheap)")
    ap.add_argument("--tuned-rows", default=None,
                    help="rows run with tuning on (default: all; dry run: the inference rows and mlp)")
    ap.add_argument("--workload-timeout", type=float, default=None,
                    help="seconds one workload may take in one worker (default 150 on a GPU, 120 dry)")
    ap.add_argument("--first-share", type=float, default=0.62,
                    help="share of the workload time the untuned worker may use (the tuned one gets the rest)")
    args = ap.parse_args(argv)

    started = time.time()
    vers = _versions()
    if not args.dry_run and not vers["cuda_available"]:
        print("gpu_check: no CUDA device: dry run on the CPU (Triton interpreter)", flush=True)
        args.dry_run = True
    dry = args.dry_run
    budget = args.budget or (240.0 if dry else 450.0)
    deadline = started + budget
    args.rows = [r.strip() for r in (args.only or ",".join(ALL_ROWS)).split(",") if r.strip()]
    bad = [r for r in args.rows if r not in ALL_ROWS]
    if bad:
        ap.error(f"unknown rows {bad}; known: {ALL_ROWS}")
    args.inductor_rows = (args.inductor_rows.split(",") if args.inductor_rows is not None
                          else (["pointwise_cheap"] if dry else list(ALL_ROWS)))
    args.tuned_rows = (args.tuned_rows.split(",") if args.tuned_rows is not None
                       else (INFER_ROWS + ["mlp"] if dry else list(ALL_ROWS)))
    args.workload_timeout = args.workload_timeout or (120.0 if dry else 150.0)
    import socket

    meta = {"command": "python " + " ".join([os.path.relpath(__file__, REPO)] + (argv if argv is not None else sys.argv[1:])),
            "started": datetime.datetime.now().isoformat(timespec="seconds"), "started_epoch": started,
            "dry_run": dry, "budget_s": budget, "hostname": socket.gethostname(), "cores": os.cpu_count(),
            "rows": args.rows, **vers}
    try:
        meta["git"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                     text=True, timeout=10).stdout.strip() or None
    except Exception:  # noqa: BLE001
        meta["git"] = None
    if not dry:
        try:
            q = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                               capture_output=True, text=True, timeout=20)
            meta["nvidia_smi"] = q.stdout.strip()
        except Exception as e:  # noqa: BLE001
            meta["nvidia_smi"] = f"unavailable: {e}"
    out_dir = os.path.abspath(args.out)
    os.makedirs(out_dir, exist_ok=True)
    rep = Report(out_dir, meta)
    rep.save()
    tmp = tempfile.mkdtemp(prefix="jf-gpu-check-")

    def log(msg):
        print(f"[gpu_check {time.time() - started:6.1f}s] {msg}", flush=True)

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([REPO] + [p for p in [env.get("PYTHONPATH")] if p])
    log(f"{'dry run' if dry else 'GPU'}; budget {budget:.0f} s; results in {out_dir}")
    env = install(rep, args.install, os.path.join(out_dir, "install.log"), env)
    rep.save()
    log(f"install: {rep.doc['install'].get('status')} ({rep.doc['install'].get('method')}) "
        f"{rep.doc['install'].get('reason', '')}")
    if args.install_only:
        return 0 if rep.doc["install"].get("status") in ("ok", "skipped") else 1
    if rep.doc["install"].get("method") == "none":
        rep.doc["notes"].append("janus_frame does not import: nothing else can run")
        rep.save()
        return 1
    backend_only = rep.doc["install"].get("method") == "backend-only"
    if args.no_tests:
        rep.doc["triton_tests"] = {"status": "skipped", "summary": "--no-tests"}
    else:
        left = deadline - time.time()
        run_tests(rep, env, out_dir, dry, timeout=max(30.0, min(150.0, 0.28 * left)), backend_only=backend_only)
        log(f"Triton tests: {rep.doc['triton_tests'].get('status')} {rep.doc['triton_tests'].get('summary')}")
    rep.save()
    try:
        run_workers(rep, env, args, tmp, deadline)
    finally:
        wl = os.path.join(tmp, "workers.log")
        if os.path.exists(wl):
            with open(wl, "rb") as f:
                f.seek(max(0, os.path.getsize(wl) - LOG_CAP))
                data = f.read()
            with open(os.path.join(out_dir, "workers.log"), "wb") as f:
                f.write(data)
        rep.save()
    s = rep.doc["summary"]
    log(f"done: {s['ok']} ok, {s['wrong']} WRONG, {s['crashed']} crashed, {s['timeout']} timed out, "
        f"{s['fallback']} fell back, {s['skipped']} skipped; exit {s['exit_code']}")
    for f in s["failures"][:20]:
        log(f"  {f[:300]}")
    shutil.rmtree(tmp, ignore_errors=True)
    return s["exit_code"]


if __name__ == "__main__":
    sys.exit(main())
