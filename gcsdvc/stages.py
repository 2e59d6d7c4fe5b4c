"""DVC stages: the ``.dvc`` import stage typed, its text, and reading the stages of a repo.

A stage is written in exactly the shape ``dvc import-url gs://...`` gives it (a
frozen import with ``deps`` and ``outs``), plus ``desc`` and ``meta.gcsdvc``.
Building the mapping here instead of through DVC's ``Stage`` objects keeps a sync
of thousands of files fast; ``tests/test_stages.py`` pins the shape, and
``tests/test_sync.py::test_stage_matches_dvc_import_url`` checks it against what
DVC itself writes and computes. Stages as committed and their ``.gitignore`` lines
are :mod:`gcsdvc.git`'s; atomic writes and the JSON caches :mod:`gcsdvc.files`'.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import posixpath
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from gcsdvc import collector
from gcsdvc.errors import DvcRepoError, NotARepoError
from gcsdvc.files import (
    ONE_PAGE,
    atomic_write,
    file_signature,
    read_json_cache,
    stage_cache_path,
    stage_index_path,
    to_json,
    write_new,
)
from gcsdvc.hashes import dvc_tree, etag_tree

if TYPE_CHECKING:
    from dvc.repo import Repo

    from gcsdvc.manifest import Resource
    from gcsdvc.model import RemoteObject

STAGE_SUFFIX = ".dvc"
META_KEY = "gcsdvc"

# DVC's compute_md5 leaves these keys out of a stage's checksum, at any depth.
_MD5_EXCLUDED = frozenset(
    {"desc", "type", "labels", "meta", "locked", "frozen", "metric", "persist", "isexec"}
    | {"size", "nfiles"}
)
_DEP_ORDER = ("etag", "size", "version_id", "hash", "path")
_RECORD = ("etag", "size", "version_id")  # what DVC re-records of an import's dependency
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_Dumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
# Scalars PyYAML writes plain in block context when they resolve to a string, else in
# single quotes: ASCII, no indicator first, no " #", no space at either end.
_PLAIN = re.compile(r"[A-Za-z0-9_/(](?:[A-Za-z0-9_./+=@:,() -]{0,1000}[A-Za-z0-9_./+=@,()-])?")
_STR_TAG = "tag:yaml.org,2002:str"
_RESOLVER = yaml.resolver.Resolver()


def stage_path(local: str) -> str:
    """The stage file DVC uses for an imported file or folder."""
    return local + STAGE_SUFFIX


def relative_out(local: str) -> str:
    """The ``outs[0].path`` of a stage: the data's name beside the stage file."""
    return posixpath.basename(local)


@dataclass(frozen=True)
class Identity:
    """What ``meta.gcsdvc`` records to tie a stage to its manifest entry (and file)."""

    name: str
    bucket: str
    blob: str
    subblob: str
    file: str | None = None  # None: a whole-prefix import
    manifest: str | None = None  # the manifest that wrote it (None: the default params.yaml)

    @classmethod
    def of(cls, resource: Resource, file: str | None) -> Identity:
        return cls(
            resource.name, resource.bucket, resource.blob, resource.subblob, file, resource.manifest
        )

    @classmethod
    def from_dict(cls, value: Any) -> Identity | None:
        if not isinstance(value, dict):
            return None
        file, manifest = value.get("file"), value.get("manifest")
        return cls(
            name=str(value.get("name", "")),
            bucket=str(value.get("bucket", "")),
            blob=str(value.get("blob", "")),
            subblob=str(value.get("subblob", "")),
            file=None if file is None else str(file),
            manifest=None if manifest is None else str(manifest),
        )

    def as_dict(self) -> dict[str, Any]:
        ident: dict[str, Any] = {
            "name": self.name,
            "bucket": self.bucket,
            "blob": self.blob,
            "subblob": self.subblob,
        }
        if self.file is not None:
            ident["file"] = self.file
        if self.manifest is not None:
            ident["manifest"] = self.manifest
        return ident


