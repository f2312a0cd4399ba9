"""Command line: run, profile or explain a script with janus_frame.

In: ``python -m janus_frame run|profile|explain [options] script.py [args...]``.
Out: the script runs as ``__main__`` with ``sys.argv == [script.py, *args]``
and global mode on (as with ``JANUS_FRAME=1``). ``profile`` then prints the
ranked graph-break table to stdout and optionally writes ``--html`` and
``--json`` reports; ``explain`` prints the graphs, breaks and guards of every
compiled frame. Exit status: the script's own (its traceback is printed and
the status is 1 on an uncaught exception; ``SystemExit`` codes are kept);
2 when the command line is wrong or the script does not exist.

For ``profile``, ``--html FILE`` / ``--json FILE`` may also come last, after
the script's arguments (``profile train.py --epochs 3 --html r.html``); to
hand such trailing options to the script instead, give janus_frame's options
before the script.
"""
from __future__ import annotations

import argparse
import os
import sys
import traceback

_PROG = "python -m janus_frame"
_TRAILING = ("--html", "--json")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=_PROG,
        description="Run, profile or explain a Python script under janus_frame.",
    )
    sub = p.add_subparsers(dest="command", metavar="{run,profile,explain}")
    sub.required = True

    def common(sp, default_backend):
        sp.add_argument("--backend", default=default_backend,
                        help="backend for compiled graphs: default (fusing), eager, inductor "
                             f"(default: {default_backend or 'JANUS_FRAME_BACKEND or default'})")
        sp.add_argument("script", help="the Python script to run as __main__")
        sp.add_argument("args", nargs=argparse.REMAINDER, help="arguments passed to the script")

    common(sub.add_parser(
        "run", help="run a script with global mode on (like JANUS_FRAME=1)",
        description="Run a script with janus_frame's global mode on, like "
                    "JANUS_FRAME=1 python script.py [args...]."), None)
    sp = sub.add_parser(
        "profile", help="run a script under the graph-break profiler",
        description="Run a script in global mode under the graph-break profiler and print "
                    "the break sites ranked by the native time they cost at exit. "
                    "--html/--json may also be given after the script's arguments.")
    sp.add_argument("--html", metavar="FILE", help="write a self-contained HTML report")
    sp.add_argument("--json", metavar="FILE",
                    help="write a JSON report (schema: janus_frame/diagnostics/report.schema.json)")
    common(sp, None)
    common(sub.add_parser(
        "explain", help="print graphs, breaks and guards of every compiled frame",
        description="Run a script in global mode and print, at exit, the graphs, graph "
                    "breaks, guards and recompiles of every frame janus_frame compiled."),
        "eager")
    return p


def _take_trailing(ns) -> None:
    """``profile s.py a b --html r.html``: take trailing report options."""
    args = ns.args
    while True:
        if len(args) >= 2 and args[-2] in _TRAILING:
            opt, val, args = args[-2], args[-1], args[:-2]
        elif args and "=" in args[-1] and args[-1].split("=", 1)[0] in _TRAILING:
            opt, val = args[-1].split("=", 1)
            args = args[:-1]
        else:
            break
        setattr(ns, opt[2:], getattr(ns, opt[2:]) or val)
    ns.args = args


def _user_traceback(exc: BaseException, script: str) -> None:
    """Print ``exc``'s traceback from the script's first frame on (the
    command line's and runpy's frames are not the user's)."""
    tb = exc.__traceback__
    t = tb
    while t is not None and os.path.abspath(t.tb_frame.f_code.co_filename) != script:
        t = t.tb_next
    traceback.print_exception(type(exc), exc, t if t is not None else tb)


def _run_script(script: str, args: list, backend) -> tuple[int | None, BaseException | None]:
    """Run ``script`` as ``__main__`` in global mode. Returns (exit status,
    SystemExit to re-raise or None)."""
    import runpy

    from . import _C
    from .api import enable_process_wide

    sys.argv = [script, *args]
    sys.path[0] = os.path.dirname(script)
    enable_process_wide(backend)
    try:
        runpy.run_path(script, run_name="__main__")
        return 0, None
    except SystemExit as e:
        return None, e
    except KeyboardInterrupt as e:
        _user_traceback(e, script)
        return 130, None
    except BaseException as e:  # noqa: BLE001 - the user's error, reported like python does
        _user_traceback(e, script)
        return 1, None
    finally:
        import threading

        threading.setprofile(None)
        _C.set_eval_frame(None)
        sys.stdout.flush()


