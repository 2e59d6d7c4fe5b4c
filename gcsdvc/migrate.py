"""Convert the first, Python-list manifest (``resources = [...]``) to the YAML manifest.

The old file is parsed with :mod:`ast` and only literal data is accepted, so
nothing in it is ever executed.
"""

from __future__ import annotations

import ast
import warnings
from collections.abc import Iterator
from typing import Any

import yaml

from gcsdvc.errors import ManifestError
from gcsdvc.manifest import LEGACY_KEYS, _one_line, _show
from gcsdvc.manifest_edit import resources_text

_HEADER = (
    "# Resources manifest for gcsdvc, converted from {source}.\n"
    "# One entry per experiment: 'gcsdvc validate' checks it, 'gcsdvc sync' downloads it.\n"
)
_ALLOWED = "only strings, numbers, booleans, None, lists and dicts are allowed"
# Scopes whose assignments do not change the module's ``resources``.
_SCOPES = (
    ast.FunctionDef,
    ast.AsyncFunctionDef,
    ast.ClassDef,
    ast.Lambda,
    ast.ListComp,
    ast.SetComp,
    ast.DictComp,
    ast.GeneratorExp,
)


class _Dumper(yaml.SafeDumper):
    """The safe dumper, with strings that PyYAML would not read back unchanged double-quoted."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # PyYAML writes NEL and the Unicode line separators raw in plain or single-quoted
    # scalars, where reading them back turns them into line breaks; escape them instead.
    style = '"' if any(c in value for c in "\x85\u2028\u2029") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


class _Unsupported(Exception):
    """A literal value the YAML manifest cannot hold (bytes, a set, a complex number...)."""


def migrate_source(source: str, filename: str = "<old manifest>") -> str:
    """The YAML manifest text for the Python source of an old manifest."""
    shown = _one_line(filename)
    try:
        with warnings.catch_warnings():
            # e.g. "invalid escape sequence" in a Windows path: the value is still literal
            warnings.simplefilter("ignore")
            # A byte order mark (Windows editors) is fine for Python; ast wants it gone.
            tree = ast.parse(source.removeprefix("\ufeff"), filename=shown)
    except (SyntaxError, ValueError, MemoryError, RecursionError) as exc:
        line = getattr(exc, "lineno", None)
        where = f"{shown}:{line}" if line else shown
        message = _one_line(str(getattr(exc, "msg", None) or exc))
        raise ManifestError([f"{where}: not valid Python: {message}"]) from None
    value = _find_resources(tree, shown)
    if not isinstance(value, ast.List | ast.Tuple):
        raise ManifestError([f"{shown}:{value.lineno}: 'resources' must be a list of dictionaries"])
    problems: list[str] = []
    entries: list[dict[str, Any]] = []
    for index, element in enumerate(value.elts):
        where = f"{shown}:{element.lineno}: {_label(index, element)}"
        try:
            entry = ast.literal_eval(element)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            problems.append(
                f"{where}: only literal data (strings, numbers, booleans, lists, dicts) "
                f"is allowed, found {_describe(element)}; nothing was run"
            )
            continue
        if not isinstance(entry, dict) or not all(isinstance(k, str) for k in entry):
            problems.append(f"{where}: must be a dictionary with string keys")
            continue
        twice = _repeated_keys(element)
        if twice:
            problems.append(f"{where}: key {_show(twice[0])} appears twice")
            continue
        both = [old for old, new in LEGACY_KEYS.items() if old in entry and new in entry]
        if both:
            problems.append(
                f"{where}: has both '{both[0]}' and '{LEGACY_KEYS[both[0]]}'; keep only "
                f"'{LEGACY_KEYS[both[0]]}'"
            )
            continue
        try:
            plain = {
                str(LEGACY_KEYS.get(key, key)): _plain(item, key) for key, item in entry.items()
            }
        except _Unsupported as exc:
            problems.append(f"{where}: {exc}")
            continue
        entries.append(plain)
    if problems:
        raise ManifestError(problems)
    try:
        # DVC's layout, so that `dvc exp run -S` rewrites only the param it sets.
        body = resources_text(entries) if entries else ""
    except ManifestError:  # e.g. a NaN: PyYAML's own writing below reads back
        body = ""
    try:
        body = body or yaml.dump(
            {"resources": entries},
            Dumper=_Dumper,
            sort_keys=False,
            allow_unicode=True,
            default_flow_style=False,
        )
    except (yaml.YAMLError, ValueError, RecursionError) as exc:  # pragma: no cover - defensive
        raise ManifestError([f"{shown}: cannot write as YAML: {_one_line(str(exc))}"]) from None
    return _HEADER.format(source=shown) + body


def _find_resources(tree: ast.Module, shown: str) -> ast.expr:
    """The value of the one module-level ``resources = ...``; refuse when it is changed later."""
    found: ast.expr | None = None
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign):
            if any(isinstance(t, ast.Name) and t.id == "resources" for t in stmt.targets):
                found = found or stmt.value
        elif (
            isinstance(stmt, ast.AnnAssign)
            and isinstance(stmt.target, ast.Name)
            and stmt.target.id == "resources"
            and stmt.value is not None
        ):
            found = found or stmt.value
    if found is None:
        raise ManifestError([f"{shown}: no top-level 'resources = [...]' assignment found"])
    changes = sorted({node.lineno for node in _changes(tree)})
    if len(changes) > 1:
        lines = ", ".join(str(line) for line in changes)
        raise ManifestError(
            [
                f"{shown}:{changes[1]}: 'resources' is assigned or changed on lines {lines}; "
                "only a file with a single literal 'resources = [...]' can be converted "
                "(the file is never run)"
            ]
        )
    return found


def _changes(tree: ast.Module) -> Iterator[ast.expr | ast.stmt]:
    """Module-level code that binds, rebinds or mutates the name ``resources``."""
    todo: list[ast.AST] = [stmt for stmt in tree.body if not isinstance(stmt, _SCOPES)]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Name) and node.id == "resources":
            if isinstance(node.ctx, ast.Store | ast.Del):
                yield node
        elif isinstance(node, ast.Subscript | ast.Attribute):
            if isinstance(node.ctx, ast.Store | ast.Del) and _is_resources(node.value):
                yield node
        elif isinstance(node, ast.Call):
            if isinstance(node.func, ast.Attribute) and _is_resources(node.func.value):
                yield node
        elif isinstance(node, ast.Import | ast.ImportFrom):
            if any((alias.asname or alias.name) == "resources" for alias in node.names):
                yield node
        elif isinstance(node, ast.Global | ast.Nonlocal):
            continue
        if isinstance(node, ast.AnnAssign) and node.value is None:
            continue  # a bare annotation binds nothing
        todo.extend(child for child in ast.iter_child_nodes(node) if not isinstance(child, _SCOPES))


def _is_resources(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id == "resources"


def _label(index: int, element: ast.expr) -> str:
    """``resources[2] (name)``: the entry's name, or its destination, when written literally."""
    label = f"resources[{index}]"
    if isinstance(element, ast.Dict):
        found: dict[str, str] = {}
        for key, value in zip(element.keys, element.values, strict=True):
            if (
                isinstance(key, ast.Constant)
                and key.value in ("name", "destination")
                and isinstance(value, ast.Constant)
                and isinstance(value.value, str)
                and value.value.strip()
            ):
                found[key.value] = value.value
        called = found.get("name") or found.get("destination")
        if called:
            label += f" ({_one_line(called)})"
    return label


