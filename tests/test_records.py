"""What git sees of synced data: nothing, whenever a sync stops (issue 22, items 1 and 2).

A placed file's ``.gitignore`` line is written before the file; a line that went
missing (deleted by hand, a merge that took the other side's file, a root rule
gone) is reported by ``status`` and written back by the next sync; a data folder
git ignores, or one inside an output DVC tracks, is refused with nothing written.
Real git, DVC and (for the kill) a real ``gcsdvc`` process.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import QUOTED, cli, data, dvc_main, entry, run, snapshot, write_manifest
from faultproxy import FaultProxy, Faults
from test_faults import many_entry, start_sync, via, wait_for
from test_workflows import commit_all

FOLDER = f"data/project1/{QUOTED}"


def visible(root: Path) -> list[str]:
    """The data files below ``data/`` that ``git add -A`` would commit."""
    res = run("git", "status", "--porcelain", "--untracked-files=all", cwd=root)
    paths = [line[3:].strip('"') for line in res.stdout.splitlines()]
    names = [p.rsplit("/", 1)[-1] for p in paths if p.startswith("data/")]
    return [n for n in names if not n.endswith(".dvc") and n != ".gitignore"]


def lines(folder: Path) -> list[str]:
    path = folder / ".gitignore"
    return path.read_text().splitlines() if path.exists() else []


def status_json(root: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(cli("status", "--offline", "--json", cwd=root).stdout)
    return loaded


# -- item 1: a placed file is never visible to git unprotected --------------


@pytest.fixture
def many(bucket: str, put: Any) -> str:
    for n in range(12):
        put(f"{bucket}/project1/{QUOTED}/part-{n:02d}.bin", os.urandom(1 << 20))
    return bucket


def test_a_sync_killed_mid_transfer_leaves_no_placed_file_without_its_line(
    repo: Path, many: str, proxy: FaultProxy
) -> None:
    proxy.faults = Faults(delay=0.02)
    write_manifest(repo, [many_entry(many)])
    proc = start_sync(repo, proxy)
    folder = repo / FOLDER
    wait_for(lambda: len(list(folder.glob("part-*.bin"))) >= 2)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()  # reaps it and closes its pipes
    placed = len(list(folder.glob("part-*.bin")))
    assert placed >= 2
    assert visible(repo) == []  # the lines of the whole batch came first
    assert lines(folder) == [f"/part-{n:02d}.bin" for n in range(12)]

    proxy.faults = Faults()
    res = cli("sync", cwd=repo, env=via(proxy))
    assert res.returncode == 0, res.stderr
    assert visible(repo) == []
    assert lines(folder) == [f"/part-{n:02d}.bin" for n in range(12)]
    assert cli("status", "--offline", "--check", cwd=repo, env=via(proxy)).returncode == 0
    commit_all(repo)
    tracked = run("git", "ls-files", cwd=repo).stdout.split()
    assert not [p for p in tracked if p.endswith(".bin")]
    assert json.loads(dvc_main("status", "--json", cwd=repo).stdout) == {}


def test_a_failed_download_leaves_no_line_and_no_folder(
    repo: Path, seeded: str, proxy: FaultProxy
) -> None:
    """A line written ahead for a file that never came is taken back (nothing, no stage)."""
    proxy.faults = Faults(corrupt_media=True)
    write_manifest(repo, [entry(seeded)])
    res = cli("sync", cwd=repo, env=via(proxy))
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    assert [p for p in (repo / "data").rglob("*")] == []  # the data folder itself stays


def _delete_line(repo: Path) -> None:
    path = repo / FOLDER / ".gitignore"
    path.write_text("".join(f"{x}\n" for x in lines(repo / FOLDER) if x != "/file1"))


def _merge_theirs(repo: Path) -> None:
    """A branch that wrote its own data/.../.gitignore, merged with ``--theirs``."""
    run("git", "checkout", "-q", "-b", "other", "HEAD~1", cwd=repo)
    (repo / FOLDER).mkdir(parents=True, exist_ok=True)
    (repo / FOLDER / ".gitignore").write_text("/notes.txt\n")
    run("git", "add", f"{FOLDER}/.gitignore", cwd=repo)  # main's data files are here, untracked
    run("git", "commit", "-qm", "notes", cwd=repo)
    run("git", "checkout", "-q", "main", cwd=repo)
    merged = run("git", "merge", "-q", "other", cwd=repo, check=False)
    assert merged.returncode == 1  # both added the file: a conflict
    run("git", "checkout", "--theirs", f"{FOLDER}/.gitignore", cwd=repo)
    run("git", "add", f"{FOLDER}/.gitignore", cwd=repo)
    run("git", "commit", "-qm", "merge", cwd=repo)


def _root_rule_removed(repo: Path) -> None:
    """A file hidden by a root rule (no line of its own, as DVC writes none); the rule goes."""
    (repo / ".gitignore").unlink()


@pytest.mark.parametrize("how", ["deleted by hand", "merge --theirs", "root rule removed"])
def test_a_missing_line_is_reported_then_written_back(repo: Path, seeded: str, how: str) -> None:
    write_manifest(repo, [entry(seeded)])
    if how == "root rule removed":
        (repo / ".gitignore").write_text("file1\n")
    commit_all(repo)
    cli("sync", cwd=repo, check=True)
    assert visible(repo) == []
    commit_all(repo)
    assert "sync: 3 unchanged" in cli("sync", cwd=repo, check=True).stdout  # a no-op

    {"deleted by hand": _delete_line, "merge --theirs": _merge_theirs}.get(how, _root_rule_removed)(
        repo
    )
    exposed = {
        "deleted by hand": ["file1"],
        "merge --theirs": ["file1", "metrics.json"],
        "root rule removed": ["file1", "file1"],  # its own and parent_dir/'s
    }[how]
    assert visible(repo) == exposed

    # status: needs action, with the fix; --check fails.
    res = cli("status", "--offline", cwd=repo)
    assert "lack their .gitignore line ('git add -A' would commit them)" in res.stdout
    assert f"  {FOLDER}/file1  (fix: gcsdvc sync exp1)" in res.stdout
    assert cli("status", "--offline", "--check", cwd=repo).returncode == 1
    found = status_json(repo)
    assert found["needs_action"] is True
    assert {"path": f"{FOLDER}/file1", "name": "exp1", "fix": "gcsdvc sync exp1"} in found[
        "unignored"
    ]
    dry = cli("sync", "--dry-run", cwd=repo)
    assert f"{len(exposed)} data file(s) lack their .gitignore line" in dry.stdout

    # The sync writes the line back (the no-op path too) and says so.
    res = cli("sync", cwd=repo)
    assert res.returncode == 0, res.stderr
    assert f"wrote the missing .gitignore line of {len(exposed)} data file(s)" in res.stdout
    assert visible(repo) == []
    assert "/file1" in lines(repo / FOLDER)
    assert cli("status", "--offline", "--check", cwd=repo).returncode == 0
    assert status_json(repo)["unignored"] == []
    assert json.loads(dvc_main("status", "--json", cwd=repo).stdout) == {}
    commit_all(repo)
    assert not [p for p in run("git", "ls-files", cwd=repo).stdout.split() if p.endswith("file1")]


@contextlib.contextmanager
def full_disk(folder: Path) -> Iterator[str]:
    """``folder`` on a file system with no room left (a tmpfs, as root), else read-only.

    Yields the cause the .gitignore write meets.
    """
    folder.mkdir(parents=True)
    if os.geteuid() != 0:  # pragma: no cover - the suite runs as root in CI
        folder.chmod(0o555)
        try:
            yield os.strerror(errno.EACCES)
        finally:
            folder.chmod(0o755)
        return
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr!r}")
    try:
        filler = folder / "filler"
        exclude = folder.parents[2] / ".git" / "info" / "exclude"
        exclude.write_text(f"{exclude.read_text()}filler\n")
        with contextlib.suppress(OSError), filler.open("wb") as out:
            while True:
                out.write(b"\0" * 4096)
                out.flush()
        yield os.strerror(errno.ENOSPC)
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_gitignore_that_cannot_be_written_is_one_line_and_places_nothing(
    repo: Path, seeded: str
) -> None:
    write_manifest(repo, [entry(seeded)])
    folder = repo / FOLDER
    with full_disk(folder) as cause:
        res = cli("sync", cwd=repo)
        assert res.returncode == 1
        assert "Traceback" not in res.stderr
        failed = [line for line in res.stderr.splitlines() if line.startswith("failed")]
        assert failed == [
            f"failed: exp1: gs://{seeded}/project1/{QUOTED}/parent_dir/file1: cannot write "
            f"{FOLDER}/parent_dir/.gitignore ({cause}), so its files are not placed (git would "
            "see them); run the sync again once it can be written",
            f"failed: exp1: {FOLDER}/: cannot write {FOLDER}/.gitignore ({cause}), so its "
            "files are not placed (git would see them); run the sync again once it can be "
            "written (2 files)",
        ]
        assert "sync: 0 unchanged, 3 failed" in res.stdout
        assert visible(repo) == []
        assert not data(repo, "file1").exists()
        assert not data(repo, "metrics.json").exists()
    res = cli("sync", cwd=repo)
    assert res.returncode == 0, res.stderr
    assert visible(repo) == []


# -- item 2: refuse what DVC refuses ----------------------------------------


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (
            "data/",
            "error: data/ is ignored by git (.gitignore:2: data/), so its stages could never "
            "be committed; remove that line or choose another data_dir",
        ),
        (
            "/data/*",
            "error: data/ is ignored by git (.gitignore:2: /data/*), so its stages could never "
            "be committed; remove that line or choose another data_dir",
        ),
        (
            "*.json.dvc",
            f"error: {FOLDER}/metrics.json.dvc is ignored by git (.gitignore:2: *.json.dvc), so "
            "it could never be committed (DVC refuses it too); remove that line or change the "
            "entry's destination",
        ),
    ],
)
def test_a_stage_path_git_ignores_is_refused_with_nothing_written(
    repo: Path, seeded: str, rule: str, message: str
) -> None:
    (repo / ".gitignore").write_text(f"# left by the old download script\n{rule}\n")
    write_manifest(repo, [entry(seeded)])
    commit_all(repo)
    before = snapshot(repo)
    for args in (["sync"], ["sync", "--dry-run"]):
        res = cli(*args, cwd=repo)
        assert (res.returncode, res.stderr) == (1, message + "\n")
        assert snapshot(repo) == before
    assert not (repo / "data").exists()


def test_a_negated_rule_is_not_a_refusal(repo: Path, seeded: str) -> None:
    (repo / ".gitignore").write_text("*.dvc\n!*.dvc\n")
    write_manifest(repo, [entry(seeded)])
    assert cli("sync", cwd=repo).returncode == 0


@pytest.mark.parametrize("how", ["dvc add", "dvc add of a parent", "pipeline output"])
def test_a_data_folder_inside_a_dvc_output_is_refused_with_nothing_written(
    repo: Path, seeded: str, how: str
) -> None:
    settings: dict[str, Any] = {}
    if how == "dvc add":
        (repo / "data").mkdir()
        (repo / "data" / "notes.txt").write_text("mine\n")
        dvc_main("add", "data", cwd=repo)
        dvcfile, out, data_dir = "data.dvc", "data", "data"
    elif how == "dvc add of a parent":
        (repo / "outer").mkdir()
        (repo / "outer" / "notes.txt").write_text("mine\n")
        dvc_main("add", "outer", cwd=repo)
        dvcfile, out, data_dir = "outer.dvc", "outer", "outer/gcs"
        settings["data_dir"] = data_dir
    else:
        (repo / "dvc.yaml").write_text(
            "stages:\n  prepare:\n    cmd: mkdir -p data && touch data/x\n    outs:\n    - data\n"
        )
        dvcfile, out, data_dir = "dvc.yaml", "data", "data"
    write_manifest(repo, [entry(seeded)], **settings)
    commit_all(repo)
    before = snapshot(repo)
    res = cli("sync", cwd=repo)
    assert (res.returncode, res.stderr) == (
        1,
        f"error: {data_dir}/ is inside {out}, an output DVC tracks ({dvcfile}): 'dvc checkout' "
        f"of it would delete the synced data and stages; choose a data_dir outside {out}, or "
        f"stop tracking it ('dvc remove {dvcfile}')\n",
    )
    assert snapshot(repo) == before
    assert not list((repo / out).rglob("*.dvc"))
