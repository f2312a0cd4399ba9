"""The symbolic bytecode interpreter: frame state and the dispatch loop.

In: a code object (read with the ``bytecode`` package), its globals, and
symbolic values for its locals and closure cells.
Out: the symbolic return value; tensor operations are recorded into the
shared :class:`OutputGraph` on the way. A :class:`GraphBreak` is raised at
anything that cannot be captured, located at the user's file and line.

Handlers are methods named after the opcode, grouped by topic in the
``ops_*`` mixins; an opcode with no handler is a graph break (JF001).
User functions are inlined by running a child Translator on the same
OutputGraph (``inline_function``).
"""
from __future__ import annotations

import types

from bytecode import Label

from .breaks import GraphBreak
from .bytecode_info import load_instructions
from .ops_basic import BasicOps
from .ops_calls import CallOps
from .ops_containers import ContainerOps
from .ops_control import ControlOps
from .ops_arith import ArithOps
from .output import OutputGraph
from .values import CellV, Const, IterV, ObjV, Value

def _same_receiver(t: "Translator", code, receiver) -> bool:
    """Recursion, unless a method runs on another object (a Sequential inside
    a Sequential is nesting, bounded by the inline depth, not recursion)."""
    if code.co_argcount == 0 or code.co_varnames[0] != "self":
        return True
    other = t.locals.get("self")
    if isinstance(receiver, ObjV) and isinstance(other, ObjV):
        return receiver.obj is other.obj
    return receiver is other


class _Return(Exception):
    pass


class Translator(BasicOps, ArithOps, ContainerOps, ControlOps, CallOps):
    def __init__(self, output: OutputGraph, code: types.CodeType, f_globals: dict,
                 locals_: dict[str, Value], cells: dict[str, CellV], *,
                 parent: "Translator | None" = None, root_func=None,
                 fn_source=None) -> None:
        self.output = output
        self.code = code
        self.f_globals = f_globals
        self.f_builtins = f_globals.get("__builtins__", __builtins__)
        if isinstance(self.f_builtins, types.ModuleType):
            self.f_builtins = self.f_builtins.__dict__
        self.instrs, self.labels = load_instructions(code)
        self.ip = 0
        self.stack: list[Value] = []
        self.locals = locals_
        self.cells = cells
        self.kw_names: tuple | None = None
        self.parent = parent
        self.depth = 0 if parent is None else parent.depth + 1
        self.root_func = root_func  # the real function of the compiled frame (root only)
        self.fn_source = fn_source
        self.lineno = code.co_firstlineno
        self.backedges = 0
        self.return_value: Value | None = None
        self.lazy_args: dict = {}  # root frame: argument name -> (object, source)
        self.yields: list | None = None  # generator being run to exhaustion
        self.stop_at: int | None = None  # root frame: stop before this instruction
        self.stopped = False

    # -- stack helpers ------------------------------------------------------------

    def push(self, v: Value) -> None:
        self.stack.append(v)

    def pop(self) -> Value:
        return self.stack.pop()

    def popn(self, n: int) -> list[Value]:
        if n == 0:
            return []
        items = self.stack[-n:]
        del self.stack[-n:]
        return items

    def jump(self, label: Label) -> None:
        self.ip = self.labels[label]

    @property
    def config(self):
        return self.output.ctx.config

    # -- the loop -------------------------------------------------------------------

    def run(self) -> Value:
        instrs = self.instrs
        stop_at = self.stop_at
        try:
            while True:
                if self.ip == stop_at:
                    self.stopped = True
                    return None
                ins = instrs[self.ip]
                self.ip += 1
                if ins.lineno is not None:
                    self.lineno = ins.lineno
                handler = getattr(self, ins.name, None)
                if handler is None:
                    raise GraphBreak("JF001", f"{ins.name} is not supported")
                handler(ins)
        except _Return:
            return self.return_value
        except GraphBreak as gb:
            gb.locate(self.code.co_filename, self.lineno, self.code.co_qualname)
            if self.parent is None and gb.root_ip is None:
                gb.root_ip = self.ip - 1
            raise

    def RETURN_VALUE(self, ins) -> None:
        self.return_value = self.pop()
        raise _Return()

    # -- inlining -----------------------------------------------------------------

    def inline_code(self, code: types.CodeType, f_globals: dict, locals_: dict,
                    cells: dict, fn_source=None) -> Value:
        if self.depth + 1 > self.config.inline_depth:
            raise GraphBreak("JF008", f"{code.co_qualname} at depth {self.depth + 1}")
        if code.co_flags & (0x80 | 0x100 | 0x200):
            raise GraphBreak("JF013", f"{code.co_qualname} is a coroutine")
        receiver = locals_.get(code.co_varnames[0]) if code.co_argcount else None
        t = self
        while t is not None:
            # the same code over other closure cells is another function (a
            # decorator's wrapper around each decorated function), not recursion
            if t.code is code and _same_receiver(t, code, receiver) and all(
                    t.cells.get(n) is cells.get(n) for n in code.co_freevars):
                raise GraphBreak("JF018", f"{code.co_qualname} calls itself")
            t = t.parent
        child = Translator(self.output, code, f_globals, locals_, cells, parent=self,
                           fn_source=fn_source)
        if code.co_flags & 0x20:
            # A generator is run to exhaustion when called and its items are
            # handed to the consumer, which is exact for the pure, finite
            # generators (genexps) this applies to; the unroll limit bounds it.
            child.yields = []
            child.run()
            return IterV(child.yields)
        return child.run()

    # -- generators (run to exhaustion by inline_code) ----------------------------------
    def RETURN_GENERATOR(self, ins):
        if self.yields is None:
            raise GraphBreak("JF013", "generator")
        self.push(Const(None))

    def GET_YIELD_FROM_ITER(self, ins):
        if self.yields is None:
            raise GraphBreak("JF013", "yield from")
        v = self.pop()
        self.push(v if isinstance(v, IterV) else IterV(self.iterate(v)))

    def SEND(self, ins):
        """``yield from``: the next item of the delegate, or its end."""
        if self.yields is None:
            raise GraphBreak("JF013", "send")
        self.pop()  # the value sent in: always None when run to exhaustion
        it = self.stack[-1]
        if it.pos < len(it.items):
            self.push(it.items[it.pos])
            it.pos += 1
        else:
            self.stack[-1] = Const(None)  # the delegate's return value
            self.jump(ins.arg)

    def YIELD_VALUE(self, ins):
        if self.yields is None:
            raise GraphBreak("JF013", "yield")
        self.yields.append(self.pop())
        if len(self.yields) > self.config.unroll_limit:
            raise GraphBreak("JF007", f"generator produced more than {self.config.unroll_limit} "
                             "items")
        self.push(Const(None))  # the value send() would deliver
