"""End-to-end ``gcsdvc status``, ``list``, ``show`` and ``which`` against the emulator."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import cli, dvc_main, run

DESC = "学習率 0.01 — Learning-rate sweep"
FILES = ["keep.txt", "gone.txt", "edited.txt", "moved.txt", "dropped.txt", "old.txt"]


def write_manifest(root: Path, resources: list[dict[str, Any]]) -> None:
    text = yaml.safe_dump({"resources": resources}, allow_unicode=True, sort_keys=False)
    (root / "params.yaml").write_text(text)


def entry(bucket: str, name: str = "exp1", **over: Any) -> dict[str, Any]:
    base = {
        "name": name,
        "bucket": bucket,
        "blob": "proj",
        "subblob": name,
        "files": FILES,
        "destination": name,
        "description": DESC,
    }
    return base | over


@pytest.fixture
def synced(repo: Path, bucket: str, put: Any) -> str:
    """exp1 with six files, synced."""
    for file in FILES:
        put(f"{bucket}/proj/exp1/{file}", f"{file} v1\n")
    put(f"{bucket}/proj/fresh/new.txt", "new\n")
    write_manifest(repo, [entry(bucket)])
    res = cli("sync", cwd=repo)
    assert res.returncode == 0, res.stderr
    return bucket


def replace(path: Path, text: str) -> None:
    """Write new content without touching the inode (which may be the DVC cache's)."""
    path.unlink()
    path.write_text(text)


def states(report: dict[str, Any]) -> dict[str, str]:
    return {f["path"]: f["state"] for r in report["resources"] for f in r["files"]}


def test_every_state(repo: Path, synced: str, put: Any, gcs: Any) -> None:
    res = cli("status", "--json", "--check", cwd=repo)
    assert res.returncode == 0, res.stderr
    assert set(states(json.loads(res.stdout)).values()) == {"ok"}

    data = repo / "data" / "exp1"
    (data / "gone.txt").unlink()
    replace(data / "edited.txt", "EDITED.TXT v1\n")  # same size: only the md5 tells
    put(f"{synced}/proj/exp1/moved.txt", "moved.txt v2\n")
    gcs.rm(f"{synced}/proj/exp1/dropped.txt")
    kept = [f for f in FILES if f != "old.txt"]
    write_manifest(repo, [entry(synced, files=kept), entry(synced, "fresh", files=["new.txt"])])

    res = cli("status", "--json", "--check", cwd=repo)
    assert res.returncode == 1
    report = json.loads(res.stdout)
    assert states(report) == {
        "data/exp1/keep.txt": "ok",
        "data/exp1/gone.txt": "missing",
        "data/exp1/edited.txt": "modified",
        "data/exp1/moved.txt": "changed-upstream",
        "data/exp1/dropped.txt": "deleted-upstream",
        "data/fresh/new.txt": "not-synced",
    }
    assert report["orphans"] == [
        {
            "path": "data/exp1/old.txt",
            "source": f"gs://{synced}/proj/exp1/old.txt",
            "name": "exp1",
            "stage": "data/exp1/old.txt.dvc",
        }
    ]
    first = report["resources"][0]
    assert (first["name"], first["description"]) == ("exp1", DESC)
    assert first["files"][0]["source"] == f"gs://{synced}/proj/exp1/keep.txt"

    res = cli("status", cwd=repo)
    assert res.returncode == 0
    assert res.stdout.splitlines() == [
        "experiment  files  state",
        "exp1            5  1 ok, 1 missing, 1 modified, 1 changed-upstream, 1 deleted-upstream",
        "fresh           1  not synced",
        "",
        f"exp1: {DESC}",
        "  missing           data/exp1/gone.txt",
        "  modified          data/exp1/edited.txt  "
        "(md5 b017770230833678ce0272e7f2501e76, the stage records "
        "a3a4bbc2d6aadabcb46d1c27d79c29e4)",
        "  changed-upstream  data/exp1/moved.txt",
        "  deleted-upstream  data/exp1/dropped.txt  (the local copy is kept)",
        "  fix: rm data/exp1/edited.txt",
        "       gcsdvc update exp1",
        "       gcsdvc sync exp1",
        "",
        f"fresh: {DESC}",
        "  not-synced  data/fresh/new.txt",
        "  fix: gcsdvc sync fresh",
        "",
        "orphans: 1 stage(s) no longer in the manifest",
        f"  data/exp1/old.txt  <- gs://{synced}/proj/exp1/old.txt  (was exp1)",
        "  fix: gcsdvc sync --prune",
        "",
        "status: 5 of 6 file(s) need attention, 1 orphan stage(s)",
    ]

    # Offline, upstream changes go unseen; the selection limits files and orphans alike.
    res = cli("status", "exp1", "--offline", "--json", cwd=repo)
    report = json.loads(res.stdout)
    assert report["upstream_checked"] is False
    assert [states(report)[f"data/exp1/{f}"] for f in ("moved.txt", "dropped.txt")] == ["ok"] * 2
    assert len(report["orphans"]) == 1

    # The fixes it names bring everything back to ok.
    (data / "edited.txt").unlink()
    for fix in (["sync", "--prune"], ["sync", "fresh"], ["sync", "exp1"]):
        assert cli(*fix, cwd=repo).returncode == 0
    dvc_main("update", "data/exp1/moved.txt.dvc", cwd=repo)
    write_manifest(repo, [entry(synced, files=["keep.txt", "gone.txt", "edited.txt", "moved.txt"])])
    cli("sync", "--prune", cwd=repo, check=True)
    res = cli("status", "--check", cwd=repo)
    assert res.returncode == 0, res.stdout
    assert res.stdout.splitlines()[-1] == "status: all 4 file(s) of 1 experiment(s) are ok"


def test_which(repo: Path, synced: str) -> None:
    res = cli("which", "data/exp1/keep.txt", cwd=repo)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [
        "data/exp1/keep.txt",
        "  experiment:  exp1",
        f"  description: {DESC}",
        f"  source:      gs://{synced}/proj/exp1/keep.txt",
        "  stage:       data/exp1/keep.txt.dvc",
        "  md5:         b17475896070a1ed0618b9fa843fec0f",
        "  size:        12 bytes",
        "  state:       current (the local copy matches the stage)",
    ]
    replace(repo / "data" / "exp1" / "keep.txt", "edited\n")
    res = cli("which", "keep.txt.dvc", "--json", cwd=repo / "data" / "exp1")
    info = json.loads(res.stdout)
    assert (info["name"], info["description"], info["current"]) == ("exp1", DESC, False)
    assert info["source"] == f"gs://{synced}/proj/exp1/keep.txt"

    res = cli("which", "params.yaml", cwd=repo)
    assert res.returncode == 2
    assert res.stdout == ""
    assert res.stderr == (
        "error: params.yaml is not tracked by gcsdvc: there is no params.yaml.dvc; "
        "'gcsdvc list' shows what the manifest holds\n"
    )


def test_which_an_orphan_stage(repo: Path, synced: str) -> None:
    """A stage whose entry left the manifest: its own record names it, its state is read
    as status reads it."""
    write_manifest(repo, [entry(synced, "fresh", files=["new.txt"])])
    res = cli("which", "data/exp1/keep.txt", cwd=repo)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [
        "data/exp1/keep.txt",
        "  experiment:  exp1 (no longer in the manifest)",
        f"  description: {DESC}",
        f"  source:      gs://{synced}/proj/exp1/keep.txt",
        "  stage:       data/exp1/keep.txt.dvc",
        "  md5:         b17475896070a1ed0618b9fa843fec0f",
        "  size:        12 bytes",
        "  state:       current (the local copy matches the stage)",
    ]
    (repo / "data" / "exp1" / "keep.txt").unlink()
    info = json.loads(cli("which", "data/exp1/keep.txt", "--json", cwd=repo).stdout)
    assert (info["in_manifest"], info["state"], info["current"]) == (False, "missing", False)


def test_storage_down(repo: Path, synced: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:9")  # nothing listens
    res = cli("status", "--check", cwd=repo)
    assert res.returncode == 1
    assert res.stdout.splitlines()[-2:] == [
        "upstream not checked: cannot reach Cloud Storage at http://127.0.0.1:9: "
        "Connection refused; --offline skips the check",
        "status: all 6 file(s) of 1 experiment(s) are ok locally",
    ]
    assert cli("status", "--check", "--offline", cwd=repo).returncode == 0


def test_storage_down_a_glob_row_says_so_and_offers_no_fix(
    repo: Path, synced: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The synced matches of a pattern stay rows of their own; the pattern's row is
    listing-failed, with no fix a sync could not carry out; the JSON says nothing was checked."""
    globbed = entry(synced, "globbed", subblob="exp1", files=["*d.txt"], description="")
    write_manifest(repo, [entry(synced), globbed])
    assert cli("sync", cwd=repo).returncode == 0
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:9")  # nothing listens
    res = cli("status", cwd=repo)
    down = "cannot reach Cloud Storage at http://127.0.0.1:9: Connection refused"
    assert res.stdout.splitlines() == [
        "experiment  files  state",
        "exp1            6  ok",
        "globbed         5  4 ok, 1 listing-failed",
        "",
        "globbed",
        f"  listing-failed  data/globbed/*d.txt  (cannot list for pattern '*d.txt': {down})",
        "",
        f"upstream not checked: {down}; --offline skips the check",
        "status: 1 of 11 file(s) need attention",
    ]
    doc = json.loads(cli("status", "--json", cwd=repo).stdout)
    assert (doc["upstream_checked"], doc["upstream_error"]) == (False, down)
    row = doc["resources"][1]["files"][-1]
    assert (row["state"], row["fix"]) == ("listing-failed", None)


def test_list_and_show(repo: Path, synced: str) -> None:
    other = entry(synced, "fresh", files=["new.txt"], description="Baseline, no sweep")
    write_manifest(repo, [entry(synced), other])
    res = cli("list", cwd=repo)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [
        "exp1   ok  6 file(s), 77",
        f"    {DESC}",
        f"    gs://{synced}/proj/exp1 -> data/exp1",
        "fresh  not synced  1 file(s)",
        "    Baseline, no sweep",
        f"    gs://{synced}/proj/fresh -> data/fresh",
    ]
    for text in ("LEARNING-RATE", "学習率", "ｌｅａｒｎｉｎｇ"):  # any case, any width
        res = cli("list", "--grep", text, "--json", cwd=repo)
        (found,) = json.loads(res.stdout)["resources"]
        assert (found["name"], found["file_count"], found["size"]) == ("exp1", 6, 77)

    res = cli("show", "fresh", cwd=repo)
    assert res.stdout.splitlines()[-2:] == [
        "  not-synced  data/fresh/new.txt",
        "  fix: gcsdvc sync fresh",
    ]
    res = cli("show", "exp", cwd=repo)
    assert res.returncode == 2
    assert res.stderr == "error: unknown experiment 'exp'; did you mean 'exp1'?\n"


def test_an_md5_edited_by_hand_is_named_so(repo: Path, synced: str) -> None:
    """Not "synced with --no-download", not an earlier version: the stage's record is wrong."""
    stage = repo / "data" / "exp1" / "keep.txt.dvc"
    good = stage.read_text()
    real = hashlib.md5(b"keep.txt v1\n").hexdigest()
    for bad, why in [
        ("d" * 32, f"it records md5 {'d' * 32}, but its object's bytes, which the file holds, "
         f"have md5 {real} (edited by hand?)"),
        ("xyz", "its md5 'xyz' is not a checksum (edited by hand?)"),
        ("0" * 32, "its md5 '0' is not a checksum (edited by hand?)"),  # YAML reads a number
    ]:  # fmt: skip
        assert f"md5: {real}\n  size" in good
        stage.write_text(good.replace(f"md5: {real}\n  size", f"md5: {bad}\n  size"))
        res = cli("status", "exp1", cwd=repo)
        assert res.stdout.splitlines()[3:7] == [
            f"exp1: {DESC}",
            f"  broken-stage  data/exp1/keep.txt  ({why})",
            "  fix: rm data/exp1/keep.txt.dvc",
            "       gcsdvc sync exp1",
        ]
        stage.unlink()
        assert cli("sync", "exp1", cwd=repo).returncode == 0
        assert stage.read_text() == good
    assert cli("status", "--check", cwd=repo).returncode == 0


def test_whole_prefix_import(repo: Path, bucket: str, put: Any) -> None:
    put(f"{bucket}/proj/whole/a.txt", "a\n")
    put(f"{bucket}/proj/whole/sub/b.txt", "b\n")
    whole = entry(bucket, "whole")
    del whole["files"]
    write_manifest(repo, [whole])
    cli("sync", cwd=repo, check=True)
    res = cli("status", "--json", cwd=repo)
    assert states(json.loads(res.stdout)) == {"data/whole": "ok"}
    res = cli("which", "data/whole/sub/b.txt", "--json", cwd=repo)
    info = json.loads(res.stdout)
    assert (info["name"], info["source"]) == ("whole", f"gs://{bucket}/proj/whole/sub/b.txt")

    put(f"{bucket}/proj/whole/c.txt", "c\n")
    res = cli("status", "--json", cwd=repo)
    assert states(json.loads(res.stdout)) == {"data/whole": "changed-upstream"}
    (repo / "data" / "whole" / "a.txt").unlink()
    res = cli("status", "--offline", "--json", cwd=repo)
    # Only deleted: missing, as a sync finds it and restores it (it was "modified").
    assert states(json.loads(res.stdout)) == {"data/whole": "missing"}
    info = json.loads(cli("which", "data/whole/sub/b.txt", "--json", cwd=repo).stdout)
    assert (info["path"], info["state"]) == ("data/whole/sub/b.txt", "missing")  # as status
    replace(repo / "data" / "whole" / "sub" / "b.txt", "B\n")
    res = cli("status", "--offline", "--json", cwd=repo)
    assert states(json.loads(res.stdout)) == {"data/whole": "modified"}
    res = cli("status", "--offline", cwd=repo)
    assert "  fix: rm -r data/whole" in res.stdout.splitlines()  # a folder: not plain rm


def test_large_files_use_dvc_state(
    repo: Path, synced: str, monkeypatch: pytest.MonkeyPatch, hash_reads: list[Path]
) -> None:
    """Past the direct-hash limit, hashes come from DVC's state db; each file is read once."""
    from gcsdvc import status, workspace
    from gcsdvc.manifest import load_manifest

    replace(repo / "data" / "exp1" / "edited.txt", "EDITED.TXT v1\n")
    monkeypatch.setattr(workspace, "DIRECT_HASH_BYTES", 0)
    read = hash_reads
    manifest = load_manifest()
    for _ in range(2):
        # Without gcsdvc's own hash cache, only DVC's state db can answer.
        (repo / ".dvc" / "tmp" / "gcsdvc-hashes.json").unlink(missing_ok=True)
        report = status.check(manifest, offline=True)
        got = {f.local: str(f.state) for f in report.resources[0].files}
        assert got == {f"data/exp1/{f}": "ok" for f in FILES} | {"data/exp1/edited.txt": "modified"}
    # sync recorded the others; edited.txt was hashed on the first run only.
    assert read == [repo / "data" / "exp1" / "edited.txt"]


def test_a_recorded_version_gone_everywhere_is_named(repo: Path, bucket: str, put: Any) -> None:
    """An old commit, its version garbage-collected and overwritten: the fix takes today's
    object, and status says so (not a quiet restore that is not one)."""
    put(f"{bucket}/proj/exp1/keep.txt", "v1\n")
    write_manifest(repo, [entry(bucket, files=["keep.txt"], skip_if_exist=False)])
    for text in ("v1\n", "today's v2\n"):
        put(f"{bucket}/proj/exp1/keep.txt", text)
        cli("sync", cwd=repo, check=True)
        run("git", "add", "-A", cwd=repo)
        run("git", "commit", "-qm", text, cwd=repo)
    dvc_main("gc", "-w", "-f", cwd=repo)
    run("git", "checkout", "-q", "HEAD~1", cwd=repo)
    gone = (
        "the recorded version is neither in the DVC cache nor in the bucket; "
        "'gcsdvc sync' takes today's object instead"
    )
    res = cli("status", "exp1", cwd=repo)
    assert res.stdout.splitlines()[4:6] == [
        "  superseded  data/exp1/keep.txt  (11 bytes, the stage records 3; those bytes are "
        f"kept in the DVC cache; {gone})",
        "  fix: gcsdvc sync exp1",
    ]
    (repo / "data" / "exp1" / "keep.txt").unlink()
    res = cli("status", "exp1", cwd=repo)
    assert res.stdout.splitlines()[4:6] == [
        f"  changed-upstream  data/exp1/keep.txt  (not on disk either; {gone})",
        "  fix: gcsdvc sync exp1",
    ]
    # skip_if_exist: true: a sync would fail to restore it; `gcsdvc update` takes today's.
    write_manifest(repo, [entry(bucket, files=["keep.txt"], skip_if_exist=True)])
    res = cli("status", "exp1", cwd=repo)
    today = gone.replace("sync", "update")
    assert res.stdout.splitlines()[4:6] == [
        f"  changed-upstream  data/exp1/keep.txt  (not on disk either; {today})",
        "  fix: gcsdvc update exp1",
    ]
    cli("update", "exp1", cwd=repo, check=True)
    assert (repo / "data" / "exp1" / "keep.txt").read_text() == "today's v2\n"


def test_a_removed_stage_is_brought_back_not_replaced(repo: Path, bucket: str, put: Any) -> None:
    """`dvc remove` of a pinned stage keeps its file: the fix shown brings the stage (and the
    recorded version) back; --force says it takes today's object."""
    put(f"{bucket}/proj/exp1/keep.txt", "v1\n")
    write_manifest(repo, [entry(bucket, files=["keep.txt"])])
    cli("sync", cwd=repo, check=True)
    run("git", "add", "-A", cwd=repo)
    run("git", "commit", "-qm", "v1", cwd=repo)
    dvc_main("remove", "data/exp1/keep.txt.dvc", cwd=repo)
    put(f"{bucket}/proj/exp1/keep.txt", "today's v2\n")
    res = cli("status", "exp1", cwd=repo)
    assert res.stdout.splitlines()[4:7] == [
        "  untracked  data/exp1/keep.txt  (no stage records it; its stage file was removed; "
        "git's HEAD has it, and with it the recorded version "
        "('gcsdvc sync --force' takes today's object instead))",
        "  fix: git checkout HEAD -- data/exp1/keep.txt.dvc",
        "       gcsdvc sync exp1",
    ]
    res = cli("sync", "exp1", cwd=repo)
    assert res.returncode == 1
    assert res.stderr.splitlines()[-1] == (
        f"failed: exp1: gs://{bucket}/proj/exp1/keep.txt: data/exp1/keep.txt is not tracked "
        "(its stage data/exp1/keep.txt.dvc was removed; git's HEAD has it); kept. "
        "'git checkout HEAD -- data/exp1/keep.txt.dvc && gcsdvc sync exp1' "
        "brings the recorded version back; "
        "'gcsdvc sync --force exp1' or 'rm -r data/exp1/keep.txt && gcsdvc sync exp1' "
        "replaces it with today's object"
    )
    run("git", "checkout", "HEAD", "--", "data/exp1/keep.txt.dvc", cwd=repo)
    cli("sync", "exp1", cwd=repo, check=True)  # writes the .gitignore line `dvc remove` took
    res = cli("status", "exp1", "--json", "--check", cwd=repo)
    assert res.returncode == 0  # the recorded version, upstream's change kept out (skip_if_exist)
    assert states(json.loads(res.stdout)) == {"data/exp1/keep.txt": "changed-upstream"}
    assert (repo / "data" / "exp1" / "keep.txt").read_text() == "v1\n"
