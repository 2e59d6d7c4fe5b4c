"""Downloading objects: several at a time, each verified against its stored hashes as it streams."""

from __future__ import annotations

import concurrent.futures
import contextlib
import errno
import functools
import hashlib
import io
import re
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import quote

from gcsdvc.cloud import Connection, billed_project, describe, is_outage
from gcsdvc.errors import (
    ChecksumMismatch,
    NotAttemptedError,
)
from gcsdvc.hashes import CHUNK, Gunzip, Hasher
from gcsdvc.model import RemoteObject

if TYPE_CHECKING:
    import asyncio  # imported where it runs: a command that downloads nothing spares it

# Objects up to this size are downloaded into memory, when the caller places them as they
# come (``Storage.download``'s ``then``): no temporary file for the small ones.
IN_MEMORY = 256 << 10
# Objects from this size stream to their file through a thread and are checked by crc32c.
LARGE = 8 << 20
BATCH = 4 << 20  # bytes handed to that thread at a time
# Characters ``quote(name, safe="")`` leaves as they are, and '/'.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9._~/-]*")
OUTAGE_OBJECTS = 3  # distinct objects failing in a row that mean storage itself is down


@dataclass(frozen=True)
class Fetched:
    """What a download wrote: the bytes as DVC stores them (decoded for gzip objects).

    ``data`` holds the verified bytes of a small object kept in memory (nothing
    was written to disk). ``copy``: a second copy of a large download's file,
    written as it streamed (``Storage.download``'s ``copies``).
    """

    md5: str
    size: int
    data: bytes | None = field(default=None, repr=False, compare=False)
    copy: Path | None = None


class Downloads(Connection):
    """The download half of :class:`gcsdvc.storage.Storage`."""

    def download(
        self,
        items: list[tuple[RemoteObject, Path]],
        then: Callable[[int, Fetched | Exception], None],
        on_bytes: Callable[[int], None] | None = None,
        copies: bool = False,
    ) -> None:
        """Fetch and verify objects, several at a time; ``then(index, result)`` as each ends.

        Each download gets the generation it listed (it checks the generation served,
        or asks for an older one by number), so an object overwritten since fails
        cleanly instead of mixing versions. A file that failed or did not verify is
        removed; the result is then the exception.

        ``then`` runs in the download thread, before its worker takes up the next
        object, so a small object comes in memory (``Fetched.data``), not to its
        path. Placing files there, not in other threads, spares handing the
        interpreter lock over at every system call: four placing threads spent a
        third of a cold sync's CPU in the kernel's futex calls doing that. What
        ``then`` raises stops the downloads and is raised here. On Ctrl-C the
        downloads are cancelled; a ``then`` under way finishes first.

        With ``copies``, a large object is also written to ``<path>.copy`` as it
        streams (``Fetched.copy``): where DVC copies files out of its cache, the
        second copy then costs no second pass once the download is done.
        """
        import asyncio

        fs = self.fs
        outage = _Outage()

        async def one(client: Client, index: int, obj: RemoteObject, dest: Path) -> None:
            async with client.slots:
                result: Fetched | Exception
                if outage.declared is not None:
                    result = NotAttemptedError(describe(outage.declared))
                else:
                    small = obj.size <= IN_MEMORY and not obj.transcoded
                    try:
                        result = await _fetch(client, obj, None if small else dest, on_bytes)
                        outage.answered()
                    except Exception as exc:
                        dest.unlink(missing_ok=True)
                        twin(dest).unlink(missing_ok=True)
                        outage.failed(index, exc)
                        result = _where(exc, dest)
                then(index, result)

        async def run() -> None:
            # ``jobs`` workers take the next object in turn: a task per object would cost
            # a few KB each, hundreds of MB for 100,000 objects.
            todo = enumerate(items)
            async with Client.open(fs, self.jobs, copies) as client:

                async def worker() -> None:
                    for i, (o, d) in todo:
                        await one(client, i, o, d)

                workers = [asyncio.ensure_future(worker()) for _ in range(self.jobs)]
                try:
                    await asyncio.gather(*workers)
                except BaseException:
                    for task in workers:
                        task.cancel()
                    await asyncio.gather(*workers, return_exceptions=True)
                    raise

        for folder in {dest.parent for _, dest in items}:
            folder.mkdir(parents=True, exist_ok=True)
        ended = threading.Event()

        async def watched() -> None:
            try:
                await run()
            finally:
                ended.set()

        future = asyncio.run_coroutine_threadsafe(watched(), fs.loop)
        try:
            future.result()
        except BaseException:
            future.cancel()
            ended.wait()  # no file is half placed when the caller goes on
            raise

    def stream(
        self,
        obj: RemoteObject,
        sink: Callable[[bytes], object],
        on_bytes: Callable[[int], None] | None = None,
    ) -> Fetched:
        """Read ``obj`` verified as :meth:`download` does, handing its bytes (decoded for a gzip
        object) to ``sink`` as they come, never to a file; the result has no ``data``.

        A private event loop in the calling thread, so that ``sink`` may block (an upload)
        without holding up other transfers. One try: bytes handed on cannot be taken back.
        """
        import asyncio

        fs = self.fs

        async def run() -> Fetched:
            import aiohttp

            async with aiohttp.ClientSession(trust_env=True) as session:
                with ThreadPoolExecutor(1) as pool:  # unused: no large file is written
                    client = Client(fs, session, asyncio.Semaphore(1), pool, False)
                    url, headers = _media_request(client, obj)
                    return await _try(
                        client, obj, url, headers, None, on_bytes or (lambda n: None), sink
                    )

        return asyncio.run(run())


