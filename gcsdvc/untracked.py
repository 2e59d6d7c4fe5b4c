"""What git sees in the data folder: stage files that differ from HEAD, and untracked files.

DVC keeps its data out of git through ``.gitignore`` lines. When a teammate
moves or prunes an entry and you pull, git drops the stage and the line but
leaves the data file: ``git add -A`` would then commit it. Such a leftover
whose bytes are in the DVC cache can go without losing anything
(:func:`remove_cached`); anything else is the user's, and is only reported.
Stage files that differ from HEAD are the ones DVC commands may have
re-recorded (see :func:`gcsdvc.stages.recommitted`).

One ``git status`` answers both, so a no-op sync costs one git call (none
outside a git repository or without a data folder).
"""

from __future__ import annotations

import subprocess
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gcsdvc.hashes import file_md5
from gcsdvc.stages import STAGE_SUFFIX

if TYPE_CHECKING:
    from dvc.repo import Repo

    from gcsdvc.workspace import Workspace


@dataclass(frozen=True)
class GitView:
    """Below the data folder, repo-relative POSIX paths."""

    changed: frozenset[str] = frozenset()  # stage files that differ from git's HEAD
    others: tuple[str, ...] = ()  # untracked, unignored files, stage files and .gitignore aside

    def unowned(self, owned: Collection[str]) -> list[str]:
        """The untracked files that are none of ``owned`` (destinations, stages' data)
        nor inside one (a whole-prefix import's folder)."""
        return [local for local in self.others if _owner(local, owned) is None]

    def exposed(self, ours: Collection[str]) -> list[str]:
        """The data of gcsdvc stages (``ours``) that git sees: their ``.gitignore``
        line is missing (a sync killed before it wrote them, a line deleted by hand, a
        merge that took the other side's file), so ``git add -A`` would commit them.
        A folder import is named once, for all of its files git sees."""
        found = (_owner(local, ours) for local in self.others)
        return list(dict.fromkeys(local for local in found if local is not None))


def _owner(local: str, owned: Collection[str]) -> str | None:
    """``local`` or the folder above it that is in ``owned``, else None."""
    while local:
        if local in owned:
            return local
        local = local.rpartition("/")[0]
    return None


NOTHING = GitView()
# No optional locks: a status must not take git's index lock from under a user's git.
_STATUS = ["git", "--no-optional-locks", "status", "--porcelain=v1", "-z", "--no-renames"]
_STATUS += ["--untracked-files=all", "--ignore-submodules"]


@dataclass(frozen=True)
class Untracked:
    """An untracked, unignored file below the data folder that no stage owns."""

    local: str  # repo-relative POSIX path
    cached: bool  # its bytes are in the DVC cache: removing it loses nothing

    @property
    def fix(self) -> str:
        if self.cached:
            return "gcsdvc sync removes it (a copy is in the DVC cache)"
        return f"move it out of the data folder, or 'dvc add {self.local}'"


def look(root: Path, data: Path) -> GitView:
    """What ``git status`` says about the data folder ``data`` (below ``root``)."""
    prefix = _prefix_in_work_tree(root)
    if prefix is None or not data.is_dir():
        return NOTHING
    try:
        res = subprocess.run(
            [*_STATUS, "--", data.relative_to(root)],
            cwd=root,
            capture_output=True,
            check=False,
        )
    except OSError:
        return NOTHING
    if res.returncode:
        return NOTHING
    changed: set[str] = set()
    others: list[str] = []
    for record in res.stdout.split(b"\0"):
        code, top = record[:2], record[3:].decode("utf-8", "surrogateescape")
        if not top.startswith(prefix):
            continue
        local = top[len(prefix) :]
        name = local.rsplit("/", 1)[-1]
        if name.endswith(STAGE_SUFFIX):
            if code != b"??":
                changed.add(local)
        elif code == b"??" and name != ".gitignore":
            others.append(local)
    return GitView(frozenset(changed), tuple(others))


def ignore_rules(root: Path, asked: list[str]) -> dict[str, str]:
    """The rule that makes git ignore each of ``asked`` (paths below ``root``), as
    ``FILE:LINE: PATTERN``; paths git does not ignore are left out. One ``git check-ignore``.

    ``--no-index``: a tracked path counts too, as DVC's own check counts it.
    """
    if not asked:
        return {}
    try:
        res = subprocess.run(
            ["git", "check-ignore", "--no-index", "-v", "-z", "--stdin"],
            cwd=root,
            input="\0".join(asked).encode("utf-8", "surrogateescape") + b"\0",
            capture_output=True,
            check=False,
        )
    except OSError:  # no git: nothing is known to be ignored
        return {}
    if res.returncode not in (0, 1):  # not a git repository, or git failed
        return {}
    fields = res.stdout.decode("utf-8", "surrogateescape").split("\0")
    rules: dict[str, str] = {}
    for n in range(0, len(fields) - 3, 4):
        source, line, pattern, path = fields[n : n + 4]
        if pattern.startswith("!"):  # -v shows the negation a path matched: not ignored
            continue
        rules[path] = f"{source}:{line}: {pattern}"
    return rules


def refuse_ignored(root: Path, data: Path, stage_files: list[str]) -> None:
    """Refuse a data folder, or stage files in it, that git ignores: their stages could
    never be committed, and DVC refuses them ("bad DVC file name ... is git-ignored").

    ``stage_files``: repo-relative POSIX paths of the stages a sync would keep.
    """
    from gcsdvc.errors import DvcRepoError

    if _prefix_in_work_tree(root) is None:
        return
    folder = data.relative_to(root).as_posix()
    rules = ignore_rules(root, [folder, f"{folder}/", *stage_files])
    rule = rules.get(folder) or rules.get(f"{folder}/")
    if rule is None and rules:
        probe = f"{folder}/gcsdvc-probe"  # a rule for the folder's whole content (data/*)
        rule = ignore_rules(root, [probe]).get(probe)
    if rule is not None:
        raise DvcRepoError(
            f"{folder}/ is ignored by git ({rule}), so its stages could never be committed; "
            "remove that line or choose another data_dir"
        )
    for path in stage_files:
        if path in rules:
            raise DvcRepoError(
                f"{path} is ignored by git ({rules[path]}), so it could never be committed "
                "(DVC refuses it too); remove that line or change the entry's destination"
            )


def _prefix_in_work_tree(root: Path) -> str | None:
    """``root``'s path inside its git work tree ("" or "a/b/"); None outside git.

    ``git status`` prints paths from the top of the work tree.
    """
    root = root.resolve()
    for top in (root, *root.parents):
        if (top / ".git").exists():
            rel = root.relative_to(top).as_posix()
            return "" if rel == "." else rel + "/"
    return None


def classify(repo: Repo, root: Path, locals_: list[str]) -> list[Untracked]:
    """Each file, with whether the DVC cache holds its bytes."""
    odb = repo.cache.local
    out = []
    for local in locals_:
        try:
            cached = Path(odb.oid_to_path(file_md5(root / local))).is_file()
        except OSError:
            cached = False
        out.append(Untracked(local, cached))
    return out


def remove_cached(ws: Workspace, leftovers: list[Untracked]) -> tuple[list[str], list[Untracked]]:
    """Remove the files whose bytes the DVC cache held (see :func:`classify`); the others are
    the user's.

    Returns the files removed and those left in place, to report.
    """
    removed: list[str] = []
    kept: list[Untracked] = []
    for found in leftovers:
        try:
            if found.cached:
                ws.remove_leftover(found.local)
                removed.append(found.local)
                continue
        except OSError:
            pass  # reported below, like one of the user's own
        kept.append(found)
    return removed, kept
