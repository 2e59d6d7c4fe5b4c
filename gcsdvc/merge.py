"""A git merge driver for the manifest: entries merge by name, real conflicts are refused.

Two branches that each ran ``gcsdvc add`` both append at the end of the
``resources`` list, which git's line merge reports as a conflict. Registered
by ``gcsdvc install`` (``merge=gcsdvc-manifest`` in ``.gitattributes``), git
runs ``gcsdvc merge-manifest %O %A %B %P`` instead, which merges the three
versions as data:

* ``resources`` entries are matched by ``name``: an entry added, removed or
  changed on one side only is taken from that side; an entry changed on both
  sides merges field by field;
* every other key merges the same way (mappings key by key);
* a value changed differently on both sides is a conflict: the file is left
  with git's usual conflict markers, the conflicts are named, and the driver
  exits 1, so that git reports the conflict as it would without the driver.

The result is git's own line merge where that is clean and means the same;
otherwise the ours side rewritten in DVC's layout (see
:mod:`gcsdvc.manifest_edit`) with the merged values. It is read back and
compared with the merged data before it is written.
"""

from __future__ import annotations

import io
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError as RuamelError

from gcsdvc.errors import GcsdvcError
from gcsdvc.manifest_edit import dump_dvc, dvc_yaml, write_atomic

ATTRIBUTE = "gcsdvc-manifest"
_MISSING = object()


class MergeConflict(Exception):
    """The versions cannot be merged; ``problems`` name each conflict in one line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def merge_texts(base: str, ours: str, theirs: str, shown: str = "manifest") -> str:
    """The merged text of three versions of a manifest, or :class:`MergeConflict`."""
    if ours == theirs or theirs == base:
        return ours
    if ours == base:
        return theirs
    b, o, t = (
        _load(text, side, shown)
        for text, side in ((base, "base"), (ours, "ours"), (theirs, "theirs"))
    )
    problems: list[str] = []
    merged = _merge_mapping(b, o, t, "", problems, top=True)
    if problems:
        raise MergeConflict([f"{shown}: {p}" for p in problems])
    lines = _line_merge(base, ours, theirs)
    if lines is not None and _same(lines, merged):
        return lines
    try:
        text = _render(ours, theirs, o, t, merged)
    except (RuamelError, ValueError, TypeError, RecursionError):  # e.g. a key twice
        text = ""
    if not text or not _same(text, merged):
        raise MergeConflict(
            [f"{shown}: cannot write the merged data back as it reads (merge by hand)"]
        )
    return text


def merge_files(base: Path, ours: Path, theirs: Path, shown: str) -> list[str]:
    """Merge as git's driver does: the result in ``ours``; the conflicts ([] when clean)."""
    texts = [p.read_text(encoding="utf-8") for p in (base, ours, theirs)]
    try:
        merged = merge_texts(texts[0], texts[1], texts[2], shown)
    except MergeConflict as exc:
        # git's usual markers, so that the conflict is resolved as any other.
        subprocess.run(
            [
                "git",
                "merge-file",
                "-L",
                "ours",
                "-L",
                "base",
                "-L",
                "theirs",
                str(ours),
                str(base),
                str(theirs),
            ],
            capture_output=True,
            check=False,
        )
        return exc.problems
    write_atomic(ours, merged)
    return []


# -- merging data -------------------------------------------------------------


