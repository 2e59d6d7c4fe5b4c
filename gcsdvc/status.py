"""What is on disk, set against the manifest, the stages and the bucket.

``check`` gives every selected file exactly one :class:`~gcsdvc.compare.State`,
the one :func:`gcsdvc.compare.compare` finds (the same the planner acts on).
Hashes come from :func:`gcsdvc.workspace.read_disks` (only files whose size
matches; DVC's state db for many bytes). Upstream checks list each object prefix
once. Whole-prefix imports are DVC's own and are checked by DVC.
"""

from __future__ import annotations

import shlex
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gcsdvc import snapshot, stages, untracked
from gcsdvc.compare import (
    Change,
    Disk,
    State,
    Upstream,
    Wish,
    compare,
    object_change,
    stale_stage,
)
from gcsdvc.errors import StorageError
from gcsdvc.expand import PatternFailure, expand_patterns, refused_folders
from gcsdvc.manifest import Manifest, Resource, matches
from gcsdvc.remote import pinning
from gcsdvc.stages import ImportStage, open_repo
from gcsdvc.storage import RemoteObject, Storage, describe
from gcsdvc.untracked import Untracked
from gcsdvc.workspace import cache_linked, holding, read_disks, read_folders

if TYPE_CHECKING:
    from gcsdvc.storage import Looked

    _Listings = dict[tuple[str, str], Looked | StorageError]

__all__ = [
    "FileStatus",
    "Orphan",
    "Report",
    "ResourceStatus",
    "State",
    "Unignored",
    "check",
    "inspect",
]


@dataclass
class FileStatus:
    """One file (or whole-prefix folder) of an experiment and its state."""

    local: str  # repo-relative POSIX path of the data
    source: str
    file: str | None  # None: a whole-prefix import
    stage: ImportStage | None
    state: State = State.OK
    upstream: str | None = None  # "same", "metadata", "changed" or "deleted"; None: not checked
    note: str = ""
    holds_object: bool = False  # untracked, with the listed object's very bytes

    @property
    def stage_file(self) -> str:
        return stages.stage_path(self.local)

    @property
    def md5(self) -> str | None:
        return self.stage.md5 if self.stage is not None else None

    @property
    def size(self) -> int | None:
        return self.stage.size if self.stage is not None else None

    @property
    def nfiles(self) -> int:
        """How many files this is: one, or as many as a synced folder import holds."""
        if self.file is not None:
            return 1
        return (self.stage.nfiles if self.stage is not None else None) or 0

    def fix(self, resource: Resource, pinned: bool = True) -> list[tuple[str, str]]:
        """The commands that fix this file, in order, as (command, argument) steps.

        Unpinned stages are shared through the DVC remote, so a fix that fetches
        new data ends with ``dvc push``; after ``dvc update`` (which pins the
        stage again) ``gcsdvc sync`` puts it back into shape first.
        """
        sync = ("gcsdvc sync", resource.name)
        push = [] if pinned else [("dvc push", "")]
        if self.holds_object:
            return [sync]  # recorded as it is: nothing is downloaded or replaced
        if self.state is State.BROKEN_STAGE:
            return [("rm", self.stage_file), sync]  # or resolve the conflict in it by hand
        if self.state in (State.MODIFIED, State.UNTRACKED):
            # `dvc checkout` refuses pinned imports; sync restores them from the cache.
            return [("rm" if self.file is not None else "rm -r", self.local), sync]
        if self.state in (State.MISSING, State.METADATA_UPSTREAM):
            return [sync]  # the same bytes: from the DVC cache, else the bucket; nothing to push
        if self.state in (State.NOT_SYNCED, State.SOURCE_MOVED, State.STALE_STAGE):
            return [sync, *push]
        if self.state is State.CHANGED_UPSTREAM:
            if not resource.skip_if_exist:
                return [sync, *push]
            return [("dvc update", self.stage_file), *([] if pinned else [sync, *push])]
        return []

    def needs_action(self, resource: Resource, strict: bool = False) -> bool:
        """Whether ``status --check`` fails for this file.

        An upstream change or deletion is what ``skip_if_exist: true`` asked to
        ignore: it fails only with ``strict``.
        """
        if self.state is State.OK:
            return False
        return strict or not (self.state in _KEPT_UPSTREAM and resource.skip_if_exist)


_KEPT_UPSTREAM = (State.CHANGED_UPSTREAM, State.DELETED_UPSTREAM)


@dataclass
class ResourceStatus:
    resource: Resource
    local: str  # the experiment's data folder, repo-relative
    files: list[FileStatus] = field(default_factory=list)
    upstream_error: str | None = None

    @property
    def ok(self) -> bool:
        return self.upstream_error is None and all(f.state is State.OK for f in self.files)

    def needs_action(self, strict: bool = False) -> bool:
        return self.upstream_error is not None or any(
            f.needs_action(self.resource, strict) for f in self.files
        )

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


