"""Carry out a plan: the order of the work, and the failures it met.

Order per file, so that an interruption at any point leaves nothing recorded
that is not on disk and verified: download to ``.dvc/tmp/gcsdvc`` -> check the
bytes against the object's md5 (or crc32c) -> move into the DVC cache -> link
or copy into the data folder with an atomic rename -> write the stage.
Placing files is :mod:`gcsdvc.workspace`'s; deciding what to do is :mod:`gcsdvc.plan`'s.
"""

from __future__ import annotations

import shlex
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gcsdvc import stages, untracked
from gcsdvc.compare import State
from gcsdvc.errors import GcsdvcError, LocalChangesError, NotAttemptedError, StorageError
from gcsdvc.manifest import Manifest
from gcsdvc.plan import Action, Item, Plan, build_plan
from gcsdvc.remote import forget_push_cache
from gcsdvc.storage import RemoteObject, Storage, describe
from gcsdvc.untracked import Untracked
from gcsdvc.workspace import Reporter as Reporter  # the CLI's progress implements it
from gcsdvc.workspace import Workspace, locked_repo

if TYPE_CHECKING:
    from dvc.repo import Repo


@dataclass(frozen=True)
class Failure:
    """One item that could not be done; ``error`` keeps the original exception and its type."""

    name: str
    source: str
    error: BaseException

    @property
    def message(self) -> str:
        return describe(self.error)

    @property
    def not_attempted(self) -> bool:
        return isinstance(self.error, NotAttemptedError)


@dataclass
class SyncResult:
    plan: Plan
    done: Counter[Action] = field(default_factory=Counter)
    failures: list[Failure] = field(default_factory=list)
    retries: int = 0
    # Data files no stage owns: left alone (or, dry run, to be removed when cached).
    untracked: list[Untracked] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  # leftovers whose bytes DVC caches
    # Stage and .gitignore files written or removed (repo-relative), for git:
    to_git_add: list[str] = field(default_factory=list)  # the user should `git add` them
    staged: list[str] = field(default_factory=list)  # `git add`ed (DVC's core.autostage)

    @property
    def ok(self) -> bool:
        return not self.failures

    def fail(self, item: Item, error: BaseException) -> None:
        self.failures.append(Failure(item.name, item.source, error))


def sync(
    manifest: Manifest,
    names: Sequence[str] = (),
    *,
    dry_run: bool = False,
    prune: bool = False,
    download: bool = True,
    force: bool = False,
    jobs: int = 16,
    reporter: Reporter | None = None,
) -> SyncResult:
    """Bring the selected experiments (all when ``names`` is empty) in line with the manifest.

    A local file in the way (untracked, or edited since its stage was written) is
    kept and reported as a failure unless ``force``. Data files no stage owns
    (a teammate moved or pruned their entry) are removed when the DVC cache
    holds their bytes, and reported otherwise.
    """
    selected = manifest.select(names)
    storage = Storage(jobs)
    plan = build_plan(manifest, selected, storage, prune, names, force)
    if dry_run or not (plan.has_work or plan.leftovers):
        result = _result(plan, storage)
        if plan.leftovers:
            with stages.open_repo(manifest.root) as repo:
                result.untracked = untracked.classify(repo, manifest.root, plan.leftovers)
        return result
    with locked_repo(manifest.root) as repo:
        # Another process may have synced while we waited for the lock.
        plan = build_plan(manifest, selected, storage, prune, names, force)
        result = _result(plan, storage)
        with Workspace(repo, manifest.root, manifest.data_path, reporter) as ws:
            _Executor(ws, storage, result, download, reporter).run()
        _track(repo, manifest.root, ws.changed, result)
    result.retries = storage.retries.retries
    return result


def _result(plan: Plan, storage: Storage) -> SyncResult:
    result = SyncResult(plan, retries=storage.retries.retries)
    for item in plan.of(Action.FAILED):
        result.fail(item, StorageError(item.note))
    for item in plan.of(Action.CONFLICT):
        result.fail(item, conflict(item))
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


def conflict(item: Item) -> LocalChangesError:
    """The error for a local file kept in place, with the commands that replace it."""
    name, path = shlex.quote(item.name), shlex.quote(item.local)
    why = "is not tracked" if item.state is State.UNTRACKED else f"was edited ({item.note})"
    fix = f"'gcsdvc sync --force {name}' or 'rm -r {path} && gcsdvc sync {name}' replaces it"
    return LocalChangesError(item.local, why, fix)


