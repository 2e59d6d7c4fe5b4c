"""The one comparison and the plan's action table, in process (no emulator, no DVC)."""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Any

import pytest

from gcsdvc import stages
from gcsdvc.compare import compare, local_edit, stale_stage
from gcsdvc.errors import StorageError
from gcsdvc.manifest import Resource
from gcsdvc.model import ABSENT, Disk, RemoteObject, State, Upstream, Wish
from gcsdvc.plan import Action, Key, actions, decide

RES = Resource("exp1", "bkt", "proj", "run", ("a.txt",), "exp1", True, "desc")
SOURCE = "gs://bkt/proj/run/a.txt"
MD5 = "0" * 32
OTHER_MD5 = "1" * 32


def obj(
    etag: str = "e1", generation: str | None = "100", md5: str | None = MD5, size: int = 5
) -> RemoteObject:
    dep: dict[str, Any] = {"etag": etag, "size": size}
    if generation:
        dep["version_id"] = generation
    return RemoteObject("bkt", "proj/run/a.txt", size, md5, None, dep, generation=generation)


def stage(**over: Any) -> stages.ImportStage:
    made = stages.file_stage(RES, "a.txt", "data/exp1/a.txt", obj(), MD5, pinned=True)
    return replace(made, **over) if over else made


def owned_by(manifest: str) -> stages.ImportStage:
    """The stage as the manifest ``manifest`` wrote it."""
    identity = stage().identity
    assert identity is not None
    return stage(identity=replace(identity, manifest=manifest))


FILE = Disk(exists=True, is_file=True, size=5, md5=MD5)
FOLDER = Wish("gs://bkt/proj/run", is_folder=True)
WISH = Wish(SOURCE)
NL = Upstream.NOT_LISTED
foreign = stage(identity=None)
unrecorded = stage(md5=None, size=None)

