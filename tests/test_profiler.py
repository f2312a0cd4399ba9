"""The graph-break profiler and its reports, in process.

A function with three breaks of known cost (native sleeps of 1, 20 and 5 ms)
must come out ranked by cost with counts equal to the executions; time spent
in compiled code called from inside a break is not charged to that break;
recompiles, frames that run natively whole and speculation outcomes are
aggregated per site; the JSON report validates against the schema shipped in
the package and the HTML report is well-formed, complete and offline.
"""
from __future__ import annotations

import html.parser
import json
import re
import time

import pytest
import torch

import janus_frame as jf
from janus_frame import hook
from janus_frame.diagnostics import profiler as P
from janus_frame.diagnostics.probe import PROBE
from janus_frame.diagnostics.schema import report_schema, validate


def three_breaks(x):
    x = x + 1
    time.sleep(0.001)  # LINE_CHEAP
    x = x * 2
    time.sleep(0.020)  # LINE_EXPENSIVE
    x = x - 1
    time.sleep(0.005)  # LINE_MIDDLE
    return x.sum()


def _line(fn, marker: str) -> int:
    import inspect

    lines, first = inspect.getsourcelines(fn)
    return first + next(i for i, ln in enumerate(lines) if marker in ln)


@pytest.fixture(autouse=True)
def _clean():
    jf.reset()
    yield
    jf.reset()
    assert not PROBE.active, "a profiler was left attached"


RUNS = 3


@pytest.fixture(scope="module")
def ranked():
    jf.reset()
    f = jf.compile(three_breaks, backend="eager")
    with jf.profile() as prof:
        for _ in range(RUNS):
            assert f(torch.ones(4)).item() == three_breaks(torch.ones(4)).item()
    return prof.report()


def test_ranking_follows_cost_and_counts_are_executions(ranked):
    lines = [s.lineno for s in ranked.sites]
    assert lines == [_line(three_breaks, "LINE_EXPENSIVE"), _line(three_breaks, "LINE_MIDDLE"),
                     _line(three_breaks, "LINE_CHEAP")]
    for s, ms in zip(ranked.sites, (20, 5, 1)):
        assert s.break_id == "JF002"
        assert s.native_count == RUNS
        assert s.runs == RUNS  # each segment before a break ran once per call
        assert s.native_seconds >= RUNS * ms * 1e-3 * 0.95
        assert s.filename == __file__ and "time.sleep" in s.source
        assert s.hint and "untraceable" in s.reason
    shares = [s.share for s in ranked.sites]
    assert shares == sorted(shares, reverse=True) and sum(shares) <= 1.0


def test_frame_view_and_table(ranked):
    (frame,) = [f for f in ranked.frames if f.frame == "three_breaks"]
    assert frame.graphs == 4 and frame.ops_per_graph == [1, 1, 1, 1]
    assert len(frame.segments) == 4  # the function and its three resume functions
    assert all(max(s.runs, s.native_count) == RUNS for s in frame.segments)
    assert frame.graph_seconds > 0 and frame.compile_seconds > 0
    assert frame.native_seconds == pytest.approx(ranked.native_seconds)
    text = str(ranked)
    rows = [ln for ln in text.splitlines() if re.match(r"\s+\d+\s+\S+\.py:\d+", ln)]
    assert [int(re.search(r":(\d+)", r).group(1)) for r in rows] == [s.lineno for s in ranked.sites]
    assert all(f" {RUNS} " in r for r in rows)
    assert "time.sleep(0.020)" in text and "hint:" in text and "JF002" in text
    assert "Compiled frames:" in text and "three_breaks" in text


def test_native_time_excludes_compiled_work_inside_the_break():
    inner = jf.compile(three_breaks, backend="eager")

    @jf.disable
    def opaque(y):  # runs natively; calls compiled code that sleeps 26 ms
        return inner(y)

    def outer(x):
        y = x + 1
        z = opaque(y)  # LINE_OPAQUE
        return z * 2

    f = jf.compile(outer, backend="eager")
    f(torch.ones(2))  # compile outside the profiled region
    with jf.profile() as prof:
        f(torch.ones(2))
    rep = prof.report()
    (site,) = [s for s in rep.sites if s.frame.endswith(".outer")]
    assert site.lineno == _line(outer, "LINE_OPAQUE") and site.break_id == "JF010"
    assert site.native_inclusive_seconds >= 0.026
    assert site.native_seconds < 0.010  # the sleeps are charged to three_breaks' sites
    assert rep.sites[0].frame == "three_breaks"


def test_recompiles_and_whole_frame_fallbacks():
    def shaped(x):
        return x * 2 + 1

    def unresumable(x):
        try:
            x = x + 1
        except OSError:
            time.sleep(0)  # a break inside an exception handler: the frame runs natively
        try:
            raise OSError
        except OSError:
            time.sleep(0)
        return x + 1

    a = jf.compile(shaped, backend="eager")
    b = jf.compile(unresumable, backend="eager")
    with jf.profile() as prof:
        a(torch.ones(2))
        a(torch.ones(3, 3))
        b(torch.ones(2))
    rep = prof.report()
    (rc,) = [r for r in rep.recompiles if r.frame.endswith(".shaped")]
    assert "(2,)" in rc.reason  # the guard that failed names the old shape
    (fb,) = rep.fallbacks
    assert fb.frame.endswith(".unresumable") and fb.count == 1 and fb.source.startswith("time.sleep")
    assert "run natively whole" in rep.summary()
    assert any(f.frame.endswith(".shaped") and len(f.recompiles) == 1 for f in rep.frames)


