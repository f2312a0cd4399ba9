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

A recording whose whole schedule repeats -- the same entries called in the
same order on the same data flow, over inputs of the same metadata (a fixed
tree) -- is keyed by that signature. Seen twice, its levels are traced
together into one aten graph (the gathers, the batched graphs and the calls
left alone, in depth order) and compiled by the fusing backend: later
flushes of that schedule are one graph call and one autograd node, with
kernels fused across levels, instead of a call, a gather and an autograd
node per level. The tree's structure is in the signature and in the graph's
gather indices, never in a guard: a new tree is a new key (a dictionary
miss), and runs level by level; no frame is compiled for it.
"""
from __future__ import annotations

import copy
import functools
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
# a schedule is compiled as one graph the second time it is flushed, when it
# has at most this many levels (the graph grows with them, not with the
# calls); compiled schedules and schedules seen once are kept per thread,
# the oldest dropped past these counts
_SCHEDULE_AFTER = 2
_SCHEDULE_LEVELS = 256
_SCHEDULES_KEPT = 8
_SCHEDULES_SEEN = 64
_CONSTANT_TYPES = (int, float, bool, str, type(None))


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
        # the recording's signature: per call (plan id, grad mode, inputs as
        # (call index, output index) of a placeholder, an index into
        # ``ext`` for any other tensor, or a constant); None when an input
        # is neither
        self.sig: list | None = []
        self.ext: list = []  # the tensors the recorded calls took from outside
        self.ext_index: dict = {}  # id(tensor) -> its index in ext
        self.schedules: dict = {}  # signature -> _Schedule, or None (not compilable)
        self.seen: dict = {}  # signatures flushed once
        self.reruns = 0  # recursions running again after a dropped recording

    def reset(self) -> None:
        self.active = False
        self.calls, self.handles, self.resolved, self.used = [], {}, {}, {}
        self.sig, self.ext, self.ext_index = [], [], {}

    def forget(self) -> None:
        """What was learned about recursions (jf.reset())."""
        self.reset()
        self.failures.clear()
        self.schedules.clear()
        self.seen.clear()
        self.native_resume = False

    def record(self, plan: Plan, inputs: tuple) -> list:
        torch = _torch()
        hs = self.handles
        depth = 0
        sig = self.sig
        descs = []
        for x in inputs:
            h = hs.get(id(x))
            if h is not None:
                if h[0].depth >= depth:
                    depth = h[0].depth + 1
                descs.append((h[0].index, h[1]))
            elif sig is None:
                pass
            elif isinstance(x, torch.Tensor):
                j = self.ext_index.get(id(x))
                if j is None:
                    j = self.ext_index[id(x)] = len(self.ext)
                    self.ext.append(x)
                descs.append(j)
            elif type(x) in _CONSTANT_TYPES:
                descs.append((type(x), x))
            else:
                self.sig = sig = None
        grad = torch.is_grad_enabled()
        if sig is not None:
            sig.append((id(plan), grad, tuple(descs)))
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
        key = self._signature() if not self.reruns else None
        if key is not None:
            sch = self.schedules.get(key, False)
            if sch:
                return self._run_schedule(sch)
            if sch is False:
                if self.seen.pop(key, 0) + 1 >= _SCHEDULE_AFTER:
                    sch = self._compile_schedule(key)
                    if sch is not None:
                        return self._run_schedule(sch)
                else:
                    if len(self.seen) >= _SCHEDULES_SEEN:
                        del self.seen[next(iter(self.seen))]
                    self.seen[key] = 1
        batched_any = False
        for calls in self._levels():
            with torch.set_grad_enabled(calls[0].grad):
                if len(calls) > 1 and self._run_batched(calls):
                    batched_any = True
                    continue
                for c in calls:
                    outs = c.plan.compiled(*[self._real(x) for x in c.inputs])
                    self.resolved[id(c)] = list(outs)
        return batched_any

    def _levels(self) -> list:
        """The recorded calls by (depth, entry, grad mode), in depth order,
        ties in recording order."""
        buckets: dict = {}
        for c in self.calls:
            buckets.setdefault((c.depth, id(c.plan), c.grad), []).append(c)
        return sorted(buckets.values(), key=lambda b: (b[0].depth, b[0].index))

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
        gathered = _gather(calls, self.handles, self._value, nb)
        if gathered is None:
            return False
        in_dims, args, metas = gathered
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

    # -- a repeated schedule as one graph -------------------------------------------

    def _signature(self):
        """The recording's schedule and its outside inputs' metadata (what a
        graph traced over them specialises on), or None."""
        sig = self.sig
        if sig is None or not self.calls:
            return None
        grad = sig[0][1]
        if any(c[1] is not grad for c in sig):
            return None  # (the compiled graph runs under one grad mode)
        return (tuple(sig), tuple((type(x), x.shape, x.stride(), x.dtype, x.device,
                                   x.requires_grad, x.is_leaf) for x in self.ext))

    def _compile_schedule(self, key):
        """The recording's levels as one compiled graph over ``self.ext``
        (a :class:`_Schedule`), or None where they cannot be (remembered)."""
        sch = _C.Wrapper(_trace_schedule, None)(self)
        if sch is not None:
            stats.schedules_compiled += 1
            if len(self.schedules) >= _SCHEDULES_KEPT:
                del self.schedules[next(iter(self.schedules))]
        self.schedules[key] = sch
        return sch

    def _run_schedule(self, sch) -> bool:
        torch = _torch()
        calls, resolved = self.calls, self.resolved
        with torch.set_grad_enabled(calls[0].grad):
            outs = sch.fn(*self.ext, *sch.consts)
        for idx, off, k, batched in sch.layout:
            o = outs[off:off + k]
            if batched:
                for i, ci in enumerate(idx):
                    resolved[id(calls[ci])] = [(t, i) for t in o]
            else:
                resolved[id(calls[idx[0]])] = list(o)
        stats.schedule_calls += 1
        stats.batched_calls += sch.batched_calls
        stats.batched_rows += sch.batched_rows
        return sch.batched_calls > 0

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
        return _rerun(R, fn, args, kwargs)
    except Abort as e:
        _note("aborted", code, e)
        R.reset()
        stats.batch_aborts += 1
        if not (len(e.args) > 1 and e.args[1]):
            R.failures[code] = R.failures.get(code, 0) + 1
        return _rerun(R, fn, args, kwargs)
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


def _rerun(R: Recorder, fn, args, kwargs):
    """The recursion run again natively after its recording was dropped.
    Its nested recursive calls record and batch their own subtrees, but
    those schedules (one per subtree while the cache warms up) are not the
    program's: none of them is compiled as one graph."""
    R.reruns += 1
    try:
        return fn(*args, **kwargs)
    finally:
        R.reruns -= 1


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


