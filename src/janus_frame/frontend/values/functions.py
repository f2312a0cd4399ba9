"""Functions made while tracing, closure cells, and argument binding.

In: MAKE_FUNCTION's code, defaults and closure; cells made by MAKE_CELL or
standing for a real function's cells; a call's symbolic arguments.
Out: ``FunctionV`` (called by binding its arguments and inlining its code),
``PartialV`` (``functools.partial`` made while tracing), ``CellV``,
:func:`bind_args` (Python's binding rules on symbolic values, for every
inlined call), and how they are rebuilt after the graph.
"""
from __future__ import annotations

import functools
import inspect
import types

from ..breaks import would_raise
from .base import NO, Value
from .constants import Const
from .containers import TupleV
from .dicts import DictV


class FunctionV(Value):
    """A function made by MAKE_FUNCTION while tracing."""

    __slots__ = ("code", "qualname", "defaults", "kwdefaults", "closure", "globals", "source",
                 "annotations")

    def __init__(self, code, qualname, defaults, kwdefaults, closure, globals_) -> None:
        self.annotations = None  # MAKE_FUNCTION's (name, value, ...) tuple, when given
        self.code = code
        self.qualname = qualname
        self.defaults = defaults  # tuple of Value
        self.kwdefaults = kwdefaults  # dict name -> Value
        self.closure = closure  # tuple of CellV
        self.globals = globals_
        self.source = None

    def python_type(self) -> type:
        return types.FunctionType

    def truth(self, tx) -> bool:
        return True

    def get_attr(self, tx, name: str) -> Value:
        if name in ("__name__", "__qualname__"):
            return Const(self.code.co_name if name == "__name__" else self.qualname)
        if name == "__code__":
            return Const(self.code)
        return super().get_attr(tx, name)

    def call(self, tx, args: list, kwargs: dict) -> Value:
        code = self.code
        cells = {name: c for name, c in zip(code.co_freevars, self.closure)}
        locals_ = bind_args(code, code.co_name, self.defaults, self.kwdefaults, args, kwargs)
        return tx.inline_code(code, self.globals, locals_, cells)

    def as_real_function(self):
        """A real function with this one's code, defaults and annotations
        (for introspection: ``inspect.signature``), or None when one of them
        is not a constant."""
        defaults = tuple(d.as_python() for d in self.defaults)
        kwdefaults = {k: d.as_python() for k, d in self.kwdefaults.items()}
        ann = self.annotations.as_python() if self.annotations is not None else ()
        if any(d is NO for d in (*defaults, *kwdefaults.values(), ann)):
            return None
        closure = tuple(types.CellType() for _ in self.code.co_freevars) or None
        fn = types.FunctionType(self.code, {}, self.code.co_name, defaults or None, closure)
        fn.__kwdefaults__ = kwdefaults or None
        fn.__annotations__ = dict(zip(ann[::2], ann[1::2]))
        fn.__qualname__ = self.qualname
        return fn

    def reconstruct(self, rb) -> tuple[str, bool]:
        e, fb = rb.expr, rb.fb
        closure = "(" + "".join(e(c) + ", " for c in self.closure) + ")" if self.closure \
            else "None"
        defaults = "(" + "".join(e(d) + ", " for d in self.defaults) + ")"
        kwdefaults = "{" + ", ".join(f"{k!r}: {e(d)}" for k, d in self.kwdefaults.items()) + "}"
        return (f"{fb.const(_build_function)}({fb.const(self.code)}, __jf_h_globals(), "
                f"{self.qualname!r}, {defaults}, {kwdefaults}, {closure})"), True


class PartialV(Value):
    """``functools.partial(func, *args, **keywords)`` made while tracing: a
    call prepends the frozen arguments, as the real object does. ``func``
    and ``args`` are read-only; ``keywords`` is the partial's own dict, so a
    store into ``p.keywords`` changes later calls, as in Python."""

    __slots__ = ("func", "args", "keywords", "source")

    def __init__(self, func: Value, args: list, keywords: dict) -> None:
        if isinstance(func, PartialV):  # partial(partial(f, a), b) is partial(f, a, b)
            args = func.args + list(args)
            keywords = {**func.keywords.items, **keywords}
            func = func.func
        self.func = func
        self.args = list(args)
        self.keywords = DictV(keywords)
        self.source = None

    def python_type(self) -> type:
        return functools.partial

    def truth(self, tx) -> bool:
        return True

    def get_attr(self, tx, name: str) -> Value:
        if name == "func":
            return self.func
        if name == "args":
            return TupleV(self.args)
        if name == "keywords":
            return self.keywords
        return super().get_attr(tx, name)

    def call(self, tx, args: list, kwargs: dict) -> Value:
        keywords = self.keywords.items
        if any(type(k) is not str for k in keywords):
            raise would_raise(TypeError, "keywords must be strings")
        return self.func.call(tx, self.args + list(args), {**keywords, **kwargs})

    def reconstruct(self, rb) -> tuple[str, bool]:
        # rebuilt around the keywords dict itself, so that p.keywords stays
        # the same object as any other reference to it
        e = rb.expr
        args = "(" + "".join(e(a) + ", " for a in self.args) + ")"
        return (f"{rb.fb.const(_build_partial)}({e(self.func)}, {args}, "
                f"{e(self.keywords)})"), True