CASES: list[tuple[str, Wish, Any, Disk, Any, State]] = [
    # name, wish, stage, disk, listed, state
    ("in sync, not listed", WISH, stage(), FILE, NL, State.OK),
    ("in sync, same etag", WISH, stage(), FILE, obj(), State.OK),
    ("nothing yet", WISH, None, ABSENT, obj(), State.NOT_SYNCED),
    ("nothing yet, not listed", WISH, None, ABSENT, NL, State.NOT_SYNCED),
    ("nothing yet, object gone", WISH, None, ABSENT, None, State.NOT_FOUND),
    ("nothing yet, listing failed", WISH, None, ABSENT, StorageError("x"), State.LISTING_FAILED),
    ("untracked file", WISH, None, FILE, obj(), State.UNTRACKED),
    ("untracked beats a failed listing", WISH, None, FILE, StorageError("x"), State.UNTRACKED),
    ("foreign stage of another object", WISH, replace(foreign, source="gs://x/y"), ABSENT, obj(),
     State.FOREIGN),
    ("plain import of the same object is adopted", WISH, foreign, FILE, obj(), State.OK),
    ("listing failed", WISH, stage(), FILE, StorageError("down"), State.LISTING_FAILED),
    ("edited, same size", WISH, stage(), replace(FILE, md5=OTHER_MD5), obj(), State.MODIFIED),
    ("edited, other size", WISH, stage(), replace(FILE, size=6), NL, State.MODIFIED),
    ("not a regular file", WISH, stage(), replace(FILE, is_file=False), NL, State.MODIFIED),
    ("unreadable", WISH, stage(), replace(FILE, md5=None, unreadable=True), NL, State.MODIFIED),
    ("edit beats upstream change", WISH, stage(), replace(FILE, md5=OTHER_MD5), obj(etag="e2"),
     State.MODIFIED),
    ("an earlier version, in the DVC cache", WISH, stage(), replace(FILE, md5=OTHER_MD5,
     cached=True), NL, State.SUPERSEDED),
    ("other size, in the DVC cache", WISH, stage(), replace(FILE, size=6, md5=OTHER_MD5,
     cached=True), obj(), State.SUPERSEDED),
    ("the bucket's object now", WISH, stage(), replace(FILE, md5=OTHER_MD5),
     obj(etag="e2", generation="200", md5=OTHER_MD5), State.SUPERSEDED),
    ("a decoded copy is not the object's md5", WISH, stage(), replace(FILE, md5=OTHER_MD5),
     replace(obj(etag="e2", md5=OTHER_MD5), content_encoding="gzip"), State.MODIFIED),
    ("another manifest's stage", WISH, owned_by("more.yaml"), FILE, obj(), State.OTHER_MANIFEST),
    ("the default manifest's stage, asked by another", replace(WISH, manifest="more.yaml"),
     stage(), FILE, obj(), State.OTHER_MANIFEST),
    ("source moved", WISH, stage(source="gs://bkt/old/a.txt"), FILE, obj(), State.SOURCE_MOVED),
    ("source moved, object gone", WISH, stage(source="gs://bkt/old/a.txt"), FILE, None,
     State.NOT_FOUND),
    ("missing", WISH, stage(), ABSENT, NL, State.MISSING),
    ("missing, upstream changed", WISH, stage(), ABSENT, obj(etag="e2"), State.MISSING),
    ("no checksum recorded", WISH, unrecorded, FILE, NL, State.MISSING),
    ("changed upstream", WISH, stage(), FILE, obj(etag="e2", generation="200", md5=OTHER_MD5),
     State.CHANGED_UPSTREAM),
    ("identical bytes re-uploaded", WISH, stage(), FILE, obj(etag="e2", generation="200"),
     State.METADATA_UPSTREAM),
    ("missing, object rewritten", WISH, stage(), ABSENT, obj(etag="e2", generation="200",
     md5=OTHER_MD5), State.CHANGED_UPSTREAM),
    ("changed upstream, same generation, other bytes", WISH, stage(), FILE,
     obj(etag="e2", md5=OTHER_MD5), State.CHANGED_UPSTREAM),
    ("metadata only", WISH, stage(), FILE, obj(etag="e2"), State.METADATA_UPSTREAM),
    ("metadata only, composite object", WISH, stage(), FILE, obj(etag="e2", md5=None),
     State.METADATA_UPSTREAM),
    ("unpinned stage: size and md5 prove the same bytes", WISH, stage(generation=None), FILE,
     obj(etag="e2"), State.METADATA_UPSTREAM),
    ("unpinned stage, composite object: nothing proves sameness", WISH, stage(generation=None),
     FILE, obj(etag="e2", md5=None), State.CHANGED_UPSTREAM),
    ("deleted upstream", WISH, stage(), FILE, None, State.DELETED_UPSTREAM),
    ("folder in sync", FOLDER, stage(source=FOLDER.source, md5=None), Disk(True), NL, State.OK),
    ("folder missing", FOLDER, stage(source=FOLDER.source), ABSENT, NL, State.MISSING),
    ("folder in the way", FOLDER, None, Disk(True), NL, State.UNTRACKED),
    ("md5 edited by hand: not a checksum", WISH, stage(md5="xyz"), FILE, NL, State.BROKEN_STAGE),
    ("md5 edited by hand: the recorded object is the file's bytes", WISH, stage(md5=OTHER_MD5),
     FILE, obj(), State.BROKEN_STAGE),
    ("stage file unreadable", WISH, stages.ImportStage.unreadable("conflict"), FILE, obj(),
     State.BROKEN_STAGE),
    ("to_remote, synced before: not archived yet", replace(WISH, to_remote=True), stage(), FILE,
     obj(), State.STALE_STAGE),
    ("to_remote, offline: not archived yet", replace(WISH, to_remote=True), stage(), FILE, NL,
     State.STALE_STAGE),
    ("to_remote, changed upstream", replace(WISH, to_remote=True), stage(), FILE,
     obj(etag="e2", generation="101", md5=OTHER_MD5), State.CHANGED_UPSTREAM),
    ("to_remote, archived and pulled", replace(WISH, to_remote=True), stage(remote="team"), FILE,
     obj(), State.OK),
    ("archived, not on disk", WISH, stage(remote="team"), ABSENT, NL, State.IN_REMOTE),
    ("archived, object gone", WISH, stage(remote="team"), ABSENT, None, State.IN_REMOTE),
    ("archived, object unchanged", WISH, stage(remote="team"), ABSENT, obj(), State.IN_REMOTE),
    ("archived, new generation upstream", WISH, stage(remote="team"), ABSENT,
     obj(etag="e2", generation="101", md5=OTHER_MD5), State.CHANGED_UPSTREAM),
    ("archived, metadata changed upstream", WISH, stage(remote="team"), ABSENT, obj(etag="e2"),
     State.METADATA_UPSTREAM),
    ("archived and pulled", WISH, stage(remote="team"), FILE, obj(), State.OK),
    ("archived, pulled and edited", WISH, stage(remote="team"), replace(FILE, md5=OTHER_MD5),
     NL, State.MODIFIED),
]  # fmt: skip


