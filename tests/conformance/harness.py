"""The conformance suite's differential harness.

A *program* is a plain function (or a ``build()`` that makes a fresh "world":
an object whose ``fn`` is the function, plus whatever state it closes over)
and an argument factory ``args(k)`` / ``args(k, world)`` for call ``k``.
The harness makes two identical worlds, one run natively and one through
``janus_frame.compile(world.fn, backend=...)``, and runs ``calls`` calls in
each. Before call ``k`` both sides are seeded identically (torch, ``random``,
numpy), ``between(k, world)`` may change the world (patch a class, register
a hook, mutate an object), and the arguments are made afresh, so the two
sides never share a mutable object. After each call it compares:

* the return value, structurally: types, container contents and order,
  tensors' values, dtype, shape, strides, storage offset, ``requires_grad``,
  ``grad_fn`` presence and ``.grad`` (leaves), ndarrays, Python scalars;
* the arguments after the call (mutations) and the world's attributes
  (``vars(world)`` less callables) and ``observe(world)``;
* *identity and aliasing*: over every tensor, ndarray and mutable container
  reachable from (arguments, result, world), which ones are the same object
  and which tensors/ndarrays share memory, so a view returned as a copy, a
  copy returned as the input, or a list returned as a copy all show;
* raised exceptions: type, message, ``__cause__`` type and the last frame of
  the traceback in the program's file (line number), and that no
  janus_frame frame follows it;
* printed output, user warnings, module globals named in ``globals``,
  RNG states (torch, random, numpy) and global torch state (grad mode,
  inference mode, torch-function mode stack depth, autocast);
* on the compiled side only: janus_frame's own warnings (internal errors,
  recompile limit), frames that failed to compile internally, graphs the
  fusing backend refused, and the number of graphs and graph breaks of the
  first call against ``graphs`` / ``breaks`` (what ``torch.compile`` gets
  for the program), and recompiles over all calls against ``recompiles``.

Every mismatch is reported with a ``[tag]`` (``[result]``, ``[inputs]``,
``[exception]``, ``[graphs]``, ...), all of them at once.

Programs flagged ``subprocess=True`` (crash-prone ones) run the same check
in a child interpreter (one child for all of them, restarted after a crash),
so a segfault fails one test, not the suite.
"""
from __future__ import annotations

import contextlib
import dataclasses
import enum
import importlib.util
import inspect
import io
import json
import math
import os
import random
import subprocess
import sys
import traceback
import types
import warnings
from collections import deque
from typing import Any, Callable

import numpy as np
import pytest
import torch

from torch.utils.hooks import RemovableHandle

import janus_frame as jf
from janus_frame.cache import listeners, stats as jf_stats

HERE = os.path.dirname(os.path.abspath(__file__))
BACKENDS = ("eager", "default")
JANUS_SRC = os.path.dirname(os.path.abspath(jf.__file__))
RTOL, ATOL = 1e-5, 1e-6
# The fault-injection run (tests/test_fault_injection.py): the compiler and
# the backend raise at random inside; the program must still behave as
# eager does (results, inputs, exceptions, side effects), while graph counts,
# internal errors and fallbacks are what the faults make them.
FAULTS = bool(os.environ.get("JANUS_FAULT_INJECTION", "").strip())


# --------------------------------------------------------------------------- inputs
def T(*shape, dtype=torch.float32, requires_grad=False, low=-5, high=5):
    """A small random tensor (the harness seeds the generator per call)."""
    if dtype.is_floating_point or dtype.is_complex:
        t = torch.randn(*shape, dtype=dtype)
    elif dtype == torch.bool:
        t = torch.rand(*shape) > 0.5
    else:
        t = torch.randint(low, high, shape, dtype=dtype)
    if requires_grad:
        t.requires_grad_(True)
    return t


def seed_all(s: int) -> None:
    torch.manual_seed(s)
    random.seed(s)
    np.random.seed(s)


