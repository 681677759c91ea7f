"""The package's shape (issue 34): no import circle between its modules, counting the imports inside
functions too (only `if TYPE_CHECKING:` blocks, never run, are left out)."""

import ast
import collections
import re
from pathlib import Path

import sparsenb

PKG = Path(sparsenb.__file__).parent


def _modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        parts = p.with_suffix("").relative_to(PKG.parent).parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return out


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", "")) == "TYPE_CHECKING":
            skip |= {id(n) for n in ast.walk(node)}
    return skip


def _imports(name: str, path: Path, mods: dict) -> set[str]:
    """The package modules `name` imports (relative imports, anywhere in the file)."""
    tree = ast.parse(path.read_text())
    skip = _type_checking_nodes(tree)
    pkg = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level and id(node) not in skip:
            base = ".".join(
                pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)] + ([node.module] if node.module else [])
            )
            out |= {f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names}
    return {m for m in out if m in mods and m != name}


def _circles(graph: dict[str, set]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while not comp or comp[-1] != v:
                comp.append(stack.pop())
                on.discard(comp[-1])
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in list(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circle_between_modules_even_through_function_level_imports():
    mods = _modules()
    top = lambda m: ".".join(m.split(".")[:2])  # noqa: E731  (a subpackage counts as one module)
    graph = collections.defaultdict(set)
    for name, path in mods.items():
        graph[top(name)] |= {top(m) for m in _imports(name, path, mods) if top(m) != top(name)}
    assert _circles(graph) == []


def test_docs_layout_names_every_module():
    """docs/layout.md is the architecture diagram: every module of the package is on it."""
    text = (PKG.parent / "docs" / "layout.md").read_text()
    missing = []
    for name in _modules():
        parts = name.split(".")[1:]
        if not parts or parts[-1] in ("__main__",):
            continue
        if not re.search(rf"\b{parts[-1]}\b", text):
            missing.append(name)
    assert missing == [], f"modules missing from docs/layout.md: {missing}"
