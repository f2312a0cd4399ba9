"""Lowering: an aten-level ``fx.GraphModule`` to the loop IR (:mod:`ir`).

In: a decomposed, functional aten graph whose nodes carry ``meta['val']``
(FakeTensors / SymInts).  Out: an :class:`ir.Program`.

Tensor values are :class:`.tensor_values.TV`: either a strided *view* of a
buffer (graph input, extern result, realized node) or a *lazy* pointwise
function ``fn(index) -> E`` that consumers inline.  View ops only compose
index maps (:mod:`.tensor_values`); a lazy value becomes a buffer
(``realize``) when it is a graph output, an extern argument, or is used
several times and is expensive to recompute.
Ops without a lowering become :class:`ir.Extern` calls of the aten op itself.
So do ops whose result sizes depend on data (nonzero, boolean-mask indexing,
unique, ``_local_scalar_dense``: the node carries ``meta['unbacked_bindings']``):
each size they make up becomes a program symbol whose source is the call's
result (``Program.unbacked``), and the kernels after it take it as a size
argument like an input's dynamic size -- one compiled graph for every count.
The op lowerings are found in :data:`lower.registry.LOWERINGS` (filled by
:mod:`lower.ops` and :mod:`lower.reduce`).
"""
from __future__ import annotations

import operator

import sympy
import torch
import torch.fx

from ....torch_compat import OpOverload
from .. import ir
from ..ir import Affine, Op
from .registry import LOWERINGS, NATIVE
from .tensor_values import TV, Unsupported, broadcast_to, cast, size_eq, sz, view_of

aten = torch.ops.aten


