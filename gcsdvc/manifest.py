"""The resources manifest: finding it, parsing it, validating every entry.

A manifest is a YAML file (by default ``params.yaml`` at the root of the DVC
repository) with a ``resources`` list and an optional ``gcsdvc`` settings
mapping. Validation collects every problem before it fails, one line each,
naming the file, line, entry and field.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import fnmatch
import functools
import hashlib
import ipaddress
import json
import os
import posixpath
import re
import reprlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import astuple, dataclass, field, fields
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from gcsdvc.errors import ManifestError, NotARepoError, UnknownResourceError
from gcsdvc.files import atomic_write

DEFAULT_MANIFEST = "params.yaml"
DEFAULT_DATA_DIR = "data"

ENTRY_KEYS = (
    "name",
    "bucket",
    "blob",
    "subblob",
    "files",
    "destination",
    "skip_if_exist",
    "description",
    "to_remote",
)
SETTING_KEYS = ("data_dir", "pin_generations")
# The first, Python-list version of the manifest spelt this key wrongly.
LEGACY_KEYS = {"skil_if_exist": "skip_if_exist"}

_BUCKET_PART = re.compile(r"^[a-z0-9](?:[a-z0-9_-]*[a-z0-9])?$")
_DRIVE = re.compile(r"[A-Za-z]:")  # a Windows path: "C:" or "C:/x"
# C0 and C1 control characters, Unicode line/paragraph separators and lone surrogates:
# none of them belongs in a bucket name, an object path or a local file name.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")

# PyYAML's C loader gives every node its line. ruamel.yaml (which DVC brings) would too, but its
# round-trip load alone is over ten times slower on 2,000 entries (4.7 s against 0.38 s; 1.5 s
# against 0.10 s with five files each), far more than the node walk it would save.
try:
    from yaml import CSafeLoader as _BaseLoader
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import SafeLoader as _BaseLoader  # type: ignore[assignment]


class _Loader(_BaseLoader):
    """The safe loader, naming the line of a value no constructor accepts (``2023-02-30``)."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, TypeError, OverflowError, AttributeError, KeyError, IndexError) as exc:
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read {_show(node.value)}: {exc}", node.start_mark
            ) from None


# Values quoted in messages are shortened, so that a huge or deeply aliased value
# (a "billion laughs" document) cannot blow up the report.
_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = 120
_repr.maxlevel = 2
_repr.maxlist = _repr.maxtuple = _repr.maxset = _repr.maxfrozenset = _repr.maxdict = 5


@dataclass(frozen=True)
class Resource:
    """One experiment of the manifest: which objects to bring down, where, and why."""

    name: str
    bucket: str
    blob: str
    subblob: str
    files: tuple[str, ...] | None  # None: the whole prefix
    destination: str
    skip_if_exist: bool
    description: str
    to_remote: bool = False  # archived into the DVC remote (gcsdvc.archive), never downloaded
    index: int = 0
    line: int | None = None
    # The manifest holding the entry, repo-relative; None: params.yaml at the root.
    manifest: str | None = None

    # Cached: a sync asks for them several times per file.
    @functools.cached_property
    def prefix(self) -> str:
        """The object prefix inside the bucket, without slashes at either end."""
        return join_path(self.blob, self.subblob)

    @functools.cached_property
    def url(self) -> str:
        """``gs://BUCKET/BLOB[/SUBBLOB]``: where the experiment's objects live."""
        return f"gs://{self.bucket}/{self.prefix}"

    def source(self, file: str | None) -> str:
        """The ``gs://`` URL of one listed file, or of the whole prefix for None."""
        return self.url if file is None else f"{self.url}/{file}"

    @property
    def label(self) -> str:
        """How messages name this entry: ``resources[2] (exp-b)``."""
        return f"resources[{self.index}] ({self.name})"

    @property
    def targets(self) -> tuple[str | None, ...]:
        """What gets one stage each: the listed files, or None for the whole prefix."""
        return (None,) if self.files is None else self.files

    @property
    def patterns(self) -> tuple[str, ...]:
        """The glob patterns among ``files``."""
        return tuple(f for f in self.files or () if is_pattern(f))


