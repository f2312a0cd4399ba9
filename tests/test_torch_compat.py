"""The one module holding janus_frame's uses of private torch APIs: every
name it lists exists in the installed torch (run under each supported
release by .ci/run), the rest of the package imports none of them directly,
and the release differences it hides behave as documented."""
from __future__ import annotations

import ast
import pathlib

import torch

import janus_frame
from janus_frame import torch_compat

ROOT = pathlib.Path(janus_frame.__file__).parent


def test_every_private_name_resolves_in_the_installed_torch():
    assert torch_compat.check_supported() is None, torch_compat.check_supported()
    for name in torch_compat._NAMES:
        assert getattr(torch_compat, name) is not None, name


def _private_torch_uses(tree) -> list[str]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and (
                node.module.startswith("torch._") or node.module.startswith("torch.fx.experimental")):
            out.append(f"from {node.module} import ...")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and \
                node.value.id == "torch" and node.attr.startswith("_") and \
                not node.attr.startswith("__"):
            out.append(f"torch.{node.attr}")
    return out


def test_no_private_torch_api_outside_the_compat_module():
    found = {}
    for path in ROOT.rglob("*.py"):
        if path.name == "torch_compat.py":
            continue
        uses = _private_torch_uses(ast.parse(path.read_text()))
        if uses:
            found[str(path.relative_to(ROOT))] = uses
    assert not found, found



def test_a_fake_made_data_unknown_does_not_know_its_value():
    """torch 2.15 fakes a 0-d CPU int tensor with its value remembered; once
    ``data_unknown``, an operation needing that number raises as on earlier
    releases (the frontend turns that into a specialisation or a break)."""
    import pytest

    mode = torch_compat.FakeTensorMode()
    fake = torch_compat.data_unknown(mode.from_tensor(torch.tensor(3), static_shapes=True))
    with mode, pytest.raises(torch_compat.DataDependentOutputException):
        torch.ones(fake)


def test_shape_env_private_methods_only_through_the_compat_module():
    # ShapeEnv's private methods change between releases as torch's own do
    for path in ROOT.rglob("*.py"):
        if path.name != "torch_compat.py":
            assert "_maybe_evaluate_static" not in path.read_text(), path


def test_evaluate_static_decides_from_ranges_or_answers_none():
    import sympy
    from torch.fx.experimental.symbolic_shapes import DimDynamic, ShapeEnv, StatelessSymbolicContext
    from torch._subclasses.fake_tensor import FakeTensorMode

    env = ShapeEnv()
    fake = FakeTensorMode(shape_env=env).from_tensor(torch.randn(5, 3), symbolic_context=(
        StatelessSymbolicContext(dynamic_sizes=[DimDynamic.DYNAMIC, DimDynamic.STATIC])))
    s = fake.shape[0].node.expr
    assert torch_compat.evaluate_static(env, sympy.Lt(-s, 0)) == sympy.true  # sizes are >= 2
    assert torch_compat.evaluate_static(env, sympy.Lt(s, 7)) is None  # only the hint says so

    class Old:  # a release whose method takes other arguments
        def _maybe_evaluate_static(self, expr, extra):
            raise AssertionError
    assert torch_compat.evaluate_static(Old(), sympy.Lt(-s, 0)) is None
    assert torch_compat.evaluate_static(object(), sympy.Lt(-s, 0)) is None
