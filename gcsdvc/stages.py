"""DVC stage I/O: the ``.dvc`` import stages gcsdvc reads and writes, and their .gitignore lines.

A stage is written in exactly the shape ``dvc import-url gs://...`` gives it (a
frozen import with ``deps`` and ``outs``), plus ``desc`` and ``meta.gcsdvc``.
Building the dict here instead of through DVC's ``Stage`` objects keeps a sync
of thousands of files fast; ``tests/test_stages.py`` checks the result against
what DVC itself writes and computes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from gcsdvc.errors import DvcRepoError, NotARepoError

if TYPE_CHECKING:
    from dvc.repo import Repo

STAGE_SUFFIX = ".dvc"
META_KEY = "gcsdvc"

# DVC's compute_md5 leaves these keys out of a stage's checksum, at any depth.
_MD5_EXCLUDED = frozenset(
    {"desc", "type", "labels", "meta", "locked", "frozen", "metric", "persist", "isexec"}
    | {"size", "nfiles"}
)
_DEP_ORDER = ("etag", "size", "version_id", "hash", "path")
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_Dumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

Stage = dict[str, Any]


def stage_path(local: str) -> str:
    """The stage file DVC uses for an imported file or folder."""
    return local + STAGE_SUFFIX


def file_stage(
    source: str,
    out: str,
    md5: str | None,
    size: int,
    dep_info: dict[str, Any],
    desc: str,
    identity: dict[str, Any],
    pinned: bool,
) -> Stage:
    """An import stage for one object, as ``dvc import-url`` writes it.

    ``dep_info`` is DVC's record of the object (etag, size, version_id) as
    :mod:`gcsdvc.storage` builds it; ``out`` is the file name relative to the
    stage's folder. Without ``md5`` the out has no checksum yet, as with
    ``dvc import-url --no-download``.
    """
    outs: dict[str, Any] = {"md5": md5, "size": size} if md5 else {}
    stage: Stage = {
        "deps": [{**dep_info, "hash": "md5", "path": source}],
        "outs": [{**outs, "hash": "md5", "path": out}],
    }
    return conform(stage, desc=desc, identity=identity, pinned=pinned)


def conform(
    stage: Stage,
    *,
    desc: str,
    identity: dict[str, Any],
    pinned: bool,
    dep_info: dict[str, Any] | None = None,
) -> Stage:
    """``stage`` with this description, identity and pinning, and its md5 recomputed.

    Pinned: frozen, with the object's generation as ``version_id`` (exactly what
    ``dvc import-url`` writes; ``dvc pull`` fetches from the bucket). Unpinned:
    neither, so ``dvc push``/``dvc pull`` go through the DVC remote and
    ``dvc status`` reports upstream changes without a warning per stage.
    ``dep_info`` (the object as listed now) supplies a missing generation when
    it is still the recorded object.
    """
    deps = [dict(d) for d in stage.get("deps") or [{}]]
    first = deps[0]
    if not pinned:
        first.pop("version_id", None)
    elif dep_info and dep_info.get("etag") == first.get("etag") and dep_info.get("version_id"):
        first["version_id"] = dep_info["version_id"]
        first = {k: first[k] for k in _DEP_ORDER if k in first} | first
    deps[0] = first
    meta = dict(stage.get("meta") or {})
    meta[META_KEY] = identity
    skip = ("desc", "md5", "frozen", "deps", "meta")
    new: Stage = {"desc": desc} if desc else {}
    new["md5"] = ""
    if pinned:
        new["frozen"] = True
    new["deps"] = deps
    new.update((k, v) for k, v in stage.items() if k not in skip)
    new["meta"] = meta
    new["md5"] = stage_md5(new)
    return new


def stage_md5(stage: Stage) -> str:
    """The stage checksum exactly as ``dvc.stage.utils.compute_md5`` computes it."""
    body = {k: v for k, v in stage.items() if k not in ("md5", "meta", "desc")}
    if body.get("wdir") == ".":
        del body["wdir"]
    text = json.dumps(_strip(body), sort_keys=True)
    return hashlib.md5(text.encode("utf-8")).hexdigest()  # noqa: S324 - DVC's own checksum


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in _MD5_EXCLUDED}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def read_stage(path: Path) -> Stage | None:
    """The parsed stage at ``path``, or None when there is no file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise DvcRepoError(f"cannot read stage {path}: {exc}") from None
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        raise DvcRepoError(f"{path}: not a valid DVC stage file: {exc}") from None
    if not isinstance(data, dict):
        raise DvcRepoError(f"{path}: not a valid DVC stage file")
    return data


