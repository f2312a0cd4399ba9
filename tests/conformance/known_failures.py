"""Which conformance tests fail today, and why: one line per test.

Keys are ``"<topic>::<program>"`` (both backends) or
``"<topic>::<program>[<backend>]"`` (one backend: ``eager`` or ``default``).
Values are ``"<class>: <short cause>"`` with ``<class>`` from ``CLASSES``.
Each entry becomes ``pytest.mark.xfail(strict=True)``: when a fix makes a
test pass, strict xfail fails it, and the line is deleted here. Entries are
grouped by class (the count after a class is its number of entries; an
entry without ``[backend]`` stands for two tests). To see today's failures
of one class with their full reports::

    pytest tests/conformance --runxfail -k <program>

Programs are ``test_program[<program>-<backend>]`` in ``test_conf_<topic>.py``;
process-level tests use ``process::<name>`` keys (test_conf_process.py,
test_conf_zleaks.py).
"""
from __future__ import annotations

import sys
from typing import Callable

import pytest

CLASSES = {
    "stale-guard": "a value the trace relied on changed and the cached entry was still used",
    "aliasing": "identity or memory sharing of inputs/outputs differs from eager",
    "strides": "an output's strides or storage offset differ from eager's",
    "exceptions": "an exception eager raises is not raised, or with another type/message/line",
    "context-managers": "with-statements, __exit__ suppression, contextlib, mode stacks",
    "named-tuple": "ops returning torch.return_types / namedtuples lose their type",
    "dict-views": "keys()/values()/items() are snapshots instead of live views",
    "hooks": "nn.Module hooks registered or removed after compiling are ignored",
    "numpy": "numpy interop: values baked in, wrong types, or crashes",
    "recompile-storm": "recompiles on every call (until the limit)",
    "silent-fallback": "a frame silently stays native (never compiled) though it could be",
    "internal-error": "janus_frame failed internally (warning) and ran the frame natively",
    "crash": "the process dies (segfault) or janus_frame raises its own error at the user",
    "wrong-result": "a wrong value, type or side effect without a more specific cause",
    "side-effects": "printed output, globals, closure cells or object state differ from eager",
    "graph-breaks": "more graphs/breaks than torch.compile gets for the same program",
    "global-state": "grad mode, mode stacks or other global torch state left changed",
    "rng": "random number generator state or draws differ from eager",
    "autograd": "requires_grad, grad_fn or .grad differ from eager",
    "backend-fallback": "the fusing backend refused a graph and ran it as captured",
    "process": "process-level behaviour (start-up hook, shutdown, environment)",
    "leak": "memory held after compiled functions are dropped",
}

