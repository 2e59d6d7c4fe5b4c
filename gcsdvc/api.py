"""The Python API: find synced experiment files from analysis code.

``gcsdvc.path("exp1", "metrics.json")`` gives the local file, after checking
that it is synced and unmodified; errors say what to run. The manifest is the
one the CLI uses (``params.yaml`` at the DVC root above the current folder)
unless ``manifest=`` names another file or passes a loaded :class:`Manifest`.

Calls cost about a dictionary look-up, the first pass included: the API keeps one
survey per process, keyed by what it read. The parsed manifest is kept under its
file's stat (mtime, size, inode); the repository's hash and stage caches in
``.dvc/tmp`` (each file's md5 and parsed stage, under that file's stat, as a sync
verified them) are read once and again only when their own files change; each
verified file is kept under the stat of the file and of its stage. A file whose
stat or stage's stat differs from what was read is looked at afresh, so a change
to the manifest, a stage or a data file is seen.
"""

from __future__ import annotations

import os
import shlex
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from gcsdvc import fixes
from gcsdvc.errors import ModifiedError, NotSyncedError, UnknownResourceError
from gcsdvc.expand import expand_offline
from gcsdvc.files import hash_cache_path, read_json_cache, stage_index_path
from gcsdvc.manifest import (
    DEFAULT_MANIFEST,
    Manifest,
    Resource,
    did_you_mean,
    load_manifest,
    manifest_path,
    match_files,
    path_problem,
)
from gcsdvc.stages import STAGE_SUFFIX, vouched

if TYPE_CHECKING:
    from gcsdvc.status import FileStatus

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
    loaded = _loaded(manifest)
    found = loaded.manifest
    known = loaded.targets.get((name, file))  # a file asked before: (local, rel, source, entry)
    if known is None:
        res = loaded.get(name)
        listed = _listed(res, file, loaded.files(res))
        if listed is not None:
            rel = found.local(res, listed)
            local = f"{loaded.root}{os.sep}{rel}"
            known = loaded.targets[(name, file)] = (local, rel, res.source(listed), res)
    else:
        res, listed = known[3], file
    if known is not None:
        local = known[0]
        signature = _verified_signature(local)
        if signature is not None:
            hit = _VERIFIED.get(local)
            if hit is not None and hit[0] == signature and hit[1] == known[2]:
                return hit[2]
            if _in_place(loaded, known[1], known[2], signature):
                target = loaded.root_path / known[1]
                _VERIFIED[local] = (signature, known[2], target)
                return target
    from gcsdvc.status import State  # the full check, off the quick path

    item = _checked(found, res, listed)
    command = fixes.shown([fixes.sync(item.subject(res))])
    why = f"run: {command}"
    # What a sync brings without replacing anything of the user's.
    if sync and item.state in (
        State.NOT_SYNCED,
        State.MISSING,
        State.SOURCE_MOVED,
        State.SUPERSEDED,
    ):
        failures = _sync(found, res)
        item = _checked(found, res, listed)
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
    if item.state is State.SUPERSEDED:
        raise NotSyncedError(
            f"{name}: {item.local} is not the recorded version ({item.note}); {why}"
        )
    if item.state is State.IN_REMOTE:
        pull = f"dvc pull {shlex.quote(item.stage_file)}"
        raise NotSyncedError(
            f"{name}: {item.local} is archived, {item.note} only; '{pull}' fetches it"
        )
    if item.state is State.MODIFIED:
        raise ModifiedError(
            f"{name}: the local copy {item.local} differs from {item.stage_file} ({item.note}); "
            f"'{fixes.shown(item.fix(res))}' restores the recorded copy"
        )
    target = found.root.absolute() / item.local
    if listed is not None:
        signature = _verified_signature(str(target))
        if signature is not None:
            _VERIFIED[str(target)] = (signature, item.source, target)
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
# manifest file -> its signature when parsed, the manifest and its look-ups
_MANIFESTS: dict[Path, tuple[Signature, Manifest, _Loaded, str]] = {}
_GIVEN: dict[int, _Loaded] = {}  # look-ups of Manifest objects passed in, by id (held here)
# local file -> the signatures of the file and its stage when found current (see
# _verified_signature), the source it was found to hold, and the path to return
_VERIFIED: dict[str, tuple[tuple[int, ...], str, Path]] = {}
# working folder -> the manifest found from there: looked for again once that file changes
# (a DVC repository made or removed between the two, with it unchanged, is not seen)
_FOUND: dict[str, Path] = {}
# working folder -> for it and each parent, resolved: its .dvc folder and params.yaml
_ROOTS: dict[str, tuple[tuple[str, Path], ...]] = {}


