"""The resources manifest: finding it, parsing it, validating every entry.

A manifest is a YAML file (by default ``params.yaml`` at the root of the DVC
repository) with a ``resources`` list and an optional ``gcsdvc`` settings
mapping. Validation collects every problem before it fails, one line each,
naming the file, line, entry and field.
"""

from __future__ import annotations

import difflib
import fnmatch
import ipaddress
import os
import posixpath
import re
import reprlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gcsdvc.errors import ManifestError, NotARepoError, UnknownResourceError

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
)
SETTING_KEYS = ("data_dir", "pin_generations")
# The first, Python-list version of the manifest spelt this key wrongly.
LEGACY_KEYS = {"skil_if_exist": "skip_if_exist"}

_BUCKET_PART = re.compile(r"^[a-z0-9](?:[a-z0-9_-]*[a-z0-9])?$")
# C0 and C1 control characters, Unicode line/paragraph separators and lone surrogates:
# none of them belongs in a bucket name, an object path or a local file name.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
# The local ``bad(key, message)`` callback of _Checker.entry.
_Bad = Callable[[str, str], None]

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
    index: int = 0
    line: int | None = None

    @property
    def prefix(self) -> str:
        """The object prefix inside the bucket, without slashes at either end."""
        return join_path(self.blob, self.subblob)

    @property
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

    def local(self, resource: Resource, file: str | None = None) -> str:
        """Repo-relative POSIX path of a file (or, without one, of the entry's folder)."""
        parts = [self.data_dir, resource.destination]
        if file is not None:
            parts.append(file)
        return posixpath.join(*parts)

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


def _unknown_name_message(name: str, names: list[str]) -> str:
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
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
            f"no DVC repository found from {Path.cwd()} upward; "
            f"run 'git init && dvc init' there, or {how}"
        )
    return root / DEFAULT_MANIFEST


