"""Round-trip edits of the manifest file: every byte outside the edit stays as it was.

ruamel.yaml locates the ``resources`` list, its last entry and the style of that
entry (indentation, key order, quoting, blank lines between entries); the new
entries are written in that style and spliced into the original text, which is
then read back and compared with what was meant before anything is written.
This module never decides what to add: :mod:`gcsdvc.authoring` does.

New entries of a new list, or of a list already in DVC's layout, are written
exactly as DVC writes the file back when it changes a param (``dvc exp run -S``
round-trips params.yaml through ruamel.yaml with its default settings: the
``-`` of a list at its key's column, two-space indents, plain scalars where
YAML 1.2 allows them, lines folded at 80 columns), so that such a change is a
one-line diff. The one departure: a string that YAML 1.1 (PyYAML, which reads
the manifest) would take for something else (``on``, ``yes``, ``1:20``) or a
line separator is quoted, as DVC does not.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError as RuamelError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.representer import RoundTripRepresenter
from ruamel.yaml.resolver import VersionedResolver

from gcsdvc.errors import ManifestError

Entry = Mapping[str, Any]
_BREAKS = ("\n", "\r", "\x85", "\u2028", "\u2029")


@dataclass
class _Style:
    """How the entries around the new one are written."""

    dvc: bool = True  # in DVC's layout (rendered by ruamel.yaml), else by the fields below
    dash: int = 0  # column of an entry's '-'
    gap: int = 2  # from the '-' to the entry's keys
    blank: str = ""  # the blank lines between two entries
    keys: list[str] = field(default_factory=list)  # key order of the last entry
    quotes: dict[str, str | None] = field(default_factory=dict)  # scalar style by key
    files_indent: int | None = None  # from a key to the '-' of its list (None: no block list)
    files_flow: bool = False
    files_quote: str | None = None


def append_entries(text: str, entries: Sequence[Entry], shown: str = "manifest") -> str:
    """``text`` with ``entries`` appended to its ``resources`` list; nothing else changes.

    Raises :class:`ManifestError` when the text cannot be read as YAML or when
    the edited text would not read back as the same document plus the entries.
    """
    if not entries:
        return text
    root = _compose(text, shown)
    newline = "\r\n" if "\r\n" in text else "\n"
    key, seq = _find(root, "resources")
    if seq is None or key is None:
        head = text if not text or text.endswith(("\n", "\r")) else text + newline
        new = _first_fit(
            text,
            entries,
            shown,
            lambda style: f"{head}resources:{newline}{_entries_text(entries, style, newline)}",
        )
    elif isinstance(seq, SequenceNode) and seq.flow_style:
        new = _append_flow(text, seq, entries, key, newline)
        _check_round_trip(text, new, entries, shown)
    elif isinstance(seq, SequenceNode):
        style = _style_of(text, seq)
        style.dvc = key.start_mark.column == 0 and _dvc_layout(style)
        at = _after_comments(text, _after_line(text, _content_end(seq.value[-1], text)), style.dash)
        if at == len(text) and not text.endswith(("\n", "\r")):
            text += newline
            at = len(text)
        before, after = text[:at], text[at:]
        new = _first_fit(
            text,
            entries,
            shown,
            lambda s: before + _entries_text(entries, s, newline) + after,
            style,
        )
    elif isinstance(seq, ScalarNode) and str(seq.tag).endswith(":null"):
        # 'resources:' with no value (or '~', 'null'): the entries go below the key.
        column = key.start_mark.column
        style = _Style(dash=column, dvc=column == 0)
        new = _first_fit(
            text,
            entries,
            shown,
            lambda s: _below_key(text, key, seq, _entries_text(entries, s, newline), newline),
            style,
        )
    else:
        raise ManifestError([f"{shown}: 'resources' must be a list of entries"])
    return new


def _first_fit(
    text: str,
    entries: Sequence[Entry],
    shown: str,
    edit: Callable[[_Style], str],
    style: _Style | None = None,
) -> str:
    """``edit`` in DVC's layout where ``style`` allows it, else in our own writer's."""
    style = style or _Style()
    if style.dvc:
        new = edit(style)
        if _reads_back(text, new, entries, shown):
            return new
        # ruamel wrote what PyYAML reads otherwise: our writer, in the same layout
        style = replace(style, dvc=False, files_indent=style.files_indent or 0)
    new = edit(style)
    _check_round_trip(text, new, entries, shown)
    return new


def _dvc_layout(style: _Style) -> bool:
    """Whether entries in ``style`` are laid out as DVC's ruamel.yaml writes them."""
    return (
        style.dash == 0 and style.gap == 2 and (style.files_flow or style.files_indent in (None, 0))
    )


