"""The one comparison: what the manifest wants, the stage, the disk and the bucket -> a State.

:func:`compare` is pure (no I/O): callers gather what is on disk
(:class:`Disk`) and what the listing says, then :mod:`gcsdvc.status` reports
the state and :mod:`gcsdvc.plan` maps it to an action. Every rule about how
these four relate lives here once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import Enum
from typing import TYPE_CHECKING

from gcsdvc import stages
from gcsdvc.errors import StorageError
from gcsdvc.manifest import DEFAULT_MANIFEST
from gcsdvc.model import (
    Comparison,
    Disk,
    RemoteObject,
    State,
    Upstream,
    Wish,
    etag_generation,
)
from gcsdvc.stages import ImportStage

if TYPE_CHECKING:
    from gcsdvc.manifest import Resource


Listed = RemoteObject | Upstream | StorageError | None


def compare(wish: Wish, stage: ImportStage | None, disk: Disk, listed: Listed) -> Comparison:
    """The state of one destination.

    ``stage`` is the stage at the destination, gcsdvc's or not; ``listed`` is the
    object as listed (None: listed and absent; a :class:`StorageError`: the
    listing failed). A plain ``dvc import-url`` stage of the same object counts
    as gcsdvc's (it is adopted). Local facts come first: a local edit or an
    untracked file wins over anything upstream.
    For a folder import only the stage, its source and existence are compared;
    the plan and status then read its files as DVC sees them, through the one
    :func:`gcsdvc.workspace.read_folders`.
    """
    if stage is not None and stage.broken is not None:
        return Comparison(State.BROKEN_STAGE, stage.broken)
    if stage is not None and stage.identity is None and stage.source != wish.source:
        return Comparison(State.FOREIGN, "a stage not written by gcsdvc is in the way")
    if (
        stage is not None
        and stage.identity is not None
        and stage.identity.manifest != wish.manifest
    ):
        owner = stage.identity.manifest or DEFAULT_MANIFEST
        note = f"belongs to the manifest {owner} (entry {stage.identity.name}); "
        return Comparison(
            State.OTHER_MANIFEST, note + "give one of the entries another destination"
        )
    if stage is None:
        if disk.exists:
            return Comparison(State.UNTRACKED, "no stage records it")
        if isinstance(listed, StorageError):
            return Comparison(State.LISTING_FAILED, str(listed))
        if listed is None:
            return Comparison(State.NOT_FOUND, f"object not found: {wish.source}")
        if not isinstance(listed, Upstream) and listed.encrypted:
            return Comparison(State.REFUSED, encrypted_note(listed))
        return Comparison(State.NOT_SYNCED)
    if isinstance(listed, StorageError):
        return Comparison(State.LISTING_FAILED, str(listed))
    edit = None if wish.is_folder else local_edit(stage, disk)
    wrong = None if edit is None else wrong_record(stage, disk, listed)
    if wrong is not None:
        return Comparison(State.BROKEN_STAGE, wrong)
    if edit is not None:
        if disk.cached or (
            listed is not None and not isinstance(listed, Upstream) and listed.holds(disk.md5)
        ):
            where = "the DVC cache" if disk.cached else "the bucket's object"
            return Comparison(State.SUPERSEDED, f"{edit}; those bytes are kept in {where}")
        return Comparison(State.MODIFIED, edit)
    if stage.source != wish.source:
        if listed is None:
            return Comparison(State.NOT_FOUND, f"object not found: {wish.source}")
        return Comparison(State.SOURCE_MOVED, f"source changed from {stage.source}")
    if not disk.exists:
        if stage.remote is not None:
            # Archived: follows the listed object as a file in place does.
            change = object_change(stage, listed) if isinstance(listed, RemoteObject) else None
            if change is Change.CONTENT:
                note = f"the DVC remote '{stage.remote}' holds the recorded one"
                return Comparison(State.CHANGED_UPSTREAM, note)
            if change is Change.METADATA:
                return Comparison(State.METADATA_UPSTREAM, METADATA_NOTE)
            return Comparison(State.IN_REMOTE, f"in the DVC remote '{stage.remote}'")
        if isinstance(listed, Upstream) or listed is None:
            return Comparison(State.MISSING)
        if object_change(stage, listed) is Change.CONTENT:
            # Restoring is no longer a copy of the source: say what hides behind "missing".
            return Comparison(State.CHANGED_UPSTREAM, "not on disk either")
        return Comparison(State.MISSING)
    if stage.md5 is None and not wish.is_folder:
        return Comparison(State.MISSING, "no checksum recorded (synced with --no-download)")
    if listed in (Upstream.NOT_LISTED, Upstream.SAME_FOLDER):
        return _in_place(wish, stage)
    if listed is Upstream.OTHER_FOLDER:
        return Comparison(State.CHANGED_UPSTREAM, "objects below the prefix changed")
    if listed is None:
        return Comparison(State.DELETED_UPSTREAM, "the local copy is kept")
    change = object_change(stage, listed)
    if change is Change.SAME:
        return _in_place(wish, stage)
    if change is Change.METADATA:
        return Comparison(State.METADATA_UPSTREAM, METADATA_NOTE)
    return Comparison(State.CHANGED_UPSTREAM)


UNARCHIVED_NOTE = "to_remote is true but the DVC remote holds no copy yet; a sync archives it"


def _in_place(wish: Wish, stage: ImportStage) -> Comparison:
    """A file in place: ok, unless the entry keeps its files in the DVC remote and the
    stage records none (synced before ``to_remote: true``)."""
    if wish.to_remote and not wish.is_folder and stage.remote is None:
        return Comparison(State.STALE_STAGE, UNARCHIVED_NOTE)
    return Comparison(State.OK)


def encrypted_note(obj: RemoteObject) -> str:
    """Why an object with a customer-supplied key cannot be synced, and what works."""
    return (
        "it is encrypted with a customer-supplied key (CSEK), which neither gcsdvc nor DVC "
        "sends, so no sync can fetch it; rewrite it with Google-managed encryption "
        f"('gcloud storage objects update {obj.url} --decryption-keys=YOUR_KEY "
        "--clear-encryption-key'), or leave it out of the entry"
    )


def stale_stage(
    stage: ImportStage,
    resource: Resource,
    file: str | None,
    pinned: bool,
    obj: RemoteObject | None = None,
    committed: ImportStage | None = None,
    objects: Mapping[str, RemoteObject] | None = None,
) -> Comparison | None:
    """Whether a sync rewrites ``stage`` (see :func:`gcsdvc.stages.conform`), and why.

    The one rule for it, read by the plan (which rewrites the stage) and by
    status (whose ``--check`` fails until then). ``obj``: the object as listed,
    when it was; ``committed``: the stage in git's HEAD, when the file differs;
    ``objects``: a whole prefix as listed, when it was.
    Unpinned, a ``version_id`` that ``dvc exp run`` or ``dvc update`` recorded
    makes DVC treat the import as pinned: ``dvc push`` skips its data.
    """
    shaped = stages.conform(stage, resource, file, pinned, obj, committed, objects)
    if shaped == stage:
        return None
    if not pinned and file is not None and stage.generation and shaped.generation is None:
        note = f"records version_id {stage.generation}, so 'dvc push' skips it"
    else:
        note = "not as a sync writes it (description, name, pinning or the object's record)"
    return Comparison(State.STALE_STAGE, note)


_MD5 = re.compile("[0-9a-f]{32}")


def wrong_record(stage: ImportStage, disk: Disk, listed: Listed) -> str | None:
    """Why a file stage's md5 cannot be its object's (edited by hand), or None.

    Either it is no md5 at all, or the recorded object, listed as recorded, has the
    file's bytes, which are not the md5 the stage records.
    """
    if stage.md5 is None:
        return None
    if not _MD5.fullmatch(stage.md5):
        return f"its md5 {stage.md5!r} is not a checksum (edited by hand?)"
    if (
        isinstance(listed, RemoteObject)
        and object_change(stage, listed) is Change.SAME
        and listed.holds(disk.md5)
    ):
        return (
            f"it records md5 {stage.md5}, but its object's bytes, which the file holds, "
            f"have md5 {disk.md5} (edited by hand?)"
        )
    return None


def local_edit(stage: ImportStage, disk: Disk) -> str | None:
    """Why the file at the destination is not the stage's bytes, or None if it is (or absent)."""
    if not disk.exists or stage.md5 is None:
        return None
    if not disk.is_file:
        return "not a regular file"
    if stage.size is not None and disk.size != stage.size:
        return f"{disk.size} bytes, the stage records {stage.size}"
    if disk.unreadable:
        return "cannot be read"
    if disk.md5 is not None and disk.md5 != stage.md5:
        return f"md5 {disk.md5}, the stage records {stage.md5}"
    return None


