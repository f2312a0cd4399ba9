"""Generated guard and replacement functions.

In: Python source lines for a function body over the frame's argument slots
(``__jf_a0 .. __jf_a{n-1}``), with placeholder names for constants, builtins,
globals and closure cells (see sources.py), and the original code object.
Out: a plain function following the hook's calling convention: it takes the
argument slots positionally, has the original code's free variables (so the
hook can bind the frame function's closure), the original file name, and the
user's line numbers, so tracebacks point at user code. ``build_later`` makes
such a function's code only when first asked for (the guard's explaining
twin).

Source text keeps generated code printable (``JANUS_LOGS=bytecode`` prints the
source and the final bytecode); placeholders are rewritten with the
``bytecode`` package, so nothing is injected into the user's globals.
"""
from __future__ import annotations

import builtins
import dis
import inspect
import io
import re
import types
import typing
from typing import Callable

from bytecode import Bytecode, FreeVar, Instr
from bytecode.instr import InstrLocation

from .. import _C
from ..config import config
from ..diagnostics.logs import artifact_logger
from .pyversion import NULL_AFTER_CALLABLE, VERSION
from .sources import pinned

# 3.13's superinstructions over two locals, and their two plain halves
_FUSED = {"LOAD_FAST_LOAD_FAST": ("LOAD_FAST", "LOAD_FAST"),
          "STORE_FAST_STORE_FAST": ("STORE_FAST", "STORE_FAST"),
          "STORE_FAST_LOAD_FAST": ("STORE_FAST", "LOAD_FAST")}
_FAST = ("LOAD_FAST", "STORE_FAST", "DELETE_FAST", "LOAD_FAST_CHECK", "LOAD_FAST_AND_CLEAR")


class _CodeNames(typing.NamedTuple):
    """What building reads of the original code object."""

    co_argcount: int
    co_kwonlyargcount: int
    co_flags: int
    co_varnames: tuple
    co_freevars: tuple
    co_name: str
    co_qualname: str
    co_filename: str
    co_firstlineno: int


_PIN = re.compile(r"\b__jf_p(\d+)\b")  # a pinned object's placeholder (sources.py)


