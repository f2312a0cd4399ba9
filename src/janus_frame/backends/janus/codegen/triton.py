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
Axis indices are recovered from the flat program indices by div/mod.  Math
uses ``tl`` core functions (libdevice is unavailable in the interpreter), with
small helpers for tanh/log1p/expm1/pow/round.

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
import math
import os
import re
import threading
import time

import torch

from ....config import config
from .. import ir
from ..build import cache_dir
from ..ir import Affine
from .common import CodegenError, pyexpr
from ..schedule import Kernel

log = logging.getLogger("janus_frame.kernels")
PERSISTENT_MAX = 1024

TL = {torch.float32: "tl.float32", torch.float64: "tl.float64", torch.int64: "tl.int64",
      torch.int32: "tl.int32", torch.int16: "tl.int16", torch.int8: "tl.int8",
      torch.uint8: "tl.uint8", torch.bool: "tl.int1"}

HELPERS = '''
import triton
import triton.language as tl


@triton.jit
def _jf_tanh(x):
    a = tl.abs(x)
    z = x * x
    p = -5.70498872745e-3
    p = p * z + 2.06390887954e-2
    p = p * z - 5.37397155531e-2
    p = p * z + 1.33314422036e-1
    p = p * z - 3.33332819422e-1
    small = x + x * z * p
    e = tl.exp(2.0 * tl.minimum(a, 44.0))
    big = 1.0 - 2.0 / (e + 1.0)
    big = tl.where(x < 0, -big, big)
    small = tl.where(x == 0, x, small)  # odd: tanh(-0) = -0
    return tl.where(x != x, x, tl.where(a < 0.625, small, big))


@triton.jit
def _jf_log1p(x):
    u = 1.0 + x
    d = u - 1.0
    y = tl.log(u) - (d - x) / u
    y = tl.where(d == 0.0, x, y)
    y = tl.where(u == 0.0, -float("inf"), y)
    return tl.where(x == float("inf"), x, y)


@triton.jit
def _jf_expm1(x):
    u = tl.exp(x)
    um = u - 1.0
    l = tl.log(u)
    y = um * x / tl.where(l == 0.0, 1.0, l)
    y = tl.where(u == 1.0, x, y)
    y = tl.where(um == -1.0, -1.0, y)
    y = tl.where(tl.abs(x) > 0.5, um, y)
    return tl.where(x != x, x, y)


@triton.jit
def _jf_pow(a, b):
    b = tl.zeros_like(a) + b  # a python-scalar exponent becomes a tensor
    aa = tl.abs(a)
    r = tl.exp(b * tl.log(aa))
    bt = tl.where(b < 0, tl.ceil(b), tl.floor(b))
    bint = bt == b
    half = b * 0.5
    bodd = bint & ((tl.where(half < 0, tl.ceil(half), tl.floor(half))) != half)
    r = tl.where((a < 0) & bodd, -r, r)
    r = tl.where((a < 0) & (bint == 0) & (aa != float("inf")), float("nan"), r)
    r = tl.where((a != a) | (b != b), float("nan"), r)
    r = tl.where(b == 0, 1.0, r)
    return tl.where(a == 1.0, 1.0, r)


@triton.jit
def _jf_round(x):
    f = tl.floor(x + 0.5)
    tie = (f - x) == 0.5
    odd = (f - 2.0 * tl.floor(f * 0.5)) != 0.0
    return tl.where(tie & odd, f - 1.0, f)
'''


def _c(v, dtype):
    if dtype == torch.bool:
        return "1" if v else "0"
    if dtype.is_floating_point:
        if math.isnan(v):
            s = 'float("nan")'
        elif math.isinf(v):
            s = 'float("inf")' if v > 0 else '-float("inf")'
        else:
            s = repr(float(v))
        return s if dtype == torch.float32 else f"tl.full([1], {s}, {TL[dtype]})"
    v = int(v)
    if dtype == torch.int32 or (-(2 ** 31) < v < 2 ** 31 and dtype != torch.int64):
        return str(v)
    return f"tl.full([1], {v}, tl.int64)"


