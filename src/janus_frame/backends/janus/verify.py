"""Verifiers at the fusing backend's stage boundaries.

In: what a stage produced.  Out: nothing, or an exception naming the first
broken invariant:

- :func:`graph_passes` (``GraphError``), after the graph passes: the graph is
  well formed (``Graph.lint``), every input and call carries its value in
  ``meta['val']`` (the lowering reads shapes and dtypes there), and it still
  returns what it returned before the passes, in number, shape and dtype;
- :func:`loop_ir` (``IRError``), after lowering: the invariants of the loop
  IR (:mod:`ir`);
- :func:`schedule` (``ScheduleError``), after scheduling: every node is in
  exactly one step; every member of a kernel fits the kernel's iteration
  space in the role it was given, and reads values the kernel produced only
  where they were stored and from a later pass when they are reduced; every
  value is produced before it is read and every in-place update comes after
  the reads of the data it overwrites (mutating library calls are barriers);
  memory reuse is legal (row scratch, results stored over a library result,
  matmuls accumulating in place), and no two buffers live at the same time
  overlap in the workspace arena.

The pipeline runs ``loop_ir`` on every compile -- it is cheap: 2-8% of
``compile_graph``'s Python time on the benchmark's MLP, LSTM, GPT and CNN
training steps, under 0.5% of their first call -- and the other two under
the ``checks`` option (``JANUS_CHECKS=1``; the backend tests turn it on).
"""
from __future__ import annotations

import operator

import torch
import torch.fx

from ...torch_compat import statically_known_true
from . import ir
from .ir import Op, Reduce
from .schedule import Kernel, axis_map, step_reads


class VerifyError(Exception):
    pass


class GraphError(VerifyError):
    pass


class IRError(VerifyError):
    pass


class ScheduleError(VerifyError):
    pass


# ------------------------------------------------------------ graph passes
def _returns_nothing(n) -> bool:
    """An aten op without results (a run-time check: ``_assert_scalar``,
    ``sym_constrain_range_for_size``) has no value to record."""
    schema = getattr(n.target, "_schema", None)
    return n.op == "call_function" and schema is not None and not schema.returns


def _unused_item(n) -> bool:
    """An unused item of a multiple result (a gradient ``convolution_backward``
    was not asked for: None, traced without a value)."""
    return n.target is operator.getitem and not n.users


def graph_passes(before: torch.fx.GraphModule, after: torch.fx.GraphModule) -> None:
    """``after``: what the graph passes made of ``before``."""
    try:
        after.graph.lint()
    except Exception as e:  # noqa: BLE001 -- lint raises plain RuntimeErrors
        raise GraphError(f"malformed graph after the passes: {e}") from e
    for n in after.graph.nodes:
        if n.op in ("placeholder", "call_function") and "val" not in n.meta \
                and not _returns_nothing(n) and not _unused_item(n):
            raise GraphError(f"{n.format_node()}: no meta['val'] after the passes")
    old, new = _returned(before), _returned(after)
    if len(old) != len(new):
        raise GraphError(f"the passes changed the number of outputs: {len(old)} -> {len(new)}")
    for i, (a, b) in enumerate(zip(old, new)):
        if isinstance(a, torch.Tensor) != isinstance(b, torch.Tensor):
            raise GraphError(f"output {i}: {type(a).__name__} became {type(b).__name__}")
        if not isinstance(a, torch.Tensor):
            continue
        if a.dtype != b.dtype:
            raise GraphError(f"output {i}: dtype {a.dtype} became {b.dtype}")
        if len(a.shape) != len(b.shape) or not all(
                statically_known_true(x == y) for x, y in zip(a.shape, b.shape)):
            raise GraphError(f"output {i}: shape {list(a.shape)} became {list(b.shape)}")


def _returned(gm):
    out = gm.graph.output_node().args[0]
    outs = out if isinstance(out, (list, tuple)) else [out]
    return [o.meta.get("val") if isinstance(o, torch.fx.Node) else o for o in outs]


# ------------------------------------------------------------ loop IR
def _check(cond, msg):
    if not cond:
        raise IRError(msg)


