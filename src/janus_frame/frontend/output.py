"""The graph under construction for one compiled frame.

In: real objects read from the frame (wrapped into symbolic values with their
sources and guards), and tensor operations recorded by the opcode handlers.
Out: an ``fx.GraphModule`` whose placeholders are the tensors the trace read
(parameters included, never baked in), the real example inputs in placeholder
order with their sources, and the guards of everything read.

Every recorded operation is also run on fake tensors (FakeTensorMode), which
gives the result's shape, dtype and strides without touching real data.
"""
from __future__ import annotations

import contextlib
import enum
import functools
import math
import operator
import os
import re
import types

import numpy as np
import torch
import torch.fx as fx

from ..torch_compat import (DataDependentOutputException, DynamicOutputShapeException,
                            FakeTensorMode, ShapeEnv, compute_unbacked_bindings, data_unknown,
                            fake_execution, set_grad_enabled_c)
from .breaks import GraphBreak, would_raise
from .bytecode_info import RESUME_CODES
from .effects import SideEffects
from .guards import Guards, namedtuple_recipe
from .shapes import NeedsShapeEnv, ShapeMixin, is_argument
from .sources import (
    ArgSource, AttrSource, ExprSource, IntTensorSource, ItemSource, Source, TypeSource, clear_pins,
)
from .fake import to_fake, to_node
from .values import (
    CellV, Const, CtxV, DerivedConst, DictV, DynFloat, DynInt, ExitV, ListV, MethodV, ObjV,
    RealDictV, SetV, SymV, TensorV, TupleV, Value,
)
from .values.containers import is_named_tuple_cls
from .number_operands import number_operands_ok
from .whole_step import refuse_new_history
from .values.dicts import VIEW_TYPES, wrap_dict_view
from .values.environ import EnvironV
from .values.constants import FLOAT_TYPES, NUMBER_TYPES, rerun_source, varies
from .values.numpy import wrap_numpy

_CONST_TYPES = (int, float, bool, str, bytes, complex, type(None), type(Ellipsis))
_TORCH_CONST_TYPES = (torch.dtype, torch.device, torch.Size, torch.memory_format, torch.layout)
# arithmetic on numbers that vary between calls, kept in the graph (0-d int64
# or float64 tensors compute exactly what Python's ints and floats do)
_GRAPH_ARITH = {operator.add: operator.add, operator.sub: operator.sub,
                operator.mul: operator.mul, operator.iadd: operator.add,
                operator.isub: operator.sub, operator.imul: operator.mul}


