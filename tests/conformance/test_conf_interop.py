"""Conformance: numpy interop, TorchFunctionMode / TorchDispatchMode context
managers (with graph breaks inside), data-dependent Python values
(.item(), .tolist()) in control flow.

PYTEST_DONT_REWRITE"""
from __future__ import annotations

import numpy as np
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from harness import Registry, T

P = Registry("interop")
x1 = lambda k: (T(4),)  # noqa: E731


# ---------------------------------------------------------------- numpy
@P(args=x1, graphs=1, breaks=0)
def numpy_copy_of_tensor(x):
    a = x.numpy()
    return a.copy()


@P(args=x1, graphs=1, breaks=0)
def numpy_sum_of_tensor(x):
    return x.numpy().sum()


@P(args=x1, graphs=1, breaks=0)
def numpy_array_math(x):
    a = x.numpy()
    return np.exp(a) * 2 + a.mean()


@P(args=x1, graphs=1, breaks=0)
def numpy_view_shares_memory(x):
    a = x.numpy()
    a[0] = 42.0
    return x * 1


@P(args=x1, graphs=1, breaks=0)
def from_numpy_roundtrip(x):
    a = (x * 2).numpy()
    return torch.from_numpy(a) + 1


@P(args=lambda k: (np.arange(4.0) + k,), graphs=1, breaks=0)
def from_numpy_argument(a):
    t = torch.from_numpy(a)
    return t * 2


@P(args=lambda k: (np.arange(4.0) * (k + 1),), graphs=1, breaks=0)
def numpy_array_argument_math(a):
    return np.sin(a) + a.sum()


@P(args=x1, graphs=1, breaks=0)
def np_function_on_tensor(x):
    return np.sum(x.numpy() ** 2), np.argmax(x.numpy())


@P(args=x1, graphs=1, breaks=0)
def numpy_scalar_back_to_tensor(x):
    s = np.float32(x.numpy().max())
    return x / s


@P(args=x1, graphs=1, breaks=0)
def np_asarray_of_tensor(x):
    return np.asarray(x) * 3


@P(args=x1, graphs=1, breaks=0)
def tensor_from_numpy_constant(x):
    c = torch.tensor(np.array([1.0, 2.0, 3.0, 4.0], dtype=np.float32))
    return x + c


@P(args=x1, graphs=1, breaks=0, why="torch.compile breaks on ndarray.dtype (1 break)")
def numpy_dtype_mapping(x):
    a = x.double().numpy()
    return a.dtype.name, torch.from_numpy(a).dtype


@P(args=lambda k: (T(3, 4),))
def numpy_reductions_with_axis(x):
    a = x.numpy()
    return np.mean(a, axis=0), a.max(axis=1), a.sum(axis=(0, 1)), np.std(a, 0, keepdims=True)


@P(args=lambda k: (T(6),))
def numpy_where_clip_maximum(x):
    a = x.numpy()
    return np.where(a > 0, a, 0.0), np.clip(a, -1, 1), np.maximum(a, 0.5), np.abs(a) ** 0.5


@P(args=lambda k: (T(4),))
def numpy_shape_methods_and_stacking(x):
    a = x.numpy()
    b = a.reshape(2, 2).T.copy()
    c = a.astype(np.float64)
    return b, c, np.concatenate([a, a * 2]), np.stack([a, a]), a[1:3], a.ravel()


@P(args=lambda k: (T(2, 3),), why="torch.compile breaks on ndarray.dtype (1 break)")
def numpy_metadata_and_iteration(x):
    a = x.numpy()
    total = np.zeros(3, dtype=np.float32)
    for row in a:
        total = total + row
    return a.shape, a.ndim, len(a), a.dtype, a.size, a.itemsize, total


@P(args=lambda k: (T(4),))
def numpy_scalar_results(x):
    a = x.numpy()
    s = a.sum()
    m = np.float64(a.mean())
    return s * 2 + 1, type(s).__name__, m, type(m).__name__, a[0], np.dot(a, a), -s


@P(args=lambda k: (T(4),))
def numpy_constants_meet_tensors(x):
    eps = np.finfo(np.float32).eps
    tiny = torch.finfo(x.dtype).tiny
    return x * np.sqrt(2.0) + np.pi, x + eps, tiny, x * np.float32(0.5), x / np.int64(3)


@P(args=lambda k: (T(3), np.ones(3, dtype=np.float32)), graphs=None, breaks=None,
   why="numpy on the left converts the tensor (a DeprecationWarning) or raises: run natively")
def numpy_left_of_tensor(x, a):
    return a == x, np.float32(2.0) * x


@P(args=lambda k: (np.arange(4.0) + k,))
def numpy_argument_mutated(a):
    a[0] = 5.0
    a += 1
    a *= 2
    return a.sum()