def _gather(calls: list, handles: dict, value, nb: int, strided: bool = False):
    """The arguments of one batched call of ``calls`` (one entry, one
    depth): an input that is the same object in every call, and no
    placeholder, is passed once (in_dim None); the others are stacked, or
    taken as rows of the level below's batch (a narrow where they are
    consecutive, an index_select otherwise), padded to ``nb`` rows with the
    first call's. ``strided``: rows at equal steps (a balanced tree's left
    or right children) are a strided slice, no index -- for a graph traced
    over one schedule; a compiled level graph is keyed by its inputs' sizes,
    not their strides. ``value`` maps a recorded input to a tensor or
    (batch, row). (in_dims, args, metas), or None where an input is a
    per-call Python value or the calls' inputs differ in shape."""
    torch = _torch()
    n = len(calls)
    pad = nb - n
    in_dims, args, metas = [], [], []
    for j, first in enumerate(calls[0].inputs):
        if handles.get(id(first)) is None and all(c.inputs[j] is first for c in calls):
            in_dims.append(None)
            args.append(value(first))
            metas.append(None)
            continue
        if not isinstance(first, torch.Tensor):
            return None  # a per-call Python value: not batchable here
        vals = [value(c.inputs[j]) for c in calls]
        v0 = vals[0]
        if type(v0) is tuple and all(type(v) is tuple and v[0] is v0[0] for v in vals):
            rows = [v[1] for v in vals]
            src = v0[0]
            step = rows[1] - rows[0] if n > 1 else 1
            if rows == list(range(rows[0], rows[0] + n)) and rows[0] + nb <= src.shape[0]:
                # (padding rows: other calls' results, as good as any)
                arg = src.narrow(0, rows[0], nb)
            elif strided and nb == n and step > 1 and \
                    rows == list(range(rows[0], rows[0] + step * n, step)):
                arg = src[rows[0]:rows[0] + step * (n - 1) + 1:step]
            else:
                rows += rows[:1] * pad
                arg = src.index_select(0, torch.tensor(rows, device=src.device))
        else:
            parts = [v[0][v[1]] if type(v) is tuple else v for v in vals]
            m = parts[0]
            if any(p.shape != m.shape or p.dtype != m.dtype or p.device != m.device
                   for p in parts):
                return None
            arg = torch.stack(parts + parts[:1] * pad)
        in_dims.append(0)
        args.append(arg)
        metas.append((tuple(arg.shape[1:]), arg.dtype, arg.requires_grad))
    return in_dims, args, metas


