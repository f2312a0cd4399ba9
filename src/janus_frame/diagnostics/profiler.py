"""The graph-break profiler: where a program leaves the graph and what it costs.

In: run-time probe events from compiled replacements (``graph(site, seconds)``
for time inside a compiled segment, ``native(site, seconds)`` for the time from
a segment's end through the instruction a graph break left to Python, up to
the hand-over to the next resume function), compile events from the hook
(``cache.listeners``: new entries, frames that fell back natively whole,
recompiles with the failing guard) and ``speculation(site, hit)`` per run-time
check of a speculated branch (``PROBE.speculation``).

Out: :class:`ProfileReport` (``Profiler.report()``): break sites ranked by the
native time they cost, per compiled frame its segments, graphs, op counts,
runs, compiled/native/compile time and recompiles; ``str()`` is a readable
table, ``to_dict()`` follows ``report.schema.json``, ``to_html()`` is a
self-contained page (see ``report_html``).

Use ``with janus_frame.profile() as prof: ...`` then ``prof.report()``;
``JANUS_PROFILE=path`` profiles a whole ``JANUS_FRAME=1`` process and writes
the report at exit (``.json``, ``.html``, anything else: the text table).

Native times are *exclusive*: compiled segments, other break windows and
compiles that ran inside a break's window (a natively run call into compiled
code) are subtracted, so the shares of all sites add up to at most 100%.
"""
from __future__ import annotations

import dataclasses
import json
import linecache
import os
import re
import sys
import threading
import time

from .. import cache, trace_rules
from .probe import PROBE, Site

_clock = time.perf_counter
_get_ident = threading.get_ident
_RESUME = re.compile(r"\.<resume at line \d+>$")

# Completed intervals kept per thread to subtract nested time; beyond this
# many top-level intervals the oldest half is merged into one (see _trim).
_STACK_LIMIT = 4096


def user_frame(qualname: str) -> str:
    """The user's function a (possibly generated resume) code belongs to."""
    return _RESUME.sub("", qualname)


def _internal(filename: str | None) -> bool:
    """Inside janus_frame or a library it skips (torch, ...): not a place
    to send the user to."""
    if not filename or filename.startswith("<"):
        return False
    return trace_rules.is_own_or_library(filename)


def user_location(code, gb) -> tuple:
    """``(filename, lineno, source)`` of a graph break, in the user's code.

    A break inside library code that was inlined into the frame (a
    janus_frame or torch function) is reported at the frame's own
    instruction that called into it (``gb.root_ip``)."""
    if gb.filename and not _internal(gb.filename):
        return gb.filename, gb.lineno, gb.source_line
    lineno = None
    if gb.root_ip is not None:
        try:
            from ..frontend.bytecode_info import load_instructions

            lineno = load_instructions(code)[0][gb.root_ip].lineno
        except Exception:  # noqa: BLE001 - diagnostics must not fail
            lineno = None
    lineno = lineno or code.co_firstlineno
    return code.co_filename, lineno, linecache.getline(code.co_filename, lineno).strip()


def _display_path(filename: str) -> str:
    if not filename or filename.startswith("<"):
        return filename or "<unknown>"
    try:
        rel = os.path.relpath(filename)
    except ValueError:  # another drive
        return filename
    return filename if rel.startswith("..") else rel


# ---------------------------------------------------------------------------
# Report objects


@dataclasses.dataclass
class SiteStats:
    """One compiled segment (an entry's ``Site``), merged over recompiles.

    A *break site* when ``break_id`` is set: the segment ends at a graph break
    at ``filename:lineno`` and ``native_*`` measure the instruction run in
    Python there; otherwise the frame's last segment (no native time)."""

    frame: str  # the user's function
    code: str  # the compiled code (the function or one of its resume functions)
    filename: str
    lineno: int
    source: str
    break_id: str | None
    reason: str | None
    hint: str | None
    entries: int = 0  # compiled entries (1 + recompiles of this segment)
    ops: list = dataclasses.field(default_factory=list)  # ops per entry's graph
    runs: int = 0  # executions of the compiled graph
    graph_seconds: float = 0.0
    native_count: int = 0  # executions of the native instruction
    native_seconds: float = 0.0  # exclusive
    native_inclusive_seconds: float = 0.0
    compile_seconds: float = 0.0
    speculation_hits: int = 0
    speculation_misses: int = 0
    share: float = 0.0  # native_seconds / profiled wall time
    frame_filename: str = ""  # where the frame is defined (the break may be in a callee)
    frame_lineno: int = 0

    @property
    def where(self) -> str:
        return f"{_display_path(self.filename)}:{self.lineno}"


