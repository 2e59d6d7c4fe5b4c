"""Copies of objects into a DVC remote, by md5, without the bytes touching this machine's disk.

A DVC 3 remote keeps a file at ``files/md5/ab/cdef...``. Cloud Storage stores
the md5 of every object that is neither composite nor gzip-encoded, so such an
object goes into a ``gs://`` remote by one server-side rewrite (``rewriteTo``,
following ``rewriteToken`` until done), and the copy's md5 is checked from the
answer. Any other object, or any other remote (a local folder, S3, Azure, SSH:
DVC's own file systems), is streamed: read verified (:meth:`Storage.stream`),
hashed as it passes, written to a temporary name in the remote and moved to its
md5's path. A copy is skipped when the remote already holds that md5.
"""

from __future__ import annotations

import queue
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gcsdvc.cloud import describe, refusal
from gcsdvc.download import Client
from gcsdvc.errors import ArchiveError, ChecksumMismatch, StorageError
from gcsdvc.model import RemoteObject
from gcsdvc.storage import Storage

if TYPE_CHECKING:
    from dvc.repo import Repo

# Settings of a DVC remote that name credentials or a project of its own: a server-side
# copy runs as gcsdvc's (Google's default) credentials, not as those.
_OWN_CREDENTIALS = ("credentialpath", "projectname", "allow_anonymous_login")
# Remote kinds that keep files by path, not by md5: DVC refuses imports into them too
# (``DataCloud.get_remote_odb``).
_BY_PATH = ("worktree", "version_aware")
REWRITE_PERMISSION = "storage.objects.create"


class Method(str, Enum):
    """How one object reaches the remote."""

    SERVER = "server-side"  # one Cloud Storage rewrite: no byte through this machine
    STREAM = "stream"  # read here, through memory, into DVC's file system of the remote
    PRESENT = "present"  # the remote already holds that md5

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Target:
    """The DVC remote objects are archived into."""

    name: str
    fs: Any = None  # DVC's file system of the remote
    odb: Any = None  # its object database (``files/md5``)
    # Set for a gs:// remote: where server-side copies go ("bucket/path inside it").
    bucket: str | None = None
    own_credentials: str | None = None  # the remote's setting naming other credentials

    def path(self, md5: str) -> str:
        """The remote's file for ``md5``: ``<remote>/files/md5/ab/cdef...``."""
        path: str = self.odb.oid_to_path(md5)
        return path


@dataclass(frozen=True)
class Copied:
    """One object in the remote: the bytes' md5 and size (decoded, for a gzip object)."""

    md5: str
    size: int
    method: Method


def open_target(repo: Repo, name: str | None) -> Target:
    """The remote ``name`` (None: the default remote), refused when it cannot hold imports."""
    from dvc.config import NoRemoteError, RemoteNotFoundError

    try:
        remote = repo.cloud.get_remote(name, "gcsdvc sync --to-remote")
    except NoRemoteError:
        raise ArchiveError(
            "no DVC remote to archive into: add one with 'dvc remote add -d NAME URL' "
            "(or name one with -r NAME)"
        ) from None
    except RemoteNotFoundError as exc:
        raise ArchiveError(f"{exc}") from None
    config = repo.config["remote"].get(remote.name, {})
    for setting in _BY_PATH:
        if config.get(setting):
            raise ArchiveError(
                f"the DVC remote '{remote.name}' has '{setting} = true': it keeps files by "
                f"path, not by md5, so it cannot hold imports; archive into a remote without "
                f"'{setting}'"
            )
    bucket = remote.path if remote.fs.protocol in ("gs", "gcs") else None
    own = next((f"{key} = {config[key]}" for key in _OWN_CREDENTIALS if config.get(key)), None)
    return Target(remote.name, remote.fs, remote.odb, bucket, own)


def file_url(root: Path, remote: str, md5: str) -> str:
    """Where the remote ``remote`` of the repository at ``root`` keeps the file of ``md5``."""
    from dvc.config import Config, ConfigError

    try:
        url = Config(dvc_dir=str(root / ".dvc"))["remote"].get(remote, {}).get("url")
    except ConfigError:
        url = None
    shown = str(url).rstrip("/") if url else f"(the remote '{remote}' is not configured here)"
    return f"{shown}/files/md5/{md5[:2]}/{md5[2:]}"


