"""Conformance: user objects -- attributes, properties, __slots__, class
attributes, classmethod/staticmethod, inheritance and super(), __getattr__ /
__getattribute__, __call__, methods replaced after compiling, functools,
inspect.

PYTEST_DONT_REWRITE"""
from __future__ import annotations

import functools
import inspect
import types

import torch

from harness import Registry, T

P = Registry("objects")


class Scaler:
    factor = 2.0

    def __init__(self, bias=1.0):
        self.bias = bias
        self.calls = 0

    def apply(self, x):
        self.calls += 1
        return x * self.factor + self.bias

    @property
    def double_bias(self):
        return self.bias * 2

    @classmethod
    def make(cls, b):
        return cls(b)

    @staticmethod
    def helper(x):
        return x - 1


class Slotted:
    __slots__ = ("w", "n")

    def __init__(self, w, n):
        self.w = w
        self.n = n


class Base:
    def f(self, x):
        return x + 1

    def g(self, x):
        return self.f(x) * 2


class Child(Base):
    def f(self, x):
        return super().f(x) * 10


class GrandChild(Child):
    def g(self, x):
        return super().g(x) - 1


class Dyn:
    def __init__(self):
        self.store = {"alpha": 3.0}

    def __getattr__(self, name):
        if name in self.__dict__.get("store", {}):
            return self.store[name]
        raise AttributeError(name)


class Traced:
    def __init__(self, v):
        self.v = v

    def __getattribute__(self, name):
        if name == "v":
            return object.__getattribute__(self, "v") * 2
        return object.__getattribute__(self, name)


class Affine:
    def __init__(self, w, b):
        self.w, self.b = w, b

    def __call__(self, x):
        return x * self.w + self.b


# ---------------------------------------------------------------- attributes
@P(args=lambda k: (T(3), Scaler(bias=float(k))))
def method_call_on_arg(x, s):
    return s.apply(x)


@P(args=lambda k: (T(3), Scaler()))
def attribute_write_on_arg(x, s):
    s.bias = s.bias + 5
    s.last = x
    return s.apply(x)


@P(args=lambda k: (T(3), Scaler(2.0)))
def property_read(x, s):
    return x + s.double_bias


@P(args=lambda k: (T(3),))
def classmethod_and_staticmethod(x):
    s = Scaler.make(0.5)
    return s.apply(Scaler.helper(x)), s.helper(x)


@P(args=lambda k: (T(3), Slotted(T(3), 2)))
def slots_object(x, obj):
    obj.n += 1
    return x * obj.w * obj.n


@P(args=lambda k: (T(3),))
def slots_missing_attr_raises(x):
    s = Slotted.__new__(Slotted)
    return s.w + x


@P(args=lambda k: (T(3),))
def class_attribute_read(x):
    return x * Scaler.factor


@P(args=lambda k: (T(3), Scaler()))
def instance_attribute_shadows_class(x, s):
    s.factor = 10.0
    return s.apply(x)


@P(args=lambda k: (T(3), GrandChild()))
def inheritance_super_chain(x, obj):
    return obj.g(x), obj.f(x)


@P(args=lambda k: (T(3),))
def super_in_init(x):
    class A:
        def __init__(self, v):
            self.v = v

    class B(A):
        def __init__(self, v):
            super().__init__(v * 2)
            self.w = v
    b = B(x)
    return b.v + b.w


@P(args=lambda k: (T(3), Dyn()))
def getattr_fallback(x, d):
    return x * d.alpha


@P(args=lambda k: (T(3), Dyn()))
def getattr_fallback_missing_default(x, d):
    return x + getattr(d, "beta", 4.0) + hasattr(d, "gamma")


@P(args=lambda k: (T(3), Traced(T(3))))
def getattribute_override(x, t):
    return x + t.v


@P(args=lambda k: (T(3), Affine(T(3), 1.0)))
def callable_object(x, f):
    return f(x) + f(f(x))


