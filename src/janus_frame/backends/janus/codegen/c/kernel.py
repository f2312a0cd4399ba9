"""C/C++ code generation for CPU kernels.

In: a :class:`schedule.Scheduler` (steps, stores, arena plan) and its
segments (:meth:`schedule.Scheduler.segments`).  Out:
:class:`CSource` -- one translation unit holding one static function per fused
kernel and one exported entry point per *segment* (a maximal run of kernels
between extern calls), with the argument list each entry point expects.

Loops: axes are visited in the order the strides of the kernel's accesses
call for (:func:`codegen.c.outer.loop_order`: row-major buffers keep it,
channels-last ones put the channels innermost); size-1 axes are dropped and
adjacent axes merged whenever every access of the kernel is linear across
them, so contiguous work becomes one long inner loop marked ``omp simd`` (cut
into stages when its body chains several math calls: :mod:`codegen.c.stages`).
The outer loop is ``omp parallel for`` only when the kernel has enough
elements to amortise fork/join.  Reduction kernels run their
passes per row: each pass is one loop over the reduced axes, with SIMD
reduction clauses (NaN-propagating max/min via a NaN flag).  Kernel-local
values stay in registers; loads of values produced earlier in the same
kernel read the register or the just-written row.  Reductions over outer axes
(bias gradients, channels-last batch-norm statistics) run with interchanged
loops over blocks of kept columns (:mod:`codegen.c.outer`);
variance is Welford's single pass; a temp only later passes of a row
reduction read lives in a per-row scratch array.  Expressions are printed by
:mod:`codegen.c.expr` (its table ``C_OPS``), reduction accumulators by
:mod:`codegen.c.reduce` (from ``ir.REDUCTIONS``).

The source is a C11 / C++ common subset (compiled as C for speed).
"""
from __future__ import annotations

import torch

from . import reduce, stages
from ... import ir
from .expr import CTYPES, Body, _loops, affine_c, cexpr
from .prelude import PRELUDE
from .outer import (PARALLEL_MIN_WORK, OuterReductionGen, _close_loops, loop_order,
                                outer_reduction_layout)
from ...ir import Affine, NaN, Op, Reduce
from ...schedule import Kernel

WELFORD_LANES = 16  # interleaved partial results of a row's Welford reduction
# A float32 sum or Welford statistic accumulates in double when one
# accumulator would take more than this many sequential updates.  A row
# reduction's Welford keeps WELFORD_LANES = 16 interleaved partials, and its
# sum one partial per vector lane (16 with AVX-512; rows of 1025..4096 sum
# into ``jf_rsum_t``, float there and double on narrower vectors), so rows up
# to 4096 stay float; a column reduction (outer axes, codegen.c.outer) walks
# every row, or a fixed chunk of them, with one accumulator: in float, 4096
# rows of batch-norm statistics (32 channels at 16x16, 16 images) left the
# normalised values twice eager's error, and a CNN's parameters drifted 1e-3
# from eager's within five SGD steps.
DOUBLE_ACC_MIN = 256
ROW_LANES = 16


