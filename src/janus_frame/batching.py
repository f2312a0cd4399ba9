"""Dynamic batching of recursive calls (TensorFlow Fold / DyNet style).

In: the replacements of the segments of a recursive function (a frame that
breaks at a recursive call, JF018, is compiled one cache entry per kind of
call) and the native steps of those breaks; which segments may be recorded
is decided by frontend/batching.py when they are compiled.
Out: while the outermost recursive call runs, the graph calls of those
entries are *recorded*, not run: each returns placeholder tensors (right
sizes, strides, dtype and ``requires_grad``, no values) and is filed under
its depth (1 + the deepest recorded call that made one of its inputs). When
the outermost call returns, the recorded calls run level by level: the
calls of one entry at one depth are independent, so they run as one call of
the entry's graph batched by ``torch.vmap`` (traced once into an aten graph
with ``make_fx``, compiled by the fusing backend when it is the segment's),
over their per-call inputs stacked or gathered by row from the level below;
inputs that are the same object in every call (parameters) are passed once.
The placeholders in the returned value are then replaced by the rows of the
batched results. Autograd sees one node per level and entry (one per
operation and level for a graph run as traced) instead of one per operation
and tree node; backward runs the same levels in reverse.

Why it is sound: a recorded entry has no Python side effects, no speculation
checks, no in-place updates of its inputs and no random numbers
(``segment_mode``), and its only exits are a return or another recursive
call. So while recording nothing but these entries' replacements and the
recursive calls between them run, and nothing visible to Python happens
before the flush. Anything else met while recording -- another entry, a
cache miss, a callee run natively, a value the return cannot be searched
for -- raises :class:`Abort` (a BaseException, so no generated or user
``except Exception`` takes it), which unwinds to the outermost call; the
recording is dropped and the call runs again the ordinary way, one graph
call per node. A graph that cannot be batched (no vmap rule, random draws,
mutation, outputs aliasing inputs) runs call by call at the flush, in
depth order. A recursion whose recordings keep aborting, or never find two
calls to batch (a chain), stops being recorded.
"""
from __future__ import annotations

import copy
import sys
import threading
import types

from . import _C
from .cache import stats
from .config import config
from .diagnostics.logs import artifact_logger
from . import torch_compat

# a recursion is given up after this many aborted recordings, or this many
# flushes that found nothing to batch
_GIVE_UP = 3
_MAX_CALLS = 1 << 16  # recorded calls held before the recording is abandoned


def _torch():
    """torch, imported by the time anything here runs (this module is
    imported with the hook, which must not import torch: sub-interpreters
    import the hook's module without it)."""
    return sys.modules["torch"]


class Abort(BaseException):
    """A recording met something it cannot defer: the outermost recursive
    call runs again natively (not an Exception: handlers must not take it)."""


class Plan:
    """What a recordable segment's graph call needs: the backend's callable
    (run as is for a call left alone), the captured graph (batched by vmap),
    its outputs' metadata (the placeholders' form) and the fusing backend
    when it is the segment's (it compiles the batched graphs too)."""

    __slots__ = ("compiled", "gm", "out_meta", "batched", "name", "pool", "backend")

    def __init__(self, gm, out_meta: list, name: str, backend=None) -> None:
        self.compiled = None
        self.backend = backend
        self.pool = {True: [], False: []}  # grad mode -> placeholder lists (Recorder.record)
        self.gm = gm
        self.out_meta = out_meta
        self.batched: dict = {}  # (in_dims, per-call metadata, n) -> aten graph or None
        self.name = name

    def record(self, inputs: tuple) -> list:
        return RECORDER.record(self, inputs)

    def __repr__(self) -> str:
        return f"<batching plan of {self.name}>"


class _Call:
    __slots__ = ("plan", "inputs", "depth", "grad", "outs", "index")

    def __init__(self, plan, inputs, depth, grad, index):
        self.plan, self.inputs, self.depth, self.grad, self.index = plan, inputs, depth, grad, index
        self.outs = None


