"""Opcode handlers, one per opcode, named after it, grouped by topic.

In: the registry (registry.py) and the topic modules, each registering its
handlers and native steps on import: variables.py (locals, globals, cells,
constants, the stack, imports), operators.py (operators, comparisons,
subscripts), containers.py (building and unpacking containers, f-strings),
calls.py (attributes, calls, MAKE_FUNCTION), control.py (jumps, branches,
loops, with-blocks, return), exceptions.py (raising and handling
exceptions, with-block cleanups), generators.py, and unsupported.py (the
opcodes left unhandled, each a graph break).
Out: the complete tables ``HANDLERS`` and ``NATIVE_STEPS``.
"""
from . import (  # noqa: F401 - each module registers its handlers on import
    calls, containers, control, exceptions, generators, operators, unsupported, variables)
from .registry import HANDLERS, NATIVE_STEPS, complete

complete()
__all__ = ["HANDLERS", "NATIVE_STEPS"]