def method(obj: RemoteObject, target: Target) -> Method:
    """Server-side where Cloud Storage's stored md5 is the md5 DVC records, else streamed."""
    if target.bucket is not None and obj.md5 is not None and not obj.transcoded:
        return Method.SERVER
    return Method.STREAM


def present(target: Target, md5s: Sequence[str], jobs: int) -> set[str]:
    """The md5s among ``md5s`` the remote already holds (DVC's own check of a remote)."""
    if not md5s:
        return set()
    return set(target.odb.oids_exist(list(md5s), jobs=jobs))


@dataclass
class Tally:
    """Objects and bytes by how they reach the remote ``remote``."""

    remote: str
    objects: Counter[Method] = field(default_factory=Counter)
    nbytes: Counter[Method] = field(default_factory=Counter)

    def add(self, how: Method, size: int) -> None:
        self.objects[how] += 1
        self.nbytes[how] += size


def methods(objects: Sequence[RemoteObject], target: Target, jobs: int) -> list[Method]:
    """How each object would reach the remote now (one presence check for them all).

    A streamed object's md5 is known only once streamed: it is never found present here.
    Raises :class:`StorageError` when the remote cannot be looked into.
    """
    ways = [method(obj, target) for obj in objects]
    known = [o.md5 for o, how in zip(objects, ways, strict=True) if how is Method.SERVER and o.md5]
    try:
        held = present(target, known, jobs)
    except Exception as exc:  # the remote's file system: any error of its own
        raise StorageError(
            f"cannot look into the DVC remote '{target.name}': {describe(exc)}"
        ) from None
    return [
        Method.PRESENT if how is Method.SERVER and obj.md5 in held else how
        for obj, how in zip(objects, ways, strict=True)
    ]


def archive(
    objects: Sequence[RemoteObject],
    target: Target,
    storage: Storage,
    jobs: int,
    done: Callable[[int, Copied | Exception], None],
    on_bytes: Callable[[int], None] | None = None,
) -> None:
    """Copy each object into ``target``, at most ``jobs`` at a time; ``done(index, result)``
    once its copy is confirmed (or failed), so that nothing is recorded the remote does
    not hold. ``done`` is never called by two threads at once.

    Server-side copies are requests on gcsfs's event loop, as gcsfs's own copies, and
    ``done`` runs there, between requests, as :meth:`Storage.download`'s ``then``: in
    a thread of its own it waited for the interpreter lock at every system call
    (a millisecond for each stage file written beside 16 copies). Streamed copies
    block on their upload, so they get threads; their ``done`` runs in the calling
    thread once the server-side copies are over. What ``done`` raises stops the copies
    and is raised here.
    """
    import asyncio

    try:
        ways = methods(objects, target, jobs)
    except StorageError as error:
        for n in range(len(objects)):
            done(n, error)
        return
    pairs = list(zip(objects, ways, strict=True))
    server = [(n, obj) for n, (obj, how) in enumerate(pairs) if how is Method.SERVER]
    streamed = [(n, obj) for n, (obj, how) in enumerate(pairs) if how is Method.STREAM]
    results: queue.SimpleQueue[tuple[int, Copied | BaseException]] = queue.SimpleQueue()
    for n, (obj, how) in enumerate(pairs):
        if how is Method.PRESENT:
            assert obj.md5 is not None
            results.put((n, Copied(obj.md5, obj.size, Method.PRESENT)))

    def one_stream(n: int, obj: RemoteObject) -> None:
        try:
            results.put((n, stream(obj, target, storage, on_bytes)))
        except BaseException as exc:
            results.put((n, exc))

    todo = iter(server)

    async def worker(client: Client) -> None:
        # ``jobs`` workers take the next object in turn: no task per object.
        for n, obj in todo:
            got: Copied | Exception
            try:
                got = await _rewrite(client, obj, target)
            except Exception as exc:
                got = exc
            done(n, got)

    ended = threading.Event()

    async def rewrites() -> None:
        try:
            async with Client.open(storage.fs, 1) as client:
                await asyncio.gather(
                    *(worker(client) for _ in range(min(max(1, jobs), len(server))))
                )
        finally:
            ended.set()

    with ThreadPoolExecutor(max(1, jobs), thread_name_prefix="gcsdvc-archive") as pool:
        streams = [pool.submit(one_stream, n, obj) for n, obj in streamed]
        running = asyncio.run_coroutine_threadsafe(rewrites(), storage.fs.loop) if server else None
        try:
            if running is not None:
                running.result()
            for _ in range(len(objects) - len(server)):
                n, got = results.get()
                if not isinstance(got, (Exception, Copied)):
                    raise got  # Ctrl-C or exit in a copy
                done(n, got)
        except BaseException:
            if running is not None:
                running.cancel()
                ended.wait()  # no ``done`` under way when the caller goes on
            for future in streams:
                future.cancel()
            raise