@dataclass(frozen=True)
class Manifest:
    """A validated manifest, with where it lives and where its data goes."""

    path: Path
    root: Path
    data_dir: str = DEFAULT_DATA_DIR
    # None ("auto"): pin while the repository has no default DVC remote.
    pin_generations: bool | None = None
    resources: tuple[Resource, ...] = ()
    warnings: tuple[str, ...] = field(default=())

    @property
    def data_path(self) -> Path:
        return self.root / self.data_dir

    @property
    def owner(self) -> str | None:
        """What this manifest's stages record of it (see :attr:`Resource.manifest`)."""
        return _owner(self.path, self.root)

    def local(self, resource: Resource, file: str | None = None) -> str:
        """Repo-relative POSIX path of a file (or, without one, of the entry's folder)."""
        folder = _joined(self.data_dir, resource.destination)
        if file is None:
            return folder
        # posixpath.join's result, at a third of its cost: a no-op asks once per file, twice.
        plain = folder and not folder.endswith("/") and not file.startswith("/")
        return f"{folder}/{file}" if plain else posixpath.join(folder, file)

    def get(self, name: str) -> Resource:
        """The entry called ``name``; the error suggests close matches."""
        for res in self.resources:
            if res.name == name:
                return res
        raise UnknownResourceError(_unknown_name_message(name, self.names))

    @property
    def names(self) -> list[str]:
        return [res.name for res in self.resources]

    def select(self, patterns: Sequence[str]) -> list[Resource]:
        """Entries matching any of the names or shell globs; all entries when none given."""
        if not patterns:
            return list(self.resources)
        chosen: dict[str, Resource] = {}
        for pattern in patterns:
            hits = [res for res in self.resources if matches(res.name, [pattern])]
            if not hits:
                raise UnknownResourceError(_unknown_name_message(pattern, self.names))
            chosen.update((res.name, res) for res in hits)
        return [res for res in self.resources if res.name in chosen]


def join_path(*parts: str) -> str:
    """``parts`` joined with '/', leaving out the empty ones."""
    return "/".join(part for part in parts if part)


def matches(name: str, patterns: Sequence[str]) -> bool:
    """Whether an experiment name is one of ``patterns`` (names or shell globs)."""
    return any(name == p or fnmatch.fnmatchcase(name, p) for p in patterns)


def did_you_mean(name: str, choices: Iterable[str], cutoff: float = 0.6, prefix: str = "") -> str:
    """``did you mean 'a', 'b'?`` for the names of ``choices`` close to ``name``, or "".

    A choice that differs from ``name`` only in Unicode normalization (a name typed
    as NFC, stored as NFD) looks the same on screen: it comes first, with the code
    points that tell the two apart. ``prefix`` is put before each name shown.
    """
    listed = list(choices)
    same = [c for c in listed if c != name and _nfc(c) == _nfc(name)]
    close = same + [
        c
        for c in difflib.get_close_matches(name, listed, n=4, cutoff=cutoff)
        if c not in same and c != name
    ]
    shown = [
        f"{join_path(prefix, c)!r}"
        + (f" (the same letters in another Unicode form: {c!a})" if c in same else "")
        for c in close[:3]
    ]
    return f"did you mean {', '.join(shown)}?" if shown else ""


def _nfc(text: str) -> str:
    import unicodedata

    return unicodedata.normalize("NFC", text)


def _unknown_name_message(name: str, names: list[str]) -> str:
    close = did_you_mean(name, names, cutoff=0.5)
    hint = f"; {close}" if close else ""
    if not names:
        hint = "; the manifest has no resources"
    return f"unknown experiment {name!r}{hint}"


