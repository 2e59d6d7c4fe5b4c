"""The plan: each destination's state (see :mod:`gcsdvc.compare`) mapped to an action.

The facts come from one survey (:mod:`gcsdvc.survey`), which looks an object up
only when an answer depends on it. The action comes from one table,
:func:`actions`. Planning writes nothing but its caches in ``.dvc/tmp``: a plan
that finds every file in place records a snapshot, and the next survey that the
snapshot proves unchanged skips the per-file work (see :mod:`gcsdvc.snapshot`).
:mod:`gcsdvc.sync` carries a plan out and ``--dry-run`` prints it.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, fields, replace
from enum import Enum
from typing import TYPE_CHECKING

from gcsdvc import snapshot, stages
from gcsdvc.compare import compare, stale_stage
from gcsdvc.errors import StorageError
from gcsdvc.expand import PatternFailure, refused_folders
from gcsdvc.manifest import Manifest, Resource, did_you_mean, join_path, matches
from gcsdvc.model import SETTLED, Comparison, State
from gcsdvc.stages import ImportStage
from gcsdvc.survey import desired as desired
from gcsdvc.survey import survey

if TYPE_CHECKING:
    from gcsdvc.listing import Looked
    from gcsdvc.model import RemoteObject
    from gcsdvc.storage import Storage

    Listing = Looked | StorageError


class Action(str, Enum):
    ADD = "add"  # no stage yet: download, then write the stage
    UPDATE = "update"  # another object to fetch: changed upstream or the source moved
    RESTORE = "restore"  # the stage is there, the data is not (or --force over a local edit)
    # description, name, pinning or the object's etag: rewrite the stage; for a MISSING
    # file that is on disk (--no-download, then `dvc pull`): check the copy and record it
    METADATA = "metadata"
    MOVE = "move"  # destination changed: move data and stage
    PRUNE = "prune"  # no longer in the manifest, removed with --prune
    ORPHAN = "orphan"  # no longer in the manifest, left in place
    UNCHANGED = "unchanged"
    CONFLICT = "conflict"  # a local file is in the way; kept (--force replaces it)
    FAILED = "failed"  # cannot be done: bucket or object missing, storage error

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Key:
    """What decides an action: the state, the entry's ``skip_if_exist``, the flags, the facts."""

    state: State
    skip_if_exist: bool
    force: bool
    folder: bool
    on_disk: bool  # something is at the destination
    stale: bool  # the stage is not what a sync writes (see compare.stale_stage)
    holds: bool  # an untracked file holding the listed object's very bytes
    archived: bool  # nothing on disk, the stage records the DVC remote holding the data
    to_archive: bool  # a file of a to_remote entry whose stage records no DVC remote yet


_KEPT = "changed upstream; kept (skip_if_exist: true)"
_ADOPT = "record the copy on disk"
_GONE = "deleted upstream; local copy kept"
_IN_THE_WAY = "a stage not written by gcsdvc is in the way: {stage_file}"
_BROKEN = (
    "{stage_file} cannot be read ({note}): resolve the merge conflict in it, "
    "or delete it and sync again"
)
_Rule = tuple[State, dict[str, bool], Action, str]


def _rule(state: State, action: Action, note: str = "", **when: bool) -> _Rule:
    """A rule: ``state`` and the flags in ``when`` (the others match either value)."""
    return state, when, action, note