@dataclass(frozen=True)
class ImportStage:
    """A ``.dvc`` import stage, typed; ``raw`` is the mapping as read or as it will be written.

    Every field is read from ``raw`` once, here; other modules use the fields.
    Build new stages with :func:`file_stage` and :func:`conform`.
    """

    source: str  # deps[0].path: the gs:// URL
    etag: str | None
    generation: str | None  # deps[0].version_id
    source_size: int | None  # deps[0].size: the stored bytes (compressed for a gzip object)
    md5: str | None  # outs[0].md5 (a folder's ends in .dir); None: not downloaded
    size: int | None  # outs[0].size
    nfiles: int | None  # outs[0].nfiles, for a folder
    out: str  # outs[0].path, relative to the stage's folder
    identity: Identity | None  # None: not written by gcsdvc (a plain `dvc import-url`)
    description: str
    frozen: bool
    is_folder: bool  # a whole-prefix import: DVC records no etag for it
    # deps[0].files: a folder import recording each object's generation (see folder_dep)
    versioned: bool
    raw: dict[str, Any] = field(repr=False)
    broken: str | None = None  # why the stage file cannot be read (a merge conflict...)
    # outs[0].remote: the DVC remote the data was archived into (gcsdvc.archive), which
    # `dvc push`/`dvc pull` then use for it; None: the default remote, if any
    remote: str | None = None

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ImportStage:
        dep, out = first_entry(raw.get("deps")), first_entry(raw.get("outs"))
        meta = raw.get("meta")
        md5, size, nfiles = out.get("md5"), out.get("size"), out.get("nfiles")
        stored = dep.get("size")
        return cls(
            source=str(dep.get("path", "?")),
            etag=_opt_str(dep.get("etag")),
            generation=_opt_str(dep.get("version_id")),
            source_size=stored if isinstance(stored, int) else None,
            # Not dropped when YAML reads it as a number (a hand edit): compare names it.
            md5=None if md5 is None or md5 == "" else str(md5),
            size=size if isinstance(size, int) else None,
            nfiles=nfiles if isinstance(nfiles, int) else None,
            out=str(out.get("path", "")),
            identity=Identity.from_dict(meta.get(META_KEY) if isinstance(meta, dict) else None),
            description=str(raw.get("desc", "")),
            frozen=raw.get("frozen") is True,
            is_folder="etag" not in dep,
            versioned=isinstance(dep.get("files"), list),
            raw=raw,
            remote=_opt_str(out.get("remote")),
        )

    @classmethod
    def unreadable(cls, why: str) -> ImportStage:
        """Stands for a stage file that cannot be read: it fails its own file only."""
        stage = cls.from_dict({})
        return replace(stage, broken=why)

    @classmethod
    def load(cls, path: Path) -> ImportStage | None:
        """The stage at ``path``, or None when there is no file."""
        raw = read_stage(path)
        return None if raw is None else cls.from_dict(raw)

    @property
    def name(self) -> str:
        """The experiment name recorded in the stage ("" for a foreign stage)."""
        return self.identity.name if self.identity else ""

    def dump(self) -> str:
        """The stage's YAML text, byte for byte what ``yaml.dump`` (and DVC) writes."""
        try:
            return "".join(_block(self.raw, ""))
        except _Unusual:
            text: str = yaml.dump(
                self.raw, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=4096
            )
            return text

    def write(self, path: Path, make_parent: bool = True) -> os.stat_result:
        """Write the stage; its file's stat. Readers never see half of it.

        A new stage of at most one page is created with one ``write``: a process
        killed meanwhile leaves no file, an empty one (which reads as no stage, see
        :func:`read_stage`) or the whole text, since a write of one page to a new
        file is not cut short by a signal. Saving a temporary file and a rename in
        a folder of thousands of files was a tenth of a cold sync. Any other stage
        is replaced through a rename (:func:`atomic_write`).
        """
        text = self.dump()
        data = text.encode("utf-8")
        if make_parent:
            path.parent.mkdir(parents=True, exist_ok=True)
        if len(data) <= ONE_PAGE:
            with contextlib.suppress(FileExistsError):
                return write_new(path, data, exclusive=True)
        return atomic_write(path, text, make_parent=False)

    def recorded_as(self, obj: RemoteObject) -> ImportStage:
        """This stage recording ``obj`` as it is listed now (same bytes, a new etag)."""
        deps = self.raw.get("deps") or []
        deps = [{**first_entry(deps), **obj.dep_info}, *deps[1:]]
        return ImportStage.from_dict({**self.raw, "deps": deps})

    def with_out(self, name: str) -> ImportStage:
        """This stage with its output renamed (the data moved beside a new stage file)."""
        outs = [{**first_entry(self.raw.get("outs")), "path": name}]
        return ImportStage.from_dict({**self.raw, "outs": outs})


