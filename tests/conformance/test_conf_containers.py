"""Conformance: containers -- list/tuple/dict/set methods, live dict views,
collections, namedtuple, dataclasses, enum, containers passed in and mutated,
containers returned and mutated after the call.

PYTEST_DONT_REWRITE"""
from __future__ import annotations

import collections
import dataclasses
import enum
import types
from collections import Counter, OrderedDict, defaultdict, deque, namedtuple
from typing import NamedTuple

import torch

from harness import Registry, T

P = Registry("containers")
x1 = lambda k: (T(3),)  # noqa: E731


# ---------------------------------------------------------------- lists
@P(args=x1)
def list_methods(x):
    lst = [3, 1, 2]
    lst.append(5)
    lst.extend([7, 0])
    lst.insert(1, 9)
    lst.remove(2)
    p = lst.pop()
    lst.sort()
    lst.reverse()
    return x * p + lst.index(9) + lst.count(1), lst, lst.copy()


@P(args=x1)
def list_of_tensors_ops(x):
    ts = [x, x * 2]
    ts += [x * 3]
    ts = ts + [x - 1] * 2
    return torch.stack(ts).sum(0), len(ts)


@P(args=lambda k: (T(3), [1, 2, 3]))
def list_arg_appended(x, lst):
    lst.append(len(lst))
    return x * len(lst)


@P(args=lambda k: (T(3), [T(3), T(3)]))
def list_arg_setitem_tensor(x, lst):
    lst[0] = lst[0] + x
    lst[-1] = x
    return lst[0] * 2


@P(args=lambda k: (T(3), [0, 1, 2, 3, 4]))
def list_arg_slice_assign_and_del(x, lst):
    lst[1:3] = [10, 20, 30]
    del lst[0]
    del lst[-2:]
    return x + sum(lst)


@P(args=lambda k: (T(3), [5, 3, 9]))
def list_arg_sort_key_reverse(x, lst):
    lst.sort(key=lambda v: -v, reverse=True)
    return x * lst[0]


@P(args=lambda k: (T(3), [1, 2]))
def list_returned_is_input(x, lst):
    lst.append(3)
    return lst, x + 1


@P(args=lambda k: (T(3),))
def list_returned_new_with_inputs(x):
    out = [x, x + 1]
    out.clear()
    out.append(x * 2)
    return out


@P(args=lambda k: (T(3),))
def list_multiply_aliases(x):
    rows = [[0] * 2] * 3
    rows[0][0] = 5
    return x + rows[2][0], rows


@P(args=lambda k: (T(3),))
def list_comparisons(x):
    a, b = [1, 2, 3], [1, 2, 4]
    return x + (a < b) + (a == a[:]) + ([1] in [[1], [2]])


# ---------------------------------------------------------------- tuples
@P(args=x1)
def tuple_methods(x):
    t = (1, 2, 2, 3)
    return x * t.count(2) + t.index(3), t + (4,), t * 2, t[1:]


@P(args=lambda k: (T(2), (T(2), T(2))))
def tuple_arg(x, pair):
    a, b = pair
    return x + a * b, pair


# ---------------------------------------------------------------- dicts
@P(args=x1)
def dict_methods(x):
    d = {"a": 1, "b": 2}
    d["c"] = 3
    d.update({"d": 4}, e=5)
    v = d.pop("a")
    d.setdefault("f", 6)
    g = d.get("zz", 7)
    d2 = d.copy()
    del d2["b"]
    k, last = d.popitem()
    return x * v + g + len(d2) + last, d, d2, k


@P(args=lambda k: (T(3), {"w": T(3), "b": T(3)}))
def dict_arg_mutated(x, params):
    params["w"] = params["w"] * 2
    params["new"] = x
    params.pop("b")
    return x + params["w"]


@P(args=lambda k: (T(3), {"w": T(3)}))
def dict_arg_returned(x, d):
    d["y"] = x + 1
    return d


