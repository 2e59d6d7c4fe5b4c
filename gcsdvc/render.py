"""Plain-text renderings of plans and results, for the CLI to print."""

from __future__ import annotations

from collections.abc import Iterator

from gcsdvc.plan import Action, Plan
from gcsdvc.sync import SyncResult

_ORDER = list(Action)
_SKIPPED = "not attempted: "
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
    skipped = [f for f in result.failures if f.message.startswith(_SKIPPED)]
    for failure in result.failures:
        if failure not in skipped:
            yield f"failed: {failure.name}: {failure.source}: {failure.message}"
    if skipped:  # storage went away: one line, not one per object
        reason = skipped[0].message[len(_SKIPPED) :]
        yield f"failed: {len(skipped)} more object(s) not attempted: {reason}; run again later"
    if quiet:
        return
    plan = result.plan
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