class Recorder(threading.local):
    """The thread's recording: per thread (another thread's entries, while
    this one records, run as usual), and a recording never spans threads."""

    def __init__(self) -> None:
        self.active = False
        self.used: dict = {}  # id(a plan's placeholder pool) -> placeholders handed out
        self.calls: list[_Call] = []
        self.handles: dict = {}  # id(placeholder) -> (call, output index)
        self.resolved: dict = {}  # id(call) -> its outputs: tensors or (batch, row)
        self.failures: dict = {}  # code -> aborted recordings / unbatched flushes
        self.native_resume = False  # a resume function runs natively on a miss

    def reset(self) -> None:
        self.active = False
        self.calls, self.handles, self.resolved, self.used = [], {}, {}, {}

    def forget(self) -> None:
        """What was learned about recursions (jf.reset())."""
        self.reset()
        self.failures.clear()
        self.native_resume = False

    def record(self, plan: Plan, inputs: tuple) -> list:
        torch = _torch()
        hs = self.handles
        depth = 0
        for x in inputs:
            h = hs.get(id(x))
            if h is not None and h[0].depth >= depth:
                depth = h[0].depth + 1
        grad = torch.is_grad_enabled()
        call = _Call(plan, inputs, depth, grad, len(self.calls))
        # placeholders are reused from one recording to the next (made and
        # freed per call, they cost as much as the graph call they stand
        # for): none is reachable once a recording is flushed or dropped
        pool = plan.pool[grad]
        used = self.used.get(id(pool), 0)
        if used == len(pool):
            pool.append([torch.empty_strided(size, stride, dtype=dtype, device=device,
                                             requires_grad=rg and grad)
                         for size, stride, dtype, device, rg in plan.out_meta])
        outs = pool[used]
        self.used[id(pool)] = used + 1
        for k, t in enumerate(outs):
            hs[id(t)] = (call, k)
        call.outs = outs
        self.calls.append(call)
        if len(self.calls) > _MAX_CALLS:
            raise Abort("too many recorded calls")
        return outs

    # -- the flush -------------------------------------------------------------------

    def _value(self, x):
        """A recorded input: a real tensor, or (batch, row) for a placeholder."""
        h = self.handles.get(id(x))
        if h is None:
            return x
        return self.resolved[id(h[0])][h[1]]

    def _real(self, x):
        v = self._value(x)
        return v[0][v[1]] if type(v) is tuple else v

    def flush(self) -> bool:
        torch = _torch()
        buckets: dict = {}
        for c in self.calls:
            buckets.setdefault((c.depth, id(c.plan), c.grad), []).append(c)
        batched_any = False
        for key in sorted(buckets, key=lambda k: (k[0], buckets[k][0].index)):
            calls = buckets[key]
            with torch.set_grad_enabled(key[2]):
                if len(calls) > 1 and self._run_batched(calls):
                    batched_any = True
                    continue
                for c in calls:
                    outs = c.plan.compiled(*[self._real(x) for x in c.inputs])
                    self.resolved[id(c)] = list(outs)
        return batched_any

    def _run_batched(self, calls: list) -> bool:
        torch = _torch()
        plan = calls[0].plan
        n = len(calls)
        # the batched graph is traced for a power of two of rows (a bounded
        # number of traces over any trees): the rows past n repeat the first
        # call's inputs, and their results are not used
        nb = 2
        while nb < n:
            nb *= 2
        pad = nb - n
        in_dims, args, metas = [], [], []
        for j, first in enumerate(calls[0].inputs):
            if self.handles.get(id(first)) is None and all(c.inputs[j] is first for c in calls):
                in_dims.append(None)
                args.append(first)
                metas.append(None)
                continue
            if not isinstance(first, torch.Tensor):
                return False  # a per-call Python value: not batchable here
            vals = [self._value(c.inputs[j]) for c in calls]
            v0 = vals[0]
            if type(v0) is tuple and all(type(v) is tuple and v[0] is v0[0] for v in vals):
                rows = [v[1] for v in vals]
                src = v0[0]
                if rows == list(range(rows[0], rows[0] + n)) and rows[0] + nb <= src.shape[0]:
                    # (padding rows: other calls' results, as good as any)
                    arg = src.narrow(0, rows[0], nb)
                else:
                    rows += rows[:1] * pad
                    arg = src.index_select(0, torch.tensor(rows, device=src.device))
            else:
                parts = [v[0][v[1]] if type(v) is tuple else v for v in vals]
                m = parts[0]
                if any(p.shape != m.shape or p.dtype != m.dtype or p.device != m.device
                       for p in parts):
                    return False
                arg = torch.stack(parts + parts[:1] * pad)
            in_dims.append(0)
            args.append(arg)
            metas.append((tuple(arg.shape[1:]), arg.dtype, arg.requires_grad))
        key = (tuple(in_dims), tuple(metas), nb, torch.is_grad_enabled())
        fn = plan.batched.get(key, False)
        if fn is False:
            # with janus_frame off: its own and torch's tracing are not the
            # user's frames
            fn = plan.batched[key] = _C.Wrapper(_derive, None)(plan, in_dims, args)
        if fn is None:
            return False
        outs = fn(*args)
        stats.batched_calls += 1
        stats.batched_rows += n
        for i, c in enumerate(calls):
            self.resolved[id(c)] = [(o, i) for o in outs]
        return True

    def substitute(self, value):
        """``value`` (the outermost call's result) with its placeholders
        replaced by their real tensors; Abort where it cannot be searched."""
        torch = _torch()
        t = type(value)
        if t is tuple or t is list:
            return t(self.substitute(v) for v in value)
        if t is dict:
            return {k: self.substitute(v) for k, v in value.items()}
        if isinstance(value, torch.Tensor):
            return self._real(value) if id(value) in self.handles else value
        if value is None or t in (int, float, bool, str, bytes, complex):
            return value
        raise Abort(f"a {t.__name__} returned by a recorded recursion")