def op_t(kind, dtype, a, adt):
    T = TL[dtype]
    flt = dtype.is_floating_point
    simple = {"add": "({0} + {1})", "sub": "({0} - {1})", "mul": "({0} * {1})", "neg": "(-{0})",
              "lt": "({0} < {1})", "le": "({0} <= {1})", "gt": "({0} > {1})", "ge": "({0} >= {1})",
              "eq": "({0} == {1})", "ne": "({0} != {1})", "and": "({0} & {1})", "or": "({0} | {1})",
              "xor": "({0} ^ {1})", "not": "({0} == 0)", "bitwise_and": "({0} & {1})",
              "bitwise_or": "({0} | {1})", "bitwise_xor": "({0} ^ {1})", "bitwise_not": "(~{0})",
              "lshift": "({0} << {1})", "rshift": "({0} >> {1})", "where": "tl.where({0}, {1}, {2})",
              "abs": "tl.abs({0})", "exp": "tl.exp({0})", "log": "tl.log({0})", "sqrt": "tl.sqrt({0})",
              "rsqrt": "(1.0 / tl.sqrt({0}))", "sigmoid": "(1.0 / (1.0 + tl.exp(-{0})))",
              "erf": "tl.erf({0})", "tanh": "_jf_tanh({0})", "log1p": "_jf_log1p({0})",
              "expm1": "_jf_expm1({0})", "sin": "tl.sin({0})", "cos": "tl.cos({0})",
              "exp2": "tl.exp2({0})", "log2": "tl.log2({0})", "floor": "tl.floor({0})",
              "ceil": "tl.ceil({0})", "round": "_jf_round({0})", "reciprocal": "(1.0 / {0})",
              "isnan": "({0} != {0})", "isinf": "(tl.abs({0}) == float('inf'))",
              "isfinite": "(tl.abs({0}) < float('inf'))",
              "relu": "tl.where({0} < 0, 0, {0})", "fmax": "tl.maximum({0}, {1})",
              "fmin": "tl.minimum({0}, {1})", "log10": "(tl.log({0}) * 0.4342944819032518)"}
    if kind in simple:
        return simple[kind].format(*a)
    if kind == "div":
        if flt:
            return f"({a[0]} / {a[1]})"
        return f"tl.where({a[1]} == 0, 0, {a[0]} // tl.where({a[1]} == 0, 1, {a[1]}))"
    if kind in ("maximum", "minimum"):
        # NaN from either side; on ties (0.0 vs -0.0) the second operand, as
        # eager's vectorised loops give (its scalar tail gives the first)
        op = ">" if kind == "maximum" else "<"
        if flt:
            return f"tl.where(({a[0]} != {a[0]}) | ({a[0]} {op} {a[1]}), {a[0]}, {a[1]})"
        return f"tl.where({a[0]} {op} {a[1]}, {a[0]}, {a[1]})"
    if kind == "cast":
        if dtype == torch.bool:
            return f"({a[0]} != 0)"
        return f"{a[0]}.to({T})"
    if kind == "sign":
        return f"(({a[0]} > 0).to({T}) - ({a[0]} < 0).to({T}))"
    if kind == "trunc":
        return f"tl.where({a[0]} < 0, tl.ceil({a[0]}), tl.floor({a[0]}))"
    if kind == "pow" and flt:
        return f"_jf_pow({a[0]}, {a[1]})"
    if kind in ("floordiv", "truncdiv") and not flt:
        q = f"({a[0]} // tl.where({a[1]} == 0, 1, {a[1]}))"  # triton // truncates
        if kind == "truncdiv":
            return q
        return f"({q} - ((({a[0]} % tl.where({a[1]} == 0, 1, {a[1]})) != 0) & (({a[0]} < 0) != ({a[1]} < 0))).to({T}))"
    if kind == "remainder" and flt:
        return f"({a[0]} - tl.floor({a[0]} / {a[1]}) * {a[1]})"
    if kind == "fmod" and flt:
        q = f"({a[0]} / {a[1]})"
        return f"({a[0]} - tl.where({q} < 0, tl.ceil({q}), tl.floor({q})) * {a[1]})"
    if kind == "remainder":
        r = f"({a[0]} % tl.where({a[1]} == 0, 1, {a[1]}))"
        return f"tl.where(({r} != 0) & (({r} < 0) != ({a[1]} < 0)), {r} + {a[1]}, {r})"
    raise CodegenError(f"no Triton lowering for {kind} on {dtype}")


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
        parts.append(pyexpr(a.offset))
        return "(" + " + ".join(parts) + ")"


    def _one(self, x):
        k = x.kind
        if k == "const":
            return self.tmp(_c(x.aux, x.dtype))
        if k == "sym":
            return pyexpr(x.aux)
        if k == "index":
            return self.tmp(self.idx(x.aux))
        if k in ("load", "mload"):
            buf, a = x.aux
            loc = self.locals.get((buf, ir.index_key(a, self._ids)))
            if loc is not None:
                return loc
            mask = self.mask
            if k == "mload":
                mask = f"({mask}) & ({self._ids[id(x.args[0])]})"
            return self.tmp(f"tl.load({self.ptr[buf]} + {self.idx(a)}, mask={mask}, other=0)")
        args = [self._ids[id(a)] for a in x.args]
        c = x.args[0]
        if k in ("maximum", "minimum") and c.kind == "const" and c.aux != c.aux:
            return self.tmp(f"({args[0]} + 0 * {args[1]})")  # a NaN bound: NaN everywhere
        if k in ("maximum", "minimum") and c.kind == "const":
            # a clamp's constant bound first: no NaN to test for (and a scalar's
            # NaN test is a plain bool, which a tensor cannot be or-ed with)
            op = ">" if k == "maximum" else "<"
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

    if not k.is_reduction:
        b = body_for("xmask")
        for m in k.members:
            e = ir.subst_vars(m.node.expr, m.amap)
            v = b.emit(e)
            st = m.node.store.subst(m.amap)
            locals_[(m.node.out.name, st._key)] = v
            if m.node.out.name in k.stored:
                b.lines.append(f"    tl.store({ptr[m.node.out.name]} + {b.idx(st)}, {v}, mask=xmask)")
        L += finish(b)
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
                    init = _init(m)
                    L.append(f"    acc_{m.node.out.name} = tl.full([XBLOCK, RBLOCK], {init}, {TL[_accdt(m)]})")
                    if m.node.rtype in ("wmean", "wm2"):  # per-lane Welford: M2 and count
                        L.append(f"    q_{m.node.out.name} = tl.zeros([XBLOCK, RBLOCK], {TL[_accdt(m)]})")
                        L.append(f"    c_{m.node.out.name} = tl.zeros([XBLOCK, RBLOCK], {TL[_accdt(m)]})")
                    if m.node.expr.dtype.is_floating_point and m.node.rtype in ("max", "min"):
                        L.append(f"    nan_{m.node.out.name} = tl.zeros([XBLOCK, RBLOCK], tl.int32)")
                    if m.node.rtype in ("argmax", "argmin"):
                        raise CodegenError("looped arg-reduction")
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
                b = body_for("xmask")
                for m in outer_m:
                    e = ir.subst_vars(m.node.expr, m.amap)
                    v = b.emit(e)
                    st = m.node.store.subst(m.amap)
                    locals_[(m.node.out.name, st._key)] = v
                    if m.node.out.name in k.stored:
                        b.lines.append(f"    tl.store({ptr[m.node.out.name]} + {b.idx(st)}, {v}, mask=xmask)")
                L += finish(b)
    xb, rb, nw = configs[0]
    grid = f"triton.cdiv({pyexpr(X)}, XBLOCK)"
    launch = [f"def launch({', '.join(bufs + list(syms))}, XBLOCK={xb}, RBLOCK={rb}, num_warps={nw}):",
              f"    {k.name}[({grid},)]({', '.join(bufs + list(syms))}, XBLOCK=XBLOCK, "
              f"RBLOCK=RBLOCK, num_warps=num_warps)"]
    src = HELPERS + "\n\n" + "\n".join(L) + "\n\n\n" + "\n".join(launch) + "\n"
    # an input it reads and updates in place: a second run would read what the
    # first wrote (results stored over a library call's output, the other such
    # case, are planned for C kernels only: schedule._find_reuse)
    written = {m.node.out.name for m in k.members if m.node.out.name in k.stored}
    read = {b for m in k.members for b in m.node.reads()}
    clobbered = {b for b in written & read if sched.prog.buffers[b].kind == "input"}
    body = "\n".join(L[2:])  # (after the signature, which names every symbol)
    sizes = [i for i, s in enumerate(syms) if re.search(rf"\b{re.escape(s)}\b", body)]
    return src, bufs, configs, not clobbered, sizes


