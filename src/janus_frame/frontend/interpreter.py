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

Exceptions: an instruction that raises an exception the trace knows exactly
(a JF020 break carrying the exception, see handlers/exceptions.py) makes the
loop unwind as CPython does: the code's exception table gives the handler
of the raising instruction, the stack is cut back to its depth, the
instruction's offset (if the entry says so) and the exception are pushed,
and the loop goes on at the handler. With no handler the exception leaves
the frame: to the calling frame's instruction (an inlined call), or out of
the compiled frame, which then runs natively from the root instruction it
was raised by (``_place_break``): Python raises it for real, with its own
message and traceback. A break while the compiled frame handles an
exception is placed the same way, so handlers never need resuming.
"""
from __future__ import annotations

import inspect
import types

from bytecode import Label

from .. import faults
from . import callees
from .breaks import GraphBreak
from .bytecode_info import exception_handlers, instr_offsets, load_instructions
from .handlers import HANDLERS
from .handlers.exceptions import raising
from .handlers.registry import FrameReturn, check_stack_effect
from .output import OutputGraph
from .values import CellV, Const, ObjV, Value, modes
from .values.exceptions import CALLER_EXCEPTION, ExcV, TracebackV, from_real
from .values.generators import GeneratorV
from .whole_step import trace_backward

_ASYNC = inspect.CO_COROUTINE | inspect.CO_ITERABLE_COROUTINE | inspect.CO_ASYNC_GENERATOR


def _any_call(func) -> bool:
    return True


class Translator:
    """The state of one frame being interpreted, which every opcode handler
    and value kind takes as ``tx``: its code and instructions, instruction
    pointer, stack, locals and cells, the frames it is inlined into, and the
    graph it records into (``output``). Its methods are the stack helpers
    and what the kinds of values may ask of the interpreter above them:
    ``call_object``, ``inline_function`` and ``inline_code``."""

    __slots__ = ("output", "code", "f_globals", "f_builtins", "instrs", "labels", "ip", "stack",
                 "locals", "cells", "kw_names", "parent", "depth", "fn_source", "lineno",
                 "backedges", "return_value", "lazy_args", "yields", "stop_at", "stopped",
                 "handled", "origins", "before", "break_id", "batchable_call")

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
        self.yields = None  # the GeneratorV this is the frame of
        self.stop_at: int | None = None  # root frame: stop before this instruction
        self.stopped = False
        # the root's break (segment.close) and whether its native step is a
        # recursive call recording the recursion (handlers/calls.py, batching.py)
        self.break_id: str | None = None
        self.batchable_call = False
        # exceptions this frame's handlers are handling (PUSH_EXC_INFO pushes,
        # POP_EXCEPT pops), innermost last
        self.handled: list[Value] = []
        # root frame: id(exception) -> (exception, the root instruction from
        # which the frame can run natively into it, or None)
        self.origins: dict[int, tuple] = {}
        # root frame, first trace: its state before the instruction being run
        # (see ``_rewind``): (index, whether it is its first run, stack,
        # kw_names, lineno, locals, arguments and handled-exception counts,
        # ``output.mark()``, len(output.spec_sites))
        self.before: tuple | None = None

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
            # (pending is cleared only once the contents are read: a break
            # here leaves the cell as it was, see _rewind)
            real, source = c.pending
            try:
                contents = real.cell_contents
            except ValueError:
                c.pending, c.contents = None, None
            else:
                if source is None and _mutable(contents):
                    # (a method of a class reached through no source: its
                    # contents could be neither guarded nor written back)
                    raise GraphBreak("JF022", f"closure variable {name!r} holds a "
                                     f"{type(contents).__name__} the trace cannot track")
                v = self.output.wrap(contents, source)
                c.pending, c.contents = None, v
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
        output = self.output
        # the root frame traced to its end keeps its state before each
        # instruction: a break during it then ends the segment right there
        # without tracing the frame again (``_rewind``)
        keep = self.parent is None and stop_at is None
        if self.parent is not None:
            output.nested_steps += 1
        # (root instructions run so far: a trace up to an instruction stops
        # at its first run, so only a break at a first run is rewound)
        ran = bytearray(len(instrs)) if keep else None
        while True:
            try:
                while True:
                    ip = self.ip
                    if ip == stop_at:
                        self.stopped = True
                        return None
                    if keep:
                        self.before = (ip, not ran[ip], list(self.stack), self.kw_names,
                                       self.lineno, len(self.locals), len(self.lazy_args),
                                       len(self.handled), output.mark(), len(output.spec_sites))
                        ran[ip] = 1
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
                if (gb.exc_value is not None or gb.exc is not None) and self._unwind(gb):
                    continue
                gb.locate(self.code.co_filename, self.lineno, self.code.co_qualname)
                if self.parent is None:
                    self._place_break(gb)
                    if keep:
                        gb.retrace = self._rewind(gb)
                raise

    # -- exceptions -----------------------------------------------------------------
    def handled_exception(self) -> Value:
        """The exception being handled (what ``sys.exc_info()`` would give):
        the innermost handler's, in this frame or a frame it is inlined into;
        CALLER_EXCEPTION when none is (the caller's, not known here)."""
        t = self
        while t is not None:
            if t.handled:
                return t.handled[-1]
            t = t.parent
        return CALLER_EXCEPTION

    def _unwind(self, gb: GraphBreak) -> bool:
        """The instruction just run raised the exception ``gb`` carries: go
        on at its handler in this frame (True), or leave the frame (False)."""
        exc = gb.exc_value
        if exc is None:  # raised exactly by a modelled operation
            exc = from_real(gb.exc)
            raising(self, exc)  # (chains it; the break it returns is not needed)
            gb.exc_value = exc
        at = self.ip - 1
        if self.parent is None:
            self._note_origin(exc, at, gb.reraised_by is self)
        gb.reraised_by = None
        h = exception_handlers(self.code)[at]
        if h is None:
            return False
        del self.stack[h.depth:]
        if h.lasti:
            self.stack.append(Const(instr_offsets(self.code)[at]))
        self.stack.append(exc)
        self.kw_names = None
        self.ip = h.target
        return True

    def _note_origin(self, exc, at: int, reraise: bool) -> None:
        """Where the compiled frame can run natively into ``exc``: the root
        instruction that raised it, unless the frame was handling another
        exception then (the handler's code would run outside its handler):
        then where the outermost exception being handled came from."""
        if reraise and id(exc) in self.origins:
            return
        origin = at
        if self.handled:
            origin = self.origins.get(id(self.handled[0]), (None, None))[1]
        self.origins[id(exc)] = (exc, origin)

    def _place_break(self, gb: GraphBreak) -> None:
        """The root instruction a break leaving the compiled frame is placed
        at (``gb.root_ip``): an exception leaving the frame, or a break while
        the frame handles one, goes to where the exception was raised (the
        frame runs natively from there, so Python raises and handles it);
        when that is not known, the break is not resumable."""
        held = None
        if gb.exc_value is not None and id(gb.exc_value) in self.origins:
            held = self.origins[id(gb.exc_value)]
        elif self.handled:
            held = self.origins.get(id(self.handled[0]), (None, None))
        if held is None:
            if gb.root_ip is None:
                gb.root_ip = self.ip - 1
            return
        if held[1] is None:
            gb.in_handler = True
            gb.root_ip = self.ip - 1
        else:
            gb.root_ip = held[1]

    def _rewind(self, gb: GraphBreak) -> str | None:
        """Stop the root frame before the instruction ``gb`` happened during,
        as a trace with ``stop_at`` there would have stopped, when that
        instruction changed nothing but the frame's own stack (its handler
        raised before recording anything, and ran no nested frame): the
        record up to the break is then this trace's. Else (the break moved
        to another instruction, an exception is in flight, or the
        instruction recorded into the trace before it broke), the reason
        the segment must be traced again up to the break; None when rewound."""
        if self.before is None or gb.root_ip != self.before[0]:
            return "the break is placed at another instruction"
        if gb.exc_value is not None or gb.exc is not None or gb.in_handler or self.handled:
            return "an exception is being raised or handled"
        ip, first, stack, kw_names, lineno, nlocals, nlazy, nhandled, mark, nspec = self.before
        if not first:
            # (a loop unrolled in the trace: the segment ends where a trace
            # up to this instruction stops, at its first run)
            return "the breaking instruction ran before in this trace"
        if (len(self.locals), len(self.lazy_args), len(self.handled)) != (nlocals, nlazy, nhandled):
            return "the breaking instruction changed the frame's locals"
        if self.output.mark() != mark:
            return "the breaking instruction recorded into the trace"
        for site in list(self.output.spec_sites)[nspec:]:
            del self.output.spec_sites[site]
        self.ip, self.stack, self.kw_names, self.lineno = ip, stack, kw_names, lineno
        self.stop_at, self.stopped = ip, True
        return None

    def step(self, ins, index: int) -> None:
        """Run instruction ``index`` (``ins``), the instruction pointer
        already past it (predication.py runs the sides of a branch so)."""
        self.output.nested_steps += 1
        depth = len(self.stack)
        HANDLERS[ins.name](self, ins)
        if self.config.checks:
            check_stack_effect(self, ins, index, depth)

    # -- what kinds of values ask of the interpreter ----------------------------------
    def call_object(self, fnv: Value, obj, args: list, kwargs: dict) -> Value:
        """Call the real object ``obj``, read as ``fnv`` (callees.py)."""
        return callees.call_object(self, fnv, obj, args, kwargs)

    def trace_backward(self, loss, args: list, kwargs: dict):
        """``loss.backward(*args, **kwargs)`` traced into the graph
        (whole_step.py): Const(None), or None when it runs natively."""
        return trace_backward(self, loss, args, kwargs)

    def through_modes(self, op, args: list, kwargs: dict, native, at_entry=None):
        """``op(*args, **kwargs)`` with the torch-function modes the trace
        has entered: traced through the top one's handler when torch hands
        it the operation (values/modes.py), else ``native()`` (what the
        value's kind does without modes). ``at_entry(func)``: does ``op``
        hand the mode ``func`` on entry and return its result as is (the
        default: yes, for tensor operators, methods and attributes, which
        are C slots or torch's wrappers that dispatch first)?"""
        out = self.output
        if not out.tf_modes:
            return native()
        r = modes.dispatch(self, op, args, kwargs, at_entry or _any_call)
        if r is not None:
            return r
        out.tf_bypass += 1  # torch hands the modes nothing: neither does the trace
        try:
            return native()
        finally:
            out.tf_bypass -= 1

    def inline_function(self, fn: types.FunctionType, args: list, kwargs: dict,
                        fn_source, library_ok: bool = False) -> Value:
        """Run the Python function ``fn`` in a child frame (callees.py)."""
        return callees.inline_function(self, fn, args, kwargs, fn_source, library_ok)

    def inline_code(self, code: types.CodeType, f_globals: dict, locals_: dict,
                    cells: dict, fn_source=None) -> Value:
        """Run ``code`` with the given locals and cells in a child frame."""
        if self.depth + 1 > self.config.inline_depth:
            raise GraphBreak("JF008", f"{code.co_qualname} at depth {self.depth + 1}")
        if code.co_flags & _ASYNC:
            raise GraphBreak("JF013", f"{code.co_qualname} is a coroutine")
        receiver = locals_.get(code.co_varnames[0]) if code.co_argcount else None
        t = self
        active = 0
        while t is not None:
            # the same code over other closure cells is another function (a
            # decorator's wrapper around each decorated function), not recursion
            if t.code is code and _same_receiver(t, code, receiver) and all(
                    t.cells.get(n) is cells.get(n) for n in code.co_freevars):
                active += 1
                # a bounded re-entry is dispatch (a __getitem__ that reaches
                # itself again through to_tuple() with another key); deeper
                # recursion runs natively, one cached frame per level
                if active >= self.config.inline_recursion:
                    raise GraphBreak("JF018", f"{code.co_qualname} calls itself")
            t = t.parent
        child = Translator(self.output, code, f_globals, locals_, cells, parent=self,
                           fn_source=fn_source)
        if code.co_flags & inspect.CO_GENERATOR:
            # a generator object: its frame runs when it is resumed
            # (values/generators.py); a break in it places the compiled
            # frame's break where it was made
            root = self.root()
            return GeneratorV(child, None if root.handled else root.ip - 1)
        return child.run()

    def throw(self, exc: Value) -> Value | None:
        """``generator.throw``: ``exc`` raised in this (suspended) frame at
        the instruction it stopped at, then run on."""
        gb = raising(self, exc, reraise=True)
        if isinstance(exc, ExcV):
            exc.raised = True
            exc.attrs.setdefault("__traceback__", TracebackV())
        gb.reraised_by = None
        if self._unwind(gb):
            return self.run()
        raise gb


def _same_receiver(t: Translator, code, receiver) -> bool:
    """Recursion, unless a method runs on another object (a Sequential inside
    a Sequential is nesting, bounded by the inline depth, not recursion)."""
    if code.co_argcount == 0 or code.co_varnames[0] != "self":
        return True
    other = t.locals.get("self")
    if isinstance(receiver, ObjV) and isinstance(other, ObjV):
        return receiver.obj is other.obj
    return receiver is other


_IMMUTABLE = (int, float, bool, str, bytes, complex, type(None), type(Ellipsis), tuple,
              frozenset, type, types.FunctionType, types.BuiltinFunctionType,
              types.ModuleType)


def _mutable(obj) -> bool:
    """Could the trace's copy of ``obj`` go stale, or lose its writes?"""
    return not isinstance(obj, _IMMUTABLE)
