"""Writing manifest entries from the bucket: ``gcsdvc add`` and ``gcsdvc discover``.

This module decides *what* to add (the defaults of a new entry, a unique readable
name) and checks it (against the manifest, then against the bucket);
:mod:`gcsdvc.manifest_edit` decides *how* the file changes.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gcsdvc.errors import ManifestError, StorageError, UsageError
from gcsdvc.listing import PrefixStats
from gcsdvc.manifest import (
    ENTRY_KEYS,
    Manifest,
    Resource,
    did_you_mean,
    find_root,
    is_pattern,
    join_path,
    match_files,
    parse_manifest,
    pattern_root,
)
from gcsdvc.manifest_edit import append_entries, write_atomic
from gcsdvc.storage import Storage


@dataclass(frozen=True)
class Source:
    """Where a new entry's objects live: ``gs://BUCKET/BLOB[/SUBBLOB]``."""

    bucket: str
    blob: str
    subblob: str = ""

    @property
    def prefix(self) -> str:
        return join_path(self.blob, self.subblob)


def parse_url(url: str, bucket_ok: bool = False) -> tuple[str, str]:
    """``(bucket, path)`` of a ``gs://BUCKET/PATH`` URL, without slashes at the ends of PATH.

    With ``bucket_ok`` a URL naming only the bucket gives an empty PATH.
    """
    if not url.startswith("gs://"):
        raise UsageError(f"{url!r} is not a gs:// URL (expected gs://BUCKET/PATH)")
    bucket, _, path = url[len("gs://") :].partition("/")
    path = path.strip("/")
    if not bucket or not (path or bucket_ok):
        raise UsageError(f"{url!r} names no folder; give gs://BUCKET/PATH")
    if "//" in path:
        raise UsageError(f"{url!r} has an empty folder name ('//')")
    return bucket, path


def source_of(url: str) -> Source:
    """BLOB is the URL's path without its last part, SUBBLOB that part (one part: BLOB only)."""
    bucket, path = parse_url(url)
    blob, _, subblob = path.rpartition("/")
    return Source(bucket, blob, subblob) if blob else Source(bucket, path)


def new_entry(
    source: Source,
    names: Iterable[str],
    *,
    files: Sequence[str] = (),
    name: str | None = None,
    destination: str | None = None,
    description: str = "",
    follow_upstream: bool = False,
    destinations: Iterable[str] = (),
) -> dict[str, Any]:
    """A manifest entry for ``source``, with defaults for everything not given.

    ``names`` are the names already taken: the default name (the SUBBLOB, else
    the last part of the BLOB) is made unique with the folder above it, then a
    number. ``destinations`` are the folders taken: the default destination
    (BLOB/SUBBLOB) is made unique with the bucket in front, then a number. An
    explicit ``name`` or ``destination`` is kept as given (validation refuses a clash).
    """
    entry: dict[str, Any] = {
        "name": name if name is not None else unique_name(source, set(names)),
        "bucket": source.bucket,
        "blob": source.blob,
    }
    if source.subblob:
        entry["subblob"] = source.subblob
    if files:
        entry["files"] = list(dict.fromkeys(files))
    if destination is None:
        destination = unique_destination(source, set(destinations))
    entry["destination"] = destination
    entry["skip_if_exist"] = not follow_upstream
    if description:
        entry["description"] = description
    assert list(entry) == [k for k in ENTRY_KEYS if k in entry]  # the manual's key order
    return entry


def taken_destinations(manifest: Manifest, source: Source) -> set[str]:
    """The folders of the entries of other sources, which a new entry of ``source`` avoids.

    An entry of ``source`` itself is left out: the same run added again is refused
    by validation (offering --destination), not saved a second time.
    """
    return {
        r.destination
        for r in manifest.resources
        if (r.bucket, r.prefix) != (source.bucket, source.prefix)
    }


def unique_destination(source: Source, taken: set[str]) -> str:
    """BLOB/SUBBLOB, else BUCKET/BLOB/SUBBLOB, else that with a number: the first clear of
    ``taken`` (a folder clashes with one equal to it, inside it or holding it)."""

    def clear(folder: str) -> bool:
        return not any(
            t == folder or t.startswith(f"{folder}/") or folder.startswith(f"{t}/") for t in taken
        )

    plain, with_bucket = source.prefix, f"{source.bucket}/{source.prefix}"
    for candidate in (plain, with_bucket):
        if clear(candidate):
            return candidate
    number = 2
    while not clear(f"{with_bucket}-{number}"):
        number += 1
    return f"{with_bucket}-{number}"