class CppKernelGen(OuterReductionGen):
    def __init__(self, sched, kernel: Kernel, bufvar):
        self.acc_lanes = ROW_LANES  # set per layout by the column reductions
        self.s = sched
        self.k = kernel
        self.bufvar = dict(bufvar)
        for b in kernel.row_local:
            self.bufvar[b] = f"row_{b}"
        self.row_sub = {}
        self.out = []
        self.omp_api = False  # calls omp_get_thread_num()

    def accesses(self, stores_twice=False):
        acc = []
        for m in self.k.members:
            for e in ir.walk(ir.subst_vars(m.node.expr, m.amap)):
                if e.kind in (Op.LOAD, Op.MLOAD):
                    acc.append(e.aux[1])
                elif e.kind == Op.INDEX:
                    acc.append(e.aux)
            acc += [m.node.store.subst(m.amap)] * (2 if stores_twice else 1)
            if isinstance(m.node, ir.Reduction) and m.node.spec.index:
                acc.append(self._flat_red_index())
        return acc

    def _flat_red_index(self, in_loop_order=False):
        """Flat index of the reduced axes: row-major (an arg-reduction's
        result), or in the order the loops visit them (a running count)."""
        k = self.k
        a = Affine(0)
        for ax in (self._ordered(k.red_axes) if in_loop_order else k.red_axes):
            a = a.scale(k.full_shape[ax]) + Affine.var(f"a{ax}")
        return a

    def gen(self):
        k = self.k
        sizes = k.full_shape
        acc = self.accesses()
        # row scratch arrays (schedule._find_row_local) assume row-major rows
        self.order = list(range(len(sizes))) if k.row_local else loop_order(k, self.accesses(stores_twice=True))
        if not k.is_reduction:
            return self.gen_pointwise(sizes, acc)
        if outer_reduction_layout(k, acc, self.order):
            return self.gen_outer_reduction(sizes, acc)
        return self.gen_reduction(sizes, acc)

    def _ordered(self, axes):
        pos = {a: i for i, a in enumerate(self.order)}
        return sorted(axes, key=pos.__getitem__)

    def _store_line(self, m, sub, val, ind):
        idx = m.node.store.subst(m.amap).subst(sub)
        if m.node.out.name in self.row_sub:
            idx = idx.subst(self.row_sub[m.node.out.name])
        return f"{'  ' * ind}{self.bufvar[m.node.out.name]}[{affine_c(idx)}] = {val};"

    def _open_loops(self, loops, ind, parallel_work, simd_clause, par_clause=""):
        lines = []
        n = len(loops)
        for li, (lv, size, _) in enumerate(loops):
            if li == 0 and parallel_work is not None:
                cond = parallel_work
                collapse = ""
                if n > 1 and li == 0 and isinstance(size, int) and size < 16:
                    collapse = " collapse(2)" if n > 2 or simd_clause is None else ""
                if n == 1 and simd_clause is not None:
                    lines.append(f"{'  ' * ind}#pragma omp parallel for simd{par_clause}{cond}")
                else:
                    lines.append(f"{'  ' * ind}#pragma omp parallel for{collapse}{par_clause}{cond}")
            elif li == n - 1 and simd_clause is not None:
                lines.append(f"{'  ' * ind}#pragma omp simd{simd_clause}")
            lines.append(f"{'  ' * ind}for (int64_t {lv} = 0; {lv} < {cexpr(size)}; ++{lv}) {{")
            ind += 1
        return lines, ind

    def _parallel(self, work, outer_numel):
        """'' for serial; an if() clause, or always-on, for parallel loops."""
        if isinstance(work, int):
            if work < PARALLEL_MIN_WORK or (isinstance(outer_numel, int) and outer_numel < 2):
                return None
            return ""
        return f" if({cexpr(work)} >= {PARALLEL_MIN_WORK})"

    def gen_pointwise(self, sizes, acc):
        k = self.k
        loops, sub = _loops(self.order, sizes, acc)
        numel = ir.prod(sizes)
        par = self._parallel(numel, numel)
        lines, ind = self._open_loops(loops, 1, par, "")
        body = Body(self.bufvar, {}, ind)
        body.inner = tuple(lv for lv, _, _ in loops[-1:])
        self._allow_hoisting(body, lines, "p")
        for m in k.members:
            e = ir.subst_vars(ir.subst_vars(m.node.expr, m.amap), sub)
            v = body.emit(e)
            out = m.node.out.name
            body.locals[(out, m.node.store.subst(m.amap).subst(sub)._key)] = v
            if out in k.stored:
                body.lines.append(self._store_line(m, sub, v, ind))
        _place_hoisted(lines, body)
        if stages.ENABLED:
            stages.stage_inner_loop(lines, body.lines, self._written_ptrs())
        lines += body.lines
        ind = _close_loops(lines, ind, len(loops))
        return lines

    def _written(self):
        """Buffers the kernel stores, with the buffers they alias."""
        alias = getattr(self.s, "alias", {})
        outs = {m.node.out.name for m in self.k.members}
        return frozenset(outs | {alias[b] for b in outs if b in alias})

    def _written_ptrs(self):
        """C pointer names of :meth:`_written`."""
        return {self.bufvar[b] for b in self._written() if b in self.bufvar}

    def _allow_hoisting(self, body, header, tag):
        """Let ``body`` compute loop-invariant values before the innermost
        loop of ``header`` (not when that loop is collapsed into its parent:
        nothing may stand between collapsed loops)."""
        if not header or any("collapse" in ln for ln in header):
            return
        body.hoist_tag = tag
        body.written = self._written()

    def gen_reduction(self, sizes, acc):
        k = self.k
        outer_axes = self._ordered(k.outer_axes)
        red_axes = self._ordered(k.red_axes)
        oloops, osub = _loops(outer_axes, sizes, acc)
        rloops, rsub = _loops(red_axes, sizes, acc)
        sub = dict(osub)
        sub.update(rsub)
        outer_numel = ir.prod([sizes[a] for a in outer_axes])
        red_numel = ir.prod([sizes[a] for a in red_axes])
        work = ir.prod(sizes)
        passes = sorted({m.pass_ for m in k.members})
        reds = [m for m in k.members if isinstance(m.node, ir.Reduction)]
        row_parallel = len(oloops) > 0
        par = self._parallel(work, outer_numel) if row_parallel else None
        scalar_parallel = (not row_parallel and len(passes) == 1 and len(reds) >= 1
                           and all(not (r.node.spec.index or r.node.spec.welford)
                                   for r in reds)
                           and self._parallel(work, 2) is not None and len(rloops) >= 1)
        lines, ind = self._open_loops(oloops, 1, par, None)
        for b in sorted(k.row_local):
            # one row of a temp only later passes read: the reduced axes are
            # innermost and contiguous, so its in-row index drops the row vars
            self.row_sub[b] = {lv: Affine(0) for lv, _, _ in oloops}
            lines.append(f"{'  ' * ind}{CTYPES[self.s.prog.buffers[b].dtype]} row_{b}[{cexpr(red_numel)}];")
        locals_ = {}
        for p in passes:
            pm = [m for m in k.members if m.pass_ == p]
            full = [m for m in pm if m.role == "full"]
            outer = [m for m in pm if m.role == "outer"]
            red_here = [m for m in full if isinstance(m.node, ir.Reduction)]
            decls, clauses, finals = [], [], []
            for m in red_here:
                if m.node.spec.welford:
                    continue
                d, c, f = self._acc_decl(m, red_numel)
                decls += d
                clauses += c
                finals += f
            if full:
                lines += [f"{'  ' * ind}{d}" for d in decls]
                argred = any(m.node.spec.index for m in red_here)
                simd = None if argred else (" " + " ".join(clauses) if clauses else "")
                wf = self._welford_groups(red_here)
                lanes = bool(wf) and len(rloops) >= 1
                rows = rloops[:-1] if lanes else []  # outer reduced loops: one merge per row
                for lead in dict.fromkeys(wf.values()):
                    if rows:
                        lines += [f"{'  ' * ind}{d}" for d in self._wf_total_decl(lead)]
                    else:
                        lines += [f"{'  ' * ind}{d}" for d in self._wf_decl(lead, red_numel, lanes)]

                def emit_body(rind, mode, header=None, tag=None):
                    body = Body(self.bufvar, locals_, rind)
                    body.row_sub = self.row_sub
                    body.inner = tuple(lv for lv, _, _ in rloops[-1:])
                    if header is not None:
                        self._allow_hoisting(body, header, tag)
                    local_keys = []
                    for m in full:
                        e = ir.subst_vars(ir.subst_vars(m.node.expr, m.amap), sub)
                        v = body.emit(e)
                        if m in wf:
                            if wf[m] is m:
                                body.lines += self._wf_update(m, v, rind, mode, rloops)
                        elif isinstance(m.node, ir.Reduction):
                            body.lines += self._acc_update(m, v, rind, sub)
                        else:
                            key = (m.node.out.name, m.node.store.subst(m.amap).subst(sub)._key)
                            locals_[key] = v
                            local_keys.append(key)
                            if m.node.out.name in k.stored:
                                body.lines.append(self._store_line(m, sub, v, rind))
                    for key in local_keys:
                        del locals_[key]  # register values do not outlive the body
                    return body if header is not None else body.hoisted + body.lines

                if lanes:
                    # Welford over WELFORD_LANES interleaved partial results:
                    # every lane has seen the same count, so one reciprocal per
                    # step serves all lanes; lanes are merged (Chan et al.)
                    # and the remainder of the row is added one by one
                    # With reduced axes that are not adjacent (batch norm: N
                    # and H*W around C) the outer ones run serially and each
                    # row's lane statistics are merged into a running total.
                    rv, rsize, _ = rloops[-1]
                    W = WELFORD_LANES
                    lind = ind
                    if rows:
                        rl, lind = self._open_loops(rows, ind, None, None)
                        lines += rl
                        for lead in dict.fromkeys(wf.values()):
                            lines += [f"{'  ' * lind}{d}" for d in self._wf_decl(lead, red_numel, True)]
                    sp = "  " * lind
                    lines.append(f"{sp}const int64_t nv_ = {cexpr(rsize)} / {W};")
                    lines.append(f"{sp}for (int64_t j_ = 0; j_ < nv_; ++j_) {{")
                    T = self._wf_widest(wf)
                    lines.append(f"{sp}  const {T} winv_ = ({T})1 / ({T})(j_ + 1);")
                    if simd is not None:
                        lines.append(f"{sp}  #pragma omp simd{simd}")
                    lines.append(f"{sp}  for (int64_t l_ = 0; l_ < {W}; ++l_) {{")
                    lines.append(f"{sp}    const int64_t {rv} = {W} * j_ + l_;")
                    lines += emit_body(lind + 2, "lanes")
                    lines.append(f"{sp}  }}")
                    lines.append(f"{sp}}}")
                    for lead in dict.fromkeys(wf.values()):
                        lines += [f"{sp}{ln}" for ln in self._wf_merge_lanes(lead)]
                    lines.append(f"{sp}for (int64_t {rv} = {W} * nv_; {rv} < {cexpr(rsize)}; ++{rv}) {{")
                    lines += emit_body(lind + 1, "tail")
                    lines.append(f"{sp}}}")
                    if rows:
                        for lead in dict.fromkeys(wf.values()):
                            lines += [f"{sp}{ln}" for ln in self._wf_merge_row(lead, rsize)]
                        _close_loops(lines, lind, len(rows))
                        for lead in dict.fromkeys(wf.values()):
                            lines += [f"{'  ' * ind}{ln}" for ln in self._wf_total_final(lead)]
                else:
                    par_clause = ""
                    if scalar_parallel and red_here and not wf:
                        par_clause = " " + " ".join(clauses)
                        rl, rind = self._open_loops(rloops, ind, "" if isinstance(work, int) else f" if({cexpr(work)} >= {PARALLEL_MIN_WORK})", simd, par_clause)
                        if len(rloops) > 1 and simd is not None:
                            rl = [ln.replace(" collapse(2)", "") for ln in rl]
                    else:
                        rl, rind = self._open_loops(rloops, ind, None, None if wf else simd)
                    body = emit_body(rind, "serial", rl, f"r{p}")
                    _place_hoisted(rl, body)
                    lines += rl
                    lines += body.lines
                    rind = _close_loops(lines, rind, len(rloops))
                lines += [f"{'  ' * ind}{f}" for f in finals]
                for m in red_here:
                    v = self._wf_final(m, wf[m], red_numel, "") if m in wf else self._acc_final(m)
                    key = (m.node.out.name, m.node.store.subst(m.amap).subst(sub)._key)
                    locals_[key] = v
                    if m.node.out.name in k.stored:
                        lines.append(self._store_line(m, sub, v, ind))
            if outer:
                body = Body(self.bufvar, locals_, ind)
                body.row_sub = self.row_sub
                body.n = 1000 + p * 100
                for m in outer:
                    e = ir.subst_vars(ir.subst_vars(m.node.expr, m.amap), sub)
                    v = body.emit(e)
                    locals_[(m.node.out.name, m.node.store.subst(m.amap).subst(sub)._key)] = v
                    if m.node.out.name in k.stored:
                        body.lines.append(self._store_line(m, sub, v, ind))
                lines += body.lines
        ind = _close_loops(lines, ind, len(oloops))
        return lines

    # Welford (var/std/var_mean: mean and sum of squared deviations, one pass)
    def _welford_groups(self, reds):
        """Welford members -> the member owning the accumulators: a mean and
        an M2 of the same expression share one."""
        out = {}
        lead = {}
        for m in reds:
            if m.node.spec.welford:
                key = ir.format_expr(ir.subst_vars(m.node.expr, m.amap))
                out[m] = lead.setdefault(key, m)
        return out

    def _wf_type(self, lead, red_numel):
        d = lead.node.expr.dtype
        if d == torch.float32 and self._long_accumulation(red_numel):
            return "double"
        return CTYPES[d]

    def _long_accumulation(self, red_numel):
        """Whether an accumulator takes more than DOUBLE_ACC_MIN updates
        (``acc_lanes``: how many accumulators share the reduced elements)."""
        return not isinstance(red_numel, int) or red_numel > DOUBLE_ACC_MIN * self.acc_lanes

    def _wf_widest(self, wf):
        return "double" if any(self._wf_type(m, self._red_numel()) == "double"
                               for m in wf.values()) else "float"

    def _red_numel(self):
        return ir.prod([self.k.full_shape[a] for a in self.k.red_axes])

    def _wf_decl(self, lead, red_numel, lanes):
        T = self._wf_type(lead, red_numel)
        n = lead.node.out.name
        if lanes:
            W = WELFORD_LANES
            return [f"{T} wlm_{n}[{W}] = {{0}}, wlq_{n}[{W}] = {{0}};"]
        return [f"{T} wm_{n} = 0, wq_{n} = 0;", f"int64_t wn_{n} = 0;"]

    def _wf_update(self, lead, v, ind, mode, rloops):
        n = lead.node.out.name
        T = self._wf_type(lead, self._red_numel())
        sp = "  " * ind
        if mode == "lanes":
            m, q = f"wlm_{n}[l_]", f"wlq_{n}[l_]"
            return [f"{sp}const {T} wd_{n} = ({T}){v} - {m};",
                    f"{sp}{m} += wd_{n} * winv_;",
                    f"{sp}{q} += wd_{n} * (({T}){v} - {m});"]
        if mode == "tail":  # the row's lanes have seen W * nv_ elements
            cnt = f"({T})({rloops[-1][0]} + 1)"
        else:
            cnt = f"({T})(++wn_{n})"
        return [f"{sp}const {T} wd_{n} = ({T}){v} - wm_{n};",
                f"{sp}wm_{n} += wd_{n} / {cnt};",
                f"{sp}wq_{n} += wd_{n} * (({T}){v} - wm_{n});"]

    def _wf_total_decl(self, lead):
        n = lead.node.out.name
        T = self._wf_type(lead, self._red_numel())
        return [f"{T} wtm_{n} = 0, wtq_{n} = 0;", f"int64_t wtn_{n} = 0;"]

    def _wf_merge_row(self, lead, rsize):
        """Chan et al.'s merge of one row's (mean, M2) over ``rsize``
        elements into the running total."""
        n = lead.node.out.name
        T = self._wf_type(lead, self._red_numel())
        r = cexpr(rsize)
        return [f"if ({r} > 0) {{",
                f"  const {T} na_ = ({T})wtn_{n}, nb_ = ({T})({r}), nt_ = na_ + nb_;",
                f"  const {T} dl_ = wm_{n} - wtm_{n};",
                f"  wtm_{n} += dl_ * (nb_ / nt_);",
                f"  wtq_{n} += wq_{n} + dl_ * dl_ * (na_ * nb_ / nt_);",
                f"  wtn_{n} += {r};",
                "}"]

    def _wf_total_final(self, lead):
        n = lead.node.out.name
        T = self._wf_type(lead, self._red_numel())
        return [f"{T} wm_{n} = wtm_{n}, wq_{n} = wtq_{n};"]

    def _wf_merge_lanes(self, lead):
        n = lead.node.out.name
        T = self._wf_type(lead, self._red_numel())
        W = WELFORD_LANES
        return [f"{T} wm_{n} = 0, wq_{n} = 0;",
                "if (nv_ > 0) {",
                f"  for (int l_ = 0; l_ < {W}; ++l_) wm_{n} += wlm_{n}[l_];",
                f"  wm_{n} /= ({T}){W};",
                f"  for (int l_ = 0; l_ < {W}; ++l_) {{",
                f"    const {T} we_ = wlm_{n}[l_] - wm_{n};",
                f"    wq_{n} += wlq_{n}[l_] + ({T})nv_ * we_ * we_;",
                "  }",
                "}"]

    def _wf_final(self, m, lead, red_numel, slot):
        """``slot``: '' for scalars, '[i]' for the interchanged vectors."""
        n = lead.node.out.name
        T = CTYPES[m.node.out.dtype]
        v = f"wm_{n}{slot}" if m.node.rtype == Reduce.WMEAN else f"wq_{n}{slot}"
        if m.node.rtype == Reduce.WMEAN:  # the mean of nothing is NaN, as sum / 0
            return f"({cexpr(red_numel)} > 0 ? ({T}){v} : ({T})NAN)"
        return f"(({T}){v})"

    # accumulators --------------------------------------------------------
    def _acc_name(self, m):
        return f"acc_{m.node.out.name}"

    def _acc_type(self, m, red_numel):
        d = m.node.expr.dtype
        if m.node.rtype in (Reduce.SUM, Reduce.PROD) and d == torch.float32:
            if self._long_accumulation(red_numel):
                return "double"
            if self.acc_lanes == ROW_LANES and red_numel > DOUBLE_ACC_MIN * 4:
                return "jf_rsum_t"  # (a vector loop's lanes: see DOUBLE_ACC_MIN)
        if m.node.spec.nan is NaN.TRUTH:  # truth values count in an int
            return "int"
        return CTYPES[d]

    def _acc_decl(self, m, red_numel):
        return reduce.declare(m, self._acc_type(m, red_numel), self._acc_name(m))

    def _acc_update(self, m, v, ind, sub):
        index = None
        if ir.REDUCTIONS[m.node.rtype].index:
            index = affine_c(self._flat_red_index().subst(sub))
        return reduce.update(m, v, self._acc_name(m), "  " * ind, index)

    def _acc_final(self, m):
        a = self._acc_name(m)
        T = CTYPES[m.node.out.dtype]
        return f"(({T}){a})"