def test_speculation_hits_and_misses_per_site():
    class Branch:  # what frontend.speculation reports: one object per branch site
        def __init__(self, frame):
            self.filename, self.lineno, self.frame, self.form = __file__, 2, frame, "speculate"

    # two sites on the same line of the same function (the function and one
    # of its resume functions) merge
    a, b = Branch("spec_fn"), Branch("spec_fn.<resume at line 1>")
    with jf.profile() as prof:
        for hit in (True, True, False):
            PROBE.speculation(a, hit)
        PROBE.speculation(b, True)
    PROBE.speculation(a, True)  # no profiler running: ignored
    rep = prof.report()
    (sp,) = rep.speculation
    assert (sp.frame, sp.lineno, sp.hits, sp.misses) == ("spec_fn", 2, 3, 1)
    assert f"{sp.where} in spec_fn: 3 hits, 1 misses" in str(rep)
    assert validate(json.loads(rep.to_json())) == []
    assert "Speculated branches" in rep.to_html()


def rnn_like(h):
    for _ in range(6):
        h = h * 0.5 + 1
        if h.sum() > 0:  # LINE_BRANCH
            h = h - 0.1
        else:
            h = h + 0.1
    return h


def test_speculated_branch_is_counted_end_to_end():
    f = jf.compile(rnn_like, backend="eager")
    with jf.profile() as prof:
        for _ in range(6):
            f(torch.ones(3))
    rep = prof.report()
    line = _line(rnn_like, "LINE_BRANCH")
    specs = [sp for sp in rep.speculation if sp.lineno == line]
    assert specs, str(rep)
    assert specs[0].hits > 0 and specs[0].misses == 0


def test_profile_attaches_and_detaches_and_nests():
    f = jf.compile(three_breaks, backend="eager")
    n_listeners = len(hook.listeners)
    with jf.profile() as outer:
        assert PROBE.active and len(hook.listeners) == n_listeners + 1
        with jf.profile() as inner:
            f(torch.ones(1))
        f(torch.ones(1))
    assert not PROBE.active and len(hook.listeners) == n_listeners
    assert [s.native_count for s in inner.report().sites] == [1, 1, 1]
    assert [s.native_count for s in outer.report().sites] == [2, 2, 2]
    assert "profile" in jf.__all__ and isinstance(jf.profile(), P.Profiler)


def test_internal_break_location_points_at_user_line():
    class FakeBreak:  # a break located inside janus_frame's own code
        filename = jf.api.__file__
        lineno = 10
        source_line = "internal"
        root_ip = None

    code = three_breaks.__code__
    filename, lineno, _ = P.user_location(code, FakeBreak)
    assert filename == __file__ and lineno == code.co_firstlineno


# -- reports ---------------------------------------------------------------


def test_json_report_validates_against_the_schema(ranked, tmp_path):
    path = tmp_path / "r.json"
    ranked.to_json(str(path))
    data = json.loads(path.read_text())
    assert validate(data) == []
    assert [s["lineno"] for s in data["sites"]] == [s.lineno for s in ranked.sites]
    assert data["summary"]["break_sites"] == 3 and data["graphs"]
    # the validator is not vacuous
    bad = json.loads(path.read_text())
    bad["sites"][0]["native_count"] = -1
    del bad["summary"]["wall_seconds"]
    bad["extra"] = 1
    errs = validate(bad)
    assert any("native_count" in e for e in errs) and any("wall_seconds" in e for e in errs)
    assert any("extra" in e for e in errs)


def test_schema_is_packaged():
    from importlib import resources

    assert resources.files("janus_frame.diagnostics").joinpath("report.schema.json").is_file()
    assert report_schema()["properties"]["schema"]["const"] == "janus_frame.profile/1"


class _Collect(html.parser.HTMLParser):
    VOID = {"meta", "br", "link", "img", "hr", "input"}

    def __init__(self):
        super().__init__()
        self.stack, self.text, self.attrs, self.errors = [], [], [], []

    def handle_starttag(self, tag, attrs):
        self.attrs.extend(v or "" for _, v in attrs)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def check_html(text: str, sites) -> _Collect:
    """``sites``: (file:line as displayed, source text) of every break site."""
    p = _Collect()
    p.feed(text)
    p.close()
    assert p.errors == [] and p.stack == []
    body = "".join(p.text)
    for where, source in sites:
        assert where in body and source in body
    assert not re.search(r"(https?:)?//[\w.-]+\.[a-z]{2,}", text), "external URL in the report"
    assert not any(re.match(r"(https?:|//)", a) for a in p.attrs)
    assert "<script" not in text
    return p


def test_html_report_parses_contains_every_site_and_is_offline(ranked):
    p = check_html(ranked.to_html(), [(s.where, s.source) for s in ranked.sites])
    body = "".join(p.text)
    assert "Timeline" in body and "Recompiles" in body and "graph 0" in body


def test_break_log_inside_inlined_library_code_points_at_user_line(caplog):
    import logging

    from janus_frame.diagnostics import logs

    def calls_disable(x):
        y = x * 3
        return jf.disable(lambda: y + 1)()  # inlines janus_frame.api, breaks inside it

    logs.set_logs("graph_breaks")
    try:
        with caplog.at_level(logging.INFO, logger="janus_frame"):
            jf.compile(calls_disable, backend="eager")(torch.ones(2))
    finally:
        logs.set_logs("")
    assert "[JF" in caplog.text
    assert "janus_frame/api.py" not in caplog.text
    assert f"{__file__}:{_line(calls_disable, 'jf.disable(')}" in caplog.text
