"""Git plumbing: the stages as committed in HEAD, and the ``.gitignore`` lines DVC keeps.

Git is asked in batches (one ``git cat-file --batch``, one ``git check-ignore``);
the ``.gitignore`` lines are written once per folder at the end of a sync
(:class:`IgnoreBatch`), as DVC writes them.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Callable, Collection, Iterable
from pathlib import Path

from gcsdvc.errors import DvcRepoError
from gcsdvc.files import atomic_write, unwritable
from gcsdvc.stages import ImportStage, parse_stage, stage_path


def committed_where_changed(
    root: Path, locals_: Iterable[str], changed: Collection[str]
) -> dict[str, ImportStage]:
    """HEAD's stage of each of ``locals_`` whose stage file git reports changed from HEAD.

    DVC commands may have re-recorded such a stage's dependency (see :func:`recommitted`).
    """
    return committed_stages(root, [local for local in locals_ if stage_path(local) in changed])


def committed_stages(root: Path, locals_: Iterable[str]) -> dict[str, ImportStage]:
    """The stages of ``locals_`` as committed in git's HEAD, read in one ``git cat-file --batch``.

    Those not committed (or no git, or not a stage) are left out: then the stage on
    disk is all there is.
    """
    asked = [local for local in locals_ if "\n" not in local]  # one name per batch line
    if not asked:
        return {}
    try:
        # HEAD resolved once: "HEAD:<path>" made git resolve it for every name.
        where = subprocess.run(
            ["git", "rev-parse", "--show-prefix", "HEAD^{tree}"],
            cwd=root,
            capture_output=True,
            check=False,
        )
        if where.returncode:  # not in git, or nothing committed yet
            return {}
        prefix, tree = where.stdout.decode("utf-8").split("\n")[:2]
        names = "".join(f"{tree}:{prefix}{stage_path(local)}\n" for local in asked)
        res = subprocess.run(
            ["git", "cat-file", "--batch"],
            cwd=root,
            input=names.encode("utf-8"),
            capture_output=True,
            check=False,
        )
    except OSError:
        return {}
    if res.returncode:
        return {}
    found: dict[str, ImportStage] = {}
    out, pos = res.stdout, 0
    for local in asked:
        end = out.index(b"\n", pos)
        header = out[pos:end].split(b" ")
        pos = end + 1
        if len(header) != 3 or not header[2].isdigit():  # "<name> missing"
            continue
        size = int(header[2])
        body, pos = out[pos : pos + size], pos + size + 1
        if header[1] != b"blob":
            continue
        with contextlib.suppress(DvcRepoError, UnicodeDecodeError):
            found[local] = ImportStage.from_dict(parse_stage(body.decode("utf-8"), "HEAD"))
    return found


def _ignore_entry(name: str) -> str:
    from pathspec.patterns.gitwildmatch import GitWildMatchPattern

    entry: str = GitWildMatchPattern.escape("/" + name)
    return entry


def ignored_by_git(root: Path, asked: list[str]) -> set[str]:
    """The paths git already ignores (a root rule, say), asked in one ``git check-ignore``.

    DVC adds no ``.gitignore`` line for such a path either (``scm.ignore``).
    """
    if not asked:
        return set()
    try:
        done = subprocess.run(
            ["git", "check-ignore", "--no-index", "-z", "--stdin"],
            cwd=root,
            input="\0".join(asked) + "\0",
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:  # no git: nothing is known to be ignored
        return set()
    if done.returncode not in (0, 1):  # not a git repository, or git failed
        return set()
    return {p for p in done.stdout.split("\0") if p}  # as asked


def update_gitignore(folder: Path, add: Iterable[str] = (), remove: Iterable[str] = ()) -> bool:
    """Add and remove ``/name`` lines in ``folder/.gitignore`` as DVC writes them.

    Returns whether the file changed.
    """
    add_lines = [_ignore_entry(n) for n in add]
    drop = {_ignore_entry(n) for n in remove}
    path = folder / ".gitignore"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        lines = []
    kept = [line for line in lines if line not in drop]
    present = set(kept)
    kept += [line for line in dict.fromkeys(add_lines) if line not in present]
    if kept == lines:
        return False
    if kept:
        atomic_write(path, "\n".join(kept) + "\n")
    else:
        path.unlink(missing_ok=True)
    return True


class IgnoreBatch:
    """``.gitignore`` lines to add and drop, written once per folder at the end of a sync."""

    def __init__(self) -> None:
        self.added: dict[Path, list[str]] = {}
        self.dropped: dict[Path, list[str]] = {}

    def add(self, root: Path, locals_: Iterable[str]) -> None:
        """Lines for the files at ``locals_`` (POSIX paths below ``root``): a ``Path`` a folder."""
        names: dict[str, list[str]] = {}
        for local in locals_:
            folder, _, name = local.rpartition("/")
            names.setdefault(folder, []).append(name)
        for folder, found in names.items():
            self.added.setdefault(root / folder, []).extend(found)

    def drop(self, path: Path) -> None:
        self.dropped.setdefault(path.parent, []).append(path.name)

    def flush(
        self, data: Path, git_root: Path | None, failed: Callable[[str], object] | None = None
    ) -> set[Path]:
        """Write every touched ``.gitignore``, then remove folders below ``data`` left empty.

        ``git_root`` None (a ``dvc init --no-scm`` repo): no ``.gitignore`` is written,
        as DVC writes none. No line is added for a path git already ignores (a root
        rule, say), as DVC adds none. Returns the ``.gitignore`` files changed.
        ``failed``: told one line per ``.gitignore`` that could not be written (the
        others are still written); without it the :class:`OSError` propagates.
        """
        changed: set[Path] = set()
        folders = set(self.added) | set(self.dropped) if git_root is not None else set()
        where = {folder: f"{folder}{os.sep}" for folder in folders}  # no Path per file
        adding = [where[f] + n for f in folders for n in self.added.get(f, ())]
        ignored = ignored_by_git(git_root, adding) if git_root is not None else set()
        for folder in folders:
            if folder.exists():
                # Sorted: downloads finish in any order; two people's syncs write the same file.
                names = self.added.get(folder, ())
                added = sorted(n for n in names if where[folder] + n not in ignored)
                try:
                    if update_gitignore(folder, added, self.dropped.get(folder, ())):
                        changed.add(folder / ".gitignore")
                except OSError as exc:
                    if failed is None:
                        raise
                    file = folder / ".gitignore"
                    shown = file.relative_to(git_root).as_posix() if git_root else str(file)
                    failed(f"{unwritable(shown, exc)}; run the sync again once it can be written")
        for folder in sorted(self.dropped, key=lambda p: len(p.parts), reverse=True):
            while folder != data and folder.is_relative_to(data):
                try:
                    folder.rmdir()
                except OSError:
                    break
                folder = folder.parent
        self.added.clear()
        self.dropped.clear()
        return changed
