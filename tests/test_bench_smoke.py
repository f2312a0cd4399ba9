"""Smoke test of the benchmark suite: ``python -m bench --quick`` end to end.

In:  the bench/ package, run as a subprocess (one worker process per
     workload, tiny sizes, few steps) writing into a temporary directory.
Out: assertions on what it wrote -- never on timings:
  - every workload ran under eager and produced a correct reference row;
  - janus_frame is either correct against eager or n/a with a reason (a
    compile path that is still incomplete may fall back), and never WRONG;
  - the JSON records the machine and the exact command, the markdown table
    has a row per workload, the PNG chart is a PNG;
  - a deliberately wrong system is reported as WRONG, not as a speedup.
"""
from __future__ import annotations

import glob
import importlib.util
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from bench.workloads import WORKLOADS  # noqa: E402


def _run_bench(out_dir, *args, timeout=900):
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, "-m", "bench", "--quick", "--out", str(out_dir), *args]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"bench failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr[-4000:]}"
    files = glob.glob(os.path.join(str(out_dir), "*-quick.json"))
    assert len(files) == 1, files
    with open(files[0]) as f:
        doc = json.load(f)
    return doc, files[0][: -len(".json")], proc


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench-smoke")
    # --jobs 2: two workloads at once (timings are not asserted, only produced)
    return _run_bench(out, "--systems", "eager,janus", "--jobs", "2")


def test_every_workload_reported(smoke):
    doc, _, _ = smoke
    names = [wl["name"] for wl in doc["workloads"]]
    assert names == list(WORKLOADS), names
    # 11 workloads; the elementwise one has two chains; five have a second spelling
    assert len(names) == 17
    assert {w for w in names if w.endswith("-b")} == {"mlp-b", "lstm-b", "treelstm-b", "resnet-b",
                                                       "gpt-b"}
    for wl in doc["workloads"]:
        assert set(wl["systems"]) == {"eager", "janus"}, (wl["name"], list(wl["systems"]))
        assert wl.get("size"), wl["name"]


def test_eager_reference_is_measured(smoke):
    doc, _, _ = smoke
    for wl in doc["workloads"]:
        e = wl["systems"]["eager"]
        if wl["name"] == "hf_gpt2" and importlib.util.find_spec("transformers") is None:
            # Without the optional package the row must say why, not vanish.
            assert e["status"] == "n/a" and "transformers" in e["reason"]
            continue
        assert e["status"] == "ok", (wl["name"], e.get("reason"))
        assert e["correct"]["reference"] is True
        assert e["samples"] >= 2 and 0 < e["min_s"] <= e["median_s"] <= e["max_s"]
        assert e["first_call_s"] > 0
        assert e["peak_step_mem_mib"] >= 0


def test_janus_correct_or_explicitly_na(smoke):
    doc, _, _ = smoke
    for wl in doc["workloads"]:
        j = wl["systems"]["janus"]
        assert j["status"] in ("ok", "n/a"), (wl["name"], j["status"], j.get("reason"))
        if j["status"] == "n/a":
            assert isinstance(j["reason"], str) and j["reason"].strip(), wl["name"]
            continue
        corr = j["correct"]
        assert corr["ok"] is True and corr["max_rel_err"] <= corr["allowed"], (wl["name"], corr)
        assert corr["allowed"] == corr["rtol"] or corr["eager_noise"] > 0, corr
        assert corr["steps"] >= 2
        assert j["median_s"] > 0 and j["samples"] >= 2
        if "var" in j:
            assert j["var"]["ok"] is True, (wl["name"], j["var"])
            # frames compiled are counted during the sweep and in the pass after it
            assert isinstance(j["var"]["compiles"], int), (wl["name"], j["var"])
            if j["var"]["calls"] == j["var"]["of"]:
                assert isinstance(j["var"]["compiles_after"], int), (wl["name"], j["var"])


