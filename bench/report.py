"""Turns a results JSON document into the markdown table and the PNG chart.

In:  the dict written by bench/run.py (``{"meta": ..., "workloads": [...]}``,
     see run.py for the schema).
Out: ``markdown(doc) -> str`` (a summary table of speedups plus one detail
     table per workload, every n/a and WRONG with its reason) and
     ``chart(doc, path)`` (speedup vs eager per workload and system, PNG).
     ``python -m bench.report results.json`` re-renders both from a JSON file;
     ``python -m bench.report --merge OUT.json A.json B.json [--latest]``
     joins runs on the same machine (e.g. one interrupted, one resumed with
     --only) into one table, each workload keeping its run's command.

Definitions used throughout:
  speedup          eager median / system median (higher is better)
  vs torch.compile torch.compile median / system median (> 1: faster than it)
  first call       wall time of the first call in a fresh process with a fresh
                   cache directory, after the system's start-up was paid by a
                   trivial probe compile (start-up is its own column)
  warm first call  the same after the frontend's in-memory caches were reset,
                   in the warm process (on-disk caches warm)
  recompiles       frames compiled after the first call during the main run
                   (same shapes every step)
  spellings        mlp, lstm, treelstm, resnet and gpt are each measured in two
                   spellings (NAME and NAME-b: the same kind of model written
                   differently); the summary table shows, per
                   system, the worse of the two, and which one it was
"""
from __future__ import annotations

import json
import math
import os
import sys

SYSTEM_ORDER = ["eager", "janus", "torch.compile", "janus+inductor", "dynamo+janus", "selftest-wrong"]


def _num(x):
    if isinstance(x, (int, float)) and math.isfinite(x):
        return x
    return None


def _fmt_time(s, unit):
    if _num(s) is None:
        return "–"
    return f"{s * 1e6:.1f} µs" if unit == "us" else f"{s * 1e3:.2f} ms"


def _fmt_s(s):
    return "–" if _num(s) is None else (f"{s:.2f}" if s < 10 else f"{s:.1f}")


def systems_of(doc) -> list[str]:
    seen = []
    for wl in doc["workloads"]:
        for s in wl.get("systems", {}):
            if s not in seen:
                seen.append(s)
    return sorted(seen, key=lambda s: SYSTEM_ORDER.index(s) if s in SYSTEM_ORDER else 99)


def speedups(wl) -> dict[str, float | None]:
    """eager median / system median for every system with a trustworthy time."""
    systems = wl.get("systems", {})
    eager = systems.get("eager", {})
    base = _num(eager.get("median_s"))
    out = {}
    for name, r in systems.items():
        med = _num(r.get("median_s"))
        out[name] = base / med if (base and med and r.get("status") == "ok") else None
    return out


def _cell(r, sp) -> str:
    st = r.get("status")
    if st == "WRONG":
        return "**WRONG**"
    if st != "ok":
        return "n/a"
    return f"{sp:.2f}×" if sp is not None else "–"


def _short(reason: str | None, n: int = 160) -> str:
    if not reason:
        return ""
    reason = reason.replace("|", "/").replace("\n", " ")
    return reason if len(reason) <= n else reason[: n - 1] + "…"


def families(doc) -> dict[str, list]:
    """Workloads by the model they measure, in table order: a second spelling
    (``spelling_of``) joins its first."""
    out: dict[str, list] = {}
    for wl in doc["workloads"]:
        out.setdefault(wl.get("spelling_of") or wl["name"], []).append(wl)
    for members in out.values():  # the first spelling first
        members.sort(key=lambda w: w.get("spelling_of") is not None)
    return out


_RANK = {"WRONG": 0, "n/a": 1}


def _worse(members, value):
    """(workload, its value) with the worse ``value(wl)``: a (status, number)
    pair where WRONG < n/a < ok and, among ok, the lower number is worse."""
    best = None
    for i, wl in enumerate(members):
        status, v = value(wl)
        key = (_RANK.get(status, 2), v if v is not None else float("inf"))
        if best is None or key < best[0]:
            best = (key, i, status, v)
    return best[1], best[2], best[3]


def _tag(members, i):
    return "" if len(members) == 1 else f" ({'ab'[i] if i < 2 else i})"


