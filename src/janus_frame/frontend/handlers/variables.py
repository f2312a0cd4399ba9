"""Opcode handlers: loads and stores of locals, globals, closure cells and
constants; stack manipulation; imports of already-loaded modules.

In/out: the frame's stack, locals and cells (interpreter.Translator).
"""
from __future__ import annotations

import sys

from ..breaks import GraphBreak, would_raise
from ..sources import AttrSource, GlobalSource, ItemSource, PinnedSource
from ..values import NULL, CellV, Const, ObjV
from .registry import handler

# -- no-ops -------------------------------------------------------------------------


@handler("NOP")
def NOP(tx, ins):
    pass


@handler("RESUME")
def RESUME(tx, ins):
    pass


@handler("COPY_FREE_VARS")
def COPY_FREE_VARS(tx, ins):
    pass  # cells were bound when the frame was created


# -- stack -------------------------------------------------------------------------


@handler("POP_TOP")
def POP_TOP(tx, ins):
    tx.stack.pop()


@handler("PUSH_NULL")
def PUSH_NULL(tx, ins):
    tx.stack.append(NULL)


@handler("COPY")
def COPY(tx, ins):
    tx.stack.append(tx.stack[-ins.arg])


@handler("SWAP")
def SWAP(tx, ins):
    stack, i = tx.stack, ins.arg
    stack[-1], stack[-i] = stack[-i], stack[-1]


# -- locals and constants ----------------------------------------------------------


@handler("LOAD_FAST")
def LOAD_FAST(tx, ins):
    v = tx.local(ins.arg)
    if v is None:
        raise would_raise(UnboundLocalError, f"local variable {ins.arg!r} used before assignment")
    tx.stack.append(v)


@handler("STORE_FAST")
def STORE_FAST(tx, ins):
    tx.lazy_args.pop(ins.arg, None)
    tx.locals[ins.arg] = tx.stack.pop()


@handler("DELETE_FAST")
def DELETE_FAST(tx, ins):
    if tx.local(ins.arg) is None:
        raise would_raise(UnboundLocalError, f"local variable {ins.arg!r} deleted before "
                          "assignment")
    del tx.locals[ins.arg]


@handler("LOAD_CONST")
def LOAD_CONST(tx, ins):
    tx.stack.append(Const(ins.arg))


# -- globals -----------------------------------------------------------------------


def _global_source(tx, name: str):
    """Where global ``name`` of the frame is read at run time: the compiled
    frame's globals, or those of an inlined function from another module
    (through the function's source)."""
    if tx.parent is None or tx.f_globals is tx.root().f_globals:
        return GlobalSource(name)
    if tx.fn_source is not None:
        return ItemSource(AttrSource(tx.fn_source, "__globals__"), name)
    return None


def _load_global(tx, name: str):
    if tx.f_globals is tx.root().f_globals:
        pending = tx.output.effects.pending_global(name)
        if pending is not None:
            return pending
    if name in tx.f_globals:
        return tx.output.wrap(tx.f_globals[name], _global_source(tx, name))
    if name in tx.f_builtins:
        # guarded that no global of the module shadows it later
        src = _global_source(tx, name)
        if isinstance(src, GlobalSource):  # the guard's lookup: globals, then builtins
            return tx.output.wrap(tx.f_builtins[name], src)
        if isinstance(src, ItemSource):  # the globals of an inlined function
            tx.output.guards.add(f"({name!r} not in {src.base.expr()})",
                                 f"{name!r} not in {src.base.name()}")
        return ObjV(tx.f_builtins[name])
    raise would_raise(NameError, f"name {name!r} is not defined")


@handler("LOAD_GLOBAL")
def LOAD_GLOBAL(tx, ins):
    push_null, name = ins.arg
    if push_null:
        tx.stack.append(NULL)
    tx.stack.append(_load_global(tx, name))


@handler("STORE_GLOBAL")
def STORE_GLOBAL(tx, ins):
    value = tx.stack.pop()
    if tx.f_globals is not tx.root().f_globals:
        raise GraphBreak("JF011", f"assignment to global {ins.arg!r} of another module")
    tx.output.effects.store_global(ins.arg, value)


@handler("DELETE_GLOBAL")
def DELETE_GLOBAL(tx, ins):
    raise GraphBreak("JF011", f"deletion of global {ins.arg!r}")


# -- closure cells -----------------------------------------------------------------


@handler("LOAD_DEREF")
def LOAD_DEREF(tx, ins):
    c = tx.cell(ins.arg.name)
    if c.contents is None:
        raise would_raise(NameError, f"free variable {ins.arg.name!r} referenced before "
                          "assignment")
    tx.stack.append(c.contents)


@handler("LOAD_CLASSDEREF", until=(3, 12))
def LOAD_CLASSDEREF(tx, ins):
    LOAD_DEREF(tx, ins)


@handler("STORE_DEREF")
def STORE_DEREF(tx, ins):
    c = tx.cell(ins.arg.name)
    value = tx.stack.pop()
    if c.external:
        if c.write_target is None:
            raise GraphBreak("JF011", f"assignment to nonlocal variable {ins.arg.name!r} "
                             "of a function with no known source")
        c.contents = value
        tx.output.effects.store_cell(c)
        return
    c.contents = value


@handler("DELETE_DEREF")
def DELETE_DEREF(tx, ins):
    raise GraphBreak("JF011", f"deletion of closure variable {ins.arg.name!r}")


@handler("LOAD_CLOSURE")
def LOAD_CLOSURE(tx, ins):
    tx.stack.append(tx.cell(ins.arg.name))


@handler("MAKE_CELL")
def MAKE_CELL(tx, ins):
    name = ins.arg.name
    if name in tx.cells and tx.cells[name].external:
        return
    tx.local(name)
    tx.cells[name] = CellV(tx.locals.pop(name, None), name)


# -- imports -----------------------------------------------------------------------


@handler("IMPORT_NAME")
def IMPORT_NAME(tx, ins):
    level, fromlist = tx.popn(2)
    name = ins.arg
    if not (isinstance(level, Const) and isinstance(fromlist, Const)):
        raise GraphBreak("JF001", "import with non-constant arguments")
    if level.value != 0 or name not in sys.modules:
        raise GraphBreak("JF001", f"import of {name!r}, which is not loaded yet")
    mod = __import__(name, tx.f_globals, None, fromlist.value, 0)
    tx.stack.append(ObjV(mod, PinnedSource(mod)))  # its attributes are guarded as read


@handler("IMPORT_FROM")
def IMPORT_FROM(tx, ins):
    mod = tx.stack[-1]
    if not isinstance(mod, ObjV) or not hasattr(mod.obj, ins.arg):
        raise GraphBreak("JF001", f"from-import of {ins.arg!r}")
    tx.stack.append(mod.get_attr(tx, ins.arg))


@handler("LOAD_ASSERTION_ERROR")
def LOAD_ASSERTION_ERROR(tx, ins):
    tx.stack.append(ObjV(AssertionError))
