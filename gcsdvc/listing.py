"""Listing Cloud Storage: prefixes, folders and single objects, as few requests as answer.

Dependency info is built with dvc-data's ``Meta``, so what gcsdvc records matches
what DVC records for the same object.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Coroutine, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from gcsdvc.cloud import Connection, describe
from gcsdvc.errors import (
    StorageError,
)
from gcsdvc.model import RemoteObject

STAT_MAX = 8  # a folder with more wanted files than this is listed, not stat'ed
# A folder with 2 to STAT_MAX wanted files is first asked for one page of this many entries
# per wanted file: when that is the whole folder, one request answers for all of them.
PEEK_FACTOR = 2
MAX_PAGE = 1000  # the most objects Cloud Storage returns in one listing page
LISTING_JOBS = 16


# What a look-up found of an entry's files: each object, or the error that hid that one file.
Looked = dict[str, "RemoteObject | StorageError"]


def join_name(prefix: str, name: str) -> str:
    """An object's name from its entry's prefix and its path below it."""
    return f"{prefix}/{name}" if prefix else name


@dataclass(frozen=True)
class PrefixStats:
    """What a recursive listing of a prefix tells about it."""

    objects: int
    size: int
    updated: str | None  # RFC 3339 time of the newest object


class Listing(Connection):
    """The listing half of :class:`gcsdvc.storage.Storage`."""

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
            encrypted="customerEncryption" in info,
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

    def list_objects(self, bucket: str, prefix: str) -> dict[str, RemoteObject]:
        """Every object below ``gs://bucket/prefix/``, by name relative to the prefix, in order.

        As :meth:`list_prefix`, with what a download needs (one listing, page by page).
        """
        import asyncio

        root = f"{prefix}/" if prefix else ""

        async def pages() -> dict[str, RemoteObject]:
            found: dict[str, RemoteObject] = {}
            token = None
            while True:
                page = await self._list_page(bucket, root, MAX_PAGE, token, recursive=True)
                for info in page.get("items", []):
                    name = str(info["name"])
                    if name.startswith(root) and not name.endswith("/"):
                        found[name[len(root) :]] = self.object_from_info(bucket, info)
                token = page.get("nextPageToken")
                if not token:
                    return dict(sorted(found.items()))

        fs = self.fs
        try:
            return asyncio.run_coroutine_threadsafe(pages(), fs.loop).result()
        except FileNotFoundError:
            raise StorageError(f"bucket '{bucket}' not found") from None
        except Exception as exc:
            raise StorageError(f"cannot list gs://{bucket}/{root}: {describe(exc)}") from None

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
        import asyncio

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
        import asyncio

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
        import asyncio

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
