"""The data folder as last proven unchanged, so that a no-op skips the per-file work.

Planning reads every stage, looks up every file's hash and compares each file:
about 100 µs a file, 10 s for 100,000 files. When a sync or a no-op leaves every
selected file unchanged, :func:`record` keeps a fingerprint in ``.dvc/tmp``: what
the answer depended on (the manifest, the selection, the pinning mode, git's
HEAD) and a digest of the name, mtime, size and inode of every entry below the
data folder. The next run whose fingerprint and digest match
(:func:`unchanged`) answers "all unchanged" for one ``stat`` per entry.

A fingerprint is recorded only when the walk that takes it proves it: every
selected file and its stage have the very stat under which the file's md5 was
checked against the stage (the hash and stage caches in ``.dvc/tmp``), and the
data folder holds nothing else but ``.gitignore`` files, so there is no orphan,
leftover or foreign stage to report. Any change (a touched file, a new file, an
edited stage, a commit, another manifest) misses, and the full check runs. Like
DVC's state db, this trusts a file whose mtime, size and inode are unchanged.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import subprocess
from array import array
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gcsdvc import files, stages
from gcsdvc.compare import needs_listing
from gcsdvc.manifest import Manifest
from gcsdvc.workspace import HashCache

# Part of every fingerprint: a change to what is recorded, or to the rules that
# decide "unchanged", bumps it so that older snapshots miss.
SCHEMA = 2  # 2: the .gitignore files above the data folder count, and git's view
_IGNORE_FILE = ".gitignore"


@dataclass(frozen=True)
class Snapshot:
    """What the last proven no-op found, besides "every selected file is unchanged"."""

    quiet: bool  # no file needs a listing (see :func:`gcsdvc.compare.needs_listing`)
    unfrozen: int  # selected stages a user unfroze
    # The signature of the stage cache file that held the verified stages: while it
    # is unchanged, its entries are the selected stages (see stages.cached_stages).
    stage_cache: list[int] | None = None


Lookup = Callable[[str], Any]  # a cache entry by repo-relative data path: [signature, value]


@dataclass(frozen=True)
class Ledger:
    """What was verified: each file's [signature, md5] and each stage's [signature, mapping]."""

    hashed: Lookup
    parsed: Lookup
    stage_cache: list[int] | None  # the signature of the stage cache file ``parsed`` reads, if so


def _file(root: Path) -> Path:
    return root / ".dvc" / "tmp" / "gcsdvc-snapshot.json"


def applies(manifest: Manifest) -> bool:
    """Whether a snapshot can stand for the plan: file entries only, no glob patterns.

    Patterns are expanded against the bucket or the stages, and whole-prefix
    imports are DVC's to check; both take the full path.
    """
    return not any(res.patterns or res.files is None for res in manifest.resources)


def fingerprint(manifest: Manifest, names: Sequence[str], pinned: bool) -> str:
    """Everything besides the data folder that a plan's answer depends on."""
    head = _head(manifest.root)
    what: tuple[object, ...] = (SCHEMA, str(manifest.path), str(manifest.root))
    what += (manifest.data_dir, manifest.pin_generations, manifest.resources)
    what += (tuple(names), pinned, head, _ignore_files(manifest.data_path))
    return hashlib.sha256(repr(what).encode("utf-8", "surrogateescape")).hexdigest()


def _ignore_files(data: Path) -> list[list[int] | None]:
    """The signatures of the ``.gitignore`` files above the data folder, up to git's work
    tree, and of its ``info/exclude``: a rule there may hide a data file or stop hiding it.
    (The data folder's own ``.gitignore`` files are in its :func:`tree`.)
    """
    found = []
    for folder in data.parents:
        found.append(_signature(folder / _IGNORE_FILE))
        if (folder / ".git").exists():
            found.append(_signature(folder / ".git" / "info" / "exclude"))
            break
    return found