class _Schedule:
    """A recording's levels compiled as one graph: ``fn`` over the outside
    inputs and ``consts`` (the gathers' row indices) returns every level's
    outputs; ``layout`` says which are whose: per level (call indices,
    offset, output count, batched)."""

    __slots__ = ("fn", "layout", "plans", "consts", "batched_calls", "batched_rows")

    def __init__(self, fn, layout, plans, consts) -> None:
        self.fn, self.layout, self.consts = fn, layout, consts
        self.plans = plans  # (the signature names them by id: kept alive)
        batched = [lv for lv in layout if lv[3]]
        self.batched_calls = len(batched)
        self.batched_rows = sum(len(lv[0]) for lv in batched)


def _trace_schedule(R: Recorder):
    """``R``'s recording, levels in depth order as the flush runs them, traced
    into one aten graph over ``R.ext`` and compiled by the entries' fusing
    backend: a :class:`_Schedule`, or None where it cannot be (the entries'
    backends differ or are the eager one, a level's vmap fails, the graph is
    not pure, the backend refuses it)."""
    torch = _torch()
    from .torch_compat import make_fx

    calls, handles = R.calls, R.handles
    levels = R._levels()
    if len(levels) > _SCHEDULE_LEVELS:
        return None
    plans = {id(c.plan): c.plan for c in calls}
    backend = calls[0].plan.backend
    if backend is None or any(not _same_backend(p.backend, backend) for p in plans.values()):
        return None
    layout: list = []

    def replay(*xs):
        outside = {id(e): t for e, t in zip(R.ext, xs)}
        resolved: dict = {}

        def value(x):
            h = handles.get(id(x))
            if h is None:
                return outside.get(id(x), x)
            return resolved[h[0].index][h[1]]

        def real(x):
            v = value(x)
            return v[0][v[1]] if type(v) is tuple else v

        flat: list = []
        layout.clear()
        for lv in levels:
            gm = lv[0].plan.gm
            gathered = _gather(lv, handles, value, len(lv), True) if len(lv) > 1 else None
            if gathered is not None:
                in_dims, args, _ = gathered
                outs = tuple(torch.vmap(lambda *a: tuple(gm(*a)), in_dims=tuple(in_dims),
                                        randomness="error")(*args))
                for i, c in enumerate(lv):
                    resolved[c.index] = [(o, i) for o in outs]
                layout.append((tuple(c.index for c in lv), len(flat), len(outs), True))
                flat.extend(outs)
                continue
            for c in lv:
                outs = tuple(gm(*[real(x) for x in c.inputs]))
                resolved[c.index] = list(outs)
                layout.append(((c.index,), len(flat), len(outs), False))
                flat.extend(outs)
        return tuple(flat)

    try:
        with torch.set_grad_enabled(calls[0].grad):
            traced = make_fx(replay)(*R.ext)
    except Exception as e:  # noqa: BLE001 - the levels run one by one
        _perf_note("schedule of %d calls not traced (its levels run one by one): %r",
                   len(calls), e)
        return None
    _direct_gathers(traced)
    if not _pure(traced):
        return None
    gm = _unmarked(traced)
    consts = _lift_constants(gm)
    try:
        fn = backend(gm, [*R.ext, *consts])
    except Exception as e:  # noqa: BLE001 - the levels run one by one
        _perf_note("schedule of %d calls not compiled (its levels run one by one): %r",
                   len(calls), e)
        return None
    return _Schedule(_C.Wrapper(fn, None), tuple(layout), tuple(plans.values()), consts)


