"""The import graph of `streamconv/`, read from the source: every import points down the layers
and there is no cycle, imports under `TYPE_CHECKING` and inside functions included (a lazy import
is still a dependency, only a hidden one)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent / "streamconv"

#: the layers, lowest first: a module may import its own package and those before it, never one
#: after it. The package itself (`streamconv/__init__.py`, the public API) is above them all.
LAYERS = ["errors", "units", "starting", "encodings", "format", "kernels", "stores", "layout", "sources",
          "engine", "meshing", "annotations", "commands", "steps", "meshes", "cli", "__main__"]


def _module_names() -> dict[str, Path]:
    names = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of streamconv that `name` imports (a name imported from a package is the
    submodule of that name, if there is one: `from . import steps` depends on `steps`)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in modules}
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            if target not in modules:
                continue
            submodules = {f"{target}.{alias.name}" for alias in node.names} & modules.keys()
            found |= submodules
            if len(submodules) < len(node.names):
                found.add(target)
    found.discard(name)
    return found


def _layer(name: str) -> int:
    parts = name.split(".")
    return len(LAYERS) if len(parts) == 1 else LAYERS.index(parts[1])


GRAPH = {name: _imports(name, path, _module_names()) for name, path in _module_names().items()}


def test_every_module_has_a_layer() -> None:
    unknown = {name.split(".")[1] for name in GRAPH if "." in name} - set(LAYERS)
    assert not unknown, f"add these to LAYERS: {sorted(unknown)}"


@pytest.mark.parametrize("name", sorted(GRAPH))
def test_imports_point_down(name: str) -> None:
    up = sorted(dep for dep in GRAPH[name] if _layer(dep) > _layer(name))
    assert not up, f"{name} imports a higher layer: {up}"


def test_no_cycles() -> None:
    cycles, state = [], {}  # state: 1 on the current path, 2 done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for dep in sorted(GRAPH[name]):
            if dep in path and state.get(dep) == 1:
                cycles.append(" -> ".join([*path[path.index(dep):], dep]))
            elif dep not in state:
                visit(dep, [*path, dep])
        state[name] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [name])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)