@dataclasses.dataclass
class FallbackStats:
    """A frame that fell back natively whole (a graph break it could not
    resume from); the time of such frames is not measured."""

    frame: str
    filename: str
    lineno: int | None
    source: str
    break_id: str
    reason: str
    hint: str
    count: int = 0  # compile attempts that ended in this fallback
    frame_filename: str = ""
    frame_lineno: int = 0

    @property
    def where(self) -> str:
        return f"{_display_path(self.filename)}:{self.lineno}"


@dataclasses.dataclass
class SpeculationStats:
    """One speculated branch (``frontend.speculation.Site``): how often the
    assumption held (hit) or failed (miss: the frame re-ran natively)."""

    frame: str
    filename: str
    lineno: int | None
    form: str  # observe | speculate | predicated | break, at report time
    hits: int = 0
    misses: int = 0

    @property
    def where(self) -> str:
        return f"{_display_path(self.filename)}:{self.lineno}"


@dataclasses.dataclass
class RecompileStats:
    frame: str  # the user's function
    code: str  # the recompiled code (the function or one of its resume functions)
    filename: str
    lineno: int
    reason: str  # the guards that failed


@dataclasses.dataclass
class GraphText:
    frame: str
    code: str
    ops: int
    text: str


@dataclasses.dataclass
class FrameStats:
    """One user function: its compiled segments and what they cost."""

    frame: str
    filename: str
    lineno: int
    segments: list = dataclasses.field(default_factory=list)  # SiteStats
    recompiles: list = dataclasses.field(default_factory=list)  # RecompileStats
    fallbacks: list = dataclasses.field(default_factory=list)  # FallbackStats

    @property
    def graphs(self) -> int:
        return sum(sum(1 for n in s.ops if n) for s in self.segments)

    @property
    def ops_per_graph(self) -> list:
        return [n for s in self.segments for n in s.ops if n]

    @property
    def graph_seconds(self) -> float:
        return sum(s.graph_seconds for s in self.segments)

    @property
    def native_seconds(self) -> float:
        return sum(s.native_seconds for s in self.segments)

    @property
    def compile_seconds(self) -> float:
        return sum(s.compile_seconds for s in self.segments)

    @property
    def breaks(self) -> int:
        return sum(1 for s in self.segments if s.break_id)