def load_manifest(
    path: str | os.PathLike[str] | None = None, *, how: str = "pass --manifest PATH"
) -> Manifest:
    """Read and validate a manifest; raise :class:`ManifestError` listing every problem.

    ``how`` ends the message when no ``path`` is given and no DVC repository is found.
    """
    file = manifest_path(path, how=how)
    shown = _display(file)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError([f"{shown}: manifest not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError([f"{shown}: cannot read manifest: {exc}"]) from None
    root = find_root(file.parent) or file.parent
    return parse_manifest(text, file, root)


def _display(file: Path) -> str:
    try:
        return os.path.relpath(file)
    except ValueError:  # another drive on Windows
        return str(file)


def parse_manifest(text: str, file: Path, root: Path) -> Manifest:
    """Validate manifest text; ``file`` is only used to name it in messages."""
    checker = _Checker(_display(file))
    node, data = checker.load(text)
    settings: dict[str, Any] = {}
    resources: list[Resource] = []
    if node is not None:
        settings = checker.settings(data, node)
        resources = checker.resources(data, node, settings.get("data_dir", DEFAULT_DATA_DIR))
    if checker.problems:
        raise ManifestError(checker.problems)
    return Manifest(
        path=file,
        root=root,
        resources=tuple(resources),
        warnings=tuple(checker.warnings),
        **settings,
    )


class _Checker:
    """Collects problems and warnings while walking the YAML node tree."""

    def __init__(self, shown: str) -> None:
        self.shown = shown
        self.problems: list[str] = []
        self.warnings: list[str] = []
        # The key/value pairs of each mapping node as written, before merge keys
        # ("<<: *defaults") are flattened into it by the constructor.
        self.written: dict[int, list[tuple[yaml.Node, yaml.Node]]] = {}

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
        sub = _child(node, "gcsdvc")
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            self.fail(_line(sub), "gcsdvc", "must be a mapping of settings")
            return {}
        if isinstance(sub, yaml.MappingNode):
            self.duplicate_keys(sub, "gcsdvc")
        out: dict[str, Any] = {}
        for key, value in raw.items():
            line = _line(_key_node(sub, str(key))) or _line(sub)
            if key == "data_dir":
                problem = path_problem(value)
                if problem is None and {".dvc", ".git"} & set(value.split("/")):
                    problem = "must not be inside .dvc or .git"
                if problem:
                    self.fail(line, "gcsdvc.data_dir", f"{problem} (got {_show(value)})")
                else:
                    out["data_dir"] = value.rstrip("/")
            elif key == "pin_generations":
                if isinstance(value, bool) or value == "auto":
                    out["pin_generations"] = None if value == "auto" else value
                else:
                    self.fail(
                        line,
                        "gcsdvc.pin_generations",
                        f"must be auto, true or false, not {_show(value)}",
                    )
            else:
                self.fail(
                    line,
                    f"gcsdvc.{_one_line(str(key))}",
                    f"unknown setting{_did_you_mean(str(key), SETTING_KEYS, 'settings')}",
                )
        return out

    def resources(
        self, data: dict[str, Any], node: yaml.MappingNode, data_dir: str
    ) -> list[Resource]:
        raw = data.get("resources")
        seq = _child(node, "resources")
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
        self.cross_check(entries, data_dir)
        return entries

    def entry(self, index: int, raw: Any, node: yaml.Node) -> Resource | None:
        line = _line(node)
        if not isinstance(raw, dict) or not isinstance(node, yaml.MappingNode):
            self.fail(line, f"resources[{index}]", "must be a mapping of fields")
            return None
        name = raw.get("name")
        # Name the entry as the user knows it: its name, which defaults to the destination.
        called = raw.get("destination") if name is None else name
        if isinstance(called, str) and name is None:
            called = called.rstrip("/")
        label = f"resources[{index}]"
        if isinstance(called, str) and called.strip():
            label += f" ({_one_line(called)})"
        self.duplicate_keys(node, label)
        before = len(self.problems)

        def bad(key: str, message: str) -> None:
            self.fail(
                _line(_key_node(node, key)) or line, f"{label} field '{_one_line(key)}'", message
            )

        values = dict(raw)
        for old, new in LEGACY_KEYS.items():
            if old in values:
                if new in values:
                    bad(old, f"give only '{new}' (the old spelling '{old}' is also present)")
                else:
                    self.warnings.append(
                        f"{self.shown}:{_line(_key_node(node, old)) or line}: {label}: "
                        f"'{old}' is the old misspelling of '{new}'; please rename it"
                    )
                    values[new] = values.pop(old)
        for key in values:
            if key not in ENTRY_KEYS and key not in LEGACY_KEYS:
                bad(str(key), f"unknown field{_did_you_mean(str(key), ENTRY_KEYS)}")
        for key in ("bucket", "blob", "destination"):
            if values.get(key) is None:
                bad(key, "is required")

        bucket = _text(values.get("bucket"), "bucket", bad)
        if bucket and (problem := _bucket_problem(bucket)):
            bad("bucket", f"invalid bucket name {_show(bucket)}: {problem}")
        blob = _clean_path(values.get("blob"), "blob", bad)
        subblob = _clean_path(values.get("subblob"), "subblob", bad, allow_empty=True)
        destination = _clean_path(values.get("destination"), "destination", bad)
        if destination and (problem := _local_problem(destination)):
            bad("destination", f"{_show(destination)} {problem}")
        description = _text(values.get("description", ""), "description", bad, allow_empty=True)

        skip = values.get("skip_if_exist", True)
        if not isinstance(skip, bool):
            bad("skip_if_exist", f"must be true or false, not {_show(skip)}")

        files: tuple[str, ...] | None = None
        if "files" in values:
            files = self.files(values["files"], bad)

        if name is None:
            name = destination
        elif not isinstance(name, str) or not name.strip() or _CONTROL.search(name):
            bad("name", f"must be a non-empty single-line string, not {_show(name)}")
        if len(self.problems) > before:
            return None
        return Resource(
            name=name,
            bucket=bucket,
            blob=blob,
            subblob=subblob,
            files=files,
            destination=destination,
            skip_if_exist=skip,
            description=description,
            index=index,
            line=line,
        )

    def files(self, raw: Any, bad: _Bad) -> tuple[str, ...] | None:
        if not isinstance(raw, list):
            bad("files", "must be a list of object paths (omit it to import the whole prefix)")
            return None
        if not raw:
            bad("files", "is empty; list the files, or omit 'files' to import the whole prefix")
            return None
        files: list[str] = []
        for i, item in enumerate(raw):
            if not isinstance(item, str):
                bad("files", f"item {i} must be a string, not {_show(item)}")
                continue
            problem = (
                path_problem(item, trailing_slash=False)
                or _local_problem(item)
                or pattern_problem(item)
            )
            if problem is None and item in files:
                problem = "is listed twice"
            if problem:
                bad("files", f"{_show(item)} {problem}")
            else:
                files.append(item)
        return tuple(files)

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


def _is_text(value: Any, key: str, bad: _Bad) -> bool:
    """Whether ``value`` is a string; reports anything else but a missing value."""
    if value is not None and not isinstance(value, str):
        bad(key, f"must be a string, not {type(value).__name__} {_show(value)} (quote it in YAML)")
    return isinstance(value, str)


def _text(value: Any, key: str, bad: _Bad, allow_empty: bool = False) -> str:
    if not _is_text(value, key, bad):
        return ""
    text: str = value
    if not allow_empty and not text:
        bad(key, "must not be empty")
    if key != "description" and _CONTROL.search(text):
        bad(key, f"contains a control character: {_show(text)}")
    return text


def _clean_path(value: Any, key: str, bad: _Bad, allow_empty: bool = False) -> str:
    if not _is_text(value, key, bad):
        return ""
    text: str = value
    if allow_empty and text.strip("/") == "":
        return ""
    problem = path_problem(text)
    if problem:
        bad(key, f"{_show(text)} {problem}")
        return ""
    return text.rstrip("/")


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
    if value.startswith("/") or re.match(r"^[A-Za-z]:", value):
        return "is absolute; give a path relative to the prefix or data folder"
    body = value[:-1] if trailing_slash and value.endswith("/") else value
    segments = body.split("/")
    if ".." in segments:
        return "has a '..' segment, which would leave the data folder"
    if "." in segments or "" in segments:
        return "has an empty or '.' segment"
    return None


def _local_problem(path: str) -> str | None:
    """Why a local path (below the data folder) would clash with files git or DVC own."""
    parts = path.split("/")
    if ".git" in parts:
        return "has a part named '.git', which git never tracks"
    if parts[-1].endswith(".dvc"):
        return "ends with '.dvc', which would clash with DVC's stage files"
    if parts[-1] == ".gitignore":
        return "is named '.gitignore', which DVC writes itself"
    if any(part.endswith(".dvc") for part in parts):
        return "has a folder ending in '.dvc', which would clash with DVC's stage files"
    if ".gitignore" in parts:
        return "has a folder named '.gitignore', which DVC writes as a file"
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


def _child(node: yaml.MappingNode, key: str) -> yaml.Node | None:
    # The last occurrence wins, as in the constructed mapping (and after merge keys).
    for key_node, value_node in reversed(node.value):
        if key_node.value == key:
            return value_node  # type: ignore[no-any-return]
    return None


def _key_node(node: yaml.Node | None, key: str) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for key_node, _ in reversed(node.value):
            if key_node.value == key:
                return key_node  # type: ignore[no-any-return]
    return None


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