def find_root(start: Path | None = None) -> Path | None:
    """The nearest folder at or above ``start`` that holds a ``.dvc`` folder."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / ".dvc").is_dir():
            return folder
    return None


def manifest_path(
    path: str | os.PathLike[str] | None = None, *, how: str = "pass --manifest PATH"
) -> Path:
    """The manifest to use: ``path`` if given, else ``params.yaml`` at the DVC root."""
    if path is not None:
        return Path(path).absolute()
    root = find_root()
    if root is None:
        raise NotARepoError(
            f"no DVC repository found from {Path.cwd()} upward; {init_hint(Path.cwd())}, or {how}"
        )
    return root / DEFAULT_MANIFEST


def init_hint(folder: Path) -> str:
    """How to make ``folder`` a DVC repository: ``dvc init`` at the top of its git repository,
    else ``git init && dvc init``."""
    here = folder.resolve()
    top = next((f for f in (here, *here.parents) if (f / ".git").exists()), None)
    if top is None:
        return "run 'git init && dvc init' there"
    if top == here:
        return "run 'dvc init' there"
    return f"run 'dvc init' in {top}, the top of its git repository"


def load_manifest(
    path: str | os.PathLike[str] | None = None, *, how: str = "pass --manifest PATH"
) -> Manifest:
    """Read and validate a manifest; raise :class:`ManifestError` listing every problem.

    ``how`` ends the message when no ``path`` is given and no DVC repository is found.
    """
    file = manifest_path(path, how=how)
    shown = _display(file)
    try:
        if file.is_fifo() or file.is_char_device() or file.is_socket():  # a read would hang
            raise ManifestError([f"{shown}: not a regular file"])
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(
            [
                f"{shown}: manifest not found; 'gcsdvc add gs://BUCKET/PATH' or "
                "'gcsdvc discover gs://BUCKET/PATH --add' creates it"
            ]
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError([f"{shown}: cannot read manifest: {exc}"]) from None
    root = find_root(file.parent) or file.parent
    return _remembered(text, file, root)


def _remembered(text: str, file: Path, root: Path) -> Manifest:
    """:func:`parse_manifest`, kept in ``.dvc/tmp`` for the next run with the same text.

    Parsing 100,000 files takes most of a second; a hit takes a few milliseconds.
    The key is the text, where it lives (messages name it) and this module's own
    size and mtime, so an upgraded gcsdvc validates again. Only valid manifests are kept.
    """
    cache = root / ".dvc" / "tmp" / "gcsdvc-manifest.json"
    try:
        code = os.stat(__file__)  # noqa: PTH116 - a str path
    except OSError:  # not installed as files (a zip): no cache
        return parse_manifest(text, file, root)
    what = (text, str(file), str(root), _display(file), code.st_mtime_ns, code.st_size)
    key = hashlib.sha256(repr(what).encode("utf-8", "surrogateescape")).hexdigest()
    with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
        found = json.loads(cache.read_text(encoding="utf-8"))
        if found["key"] == key:
            names = [f.name for f in fields(Resource)]
            resources = tuple(
                _resource(dict(zip(names, row, strict=True))) for row in found["resources"]
            )
            return Manifest(
                file,
                root,
                found["data_dir"],
                found["pin_generations"],
                resources,
                tuple(found["warnings"]),
            )
    manifest = parse_manifest(text, file, root)
    if cache.parent.is_dir():
        value = {
            "key": key,
            "data_dir": manifest.data_dir,
            "pin_generations": manifest.pin_generations,
            "warnings": manifest.warnings,
            "resources": [astuple(res) for res in manifest.resources],
        }
        with contextlib.suppress(OSError, ValueError):  # only an optimisation
            atomic_write(cache, json.dumps(value, ensure_ascii=False))
    return manifest


def _display(file: Path) -> str:
    """``file`` relative to the working folder when it is below it, else as an absolute path."""
    try:
        shown = os.path.relpath(file)
    except ValueError:  # another drive on Windows
        return str(file)
    return str(file) if shown.startswith("..") else shown


def _resource(row: dict[str, Any]) -> Resource:
    files = row["files"]
    return Resource(**{**row, "files": None if files is None else tuple(files)})


_CONFLICT_START = re.compile(r"^<{7}(?: |$)", re.MULTILINE)
_CONFLICT_END = re.compile(r"^>{7}(?: |$)", re.MULTILINE)


def _conflict_line(text: str) -> int | None:
    """The line of the first git conflict marker, when ``text`` has a whole conflict."""
    start = _CONFLICT_START.search(text)
    if start is None or _CONFLICT_END.search(text, start.end()) is None:
        return None
    return text.count("\n", 0, start.start()) + 1


def _owner(file: Path, root: Path) -> str | None:
    """What a stage records of the manifest that wrote it: its repo-relative path, or None
    for the default one (stages written before manifests were told apart say nothing)."""
    try:
        rel = file.absolute().relative_to(root.absolute()).as_posix()
    except ValueError:
        rel = file.name
    return None if rel == DEFAULT_MANIFEST else rel


def parse_manifest(text: str, file: Path, root: Path) -> Manifest:
    """Validate manifest text; ``file`` is only used to name it in messages."""
    checker = _Checker(_display(file), root)
    node, data = checker.load(text)
    settings: dict[str, Any] = {}
    resources: list[Resource] = []
    if node is not None:
        settings = checker.settings(data, node)
        resources = checker.resources(data, node, settings.get("data_dir", DEFAULT_DATA_DIR))
    if checker.problems:
        raise ManifestError(checker.in_line_order())
    owner = _owner(file, root)
    if owner is not None:
        resources = [dataclasses.replace(res, manifest=owner) for res in resources]
    return Manifest(
        path=file,
        root=root,
        resources=tuple(resources),
        warnings=tuple(checker.warnings),
        **settings,
    )


class _Checker:
    """Walks the YAML node tree, turning the problems of pure checks into located lines."""

    def __init__(self, shown: str, root: Path) -> None:
        self.shown = shown
        self.root = root
        self.problems: list[str] = []
        self.warnings: list[str] = []
        # The key/value pairs of each mapping node as written, before merge keys
        # ("<<: *defaults") are flattened into it by the constructor.
        self.written: dict[int, list[tuple[yaml.Node, yaml.Node]]] = {}

    def in_line_order(self) -> list[str]:
        """The problems as the file reads: the file's own first, then by line (stable)."""
        at_line = re.compile(rf"{re.escape(self.shown)}:(\d+)")

        def line(problem: str) -> int:
            found = at_line.match(problem)
            return int(found[1]) if found else 0

        return sorted(self.problems, key=line)

    def fail(self, line: int | None, where: str, message: str) -> None:
        at = f"{self.shown}:{line}" if line else self.shown
        self.problems.append(f"{at}: {where}{': ' if where else ''}{message}")

    def load(self, text: str) -> tuple[yaml.MappingNode | None, dict[str, Any]]:
        loader = None
        try:
            loader = _Loader(text)
            node = loader.get_single_node()
            if node is not None:
                self.written = _written_pairs(node)
            data = loader.construct_document(node) if node is not None else None
        except yaml.MarkedYAMLError as exc:
            conflict = _conflict_line(text)
            if conflict:
                self.problems.append(
                    f"{self.shown}:{conflict}: unresolved git merge conflict (<<<<<<< markers): "
                    "keep what both sides meant, delete the marker lines, 'git add' the file; "
                    "'gcsdvc install' lets git merge manifest entries by name"
                )
                return None, {}
            mark = exc.problem_mark or exc.context_mark
            where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
            problem = _one_line(exc.problem or exc.context or "invalid YAML")
            kind = "error" if isinstance(exc, yaml.constructor.ConstructorError) else "syntax error"
            self.problems.append(f"{self.shown}{where}: YAML {kind}: {problem}")
            return None, {}
        except yaml.reader.ReaderError as exc:
            where = _offset_position(text, exc.position)
            char = (
                exc.character if isinstance(exc.character, int) else ord(exc.character[:1] or "?")
            )
            self.problems.append(
                f"{self.shown}{where}: YAML error: character #x{char:04x} is not allowed "
                f"({_one_line(exc.reason)}); quote it as an escape in a double-quoted string"
            )
            return None, {}
        except (yaml.YAMLError, ValueError, TypeError, RecursionError, MemoryError) as exc:
            self.problems.append(f"{self.shown}: YAML error: {_one_line(str(exc))}")
            return None, {}
        finally:
            if loader is not None:
                loader.dispose()
        if not isinstance(node, yaml.MappingNode) or not isinstance(data, dict):
            self.fail(None, "", "the manifest must be a mapping with a 'resources' list")
            return None, {}
        self.duplicate_keys(node, "")
        return node, data

    def duplicate_keys(self, node: yaml.MappingNode, where: str) -> None:
        seen: set[object] = set()
        pairs: list[tuple[yaml.Node, yaml.Node]] = self.written.get(id(node)) or node.value
        for key_node, _ in pairs:
            if not isinstance(key_node, yaml.ScalarNode):
                continue  # the constructor has refused it already (unhashable key)
            key = (key_node.tag, key_node.value)
            if key in seen:
                self.fail(_line(key_node), where, f"key {_show(key_node.value)} appears twice")
            seen.add(key)

    def settings(self, data: dict[str, Any], node: yaml.MappingNode) -> dict[str, Any]:
        raw = data.get("gcsdvc")
        sub = _pair(node, "gcsdvc")[1]
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            self.fail(_line(sub), "gcsdvc", "must be a mapping of settings")
            return {}
        if isinstance(sub, yaml.MappingNode):
            self.duplicate_keys(sub, "gcsdvc")
        out: dict[str, Any] = {}
        for key, value in raw.items():
            if key in _SETTINGS:
                value, problems = _SETTINGS[key](value)
            else:
                problems = (f"unknown setting{_did_you_mean(str(key), SETTING_KEYS, 'settings')}",)
            for problem in problems:
                at = _line(_pair(sub, str(key))[0]) or _line(sub)
                self.fail(at, f"gcsdvc.{_one_line(str(key))}", problem)
            if not problems:
                out[key] = value
        return out

    def resources(
        self, data: dict[str, Any], node: yaml.MappingNode, data_dir: str
    ) -> list[Resource]:
        raw = data.get("resources")
        seq = _pair(node, "resources")[1]
        if "resources" not in data:
            self.fail(None, "", "no 'resources' list")
            return []
        if not isinstance(raw, list) or not isinstance(seq, yaml.SequenceNode):
            self.fail(_line(seq), "resources", "must be a list of entries")
            return []
        if len(seq.value) != len(raw):  # pragma: no cover - defensive: nodes and data disagree
            self.fail(_line(seq), "resources", "cannot be matched to its YAML lines")
            return []
        entries = []
        for index, (item, item_node) in enumerate(zip(raw, seq.value, strict=True)):
            res = self.entry(index, item, item_node)
            if res is not None:
                entries.append(res)
                self.names(res, item_node, data_dir)
        self.cross_check(entries, data_dir)
        return entries

    def entry(self, index: int, raw: Any, node: yaml.Node) -> Resource | None:
        line = _line(node)
        if not isinstance(raw, dict) or not isinstance(node, yaml.MappingNode):
            self.fail(line, f"resources[{index}]", "must be a mapping of fields")
            return None
        # Name the entry as the user knows it: its name, which defaults to the destination.
        called = raw.get("name")
        if called is None and isinstance(called := raw.get("destination"), str):
            called = called.rstrip("/")
        shown = f" ({_one_line(called)})" if isinstance(called, str) and called.strip() else ""
        label = f"resources[{index}]{shown}"
        self.duplicate_keys(node, label)
        values, problems, warnings = _entry_fields(raw)
        for key, message in warnings:
            at = _line(_pair(node, key)[0]) or line
            self.warnings.append(f"{self.shown}:{at}: {label}: {message}")
        for key, message in problems:
            at = _line(_pair(node, key)[0]) or line
            self.fail(at, f"{label} field '{_one_line(key)}'", message)
        return None if problems else Resource(**values, index=index, line=line)

    def names(self, res: Resource, node: yaml.Node, data_dir: str) -> None:
        """Refuse the objects the entry names that DVC cannot carry (see :func:`unsafe_name`)."""
        if res.files is None:
            # DVC's folder import: the prefix is the URL's end.
            why = _url_problem(res.prefix)
            if why:
                at = _line(_pair(node, "subblob" if res.subblob else "blob")[0]) or res.line
                self.fail(at, res.label, f"{res.url} {why}; rename the prefix")
            return
        space = room(self.root / data_dir / res.destination)
        at = _line(_pair(node, "files")[0]) or res.line
        for file in res.files:
            if is_pattern(file):
                continue  # the objects it matches are checked as a sync or status lists them
            why = unsafe_name(file, res.prefix, space)
            if why:
                self.fail(
                    at,
                    f"{res.label} field 'files'",
                    f"{_show(file)} ({res.source(file)}) {why}; "
                    "DVC cannot carry it: rename the object or leave it out of 'files'",
                )

    def cross_check(self, entries: list[Resource], data_dir: str) -> None:
        by_name: dict[str, Resource] = {}
        owner: dict[str, Resource] = {}  # local file or whole-prefix folder -> entry
        for res in entries:
            other = by_name.setdefault(res.name, res)
            if other is not res:
                self.fail(
                    res.line,
                    res.label,
                    f"name {res.name!r} is also used by resources[{other.index}]"
                    + ("" if other.name != other.destination else "; give each entry a 'name'"),
                )
            targets = [posixpath.join(res.destination, f) for f in res.files or ()]
            for target in targets or [res.destination]:
                other = owner.setdefault(target, res)
                if other is not res:
                    self.fail(
                        res.line,
                        res.label,
                        f"saves to {posixpath.join(data_dir, target)!r}, "
                        f"as resources[{other.index}] ({other.name}) does",
                    )
        for target, res in owner.items():
            parts = target.split("/")
            for cut in range(1, len(parts)):
                parent = "/".join(parts[:cut])
                holder = owner.get(parent)
                if holder is not None:
                    self.fail(
                        res.line,
                        res.label,
                        f"{posixpath.join(data_dir, parent)!r} would be both a folder and a file "
                        f"or whole-prefix import of resources[{holder.index}] ({holder.name})",
                    )


