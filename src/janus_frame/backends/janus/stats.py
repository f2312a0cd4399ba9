"""What the fusing backend did in this process, and where a failure came from.

In: nothing.  Out: ``stats`` (every compiled graph, every refusal),
:class:`Fallback` (one refusal: the stage that failed, why, which graph, and
what ran instead) and ``stage(name)``, a context manager that tags an
exception escaping it with the stage it came from (the innermost stage wins),
so the one fallback point (:func:`pipeline.refuse`) can say where a graph
was refused without every stage catching its own errors.
"""
from __future__ import annotations

import collections
import contextlib
import weakref
from typing import NamedTuple


class Fallback(NamedTuple):
    stage: str  # e.g. "lower", "schedule", "build", "training.lean"
    reason: str  # repr of the exception
    graph: str  # the graph's name (see pipeline.graph_name)
    instead: str  # what runs instead: "AOTAutograd runtime", "captured layout", "eager"


class Stats:
    """The compiled graphs still in use and the most recent few (most recent
    last: a graph whose cache entries are gone is dropped once it is not
    among the last ``RECENT``, so the statistics keep a bounded amount of
    compiled code alive), how many were compiled, and every refusal
    (:class:`Fallback`)."""

    RECENT = 16

    def __init__(self):
        self._recent: collections.deque = collections.deque(maxlen=self.RECENT)
        self._graphs: list[weakref.ref] = []
        self._pruned_at = 0
        self.compiled = 0  # graphs compiled in this process (each has .seq)
        self.fallbacks: list[Fallback] = []
        # calls whose inputs shared storage otherwise than the graph was
        # compiled for: run eagerly (runtime.aliasing)
        self.alias_mismatches = 0

    def add(self, graph) -> None:
        graph.seq = self.compiled
        self.compiled += 1
        self._graphs.append(weakref.ref(graph))
        self._recent.append(graph)
        if len(self._graphs) > 2 * self._pruned_at + 64:
            self._graphs = [r for r in self._graphs if r() is not None]
            self._pruned_at = len(self._graphs)

    @property
    def graphs(self) -> list:
        return [g for g in (r() for r in self._graphs) if g is not None]

    @property
    def kernel_counts(self):
        return [g.num_kernels for g in self.graphs]

    def clear(self):
        self._graphs.clear()
        self._recent.clear()
        self._pruned_at = 0
        self.fallbacks.clear()
        self.alias_mismatches = 0


stats = Stats()


def reset_stats():
    stats.clear()


@contextlib.contextmanager
def stage(name: str):
    """Tag an exception raised inside with ``name`` (unless an inner stage
    already did): ``exc.janus_stage``, and a note in its traceback."""
    try:
        yield
    except Exception as e:
        if getattr(e, "janus_stage", None) is None:
            try:
                e.janus_stage = name
            except AttributeError:  # (an exception type with __slots__)
                pass
            else:
                e.add_note(f"(janus_frame fusing backend, stage: {name})")
        raise


def stage_of(exc: BaseException) -> str:
    return getattr(exc, "janus_stage", None) or "backend"
