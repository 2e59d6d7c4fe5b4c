"""What is on disk, set against the manifest, the stages and the bucket.

``check`` gives every selected file exactly one :class:`~gcsdvc.compare.State`,
the one :func:`gcsdvc.compare.compare` finds (the same the planner acts on);
``local_states`` gives it, from the same facts, to ``which`` and the API.
Hashes come from :func:`gcsdvc.workspace.read_disks` (only files whose size
matches; DVC's state db for many bytes). Upstream checks list each object prefix
once. Whole-prefix imports are DVC's own and are checked by DVC.
"""

from __future__ import annotations

import shlex
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gcsdvc import fixes, stages, untracked
from gcsdvc.compare import Change, compare, object_change, stale_stage
from gcsdvc.errors import StorageError
from gcsdvc.expand import PatternFailure, refused_folders
from gcsdvc.manifest import Manifest, Resource, matches
from gcsdvc.model import SETTLED, Disk, RemoteObject, State, Upstream, Wish
from gcsdvc.stages import ImportStage, open_repo
from gcsdvc.storage import Storage
from gcsdvc.survey import Lookup, Survey, survey
from gcsdvc.untracked import Untracked
from gcsdvc.workspace import cache_linked

if TYPE_CHECKING:
    from gcsdvc.listing import Looked

    _Listings = dict[tuple[str, str], Looked | StorageError]

