"""What the user is told to do in each state: one table, read by status, the API, ``which``
and the renderers (:mod:`gcsdvc.plan` decides what a sync does; this only says it).

A fix is a list of steps, (command, argument), in the order to run them.
Unpinned stages are shared through the DVC remote, so a fix that fetches new data
ends with ``dvc push``.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass

from gcsdvc.model import State

Step = tuple[str, str]  # (command, argument); "" for none


@dataclass(frozen=True)
class Subject:
    """What a fix names: the experiment, the paths, and the facts it depends on."""

    name: str  # the experiment
    local: str  # the data path, as it is to be shown
    stage_file: str  # the stage file, as it is to be shown
    folder: bool = False  # a whole-prefix import
    skip_if_exist: bool = True
    pinned: bool = True
    holds_object: bool = False  # untracked, with the listed object's very bytes
    to_remote: bool = False  # a sync archives it into the DVC remote: nothing to push
    recorded_gone: bool = False  # the recorded version is in neither the DVC cache nor the bucket
    removed_stage: bool = False  # untracked: its stage file was removed, git's HEAD has it


def sync(subject: Subject) -> Step:
    return ("gcsdvc sync", subject.name)


def _push(subject: Subject) -> list[Step]:
    return [] if subject.pinned or subject.to_remote else [("dvc push", "")]


def _remove(subject: Subject) -> list[Step]:
    # `dvc checkout` refuses pinned imports; sync restores them from the cache.
    return [("rm -r" if subject.folder else "rm", subject.local), sync(subject)]


def restore_stage(subject: Subject) -> Step:
    """Bring back the stage file git's HEAD has, and with it the version it records."""
    return ("git checkout HEAD --", subject.stage_file)


def _changed_upstream(subject: Subject) -> list[Step]:
    if not subject.skip_if_exist:
        return [sync(subject), *_push(subject)]
    return [("gcsdvc update", subject.name), *_push(subject)]


FIXES: dict[State, Callable[[Subject], list[Step]]] = {
    # Or resolve the conflict in it by hand.
    State.BROKEN_STAGE: lambda s: [("rm", s.stage_file), sync(s)],
    State.MODIFIED: _remove,
    State.UNTRACKED: _remove,
    # The same bytes: from the DVC cache, else the bucket; nothing to push.
    State.MISSING: lambda s: [sync(s)],
    # An earlier version the DVC cache keeps: the recorded one comes back, or upstream's.
    State.SUPERSEDED: lambda s: [sync(s), *([] if s.skip_if_exist else _push(s))],
    State.METADATA_UPSTREAM: lambda s: [sync(s)],
    State.NOT_SYNCED: lambda s: [sync(s), *_push(s)],
    State.SOURCE_MOVED: lambda s: [sync(s), *_push(s)],
    State.STALE_STAGE: lambda s: [sync(s), *_push(s)],
    State.CHANGED_UPSTREAM: _changed_upstream,
}
"""Each state a command fixes, and the steps; a state not here has none."""


# States whose fix would restore the recorded version, or take today's in its place.
_TAKES_TODAY = frozenset({State.SUPERSEDED, State.CHANGED_UPSTREAM})


def fix(state: State, subject: Subject) -> list[Step]:
    """The steps that fix ``subject`` in ``state``."""
    if subject.holds_object:
        return [sync(subject)]  # recorded as it is: nothing is downloaded or replaced
    if subject.recorded_gone and state in _TAKES_TODAY:
        return _changed_upstream(subject)  # only today's object can be had
    if subject.removed_stage and state is State.UNTRACKED:
        # Its .gitignore line went with it (`dvc remove`): the sync writes it again.
        return [restore_stage(subject), sync(subject)]
    rule = FIXES.get(state)
    return rule(subject) if rule is not None else []


def remark(state: State, subject: Subject) -> str | None:
    """What the user is told besides the state when the fix is not what it seems, or None:
    the recorded version can no longer be had, or a removed stage file still has it."""
    if subject.holds_object:
        return None
    if subject.recorded_gone and state in _TAKES_TODAY:
        return (
            "the recorded version is neither in the DVC cache nor in the bucket; "
            f"'{fix(state, subject)[0][0]}' takes today's object instead"
        )
    if subject.removed_stage and state is State.UNTRACKED:
        return (
            "its stage file was removed; git's HEAD has it, and with it the recorded version "
            "('gcsdvc sync --force' takes today's object instead)"
        )
    return None


def shown(steps: list[Step]) -> str:
    """The steps as one shell line."""
    return " && ".join(f"{c} {shlex.quote(a)}" if a else c for c, a in steps)
