"""Opcode handlers: loads and stores of locals, globals, closure cells;
stack manipulation; imports of already-loaded modules.

In/out: the Translator's stack, locals and cells (see interpreter.py).
"""
from __future__ import annotations

import sys

from .breaks import GraphBreak
from .sources import AttrSource, GlobalSource, ItemSource
from .values import NULL, CellV, Const, ObjV


class BasicOps:
    # -- no-ops ----------------------------------------------------------------
    def NOP(self, ins):
        pass

    def RESUME(self, ins):
        pass

    def PRECALL(self, ins):
        pass

    def COPY_FREE_VARS(self, ins):
        # cells were bound when the translator was created
        pass

    # -- stack -------------------------------------------------------------------
    def POP_TOP(self, ins):
        self.pop()

    def PUSH_NULL(self, ins):
        self.push(NULL)

    def COPY(self, ins):
        self.push(self.stack[-ins.arg])

    def SWAP(self, ins):
        i = ins.arg
        self.stack[-1], self.stack[-i] = self.stack[-i], self.stack[-1]

    # -- locals ------------------------------------------------------------------
    def local(self, name: str):
        """A local's value; the compiled frame's arguments are wrapped (and
        guarded) on first use, so unused arguments cost no guards."""
        v = self.locals.get(name)
        if v is None and name in self.lazy_args:
            obj, source = self.lazy_args.pop(name)
            v = self.locals[name] = self.output.wrap(obj, source)
        return v

    def LOAD_FAST(self, ins):
        v = self.local(ins.arg)
        if v is None:
            raise GraphBreak("JF012", f"local variable {ins.arg!r} used before assignment")
        self.push(v)

    def STORE_FAST(self, ins):
        self.lazy_args.pop(ins.arg, None)
        self.locals[ins.arg] = self.pop()

    def DELETE_FAST(self, ins):
        if self.local(ins.arg) is None:
            raise GraphBreak("JF012", f"local variable {ins.arg!r} deleted before assignment")
        del self.locals[ins.arg]

    def LOAD_CONST(self, ins):
        self.push(Const(ins.arg))

    # -- globals -------------------------------------------------------------------
    def global_source(self, name: str):
        if self.parent is None or self.f_globals is self.root().f_globals:
            return GlobalSource(name)
        if self.fn_source is not None:
            return ItemSource(AttrSource(self.fn_source, "__globals__"), name)
        return None

    def root(self):
        t = self
        while t.parent is not None:
            t = t.parent
        return t

    def load_global(self, name: str):
        if self.f_globals is self.root().f_globals:
            pending = self.output.effects.pending_global(name)
            if pending is not None:
                return pending
        if name in self.f_globals:
            return self.output.wrap(self.f_globals[name], self.global_source(name))
        if name in self.f_builtins:
            return ObjV(self.f_builtins[name])
        raise GraphBreak("JF012", f"name {name!r} is not defined")

    def LOAD_GLOBAL(self, ins):
        push_null, name = ins.arg
        if push_null:
            self.push(NULL)
        self.push(self.load_global(name))

    def STORE_GLOBAL(self, ins):
        value = self.pop()
        if self.f_globals is not self.root().f_globals:
            raise GraphBreak("JF011", f"assignment to global {ins.arg!r} of another module")
        self.output.effects.store_global(ins.arg, value)

    def DELETE_GLOBAL(self, ins):
        raise GraphBreak("JF011", f"deletion of global {ins.arg!r}")

    # -- closure cells ----------------------------------------------------------------
    def cell(self, name: str) -> CellV:
        c = self.cells.get(name)
        if c is None:
            raise GraphBreak("JF009", f"unknown closure variable {name!r}")
        if getattr(c, "pending", None) is not None:
            # a cell of a real function: wrap its contents on first use
            real, source = c.pending
            c.pending = None
            try:
                contents = real.cell_contents
            except ValueError:
                c.contents = None
            else:
                c.contents = self.output.wrap(contents, source)
        return c

    def LOAD_DEREF(self, ins):
        c = self.cell(ins.arg.name)
        if c.contents is None:
            raise GraphBreak("JF012", f"free variable {ins.arg.name!r} referenced before "
                             "assignment")
        self.push(c.contents)

    def LOAD_CLASSDEREF(self, ins):
        self.LOAD_DEREF(ins)

    def STORE_DEREF(self, ins):
        c = self.cell(ins.arg.name)
        value = self.pop()
        if c.external:
            if c.write_target is None:
                raise GraphBreak("JF011", f"assignment to nonlocal variable {ins.arg.name!r} "
                                 "of a function with no known source")
            c.contents = value
            self.output.effects.store_cell(c)
            return
        c.contents = value

    def DELETE_DEREF(self, ins):
        raise GraphBreak("JF011", f"deletion of closure variable {ins.arg.name!r}")

    def LOAD_CLOSURE(self, ins):
        self.push(self.cell(ins.arg.name))

    def MAKE_CELL(self, ins):
        name = ins.arg.name
        if name in self.cells and getattr(self.cells[name], "external", False):
            return
        self.local(name)
        self.cells[name] = CellV(self.locals.pop(name, None), name)

    # -- imports -------------------------------------------------------------------------
    def IMPORT_NAME(self, ins):
        level, fromlist = self.popn(2)
        name = ins.arg
        if not (isinstance(level, Const) and isinstance(fromlist, Const)):
            raise GraphBreak("JF009", "import with non-constant arguments")
        if level.value != 0 or name not in sys.modules:
            raise GraphBreak("JF009", f"import of {name!r}, which is not loaded yet")
        mod = __import__(name, self.f_globals, None, fromlist.value, 0)
        self.push(ObjV(mod))

    def IMPORT_FROM(self, ins):
        mod = self.stack[-1]
        if not isinstance(mod, ObjV) or not hasattr(mod.obj, ins.arg):
            raise GraphBreak("JF009", f"from-import of {ins.arg!r}")
        self.push(ObjV(getattr(mod.obj, ins.arg)))

    def LOAD_ASSERTION_ERROR(self, ins):
        self.push(ObjV(AssertionError))

    def RAISE_VARARGS(self, ins):
        raise GraphBreak("JF012", "raise statement")
