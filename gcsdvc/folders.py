"""Whole-prefix entries (DVC's folder imports), downloaded as file imports are.

``dvc import-url`` of a prefix downloads through gcsfs, whose retries no setting
reaches; here the prefix is listed once, each object downloaded and verified by
:meth:`gcsdvc.storage.Storage.download` (``GCSDVC_RETRIES``, outage rule, per-object
errors, requester pays, gzip decoding), moved into the DVC cache, and the folder
laid out by :meth:`gcsdvc.workspace.Workspace.place_folder` only once every file
is there. DVC's own records are written as ``dvc import-url`` writes them: the
``.dir`` object of the files' md5s in the cache, and the stage, whose dependency
is the ``.dir`` of the objects' etags (what ``dvc status`` and ``dvc update``
compare with the bucket).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gcsdvc import stages
from gcsdvc.cloud import describe
from gcsdvc.download import Fetched
from gcsdvc.errors import ChecksumMismatch, GcsdvcError, NotAttemptedError, StorageError
from gcsdvc.hashes import dvc_tree, etag_tree
from gcsdvc.model import RemoteObject
from gcsdvc.plan import Action, Item
from gcsdvc.stages import ImportStage
from gcsdvc.storage import Storage
from gcsdvc.workspace import Reporter, Workspace


def sync_folder(
    ws: Workspace,
    storage: Storage,
    item: Item,
    pinned: bool,
    download: bool = True,
    reporter: Reporter | None = None,
) -> ImportStage:
    """Import, update or restore the folder of a whole-prefix ``item``; the stage to write.

    ``pinned``: the stage records each object's generation (:func:`gcsdvc.stages.folder_dep`).
    Any failure is one exception and leaves the data folder as it was.
    """
    assert item.resource is not None
    stage = item.stage
    if item.action is Action.RESTORE and stage is not None and stage.md5 is not None:
        if download:
            _restore(ws, storage, item, stage, reporter)
        return stage
    objects = item.objects  # listed by the survey for a folder that follows upstream
    if objects is None:
        objects = storage.list_objects(item.resource.bucket, item.resource.prefix)
    if not objects:
        raise StorageError(f"object not found: nothing below {item.source}/")
    sources = etag_tree(objects)
    files = _fetch(ws, storage, objects, reporter) if download else None
    frozen = stage.frozen if stage is not None else True  # a user's unfreeze stays
    return _folder_stage(ws, item, objects, sources, files, pinned, frozen)


def _folder_stage(
    ws: Workspace,
    item: Item,
    objects: Mapping[str, RemoteObject],
    sources: Any,
    files: Mapping[str, tuple[str, int]] | None,
    pinned: bool,
    frozen: bool = True,
) -> ImportStage:
    """The stage ``dvc import-url`` writes for the prefix, the folder laid out when downloaded.

    ``sources``: the objects' tree of etags (:func:`~gcsdvc.hashes.etag_tree`),
    which DVC keeps in its cache in either mode and records as the unpinned
    dependency. ``files``: (md5, size) by path below the folder; None:
    ``--no-download``, the output has no hash yet. The ``.dir`` objects go into the
    DVC cache as DVC puts them. :func:`gcsdvc.stages.conform` completes the stage.
    """
    records = {rel: obj.dep_info for rel, obj in objects.items()}
    dep = stages.folder_dep(item.source, records, pinned, _save_tree(ws, sources))
    out: dict[str, Any] = {}
    if files is not None:
        md5s = {rel: md5 for rel, (md5, _) in files.items()}
        out = {
            "md5": _save_tree(ws, dvc_tree("md5", md5s)),
            "size": sum(size for _, size in files.values()),
            "nfiles": len(files),
        }
        ws.place_folder(item.local, md5s)
    raw = {
        "frozen": frozen,
        "deps": [dep],
        "outs": [{**out, "hash": "md5", "path": stages.relative_out(item.local)}],
    }
    return ImportStage.from_dict(raw)


def _save_tree(ws: Workspace, tree: Any) -> str:
    """Write a tree (:func:`_tree`) into the DVC cache as DVC's ``.dir`` object; its name."""
    ws.odb.add(tree.path, tree.fs, tree.oid)
    return str(tree.oid)


