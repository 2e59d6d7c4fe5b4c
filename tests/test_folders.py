"""Whole-prefix entries: downloaded as file entries are, recorded as ``dvc import-url`` records.

Every test compares with what real DVC does with the same prefix, or counts what
reached the Cloud Storage layer.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    DESC,
    QUOTED,
    cli,
    dvc,
    dvc_main,
    entry,
    load,
    run,
    snapshot,
    without_git_hint,
    write_manifest,
)
from faultproxy import FORBIDDEN_TEXT
from gcslayer import GcsLayer
from test_workflows import clone, commit_all

from gcsdvc.cloud import CREDENTIALS_HINT

PREFIX = f"project1/{QUOTED}"


def whole(bucket: str, **over: Any) -> dict[str, Any]:
    folder = entry(bucket, name="whole", destination="whole", **over)
    del folder["files"]
    return folder


def dir_objects(root: Path) -> dict[str, bytes]:
    """DVC's ``.dir`` objects in the repository's cache, by name."""
    return {p.name: p.read_bytes() for p in (root / ".dvc" / "cache").rglob("*.dir")}


def without_ours(text: str) -> str:
    """A folder stage's text without what gcsdvc adds (desc, meta) and the stage md5."""
    lines = text.splitlines(keepends=True)
    assert lines[0] == f"desc: {DESC}\n" and lines[1].startswith("md5: ")
    return "".join(lines[2 : lines.index("meta:\n")])


def plain_import(tmp_path: Path, url: str, *more: str) -> Path:
    """A repository where DVC itself imported ``url`` as ``whole``."""
    plain = tmp_path / "plain"
    plain.mkdir()
    run("git", "init", "-q", cwd=plain)
    dvc_main("init", "-q", cwd=plain)
    dvc_main("import-url", url, "whole", *more, cwd=plain)
    return plain


@pytest.mark.parametrize("pinned", [True, False], ids=["pinned", "unpinned"])
def test_a_folder_import_is_byte_for_byte_what_dvc_import_url_writes(
    repo: Path, seeded: str, layer: GcsLayer, put: Any, tmp_path: Path, pinned: bool
) -> None:
    url = f"gs://{seeded}/{PREFIX}"
    layer.upload(seeded, f"{PREFIX}/logs/train.log", gzip.compress(b"step 1\n" * 300, mtime=0),
                 content_encoding="gzip")  # fmt: skip
    store = tmp_path / "store"
    dvc_main("remote", "add", "-d", "store", str(store), cwd=repo)
    write_manifest(repo, [whole(seeded, skip_if_exist=False)], pin_generations=pinned)
    res = cli("sync", cwd=repo)
    assert res.returncode == 0, res.stderr
    summary = "sync: 1 added, 0 unchanged; 3.00M downloaded in <t>, 0 retries"
    assert without_git_hint(res.stdout) == ["whole  add 1", summary]
    ours = (repo / "data" / "whole.dvc").read_text()
    plain = plain_import(tmp_path, url, *(["--version-aware"] if pinned else []))
    theirs = (plain / "whole.dvc").read_text()
    assert without_ours(ours) == theirs.split("\n", 1)[1]  # all but DVC's stage md5
    assert dir_objects(repo) == dir_objects(plain)
    for name in ("file1", "parent_dir/file1", "metrics.json", "checkpoint.bin", "logs/train.log"):
        assert (repo / "data/whole" / name).read_bytes() == (plain / "whole" / name).read_bytes()
    assert (repo / "data" / ".gitignore").read_text() == "/whole\n"
    assert json.loads(dvc_main("status", "--json", cwd=repo).stdout) == {}
    dvc_main("update", "data/whole.dvc", cwd=repo)  # DVC finds nothing to change
    assert (repo / "data" / "whole.dvc").read_text() == ours
    # skip_if_exist: false follows upstream: nothing changed, nothing to do, nothing fetched.
    fetched = sum(layer.downloads.values())
    assert cli("sync", cwd=repo).stdout.splitlines()[0] == "whole  unchanged 1"
    assert (repo / "data" / "whole.dvc").read_text() == ours
    assert sum(layer.downloads.values()) == fetched

    # Upstream changes: our update records what `dvc update` records.
    put(f"{seeded}/{PREFIX}/added.txt", "added\n")
    put(f"{seeded}/{PREFIX}/file1", "top file1, again\n")
    res = cli("sync", cwd=repo)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0] == "whole  update 1"
    dvc_main("update", "whole.dvc", cwd=plain)
    ours = (repo / "data" / "whole.dvc").read_text()
    assert without_ours(ours) == (plain / "whole.dvc").read_text().split("\n", 1)[1]
    assert json.loads(dvc_main("status", "--json", cwd=repo).stdout) == {}

    # A teammate's fresh clone pulls the folder: from the bucket (pinned), the DVC remote.
    dvc_main("push", cwd=repo)
    commit_all(repo)
    fresh = clone(repo, tmp_path)
    dvc_main("pull", cwd=fresh)
    assert snapshot(fresh / "data") == snapshot(repo / "data")
    assert cli("status", "--check", cwd=fresh).returncode == 0


