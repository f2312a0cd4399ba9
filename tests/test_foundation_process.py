"""Whole-process behaviour, each case in a fresh interpreter: bad callback
results never crash the interpreter, ``JANUS_FRAME=1`` activation through the
``.pth`` start-up file, and the start-up file's cost when the variable is unset.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

PY = sys.executable


def run(code: str, env_extra: dict | None = None, cwd=None, timeout=120):
    env = dict(os.environ)
    env.pop("JANUS_FRAME", None)
    env.update(env_extra or {})
    return subprocess.run([PY, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=timeout)


BAD_CALLBACKS = r'''
import types
from janus_frame import _C

def target(a, b=1, *args, k=2, **kw):
    return a

def ok_guard(a0, a1, a2, a3, a4):
    return True

ok_repl_ns = {}
exec("def repl(a, b, args, k, kw):\n    return ('r', a)\n", ok_repl_ns)
ok_repl = ok_repl_ns["repl"]

def two(a0, a1):
    return True

def varargs(*a):
    return True

def kwonly(a0, a1, a2, a3, *, a4):
    return True

cases = {
    "int": lambda f, a: 5,
    "list": lambda f, a: [ok_guard, ok_repl],
    "tuple1": lambda f, a: (ok_guard,),
    "tuple3": lambda f, a: (ok_guard, ok_repl, ok_repl),
    "guard_not_function": lambda f, a: (len, ok_repl),
    "repl_not_function": lambda f, a: (ok_guard, "x"),
    "repl_callable_object": lambda f, a: (ok_guard, types.SimpleNamespace()),
    "guard_wrong_arity": lambda f, a: (two, ok_repl),
    "repl_wrong_arity": lambda f, a: (ok_guard, two),
    "guard_varargs": lambda f, a: (varargs, ok_repl),
    "repl_kwonly": lambda f, a: (ok_guard, kwonly),
    "repl_is_frame_code": lambda f, a: (ok_guard, f),
    "raises": lambda f, a: 1 / 0,
}
for name, cb in cases.items():
    _C.set_eval_frame(cb)
    try:
        target(1)
        print(name, "NO ERROR")
    except Exception as e:
        print(name, type(e).__name__, str(e).replace("\n", " "))
    finally:
        _C.set_eval_frame(None)
    _C.reset()
# the interpreter is still healthy, and a good callback works
_C.set_eval_frame(lambda f, a: (ok_guard, ok_repl))
r = target(7)
_C.set_eval_frame(None)
print("good", r, _C.hook_info())
'''


def test_bad_callback_results_raise_type_error_not_crash():
    p = run(BAD_CALLBACKS)
    assert p.returncode == 0, p.stderr[-3000:]
    out = dict(line.split(" ", 1) for line in p.stdout.strip().splitlines())
    for name in ("int", "list", "tuple1", "tuple3"):
        assert out[name].startswith("TypeError janus_frame: the frame callback must return None"), out[name]
    for name in ("guard_not_function", "repl_not_function", "repl_callable_object"):
        assert out[name].startswith("TypeError") and "not a Python function" in out[name], out[name]
    for name in ("guard_wrong_arity", "repl_wrong_arity", "guard_varargs", "repl_kwonly"):
        assert out[name].startswith("TypeError") and "exactly 5 positional" in out[name], out[name]
    assert out["repl_is_frame_code"].startswith("TypeError") and "own code" in out["repl_is_frame_code"]
    assert out["raises"].startswith("ZeroDivisionError")
    assert out["good"].startswith("('r', 7) {'installed': False, 'active_threads': 0")


SCRIPT = '''
import sys
import threading
from janus_frame import _C, hook

def step(x):
    return x * 2 + 1

def main():
    total = 0
    for i in range(3):
        total += step(i)
    cb = _C.get_eval_frame()
    print("callback", type(cb).__name__, getattr(cb, "global_mode", None))
    print("seen", hook.stats.frames_seen > 0)
    # main's own frame was intercepted and compiled (step may be inlined into it)
    print("main-compiled", bool(_C.code_entries(main.__code__)))
    print("total", total)
    t = threading.Thread(target=lambda: print("thread-on", _C.get_eval_frame() is not None))
    t.start()
    t.join()
    # the ended thread no longer counts as needing the hook
    print("active", _C.hook_info()["active_threads"])

main()
'''


def test_env_var_activation(tmp_path):
    (tmp_path / "script.py").write_text(SCRIPT)
    env = dict(os.environ, JANUS_FRAME="1", JANUS_FRAME_BACKEND="eager")
    p = subprocess.run([PY, "script.py"], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    out = p.stdout.splitlines()
    assert "callback FrameCompiler True" in out
    assert "seen True" in out and "main-compiled True" in out
    assert "total 9" in out
    assert "thread-on True" in out and "active 1" in out


@pytest.mark.parametrize("setting, named", [
    ({"JANUS_FRAME_BACKEND": "bogus"}, "'bogus'; choose one of default, eager, inductor"),
    ({"JANUS_RECOMPILE_LIMIT": "many"}, "JANUS_RECOMPILE_LIMIT must be an integer"),
])
def test_env_var_bad_setting_is_one_clear_error(tmp_path, setting, named):
    (tmp_path / "script.py").write_text("print('the program ran')\n")
    env = dict(os.environ, JANUS_FRAME="1", **setting)
    p = subprocess.run([PY, "script.py"], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 2 and "the program ran" not in p.stdout
    assert len(p.stderr.strip().splitlines()) == 1 and named in p.stderr, p.stderr
    assert "Traceback" not in p.stderr


SHUTDOWN = r"""
import atexit
import torch

