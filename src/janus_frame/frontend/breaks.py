"""The graph-break registry and the exception that carries a break.

In: a registered break ID plus a detail string, raised by an opcode handler.
Out: a :class:`GraphBreak` that knows its ID, one-line explanation, hint for
the user, and (filled in by the interpreter) the user's file, line, source
text and frame name (:func:`would_raise` makes JF020, which carries the
exception type); and :class:`NoPredication`, which ends a trace whose branch
site turned out unfit for predication (the site then breaks).

The registry is the documentation: every ID below has a title, an
explanation and a hint, and a test that triggers it.
"""
from __future__ import annotations

import dataclasses
import linecache
import logging
import weakref

from ..cache import FrameFallback
from ..trace_rules import is_internal_file


@dataclasses.dataclass(frozen=True)
class BreakKind:
    id: str
    title: str
    explanation: str
    hint: str


REGISTRY: dict[str, BreakKind] = {}


def _register(id: str, title: str, explanation: str, hint: str) -> None:
    assert id not in REGISTRY, id
    REGISTRY[id] = BreakKind(id, title, explanation, hint)


_register(
    "JF001", "unsupported bytecode",
    "the interpreter has no handler for this bytecode instruction, or not in this form "
    "(an import of a module not loaded yet, a relative import)",
    "rewrite the construct, or move it out of the compiled function (import modules at "
    "module level)",
)
_register(
    "JF002", "call to an untraceable function",
    "the callee is implemented in C (or is otherwise opaque) and is not known to be safe to "
    "run at trace time or to put in a graph",
    "move the call out of the compiled region, or wrap it with janus_frame.disable",
)
_register(
    "JF003", "print or logging call",
    "printing and logging have to happen in the user's order, so they cannot be in a graph",
    "remove the call from the hot path, or compile with reorder_logging=True to run it "
    "after the graph",
)
_register(
    "JF004", "tensor value needed in Python",
    "the program converts a tensor to a Python value (.item(), .tolist(), bool(), int(), "
    "float(), .numpy()), which needs the tensor's data at trace time",
    "keep the value as a tensor (e.g. torch.where instead of if), or compute it outside "
    "the compiled region",
)
_register(
    "JF005", "branch on a tensor value",
    "an if/while/and/or depends on the contents of a tensor",
    "use torch.where for element-wise choices; janus_frame speculates on such branches "
    "when speculation is available for the site",
)
_register(
    "JF006", "data-dependent output shape",
    "the operator's output shape depends on tensor contents (nonzero, boolean-mask "
    "indexing, unique, ...)",
    "use a fixed-shape formulation (torch.where, masked arithmetic) in the hot path",
)
_register(
    "JF007", "loop too long to unroll",
    "a Python loop ran more iterations than the unroll limit while tracing",
    "raise JANUS_UNROLL_LIMIT, or make the loop's trip count small",
)
_register(
    "JF008", "inlining too deep",
    "user calls nested deeper than the inline limit (usually unbounded recursion)",
    "raise JANUS_INLINE_DEPTH, or restructure the recursion",
)
_register(
    "JF009", "unsupported object or operation",
    "an operation the interpreter does not model and no more specific ID describes (a "
    "tensor subclass or a tensor with no known source as a graph input, a closure variable "
    "it cannot find)",
    "keep such objects outside the compiled function, or pass plain tensors instead",
)
_register(
    "JF010", "call to a disabled function",
    "the function is marked with janus_frame.disable, so it always runs natively",
    "remove janus_frame.disable if the function should be compiled",
)
_register(
    "JF011", "mutation of Python state",
    "the program mutates a Python object, global or closure cell that outlives the frame",
    "return the new value instead of mutating, or keep the mutation outside the compiled "
    "function",
)
_register(
    "JF012", "exception handling",
    "exception handling the interpreter does not model: an exception group (except*), an "
    "exception's traceback or arguments it does not know, an exception class with its own "
    "__new__ or metaclass, a bare raise with no exception handled in the compiled code",
    "nothing to change: raising and catching ordinary exceptions is traced; this path runs "
    "natively",
)
_register(
    "JF013", "generator or coroutine",
    "generators, coroutines and yield cannot be inlined into a graph",
    "materialise the values with a list before the compiled function, or use a loop",
)
_register(
    "JF014", "module hooks",
    "the nn.Module has backward hooks (or no hook dicts), so the call runs natively "
    "(forward hooks and pre-hooks are traced)",
    "remove the backward hooks while compiling, or compile the module's submodules instead",
)
_register(
    "JF015", "unsupported argument",
    "a function was called with arguments the interpreter cannot model "
    "(e.g. a non-constant where a constant is required)",
    "pass constants or tensors",
)
_register(
    "JF016", "context manager run natively",
    "a with-block whose context manager is not grad mode or autocast (or the end of an "
    "autocast region entered before the graph): __enter__ and __exit__ run natively and the "
    "block's body continues in compiled segments",
    "nothing to do unless the block is hot; grad-mode and autocast blocks are captured whole",
)
_register(
    "JF017", "loop continued after a graph break",
    "a loop whose body has a graph break continues over a run-time iterator: each "
    "iteration runs as compiled segments between the breaks",
    "remove the break from the loop body to get the whole loop into one graph",
)
_register(
    "JF018", "recursive call",
    "a function calls itself (directly or not): instead of unrolling the recursion into "
    "one graph guarded on the data structure's exact shape, each call runs as its own "
    "compiled frame, with one cache entry per kind of call (e.g. leaf / inner node)",
    "nothing to do: recursion over trees and lists is compiled once per kind of node",
)
_register(
    "JF019", "loop over a dynamic size",
    "a for loop over range() of a dynamic size (a dimension that varies between calls): "
    "unrolling it would compile once per size, so the loop runs over a real range and its "
    "body as a compiled segment per iteration, shared by every size",
    "nothing to do for a varying length; a size that is really fixed stays static (it is "
    "only made dynamic after it changed, or by mark_dynamic / dynamic=True)",
)
_register(
    "JF020", "traced code would raise",
    "the program raises an exception here (a missing attribute, key or name, an index out of "
    "range, a call with the wrong arguments, an operator failing on its operands ...); the "
    "reason names the exception",
    "nothing to change in janus_frame: the instruction runs natively, so Python raises its "
    "own exception from your line; if the exception is expected (caught by a caller), keep "
    "that path out of the hot code",
)
_register(
    "JF021", "unsupported container operation",
    "an operation on a list, tuple, dict or set the interpreter does not model: a method it "
    "does not know, a membership test or dict key that is not a constant (or involves "
    "tensors), an update from something that is not a mapping",
    "use constant keys and members, keep tensors out of sets and dict keys, or move the "
    "operation outside the compiled function",
)
_register(
    "JF022", "unsupported object or attribute",
    "an operation on a Python object the interpreter does not model for it: an attribute "
    "behind a custom descriptor or attribute hook, the truth value, len(), iteration or "
    "subscript of an object with its own protocol, a tensor attribute tied to autograd "
    "history (grad_fn, _version, _base)",
    "keep such objects outside the compiled function, or pass tensors and plain values "
    "instead",
)
_register(
    "JF023", "unsupported call",
    "a call the interpreter does not model: a class with a custom __new__ or metaclass (or "
    "a module or tensor constructed inside the frame), a module whose forward was replaced "
    "on the instance, a builtin in a form it does not trace (iter() with a sentinel, "
    "type() with three arguments, id(), next() of a real iterator), a torch operation "
    "returning an object it does not model",
    "call it outside the compiled function, or wrap it with janus_frame.disable",
)
_register(
    "JF024", "unsupported operator",
    "an operator (arithmetic, comparison, identity, unary) or f-string formatting on operands "
    "the interpreter has no rule for",
    "compute with tensors and numbers, or move the operation outside the compiled function",
)
_register(
    "JF025", "value cannot be handed back",
    "after the graph, Python needs a value the trace created that has no run-time "
    "equivalent (a context manager or super() object returned, stored or passed on); the "
    "frame runs natively",
    "enter context managers in a with-statement inside the function, and return or store "
    "tensors and plain values",
)


