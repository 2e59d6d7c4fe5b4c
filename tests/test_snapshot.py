"""The snapshot that lets a no-op skip the per-file work (:mod:`gcsdvc.snapshot`).

Every in-process sync and offline status that a snapshot answers is checked
against the full check by conftest's ``_snapshots_agree_with_the_full_check``;
here each change a user can make is made after a sync, and the next run must
both miss the snapshot and give the full check's answer.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import QUOTED, cli, data, dvc_main, entry, write_manifest
from test_workflows import commit_all

from gcsdvc import files, snapshot, stages
from gcsdvc.manifest import load_manifest
from gcsdvc.plan import build_plan
from gcsdvc.remote import pinning
from gcsdvc.status import State, check

pytestmark = pytest.mark.usefixtures("emulator")


def answered(root: Path, names: tuple[str, ...] = ()) -> bool:
    """Whether the snapshot answers for the repository as it is now."""
    manifest = load_manifest()
    return snapshot.unchanged(manifest, names, pinning(root, None).pinned) is not None


def synced(repo: Path, seeded: str, **over: object) -> Path:
    """A first sync of the sample entry; an ``over`` value of None leaves the field out."""
    fields = {k: v for k, v in entry(seeded, **over).items() if v is not None}
    write_manifest(repo, [fields])
    cli("sync", cwd=repo, check=True)
    return repo


def test_a_sync_that_only_added_files_leaves_a_snapshot(repo: Path, seeded: str) -> None:
    synced(repo, seeded)
    assert answered(repo)
    manifest = load_manifest()
    plan = build_plan(manifest, manifest.resources, None)
    assert plan.quick and plan.items and all(i.stage is None for i in plan.items)
    res = cli("sync", cwd=repo, check=True)
    assert res.stdout.splitlines()[:2] == ["exp1  unchanged 3", "sync: 3 unchanged"]
    res = cli("status", "--offline", cwd=repo, check=True)
    assert res.stdout.splitlines()[-1] == (
        "status: all 3 file(s) of 1 experiment(s) are ok (upstream not checked: --offline)"
    )


def test_status_with_a_snapshot_still_asks_upstream(
    repo: Path, seeded: str, put: Callable[[str, str], None], gcs: Any
) -> None:
    """Files are not read again, git is not asked, the bucket is (and changes show)."""
    synced(repo, seeded)
    put(f"{seeded}/project1/{QUOTED}/file1", "rewritten upstream\n")
    report = check(load_manifest(), storage=None)
    assert report.quick
    states = {f.file: f.state for r in report.resources for f in r.files}
    assert states == {
        "parent_dir/file1": State.OK,
        "file1": State.CHANGED_UPSTREAM,
        "metrics.json": State.OK,
    }
    gcs.rm(f"{seeded}/project1/{QUOTED}/metrics.json")
    assert "1 deleted-upstream" in cli("status", cwd=repo).stdout


def test_status_takes_the_stages_from_the_cache_the_snapshot_signed(
    repo: Path, seeded: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced(repo, seeded)
    manifest = load_manifest()
    scans: list[Path] = []
    real = stages.scan

    def scan(root: Path, folder: Path, owner: str | None = None) -> Any:
        scans.append(folder)
        return real(root, folder, owner)

    monkeypatch.setattr(stages, "scan", scan)
    report = check(manifest, offline=True)
    assert report.quick and not scans  # no walk, no stat, no parse: the cache's entries
    assert all(f.md5 and f.stage for r in report.resources for f in r.files)
    # Another run rewrote the cache since: the stages are scanned, and the answer is the same.
    cache = files.stage_cache_path(repo)
    cache.write_text(cache.read_text())
    again = check(manifest, offline=True)
    assert again.quick and scans
    assert [f.stage for r in again.resources for f in r.files] == [
        f.stage for r in report.resources for f in r.files
    ]


def test_json_status_reads_the_stages(repo: Path, seeded: str) -> None:
    synced(repo, seeded)
    doc = json.loads(cli("status", "--offline", "--json", cwd=repo, check=True).stdout)
    assert all(f["md5"] and f["size"] for f in doc["resources"][0]["files"])


def _touch(repo: Path) -> None:
    path = data(repo, "file1")
    info = path.stat()
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000_000))


def _edit(repo: Path) -> None:
    path = data(repo, "file1")
    text = path.read_text()
    path.unlink()  # the file may be the DVC cache's own inode
    path.write_text(text.upper())


def _stray(repo: Path) -> None:
    (data(repo, "file1").parent / "notes.txt").write_text("mine\n")


def _ignored(repo: Path) -> None:
    (data(repo, "file1").parent / ".gitignore").write_text("/file1\n/metrics.json\n/notes\n")
    (data(repo, "file1").parent / "notes").write_text("mine\n")


def _stage_edit(repo: Path) -> None:
    stage = data(repo, "file1.dvc")
    stage.write_text(stage.read_text().replace("frozen: true\n", ""))


def _removed(repo: Path) -> None:
    data(repo, "metrics.json").unlink()


def _stage_removed(repo: Path) -> None:
    data(repo, "metrics.json.dvc").unlink()


def _description(repo: Path) -> None:
    manifest = repo / "params.yaml"
    manifest.write_text(manifest.read_text().replace("学習率", "lr"))


def _remote(repo: Path) -> None:
    dvc_main("remote", "add", "-d", "store", str(repo.parent / "store"), cwd=repo)


def _folder_gone(repo: Path) -> None:
    shutil.rmtree(data(repo, "parent_dir"))


CHANGES: dict[str, Callable[[Path], None]] = {
    "a file's mtime": _touch,
    "a file's bytes": _edit,
    "a stray file": _stray,
    "an ignored file": _ignored,
    "a stage edited": _stage_edit,
    "a file removed": _removed,
    "a stage removed": _stage_removed,
    "a commit": commit_all,
    "the manifest": _description,
    "the pinning mode": _remote,
    "a folder removed": _folder_gone,
}


@pytest.mark.parametrize("change", CHANGES, ids=list(CHANGES))
def test_any_change_misses_and_the_full_check_answers(repo: Path, seeded: str, change: str) -> None:
    synced(repo, seeded)
    assert answered(repo)
    CHANGES[change](repo)
    assert not answered(repo)
    # conftest checks each quick answer against the full check; these must not be quick.
    cli("status", "--offline", cwd=repo)
    cli("sync", "--dry-run", cwd=repo)


def test_another_selection_misses(repo: Path, seeded: str) -> None:
    synced(repo, seeded)
    assert answered(repo) and not answered(repo, ("exp1",))


def test_a_full_no_op_records_one_after_a_change(repo: Path, seeded: str) -> None:
    synced(repo, seeded)
    commit_all(repo)
    assert not answered(repo)
    cli("sync", cwd=repo, check=True)  # the full plan finds all in place
    assert answered(repo)


@pytest.mark.parametrize(
    ("what", "over"),
    [
        ("a whole-prefix import", {"files": None}),
        ("a glob pattern", {"files": ["*1", "metrics.json"]}),
    ],
)
def test_no_snapshot_where_the_full_path_must_run(
    repo: Path, seeded: str, what: str, over: dict[str, object]
) -> None:
    synced(repo, seeded, **over)
    cli("sync", cwd=repo, check=True)
    assert not (repo / ".dvc" / "tmp" / "gcsdvc-snapshot.json").exists(), what


def test_orphans_and_leftovers_are_never_snapshotted(repo: Path, seeded: str) -> None:
    synced(repo, seeded)
    write_manifest(repo, [entry(seeded, files=["file1", "metrics.json"])])
    res = cli("sync", cwd=repo, check=True)
    assert "1 stage(s) no longer in the manifest" in res.stdout
    assert not answered(repo)
    assert "1 stage(s) no longer in the manifest" in cli("sync", cwd=repo).stdout


def test_following_upstream_is_not_skipped(repo: Path, seeded: str) -> None:
    """skip_if_exist: false looks the objects up on every sync; status --offline needs not."""
    synced(repo, seeded, skip_if_exist=False)
    found = json.loads((repo / ".dvc" / "tmp" / "gcsdvc-snapshot.json").read_text())
    assert found["quiet"] is False
    manifest = load_manifest()
    assert not build_plan(manifest, manifest.resources, None).looked_up
    cli("sync", cwd=repo, check=True)  # conftest: not quick, since a lookup is needed
    assert cli("status", "--offline", cwd=repo, check=True).returncode == 0


def test_a_change_after_the_check_is_not_recorded(repo: Path, seeded: str) -> None:
    """What is recorded is what was verified: a file changed since its hash was taken fails it."""
    synced(repo, seeded)
    _edit(repo)
    manifest = load_manifest()
    selected = {manifest.local(manifest.resources[0], f): True for f in ("file1", "metrics.json")}
    wanted = {*selected, manifest.local(manifest.resources[0], "parent_dir/file1")}
    assert not snapshot.record(manifest, (), True, selected, wanted, looked_up=False)


def test_unfrozen_stages_are_counted_from_the_snapshot(repo: Path, seeded: str) -> None:
    synced(repo, seeded)
    dvc_main("unfreeze", str(data(repo, "file1.dvc")), cwd=repo)
    first = cli("sync", cwd=repo, check=True).stdout
    assert answered(repo)
    assert cli("sync", cwd=repo, check=True).stdout == first
    assert "1 stage(s) not frozen" in first


def test_damaged_snapshot_misses(repo: Path, seeded: str) -> None:
    synced(repo, seeded)
    (repo / ".dvc" / "tmp" / "gcsdvc-snapshot.json").write_text("{not json")
    assert not answered(repo)
    assert cli("sync", cwd=repo, check=True).returncode == 0
    assert answered(repo)


def test_manifest_parse_is_remembered_until_the_text_changes(repo: Path, seeded: str) -> None:
    synced(repo, seeded)
    first = load_manifest()
    assert (repo / ".dvc" / "tmp" / "gcsdvc-manifest.json").is_file()
    assert load_manifest() == first
    _description(repo)
    assert load_manifest().resources[0].description.startswith("lr ")
    (repo / "params.yaml").write_text("resources: [{name: x}]\n")
    with pytest.raises(Exception, match="bucket"):
        load_manifest()


def test_without_its_own_file_the_parser_keeps_no_cache(
    repo: Path, seeded: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gcsdvc import manifest as module

    write_manifest(repo, [entry(seeded)])
    (repo / ".dvc" / "tmp").mkdir(exist_ok=True)
    with monkeypatch.context() as m:
        m.setattr(module, "__file__", str(repo / "no-such-file.py"))
        assert load_manifest().resources[0].name == "exp1"
        assert not (repo / ".dvc" / "tmp" / "gcsdvc-manifest.json").exists()
    load_manifest()
    assert (repo / ".dvc" / "tmp" / "gcsdvc-manifest.json").exists()


def test_a_stage_that_replaced_one_in_head_leaves_no_snapshot(repo: Path, seeded: str) -> None:
    """Such a stage is compared with HEAD's next time, which only the full plan does."""
    synced(repo, seeded)
    commit_all(repo)
    data(repo, "file1").unlink()
    data(repo, "file1.dvc").unlink()
    assert "add 1" in cli("sync", cwd=repo, check=True).stdout
    assert not answered(repo)
    cli("sync", cwd=repo, check=True)  # the full plan finds all in place and records one
    assert answered(repo)


