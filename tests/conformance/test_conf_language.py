"""Conformance: the Python language (operators, control flow, functions,
comprehensions, unpacking, match, ...) around tensor code.

PYTEST_DONT_REWRITE: the programs' assert statements stay plain Python."""
from __future__ import annotations

import functools
import operator

import torch

from harness import Registry, T

P = Registry("language")
x1 = lambda k: (T(4),)  # noqa: E731
x2 = lambda k: (T(4), T(4))  # noqa: E731


# ---------------------------------------------------------------- arithmetic on Python scalars
@P(args=lambda k: (T(3), 3 + k))
def int_arith_scale(x, n):
    return x * (n * 2 + 1) - n // 2 + n % 3


@P(args=lambda k: (T(3), 1.5 + k))
def float_arith(x, s):
    return x * s / 2.0 - s ** 2


@P(args=x1)
def int_pow_and_neg(x):
    a = 7
    b = -a ** 2
    return x + b + abs(b) + (a << 2) - (a >> 1) + (a & 3) + (a | 8) + (a ^ 5) + ~a


@P(args=x1)
def bool_arith(x):
    flag = True
    return x * (flag + flag) + int(not flag)


@P(args=x1)
def complex_scalar(x):
    z = complex(1.0, 2.0) * (3 - 1j)
    return x * z.real + z.imag + abs(z)


@P(args=x1)
def divmod_and_round(x):
    q, r = divmod(17, 5)
    return x * q + r + round(2.675, 2) + round(7.5) + int(-3.7) + float(2)