def _fetch(
    ws: Workspace,
    storage: Storage,
    objects: Mapping[str, RemoteObject],
    reporter: Reporter | None,
    recorded: Mapping[str, str] | None = None,
) -> dict[str, tuple[str, int]]:
    """Download each object the cache lacks into the cache; (md5, size) by path below the folder.

    ``recorded``: md5 by path, which the bytes must have (a restore). The first
    failure is raised, naming its object and how many more failed.
    """
    files: dict[str, tuple[str, int]] = {}
    todo: list[tuple[str, RemoteObject]] = []
    for rel, obj in objects.items():
        want = recorded[rel] if recorded is not None else obj.md5
        if want is not None and not obj.transcoded and ws.cached(want, "it is fetched again"):
            files[rel] = (want, obj.size)
        else:
            todo.append((rel, obj))
    if not todo:
        return files
    work = ws.work / "folder"
    pairs = [(obj, work / f"{n}.part") for n, (_, obj) in enumerate(todo)]
    failed: dict[str, Exception] = {}
    if reporter:
        reporter.start(len(pairs), sum(obj.size for obj, _ in pairs))
    on_bytes = (lambda n: reporter.advance(nbytes=n)) if reporter else None

    def done(index: int, got: Fetched | Exception) -> None:
        rel, obj = todo[index]
        tmp = pairs[index][1]
        if isinstance(got, Exception):
            failed[rel] = got
        else:
            try:
                keep(rel, obj, tmp, got)
            except (GcsdvcError, OSError) as exc:
                failed[rel] = exc
        if reporter:
            reporter.advance(files=1)

    def keep(rel: str, obj: RemoteObject, tmp: Path, got: Fetched) -> None:
        """Into the cache; a restore's file only with its recorded bytes."""
        want = recorded[rel] if recorded is not None else None
        if want is not None and got.md5 != want:
            for path in (tmp, got.copy):
                if path is not None:
                    path.unlink(missing_ok=True)
            raise ChecksumMismatch(f"{obj.url}: the bytes are not the recorded ones")
        ws.cache(tmp, got)
        files[rel] = (got.md5, got.size)

    try:
        storage.download(pairs, done, on_bytes)
    finally:
        if reporter:
            reporter.finish()
    if failed:
        raise _failure(failed, objects)
    return files


def _failure(failed: Mapping[str, Exception], objects: Mapping[str, RemoteObject]) -> Exception:
    """One error for a folder whose downloads failed: the first real failure, and the count."""
    tried = {rel: exc for rel, exc in failed.items() if not isinstance(exc, NotAttemptedError)}
    rel, exc = next(iter(sorted((tried or failed).items())))
    if isinstance(exc, OSError) and exc.filename is not None:
        return exc  # a local fault: the caller names the path
    url = objects[rel].url
    text = describe(exc).removeprefix(f"{url}: ")
    more = f" ({len(failed) - 1} more of its files failed too)" if len(failed) > 1 else ""
    kind = ChecksumMismatch if isinstance(exc, ChecksumMismatch) else StorageError
    return kind(f"{url}: {text}{more}")


def _restore(
    ws: Workspace, storage: Storage, item: Item, stage: ImportStage, reporter: Reporter | None
) -> None:
    """Lay out the recorded folder again: from the DVC cache, the rest fetched and checked.

    Without the recorded ``.dir`` in the cache, the bucket's files must make the very
    same folder.
    """
    assert item.resource is not None and stage.md5 is not None
    recorded = _read_tree(ws, stage.md5)
    if recorded is None:
        objects = storage.list_objects(item.resource.bucket, item.resource.prefix)
        files = _fetch(ws, storage, objects, reporter)
        tree = dvc_tree("md5", {rel: md5 for rel, (md5, _) in files.items()})
        if tree.oid != stage.md5:
            raise ChecksumMismatch(
                f"the files below {item.source}/ are not the recorded ones, and the DVC cache "
                "lacks the recorded folder; 'dvc pull' it from your DVC remote"
            )
        _save_tree(ws, tree)
        ws.place_folder(item.local, {rel: md5 for rel, (md5, _) in files.items()})
        return
    absent = [
        rel
        for rel, md5 in recorded.items()
        if not ws.cached(md5, f"{item.local}/{rel} is fetched again")
    ]
    if absent:
        objects = storage.list_objects(item.resource.bucket, item.resource.prefix)
        gone = [rel for rel in absent if rel not in objects]
        if gone:
            raise StorageError(
                f"{item.source}/{gone[0]}: the recorded file is gone from the bucket and not "
                "in the DVC cache; 'dvc pull' it from your DVC remote"
            )
        _fetch(ws, storage, {rel: objects[rel] for rel in absent}, reporter, recorded)
    ws.place_folder(item.local, recorded)


def _read_tree(ws: Workspace, name: str) -> dict[str, str] | None:
    """md5 by path of the ``.dir`` object ``name`` in the DVC cache; None when it is not
    there intact."""
    path = Path(ws.odb.oid_to_path(name))
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    if hashlib.md5(raw).hexdigest() != name.removesuffix(".dir"):  # noqa: S324 - DVC's hash
        return None
    return {str(e["relpath"]): str(e["md5"]) for e in json.loads(raw)}