def test_a_folder_restored_from_the_cache_and_fetched_where_the_cache_lacks_it(
    repo: Path, seeded: str, layer: GcsLayer
) -> None:
    write_manifest(repo, [whole(seeded)])
    cli("sync", cwd=repo, check=True)
    shutil.rmtree(repo / "data" / "whole")
    before = dict(layer.downloads)
    res = cli("sync", cwd=repo)
    assert res.stdout.splitlines()[0] == "whole  restore 1", res.stderr
    assert dict(layer.downloads) == before  # all from the DVC cache
    cached = repo / ".dvc" / "cache"
    for path in cached.rglob("*"):
        if path.is_file() and not path.name.endswith(".dir"):
            path.chmod(0o644)
            path.unlink()  # the DVC cache lost the files, not the folder's record
    shutil.rmtree(repo / "data" / "whole")
    res = cli("sync", cwd=repo)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0] == "whole  restore 1"
    assert (repo / "data/whole/parent_dir/file1").read_text() == "nested file1\n"
    assert json.loads(dvc_main("status", "--json", cwd=repo).stdout) == {}


def test_a_persistent_503_on_one_object_of_a_folder_is_tried_as_configured(
    repo: Path, seeded: str, layer: GcsLayer
) -> None:
    """GCSDVC_RETRIES reaches folder imports: two attempts, one line, nothing placed."""
    sick = (seeded, f"{PREFIX}/checkpoint.bin")
    write_manifest(repo, [whole(seeded), entry(seeded)])
    layer.unavailable.add(sick)
    try:
        before = snapshot(repo)
        res = cli("sync", cwd=repo, env={"GCSDVC_RETRIES": "2"})
    finally:
        layer.unavailable.clear()
    assert res.returncode == 1
    assert layer.downloads[sick] == 2
    assert "Traceback" not in res.stderr
    failed = [line for line in res.stderr.splitlines() if line.startswith("failed: ")]
    assert failed == [
        f"failed: whole: gs://{seeded}/{PREFIX}: gs://{seeded}/{PREFIX}/checkpoint.bin: "
        "HTTP 503: Backend Error"
    ]
    summary = "sync: 3 added, 0 unchanged, 1 failed; 35 bytes downloaded in <t>, 1 retry"
    assert summary in without_git_hint(res.stdout)
    after = snapshot(repo)
    assert not (repo / "data" / "whole").exists()
    assert {k for k in after if k.startswith("data/whole")} == set()
    assert {k for k in before if k not in after} == set()
    res = cli("sync", cwd=repo)
    assert res.returncode == 0, res.stderr
    assert (repo / "data" / "whole" / "checkpoint.bin").stat().st_size == 3 << 20


def test_a_folder_import_without_download_is_what_dvc_import_url_no_download_writes(
    repo: Path, seeded: str, tmp_path: Path
) -> None:
    write_manifest(repo, [whole(seeded)])
    res = cli("sync", "--no-download", cwd=repo)
    assert res.returncode == 0, res.stderr
    plain = plain_import(tmp_path, f"gs://{seeded}/{PREFIX}", "--no-download", "--version-aware")
    ours = (repo / "data" / "whole.dvc").read_text()
    assert without_ours(ours) == (plain / "whole.dvc").read_text().split("\n", 1)[1]
    assert dir_objects(repo) == dir_objects(plain)
    assert not (repo / "data" / "whole").exists()
    dvc_main("pull", cwd=repo)  # DVC fetches it from the bucket
    assert (repo / "data/whole/parent_dir/file1").read_text() == "nested file1\n"


def test_a_failed_folder_update_leaves_the_folder_and_its_stage_as_they_were(
    repo: Path, seeded: str, layer: GcsLayer, put: Any
) -> None:
    write_manifest(repo, [whole(seeded, skip_if_exist=False)])
    cli("sync", cwd=repo, check=True)
    before = snapshot(repo)
    put(f"{seeded}/{PREFIX}/added.txt", "added\n")
    layer.forbidden.add((seeded, f"{PREFIX}/added.txt"))
    try:
        res = cli("sync", cwd=repo)
    finally:
        layer.forbidden.clear()
    assert res.returncode == 1
    assert [line for line in res.stderr.splitlines() if line.startswith("failed: ")] == [
        f"failed: whole: gs://{seeded}/{PREFIX}: gs://{seeded}/{PREFIX}/added.txt: "
        f"permission denied: {FORBIDDEN_TEXT} (check your credentials: {CREDENTIALS_HINT})"
    ]
    assert snapshot(repo) == before
    res = cli("sync", cwd=repo)
    assert res.returncode == 0, res.stderr
    assert (repo / "data/whole/added.txt").read_text() == "added\n"