class GraphBreak(FrameFallback):
    """A graph break with a registered ID and where it happened (a frame
    that cannot continue after it runs natively: ``cache.FrameFallback``)."""

    def __init__(self, id: str, detail: str = "") -> None:
        if id not in REGISTRY:
            raise ValueError(f"unregistered graph-break id {id}")
        self.kind = REGISTRY[id]
        self.detail = detail
        self.filename: str | None = None
        self.lineno: int | None = None
        self.frame_name: str | None = None
        self.graph_count = 0
        # index of the compiled frame's own instruction during which the
        # break happened (a CALL when the break was inside an inlined callee)
        self.root_ip: int | None = None
        self.spec_site = None  # a branch site observing outcomes (speculation.Site)
        self.exc_type: type[BaseException] | None = None  # JF020: what the code raises
        # JF020: the exception itself, when the operation is modelled exactly
        # (class and arguments); the interpreter then raises it in the trace
        self.exc: BaseException | None = None
        # the exception value being raised in the trace (interpreter.py), and
        # the frame that re-raises it (RERAISE)
        self.exc_value = None
        self.reraised_by = None
        # the break happened while the frame handled an exception, and cannot
        # be moved to where that exception was raised: not resumable
        self.in_handler = False
        # the trace's record up to the break (segment.trace), when the root
        # frame could stop right before the breaking instruction; else why
        # the segment before the break must be traced again
        self.record = None
        self.retrace: str | None = "the trace kept no state before the break"
        super().__init__(detail)

    @property
    def id(self) -> str:
        return self.kind.id

    @property
    def reason(self) -> str:
        return f"{self.kind.title}: {self.detail}" if self.detail else self.kind.title

    @property
    def hint(self) -> str:
        return self.kind.hint

    @property
    def source_line(self) -> str:
        if self.filename and self.lineno:
            return linecache.getline(self.filename, self.lineno).strip()
        return ""

    def locate(self, filename: str, lineno: int | None, frame_name: str) -> "GraphBreak":
        """Called from the innermost frame outwards: the innermost frame of
        user code wins, so a break inside inlined library code (torch,
        janus_frame) points at the user's line that called into it."""
        if self.filename is None or (is_internal_file(self.filename) and
                                     not is_internal_file(filename)):
            self.filename, self.lineno, self.frame_name = filename, lineno, frame_name
        return self

    def __str__(self) -> str:
        where = f"{self.filename}:{self.lineno}" if self.filename else "<unknown>"
        text = f"[{self.id}] {self.reason}\n  at {where} in {self.frame_name}"
        src = self.source_line
        if src:
            text += f"\n    {src}"
        text += f"\n  why: {self.kind.explanation}\n  hint: {self.hint}"
        return text