def _build_partial(func, args: tuple, keywords: dict) -> functools.partial:
    p = functools.partial(func)
    # __setstate__ keeps an exact dict as the partial's own keywords
    p.__setstate__((func, args, keywords, None))
    return p


class CellV(Value):
    """A closure cell. ``external`` cells belong to a function that outlives
    the frame (stores to them are side effects); ``pending`` holds a real
    cell and its source until the contents are first read."""

    __slots__ = ("contents", "source", "name", "external", "pending", "write_target")

    def __init__(self, contents: Value | None, name: str = "", *, external: bool = False,
                 pending=None) -> None:
        self.contents = contents
        self.name = name
        self.source = None
        self.external = external
        self.pending = pending
        # where a store to an external cell is replayed (None: cannot be)
        self.write_target = pending[1] if pending is not None else None

    def python_type(self) -> type:
        return types.CellType

    def truth(self, tx) -> bool:
        return True

    def reconstruct(self, rb) -> tuple[str, bool]:
        if self.external:
            return super().reconstruct(rb)
        contents = "" if self.contents is None else rb.expr(self.contents)
        return f"{rb.fb.const(types.CellType)}({contents})", True


def bind_args(code, name, defaults, kwdefaults, args, kwargs) -> dict:
    """Argument binding with Python's own rules (inspect.Signature), on
    symbolic values: the callee's initial locals."""
    sig = _signature(code, name, len(defaults), tuple(kwdefaults))
    try:
        ba = sig.bind(*args, **kwargs)
    except TypeError as e:
        raise would_raise(TypeError, f"{name}(): {e}") from None
    out = {}
    params = sig.parameters
    real_names = {(n if n.isidentifier() else f"_jf_arg{i}"): n
                  for i, n in enumerate(code.co_varnames)}
    pos = [p for p in params.values()
           if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    first_default = len(pos) - len(defaults)
    for pname, p in params.items():
        if pname in ba.arguments:
            val = ba.arguments[pname]
            if p.kind == p.VAR_POSITIONAL:
                val = TupleV(list(val))
            elif p.kind == p.VAR_KEYWORD:
                val = DictV(dict(val))
        elif p.kind == p.VAR_POSITIONAL:
            val = TupleV([])
        elif p.kind == p.VAR_KEYWORD:
            val = DictV({})
        elif p.kind == p.KEYWORD_ONLY:
            val = kwdefaults[pname]
        else:
            val = defaults[pos.index(p) - first_default]
        out[real_names.get(pname, pname)] = val
    return out


@functools.lru_cache(maxsize=4096)
def _signature(code, name, ndefaults, kwnames) -> inspect.Signature:
    """The signature of a code object (defaults only marked as present)."""
    P = inspect.Parameter
    # comprehension code takes its iterator as '.0': not an identifier
    names = tuple(n if n.isidentifier() else f"_jf_arg{i}"
                  for i, n in enumerate(code.co_varnames))
    argc, kwc = code.co_argcount, code.co_kwonlyargcount
    params = []
    for i in range(argc):
        kind = P.POSITIONAL_ONLY if i < code.co_posonlyargcount else P.POSITIONAL_OR_KEYWORD
        has_default = i >= argc - ndefaults
        params.append(P(names[i], kind, default=i if has_default else P.empty))
    i = argc + kwc
    if code.co_flags & inspect.CO_VARARGS:
        params.append(P(names[i], P.VAR_POSITIONAL))
        i += 1
    for n in names[argc:argc + kwc]:
        params.append(P(n, P.KEYWORD_ONLY, default=0 if n in kwnames else P.empty))
    if code.co_flags & inspect.CO_VARKEYWORDS:
        params.append(P(names[i], P.VAR_KEYWORD))
    return inspect.Signature(params)


def _build_function(code, globals_, qualname, defaults, kwdefaults, closure):
    """Rebuild a function made by MAKE_FUNCTION while tracing (its cells are
    the ones the frame and its resume function share)."""
    fn = types.FunctionType(code, globals_, code.co_name, defaults or None, closure)
    fn.__qualname__ = qualname
    if kwdefaults:
        fn.__kwdefaults__ = kwdefaults
    return fn