class _Unusual(Exception):
    """A value :func:`_block` does not write itself; PyYAML writes the whole stage."""


def _block(mapping: dict[str, Any], pad: str) -> Iterator[str]:
    """PyYAML's block style for the shapes stages have: mappings, lists of mappings, scalars.

    A dump through the emitter costs more than the rest of placing a small file;
    anything else (empty or nested lists, floats, quoted or long strings) is
    :class:`_Unusual`, and ``tests/test_stages.py`` compares both ways.
    """
    for key, value in mapping.items():
        if isinstance(value, dict) and value:
            yield f"{pad}{_scalar(key)}:\n"
            yield from _block(value, pad + "  ")
        elif isinstance(value, list) and value:
            yield f"{pad}{_scalar(key)}:\n"
            for entry in value:
                if not isinstance(entry, dict) or not entry:
                    raise _Unusual
                lines = "".join(_block(entry, pad + "  "))
                yield f"{pad}- {lines[len(pad) + 2 :]}"
        else:
            yield f"{pad}{_scalar(key)}: {_scalar(value)}\n"


def _scalar(value: Any) -> str:
    if value is True or value is False:
        return "true" if value else "false"
    if type(value) is int:
        return str(value)
    if value is None:
        return "null"
    if type(value) is str:
        return _string(value)
    raise _Unusual


@functools.lru_cache(maxsize=4096)  # keys and common values repeat in every stage
def _string(value: str) -> str:
    if not value or _PLAIN.fullmatch(value):
        tag = _RESOLVER.resolve(yaml.ScalarNode, value, (True, False))  # type: ignore[no-untyped-call]
        plain = ": " not in value and tag == _STR_TAG
        # Quoted where it would read back as another type (a generation: '1700000000000001').
        return value if plain else f"'{value}'"
    raise _Unusual


def first_entry(value: Any) -> dict[str, Any]:
    """The first mapping of a stage's ``deps`` or ``outs`` list ({} when there is none)."""
    item = value[0] if isinstance(value, list) and value else {}
    return item if isinstance(item, dict) else {}


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def file_stage(
    resource: Resource,
    file: str,
    local: str,
    obj: RemoteObject,
    md5: str | None,
    pinned: bool,
    frozen: bool = True,
    size: int | None = None,
    remote: str | None = None,
) -> ImportStage:
    """An import stage for one object, as ``dvc import-url`` writes it.

    Without ``md5`` the out has no checksum yet, as with ``dvc import-url --no-download``.
    ``frozen``: False keeps a user's ``dvc unfreeze`` of the stage this one replaces.
    ``size`` is what was written (decoded, for a gzip-encoded object); the dependency
    keeps the stored size. ``remote``: the DVC remote the data was archived into
    (``dvc import-url --to-remote``'s shape, unpinned, naming the remote).
    """
    outs: dict[str, Any] = {"md5": md5, "size": size or obj.size} if md5 else {}
    out: dict[str, Any] = {**outs, "hash": "md5", "path": relative_out(local)}
    if remote is not None:
        out["remote"] = remote
    dep = {**obj.dep_info, "hash": "md5", "path": resource.source(file)}
    if not pinned or remote is not None:  # as conform shapes it
        dep.pop("version_id", None)
    # Built in conform's shape at once: a cold sync writes one per file.
    return ImportStage.from_dict(_shaped({}, resource, file, frozen, [dep], [("outs", [out])]))