class Lowering:
    """Walks an fx graph in order and fills a Program."""

    def __init__(self, gm: torch.fx.GraphModule, prechecked=frozenset()):
        self.gm = gm
        # checks (``prog.input_checks`` keys) the forward of this backward
        # graph already did on the saved tensors it reads (see check_index)
        self.prechecked = prechecked
        self.input_names = {}  # input buffer name -> its placeholder's name
        self.lowerings = LOWERINGS
        self.prog = ir.Program()
        self.env = {}
        self.sym_sources = {}  # sympy symbol -> ("arg", i) | ("size", i, dim) | ("stride", i, dim)
        self.node = None
        self.extern_count = 0
        self.order = {}  # fx node -> position (liveness across mutations)
        self.storage_of = {}  # input buffer name -> its placeholder's storage
        self.inputs_written = set()  # input buffers a kernel stores into
        self.checked = set()  # the index range checks put in (check_index)

    # ----------------------------------------------------------- buffers
    def realize(self, tv, out=None, copy=False):
        """Materialise ``tv`` into a buffer (a fresh temp laid out as the value
        it was traced as, channels-last for instance, else row-major; or
        ``out``) and return a view of it.  Views of buffers are returned
        unchanged unless ``copy``: a row-major copy (for a reshape that no
        strides can express)."""
        if tv.is_view and out is None and not copy:
            return tv
        if out is None and not copy and tv.realized is not None:
            return tv.realized  # stored once, however many consumers need a buffer
        if out is None:
            # a copy is asked for to be read row-major (a reshape)
            layout = ir.contiguous_strides(tv.shape) if copy else _layout(tv.shape, tv.traced)
            out = self.prog.new_buffer("buf", tv.shape, layout, tv.dtype, "temp")
        vars_ = [Affine.var("v%d" % i) for i in range(tv.ndim)]
        expr = tv.load(vars_)
        if expr.dtype != out.dtype:
            expr = cast(expr, out.dtype)
        node = ir.Pointwise(f"n{len(self.prog.nodes)}", out, tv.shape, expr)
        self.prog.nodes.append(node)
        r = view_of(out)
        if not tv.is_view and out.kind == "temp":
            tv.realized = r
        return r

    def cat_into(self, tvs, dim, shape, dtype):
        """``cat(tvs, dim)`` as one buffer that each input is computed
        straight into (a slice each, one pointwise node per input), or None
        when the slices' offsets are not static.  Later steps read the buffer
        only after its last writer (the scheduler orders by the latest)."""
        if not all(isinstance(t.shape[dim], int) for t in tvs):
            return None
        # laid out as eager lays the cat out (channels-last inputs give a
        # channels-last result), so later steps see the strides they traced
        meta = self.node.meta.get("val") if self.node is not None else None
        out = self.prog.new_buffer("buf", shape, _layout(shape, meta), dtype, "temp")
        start = 0
        for tv in tvs:
            names = ["v%d" % i for i in range(tv.ndim)]
            expr = cast(tv.load([Affine.var(v) for v in names]), dtype)
            store = ir.store_index(out, names) + Affine(start * out.strides[dim])
            self.prog.nodes.append(ir.Pointwise(f"n{len(self.prog.nodes)}", out, tv.shape, expr, store))
            start += tv.shape[dim]
        return view_of(out)

    def maybe_realize_shared(self, tv, fx_node):
        """Realize a lazy value used several times when recomputing it in every
        consumer would cost more than storing it once."""
        if tv.is_view:
            return tv
        if _feeds_library_call(fx_node, self.lowerings):
            # a library call needs it in memory anyway: store it once, in its
            # natural layout, and let every consumer (a transposed matmul
            # operand, a reduction, the graph output) read that buffer
            return self.realize(tv)
        users = len(fx_node.users)
        if users <= 1:
            return tv
        e = tv.canonical_expr()
        nodes = ir.walk(e)
        ops = sum(1 for x in nodes if x.kind not in ir.LEAF_KINDS)
        heavy = any(x.kind in ir.TRANSCENDENTAL for x in nodes)
        nloads = len({x.aux[0] for x in nodes if x.kind == Op.LOAD})
        if ops > 24 or nloads > 4 or (heavy and users > 1 and ops >= 2):
            return self.realize(tv)
        return tv

    def bufarg(self, tv):
        tv = self.realize(tv)
        return ir.BufArg(tv.buf, tv.shape, tv.strides, tv.offset)

    def check_index(self, index, size, dim, op, ignore=None):
        """Put the run-time range check of ``index`` (a TV of indices into
        dimension ``dim`` of an operand of shape ``size``, for ``op``:
        ``index_select``, ``gather`` or ``scatter``) into the program and
        return ``index`` as the buffer view the check reads (the lowering
        then loads the indices from it instead of recomputing them).  The
        scheduler keeps every node after the check after it, so no kernel
        reads or writes at these indices before they are known to be valid.

        The check (and the nodes computing a lazy index) go as early as the
        program allows -- right after the last node writing something they
        read, usually at the very start for an input's indices -- rather than
        here: placed here, the barrier would split the kernel computing the
        operand (a log-softmax row) from the one gathering from it.

        ``ignore`` (an int): ``index`` holds ``nll_loss``'s class targets as
        given, ``ignore`` among them allowed (``checks.check_target``).  The
        same check of the same view against the same bound is put in once
        (the forward's gather and the backward's scatter of one loss)."""
        from .checks import CHECK_INDEX, CHECK_TARGET

        nodes = self.prog.nodes
        n0 = len(nodes)
        index = self.realize(index)
        size = [sz(x) for x in size]
        new = nodes[n0:]
        del nodes[n0:]
        reads = {index.buf.name}
        for node in new:
            reads |= node.reads()
        pos = n0
        syms = set()
        for x in (*size, *index.shape, *index.strides, index.offset):
            syms |= getattr(x, "free_symbols", set())
        if not syms & self.prog.unbacked:
            # (a size made up by a library call is known only after it: stay here)
            pos = 0
            for j, node in enumerate(nodes):
                outs = node.outs if isinstance(node, ir.Extern) else [node.out]
                if any(o is not None and o.name in reads for o in outs):
                    pos = j + 1
        arg = ir.BufArg(index.buf, index.shape, index.strides, index.offset)
        # (the elements read: size-1 dimensions do not count, so t and
        # t.unsqueeze(1) are one check)
        dims = tuple((str(n), str(s)) for n, s in zip(index.shape, index.strides) if n != 1)
        key = (index.buf.name, dims, str(index.offset), str(size[dim]),
               op if ignore is None else ("target", ignore))
        placeholder = self.input_names.get(index.buf.name)
        # A backward graph reading a saved input its forward checked against
        # the same bound skips the check: the tensor is the one checked,
        # unchanged -- saved with save_for_backward, whose version check
        # raises (as eager's does) had it been changed in place in between.
        if key in self.checked or (placeholder, *key[1:]) in self.prechecked:
            nodes[n0:n0] = new
            return index
        self.checked.add(key)
        if placeholder is not None:
            self.prog.input_checks.add((placeholder, *key[1:]))
        if ignore is not None:
            n = size[dim] if isinstance(size[dim], int) else ir.SymArg(size[dim])
            check = ir.Extern(f"n{n0 + len(new)}", CHECK_TARGET, [arg, n, ignore], {}, [None],
                              False)
        else:
            size = [x if isinstance(x, int) else ir.SymArg(x) for x in size]
            check = ir.Extern(f"n{n0 + len(new)}", CHECK_INDEX, [arg, size, dim, op], {}, [None],
                              False)
        nodes[pos:pos] = [*new, check]
        return index

    # ----------------------------------------------------------- graph walk
    def run(self):
        g = self.gm.graph
        inputs = []
        for n in g.nodes:
            if n.op == "placeholder":
                inputs.append(self.placeholder(n, len(inputs)))
        self.prog.inputs = inputs
        self.order = {n: i for i, n in enumerate(g.nodes)}
        for n in g.nodes:
            if n.op == "placeholder":
                continue
            self.node = n
            if n.op == "call_function":
                self.env[n] = self.call(n)
            elif n.op == "output":
                self.output(n.args[0])
            elif n.op == "get_attr":
                self.env[n] = self.constant(n)
            else:
                raise Unsupported(f"fx op {n.op}")
        self.prog.symbols = list(self.sym_sources.items())
        self._check_symbols()
        return self.prog

    def _check_symbols(self):
        """Every size symbol a buffer, an extern argument or an output uses
        has a source (an input, or an extern's result).  A symbol the trace
        made up without saying where it lives (an unbacked size of an op that
        did not record its binding) leaves the graph to eager."""
        free = set()

        def add(x):
            free.update(getattr(x, "free_symbols", ()))

        for b in self.prog.buffers.values():
            for x in (*b.shape, *b.strides, b.offset):
                add(x)

        def visit(a):
            if isinstance(a, ir.SymArg):
                add(a.expr)
            elif isinstance(a, ir.BufArg):
                for x in (*a.shape, *a.strides, a.offset):
                    add(x)
            elif isinstance(a, (list, tuple)):
                for x in a:
                    visit(x)

        for node in self.prog.nodes:
            if isinstance(node, ir.Extern):
                visit(node.args)
                visit(list(node.kwargs.values()))
            else:
                for x in node.ranges:
                    add(x)
                for e in ir.walk(node.expr):
                    if e.kind == Op.SYM:
                        add(e.aux)
        for kind, o in self.prog.outputs:
            if kind == "sym":
                add(o)
            elif kind == "buf":
                visit(o)
        missing = free - set(self.sym_sources)
        if missing:
            raise Unsupported(f"sizes {sorted(map(str, missing))} have no source")

    def placeholder(self, n, i):
        val = n.meta.get("val", n.meta.get("example_value"))
        if isinstance(val, torch.SymInt) or isinstance(val, int):
            s = sz(val)
            b = self.prog.new_buffer("s", (), (), torch.int64, "sym", index=i)
            if isinstance(s, sympy.Symbol):
                self.sym_sources.setdefault(s, ("arg", i))
            self.env[n] = val if isinstance(val, int) else val
            return b
        if not isinstance(val, torch.Tensor):
            raise Unsupported(f"input {n.name} of type {type(val).__name__}")
        shape = [sz(s) for s in val.shape]
        strides = [sz(s) for s in val.stride()]
        for d, s in enumerate(shape):
            if isinstance(s, sympy.Symbol):
                self.sym_sources.setdefault(s, ("size", i, d))
        for d, s in enumerate(strides):
            if isinstance(s, sympy.Symbol):
                self.sym_sources.setdefault(s, ("stride", i, d))
        b = self.prog.new_buffer("in", shape, strides, val.dtype, "input", index=i)
        self.input_names[b.name] = n.name
        self.storage_of[b.name] = _storage(val)
        self.env[n] = view_of(b)
        return b

    def constant(self, n):
        """A tensor attribute of the module (a lifted constant): bound into
        the wrapper once, read like an input."""
        t = getattr(self.gm, n.target)
        if not isinstance(t, torch.Tensor):
            raise Unsupported(f"get_attr of {type(t).__name__}")
        # a real constant (e.g. an empty tensor the model built), lowered
        # while AOTAutograd's fake mode may still be active
        from ....torch_compat import unset_fake_temporarily

        with unset_fake_temporarily():
            t = t.detach()
        b = self.prog.new_buffer("const", list(t.shape), list(t.stride()), t.dtype, "const")
        b.index = t
        return view_of(b)

    def arg(self, a):
        if isinstance(a, torch.fx.Node):
            return self.env[a]
        if isinstance(a, (list, tuple)):
            return type(a)(self.arg(x) for x in a)
        return a

    def call(self, n):
        target = n.target
        if target is operator.getitem:
            seq = self.arg(n.args[0])
            return seq[n.args[1]]
        if target in (operator.add, operator.sub, operator.mul, operator.floordiv, operator.neg,
                      torch.sym_max, torch.sym_min, torch.sym_ite) or \
                getattr(target, "__module__", "") == "_operator":
            args = [self.arg(a) for a in n.args]
            return n.meta.get("val", target(*args)) if not any(isinstance(a, TV) for a in args) else self._unsupported(n)
        if target in (aten.sym_size.int, aten.sym_stride.int, aten.sym_numel.default):
            return n.meta["val"]
        if target is aten.size.default:  # left by decompositions of symbolic graphs
            v = n.meta.get("val")
            return list(v) if v is not None else list(self.arg(n.args[0]).shape)
        args = [self.arg(a) for a in n.args]
        kwargs = {k: self.arg(v) for k, v in n.kwargs.items()}
        # an op whose result sizes depend on data (nonzero, a boolean mask,
        # unique) runs as a library call: its sizes are read off its result
        low = None if n.meta.get("unbacked_bindings") else self.lowerings.get(target)
        if low is not None:
            try:
                out = low(self, *args, **kwargs)
            except NotImplementedError:
                out = None
            if out is not None:
                if isinstance(out, TV):
                    if out.traced is None and not out.is_view:
                        out.traced = n.meta.get("val")
                    out = self.maybe_realize_shared(out, n)
                return out
        return self.extern(n, target, args, kwargs)

    def _read_later(self, k):
        here = self.order.get(self.node, -1)
        return any(self.order.get(u, -1) > here for u in k.users)

    def _before_write(self, written, keep=None, exact=False):
        """Before a mutation of the buffers ``written`` (name -> storage of
        the written fx value): lazily-read values must see the data as it is
        now, and so must values held as views of a written buffer without
        sharing its memory in the program (a ``clone`` lowers to its input)
        if they are read after the write.  ``keep``: a lazy value the write
        itself stores (not realized separately); ``exact``: no other buffer
        shares memory with the written ones, so lazy values reading none of
        them stay lazy."""
        for k, v in list(self.env.items()):
            if not isinstance(v, TV) or v is keep or not self._read_later(k):
                continue
            if not v.is_view:
                if exact and not any(e.aux[0] in written for e in ir.loads_of(v.canonical_expr())):
                    continue
                self.env[k] = self.realize(v)
            elif v.buf.name in written:
                mine, theirs = _storage_of_node(k), written[v.buf.name]
                if mine is not None and theirs is not None and mine != theirs:
                    self.env[k] = self.realize(v, copy=True)

    def _library_views(self, names=None):
        """Has an extern returned a view of one of the buffers ``names`` (of
        any buffer when None): memory shared under another name?"""
        for x in self.prog.nodes:
            if isinstance(x, ir.Extern) and any(r.alias_info is not None for r in x.op._schema.returns):
                if names is None or x.reads() & set(names):
                    return True
        return False

    def _copy_into_input(self, n, args):
        """``copy_(input, value)`` (the write-back of a functionalized
        mutation, e.g. an optimizer's parameter update) with ``value`` lazy
        and elementwise in the input: the kernel computing ``value`` stores
        straight into the input's memory, instead of into a temporary that
        a library copy then moves (one pass over the data instead of three).
        Returns False when that does not apply (the copy stays an extern)."""
        dst, src = args[0], args[1] if len(args) > 1 else None
        if not (isinstance(dst, TV) and isinstance(src, TV) and dst.is_view and not src.is_view):
            return False
        b = dst.buf
        if b.kind != "input" or b.name in self.inputs_written or dst.shape != b.shape \
                or dst.strides != b.strides or dst.offset != b.offset or b.dtype not in NATIVE:
            return False
        if src.shape != dst.shape:
            src = broadcast_to(src, dst.shape)
        vars_ = ["v%d" % i for i in range(len(b.shape))]
        expr = cast(src.load([Affine.var(v) for v in vars_]), b.dtype)
        store = ir.store_index(b, vars_)
        if any(e.aux[0] == b.name and e.aux[1] != store for e in ir.loads_of(expr)):
            return False  # reads the input elsewhere than where it writes
        if self._library_views([b.name]):
            return False  # a library view may share the input's memory
        self._before_write({b.name: _storage_of_node(n.args[0])}, keep=args[1], exact=True)
        self.prog.nodes.append(ir.Pointwise(f"n{len(self.prog.nodes)}", b, b.shape, expr, store))
        self.inputs_written.add(b.name)
        new = view_of(b)
        for k, v in list(self.env.items()):
            if v is args[1]:
                self.env[k] = new  # the value now lives in the input
        self.env_value_of_write = new
        return True

    def _unsupported(self, n):
        raise Unsupported(f"symbolic arithmetic on tensors: {n.format_node()}")

    def extern(self, n, op, args, kwargs):
        if not isinstance(op, OpOverload):
            raise Unsupported(f"non-aten call {op}")
        if op is aten.copy_.default and self._copy_into_input(n, args):
            return self.env_value_of_write
        if op._schema.is_mutable:
            written = {}
            for i, a in enumerate(op._schema.arguments):
                if i < len(args) and a.alias_info is not None and a.alias_info.is_write \
                        and isinstance(args[i], TV) and args[i].is_view:
                    written[args[i].buf.name] = _storage_of_node(n.args[i])
            exact = all(self.prog.buffers[b].kind == "input" for b in written) \
                and not self._library_views(written)
            self._before_write(written, exact=exact)

        def conv(a):
            if isinstance(a, TV):
                return self.bufarg(a)
            if isinstance(a, (list, tuple)):
                return type(a)(conv(x) for x in a)
            if isinstance(a, torch.SymInt):
                s = sz(a)
                if isinstance(s, int):
                    return s
                return ir.SymArg(s)
            if isinstance(a, torch.SymBool):
                # (a run-time check on sizes: ``_assert_scalar(u0 >= 0)``)
                e = a.node.expr
                return bool(e) if e.is_Boolean and e in (sympy.true, sympy.false) else ir.SymArg(e)
            if isinstance(a, torch.SymFloat):
                raise Unsupported(f"{op} takes a symbolic float")
            return a

        cargs = conv(args)
        ckw = {k: conv(v) for k, v in kwargs.items()}
        val = n.meta.get("val")
        multi = isinstance(val, (list, tuple))
        vals = list(val) if multi else [val]
        outs = []
        for v in vals:
            if isinstance(v, torch.Tensor):
                b = self.prog.new_buffer("ext", [sz(s) for s in v.shape], [sz(s) for s in v.stride()],
                                         v.dtype, "extern")
                outs.append(b)
            elif v is None:
                outs.append(None)
            elif isinstance(v, (torch.SymInt, int)) and not isinstance(v, bool):
                # a number read from data (``_local_scalar_dense``: ``.item()``,
                # ``int(t)``): a Python int of the wrapper, later used as a size
                outs.append(self.prog.new_buffer("num", (), (), torch.int64, "scalar"))
            else:
                raise Unsupported(f"extern {op} returns {type(v).__name__}")
        node = ir.Extern(f"n{len(self.prog.nodes)}", op, cargs, ckw, outs, multi)
        self.prog.nodes.append(node)
        self.extern_count += 1
        self._bind_unbacked(n, outs, multi)
        tvs = [view_of(b) if b is not None and b.kind != "scalar" else
               (v if b is not None else None) for b, v in zip(outs, vals)]
        return tvs if multi else tvs[0]

    def _bind_unbacked(self, n, outs, multi):
        """The sizes extern node ``n`` makes up (unbacked symbols, which
        the trace recorded as key paths into the result:
        ``meta['unbacked_bindings']``) become symbols of the program whose
        value the wrapper reads off the result right after the call
        (``("bound", buffer name, Python expression)``).  Kernels and
        allocations after it take them as run-time sizes like any other."""
        bindings = n.meta.get("unbacked_bindings") or {}
        for sym, path in bindings.items():
            path = tuple(path)
            if multi:
                if not path or type(path[0]).__name__ != "SequenceKey" \
                        or path[0].idx >= len(outs) or outs[path[0].idx] is None:
                    raise Unsupported(f"size {sym} of {n.name} at {path}")
                base, path = outs[path[0].idx], path[1:]
            else:
                base = outs[0]
            self.sym_sources.setdefault(sym, ("bound", base.name, keypath_expr(base.name, path)))
            self.prog.unbacked.add(sym)

    def output(self, outs):
        # a graph returning one bare value (hand-built graphs) keeps that shape
        self.prog.single_output = not isinstance(outs, (list, tuple))
        if self.prog.single_output:
            outs = [outs]
        res = []
        claimed = {}  # buffer name -> storage of the first output using it
        for o in outs:
            v = self.arg(o)
            if isinstance(v, TV) and not v.is_view and v.realized is not None:
                v = v.realized
            meta = o.meta.get("val") if isinstance(o, torch.fx.Node) else None
            if v is None or not isinstance(v, TV):
                if isinstance(v, torch.SymInt):
                    s = sz(v)
                    res.append(("sym", s) if not isinstance(s, int) else ("const", s))
                else:
                    res.append(("const", v))
                continue
            if v.is_view and self._may_alias(v.buf, meta, claimed) and (
                    v.buf.kind == "input" or (_same_layout(v, meta) and self._placed_as_traced(v, meta))):
                b = v.buf
                producer = self._producer(b)
                if b.kind == "temp" and producer is not None and b.name not in claimed:
                    b.kind = "output"
                if isinstance(meta, torch.Tensor):
                    claimed.setdefault(b.name, _storage(meta))
                else:
                    claimed.setdefault(b.name, None)
                res.append(("buf", ir.BufArg(b, v.shape, v.strides, v.offset)))
                continue
            out = self.prog.new_buffer("out", v.shape, _layout(v.shape, meta), v.dtype, "output")
            claimed[out.name] = _storage(meta) if isinstance(meta, torch.Tensor) else None
            self.realize(v, out)
            res.append(("buf", ir.BufArg(out, out.shape, out.strides, out.offset)))
        self.prog.outputs = res

    def _may_alias(self, b, meta, claimed):
        """May an output whose value is a view of ``b`` be returned as that
        view?  Only if the graph's own output aliases the same memory: the
        lowering drops ``clone`` and friends, but a caller keeps the output
        (an optimizer's new momentum buffer, ``grad.clone()``) and must not
        find it to be the input, or another output, it was copied from."""
        if not isinstance(meta, torch.Tensor):
            return True  # no metadata (hand-built graphs): as before
        mine = _storage(meta)
        if b.kind == "input":
            theirs = self.storage_of.get(b.name)
            return theirs is not None and theirs == mine
        if b.kind == "const":
            return False
        if b.name in claimed:
            return claimed[b.name] is not None and claimed[b.name] == mine
        return True

    def _placed_as_traced(self, v, meta):
        """May view ``v`` be handed out for the traced output ``meta``?  When
        eager's output is a tensor of its own (not a view: ``clone``,
        ``contiguous`` of a slice), only if ``v`` is placed in a buffer of its
        own as ``meta`` is in its storage -- not a slice of an intermediate,
        not the view a library call returned."""
        if not isinstance(meta, torch.Tensor) or not _owns_storage(meta):
            return True  # eager returns a view too (or no metadata): as before
        return _same_placement(v, meta) and not self._library_view(v.buf)

    def _library_view(self, b):
        """Is ``b`` the result of a library call returning a view of its
        argument (``as_strided``, ``slice`` run as externs)?  Its memory is the
        argument's: not a tensor of its own to hand out for a fresh output."""
        n = self._producer(b)
        return isinstance(n, ir.Extern) and any(
            r.alias_info is not None for r in n.op._schema.returns)

    def _producer(self, b):
        for n in self.prog.nodes:
            if n.out is b:
                return n
        return None


