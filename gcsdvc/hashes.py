"""Hashing: the one home of md5 and crc32c checks, for downloads and for files on disk."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

from gcsdvc.errors import (
    ChecksumMismatch,
)
from gcsdvc.model import RemoteObject

CHUNK = 1 << 20


class Hasher:
    """Checks one stream against the object's stored hashes, in one pass.

    The md5 is computed unless ``md5=False``: then the crc32c checks the bytes
    (about 35 times cheaper here than md5) and the object's own md5, which Cloud
    Storage computes over the same stored bytes, is the one recorded. crc32c is
    also what ``gcloud storage`` checks downloads with.
    """

    def __init__(self, crc: bool, md5: bool = True) -> None:
        self.md5 = hashlib.md5() if md5 else None  # noqa: S324 - Cloud Storage's and DVC's hash
        self.crc: Any = None
        if crc:
            import google_crc32c

            self.crc = google_crc32c.Checksum()  # type: ignore[no-untyped-call]
        self.size = 0

    def update(self, chunk: bytes) -> None:
        if self.md5 is not None:
            self.md5.update(chunk)
        if self.crc is not None:
            self.crc.update(chunk)
        self.size += len(chunk)

    def hexdigest(self, obj: RemoteObject | None = None) -> str:
        """The md5 of the bytes: computed, or (once :meth:`check` passed) ``obj``'s own."""
        if self.md5 is not None:
            return self.md5.hexdigest()
        assert obj is not None and obj.md5 is not None
        return obj.md5

    def check(self, obj: RemoteObject) -> None:
        """Raise :class:`ChecksumMismatch` unless these are the object's stored bytes."""
        if self.size != obj.size:
            raise ChecksumMismatch(f"{obj.url}: got {self.size} bytes, expected {obj.size}")
        if obj.md5 is not None and self.md5 is not None:
            if self.md5.hexdigest() != obj.md5:
                raise ChecksumMismatch(
                    f"{obj.url}: md5 {self.md5.hexdigest()} does not match the object's {obj.md5}"
                )
        elif obj.crc32c is not None and self.crc is not None:
            got = base64.b64encode(self.crc.digest()).decode()
            if got != obj.crc32c:
                raise ChecksumMismatch(f"{obj.url}: crc32c {got} does not match the object's")

    def consume(self, chunks: list[bytes], out: BinaryIO) -> None:
        """Hash ``chunks`` and write them to ``out`` (in a thread: all of it lets other
        threads run meanwhile)."""
        for chunk in chunks:
            self.update(chunk)
        out.writelines(chunks)


class Gunzip:
    """Decodes every member of a gzip stream, as Python's ``gzip`` module and Cloud Storage do.

    Appended logs (``gzip -c >>``), bgzip and pigz write several members; zlib's
    decoder stops after the first. Zero bytes between members are padding.
    """

    def __init__(self) -> None:
        self._member = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._started = False  # whether the current member has had a byte

    def decompress(self, data: bytes, obj: RemoteObject) -> bytes:
        out = []
        while data:
            if not self._started:
                data = data.lstrip(b"\0")
                if not data:
                    break
                self._started = True
            try:
                out.append(self._member.decompress(data))
            except zlib.error as exc:
                raise ChecksumMismatch(f"{obj.url}: not valid gzip ({exc})") from None
            if not self._member.eof:
                break
            data = self._member.unused_data
            self._member = zlib.decompressobj(16 + zlib.MAX_WBITS)
            self._started = False
        return b"".join(out)

    def end(self, obj: RemoteObject) -> None:
        """Raise :class:`ChecksumMismatch` when the stream stopped inside a member."""
        if self._started:
            raise ChecksumMismatch(f"{obj.url}: the gzip stream ends inside a member")


def hash_file(
    path: Path, obj: RemoteObject | None = None, copy_to: Path | None = None
) -> tuple[str, bool]:
    """The md5 of a local file and whether its bytes are ``obj``'s stored bytes.

    One read; with ``copy_to`` the bytes hashed are also written there, so what
    is checked is exactly what is kept.
    """
    hasher = Hasher(crc=obj is not None and obj.md5 is None)
    with path.open("rb") as fobj, contextlib.ExitStack() as stack:
        out = stack.enter_context(copy_to.open("wb")) if copy_to else None
        while chunk := fobj.read(CHUNK):
            hasher.update(chunk)
            if out is not None:
                out.write(chunk)
    try:
        if obj is not None:
            hasher.check(obj)
    except ChecksumMismatch:
        return hasher.hexdigest(), False
    return hasher.hexdigest(), obj is not None


def file_md5(path: Path) -> str:
    return hash_file(path)[0]


def dvc_tree(kind: str, entries: Mapping[str, str | None]) -> Any:
    """DVC's tree of ``entries`` (by path below a folder; ``kind``: md5 or etag), digested:
    its ``oid`` is what a folder stage records (``….dir``)."""
    from dvc_data.hashfile.hash_info import HashInfo
    from dvc_data.hashfile.meta import Meta
    from dvc_data.hashfile.tree import Tree

    tree = Tree()  # type: ignore[no-untyped-call]
    for rel, value in entries.items():
        tree.add(tuple(rel.split("/")), Meta(), HashInfo(kind, value))
    tree.digest()
    return tree


def etag_tree(objects: Mapping[str, RemoteObject]) -> Any:
    """DVC's tree of a listed prefix's etags (by path below it): what a folder import's
    dependency records of its source, in either pinning mode."""
    return dvc_tree("etag", {rel: obj.etag for rel, obj in objects.items()})
