"""Carry out a plan: download, verify, cache, place, then record.

Order per file, so that an interruption at any point leaves nothing recorded
that is not on disk and verified: download to ``.dvc/tmp/gcsdvc`` -> check the
bytes against the object's md5 (or crc32c) -> move into the DVC cache -> link
or copy into the data folder with an atomic rename -> write the stage.
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
from gcsdvc.errors import DvcRepoError, GcsdvcError, LockedError
from gcsdvc.manifest import Manifest
from gcsdvc.plan import Action, Item, Plan, build_plan, conformed, identity_of, relative_out
from gcsdvc.storage import RemoteObject, Storage, describe

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
    # Stage and .gitignore files written or removed (repo-relative), for git:
    to_git_add: list[str] = field(default_factory=list)  # the user should `git add` them
    staged: list[str] = field(default_factory=list)  # `git add`ed (DVC's core.autostage)

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
        executor = _Executor(repo, manifest, storage, result, download, reporter)
        executor.run()
        _track(repo, manifest.root, executor.changed, result)
    result.retries = storage.retries.retries
    return result


def _result(plan: Plan, storage: Storage) -> SyncResult:
    result = SyncResult(plan, retries=storage.retries.retries)
    for item in plan.of(Action.FAILED):
        result.failures.append(Failure(item.name, item.source, item.note))
    return result


def _track(repo: Repo, root: Path, changed: set[Path], result: SyncResult) -> None:
    """Stage the changed files with git under ``core.autostage``, as DVC does; else list them."""
    from dvc.scm import NoSCM

    if not changed or isinstance(repo.scm, NoSCM):
        return
    paths = sorted(p.relative_to(root).as_posix() for p in changed)
    if repo.config["core"].get("autostage"):
        present = [str(root / p) for p in paths if (root / p).exists()]
        removed = [str(root / p) for p in paths if not (root / p).exists()]
        # Never an empty list: scm.add([], update=True) would stage every tracked change.
        if present:
            repo.scm.add(present)
        if removed:
            repo.scm.add(removed, update=True)
        result.staged = paths
    else:
        result.to_git_add = paths


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
        self.changed: set[Path] = set()  # stage and .gitignore files written or removed

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
                self._guard(item, self._annotate)
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
            if item.obj is None:
                self._fail(item, f"object not found: {item.source}")
                continue
            recorded = stages.out(item.stage or {}).get("md5")
            if item.action is Action.RESTORE and recorded and item.obj.md5 != recorded:
                self._fail(
                    item,
                    "the recorded version is gone from the source and not in the DVC cache; "
                    "'dvc pull' it from your DVC remote, or set skip_if_exist: false",
                )
                continue
            if not self.download:
                if item.action is not Action.RESTORE:
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
                if isinstance(outcome, Exception):
                    self._fail(item, describe(outcome))
                else:
                    self._guard(item, lambda it, t=tmp, o=obj, m=outcome: self._place(it, t, o, m))
                if self.reporter:
                    self.reporter.advance(files=1)
        finally:
            if self.reporter:
                self.reporter.finish()

    def _place(self, item: Item, tmp: Path, obj: RemoteObject, md5: str) -> None:
        cached = Path(self.odb.oid_to_path(md5))
        if cached.exists():
            tmp.unlink()
        else:
            cached.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, cached)
            _protect(cached)
        self._checkout(cached, item.local, md5)
        self._write_file_stage(item, obj, md5)

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

    def _write_file_stage(self, item: Item, obj: RemoteObject, md5: str | None) -> None:
        res = item.resource
        assert res is not None and item.file is not None
        stage = stages.file_stage(
            source=item.source,
            out=relative_out(item.local),
            md5=md5,
            size=obj.size,
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
        self.changed.add(path)

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
        self.changed.add(self._abs(stages.stage_path(local)))
        self.ignore_drop.setdefault(path.parent, []).append(path.name)

    def _flush_gitignore(self) -> None:
        from dvc.scm import NoSCM

        # `dvc init --no-scm`: DVC writes no .gitignore, nor do we.
        folders = (
            set() if isinstance(self.repo.scm, NoSCM) else {*self.ignore_add, *self.ignore_drop}
        )
        adding = [f / n for f in folders for n in self.ignore_add.get(f, ())]
        ignored = stages.ignored_by_git(self.root, adding)  # by a root rule, say: DVC adds none
        for folder in folders:
            add = [n for n in self.ignore_add.get(folder, ()) if folder / n not in ignored]
            drop = self.ignore_drop.get(folder, ())
            if folder.exists() and stages.update_gitignore(folder, add, drop):
                self.changed.add(folder / ".gitignore")
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

        try:
            with _dvc_quietly(self.reporter):
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
        if item.action is not Action.RESTORE and (path.parent / ".gitignore").exists():
            self.changed.add(path.parent / ".gitignore")  # DVC's line for the folder
        item.stage = stages.read_stage(Path(stage_file))
        self._annotate(item)


@contextlib.contextmanager
def _dvc_quietly(reporter: Reporter | None) -> Iterator[None]:
    """Run DVC with none of its own output, its download progress sent to ``reporter``.

    DVC's "Importing ..." line and its tqdm bars follow the ``dvc`` logger's
    level; its hints go through ``dvc.ui``. ``dvc.fs.download`` takes its
    progress callback from ``dvc.fs.callbacks.TqdmCallback`` at call time.
    """
    import logging

    from dvc.fs import callbacks
    from dvc.ui import ui
    from fsspec.callbacks import Callback

    class Forward(Callback):  # type: ignore[misc]
        """A download's file count, and (through its branches) the bytes of each file.

        DVC makes these callbacks for hashing and checkout too: only downloads report.
        """

        def __init__(self, *_: Any, bytes: bool = False, **kwargs: Any) -> None:
            super().__init__()
            self.bytes, self.seen, self.started = bytes, 0, False
            self.report = bytes or str(kwargs.get("desc", "")).startswith("Downloading")

        def call(self, hook_name: str | None = None, **kwargs: Any) -> None:
            if reporter is None or not self.report:
                return
            if not self.bytes and not self.started and self.size is not None:
                self.started = True
                reporter.start(self.size, 0)
            step, self.seen = self.value - self.seen, self.value
            if step:
                reporter.advance(nbytes=step) if self.bytes else reporter.advance(files=step)

        def branched(self, path_1: Any, path_2: Any, **kwargs: Any) -> Forward:
            child = Forward(bytes=True)
            child.report = self.report
            return child

        def close(self) -> None:
            if reporter and self.started:
                reporter.finish()

    log = logging.getLogger("dvc")
    level, tqdm_callback = log.level, callbacks.TqdmCallback
    log.setLevel(logging.WARNING)
    ui._enabled = False
    callbacks.TqdmCallback = Forward
    try:
        yield
    finally:
        callbacks.TqdmCallback = tqdm_callback
        ui._enabled = True
        log.setLevel(level)


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