def would_raise(exc_type: type[BaseException], detail: str,
                exc: BaseException | None = None) -> GraphBreak:
    """JF020: the traced code raises ``exc_type`` here (``detail``: why).
    ``exc``: the exception Python raises there, when the operation is
    modelled exactly (its class and arguments are Python's): the traced
    code may then catch it (an ``except``, a suppressing ``__exit__``)."""
    gb = GraphBreak("JF020", f"{exc_type.__name__}: {detail}")
    gb.exc_type = exc_type
    gb.exc = exc
    return gb


class NoPredication(Exception):
    """The sides of this site cannot be predicated (predication.py): trace
    the frame again with the site breaking the graph."""

    def __init__(self, site, why: str) -> None:
        super().__init__(why)
        self.site = site

    def settle(self) -> None:
        """The site breaks the graph from now on."""
        self.site.predicated = False
        logging.getLogger("janus_frame.speculation").debug(
            "%s:%s: not predicated: %s", self.site.filename, self.site.lineno, self)


class RetraceCode(Exception):
    """Trace the frame again with its code recorded in the subclass's
    ``codes``, which the trace then consults (one question settled)."""

    codes: weakref.WeakSet

    def __init__(self, code) -> None:
        super().__init__(code.co_qualname)
        self.code = code

    def settle(self) -> None:
        type(self).codes.add(self.code)


class LeafRowWritten(RetraceCode):
    """A parameter's row gathered for a varying index (values/tensors.py) is
    written in place: eager raises there (a view of a leaf that requires
    grad), which only a true view reproduces.  Trace the frame again with
    such rows taken as views in this code."""

    # code objects whose varying-index rows of parameters are views
    codes: weakref.WeakSet = weakref.WeakSet()


class RowAliased(RetraceCode):
    """A tensor's row for a varying index, gathered (a copy: ``x[i]`` with
    ``i`` a graph input has no view form without the value of ``i``), is
    written in place, outlives the graph, or its tensor is written after it
    was read: there eager's row is a view of the tensor, which a copy is
    not. Trace the frame again with such rows taken by ``narrow`` in this
    code (which needs the index's value: the graph breaks there)."""

    # code objects whose varying-index rows are views
    codes: weakref.WeakSet = weakref.WeakSet()


class LoggingKept(RetraceCode):
    """A segment with print/logging calls moved to its end
    (methods.defer_logging) cannot be rolled back: were its graph to raise,
    the frame could not rerun natively, and the messages eager prints before
    the error would be lost. Trace the frame again with those calls
    breaking the graph where they are."""

    # code objects whose logging calls break the graph where they are
    codes: weakref.WeakSet = weakref.WeakSet()
