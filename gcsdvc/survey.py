"""The one survey: every fact about the selected destinations, gathered once per command.

A survey holds, per destination (one :class:`Finding` each), the manifest's wish,
the stage on disk and the one committed in git's HEAD, what is on disk, the
object as listed (when an answer depends on it), where an orphan stage of the
same object left its data, the folder as DVC reads it, and whether an untracked
file holds the listed object's bytes; and, for the whole data folder, the stages
no entry asks for, git's view and the patterns that matched nothing.

The plan (:mod:`gcsdvc.plan`) and the status (:mod:`gcsdvc.status`) are functions
of it; so are ``which`` and the API's full check, through :func:`survey_local`.
The shortcuts that make a no-op fast (the snapshot, the stage cache and, through
:func:`gcsdvc.workspace.read_disks`, the hash cache) are taken here and nowhere else:
when a snapshot proves the data folder unchanged (:mod:`gcsdvc.snapshot`), the
stages come from the stage cache and no file is read.
Errors met while gathering keep their types (a :class:`StorageError` per prefix or
per object).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

from gcsdvc import snapshot, stages, untracked
from gcsdvc.compare import Change, compare, needs_listing, object_change, recorded_generation
from gcsdvc.errors import StorageError
from gcsdvc.expand import PatternFailure, expand_patterns
from gcsdvc.git import committed_where_changed
from gcsdvc.hashes import etag_tree
from gcsdvc.manifest import Manifest, Resource
from gcsdvc.model import ABSENT, Comparison, Disk, RemoteObject, State, Upstream, Wish
from gcsdvc.remote import Pinning, pinning
from gcsdvc.stages import ImportStage
from gcsdvc.workspace import holding, in_cache, read_disks, read_folders

if TYPE_CHECKING:
    from gcsdvc.listing import Looked
    from gcsdvc.storage import Storage

    Lookups = dict[tuple[str, str], Looked | StorageError]

Listed = RemoteObject | Upstream | StorageError | None


class Lookup(Enum):
    """Which objects a survey looks up in the bucket."""

    NONE = "none"  # none (status offline)
    NEEDED = "needed"  # only where an answer depends on it (a sync's plan; offline: failed)
    ALL = "all"  # every listed file of the selected entries (status)


@dataclass(slots=True)
class Finding:
    """One destination (a file, or a whole-prefix folder) and every fact gathered about it."""

    resource: Resource
    file: str | None  # None: a whole-prefix import
    local: str  # repo-relative POSIX path of the data
    stage: ImportStage | None  # the stage on disk now, gcsdvc's or not
    committed: ImportStage | None = None  # HEAD's stage, when the stage file differs from it
    disk: Disk = ABSENT
    listed: Listed = Upstream.NOT_LISTED  # the object as listed (None: listed and absent)
    moved_from: str | None = None  # an orphan stage of the same object, its data on disk
    folder: Comparison | None = None  # a folder import in place, as DVC reads its files
    holds_object: bool = False  # untracked, and its bytes are the listed object's
    # A whole prefix's objects as listed, by name below it (None: not listed).
    objects: dict[str, RemoteObject] | None = None
    sync_looks: bool = False  # a sync looks this file's object up (see compare.needs_listing)
    # Pinned, not on disk, and neither the DVC cache nor the bucket keeps the recorded
    # version (garbage-collected, then overwritten): only today's object can be had.
    recorded_gone: bool = False
    # No stage file, but git's HEAD has one (`dvc remove`, `rm`): it holds the recorded version.
    removed_stage: bool = False

    @property
    def wish(self) -> Wish:
        source = self.resource.source(self.file)
        res = self.resource
        return Wish(source, self.file is None, res.manifest, res.to_remote)

    @property
    def recorded(self) -> ImportStage | None:
        """The stage as compared: the committed dependency back (see stages.recommitted)."""
        # The listed object counts where a sync looks it up, as the sync sees it.
        listed = self.obj if self.sync_looks else None
        return self.stage and stages.recommitted(self.stage, self.committed, listed)

    @property
    def obj(self) -> RemoteObject | None:
        return self.listed if isinstance(self.listed, RemoteObject) else None

    @property
    def prefix(self) -> tuple[str, str]:
        return self.resource.bucket, self.resource.prefix


@dataclass
class Survey:
    manifest: Manifest  # with the patterns expanded
    selected: list[Resource]
    known: snapshot.Snapshot | None = None  # a snapshot proved the data folder unchanged
    # The snapshot answered alone: every selected file is in place; nothing else is gathered.
    shallow: bool = False
    findings: list[Finding] = field(default_factory=list)
    unmatched: list[PatternFailure] = field(default_factory=list)
    ours: dict[str, ImportStage] = field(default_factory=dict)  # gcsdvc's stages, by data path
    foreign: dict[str, ImportStage] = field(default_factory=dict)
    git: untracked.GitView = untracked.NOTHING
    lookups: Lookups = field(default_factory=dict)  # what the bucket answered, per prefix
    lookup_error: StorageError | None = None  # the look-up as a whole failed (Lookup.ALL)
    looked_up: bool = False  # a file in place had its object looked up all the same
    state: str | None = None  # the disk before it was read (``watch``)

    @functools.cached_property
    def mode(self) -> Pinning:
        """The pinning mode, read when first asked (a survey of local facts never asks)."""
        return pinning(self.manifest.root, self.manifest.pin_generations)

    @property
    def quick(self) -> bool:
        return self.known is not None

    @functools.cached_property
    def wanted(self) -> dict[str, tuple[Resource, str | None]]:
        """Every data path the whole manifest asks for (see :func:`desired`); only what
        asks for it pays for it (a no-op of 100,000 files does not)."""
        return desired(self.manifest)

    @property
    def orphans(self) -> dict[str, ImportStage]:
        """gcsdvc's stages no entry of the whole manifest asks for, but those taken by a move."""
        moved = {f.moved_from for f in self.findings}
        return {k: s for k, s in self.ours.items() if k not in self.wanted and k not in moved}


