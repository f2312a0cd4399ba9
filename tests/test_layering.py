"""The package's import graph: no cycles, and each stage imports only the
stages below it. Function-level imports count as edges (an import hidden in
a function is still a dependency).

Layers, bottom up: ``_C``, ``config``; the leaves ``cache``, ``trace_rules``,
``context``, ``torch_compat``; ``diagnostics.logs``/``probe``; ``frontend`` and ``backends``;
``hook``; ``api``. The frontend never imports the hook, the API or the
backend's internals; the hook never imports the frontend (``api`` injects the
frame transform)."""
from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__import__("janus_frame").__file__).parent
PKG = "janus_frame"


def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for p in ROOT.rglob("*.py"):
        rel = p.relative_to(ROOT.parent).with_suffix("")
        name = ".".join(rel.parts)
        if name.endswith(".__init__"):
            name = name[: -len(".__init__")]
        out[name] = p
    return out


def _edges(mods) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = mod.split(".")
                    base = base[: len(base) - node.level + (1 if is_pkg else 0)]
                    name = ".".join(base + ([node.module] if node.module else []))
                else:
                    name = node.module or ""
                for a in node.names:
                    sub = f"{name}.{a.name}"
                    if sub == f"{PKG}._C":
                        continue  # the compiled extension
                    targets.append(sub if sub in mods else name)
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            for t in targets:
                while t and t not in mods:  # a name inside a module: the module
                    t = t.rpartition(".")[0]
                if t and t != mod and t.startswith(PKG) and t != f"{PKG}._C":
                    edges[mod].add(t)
    return edges


def _cycles(edges) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in edges:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in edges:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle():
    assert _cycles(_edges(_modules())) == []


def _reaches(edges, start: str, prefix: str) -> list[str]:
    return sorted(t for t in edges[start] if t == prefix or t.startswith(prefix + "."))


def test_layers():
    edges = _edges(_modules())
    leaves = [f"{PKG}.cache", f"{PKG}.trace_rules", f"{PKG}.context", f"{PKG}.config",
              f"{PKG}.torch_compat"]
    for leaf in leaves:
        above = [t for t in edges[leaf] if t not in leaves]
        assert not above, f"{leaf} is a leaf but imports {above}"
    for mod in edges:
        if mod.startswith(f"{PKG}.frontend"):
            for up in ("hook", "api", "module", "backends.janus"):
                assert not _reaches(edges, mod, f"{PKG}.{up}"), f"{mod} imports {PKG}.{up}"
    assert not _reaches(edges, f"{PKG}.hook", f"{PKG}.frontend"), "the hook imports the frontend"