def loop_ir(prog: ir.Program):
    """Check the IR's invariants: every load reads a buffer that exists and is
    written before it is read, every index only uses the node's own loop vars
    and stays inside the buffer for static sizes, dtypes of ops are consistent,
    and every buffer is written at most once (an input may be updated once,
    in place, by a pointwise node reading it only where it writes; a cat's
    buffer is written in slices by consecutive pointwise nodes before anything
    reads it)."""
    written = {b.name for b in prog.inputs if b is not None}
    sliced = set()  # written by pointwise nodes and not read since
    written |= {b.name for b in prog.buffers.values() if b.kind in ("sym", "const")}
    rewritten = set()
    for n in prog.nodes:
        if isinstance(n, ir.Extern):
            for r in n.reads():
                _check(r in written, f"{n.name}: extern reads {r} before it is written")
            for o in n.outs:
                if o is not None:
                    _check(o.name not in written, f"{n.name}: {o.name} written twice")
                    written.add(o.name)
            continue
        _check(isinstance(n, (ir.Pointwise, ir.Reduction)), f"unknown node {n!r}")
        allowed = set(n.vars) | (set(n.rvars) if isinstance(n, ir.Reduction) else set())
        if isinstance(n, ir.Reduction):
            _check(isinstance(n.rtype, Reduce), f"{n.name}: unknown reduction {n.rtype!r}")
            _check(len(n.full_shape) == len(n.ranges) + len(n.rranges),
                   f"{n.name}: full shape {n.full_shape} vs ranges {n.ranges}+{n.rranges}")
        for e in ir.walk(n.expr):
            _check(isinstance(e.kind, Op), f"{n.name}: unknown op {e.kind!r}")
            if e.kind in (Op.LOAD, Op.MLOAD):
                sliced.discard(e.aux[0])
            if e.kind == Op.MLOAD:
                _check(len(e.args) == 1 and e.args[0].dtype == torch.bool, f"{n.name}: mload mask")
                _check(e.aux[0] in written, f"{n.name}: reads {e.aux[0]} before it is written")
            elif e.kind == Op.LOAD:
                buf, idx = e.aux
                _check(buf in prog.buffers, f"{n.name}: load from unknown buffer {buf}")
                _check(buf in written, f"{n.name}: reads {buf} before it is written")
                _check(set(idx.vars()) <= allowed, f"{n.name}: index {idx!r} uses foreign vars")
                _check(e.dtype == prog.buffers[buf].dtype,
                       f"{n.name}: load of {buf} as {e.dtype}, buffer is {prog.buffers[buf].dtype}")
                _check_bounds(n, prog.buffers[buf], idx)
            elif e.kind == Op.INDEX:
                _check(set(e.aux.vars()) <= allowed, f"{n.name}: index value uses foreign vars")
            elif e.kind in ir.LEAF_KINDS:
                pass
            else:
                arity = ir.ARITY[e.kind]
                _check(len(e.args) == arity, f"{n.name}: {e.kind} takes {arity} args, got {len(e.args)}")
                if e.kind in ir.PREDICATES:
                    _check(e.dtype == torch.bool, f"{n.name}: {e.kind} must produce bool")
                elif e.kind == Op.WHERE:
                    _check(e.args[0].dtype == torch.bool, f"{n.name}: where condition not bool")
                    _check(e.args[1].dtype == e.dtype == e.args[2].dtype,
                           f"{n.name}: where branches {e.args[1].dtype}/{e.args[2].dtype} vs {e.dtype}")
                elif e.kind != Op.CAST:
                    for a in e.args:
                        _check(a.dtype == e.dtype,
                               f"{n.name}: {e.kind} operand {a.dtype} differs from result {e.dtype} (cast first)")
        if n.out.kind == "input":
            # a mutated input updated in place: once, elementwise
            _check(isinstance(n, ir.Pointwise) and n.out.name not in rewritten,
                   f"{n.name}: input {n.out.name} written twice or by a reduction")
            _check(all(e.aux[1] == n.store for e in ir.walk(n.expr)
                       if e.kind in (Op.LOAD, Op.MLOAD) and e.aux[0] == n.out.name),
                   f"{n.name}: reads {n.out.name} elsewhere than where it writes it")
            rewritten.add(n.out.name)
            continue
        _check(n.out.name not in written or n.out.name in sliced,
               f"{n.name}: {n.out.name} written twice")
        _check(n.out.kind in ("temp", "output"), f"{n.name}: writes a {n.out.kind} buffer")
        if isinstance(n, ir.Reduction) and n.spec.index:
            _check(n.out.dtype == torch.int64, f"{n.name}: {n.rtype} must produce int64")
        if isinstance(n, ir.Pointwise) and (tuple(n.ranges) != tuple(n.out.shape)
                                         or n.store != ir.store_index(n.out, n.vars)):
            _check_bounds(n, n.out, n.store)  # a slice: inside the buffer
            sliced.add(n.out.name)
        written.add(n.out.name)
    for kind, o in prog.outputs:
        if kind == "buf":
            _check(o.buf.name in written, f"output {o.buf.name} never written")