def _entries_text(entries: Sequence[Entry], style: _Style, newline: str) -> str:
    if style.dvc:
        return "".join(style.blank + _dvc_entry(e, style, newline) for e in entries)
    return "".join(style.blank + _entry_lines(e, style, newline) for e in entries)


def resources_text(entries: Sequence[Entry]) -> str:
    """``resources:`` and ``entries`` below it, at column 0, in DVC's layout where possible."""
    return append_entries("", entries, "manifest")


def entry_text(entry: Entry) -> str:
    """One entry as the list item ``append_entries`` writes in a new list."""
    return append_entries("", [entry]).split("\n", 1)[1]


def merge_resources(existing: str, migrated: str, *, force: bool, shown: str) -> str:
    """``migrated`` (a manifest's text) merged into the ``existing`` text of the same file.

    The ``resources`` of ``migrated`` are added with its other top-level keys;
    everything else of ``existing`` (keys, comments) is kept. An existing
    ``resources`` is replaced only with ``force``; a file that is not a mapping
    is overwritten only with ``force``.
    """
    if not existing.strip():
        return migrated
    try:
        data = yaml.safe_load(existing)
    except yaml.YAMLError:
        data = None
    if not isinstance(data, dict):
        if force:
            return migrated
        raise ManifestError(
            [f"{shown} exists and is not a YAML mapping; pass --force to overwrite it"]
        )
    if "resources" in data and not force:
        raise ManifestError(
            [
                f"{shown} already has a 'resources' list; pass --force to replace it "
                "(its other keys and comments are kept)"
            ]
        )
    return replace_resources(existing, migrated, shown)


def replace_resources(text: str, block: str, shown: str = "manifest") -> str:
    """``text`` with its top-level ``resources`` (and its value) replaced by ``block``.

    ``block`` is YAML text holding ``resources:`` (and possibly other keys) at
    column 0; without a ``resources`` key in ``text`` it is appended at the end.
    """
    root = _compose(text, shown)
    key, value = _find(root, "resources")
    if not text or text.endswith(("\n", "\r")):
        head = text
    else:
        head = text + ("\r\n" if "\r\n" in text else "\n")
    if key is None or value is None:
        new = head + block
    else:
        if key.start_mark.column != 0:
            raise ManifestError([f"{shown}: 'resources' must start at column 0 to be replaced"])
        end = _after_line(text, _content_end(value, text))
        # The comments above the old key stay, so the block's own header is not repeated.
        lines = block.splitlines(keepends=True)
        while lines and (not lines[0].strip() or lines[0].startswith("#")):
            lines.pop(0)
        new = text[: key.start_mark.index] + "".join(lines) + text[end:]
    wanted = {**(_loaded(text, shown) or {}), **(_loaded(block, shown) or {})}
    if _loaded(new, shown) != wanted:
        raise ManifestError([f"{shown}: cannot merge without rewriting other lines"])
    return new


