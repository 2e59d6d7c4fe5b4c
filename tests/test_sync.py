"""End-to-end sync against the emulator, with real git and real DVC.

The first test runs the real CLI in a subprocess, as a user would; the others run it in process.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    DESC,
    QUOTED,
    cli,
    data,
    dvc_main,
    entry,
    gcsdvc,
    load,
    run,
    snapshot,
    timeless,
    write_manifest,
)

from gcsdvc import snapshot as snapshot_mod
from gcsdvc.manifest import load_manifest
from gcsdvc.stages import ImportStage


def test_first_sync_writes_import_stages(repo: Path, seeded: str) -> None:
    write_manifest(repo, [entry(seeded)])
    res = gcsdvc("sync", cwd=repo)
    assert res.returncode == 0, res.stderr
    folder = f"data/project1/{QUOTED}"
    assert timeless(res.stdout) == [
        "exp1  add 3",
        "sync: 3 added, 0 unchanged; 35 bytes downloaded in <t>, 0 retries",
        "",
        "To track the changes with git (5 files in 1 folder(s)), run:",
        "",
        "\tgit add " + shlex.quote(folder),
        "",
        "To enable auto staging, run:",
        "",
        "\tdvc config core.autostage true",
    ]
    # The hint is true: after it, git sees nothing of ours untracked.
    run(*shlex.split(res.stdout.splitlines()[5]), cwd=repo)
    untracked = run("git", "status", "--porcelain", "-uall", cwd=repo).stdout.splitlines()
    assert [line for line in untracked if line.startswith("??")] == ["?? params.yaml"]
    assert data(repo, "parent_dir/file1").read_text() == "nested file1\n"
    assert data(repo, "file1").read_text() == "top file1\n"
    assert not data(repo, "checkpoint.bin").exists()

    stage = load(data(repo, "parent_dir/file1.dvc"))
    source = f"gs://{seeded}/project1/{QUOTED}/parent_dir/file1"
    assert stage["desc"] == DESC
    assert stage["frozen"] is True
    assert stage["meta"] == {
        "gcsdvc": {
            "name": "exp1",
            "bucket": seeded,
            "blob": "project1",
            "subblob": QUOTED,
            "file": "parent_dir/file1",
        }
    }
    (dep,) = stage["deps"]
    (out,) = stage["outs"]
    assert dep["path"] == source and dep["size"] == 13 and int(dep["etag"], 16)
    assert out == {"md5": out["md5"], "size": 13, "hash": "md5", "path": "file1"}
    assert (data(repo, "parent_dir") / ".gitignore").read_text() == "/file1\n"

    # Nothing committed names the emulator, and DVC accepts the result as its own.
    for path in (repo / "data").rglob("*.dvc"):
        assert "127.0.0.1" not in path.read_text()
    status = dvc_main("status", "--json", cwd=repo)
    assert json.loads(status.stdout) == {}


def test_stage_matches_dvc_import_url(repo: Path, seeded: str, tmp_path: Path) -> None:
    write_manifest(repo, [entry(seeded)])
    cli("sync", cwd=repo, check=True)
    other = tmp_path / "plain"
    other.mkdir()
    run("git", "init", "-q", cwd=other)
    dvc_main("init", "-q", cwd=other)
    source = f"gs://{seeded}/project1/{QUOTED}/parent_dir/file1"
    dvc_main("import-url", source, "file1", cwd=other)
    theirs = load(other / "file1.dvc")
    # Read and written back by gcsdvc, DVC's own stage file keeps every byte.
    text = (other / "file1.dvc").read_text()
    assert ImportStage.load(other / "file1.dvc").dump() == text  # type: ignore[union-attr]
    ours = load(data(repo, "parent_dir/file1.dvc"))
    # Without a DVC remote gcsdvc pins the generation, exactly like import-url.
    assert ours["deps"] == theirs["deps"]
    assert ours["frozen"] is theirs["frozen"] is True
    assert ours["outs"] == theirs["outs"]

    # Our stage checksum is DVC's.
    from dvc.repo import Repo
    from dvc.stage.utils import compute_md5

    with Repo(str(repo)) as dvc_repo:
        (stage,) = dvc_repo.stage.collect(str(data(repo, "parent_dir/file1.dvc")))
        assert compute_md5(stage) == ours["md5"]


def test_resync_is_a_byte_identical_noop(repo: Path, seeded: str) -> None:
    write_manifest(repo, [entry(seeded)])
    cli("sync", cwd=repo, check=True)
    before = snapshot(repo)
    mtimes = {p: p.stat().st_mtime_ns for p in (repo / "data").rglob("*")}
    res = cli("sync", cwd=repo)
    assert res.returncode == 0
    assert res.stdout.splitlines() == ["exp1  unchanged 3", "sync: 3 unchanged"]
    assert snapshot(repo) == before
    assert {p: p.stat().st_mtime_ns for p in (repo / "data").rglob("*")} == mtimes


@pytest.mark.parametrize("skip", [True, False])
def test_upstream_change(repo: Path, seeded: str, put: Any, skip: bool) -> None:
    write_manifest(repo, [entry(seeded, skip_if_exist=skip)])
    cli("sync", cwd=repo, check=True)
    put(f"{seeded}/project1/{QUOTED}/file1", "changed upstream\n")
    res = cli("sync", "-v", cwd=repo)
    assert res.returncode == 0, res.stderr
    if skip:
        assert data(repo, "file1").read_text() == "top file1\n"
        assert "exp1  unchanged 3" in res.stdout
    else:
        assert data(repo, "file1").read_text() == "changed upstream\n"
        assert "exp1  update 1, unchanged 2" in res.stdout
        stage = load(data(repo, "file1.dvc"))
        assert stage["outs"][0]["size"] == len("changed upstream\n")
    # DVC itself sees the kept, outdated copy as an available update.
    status = json.loads(dvc_main("status", "--json", cwd=repo).stdout)
    changed = {f"data/project1/{QUOTED}/file1.dvc"} if skip else set()
    assert set(status) == changed


def test_description_and_name_change_rewrite_metadata_only(repo: Path, seeded: str) -> None:
    write_manifest(repo, [entry(seeded)])
    cli("sync", cwd=repo, check=True)
    inode = data(repo, "file1").stat().st_ino
    old_md5 = load(data(repo, "file1.dvc"))["md5"]
    write_manifest(repo, [entry(seeded, name="renamed", description="new words")])
    res = cli("sync", cwd=repo)
    assert "renamed  metadata 3" in res.stdout
    stage = load(data(repo, "file1.dvc"))
    assert stage["desc"] == "new words"
    assert stage["meta"]["gcsdvc"]["name"] == "renamed"
    assert stage["md5"] == old_md5
    assert data(repo, "file1").stat().st_ino == inode


def test_destination_change_moves_data_and_stage(repo: Path, seeded: str) -> None:
    write_manifest(repo, [entry(seeded)])
    cli("sync", cwd=repo, check=True)
    write_manifest(repo, [entry(seeded, destination="moved/here")])
    res = cli("sync", cwd=repo)
    assert res.returncode == 0, res.stderr
    assert "exp1  move 3" in res.stdout
    new = repo / "data" / "moved" / "here"
    assert (new / "parent_dir" / "file1").read_text() == "nested file1\n"
    assert load(new / "file1.dvc")["outs"][0]["path"] == "file1"
    assert not (repo / "data" / "project1").exists()
    assert json.loads(dvc_main("status", "--json", cwd=repo).stdout) == {}


def test_removed_file_is_orphan_until_prune(repo: Path, seeded: str) -> None:
    write_manifest(repo, [entry(seeded)])
    cli("sync", cwd=repo, check=True)
    write_manifest(repo, [entry(seeded, files=["file1", "metrics.json"])])
    res = cli("sync", cwd=repo)
    assert res.returncode == 0
    assert "1 stage(s) no longer in the manifest; 'gcsdvc sync --prune' removes them" in res.stdout
    assert data(repo, "parent_dir/file1").exists()
    res = cli("sync", "--prune", cwd=repo)
    assert res.returncode == 0
    assert "1 pruned" in res.stdout
    assert not data(repo, "parent_dir").exists()
    assert data(repo, "file1").exists()


def test_dry_run_changes_nothing(repo: Path, seeded: str) -> None:
    write_manifest(repo, [entry(seeded)])
    before = snapshot(repo)
    res = cli("sync", "--dry-run", "-v", cwd=repo)
    assert res.returncode == 0
    assert "dry run: 3 change(s) planned, 35 bytes to download, nothing written" in res.stdout
    doc = json.loads(cli("sync", "--dry-run", "--json", cwd=repo).stdout)
    assert (doc["dry_run"], doc["bytes"], doc["done"]) == (True, 35, {})
    assert f"add       data/project1/{QUOTED}/parent_dir/file1" in res.stdout
    assert snapshot(repo) == before


def test_failures_do_not_stop_other_entries(repo: Path, seeded: str) -> None:
    write_manifest(
        repo,
        [
            entry(seeded),
            entry("no-such-bucket-gcsdvc", name="ghost", destination="ghost"),
            entry(seeded, name="partial", destination="partial", files=["file1", "missing.txt"]),
        ],
    )
    res = cli("sync", cwd=repo)
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    assert "failed: ghost: gs://no-such-bucket-gcsdvc/" in res.stderr
    assert "bucket 'no-such-bucket-gcsdvc' not found" in res.stderr
    assert f"failed: partial: gs://{seeded}/project1/{QUOTED}/missing.txt: object not found" in (
        res.stderr
    )
    assert data(repo, "file1").exists()
    assert (repo / "data" / "partial" / "file1").exists()
    assert not (repo / "data" / "partial" / "missing.txt.dvc").exists()


def test_no_download_then_dvc_pull(repo: Path, seeded: str) -> None:
    write_manifest(repo, [entry(seeded)])
    res = cli("sync", "--no-download", cwd=repo)
    assert res.returncode == 0, res.stderr
    assert not data(repo, "file1").exists()
    assert "md5" not in load(data(repo, "file1.dvc"))["outs"][0]
    dvc_main("pull", cwd=repo)
    assert data(repo, "file1").read_text() == "top file1\n"


def test_whole_prefix_entry_is_one_folder_import(repo: Path, seeded: str) -> None:
    whole = entry(seeded, name="whole", destination="whole")
    del whole["files"]
    write_manifest(repo, [whole])
    res = cli("sync", cwd=repo)
    assert res.returncode == 0, res.stderr
    stage = load(repo / "data" / "whole.dvc")
    assert stage["outs"][0]["path"] == "whole"
    assert stage["desc"] == DESC
    assert (repo / "data" / "whole" / "parent_dir" / "file1").read_text() == "nested file1\n"
    res = cli("sync", cwd=repo)
    assert res.stdout.splitlines() == ["whole  unchanged 1", "sync: 1 unchanged"]


def test_a_file_deleted_inside_a_folder_import_is_restored(repo: Path, seeded: str) -> None:
    """status and sync read the folder as DVC sees it: a deleted file is missing, and a
    sync puts it back from the DVC cache; a file edited inside is a conflict, as for a file."""
    whole = entry(seeded, name="whole", destination="whole")
    del whole["files"]
    write_manifest(repo, [whole])
    cli("sync", cwd=repo, check=True)
    run("git", "add", "-A", cwd=repo)
    run("git", "commit", "-qm", "synced", cwd=repo)
    folder = repo / "data" / "whole"
    (folder / "parent_dir" / "file1").unlink()
    # No no-op snapshot stands for a manifest with a folder import (DVC reads its files).
    assert cli("sync", "--dry-run", cwd=repo).stdout.splitlines()[0] == "whole  restore 1"
    assert snapshot_mod.unchanged(load_manifest(repo / "params.yaml"), (), True) is None

    res = cli("status", "--offline", "--check", "--json", cwd=repo)
    assert res.returncode == 1
    (found,) = json.loads(res.stdout)["resources"][0]["files"]
    assert (found["state"], found["fix"]) == ("missing", "gcsdvc sync whole")
    assert "parent_dir/file1" in found["note"]
    res = cli("sync", "--dry-run", cwd=repo)
    assert res.stdout.splitlines()[0] == "whole  restore 1"
    assert dvc_main("status", cwd=repo).stdout.strip() != "Data and pipelines are up to date."

    res = cli("sync", cwd=repo)
    assert res.returncode == 0, res.stderr
    # From the DVC cache: nothing downloaded, so no bytes nor time on the summary.
    assert res.stdout.splitlines()[:2] == ["whole  restore 1", "sync: 1 restored, 0 unchanged"]
    assert (folder / "parent_dir" / "file1").read_text() == "nested file1\n"
    assert cli("status", "--check", cwd=repo).returncode == 0
    assert cli("sync", "--dry-run", cwd=repo).stdout.splitlines()[0] == "whole  unchanged 1"
    assert dvc_main("status", cwd=repo).stdout.strip() == "Data and pipelines are up to date."

    # An edit inside is the user's: kept and reported, as for a file entry; --force replaces it.
    (folder / "file1").unlink()
    (folder / "file1").write_text("my edit\n")
    res = cli("status", "--offline", "--check", "--json", cwd=repo)
    assert res.returncode == 1
    assert json.loads(res.stdout)["resources"][0]["files"][0]["state"] == "modified"
    res = cli("sync", cwd=repo)
    assert res.returncode == 1
    assert "whole  conflict 1" in res.stdout
    assert (folder / "file1").read_text() == "my edit\n"
    res = cli("sync", "--force", cwd=repo)
    assert res.returncode == 0, res.stderr
    assert (folder / "file1").read_text() == "top file1\n"
    assert cli("status", "--check", cwd=repo).returncode == 0
    assert dvc_main("status", cwd=repo).stdout.strip() == "Data and pipelines are up to date."


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (
            "<<<<<<< HEAD\nmd5: a\n=======\nmd5: b\n>>>>>>> theirs\n",
            "has unresolved merge-conflict markers",
        ),
        ("\x00\x01garbage: [\n", "not a valid DVC stage file: "),
    ],
    ids=["merge conflict", "garbage"],
)
def test_a_stage_file_that_cannot_be_read_fails_its_own_file_only(
    repo: Path, seeded: str, put: Any, text: str, why: str
) -> None:
    put(f"{seeded}/other/x.txt", "x\n")
    other = entry(seeded, name="exp2", blob="other", subblob="", destination="other")
    write_manifest(repo, [entry(seeded), {**other, "files": ["x.txt"]}])
    cli("sync", cwd=repo, check=True)
    stage = data(repo, "file1.dvc")
    stage.write_text(text)
    (repo / "data" / "other" / "x.txt").unlink()

    res = cli("sync", cwd=repo)
    assert res.returncode == 1
    failed = [line for line in res.stderr.splitlines() if line.startswith("failed: ")]
    shown = f"data/project1/{QUOTED}/file1.dvc"
    assert len(failed) == 1 and failed[0].startswith(
        f"failed: exp1: gs://{seeded}/project1/{QUOTED}/file1: {shown} cannot be read ({why}"
    ), failed
    assert failed[0].endswith("): resolve the merge conflict in it, or delete it and sync again")
    assert (repo / "data" / "other" / "x.txt").read_text() == "x\n"  # the other entry synced
    assert cli("sync", "exp2", cwd=repo).returncode == 0
    res = cli("status", "--offline", cwd=repo)
    assert res.returncode == 0 and "broken-stage" in res.stdout
    assert f"  fix: rm {shlex.quote(shown)}" in res.stdout.splitlines()
    assert cli("status", "--check", "--offline", cwd=repo).returncode == 1

    stage.unlink()  # the fix: the file holds the listed object's bytes, so it is recorded
    res = cli("sync", "exp1", cwd=repo)
    assert res.returncode == 0, res.stderr
    assert cli("status", "--check", cwd=repo).returncode == 0
