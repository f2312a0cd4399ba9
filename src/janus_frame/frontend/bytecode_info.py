"""Facts about code objects read from their bytecode (a leaf of the frontend).

In: code objects (original ones, or resume codes made by resume.py).
Out: their instructions with labels resolved to instruction indices
(:func:`load_instructions`, the numbering every instruction index in the
frontend uses), their offsets (:func:`instr_offsets`), where an exception
raised by each goes (:func:`exception_handlers`, from the exception table;
:func:`try_regions`), which locals are live from an instruction on, along
exceptional paths too (:func:`live_locals`), the
argument a resume function must take first (:func:`leading_argument`), and
for a resume code the original code and position it continues
(:data:`RESUME_CODES`, :func:`original_position`).
"""
from __future__ import annotations

import dataclasses
import dis
import types
import weakref

from bytecode import Bytecode, Instr, Label

_instr_cache: "weakref.WeakKeyDictionary[types.CodeType, tuple]" = weakref.WeakKeyDictionary()


def load_instructions(code: types.CodeType) -> tuple[list[Instr], dict[Label, int]]:
    """Instructions of ``code`` with labels resolved to instruction indices."""
    hit = _instr_cache.get(code)
    if hit is None:
        instrs: list[Instr] = []
        labels: dict[Label, int] = {}
        for item in Bytecode.from_code(code):
            if isinstance(item, Label):
                labels[item] = len(instrs)
            elif isinstance(item, Instr):
                instrs.append(item)
        hit = (instrs, labels)
        _instr_cache[code] = hit
    return hit


@dataclasses.dataclass(frozen=True)
class ResumeInfo:
    orig: types.CodeType
    index: int
    lineno: int
    # instruction i of the resume code is instruction i + offset of orig
    # (for i past the prologue), so a resume of a resume is based on orig
    offset: int


# resume code -> what it resumes (marks codes whose compiled form may return
# TailCall)
RESUME_CODES: "weakref.WeakKeyDictionary[types.CodeType, ResumeInfo]" = \
    weakref.WeakKeyDictionary()

_JUMP_ALWAYS = {"JUMP_FORWARD", "JUMP_BACKWARD", "JUMP_BACKWARD_NO_INTERRUPT", "JUMP"}
_NO_FALLTHROUGH = _JUMP_ALWAYS | {"RETURN_VALUE", "RETURN_CONST", "RAISE_VARARGS", "RERAISE"}


@dataclasses.dataclass(frozen=True)
class Handler:
    """An exception-table entry as it applies to one instruction: where an
    exception raised there goes (``target``, an instruction index), the
    stack depth the stack is cut back to, and whether the raising
    instruction's offset (``lasti``) is pushed below the exception."""

    target: int
    depth: int
    lasti: bool


_offset_cache: "weakref.WeakKeyDictionary[types.CodeType, list]" = weakref.WeakKeyDictionary()
_handler_cache: "weakref.WeakKeyDictionary[types.CodeType, list]" = weakref.WeakKeyDictionary()


def instr_offsets(code: types.CodeType) -> list[int]:
    """The offset (in code units, as ``f_lasti`` counts) of each instruction
    of ``load_instructions(code)``."""
    hit = _offset_cache.get(code)
    if hit is None:
        hit = []
        for ins in dis.get_instructions(code):
            if ins.opname != "EXTENDED_ARG":  # folded into the next one
                hit.append(ins.offset // 2)
        if len(hit) != len(load_instructions(code)[0]):
            raise AssertionError(f"instruction numbering of {code.co_qualname} differs "
                                 "from dis")
        _offset_cache[code] = hit
    return hit


def exception_handlers(code: types.CodeType) -> list[Handler | None]:
    """For each instruction index: the handler an exception raised by that
    instruction goes to (the code's exception table), or None when it
    leaves the frame."""
    hit = _handler_cache.get(code)
    if hit is None:
        hit = _handler_cache[code] = _exception_handlers(code)
    return hit


def _exception_handlers(code: types.CodeType) -> list[Handler | None]:
    # byte offset of every instruction start (an EXTENDED_ARG prefix belongs
    # to the instruction it extends) -> instruction index
    index_at: dict[int, int] = {}
    pending: list[int] = []
    i = 0
    for ins in dis.get_instructions(code):
        pending.append(ins.offset)
        if ins.opname == "EXTENDED_ARG":
            continue
        for off in pending:
            index_at[off] = i
        pending = []
        i += 1
    out: list[Handler | None] = [None] * i
    for e in dis._parse_exception_table(code):  # 3.11-3.13: same table format
        h = Handler(index_at[e.target], e.depth, e.lasti)
        for off in range(e.start, e.end, 2):
            j = index_at.get(off)
            if j is not None:
                out[j] = h
    return out


def try_regions(code: types.CodeType) -> list[bool]:
    """For each instruction index: does an exception raised there stay in
    the frame (is it covered by an exception-table entry)?"""
    return [h is not None for h in exception_handlers(code)]


def live_locals(code: types.CodeType, start: int) -> set[str]:
    """Locals that may be read from instruction ``start`` on (a sound
    over-approximation: read on some path, whether or not written first).
    Paths include the exceptional ones: an instruction covered by the
    exception table may continue at its handler (an ``except`` body, a
    ``finally``, a with-block whose ``__exit__`` suppresses)."""
    instrs, labels = load_instructions(code)
    handlers = exception_handlers(code)
    seen = set()
    todo = [start]
    names = set()
    while todo:
        i = todo.pop()
        while 0 <= i < len(instrs) and i not in seen:
            seen.add(i)
            ins = instrs[i]
            if ins.name in ("LOAD_FAST", "DELETE_FAST", "LOAD_FAST_CHECK",
                            "LOAD_FAST_AND_CLEAR"):
                names.add(ins.arg)
            elif ins.name in ("LOAD_FAST_LOAD_FAST", "STORE_FAST_LOAD_FAST"):
                names.update(a for a in ins.arg if isinstance(a, str))
            if isinstance(ins.arg, Label):
                todo.append(labels[ins.arg])
            if handlers[i] is not None:
                todo.append(handlers[i].target)
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
