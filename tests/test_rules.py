"""The plan's rules end to end (emulator, real git and DVC), with the CLI run in process.

Local files are never replaced silently; no manifest change gives a traceback;
and the branches of plan and sync that only a real repository reaches.
"""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    QUOTED,
    cli,
    data,
    dvc_main,
    entry,
    load,
    without_git_hint,
    without_progress,
    write_manifest,
)

from gcsdvc import stages
from gcsdvc.manifest import load_manifest
from gcsdvc.sync import sync


def text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def replace(path: Path, content: str) -> None:
    """Write new content without touching the inode (which may be the DVC cache's)."""
    path.unlink()
    path.write_text(content)


def assert_noop(root: Path) -> None:
    """A second sync finds nothing to do."""
    res = cli("sync", cwd=root)
    assert res.returncode == 0, res.stderr
    *plans, summary = res.stdout.splitlines()
    assert summary.startswith("sync: ") and summary.endswith(" unchanged"), res.stdout
    assert "," not in summary
    for line in plans:
        assert line.split()[1] == "unchanged" and "," not in line, res.stdout


# -- local files are never replaced silently ---------------------------------------------------


def test_untracked_file_is_kept_reported_and_forced(repo: Path, seeded: str) -> None:
    write_manifest(repo, [entry(seeded)])
    mine = data(repo, "file1")
    mine.parent.mkdir(parents=True)
    mine.write_text("left by the old download script\n")

    dry = cli("sync", "--dry-run", "-v", cwd=repo)
    assert "exp1  add 2, conflict 1" in dry.stdout
    res = cli("sync", cwd=repo)
    assert res.returncode == 1
    shown = f"data/project1/{QUOTED}/file1"
    assert without_progress(res.stderr) == [
        f"failed: exp1: gs://{seeded}/project1/{QUOTED}/file1: {shown} is not tracked; kept. "
        f"'gcsdvc sync --force exp1' or 'rm -r {shlex.quote(shown)} && gcsdvc sync exp1' "
        "replaces it"
    ]
    assert text(mine) == "left by the old download script\n"
    assert not data(repo, "file1.dvc").exists()
    assert text(data(repo, "metrics.json")) == json.dumps({"acc": 0.9})  # the rest went on

    status = json.loads(cli("status", "--json", cwd=repo).stdout)
    (found,) = [f for f in status["resources"][0]["files"] if f["path"] == shown]
    fix = f"rm {shlex.quote(shown)} && gcsdvc sync exp1"
    assert (found["state"], found["fix"]) == ("untracked", fix)

    res = cli("sync", "--force", cwd=repo)
    assert res.returncode == 0, res.stderr
    assert "exp1  add 1, unchanged 2" in res.stdout
    assert text(mine) == "top file1\n"


@pytest.mark.parametrize("skip", [True, False])
def test_local_edit_is_kept_reported_and_forced(
    repo: Path, seeded: str, put: Any, skip: bool
) -> None:
    write_manifest(repo, [entry(seeded, skip_if_exist=skip)])
    cli("sync", cwd=repo, check=True)
    put(f"{seeded}/project1/{QUOTED}/file1", "changed upstream\n")
    mine = data(repo, "file1")
    replace(mine, "TOP FILE1\n")  # same size: only the md5 tells

    res = cli("sync", cwd=repo)
    assert res.returncode == 1
    assert "was edited (md5 " in res.stderr and "'gcsdvc sync --force exp1'" in res.stderr
    assert "exp1  unchanged 2, conflict 1" in res.stdout
    assert text(mine) == "TOP FILE1\n"

    res = cli("sync", "--force", cwd=repo)
    assert res.returncode == 0, res.stderr
    # skip_if_exist: true restores the recorded copy; false takes upstream's.
    assert text(mine) == ("top file1\n" if skip else "changed upstream\n")
    assert ("exp1  restore 1" if skip else "exp1  update 1") in res.stdout


# -- two entries sharing an object or a destination: no traceback, whatever moves ------------

