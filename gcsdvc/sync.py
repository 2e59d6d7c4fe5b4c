"""Carry out a plan: the order of the work, and the failures it met.

Moves first, then prunes, stage rewrites, file transfers and folder imports;
last, leftover data files no stage owns (:func:`gcsdvc.untracked.remove_cached`).
Each failure keeps its exception type, and the other items go on.
File imports (which object, download, verify, place, stage) are
:mod:`gcsdvc.transfer`'s; deciding what to do is :mod:`gcsdvc.plan`'s.
"""

from __future__ import annotations

import shlex
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gcsdvc import archive, folders, git, snapshot, stages, untracked
from gcsdvc.cloud import describe
from gcsdvc.errors import (
    ArchiveError,
    DvcRepoError,
    GcsdvcError,
    ListingError,
    LocalChangesError,
    NotAttemptedError,
    RefusedNameError,
    StorageError,
    UsageError,
)
from gcsdvc.manifest import Manifest, Resource
from gcsdvc.model import RemoteObject, State
from gcsdvc.plan import Action, Item, Plan, build_plan, remember, unchanged
from gcsdvc.remote import forget_push_cache
from gcsdvc.storage import Storage
from gcsdvc.transfer import Transfer
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
    scope: str | None = None  # the entry's URL when the failure hit its whole prefix

    @property
    def message(self) -> str:
        """The cause, without the object's URL when the error starts with it (it is ``source``)."""
        return describe(self.error).removeprefix(f"{self.source}: ")

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
    # DVC cache files found not to hold their bytes, and where they were moved.
    warnings: list[str] = field(default_factory=list)
    # Data files git saw for want of their .gitignore line: the line written now.
    repaired: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # .gitignore files that could not be written
    # Local bytes --force replaces, saved into the DVC cache first: (path, md5).
    saved: list[tuple[str, str]] = field(default_factory=list)
    # Objects archived into the DVC remote (or, dry run, to archive), by how (gcsdvc.archive).
    archived: archive.Tally | None = None

    @property
    def ok(self) -> bool:
        return not (self.failures or self.errors)

    def fail(self, item: Item, error: BaseException) -> None:
        scope = item.resource.url if isinstance(error, ListingError) and item.resource else None
        self.failures.append(Failure(item.name, item.source, error, scope))

    def record(self, item: Item, error: BaseException | None = None) -> None:
        """Count ``item`` done, or keep its failure."""
        if error is None:
            self.done[item.action] += 1
        else:
            self.fail(item, error)


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
    to_remote: bool = False,
    remote: str | None = None,
) -> SyncResult:
    """Bring the selected experiments (all when ``names`` is empty) in line with the manifest.

    A local file in the way (untracked, or edited since its stage was written) is
    kept and reported as a failure unless ``force``. Data files no stage owns
    (a teammate moved or pruned their entry) are removed when the DVC cache
    holds their bytes, and reported otherwise. ``to_remote``: the selected entries
    are archived into the DVC remote ``remote`` (None: the default), as entries
    with ``to_remote: true`` always are.
    """
    selected = manifest.select(names)
    if to_remote:
        manifest, selected = _archiving(manifest, selected)
    refuse_untrackable(manifest, selected)
    storage = Storage(jobs)
    plan = build_plan(manifest, selected, storage, prune, names, force, watch=not dry_run)
    _refuse_ignored_stages(manifest, plan)
    if dry_run or not (plan.has_work or plan.leftovers):
        result = _result(plan, storage)
        if plan.leftovers or (dry_run and _archived(plan.items)):
            with stages.open_repo(manifest.root) as repo:
                result.untracked = untracked.classify(repo, manifest.root, plan.leftovers)
                if dry_run:
                    _preview_archive(repo, remote, jobs, result)
        return result
    with locked_repo(manifest.root) as repo:
        if plan.state is None or snapshot.state(manifest) != plan.state:
            # Another process synced while we planned or waited for the lock.
            plan = build_plan(manifest, selected, storage, prune, names, force)
            _refuse_ignored_stages(manifest, plan)
        result = _result(plan, storage)
        with Workspace(repo, manifest.root, manifest.data_path) as ws:
            try:
                _Executor(ws, storage, result, download, reporter, remote).run()
            finally:
                result.warnings += ws.warnings
        result.errors += ws.ignore_errors
        result.staged, result.to_git_add = track(repo, manifest.root, ws.changed)
        if download and result.ok:
            _remember(manifest, names, plan, ws)
    result.retries = storage.retries.retries
    return result


