"""Glob patterns in ``files``, turned into the concrete files each sync, status or API call sees.

One step before anything compares the manifest with the disk: every pattern is
matched against the objects its fixed leading folder holds (one listing per
such folder, when a storage client is given) and against the files already
synced for the entry (their stages record the file), so a file keeps its stage
when its object is deleted upstream, and offline commands see what was synced.
Manifests without patterns pass through untouched, at no cost.
"""

from __future__ import annotations

import dataclasses
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from gcsdvc import stages
from gcsdvc.errors import StorageError
from gcsdvc.manifest import (
    Manifest,
    Resource,
    is_pattern,
    join_path,
    match_files,
    pattern_root,
    room,
    unsafe_name,
)
from gcsdvc.model import RemoteObject
from gcsdvc.stages import ImportStage

if TYPE_CHECKING:
    from gcsdvc.storage import Storage


@dataclass(frozen=True)
class PatternFailure:
    """A pattern of an entry that could not be turned into files (the entry's others still are)."""

    resource: Resource  # the entry, with its files expanded
    pattern: str  # or, when ``refused``, the object's file
    message: str
    refused: bool = False  # an object DVC cannot carry (see manifest.unsafe_name)
    unlisted: bool = False  # the bucket could not be listed: nothing is known of its matches


class Expansion(NamedTuple):
    manifest: Manifest  # every entry with concrete files
    selected: list[Resource]  # the selected entries, with concrete files
    failures: list[PatternFailure]


def expand_patterns(
    manifest: Manifest,
    selected: Sequence[Resource],
    storage: Storage | None,
    synced: Mapping[str, ImportStage],
    pinned: bool = False,
) -> Expansion:
    """Replace the glob patterns of every entry by the files they match.

    Selected entries are matched against a listing of the bucket (unless
    ``storage`` is None) and against their synced stages (``synced``: gcsdvc's
    stages by local path); the others against their stages only, so that what
    they synced is still theirs. Failures are reported for selected entries only.
    ``pinned``: also refuse the names a pinned stage cannot carry, listed ones too.
    """
    expansion = _expand(manifest, selected, storage, synced, pinned)
    return _refuse_unpinnable(expansion) if pinned else expansion


def _refuse_unpinnable(expansion: Expansion) -> Expansion:
    """Leave out the listed files of the selected entries that a pinned stage cannot carry
    (a glob's were left out as it was matched), one refused failure each."""
    manifest, selected, failures = expansion
    changed: dict[int, Resource] = {}
    for res in selected:
        bad = {f: why for f in res.files or () if (why := unsafe_name(f, res.prefix, pinned=True))}
        if not bad:
            continue
        new = dataclasses.replace(res, files=tuple(f for f in res.files or () if f not in bad))
        changed[res.index] = new
        failures = failures + [
            PatternFailure(
                new,
                file,
                f"the object {why}; rename the object, or unpin the stages (a default DVC "
                "remote in .dvc/config, or pin_generations: false)",
                refused=True,
            )
            for file, why in bad.items()
        ]
    if not changed:
        return expansion
    resources = tuple(changed.get(res.index, res) for res in manifest.resources)
    return Expansion(
        dataclasses.replace(manifest, resources=resources),
        [changed.get(res.index, res) for res in selected],
        failures,
    )


def _expand(
    manifest: Manifest,
    selected: Sequence[Resource],
    storage: Storage | None,
    synced: Mapping[str, ImportStage],
    pinned: bool,
) -> Expansion:
    if not any(res.patterns for res in manifest.resources):
        return Expansion(manifest, list(selected), [])
    chosen = {res.index for res in selected}
    known = _synced_files(synced)
    listings = _listings(storage, [r for r in manifest.resources if r.index in chosen])
    taken = {
        manifest.local(res, file)
        for res in manifest.resources
        for file in res.targets
        if file is None or not is_pattern(file)
    }
    expanded: list[Resource] = []
    failures: list[PatternFailure] = []
    for res in manifest.resources:
        if not res.patterns:
            expanded.append(res)
            continue
        online = storage is not None and res.index in chosen
        names = set(known.get(res.url, ()))
        problems: dict[str, str] = {}
        unlisted: set[str] = set()
        for pattern in res.patterns if online else ():
            listing = listings[(res.bucket, _scope(res, pattern))]
            if isinstance(listing, StorageError):
                problems[pattern] = f"cannot list for pattern {pattern!r}: {listing}"
                unlisted.add(pattern)
                continue
            root = pattern_root(pattern)
            names.update(join_path(root, name) for name in listing)
        # Folder placeholder objects ('eval/', made by the Cloud Console) are no files.
        matched = match_files(res.patterns, [n for n in names if n and not n.endswith("/")])
        files: dict[str, None] = {}  # in order, and a set: an entry may match 100,000 files
        named = {f for f in res.files or () if not is_pattern(f)}  # checked by validation
        refused: dict[str, str] = {}  # object's file -> message, one line each
        space = room(manifest.data_path / res.destination)
        for item in res.files or ():
            for file in matched.get(item, [item]):
                local = manifest.local(res, file)
                if file in refused:
                    continue
                if file in files or file in named:
                    pass
                elif why := unsafe_name(file, res.prefix, space, pinned):
                    refused[file] = (
                        f"matched by {item!r}, but DVC cannot carry it: the object {why}; "
                        "rename the object, or narrow the pattern to leave it out"
                    )
                    continue
                elif local in taken:
                    problems.setdefault(
                        item, f"matches {file!r}, which another entry saves to {local!r} already"
                    )
                    continue
                taken.add(local)
                files[file] = None
            if is_pattern(item) and not matched[item] and item not in problems:
                problems[item] = (
                    f"pattern {item!r} matched nothing in {res.url}/"
                    if online
                    else f"no synced file matches pattern {item!r} yet"
                )
        new = dataclasses.replace(res, files=tuple(files))
        expanded.append(new)
        if res.index in chosen:
            failures += [
                PatternFailure(new, p, m, unlisted=p in unlisted) for p, m in problems.items()
            ]
            failures += [PatternFailure(new, f, m, refused=True) for f, m in refused.items()]
    by_index = {res.index: res for res in expanded}
    return Expansion(
        dataclasses.replace(manifest, resources=tuple(expanded)),
        [by_index[res.index] for res in selected],
        failures,
    )


