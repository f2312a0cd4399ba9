"""The per-graph runtime wrapper.

In: a scheduled program, the C segment list and a pending :class:`Build`.
Out: :class:`CompiledGraph`, a callable taking the graph's positional inputs
and returning its outputs as a tuple.  Its body is one generated Python
function: it reads size symbols from the inputs (a data-dependent size off
its library call's result, right after the call), allocates outputs (those
of data-dependent size just before their first writer) and one workspace
tensor, and per segment makes a single ctypes call with
pre-declared argument types; extern ops are called directly between segments;
tensors handed to them are allocated just before their first use and every
temporary or library result is dropped after its last (:func:`_lifetimes`).
Nothing is decided per call.
"""
from __future__ import annotations

import ctypes
import logging
import re
import sys

import sympy
import torch

from .. import ir
from ..codegen.common import pyexpr
from ..schedule import Kernel
from .untraced import not_traced

log = logging.getLogger("janus_frame.kernels")


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
malloc_state = "untouched"  # then "pinned", "partly pinned", "disabled" or "unavailable"


def tune_malloc(enabled: bool | None = None) -> str:
    """Pin glibc malloc's mmap and trim thresholds at the ceilings of its own
    dynamic adjustment (32 MiB, 64 MiB), once per process; returns what was
    done.

    A training step frees several MiB of activations and gradients and
    allocates them again in the next step.  With glibc's defaults, whether that
    memory stays in the heap depends on where the last long-lived small object
    landed: if the freed block ends up at the top of the heap it is trimmed
    (returned to the OS) and every page is faulted in again next step.  Which
    case a process gets is decided by allocation order at start-up, so the same
    LSTM step ran at 21 ms in some processes and 36 ms in others (the slow
    ones spent ~15% of their time in the kernel's page-fault path under MKL's
    sgemm writing fresh output pages).  Fixed thresholds make it deterministic.
    The cost is that up to 64 MiB of free heap at the top may stay mapped.
    Eager code in the same process sees the same allocator; set
    ``JANUS_FRAME_MALLOC_TUNING=0`` to leave malloc alone (``enabled``: the
    backend's ``malloc_tuning`` option; None reads the process-wide config)."""
    global malloc_state
    if malloc_state != "untouched":
        return malloc_state
    if enabled is None:
        from ....config import config

        enabled = config.malloc_tuning
    if not enabled:
        malloc_state = "disabled"
        return malloc_state
    malloc_state = "unavailable"
    if not sys.platform.startswith("linux"):
        return malloc_state
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # glibc only: musl's malloc has no such knobs
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return malloc_state
    mmap_ok = bool(mallopt(_M_MMAP_THRESHOLD, 32 << 20))
    trim_ok = bool(mallopt(_M_TRIM_THRESHOLD, 64 << 20))
    if mmap_ok or trim_ok:
        malloc_state = "pinned" if mmap_ok and trim_ok else "partly pinned"
    log.debug("malloc thresholds (mmap 32 MiB, trim 64 MiB): %s", malloc_state)
    return malloc_state


def _same_size(a, b):
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    return sympy.simplify(sympy.sympify(a) - sympy.sympify(b)) == 0


def _tuple(xs):
    items = [pyexpr(x) for x in xs]
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


class LayoutUnsupported(Exception):
    """An input's traced layout that the wrapper cannot restore."""

    janus_stage = "wrapper"


