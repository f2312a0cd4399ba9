"""The C frame hook under AddressSanitizer and UndefinedBehaviorSanitizer.

In: ``csrc/`` built here with ``-fsanitize=address,undefined`` (the system C
compiler, the running interpreter's headers) into a copy of the package.
Out: the hook's own tests (``test_hook.py``, the foundation tests) and a
compiled training loop run in a child interpreter that loads the
instrumented ``_C`` (site-packages on the path, but no start-up files, so the
editable install's finder does not bring in the regular build): any memory
error, leak of the hook's own state aside, or undefined behaviour fails.
"""
from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import sysconfig

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PKG = pathlib.Path(__import__("janus_frame").__file__).resolve().parent


def _gcc_lib(name: str) -> str | None:
    try:
        out = subprocess.run(["gcc", f"-print-file-name={name}"], capture_output=True, text=True,
                             timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out if os.path.isabs(out) and os.path.exists(out) else None


LIBASAN = _gcc_lib("libasan.so")

pytestmark = pytest.mark.skipif(LIBASAN is None or shutil.which("gcc") is None,
                                reason="gcc with AddressSanitizer is not available")

TRAIN = r"""
import torch, janus_frame as jf
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
log = []

@jf.compile(backend="eager")
def step(x, y):
    loss = ((model(x) - y) ** 2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    log.append(loss.detach())
    if loss > 100:
        print("diverged")
    return loss

for i in range(6):
    step(torch.randn(4 + i % 2, 8), torch.randn(4 + i % 2, 1))
jf.reset()
print("ok", len(log))
"""


@pytest.fixture(scope="module")
def asan_package(tmp_path_factory):
    out = tmp_path_factory.mktemp("asan")
    pkg = out / "janus_frame"
    shutil.copytree(PKG, pkg, ignore=shutil.ignore_patterns("_C*.so", "__pycache__"))
    ext = sysconfig.get_config_var("EXT_SUFFIX")
    inc = sysconfig.get_paths()["include"]
    srcs = [str(p) for p in sorted((ROOT / "csrc").glob("*.c"))]
    cmd = ["gcc", "-shared", "-fPIC", "-O1", "-g", "-fno-omit-frame-pointer",
           "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-UNDEBUG",
           "-Wall", f"-I{inc}", *srcs, "-o", str(pkg / f"_C{ext}")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-4000:]
    return out


def _child_env(pkgdir) -> dict:
    site = sysconfig.get_paths()["purelib"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("JANUS_")}
    env.update({
        # the instrumented copy first; site-packages for torch and pytest,
        # without site.py (-S), so no start-up file runs
        "PYTHONPATH": os.pathsep.join([str(pkgdir), site, str(ROOT / "tests")]),
        "LD_PRELOAD": LIBASAN,
        # CPython itself is not instrumented: its own allocations look leaked
        "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=0:halt_on_error=1",
        "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
        "PYTHONMALLOC": "malloc",
        "JANUS_CHECKS": "1",
    })
    return env


def _run(args, pkgdir, timeout=1200):
    return subprocess.run([sys.executable, "-S", *args], capture_output=True, text=True,
                          env=_child_env(pkgdir), cwd=ROOT, timeout=timeout)


def test_hook_tests_under_sanitizers(asan_package):
    r = _run(["-c", "import janus_frame._C as C; print(C.__file__)"], asan_package)
    assert r.returncode == 0 and str(asan_package) in r.stdout, r.stderr[-3000:]
    r = _run(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
              "tests/test_hook.py", "tests/test_api.py", "tests/test_foundation_chaining.py"],
             asan_package)
    tail = (r.stdout + r.stderr)[-6000:]
    assert "AddressSanitizer" not in tail and "runtime error:" not in tail, tail
    assert r.returncode == 0, tail


def test_compiled_training_loop_under_sanitizers(asan_package):
    r = _run(["-c", TRAIN], asan_package)
    tail = (r.stdout + r.stderr)[-6000:]
    assert "AddressSanitizer" not in tail and "runtime error:" not in tail, tail
    assert r.returncode == 0 and "ok 6" in r.stdout, tail
