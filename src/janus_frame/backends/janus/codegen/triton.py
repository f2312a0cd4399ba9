"""Triton code generation (CUDA tensors; CPU tensors under TRITON_INTERPRET=1).

In: a :class:`schedule.Scheduler` and the backend's options.  Out:
``generate_triton(sched, options)`` ->
{kernel name: :class:`TritonKernel`}; each holds its module source (one
``@triton.jit`` kernel plus a ``launch`` function computing the grid) and the
buffer names it takes, in order.

Kernel shapes: a pointwise kernel is a 1-D grid over ``XBLOCK`` elements of
the flattened iteration space.  A reduction kernel gives each program
``XBLOCK`` rows; when the reduced extent fits one block (``<= 1024``, static)
it is a *persistent* row reduction (the row tile stays in registers through
every pass), otherwise a *looped* reduction (one ``for`` over the row per
pass, block accumulators, values of earlier passes re-read from memory).
Axis indices are recovered from the flat program indices by div/mod.  Ops
and math helpers are printed by :mod:`codegen.triton_ops`; reductions follow
:data:`ir.REDUCTIONS` (a looped arg-reduction keeps each lane's first
extremum and its position, and the lanes are merged at the end of the loop).

Block sizes: each kernel has a short list of (XBLOCK, RBLOCK, num_warps)
configurations, the first its default (:func:`_configs`).  On CUDA tensors the
first call for given values of the dynamic sizes it reads times every
configuration and keeps the fastest, written next to the kernel's module in
the disk cache (``<hash>.tune.json``, per device name and sizes), so other
processes start tuned.  Kernels that overwrite memory they read (in-place
updates) are never re-run for timing and keep the default; the
``triton_autotune`` option (``JANUS_FRAME_TRITON_AUTOTUNE``), read on a
kernel's first call for given sizes: ``auto`` (CUDA only), ``always`` (also
the interpreter), ``off``.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import re
import threading
import time

import torch

from ....config import config
from .. import ir
from ..build import cache_dir
from ..ir import NaN, Op, Reduce
from .common import pyexpr
from .triton_ops import HELPERS, TL, const_t, helpers_for, op_t
from ..schedule import Kernel

log = logging.getLogger("janus_frame.kernels")
PERSISTENT_MAX = 1024

def _next_pow2(n):
    return 1 << max(0, (int(n) - 1).bit_length())


class TBody(ir.CSEEmitter):
    def __init__(self, ptr, locals_, sub_index):
        self.lines = []
        self.memo = {}
        self.ptr = ptr
        self.locals = locals_
        self.sub_index = sub_index  # Affine -> python text over axis index tensors
        self.n = 0
        self.mask = None

    def tmp(self, text):
        name = f"t{self.n}"
        self.n += 1
        self.lines.append(f"    {name} = {text}")
        return name

    def idx(self, a):
        parts = []
        for v, c in a.terms:
            name = self.sub_index(v) if isinstance(v, str) else self._ids[id(v)]
            parts.append(name if (isinstance(c, int) and c == 1) else f"{pyexpr(c)} * {name}")
        if not parts:
            # one element for every row of the block (a 0-d result, a 0-d
            # input): the pointer must still be a block, like the value
            parts.append("0 * xi")
        parts.append(pyexpr(a.offset))
        return "(" + " + ".join(parts) + ")"


    def _one(self, x):
        k = x.kind
        if k == Op.CONST:
            return self.tmp(const_t(x.aux, x.dtype))
        if k == Op.SYM:
            return pyexpr(x.aux)
        if k == Op.INDEX:
            return self.tmp(self.idx(x.aux))
        if k in (Op.LOAD, Op.MLOAD):
            buf, a = x.aux
            loc = self.locals.get((buf, ir.index_key(a, self._ids)))
            if loc is not None:
                return loc
            mask = self.mask
            if k == Op.MLOAD:
                mask = f"({mask}) & ({self._ids[id(x.args[0])]})"
            return self.tmp(f"tl.load({self.ptr[buf]} + {self.idx(a)}, mask={mask}, other=0)")
        args = [self._ids[id(a)] for a in x.args]
        c = x.args[0]
        if k in (Op.MAXIMUM, Op.MINIMUM) and c.kind == Op.CONST and c.aux != c.aux:
            return self.tmp(f"({args[0]} + 0 * {args[1]})")  # a NaN bound: NaN everywhere
        if k in (Op.MAXIMUM, Op.MINIMUM) and c.kind == Op.CONST:
            # a clamp's constant bound first: no NaN to test for (and a scalar's
            # NaN test is a plain bool, which a tensor cannot be or-ed with)
            op = ">" if k == Op.MAXIMUM else "<"
            return self.tmp(f"tl.where({args[0]} {op} {args[1]}, {args[0]}, {args[1]})")
        return self.tmp(op_t(k, x.dtype, args, [a.dtype for a in x.args]))


class TritonKernel:
    """One generated kernel: call it with its buffers (in ``buffers`` order)
    and the graph's size symbols.  ``configs``: its (XBLOCK, RBLOCK,
    num_warps) choices, default first; ``rerunnable``: whether it may run
    more than once on the same arguments (it overwrites no memory that
    existed before it and that it reads); ``sizes``: which size symbols
    its code reads (the key of its tuned choices); ``options``: the
    backend's (``triton_autotune``)."""

    def __init__(self, name, source, buffers, module_path, configs=((1024, 1, 4),),
                 rerunnable=False, sizes=(), options=None):
        self.name = name
        self.source = source
        self.buffers = buffers
        self.path = module_path
        self.configs = [tuple(c) for c in configs]
        self.rerunnable = rerunnable
        self.sizes = tuple(sizes)  # positions, among the size symbols, of those it reads
        self._launch = None
        self._chosen = {}  # values of those symbols -> config
        self.options = options

    def __call__(self, *args):
        if self._launch is None:
            spec = importlib.util.spec_from_file_location(f"janus_triton_{self.name}_{os.path.basename(self.path)[:12]}", self.path)
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            self._launch = mod.launch
        syms = args[len(self.buffers):]
        key = tuple(syms[i] for i in self.sizes)
        cfg = self._chosen.get(key)
        if cfg is None:
            cfg = self._chosen[key] = self._choose(args, key)
        xb, rb, nw = cfg
        return self._launch(*args, XBLOCK=xb, RBLOCK=rb, num_warps=nw)

    def _choose(self, args, key):
        mode = (self.options or config).triton_autotune
        device = next((a.device for a in args if isinstance(a, torch.Tensor)), None)
        if len(self.configs) == 1 or not self.rerunnable or mode == "off" or device is None \
                or (mode == "auto" and device.type != "cuda"):
            return self.configs[0]
        dev = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
        entry = f"{dev}|{','.join(str(int(k)) for k in key)}"
        tune_path = self.path[:-3] + ".tune.json"
        saved = _read_json(tune_path).get(entry)
        if isinstance(saved, list) and tuple(saved) in self.configs:
            return tuple(saved)
        times = [(measure(self._launch, args, c, device), i) for i, c in enumerate(self.configs)]
        best = self.configs[min(times)[1]]
        log.debug("triton kernel %s %s: %s", self.name, entry,
                  ", ".join(f"{c} {t * 1e6:.1f} us" for (t, _), c in zip(times, self.configs)))
        known = _read_json(tune_path)  # another process may have added sizes meanwhile
        known[entry] = list(best)
        tmp = f"{tune_path}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            with open(tmp, "w") as f:
                json.dump(known, f)
            os.replace(tmp, tune_path)
        except OSError as e:  # a read-only cache: tuned for this process only
            log.debug("triton tuning of %s not saved: %s", self.name, e)
            try:
                os.unlink(tmp)
            except OSError:
                pass
        return best