def _layout_checks(prog):
    """The statements that bring each input into the layout its kernels
    index it with (see the comment in :func:`make_wrapper`).

    Kernels index an input with the strides it was traced with.  A caller
    may hand over the same values laid out otherwise: AOTAutograd's backward
    reads what the forward saved with the strides of the forward's fake
    outputs (a chunk of the gates: [B, H] with row stride 4H), while a
    forward kernel stores a non-dense output densely.  An input traced
    non-contiguous is copied into its traced layout when it arrives in
    another (a contiguous one traced as such costs no check: every caller
    guards that).  Symbolic sizes and strides are checked too, with the
    symbols bound before: a graph compiled for a new size reads its inputs
    the same way.

    A stride that is a symbol of its own (a strided input traced with
    dynamic sizes: ``x[::2]`` has strides ``(s2, 1)``) is read off the input
    itself, so it cannot tell a wrong layout by itself: the input's other
    strides are compared with it bound, and an input laid out otherwise (the
    transpose, ``(1, n)``) is made contiguous and its stride symbols read
    again, which the traced strides must then agree with (checked here, at
    compile time; a layout that no contiguous copy fits is refused, and the
    graph runs as captured).  Sizes known only after a library call cannot
    be checked here.
    """
    own = {}  # input index -> {dim: stride symbol read off that input}
    late = set()  # symbols bound after the inputs arrive (library results)
    for sym, src in prog.symbols:
        if src[0] == "stride":
            own.setdefault(src[1], {})[src[2]] = sym
        elif src[0] != "arg" and src[0] != "size":
            late.add(str(sym))
    late_names = late | {str(s) for d in own.values() for s in d.values()}
    L = []
    for b in prog.inputs:
        if b.kind != "input" or not b.shape:
            continue
        mine = own.get(b.index, {})
        mine_names = {str(s) for s in mine.values()}

        def free(x):
            return set() if isinstance(x, int) else {str(f) for f in x.free_symbols}

        used = set().union(*(free(x) for x in (*b.shape, *b.strides)))
        if used & late:
            continue  # known only after a library call
        if used & (late_names - mine_names):
            continue  # another input's stride symbol: that input is checked itself
        contiguous = ir.contiguous_strides(b.shape)
        st = _tuple(b.strides)
        if not mine:
            if all(_same_size(a, c) for a, c in zip(b.strides, contiguous)):
                continue
            L.append(f"    if {b.name}.stride() != {st}: {b.name} = _restride({b.name}, {st})")
            continue
        # the stride symbols read off this input, as a contiguous copy binds them
        subst = {s: contiguous[d] for d, s in mine.items()}
        if not all(_same_size(sympy.sympify(a).subs(subst) if not isinstance(a, int) else a, c)
                   for a, c in zip(b.strides, contiguous)):
            raise LayoutUnsupported(f"input {b.name} with strides {tuple(b.strides)}: "
                              "no contiguous copy has that layout")
        rebind = "; ".join(f"{s} = {b.name}.stride({d})" for d, s in sorted(mine.items()))
        L.append(f"    if {b.name}.stride() != {st}: "
                 f"{b.name} = {b.name}.contiguous(); {rebind}")
    return L


class CompiledGraph:
    """A compiled graph: call it with the graph's inputs (positional)."""

    def __init__(self, prog, sched, csource, build, backend="cpp", triton_kernels=None,
                 options=None, device=None):
        self.prog = prog
        # where outputs, temporaries and the workspace are allocated (the
        # inputs' device: never the process's default device)
        self.device = device if device is not None else torch.device("cpu")
        self.options = options  # the backend's options (malloc_tuning is read on the first call)
        self.sched = sched
        self.csource = csource
        self.build = build
        self.backend = backend
        self.kernels = [s.name for s in sched.steps if isinstance(s, Kernel)]
        self.externs = [str(s.op) for s in sched.steps
                        if isinstance(s, ir.Extern) and not ir.is_check(s)]
        self.source = csource.text if csource is not None else ""
        self.triton_kernels = triton_kernels or {}
        self._fn = None
        self._wrapper_src = None
        self.passes = {}  # rewrites by kind (pipeline.compile_graph fills it)

    @property
    def num_kernels(self):
        return len(self.kernels)

    def _prepare(self):
        return not_traced(self._prepare_inner)()

    def _prepare_inner(self):
        ns = {"torch": torch, "_empty": torch.empty, "_empty_strided": torch.empty_strided,
              "_u8": torch.uint8, "_dev": self.device}
        lib = self.build.lib() if self.build is not None else None
        if lib is not None:
            tune_malloc(None if self.options is None else self.options.malloc_tuning)
        self._fn = make_wrapper(self.prog, self.sched, self.csource, lib, ns,
                                self.triton_kernels, self)
        return self._fn

    def __call__(self, *args):
        fn = self._fn or self._prepare()
        return fn(*args)

    def boxed(self, args):
        """AOTAutograd's calling convention: one list, which we may clear."""
        fn = self._fn or self._prepare()
        out = fn(*args)
        args.clear()
        return out