class _Outage:
    """Whether storage as a whole is gone: then the downloads not yet started are not tried.

    One object that keeps failing (a body always cut, a persistent 503 of its own)
    is no outage: only ``OUTAGE_OBJECTS`` distinct objects failing as an outage
    would, with no download succeeding in between, declare one.
    """

    def __init__(self) -> None:
        self.declared: Exception | None = None
        self._failing: set[int] = set()  # objects failed since the last answer

    def answered(self) -> None:
        self._failing.clear()

    def failed(self, index: int, exc: Exception) -> None:
        if not is_outage(exc):
            return
        self._failing.add(index)
        if len(self._failing) >= OUTAGE_OBJECTS and self.declared is None:
            self.declared = exc


@dataclass
class Client:
    """gcsfs's connection pool, without aiohttp's per-request environment lookups.

    dvc-gs makes gcsfs's session with ``trust_env``, so aiohttp reads ~/.netrc and
    the proxy variables in a worker thread for every request: two thread hops per
    object. Here the proxy is looked up once per sync. A netrc entry is not looked
    up: gcsfs signs requests with its own Authorization header, which aiohttp
    refuses to combine with one.
    """

    fs: Any
    session: Any
    slots: asyncio.Semaphore
    pool: ThreadPoolExecutor  # hashes and writes large downloads (:func:`_stream`)
    copies: bool  # whether large downloads also write a copy (``Storage.download``)
    proxy: Any = None
    proxy_auth: Any = None

    @functools.cached_property
    def media(self) -> str:
        """Where objects are downloaded from, up to the bucket's name: gcsfs's ``fs.url``
        looks the endpoint up in the environment again for every object."""
        return f"{self.fs._location}/download/storage/v1/b/"

    async def call(self, method: str, path: str, *args: str, **params: Any) -> Any:
        """gcsfs's ``fs._call(method, path, *args, json_out=True, **params)`` on this
        session: the same URL, query, headers, retries and errors, but no proxy lookup
        in a worker thread per request."""
        return await _retried(_call_attempt, self, method, path, args, params)

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, fs: Any, jobs: int, copies: bool = False) -> AsyncIterator[Client]:
        import asyncio

        import aiohttp

        await fs._set_session()
        proxy = proxy_auth = None
        if fs.session.trust_env:
            from aiohttp.helpers import get_env_proxy_for_url
            from yarl import URL

            with contextlib.suppress(LookupError):
                # Any object's URL: only its scheme and host decide.
                proxy, proxy_auth = get_env_proxy_for_url(URL(fs.url("b/o")))
        session = aiohttp.ClientSession(connector=fs.session.connector, connector_owner=False)
        pool = ThreadPoolExecutor(jobs, thread_name_prefix="gcsdvc-stream")
        try:
            yield cls(fs, session, asyncio.Semaphore(jobs), pool, copies, proxy, proxy_auth)
        finally:
            pool.shutdown(wait=False)
            await session.close()


async def _fetch(
    client: Client, obj: RemoteObject, dest: Path | None, on_bytes: Callable[[int], None] | None
) -> Fetched:
    """Download one generation of an object to ``dest`` (None: into memory), verified as it streams.

    The stored bytes are hashed (md5, or crc32c for composite objects) while they
    are written. A ``gzip``-encoded object is asked for as stored
    (``Accept-Encoding: gzip``, which turns off Cloud Storage's decompressive
    transcoding) and decoded here, every member of it, so its stored hashes can be
    checked and the file holds the decoded bytes, as ``dvc import-url`` leaves it.
    An answer that arrives decoded anyway cannot be checked and is refused. Retries are
    gcsfs's own (``gcsfs.retry.retry_request``, as ``GCSFileSystem._get_file_request``),
    ``fs.retries`` attempts (:func:`attempts`).
    """
    url, headers = _media_request(client, obj)
    result: Fetched = await _retried(_attempt, client, obj, url, headers, dest, on_bytes)
    return result