def conform(
    stage: ImportStage,
    resource: Resource,
    file: str | None,
    pinned: bool,
    obj: RemoteObject | None = None,
    committed: ImportStage | None = None,
    objects: Mapping[str, RemoteObject] | None = None,
) -> ImportStage:
    """``stage`` with the entry's description and identity and this pinning; md5 recomputed.

    ``frozen`` is kept as the stage has it (a new stage is frozen, so no DVC
    command but ``dvc update`` follows upstream; a user's ``dvc unfreeze`` stays).
    Pinned: the object's generation as ``version_id`` (exactly what
    ``dvc import-url`` writes; ``dvc pull`` fetches from the bucket, ``dvc push``
    skips it). Unpinned: no ``version_id``, so ``dvc push``/``dvc pull`` go
    through the DVC remote. ``obj`` (the object as listed now) supplies a
    missing generation when it is still the recorded object. A folder import
    (``file`` None) takes the shape of :func:`folder_dep`; ``objects`` (its
    prefix as listed now) supply the generations when they are still the
    recorded objects. An archived stage (its output names a DVC
    remote) is never pinned: DVC fetches a pinned import from its source, which
    may be gone, not from the remote. ``committed``: see :func:`recommitted`.
    """
    pinned = pinned and stage.remote is None
    deps = [dict(d) for d in recommitted(stage, committed, obj).raw.get("deps") or [{}]]
    first = deps[0]
    outs = stage.raw.get("outs")
    if file is None:
        first = _folder_pinning(first, pinned, objects)
        outs = _folder_outs(outs, "files" in first)
    elif not pinned:
        first.pop("version_id", None)
    elif obj is not None and obj.etag == first.get("etag") and obj.generation:
        first["version_id"] = obj.generation
        first = _dep_ordered(first)
    deps[0] = first
    skip = ("desc", "md5", "frozen", "deps", "meta")
    rest = [(k, outs if k == "outs" else v) for k, v in stage.raw.items() if k not in skip]
    if outs is not None and "outs" not in stage.raw:
        rest.append(("outs", outs))
    new = _shaped(stage.raw.get("meta") or {}, resource, file, stage.frozen, deps, rest)
    # Most stages a sync looks at already conform: no second parse for them.
    return stage if new == stage.raw else ImportStage.from_dict(new)


def _shaped(
    meta: dict[str, Any],
    resource: Resource,
    file: str | None,
    frozen: bool,
    deps: list[dict[str, Any]],
    rest: Iterable[tuple[str, Any]],
) -> dict[str, Any]:
    """A stage mapping as gcsdvc writes it: the entry's description, the checksum, ``frozen``
    (only when true), ``deps``, the other fields (``rest``), then ``meta`` with the identity."""
    new: dict[str, Any] = {"desc": resource.description} if resource.description else {}
    new["md5"] = ""
    if frozen:
        new["frozen"] = True
    new["deps"] = deps
    new.update(rest)
    new["meta"] = {**meta, META_KEY: Identity.of(resource, file).as_dict()}
    new["md5"] = stage_md5(new)
    return new


def folder_dep(
    source: str, records: Mapping[str, Mapping[str, Any]], pinned: bool, oid: str | None = None
) -> dict[str, Any]:
    """A folder import's dependency as ``dvc import-url`` of the prefix writes it.

    ``records``: DVC's record of each object (etag, size, version_id), by path
    below the prefix. Pinned: ``dvc import-url --version-aware``'s shape, every
    object's record (generation included) under ``files``: DVC counts the import
    as versioned, so ``dvc status`` checks it instead of warning that it is
    frozen, ``dvc pull`` fetches those generations from the bucket and
    ``dvc push`` skips it (see :func:`_folder_outs`). Unpinned: the ``.dir`` of
    the objects' etags (``oid``, computed when not given), total size and count.
    """
    if pinned:
        files = [{"relpath": rel, **records[rel]} for rel in sorted(records)]
        return {"hash": "md5", "path": source, "fs_config": {"version_aware": True}, "files": files}
    if oid is None:
        oid = str(dvc_tree("etag", {rel: r.get("etag") for rel, r in records.items()}).oid)
    size = sum(r.get("size") or 0 for r in records.values())
    return {"md5": oid, "size": size, "nfiles": len(records), "hash": "md5", "path": source}


