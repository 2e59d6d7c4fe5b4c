"""Cloud Storage: listing prefixes, downloading objects, verifying their bytes.

All access goes through dvc-gs's filesystem (so credentials and settings are the
ones ``dvc import-url`` would use) and dependency info is built with dvc-data's
``Meta``, so what gcsdvc records matches what DVC records for the same object.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import dataclasses
import errno
import hashlib
import io
import json
import logging
import os
import socket
import threading
import urllib.parse
import weakref
import zlib
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from gcsdvc.errors import (
    ChecksumMismatch,
    GcsdvcError,
    NotAttemptedError,
    StorageError,
    UsageError,
    local_fault,
)

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
# Objects up to this size are downloaded into memory, when the caller places them as they
# come (``Storage.download``'s ``then``): no temporary file for the small ones.
IN_MEMORY = 256 << 10
# Objects from this size stream to their file through a thread and are checked by crc32c.
LARGE = 8 << 20
BATCH = 4 << 20  # bytes handed to that thread at a time
STAT_MAX = 8  # a folder with more wanted files than this is listed, not stat'ed
# A folder with 2 to STAT_MAX wanted files is first asked for one page of this many entries
# per wanted file: when that is the whole folder, one request answers for all of them.
PEEK_FACTOR = 2
MAX_PAGE = 1000  # the most objects Cloud Storage returns in one listing page
LISTING_JOBS = 16
READ_TIMEOUT = 60  # seconds without a byte before a request counts as failed
OUTAGE_OBJECTS = 3  # distinct objects failing in a row that mean storage itself is down
RETRIES_VAR = "GCSDVC_RETRIES"  # attempts per download, counted as gcsfs's ``retries``


CREDENTIALS_HINT = (
    "run 'gcloud auth application-default login', or set GOOGLE_APPLICATION_CREDENTIALS "
    "to a service-account key file"
)
_DMI_PRODUCT = Path("/sys/class/dmi/id/product_name")


def prepare_environment() -> None:
    """Set gcsfs defaults; must run before gcsfs (and google-auth) is imported."""
    for key, value in _DEFAULT_ENV.items():
        os.environ.setdefault(key, value)
    emulator = os.environ.get("STORAGE_EMULATOR_HOST", "")
    if emulator.endswith("/"):
        # gcsfs appends "/storage/v1/...": "host//storage" answers 404, "bucket not found".
        os.environ["STORAGE_EMULATOR_HOST"] = emulator.rstrip("/")
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        for key, value in _EMULATOR_ENV.items():
            os.environ.setdefault(key, value)
    elif surely_off_gcp() and not has_credentials_file():
        # Without credentials google-auth asks the metadata server whether this is GCE
        # (google/auth/compute_engine/_metadata.py: ping() 3 x 3 s), and gcsfs then asks it
        # again for a token (gcsfs/credentials.py: the "cloud" method): about 17 s per
        # process before an anonymous request. Off GCP nothing answers; skip both.
        os.environ.setdefault("NO_GCE_CHECK", "true")


# The kinds of credentials file google-auth reads (google/auth/_default.py, _VALID_TYPES).
CREDENTIAL_TYPES = frozenset(
    {
        "authorized_user",
        "service_account",
        "external_account",
        "external_account_authorized_user",
        "impersonated_service_account",
        "gdch_service_account",
    }
)


def check_credentials_file() -> None:
    """Refuse a ``GOOGLE_APPLICATION_CREDENTIALS`` that names no usable credentials.

    gcsfs would fall back to anonymous access without a word (a missing file, an
    OAuth client file instead of a key). Only the file is read, as google-auth
    reads it first: nothing is asked of Google.
    """
    path = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    if not path:
        return
    why = None
    try:
        info = json.loads(Path(path).read_bytes())
    except FileNotFoundError:
        why = "no such file"
    except OSError as exc:
        why = f"cannot read it ({exc.strerror or exc})"
    except ValueError:
        why = "not a JSON file"
    else:
        kind = info.get("type") if isinstance(info, dict) else None
        if kind not in CREDENTIAL_TYPES:
            client = isinstance(info, dict) and ("installed" in info or "web" in info)
            why = (
                "an OAuth client file, not credentials"
                if client
                else f"holds no credentials (type {kind!r})"
            )
    if why:
        raise StorageError(
            f"GOOGLE_APPLICATION_CREDENTIALS={path}: {why}; point it at a service-account "
            "key file, or unset it and run 'gcloud auth application-default login'"
        )


def credentials_hint() -> str:
    """What to do about refused credentials, from where they came."""
    path = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    if path:
        return f"the credentials in GOOGLE_APPLICATION_CREDENTIALS={path} were refused"
    return CREDENTIALS_HINT


def surely_off_gcp() -> bool:
    """Whether this Linux machine says it is no Google machine (google-auth's own fallback test).

    google-auth reads the same file in ``detect_gce_residency_linux``. Unreadable
    (macOS, Windows, sandboxes) means "cannot tell", and the metadata check stays.
    """
    try:
        product = _DMI_PRODUCT.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return False
    return bool(product) and not product.startswith("Google")


def has_credentials_file() -> bool:
    """Whether google-auth finds credentials before it would ask the metadata server."""
    if os.environ.get("GOOGLE_APPLICATION_CREDENTIALS"):
        return True
    return gcloud_credentials_file().is_file()


def gcloud_credentials_file() -> Path:
    """Where ``gcloud auth application-default login`` keeps its credentials."""
    config = os.environ.get("CLOUDSDK_CONFIG") or str(Path.home() / ".config" / "gcloud")
    return Path(config) / "application_default_credentials.json"


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


# What a look-up found of an entry's files: each object, or the error that hid that one file.
Looked = dict[str, "RemoteObject | StorageError"]


def join_name(prefix: str, name: str) -> str:
    """An object's name from its entry's prefix and its path below it."""
    return f"{prefix}/{name}" if prefix else name


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
        # A sync plans twice (before and under the repository lock): ask once.
        self._objects: dict[tuple[str, str], RemoteObject | BaseException | None] = {}
        self._listings: dict[tuple[str, str], list[str] | StorageError] = {}
        self.retries = RetryCounter()

    @property
    def fs(self) -> Any:
        if self._fs is None:
            prepare_environment()
            retries = attempts()
            check_credentials_file()
            self._check_reachable()
            try:
                from dvc_gs import GSFileSystem

                fs = GSFileSystem().fs
                # A stalled connection must fail (and be retried), not hang the sync.
                fs.requests_timeout = _timeout()
                fs.retries = retries  # gcsfs's name; its own requests keep their 6
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
        """A :class:`RemoteObject` from an object resource (``name`` relative to the bucket)."""
        from dvc_data.hashfile.meta import Meta

        # gcsfs's shape of the same resource (``GCSFileSystem._process_object``).
        shaped = {**info, "type": "file", "size": int(info["size"])}
        meta = Meta.from_info(shaped, "gs").to_dict()
        dep_info = {"etag": meta["etag"], "size": meta["size"]}
        if meta.get("version_id"):
            dep_info["version_id"] = meta["version_id"]
        md5 = info.get("md5Hash")
        count = info.get("componentCount")
        return RemoteObject(
            bucket=bucket,
            name=info["name"],
            size=int(info["size"]),
            md5=base64.b64decode(md5).hex() if md5 else None,
            crc32c=info.get("crc32c"),
            dep_info=dep_info,
            generation=str(info["generation"]) if info.get("generation") else None,
            metageneration=str(info["metageneration"]) if info.get("metageneration") else None,
            content_encoding=info.get("contentEncoding") or None,
            component_count=int(count) if count else None,
        )

    def list_prefix(self, bucket: str, prefix: str) -> list[str]:
        """The names of the objects under ``gs://bucket/prefix/``, relative to the prefix.

        Folder placeholders ("eval/", made by the Cloud Console) are no files: left out.
        """
        root = f"{bucket}/{prefix}/" if prefix else f"{bucket}/"
        try:
            found = self.fs.find(root, detail=True)
        except FileNotFoundError:
            raise StorageError(f"bucket '{bucket}' not found") from None
        except Exception as exc:
            raise StorageError(f"cannot list gs://{root}: {describe(exc)}") from None
        return [
            path[len(root) :]
            for path, info in found.items()
            if info.get("type") == "file" and path.startswith(root) and not path.endswith("/")
        ]

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
        files = [
            info
            for info in found.values()
            if info.get("type") == "file" and not str(info["name"]).endswith("/")
        ]  # a folder placeholder ("eval/", made by the Console) is no file
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
    ) -> dict[tuple[str, str], list[str] | StorageError]:
        """The names of everything below each (bucket, prefix), recursively: for glob patterns.

        Listed files go through :meth:`lookup`, which costs what the manifest names.
        Each prefix is listed at most once per client, several at a time.
        """
        wanted = list(dict.fromkeys(keys))
        todo = [key for key in wanted if key not in self._listings]
        if todo:
            _ = self.fs  # fail once, clearly, if storage is unreachable

            def one(key: tuple[str, str]) -> list[str] | StorageError:
                try:
                    return self.list_prefix(*key)
                except StorageError as exc:
                    return exc

            with ThreadPoolExecutor(max_workers=min(8, len(todo))) as pool:
                self._listings.update(zip(todo, pool.map(one, todo), strict=True))
        return {key: self._listings[key] for key in wanted}

    def lookup(
        self, wanted: Mapping[tuple[str, str], Iterable[str]]
    ) -> dict[tuple[str, str], Looked | StorageError]:
        """The listed files that exist, per (bucket, prefix), or the error that hid them.

        An error that hid every asked file of a prefix is the prefix's; one that hid
        only some files is theirs (the value for that file), and the others go on.

        Costs what the manifest names, not what the bucket holds: an entry whose
        files lie in several folders first gets one page of its whole prefix, which
        answers for all of them when it is the whole prefix; else, folder by folder,
        a folder holding one wanted file gets one metadata request; up to
        ``STAT_MAX``, one small listing page when that holds the whole folder, else
        one request per file; a folder holding more is listed without descending
        (``delimiter=/``). Each name is asked at most once per client.
        """
        asked = {key: sorted(set(files)) for key, files in wanted.items()}
        folders: dict[tuple[str, str], list[str]] = {}
        spans: dict[tuple[str, str], set[str]] = {}  # the folders of each entry's prefix
        for (bucket, prefix), files in asked.items():
            for file in files:
                name = join_name(prefix, file)
                if (bucket, name) not in self._objects:
                    folder = name.rsplit("/", 1)[0] + "/" if "/" in name else ""
                    folders.setdefault((bucket, folder), []).append(name)
                    spans.setdefault((bucket, prefix), set()).add(folder)
        if folders:
            fs = self.fs  # fail once, clearly, if storage is unreachable
            future = asyncio.run_coroutine_threadsafe(self._fetch_folders(folders, spans), fs.loop)
            future.result()
        out: dict[tuple[str, str], Looked | StorageError] = {}
        for (bucket, prefix), files in asked.items():
            found: Looked = {}
            errors: dict[str, BaseException] = {}
            for file in files:
                name = join_name(prefix, file)
                got = self._objects.get((bucket, name))
                if isinstance(got, BaseException):
                    errors[file] = got
                elif got is not None:
                    found[file] = got
            if errors and len(errors) == len(files):  # nothing answered: the prefix's error
                error = next(iter(errors.values()))
                where = f"gs://{bucket}/{prefix}/" if prefix else f"gs://{bucket}/"
                out[(bucket, prefix)] = (
                    error
                    if isinstance(error, StorageError)
                    else StorageError(f"cannot list {where}: {describe(error)}")
                )
                continue
            for file, error in errors.items():  # one object's failure stays that object's
                found[file] = StorageError(describe(error))
            out[(bucket, prefix)] = found
        return out

    async def _fetch_folders(
        self, folders: dict[tuple[str, str], list[str]], spans: dict[tuple[str, str], set[str]]
    ) -> None:
        sem = asyncio.Semaphore(LISTING_JOBS)
        missing_in: set[str] = set()

        async def stat(bucket: str, name: str) -> None:
            async with sem:
                try:
                    info = await self.fs._call("GET", "b/{}/o/{}", bucket, name, json_out=True)
                    self._objects[(bucket, name)] = self.object_from_info(bucket, info)
                except FileNotFoundError:
                    self._objects[(bucket, name)] = None
                    missing_in.add(bucket)
                except Exception as exc:
                    self._objects[(bucket, name)] = exc

        def found(bucket: str, names: list[str], infos: dict[str, dict[str, Any]]) -> None:
            for name in names:
                info = infos.get(name)
                self._objects[(bucket, name)] = (
                    self.object_from_info(bucket, info) if info else None
                )

        async def listing(bucket: str, folder: str, names: list[str]) -> None:
            async with sem:
                try:
                    infos = await self._list_folder(bucket, folder)
                except FileNotFoundError:
                    error: StorageError = StorageError(f"bucket '{bucket}' not found")
                    self._objects.update({(bucket, n): error for n in names})
                    return
                except Exception as exc:
                    self._objects.update({(bucket, n): exc for n in names})
                    return
            found(bucket, names, infos)

        async def peek(bucket: str, folder: str, names: list[str]) -> None:
            """One small page answers for a folder that holds little more than the wanted
            files; else (or without the right to list) one stat per file."""
            async with sem:
                try:
                    page = await self._list_page(bucket, folder, PEEK_FACTOR * len(names))
                except Exception:
                    page = None
            if page is None or page.get("nextPageToken"):
                await asyncio.gather(*(stat(bucket, name) for name in names))
            else:
                found(bucket, names, {item["name"]: item for item in page.get("items", [])})

        def one(bucket: str, folder: str) -> Coroutine[Any, Any, None]:
            names = folders[(bucket, folder)]
            if len(names) == 1:
                return stat(bucket, names[0])
            if len(names) <= STAT_MAX:
                return peek(bucket, folder, names)
            return listing(bucket, folder, names)

        async def span(bucket: str, prefix: str, parts: list[str]) -> None:
            """One page of the whole prefix, recursively, answers for its folders when it
            holds little more than the wanted files; else each folder is asked."""
            names = [name for part in parts for name in folders[(bucket, part)]]
            size = min(MAX_PAGE, PEEK_FACTOR * len(names))
            async with sem:
                try:
                    page = await self._list_page(bucket, prefix, size, recursive=True)
                except Exception:
                    page = None
            if page is None or page.get("nextPageToken"):
                await asyncio.gather(*(one(bucket, part) for part in parts))
            else:
                found(bucket, names, {item["name"]: item for item in page.get("items", [])})

        tasks = []
        spanned: set[tuple[str, str]] = set()
        for (bucket, prefix), parts in spans.items():
            keys = {(bucket, part) for part in parts}
            wanted = sum(len(folders[key]) for key in keys)
            # Where an entry's files lie in several folders (not shared with another entry),
            # and one page can hold them all.
            if len(parts) > 1 and wanted <= MAX_PAGE and not keys & spanned:
                spanned |= keys
                root = f"{prefix}/" if prefix else ""
                tasks.append(span(bucket, root, sorted(parts)))
        tasks += [one(*key) for key in folders if key not in spanned]
        await asyncio.gather(*tasks)
        # A missing object and a missing bucket both answer 404: ask the bucket once.
        for bucket in missing_in:
            try:
                await self.fs._info(bucket)  # as _bucket_exists asks, from the event loop
            except FileNotFoundError:
                error = StorageError(f"bucket '{bucket}' not found")
                for key in [k for k, v in self._objects.items() if k[0] == bucket and v is None]:
                    self._objects[key] = error
            except Exception:  # noqa: S110 - only a better message is at stake
                pass

    async def _list_folder(self, bucket: str, folder: str) -> dict[str, dict[str, Any]]:
        """The objects directly in ``folder`` (one level, ``delimiter=/``), by name."""
        found: dict[str, dict[str, Any]] = {}
        token = None
        while True:
            page = await self._list_page(bucket, folder, MAX_PAGE, token)
            found.update((item["name"], item) for item in page.get("items", []))
            token = page.get("nextPageToken")
            if not token:
                return found

    async def _list_page(
        self,
        bucket: str,
        folder: str,
        size: int,
        token: str | None = None,
        recursive: bool = False,
    ) -> dict[str, Any]:
        """One page of ``folder``'s listing: up to ``size`` objects and subfolders, or
        (``recursive``) objects at any depth."""
        page: dict[str, Any] = await self.fs._call(
            "GET",
            "b/{}/o",
            bucket,
            prefix=folder or None,
            delimiter=None if recursive else "/",
            pageToken=token,
            maxResults=size,
            json_out=True,
        )
        return page

    def stat_generation(self, bucket: str, name: str, generation: str) -> RemoteObject | None:
        """One generation of an object, or None when the bucket no longer keeps it.

        Versioned buckets keep overwritten and deleted generations (noncurrent);
        others keep only the live one.
        """
        fs = self.fs

        async def get() -> dict[str, Any]:
            info: dict[str, Any] = await fs._call(
                "GET", "b/{}/o/{}", bucket, name, generation=generation, json_out=True
            )
            return info

        try:
            info = asyncio.run_coroutine_threadsafe(get(), fs.loop).result()
        except FileNotFoundError:
            return None
        except Exception as exc:
            raise StorageError(
                f"cannot read gs://{bucket}/{name}#{generation}: {describe(exc)}"
            ) from None
        return dataclasses.replace(self.object_from_info(bucket, info), by_generation=True)

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
        fs = self.fs
        outage = _Outage()

        async def one(client: _Client, index: int, obj: RemoteObject, dest: Path) -> None:
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
            async with _Client.open(fs, self.jobs, copies) as client:

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
class _Client:
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
    attempt: Any  # :func:`_attempt` under gcsfs's retries, decorated once, not per object
    pool: ThreadPoolExecutor  # hashes and writes large downloads (:func:`_stream`)
    copies: bool  # whether large downloads also write a copy (``Storage.download``)
    proxy: Any = None
    proxy_auth: Any = None

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, fs: Any, jobs: int, copies: bool = False) -> AsyncIterator[_Client]:
        import aiohttp

        await fs._set_session()
        proxy = proxy_auth = None
        if fs.session.trust_env:
            from aiohttp.helpers import get_env_proxy_for_url
            from yarl import URL

            with contextlib.suppress(LookupError):
                # Any object's URL: only its scheme and host decide.
                proxy, proxy_auth = get_env_proxy_for_url(URL(fs.url("b/o")))
        from gcsfs.retry import retry_request

        attempt = retry_request(retries=fs.retries)(_attempt)
        session = aiohttp.ClientSession(connector=fs.session.connector, connector_owner=False)
        pool = ThreadPoolExecutor(jobs, thread_name_prefix="gcsdvc-stream")
        try:
            yield cls(
                fs, session, asyncio.Semaphore(jobs), attempt, pool, copies, proxy, proxy_auth
            )
        finally:
            pool.shutdown(wait=False)
            await session.close()


class _Hasher:
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


class _Gunzip:
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
    hasher = _Hasher(crc=obj is not None and obj.md5 is None)
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


async def _fetch(
    client: _Client, obj: RemoteObject, dest: Path | None, on_bytes: Callable[[int], None] | None
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
    fs = client.fs
    url = fs.url(f"{obj.bucket}/{obj.name}")  # "...?alt=media"; gcsfs 2024.2 has no generation=
    if obj.generation and obj.by_generation:
        url += f"&generation={obj.generation}"
    project = billed_project(fs)
    if project:
        url += f"&userProject={urllib.parse.quote(project, safe='')}"
    headers = fs._get_headers({"Accept-Encoding": "gzip" if obj.transcoded else "identity"})
    result: Fetched = await client.attempt(client, obj, url, headers, dest, on_bytes)
    return result


async def _attempt(
    client: _Client,
    obj: RemoteObject,
    url: str,
    headers: dict[str, str],
    dest: Path | None,
    on_bytes: Callable[[int], None] | None,
) -> Fetched:
    """One try of :func:`_fetch` (``_Client.attempt`` retries it).

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
    client: _Client,
    obj: RemoteObject,
    url: str,
    headers: dict[str, str],
    dest: Path | None,
    on_bytes: Callable[[int], None],
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
            validate_response(resp.status, await resp.read(), url)
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
            stored = _Hasher(crc=True, md5=obj.md5 is None or obj.crc32c is None)
            copy = twin(dest) if client.copies else None
            with contextlib.ExitStack() as files:
                outs: list[BinaryIO] = [
                    files.enter_context(p.open("wb")) for p in (dest, copy) if p
                ]
                await _stream(client, resp, stored, outs, on_bytes)
            stored.check(obj)
            return Fetched(stored.hexdigest(obj), stored.size, copy=copy)
        stored = _Hasher(crc=obj.md5 is None)
        gunzip = _Gunzip() if gzipped else None
        # DVC's md5 is of the bytes written: the stored ones' unless they are decoded here.
        decoded = hashlib.md5() if gunzip is not None else stored.md5  # noqa: S324
        assert decoded is not None
        size = 0
        fobj: BinaryIO = io.BytesIO() if dest is None else dest.open("wb")
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


async def _stream(
    client: _Client,
    resp: Any,
    hasher: _Hasher,
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


def attempts() -> int:
    """How often a download is tried: ``$GCSDVC_RETRIES``, default 6 (as gcsfs's requests).

    gcsfs waits about 1, 2, 4, 8, 16 s between tries; fewer give up sooner in an outage.
    """
    value = os.environ.get(RETRIES_VAR, "").strip() or "6"
    if not value.isdigit() or int(value) < 1:
        raise UsageError(f"{RETRIES_VAR}={value!r}: expected a whole number, at least 1")
    return int(value)


def file_md5(path: Path) -> str:
    return hash_file(path)[0]


def billed_project(fs: Any) -> str | None:
    """The project requests bill for requester-pays buckets, as gcsfs's own requests name it.

    gcsfs and DVC take it from ``FSSPEC_GS_REQUESTER_PAYS=<project>`` (fsspec's
    configuration of the ``gs`` file system), so ``dvc pull`` bills the same project.
    """
    pays = fs.requester_pays
    if isinstance(pays, str):
        return pays
    return str(fs.project) if pays and fs.project else None


def _timeout() -> Any:
    import aiohttp

    return aiohttp.ClientTimeout(sock_connect=30, sock_read=READ_TIMEOUT)


def http_status(exc: BaseException) -> object:
    """The HTTP status an exception carries: gcsfs's ``code``, aiohttp's ``status``
    (whose ``code`` alias warns of its deprecation)."""
    if type(exc).__module__.startswith("aiohttp"):
        return getattr(exc, "status", None)
    return getattr(exc, "code", None)


def is_outage(exc: BaseException) -> bool:
    """Whether the error means storage is unreachable (after gcsfs's own retries)."""
    if isinstance(exc, ConnectionError | TimeoutError | asyncio.TimeoutError):
        return True
    code = http_status(exc)
    return type(exc).__module__.startswith("aiohttp") or (isinstance(code, int) and code >= 500)


def describe(exc: BaseException) -> str:
    """One line for a storage exception, without a traceback."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, GcsdvcError):
        return text
    if isinstance(exc, OSError) and exc.filename is not None:
        return local_fault(exc)  # this machine's file, not Cloud Storage
    if isinstance(exc, FileNotFoundError):
        return "not found"
    forbidden = text.startswith("Forbidden") or http_status(exc) == 403
    if isinstance(exc, PermissionError) or forbidden:
        # gcsfs: "Forbidden: <path>" then Cloud Storage's text, which names the principal
        # and the permission it lacks.
        said = " ".join(str(exc).strip().splitlines()[1:]).strip()
        said = f": {said}" if said else ""
        return f"permission denied{said} (check your credentials: {credentials_hint()})"
    if "requester pays" in text.lower():
        return (
            "the bucket is requester pays: set FSSPEC_GS_REQUESTER_PAYS to the project to "
            "bill (gcsfs and DVC read it too)"
        )
    name = type(exc).__name__
    code = http_status(exc)
    if code == 401 or "Anonymous caller" in text:
        return f"not signed in to Google Cloud ({text}); {credentials_hint()}"
    if "Credentials" in name or "RefreshError" in name:
        return f"no usable Google Cloud credentials ({text})"
    if isinstance(code, int):
        return f"HTTP {code}: {text.removesuffix(f', {code}')}"  # gcsfs's "message, 503"
    if name == "ClientPayloadError":
        return f"the download broke off before its end, after every retry ({text})"
    if isinstance(exc, OSError | asyncio.TimeoutError) or "Connect" in name:
        return f"connection failed ({name}: {text})"
    return f"{name}: {text}"
