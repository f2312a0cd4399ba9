"""Markdown for a zoo run: the table, the break causes, exceptions, wrong results.

In:  the JSON document written by bench/zoo/run.py (or several, merged).
Out: ``markdown(doc)`` -> text; ``merge(paths)`` -> one document whose
     results are the union (a later file's (model, system) replaces an
     earlier one's).
"""
from __future__ import annotations

import collections
import json
import re

SHORT = {"ok": "ok", "wrong": "WRONG", "raised": "RAISED", "crashed": "CRASH", "timeout": "TIMEOUT",
         "n/a": "n/a"}


def merge(paths: list[str]) -> dict:
    docs = []
    for p in paths:
        with open(p) as f:
            docs.append(json.load(f))
    doc = docs[0]
    for other in docs[1:]:
        for model, systems in other["results"].items():
            doc["results"].setdefault(model, {}).update(systems)
        for s in other.get("systems", []):
            if s not in doc["systems"]:
                doc["systems"].append(s)
        doc.setdefault("merged_from", []).append(other.get("command"))
    return doc


def _case(doc, model, system, case):
    return doc["results"].get(model, {}).get(system, {}).get("cases", {}).get(case)


def _status(d) -> str:
    if d is None:
        return "–"
    s = SHORT.get(d.get("status"), d.get("status", "?"))
    if d.get("backend_fallbacks"):
        s += f"+fb{d['backend_fallbacks']}"
    if d.get("internal_errors"):
        s += f"+ie{d['internal_errors']}"
    return s


def _f(x, fmt="{:.2f}") -> str:
    return "–" if x is None or isinstance(x, str) else fmt.format(x)


def _gb(d, system) -> str:
    if d is None:
        return "–"
    first = d.get("first") or d.get("at_failure")
    if not first:
        return "–"
    if system == "torch.compile":
        return f"{int(first.get('graphs', 0))}/{int(first.get('breaks', 0))}"
    mark = "" if "first" in d else "≥"
    return f"{mark}{first.get('graphs', 0)}/{first.get('breaks', 0)}"


def _recomp(d) -> str:
    if d is None or "repeat" not in d:
        return "–"
    rep = d["repeat"].get("frames_compiled", 0)
    var = d.get("var", {}).get("frames_compiled")
    return f"{int(rep)}/{'–' if var is None else int(var)}"