@dataclass(frozen=True)
class Unignored:
    """A data file of a gcsdvc stage that git sees: its ``.gitignore`` line is missing."""

    local: str
    name: str  # the experiment its stage records

    @property
    def fix(self) -> str:
        return f"gcsdvc sync {shlex.quote(self.name)}" if self.name else "gcsdvc sync"


@dataclass
class Report:
    resources: list[ResourceStatus]
    orphans: list[Orphan]
    upstream_checked: bool
    upstream_error: str | None = None  # Cloud Storage could not be asked at all
    pinned: bool = True  # the pinning mode (see gcsdvc.remote.pinning)
    warnings: tuple[str, ...] = ()  # about the pinning mode
    untracked: list[Untracked] = field(default_factory=list)  # in the data folder
    quick: bool = False  # a snapshot proved the data folder unchanged (see gcsdvc.snapshot)
    # Data files of gcsdvc stages that git sees (no .gitignore line), with their experiment.
    unignored: list[Unignored] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self._elsewhere() and all(r.ok for r in self.resources)

    def needs_action(self, strict: bool = False) -> bool:
        """Whether ``status --check`` (``--strict``) fails."""
        return self._elsewhere() or any(r.needs_action(strict) for r in self.resources)

    def _elsewhere(self) -> bool:
        return bool(self.orphans or self.upstream_error or self.untracked or self.unignored)

    def as_json(self, strict: bool = False) -> dict[str, Any]:
        """The ``--json`` document; paths are relative to the repository root."""
        return {
            "ok": self.ok,
            "needs_action": self.needs_action(strict),
            "upstream_checked": self.upstream_checked and self.upstream_error is None,
            "upstream_error": self.upstream_error,
            "resources": [
                resource_json(r, with_files=True, pinned=self.pinned) for r in self.resources
            ],
            "orphans": [
                {"path": o.local, "source": o.source, "name": o.name, "stage": o.stage_file}
                for o in self.orphans
            ],
            "untracked": [
                {"path": u.local, "cached": u.cached, "fix": u.fix} for u in self.untracked
            ],
            "unignored": [{"path": u.local, "name": u.name, "fix": u.fix} for u in self.unignored],
        }


def resource_json(status: ResourceStatus, with_files: bool, pinned: bool = True) -> dict[str, Any]:
    res = status.resource
    counts = status.counts()
    out: dict[str, Any] = {
        "name": res.name,
        "description": res.description,
        "source": res.url,
        "path": status.local,
        "skip_if_exist": res.skip_if_exist,
        "state": status.summary,
        "counts": {str(s): counts[s] for s in State if counts[s]},
        "size": status.size,
        "upstream_error": status.upstream_error,
        "file_count": status.file_count,
    }
    if not with_files:
        return out
    out["files"] = []
    for f in status.files:
        fix = f.fix(res, pinned)
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
                "fix": " && ".join(f"{c} {shlex.quote(a)}" if a else c for c, a in fix) or None,
            }
        )
    return out


