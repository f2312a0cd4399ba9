"""Run-time probe points in generated replacement code.

In: calls from every compiled replacement, at fixed points: before its graph
runs, after it ran, and after the instruction a graph break left to Python.
Out: when a profiler is attached (``PROBE.attach(sink)``), the sink receives
``(site, graph_seconds)`` and ``(site, native_seconds)`` per execution; when
none is, a probe point costs one attribute read and a branch in the
replacement (the clock is never read).

A ``Site`` describes one compiled entry: the frame, its graph's op count, and
the graph break it ends at (if any). Sites are created at compile time.
"""
from __future__ import annotations

import dataclasses
import time


@dataclasses.dataclass(eq=False)
class Site:
    frame: str  # qualified name of the compiled code
    filename: str
    lineno: int  # first line of the frame
    ops: int  # operations in the entry's graph (0: no graph)
    break_id: str | None = None
    break_reason: str | None = None
    break_hint: str | None = None
    break_lineno: int | None = None
    break_source: str = ""
    compile_seconds: float = 0.0

    @property
    def key(self) -> tuple:
        """Identity of the break site across recompiles of the same code."""
        return (self.filename, self.break_lineno or self.lineno, self.break_id, self.frame)


class Probe:
    __slots__ = ("active", "_sink")

    def __init__(self) -> None:
        self.active = False
        self._sink = None

    def attach(self, sink) -> None:
        """``sink`` has ``graph(site, seconds)`` and ``native(site, seconds)``."""
        self._sink = sink
        self.active = sink is not None

    def detach(self) -> None:
        self.attach(None)

    clock = staticmethod(time.perf_counter)

    def graph_done(self, site: Site, t0: float) -> float:
        t1 = time.perf_counter()
        sink = self._sink
        if sink is not None:
            sink.graph(site, t1 - t0)
        return t1

    def speculation(self, site, hit: bool) -> None:
        """A speculated branch site was checked (``frontend.speculation.Site``)."""
        sink = self._sink
        fn = getattr(sink, "speculation", None)
        if fn is not None:
            fn(site, hit)

    def native_done(self, site: Site, t0: float) -> None:
        t1 = time.perf_counter()
        sink = self._sink
        if sink is not None:
            sink.native(site, t1 - t0)


PROBE = Probe()
