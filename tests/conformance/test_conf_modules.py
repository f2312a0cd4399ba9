"""Conformance: nn.Module programs -- hooks added or removed after the first
call, buffers, train()/eval() switched between calls, parameters replaced,
modules built inside the function, module containers.

PYTEST_DONT_REWRITE"""
from __future__ import annotations

import types

import torch
from torch import nn

from harness import Registry, T

P = Registry("modules")


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 8)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(8, 2)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class WithBuffer(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("running", torch.zeros(4))
        self.register_buffer("steps", torch.tensor(0))
        self.lin = nn.Linear(4, 4)

    def forward(self, x):
        self.running.mul_(0.9).add_(x.mean(0) * 0.1)
        self.steps += 1
        return self.lin(x) - self.running


class Counting(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.lin(x) * self.calls


class Stack(nn.Module):
    def __init__(self, n=3):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(4, 4) for _ in range(n)])
        self.n_active = n

    def forward(self, x):
        for layer in self.layers[: self.n_active]:
            x = torch.tanh(layer(x))
        return x


def world_of(make, **attrs):
    def build():
        torch.manual_seed(0)
        m = make()
        w = types.SimpleNamespace(fn=m, m=m, **{k: v() for k, v in attrs.items()})
        return w
    return build


xin = lambda k: (T(2, 4),)  # noqa: E731


P(name="mlp_forward", build=world_of(MLP), args=xin)
P(name="buffers_updated_in_forward", build=world_of(WithBuffer), args=xin)
P(name="counter_attribute_on_self", build=world_of(Counting), args=xin)
P(name="module_list_slice", build=world_of(Stack), args=xin)


def _set_active(k, w):
    w.m.n_active = [3, 1, 2][k]


P(name="module_list_slice_length_changes", build=world_of(Stack), args=xin, between=_set_active)


# ---------------------------------------------------------------- hooks added / removed between calls
def _add_forward_hook_on_sub(k, w):
    if k == 1:
        w.h = w.m.fc1.register_forward_hook(lambda mod, inp, out: out * 0 + 1)


P(name="forward_hook_on_submodule_after_first_call", build=world_of(MLP), args=xin,
  between=_add_forward_hook_on_sub)


def _add_forward_hook_on_root(k, w):
    if k == 1:
        w.h = w.m.register_forward_hook(lambda mod, inp, out: out + 100)


P(name="forward_hook_on_root_after_first_call", build=world_of(MLP), args=xin,
  between=_add_forward_hook_on_root)


def _add_pre_hook(k, w):
    if k == 1:
        w.h = w.m.fc2.register_forward_pre_hook(lambda mod, inp: (inp[0] * 0,))


P(name="forward_pre_hook_after_first_call", build=world_of(MLP), args=xin,
  between=_add_pre_hook)


def _remove_hook(k, w):
    if k == 0:
        w.h = w.m.fc1.register_forward_hook(lambda mod, inp, out: out * 2)
    if k == 1:
        w.h.remove()


P(name="forward_hook_removed_after_first_call", build=world_of(MLP), args=xin,
  between=_remove_hook)


def _hook_with_kwargs(k, w):
    if k == 1:
        w.m.fc2.register_forward_hook(lambda mod, args, kwargs, out: out - 3, with_kwargs=True)


P(name="forward_hook_with_kwargs_after_first_call", build=world_of(MLP), args=xin,
  between=_hook_with_kwargs)


def _global_hook(k, w):
    if k == 1:
        w.h = nn.modules.module.register_module_forward_hook(lambda mod, inp, out: out)
    if k == 2:
        w.h.remove()


P(name="global_module_forward_hook_between_calls", build=world_of(MLP), args=xin,
  between=_global_hook)


def _hook_records(k, w):
    if k == 0:
        w.m.fc1.register_forward_hook(lambda mod, inp, out: w.log.append(tuple(out.shape)))


P(name="forward_hook_with_side_effect", build=world_of(MLP, log=list), args=xin,
  between=_hook_records)


def _backward_hook(k, w):
    if k == 1:
        w.m.fc1.weight.register_hook(lambda g: g * 0)


def _train_step_world():
    torch.manual_seed(0)
    m = MLP()

    def fn(x):
        loss = m(x).pow(2).sum()
        loss.backward()
        return loss, m.fc1.weight.grad.clone()
    return types.SimpleNamespace(fn=fn, m=m)


# torch.compile: 2 graphs, a break at backward(); janus_frame traces the
# backward into the graph (whole_step.py) until the hook appears
P(name="tensor_hook_on_param_after_first_call", build=_train_step_world, args=xin,
  between=_backward_hook,
  graphs=(1, 2), breaks=None)


# ---------------------------------------------------------------- train / eval, parameters replaced
class DropBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm1d(4)
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        return self.drop(self.bn(x))


def _toggle_train(k, w):
    w.m.train(k != 1)


P(name="train_eval_switched_between_calls", build=world_of(DropBN), args=lambda k: (T(5, 4),),
  between=_toggle_train)


class TrainingBranch(nn.Module):
    def forward(self, x):
        if self.training:
            return x * 2
        return x - 1


def _eval_second(k, w):
    w.m.train(k == 0)