class FunctionBuilder:
    """Collects constants for one generated function and builds it."""

    def __init__(self, orig_code: types.CodeType, nargs: int) -> None:
        self.orig = orig_code
        self.nargs = nargs
        self.consts: list = []
        self._const_ids: dict[int, str] = {}
        self._pins: dict | None = None  # pinned objects kept by build_later (else sources')

    def const(self, obj) -> str:
        """Placeholder name for an arbitrary object used as a constant."""
        key = id(obj)
        name = self._const_ids.get(key)
        if name is None:
            name = f"__jf_k{len(self.consts)}"
            self.consts.append(obj)
            self._const_ids[key] = name
        return name

    def build(self, name: str, body: list[str], lineno: int, kind: str,
              globals_: dict, closure: tuple | None = None) -> types.FunctionType:
        """``closure`` is the frame function's (the hook re-binds it when a
        later frame's function has another closure)."""
        src = self._source(name, body)
        code = self._code(src, name, lineno, kind)
        if code.co_freevars:
            if closure is None or len(closure) != len(code.co_freevars):
                closure = tuple(types.CellType() for _ in code.co_freevars)
        else:
            closure = None
        fn = types.FunctionType(code, globals_, name, None, closure)
        fn._janus_source = src  # for explain() and logs
        return fn

    def build_later(self, name: str, body: list[str], lineno: int,
                    kind: str) -> Callable[[], types.CodeType]:
        """The code :meth:`build` would make, made on the first call and then
        kept: for code that most compiles never run (a guard's explaining
        twin runs at a recompile). It keeps the constants and the pinned
        objects the code reads and the original code's names -- not the code
        object, whose own cache entries would then hold it."""
        src = self._source(name, body)
        if artifact_logger("bytecode") is not None:
            code = self._code(src, name, lineno, kind)  # logged with the rest of the compile
            return lambda: code
        later = FunctionBuilder(_CodeNames(*(getattr(self.orig, f) for f in _CodeNames._fields)),
                                self.nargs)
        later.consts = list(self.consts)
        later._pins = {key: pinned(key) for key in map(int, _PIN.findall(src))}
        made: list = []

        def code() -> types.CodeType:
            if not made:
                made.append(later._code(src, name, lineno, kind))
            return made[0]
        return code

    def _source(self, name: str, body: list[str]) -> str:
        params = ", ".join(f"__jf_a{i}" for i in range(self.nargs))
        return f"def {name}({params}):\n" + "".join(f"    {line}\n" for line in body)

    def _code(self, src: str, name: str, lineno: int, kind: str) -> types.CodeType:
        ns: dict = {}
        exec(compile(src, f"<janus_frame {kind}>", "exec"), ns)
        code = self._patch(ns[name].__code__, lineno, kind)
        if kind == "guard":
            # a guard also runs as a plain call (a segment looping in place
            # checks the next iteration's arguments): never a frame to compile
            _C.set_code_strategy(code, _C.SKIP, _C.DEFAULT)
        lg = artifact_logger("bytecode")
        if lg is not None:
            out = io.StringIO()
            dis.dis(code, file=out)
            lg.info("%s for %s (%s:%s)\n%s\n%s", kind, self.orig.co_qualname,
                    self.orig.co_filename, lineno, src, out.getvalue())
        return code

    def _patch(self, code: types.CodeType, lineno: int, kind: str) -> types.CodeType:
        orig = self.orig
        # Each rewrite below keeps the stack depth at every point (a load for
        # a load, a NULL and a load for a LOAD_GLOBAL pushing a NULL, a
        # superinstruction's two halves), so the stack size CPython computed
        # and the depths of the exception table stay valid: they are kept,
        # not recomputed (the ``bytecode`` package's control-flow analysis of
        # the guards and the replacement was about a fifth of the CPU time of
        # a small model's first call). The checks flag verifies it.
        bc = Bytecode.from_code(code, conserve_exception_block_stackdepth=True)
        argnames = _slot_names(orig)
        rename = {f"__jf_a{i}": argnames[i] for i in range(self.nargs)}
        out = []
        uses_free = False
        for ins in _split_fused(bc):
            if not isinstance(ins, Instr):
                out.append(ins)
                continue
            ins.location = InstrLocation(lineno, lineno, None, None)
            if ins.name in _FAST and ins.arg in rename:
                ins.arg = rename[ins.arg]
                out.append(ins)
            elif ins.name in ("LOAD_FAST", "LOAD_FAST_CHECK", "STORE_FAST") and \
                    isinstance(ins.arg, str) and ins.arg.startswith("__jf_c_"):
                # a closure cell written by replayed side effects (an assigned
                # name compiles as a local; it is the frame's free variable)
                uses_free = True
                op = "STORE_DEREF" if ins.name == "STORE_FAST" else "LOAD_DEREF"
                out.append(Instr(op, FreeVar(ins.arg[7:]), lineno=lineno))
            elif ins.name == "LOAD_GLOBAL" and ins.arg[1].startswith("__jf_"):
                push_null, gname = ins.arg
                if gname.startswith("__jf_k"):
                    load = Instr("LOAD_CONST", self.consts[int(gname[6:])], lineno=lineno)
                elif gname.startswith("__jf_h_"):
                    load = Instr("LOAD_CONST", getattr(builtins, gname[7:]), lineno=lineno)
                elif gname.startswith("__jf_g_"):
                    load = Instr("LOAD_GLOBAL", (False, gname[7:]), lineno=lineno)
                elif gname.startswith("__jf_c_"):
                    uses_free = True
                    load = Instr("LOAD_DEREF", FreeVar(gname[7:]), lineno=lineno)
                elif gname.startswith("__jf_p"):
                    key = int(gname[6:])
                    obj = self._pins[key] if self._pins is not None else pinned(key)
                    load = Instr("LOAD_CONST", obj, lineno=lineno)
                elif gname == "__jf_torch":
                    import torch

                    load = Instr("LOAD_CONST", torch, lineno=lineno)
                elif gname.startswith("__jf_cell_"):
                    # the cell object itself (to bind a resume function's
                    # closure): 3.13 loads it with LOAD_FAST of the free slot
                    uses_free = True
                    load = Instr("LOAD_FAST" if VERSION >= (3, 13) else "LOAD_CLOSURE",
                                 FreeVar(gname[10:]), lineno=lineno)
                else:
                    raise AssertionError(f"unknown placeholder {gname}")
                if push_null:  # the NULL slot where the running version has it
                    null = Instr("PUSH_NULL", lineno=lineno)
                    out += [load, null] if NULL_AFTER_CALLABLE else [null, load]
                else:
                    out.append(load)
            else:
                out.append(ins)
        bc[:] = out
        bc.argnames = list(argnames[: self.nargs]) if self.nargs else []
        if uses_free or orig.co_freevars:
            # The hook binds the frame function's closure; the free-variable
            # layout must therefore be the original's, in its order.
            bc.freevars = list(orig.co_freevars)
            if orig.co_freevars:
                bc.insert(0, Instr("COPY_FREE_VARS", len(orig.co_freevars), lineno=lineno))
        bc.name = orig.co_name
        bc.qualname = f"{orig.co_qualname}[{kind}]"
        bc.filename = orig.co_filename
        bc.first_lineno = min(lineno, orig.co_firstlineno) if lineno else orig.co_firstlineno
        bc.docstring = None
        patched = bc.to_code(stacksize=code.co_stacksize, compute_exception_stack_depths=False)
        if config.checks:
            _check_depths(bc, patched)
        return patched


def _check_depths(bc: Bytecode, patched: types.CodeType) -> None:
    """The checks flag: the kept stack size and exception-table depths are
    those the ``bytecode`` package computes for the patched code."""
    computed = bc.to_code()
    if computed.co_stacksize > patched.co_stacksize or \
            computed.co_exceptiontable != patched.co_exceptiontable:
        raise AssertionError(f"{patched.co_qualname}: a placeholder rewrite changed the stack "
                             f"depths (stack size {computed.co_stacksize} > "
                             f"{patched.co_stacksize}, or the exception table)")


def _split_fused(bc) -> list:
    """The instructions of ``bc`` with 3.13's two-local superinstructions
    split into their plain halves (so placeholders in either are rewritten)."""
    out = []
    for ins in bc:
        if isinstance(ins, Instr) and ins.name in _FUSED:
            first, second = _FUSED[ins.name]
            out.append(Instr(first, ins.arg[0], location=ins.location))
            out.append(Instr(second, ins.arg[1], location=ins.location))
        else:
            out.append(ins)
    return out


def _slot_names(code: types.CodeType) -> list[str]:
    n = code.co_argcount + code.co_kwonlyargcount
    n += bool(code.co_flags & inspect.CO_VARARGS) + bool(code.co_flags & inspect.CO_VARKEYWORDS)
    return list(code.co_varnames[:n])


def nargs_of(code: types.CodeType) -> int:
    return len(_slot_names(code))


def slot_names(code: types.CodeType) -> list[str]:
    return _slot_names(code)
