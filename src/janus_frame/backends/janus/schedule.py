"""Scheduler: groups IR nodes into fused kernels and plans buffers.

In: a verified :class:`ir.Program`.  Out: a :class:`Scheduler` -- a list of
steps (:class:`Kernel` or :class:`ir.Extern`) in execution order, for every
temp buffer whether it is stored at all and where (workspace arena offset,
or its own tensor when an extern reads it or its size depends on data), and
the segments: runs of kernels between library calls
(:meth:`Scheduler.segments`).
:func:`verify.schedule` checks a schedule.

A kernel has one iteration space: ``full_shape`` with ``red_axes`` (None for
pure pointwise kernels).  Members take a *role*: ``full`` (pointwise over the
full shape, or the reduction itself) or ``outer`` (pointwise over the kept
dims, computed once per row) and a *pass* (reduction kernels loop over the
reduced dims once per pass; a value reduced in pass p is usable from pass
p+1).  A node joins a kernel only if every value it reads from the kernel is
read at exactly the index it was stored at (so the value can stay in a
register or in the row just written), and if nothing it reads is produced by a
later step.  Vertical fusion (consumer joins producer) is tried first, then
horizontal fusion (siblings reading the same large buffer).
"""
from __future__ import annotations

import sympy
import torch

from . import ir
from .ir import Affine

MAX_KERNEL_NODES = 64
HORIZONTAL_MIN_NUMEL = 1024
ROW_SCRATCH_MAX = 16384  # elements of a per-row scratch buffer (on the stack)


def _shape_eq(a, b):
    return len(a) == len(b) and all(x == y for x, y in zip(a, b))


class Member:
    __slots__ = ("node", "role", "pass_", "amap")

    def __init__(self, node, role, pass_, amap):
        self.node = node
        self.role = role
        self.pass_ = pass_
        self.amap = amap  # node var -> Affine over axis vars a0..


class Kernel:
    def __init__(self, name, full_shape, red_axes):
        self.name = name
        self.full_shape = tuple(full_shape)
        self.red_axes = red_axes
        self.members: list[Member] = []
        self.stored = set()  # buffers written to memory
        self.row_local = set()  # stored temps living in a per-row scratch buffer

    @property
    def is_reduction(self):
        return self.red_axes is not None

    @property
    def outer_axes(self):
        ra = self.red_axes or ()
        return [i for i in range(len(self.full_shape)) if i not in ra]

    def produces(self):
        return {m.node.out.name: m for m in self.members}

    @property
    def nodes(self):
        return [m.node for m in self.members]

    def format(self):
        kind = "reduction" if self.is_reduction else "pointwise"
        head = f"kernel {self.name} {kind} {list(self.full_shape)}"
        if self.is_reduction:
            head += f" reduce axes {list(self.red_axes)}"
        lines = [head]
        for m in self.members:
            st = "store" if m.node.out.name in self.stored else "local"
            lines.append(f"  [{m.role} pass {m.pass_} {st}] {m.node.format()}")
        return "\n".join(lines)


def axis_map(node, full_shape, red_axes):
    """Map a node's vars to axis vars of a kernel, with its role; None if the
    node does not fit the iteration space."""
    nd = len(full_shape)
    if isinstance(node, ir.Reduction):
        if not _shape_eq(node.full_shape, full_shape) or tuple(node.red_axes) != tuple(red_axes or ()):
            return None
        keep = [i for i in range(nd) if i not in node.red_axes]
        amap = {f"v{k}": Affine.var(f"a{d}") for k, d in enumerate(keep)}
        amap.update({f"r{k}": Affine.var(f"a{d}") for k, d in enumerate(node.red_axes)})
        return "full", amap
    rng = node.ranges
    if _shape_eq(rng, full_shape):
        return "full", {f"v{i}": Affine.var(f"a{i}") for i in range(nd)}
    if red_axes is None:
        return None
    keep = [i for i in range(nd) if i not in red_axes]
    if _shape_eq(rng, [full_shape[i] for i in keep]):
        return "outer", {f"v{k}": Affine.var(f"a{d}") for k, d in enumerate(keep)}
    kd = [1 if i in red_axes else full_shape[i] for i in range(nd)]
    if _shape_eq(rng, kd):
        return "outer", {f"v{i}": (Affine(0) if i in red_axes else Affine.var(f"a{i}")) for i in range(nd)}
    return None


