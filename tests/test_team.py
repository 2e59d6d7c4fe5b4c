"""A team sharing experiment data through DVC: two clones, a DVC remote, real git and DVC.

Each test is a regression test for one numbered item of issue 8; ``alice`` is the
``repo`` fixture, ``bob`` a clone of it. gcsdvc and DVC commands run in
process (``conftest.cli``, ``conftest.dvc_main``) except where only a real
process shows the output.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    QUOTED,
    cli,
    data,
    dvc,
    dvc_main,
    entry,
    load,
    run,
    snapshot,
    write_manifest,
)
from test_workflows import clone, commit_all

PREFIX = f"project1/{QUOTED}"


def remote_url(kind: str, tmp_path: Path, gcs: Any, bucket: str) -> str:
    """A DVC remote: a local folder, or a bucket on the emulator."""
    if kind == "folder":
        return str(tmp_path / "store")
    gcs.mkdir(f"{bucket}-store")
    return f"gs://{bucket}-store/dvc"


def git_status(root: Path) -> list[str]:
    res = run("git", "status", "--porcelain", "--untracked-files=all", cwd=root)
    return res.stdout.splitlines()


@pytest.fixture
def umask022() -> Iterator[None]:
    """The usual umask, inherited by every subprocess the test starts."""
    old = os.umask(0o022)
    yield
    os.umask(old)


# -- item 1: push after unpinning, pull after the source is gone -----------


@pytest.mark.parametrize("kind", ["folder", "gs"])
def test_push_uploads_every_synced_file_whatever_was_pushed_before(
    kind: str, repo: Path, seeded: str, gcs: Any, put: Any, tmp_path: Path
) -> None:
    url = remote_url(kind, tmp_path, gcs, seeded)
    (repo / "notes.txt").write_text("mine\n")
    dvc_main("add", "notes.txt", cwd=repo)
    write_manifest(repo, [entry(seeded)])
    cli("sync", cwd=repo, check=True)  # no default remote: pinned
    dvc_main("remote", "add", "store", url, cwd=repo)
    assert "1 file pushed" in dvc_main("push", "-r", "store", cwd=repo).stdout
    assert "Everything is up to date" in dvc_main("push", "-r", "store", cwd=repo).stdout

    dvc_main("remote", "default", "store", cwd=repo)
    assert "3 re-described" in cli("sync", cwd=repo, check=True).stdout
    assert "3 files pushed" in dvc_main("push", cwd=repo).stdout
    assert "new:" not in dvc_main("status", "-c", cwd=repo).stdout
    commit_all(repo)

    # The sources are overwritten and deleted; a teammate's fresh clone still gets the bytes.
    put(f"{seeded}/{PREFIX}/file1", "overwritten\n")
    gcs.rm(f"{seeded}/{PREFIX}/parent_dir/file1")
    bob = clone(repo, tmp_path)
    dvc_main("pull", cwd=bob)
    assert data(bob, "file1").read_text() == "top file1\n"
    assert data(bob, "parent_dir/file1").read_text() == "nested file1\n"

    # `dvc update` takes upstream and pins the stage again (DVC's own shape): push skips it
    # until the sync after it, and then uploads it.
    dvc_main("update", str(data(repo, "file1.dvc")), cwd=repo)
    assert "version_id" in load(data(repo, "file1.dvc"))["deps"][0]
    assert "Everything is up to date" in dvc_main("push", cwd=repo).stdout
    cli("sync", cwd=repo, check=True)
    assert "1 file pushed" in dvc_main("push", cwd=repo).stdout


# -- item 2: local files are never replaced silently ------------------------


def test_untracked_file_at_a_destination_is_kept_until_force(
    repo: Path, seeded: str, tmp_path: Path
) -> None:
    write_manifest(repo, [entry(seeded)])
    commit_all(repo)
    bob = clone(repo, tmp_path)
    # What the old download script left behind, edited by hand since.
    data(bob, "file1").parent.mkdir(parents=True)
    data(bob, "file1").write_text("bob's own notes\n")
    res = cli("sync", cwd=bob)
    assert res.returncode == 1
    assert "file1" in res.stderr and "--force" in res.stderr
    assert data(bob, "file1").read_text() == "bob's own notes\n"
    assert data(bob, "metrics.json").exists()  # the rest of the sync went on
    assert cli("sync", "--force", cwd=bob).returncode == 0
    assert data(bob, "file1").read_text() == "top file1\n"


# -- item 3: no traceback for any manifest change ---------------------------


def test_two_entries_sharing_an_object_both_moved(repo: Path, seeded: str) -> None:
    one = entry(seeded, name="a", files=["file1"], destination="A")
    two = entry(seeded, name="b", files=["file1"], destination="B")
    write_manifest(repo, [one, two])
    cli("sync", cwd=repo, check=True)
    write_manifest(repo, [{**one, "destination": "A2"}, {**two, "destination": "B2"}])
    for args in (["sync", "--dry-run"], ["sync"]):
        res = cli(*args, cwd=repo)
        assert "Traceback" not in res.stderr, res.stderr
        assert res.returncode == 0, res.stderr
    assert (repo / "data" / "A2" / "file1").read_text() == "top file1\n"
    assert (repo / "data" / "B2" / "file1").read_text() == "top file1\n"


# -- item 4: no DVC command but `dvc update` follows upstream ---------------


@pytest.mark.parametrize("kind", ["pinned", "folder", "gs"])
def test_dvc_commands_keep_skip_if_exist_entries(
    kind: str, repo: Path, seeded: str, gcs: Any, put: Any, tmp_path: Path
) -> None:
    unpinned = kind != "pinned"
    if unpinned:
        dvc_main("remote", "add", "-d", "store", remote_url(kind, tmp_path, gcs, seeded), cwd=repo)
    write_manifest(repo, [entry(seeded)])
    cli("sync", cwd=repo, check=True)
    (repo / "dvc.yaml").write_text(
        "stages:\n  use:\n    cmd: cp data/project1/*/file1 used.txt\n"
        f"    deps: [data/project1/{QUOTED}/file1]\n    outs: [used.txt]\n"
    )
    dvc_main("repro", cwd=repo)
    if unpinned:
        dvc_main("push", cwd=repo)
    commit_all(repo)
    put(f"{seeded}/{PREFIX}/file1", "changed upstream\n")

    for command in (["repro"], ["exp", "run"], ["commit", "-f"], ["checkout"], ["pull"]):
        dvc_main(*command, cwd=repo)
        assert data(repo, "file1").read_text() == "top file1\n", command
        assert (repo / "used.txt").read_text() == "top file1\n", command
    # `exp run` and `commit -f` re-record the dependency from upstream (the newest etag and
    # generation: a pull would fetch other bytes, a push skip them). status compares upstream
    # with the committed record, as the sync does; the next sync puts back exactly that, so
    # the stage is stale (the change upstream is still kept out, and said so).
    doc = json.loads(cli("status", "--json", cwd=repo).stdout)
    found = {f["path"]: f for f in doc["resources"][0]["files"]}[f"data/{PREFIX}/file1"]
    assert (found["state"], found["upstream"]) == ("stale-stage", "changed"), found
    assert found["note"].endswith("; changed-upstream kept"), found
    res = cli("sync", cwd=repo, check=True)
    assert "re-described" in res.stdout
    assert git_status(repo) == [], res.stdout

    # `dvc update` stays the explicit "take upstream"; the sync after it unpins it again.
    dvc_main("update", str(data(repo, "file1.dvc")), cwd=repo)
    assert data(repo, "file1").read_text() == "changed upstream\n"
    cli("sync", cwd=repo, check=True)
    stage = load(data(repo, "file1.dvc"))
    assert stage["frozen"] is True and ("version_id" in stage["deps"][0]) is not unpinned
    if unpinned:
        assert "1 file pushed" in dvc_main("push", cwd=repo).stdout


# -- item 5: stages depend on committed state only --------------------------


def test_a_local_default_remote_does_not_change_the_stages(
    repo: Path, seeded: str, tmp_path: Path
) -> None:
    write_manifest(repo, [entry(seeded)])
    commit_all(repo)
    bob = clone(repo, tmp_path)
    dvc_main("remote", "add", "--local", "-d", "mine", str(tmp_path / "mine"), cwd=repo)
    res = cli("sync", cwd=repo, check=True)
    assert ".dvc/config.local only" in res.stderr
    commit_all(repo)
    assert "version_id" in load(data(repo, "file1.dvc"))["deps"][0]  # still pinned

    cli("sync", cwd=bob, check=True)
    assert snapshot(bob / "data") == snapshot(repo / "data")


def test_dvc_status_is_quiet_when_nothing_changed(repo: Path, seeded: str, tmp_path: Path) -> None:
    """Pinned (no remote) stages: quiet. Unpinned ones are frozen imports without a
    generation, for which DVC prints one warning per stage: the documented trade-off.
    (`dvc status` runs as a real process: its warnings go through DVC's logging setup.)"""
    write_manifest(repo, [entry(seeded, files=["file1"])])
    cli("sync", cwd=repo, check=True)
    res = dvc("status", cwd=repo)
    assert (res.stdout.strip(), res.stderr) == ("Data and pipelines are up to date.", "")
    dvc_main("remote", "add", "-d", "store", str(tmp_path / "store"), cwd=repo)
    cli("sync", cwd=repo, check=True)
    res = dvc("status", cwd=repo)
    assert res.stdout.strip() == "Data and pipelines are up to date."
    assert res.stderr.count("is frozen") == 1


def test_dvc_gc_keeps_what_the_stages_use(repo: Path, seeded: str, put: Any) -> None:
    """`dvc gc -w` sees the synced files as used: a later restore needs no bucket."""
    write_manifest(repo, [entry(seeded, files=["file1", "metrics.json"])])
    cli("sync", cwd=repo, check=True)
    dvc_main("gc", "--workspace", "--force", cwd=repo)
    put(f"{seeded}/project1/{QUOTED}/file1", "another version\n")  # the recorded one is gone
    data(repo, "file1").unlink()
    res = cli("sync", cwd=repo)
    assert res.returncode == 0, res.stderr
    assert data(repo, "file1").read_text() == "top file1\n"


# -- item 6: DVC's documented shared-cache setup -----------------------------


def test_shared_symlink_cache_and_file_modes(
    repo: Path, seeded: str, put: Any, tmp_path: Path, umask022: None
) -> None:
    shared = tmp_path / "shared-cache"
    dvc_main("cache", "dir", str(shared), cwd=repo)
    dvc_main("config", "cache.type", "symlink", cwd=repo)
    dvc_main("config", "cache.shared", "group", cwd=repo)
    write_manifest(repo, [entry(seeded, skip_if_exist=False)])
    cli("sync", cwd=repo, check=True)
    assert data(repo, "file1").is_symlink()
    for path in (data(repo, "file1.dvc"), data(repo, ".gitignore")):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
    folders = [p for p in (shared / "files" / "md5").iterdir() if p.is_dir()]
    assert folders and {stat.S_IMODE(p.stat().st_mode) for p in folders} == {0o2775}

    put(f"{seeded}/{PREFIX}/file1", "newer\n")
    res = cli("sync", cwd=repo)
    assert res.returncode == 0, res.stderr
    assert data(repo, "file1").read_text() == "newer\n"
    commit_all(repo)

    # A teammate on the same server restores the data from the shared cache. (`dvc checkout`
    # cannot: DVC looks for a pinned import's data in its per-URL cache, .dvc/cache/fs.)
    bob = clone(repo, tmp_path)
    assert "3 restored" in cli("sync", cwd=bob, check=True).stdout
    assert data(bob, "file1").is_symlink() and data(bob, "file1").read_text() == "newer\n"


# -- item 7: freeze kept; moved and pruned data leaves nothing for git -------


def test_a_users_unfreeze_and_freeze_are_kept(repo: Path, seeded: str) -> None:
    write_manifest(repo, [entry(seeded, files=["file1", "metrics.json"])])
    cli("sync", cwd=repo, check=True)
    dvc_main("unfreeze", str(data(repo, "file1.dvc")), cwd=repo)
    write_manifest(repo, [entry(seeded, files=["file1", "metrics.json"], description="new")])
    res = cli("sync", cwd=repo, check=True)
    assert "2 re-described" in res.stdout and "1 stage(s) not frozen" in res.stdout
    assert "frozen" not in load(data(repo, "file1.dvc"))
    assert load(data(repo, "metrics.json.dvc"))["frozen"] is True


def test_moved_entry_leaves_no_untracked_files_after_pull(
    repo: Path, seeded: str, tmp_path: Path
) -> None:
    write_manifest(repo, [entry(seeded)])
    cli("sync", cwd=repo, check=True)
    commit_all(repo)
    bob = clone(repo, tmp_path)
    cli("sync", cwd=bob, check=True)

    # Alice moves the experiment; Bob pulls and syncs: his old copy must not become
    # an untracked file that `git add -A` would commit.
    write_manifest(repo, [entry(seeded, destination="moved")])
    cli("sync", cwd=repo, check=True)
    commit_all(repo)
    run("git", "pull", "-q", "--no-rebase", cwd=bob)
    res = cli("sync", cwd=bob, check=True)
    assert "removed 3 leftover file(s)" in res.stdout
    assert git_status(bob) == []
    assert (bob / "data" / "moved" / "file1").read_text() == "top file1\n"

    # A file of Bob's own in the data folder is reported, with the fix, never removed.
    (bob / "data" / "moved" / "notes.txt").write_text("mine\n")
    res = cli("status", "--check", "--json", cwd=bob)
    assert res.returncode == 1
    (item,) = json.loads(res.stdout)["untracked"]
    assert item["path"] == "data/moved/notes.txt" and "dvc add" in item["fix"]
    assert "no stage owns it" in cli("sync", cwd=bob, check=True).stderr
    assert (bob / "data" / "moved" / "notes.txt").exists()


# -- item 8: status --check, fix hints, pin_generations: false --------------


def test_check_strict_and_complete_fix_hints(
    repo: Path, seeded: str, put: Any, tmp_path: Path
) -> None:
    dvc_main("remote", "add", "-d", "store", str(tmp_path / "store"), cwd=repo)
    write_manifest(repo, [entry(seeded, files=["file1"])])
    cli("sync", cwd=repo, check=True)
    put(f"{seeded}/{PREFIX}/file1", "newer\n")
    res = cli("status", "--check", cwd=repo)
    assert res.returncode == 0, res.stdout  # skip_if_exist: true kept the old copy, as asked
    assert "changed-upstream" in res.stdout
    assert "  fix: gcsdvc update exp1\n       dvc push" in res.stdout
    res = cli("status", "--check", "--strict", "--json", cwd=repo)
    assert res.returncode == 1
    (file,) = json.loads(res.stdout)["resources"][0]["files"]
    assert file["fix"] == "gcsdvc update exp1 && dvc push"

    write_manifest(repo, [entry(seeded, files=["file1"], skip_if_exist=False)])
    assert cli("status", "--check", cwd=repo).returncode == 1


def test_unpinned_without_a_remote_warns(repo: Path, seeded: str) -> None:
    write_manifest(repo, [entry(seeded, files=["file1"])], pin_generations=False)
    res = cli("sync", cwd=repo, check=True)
    assert "no default DVC remote: a fresh clone cannot 'dvc pull'" in res.stderr


# -- issue 21: a DVC command that pins unpinned stages ----------------------


@pytest.mark.parametrize("command", ["exp run", "update"])
def test_a_dvc_command_that_pins_unpinned_stages_fails_the_check_until_a_sync(
    command: str, repo: Path, seeded: str, tmp_path: Path, put: Any
) -> None:
    """`dvc exp run` (every import, upstream unchanged) and `dvc update` (a changed object)
    record the object's ``version_id`` (dvc 3.67): DVC then treats the import as pinned and
    `dvc push` skips its data. status says so, with the fix; the sync unpins it again."""
    store = tmp_path / "store"
    dvc_main("remote", "add", "-d", "store", str(store), cwd=repo)
    write_manifest(repo, [entry(seeded)])
    cli("sync", cwd=repo, check=True)
    (repo / "dvc.yaml").write_text(
        "stages:\n  use:\n    cmd: echo used > used.txt\n"
        f"    deps: [data/project1/{QUOTED}/file1]\n    outs: [used.txt]\n"
    )
    dvc_main("repro", cwd=repo)
    commit_all(repo)
    if command == "update":
        put(f"{seeded}/{PREFIX}/file1", "changed upstream\n")
        pinned = [data(repo, "file1.dvc")]
        dvc_main("update", str(pinned[0]), cwd=repo)
    else:
        pinned = sorted((repo / "data").rglob("*.dvc"))
        dvc_main("exp", "run", cwd=repo)
    assert all("version_id" in load(path)["deps"][0] for path in pinned)
    md5s = [load(path)["outs"][0]["md5"] for path in pinned]

    def in_store(md5: str) -> bool:
        return (store / "files" / "md5" / md5[:2] / md5[2:]).is_file()

    dvc_main("push", cwd=repo)
    assert not any(map(in_store, md5s))  # DVC skips what it sees pinned
    res = cli("status", "--check", "--offline", "--json", cwd=repo)
    assert res.returncode == 1, res.stdout
    files = json.loads(res.stdout)["resources"][0]["files"]
    stale = {f["path"]: f["fix"] for f in files if f["state"] == "stale-stage"}
    assert stale == {
        str(path.relative_to(repo))[: -len(".dvc")]: "gcsdvc sync exp1 && dvc push"
        for path in pinned
    }
    assert {f["state"] for f in files if f["path"] not in stale} <= {"ok"}
    assert cli("status", "--check", cwd=repo).returncode == 1
    res = cli("sync", "--dry-run", cwd=repo)
    assert res.stdout.splitlines()[0].startswith(f"exp1  metadata {len(pinned)}")

    cli("sync", cwd=repo, check=True)
    assert not any("version_id" in load(path)["deps"][0] for path in pinned)
    res = cli("status", "--check", "--offline", cwd=repo)
    assert res.returncode == 0, res.stdout
    assert cli("status", "--check", cwd=repo).returncode == 0
    assert cli("sync", "--dry-run", cwd=repo).stdout.splitlines()[0] == "exp1  unchanged 3"
    pushed = "1 file pushed" if len(pinned) == 1 else f"{len(pinned)} files pushed"
    assert pushed in dvc_main("push", cwd=repo).stdout
    assert all(map(in_store, md5s))
