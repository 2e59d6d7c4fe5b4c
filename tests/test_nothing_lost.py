"""Nothing lost, nothing refused for nothing: a team's updates, branch switches and two manifests.

A local file whose bytes are safe elsewhere (the DVC cache, or the object the
bucket holds now) is not a user edit: sync replaces it without ``--force``.
``--force`` is needed only where local bytes would be lost, and saves them into
the DVC cache first. A stage belongs to the manifest that wrote it: orphans and
``--prune`` see only their own manifest's stages. ``alice`` is the ``repo``
fixture, ``bob`` a clone of it; gcsdvc, DVC and git run for real.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import QUOTED, cli, data, dvc_main, entry, load, run, write_manifest
from test_workflows import clone, commit_all

PREFIX = f"project1/{QUOTED}"


def cached(root: Path, md5: str) -> Path:
    return root / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]


def recorded_md5(root: Path, rel: str) -> str:
    md5: str = load(data(root, rel + ".dvc"))["outs"][0]["md5"]
    return md5


def pull(root: Path) -> None:
    run("git", "pull", "-q", "--no-rebase", cwd=root)


@pytest.mark.parametrize("how", ["gcsdvc sync", "dvc update"])
def test_a_teammates_update_is_taken_without_force(
    how: str, repo: Path, seeded: str, put: Any, tmp_path: Path
) -> None:
    alice = repo
    write_manifest(alice, [entry(seeded, skip_if_exist=False)])
    cli("sync", cwd=alice, check=True)
    commit_all(alice)
    bob = clone(alice, tmp_path)
    cli("sync", cwd=bob, check=True)
    old = recorded_md5(bob, "file1")

    put(f"{seeded}/{PREFIX}/file1", "top file1, second run\n")
    if how == "gcsdvc sync":
        cli("sync", cwd=alice, check=True)
    else:
        dvc_main("update", str(data(alice, "file1.dvc")), cwd=alice)
    commit_all(alice)

    pull(bob)
    res = cli("sync", cwd=bob)
    assert res.returncode == 0, res.stderr
    assert "--force" not in res.stdout + res.stderr
    assert data(bob, "file1").read_text() == "top file1, second run\n"
    assert cached(bob, old).read_text() == "top file1\n"  # the old version stays restorable
    assert cli("status", "--check", "--offline", cwd=bob).returncode == 0


def test_switching_branches_that_recorded_other_versions_needs_no_force(
    repo: Path, seeded: str, put: Any
) -> None:
    write_manifest(repo, [entry(seeded)])
    cli("sync", cwd=repo, check=True)
    commit_all(repo)
    run("git", "checkout", "-qb", "rerun", cwd=repo)
    put(f"{seeded}/{PREFIX}/metrics.json", '{"acc": 0.95}')
    dvc_main("update", str(data(repo, "metrics.json.dvc")), cwd=repo)
    cli("sync", cwd=repo, check=True)
    commit_all(repo)

    for branch, expected in [("main", '{"acc": 0.9}'), ("rerun", '{"acc": 0.95}')]:
        run("git", "checkout", "-q", branch, cwd=repo)  # the data stays as it was
        res = cli("sync", cwd=repo)
        assert res.returncode == 0, res.stderr
        assert res.stdout.splitlines()[0] == "exp1  restore 1, unchanged 2"
        assert data(repo, "metrics.json").read_text() == expected
        assert cli("status", "--check", cwd=repo).returncode == 0


def test_force_saves_a_real_edit_into_the_cache_before_replacing_it(
    repo: Path, seeded: str
) -> None:
    write_manifest(repo, [entry(seeded)])
    cli("sync", cwd=repo, check=True)
    target = data(repo, "metrics.json")
    target.unlink()  # a hardlinked or symlinked file would change the cache's copy too
    target.write_text('{"acc": 1.0, "edited": true}')

    res = cli("sync", cwd=repo)
    assert res.returncode == 1
    assert target.read_text() == '{"acc": 1.0, "edited": true}'

    res = cli("sync", "--force", cwd=repo)
    assert res.returncode == 0, res.stderr
    edited_md5 = _md5(b'{"acc": 1.0, "edited": true}')
    rel = f"data/{PREFIX}/metrics.json"
    assert f"saved {rel} (md5 {edited_md5}) to the DVC cache before replacing it" in res.stdout
    assert cached(repo, edited_md5).read_text() == '{"acc": 1.0, "edited": true}'
    assert target.read_text() == '{"acc": 0.9}'


def _md5(content: bytes) -> str:
    import hashlib

    return hashlib.md5(content).hexdigest()


# -- two manifests, one data folder ------------------------------------------


def write_second(root: Path, resources: list[dict[str, Any]]) -> None:
    doc = {"resources": resources}
    (root / "more.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))


def test_two_manifests_share_a_data_folder_without_seeing_orphans(repo: Path, seeded: str) -> None:
    write_manifest(repo, [entry(seeded, files=["file1"])])
    write_second(repo, [entry(seeded, name="exp2", files=["metrics.json"], destination="other")])
    cli("sync", cwd=repo, check=True)
    cli("sync", "-m", "more.yaml", cwd=repo, check=True)

    for args in [(), ("-m", "more.yaml")]:
        res = cli("status", "--check", "--offline", *args, cwd=repo)
        assert res.returncode == 0, res.stdout + res.stderr
        assert "orphan" not in res.stdout
        cli("sync", "--prune", *args, cwd=repo, check=True)
    assert data(repo, "file1").exists()
    assert (repo / "data" / "other" / "metrics.json").exists()
    assert "more.yaml" in (repo / "data" / "other" / "metrics.json.dvc").read_text()

    # An entry removed from one manifest is that manifest's orphan only.
    write_second(repo, [])
    assert "orphan" not in cli("status", "--offline", cwd=repo).stdout
    cli("sync", "--prune", "-m", "more.yaml", cwd=repo, check=True)
    assert not (repo / "data" / "other" / "metrics.json").exists()
    assert data(repo, "file1").exists()


def test_the_same_destination_in_two_manifests_is_refused(repo: Path, seeded: str) -> None:
    write_manifest(repo, [entry(seeded, files=["file1"])])
    write_second(repo, [entry(seeded, name="exp2", files=["file1"])])
    cli("sync", cwd=repo, check=True)
    before = sorted(map(str, (repo / "data").rglob("*")))
    res = cli("sync", "-m", "more.yaml", cwd=repo)
    assert res.returncode == 1
    source = f"gs://{seeded}/{PREFIX}/file1"
    assert res.stderr == (
        f"failed: exp2: {source}: data/{PREFIX}/file1.dvc belongs to the manifest params.yaml "
        "(entry exp1); give one of the entries another destination\n"
    )
    assert sorted(map(str, (repo / "data").rglob("*"))) == before
