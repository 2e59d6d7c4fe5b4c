"""The plan: each destination's state (see :mod:`gcsdvc.compare`) mapped to an action.

Planning reads every gcsdvc stage below the data folder once, looks at each
destination, and lists each object prefix at most once, and only when an answer
depends on it. The action comes from one table, :data:`ACTIONS`. Planning
writes nothing but its caches in ``.dvc/tmp``: a plan that finds every file in
place records a snapshot, and the next plan that the snapshot proves unchanged
skips the per-file work (see :mod:`gcsdvc.snapshot`). :mod:`gcsdvc.sync` carries
a plan out and ``--dry-run`` prints it.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

from gcsdvc import snapshot, stages, untracked
from gcsdvc.compare import (
    Comparison,
    Disk,
    State,
    Upstream,
    Wish,
    compare,
    needs_listing,
    stale_stage,
)
from gcsdvc.errors import StorageError
from gcsdvc.expand import PatternFailure, expand_patterns, refused_folders
from gcsdvc.manifest import Manifest, Resource, did_you_mean, join_path, matches
from gcsdvc.remote import pinning
from gcsdvc.stages import ImportStage
from gcsdvc.workspace import holding, read_disks, read_folders

if TYPE_CHECKING:
    from gcsdvc.storage import Looked, RemoteObject, Storage

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
    """What decides an action: the state, the entry's ``skip_if_exist``, pinning, flags."""

    state: State
    skip_if_exist: bool
    pinned: bool
    force: bool
    folder: bool


_KEPT = "changed upstream; kept (skip_if_exist: true)"
_ADOPT = "record the copy on disk"
_GONE = "deleted upstream; local copy kept"
_IN_THE_WAY = "a stage not written by gcsdvc is in the way: {stage_file}"
_BROKEN = (
    "{stage_file} cannot be read ({note}): resolve the merge conflict in it, "
    "or delete it and sync again"
)
# Rules, first match wins; None matches either value. Expanded into ACTIONS below.
_RULES: list[tuple[State, bool | None, bool | None, bool | None, bool | None, Action, str]] = [
    # state, skip_if_exist, pinned, force, folder -> action, note (else the comparison's)
    (State.OK, False, None, None, True, Action.UPDATE, "follows upstream (skip_if_exist: false)"),
    (State.OK, None, None, None, None, Action.UNCHANGED, ""),
    (State.NOT_SYNCED, None, None, None, None, Action.ADD, ""),
    (State.NOT_FOUND, None, None, None, None, Action.FAILED, ""),
    (State.UNTRACKED, None, None, True, None, Action.ADD, "replaces the local file (--force)"),
    (State.UNTRACKED, None, None, False, None, Action.CONFLICT, ""),
    (State.FOREIGN, None, None, None, None, Action.FAILED, _IN_THE_WAY),
    (State.LISTING_FAILED, None, None, None, None, Action.FAILED, ""),
    (State.REFUSED, None, None, None, None, Action.FAILED, ""),
    (State.BROKEN_STAGE, None, None, None, None, Action.FAILED, _BROKEN),
    (State.MODIFIED, False, None, True, None, Action.UPDATE, "replaces the local edit (--force)"),
    (State.MODIFIED, True, None, True, None, Action.RESTORE, "replaces the local edit (--force)"),
    (State.MODIFIED, None, None, False, None, Action.CONFLICT, ""),
    (State.SOURCE_MOVED, None, None, None, None, Action.UPDATE, ""),
    (State.MISSING, None, None, None, None, Action.RESTORE, ""),
    (State.CHANGED_UPSTREAM, False, None, None, None, Action.UPDATE, "changed upstream"),
    (State.CHANGED_UPSTREAM, True, None, None, None, Action.UNCHANGED, _KEPT),
    (State.METADATA_UPSTREAM, None, None, None, None, Action.METADATA, ""),
    (State.STALE_STAGE, False, None, None, True, Action.UPDATE, "follows upstream"),
    (State.STALE_STAGE, None, None, None, None, Action.METADATA, ""),
    (State.DELETED_UPSTREAM, None, None, None, None, Action.UNCHANGED, _GONE),
]


def _expand() -> dict[Key, tuple[Action, str]]:
    table: dict[Key, tuple[Action, str]] = {}
    both = (False, True)
    for state, skip, pinned, force, folder in itertools.product(State, both, both, both, both):
        flags = (skip, pinned, force, folder)
        for rule in _RULES:
            if rule[0] is state and all(
                want is None or want == got for want, got in zip(rule[1:5], flags, strict=True)
            ):
                table[Key(state, *flags)] = (rule[5], rule[6])
                break
    return table


ACTIONS: dict[Key, tuple[Action, str]] = _expand()
"""Every (state, skip_if_exist, pinned, force, folder) and its action, with a note."""


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


