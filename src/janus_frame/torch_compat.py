"""Every private torch API janus_frame uses, and what differs between the
torch releases it supports (2.11 to 2.15), in one module (a leaf: it imports
only torch).

In: the installed torch.
Out: the private names, importable from here (``from ..torch_compat import
FakeTensorMode``); each is looked up in torch on first use (PEP 562), so a
module importing one inside a function (AOTAutograd, Inductor, torch._dynamo's
frame API) still loads that part of torch only when it runs. The functions
below hide the release differences: :func:`fake_execution` (how operations
run on fake tensors), :func:`data_unknown` (fake tensors that do not know
their example's data), :func:`input_mutation_needs_runtime` (which input
mutations AOTAutograd's lean export cannot express). ``TORCH_VERSION`` and
:func:`check_supported` gate the range.

Process-wide torch state that janus_frame keeps bounded:

- :func:`fx_source_keys` / :func:`forget_fx_sources` /
  :func:`forget_fx_sources_since`: torch.fx registers the
  source of every GraphModule it generates in ``linecache`` and in its own
  loader (for tracebacks), and never forgets it: a process compiling and
  dropping many functions would keep every graph's source. janus_frame
  forgets the sources its compiles registered once their cache entry dies.
- :func:`bound_fake_tensor_cache` / :func:`clear_fake_tensor_cache`:
  FakeTensorMode's dispatch cache is process-wide and unbounded (one entry
  per operator and argument metadata, constants included); it is cleared
  when it grows past a bound, and by ``janus_frame.reset()``.

A new torch release is supported by checking this table and these functions
against it (``tests/test_torch_compat.py`` checks that every name resolves).
"""
from __future__ import annotations

import contextlib
import importlib
import linecache
import re
import sys
import warnings
import weakref


def _installed_torch_version() -> str:
    """torch's version, without importing torch (a subinterpreter imports
    janus_frame but cannot import torch): from its package metadata."""
    if "torch" in sys.modules:
        return sys.modules["torch"].__version__
    import importlib.metadata

    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:  # a source build without metadata
        import torch

        return torch.__version__


TORCH_VERSION_STRING = _installed_torch_version()
TORCH_VERSION = tuple(int(x) for x in re.match(r"(\d+)\.(\d+)", TORCH_VERSION_STRING).groups())
SUPPORTED_TORCH = ((2, 11), (2, 15))  # first and last minor release, inclusive

