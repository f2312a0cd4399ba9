"""Guards: the conditions under which a compiled entry is valid.

In: checks registered while tracing, each on a source the trace actually read
(tensor metadata, specialised constants, object identity and type, container
lengths and keys, global torch state), the attribute resolutions the trace
made through classes (:meth:`Guards.class_attr`) and the modules it called
without running hooks (:meth:`Guards.module_plain`).
Out: one generated function over the frame's argument slots that evaluates
all checks as a single boolean expression (False, never an exception, when a
check cannot be evaluated), plus a verbose twin that names the first failing
check (for recompile logs), and readable guard lines.

Class resolutions and plain modules are checked in C (``janus_frame._C``),
each kind by one call per entry: a class costs a version-tag comparison
while it is unchanged, a module a few dict lookups.

Module trees: the checks that only depend on which objects a frame's
``nn.Module``s hold (a submodule's type and identity, an attribute that is a
number or a string, a name absent from the instance dict, the keys of
``_parameters``) are skipped while none of the dicts they were read from
changed since the last call that ran them all. One C call compares those
dicts: the versions of the tables (CPython gives a dict a new one at every
change: a submodule or parameter replaced), the items of the instance dicts
(an attribute set, ``training`` flipped; 3.13 does not give an instance
dict a new version when its object's inline values change); after any
change the full check runs once more and, if it passes, records the new
versions. Tensor metadata (a parameter's shape, dtype, ``requires_grad``,
changed in place by ``p.data = ...`` or ``model.half()``), hooks, classes
and everything outside the modules are checked at every call.
"""
from __future__ import annotations

import ast
import math
import types

import torch

from .. import _C
from ..torch_compat import len_torch_dispatch_stack, len_torch_function_stack
from .codegen import FunctionBuilder
from .sources import ArgSource, AttrSource, ClosureSource, GlobalSource, ItemSource, Source

MISSING = _C.MISSING  # what a class lookup finds for an absent name

# the dicts of a module that _C.tree_record pins beside its instance dict
_TABLES = ("_modules", "_parameters", "_buffers")
# sources a module tree may start from: read without running user code
_ROOTS = (ArgSource, GlobalSource, ClosureSource)
# a constant of these types is the same value while it is the same object
_IMMUTABLE = (int, float, complex, str, bytes, bool, type(None))
_HEAPTYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: only instances of such classes can change class