def desired(manifest: Manifest) -> dict[str, tuple[Resource, str | None]]:
    """Every data path the whole manifest asks for, with its entry and file."""
    wanted: dict[str, tuple[Resource, str | None]] = {}
    for res in manifest.resources:
        for file in res.targets:
            wanted[manifest.local(res, file)] = (res, file)
    return wanted


def decide(key: Key, found: Comparison, local: str) -> tuple[Action, str]:
    """The action for a comparison at ``local``, and the note to show with it."""
    action, note = ACTIONS[key]
    return action, note.format(stage_file=stages.stage_path(local), note=found.note) or found.note


@dataclass
class _Draft:
    resource: Resource
    file: str | None
    local: str
    stage: ImportStage | None
    committed: ImportStage | None = None

    @property
    def recorded(self) -> ImportStage | None:
        """The stage as compared: the committed dependency back (see stages.recommitted)."""
        return self.stage and stages.recommitted(self.stage, self.committed)

    @property
    def wish(self) -> Wish:
        return Wish(self.resource.source(self.file), is_folder=self.file is None)

    @property
    def prefix(self) -> tuple[str, str]:
        return self.resource.bucket, self.resource.prefix


def build_plan(
    manifest: Manifest,
    selected: Sequence[Resource],
    storage: Storage | None,
    prune: bool = False,
    patterns: Sequence[str] = (),
    force: bool = False,
    watch: bool = False,
) -> Plan:
    """Compare the selected entries with the disk (and, where needed, with storage).

    ``watch``: note in ``plan.state`` what the disk was before it was read
    (:func:`gcsdvc.snapshot.state`), so that a sync can tell, once it holds DVC's
    lock, whether the plan still stands.
    """
    root = manifest.root
    mode = pinning(root, manifest.pin_generations)
    plan = Plan(mode.pinned, force, warnings=mode.warnings)
    fast = snapshot.applies(manifest)  # of the manifest as given: patterns expand below
    # With ``watch`` the data folder is walked once, for the snapshot and for plan.state.
    walked = snapshot.tree(manifest.data_path) if watch else None
    known = snapshot.unchanged(manifest, patterns, mode.pinned, walked)
    if known is not None and (known.quiet or storage is None):
        plan.unfrozen, plan.quick = known.unfrozen, True
        plan.items = [
            Item(Action.UNCHANGED, manifest.local(res, file), res, file, state=State.OK)
            for res in selected
            for file in res.targets
        ]
        return plan
    if watch:
        plan.state = snapshot.state(manifest, walked)
    ours, foreign = stages.scan(root, manifest.data_path)
    manifest, selected, unmatched = expand_patterns(manifest, selected, storage, ours, mode.pinned)
    wanted = desired(manifest)
    plan.wanted = wanted.keys()
    git = untracked.look(root, manifest.data_path)
    owned = wanted.keys() | ours.keys() | foreign.keys()
    plan.leftovers = git.unowned(owned)
    plan.unignored = git.exposed(ours.keys())
    orphans = {local: stage for local, stage in ours.items() if local not in wanted}
    drafts = [
        _Draft(res, file, local, ours.get(local) or foreign.get(local))
        for res in selected
        for file in res.targets
        for local in (manifest.local(res, file),)
    ]
    staged = [d.local for d in drafts if d.file and d.stage]
    committed = stages.committed_where_changed(root, staged, git.changed)
    for draft in drafts:
        draft.committed = committed.get(draft.local)
    disks = read_disks(root, [(d.local, d.stage, d.file is None) for d in drafts])

    moves: dict[str, str] = {}  # new local -> old local
    to_list: dict[tuple[str, str], set[str]] = {}
    in_place: list[str] = []  # folder imports whose folder is there: DVC reads their files
    for draft in drafts:
        found = compare(draft.wish, draft.recorded, disks[draft.local], Upstream.NOT_LISTED)
        if draft.file is None and found.state is State.OK:
            in_place.append(draft.local)
        if found.state is State.NOT_SYNCED and draft.file is not None:
            old = _take_orphan(draft, orphans, root)
            if old is not None:
                moves[draft.local] = old
                continue
        if draft.file is not None and _needs_listing(found.state, draft, plan.pinned):
            to_list.setdefault(draft.prefix, set()).add(draft.file)
            plan.looked_up |= found.state is State.OK
    listings = _list(storage, to_list)
    folders: dict[str, Comparison] = {}
    if in_place:
        with stages.open_repo(root) as repo:
            folders = read_folders(repo, root, in_place)

    stageless: dict[str, tuple[Disk, RemoteObject]] = {}  # files that may be their object
    index: dict[str, int] = {}  # their items' places in the plan
    for draft in drafts:
        old = moves.get(draft.local)
        if old is not None:
            stage = ours[old]
            plan.items.append(
                Item(Action.MOVE, draft.local, draft.resource, draft.file, stage, old_local=old)
            )
            continue
        listed = _listed(listings, to_list, draft)
        disk = disks[draft.local]
        obj = listed if not isinstance(listed, Upstream | StorageError) else None
        found = compare(draft.wish, draft.recorded, disk, listed)
        if found.state is State.OK and draft.local in folders:
            found = folders[draft.local]  # as status reads it (see workspace.read_folders)
        stale = draft.stage and stale_stage(
            draft.stage, draft.resource, draft.file, plan.pinned, obj, draft.committed
        )
        if found.state is State.OK and stale:
            found = stale  # as status finds it
        state = _looked_up_as(found.state, disk.exists, draft)
        key = Key(state, draft.resource.skip_if_exist, plan.pinned, force, draft.file is None)
        action, note = decide(key, found, draft.local)
        if state is State.MISSING and disk.exists and draft.file is not None:
            # Recorded with --no-download, then placed (dvc pull): hash it, check it, record it.
            action, note = Action.METADATA, _ADOPT
        if state is State.UNTRACKED and draft.file is not None and obj is not None:
            stageless[draft.local] = (disk, obj)
            index[draft.local] = len(plan.items)
        if found.state is State.NOT_FOUND:
            note += _did_you_mean(storage, draft)
        if action is Action.UNCHANGED and stale:
            action = Action.METADATA  # a change upstream kept, the stage rewritten all the same
        item = Item(action, draft.local, draft.resource, draft.file, draft.stage, obj)
        plan.items.append(replace(item, committed=draft.committed, note=note, state=found.state))

    for local in holding(root, stageless):
        held = index[local]
        plan.items[held] = replace(plan.items[held], action=Action.METADATA, note=_ADOPT)
    _refuse_folders(manifest, storage, plan.items)
    plan.items += [pattern_failure_item(manifest, failure) for failure in unmatched]
    for local, stage in sorted(orphans.items()):
        if not patterns or matches(stage.name, patterns):
            action = Action.PRUNE if prune else Action.ORPHAN
            plan.items.append(Item(action, local, stage=stage, note="not in the manifest"))
    plan.unfrozen = sum(1 for i in plan.items if i.file and i.stage and not i.stage.frozen)
    if fast and not (plan.leftovers or plan.unignored) and all(map(unchanged, plan.items)):
        remember(manifest, patterns, plan, wanted)
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


