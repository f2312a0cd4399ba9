"""Facts about code objects read from their bytecode (a leaf of the frontend).

In: code objects (original ones, or resume codes made by resume.py).
Out: their instructions with labels resolved to instruction indices
(:func:`load_instructions`, the numbering every instruction index in the
frontend uses), which instructions sit in a try region (:func:`try_regions`),
which locals are live from an instruction on (:func:`live_locals`), the
argument a resume function must take first (:func:`leading_argument`), and
for a resume code the original code and position it continues
(:data:`RESUME_CODES`, :func:`original_position`).
"""
from __future__ import annotations

import dataclasses
import types
import weakref

from bytecode import Bytecode, Instr, Label, TryBegin, TryEnd

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
# instructions reading locals: the name(s) in their argument (3.12 and 3.13
# forms included; LOAD_FAST_AND_CLEAR saves a local to restore it)
_READS = {"LOAD_FAST": 0, "DELETE_FAST": 0, "LOAD_FAST_CHECK": 0, "LOAD_FAST_AND_CLEAR": 0,
          "LOAD_FAST_LOAD_FAST": (0, 1), "STORE_FAST_LOAD_FAST": (1,)}


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
            which = _READS.get(ins.name)
            if which == 0:
                if isinstance(ins.arg, str):  # (3.13: not a cell's slot)
                    names.add(ins.arg)
            elif which is not None:
                names.update(ins.arg[k] for k in which)
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
