"""The compile context: everything one frame compilation may read or change.

In: made by the frame compiler (``hook.FrameCompiler``) for each compile, from
its merged options and the state it owns.
Out: a :class:`CompileContext` passed explicitly to the frame transform (the
frontend), which passes ``options``/``backend`` on to the backend. No stage
reads process-wide configuration or module globals instead.

- ``config``: the merged options (``compile(..., **options)`` over the
  environment), with ``strict`` already folded in (``fullgraph=True`` or
  ``strict=True``).
- ``stats``: the process statistics the compile reports into.
- ``speculation``: the compiler's store of branch-site profiles, one record
  per original code object (see ``frontend/speculation.py``). It outlives a
  compile (sites learn across calls) and is cleared by ``janus_frame.reset()``.
- ``hints``: the dynamic-size hints of the code being compiled (read only;
  what the compile hands to other code objects goes back in the entry's
  ``handover``, which the frame compiler applies).
- ``backend``: the backend callable, bound to these options.

A leaf module: it imports only ``config`` and ``cache``.
"""
from __future__ import annotations

import dataclasses
import weakref
from typing import Any, Callable

from .cache import Stats
from .config import Config


class PerCodeStore:
    """State kept per code object, weakly (dropped with the code)."""

    def __init__(self) -> None:
        self._data: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()

    def get(self, code, factory: Callable[[], Any]):
        v = self._data.get(code)
        if v is None:
            v = self._data[code] = factory()
        return v

    def values(self) -> list:
        return list(self._data.values())

    def clear(self) -> None:
        self._data.clear()


@dataclasses.dataclass
class CompileContext:
    config: Config
    stats: Stats
    speculation: PerCodeStore
    backend: Callable
    hints: frozenset = frozenset()
    fullgraph: bool = False
    dynamic: bool | None = None  # compile(dynamic=...): None automatic, True all, False never

    @property
    def strict(self) -> bool:
        return self.fullgraph or self.config.strict