class _Executor:
    """Runs a plan's items in a safe order: moves, prunes, stage rewrites, then transfers."""

    def __init__(
        self,
        ws: Workspace,
        storage: Storage,
        result: SyncResult,
        download: bool,
        reporter: Reporter | None,
    ) -> None:
        self.ws = ws
        self.storage = storage
        self.result = result
        self.plan = result.plan
        self.download = download
        self.reporter = reporter

    def run(self) -> None:
        try:
            self._run_items()
            self._remove_leftovers()
        finally:
            if any(self.result.done.values()) or self.result.removed:
                # `dvc push` would otherwise reuse a collection from before (issue 8, item 1).
                forget_push_cache(self.ws.repo)

    def _run_items(self) -> None:
        for item in self.plan.of(Action.MOVE):
            assert item.stage is not None and item.old_local is not None
            moved = self._shaped(item, item.stage.with_out(stages.relative_out(item.local)))
            self._guard(item, self.ws.move, item.old_local, item.local, moved)
        for item in self.plan.of(Action.PRUNE):
            self._guard(item, self.ws.remove, item.local)
        for item in self.plan.of(Action.METADATA):
            assert item.stage is not None
            self._guard(item, self.ws.write_stage, item.local, self._shaped(item, item.stage))
        todo = self.plan.of(Action.ADD, Action.UPDATE, Action.RESTORE)
        self._transfer([i for i in todo if i.file is not None])
        for item in todo:
            if item.file is None:
                self._guard(item, self._folder, item)

    def _shaped(self, item: Item, stage: stages.ImportStage) -> stages.ImportStage:
        assert item.resource is not None
        pinned = self.plan.pinned
        return stages.conform(stage, item.resource, item.file, pinned, item.obj, item.committed)

    def _remove_leftovers(self) -> None:
        """Remove data files no stage owns whose bytes DVC caches; report the rest."""
        ws = self.ws
        for found in untracked.classify(ws.repo, ws.root, self.plan.leftovers):
            try:
                if found.cached:
                    ws.remove_leftover(found.local)
                    self.result.removed.append(found.local)
                    continue
            except OSError:
                pass  # reported below, like one of the user's own
            self.result.untracked.append(found)

    def _guard(self, item: Item, step: Callable[..., object], *args: Any) -> None:
        try:
            step(*args)
        except (GcsdvcError, OSError) as exc:
            self.result.fail(item, exc)
        else:
            self.result.done[item.action] += 1

    def _transfer(self, items: list[Item]) -> None:
        fetch: list[Item] = []
        for item in items:
            recorded = item.stage.md5 if item.stage is not None else None
            if item.action is Action.RESTORE and item.stage is not None:
                same_source = item.stage.source == item.source
                if recorded and same_source and self.ws.restore(item.local, recorded):
                    self.result.done[item.action] += 1
                    continue
            if item.obj is None:
                self.result.fail(item, StorageError(f"object not found: {item.source}"))
            elif item.action is Action.RESTORE and recorded and item.obj.md5 != recorded:
                self.result.fail(
                    item,
                    StorageError(
                        "the recorded version is gone from the source and not in the DVC cache; "
                        "'dvc pull' it from your DVC remote, or set skip_if_exist: false"
                    ),
                )
            elif not self.download:
                if item.action is not Action.RESTORE:
                    self._guard(item, self._write_file_stage, item, item.obj, None)
            else:
                fetch.append(item)
        if fetch:
            self._download(fetch)

    def _download(self, fetch: list[Item]) -> None:
        pairs: list[tuple[RemoteObject, Path]] = []
        for n, item in enumerate(fetch):
            assert item.obj is not None
            pairs.append((item.obj, self.ws.scratch(n)))
        reporter = self.reporter
        if reporter:
            reporter.start(len(pairs), sum(obj.size for obj, _ in pairs))
        on_bytes = (lambda n: reporter.advance(nbytes=n)) if reporter else None
        try:
            for index, outcome in self.storage.download(pairs, on_bytes):
                item, (obj, tmp) = fetch[index], pairs[index]
                if isinstance(outcome, BaseException):
                    self.result.fail(item, outcome)
                else:
                    self._guard(item, self._place, item, tmp, obj, outcome)
                if reporter:
                    reporter.advance(files=1)
        finally:
            if reporter:
                reporter.finish()

    def _place(self, item: Item, tmp: Path, obj: RemoteObject, md5: str) -> None:
        self.ws.place(tmp, item.local, md5)
        self._write_file_stage(item, obj, md5)

    def _write_file_stage(self, item: Item, obj: RemoteObject | None, md5: str | None) -> None:
        assert item.resource is not None and item.file is not None and obj is not None
        frozen = item.stage.frozen if item.stage is not None else True  # a user's unfreeze stays
        stage = stages.file_stage(
            item.resource, item.file, item.local, obj, md5, self.plan.pinned, frozen
        )
        self.ws.write_stage(item.local, stage, ignore=md5 is None)

    def _folder(self, item: Item) -> None:
        """Whole-prefix imports are DVC's own: import, update or check out, then describe."""
        ws, jobs = self.ws, self.storage.jobs
        if item.action is Action.ADD:
            force = self.plan.force and item.state is State.UNTRACKED
            stage = ws.import_folder(
                item.source, item.local, download=self.download, jobs=jobs, force=force
            )
        elif item.action is Action.RESTORE:
            stage = ws.restore_folder(item.local, jobs)
        else:
            stage = ws.update_folder(item.local, jobs)
        ws.write_stage(item.local, self._shaped(item, stage))