def _take_orphan(draft: _Draft, orphans: dict[str, ImportStage], root: Path) -> str | None:
    """An orphan stage of the same object whose data is still on disk; it is taken once.

    When several entries import one object, the orphan that was this entry's is preferred.
    """
    source = draft.resource.source(draft.file)
    candidates = [
        local
        for local, stage in orphans.items()
        if stage.source == source and not stage.is_folder and (root / local).exists()
    ]
    if not candidates:
        return None
    mine = stages.Identity.of(draft.resource, draft.file)
    candidates.sort(key=lambda local: orphans[local].identity != mine)
    old = candidates[0]
    del orphans[old]
    return old


def _needs_listing(state: State, draft: _Draft, pinned: bool) -> bool:
    stage = draft.recorded
    generation = stage is None or stage.generation is not None
    return state is not State.OK or needs_listing(draft.resource.skip_if_exist, pinned, generation)


def _looked_up_as(state: State, on_disk: bool, draft: _Draft) -> State:
    """The state the table is asked with: a missing file's changed object waits for its turn.

    With ``skip_if_exist: true`` a missing file is restored as recorded, whatever
    the bucket holds now (the table's "kept" is for a file that is there).
    """
    if state is State.CHANGED_UPSTREAM and not on_disk and draft.resource.skip_if_exist:
        return State.MISSING
    return state


def _list(
    storage: Storage | None, wanted: dict[tuple[str, str], set[str]]
) -> dict[tuple[str, str], Listing]:
    """Look up only the files that need it (see :meth:`gcsdvc.storage.Storage.lookup`)."""
    if not wanted:
        return {}
    if storage is None:
        return {key: StorageError("upstream not checked (offline)") for key in wanted}
    return storage.lookup(wanted)


def _listed(
    listings: dict[tuple[str, str], Listing],
    asked: dict[tuple[str, str], set[str]],
    draft: _Draft,
) -> RemoteObject | Upstream | StorageError | None:
    if draft.file is None or draft.file not in asked.get(draft.prefix, ()):
        return Upstream.NOT_LISTED  # DVC checks folder imports itself; the rest needed no answer
    listing = listings[draft.prefix]
    if isinstance(listing, dict):
        return listing.get(draft.file)
    return listing


def _did_you_mean(storage: Storage | None, draft: _Draft) -> str:
    """Close names in the missing object's folder (one listing, on this error path only)."""
    if storage is None or draft.file is None:
        return ""
    folder, _, name = draft.file.rpartition("/")
    try:
        _, names = storage.list_folder(
            draft.resource.bucket, join_path(draft.resource.prefix, folder)
        )
    except StorageError:
        return ""
    close = did_you_mean(name, names, prefix=folder)
    return f"; {close}" if close else ""