def _worse_cell(members, system):
    def value(wl):
        r = wl.get("systems", {}).get(system, {"status": "n/a"})
        return r.get("status", "n/a"), speedups(wl).get(system)

    i, status, v = _worse(members, value)
    r = members[i].get("systems", {}).get(system, {"status": "n/a"})
    return _cell(r, v) + _tag(members, i)


def _spellings_table(fams, systems) -> list[str]:
    out = ["Spellings (speedup vs eager, each spelling on its own):", "",
           "| workload | spelling | size | eager | " + " | ".join(s for s in systems if s != "eager") + " |",
           "|---|---|---|---|" + "---|" * (len(systems) - 1)]
    for fam, members in fams.items():
        if len(members) < 2:
            continue
        for i, wl in enumerate(members):
            sy = wl.get("systems", {})
            sp = speedups(wl)
            e = sy.get("eager", {})
            eager_cell = _fmt_time(e.get("median_s"), wl.get("unit")) if e.get("status") == "ok" else "n/a"
            cells = [_cell(sy.get(s, {"status": "n/a"}), sp.get(s)) for s in systems if s != "eager"]
            out.append(f"| {wl['name']} | {'ab'[i] if i < 2 else i}: {wl.get('title', '')} | "
                       f"{wl.get('size') or '–'} | {eager_cell} | " + " | ".join(cells) + " |")
    out.append("")
    return out


def markdown(doc) -> str:
    meta = doc["meta"]
    m = meta["machine"]
    systems = systems_of(doc)
    lines = []
    title = "janus_frame benchmark" + (" (QUICK: tiny sizes, not comparable)" if meta.get("quick") else "")
    lines.append(f"# {title}")
    lines.append("")
    lines.append(f"- date: {meta['date']}  ")
    if meta.get("runs"):
        for run in meta["runs"]:
            lines.append(f"- command ({run['date']}, git {run.get('git')}): `{run['command']}` — "
                         f"{', '.join(run['workloads'])}  ")
    else:
        lines.append(f"- command: `{meta['command']}`  ")
    lines.append(f"- machine: {m['cpu_model']}, {m['cores']} cores, {m.get('mem_gib')} GiB, "
                 f"caches {', '.join(f'{k} {v}' for k, v in (m.get('caches') or {}).items())}  ")
    lines.append(f"- torch {m['torch']}, Python {m['python']}, {meta.get('threads')} threads"
                 + ("" if meta.get("runs") else f"; git {meta.get('git', '?')}") + "  ")
    bw = next((wl["copy_bandwidth"] for wl in doc["workloads"] if wl.get("copy_bandwidth")), None)
    if bw:
        lines.append(f"- copy bandwidth (read+write): DRAM {bw['dram_copy_GBps']} GB/s, "
                     f"in-cache {bw['cache_copy_GBps']} GB/s  ")
    loads = [wl.get("load_average_start") for wl in doc["workloads"] if wl.get("load_average_start")]
    if loads:
        peak = max(l[0] for l in loads)
        warn = " — **the machine was busy: 2-thread timings are unreliable**" if peak > 0.7 * (m["cores"] or 1) + 0.3 else ""
        lines.append(f"- 1-min load average at workload start: max {peak:.2f}{warn}  ")
    lines.append("")
    lines.append("Speedup vs eager per training step (inference call for the pointwise rows); "
                 "higher is better. n/a and WRONG are explained in the detail tables below.")
    lines.append("")
    fams = families(doc)
    if any(len(members) > 1 for members in fams.values()):
        lines.append("Workloads measured in two spellings (NAME and NAME-b) show, per system, the "
                     "worse of the two (marked a or b); the spellings table below has both.")
        lines.append("")
    lines.append("| workload | size | eager | " + " | ".join(s for s in systems if s != "eager") + " |")
    lines.append("|---|---|---|" + "---|" * (len(systems) - 1))
    for fam, members in fams.items():
        wl = members[0]
        e = wl.get("systems", {}).get("eager", {})
        eager_cell = _fmt_time(e.get("median_s"), wl.get("unit")) if e.get("status") == "ok" else "n/a"
        if len(members) > 1:
            eager_cell = " / ".join(
                _fmt_time(m.get("systems", {}).get("eager", {}).get("median_s"), m.get("unit"))
                if m.get("systems", {}).get("eager", {}).get("status") == "ok" else "n/a" for m in members)
        cells = [_worse_cell(members, s) for s in systems if s != "eager"]
        size = wl.get("size") or "–"
        lines.append(f"| {fam} | {size} | {eager_cell} | " + " | ".join(cells) + " |")
    lines.append("")
    if any(len(members) > 1 for members in fams.values()):
        lines.extend(_spellings_table(fams, systems))
    if "janus" in systems and "torch.compile" in systems:
        lines.extend(_goals(doc))
    lines.append("Columns of the detail tables: median step time (min–max over the samples); speedup = "
                 "eager / system; vs tc = torch.compile / system (> 1: faster than torch.compile); "
                 "start-up = trivial probe compile; 1st call = first call in a fresh process with a cold "
                 "cache dir, start-up excluded; warm = first call again after the frontend's caches were "
                 "reset; graphs/breaks from explain on a fresh copy; recompiles = frames compiled after the "
                 "first call with unchanged shapes; var = frames compiled during the "
                 "variable-size sweep (every size once), + those compiled in a second pass over the same "
                 "sizes after it, and the sweep's seconds; mem = peak tensor memory of one step above its start; correct = max "
                 "relative error vs eager after the first steps (loss and all parameters/state).")
    lines.append("")
    for wl in doc["workloads"]:
        lines.extend(_detail(wl, systems))
    return "\n".join(lines) + "\n"