def _load(text: str, side: str, shown: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        raise MergeConflict(
            [f"{shown} ({side}): not valid YAML: {str(exc).splitlines()[0]}"]
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise MergeConflict([f"{shown} ({side}): not a YAML mapping"])
    return data


def _merge_value(b: Any, o: Any, t: Any, where: str, problems: list[str]) -> Any:
    if _eq(o, t) or _eq(t, b):
        return o
    if _eq(o, b):
        return t
    if all(isinstance(v, dict) for v in (b, o, t)):
        return _merge_mapping(b, o, t, where, problems)
    problems.append(f"{where} changed differently on both sides")
    return o


def _merge_mapping(
    b: dict[str, Any],
    o: dict[str, Any],
    t: dict[str, Any],
    where: str,
    problems: list[str],
    top: bool = False,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in [*o, *(k for k in t if k not in o)]:
        at = f"{where}.{key}" if where else f"'{key}'"
        if top and key == "resources":
            value = _merge_resources(
                b.get(key, []), o.get(key, _MISSING), t.get(key, _MISSING), problems
            )
        else:
            value = _merge_value(
                b.get(key, _MISSING), o.get(key, _MISSING), t.get(key, _MISSING), at, problems
            )
        if value is not _MISSING:
            out[key] = value
    return out


def _merge_resources(b: Any, o: Any, t: Any, problems: list[str]) -> Any:
    if o is _MISSING or t is _MISSING or not all(isinstance(v, list) for v in (b, o, t)):
        return _merge_value(b, o, t, "'resources'", problems)
    entries = [_by_name(v, side, problems) for v, side in ((b, "base"), (o, "ours"), (t, "theirs"))]
    if any(e is None for e in entries):
        return o
    base, ours, theirs = entries
    assert base is not None and ours is not None and theirs is not None
    out = []
    for name in [*ours, *(n for n in theirs if n not in ours)]:
        value = _merge_value(
            base.get(name, _MISSING),
            ours.get(name, _MISSING),
            theirs.get(name, _MISSING),
            f"entry {name}",
            problems,
        )
        if value is not _MISSING:
            out.append(value)
    return out


def _by_name(entries: list[Any], side: str, problems: list[str]) -> dict[str, Any] | None:
    """The entries by name (an entry without one by its whole text); None when names repeat."""
    out: dict[str, Any] = {}
    for entry in entries:
        name = entry.get("name") if isinstance(entry, dict) else None
        key = (
            f"'{name}'" if isinstance(name, str) else json.dumps(entry, sort_keys=True, default=str)
        )
        if key in out:
            problems.append(f"entry {key} appears twice ({side})")
            return None
        out[key] = entry
    return out


def _eq(a: Any, b: Any) -> bool:
    return a is b or (a is not _MISSING and b is not _MISSING and a == b)


# -- writing ------------------------------------------------------------------


def _line_merge(base: str, ours: str, theirs: str) -> str | None:
    """git's own line merge of the three texts; None when it has conflicts."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="gcsdvc-merge-") as tmp:
        paths = []
        for name, text in (("ours", ours), ("base", base), ("theirs", theirs)):
            path = Path(tmp) / name
            path.write_text(text, encoding="utf-8")
            paths.append(str(path))
        try:
            res = subprocess.run(
                ["git", "merge-file", "-p", *paths], capture_output=True, check=False
            )
        except OSError:
            return None
    if res.returncode != 0:
        return None
    return res.stdout.decode("utf-8", errors="replace")


def _same(text: str, merged: dict[str, Any]) -> bool:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return False
    return (data or {}) == merged and list(data or {}) == list(merged)


def _render(
    ours: str, theirs: str, o: dict[str, Any], t: dict[str, Any], merged: dict[str, Any]
) -> str:
    """``ours`` as ruamel.yaml reads it (comments kept), with the merged values put in."""
    rt = dvc_yaml()
    ours_doc = rt.load(io.StringIO(ours)) if ours.strip() else CommentedMap()
    theirs_doc = rt.load(io.StringIO(theirs)) if theirs.strip() else CommentedMap()
    node = _apply(ours_doc, theirs_doc, o, t, merged, resources=False)
    return dump_dvc(node)


def _apply(on: Any, tn: Any, o: Any, t: Any, m: Any, resources: bool | None) -> Any:
    """The node for merged value ``m``: ours' node, theirs', or ours' with theirs' parts.

    ``resources`` is False at the top, True for the ``resources`` list, None below it.
    """
    if _eq(m, o):
        return on
    if _eq(m, t):
        return tn
    if isinstance(m, dict) and isinstance(on, CommentedMap):
        tmap = tn if isinstance(tn, CommentedMap) else CommentedMap()
        tdata = t if isinstance(t, dict) else {}
        odata = o if isinstance(o, dict) else {}
        for key in [k for k in on if k not in m]:
            del on[key]
        for n, (key, value) in enumerate(m.items()):
            child = _apply(
                on.get(key),
                tmap.get(key),
                odata.get(key, _MISSING),
                tdata.get(key, _MISSING),
                value,
                resources=resources is False and key == "resources",
            )
            if key in on:
                on[key] = child
            else:
                on.insert(min(n, len(on)), key, child)
        return on
    if (
        resources is True
        and isinstance(m, list)
        and isinstance(on, CommentedSeq)
        and isinstance(o, list)
    ):
        tseq = tn if isinstance(tn, CommentedSeq) and isinstance(t, list) else CommentedSeq()
        tlist = t if isinstance(t, list) else []
        by_name_o = {_name(e): (node, e) for node, e in zip(on, o, strict=False)}
        by_name_t = {_name(e): (node, e) for node, e in zip(tseq, tlist, strict=False)}
        items = []
        for entry in m:
            name = _name(entry)
            onode, oval = by_name_o.get(name, (None, _MISSING))
            tnode, tval = by_name_t.get(name, (None, _MISSING))
            items.append(_apply(onode, tnode, oval, tval, entry, resources=None))
        seq = CommentedSeq(items)
        seq.ca.comment = on.ca.comment
        return seq
    return m


def _name(entry: Any) -> str:
    name = entry.get("name") if isinstance(entry, dict) else None
    return f"'{name}'" if isinstance(name, str) else json.dumps(entry, sort_keys=True, default=str)


# -- installing ---------------------------------------------------------------


def driver_command() -> str:
    """How git runs the driver: ``gcsdvc`` when it is on PATH, else this interpreter."""
    import shlex
    import shutil
    import sys

    found = shutil.which("gcsdvc")
    if found and Path(found).resolve().parent == Path(sys.executable).resolve().parent:
        return "gcsdvc"
    return f"{shlex.quote(sys.executable)} -m gcsdvc"


@dataclass(frozen=True)
class Installed:
    """What ``install`` found or did."""

    driver: str  # the command git runs
    attribute: str  # the .gitattributes line
    done: list[str]  # what was changed, one line each ([] when everything was in place)


def install(manifest: Path) -> Installed:
    """Register the driver in this clone's git config and for ``manifest`` in .gitattributes.

    Raises :class:`GitError` outside a git work tree.
    """
    if not manifest.parent.is_dir():
        raise GitError(f"{manifest.parent}: no such folder")
    try:
        top = _git("rev-parse", "--show-toplevel", cwd=manifest.parent)
    except GitError as exc:
        raise GitError(f"{manifest.parent} is not in a git work tree ({exc})") from None
    root = Path(top).resolve()
    try:
        rel = manifest.resolve().relative_to(root).as_posix()
    except ValueError:
        raise GitError(f"{manifest} is not inside the git work tree {root}") from None
    if any(c in rel for c in ' \t\n"\\#[]*?!'):
        raise GitError(
            f"{rel}: cannot name this path in .gitattributes; add "
            f"'<pattern> merge={ATTRIBUTE}' there by hand"
        )
    done = []
    wanted = {
        f"merge.{ATTRIBUTE}.name": "gcsdvc manifest: entries merged by name",
        f"merge.{ATTRIBUTE}.driver": f"{driver_command()} merge-manifest %O %A %B %P",
    }
    for key, value in wanted.items():
        if _git("config", "--local", "--default", "", "--get", key, cwd=root) != value:
            _git("config", "--local", key, value, cwd=root)
            if key.endswith(".driver"):
                done.append(f"registered the manifest merge driver in .git/config ({key})")
    line = f"/{rel} merge={ATTRIBUTE}"
    attributes = root / ".gitattributes"
    try:
        text = attributes.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = ""
    if line not in text.splitlines():
        head = text if not text or text.endswith("\n") else text + "\n"
        write_atomic(attributes, head + line + "\n")
        done.append(
            f"added '{line}' to .gitattributes; commit it so that merges of every clone use it"
        )
    return Installed(wanted[f"merge.{ATTRIBUTE}.driver"], line, done)


class GitError(GcsdvcError):
    """git refused or is not there; the message is one line."""


def _git(*args: str, cwd: Path) -> str:
    try:
        res = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise GitError(f"cannot run git: {exc}") from None
    if res.returncode:
        message = (res.stderr.strip().splitlines() or ["failed"])[-1]
        raise GitError(f"git {args[0]}: {message.removeprefix('fatal: ')}")
    return res.stdout.strip()