def _kernel_bufs(k, alias=None):
    """Buffers a kernel needs a pointer to: everything it reads from outside,
    and what it stores; values kept in registers or row scratch need none.
    A buffer stored over a library result (``alias``) uses that one's pointer."""
    alias = alias or {}
    local = {m.node.out.name for m in k.members if m.node.out.name not in k.stored} | k.row_local
    used = []
    for m in k.members:
        names = set(m.node.reads()) - local
        if m.node.out.name in k.stored and m.node.out.name not in k.row_local:
            names.add(m.node.out.name)
        for b in sorted(names):
            b = alias.get(b, b)
            if b not in used:
                used.append(b)
    return used


class CSource:
    def __init__(self):
        self.text = ""
        self.segments = []  # list of (function name, [arg specs])
        self.kernel_names = []


def generate(sched, seg_plan):
    """``seg_plan``: list of (segment name, [Kernel]); returns CSource.

    A segment function takes the base pointers of the buffers it touches that
    live outside the workspace (inputs, outputs, extern results, tensor
    temps; in ``CSource.segments`` order), then the workspace base if any,
    then one int64 per size symbol."""
    prog = sched.prog
    src = CSource()
    parts = [PRELUDE]
    omp_api = False
    syms = [str(s) for s, _ in prog.symbols]
    for seg_name, kernels in seg_plan:
        alias = getattr(sched, "alias", {})
        ptr_bufs = []
        for k in kernels:
            for b in _kernel_bufs(k, alias):
                if b not in ptr_bufs:
                    ptr_bufs.append(b)
        external = [b for b in ptr_bufs if b not in sched.arena]
        uses_ws = any(b in sched.arena for b in ptr_bufs)
        bufvar = {b: f"p_{b}" for b in ptr_bufs}
        bufvar.update({o: f"p_{e}" for o, e in alias.items() if e in ptr_bufs})
        for k in kernels:
            used = _kernel_bufs(k, alias)
            written = {alias.get(m.node.out.name, m.node.out.name) for m in k.members
                       if m.node.out.name in k.stored}
            params = []
            for b in used:
                T = CTYPES[prog.buffers[b].dtype]
                const = "" if b in written else "const "
                params.append(f"{const}{T}* JF_RESTRICT {bufvar[b]}")
            params += [f"const int64_t {s}" for s in syms]
            gen = CppKernelGen(sched, k, bufvar)
            body = gen.gen()
            stages.inline_math(body)
            omp_api = omp_api or gen.omp_api
            parts.append(f"/* {k.name}: {len(k.members)} node(s) */")
            parts.append(f"static void {k.name}({', '.join(params) or 'void'}) {{")
            parts += body
            parts.append("}")
            k.c_params = used
            src.kernel_names.append(k.name)
        params = [f"void* a_{b}" for b in external] + (["void* ws_base"] if uses_ws else [])
        params += [f"const int64_t {s}" for s in syms]
        lines = [f"void {seg_name}({', '.join(params) or 'void'}) {{"]
        for b in external:
            lines.append(f"  {CTYPES[prog.buffers[b].dtype]}* {bufvar[b]} = ({CTYPES[prog.buffers[b].dtype]}*)a_{b};")
        if uses_ws:
            lines.append("  char* ws = (char*)ws_base;")
            for b in ptr_bufs:
                if b in sched.arena:
                    T = CTYPES[prog.buffers[b].dtype]
                    lines.append(f"  {T}* {bufvar[b]} = ({T}*)(ws + {cexpr(sched.arena[b])});")
        for k in kernels:
            args = [bufvar[b] for b in k.c_params] + syms
            lines.append(f"  {k.name}({', '.join(args)});")
        lines.append("}")
        parts += lines
        src.segments.append((seg_name, external, uses_ws))
    if omp_api:
        parts.insert(1, "#include <omp.h>")
    src.text = "\n".join(parts) + "\n"
    return src


def _place_hoisted(header: list, body) -> None:
    """Insert ``body``'s hoisted statements into ``header`` (loop-opening
    lines) just before the innermost loop and its pragma."""
    if not body.hoisted:
        return
    i = max(j for j, ln in enumerate(header) if ln.lstrip().startswith("for ("))
    if i > 0 and header[i - 1].lstrip().startswith("#pragma"):
        i -= 1
    header[i:i] = body.hoisted