# --------------------------------------------------------------------------- programs
@dataclasses.dataclass
class Program:
    name: str
    topic: str
    fn: Callable | None = None
    eager_fn: Callable | None = None  # what eager runs instead, where they must differ
    build: Callable | None = None  # () -> world with .fn
    args: Callable | None = None  # (k) or (k, world) -> tuple | (tuple, dict)
    calls: int = 3
    # graphs of the first call (torch.compile's count); a (lo, hi) pair where
    # torch.compile breaks for a limitation of its own that janus_frame need
    # not share; None: not checked. Not checked when eager raises on call 0.
    graphs: int | tuple | None = 1
    breaks: int | None = 0  # graph breaks of the first call
    recompiles: int | None = None  # most recompiles allowed over all calls
    min_graphs_total: int | None = None  # graphs over all calls at least
    between: Callable | None = None  # (k, world) before call k (both sides)
    observe: Callable | None = None  # (world) -> compared after each call
    globals: tuple = ()  # module globals restored before each side and compared
    rtol: float = RTOL
    atol: float = ATOL
    strides: bool = True
    rng: bool = True
    backward: bool = True  # backprop the tensor results that need it, compare .grad
    fullgraph: bool = False
    subprocess: bool = False
    why: str = ""  # why the graph/break count is what it is, where not 1/0
    module: str = ""  # file the program lives in (set by the registry)

    @property
    def id(self) -> str:
        return f"{self.topic}::{self.name}"

    def world(self):
        if self.build is not None:
            w = self.build()
            if not hasattr(w, "fn"):
                raise TypeError(f"{self.id}: build() must return an object with .fn")
            return w
        return types.SimpleNamespace(fn=self.fn)

    def make_args(self, k: int, world):
        if self.args is None:
            a = ()
        else:
            n = len(inspect.signature(self.args).parameters)
            a = self.args(k, world) if n >= 2 else self.args(k) if n == 1 else self.args()
        if isinstance(a, tuple) and len(a) == 2 and isinstance(a[1], dict) \
                and isinstance(a[0], tuple):
            return list(a[0]), dict(a[1])
        if not isinstance(a, tuple):
            a = (a,)
        return list(a), {}


class Registry:
    """The programs of one topic file; ``tests()`` makes its pytest function."""

    def __init__(self, topic: str):
        self.topic = topic
        self.programs: list[Program] = []
        self._module_file = inspect.stack()[1].filename

    def __call__(self, fn=None, /, **kw):
        """``@P(args=...)`` over a function, or ``P(name=..., build=..., ...)``."""
        def add(f):
            name = kw.pop("name", None) or f.__name__
            p = Program(name=name, topic=self.topic, fn=f, module=self._module_file, **kw)
            self._add(p)
            return f
        if fn is not None:
            return add(fn)
        if "build" in kw and "fn" not in kw:
            p = Program(topic=self.topic, module=self._module_file, **kw)
            self._add(p)
            return p
        return add

    def _add(self, p: Program) -> None:
        if any(q.name == p.name for q in self.programs):
            raise ValueError(f"duplicate program {p.id}")
        self.programs.append(p)
        ALL_PROGRAMS.append(p)

    def tests(self):
        from known_failures import marks_for

        params = []
        for p in self.programs:
            for b in BACKENDS:
                params.append(pytest.param(p, b, id=f"{p.name}-{b}", marks=marks_for(p.id, b)))

        @pytest.mark.conformance
        @pytest.mark.expect_fallback  # the harness checks internal errors and fallbacks itself
        @pytest.mark.parametrize("prog,backend", params)
        def test_program(prog, backend):
            if prog.subprocess:
                run_in_subprocess(prog, backend)
            else:
                check(prog, backend)

        return test_program


# --------------------------------------------------------------------------- one side
@dataclasses.dataclass
class Outcome:
    args: list
    kwargs: dict
    world: Any
    result: Any = None
    exc: BaseException | None = None
    stdout: str = ""
    user_warnings: list = dataclasses.field(default_factory=list)
    janus_warnings: list = dataclasses.field(default_factory=list)
    rng: tuple = ()
    state: dict = dataclasses.field(default_factory=dict)
    globals_after: dict = dataclasses.field(default_factory=dict)
    observed: Any = None
    backward_error: str | None = None


def _global_state() -> dict:
    return {
        "grad_enabled": torch.is_grad_enabled(),
        "inference_mode": torch.is_inference_mode_enabled(),
        "torch_function_modes": torch._C._len_torch_function_stack(),
        "autocast_cpu": torch.is_autocast_enabled("cpu"),
        "default_dtype": torch.get_default_dtype(),
    }


def _restore_global_state(st: dict) -> None:
    torch.set_grad_enabled(st["grad_enabled"])
    torch.set_default_dtype(st["default_dtype"])


