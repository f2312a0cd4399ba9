"""Helpers for the foundation tests (the C frame hook and the activation API).

In:  nothing but the installed ``janus_frame`` package.
Out: frame transforms that stand in for the symbolic interpreter: small,
     observable transforms, so the hook, its cache and the API can be tested
     before (and independently of) the symbolic interpreter:

- ``identity_transform``: the frame's own code, re-laid-out to the calling
  convention (every argument slot positional), under an always-true guard.
  It records every frame it was asked to compile.
- ``marking_transform``: the same, but the replacement reads the global
  ``MARK_REPLACED`` where the original reads ``MARK``, so a test can see that
  the replacement -- not the original frame -- produced a result.

The fixtures installing them live in conftest.py; foundation test modules
use ``clean_state`` so each starts and ends with janus_frame off in this
thread and an empty cache.
"""
from __future__ import annotations

import types

import pytest

import janus_frame
from janus_frame import _C, hook

MARK = "native"
MARK_REPLACED = "replaced"

_VARARGS = 0x04
_VARKEYWORDS = 0x08


def relayout(code: types.CodeType, rename: dict | None = None, name_suffix: str = "") -> types.CodeType:
    """``code`` taking its A argument slots (positional, keyword-only, ``*args``,
    ``**kwargs``) as A plain positional parameters. Local slot numbering does
    not change, so the bytecode runs unmodified on the same slot layout."""
    nargs = (code.co_argcount + code.co_kwonlyargcount + bool(code.co_flags & _VARARGS)
             + bool(code.co_flags & _VARKEYWORDS))
    names = code.co_names
    if rename:
        names = tuple(rename.get(n, n) for n in names)
    return code.replace(
        co_argcount=nargs,
        co_posonlyargcount=0,
        co_kwonlyargcount=0,
        co_flags=code.co_flags & ~(_VARARGS | _VARKEYWORDS),
        co_names=names,
        co_name=code.co_name + name_suffix,
        co_qualname=code.co_qualname + name_suffix,
    )


def always_true_guard(nargs: int, calls: list | None = None) -> types.FunctionType:
    """A guard taking ``nargs`` positional slots that appends to ``calls`` if
    given. The list is embedded as a constant: the hook re-binds guards to
    the frame's globals, so a guard cannot rely on globals of its own."""
    params = ", ".join(f"a{i}" for i in range(nargs))
    ns: dict = {}
    if calls is None:
        exec(f"def guard({params}):\n    return True\n", ns)
        return ns["guard"]
    exec(f"def guard({params}):\n    return '@calls@'.append(1) is None\n", ns)
    code = ns["guard"].__code__
    consts = tuple(calls if c == "@calls@" else c for c in code.co_consts)
    return types.FunctionType(code.replace(co_consts=consts), {})


class Recorder:
    """A frame transform that records what it compiled."""

    def __init__(self, rename: dict | None = None, skip=None):
        self.seen: list = []  # (code, args) per compile
        self.guard_calls: list = []
        self.rename = rename
        self.skip = skip or (lambda func: False)

    @property
    def codes(self):
        return [c for c, _ in self.seen]

    def names(self):
        return [c.co_name for c, _ in self.seen]

    def __call__(self, func, args, compiler):
        code = func.__code__
        if self.skip(func):
            raise hook.SkipFrame("test skip")
        self.seen.append((code, args))
        new = relayout(code, self.rename, "__jf")
        repl = types.FunctionType(new, func.__globals__, new.co_name, None, func.__closure__)
        guard = always_true_guard(len(args), self.guard_calls)
        return hook.CompiledEntry(guard=guard, replacement=repl)
