"""The C frame hook: installation, nesting, threads, frame kinds, arguments,
exceptions, recursion, strategies, reset and memory.

Every test compiles through the real public API (``janus_frame.compile`` /
``enable`` / ``disable``) with a small frame transform from conftest.py in
place of the symbolic interpreter, so a failure here is the hook's or the
API's, never the compiler's.
"""
from __future__ import annotations

import asyncio
import gc
import sys
import threading
import traceback
import types
import warnings
import weakref

import pytest

import janus_frame
from janus_frame import _C, hook

from foundation_util import MARK, MARK_REPLACED, Recorder, always_true_guard, relayout  # noqa: F401

jf = janus_frame
pytestmark = pytest.mark.usefixtures("clean_state")


def info():
    return _C.hook_info()


# ---------------------------------------------------------------------------
# Installation and nesting


def test_hook_installed_only_while_needed(identity_transform):
    assert info() == {"installed": False, "active_threads": 0, "chained": False,
                    "eval_frame": "default"}
    seen = []

    def f(x):
        seen.append(info())
        return x + 1

    g = jf.compile(f, backend="eager")
    assert g(1) == 2
    assert seen == [{"installed": True, "active_threads": 1, "chained": False,
                     "eval_frame": "janus_frame"}]
    assert info()["installed"] is False and info()["active_threads"] == 0
    with jf.enable(backend="eager"):
        assert info()["installed"] is True
        with jf.enable(backend="eager"):
            assert info()["active_threads"] == 1
        assert info()["installed"] is True
    assert info()["installed"] is False


def test_set_eval_frame_rejects_non_callables():
    with pytest.raises(TypeError, match="None, False or a callable"):
        _C.set_eval_frame(3)
    assert info()["active_threads"] == 0


def test_disable_inside_enable_uninstalls_the_hook(identity_transform):
    inside = []

    def plain(x):
        inside.append((info()["installed"], _C.get_eval_frame()))
        return x * 2

    with jf.enable(backend="eager"):
        with jf.disable():
            assert plain(3) == 6
        assert info()["installed"] is True
    # The region ran with the hook removed altogether (native speed).
    assert inside == [(False, None)]
    assert plain.__code__ not in identity_transform.codes


def test_disable_decorator_called_from_compiled_code(marking_transform):
    observed = []

    @jf.disable
    def helper(x):
        observed.append((info()["installed"], _C.get_eval_frame()))
        return (MARK, x)

    def leaf(x):
        return MARK

    def outer(x):
        return helper(x), leaf(x)

    g = jf.compile(outer, backend="eager")
    assert g(5) == (("native", 5), "replaced")
    assert observed == [(False, None)]
    names = marking_transform.names()
    assert "outer" in names and "leaf" in names and "helper" not in names
    # and compiled code resumes being intercepted after the disabled call
    assert info()["active_threads"] == 0


def test_enable_nesting_restores_previous_callback(identity_transform):
    e1 = jf.enable(backend="eager")
    e2 = jf.enable(backend="eager", recompile_limit=3)
    with e1:
        c1 = _C.get_eval_frame()
        with e2:
            assert _C.get_eval_frame() is e2.compiler
            with jf.disable():
                assert _C.get_eval_frame() is None
                with e1:
                    assert _C.get_eval_frame() is c1
                assert _C.get_eval_frame() is None
            assert _C.get_eval_frame() is e2.compiler
        assert _C.get_eval_frame() is c1
    assert _C.get_eval_frame() is None


def test_exception_in_region_restores_state(identity_transform):
    with pytest.raises(ZeroDivisionError):
        with jf.enable(backend="eager"):
            1 / 0
    assert info()["active_threads"] == 0 and info()["installed"] is False


# ---------------------------------------------------------------------------
# Threads


