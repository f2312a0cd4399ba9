"""Opcode handlers: jumps, loops and with-blocks.

Conditions on Python values are decided at trace time (the guards keep the
decision valid); a condition on a tensor is a graph break (JF005). Loops are
unrolled, with a cap (JF007). ``with`` supports grad-mode and autocast
context managers, which become mode switches inside the graph.

In/out: the Translator's stack and instruction pointer.
"""
from __future__ import annotations

import torch

from .breaks import GraphBreak
from .values import Const, CtxV, ExitV, IterV, TensorV, unguarded


class ControlOps:
    # -- jumps ---------------------------------------------------------------------
    def JUMP_FORWARD(self, ins):
        self.jump(ins.arg)

    def JUMP_BACKWARD(self, ins):
        self.backedges += 1
        if self.backedges > self.config.unroll_limit:
            raise GraphBreak("JF007", f"more than {self.config.unroll_limit} iterations")
        self.jump(ins.arg)

    JUMP_BACKWARD_NO_INTERRUPT = JUMP_BACKWARD

    def JUMP(self, ins):
        self.jump(ins.arg)

    def branch_truth(self, v) -> bool:
        """Truth of a branch condition; a tensor condition is speculated on
        when its site has been predictable, else it breaks the graph."""
        if not isinstance(v, TensorV):
            return self.truth(v)
        from . import speculation
        from .bytecode_info import original_position

        orig, index = original_position(self.code, self.ip - 1)
        site = speculation.site(self.output.ctx.speculation, orig, index, self.lineno,
                               self.code.co_qualname)
        self.output.spec_codes.add(site.code_spec)
        loop_edge = self.instrs[self.ip - 1].name.startswith("POP_JUMP_BACKWARD")
        speculated_here = any(s is site for _, _, s in self.output.speculations)
        # one speculated visit per site and segment: a loop condition predicted
        # to hold would otherwise unroll its loop without end
        if site.form == "speculate" and v.fake.numel() == 1 and not loop_edge and \
                not speculated_here:
            self.output.speculations.append((v, site.predicted, site))
            return site.predicted
        gb = GraphBreak("JF005", "condition is a tensor")
        gb.spec_site = site if site.form == "observe" else None
        raise gb

    def _predicate(self, v: TensorV, ins, when: bool) -> bool:
        """A relaxed site of a forward branch: both sides into the graph,
        merged with torch.where (predication.py), when they are fit."""
        if ins.name.startswith("POP_JUMP_BACKWARD") or v.fake.numel() != 1 or \
                self.output.predicating is not None:
            return False
        from . import speculation
        from .predication import is_loop_entry, predicate_branch, predicate_loop
        from .bytecode_info import original_position

        orig, index = original_position(self.code, self.ip - 1)
        site = speculation.site(self.output.ctx.speculation, orig, index, self.lineno,
                               self.code.co_qualname)
        loop = is_loop_entry(self, ins)
        # a loop speculated to be entered is unrolled with predicated
        # iterations; one speculated to be skipped stays a plain speculation
        if site.predicated is False or site.form != "relaxed" and not (
                loop and site.form == "speculate" and site.predicted != when):
            return False
        self.output.spec_codes.add(site.code_spec)
        if loop:
            predicate_loop(self, v, ins, when, site)
        else:
            predicate_branch(self, v, ins, when, site)
        return True

    def _pop_jump_if(self, ins, when: bool):
        v = self.pop()
        if isinstance(v, TensorV) and self._predicate(v, ins, when):
            return
        if self.branch_truth(v) == when:
            if ins.name.startswith("POP_JUMP_BACKWARD"):
                self.JUMP_BACKWARD(ins)
            else:
                self.jump(ins.arg)

    def POP_JUMP_FORWARD_IF_TRUE(self, ins):
        self._pop_jump_if(ins, True)

    def POP_JUMP_FORWARD_IF_FALSE(self, ins):
        self._pop_jump_if(ins, False)

    POP_JUMP_BACKWARD_IF_TRUE = POP_JUMP_FORWARD_IF_TRUE
    POP_JUMP_BACKWARD_IF_FALSE = POP_JUMP_FORWARD_IF_FALSE
    POP_JUMP_IF_TRUE = POP_JUMP_FORWARD_IF_TRUE
    POP_JUMP_IF_FALSE = POP_JUMP_FORWARD_IF_FALSE

    def _is_none(self, v) -> bool:
        if isinstance(v, Const):
            if unguarded(v) and v.source is not None:
                # guard only on None-ness: an int that varies stays unspecialised
                result = v._value is None
                self.output.guards.add(f"({v.source.expr()} is None) is {result!r}",
                                       f"{v.source.name()} is {'' if result else 'not '}None")
                return result
            return v.value is None
        return False  # every other symbolic value is a real, non-None object

    def _pop_jump_if_none(self, ins, when: bool):
        v = self.pop()
        if self._is_none(v) == when:
            if ins.name.startswith("POP_JUMP_BACKWARD"):
                self.JUMP_BACKWARD(ins)
            else:
                self.jump(ins.arg)

    def POP_JUMP_FORWARD_IF_NONE(self, ins):
        self._pop_jump_if_none(ins, True)

    def POP_JUMP_FORWARD_IF_NOT_NONE(self, ins):
        self._pop_jump_if_none(ins, False)

    POP_JUMP_BACKWARD_IF_NONE = POP_JUMP_FORWARD_IF_NONE
    POP_JUMP_BACKWARD_IF_NOT_NONE = POP_JUMP_FORWARD_IF_NOT_NONE
    POP_JUMP_IF_NONE = POP_JUMP_FORWARD_IF_NONE
    POP_JUMP_IF_NOT_NONE = POP_JUMP_FORWARD_IF_NOT_NONE

    def JUMP_IF_TRUE_OR_POP(self, ins):
        if self.branch_truth(self.stack[-1]):
            self.jump(ins.arg)
        else:
            self.pop()

    def JUMP_IF_FALSE_OR_POP(self, ins):
        if not self.branch_truth(self.stack[-1]):
            self.jump(ins.arg)
        else:
            self.pop()

    # -- loops ------------------------------------------------------------------------
    def GET_ITER(self, ins):
        v = self.stack[-1]
        if isinstance(v, Const) and type(v._value) is range and v.source is not None and \
                v.source.name() in self.output.dynamic:
            # the range of a dynamic size handed over by a JF019 break: iterated
            # natively, not unrolled for this one length
            raise GraphBreak("JF019", "iteration over range() of a dynamic size")
        v = self.pop()
        self.push(v if isinstance(v, IterV) else IterV(self.iterate(v)))

    def FOR_ITER(self, ins):
        it = self.stack[-1]
        if not isinstance(it, IterV):
            # a real iterator handed over by a resume function: next() runs
            # natively and each iteration continues in its own segment
            raise GraphBreak("JF017", f"iteration over a run-time "
                             f"{it.python_type().__name__}")
        if it.pos < len(it.items):
            self.push(it.items[it.pos])
            it.pos += 1
        else:
            self.pop()
            self.jump(ins.arg)

    # -- with-blocks --------------------------------------------------------------------
    def BEFORE_WITH(self, ins):
        if not isinstance(self.stack[-1], CtxV):
            # entered natively; the block goes on in a resume function and
            # the manager's own __exit__ runs when the block ends
            raise GraphBreak("JF016", f"context manager of type "
                             f"{self.stack[-1].python_type().__name__}")
        ctx = self.pop()
        restore = self.enter_context(ctx)
        self.push(ExitV(ctx, restore))
        self.push(Const(None))

    def enter_context(self, ctx: CtxV):
        """Apply a context manager's entry inside the graph; returns what the
        exit needs to restore."""
        out = self.output
        if ctx.kind == "grad":
            prev = out.grad_enabled
            self.set_grad_mode(ctx.arg)
            return prev
        if ctx.kind == "grad_set":  # set_grad_enabled(): applied at construction
            return ctx.arg
        if ctx.kind == "autocast":
            node = out.graph.call_function(torch.amp.autocast_mode._enter_autocast,
                                           tuple(ctx.arg))
            out.autocast.append((ctx.arg, node))
            return node
        if ctx.kind == "null":
            return None
        raise GraphBreak("JF016", ctx.kind)

    def exit_context(self, ex: ExitV) -> None:
        ctx = ex.ctx
        if ctx.kind in ("grad", "grad_set"):
            self.set_grad_mode(ex.restore)
        elif ctx.kind == "autocast":
            self.output.graph.call_function(torch.amp.autocast_mode._exit_autocast, (ex.restore,))
            self.output.autocast.pop()
        elif ctx.kind == "autocast_native":
            # entered natively before this segment: its exit runs natively too
            raise GraphBreak("JF016", "the end of an autocast region entered before the graph")

    def set_grad_mode(self, enabled: bool) -> None:
        out = self.output
        if out.grad_enabled != enabled:
            out.graph.call_function(torch._C._set_grad_enabled, (bool(enabled),))
            out.grad_enabled = bool(enabled)

    # exception-handling opcodes are only reached on exceptional paths, which
    # are never traced; reaching one means the program raised while tracing
    def _exceptional(self, ins):
        raise GraphBreak("JF012", f"{ins.name}")

    PUSH_EXC_INFO = POP_EXCEPT = RERAISE = CHECK_EXC_MATCH = WITH_EXCEPT_START = _exceptional
    PREP_RERAISE_STAR = CHECK_EG_MATCH = _exceptional

    def _generator(self, ins):
        raise GraphBreak("JF013", ins.name)

    GET_AWAITABLE = GET_AITER = GET_ANEXT = _generator
    ASYNC_GEN_WRAP = END_ASYNC_FOR = BEFORE_ASYNC_WITH = _generator