def _accdt(m):
    return torch.int32 if m.node.rtype in ("any", "all") else m.node.expr.dtype


def _init(m):
    rt = m.node.rtype
    d = m.node.expr.dtype
    if rt in ("sum", "any", "wmean", "wm2"):
        return "0"
    if rt == "all":
        return "1"
    if rt == "prod":
        return "1"
    if rt in ("max", "argmax"):
        v = ir.dtype_min(d)
    else:
        v = ir.dtype_max(d)
    if isinstance(v, float):
        return 'float("inf")' if v > 0 else '-float("inf")'
    return str(int(v))


def _reduce_lines(m, v, persistent, R):
    n = m.node.out.name
    rt = m.node.rtype
    flt = m.node.expr.dtype.is_floating_point
    mk = "xmask & rmask"
    if rt in ("wmean", "wm2"):
        if persistent:  # the row is in registers: exact two-pass
            out = [f"    red_{n} = tl.sum(tl.where({mk}, {v}, 0), 1)[:, None] / {R}"]
            if rt == "wm2":
                out.append(f"    wd_{n} = tl.where({mk}, {v} - red_{n}, 0)")
                out.append(f"    red_{n} = tl.sum(wd_{n} * wd_{n}, 1)[:, None]")
            return out
        return [f"    c_{n} = c_{n} + tl.where({mk}, 1.0, 0.0)",
                f"    wd_{n} = {v} - acc_{n}",
                f"    acc_{n} = tl.where({mk}, acc_{n} + wd_{n} / tl.maximum(c_{n}, 1.0), acc_{n})",
                f"    q_{n} = tl.where({mk}, q_{n} + wd_{n} * ({v} - acc_{n}), q_{n})"]
    if persistent:
        if rt == "sum":
            return [f"    red_{n} = tl.sum(tl.where({mk}, {v}, 0), 1)[:, None]"]
        if rt in ("max", "min"):
            out = [f"    red_{n} = tl.{rt}(tl.where({mk}, {v}, {_init(m)}), 1)[:, None]"]
            if flt:
                out.append(f"    red_{n} = tl.where(tl.max(tl.where({mk} & ({v} != {v}), 1, 0), 1)[:, None] > 0, float('nan'), red_{n})")
            return out
        if rt in ("argmax", "argmin"):
            return [f"    red_{n} = tl.{rt}(tl.where({mk}, {v}, {_init(m)}), 1)[:, None].to(tl.int64)"]
        if rt == "any":
            return [f"    red_{n} = tl.max(tl.where({mk}, ({v} != 0).to(tl.int32), 0), 1)[:, None] > 0"]
        if rt == "all":
            return [f"    red_{n} = tl.min(tl.where({mk}, ({v} != 0).to(tl.int32), 1), 1)[:, None] > 0"]
        raise CodegenError(f"Triton reduction {rt}")
    if rt == "sum":
        return [f"    acc_{n} = acc_{n} + tl.where({mk}, {v}, 0)"]
    if rt in ("max", "min"):
        op = ">" if rt == "max" else "<"
        out = [f"    acc_{n} = tl.where({mk} & ({v} {op} acc_{n}), {v}, acc_{n})"]
        if flt:
            out.append(f"    nan_{n} = nan_{n} | tl.where({mk} & ({v} != {v}), 1, 0)")
        return out
    if rt == "any":
        return [f"    acc_{n} = acc_{n} | tl.where({mk}, ({v} != 0).to(tl.int32), 0)"]
    if rt == "all":
        return [f"    acc_{n} = acc_{n} & tl.where({mk}, ({v} != 0).to(tl.int32), 1)"]
    raise CodegenError(f"Triton looped reduction {rt}")


def _final_looped(m):
    n = m.node.out.name
    rt = m.node.rtype
    if rt in ("wmean", "wm2"):  # lanes merged (Chan et al.)
        out = [f"    wt_{n} = tl.sum(c_{n}, 1)[:, None]",
               f"    red_{n} = tl.sum(acc_{n} * c_{n}, 1)[:, None] / wt_{n}"]
        if rt == "wm2":
            out.append(f"    red_{n} = tl.sum(q_{n} + c_{n} * (acc_{n} - red_{n}) * (acc_{n} - red_{n}), 1)[:, None]")
        return out
    if rt == "sum":
        return [f"    red_{n} = tl.sum(acc_{n}, 1)[:, None]"]
    if rt in ("max", "min"):
        out = [f"    red_{n} = tl.{rt}(acc_{n}, 1)[:, None]"]
        if m.node.expr.dtype.is_floating_point:
            out.append(f"    red_{n} = tl.where(tl.max(nan_{n}, 1)[:, None] > 0, float('nan'), red_{n})")
        return out
    if rt == "any":
        return [f"    red_{n} = tl.max(acc_{n}, 1)[:, None] > 0"]
    return [f"    red_{n} = tl.min(acc_{n}, 1)[:, None] > 0"]


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


_ = Affine
