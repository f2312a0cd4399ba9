"""The GPU check (bench/gpu_check.py) in its CPU dry run: Triton's interpreter
on CPU tensors, tiny sizes, the same code paths as on the GPU machine except
CUDA itself.

In:  the script run as a subprocess writing into a temporary folder.
Out: assertions on what it wrote, never on timings:
  - every workload is in the JSON and the markdown, eager is measured on each;
  - nothing is WRONG, nothing was skipped or left unfinished;
  - janus ran (correct, timed, profiled, Triton graphs) on the inference rows
    and the MLP step with tuning off and on; the other training steps are
    correct or crashed with a reason (a backend failure is reported, not
    hidden: the exit status then says 1);
  - torch.compile ran on the row the dry run gives it;
  - the Triton test subset ran; the installer builds the frame hook into a
    fresh folder.
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "bench", "gpu_check.py")
ROWS = ["pointwise_cheap", "pointwise_transcendental", "softmax", "layer_norm", "mlp", "resnet", "gpt", "lstm"]
TUNED_IN_DRY_RUN = ["pointwise_cheap", "pointwise_transcendental", "softmax", "layer_norm", "mlp"]

pytest.importorskip("triton")


def _script(*args, timeout=600):
    env = dict(os.environ)
    env.pop("TRITON_INTERPRET", None)  # the script sets it per process
    return subprocess.run([sys.executable, SCRIPT, *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def dry(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-check")
    # a generous budget: the machine running the suite may be busy (a quiet
    # 2-core machine needs about a minute); nothing may be skipped for time
    proc = _script("--dry-run", "--out", str(out), "--budget", "900", "--workload-timeout", "400", timeout=1200)
    path = out / "gpu_check.json"
    assert path.exists(), f"no JSON ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return json.loads(path.read_text()), out, proc


def test_every_workload_reported_and_nothing_wrong(dry):
    doc, _, proc = dry
    assert doc["meta"]["dry_run"] is True
    assert [w["name"] for w in doc["workloads"]] == ROWS
    s = doc["summary"]
    assert s["wrong"] == 0 and s["timeout"] == 0 and s["skipped"] == 0, s["failures"]
    assert proc.returncode == s["exit_code"] in (0, 1), (proc.returncode, s)
    for w in doc["workloads"]:
        assert w.get("size"), w["name"]
        for name, r in w["systems"].items():
            assert r["status"] in ("ok", "crashed", "disabled"), (w["name"], name, r)
            if r["status"] != "ok":
                assert r.get("reason", "").strip(), (w["name"], name)
        for eager in ("eager", "eager_2") if w["name"] in TUNED_IN_DRY_RUN else ("eager",):
            e = w["systems"][eager]
            assert e["status"] == "ok" and e["correct"]["reference"] is True, (w["name"], e)
            assert e["ms"] > 0 and e["samples"] >= 2 and e["first_call_s"] > 0


def test_janus_measured_with_tuning_off_and_on(dry):
    doc, _, _ = dry
    for w in doc["workloads"]:
        systems = ("janus_untuned", "janus_tuned") if w["name"] in TUNED_IN_DRY_RUN else ("janus_untuned",)
        for name in systems:
            r = w["systems"][name]
            if w["name"] not in TUNED_IN_DRY_RUN and r["status"] == "crashed":
                continue  # a backend failure, reported with its reason (checked above)
            assert r["status"] == "ok", (w["name"], name, r.get("reason"))
            assert r["correct"]["ok"] is True and r["correct"]["max_rel_err"] <= r["correct"]["allowed"]
            assert r["graphs"] >= 1 and r["graph_backends"] == ["triton"] and r["triton_kernels"] >= 1
            assert r["first_call_s"] > 0 and r["ms"] > 0 and r["host_ms"] > 0 and r["samples"] >= 2
            assert r["frontend"] == "janus" and r["tuning"] == ("off" if name == "janus_untuned" else "always")
            assert "speedup_vs_eager" in r and "launch_api_calls" in r  # the profiled call ran
        if w["name"] not in TUNED_IN_DRY_RUN:
            assert w["systems"]["janus_tuned"]["status"] == "disabled"
    tunes = [wk["autotune"] for wk in doc["workers"]]
    assert tunes == ["off", "always"]


def test_inductor_and_triton_tests_ran(dry):
    doc, out, _ = dry
    for w in doc["workloads"]:
        r = w["systems"]["inductor"]
        if w["name"] == "pointwise_cheap":
            assert r["status"] == "ok" and r["correct"]["ok"] and r["ms"] > 0, r
        else:
            assert r["status"] == "disabled"
    t = doc["triton_tests"]
    assert t["status"] == "ok" and t["counts"].get("passed") == 2, t
    assert "passed" in (out / "triton_tests.log").read_text()


def test_markdown_has_a_row_per_workload(dry):
    doc, out, _ = dry
    md = (out / "gpu_check.md").read_text()
    assert "DRY RUN" in md and doc["meta"]["command"] in md
    for w in doc["workloads"]:
        assert md.count(f"| {w['name']} |") == 2, w["name"]  # time table and first-call table
    for failure in doc["summary"]["failures"]:
        assert failure in md


def test_installer_builds_the_frame_hook_into_a_fresh_folder(tmp_path):
    # pip builds it where scikit-build-core is importable; else it is compiled
    # directly (this virtual environment has no scikit-build-core)
    proc = _script("--dry-run", "--install", "yes", "--install-only", "--out", str(tmp_path), timeout=400)
    doc = json.loads((tmp_path / "gpu_check.json").read_text())
    info = doc["install"]
    try:
        assert proc.returncode == 0 and info["status"] == "ok", (info, proc.stdout[-2000:])
        assert info["method"] in ("pip", "cc") and info["hook_smoke"] == "ok"
        built = glob.glob(os.path.join(info["target"], "janus_frame", "_C*.so"))
        assert len(built) == 1, info
        load = ("import importlib.util as u\n"
                f"s = u.spec_from_file_location('janus_frame._C', {built[0]!r})\n"
                "m = u.module_from_spec(s); s.loader.exec_module(m); print(m.get_eval_frame())")
        r = subprocess.run([sys.executable, "-c", load], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and r.stdout.strip() == "None", r.stderr[-2000:]
        assert os.path.exists(os.path.join(info["target"], "janus_frame", "frontend"))
    finally:
        shutil.rmtree(info.get("target") or str(tmp_path / "none"), ignore_errors=True)