@dataclass(frozen=True)
class _Survey:
    """A repository's hash cache and stage index as read, under their own files' signatures."""

    key: tuple[Signature | None, Signature | None]
    hashes: dict[str, Any]  # data path -> [the file's signature, md5]
    stages: dict[str, Any]  # data path -> [its stage file's signature, out md5, source]


class _Loaded:
    """One manifest and what path() looks up in it: entries by name, each entry's files."""

    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest
        self.root_path = manifest.root.absolute()
        self.root = str(self.root_path)
        self.caches = (str(hash_cache_path(manifest.root)), str(stage_index_path(manifest.root)))
        self.survey: _Survey | None = None
        self._by_name: dict[str, Resource] = {}
        for res in reversed(manifest.resources):  # the first of a name wins, as in get()
            self._by_name[res.name] = res
        self._files: dict[int, frozenset[str]] = {}
        # (name, file) of a listed file -> its absolute and repo-relative paths, its source,
        # its entry
        self.targets: dict[tuple[str, str], tuple[str, str, str, Resource]] = {}

    def get(self, name: str) -> Resource:
        res = self._by_name.get(name)
        return res if res is not None else self.manifest.get(name)  # get() words the error

    def files(self, res: Resource) -> frozenset[str]:
        found = self._files.get(res.index)
        if found is None:
            found = self._files[res.index] = frozenset(res.files or ())
        return found

    def surveyed(self, again: bool = False) -> _Survey:
        """The hash cache and stage index as read; ``again``: read again if their files changed.

        An entry vouches for a file only under the file's own stat, so entries read
        earlier are never wrong, at worst missing: the caller asks ``again`` then.
        """
        if self.survey is None or again:
            key = (_signature(self.caches[0]), _signature(self.caches[1]))
            if self.survey is None or self.survey.key != key:
                hashes, stages = (read_json_cache(Path(p)) for p in self.caches)
                self.survey = _Survey(key, hashes, stages)
        return self.survey


def _signature(file: Path | str) -> Signature | None:
    try:
        st = os.stat(file)  # noqa: PTH116 - a str path too: no PurePath per call
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _verified_signature(local: str) -> tuple[int, ...] | None:
    """The signatures of a regular file and of its stage, as one tuple (mtime, size, inode
    of each); None when either is not there."""
    try:
        st = os.stat(local)  # noqa: PTH116 - see _signature
        stage = os.stat(local + STAGE_SUFFIX)  # noqa: PTH116
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino, stage.st_mtime_ns, stage.st_size, stage.st_ino)


def _in_place(loaded: _Loaded, local: str, source: str, signature: tuple[int, ...]) -> bool:
    """Whether the file at ``local`` is the synced copy of ``source``: the hash cache and
    the stage index vouch for it under the very stats found now
    (:func:`gcsdvc.stages.vouched`, the rule the no-op snapshot proves files by).

    A file they do not vouch for is left to :func:`path`'s full check.
    """
    data, stage = [*signature[:3]], [*signature[3:]]
    for again in (False, True):
        survey = loaded.surveyed(again)
        if vouched(data, stage, survey.hashes.get(local), survey.stages.get(local)) == source:
            return True
    return False