def _restore_globals(mod_globals: dict, saved: dict) -> None:
    for name, val in saved.items():
        cur = mod_globals.get(name)
        if isinstance(cur, list) and isinstance(val, list):
            cur[:] = val
        elif isinstance(cur, dict) and isinstance(val, dict):
            cur.clear()
            cur.update(val)
        elif isinstance(cur, set) and isinstance(val, set):
            cur.clear()
            cur.update(val)
        else:
            mod_globals[name] = val


def _snapshot(v):
    if isinstance(v, list):
        return list(v)
    if isinstance(v, dict):
        return dict(v)
    if isinstance(v, set):
        return set(v)
    return v


def run_side(prog: Program, world, fn, k: int, seed: int) -> Outcome:
    if prog.between is not None:
        prog.between(k, world)
    seed_all(seed)
    args, kwargs = prog.make_args(k, world)
    out = Outcome(args=args, kwargs=kwargs, world=world)
    buf = io.StringIO()
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter("always")
        with contextlib.redirect_stdout(buf):
            try:
                out.result = fn(*args, **kwargs)
            except Exception as e:  # noqa: BLE001 - compared against the other side
                out.exc = e
    if prog.backward and out.exc is None:
        with warnings.catch_warnings(record=True) as ws2, contextlib.redirect_stdout(buf):
            warnings.simplefilter("always")
            out.backward_error = _backward(out.result)
        ws = list(ws) + list(ws2)
    out.stdout = buf.getvalue()
    for w in ws:
        msg = str(w.message)
        if msg.startswith("janus_frame"):
            out.janus_warnings.append(f"{w.category.__name__}: {msg}")
        else:
            out.user_warnings.append((w.category.__name__, msg))
    out.rng = (torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy())
    out.state = _global_state()
    if prog.observe is not None:
        try:
            out.observed = prog.observe(world)
        except Exception as e:  # noqa: BLE001
            out.observed = ("observe raised", type(e).__name__, str(e))
    return out


def _backward(result) -> str | None:
    """Backpropagate the sum of the result's tensors that have a grad_fn
    (leaves' .grad are compared with the arguments and the world)."""
    seen, outs = set(), []

    def collect(v, depth=0):
        if depth > 4 or id(v) in seen:
            return
        seen.add(id(v))
        if isinstance(v, torch.Tensor):
            if v.grad_fn is not None and (v.is_floating_point() or v.is_complex()):
                outs.append(v)
        elif isinstance(v, (list, tuple)):
            for x in v:
                collect(x, depth + 1)
        elif isinstance(v, dict):
            for x in v.values():
                collect(x, depth + 1)
    collect(result)
    if not outs:
        return None
    try:
        torch.autograd.backward([o.real.sum() if o.is_complex() else o.sum() for o in outs])
    except Exception as e:  # noqa: BLE001 - compared against the other side
        return f"{type(e).__name__}: {e}"
    return None


# --------------------------------------------------------------------------- comparison
class Mismatch(list):
    def add(self, tag: str, msg: str) -> None:
        if len(self) < 40:
            self.append(f"[{tag}] {msg}")


_IMMUTABLE = (int, float, complex, str, bytes, bool, type(None), torch.dtype, torch.device,
              torch.Size, range, frozenset, enum.Enum, type, types.FunctionType,
              types.BuiltinFunctionType, np.generic, np.dtype)


def _is_view_like(v) -> bool:
    return isinstance(v, (torch.Tensor, np.ndarray))


def _mem_interval(v):
    if isinstance(v, torch.Tensor):
        if v.layout != torch.strided or v.device.type == "meta":
            return None
        s = v.untyped_storage()
        if s.nbytes() == 0:
            return None
        return (s.data_ptr(), s.data_ptr() + s.nbytes())
    if isinstance(v, np.ndarray):
        if v.nbytes == 0:
            return None
        lo, hi = np.lib.array_utils.byte_bounds(v)
        return (lo, hi)
    return None


