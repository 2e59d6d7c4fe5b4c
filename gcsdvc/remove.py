"""``gcsdvc rm``: entries out of the manifest, with their stages, data and ``.gitignore`` lines.

The manifest keeps every other byte (:func:`gcsdvc.manifest_edit.remove_entries`).
Data is deleted only when the DVC cache holds exactly its bytes, so the removal
can be undone: the manifest and stages come back from git, the data from the
cache with ``gcsdvc sync NAME`` (``dvc checkout`` looks for a pinned import's
bytes in DVC's cache of versioned objects, ``.dvc/cache/fs``, which a sync
does not fill).
A file edited since it was synced, or whose bytes the cache lacks, stops the
command before anything is written. ``keep_data`` removes the stages only and
keeps the data's ``.gitignore`` lines, so git goes on ignoring the kept files.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gcsdvc import stages
from gcsdvc.errors import LocalChangesError
from gcsdvc.manifest import Manifest, parse_manifest
from gcsdvc.manifest_edit import remove_entries, write_atomic
from gcsdvc.model import State
from gcsdvc.plan import desired
from gcsdvc.remote import forget_push_cache
from gcsdvc.stages import ImportStage
from gcsdvc.storage import file_md5
from gcsdvc.sync import track
from gcsdvc.workspace import Workspace, locked_repo, read_disks, read_folders

if TYPE_CHECKING:
    from dvc.repo import Repo


@dataclass(frozen=True)
class Removed:
    """One entry taken out: the data paths (repo-relative) whose stages went."""

    name: str
    locals: tuple[str, ...]


@dataclass
class Removal:
    manifest: Path
    removed: list[Removed]
    keep_data: bool
    dry_run: bool
    to_git_add: list[str] = field(default_factory=list)  # the user should `git add` them
    staged: list[str] = field(default_factory=list)  # `git add`ed (DVC's core.autostage)

    def as_json(self) -> dict[str, Any]:
        """``gcsdvc rm --json`` (docs/reference.md)."""
        return {
            "dry_run": self.dry_run,
            "keep_data": self.keep_data,
            "removed": [{"name": r.name, "paths": list(r.locals)} for r in self.removed],
            "to_git_add": self.to_git_add,
            "staged": self.staged,
        }


def remove(
    manifest: Manifest, names: Sequence[str], *, keep_data: bool = False, dry_run: bool = False
) -> Removal:
    """Take the entries called ``names`` out of the manifest, with their stages and data.

    Unknown names fail with close matches, and a file that could not be brought
    back from the DVC cache fails (unless ``keep_data``), before anything is written.
    """
    chosen = [manifest.get(name) for name in dict.fromkeys(names)]
    shown = manifest.path.name
    text = manifest.path.read_text(encoding="utf-8")
    new_text = remove_entries(text, [res.index for res in chosen], shown)
    rest = parse_manifest(new_text, manifest.path, manifest.root)
    root = manifest.root
    ours, _ = stages.scan(root, manifest.data_path)
    wanted = desired(rest).keys()
    removed = [
        Removed(
            res.name,
            tuple(sorted(local for local in ours if _of(ours[local], res.name, local, wanted))),
        )
        for res in chosen
    ]
    result = Removal(manifest.path, removed, keep_data, dry_run)
    targets = {local: ours[local] for entry in removed for local in entry.locals}
    if dry_run:
        if not keep_data:
            with stages.open_repo(root) as repo:
                _refuse_unrecoverable(repo, root, targets)
        return result
    with locked_repo(root) as repo:
        if not keep_data:
            _refuse_unrecoverable(repo, root, targets)
        # The manifest first: when it cannot be written nothing has changed; a stage that
        # cannot be removed after it is an orphan, which status names with its fix.
        write_atomic(manifest.path, new_text)
        with Workspace(repo, root, manifest.data_path) as ws:
            for local in targets:
                if keep_data:
                    ws.unstage(local)
                else:
                    ws.remove(local)
        changed = ws.changed | {manifest.path.relative_to(root).as_posix()}
        result.staged, result.to_git_add = track(repo, root, changed)
        if targets:
            forget_push_cache(repo)
    return result


def _of(stage: ImportStage, name: str, local: str, wanted: Collection[str]) -> bool:
    """Whether ``stage`` (at ``local``) is the removed entry's and no other entry wants it."""
    return stage.identity is not None and stage.identity.name == name and local not in wanted


def _refuse_unrecoverable(repo: Repo, root: Path, targets: dict[str, ImportStage]) -> None:
    """Refuse to delete data the DVC cache could not bring back: edited, or not cached."""
    files = [(local, stage, False) for local, stage in targets.items() if not stage.is_folder]
    disks = read_disks(root, files)
    odb = repo.cache.local
    for local, stage, _ in files:
        disk = disks[local]
        if not disk.exists:
            continue
        md5 = disk.md5 or (file_md5(root / local) if disk.is_file else None)
        if stage.md5 is not None and md5 != stage.md5:
            why = "was edited since it was synced" if disk.is_file else "is not a regular file"
            raise _unrecoverable(local, why)
        if md5 is None or not Path(odb.oid_to_path(md5)).is_file():
            raise _unrecoverable(local, "has bytes the DVC cache does not hold")
    folders = [local for local, stage in targets.items() if stage.is_folder]
    for local, found in read_folders(repo, root, folders).items():
        if found.state is State.MODIFIED:
            raise _unrecoverable(local, f"was changed since it was synced ({found.note})")
        stage = targets[local]
        if (root / local).exists() and not _folder_cached(odb, stage.md5):
            raise _unrecoverable(local, "has files the DVC cache does not hold")


def _folder_cached(odb: Any, md5: str | None) -> bool:
    """Whether the DVC cache holds the folder ``md5`` (a ``.dir`` hash) and each of its files."""
    from dvc_data.hashfile import load
    from dvc_data.hashfile.hash_info import HashInfo
    from dvc_data.hashfile.tree import Tree

    if md5 is None:
        return False
    try:
        tree = load(odb, HashInfo("md5", md5))
    except Exception:  # not in the cache, or not readable as a tree
        return False
    return isinstance(tree, Tree) and all(
        Path(odb.oid_to_path(info.value)).is_file() for _, _, info in tree
    )


def _unrecoverable(local: str, why: str) -> LocalChangesError:
    return LocalChangesError(
        local,
        f"{why}, so the DVC cache could not bring it back",
        "Move it out of the data folder first, or pass --keep-data (nothing was removed)",
    )