def desired(manifest: Manifest) -> dict[str, tuple[Resource, str | None]]:
    """Every data path the whole manifest asks for, with its entry and file."""
    wanted: dict[str, tuple[Resource, str | None]] = {}
    for res in manifest.resources:
        for file in res.targets:
            wanted[manifest.local(res, file)] = (res, file)
    return wanted


def survey(
    manifest: Manifest,
    selected: Sequence[Resource],
    storage: Storage | None,
    *,
    names: Sequence[str] = (),
    lookup: Lookup = Lookup.NEEDED,
    detail: bool = True,
    watch: bool = False,
) -> Survey:
    """Gather every fact about ``selected`` once (``storage`` None: offline).

    ``names``: the selection as given (part of a snapshot's key). ``detail``: False
    lets a snapshot answer alone when no object needs a look-up: no stage is read.
    ``watch``: note in ``state`` what the disk was before it was read
    (:func:`gcsdvc.snapshot.state`), so that a sync can tell, once it holds DVC's
    lock, whether its plan still stands.
    """
    root = manifest.root
    found = Survey(manifest, list(selected))
    # With ``watch`` the data folder is walked once, for the snapshot and for the state.
    walked = snapshot.tree(manifest.data_path) if watch else None
    known = found.known = snapshot.unchanged(manifest, names, found.mode.pinned, walked)
    quiet = lookup is Lookup.NONE or storage is None
    quiet |= lookup is Lookup.NEEDED and known is not None and known.quiet
    if known is not None and not detail and quiet:
        found.shallow = True  # no finding either: a no-op of 100,000 files pays for none
        return found
    if watch:
        found.state = snapshot.state(manifest, walked)
    if known is not None and known.stage_cache is not None:
        locals_ = [manifest.local(res, file) for res in selected for file in res.targets]
        found.ours = stages.cached_stages(root, locals_, known.stage_cache)
    if not found.ours:
        found.ours, found.foreign = stages.scan(root, manifest.data_path, manifest.owner)
    manifest, chosen, found.unmatched = expand_patterns(
        manifest, selected, storage, found.ours, found.mode.pinned
    )
    found.manifest, found.selected = manifest, list(chosen)
    stage_of = {**found.foreign, **found.ours}
    found.findings = [
        Finding(res, file, local, stage_of.get(local))
        for res in found.selected
        for file in res.targets
        for local in (manifest.local(res, file),)
    ]
    # Under a snapshot HEAD's record is the stages' own, and the data folder holds
    # nothing git would report (a snapshot is only taken of such a folder).
    if known is None:
        found.git = untracked.look(root, manifest.data_path)
    _gather(found, storage, lookup)
    if storage is not None and lookup is Lookup.ALL and found.mode.pinned:
        _find_gone(found, storage)
    return found