@P(args=lambda k: (np.arange(2.0 + k),), recompiles=2)
def numpy_argument_shape_changes(a):
    return a * 2 + a.mean()


@P(args=lambda k: (np.arange(6).reshape(2, 3) * (k + 1),))
def numpy_int_argument(a):
    t = torch.from_numpy(a).add_(1)
    return a.sum(axis=0), a // 2, t * 2


@P(args=lambda k: (np.arange(6.0).reshape(2, 3) - k,))
def numpy_views_of_argument_returned(a):
    return a.T, a[1], torch.from_numpy(a)[:, 1:]


@P(args=x1)
def numpy_inplace_through_view_of_tensor(x):
    a = x.numpy()
    a += 1
    a[-1] = 0.0
    return x


@P(args=lambda k: (T(4, requires_grad=True),))
def numpy_of_tensor_requiring_grad(x):
    return x.detach().numpy() * 2, np.asarray(x.detach())


@P(args=lambda k: (T(4, requires_grad=True),))
def numpy_requires_grad_raises(x):
    return x.numpy()


@P(args=x1)
def numpy_returned_shares_memory(x):
    a = x.numpy()
    return a, np.asarray(x), x


@P(args=lambda k: (T(4), np.float32(k + 0.5)))
def numpy_scalar_argument(x, s):
    return x * s, s * 2, type(s * 2).__name__


@P(args=x1)
def numpy_sort_in_place_and_copy(x):
    a = (x * 1).numpy()
    b = np.sort(a)
    a.sort()
    return a, b, np.argsort(a)


@P(args=x1, graphs=None, breaks=None,
   why="a view with negative strides (torch has none) runs natively (torch.compile: 1/0, a copy)")
def numpy_negative_step_view_of_tensor(x):
    a = x.numpy()
    r = a[::-1]
    r[0] = 7.0
    return x, r.copy()


@P(args=lambda k: (T(3, 3),))
def numpy_matmul_and_back_to_tensor(x):
    a = x.numpy()
    return a @ a, np.matmul(a, a.T), torch.as_tensor(a @ a) - x, torch.tensor(a.sum(0)) * x


@P(args=lambda k: (T(3, 3),), graphs=None, breaks=None,
   why="numpy converts the tensor (a DeprecationWarning): janus_frame runs it natively")
def numpy_mixed_with_tensor(x):
    a = x.numpy()
    return x + a, x * a, x == a


@P(args=lambda k: (T(3), np.ones(3, dtype=np.float32)))
def numpy_array_left_of_tensor_raises(x, a):
    return a * x


@P(args=x1, graphs=2, breaks=1)
def numpy_value_in_branch_breaks(x):
    a = x.numpy()
    if a.max() > 0:
        return x + 1
    return x - 1


@P(args=x1, graphs=2, breaks=2)
def numpy_item_and_int_break(x):
    a = np.asarray(x)
    return int(a.argmax()) + a.sum().item()


# ---------------------------------------------------------------- .item() / .tolist() in control flow
@P(args=x1, graphs=None, breaks=None, why='tensor-dependent branch: janus_frame may speculate (torch.compile: 2 graphs)')
def item_in_if(x):
    if x.sum().item() > 0:
        return x * 2
    return x * -1


@P(args=x1, graphs=1, breaks=None, why='data-dependent .tolist(): break counts differ by tracer')
def tolist_loop(x):
    total = 0.0
    for v in x.tolist():
        total += v
    return total, x + 1


@P(args=x1, graphs=(1, 2), breaks=None, why='data-dependent .item()')
def item_as_python_scale(x):
    s = x.abs().max().item()
    return x / s, s


@P(args=lambda k: (torch.tensor([k + 1, 2]),), graphs=(1, 2), breaks=None, why='data-dependent .item() used as a size')
def int_item_as_size(x):
    n = int(x[0])
    return torch.ones(n) * x[1]


@P(args=lambda k: (T(3), torch.tensor(k + 2)), graphs=None, breaks=None,
   why='a 0-d int tensor used as a size: its value is data (torch 2.15 fakes remember it)')
def zero_dim_tensor_as_size(x, n):
    y = torch.ones(n) * x[0]
    return y, y.shape[0] + 1


@P(args=x1, graphs=None, breaks=None, why='tensor-dependent loop: janus_frame may speculate')
def tensor_bool_in_while(x):
    n = 0
    while (x > 0).any() and n < 10:
        x = x - 1
        n += 1
    return x, n


@P(args=x1, graphs=None, breaks=None, why='tensor-dependent branch: janus_frame may speculate (torch.compile: 2 graphs)')
def tensor_bool_in_if(x):
    if x.mean() > 0:
        return x + 1
    return x - 1


