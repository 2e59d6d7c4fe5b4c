"""Plain-text renderings of plans and results, for the CLI to print."""

from __future__ import annotations

import os
import shlex
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from gcsdvc.plan import Action, Plan

if TYPE_CHECKING:
    from gcsdvc.status import Report, ResourceStatus
    from gcsdvc.sync import SyncResult

_ORDER = list(Action)
_PAST = {
    Action.ADD: "added",
    Action.UPDATE: "updated",
    Action.RESTORE: "restored",
    Action.METADATA: "re-described",
    Action.MOVE: "moved",
    Action.PRUNE: "pruned",
}


def plan_lines(plan: Plan, verbose: bool = False) -> Iterator[str]:
    """One line per experiment with its counts; with ``verbose`` one more per file."""
    counts = plan.counts()
    width = max((len(name) for name in counts), default=0)
    by_name: dict[str, list[str]] = {}
    for item in plan.items:
        if verbose:
            note = f"  ({item.note})" if item.note else ""
            by_name.setdefault(item.name, []).append(
                f"    {item.action.value:<9} {item.local}  <- {item.source}{note}"
            )
    for name, counter in counts.items():
        parts = [f"{action.value} {counter[action]}" for action in _ORDER if counter[action]]
        yield f"{name:<{width}}  {', '.join(parts)}"
        yield from by_name.get(name, [])


def summary_lines(
    result: SyncResult, dry_run: bool = False, verbose: bool = False, quiet: bool = False
) -> Iterator[str]:
    """The closing lines: what was done, what failed, what is left to do."""
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
    for warning in result.plan.warnings:
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
    plan = result.plan
    unfrozen = sum(1 for i in plan.items if i.file is not None and i.stage and not i.stage.frozen)
    if unfrozen:
        yield (
            f"{unfrozen} stage(s) not frozen (kept as you left them): 'dvc repro' and "
            "'dvc exp run' re-import them when the object changes; 'dvc freeze' them to stop that"
        )
    if result.removed:
        yield (
            f"removed {len(result.removed)} leftover file(s) no stage owns "
            "(a teammate moved or pruned them; the DVC cache keeps a copy)"
        )
    orphans = len(plan.of(Action.ORPHAN))
    if orphans:
        yield f"{orphans} stage(s) no longer in the manifest; 'gcsdvc sync --prune' removes them"
    if dry_run:
        todo = sum(1 for i in plan.items if i.action in _PAST)
        yield f"dry run: {todo} change(s) planned, nothing written"
        return
    done = [f"{result.done[a]} {word}" for a, word in _PAST.items() if result.done[a]]
    unchanged = len(plan.of(Action.UNCHANGED))
    done.append(f"{unchanged} unchanged")
    if result.failures:
        done.append(f"{len(result.failures)} failed")
    yield "sync: " + ", ".join(done)
    if verbose:
        yield f"storage retries: {result.retries}"


def status_lines(report: Report, root: Path) -> Iterator[str]:
    from gcsdvc.status import State

    rows = report.resources
    width = max([len("experiment"), *(len(r.resource.name) for r in rows)])
    yield f"{'experiment':<{width}}  files  state"
    for r in rows:
        extra = "; upstream not checked" if r.upstream_error else ""
        yield f"{r.resource.name:<{width}}  {len(r.files):>5}  {r.summary}{extra}"
    for r in rows:
        if r.ok:
            continue
        yield ""
        desc = one_line(r.resource.description)
        yield f"{r.resource.name}: {desc}" if desc else r.resource.name
        if r.upstream_error:
            yield f"  upstream not checked: {r.upstream_error}"
        bad = [f for f in r.files if f.state is not State.OK]
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
    if report.orphans:
        yield ""
        yield f"orphans: {len(report.orphans)} stage(s) no longer in the manifest"
        for o in report.orphans:
            yield f"  {rel(root, o.local)}  <- {o.source}  (was {o.name})"
        yield "  fix: gcsdvc sync --prune"
    total = sum(len(r.files) for r in rows)
    not_ok = sum(1 for r in rows for f in r.files if f.state is not State.OK)
    errors = sum(1 for r in rows if r.upstream_error)
    problems = [
        f"{not_ok} of {total} file(s) need attention" if not_ok else "",
        f"{len(report.orphans)} orphan stage(s)" if report.orphans else "",
        f"{len(report.untracked)} untracked file(s)" if report.untracked else "",
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


def fix_lines(status: ResourceStatus, root: Path, pinned: bool = True) -> Iterator[str]:
    """The commands that fix an experiment's files, in the order to run them, paths merged."""
    merged: dict[str, list[str]] = {"rm": [], "dvc update": [], "gcsdvc sync": [], "dvc push": []}
    for f in status.files:
        for command, arg in f.fix(status.resource, pinned):
            shown = arg if command == "gcsdvc sync" or not arg else rel(root, arg)
            if shown not in merged[command]:
                merged[command].append(shown)
    lines = [" ".join([c, *(quote(a) for a in args if a)]) for c, args in merged.items() if args]
    for n, line in enumerate(lines):
        yield ("  fix: " if n == 0 else "       ") + line


def rel(root: Path, local: str) -> str:
    """A repo-relative path as seen from the current folder."""
    return os.path.relpath(root / local)


def quote(text: str) -> str:
    return shlex.quote(text)


def one_line(text: str) -> str:
    return " ".join(text.split())


def amount(files: int, size: int) -> str:
    return f"{files} file(s)" + (f", {human_size(size)}" if size else "")


def human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"
