"""C code for reduction kernels whose kept axes run innermost.

In: a :class:`schedule.Kernel` whose reduced axes all lie outside its kept
axes in loop order (a bias gradient summed over the batch, batch-norm
statistics of channels-last data summed over N, H and W per channel).  Out:
the C lines of its body, as a mixin of :class:`codegen.c.kernel.CppKernelGen`.

Also here: :func:`loop_order` (the order a kernel loops over its axes, from
the strides of its accesses) and :func:`outer_reduction_layout` (whether a
reduction kernel takes this form).
"""
from __future__ import annotations

import functools

from ... import ir
from . import reduce
from .expr import CTYPES, Body, _loops, affine_c, cexpr

PARALLEL_MIN_WORK = 32768
OUTER_BLOCK = 512  # columns per block of an interchanged (outer-axis) reduction
ROW_CHUNKS = 8  # row chunks of a split outer reduction (fixed: see gen_outer_split)


class OuterReductionGen:
    def gen_outer_reduction(self, sizes, acc):
        """A reduction over outer axes with the kept axes innermost (a bias
        gradient: sum over the batch of [batch, features]), loops interchanged:
        the kept extent is cut into blocks of ``OUTER_BLOCK`` columns, each
        block keeps a vector of partial results, and the reduced axes are the
        outer loops, so every inner loop runs contiguously over one row of
        the block (``omp simd``).  Threads split the kept extent (never the
        reduction: results are bitwise independent of the thread count).
        Pass structure as in :meth:`gen_reduction`; values of an earlier pass
        live in per-block arrays."""
        k = self.k
        self.acc_lanes = 1  # one accumulator per column walks every row
        oloops, osub = _loops(self._ordered(k.outer_axes), sizes, acc)
        rloops, rsub = _loops(self._ordered(k.red_axes), sizes, acc)
        (lv, K, _), = oloops
        sub = dict(osub)
        sub.update(rsub)
        red_numel = ir.prod([sizes[a] for a in k.red_axes])
        work = ir.prod(sizes)
        if isinstance(K, int) and K < 2 * 16 and len(rloops) == 1 and not k.row_local:
            split = self._parallel(work, 2)
            if split is not None:
                return self.gen_outer_split(oloops[0], rloops[0], sub, red_numel, split)
        B = OUTER_BLOCK
        lines = []
        ind = 1
        sp = "  " * ind
        par = None
        if isinstance(work, int):
            if work >= PARALLEL_MIN_WORK and (not isinstance(K, int) or K >= 2 * 16):
                par = ""
        else:
            par = f" if({cexpr(work)} >= {PARALLEL_MIN_WORK})"
        Kc = cexpr(K)
        if par is not None:
            self.omp_api = True
            lines.append(f"{sp}#pragma omp parallel{par}")
            lines.append(f"{sp}{{")
            ind += 1
            sp = "  " * ind
            lines.append(f"{sp}const int64_t nt_ = omp_get_num_threads(), tid_ = omp_get_thread_num();")
            lines.append(f"{sp}const int64_t ch_ = ({Kc} + nt_ - 1) / nt_ + 15 & ~(int64_t)15;")
            lines.append(f"{sp}const int64_t lo_ = tid_ * ch_ < {Kc} ? tid_ * ch_ : {Kc};")
            lines.append(f"{sp}const int64_t hi_ = lo_ + ch_ < {Kc} ? lo_ + ch_ : {Kc};")
        else:
            lines.append(f"{sp}const int64_t lo_ = 0, hi_ = {Kc};")
        lines.append(f"{sp}for (int64_t kb_ = lo_; kb_ < hi_; kb_ += {B}) {{")
        ind += 1
        sp = "  " * ind
        lines.append(f"{sp}const int64_t ke_ = kb_ + {B} < hi_ ? kb_ + {B} : hi_;")
        kloop = f"for (int64_t {lv} = kb_; {lv} < ke_; ++{lv}) {{"
        slot = f"{lv} - kb_"
        locals_ = {}
        passes = sorted({m.pass_ for m in k.members})
        for p in passes:
            pm = [m for m in k.members if m.pass_ == p]
            full = [m for m in pm if m.role == "full"]
            outer = [m for m in pm if m.role == "outer"]
            reds = [m for m in full if isinstance(m.node, ir.Reduction)]
            wf = self._welford_groups(reds)
            leads = list(dict.fromkeys(wf.values()))
            if reds:
                for m in reds:
                    if m not in wf:
                        lines.append(f"{sp}{self._acc_type(m, red_numel)} {self._acc_name(m)}[{B}];")
                for m in leads:
                    T = self._wf_type(m, red_numel)
                    lines.append(f"{sp}{T} wm_{m.node.out.name}[{B}], wq_{m.node.out.name}[{B}];")
                lines.append(f"{sp}#pragma omp simd")
                lines.append(f"{sp}{kloop}")
                for m in reds:
                    if m not in wf:
                        lines.append(f"{sp}  {self._acc_name(m)}[{slot}] = {reduce.identity(m)};")
                for m in leads:
                    n = m.node.out.name
                    lines.append(f"{sp}  wm_{n}[{slot}] = 0; wq_{n}[{slot}] = 0;")
                lines.append(f"{sp}}}")
            if full:
                rl, rind = self._open_loops(rloops, ind, None, None)
                lines += rl
                if leads:
                    # every column has seen the same count: one reciprocal per row
                    T = self._wf_widest(wf)
                    flat = affine_c(self._flat_red_index(in_loop_order=True).subst(sub))
                    lines.append(f"{'  ' * rind}const {T} winv_ = ({T})1 / ({T})({flat} + 1);")
                lines.append(f"{'  ' * rind}#pragma omp simd")
                lines.append(f"{'  ' * rind}{kloop}")
                lines += self._column_body(full, wf, sub, locals_, rind + 1, slot, lv, "acc_", "w")
                lines.append(f"{'  ' * rind}}}")
                rind = _close_loops(lines, rind, len(rloops))
            self._column_totals(reds, wf, sub, locals_, red_numel, slot)
            stores = [m for m in reds if m.node.out.name in k.stored]
            if stores or outer:
                for m in outer:
                    lines.append(f"{sp}{CTYPES[m.node.out.dtype]} loc_{m.node.out.name}[{B}];")
                lines += self._column_epilogue(stores, outer, sub, locals_, ind, kloop, slot, p)
        ind -= 1
        lines.append(f"{'  ' * ind}}}")
        if par is not None:
            ind -= 1
            lines.append(f"{'  ' * ind}}}")
        return lines

    def gen_outer_split(self, oloop, rloop, sub, red_numel, par):
        """:meth:`gen_outer_reduction` for few kept columns (batch-norm
        statistics over 16 channels): the kept extent is too narrow to share
        among threads, so the rows are.  They are cut into ``ROW_CHUNKS``
        chunks, a number fixed here and not taken from the thread count, so
        results are bitwise the same however many threads run: each chunk
        keeps its own partial results (Welford's mean and M2 per chunk),
        and one thread merges the chunks in chunk order, evaluates what
        depends on the totals only (running statistics, the inverse
        standard deviation), and stores it; a pass over the full space that
        reads the totals then runs over the same chunks.  Barriers separate
        the passes.  The totals, the merged chunk results and those
        per-column values live in arrays shared by the threads."""
        k = self.k
        lv, K, _ = oloop
        rv, R, _ = rloop
        NC = ROW_CHUNKS
        self.acc_lanes = NC  # one accumulator per column and chunk
        slot = lv
        passes = sorted({m.pass_ for m in k.members})
        reds = [m for m in k.members if isinstance(m.node, ir.Reduction)]
        wf = self._welford_groups(reds)
        leads = list(dict.fromkeys(wf.values()))
        plain = [m for m in reds if m not in wf]
        sp = "  "
        lines = []
        for m in plain:
            T = self._acc_type(m, red_numel)
            lines.append(f"{sp}{T} {self._acc_name(m)}[{K}], cp_{m.node.out.name}[{NC * K}];")
        for m in leads:
            T = self._wf_type(m, red_numel)
            n = m.node.out.name
            lines.append(f"{sp}{T} wm_{n}[{K}], wq_{n}[{K}], cpm_{n}[{NC * K}], cpq_{n}[{NC * K}];")
        for m in k.members:
            if m.role == "outer":
                lines.append(f"{sp}{CTYPES[m.node.out.dtype]} loc_{m.node.out.name}[{K}];")
        lines.append(f"{sp}const int64_t ch_ = ({cexpr(R)} + {NC - 1}) / {NC};")
        self.omp_api = True
        lines += [f"{sp}#pragma omp parallel{par}", f"{sp}{{"]
        sp = "    "
        lines.append(f"{sp}const int64_t nt_ = omp_get_num_threads(), tid_ = omp_get_thread_num();")
        kloop = f"for (int64_t {lv} = 0; {lv} < {K}; ++{lv}) {{"
        locals_ = {}
        for p in passes:
            pm = [m for m in k.members if m.pass_ == p]
            full = [m for m in pm if m.role == "full"]
            outer = [m for m in pm if m.role == "outer"]
            here = [m for m in full if isinstance(m.node, ir.Reduction)]
            pwf = {m: wf[m] for m in here if m in wf}
            pleads = list(dict.fromkeys(pwf.values()))
            pplain = [m for m in here if m not in wf]
            if full:
                lines.append(f"{sp}for (int64_t c_ = tid_; c_ < {NC}; c_ += nt_) {{")
                lines.append(f"{sp}  const int64_t r0_ = c_ * ch_, r1_ = r0_ + ch_ < {cexpr(R)} ? r0_ + ch_ : {cexpr(R)};")
                cs = sp + "  "
                for m in pplain:
                    lines.append(f"{cs}{self._acc_type(m, red_numel)} ca_{m.node.out.name}[{K}];")
                for m in pleads:
                    T = self._wf_type(m, red_numel)
                    lines.append(f"{cs}{T} cm_{m.node.out.name}[{K}], cq_{m.node.out.name}[{K}];")
                if here:
                    lines += [f"{cs}#pragma omp simd", f"{cs}{kloop}"]
                    lines += [f"{cs}  ca_{m.node.out.name}[{slot}] = {reduce.identity(m)};" for m in pplain]
                    lines += [f"{cs}  cm_{m.node.out.name}[{slot}] = 0; cq_{m.node.out.name}[{slot}] = 0;"
                              for m in pleads]
                    lines.append(f"{cs}}}")
                lines.append(f"{cs}for (int64_t {rv} = r0_; {rv} < r1_; ++{rv}) {{")
                if pleads:
                    T = self._wf_widest(pwf)
                    lines.append(f"{cs}  const {T} winv_ = ({T})1 / ({T})({rv} - r0_ + 1);")
                lines += [f"{cs}  #pragma omp simd", f"{cs}  {kloop}"]
                lines += self._column_body(full, pwf, sub, locals_, len(cs) // 2 + 2, slot, lv,
                                           "ca_", "c")
                lines += [f"{cs}  }}", f"{cs}}}"]
                if here:
                    lines += [f"{cs}#pragma omp simd", f"{cs}{kloop}"]
                    lines += [f"{cs}  cp_{m.node.out.name}[c_ * {K} + {slot}] = ca_{m.node.out.name}[{slot}];"
                              for m in pplain]
                    lines += [f"{cs}  cpm_{n}[c_ * {K} + {slot}] = cm_{n}[{slot}]; "
                              f"cpq_{n}[c_ * {K} + {slot}] = cq_{n}[{slot}];"
                              for n in (m.node.out.name for m in pleads)]
                    lines.append(f"{cs}}}")
                lines.append(f"{sp}}}")
            if not (here or outer):
                if p != passes[-1]:
                    lines.append(f"{sp}#pragma omp barrier")  # later passes read what this one stored
                continue
            lines += [f"{sp}#pragma omp barrier", f"{sp}#pragma omp single", f"{sp}{{"]
            ss = sp + "  "
            if here:
                lines.append(f"{ss}{kloop}")
                for m in pplain:
                    a = f"{self._acc_name(m)}[{slot}]"
                    lines.append(f"{ss}  {a} = {reduce.identity(m)};")
                    lines.append(f"{ss}  for (int64_t c_ = 0; c_ < {NC}; ++c_)")
                    lines += reduce.vec_update(m, f"cp_{m.node.out.name}[c_ * {K} + {slot}]", a, ss + "    ")
                for m in pleads:
                    lines += [f"{ss}  {ln}" for ln in self._wf_merge_chunks(m, red_numel, R, K, slot)]
                lines.append(f"{ss}}}")
            self._column_totals(here, wf, sub, locals_, red_numel, slot)
            stores = [m for m in here if m.node.out.name in k.stored]
            if stores or outer:
                lines += self._column_epilogue(stores, outer, sub, locals_, len(ss) // 2, kloop,
                                               slot, p)
            lines.append(f"{sp}}}")  # the single's closing barrier publishes the totals
        lines.append("  }")
        return lines

    def _column_body(self, full, wf, sub, locals_, ind, slot, lv, acc, wf_prefix):
        """The loop body over one row of the kept columns: members over the
        full space, reductions updating column ``slot`` of their vector
        (``<acc><name>``; Welford's mean and M2 in ``<wf_prefix>m_`` /
        ``<wf_prefix>q_`` arrays, stepped by ``winv_``)."""
        k = self.k
        red_numel = self._red_numel()
        body = Body(self.bufvar, locals_, ind)
        body.inner = (lv,)
        local_keys = []
        sp = "  " * ind
        for m in full:
            v = body.emit(ir.subst_vars(ir.subst_vars(m.node.expr, m.amap), sub))
            n = m.node.out.name
            if m in wf:
                if wf[m] is m:
                    T = self._wf_type(m, red_numel)
                    mean, m2 = f"{wf_prefix}m_{n}[{slot}]", f"{wf_prefix}q_{n}[{slot}]"
                    body.lines += [f"{sp}const {T} wd_{n} = ({T}){v} - {mean};",
                                   f"{sp}{mean} += wd_{n} * winv_;",
                                   f"{sp}{m2} += wd_{n} * (({T}){v} - {mean});"]
            elif isinstance(m.node, ir.Reduction):
                body.lines += reduce.vec_update(m, v, f"{acc}{n}[{slot}]", sp)
            else:
                key = (n, m.node.store.subst(m.amap).subst(sub)._key)
                locals_[key] = v
                local_keys.append(key)
                if n in k.stored:
                    body.lines.append(self._store_line(m, sub, v, ind))
        for key in local_keys:
            del locals_[key]  # register values do not outlive the body
        return body.lines

    def _column_totals(self, reds, wf, sub, locals_, red_numel, slot):
        """Later members read each reduction's total for column ``slot``."""
        for m in reds:
            key = (m.node.out.name, m.node.store.subst(m.amap).subst(sub)._key)
            T = CTYPES[m.node.out.dtype]
            locals_[key] = (self._wf_final(m, wf[m], red_numel, f"[{slot}]") if m in wf
                            else f"(({T}){self._acc_name(m)}[{slot}])")

    def _column_epilogue(self, stores, outer, sub, locals_, ind, kloop, slot, p):
        """One loop over the kept columns after a pass: reduction results
        stored, and the per-column members (``outer``: running statistics, an
        inverse std) computed into ``loc_<name>`` arrays declared by the
        caller, which later passes read."""
        sp = "  " * ind
        lines = [f"{sp}#pragma omp simd", f"{sp}{kloop}"]
        body = Body(self.bufvar, locals_, ind + 1)
        body.n = 1000 + p * 100
        for m in stores:
            v = body.emit(ir.load(m.node.out.name, m.node.store.subst(m.amap).subst(sub),
                                  m.node.out.dtype))
            body.lines.append(self._store_line(m, sub, v, ind + 1))
        for m in outer:
            v = body.emit(ir.subst_vars(ir.subst_vars(m.node.expr, m.amap), sub))
            name = m.node.out.name
            body.lines.append(f"{sp}  loc_{name}[{slot}] = {v};")
            if name in self.k.stored:
                body.lines.append(self._store_line(m, sub, v, ind + 1))
        lines += body.lines
        lines.append(f"{sp}}}")
        for m in outer:
            locals_[(m.node.out.name, m.node.store.subst(m.amap).subst(sub)._key)] = \
                f"loc_{m.node.out.name}[{slot}]"
        return lines

    def _wf_merge_chunks(self, lead, red_numel, R, K, slot):
        """Chan et al.'s merge of the chunks' (mean, M2), in chunk order,
        into column ``slot``'s totals."""
        n = lead.node.out.name
        T = self._wf_type(lead, red_numel)
        return [f"{T} tm_ = 0, tq_ = 0, tn_ = 0;",
                f"for (int64_t c_ = 0; c_ < {ROW_CHUNKS}; ++c_) {{",
                f"  const int64_t r0_ = c_ * ch_, r1_ = r0_ + ch_ < {cexpr(R)} ? r0_ + ch_ : {cexpr(R)};",
                "  if (r1_ <= r0_) continue;",
                f"  const {T} nb_ = ({T})(r1_ - r0_), nt_ = tn_ + nb_;",
                f"  const {T} dl_ = cpm_{n}[c_ * {K} + {slot}] - tm_;",
                "  tm_ += dl_ * (nb_ / nt_);",
                f"  tq_ += cpq_{n}[c_ * {K} + {slot}] + dl_ * dl_ * (tn_ * nb_ / nt_);",
                "  tn_ = nt_;",
                "}",
                f"wm_{n}[{slot}] = tm_; wq_{n}[{slot}] = tq_;"]