# -- glob patterns in ``files`` -----------------------------------------------

_GLOB_CHARS = re.compile(r"[*?[]")


def is_pattern(file: str) -> bool:
    """Whether a ``files`` item is a glob pattern (has ``*``, ``?`` or ``[``)."""
    return _GLOB_CHARS.search(file) is not None


def pattern_problem(pattern: str) -> str | None:
    """Why ``pattern`` is not a valid glob, or None (plain paths are always valid)."""
    for segment in pattern.split("/"):
        if "**" in segment and segment != "**":
            return "uses '**' inside a name; '**' must be a whole folder part ('**/*.csv')"
        rest = segment
        while "[" in rest:
            rest = rest[rest.index("[") + 1 :]
            body = rest[1:] if rest[:1] in "!^" else rest
            # A ']' right after '[' (or '[!') is a literal member of the set.
            close = body.find("]", 1)
            if close < 0:
                return "has a '[' without its closing ']'"
            rest = body[close + 1 :]
    return None


def _segment_regex(segment: str) -> str:
    out = []
    i = 0
    while i < len(segment):
        char = segment[i]
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            j = i + 1
            negate = segment[j : j + 1] in ("!", "^")
            j += negate
            close = segment.index("]", j + 1)  # pattern_problem has checked it is there
            members = "".join(c if c == "-" else re.escape(c) for c in segment[j:close])
            out.append(f"[^/{members}]" if negate else f"(?!/)[{members}]")
            i = close
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out)


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """The regular expression of a ``files`` glob, matched against whole object paths.

    ``*``, ``?`` and ``[...]`` stay within one folder; a ``**`` part spans any
    number of folders (also none).
    """
    parts = pattern.split("/")
    regex = ""
    for n, part in enumerate(parts):
        last = n == len(parts) - 1
        if part == "**":
            regex += ".*" if last else "(?:[^/]+/)*"
        else:
            regex += _segment_regex(part) + ("" if last else "/")
    return re.compile(regex, re.DOTALL)