def _manifest(manifest: ManifestArg) -> Manifest:
    return _loaded(manifest).manifest


def _loaded(manifest: ManifestArg) -> _Loaded:
    """The manifest, parsed once per process and again only when its file changes."""
    if isinstance(manifest, Manifest):
        given = _GIVEN.get(id(manifest))
        if given is None or given.manifest is not manifest:
            if len(_GIVEN) > 16:
                _GIVEN.clear()
            given = _GIVEN[id(manifest)] = _Loaded(manifest)
        return given
    here = os.getcwd() if manifest is None else ""  # noqa: PTH109 - a str, _FOUND's key
    file = _FOUND.get(here) if manifest is None else None
    if file is not None:  # while it is unchanged, the manifest found from here before
        cached = _MANIFESTS.get(file)
        if cached is not None and cached[0] == _signature(cached[3]):
            return cached[2]
    file = _default_file(here) if manifest is None else None
    file = file or manifest_path(manifest, how="pass manifest=PATH")
    cached = _MANIFESTS.get(file)
    signature = _signature(file)
    if manifest is None:
        _FOUND[here] = file
    if cached is not None and signature is not None and cached[0] == signature:
        return cached[2]
    loaded = _Loaded(load_manifest(file))
    if signature is not None:
        _MANIFESTS[file] = (signature, loaded.manifest, loaded, str(file))
    return loaded


def _default_file(here: str) -> Path | None:
    """``params.yaml`` at the DVC root at or above the working folder ``here``, as
    :func:`~gcsdvc.manifest.manifest_path` finds it, for one ``stat`` per folder looked at
    (the working folder is resolved once); None when there is none (its error follows)."""
    folders = _ROOTS.get(here)
    if folders is None:
        resolved = Path(here).resolve()
        folders = _ROOTS[here] = tuple(
            (os.path.join(folder, ".dvc"), folder / DEFAULT_MANIFEST)  # noqa: PTH118
            for folder in (resolved, *resolved.parents)
        )
    for dvc, manifest in folders:
        try:
            if stat.S_ISDIR(os.stat(dvc).st_mode):  # noqa: PTH116 - see _signature
                return manifest
        except OSError:
            continue
    return None


def _listed(res: Resource, file: str, files: frozenset[str] = frozenset()) -> str | None:
    """``file`` as listed in the entry (None for a whole-prefix entry); unknown files fail.

    ``files``: the entry's files as a set, when the caller keeps one.
    """
    if res.files is None:
        if path_problem(file, trailing_slash=False):
            raise UnknownResourceError(f"invalid file name {file!r} for experiment {res.name!r}")
        return None
    if file in files or file in res.files or any(match_files(res.patterns, [file]).values()):
        return file  # a listed file, or one a pattern of the entry matches
    hint = did_you_mean(file, res.files, cutoff=0.5)
    if not hint:
        more = ", ..." if len(res.files) > 5 else ""
        hint = f"its files: {', '.join(res.files[:5])}{more}"
    raise UnknownResourceError(f"experiment {res.name!r} has no file {file!r}; {hint}")


def _checked(manifest: Manifest, res: Resource, file: str | None) -> FileStatus:
    """One file's state as ``status --offline`` finds it, from a survey of it alone."""
    from gcsdvc.status import local_states
    from gcsdvc.survey import survey_local

    (item,) = local_states(survey_local(manifest, [(res, file, manifest.local(res, file))]))
    return item


def _sync(manifest: Manifest, res: Resource) -> dict[str, list[str]]:
    """Sync one experiment; the failure messages by source."""
    from gcsdvc.find import exact_pattern
    from gcsdvc.sync import sync

    failures: dict[str, list[str]] = {}
    for failure in sync(manifest, [exact_pattern(res.name)]).failures:
        failures.setdefault(failure.source, []).append(f"sync failed: {failure.message}")
    return failures