KNOWN: dict[str, str] = {
    # ---- context-managers (2)
    "exceptions::exitstack_callbacks":
        "context-managers: breaks: JF016 context manager run natively: ExitStack",
    "torch::inference_mode_block":
        "context-managers: breaks: JF016 context manager run natively: inference_mode",
    # ---- graph-breaks (55)
    "siblings::argument_dict_store_then_attribute_read":
        "graph-breaks: breaks: JF011 attributes of Box used together with its __dict__, one changed",
    "siblings::argument_attribute_store_then_dict_read":
        "graph-breaks: breaks: JF011 reading an object's __dict__ after changing its attributes",
    "siblings::vars_of_argument_store_then_attribute_read":
        "graph-breaks: breaks: JF002 call to an untraceable function: vars (of an object read from the frame)",
    "siblings::object_and_its_dict_attribute_store_then_dict_read":
        "graph-breaks: breaks: JF011 reading an object's __dict__ after changing its attributes (whole frame)",
    "siblings::vars_of_slotted_object_raises":
        "graph-breaks: breaks: JF011 mutation of Python state: assignment through the descriptor SlotBox.a",
    "siblings::zip_longest_and_accumulate":
        "graph-breaks: breaks: JF023 unsupported call: class accumulate has a custom __new__ or metaclass",
    "containers::chainmap_lookup":
        "graph-breaks: breaks: JF009 unsupported object or operation: subscript of ChainMap with str",
    "containers::dataclass_asdict_replace":
        "graph-breaks: breaks: JF018 recursive call: _asdict_inner calls itself",
    "containers::dataclass_fields_and_eq":
        "graph-breaks: breaks: JF009 unsupported object or operation: comparison eq of Cfg and Cfg",
    "containers::deque_arg_mutated":
        "graph-breaks: breaks: JF002 call to an untraceable function: deque.append",
    "containers::deque_ops":
        "graph-breaks: breaks: JF009 unsupported object or operation: class deque has a custom __new__ or m",
    "containers::enum_iteration":
        "graph-breaks: breaks: JF009 unsupported object or operation: iteration over EnumType",
    "containers::enum_value_name":
        "graph-breaks: breaks: JF009 unsupported object or operation: class Mode has a custom __new__ or me",
    "containers::mappingproxy_read":
        "graph-breaks: breaks: JF002 call to an untraceable function: constructing mappingproxy",
    "containers::ordered_dict_ops":
        "graph-breaks: breaks: JF009 unsupported object or operation: OrderedDict.move_to_end()",
    "effects::id_and_hash_of_objects":
        "graph-breaks: breaks: JF009 unsupported object or operation: id() of a traced value",
    "effects::logging_info_call":
        "graph-breaks: breaks: JF003 print or logging call: Logger.info",
    "effects::warnings_warn_inside":
        "graph-breaks: breaks: JF002 call to an untraceable function: warn",
    "interop::function_mode_break_in_callee":
        "graph-breaks: a TorchFunctionMode block runs natively (JF016; behaviour as eager, mode stack balanced): __torch_function__ is not traced, torch.compile inlines it",
    "interop::function_mode_with_break_inside":
        "graph-breaks: a TorchFunctionMode block runs natively (JF016; behaviour as eager, mode stack balanced): __torch_function__ is not traced, torch.compile inlines it",
    "issue::issue_09_suppress_attribute_error_getattr":
        "graph-breaks: breaks: JF001 unsupported bytecode: LOAD_BUILD_CLASS is not supported",
    "issue::issue_10_function_mode_break":
        "graph-breaks: a TorchFunctionMode block runs natively (JF016; behaviour as eager, mode stack balanced): __torch_function__ is not traced, torch.compile inlines it",
    "issue::issue_10_function_mode_break_in_callee":
        "graph-breaks: a TorchFunctionMode block runs natively (JF016; behaviour as eager, mode stack balanced): __torch_function__ is not traced, torch.compile inlines it",
    "issue::issue_10_function_mode_enter_exit_manually":
        "graph-breaks: a TorchFunctionMode block runs natively (JF016; behaviour as eager, mode stack balanced): __torch_function__ is not traced, torch.compile inlines it",
    "issue::issue_10_sdpa_like_under_mode":
        "graph-breaks: a TorchFunctionMode block runs natively (JF016; behaviour as eager, mode stack balanced): __torch_function__ is not traced, torch.compile inlines it",
    "issue::issue_11_recursive_method_over_dict_values":
        "graph-breaks: breaks: JF018 recursive call: Walker.walk calls itself",
    "issue::storm_namedtuple_class_across_break":
        "graph-breaks: collections.namedtuple() inside the frame breaks at sys.intern (no storm left: the class made before the print is guarded by what the trace read)",
    "language::class_defined_inside":
        "graph-breaks: breaks: JF001 unsupported bytecode: LOAD_BUILD_CLASS is not supported",
    "language::match_class_pattern":
        "graph-breaks: breaks: JF001 unsupported bytecode: MATCH_CLASS is not supported",
    "language::match_structure":
        "graph-breaks: breaks: JF001 unsupported bytecode: MATCH_SEQUENCE is not supported",
    "language::recursion_int":
        "graph-breaks: breaks: JF018 recursive call: _fact calls itself",
    "language::recursion_tree":
        "graph-breaks: breaks: JF018 recursive call: _tree_sum calls itself",
    "modules::functional_call_on_module":
        "graph-breaks: breaks: JF002 call to an untraceable function: manual_seed (torch._compile) runs nat",
    "modules::module_built_inside":
        "graph-breaks: breaks: JF002 call to an untraceable function: manual_seed (torch._compile) runs nat",
    "modules::optimizer_step_inside":
        "graph-breaks: breaks: JF002 call to an untraceable function: Optimizer.zero_grad (torch._compile) ",
    "modules::state_dict_inside":
        "graph-breaks: breaks: JF015 unsupported argument: sorted() of non-constant values",
    "objects::abstract_base_class":
        "graph-breaks: breaks: JF001 unsupported bytecode: LOAD_BUILD_CLASS is not supported",
    "objects::bound_method_stored":
        "graph-breaks: breaks: JF009 unsupported object or operation: attribute ",
    "objects::contains_and_bool_user_class":
        "graph-breaks: breaks: JF001 unsupported bytecode: LOAD_BUILD_CLASS is not supported",
    "objects::dunder_methods_user_class":
        "graph-breaks: breaks: JF001 unsupported bytecode: LOAD_BUILD_CLASS is not supported",
    "objects::dynamic_class_via_type":
        "graph-breaks: breaks: JF009 unsupported object or operation: type() with three arguments",
    "objects::getattribute_override":
        "graph-breaks: no break, 2 graphs: an input's own __getattribute__ is read natively (its frame compiled on its own); torch.compile inlines it",
    "objects::iter_protocol_user_class":
        "graph-breaks: breaks: JF001 unsupported bytecode: LOAD_BUILD_CLASS is not supported",
    "objects::lru_cache_function":
        "graph-breaks: breaks: JF002 call to an untraceable function: call of _lru_cache_wrapper",
    "objects::object_identity_and_id":
        "graph-breaks: breaks: JF002 call to an untraceable function: constructing object",
    "objects::slots_object":
        "graph-breaks: breaks: JF011 mutation of Python state: assignment through the descriptor Slotted.n",
    "objects::super_in_init":
        "graph-breaks: breaks: JF001 unsupported bytecode: LOAD_BUILD_CLASS is not supported",
    "objects::vars_and_dict":
        "graph-breaks: breaks: JF002 call to an untraceable function: vars",
    "objects::wraps_preserves_name":
        "graph-breaks: breaks: JF009 unsupported object or operation: class partial has a custom __new__ or",
    "torch::manual_seed_inside":
        "graph-breaks: breaks: JF002 call to an untraceable function: manual_seed (torch._compile) runs nat",
    "torch::no_grad_decorator_callee":
        "graph-breaks: breaks: JF009 unsupported object or operation: call of object (the frame then runs n",
}


