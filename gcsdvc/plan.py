"""The plan: what the manifest asks for, set against the stages and data on disk.

Planning reads every gcsdvc stage below the data folder once and lists each
object prefix at most once, and only when an answer depends on it. It writes
nothing; :mod:`gcsdvc.sync` carries a plan out and ``--dry-run`` prints it.
"""

from __future__ import annotations

import posixpath
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gcsdvc import stages
from gcsdvc.errors import StorageError
from gcsdvc.manifest import Manifest, Resource, matches
from gcsdvc.stages import Stage

if TYPE_CHECKING:
    from gcsdvc.storage import RemoteObject, Storage

    Listing = dict[str, RemoteObject] | StorageError


class Action(str, Enum):
    ADD = "add"  # no stage yet: download, then write the stage
    UPDATE = "update"  # the object changed upstream (skip_if_exist: false) or the source moved
    RESTORE = "restore"  # the stage is there, the data is not
    METADATA = "metadata"  # description or name changed: rewrite the stage only
    MOVE = "move"  # destination changed: move data and stage
    PRUNE = "prune"  # no longer in the manifest, removed with --prune
    ORPHAN = "orphan"  # no longer in the manifest, left in place
    UNCHANGED = "unchanged"
    FAILED = "failed"  # cannot be done: bucket or object missing, storage error

    def __str__(self) -> str:
        return self.value


@dataclass
class Item:
    """One file (or whole-prefix folder) and what the sync will do with it."""

    action: Action
    local: str  # repo-relative POSIX path of the data
    resource: Resource | None = None  # None for orphans
    file: str | None = None  # None: a whole-prefix import
    stage: Stage | None = None  # the stage on disk now (for MOVE: at old_local)
    obj: RemoteObject | None = None  # the object as listed, when it was needed
    old_local: str | None = None  # MOVE: where the data and stage are now
    note: str = ""  # why: an error for FAILED, a remark otherwise

    @property
    def name(self) -> str:
        if self.resource is not None:
            return self.resource.name
        ident = stages.identity(self.stage) or {}
        return str(ident.get("name", "?"))

    @property
    def source(self) -> str:
        if self.resource is not None:
            return self.resource.source(self.file)
        return str(stages.dep(self.stage or {}).get("path", "?"))


@dataclass
class Plan:
    manifest: Manifest
    pinned: bool  # whether file stages pin the object generation (see stages.conform)
    items: list[Item] = field(default_factory=list)

    def of(self, *actions: Action) -> list[Item]:
        return [item for item in self.items if item.action in actions]

    @property
    def has_work(self) -> bool:
        idle = (Action.UNCHANGED, Action.ORPHAN, Action.FAILED)
        return any(item.action not in idle for item in self.items)

    def counts(self) -> dict[str, Counter[Action]]:
        """Per experiment name, how many items get each action."""
        out: dict[str, Counter[Action]] = {}
        for item in self.items:
            out.setdefault(item.name, Counter())[item.action] += 1
        return out


def identity_of(resource: Resource, file: str | None) -> dict[str, Any]:
    """What a stage's ``meta.gcsdvc`` records to tie it to its manifest entry."""
    ident: dict[str, Any] = {
        "name": resource.name,
        "bucket": resource.bucket,
        "blob": resource.blob,
        "subblob": resource.subblob,
    }
    if file is not None:
        ident["file"] = file
    return ident


def desired(manifest: Manifest) -> dict[str, tuple[Resource, str | None]]:
    """Every data path the whole manifest asks for, with its entry and file."""
    wanted: dict[str, tuple[Resource, str | None]] = {}
    for res in manifest.resources:
        for file in res.files or (None,):
            wanted[manifest.local(res, file)] = (res, file)
    return wanted


def read_stages(manifest: Manifest) -> tuple[dict[str, Stage], dict[str, Stage]]:
    """Stages below the data folder: (gcsdvc's, others), keyed by repo-relative data path."""
    ours: dict[str, Stage] = {}
    foreign: dict[str, Stage] = {}
    root = manifest.root
    cache = stages.StageCache(root)
    for path in stages.find_stages(manifest.data_path):
        local = path.relative_to(root).as_posix()[: -len(stages.STAGE_SUFFIX)]
        stage = cache.read(path, local)
        if stage is not None:
            (ours if stages.identity(stage) is not None else foreign)[local] = stage
    cache.save()
    return ours, foreign


def stage_for(
    local: str, source: str, ours: dict[str, Stage], foreign: dict[str, Stage]
) -> Stage | None:
    """The stage that stands for ``local``: gcsdvc's, or a plain import of the same object."""
    stage = ours.get(local)
    other = foreign.get(local)
    if stage is None and other is not None and stages.dep(other).get("path") == source:
        return other  # a plain `dvc import-url` of the same object: adopt it
    return stage