def _children(v):
    """(label, child) pairs of a value, in a deterministic structural order."""
    if isinstance(v, torch.Tensor):
        if v.is_leaf and v.grad is not None:
            return [(".grad", v.grad)]
        return []
    if isinstance(v, (list, tuple, deque)):
        return [(f"[{i}]", x) for i, x in enumerate(v)]
    if isinstance(v, dict):
        return [(f"[{k!r}]", x) for k, x in v.items()]
    if isinstance(v, (set, frozenset)):
        return []
    if isinstance(v, (types.MappingProxyType,)):
        return []
    if isinstance(v, torch.nn.Module):
        return [(f".{k}", x) for k, x in v.state_dict(keep_vars=True).items()] + \
            [(".training", v.training)]
    if isinstance(v, _IMMUTABLE) or callable(v) or inspect.isgenerator(v):
        return []
    d = getattr(v, "__dict__", None)
    kids = []
    if isinstance(d, dict):
        kids += [(f".{k}", x) for k, x in d.items() if not callable(x) or _is_view_like(x)]
    for cls in type(v).__mro__:
        for s in getattr(cls, "__slots__", ()):
            if s in ("__dict__", "__weakref__"):
                continue
            if hasattr(v, s):
                kids.append((f".{s}", getattr(v, s)))
    return kids


def _walk(root, label="", seen=None, acc=None):
    """Every mutable object reachable from root, in order (identity relation)."""
    if seen is None:
        seen, acc = set(), []
    if isinstance(root, (str, bytes, int, float, complex, bool, type(None))):
        return acc
    if isinstance(root, (torch.Tensor, np.ndarray, list, dict, set, deque)) or (
            hasattr(root, "__dict__") and not isinstance(root, _IMMUTABLE) and not callable(root)):
        acc.append((label, root))
    if id(root) in seen:
        return acc
    seen.add(id(root))
    for lab, c in _children(root):
        _walk(c, label + lab, seen, acc)
    return acc


def _relations(objs):
    """Identity and memory-sharing relations among a walk's objects."""
    ident, share = [], []
    first = {}
    for i, (_, o) in enumerate(objs):
        ident.append(first.setdefault(id(o), i))
    ivs = [(_mem_interval(o) if _is_view_like(o) else None) for _, o in objs]
    for i, a in enumerate(ivs):
        row = []
        if a is not None:
            for j in range(i):
                b = ivs[j]
                if b is not None and a[0] < b[1] and b[0] < a[1] and ident[j] != ident[i]:
                    row.append(j)
        share.append(tuple(row))
    return ident, share


def _close_scalar(a, b, rtol, atol) -> bool:
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    if a == b:
        return True
    return abs(a - b) <= atol + rtol * abs(b)


