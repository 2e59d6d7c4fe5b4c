"""``gcsdvc update``: upstream for kept copies (``skip_if_exist: true``), the manifest untouched.

Real git and DVC, storage through the Cloud Storage layer; the stages are
pinned (no default DVC remote), so a clone's ``dvc pull`` reads the generation
each stage records from the bucket.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import cli, dvc_main, load, run, snapshot, without_git_hint, without_progress
from gcslayer import GcsLayer
from test_rm import FILES, MANIFEST, sync_two
from test_team import git_status
from test_workflows import clone, commit_all

from gcsdvc.model import etag_generation

KEPT = "data/mnist/lr-0.1"


@pytest.fixture
def synced(repo: Path, bucket: str, put: Any) -> str:
    """Two experiments synced and committed; then lr-0.1's metrics change upstream."""
    sync_two(repo, bucket, put)
    put(f"{bucket}/mnist/lr-0.1/metrics.json", '{"acc": 0.93}')
    return bucket


def test_update_takes_the_newest_object_and_a_clone_pulls_it(
    repo: Path, synced: str, layer: GcsLayer, tmp_path: Path
) -> None:
    manifest = (repo / "params.yaml").read_bytes()
    res = cli("status", "lr-0.1", cwd=repo)
    assert "changed-upstream" in res.stdout  # kept: skip_if_exist: true

    res = cli("update", "lr-0.1", cwd=repo)
    assert res.returncode == 0
    assert without_git_hint(res.stdout) == [
        "lr-0.1  update 1, unchanged 1",
        "sync: 1 updated, 1 unchanged; 13 bytes downloaded in <t>, 0 retries",
    ]
    assert without_progress(res.stderr) == []
    assert (repo / "params.yaml").read_bytes() == manifest
    assert (repo / KEPT / "metrics.json").read_text() == '{"acc": 0.93}'
    newest = layer.current(synced, "mnist/lr-0.1/metrics.json")["generation"]
    assert load(repo / KEPT / "metrics.json.dvc")["deps"][0]["version_id"] == str(newest)
    assert dvc_main("status", cwd=repo).stdout == "Data and pipelines are up to date.\n"
    assert cli("status", "--check", "--strict", cwd=repo).returncode == 0
    assert git_status(repo) == [f" M {KEPT}/metrics.json.dvc"]

    # Nothing changed upstream since: a no-op that writes nothing.
    before = snapshot(repo)
    res = cli("update", "lr-0.1", cwd=repo)
    assert (res.returncode, res.stdout) == (0, "lr-0.1  unchanged 2\nsync: 2 unchanged\n")
    assert snapshot(repo) == before

    commit_all(repo)
    other = clone(repo, tmp_path)
    dvc_main("pull", cwd=other)
    assert (other / KEPT / "metrics.json").read_text() == '{"acc": 0.93}'
    assert (other / KEPT / "eval/history.csv").read_text() == "epoch,loss\n1,0.3\n"


def test_update_keeps_a_local_edit_unless_force(repo: Path, synced: str) -> None:
    edited = repo / KEPT / "metrics.json"
    edited.unlink()
    edited.write_text("mine\n")
    res = cli("update", "lr-0.1", cwd=repo)
    assert res.returncode == 1
    assert res.stdout.splitlines()[0] == "lr-0.1  unchanged 1, conflict 1"
    assert without_progress(res.stderr) == [
        f"failed: lr-0.1: gs://{synced}/mnist/lr-0.1/metrics.json: {KEPT}/metrics.json was "
        "edited (5 bytes, the stage records 13); kept. 'gcsdvc sync --force lr-0.1' or "
        f"'rm -r {KEPT}/metrics.json && gcsdvc sync lr-0.1' replaces it"
    ]
    assert edited.read_text() == "mine\n"
    cli("update", "lr-0.1", "--force", cwd=repo, check=True)
    assert edited.read_text() == '{"acc": 0.93}'
    assert cli("status", "--check", cwd=repo).returncode == 0


def test_update_dry_run_and_unknown_names_change_nothing(repo: Path, synced: str) -> None:
    before = snapshot(repo)
    res = cli("update", "lr-0.*", "-n", cwd=repo)
    assert (res.returncode, res.stderr) == (0, "")
    assert res.stdout.splitlines() == [
        "lr-0.1   update 1, unchanged 1",
        "lr-0.01  unchanged 1",
        "dry run: 1 change(s) planned, 13 bytes to download, nothing written",
    ]
    doc = json.loads(cli("update", "lr-0.1", "-n", "--json", cwd=repo).stdout)
    assert [(i["action"], i["path"]) for i in doc["items"]] == [
        ("update", f"{KEPT}/metrics.json"),
        ("unchanged", f"{KEPT}/eval/history.csv"),
    ]
    res = cli("update", "lr-0.2", cwd=repo)
    assert (res.returncode, res.stdout) == (2, "")
    assert res.stderr == "error: unknown experiment 'lr-0.2'; did you mean 'lr-0.1', 'lr-0.01'?\n"
    res = cli("update", cwd=repo)
    assert res.returncode == 2
    assert "Missing argument 'NAMES...'" in res.stderr
    assert snapshot(repo) == before
    run("git", "diff", "--quiet", cwd=repo)


def test_update_unpinned_records_the_new_etag_and_push_shares_it(
    repo: Path, bucket: str, put: Any, layer: GcsLayer, tmp_path: Path
) -> None:
    dvc_main("remote", "add", "-d", "store", str(tmp_path / "store"), cwd=repo)
    for name, text in FILES.items():
        put(f"{bucket}/{name}", text)
    (repo / "params.yaml").write_text(MANIFEST.format(bucket=bucket))
    cli("sync", cwd=repo, check=True)
    dvc_main("push", cwd=repo)
    commit_all(repo)
    put(f"{bucket}/mnist/lr-0.1/metrics.json", '{"acc": 0.93}')

    res = cli("status", "lr-0.1", cwd=repo)
    assert "  fix: gcsdvc update lr-0.1\n       dvc push\n" in res.stdout
    cli("update", "lr-0.1", cwd=repo, check=True)
    dep = load(repo / KEPT / "metrics.json.dvc")["deps"][0]
    assert "version_id" not in dep  # unpinned: shared through the DVC remote
    newest = layer.current(bucket, "mnist/lr-0.1/metrics.json")["generation"]
    assert etag_generation(dep["etag"]) == str(newest)  # the etag DVC records holds it
    assert "1 file pushed" in dvc_main("push", cwd=repo).stdout
    assert dvc_main("status", cwd=repo).stdout == "Data and pipelines are up to date.\n"
    commit_all(repo)

    put(f"{bucket}/mnist/lr-0.1/metrics.json", "overwritten again")  # the remote has the bytes
    other = clone(repo, tmp_path)
    dvc_main("pull", cwd=other)
    assert (other / KEPT / "metrics.json").read_text() == '{"acc": 0.93}'
