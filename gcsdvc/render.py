"""Text and JSON renderings of plans, results and reports, for the CLI to print.

Columns are padded by display width (a CJK character or an emoji takes two
cells), through rich's ``cell_len``.
"""

from __future__ import annotations

import os
import posixpath
import shlex
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gcsdvc.plan import Action, Plan

if TYPE_CHECKING:
    from gcsdvc.archive import Tally
    from gcsdvc.errors import ManifestError
    from gcsdvc.manifest import Manifest
    from gcsdvc.status import Report, ResourceStatus
    from gcsdvc.sync import SyncResult

JSON_SCHEMA = 1  # the "schema" key of every --json document (gcsdvc/schemas/*.json)
_ORDER = list(Action)
_PAST = {
    Action.ADD: "added",
    Action.UPDATE: "updated",
    Action.RESTORE: "restored",
    Action.METADATA: "re-described",
    Action.MOVE: "moved",
    Action.PRUNE: "pruned",
}


def plan_lines(
    plan: Plan, verbose: bool = False, failed: Collection[tuple[str, str]] = ()
) -> Iterator[str]:
    """One line per experiment with its counts; with ``verbose`` one more per file.

    Items in ``failed`` (name, source), the failures of a run, count as failed,
    not as what was planned for them.
    """
    counts: dict[str, Counter[Action]] = {}
    by_name: dict[str, list[str]] = {}
    for item in plan.items:
        action = item.action
        if (item.name, item.source) in failed and action is not Action.CONFLICT:
            action = Action.FAILED
        counts.setdefault(item.name, Counter())[action] += 1
        if verbose:
            note = f"  ({item.note})" if item.note else ""
            by_name.setdefault(item.name, []).append(
                f"    {action.value:<9} {item.local}  <- {item.source}{note}"
            )
    width = max((cells(name) for name in counts), default=0)
    for name, counter in counts.items():
        parts = [f"{action.value} {counter[action]}" for action in _ORDER if counter[action]]
        yield f"{pad(name, width)}  {', '.join(parts)}"
        yield from by_name.get(name, [])


def summary_lines(
    result: SyncResult,
    dry_run: bool = False,
    verbose: bool = False,
    quiet: bool = False,
    nbytes: int = 0,
    seconds: float = 0.0,
) -> Iterator[str]:
    """The closing lines: what was done, what failed, what is left to do.

    The last one adds, when anything was downloaded or retried, the bytes
    (``nbytes``), the time the sync took and the retries.
    """
    skipped = [f for f in result.failures if f.not_attempted]
    # A prefix that could not be listed: one line per entry, with the count of its files.
    folded: Counter[tuple[str, str | None, str]] = Counter(
        (f.name, f.scope, f.message) for f in result.failures if f.scope
    )
    shown: set[tuple[str, str | None, str]] = set()
    for failure in result.failures:
        key = (failure.name, failure.scope, failure.message)
        if failure.not_attempted or key in shown:
            continue
        if folded[key] > 1:
            shown.add(key)
            files = f"({folded[key]} files)"
            yield f"failed: {failure.name}: {failure.scope}: {failure.message} {files}"
        else:
            yield f"failed: {failure.name}: {failure.source}: {failure.message}"
    if skipped:  # storage went away: one line, not one per object
        reason = skipped[0].message
        yield f"failed: {len(skipped)} more object(s) not attempted: {reason}; run again later"
    for error in result.errors:
        yield f"failed: {error}"
    for warning in [*result.plan.warnings, *result.warnings]:
        yield f"warning: {warning}"
    for item in result.untracked:
        if dry_run and item.cached:
            yield f"leftover: {item.local}: no stage owns it; a sync removes it (cached by DVC)"
        else:
            yield (
                f"warning: {item.local}: no stage owns it and 'git add -A' would commit it; "
                f"{item.fix}"
            )
    if quiet:
        return
    for local, md5 in result.saved:
        yield f"saved {local} (md5 {md5}) to the DVC cache before replacing it"
    plan = result.plan
    if plan.unfrozen:
        yield (
            f"{plan.unfrozen} stage(s) not frozen (kept as you left them): 'dvc repro' and "
            "'dvc exp run' re-import them when the object changes; 'dvc freeze' them to stop that"
        )
    if result.removed:
        yield (
            f"removed {len(result.removed)} leftover file(s) no stage owns "
            "(a teammate moved or pruned them; the DVC cache keeps a copy)"
        )
    if dry_run and plan.unignored:
        yield (
            f"{len(plan.unignored)} data file(s) lack their .gitignore line ('git add -A' "
            "would commit them); a sync writes the lines"
        )
    elif result.repaired:
        yield (
            f"wrote the missing .gitignore line of {len(result.repaired)} data file(s) "
            "('git add -A' would have committed them)"
        )
    orphans = len(plan.of(Action.ORPHAN))
    if orphans:
        yield f"{orphans} stage(s) no longer in the manifest; 'gcsdvc sync --prune' removes them"
    if result.archived is not None:
        yield archive_line(result.archived, dry_run)
    if dry_run:
        todo = sum(1 for i in plan.items if i.action in _PAST)
        size, prefixes = planned_bytes(plan)
        download = f"{size_text(size)} to download" if size else ""
        if prefixes:
            download += f"{' + ' if size else ''}{prefixes} whole prefix(es) of unknown size"
        download = download or "nothing to download"
        yield f"dry run: {todo} change(s) planned, {download}, nothing written"
        return
    done = [f"{result.done[a]} {word}" for a, word in _PAST.items() if result.done[a]]
    unchanged = len(plan.of(Action.UNCHANGED))
    done.append(f"{unchanged} unchanged")
    if result.failures:
        done.append(f"{len(result.failures)} failed")
    line = "sync: " + ", ".join(done)
    if nbytes or result.retries:
        retries = f"{result.retries} retr{'y' if result.retries == 1 else 'ies'}"
        line += f"; {size_text(nbytes)} downloaded in {elapsed(seconds)}, {retries}"
    yield line
    if verbose:
        yield f"storage retries: {result.retries}"