def compare(e, c, path: str, mm: Mismatch, prog: Program, tag: str, memo=None) -> None:
    if memo is None:
        memo = set()
    if (id(e), id(c)) in memo:
        return
    memo.add((id(e), id(c)))
    if isinstance(e, RemovableHandle):  # ids come from a process-wide counter
        return
    if type(e) is not type(c) and not _same_local_class(type(e), type(c)):
        mm.add(tag, f"{path}: type {type(e).__qualname__} vs {type(c).__qualname__} "
               f"({_short(e)} vs {_short(c)})")
        return
    if isinstance(e, torch.Tensor):
        _compare_tensor(e, c, path, mm, prog, tag, memo)
    elif isinstance(e, np.ndarray):
        if e.dtype != c.dtype or e.shape != c.shape:
            mm.add(tag, f"{path}: ndarray {e.dtype}{e.shape} vs {c.dtype}{c.shape}")
        elif not np.allclose(e, c, rtol=prog.rtol, atol=prog.atol, equal_nan=True):
            mm.add(tag, f"{path}: ndarray values {e.tolist()} vs {c.tolist()}")
    elif isinstance(e, (list, tuple, deque)):
        if len(e) != len(c):
            mm.add(tag, f"{path}: length {len(e)} vs {len(c)} ({_short(e)} vs {_short(c)})")
            return
        for i, (x, y) in enumerate(zip(e, c)):
            compare(x, y, f"{path}[{i}]", mm, prog, tag, memo)
    elif isinstance(e, dict):
        if list(e) != list(c):
            mm.add(tag, f"{path}: keys {list(e)!r} vs {list(c)!r}")
            return
        for k in e:
            compare(e[k], c[k], f"{path}[{k!r}]", mm, prog, tag, memo)
        if hasattr(e, "default_factory") and e.default_factory is not c.default_factory:
            mm.add(tag, f"{path}: default_factory {e.default_factory} vs {c.default_factory}")
    elif isinstance(e, (type({}.keys()), type({}.values()), type({}.items()))):
        compare(list(e), list(c), path, mm, prog, tag, memo)
    elif isinstance(e, (set, frozenset)):
        if e != c:
            mm.add(tag, f"{path}: {e!r} vs {c!r}")
    elif isinstance(e, (float, complex)):
        if not _close_scalar(e, c, prog.rtol, prog.atol):
            mm.add(tag, f"{path}: {e!r} vs {c!r}")
    elif isinstance(e, (int, str, bytes, bool, type(None), torch.dtype, torch.device,
                        torch.Size, range, enum.Enum, np.generic, np.dtype)):
        if isinstance(e, np.floating):
            ok = _close_scalar(float(e), float(c), prog.rtol, prog.atol)
        else:
            ok = e == c
        if not ok:
            mm.add(tag, f"{path}: {e!r} vs {c!r}")
    elif isinstance(e, BaseException):
        if str(e) != str(c):
            mm.add(tag, f"{path}: exception {e!r} vs {c!r}")
    elif isinstance(e, torch.nn.Module):
        for (ke, ve), (kc, vc) in zip(_children(e), _children(c)):
            compare(ve, vc, path + ke, mm, prog, tag, memo)
    elif inspect.isgenerator(e):
        pass
    elif isinstance(e, (types.FunctionType, types.MethodType, types.BuiltinFunctionType, type)):
        ne = getattr(e, "__qualname__", repr(e))
        nc = getattr(c, "__qualname__", repr(c))
        if ne != nc:
            mm.add(tag, f"{path}: callable {ne} vs {nc}")
    else:
        kids_e, kids_c = _children(e), _children(c)
        if kids_e or kids_c or hasattr(e, "__dict__"):
            le, lc = [k for k, _ in kids_e], [k for k, _ in kids_c]
            if le != lc:
                mm.add(tag, f"{path}: attributes {le} vs {lc}")
                return
            for (ke, ve), (_, vc) in zip(kids_e, kids_c):
                compare(ve, vc, path + ke, mm, prog, tag, memo)
        else:
            try:
                ok = bool(e == c)
            except Exception:  # noqa: BLE001
                ok = repr(e) == repr(c)
            if not ok:
                mm.add(tag, f"{path}: {e!r} vs {c!r}")


def _same_local_class(a: type, b: type) -> bool:
    """Classes a world's build() defines are two class objects, one per world."""
    return "<locals>" in a.__qualname__ and (a.__module__, a.__qualname__) == (
        b.__module__, b.__qualname__)


def _short(v) -> str:
    r = repr(v)
    return r if len(r) < 120 else r[:117] + "..."


def _compare_tensor(e, c, path, mm, prog, tag, memo):
    if e.dtype != c.dtype or e.shape != c.shape or e.device != c.device:
        mm.add(tag, f"{path}: tensor {e.dtype}{tuple(e.shape)} vs {c.dtype}{tuple(c.shape)}")
        return
    if e.requires_grad != c.requires_grad:
        mm.add(tag, f"{path}: requires_grad {e.requires_grad} vs {c.requires_grad}")
    if (e.grad_fn is None) != (c.grad_fn is None):
        mm.add(tag, f"{path}: grad_fn {type(e.grad_fn).__name__} vs {type(c.grad_fn).__name__}")
    if prog.strides and e.layout == torch.strided and e.numel() > 1:
        # strides of size-1 dimensions are not observable through indexing
        se = tuple(s for s, n in zip(e.stride(), e.shape) if n != 1)
        sc = tuple(s for s, n in zip(c.stride(), c.shape) if n != 1)
        if se != sc:
            mm.add(tag + "-strides", f"{path}: strides {e.stride()} vs {c.stride()}")
        if e.storage_offset() != c.storage_offset():
            mm.add(tag + "-strides",
                   f"{path}: storage offset {e.storage_offset()} vs {c.storage_offset()}")
    ed, cd = e.detach(), c.detach()
    try:
        if e.is_floating_point() or e.is_complex():
            torch.testing.assert_close(cd, ed, rtol=prog.rtol, atol=prog.atol, equal_nan=True)
        elif not torch.equal(ed, cd):
            raise AssertionError("values differ")
    except AssertionError:
        mm.add(tag, f"{path}: values {_short(ed.tolist())} vs {_short(cd.tolist())}")
    if e.is_leaf and e.requires_grad and c.is_leaf:  # (grad_fn mismatches are reported above)
        ge, gc = e.grad, c.grad
        if (ge is None) != (gc is None):
            mm.add(tag, f"{path}.grad: {_short(ge)} vs {_short(gc)}")
        elif ge is not None:
            compare(ge, gc, path + ".grad", mm, prog, tag, memo)


