"""Archiving into the team's DVC remote (``sync --to-remote``, ``to_remote: true``; issue 25).

Through the Cloud Storage layer: ``rewriteTo`` in steps, composite objects without md5,
and the media bytes each run downloads.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shlex
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
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
    load,
    without_progress,
    write_manifest,
)
from gcslayer import GcsLayer
from test_workflows import clone, commit_all

from gcsdvc import api, archive
from gcsdvc.archive import Method
from gcsdvc.errors import NotSyncedError
from gcsdvc.storage import RemoteObject

PREFIX = f"project1/{QUOTED}"
LARGE = 3 << 20
FILES = ["parent_dir/file1", "file1", "metrics.json", "eval/*.csv", "large.bin", "joined.bin"]
LOCALS = ["parent_dir/file1", "file1", "metrics.json", "eval/a.csv", "eval/b.csv", "large.bin"]
LOCALS += ["joined.bin"]


@pytest.fixture
def run_objects(seeded: str, put: Any, gcs: Any, layer: GcsLayer) -> dict[str, bytes]:
    """The sample run plus a glob's files, a large object and a composite one: name -> bytes."""
    prefix = f"{seeded}/{PREFIX}"
    put(f"{prefix}/eval/a.csv", "step,loss\n1,0.5\n")
    put(f"{prefix}/eval/b.csv", "step,loss\n1,0.7\n")
    large = os.urandom(LARGE)
    put(f"{prefix}/large.bin", large)
    put(f"{prefix}/part1", b"first half\n")
    put(f"{prefix}/part2", b"second half\n")
    gcs.merge(f"{prefix}/joined.bin", [f"{prefix}/part1", f"{prefix}/part2"])
    gcs.invalidate_cache()
    assert "md5Hash" not in layer.current(seeded, f"{PREFIX}/joined.bin")
    return {
        "parent_dir/file1": b"nested file1\n",
        "file1": b"top file1\n",
        "metrics.json": json.dumps({"acc": 0.9}).encode(),
        "eval/a.csv": b"step,loss\n1,0.5\n",
        "eval/b.csv": b"step,loss\n1,0.7\n",
        "large.bin": large,
        "joined.bin": b"first half\nsecond half\n",
    }


@pytest.fixture(params=["gs", "local"])
def remote_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
def dvc_remote(repo: Path, gcs: Any, tmp_path: Path, remote_kind: str) -> str:
    """The team's default DVC remote: a second bucket on the emulator, or a local folder."""
    if remote_kind == "gs":
        name = f"r-{uuid.uuid4().hex[:12]}"
        gcs.mkdir(name)
        url = f"gs://{name}/dvc"
    else:
        url = str(tmp_path / "store")
    dvc_main("remote", "add", "-d", "team", url, cwd=repo)
    commit_all(repo)
    return url