# Rules, first match wins; note "": the comparison's. Expanded by actions().
_RULES: list[_Rule] = [
    _rule(State.OK, Action.METADATA, stale=True),  # a stage a sync rewrites is rewritten
    _rule(State.OK, Action.UNCHANGED),
    _rule(State.NOT_SYNCED, Action.ADD),
    _rule(State.NOT_FOUND, Action.FAILED),
    _rule(State.UNTRACKED, Action.METADATA, _ADOPT, holds=True),  # hash it, check it, record it
    _rule(State.UNTRACKED, Action.ADD, "replaces the local file (--force)", force=True),
    _rule(State.UNTRACKED, Action.CONFLICT),
    _rule(State.FOREIGN, Action.FAILED, _IN_THE_WAY),
    _rule(State.OTHER_MANIFEST, Action.FAILED, "{stage_file} {note}"),
    _rule(State.LISTING_FAILED, Action.FAILED),
    _rule(State.REFUSED, Action.FAILED),
    _rule(State.BROKEN_STAGE, Action.FAILED, _BROKEN),
    _rule(
        State.MODIFIED,
        Action.UPDATE,
        "replaces the local edit (--force)",
        skip_if_exist=False,
        force=True,
    ),
    _rule(State.MODIFIED, Action.RESTORE, "replaces the local edit (--force)", force=True),
    _rule(State.MODIFIED, Action.CONFLICT),
    _rule(State.SOURCE_MOVED, Action.UPDATE),
    # Recorded with --no-download, then placed (dvc pull): hash it, check it, record it.
    _rule(State.MISSING, Action.METADATA, _ADOPT, on_disk=True, folder=False),
    _rule(State.MISSING, Action.RESTORE),
    # Bytes the DVC cache (or the bucket) keeps: replaced as a forced edit is, without --force.
    _rule(State.SUPERSEDED, Action.UPDATE, skip_if_exist=False),
    _rule(State.SUPERSEDED, Action.RESTORE),
    _rule(State.CHANGED_UPSTREAM, Action.UPDATE, "changed upstream", skip_if_exist=False),
    # With skip_if_exist: true a missing file is restored as recorded, whatever the bucket
    # holds now ("kept" is for a file that is there, or archived in the DVC remote).
    _rule(State.CHANGED_UPSTREAM, Action.RESTORE, on_disk=False, archived=False),
    # A change upstream kept, the stage rewritten all the same.
    _rule(State.CHANGED_UPSTREAM, Action.METADATA, _KEPT, stale=True),
    _rule(State.CHANGED_UPSTREAM, Action.UNCHANGED, _KEPT),
    _rule(State.METADATA_UPSTREAM, Action.METADATA),
    # Synced before to_remote: true: the recorded object is archived, the stage gains the remote.
    _rule(State.STALE_STAGE, Action.UPDATE, to_archive=True),
    _rule(State.STALE_STAGE, Action.METADATA),
    _rule(State.DELETED_UPSTREAM, Action.METADATA, _GONE, stale=True),
    _rule(State.DELETED_UPSTREAM, Action.UNCHANGED, _GONE),
    _rule(State.IN_REMOTE, Action.UNCHANGED),
]


@functools.cache
def actions() -> dict[Key, tuple[Action, str]]:
    """Every :class:`Key` and its action, with a note: :data:`_RULES` expanded, once per
    process and only when a plan needs it (a no-op sync answered by its snapshot does not)."""
    table: dict[Key, tuple[Action, str]] = {}
    for state in State:
        for flags in itertools.product((False, True), repeat=len(fields(Key)) - 1):
            key = Key(state, *flags)
            for rule_state, when, action, note in _RULES:
                if rule_state is state and all(getattr(key, k) is v for k, v in when.items()):
                    table[key] = (action, note)
                    break
    return table


@dataclass(frozen=True)
class Item:
    """One file (or whole-prefix folder) and what the sync will do with it."""

    action: Action
    local: str  # repo-relative POSIX path of the data
    resource: Resource | None = None  # None for orphans
    file: str | None = None  # None: a whole-prefix import
    stage: ImportStage | None = None  # the stage on disk now (for MOVE: at old_local)
    obj: RemoteObject | None = None  # the object as listed, when it was needed
    old_local: str | None = None  # MOVE: where the data and stage are now
    committed: ImportStage | None = None  # the stage in git's HEAD, when the file differs from it
    note: str = ""  # why: an error for FAILED, a remark otherwise
    state: State | None = None  # what the comparison found (None for orphans)
    cause: StorageError | None = None  # FAILED for a look-up: its error, as the survey met it
    objects: dict[str, RemoteObject] | None = None  # a whole prefix, as the survey listed it
    removed_stage: bool = False  # see survey.Finding.removed_stage

    @property
    def name(self) -> str:
        if self.resource is not None:
            return self.resource.name
        return self.stage.name if self.stage is not None else "?"

    @property
    def source(self) -> str:
        if self.resource is not None:
            return self.resource.source(self.file)
        return self.stage.source if self.stage is not None else "?"


