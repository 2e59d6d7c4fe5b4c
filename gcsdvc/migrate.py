"""Convert the first, Python-list manifest (``resources = [...]``) to the YAML manifest.

The old file is parsed with :mod:`ast` and only literal data is accepted, so
nothing in it is ever executed.
"""

from __future__ import annotations

import ast
from typing import Any

import yaml

from gcsdvc.errors import ManifestError
from gcsdvc.manifest import LEGACY_KEYS

_HEADER = (
    "# Resources manifest for gcsdvc, converted from {source}.\n"
    "# One entry per experiment: 'gcsdvc validate' checks it, 'gcsdvc sync' downloads it.\n"
)


def migrate_source(source: str, filename: str = "<old manifest>") -> str:
    """The YAML manifest text for the Python source of an old manifest."""
    try:
        tree = ast.parse(source, filename=filename)
    except (SyntaxError, ValueError, MemoryError, RecursionError) as exc:
        line = getattr(exc, "lineno", None)
        where = f"{filename}:{line}" if line else filename
        raise ManifestError([f"{where}: not valid Python: {getattr(exc, 'msg', exc)}"]) from None
    value = _find_resources(tree, filename)
    if not isinstance(value, ast.List | ast.Tuple):
        raise ManifestError(
            [f"{filename}:{value.lineno}: 'resources' must be a list of dictionaries"]
        )
    problems: list[str] = []
    entries = []
    for index, element in enumerate(value.elts):
        try:
            entry = ast.literal_eval(element)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            problems.append(
                f"{filename}:{element.lineno}: resources[{index}]: only literal data "
                f"(strings, numbers, booleans, lists, dicts) is allowed, found "
                f"{_describe(element)}"
            )
            continue
        if not isinstance(entry, dict) or not all(isinstance(k, str) for k in entry):
            problems.append(
                f"{filename}:{element.lineno}: resources[{index}]: must be a dictionary "
                "with string keys"
            )
            continue
        entries.append({LEGACY_KEYS.get(key, key): item for key, item in entry.items()})
    if problems:
        raise ManifestError(problems)
    body = yaml.safe_dump(
        {"resources": entries}, sort_keys=False, allow_unicode=True, default_flow_style=False
    )
    return _HEADER.format(source=filename) + body


def _find_resources(tree: ast.Module, filename: str) -> ast.expr:
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign):
            targets = [t for t in stmt.targets if isinstance(t, ast.Name)]
            if any(t.id == "resources" for t in targets):
                return stmt.value
        elif (
            isinstance(stmt, ast.AnnAssign)
            and isinstance(stmt.target, ast.Name)
            and stmt.target.id == "resources"
            and stmt.value is not None
        ):
            return stmt.value
    raise ManifestError([f"{filename}: no top-level 'resources = [...]' assignment found"])


def _describe(node: ast.AST) -> str:
    """Name the first piece of a non-literal expression, for the error message."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call):
            return f"a function call on line {sub.lineno}"
        if isinstance(sub, ast.Name):
            return f"the name {sub.id!r} on line {sub.lineno}"
        if isinstance(sub, ast.Attribute | ast.Subscript | ast.Lambda | ast.JoinedStr):
            return f"an expression on line {getattr(sub, 'lineno', '?')}"
    return "an expression that is not a literal"