def _head(root: Path) -> str:
    """git's HEAD commit ("" outside git or before the first commit).

    Stages that differ from HEAD are compared with HEAD's (see
    :func:`gcsdvc.stages.recommitted`), so a commit changes the answer.
    """
    try:
        res = subprocess.run(
            ["git", "rev-parse", "-q", "--verify", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return ""
    return res.stdout.strip()


def tree(folder: Path) -> str:
    """A digest of the name, mtime, size, inode and mode of every entry below ``folder``."""
    digest = hashlib.blake2b()
    for here, entries, nums in _walk(folder):
        _update(digest, here, entries, nums)
    return digest.hexdigest()


def state(manifest: Manifest, walked: str | None = None) -> str:
    """A digest of what another process changes when it syncs: the data folder (one
    ``stat`` per entry; ``walked``: its :func:`tree`, taken already), git's HEAD and
    DVC's config files (the pinning mode).

    While it is the same, a plan made earlier still stands (see :func:`gcsdvc.sync.sync`).
    """
    dvc = manifest.root / ".dvc"
    configs = [_signature(dvc / name) for name in ("config", "config.local")]
    what = (walked or tree(manifest.data_path), _head(manifest.root), configs)
    return hashlib.blake2b(repr(what).encode()).hexdigest()


def unchanged(
    manifest: Manifest, names: Sequence[str], pinned: bool, walked: str | None = None
) -> Snapshot | None:
    """The recorded snapshot when it applies and nothing it depends on changed, else None.

    ``walked``: the data folder's :func:`tree`, when the caller took it already.
    """
    path = _file(manifest.root)
    if not applies(manifest) or not path.is_file():
        return None
    found = files.read_json_cache(path)
    if found.get("key") != fingerprint(manifest, names, pinned):
        return None
    if found.get("tree") != (walked or tree(manifest.data_path)):
        return None
    unfrozen, cache = found.get("unfrozen"), found.get("stage_cache")
    if not isinstance(unfrozen, int):
        return None
    return Snapshot(
        found.get("quiet") is True, unfrozen, cache if isinstance(cache, list) else None
    )


def record(
    manifest: Manifest,
    names: Sequence[str],
    pinned: bool,
    selected: Mapping[str, bool],
    wanted: Collection[str],
    looked_up: bool,
    ledger: Ledger | None = None,
) -> bool:
    """Keep the fingerprint when the data folder proves every ``selected`` file unchanged.

    ``selected``: each selected file's repo-relative path and its entry's
    ``skip_if_exist``; ``wanted``: every path the whole manifest asks for;
    ``looked_up``: the plan looked up the object of a file in place. The caller
    has found every selected file unchanged (a plan, or the sync that placed
    them); this checks that what is on disk is what was verified: ``ledger``
    gives each file's (signature, md5) and each stage's (signature, mapping) as
    they were checked, by default from the caches in ``.dvc/tmp``.
    """
    root = manifest.root
    if not _file(root).parent.is_dir():
        return False
    ledger = ledger or _cached_ledger(root)
    tree = hashlib.blake2b()
    skip = len(str(root)) + 1
    quiet, unfrozen, proven = not looked_up, 0, 0
    for here, entries, nums in _walk(manifest.data_path):
        _update(tree, here, entries, nums)
        folder = here[skip:].replace(os.sep, "/")
        sigs = {
            name: nums[4 * i : 4 * i + 3]
            for i, name in enumerate(entries)
            if not stat.S_ISDIR(nums[4 * i + 3]) and name != _IGNORE_FILE
        }
        for name, sig in sigs.items():
            local = f"{folder}/{name}"
            stage_file = name.endswith(stages.STAGE_SUFFIX)
            if (local[: -len(stages.STAGE_SUFFIX)] if stage_file else local) not in wanted:
                return False  # an orphan, a leftover, a foreign stage: the full check tells
            if stage_file or local not in selected:
                continue
            raw = _verified(sig, sigs.get(stages.stage_path(name)), local, ledger)
            if raw is None:
                return False
            proven += 1
            unfrozen += raw.get("frozen") is not True
            generation = stages.first_entry(raw.get("deps")).get("version_id")
            quiet &= not needs_listing(selected[local], pinned, generation is not None)
    if proven != len(selected):
        return False  # a selected file is not there
    text = json.dumps(
        {
            "key": fingerprint(manifest, names, pinned),
            "tree": tree.hexdigest(),
            "quiet": quiet,
            "unfrozen": unfrozen,
            "stage_cache": ledger.stage_cache,
        }
    )
    with contextlib.suppress(OSError):  # only an optimisation
        files.atomic_write(_file(root), text, make_parent=False)
        return True
    return False


def _cached_ledger(root: Path) -> Ledger:
    """The ledger as the hash and stage caches in ``.dvc/tmp`` hold it."""
    stage_cache = files.stage_cache_path(root)
    before = _signature(stage_cache)
    parsed = files.read_json_cache(stage_cache)
    same = before is not None and before == _signature(stage_cache)
    return Ledger(HashCache(root).known.get, parsed.get, before if same else None)


def _signature(path: Path) -> list[int] | None:
    try:
        return files.file_signature(path.stat())
    except OSError:
        return None


def _verified(
    sig: list[int], stage_sig: list[int] | None, local: str, ledger: Ledger
) -> dict[str, Any] | None:
    """The stage's mapping when file and stage are as verified and agree, else None."""
    return stages.verified(sig, stage_sig, ledger.hashed(local), ledger.parsed(local))


def _walk(folder: Path) -> Iterator[tuple[str, list[str], list[int]]]:
    """Each folder below ``folder`` (itself first): its path, its entries' names and,
    per entry, (mtime_ns, size, inode, mode) as ``stat`` gives them (symlinks followed)."""
    todo = [str(folder)]
    while todo:
        here = todo.pop()
        names: list[str] = []
        nums: list[int] = []
        try:
            with _entries(here) as entries:
                for entry in entries:
                    try:
                        info = entry.stat()
                    except OSError:  # a dangling symlink
                        info = entry.stat(follow_symlinks=False)
                    names.append(entry.name)
                    nums += (info.st_mtime_ns, info.st_size, info.st_ino, info.st_mode)
                    if entry.is_dir(follow_symlinks=False) and entry.name != ".git":
                        todo.append(f"{here}{os.sep}{entry.name}")
        except OSError:  # not a folder, or unreadable: it reads as empty
            pass
        yield here, names, nums


@contextlib.contextmanager
def _entries(folder: str) -> Iterator[Iterator[os.DirEntry[str]]]:
    """The entries of ``folder``; where the system allows, of the open folder, so that each
    is stat'ed by its name alone (``fstatat``): a fifth less time than a stat by path,
    which the kernel resolves from the root for each of 200,000 entries."""
    if os.scandir not in os.supports_fd:  # Windows
        with os.scandir(folder) as entries:
            yield entries
        return
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with os.scandir(fd) as by_fd:
            yield by_fd
    finally:
        os.close(fd)


def _update(tree: Any, here: str, names: list[str], nums: list[int]) -> None:
    tree.update(os.fsencode(here + "\0" + "\0".join(names) + "\0\0"))
    try:
        tree.update(array("q", nums).tobytes())
    except OverflowError:  # an inode number past 2**63
        tree.update(repr(nums).encode())