async def _rewrite(client: Client, obj: RemoteObject, target: Target) -> Copied:
    """One server-side copy into the remote, following the rewrite token until it is done."""
    assert target.bucket is not None and obj.md5 is not None
    bucket = target.bucket.partition("/")[0]
    name = target.path(obj.md5).partition("/")[2]
    params: dict[str, Any] = {"sourceGeneration": obj.generation} if obj.generation else {}
    try:
        answer = await _rewrite_call(client, obj, bucket, name, params)
        while answer.get("done") is not True:
            params["rewriteToken"] = answer["rewriteToken"]
            answer = await _rewrite_call(client, obj, bucket, name, params)
    except Exception as exc:
        raise _rewrite_error(exc, obj, target, bucket) from None
    got = _md5_of(answer.get("resource") or {})
    if got != obj.md5:
        raise ChecksumMismatch(
            f"{obj.url}: the copy in the remote has md5 {got}, the object {obj.md5}"
        )
    return Copied(obj.md5, obj.size, Method.SERVER)


async def _rewrite_call(
    client: Client, obj: RemoteObject, bucket: str, name: str, params: dict[str, Any]
) -> dict[str, Any]:
    path = "b/{}/o/{}/rewriteTo/b/{}/o/{}"
    answer: dict[str, Any] = await client.call(
        "POST", path, obj.bucket, obj.name, bucket, name, **params
    )
    return answer


def _md5_of(resource: dict[str, Any]) -> str | None:
    import base64

    md5 = resource.get("md5Hash")
    return base64.b64decode(md5).hex() if md5 else None


def _rewrite_error(exc: Exception, obj: RemoteObject, target: Target, bucket: str) -> Exception:
    """One line: a refusal names the permission, and the remote's own credentials if it has."""
    said = refusal(exc)
    if said is not None:
        why = f" ({said})" if said else ""
        other = (
            f"; the remote '{target.name}' is set up with other credentials "
            f"({target.own_credentials}), but a server-side copy runs as gcsdvc's: give "
            f"those {REWRITE_PERMISSION} on gs://{bucket}, or archive under one principal "
            "that reads the source and writes the remote"
            if target.own_credentials
            else f"; the credentials need {REWRITE_PERMISSION} on gs://{bucket}"
        )
        return StorageError(f"permission denied writing the remote '{target.name}'{why}{other}")
    return StorageError(describe(exc))


def stream(
    obj: RemoteObject,
    target: Target,
    storage: Storage,
    on_bytes: Callable[[int], None] | None = None,
) -> Copied:
    """Read ``obj`` verified into the remote through memory, hashed as it passes.

    The bytes go to a temporary name beside the remote's files, as DVC's own
    uploads do, and are moved to their md5's path only once complete and checked.
    """
    fs = target.fs
    tmp = fs.join(target.odb.path, f".{uuid.uuid4().hex}.tmp")
    fs.makedirs(target.odb.path, exist_ok=True)
    try:
        with fs.open(tmp, "wb") as out:
            got = storage.stream(obj, out.write, on_bytes)
        if not target.odb.exists(got.md5):
            dest = target.path(got.md5)
            fs.makedirs(fs.parent(dest), exist_ok=True)
            fs.mv(tmp, dest)  # a rename, or a copy inside the remote's bucket
    except Exception as exc:
        raise StorageError(f"{obj.url}: {describe(exc)}") from None
    finally:
        if fs.exists(tmp):
            fs.remove(tmp)
    return Copied(got.md5, got.size, Method.STREAM)