RECORDER = Recorder()


def abort(miss: bool = False, where: str = "") -> None:
    """A replacement that cannot be recorded runs while recording, or (a
    ``miss``) a frame is about to be compiled: the cache is still warming
    up, which does not count against recording this recursion."""
    raise Abort("a frame is compiled while recording" if miss else
                f"an entry that cannot be deferred ran while recording ({where})", miss)


def _callee_code(fn):
    if type(fn) is types.MethodType:
        fn = fn.__func__
    if type(fn) is not types.FunctionType:
        return None
    code = fn.__code__
    if _C.get_code_strategy(code)[0] != _C.DEFAULT:
        return None  # its frames may run natively: a placeholder would reach Python
    return code


def recursive_call(fn, *args, **kwargs):
    """The native step of a recursive call (a JF018 break): the outermost
    one records the recursion and flushes it; nested ones just call."""
    torch = _torch()
    R = RECORDER
    if R.active:
        if _callee_code(fn) is None:
            raise Abort("a recursive call that runs natively")
        return fn(*args, **kwargs)
    code = _callee_code(fn)
    if code is None or not config.batch_recursion or R.failures.get(code, 0) >= _GIVE_UP \
            or R.native_resume \
            or _modes_active() or torch.is_autocast_enabled():
        return fn(*args, **kwargs)
    R.reset()  # (nothing left over from a recording a KeyboardInterrupt ended)
    R.active = True
    try:
        result = fn(*args, **kwargs)
        R.active = False
        batched = R.flush()
        result = R.substitute(result)
    except Exception as e:  # noqa: BLE001 - the native run raises it again, where eager does
        _note("raised", code, e)
        R.reset()
        stats.batch_aborts += 1
        R.failures[code] = R.failures.get(code, 0) + 1
        return fn(*args, **kwargs)
    except Abort as e:
        _note("aborted", code, e)
        R.reset()
        stats.batch_aborts += 1
        if not (len(e.args) > 1 and e.args[1]):
            R.failures[code] = R.failures.get(code, 0) + 1
        return fn(*args, **kwargs)
    finally:
        R.active = False
    ncalls = len(R.calls)
    R.reset()
    if batched:
        R.failures.pop(code, None)
    elif ncalls >= 4:
        # calls recorded, none batched (a chain): twice that for giving up,
        # since while the cache warms up some kinds still run one by one
        R.failures[code] = R.failures.get(code, 0) + 0.5
    return result