@P(args=lambda k: (T(3),))
def dict_merge_operators(x):
    a = {"p": 1, "q": 2}
    b = {"q": 3, "r": 4}
    c = a | b
    a |= {"s": 5}
    return x + c["q"] + a["s"], c, a


@P(args=lambda k: (T(3),))
def dict_insertion_order_after_delete(x):
    d = {"a": x, "b": x + 1, "c": x + 2}
    del d["a"]
    d["a"] = x * 5
    return list(d), list(d.values())


@P(args=lambda k: (T(3),))
def dict_fromkeys_and_in(x):
    d = dict.fromkeys(["a", "b"], 0)
    d["a"] += 2
    return x + d["a"] + ("b" in d) + ("z" not in d), d


@P(args=lambda k: (T(3),))
def dict_int_and_tuple_keys(x):
    d = {1: x, (2, 3): x * 2, None: x * 3}
    return d[1] + d[(2, 3)] + d[None]


@P(args=lambda k: (T(3),))
def dict_keyerror_message(x):
    d = {"a": x}
    return d["missing"]


@P(args=lambda k: (T(3),), graphs=0)
def dict_keyerror_caught(x):
    d = {"a": x}
    try:
        return d["b"]
    except KeyError as e:
        return str(e)


# ---------------------------------------------------------------- live dict views
@P(args=lambda k: (T(3),))
def dict_keys_live_view(x):
    d = {1: x}
    keys = d.keys()
    d[4] = x + 1
    return x + (4 in keys), len(keys), list(keys)


@P(args=lambda k: (T(3),))
def dict_values_live_view(x):
    d = {"a": x}
    vals = d.values()
    d["b"] = x * 2
    return sum(vals), len(vals)


@P(args=lambda k: (T(3),))
def dict_items_live_view(x):
    d = {"a": 1}
    items = d.items()
    d["b"] = 2
    d.pop("a")
    return x + len(items), list(items), ("b", 2) in items


@P(args=lambda k: (T(3),))
def dict_view_set_ops(x):
    a = {"a": 1, "b": 2}
    b = {"b": 3, "c": 4}
    common = a.keys() & b.keys()
    union = a.keys() | {"z"}
    return x + len(common) + len(union), sorted(common), sorted(union)


@P(args=lambda k: (T(3), {"a": 1, "b": 2}))
def dict_view_of_arg_after_mutation(x, d):
    ks = d.keys()
    d["c"] = 3
    return x * len(ks), list(ks)


@P(args=lambda k: (T(3),), graphs=0, breaks=0)
def dict_view_returned_then_used(x):
    d = {"a": x}
    return d, d.keys(), d.values(), d.items()


@P(args=x1)
def dict_views_after_update_pop_clear(x):
    d = {"a": x, "b": x * 2}
    ks, vs, its = d.keys(), d.values(), d.items()
    d.update(c=x * 3)
    n1 = (len(ks), len(vs), len(its))
    d.pop("a")
    del d["b"]
    n2 = (len(ks), "a" in ks, "c" in ks, list(ks))
    d.setdefault("z", x)
    out = [v + 1 for v in vs]
    d.clear()
    return n1, n2, out, len(its), bool(ks), list(vs)


@P(args=x1, why="torch.compile fails on this program (internal error)")
def dict_items_view_unpacked_after_mutation(x):
    d = {}
    it = d.items()
    for i in range(3):
        d[f"k{i}"] = x * i
    total = x * 0
    for k, v in it:
        total = total + v
    return total, [k for k, _ in reversed(it)], ("k1", 5) in it


@P(args=x1)
def dict_values_reversed_and_membership(x):
    y = x + 1
    d = {"p": x}
    vs = d.values()
    d["q"] = y
    return list(reversed(vs)), y in vs


@P(args=x1)
def dict_keys_view_set_algebra(x):
    d = {"a": 1, "b": 2, "c": 3}
    e = {"b": 0, "d": 0}
    ks = d.keys()
    d["e"] = 5
    r = (sorted(ks - {"a"}), sorted(ks ^ e.keys()), sorted({"x"} | ks),
         sorted(["a", "q"] & ks), ks.isdisjoint(["q"]), ks.isdisjoint(e.keys()))
    return x + len(r[0]), r