# name here -> (module, attribute in it)
_NAMES = {
    # FakeTensor and the shape environment (frontend: fake execution, dynamic sizes)
    "FakeTensorMode": ("torch._subclasses.fake_tensor", "FakeTensorMode"),
    "FakeTensor": ("torch._subclasses.fake_tensor", "FakeTensor"),
    "DataDependentOutputException": ("torch._subclasses.fake_tensor",
                                     "DataDependentOutputException"),
    "DynamicOutputShapeException": ("torch._subclasses.fake_tensor",
                                    "DynamicOutputShapeException"),
    "unset_fake_temporarily": ("torch._subclasses.fake_tensor", "unset_fake_temporarily"),
    "ShapeEnv": ("torch.fx.experimental.symbolic_shapes", "ShapeEnv"),
    "DimDynamic": ("torch.fx.experimental.symbolic_shapes", "DimDynamic"),
    "StatelessSymbolicContext": ("torch.fx.experimental.symbolic_shapes",
                                 "StatelessSymbolicContext"),
    "SYMPY_INTERP": ("torch.fx.experimental.symbolic_shapes", "SYMPY_INTERP"),
    "compute_unbacked_bindings": ("torch.fx.experimental.symbolic_shapes",
                                  "compute_unbacked_bindings"),
    "guard_int": ("torch.fx.experimental.symbolic_shapes", "guard_int"),
    "statically_known_true": ("torch.fx.experimental.symbolic_shapes", "statically_known_true"),
    "make_fx": ("torch.fx.experimental.proxy_tensor", "make_fx"),
    "enable_python_dispatcher": ("torch._dispatch.python", "enable_python_dispatcher"),
    # tracing contexts and sources (torch._guards)
    "GuardSource": ("torch._guards", "GuardSource"),
    "TorchSource": ("torch._guards", "Source"),
    "TracingContext": ("torch._guards", "TracingContext"),
    "tracing": ("torch._guards", "tracing"),
    "CompileContext": ("torch._guards", "CompileContext"),
    "detect_fake_mode": ("torch._guards", "detect_fake_mode"),
    # AOTAutograd and its partitioner (training graphs)
    "aot_export_function": ("torch._functorch.aot_autograd", "_aot_export_function"),
    "aot_module_simplified": ("torch._functorch.aot_autograd", "aot_module_simplified"),
    "PlainAOTOutput": ("torch._functorch._aot_autograd.descriptors", "PlainAOTOutput"),
    "TangentAOTInput": ("torch._functorch._aot_autograd.descriptors", "TangentAOTInput"),
    "MutationType": ("torch._functorch._aot_autograd.schemas", "MutationType"),
    "OutputType": ("torch._functorch._aot_autograd.schemas", "OutputType"),
    "min_cut_rematerialization_partition": ("torch._functorch.partitioners",
                                            "min_cut_rematerialization_partition"),
    # decompositions and memory formats
    "core_aten_decompositions": ("torch._decomp", "core_aten_decompositions"),
    "full_decomposition_table": ("torch._decomp", "decomposition_table"),
    "suggest_memory_format": ("torch._prims_common", "suggest_memory_format"),
    # operator objects
    "OpOverload": ("torch._ops", "OpOverload"),
    "OpOverloadPacket": ("torch._ops", "OpOverloadPacket"),
    # the comparison backend, and torch.compile's own frame hook
    "inductor_compile": ("torch._inductor", "compile"),
    "FrameAction": ("torch._C._dynamo.eval_frame", "_FrameAction"),
    "FrameExecStrategy": ("torch._C._dynamo.eval_frame", "_FrameExecStrategy"),
    "get_eval_frame_callback": ("torch._C._dynamo.eval_frame", "get_eval_frame_callback"),
    "set_code_exec_strategy": ("torch._C._dynamo.eval_frame", "set_code_exec_strategy"),
    # torch._C entry points
    "set_grad_enabled_c": ("torch._C", "_set_grad_enabled"),
    "pop_torch_function_stack": ("torch._C", "_pop_torch_function_stack"),
    "len_torch_function_stack": ("torch._C", "_len_torch_function_stack"),
    "len_torch_dispatch_stack": ("torch._C", "_len_torch_dispatch_stack"),
    "DisableTorchFunction": ("torch._C", "DisableTorchFunction"),
    "disable_current_dispatch_modes": ("torch.utils._python_dispatch", "_disable_current_modes"),
    "get_tracing_state": ("torch._C", "_get_tracing_state"),
    "are_functorch_transforms_active": ("torch._C", "_are_functorch_transforms_active"),
    "will_engine_execute_node": ("torch._C", "_will_engine_execute_node"),
    "current_graph_task_id": ("torch._C", "_current_graph_task_id"),
    "TensorBase": ("torch._C", "TensorBase"),
    "DelayedError": ("torch._C", "_functions.DelayedError"),
    "c_nn": ("torch._C", "_nn"),
    "increment_version": ("torch._C", "_increment_version"),
}

# what torch answers about its torch-function state, modes counted in (a
# traced mode block answers these only by running natively); the names that
# exist in the installed torch
TORCH_FUNCTION_STATE_QUERIES = (
    "_has_torch_function", "_has_torch_function_unary", "_has_torch_function_variadic",
    "_is_torch_function_mode_enabled", "_len_torch_function_stack", "_get_function_stack_at",
    "_pop_torch_function_stack", "_push_on_torch_function_stack", "_is_torch_function_enabled",
    "_is_torch_function_all_disabled")


def torch_function_state_queries() -> tuple:
    import torch

    return tuple(getattr(torch._C, n) for n in TORCH_FUNCTION_STATE_QUERIES if hasattr(torch._C, n))