def _archiving(manifest: Manifest, selected: Sequence[Resource]) -> tuple[Manifest, list[Resource]]:
    """The manifest with the selected entries archived (``--to-remote``), as ``to_remote: true``."""
    folders = [res.name for res in selected if res.files is None]
    if folders:
        raise UsageError(
            f"{', '.join(folders)}: --to-remote needs listed files or globs; a whole-prefix "
            "import cannot be archived object by object"
        )
    chosen = {res.index for res in selected}
    resources = tuple(
        replace(res, to_remote=True) if res.index in chosen else res for res in manifest.resources
    )
    marked = replace(manifest, resources=resources)
    return marked, [res for res in resources if res.index in chosen]


def _archived(items: Sequence[Item]) -> list[Item]:
    """The file items a sync archives into the DVC remote instead of downloading."""
    return [
        item
        for item in items
        if item.action in (Action.ADD, Action.UPDATE)
        and item.file is not None
        and item.resource is not None
        and item.resource.to_remote
    ]


def _preview_archive(repo: Repo, remote: str | None, jobs: int, result: SyncResult) -> None:
    """--dry-run: how many objects and bytes would be copied server-side, streamed, or found."""
    items = [item for item in _archived(result.plan.items) if item.obj is not None]
    if not items:
        return
    try:
        target = archive.open_target(repo, remote)
    except ArchiveError as exc:
        for item in items:
            result.fail(item, exc)
        return
    objects = [item.obj for item in items if item.obj is not None]
    try:
        ways = archive.methods(objects, target, jobs)
    except StorageError as exc:
        for item in items:
            result.fail(item, exc)
        return
    result.archived = archive.Tally(target.name)
    for obj, how in zip(objects, ways, strict=True):
        result.archived.add(how, obj.size)


def refuse_untrackable(manifest: Manifest, selected: Sequence[Resource]) -> None:
    """Refuse, before anything is written, a data folder whose stages git or DVC would refuse.

    Inside an output DVC tracks (``dvc add data``), ``dvc checkout`` of that
    output would delete the synced data and stages; where git ignores the data
    folder or a stage file, the stages could never be committed.
    """
    root, data = manifest.root, manifest.data_path
    tracked = stages.tracking_output(root, data)
    if tracked is not None:
        dvcfile, out = tracked
        raise DvcRepoError(
            f"{manifest.data_dir}/ is inside {out}, an output DVC tracks ({dvcfile}): "
            f"'dvc checkout' of it would delete the synced data and stages; choose a "
            f"data_dir outside {out}, or stop tracking it ('dvc remove {dvcfile}')"
        )
    # A stage file per folder: rules for folders (data/, data/*) show on any one of them. The
    # stage files a plan is about to write are asked each (see _refuse_ignored_stages).
    first: dict[str, str] = {}
    for res in selected:
        for file in res.targets:
            local = manifest.local(res, file)
            first.setdefault(local.rpartition("/")[0], stages.stage_path(local))
    untracked.refuse_ignored(root, data, list(first.values()))


def _refuse_ignored_stages(manifest: Manifest, plan: Plan) -> None:
    """Refuse the plan when git ignores one of the stage files it would write."""
    new = [stages.stage_path(i.local) for i in plan.of(Action.ADD, Action.MOVE)]
    if new:
        untracked.refuse_ignored(manifest.root, manifest.data_path, new)


