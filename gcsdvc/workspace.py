"""The workspace: what is at each destination, and placing files there as DVC's checkout would.

Reading: :func:`read_disks` stats destinations and hashes only files whose
size matches their stage (few bytes directly, many through DVC's state
database, keyed by inode, mtime and size, so unchanged files are not read again).

Writing: :class:`Workspace` moves verified downloads into the DVC cache,
links them out with DVC's cache type (reflink, hardlink, symlink, copy),
protects cache files, refuses to write through a symlink out of the repository,
records hashes in DVC's state db and batches ``.gitignore`` lines. It decides
nothing: :mod:`gcsdvc.sync` says what to place where.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import stat
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from gcsdvc import files, git, stages
from gcsdvc.download import Fetched
from gcsdvc.errors import DvcRepoError
from gcsdvc.hashes import file_md5, hash_file
from gcsdvc.model import ABSENT, Comparison, Disk, RemoteObject, State
from gcsdvc.stages import ImportStage, open_repo

if TYPE_CHECKING:
    from dvc.repo import Repo

WORK_DIR = ".dvc/tmp/gcsdvc"
# Where a DVC cache file that no longer holds its bytes is moved, kept for the user to look at.
CORRUPT_DIR = ".dvc/tmp/gcsdvc-corrupt"
# Below this many bytes hashing is cheaper than loading DVC to ask its state db.
DIRECT_HASH_BYTES = 64 << 20


class Reporter(Protocol):
    """Progress sink; the CLI draws a line on a terminal, the API passes none.

    ``how``: how one archived object reached the DVC remote (a :class:`gcsdvc.archive.Method`).
    """

    def start(self, files: int, nbytes: int, what: str = "downloading") -> None: ...

    def advance(self, files: int = 0, nbytes: int = 0, how: str = "") -> None: ...

    def finish(self) -> None: ...


class HashCache:
    """md5s of data files keyed by path and (mtime, size, inode), kept in ``.dvc/tmp``.

    Filled when a sync places a file or a file is hashed, so a no-op run reads no
    bytes; an entry counts only while the file's stat matches.
    """

    def __init__(self, root: Path) -> None:
        self.path = files.hash_cache_path(root)
        self.known = files.read_json_cache(self.path)
        self.changed = False

    def get(self, local: str, info: os.stat_result) -> str | None:
        hit = self.known.get(local)
        if isinstance(hit, list) and len(hit) == 2 and hit[0] == files.file_signature(info):
            return str(hit[1])
        return None

    def put(self, local: str, info: os.stat_result, md5: str) -> None:
        self.known[local] = [files.file_signature(info), md5]
        self.changed = True

    def save(self) -> None:
        if self.changed and self.path.parent.is_dir():
            with contextlib.suppress(OSError):  # only an optimisation
                files.atomic_write(self.path, json.dumps(self.known, ensure_ascii=False))


def read_disks(
    root: Path, targets: Sequence[tuple[str, ImportStage | None, bool]]
) -> dict[str, Disk]:
    """What is at each (local, stage, is_folder) destination, for :func:`gcsdvc.compare.compare`.

    A file is hashed only when its stage records an md5 and :class:`HashCache`
    does not know it unchanged. A file that is not the stage's bytes is looked up
    in the DVC cache: an earlier recorded version there is not a user's edit.
    """
    disks: dict[str, Disk] = {}
    sizes: dict[Path, int] = {}
    stats: dict[str, os.stat_result] = {}
    recorded: dict[str, str] = {}  # local: the md5 its stage records
    cache = HashCache(root)
    for local, stage, is_folder in targets:
        try:
            info = (root / local).stat()
        except (FileNotFoundError, NotADirectoryError):
            disks[local] = ABSENT
            continue
        disk = Disk.from_stat(info.st_mode, info.st_size)
        disks[local] = disk
        if stage is None or is_folder or stage.md5 is None or not disk.is_file:
            continue
        recorded[local] = stage.md5
        known = cache.get(local, info)
        if known is not None:
            disks[local] = replace(disk, md5=known)
        else:
            sizes[root / local] = info.st_size
            stats[local] = info
    md5s = local_md5s(root, sizes)
    for local, info in stats.items():
        md5 = md5s.get(root / local)
        disks[local] = replace(disks[local], md5=md5, unreadable=md5 is None)
        if md5 is not None:
            cache.put(local, info, md5)
    cache.save()
    other = {local: disks[local].md5 for local in recorded if disks[local].md5 != recorded[local]}
    for local in in_cache(root, {local: md5 for local, md5 in other.items() if md5}):
        disks[local] = replace(disks[local], cached=True)
    return disks


def in_cache(root: Path, files: dict[str, str]) -> set[str]:
    """Which files (local: the md5 of its bytes) the DVC cache holds a copy of, under that md5.

    DVC's cache is content-addressed: a cache file is trusted by its name here,
    as DVC does; it is verified when it is restored (:meth:`Workspace.restore`).
    """
    if not files:
        return set()
    try:
        with open_repo(root) as repo:
            odb = repo.cache.local
            return {local for local, md5 in files.items() if Path(odb.oid_to_path(md5)).is_file()}
    except DvcRepoError:  # no DVC repository: no cache either
        return set()


def read_folders(repo: Repo, root: Path, locals_: Iterable[str]) -> dict[str, Comparison]:
    """Whether each whole-prefix import's folder holds what its stage records, as DVC sees it.

    The one reading of a folder import's data, for the plan and for status alike:
    :attr:`State.OK`; :attr:`State.MISSING` when files were only deleted (the cache
    restores them and nothing of the user's is lost); :attr:`State.MODIFIED` when a
    file was edited or added, or DVC cannot read the stage. DVC hashes the folder
    (its state db answers for files it has seen unchanged).
    """
    from dvc.exceptions import DvcException

    found: dict[str, Comparison] = {}
    for local in locals_:
        try:
            stage = repo.stage.load_one(str(root / stages.stage_path(local)))
            out = stage.outs[0]
            if not out.exists:
                found[local] = Comparison(State.MISSING)
                continue
            if not out.hash_info:
                # --no-download, then `dvc pull`: no hash to compare with (as compare() has it).
                found[local] = Comparison(State.OK)
                continue
            now = _hashed(out)
        except DvcException as exc:
            found[local] = Comparison(State.MODIFIED, f"DVC cannot read the stage: {exc}")
            continue
        if now.hash_info == out.hash_info:
            found[local] = Comparison(State.OK)
        else:
            found[local] = _folder_change(_tree(out.cache, out.hash_info), now)
    return found


def _hashed(out: Any) -> Any:
    """The folder of a DVC output as DVC hashes it for ``dvc status`` (``Output.get_hash``
    builds it so, dvc 3.x), as a tree object, without DVC's progress bar."""
    _, _, now = out._build(
        out.cache,
        out.fs_path,
        out.fs,
        out.hash_name,
        ignore=out.dvcignore,
        dry_run=not out.use_cache,
        no_progress_bar=True,
    )
    return now


def _tree(odb: Any, hash_info: Any) -> Any:
    """The recorded folder's tree as DVC's cache holds it, else None."""
    from dvc_data.hashfile import load
    from dvc_objects.errors import ObjectFormatError

    try:
        return load(odb, hash_info)
    except (FileNotFoundError, ObjectFormatError):
        return None


def _folder_change(recorded: Any, now: Any) -> Comparison:
    """How a folder's files (``now``, a DVC tree) differ from the recorded tree."""
    from dvc_data.hashfile.tree import Tree

    if not isinstance(recorded, Tree) or not isinstance(now, Tree):
        return Comparison(State.MODIFIED, "its files differ from the stage's")
    was = {"/".join(key): oid for key, _, oid in recorded}
    got = {"/".join(key): oid for key, _, oid in now}
    deleted = sorted(was.keys() - got.keys())
    added = sorted(got.keys() - was.keys())
    edited = sorted(k for k in was.keys() & got.keys() if was[k] != got[k])

    def some(names: list[str]) -> str:
        more = f" and {len(names) - 3} more" if len(names) > 3 else ""
        return ", ".join(names[:3]) + more

    if not (added or edited):
        return Comparison(State.MISSING, f"not on disk: {some(deleted)}")
    parts = [f"edited: {some(edited)}"] if edited else []
    parts += [f"not recorded: {some(added)}"] if added else []
    parts += [f"not on disk: {some(deleted)}"] if deleted else []
    return Comparison(State.MODIFIED, "; ".join(parts))


def holding(root: Path, files: dict[str, tuple[Disk, RemoteObject]]) -> set[str]:
    """Which stage-less files (local: what is there, the object listed) hold the object's bytes.

    Such a file is what a sync cut short between placing it and writing its stage
    leaves: a sync records it rather than calling it a conflict. Only files of the
    object's size are hashed, all at once.
    """
    maybe = {
        local: obj
        for local, (disk, obj) in files.items()
        if disk.is_file and disk.size == obj.size and obj.md5 is not None and not obj.transcoded
    }
    md5s = local_md5s(root, {root / local: obj.size for local, obj in maybe.items()})
    return {local for local, obj in maybe.items() if obj.holds(md5s.get(root / local))}


def cache_linked(root: Path, files: dict[str, str]) -> dict[str, str]:
    """Which files (local: the md5 its stage records) are that md5's DVC cache file itself.

    Returns the link kind ("hardlink" or "symlink") by local path: an edit in place
    of such a file changed the cache's copy too. Only a symlink or a file with
    other links is looked up in the cache (DVC is asked where it is).
    """
    maybe: dict[str, tuple[str, str]] = {}
    for local, md5 in files.items():
        try:
            info = os.lstat(root / local)
        except OSError:
            continue
        if stat.S_ISLNK(info.st_mode):
            maybe[local] = (md5, "symlink")
        elif info.st_nlink > 1:
            maybe[local] = (md5, "hardlink")
    if not maybe:
        return {}
    linked: dict[str, str] = {}
    with open_repo(root) as repo:
        odb = repo.cache.local
        for local, (md5, kind) in maybe.items():
            with contextlib.suppress(OSError):
                if (root / local).samefile(odb.oid_to_path(md5)):
                    linked[local] = kind
    return linked


def local_md5s(root: Path, sizes: dict[Path, int]) -> dict[Path, str]:
    """The md5 of each file (an unreadable one is left out).

    Few bytes are hashed directly; otherwise DVC's state db answers for files it
    has seen unchanged, and the others are hashed and recorded there.
    """
    if not sizes:
        return {}
    if sum(sizes.values()) <= DIRECT_HASH_BYTES:
        return _hash_all(list(sizes))
    from dvc_data.hashfile.hash_info import HashInfo

    with open_repo(root) as repo:
        known: dict[Path, str] = {}
        for path, _, hash_info in repo.state.get_many([str(p) for p in sizes], repo.fs, {}):
            if hash_info is not None and hash_info.name == "md5":
                known[Path(path)] = hash_info.value
        hashed = _hash_all([p for p in sizes if p not in known])
        with contextlib.suppress(Exception):  # only an optimisation
            repo.state.save_many(
                ((str(p), HashInfo("md5", md5), None) for p, md5 in hashed.items()), repo.fs
            )
    return known | hashed


def _hash_all(paths: list[Path]) -> dict[Path, str]:
    def one(path: Path) -> str | None:
        try:
            return file_md5(path)
        except OSError:
            return None

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1, len(paths) or 1)) as pool:
        md5s = pool.map(one, paths)
    return {p: md5 for p, md5 in zip(paths, md5s, strict=True) if md5 is not None}