def survey_local(manifest: Manifest, places: Sequence[tuple[Resource, str | None, str]]) -> Survey:
    """What is at the given destinations only (entry, file, data path), gathered as
    :func:`survey` gathers it offline: each one's stage read alone, no other stage
    scanned, git and the bucket not asked (``which`` and the API's full check)."""
    root = manifest.root
    selected = [res for res, _, _ in places]
    found = Survey(manifest, selected)
    found.findings = [
        Finding(res, file, local, ImportStage.load(root / stages.stage_path(local)))
        for res, file, local in places
    ]
    _gather(found, None, Lookup.NONE)
    return found


def _gather(found: Survey, storage: Storage | None, lookup: Lookup) -> None:
    """Each finding's committed stage, disk, folder and held object (and the bucket's answers)."""
    root, known = found.manifest.root, found.known
    staged = [f.local for f in found.findings if f.file is not None and f.stage is not None]
    committed = committed_where_changed(root, staged, found.git.changed)
    for finding in found.findings:
        finding.committed = committed.get(finding.local)
        removed = finding.stage is None and finding.file is not None
        finding.removed_stage = removed and stages.stage_path(finding.local) in found.git.changed
    if known is not None:  # every file is proven to hold the bytes its stage records
        for finding in found.findings:
            finding.disk = _proven(finding.stage)
    else:
        disks = read_disks(root, [(f.local, f.stage, f.file is None) for f in found.findings])
        for finding in found.findings:
            finding.disk = disks[finding.local]
    _take_orphans(found)
    _look_up(found, storage, lookup)
    _follow_folders(found, storage, lookup)
    in_place = [
        f.local
        for f in found.findings
        if f.file is None
        and compare(f.wish, f.recorded, f.disk, Upstream.NOT_LISTED).state is State.OK
    ]
    if in_place:
        with stages.open_repo(root) as repo:
            folders = read_folders(repo, root, in_place)
        for finding in found.findings:
            finding.folder = folders.get(finding.local)
    stageless: dict[str, tuple[Disk, RemoteObject]] = {}  # untracked files that may be theirs
    for f in found.findings:
        obj = f.obj
        if f.file is not None and obj is not None and f.stage is None and f.disk.exists:
            stageless[f.local] = (f.disk, obj)
    held = holding(root, stageless)
    for finding in found.findings:
        finding.holds_object = finding.local in held


def _find_gone(found: Survey, storage: Storage) -> None:
    """Note the files whose recorded version is to be had nowhere (see Finding.recorded_gone):
    the listed object is another, the recorded md5 is not in the DVC cache, and the bucket
    does not keep the recorded generation (asked once per such file)."""
    candidates: dict[str, tuple[Finding, ImportStage]] = {}
    for f in found.findings:
        stage, obj = f.recorded, f.obj
        if f.file is None or stage is None or stage.md5 is None or obj is None:
            continue
        if f.disk.md5 != stage.md5 and object_change(stage, obj) is Change.CONTENT:
            candidates[f.local] = (f, stage)
    recorded = {local: stage.md5 for local, (_, stage) in candidates.items() if stage.md5}
    cached = in_cache(found.manifest.root, recorded)
    for local, (f, stage) in candidates.items():
        generation = recorded_generation(stage)
        if local in cached:
            continue
        name = f"{f.resource.prefix}/{f.file}".lstrip("/")
        try:
            kept = generation and storage.stat_generation(f.resource.bucket, name, generation)
        except StorageError:
            continue  # unknown: a sync names it if it is really gone
        f.recorded_gone = not kept


