"""A profile report as one self-contained HTML page.

In: a :class:`~janus_frame.diagnostics.profiler.ProfileReport`.
Out: HTML text with inline CSS only (no scripts, fonts, images or other
network assets, no external URLs): the summary, the ranked break table with
the source lines around each break, a timeline of compiled vs native time per
frame (CSS bars), the speculated branches' hits and misses, the recompiles with the guard
that failed, frames that run
natively whole, and the graphs' and kernels' text inside ``<details>`` (shown
on demand).
"""
from __future__ import annotations

import html
import linecache

_CSS = """
body{font-family:sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}
td.n{text-align:right;font-variant-numeric:tabular-nums}
pre{background:#f6f6f6;padding:.4em;margin:.2em 0;overflow-x:auto;font-size:.85em}
.hint{color:#555;font-style:italic}
.bar{display:flex;height:1em;width:30em;background:#eee}
.g{background:#3a7}.nat{background:#d54}
.hl{background:#fde8a8}
.legend span{display:inline-block;width:1em;height:1em;vertical-align:middle;margin:0 .3em}
"""


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f}"


def _snippet(filename: str, lineno: int | None, context: int = 2) -> str:
    """The break's line with a little context, the break's line marked."""
    if not filename or not lineno:
        return ""
    rows = []
    for n in range(max(1, lineno - context), lineno + context + 1):
        line = linecache.getline(filename, n)
        if not line:
            continue
        cls = ' class="hl"' if n == lineno else ""
        rows.append(f"<span{cls}>{n:>5}  {_e(line.rstrip())}</span>")
    return "<pre>" + "\n".join(rows) + "</pre>" if rows else ""


def render(report) -> str:
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>janus_frame profile</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>janus_frame profile</h1>",
        f"<p>{_e(report.summary())}</p>",
    ]
    wall = report.wall_seconds or 1e-12
    out.append("<table><tr><th>profiled</th><th>in compiled segments</th>"
               "<th>native at breaks</th><th>compile</th><th>break sites</th>"
               "<th>recompiles</th><th>frames run natively whole</th></tr>")
    out.append(
        f'<tr><td class="n">{report.wall_seconds:.3f} s</td>'
        f'<td class="n">{report.graph_seconds:.3f} s ({report.graph_seconds / wall:.1%})</td>'
        f'<td class="n">{report.native_seconds:.3f} s ({report.native_seconds / wall:.1%})</td>'
        f'<td class="n">{report.compile_seconds:.3f} s</td><td class="n">{len(report.sites)}</td>'
        f'<td class="n">{len(report.recompiles)}</td>'
        f'<td class="n">{sum(f.count for f in report.fallbacks)}</td></tr></table>')

    out.append("<h2>Graph breaks, most expensive first</h2>")
    if report.sites or report.fallbacks:
        out.append("<table><tr><th>#</th><th>site</th><th>break</th><th>count</th>"
                   "<th>native ms</th><th>share</th><th>reason and hint</th></tr>")
        for i, s in enumerate(report.sites, 1):
            spec = ""
            if s.speculation_hits or s.speculation_misses:
                spec = (f"<br>speculation: {s.speculation_hits} hits, "
                        f"{s.speculation_misses} misses")
            out.append(
                f'<tr><td class="n">{i}</td><td><code>{_e(s.where)}</code> in {_e(s.frame)}'
                f"{_snippet(s.filename, s.lineno)}</td><td>{_e(s.break_id)}</td>"
                f'<td class="n">{s.native_count}</td><td class="n">{_ms(s.native_seconds)}</td>'
                f'<td class="n">{s.share:.1%}</td><td>{_e(s.reason)}'
                f'<div class="hint">hint: {_e(s.hint)}</div>{spec}</td></tr>')
        for f in report.fallbacks:
            out.append(
                f'<tr><td>-</td><td><code>{_e(f.where)}</code> in {_e(f.frame)}'
                f"{_snippet(f.filename, f.lineno)}</td><td>{_e(f.break_id)}</td>"
                f'<td class="n">{f.count}</td><td colspan="2">whole frame runs natively</td>'
                f'<td>{_e(f.reason)}<div class="hint">hint: {_e(f.hint)}</div></td></tr>')
        out.append("</table>")
    else:
        out.append("<p>No graph breaks.</p>")

    out.append("<h2>Timeline: compiled vs native time per frame</h2>")
    out.append('<p class="legend"><span class="g"></span>in compiled segments'
               '<span class="nat"></span>native at graph breaks (bar width: share of the '
               "profiled time)</p>")
    out.append("<table><tr><th>frame</th><th>time</th><th>graphs</th><th>ops per graph</th>"
               "<th>compiled ms</th><th>native ms</th><th>compile ms</th><th>recompiles</th>"
               "<th>segments (runs)</th></tr>")
    for f in report.frames:
        g = 100 * f.graph_seconds / wall
        n = 100 * f.native_seconds / wall
        segs = ", ".join(f"{_e(s.code)}: {max(s.runs, s.native_count)}" for s in f.segments)
        out.append(
            f"<tr><td><code>{_e(f.frame)}</code><br>{_e(f.filename)}:{f.lineno}</td>"
            f'<td><div class="bar"><div class="g" style="width:{g:.2f}%"></div>'
            f'<div class="nat" style="width:{n:.2f}%"></div></div></td>'
            f'<td class="n">{f.graphs}</td>'
            f"<td>{_e(', '.join(str(x) for x in f.ops_per_graph) or '-')}</td>"
            f'<td class="n">{_ms(f.graph_seconds)}</td><td class="n">{_ms(f.native_seconds)}</td>'
            f'<td class="n">{_ms(f.compile_seconds)}</td><td class="n">{len(f.recompiles)}</td>'
            f"<td>{segs}</td></tr>")
    out.append("</table>")

    out.append("<h2>Speculated branches</h2>")
    if report.speculation:
        out.append("<table><tr><th>branch</th><th>hits</th><th>misses</th><th>now</th></tr>")
        for sp in report.speculation:
            out.append(f"<tr><td><code>{_e(sp.where)}</code> in {_e(sp.frame)}"
                       f"{_snippet(sp.filename, sp.lineno, 0)}</td><td class=\"n\">{sp.hits}</td>"
                       f"<td class=\"n\">{sp.misses}</td><td>{_e(sp.form)}</td></tr>")
        out.append("</table>")
    else:
        out.append("<p>No speculated branch was checked while profiling.</p>")

    out.append("<h2>Recompiles</h2>")
    if report.recompiles:
        out.append("<table><tr><th>code</th><th>where</th><th>guard that failed</th></tr>")
        for r in report.recompiles:
            out.append(f"<tr><td><code>{_e(r.code)}</code></td><td>{_e(r.filename)}:{r.lineno}</td>"
                       f"<td><pre>{_e(r.reason)}</pre></td></tr>")
        out.append("</table>")
    else:
        out.append("<p>No recompiles.</p>")

    out.append("<h2>Graphs</h2>")
    if not report.graphs:
        out.append("<p>No graph was compiled while profiling.</p>")
    for i, g in enumerate(report.graphs):
        out.append(f"<details><summary>graph {i}: {_e(g.code)} ({g.ops} ops)</summary>"
                   f"<pre>{_e(g.text)}</pre></details>")
    out.append("<h2>Kernels</h2>")
    if not report.kernels:
        out.append("<p>No kernel was generated while profiling (the fusing backend "
                   "generates kernels; other backends do not).</p>")
    for i, k in enumerate(report.kernels):
        out.append(f"<details><summary>kernel source {i}</summary><pre>{_e(k)}</pre></details>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