# entries that hold only where their condition does (the cause is in a
# library that changed between Python releases)
ONLY_WHERE: dict[str, tuple[str, Callable[[], bool]]] = {
    # 3.12's and 3.13's dataclasses.asdict reach no recursive call for this
    # program (atomic values are returned before the helper recurses)
    "containers::dataclass_asdict_replace": ("Python < 3.12", lambda: sys.version_info < (3, 12)),
}


def _check() -> None:
    for key in ONLY_WHERE:
        if key not in KNOWN:
            raise ValueError(f"known_failures: {key}: a condition for no entry")
    for key, val in KNOWN.items():
        cls = val.split(":", 1)[0]
        if cls not in CLASSES:
            raise ValueError(f"known_failures: {key}: unknown class {cls!r}")


_check()


def lookup(test_key: str, backend: str | None) -> str | None:
    keys = ([f"{test_key}[{backend}]"] if backend is not None else []) + [test_key]
    for key in keys:
        if key in KNOWN:
            only = ONLY_WHERE.get(key)
            return KNOWN[key] if only is None or only[1]() else None
    return None


def marks_for(test_key: str, backend: str | None = None):
    reason = lookup(test_key, backend)
    if reason is None:
        return ()
    # under fault injection a graph-count failure passes (counts are not
    # checked there) while a wrong result still fails: not strict
    return (pytest.mark.xfail(strict=not _faults_on(), reason=reason),)


def _faults_on() -> bool:
    import os

    return bool(os.environ.get("JANUS_FAULT_INJECTION", "").strip())
