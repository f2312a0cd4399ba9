"""``python -m janus_frame run|profile|explain``, ``JANUS_PROFILE`` and
``JANUS_LOGS``, each in a fresh interpreter running a script from
tests/cli_scripts (the working directory, so global mode compiles it).

Checked: the script's output, argv and exit status pass through (its own
exception prints its traceback, without the command line's frames, and exits
1; SystemExit codes are kept); a missing script is exit 2 with a clear
message; the profile table ranks the three breaks of known cost with the known
counts and the --json/--html reports validate and parse; explain prints
graphs, breaks and guards; every JANUS_LOGS artifact reaches stderr through
the ``janus_frame`` logger, each break and recompile once per compile, at the
user's line.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from janus_frame.diagnostics.schema import validate

SCRIPTS = Path(__file__).parent / "cli_scripts"
PY = sys.executable


def jf(*args, env=None, cwd=SCRIPTS, timeout=180):
    e = {k: v for k, v in os.environ.items() if not k.startswith("JANUS_")}
    e["JANUS_FRAME_BACKEND"] = "eager"
    e.update(env or {})
    return subprocess.run([PY, *args], capture_output=True, text=True, env=e, cwd=cwd,
                          timeout=timeout)


def sleep_lines():
    src = (SCRIPTS / "three_breaks.py").read_text().splitlines()
    find = lambda m: next(i + 1 for i, ln in enumerate(src) if m in ln)  # noqa: E731
    return [find("expensive break"), find("middle break"), find("cheap break")]


def test_run_passes_argv_and_output():
    r = jf("-m", "janus_frame", "run", "three_breaks.py", "2")
    assert r.returncode == 0, r.stderr
    assert "steps=2 total=48.0" in r.stdout


def test_profile_ranks_breaks_and_writes_reports(tmp_path):
    js, ht = tmp_path / "r.json", tmp_path / "r.html"
    # report options after the script's arguments, as in the usage line
    r = jf("-m", "janus_frame", "profile", "three_breaks.py", "3", "--json", str(js),
           "--html", str(ht))
    assert r.returncode == 0, r.stderr
    assert "steps=3" in r.stdout
    table = r.stdout.split("Graph breaks, most expensive first:")[1]
    rows = re.findall(r"^\s+\d+\s+three_breaks\.py:(\d+)\s+(JF\d+)\s+(\d+)\s.*\n.*\n.*\(in (\w+)",
                      table, re.M)
    # step's own three break sites, in order of cost, once per step (main's
    # sites, which call step natively on its first run, may rank anywhere)
    assert [(int(ln), i, int(c)) for ln, i, c, fr in rows if fr == "step"] == \
        [(ln, "JF002", 3) for ln in sleep_lines()]
    data = json.loads(js.read_text())
    assert validate(data) == []
    step_sites = [s for s in data["sites"] if s["frame"] == "step"]
    assert [s["lineno"] for s in step_sites] == sleep_lines()
    assert all(s["native_count"] == 3 for s in step_sites)

    from test_profiler import check_html

    check_html(ht.read_text(), [(s["where"], s["source"]) for s in data["sites"]])


def test_explain_prints_graphs_breaks_and_guards():
    r = jf("-m", "janus_frame", "explain", "three_breaks.py", "1")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "steps=1" in out and "janus_frame explain:" in out
    assert re.search(r"== step \(.*three_breaks\.py:\d+\): 1 graph", out)
    assert "def forward" in out  # the graph's code
    for ln in sleep_lines():
        assert f"three_breaks.py:{ln} in step" in out
    assert "graph break [JF002]" in out and "guards:" in out and "L['x']" in out


def test_script_exception_traceback_and_status():
    r = jf("-m", "janus_frame", "run", "fails.py", "a", "--b")
    assert r.returncode == 1
    assert "argv: ['a', '--b']" in r.stdout
    assert r.stderr.startswith("Traceback (most recent call last):")
    assert 'fails.py", line' in r.stderr and "in inner" in r.stderr
    assert "ValueError: boom from the script: 4.0" in r.stderr
    assert "runpy" not in r.stderr and "__main__.py" not in r.stderr


def test_profile_keeps_exit_codes_and_still_reports(tmp_path):
    r = jf("-m", "janus_frame", "profile", "exits.py", "3")
    assert r.returncode == 3 and "janus_frame profile:" in r.stdout
    r = jf("-m", "janus_frame", "run", "exits.py", "stopped by the script")
    assert r.returncode == 1 and "stopped by the script" in r.stderr
    r = jf("-m", "janus_frame", "run", "exits.py", "0")
    assert r.returncode == 0


def test_missing_script_and_usage_errors():
    r = jf("-m", "janus_frame", "run", "no_such_script.py")
    assert r.returncode == 2 and "script not found: no_such_script.py" in r.stderr
    r = jf("-m", "janus_frame")
    assert r.returncode == 2 and "usage:" in r.stderr
    for cmd in ("run", "profile", "explain"):
        r = jf("-m", "janus_frame", cmd, "--help")
        assert r.returncode == 0 and f"janus_frame {cmd}" in r.stdout
    assert "--html" in jf("-m", "janus_frame", "profile", "--help").stdout


def test_janus_profile_env_writes_report_at_exit(tmp_path):
    js = tmp_path / "whole.json"
    r = jf("three_breaks.py", "2", env={"JANUS_FRAME": "1", "JANUS_PROFILE": str(js)})
    assert r.returncode == 0, r.stderr
    data = json.loads(js.read_text())
    assert validate(data) == []
    step_sites = [s for s in data["sites"] if s["frame"] == "step"]
    assert [s["lineno"] for s in step_sites] == sleep_lines()
    assert all(s["native_count"] == 2 for s in step_sites)


ARTIFACTS = ("graph_breaks", "recompiles", "guards", "graphs", "bytecode")


def test_logs_each_artifact_break_and_recompile_at_the_user_line():
    r = jf("-m", "janus_frame", "run", "recompiles.py",
           env={"JANUS_LOGS": ",".join(ARTIFACTS)})
    assert r.returncode == 0, r.stderr
    err = r.stderr
    for a in ARTIFACTS:
        assert f"[janus_frame.{a}]" in err, a
    script = str(SCRIPTS / "recompiles.py")
    # `model` is compiled twice (a new shape); its print breaks once per compile
    breaks = re.findall(r"^\[janus_frame\.graph_breaks\] \[(JF\d+)\].*\n\s+at (\S+):(\d+)", err,
                        re.M)
    assert breaks == [("JF003", script, "7")] * 2
    recompiles = re.findall(
        r"^\[janus_frame\.recompiles\] recompiling (.+?) \((/\S+):\d+\): (.*)", err, re.M)
    assert [(c, f) for c, f, _ in recompiles] == [("model", script),
                                                  ("model.<resume at line 7>", script)]
    assert all("(3,)" in why for _, _, why in recompiles)  # the guard that failed
    assert len(set(recompiles)) == len(recompiles)  # each reported once
    assert "Traceback" not in err and "janus_frame/frontend" not in err