def test_threads_are_independent(marking_transform):
    def work(x):
        return MARK, x

    results = {}
    other_saw = []
    go = threading.Event()
    done = threading.Event()

    def other():
        go.wait()
        other_saw.append(info()["installed"])
        # The hook is installed (the main thread is enabled), but this
        # thread's frames must never be intercepted.
        results["other"] = [work(i) for i in range(50)]
        done.set()

    t = threading.Thread(target=other)
    t.start()
    with jf.enable(backend="eager"):
        go.set()
        done.wait(10)
        results["main"] = work(1)
    t.join()
    assert other_saw == [True]
    assert results["main"] == ("replaced", 1)
    assert all(r[0] == "native" for r in results["other"])
    assert [c.co_name for c in marking_transform.codes].count("work") == 1
    assert info()["active_threads"] == 0


def test_two_enabled_threads_count_and_uninstall(identity_transform):
    inside = threading.Event()
    release = threading.Event()

    def other():
        with jf.enable(backend="eager"):
            inside.set()
            release.wait(10)

    t = threading.Thread(target=other)
    t.start()
    inside.wait(10)
    assert info()["active_threads"] == 1 and info()["installed"]
    with jf.enable(backend="eager"):
        assert info()["active_threads"] == 2
        with jf.disable():
            # another thread still needs the hook: it stays installed
            assert info()["installed"] is True and info()["active_threads"] == 1
    release.set()
    t.join()
    assert info() == {"installed": False, "active_threads": 0, "chained": False,
                    "eval_frame": "default"}


# ---------------------------------------------------------------------------
# Frame kinds that are never intercepted


def test_generators_coroutines_async_generators_skipped(identity_transform):
    def gen(n):
        for i in range(n):
            yield i

    async def coro(x):
        await asyncio.sleep(0)
        return x + 1

    async def agen(n):
        for i in range(n):
            yield i

    async def collect():
        return [i async for i in agen(3)]

    def driver():
        g = gen(3)
        first = next(g)  # resumed below, inside the compiled region too
        rest = list(g)
        return first, rest, asyncio.run(coro(1)), asyncio.run(collect())

    g = jf.compile(driver, backend="eager")
    assert g() == (0, [1, 2], 2, [0, 1, 2])
    names = identity_transform.names()
    assert "driver" in names
    assert not {"gen", "coro", "agen", "collect"} & set(names)


def test_resumed_generator_never_intercepted(identity_transform):
    def gen():
        x = yield 1
        yield x * 2

    g = gen()
    assert next(g) == 1  # started outside
    with jf.enable(backend="eager"):
        assert g.send(21) == 42
    assert identity_transform.seen == []


# ---------------------------------------------------------------------------
# Arguments reach the replacement correctly


def _check(fn, *args, **kwargs):
    expect = fn(*args, **kwargs)
    assert expect[0] == "native"
    got = jf.compile(fn, backend="eager")(*args, **kwargs)
    assert got[0] == "replaced", "the replacement did not run"
    assert got[1:] == expect[1:]
    return got


def test_argument_kinds(marking_transform):
    def f(a, b=2, /, c=3, *args, d, e=5, **kw):
        return MARK, a, b, c, args, d, e, kw

    _check(f, 1, d=4)
    _check(f, 1, 20, 30, 40, 50, d=4, e=6, z=7)
    jf.reset()
    _check(f, 1, 2, 3, d=None, q=[1])


def test_closures_cells_and_free_variables(marking_transform):
    k = 10

    def make():
        y = 7

        def inner(a, b):
            def innermost():
                return a + y  # a is an argument that is also a cell
            a = a + k
            return MARK, innermost(), b, y, k

        return inner

    _check(make(), 1, 2)


def test_nested_functions_sharing_one_code_object(marking_transform):
    fns = []
    for i in range(5):
        def adder(x, i=i):
            base = i * 100
            def inner(y):
                return MARK, y + base
            return inner
        fns.append(adder(0))
    codes = {f.__code__ for f in fns}
    assert len(codes) == 1
    compiled = [jf.compile(f, backend="eager") for f in fns]
    for rep in range(2):
        for i, c in enumerate(compiled):
            assert c(1) == ("replaced", i * 100 + 1)
    # one entry serves every closure
    assert len(_C.code_entries(fns[0].__code__)) == 1