class Change(str, Enum):
    """How the listed object relates to the one a stage records."""

    SAME = "same"  # the recorded object, recorded as it is now
    METADATA = "metadata"  # same bytes, new etag: a metadata patch or an identical re-upload
    CONTENT = "content"  # other bytes, or no way to tell

    def __str__(self) -> str:
        return self.value


METADATA_NOTE = "only the object's metadata changed (new etag, same bytes)"


def object_change(stage: ImportStage, obj: RemoteObject) -> Change:
    """Identity by what the object is: the etag, else generation, size and md5.

    Cloud Storage changes an object's etag on any metadata change too; the
    generation (``version_id``, or inside a real etag) only when the bytes are
    rewritten. A new generation with the recorded size and md5 is an identical
    re-upload. A composite object has no md5 and a gzip-encoded one the md5 of
    other (compressed) bytes: only their generation can vouch for them.
    """
    if obj.etag == stage.etag:
        return Change.SAME
    stored = stage.source_size in (None, obj.size)
    generation = recorded_generation(stage)
    if generation is not None and generation == obj.generation and stored:
        unknown = stage.md5 is None or obj.md5 is None or obj.transcoded
        if unknown or obj.md5 == stage.md5:
            return Change.METADATA
    if stage.md5 and stage.source_size == obj.size and not obj.transcoded and obj.md5 == stage.md5:
        return Change.METADATA
    return Change.CONTENT


def needs_listing(skip_if_exist: bool, pinned: bool, has_generation: bool) -> bool:
    """Whether a file found unchanged on disk needs its object looked up all the same:
    to follow upstream (``skip_if_exist: false``), or to pin a stage that records no generation.
    """
    return not skip_if_exist or (pinned and not has_generation)


def recorded_generation(stage: ImportStage) -> str | None:
    """The generation a stage records: its pinned ``version_id``, else the one in a real etag."""
    return stage.generation or etag_generation(stage.etag)