def remote_files(url: str, gcs: Any) -> set[str]:
    """The md5s a DVC 3 remote holds (``files/md5/ab/cdef...``)."""
    if url.startswith("gs://"):
        gcs.invalidate_cache()
        root = url.removeprefix("gs://") + "/files/md5"
        found = gcs.find(root) if gcs.exists(root) else []
        names = [p.removeprefix(root + "/") for p in found]
    else:
        root_path = Path(url) / "files" / "md5"
        names = [p.relative_to(root_path).as_posix() for p in root_path.rglob("*") if p.is_file()]
    return {n.replace("/", "") for n in names if not n.split("/")[-1].startswith(".")}


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_a_run_archived_into_the_remote_is_pulled_by_a_clone_after_the_source_is_gone(
    repo: Path,
    seeded: str,
    run_objects: dict[str, bytes],
    dvc_remote: str,
    layer: GcsLayer,
    gcs: Any,
    tmp_path: Path,
) -> None:
    """Listed files, a glob, a large object (a rewrite in steps) and a composite one (streamed)."""
    write_manifest(repo, [entry(seeded, files=FILES, to_remote=True)])
    layer.rewrite_chunk = 1 << 20
    calls, bytes_before = layer.rewrite_calls, layer.media_bytes
    res = cli("sync", cwd=repo)
    assert res.returncode == 0, res.stderr
    gs = dvc_remote.startswith("gs://")
    summary = (
        "archive into the DVC remote 'team': 6 object(s) (3.00M) copied server-side, "
        "1 object(s) (23) streamed, 0 already there"
        if gs
        else "archive into the DVC remote 'team': 0 object(s) (0) copied server-side, "
        "7 object(s) (3.00M) streamed, 0 already there"
    )
    assert res.stdout.splitlines()[:3] == ["exp1  add 7", summary, "sync: 7 added, 0 unchanged"]
    streamed = sum(len(run_objects[n]) for n in (["joined.bin"] if gs else LOCALS))
    assert layer.media_bytes - bytes_before == streamed  # none of an object with an md5, if gs
    # large.bin in 3 steps of 1 MB; joined.bin's upload moved to its md5's path
    assert layer.rewrite_calls - calls == (5 + 3 + 1 if gs else 0)
    assert remote_files(dvc_remote, gcs) == {md5(b) for b in run_objects.values()}

    # No data in the workspace nor in the local cache; stages unpinned, naming the remote.
    for rel in LOCALS:
        assert not data(repo, rel).exists()
        stage = load(data(repo, rel + ".dvc"))
        assert "version_id" not in stage["deps"][0]
        assert stage["outs"][0]["remote"] == "team"
        assert stage["outs"][0]["md5"] == md5(run_objects[rel])
    cache = repo / ".dvc" / "cache"
    assert not cache.exists() or not [p for p in cache.rglob("*") if p.is_file()]
    ignored = (data(repo, "file1").parent / ".gitignore").read_text().splitlines()
    assert {"/file1", "/large.bin", "/joined.bin", "/metrics.json"} <= set(ignored)

    status = json.loads(cli("status", "--json", cwd=repo).stdout)
    states = {f["path"]: f["state"] for r in status["resources"] for f in r["files"]}
    assert set(states.values()) == {"in-remote"}, states
    assert cli("status", "--check", cwd=repo).returncode == 0
    which = cli("which", str(data(repo, "large.bin")), cwd=repo, check=True).stdout.splitlines()
    large = md5(run_objects["large.bin"])
    stage_file = shlex.quote(f"data/{PREFIX}/large.bin.dvc")
    assert which[-2:] == [
        f"  archived:    {dvc_remote}/files/md5/{large[:2]}/{large[2:]}",
        f"  state:       in the DVC remote 'team' only ('dvc pull {stage_file}' fetches it)",
    ]

    with pytest.raises(NotSyncedError) as raised:
        api.path("exp1", "file1", manifest=repo / "params.yaml")
    local_file = f"data/{PREFIX}/file1"
    assert str(raised.value) == (
        f"exp1: {local_file} is archived, in the DVC remote 'team' only; "
        f"'dvc pull {shlex.quote(local_file + '.dvc')}' fetches it"
    )

    # A rerun copies nothing.
    calls, bytes_before = layer.rewrite_calls, layer.media_bytes
    again = cli("sync", cwd=repo)
    assert again.stdout.splitlines() == ["exp1  unchanged 7", "sync: 7 unchanged"]
    assert (layer.rewrite_calls, layer.media_bytes) == (calls, bytes_before)

    commit_all(repo)
    assert "missing" not in dvc_main("status", "-c", cwd=repo).stdout  # in the remote only
    dvc_main("gc", "-w", "-c", "-f", cwd=repo)  # where nothing is pulled: the stages keep them
    assert remote_files(dvc_remote, gcs) == {md5(b) for b in run_objects.values()}
    for name in run_objects:
        gcs.rm(f"{seeded}/{PREFIX}/{name}")
    gcs.invalidate_cache()
    other = clone(repo, tmp_path)
    dvc_main("pull", cwd=other)
    for rel, content in run_objects.items():
        assert data(other, rel).read_bytes() == content, rel
    assert "missing" not in dvc_main("status", "-c", cwd=other).stdout
    dvc_main("gc", "-w", "-c", "-f", cwd=other)
    assert remote_files(dvc_remote, gcs) == {md5(b) for b in run_objects.values()}
    pulled = json.loads(cli("status", "--json", "--offline", cwd=other).stdout)
    assert {f["state"] for r in pulled["resources"] for f in r["files"]} == {"ok"}
    assert "Everything is up to date." in dvc_main("push", cwd=other).stdout


