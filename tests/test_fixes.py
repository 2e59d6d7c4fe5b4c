"""The one table of what the user is told to run, cell by cell (pure, in process)."""

from __future__ import annotations

import itertools

import pytest

from gcsdvc import fixes
from gcsdvc.model import State

SYNC = ("gcsdvc sync", "exp 1")
PUSH = ("dvc push", "")


def subject(
    folder: bool,
    skip: bool,
    pinned: bool,
    holds: bool,
    to_remote: bool = False,
    gone: bool = False,
    removed: bool = False,
) -> fixes.Subject:
    return fixes.Subject(
        "exp 1", "data/a b", "data/a b.dvc", folder, skip, pinned, holds, to_remote, gone, removed
    )


def expected(state: State, s: fixes.Subject) -> list[fixes.Step]:
    """The fixes, as a reader would state them."""
    push = [] if s.pinned or s.to_remote else [PUSH]  # archived: already in the remote
    if s.holds_object:
        return [SYNC]  # the file is the object's bytes: a sync records it as it is
    if state is State.BROKEN_STAGE:
        return [("rm", s.stage_file), SYNC]
    if state is State.UNTRACKED and s.removed_stage:  # HEAD's stage has the recorded version
        return [("git checkout HEAD --", s.stage_file), SYNC]
    if state in (State.MODIFIED, State.UNTRACKED):
        return [("rm -r" if s.folder else "rm", s.local), SYNC]
    if state in (State.MISSING, State.METADATA_UPSTREAM):
        return [SYNC]  # the same bytes come back: nothing to push
    if state is State.SUPERSEDED and not s.recorded_gone:
        return [SYNC] if s.skip_if_exist else [SYNC, *push]  # the recorded bytes, or upstream's
    if state in (State.NOT_SYNCED, State.SOURCE_MOVED, State.STALE_STAGE):
        return [SYNC, *push]
    if state in (State.CHANGED_UPSTREAM, State.SUPERSEDED):  # the recorded version is gone too
        if not s.skip_if_exist:
            return [SYNC, *push]
        return [("gcsdvc update", s.name), *push]
    return []


FLAGS = list(itertools.product((False, True), repeat=7))
CELLS = [(state, *flags) for state in State for flags in FLAGS]


@pytest.mark.parametrize(
    ("state", "folder", "skip", "pinned", "holds", "to_remote", "gone", "removed"),
    CELLS,
    ids=[f"{state}-{''.join(str(int(b)) for b in flags)}" for state in State for flags in FLAGS],
)
def test_fix_table(
    state: State,
    folder: bool,
    skip: bool,
    pinned: bool,
    holds: bool,
    to_remote: bool,
    gone: bool,
    removed: bool,
) -> None:
    s = subject(folder, skip, pinned, holds, to_remote, gone, removed)
    assert fixes.fix(state, s) == expected(state, s)


def test_a_recorded_version_gone_is_said() -> None:
    gone = subject(False, False, True, False, gone=True)
    assert fixes.remark(State.SUPERSEDED, gone) == (
        "the recorded version is neither in the DVC cache nor in the bucket; "
        "'gcsdvc sync' takes today's object instead"
    )
    assert fixes.remark(State.MISSING, gone) is None
    assert fixes.remark(State.SUPERSEDED, subject(False, False, True, False)) is None
    removed = subject(False, True, True, False, removed=True)
    assert fixes.remark(State.UNTRACKED, removed) == (
        "its stage file was removed; git's HEAD has it, and with it the recorded version "
        "('gcsdvc sync --force' takes today's object instead)"
    )
    assert fixes.remark(State.UNTRACKED, subject(False, True, True, True, removed=True)) is None


def test_shown_is_one_shell_line() -> None:
    steps = fixes.fix(State.MODIFIED, subject(False, True, False, False))
    assert fixes.shown(steps) == "rm 'data/a b' && gcsdvc sync 'exp 1'"
    assert fixes.shown([SYNC, PUSH]) == "gcsdvc sync 'exp 1' && dvc push"
    assert fixes.shown([]) == ""
    archived = subject(False, False, False, False, to_remote=True)
    assert fixes.shown(fixes.fix(State.CHANGED_UPSTREAM, archived)) == "gcsdvc sync 'exp 1'"