def status_lines(report: Report, root: Path, verbose: bool = False) -> Iterator[str]:
    """``gcsdvc status``: the table, then each experiment that needs attention (with
    ``verbose``: every experiment, every file)."""
    from gcsdvc.model import SETTLED

    rows = report.resources
    width = max([len("experiment"), *(cells(r.resource.name) for r in rows)])
    yield f"{pad('experiment', width)}  files  state"
    for r in rows:
        extra = "; upstream not checked" if r.upstream_error else ""
        yield f"{pad(r.resource.name, width)}  {len(r.files):>5}  {r.summary}{extra}"
    for r in rows:
        if r.ok and not verbose:
            continue
        yield ""
        desc = one_line(r.resource.description)
        yield f"{r.resource.name}: {desc}" if desc else r.resource.name
        if r.upstream_error:
            yield f"  upstream not checked: {r.upstream_error}"
        bad = [f for f in r.files if verbose or f.state not in SETTLED]
        state_width = max((len(str(f.state)) for f in bad), default=0)
        for f in bad:
            note = f"  ({f.note})" if f.note else ""
            yield f"  {f.state!s:<{state_width}}  {rel(root, f.local)}{note}"
        yield from fix_lines(r, root, report.pinned)
    if report.untracked:
        yield ""
        yield f"untracked: {len(report.untracked)} file(s) in the data folder no stage owns"
        for u in report.untracked:
            yield f"  {rel(root, u.local)}  (fix: {u.fix})"
    if report.unignored:
        yield ""
        yield (
            f"not ignored by git: {len(report.unignored)} data file(s) lack their .gitignore "
            "line ('git add -A' would commit them)"
        )
        for g in report.unignored:
            yield f"  {rel(root, g.local)}  (fix: {g.fix})"
    if report.orphans:
        yield ""
        yield f"orphans: {len(report.orphans)} stage(s) no longer in the manifest"
        for o in report.orphans:
            yield f"  {rel(root, o.local)}  <- {o.source}  (was {o.name})"
        yield "  fix: gcsdvc sync --prune"
    total = sum(len(r.files) for r in rows)
    not_ok = sum(1 for r in rows for f in r.files if f.state not in SETTLED)
    errors = sum(1 for r in rows if r.upstream_error)
    problems = [
        f"{not_ok} of {total} file(s) need attention" if not_ok else "",
        f"{len(report.orphans)} orphan stage(s)" if report.orphans else "",
        f"{len(report.untracked)} untracked file(s)" if report.untracked else "",
        f"{len(report.unignored)} data file(s) not ignored by git" if report.unignored else "",
        f"{errors} experiment(s) not checked upstream" if errors else "",
    ]
    where = " locally" if report.upstream_error else ""
    fine = f"all {total} file(s) of {len(rows)} experiment(s) are ok{where}"
    line = f"status: {', '.join(p for p in problems if p) or fine}"
    if not report.upstream_checked:
        line += " (upstream not checked: --offline)"
    yield ""
    if report.upstream_error:
        yield f"upstream not checked: {report.upstream_error}; --offline skips the check"
    yield line


