"""Rebuilding Python values after a graph segment ran.

In: symbolic values the replacement must hand back to Python (the frame's
return value, the stack and live locals at a break, values written by side
effects), and the segment's FunctionBuilder (for constants).
Out: Python source lines that rebuild them -- reading graph outputs
(``__jf_o[i]``), re-reading inputs through their sources, building
containers, objects and functions made while tracing -- and the list of
tensors that must therefore be graph outputs (``Rebuilder.outputs``).
Objects whose identity matters are built once into a temporary, so every
reference sees the same object.
"""
from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode

from ..torch_compat import set_grad_enabled_c
from .breaks import GraphBreak
from .codegen import FunctionBuilder
from .resume import make_function
from .values import ExitV, TensorV, Value

# a traced mode's class keeps these (values/modes.py): entered and exited
# through them, not a lookup on the instance
_MODE_ENTER = TorchFunctionMode.__enter__
_MODE_EXIT = TorchFunctionMode.__exit__


class Rebuilder:
    """Python source that rebuilds symbolic values after the graph ran
    (``__jf_o`` holds the graph's outputs). Objects whose identity matters
    (containers, objects built while tracing) are built once into a
    temporary, so every reference sees the same object."""

    def __init__(self, fb: FunctionBuilder, grad_enabled: bool) -> None:
        self.fb = fb
        self.outputs: list[TensorV] = []
        self._out_index: dict = {}
        self.lines: list[str] = []
        self._memo: dict[int, str] = {}
        self.native_grad = grad_enabled  # grad mode after the graph (it restores the entry's)
        self.sym_text = None  # SymV -> Python expression over the inputs' sizes
        self.loop_guard = None  # [guard] when the replacement loops (see _continue)

    def set_grad_mode(self, enabled: bool) -> None:
        if self.native_grad != enabled:
            self.lines.append(f"{self.fb.const(set_grad_enabled_c)}({enabled!r})")
            self.native_grad = enabled

    def reenter(self, ex: ExitV) -> str:
        """Enter the with-block of ``ex`` natively; its ``__exit__`` goes
        back on the stack for the resume function."""
        ctx = ex.ctx
        name = f"__jf_ctx{len(self._memo)}"
        if ctx.kind == "autocast":
            dev, dtype, enabled, cache = ctx.arg
            self.lines.append(
                f"{name} = {self.fb.const(torch.autocast)}({dev!r}, dtype={self.fb.const(dtype)}, "
                f"enabled={enabled!r}, cache_enabled={cache!r})")
            self.lines.append(f"{name}.__enter__()")
            return f"{name}.__exit__"
        if ctx.kind == "tf_mode":
            # pushed on the real stack for the rest of the block, which then
            # runs natively (convert: frames under a program's mode do)
            mode = self.expr(ctx.arg)
            self.lines.append(f"{self.fb.const(_MODE_ENTER)}({mode})")
            return f"{self.fb.const(_MODE_EXIT)}.__get__({mode})"
        if ctx.kind not in ("grad", "grad_set"):
            raise GraphBreak("JF016", f"a graph break inside a {ctx.kind} with-block")
        self.set_grad_mode(ex.restore)
        if ctx.kind == "grad":
            cls = torch.enable_grad if ctx.arg else torch.no_grad
            self.lines.append(f"{name} = {self.fb.const(cls)}()")
        else:
            self.lines.append(f"{name} = {self.fb.const(torch.set_grad_enabled)}({ctx.arg!r})")
        self.lines.append(f"{name}.__enter__()")
        self.native_grad = bool(ctx.arg)
        return f"{name}.__exit__"

    def snapshot(self, v: Value) -> str:
        """An expression for ``v`` safe to use after side effects are replayed."""
        return self.expr(v)

    def expr(self, v: Value) -> str:
        hit = self._memo.get(id(v))
        if hit is not None:
            return hit
        text, needs_temp = self._build(v)
        if needs_temp:
            name = f"__jf_v{len(self._memo)}"
            self.lines.append(f"{name} = {text}")
            self._memo[id(v)] = name
            return name
        return text

    def _build(self, v: Value) -> tuple[str, bool]:
        return v.reconstruct(self)



def function_expr(fb: FunctionBuilder, code, cells) -> str:
    """An expression making a function of ``code`` in the running frame's
    globals, with closure ``cells`` (cell expressions). Made at run time: a
    function object kept as a constant would tie the cache (invisible to the
    garbage collector) to the user's globals."""
    closure = "(" + "".join(f"{c}, " for c in cells) + ")" if cells else "None"
    return f"{fb.const(make_function)}({fb.const(code)}, __jf_h_globals(), {closure})"
