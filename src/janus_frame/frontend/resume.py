"""Resume functions: the rest of a function after a graph break.

In: the original code object, the instruction index to resume at (numbering
of ``interpreter.load_instructions``), which stack slots hold NULL there, and
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

import dataclasses
import types
import weakref

from bytecode import Bytecode, CellVar, FreeVar, Instr, Label, TryBegin, TryEnd
from bytecode.instr import InstrLocation

from .interpreter import load_instructions


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


@dataclasses.dataclass(frozen=True)
class ResumeInfo:
    orig: types.CodeType
    index: int
    lineno: int
    # instruction i of the resume code is instruction i + offset of orig
    # (for i past the prologue), so a resume of a resume is based on orig
    offset: int


# resume code -> what it resumes (marks codes whose compiled form may return
# TailCall); original code -> {key: resume code}
RESUME_CODES: "weakref.WeakKeyDictionary[types.CodeType, ResumeInfo]" = \
    weakref.WeakKeyDictionary()
_CACHE: "weakref.WeakKeyDictionary[types.CodeType, dict]" = weakref.WeakKeyDictionary()

_JUMP_ALWAYS = {"JUMP_FORWARD", "JUMP_BACKWARD", "JUMP_BACKWARD_NO_INTERRUPT", "JUMP"}
_NO_FALLTHROUGH = _JUMP_ALWAYS | {"RETURN_VALUE", "RAISE_VARARGS", "RERAISE"}


_try_cache: "weakref.WeakKeyDictionary[types.CodeType, list]" = weakref.WeakKeyDictionary()


def try_regions(code: types.CodeType) -> list[bool]:
    hit = _try_cache.get(code)
    if hit is None:
        hit = _try_cache[code] = _try_regions(code)
    return hit


def _try_regions(code: types.CodeType) -> list[bool]:
    """For each instruction index: is it covered by an exception-table entry
    other than a with-block's cleanup (a try body or an exception handler)?
    A with-block's body can be resumed in: the resume prologue puts the
    context's ``__exit__`` back on the stack and the copied exception table
    still covers the body."""
    items = list(Bytecode.from_code(code))
    with_handlers = set()
    for pos, item in enumerate(items):
        if isinstance(item, Label):
            following = [x.name for x in items[pos + 1:pos + 6] if isinstance(x, Instr)][:2]
            if following == ["PUSH_EXC_INFO", "WITH_EXCEPT_START"]:
                with_handlers.add(item)
    out = []
    open_regions: list[bool] = []  # per open TryBegin: is it a plain try/handler?
    for item in items:
        if isinstance(item, TryBegin):
            open_regions.append(item.target not in with_handlers)
        elif isinstance(item, TryEnd):
            if open_regions:
                open_regions.pop()
        elif isinstance(item, Instr):
            out.append(any(open_regions))
    return out


def live_locals(code: types.CodeType, start: int) -> set[str]:
    """Locals that may be read from instruction ``start`` on (a sound
    over-approximation: read on some path, whether or not written first)."""
    instrs, labels = load_instructions(code)
    seen = set()
    todo = [start]
    names = set()
    while todo:
        i = todo.pop()
        while 0 <= i < len(instrs) and i not in seen:
            seen.add(i)
            ins = instrs[i]
            if ins.name in ("LOAD_FAST", "DELETE_FAST", "LOAD_FAST_CHECK"):
                names.add(ins.arg)
            if isinstance(ins.arg, Label):
                todo.append(labels[ins.arg])
            if ins.name in _NO_FALLTHROUGH:
                break
            i += 1
    return names


def leading_argument(code: types.CodeType) -> str | None:
    """The argument a resume function of ``code`` must take first: the
    original first argument when the code may call zero-argument super()."""
    if code.co_argcount and "__class__" in code.co_freevars:
        return code.co_varnames[0]
    return None


def original_position(code: types.CodeType, index: int) -> tuple[types.CodeType, int]:
    """(original code, instruction index in it) for an index of ``code``,
    which may itself be a resume code."""
    info = RESUME_CODES.get(code)
    if info is None:
        return code, index
    return info.orig, index + info.offset


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
    code = bc.to_code()
    offset = dropped - len(prologue)
    n_new = len(load_instructions(code)[0])
    assert n_new == len(instrs) - dropped + len(prologue), (n_new, len(instrs), dropped)
    RESUME_CODES[code] = ResumeInfo(orig, index, lineno, offset)
    per_code[key] = code
    return code