def remove_entries(text: str, indexes: Collection[int], shown: str = "manifest") -> str:
    """``text`` without the ``resources`` entries at ``indexes``; every other byte stays.

    An entry goes with its own lines (its comments indented below its ``-``) and
    the blank lines that separated it from its neighbour; comments at the list's
    column stay. With no entry left the list is written ``[]``. Raises
    :class:`ManifestError` when the result would not read back as exactly that.
    """
    if not indexes:
        return text
    key, seq = _find(_compose(text, shown), "resources")
    if key is None or not isinstance(seq, SequenceNode) or seq.flow_style:
        raise ManifestError(
            [f"{shown}: cannot remove entries from a 'resources' that is not a block list; "
             "please remove them by hand"]
        )  # fmt: skip
    column = seq.start_mark.column
    spans: list[tuple[int, int]] = []
    for index in sorted(set(indexes)):
        item = seq.value[index]
        start = _line_start(text, item.start_mark.index)
        while "-" not in text[start : item.start_mark.index] and start > 0:
            start = _line_start(text, start - 1)  # '-' alone on the line above
        end = _after_comments(text, _after_line(text, _content_end(item, text)), column)
        if index > 0:  # the blank lines above it separated it from the entry before
            while start > 0 and not text[_line_start(text, start - 1) : start].strip():
                start = _line_start(text, start - 1)
        else:  # the first entry: the blank lines below it go
            while end < len(text) and not text[end : _after_line(text, end + 1)].strip():
                end = _after_line(text, end + 1)
        spans.append((start, end))
    new, at = [], 0
    for start, end in spans:
        new.append(text[at : max(at, start)])
        at = max(at, end)
    new.append(text[at:])
    result = "".join(new)
    if len(set(indexes)) == len(seq.value):
        end = _after_line(text, key.end_mark.index)
        line = result[key.start_mark.index : end]  # 'resources:' and maybe a comment
        colon = line.index(":") + 1
        result = result[: key.start_mark.index] + line[:colon] + " []" + line[colon:] + result[end:]
    before = _loaded(text, shown)
    kept = [e for n, e in enumerate(before["resources"]) if n not in set(indexes)]
    wanted = {**before, "resources": kept}
    after = _loaded(result, shown)
    if after != wanted or list(after) != list(wanted):
        raise ManifestError(
            [f"{shown}: cannot remove the entries without rewriting other lines; "
             "please remove them by hand"]
        )  # fmt: skip
    return result


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one rename, keeping its permissions."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fobj:
            fobj.write(text)
            fobj.flush()
            os.fsync(fobj.fileno())
        if path.exists():
            Path(tmp).chmod(path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# -- locating --------------------------------------------------------------


def _compose(text: str, shown: str) -> MappingNode | None:
    try:
        root = YAML().compose(io.StringIO(text))
    except RuamelError as exc:
        raise ManifestError(
            [f"{shown}: cannot edit: invalid YAML: {exc}".splitlines()[0]]
        ) from None
    if root is None:
        return None
    if not isinstance(root, MappingNode) or root.flow_style:
        raise ManifestError([f"{shown}: cannot edit: the manifest must be a block mapping"])
    return root


def _find(root: MappingNode | None, name: str) -> tuple[Node | None, Node | None]:
    for key, value in reversed(root.value if root is not None else []):
        if isinstance(key, ScalarNode) and key.value == name:
            return key, value
    return None, None


def _content_end(node: Node, text: str) -> int:
    """The index just past the last character of ``node``'s own text (block nodes run on)."""
    while isinstance(node, MappingNode | SequenceNode) and not node.flow_style and node.value:
        last = node.value[-1]
        node = last[1] if isinstance(last, tuple) else last
    end = int(node.end_mark.index)
    if (
        isinstance(node, ScalarNode)
        and node.style in ("|", ">")
        and not node.value.endswith("\n\n")
    ):
        # A block scalar's mark runs over the blank lines after it, which are not its own.
        while end > 0 and text[_line_start(text, end - 1) : end].strip() == "":
            end = _line_start(text, end - 1)
    return end


def _after_line(text: str, index: int) -> int:
    """The start of the line after the one ``index`` is on (``index`` itself at a line start)."""
    if 0 < index <= len(text) and text[index - 1] in "\n\r":
        return index
    breaks = [i for i in (text.find("\n", index), text.find("\r", index)) if i >= 0]
    if not breaks:
        return len(text)
    end = min(breaks)
    return end + 2 if text[end : end + 2] == "\r\n" else end + 1


def _after_comments(text: str, at: int, column: int) -> int:
    """Past the comment lines at ``at`` indented deeper than ``column`` (the entry's own)."""
    while at < len(text):
        end = text.find("\n", at) + 1 or len(text)
        line = text[at:end]
        if not line.lstrip(" ").startswith("#") or len(line) - len(line.lstrip(" ")) <= column:
            break
        at = end
    return at


def _line_start(text: str, index: int) -> int:
    return max(text.rfind("\n", 0, index), text.rfind("\r", 0, index)) + 1


def _style_of(text: str, seq: SequenceNode) -> _Style:
    last = seq.value[-1]
    style = _Style(dash=seq.start_mark.column)
    if len(seq.value) > 1:
        between = text[
            _after_line(text, _content_end(seq.value[-2], text)) : _line_start(
                text, last.start_mark.index
            )
        ]
        lines = between.splitlines(keepends=True)
        style.blank = "".join(line for line in lines if not line.strip())
    if not isinstance(last, MappingNode) or last.flow_style:
        return style
    style.gap = max(1, last.start_mark.column - style.dash)
    for key, value in last.value:
        if not isinstance(key, ScalarNode):
            continue
        style.keys.append(key.value)
        if isinstance(value, ScalarNode) and str(value.tag).endswith(":str"):
            style.quotes[key.value] = value.style if value.style in ("'", '"') else None
        if key.value == "files" and isinstance(value, SequenceNode):
            style.files_flow = bool(value.flow_style)
            if not value.flow_style and value.value:
                style.files_indent = value.start_mark.column - key.start_mark.column
            items = [v for v in value.value if isinstance(v, ScalarNode)]
            if items:
                style.files_quote = items[-1].style if items[-1].style in ("'", '"') else None
    return style


# -- writing ---------------------------------------------------------------


class _Representer(RoundTripRepresenter):
    """DVC's representer, quoting what PyYAML (YAML 1.1) would not read back as the string."""

    def represent_str(self, data: str) -> ScalarNode:
        style = None
        if any(c in data for c in "\x85\u2028\u2029"):
            style = '"'  # written raw, PyYAML would read them as line breaks
        elif _resolved(data) != _STR or _resolved_rt(data) != _STR:
            # 'on', 'yes', '1:20': strings in YAML 1.2, not in 1.1; '-_', '._': numbers to
            # ruamel's 1.2 resolver, which then cannot read them (DVC's `exp run -S` fails)
            style = "'"
        return self.represent_scalar(_STR, data, style=style)


_STR = "tag:yaml.org,2002:str"
_RESOLVER = yaml.resolver.Resolver()


def _resolved(plain: str) -> str:
    """The tag PyYAML gives ``plain`` written as a plain scalar."""
    return str(_RESOLVER.resolve(yaml.ScalarNode, plain, (True, False)))  # type: ignore[no-untyped-call]


_RT_RESOLVER = VersionedResolver()


def _resolved_rt(plain: str) -> str:
    """The tag ruamel.yaml (DVC's reader of params.yaml) gives ``plain`` as a plain scalar."""
    return str(_RT_RESOLVER.resolve(ScalarNode, plain, (True, False)))


_Representer.add_representer(str, _Representer.represent_str)


def dvc_yaml() -> YAML:
    """A ruamel.yaml round-trip instance with the settings DVC writes params.yaml with."""
    rt = YAML()
    rt.default_flow_style = False
    rt.Representer = _Representer
    return rt


def dump_dvc(data: Any) -> str:
    out = io.StringIO()
    dvc_yaml().dump(data, out)
    return out.getvalue()


def _dvc_entry(entry: Entry, style: _Style, newline: str) -> str:
    item = {key: _plain_value(entry[key]) for key in _key_order(entry, style)}
    text = dump_dvc({"resources": [item]}).split("\n", 1)[1]
    return text.replace("\n", newline)


def _plain_value(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return [_plain_value(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain_value(v) for k, v in value.items()}
    return value


def _key_order(entry: Entry, style: _Style) -> list[str]:
    keys = [k for k in style.keys if k in entry]
    for n, key in enumerate(entry):  # a key the neighbours lack goes after its predecessor
        if key not in keys:
            before = [k for k in list(entry)[:n] if k in keys]
            keys.insert(keys.index(before[-1]) + 1 if before else 0, key)
    return keys


def _entry_lines(entry: Entry, style: _Style, newline: str) -> str:
    keys = _key_order(entry, style)
    indent = " " * (style.dash + style.gap)
    lines = []
    for n, key in enumerate(keys):
        lead = " " * style.dash + "-" + " " * (style.gap - 1) if n == 0 else indent
        value = entry[key]
        if isinstance(value, list | tuple):
            if style.files_flow:
                items = ", ".join(_scalar(v, style.files_quote, flow=True) for v in value)
                lines.append(f"{lead}{key}: [{items}]")
            else:
                lines.append(f"{lead}{key}:")
                pad = indent + " " * (style.files_indent if style.files_indent is not None else 2)
                lines += [f"{pad}- {_scalar(v, style.files_quote)}" for v in value]
        else:
            lines.append(f"{lead}{key}: {_scalar(value, style.quotes.get(key))}")
    return newline.join(lines) + newline


def _scalar(value: Any, quote: str | None, flow: bool = False) -> str:
    """One scalar as YAML text, in the neighbours' quoting where that reads back the same."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if not isinstance(value, str):
        return json.dumps(value)
    if any(b in value for b in _BREAKS):
        quote = '"'
    node = yaml.ScalarNode("tag:yaml.org,2002:str", value, style=quote)
    out = yaml.serialize(node, Dumper=yaml.SafeDumper, allow_unicode=True, width=1 << 30)
    out = out.removesuffix("\n").removesuffix("\n...")
    if flow and out[:1] not in ("'", '"') and any(c in out for c in ",[]{}"):
        return json.dumps(value, ensure_ascii=False)
    return out


def _append_flow(
    text: str, seq: SequenceNode, entries: Sequence[Entry], key: Node, newline: str
) -> str:
    close = seq.end_mark.index - 1
    if text[close] != "]":  # pragma: no cover - defensive: ruamel's marks disagree
        raise ManifestError(["cannot find the end of the 'resources' list"])
    flow = ", ".join(json.dumps(dict(e), ensure_ascii=False) for e in entries)
    if seq.value:
        return text[:close] + ", " + flow + text[close:]
    # 'resources: []': turn it into a block list below the key.
    column = key.start_mark.column
    style = _Style(dash=column, dvc=column == 0)
    body = _entries_text(entries, style, newline)
    new = _below_key(text, key, seq, body, newline)
    if style.dvc and not _reads_back(text, new, entries, "manifest"):
        new = _below_key(
            text,
            key,
            seq,
            _entries_text(entries, replace(style, dvc=False, files_indent=0), newline),
            newline,
        )
    return new


def _below_key(text: str, key: Node, value: Node, body: str, newline: str) -> str:
    """``text`` with ``value`` ('[]', '~', or nothing) removed and ``body`` on the next lines."""
    start, end = value.start_mark.index, value.end_mark.index
    if start == end:  # no value written (ruamel marks the next token): keep the key's line
        start = end = text.index(":", key.end_mark.index) + 1
    at = _after_line(text, end)
    rest = text[end:at]
    if not rest.endswith(("\n", "\r")):
        rest += newline
    return text[:start].rstrip(" ") + rest + body + text[at:]


# -- checking --------------------------------------------------------------


def _loaded(text: str, shown: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ManifestError([f"{shown}: the edit would not read back: {exc}"]) from None


def _reads_back(old: str, new: str, entries: Sequence[Entry], shown: str) -> bool:
    """Whether ``new`` reads as ``old`` with ``entries`` appended to its ``resources``."""
    before = _loaded(old, shown) or {}
    try:
        after = yaml.safe_load(new)
    except yaml.YAMLError:
        return False
    resources = before.get("resources") or []
    wanted = {**before, "resources": [*resources, *(_plain(e) for e in entries)]}
    return isinstance(after, dict) and after == wanted and list(after) == list(wanted)


def _check_round_trip(old: str, new: str, entries: Sequence[Entry], shown: str) -> None:
    """Refuse an edit that would change anything but appending ``entries``."""
    if not _reads_back(old, new, entries, shown):
        raise ManifestError(
            [f"{shown}: cannot add the entry without rewriting other lines; please add it by hand"]
        )


def _plain(entry: Entry) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in entry.items()}