class Workspace:
    """Places files and stages in one DVC repository; use as a context manager.

    One thread at a time: :mod:`gcsdvc.transfer` places files from the download
    thread, while the other downloads go on.
    """

    def __init__(self, repo: Repo, root: Path, data: Path) -> None:
        self.repo = repo
        self.root = root
        self.data = data
        # Stage and .gitignore files written or removed, repo-relative POSIX paths (strings:
        # a sync of 100,000 files would hold as many Path objects).
        self.changed: set[str] = set()
        self.odb = repo.cache.local
        self.work = root / WORK_DIR
        self.ignore = git.IgnoreBatch()
        self.hashes = HashCache(root)
        # Stages written now are what the next run reads: it finds them parsed.
        self.stage_cache = stages.StageCache(root, keep=True)
        self.stages_saved: list[int] | None = None  # the stage cache file's signature, once saved
        self.link_type: str | None = None  # the first of DVC's cache types that worked
        self._guard = SymlinkGuard(root, Path(self.odb.path))
        self._folders: set[str] = set()  # cache folders made in this sync
        # Data folders (repo-relative) checked and made in this sync: whether this sync made
        # them (then nothing in them is the user's, and their files need not be looked at).
        self._made: dict[str, bool] = {}
        self._state: list[tuple[str, str, int, float, int]] = []  # for DVC's state db
        self._placed: list[str] = []  # each needs its .gitignore line
        self._protected: set[str] = set()  # files whose line was written before they were placed
        from dvc.scm import NoSCM

        # `dvc init --no-scm`: DVC writes no .gitignore, nor do we.
        self._git = not isinstance(repo.scm, NoSCM)
        self.ignore_errors: list[str] = []  # .gitignore files that could not be written
        self._names = itertools.count()  # of links made in the work folder, new each sync
        # md5s whose cache file this sync wrote or read back whole: linked without a second look.
        self._intact: set[str] = set()
        self.warnings: list[str] = []  # cache files found corrupt and moved aside

    def __enter__(self) -> Workspace:
        # Left-overs of an interrupted run; we hold the lock, so nobody else uses them.
        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir(parents=True)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            placed = set(self._placed)
            self.ignore.add(self.root, [p for p in self._placed if p not in self._protected])
            # A line written ahead for a file that was not placed and has no stage (its
            # download failed) goes: a new line belongs with a new file. A stage's line
            # stays whether its data is there or not, as DVC keeps it.
            for local in self._protected - placed:
                path = self.root / local
                if not (os.path.lexists(path) or os.path.lexists(f"{path}{stages.STAGE_SUFFIX}")):
                    self.ignore.drop(path)
            flushed = self.ignore.flush(
                self.data, self.root if self._git else None, self.ignore_errors.append
            )
            self.changed |= {path.relative_to(self.root).as_posix() for path in flushed}
            self.hashes.save()
            self.stages_saved = self.stage_cache.save()
            self._save_state()
        finally:
            shutil.rmtree(self.work, ignore_errors=True)

    def protect(self, locals_: Sequence[str]) -> dict[str, str]:
        """Write the ``.gitignore`` lines of files about to be placed, before any is placed.

        One atomic write per folder for the whole batch, so that git never sees a
        placed file without its line, whenever the sync stops. Also what repairs
        a line that went missing (``locals_`` may be there already). Returns, by
        folder (repo-relative), why a folder's lines could not be written: its
        files must not be placed.
        """
        if not self._git or not locals_:
            return {}
        names: dict[str, list[str]] = {}
        for local in locals_:
            folder, _, name = local.rpartition("/")
            names.setdefault(folder, []).append(name)
        ignored = git.ignored_by_git(self.root, list(locals_))  # DVC adds no line for these
        failed: dict[str, str] = {}
        for folder, found in names.items():
            path = self.root / folder
            try:
                self._make(folder)
                # Sorted: two people's syncs of the same files write the same file.
                added = sorted(n for n in found if f"{folder}/{n}" not in ignored)
                if git.update_gitignore(path, added):
                    self.changed.add(f"{folder}/.gitignore")
            except DvcRepoError as exc:
                failed[folder] = str(exc)
            except OSError as exc:
                failed[folder] = files.unwritable(f"{folder}/.gitignore", exc)
            else:
                self._protected.update(f"{folder}/{n}" for n in found)
        return failed

    def copies(self) -> bool:
        """Whether files are copied out of the cache: DVC's first cache type that works here.

        Found once per sync, on a file in the work folder: a large download then
        writes its copy as it streams, rather than copying the cached file after.
        """
        if self.link_type is None:
            probe, link = self.work / "probe", self.work / "probe-link"
            probe.write_bytes(b"\0")
            try:
                self.link_type = _link(probe, link, self.odb.cache_types)
            finally:
                link.unlink(missing_ok=True)
                probe.unlink()
        return self.link_type == "copy"

    def scratch(self, n: int) -> Path:
        """Where the ``n``-th download of this run goes before it is verified."""
        return self.work / f"{n}.part"

    def place(self, tmp: Path, local: str, got: Fetched) -> None:
        """Move a verified download into the cache and link it out to ``local``.

        A small object comes as bytes (``got.data``): they are written to ``tmp`` here.
        """
        if got.data is not None:
            files.write_new(tmp, got.data)
        self._checkout(self._cache(tmp, got.md5), local, got.md5, got.data, got.copy)

    def cache(self, tmp: Path, got: Fetched) -> None:
        """Move a verified download into the DVC cache only (a folder import's file).

        A small object comes as bytes (``got.data``): they are written to ``tmp`` here.
        """
        if got.data is not None:
            files.write_new(tmp, got.data)
        if got.copy is not None:
            got.copy.unlink()
        self._cache(tmp, got.md5)

    def cached(self, md5: str, then: str) -> bool:
        """Whether the DVC cache holds ``md5``'s bytes; a corrupt file there is set aside
        (``then``: what happens next, for the warning)."""
        path = Path(self.odb.oid_to_path(md5))
        if md5 in self._intact:
            return path.exists()
        try:
            return self._check(path, md5, then)
        except FileNotFoundError:
            return False

    def place_folder(self, local: str, files: Mapping[str, str]) -> None:
        """Lay out a folder import at ``local`` from the DVC cache, replacing what is there.

        ``files``: md5 by path below the folder, each in the cache. The folder is built
        in the work folder with DVC's link type, its ``.gitignore`` line written, then
        renamed into place: a failure on the way leaves the data folder as it was.
        """
        dest = self._folder(local, into_cache=False)
        built = self.work / f"folder-{next(self._names)}"
        built.mkdir()
        for rel, md5 in files.items():
            path = built / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            cached = Path(self.odb.oid_to_path(md5))
            self.link_type = _link(cached, path, self.odb.cache_types, self.link_type)
        failed = self.protect([local])
        if failed:
            raise DvcRepoError(f"{next(iter(failed.values()))}, so the folder is not placed")
        aside = self.work / f"aside-{next(self._names)}"
        if os.path.lexists(dest):
            os.replace(dest, aside)
        try:
            os.replace(built, dest)
        except OSError:
            if os.path.lexists(aside):
                os.replace(aside, dest)
            raise
        if aside.is_dir() and not aside.is_symlink():
            shutil.rmtree(aside)
        else:
            aside.unlink(missing_ok=True)
        for rel, md5 in files.items():
            path = dest / rel
            info = path.stat()
            self._state.append((str(path), md5, info.st_ino, info.st_mtime, info.st_size))
        self._placed.append(local)

    def adopt(self, local: str, obj: RemoteObject) -> Fetched:
        """Check a copy placed without us against ``obj`` and cache exactly the bytes checked.

        The copy stays where it is (``dvc pull`` put it there with DVC's link type).
        """
        if obj.transcoded:
            raise DvcRepoError(
                f"{local}: a decoded copy of a gzip-encoded object cannot be checked "
                "against the bucket; remove it and run gcsdvc sync again"
            )
        path = self.root / local
        tmp = self.work / f"adopt-{next(self._names)}"
        md5, verified = hash_file(path, obj, copy_to=tmp)  # one read: hash, check and copy
        if not verified:
            tmp.unlink()
            raise DvcRepoError(
                f"{local} is not the recorded object {obj.url}; move it away and sync again"
            )
        got = Fetched(md5, tmp.stat().st_size)
        self._cache(tmp, md5)
        self._remember(local, md5)
        return got

    def save(self, local: str) -> list[tuple[str, str]]:
        """Copy the regular files at ``local`` (a file or a folder) into the DVC cache.

        What ``--force`` replaces is kept this way: ``dvc`` can bring it back by md5.
        Returns (path, md5) of each file saved, repo-relative.
        """
        path = self.root / local
        files = [path] if not path.is_dir() else sorted(p for p in path.rglob("*") if p.is_file())
        saved = []
        for file in files:
            if file.is_symlink() or not file.is_file():
                continue  # a link into the cache: its bytes are there already
            tmp = self.work / f"save-{next(self._names)}"
            md5, _ = hash_file(file, copy_to=tmp)
            self._cache(tmp, md5)
            saved.append((file.relative_to(self.root).as_posix(), md5))
        return saved

    def _cache(self, tmp: Path, md5: str) -> str:
        """Move a verified file into the DVC cache (or drop it when the cache has it intact).

        A cache file not read back in this sync is hashed first: one changed in
        place (through a hardlink or symlink) is moved aside and replaced.
        """
        cached: str = self.odb.oid_to_path(md5)
        intact = md5 in self._intact
        # str paths, not Path: a cold sync caches one file per object, in the download thread.
        if os.path.exists(cached) and (  # noqa: PTH110
            intact or self._check(Path(cached), md5, "a verified download replaces it")
        ):
            tmp.unlink()  # two downloads of the same bytes: the first one is cached
        else:
            # DVC's own modes: 2775 folders with `cache.shared group`, read-only files.
            folder = os.path.dirname(cached)  # noqa: PTH120
            if folder not in self._folders:
                self.odb.makedirs(folder)
                self._folders.add(folder)
            os.replace(tmp, cached)
            self.odb.protect(cached)
        self._intact.add(md5)
        return cached

    def restore(self, local: str, md5: str) -> bool:
        """Put the cached copy of ``md5`` at ``local``; False when the cache lacks it.

        The cache file is checked against ``md5`` before it is linked or copied
        (one read; where DVC copies, the copy is written from the bytes hashed).
        A corrupt one is moved aside, and the cache counts as lacking it.
        """
        cached = Path(self.odb.oid_to_path(md5))
        copy = None
        if md5 not in self._intact:
            if self.copies():
                copy = self.work / f"link-{next(self._names)}"
            try:
                if not self._check(cached, md5, f"{local} is fetched again", copy):
                    return False
            except FileNotFoundError:
                return False
        elif not cached.exists():
            return False
        self._checkout(cached, local, md5, copy=copy)
        return True

    def _check(self, cached: Path, md5: str, then: str, copy: Path | None = None) -> bool:
        """Whether the cache file ``cached`` holds ``md5``'s bytes; a corrupt one is set aside
        (``then``: what happens next, for the warning). ``copy``: written from the bytes hashed."""
        got, _ = hash_file(cached, copy_to=copy)
        if got != md5:
            if copy is not None:
                copy.unlink()
            self._set_aside(cached, md5, got, then)
            return False
        self._intact.add(md5)
        return True

    def _set_aside(self, cached: Path, md5: str, got: str, then: str) -> None:
        """Move a cache file whose bytes are not ``md5`` out of the cache, and say so."""
        folder = self.root / CORRUPT_DIR
        folder.mkdir(parents=True, exist_ok=True)
        aside = next(
            path for n in itertools.count(1) if not (path := folder / f"{md5}.{n}").exists()
        )
        shown = self._shown(cached)
        try:
            shutil.move(cached, aside)  # a cache on another file system: copied, then removed
        except OSError as exc:
            raise DvcRepoError(
                f"DVC cache file {shown} does not hold its recorded bytes (md5 {got}) and "
                f"cannot be moved aside ({exc.strerror or exc}); delete it and sync again"
            ) from None
        self.warnings.append(
            f"DVC cache file {shown} did not hold its recorded bytes (md5 {got}; edited "
            f"through a hardlink or symlink?): moved to {self._shown(aside)}; {then}"
        )

    def _shown(self, path: Path) -> str:
        """``path`` relative to the repository when it is inside it."""
        inside = path.is_relative_to(self.root)
        return path.relative_to(self.root).as_posix() if inside else str(path)

    def write_stage(self, local: str, stage: ImportStage, ignore: bool = False) -> None:
        """Write the stage of ``local``; ``ignore`` also adds the data's .gitignore line.

        A crash leaves the old stage, none, an empty one (read as none) or the
        new one, never a part (see :meth:`ImportStage.write`); the file it left
        without a stage is recorded by the next sync.
        """
        name = stages.stage_path(local)
        path = self._folder(name, into_cache=False)
        self.stage_cache.record(local, stage, stage.write(path, make_parent=False))
        self.changed.add(name)
        if ignore:
            self._placed.append(local)

    def move(self, old: str, new: str, stage: ImportStage) -> None:
        """Move data from ``old`` to ``new`` and write its stage there; forget ``old``."""
        src, dest = self.root / old, self._folder(new, into_cache=False)
        os.replace(src, dest)
        self.write_stage(new, stage, ignore=True)
        self._forget(old)

    def remove(self, local: str) -> None:
        """Delete the data and the stage of ``local``."""
        path = self.root / local
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
        self._forget(local)

    def unstage(self, local: str) -> None:
        """Delete the stage of ``local`` only: the data and its .gitignore line stay."""
        (self.root / stages.stage_path(local)).unlink(missing_ok=True)
        self.changed.add(stages.stage_path(local))

    def remove_leftover(self, local: str) -> None:
        """Delete a data file no stage owns (its folder goes at the end if left empty)."""
        path = self.root / local
        path.unlink()
        self.ignore.drop(path)  # it has no line to drop: only its folder is looked at

    def _folder(self, local: str, into_cache: bool) -> Path:
        """Refuse a symlink out of the repository at ``local`` (repo-relative); make its
        folder; its path.

        The folder is resolved and made once per sync; the file itself is looked
        at unless this sync made the folder (``into_cache``: it may be a link into
        the DVC cache).
        """
        path = self.root / local
        if not self._make(local.rpartition("/")[0]):
            self._guard.file(path, into_cache)
        return path

    def _make(self, folder: str) -> bool:
        """Refuse a symlink out of the repository at ``folder`` (repo-relative) and make it,
        once per sync; whether this sync made it."""
        made = self._made.get(folder)
        if made is None:
            path = self.root / folder
            self._guard.folder(path)
            made = not path.is_dir()
            path.mkdir(parents=True, exist_ok=True)
            self._made[folder] = made
        return made

    def _checkout(
        self,
        cached: str | Path,
        local: str,
        md5: str,
        data: bytes | None = None,
        copy: Path | None = None,
    ) -> None:
        """Put the cached file at ``local`` with DVC's link type, replacing it atomically.

        ``data``: the cached file's bytes, at hand; a copy is written from them.
        ``copy``: a copy of the cached file already made, used where DVC would copy.
        """
        dest = self._folder(local, into_cache=True)
        tmp = self.work / f"link-{next(self._names)}"
        info = None  # the stat of the file written here, if one is
        if copy is not None and self.link_type == "copy":
            tmp = copy
        elif data is not None and self.link_type == "copy":
            info = files.write_new(tmp, data)
        else:
            if copy is not None:
                copy.unlink()
            self.link_type = _link(cached, tmp, self.odb.cache_types, self.link_type)
        os.replace(tmp, dest)
        self._remember(local, md5, info)
        self._placed.append(local)

    def _remember(self, local: str, md5: str, info: os.stat_result | None = None) -> None:
        """Record the hash of the file at ``local`` in our hash cache and for DVC's state db.

        ``info``: its stat when it was just written (a rename keeps what the stat keys by).
        """
        dest = self.root / local
        if info is None:
            info = dest.stat()
        # DVC's state db learns the hash at the end, in one transaction, keyed by this stat.
        self._state.append((str(dest), md5, info.st_ino, info.st_mtime, info.st_size))
        self.hashes.put(local, info, md5)

    def _save_state(self) -> None:
        """Tell DVC's state db the hashes, so ``dvc status`` need not read the files again."""
        if not self._state:
            return
        from dvc_data.hashfile.hash_info import HashInfo

        with contextlib.suppress(Exception):  # only an optimisation
            # The fields of ``fs.info`` DVC keys a hash by, from the stat taken when placing.
            self.repo.state.save_many(
                (
                    (path, HashInfo("md5", md5), {"ino": ino, "mtime": mtime, "size": size})
                    for path, md5, ino, mtime, size in self._state
                ),
                self.repo.fs,
            )
        self._state.clear()

    def _forget(self, local: str) -> None:
        """Remove a stage and its .gitignore line (empty folders go at the end)."""
        (self.root / stages.stage_path(local)).unlink(missing_ok=True)
        self.changed.add(stages.stage_path(local))
        self.ignore.drop(self.root / local)


