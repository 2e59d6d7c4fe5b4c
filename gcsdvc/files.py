"""This machine's files: atomic writes, and the JSON caches kept in ``.dvc/tmp``.

A cache entry is keyed by a file's stat (:func:`file_signature`), so a stale or
foreign cache can cost time, never a wrong answer.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
from pathlib import Path
from typing import Any

try:
    import orjson as _orjson
except ImportError:  # not on PyPy (dvc-data requires it on CPython only)
    _orjson = None  # type: ignore[assignment]

_TEMP_NAMES = itertools.count()  # temporary files of this process (atomic_write)
ONE_PAGE = 4096  # a write of at most this much to a new file is all or nothing under a kill


def atomic_write(path: Path, text: str, make_parent: bool = True) -> os.stat_result:
    """Write ``text`` to ``path`` through a rename, with the mode DVC gives its files.

    The temporary file is created 0666 less the umask (0644 under umask 022),
    as DVC's own writes are (not mkstemp's 0600), so teammates on a shared
    server can read it. ``make_parent``: False when the caller made the folder.
    Returns the file's stat (a rename keeps its inode, size and mtime).
    """
    if make_parent:
        path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        # A name of this process's own (a count, not uuid4's getrandom call per stage).
        tmp = f"{path.parent}/.gcsdvc-{os.getpid()}-{next(_TEMP_NAMES)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:  # left by a crashed process that had this pid
            continue
    try:
        info = write_all(fd, text.encode("utf-8"))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return info


def write_new(path: Path, data: bytes, exclusive: bool = False) -> os.stat_result:
    """Create ``path`` holding ``data`` (0666 less the umask, as DVC's files); its stat.

    ``exclusive``: :class:`FileExistsError` when it exists, else it is truncated.
    """
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    return write_all(os.open(path, flags, 0o666), data)


def write_all(fd: int, data: bytes) -> os.stat_result:
    """Write ``data`` to ``fd``, close it and return its stat: four system calls, where
    ``Path.write_bytes`` and a ``stat`` by path make seven (each lets the other threads
    take the interpreter lock, and a path is looked up again)."""
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        return os.fstat(fd)
    finally:
        os.close(fd)


def stage_cache_path(root: Path) -> Path:
    return root / ".dvc" / "tmp" / "gcsdvc-stages.json"


def stage_index_path(root: Path) -> Path:
    """Where :class:`gcsdvc.stages.StageCache` keeps what ``gcsdvc.path`` checks of each stage."""
    return root / ".dvc" / "tmp" / "gcsdvc-stage-index.json"


def hash_cache_path(root: Path) -> Path:
    """Where :class:`gcsdvc.workspace.HashCache` keeps the data files' md5s."""
    return root / ".dvc" / "tmp" / "gcsdvc-hashes.json"


def file_signature(info: os.stat_result) -> list[int]:
    """What the JSON caches in ``.dvc/tmp`` key a file by: unchanged while these are."""
    return [info.st_mtime_ns, info.st_size, info.st_ino]


def read_json_cache(path: Path) -> dict[str, Any]:
    """A JSON mapping kept in ``.dvc/tmp`` as an optimisation; empty if missing or damaged.

    Parsed by orjson where it is installed (dvc-data requires it on CPython): the stage
    cache of 3,000 files parses in half json's time, a third of a first pass of
    ``gcsdvc.path`` calls. What orjson refuses (an inode past 2**63) json reads.
    """
    try:
        data = path.read_bytes()
    except OSError:
        return {}
    loaded: Any = None
    if _orjson is not None:
        with contextlib.suppress(ValueError):
            loaded = _orjson.loads(data)
    if loaded is None:
        try:
            loaded = json.loads(data)
        except ValueError:
            return {}
    return loaded if isinstance(loaded, dict) else {}


def to_json(value: Any) -> str:
    """``value`` as JSON for the caches in ``.dvc/tmp``: by orjson where it is installed (a
    tenth of json's time per stage a sync records); what orjson refuses, json writes."""
    if _orjson is not None:
        with contextlib.suppress(TypeError):
            return _orjson.dumps(value).decode()
    return json.dumps(value, ensure_ascii=False)


def unwritable(path: str, exc: OSError) -> str:
    """One line for a ``.gitignore`` (or other record) that could not be written."""
    return f"cannot write {path} ({exc.strerror or exc})"
