"""Log artifacts selected by ``JANUS_LOGS`` (or ``set_logs``).

In: a comma list such as ``graph_breaks,recompiles,+graphs`` ('+' = verbose).
Out: per-artifact loggers under the ``janus_frame`` logger
(``janus_frame.graph_breaks`` ...), or ``None`` when an artifact is off, so a
disabled artifact costs one dict lookup at the call site.
"""
from __future__ import annotations

import logging
import sys

ARTIFACTS = (
    "graph_breaks", "recompiles", "guards", "graphs", "bytecode", "kernels", "speculation", "perf",
)

_enabled: dict[str, bool] = {}  # artifact -> verbose
_handler: logging.Handler | None = None


def set_logs(spec) -> None:
    """Enable artifacts from a comma string or an iterable of names."""
    global _handler
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    _enabled.clear()
    for raw in names:
        raw = raw.strip()
        if not raw:
            continue
        verbose = raw.startswith("+")
        name = raw.lstrip("+")
        if name == "all":
            for a in ARTIFACTS:
                _enabled[a] = verbose
            continue
        if name not in ARTIFACTS:
            raise ValueError(
                f"unknown JANUS_LOGS artifact {name!r}; known: {', '.join(ARTIFACTS)}, all"
            )
        _enabled[name] = verbose
    root = logging.getLogger("janus_frame")
    if _enabled and _handler is None and not root.handlers:
        _handler = logging.StreamHandler(sys.stderr)
        _handler.setFormatter(logging.Formatter("[janus_frame.%(artifact)s] %(message)s"))
        _handler.addFilter(_ArtifactFilter())
        root.addHandler(_handler)
    for a in ARTIFACTS:
        lg = logging.getLogger(f"janus_frame.{a}")
        lg.setLevel(logging.DEBUG if _enabled.get(a) else logging.INFO)
        if a in _enabled and root.level in (logging.NOTSET,) :
            root.setLevel(logging.INFO)


class _ArtifactFilter(logging.Filter):
    def filter(self, record):
        record.artifact = record.name.split(".", 1)[1] if "." in record.name else "main"
        return True


def artifact_logger(name: str) -> logging.Logger | None:
    if name not in _enabled:
        return None
    return logging.getLogger(f"janus_frame.{name}")


def is_verbose(name: str) -> bool:
    return bool(_enabled.get(name))