def _user_frame(exc: BaseException, filename: str):
    tb = traceback.extract_tb(exc.__traceback__)
    last = None
    after = []
    for fs in tb:
        if fs.filename == filename:
            last, after = (fs.lineno, fs.name), []
        elif last is not None:
            after.append(fs.filename)
    internal = [f for f in after if f.startswith(JANUS_SRC)]
    return last, internal


def compare_outcomes(prog: Program, e: Outcome, c: Outcome, k: int, mm: Mismatch) -> None:
    at = f"call {k}: "
    if (e.exc is None) != (c.exc is None):
        if e.exc is not None:
            mm.add("exception", f"{at}eager raised {type(e.exc).__name__}: {e.exc}; "
                   f"compiled returned {_short(c.result)}")
        else:
            mm.add("exception", f"{at}compiled raised {type(c.exc).__name__}: {c.exc} "
                   f"(eager returned {_short(e.result)})\n" +
                   "".join(traceback.format_exception(c.exc)[-6:]))
    elif e.exc is not None:
        if type(e.exc) is not type(c.exc) or str(e.exc) != str(c.exc):
            mm.add("exception", f"{at}{type(e.exc).__name__}({e.exc}) vs "
                   f"{type(c.exc).__name__}({c.exc})")
        elif type(e.exc.__cause__) is not type(c.exc.__cause__):
            mm.add("exception", f"{at}__cause__ {e.exc.__cause__!r} vs {c.exc.__cause__!r}")
        else:
            fn_file = prog.module
            le, _ = _user_frame(e.exc, fn_file)
            lc, internal = _user_frame(c.exc, fn_file)
            if le != lc:
                mm.add("traceback", f"{at}last user frame {le} vs {lc}")
            if internal:
                mm.add("traceback", f"{at}janus_frame frames after the user's: {internal}")
    else:
        compare(e.result, c.result, f"{at}result", mm, prog, "result")
    compare(e.args, c.args, f"{at}args", mm, prog, "inputs")
    compare(e.kwargs, c.kwargs, f"{at}kwargs", mm, prog, "inputs")
    compare(e.world, c.world, f"{at}world", mm, prog, "side-effects")
    if prog.observe is not None:
        compare(e.observed, c.observed, f"{at}observed", mm, prog, "side-effects")
    compare(e.globals_after, c.globals_after, f"{at}globals", mm, prog, "side-effects")
    if e.backward_error != c.backward_error:
        mm.add("autograd", f"{at}backward of the result: {e.backward_error} vs {c.backward_error}")
    if e.stdout != c.stdout:
        mm.add("side-effects", f"{at}printed {e.stdout!r} vs {c.stdout!r}")
    if e.user_warnings != c.user_warnings:
        mm.add("side-effects", f"{at}warnings {e.user_warnings} vs {c.user_warnings}")
    if e.state != c.state:
        mm.add("global-state", f"{at}{e.state} vs {c.state}")
    if prog.rng:
        if not torch.equal(e.rng[0], c.rng[0]):
            mm.add("rng", f"{at}torch RNG state differs after the call")
        if e.rng[1] != c.rng[1] or not np.array_equal(e.rng[2], c.rng[2]):
            mm.add("rng", f"{at}random/numpy RNG state differs after the call")
    # identity and memory sharing over everything reachable
    roots_e = (e.args, e.kwargs, e.result, e.world)
    roots_c = (c.args, c.kwargs, c.result, c.world)
    we, wc = _walk(roots_e), _walk(roots_c)
    if [lab for lab, _ in we] == [lab for lab, _ in wc]:
        ie, se = _relations(we)
        ic, sc = _relations(wc)
        for i in range(len(we)):
            if ie[i] != ic[i]:
                def who(j, i=i):
                    return "a new object" if j == i else f"the same object as {_root_name(we[j][0])}"
                mm.add("aliasing", f"{at}{_root_name(we[i][0])} is {who(ie[i])} in eager, "
                       f"{who(ic[i])} compiled")
            elif se[i] != sc[i]:
                mm.add("aliasing", f"{at}{_root_name(we[i][0])} shares memory with "
                       f"{[_root_name(we[j][0]) for j in se[i]]} in eager, with "
                       f"{[_root_name(we[j][0]) for j in sc[i]]} compiled")