def check(
    manifest: Manifest,
    names: Sequence[str] = (),
    *,
    offline: bool = False,
    storage: Storage | None = None,
    detail: bool = True,
) -> Report:
    """The state of every file of the selected experiments (all when ``names`` is empty).

    When a snapshot proves the data folder unchanged since the last sync (see
    :mod:`gcsdvc.snapshot`), no file is read, the stages come from the stage
    cache and git is not asked; ``detail=False`` with ``offline`` leaves the
    stages out too (files come without them).
    """
    from gcsdvc.plan import desired

    selected = manifest.select(names)
    mode = pinning(manifest.root, manifest.pin_generations)
    known = snapshot.unchanged(manifest, names, mode.pinned)
    quick = known is not None
    report = Report([], [], not offline, pinned=mode.pinned, warnings=mode.warnings, quick=quick)
    if quick and offline and not detail:
        for res in selected:
            files = [
                FileStatus(manifest.local(res, f), res.source(f), f, None) for f in res.targets
            ]
            report.resources.append(ResourceStatus(res, manifest.local(res), files))
        return report
    storage = None if offline else storage or Storage()
    ours: dict[str, ImportStage] = {}
    foreign: dict[str, ImportStage] = {}
    if known is not None and known.stage_cache is not None:
        locals_ = [manifest.local(res, file) for res in selected for file in res.targets]
        ours = stages.cached_stages(manifest.root, locals_, known.stage_cache)
    if not ours:
        ours, foreign = stages.scan(manifest.root, manifest.data_path)
    manifest, selected, unmatched = expand_patterns(manifest, selected, storage, ours)
    items: list[FileStatus] = []
    for res in selected:
        status = ResourceStatus(res, manifest.local(res))
        for file in res.targets:
            local = manifest.local(res, file)
            stage = ours.get(local) or foreign.get(local)
            status.files.append(FileStatus(local, res.source(file), file, stage))
        items += status.files
        report.resources.append(status)

    listings: _Listings = {}
    if storage is not None:
        try:
            listings = storage.lookup(_asked(selected))
        except StorageError as exc:
            report.upstream_error = str(exc)
    # Under a snapshot HEAD's record is the stages' own (else the plan would re-describe them).
    git = untracked.NOTHING if quick else untracked.look(manifest.root, manifest.data_path)
    recorded: dict[str, ImportStage] = {}
    staged = [f.local for f in items if f.file is not None and f.stage is not None]
    committed = stages.committed_where_changed(manifest.root, staged, git.changed)
    if storage is not None:  # upstream is compared with the dependency as committed
        recorded = {
            f.local: stages.recommitted(f.stage, committed[f.local])
            for f in items
            if f.local in committed and f.stage is not None
        }
    if quick:  # every file is proven to hold the bytes its stage records
        disks = {f.local: Disk(exists=True, is_file=True, size=f.size, md5=f.md5) for f in items}
    else:
        disks = read_disks(manifest.root, [(f.local, f.stage, f.file is None) for f in items])
    stageless: dict[str, tuple[Disk, RemoteObject]] = {}
    objs: dict[str, RemoteObject] = {}  # each file's object, as listed
    for status in report.resources:
        listing = listings.get((status.resource.bucket, status.resource.prefix))
        if isinstance(listing, StorageError):
            status.upstream_error = str(listing)
        listed = listing if isinstance(listing, dict) else None
        _assess(status.files, listed, disks, recorded)
        for f in status.files:
            obj = listed.get(f.file) if listed is not None and f.file is not None else None
            if isinstance(obj, RemoteObject):
                objs[f.local] = obj
            if f.state is State.UNTRACKED and isinstance(obj, RemoteObject):
                stageless[f.local] = (disks[f.local], obj)
    _note_cache_edits(manifest.root, items)
    held = holding(manifest.root, stageless)  # as the plan finds them: a sync records them
    for f in items:
        if f.local in held:
            f.holds_object, f.note = True, "holds the listed object's bytes; a sync records it"
    _add_pattern_failures(manifest, report.resources, unmatched)
    _refuse_folders(manifest, storage, items)
    upstream = not offline and report.upstream_error is None
    errors = _check_folders(manifest.root, items, upstream=upstream)
    for status in report.resources:
        status.upstream_error = status.upstream_error or errors.get(status.local)
        for f in status.files:
            if f.state is State.OK and f.stage is not None and not quick:
                pinned, obj, head = mode.pinned, objs.get(f.local), committed.get(f.local)
                stale = stale_stage(f.stage, status.resource, f.file, pinned, obj, head)
                if stale is not None:  # as the plan finds it: a sync rewrites the stage
                    f.state, f.note = stale.state, stale.note

    if quick:
        return report  # a snapshot is only taken of a data folder with no orphan or leftover
    wanted = desired(manifest)
    for local, stage in sorted(ours.items()):
        if local not in wanted and (not names or matches(stage.name, names)):
            report.orphans.append(Orphan(local, stage.source, stage.name))
    owned = wanted.keys() | ours.keys() | foreign.keys()
    leftovers = git.unowned(owned)
    report.unignored = [Unignored(local, ours[local].name) for local in git.exposed(ours.keys())]
    if leftovers:
        with open_repo(manifest.root) as repo:
            report.untracked = untracked.classify(repo, manifest.root, leftovers)
    return report


def _asked(selected: Sequence[Resource]) -> dict[tuple[str, str], list[str]]:
    """The files to look up, by (bucket, prefix)."""
    asked: dict[tuple[str, str], list[str]] = {}
    for res in selected:
        if res.files:
            asked.setdefault((res.bucket, res.prefix), []).extend(res.files)
    return asked


def _add_pattern_failures(
    manifest: Manifest, statuses: list[ResourceStatus], failures: list[PatternFailure]
) -> None:
    """A pattern that gave no file shows as one item named by the pattern: not-synced, or
    listing-failed (no fix: nothing can be done before the bucket answers)."""
    by_index = {s.resource.index: s for s in statuses}
    for failure in failures:
        res = failure.resource
        item = FileStatus(
            manifest.local(res, failure.pattern), res.source(failure.pattern), failure.pattern, None
        )
        item.state = State.REFUSED if failure.refused else State.NOT_SYNCED
        if failure.unlisted:
            item.state = State.LISTING_FAILED
        item.note = failure.message
        by_index[res.index].files.append(item)


