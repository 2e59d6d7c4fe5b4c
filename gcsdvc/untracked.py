"""Files in the data folder that no stage owns and git would commit.

DVC keeps its data out of git through ``.gitignore`` lines. When a teammate
moves or prunes an entry and you pull, git drops the stage and the line but
leaves the data file: ``git add -A`` would then commit it. Such a leftover
whose bytes are in the DVC cache can go without losing anything; anything
else is the user's, and is only reported.
"""

from __future__ import annotations

import subprocess
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gcsdvc import stages
from gcsdvc.storage import file_md5

if TYPE_CHECKING:
    from dvc.repo import Repo

    from gcsdvc.manifest import Manifest


@dataclass(frozen=True)
class Untracked:
    """An untracked, unignored file below the data folder."""

    local: str  # repo-relative POSIX path
    cached: bool  # its bytes are in the DVC cache: removing it loses nothing

    @property
    def fix(self) -> str:
        if self.cached:
            return "gcsdvc sync removes it (a copy is in the DVC cache)"
        return f"move it out of the data folder, or 'dvc add {self.local}'"


def find(manifest: Manifest, wanted: Collection[str]) -> list[str]:
    """Files below the data folder that ``git add -A`` would add, except stage files,
    .gitignore files and the destinations in ``wanted`` (those are the sync's to judge).
    """
    root = manifest.root
    if not manifest.data_path.is_dir():
        return []
    try:
        res = subprocess.run(
            ["git", "ls-files", "-z", "--others", "--exclude-standard", "--", manifest.data_dir],
            cwd=root,
            capture_output=True,
            check=False,
        )
    except OSError:
        return []
    if res.returncode:
        return []  # not a git repository: nothing would be committed
    found = []
    for raw in res.stdout.split(b"\0"):
        local = raw.decode("utf-8", "surrogateescape")
        name = local.rsplit("/", 1)[-1]
        if not local or name == ".gitignore" or name.endswith(stages.STAGE_SUFFIX):
            continue
        if local not in wanted:
            found.append(local)
    return found


def classify(repo: Repo, root: Path, locals_: list[str]) -> list[Untracked]:
    """Each file, with whether the DVC cache holds its bytes."""
    odb = repo.cache.local
    out = []
    for local in locals_:
        try:
            md5 = file_md5(root / local)
        except OSError:
            out.append(Untracked(local, cached=False))
            continue
        out.append(Untracked(local, cached=Path(odb.oid_to_path(md5)).is_file()))
    return out