@pytest.mark.parametrize(
    ("wish", "stage_", "disk", "listed", "state"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_compare(wish: Wish, stage_: Any, disk: Disk, listed: Any, state: State) -> None:
    assert compare(wish, stage_, disk, listed).state is state


def test_every_state_is_reached() -> None:
    # REFUSED is the names' check (manifest.unsafe_name), made before any comparison;
    # STALE_STAGE is stale_stage's, made after it, but for a file a to_remote entry has not
    # archived yet.
    assert {case[-1] for case in CASES} == set(State) - {State.REFUSED}


def test_a_stage_a_sync_would_rewrite_is_stale() -> None:
    """stale_stage, read by the plan and by status alike."""
    pinned = stage()
    assert stale_stage(pinned, RES, "a.txt", pinned=True) is None
    # Unpinned: a version_id recorded by `dvc exp run` / `dvc update` makes `dvc push` skip it.
    found = stale_stage(pinned, RES, "a.txt", pinned=False)
    assert found is not None and found.state is State.STALE_STAGE
    assert found.note == "records version_id 100, so 'dvc push' skips it"
    unpinned = stages.conform(pinned, RES, "a.txt", pinned=False)
    assert stale_stage(unpinned, RES, "a.txt", pinned=False) is None
    # Pinned, no generation recorded: the listed object's is added, when it is listed.
    assert stale_stage(unpinned, RES, "a.txt", pinned=True) is None
    assert stale_stage(unpinned, RES, "a.txt", pinned=True, obj=obj()) is not None
    # Another description in the manifest.
    assert stale_stage(pinned, replace(RES, description="new"), "a.txt", pinned=True) is not None


def test_notes_name_the_cause() -> None:
    assert compare(WISH, None, ABSENT, None).note == f"object not found: {SOURCE}"
    assert compare(WISH, stage(), FILE, StorageError("boom")).note == "boom"
    moved = compare(WISH, stage(source="gs://b/old"), FILE, obj())
    assert moved.note == "source changed from gs://b/old"
    assert local_edit(stage(), replace(FILE, size=7)) == "7 bytes, the stage records 5"
    assert local_edit(stage(), replace(FILE, md5=OTHER_MD5)) == (
        f"md5 {OTHER_MD5}, the stage records {MD5}"
    )
    assert local_edit(stage(), ABSENT) is None
    assert local_edit(unrecorded, FILE) is None


def expected(key: Key) -> Action:
    """The plan's rules, written out as a reader would state them."""
    if key.state is State.UNTRACKED and key.holds:
        return Action.METADATA  # the file is the object's bytes: recorded as it is
    if key.state is State.MISSING and key.on_disk and not key.folder:
        return Action.METADATA  # placed since (dvc pull): checked and recorded
    if key.state in (State.OK, State.STALE_STAGE):
        # A folder that follows upstream was asked about its source first (the survey):
        # in place, its objects are the recorded ones.
        if key.state is State.STALE_STAGE and key.to_archive:
            return Action.UPDATE  # synced before to_remote: true: archived now
        stale = key.state is State.STALE_STAGE or key.stale
        return Action.METADATA if stale else Action.UNCHANGED
    if key.state in (State.UNTRACKED, State.MODIFIED) and not key.force:
        return Action.CONFLICT  # local files are never replaced silently
    if key.state is State.UNTRACKED:
        return Action.ADD
    if key.state in (State.MODIFIED, State.SUPERSEDED):
        # An earlier version kept in the DVC cache is replaced as a forced edit is.
        return Action.RESTORE if key.skip_if_exist else Action.UPDATE
    if key.state is State.CHANGED_UPSTREAM:
        if not key.skip_if_exist:
            return Action.UPDATE  # an archived one is archived again
        if not key.on_disk and not key.archived:
            return Action.RESTORE  # kept means the recorded copy: restored as recorded
        return Action.METADATA if key.stale else Action.UNCHANGED
    if key.state is State.DELETED_UPSTREAM:
        return Action.METADATA if key.stale else Action.UNCHANGED
    simple = {
        State.NOT_SYNCED: Action.ADD,
        State.NOT_FOUND: Action.FAILED,
        State.FOREIGN: Action.FAILED,
        State.OTHER_MANIFEST: Action.FAILED,
        State.LISTING_FAILED: Action.FAILED,
        State.REFUSED: Action.FAILED,
        State.BROKEN_STAGE: Action.FAILED,
        State.SOURCE_MOVED: Action.UPDATE,
        State.MISSING: Action.RESTORE,
        State.METADATA_UPSTREAM: Action.METADATA,
        State.IN_REMOTE: Action.UNCHANGED,  # archived: kept in the DVC remote, not fetched
    }
    return simple[key.state]


BOTH = (False, True)
KEYS = [Key(state, *flags) for state in State for flags in itertools.product(BOTH, repeat=8)]


@pytest.mark.parametrize(
    "key",
    KEYS,
    ids=[
        f"{k.state}-skip{int(k.skip_if_exist)}-force{int(k.force)}"
        f"-{'folder' if k.folder else 'file'}-disk{int(k.on_disk)}-stale{int(k.stale)}"
        f"-holds{int(k.holds)}-archived{int(k.archived)}-to_archive{int(k.to_archive)}"
        for k in KEYS
    ],
)
def test_action_table(key: Key) -> None:
    assert actions()[key][0] is expected(key)


def test_table_has_every_cell_once() -> None:
    assert set(actions()) == set(KEYS)


def test_decide_prefers_the_table_note() -> None:
    key = Key(State.CHANGED_UPSTREAM, True, False, False, True, False, False, False, False)
    found = compare(WISH, stage(), FILE, obj(etag="e2", generation="2"))
    assert decide(key, found, "d/a.txt") == (
        Action.UNCHANGED,
        "changed upstream; kept (skip_if_exist: true)",
    )
    gone = compare(WISH, None, ABSENT, None)
    key = Key(gone.state, True, False, False, False, False, False, False, False)
    assert decide(key, gone, "d/a.txt") == (
        Action.FAILED,
        f"object not found: {SOURCE}",
    )