def _remember(manifest: Manifest, names: Sequence[str], plan: Plan, ws: Workspace) -> None:
    """After a sync that only added files: a snapshot, so that the next no-op is quick.

    Only new stages and ones the plan found unchanged qualify: a stage that
    replaced one in git's HEAD is compared with HEAD's next time (see
    :func:`gcsdvc.stages.recommitted`), which only a full plan does.
    """
    if not snapshot.applies(manifest) or _archived(plan.items):
        return  # an archived file is not in place: a snapshot would say it is
    added = [item.local for item in plan.items if item.action is Action.ADD]
    if not all(item.action is Action.ADD or unchanged(item) for item in plan.items):
        return
    if git.committed_stages(manifest.root, added):
        return
    # What the workspace verified and wrote, as it holds them (not the whole caches read back).
    ledger = snapshot.Ledger(ws.hashes.known.get, ws.stage_cache.entry, ws.stages_saved)
    remember(manifest, names, plan, plan.wanted, ledger)


def _result(plan: Plan, storage: Storage) -> SyncResult:
    result = SyncResult(plan, retries=storage.retries.retries)
    errors: dict[State | None, type[GcsdvcError]] = {
        State.LISTING_FAILED: ListingError,
        State.REFUSED: RefusedNameError,
        State.BROKEN_STAGE: DvcRepoError,
    }
    for item in plan.of(Action.FAILED):
        error = errors.get(item.state, StorageError)(item.note)
        error.__cause__ = item.cause  # the look-up's own error, type and all
        result.fail(item, error)
    for item in plan.of(Action.CONFLICT):
        result.fail(item, conflict(item))
    return result


def track(repo: Repo, root: Path, changed: set[str]) -> tuple[list[str], list[str]]:
    """Stage the changed files with git under ``core.autostage``, as DVC does; else list them.

    Returns (the files staged, the files the user should ``git add``).
    """
    from dvc.scm import NoSCM

    if not changed or isinstance(repo.scm, NoSCM):
        return [], []
    # A file this sync made and removed again (a .gitignore written ahead for a download
    # that failed) is nothing to tell git about: only tracked ones that are gone count.
    paths = sorted(p for p in changed if (root / p).exists() or repo.scm.is_tracked(p))
    if not paths:
        return [], []
    if repo.config["core"].get("autostage"):
        present = [str(root / p) for p in paths if (root / p).exists()]
        removed = [str(root / p) for p in paths if not (root / p).exists()]
        # Never an empty list: scm.add([], update=True) would stage every tracked change.
        if present:
            repo.scm.add(present)
        if removed:
            repo.scm.add(removed, update=True)
        return paths, []
    return [], paths


def conflict(item: Item) -> LocalChangesError:
    """The error for a local file kept in place, with the commands that replace it."""
    name, path = shlex.quote(item.name), shlex.quote(item.local)
    why = "is not tracked" if item.state is State.UNTRACKED else f"was edited ({item.note})"
    fix = f"'gcsdvc sync --force {name}' or 'rm -r {path} && gcsdvc sync {name}' replaces it"
    if item.state is State.UNTRACKED and item.removed_stage:
        stage = stages.stage_path(item.local)
        why += f" (its stage {stage} was removed; git's HEAD has it)"
        fix = (
            f"'git checkout HEAD -- {shlex.quote(stage)} && gcsdvc sync {name}' "
            "brings the recorded version back; "
            f"{fix} with today's object"
        )
    return LocalChangesError(item.local, why, fix)


_ADOPTED = (State.MISSING, State.UNTRACKED)  # a METADATA item that records a copy on disk


