"""The one exception hierarchy of gcsdvc, and the exit codes the CLI maps it to.

Exit codes:

* ``0`` -- everything asked for was done;
* ``1`` -- an operation failed (storage, DVC, a file that could not be synced);
* ``2`` -- the manifest or the command line is invalid; nothing was changed.
"""

from __future__ import annotations

import os
from pathlib import Path

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class GcsdvcError(Exception):
    """Base class of every error gcsdvc raises on purpose."""

    exit_code = EXIT_FAILED


class ManifestError(GcsdvcError):
    """The manifest cannot be read or is invalid; ``problems`` holds one line each."""

    exit_code = EXIT_USAGE

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class UnknownResourceError(GcsdvcError):
    """A name on the command line or in an API call matches no manifest entry or file."""

    exit_code = EXIT_USAGE


class NotTrackedError(UnknownResourceError):
    """A local path that no gcsdvc stage describes."""


class UsageError(GcsdvcError):
    """A command-line argument or API argument is invalid (a malformed ``gs://`` URL...)."""

    exit_code = EXIT_USAGE


class StorageError(GcsdvcError):
    """Cloud Storage could not be reached or refused a request."""


class ChecksumMismatch(StorageError):
    """The downloaded bytes are not the object's bytes."""


class DvcRepoError(GcsdvcError):
    """The DVC workspace is missing, locked, or in a state gcsdvc cannot work with."""


class NotARepoError(DvcRepoError):
    """There is no DVC repository where one is needed: a usage error, like a bad argument."""

    exit_code = EXIT_USAGE


class LockedError(DvcRepoError):
    """Another gcsdvc or dvc process holds the repository lock."""


class NotSyncedError(GcsdvcError):
    """The file is in the manifest but not on disk yet."""


class ModifiedError(GcsdvcError):
    """The local copy differs from what its stage records."""


class ListingError(StorageError):
    """A prefix could not be listed; every file of the entry that needed it shares the error."""


class NotAttemptedError(StorageError):
    """Storage went away during a sync; this object was not tried (the cause is the message)."""


class ArchiveError(GcsdvcError):
    """The DVC remote cannot take archived objects: there is none, or it keeps files by path."""


class RefusedNameError(GcsdvcError):
    """An object whose name DVC cannot carry (see :func:`gcsdvc.manifest.unsafe_name`)."""


class LocalChangesError(GcsdvcError):
    """A local file is in the way: untracked, or edited since its stage was written.

    gcsdvc leaves it as it is; ``fix`` says how to replace it.
    """

    def __init__(self, path: str, why: str, fix: str) -> None:
        self.path = path
        self.fix = fix
        super().__init__(f"{path} {why}; kept. {fix}")


def local_fault(exc: OSError) -> str:
    """One line for a fault of this machine's files (a full disk, a read-only folder...).

    Names the path and the cause, and says it is local: never to be taken for
    Cloud Storage's answer.
    """
    cause = exc.strerror or str(exc) or type(exc).__name__
    if exc.filename is None:
        return f"on this machine: {cause}"
    path = os.fsdecode(exc.filename)
    inside = os.path.relpath(path) if Path(path).is_absolute() else path
    shown = path if inside.startswith("..") else inside
    return f"local file {shown}: {cause}"