__all__ = sorted(_NAMES) + ["TORCH_VERSION", "SUPPORTED_TORCH", "check_supported",
                            "fake_execution", "input_mutation_needs_runtime", "data_unknown",
                            "fx_source_keys", "no_user_modes", "forget_fx_sources",
                            "forget_fx_sources_since", "FAKE_CACHE_LIMIT", "torch_function_state_queries",
                            "bound_fake_tensor_cache", "clear_fake_tensor_cache",
                            "saved_tensors_hooks_active"]


def __getattr__(name: str):
    spec = _NAMES.get(name)
    if spec is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    mod, attr = spec
    obj = importlib.import_module(mod)
    for part in attr.split("."):
        obj = getattr(obj, part)
    globals()[name] = obj  # looked up once
    return obj


def saved_tensors_hooks_active() -> bool:
    """Are default saved-tensor hooks (``torch.autograd.graph.saved_tensors_hooks``,
    activation checkpointing, offloading) in effect?  (2.11-2.15:
    ``torch._C._autograd._top_saved_tensors_default_hooks(ignore_is_tracing)``.)"""
    import torch

    top = getattr(torch._C._autograd, "_top_saved_tensors_default_hooks", None)
    if top is None:
        return True  # cannot tell: assume some are
    return top(True) is not None


def check_supported() -> str | None:
    """Why the installed torch is outside the supported range (None if it
    is inside)."""
    lo, hi = SUPPORTED_TORCH
    if lo <= TORCH_VERSION <= hi:
        return None
    return (f"torch {TORCH_VERSION_STRING} is not supported (janus_frame supports torch "
            f"{lo[0]}.{lo[1]} to {hi[0]}.{hi[1]})")


def evaluate_static(shape_env, expr):
    """``expr`` (a sympy relation or expression over ``shape_env``'s size
    symbols) decided from what the environment knows -- ranges, replacements,
    facts found while tracing -- without adding a guard; None where it cannot
    be decided.  ``ShapeEnv._maybe_evaluate_static(expr, *, ...)`` in every
    supported release (2.11 to 2.15 take ``expr`` positionally; only the
    keyword-only options after it changed): a release without it, or with
    another signature, answers None, and callers fall back to the sizes'
    hints or a library call."""
    fn = getattr(shape_env, "_maybe_evaluate_static", None)
    if fn is None:
        return None
    try:
        return fn(expr)
    except TypeError:
        return None


# torch 2.11 and 2.12 run composite operations (linear on a 3-D input, ...)
# through their C++ kernels on fake tensors, which read sizes as plain ints:
# a dynamic size is specialised (guarded to its value) by merely passing
# through them. Python's dispatcher decomposes them on symbolic sizes.
# torch 2.13 and later do so for most of them on their own, but not all:
# constant_pad_nd (F.pad, as transformers' causal-LM loss pads its labels)
# still specialises, so symbolic traces take the Python dispatcher on every
# release (as TorchDynamo does); static ones need it only before 2.13.
_FAKE_NEEDS_PYTHON_DISPATCHER = TORCH_VERSION < (2, 13)


def fake_execution(stack: contextlib.ExitStack, symbolic: bool = False) -> None:
    """Enter on ``stack`` what running operations on fake tensors needs
    besides the fake mode itself (see above); ``symbolic``: some inputs
    have symbolic sizes."""
    if _FAKE_NEEDS_PYTHON_DISPATCHER or symbolic:
        stack.enter_context(__getattr__("enable_python_dispatcher")())


@contextlib.contextmanager
def no_user_modes():
    """A block in which the program's torch-function and dispatch modes do
    not see janus_frame's own tensor reads (explaining a failed guard reads
    sizes and strides of the call's arguments)."""
    if not (__getattr__("len_torch_function_stack")()
            or __getattr__("len_torch_dispatch_stack")()):
        yield
        return
    with __getattr__("DisableTorchFunction")(), __getattr__("disable_current_dispatch_modes")():
        yield