def pattern_root(pattern: str) -> str:
    """The fixed folders a pattern starts with (``eval`` for ``eval/*.csv``); may be empty."""
    parts = pattern.split("/")[:-1]
    fixed = []
    for part in parts:
        if is_pattern(part):
            break
        fixed.append(part)
    return "/".join(fixed)


def match_files(patterns: Sequence[str], names: Iterable[str]) -> dict[str, list[str]]:
    """For each pattern, the ``names`` (object paths relative to the prefix) it matches, sorted.

    A name equal to the pattern always matches, so an object literally called
    ``q?.txt`` is found by the item ``q?.txt``.
    """
    ordered = sorted(names)
    out: dict[str, list[str]] = {}
    for pattern in patterns:
        regex = compile_pattern(pattern)
        out[pattern] = [n for n in ordered if n == pattern or regex.fullmatch(n)]
    return out


# -- field checks: each takes a value as loaded and returns it cleaned, with its problems ------
# (bare messages: _Checker alone adds the file, line, entry and field).

_Checked = tuple[Any, tuple[str, ...]]
_Check = Callable[[Any], _Checked]
_Found = list[tuple[str, str]]  # (field, message) pairs


def _entry_fields(raw: dict[Any, Any]) -> tuple[dict[str, Any], _Found, _Found]:
    """An entry's cleaned fields, its problems and its warnings."""
    values = dict(raw)
    problems: _Found = []
    warnings: _Found = []
    for old, new in LEGACY_KEYS.items():
        if old in values and new in values:
            problems.append((old, f"give only '{new}' (the old spelling '{old}' is also present)"))
        elif old in values:
            warnings.append((old, f"'{old}' is the old misspelling of '{new}'; please rename it"))
            values[new] = values.pop(old)
    for key in values:
        if key not in ENTRY_KEYS and key not in LEGACY_KEYS:
            problems.append((str(key), f"unknown field{_did_you_mean(str(key), ENTRY_KEYS)}"))
    for key in ("bucket", "blob", "destination"):
        if values.get(key) is None:
            problems.append((key, "is required"))
    out: dict[str, Any] = {"subblob": "", "files": None, "skip_if_exist": True, "description": ""}
    for key, check in _FIELDS.items():
        if key in values:
            out[key], found = check(values[key])
            for problem in found:
                problems.append((key, problem))
    if out.get("name") is None:
        out["name"] = out.get("destination")
    if out.get("to_remote") is True and "files" not in values:
        problems.append(("to_remote", _NO_FOLDER_ARCHIVE))
    return out, problems, warnings