# ---------------------------------------------------------------- torch function / dispatch modes
class AddOneMode(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func is torch.add:
            out = out + 1
        return out


class CountMode(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.n = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.n += 1
        return func(*args, **(kwargs or {}))


class LogDispatch(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func.overloadpacket))
        return func(*args, **(kwargs or {}))


@P(args=x1, graphs=1, breaks=0)
def function_mode_no_break(x):
    with AddOneMode():
        y = torch.add(x, 1)
    return y


@P(args=x1, graphs=2, breaks=1)
def function_mode_with_break_inside(x):
    with AddOneMode():
        y = torch.add(x, 1)
        print("break here")
        z = torch.add(y, 2)
    return z


@P(args=x1, graphs=2, breaks=None, why='torch.compile: 2 graphs, break in the callee')
def function_mode_break_in_callee(x):
    def inner(t):
        print("callee break")
        return torch.add(t, 3)
    with AddOneMode():
        return inner(x) * 2


@P(args=x1, graphs=1, breaks=0)
def function_mode_counts(x):
    m = CountMode()
    with m:
        y = x.sin() + x.cos()
    return y, m.n


@P(args=x1, graphs=1, breaks=0)
def function_mode_exception_inside(x):
    try:
        with AddOneMode():
            y = torch.add(x, 1)
            raise ValueError("inside mode")
    except ValueError:
        y = x
    return y


@P(args=x1, graphs=None, breaks=None, why='torch.compile does not trace under a TorchDispatchMode')
def dispatch_mode_log(x):
    m = LogDispatch()
    with m:
        y = x * 2 + 1
    return y, m.ops


@P(args=x1, graphs=None, breaks=None, why='torch.compile does not trace under a TorchDispatchMode')
def dispatch_mode_with_break_inside(x):
    m = LogDispatch()
    with m:
        y = x * 2
        print("in dispatch mode")
        y = y + 1
    return y, len(m.ops)


@P(args=x1, graphs=None, breaks=None, why='torch.compile fails on this program')
def nested_modes_with_break(x):
    with AddOneMode():
        with CountMode() as c:
            y = torch.add(x, 1)
            print("nested")
            y = torch.add(y, 1)
    return y, c.n


@P(args=x1, graphs=None, breaks=None, why='torch.compile skips this frame (0 graphs); janus_frame may compile it')
def device_context_manager(x):
    with torch.device("cpu"):
        y = torch.ones(4)
    return x + y


def _is_compiling_in_callee_ref(x):
    return x + 1


@P(args=x1, eager_fn=_is_compiling_in_callee_ref)
def is_compiling_in_callee(x):
    def helper(t):
        return t + (1 if torch.compiler.is_compiling() else 0)
    return helper(x)


@P(args=x1, eager_fn=lambda x: x * 3)
def dynamo_is_compiling_variant(x):
    if torch._dynamo.is_compiling():
        return x * 3
    return x


@P(args=x1, eager_fn=lambda x: x * 5)
def utils_and_dynamo_flag_variants(x):
    a = 2 if torch._utils.is_compiling() else 0
    b = 3 if torch.compiler.is_dynamo_compiling() else 0
    return x * (a + b)


@P(args=x1)
def exporting_tracing_scripting_stay_false(x):
    import torch.fx._symbolic_trace as st
    flags = (torch.compiler.is_exporting(), torch.jit.is_tracing(), torch.jit.is_scripting(),
             st.is_fx_tracing(), torch.onnx.is_in_onnx_export())
    return x + sum(flags), flags


def _library_is_compiling():
    # the way libraries ask (transformers' is_torchdynamo_compiling)
    try:
        import torch as _t
        return _t.compiler.is_compiling()
    except Exception:  # noqa: BLE001
        return False


def _mask_ref(x, mask):
    return x * mask


@P(args=lambda k: (T(4), torch.ones(4)), eager_fn=_mask_ref)
def is_compiling_skips_data_dependent_check(x, mask):
    # the compiled path skips the data-dependent shortcut, as under torch.compile
    if not _library_is_compiling() and torch.all(mask == 1):
        return x
    return x * mask


class _FlagModule(torch.nn.Module):
    def forward(self, x):
        from torch.compiler import is_compiling as compiling
        return x.relu() if compiling() else x


def _flag_module_world():
    import types
    return types.SimpleNamespace(fn=_FlagModule())


P(name="is_compiling_in_module_forward", build=_flag_module_world, args=x1,
  eager_fn=lambda x: x.relu())


def _readonly_array(k):
    a = np.arange(3.0) + k
    a.flags.writeable = False  # not modelled: an opaque object
    return a


@P(args=lambda k: (T(3), _readonly_array(k)), graphs=None, breaks=None,
   why="a read-only ndarray is an opaque object; its builtin methods run natively")
def numpy_readonly_argument_builtin_method(x, a):
    y = x + 1
    return y, a.copy(), a.sum()


test_program = P.tests()