def test_functions_exec_with_different_globals(marking_transform):
    src = "def f(x):\n    return MARK, x + OFFSET\n"
    code = compile(src, "<exec-test>", "exec")
    fs = []
    for off in (1, 2, 3):
        g = {"MARK": "native", "MARK_REPLACED": "replaced", "OFFSET": off}
        exec(code, g)
        fs.append(g["f"])
    for f, off in zip(fs, (1, 2, 3)):
        assert jf.compile(f, backend="eager")(10) == ("replaced", 10 + off)


def test_methods(marking_transform):
    class C:
        def __init__(self):
            self.v = 3

        def m(self, x, *, y=1):
            return MARK, self.v + x + y

        @classmethod
        def cm(cls, x):
            return MARK, cls.__name__, x

        @staticmethod
        def sm(x):
            return MARK, x

    c = C()
    assert jf.compile(c.m, backend="eager")(1, y=2) == ("replaced", 6)
    assert jf.compile(C.cm, backend="eager")(4) == ("replaced", "C", 4)
    assert jf.compile(C.sm, backend="eager")(5) == ("replaced", 5)

    class D:
        @jf.compile(backend="eager")
        def m(self, x):
            return MARK, x * 2

    assert D().m(4) == ("replaced", 8)


def test_recursion(marking_transform):
    def fact(n):
        if n <= 1:
            return 1
        return n * fact(n - 1)

    assert jf.compile(fact, backend="eager")(10) == 3628800
    # one compile; every recursive frame is a cache hit
    assert marking_transform.names().count("fact") == 1
    assert len(marking_transform.guard_calls) == 9

    def depth(n):
        return 0 if n == 0 else 1 + depth(n - 1)

    assert jf.compile(depth, backend="eager")(500) == 500


# ---------------------------------------------------------------------------
# Exceptions and tracebacks


def test_exception_in_replacement_keeps_user_file_and_line(identity_transform):
    def boom(x):
        y = x + 1
        raise ValueError(f"bad {y}")  # the line a traceback must show

    line = boom.__code__.co_firstlineno + 2
    g = jf.compile(boom, backend="eager")
    for _ in range(2):  # miss, then hit
        with pytest.raises(ValueError, match="bad 2") as ei:
            g(1)
        last = traceback.extract_tb(ei.value.__traceback__)[-1]
        assert last.filename == __file__ and last.lineno == line
    assert info()["active_threads"] == 0


def test_exception_in_guard_propagates(use_transform):
    def bad_guard_transform(func, args, compiler):
        code = func.__code__
        new = relayout(code, name_suffix="__r")
        repl = types.FunctionType(new, func.__globals__, new.co_name, None, func.__closure__)
        ns: dict = {}
        exec("def guard(a0):\n    raise KeyError('guard says no')\n", ns)
        return hook.CompiledEntry(guard=ns["guard"], replacement=repl)

    use_transform(bad_guard_transform)

    def f(x):
        return x

    g = jf.compile(f, backend="eager")
    assert g(1) == 1  # first call compiles, no guard yet
    with pytest.raises(KeyError, match="guard says no") as ei:
        g(2)
    assert traceback.extract_tb(ei.value.__traceback__)[-1].name == "guard"
    assert info()["active_threads"] == 0


def test_exception_in_transform_falls_back(use_transform):
    def broken(func, args, compiler):
        raise RuntimeError("internal compiler error")

    use_transform(broken)

    def f(x):
        return x * 3

    with pytest.warns(RuntimeWarning, match="internal error"):
        assert jf.compile(f, backend="eager")(2) == 6
    # strict mode raises instead
    jf.reset()
    with pytest.raises(RuntimeError, match="internal compiler error"):
        jf.compile(f, backend="eager", fullgraph=True)(2)