def _outer_reduction_of_rows(node):
    """A reduction over outer axes only (size-1 axes ignored) whose loads all
    run contiguously along its innermost kept axis."""
    shape = node.full_shape
    live = [a for a in range(len(shape)) if not (isinstance(shape[a], int) and shape[a] == 1)]
    red = [a for a in live if a in node.red_axes]
    kept = [a for a in live if a not in node.red_axes]
    if not red or not kept or max(red) > min(kept):
        return False
    keep = [i for i in range(len(shape)) if i not in node.red_axes]
    inner = f"v{keep.index(kept[-1])}"
    loads = ir.loads_of(node.expr)
    return bool(loads) and all(e.aux[1].coeff(inner) == 1 for e in loads)


def _dense(b):
    return tuple(b.strides) == ir.contiguous_strides(b.shape)


def _same(a, b):
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    return sympy.simplify(sympy.sympify(a) - sympy.sympify(b)) == 0


def step_reads(step):
    if isinstance(step, Kernel):
        return {b for m in step.members for b in m.node.reads()}
    return step.reads()


def _loads_by_buf(expr, amap):
    out = {}
    for e in ir.loads_of(expr):
        out.setdefault(e.aux[0], []).append(e.aux[1].subst(amap))
    return out


class Scheduler:
    def __init__(self, prog: ir.Program, cpp=False):
        self.prog = prog
        self.cpp = cpp
        self.alias = {}  # buffer -> library result whose memory it takes over
        self.accumulate = set()  # addmm steps adding into their bias operand in place
        self.steps: list = []
        self.step_of = {}  # buffer name -> step index of its producer
        self.barrier = 0  # no fusion into steps before this index

    def run(self):
        for node in self.prog.nodes:
            if isinstance(node, ir.Extern):
                self._append(node)
                for o in node.outs:
                    if o is not None:
                        self.step_of[o.name] = len(self.steps) - 1
                if node.op._schema.is_mutable or ir.is_check(node):
                    # (after a range check: nothing indexes with the indices it
                    # checks before it has run)
                    self.barrier = len(self.steps)
                continue
            if not self._try_fuse(node):
                k = self._new_kernel(node)
                self._append(k)
            # a buffer written in slices (a cat) is ready after its latest writer
            self.step_of[node.out.name] = max(self._step_index(node),
                                              self.step_of.get(node.out.name, -1))
        self._decide_stores()
        self._find_accumulators()
        return self

    def _find_accumulators(self):
        """``addmm(c, a, b)`` whose ``c`` is a library result read by nothing
        else and laid out like the product: the library adds the product into
        ``c`` in place (``c.addmm_(a, b)``) instead of copying ``c`` into a
        fresh result first.  Chains of gradient sums folded into addmm (see
        graph_passes) then accumulate in one buffer."""
        outs = {o[1].buf.name for o in self.prog.outputs if o[0] == "buf"}
        taken = set(self.alias) | set(self.alias.values())
        for i, s in enumerate(self.steps):
            if not (isinstance(s, ir.Extern) and s.op is torch.ops.aten.addmm.default):
                continue
            if any(s.kwargs.get(k, 1) != 1 for k in ("alpha", "beta")) or len(s.args) != 3:
                continue
            c, a, b = s.args
            if not isinstance(c, ir.BufArg) or not c.is_plain:
                continue
            cb = c.buf
            if (cb.kind != "extern" or cb.name in outs or cb.name in taken
                    or cb.dtype != s.out.dtype or cb.shape != s.out.shape
                    or cb.strides != s.out.strides):
                continue
            if any(isinstance(x, ir.BufArg) and x.buf is cb for x in (a, b)):
                continue
            if any(j != i for j, _ in self.readers.get(cb.name, [])):
                continue  # read elsewhere: its value must survive
            producer = self.steps[self.step_of[cb.name]]
            if any(r.alias_info is not None for r in producer.op._schema.returns):
                continue  # a view of memory someone else owns
            self.accumulate.add(s.name)

    def _append(self, step):
        self.steps.append(step)

    def _step_index(self, node):
        for i in range(len(self.steps) - 1, -1, -1):
            s = self.steps[i]
            if isinstance(s, Kernel) and any(m.node is node for m in s.members):
                return i
        raise AssertionError

    def _new_kernel(self, node):
        if isinstance(node, ir.Reduction):
            k = Kernel(f"k{len(self.steps)}", node.full_shape, tuple(node.red_axes))
        else:
            k = Kernel(f"k{len(self.steps)}", node.ranges, None)
        role, amap = axis_map(node, k.full_shape, k.red_axes)
        k.members.append(Member(node, role, 0, amap))
        return k

    def _try_fuse(self, node):
        reads = node.reads()
        producers = {self.step_of[b] for b in reads if b in self.step_of}
        latest = max(producers) if producers else -1
        if node.out.kind == "input":
            # an in-place update: after every step that reads the old data
            # (a kernel reading it exactly where it is written may share the loop)
            latest = max([latest] + [i for i, s in enumerate(self.steps)
                                     if node.out.name in step_reads(s)])
        cands = [i for i in range(len(self.steps)) if isinstance(self.steps[i], Kernel)
                 and i >= self.barrier and i >= latest]
        # vertical first: kernels that produce something this node reads
        vertical = [i for i in cands if i in producers]
        for i in sorted(vertical, reverse=True):
            if self._fuse_into(self.steps[i], node):
                return True
        if isinstance(node, ir.Pointwise) or isinstance(node, ir.Reduction):
            for i in sorted(cands, reverse=True):
                k = self.steps[i]
                if i in producers:
                    continue
                shared = [b for b in reads if any(b in m.node.reads() for m in k.members)]
                big = [b for b in shared if self._numel(b) is None or self._numel(b) >= HORIZONTAL_MIN_NUMEL]
                if big and self._fuse_into(k, node):
                    return True
            # independent work over the same iteration space shares the loop
            # (one fork/join and one pass over the rows instead of two)
            for i in sorted(cands, reverse=True):
                k = self.steps[i]
                if i not in producers and self._same_space(k, node) and self._fuse_into(k, node):
                    return True
        return False

    def _same_space(self, k, node):
        if isinstance(node, ir.Reduction):
            return k.is_reduction and _shape_eq(node.full_shape, k.full_shape) and \
                tuple(node.red_axes) == tuple(k.red_axes)
        return not k.is_reduction and _shape_eq(node.ranges, k.full_shape)

    def _numel(self, b):
        n = self.prog.buffers[b].numel
        return n if isinstance(n, int) else None

    def _fuse_into(self, k, node):
        if len(k.members) >= MAX_KERNEL_NODES:
            return False
        converting = False
        if isinstance(node, ir.Reduction) and not k.is_reduction:
            # a pointwise kernel over the same space becomes a reduction kernel:
            # for reductions over the innermost axis, or over outer axes of
            # a reduction read contiguously along the kept ones (the code
            # generator interchanges those loops), so that the existing
            # pointwise loop keeps a contiguous inner loop
            if not _shape_eq(node.full_shape, k.full_shape):
                return False
            if (len(node.full_shape) - 1) not in node.red_axes and \
                    not _outer_reduction_of_rows(node):
                return False
            converting = True
            red_axes = tuple(node.red_axes)
        else:
            red_axes = k.red_axes
        fit = axis_map(node, k.full_shape, red_axes)
        if fit is None:
            return False
        role, amap = fit
        produced = k.produces()
        loads = _loads_by_buf(node.expr, amap)
        for b in loads:
            m = produced.get(b)
            if m is not None and m.node.out.kind == "input":
                return False  # data updated in place is read by later steps only
        if node.out.kind == "input":
            store = node.store.subst(amap)
            for m in k.members:
                for ix in _loads_by_buf(m.node.expr, m.amap).get(node.out.name, []):
                    if ix != store:
                        return False
        pass_ = 0
        for b, idxs in loads.items():
            m = produced.get(b)
            if m is None:
                continue
            store = m.node.store.subst(m.amap)
            if any(ix != store for ix in idxs):
                return False
            pkind = "red" if isinstance(m.node, ir.Reduction) else m.role
            if role == "full":
                need = m.pass_ + 1 if pkind in ("red", "outer") else m.pass_
            else:
                if pkind == "full":
                    return False
                need = m.pass_
            pass_ = max(pass_, need)
        if node.out.kind == "input":
            # an in-place update must run after every member reading the old
            # data: in a later pass, or per column (outer) after a full loop
            # of the same pass, a reader would see the new value
            mine = (pass_, role != "full")
            for m in k.members:
                if node.out.name in _loads_by_buf(m.node.expr, m.amap) and \
                        (m.pass_, m.role != "full") > mine:
                    return False
        if converting:
            k.red_axes = red_axes
            for m in k.members:
                m.amap = axis_map(m.node, k.full_shape, red_axes)[1]
        k.members.append(Member(node, role, pass_, amap))
        return True

    def _decide_stores(self):
        """A member's buffer is stored when it is a graph output, read outside
        its kernel, or read inside it from another pass or role."""
        readers = {}  # buffer -> list of (step index, member or None)
        for i, s in enumerate(self.steps):
            if isinstance(s, Kernel):
                for m in s.members:
                    for b in m.node.reads():
                        readers.setdefault(b, []).append((i, m))
            else:
                for b in s.reads():
                    readers.setdefault(b, []).append((i, None))
        outs = {o[1].buf.name for o in self.prog.outputs if o[0] == "buf"}
        writers = {}
        for n in self.prog.nodes:
            if not isinstance(n, ir.Extern):
                writers[n.out.name] = writers.get(n.out.name, 0) + 1
        for i, s in enumerate(self.steps):
            if not isinstance(s, Kernel):
                continue
            for m in s.members:
                b = m.node.out.name
                # a buffer written in slices is read whole from memory
                need = b in outs or m.node.out.kind in ("output", "input") or writers[b] > 1
                for (j, r) in readers.get(b, []):
                    if j != i or r is None:
                        need = True
                    elif isinstance(m.node, ir.Reduction) or m.role != r.role or m.pass_ != r.pass_:
                        # reductions are finalised once per row; readers in the
                        # same kernel use the local value, not memory
                        if not (isinstance(m.node, ir.Reduction) or m.role == "outer"):
                            need = True
                if need:
                    s.stored.add(b)
        self.readers = readers
        if self.cpp:
            for i, s in enumerate(self.steps):
                if isinstance(s, Kernel) and s.is_reduction:
                    self._find_row_local(i, s, outs)
            self._find_reuse(outs)

    def _find_reuse(self, outs):
        """A pointwise result computed from a library call's result that
        nothing else reads, elementwise where it stores (relu after addmm,
        the relu-backward mask after a matmul): it is stored over that
        result instead of into fresh memory (half the footprint; the value
        is still in cache)."""
        prog = self.prog
        for i, s in enumerate(self.steps):
            if not isinstance(s, Kernel):
                continue
            for m in s.members:
                o = m.node.out
                if not isinstance(m.node, ir.Pointwise) or o.name not in s.stored \
                        or o.kind not in ("temp", "output") or o.name in s.row_local:
                    continue
                store = m.node.store.subst(m.amap)
                for b, idxs in _loads_by_buf(m.node.expr, m.amap).items():
                    e = prog.buffers[b]
                    # the same dense extent, read at the very offset stored to
                    # (shapes may differ: [B*T, C] from a matmul, [B, T, C] after)
                    if e.kind != "extern" or b in outs or b in self.alias.values() \
                            or e.dtype != o.dtype or e.offset != 0 or o.offset != 0 \
                            or not _dense(e) or not _dense(o) or not _same(e.numel, o.numel):
                        continue
                    if any(ix != store for ix in idxs):
                        continue
                    readers = self.readers.get(b, [])
                    if any(r is not m for _, r in readers):
                        continue  # read by another node or step
                    producer = self.steps[self.step_of[b]]
                    if any(r.alias_info is not None for r in producer.op._schema.returns):
                        continue  # a view of someone else's memory
                    self.alias[o.name] = b
                    break

    def _find_row_local(self, i, k, outs):
        """Temps of an inner-axis reduction kernel that only later passes of
        the same kernel read (softmax's exp(x - max), read by the sum and
        again by the normalisation): the code generator keeps one row of
        them in a scratch array instead of the whole buffer in memory."""
        shape = k.full_shape
        live = [a for a in range(len(shape)) if not (isinstance(shape[a], int) and shape[a] == 1)]
        red = [a for a in live if a in k.red_axes]
        kept = [a for a in live if a not in k.red_axes]
        if not red or (kept and max(kept) > min(red)):
            return
        row = ir.prod([shape[a] for a in k.red_axes])
        if not isinstance(row, int) or row > ROW_SCRATCH_MAX:
            return
        for m in k.members:
            b = m.node.out
            if b.name not in k.stored or b.name in outs or b.kind != "temp" or m.role != "full" \
                    or isinstance(m.node, ir.Reduction) or not _shape_eq(b.shape, shape) \
                    or tuple(b.strides) != ir.contiguous_strides(b.shape):
                continue
            if all(j == i and r is not None for j, r in self.readers.get(b.name, [])):
                k.row_local.add(b.name)

    # ------------------------------------------------------------ buffers
    def plan(self):
        """Assign arena offsets to stored temps (reusing dead buffers' space
        for static sizes); temps read by externs become their own tensors."""
        prog = self.prog
        last_use = {}
        for b, rs in self.readers.items():
            last_use[b] = max(j for j, _ in rs)
        extern_read = {b for b, rs in self.readers.items() if any(r is None for _, r in rs)}
        self.arena = {}  # buffer -> offset (bytes)
        self.tensor_temps = []
        free = []  # (offset, size) static blocks
        top = 0  # the end of the static blocks
        symbolic = {}  # buffer of symbolic size -> its offset in their region
        symbolic_top = 0
        live = []
        for i, s in enumerate(self.steps):
            if not isinstance(s, Kernel):
                continue
            for b in sorted(s.stored):
                buf = prog.buffers[b]
                if buf.kind != "temp" or b in s.row_local or b in self.alias or b in self.arena:
                    continue  # (a buffer written in slices by several kernels: placed once)
                if b in extern_read or self._unbacked(buf):
                    # (a size known only once a library call has run cannot
                    # size the workspace, which is allocated before the first)
                    buf.kind = "ttemp"
                    self.tensor_temps.append(b)
                    continue
                nbytes = buf.numel * buf.dtype.itemsize
                if isinstance(nbytes, int):
                    nbytes = (nbytes + 63) // 64 * 64
                    slot = None
                    for fi, (off, size) in enumerate(free):
                        if size >= nbytes:
                            slot = fi
                            break
                    if slot is not None:
                        off, size = free.pop(slot)
                        if size > nbytes:
                            free.append((off + nbytes, size - nbytes))
                        self.arena[b] = off
                    else:
                        self.arena[b] = top
                        top += nbytes
                    live.append((b, nbytes))
                else:
                    # symbolic sizes: no reuse, in a region of their own after
                    # the static blocks, placed once they are all known (a
                    # static block allocated later would land on them); 8
                    # bytes per element keeps every following buffer aligned
                    # whatever its dtype
                    symbolic[b] = symbolic_top
                    self.arena[b] = None
                    symbolic_top = symbolic_top + buf.numel * 8 + 64
            # buffers whose last reader is this step die after it
            for b, nbytes in list(live):
                if last_use.get(b, -1) <= i and prog.buffers[b].kind == "temp":
                    live.remove((b, nbytes))
                    free.append((self.arena[b], nbytes))
        for b, off in symbolic.items():
            self.arena[b] = top + off
        self.arena_bytes = top + symbolic_top
        return self

    def _unbacked(self, buf):
        """Does ``buf``'s extent depend on a data-dependent size?"""
        unbacked = getattr(self.prog, "unbacked", ())
        return bool(unbacked) and any(
            getattr(x, "free_symbols", set()) & unbacked for x in (*buf.shape, *buf.strides))

    def segments(self):
        """``[(name, [Kernel])]``: the maximal runs of consecutive kernels
        between library calls, in order.  The C code generator makes each
        run one exported function, so the run-time wrapper crosses into C
        once per run, not once per kernel."""
        plan = []
        cur = None
        for s in self.steps:
            if isinstance(s, Kernel):
                if cur is None:
                    cur = (f"seg{len(plan)}", [])
                    plan.append(cur)
                cur[1].append(s)
            else:
                cur = None
        return plan

    def format(self):
        out = []
        for s in self.steps:
            out.append(s.format())
        return "\n".join(out)

    @property
    def kernels(self):
        return [s for s in self.steps if isinstance(s, Kernel)]


def schedule(prog, cpp=False):
    """``cpp``: for the C code generator, which supports per-row scratch
    buffers (:attr:`Kernel.row_local`) and results stored over a library
    call's result (:attr:`Scheduler.alias`)."""
    return Scheduler(prog, cpp).run().plan()