@P(args=x1, why="torch.compile breaks on d.values() == d.values() (identity)")
def dict_items_view_set_ops_and_equality(x):
    d = {"a": 1, "b": 2}
    it = d.items()
    d["c"] = 3
    return (x * len(it & {("a", 1), ("b", 5)}), sorted(it - {("c", 3)}),
            d.keys() == {"a", "b", "c"}, d.keys() != {"a"}, d.values() == d.values(),
            it == {("a", 1), ("b", 2), ("c", 3)}, d.keys() <= {"a", "b", "c", "z"})


@P(args=lambda k: (T(3), {"a": 1, "b": 2}))
def dict_view_of_arg_after_pop(x, d):
    vs = d.values()
    d.pop("a")
    d["n"] = 10
    return x * sum(vs), list(d.keys())


@P(args=x1)
def dict_view_of_ordered_dict(x):
    od = OrderedDict(a=x)
    ks = od.keys()
    od["b"] = x * 2
    od.pop("a")
    return list(ks), sum(od.values()), type(ks).__name__


@P(args=x1)
def dict_view_in_callee_of_kwargs(x):
    def g(**kw):
        v = kw.values()
        kw["extra"] = x * 10
        return sum(v), len(kw.keys())
    return g(a=x, b=x + 1)


@P(args=lambda k: ({"a": T(3)},), graphs=0, breaks=0)
def dict_view_of_argument_returned(d):
    return d.keys(), d.items()


@P(args=x1, graphs=2, breaks=1)
def dict_view_across_break(x):
    d = {"a": x * 2}
    ks = d.keys()
    print("break")
    d["b"] = x
    return x * len(ks), list(ks)


@P(args=x1, graphs=(1, 2), breaks=1, why="torch.compile: 1 graph")
def dict_and_its_view_across_break(x):
    d = {"a": x}
    vs = d.values()
    y = x * 2
    print("break")
    d["b"] = y
    return sum(vs), len(vs)


@P(args=lambda k: (T(3), {"a": 1, "b": k}), graphs=2, breaks=1,
   why="torch.compile also breaks on sorted(dict_items) (2 breaks)")
def argument_dict_view_across_break(x, d):
    ks = d.items()
    y = x + 1
    print("break")
    d["z"] = 3
    return y * len(ks), sorted(ks)


# ---------------------------------------------------------------- sets
@P(args=x1)
def set_methods(x):
    s = {1, 2, 3}
    s.add(4)
    s.discard(1)
    s.update({7, 8})
    s2 = s | {9}
    s3 = s & {2, 3, 99}
    s4 = s - {2}
    s5 = s ^ {3, 100}
    return x * len(s) + len(s2) + len(s3) + len(s4) + len(s5) + (7 in s), s, s3


@P(args=x1)
def frozenset_ops(x):
    f = frozenset(["a", "b"])
    g = f | {"c"}
    return x + len(g) + ("a" in f) + f.issubset(g), g


@P(args=lambda k: (T(3), {1, 2}))
def set_arg_mutated(x, s):
    s.add(10 + len(s))
    s.discard(1)
    return x + len(s)


# ---------------------------------------------------------------- collections
@P(args=x1)
def ordered_dict_ops(x):
    od = OrderedDict()
    od["b"] = x
    od["a"] = x * 2
    od.move_to_end("b")
    first = next(iter(od))
    od.popitem(last=False)
    return od, first


@P(args=lambda k: (T(3),))
def defaultdict_list(x):
    groups = defaultdict(list)
    for i in range(5):
        groups[i % 2].append(x * i)
    return {k: torch.stack(v).sum(0) for k, v in groups.items()}, dict(groups).keys() == {0, 1}


@P(args=lambda k: (T(3),))
def defaultdict_int_counts(x):
    counts = defaultdict(int)
    for w in "abracadabra":
        counts[w] += 1
    return x * counts["a"], counts