def folder_sources(dep: Mapping[str, Any]) -> str | None:
    """The ``.dir`` name of the objects' etags a folder import records, in either shape."""
    files = dep.get("files")
    if not isinstance(files, list):
        md5 = dep.get("md5")
        return None if md5 is None else str(md5)
    etags = {str(f.get("relpath")): f.get("etag") for f in files if isinstance(f, dict)}
    return str(dvc_tree("etag", etags).oid)


def _folder_pinning(
    dep: dict[str, Any], pinned: bool, objects: Mapping[str, RemoteObject] | None
) -> dict[str, Any]:
    """A folder import's dependency in the shape of ``pinned`` (see :func:`folder_dep`).

    Unpinned, the records at hand make the ``.dir`` of etags. Pinned, the
    generations come from ``objects``, and only while they are the recorded ones
    (else the dependency is left as it is, for a sync that lists the prefix).
    """
    files = dep.get("files")
    path = str(dep.get("path", ""))
    if not pinned and isinstance(files, list):
        records = {
            str(f["relpath"]): {k: v for k, v in f.items() if k != "relpath"}
            for f in files
            if isinstance(f, dict) and "relpath" in f
        }
        return folder_dep(path, records, pinned=False)
    if pinned and files is None and objects:
        oid = str(etag_tree(objects).oid)
        if oid == dep.get("md5"):
            return folder_dep(path, {rel: obj.dep_info for rel, obj in objects.items()}, True)
    return dep


def _folder_outs(outs: Any, versioned: bool) -> Any:
    """A folder import's ``outs`` with ``push: false`` exactly when its dependency is versioned,
    as ``dvc import-url`` writes it (DVC never pushes what it fetches by generation)."""
    out = first_entry(outs)
    if not out or ("push" in out) == versioned:
        return outs
    out = {k: v for k, v in out.items() if k != "push"}
    if versioned:
        out["push"] = False
    return [out, *outs[1:]]


def recommitted(
    stage: ImportStage, committed: ImportStage | None, obj: RemoteObject | None = None
) -> ImportStage:
    """``stage`` with the dependency record of ``committed`` (git's HEAD) while the data is HEAD's.

    ``dvc commit -f``, ``dvc exp run`` and ``dvc repro -f`` re-record the
    dependency from upstream (newest etag and generation) while the data stays:
    a pull would then fetch other bytes and a push skip them. While the outs
    and the source equal the committed ones, the committed etag, size and
    generation come back; after ``dvc update`` (new outs) the new record stays,
    and so does a record of ``obj`` (the object as listed) when it holds the
    very bytes of the outs (an object uploaded again: a sync records its etag).
    """
    if committed is None or (obj is not None and _records_bytes(stage, obj)):
        return stage
    old, now = first_entry(committed.raw.get("deps")), first_entry(stage.raw.get("deps"))
    same_out = first_entry(committed.raw.get("outs")) == first_entry(stage.raw.get("outs"))
    if not same_out or old.get("path") != now.get("path"):
        return stage
    first = {k: v for k, v in now.items() if k not in _RECORD} | {
        k: old[k] for k in _RECORD if k in old
    }
    deps = [_dep_ordered(first), *(stage.raw.get("deps") or [])[1:]]
    return ImportStage.from_dict({**stage.raw, "deps": deps})


