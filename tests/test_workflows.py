"""The two team workflows: fresh clone + dvc pull, with and without a DVC remote."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import QUOTED, cli, data, dvc_main, entry, load, run, write_manifest


def commit_all(root: Path) -> None:
    run("git", "add", "-A", cwd=root)
    run("git", "commit", "-qm", "sync", cwd=root)


def clone(root: Path, tmp_path: Path) -> Path:
    target = tmp_path / "clone"
    run("git", "clone", "-q", str(root), str(target), cwd=tmp_path)
    return target


def test_fresh_clone_pulls_from_the_source_bucket(repo: Path, seeded: str, tmp_path: Path) -> None:
    write_manifest(repo, [entry(seeded)])
    cli("sync", cwd=repo, check=True)
    commit_all(repo)
    other = clone(repo, tmp_path)
    assert not data(other, "file1").exists()
    dvc_main("pull", cwd=other)
    assert data(other, "parent_dir/file1").read_text() == "nested file1\n"
    assert data(other, "file1").read_text() == "top file1\n"


@pytest.fixture
def remote(repo: Path, gcs: Any, bucket: str) -> str:
    """A default DVC remote in the emulator: all a team adds for workflow 2."""
    url = f"gs://{bucket}-cache/dvc"
    gcs.mkdir(f"{bucket}-cache")
    dvc_main("remote", "add", "-d", "store", url, cwd=repo)
    return url


def test_remote_keeps_data_after_the_source_is_gone(
    repo: Path, seeded: str, remote: str, put: Any, gcs: Any, tmp_path: Path
) -> None:
    write_manifest(repo, [entry(seeded)])
    cli("sync", cwd=repo, check=True)
    stage = load(data(repo, "file1.dvc"))
    assert "version_id" not in stage["deps"][0]
    assert stage["frozen"] is True  # no DVC command but `dvc update` follows upstream
    pushed = dvc_main("push", cwd=repo)
    assert "3 files pushed" in pushed.stdout
    commit_all(repo)

    prefix = f"{seeded}/project1/{QUOTED}"
    put(f"{prefix}/file1", "overwritten\n")
    gcs.rm(f"{prefix}/parent_dir/file1")
    other = clone(repo, tmp_path)
    dvc_main("pull", cwd=other)
    assert data(other, "file1").read_text() == "top file1\n"
    assert data(other, "parent_dir/file1").read_text() == "nested file1\n"


def test_adding_a_remote_then_syncing_is_all_it_takes(
    repo: Path, seeded: str, gcs: Any, bucket: str
) -> None:
    write_manifest(repo, [entry(seeded)])
    cli("sync", cwd=repo, check=True)
    assert "version_id" in load(data(repo, "file1.dvc"))["deps"][0]
    gcs.mkdir(f"{bucket}-cache")
    dvc_main("remote", "add", "-d", "store", f"gs://{bucket}-cache/dvc", cwd=repo)
    res = cli("sync", cwd=repo)
    lines = res.stdout.splitlines()
    assert lines[:2] == ["exp1  metadata 3", "sync: 3 re-described, 0 unchanged"]
    # DVC's hint, after a change; the three stages' paths are too long for one line: their folder
    assert lines[3] == "To track the changes with git (3 files in 1 folder(s)), run:"
    assert "version_id" not in load(data(repo, "file1.dvc"))["deps"][0]
    assert "3 files pushed" in dvc_main("push", cwd=repo).stdout


def test_dvc_update_keeps_description_and_identity(repo: Path, seeded: str, put: Any) -> None:
    write_manifest(repo, [entry(seeded)])
    cli("sync", cwd=repo, check=True)
    put(f"{seeded}/project1/{QUOTED}/file1", "newer\n")
    dvc_main("update", str(data(repo, "file1.dvc")), cwd=repo)
    assert data(repo, "file1").read_text() == "newer\n"
    stage = yaml.safe_load(data(repo, "file1.dvc").read_text())
    assert stage["desc"].startswith("学習率")
    assert stage["meta"]["gcsdvc"]["name"] == "exp1"
    res = cli("sync", cwd=repo)
    assert res.stdout.splitlines() == ["exp1  unchanged 3", "sync: 3 unchanged"]