def test_a_dangling_symlink_is_walked_and_misses(repo: Path, seeded: str) -> None:
    synced(repo, seeded)
    (data(repo, "file1").parent / "gone").symlink_to(repo / "nowhere")
    assert not answered(repo)
    cli("sync", cwd=repo, check=True)
    assert not answered(repo)  # a file the manifest does not name: never recorded


GOOD = [[1, 2, 3], "abc"]
STAGE = [[4, 5, 6], {"outs": [{"md5": "abc"}]}]


@pytest.mark.parametrize(
    ("hashed", "parsed", "stage_sig", "proven"),
    [
        (GOOD, STAGE, [4, 5, 6], True),
        (None, STAGE, [4, 5, 6], False),  # never hashed
        (GOOD, None, [4, 5, 6], False),  # never parsed
        ([[1, 2, 3]], STAGE, [4, 5, 6], False),  # damaged entries
        (GOOD, [[4, 5, 6], "not a mapping"], [4, 5, 6], False),
        ([[1, 2, 9], "abc"], STAGE, [4, 5, 6], False),  # the file changed since it was hashed
        (GOOD, STAGE, [4, 5, 9], False),  # the stage changed since it was parsed
        (GOOD, STAGE, None, False),  # no stage beside the file
        ([[1, 2, 3], "other"], STAGE, [4, 5, 6], False),  # the bytes are not the stage's
        (GOOD, [[4, 5, 6], {"outs": [{}]}], [4, 5, 6], False),  # recorded without an md5
    ],
)
def test_what_proves_a_file(hashed: Any, parsed: Any, stage_sig: Any, proven: bool) -> None:
    ledger = snapshot.Ledger({"f": hashed}.get, {"f": parsed}.get, None)
    assert (snapshot._verified([1, 2, 3], stage_sig, "f", ledger) is not None) is proven