class Guards:
    def __init__(self, orig_code: types.CodeType, nargs: int) -> None:
        self.fb = FunctionBuilder(orig_code, nargs)
        self._clauses: dict[str, str] = {}  # expression -> readable description
        self._dynamic_ok: dict[str, str] = {}  # int-value clause -> its source's name
        self._value_only: dict[str, str] = {}  # bool/None clause -> its source's name
        self._tensor_shapes: dict[str, tuple] = {}  # tensor clause -> (name, expr, shape)
        # class -> {(name, start): what its MRO lookup found} (see class_attr)
        self._classes: dict[type, dict[tuple, object]] = {}
        self._modules: dict[str, str] = {}  # expression of a plain module -> its name
        # module trees (see the module docstring): module source -> module,
        # what each clause needs to be implied by them (expr -> condition),
        # objects whose sources' items may be implied (immutable tuples)
        self._tree: dict[Source, object] = {}
        self._conds: dict[str, tuple] = {}
        self._objs: dict[Source, object] = {}
        self.tree_skipped = 0  # clauses the fast path skips (set by build)
        self._finished = False

    def add(self, expr: str, desc: str, cond: tuple | None = None) -> None:
        """``cond``: when the clause holds as long as the module trees are
        unchanged (see :meth:`_implied`)."""
        if expr not in self._clauses:
            self._clauses[expr] = desc
        if cond is not None:
            self._conds.setdefault(expr, cond)

    def module_seen(self, src: Source, module) -> None:
        """An ``nn.Module`` read at ``src``: a node of a module tree."""
        self._tree.setdefault(src, module)

    def __len__(self) -> int:
        return len(self._clauses)

    def size(self) -> tuple:
        """How many facts of each kind are recorded (see ``OutputGraph.mark``)."""
        return (len(self._clauses), sum(len(v) for v in self._classes.values()),
                len(self._modules), len(self._dynamic_ok), len(self._tensor_shapes))

    # -- kinds ---------------------------------------------------------------

    def type_is(self, src: Source, obj) -> None:
        t = type(obj)
        self._objs.setdefault(src, obj)
        self.add(f"__jf_h_type({src.expr()}) is {self.fb.const(t)}",
                 f"type({src.name()}) is {t.__qualname__}", ("type", src, obj))

    def identity(self, src: Source, obj) -> None:
        self.add(f"{src.expr()} is {self.fb.const(obj)}",
                 f"{src.name()} is the same object ({_short(obj)})", ("det", src))

    def class_attr(self, cls: type, name: str, found, start: type | None = None) -> None:
        """The trace relied on ``cls``'s MRO (after ``start``: a ``super()``
        lookup) resolving ``name`` to ``found`` (the raw class-dict entry, or
        MISSING). Methods, properties, class attributes, ``__call__``,
        ``__init__``, ``__getattr__``: everything inlined through a class."""
        self._classes.setdefault(cls, {})[(name, start)] = found

    def instance_lacks(self, src: Source, name: str) -> None:
        """``name`` is not in the instance dict at ``src`` (so the class's
        attribute is what a lookup finds)."""
        self.add(f"({name!r} not in {src.expr()}.__dict__)",
                 f"{name!r} not set on the instance {src.name()}", ("module", src))

    def instance_has(self, src: Source, name: str) -> None:
        """``name`` is in the instance dict at ``src``."""
        self.add(f"({name!r} in {src.expr()}.__dict__)",
                 f"{name!r} set on the instance {src.name()}", ("module", src))

    def module_plain(self, src: Source) -> None:
        """The ``nn.Module`` at ``src`` has no hooks and no ``forward`` of its
        own, and no global module hooks exist: calling it is calling its
        class's ``forward``."""
        self._modules.setdefault(src.expr(), src.name())

    def namedtuple_class(self, src: Source, cls: type) -> bool:
        """A class made by ``collections.namedtuple``, guarded by its recipe
        (name, fields, defaults, the generated methods) instead of its
        identity: one made anew each call (before a graph break) is the same
        class to the trace. False (nothing guarded) if ``cls`` is none."""
        recipe = namedtuple_recipe(cls)
        if recipe is None:
            return False
        k = self.fb.const
        self.add(f"{k(namedtuple_recipe)}({src.expr()}) == {k(recipe)}",
                 f"{src.name()} is a namedtuple class {cls.__name__}{recipe[3]}")
        return True

    def same_object(self, src: Source, other: Source) -> None:
        self.add(f"{src.expr()} is {other.expr()}", f"{src.name()} is {other.name()}",
                 ("det", src, other))

    def constant(self, src: Source, value) -> None:
        """Type and value of a specialised Python constant."""
        e = src.expr()
        cond = ("det", src) if type(value) in _IMMUTABLE else None
        if value is None or isinstance(value, bool):
            expr = f"{e} is {value!r}"
            self.add(expr, f"{src.name()} is {value!r}", cond)
            # a flag no recompile can generalise (see FailedGuard.value_source)
            self._value_only[expr] = src.name()
            return
        t = type(value)
        tc = self.fb.const(t)
        if isinstance(value, float) and math.isnan(value):
            self.add(f"(__jf_h_type({e}) is {tc} and {e} != {e})", f"{src.name()} is nan", cond)
            return
        # repr of inf (and of complex infinities) is not a Python literal
        literal = t in (int, str, bytes) or t is float and math.isfinite(value) or \
            t is complex and math.isfinite(value.real) and math.isfinite(value.imag)
        lit = repr(value) if literal else self.fb.const(value)
        expr = f"(__jf_h_type({e}) is {tc} and {e} == {lit})"
        self.add(expr, f"{src.name()} == {value!r} ({t.__name__})", cond)
        if t in (int, float):  # if this fails, the recompile may make it a graph input
            self._dynamic_ok[expr] = src.name()

    def length(self, src: Source, obj, typed: bool = True) -> None:
        """The type (unless ``typed`` is False: guarded otherwise) and the length."""
        if typed:
            self.type_is(src, obj)
        expr = f"__jf_h_len({src.expr()}) == {len(obj)}"
        self.add(expr, f"len({src.name()}) == {len(obj)}", ("len", src, obj))
        if type(obj) is list:  # a list of tensors whose length varies: stacked (output.py)
            self._dynamic_ok[expr] = src.name()

    def dict_keys(self, src: Source, obj: dict) -> None:
        self.type_is(src, obj)
        keys = list(obj.keys())
        self.add(f"__jf_h_list({src.expr()}) == {self.fb.const(keys)}",
                 f"keys of {src.name()} == {keys!r}", ("table", src))

    def tensor(self, src: Source, t: torch.Tensor, dynamic: list[int] = ()) -> None:
        """Type, dtype, sizes, strides, requires_grad and device of an input.
        ``dynamic`` dimensions are not checked here: the shape environment's
        guards (``OutputGraph.shape_guards``) constrain them; such a tensor is
        contiguous and stays so."""
        e = src.expr()
        if dynamic:
            layout = [f"{e}.dim() == {t.dim()}"] + [
                f"{e}.shape[{d}] == {n}" for d, n in enumerate(t.shape) if d not in dynamic]
            layout.append(f"{e}.is_contiguous()")
            shape_desc = tuple("*" if d in dynamic else n for d, n in enumerate(t.shape))
            stride_desc = "contiguous"
        else:
            layout = [f"{e}.shape == {tuple(t.shape)!r}", f"{e}.stride() == {tuple(t.stride())!r}"]
            shape_desc, stride_desc = tuple(t.shape), f"stride {tuple(t.stride())}"
        parts = [
            f"__jf_h_type({e}) is {self.fb.const(type(t))}",
            f"{e}.dtype is {self.fb.const(t.dtype)}",
            *layout,
            f"{e}.requires_grad is {t.requires_grad!r}",
            # the CPU is one device: a flag read is a third of a device comparison
            f"{e}.is_cpu is True" if t.device.type == "cpu" else
            f"{e}.device == {self.fb.const(t.device)}",
        ]
        expr = "(" + " and ".join(parts) + ")"
        self.add(expr, f"{src.name()}: {type(t).__name__} {t.dtype} {shape_desc} "
                       f"{stride_desc} requires_grad={t.requires_grad} on {t.device}")
        # if this fails on sizes alone, the recompile makes those dims dynamic
        self._tensor_shapes[expr] = (src.name(), e, tuple(t.shape))

    def global_state(self) -> None:
        """Ambient torch state every graph depends on."""
        k = self.fb.const
        self.add(f"{k(torch.is_grad_enabled)}() is {torch.is_grad_enabled()!r}",
                 f"grad mode is {'on' if torch.is_grad_enabled() else 'off'}")
        self.add(f"{k(torch.get_default_dtype)}() is {k(torch.get_default_dtype())}",
                 f"default dtype is {torch.get_default_dtype()}")
        ac = torch.is_autocast_enabled("cpu")
        self.add(f"{k(torch.is_autocast_enabled)}('cpu') is {ac!r}",
                 f"cpu autocast is {'on' if ac else 'off'}")
        # a user's torch-function or dispatch mode changes what every torch
        # call does: graphs are traced and run only with none active
        self.add(f"{k(user_modes_active)}() is False", "no torch function or dispatch mode active")

    # -- output ----------------------------------------------------------------

    def _finish(self) -> None:
        """The aggregate checks, after every other (they read sources whose
        types the clauses before them checked)."""
        if self._finished:
            return
        self._finished = True
        k = self.fb.const
        if self._classes:
            specs, what = [], []
            for cls, found in self._classes.items():
                keys = list(found)
                specs.append((cls, [_C.type_tag(cls)], tuple(n for n, _ in keys),
                              tuple(found[key] for key in keys),
                              tuple(st for _, st in keys)))
                what.append(f"{cls.__qualname__}.{{{', '.join(sorted({n for n, _ in keys}))}}}")
            self.add(f"{k(_C.class_attrs_ok)}({k(tuple(specs))})",
                     f"class attributes resolve as traced: {'; '.join(what)}")
        if self._modules:
            from torch.nn.modules import module as M

            dicts = (M._global_forward_hooks, M._global_forward_pre_hooks,
                     M._global_backward_hooks, M._global_backward_pre_hooks)
            mods = "".join(f"{e}, " for e in self._modules)
            self.add(f"{k(_C.modules_plain)}(({mods}), {k(dicts)})",
                     f"no module hooks and no instance forward: "
                     f"{', '.join(self._modules.values())}")

    # -- module trees ----------------------------------------------------------

    def _tree_plan(self):
        """(roots, mods, implied): the module sources the fast path pins (each
        reached from a root through dicts it pins: see _fixed), the roots
        among them, and the clauses they imply. Registers the class
        resolutions the fast path relies on (``_finish`` checks them)."""
        memo: dict = {}
        self._tree = {s: m for s, m in self._tree.items() if _generic_module(type(m))}
        mods = [s for s in self._tree if self._fixed(s, memo)]
        # (what _fixed may start from: a pinned module's parent is pinned)
        self._tree = {s: self._tree[s] for s in mods}
        fixed_mods = set(mods)
        memo.clear()
        implied = [ex for ex, cond in self._conds.items()
                   if ex in self._clauses and self._holds(cond, fixed_mods, memo)]
        roots = [s for s in mods if isinstance(s, _ROOTS)]
        if not roots or not implied:
            return [], [], []
        for cls in {type(self._tree[s]) for s in mods}:
            # a class that gains a __getattribute__ or a data descriptor for
            # an attribute read from the instance dict would read otherwise
            found = self._classes.setdefault(cls, {})
            for key in [("__getattribute__", None)] + [(n, None) for n in _TABLES]:
                found.setdefault(key, _C.type_lookup(cls, key[0]))
        for src in memo:
            if memo[src] and isinstance(src, AttrSource) and src.base in self._tree:
                cls = type(self._tree[src.base])
                self._classes.setdefault(cls, {}).setdefault(
                    (src.attr, None), _C.type_lookup(cls, src.attr))
        return roots, mods, implied

    def _fixed(self, src: Source, memo: dict) -> bool:
        """Is the object at ``src`` the same one while the module trees are
        unchanged? A root (its identity is compared), an entry of a pinned
        module's ``_modules``/``_parameters``/``_buffers``, an attribute in a
        pinned module's instance dict (no data descriptor on its class), its
        ``__class__``, or an item of such an immutable tuple."""
        if src in memo:
            return memo[src]
        memo[src] = False  # (a cycle is not fixed)
        ok = False
        if isinstance(src, _ROOTS):
            ok = src in self._tree
        elif isinstance(src, AttrSource):
            m = self._tree.get(src.base, None)
            if m is not None and self._fixed(src.base, memo):
                d = getattr(m, "__dict__", None)
                if src.attr == "__class__":
                    ok = True
                elif isinstance(d, dict) and src.attr in d:
                    found = _C.type_lookup(type(m), src.attr)
                    ok = found is MISSING or not _data_descriptor(found)
        elif isinstance(src, ItemSource):
            base = src.base
            if isinstance(base, AttrSource) and base.attr in _TABLES and base.base in self._tree:
                ok = self._fixed(base, memo)
            elif type(self._objs.get(base)) is tuple:
                ok = self._fixed(base, memo)
        memo[src] = ok
        return ok

    def _holds(self, cond: tuple, mods: set, memo: dict) -> bool:
        kind, src = cond[0], cond[1]
        if kind == "module":  # the instance dict of a pinned module
            return src in mods and self._fixed(src, memo)
        if not self._fixed(src, memo):
            return False
        if kind == "det":
            return len(cond) == 2 or self._fixed(cond[2], memo)
        if kind == "type":  # the C check compares a pinned module's class
            return src in mods or not type(cond[2]).__flags__ & _HEAPTYPE
        if kind == "len":
            return type(cond[2]) is tuple or _is_table(src, mods)
        if kind == "table":
            return _is_table(src, mods)
        return False

    def lines(self) -> list[str]:
        self._finish()
        out = list(self._clauses.values())
        if self.tree_skipped:
            out.append(f"({self.tree_skipped} of the checks above are skipped while the "
                       f"module trees are unchanged since the last call that ran them all)")
        return out

    def build(self, lineno: int, globals_: dict, closure: tuple | None = None):
        """Returns (guard_fn, explain_failure(func, args) -> str | None)."""
        roots, mods, implied = ([], [], []) if self._finished else self._tree_plan()
        self._finish()
        exprs = list(self._clauses)
        # a check that cannot be evaluated (an attribute or key gone) is a
        # failed check, never an exception at the user's call
        body = ["try:", f"    return {shared_reads(self._fast_path(exprs, roots, mods, implied))}"
                if exprs else "    return True", "except Exception:", "    return False"]
        guard = self.fb.build("__jf_guard", body, lineno, "guard", globals_, closure)
        # (guard codes are never compiled: codegen marks every "guard" build)
        # Failing tensor checks are all collected with the new sizes (every
        # input whose size changed becomes dynamic in one recompile), also
        # those after another failure: a branch site's version or an int that
        # changed in the same call must not hide a size that changed, or the
        # recompile would be static in it and the next size recompile again.
        # Checks after a failure may assume it held: each is evaluated on its
        # own, and one that raises counts as failed.
        vbody = ["__jf_bad = []"]
        for i, ex in enumerate(exprs):
            shape = self._tensor_shapes.get(ex)
            new = f"__jf_h_getattr({shape[1]}, 'shape', None)" if shape is not None else "None"
            vbody += ["try:", f"    __jf_ok = ({ex})", "except Exception:", "    __jf_ok = False",
                      f"if not __jf_ok: __jf_bad.append(({i}, {new}))"]
        vbody.append("return __jf_bad")
        # only its code is kept: a function would hold the user's globals.
        # It is made at the first explanation (a recompile): most entries
        # never fail, and it is a compile's largest generated code.
        verbose_code = self.fb.build_later("__jf_guard_verbose", vbody, lineno, "guard")
        descs = list(self._clauses.values())
        dyn = [self._dynamic_ok.get(ex) for ex in exprs]
        flags = [self._value_only.get(ex) for ex in exprs]
        shapes = [self._tensor_shapes.get(ex) for ex in exprs]

        def explain_failure(func, args) -> str | None:
            try:
                code = verbose_code()
            except Exception as e:  # noqa: BLE001 - diagnostics only
                return f"guard failed (not explained: {type(e).__name__}: {e})"
            # bound like the hook binds guards: the frame function's closure
            fn = types.FunctionType(code, func.__globals__, code.co_name, None,
                                    func.__closure__ if code.co_freevars else None)
            try:
                failed = fn(*args)
            except Exception as e:  # noqa: BLE001 - diagnostics only
                return f"guard raised {type(e).__name__}: {e}"
            if not failed:
                return None
            # the first failure that is not a tensor's is the one that decides
            # (what follows it may only fail because it did): after it, only
            # tensor sizes are read
            first = next((k for k, (i, _) in enumerate(failed) if shapes[i] is None), None)
            if first is not None:
                failed = failed[:first + 1] + [(i, s) for i, s in failed[first + 1:]
                                               if shapes[i] is not None and s is not None]
            texts, dims = [], []
            for i, new_shape in failed:
                text = descs[i]
                if shapes[i] is not None and new_shape is not None:
                    name, _, old = shapes[i]
                    if len(new_shape) == len(old):
                        dims += [(name, d) for d, (a, b) in enumerate(zip(old, new_shape))
                                 if a != b]
                    text += f" (now sizes {tuple(new_shape)})"
                texts.append(text)
            return FailedGuard("; ".join(texts), dyn[failed[first][0]] if first is not None else None,
                               tuple(dims),
                               flags[failed[first][0]] if first is not None else None)

        return guard, explain_failure


    def _fast_path(self, exprs: list[str], roots: list, mods: list, implied: list) -> list:
        """``exprs`` in their order, the implied ones grouped in runs that
        run only when the module trees changed (``__jf_t`` false); the last
        clause records the trees after a call that checked everything."""
        if not implied:
            return exprs
        k = self.fb.const
        skip = set(implied)
        self.tree_skipped = len(skip)
        state = [None] * 6
        root_tuple = "(" + "".join(f"{r.expr()}, " for r in roots) + ")"
        out = [f"((__jf_t := {k(_C.tree_same)}({k(state)}, {root_tuple})) or True)"]
        run: list[str] = []
        for ex in exprs:
            if ex in skip:
                run.append(f"({ex})")
                continue
            if run:
                out.append(f"(__jf_t or ({' and '.join(run)}))")
                run = []
            out.append(ex)
        if run:
            out.append(f"(__jf_t or ({' and '.join(run)}))")
        mod_tuple = "(" + "".join(f"{m.expr()}, " for m in mods) + ")"
        out.append(f"(__jf_t or {k(_C.tree_record)}({k(state)}, {root_tuple}, {mod_tuple}))")
        return out