# ops that only re-index their first argument (lowered as index maps)
_VIEW_OPS = {aten.view.default, aten._unsafe_view.default, aten.reshape.default,
             aten.permute.default, aten.t.default, aten.transpose.int, aten.expand.default,
             aten.unsqueeze.default, aten.squeeze.dim, aten.squeeze.dims, aten.squeeze.default,
             aten.slice.Tensor, aten.select.int, aten.alias.default, aten.clone.default}


def _feeds_library_call(n, lowerings, depth=0):
    """Is the value of fx node ``n`` an argument of an op without a lowering
    (an extern), directly or through view ops?"""
    for u in n.users:
        if u.op != "call_function":
            continue
        t = u.target
        if t in _VIEW_OPS:
            if u.args and u.args[0] is n and depth < 8 and _feeds_library_call(u, lowerings, depth + 1):
                return True
        elif isinstance(t, OpOverload) and t not in lowerings:
            if t is aten.copy_.default and len(u.args) > 1 and u.args[1] is n \
                    and u.args[0].op == "placeholder":
                continue  # a write-back into an input: stored there in place
            return True
    return False


def _storage(val):
    """An identity for ``val``'s memory (fake tensors: views share it)."""
    from torch.multiprocessing.reductions import StorageWeakRef

    try:
        return StorageWeakRef(val.untyped_storage())
    except Exception:  # noqa: BLE001 -- e.g. sparse or opaque tensors
        return None


