"""Generated guard and replacement functions.

In: Python source lines for a function body over the frame's argument slots
(``__jf_a0 .. __jf_a{n-1}``), with placeholder names for constants, builtins,
globals and closure cells (see sources.py), and the original code object.
Out: a plain function following the hook's calling convention: it takes the
argument slots positionally, has the original code's free variables (so the
hook can bind the frame function's closure), the original file name, and the
user's line numbers, so tracebacks point at user code.

Source text keeps generated code printable (``JANUS_LOGS=bytecode`` prints the
source and the final bytecode); placeholders are rewritten with the
``bytecode`` package, so nothing is injected into the user's globals.
"""
from __future__ import annotations

import builtins
import dis
import inspect
import io
import types

from bytecode import Bytecode, FreeVar, Instr
from bytecode.instr import InstrLocation

from .. import _C
from ..diagnostics.logs import artifact_logger
from .pyversion import NULL_AFTER_CALLABLE, VERSION
from .sources import pinned

# 3.13's superinstructions over two locals, and their two plain halves
_FUSED = {"LOAD_FAST_LOAD_FAST": ("LOAD_FAST", "LOAD_FAST"),
          "STORE_FAST_STORE_FAST": ("STORE_FAST", "STORE_FAST"),
          "STORE_FAST_LOAD_FAST": ("STORE_FAST", "LOAD_FAST")}
_FAST = ("LOAD_FAST", "STORE_FAST", "DELETE_FAST", "LOAD_FAST_CHECK", "LOAD_FAST_AND_CLEAR")


class FunctionBuilder:
    """Collects constants for one generated function and builds it."""

    def __init__(self, orig_code: types.CodeType, nargs: int) -> None:
        self.orig = orig_code
        self.nargs = nargs
        self.consts: list = []
        self._const_ids: dict[int, str] = {}

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
        params = ", ".join(f"__jf_a{i}" for i in range(self.nargs))
        src = f"def {name}({params}):\n" + "".join(f"    {line}\n" for line in body)
        ns: dict = {}
        exec(compile(src, f"<janus_frame {kind}>", "exec"), ns)
        code = self._patch(ns[name].__code__, lineno, kind)
        if code.co_freevars:
            if closure is None or len(closure) != len(code.co_freevars):
                closure = tuple(types.CellType() for _ in code.co_freevars)
        else:
            closure = None
        fn = types.FunctionType(code, globals_, name, None, closure)
        fn._janus_source = src  # for explain() and logs
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
        return fn

    def _patch(self, code: types.CodeType, lineno: int, kind: str) -> types.CodeType:
        orig = self.orig
        bc = Bytecode.from_code(code)
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
                    load = Instr("LOAD_CONST", pinned(int(gname[6:])), lineno=lineno)
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
        return bc.to_code()


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