class Resource:
    def __del__(self):
        print("del", float((torch.ones(2) * 3).sum()))

res = Resource()

def bye():
    print("atexit", float(torch.tanh(torch.ones(2)).sum()))

atexit.register(bye)

def step(x):
    return torch.relu(x) * 2

print("step", float(step(torch.ones(3)).sum()))
"""


def test_env_var_shutdown_runs_finalizers_natively(tmp_path):
    """Exit handlers still run (compiled or not); module teardown and
    finalizers run natively, with no janus_frame message."""
    (tmp_path / "script.py").write_text(SHUTDOWN)
    plain = subprocess.run([PY, "script.py"], cwd=tmp_path, capture_output=True, text=True,
                           timeout=120, env={k: v for k, v in os.environ.items()
                                             if k != "JANUS_FRAME"})
    env = dict(os.environ, JANUS_FRAME="1", JANUS_FRAME_BACKEND="eager")
    p = subprocess.run([PY, "script.py"], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == plain.returncode == 0, p.stderr[-2000:]
    assert p.stdout == plain.stdout
    assert p.stderr == plain.stderr == "", p.stderr[-2000:]


def test_env_var_compiles_a_script_outside_the_working_directory(tmp_path):
    d = tmp_path / "elsewhere"
    d.mkdir()
    (d / "s.py").write_text(
        "import torch\nfrom janus_frame.cache import stats\n"
        "def f(x):\n    return torch.tanh(x) * 2\n"
        "for _ in range(3):\n    f(torch.ones(3))\n"
        "print('compiled', stats.frames_compiled)\n")
    env = dict(os.environ, JANUS_FRAME="1", JANUS_FRAME_BACKEND="eager")
    p = subprocess.run([PY, str(d / "s.py")], cwd=tmp_path.parent, env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "compiled 1" in p.stdout


def test_env_var_off_values_do_not_activate(tmp_path):
    for value in ("0", "", "false", "off"):
        p = run("import sys; print('janus_frame' in sys.modules)", {"JANUS_FRAME": value})
        assert p.returncode == 0 and p.stdout.strip() == "False", (value, p.stdout, p.stderr)


def test_pth_imports_nothing_when_unset():
    p = run("import sys; print('torch' in sys.modules, 'janus_frame' in sys.modules, "
            "any(m.startswith('janus_frame') for m in sys.modules))")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "False False False"
    # -X importtime lists every module imported at start-up: none of ours.
    p = run("pass", {"PYTHONPROFILEIMPORTTIME": "1"})
    names = [line.rsplit("|", 1)[-1].strip() for line in p.stderr.splitlines()
             if line.startswith("import time:")]
    assert names, p.stderr
    ours = [n for n in names if n in ("janus_frame", "torch") or n.startswith(("janus_frame.", "torch."))]
    assert ours == []


def test_pth_file_is_installed():
    import site

    dirs = site.getsitepackages()
    assert any(os.path.exists(os.path.join(d, "janus_frame_startup.pth")) for d in dirs)


@pytest.mark.skipif(not os.path.exists(os.path.expanduser("~/.pyenv/versions")),
                    reason="pyenv not available")
def test_build_fails_clearly_on_unsupported_python(tmp_path):
    """Configuring the extension against a CPython outside 3.11-3.13 stops with the gate's message."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    pyenv = os.path.expanduser("~/.pyenv/versions")
    vers = sorted(v for v in os.listdir(pyenv)
                  if v.startswith(("3.10.", "3.14.")) and os.path.exists(f"{pyenv}/{v}/bin/python3"))
    if not vers:
        pytest.skip("no python3.10 or 3.14 in pyenv")
    other = f"{pyenv}/{vers[0]}/bin/python3"
    p = subprocess.run(["cmake", "-S", root, "-B", str(tmp_path / "b"),
                        f"-DPython_EXECUTABLE={other}"], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode != 0
    assert "supports CPython 3.11 to 3.13" in p.stdout + p.stderr