def list_lines(
    statuses: Sequence[ResourceStatus], root: Path, verbose: bool = False
) -> Iterator[str]:
    """``gcsdvc list``: one line per experiment, then its description and source (with
    ``verbose``, then each file and its state)."""
    width = max((cells(s.resource.name) for s in statuses), default=0)
    for s in statuses:
        yield f"{pad(s.resource.name, width)}  {s.summary}  {amount(s.file_count, s.size)}"
        if s.resource.description:
            yield f"    {one_line(s.resource.description)}"
        yield f"    {s.resource.url} -> {rel(root, s.local)}"
        if verbose:
            width = max((len(str(f.state)) for f in s.files), default=0)
            for f in s.files:
                yield f"      {f.state!s:<{width}}  {rel(root, f.local)}"


def show_lines(
    s: ResourceStatus, root: Path, pinned: bool = True, verbose: bool = False
) -> Iterator[str]:
    """``gcsdvc show``: one experiment and the local state of each file (with ``verbose``,
    each file's stage and note)."""
    from gcsdvc.status import State

    res = s.resource
    yield f"name:          {res.name}"
    yield f"description:   {one_line(res.description)}"
    yield f"source:        {res.url}"
    yield f"local:         {rel(root, s.local)}"
    yield f"skip_if_exist: {str(res.skip_if_exist).lower()}"
    yield f"state:         {s.summary}, {amount(s.file_count, s.size)} (upstream not checked)"
    width = max(len(str(f.state)) for f in s.files)
    for f in s.files:
        recorded = f"  {human_size(f.size)}  md5 {f.md5}" if f.md5 and f.size is not None else ""
        note = f"  ({f.note})" if f.note and (verbose or f.state is not State.OK) else ""
        yield f"  {f.state!s:<{width}}  {rel(root, f.local)}{recorded}{note}"
        if verbose:
            yield f"  {'':<{width}}  stage {rel(root, f.stage_file)}"
    yield from fix_lines(s, root, pinned)


HINT_WIDTH = 100  # the longest `git add` line the hint prints before folding to folders


def git_hint_lines(result: SyncResult, root: Path) -> Iterator[str]:
    """DVC's hint after a change to files git should track (none under core.autostage).

    One short command: the files when they fit, else their folders, else the
    one folder holding them all with the count.
    """
    if not result.to_git_add:
        return
    files = [rel(root, p) for p in result.to_git_add]
    folders = _top_folders(root, result.to_git_add)
    what, paths = "", files
    if len(shlex.join(files)) > HINT_WIDTH:
        paths = folders
        common = os.path.commonpath(folders)
        if len(shlex.join(folders)) > HINT_WIDTH and common:  # '': no folder holds them all
            paths = [common]
        what = f" ({len(files)} files in {len(paths)} folder(s))"
    yield ""
    yield f"To track the changes with git{what}, run:"
    yield ""
    yield "\tgit add " + shlex.join(paths)
    yield ""
    yield "To enable auto staging, run:"
    yield ""
    yield "\tdvc config core.autostage true"