def _check_bounds(node, buf, idx):
    """For static sizes: the index range over the node's loop ranges must lie
    inside the buffer's storage extent."""
    ranges = dict(zip(node.vars, node.ranges))
    if isinstance(node, ir.Reduction):
        ranges.update(zip(node.rvars, node.rranges))
    if not all(isinstance(x, int) for x in ranges.values()) or not isinstance(idx.offset, int):
        return
    if not all(isinstance(s, int) for s in buf.shape + buf.strides) or not isinstance(buf.offset, int):
        return
    if any(s == 0 for s in ranges.values()) or any(s == 0 for s in buf.shape):
        return
    lo = hi = idx.offset
    for v, c in idx.terms:
        if not isinstance(c, int) or not isinstance(v, str):
            return
        span = c * (ranges[v] - 1)
        lo += min(0, span)
        hi += max(0, span)
    blo = bhi = buf.offset
    for s, st in zip(buf.shape, buf.strides):
        span = st * (s - 1)
        blo += min(0, span)
        bhi += max(0, span)
    _check(blo <= lo and hi <= bhi,
           f"{node.name}: index {idx!r} spans [{lo}, {hi}] outside {buf.name}'s [{blo}, {bhi}]")




# ------------------------------------------------------------ schedule
def schedule(sched) -> None:
    """``sched``: a planned :class:`schedule.Scheduler`."""
    prog = sched.prog
    step = {}  # node -> step index
    for i, s in enumerate(sched.steps):
        for n in (s.nodes if isinstance(s, Kernel) else [s]):
            _need(n not in step, f"{n.name} is in steps {step.get(n)} and {i}")
            step[n] = i
    _need(set(step) == set(prog.nodes),
          f"scheduled nodes {sorted(n.name for n in step)} differ from the program's "
          f"{sorted(n.name for n in prog.nodes)}")
    for i, s in enumerate(sched.steps):
        if isinstance(s, Kernel):
            _kernel(s)
    _order(prog, step)
    _reuse(sched, step)
    _arena(sched)


def _need(cond, msg):
    if not cond:
        raise ScheduleError(msg)


def _loads(m):
    """Buffer -> load indices of member ``m``, over the kernel's axis vars."""
    out = {}
    for e in ir.loads_of(m.node.expr):
        out.setdefault(e.aux[0], []).append(e.aux[1].subst(m.amap))
    return out


def _kernel(k):
    """Each member fits the iteration space in its role, and reads what the
    kernel produced only where it was stored, from a later pass when the
    producer's value is per row (a reduction, or an outer member) and the
    reader is not, never a per-element value from an outer member, and never
    data the kernel updates in place."""
    produced = {}  # buffer -> member that last wrote it
    for m in k.members:
        fit = axis_map(m.node, k.full_shape, k.red_axes)
        _need(fit is not None, f"{k.name}: {m.node.name} {m.node.format()} does not fit the "
                               f"iteration space {list(k.full_shape)} reducing {k.red_axes}")
        role, amap = fit
        _need(role == m.role and amap == m.amap,
              f"{k.name}: {m.node.name} placed as {m.role} {m.amap}, fits as {role} {amap}")
        mine = (m.pass_, m.role != "full")
        for b, idxs in _loads(m).items():
            p = produced.get(b)
            if p is None:
                continue
            _need(p.node.out.kind != "input",
                  f"{k.name}: {m.node.name} reads {b}, updated in place by {p.node.name} in the kernel")
            store = p.node.store.subst(p.amap)
            _need(all(ix == store for ix in idxs),
                  f"{k.name}: {m.node.name} reads {b} elsewhere than {p.node.name} stored it")
            per_row = isinstance(p.node, ir.Reduction) or p.role == "outer"
            if m.role == "full":
                need = p.pass_ + 1 if per_row else p.pass_
            else:
                _need(per_row, f"{k.name}: outer member {m.node.name} reads the per-element {b}")
                need = p.pass_
            _need(m.pass_ >= need, f"{k.name}: {m.node.name} in pass {m.pass_} reads {b} of "
                                   f"{p.node.name} (pass {p.pass_}) before it is complete")
        if m.node.out.kind == "input":
            store = m.node.store.subst(m.amap)
            for r in k.members:
                if r is m:
                    break
                for ix in _loads(r).get(m.node.out.name, []):
                    _need(ix == store and (r.pass_, r.role != "full") <= mine,
                          f"{k.name}: {r.node.name} reads {m.node.out.name} where or after "
                          f"{m.node.name} overwrites it")
        produced[m.node.out.name] = m


def _writes(n):
    if isinstance(n, ir.Extern):
        return [o.name for o in n.outs if o is not None]
    return [n.out.name]


