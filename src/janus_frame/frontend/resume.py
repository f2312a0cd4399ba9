"""Resume functions: the rest of a function after a graph break.

In: the original code object, the instruction index to resume at (numbering
of ``bytecode_info.load_instructions``), which stack slots hold NULL there, and
the locals live there.
Out: a code object taking the non-NULL stack values and then the live locals
positionally. Its prologue pushes the stack back (re-creating NULLs) and jumps
into a verbatim copy of the original bytecode, so file name, line numbers and
tracebacks are the user's. The hook intercepts and compiles it like any other
frame; resume codes are cached, so their cache entries survive recompiles.

A chain of resume functions (one graph break per iteration of a loop, say) is
run by :func:`trampoline`: a compiled resume function returns a
:class:`TailCall` instead of calling the next one, so the Python stack stays
flat however many iterations run.
"""
from __future__ import annotations

import types
import weakref

from bytecode import Bytecode, CellVar, FreeVar, Instr, Label, TryBegin
from bytecode.instr import InstrLocation

from .bytecode_info import (
    RESUME_CODES, ResumeInfo, exception_handlers, leading_argument, load_instructions,
)


class TailCall:
    """Returned by a compiled resume function: continue with ``fn(*args)``."""

    __slots__ = ("fn", "args")

    def __init__(self, fn, args) -> None:
        self.fn = fn
        self.args = args


def trampoline(fn, args):
    """Run ``fn(*args)`` and every tail call it hands back."""
    while True:
        r = fn(*args)
        if type(r) is not TailCall:
            return r
        fn, args = r.fn, r.args


def make_function(code, globals_, closure):
    """A resume function bound to the calling frame's closure cells."""
    return types.FunctionType(code, globals_, code.co_name, None, closure)


# original code -> {key: resume code}
_CACHE: "weakref.WeakKeyDictionary[types.CodeType, dict]" = weakref.WeakKeyDictionary()


def resume_code(orig: types.CodeType, index: int, null_slots: tuple[bool, ...],
                live: tuple[str, ...]) -> types.CodeType:
    """The resume code for ``orig`` at instruction ``index`` (cached).
    ``orig`` must be an original code, not a resume code."""
    assert orig not in RESUME_CODES
    key = (index, null_slots, live)
    per_code = _CACHE.setdefault(orig, {})
    hit = per_code.get(key)
    if hit is not None:
        return hit
    instrs, _ = load_instructions(orig)
    target_ins = instrs[index]
    lineno = target_ins.lineno or orig.co_firstlineno
    bc = Bytecode.from_code(orig)
    _keep_handler_depths(bc, orig)
    # place a label right before the target instruction
    target = Label()
    n = -1
    items = list(bc)
    for pos, item in enumerate(items):
        if isinstance(item, Instr):
            n += 1
            if n == index:
                items.insert(pos, target)
                break
    loc = InstrLocation(lineno, lineno, None, None)
    stack_args = [f"__jf_s{i}" for i, is_null in enumerate(null_slots) if not is_null]
    lead = leading_argument(orig)
    # the original's cell variables become free variables: the replacement
    # hands over their cells (with their contents) in the closure
    free_all = list(orig.co_cellvars) + list(orig.co_freevars)
    prologue = []
    if free_all:
        prologue.append(Instr("COPY_FREE_VARS", len(free_all), location=loc))
    prologue.append(Instr("RESUME", 0, location=loc))
    for i, is_null in enumerate(null_slots):
        if is_null:
            prologue.append(Instr("PUSH_NULL", location=loc))
        else:
            prologue.append(Instr("LOAD_FAST", f"__jf_s{i}", location=loc))
    prologue.append(Instr("JUMP_FORWARD", target, location=loc))
    # the original prologue (COPY_FREE_VARS / RESUME) is now unreachable:
    # drop it so the stack analysis only sees live code
    body = []
    skipping = True
    dropped = 0
    for item in items:
        if skipping and isinstance(item, Instr) and item.name in ("COPY_FREE_VARS", "RESUME",
                                                                   "MAKE_CELL", "NOP"):
            dropped += 1
            continue
        if isinstance(item, Instr):
            skipping = False
        body.append(item)
    if orig.co_cellvars:
        for item in body:
            if isinstance(item, Instr) and isinstance(item.arg, CellVar):
                item.arg = FreeVar(item.arg.name)
        bc.cellvars = []
        bc.freevars = free_all
    bc[:] = prologue + body
    # zero-argument super() reads the frame's first local: keep the original
    # first argument in that slot
    bc.argnames = ([lead] if lead else []) + stack_args + [n for n in live if n != lead]
    bc.argcount = len(bc.argnames)
    bc.posonlyargcount = 0
    bc.kwonlyargcount = 0
    bc.flags = bc.flags & ~(0x04 | 0x08)
    bc.name = orig.co_name
    bc.qualname = f"{orig.co_qualname}.<resume at line {lineno}>"
    # the exception table keeps the original's depths: the body is copied
    # verbatim and the prologue rebuilds the stack of the original, but the
    # part of a region before the resume point is unreachable, so the
    # assembler could not compute them (an unset depth is 32768: unwinding
    # would leave the whole stack to a with-block's cleanup)
    code = bc.to_code(compute_exception_stack_depths=False)
    offset = dropped - len(prologue)
    n_new = len(load_instructions(code)[0])
    assert n_new == len(instrs) - dropped + len(prologue), (n_new, len(instrs), dropped)
    RESUME_CODES[code] = ResumeInfo(orig, index, lineno, offset)
    per_code[key] = code
    return code


def _keep_handler_depths(bc: Bytecode, orig: types.CodeType) -> None:
    """Give every exception region of ``bc`` (the original's bytecode) its
    depth from the original's exception table."""
    handlers = exception_handlers(orig)
    pending: list[TryBegin] = []
    n = 0
    for item in bc:
        if isinstance(item, TryBegin):
            pending.append(item)
        elif isinstance(item, Instr):
            for tb in pending:
                h = handlers[n]
                tb.stack_depth = h.depth if h is not None else 0
            pending = []
            n += 1
    for tb in pending:
        tb.stack_depth = 0