def _goals(doc) -> list[str]:
    """janus vs torch.compile on the DESIGN.md goals: speed, compile time, recompiles."""
    out = ["janus vs torch.compile (DESIGN.md §4 goals: faster than torch.compile, first call ≤ 1/5 of "
           "its time, at most one recompile over a variable-size run):", "",
           "| workload | janus speed vs tc (> 1: janus faster) | janus 1st call s | tc 1st call s | compile ratio | "
           "janus var compiles | tc var compiles |", "|---|---|---|---|---|---|---|"]
    for wl in doc["workloads"]:
        j = wl.get("systems", {}).get("janus", {})
        t = wl.get("systems", {}).get("torch.compile", {})

        def st(r):
            return r.get("status", "n/a")

        speed = "–"
        if st(j) != "ok" or st(t) != "ok":
            speed = st(j) if st(j) != "ok" else f"tc {st(t)}"
        elif _num(j.get("median_s")) and _num(t.get("median_s")):
            speed = f"{t['median_s'] / j['median_s']:.2f}×"
        jf, tf = _num(j.get("first_call_s")), _num(t.get("first_call_s"))
        ratio = f"{jf / tf:.2f}" if (jf and tf and st(j) != "n/a" and st(t) != "n/a") else "–"

        def var(r):
            v = r.get("var") or {}
            if v.get("compiles") is None or st(r) == "n/a":
                return "–"
            stopped = f" of {v['of']} (time budget)" if v.get("of") and v["of"] != v["calls"] else ""
            return f"{v['compiles']} in {v['calls']}{stopped}{_after(v)}"

        out.append(f"| {wl['name']} | {speed} | {_fmt_s(jf) if st(j) != 'n/a' else 'n/a'} | "
                   f"{_fmt_s(tf) if st(t) != 'n/a' else 'n/a'} | {ratio} | {var(j)} | {var(t)} |")
    out.append("")
    return out


def _after(v: dict) -> str:
    """The frames compiled in the variable-size run's second pass over the
    same sizes (after the sweep), when it ran and was counted."""
    if v.get("compiles_after") is None:
        return ""
    return f" + {v['compiles_after']} after"