def unique_name(source: Source, taken: set[str]) -> str:
    parts = source.prefix.split("/")
    candidates = ["-".join(parts[-n:]) for n in range(1, len(parts) + 1)]
    for candidate in candidates:
        if candidate not in taken:
            return candidate
    number = 2
    while f"{candidates[0]}-{number}" in taken:
        number += 1
    return f"{candidates[0]}-{number}"


@dataclass(frozen=True)
class Added:
    """What ``add_entries`` did (or, for a dry run, would do)."""

    path: Path
    entries: list[dict[str, Any]]
    text: str  # the manifest text after the edit
    written: bool
    skipped: list[str] = field(default_factory=list)  # entries left out, with why (skip_empty)


def read_manifest_text(path: Path) -> str:
    """The manifest's text; a missing file is an empty manifest."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError([f"{path}: cannot read manifest: {exc}"]) from None


def load_or_empty(path: Path) -> Manifest:
    """The validated manifest at ``path``; empty when the file or its ``resources`` is missing."""
    root = find_root(path.parent) or path.parent
    text = read_manifest_text(path)
    if not text.strip() or not _has_resources(text):
        return Manifest(path=path, root=root)
    return parse_manifest(text, path, root)


def _has_resources(text: str) -> bool:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return True  # let validation name the problem
    return not isinstance(data, dict) or "resources" in data


def add_entries(
    path: Path,
    entries: Sequence[dict[str, Any]],
    storage: Storage | None,
    *,
    dry_run: bool = False,
    skip_empty: bool = False,
) -> Added:
    """Append ``entries`` to the manifest at ``path`` in one atomic write.

    Refuses, changing nothing, when the result does not validate
    (:class:`ManifestError`, exit 2) or, unless ``storage`` is None, when a
    prefix, file or pattern of a new entry is not in the bucket (:class:`StorageError`).
    With ``skip_empty`` an entry whose prefix holds no object yet (a run folder made
    in the Console) is left out instead, and said in ``skipped``.
    """
    text = read_manifest_text(path)
    new_text = append_entries(text, entries, str(path))
    root = find_root(path.parent) or path.parent
    try:
        manifest = parse_manifest(new_text, path, root)
    except ManifestError as exc:
        raise ManifestError([_of_new_entry(p, text, new_text) for p in exc.problems]) from None
    added = list(manifest.resources[len(manifest.resources) - len(entries) :])
    empty = check_sources(storage, added, skip_empty) if storage is not None else {}
    if empty:  # the others were checked: only the text changes
        entries = [entry for entry in entries if entry["name"] not in empty]
        new_text = append_entries(text, entries, str(path)) if entries else text
    if entries and not dry_run:
        write_atomic(path, new_text)
    skipped = [f"{name}: {why}; not added" for name, why in empty.items()]
    return Added(path, list(entries), new_text, bool(entries) and not dry_run, skipped)


_AT_LINE = re.compile(r"^(?P<file>.*?):(?P<line>\d+): ")


def _of_new_entry(problem: str, text: str, new_text: str) -> str:
    """A problem of the manifest with the new entries, as the user can find it in ``text``.

    The entries are one block inserted into ``text``: a line in it is named as the
    new entry instead (with the option that avoids a clash of folders), and a line
    after it by its number on disk.
    """
    at = _AT_LINE.match(problem)
    if at is None:
        return problem
    old, new = text.splitlines(), new_text.splitlines()
    same = next((n for n, (a, b) in enumerate(zip(old, new, strict=False)) if a != b), len(old))
    tail = 0
    while tail < len(old) - same and old[-1 - tail] == new[-1 - tail]:
        tail += 1
    line, added = int(at["line"]), len(new) - len(old)
    if line <= same:
        return problem
    if line > len(new) - tail:
        return f"{at['file']}:{line - added}: {problem[at.end() :]}"
    problem = f"{at['file']} (new entry): {problem[at.end() :]}"
    if " saves to " in problem or " would be both a folder and " in problem:
        problem += "; pass --destination FOLDER to save it elsewhere"
    return problem


def check_sources(
    storage: Storage, resources: Sequence[Resource], skip_empty: bool = False
) -> dict[str, str]:
    """Fail naming every prefix, file or pattern of ``resources`` that is not in the bucket.

    With ``skip_empty`` a prefix holding no object is no failure: those entries are
    returned (name: why) for the caller to leave out.
    """
    problems: list[str] = []
    empty: dict[str, str] = {}
    for res in resources:
        folders, objects = storage.list_folder(res.bucket, res.prefix)
        if not folders and not objects:
            if skip_empty:
                empty[res.name] = f"no objects under {res.url}/ yet"
            else:
                problems.append(_missing_prefix(storage, res.bucket, res.prefix))
            continue
        if res.files is None:
            continue
        # Named files are looked up one by one, not listed with everything beside them;
        # the folders are listed for the patterns, and for the hint when a file is missing.
        plain = [f for f in res.files if not is_pattern(f)]
        found = storage.lookup({(res.bucket, res.prefix): plain})[(res.bucket, res.prefix)]
        if isinstance(found, StorageError):
            raise found
        for error in found.values():
            if isinstance(error, StorageError):
                raise error
        listed_for = (
            res.files if set(plain) - set(found) else [f for f in res.files if f not in plain]
        )
        keys = {scope: (res.bucket, join_path(res.prefix, scope)) for scope in _scopes(listed_for)}
        listings = storage.list_prefixes(keys.values())
        names: set[str] = set()
        for scope, key in keys.items():
            listed = listings[key]
            if isinstance(listed, StorageError):
                raise listed
            names.update(join_path(scope, name) for name in listed)
        for file in res.files:
            if file in found or match_files([file], names)[file]:
                continue
            what = "pattern matched nothing" if is_pattern(file) else "no such object"
            problems.append(f"{res.source(file)}: {what}{_did_you_mean(file, names)}")
    if problems:
        raise StorageError("; ".join(problems) + " (the manifest is unchanged)")
    return empty


def _scopes(files: Sequence[str]) -> list[str]:
    """The folders below the prefix that the files and patterns can be in."""
    return sorted({pattern_root(f) if is_pattern(f) else posixpath.dirname(f) for f in files})


def _missing_prefix(storage: Storage, bucket: str, prefix: str) -> str:
    """The error for an empty prefix, with the closest folders beside it."""
    parent, _, last = prefix.rpartition("/")
    folders, _ = storage.list_folder(bucket, parent)
    return f"gs://{bucket}/{prefix}/: no objects under this prefix{_did_you_mean(last, folders)}"


def _did_you_mean(name: str, choices: Iterable[str]) -> str:
    close = did_you_mean(name, sorted(choices))
    return f"; {close}" if close else ""


# -- discover --------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """A folder directly under the discovered prefix."""

    name: str
    source: Source
    tracked_by: tuple[str, ...]  # the manifest entries that import it (or a part of it)
    stats: PrefixStats | None = None

    def as_json(self) -> dict[str, Any]:
        stats = self.stats
        return {
            "name": self.name,
            "source": f"gs://{self.source.bucket}/{self.source.prefix}",
            "tracked_by": list(self.tracked_by),
            "objects": stats.objects if stats else None,
            "size": stats.size if stats else None,
            "updated": stats.updated if stats else None,
        }


def discover(manifest: Manifest, url: str, storage: Storage, *, stats: bool = False) -> list[Run]:
    """The run folders directly under ``url`` (one delimiter listing), marked when tracked.

    With ``stats`` each run is also listed recursively (one listing per run).
    """
    bucket, blob = parse_url(url, bucket_ok=True)
    folders, objects = storage.list_folder(bucket, blob)
    if not folders and not objects:
        raise StorageError(_missing_prefix(storage, bucket, blob))
    runs = []
    for folder in folders:
        source = Source(bucket, blob, folder) if blob else Source(bucket, folder)
        inside = f"{source.prefix}/"
        tracked = tuple(
            res.name
            for res in manifest.resources
            if res.bucket == bucket
            and (res.prefix == source.prefix or res.prefix.startswith(inside))
        )
        runs.append(Run(folder, source, tracked))
    if stats:
        runs = [
            Run(r.name, r.source, r.tracked_by, storage.prefix_stats(bucket, r.source.prefix))
            for r in runs
        ]
    return runs


def entries_for_runs(
    manifest: Manifest,
    runs: Sequence[Run],
    *,
    files: Sequence[str] = (),
    description: str = "",
    follow_upstream: bool = False,
) -> list[dict[str, Any]]:
    """New entries for the runs not tracked yet; ``{run}`` in ``description`` is the run's name."""
    names = set(manifest.names)
    added: set[str] = set()  # the folders of the entries made here
    entries = []
    for run in runs:
        if run.tracked_by:
            continue
        entry = new_entry(
            run.source,
            names,
            files=files,
            description=description.replace("{run}", run.name),
            follow_upstream=follow_upstream,
            destinations=taken_destinations(manifest, run.source) | added,
        )
        names.add(entry["name"])
        added.add(entry["destination"])
        entries.append(entry)
    return entries