def expand_offline(manifest: Manifest) -> Manifest:
    """The manifest with patterns replaced by the files already synced (no storage access)."""
    if not any(res.patterns for res in manifest.resources):
        return manifest
    synced, _ = stages.scan(manifest.root, manifest.data_path, manifest.owner)
    return expand_patterns(manifest, (), None, synced).manifest


def refused_folders(
    manifest: Manifest, storage: Storage | None, resources: Sequence[Resource | None]
) -> dict[int, str]:
    """Whole-prefix entries DVC would import wrongly: a message by index.

    Refused: a prefix holding an object DVC cannot carry, and a prefix that is also
    an object's whole name (DVC would import that object). Each prefix is listed once
    (the listing is the client's, shared with patterns); one that cannot be listed is
    left to DVC, which reports it.
    """
    folders = [res for res in resources if res is not None and res.files is None]
    if storage is None or not folders:
        return {}
    try:
        listings = storage.list_prefixes((res.bucket, res.prefix) for res in folders)
        # DVC imports an object named as the prefix itself, not the folder beside it.
        twins_asked: dict[tuple[str, str], list[str]] = {}
        for res in folders:
            if res.prefix:
                parent, name = posixpath.split(res.prefix)
                twins_asked.setdefault((res.bucket, parent), []).append(name)
        twins = storage.lookup(twins_asked)
    except StorageError:
        return {}
    out: dict[int, str] = {}
    for res in folders:
        listing = listings[(res.bucket, res.prefix)]
        if isinstance(listing, StorageError):
            continue
        twin = twins.get((res.bucket, posixpath.dirname(res.prefix)))
        name = posixpath.basename(res.prefix)
        if isinstance(twin, dict) and isinstance(twin.get(name), RemoteObject):
            out[res.index] = (
                f"{res.url} is both an object and a folder ({res.url}/...): DVC would import "
                "the object, not the folder; rename or delete the object, or list the "
                "folder's files in 'files'"
            )
            continue
        space = room(manifest.data_path / res.destination)
        bad = [
            (name, why) for name in sorted(listing) if (why := unsafe_name(name, res.prefix, space))
        ]
        if bad:
            name, why = bad[0]
            more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
            out[res.index] = (
                f"holds an object DVC cannot carry: {res.source(name)} {why}{more}; the folder "
                "is not imported: rename or remove the object, or list the files in 'files'"
            )
    return out


def _scope(res: Resource, pattern: str) -> str:
    """The prefix to list for ``pattern``: the entry's prefix and the pattern's fixed folders."""
    return join_path(res.prefix, pattern_root(pattern))


def _listings(
    storage: Storage | None, resources: Sequence[Resource]
) -> Mapping[tuple[str, str], Sequence[str] | StorageError]:
    if storage is None:
        return {}
    keys = [(res.bucket, _scope(res, p)) for res in resources for p in res.patterns]
    if not keys:
        return {}
    try:
        return storage.list_prefixes(keys)
    except StorageError as exc:  # storage unreachable: every pattern fails with it
        return dict.fromkeys(keys, exc)


def _synced_files(synced: Mapping[str, ImportStage]) -> dict[str, set[str]]:
    """The files recorded by gcsdvc stages, by entry URL (``gs://BUCKET/PREFIX``)."""
    out: dict[str, set[str]] = {}
    for stage in synced.values():
        file = stage.identity.file if stage.identity is not None else None
        if file is not None and stage.source.endswith(f"/{file}"):
            out.setdefault(stage.source[: -len(file) - 1], set()).add(file)
    return out