def loop_order(k, accesses):
    """The order, outermost first, in which kernel ``k`` loops over its axes.

    Each access votes, for every pair of axes it strides along by known
    amounts, that the one with the larger stride run outside (stores count
    twice); unanimity or no vote keeps the axes' own order.  So kernels over
    row-major buffers keep it, and kernels whose buffers are channels-last
    (N, C, H, W with strides H*W*C, 1, W*C, C) loop N, H, W, C: one
    contiguous run their loop merging collapses into a single loop.
    Arg-reductions keep the axes' order: their first maximum is the first
    in row-major order."""
    n = len(k.full_shape)
    if any(isinstance(m.node, ir.Reduction) and m.node.spec.index for m in k.members):
        return list(range(n))
    coeffs = []
    for acc in accesses:
        cs = [acc.coeff(f"a{ax}") for ax in range(n)]
        coeffs.append([abs(c) if isinstance(c, int) else 0 for c in cs])

    def cmp(a, b):
        votes = 0
        for cs in coeffs:
            ca, cb = cs[a], cs[b]
            if ca and cb and ca != cb:
                votes += 1 if ca < cb else -1
        return votes or (a > b) - (a < b)

    return sorted(range(n), key=functools.cmp_to_key(cmp))


def outer_reduction_layout(k, accesses, order=None):
    """Should reduction kernel ``k`` run with its loops interchanged
    (:meth:`CppKernelGen.gen_outer_reduction`)?  Yes when every reduced axis
    lies outside every kept axis in loop ``order`` (size-1 axes ignored), the
    kept axes form one loop, no member is an arg-reduction, and more accesses
    run contiguously along the innermost kept axis than along the innermost
    reduced one."""
    sizes = k.full_shape
    order = list(range(len(sizes))) if order is None else order
    pos = {a: i for i, a in enumerate(order)}
    live = [a for a in order if not (isinstance(sizes[a], int) and sizes[a] == 1)]
    red = [a for a in live if a in k.red_axes]
    kept = [a for a in live if a not in k.red_axes]
    if not red or not kept or max(pos[a] for a in red) > min(pos[a] for a in kept):
        return False
    if any(isinstance(m.node, ir.Reduction) and m.node.spec.index
           for m in k.members):
        return False
    oloops, _ = _loops(kept, sizes, accesses)
    if len(oloops) != 1:
        return False
    along_kept = sum(1 for a in accesses if _unit(a.coeff(f"a{kept[-1]}")))
    along_red = sum(1 for a in accesses if _unit(a.coeff(f"a{red[-1]}")))
    return along_kept > 0 and along_kept >= along_red


def _unit(c):
    return isinstance(c, int) and abs(c) == 1


def _close_loops(lines: list, ind: int, n: int) -> int:
    """Close ``n`` nested loops opened at indentation ``ind``; returns the
    indentation after them."""
    for _ in range(n):
        ind -= 1
        lines.append(f"{'  ' * ind}}}")
    return ind
