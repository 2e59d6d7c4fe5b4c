"""The types every step shares: what the bucket holds, what is on disk, what is wished, the state.

A leaf: it imports nothing of gcsdvc, so any module can use the types without an
import loop. Behaviour lives elsewhere (:mod:`gcsdvc.compare` decides a state).
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from enum import Enum
from typing import Any


@dataclass(frozen=True)
class RemoteObject:
    """One object (one generation of it) as listed: enough to download, verify and record it."""

    bucket: str
    name: str
    size: int  # stored bytes: for a gzip-encoded object, the compressed size
    md5: str | None  # hex of the stored bytes; composite objects have none
    crc32c: str | None  # base64, as Cloud Storage reports it
    dep_info: dict[str, Any]  # what DVC records for the dependency
    generation: str | None = None
    metageneration: str | None = None
    content_encoding: str | None = None  # "gzip": stored compressed, served decoded
    component_count: int | None = None  # set for composite objects
    # Looked up by generation number (it may be an older one): downloads ask for that
    # number. A listed object is the live generation: its download checks the one served.
    by_generation: bool = False
    # Stored with a customer-supplied encryption key (CSEK): neither gcsdvc nor DVC sends one.
    encrypted: bool = False

    @property
    def url(self) -> str:
        return f"gs://{self.bucket}/{self.name}"

    @property
    def etag(self) -> str | None:
        """The etag as DVC records it (hex of Cloud Storage's base64 etag)."""
        etag = self.dep_info.get("etag")
        return str(etag) if etag is not None else None

    @property
    def transcoded(self) -> bool:
        """Whether downloads are decoded (decompressive transcoding of ``gzip`` objects)."""
        return (self.content_encoding or "").strip().lower() == "gzip"

    def holds(self, md5: str | None) -> bool:
        """Whether the bytes a download of this object gives have ``md5``, as far as the
        stored md5 tells (a decoded gzip object's bytes are not the stored ones)."""
        return md5 is not None and self.md5 == md5 and not self.transcoded


def etag_generation(etag_hex: str | None) -> str | None:
    """The generation inside a recorded etag, or None when it holds none.

    A Cloud Storage etag is base64 of a protobuf: field 1 the generation, field 2
    the metageneration. DVC records it hex-encoded (``dvc_data.hashfile.meta.Meta.from_info``:
    ``base64.b64decode(info["etag"]).hex()``). Emulator etags (an md5) do not parse.
    """
    try:
        raw = bytes.fromhex(etag_hex or "")
    except ValueError:
        return None
    fields: dict[int, int] = {}
    pos = 0
    while pos < len(raw):
        tag = raw[pos]
        pos += 1
        if tag not in (0x08, 0x10) or tag >> 3 in fields:
            return None
        value, shift = 0, 0
        while True:
            if pos >= len(raw) or shift > 63:
                return None
            byte = raw[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        fields[tag >> 3] = value
    return str(fields[1]) if fields.get(1) else None


class State(str, Enum):
    """Summaries list states in this order."""

    OK = "ok"
    MISSING = "missing"  # the stage is there, the data is not
    MODIFIED = "modified"  # a local edit: the bytes differ from the stage's
    # Other bytes than the stage's, safe elsewhere (an earlier version, in the DVC cache)
    SUPERSEDED = "superseded"
    CHANGED_UPSTREAM = "changed-upstream"  # another object (generation or bytes) is listed
    DELETED_UPSTREAM = "deleted-upstream"  # the object is gone
    NOT_SYNCED = "not-synced"  # no stage yet, nothing at the destination
    NOT_FOUND = "not-found"  # the object to fetch is not in the bucket
    UNTRACKED = "untracked"  # no stage, but a file is at the destination
    FOREIGN = "foreign-stage"  # a stage gcsdvc did not write, for another source, is in the way
    OTHER_MANIFEST = "other-manifest"  # a stage another manifest wrote is in the way
    SOURCE_MOVED = "source-moved"  # the stage records another object
    METADATA_UPSTREAM = "metadata-upstream"  # same bytes and generation, another etag
    LISTING_FAILED = "listing-failed"  # upstream was needed and could not be listed
    REFUSED = "refused"  # an object name DVC cannot carry (see manifest.unsafe_name)
    # The data is in place, the stage is not what a sync writes (see stale_stage)
    STALE_STAGE = "stale-stage"
    BROKEN_STAGE = "broken-stage"  # the stage file cannot be read (a merge conflict...)
    IN_REMOTE = "in-remote"  # archived: the stage is there, the data is in the DVC remote

    def __str__(self) -> str:
        return self.value


# States that need nothing done: in place, or archived in the DVC remote (gcsdvc.archive).
SETTLED = frozenset({State.OK, State.IN_REMOTE})


class Upstream(Enum):
    """Stands in for the listed object when upstream was not asked (offline, or not needed),
    and for a whole prefix's objects as listed: the ones its stage records, or others.

    A failed listing is passed as its :class:`StorageError`.
    """

    NOT_LISTED = "not listed"
    SAME_FOLDER = "the recorded objects"  # every object's etag as the folder stage records it
    OTHER_FOLDER = "other objects"  # an object added, removed or rewritten below the prefix


@dataclass(frozen=True)
class Wish:
    """What the manifest asks for at one destination."""

    source: str  # the gs:// URL of the object or prefix
    is_folder: bool = False  # a whole-prefix import
    manifest: str | None = None  # the manifest asking (see Resource.manifest)
    to_remote: bool = False  # kept in the DVC remote: archived (see gcsdvc.archive)


@dataclass(frozen=True)
class Disk:
    """What is at a destination: the caller stats it and hashes it only when it must."""

    exists: bool = False
    is_file: bool = False  # a regular file (a cache symlink counts, as DVC links them)
    size: int | None = None
    md5: str | None = None  # None: not hashed (or unreadable when ``unreadable``)
    unreadable: bool = False
    cached: bool = False  # the DVC cache holds these bytes (``md5``) too

    @classmethod
    def from_stat(cls, mode: int, size: int) -> Disk:
        return cls(exists=True, is_file=stat.S_ISREG(mode), size=size)


ABSENT = Disk()


@dataclass(frozen=True)
class Comparison:
    state: State
    note: str = ""
