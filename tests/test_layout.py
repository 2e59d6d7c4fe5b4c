"""The manifest against DVC and git: `dvc exp run -S` diffs, merges of two branches' entries."""

from __future__ import annotations

import json
import shlex
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import cli, dvc, entry, run, write_manifest
from hypothesis import given
from test_fuzz import FUZZ, valid_entries
from test_manifest_edit import new_entries
from test_workflows import commit_all

from gcsdvc.manifest import parse_manifest
from gcsdvc.manifest_edit import append_entries
from gcsdvc.merge import MergeConflict, merge_texts

LONG = "a description longer than a line: " + "the run where the learning rate was varied " * 3
TRAIN = "# training params\ntrain:\n  lr: 0.1\n  epochs: 3\n"
STAGE = "stages:\n  train:\n    cmd: echo trained\n    params:\n    - train.lr\n"
OLD_MANIFEST = f"""\
resources = [
    {{"name": "r1", "bucket": "offline-bucket", "blob": "exp", "subblob": "r1",
     "files": ["*.json", "eval/a b.csv"], "destination": "exp/r1", "skip_if_exist": True}},
    {{"name": "r2", "bucket": "offline-bucket", "blob": "exp", "subblob": "r2",
     "destination": "exp/r2", "skip_if_exist": False, "description": {LONG!r}}},
]
"""


def _write_with(how: str, repo: Path, request: pytest.FixtureRequest) -> None:
    if how == "discover":
        bucket, put = request.getfixturevalue("bucket"), request.getfixturevalue("put")
        for run_name in ("r1", "r2"):
            put(f"{bucket}/exp/{run_name}/m.json", "{}")
        cli("discover", f"gs://{bucket}/exp", "--add", "-f", "*.json", cwd=repo, check=True)
    elif how == "add":
        cli("add", "gs://offline-bucket/exp/r1", "--no-check", "-f", "*.json", cwd=repo, check=True)
        cli("add", "gs://offline-bucket/exp/r2", "--no-check", "-f", "eval/a b.csv",
            "--follow-upstream", "--description", LONG, cwd=repo, check=True)  # fmt: skip
    else:
        (repo / "old.py").write_text(OLD_MANIFEST)
        cli("migrate", "old.py", "-o", "params.yaml", cwd=repo, check=True)