def _records_bytes(stage: ImportStage, obj: RemoteObject) -> bool:
    """Whether ``stage`` records ``obj`` and ``obj`` holds the bytes of the stage's data."""
    etag = first_entry(stage.raw.get("deps")).get("etag")
    return etag == obj.etag and obj.holds(stage.md5)


def _dep_ordered(dep: dict[str, Any]) -> dict[str, Any]:
    return {k: dep[k] for k in _DEP_ORDER if k in dep} | dep


def stage_md5(stage: dict[str, Any]) -> str:
    """The stage checksum exactly as ``dvc.stage.utils.compute_md5`` computes it."""
    body = {k: v for k, v in stage.items() if k not in ("md5", "meta", "desc")}
    if body.get("wdir") == ".":
        del body["wdir"]
    text = json.dumps(_strip(body), sort_keys=True)
    return hashlib.md5(text.encode("utf-8")).hexdigest()  # noqa: S324 - DVC's own checksum


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in _MD5_EXCLUDED}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def read_stage(path: Path) -> dict[str, Any] | None:
    """The parsed stage mapping at ``path``, or None when there is no file.

    An empty file counts as none: what a sync killed while creating a stage leaves
    (:meth:`ImportStage.write`); the next sync writes the stage again.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise DvcRepoError(f"cannot read stage {path}: {exc}") from None
    if not text:
        return None
    return parse_stage(text, str(path))


def parse_stage(text: str, where: str) -> dict[str, Any]:
    if "\n<<<<<<< " in f"\n{text}":
        raise DvcRepoError(f"{where}: has unresolved merge-conflict markers")
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        cause = " ".join(str(exc).split())
        raise DvcRepoError(f"{where}: not a valid DVC stage file: {cause}") from None
    if not isinstance(data, dict):
        raise DvcRepoError(f"{where}: not a valid DVC stage file")
    return data


@contextlib.contextmanager
def open_repo(root: Path) -> Iterator[Repo]:
    """The DVC repository at ``root``, opened without taking its lock."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    if not (root / ".dvc").is_dir():
        raise NotARepoError(f"{root} is not a DVC repository; run 'dvc init' there first")
    try:
        repo = Repo(str(root))
    except DvcException as exc:
        raise DvcRepoError(f"cannot open the DVC repository at {root}: {exc}") from None
    collector.resume()  # DVC's commands and the downloads make reference cycles per file
    try:
        yield repo
    finally:
        repo.close()


def verified(
    sig: list[int], stage_sig: list[int] | None, hashed: Any, parsed: Any
) -> dict[str, Any] | None:
    """The stage's mapping when a data file and its stage are as they were verified, else None.

    ``sig`` and ``stage_sig``: the file's and its stage's :func:`file_signature` now;
    ``hashed``: the file's hash cache entry, [signature, md5]; ``parsed``: the stage's
    stage cache entry, [signature, mapping]. Both must hold under the very stats found
    now, and the md5 hashed must be the one the stage records: the file is then the
    stage's bytes (the rule of the no-op snapshot and of the API's quick path).
    """
    if not (isinstance(hashed, list) and isinstance(parsed, list)):
        return None
    if len(hashed) != 2 or len(parsed) != 2 or not isinstance(parsed[1], dict):
        return None
    if sig != hashed[0] or stage_sig is None or stage_sig != parsed[0]:
        return None
    raw: dict[str, Any] = parsed[1]
    md5 = first_entry(raw.get("outs")).get("md5")
    return raw if md5 and md5 == hashed[1] else None


def vouched(sig: list[int], stage_sig: list[int], hashed: Any, indexed: Any) -> str | None:
    """The source a data file is the synced copy of, when file and stage are as verified.

    The rule of :func:`verified`, read from the stage index (see :meth:`StageCache.save`):
    ``hashed`` is the file's hash cache entry, [signature, md5]; ``indexed`` the stage's
    index entry, [signature, out md5, source].
    """
    if not (isinstance(hashed, list) and isinstance(indexed, list)):
        return None
    if len(hashed) != 2 or len(indexed) != 3 or sig != hashed[0] or stage_sig != indexed[0]:
        return None
    md5, source = indexed[1], indexed[2]
    return source if md5 and md5 == hashed[1] and isinstance(source, str) else None