def test_dry_run_counts_what_goes_server_side_and_what_streams(
    repo: Path, seeded: str, run_objects: dict[str, bytes], layer: GcsLayer, gcs: Any
) -> None:
    name = f"r-{uuid.uuid4().hex[:12]}"
    gcs.mkdir(name)
    dvc_main("remote", "add", "-d", "team", f"gs://{name}/dvc", cwd=repo)
    write_manifest(repo, [entry(seeded, files=FILES)])
    calls = layer.rewrite_calls
    res = cli("sync", "--to-remote", "--dry-run", cwd=repo)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [
        "exp1  add 7",
        "archive into the DVC remote 'team': 6 object(s) (3.00M) to copy server-side, "
        "1 object(s) (23) to stream, 0 already there",
        "dry run: 7 change(s) planned, nothing to download, nothing written",
    ]
    assert layer.rewrite_calls == calls and not data(repo, "file1.dvc").exists()
    doc = json.loads(cli("sync", "--to-remote", "--dry-run", "--json", cwd=repo).stdout)
    assert doc["archived"] == {
        "remote": "team",
        "server_side": {"objects": 6, "bytes": sum(map(len, run_objects.values())) - 23},
        "streamed": {"objects": 1, "bytes": 23},
        "present": {"objects": 0, "bytes": 0},
    }


def test_failures_are_one_line_per_object(
    repo: Path, seeded: str, layer: GcsLayer, gcs: Any
) -> None:
    write_manifest(repo, [entry(seeded, files=["file1", "metrics.json"], to_remote=True)])
    res = cli("sync", cwd=repo)
    assert res.returncode == 1
    no_remote = (
        "no DVC remote to archive into: add one with 'dvc remote add -d NAME URL' "
        "(or name one with -r NAME)"
    )
    source = f"gs://{seeded}/{PREFIX}"
    assert without_progress(res.stderr) == [
        f"failed: exp1: {source}/file1: {no_remote}",
        f"failed: exp1: {source}/metrics.json: {no_remote}",
    ]

    name = f"r-{uuid.uuid4().hex[:12]}"
    gcs.mkdir(name)
    dvc_main("remote", "add", "-d", "team", f"gs://{name}/dvc", cwd=repo)
    dvc_main("remote", "modify", "team", "version_aware", "true", cwd=repo)
    res = cli("sync", cwd=repo)
    by_path = (
        "the DVC remote 'team' has 'version_aware = true': it keeps files by path, not by md5, "
        "so it cannot hold imports; archive into a remote without 'version_aware'"
    )
    assert without_progress(res.stderr)[0] == f"failed: exp1: {source}/file1: {by_path}"

    dvc_main("remote", "modify", "--unset", "team", "version_aware", cwd=repo)
    layer.no_create.add(name)
    res = cli("sync", cwd=repo)
    assert res.returncode == 1
    denied = (
        "permission denied writing the remote 'team' (sandbox@example.invalid does not have "
        "storage.objects.create access to the Google Cloud Storage object. Permission "
        "'storage.objects.create' denied on resource (or it may not exist).); the credentials "
        f"need storage.objects.create on gs://{name}"
    )
    assert sorted(without_progress(res.stderr)) == [  # in the order the copies ended
        f"failed: exp1: {source}/file1: {denied}",
        f"failed: exp1: {source}/metrics.json: {denied}",
    ]
    assert not data(repo, "file1.dvc").exists()  # nothing recorded the remote does not hold

    dvc_main("remote", "modify", "team", "projectname", "other-project", cwd=repo)
    res = cli("sync", "exp1", cwd=repo)
    other = (
        "; the remote 'team' is set up with other credentials (projectname = other-project), "
        "but a server-side copy runs as gcsdvc's: give those storage.objects.create on "
        f"gs://{name}, or archive under one principal that reads the source and writes the remote"
    )
    assert sorted(without_progress(res.stderr))[0].endswith(other)
    layer.no_create.discard(name)
    dvc_main("remote", "modify", "--unset", "team", "projectname", cwd=repo)
    assert cli("sync", cwd=repo).returncode == 0
    assert load(data(repo, "file1.dvc"))["outs"][0]["remote"] == "team"