def _is_table(src: Source, mods: set) -> bool:
    """``m._modules`` (``_parameters``, ``_buffers``) of a pinned module."""
    return isinstance(src, AttrSource) and src.attr in _TABLES and src.base in mods


def _data_descriptor(obj) -> bool:
    t = type(obj)
    return hasattr(t, "__set__") or hasattr(t, "__delete__")


def _generic_module(cls: type) -> bool:
    """A module class whose attribute reads are Python's generic ones (the
    fast path reads instance dicts as they are)."""
    return isinstance(cls, type) and issubclass(cls, torch.nn.Module) and \
        _C.type_lookup(cls, "__getattribute__") is object.__dict__["__getattribute__"]


_NAMEDTUPLE_KEYS = frozenset((
    "__doc__", "__getnewargs__", "__match_args__", "__module__", "__new__", "__repr__",
    "__slots__", "_asdict", "_field_defaults", "_fields", "_make", "_replace"))
_NAMEDTUPLE_METHODS = ("_make", "_replace", "__repr__", "_asdict", "__getnewargs__")


def namedtuple_recipe(cls):
    """What two classes made by the same ``collections.namedtuple`` call
    share (None when ``cls`` is not such a class exactly: a subclass with
    methods of its own, a patched one): name, module, fields, defaults, the
    generated ``__new__``'s bytecode and the template methods' code."""
    try:
        if type(cls) is not type or cls.__bases__ != (tuple,):
            return None
        d = cls.__dict__
        fields = d["_fields"]
        if type(fields) is not tuple or d.keys() != _NAMEDTUPLE_KEYS | set(fields):
            return None
        getter = type(d[fields[0]]) if fields else None
        if any(type(d[f]) is not getter for f in fields) or \
                getattr(getter, "__module__", "") not in ("collections", "_collections"):
            return None
        new = d["__new__"].__func__
        defaults = new.__defaults__ or ()
        if not all(type(x) in (int, float, str, bool, bytes, type(None)) for x in defaults):
            return None
        code = new.__code__
        methods = tuple(getattr(d[n], "__func__", d[n]).__code__ for n in _NAMEDTUPLE_METHODS)
        return (cls.__name__, cls.__qualname__, d["__module__"], fields,
                tuple((type(x), x) for x in defaults), code.co_code, code.co_names,
                code.co_varnames, methods, d["__doc__"])
    except Exception:  # noqa: BLE001 - not a namedtuple class as made by collections
        return None