@P(args=lambda k: (T(3),), graphs=1, breaks=None, why='torch.compile breaks on SimpleNamespace methods')
def setattr_getattr_delattr_builtins(x):
    o = types.SimpleNamespace()
    setattr(o, "w", x * 2)
    y = getattr(o, "w") + 1
    delattr(o, "w")
    return y, hasattr(o, "w"), o


@P(args=lambda k: (T(3), Scaler()))
def vars_and_dict(x, s):
    d = vars(s)
    return x + d["bias"], sorted(s.__dict__)


@P(args=lambda k: (T(3), Child()))
def isinstance_issubclass_type(x, obj):
    return x + isinstance(obj, Base) + issubclass(type(obj), Base) + (type(obj) is Child), \
        type(obj).__name__, Child.__mro__[1].__name__


@P(args=lambda k: (T(3),))
def bound_method_stored(x):
    s = Scaler(3.0)
    m = s.apply
    return m(x), m.__self__ is s, s.calls


@P(args=lambda k: (T(3),))
def method_via_class_with_self(x):
    s = Scaler(1.0)
    return Scaler.apply(s, x)


@P(args=lambda k: (T(3), [Base(), Child(), GrandChild()][k]))
def polymorphic_arg_changes_type(x, obj):
    return obj.g(x)


# ---------------------------------------------------------------- methods and classes patched after compiling
class Patchable:
    def step(self, x):
        return x + 1


def _patch_step(k, w):
    if k == 1:
        Patchable.step = lambda self, x: x * 100
    elif k == 0:
        Patchable.step = _orig_step


_orig_step = Patchable.step


@P(args=lambda k: (T(3), Patchable()), between=_patch_step, name="class_method_replaced")
def _class_method_replaced(x, obj):
    return obj.step(x)


class Patchable2:
    scale = 2.0

    def run(self, x):
        return x * self.scale


def _patch_scale(k, w):
    Patchable2.scale = [2.0, 7.0, 7.0][k]


@P(args=lambda k: (T(3), Patchable2()), between=_patch_scale)
def class_attribute_changed_between_calls(x, obj):
    return obj.run(x)


def _world_instance_method():
    class Op:
        def go(self, x):
            return x - 1
    op = Op()

    def fn(x):
        return op.go(x)
    return types.SimpleNamespace(fn=fn, op=op)


def _patch_instance(k, w):
    if k == 1:
        w.op.go = lambda x: x * 3


P(name="instance_method_replaced", build=_world_instance_method, between=_patch_instance,
  args=lambda k: (T(3),))


def _world_base_method():
    class A:
        def h(self, x):
            return x + 2

    class B(A):
        pass
    b = B()

    def fn(x):
        return b.h(x)
    return types.SimpleNamespace(fn=fn, A=A, B=B, obj=b)


def _patch_subclass(k, w):
    if k == 1:
        w.B.h = lambda self, x: x * 5  # now shadows A.h through the MRO


P(name="method_added_on_subclass_shadows_base", build=_world_base_method,
  between=_patch_subclass, args=lambda k: (T(3),))


def _patch_object_class(k, w):
    if k == 1:
        class Other:
            def h(self, x):
                return x - 100
        w.obj.__class__ = Other


P(name="instance_class_reassigned", build=_world_base_method, between=_patch_object_class,
  args=lambda k: (T(3),))


def _world_property():
    class Holder:
        def __init__(self):
            self._v = 1.0

        @property
        def v(self):
            return self._v
    h = Holder()

    def fn(x):
        return x * h.v
    return types.SimpleNamespace(fn=fn, cls=Holder, h=h)


def _patch_property(k, w):
    if k == 1:
        w.cls.v = property(lambda self: 42.0)


P(name="property_replaced_on_class", build=_world_property, between=_patch_property,
  args=lambda k: (T(3),))


def _world_call_patched():
    class Fn:
        def __call__(self, x):
            return x + 1
    f = Fn()

    def fn(x):
        return f(x)
    return types.SimpleNamespace(fn=fn, cls=Fn)


