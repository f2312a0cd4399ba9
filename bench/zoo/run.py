"""The model zoo command: every model x case x system, one JSON and one table.

Usage (from the repository root):
    python -m bench.zoo [--only bert,gpt2] [--systems janus-eager,janus,torch.compile]
                        [--cases infer-mask,...] [--quick] [--out DIR]
                        [--threads 2] [--case-timeout S]
    python -m bench.zoo --report results/zoo-X.json [--merge a.json b.json ...]

In:  the registry of bench/zoo/models.py and the systems of bench/zoo/systems.py.
Out: DIR/zoo-<date>T<HHMM>[-quick].json (every figure, per model / system /
     case, the machine and the command) and .md (bench/zoo/report.py);
     logs/zoo-<stamp>-<model>-<system>.log (each worker's stderr).

One fresh process per (model, system) (bench/zoo/worker.py); eager runs in
each of them as the reference. A case that raises is recorded and the next
case runs; a case that hangs past --case-timeout is stopped by the worker
(SIGALRM) or, failing that, the process is killed; a process that dies
(crash, kill) is restarted for the cases it had not finished, so one model's
failure never loses the others. The JSON is rewritten after every process.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import queue
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RESULTS = os.path.join(REPO, "bench", "results")


def run_worker(model: str, system: str, cases: list[str], args, log) -> tuple[dict, float | None]:
    """All ``cases`` of ``model`` under ``system``; restarts the worker after
    a crash or a kill. Returns {case: data} and the start-up seconds."""
    out: dict[str, dict] = {}
    startup = None
    left = list(cases)
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TRANSFORMERS_VERBOSITY="error",
               TORCHINDUCTOR_COMPILE_THREADS="1", OMP_NUM_THREADS=str(args.threads))
    while left:
        cmd = [sys.executable, "-m", "bench.zoo.worker", "--model", model, "--system", system,
               "--cases", ",".join(left), "--threads", str(args.threads),
               "--case-timeout", str(args.case_timeout)] + (["--quick"] if args.quick else [])
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
        q: queue.Queue = queue.Queue()

        def reader():
            for line in proc.stdout:
                q.put(line)
            q.put(None)

        threading.Thread(target=reader, daemon=True).start()
        current = None
        deadline = time.time() + args.case_timeout + 180  # start-up (imports, probe) included
        fatal = None
        while True:
            try:
                line = q.get(timeout=max(deadline - time.time(), 0.1))
            except queue.Empty:
                proc.kill()
                proc.wait()
                if current is not None:
                    out[current] = {"status": "timeout",
                                    "reason": f"worker killed after {args.case_timeout:.0f} s + grace "
                                              f"(no reply to SIGALRM)"}
                break
            if line is None:
                break
            try:
                e = json.loads(line)
            except ValueError:
                continue
            kind = e.get("event")
            if kind == "startup":
                startup = e.get("seconds")
            elif kind == "start":
                current = e["case"]
                deadline = time.time() + args.case_timeout + 120
                if sys.stderr.isatty():
                    sys.stderr.write(f"  {model:<10} {system:<13} {current:<13} ...\n")
            elif kind == "progress":
                if sys.stderr.isatty():
                    sys.stderr.write(f"\r    {e.get('phase')}        ")
            elif kind == "case":
                out[e["case"]] = e["data"]
                d = e["data"]
                sys.stderr.write(f"  {model:<10} {system:<13} {e['case']:<13} {d.get('status')}"
                                 f"  {str(d.get('reason') or '')[:90]}\n")
                current = None
            elif kind == "fatal":
                fatal = e.get("error")
        rc = proc.wait()
        if current is not None and current not in out:
            out[current] = {"status": "crashed", "reason": f"worker exited with status {rc}",
                            "error": fatal}
        elif fatal is not None and not out:
            for c in left:
                out[c] = {"status": "crashed", "reason": f"worker failed before the case: "
                                                        f"{fatal.get('type')}: {fatal.get('message', '')[:300]}",
                          "error": fatal}
        left = [c for c in left if c not in out]
    return out, startup


def main(argv=None) -> int:
    from bench.machine import machine_info

    from . import models as Z
    from .report import markdown, merge
    from .systems import COMPILED
    from .worker import CASES

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="models (default: the 15 of issue 19)")
    ap.add_argument("--systems", default=",".join(COMPILED))
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--quick", action="store_true", help="hidden 64, 2 heads, seq 16, fewer timing rounds")
    ap.add_argument("--out", default=RESULTS)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--case-timeout", type=float, default=600.0)
    ap.add_argument("--report", default=None, help="re-render the markdown of a JSON file")
    ap.add_argument("--merge", nargs="*", default=None, help="with --report: JSON files joined into it")
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args(argv)
    if args.list:
        for n, m in Z.MODELS.items():
            print(f"{n:<12} {m.model_class}{'  (extra)' if m.extra else ''}")
        return 0
    if args.report:
        doc = merge([args.report] + (args.merge or []))
        with open(args.report, "w") as f:
            json.dump(doc, f, indent=1)
        text = markdown(doc)  # rendered first: a failure leaves the old file whole
        with open(args.report[:-5] + ".md", "w") as f:
            f.write(text)
        return 0

    names = [n for n in args.only.split(",") if n] or Z.DEFAULT_MODELS
    unknown = [n for n in names if n not in Z.MODELS]
    if unknown:
        ap.error(f"unknown model(s) {unknown}; --list shows them")
    systems = [s for s in args.systems.split(",") if s and s != "eager"]
    cases = [c for c in args.cases.split(",") if c]
    stamp = datetime.datetime.now().strftime("%Y-%m-%dT%H%M")
    os.makedirs(os.path.join(args.out, "logs"), exist_ok=True)
    base = os.path.join(args.out, f"zoo-{stamp}{'-quick' if args.quick else ''}")
    try:
        import torch
        import transformers

        versions = {"torch": torch.__version__, "transformers": transformers.__version__}
    except ImportError as e:
        print(f"bench.zoo needs transformers (pip install -e '.[bench]'): {e}", file=sys.stderr)
        return 2
    doc = {"command": "python -m bench.zoo " + " ".join(sys.argv[1:] if argv is None else argv),
           "started": stamp, "quick": args.quick, "threads": args.threads,
           "machine": machine_info(), "versions": versions, "revision": _git_rev(),
           "sizes": vars(Z.sizes(args.quick)) | {"ffn": Z.sizes(args.quick).ffn},
           "systems": systems, "cases": cases, "results": {}}
    t0 = time.time()
    for name in names:
        doc["results"].setdefault(name, {})
        for system in systems:
            logp = os.path.join(args.out, "logs", f"zoo-{stamp}-{name}-{system}.log")
            t = time.time()
            load = os.getloadavg()[0]
            with open(logp, "w") as log:
                res, startup = run_worker(name, system, cases, args, log)
            doc["results"][name][system] = {"startup_s": startup, "wall_s": time.time() - t,
                                            "load_average_start": load,
                                            "cases": res}
            doc["wall_s"] = time.time() - t0
            with open(base + ".json", "w") as f:
                json.dump(doc, f, indent=1)
    with open(base + ".md", "w") as f:
        f.write(markdown(doc))
    print(f"wrote {base}.json and .md ({(time.time() - t0) / 60:.1f} min)", file=sys.stderr)
    return 0


def _git_rev() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "src"], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (rev or "?") + ("+dirty-src" if dirty else "")
    except Exception:  # noqa: BLE001
        return "?"


if __name__ == "__main__":
    sys.exit(main())