# ---------------------------------------------------------------------------
# Strategies, recompile limit, reset


def test_skip_strategy_this_frame_and_callees(marking_transform):
    def leaf():
        return MARK

    def mid():
        return MARK, leaf()

    def top():
        return mid()

    g = jf.compile(top, backend="eager")
    _C.set_code_strategy(mid.__code__, hook.SKIP, hook.DEFAULT)
    assert g() == ("native", "replaced")  # mid skipped, leaf still compiled
    jf.reset()
    marking_transform.seen.clear()
    _C.set_code_strategy(mid.__code__, hook.SKIP, hook.SKIP)
    assert g() == ("native", "native")  # mid and everything it calls skipped
    assert set(marking_transform.names()) == {"top"}
    assert _C.get_code_strategy(mid.__code__) == (hook.SKIP, hook.SKIP)


def test_run_only_strategy(marking_transform):
    def leaf(x):
        return MARK, x

    def mid(x):
        return leaf(x)

    g_leaf = jf.compile(leaf, backend="eager")
    assert g_leaf(1) == ("replaced", 1)  # leaf now has an entry
    marking_transform.seen.clear()

    def fresh(x):
        return MARK, x

    def mid2(x):
        return leaf(x), fresh(x)

    _C.set_code_strategy(mid2.__code__, hook.DEFAULT, hook.RUN_ONLY)
    # run-only below mid2: cached entries are used, nothing new is compiled
    assert jf.compile(mid2, backend="eager")(2) == (("replaced", 2), ("native", 2))
    assert marking_transform.names() == ["mid2"]
    # RUN_ONLY for the frame itself: never compiled
    _C.set_code_strategy(fresh.__code__, hook.RUN_ONLY, hook.DEFAULT)
    assert jf.compile(fresh, backend="eager")(3) == ("native", 3)
    with pytest.raises(ValueError):
        _C.set_code_strategy(fresh.__code__, 7, 0)


def _failing_guard_transform(calls: list):
    """A transform whose entries' guards always fail (every call recompiles);
    ``calls`` counts its calls."""
    def transform(func, args, compiler):
        calls.append(1)
        new = relayout(func.__code__, name_suffix="__r")
        repl = types.FunctionType(new, func.__globals__, new.co_name, None, func.__closure__)
        ns: dict = {}
        exec("def guard(a0):\n    return False\n", ns)
        return hook.CompiledEntry(guard=ns["guard"], replacement=repl)

    return transform


def test_recompile_limit_warns_once(use_transform):
    calls = []
    use_transform(_failing_guard_transform(calls))

    def f(x):
        return x + 1

    g = jf.compile(f, backend="eager", recompile_limit=3)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert [g(i) for i in range(10)] == [i + 1 for i in range(10)]
    limit = [x for x in w if "recompile limit" in str(x.message)]
    assert len(limit) == 1 and "f" in str(limit[0].message)
    assert len(calls) == 3
    assert len(_C.code_entries(f.__code__)) == 3
    assert _C.get_code_strategy(f.__code__)[0] == hook.RUN_ONLY