@P(args=lambda k: (T(3),))
def defaultdict_missing_read(x):
    d = defaultdict(lambda: 5)
    v = d["nothing"]
    return x + v, len(d)


@P(args=lambda k: (T(3),))
def defaultdict_tuple_accumulates(x):
    # transformers collects per-layer outputs this way
    d = defaultdict(tuple)
    for i in range(3):
        d["hidden"] += (x * i,)
    return d["hidden"], d["attn"], sorted(d), d.get("other"), "other" in d


@P(args=lambda k: (T(3),))
def defaultdict_returned_keeps_its_factory(x):
    d = defaultdict(list, {"a": [x]}, b=[x + 1])
    d["c"].append(x * 2)
    return d, d.default_factory is list


@P(args=lambda k: (T(3),))
def defaultdict_factory_changed(x):
    d = defaultdict(int)
    d["a"] += 1
    d.default_factory = _ten
    e = d.copy()
    return x * d["a"] + d["b"], e, type(e) is defaultdict


def _ten():
    return 10


@P(args=lambda k: (T(3),))
def defaultdict_without_factory_raises(x):
    d = defaultdict(None, a=1)
    return x * d["a"] + d["b"]


@P(args=lambda k: (T(3),))
def defaultdict_non_callable_factory_raises(x):
    return defaultdict(x.shape[0])


@P(args=lambda k: (T(3),), graphs=None, breaks=None, why='torch.compile skips this frame (0 graphs); janus_frame may compile it')
def counter_ops(x):
    c = Counter("mississippi")
    top = c.most_common(1)[0]
    c.update("ss")
    return x * c["s"] + top[1], c, sorted(c.elements())[:3]


@P(args=lambda k: (T(3),), graphs=1, breaks=1)
def deque_ops(x):
    dq = deque([x, x + 1], maxlen=3)
    dq.append(x + 2)
    dq.append(x + 3)
    dq.appendleft(x - 1)
    dq.rotate(1)
    return list(dq), dq.popleft(), len(dq)


@P(args=lambda k: (T(3), deque([1, 2])))
def deque_arg_mutated(x, dq):
    dq.append(3)
    dq.popleft()
    return x + sum(dq)


@P(args=lambda k: (T(3),))
def chainmap_lookup(x):
    cm = collections.ChainMap({"a": 1}, {"a": 2, "b": 3})
    return x + cm["a"] + cm["b"]


# ---------------------------------------------------------------- namedtuple / NamedTuple
Point = namedtuple("Point", ["x", "y"])


class Pair(NamedTuple):
    left: torch.Tensor
    right: torch.Tensor
    scale: float = 1.0


@P(args=x1)
def namedtuple_build_and_read(x):
    p = Point(x, x * 2)
    return p.x + p.y, p[0], p


@P(args=lambda k: (Point(T(3), T(3)),))
def namedtuple_arg(p):
    return p.x * p.y, p._replace(y=p.x), p._asdict()


@P(args=x1)
def typing_namedtuple_defaults(x):
    pr = Pair(x, x + 1)
    a, b, s = pr
    return (a + b) * s, pr, pr._fields


@P(args=x1)
def namedtuple_unpack_and_len(x):
    p = Point(x, 3)
    u, v = p
    return u * v, len(p), isinstance(p, tuple)


# ---------------------------------------------------------------- dataclasses
@dataclasses.dataclass
class Cfg:
    hidden: int = 4
    scale: float = 2.0
    tags: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class FrozenCfg:
    n: int
    w: float = 0.5


@dataclasses.dataclass
class WithPost:
    t: torch.Tensor
    doubled: torch.Tensor = None

    def __post_init__(self):
        self.doubled = self.t * 2


@P(args=lambda k: (T(3), Cfg(scale=1.0 + k)))
def dataclass_arg_read(x, cfg):
    return x * cfg.scale + cfg.hidden