def _root_name(label: str) -> str:
    for i, name in enumerate(("args", "kwargs", "result", "world")):
        p = f"[{i}]"
        if label.startswith(p):
            return name + label[len(p):]
    return label or "<root>"


# --------------------------------------------------------------------------- the check
class _Events:
    def __init__(self):
        self.graphs = self.breaks = self.recompiles = self.fallback_frames = 0
        self.break_reasons: list[str] = []

    def __call__(self, event, code, payload):
        if event == "entry":
            self.graphs += len(payload.graphs)
            self.breaks += len(payload.breaks)
            self.break_reasons += [f"{getattr(b, 'id', '?')}: {b}".splitlines()[0]
                                   for b in payload.breaks]
        elif event == "break":
            self.breaks += 1
            self.fallback_frames += 1
            self.break_reasons.append(f"whole frame {code.co_qualname}: {payload}".splitlines()[0])
        elif event == "recompile":
            self.recompiles += 1


def _backend_fallbacks() -> int:
    mod = sys.modules.get("janus_frame.backends.janus")
    return len(mod.stats.fallbacks) if mod is not None else 0


def check(prog: Program, backend: str) -> None:
    mm = run_check(prog, backend)
    if mm:
        raise AssertionError(f"{prog.id} [{backend}]:\n  " + "\n  ".join(mm))


def run_check(prog: Program, backend: str) -> Mismatch:
    if FAULTS and prog.eager_fn is not None:
        # what it must return depends on whether the frame ran compiled
        # (``is_compiling()``), which the injected faults decide
        pytest.skip("the result depends on being compiled: not comparable under fault injection")
    mm = Mismatch()
    jf.reset()
    mod_globals = sys.modules[prog.fn.__module__].__dict__ if prog.fn is not None and \
        prog.globals else {}
    if prog.build is not None and prog.globals:
        mod_globals = sys.modules[prog.build.__module__].__dict__
    saved = {g: _snapshot(mod_globals[g]) for g in prog.globals}
    original = dict(saved)
    base_state = _global_state()
    we, wc = prog.world(), prog.world()
    try:
        # fullgraph=True turns a fault into the error it promises: not run so
        cf = jf.compile(wc.fn, backend=backend, fullgraph=prog.fullgraph and not FAULTS)
    except Exception as ex:  # noqa: BLE001
        mm.add("crash", f"jf.compile raised {type(ex).__name__}: {ex}")
        return mm
    ev = _Events()
    errors0, fallbacks0 = jf_stats.internal_errors, _backend_fallbacks()
    first = None
    for k in range(prog.calls):
        seed = 1000 + k
        _restore_globals(mod_globals, saved)
        _restore_global_state(base_state)
        oe = run_side(prog, we, prog.eager_fn or we.fn, k, seed)
        oe.globals_after = {g: _snapshot(mod_globals[g]) for g in prog.globals}
        _restore_globals(mod_globals, saved)
        _restore_global_state(base_state)
        saved = {g: _snapshot(mod_globals[g]) for g in prog.globals}
        listeners.append(ev)
        try:
            oc = run_side(prog, wc, cf, k, seed)
        finally:
            listeners.remove(ev)
        oc.globals_after = {g: _snapshot(mod_globals[g]) for g in prog.globals}
        # both sides leave the globals as the compiled side left them (the
        # eager side saw the same starting point)
        saved = {g: _snapshot(mod_globals[g]) for g in prog.globals}
        _restore_global_state(base_state)
        compare_outcomes(prog, oe, oc, k, mm)
        if FAULTS:
            continue
        for w in oc.janus_warnings:
            tag = "recompile-storm" if "recompile limit" in w else "internal-error"
            mm.add(tag, f"call {k}: {w}")
        if k == 0:
            first = (ev.graphs, ev.breaks, list(ev.break_reasons), oe.exc is not None)
    if FAULTS:
        _restore_globals(mod_globals, original)
        return mm
    new_errors = jf_stats.internal_errors - errors0
    if new_errors > 0:
        mm.add("internal-error", f"{new_errors} frame(s) failed to compile internally")
    new_fb = _backend_fallbacks() - fallbacks0
    if new_fb > 0:
        fb = sys.modules["janus_frame.backends.janus"].stats.fallbacks[-new_fb:]
        mm.add("backend-fallback", f"the fusing backend refused {new_fb} graph(s): {fb}")
    g, b, reasons, raised = first
    lo, hi = prog.graphs if isinstance(prog.graphs, tuple) else (prog.graphs, prog.graphs)
    if prog.graphs is not None and not raised and not lo <= g <= hi:
        mm.add("graphs", f"first call: {g} graph(s), torch.compile gets {prog.graphs}; "
               f"breaks: {reasons}")
    if prog.breaks is not None and not raised and b != prog.breaks:
        mm.add("graphs", f"first call: {b} break(s), torch.compile gets {prog.breaks}: {reasons}")
    if prog.recompiles is not None and ev.recompiles > prog.recompiles:
        mm.add("recompiles", f"{ev.recompiles} recompiles over {prog.calls} calls "
               f"(at most {prog.recompiles} expected)")
    if prog.min_graphs_total is not None and ev.graphs < prog.min_graphs_total:
        mm.add("graphs", f"{ev.graphs} graph(s) over all calls, expected at least "
               f"{prog.min_graphs_total}")
    _restore_globals(mod_globals, original)
    return mm