def _repeated_keys(element: ast.expr) -> list[object]:
    """Keys written twice in a dict literal (Python silently keeps the last one)."""
    if not isinstance(element, ast.Dict):
        return []
    seen: list[object] = []
    twice: list[object] = []
    for key in element.keys:
        if isinstance(key, ast.Constant):
            if key.value in seen:
                twice.append(key.value)
            seen.append(key.value)
    return twice


def _plain(value: Any, key: str) -> Any:
    """``value`` as plain YAML data (tuples become lists); refuse what YAML would tag."""
    if value is None or isinstance(value, bool | str | float):
        return value
    if isinstance(value, int):
        if value.bit_length() > 1000:
            raise _Unsupported(f"field {_show(key)}: the integer is too large")
        return value
    if isinstance(value, list | tuple):
        return [_plain(item, key) for item in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _plain(v, key) for k, v in value.items()}
    kind = "a dict with non-string keys" if isinstance(value, dict) else type(value).__name__
    raise _Unsupported(f"field {_show(key)}: {kind} {_show(value)} is not supported; {_ALLOWED}")


def _describe(node: ast.expr) -> str:
    """Name the first non-literal piece of an entry (and its field), for the error message."""
    if isinstance(node, ast.Dict):
        for key, value in zip(node.keys, node.values, strict=True):
            if key is None:
                return f"'**' unpacking on line {value.lineno}"
            try:
                ast.literal_eval(key)
                ast.literal_eval(value)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                field = key.value if isinstance(key, ast.Constant) else None
                where = f" in field {_show(field)}" if isinstance(field, str) else ""
                return _what(key if field is None else value) + where
    return _what(node)


def _what(node: ast.AST) -> str:
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call):
            return f"a function call on line {sub.lineno}"
        if isinstance(sub, ast.JoinedStr):
            return f"an f-string on line {sub.lineno}"
        if isinstance(sub, ast.ListComp | ast.SetComp | ast.DictComp | ast.GeneratorExp):
            return f"a comprehension on line {sub.lineno}"
        if isinstance(sub, ast.Lambda):
            return f"a lambda on line {sub.lineno}"
        if isinstance(sub, ast.Name):
            return f"the name {sub.id!r} on line {sub.lineno}"
        if isinstance(sub, ast.Attribute | ast.Subscript | ast.Starred):
            return f"an expression on line {sub.lineno}"
    return "an expression that is not a literal"
