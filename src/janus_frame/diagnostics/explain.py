"""``janus_frame.explain(fn)(*args, **kwargs)``: what janus_frame does with a call.

In: a function, callable or nn.Module, and the arguments of one call.
Out: an :class:`ExplainReport` listing every graph captured (fx.GraphModules
and their op counts), every graph break (ID, reason, hint, user file:line and
source text, frame), recompiles with the guard that failed, the guards of each
entry and compile times; ``str()`` of it is a readable summary.

The call really runs (side effects happen), with a fresh compiler of its own
(eager backend), so other compiled functions' caches are untouched.
"""
from __future__ import annotations

import dataclasses
import sys



@dataclasses.dataclass
class BreakRecord:
    id: str
    reason: str
    hint: str
    filename: str | None
    lineno: int | None
    source_line: str
    frame: str | None
    graph_count: int = 0  # graphs the break's frame was split into (with its resumes)

    def __str__(self) -> str:
        where = f"{self.filename}:{self.lineno}" if self.filename else "<unknown>"
        text = (f"[{self.id}] {self.reason}\n    at {where} in {self.frame} "
                f"({self.graph_count} graph{'s' if self.graph_count != 1 else ''} in this frame)")
        if self.source_line:
            text += f"\n      {self.source_line}"
        return text + f"\n    hint: {self.hint}"


@dataclasses.dataclass
class ExplainReport:
    graphs: list = dataclasses.field(default_factory=list)
    breaks: list[BreakRecord] = dataclasses.field(default_factory=list)
    recompiles: list[str] = dataclasses.field(default_factory=list)
    guards: list[list[str]] = dataclasses.field(default_factory=list)
    frames: list[str] = dataclasses.field(default_factory=list)
    compile_seconds: float = 0.0
    speculation: list = dataclasses.field(default_factory=list)  # branch sites touched
    graph_owner: list = dataclasses.field(default_factory=list)  # frame of each graph

    @property
    def graph_count(self) -> int:
        return len(self.graphs)

    @property
    def break_count(self) -> int:
        return len(self.breaks)

    @property
    def ops_per_graph(self) -> list[int]:
        return [sum(1 for n in g.graph.nodes if n.op in ("call_function", "call_method",
                                                          "call_module"))
                for g in self.graphs]

    def _listen(self, event: str, code, payload) -> None:
        where = f"{code.co_qualname} ({code.co_filename}:{code.co_firstlineno})"
        if event == "entry":
            self.graphs.extend(payload.graphs)
            self.graph_owner.extend([code.co_qualname] * len(payload.graphs))
            self.guards.append(list(payload.guard_lines))
            self.frames.append(where)
            self.compile_seconds += payload.compile_seconds
            for b in payload.breaks:
                self.breaks.append(_record(b))
        elif event == "break":
            self.breaks.append(_record(payload))
        elif event == "recompile":
            self.recompiles.append(f"{where}: {payload}")

    def __str__(self) -> str:
        lines = [f"Graphs: {self.graph_count}   Graph breaks: {self.break_count}   "
                 f"Recompiles: {len(self.recompiles)}   Compile time: "
                 f"{self.compile_seconds:.3f} s"]
        for i, (g, frame, n) in enumerate(zip(self.graphs, self.frames, self.ops_per_graph)):
            lines.append(f"  graph {i}: {n} ops, from {frame}")
        if self.breaks:
            lines.append("Breaks:")
            lines.extend("  " + str(b).replace("\n", "\n  ") for b in self.breaks)
        if self.recompiles:
            lines.append("Recompiles:")
            lines.extend(f"  {r}" for r in self.recompiles)
        if self.speculation:
            lines.append("Speculation sites:")
            lines.extend(f"  {s.describe()}" for s in self.speculation)
        return "\n".join(lines)


def _root(frame: str | None) -> str:
    """The user's frame a resume function continues."""
    return (frame or "").split(".<resume")[0]


def _record(b) -> BreakRecord:
    return BreakRecord(b.id, b.reason, b.hint, b.filename, b.lineno, b.source_line,
                       b.frame_name)


def explain(fn):
    import torch

    from ..api import _frame_transform, _wrap_function
    from ..hook import FrameCompiler

    target = fn
    while getattr(target, "_janus_compiler", None) is not None:  # explain(compile(f))
        target = target._janus_original

    def run(*args, **kwargs) -> ExplainReport:
        report = ExplainReport()
        compiler = FrameCompiler({}, "eager", fullgraph=False, dynamic=None,
                                 global_mode=False, listener=report._listen,
                                 transform=_frame_transform)
        if isinstance(target, torch.nn.Module):
            from ..module import CompiledModule

            mod = target._orig_mod if isinstance(target, CompiledModule) else target
            CompiledModule(mod, compiler)(*args, **kwargs)
        else:
            _wrap_function(target, compiler)(*args, **kwargs)
        roots = [_root(f.split(" (")[0]) for f in report.frames]
        for b in report.breaks:
            b.graph_count = sum(1 for r, g in zip(roots, report.graph_owner) if r == _root(b.frame))
        spec = sys.modules.get("janus_frame.frontend.speculation")
        if spec is not None:
            names = {f.split(" (")[0] for f in report.frames}
            report.speculation = [s for s in spec.all_sites(compiler.speculation)
                                  if s.frame in names or s.frame.split(".<resume")[0] in names]
        return report

    return run