# --------------------------------------------------------------------------- subprocess
# Crash-prone programs run in a child interpreter, all of them in one child
# (started once, restarted after a crash for the programs still to run), so
# a segfault fails one test and the start-up cost is paid once.
ALL_PROGRAMS: list[Program] = []
_child_results: dict = {}


def run_in_subprocess(prog: Program, backend: str) -> None:
    key = (prog.id, backend)
    if key not in _child_results:
        todo = [(p, b) for p in ALL_PROGRAMS if p.subprocess for b in BACKENDS
                if (p.id, b) not in _child_results]
        if key not in [(p.id, b) for p, b in todo]:
            todo.append((prog, backend))
        _run_children(todo)
    ok, msg = _child_results[key]
    if not ok:
        raise AssertionError(msg)


def _run_children(todo, timeout: float = 300) -> None:
    env = dict(os.environ)
    env.pop("JANUS_FRAME", None)
    while todo:
        spec = json.dumps([[p.module, p.name, b] for p, b in todo])
        r = subprocess.run([sys.executable, os.path.abspath(__file__), "--batch"], input=spec,
                           capture_output=True, text=True, timeout=timeout, env=env, cwd=HERE)
        done = 0
        for line in r.stdout.splitlines():
            if line.startswith("@@RESULT "):
                ok, msg = json.loads(line[len("@@RESULT "):])
                p, b = todo[done]
                _child_results[(p.id, b)] = (ok, msg)
                done += 1
        if done < len(todo):
            p, b = todo[done]
            how = (f"died with signal {-r.returncode}" if r.returncode < 0
                   else f"exited with status {r.returncode}")
            _child_results[(p.id, b)] = (False, f"[crash] {p.id} [{b}]: the process {how} "
                                                f"while running it\n{r.stderr[-3000:]}")
            done += 1
        todo = todo[done:]


def _load_program(path: str, name: str) -> Program:
    modname = "conformance_child_" + os.path.splitext(os.path.basename(path))[0]
    mod = sys.modules.get(modname)
    if mod is None:
        spec = importlib.util.spec_from_file_location(modname, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[modname] = mod
        spec.loader.exec_module(mod)
    reg = next(v for v in vars(mod).values() if isinstance(v, Registry))
    prog = next(p for p in reg.programs if p.name == name)
    return dataclasses.replace(prog, subprocess=False)


def _batch_main() -> None:
    sys.path.insert(0, HERE)
    from janus_frame.config import config
    config.checks = True
    for path, name, backend in json.loads(sys.stdin.read()):
        prog = _load_program(path, name)
        try:
            mm = run_check(prog, backend)
            res = (not mm, f"{prog.id} [{backend}]:\n  " + "\n  ".join(mm))
        except BaseException as e:  # noqa: BLE001 - reported to the parent
            res = (False, f"[crash] harness error {type(e).__name__}: {e}")
        sys.stdout.write("@@RESULT " + json.dumps(res) + "\n")
        sys.stdout.flush()
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__" and sys.argv[1:] == ["--batch"]:
    sys.path.insert(0, HERE)
    import harness  # the topic files' harness, not this __main__ copy

    harness._batch_main()
