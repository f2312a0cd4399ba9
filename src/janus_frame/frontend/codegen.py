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
import io
import types

from bytecode import Bytecode, FreeVar, Instr
from bytecode.instr import InstrLocation

from ..diagnostics.logs import artifact_logger
from .sources import pinned


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
        for ins in bc:
            if not isinstance(ins, Instr):
                out.append(ins)
                continue
            ins.location = InstrLocation(lineno, lineno, None, None)
            if ins.name in ("LOAD_FAST", "STORE_FAST", "DELETE_FAST") and ins.arg in rename:
                ins.arg = rename[ins.arg]
                out.append(ins)
            elif ins.name in ("LOAD_FAST", "STORE_FAST") and isinstance(ins.arg, str) and \
                    ins.arg.startswith("__jf_c_"):
                # a closure cell written by replayed side effects (an assigned
                # name compiles as a local; it is the frame's free variable)
                uses_free = True
                op = "LOAD_DEREF" if ins.name == "LOAD_FAST" else "STORE_DEREF"
                out.append(Instr(op, FreeVar(ins.arg[7:]), lineno=lineno))
            elif ins.name == "LOAD_GLOBAL" and ins.arg[1].startswith("__jf_"):
                push_null, gname = ins.arg
                if push_null:
                    out.append(Instr("PUSH_NULL", lineno=lineno))
                if gname.startswith("__jf_k"):
                    out.append(Instr("LOAD_CONST", self.consts[int(gname[6:])], lineno=lineno))
                elif gname.startswith("__jf_h_"):
                    out.append(Instr("LOAD_CONST", getattr(builtins, gname[7:]), lineno=lineno))
                elif gname.startswith("__jf_g_"):
                    out.append(Instr("LOAD_GLOBAL", (False, gname[7:]), lineno=lineno))
                elif gname.startswith("__jf_c_"):
                    uses_free = True
                    out.append(Instr("LOAD_DEREF", FreeVar(gname[7:]), lineno=lineno))
                elif gname.startswith("__jf_p"):
                    out.append(Instr("LOAD_CONST", pinned(int(gname[6:])), lineno=lineno))
                elif gname == "__jf_torch":
                    import torch

                    out.append(Instr("LOAD_CONST", torch, lineno=lineno))
                elif gname.startswith("__jf_cell_"):
                    # the cell object itself (to bind a resume function's closure)
                    uses_free = True
                    out.append(Instr("LOAD_CLOSURE", FreeVar(gname[10:]), lineno=lineno))
                else:
                    raise AssertionError(f"unknown placeholder {gname}")
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


def _slot_names(code: types.CodeType) -> list[str]:
    n = code.co_argcount + code.co_kwonlyargcount
    n += bool(code.co_flags & 0x04) + bool(code.co_flags & 0x08)
    return list(code.co_varnames[:n])


def nargs_of(code: types.CodeType) -> int:
    return len(_slot_names(code))


def slot_names(code: types.CodeType) -> list[str]:
    return _slot_names(code)