def measure(launch, args, cfg, device, reps=3) -> float:
    """Seconds per launch of ``cfg`` (best of ``reps``, after one call that
    compiles it)."""
    xb, rb, nw = cfg
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    launch(*args, XBLOCK=xb, RBLOCK=rb, num_warps=nw)
    best = float("inf")
    for _ in range(reps):
        sync()
        t = time.perf_counter()
        launch(*args, XBLOCK=xb, RBLOCK=rb, num_warps=nw)
        sync()
        best = min(best, time.perf_counter() - t)
    return best


def _read_json(path):
    try:
        with open(path) as f:
            d = json.load(f)
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}  # absent, or torn by a crashed writer: tune again


def _configs(k, X, R, persistent):
    """(XBLOCK, RBLOCK, num_warps) candidates, the default first: rows per
    program for row reductions (the whole row in one block when persistent),
    row block widths for looped ones, elements per program for pointwise."""
    p2x = _next_pow2(X) if isinstance(X, int) else None
    if k.is_reduction:
        if persistent:
            rb = _next_pow2(R)
            xbs = [max(1, min(p2x or 8, max(1, 1024 // rb))), 1, max(1, min(p2x or 8, 4096 // rb))]
            out = [(x, rb, 4 if x * rb <= 2048 else 8) for x in xbs]
        else:
            xb = max(1, min(p2x or 8, 4))
            out = [(xb, 256, 4), (1, 1024, 4), (max(1, min(p2x or 8, 8)), 128, 4)]
    else:
        xb = min(1024, p2x) if p2x else 1024
        out = [(xb, 1, 4), (min(xb, 256), 1, 4), (min(4096, p2x) if p2x else 4096, 1, 8)]
    return list(dict.fromkeys(out))


def _axis_text(var_axes, sizes, flat, prefix):
    """Python lines recovering axis indices from a flat index by div/mod."""
    lines = []
    names = {}
    stride = 1
    for ax in reversed(var_axes):
        s = sizes[ax]
        nm = f"{prefix}{ax}"
        lines.append(f"    {nm} = ({flat} // {pyexpr(stride)}) % {pyexpr(s)}")
        names[f"a{ax}"] = nm
        stride = stride * s
    return lines, names


def gen_kernel(sched, k: Kernel, syms):
    local_bufs = {m.node.out.name for m in k.members if m.node.out.name not in k.stored}
    bufs = []
    for m in k.members:
        names = set(m.node.reads()) - local_bufs
        if m.node.out.name in k.stored:
            names.add(m.node.out.name)
        for b in sorted(names):
            if b not in bufs:
                bufs.append(b)
    ptr = {b: f"p_{b}" for b in bufs}
    sizes = k.full_shape
    outer = k.outer_axes
    red = list(k.red_axes or [])
    X = ir.prod([sizes[a] for a in outer])
    R = ir.prod([sizes[a] for a in red])
    persistent = not k.is_reduction or (isinstance(R, int) and R <= PERSISTENT_MAX)
    configs = _configs(k, X, R, persistent)
    params = [ptr[b] for b in bufs] + list(syms)
    L = ["@triton.jit", f"def {k.name}({', '.join(params + ['XBLOCK: tl.constexpr', 'RBLOCK: tl.constexpr'])}):"]
    if k.is_reduction:
        L.append("    xi = tl.program_id(0) * XBLOCK + tl.arange(0, XBLOCK)[:, None]")
    else:
        L.append("    xi = tl.program_id(0) * XBLOCK + tl.arange(0, XBLOCK)")
    L.append(f"    xmask = xi < {pyexpr(X)}")
    ol, onames = _axis_text(outer, sizes, "xi", "x")
    L += ol
    rnames = {}
    for a in range(len(sizes)):
        if isinstance(sizes[a], int) and sizes[a] == 1:
            onames[f"a{a}"] = "0"

    def sub_index(v):
        return onames.get(v) or rnames[v]

    locals_ = {}
    rl_lines, rnames_tmp = _axis_text(red, sizes, "ri", "r")
    rnames.update(rnames_tmp)
    for a in red:
        if isinstance(sizes[a], int) and sizes[a] == 1:
            rnames[f"a{a}"] = "0"
    passes = sorted({m.pass_ for m in k.members})
    tcount = [0]

    def body_for(mask):
        b = TBody(ptr, locals_, sub_index)
        b.mask = mask
        b.n = tcount[0]
        return b

    def finish(b):
        tcount[0] = b.n
        return b.lines

    def elementwise(members):
        """Lines of members computed once per element of the row block
        (pointwise kernels) or once per row (outer members)."""
        b = body_for("xmask")
        for m in members:
            v = b.emit(ir.subst_vars(m.node.expr, m.amap))
            st = m.node.store.subst(m.amap)
            locals_[(m.node.out.name, st._key)] = v
            if m.node.out.name in k.stored:
                b.lines.append(f"    tl.store({ptr[m.node.out.name]} + {b.idx(st)}, {v}, mask=xmask)")
        return finish(b)

    if not k.is_reduction:
        L += elementwise(k.members)
    else:
        if persistent:
            L.append("    ri = tl.arange(0, RBLOCK)[None, :]")
            L.append(f"    rmask = ri < {pyexpr(R)}")
            L += rl_lines
        for p in passes:
            pm = [m for m in k.members if m.pass_ == p]
            full = [m for m in pm if m.role == "full"]
            outer_m = [m for m in pm if m.role == "outer"]
            reds = [m for m in full if isinstance(m.node, ir.Reduction)]
            ind = "    "
            if full and not persistent:
                for m in reds:
                    L += _accumulators(m)
                L.append(f"    for roff in range(0, {pyexpr(R)}, RBLOCK):")
                L.append("        ri = roff + tl.arange(0, RBLOCK)[None, :]")
                L.append(f"        rmask = ri < {pyexpr(R)}")
                L += ["    " + ln for ln in rl_lines]
                ind = "        "
            if full:
                b = body_for("xmask & rmask")
                new_locals = []
                for m in full:
                    e = ir.subst_vars(m.node.expr, m.amap)
                    v = b.emit(e)
                    name = m.node.out.name
                    if isinstance(m.node, ir.Reduction):
                        b.lines += _reduce_lines(m, v, persistent, pyexpr(R))
                    else:
                        st = m.node.store.subst(m.amap)
                        key = (name, st._key)
                        locals_[key] = v
                        new_locals.append(key)
                        if name in k.stored:
                            b.lines.append(f"    tl.store({ptr[name]} + {b.idx(st)}, {v}, mask=xmask & rmask)")
                lines = finish(b)
                L += [ind[4:] + ln for ln in lines] if ind != "    " else lines
                if not persistent:
                    for key in new_locals:
                        del locals_[key]
                for m in reds:
                    name = m.node.out.name
                    if not persistent:
                        L += _final_looped(m)
                    st = m.node.store.subst(m.amap)
                    locals_[(name, st._key)] = f"red_{name}"
                    if name in k.stored:
                        tb = body_for("xmask")
                        L.append(f"    tl.store({ptr[name]} + {tb.idx(st)}, red_{name}, mask=xmask)")
            if outer_m:
                L += elementwise(outer_m)
    xb, rb, nw = configs[0]
    grid = f"triton.cdiv({pyexpr(X)}, XBLOCK)"
    launch = [f"def launch({', '.join(bufs + list(syms))}, XBLOCK={xb}, RBLOCK={rb}, num_warps={nw}):",
              f"    {k.name}[({grid},)]({', '.join(bufs + list(syms))}, XBLOCK=XBLOCK, "
              f"RBLOCK=RBLOCK, num_warps=num_warps)"]
    src = HELPERS + helpers_for("\n".join(L)) + "\n\n" + "\n".join(L) + "\n\n\n" + "\n".join(launch) + "\n"
    # an input it reads and updates in place: a second run would read what the
    # first wrote (results stored over a library call's output, the other such
    # case, are planned for C kernels only: schedule._find_reuse)
    written = {m.node.out.name for m in k.members if m.node.out.name in k.stored}
    read = {b for m in k.members for b in m.node.reads()}
    clobbered = {b for b in written & read if sched.prog.buffers[b].kind == "input"}
    body = "\n".join(L[2:])  # (after the signature, which names every symbol)
    sizes = [i for i, s in enumerate(syms) if re.search(rf"\b{re.escape(s)}\b", body)]
    return src, bufs, configs, not clobbered, sizes


# Triton renderings of the combine ops of ir.REDUCTIONS: over a row block
# at once (persistent kernels, and the lanes of a looped one at its end) ...
_ROW = {Op.ADD: "tl.sum({0}, 1)", Op.MUL: "tl.reduce({0}, 1, _jf_mul)", Op.MAXIMUM: "tl.max({0}, 1)",
        Op.MINIMUM: "tl.min({0}, 1)", Op.OR: "tl.max({0}, 1)", Op.AND: "tl.min({0}, 1)"}
# ... and folding one block into per-lane accumulators (looped kernels)
_FOLD = {Op.ADD: "+", Op.MUL: "*", Op.OR: "|", Op.AND: "&"}
_CMP = {Op.MAXIMUM: ">", Op.MINIMUM: "<"}


def _accdt(m):
    return torch.int32 if ir.REDUCTIONS[m.node.rtype].nan is NaN.TRUTH else m.node.expr.dtype


def _init(m):
    """The identity of ``m``'s reduction as Triton source."""
    v = ir.REDUCTIONS[m.node.rtype].identity_value(m.node.expr.dtype)
    if isinstance(v, float):
        return 'float("inf")' if v > 0 else '-float("inf")'
    return str(int(v))


def _operand(m, v):
    """``v`` as the reduction folds it: truth values as 0/1 ints."""
    return f"({v} != 0).to(tl.int32)" if ir.REDUCTIONS[m.node.rtype].nan is NaN.TRUTH else v


def _accumulators(m):
    """Per-lane accumulators of a looped reduction, before its loop."""
    n = m.node.out.name
    kind = ir.REDUCTIONS[m.node.rtype]
    T = TL[_accdt(m)]
    out = [f"    acc_{n} = tl.full([XBLOCK, RBLOCK], {_init(m)}, {T})"]
    if kind.welford:  # per-lane Welford: M2 and count
        out.append(f"    q_{n} = tl.zeros([XBLOCK, RBLOCK], {T})")
        out.append(f"    c_{n} = tl.zeros([XBLOCK, RBLOCK], {T})")
    if kind.nan is NaN.STICKY and m.node.expr.dtype.is_floating_point:
        out.append(f"    nan_{n} = tl.zeros([XBLOCK, RBLOCK], tl.int32)")
    if kind.index:  # where each lane's extremum is
        out.append(f"    ai_{n} = tl.zeros([XBLOCK, RBLOCK], tl.int64)")
    return out


def _reduce_lines(m, v, persistent, R):
    """Reduce ``v`` (a row block) into ``red_<name>`` (persistent), or fold
    it into the lane accumulators (looped; :func:`_final_looped` ends it)."""
    n = m.node.out.name
    kind = ir.REDUCTIONS[m.node.rtype]
    flt = m.node.expr.dtype.is_floating_point
    mk = "xmask & rmask"
    if kind.welford:
        if persistent:  # the row is in registers: exact two-pass
            out = [f"    red_{n} = tl.sum(tl.where({mk}, {v}, 0), 1)[:, None] / {R}"]
            if m.node.rtype == Reduce.WM2:
                out.append(f"    wd_{n} = tl.where({mk}, {v} - red_{n}, 0)")
                out.append(f"    red_{n} = tl.sum(wd_{n} * wd_{n}, 1)[:, None]")
            return out
        return [f"    c_{n} = c_{n} + tl.where({mk}, 1.0, 0.0)",
                f"    wd_{n} = {v} - acc_{n}",
                f"    acc_{n} = tl.where({mk}, acc_{n} + wd_{n} / tl.maximum(c_{n}, 1.0), acc_{n})",
                f"    q_{n} = tl.where({mk}, q_{n} + wd_{n} * ({v} - acc_{n}), q_{n})"]
    masked = f"tl.where({mk}, {_operand(m, v)}, {_init(m)})"
    if persistent:
        if kind.index:
            return [f"    red_{n} = {_arg_extremum(m, v, mk, 'ri')}"]
        out = [f"    red_{n} = {_ROW[kind.combine].format(masked)}[:, None]"
               + (" > 0" if kind.nan is NaN.TRUTH else "")]
        if kind.nan is NaN.STICKY and flt:
            out.append(f"    red_{n} = tl.where(tl.max(tl.where({mk} & ({v} != {v}), 1, 0), 1)[:, None] > 0, "
                       f"float('nan'), red_{n})")
        return out
    if kind.index:
        # strictly better only: a lane keeps its first extremum (or first NaN)
        nan = f" | (({v} != {v}) & (acc_{n} == acc_{n}))" if flt else ""
        return [f"    t_{n} = {mk} & (({v} {_CMP[kind.combine]} acc_{n}){nan})",
                f"    acc_{n} = tl.where(t_{n}, {v}, acc_{n})",
                f"    ai_{n} = tl.where(t_{n}, ri, ai_{n})"]
    if kind.combine in _CMP:
        out = [f"    acc_{n} = tl.where({mk} & ({v} {_CMP[kind.combine]} acc_{n}), {v}, acc_{n})"]
        if kind.nan is NaN.STICKY and flt:
            out.append(f"    nan_{n} = nan_{n} | tl.where({mk} & ({v} != {v}), 1, 0)")
        return out
    return [f"    acc_{n} = acc_{n} {_FOLD[kind.combine]} {masked}"]


def _arg_extremum(m, vals, valid, pos):
    """The first position, along the row, of the extremum of ``vals`` (of
    its first NaN if it has one), among the ``valid`` lanes (None: all);
    ``pos``: each lane's position.  (tl.argmax/argmin do not keep the first
    NaN, which the table's NaN rule asks for.)"""
    kind = ir.REDUCTIONS[m.node.rtype]
    flt = m.node.expr.dtype.is_floating_point
    where = "" if valid is None else f"{valid} & "
    ok = " & ".join(c for c in (valid, f"({vals} == {vals})" if flt else None) if c)
    best = _ROW[kind.combine].format(f"tl.where({ok}, {vals}, {_init(m)})" if ok else vals)
    hit = f"{where}({vals} == {best}[:, None])"
    if flt:
        nan = f"{where}({vals} != {vals})"
        hit = f"tl.where(tl.max(({nan}).to(tl.int32), 1)[:, None] > 0, {nan}, {hit})"
    return f"tl.min(tl.where({hit}, {pos}, {const_t(2 ** 63 - 1, torch.int64)}), 1)[:, None]"


def _final_looped(m):
    """``red_<name>`` from the lane accumulators after a looped reduction."""
    n = m.node.out.name
    kind = ir.REDUCTIONS[m.node.rtype]
    flt = m.node.expr.dtype.is_floating_point
    if kind.welford:  # lanes merged (Chan et al.)
        out = [f"    wt_{n} = tl.sum(c_{n}, 1)[:, None]",
               f"    red_{n} = tl.sum(acc_{n} * c_{n}, 1)[:, None] / wt_{n}"]
        if m.node.rtype == Reduce.WM2:
            out.append(f"    red_{n} = tl.sum(q_{n} + c_{n} * (acc_{n} - red_{n}) * (acc_{n} - red_{n}), 1)[:, None]")
        return out
    if kind.index:  # each lane holds its first extremum and where it was
        return [f"    red_{n} = {_arg_extremum(m, f'acc_{n}', None, f'ai_{n}')}"]
    out = [f"    red_{n} = {_ROW[kind.combine].format(f'acc_{n}')}[:, None]"
           + (" > 0" if kind.nan is NaN.TRUTH else "")]
    if kind.nan is NaN.STICKY and flt:
        out.append(f"    red_{n} = tl.where(tl.max(nan_{n}, 1)[:, None] > 0, float('nan'), red_{n})")
    return out


def generate_triton(sched, options=None):
    """Kernels for every Kernel step; temps become separate tensors."""
    prog = sched.prog
    for b in list(sched.arena):
        prog.buffers[b].kind = "ttemp"
    sched.arena = {}
    syms = [str(s) for s, _ in prog.symbols]
    out = {}
    d = os.path.join(cache_dir(options), "triton")
    os.makedirs(d, exist_ok=True)
    for k in sched.kernels:
        src, bufs, configs, rerunnable, sizes = gen_kernel(sched, k, syms)
        key = hashlib.sha256(src.encode()).hexdigest()[:32]
        path = os.path.join(d, f"{key}.py")
        if not os.path.exists(path):
            tmp = f"{path}.{os.getpid()}.tmp"
            with open(tmp, "w") as f:
                f.write(src)
            os.replace(tmp, path)
        log.debug("triton kernel %s:\n%s", k.name, src)
        out[k.name] = TritonKernel(k.name, src, bufs, path, configs, rerunnable, sizes, options)
    return out

