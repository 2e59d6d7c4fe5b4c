"""Every restore from the DVC cache is verified (issue 22, item 3).

With ``cache.type`` hardlink or symlink, an edit in place changes the DVC cache
file too. A restore (``rm F && gcsdvc sync``, ``--force``) then checks the cache
file before linking it: a corrupt one is moved aside to ``.dvc/tmp/gcsdvc-corrupt``,
the recorded object is fetched again, and DVC's state db, ``dvc status`` and
``dvc push`` see only verified bytes.
"""

from __future__ import annotations

import hashlib
import os
import shlex
from pathlib import Path
from typing import Any

import pytest
from conftest import QUOTED, cli, data, dvc_main, entry, without_git_hint, write_manifest

from gcsdvc.hashes import file_md5

GOOD = b"top file1\n"
EDIT = b"TOP FILE1\n"  # same size: only the md5 tells
MD5 = hashlib.md5(GOOD).hexdigest()
BAD = hashlib.md5(EDIT).hexdigest()
LOCAL = f"data/project1/{QUOTED}/file1"
CACHED = f".dvc/cache/files/md5/{MD5[:2]}/{MD5[2:]}"
ASIDE = f".dvc/tmp/gcsdvc-corrupt/{MD5}.1"


def warning(then: str) -> str:
    return (
        f"warning: DVC cache file {CACHED} did not hold its recorded bytes (md5 {BAD}; edited "
        f"through a hardlink or symlink?): moved to {ASIDE}; {then}"
    )


def edit_in_place(path: Path, text: bytes) -> None:
    """What an editor that writes in place does, on a file DVC protected (read-only)."""
    os.chmod(path, 0o644)  # through a symlink: the cache file's mode
    with path.open("r+b") as fobj:
        fobj.write(text)


def linked_and_corrupted(repo: Path, seeded: str, cache_type: str, **over: Any) -> None:
    """Synced with ``cache_type`` and a DVC remote (unpinned), then file1 edited in place."""
    dvc_main("config", "cache.type", cache_type, cwd=repo)
    dvc_main("remote", "add", "-d", "store", str(repo.parent / "store"), cwd=repo)
    write_manifest(repo, [entry(seeded, **over)])
    cli("sync", cwd=repo, check=True)
    edit_in_place(data(repo, "file1"), EDIT)
    assert (repo / CACHED).read_bytes() == EDIT  # DVC's known risk of these link types


def state_md5(root: Path, path: Path) -> str | None:
    """What DVC's state db holds for the file as it is now (None: nothing)."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        _, hash_info = repo.state.get(str(path), repo.fs)
    return hash_info.value if hash_info is not None else None


def assert_only_verified_bytes(repo: Path) -> None:
    """The data, the cache, DVC's state db and the remote after a push hold the good bytes."""
    placed = data(repo, "file1")
    assert placed.read_bytes() == GOOD
    assert (repo / CACHED).read_bytes() == GOOD  # the cache file's bytes match its name
    assert (repo / ASIDE).read_bytes() == EDIT  # the corrupt file, kept
    # DVC's state db knows only what the bytes are (or nothing).
    assert state_md5(repo, placed) in (None, MD5)
    res = dvc_main("status", cwd=repo)
    assert res.stdout.strip() == "Data and pipelines are up to date."
    assert dvc_main("checkout", cwd=repo).returncode == 0
    assert placed.read_bytes() == GOOD
    dvc_main("push", cwd=repo)
    pushed = repo.parent / "store" / "files" / "md5" / MD5[:2] / MD5[2:]
    assert pushed.read_bytes() == GOOD