A = {"name": "A", "destination": "A", "files": ["file1"]}
B = {"name": "B", "destination": "B", "files": ["file1"]}
B_OTHER = {**B, "files": ["metrics.json"]}
SCENARIOS = {
    # name: (before, after); each entry is entry() overrides
    "both destinations move": ([A, B], [{**A, "destination": "A2"}, {**B, "destination": "B2"}]),
    "destinations swap": ([A, B], [{**A, "destination": "B"}, {**B, "destination": "A"}]),
    "one takes the other's place": (
        [A, B],
        [{**A, "destination": "B"}, {**B, "destination": "C"}],
    ),
    "both move into one folder": (
        [A, {**B, "files": ["metrics.json"]}],
        [{**A, "destination": "AB"}, {**B, "destination": "AB", "files": ["metrics.json"]}],
    ),
    "one leaves, the other moves": ([A, B], [{**B, "destination": "A"}]),
    "other objects swap places": (
        [A, B_OTHER],
        [{**A, "destination": "B", "files": ["metrics.json"]}, {**B_OTHER, "destination": "A",
                                                                "files": ["file1"]}],
    ),
    "one entry becomes two": ([A], [{**A, "destination": "A2"}, {**B, "destination": "B2"}]),
    "moves in the other order": ([B, A], [{**B, "destination": "B2"}, {**A, "destination": "A2"}]),
}  # fmt: skip


def expected_files(seeded: str, entries: list[dict[str, Any]]) -> dict[str, str]:
    contents = {"file1": "top file1\n", "metrics.json": json.dumps({"acc": 0.9})}
    return {f"data/{e['destination']}/{f}": contents[f] for e in entries for f in e["files"]}


@pytest.mark.parametrize("dry_run", [False, True], ids=["sync", "dry-run"])
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_shared_objects_and_destinations(
    repo: Path, seeded: str, scenario: str, dry_run: bool
) -> None:
    before, after = SCENARIOS[scenario]
    write_manifest(repo, [entry(seeded, **e) for e in before])
    cli("sync", cwd=repo, check=True)
    write_manifest(repo, [entry(seeded, **e) for e in after])
    flags = ["--dry-run"] if dry_run else []
    res = cli("sync", "--prune", "-v", *flags, cwd=repo)  # a traceback would raise here
    assert res.returncode == 0, res.stderr
    if dry_run:
        assert "dry run:" in res.stdout
        return
    for path, content in expected_files(seeded, after).items():
        assert text(repo / path) == content, path
        assert load(repo / f"{path}.dvc")["outs"][0]["path"] == Path(path).name
    stages = {p.relative_to(repo).as_posix() for p in (repo / "data").rglob("*.dvc")}
    assert stages == {f"{p}.dvc" for p in expected_files(seeded, after)}
    assert_noop(repo)


# -- branches only a real repository reaches --------------------------------------------------


def test_a_plain_dvc_import_url_is_adopted(repo: Path, seeded: str) -> None:
    write_manifest(repo, [entry(seeded, files=["file1"])])
    target = data(repo, "file1")
    target.parent.mkdir(parents=True)
    dvc_main("import-url", f"gs://{seeded}/project1/{QUOTED}/file1", str(target), cwd=repo)
    res = cli("sync", cwd=repo)
    assert without_git_hint(res.stdout) == ["exp1  metadata 1", "sync: 1 re-described, 0 unchanged"]
    assert load(data(repo, "file1.dvc"))["meta"]["gcsdvc"]["name"] == "exp1"


def test_a_foreign_stage_in_the_way_is_left_alone(repo: Path, seeded: str) -> None:
    write_manifest(repo, [entry(seeded, files=["file1"])])
    target = data(repo, "file1")
    target.parent.mkdir(parents=True)
    dvc_main("import-url", f"gs://{seeded}/project1/{QUOTED}/metrics.json", str(target), cwd=repo)
    before = text(data(repo, "file1.dvc"))
    res = cli("sync", cwd=repo)
    assert res.returncode == 1
    assert f"a stage not written by gcsdvc is in the way: data/project1/{QUOTED}/file1.dvc" in (
        res.stderr
    )
    assert text(data(repo, "file1.dvc")) == before


def test_source_change_updates_in_place(repo: Path, seeded: str, put: Any) -> None:
    put(f"{seeded}/other/file1", "from elsewhere\n")
    write_manifest(repo, [entry(seeded, files=["file1"])])
    cli("sync", cwd=repo, check=True)
    write_manifest(repo, [entry(seeded, files=["file1"], blob="other", subblob="")])
    res = cli("sync", "-v", cwd=repo)
    assert res.returncode == 0, res.stderr
    assert f"(source changed from gs://{seeded}/project1/{QUOTED}/file1)" in res.stdout
    assert text(data(repo, "file1")) == "from elsewhere\n"
    assert load(data(repo, "file1.dvc"))["deps"][0]["path"] == f"gs://{seeded}/other/file1"


