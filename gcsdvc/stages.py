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
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from gcsdvc.errors import DvcRepoError

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
    frozen: bool = True,
) -> Stage:
    """An import stage for one object, as ``dvc import-url`` writes it.

    ``dep_info`` is DVC's record of the object (etag, size, version_id) as
    :mod:`gcsdvc.storage` builds it; ``out`` is the file name relative to the
    stage's folder. Without ``md5`` the out has no checksum yet, as with
    ``dvc import-url --no-download``. ``frozen``: False keeps a user's
    ``dvc unfreeze`` of the stage this one replaces.
    """
    outs: dict[str, Any] = {"md5": md5, "size": size} if md5 else {}
    stage: Stage = {
        "frozen": frozen,
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
    committed: Stage | None = None,
) -> Stage:
    """``stage`` with this description, identity and pinning, and its md5 recomputed.

    ``frozen`` is kept as the stage has it (a new stage is frozen, so no DVC
    command but ``dvc update`` follows upstream; a user's ``dvc unfreeze`` stays).
    Pinned: the object's generation as ``version_id`` (exactly what
    ``dvc import-url`` writes; ``dvc pull`` fetches from the bucket, ``dvc push``
    skips it). Unpinned: no ``version_id``, so ``dvc push``/``dvc pull`` go
    through the DVC remote. ``dep_info`` (the object as listed now) supplies a
    missing generation when it is still the recorded object. ``committed`` (the
    stage in git's HEAD) undoes what ``dvc commit -f``/``dvc exp run``/``dvc repro -f``
    do: they re-record the dependency from upstream (newest etag and generation)
    while the data stays; the committed record comes back while the data is
    still the committed data.
    """
    deps = [dict(d) for d in stage.get("deps") or [{}]]
    first = deps[0]
    old = dep(committed or {})
    if committed and out(committed) == out(stage) and old.get("path") == first.get("path"):
        for key in ("etag", "size", "version_id"):
            if key in old:
                first[key] = old[key]
            else:
                first.pop(key, None)
        first = {k: first[k] for k in _DEP_ORDER if k in first} | first
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
    if stage.get("frozen"):
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
    """Write ``text`` to ``path`` through a rename, with the mode DVC gives its files.

    The temporary file is created 0666 less the umask (0644 under umask 022),
    as DVC's own writes are, so teammates on a shared server can read it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = str(path.parent / f".gcsdvc-{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
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
        raise DvcRepoError(f"{root} is not a DVC repository; run 'dvc init' there first")
    try:
        repo = Repo(str(root))
    except DvcException as exc:
        raise DvcRepoError(f"cannot open the DVC repository at {root}: {exc}") from None
    try:
        yield repo
    finally:
        repo.close()


def changed_since_commit(root: Path, folder: str) -> set[str]:
    """Stage files below ``folder`` that differ from git's HEAD (repo-relative paths)."""
    import subprocess

    try:
        res = subprocess.run(
            ["git", "diff", "--name-only", "--relative", "-z", "HEAD", "--", folder],
            cwd=root,
            capture_output=True,
            check=False,
        )
    except OSError:
        return set()
    if res.returncode:
        return set()  # no git, or no commit yet
    names = res.stdout.decode("utf-8", "surrogateescape").split("\0")
    return {name for name in names if name.endswith(STAGE_SUFFIX)}


def committed_stage(root: Path, path: Path) -> Stage | None:
    """The stage file as committed in git's HEAD, or None (no git, not committed)."""
    import subprocess

    rel = path.relative_to(root).as_posix()
    try:
        res = subprocess.run(
            ["git", "show", f"HEAD:./{rel}"], cwd=root, capture_output=True, check=False
        )
    except OSError:
        return None
    if res.returncode:
        return None
    try:
        data = yaml.load(res.stdout.decode("utf-8"), Loader=_Loader)  # noqa: S506 - safe loader
    except (yaml.YAMLError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


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


def update_gitignore(folder: Path, add: Iterable[str] = (), remove: Iterable[str] = ()) -> None:
    """Add and remove ``/name`` lines in ``folder/.gitignore`` as DVC writes them."""
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
        return
    if kept:
        atomic_write(path, "\n".join(kept) + "\n")
    else:
        path.unlink(missing_ok=True)