def _quoted(name: str) -> str:
    """An object name percent-encoded as a path segment, '/' included (gcsfs's ``quote``)."""
    if _PLAIN_NAME.fullmatch(name):  # most names: only '/' to encode, at a tenth of the cost
        return name.replace("/", "%2F")
    return quote(name, safe="")


async def _call_attempt(
    client: Client, method: str, path: str, args: tuple[str, ...], params: dict[str, Any]
) -> Any:
    """One try of :meth:`Client.call`, as gcsfs's ``_request`` makes it."""
    import json

    from gcsfs.retry import validate_response

    fs = client.fs
    async with client.session.request(
        method,
        fs._format_path(path, args),
        params=fs._get_params(params),
        headers=fs._get_headers({"Content-Type": "application/json"}),
        timeout=fs.requests_timeout,
        proxy=client.proxy,
        proxy_auth=client.proxy_auth,
    ) as resp:
        contents = await resp.read()
        validate_response(resp.status, contents, path, args)
    return json.loads(contents)


async def _retried(attempt: Callable[..., Any], client: Client, *args: Any) -> Any:
    """``attempt(client, *args)`` under gcsfs's own retries (``gcsfs.retry.retry_request``),
    ``client.fs.retries`` tries.

    Its undecorated function is called: the ``decorator`` package's wrapper binds
    the call's signature anew for every object.
    """
    from gcsfs.retry import retry_request

    return await retry_request.__wrapped__(attempt, client.fs.retries, client, *args)


def _media_request(client: Client, obj: RemoteObject) -> Any:
    """The URL (a ``yarl.URL``, encoded) and headers that download one generation of ``obj``
    as stored."""
    from yarl import URL

    fs = client.fs
    # gcsfs's fs.url without its parsing of the path (a name may hold '#').
    url = f"{client.media}{obj.bucket}/o/{_quoted(obj.name)}?alt=media"
    if obj.generation and obj.by_generation:
        url += f"&generation={obj.generation}"
    project = billed_project(fs)
    if project:
        url += f"&userProject={quote(project, safe='')}"
    headers = fs._get_headers({"Accept-Encoding": "gzip" if obj.transcoded else "identity"})
    return URL(url, encoded=True), headers


async def _attempt(
    client: Client,
    obj: RemoteObject,
    url: Any,
    headers: dict[str, str],
    dest: Path | None,
    on_bytes: Callable[[int], None] | None,
) -> Fetched:
    """One try of :func:`_fetch` (:func:`_retried` retries it).

    The bytes a failed try reported are taken back, so progress never counts a byte twice.
    """
    counted = 0

    def count(n: int) -> None:
        nonlocal counted
        counted += n
        if on_bytes is not None:
            on_bytes(n)

    try:
        return await _try(client, obj, url, headers, dest, count)
    except BaseException:
        if on_bytes is not None and counted:
            on_bytes(-counted)
        raise