@dataclasses.dataclass
class ProfileReport:
    wall_seconds: float
    sites: list  # SiteStats of break sites, most expensive first
    frames: list  # FrameStats, most expensive first
    recompiles: list  # RecompileStats, in order
    fallbacks: list  # FallbackStats
    graphs: list  # GraphText of graphs compiled while profiling
    kernels: list  # kernel source text compiled while profiling (fusing backend)
    speculation: list = dataclasses.field(default_factory=list)  # SpeculationStats

    @property
    def graph_seconds(self) -> float:
        return sum(f.graph_seconds for f in self.frames)

    @property
    def native_seconds(self) -> float:
        return sum(s.native_seconds for s in self.sites)

    @property
    def compile_seconds(self) -> float:
        return sum(f.compile_seconds for f in self.frames)

    @property
    def segments(self) -> int:
        return sum(len(f.segments) for f in self.frames)

    def summary(self) -> str:
        wall = self.wall_seconds or 1e-12
        return (
            f"janus_frame profile: {self.wall_seconds:.3f} s profiled; "
            f"{self.graph_seconds:.3f} s in {self.segments} compiled segments "
            f"({self.graph_seconds / wall:.1%}), {self.native_seconds:.3f} s native at "
            f"{len(self.sites)} break sites ({self.native_seconds / wall:.1%}), compile "
            f"{self.compile_seconds:.3f} s, {len(self.recompiles)} recompiles, "
            f"{sum(f.count for f in self.fallbacks)} frames run natively whole"
        )

    def __str__(self) -> str:
        lines = [self.summary(), ""]
        if self.sites or self.fallbacks:
            lines.append("Graph breaks, most expensive first:")
            hdr = f"{'#':>3}  {'site':<40} {'break':<6} {'count':>7} {'native ms':>10} {'share':>6}"
            lines.append(hdr)
            lines.append("-" * len(hdr))
            for i, s in enumerate(self.sites, 1):
                lines.append(f"{i:>3}  {_cut(s.where, 40):<40} {s.break_id:<6} "
                             f"{s.native_count:>7} {s.native_seconds * 1e3:>10.3f} "
                             f"{s.share:>6.1%}")
                lines.extend(_details(s.source, s.reason, s.hint, s.frame))
                if s.speculation_hits or s.speculation_misses:
                    lines.append(f"       speculation: {s.speculation_hits} hits, "
                                 f"{s.speculation_misses} misses")
            for f in self.fallbacks:
                lines.append(f"{'-':>3}  {_cut(f.where, 40):<40} {f.break_id:<6} "
                             f"{f.count:>7} {'(whole frame runs natively)':>17}")
                lines.extend(_details(f.source, f.reason, f.hint, f.frame))
        else:
            lines.append("No graph breaks.")
        if self.frames:
            lines += ["", "Compiled frames:"]
            hdr = (f"     {'frame':<40} {'graphs':>6} {'ops/graph':>12} {'runs':>7} "
                   f"{'graph ms':>10} {'native ms':>10} {'compile ms':>10} {'recomp':>6}")
            lines.append(hdr)
            lines.append("-" * len(hdr))
            for f in self.frames:
                ops = ",".join(str(n) for n in f.ops_per_graph) or "-"
                runs = max((s.runs or s.native_count for s in f.segments), default=0)
                lines.append(
                    f"     {_cut(f.frame + ' ' + _display_path(f.filename) + ':' + str(f.lineno), 40):<40}"
                    f" {f.graphs:>6} {_cut(ops, 12):>12} {runs:>7} {f.graph_seconds * 1e3:>10.3f} "
                    f"{f.native_seconds * 1e3:>10.3f} {f.compile_seconds * 1e3:>10.3f} "
                    f"{len(f.recompiles):>6}")
        if self.speculation:
            lines += ["", "Speculated branches:"]
            for sp in self.speculation:
                lines.append(f"  {sp.where} in {sp.frame}: {sp.hits} hits, {sp.misses} misses "
                             f"(now: {sp.form})")
        if self.recompiles:
            lines += ["", "Recompiles (guard that failed):"]
            for r in self.recompiles:
                lines.append(f"  {r.code} ({_display_path(r.filename)}:{r.lineno}): {r.reason}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """Plain data following ``report.schema.json``."""
        def site(s: SiteStats) -> dict:
            d = dataclasses.asdict(s)
            d["where"] = s.where
            return d

        return {
            "schema": "janus_frame.profile/1",
            "summary": {
                "wall_seconds": self.wall_seconds,
                "graph_seconds": self.graph_seconds,
                "native_seconds": self.native_seconds,
                "compile_seconds": self.compile_seconds,
                "segments": self.segments,
                "break_sites": len(self.sites),
                "recompiles": len(self.recompiles),
                "fallbacks": sum(f.count for f in self.fallbacks),
            },
            "sites": [site(s) for s in self.sites],
            "frames": [
                {
                    "frame": f.frame, "filename": f.filename, "lineno": f.lineno,
                    "graphs": f.graphs, "ops_per_graph": f.ops_per_graph,
                    "graph_seconds": f.graph_seconds, "native_seconds": f.native_seconds,
                    "compile_seconds": f.compile_seconds,
                    "segments": [site(s) for s in f.segments],
                    "recompiles": [dataclasses.asdict(r) for r in f.recompiles],
                }
                for f in self.frames
            ],
            "recompiles": [dataclasses.asdict(r) for r in self.recompiles],
            "fallbacks": [dataclasses.asdict(f) for f in self.fallbacks],
            "graphs": [dataclasses.asdict(g) for g in self.graphs],
            "kernels": list(self.kernels),
            "speculation": [dict(dataclasses.asdict(sp), where=sp.where)
                            for sp in self.speculation],
        }

    def to_json(self, path: str | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=1)
        if path is not None:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text + "\n")
        return text

    def to_html(self, path: str | None = None) -> str:
        from .report_html import render

        text = render(self)
        if path is not None:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        return text

    def write(self, path: str) -> None:
        """Write the report in the format the extension names (.json, .html,
        anything else: the text table)."""
        low = path.lower()
        if low.endswith(".json"):
            self.to_json(path)
        elif low.endswith((".html", ".htm")):
            self.to_html(path)
        else:
            with open(path, "w", encoding="utf-8") as f:
                f.write(str(self) + "\n")


def _cut(text: str, n: int) -> str:
    return text if len(text) <= n else "..." + text[-(n - 3):]


def _details(source, reason, hint, frame) -> list:
    out = []
    if source:
        out.append(f"       {source}")
    out.append(f"       {reason}   (in {frame})")
    if hint:
        out.append(f"       hint: {hint}")
    return out


# ---------------------------------------------------------------------------
# The profiler


class _EntryInfo:
    __slots__ = ("code", "compile_seconds", "graphs")

    def __init__(self, code, compile_seconds, graphs):
        self.code = code
        self.compile_seconds = compile_seconds
        self.graphs = graphs


class Profiler:
    """Collects probe and compile events; a context manager.

    The sink methods (``graph``, ``native``, ``speculation``) run on every
    execution of a compiled segment, so they only do dict lookups and float
    adds; everything else happens in :meth:`report`."""

    def __init__(self) -> None:
        # Site -> [graph runs, graph s, native count, native s (exclusive), native s (inclusive)]
        self._acc: dict = {}
        self._spec: dict = {}  # Site -> [hits, misses]
        self._entries: dict = {}  # Site -> [_EntryInfo]
        self._where: dict = {}  # Site -> (filename, lineno, source) of its break
        self._fallbacks: dict = {}  # (filename, lineno, id, frame) -> FallbackStats
        self._recompiles: list = []
        self._stacks: dict = {}  # thread id -> ([start], [duration]) of completed intervals
        self._kernel_mark = 0
        self._kernels: list = []
        self._t0: float | None = None
        self._t1: float | None = None
        self._running = False

    # -- probe sink: keep these small ------------------------------------

    def graph(self, site: Site, seconds: float) -> None:
        a = self._acc.get(site)
        if a is None:
            a = self._acc[site] = [0, 0.0, 0, 0.0, 0.0]
        a[0] += 1
        a[1] += seconds
        self._nest(seconds)

    def native(self, site: Site, seconds: float) -> None:
        a = self._acc.get(site)
        if a is None:
            a = self._acc[site] = [0, 0.0, 0, 0.0, 0.0]
        a[2] += 1
        a[3] += seconds - self._nest(seconds)
        a[4] += seconds

    def speculation(self, site, hit: bool) -> None:
        """A speculated branch (``frontend.speculation.Site``: ``filename``,
        ``lineno``, ``frame``, ``form``) was checked at run time: ``hit`` when
        the assumption held, else the frame re-ran natively."""
        s = self._spec.get(site)
        if s is None:
            s = self._spec[site] = [0, 0]
        s[0 if hit else 1] += 1

    def _nest(self, seconds: float) -> float:
        """Record an interval that ended now; return the time of the
        intervals recorded inside it (they completed earlier and started
        later: windows nest like calls, per thread)."""
        end = _clock()
        start = end - seconds
        st = self._stacks.get(_get_ident())
        if st is None:
            st = self._stacks[_get_ident()] = ([], [])
        starts, durs = st
        inner = 0.0
        while starts and starts[-1] >= start:
            starts.pop()
            inner += durs.pop()
        starts.append(start)
        durs.append(seconds)
        if len(starts) > _STACK_LIMIT:
            _trim(starts, durs)
        return inner

    # -- compile events (cache.listeners) ----------------------------------

    def _listen(self, event: str, code, payload) -> None:
        if event == "entry":
            site = payload.site
            self._nest(payload.compile_seconds)  # compiles inside a break window are not its cost
            if site is None:
                return
            graphs = []
            for gm in payload.graphs:
                try:
                    graphs.append(gm.code)
                except Exception:  # noqa: BLE001 - a graph without code text
                    graphs.append(str(gm))
            self._entries.setdefault(site, []).append(
                _EntryInfo(code.co_qualname, payload.compile_seconds, graphs))
            if payload.breaks and site not in self._where:
                # the Site has the break's line but the frame's file: a
                # break in an inlined callee is in the callee's file
                self._where[site] = user_location(code, payload.breaks[0])
            self._collect_kernels()
        elif event == "break":
            b = payload
            filename, lineno, source = user_location(code, b)
            key = (filename, lineno, b.id, code.co_qualname)
            fb = self._fallbacks.get(key)
            if fb is None:
                fb = self._fallbacks[key] = FallbackStats(
                    user_frame(code.co_qualname), filename, lineno, source, b.id, b.reason,
                    b.hint, frame_filename=code.co_filename, frame_lineno=code.co_firstlineno)
            fb.count += 1
        elif event == "recompile":
            self._recompiles.append(RecompileStats(
                user_frame(code.co_qualname), code.co_qualname, code.co_filename,
                code.co_firstlineno, str(payload)))

    def _collect_kernels(self) -> None:
        mod = sys.modules.get("janus_frame.backends.janus")
        if mod is None:
            return
        for cg in mod.stats.graphs:
            text = getattr(cg, "source", "") or ""
            if cg.seq >= self._kernel_mark and text:
                self._kernels.append(text)
        self._kernel_mark = mod.stats.compiled

    # -- lifetime ---------------------------------------------------------

    def start(self) -> "Profiler":
        if self._running:
            raise RuntimeError("this profiler is already running")
        mod = sys.modules.get("janus_frame.backends.janus")
        self._kernel_mark = mod.stats.compiled if mod is not None else 0
        self._running = True
        self._t0 = _clock()
        self._t1 = None
        cache.listeners.append(self._listen)
        _attach(self)
        return self

    def stop(self) -> "Profiler":
        if not self._running:
            return self
        _detach(self)
        try:
            cache.listeners.remove(self._listen)
        except ValueError:
            pass
        self._collect_kernels()
        self._t1 = _clock()
        self._running = False
        return self

    def __enter__(self) -> "Profiler":
        return self.start()

    def __exit__(self, *exc) -> bool:
        self.stop()
        return False

    @property
    def wall_seconds(self) -> float:
        if self._t0 is None:
            return 0.0
        return (self._t1 if self._t1 is not None else _clock()) - self._t0

    # -- the report -------------------------------------------------------

    def report(self) -> ProfileReport:
        wall = self.wall_seconds
        merged: dict = {}  # Site.key -> SiteStats
        sites = set(self._acc) | set(self._entries)
        for site in sorted(sites, key=lambda s: (s.filename, s.lineno, s.frame)):
            k = site.key
            s = merged.get(k)
            if s is None:
                filename, lineno, source = self._where.get(site) or (
                    site.filename, site.break_lineno or site.lineno, site.break_source)
                s = merged[k] = SiteStats(
                    user_frame(site.frame), site.frame, filename, lineno, source,
                    site.break_id, site.break_reason, site.break_hint,
                    frame_filename=site.filename, frame_lineno=site.lineno)
            s.entries += 1
            s.ops.append(site.ops)
            a = self._acc.get(site)
            if a is not None:
                s.runs += a[0]
                s.graph_seconds += a[1]
                s.native_count += a[2]
                s.native_seconds += max(a[3], 0.0)
                s.native_inclusive_seconds += a[4]
            infos = self._entries.get(site)
            s.compile_seconds += (sum(i.compile_seconds for i in infos) if infos
                                  else site.compile_seconds)
        spec: dict = {}  # (filename, lineno, frame) -> SpeculationStats
        for site, (hits, misses) in self._spec.items():
            k = (site.filename, site.lineno, user_frame(site.frame))
            sp = spec.get(k)
            if sp is None:
                sp = spec[k] = SpeculationStats(k[2], site.filename, site.lineno,
                                                getattr(site, "current_form", "?"))
            sp.hits += hits
            sp.misses += misses
        for s in merged.values():
            # a branch that broke the graph before (or after) it was speculated on
            sp = spec.get((s.filename, s.lineno, s.frame))
            if sp is not None and s.break_id:
                s.speculation_hits, s.speculation_misses = sp.hits, sp.misses
            s.share = s.native_seconds / wall if wall > 0 else 0.0

        frames: dict = {}
        for s in merged.values():
            fk = (s.frame_filename, s.frame)
            f = frames.get(fk)
            if f is None:
                f = frames[fk] = FrameStats(s.frame, s.frame_filename, s.frame_lineno)
            f.segments.append(s)
        for r in self._recompiles:
            f = frames.get((r.filename, r.frame))
            if f is None:
                f = frames[(r.filename, r.frame)] = FrameStats(r.frame, r.filename, r.lineno)
            f.recompiles.append(r)
        fallbacks = sorted(self._fallbacks.values(), key=lambda x: -x.count)
        for fb in fallbacks:
            f = frames.get((fb.frame_filename, fb.frame))
            if f is None:
                f = frames[(fb.frame_filename, fb.frame)] = FrameStats(
                    fb.frame, fb.frame_filename, fb.frame_lineno)
            f.fallbacks.append(fb)
        for f in frames.values():
            f.segments.sort(key=lambda s: (s.code != s.frame, s.lineno))
        graphs = [GraphText(user_frame(i.code), i.code, site.ops, text)
                  for site, infos in self._entries.items() for i in infos for text in i.graphs]
        ranked = sorted((s for s in merged.values() if s.break_id),
                        key=lambda s: (-s.native_seconds, -s.native_count, s.where))
        return ProfileReport(
            wall_seconds=wall,
            sites=ranked,
            frames=sorted(frames.values(),
                          key=lambda f: -(f.graph_seconds + f.native_seconds)),
            recompiles=list(self._recompiles),
            fallbacks=fallbacks,
            graphs=graphs,
            kernels=list(self._kernels),
            speculation=sorted(spec.values(), key=lambda x: -(x.hits + x.misses)),
        )


def _trim(starts: list, durs: list) -> None:
    """Merge the oldest half of the completed intervals into one, bounding
    memory in a long run. Only a break window that started amid the merged
    intervals and is still open loses part of its nested time."""
    half = len(starts) // 2
    merged = sum(durs[:half])
    first = starts[0]
    del starts[:half], durs[:half]
    starts.insert(0, first)
    durs.insert(0, merged)


# ---------------------------------------------------------------------------
# Attaching to the probe: several profilers may run at once (JANUS_PROFILE
# and a `with profile()` inside it); the probe holds one sink, so more than
# one are fanned out.

_active: list = []
_lock = threading.Lock()


class _Fanout:
    __slots__ = ("sinks",)

    def __init__(self, sinks) -> None:
        self.sinks = tuple(sinks)

    def graph(self, site, seconds):
        for s in self.sinks:
            s.graph(site, seconds)

    def native(self, site, seconds):
        for s in self.sinks:
            s.native(site, seconds)

    def speculation(self, site, hit):
        for s in self.sinks:
            s.speculation(site, hit)


def _reattach() -> None:
    if not _active:
        PROBE.detach()
    elif len(_active) == 1:
        PROBE.attach(_active[0])
    else:
        PROBE.attach(_Fanout(_active))


def _attach(p: Profiler) -> None:
    with _lock:
        _active.append(p)
        _reattach()


def _detach(p: Profiler) -> None:
    with _lock:
        if p in _active:
            _active.remove(p)
        _reattach()


def profile() -> Profiler:
    """``with janus_frame.profile() as prof: ...; print(prof.report())``."""
    return Profiler()


# ---------------------------------------------------------------------------
# Whole-process profiling (JANUS_PROFILE=path)

_process_profiler: Profiler | None = None


def start_process_profiler(path: str) -> Profiler:
    """Profile from now to interpreter exit, then write the report to ``path``."""
    global _process_profiler
    import atexit

    prof = Profiler().start()
    _process_profiler = prof

    def _write() -> None:
        prof.stop()
        try:
            prof.report().write(path)
        except Exception as e:  # noqa: BLE001 - exit must not fail over the report
            print(f"janus_frame: could not write the profile to {path}: {e}", file=sys.stderr)

    atexit.register(_write)
    return prof