P(name="training_flag_branch", build=world_of(TrainingBranch), args=xin, between=_eval_second)


def _replace_param(k, w):
    if k == 1:
        w.m.fc1.weight = nn.Parameter(torch.ones(8, 4))


P(name="parameter_replaced_between_calls", build=world_of(MLP), args=xin, between=_replace_param)


def _param_data_inplace(k, w):
    if k == 1:
        with torch.no_grad():
            w.m.fc2.bias.fill_(5.0)


P(name="parameter_updated_in_place_between_calls", build=world_of(MLP), args=xin,
  between=_param_data_inplace)


def _swap_submodule(k, w):
    if k == 1:
        w.m.act = nn.Sigmoid()


P(name="submodule_replaced_between_calls", build=world_of(MLP), args=xin, between=_swap_submodule)


def _change_plain_attr(k, w):
    w.m.scale = [1.0, 3.0, 3.0][k]


class Scaled(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = 1.0

    def forward(self, x):
        return x * self.scale


P(name="plain_module_attribute_changed", build=world_of(Scaled), args=xin,
  between=_change_plain_attr)


def _requires_grad_off(k, w):
    if k == 1:
        for p in w.m.parameters():
            p.requires_grad_(False)


P(name="requires_grad_toggled_on_params", build=world_of(MLP), args=xin,
  between=_requires_grad_off)


def _buffer_replaced(k, w):
    if k == 1:
        w.m.running = torch.full((4,), 9.0)


P(name="buffer_reassigned_between_calls", build=world_of(WithBuffer), args=xin,
  between=_buffer_replaced)


# ---------------------------------------------------------------- modules inside functions
@P(args=xin)
def module_built_inside(x):
    torch.manual_seed(1)
    lin = nn.Linear(4, 3)
    return lin(x)


@P(args=xin)
def functional_call_on_module(x):
    torch.manual_seed(2)
    m = nn.Linear(4, 2)
    params = {"weight": torch.ones(2, 4), "bias": torch.zeros(2)}
    return torch.func.functional_call(m, params, (x,))


@P(args=lambda k: (T(3, 4),), graphs=(1, 2), breaks=None, why='torch.compile breaks on nn.Parameter() construction')
def sequential_and_moduledict(x):
    torch.manual_seed(3)
    seq = nn.Sequential(nn.Linear(4, 4), nn.GELU(), nn.Linear(4, 1))
    md = nn.ModuleDict({"a": nn.Identity(), "b": nn.Tanh()})
    return md["b"](seq(x)), len(seq), list(md.keys())


def _params_world():
    torch.manual_seed(4)
    m = MLP()

    def fn(x):
        total = 0
        for name, p in m.named_parameters():
            total = total + p.sum()
        return x * total, [n for n, _ in m.named_parameters()]
    return types.SimpleNamespace(fn=fn, m=m)


P(name="named_parameters_iteration", build=_params_world, args=xin)


def _state_dict_world():
    torch.manual_seed(5)
    m = WithBuffer()

    def fn(x):
        sd = m.state_dict()
        return x + sd["running"], sorted(sd)
    return types.SimpleNamespace(fn=fn, m=m)


P(name="state_dict_inside", build=_state_dict_world, args=xin)


class GradModeModule(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)

    @torch.no_grad()
    def stats(self, x):
        return self.lin(x).mean()

    def forward(self, x):
        return self.lin(x) * self.stats(x)


P(name="no_grad_method_on_module", build=world_of(GradModeModule), args=xin)


class Embedding(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.ln = nn.LayerNorm(4)

    def forward(self, ids):
        return self.ln(self.emb(ids)).sum(1)


P(name="embedding_layernorm", build=world_of(Embedding), args=lambda k: (torch.randint(0, 10, (2, 3)),))


class MHA(nn.Module):
    def __init__(self):
        super().__init__()
        self.att = nn.MultiheadAttention(4, 2, batch_first=True)

    def forward(self, x):
        out, w = self.att(x, x, x)
        return out, w


P(name="multihead_attention", build=world_of(MHA), args=lambda k: (T(2, 3, 4),))


class GRUNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.cell = nn.GRUCell(4, 4)

    def forward(self, xs):
        h = torch.zeros(xs.shape[1], 4)
        for t in range(xs.shape[0]):
            h = self.cell(xs[t], h)
        return h


P(name="gru_cell_loop", build=world_of(GRUNet), args=lambda k: (T(3, 2, 4),))


def _optimizer_world():
    torch.manual_seed(6)
    m = nn.Linear(4, 1)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)

    def fn(x):
        opt.zero_grad()
        loss = m(x).pow(2).mean()
        loss.backward()
        opt.step()
        return loss
    return types.SimpleNamespace(fn=fn, m=m)


P(name="optimizer_step_inside", build=_optimizer_world, args=xin,
  graphs=2, breaks=1)


class ApplyFn(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def _swap_fn_attr(k, w):
    if k == 1:
        w.m.fn = torch.cos


P(name="function_attribute_of_module_swapped", build=world_of(lambda: ApplyFn(torch.sin)),
  args=xin, between=_swap_fn_attr)


test_program = P.tests()
