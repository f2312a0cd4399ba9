"""Frame conversion: one frame in, one guarded cache entry out.

In: the frame's function and its argument slots (from the hook), and the
compiler (configuration and backend).
Out: a :class:`CompiledEntry`: a guard over the argument slots, and a
replacement that loads the graph's inputs through their sources, calls the
backend's compiled graph, and rebuilds the frame's return value.

Raises :class:`SkipFrame` when the frame records no tensor operation, and
:class:`GraphBreak` when something cannot be captured (the whole frame then
runs natively; resuming after the break is a later stage).
"""
from __future__ import annotations

import math
import time

from ..diagnostics.logs import artifact_logger
from ..hook import CompiledEntry, SkipFrame
from .breaks import GraphBreak
from .codegen import FunctionBuilder, nargs_of, slot_names
from .interpreter import Translator
from .output import OutputGraph
from .sources import ArgSource, ClosureSource
from .values import (
    CellV, Const, DictV, ListV, NewObjV, ObjV, SetV, SliceV, TensorV, TupleV, Value,
)

_LITERAL_TYPES = (int, str, bool, type(None), bytes)


def compile_frame(func, args: tuple, compiler) -> CompiledEntry:
    code = func.__code__
    nargs = nargs_of(code)
    names = slot_names(code)
    output = OutputGraph(compiler, code, nargs)
    cells = {}
    for i, name in enumerate(code.co_freevars):
        cells[name] = CellV(None, name, external=True,
                            pending=(func.__closure__[i], ClosureSource(name)))
    tx = Translator(output, code, func.__globals__, {}, cells, root_func=func)
    tx.lazy_args = {name: (args[i], ArgSource(name, i)) for i, name in enumerate(names)}
    t0 = time.perf_counter()
    result = tx.run()
    if output.op_count == 0:
        raise SkipFrame("no tensor operations")
    lineno = tx.lineno

    fb = FunctionBuilder(code, nargs)
    outputs: list[TensorV] = []
    out_index: dict = {}
    ret_expr = _rebuild(result, fb, outputs, out_index)
    gm, used = output.finish(outputs)

    lg = artifact_logger("graphs")
    if lg is not None:
        lg.info("graph for %s (%s:%d)\n%s", code.co_qualname, code.co_filename,
                code.co_firstlineno, gm.print_readable(print_output=False))

    compiled = compiler.backend_fn(gm, [real for _, real in used])
    input_exprs = ", ".join(v.source.expr() for v, _ in used)
    body = [f"__jf_o = {fb.const(compiled)}({input_exprs})", f"return {ret_expr}"]
    replacement = fb.build("__jf_replacement", body, lineno, "replacement", func.__globals__,
                           func.__closure__)
    guard, explain_failure = output.guards.build(code.co_firstlineno, func.__globals__,
                                                 func.__closure__)

    lg = artifact_logger("guards")
    if lg is not None:
        lg.info("guards for %s (%s:%d)\n  %s", code.co_qualname, code.co_filename,
                code.co_firstlineno, "\n  ".join(output.guards.lines()))
    return CompiledEntry(
        guard=guard,
        replacement=replacement,
        guard_lines=output.guards.lines(),
        explain_failure=explain_failure,
        graphs=[gm],
        breaks=[],
        compile_seconds=time.perf_counter() - t0,
    )


def _rebuild(v: Value, fb: FunctionBuilder, outputs: list, out_index: dict) -> str:
    """A Python expression rebuilding ``v`` after the graph ran (``__jf_o``
    holds the graph's outputs)."""
    if isinstance(v, TensorV):
        if v.node.op == "placeholder" and v.source is not None:
            return v.source.expr()  # the input object itself, identity kept
        i = out_index.get(v.node)
        if i is None:
            i = out_index[v.node] = len(outputs)
            outputs.append(v)
        return f"__jf_o[{i}]"
    if v.source is not None and isinstance(v, (ListV, TupleV, DictV, ObjV, Const)):
        return v.source.expr()
    if isinstance(v, Const):
        x = v.value
        if type(x) in _LITERAL_TYPES or (type(x) is float and math.isfinite(x)):
            return repr(x)
        return fb.const(x)
    if isinstance(v, TupleV):
        inner = "".join(_rebuild(x, fb, outputs, out_index) + ", " for x in v.items)
        if v.cls is not None:
            return f"{fb.const(v.cls)}({inner})"
        return f"({inner})"
    if isinstance(v, ListV):
        return "[" + ", ".join(_rebuild(x, fb, outputs, out_index) for x in v.items) + "]"
    if isinstance(v, SetV):
        inner = ", ".join(_rebuild(x, fb, outputs, out_index) for x in v.items)
        return f"{{{inner}}}" if v.items else "__jf_h_set()"
    if isinstance(v, DictV):
        inner = ", ".join(f"{k!r}: {_rebuild(x, fb, outputs, out_index)}" if type(k) in
                          _LITERAL_TYPES else
                          f"{fb.const(k)}: {_rebuild(x, fb, outputs, out_index)}"
                          for k, x in v.items.items())
        if v.cls is dict:
            return f"{{{inner}}}"
        return f"{fb.const(_build_dict_subclass)}({fb.const(v.cls)}, {{{inner}}})"
    if isinstance(v, SliceV):
        parts = ", ".join(_rebuild(x, fb, outputs, out_index) for x in (v.start, v.stop, v.step))
        return f"__jf_h_slice({parts})"
    if isinstance(v, NewObjV):
        inner = ", ".join(f"{k!r}: {_rebuild(x, fb, outputs, out_index)}"
                          for k, x in v.attrs.items())
        return f"{fb.const(_build_object)}({fb.const(v.cls)}, {{{inner}}})"
    if isinstance(v, ObjV):
        return fb.const(v.obj)
    raise GraphBreak("JF009", f"returning a {v.python_type().__name__} built while tracing")


def _build_object(cls, attrs: dict):
    """Rebuild an object created while tracing (its __init__ already ran
    symbolically, so only the resulting attributes are set)."""
    obj = object.__new__(cls)
    for k, x in attrs.items():
        object.__setattr__(obj, k, x)
    return obj


def _build_dict_subclass(cls, items: dict):
    import dataclasses

    if dataclasses.is_dataclass(cls):
        return cls(**items)
    return cls(items)
