"""Speculation on tensor-dependent branches (JANUS's profile, speculate,
check, fall back, relax).

In: branch sites -- (original code, instruction index) of a conditional jump
on a tensor -- and what compiled code observes at them at run time; sites
live in the compiler's store (``CompileContext.speculation``).
Out: per site, the current form and its statistics:

- ``observe``: the branch breaks the graph; the native jump in the replacement
  records each outcome. After ``SPECULATE_AFTER`` identical outcomes, when the
  other outcome has been at most one in ``BIAS`` so far, the site becomes
  ``speculate`` and the frames that reached it recompile. A site whose
  outcomes keep changing goes to ``relaxed`` directly (speculating on a short
  run of a mixed site only buys a recompile now and misses later).
- ``speculate``: the trace follows the predicted side in the same graph; the
  predicate is a graph output checked after the segment. A hit commits (side
  effects replayed, results returned); a miss discards the segment's results
  (input tensors mutated in place are restored, the RNG state too) and reruns
  the frame from its original bytecode, so the call gives exactly eager's
  results and side effects.
- ``relaxed``: after more than ``MISS_LIMIT`` misses (or both outcomes seen
  ``RELAX_MIXED`` times without a run to speculate on), final: both sides are
  traced and merged with torch.where when they are fit (predication.py),
  otherwise the branch breaks the graph and each side continues in its own
  resume function (no flip-flopping back to speculation).
- in a size-generic entry (symbolic sizes or dynamic ints), an ``if`` at a
  ``speculate`` site is predicated when its sides are fit: the outcome was learned on the
  sizes seen so far and may flip with the next one, which would recompile
  the entry meant to serve them all (static entries keep speculating).
- a ``while`` on a tensor, once its entry has been observed, is unrolled
  ``trip_limit`` times with predicated iterations; the loop having stopped
  by then is checked like a speculation. A miss raises the limit fourfold,
  up to ``MAX_TRIP_LIMIT``; a miss past that breaks the graph per iteration
  for good. A loop whose trip count grows with the sizes thus settles in
  at most three recompiles, not one per new size.
- the back edge of a loop (3.11's ``POP_JUMP_BACKWARD_IF_*``) is never
  speculated on (that would unroll the loop without end): its site stays
  ``observe`` and never changes form, so the entries that met it never
  recompile for it.

Recompiles are triggered through a version per site: an entry guards on the
version of every site its trace met, and a site changing form bumps it, so
only the entries that met that site recompile.
"""
from __future__ import annotations

import dataclasses
import types

from ..diagnostics.logs import artifact_logger
from ..diagnostics.probe import PROBE

SPECULATE_AFTER = 3
BIAS = 4  # speculate only on an outcome seen at least BIAS times as often as the other
MISS_LIMIT = 2
MAX_TRIP_LIMIT = 32  # predicated loops: most iterations unrolled
RELAX_MIXED = 3  # observed sites with both outcomes this often, never a run: relaxed


class CodeSpec:
    """The speculation state of one original code object."""

    __slots__ = ("sites", "__weakref__")

    def __init__(self) -> None:
        self.sites: dict[int, Site] = {}


@dataclasses.dataclass(eq=False)
class Site:
    code_spec: CodeSpec
    filename: str
    lineno: int | None
    frame: str
    form: str = "observe"  # observe | speculate | relaxed
    predicted: bool | None = None
    seen: list = dataclasses.field(default_factory=lambda: [0, 0])  # outcomes False/True
    hits: int = 0
    misses: int = 0
    streak_value: bool | None = None
    streak: int = 0
    predicated: bool | None = None  # relaxed: both sides in the graph (predication.py)
    trip_limit: int = 4  # a predicated while loop: iterations unrolled
    loop_edge: bool = False  # a loop's backward conditional jump: never changes form
    loop: bool = False  # a while loop's entry, predicated (its misses are trip-limit misses)
    version: int = 0  # bumped at each change of form: entries guard on it

    def observe(self, outcome: bool) -> None:
        """Called by compiled code at a branch that broke the graph."""
        outcome = bool(outcome)
        self.seen[outcome] += 1
        if self.form != "observe" or self.loop_edge:
            return
        if outcome == self.streak_value:
            self.streak += 1
        else:
            self.streak_value, self.streak = outcome, 1
        if self.streak >= SPECULATE_AFTER and self.seen[outcome] >= BIAS * self.seen[not outcome]:
            self._change("speculate", outcome)
        elif min(self.seen) >= RELAX_MIXED:
            # both outcomes keep occurring without a run to speculate on
            self._change("relaxed", None)

    def hit(self) -> None:
        self.hits += 1
        if PROBE.active:
            PROBE.speculation(self, True)

    def miss(self) -> None:
        self.misses += 1
        if PROBE.active:
            PROBE.speculation(self, False)
        if self.predicated and self.loop:
            # a predicated loop ran longer than unrolled: unroll more, up to a
            # bound past which it breaks the graph per iteration again (the
            # limit grows fast: each step is a recompile of the frames here)
            if self.trip_limit >= MAX_TRIP_LIMIT:
                self.trip_limit = MAX_TRIP_LIMIT + 1
            else:
                self.trip_limit = min(self.trip_limit * 4, MAX_TRIP_LIMIT)
            if self.trip_limit > MAX_TRIP_LIMIT:
                self.predicated = False
            self._change(self.form, self.predicted)
        elif self.misses > MISS_LIMIT and self.form == "speculate":
            self._change("relaxed", None)

    def _change(self, form: str, predicted) -> None:
        self.form = form
        self.predicted = predicted
        self.version += 1
        lg = artifact_logger("speculation")
        if lg is not None:
            lg.info("%s:%s in %s: now %s%s (taken %d, not taken %d, hits %d, misses %d)",
                    self.filename, self.lineno, self.frame, form,
                    f" on {predicted}" if predicted is not None else "", self.seen[1],
                    self.seen[0], self.hits, self.misses)

    @property
    def current_form(self) -> str:
        """observe | speculate | predicated | break (relaxed to a graph break)"""
        if self.predicated:
            return "predicated"
        return "break" if self.form == "relaxed" else self.form

    def describe(self) -> str:
        assumption = f"condition is {self.predicted}" if self.form == "speculate" else "-"
        return (f"{self.filename}:{self.lineno} in {self.frame}: form={self.current_form} "
                f"assumption={assumption} hits={self.hits} misses={self.misses} "
                f"observed true/false={self.seen[1]}/{self.seen[0]}")


def site(store, code: types.CodeType, index: int, lineno, frame: str,
         loop_edge: bool = False) -> Site:
    """The site at instruction ``index`` of the original ``code``, in
    ``store`` (the compiler's ``context.PerCodeStore``: profiles are per
    compiler and cleared by ``janus_frame.reset()``); ``loop_edge``: the
    instruction is a loop's backward conditional jump."""
    spec = store.get(code, CodeSpec)
    s = spec.sites.get(index)
    if s is None:
        s = spec.sites[index] = Site(spec, code.co_filename, lineno, frame, loop_edge=loop_edge)
    return s


def all_sites(store) -> list[Site]:
    return [s for spec in store.values() for s in spec.sites.values()]