def _storage_of_node(n):
    val = n.meta.get("val") if isinstance(n, torch.fx.Node) else None
    return _storage(val) if isinstance(val, torch.Tensor) else None


def _layout(shape, meta):
    """Strides for a new buffer of ``shape``: those of the traced value
    ``meta`` when they are dense and non-overlapping, else row-major."""
    if isinstance(meta, torch.Tensor) and len(meta.shape) == len(shape) \
            and all(sz(a) == b for a, b in zip(meta.shape, shape)):
        ms = tuple(sz(s) for s in meta.stride())
        if _dense_non_overlapping(shape, ms):
            return ms
    return ir.contiguous_strides(shape)


def _same_layout(v, meta):
    """Are view ``v``'s strides those of the traced output ``meta`` (size-1
    dims aside)?  A stored value may be laid out otherwise (channels-last
    from a convolution, transposed for a matmul) than the output the graph
    promises (a ``.contiguous()`` the lowering treats as a no-op)."""
    if not isinstance(meta, torch.Tensor) or len(meta.shape) != len(v.shape):
        return True
    for size, st, mst in zip(v.shape, v.strides, meta.stride()):
        if not (isinstance(size, int) and size == 1) and st != sz(mst):
            return False
    return True


def _owns_storage(meta):
    """Does the traced value ``meta`` fill a storage of its own from offset
    0 (a fresh tensor in eager)?  Traced values after the graph passes do
    not record whether they are views; where they sit tells."""
    try:
        offset = sz(meta.storage_offset())
        numel = sz(meta.untyped_storage().nbytes()) // meta.element_size()
        return size_eq(offset, 0) and size_eq(numel, sz(meta.numel()))
    except Exception:  # noqa: BLE001 -- no storage (sparse, opaque): not known to be fresh
        return False


