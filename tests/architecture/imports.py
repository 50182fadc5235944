"""The import graph of `pumpctl`, read from the source with `ast` (nothing is imported).

Every `import` counts, wherever it is written: at module level, inside a function (the lazy
imports that keep start-up fast) or under `if TYPE_CHECKING:`. A circle that is only broken by
importing late is still a circle: two modules that each need the other are one module's job
split in two.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = "pumpctl"
ROOT = Path(__file__).resolve().parents[2] / PACKAGE


def module_name(path: Path, root: Path | None = None) -> str:
    parts = list(path.relative_to((root or ROOT).parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(root: Path | None = None) -> dict[str, Path]:
    root = root or ROOT
    return {module_name(p, root): p for p in sorted(root.rglob("*.py"))}


def _absolute(node: ast.ImportFrom, current: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = current.split(".")
    base = base if is_package else base[:-1]
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def imported_names(path: Path, current: str) -> Iterator[tuple[str, int]]:
    """Every module name an import statement in `path` names, with its line."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, current, is_package)
            yield base, node.lineno
            for alias in node.names:  # `from pkg import module` imports pkg.module
                yield f"{base}.{alias.name}", node.lineno


def graph(root: Path | None = None) -> dict[str, dict[str, int]]:
    """module -> {module of the package at `root` it imports: line of the first such import}."""
    known = modules(root)
    edges: dict[str, dict[str, int]] = {}
    for name, path in known.items():
        out: dict[str, int] = {}
        for target, line in imported_names(path, name):
            if target in known and target != name:
                out.setdefault(target, line)
        edges[name] = out
    return edges


def cycles(edges: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found