@dataclass
class Plan:
    pinned: bool  # whether file stages pin the object generation (see stages.conform)
    force: bool = False  # --force: local files in the way are replaced
    items: list[Item] = field(default_factory=list)
    warnings: tuple[str, ...] = ()  # about the pinning mode (see gcsdvc.remote.pinning)
    leftovers: list[str] = field(default_factory=list)  # untracked data files no stage owns
    unfrozen: int = 0  # file stages a user unfroze (``dvc unfreeze``); a sync keeps them so
    # A file in place had its object looked up all the same (see compare.needs_listing).
    looked_up: bool = False
    quick: bool = False  # a snapshot answered: every file unchanged, none looked at
    state: str | None = None  # the disk before it was read (build_plan's ``watch``)
    wanted: Collection[str] = ()  # every data path the whole manifest asks for (see desired)
    # Data files of gcsdvc stages that git sees: a sync writes their missing .gitignore lines.
    unignored: list[str] = field(default_factory=list)

    def of(self, *actions: Action) -> list[Item]:
        return [item for item in self.items if item.action in actions]

    @property
    def has_work(self) -> bool:
        idle = (Action.UNCHANGED, Action.ORPHAN, Action.FAILED, Action.CONFLICT)
        return bool(self.unignored) or any(item.action not in idle for item in self.items)


def decide(key: Key, found: Comparison, local: str) -> tuple[Action, str]:
    """The action for a comparison at ``local``, and the note to show with it."""
    action, note = actions()[key]
    return action, note.format(stage_file=stages.stage_path(local), note=found.note) or found.note


def build_plan(
    manifest: Manifest,
    selected: Sequence[Resource],
    storage: Storage | None,
    prune: bool = False,
    patterns: Sequence[str] = (),
    force: bool = False,
    watch: bool = False,
) -> Plan:
    """The action for each selected destination, from one :func:`~gcsdvc.survey.survey`.

    ``watch``: note in ``plan.state`` what the disk was before it was read
    (:func:`gcsdvc.snapshot.state`), so that a sync can tell, once it holds DVC's
    lock, whether the plan still stands.
    """
    fast = snapshot.applies(manifest)  # of the manifest as given: patterns expand in the survey
    found = survey(manifest, selected, storage, names=patterns, detail=False, watch=watch)
    plan = Plan(found.mode.pinned, force, warnings=found.mode.warnings)
    if found.shallow:
        assert found.known is not None
        plan.unfrozen, plan.quick = found.known.unfrozen, True
        plan.items = [
            Item(Action.UNCHANGED, manifest.local(res, file), res, file, state=State.OK)
            for res in selected
            for file in res.targets
        ]
        return plan
    manifest = found.manifest
    plan.state, plan.looked_up, plan.wanted = found.state, found.looked_up, found.wanted.keys()
    owned = found.wanted.keys() | found.ours.keys() | found.foreign.keys()
    plan.leftovers = found.git.unowned(owned)
    plan.unignored = found.git.exposed(found.ours.keys())
    for f in found.findings:
        if f.moved_from is not None:
            stage = found.ours[f.moved_from]
            plan.items.append(
                Item(Action.MOVE, f.local, f.resource, f.file, stage, old_local=f.moved_from)
            )
            continue
        obj = f.obj
        seen = compare(f.wish, f.recorded, f.disk, f.listed)
        if f.folder is not None and f.folder.state is not State.OK:
            seen = f.folder  # local facts first, as status reads them (workspace.read_folders)
        stale = f.stage and stale_stage(
            f.stage, f.resource, f.file, plan.pinned, obj, f.committed, f.objects
        )
        if seen.state in SETTLED and stale:
            seen = stale  # as status finds it
        folder, holds = f.file is None, f.holds_object
        skip, on_disk = f.resource.skip_if_exist, f.disk.exists
        in_remote = f.recorded is not None and f.recorded.remote is not None
        archived = in_remote and not on_disk
        to_archive = (
            f.resource.to_remote and not folder and f.recorded is not None and not in_remote
        )
        flags = (skip, force, folder, on_disk, bool(stale), holds, archived, to_archive)
        action, note = decide(Key(seen.state, *flags), seen, f.local)
        if seen.state is State.NOT_FOUND:
            note += _did_you_mean(storage, f.resource, f.file)
        cause = f.listed if isinstance(f.listed, StorageError) else None
        item = Item(
            action, f.local, f.resource, f.file, f.stage, obj, cause=cause, objects=f.objects
        )
        item = replace(item, committed=f.committed, note=note, state=seen.state)
        plan.items.append(replace(item, removed_stage=f.removed_stage))

    _refuse_folders(manifest, storage, plan.items)
    plan.items += [pattern_failure_item(manifest, failure) for failure in found.unmatched]
    for local, stage in sorted(found.orphans.items()):
        if not patterns or matches(stage.name, patterns):
            action = Action.PRUNE if prune else Action.ORPHAN
            plan.items.append(Item(action, local, stage=stage, note="not in the manifest"))
    plan.unfrozen = sum(1 for i in plan.items if i.file and i.stage and not i.stage.frozen)
    if fast and not (plan.leftovers or plan.unignored) and all(map(unchanged, plan.items)):
        remember(manifest, patterns, plan, found.wanted)
    return plan