def _patch_call(k, w):
    if k >= 1:
        w.cls.__call__ = lambda self, x: x * 9


P(name="dunder_call_replaced", build=_world_call_patched, between=_patch_call,
  args=lambda k: (T(3),))


# ---------------------------------------------------------------- functools / inspect
@P(args=lambda k: (T(3),))
def partial_of_user_function(x):
    def affine(t, w, b=0.0):
        return t * w + b
    p = functools.partial(affine, w=3.0)
    return p(x), p(x, b=1.0), p.keywords


@P(args=lambda k: (T(3), functools.partial(torch.add, alpha=2)))
def partial_as_argument(x, p):
    return p(x, x)


@P(args=lambda k: (T(3),))
def partial_keywords_store_changes_later_calls(x):
    def affine(t, w, b=0.0):
        return t * w + b
    p = functools.partial(affine, w=3.0)
    before = p(x)
    p.keywords["b"] = 2.0
    return before, p(x), dict(p.keywords)


@P(args=lambda k: (T(3), 2.0 + k))
def partial_of_partial_flattens(x, w):
    def affine(t, w, b=0.0):
        return t * w + b
    p = functools.partial(functools.partial(affine, x), w=w)
    return p(b=1.0), p.func is affine, len(p.args), sorted(p.keywords), callable(p)


@P(args=lambda k: (T(3), functools.partial(torch.add, alpha=2)))
def partial_of_partial_argument(x, p):
    q = functools.partial(p, other=x)
    return q(x * 2), q.func is torch.add, dict(q.keywords)


@P(args=lambda k: (T(3),))
def partial_keywords_escape_as_the_same_dict(x):
    p = functools.partial(torch.mul, other=3)
    kw = p.keywords
    return p(x), kw, p.keywords is kw


@P(args=lambda k: (T(3),))
def partial_of_a_non_callable_raises(x):
    return functools.partial(x.shape[0], 1)


@P(args=lambda k: (T(3),))
def partial_with_non_string_keyword_raises(x):
    p = functools.partial(torch.mul, x)
    p.keywords[1] = 2
    return p(other=3)


@P(args=lambda k: (T(3),))
def wraps_preserves_name(x):
    def deco(fn):
        @functools.wraps(fn)
        def inner(*a):
            return fn(*a) + 1
        return inner

    @deco
    def base(t):
        """doc"""
        return t * 2
    return base(x), base.__name__, base.__doc__, base.__wrapped__(x)


@P(args=lambda k: (T(3),))
def lru_cache_function(x):
    return x * _cached_sq(4)


@functools.lru_cache(maxsize=None)
def _cached_sq(n):
    return n * n


@P(args=lambda k: (T(3),), graphs=None, breaks=None, why='torch.compile skips this frame (0 graphs); janus_frame may compile it')
def inspect_signature_params(x):
    def g(a, b=2, *, c=3):
        return a
    sig = inspect.signature(g)
    names = list(sig.parameters)
    return x + len(names) + sig.parameters["b"].default, names


@P(args=lambda k: (T(3),), graphs=None, breaks=None, why='torch.compile skips this frame (0 graphs); janus_frame may compile it')
def inspect_signature_bind(x):
    def g(a, b=2, *, c=3):
        return a
    ba = inspect.signature(g).bind(x, c=5)
    ba.apply_defaults()
    return ba.arguments["a"] * ba.arguments["c"] + ba.arguments["b"]


@P(args=lambda k: (T(3),))
def signature_parameter_count(x):
    # transformers' apply_chunking_to_forward counts the chunk function's parameters
    def fwd(t, scale=2.0, *rest, key: int = 1, **kw):
        return t * scale
    sig = inspect.signature(fwd)
    params = sig.parameters
    return fwd(x) * len(params), list(params), [p.kind for p in params.values()], \
        params["scale"].default, "key" in params, str(sig)