def _text(value: Any) -> _Checked:
    """A string, else "" and why; None is a missing field, reported as required."""
    if isinstance(value, str) or value is None:
        return value or "", ()
    return "", (f"must be a string, not {type(value).__name__} {_show(value)} (quote it in YAML)",)


def _bucket(value: Any) -> _Checked:
    bucket, found = ("", ("must not be empty",)) if value == "" else _text(value)
    if _CONTROL.search(bucket):
        found += (f"contains a control character: {_show(bucket)}",)
    if bucket and (problem := _bucket_problem(bucket)):
        found += (f"invalid bucket name {_show(bucket)}: {problem}",)
    return bucket, found


@functools.lru_cache(maxsize=4096)
def _joined(data_dir: str, destination: str) -> str:
    return posixpath.join(data_dir, destination)


def _path(value: Any, empty: bool = False, local: bool = False) -> _Checked:
    """A blob, subblob (may be ``empty``) or destination (``local``), without a trailing '/'."""
    if not isinstance(value, str) or (empty and not value.strip("/")):
        return "", _text(value)[1]
    if problem := path_problem(value):
        return "", (f"{_show(value)} {problem}",)
    path = value.rstrip("/")
    problem = _local_problem(path) if local else None
    return path, (f"{_show(path)} {problem}",) if problem else ()


def _flag(value: Any) -> _Checked:
    return value, () if isinstance(value, bool) else (f"must be true or false, not {_show(value)}",)


def _files(value: Any) -> _Checked:
    if not isinstance(value, list):
        return None, ("must be a list of object paths (omit it to import the whole prefix)",)
    if not value:
        return None, ("is empty; list the files, or omit 'files' to import the whole prefix",)
    files: dict[str, None] = {}  # ordered, and quick to ask "listed twice?"
    found: list[str] = []
    for i, item in enumerate(value):
        if not isinstance(item, str):
            found.append(f"item {i} must be a string, not {_show(item)}")
            continue
        problem = (
            path_problem(item, trailing_slash=False)
            or _local_problem(item)
            or pattern_problem(item)
        )
        if problem is None and item in files:
            problem = "is listed twice"
        if problem:
            found.append(f"{_show(item)} {problem}")
        else:
            files[item] = None
    return tuple(files), tuple(found)


def _name(value: Any) -> _Checked:
    if value is None or (isinstance(value, str) and value.strip() and not _CONTROL.search(value)):
        return value, ()
    return value, (f"must be a non-empty single-line string, not {_show(value)}",)


def _data_dir(value: Any) -> _Checked:
    problem = path_problem(value)
    if problem is None and {".dvc", ".git"} & set(value.split("/")):
        problem = "must not be inside .dvc or .git"
    if problem:
        return value, (f"{problem} (got {_show(value)})",)
    return value.rstrip("/"), ()


def _pin_generations(value: Any) -> _Checked:
    if isinstance(value, bool) or value == "auto":
        return (None if value == "auto" else value), ()
    return value, (f"must be auto, true or false, not {_show(value)}",)