def user_modes_active() -> bool:
    """Is a TorchFunctionMode or TorchDispatchMode of the program active?
    (Tracing never runs under one: the frame then runs natively.)"""
    return len_torch_function_stack() > 0 or len_torch_dispatch_stack() > 0


def shared_reads(exprs: list[str]) -> str:
    """The conjunction of ``exprs`` with every access path read more than
    once evaluated once: its first evaluation that is sure to run (not in
    the right operand of a nested ``and``/``or``, a conditional expression's
    branches or a chained comparison's tail) binds it (``:=``), later
    occurrences read the name.  Clauses of one object re-walk the same path
    (``model._modules['blocks']._modules['0']._modules['conv1']`` for type,
    dtype, sizes, strides ...): a CNN step's 209 guards ran 125 us, now 63 us.
    An attribute that is a property is read once instead of several times;
    every check then sees the same object."""
    tree = ast.parse(" and ".join(f"({e})" for e in exprs), mode="eval")
    counts: dict[str, int] = {}
    for node in ast.walk(tree):
        if _is_read(node):
            k = ast.dump(node)
            counts[k] = counts.get(k, 0) + 1
    bound: dict[str, str] = {}

    def visit(node, sure: bool):
        if isinstance(node, (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp,
                             ast.GeneratorExp)):
            return node  # own scope: a name bound outside may not be visible
        if isinstance(node, ast.Dict):
            return node  # evaluates key, value, key, ...: not its fields' order
        if _is_read(node):
            k = ast.dump(node)
            if k in bound:
                return ast.Name(bound[k], ast.Load())
        if isinstance(node, ast.BoolOp):
            node.values = [visit(v, sure and i == 0) for i, v in enumerate(node.values)]
        elif isinstance(node, ast.IfExp):
            node.test = visit(node.test, sure)
            node.body, node.orelse = visit(node.body, False), visit(node.orelse, False)
        elif isinstance(node, ast.Compare):
            node.left = visit(node.left, sure)
            node.comparators = [visit(c, sure and i == 0) for i, c in enumerate(node.comparators)]
        else:
            # every other expression evaluates its fields in their order
            for field, value in ast.iter_fields(node):
                if isinstance(value, ast.AST):
                    setattr(node, field, visit(value, sure))
                elif isinstance(value, list):
                    setattr(node, field, [visit(v, sure) if isinstance(v, ast.AST) else v
                                          for v in value])
        if sure and _is_read(node) and counts[k] > 1:
            name = bound[k] = f"__jf_r{len(bound)}"
            return ast.NamedExpr(ast.Name(name, ast.Store()), node)
        return node

    def chain(node):
        # the top-level conjunction, flattened: each term runs only when
        # every earlier one held, so each is sure to run if it is reached
        if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.And):
            return [t for v in node.values for t in chain(v)]
        return [node]

    out = [visit(c, True) for c in chain(tree.body)]
    return "(" + "\n        and ".join(f"({ast.unparse(c)})" for c in out) + ")"


