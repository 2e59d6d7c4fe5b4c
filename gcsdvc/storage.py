"""Cloud Storage: listing prefixes, downloading objects, verifying their bytes.

All access goes through dvc-gs's filesystem (so credentials and settings are the
ones ``dvc import-url`` would use) and dependency info is built with dvc-data's
``Meta``, so what gcsdvc records matches what DVC records for the same object.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import os
import queue
import socket
import urllib.parse
import weakref
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gcsdvc.errors import ChecksumMismatch, GcsdvcError, NotAttemptedError, StorageError

_DEFAULT_ENV = {
    # gcsfs otherwise probes every bucket's type over gRPC, a minute per call off GCP.
    "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
}
_EMULATOR_ENV = {
    # Against a local emulator never probe the cloud metadata server.
    "NO_GCE_CHECK": "true",
    "GCE_METADATA_HOST": "127.0.0.1:9",
    "GCE_METADATA_IP": "127.0.0.1:9",
}
CHUNK = 1 << 20
READ_TIMEOUT = 60  # seconds without a byte before a request counts as failed


def prepare_environment() -> None:
    """Set gcsfs defaults; must run before gcsfs is imported."""
    for key, value in _DEFAULT_ENV.items():
        os.environ.setdefault(key, value)
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        for key, value in _EMULATOR_ENV.items():
            os.environ.setdefault(key, value)


@dataclass(frozen=True)
class RemoteObject:
    """One object as listed: enough to download, verify and record it."""

    bucket: str
    name: str
    size: int
    md5: str | None  # hex; composite objects have none
    crc32c: str | None  # base64, as Cloud Storage reports it
    dep_info: dict[str, Any]  # what DVC records for the dependency

    @property
    def url(self) -> str:
        return f"gs://{self.bucket}/{self.name}"

    @property
    def etag(self) -> str | None:
        etag = self.dep_info.get("etag")
        return str(etag) if etag is not None else None

    @property
    def generation(self) -> str | None:
        """The object's generation (DVC's ``version_id``), when the listing gives one."""
        gen = self.dep_info.get("version_id")
        return str(gen) if gen is not None else None


@dataclass(frozen=True)
class PrefixStats:
    """What a recursive listing of a prefix tells about it."""

    objects: int
    size: int
    updated: str | None  # RFC 3339 time of the newest object


class RetryCounter:
    """The retries gcsfs made for one :class:`Storage`."""

    def __init__(self) -> None:
        self.retries = 0
        _RetryLog.watch(self)


class _RetryLog(logging.Handler):
    """The one handler on gcsfs's logger: counts retries, keeps tracebacks off the terminal.

    Installed once per process (not once per Storage), and counting for every
    live :class:`RetryCounter`.
    """

    installed: _RetryLog | None = None

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.counters: weakref.WeakSet[RetryCounter] = weakref.WeakSet()

    @classmethod
    def watch(cls, counter: RetryCounter) -> None:
        if cls.installed is None:
            cls.installed = cls()
            gcsfs_log = logging.getLogger("gcsfs")
            gcsfs_log.addHandler(cls.installed)
            gcsfs_log.setLevel(logging.DEBUG)
            gcsfs_log.propagate = False
        cls.installed.counters.add(counter)

    def emit(self, record: logging.LogRecord) -> None:
        if "retrying after exception" in record.getMessage():
            for counter in list(self.counters):
                counter.retries += 1


class Storage:
    """A Cloud Storage client for one command; the filesystem is created on first use."""

    def __init__(self, jobs: int = 16) -> None:
        self.jobs = max(1, jobs)
        self._fs: Any = None
        # A sync plans twice (before and under the repository lock): list once.
        self._listings: dict[tuple[str, str], dict[str, RemoteObject] | StorageError] = {}
        self.retries = RetryCounter()

    @property
    def fs(self) -> Any:
        if self._fs is None:
            prepare_environment()
            self._check_reachable()
            try:
                from dvc_gs import GSFileSystem

                fs = GSFileSystem().fs
                # A stalled connection must fail (and be retried), not hang the sync.
                fs.requests_timeout = _timeout()
                self._fs = fs
            except Exception as exc:
                raise StorageError(f"cannot set up Cloud Storage access: {describe(exc)}") from None
        return self._fs

    def _check_reachable(self, timeout: float = 10.0) -> None:
        """Fail in seconds, not after a minute of retries, when storage is down."""
        if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY")):
            return
        endpoint = os.environ.get("STORAGE_EMULATOR_HOST") or "https://storage.googleapis.com"
        parts = urllib.parse.urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
        host = parts.hostname or "storage.googleapis.com"
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            socket.create_connection((host, port), timeout=timeout).close()
        except OSError as exc:
            raise StorageError(
                f"cannot reach Cloud Storage at {parts.scheme}://{host}:{port}: "
                f"{exc.strerror or exc}"
            ) from None

    def object_from_info(self, bucket: str, info: dict[str, Any]) -> RemoteObject:
        from dvc_data.hashfile.meta import Meta

        meta = Meta.from_info(info, "gs").to_dict()
        dep_info = {"etag": meta["etag"], "size": meta["size"]}
        if meta.get("version_id"):
            dep_info["version_id"] = meta["version_id"]
        md5 = info.get("md5Hash")
        name = info["name"].split("/", 1)[1]
        return RemoteObject(
            bucket=bucket,
            name=name,
            size=int(info["size"]),
            md5=base64.b64decode(md5).hex() if md5 else None,
            crc32c=info.get("crc32c"),
            dep_info=dep_info,
        )

    def list_prefix(self, bucket: str, prefix: str) -> dict[str, RemoteObject]:
        """Objects under ``gs://bucket/prefix/``, keyed by name relative to the prefix."""
        root = f"{bucket}/{prefix}/" if prefix else f"{bucket}/"
        try:
            found = self.fs.find(root, detail=True)
        except FileNotFoundError:
            raise StorageError(f"bucket '{bucket}' not found") from None
        except Exception as exc:
            raise StorageError(f"cannot list gs://{root}: {describe(exc)}") from None
        objects = {}
        for path, info in found.items():
            if info.get("type") == "file" and path.startswith(root):
                obj = self.object_from_info(bucket, info)
                objects[path[len(root) :]] = obj
        return objects

    def list_folder(self, bucket: str, prefix: str) -> tuple[list[str], list[str]]:
        """One delimiter listing of ``gs://bucket/prefix/``: (its folders, its objects), by name.

        A prefix with nothing under it gives two empty lists; a missing bucket fails.
        """
        root = f"{bucket}/{prefix}" if prefix else bucket
        try:
            entries = self.fs.ls(f"{root}/", detail=True, refresh=True)
        except FileNotFoundError:
            if not self._bucket_exists(bucket):
                raise StorageError(f"bucket '{bucket}' not found") from None
            return [], []
        except Exception as exc:
            raise StorageError(f"cannot list gs://{root}/: {describe(exc)}") from None
        folders: list[str] = []
        files: list[str] = []
        for info in entries:
            name = str(info["name"]).rstrip("/")
            if name.startswith(f"{root}/"):
                kind = folders if info.get("type") == "directory" else files
                kind.append(name[len(root) + 1 :])
        return sorted(folders), sorted(files)

    def prefix_stats(self, bucket: str, prefix: str) -> PrefixStats:
        """Object count, total size and last update below ``gs://bucket/prefix/`` (one listing)."""
        root = f"{bucket}/{prefix}/"
        try:
            self.fs.invalidate_cache(root)
            found = self.fs.find(root, detail=True)
        except Exception as exc:
            raise StorageError(f"cannot list gs://{root}: {describe(exc)}") from None
        files = [info for info in found.values() if info.get("type") == "file"]
        updated = max((str(info.get("updated") or "") for info in files), default="")
        return PrefixStats(len(files), sum(int(i.get("size") or 0) for i in files), updated or None)

    def _bucket_exists(self, bucket: str) -> bool:
        try:
            self.fs.info(bucket)
        except FileNotFoundError:
            return False
        except Exception as exc:
            raise StorageError(f"cannot read bucket '{bucket}': {describe(exc)}") from None
        return True

    def list_prefixes(
        self, keys: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], dict[str, RemoteObject] | StorageError]:
        """One listing per (bucket, prefix), several at a time, each at most once per client."""
        wanted = list(dict.fromkeys(keys))
        todo = [key for key in wanted if key not in self._listings]
        if todo:
            _ = self.fs  # fail once, clearly, if storage is unreachable

            def one(key: tuple[str, str]) -> dict[str, RemoteObject] | StorageError:
                try:
                    return self.list_prefix(*key)
                except StorageError as exc:
                    return exc

            with ThreadPoolExecutor(max_workers=min(8, len(todo))) as pool:
                self._listings.update(zip(todo, pool.map(one, todo), strict=True))
        return {key: self._listings[key] for key in wanted}

    def download(
        self,
        items: list[tuple[RemoteObject, Path]],
        on_bytes: Callable[[int], None] | None = None,
    ) -> Iterator[tuple[int, str | Exception]]:
        """Fetch and verify objects, several at a time; yield (index, md5 or error) as each ends.

        A file that failed or did not verify is removed. Closing the generator
        early (Ctrl-C) cancels the transfers still running.
        """
        fs = self.fs
        done: queue.SimpleQueue[tuple[int, str | Exception]] = queue.SimpleQueue()

        outage: list[Exception] = []  # once storage is gone, don't retry every object

        async def one(sem: asyncio.Semaphore, index: int, obj: RemoteObject, dest: Path) -> None:
            async with sem:
                if outage:
                    done.put((index, NotAttemptedError(describe(outage[0]))))
                    return
                try:
                    await fs._get_file(
                        f"{obj.bucket}/{obj.name}",
                        str(dest),
                        concurrency=1,  # one stream per object keeps memory flat
                        callback=_progress(on_bytes),
                    )
                    loop = asyncio.get_running_loop()
                    done.put((index, await loop.run_in_executor(None, verify, obj, dest)))
                except Exception as exc:
                    dest.unlink(missing_ok=True)
                    if is_outage(exc):
                        outage.append(exc)
                    done.put((index, exc))

        async def run() -> None:
            sem = asyncio.Semaphore(self.jobs)
            await asyncio.gather(*(one(sem, i, o, d) for i, (o, d) in enumerate(items)))

        for _, dest in items:
            dest.parent.mkdir(parents=True, exist_ok=True)
        future = asyncio.run_coroutine_threadsafe(run(), fs.loop)
        try:
            for _ in items:
                yield done.get()
        finally:
            future.cancel()