class _Executor:
    """Runs a plan's items in a safe order: moves, prunes, stage rewrites, then transfers."""

    def __init__(
        self,
        ws: Workspace,
        storage: Storage,
        result: SyncResult,
        download: bool,
        reporter: Reporter | None,
        remote: str | None = None,
    ) -> None:
        self.ws = ws
        self.storage = storage
        self.reporter = reporter
        self.remote = remote  # the DVC remote archived entries go to (None: the default)
        self.jobs = storage.jobs
        self.result = result
        self.plan = result.plan
        self.download = download
        self.files = Transfer(ws, storage, self.plan.pinned, reporter)
        self.blocked: set[str] = set()  # files not placed: their .gitignore cannot be written

    def run(self) -> None:
        # Judged before anything is written: bytes this sync caches (a download, what --force
        # saves) do not make a user's file with the same bytes a leftover.
        leftovers = untracked.classify(self.ws.repo, self.ws.root, self.plan.leftovers)
        try:
            self._run_items()
            removed, kept = untracked.remove_cached(self.ws, leftovers)
            self.result.removed += removed
            self.result.untracked += kept
        finally:
            if any(self.result.done.values()) or self.result.removed:
                # `dvc push` would otherwise reuse a collection from before (issue 8, item 1).
                forget_push_cache(self.ws.repo)

    def _of(self, *actions: Action) -> list[Item]:
        """The plan's items of ``actions`` that may go ahead (see :meth:`_protect`)."""
        return [item for item in self.plan.of(*actions) if item.local not in self.blocked]

    def _protect(self) -> None:
        """Write the .gitignore line of every file this sync places, before it places any.

        Also the lines git misses for files already in place (``plan.unignored``).
        Files of a folder whose ``.gitignore`` cannot be written are not placed:
        they fail, one line per folder.
        """
        placing = [
            item
            for item in self.plan.items
            if item.file is not None
            and (
                item.action in (Action.ADD, Action.UPDATE, Action.RESTORE, Action.MOVE)
                or (item.action is Action.METADATA and item.state in _ADOPTED)
            )
        ]
        repairs = self.plan.unignored
        failed = self.ws.protect([item.local for item in placing] + repairs)
        again = "run the sync again once it can be written"
        for item in placing:
            folder = item.local.rpartition("/")[0]
            if folder in failed:
                self.blocked.add(item.local)
                why = f"{failed[folder]}, so its files are not placed (git would see them); {again}"
                error = DvcRepoError(why)
                self.result.failures.append(Failure(item.name, item.source, error, f"{folder}/"))
        exposed = Counter(p.rpartition("/")[0] for p in repairs)
        for folder, count in exposed.items():
            if folder in failed:
                self.result.errors.append(
                    f"{failed[folder]}: {count} data file(s) there stay visible to git "
                    f"('git add -A' would commit them); {again}"
                )
        self.result.repaired += [p for p in repairs if p.rpartition("/")[0] not in failed]

    def _run_items(self) -> None:
        self._protect()
        for item in self._of(Action.MOVE):
            assert item.stage is not None and item.old_local is not None
            moved = self._shaped(item, item.stage.with_out(stages.relative_out(item.local)))
            self._guard(item, self.ws.move, item.old_local, item.local, moved)
        for item in self._of(Action.PRUNE):
            self._guard(item, self.ws.remove, item.local)
        for item in self._of(Action.METADATA):
            # A copy placed by `dvc pull`, or by a sync cut short before the stage.
            if item.state in (State.MISSING, State.UNTRACKED):
                self._guard(item, self.files.adopt, item)
                continue
            stage = item.stage
            assert stage is not None
            if item.obj is not None and item.state is State.METADATA_UPSTREAM:
                stage = stage.recorded_as(item.obj)  # so that `dvc status` stays quiet
            self._guard(item, self.ws.write_stage, item.local, self._shaped(item, stage))
        todo = self._of(Action.ADD, Action.UPDATE, Action.RESTORE)
        todo = [item for item in todo if self._save_local(item)]
        archived = _archived(todo)
        self._archive(archived)
        archived_ids = {id(item) for item in archived}  # Items compare field by field: slow
        self._transfer([i for i in todo if i.file is not None and id(i) not in archived_ids])
        for item in todo:
            if item.file is None:
                self._guard(item, self._folder, item)

    def _save_local(self, item: Item) -> bool:
        """Save the bytes ``--force`` replaces into the DVC cache; False: they could not be."""
        if item.state not in (State.MODIFIED, State.UNTRACKED):
            return True
        try:
            self.result.saved += self.ws.save(item.local)
        except (GcsdvcError, OSError) as exc:
            self.result.fail(item, exc)
            return False
        return True

    def _shaped(self, item: Item, stage: stages.ImportStage) -> stages.ImportStage:
        assert item.resource is not None
        pinned = self.plan.pinned
        return stages.conform(
            stage, item.resource, item.file, pinned, item.obj, item.committed, item.objects
        )

    def _guard(self, item: Item, step: Callable[..., object], *args: Any) -> None:
        try:
            step(*args)
        except (GcsdvcError, OSError) as exc:
            self.result.fail(item, exc)
        else:
            self.result.record(item)

    def _transfer(self, items: list[Item]) -> None:
        fetch: list[tuple[Item, RemoteObject]] = []
        for item in items:
            if item.action is Action.RESTORE:
                try:
                    cached = self.files.from_cache(item)
                except (GcsdvcError, OSError) as exc:
                    self.result.fail(item, exc)
                    continue
                if cached:
                    assert item.stage is not None
                    shaped = self._shaped(item, item.stage)
                    if shaped == item.stage:
                        self.result.record(item)
                    else:  # edited by hand too: written as a sync writes it, as status asks
                        self._guard(item, self.ws.write_stage, item.local, shaped)
                elif self.download:  # --no-download: nothing to restore yet
                    try:
                        fetch.append((item, self.files.recorded_object(item)))
                    except GcsdvcError as exc:
                        self.result.fail(item, exc)
            elif item.obj is None:
                self.result.fail(item, StorageError(f"object not found: {item.source}"))
            elif not self.download:
                self._guard(item, self.files.write_stage, item, item.obj, None)
            else:
                fetch.append((item, item.obj))
        if fetch:
            self.files.fetch(fetch, self.result.record)

    def _archive(self, items: list[Item]) -> None:
        """Archive into the DVC remote (:mod:`gcsdvc.archive`); each stage is written only
        once the remote holds its copy, so an interruption records nothing it does not hold."""
        if not items:
            return
        try:
            target = archive.open_target(self.ws.repo, self.remote)
        except ArchiveError as exc:
            for item in items:
                self.result.fail(item, exc)
            return
        todo = [(item, item.obj) for item in items if item.obj is not None]
        for item in items:
            if item.obj is None:
                self.result.fail(item, StorageError(f"object not found: {item.source}"))
        tally = self.result.archived = archive.Tally(target.name)
        reporter = self.reporter
        if reporter:
            reporter.start(len(todo), sum(obj.size for _, obj in todo), "archiving")

        def done(index: int, got: archive.Copied | Exception) -> None:
            item, obj = todo[index]
            how = ""  # a failed copy: counted, by no way
            if isinstance(got, Exception):
                self.result.fail(item, got)
            else:
                tally.add(got.method, got.size)
                how = got.method
                self._guard(item, self._write_archived, item, obj, got, target.name)
            if reporter:
                reporter.advance(files=1, nbytes=obj.size, how=how)

        try:
            archive.archive([obj for _, obj in todo], target, self.storage, self.jobs, done)
        finally:
            if reporter:
                reporter.finish()

    def _write_archived(
        self, item: Item, obj: RemoteObject, got: archive.Copied, remote: str
    ) -> None:
        assert item.resource is not None and item.file is not None
        frozen = item.stage.frozen if item.stage is not None else True  # a user's unfreeze stays
        stage = stages.file_stage(
            item.resource, item.file, item.local, obj, got.md5, False, frozen, got.size, remote
        )
        self.ws.write_stage(item.local, stage)

    def _folder(self, item: Item) -> None:
        """Whole-prefix imports: import, update or restore the folder, then write its stage."""
        stage = folders.sync_folder(
            self.ws, self.storage, item, self.plan.pinned, self.download, self.reporter
        )
        # With its .gitignore line, as DVC writes it for --no-download too.
        self.ws.write_stage(item.local, self._shaped(item, stage), ignore=True)