@P(args=lambda k: (T(3), Cfg()))
def dataclass_arg_mutated(x, cfg):
    cfg.hidden += 1
    cfg.tags.append("seen")
    return x * cfg.hidden


@P(args=x1)
def dataclass_built_inside(x):
    c = Cfg(hidden=3)
    c.scale = 0.5
    return x * c.scale + c.hidden, c


@P(args=lambda k: (T(3), FrozenCfg(2 + k)))
def frozen_dataclass_arg(x, cfg):
    return x * cfg.n + cfg.w


@P(args=x1)
def frozen_dataclass_setattr_raises(x):
    c = FrozenCfg(1)
    c.n = 5
    return x


@P(args=x1)
def dataclass_post_init(x):
    w = WithPost(x)
    return w.doubled + 1, w


@P(args=x1)
def dataclass_asdict_replace(x):
    c = Cfg(hidden=2)
    d = dataclasses.asdict(c)
    c2 = dataclasses.replace(c, hidden=5)
    return x * d["hidden"] + c2.hidden, d


@P(args=x1)
def dataclass_fields_and_eq(x):
    names = [f.name for f in dataclasses.fields(Cfg)]
    return x + len(names) + (Cfg() == Cfg()), names


# ---------------------------------------------------------------- enum
class Mode(enum.Enum):
    TRAIN = "train"
    EVAL = "eval"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 3


@P(args=lambda k: (T(3), [Mode.TRAIN, Mode.EVAL, Mode.TRAIN][k]))
def enum_arg_branch(x, mode):
    if mode is Mode.TRAIN:
        return x * 2
    return x


@P(args=x1)
def enum_value_name(x):
    m = Mode("eval")
    return x * Level.HIGH + len(m.value), m.name, Level(1)


@P(args=x1)
def enum_iteration(x):
    return x + len(list(Mode)) + sum(l.value for l in Level)


# ---------------------------------------------------------------- nested / mixed
@P(args=lambda k: ({"layers": [{"w": T(2, 2), "b": T(2)} for _ in range(2)]}, T(2)))
def nested_params(params, x):
    for layer in params["layers"]:
        x = layer["w"] @ x + layer["b"]
    return x


@P(args=lambda k: ({"a": [1, 2], "b": {"c": (3, 4)}}, T(2)))
def nested_config_read_and_write(cfg, x):
    cfg["a"].append(len(cfg["b"]["c"]))
    cfg["b"]["d"] = x
    return x * sum(cfg["a"])


@P(args=lambda k: (T(3),), graphs=0, breaks=0)
def returned_container_shared_inner(x):
    inner = [x]
    return {"a": inner, "b": inner}


@P(args=lambda k: (T(3), [T(3)]))
def returned_list_contains_input_list(x, lst):
    return [lst, lst[0] + x]


@P(args=lambda k: ([1, 2, 3][: 2 + k % 2], T(3)), graphs=0, breaks=0)
def len_of_list_arg_in_if(lst, x):
    if len(lst) > 2:
        return x * 3
    return x


@P(args=lambda k: (T(3),))
def sorted_dict_by_value(x):
    d = {"a": 3, "b": 1, "c": 2}
    order = sorted(d, key=d.get)
    return x + d[order[0]], order


@P(args=lambda k: (T(3),))
def zip_dict_and_unzip(x):
    names = ["a", "b"]
    vals = [x, x * 2]
    d = dict(zip(names, vals))
    ks, vs = zip(*d.items())
    return ks, vs


@P(args=lambda k: (T(3),))
def mappingproxy_read(x):
    mp = types.MappingProxyType({"a": 2})
    return x * mp["a"], len(mp)


@P(args=lambda k: (T(3), [T(3), T(3)]))
def list_of_tensors_mutated_inplace(x, ts):
    for t in ts:
        t.add_(x)
    return ts


@P(args=lambda k: (T(3),), graphs=0, breaks=0)
def tuple_of_lists_mutation(x):
    t = ([], [])
    t[0].append(x)
    t[1].extend([x, x])
    return t


test_program = P.tests()