# In the order their problems are reported.
_FIELDS: dict[str, _Check] = {
    "bucket": _bucket,
    "blob": _path,
    "subblob": partial(_path, empty=True),
    "destination": partial(_path, local=True),
    "description": _text,
    "skip_if_exist": _flag,
    "files": _files,
    "name": _name,
    "to_remote": _flag,
}
_NO_FOLDER_ARCHIVE = (
    "needs 'files' (paths or globs): a whole-prefix import cannot be archived into the DVC "
    "remote object by object"
)
_SETTINGS: dict[str, _Check] = {"data_dir": _data_dir, "pin_generations": _pin_generations}


def path_problem(value: Any, trailing_slash: bool = True) -> str | None:
    """Why ``value`` is not a safe relative POSIX path, or None when it is."""
    if not isinstance(value, str):
        return f"must be a string, not {type(value).__name__}"
    if not value:
        return "must not be empty"
    if _CONTROL.search(value):
        return "contains a NUL or control character"
    if "\\" in value:
        return "contains a backslash; use '/' to separate folders"
    if value.startswith("/") or _DRIVE.match(value):
        return "is absolute; give a path relative to the prefix or data folder"
    body = value[:-1] if trailing_slash and value.endswith("/") else value
    segments = body.split("/")
    if ".." in segments:
        return "has a '..' segment, which would leave the data folder"
    if "." in segments or "" in segments:
        return "has an empty or '.' segment"
    return None


# Files DVC reads in the data folder: a pipeline (DVC refuses it as an output), its lock, and
# ignore rules (DVC would stop seeing the folder's data: "no data or pipelines tracked").
_DVC_FILES = {
    "dvc.yaml": "DVC reads as a pipeline file and refuses as an output",
    "dvc.lock": "DVC takes for the lock file of a pipeline beside it",
    ".dvcignore": "DVC reads as ignore rules for the folder's data",
}


def _local_problem(path: str) -> str | None:
    """Why a local path (below the data folder) would clash with files git or DVC own."""
    if ".dvc" not in path and ".git" not in path and "dvc." not in path:
        return None  # the usual case, at a tenth of the cost
    parts = path.split("/")
    if ".git" in parts:
        return "has a part named '.git', which git never tracks"
    if parts[-1] in _DVC_FILES:
        return f"is named {parts[-1]!r}, which {_DVC_FILES[parts[-1]]}"
    if parts[-1].endswith(".dvc"):
        return "ends with '.dvc', which would clash with DVC's stage files"
    if parts[-1] == ".gitignore":
        return "is named '.gitignore', which DVC writes itself"
    if any(part.endswith(".dvc") for part in parts):
        return "has a folder ending in '.dvc', which would clash with DVC's stage files"
    if ".gitignore" in parts:
        return "has a folder named '.gitignore', which DVC writes as a file"
    return None


# -- object names DVC cannot carry ---------------------------------------------

# DVC writes a copy beside its target as NAME.<22 characters>.tmp (dvc_objects' tmp_fname) and a
# file's stage as NAME.dvc: the longer of the two must fit the file system's name limit.
_BESIDE = len(".0123456789012345678901.tmp")


@dataclass(frozen=True)
class Room:
    """What the file system holds below an entry's data folder, in bytes."""

    name_max: int = 255  # one name (PC_NAME_MAX)
    path_max: int = 4095  # a path below the folder: PC_PATH_MAX less the folder's own path


def room(folder: Path) -> Room:
    """The :class:`Room` below ``folder``, asked of its nearest existing folder (255 and 4096)."""
    return _room(os.path.abspath(folder))  # noqa: PTH100 - no symlinks resolved


@functools.lru_cache(maxsize=4096)
def _room(folder: str) -> Room:
    path = Path(folder)
    existing = next((str(p) for p in (path, *path.parents) if p.is_dir()), path.anchor)
    limits = []
    for name, default in (("PC_NAME_MAX", 255), ("PC_PATH_MAX", 4096)):
        try:
            value = os.pathconf(existing, name)
        except (AttributeError, ValueError, OSError):  # Windows has no pathconf
            value = -1
        limits.append(value if value > 0 else default)
    used = len(os.fsencode(folder)) + 1  # the folder and the '/' after it
    return Room(limits[0], max(0, limits[1] - 1 - used))


def unsafe_name(
    file: str, prefix: str = "", space: Room = Room(), pinned: bool = False
) -> str | None:
    """Why DVC cannot carry the object ``gs://BUCKET/PREFIX/FILE`` as ``FILE`` below its folder.

    None when it can. The reason reads after the object's name ("'x#12' ends with ...");
    callers add what to do, which depends on how the name came in. ``space`` is the
    file system's limits below the entry's data folder (see :func:`room`); ``pinned``:
    the file's stage will pin the object generation.
    """
    key = join_path(prefix, file)
    return (
        path_problem(file, trailing_slash=False)
        or _local_problem(file)
        or _url_problem(key)
        or (_pinned_problem(key) if pinned else None)
        or _length_problem(file, space)
    )