@pytest.mark.parametrize("pin", [True, False])
def test_pin_generations_setting(repo: Path, seeded: str, pin: bool) -> None:
    write_manifest(repo, [entry(seeded, files=["file1"])], pin_generations=pin)
    cli("sync", cwd=repo, check=True)
    stage = load(data(repo, "file1.dvc"))
    assert ("version_id" in stage["deps"][0]) is pin
    assert stage["frozen"] is True  # both modes (issue 8: only `dvc update` follows upstream)
    write_manifest(repo, [entry(seeded, files=["file1"])], pin_generations=not pin)
    assert cli("sync", cwd=repo).stdout.splitlines()[0] == "exp1  metadata 1"
    assert ("version_id" in load(data(repo, "file1.dvc"))["deps"][0]) is not pin


@pytest.mark.parametrize(
    ("pinning", "message"),
    [
        ({}, "is gone from the bucket and not in the DVC cache"),  # issue 9 wording
        (
            {"pin_generations": False},  # unpinned: the DVC remote is where the bytes are
            "not in the DVC cache; 'dvc pull' it from your DVC remote",
        ),
    ],
)
def test_restore_with_cache_and_source_gone(
    repo: Path, seeded: str, put: Any, pinning: dict[str, bool], message: str
) -> None:
    write_manifest(repo, [entry(seeded, files=["file1"])], **pinning)
    cli("sync", cwd=repo, check=True)
    data(repo, "file1").unlink()
    shutil.rmtree(repo / ".dvc" / "cache")
    put(f"{seeded}/project1/{QUOTED}/file1", "another version\n")
    res = cli("sync", cwd=repo)
    assert res.returncode == 1
    assert message in res.stderr
    assert not data(repo, "file1").exists()


