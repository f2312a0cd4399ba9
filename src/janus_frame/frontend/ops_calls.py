"""Opcode handlers: attribute access, calls (PRECALL/CALL/KW_NAMES/
CALL_FUNCTION_EX) and MAKE_FUNCTION. What a call *means* is decided in
calls.py; attribute semantics in attrs.py.

In/out: the Translator's stack.
"""
from __future__ import annotations

from .attrs import AttrOps
from .breaks import GraphBreak
from .calls import CallDispatch
import types

from .values import NULL, CellV, Const, DictV, FunctionV, NewObjV, NullV, ObjV, TensorV, TupleV


class CallOps(AttrOps, CallDispatch):
    def LOAD_ATTR(self, ins):
        obj = self.pop()
        self.push(self.getattr_value(obj, ins.arg))

    def LOAD_METHOD(self, ins):
        obj = self.pop()
        # [NULL, bound-callable] is a valid 3.11 call layout for any callable
        self.push(NULL)
        self.push(self.getattr_value(obj, ins.arg))

    def STORE_ATTR(self, ins):
        obj = self.pop()
        value = self.pop()
        self.store_attr(obj, ins.arg, value)

    def store_attr(self, obj, name: str, value) -> None:
        if isinstance(obj, NewObjV):
            obj.attrs[name] = value
            return
        if isinstance(obj, ObjV) and obj.source is not None and not isinstance(
                obj.obj, (type, types.ModuleType, types.FunctionType)):
            self.output.effects.store_attr(obj, name, value)
            return
        if isinstance(obj, TensorV) and name == "grad" and obj.source is not None and \
                obj.node.op == "placeholder":
            # `p.grad = None` / `p.grad = g` on an input (optimizers): replayed
            self.output.effects.store_attr(ObjV(self.real_of(obj), obj.source), name, value,
                                           through_descriptor=True)
            return
        raise GraphBreak("JF011", f"attribute assignment {name!r} on "
                         f"{obj.python_type().__name__}")

    def DELETE_ATTR(self, ins):
        obj = self.pop()
        if isinstance(obj, NewObjV) and ins.arg in obj.attrs:
            del obj.attrs[ins.arg]
            return
        raise GraphBreak("JF011", f"attribute deletion {ins.arg!r}")

    def KW_NAMES(self, ins):
        self.kw_names = ins.arg

    def CALL(self, ins):
        args = self.popn(ins.arg)
        b = self.pop()
        a = self.pop()
        if isinstance(a, NullV):
            fn = b
        else:
            fn, args = a, [b] + args
        kwargs = {}
        if self.kw_names:
            names = self.kw_names
            self.kw_names = None
            vals = args[len(args) - len(names):]
            args = args[: len(args) - len(names)]
            kwargs = dict(zip(names, vals))
        self.push(self.call_value(fn, args, kwargs))

    def CALL_FUNCTION_EX(self, ins):
        kwargs = self.dict_items(self.pop()) if ins.arg & 1 else {}
        args = self.iterate(self.pop())
        fn = self.pop()
        null = self.pop()
        if not isinstance(null, NullV):
            # a bound receiver below the callable (not emitted by 3.11's
            # compiler, but keep the stack honest)
            args = [fn] + args
            fn = null
        if not all(isinstance(k, str) for k in kwargs):
            raise GraphBreak("JF012", "keywords must be strings")
        self.push(self.call_value(fn, args, kwargs))

    def MAKE_FUNCTION(self, ins):
        flags = ins.arg
        code = self.pop().value
        closure = self.iterate(self.pop()) if flags & 0x08 else ()
        if flags & 0x04:
            self.pop()  # annotations are not needed to run the function
        kwdefaults = self.dict_items(self.pop()) if flags & 0x02 else {}
        defaults = tuple(self.iterate(self.pop())) if flags & 0x01 else ()
        for c in closure:
            if not isinstance(c, CellV):
                raise GraphBreak("JF009", "closure of non-cells")
        self.push(FunctionV(code, code.co_qualname, defaults, dict(kwdefaults), tuple(closure),
                            self.f_globals))


__all__ = ["CallOps", "Const", "DictV", "TupleV"]