def markdown(doc) -> str:
    systems = [s for s in ("janus-eager", "janus", "torch.compile") if s in doc["systems"]]
    models = list(doc["results"])
    cases = doc.get("cases") or ["infer-mask", "infer-nomask", "train-mask", "train-nomask"]
    sz = doc.get("sizes", {})
    L = [f"# Model zoo: {doc.get('started')}{' (quick sizes)' if doc.get('quick') else ''}", ""]
    L.append(f"`{doc.get('command')}` — janus_frame {doc.get('revision')}, torch "
             f"{doc.get('versions', {}).get('torch')}, transformers {doc.get('versions', {}).get('transformers')}, "
             f"{doc.get('threads')} threads, {doc.get('machine', {}).get('cpu_model', '')}; total "
             + (", ".join(f"{k} {v / 60:.1f} min" for k, v in doc["wall_s_parts"].items())
              if doc.get("wall_s_parts") else f"{doc.get('wall_s', 0) / 60:.1f} min") + ".")
    if doc.get("note"):
        L.append(f"Note: {doc['note']}")
    for cmd in doc.get("merged_from", []):
        L.append(f"Joined with: `{cmd}`")
    L.append(f"Sizes: {sz.get('layers')} layers, hidden {sz.get('hidden')}, {sz.get('heads')} heads, "
             f"ffn {sz.get('ffn')}, vocab {sz.get('vocab')}, batch {sz.get('batch')}, seq {sz.get('seq')}; "
             "random weights from configs. Inference: one forward under no_grad (use_cache=False); "
             "training: forward with labels (the model's own loss), backward, AdamW — the model is "
             "compiled, the step around it is not.")
    L.append("")
    L.append("Status per system (mask / no mask). `+fbN`: the fusing backend ran N graphs eagerly "
             "after an internal error; `+ieN`: N frames failed inside janus_frame and ran natively. "
             "Graphs/breaks: the first call's compile events (janus-eager; torch.compile: Dynamo's "
             "counters). Speed: eager time / system time, median, measured in the same process as eager; "
             "`j/tc`: janus's speed-up over torch.compile's (each against its own process's eager).")
    L.append("")
    hdr = ["model", "mode"] + [f"{s}" for s in systems] + ["graphs/breaks je (m / nm)"]
    if "torch.compile" in systems:
        hdr.append("graphs/breaks tc")
    hdr += ["eager ms (nm)", "speed j", "speed je"]
    if "torch.compile" in systems:
        hdr += ["speed tc", "j/tc"]
    L.append("| " + " | ".join(hdr) + " |")
    L.append("|" + "---|" * len(hdr))
    gb_sys = "janus-eager" if "janus-eager" in systems else "janus"
    for m in models:
        for mode in ("infer", "train"):
            cm, cn = f"{mode}-mask", f"{mode}-nomask"
            row = [m, mode]
            for s in systems:
                row.append(f"{_status(_case(doc, m, s, cm))} / {_status(_case(doc, m, s, cn))}")
            row.append(f"{_gb(_case(doc, m, gb_sys, cm), gb_sys)} / {_gb(_case(doc, m, gb_sys, cn), gb_sys)}")
            if "torch.compile" in systems:
                row.append(f"{_gb(_case(doc, m, 'torch.compile', cm), 'torch.compile')} / "
                           f"{_gb(_case(doc, m, 'torch.compile', cn), 'torch.compile')}")
            ems = [d.get("eager_ms") for s in systems for c in (cn, cm)
                   for d in [_case(doc, m, s, c) or {}] if d.get("eager_ms")]
            row.append(_f(ems[0] if ems else None, "{:.1f}"))

            def sp(s, c):
                d = _case(doc, m, s, c) or {}
                return d.get("speedup_vs_eager") if d.get("status") == "ok" else None

            row.append(f"{_f(sp('janus', cm))} / {_f(sp('janus', cn))}")
            row.append(f"{_f(sp('janus-eager', cm))} / {_f(sp('janus-eager', cn))}")
            if "torch.compile" in systems:
                row.append(f"{_f(sp('torch.compile', cm))} / {_f(sp('torch.compile', cn))}")
                r = [(sp("janus", c) / sp("torch.compile", c)) if sp("janus", c) and sp("torch.compile", c)
                     else None for c in (cm, cn)]
                row.append(f"{_f(r[0])} / {_f(r[1])}")
            L.append("| " + " | ".join(row) + " |")
    L.append("")

    # -- per case details ---------------------------------------------------------
    L.append("## Per case")
    L.append("")
    L.append("first: first-call seconds (cold); recompiles: frames compiled during 10 identical calls / "
             "over 3 new sizes; peak: tensor MiB above the call's start level (torch.profiler allocator "
             "events; not RSS); err: max relative error vs eager (outputs; training: 3 losses and every "
             "parameter after 3 AdamW steps).")
    L.append("")
    L.append("| model | case | system | status | graphs/breaks | first s | ms (eager ms) | speed | "
             "recompiles | peak MiB (eager) | err | reason |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for m in models:
        for c in cases:
            for s in systems:
                d = _case(doc, m, s, c)
                if d is None:
                    continue
                corr = d.get("correct", {})
                L.append("| " + " | ".join([
                    m, c, s, _status(d), _gb(d, s), _f(d.get("first_call_s"), "{:.1f}"),
                    f"{_f(d.get('system_ms'), '{:.1f}')} ({_f(d.get('eager_ms'), '{:.1f}')})",
                    _f(d.get("speedup_vs_eager")), _recomp(d),
                    f"{_f(d.get('system_peak_mib'), '{:.1f}')} ({_f(d.get('eager_peak_mib'), '{:.1f}')})",
                    _f(corr.get("max_rel_err"), "{:.1e}") if corr else "–",
                    (str(d.get("reason") or "")[:140]).replace("|", "\\|").replace("\n", " "),
                ]) + " |")
    L.append("")

    # -- break causes ------------------------------------------------------------
    L += break_sections(doc, models, cases, gb_sys)
    L += exception_sections(doc, models, cases, systems)
    return "\n".join(L) + "\n"


def _norm(reason: str) -> str:
    """A break message without its model-specific class names and numbers."""
    r = re.sub(r"\b\w*(Output|Config)\w*\b", "<ModelOutput/Config class>", reason)
    r = re.sub(r"0x[0-9a-f]+", "0x…", r)
    return r


def break_sections(doc, models, cases, gb_sys) -> list[str]:
    by_msg: collections.Counter = collections.Counter()
    by_site: collections.Counter = collections.Counter()
    msg_models: dict = collections.defaultdict(set)
    site_msg: dict = {}
    total = 0
    for m in models:
        for c in cases:
            d = _case(doc, m, gb_sys, c) or {}
            first = d.get("first") or d.get("at_failure") or {}
            for b in first.get("break_list", []):
                key = (b["id"], _norm(b["reason"]))
                by_msg[key] += 1
                msg_models[key].add(m)
                by_site[(b["id"], b["where"])] += 1
                site_msg[(b["id"], b["where"])] = b["reason"]
                total += 1
    L = [f"## Break causes ({gb_sys}, first call of every case: {total} breaks)", ""]
    L.append("| count | ID | message | models |")
    L.append("|---|---|---|---|")
    for (bid, msg), n in by_msg.most_common(30):
        ms = sorted(msg_models[(bid, msg)])
        L.append(f"| {n} | {bid} | {msg[:160].replace('|', '/')} | {len(ms)}: {', '.join(ms)} |")
    L += ["", "### By site", "", "| count | ID | where | message |", "|---|---|---|---|"]
    for (bid, where), n in by_site.most_common(40):
        L.append(f"| {n} | {bid} | {where} | {site_msg[(bid, where)][:140].replace('|', '/')} |")
    L.append("")
    # torch.compile's breaks, for comparison
    tc = collections.Counter()
    for m in models:
        for c in cases:
            d = _case(doc, m, "torch.compile", c) or {}
            for r, n in (d.get("first") or {}).get("break_reasons", {}).items():
                tc[(m, r[:160])] += n
    if tc:
        L += ["### torch.compile's breaks", "", "| count | model | reason |", "|---|---|---|"]
        for (m, r), n in tc.most_common(20):
            L.append(f"| {n} | {m} | {r.replace('|', '/')} |")
        L.append("")
    return L


def exception_sections(doc, models, cases, systems) -> list[str]:
    L = ["## Exceptions reaching the user, crashes, timeouts", ""]
    groups: dict = collections.defaultdict(list)
    info = {}
    for m in models:
        for s in systems:
            for c in cases:
                d = _case(doc, m, s, c)
                if not d or d.get("status") not in ("raised", "crashed", "timeout"):
                    continue
                err = d.get("error") or {}
                key = (s, d["status"], str(d.get("reason"))[:200])
                groups[key].append(f"{m}:{c}")
                info[key] = err
    if not groups:
        L.append("None.")
    for (s, st, reason), where in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        err = info[(s, st, reason)] or {}
        L.append(f"- **{s}** {st}: `{reason}` — {len(where)} case(s): {', '.join(where)}")
        if err.get("janus_frame_frames"):
            L.append(f"  - janus_frame frames: {'; '.join(err['janus_frame_frames'])}")
        if err.get("innermost_frames"):
            L.append(f"  - innermost: {'; '.join(err['innermost_frames'])}")
        if err.get("transformers_frames"):
            L.append(f"  - transformers: {'; '.join(err['transformers_frames'])}")
    L += ["", "## Wrong results", ""]
    wrong = [(m, s, c, _case(doc, m, s, c)) for m in models for s in systems for c in cases
             if (_case(doc, m, s, c) or {}).get("status") == "wrong"]
    if not wrong:
        L.append("None.")
    for m, s, c, d in wrong:
        L.append(f"- {m} {c} {s}: {d.get('reason')}")
    L += ["", "## Backend fallbacks and janus_frame warnings", ""]
    fb = collections.Counter()
    warn = collections.Counter()
    for m in models:
        for s in systems:
            for c in cases:
                d = _case(doc, m, s, c) or {}
                for r in d.get("backend_fallback_reasons", []):
                    fb[(s, r[:200])] += 1
                for w in d.get("warnings", []) + d.get("log_warnings", []):
                    w = re.sub(r"Last guard failure:.*", "", w)
                    warn[(s, re.sub(r"0x[0-9a-f]+", "0x…", w)[:220])] += 1
    for (s, r), n in fb.most_common(15):
        L.append(f"- {n}× {s} backend fallback: `{r}`")
    for (s, w), n in warn.most_common(20):
        L.append(f"- {n}× {s}: {w}")
    return L + [""]