def test_an_object_that_fails_to_stream_records_nothing(
    repo: Path, seeded: str, run_objects: dict[str, bytes], layer: GcsLayer, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    dvc_main("remote", "add", "-d", "team", str(store), cwd=repo)
    write_manifest(repo, [entry(seeded, files=["file1", "joined.bin"], to_remote=True)])
    layer.unavailable.add((seeded, f"{PREFIX}/joined.bin"))
    res = cli("sync", cwd=repo, env={"GCSDVC_RETRIES": "1"})
    assert res.returncode == 1
    assert without_progress(res.stderr)[-1].startswith(
        f"failed: exp1: gs://{seeded}/{PREFIX}/joined.bin: "
    )
    assert data(repo, "file1.dvc").exists() and not data(repo, "joined.bin.dvc").exists()
    assert [p.name for p in store.rglob("*.tmp")] == []
    layer.unavailable.clear()
    res = cli("sync", cwd=repo)
    assert res.stdout.splitlines()[:2] == [
        "exp1  add 1, unchanged 1",
        "archive into the DVC remote 'team': 0 object(s) (0) copied server-side, "
        "1 object(s) (23) streamed, 0 already there",
    ]


def test_gzip_objects_stream_decoded_and_rewrites_keep_to_their_bound(
    repo: Path, seeded: str, layer: GcsLayer, gcs: Any, tmp_path: Path
) -> None:
    """A gzip-encoded object's md5 is of its compressed bytes: it streams, and DVC gets the
    decoded bytes, as ``dvc import-url`` records them; ``-j 2`` copies at most 2 at once."""
    text = b"line\n" * 1000
    layer.upload(seeded, f"{PREFIX}/log.txt", gzip.compress(text), content_encoding="gzip")
    for n in range(6):
        layer.upload(seeded, f"{PREFIX}/shard-{n}.bin", bytes([n]) * 100)
    name = f"r-{uuid.uuid4().hex[:12]}"
    gcs.mkdir(name)
    dvc_main("remote", "add", "-d", "team", f"gs://{name}/dvc", cwd=repo)
    write_manifest(repo, [entry(seeded, files=["log.txt", "shard-*.bin"])])
    layer.most_rewriting = 0
    res = cli("sync", "--to-remote", "-j", "2", cwd=repo)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[1] == (
        "archive into the DVC remote 'team': 6 object(s) (600) copied server-side, "
        "1 object(s) (4.88k) streamed, 0 already there"
    )
    assert 1 <= layer.most_rewriting <= 2
    assert load(data(repo, "log.txt.dvc"))["outs"][0]["md5"] == md5(text)
    commit_all(repo)
    gcs.rm(f"{seeded}/{PREFIX}/log.txt")
    other = clone(repo, tmp_path)
    dvc_main("pull", cwd=other)
    assert data(other, "log.txt").read_bytes() == text


def test_a_sync_killed_mid_archive_records_only_what_the_remote_holds(
    repo: Path, seeded: str, layer: GcsLayer, gcs: Any
) -> None:
    name = f"r-{uuid.uuid4().hex[:12]}"
    gcs.mkdir(name)
    dvc_main("remote", "add", "-d", "team", f"gs://{name}/dvc", cwd=repo)
    files = ["file1", "metrics.json", "parent_dir/file1"]
    write_manifest(repo, [entry(seeded, files=files, to_remote=True)])
    layer.held = {(seeded, f"{PREFIX}/metrics.json"), (seeded, f"{PREFIX}/parent_dir/file1")}
    layer.released.clear()
    cmd = [sys.executable, "-m", "gcsdvc", "sync", "-q", "-j", "3"]
    with subprocess.Popen(cmd, cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as p:
        try:
            until(lambda: data(repo, "file1.dvc").exists() and layer.rewriting == 2)
        finally:
            p.kill()
    stages = sorted(str(s.relative_to(data(repo, ""))) for s in data(repo, "").rglob("*.dvc"))
    assert stages == ["file1.dvc"]
    assert load(data(repo, "file1.dvc"))["outs"][0]["md5"] in remote_files(f"gs://{name}/dvc", gcs)
    layer.released.set()  # the copies the killed sync asked for go on without it
    until(lambda: layer.rewriting == 0)
    layer.held = set()
    res = cli("sync", cwd=repo)
    assert res.stdout.splitlines()[:2] == [
        "exp1  add 2, unchanged 1",
        "archive into the DVC remote 'team': 0 object(s) (0) copied server-side, "
        "0 object(s) (0) streamed, 2 already there",
    ]


def until(condition: Callable[[], bool], seconds: float = 60) -> None:
    """Wait for ``condition`` (a state another process reaches, not a time)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_a_remote_named_with_r_is_recorded_so_that_dvc_pull_uses_it(
    repo: Path, seeded: str, gcs: Any, tmp_path: Path
) -> None:
    """``dvc import-url --to-remote -r NAME`` records no remote: a pull then asks the default."""
    dvc_main("remote", "add", "-d", "main", str(tmp_path / "main"), cwd=repo)
    dvc_main("remote", "add", "archive", str(tmp_path / "archive"), cwd=repo)
    write_manifest(repo, [entry(seeded, files=["file1"])])
    res = cli("sync", "--to-remote", "-r", "archive", cwd=repo)
    assert res.returncode == 0, res.stderr
    lines = res.stderr.splitlines()  # progress, then "done"
    assert lines[0] == "archiving: 0/1 objects (0 server-side 0, 0 streamed 0), 0/10"
    assert lines[1].startswith("done: 1/1 objects (0 server-side 0, 1 streamed 10), 10/10, ")
    assert load(data(repo, "file1.dvc"))["outs"][0]["remote"] == "archive"
    assert remote_files(str(tmp_path / "archive"), gcs) == {md5(b"top file1\n")}
    commit_all(repo)
    gcs.rm(f"{seeded}/{PREFIX}/file1")
    other = clone(repo, tmp_path)
    dvc_main("pull", cwd=other)
    assert data(other, "file1").read_bytes() == b"top file1\n"


def test_a_whole_prefix_entry_cannot_be_archived(repo: Path, seeded: str) -> None:
    doc = entry(seeded, to_remote=True)
    del doc["files"]
    write_manifest(repo, [doc])
    res = cli("validate", cwd=repo)
    assert res.returncode == 2
    assert "field 'to_remote': needs 'files' (paths or globs)" in res.stdout + res.stderr


def test_the_method_follows_what_cloud_storage_stores() -> None:
    """Server-side for a stored md5 into a gs:// remote; else streamed."""
    gs = archive.Target("r", bucket="b/p")
    folder = archive.Target("r")

    def obj(md5: str | None, encoding: str | None = None) -> RemoteObject:
        return RemoteObject("src", "o", 3, md5, "AAAAAA==", {}, content_encoding=encoding)

    rows = [
        (obj("0" * 32), gs, Method.SERVER),
        (obj(None), gs, Method.STREAM),  # composite
        (obj("0" * 32, "gzip"), gs, Method.STREAM),  # its md5 is of the compressed bytes
        (obj("0" * 32), folder, Method.STREAM),
    ]
    for o, target, want in rows:
        assert archive.method(o, target) is want


def test_an_archived_entry_that_follows_upstream_archives_the_new_object(
    repo: Path, seeded: str, put: Any, layer: GcsLayer, gcs: Any
) -> None:
    """``skip_if_exist: false``: a new object upstream is archived again, server-side."""
    name = f"r-{uuid.uuid4().hex[:12]}"
    gcs.mkdir(name)
    dvc_main("remote", "add", "-d", "team", f"gs://{name}/dvc", cwd=repo)
    write_manifest(repo, [entry(seeded, files=["file1"], skip_if_exist=False, to_remote=True)])
    assert cli("sync", cwd=repo).returncode == 0
    put(f"{seeded}/{PREFIX}/file1", "top file1, run 2\n")
    gcs.invalidate_cache()
    status = cli("status", cwd=repo)
    assert status.stdout.splitlines()[1:] == [
        "exp1            1  1 changed-upstream",
        "",
        f"exp1: {DESC}",
        f"  changed-upstream  data/{PREFIX}/file1  (the DVC remote 'team' holds the recorded one)",
        "  fix: gcsdvc sync exp1",  # nothing to push: the sync archives it
        "",
        "status: 1 of 1 file(s) need attention",
    ]
    assert cli("status", "--check", cwd=repo).returncode != 0
    calls, bytes_before = layer.rewrite_calls, layer.media_bytes
    res = cli("sync", cwd=repo)
    assert res.stdout.splitlines()[:3] == [
        "exp1  update 1",
        "archive into the DVC remote 'team': 1 object(s) (17) copied server-side, "
        "0 object(s) (0) streamed, 0 already there",
        "sync: 1 updated, 0 unchanged",
    ]
    assert layer.media_bytes == bytes_before and layer.rewrite_calls == calls + 1
    new = md5(b"top file1, run 2\n")
    assert load(data(repo, "file1.dvc"))["outs"][0]["md5"] == new
    assert new in remote_files(f"gs://{name}/dvc", gcs)
    assert not data(repo, "file1").exists()
    report = json.loads(cli("status", "--json", cwd=repo).stdout)
    assert [f["state"] for r in report["resources"] for f in r["files"]] == ["in-remote"]

    # A metadata-only change: still in the remote, the stage records the new etag; no copy.
    layer.patch_metadata(seeded, f"{PREFIX}/file1", {"owner": "me"})
    gcs.invalidate_cache()
    report = json.loads(cli("status", "--json", cwd=repo).stdout)
    assert [f["state"] for r in report["resources"] for f in r["files"]] == [
        "metadata-upstream"
    ]  # a sync records the new etag: status says so
    calls, etag = layer.rewrite_calls, load(data(repo, "file1.dvc"))["deps"][0]["etag"]
    assert cli("sync", cwd=repo).stdout.splitlines()[0] == "exp1  metadata 1"
    stage = load(data(repo, "file1.dvc"))
    assert stage["deps"][0]["etag"] != etag and stage["outs"][0]["remote"] == "team"
    assert layer.rewrite_calls == calls and not data(repo, "file1").exists()

    # Kept (skip_if_exist: true): nothing is fetched, nor archived.
    write_manifest(repo, [entry(seeded, files=["file1"], to_remote=True)])
    put(f"{seeded}/{PREFIX}/file1", "top file1, run 3\n")
    gcs.invalidate_cache()
    calls, bytes_before = layer.rewrite_calls, layer.media_bytes
    kept = cli("sync", cwd=repo)
    assert kept.stdout.splitlines() == ["exp1  unchanged 1", "sync: 1 unchanged"]
    assert (layer.rewrite_calls, layer.media_bytes) == (calls, bytes_before)
    assert not data(repo, "file1").exists()


def test_an_entry_synced_before_to_remote_is_archived_by_the_next_sync(
    repo: Path, seeded: str, layer: GcsLayer, gcs: Any
) -> None:
    """The recorded object is copied server-side; the stage gains the remote; the copy stays."""
    name = f"r-{uuid.uuid4().hex[:12]}"
    gcs.mkdir(name)
    dvc_main("remote", "add", "-d", "team", f"gs://{name}/dvc", cwd=repo)
    write_manifest(repo, [entry(seeded, files=["file1"])])
    assert cli("sync", cwd=repo).returncode == 0
    write_manifest(repo, [entry(seeded, files=["file1"], to_remote=True)])
    status = cli("status", cwd=repo)
    assert status.stdout.splitlines()[1:] == [
        "exp1            1  1 stale-stage",
        "",
        f"exp1: {DESC}",
        f"  stale-stage  data/{PREFIX}/file1  "
        "(to_remote is true but the DVC remote holds no copy yet; a sync archives it)",
        "  fix: gcsdvc sync exp1",
        "",
        "status: 1 of 1 file(s) need attention",
    ]
    calls, bytes_before = layer.rewrite_calls, layer.media_bytes
    res = cli("sync", cwd=repo)
    assert res.stdout.splitlines()[:3] == [
        "exp1  update 1",
        "archive into the DVC remote 'team': 1 object(s) (10) copied server-side, "
        "0 object(s) (0) streamed, 0 already there",
        "sync: 1 updated, 0 unchanged",
    ]
    assert (layer.rewrite_calls, layer.media_bytes) == (calls + 1, bytes_before)
    stage = load(data(repo, "file1.dvc"))
    assert stage["outs"][0]["remote"] == "team"
    assert stage["outs"][0]["md5"] in remote_files(f"gs://{name}/dvc", gcs)
    assert data(repo, "file1").read_bytes() == b"top file1\n"
    report = json.loads(cli("status", "--json", cwd=repo).stdout)
    assert [f["state"] for r in report["resources"] for f in r["files"]] == ["ok"]
    data(repo, "file1").unlink()
    report = json.loads(cli("status", "--json", cwd=repo).stdout)
    assert [f["state"] for r in report["resources"] for f in r["files"]] == ["in-remote"]
    again = cli("sync", cwd=repo)
    assert again.stdout.splitlines() == ["exp1  unchanged 1", "sync: 1 unchanged"]
