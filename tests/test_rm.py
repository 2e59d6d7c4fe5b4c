"""``gcsdvc rm``: entries out of the manifest with their stages, data and .gitignore lines.

Real git and DVC, storage through the Cloud Storage layer; ``repo`` is the one
who removes, clones play the teammates.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import Ran, cli, dvc_main, run, snapshot
from gcslayer import GcsLayer
from test_team import git_status
from test_workflows import clone, commit_all

MANIFEST = """\
# experiments of the MNIST study
train:
  lr: 0.1

resources:
- name: lr-0.1
  bucket: {bucket}
  blob: mnist
  subblob: lr-0.1
  files:
  - metrics.json
  - eval/history.csv
  destination: mnist/lr-0.1
  description: learning rate 0.1

- name: lr-0.01   # the baseline
  bucket: {bucket}
  blob: mnist
  subblob: lr-0.01
  files:
  - metrics.json
  destination: mnist/lr-0.01
"""
# What is left: every byte but the first entry's lines and the blank line below them.
AFTER = """\
# experiments of the MNIST study
train:
  lr: 0.1

resources:
- name: lr-0.01   # the baseline
  bucket: {bucket}
  blob: mnist
  subblob: lr-0.01
  files:
  - metrics.json
  destination: mnist/lr-0.01