def test_under_warnings_as_errors_the_recompile_limit_is_logged_not_raised(use_transform,
                                                                          caplog):
    use_transform(_failing_guard_transform([]))

    def f(x):
        return x + 1

    g = jf.compile(f, backend="eager", recompile_limit=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # python -W error, pytest's filterwarnings = error
        assert [g(i) for i in range(5)] == [i + 1 for i in range(5)]
    assert any("recompile limit" in r.getMessage() for r in caplog.records)


def test_reset_clears_every_cache(identity_transform):
    def f(x):
        return x + 1

    def h(x):
        return x

    g = jf.compile(f, backend="eager")
    g(1)
    _C.set_code_strategy(h.__code__, hook.SKIP, hook.SKIP)
    st = hook.code_state(f.__code__)
    assert _C.code_entries(f.__code__) and st.entries
    assert hook.stats.frames_compiled == 1
    jf.reset()
    assert _C.code_entries(f.__code__) == []
    assert hook.code_state(f.__code__, create=False) is None
    assert _C.get_code_strategy(h.__code__) == (0, 0)
    assert hook.stats.frames_compiled == 0
    g(1)
    assert identity_transform.names().count("f") == 2  # compiled again


def test_entries_are_per_compiler(identity_transform):
    def f(x):
        return x

    jf.compile(f, backend="eager")(1)
    jf.compile(f, backend="eager", recompile_limit=5)(1)  # another configuration
    owners = [o for _, _, o in _C.code_entries(f.__code__)]
    assert len(owners) == 2 and owners[0] is not owners[1]
    assert identity_transform.names().count("f") == 2
    jf.compile(f, backend="eager")(1)  # same configuration: a hit
    assert identity_transform.names().count("f") == 2


def test_replacement_marked_skip_for_itself_only(marking_transform):
    def leaf():
        return MARK

    def top():
        return MARK, leaf()

    assert jf.compile(top, backend="eager")() == ("replaced", "replaced")
    repl = _C.code_entries(top.__code__)[0][1]
    assert _C.get_code_strategy(repl.__code__) == (hook.SKIP, hook.DEFAULT)


# ---------------------------------------------------------------------------
# Memory: entries and code objects are freed


def test_code_objects_and_entries_are_freed(identity_transform):
    refs = []

    def one(i):
        ns: dict = {}
        exec(f"def f(x):\n    return x + {i}\n", ns)
        f = ns["f"]
        assert jf.compile(f, backend="eager")(1) == 1 + i
        guard, repl, owner = _C.code_entries(f.__code__)[0]
        st = hook.code_state(f.__code__, create=False)
        refs.append((weakref.ref(f.__code__), weakref.ref(guard), weakref.ref(repl),
                     weakref.ref(st)))

    for i in range(50):
        one(i)
    identity_transform.seen.clear()  # the recorder holds codes and args
    gc.collect()
    alive = [r for r in refs if any(x() is not None for x in r)]
    assert alive == []


def test_no_leak_creating_and_dropping_compiled_functions(identity_transform):
    import tracemalloc

    def cycle(n):
        for i in range(n):
            ns: dict = {}
            exec("def f(x, *a, **k):\n    y = x\n    def g():\n        return y\n    return g()\n", ns)
            assert jf.compile(ns["f"], backend="eager")(i) == i
        identity_transform.seen.clear()
        gc.collect()

    cycle(300)  # warm up caches (realpath cache, interned names, ...)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        cycle(2000)
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    # 2000 compiled functions, each with two entries' worth of code objects
    # (~several KiB each): a leak would be megabytes.
    assert after - before < 200_000, (before, after)


def test_c_side_refcounts_do_not_grow(identity_transform):
    """PyMem allocations and references made by the C cache are balanced:
    total refcount is stable over thousands of miss+hit cycles."""
    if not hasattr(sys, "gettotalrefcount"):
        # release build: check the guard/replacement objects' refcounts instead
        pass

    def f(x):
        return x

    g = jf.compile(f, backend="eager")
    g(0)
    guard, repl, owner = _C.code_entries(f.__code__)[0]
    del owner
    base = (sys.getrefcount(guard), sys.getrefcount(repl))
    for i in range(5000):
        g(i)
    assert (sys.getrefcount(guard), sys.getrefcount(repl)) == base


def test_thread_ending_while_enabled_is_uncounted():
    """A thread that ends with janus_frame on (as every thread does under
    JANUS_FRAME=1) no longer counts as needing the hook."""
    def cb(func, args):
        return None

    def run():
        _C.set_eval_frame(cb)  # never turned off

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert info() == {"installed": False, "active_threads": 0, "chained": False,
                    "eval_frame": "default"}
    # the main thread's own state is untouched by other threads' exits
    with jf.enable(backend="eager"):
        t = threading.Thread(target=run)
        t.start()
        t.join()
        assert info()["active_threads"] == 1 and _C.get_eval_frame() is not None


def test_tls_uses_the_initial_exec_model():
    """The per-thread state is read on every frame: it must be one load off
    the thread pointer (initial-exec), not a __tls_get_addr call."""
    import shutil
    import subprocess

    if shutil.which("readelf") is None:
        pytest.skip("readelf not available")
    so = _C.__file__
    relocs = subprocess.run(["readelf", "-r", "-W", so], capture_output=True, text=True).stdout
    dyn = subprocess.run(["readelf", "-d", "-W", so], capture_output=True, text=True).stdout
    assert "TPOFF" in relocs and "STATIC_TLS" in dyn
    assert "__tls_get_addr" not in relocs


def test_concurrent_hits_on_a_shared_cache(use_transform):
    """Two threads hitting (and reordering) the same code's entries while the
    GIL switches inside guards: every call returns the right result."""
    def value_guard_transform(func, args, compiler):
        new = relayout(func.__code__, name_suffix="__v")
        repl = types.FunctionType(new, func.__globals__, new.co_name, None, func.__closure__)
        ns: dict = {}
        exec("def guard(a0):\n    x = 0\n    for i in range(20):\n        x += i\n"
             "    return a0 == 'K'\n", ns)
        code = ns["guard"].__code__
        consts = tuple(args[0] if c == "K" else c for c in code.co_consts)
        return hook.CompiledEntry(guard=types.FunctionType(code.replace(co_consts=consts), {}),
                                  replacement=repl)

    use_transform(value_guard_transform)

    def f(k):
        return k * 10

    g = jf.compile(f, backend="eager", recompile_limit=64)
    for k in range(6):
        assert g(k) == k * 10
    errors = []

    def worker(offset):
        try:
            for i in range(3000):
                k = (i * 7 + offset) % 6
                r = g(k)
                if r != k * 10:
                    errors.append((k, r))
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        ts = [threading.Thread(target=worker, args=(o,)) for o in (0, 3)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    finally:
        sys.setswitchinterval(old)
    assert errors == []
    entries = _C.code_entries(f.__code__)
    assert 6 <= len(entries) <= 12  # a racing miss may compile a value twice
    assert info()["active_threads"] == 0


# ---------------------------------------------------------------------------
# What the hook hands over, and what it leaves behind (every CPython version)


def test_callback_sees_raw_argument_slots(identity_transform):
    """The callback gets the frame's argument slots before the frame's
    prologue ran: positional, keyword-only, *args, **kwargs, in that order; an
    argument that is also a cell still holds the raw value (MAKE_CELL has not
    run, on 3.11 to 3.13 alike)."""
    def f(a, b=2, *args, k, **kw):
        def inner():
            return a + k  # a and k are argument cells
        return inner(), b, args, kw

    assert jf.compile(f, backend="eager")(1, k=3, z=4) == (4, 2, (), {"z": 4})
    (args,) = [a for c, a in identity_transform.seen if c is f.__code__]
    assert args == (1, 2, 3, (), {"z": 4})
    assert not any(isinstance(a, types.CellType) for a in args)


def test_frames_not_run_leave_no_references_or_stack(use_transform):
    """A frame replaced by its cached entry, or abandoned because a guard
    raised, releases its arguments and its data-stack space (from 3.12 the
    hook must clear and pop such a frame itself)."""
    flag = {"raise": False}

    def transform(func, args, compiler):
        new = relayout(func.__code__, name_suffix="__r")
        repl = types.FunctionType(new, func.__globals__, new.co_name, None, func.__closure__)
        ns: dict = {}
        exec("def guard(a0, a1, a2):\n    if '@flag@'.get('raise'):\n"
             "        raise KeyError('no')\n    return True\n", ns)
        # the flag is a constant of the guard: the hook rebinds guards to the
        # frame's globals
        code = ns["guard"].__code__
        consts = tuple(flag if c == "@flag@" else c for c in code.co_consts)
        guard = types.FunctionType(code.replace(co_consts=consts), {})
        return hook.CompiledEntry(guard=guard, replacement=repl)

    use_transform(transform)

    def f(x, *args, **kw):
        y = x  # noqa: F841 - a local slot the frame must also release
        return len(args) + len(kw)

    g = jf.compile(f, backend="eager")
    obj = object()
    assert g(obj, obj, k=obj) == 2  # compiles
    base_rc = sys.getrefcount(obj)
    top = _C._data_stack_top()
    for _ in range(2000):
        assert g(obj, obj, k=obj) == 2  # hits
    flag["raise"] = True
    for _ in range(200):
        with pytest.raises(KeyError):
            g(obj, obj, k=obj)
    assert _C._data_stack_top() == top
    assert sys.getrefcount(obj) == base_rc


def test_callback_errors_leave_no_references_or_stack():
    def f(a, b):
        return a

    def bad(func, args):
        if func.__code__ is f.__code__:
            raise ZeroDivisionError("callback")
        return None

    obj = object()
    base_rc = sys.getrefcount(obj)
    top = _C._data_stack_top()
    _C.set_eval_frame(bad)
    try:
        for _ in range(300):
            with pytest.raises(ZeroDivisionError):
                f(obj, obj)
    finally:
        _C.set_eval_frame(None)
    assert _C._data_stack_top() == top
    assert sys.getrefcount(obj) == base_rc


def test_deep_recursion_of_replacements_crosses_stack_chunks(marking_transform):
    """Replaced frames popped across the data stack's chunk boundaries (a
    chunk is 16 KiB; big frames cross one every few calls)."""
    def big(n):
        a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = a8 = a9 = n  # noqa: F841
        b0 = b1 = b2 = b3 = b4 = b5 = b6 = b7 = b8 = b9 = n  # noqa: F841
        c0 = c1 = c2 = c3 = c4 = c5 = c6 = c7 = c8 = c9 = n  # noqa: F841
        d0 = d1 = d2 = d3 = d4 = d5 = d6 = d7 = d8 = d9 = n  # noqa: F841
        if n == 0:
            return MARK, 0
        tag, depth = big(n - 1)
        return tag, depth + 1

    g = jf.compile(big, backend="eager")
    top = _C._data_stack_top()
    for _ in range(3):
        assert g(300) == ("replaced", 300)
    assert _C._data_stack_top() == top


# ---------------------------------------------------------------------------
# Generators thrown into, tracing and monitoring callbacks


def test_generator_throw_and_close_through_the_hook(identity_transform):
    log = []

    def gen():
        try:
            while True:
                try:
                    yield 1
                except ValueError as e:
                    log.append(("caught", str(e)))
        finally:
            log.append("finally")

    def driver():
        g = gen()
        next(g)
        r = g.throw(ValueError("x"))
        g.close()
        return r

    assert jf.compile(driver, backend="eager")() == 1
    assert log == [("caught", "x"), "finally"]
    g = gen()
    next(g)  # started outside, thrown into inside
    with jf.enable(backend="eager"):
        assert g.throw(ValueError("y")) == 1
        g.close()
    assert log[-2:] == [("caught", "y"), "finally"]
    assert "gen" not in identity_transform.names()


def test_trace_function_frames_are_not_intercepted(marking_transform):
    events = []

    def helper_called_by_tracer(ev):
        return ev

    def tracer(frame, event, arg):
        if frame.f_code.co_name.startswith("traced"):
            events.append(helper_called_by_tracer(event))
        return tracer

    def traced(x):
        return MARK, x + 1

    def outer(x):
        return traced(x)

    old = sys.gettrace()
    sys.settrace(tracer)
    try:
        r = jf.compile(outer, backend="eager")(1)
    finally:
        sys.settrace(old)
    assert r == ("replaced", 2)
    names = marking_transform.names()
    assert "outer" in names and "traced" in names
    assert "tracer" not in names and "helper_called_by_tracer" not in names
    assert "call" in events


@pytest.mark.skipif(sys.version_info < (3, 12), reason="sys.monitoring is new in 3.12")
def test_monitoring_callback_frames_are_not_intercepted(marking_transform):
    mon = sys.monitoring
    tool = mon.PROFILER_ID
    seen = []

    def on_start(code, offset):
        seen.append(code.co_name)

    def work(x):
        return MARK, x * 2

    mon.use_tool_id(tool, "janus_frame-test")
    try:
        mon.register_callback(tool, mon.events.PY_START, on_start)
        mon.set_events(tool, mon.events.PY_START)
        r = jf.compile(work, backend="eager")(4)
    finally:
        mon.set_events(tool, 0)
        mon.register_callback(tool, mon.events.PY_START, None)
        mon.free_tool_id(tool)
    assert r == ("replaced", 8)
    assert "work__jf" in seen  # events fire for the code that actually runs
    assert "on_start" not in marking_transform.names()


# ---------------------------------------------------------------------------
# Interpreters; the benchmark's empty hook


def test_subinterpreters_run_natively(tmp_path):
    """janus_frame turns on only in the interpreter that imported it (its
    extra index and eval function are per interpreter)."""
    import subprocess
    import textwrap

    code = textwrap.dedent('''
        import _testcapi
        from janus_frame import _C
        out = []
        _testcapi.run_in_subinterp(
            "import janus_frame._C as C\\n"
            "try:\\n"
            "    C.set_eval_frame(lambda f, a: None)\\n"
            "    print('sub: no error')\\n"
            "except RuntimeError as e:\\n"
            "    print('sub:', 'RuntimeError', 'main one' in str(e))\\n"
            "w = C.Wrapper(lambda x: x + 1, lambda f, a: None)\\n"
            "print('sub wrapper:', w(1), C.hook_info()['installed'])\\n")
        print("main:", _C.hook_info())
    ''')
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    if "No module named '_testcapi'" in p.stderr:
        pytest.skip("_testcapi not built")
    assert p.returncode == 0, p.stderr[-3000:]
    assert "sub: RuntimeError True" in p.stdout
    assert "sub wrapper: 2 False" in p.stdout
    assert "main: {'installed': False, 'active_threads': 0" in p.stdout


def test_empty_hook_for_benchmarks():
    def f(x):
        return x + 1

    _C._empty_hook(True)
    try:
        assert info()["eval_frame"] == "other" and f(1) == 2
        with pytest.raises(RuntimeError):
            _C._empty_hook(True)
    finally:
        _C._empty_hook(False)
    assert info()["eval_frame"] == "default"
    with pytest.raises(RuntimeError):
        _C._empty_hook(False)


def test_internal_error_warning_leaves_the_callers_module_unchanged(use_transform):
    # warnings.warn would create __warningregistry__ in the calling module:
    # an attribute the program never made
    def broken(func, args, compiler):
        raise RuntimeError("internal compiler error")

    use_transform(broken)
    mod = types.ModuleType("user_mod_for_warning")
    src = "def call(g, x):\n    return g(x)\n"
    exec(compile(src, "user_mod_for_warning.py", "exec"), mod.__dict__)
    before = set(vars(mod))

    def f(x):
        return x * 3

    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter("default")
        assert mod.call(jf.compile(f, backend="eager"), 2) == 6
    hits = [w for w in ws if "internal error" in str(w.message)]
    assert len(hits) == 1 and hits[0].filename == "user_mod_for_warning.py" and \
        hits[0].lineno == 2 and hits[0].category is RuntimeWarning
    assert set(vars(mod)) == before