def test_results_record_machine_and_command(smoke):
    doc, _, _ = smoke
    meta = doc["meta"]
    assert meta["quick"] is True
    assert meta["command"].startswith("python -m bench") and "--quick" in meta["command"]
    m = meta["machine"]
    for key in ("cpu_model", "cores", "torch", "python"):
        assert m[key], key
    pw = [wl for wl in doc["workloads"] if wl["name"].startswith("pointwise")]
    assert all(wl["copy_bandwidth"]["dram_copy_GBps"] > 0 for wl in pw)
    gbps = pw[0]["systems"]["eager"]["extra"]["GB/s"]
    assert gbps > 0


def test_markdown_and_chart_written(smoke):
    doc, base, _ = smoke
    with open(base + ".md") as f:
        md = f.read()
    assert "QUICK" in md and doc["meta"]["command"] in md
    lines = md.splitlines()
    start = lines.index(next(l for l in lines if l.startswith("| workload | size | eager |")))
    summary = lines[start:lines.index("", start)]
    for wl in doc["workloads"]:
        # one row per model: a second spelling shares its first's row (the worse of the two)
        rows = [l for l in summary if l.startswith(f"| {wl.get('spelling_of') or wl['name']} |")]
        assert len(rows) == 1, wl["name"]
        assert rows[0].count("|") == 5  # workload, size, eager, janus
        if wl["systems"]["janus"]["status"] == "n/a":
            # the reason is in the workload's detail table
            detail = md.split(f"### {wl['name']}:")[1].split("### ")[0]
            assert "| janus | n/a: " in detail
    # quick runs never replace the published table
    assert not os.path.exists(os.path.join(os.path.dirname(base), "latest.md"))
    if importlib.util.find_spec("matplotlib") is not None:
        with open(base + ".png", "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_wrong_system_is_reported_wrong(tmp_path):
    doc, base, _ = _run_bench(tmp_path, "--only", "mlp,pointwise_cheap", "--systems", "eager,selftest-wrong",
                              "--jobs", "2")
    for wl in doc["workloads"]:
        r = wl["systems"]["selftest-wrong"]
        assert r["status"] == "WRONG", (wl["name"], r)
        assert "differs from eager" in r["reason"]
        assert r["correct"]["ok"] is False
    with open(base + ".md") as f:
        lines = f.read().splitlines()
    start = lines.index(next(l for l in lines if l.startswith("| workload | size | eager |")))
    summary = lines[start:lines.index("", start)]
    assert sum(l.count("**WRONG**") for l in summary) == 2


def test_judge_tolerates_only_eager_own_noise():
    import torch

    from bench.measure import judge, leaf_errors

    ref = {"w": torch.tensor([1.0, -2.0]), "bias": torch.tensor([1e-3, -1e-3]), "steps": 5}
    close = {"w": torch.tensor([1.0, -2.00001]), "bias": torch.tensor([1.2e-3, -1e-3]), "steps": 5}
    errs = leaf_errors(close, ref)
    assert errs["w"] < 1e-5 and abs(errs["bias"] - 0.2) < 1e-6 and errs["steps"] == 0.0
    # the bias is off by 20%: wrong unless eager itself moves that much there
    assert judge(errs, 1e-4, {})["ok"] is False
    assert judge(errs, 1e-4, {"bias": 0.05})["ok"] is True
    assert judge(errs, 1e-4, {"bias": 0.005})["where"] == "bias"
    # a Python-side effect that differs is wrong whatever the noise
    errs = leaf_errors({**close, "steps": 6}, ref)
    assert judge(errs, 1e-4, {"bias": 0.05, "steps": 1.0})["ok"] is False


def test_interleaved_timing_writes_its_table(tmp_path):
    from bench import interleaved

    assert interleaved.main(["--only", "mlp", "--steps", "3", "--quick",
                             "--out", str(tmp_path)]) == 0
    (path,) = tmp_path.glob("*-interleaved.md")
    text = path.read_text()
    assert "python -m bench.interleaved --only mlp --steps 3 --quick" in text
    row = next(line for line in text.splitlines() if line.startswith("| mlp |"))
    assert row.count(" ms |") == 3 and "×" in row