async def _try(
    client: Client,
    obj: RemoteObject,
    url: Any,
    headers: dict[str, str],
    dest: Path | None,
    on_bytes: Callable[[int], None],
    sink: Callable[[bytes], object] | None = None,
) -> Fetched:
    from gcsfs.retry import validate_response

    fs = client.fs
    # Not aiohttp's auto-decompression: the stored bytes must be hashed first.
    async with client.session.get(
        url,
        headers=headers,
        timeout=fs.requests_timeout,
        auto_decompress=False,
        proxy=client.proxy,
        proxy_auth=client.proxy_auth,
    ) as resp:
        if resp.status >= 400:
            validate_response(resp.status, await resp.read(), str(url))
        served = resp.headers.get("X-Goog-Generation")
        if obj.generation and served and served != obj.generation:
            # Overwritten since it was listed: never the newer bytes under the old record.
            raise FileNotFoundError(
                f"{obj.url}: generation {obj.generation} was replaced by {served}"
            )
        gzipped = resp.headers.get("Content-Encoding", "").lower() == "gzip"
        if obj.transcoded and not gzipped:
            # Asked for as stored, Cloud Storage answers gzip: something on the way decoded
            # it, and the stored md5 and crc32c say nothing of decoded bytes.
            raise ChecksumMismatch(
                f"{obj.url}: a gzip-encoded object arrived decoded (a proxy on the way "
                "decodes answers?), so its bytes cannot be checked against the object's "
                "md5; fetch it without that proxy"
            )
        if dest is not None and not gzipped and obj.size >= LARGE:
            stored = Hasher(crc=True, md5=obj.md5 is None or obj.crc32c is None)
            copy = twin(dest) if client.copies else None
            with contextlib.ExitStack() as files:
                outs: list[BinaryIO] = [
                    files.enter_context(p.open("wb")) for p in (dest, copy) if p
                ]
                await _stream(client, resp, stored, outs, on_bytes)
            stored.check(obj)
            return Fetched(stored.hexdigest(obj), stored.size, copy=copy)
        stored = Hasher(crc=obj.md5 is None)
        gunzip = Gunzip() if gzipped else None
        # DVC's md5 is of the bytes written: the stored ones' unless they are decoded here.
        decoded = hashlib.md5() if gunzip is not None else stored.md5  # noqa: S324
        assert decoded is not None
        size = 0
        fobj: Any = _Sink(sink) if sink else io.BytesIO() if dest is None else dest.open("wb")
        with fobj:
            while chunk := await resp.content.read(CHUNK):
                on_bytes(len(chunk))
                if gunzip is None:
                    stored.update(chunk)
                else:
                    # The object's hashes are of what it stores: gzip, unless something on
                    # the way compressed an object stored plain.
                    raw, chunk = chunk, gunzip.decompress(chunk, obj)
                    stored.update(raw if obj.transcoded else chunk)
                    decoded.update(chunk)
                fobj.write(chunk)
                size += len(chunk)
            data = fobj.getvalue() if isinstance(fobj, io.BytesIO) else None
        stored.check(obj)
        if gunzip is not None:
            gunzip.end(obj)
        return Fetched(decoded.hexdigest(), size, data)


class _Sink(contextlib.nullcontext[None]):
    """Where :meth:`Downloads.stream` hands the bytes: a callable, as a file's ``write``."""

    def __init__(self, write: Callable[[bytes], object]) -> None:
        super().__init__()
        self.write = write


async def _stream(
    client: Client,
    resp: Any,
    hasher: Hasher,
    outs: list[BinaryIO],
    on_bytes: Callable[[int], None] | None,
) -> None:
    """A large body into ``outs``: threads hash and write a batch while the next arrives.

    The event loop then only receives, for this download and the others: hashing
    and writing in it made a 1 GB download take twice curl's time. Each file of
    ``outs`` is written by a thread of its own (the first one also hashes), so the
    DVC cache's file and the data folder's copy fill at once: written one after the
    other, a 1 GB sync took 2.21 s against 1.76 s (medians of 7). One batch at a
    time is handed over, so memory stays at two batches per download.
    """
    import asyncio

    batch: list[bytes] = []
    held = 0
    pending: list[concurrent.futures.Future[None]] = []
    first, *others = outs

    async def written() -> None:
        for done in pending:
            await asyncio.wrap_future(done)

    async def handed(batch: list[bytes]) -> None:
        await written()  # the previous batch first: each file gets its bytes in order
        pending[:] = [
            client.pool.submit(hasher.consume, batch, first),
            *(client.pool.submit(out.writelines, batch) for out in others),
        ]

    try:
        # What has arrived, as it arrived (one buffer is not copied): read(CHUNK) would
        # join the buffers into a new one, a copy of every byte.
        while chunk := await resp.content.readany():
            batch.append(chunk)
            held += len(chunk)
            if on_bytes is not None:
                on_bytes(len(chunk))
            if held >= BATCH:
                await handed(batch)
                batch, held = [], 0
        await handed(batch)
        await written()
    finally:
        concurrent.futures.wait(pending)  # cancelled or failed: close the files only after


# What a write of this machine's files fails with: never Cloud Storage's doing.
LOCAL_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EACCES, errno.ENAMETOOLONG}
)


def _where(exc: Exception, dest: Path) -> Exception:
    """A local write error with the file it was writing (``write()`` names none)."""
    if isinstance(exc, OSError) and exc.filename is None and exc.errno in LOCAL_ERRNOS:
        return OSError(exc.errno, exc.strerror, str(dest))
    return exc


def twin(path: Path) -> Path:
    """Where a download to ``path`` writes its copy (``Storage.download``'s ``copies``)."""
    return path.with_name(path.name + ".copy")