def _same_placement(v, meta):
    """Does view ``v`` of a buffer the program allocates sit in it as the
    traced output ``meta`` sits in its storage (same offset, storage of the
    same size)?  The lowering drops ``clone`` and reads slices in place, so
    ``clone(y[1:])`` of an intermediate ``y`` arrives as a view at offset 1 of
    ``y``'s buffer, where eager's clone is a tensor of its own at offset 0:
    such an output gets a buffer of its own."""
    if not isinstance(meta, torch.Tensor):
        return True  # no metadata (hand-built graphs): as before
    try:
        offset = sz(meta.storage_offset())
        numel = sz(meta.untyped_storage().nbytes()) // meta.element_size()
    except Exception:  # noqa: BLE001 -- no storage to compare with (sparse, opaque)
        return False
    if not isinstance(v.offset, (int, sympy.Expr)) or not size_eq(v.offset, offset):
        return False
    b = v.buf
    if b.kind == "view" or b.base is not None:
        return False  # a window into another buffer: not a storage of its own
    extent = b.numel if b.shape else 1
    return size_eq(extent, numel)


def _dense_non_overlapping(shape, strides):
    if not all(isinstance(s, int) for s in list(shape) + list(strides)):
        return _dense_symbolic(shape, strides)
    dims = sorted((st, s) for s, st in zip(shape, strides) if s != 1)
    expect = 1
    for st, s in dims:
        if st != expect:
            return False
        expect *= s
    return True