def make_wrapper(prog, sched, csource, lib, ns, triton_kernels, owner):
    L = []
    nin = len(prog.inputs)
    L.append("def call(*args):")
    for i, b in enumerate(prog.inputs):
        L.append(f"    {b.name} = args[{i}]")
    bound = {}  # buffer -> the statements defining the sizes read off it
    for sym, src in prog.symbols:
        if src[0] == "arg":
            L.append(f"    {sym} = int(args[{src[1]}])")
        elif src[0] == "size":
            L.append(f"    {sym} = args[{src[1]}].shape[{src[2]}]")
        elif src[0] == "stride":
            L.append(f"    {sym} = args[{src[1]}].stride({src[2]})")
        else:
            # a data-dependent size, read off a library call's result right
            # after it (every segment takes every symbol: 0 until then)
            L.append(f"    {sym} = 0")
            bound.setdefault(src[1], []).append(f"    {sym} = {src[2]}")
    syms = [str(s) for s, _ in prog.symbols]
    # Kernels index an input with the strides it was traced with.  A caller
    # may hand over the same values laid out otherwise: AOTAutograd's
    # backward reads what the forward saved with the strides of the forward's
    # fake outputs (a chunk of the gates: [B, H] with row stride 4H), while a
    # forward kernel stores a non-dense output densely.  An input traced
    # non-contiguous is copied into its traced layout when it arrives in
    # another (a contiguous one traced as such costs no check).  Symbolic
    # sizes and strides are checked too, with the symbols bound above: a
    # graph compiled for a new size reads its inputs the same way.  (Sizes
    # known only after a library call cannot be checked here.)
    ns["_restride"] = _restride
    L.extend(_layout_checks(prog))
    # dtypes used
    for b in prog.buffers.values():
        ns[f"_dt_{str(b.dtype).replace('torch.', '')}"] = b.dtype

    def dt(b):
        return f"_dt_{str(b.dtype).replace('torch.', '')}"

    def alloc(b):
        # empty_strided parses its arguments in about 2/3 of empty's time
        return (f"    {b.name} = _empty_strided({_tuple(b.shape)}, {_tuple(b.strides)}, "
                f"dtype={dt(b)}, device=_dev)")

    for b in prog.buffers.values():
        if b.kind == "const":
            ns[b.name] = b.index
    # outputs and tensor temps are allocated up front, the workspace once
    alias = getattr(sched, "alias", {})
    taken_over = {}  # library result -> buffers stored over it
    for o, e in alias.items():
        taken_over.setdefault(e, []).append(o)
    deferred = {}  # tensor temps: allocated just before their first use
    unbacked = getattr(prog, "unbacked", set())

    def data_dependent(b):
        return any(getattr(x, "free_symbols", set()) & unbacked for x in (*b.shape, *b.strides))

    for b in prog.buffers.values():
        if b.kind == "output" and b.name not in alias:
            if data_dependent(b):
                deferred[b.name] = alloc(b)  # (its size is known after a library call)
            else:
                L.append(alloc(b))
        elif b.kind == "ttemp" and b.name not in alias:
            deferred[b.name] = alloc(b)
    if sched.arena:
        L.append(f"    ws = _empty(({pyexpr(sched.arena_bytes)},), dtype=_u8, device=_dev)")
    body_start = len(L)
    if csource is not None:
        for (name, external, uses_ws) in csource.segments:
            fn = getattr(lib, name)
            fn.restype = None
            fn.argtypes = [ctypes.c_void_p] * (len(external) + (1 if uses_ws else 0)) + [ctypes.c_int64] * len(syms)
            ns[f"_{name}"] = fn
    seg_iter = iter(csource.segments if csource is not None else [])
    steps = sched.steps
    i = 0
    while i < len(steps):
        s = steps[i]
        if isinstance(s, Kernel):
            j = i
            while j < len(steps) and isinstance(steps[j], Kernel):
                j += 1
            if csource is not None:
                name, external, uses_ws = next(seg_iter)
                args = [f"{b}.data_ptr()" for b in external]
                if uses_ws:
                    args.append("ws.data_ptr()")
                args += syms
                L.append(f"    _{name}({', '.join(args)})")
            else:
                for k in steps[i:j]:
                    tk = triton_kernels[k.name]
                    ns[f"_tk_{k.name}"] = tk
                    bufs = [f"{b}" if b not in sched.arena else f"_wsview(ws, {pyexpr(sched.arena[b])}, {dt(prog.buffers[b])})" for b in tk.buffers]
                    ns["_wsview"] = _wsview
                    L.append(f"    _tk_{k.name}({', '.join(bufs + syms)})")
            i = j
            continue
        # extern
        if s.name in getattr(sched, "accumulate", ()):
            # c + a @ b into c's own memory (the scheduler checked nothing
            # else reads c): no copy of c into a fresh result
            ns["_addmm_"] = torch.Tensor.addmm_
            call = f"_addmm_({_py_args(s.args)})"
        elif (lin := _as_linear(s)) is not None:
            ns["_linear"] = torch.nn.functional.linear  # (torch._C._nn.linear itself)
            call = f"_linear({lin})"
        else:
            ns[f"_op_{s.name}"] = _callable_of(s.op)
            args = _py_args(s.args)
            kwargs = ", ".join(f"{k}={_py_arg(v)}" for k, v in s.kwargs.items())
            call = f"_op_{s.name}({args}{', ' if args and kwargs else ''}{kwargs})"
        outs = s.outs
        if not any(o is not None for o in outs):
            L.append(f"    {call}")  # an op returning nothing (a check)
            i += 1
            continue
        if s.multi:
            names = [o.name if o is not None else "_" for o in outs]
            L.append(f"    {', '.join(names)}{',' if len(names) == 1 else ''} = {call}")
        else:
            L.append(f"    {outs[0].name} = {call}")
        for o in outs:
            if o is not None:
                L += bound.get(o.name, ())
        # Kernels index an extern's result with the strides its fake tensor
        # had; a library may lay it out otherwise (its layout can follow the
        # inputs' strides, which the lowering may have made contiguous), so a
        # different layout is copied into the expected one.
        ns["_restride"] = _restride
        for o in outs:
            if o is None or (s.op in _CONTIGUOUS_RESULT
                             and tuple(o.strides) == ir.contiguous_strides(o.shape)):
                continue  # a matmul's result is always a fresh row-major tensor
            if len(o.shape) > 1:
                st = _tuple(o.strides)
                L.append(f"    if {o.name}.stride() != {st}: "
                         f"{o.name} = _restride({o.name}, {st})")
        for o in outs:
            if o is not None:
                for name in taken_over.get(o.name, ()):
                    # a kernel stores over it; both are dense with the same
                    # element count, but the shapes may differ ([B*T, C]
                    # from a product, [B, T, C] after): a view of its own shape
                    b = prog.buffers[name]
                    if tuple(b.shape) == tuple(o.shape):
                        L.append(f"    {name} = {o.name}")
                    else:
                        L.append(f"    {name} = {o.name}.view({_tuple(b.shape)})")
        i += 1
    rets = []
    for kind, o in prog.outputs:
        if kind == "buf":
            rets.append(_bufarg_expr(o))
        elif kind == "sym":
            rets.append(pyexpr(o))
        else:
            ns[f"_c{len(rets)}"] = o
            rets.append(f"_c{len(rets)}")
    if getattr(prog, "single_output", False):
        L.append(f"    return {rets[0]}")
    else:
        L.append(f"    return ({', '.join(rets)}{',' if len(rets) == 1 else ''})")
    # (a temp stored over a library result holds that memory under its own name)
    dead = {b.name for b in prog.buffers.values() if b.kind in ("ttemp", "extern")
            or b.name in alias and b.kind != "output"}
    L = L[:body_start] + _lifetimes(L[body_start:], deferred, dead)
    src = "\n".join(L)
    owner._wrapper_src = src
    code = compile(src, f"<janus_frame wrapper {id(owner):x}>", "exec")
    exec(code, ns)
    del nin
    return ns["call"]


