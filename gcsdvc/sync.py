"""Carry out a plan: download, verify, cache, place, then record.

Order per file, so that an interruption at any point leaves nothing recorded
that is not on disk and verified: download the listed generation to
``.dvc/tmp/gcsdvc``, checking the stored bytes against the object's md5 (or
crc32c) as they stream -> move into the DVC cache -> link or copy into the data
folder with an atomic rename -> write the stage. A restore fetches the recorded
generation and checks the recorded md5 too.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from gcsdvc import stages
from gcsdvc.errors import DvcRepoError, GcsdvcError, LockedError, StorageError
from gcsdvc.manifest import Manifest
from gcsdvc.plan import Action, Item, Plan, build_plan, conformed, identity_of, relative_out
from gcsdvc.storage import Fetched, RemoteObject, Storage, describe, hash_file

if TYPE_CHECKING:
    from dvc.repo import Repo

WORK_DIR = ".dvc/tmp/gcsdvc"


class Reporter(Protocol):
    """Progress sink; the CLI draws a line on a terminal, the API passes none."""

    def start(self, files: int, nbytes: int) -> None: ...

    def advance(self, files: int = 0, nbytes: int = 0) -> None: ...

    def finish(self) -> None: ...


@dataclass
class Failure:
    name: str
    source: str
    message: str


@dataclass
class SyncResult:
    plan: Plan
    done: Counter[Action] = field(default_factory=Counter)
    failures: list[Failure] = field(default_factory=list)
    retries: int = 0

    @property
    def ok(self) -> bool:
        return not self.failures


def sync(
    manifest: Manifest,
    names: Sequence[str] = (),
    *,
    dry_run: bool = False,
    prune: bool = False,
    download: bool = True,
    jobs: int = 16,
    reporter: Reporter | None = None,
) -> SyncResult:
    """Bring the selected experiments (all when ``names`` is empty) in line with the manifest."""
    selected = manifest.select(names)
    storage = Storage(jobs)
    plan = build_plan(manifest, selected, storage, prune, names)
    if dry_run or not plan.has_work:
        return _result(plan, storage)
    with _locked_repo(manifest.root) as repo:
        # Another process may have synced while we waited for the lock.
        plan = build_plan(manifest, selected, storage, prune, names)
        result = _result(plan, storage)
        _Executor(repo, manifest, storage, result, download, reporter).run()
    result.retries = storage.retries.retries
    return result


def _result(plan: Plan, storage: Storage) -> SyncResult:
    result = SyncResult(plan, retries=storage.retries.retries)
    # One line per entry for a failure that hit many of its files (a listing that failed).
    groups: dict[tuple[str, str], list[Item]] = {}
    for item in plan.of(Action.FAILED):
        groups.setdefault((item.name, item.note), []).append(item)
    for (name, note), items in groups.items():
        if len(items) == 1 or items[0].resource is None:
            result.failures += [Failure(name, item.source, note) for item in items]
        else:
            source = items[0].resource.url
            result.failures.append(Failure(name, source, f"{note} ({len(items)} files)"))
    return result


@contextlib.contextmanager
def _locked_repo(root: Path) -> Iterator[Repo]:
    from dvc.lock import LockError
    from dvc.repo import lock_repo

    with stages.open_repo(root) as repo:
        try:
            with lock_repo(repo):
                yield repo
        except LockError:
            raise LockedError(
                "another gcsdvc or dvc process is working in this repository "
                "(lock .dvc/tmp/lock is held); run again when it has finished"
            ) from None


class _Executor:
    def __init__(
        self,
        repo: Repo,
        manifest: Manifest,
        storage: Storage,
        result: SyncResult,
        download: bool,
        reporter: Reporter | None,
    ) -> None:
        self.repo = repo
        self.manifest = manifest
        self.root = manifest.root
        self.storage = storage
        self.result = result
        self.download = download
        self.reporter = reporter
        self.odb = repo.cache.local
        self.work = self.root / WORK_DIR
        self.ignore_add: dict[Path, list[str]] = {}
        self.ignore_drop: dict[Path, list[str]] = {}

    def run(self) -> None:
        # Left-overs of an interrupted run; we hold the lock, so nobody else uses them.
        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir(parents=True)
        try:
            plan = self.result.plan
            for item in plan.of(Action.MOVE):
                self._guard(item, self._move)
            for item in plan.of(Action.PRUNE):
                self._guard(item, self._prune)
            for item in plan.of(Action.METADATA):
                adopt = item.file is not None and not stages.out(item.stage or {}).get("md5")
                self._guard(item, self._adopt if adopt else self._annotate)
            files = [
                i for i in plan.of(Action.ADD, Action.UPDATE, Action.RESTORE) if i.file is not None
            ]
            folders = [i for i in plan.items if i.file is None and i.resource is not None]
            self._transfer_files(files)
            for item in folders:
                if item.action in (Action.ADD, Action.UPDATE, Action.RESTORE):
                    self._guard(item, self._import_folder)
        finally:
            self._flush_gitignore()
            shutil.rmtree(self.work, ignore_errors=True)

    def _guard(self, item: Item, step: Any) -> None:
        try:
            step(item)
        except (GcsdvcError, OSError) as exc:
            self._fail(item, describe(exc))
        else:
            self.result.done[item.action] += 1

    def _fail(self, item: Item, message: str) -> None:
        self.result.failures.append(Failure(item.name, item.source, message))

    def _abs(self, local: str) -> Path:
        return self.root / local

    # -- files -------------------------------------------------------------

    def _transfer_files(self, items: list[Item]) -> None:
        fetch: list[Item] = []
        for item in items:
            if item.action is Action.RESTORE and self._restore_from_cache(item):
                self.result.done[item.action] += 1
                continue
            if item.action is Action.RESTORE:
                if not self.download:
                    continue
                try:
                    item.obj = self._recorded_object(item)
                except GcsdvcError as exc:
                    self._fail(item, describe(exc))
                    continue
            if item.obj is None:
                self._fail(item, f"object not found: {item.source}")
                continue
            if not self.download:
                self._guard(item, self._record_without_data)
                continue
            fetch.append(item)
        if not fetch:
            return
        pairs: list[tuple[RemoteObject, Path]] = []
        for n, item in enumerate(fetch):
            assert item.obj is not None
            pairs.append((item.obj, self.work / f"{n}.part"))
        if self.reporter:
            self.reporter.start(len(pairs), sum(obj.size for obj, _ in pairs))
        reporter = self.reporter
        on_bytes = (lambda n: reporter.advance(nbytes=n)) if reporter else None
        try:
            for index, outcome in self.storage.download(pairs, on_bytes):
                item, (obj, tmp) = fetch[index], pairs[index]
                recorded = stages.out(item.stage or {}).get("md5")
                if isinstance(outcome, Exception):
                    self._fail(item, describe(outcome))
                elif item.action is Action.RESTORE and recorded and outcome.md5 != recorded:
                    tmp.unlink(missing_ok=True)
                    self._fail(
                        item, f"{obj.url}: the bytes are not the recorded ones (md5 differs)"
                    )
                else:
                    self._guard(item, lambda it, t=tmp, o=obj, m=outcome: self._place(it, t, o, m))
                if self.reporter:
                    self.reporter.advance(files=1)
        finally:
            if self.reporter:
                self.reporter.finish()

    def _place(self, item: Item, tmp: Path, obj: RemoteObject, got: Fetched) -> None:
        cached = self._cache(tmp, got.md5)
        self._checkout(cached, item.local, got.md5)
        self._write_file_stage(item, obj, got)

    def _cache(self, tmp: Path, md5: str) -> Path:
        """Move a verified file into the DVC cache (or drop it when the cache has it)."""
        cached = Path(self.odb.oid_to_path(md5))
        if cached.exists():
            tmp.unlink()
        else:
            cached.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, cached)
            _protect(cached)
        return cached

    def _recorded_object(self, item: Item) -> RemoteObject:
        """The object a stage records, to restore: listed now, else its recorded generation.

        Raises when the recorded bytes are nowhere to be had, naming the fix.
        """
        from gcsdvc.plan import Change, object_change, recorded_generation

        stage = item.stage or {}
        obj = item.obj
        if obj is not None and object_change(obj, stage) is not Change.CONTENT:
            return obj
        generation = recorded_generation(stage)
        assert item.resource is not None and item.file is not None
        if generation:
            bucket, name = item.resource.bucket, f"{item.resource.prefix}/{item.file}".lstrip("/")
            older = self.storage.stat_generation(bucket, name, generation)
            if older is not None:
                return older
        what = f"generation {generation}" if generation else "version"
        gone = f"the recorded {what} of {item.source} is gone from the bucket"
        if not stages.out(stage).get("md5"):
            gone += " (it was recorded with --no-download)"
        if not self.result.plan.pinned:
            raise StorageError(
                f"{gone} and not in the DVC cache; 'dvc pull' it from your DVC remote"
            )
        raise StorageError(
            f"{gone} and not in the DVC cache; take the current object with "
            f"'dvc update {stages.stage_path(item.local)}' or skip_if_exist: false"
        )

    def _adopt(self, item: Item) -> None:
        """Record a copy placed without us (``dvc pull`` of a --no-download stage), once checked."""
        assert item.stage is not None
        obj = self._recorded_object(item)
        if obj.transcoded:
            raise DvcRepoError(
                f"{item.local}: a decoded copy of a gzip-encoded object cannot be checked "
                "against the bucket; remove it and run gcsdvc sync again"
            )
        path = self._abs(item.local)
        tmp = self.work / f"adopt-{uuid.uuid4().hex}"
        md5, verified = hash_file(path, obj, copy_to=tmp)  # cache exactly the bytes checked
        if not verified:
            tmp.unlink()
            raise DvcRepoError(
                f"{item.local} is not the recorded object {obj.url}; move it away and sync again"
            )
        got = Fetched(md5, tmp.stat().st_size)
        self._cache(tmp, md5)
        self._remember_hash(path, md5)
        self._write_file_stage(item, obj, got)

    def _restore_from_cache(self, item: Item) -> bool:
        md5 = stages.out(item.stage or {}).get("md5")
        if not md5 or stages.dep(item.stage or {}).get("path") != item.source:
            return False
        cached = Path(self.odb.oid_to_path(md5))
        if not cached.exists():
            return False
        self._checkout(cached, item.local, md5)
        return True

    def _checkout(self, cached: Path, local: str, md5: str) -> None:
        """Put the cached file at ``local`` with DVC's link type, replacing it atomically."""
        dest = self._abs(local)
        _refuse_symlinks(self.root, dest)
        tmp = self.work / f"link-{uuid.uuid4().hex}"
        _link(cached, tmp, self.odb.cache_types)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, dest)
        self._remember_hash(dest, md5)
        self.ignore_add.setdefault(dest.parent, []).append(dest.name)

    def _remember_hash(self, path: Path, md5: str) -> None:
        """Tell DVC's state db the hash, so ``dvc status`` need not read the file again."""
        from dvc_data.hashfile.hash_info import HashInfo

        with contextlib.suppress(Exception):  # only an optimisation
            self.repo.state.save(str(path), self.repo.fs, HashInfo("md5", md5))

    def _write_file_stage(self, item: Item, obj: RemoteObject, got: Fetched | None) -> None:
        res = item.resource
        assert res is not None and item.file is not None
        stage = stages.file_stage(
            source=item.source,
            out=relative_out(item.local),
            md5=got.md5 if got else None,
            size=got.size if got else obj.size,
            dep_info=obj.dep_info,
            desc=res.description,
            identity=identity_of(res, item.file),
            pinned=self.result.plan.pinned,
        )
        self._write(item.local, stage)

    def _record_without_data(self, item: Item) -> None:
        assert item.obj is not None
        self._write_file_stage(item, item.obj, None)
        self.ignore_add.setdefault(self._abs(item.local).parent, []).append(
            relative_out(item.local)
        )

    def _write(self, local: str, stage: stages.Stage) -> None:
        path = self._abs(stages.stage_path(local))
        _refuse_symlinks(self.root, path)
        stages.write_stage(path, stage)

    # -- metadata, moves, prunes ------------------------------------------

    def _annotate(self, item: Item) -> None:
        self._write(item.local, conformed(item, self.result.plan.pinned))

    def _move(self, item: Item) -> None:
        assert item.old_local is not None and item.stage is not None
        old, new = self._abs(item.old_local), self._abs(item.local)
        _refuse_symlinks(self.root, new)
        new.parent.mkdir(parents=True, exist_ok=True)
        os.replace(old, new)
        item.stage = {**item.stage, "outs": [{**stages.out(item.stage), "path": new.name}]}
        self._annotate(item)
        self.ignore_add.setdefault(new.parent, []).append(new.name)
        self._forget(item.old_local)

    def _prune(self, item: Item) -> None:
        path = self._abs(item.local)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
        self._forget(item.local)

    def _forget(self, local: str) -> None:
        """Remove a stage and its .gitignore line, then any folders left empty."""
        path = self._abs(local)
        self._abs(stages.stage_path(local)).unlink(missing_ok=True)
        self.ignore_drop.setdefault(path.parent, []).append(path.name)

    def _flush_gitignore(self) -> None:
        for folder in set(self.ignore_add) | set(self.ignore_drop):
            if folder.exists():
                stages.update_gitignore(
                    folder, self.ignore_add.get(folder, ()), self.ignore_drop.get(folder, ())
                )
        data = self.manifest.data_path
        for folder in sorted(self.ignore_drop, key=lambda p: len(p.parts), reverse=True):
            while folder != data and folder.is_relative_to(data):
                try:
                    folder.rmdir()
                except OSError:
                    break
                folder = folder.parent

    # -- whole-prefix imports, left to DVC ----------------------------------

    def _import_folder(self, item: Item) -> None:
        assert item.resource is not None
        path = self._abs(item.local)
        _refuse_symlinks(self.root, path)
        stage_file = str(self._abs(stages.stage_path(item.local)))
        path.parent.mkdir(parents=True, exist_ok=True)
        from dvc.exceptions import DvcException
        from dvc.ui import ui

        ui._enabled = False  # DVC's "To track the changes with git..." hints are not ours
        try:
            if item.action is Action.ADD:
                if not self.download:
                    self.repo.imp_url(item.source, out=str(path), no_download=True)
                else:
                    self.repo.imp_url(item.source, out=str(path), jobs=self.storage.jobs)
            elif item.action is Action.RESTORE:
                self.repo.checkout(targets=[stage_file], force=True)
            else:
                self.repo.update(targets=[stage_file], jobs=self.storage.jobs)
        except DvcException as exc:
            raise DvcRepoError(str(exc).splitlines()[0]) from None
        finally:
            ui._enabled = True
        item.stage = stages.read_stage(Path(stage_file))
        self._annotate(item)


def _protect(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.chmod(0o444)


def _link(src: Path, dest: Path, types: Sequence[str]) -> None:
    """Link or copy ``src`` to ``dest`` with the first of DVC's cache types that works."""
    for kind in [*types, "copy"]:
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
            return
        except OSError:
            dest.unlink(missing_ok=True)
    raise OSError(f"cannot link or copy {src} to {dest}")


def _refuse_symlinks(root: Path, path: Path) -> None:
    """Refuse to write through a symlinked folder that leads outside the repository."""
    real_root = root.resolve()
    folder = path.parent
    real = folder.resolve()
    if not real.is_relative_to(real_root):
        raise DvcRepoError(
            f"{folder.relative_to(root)} leads outside the repository (to {real}) "
            "through a symlink; refusing to write there"
        )
    if path.is_symlink() and not path.resolve().is_relative_to(real_root):
        raise DvcRepoError(
            f"{path.relative_to(root)} is a symlink to {path.resolve()}, outside the "
            "repository; refusing to write through it"
        )