def keypath_expr(base: str, path) -> str:
    """The Python expression reading the value at ``path`` (a torch.fx key
    path, as in ``meta['unbacked_bindings']``) from the result named
    ``base``: ``ext3.size()[0]``, ``ext3.stride()[1]``; a number itself is
    the empty path.  The key classes are told apart by name
    (torch.utils._pytree's ``SequenceKey``, symbolic_shapes'
    ``CallMethodKey``, ``DivideByKey``, ``ConvertIntKey``)."""
    out = base
    for k in path:
        kind = type(k).__name__
        if kind == "SequenceKey":
            out = f"{out}[{int(k.idx)}]"
        elif kind == "CallMethodKey" and k.name in ("size", "stride", "storage_offset", "numel"):
            out = f"{out}.{k.name}()"
        elif kind == "DivideByKey":
            out = f"({out} // {int(k.divisor)})"
        elif kind == "ConvertIntKey":
            out = f"int({out})"  # (a bool as 0 or 1)
        else:
            raise Unsupported(f"key path {path}")
    return out


def _dense_symbolic(shape, strides):
    """``_dense_non_overlapping`` for symbolic sizes, checked at sample
    sizes: a permuted dense layout such as nonzero's ``[u0, 2]`` with
    strides ``(1, u0)``, or ``(1, Max(1, u0))`` for a pointwise result of it
    (what eager gives, a row of one included), is kept."""
    syms = sorted(set().union(*(getattr(x, "free_symbols", set()) for x in (*shape, *strides))),
                  key=str)
    for v in (1, 2, 3, 7):
        for spread in (0, 1):
            at = {s: v + spread * j for j, s in enumerate(syms)}
            try:
                sh = [int(sympy.sympify(x).subs(at)) for x in shape]
                st = [int(sympy.sympify(x).subs(at)) for x in strides]
            except (TypeError, ValueError):  # (a size the sample values leave symbolic)
                return False
            if not _dense_non_overlapping(sh, st):
                return False
    return True


def lower(gm, prechecked=frozenset()) -> ir.Program:
    return Lowering(gm, prechecked).run()
