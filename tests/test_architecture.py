"""The layout holds by construction: data flows one way, AnnData stops at the boundary,
no import circle, no function-local import of the package, a thin fit_decoder."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import regdecoder as rd

PKG = Path(rd.__file__).parent


def _modules() -> dict[str, Path]:
    out = {}
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _resolve(module: str, node: ast.ImportFrom, is_pkg: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str, path: Path, *, top_level_only: bool) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    out = []
    for node in nodes:
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, node, path.name == "__init__.py")
            out.append((target, node.lineno))
            out += [(f"{target}.{a.name}", node.lineno) for a in node.names]
    return out


def test_nn_and_train_import_no_anndata():
    for module, path in _modules().items():
        if module.startswith(("regdecoder.nn", "regdecoder.train")):
            for name, line in _imports(module, path, top_level_only=False):
                assert not name.startswith(("anndata", "scanpy")), f"{path}:{line} imports {name}"
                if name.startswith("regdecoder."):
                    assert name.split(".")[1] in ("nn", "train"), f"{path}:{line}: nn/train import {name}"


def test_no_function_local_import_of_the_package():
    for module, path in _modules().items():
        tree = ast.parse(path.read_text())
        top = set(map(id, tree.body))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in top:
                names = _imports(module, path, top_level_only=False)
                local = [n for n, line in names if line == node.lineno and n.startswith("regdecoder")]
                assert not local, f"{path}:{node.lineno} imports {local[0]} inside a function"


def test_no_import_circle_between_modules():
    mods = _modules()
    graph: dict[str, set[str]] = {}
    for module, path in mods.items():
        deps = set()
        for name, _ in _imports(module, path, top_level_only=False):
            while name and name not in mods:
                name = name.rpartition(".")[0]
            if name and name != module and not module.startswith(name + "."):
                deps.add(name)
        graph[module] = deps
    # a package's __init__ importing its own submodules is not a circle; follow the others
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in graph[node]:
            if dep.startswith(node + "."):
                continue
            if state.get(dep) == 1:
                cycle = stack[stack.index(dep) :] + [dep] if dep in stack else [node, dep]
                raise AssertionError("import circle: " + " -> ".join(cycle))
            if state.get(dep) is None:
                visit(dep, stack + [dep])
        state[node] = 2

    for m in graph:
        if m not in state:
            visit(m, [m])


def test_fit_decoder_is_thin():
    params = inspect.signature(rd.tl.fit_decoder).parameters
    assert len(params) <= 18, list(params)
    src = inspect.getsource(rd.tl.fit_decoder)
    body = src[src.index('    """', src.index('"""') + 3) + 8 :]  # after the docstring
    lines = [line for line in body.splitlines() if line.strip()]
    assert len(lines) <= 60, f"fit_decoder's body has {len(lines)} lines"
