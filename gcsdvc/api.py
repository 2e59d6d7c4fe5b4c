"""The Python API: find synced experiment files from analysis code.

``gcsdvc.path("exp1", "metrics.json")`` gives the local file, after checking
that it is synced and unmodified; errors say what to run. The manifest is the
one the CLI uses (``params.yaml`` at the DVC root above the current folder)
unless ``manifest=`` names another file or passes a loaded :class:`Manifest`.

Calls cost about a dictionary look-up after the first: the parsed manifest and
each verified file are kept per process, keyed by the files' stat (mtime,
size, inode), so a change to the manifest, a stage or a data file is seen.
"""

from __future__ import annotations

import difflib
import os
import shlex
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from gcsdvc.errors import ModifiedError, NotSyncedError, UnknownResourceError
from gcsdvc.expand import expand_offline
from gcsdvc.manifest import (
    Manifest,
    Resource,
    load_manifest,
    manifest_path,
    match_files,
    path_problem,
)
from gcsdvc.stages import STAGE_SUFFIX

ManifestArg = Manifest | str | os.PathLike[str] | None

# google-api-core (which gcsfs brings in on a sync or an upstream check) warns on import
# that Google will stop supporting this Python version (3.10 from 2026): about Google's
# releases, not about anything a notebook calling gcsdvc can change. Only that warning,
# from that module, is hidden; the CLI hides Google's FutureWarnings in its own process.
warnings.filterwarnings(
    "ignore",
    message=r"You are using a (non-supported )?Python version",
    category=FutureWarning,
    module=r"google\.api_core\.",
)


@dataclass(frozen=True)
class Experiment:
    """One manifest entry as analysis code sees it."""

    name: str
    description: str
    source: str  # gs://BUCKET/PREFIX
    folder: Path  # the absolute local folder
    files: tuple[str, ...] | None  # None: the whole prefix is one folder import
    paths: tuple[Path, ...]  # the absolute local path of each file (the folder if whole)


def resources(manifest: ManifestArg = None) -> list[Experiment]:
    """Every experiment of the manifest, in manifest order."""
    found = expand_offline(_manifest(manifest))
    root = found.root.absolute()
    return [
        Experiment(
            name=res.name,
            description=res.description,
            source=res.url,
            folder=root / found.local(res),
            files=res.files,
            paths=tuple(root / found.local(res, f) for f in res.targets),
        )
        for res in found.resources
    ]


def path(name: str, file: str, *, manifest: ManifestArg = None, sync: bool = False) -> Path:
    """The absolute path of a synced, unmodified file of experiment ``name``.

    With ``sync=True`` a file not on disk yet is synced first (that experiment only).
    For a whole-prefix entry ``file`` is a path inside the prefix.
    Raises :class:`UnknownResourceError`, :class:`NotSyncedError` or :class:`ModifiedError`.
    """
    from gcsdvc.status import State, inspect

    found = _manifest(manifest)
    res = found.get(name)
    listed = _listed(res, file)
    if listed is not None:
        local = found.root.absolute() / found.local(res, listed)
        key = (local, res.source(listed))
        signature = _verified_signature(local)
        if signature is not None and _VERIFIED.get(key) == signature:
            return local
    item = inspect(found, res, listed)
    command = f"gcsdvc sync {shlex.quote(name)}"
    why = f"run: {command}"
    if sync and item.state in (State.NOT_SYNCED, State.MISSING, State.SOURCE_MOVED):
        failures = _sync(found, res)
        item = inspect(found, res, listed)
        messages = failures.get(item.source) or [m for ms in failures.values() for m in ms]
        why = "; ".join(messages) or f"'{command}' did not bring it"
    if item.state in (State.NOT_SYNCED, State.SOURCE_MOVED, State.FOREIGN):
        raise NotSyncedError(f"{name}: {item.local} is not synced yet; {why}")
    if item.state is State.UNTRACKED:
        raise NotSyncedError(
            f"{name}: {item.local} is a local file no stage records; "
            f"'{command}' keeps it, 'gcsdvc sync --force {shlex.quote(name)}' replaces it"
        )
    if item.state is State.MISSING:
        raise NotSyncedError(f"{name}: {item.local} is not on disk; {why}")
    if item.state is State.MODIFIED:
        raise ModifiedError(
            f"{name}: the local copy {item.local} differs from {item.stage_file} ({item.note}); "
            f"'rm {shlex.quote(item.local)} && {command}' restores the recorded copy"
        )
    target = found.root.absolute() / item.local
    if listed is not None:
        signature = _verified_signature(target)
        if signature is not None:
            _VERIFIED[(target, item.source)] = signature
    if listed is None:
        target = target / file
        if not target.is_file():
            raise UnknownResourceError(f"experiment {name!r} has no file {file!r} in {item.local}")
    return target


def open(  # gcsdvc.open, in the spirit of io.open
    name: str,
    file: str,
    mode: str = "rb",
    *,
    manifest: ManifestArg = None,
    sync: bool = False,
    **kwargs: Any,
) -> IO[Any]:
    """Open a synced file of experiment ``name`` for reading (see :func:`path`)."""
    if set(mode) & set("wax+"):
        raise ValueError(f"gcsdvc.open is read-only (mode {mode!r}); the files belong to DVC")
    return path(name, file, manifest=manifest, sync=sync).open(mode, **kwargs)


Signature = tuple[int, int, int]
_MANIFESTS: dict[Path, tuple[Signature, Manifest]] = {}
# (local file, source) -> the signatures of the file and its stage when found current
_VERIFIED: dict[tuple[Path, str], tuple[Signature, Signature]] = {}


def _signature(file: Path) -> Signature | None:
    try:
        st = file.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _verified_signature(local: Path) -> tuple[Signature, Signature] | None:
    data, stage = _signature(local), _signature(local.with_name(local.name + STAGE_SUFFIX))
    return None if data is None or stage is None else (data, stage)


def _manifest(manifest: ManifestArg) -> Manifest:
    """The manifest, parsed once per process and again only when its file changes."""
    if isinstance(manifest, Manifest):
        return manifest
    file = manifest_path(manifest, how="pass manifest=PATH")
    signature = _signature(file)
    cached = _MANIFESTS.get(file)
    if cached is not None and signature is not None and cached[0] == signature:
        return cached[1]
    found = load_manifest(file)
    if signature is not None:
        _MANIFESTS[file] = (signature, found)
    return found


def _listed(res: Resource, file: str) -> str | None:
    """``file`` as listed in the entry (None for a whole-prefix entry); unknown files fail."""
    if res.files is None:
        if path_problem(file, trailing_slash=False):
            raise UnknownResourceError(f"invalid file name {file!r} for experiment {res.name!r}")
        return None
    if file in res.files or any(match_files(res.patterns, [file]).values()):
        return file  # a listed file, or one a pattern of the entry matches
    close = difflib.get_close_matches(file, res.files, n=3, cutoff=0.5)
    if close:
        hint = f"did you mean {', '.join(map(repr, close))}?"
    else:
        more = ", ..." if len(res.files) > 5 else ""
        hint = f"its files: {', '.join(res.files[:5])}{more}"
    raise UnknownResourceError(f"experiment {res.name!r} has no file {file!r}; {hint}")


def _sync(manifest: Manifest, res: Resource) -> dict[str, list[str]]:
    """Sync one experiment; the failure messages by source."""
    from gcsdvc.find import exact_pattern
    from gcsdvc.sync import sync

    failures: dict[str, list[str]] = {}
    for failure in sync(manifest, [exact_pattern(res.name)]).failures:
        failures.setdefault(failure.source, []).append(f"sync failed: {failure.message}")
    return failures