def _detail(wl, systems) -> list[str]:
    unit = wl.get("unit")
    out = [f"### {wl['name']}: {wl.get('title', '')}", ""]
    out.append(f"Size: {wl.get('size') or '–'}." + (f" Variable-size run: {wl['var_desc']}." if wl.get("var_desc") else ""))
    if wl.get("error"):
        out.append(f"Workload error: {_short(wl['error'], 400)}")
    out.append("")
    sy = wl.get("systems", {})
    sp = speedups(wl)
    tc = _num(sy.get("torch.compile", {}).get("median_s")) if sy.get("torch.compile", {}).get("status") == "ok" else None
    extra_keys = sorted({k for r in sy.values() for k in (r.get("extra") or {})})
    head = ["system", "median (min–max)", "speedup", "vs tc", "start-up s", "1st call s", "warm s",
            "graphs/breaks", "recompiles", "var", "mem MiB", "correct"] + extra_keys
    out.append("| " + " | ".join(head) + " |")
    out.append("|" + "---|" * len(head))
    notes = []
    for s in systems:
        r = sy.get(s)
        if r is None:
            continue
        st = r.get("status")
        if st == "n/a":
            out.append(f"| {s} | n/a: {_short(r.get('reason'))} |" + " |" * (len(head) - 2))
            continue
        med = _num(r.get("median_s"))
        timing = (f"{_fmt_time(med, unit)} ({_fmt_time(r.get('min_s'), unit)}–{_fmt_time(r.get('max_s'), unit)})"
                  if med else "–")
        if st == "WRONG":
            speed, vs = "**WRONG**", "–"
        else:
            speed = f"{sp[s]:.2f}×" if sp.get(s) else "–"
            vs = f"{tc / med:.2f}" if (tc and med and s != "eager") else "–"
        ex = r.get("explain") or {}
        if ex.get("error"):
            gb = "n/a"
            notes.append(f"{s}: explain failed: {_short(ex['error'])}")
        elif ex:
            gb = f"{ex.get('graphs', '?')}/{ex.get('breaks', '?')}"
        else:
            gb = "–"
        var = r.get("var")
        var_s = "–"
        if var:
            c = var.get("compiles")
            calls = var.get("calls")
            if var.get("of") and var["of"] != calls:
                calls = f"{calls}/{var['of']} (time budget)"
            var_s = (f"{calls} calls" if c is None else f"{c} in {calls}") + _after(var) + \
                f", {_fmt_s(var.get('total_s'))} s"
            if var.get("ok") is False:
                var_s += " **WRONG**"
        corr = r.get("correct") or {}
        if corr.get("reference"):
            corr_s = "reference"
        elif corr:
            e = corr.get("max_rel_err")
            corr_s = (f"{e:.1e}" if isinstance(e, (int, float)) else str(e)) + (" ok" if corr.get("ok") else " **WRONG**")
        else:
            corr_s = "–"
        mem = r.get("peak_step_mem_mib")
        row = [s, timing, speed, vs, _fmt_s(r.get("startup_s")) if r.get("startup_s") else "–",
               _fmt_s(r.get("first_call_s")), _fmt_s(r.get("warm_first_call_s")), gb,
               str(r.get("recompiles", "–")), var_s, f"{mem:.1f}" if _num(mem) is not None else "–", corr_s]
        row += [str((r.get("extra") or {}).get(k, "–")) for k in extra_keys]
        out.append("| " + " | ".join(row) + " |")
        if st == "WRONG":
            notes.append(f"{s}: WRONG — {_short(r.get('reason'), 300)}")
        for n in r.get("notes") or []:
            notes.append(f"{s}: {n}")
        brk = ex.get("break_reasons") or []
        if brk:
            notes.append(f"{s}: breaks: " + "; ".join(_short(b, 120) for b in brk[:3]))
    out.append("")
    for n in notes:
        out.append(f"- {n}")
    if notes:
        out.append("")
    return out