def _is_read(node) -> bool:
    """An attribute, a subscript, or a dict read through ``dict.get`` (sources.py)."""
    if isinstance(node, (ast.Attribute, ast.Subscript)):
        return isinstance(node.ctx, ast.Load)
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name) and node.func.value.id == "__jf_h_dict"
            and node.func.attr == "get")


class FailedGuard(str):
    """The readable text of a failed guard; ``dynamic_source`` names the int
    whose value differed, which the recompile then treats as a graph input,
    ``dynamic_dims`` the tensor dimensions whose sizes differed, which the
    recompile traces with symbolic sizes."""

    dynamic_source: str | None
    dynamic_dims: tuple  # (source name, dim) of tensor sizes that changed
    # the bool or None whose value decided the failure (a branch on a flag:
    # no recompile makes it a graph input); the hook watches for storms of
    # them over the items of one container (hook.FrameCompiler._value_storm)
    value_source: str | None

    def __new__(cls, text: str, dynamic_source: str | None, dynamic_dims: tuple = (),
                value_source: str | None = None):
        self = super().__new__(cls, text)
        self.dynamic_source = dynamic_source
        self.value_source = value_source
        self.dynamic_dims = dynamic_dims
        return self


def _short(obj) -> str:
    name = getattr(obj, "__qualname__", None) or type(obj).__name__
    return f"{name} at {id(obj):#x}"