_NAME = re.compile(r"[A-Za-z_]\w*")


def _lifetimes(body: list[str], deferred: dict[str, str], dead: set[str]) -> list[str]:
    """``body`` (the wrapper's statements from its first kernel or library
    call to the return) with each tensor temp allocated just before its
    first use and each temp or library result not returned dropped after its
    last use: a backward pass holds one step's working set at a time instead
    of all its gradients at once, and a freed block is the next allocation's
    memory, still in cache."""
    first, last = {}, {}
    for i, line in enumerate(body):
        for name in set(_NAME.findall(line)):
            if name in deferred or name in dead:
                first.setdefault(name, i)
                last[name] = i
    by_first, by_last = {}, {}
    for n, i in first.items():
        if n in deferred:
            by_first.setdefault(i, []).append(n)
    for n, i in last.items():
        if n in dead and i < len(body) - 1:  # (read by the return: it lives on)
            by_last.setdefault(i, []).append(n)
    out = [deferred[n] for n in deferred if n not in first]  # (never used: kept as before)
    for i, line in enumerate(body):
        out += [deferred[n] for n in sorted(by_first.get(i, ()))]
        out.append(line)
        if i in by_last:
            out.append(f"    del {', '.join(sorted(by_last[i]))}")
    return out


def _as_linear(s):
    """The arguments of ``linear(x, w[, b])`` computing extern ``s`` when it is
    ``mm(x, w.t())`` or ``addmm(b, x, w.t())`` over a row-major 2-D ``w``
    (every ``nn.Linear``): None otherwise.

    ``linear`` makes the transposed view of ``w`` in C++ and calls the same
    ``addmm`` / ``mm`` (bit-identical results); building that view from
    Python (``as_strided``) costs about 1.5 us, a tenth of a small product's
    call.  ``addmm`` with ``beta``/``alpha`` stays as it is."""
    if s.kwargs or s.multi:
        return None
    if s.op is _ADDMM and len(s.args) == 3:
        bias, x, wt = s.args
    elif s.op is _MM and len(s.args) == 2:
        bias, (x, wt) = None, s.args
    else:
        return None
    if not isinstance(wt, ir.BufArg) or not isinstance(x, ir.BufArg):
        return None
    w = wt.buf
    if len(w.shape) != 2 or tuple(w.strides) != ir.contiguous_strides(w.shape) \
            or wt.shape != (w.shape[1], w.shape[0]) or wt.strides != (w.strides[1], w.strides[0]) \
            or wt.offset != w.offset:
        return None
    w_expr = _bufarg_expr(ir.BufArg(w, w.shape, w.strides, w.offset))
    args = [_py_arg(x), w_expr]
    if bias is not None:
        args.append(_py_arg(bias))
    return ", ".join(args)


