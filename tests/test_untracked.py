"""What git sees in the data folder (gcsdvc.untracked); leftovers in sync and status."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import cli, data, entry, run, write_manifest
from test_workflows import commit_all

from gcsdvc import stages, untracked
from gcsdvc.git import committed_stages


@pytest.fixture
def git(tmp_path: Path) -> Path:
    """A git work tree whose manifest root is a subfolder (git prints paths from the top)."""
    run("git", "init", "-q", cwd=tmp_path)
    root = tmp_path / "sub"
    (root / "data" / "e").mkdir(parents=True)
    (root / "data" / "e" / "a.dvc").write_text("outs: []\n")
    (root / "data" / "e" / "b.dvc").write_text("outs: []\n")
    (root / "data" / "e" / ".gitignore").write_text("/a\n")
    run("git", "add", "-A", cwd=tmp_path)
    run("git", "commit", "-qm", "c", cwd=tmp_path)
    return root


def test_one_git_status_finds_changed_stages_and_untracked_files(git: Path) -> None:
    (git / "data" / "e" / "a").write_text("ignored: DVC's")
    (git / "data" / "e" / "a.dvc").write_text("outs: [changed]\n")
    (git / "data" / "e" / "new.dvc").write_text("outs: []\n")  # untracked, but a stage file
    (git / "data" / "e" / "x y.txt").write_text("left behind")
    (git / "data" / "e" / "deep").mkdir()
    (git / "data" / "e" / "deep" / "z").write_text("left behind")
    (git / "elsewhere.txt").write_text("outside the data folder")
    view = untracked.look(git, git / "data")
    assert view.changed == {"data/e/a.dvc"}
    assert sorted(view.others) == ["data/e/deep/z", "data/e/x y.txt"]
    assert view.unowned({"data/e/deep/z"}) == ["data/e/x y.txt"]


@pytest.mark.parametrize("case", ["no git", "no data folder", "git fails"])
def test_nothing_to_see_without_git_or_data(tmp_path: Path, case: str) -> None:
    root = tmp_path / "r"
    (root / "data").mkdir(parents=True)
    if case == "no data folder":
        run("git", "init", "-q", cwd=root)
        (root / "data").rmdir()
    elif case == "git fails":
        (root / ".git").write_text("gitdir: /nowhere\n")  # a broken work tree
    assert untracked.look(root, root / "data") == untracked.NOTHING


def test_committed_stage_is_read_from_head(git: Path) -> None:
    def committed_stage(root: Path, local: str) -> stages.ImportStage | None:
        return committed_stages(root, [local]).get(local)

    (git / "data" / "e" / "a.dvc").write_text("deps: [{path: gs://b/new}]\n")
    committed = committed_stage(git, "data/e/a")
    assert committed is not None and committed.out == "" and committed.source == "?"
    assert committed_stage(git, "data/e/nothing") is None
    (git / "data" / "e" / "bad.dvc").write_text("- [unclosed\n")
    (git / "data" / "e" / "list.dvc").write_text("- a list\n")
    run("git", "add", "-A", cwd=git)
    run("git", "commit", "-qm", "bad", cwd=git)
    assert committed_stage(git, "data/e/bad") is None
    assert committed_stage(git, "data/e/list") is None


def test_no_stage_is_committed_before_the_first_commit(tmp_path: Path) -> None:
    run("git", "init", "-q", cwd=tmp_path)
    (tmp_path / "a.dvc").write_text("outs: []\n")
    run("git", "add", "-A", cwd=tmp_path)  # staged is not committed
    assert committed_stages(tmp_path, ["a"]) == {}


def test_leftovers_in_dry_run_sync_and_status(repo: Path, seeded: str) -> None:
    write_manifest(repo, [entry(seeded, files=["file1"])])
    cli("sync", cwd=repo, check=True)
    commit_all(repo)
    folder = data(repo, "file1").parent
    (folder / "copy").write_bytes(data(repo, "file1").read_bytes())  # its bytes are cached
    (folder / "notes.txt").write_text("mine\n")

    res = cli("sync", "--dry-run", cwd=repo, check=True)
    assert f"leftover: {folder.relative_to(repo).as_posix()}/copy: no stage owns it" in res.stderr
    assert "notes.txt: no stage owns it and 'git add -A' would commit it" in res.stderr
    report = json.loads(cli("status", "--offline", "--json", cwd=repo).stdout)
    assert [(u["path"].rsplit("/", 1)[-1], u["cached"]) for u in report["untracked"]] == [
        ("copy", True),
        ("notes.txt", False),
    ]
    assert report["needs_action"] is True

    res = cli("sync", cwd=repo, check=True)  # nothing else to do: the leftover alone is work
    assert "removed 1 leftover file(s)" in res.stdout
    assert not (folder / "copy").exists() and (folder / "notes.txt").exists()
    lines = cli("status", "--offline", cwd=repo).stdout.splitlines()
    assert "untracked: 1 file(s) in the data folder no stage owns" in lines
