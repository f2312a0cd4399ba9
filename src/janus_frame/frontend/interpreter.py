"""The symbolic bytecode interpreter: the state of a frame and its loop.

In: a code object (read with the ``bytecode`` package), its globals, and
symbolic values for its locals and closure cells.
Out: the symbolic return value; tensor operations are recorded into the
shared :class:`OutputGraph` on the way. A :class:`GraphBreak` is raised at
anything that cannot be captured, located at the user's file and line.

Each instruction runs its opcode's registered handler (handlers/) with the
frame's state, a :class:`Translator`, as its argument; an opcode without a
handler is a registered graph break. User functions are inlined by running
a child Translator on the same OutputGraph (``inline_code``). Under the
checks flag every handler's effect on the stack is compared with
``dis.stack_effect``.
"""
from __future__ import annotations

import inspect
import types

from bytecode import Label

from .. import faults
from . import callees
from .breaks import GraphBreak
from .bytecode_info import load_instructions
from .handlers import HANDLERS
from .handlers.registry import FrameReturn, check_stack_effect
from .output import OutputGraph
from .values import CellV, IterV, ObjV, Value

_ASYNC = inspect.CO_COROUTINE | inspect.CO_ITERABLE_COROUTINE | inspect.CO_ASYNC_GENERATOR


class Translator:
    """The state of one frame being interpreted, which every opcode handler
    and value kind takes as ``tx``: its code and instructions, instruction
    pointer, stack, locals and cells, the frames it is inlined into, and the
    graph it records into (``output``). Its methods are the stack helpers
    and what the kinds of values may ask of the interpreter above them:
    ``call_object``, ``inline_function`` and ``inline_code``."""

    __slots__ = ("output", "code", "f_globals", "f_builtins", "instrs", "labels", "ip", "stack",
                 "locals", "cells", "kw_names", "parent", "depth", "fn_source", "lineno",
                 "backedges", "return_value", "lazy_args", "yields", "stop_at", "stopped")

    def __init__(self, output: OutputGraph, code: types.CodeType, f_globals: dict,
                 locals_: dict[str, Value], cells: dict[str, CellV], *,
                 parent: "Translator | None" = None, root_func=None,
                 fn_source=None) -> None:
        # (root_func: the compiled frame's function, which convert passes;
        # nothing here needs it)
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
        self.fn_source = fn_source  # where an inlined function was read (its globals)
        self.lineno = code.co_firstlineno
        self.backedges = 0
        self.return_value: Value | None = None
        self.lazy_args: dict = {}  # root frame: argument name -> (object, source)
        self.yields: list | None = None  # generator being run to exhaustion
        self.stop_at: int | None = None  # root frame: stop before this instruction
        self.stopped = False

    @property
    def config(self):
        return self.output.ctx.config

    # -- state ----------------------------------------------------------------------
    def popn(self, n: int) -> list[Value]:
        if n == 0:
            return []
        items = self.stack[-n:]
        del self.stack[-n:]
        return items

    def jump(self, label: Label) -> None:
        self.ip = self.labels[label]

    def local(self, name: str) -> Value | None:
        """A local's value; the compiled frame's arguments are wrapped (and
        guarded) on first use, so unused arguments cost no guards."""
        v = self.locals.get(name)
        if v is None and name in self.lazy_args:
            obj, source = self.lazy_args.pop(name)
            v = self.locals[name] = self.output.wrap(obj, source)
        return v

    def cell(self, name: str) -> CellV:
        c = self.cells.get(name)
        if c is None:
            raise GraphBreak("JF009", f"unknown closure variable {name!r}")
        if c.pending is not None:
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

    def root(self) -> "Translator":
        t = self
        while t.parent is not None:
            t = t.parent
        return t

    # -- the loop -------------------------------------------------------------------
    def run(self) -> Value | None:
        """Interpret from the instruction pointer to the frame's return (or
        to ``stop_at``: then None, and ``stopped`` is set)."""
        instrs, handlers, stop_at = self.instrs, HANDLERS, self.stop_at
        checks = self.config.checks
        try:
            while True:
                ip = self.ip
                if ip == stop_at:
                    self.stopped = True
                    return None
                ins = instrs[ip]
                self.ip = ip + 1
                if ins.lineno is not None:
                    self.lineno = ins.lineno
                if checks:
                    # fault injection (tests only) rides on the checks switch:
                    # an attribute read per traced instruction otherwise
                    faults.point("interpreter.step", 0.1)
                    depth = len(self.stack)
                    handlers[ins.name](self, ins)
                    check_stack_effect(self, ins, ip, depth)
                else:
                    handlers[ins.name](self, ins)
        except FrameReturn:
            return self.return_value
        except GraphBreak as gb:
            gb.locate(self.code.co_filename, self.lineno, self.code.co_qualname)
            if self.parent is None and gb.root_ip is None:
                gb.root_ip = self.ip - 1
            raise

    def step(self, ins, index: int) -> None:
        """Run instruction ``index`` (``ins``), the instruction pointer
        already past it (predication.py runs the sides of a branch so)."""
        depth = len(self.stack)
        HANDLERS[ins.name](self, ins)
        if self.config.checks:
            check_stack_effect(self, ins, index, depth)

    # -- what kinds of values ask of the interpreter ----------------------------------
    def call_object(self, fnv: Value, obj, args: list, kwargs: dict) -> Value:
        """Call the real object ``obj``, read as ``fnv`` (callees.py)."""
        return callees.call_object(self, fnv, obj, args, kwargs)

    def inline_function(self, fn: types.FunctionType, args: list, kwargs: dict,
                        fn_source) -> Value:
        """Run the Python function ``fn`` in a child frame (callees.py)."""
        return callees.inline_function(self, fn, args, kwargs, fn_source)

    def inline_code(self, code: types.CodeType, f_globals: dict, locals_: dict,
                    cells: dict, fn_source=None) -> Value:
        """Run ``code`` with the given locals and cells in a child frame."""
        if self.depth + 1 > self.config.inline_depth:
            raise GraphBreak("JF008", f"{code.co_qualname} at depth {self.depth + 1}")
        if code.co_flags & _ASYNC:
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
        if code.co_flags & inspect.CO_GENERATOR:
            # A generator is run to exhaustion when called and its items are
            # handed to the consumer, which is exact for the pure, finite
            # generators (genexps) this applies to; the unroll limit bounds it.
            child.yields = []
            child.run()
            return IterV(child.yields)
        return child.run()


def _same_receiver(t: Translator, code, receiver) -> bool:
    """Recursion, unless a method runs on another object (a Sequential inside
    a Sequential is nesting, bounded by the inline depth, not recursion)."""
    if code.co_argcount == 0 or code.co_varnames[0] != "self":
        return True
    other = t.locals.get("self")
    if isinstance(receiver, ObjV) and isinstance(other, ObjV):
        return receiver.obj is other.obj
    return receiver is other