def _proven(stage: ImportStage | None) -> Disk:
    """A file a snapshot proved to hold its stage's bytes."""
    if stage is None:
        return Disk(exists=True, is_file=True)
    return Disk(exists=True, is_file=True, size=stage.size, md5=stage.md5)


def _take_orphans(found: Survey) -> None:
    """Note, for each destination not synced yet, an orphan stage of the same object whose
    data is still on disk; each is taken once, the one that was this entry's first."""
    new = [f for f in found.findings if f.file is not None and not (f.stage or f.disk.exists)]
    orphans = {k: s for k, s in found.ours.items() if k not in found.wanted} if new else {}
    if not orphans:
        return
    root = found.manifest.root
    for finding in new:
        source = finding.resource.source(finding.file)
        candidates = [
            local
            for local, stage in orphans.items()
            if stage.source == source and not stage.is_folder and (root / local).exists()
        ]
        if not candidates:
            continue
        mine = stages.Identity.of(finding.resource, finding.file)
        candidates.sort(key=lambda local: orphans[local].identity != mine)
        finding.moved_from = candidates[0]
        del orphans[candidates[0]]


def _follow_folders(found: Survey, storage: Storage | None, lookup: Lookup) -> None:
    """List the prefix of each whole-prefix entry in place whose source the answer depends on
    (every one for ``Lookup.ALL``, those that follow upstream otherwise, and those whose
    stage is to be pinned: the listing gives the generations): whether its objects are the
    ones the stage records, others, or none (deleted upstream)."""
    if storage is None or lookup is Lookup.NONE or found.lookup_error is not None:
        return
    for f in found.findings:
        if f.file is not None or f.stage is None:
            continue
        pin = found.mode.pinned and not f.stage.versioned
        if f.resource.skip_if_exist and lookup is not Lookup.ALL and not pin:
            continue
        state = compare(f.wish, f.recorded, f.disk, Upstream.NOT_LISTED).state
        if state is not State.OK and not (pin and state is State.MISSING):
            continue
        try:
            f.objects = storage.list_objects(f.resource.bucket, f.resource.prefix)
        except StorageError as exc:
            f.listed = exc
            continue
        if not f.objects:
            f.listed = None
        else:
            sources = etag_tree(f.objects)
            recorded = stages.folder_sources(stages.first_entry(f.stage.raw.get("deps")))
            same = recorded == sources.oid
            f.listed = Upstream.SAME_FOLDER if same else Upstream.OTHER_FOLDER
        found.looked_up = True


def _look_up(found: Survey, storage: Storage | None, lookup: Lookup) -> None:
    """Ask the bucket about the objects the answer depends on (``lookup``), once per prefix."""
    asked: dict[tuple[str, str], set[str]] = {}
    for f in found.findings:
        if f.file is None or lookup is Lookup.NONE or f.moved_from is not None:
            continue
        state = compare(f.wish, f.recorded, f.disk, Upstream.NOT_LISTED).state
        stage = f.recorded
        generation = stage is None or stage.generation is not None
        skip = f.resource.skip_if_exist
        in_place = state in (State.OK, State.IN_REMOTE)  # wants no look-up, but to follow upstream
        f.sync_looks = not in_place or needs_listing(skip, found.mode.pinned, generation)
        if lookup is Lookup.ALL:
            if storage is not None:
                asked.setdefault(f.prefix, set()).add(f.file)
        elif f.sync_looks:
            asked.setdefault(f.prefix, set()).add(f.file)
            found.looked_up |= state is State.OK
    if not asked:
        return
    if storage is None:
        found.lookups = {key: StorageError("upstream not checked (offline)") for key in asked}
    elif lookup is Lookup.ALL:
        try:
            found.lookups = storage.lookup(asked)
        except StorageError as exc:
            found.lookup_error = exc
            return
    else:
        found.lookups = storage.lookup(asked)
    for f in found.findings:
        if f.file is not None and f.file in asked.get(f.prefix, ()):
            answer = found.lookups[f.prefix]
            f.listed = answer.get(f.file) if isinstance(answer, dict) else answer
