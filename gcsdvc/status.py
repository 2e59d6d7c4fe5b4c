"""What is on disk, set against the manifest, the stages and the bucket.

``check`` gives every selected file exactly one :class:`State`. Local checks
compare sizes first and hash only files whose size matches: directly when there
are few bytes to read, else through DVC's state database (keyed by inode, mtime
and size), so unchanged large files are not read again. Upstream checks list each
object prefix once. Whole-prefix imports are DVC's own and are checked by DVC.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
import shlex
import stat
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gcsdvc import stages
from gcsdvc.errors import NotTrackedError, StorageError
from gcsdvc.manifest import Manifest, Resource, matches
from gcsdvc.stages import Stage, open_repo
from gcsdvc.storage import Storage, describe, file_md5

if TYPE_CHECKING:
    pass

# Below this many bytes hashing is cheaper than loading DVC to ask its state db.
DIRECT_HASH_BYTES = 64 << 20


class State(str, Enum):
    OK = "ok"
    MISSING = "missing"  # the stage is there, the data is not
    MODIFIED = "modified"  # the data differs from the stage's size or md5
    CHANGED_UPSTREAM = "changed-upstream"  # the object's etag differs from the stage's
    DELETED_UPSTREAM = "deleted-upstream"  # the object is gone
    NOT_SYNCED = "not-synced"  # no stage for this manifest entry yet

    def __str__(self) -> str:
        return self.value


@dataclass
class FileStatus:
    """One file (or whole-prefix folder) of an experiment and its state."""

    local: str  # repo-relative POSIX path of the data
    source: str
    file: str | None  # None: a whole-prefix import
    stage: Stage | None
    state: State = State.OK
    upstream: str | None = None  # "same", "metadata", "changed" or "deleted"; None: not checked
    note: str = ""

    @property
    def stage_file(self) -> str:
        return stages.stage_path(self.local)

    @property
    def md5(self) -> str | None:
        value = stages.out(self.stage or {}).get("md5")
        return str(value) if value else None

    @property
    def size(self) -> int | None:
        value = stages.out(self.stage or {}).get("size")
        return value if isinstance(value, int) else None

    @property
    def nfiles(self) -> int:
        """How many files this is: one, or as many as a synced folder import holds."""
        if self.file is not None:
            return 1
        value = stages.out(self.stage or {}).get("nfiles")
        return value if isinstance(value, int) else 0

    def fix(self, resource: Resource) -> list[tuple[str, str]]:
        """The commands that fix this file, as (command, argument) steps."""
        sync = ("gcsdvc sync", resource.name)
        if self.state is State.MODIFIED:
            # `dvc checkout` refuses pinned imports; sync restores them from the cache.
            return [("rm", self.local), sync]
        if self.state in (State.NOT_SYNCED, State.MISSING):
            return [sync]
        if self.state is State.CHANGED_UPSTREAM:
            return [sync] if not resource.skip_if_exist else [("dvc update", self.stage_file)]
        return []


@dataclass
class ResourceStatus:
    resource: Resource
    local: str  # the experiment's data folder, repo-relative
    files: list[FileStatus] = field(default_factory=list)
    upstream_error: str | None = None

    @property
    def ok(self) -> bool:
        return self.upstream_error is None and all(f.state is State.OK for f in self.files)

    @property
    def size(self) -> int:
        return sum(f.size or 0 for f in self.files)

    @property
    def file_count(self) -> int:
        return sum(f.nfiles for f in self.files)

    def counts(self) -> Counter[State]:
        return Counter(f.state for f in self.files)

    @property
    def summary(self) -> str:
        """``ok``, ``not synced``, or the count of files in each state."""
        counts = self.counts()
        if counts[State.OK] == len(self.files):
            return "ok"
        if counts[State.NOT_SYNCED] == len(self.files):
            return "not synced"
        return ", ".join(f"{counts[s]} {s}" for s in State if counts[s])


@dataclass(frozen=True)
class Orphan:
    """A gcsdvc stage whose entry or file is no longer in the manifest."""

    local: str
    source: str
    name: str

    @property
    def stage_file(self) -> str:
        return stages.stage_path(self.local)


@dataclass
class Report:
    resources: list[ResourceStatus]
    orphans: list[Orphan]
    upstream_checked: bool
    upstream_error: str | None = None  # Cloud Storage could not be asked at all

    @property
    def ok(self) -> bool:
        return not (self.orphans or self.upstream_error) and all(r.ok for r in self.resources)

    def as_json(self) -> dict[str, Any]:
        """The ``--json`` document; paths are relative to the repository root."""
        return {
            "ok": self.ok,
            "upstream_checked": self.upstream_checked,
            "upstream_error": self.upstream_error,
            "resources": [resource_json(r, with_files=True) for r in self.resources],
            "orphans": [
                {"path": o.local, "source": o.source, "name": o.name, "stage": o.stage_file}
                for o in self.orphans
            ],
        }


def resource_json(status: ResourceStatus, with_files: bool) -> dict[str, Any]:
    res = status.resource
    counts = status.counts()
    out: dict[str, Any] = {
        "name": res.name,
        "description": res.description,
        "source": res.url,
        "local": status.local,
        "skip_if_exist": res.skip_if_exist,
        "state": status.summary,
        "counts": {str(s): counts[s] for s in State if counts[s]},
        "size": status.size,
        "upstream_error": status.upstream_error,
    }
    if not with_files:
        out["file_count"] = status.file_count
        return out
    out["files"] = []
    for f in status.files:
        fix = f.fix(res)
        out["files"].append(
            {
                "path": f.local,
                "source": f.source,
                "state": str(f.state),
                "stage": f.stage_file if f.stage is not None else None,
                "md5": f.md5,
                "size": f.size,
                "upstream": f.upstream,
                "note": f.note,
                "fix": " && ".join(f"{c} {shlex.quote(a)}" for c, a in fix) or None,
            }
        )
    return out


def check(
    manifest: Manifest,
    names: Sequence[str] = (),
    *,
    offline: bool = False,
    storage: Storage | None = None,
) -> Report:
    """The state of every file of the selected experiments (all when ``names`` is empty)."""
    from gcsdvc.plan import desired, read_stages, stage_for

    selected = manifest.select(names)
    ours, foreign = read_stages(manifest)
    report = Report([], [], upstream_checked=not offline)
    items: list[FileStatus] = []
    for res in selected:
        status = ResourceStatus(res, manifest.local(res))
        for file in res.files or (None,):
            local = manifest.local(res, file)
            source = res.source(file)
            stage = stage_for(local, source, ours, foreign)
            status.files.append(FileStatus(local, source, file, stage))
        items += status.files
        report.resources.append(status)

    check_local(manifest.root, items)
    if not offline:
        report.upstream_error = _check_upstream(report.resources, storage or Storage())
    upstream = not offline and report.upstream_error is None
    errors = _check_folders(manifest.root, items, upstream=upstream)
    for status in report.resources:
        status.upstream_error = status.upstream_error or errors.get(status.local)

    wanted = desired(manifest)
    for local, stage in sorted(ours.items()):
        name = str((stages.identity(stage) or {}).get("name", ""))
        if local not in wanted and (not names or matches(name, names)):
            report.orphans.append(Orphan(local, str(stages.dep(stage).get("path", "?")), name))
    return report


def exact_pattern(name: str) -> str:
    """A shell-glob pattern that matches ``name`` and nothing else."""
    return re.sub(r"([*?[])", r"[\1]", name)


def inspect(manifest: Manifest, resource: Resource, file: str | None) -> FileStatus:
    """The local state of one file of an experiment (upstream is not checked)."""
    local = manifest.local(resource, file)
    source = resource.source(file)
    stage = stages.read_stage(manifest.root / stages.stage_path(local))
    item = FileStatus(local, source, file, stage)
    check_local(manifest.root, [item])
    _check_folders(manifest.root, [item], upstream=False)
    return item


def check_local(root: Path, items: Sequence[FileStatus]) -> None:
    """Set NOT_SYNCED, MISSING or MODIFIED on files; folders are left to DVC."""
    to_hash: dict[Path, FileStatus] = {}
    for item in items:
        recorded = stages.dep(item.stage or {}).get("path")
        if item.stage is None:
            item.state = State.NOT_SYNCED
        elif recorded != item.source:
            item.state, item.note = State.NOT_SYNCED, f"the stage records {recorded}"
        elif item.file is not None:
            path = root / item.local
            try:
                info = path.stat()
            except FileNotFoundError:
                item.state = State.MISSING
                continue
            if not stat.S_ISREG(info.st_mode):
                item.state, item.note = State.MODIFIED, "not a regular file"
            elif item.size is not None and info.st_size != item.size:
                item.state = State.MODIFIED
                item.note = f"{info.st_size} bytes, the stage records {item.size}"
            elif item.md5:
                to_hash[path] = item
    md5s = local_md5s(root, {path: item.size or 0 for path, item in to_hash.items()})
    for path, item in to_hash.items():
        md5 = md5s.get(path)
        if md5 is None:
            item.state, item.note = State.MODIFIED, "cannot be read"
        elif md5 != item.md5:
            item.state, item.note = State.MODIFIED, f"md5 {md5}, the stage records {item.md5}"


def local_md5s(root: Path, sizes: dict[Path, int]) -> dict[Path, str]:
    """The md5 of each file (an unreadable one is left out).

    Few bytes are hashed directly; otherwise DVC's state db answers for files it
    has seen unchanged, and the others are hashed and recorded there.
    """
    if not sizes:
        return {}
    if sum(sizes.values()) <= DIRECT_HASH_BYTES:
        return _hash_all(list(sizes))
    from dvc_data.hashfile.hash_info import HashInfo

    with open_repo(root) as repo:
        known: dict[Path, str] = {}
        for path, _, hash_info in repo.state.get_many([str(p) for p in sizes], repo.fs, {}):
            if hash_info is not None and hash_info.name == "md5":
                known[Path(path)] = hash_info.value
        hashed = _hash_all([p for p in sizes if p not in known])
        with contextlib.suppress(Exception):  # only an optimisation
            repo.state.save_many(
                ((str(p), HashInfo("md5", md5), None) for p, md5 in hashed.items()), repo.fs
            )
    return known | hashed


def _hash_all(paths: list[Path]) -> dict[Path, str]:
    def one(path: Path) -> str | None:
        try:
            return file_md5(path)
        except OSError:
            return None

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1, len(paths) or 1)) as pool:
        md5s = pool.map(one, paths)
    return {p: md5 for p, md5 in zip(paths, md5s, strict=True) if md5 is not None}


def _check_upstream(resources: list[ResourceStatus], storage: Storage) -> str | None:
    """Compare file stages with one listing per object prefix; the error if storage is down."""
    from gcsdvc.plan import Change, object_change

    wanted: dict[tuple[str, str], list[str]] = {}
    for s in resources:
        if s.resource.files:
            key = (s.resource.bucket, s.resource.prefix)
            wanted.setdefault(key, []).extend(s.resource.files)
    try:
        listings = storage.lookup(wanted)
    except StorageError as exc:
        return str(exc)
    for status in resources:
        res = status.resource
        if not res.files:
            continue
        listing = listings[(res.bucket, res.prefix)]
        if isinstance(listing, StorageError):
            status.upstream_error = str(listing)
            continue
        for item in status.files:
            obj = listing.get(item.file or "")
            if item.state is State.NOT_SYNCED:
                if obj is None:
                    item.note = f"object not found: {item.source}"
                continue
            change = object_change(obj, item.stage or {}) if obj is not None else None
            if obj is None:
                item.upstream = "deleted"
            elif change is Change.CONTENT:
                item.upstream = "changed"
            elif change is Change.METADATA:
                item.upstream = "metadata"
                if item.state is State.OK:
                    item.note = "only the object's metadata changed (new etag, same bytes)"
            else:
                item.upstream = "same"
            _apply_upstream(item)
    return None


def _apply_upstream(item: FileStatus) -> None:
    if item.state is State.MISSING and item.upstream == "changed":
        # Restoring is no longer a plain copy of the source: say what hides behind "missing".
        item.state, item.note = State.CHANGED_UPSTREAM, "not on disk either"
        return
    if item.state is not State.OK:
        return
    if item.upstream == "deleted":
        item.state, item.note = State.DELETED_UPSTREAM, "the local copy is kept"
    elif item.upstream == "changed":
        item.state = State.CHANGED_UPSTREAM


def _check_folders(root: Path, items: Sequence[FileStatus], upstream: bool) -> dict[str, str]:
    """Ask DVC about whole-prefix imports still OK: their data and (``upstream``) their source.

    Returns the upstream errors, by local path.
    """
    todo = [i for i in items if i.file is None and i.state is State.OK]
    errors: dict[str, str] = {}
    if not todo:
        return errors
    from dvc.exceptions import DvcException

    with open_repo(root) as repo:
        for item in todo:
            try:
                stage = repo.stage.load_one(str(root / item.stage_file))
                local = set(stage.outs[0].workspace_status().values())
            except DvcException as exc:
                item.state, item.note = State.MODIFIED, f"DVC cannot read the stage: {exc}"
                continue
            if "deleted" in local:
                item.state = State.MISSING
            elif "modified" in local:
                item.state = State.MODIFIED
            if not upstream:
                continue
            try:
                remote = set(stage.deps[0].workspace_status().values())
            except Exception as exc:  # any storage failure: report it, check the rest
                errors[item.local] = describe(exc)
                continue
            item.upstream = (
                "deleted" if "deleted" in remote else "changed" if "modified" in remote else "same"
            )
            _apply_upstream(item)
    return errors


# -- list, show, which ------------------------------------------------------


def search(statuses: Sequence[ResourceStatus], text: str) -> list[ResourceStatus]:
    """Experiments whose name or description contains ``text``, ignoring case and width."""
    needle = _fold(text)
    return [
        s
        for s in statuses
        if needle in _fold(s.resource.name) or needle in _fold(s.resource.description)
    ]


def _fold(text: str) -> str:
    import unicodedata

    return unicodedata.normalize("NFKC", text).casefold()


@dataclass
class Which:
    """What gcsdvc knows about one local path."""

    item: FileStatus  # the file, or the whole-prefix import that holds it
    name: str
    description: str
    in_manifest: bool
    inner: str | None = None  # the path inside a whole-prefix import

    @property
    def source(self) -> str:
        return f"{self.item.source}/{self.inner}" if self.inner else self.item.source

    def as_json(self) -> dict[str, Any]:
        return {
            "path": self.item.local + (f"/{self.inner}" if self.inner else ""),
            "name": self.name,
            "description": self.description,
            "in_manifest": self.in_manifest,
            "source": self.source,
            "stage": self.item.stage_file,
            "md5": self.item.md5,
            "size": self.item.size,
            "state": str(self.item.state),
            "current": self.item.state is State.OK,
            "note": self.item.note,
        }


def which(manifest: Manifest, path: str | os.PathLike[str]) -> Which:
    """The experiment, source and state of a local file (or its ``.dvc``)."""
    shown = os.fspath(path)
    data = shown[: -len(stages.STAGE_SUFFIX)] if shown.endswith(stages.STAGE_SUFFIX) else shown
    given = Path(os.path.normpath(Path.cwd() / data))
    absolute = given.parent.resolve() / given.name  # the file itself may be a cache symlink
    root = manifest.root.resolve()
    if not absolute.is_relative_to(root) or absolute == root:
        raise NotTrackedError(f"{shown} is outside the repository at {root}")
    local = absolute.relative_to(root).as_posix()
    for candidate in _self_and_parents(local, manifest.data_dir):
        stage_file = root / stages.stage_path(candidate)
        if stage_file.is_file():
            return _which(manifest, candidate, stages.read_stage(stage_file) or {}, local, shown)
    raise NotTrackedError(
        f"{shown} is not tracked by gcsdvc: there is no {stages.stage_path(local)}; "
        "'gcsdvc list' shows what the manifest holds"
    )


def _self_and_parents(local: str, data_dir: str) -> Iterator[str]:
    parts = local.split("/")
    for cut in range(len(parts), 0, -1):
        candidate = "/".join(parts[:cut])
        if candidate == data_dir:
            return
        yield candidate


def _which(manifest: Manifest, local: str, stage: Stage, asked: str, shown: str) -> Which:
    from gcsdvc.plan import desired

    source = str(stages.dep(stage).get("path", "?"))
    ident = stages.identity(stage)
    entry = desired(manifest).get(local)
    listed = entry is not None and entry[0].source(entry[1]) == source
    if ident is None and not listed:
        raise NotTrackedError(
            f"{stages.stage_path(local)} is a DVC stage, but not one gcsdvc wrote "
            "or the manifest lists"
        )
    is_file = "etag" in stages.dep(stage)  # a folder import records a .dir md5 instead
    inner = asked[len(local) + 1 :] or None
    if inner is not None and (is_file or not (manifest.root / asked).exists()):
        raise NotTrackedError(f"{shown} is not part of the import {stages.stage_path(local)}")
    name = str((ident or {}).get("name") or (entry[0].name if entry else "?"))
    if entry is not None and listed and entry[0].name == name:
        description, in_manifest = entry[0].description, True
    else:
        description, in_manifest = str(stage.get("desc", "")), False
    file = str((ident or {}).get("file") or posixpath.basename(local)) if is_file else None
    item = FileStatus(local, source, file, stage)
    check_local(manifest.root, [item])
    _check_folders(manifest.root, [item], upstream=False)
    return Which(item, name, description, in_manifest, inner)