def _callable_of(op):
    """The cheapest callable running aten op ``op``: the torch function with
    the same schema for the matmuls (about 1.2 us less per call than the
    OpOverload's Python ``__call__``), else the overload's C++ operation."""
    fn = _PUBLIC.get(op)
    if fn is not None:
        return fn
    if getattr(op, "namespace", None) == "janus_frame":
        # our own checks: the Python function itself (no dispatcher round trip)
        from ..lower import checks

        return getattr(checks, op._schema.name.split("::")[-1])
    return getattr(op, "_op", op)


_PUBLIC = {torch.ops.aten.mm.default: torch.mm, torch.ops.aten.addmm.default: torch.addmm,
           torch.ops.aten.bmm.default: torch.bmm, torch.ops.aten.baddbmm.default: torch.baddbmm}

_MM, _ADDMM = torch.ops.aten.mm.default, torch.ops.aten.addmm.default

_CONTIGUOUS_RESULT = {torch.ops.aten.mm.default, torch.ops.aten.addmm.default,
                      torch.ops.aten.bmm.default, torch.ops.aten.baddbmm.default}


def _restride(t, strides):
    return torch.empty_strided(t.shape, strides, dtype=t.dtype, device=t.device).copy_(t)


def _wsview(ws, off, dtype):
    return ws[off:].view(dtype)


def _bufarg_expr(a: ir.BufArg):
    b = a.buf
    if a.is_plain:
        return b.name
    if isinstance(a.offset, int) and isinstance(b.offset, int) and a.offset == b.offset:
        # the tensor's own storage offset (a quarter cheaper than passing it)
        return f"{b.name}.as_strided({_tuple(a.shape)}, {_tuple(a.strides)})"
    return (f"{b.name}.as_strided({_tuple(a.shape)}, {_tuple(a.strides)}, "
            f"{b.name}.storage_offset() + {pyexpr(a.offset - b.offset) if not isinstance(a.offset, int) or not isinstance(b.offset, int) else a.offset - b.offset})")


def _py_arg(v):
    if isinstance(v, ir.BufArg):
        return _bufarg_expr(v)
    if isinstance(v, ir.SymArg):
        return pyexpr(v.expr)
    if isinstance(v, (list, tuple)):
        inner = ", ".join(_py_arg(x) for x in v)
        return ("[" + inner + "]") if isinstance(v, list) else ("(" + inner + ("," if len(v) == 1 else "") + ")")
    if isinstance(v, torch.dtype):
        return str(v)
    if isinstance(v, torch.device):
        return f"torch.device({str(v)!r})"
    if isinstance(v, torch.layout):
        return str(v)
    if isinstance(v, torch.memory_format):
        return str(v)
    if isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")):
            return f"float({str(v)!r})"
        return repr(v)
    if isinstance(v, (int, bool, str)) or v is None:
        return repr(v)
    if isinstance(v, complex):  # (a complex scalar operand: ``(1 + 2j) * x``)
        return f"complex({_py_arg(v.real)}, {_py_arg(v.imag)})"
    raise ValueError(f"cannot pass {type(v).__name__} to an extern")


def _py_args(args):
    return ", ".join(_py_arg(a) for a in args)
