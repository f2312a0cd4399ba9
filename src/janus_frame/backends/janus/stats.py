"""What the fusing backend did in this process, and where a failure came from.

In: nothing.  Out: ``stats`` (every compiled graph, every refusal),
:class:`Fallback` (one refusal: the stage that failed, why, which graph, and
what ran instead) and ``stage(name)``, a context manager that tags an
exception escaping it with the stage it came from (the innermost stage wins),
so the one fallback point (:func:`pipeline.refuse`) can say where a graph
was refused without every stage catching its own errors.
"""
from __future__ import annotations

import contextlib
from typing import NamedTuple


class Fallback(NamedTuple):
    stage: str  # e.g. "lower", "schedule", "build", "training.lean"
    reason: str  # repr of the exception
    graph: str  # the graph's name (see pipeline.graph_name)
    instead: str  # what runs instead: "AOTAutograd runtime", "captured layout", "eager"


class Stats:
    """Every graph compiled in this process (most recent last), and every
    refusal (:class:`Fallback`)."""

    def __init__(self):
        self.graphs = []
        self.fallbacks: list[Fallback] = []

    @property
    def kernel_counts(self):
        return [g.num_kernels for g in self.graphs]

    def clear(self):
        self.graphs.clear()
        self.fallbacks.clear()


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