@pytest.mark.parametrize("how", ["add", "discover", "migrate"])
def test_dvc_exp_run_set_param_changes_only_that_line(
    how: str, repo: Path, request: pytest.FixtureRequest
) -> None:
    (repo / "params.yaml").write_text(TRAIN)
    (repo / "dvc.yaml").write_text(STAGE)
    _write_with(how, repo, request)
    assert "resources:" in (repo / "params.yaml").read_text()
    commit_all(repo)

    dvc("exp", "run", "-S", "train.lr=0.2", cwd=repo)

    diff = run("git", "diff", "-U0", "--", "params.yaml", cwd=repo).stdout.splitlines()
    changed = [line for line in diff if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert changed == ["-  lr: 0.1", "+  lr: 0.2"], "\n".join(diff)
    cli("validate", cwd=repo, check=True)


# -- merges of two branches' entries ----------------------------------------------------


def _branches(repo: Path, install: bool) -> None:
    """main with one entry; branch 'other' adds r2, main then adds r3."""
    (repo / "params.yaml").write_text(TRAIN)
    cli("add", "gs://offline-bucket/exp/r1", "--no-check", cwd=repo, check=True)
    if install:
        res = cli("install", cwd=repo, check=True)
        assert "registered the manifest merge driver" in res.stdout
        assert (repo / ".gitattributes").read_text() == "/params.yaml merge=gcsdvc-manifest\n"
    commit_all(repo)
    run("git", "checkout", "-qb", "other", cwd=repo)
    cli("add", "gs://offline-bucket/exp/r2", "--no-check", "-d", "theirs", cwd=repo, check=True)
    commit_all(repo)
    run("git", "checkout", "-q", "main", cwd=repo)
    cli("add", "gs://offline-bucket/exp/r3", "--no-check", "-d", "ours", cwd=repo, check=True)
    commit_all(repo)


def _names(repo: Path) -> list[str]:
    return [e["name"] for e in yaml.safe_load((repo / "params.yaml").read_text())["resources"]]


def test_entries_added_on_two_branches_merge_after_install(repo: Path) -> None:
    _branches(repo, install=True)
    assert cli("install", cwd=repo, check=True).stdout == (
        "the manifest merge driver is already installed for params.yaml\n"
    )
    doc = json.loads(cli("install", "--json", cwd=repo, check=True).stdout)
    assert doc["done"] == [] and doc["attribute"] == "/params.yaml merge=gcsdvc-manifest"
    config = run("git", "config", "merge.gcsdvc-manifest.driver", cwd=repo).stdout
    assert config == doc["driver"] + "\n" and config.endswith(" merge-manifest %O %A %B %P\n")

    res = run("git", "merge", "-q", "--no-edit", "other", cwd=repo, check=False)

    assert res.returncode == 0, res.stdout + res.stderr
    assert _names(repo) == ["r1", "r3", "r2"]
    assert cli("validate", cwd=repo, check=True).stdout.endswith(": OK\n")
    # Still in DVC's layout: a param set afterwards is a one-line change.
    (repo / "dvc.yaml").write_text(STAGE)
    commit_all(repo)
    dvc("exp", "run", "-S", "train.lr=0.2", cwd=repo)
    assert run("git", "diff", "--numstat", "--", "params.yaml", cwd=repo).stdout.split()[:2] == [
        "1",
        "1",
    ]


def test_without_install_the_conflict_points_to_install(repo: Path) -> None:
    _branches(repo, install=False)

    merge = run("git", "merge", "-q", "--no-edit", "other", cwd=repo, check=False)

    assert merge.returncode != 0 and "CONFLICT" in merge.stdout
    res = cli("validate", cwd=repo)
    assert res.returncode == 2
    assert res.stderr.splitlines() == [
        "error: params.yaml:12: unresolved git merge conflict (<<<<<<< markers): keep what both "
        "sides meant, delete the marker lines, 'git add' the file; 'gcsdvc install' lets git "
        "merge manifest entries by name"
    ]


def test_an_entry_changed_differently_on_both_sides_is_a_conflict(repo: Path) -> None:
    (repo / "params.yaml").write_text(TRAIN)
    cli("add", "gs://offline-bucket/exp/r1", "--no-check", "-d", "first", cwd=repo, check=True)
    cli("install", cwd=repo, check=True)
    commit_all(repo)
    text = (repo / "params.yaml").read_text()
    run("git", "checkout", "-qb", "other", cwd=repo)
    (repo / "params.yaml").write_text(text.replace("first", "theirs").replace("0.1", "0.3"))
    commit_all(repo)
    run("git", "checkout", "-q", "main", cwd=repo)
    (repo / "params.yaml").write_text(text.replace("first", "ours"))
    commit_all(repo)

    res = run("git", "merge", "--no-edit", "other", cwd=repo, check=False)

    assert res.returncode != 0 and "CONFLICT (content): Merge conflict in params.yaml" in res.stdout
    assert "conflict: params.yaml: entry 'r1'.description changed differently" in res.stderr
    merged = (repo / "params.yaml").read_text()
    assert "<<<<<<< ours\n" in merged and "description: ours" in merged
    assert "description: theirs" in merged
    assert "unresolved git merge conflict" in cli("validate", cwd=repo).stderr


def test_two_clones_that_each_add_an_entry_pull_without_a_conflict(
    repo: Path, tmp_path: Path
) -> None:
    """A team: alice and bob clone one repository, each installs, adds an entry and pushes."""
    (repo / "params.yaml").write_text(TRAIN)
    cli("add", "gs://offline-bucket/exp/r1", "--no-check", cwd=repo, check=True)
    cli("install", cwd=repo, check=True)
    commit_all(repo)
    origin = tmp_path / "origin.git"
    run("git", "clone", "-q", "--bare", str(repo), str(origin), cwd=tmp_path)
    clones = {}
    for who in ("alice", "bob", "carol"):
        clones[who] = tmp_path / who
        run("git", "clone", "-q", str(origin), str(clones[who]), cwd=tmp_path)
        if who != "carol":  # carol never ran 'gcsdvc install'
            cli("install", cwd=clones[who], check=True)
        cli("add", f"gs://offline-bucket/exp/{who}", "--no-check", cwd=clones[who], check=True)
        commit_all(clones[who])
    run("git", "push", "-q", "origin", "main", cwd=clones["alice"])

    res = run("git", "pull", "-q", "--no-rebase", "--no-edit", cwd=clones["bob"], check=False)

    assert res.returncode == 0, res.stdout + res.stderr
    assert _names(clones["bob"]) == ["r1", "bob", "alice"]
    assert cli("validate", cwd=clones["bob"], check=True).stdout.endswith(": OK\n")
    run("git", "push", "-q", "origin", "main", cwd=clones["bob"])
    # Without the driver, git's line merge: a conflict, which every command names with the fix.
    res = run("git", "pull", "-q", "--no-rebase", "--no-edit", cwd=clones["carol"], check=False)
    assert res.returncode != 0 and "CONFLICT" in res.stdout
    assert "'gcsdvc install' lets git merge" in cli("status", cwd=clones["carol"]).stderr


def test_install_outside_git_says_so(tmp_path: Path) -> None:
    res = cli("install", "-m", str(tmp_path / "params.yaml"), cwd=tmp_path)
    assert res.returncode == 1
    assert res.stderr.startswith(f"error: {tmp_path} is not in a git work tree (")
    assert not (tmp_path / ".gitattributes").exists()


BASE = """\
# DVC params
train:
  lr: 0.1
  epochs: 3
resources:
- name: r1
  bucket: b1
  blob: exp
  destination: r1  # the first run
- name: r2
  bucket: b1
  blob: exp
  destination: r2
"""


def _entry(name: str, **more: str) -> str:
    extra = "".join(f"  {k}: {v}\n" for k, v in more.items())
    return f"- name: {name}\n  bucket: b1\n  blob: exp\n  destination: {name}\n{extra}"


@pytest.mark.parametrize(
    ("ours", "theirs", "merged"),
    [
        pytest.param(
            BASE + _entry("r3"), BASE + _entry("r4"), BASE + _entry("r3") + _entry("r4"), id="adds"
        ),
        pytest.param(
            BASE.replace("lr: 0.1", "lr: 0.2") + _entry("r3"),
            BASE.replace("epochs: 3", "epochs: 4") + _entry("r4"),
            BASE.replace("lr: 0.1", "lr: 0.2").replace("epochs: 3", "epochs: 4")
            + _entry("r3")
            + _entry("r4"),
            id="params-and-adds",
        ),
        pytest.param(
            BASE.replace("- name: r2\n  bucket: b1\n  blob: exp\n  destination: r2\n", ""),
            BASE + _entry("r4"),
            BASE.replace("- name: r2\n  bucket: b1\n  blob: exp\n  destination: r2\n", "")
            + _entry("r4"),
            id="removed-and-added",
        ),
        pytest.param(
            BASE.replace("destination: r2", "destination: r2\n  description: x") + _entry("r3"),
            BASE.replace("blob: exp\n  destination: r2", "blob: new\n  destination: r2")
            + _entry("r4"),
            BASE.replace("blob: exp\n  destination: r2", "blob: new\n  destination: r2").replace(
                "destination: r2", "destination: r2\n  description: x"
            )
            + _entry("r3")
            + _entry("r4"),
            id="one-entry-two-fields",
        ),
        pytest.param(BASE + _entry("r3"), BASE + _entry("r3"), BASE + _entry("r3"), id="same"),
    ],
)
def test_merge_by_name(ours: str, theirs: str, merged: str) -> None:
    assert merge_texts(BASE, ours, theirs, "params.yaml") == merged


@pytest.mark.parametrize(
    ("ours", "theirs", "problem"),
    [
        pytest.param(
            BASE + _entry("r3", description="a"),
            BASE + _entry("r3", description="b"),
            "params.yaml: entry 'r3' changed differently on both sides",
            id="same-name-added-twice",
        ),
        pytest.param(
            BASE.replace("lr: 0.1", "lr: 0.2"),
            BASE.replace("lr: 0.1", "lr: 0.3"),
            "params.yaml: 'train'.lr changed differently on both sides",
            id="param",
        ),
        pytest.param(
            BASE.replace("destination: r2", "destination: r2\n  description: x"),
            BASE.replace("- name: r2\n  bucket: b1\n  blob: exp\n  destination: r2\n", ""),
            "params.yaml: entry 'r2' changed differently on both sides",
            id="changed-and-removed",
        ),
        pytest.param(
            BASE + _entry("r3") + _entry("r3"),
            BASE + _entry("r4"),
            "params.yaml: entry 'r3' appears twice (ours)",
            id="twice",
        ),
    ],
)
def test_merge_refuses_real_conflicts(ours: str, theirs: str, problem: str) -> None:
    with pytest.raises(MergeConflict) as caught:
        merge_texts(BASE, ours, theirs, "params.yaml")
    assert caught.value.problems == [problem]


# -- dvc exp show -------------------------------------------------------------------------


def _documented_exp_show() -> list[str]:
    doc = (Path(__file__).parents[1] / "docs" / "dvc.md").read_text(encoding="utf-8")
    line = next(x for x in doc.splitlines() if x.startswith("$ dvc exp show --drop"))
    return shlex.split(line.removeprefix("$ "))[3:]


@pytest.mark.skipif(
    tuple(int(n) for n in version("dvc").split(".")[:2]) < (3, 67),
    reason="docs/dvc.md gives the columns of dvc 3.67",
)
def test_documented_exp_show_options_hide_the_import_columns(repo: Path, seeded: str) -> None:
    write_manifest(repo, [entry(seeded)])
    (repo / "params.yaml").write_text((repo / "params.yaml").read_text() + TRAIN)
    (repo / "dvc.yaml").write_text(
        "stages:\n  train:\n    cmd: \"echo 'acc: 1' > m.yaml && mkdir -p sub && "
        "echo 'acc: 2' > sub/m.yaml\"\n    params:\n    - train.lr\n    metrics:\n"
        "    - m.yaml:\n        cache: false\n    - sub/m.yaml:\n        cache: false\n"
    )
    cli("sync", cwd=repo, check=True)
    commit_all(repo)
    dvc("exp", "run", "-S", "train.lr=0.2", cwd=repo)

    def columns(*options: str) -> list[str]:
        out = dvc("exp", "show", "--no-pager", "--csv", *options, cwd=repo).stdout
        return out.splitlines()[0].split(",")

    everything = columns()
    assert "resources" in everything
    assert sum(seeded in c for c in everything) == 6  # two per synced file
    assert columns(*_documented_exp_show()) == [
        "Experiment",
        "rev",
        "typ",
        "Created",
        "parent",
        "m.yaml:acc",
        "sub/m.yaml:acc",
        "train.lr",
        "train.epochs",
    ]


@FUZZ
@given(valid_entries(), new_entries, new_entries)
def test_any_two_additions_merge_to_both(
    entries: list[dict[str, Any]], ours: dict[str, Any], theirs: dict[str, Any]
) -> None:
    base = append_entries(TRAIN, entries)
    ours = {**ours, "name": "ours-entry", "destination": "ours-entry"}
    theirs = {**theirs, "name": "theirs-entry", "destination": "theirs-entry"}
    merged = merge_texts(base, append_entries(base, [ours]), append_entries(base, [theirs]))
    doc = yaml.safe_load(merged)
    assert doc == {**yaml.safe_load(base), "resources": [*entries, ours, theirs]}
    parse_manifest(merged, Path("params.yaml"), Path())