def _lift_constants(gm) -> tuple:
    """The tensors make_fx kept as attributes of ``gm`` (the gathers' row
    indices) made inputs after the others, returned in their order: the
    fusing backend's lean training runtime takes no attributes."""
    torch = _torch()
    last = [n for n in gm.graph.nodes if n.op == "placeholder"][-1]
    consts = []
    for n in list(gm.graph.nodes):
        if n.op != "get_attr":
            continue
        with gm.graph.inserting_after(last):
            p = gm.graph.placeholder(f"const_{len(consts)}")
        last = p
        n.replace_all_uses_with(p)
        gm.graph.erase_node(n)
        consts.append(getattr(gm, n.target))
        # make_fx copies a constant on its first use (a tensor built while
        # tracing is "fresh"); these are inputs now, never written
        for u in list(p.users):
            if u.target is torch.ops.aten.lift_fresh_copy.default:
                u.replace_all_uses_with(p)
                gm.graph.erase_node(u)
    gm.recompile()
    return tuple(consts)


def _same_backend(a, b) -> bool:
    """Whether two entries' backends are one: each entry holds its own
    ``functools.partial`` of the backend over the compile options."""
    if isinstance(a, functools.partial) and isinstance(b, functools.partial):
        return a.func is b.func and a.args == b.args and a.keywords == b.keywords
    return a is b


def _unmarked(traced):
    """A copy of make_fx's graph without its placeholders' metadata: make_fx
    records them as not requiring grad, which would send a training graph
    through AOTAutograd's runtime instead of the fusing backend's lean one
    (the inputs themselves say it)."""
    torch = _torch()
    gm = torch.fx.GraphModule(traced, copy.deepcopy(traced.graph))
    for n in gm.graph.nodes:
        if n.op == "placeholder":
            n.meta.pop("val", None)
            n.meta.pop("example_value", None)
    return gm


def _perf_note(msg: str, *args) -> None:
    lg = artifact_logger("perf")
    if lg is not None:
        lg.info(msg, *args)



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
    _direct_gathers(traced)
    if not _pure(traced):
        return None
    if plan.backend is not None:
        # The fusing backend compiles it (one autograd node per level and
        # entry, its forward and backward fused kernels): on the bench's
        # TreeLSTMs 20-25% less time per step than the aten graph run op by
        # op, for a compile per size class
        try:
            fn = plan.backend(_unmarked(traced), list(args))
        except Exception as e:  # noqa: BLE001 - the aten graph runs as traced
            _perf_note("batched graph of %s not compiled (it runs as traced): %r", plan.name, e)
        else:
            stats.batched_compiled += 1
            return _C.Wrapper(fn, None)
    return _C.Wrapper(traced, None)


def _direct_gathers(gm) -> None:
    """vmap's rule for indexing a tensor that every row shares with per-row
    indices (``weight[word]`` in a leaf) gathers from that tensor expanded
    over the rows: ``gather(expand(W, [*B, *W.shape]), len(B), I)``. Its
    gradient is then a buffer B times W's size, summed over B. Each such
    gather reads W itself, the leading dimensions of I and the gathered one
    made one: ``out[b, a, r] = W[I[b, a, r], r]`` either way."""
    torch = _torch()
    aten = torch.ops.aten
    graph = gm.graph
    changed = False
    for n in list(graph.nodes):
        if n.op != "call_function" or n.target is not aten.gather.default \
                or len(n.args) != 3 or n.kwargs:
            continue
        src, dim, idx = n.args
        if not isinstance(src, torch.fx.Node) or src.target is not aten.expand.default \
                or not isinstance(idx, torch.fx.Node):
            continue
        w = src.args[0]
        wv = w.meta.get("val") if isinstance(w, torch.fx.Node) else None
        iv = idx.meta.get("val")
        if not isinstance(wv, torch.Tensor) or not isinstance(iv, torch.Tensor):
            continue
        sizes = list(src.args[1])
        k = len(sizes) - wv.dim()
        shape = list(iv.shape)
        if k < 1 or dim != k or not all(type(d) is int for d in sizes + shape) \
                or any(d not in (-1, e) for d, e in zip(sizes[k:], wv.shape)):
            continue
        merged = 1
        for d in shape[:k + 1]:
            merged *= d
        with graph.inserting_before(n):
            flat = graph.call_function(aten.reshape.default, (idx, [merged, *shape[k + 1:]]))
            got = graph.call_function(aten.gather.default, (w, 0, flat))
            out = graph.call_function(aten.reshape.default, (got, shape))
        out.meta["val"] = n.meta.get("val")
        n.replace_all_uses_with(out)
        graph.erase_node(n)
        changed = True
    if changed:
        graph.eliminate_dead_code()
        gm.recompile()


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
