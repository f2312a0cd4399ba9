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
    # ---- stale-guard (14)
    "effects::callee_code_replaced":
        "stale-guard: inlined callee guarded by identity, not by its __code__",
    "effects::method_called_via_self_patched":
        "stale-guard: method found through the class MRO is not guarded (class-dict entry)",
    "guards::builtin_shadowed_by_global":
        "stale-guard: a builtin is used without a guard that no module global shadows it later",
    "guards::library_function_monkeypatched":
        "stale-guard: a module attribute (F.gelu) is resolved at trace time without a guard",
    "guards::module_forward_replaced_on_instance":
        "stale-guard: forward set on the module instance after compiling not guarded (instance __dict__)",
    "issue::issue_05_base_class_method_replaced":
        "stale-guard: method found through the class MRO is not guarded (class-dict entry)",
    "issue::issue_05_method_of_global_object_replaced":
        "stale-guard: method found through the class MRO is not guarded (class-dict entry)",
    "issue::issue_05_method_replaced":
        "stale-guard: method found through the class MRO is not guarded (class-dict entry)",
    "issue::issue_05_method_replaced_by_staticmethod":
        "stale-guard: method found through the class MRO is not guarded (class-dict entry)",
    "objects::class_method_replaced":
        "stale-guard: method found through the class MRO is not guarded (class-dict entry)",
    "objects::dunder_call_replaced":
        "stale-guard: method found through the class MRO is not guarded (class-dict entry)",
    "objects::instance_method_replaced":
        "stale-guard: method set on the instance after compiling not guarded (instance __dict__)",
    "objects::method_added_on_subclass_shadows_base":
        "stale-guard: method found through the class MRO is not guarded (class-dict entry)",
    "objects::property_replaced_on_class":
        "stale-guard: property found through the class MRO is not guarded",
    # ---- aliasing (26)
    "aliasing::return_base_and_view[default]":
        "aliasing: fusing backend: outputs viewing one intermediate come back as separate buffers",
    "aliasing::return_column_view_after_inplace[default]":
        "aliasing: fusing backend returns a copy where eager returns a view (strides/offset differ)",
    "aliasing::return_diagonal_view[default]":
        "aliasing: fusing backend returns a copy of a view of an input: writes through it are lost",
    "aliasing::return_unsqueezed_view[default]":
        "aliasing: fusing backend returns a copy of a view of an input: writes through it are lost",
    "aliasing::same_tensor_twice_then_distinct[default]":
        "aliasing: fusing backend: aliasing of inputs (same tensor twice) not part of the guards: stale values",
    "aliasing::slices_disjoint_then_overlapping[default]":
        "aliasing: fusing backend refuses inputs that share storage (falls back)",
    "aliasing::two_views_of_one_intermediate[default]":
        "aliasing: fusing backend: outputs viewing one intermediate come back as separate buffers",
    "aliasing::view_and_base_as_arguments[default]":
        "aliasing: fusing backend refuses inputs that share storage (falls back)",
    "issue::issue_03_inplace_return_reshape[default]":
        "aliasing: fusing backend returns a copy of a view of an input: writes through it are lost",
    "issue::issue_03_inplace_return_transpose[default]":
        "aliasing: fusing backend returns a copy of a view of an input: writes through it are lost",
    "issue::issue_03_inplace_return_view[default]":
        "aliasing: fusing backend returns a copy of a view of an input: writes through it are lost",
    "issue::issue_03_return_input_and_view[default]":
        "aliasing: fusing backend returns a copy of a view of an input: writes through it are lost",
    "issue::issue_03_view_then_inplace_through_view[default]":
        "aliasing: fusing backend returns a copy where eager returns a view (strides/offset differ)",
    "issue::issue_04_overlapping_views[default]":
        "aliasing: fusing backend refuses inputs that share storage (falls back)",
    "issue::issue_04_same_tensor_second_call[default]":
        "aliasing: same tensor passed twice after distinct tensors: aliasing not guarded",
    "language::nested_star_in_call[default]":
        "aliasing: fusing backend returns the input object itself where eager returns a new view",
    "torch::inplace_then_return_view[default]":
        "aliasing: fusing backend returns a copy where eager returns a view (strides/offset differ)",
    "torch::input_with_storage_offset[default]":
        "aliasing: fusing backend returns a copy where eager returns a view (strides/offset differ)",
    "torch::output_is_detach_of_input[default]":
        "aliasing: fusing backend returns the input object itself where eager returns a new view",
    "torch::outputs_share_intermediate_storage[default]":
        "aliasing: fusing backend returns a copy where eager returns a view (strides/offset differ)",
    "torch::overlapping_slices_mutated[default]":
        "aliasing: fusing backend refuses inputs that share storage (falls back)",
    "torch::overlapping_views_as_args[default]":
        "aliasing: fusing backend refuses inputs that share storage (falls back)",
    "torch::same_tensor_passed_twice[default]":
        "aliasing: fusing backend: the same tensor passed twice and mutated gives stale values",
    "torch::t_inplace[default]":
        "aliasing: fusing backend: t_() on an input not applied to the input's metadata",
    "torch::unsqueeze_inplace[default]":
        "aliasing: fusing backend: unsqueeze_() on an input raises an internal-overlap error",
    "torch::view_write_through_output[default]":
        "aliasing: fusing backend returns a copy of a view of an input: writes through it are lost",
    # ---- dict-views (0)
    # ---- named-tuple (0)
    # ---- hooks (10)
    "guards::full_backward_hook_added_after_first_call":
        "hooks: full backward hook registered after compiling never fires",
    "guards::module_forward_hooks_dict_edited_directly":
        "hooks: module hook dicts not guarded: hook added/removed after compiling ignored",
    "issue::issue_06_forward_hook_added":
        "hooks: module hook dicts not guarded: hook added/removed after compiling ignored",
    "issue::issue_06_forward_pre_hook_added":
        "hooks: module hook dicts not guarded: hook added/removed after compiling ignored",
    "issue::issue_06_hook_added_on_module_called_from_function":
        "hooks: module hook dicts not guarded: hook added/removed after compiling ignored",
    "modules::forward_hook_on_submodule_after_first_call":
        "hooks: module hook dicts not guarded: hook added/removed after compiling ignored",
    "modules::forward_hook_removed_after_first_call": "hooks: breaks: JF014 module hooks: Linear",
    "modules::forward_hook_with_kwargs_after_first_call":
        "hooks: module hook dicts not guarded: hook added/removed after compiling ignored",
    "modules::forward_hook_with_side_effect": "hooks: breaks: JF014 module hooks: Linear",
    "modules::forward_pre_hook_after_first_call":
        "hooks: module hook dicts not guarded: hook added/removed after compiling ignored",
    # ---- numpy (0)
    # ---- context-managers (35)
    "exceptions::break_inside_with_in_loop":
        "context-managers: breaks: JF016 context manager run natively: Recording",
    "exceptions::class_exit_no_exception":
        "context-managers: breaks: JF016 context manager run natively: Suppress",
    "exceptions::class_exit_suppresses":
        "context-managers: resume after a suppressing __exit__ lacks the live locals (UnboundLocalError)",
    "exceptions::class_exit_suppresses_in_callee":
        "context-managers: resume after a suppressing __exit__ lacks the live locals (UnboundLocalError)",
    "exceptions::class_exit_suppresses_tensor_before":
        "context-managers: breaks: JF016 context manager run natively: Suppress",
    "exceptions::class_manager_exception_propagates":
        "context-managers: breaks: JF016 context manager run natively: Recording",
    "exceptions::class_manager_logs_order":
        "context-managers: breaks: JF016 context manager run natively: Recording",
    "exceptions::contextmanager_finally_on_exception":
        "context-managers: breaks: JF016 context manager run natively: _GeneratorContextManager",
    "exceptions::contextmanager_generator":
        "context-managers: breaks: JF016 context manager run natively: _GeneratorContextManager",
    "exceptions::contextmanager_swallows":
        "context-managers: exception inside a natively entered with-block escapes the suppressing __exit__",
    "exceptions::exitstack_callbacks":
        "context-managers: breaks: JF016 context manager run natively: ExitStack",
    "exceptions::nested_with_inner_raises_outer_suppresses":
        "context-managers: resume after a suppressing __exit__ lacks the live locals (UnboundLocalError)",
    "exceptions::return_inside_with":
        "context-managers: breaks: JF016 context manager run natively: Recording",
    "exceptions::with_suppress_keyerror":
        "context-managers: native code at a break runs outside the with-block: the exception escapes suppress()",
    "exceptions::with_suppress_multiple_types":
        "context-managers: native code at a break runs outside the with-block: the exception escapes suppress()",
    "exceptions::with_suppress_nothing_raised":
        "context-managers: breaks: JF016 context manager run natively: suppress",
    "interop::dispatch_mode_log":
        "context-managers: user TorchDispatchMode also sees janus_frame's trace-time ops",
    "interop::dispatch_mode_with_break_inside":
        "context-managers: user TorchDispatchMode also sees janus_frame's trace-time ops",
    "interop::function_mode_break_in_callee":
        "context-managers: TorchFunctionMode entered at a break is popped before its __exit__ (empty mode stack)",
    "interop::function_mode_counts":
        "context-managers: TorchFunctionMode entered at a break is popped before its __exit__ (empty mode stack)",
    "interop::function_mode_exception_inside":
        "context-managers: TorchFunctionMode entered at a break is popped before its __exit__ (empty mode stack)",
    "interop::function_mode_no_break":
        "context-managers: TorchFunctionMode entered at a break is popped before its __exit__ (empty mode stack)",
    "interop::function_mode_with_break_inside":
        "context-managers: TorchFunctionMode entered at a break is popped before its __exit__ (empty mode stack)",
    "interop::nested_modes_with_break":
        "context-managers: TorchFunctionMode entered at a break is popped before its __exit__ (empty mode stack)",
    "issue::issue_07_exit_selectively_suppresses":
        "context-managers: exception inside a natively entered with-block escapes the suppressing __exit__",
    "issue::issue_07_exit_suppresses":
        "context-managers: resume after a suppressing __exit__ lacks the live locals (UnboundLocalError)",
    "issue::issue_07_exit_suppresses_after_tensor_op":
        "context-managers: breaks: JF016 context manager run natively: Swallow",
    "issue::issue_07_exit_suppresses_keyerror_lookup":
        "context-managers: exception inside a natively entered with-block escapes the suppressing __exit__",
    "issue::issue_09_suppress_base_class":
        "context-managers: native code at a break runs outside the with-block: the exception escapes suppress()",
    "issue::issue_09_suppress_in_loop":
        "context-managers: native code at a break runs outside the with-block: the exception escapes suppress()",
    "issue::issue_09_suppress_keyerror":
        "context-managers: native code at a break runs outside the with-block: the exception escapes suppress()",
    "issue::issue_10_function_mode_break":
        "context-managers: TorchFunctionMode entered at a break is popped before its __exit__ (empty mode stack)",
    "issue::issue_10_function_mode_break_in_callee":
        "context-managers: TorchFunctionMode entered at a break is popped before its __exit__ (empty mode stack)",
    "issue::issue_10_sdpa_like_under_mode":
        "context-managers: TorchFunctionMode entered at a break is popped before its __exit__ (empty mode stack)",
    "torch::inference_mode_block":
        "context-managers: breaks: JF016 context manager run natively: inference_mode",
    # ---- exceptions (16)
    "containers::dict_keyerror_caught": "exceptions: breaks: JF012 exception handling: KeyError ",
    "exceptions::catch_tuple_of_types": "exceptions: breaks: JF012 exception handling: KeyError ",
    "exceptions::except_order_first_match":
        "exceptions: breaks: JF012 exception handling: constructing exception KeyError",
    "exceptions::exception_context_implicit":
        "exceptions: breaks: JF012 exception handling: constructing exception KeyError",
    "exceptions::exception_group_like_loop":
        "exceptions: breaks: JF012 exception handling: constructing exception ValueError",
    "exceptions::exception_in_callee_caught":
        "exceptions: breaks: JF012 exception handling: constructing exception RuntimeError",
    "exceptions::exception_variable_cleared":
        "exceptions: breaks: JF012 exception handling: raise statement",
    "exceptions::finally_runs_on_exception":
        "exceptions: breaks: JF012 exception handling: constructing exception IndexError",
    "exceptions::nullcontext_usage":
        "exceptions: breaks: JF012 exception handling: mul raised TypeError: unsupported operand type(s) ",
    "exceptions::raise_and_catch_builtin":
        "exceptions: breaks: JF012 exception handling: constructing exception ValueError",
    "exceptions::raise_from_caught":
        "exceptions: breaks: JF012 exception handling: truediv raised ZeroDivisionError: division by zero",
    "exceptions::reraise_bare":
        "exceptions: breaks: JF012 exception handling: constructing exception TypeError",
    "exceptions::stopiteration_from_next":
        "exceptions: breaks: JF012 exception handling: StopIteration",
    "exceptions::zero_division_in_python":
        "exceptions: breaks: JF012 exception handling: floordiv raised ZeroDivisionError: integer divisio",
    "guards::environment_variable_read":
        "exceptions: breaks: JF012 os.environ.get raises KeyError inside Mapping.get (try/except not traced)",
    "issue::issue_04_partial_overlap_add":
        "exceptions: overlapping in-place add: error raised one line off (eager: line 165)",
    # ---- internal-error (1)
    "objects::slots_missing_attr_raises":
        "internal-error: AttributeError from an unset __slots__ member escapes the compiler",
    # ---- recompile-storm (9)
    "effects::counter_and_history_on_self":
        "recompile-storm: int attribute on self specialised: one entry per value",
    "issue::storm_closure_made_before_break":
        "recompile-storm: object made before a break guarded by identity in the resume function",
    "issue::storm_float_argument_changes_every_call":
        "recompile-storm: float argument specialised: one entry per value",
    "issue::storm_growing_list_len_in_if":
        "recompile-storm: len() of a growing list specialised: one entry per length",
    "issue::storm_growing_list_len_used_as_value":
        "recompile-storm: len() of a growing list specialised: one entry per length",
    "issue::storm_module_built_before_break":
        "recompile-storm: object made before a break guarded by identity in the resume function",
    "issue::storm_module_list_slice_across_break":
        "recompile-storm: object made before a break guarded by identity in the resume function",
    "issue::storm_namedtuple_class_across_break":
        "recompile-storm: object made before a break guarded by identity in the resume function",
    "issue::storm_partial_across_break":
        "recompile-storm: object made before a break guarded by identity in the resume function",
    # ---- silent-fallback (2)
    "issue::storm_first_call_int_then_tensor":
        "silent-fallback: frame first called with a Python number is never compiled for tensors",
    "issue::storm_first_call_number_then_tensor":
        "silent-fallback: frame first called with a Python number is never compiled for tensors",
    # ---- wrong-result (2)
    "guards::load_state_dict_between_calls[default]":
        "wrong-result: fusing backend: nn.Linear on a 1-d input returns shape (1, n) instead of (n,)",
    "language::generator_send":
        "wrong-result: generator materialised as a tuple iterator: send() missing",
    # ---- autograd (3)
    "torch::autograd_grad_inside[default]":
        "autograd: fusing backend: create_graph=True gradient does not backpropagate to the input",
    "torch::detach_and_requires_grad_outputs[default]":
        "autograd: fusing backend: detached output gets a grad_fn",
    "torch::requires_grad_set_inside[default]":
        "autograd: fusing backend: output of a graph with a requires_grad constant loses requires_grad",
    # ---- backend-fallback (3)
    "language::advanced_indexing[default]":
        "backend-fallback: fusing backend cannot lower data-dependent output shapes (PendingUnbackedSymbolNotFound)",
    "torch::nonzero_data_dependent_shape[default]":
        "backend-fallback: fusing backend cannot lower data-dependent output shapes (PendingUnbackedSymbolNotFound)",
    "torch::unique_consecutive_counts[default]":
        "backend-fallback: fusing backend cannot lower data-dependent output shapes (PendingUnbackedSymbolNotFound)",
    # ---- graph-breaks (46)
    "containers::chainmap_lookup":
        "graph-breaks: breaks: JF009 unsupported object or operation: subscript of ChainMap with str",
    "containers::dataclass_asdict_replace":
        "graph-breaks: breaks: JF018 recursive call: _asdict_inner calls itself",
    "containers::dataclass_fields_and_eq":
        "graph-breaks: breaks: JF009 unsupported object or operation: comparison eq of Cfg and Cfg",
    "containers::defaultdict_int_counts":
        "graph-breaks: breaks: JF009 unsupported object or operation: constructing defaultdict, a dict with",
    "containers::defaultdict_list":
        "graph-breaks: breaks: JF009 unsupported object or operation: constructing defaultdict, a dict with",
    "containers::defaultdict_missing_read":
        "graph-breaks: breaks: JF009 unsupported object or operation: constructing defaultdict, a dict with",
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
    "effects::logging_info_call": "graph-breaks: breaks: JF003 print or logging call: Logger.info",
    "effects::warnings_warn_inside":
        "graph-breaks: breaks: JF002 call to an untraceable function: warn",
    "issue::issue_09_suppress_attribute_error_getattr":
        "graph-breaks: breaks: JF001 unsupported bytecode: LOAD_BUILD_CLASS is not supported",
    "issue::issue_11_recursive_collect_into_list":
        "graph-breaks: breaks: JF018 recursive call: Walker2.collect calls itself",
    "issue::issue_11_recursive_count_with_list_leaves":
        "graph-breaks: breaks: JF018 recursive call: Config11.count calls itself",
    "issue::issue_11_recursive_method_over_dict_values":
        "graph-breaks: breaks: JF018 recursive call: Walker.walk calls itself",
    "language::class_defined_inside":
        "graph-breaks: breaks: JF001 unsupported bytecode: LOAD_BUILD_CLASS is not supported",
    "language::match_class_pattern":
        "graph-breaks: breaks: JF001 unsupported bytecode: MATCH_CLASS is not supported",
    "language::match_structure":
        "graph-breaks: breaks: JF001 unsupported bytecode: MATCH_SEQUENCE is not supported",
    "language::recursion_int": "graph-breaks: breaks: JF018 recursive call: _fact calls itself",
    "language::recursion_tree":
        "graph-breaks: breaks: JF018 recursive call: _tree_sum calls itself",
    "modules::functional_call_on_module":
        "graph-breaks: breaks: JF002 call to an untraceable function: manual_seed (torch._compile) runs nat",
    "modules::module_built_inside":
        "graph-breaks: breaks: JF002 call to an untraceable function: manual_seed (torch._compile) runs nat",
    "modules::module_list_slice":
        "graph-breaks: breaks: JF015 unsupported argument: ObjV passed to a tensor operation",
    "modules::module_list_slice_length_changes":
        "graph-breaks: breaks: JF015 unsupported argument: ObjV passed to a tensor operation",
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
        "graph-breaks: breaks: JF002 call to an untraceable function: call of wrapper_descriptor",
    "objects::iter_protocol_user_class":
        "graph-breaks: breaks: JF001 unsupported bytecode: LOAD_BUILD_CLASS is not supported",
    "objects::lru_cache_function":
        "graph-breaks: breaks: JF002 call to an untraceable function: call of _lru_cache_wrapper",
    "objects::object_identity_and_id":
        "graph-breaks: breaks: JF002 call to an untraceable function: constructing object",
    "objects::setattr_getattr_delattr_builtins":
        "graph-breaks: breaks: JF009 unsupported object or operation: class SimpleNamespace has a custom __",
    "objects::slots_object":
        "graph-breaks: breaks: JF011 mutation of Python state: assignment through the descriptor Slotted.n",
    "objects::super_in_init":
        "graph-breaks: breaks: JF001 unsupported bytecode: LOAD_BUILD_CLASS is not supported",
    "objects::vars_and_dict": "graph-breaks: breaks: JF002 call to an untraceable function: vars",
    "objects::wraps_preserves_name":
        "graph-breaks: breaks: JF022 unsupported object or attribute: attribute '__module__' of function",
    "torch::manual_seed_inside":
        "graph-breaks: breaks: JF002 call to an untraceable function: manual_seed (torch._compile) runs nat",
    "torch::no_grad_decorator_callee":
        "graph-breaks: breaks: JF009 unsupported object or operation: call of object (the frame then runs n",
    # ---- process (6)
    "process::bogus_backend_env":
        "process: the .pth start-up error is printed twice, the program runs, exit status 0",
    "process::cli_bogus_backend[env]":
        "process: JANUS_FRAME_BACKEND=bogus with run: a traceback, printed twice",
    "process::cli_bogus_backend[flag]": "process: run --backend bogus exits 1 without any message",
    "process::script_outside_cwd":
        "process: under JANUS_FRAME=1 a script outside the working directory is silently not compiled",
    "process::shutdown_del_and_atexit":
        "process: the hook stays installed at shutdown: the callback hits torn-down module globals (hook.py), output differs",
    "process::shutdown_with_logging_handlers":
        "process: logging's exit-time weakref callbacks reach the torn-down frame callback (hook.py)",
    # ---- leak (4)
    "process::leak_10000[no-reset]":
        "leak: 15 gc objects and 38 pymalloc blocks per function stay",
    "process::leak_10000[reset]":
        "leak: 15 gc objects and 38 pymalloc blocks per function stay after jf.reset()",
    "process::leak_1000[no-reset]": "leak: 15 gc objects per compiled-and-dropped function stay",
    "process::leak_1000[reset]": "leak: 15 gc objects per function stay after jf.reset()",
}


def _check() -> None:
    for key, val in KNOWN.items():
        cls = val.split(":", 1)[0]
        if cls not in CLASSES:
            raise ValueError(f"known_failures: {key}: unknown class {cls!r}")


_check()


def lookup(test_key: str, backend: str | None) -> str | None:
    if backend is not None and f"{test_key}[{backend}]" in KNOWN:
        return KNOWN[f"{test_key}[{backend}]"]
    return KNOWN.get(test_key)


def marks_for(test_key: str, backend: str | None = None):
    reason = lookup(test_key, backend)
    if reason is None:
        return ()
    return (pytest.mark.xfail(strict=True, reason=reason),)