class OutputGraph(ShapeMixin):
    def __init__(self, ctx, code: types.CodeType, nargs: int,
                 symbolic: bool = False, dynamic: frozenset = frozenset()) -> None:
        self.ctx = ctx  # the CompileContext (context.py)
        clear_pins()  # the previous trace's generated code is built
        self.code = code
        self.graph = fx.Graph()  # where operations are recorded (a sub-graph meanwhile)
        self.root_graph = self.graph  # where inputs are: the segment's graph
        # A shape environment lets data-dependent output sizes (boolean-mask
        # indexing, nonzero) be captured with unbacked symbolic sizes; inputs
        # stay static.
        # Dimensions made dynamic (automatic dynamic, mark_dynamic, dynamic=True)
        # get symbolic sizes from the same environment. No duck sizing: two
        # dimensions equal by chance must not become one symbol.
        self.dynamic = dynamic  # names of int sources, (name, dim) of tensor sizes
        self.dynamic_all = ctx.dynamic
        symbolic = symbolic or self.dynamic_all is True or any(
            isinstance(d, tuple) for d in dynamic)
        self.fake_mode = FakeTensorMode(
            shape_env=ShapeEnv(duck_shape=False) if symbolic else None)
        self.sym_inputs: list = []  # (fake, source) of inputs with symbolic sizes
        # (source name, dim) of the sizes above that were constants when the
        # backend was called (None: not called, or no symbolic input)
        self.sizes_before_backend: set | None = None
        # sympy symbol -> SizeSymbol (the input size it stands for)
        self.size_symbols: dict = {}
        self.guards = Guards(code, nargs)
        self.guards.global_state()
        self.inputs: list[tuple[TensorV, torch.Tensor]] = []
        # the autograd nodes (whole_step.node_key) a backward traced into
        # this graph consumed; None while none was traced
        self.backward_consumed: set | None = None
        self.backward_error = ""  # eager's error for a second backward through it
        self._wrapped: dict[int, tuple[Value, Source, object]] = {}  # id(obj) -> value
        self._lazy_real: dict[int, object] = {}  # id(lazy container value) -> its object
        self._names: set[str] = set()
        self._cells: dict[int, CellV] = {}  # id(real cell) -> its symbolic cell
        self._cells_keep: list = []  # the real cells, alive while their ids are keys
        self.grad_enabled = torch.is_grad_enabled()
        self.initial_grad_enabled = self.grad_enabled
        self.autocast: list[tuple] = []  # (torch.autocast args, enter node) entered in the graph
        self.native_autocast: list[tuple] = []  # args of autocasts entered before it
        # the trace read process state that changes between calls (the
        # environment): even without tensor operations the frame gets an entry
        # under its guards, not a skip for good (another value may need ops)
        self.reads_process_state = False
        self.effects = SideEffects()
        self._int_inputs: dict[int, TensorV] = {}
        self.speculations: list = []  # (predicate TensorV, predicted bool, site)
        self.predicating = None  # the site whose sides are being traced (predication.py)
        # the branch sites whose form the trace read, with their versions:
        # the entry is valid while none of them changes form (in the order
        # added, so a rewound trace can drop what the breaking instruction added)
        self.spec_sites: dict = {}
        self.op_count = 0
        # torch-function modes entered by the trace, innermost last (their
        # values: values/modes.py); tf_bypass counts operations torch hands
        # no mode, which may record nodes while modes are entered
        self.tf_modes: list = []
        self.tf_bypass = 0
        # what the trace hands to other code objects (cache.CompiledEntry):
        # resume codes, and code -> dynamic-size hints
        self.resume_codes: list = []
        self.handover: dict = {}
        # instructions run by frames other than the root's own loop: child
        # frames (inlined calls, generators) and predicated sides. A root
        # instruction that ran none recorded only what ``mark`` sees.
        self.nested_steps = 0

    def mark(self) -> tuple:
        """How much the trace has recorded so far: equal marks before and
        after an instruction mean it added no graph node, input, guard,
        effect, speculation, wrapped object or shape fact, and ran no nested
        frame (the root frame's own stack and locals aside). ``spec_sites``
        is left out: it may only grow, and :meth:`rewind` truncates it."""
        env = self.fake_mode.shape_env
        return (self.nested_steps, len(self.graph.nodes), self.op_count, len(self.inputs),
                self.guards.size(), self.effects.version, len(self.speculations),
                len(self._wrapped), len(self._lazy_real), len(self._cells),
                len(self._int_inputs), len(self.sym_inputs), len(self.size_symbols),
                self.grad_enabled, len(self.autocast), len(self.native_autocast),
                len(self.tf_modes),
                self.predicating is None, len(self.resume_codes), len(self.handover),
                None if env is None else (len(env.guards), len(env.var_to_range),
                                          len(env.replacements),
                                          len(getattr(env, "deferred_runtime_asserts", ()))))

    def note_site(self, site) -> None:
        """The trace depends on the current form of speculation ``site``."""
        self.spec_sites.setdefault(site, site.version)

    def real_cell(self, cell, name: str, source) -> CellV:
        """The one symbolic cell for a real closure cell: functions sharing a
        cell (a frame and the closures it made) see each other's writes."""
        v = self._cells.get(id(cell))
        if v is None or v.pending is not None and v.pending[0] is not cell:
            v = CellV(None, name, external=True, pending=(cell, source))
            self._cells[id(cell)] = v
            self._cells_keep.append(cell)
        return v

    # -- wrapping real objects ------------------------------------------------

    def wrap(self, obj, source: Source | None) -> Value:
        """A symbolic value for a real object found at ``source``; installs
        the guards that make later uses of it valid."""
        t = type(obj)
        if t in _CONST_TYPES or isinstance(obj, _TORCH_CONST_TYPES) or t in (slice, range) or \
                t is np.float64:  # (a float: values/constants.py, NUMBER_TYPES)
            if source is None:
                return Const(obj)
            if isinstance(obj, (torch.dtype, torch.layout, torch.memory_format)):
                guard = functools.partial(self.guards.identity, source, obj)
            else:
                guard = functools.partial(self.guards.constant, source, obj)
            if t in NUMBER_TYPES and (source.name() in self.dynamic or
                                      self.dynamic_all is True and is_argument(source)):
                return (DynInt if t is int else DynFloat)(obj, source, guard=guard)
            return Const(obj, source, guard=guard)
        if isinstance(obj, torch.Tensor):
            return self.tensor_input(obj, source)
        if source is not None:
            seen = self._wrapped.get(id(obj))
            if seen is not None and seen[2] is obj:
                if seen[1] != source:
                    self.guards.same_object(source, seen[1])
                return seen[0]
        if type(obj) is dict and self.effects._attrs:
            for real, _, _ in self.effects._attrs.values():
                if instance_dict(real) is obj:
                    # its attributes were changed in this trace (replayed
                    # after the graph): the dict read now would be stale
                    raise GraphBreak("JF011", "reading an object's __dict__ after changing "
                                     "its attributes")
        v = self._wrap_new(obj, source)
        if source is not None:
            self._wrapped[id(obj)] = (v, source, obj)
            if getattr(v, "_lazy", None) is not None:
                self._lazy_real[id(v)] = obj
        return v

    def instance_dict_aliasing(self, obj, attr_read: bool) -> None:
        """Before the trace reads (``attr_read``) or changes an attribute of
        the real object ``obj``: a graph break where its instance dict is
        also a dict the trace holds -- changed (a read of the attribute would
        miss the change, replayed only after the graph) or, for a change,
        read at all (the dict would not show it)."""
        d = instance_dict(obj)
        if d is None:
            return
        seen = self._wrapped.get(id(d))
        if seen is None or seen[2] is not d:
            return
        if not attr_read or id(seen[0]) in self.effects._containers:
            raise GraphBreak("JF011", f"attributes of {type(obj).__name__} used together with "
                             "its __dict__, one of them changed")

    def instance_dict_guards(self) -> None:
        """Run-time guards for what :meth:`instance_dict_aliasing` checked at
        trace time: a dict from the frame the trace changed is not the
        instance dict of an object it read, and a dict it read is not that of
        an object whose attributes it changed (``o, o.__dict__`` passed as
        two arguments, a resume function's locals after ``d = vars(o)``)."""
        eff = self.effects
        if not eff._containers and not eff._attrs:
            return
        dicts, objs = [], []
        for v, src, obj in self._wrapped.values():
            if type(obj) is dict:
                dicts.append((src, id(v) in eff._containers))
            elif instance_dict(obj) is not None:
                objs.append((src, id(obj) in eff._attrs))
        k = self.guards.fb.const
        for dsrc, dict_changed in dicts:
            for osrc, obj_changed in objs:
                if dict_changed or obj_changed:
                    self.guards.add(f"{k(not_instance_dict)}({dsrc.expr()}, {osrc.expr()})",
                                    f"{dsrc.name()} is not {osrc.name()}.__dict__")

    def lazy_length(self, v: Value) -> Const | None:
        """``len(v)`` of a list, tuple, dict or set read from the frame and
        not looked into (appends to a list included), as a constant whose
        guard is pending like any value read from the frame: a branch on
        ``len(losses) > 3`` guards that relation, not the length (values.
        constants.relation); the length itself is guarded only if used as a
        value, and one that varies becomes a graph input (automatic dynamic).
        None for anything else."""
        real = self._lazy_real.get(id(v))
        if real is None or getattr(v, "_lazy", None) is None or v.source is None:
            return None
        extra = 0
        for name, args in getattr(v, "pending", ()):
            if isinstance(v, ListV) and name == "append":
                extra += 1
            elif isinstance(v, ListV) and name == "extend" and isinstance(args[0], TupleV):
                extra += len(args[0].items)
            else:
                return None
        v._type_guard()  # (a list's length, not a tuple's)
        n = len(real) + extra
        e, name = f"__jf_h_len({v.source.expr()})", f"len({v.source.name()})"
        src = ExprSource(f"({e} + {extra})", f"{name} + {extra}") if extra else \
            ExprSource(e, name)
        guard = functools.partial(self.guards.constant, src, n)
        if src.name() in self.dynamic or self.dynamic_all is True:
            return DynInt(n, src, guard=guard)
        return Const(n, src, guard=guard)

    def _wrap_new(self, obj, source: Source | None) -> Value:
        t = type(obj)
        if t is types.MethodType and obj.__name__ == "__exit__" and type(obj.__self__) in (
                torch.no_grad, torch.enable_grad, torch.set_grad_enabled) and source is not None:
            # a grad-mode context entered natively before a resume function
            ctx = obj.__self__
            self_src = AttrSource(source, "__self__")
            self.guards.type_is(self_src, ctx)
            self.guards.constant(AttrSource(self_src, "prev"), ctx.prev)
            kind = "grad_set" if type(ctx) is torch.set_grad_enabled else "grad"
            mode = type(ctx) is torch.enable_grad if kind == "grad" else ctx.mode
            return ExitV(CtxV(kind, mode), ctx.prev)
        if t is types.MethodType and obj.__name__ == "__exit__" and \
                type(obj.__self__) is torch.autocast and source is not None:
            # an autocast region entered natively before a resume function:
            # ops are traced under it, its exit runs natively
            ctx = obj.__self__
            args = (ctx.device, ctx.fast_dtype, ctx._enabled, ctx._cache_enabled)
            self.guards.type_is(AttrSource(source, "__self__"), ctx)
            k = self.guards.fb.const
            self.guards.add(f"{k(torch.get_autocast_dtype)}({ctx.device!r}) is {k(ctx.fast_dtype)}",
                            f"{ctx.device} autocast dtype is {ctx.fast_dtype}")
            self.native_autocast.append(args)
            ex = ExitV(CtxV("autocast_native", args), None)
            ex.source = source
            return ex
        if t is list and source is not None and source.name() in self.dynamic:
            v = self._tensor_list(obj, source)
            if v is not None:
                return v
        if t is tuple or t is list or (isinstance(obj, tuple) and hasattr(t, "_fields")):
            cls = None if t in (tuple, list) else t
            # of a namedtuple class made anew each call (before a break): its
            # class is guarded by recipe
            by_recipe = cls is not None and source is not None and \
                self._from_before_break(source) and namedtuple_recipe(cls) is not None

            def realize():
                if source is not None:
                    self.guards.length(source, obj, typed=not by_recipe)
                return [self.wrap(x, ItemSource(source, i) if source is not None else None)
                        for i, x in enumerate(obj)]
            if source is None:
                return ListV(realize()) if t is list else TupleV(realize(), cls=cls)
            tg = functools.partial(self.guards.type_is, source, obj)
            if by_recipe:
                tg = functools.partial(self.guards.namedtuple_class, TypeSource(source), cls)
            if t is list:
                return ListV(None, source, lazy=realize, type_guard=tg)
            return TupleV(None, source, cls=cls, lazy=realize, type_guard=tg)
        if t is set:
            if not all(type(k) in _CONST_TYPES for k in obj):
                if source is not None:
                    self.guards.identity(source, obj)
                return ObjV(obj, source)

            def realize_set():
                if source is not None:
                    self.guards.add(f"{source.expr()} == {self.guards.fb.const(frozenset(obj))}",
                                    f"{source.name()} == {set(obj)!r}")
                return [Const(x) for x in obj]
            if source is None:
                return SetV(realize_set())
            return SetV(None, source, lazy=realize_set,
                        type_guard=functools.partial(self.guards.type_is, source, obj))
        if t is dict:
            if not all(type(k) in _CONST_TYPES for k in obj):
                if source is not None:
                    self.guards.identity(source, obj)
                return ObjV(obj, source)

            def realize_dict():
                if source is not None:
                    self.guards.dict_keys(source, obj)
                return {k: self.wrap(v, ItemSource(source, k) if source is not None else None)
                        for k, v in obj.items()}
            if source is None:
                return DictV(realize_dict())
            return DictV(None, source, lazy=realize_dict,
                         type_guard=functools.partial(self.guards.type_is, source, obj))
        if isinstance(obj, (np.ndarray, np.generic)) and source is not None:
            v = wrap_numpy(self, obj, source)  # a graph input or a constant
            if v is not None:
                return v
        if t in VIEW_TYPES and source is not None:
            v = wrap_dict_view(self, obj, source)  # a live view of its dict
            if v is not None:
                return v
        if t is os._Environ and source is not None:
            # the process environment: each read guarded on its value
            self.guards.type_is(source, obj)
            return EnvironV(obj, source)
        if t is types.MethodType and source is not None:
            # a bound method is a new object each time it is looked up:
            # guard what it binds, not its identity
            self.guards.identity(AttrSource(source, "__func__"), obj.__func__)
            self.guards.type_is(AttrSource(source, "__self__"), obj.__self__)
            return ObjV(obj, source)
        if t is types.BuiltinMethodType and source is not None and _bound_to_object(obj):
            # ``lst.append``, ``x.add``: a method of an object, new each time
            # it is looked up: the receiver (with its own guards) and the name
            self.guards.type_is(source, obj)
            self.guards.constant(AttrSource(source, "__name__"), obj.__name__)
            return MethodV(self.wrap(obj.__self__, AttrSource(source, "__self__")), obj.__name__)
        if t is types.BuiltinMethodType and source is not None and \
                isinstance(getattr(obj, "__self__", None), type) and \
                getattr(obj, "__module__", None) is None:
            # a C classmethod bound to its class (``dict.fromkeys``, torch
            # 2.15's ``Function.apply``), new each time it is looked up: the
            # class and the name, not the bound object's identity
            self.guards.type_is(source, obj)
            self.guards.identity(AttrSource(source, "__self__"), obj.__self__)
            self.guards.constant(AttrSource(source, "__name__"), obj.__name__)
            return ObjV(obj, source)
        if source is not None and (t is types.FunctionType or t is functools.partial or
                                   isinstance(obj, torch.nn.Module)):
            # Guarded by what the trace reads from them, so that one made anew
            # each call (before a graph break, in the resume function's
            # arguments) is no new entry each call: a function called inline
            # by its code object (its defaults and cells as they are read), a
            # partial by its function, arguments and keywords, a module by its
            # type, hooks and the attributes, parameters and submodules read.
            # Any other use of the object itself guards its identity (ObjV.obj).
            self.guards.type_is(source, obj)
            if isinstance(obj, torch.nn.Module):
                self.guards.module_seen(source, obj)
            return ObjV(obj, source, identity=functools.partial(self.guards.identity, source, obj))
        if isinstance(obj, type) and source is not None and self._from_before_break(source) \
                and self.guards.namedtuple_class(source, obj):
            # a namedtuple class made before the break, anew each call
            return ObjV(obj, source, identity=functools.partial(self.guards.identity, source, obj))
        if isinstance(obj, (types.FunctionType, types.BuiltinFunctionType, types.ModuleType,
                            type, types.MethodType, functools.partial, enum.Enum,
                            torch.nn.Module)) or callable(obj) and not hasattr(obj, "__dict__"):
            if source is not None:
                self.guards.identity(source, obj)
            return ObjV(obj, source)
        if source is not None:
            self.guards.type_is(source, obj)
            if isinstance(obj, dict) and t is not dict:
                return RealDictV(obj, source)  # a dict subclass: its builtin reads
        return ObjV(obj, source)

    def _from_before_break(self, source: Source) -> bool:
        """Is ``source`` an argument of a resume function (or read from one):
        a value the frame had before a graph break, possibly made anew each
        call?"""
        if self.code not in RESUME_CODES:
            return False
        while not isinstance(source, ArgSource):
            source = getattr(source, "base", None)
            if source is None:
                return False
        return True

    def tensor_input(self, t: torch.Tensor, source: Source | None) -> TensorV:
        if source is None:
            raise GraphBreak("JF009", "a tensor with no known source (created outside the "
                             "traced code and not reachable from the frame)")
        seen = self._wrapped.get(id(t))
        if seen is not None and seen[2] is t:
            if seen[1] != source:
                self.guards.same_object(source, seen[1])
            return seen[0]
        if type(t) not in (torch.Tensor, torch.nn.Parameter) and not isinstance(
                t, torch.nn.parameter.Buffer):
            raise GraphBreak("JF009", f"tensor subclass {type(t).__name__}")
        dims = self._dynamic_dims(t, source)
        if dims and self.fake_mode.shape_env is None:
            raise NeedsShapeEnv()
        name = self._unique_name(re.sub(r"\W+", "_", source.name()).strip("_") or "input")
        node = self.root_graph.placeholder(name)
        if dims:
            fake = self._symbolic_fake(t, source, dims)
            dims = [d for d, n in enumerate(fake.shape) if isinstance(n, torch.SymInt)]
        else:
            fake = data_unknown(self.fake_mode.from_tensor(t, static_shapes=True))
        self.guards.tensor(source, t, dims)
        node.meta["example_value"] = fake
        v = TensorV(node, fake, source, cls=type(t))
        self.inputs.append((v, t))
        self._wrapped[id(t)] = (v, source, t)
        return v

    def _unique_name(self, base: str) -> str:
        name, i = base, 1
        while name in self._names:
            i += 1
            name = f"{base}_{i}"
        self._names.add(name)
        return name

    # -- recording operations --------------------------------------------------

    @contextlib.contextmanager
    def subgraph(self):
        """Record operations into a fresh graph (a function traced for a
        transform, values/transforms.py) until the block ends; inputs read
        from the frame meanwhile still go to the root graph."""
        outer = self.graph
        self.graph = fx.Graph()
        try:
            yield self.graph
        finally:
            self.graph = outer

    def call(self, kind: str, target, args: tuple, kwargs: dict) -> Value:
        """Record ``target(*args, **kwargs)`` (``call_function``) or
        ``args[0].target(*args[1:], **kwargs)`` (``call_method``)."""
        if self.tf_modes and not self.tf_bypass:
            # every route that records an operation while a mode is entered
            # asks the mode first (Translator.through_modes); one that did not
            # would skip the mode's handler
            raise GraphBreak("JF016", f"{_target_name(target)} inside a torch-function mode, "
                             "on a path that does not dispatch to it")
        if kind == "call_function" and target in (torch.stack, torch.cat):
            out = self.list_op(target, args, kwargs)
            if out is not None:
                return out
        if any(isinstance(a, (DynInt, DynFloat, DerivedConst)) and a._guard is not None
               for a in args) and number_operands_ok(kind, target, args):
            # try the varying numbers as graph inputs; an operator that needs a
            # Python int (a size, a dim) specialises them instead
            floating = [a.fake.dtype.is_floating_point or a.fake.dtype.is_complex
                        for a in args if isinstance(a, TensorV)]
            floats_ok = bool(floating) and all(floating)
            try:
                tensorized = tuple(self._graph_number(a, floats_ok) or a for a in args)
                if any(x is not a for x, a in zip(tensorized, args)):
                    return self._call(kind, target, tensorized, kwargs)
            except GraphBreak:
                pass
        return self._call(kind, target, args, kwargs)

    def _graph_number(self, v: Value, floats_ok: bool) -> TensorV | None:
        """``v`` as a 0-d graph value when it is a number that varies between
        calls (or arithmetic on such numbers: ``self.steps + 1``) whose
        value the trace has not used; else None. Floats only as operands of
        floating-point tensors (the graph then computes what the Python
        float would: a 0-d tensor of another category would promote)."""
        if not isinstance(v, Const) or v._guard is None:
            return None
        g = self._graph_number_arith(v, floats_ok)
        if g is None and varies(v) and not isinstance(v, (DynInt, DynFloat)) and \
                (type(v._value) is int or type(v._value) in FLOAT_TYPES and floats_ok):
            # computed from varying numbers by operations the graph does
            # not model (math.cos, division, abs, ...): computed natively
            # before the graph, with Python's own arithmetic, and handed to
            # it as a 0-d input (never a constant that would recompile)
            g = self.int_input(v)
        return g

    def _graph_number_arith(self, v: Const, floats_ok: bool) -> TensorV | None:
        if isinstance(v, DynInt) and type(v._value) is int:
            return self.int_input(v)
        if isinstance(v, DynFloat) and floats_ok:
            return self.int_input(v)
        if isinstance(v, DerivedConst) and v.fn in _GRAPH_ARITH and \
                type(v._value) in (NUMBER_TYPES if floats_ok else (int,)):
            ops = []
            for a in v.args:
                if type(a._value) is not type(v._value):
                    return None  # mixed int and float arithmetic: not modelled
                g = self._graph_number(a, floats_ok)
                if g is None and a._guard is not None:
                    return None  # read from the frame and not varying: specialised
                ops.append(g if g is not None else a)
            if not any(isinstance(o, TensorV) for o in ops):
                return None
            fn = _GRAPH_ARITH[v.fn]  # numbers are immutable: `+=` is `+`
            if not isinstance(ops[0], TensorV):  # the 0-d tensor first: a tensor result
                if fn is operator.sub:
                    return self._call("call_function", torch.rsub, (ops[1], ops[0]), {})
                ops.reverse()
            return self._call("call_function", fn, tuple(ops), {})
        return None

    def int_input(self, c: "DynInt", vector: bool = False) -> TensorV:
        """A number that varies between calls as a graph input: read from
        its source, or (a number computed from such, ``DerivedConst``)
        recomputed from its operands' sources by the same Python operations."""
        v = self._int_inputs.get((id(c), vector))
        if v is None:
            floating = type(c._value) in FLOAT_TYPES
            base = c.source if c.source is not None else rerun_source(c)
            if base is None:
                raise GraphBreak("JF015", "a number computed from values the graph "
                                 "cannot recompute")
            src = IntTensorSource(base, vector, floating)
            # (a derived number: its type, as computed, e.g. int ** -1 is a float)
            self.guards.type_is(base, c._value)
            node = self.root_graph.placeholder(self._unique_name(
                re.sub(r"\W+", "_", c.source.name() if c.source else "derived").strip("_") +
                ("_float" if floating else "_int")))
            real = torch.tensor([c._value] if vector else c._value,
                                dtype=torch.float64 if floating else None)
            fake = data_unknown(self.fake_mode.from_tensor(real, static_shapes=True))
            node.meta["example_value"] = fake
            v = TensorV(node, fake, src)
            self.inputs.append((v, real))
            self._int_inputs[(id(c), vector)] = v
        return v

    def float_list_input(self, items: list) -> TensorV | None:
        """A list of Python floats, some varying between calls (a
        simulator's state handed to ``np.asarray``), as one float64 vector
        input computed natively from the values' sources (recomputing the
        derived ones with Python's arithmetic: bitwise what the program
        makes of them). None when an item cannot be recomputed or is not a
        float (then the values are specialised)."""
        if not items or not all(isinstance(c, Const) and type(c._value) in FLOAT_TYPES
                                for c in items):
            return None
        srcs = []
        for c in items:
            if c._guard is None:
                if not math.isfinite(c._value):
                    return None  # (no literal for it)
                srcs.append(None)  # a literal or a value already guarded
                continue
            src = c.source if c.source is not None else rerun_source(c)
            if src is None:
                return None
            srcs.append(src)
        for c, src in zip(items, srcs):
            if src is not None:
                self.guards.type_is(src, c._value)
        exprs = [repr(float(c._value)) if src is None else src.expr()
                 for c, src in zip(items, srcs)]
        names = [repr(float(c._value)) if src is None else src.name()
                 for c, src in zip(items, srcs)]
        src = ExprSource(f"__jf_torch.tensor([{', '.join(exprs)}], dtype=__jf_torch.float64)",
                         f"tensor([{', '.join(names)}])")
        node = self.root_graph.placeholder(self._unique_name("floats"))
        real = torch.tensor([c._value for c in items], dtype=torch.float64)
        fake = data_unknown(self.fake_mode.from_tensor(real, static_shapes=True))
        node.meta["example_value"] = fake
        v = TensorV(node, fake, src)
        self.inputs.append((v, real))
        return v

    def _call(self, kind: str, target, args: tuple, kwargs: dict) -> Value:
        node_args = tuple(to_node(a) for a in args)
        node_kwargs = {k: to_node(v) for k, v in kwargs.items()}
        fake_args = tuple(to_fake(a) for a in args)
        fake_kwargs = {k: to_fake(v) for k, v in kwargs.items()}
        try:
            with contextlib.ExitStack() as stack:
                stack.enter_context(self.fake_mode)
                fake_execution(stack, symbolic=bool(self.sym_inputs))
                stack.enter_context(torch.set_grad_enabled(self.grad_enabled))
                for dev, dtype, enabled, cache in self.native_autocast + [
                        a for a, _ in self.autocast]:
                    stack.enter_context(torch.autocast(dev, dtype=dtype, enabled=enabled,
                                                       cache_enabled=cache))
                if kind == "call_function":
                    out = target(*fake_args, **fake_kwargs)
                else:
                    out = getattr(fake_args[0], target)(*fake_args[1:], **fake_kwargs)
        except DynamicOutputShapeException as e:
            if self.fake_mode.shape_env is None:
                raise NeedsShapeEnv() from None
            raise GraphBreak("JF006", f"{_target_name(target)}: {e}") from None
        except DataDependentOutputException as e:
            raise GraphBreak("JF004", f"{_target_name(target)}: {e}") from None
        except GraphBreak:
            raise
        except Exception as e:  # noqa: BLE001
            # The program would raise here too; run it natively so the user
            # gets eager's exception from their own line.
            raise would_raise(type(e), f"{_target_name(target)}: "
                              f"{str(e).splitlines()[0] if str(e) else ''}") from None
        if self.backward_consumed is not None:
            refuse_new_history(out, _target_name(target))
        bindings = self._unbacked_bindings(out)
        node = self.graph.create_node(kind, target, node_args, node_kwargs)
        if bindings:
            node.meta["unbacked_bindings"] = bindings
        self.op_count += 1
        return self._wrap_result(node, out)

    def _unbacked_bindings(self, out):
        """Where in ``out`` the sizes an operation just made up live (an
        unbacked symbol per data-dependent size: nonzero's row count, a
        masked selection's length), as torch.fx records them on the node
        (``meta['unbacked_bindings']``: symbol -> key path into the result).
        Taking them off the shape environment's list of fresh symbols is what
        lets a backend retrace the graph: a retrace refuses to start while
        symbols made by an earlier trace are still waiting for a home."""
        env = self.fake_mode.shape_env
        if env is None or not env.pending_fresh_unbacked_symbols:
            return None
        try:
            return compute_unbacked_bindings(env, out)
        except Exception:  # noqa: BLE001 -- a symbol not found in the result
            # the node gets no binding; a backend that needs the symbol's
            # source refuses the graph (and runs it as captured)
            env.pending_fresh_unbacked_symbols.clear()
            return None

    def _wrap_result(self, node: fx.Node, out) -> Value:
        if isinstance(out, torch.Tensor):
            node.meta["example_value"] = out
            return TensorV(node, out)
        if isinstance(out, (tuple, list)) and all(
                isinstance(o, torch.Tensor) or o is None or isinstance(o, (bool, int, float))
                for o in out) and any(isinstance(o, torch.Tensor) for o in out):
            node.meta["example_value"] = out
            items = []
            for i, o in enumerate(out):
                if not isinstance(o, torch.Tensor):
                    items.append(Const(o))  # e.g. attention weights not asked for
                    continue
                g = self.graph.call_function(operator.getitem, (node, i))
                g.meta["example_value"] = o
                items.append(TensorV(g, o))
            cls = type(out)
            if cls is not tuple and cls is not list and is_named_tuple_cls(cls):
                # torch.return_types.* (structseqs) and namedtuples keep their
                # class: ``.values``/``.indices`` are fields, rebuilt as cls
                return TupleV(items, cls=cls)
            return TupleV(items) if isinstance(out, tuple) else ListV(items)
        if out is None:
            # mutation-only operations (setitem, in-place initialisers) stay
            return Const(None)
        if isinstance(out, torch.SymInt):
            if out.node.expr.is_number:
                self.graph.erase_node(node)
                self.op_count -= 1
                return Const(int(out.node.expr))
            if not out.node.has_hint():
                raise GraphBreak("JF006", "an operation returned a size that depends on data")
            node.meta["example_value"] = out
            return SymV(node, out)
        if isinstance(out, torch.Size) and not all(isinstance(n, int) for n in out):
            node.meta["example_value"] = out
            return TupleV([self.sym_value(n, functools.partial(
                self.graph.call_function, operator.getitem, (node, i)))
                for i, n in enumerate(out)], cls=torch.Size)
        if isinstance(out, (bool, int, float, torch.Size, torch.dtype, torch.device,
                            torch.layout, torch.memory_format)):
            # a metadata result (e.g. a size or a dtype query): the node is
            # dead; keep the constant
            self.graph.erase_node(node)
            self.op_count -= 1
            return Const(out)
        raise GraphBreak("JF023", f"operation returned {type(out).__name__}")

    # -- finishing ---------------------------------------------------------------

    def finish(self, outputs: list[TensorV]) -> tuple[fx.GraphModule, list]:
        """Close the graph with ``outputs``; drop unused inputs. Returns the
        GraphModule and the used (TensorV, real tensor) inputs in order.

        The graph leaves global state as it found it (backends need not
        preserve mode switches): the replacement sets what must persist."""
        for _, node in reversed(self.autocast):  # the replacement re-enters them natively
            self.graph.call_function(torch.amp.autocast_mode._exit_autocast, (node,))
        if self.grad_enabled != self.initial_grad_enabled:
            self.graph.call_function(set_grad_enabled_c, (self.initial_grad_enabled,))
        self.graph.output(tuple(v.node for v in outputs))
        used = []
        for v, real in self.inputs:
            if v.node.users:
                used.append((v, real))
            else:
                self.graph.erase_node(v.node)
        if used and any(isinstance(d, torch.SymInt) for v, _ in used
                        for d in getattr(v.fake, "shape", ())):
            used += self.size_inputs()  # kept even if unused: see size_inputs
        self.graph.lint()
        gm = fx.GraphModule(torch.nn.Module(), self.graph)
        return gm, used


def _bound_to_object(method) -> bool:
    """A builtin method bound to an object (not a module's function, nor a
    class's: ``len``, ``dict.fromkeys``)."""
    recv = getattr(method, "__self__", None)
    # a pybind11 function (torch._C._get_tracing_state) is bound to its
    # function record and names its module; a method of an object names none
    return recv is not None and not isinstance(recv, (types.ModuleType, type)) and \
        getattr(method, "__module__", None) is None


def _target_name(target) -> str:
    if isinstance(target, str):
        return f".{target}()"
    return getattr(target, "__qualname__", None) or getattr(target, "__name__", repr(target))


def instance_dict(obj):
    """The instance dict of a user object or module (None for other
    objects: functions, classes, modules of code, builtins)."""
    if isinstance(obj, (type, types.FunctionType, types.ModuleType, types.BuiltinFunctionType,
                        types.MethodType)):
        return None
    try:
        d = object.__getattribute__(obj, "__dict__")
    except (AttributeError, TypeError):
        return None
    return d if type(d) is dict else None


def not_instance_dict(d, obj) -> bool:
    """Guard helper: ``d`` is not ``obj``'s instance dict."""
    return instance_dict(obj) is not d