class StageCache:
    """Parsed stages keyed by path and (mtime, size, inode), so a no-op run parses none.

    Kept in ``.dvc/tmp``; an entry is used only while the file's stat matches,
    so a stale or foreign cache can cost a re-parse, never a wrong answer.
    """

    def __init__(self, root: Path, keep: bool = False) -> None:
        """``keep``: save the old entries too (a sync adds the stages it writes)."""
        self.path = stage_cache_path(root)
        self.index_path = stage_index_path(root)
        self.old = read_json_cache(self.path)
        self.new: dict[str, Any] = dict(self.old) if keep else {}
        self.written: dict[str, str] = {}  # recorded entries, as JSON text
        self.indexed: dict[str, list[Any]] = {}  # recorded entries, as the index holds them

    def read(self, path: str | Path, key: str) -> ImportStage | None:
        st = os.stat(path)  # noqa: PTH116 - a str path: no PurePath parse per stage
        sig = file_signature(st)
        hit = self.old.get(key)
        if isinstance(hit, list) and len(hit) == 2 and hit[0] == sig and isinstance(hit[1], dict):
            raw: dict[str, Any] = hit[1]
        else:
            found = read_stage(Path(path))
            if found is None:
                return None
            raw = found
        self.new[key] = [sig, raw]
        return ImportStage.from_dict(raw)

    def record(self, key: str, stage: ImportStage, st: os.stat_result) -> None:
        """``stage`` was just written, ``st`` its file's stat: the next run need not parse it.

        Kept as JSON text: a sync of many files holds a short string per stage, not its mapping.
        """
        with contextlib.suppress(TypeError, ValueError):  # only an optimisation
            entry = [file_signature(st), stage.raw]
            self.written[key] = to_json(entry)
            self.indexed[key] = [entry[0], stage.md5, stage.source]
            self.new.pop(key, None)

    def entry(self, key: str) -> Any:
        """The [signature, mapping] kept for ``key`` (written in this run, or read), else None."""
        text = self.written.get(key)
        return json.loads(text) if text is not None else self.new.get(key)

    def save(self) -> list[int] | None:
        """Write the entries kept, and their index; the file's signature when it holds them
        all, else None.

        The index holds, per stage, what :func:`vouched` checks (its signature, its out's
        md5, its source): a fifth of the cache's size, so ``gcsdvc.path`` reads it in a
        fraction of the time the whole stages take.
        """
        if not self.path.parent.is_dir():
            return None
        with contextlib.suppress(OSError, TypeError, ValueError):  # only an optimisation
            changed = self.new != self.old or self.written
            if changed:
                kept = {k: v for k, v in self.new.items() if k not in self.written}
                parts = [json.dumps(kept, ensure_ascii=False)[1:-1]] if kept else []
                parts += [
                    f"{json.dumps(k, ensure_ascii=False)}: {v}" for k, v in self.written.items()
                ]
                atomic_write(self.path, "{" + ", ".join(parts) + "}")
            if changed or (self.new and not self.index_path.exists()):
                index = {k: _index_entry(v) for k, v in self.new.items() if k not in self.written}
                index.update(self.indexed)
                atomic_write(self.index_path, json.dumps(index, ensure_ascii=False))
            return file_signature(self.path.stat())
        return None


def _index_entry(entry: Any) -> list[Any] | None:
    """A stage cache entry, [signature, mapping], as the index holds it."""
    if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], dict)):
        return None
    raw: dict[str, Any] = entry[1]
    md5 = first_entry(raw.get("outs")).get("md5")
    return [entry[0], md5, first_entry(raw.get("deps")).get("path")]