@P(args=x1)
def float_floor_mod(x):
    return x + (-7.5 // 2) + (-7.5 % 2) + math_max(3, 9)


def math_max(a, b):
    return a if a > b else b


@P(args=lambda k: (T(3), k))
def aug_assign_scalars(x, k):
    n = 1
    n += k
    n *= 3
    n -= 1
    n //= 2
    n **= 2
    return x + n


@P(args=x1)
def aug_assign_tensor_from_zero(x):
    acc = 0
    for i in range(3):
        acc += x * i
    return acc


@P(args=x1)
def aug_assign_tensor_from_float(x):
    total = 0.0
    total += x.sum()
    total *= 2
    return total


@P(args=x2)
def tensor_operators(a, b):
    return (a + b, a - b, a * b, a / (b.abs() + 1), a @ b, -a, +a, a ** 2, abs(b))


@P(args=lambda k: (T(4, dtype=torch.int64), T(4, dtype=torch.int64)))
def int_tensor_operators(a, b):
    return a // (b.abs() + 1), a % 3, a & b, a | b, a ^ b, ~a, a << 1, a >> 1


@P(args=x1)
def reflected_operators(x):
    return 2 - x, 3 / (x.abs() + 1), 2 ** x, 1 + x, 5 * x


# ---------------------------------------------------------------- comparisons
@P(args=lambda k: (T(3), k))
def chained_comparison_int(x, k):
    if 0 <= k < 2:
        return x + 1
    return x - 1


@P(args=x2)
def tensor_comparisons(a, b):
    return a < b, a <= b, a == b, a != b, a > 0, a >= b, (a > 0) & (b < 0)


@P(args=lambda k: (T(3), [2, 1, 3][k % 3]))
def comparison_chain_mixed(x, n):
    ok = 1 < n <= 2 != 5
    return x * 2 if ok else x


@P(args=lambda k: (T(3), None if k == 1 else 2))
def is_none_branch(x, opt):
    if opt is None:
        return x
    return x * opt


@P(args=lambda k: (T(3), "relu" if k % 2 == 0 else "tanh"))
def string_equality_dispatch(x, act):
    if act == "relu":
        return torch.relu(x)
    elif act != "sigmoid":
        return torch.tanh(x)
    return torch.sigmoid(x)


@P(args=lambda k: (T(3), ["a", "b", "c"][k]))
def in_tuple_of_strings(x, mode):
    if mode in ("a", "c"):
        return x + 1
    return x - 1


@P(args=x1)
def is_same_object(x):
    y = x
    z = x.clone()
    return (y is x), (z is x), (z is not x), x + 1


@P(args=lambda k: (T(3), k))
def not_and_or(x, k):
    a = k and 5
    b = k or 7
    c = not k
    return x + a + b + c


# ---------------------------------------------------------------- strings
@P(args=lambda k: (T(3), k))
def fstring_key(x, k):
    name = f"layer_{k:02d}.{'w' if k else 'b'}"
    return x + len(name), name


@P(args=x1)
def fstring_of_shape(x):
    s = f"{x.shape[0]}x{x.dim()!r} {x.dtype}"
    return x * len(s), s


@P(args=x1)
def string_methods(x):
    s = "Hello, World"
    parts = s.lower().replace(",", "").split()
    return x + len(parts[0]), "-".join(parts).upper(), s.startswith("He"), s.find("W")


@P(args=x1)
def str_format_percent(x):
    msg = "%s has %d dims (%.2f)" % ("x", x.dim(), 1.5)
    return x + 1, "{}:{:>4}".format("a", 3), msg


# ---------------------------------------------------------------- slicing / indexing
@P(args=lambda k: (T(8), [0, 1, 2, 3, 4, 5]))
def list_slicing(x, lst):
    a = lst[1:4]
    b = lst[::-2]
    c = lst[-2:]
    return x[: len(a)] + sum(b) + c[0]


@P(args=lambda k: (T(6, 4),))
def tensor_slicing_views(x):
    return x[1:3], x[:, ::2], x[-1], x[..., 1], x[None, 0]


@P(args=lambda k: (T(6, 4),))
def slice_object(x):
    s = slice(1, None, 2)
    return x[s] * 2, x[s, s]


@P(args=lambda k: (T(5, 3),))
def tuple_index(x):
    idx = (slice(None), 0)
    return x[idx], x[(1, 2)]


@P(args=lambda k: (T(5, 3), torch.tensor([0, 2, 4])), graphs=(1, 2), breaks=None, why='boolean-mask indexing: torch.compile breaks (dynamic shape)')
def advanced_indexing(x, idx):
    return x[idx], x[idx, 1], x[x > 0]


# ---------------------------------------------------------------- unpacking
@P(args=lambda k: (T(6),))
def unpack_tuple(x):
    a, b = x.chunk(2)
    (c, d), e = (a, b), a * b
    return c + d + e


@P(args=lambda k: (T(4, 3),))
def star_unpack(x):
    first, *rest = x.unbind(0)
    *init, last = rest
    return first + last + sum(init)


@P(args=lambda k: ([T(2) for _ in range(3 + k)],))
def star_unpack_list_arg(ts):
    head, *tail = ts
    return head * len(tail) + tail[-1]


@P(args=lambda k: (T(3),))
def unpack_dict_items(x):
    cfg = {"a": 1, "b": 2}
    total = x
    for key, val in cfg.items():
        total = total + val * len(key)
    return total


@P(args=lambda k: (T(3),))
def swap_values(x):
    a, b = x, x * 2
    a, b = b, a
    return a - b


@P(args=lambda k: (T(3),))
def nested_star_in_call(x):
    shape = (3,)
    extra = [1]
    return x.reshape(*shape, *extra).squeeze(-1)


# ---------------------------------------------------------------- comprehensions and generators
@P(args=lambda k: (T(4),))
def list_comprehension(x):
    return [x * i for i in range(3)]


@P(args=lambda k: (T(4),))
def list_comprehension_if(x):
    return sum([x ** i for i in range(6) if i % 2 == 0])


@P(args=lambda k: (T(4),))
def nested_comprehension(x):
    return [[x[i] * j for j in range(2)] for i in range(3)]


@P(args=lambda k: (T(4),))
def dict_comprehension(x):
    return {f"p{i}": x + i for i in range(3)}


@P(args=lambda k: (T(4),))
def set_comprehension(x):
    s = {i % 3 for i in range(10)}
    return x * len(s), s


@P(args=lambda k: (T(4),))
def generator_expression_sum(x):
    return sum(x * i for i in range(4))


@P(args=lambda k: (T(4),))
def genexp_any_all(x):
    vals = [1, 2, 3]
    return x + any(v > 2 for v in vals) + all(v > 0 for v in vals)


def _gen(x, n):
    for i in range(n):
        yield x + i


@P(args=lambda k: (T(4),))
def generator_function(x):
    return list(_gen(x, 3))


def _gen_send():
    total = 0
    while True:
        v = yield total
        if v is None:
            return
        total += v


@P(args=lambda k: (T(2),))
def generator_send(x):
    g = _gen_send()
    next(g)
    g.send(2)
    r = g.send(3)
    return x * r


@P(args=lambda k: (T(2),))
def yield_from(x):
    def inner():
        yield 1
        yield 2

    def outer():
        yield 0
        yield from inner()
    return x * sum(outer())


@P(args=lambda k: (T(3), T(3)))
def zip_enumerate(a, b):
    out = []
    for i, (u, v) in enumerate(zip(a, b)):
        out.append(u * v + i)
    return torch.stack(out)


@P(args=lambda k: (T(4),))
def map_filter(x):
    vals = list(map(lambda v: v * 2, range(4)))
    evens = list(filter(lambda v: v % 4 == 0, vals))
    return x + sum(evens), vals


@P(args=lambda k: (T(4),))
def sorted_reversed_minmax(x):
    vals = [3, 1, 2]
    return x + sorted(vals)[0] + list(reversed(vals))[0] + max(vals) + min(vals, key=lambda v: -v)


@P(args=lambda k: (T(4),))
def iter_next_default(x):
    it = iter([1, 2])
    a = next(it)
    b = next(it)
    c = next(it, 10)
    return x + a + b + c


# ---------------------------------------------------------------- functions
@P(args=lambda k: (T(3),))
def lambda_inline(x):
    sq = lambda t: t * t  # noqa: E731
    return sq(x) + (lambda t, s=2: t * s)(x)


@P(args=lambda k: (T(3),))
def closure_read(x):
    scale = 3

    def inner(t):
        return t * scale
    return inner(x)


@P(args=lambda k: (T(3),))
def closure_nonlocal_counter(x):
    count = 0

    def bump(t):
        nonlocal count
        count += 1
        return t + count
    y = bump(x)
    y = bump(y)
    return y, count


def _make_adder(n):
    def add(t):
        return t + n
    return add


@P(args=lambda k: (T(3),))
def closure_factory(x):
    add2, add5 = _make_adder(2), _make_adder(5)
    return add2(x) * add5(x)


def _with_defaults(t, scale=2.0, *, shift=1, bias=None):
    out = t * scale + shift
    if bias is not None:
        out = out + bias
    return out


@P(args=lambda k: (T(3),))
def default_and_kwonly_args(x):
    return _with_defaults(x), _with_defaults(x, 3.0, shift=-1), _with_defaults(x, bias=x)


def _varargs(*ts, **kw):
    out = sum(ts)
    for v in kw.values():
        out = out * v
    return out


@P(args=lambda k: (T(3), T(3)))
def star_args_kwargs(a, b):
    args = (a, b)
    kwargs = {"s": 2, "t": 3}
    return _varargs(*args, **kwargs), _varargs(a, u=0.5)


@P(args=lambda k: ((T(3), T(3)), {"alpha": 2.0 + k}))
def called_with_kwargs(a, b, alpha=1.0):
    return a + alpha * b


@P(args=lambda k: ((T(3),), {"scale": k + 1, "extra": {"flag": True}}))
def kwargs_passthrough(x, **options):
    s = options.get("scale", 1)
    if options.get("extra", {}).get("flag"):
        return x * s
    return x


def _twice(fn):
    @functools.wraps(fn)
    def wrapper(*a, **kw):
        return fn(fn(*a, **kw), **kw)
    return wrapper


@_twice
def _add_one(t):
    return t + 1


@P(args=lambda k: (T(3),))
def decorated_callee(x):
    return _add_one(x), _add_one.__name__


def _count_calls(fn):
    def wrapper(*a):
        wrapper.calls += 1
        return fn(*a)
    wrapper.calls = 0
    return wrapper


def _decorated_world():
    import types

    @_count_calls
    def scaled(t):
        return t * 2

    def fn(x):
        return scaled(x) + scaled.calls
    w = types.SimpleNamespace(fn=fn, scaled=scaled)
    return w


P(name="decorator_with_state", build=_decorated_world, args=lambda k: (T(3),),
  graphs=2, breaks=None, why='function attribute mutation: torch.compile gets 2 graphs')


def _fact(n):
    return 1 if n <= 1 else n * _fact(n - 1)


@P(args=lambda k: (T(3),))
def recursion_int(x):
    return x * _fact(5)


def _tree_sum(node, x):
    if isinstance(node, list):
        return sum(_tree_sum(c, x) for c in node)
    return x * node


@P(args=lambda k: (T(3),))
def recursion_tree(x):
    return _tree_sum([1, [2, 3], [[4]]], x)


@P(args=lambda k: (T(3),))
def operator_module(x):
    return operator.add(x, 1), operator.mul(x, 2), operator.getitem([x, x * 3], 1), \
        functools.reduce(operator.add, [x, x, x])


@P(args=lambda k: (T(3),))
def partial_callee(x):
    scale = functools.partial(torch.mul, other=3)
    return scale(x)


# ---------------------------------------------------------------- loops
@P(args=lambda k: (T(3), 3 + k))
def for_range_loop(x, n):
    for i in range(n):
        x = x * 0.5 + i
    return x


@P(args=lambda k: (T(3),))
def while_loop_int(x):
    i = 0
    while i < 4:
        x = x + i
        i += 1
    return x


@P(args=lambda k: (T(3),))
def for_else(x):
    for i in range(5):
        if i == 10:
            break
    else:
        x = x + 100
    return x


@P(args=lambda k: (T(3),))
def for_break_continue(x):
    for i in range(10):
        if i % 2:
            continue
        if i > 6:
            break
        x = x + i
    return x


@P(args=lambda k: (T(3),))
def while_else_break(x):
    n = 0
    while n < 10:
        n += 3
        if n == 9:
            break
    else:
        return x
    return x * n


@P(args=lambda k: ([T(2) for _ in range(2 + k)],))
def loop_over_list_arg(ts):
    out = ts[0]
    for t in ts[1:]:
        out = out + t
    return out


@P(args=lambda k: ({"a": T(2), "b": T(2)},))
def loop_over_dict_arg(d):
    return {k: v * 2 for k, v in d.items()}


@P(args=lambda k: (T(5, 2),))
def loop_over_tensor_rows(x):
    acc = torch.zeros(2)
    for row in x:
        acc = acc + row
    return acc


@P(args=lambda k: (T(3),))
def nested_loops(x):
    for i in range(2):
        for j in range(3):
            x = x + i * j
    return x


# ---------------------------------------------------------------- match / walrus / assert
@P(args=lambda k: (T(3), ["add", "mul", "neg"][k]))
def match_literal(x, op):
    match op:
        case "add":
            return x + 1
        case "mul":
            return x * 2
        case _:
            return -x


@P(args=lambda k: (T(3), [(1, 2), [3], {"k": 4}][k]))
def match_structure(x, spec):
    match spec:
        case (a, b):
            return x * a + b
        case [a]:
            return x - a
        case {"k": v}:
            return x * v
    return x


@P(args=lambda k: (T(3), [1, 2.5, "s"][k]))
def match_class_pattern(x, v):
    match v:
        case int(n):
            return x + n
        case float(f):
            return x * f
        case str():
            return x
    return None


@P(args=lambda k: (T(4),))
def walrus_in_if(x):
    if (n := x.numel()) > 2:
        return x * n
    return x


@P(args=lambda k: (T(4),))
def walrus_in_comprehension(x):
    vals = [y for i in range(4) if (y := i * 2) > 2]
    return x + sum(vals)


@P(args=lambda k: (T(4),))
def assert_passes(x):
    assert x.dim() == 1, "expected 1-d"
    assert isinstance(x, torch.Tensor)
    return x + 1


@P(args=lambda k: (T(4) if k != 1 else T(2, 2),))
def assert_shape_fails_second_call(x):
    assert x.dim() == 1, f"expected 1-d, got {x.dim()}"
    return x + 1


@P(args=lambda k: (T(3),))
def ternary_and_conditional_expr(x):
    big = x.shape[0] > 2
    return x * 2 if big else x, (1 if not big else 2)


@P(args=lambda k: (T(3),))
def isinstance_checks(x):
    out = []
    for v in (1, 2.0, "s", x, [x], (x,), None):
        if isinstance(v, (int, float)):
            out.append(x + v)
        elif isinstance(v, torch.Tensor):
            out.append(v * 2)
        elif isinstance(v, (list, tuple)):
            out.append(v[0] - 1)
    return out


@P(args=lambda k: (T(3),))
def builtins_misc(x):
    vals = [3, -1, 2]
    return x + len(vals) + sum(vals) + abs(-4) + min(vals) + max(vals), \
        bool([]), int("12"), float("1.5"), str(3), tuple(vals), list(range(3)), \
        hasattr(x, "shape"), getattr(x, "ndim"), callable(len), type(vals) is list


@P(args=lambda k: (T(3),))
def global_constant_read(x):
    return x * GLOBAL_SCALE + len(GLOBAL_NAMES)


GLOBAL_SCALE = 2.5
GLOBAL_NAMES = ("a", "b")


@P(args=lambda k: (T(3),), globals=("GLOBAL_COUNTER",))
def global_statement_write(x):
    global GLOBAL_COUNTER
    GLOBAL_COUNTER += 1
    return x + GLOBAL_COUNTER


GLOBAL_COUNTER = 0


@P(args=lambda k: (T(3),))
def del_local(x):
    y = x * 2
    z = y + 1
    del y
    return z


@P(args=lambda k: (T(3),))
def int_float_bool_conversions(x):
    n = x.shape[0]
    return x * float(n) + int(2.9) + bool(n) + complex(n).real


@P(args=lambda k: (T(2, 3),))
def tensor_size_arith(x):
    b, c = x.shape
    return x.reshape(b * c) * (b + c), x.size(-1) // 2, x.numel() % 4


@P(args=lambda k: (T(3),))
def nested_function_default_from_enclosing(x):
    k = 4

    def f(t, k=k):
        return t * k
    k = 10
    return f(x) + k


@P(args=lambda k: (T(3),))
def keyword_only_and_positional_only(x):
    def g(a, /, b, *, c):
        return a * b + c
    return g(x, 2, c=3)


@P(args=lambda k: (T(3),))
def class_defined_inside(x):
    class Box:
        def __init__(self, v):
            self.v = v

        def doubled(self):
            return self.v * 2
    return Box(x).doubled()


@P(args=lambda k: (T(3),))
def hash_of_tuple_of_ints(x):
    key = hash((1, 2, 3)) == hash((1, 2, 3))
    return x + key


@P(args=lambda k: (T(3),))
def bytes_and_int_methods(x):
    n = (255).bit_length() + int.from_bytes(b"\x01\x00", "little")
    return x + n


@P(args=lambda k: (T(3), 2 + k))
def range_object_ops(x, n):
    r = range(1, 10, n)
    return x * len(r) + r[1] + (5 in r), list(r)


@P(args=lambda k: (T(3),))
def exec_order_of_evaluation(x):
    order = []

    def f(tag, v):
        order.append(tag)
        return v
    y = f("a", x) + f("b", x) * f("c", 2)
    return y, order


test_program = P.tests()