def _progress(on_bytes: Callable[[int], None] | None) -> Any:
    """An fsspec callback that forwards byte counts to ``on_bytes``."""
    from fsspec.callbacks import Callback, NoOpCallback

    if on_bytes is None:
        return NoOpCallback()

    class Forward(Callback):  # type: ignore[misc]
        def relative_update(self, inc: int = 1) -> None:
            assert on_bytes is not None
            on_bytes(inc)

    return Forward()


def file_md5(path: Path) -> str:
    digest = hashlib.md5()  # noqa: S324 - DVC's content hash
    with path.open("rb") as fobj:
        while chunk := fobj.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify(obj: RemoteObject, path: Path) -> str:
    """The md5 of ``path`` after checking it against the object's md5 (or crc32c)."""
    size = path.stat().st_size
    if size != obj.size:
        raise ChecksumMismatch(f"{obj.url}: got {size} bytes, expected {obj.size}")
    md5 = file_md5(path)
    if obj.md5 is not None:
        if md5 != obj.md5:
            raise ChecksumMismatch(f"{obj.url}: md5 {md5} does not match the object's {obj.md5}")
    elif obj.crc32c is not None:
        import google_crc32c

        crc = google_crc32c.Checksum()  # type: ignore[no-untyped-call]
        with path.open("rb") as fobj:
            while chunk := fobj.read(CHUNK):
                crc.update(chunk)  # type: ignore[no-untyped-call]
        got = base64.b64encode(crc.digest()).decode()  # type: ignore[no-untyped-call]
        if got != obj.crc32c:
            raise ChecksumMismatch(f"{obj.url}: crc32c {got} does not match the object's")
    return md5