@pytest.mark.parametrize("cache_type", ["hardlink", "symlink"])
def test_rm_and_sync_fetch_the_recorded_bytes_again(
    repo: Path, seeded: str, cache_type: str
) -> None:
    linked_and_corrupted(repo, seeded, cache_type)
    # status: the fix it prints is the restore, which now checks the cache file.
    res = cli("status", "--offline", cwd=repo)
    assert (
        f"  modified  {LOCAL}  (md5 {BAD}, the stage records {MD5}; edited through "
        f"a {cache_type}: the DVC cache's copy changed too, a sync sets it aside and fetches "
        "the recorded object)"
    ) in res.stdout.splitlines()
    assert f"  fix: rm {shlex.quote(LOCAL)}" in res.stdout.splitlines()
    assert "       gcsdvc sync exp1" in res.stdout.splitlines()

    data(repo, "file1").unlink()
    res = cli("sync", cwd=repo)
    assert res.returncode == 0, res.stderr
    assert warning(f"{LOCAL} is fetched again") in res.stderr.splitlines()
    summary = "sync: 1 restored, 2 unchanged; 10 bytes downloaded in <t>, 0 retries"
    assert summary in without_git_hint(res.stdout)
    assert data(repo, "file1").is_symlink() is (cache_type == "symlink")
    assert_only_verified_bytes(repo)
    assert cli("status", "--check", "--offline", cwd=repo).returncode == 0


@pytest.mark.parametrize("cache_type", ["hardlink", "symlink"])
@pytest.mark.parametrize("skip", [True, False])
def test_force_fetches_the_recorded_bytes_again(
    repo: Path, seeded: str, cache_type: str, skip: bool
) -> None:
    """skip_if_exist: true restores from the cache, false downloads (the cache had the bytes)."""
    linked_and_corrupted(repo, seeded, cache_type, skip_if_exist=skip)
    res = cli("sync", "--force", cwd=repo)
    assert res.returncode == 0, res.stderr
    then = f"{LOCAL} is fetched again" if skip else "a verified download replaces it"
    assert warning(then) in res.stderr.splitlines()
    assert ("sync: 1 restored" if skip else "sync: 1 updated") in res.stdout
    assert_only_verified_bytes(repo)


def test_a_corrupt_cache_file_is_never_linked_nor_recorded(repo: Path, seeded: str) -> None:
    """Before: the corrupt file was linked back and DVC's state db told the good md5 for it."""
    linked_and_corrupted(repo, seeded, "hardlink")
    data(repo, "file1").unlink()
    cli("sync", cwd=repo)
    placed = data(repo, "file1")
    assert state_md5(repo, placed) in (None, file_md5(placed))
    assert not placed.samefile(repo / ASIDE)


def test_a_corrupt_cache_file_whose_object_is_gone_fails_the_file(
    repo: Path, seeded: str, put: Any
) -> None:
    """Pinned, the recorded generation overwritten: nothing to fetch; nothing corrupt placed."""
    dvc_main("config", "cache.type", "hardlink", cwd=repo)
    write_manifest(repo, [entry(seeded)])
    cli("sync", cwd=repo, check=True)
    edit_in_place(data(repo, "file1"), EDIT)
    put(f"{seeded}/project1/{QUOTED}/file1", "another version\n")
    data(repo, "file1").unlink()
    res = cli("sync", cwd=repo)
    assert res.returncode == 1
    assert warning(f"{LOCAL} is fetched again") in res.stderr.splitlines()
    assert "is gone from the bucket" in res.stderr
    assert not data(repo, "file1").exists()
    assert not (repo / CACHED).exists()
    assert (repo / ASIDE).read_bytes() == EDIT


def test_a_corrupt_cache_file_is_found_where_dvc_copies(repo: Path, seeded: str) -> None:
    """Copies (one read: hashed as copied); the next corruption of the same file gets .2."""
    write_manifest(repo, [entry(seeded)])
    cli("sync", cwd=repo, check=True)
    for n in (1, 2):
        cached = repo / CACHED
        edit_in_place(cached, EDIT)  # a disk's fault, or a tool that wrote into the cache
        data(repo, "file1").unlink()
        res = cli("sync", cwd=repo)
        assert res.returncode == 0, res.stderr
        aside = f".dvc/tmp/gcsdvc-corrupt/{MD5}.{n}"
        assert warning(f"{LOCAL} is fetched again").replace(ASIDE, aside) in res.stderr
        assert data(repo, "file1").read_bytes() == GOOD
        assert not data(repo, "file1").samefile(cached)
        assert cached.read_bytes() == GOOD and (repo / aside).read_bytes() == EDIT
