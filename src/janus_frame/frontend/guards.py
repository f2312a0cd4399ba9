"""Guards: the conditions under which a compiled entry is valid.

In: checks registered while tracing, each on a source the trace actually read
(tensor metadata, specialised constants, object identity and type, container
lengths and keys, global torch state).
Out: one generated function over the frame's argument slots that evaluates
all checks as a single boolean expression, plus a verbose twin that names the
first failing check (for recompile logs), and readable guard lines.
"""
from __future__ import annotations

import math
import types

import torch

from .codegen import FunctionBuilder
from .sources import Source


class Guards:
    def __init__(self, orig_code: types.CodeType, nargs: int) -> None:
        self.fb = FunctionBuilder(orig_code, nargs)
        self._clauses: dict[str, str] = {}  # expression -> readable description
        self._dynamic_ok: dict[str, str] = {}  # int-value clause -> its source's name

    def add(self, expr: str, desc: str) -> None:
        if expr not in self._clauses:
            self._clauses[expr] = desc

    def __len__(self) -> int:
        return len(self._clauses)

    # -- kinds ---------------------------------------------------------------

    def type_is(self, src: Source, obj) -> None:
        t = type(obj)
        self.add(f"__jf_h_type({src.expr()}) is {self.fb.const(t)}",
                 f"type({src.name()}) is {t.__qualname__}")

    def identity(self, src: Source, obj) -> None:
        self.add(f"{src.expr()} is {self.fb.const(obj)}",
                 f"{src.name()} is the same object ({_short(obj)})")

    def same_object(self, src: Source, other: Source) -> None:
        self.add(f"{src.expr()} is {other.expr()}", f"{src.name()} is {other.name()}")

    def constant(self, src: Source, value) -> None:
        """Type and value of a specialised Python constant."""
        e = src.expr()
        if value is None or isinstance(value, bool):
            self.add(f"{e} is {value!r}", f"{src.name()} is {value!r}")
            return
        t = type(value)
        tc = self.fb.const(t)
        if isinstance(value, float) and math.isnan(value):
            self.add(f"(__jf_h_type({e}) is {tc} and {e} != {e})", f"{src.name()} is nan")
            return
        lit = repr(value) if t in (int, float, str, bytes, complex) else self.fb.const(value)
        expr = f"(__jf_h_type({e}) is {tc} and {e} == {lit})"
        self.add(expr, f"{src.name()} == {value!r} ({t.__name__})")
        if t is int:  # if this fails, the recompile may make the int a graph input
            self._dynamic_ok[expr] = src.name()

    def length(self, src: Source, obj) -> None:
        self.type_is(src, obj)
        self.add(f"__jf_h_len({src.expr()}) == {len(obj)}", f"len({src.name()}) == {len(obj)}")

    def dict_keys(self, src: Source, obj: dict) -> None:
        self.type_is(src, obj)
        keys = list(obj.keys())
        self.add(f"__jf_h_list({src.expr()}) == {self.fb.const(keys)}",
                 f"keys of {src.name()} == {keys!r}")

    def tensor(self, src: Source, t: torch.Tensor) -> None:
        e = src.expr()
        parts = [
            f"__jf_h_type({e}) is {self.fb.const(type(t))}",
            f"{e}.dtype is {self.fb.const(t.dtype)}",
            f"{e}.shape == {tuple(t.shape)!r}",
            f"{e}.stride() == {tuple(t.stride())!r}",
            f"{e}.requires_grad is {t.requires_grad!r}",
            # the CPU is one device: a flag read is a third of a device comparison
            f"{e}.is_cpu is True" if t.device.type == "cpu" else
            f"{e}.device == {self.fb.const(t.device)}",
        ]
        self.add(
            "(" + " and ".join(parts) + ")",
            f"{src.name()}: {type(t).__name__} {t.dtype} {tuple(t.shape)} stride "
            f"{tuple(t.stride())} requires_grad={t.requires_grad} on {t.device}",
        )

    def global_state(self) -> None:
        """Ambient torch state every graph depends on."""
        k = self.fb.const
        self.add(f"{k(torch.is_grad_enabled)}() is {torch.is_grad_enabled()!r}",
                 f"grad mode is {'on' if torch.is_grad_enabled() else 'off'}")
        self.add(f"{k(torch.get_default_dtype)}() is {k(torch.get_default_dtype())}",
                 f"default dtype is {torch.get_default_dtype()}")
        ac = torch.is_autocast_enabled("cpu")
        self.add(f"{k(torch.is_autocast_enabled)}('cpu') is {ac!r}",
                 f"cpu autocast is {'on' if ac else 'off'}")

    # -- output ----------------------------------------------------------------

    def lines(self) -> list[str]:
        return list(self._clauses.values())

    def build(self, lineno: int, globals_: dict, closure: tuple | None = None):
        """Returns (guard_fn, explain_failure(func, args) -> str | None)."""
        exprs = list(self._clauses)
        body = ["return (" + "\n        and ".join(exprs) + ")" if exprs else "return True"]
        guard = self.fb.build("__jf_guard", body, lineno, "guard", globals_, closure)
        vbody = []
        for i, ex in enumerate(exprs):
            vbody.append(f"if not ({ex}): return {i}")
        vbody.append("return -1")
        # only its code is kept: a function would hold the user's globals
        verbose_code = self.fb.build("__jf_guard_verbose", vbody, lineno, "guard", globals_,
                                     closure).__code__
        descs = list(self._clauses.values())
        dyn = [self._dynamic_ok.get(ex) for ex in exprs]

        def explain_failure(func, args) -> str | None:
            # bound like the hook binds guards: the frame function's closure
            fn = types.FunctionType(verbose_code, func.__globals__, verbose_code.co_name, None,
                                    func.__closure__ if verbose_code.co_freevars else None)
            try:
                i = fn(*args)
            except Exception as e:  # noqa: BLE001 - diagnostics only
                return f"guard raised {type(e).__name__}: {e}"
            if i < 0:
                return None
            return FailedGuard(descs[i], dyn[i])

        return guard, explain_failure


class FailedGuard(str):
    """The readable text of a failed guard; ``dynamic_source`` names the int
    whose value differed, which the recompile then treats as a graph input."""

    dynamic_source: str | None

    def __new__(cls, text: str, dynamic_source: str | None):
        self = super().__new__(cls, text)
        self.dynamic_source = dynamic_source
        return self


def _short(obj) -> str:
    name = getattr(obj, "__qualname__", None) or type(obj).__name__
    return f"{name} at {id(obj):#x}"