def _note(what: str, code, e) -> None:
    """A dropped recording, under JANUS_LOGS=perf (the recursion ran natively)."""
    lg = artifact_logger("perf")
    if lg is not None:
        lg.info("recording of the recursion %s (%s:%d) %s: %s", code.co_qualname,
                code.co_filename, code.co_firstlineno, what, e.args[0] if e.args else e)


def went_native(code) -> None:
    """``code`` now runs natively on a cache miss (no callback to abort a
    recording): if it is a resume function -- reached by a recorded entry's
    hand-over, where it could see a placeholder -- recording stops."""
    if ".<resume at line " in code.co_qualname:
        RECORDER.native_resume = True


def _modes_active() -> bool:
    """A program's torch function or dispatch mode (its entries run natively)."""
    return torch_compat.len_torch_function_stack() > 0 or \
        torch_compat.len_torch_dispatch_stack() > 0


# -- deriving the batched graph ----------------------------------------------------------


def _derive(plan: Plan, in_dims: list, args: list):
    """The aten graph of ``plan``'s graph under vmap over ``in_dims``, or
    None where the graph is not batchable (no batching rule, random draws,
    mutations, outputs that are views of inputs)."""
    torch = _torch()
    from .torch_compat import make_fx

    gm = plan.gm

    def per_call(*xs):
        return tuple(gm(*xs))

    batched = torch.vmap(per_call, in_dims=tuple(in_dims), randomness="error")
    try:
        traced = make_fx(batched)(*args)
    except Exception:  # noqa: BLE001 - not batchable: the calls run one by one
        return None
    if not _pure(traced):
        return None
    if plan.backend is not None:
        # The fusing backend compiles it (one autograd node per level and
        # entry, its forward and backward fused kernels): on the bench's
        # TreeLSTMs 20-25% less time per step than the aten graph run op by
        # op, for a compile per size class. Its placeholders' metadata goes:
        # make_fx records them as not requiring grad, which would send a
        # training graph through AOTAutograd's runtime instead of the
        # backend's lean one (the inputs themselves say it)
        gm = torch.fx.GraphModule(traced, copy.deepcopy(traced.graph))
        for n in gm.graph.nodes:
            if n.op == "placeholder":
                n.meta.pop("val", None)
                n.meta.pop("example_value", None)
        try:
            fn = plan.backend(gm, list(args))
        except Exception as e:  # noqa: BLE001 - the aten graph runs as traced
            lg = artifact_logger("perf")
            if lg is not None:
                lg.info("batched graph of %s not compiled (it runs as traced): %r", plan.name, e)
        else:
            stats.batched_compiled += 1
            return _C.Wrapper(fn, None)
    return _C.Wrapper(traced, None)


def _pure(gm: torch.fx.GraphModule) -> bool:
    """No op that writes an argument or draws random numbers, and no output
    reached from an input through views only (its row would alias the
    stacked input, not the caller's tensor)."""
    torch = _torch()
    views = {}
    for node in gm.graph.nodes:
        if node.op == "call_function":
            op = node.target
            schema = getattr(op, "_schema", None)
            if schema is None:
                if node.target.__module__ == "_operator":
                    continue  # getitem of a multi-output op
                return False
            if schema.is_mutable or torch.Tag.nondeterministic_seeded in op.tags:
                return False
            rets = schema.returns
            if rets and rets[0].alias_info is not None and node.args:
                views[node] = node.args[0]
        elif node.op == "output":
            outs = node.args[0]
            for o in (outs if isinstance(outs, (tuple, list)) else (outs,)):
                while o in views:
                    o = views[o]
                if getattr(o, "op", None) == "placeholder":
                    return False
        elif node.op not in ("placeholder", "get_attr"):
            return False
    return True