def _pinned_problem(key: str) -> str | None:
    """Why a pinned stage of the object ``key`` cannot be pulled, or None.

    DVC records a pinned object as ``gs://BUCKET/KEY`` with ``version_id`` and asks
    gcsfs for ``gs://BUCKET/KEY#<generation>``: gcsfs splits at the first ``#``
    (dvc 3.67, gcsfs 2026.10), so a fresh clone's ``dvc pull`` fetches nothing.
    """
    if "#" in key:
        return (
            "has a '#': DVC adds '#<generation>' to a pinned stage's URL, and gcsfs then "
            "splits the name at the first '#', so a fresh clone's 'dvc pull' fails "
            "(unpinned stages carry it)"
        )
    return None


def _url_problem(key: str) -> str | None:
    """Why DVC would read an object key in a ``gs://`` URL as another object, or None.

    DVC and gcsfs split the URL (``urllib.parse.urlsplit``): everything after a ``?``
    is a query, dropped from the path; everything after the first ``#`` is a generation
    when ``int()`` reads it, and an empty fragment is dropped with its ``#``.
    """
    if "?" in key:
        return "has a '?', which DVC reads as the start of a URL query"
    _, hashmark, fragment = key.partition("#")
    if hashmark and not fragment:
        return "ends with '#', which DVC drops from the URL"
    if hashmark:
        try:
            int(fragment)
        except ValueError:
            return None
        return f"ends with '#{fragment}', which DVC reads as an object generation"
    return None


def _length_problem(file: str, space: Room) -> str | None:
    size = len(file) if file.isascii() else len(os.fsencode(file))
    if size + _BESIDE <= min(space.name_max, space.path_max):
        return None  # no part of it can be too long
    parts = file.split("/")
    for n, part in enumerate(parts):
        size = len(os.fsencode(part))
        beside = _BESIDE if n == len(parts) - 1 else 0
        if size + beside > space.name_max and beside:
            return (
                f"has a name of {size} bytes; DVC writes a name {beside} bytes longer beside it "
                f"and the file system holds {space.name_max}"
            )
        if size > space.name_max:
            return f"has a folder name of {size} bytes; the file system holds {space.name_max}"
    size = len(os.fsencode(file)) + _BESIDE
    if size > space.path_max:
        return f"makes a local path too long for the file system ({space.path_max} bytes left)"
    return None


def _bucket_problem(name: str) -> str | None:
    """Why ``name`` breaks the Cloud Storage bucket naming rules, or None."""
    if not 3 <= len(name) <= 222:
        return "must be 3 to 63 characters (222 with dots)"
    parts = name.split(".")
    if len(parts) == 1 and len(name) > 63:
        return "must be at most 63 characters without dots"
    for part in parts:
        if not _BUCKET_PART.match(part):
            return (
                "use lowercase letters, digits, '-', '_' and '.', "
                "starting and ending with a letter or digit"
            )
        if len(part) > 63:
            return "each dot-separated part must be at most 63 characters"
    if name.startswith("goog") or "google" in name:
        return "must not start with 'goog' or contain 'google'"
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return None
    return "must not look like an IP address"


def _did_you_mean(key: str, choices: Iterable[str], kind: str = "fields") -> str:
    close = difflib.get_close_matches(key, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else f"; known {kind}: {', '.join(choices)}"


def _show(value: Any) -> str:
    """``repr(value)``, shortened for messages (bounded even for huge aliased structures)."""
    return str(_repr.repr(value))


def _one_line(text: str) -> str:
    """``text`` for a one-line message: control characters escaped, length capped."""
    text = _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)
    return text if len(text) <= 200 else f"{text[:150]}...{text[-40:]}"


def _offset_position(text: str, offset: int) -> str:
    """``:LINE:COLUMN`` of a byte ``offset`` into the UTF-8 encoding of ``text``."""
    raw = text.encode("utf-8", "surrogatepass")
    if not 0 <= offset <= len(raw):
        return ""
    before = raw[:offset].decode("utf-8", "replace")
    line = before.count("\n") + 1
    column = len(before) - before.rfind("\n")
    return f":{line}:{column}"


def _pair(node: yaml.Node | None, key: str) -> tuple[yaml.Node | None, yaml.Node | None]:
    """The key and value nodes of ``key`` in a mapping node, or two Nones."""
    if isinstance(node, yaml.MappingNode):
        # The last occurrence wins, as in the constructed mapping (and after merge keys).
        for pair in reversed(node.value):
            if pair[0].value == key:
                return pair[0], pair[1]
    return None, None


def _written_pairs(root: yaml.Node) -> dict[int, list[tuple[yaml.Node, yaml.Node]]]:
    """The pairs of every mapping node reachable from ``root``, as composed (aliases once)."""
    out: dict[int, list[tuple[yaml.Node, yaml.Node]]] = {}
    seen: set[int] = set()
    todo = [root]
    while todo:
        node = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            out[id(node)] = list(node.value)
            for key_node, value_node in node.value:
                todo += (key_node, value_node)
        elif isinstance(node, yaml.SequenceNode):
            todo += node.value
    return out


def _line(node: yaml.Node | None) -> int | None:
    return node.start_mark.line + 1 if node is not None else None
