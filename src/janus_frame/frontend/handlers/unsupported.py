"""The opcodes of Python 3.11 left unhandled on purpose, each a graph break.

In: nothing.
Out: registrations (registry.unsupported) of every 3.11 opcode without a
handler, with the break it raises. The frame (or, after the instructions
before, its rest) then runs natively. A test checks that handlers and this
list together cover ``dis.opmap``.
"""
from __future__ import annotations

from .registry import unsupported

# Exception groups (except*): the rest of exception handling is traced
# (exceptions.py)
unsupported("JF012", "CHECK_EG_MATCH")
unsupported("JF012", "PREP_RERAISE_STAR", until=(3, 12))

# Coroutines and asynchronous generators
unsupported("JF013", "GET_AWAITABLE", "GET_AITER", "GET_ANEXT", "END_ASYNC_FOR",
            "BEFORE_ASYNC_WITH")
unsupported("JF013", "ASYNC_GEN_WRAP", until=(3, 12))

# Class bodies, module-level name access, pattern matching, star imports
unsupported("JF001", "LOAD_BUILD_CLASS", "SETUP_ANNOTATIONS", "LOAD_NAME", "STORE_NAME",
            "DELETE_NAME", "GET_LEN", "MATCH_CLASS", "MATCH_KEYS", "MATCH_MAPPING",
            "MATCH_SEQUENCE", detail="{name} is not supported")
unsupported("JF001", "IMPORT_STAR", "PRINT_EXPR", detail="{name} is not supported",
            until=(3, 12))
# never yielded by the bytecode package (inline caches, folded arguments)
unsupported("JF001", "CACHE", "EXTENDED_ARG", detail="{name} is not supported")