def build_plan(
    manifest: Manifest,
    selected: Sequence[Resource],
    storage: Storage | None,
    prune: bool = False,
    patterns: Sequence[str] = (),
) -> Plan:
    """Compare the selected entries with the disk (and, where needed, with storage)."""
    root = manifest.root
    wanted = desired(manifest)
    ours, foreign = read_stages(manifest)
    pinned = manifest.pin_generations
    if pinned is None:
        pinned = not stages.has_default_remote(root)
    plan = Plan(manifest, pinned)
    pending: list[Item] = []  # items whose action waits for a listing

    for res in selected:
        for file in res.files or (None,):
            local = manifest.local(res, file)
            item = Item(Action.UNCHANGED, local, res, file)
            item.stage = stage_for(local, item.source, ours, foreign)
            plan.items.append(item)
            if item.stage is None and local in foreign:
                item.action = Action.FAILED
                item.note = f"a stage not written by gcsdvc is in the way: {local}.dvc"
                continue
            if file is None:
                _plan_folder(item, root)
            else:
                pending.append(item)

    listings = _list(storage, pending, root, pinned)
    orphans = {local: stage for local, stage in ours.items() if local not in wanted}
    by_source = {str(stages.dep(st).get("path")): local for local, st in orphans.items()}
    for item in pending:
        _plan_file(item, root, listings, orphans, by_source, pinned)

    for local, stage in sorted(orphans.items()):
        name = str((stages.identity(stage) or {}).get("name", ""))
        if not patterns or matches(name, patterns):
            action = Action.PRUNE if prune else Action.ORPHAN
            plan.items.append(Item(action, local, stage=stage, note="not in the manifest"))
    return plan


def _needs_listing(item: Item, root: Path, pinned: bool) -> bool:
    res = item.resource
    assert res is not None
    stage = item.stage
    return (
        stage is None
        or not res.skip_if_exist
        or stages.dep(stage).get("path") != item.source
        or not (root / item.local).exists()
        or not stages.out(stage).get("md5")
        or (pinned and "version_id" not in stages.dep(stage))
    )


def _list(
    storage: Storage | None, items: list[Item], root: Path, pinned: bool
) -> dict[tuple[str, str], Listing]:
    keys = []
    for item in items:
        if _needs_listing(item, root, pinned):
            assert item.resource is not None
            keys.append((item.resource.bucket, item.resource.prefix))
    if not keys:
        return {}
    if storage is None:
        return {key: StorageError("upstream not checked (offline)") for key in keys}
    return storage.list_prefixes(keys)


def _plan_file(
    item: Item,
    root: Path,
    listings: dict[tuple[str, str], Listing],
    orphans: dict[str, Stage],
    by_source: dict[str, str],
    pinned: bool,
) -> None:
    res, file, stage = item.resource, item.file, item.stage
    assert res is not None and file is not None
    listing = listings.get((res.bucket, res.prefix))
    if isinstance(listing, StorageError):
        item.action, item.note = Action.FAILED, str(listing)
        return
    if listing is not None:
        item.obj = listing.get(file)
    on_disk = (root / item.local).exists()

    if stage is None:
        old = by_source.get(item.source)
        if old is not None and (root / old).exists():
            old_stage = orphans.pop(old)
            item.action, item.stage, item.old_local = Action.MOVE, old_stage, old
            return
        if item.obj is None:
            item.action, item.note = Action.FAILED, _not_found(item.source, file, listing)
            return
        item.action = Action.ADD
        return

    recorded = stages.dep(stage)
    changed = item.obj is not None and item.obj.dep_info.get("etag") != recorded.get("etag")
    if recorded.get("path") != item.source:
        item.action, item.note = Action.UPDATE, f"source changed from {recorded.get('path')}"
    elif changed and not res.skip_if_exist:
        item.action, item.note = Action.UPDATE, "changed upstream"
    elif not on_disk or not stages.out(stage).get("md5"):
        item.action = Action.RESTORE  # from the cache, else from the source if it still matches
    elif item.obj is None and listing is not None:
        item.note = "deleted upstream; local copy kept"
    elif changed:
        item.note = "changed upstream; kept (skip_if_exist: true)"
    if item.action is Action.UPDATE and item.obj is None:
        item.action, item.note = Action.FAILED, _not_found(item.source, file, listing)
        return
    if item.action is Action.UNCHANGED and conformed(item, pinned) != stage:
        item.action = Action.METADATA


def _not_found(source: str, file: str, listing: dict[str, RemoteObject] | None) -> str:
    """The error for an object missing from its prefix, with close names from the listing."""
    import difflib

    close = difflib.get_close_matches(file, list(listing or ()), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
    return f"object not found: {source}{hint}"


def _plan_folder(item: Item, root: Path) -> None:
    res, stage = item.resource, item.stage
    assert res is not None
    if stage is None:
        item.action = Action.ADD
    elif stages.dep(stage).get("path") != item.source:
        item.action, item.note = (
            Action.UPDATE,
            f"source changed from {stages.dep(stage).get('path')}",
        )
    elif not (root / item.local).exists():
        item.action = Action.RESTORE
    elif not res.skip_if_exist:
        item.action, item.note = Action.UPDATE, "follows upstream (skip_if_exist: false)"
    elif conformed(item, True) != stage:
        item.action = Action.METADATA


def conformed(item: Item, pinned: bool) -> Stage:
    """The item's current stage as the manifest and pinning mode want it now.

    Folder imports are DVC's own and always stay frozen.
    """
    assert item.resource is not None and item.stage is not None
    return stages.conform(
        item.stage,
        desc=item.resource.description,
        identity=identity_of(item.resource, item.file),
        pinned=pinned or item.file is None,
        dep_info=item.obj.dep_info if item.obj else None,
    )


def relative_out(local: str) -> str:
    """The ``outs[0].path`` of a stage: the data's name beside the stage file."""
    return posixpath.basename(local)
