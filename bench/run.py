"""The benchmark command: every workload x every system, one table.

Usage (from the repository root):
    python -m bench [--only mlp,lstm] [--systems eager,janus,...] [--quick]
                    [--out DIR] [--threads 2] [--timeout S] [--list]
    python bench/run.py ...            (same thing)

In:  the workloads of bench/workloads and the systems of bench/systems.py.
Out: in DIR (default bench/results):
     <date>T<HHMM>-<machine>.json   every figure, the machine, the exact command
     <date>T<HHMM>-<machine>.md     summary + detail tables (n/a and WRONG with reasons)
     <date>T<HHMM>-<machine>.png    speedup vs eager per workload and system
     latest.md / latest.png         copies of the newest full (non --quick) run
     logs/<stamp>-<workload>.log    each worker's stderr (compiler output, tracebacks)
--quick runs use tiny sizes and few steps (the smoke test); their files end
in -quick and never replace latest.*.

Each workload runs in a fresh subprocess (bench/worker.py) with fresh cache
directories (JANUS_FRAME_CACHE_DIR, TORCHINDUCTOR_CACHE_DIR), so the first
call of each system is a cold compile and peak memory is per workload. A
progress bar on stderr shows the workload, phase and system being run.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time

if __package__ in (None, ""):
    # `python bench/run.py`: make the `bench` package importable.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = "bench"

from bench.machine import machine_info, machine_slug  # noqa: E402
from bench.report import chart, markdown  # noqa: E402
from bench.systems import DEFAULT_SYSTEMS, SYSTEMS  # noqa: E402
from bench.workloads import WORKLOADS  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "bench", "results")


class Progress:
    """A one-line progress bar on stderr (one line per update when not a tty).

    Thread-safe: with --jobs > 1 several workloads report at once; the bar
    counts finished workloads plus the fraction done of those in flight.
    """

    def __init__(self, total: int) -> None:
        self.total = max(total, 1)
        self.finished = 0
        self.inflight: dict[str, float] = {}
        self.t0 = time.time()
        self.tty = sys.stderr.isatty()
        self.last = ""
        self.lock = threading.Lock()

    def show(self, name: str, label: str, frac_in_item: float | None = None) -> None:
        with self.lock:
            if frac_in_item is not None:
                self.inflight[name] = frac_in_item
            frac = min((self.finished + sum(self.inflight.values())) / self.total, 1.0)
            n = 28
            fill = int(frac * n)
            el = int(time.time() - self.t0)
            label = f"{self.finished}/{self.total} {name}: {label}"
            line = (f"[{'#' * fill}{'.' * (n - fill)}] {frac * 100:5.1f}% {el // 60:02d}:{el % 60:02d} "
                    f"{label}")
            if self.tty:
                width = shutil.get_terminal_size((100, 20)).columns - 1
                sys.stderr.write("\r" + line[:width].ljust(width))
            elif label != self.last:  # a log file: one line per new phase, not per second
                sys.stderr.write(line + "\n")
            sys.stderr.flush()
            self.last = label

    def complete(self, name: str) -> None:
        with self.lock:
            self.inflight.pop(name, None)
            self.finished += 1

    def finish(self) -> None:
        if self.tty:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _git_rev() -> str:
    """Revision of the janus_frame source being measured (its own checkout,
    which need not be the directory this bench/ copy runs from)."""
    try:
        import janus_frame

        where = os.path.dirname(os.path.abspath(janus_frame.__file__))
    except Exception:  # noqa: BLE001
        where = REPO
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=where, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (rev or "?") + ("+dirty" if dirty else "")
    except Exception:  # noqa: BLE001
        return "?"


def _command() -> str:
    prog = "python -m bench" if __name__ != "__main__" or sys.argv[0].endswith("__main__.py") else "python bench/run.py"
    return " ".join([prog] + sys.argv[1:])


def run_workload(name: str, systems: list[str], args, progress: Progress, log_path: str) -> dict:
    """Run one workload in a fresh worker process; collect its events."""
    cache_root = tempfile.mkdtemp(prefix=f"janus-bench-{name}-")
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = str(args.threads)
    # On 2 cores Inductor's compile worker pool competes with the workload
    # and distorts timings; compile in-process instead.
    env.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")
    env["HF_HUB_OFFLINE"] = "1"
    env["TRANSFORMERS_OFFLINE"] = "1"
    env["JANUS_FRAME_CACHE_DIR"] = os.path.join(cache_root, "janus")
    env["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(cache_root, "inductor")
    cmd = [sys.executable, "-m", "bench.worker", "--workload", name, "--systems", ",".join(systems),
           "--threads", str(args.threads), "--cache-root", cache_root]
    if args.quick:
        cmd.append("--quick")
    cmd += ["--var-budget", str(args.var_budget)]
    wl: dict = {"name": name, "title": WORKLOADS[name].title, "systems": {},
                "spelling_of": WORKLOADS[name].spelling_of}
    rounds = 2 if args.quick else 5
    n = len(systems) + (0 if "eager" in systems else 1)
    expected = n * (6 + rounds) + 3
    seen = 0
    phase = "starting"
    phase_s: dict[str, float] = {}
    last_phase, last_t = None, 0.0
    t0 = time.time()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=log, text=True,
                                start_new_session=True)
        q: queue.Queue = queue.Queue()

        def reader():
            for line in proc.stdout:
                q.put(line)
            q.put(None)

        threading.Thread(target=reader, daemon=True).start()
        deadline = t0 + args.timeout
        fatal = None
        done = False
        while True:
            try:
                line = q.get(timeout=1.0)
            except queue.Empty:
                if time.time() > deadline:
                    os.killpg(proc.pid, 9)  # the worker's own process group, started above
                    fatal = f"timed out after {args.timeout:.0f} s during {phase}"
                    break
                progress.show(name, phase, min(seen / expected, 0.99))
                continue
            if line is None:
                break
            try:
                e = json.loads(line)
            except json.JSONDecodeError:
                continue
            kind = e.pop("event", None)
            t_ev = e.pop("t", None)
            if t_ev is not None and kind in ("progress", "done", "header"):
                # Seconds per phase: a progress event starts a phase, the next
                # one (or "done") ends it; "setup" is imports + building data.
                if last_phase is not None:
                    phase_s[last_phase] = round(phase_s.get(last_phase, 0.0) + t_ev - last_t, 3)
                elif kind == "header":
                    phase_s["setup"] = t_ev
                if kind == "progress":
                    last_phase, last_t = str(e.get("phase", "")).split(" ")[0], t_ev
            if kind == "progress":
                seen += 1
                phase = f"{e.get('phase')} · {e.get('system') or ''}".rstrip(" ·")
                progress.show(name, phase, min(seen / expected, 0.99))
            elif kind == "header":
                wl.update(e)
            elif kind == "result":
                wl["systems"][e["system"]] = e["data"]
            elif kind == "done":
                wl["load_average_end"] = e.get("load_average_end")
                wl["maxrss_mib"] = e.get("maxrss_mib")
                done = True
            elif kind == "fatal":
                fatal = f"worker failed: {e.get('reason')}"
                wl["traceback"] = e.get("traceback")
        proc.wait()
    shutil.rmtree(cache_root, ignore_errors=True)
    wl["wall_s"] = round(time.time() - t0, 1)
    wl["phase_s"] = phase_s
    if not done and fatal is None:
        tail = ""
        try:
            with open(log_path) as f:
                tail = " ".join(f.read().strip().splitlines()[-3:])[-300:]
        except OSError:
            pass
        fatal = f"worker exited with code {proc.returncode} before finishing: {tail}"
    if fatal:
        wl["error"] = fatal
    all_systems = (["eager"] if "eager" not in systems else []) + systems
    for s in all_systems:
        if s not in wl["systems"]:
            wl["systems"][s] = {"system": s, "status": "n/a", "reason": fatal or "no result"}
    return wl


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench", description="janus_frame benchmark suite")
    ap.add_argument("--only", default="", help="comma list of workloads (default: all); see --list. "
                    "A workload with a second spelling (NAME-b) brings it along unless --spellings "
                    "says otherwise")
    ap.add_argument("--spellings", choices=("both", "first", "second"), default="both",
                    help="for workloads written two ways: run both (default; the summary shows "
                         "the worse), only the first, or only the second spelling")
    ap.add_argument("--systems", default=",".join(DEFAULT_SYSTEMS),
                    help=f"comma list of: {', '.join(SYSTEMS)} (default: {', '.join(DEFAULT_SYSTEMS)})")
    ap.add_argument("--quick", action="store_true", help="tiny sizes and few steps (smoke test)")
    ap.add_argument("--out", default=RESULTS, help="results directory (default bench/results)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--timeout", type=float, default=None,
                    help="seconds per workload process (default 3600, 600 with --quick)")
    ap.add_argument("--var-budget", type=float, default=300.0,
                    help="seconds per system for a variable-size run before it stops early "
                         "(default 300; 0: no limit); the table shows 'k/n calls' when it stopped")
    ap.add_argument("--jobs", type=int, default=1,
                    help="workloads run at once (default 1; > 1 makes timings meaningless: smoke tests only)")
    ap.add_argument("--list", action="store_true", help="list workloads and systems, then exit")
    args = ap.parse_args(argv)
    if args.timeout is None:
        args.timeout = 600.0 if args.quick else 3600.0
    return args


def select(only: str, spellings: str = "both") -> list[str]:
    """The workloads to run, in WORKLOADS order: those named in ``only`` (all
    when empty), each with its second spellings, filtered by ``spellings``;
    unknown names are returned as they are (the caller reports them)."""
    names = [w for w in only.split(",") if w] or [n for n, c in WORKLOADS.items() if not c.spelling_of]
    unknown = [w for w in names if w not in WORKLOADS]
    wanted = set(names)
    wanted |= {n for n, c in WORKLOADS.items() if c.spelling_of in wanted}
    out = []
    for n, c in WORKLOADS.items():
        if n not in wanted:
            continue
        second = c.spelling_of is not None
        if (spellings == "first" and second and n not in names) or (spellings == "second" and not second
                                                                    and any(c2.spelling_of == n for c2 in WORKLOADS.values())):
            continue
        out.append(n)
    return out + unknown


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.list:
        for name, cls in WORKLOADS.items():
            print(f"{name:26s} {cls.title}" + (f" (second spelling of {cls.spelling_of})"
                                                if cls.spelling_of else ""))
        print()
        for name, s in SYSTEMS.items():
            print(f"{name:26s} {s.doc}")
        return 0
    only = select(args.only, args.spellings)
    bad = [w for w in only if w not in WORKLOADS]
    systems = [s for s in args.systems.split(",") if s]
    bad += [s for s in systems if s not in SYSTEMS]
    if bad:
        print(f"unknown workload/system: {', '.join(bad)} (see --list)", file=sys.stderr)
        return 2
    os.makedirs(os.path.join(args.out, "logs"), exist_ok=True)
    import torch

    torch.set_num_threads(args.threads)
    info = machine_info()
    now = datetime.datetime.now()
    stamp = f"{now:%Y-%m-%dT%H%M}-{machine_slug(info)}" + ("-quick" if args.quick else "")
    doc = {"meta": {"date": now.isoformat(timespec="seconds"), "command": _command(),
                    "quick": args.quick, "threads": args.threads, "jobs": args.jobs, "systems": systems,
                    "workloads": only, "machine": info, "git": _git_rev()},
           "workloads": []}
    progress = Progress(len(only))
    t0 = time.time()
    base = os.path.join(args.out, stamp)
    results: dict[str, dict] = {}
    lock = threading.Lock()

    def one(name: str) -> None:
        progress.show(name, "starting", 0.0)
        wl = run_workload(name, systems, args, progress, os.path.join(args.out, "logs", f"{stamp}-{name}.log"))
        progress.complete(name)
        with lock:
            results[name] = wl
            doc["workloads"] = [results[n] for n in only if n in results]
            doc["meta"]["total_s"] = round(time.time() - t0, 1)
            # Written after every workload, so an interrupted run keeps what it measured.
            write(doc, base, latest=False)

    if args.jobs <= 1:
        for name in only:
            one(name)
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(args.jobs) as pool:
            list(pool.map(one, only))
    progress.show("all", "done")
    progress.finish()
    write(doc, base, latest=not args.quick)
    print(f"wrote {base}.json, {base}.md, {base}.png")
    return 0


def write(doc: dict, base: str, latest: bool) -> None:
    with open(base + ".json.tmp", "w") as f:
        json.dump(doc, f, indent=1)
    os.replace(base + ".json.tmp", base + ".json")
    md = markdown(doc)
    with open(base + ".md", "w") as f:
        f.write(md)
    try:
        chart(doc, base + ".png")
    except Exception as e:  # noqa: BLE001 - a missing matplotlib must not lose the results
        print(f"chart not written: {type(e).__name__}: {e} (pip install matplotlib)", file=sys.stderr)
    if latest:
        out = os.path.dirname(base)
        shutil.copyfile(base + ".md", os.path.join(out, "latest.md"))
        if os.path.exists(base + ".png"):
            shutil.copyfile(base + ".png", os.path.join(out, "latest.png"))


if __name__ == "__main__":
    sys.exit(main())