class _Gated(torch.nn.Module):
    def forward(self, t, mask=None, *, scale: float = 3.0):
        return t * scale if mask is None else t * mask


@P(args=lambda k: (T(3), _Gated()))
def signature_of_bound_method(x, m):
    params = inspect.signature(m.forward).parameters
    takes_mask = "mask" in set(params.keys())
    return m(x, mask=x) if takes_mask else m(x), list(params), params["scale"].annotation


@P(args=lambda k: (T(3),))
def signature_of_a_partial_made_inside(x):
    # functools.partial of a chunk function, then its parameters counted
    # (transformers' apply_chunking_to_forward)
    def fwd(t, scale=2.0, *, key: int = 1):
        return t * scale * key
    p = functools.partial(fwd, key=3)
    params = inspect.signature(p).parameters
    return p(x) * len(params), list(params), params["key"].default, str(inspect.signature(
        functools.partial(p, x)))


def _signature_world():
    def g(t, b=1.0):
        return t

    def fn(x):
        return x + inspect.signature(g).parameters["b"].default
    return types.SimpleNamespace(fn=fn, g=g)


def _change_defaults(k, w):
    w.g.__defaults__ = (float(k),)


P(name="signature_follows_changed_defaults", build=_signature_world, between=_change_defaults,
  args=lambda k: (T(3),))


@P(args=lambda k: (T(3),))
def signature_of_a_non_callable_raises(x):
    return inspect.signature(x.shape[0])


@P(args=lambda k: (T(3),), graphs=None, breaks=None, why='torch.compile skips this frame (0 graphs); janus_frame may compile it')
def cached_property_on_object(x):
    class C:
        def __init__(self, t):
            self.t = t

        @functools.cached_property
        def sq(self):
            return self.t * self.t
    c = C(x)
    return c.sq + c.sq


@P(args=lambda k: (T(3),))
def dunder_methods_user_class(x):
    class V:
        def __init__(self, t):
            self.t = t

        def __add__(self, o):
            return V(self.t + o.t)

        def __mul__(self, s):
            return V(self.t * s)

        def __len__(self):
            return 3

        def __getitem__(self, i):
            return self.t[i]

        def __eq__(self, o):
            return isinstance(o, V)
    v = V(x) + V(x) * 2
    return v.t, len(v), v[0], v == V(x)


@P(args=lambda k: (T(3),))
def iter_protocol_user_class(x):
    class Range3:
        def __iter__(self):
            return iter([1, 2, 3])
    return sum(x * i for i in Range3())


@P(args=lambda k: (T(3),))
def contains_and_bool_user_class(x):
    class Bag:
        def __contains__(self, v):
            return v == 2

        def __bool__(self):
            return False
    b = Bag()
    return x + (2 in b) + (3 in b) + bool(b) + (1 if b else 10)


@P(args=lambda k: (T(3),), graphs=(1, 2), breaks=None, why='torch.compile breaks on id(object())')
def object_identity_and_id(x):
    a = object()
    b = a
    return x + (a is b) + (id(a) == id(b)) + (id(a) == id(object()))


@P(args=lambda k: (T(3),))
def type_call_makes_instance(x):
    cls = Scaler
    s = cls(2.0)
    return s.apply(x), type(s) is Scaler


@P(args=lambda k: (T(3),))
def dynamic_class_via_type(x):
    K = type("K", (object,), {"w": 3.0, "go": lambda self, t: t * self.w})
    return K().go(x)


@P(args=lambda k: (T(3),))
def abstract_base_class(x):
    import abc

    class Base_(abc.ABC):
        @abc.abstractmethod
        def f(self, t):
            ...

    class Impl(Base_):
        def f(self, t):
            return t + 3
    return Impl().f(x)


@P(args=lambda k: (T(3), Scaler(1.0)))
def counter_on_self_across_calls(x, s):
    s.calls += 1
    return x * s.calls


test_program = P.tests()
