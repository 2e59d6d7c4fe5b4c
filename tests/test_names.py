"""Object names DVC cannot carry (issue 23, item 2): refused before anything is written.

The rule itself is table-tested in tests/test_manifest.py; here a glob or a whole
prefix brings such names in, through the layer that answers as Cloud Storage does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import QUOTED, cli, data, dvc_main, entry, run, snapshot, write_manifest
from gcslayer import GcsLayer
from test_cloud import status_of
from test_workflows import clone, commit_all

PREFIX = f"project1/{QUOTED}"
LONG = "n" * 229  # with DVC's NAME.<22 characters>.tmp beside it: 256 bytes
REFUSED = ["dvc.yaml", ".dvcignore", "sub/.dvcignore", "x#12", "a?b", "a//b", LONG]
KEPT = ["ok.txt", "a b%20.txt", "sub/fine.csv"]


def test_a_glob_leaves_out_each_refused_object_in_one_line(
    repo: Path, bucket: str, put: Any, tmp_path: Path
) -> None:
    for name in REFUSED + KEPT:
        put(f"{bucket}/{PREFIX}/{name}", "*\n")  # as ignore rules, '*' would hide everything
    put(f"{bucket}/other/metrics.json", "{}")
    other = entry(bucket, name="exp2", subblob="", blob="other", destination="other")
    write_manifest(repo, [entry(bucket, files=["**"]), {**other, "files": ["metrics.json"]}])

    res = cli("sync", cwd=repo)
    assert res.returncode == 1
    failed = [line for line in res.stderr.splitlines() if line.startswith("failed: ")]
    assert len(failed) == len(REFUSED)
    for name in REFUSED:
        (line,) = [f for f in failed if f"gs://{bucket}/{PREFIX}/{name}: " in f]
        assert line.startswith(
            f"failed: exp1: gs://{bucket}/{PREFIX}/{name}: matched by '**', "
            "but DVC cannot carry it: the object "
        )
        assert line.endswith("rename the object, or narrow the pattern to leave it out")
        assert not data(repo, name).exists() and not data(repo, f"{name}.dvc").exists()
    assert "x#12: matched by '**', but DVC cannot carry it: the object ends with '#12', " in (
        res.stderr
    )
    for name in KEPT:
        assert data(repo, name).read_text() == "*\n"
    assert (repo / "data/other/metrics.json").read_text() == "{}"

    # DVC still sees every stage, and nothing of the refused ones.
    assert json.loads(dvc_main("status", "--json", cwd=repo).stdout) == {}

    states = status_of(repo)
    for name in REFUSED:
        assert states[f"data/{PREFIX}/{name}"] == "refused"
    assert cli("status", "--check", cwd=repo).returncode == 1
    shown = cli("status", cwd=repo).stdout
    assert f"refused  data/{PREFIX}/x#12  (matched by '**', but DVC cannot carry it" in shown
    # Shown as the object is named: 'a/b' would be another object's file.
    assert f"refused  data/{PREFIX}/a//b  (matched by '**', but DVC cannot carry it: the " in shown
    # Offline, only synced files are known: a glob's refused objects were never synced.
    assert cli("status", "--offline", "--check", cwd=repo).returncode == 0
    assert cli("sync", cwd=repo).returncode == 1  # again: the same lines, no crash
    assert "Traceback" not in cli("sync", cwd=repo).stderr

    # A fresh clone pulls every stage that was written.
    commit_all(repo)
    fresh = clone(repo, tmp_path)
    dvc_main("pull", cwd=fresh)
    for name in KEPT:
        assert (fresh / "data" / PREFIX / name).read_text() == "*\n"


def test_a_whole_prefix_holding_a_refused_name_is_refused_before_dvc_is_called(
    repo: Path, bucket: str, put: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gcsdvc import folders

    imported: list[str] = []
    real = folders.sync_folder

    def sync_folder(ws: Any, storage: Any, item: Any, *args: Any) -> Any:
        imported.append(item.source)
        return real(ws, storage, item, *args)

    monkeypatch.setattr(folders, "sync_folder", sync_folder)
    put(f"{bucket}/{PREFIX}/ok.txt", "ok\n")
    put(f"{bucket}/{PREFIX}/deep/.dvcignore", "*\n")
    put(f"{bucket}/{PREFIX}/x#3", "x\n")
    put(f"{bucket}/good/a.txt", "a\n")
    whole = {k: v for k, v in entry(bucket).items() if k != "files"}
    good = entry(bucket, name="good", blob="good", subblob="", destination="good", files=["a.txt"])
    write_manifest(repo, [whole, good])
    before = snapshot(repo)

    res = cli("sync", cwd=repo)
    assert res.returncode == 1
    (line,) = [f for f in res.stderr.splitlines() if f.startswith("failed: ")]
    assert line == (
        f"failed: exp1: gs://{bucket}/{PREFIX}: holds an object DVC cannot carry: "
        f"gs://{bucket}/{PREFIX}/deep/.dvcignore is named '.dvcignore', which DVC reads as ignore "
        "rules for the folder's data (and 1 more); the folder is not imported: rename or remove "
        "the object, or list the files in 'files'"
    )
    after = snapshot(repo)
    assert {k: v for k, v in after.items() if not k.startswith("data/good/")} == before
    assert not (repo / "data" / PREFIX).exists()
    assert imported == []
    assert (repo / "data/good/a.txt").read_text() == "a\n"
    assert status_of(repo)[f"data/{PREFIX}"] == "refused"
    assert cli("status", "--check", cwd=repo).returncode == 1
    assert json.loads(dvc_main("status", "--json", cwd=repo).stdout) == {}


def test_an_object_named_like_the_folder_is_an_error_naming_both(
    repo: Path, bucket: str, put: Any
) -> None:
    """DVC would import the object ``proj/run5`` instead of the folder ``proj/run5/``."""
    put(f"{bucket}/{PREFIX}", "a placeholder the console left\n")
    put(f"{bucket}/{PREFIX}/model.bin", "weights\n")
    write_manifest(repo, [{k: v for k, v in entry(bucket).items() if k != "files"}])
    before = snapshot(repo)
    res = cli("sync", cwd=repo)
    assert res.returncode == 1
    (line,) = [f for f in res.stderr.splitlines() if f.startswith("failed: ")]
    url = f"gs://{bucket}/{PREFIX}"
    assert line == (
        f"failed: exp1: {url}: {url} is both an object and a folder ({url}/...): DVC would "
        "import the object, not the folder; rename or delete the object, or list the "
        "folder's files in 'files'"
    )
    assert snapshot(repo) == before
    assert status_of(repo)[f"data/{PREFIX}"] == "refused"


def test_a_hash_mark_is_refused_in_pinned_mode_only(
    repo: Path, bucket: str, put: Any, tmp_path: Path
) -> None:
    """A pinned stage's URL gets '#<generation>' from DVC, and gcsfs splits the name at the
    first '#': a fresh clone's `dvc pull` of DVC's own pinned import fails. Unpinned, it works."""
    url = f"gs://{bucket}/{PREFIX}/hash#1.txt"
    put(f"{bucket}/{PREFIX}/hash#1.txt", "hashed\n")
    put(f"{bucket}/{PREFIX}/ok.txt", "ok\n")
    plain = tmp_path / "plain"
    plain.mkdir()
    run("git", "init", "-q", cwd=plain)
    dvc_main("init", "-q", cwd=plain)
    dvc_main("import-url", url, "hash.txt", cwd=plain)
    assert "version_id" in (plain / "hash.txt.dvc").read_text()  # DVC pins it
    commit_all(plain)
    (tmp_path / "c").mkdir()
    assert dvc_main("pull", cwd=clone(plain, tmp_path / "c"), check=False).returncode != 0

    write_manifest(repo, [entry(bucket, files=["ok.txt", "hash#1.txt"])])  # auto: pinned
    res = cli("sync", cwd=repo)
    assert res.returncode == 1
    assert [line for line in res.stderr.splitlines() if line.startswith("failed: ")] == [
        f"failed: exp1: {url}: the object has a '#': DVC adds '#<generation>' to a pinned "
        "stage's URL, and gcsfs then splits the name at the first '#', so a fresh clone's "
        "'dvc pull' fails (unpinned stages carry it); rename the object, or unpin the stages "
        "(a default DVC remote in .dvc/config, or pin_generations: false)"
    ]
    assert not data(repo, "hash#1.txt").exists() and data(repo, "ok.txt").exists()
    assert status_of(repo)[f"data/{PREFIX}/hash#1.txt"] == "refused"

    write_manifest(repo, [entry(bucket, files=["ok.txt", "hash#1.txt"])], pin_generations=False)
    res = cli("sync", cwd=repo)
    assert res.returncode == 0, res.stderr
    assert data(repo, "hash#1.txt").read_text() == "hashed\n"


def test_an_object_with_a_customer_supplied_key_is_refused_with_a_fix_that_works(
    repo: Path, bucket: str, put: Any, layer: GcsLayer
) -> None:
    """No sync can fetch a CSEK object (no key is sent): refused in one line, no 'gcsdvc sync'."""
    put(f"{bucket}/{PREFIX}/ok.txt", "ok\n")
    put(f"{bucket}/{PREFIX}/secret.bin", "sealed\n")
    layer.encrypted.add((bucket, f"{PREFIX}/secret.bin"))
    url = f"gs://{bucket}/{PREFIX}/secret.bin"
    write_manifest(repo, [entry(bucket, files=["*"])])
    try:
        res = cli("sync", cwd=repo)
        doc = json.loads(cli("status", "--json", cwd=repo).stdout)
    finally:
        layer.encrypted.clear()
    assert res.returncode == 1
    why = (
        "it is encrypted with a customer-supplied key (CSEK), which neither gcsdvc nor DVC "
        "sends, so no sync can fetch it; rewrite it with Google-managed encryption "
        f"('gcloud storage objects update {url} --decryption-keys=YOUR_KEY "
        "--clear-encryption-key'), or leave it out of the entry"
    )
    assert [line for line in res.stderr.splitlines() if line.startswith("failed: ")] == [
        f"failed: exp1: {url}: {why}"
    ]
    assert data(repo, "ok.txt").read_text() == "ok\n"
    (found,) = [f for f in doc["resources"][0]["files"] if f["source"] == url]
    assert (found["state"], found["note"], found["fix"]) == ("refused", why, None)