def unchanged(item: Item) -> bool:
    """Whether the plan found ``item`` in place, with nothing to say about it."""
    return item.action is Action.UNCHANGED and item.state is State.OK and not item.note


def remember(
    manifest: Manifest,
    patterns: Sequence[str],
    plan: Plan,
    wanted: Collection[str],
    ledger: snapshot.Ledger | None = None,
) -> None:
    """Record a snapshot (see :mod:`gcsdvc.snapshot`) of a plan whose files are all in place."""
    selected = {
        item.local: item.resource.skip_if_exist for item in plan.items if item.resource is not None
    }
    snapshot.record(manifest, patterns, plan.pinned, selected, wanted, plan.looked_up, ledger)


def pattern_failure_item(manifest: Manifest, failure: PatternFailure) -> Item:
    """A pattern that gave no files (or an object it matched that is refused), as a failed item."""
    local = manifest.local(failure.resource, failure.pattern)
    state = State.REFUSED if failure.refused else None
    return Item(
        Action.FAILED, local, failure.resource, failure.pattern, note=failure.message, state=state
    )


def _refuse_folders(manifest: Manifest, storage: Storage | None, items: list[Item]) -> None:
    """Folder imports DVC would make now, of a prefix holding a name it cannot carry, fail."""
    todo = {
        item.resource.index: n
        for n, item in enumerate(items)
        if item.file is None
        and item.resource is not None
        and item.action in (Action.ADD, Action.UPDATE)
    }
    chosen = [items[n].resource for n in todo.values()]
    for index, message in refused_folders(manifest, storage, chosen).items():
        n = todo[index]
        items[n] = replace(items[n], action=Action.FAILED, note=message, state=State.REFUSED)


def _did_you_mean(storage: Storage | None, resource: Resource, file: str | None) -> str:
    """Close names in the missing object's folder (one listing, on this error path only)."""
    if storage is None or file is None:
        return ""
    folder, _, name = file.rpartition("/")
    try:
        _, names = storage.list_folder(resource.bucket, join_path(resource.prefix, folder))
    except StorageError:
        return ""
    close = did_you_mean(name, names, prefix=folder)
    return f"; {close}" if close else ""
