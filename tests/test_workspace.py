"""Reading and placing files (gcsdvc.workspace), in process; sync drives it end to end."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import dvc_main, run

from gcsdvc import stages, workspace
from gcsdvc.errors import DvcRepoError
from gcsdvc.manifest import Resource
from gcsdvc.model import ABSENT, Disk, RemoteObject

RES = Resource("exp1", "bkt", "proj", "", ("a.txt",), "exp1", True, "")
MD5 = "b1946ac92492d2347c6235b4d2611184"  # of b"hello\n"


def stage(size: int = 6) -> stages.ImportStage:
    obj = RemoteObject("bkt", "proj/a.txt", size, MD5, None, {"etag": "e", "size": size})
    return stages.file_stage(RES, "a.txt", "d/a.txt", obj, MD5, pinned=False)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / ".dvc" / "tmp").mkdir(parents=True)
    (tmp_path / "d").mkdir()
    return tmp_path


def test_read_disks_hashes_only_what_it_must(root: Path, hash_reads: list[Path]) -> None:
    (root / "d" / "a.txt").write_bytes(b"hello\n")
    (root / "d" / "long.txt").write_bytes(b"hello, longer\n")
    (root / "d" / "dir").mkdir()
    (root / "d" / "plain").write_text("x")
    targets = [
        ("d/a.txt", stage(), False),
        ("d/long.txt", stage(), False),  # another size: hashed, to look for it in the cache
        ("d/dir", None, True),
        ("d/plain", None, False),  # no stage: not hashed
        ("d/gone", stage(), False),
        ("d/plain/under", stage(), False),  # a file where a folder should be
    ]
    disks = workspace.read_disks(root, targets)
    assert disks["d/a.txt"].md5 == MD5 and disks["d/a.txt"].is_file
    long = disks["d/long.txt"]
    assert (long.size, long.md5, long.cached) == (
        14,
        hashlib.md5(b"hello, longer\n").hexdigest(),
        False,
    )
    assert disks["d/dir"].exists and not disks["d/dir"].is_file
    assert disks["d/plain"].md5 is None
    assert disks["d/gone"] is ABSENT and disks["d/plain/under"] is ABSENT
    hashed = [root / "d" / "a.txt", root / "d" / "long.txt"]
    assert hash_reads == hashed
    workspace.read_disks(root, targets)  # the hash cache answers now
    assert hash_reads == hashed
    (root / ".dvc" / "tmp" / "gcsdvc-hashes.json").write_text("[]")
    assert workspace.HashCache(root).known == {}


def test_holding_hashes_only_files_that_may_be_their_object(
    root: Path, hash_reads: list[Path]
) -> None:
    obj = RemoteObject("bkt", "proj/a.txt", 6, MD5, None, {})
    files = {
        "d/same": (b"hello\n", obj),
        "d/other": (b"hellO\n", obj),  # same size, other bytes
        "d/longer": (b"hello!\n", obj),  # another size: not hashed
        "d/composite": (b"hello\n", replace(obj, md5=None)),  # no md5 to check against
        "d/gzip": (b"hello\n", replace(obj, content_encoding="gzip")),  # stored bytes differ
    }
    found = {}
    for local, (body, listed) in files.items():
        (root / local).write_bytes(body)
        found[local] = (Disk.from_stat(0o100644, len(body)), listed)
    found["d"] = (Disk.from_stat(0o040755, 6), obj)  # a folder
    assert workspace.holding(root, found) == {"d/same"}
    assert sorted(hash_reads) == [root / "d" / "other", root / "d" / "same"]
    assert workspace.holding(root, {}) == set()


def test_link_falls_back_to_a_copy(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.write_text("data")
    workspace._link(src, tmp_path / "copy", ["reflink", "no-such-type"])
    assert (tmp_path / "copy").read_text() == "data"
    workspace._link(src, tmp_path / "hard", ["hardlink"])
    assert (tmp_path / "hard").stat().st_ino == src.stat().st_ino
    workspace._link(src, tmp_path / "sym", ["symlink"])
    assert (tmp_path / "sym").resolve() == src
    with pytest.raises(FileNotFoundError) as raised:  # the copy's own error, with its path
        workspace._link(src, tmp_path / "no" / "folder", ["hardlink"])
    assert raised.value.filename == str(tmp_path / "no" / "folder")


def test_the_link_type_that_worked_is_tried_first(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.write_text("data")
    assert workspace._link(src, tmp_path / "a", ["hardlink"], known="symlink") == "symlink"
    assert (tmp_path / "a").is_symlink()
    folder = tmp_path / "folder"
    folder.mkdir()  # no hard link to a folder: the other types are tried again
    assert workspace._link(folder, tmp_path / "b", ["symlink"], known="hardlink") == "symlink"


def test_symlinks_out_of_the_repository_are_refused(tmp_path: Path) -> None:
    root, outside = tmp_path / "repo", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "link").symlink_to(outside / "file")
    with pytest.raises(DvcRepoError, match=r"is a symlink to .*outside the repository"):
        workspace.SymlinkGuard(root).check(root / "link")
    (root / "folder").symlink_to(outside)
    with pytest.raises(DvcRepoError, match="leads outside the repository"):
        workspace.SymlinkGuard(root).check(root / "folder" / "file")
    workspace.SymlinkGuard(root).check(root / "inside")


def test_open_repo_needs_a_dvc_repository(tmp_path: Path) -> None:
    refused = pytest.raises(DvcRepoError, match="is not a DVC repository; run 'dvc init'")
    with refused, stages.open_repo(tmp_path):
        pass


def test_a_link_into_the_cache_is_replaced_not_refused(root: Path, tmp_path: Path) -> None:
    cache = tmp_path.parent / f"{tmp_path.name}-shared-cache"
    cache.mkdir()
    (cache / "obj").write_text("cached")
    (root / "d" / "a.txt").symlink_to(cache / "obj")
    with pytest.raises(DvcRepoError, match="outside the repository"):
        workspace.SymlinkGuard(root).check(root / "d" / "a.txt")
    workspace.SymlinkGuard(root, cache).check(root / "d" / "a.txt")


def test_adopt_checks_and_caches_a_pulled_copy_or_refuses_it(tmp_path: Path) -> None:
    """A copy `dvc pull` placed for a --no-download stage: checked against the object, once."""
    run("git", "init", "-q", cwd=tmp_path)
    dvc_main("init", "-q", cwd=tmp_path)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_bytes(b"hello\n")
    obj = RemoteObject("bkt", "proj/a.txt", 6, MD5, None, {"etag": "e", "size": 6})
    with (
        stages.open_repo(tmp_path) as repo,
        workspace.Workspace(repo, tmp_path, tmp_path / "d") as ws,
    ):
        got = ws.adopt("d/a.txt", obj)
        assert (got.md5, got.size) == (MD5, 6)
        assert Path(repo.cache.local.oid_to_path(MD5)).read_bytes() == b"hello\n"
        with pytest.raises(DvcRepoError, match=r"is not the recorded object gs://bkt/proj/a\.txt"):
            ws.adopt("d/a.txt", replace(obj, md5="0" * 32))
        with pytest.raises(DvcRepoError, match="a decoded copy of a gzip-encoded object"):
            ws.adopt("d/a.txt", replace(obj, content_encoding="gzip"))
    assert list((tmp_path / ".dvc" / "tmp").glob("gcsdvc/adopt-*")) == []