class _Explainer:
    """Collects every compiled frame's graphs, breaks, guards and recompiles
    (a ``hook.listeners`` callable)."""

    def __init__(self) -> None:
        self.items: list = []
        self.graphs = self.breaks = self.recompiles = 0

    def __call__(self, event: str, code, payload) -> None:
        from .diagnostics.profiler import user_location

        where = f"{code.co_qualname} ({code.co_filename}:{code.co_firstlineno})"
        lines: list = []
        if event == "entry":
            self.graphs += len(payload.graphs)
            lines.append(f"== {where}: {len(payload.graphs)} graph(s), compiled in "
                         f"{payload.compile_seconds * 1e3:.1f} ms")
            for i, gm in enumerate(payload.graphs):
                lines.append(f"  graph {self.graphs - len(payload.graphs) + i}:")
                lines.extend("    " + ln for ln in str(gm.code).strip("\n").splitlines())
            for b in payload.breaks:
                self.breaks += 1
                lines.extend(_break_lines(b, code, user_location))
            lines.append("  guards:")
            lines.extend("    " + g for g in payload.guard_lines)
        elif event == "break":
            self.breaks += 1
            lines.append(f"== {where}: runs natively (a graph break it cannot resume from)")
            lines.extend(_break_lines(payload, code, user_location))
        elif event == "recompile":
            self.recompiles += 1
            lines.append(f"== {where}: recompiling; guard that failed: {payload}")
        self.items.append("\n".join(lines))

    def __str__(self) -> str:
        head = (f"janus_frame explain: {sum(1 for i in self.items if i)} compile events, "
                f"{self.graphs} graphs, {self.breaks} graph breaks, "
                f"{self.recompiles} recompiles")
        return "\n".join([head, *self.items])


def _break_lines(b, code, user_location) -> list:
    filename, lineno, source = user_location(code, b)
    out = [f"  graph break [{b.id}] {b.reason}", f"    at {filename}:{lineno} in "
           f"{b.frame_name or code.co_qualname}"]
    if source:
        out.append(f"      {source}")
    out.append(f"    hint: {b.hint}")
    return out


def main(argv: list | None = None) -> int:
    parser = _parser()
    ns = parser.parse_args(argv)
    if ns.command == "profile":
        _take_trailing(ns)
    script = os.path.abspath(ns.script)
    if not os.path.isfile(script):
        print(f"{_PROG} {ns.command}: error: script not found: {ns.script}", file=sys.stderr)
        return 2
    from . import hook
    from .api import get_compiler

    try:  # a bad backend or setting is the user's to fix before the script runs
        get_compiler(ns.backend, global_mode=True)
    except (ValueError, TypeError) as e:
        print(f"{_PROG} {ns.command}: error: {e}", file=sys.stderr)
        return 2

    prof = explainer = None
    if ns.command == "profile":
        from .diagnostics.profiler import Profiler

        prof = Profiler().start()
    elif ns.command == "explain":
        explainer = _Explainer()
        hook.listeners.append(explainer)
    try:
        status, sysexit = _run_script(script, ns.args, ns.backend)
    finally:
        if explainer is not None:
            hook.listeners.remove(explainer)
        if prof is not None:
            prof.stop()
    if explainer is not None:
        print(explainer, flush=True)
    if prof is not None:
        report = prof.report()
        print(report, flush=True)
        for path, write in ((ns.html, report.to_html), (ns.json, report.to_json)):
            if path:
                try:
                    write(path)
                except OSError as e:
                    print(f"janus_frame: could not write {path}: {e}", file=sys.stderr)
                    status = status or 1
    if sysexit is not None:
        raise sysexit
    return status


if __name__ == "__main__":
    sys.exit(main())
