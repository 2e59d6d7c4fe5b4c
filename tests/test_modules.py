"""The package's shape: no import loop, and the model a leaf (read from the source, nothing run)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "gcsdvc"


def imports() -> dict[str, set[str]]:
    """Each module's gcsdvc imports: at the top, for type checking and inside functions alike."""
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for name in modules:
        found: set[str] = set()
        for node in ast.walk(ast.parse((PACKAGE / f"{name}.py").read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module == "gcsdvc":
                found |= {alias.name for alias in node.names if alias.name in modules}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("gcsdvc."):
                found.add((node.module or "").split(".")[1])
            elif isinstance(node, ast.Import):
                found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("gcsdvc.")}
        graph[name] = found - {name}
    return graph


def loop(graph: dict[str, set[str]]) -> list[str] | None:
    """One import loop (a list of modules, the first again at the end), or None."""
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> list[str] | None:
        if name in path:
            return [*path[path.index(name) :], name]
        if name in done:
            return None
        for other in sorted(graph.get(name, ())):
            found = visit(other, [*path, name])
            if found:
                return found
        done.add(name)
        return None

    for name in sorted(graph):
        found = visit(name, [])
        if found:
            return found
    return None


def test_no_import_loop() -> None:
    assert loop(imports()) is None


def test_loops_are_found() -> None:
    assert loop({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert loop({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_model_imports_nothing_of_ours() -> None:
    assert imports()["model"] == set()
