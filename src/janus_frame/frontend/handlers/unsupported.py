"""The opcodes of Python 3.11, 3.12 and 3.13 left unhandled on purpose, each
a graph break.

In: nothing.
Out: registrations (registry.unsupported) of every opcode without a
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

# 3.12 and 3.13. Class bodies and annotation scopes
unsupported("JF001", "LOAD_LOCALS", "LOAD_FROM_DICT_OR_GLOBALS", "LOAD_FROM_DICT_OR_DEREF",
            detail="{name} is not supported", since=(3, 12))
# Never in a code object's co_code: the interpreter's own (instrumented
# forms under sys.monitoring, tier-2 executors, internal entry and exit)
unsupported("JF001", "INTERPRETER_EXIT", "RESERVED", "INSTRUMENTED_CALL",
            "INSTRUMENTED_CALL_FUNCTION_EX", "INSTRUMENTED_END_FOR", "INSTRUMENTED_END_SEND",
            "INSTRUMENTED_FOR_ITER", "INSTRUMENTED_INSTRUCTION", "INSTRUMENTED_JUMP_BACKWARD",
            "INSTRUMENTED_JUMP_FORWARD", "INSTRUMENTED_LINE", "INSTRUMENTED_LOAD_SUPER_ATTR",
            "INSTRUMENTED_POP_JUMP_IF_FALSE", "INSTRUMENTED_POP_JUMP_IF_NONE",
            "INSTRUMENTED_POP_JUMP_IF_NOT_NONE", "INSTRUMENTED_POP_JUMP_IF_TRUE",
            "INSTRUMENTED_RESUME", "INSTRUMENTED_RETURN_CONST", "INSTRUMENTED_RETURN_VALUE",
            "INSTRUMENTED_YIELD_VALUE", detail="{name} is not supported", since=(3, 12))
unsupported("JF001", "ENTER_EXECUTOR", "EXIT_INIT_CHECK", "INSTRUMENTED_CALL_KW",
            detail="{name} is not supported", since=(3, 13))
# Pseudo-instructions: the compiler's own, in dis.opmap but never in
# co_code (the bytecode package refuses them)
unsupported("JF001", "JUMP_NO_INTERRUPT", "LOAD_METHOD", "LOAD_SUPER_METHOD",
            "LOAD_ZERO_SUPER_ATTR", "LOAD_ZERO_SUPER_METHOD", "POP_BLOCK", "SETUP_CLEANUP",
            "SETUP_FINALLY", "SETUP_WITH", "STORE_FAST_MAYBE_NULL",
            detail="{name} is not supported", since=(3, 12))
unsupported("JF001", "LOAD_CLOSURE", detail="{name} is not supported", since=(3, 13))