__all__ = [
    "FileStatus",
    "Orphan",
    "Report",
    "ResourceStatus",
    "State",
    "Unignored",
    "check",
    "local_states",
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
    recorded_gone: bool = False  # see survey.Finding.recorded_gone
    removed_stage: bool = False  # see survey.Finding.removed_stage

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

    def fix(self, resource: Resource, pinned: bool = True) -> list[fixes.Step]:
        """The commands that fix this file, in order (see :mod:`gcsdvc.fixes`)."""
        return fixes.fix(self.state, self.subject(resource, pinned))

    def subject(self, resource: Resource, pinned: bool = True) -> fixes.Subject:
        """What a fix of this file names."""
        folder = self.file is None
        holds = self.holds_object
        skip = resource.skip_if_exist
        return fixes.Subject(
            resource.name,
            self.local,
            self.stage_file,
            folder,
            skip,
            pinned,
            holds,
            resource.to_remote,
            self.recorded_gone,
            self.removed_stage,
        )

    def needs_action(self, resource: Resource, strict: bool = False) -> bool:
        """Whether ``status --check`` fails for this file.

        What a sync keeps as it is fails only with ``strict``: an upstream change
        that ``skip_if_exist: true`` asked to ignore, and a deletion upstream (a
        sync keeps the local copy whatever ``skip_if_exist`` says).
        """
        if self.state in SETTLED:
            return False
        kept = self.state is State.DELETED_UPSTREAM or (
            self.state is State.CHANGED_UPSTREAM and resource.skip_if_exist
        )
        return strict or not kept


@dataclass
class ResourceStatus:
    resource: Resource
    local: str  # the experiment's data folder, repo-relative
    files: list[FileStatus] = field(default_factory=list)
    upstream_error: str | None = None

    @property
    def ok(self) -> bool:
        return self.upstream_error is None and all(f.state in SETTLED for f in self.files)

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
                "fix": fixes.shown(fix) or None,
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

    The facts come from one survey (:mod:`gcsdvc.survey`): when a snapshot proves
    the data folder unchanged since the last sync, no file is read, the stages come
    from the stage cache and git is not asked; ``detail=False`` with ``offline``
    leaves the stages out too (files come without them).
    """
    storage = None if offline else storage or Storage()
    lookup = Lookup.ALL if storage is not None else Lookup.NONE
    found = survey(
        manifest, manifest.select(names), storage, names=names, lookup=lookup, detail=detail
    )
    mode, quick = found.mode, found.quick
    report = Report([], [], not offline, pinned=mode.pinned, warnings=mode.warnings, quick=quick)
    if found.lookup_error is not None:
        report.upstream_error = str(found.lookup_error)
    manifest = found.manifest
    by_index: dict[int, ResourceStatus] = {}
    for res in found.selected:
        by_index[res.index] = ResourceStatus(res, manifest.local(res))
        report.resources.append(by_index[res.index])
    if found.shallow:  # every file in place, as the snapshot proves: no stage read
        for status in report.resources:
            res = status.resource
            status.files = [
                FileStatus(manifest.local(res, f), res.source(f), f, None) for f in res.targets
            ]
        return report
    items = _assessed(found, online=storage is not None)
    for f, item in zip(found.findings, items, strict=True):
        by_index[f.resource.index].files.append(item)
    # Each object as listed, where a sync looks it up: the stage is judged as the sync sees it.
    objs = {f.local: f.obj for f in found.findings if f.obj is not None and f.sync_looks}
    listed = {f.local: f.objects for f in found.findings if f.objects is not None}
    for status in report.resources:
        answer = found.lookups.get((status.resource.bucket, status.resource.prefix))
        if isinstance(answer, StorageError):
            status.upstream_error = str(answer)
    _add_pattern_failures(manifest, report.resources, found.unmatched)
    _refuse_folders(manifest, storage, items)
    # A whole prefix that could not be listed: its entry's upstream error, as for files.
    errors = {
        f.local: str(f.listed)
        for f in found.findings
        if f.file is None and isinstance(f.listed, StorageError)
    }
    committed = {f.local: f.committed for f in found.findings if f.committed is not None}
    for status in report.resources:
        status.upstream_error = status.upstream_error or errors.get(status.local)
        for item in status.files:
            # What a sync keeps as it is (in place, or an upstream change it keeps out), it
            # still rewrites when the stage is not as it writes it: that comes first.
            if not item.needs_action(status.resource) and item.stage is not None and not quick:
                pinned, obj, head = mode.pinned, objs.get(item.local), committed.get(item.local)
                objects = listed.get(item.local)
                stale = stale_stage(
                    item.stage, status.resource, item.file, pinned, obj, head, objects
                )
                if stale is not None:  # as the plan finds it: a sync rewrites the stage
                    kept = "" if item.state in SETTLED else f"; {item.state} kept"
                    item.state, item.note = stale.state, stale.note + kept

    if quick:
        return report  # a snapshot is only taken of a data folder with no orphan or leftover
    for local, stage in sorted(found.ours.items()):
        if local not in found.wanted and (not names or matches(stage.name, names)):
            report.orphans.append(Orphan(local, stage.source, stage.name))
    owned = found.wanted.keys() | found.ours.keys() | found.foreign.keys()
    leftovers = found.git.unowned(owned)
    report.unignored = [
        Unignored(local, found.ours[local].name) for local in found.git.exposed(found.ours.keys())
    ]
    if leftovers:
        with open_repo(manifest.root) as repo:
            report.untracked = untracked.classify(repo, manifest.root, leftovers)
    return report


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


def local_states(found: Survey) -> list[FileStatus]:
    """Each finding's state as ``status --offline`` gives it, the bucket not asked: how
    ``which`` and the API's full check read a :func:`gcsdvc.survey.survey_local`."""
    return _assessed(found, online=False)


def _assessed(found: Survey, online: bool) -> list[FileStatus]:
    """Each finding as a :class:`FileStatus`, its state by :func:`~gcsdvc.compare.compare`
    (folders: see :func:`_check_folders`); ``online``: upstream was asked."""
    items: list[FileStatus] = []
    for f in found.findings:
        item = FileStatus(f.local, f.resource.source(f.file), f.file, f.stage)
        answer = found.lookups.get(f.prefix)
        listed = Upstream.NOT_LISTED if isinstance(answer, StorageError) else f.listed
        # Upstream is compared with the dependency as committed.
        stage = f.recorded if online else f.stage
        owner, archive = f.resource.manifest, f.resource.to_remote
        _assess_one(item, stage, f.disk, listed, owner, archive, f.sync_looks)
        if f.folder is not None and f.folder.state is not State.OK:
            item.state, item.note = f.folder.state, f.folder.note  # local facts first
        if f.holds_object:
            item.holds_object = True
            item.note = "holds the listed object's bytes; a sync records it"
        item.recorded_gone, item.removed_stage = f.recorded_gone, f.removed_stage
        said = fixes.remark(item.state, item.subject(f.resource, found.mode.pinned))
        if said is not None:
            item.note = f"{item.note}; {said}" if item.note else said
        items.append(item)
    _note_cache_edits(found.manifest.root, items)
    return items


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


def _assess_one(
    item: FileStatus,
    stage: ImportStage | None,
    disk: Disk,
    listed: RemoteObject | Upstream | StorageError | None,
    owner: str | None,
    to_remote: bool = False,
    looked_up: bool = False,
) -> None:
    """Set the item's state by :func:`~gcsdvc.compare.compare`, and what upstream holds.

    ``stage``: the stage as compared, which may not be the file's (see
    stages.recommitted), as :func:`gcsdvc.plan.build_plan` compares it.
    ``looked_up``: a sync looks the object up (then records a new etag of the same bytes).
    """
    if item.file is None and (listed is None or isinstance(listed, Upstream)):
        item.upstream = _FOLDER_UPSTREAM.get(listed, item.upstream)
    elif (
        item.file is not None
        and listed is not Upstream.NOT_LISTED
        and stage is not None
        and stage.source == item.source
        and not isinstance(listed, StorageError | Upstream)
    ):
        change = None if listed is None else object_change(stage, listed)
        item.upstream = _UPSTREAM[change]
    found = compare(Wish(item.source, item.file is None, owner, to_remote), stage, disk, listed)
    item.state, item.note = found.state, found.note
    if found.state is State.METADATA_UPSTREAM and not looked_up:
        # The data is the object's bytes (on disk, or archived), and no sync asks about it.
        item.state = State.OK if disk.exists else State.IN_REMOTE


_FOLDER_UPSTREAM = {
    None: "deleted",
    Upstream.SAME_FOLDER: "same",
    Upstream.OTHER_FOLDER: "changed",
}
_UPSTREAM = {
    None: "deleted",
    Change.SAME: "same",
    Change.METADATA: "metadata",
    Change.CONTENT: "changed",
}