def _order(prog, step):
    """Writers before readers (in program order, so a later writer of the
    same buffer -- an in-place update -- comes after the reads of the old
    data); mutating library calls are barriers nothing crosses."""
    pos = {n: i for i, n in enumerate(prog.nodes)}
    writers, readers = {}, {}
    for n in prog.nodes:
        for b in _writes(n):
            writers.setdefault(b, []).append(n)
        for b in n.reads():
            readers.setdefault(b, []).append(n)
    for b, ws in writers.items():
        for w in ws:
            for r in readers.get(b, []):
                if r is w:
                    continue
                first, then = (w, r) if pos[w] < pos[r] else (r, w)
                _need(step[first] <= step[then],
                      f"{then.name} (step {step[then]}) runs before {first.name} (step "
                      f"{step[first]}), which {'writes' if first is w else 'reads'} {b} before it")
        for w0, w1 in zip(ws, ws[1:]):
            _need(step[w0] <= step[w1], f"{w1.name} writes {b} before {w0.name} does")
    for e in prog.nodes:
        if isinstance(e, ir.Extern) and (e.op._schema.is_mutable or ir.is_check(e)):
            for n in prog.nodes:
                _need((pos[n] < pos[e]) == (step[n] < step[e]) or n is e,
                      f"{n.name} is moved across the mutating call {e.name} ({e.op})")


def _reuse(sched, step):
    """Row scratch holds temps only its own kernel reads; a result stored over
    a library result is that result's only reader, elementwise where it
    stores; an addmm accumulating into its bias operand is its only reader."""
    prog = sched.prog
    outs = {o[1].buf.name for o in prog.outputs if o[0] == "buf"}
    readers = {}
    for n in prog.nodes:
        for b in n.reads():
            readers.setdefault(b, []).append(n)
    for i, s in enumerate(sched.steps):
        if not isinstance(s, Kernel):
            continue
        for b in s.row_local:
            _need(b in s.stored and b not in outs and prog.buffers[b].kind == "temp",
                  f"{s.name}: row scratch for {b}, which is not a stored temp")
            _need(all(step[r] == i for r in readers.get(b, [])),
                  f"{s.name}: {b} lives in row scratch but another step reads it")
    writer = {n.out.name: n for n in prog.nodes if not isinstance(n, ir.Extern)}
    for o, e in getattr(sched, "alias", {}).items():
        w = writer.get(o)
        _need(w is not None and prog.buffers[e].kind == "extern" and e not in outs,
              f"{o} is stored over {e}, which is not a library result only the kernel reads")
        _need(readers.get(e, []) == [w], f"{o} is stored over {e}, which "
                                        f"{', '.join(r.name for r in readers.get(e, []))} read")
        store = w.store
        _need(all(x.aux[1] == store for x in ir.loads_of(w.expr) if x.aux[0] == e),
              f"{w.name} reads {e} elsewhere than where it stores {o} over it")
    for n in prog.nodes:
        if n.name in getattr(sched, "accumulate", ()):
            c = n.args[0].buf.name
            _need(readers.get(c, []) == [n] and c not in outs,
                  f"{n.name} accumulates into {c}, which something else reads")


# sizes substituted for the graph's size symbols when checking a symbolic
# arena: offsets and extents are compared at each of these points
_SAMPLES = (2, 7, 64, 1000)


def _arena(sched):
    """Buffers live at the same time (from the step that first stores one to
    its last reader) occupy disjoint bytes of the workspace, inside it."""
    prog = sched.prog
    steps = sched.steps
    last = {}
    for i, s in enumerate(steps):
        for b in step_reads(s):
            last[b] = i
    spans = []
    for b, off in sched.arena.items():
        first = next((i for i, s in enumerate(steps) if isinstance(s, Kernel) and b in s.stored), None)
        _need(first is not None, f"{b} has workspace at {off} but no kernel stores it")
        buf = prog.buffers[b]
        spans.append((b, first, max(first, last.get(b, first)), off, buf.numel * buf.dtype.itemsize))
    syms = set()
    for _, _, _, off, n in spans:
        for x in (off, n):
            syms |= getattr(x, "free_symbols", set())
    syms |= getattr(sched.arena_bytes, "free_symbols", set())
    points = [{}] if not syms else [{s: v + 3 * j for j, s in enumerate(sorted(syms, key=str))}
                                    for v in _SAMPLES]
    for at in points:
        def val(x):
            return int(x.subs(at)) if at and hasattr(x, "subs") else int(x)

        total = val(sched.arena_bytes)
        placed = [(b, f, l, val(off), val(n)) for b, f, l, off, n in spans]
        for b, f, l, off, n in placed:
            _need(0 <= off and off + n <= total,
                  f"{b} at [{off}, {off + n}) is outside the {total}-byte workspace (sizes {at})")
        for i, (b, f, l, off, n) in enumerate(placed):
            for b2, f2, l2, off2, n2 in placed[i + 1:]:
                if f <= l2 and f2 <= l and off < off2 + n2 and off2 < off + n and n and n2:
                    raise ScheduleError(
                        f"{b} (steps {f}..{l}, bytes [{off}, {off + n})) and {b2} (steps "
                        f"{f2}..{l2}, bytes [{off2}, {off2 + n2})) overlap in the workspace "
                        f"(sizes {at})")