def cached_stages(
    root: Path, locals_: Iterable[str], signature: list[int]
) -> dict[str, ImportStage]:
    """The stages of ``locals_`` as the stage cache holds them: no stage file read or stat'ed.

    Only for stages a snapshot proved unchanged since the cache file had ``signature``
    (see :mod:`gcsdvc.snapshot`); empty when the file changed since or lacks one of them.
    """
    path = stage_cache_path(root)
    with contextlib.suppress(OSError):
        if file_signature(path.stat()) == signature:
            cache = read_json_cache(path)
            found = {}
            for local in locals_:
                hit = cache.get(local)
                if not (isinstance(hit, list) and len(hit) == 2 and isinstance(hit[1], dict)):
                    return {}
                found[local] = ImportStage.from_dict(hit[1])
            return found
    return {}


def scan(
    root: Path, folder: Path, owner: str | None = None
) -> tuple[dict[str, ImportStage], dict[str, ImportStage]]:
    """Stages below ``folder``: (those the manifest ``owner`` wrote, others), keyed by
    repo-relative data path. ``owner``: as :attr:`Identity.manifest` records it."""
    ours: dict[str, ImportStage] = {}
    foreign: dict[str, ImportStage] = {}
    cache = StageCache(root)
    skip = len(str(root)) + 1  # plain strings: pathlib costs more than the rest of a no-op
    for path in find_stages(folder):
        local = path[skip : -len(STAGE_SUFFIX)].replace(os.sep, "/")
        try:
            stage = cache.read(path, local)
        except DvcRepoError as exc:  # one bad stage file fails its own file, not the command
            stage = ImportStage.unreadable(str(exc).removeprefix(f"{path}: "))
        if stage is not None:
            mine = stage.identity is not None and stage.identity.manifest == owner
            (ours if mine else foreign)[local] = stage
    cache.save()
    return ours, foreign


def find_stages(folder: Path) -> Iterable[str]:
    """The path of every ``.dvc`` file below ``folder``."""
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        for name in filenames:
            if name.endswith(STAGE_SUFFIX):
                yield os.path.join(dirpath, name)  # noqa: PTH118 - see scan


def tracking_output(root: Path, data: Path) -> tuple[str, str] | None:
    """The DVC file (repo-relative) and the output in it that holds the folder ``data``, if any.

    A data folder inside an output that ``dvc add`` (or a pipeline) tracks is
    replaced whole by ``dvc checkout`` of that output, synced data and stages with
    it; DVC refuses such overlaps. Only the files that can hold one are read: the
    ``.dvc`` file beside ``data`` and beside each of its parent folders, and the
    ``dvc.yaml`` of each parent folder.
    """
    if not data.is_relative_to(root):
        return None
    folders = [data, *data.parents]
    outs: list[tuple[Path, Path, Any]] = []  # (DVC file, its working folder, an out's path)
    for folder in folders[: folders.index(root)]:  # root itself is never an output
        beside = folder.parent / (folder.name + STAGE_SUFFIX)
        raw = _yaml_or_none(beside) or {}
        wdir = folder.parent / str(raw.get("wdir") or ".")
        outs += [(beside, wdir, o.get("path")) for o in _list(raw.get("outs")) if _is_map(o)]
        pipeline = folder.parent / "dvc.yaml"
        found: Any = (_yaml_or_none(pipeline) or {}).get("stages")
        for stage in found.values() if isinstance(found, dict) else ():
            if _is_map(stage):
                wdir = folder.parent / str(stage.get("wdir") or ".")
                for out in _list(stage.get("outs")):
                    outs.append((pipeline, wdir, next(iter(out), None) if _is_map(out) else out))
    for dvcfile, wdir, out in outs:
        if not isinstance(out, str) or "${" in out:  # a templated path: DVC's to check
            continue
        where = Path(os.path.normpath(wdir / out))
        if where.is_relative_to(root) and data.is_relative_to(where):
            return dvcfile.relative_to(root).as_posix(), where.relative_to(root).as_posix()
    return None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _is_map(value: Any) -> bool:
    return isinstance(value, dict)


def _yaml_or_none(path: Path) -> dict[str, Any] | None:
    """The mapping in a DVC file, or None when there is none or it cannot be read."""
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None