def dump_stage(stage: Stage) -> str:
    text: str = yaml.dump(stage, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=4096)
    return text


def write_stage(path: Path, stage: Stage) -> None:
    """Write ``stage`` atomically: readers see the old file or the new one, never half."""
    atomic_write(path, dump_stage(stage))


def atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".gcsdvc-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fobj:
            fobj.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def identity(stage: Stage | None) -> dict[str, Any] | None:
    """The ``meta.gcsdvc`` mapping of a stage gcsdvc wrote, else None."""
    if not stage:
        return None
    meta = stage.get("meta")
    found = meta.get(META_KEY) if isinstance(meta, dict) else None
    return found if isinstance(found, dict) else None


def dep(stage: Stage) -> dict[str, Any]:
    deps = stage.get("deps") or [{}]
    first = deps[0]
    return first if isinstance(first, dict) else {}


def out(stage: Stage) -> dict[str, Any]:
    outs = stage.get("outs") or [{}]
    first = outs[0]
    return first if isinstance(first, dict) else {}


@contextlib.contextmanager
def open_repo(root: Path) -> Iterator[Repo]:
    """The DVC repository at ``root``, opened without taking its lock."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    if not (root / ".dvc").is_dir():
        raise NotARepoError(f"{root} is not a DVC repository; run 'dvc init' there first")
    try:
        repo = Repo(str(root))
    except DvcException as exc:
        raise DvcRepoError(f"cannot open the DVC repository at {root}: {exc}") from None
    try:
        yield repo
    finally:
        repo.close()


def has_default_remote(root: Path) -> bool:
    """Whether DVC has a default remote (``core.remote``) at any config level."""
    from dvc.config import Config, ConfigError

    try:
        config = Config(dvc_dir=str(root / ".dvc"), validate=False)
        return bool(config["core"].get("remote"))
    except ConfigError as exc:
        raise DvcRepoError(f"cannot read the DVC config: {exc}") from None


class StageCache:
    """Parsed stages keyed by path and (mtime, size, inode), so a no-op run parses none.

    Kept in ``.dvc/tmp``; an entry is used only while the file's stat matches,
    so a stale or foreign cache can cost a re-parse, never a wrong answer.
    """

    def __init__(self, root: Path) -> None:
        self.path = root / ".dvc" / "tmp" / "gcsdvc-stages.json"
        try:
            loaded = json.loads(self.path.read_text(encoding="utf-8"))
            self.old: dict[str, Any] = loaded if isinstance(loaded, dict) else {}
        except (OSError, ValueError):
            self.old = {}
        self.new: dict[str, Any] = {}

    def read(self, path: Path, key: str) -> Stage | None:
        st = path.stat()
        sig = [st.st_mtime_ns, st.st_size, st.st_ino]
        hit = self.old.get(key)
        if isinstance(hit, list) and len(hit) == 2 and hit[0] == sig:
            stage: Stage = hit[1]
        else:
            found = read_stage(path)
            if found is None:
                return None
            stage = found
        self.new[key] = [sig, stage]
        return stage

    def save(self) -> None:
        if self.new != self.old and self.path.parent.is_dir():
            with contextlib.suppress(OSError, TypeError, ValueError):  # only an optimisation
                atomic_write(self.path, json.dumps(self.new, ensure_ascii=False))


def find_stages(folder: Path) -> Iterable[Path]:
    """Every ``.dvc`` file below ``folder``."""
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        for name in filenames:
            if name.endswith(STAGE_SUFFIX):
                yield Path(dirpath, name)


def _ignore_entry(name: str) -> str:
    from pathspec.patterns.gitwildmatch import GitWildMatchPattern

    entry: str = GitWildMatchPattern.escape("/" + name)
    return entry


def ignored_by_git(root: Path, paths: Iterable[Path]) -> set[Path]:
    """The ``paths`` git already ignores (a root rule, say), asked in one ``git check-ignore``.

    DVC adds no ``.gitignore`` line for such a path either (``scm.ignore``).
    """
    import subprocess

    asked = [str(p) for p in paths]
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
    return {Path(p) for p in done.stdout.split("\0") if p}


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