def data_unknown(fake):
    """``fake`` (a FakeTensor the frontend made from a real tensor) with its
    data unknown, as the frontend treats every tensor's data (reading it
    would need a guard).  torch 2.15's FakeTensorMode remembers the value of
    a 0-d CPU tensor it fakes without a shape environment (``item_memo``):
    ``.item()`` of the fake, and any operation that needs a Python number
    from it (``torch.ones(n)`` on a 0-d ``n``), then read the example's
    value and bake it into the graph's sizes, where earlier releases raise
    DataDependentOutputException (which the frontend turns into a
    specialisation or a graph break).  The remembered value is dropped."""
    memo = getattr(fake, "item_memo", None)
    if memo is not None and isinstance(memo, (bool, int, float)):
        fake.item_memo = None
    return fake


def input_mutation_needs_runtime(info) -> bool:
    """Does an AOTAutograd input (its ``InputAliasInfo``) change in a way
    only AOTAutograd's runtime wrappers replay? Metadata changes, storage
    resizes, and (torch 2.15) data replaced by a shallow copy; data
    mutations kept in the graph are the graph's own business."""
    return bool(info.mutates_metadata or info.mutation_inductor_storage_resize
                or getattr(info, "mutation_is_shallow_copy_data", False)
                or (info.mutates_data
                    and info.mutation_type != __getattr__("MutationType").MUTATED_IN_GRAPH))


# -- process-wide torch state kept bounded (see the module docstring) --------
# Both look torch's modules up in sys.modules: they never import a part of
# torch that the process has not loaded yet.
FAKE_CACHE_LIMIT = 1024


def _fx_loader():
    """torch.fx's source loader if fx is loaded."""
    return getattr(sys.modules.get("torch.fx.graph_module"), "_loader", None)


def fx_source_keys() -> frozenset:
    """The fx sources registered so far (their pseudo file names)."""
    cache = getattr(_fx_loader(), "eval_cache", None)
    return frozenset(cache) if cache is not None else frozenset()


def forget_fx_sources(keys) -> None:
    """Forget the registered sources ``keys`` (their graphs are gone)."""
    cache = getattr(_fx_loader(), "eval_cache", None)
    for k in keys:
        if cache is not None:
            cache.pop(k, None)
        linecache.cache.pop(k, None)


def forget_fx_sources_since(before: frozenset, owner=None) -> None:
    """Forget the sources registered since ``before`` (:func:`fx_source_keys`)
    when the code of ``owner`` (the function that runs their graphs) dies, or
    at once if it is None."""
    new = fx_source_keys() - before
    if not new:
        return
    if owner is not None:
        weakref.finalize(owner.__code__, forget_fx_sources, new)
    else:
        forget_fx_sources(new)


def _fake_mode_class():
    """FakeTensorMode if torch's fake tensors are loaded."""
    return getattr(sys.modules.get("torch._subclasses.fake_tensor"), "FakeTensorMode", None)


def bound_fake_tensor_cache(limit: int = FAKE_CACHE_LIMIT) -> None:
    cls = _fake_mode_class()
    cache = getattr(cls, "cache", None)
    if cache is not None and len(cache) > limit:
        cls.cache_clear()


def clear_fake_tensor_cache() -> None:
    cls = _fake_mode_class()
    if hasattr(cls, "cache_clear"):
        cls.cache_clear()


@contextlib.contextmanager
def internal_warnings_hidden():
    """Warnings torch's own machinery issues while janus_frame compiles, and
    hides only when they are shown (``torch._logging.hide_warnings``): made
    errors (``-W error``), they would fail the compile of a frame that has
    nothing wrong with it. Used around the frontend's trace and the backend."""
    with warnings.catch_warnings():
        # fake-tensor conversion (meta_utils.safe_grad) of a non-leaf input
        warnings.filterwarnings("ignore", _NON_LEAF_GRAD, UserWarning)
        yield


_NON_LEAF_GRAD = r"The \.grad attribute of a Tensor that is not a leaf"