def archive_line(tally: Tally, dry_run: bool) -> str:
    """Objects and bytes copied server-side, streamed through this machine, or already there."""
    from gcsdvc.archive import Method

    server, stream = ("to copy", "to stream") if dry_run else ("copied", "streamed")
    parts = [
        f"{tally.objects[how]} object(s) ({human_size(tally.nbytes[how])}) {verb}"
        for how, verb in ((Method.SERVER, f"{server} server-side"), (Method.STREAM, stream))
    ]
    parts.append(f"{tally.objects[Method.PRESENT]} already there")
    return f"archive into the DVC remote '{tally.remote}': {', '.join(parts)}"


def _archive_json(tally: Tally | None) -> dict[str, Any] | None:
    if tally is None:
        return None
    from gcsdvc.archive import Method

    ways = {"server_side": Method.SERVER, "streamed": Method.STREAM, "present": Method.PRESENT}
    counts = {
        key: {"objects": tally.objects[how], "bytes": tally.nbytes[how]}
        for key, how in ways.items()
    }
    return {"remote": tally.remote, **counts}


def _top_folders(root: Path, paths: Iterable[str]) -> list[str]:
    """The folders holding ``paths`` (each the nearest that exists), none inside another."""
    found: set[Path] = set()
    for path in paths:
        folder = (root / path).parent
        while not folder.is_dir() and folder != root:
            folder = folder.parent  # pruned: the removal is staged from the folder above
        found.add(folder)
    top = [f for f in found if not any(o != f and f.is_relative_to(o) for o in found)]
    return sorted(os.path.relpath(f) for f in top)


def planned_bytes(plan: Plan) -> tuple[int, int]:
    """The bytes a sync of ``plan`` would download, and the whole prefixes not counted.

    Entries archived into the DVC remote (``to_remote``) download nothing.
    """
    size = prefixes = 0
    for item in plan.of(Action.ADD, Action.UPDATE):
        if item.resource is not None and item.resource.to_remote:
            continue
        if item.file is None:
            prefixes += 1
        elif item.obj is not None:
            size += item.obj.size
    return size, prefixes


def sync_json(
    result: SyncResult, dry_run: bool, nbytes: int = 0, seconds: float = 0.0
) -> dict[str, Any]:
    """``gcsdvc sync --json`` (schema: gcsdvc/schemas/sync.json).

    ``nbytes`` is what was downloaded, or on a dry run what would be.
    """
    plan = result.plan
    done = {a.value: result.done[a] for a in _PAST}
    return {
        "ok": result.ok,
        "dry_run": dry_run,
        "done": {} if dry_run else {**done, "unchanged": len(plan.of(Action.UNCHANGED))},
        "bytes": planned_bytes(plan)[0] if dry_run else nbytes,
        "elapsed": round(seconds, 3),
        "items": [
            {
                "name": i.name,
                "action": i.action.value,
                "path": i.local,
                "source": i.source,
                "note": i.note,
            }
            for i in plan.items
        ],
        "failures": [
            {"name": f.name, "source": f.source, "message": f.message} for f in result.failures
        ],
        "removed": result.removed,
        "untracked": [u.local for u in result.untracked],
        "to_git_add": result.to_git_add,
        "staged": result.staged,
        "warnings": result.warnings,
        "errors": result.errors,
        "repaired": result.repaired,
        "saved": [{"path": local, "md5": md5} for local, md5 in result.saved],
        "retries": result.retries,
        "archived": _archive_json(result.archived),
    }


def error_json(problems: list[str], exit_code: int) -> dict[str, Any]:
    """The document of a ``--json`` command that failed (schema: gcsdvc/schemas/error.json)."""
    return {"ok": False, "exit_code": exit_code, "problems": problems}


def validate_line(shown: str, manifest: Manifest) -> str:
    files, folders = _counts(manifest)
    extra = f" and {folders} whole prefix(es)" if folders else ""
    return f"{shown}: {len(manifest.resources)} experiment(s), {files} file(s){extra}: OK"