def _link(src: str | Path, dest: Path, types: Sequence[str], known: str | None = None) -> str:
    """Link or copy ``src`` to ``dest``; the kind that worked.

    ``known`` (what worked for the previous file) is tried first, so a file
    system without reflinks is found out once per sync, not once per file;
    should it fail, every one of DVC's cache types is tried again, then a copy.
    """
    kinds = [*types, "copy"]
    failure: OSError | None = None
    for kind in dict.fromkeys([known, *kinds] if known else kinds):
        try:
            if kind == "reflink":
                from dvc_objects.fs.system import reflink

                reflink(str(src), str(dest))  # type: ignore[no-untyped-call]
            elif kind == "hardlink":
                os.link(src, dest)
            elif kind == "symlink":
                os.symlink(src, dest)
            else:
                shutil.copyfile(src, dest)
            return kind
        except OSError as exc:
            dest.unlink(missing_ok=True)
            failure = exc
    assert failure is not None
    raise failure  # the copy's error: it names the file and the cause (a full disk...)


class SymlinkGuard:
    """Refuses writes through symlinks that lead outside the repository.

    A destination may itself be a link into the DVC ``cache`` (``cache.type
    symlink``, a shared cache anywhere): it is replaced, never written through.
    """

    def __init__(self, root: Path, cache: Path | None = None) -> None:
        self.root = root
        self.real_root = root.resolve()
        self.inside = (self.real_root, cache.resolve()) if cache is not None else (self.real_root,)

    def check(self, path: Path) -> None:
        """Refuse ``path`` when it, or its folder, leads outside through a symlink."""
        self.folder(path.parent)
        self.file(path)

    def folder(self, folder: Path) -> None:
        real = folder.resolve()
        if not real.is_relative_to(self.real_root):
            raise DvcRepoError(
                f"{folder.relative_to(self.root)} leads outside the repository (to {real}) "
                "through a symlink; refusing to write there"
            )

    def file(self, path: Path, into_cache: bool = True) -> None:
        if not path.is_symlink():
            return
        real = path.resolve()
        inside = self.inside if into_cache else self.inside[:1]
        if not any(real.is_relative_to(p) for p in inside):
            raise DvcRepoError(
                f"{path.relative_to(self.root)} is a symlink to {real}, outside the "
                "repository; refusing to write through it"
            )


@contextlib.contextmanager
def locked_repo(root: Path) -> Iterator[Repo]:
    """The DVC repository at ``root`` under its lock; :class:`LockedError` when it is held."""
    from dvc.lock import LockError
    from dvc.repo import lock_repo

    from gcsdvc.errors import LockedError

    with open_repo(root) as repo:
        try:
            with lock_repo(repo):
                yield repo
        except LockError:
            raise LockedError(
                "another gcsdvc or dvc process is working in this repository "
                "(lock .dvc/tmp/lock is held); run again when it has finished"
            ) from None