def test_a_selected_file_not_on_disk_is_not_recorded(repo: Path, seeded: str) -> None:
    synced(repo, seeded)
    manifest = load_manifest()
    res = manifest.resources[0]
    wanted = {manifest.local(res, f) for f in res.targets if f is not None}
    selected = dict.fromkeys([*wanted, manifest.local(res, "extra")], True)
    assert not snapshot.record(manifest, (), True, selected, wanted | set(selected), False)
    assert snapshot.record(manifest, (), True, dict.fromkeys(wanted, True), wanted, False)


STATE_CHANGES: dict[str, Callable[[Path], object]] = {
    "a data file rewritten": lambda repo: data(repo, "file1").write_text("other\n"),
    "a stage rewritten in place": lambda repo: data(repo, "file1.dvc").write_text("outs: []\n"),
    "a new file": lambda repo: (data(repo, "file1").parent / "new").write_text("x"),
    "a commit": lambda repo: commit_all(repo),
    "DVC's config": lambda repo: dvc_main("remote", "add", "-d", "r", "/tmp/r", cwd=repo),
}


@pytest.mark.parametrize("change", STATE_CHANGES)
def test_state_changes_with_what_another_sync_changes(repo: Path, seeded: str, change: str) -> None:
    synced(repo, seeded)
    manifest = load_manifest()
    before = snapshot.state(manifest)
    assert snapshot.state(manifest) == before
    data(repo, "file1").chmod(0o644)
    STATE_CHANGES[change](repo)
    assert snapshot.state(manifest) != before