def test_verified_by_crc32c_without_md5(
    repo: Path, seeded: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Composite objects have no md5: the crc32c decides, and a wrong one is refused."""
    from gcsdvc.storage import Storage

    real = Storage.object_from_info
    crc: dict[str, str] = {}

    def no_md5(self: Storage, bucket: str, info: dict[str, Any]) -> Any:
        assert info.get("crc32c")  # the listing gives one: the check below is real
        info = {k: v for k, v in info.items() if k != "md5Hash"}
        if crc:
            info["crc32c"] = crc["value"]
        return real(self, bucket, info)

    monkeypatch.setattr(Storage, "object_from_info", no_md5)
    write_manifest(repo, [entry(seeded, files=["file1"])])
    crc["value"] = "AAAAAA=="
    res = cli("sync", cwd=repo)
    assert res.returncode == 1
    assert "crc32c " in res.stderr and "does not match the object's" in res.stderr
    assert not data(repo, "file1.dvc").exists()
    crc.clear()
    res = cli("sync", cwd=repo)
    assert res.returncode == 0, res.stderr
    assert text(data(repo, "file1")) == "top file1\n"


def test_stage_cache_follows_edits_of_stage_files(repo: Path, seeded: str) -> None:
    write_manifest(repo, [entry(seeded, files=["file1"])])
    cli("sync", cwd=repo, check=True)
    cli("sync", cwd=repo, check=True)  # reads the new stage and keeps it in the cache
    assert (repo / ".dvc" / "tmp" / "gcsdvc-stages.json").exists()
    stage_file = data(repo, "file1.dvc")
    stage_file.write_text(text(stage_file).replace("desc: ", "desc: edited by hand "))
    res = cli("sync", cwd=repo)
    assert res.stdout.splitlines()[0] == "exp1  metadata 1"
    assert "edited by hand" not in text(stage_file)


def test_a_sync_leaves_every_stage_parsed_and_every_hash_in_dvcs_state_db(
    repo: Path, seeded: str
) -> None:
    write_manifest(repo, [entry(seeded)])
    cli("sync", cwd=repo, check=True)
    cache = json.loads((repo / ".dvc" / "tmp" / "gcsdvc-stages.json").read_text())
    stage_files = sorted((repo / "data").rglob("*.dvc"))
    assert len(stage_files) == 3
    for stage_file in stage_files:
        local = stage_file.relative_to(repo).as_posix().removesuffix(".dvc")
        st = stage_file.stat()
        assert cache[local] == [[st.st_mtime_ns, st.st_size, st.st_ino], load(stage_file)]
    with stages.open_repo(repo) as dvc_repo:
        for stage_file in stage_files:
            path = str(stage_file.with_suffix(""))
            _, known = dvc_repo.state.get(path, dvc_repo.fs)
            assert known is not None and known.value == load(stage_file)["outs"][0]["md5"]


def whole(bucket: str, **over: Any) -> dict[str, Any]:
    folder = entry(bucket, name="whole", destination="whole", **over)
    del folder["files"]
    return folder


def test_folder_import_update_restore_and_no_download(repo: Path, seeded: str, put: Any) -> None:
    write_manifest(repo, [whole(seeded, skip_if_exist=False)])
    res = cli("sync", "--no-download", cwd=repo)
    assert res.returncode == 0, res.stderr
    assert (repo / "data" / "whole.dvc").exists()
    assert not (repo / "data" / "whole").exists()
    assert (repo / "data" / ".gitignore").read_text() == "/whole\n"  # as DVC writes it

    res = cli("sync", cwd=repo)  # the data is not there: restored (fetched by DVC)
    assert res.stdout.splitlines()[0] == "whole  restore 1", res.stderr
    put(f"{seeded}/project1/{QUOTED}/added.txt", "added\n")
    res = cli("sync", cwd=repo)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0] == "whole  update 1"
    assert text(repo / "data" / "whole" / "added.txt") == "added\n"
    assert load(repo / "data" / "whole.dvc")["meta"]["gcsdvc"]["name"] == "whole"

    shutil.rmtree(repo / "data" / "whole")
    res = cli("sync", cwd=repo)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0] == "whole  restore 1"
    assert text(repo / "data" / "whole" / "file1") == "top file1\n"


def test_prune_by_name_prunes_only_that_experiment(repo: Path, seeded: str) -> None:
    two = [entry(seeded, name="a", destination="a"), entry(seeded, name="b", destination="b")]
    write_manifest(repo, two)
    cli("sync", cwd=repo, check=True)
    fewer = [{**e, "files": ["file1"]} for e in two]
    write_manifest(repo, fewer)
    res = cli("sync", "--prune", "a", cwd=repo)
    assert res.returncode == 0, res.stderr
    assert "2 pruned" in res.stdout
    assert not (repo / "data" / "a" / "metrics.json").exists()
    assert (repo / "data" / "b" / "metrics.json").exists()


def test_quiet_prints_only_errors(repo: Path, seeded: str) -> None:
    write_manifest(repo, [entry(seeded, files=["file1", "missing.txt"])])
    res = cli("sync", "-q", cwd=repo)
    assert res.returncode == 1
    assert res.stdout == ""
    assert res.stderr.splitlines() == [
        f"failed: exp1: gs://{seeded}/project1/{QUOTED}/missing.txt: "
        f"object not found: gs://{seeded}/project1/{QUOTED}/missing.txt"
    ]


def test_library_sync_reports_progress(repo: Path, seeded: str) -> None:
    events: list[tuple[str, int, int]] = []

    class Recorder:
        def start(self, files: int, nbytes: int, what: str = "downloading") -> None:
            events.append(("start", files, nbytes))

        def advance(self, files: int = 0, nbytes: int = 0, how: str = "") -> None:
            events.append(("advance", files, nbytes))

        def finish(self) -> None:
            events.append(("finish", 0, 0))

    write_manifest(repo, [entry(seeded)])
    result = sync(load_manifest(), reporter=Recorder())
    assert result.ok
    assert events[0] == ("start", 3, 13 + 10 + len(json.dumps({"acc": 0.9})))
    assert events[-1] == ("finish", 0, 0)
    assert sum(n for kind, n, _ in events if kind == "advance") == 3
    assert sum(b for kind, _, b in events if kind == "advance") == events[0][2]


def test_failures_keep_their_types_and_are_rendered_by_type() -> None:
    from gcsdvc.errors import ChecksumMismatch, NotAttemptedError
    from gcsdvc.plan import Plan
    from gcsdvc.render import summary_lines
    from gcsdvc.sync import Failure, SyncResult

    result = SyncResult(Plan(pinned=True))
    result.failures += [
        Failure("exp1", "gs://b/a", ChecksumMismatch("gs://b/a: md5 x does not match")),
        Failure("exp1", "gs://b/b", NotAttemptedError("connection failed (refused)")),
        Failure("exp1", "gs://b/c", NotAttemptedError("connection failed (refused)")),
    ]
    assert list(summary_lines(result, quiet=True)) == [
        "failed: exp1: gs://b/a: md5 x does not match",
        "failed: 2 more object(s) not attempted: connection failed (refused); run again later",
    ]
    assert isinstance(result.failures[0].error, ChecksumMismatch)


def test_api_does_not_hand_out_an_untracked_file(repo: Path, seeded: str) -> None:
    import gcsdvc

    write_manifest(repo, [entry(seeded)])
    mine = data(repo, "file1")
    mine.parent.mkdir(parents=True)
    mine.write_text("not from the bucket\n")
    with pytest.raises(gcsdvc.NotSyncedError, match="a local file no stage records"):
        gcsdvc.path("exp1", "file1")