"""
FILES = {
    "mnist/lr-0.1/metrics.json": '{"acc": 0.91}',
    "mnist/lr-0.1/eval/history.csv": "epoch,loss\n1,0.3\n",
    "mnist/lr-0.01/metrics.json": '{"acc": 0.97}',
}
GONE = "data/mnist/lr-0.1"


def sync_two(repo: Path, bucket: str, put: Any) -> str:
    """Two experiments synced and committed in ``repo``."""
    for name, text in FILES.items():
        put(f"{bucket}/{name}", text)
    (repo / "params.yaml").write_text(MANIFEST.format(bucket=bucket))
    cli("sync", cwd=repo, check=True)
    commit_all(repo)
    return bucket


@pytest.fixture
def synced(repo: Path, bucket: str, put: Any) -> str:
    return sync_two(repo, bucket, put)


def test_rm_takes_out_the_entry_stages_data_and_lines_and_the_cache_brings_them_back(
    repo: Path, synced: str, tmp_path: Path, layer: GcsLayer
) -> None:
    bob = clone(repo, tmp_path)  # a teammate with the data
    cli("sync", cwd=bob, check=True)

    res = cli("rm", "lr-0.1", cwd=repo)
    assert (res.returncode, res.stderr) == (0, "")
    assert res.stdout.splitlines() == [
        "lr-0.1: removed the entry and 2 file(s) with their stages and .gitignore lines",
        f"the bytes stay in the DVC cache; undo: git checkout HEAD -- params.yaml {GONE} "
        "&& gcsdvc sync lr-0.1",
        f"to commit: git add params.yaml {GONE}",
    ]
    assert (repo / "params.yaml").read_text() == AFTER.format(bucket=synced)
    assert not (repo / GONE).exists()
    assert sorted(git_status(repo)) == [
        f" D {GONE}/.gitignore",
        f" D {GONE}/eval/.gitignore",
        f" D {GONE}/eval/history.csv.dvc",
        f" D {GONE}/metrics.json.dvc",
        " M params.yaml",
    ]
    assert cli("status", "--check", "--offline", cwd=repo).returncode == 0
    assert dvc_main("status", cwd=repo).stdout == "Data and pipelines are up to date.\n"

    # The undo it prints brings every byte back from the DVC cache: nothing is downloaded.
    downloads = layer.media_requests
    run("git", "checkout", "HEAD", "--", "params.yaml", GONE, cwd=repo)
    cli("sync", "lr-0.1", cwd=repo, check=True)
    assert layer.media_requests == downloads
    assert (repo / GONE / "metrics.json").read_text() == '{"acc": 0.91}'
    assert (repo / GONE / "eval/history.csv").read_text() == "epoch,loss\n1,0.3\n"
    assert git_status(repo) == []
    assert cli("status", "--check", cwd=repo).returncode == 0

    # Removed again and committed with the command it prints.
    assert cli("rm", "lr-0.1", cwd=repo).returncode == 0
    run("git", "add", "params.yaml", GONE, cwd=repo)
    assert sorted(git_status(repo)) == sorted(
        f"{line[1]}  {line[3:]}" for line in [
            f" D {GONE}/.gitignore",
            f" D {GONE}/eval/.gitignore",
            f" D {GONE}/eval/history.csv.dvc",
            f" D {GONE}/metrics.json.dvc",
            " M params.yaml",
        ]
    )  # fmt: skip
    run("git", "commit", "-qm", "rm lr-0.1", cwd=repo)

    # A teammate who had the data: git drops the stages and lines, the files stay untracked.
    run("git", "pull", "-q", cwd=bob)
    assert dvc_main("status", cwd=bob).stdout == "Data and pipelines are up to date.\n"
    res = cli("status", "--check", "--offline", cwd=bob)
    assert res.returncode == 1
    assert "untracked: 2 file(s) in the data folder no stage owns" in res.stdout
    assert "(fix: gcsdvc sync removes it (a copy is in the DVC cache))" in res.stdout
    cli("sync", cwd=bob, check=True)
    assert not (bob / GONE).exists()
    assert git_status(bob) == []
    assert cli("status", "--check", cwd=bob).returncode == 0

    # A teammate who clones now syncs the one entry left, and sees a clean state.
    carol = tmp_path / "carol"
    run("git", "clone", "-q", str(repo), str(carol), cwd=tmp_path)
    cli("sync", cwd=carol, check=True)
    assert dvc_main("status", cwd=carol).stdout == "Data and pipelines are up to date.\n"
    assert cli("status", "--check", cwd=carol).returncode == 0
    assert not (carol / GONE).exists()


def test_rm_of_an_unknown_name_is_one_line_with_close_names(repo: Path, synced: str) -> None:
    before = snapshot(repo)
    res = cli("rm", "lr-0.01", "lr-0.2", cwd=repo)
    assert (res.returncode, res.stdout) == (2, "")
    assert res.stderr == "error: unknown experiment 'lr-0.2'; did you mean 'lr-0.1', 'lr-0.01'?\n"
    assert snapshot(repo) == before


def test_rm_refuses_a_file_edited_since_it_was_synced(repo: Path, synced: str) -> None:
    edited = repo / GONE / "metrics.json"
    edited.unlink()
    edited.write_text('{"acc": 0.99}')
    before = snapshot(repo)
    res = cli("rm", "lr-0.1", cwd=repo)
    assert (res.returncode, res.stdout) == (1, "")
    assert res.stderr == (
        f"error: {GONE}/metrics.json was edited since it was synced, so the DVC cache could "
        "not bring it back; kept. Move it out of the data folder first, or pass --keep-data "
        "(nothing was removed)\n"
    )
    assert snapshot(repo) == before


def test_rm_dry_run_says_what_would_go_and_changes_nothing(repo: Path, synced: str) -> None:
    before = snapshot(repo)
    res = cli("rm", "lr-0.1", "lr-0.01", "-n", cwd=repo)
    assert (res.returncode, res.stderr) == (0, "")
    assert res.stdout.splitlines() == [
        "lr-0.1: would remove the entry and 2 file(s) with their stages and .gitignore lines",
        "lr-0.01: would remove the entry and 1 file(s) with their stages and .gitignore lines",
        "dry run: nothing written",
    ]
    res = cli("rm", "lr-0.1", "-n", "-v", cwd=repo)
    assert res.stdout.splitlines()[1:3] == [
        f"  {GONE}/eval/history.csv",
        f"  {GONE}/metrics.json",
    ]
    res = cli("rm", "lr-0.01", "--dry-run", "--json", cwd=repo)
    assert json.loads(res.stdout) == {
        "schema": 1,
        "dry_run": True,
        "keep_data": False,
        "removed": [{"name": "lr-0.01", "paths": ["data/mnist/lr-0.01/metrics.json"]}],
        "to_git_add": [],
        "staged": [],
    }
    assert snapshot(repo) == before


def test_rm_keep_data_keeps_the_files_ignored_by_git(repo: Path, synced: str) -> None:
    res = cli("rm", "lr-0.1", "--keep-data", cwd=repo)
    assert (res.returncode, res.stderr) == (0, "")
    assert res.stdout.splitlines() == [
        "lr-0.1: removed the entry and 2 stage(s); the data stays, still ignored by git",
        f"to commit: git add params.yaml {GONE}",
    ]
    assert (repo / GONE / "metrics.json").read_text() == '{"acc": 0.91}'
    assert (repo / GONE / ".gitignore").read_text() == "/metrics.json\n"
    # git sees the stages go, never the kept files; nothing reports or removes them.
    assert sorted(git_status(repo)) == [
        f" D {GONE}/eval/history.csv.dvc",
        f" D {GONE}/metrics.json.dvc",
        " M params.yaml",
    ]
    assert cli("status", "--check", cwd=repo).returncode == 0
    cli("sync", cwd=repo, check=True)
    assert (repo / GONE / "eval/history.csv").read_text() == "epoch,loss\n1,0.3\n"
    assert dvc_main("status", cwd=repo).stdout == "Data and pipelines are up to date.\n"


def test_rm_of_a_whole_prefix_entry_removes_its_folder_import(
    repo: Path, bucket: str, put: Any, layer: GcsLayer
) -> None:
    put(f"{bucket}/runs/r1/a.txt", "a\n")
    put(f"{bucket}/runs/r1/sub/b.txt", "b\n")
    (repo / "params.yaml").write_text(
        f"resources:\n- name: r1\n  bucket: {bucket}\n  blob: runs\n  subblob: r1\n"
        "  destination: runs/r1\n"
    )
    cli("sync", cwd=repo, check=True)
    commit_all(repo)
    assert cli("rm", "r1", "-q", cwd=repo) == Ran(0, "", "")
    assert (repo / "params.yaml").read_text() == "resources: []\n"
    assert not (repo / "data/runs").exists()
    assert sorted(git_status(repo)) == [
        " D data/runs/.gitignore",
        " D data/runs/r1.dvc",
        " M params.yaml",
    ]
    assert "no data or pipelines tracked" in dvc_main("status", cwd=repo).stdout

    downloads = layer.media_requests
    run("git", "checkout", "HEAD", "--", "params.yaml", "data/runs", cwd=repo)
    cli("sync", "r1", cwd=repo, check=True)
    assert (repo / "data/runs/r1/sub/b.txt").read_text() == "b\n"
    assert layer.media_requests == downloads
    assert git_status(repo) == []


def test_rm_under_autostage_stages_the_removal(repo: Path, synced: str) -> None:
    dvc_main("config", "core.autostage", "true", cwd=repo)
    res = cli("rm", "lr-0.01", "--json", cwd=repo)
    assert (res.returncode, res.stderr) == (0, "")
    gone = "data/mnist/lr-0.01"
    assert json.loads(res.stdout)["staged"] == [
        f"{gone}/.gitignore",
        f"{gone}/metrics.json.dvc",
        "params.yaml",
    ]
    assert sorted(git_status(repo)) == [
        " M .dvc/config",
        f"D  {gone}/.gitignore",
        f"D  {gone}/metrics.json.dvc",
        "M  params.yaml",
    ]
    assert "to commit" not in cli("rm", "lr-0.1", cwd=repo).stdout