def _refuse_folders(manifest: Manifest, storage: Storage | None, items: list[FileStatus]) -> None:
    """A whole-prefix entry a sync would import, and would refuse, shows as refused."""
    todo = [
        f for f in items if f.file is None and f.state in (State.NOT_SYNCED, State.CHANGED_UPSTREAM)
    ]
    if not todo:
        return
    by_local = {manifest.local(res): res for res in manifest.resources if res.files is None}
    refused = refused_folders(manifest, storage, [by_local.get(f.local) for f in todo])
    for f in todo:
        res = by_local.get(f.local)
        if res is not None and res.index in refused:
            f.state, f.note = State.REFUSED, refused[res.index]


def inspect(manifest: Manifest, resource: Resource, file: str | None) -> FileStatus:
    """The local state of one file of an experiment (upstream is not checked)."""
    local = manifest.local(resource, file)
    stage = ImportStage.load(manifest.root / stages.stage_path(local))
    item = FileStatus(local, resource.source(file), file, stage)
    check_local(manifest.root, [item])
    return item


def check_local(root: Path, items: Sequence[FileStatus]) -> None:
    """Set each item's local state (upstream is not asked); folders are asked of DVC."""
    _assess(items, None, read_disks(root, [(f.local, f.stage, f.file is None) for f in items]))
    _note_cache_edits(root, items)
    _check_folders(root, items, upstream=False)


def _note_cache_edits(root: Path, items: Sequence[FileStatus]) -> None:
    """Say so when a modified file is a link to its DVC cache file, which the edit changed too.

    The fix stays: the restore checks the cache file, and fetches the recorded
    object in place of a corrupt one.
    """
    edited = {
        f.local: f for f in items if f.state is State.MODIFIED and f.file is not None and f.md5
    }
    linked = cache_linked(root, {local: f.md5 for local, f in edited.items() if f.md5})
    for local, kind in linked.items():
        edited[local].note += (
            f"; edited through a {kind}: the DVC cache's copy changed too, "
            "a sync sets it aside and fetches the recorded object"
        )


def _assess(
    items: Sequence[FileStatus],
    listing: Looked | None,
    disks: dict[str, Disk],
    recorded: Mapping[str, ImportStage] | None = None,
) -> None:
    """Set each item's state by :func:`~gcsdvc.compare.compare`; ``listing`` None: not asked.

    ``disks``: what :func:`~gcsdvc.workspace.read_disks` found, read once for all items;
    ``recorded``: a stage as compared where it is not the file's (see stages.recommitted),
    as :func:`gcsdvc.plan.build_plan` compares it.
    """
    for item in items:
        stage = recorded.get(item.local, item.stage) if recorded else item.stage
        listed: RemoteObject | Upstream | StorageError | None = Upstream.NOT_LISTED
        if listing is not None and item.file is not None:
            listed = listing.get(item.file)
            if (
                stage is not None
                and stage.source == item.source
                and not isinstance(listed, StorageError)
            ):
                change = None if listed is None else object_change(stage, listed)
                item.upstream = _UPSTREAM[change]
        found = compare(Wish(item.source, item.file is None), stage, disks[item.local], listed)
        item.state, item.note = found.state, found.note
        if found.state is State.METADATA_UPSTREAM:
            item.state = State.OK  # the data is the object's bytes; a sync records the new etag


_UPSTREAM = {
    None: "deleted",
    Change.SAME: "same",
    Change.METADATA: "metadata",
    Change.CONTENT: "changed",
}


def _check_folders(root: Path, items: Sequence[FileStatus], upstream: bool) -> dict[str, str]:
    """Ask DVC about whole-prefix imports still OK: their data (as the plan reads it, see
    :func:`gcsdvc.workspace.read_folders`) and (``upstream``) their source.

    Returns the upstream errors, by local path.
    """
    todo = [i for i in items if i.file is None and i.state is State.OK]
    errors: dict[str, str] = {}
    if not todo:
        return errors
    from dvc.exceptions import DvcException

    with open_repo(root) as repo:
        found = read_folders(repo, root, [item.local for item in todo])
        for item in todo:
            item.state, item.note = found[item.local].state, found[item.local].note
            if not upstream:
                continue
            try:
                stage = repo.stage.load_one(str(root / item.stage_file))
            except DvcException:
                continue  # reported above
            try:
                remote = set(stage.deps[0].workspace_status().values())
            except Exception as exc:  # any storage failure: report it, check the rest
                errors[item.local] = describe(exc)
                continue
            if "deleted" in remote:
                item.upstream = "deleted"
                if item.state is State.OK:
                    item.state, item.note = State.DELETED_UPSTREAM, "the local copy is kept"
            elif "modified" in remote:
                item.upstream = "changed"
                if item.state is State.OK:
                    item.state = State.CHANGED_UPSTREAM
            else:
                item.upstream = "same"
    return errors