def chart(doc, path: str) -> None:
    """Grouped bar chart of speedup vs eager (log scale), n/a and WRONG labelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    systems = [s for s in systems_of(doc) if s != "eager"]
    wls = doc["workloads"]
    colors = {"janus": "#1f77b4", "torch.compile": "#ff7f0e", "janus+inductor": "#2ca02c",
              "dynamo+janus": "#9467bd", "selftest-wrong": "#7f7f7f"}
    width = 0.8 / max(len(systems), 1)
    fig, ax = plt.subplots(figsize=(max(8, 1.1 * len(wls) + 2), 4.8))
    vals = [v for wl in wls for v in speedups(wl).values() if v]
    lo = min(vals + [0.5]) / 1.6
    hi = max(vals + [2.0]) * 1.6
    for i, wl in enumerate(wls):
        sp = speedups(wl)
        for j, s in enumerate(systems):
            x = i - 0.4 + width * (j + 0.5)
            r = wl.get("systems", {}).get(s)
            if r is None:
                continue
            v = sp.get(s)
            if r.get("status") == "ok" and v:
                ax.bar(x, v, width, color=colors.get(s, "gray"))
                ax.text(x, v * 1.03, f"{v:.2g}", ha="center", va="bottom", fontsize=6, rotation=90)
            else:
                label = "WRONG" if r.get("status") == "WRONG" else "n/a"
                ax.text(x, lo * 1.1, label, rotation=90, ha="center", va="bottom", fontsize=7,
                        color="red" if label == "WRONG" else "gray")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_ylim(lo, hi)
    ax.set_xlim(-0.5, len(wls) - 0.5)
    ticks = [t for t in (0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100) if lo <= t <= hi]
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}×"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks(range(len(wls)))
    ax.set_xticklabels([wl["name"] for wl in wls], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("speedup vs eager (log scale)")
    meta = doc["meta"]
    ax.set_title(f"janus_frame benchmark {meta['date'][:10]} — {meta['machine']['cpu_model']}, "
                 f"{meta['machine']['cores']} cores, {meta.get('threads')} threads, torch "
                 f"{meta['machine']['torch']}" + (" (QUICK)" if meta.get("quick") else ""), fontsize=9)
    ax.legend(handles=[Patch(color=colors.get(s, "gray"), label=s) for s in systems], fontsize=8,
              ncol=len(systems), loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def merge(docs: list[dict]) -> dict:
    """One document from several runs on the same machine (later runs win
    for a workload measured twice). Every workload keeps the command and date
    of the run that measured it; meta lists all runs."""
    if len({bool(d["meta"].get("quick")) for d in docs}) > 1:
        raise ValueError("cannot merge --quick runs with full runs (sizes differ)")
    runs = [{"command": d["meta"]["command"], "date": d["meta"]["date"], "git": d["meta"].get("git"),
             "workloads": [wl["name"] for wl in d["workloads"]]} for d in docs]
    by_name: dict[str, dict] = {}
    order: list[str] = []
    for d in docs:
        for wl in d["workloads"]:
            wl = dict(wl, run_command=d["meta"]["command"], run_date=d["meta"]["date"])
            if wl["name"] not in by_name:
                order.append(wl["name"])
            by_name[wl["name"]] = wl
    meta = dict(docs[-1]["meta"])
    meta["command"] = " ; ".join(r["command"] for r in runs)
    meta["runs"] = runs
    meta["workloads"] = order
    return {"meta": meta, "workloads": [by_name[n] for n in order]}


def main(argv=None) -> int:
    """``python -m bench.report RESULTS.json`` re-renders RESULTS.{md,png};
    ``python -m bench.report --merge OUT.json A.json B.json [--latest]``
    merges runs into OUT.{json,md,png} (and latest.{md,png} beside it)."""
    import shutil

    argv = list(sys.argv[1:] if argv is None else argv)
    latest = "--latest" in argv
    argv = [a for a in argv if a != "--latest"]
    if not argv:
        print(main.__doc__, file=sys.stderr)
        return 2
    if argv[0] == "--merge":
        out, inputs = argv[1], argv[2:]
        docs = []
        for path in inputs:
            with open(path) as f:
                docs.append(json.load(f))
        doc = merge(docs)
        with open(out, "w") as f:
            json.dump(doc, f, indent=1)
        target = out
    else:
        target = argv[0]
        with open(target) as f:
            doc = json.load(f)
    base = target[: -len(".json")] if target.endswith(".json") else target
    with open(base + ".md", "w") as f:
        f.write(markdown(doc))
    chart(doc, base + ".png")
    if latest:
        d = os.path.dirname(os.path.abspath(base))
        shutil.copyfile(base + ".md", os.path.join(d, "latest.md"))
        shutil.copyfile(base + ".png", os.path.join(d, "latest.png"))
    print(base + ".md", base + ".png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