def test_a_fresh_clone_syncs_a_folder_import_from_the_bucket_without_a_dvc_remote(
    repo: Path, seeded: str, tmp_path: Path
) -> None:
    """Pinned, with no DVC remote: the clone's sync fetches the files and checks that they
    make the recorded folder; DVC's own `dvc pull` fetches the recorded generations from the
    bucket (a versioned import, as `dvc import-url --version-aware` records it)."""
    write_manifest(repo, [whole(seeded)])
    cli("sync", cwd=repo, check=True)
    commit_all(repo)
    fresh = clone(repo, tmp_path)
    res = cli("sync", cwd=fresh)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0] == "whole  restore 1"
    assert snapshot(fresh / "data") == snapshot(repo / "data")
    assert json.loads(dvc_main("status", "--json", cwd=fresh).stdout) == {}
    (tmp_path / "pulled").mkdir()
    pulled = clone(repo, tmp_path / "pulled")
    dvc_main("pull", cwd=pulled)
    assert snapshot(pulled / "data") == snapshot(repo / "data")
    assert cli("status", "--check", cwd=pulled).returncode == 0


FROZEN = "is frozen. Its dependencies are not going to be shown in the status output."


def dvc_status(root: Path) -> tuple[str, str]:
    """``dvc status`` as a process prints it (DVC's warnings go to the process's stderr)."""
    res = dvc("status", cwd=root)
    return res.stdout, res.stderr


def assert_dvc_writes_it_back(root: Path, stage_file: str) -> None:
    """DVC reads the stage, computes our stage md5, and writes back every byte of it."""
    from dvc.repo import Repo
    from dvc.stage.utils import compute_md5

    path = root / stage_file
    text = path.read_text()
    with Repo(str(root)) as dvc_repo:
        (stage,) = dvc_repo.stage.collect(str(path))
        assert compute_md5(stage) == load(path)["md5"]
        stage.dump()
    assert path.read_text() == text
    dvc_main("commit", "-f", stage_file, cwd=root)  # nothing changed upstream
    assert path.read_text() == text


def test_a_pinned_folder_import_is_checked_by_dvc_status_without_a_frozen_warning(
    repo: Path, seeded: str
) -> None:
    write_manifest(repo, [whole(seeded)])
    cli("sync", cwd=repo, check=True)
    assert dvc_status(repo) == ("Data and pipelines are up to date.\n", "")
    assert_dvc_writes_it_back(repo, "data/whole.dvc")

    (repo / "data/whole/parent_dir/file1").unlink()
    res = cli("status", cwd=repo)
    assert res.returncode == 0
    assert "  missing  data/whole  (not on disk: parent_dir/file1)" in res.stdout.splitlines()
    changed = "data/whole.dvc:\n\tchanged outs:\n\t\tmodified:           data/whole\n"
    assert dvc_status(repo) == (changed, "")
    res = cli("sync", cwd=repo)
    assert without_git_hint(res.stdout) == ["whole  restore 1", "sync: 1 restored, 0 unchanged"]
    assert (repo / "data/whole/parent_dir/file1").read_text() == "nested file1\n"
    assert cli("status", "--check", cwd=repo).returncode == 0
    assert cli("sync", cwd=repo).stdout.splitlines() == ["whole  unchanged 1", "sync: 1 unchanged"]
    assert dvc_status(repo) == ("Data and pipelines are up to date.\n", "")


def test_a_folder_stage_follows_the_pinning_mode_both_ways(
    repo: Path, seeded: str, tmp_path: Path
) -> None:
    dvc_main("remote", "add", "-d", "store", str(tmp_path / "store"), cwd=repo)
    write_manifest(repo, [whole(seeded)], pin_generations=True)
    cli("sync", cwd=repo, check=True)
    commit_all(repo)  # git's record is then the other mode's: it must not leak into the stage
    stage = repo / "data" / "whole.dvc"
    pinned = stage.read_text()
    assert "  fs_config:\n    version_aware: true\n  files:\n" in pinned
    assert pinned.endswith("  path: whole\n  push: false\nmeta:\n" + pinned.split("meta:\n")[1])
    stale = (
        "  stale-stage  data/whole  (not as a sync writes it (description, name, pinning or "
        "the object's record))"
    )
    plain = plain_import(tmp_path, f"gs://{seeded}/{PREFIX}")

    for mode, text in ((False, None), (True, pinned)):
        write_manifest(repo, [whole(seeded)], pin_generations=mode)
        res = cli("status", "--check", cwd=repo)
        assert res.returncode == 1 and stale in res.stdout.splitlines(), res.stdout
        res = cli("sync", cwd=repo)
        assert without_git_hint(res.stdout) == [
            "whole  metadata 1",
            "sync: 1 re-described, 0 unchanged",
        ]
        if text is None:  # unpinned: what `dvc import-url` without --version-aware writes
            assert (
                without_ours(stage.read_text())
                == (plain / "whole.dvc").read_text().split("\n", 1)[1]
            )
            out, err = dvc_status(repo)
            assert (out, err.count(FROZEN)) == ("Data and pipelines are up to date.\n", 1)
        else:
            assert stage.read_text() == text
            assert dvc_status(repo) == ("Data and pipelines are up to date.\n", "")
        assert_dvc_writes_it_back(repo, "data/whole.dvc")
        assert cli("status", "--check", cwd=repo).returncode == 0
        assert cli("sync", cwd=repo).stdout.splitlines()[0] == "whole  unchanged 1"