def _timeout() -> Any:
    import aiohttp

    return aiohttp.ClientTimeout(sock_connect=30, sock_read=READ_TIMEOUT)


def is_outage(exc: BaseException) -> bool:
    """Whether the error means storage is unreachable (after gcsfs's own retries)."""
    if isinstance(exc, ConnectionError | TimeoutError | asyncio.TimeoutError):
        return True
    code = getattr(exc, "code", None)
    return type(exc).__module__.startswith("aiohttp") or (isinstance(code, int) and code >= 500)


def describe(exc: BaseException) -> str:
    """One line for a storage exception, without a traceback."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, GcsdvcError):
        return text
    if isinstance(exc, FileNotFoundError):
        return "not found"
    if isinstance(exc, PermissionError) or text.startswith("Forbidden"):
        return "permission denied (check your credentials: gcloud auth application-default login)"
    name = type(exc).__name__
    if "Credentials" in name or "RefreshError" in name:
        return f"no usable Google Cloud credentials ({text})"
    code = getattr(exc, "code", None)
    if code == 401:  # no credentials (anonymous) or expired ones
        return (
            f"not authenticated (HTTP 401: {text}); sign in with 'gcloud auth "
            "application-default login' or set GOOGLE_APPLICATION_CREDENTIALS "
            "(anonymous access works only for public buckets)"
        )
    if isinstance(code, int):
        return f"HTTP {code}: {text}"
    if isinstance(exc, OSError | asyncio.TimeoutError) or "Connect" in name:
        return f"connection failed ({name}: {text})"
    return f"{name}: {text}"