def validate_json(results: Iterable[tuple[Path, Manifest | ManifestError]]) -> dict[str, Any]:
    """``gcsdvc validate --json`` (schema: gcsdvc/schemas/validate.json).

    A manifest's ``path`` is relative to its DVC repository's root, as every
    other command's paths are (absolute outside a repository).
    """
    from gcsdvc.errors import ManifestError

    manifests: list[dict[str, Any]] = []
    for path, outcome in results:
        entry = {"path": repo_path(path), "ok": True, "problems": [], "warnings": []}
        if isinstance(outcome, ManifestError):
            entry |= {"ok": False, "problems": outcome.problems}
            entry |= {"experiment_count": None, "file_count": None, "prefix_count": None}
        else:
            files, folders = _counts(outcome)
            entry |= {
                "warnings": list(outcome.warnings),
                "experiment_count": len(outcome.resources),
                "file_count": files,
                "prefix_count": folders,
            }
        manifests.append(entry)
    return {"ok": all(m["ok"] for m in manifests), "manifests": manifests}


def repo_path(path: Path) -> str:
    """A file's path in JSON: relative to its DVC repository's root, absolute outside one."""
    from gcsdvc.manifest import find_root

    folder = path.absolute().parent
    root = find_root(folder) if folder.is_dir() else None
    if root is None:
        return str(path.absolute())
    return (folder.resolve() / path.name).relative_to(root).as_posix()


def entry_lines(manifest: Manifest) -> Iterator[str]:
    """``validate -v``: each experiment, what it imports and where."""
    width = max((cells(r.name) for r in manifest.resources), default=0)
    for r in manifest.resources:
        what = f"{len(r.files)} file(s)" if r.files is not None else "whole prefix"
        yield f"  {pad(r.name, width)}  {what}  {r.url} -> {manifest.local(r)}"


def _counts(manifest: Manifest) -> tuple[int, int]:
    files = sum(len(r.files or ()) for r in manifest.resources)
    return files, sum(1 for r in manifest.resources if r.files is None)


def fix_lines(status: ResourceStatus, root: Path, pinned: bool = True) -> Iterator[str]:
    """The commands that fix an experiment's files, in the order to run them, paths merged."""
    merged: dict[str, list[str]] = {
        "git checkout HEAD --": [],
        "rm": [],
        "rm -r": [],
        "gcsdvc update": [],
        "gcsdvc sync": [],
        "dvc push": [],
    }
    for f in status.files:
        for command, arg in f.fix(status.resource, pinned):
            shown = arg if command.startswith("gcsdvc") or not arg else rel(root, arg)
            if shown not in merged[command]:
                merged[command].append(shown)
    lines = [" ".join([c, *(quote(a) for a in args if a)]) for c, args in merged.items() if args]
    for n, line in enumerate(lines):
        yield ("  fix: " if n == 0 else "       ") + line


def rel(root: Path, local: str) -> str:
    """A repo-relative path as seen from the current folder.

    A path a refused object gave (``a//b``) is shown as spelled: normalized, it
    would name another object's file.
    """
    if posixpath.normpath(local) != local:
        base = os.path.relpath(root)
        return local if base == "." else f"{base}{os.sep}{local}"
    return os.path.relpath(root / local)


def quote(text: str) -> str:
    return shlex.quote(text)


def cells(text: str) -> int:
    """The display width of ``text`` in terminal cells."""
    from rich.cells import cell_len

    return cell_len(text)


def pad(text: str, width: int) -> str:
    """``text`` left-aligned in ``width`` cells."""
    return text + " " * max(0, width - cells(text))


def one_line(text: str) -> str:
    return " ".join(text.split())


def amount(files: int, size: int) -> str:
    return f"{files} file(s)" + (f", {human_size(size)}" if size else "")


def size_text(n: int) -> str:
    """A number of bytes in a sentence: ``35 bytes``, ``3.00M``."""
    return human_size(n) + ("" if n >= 1024 else " bytes")


def human_size(n: float) -> str:
    """A size as DVC prints it (``dvc du``, ``dvc ls --size``): 1024-based, k/M/G/T."""
    from tqdm import tqdm  # DVC's own naturalsize is this call

    return f"{n:.0f}" if n < 1024 else str(tqdm.format_sizeof(n, divisor=1024))


def elapsed(seconds: float) -> str:
    """A duration as rclone prints it: ``0.4s``, ``12s``, ``3m05s``, ``1h02m``."""
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"
