"""The manifest against DVC and git: `dvc exp run -S` diffs, merges of two branches' entries."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import cli, dvc, run
from test_workflows import commit_all

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


def _write_with(how: str, repo: Path) -> None:
    if how == "add":
        cli("add", "gs://offline-bucket/exp/r1", "--no-check", "-f", "*.json", cwd=repo, check=True)
        cli("add", "gs://offline-bucket/exp/r2", "--no-check", "-f", "eval/a b.csv",
            "--follow-upstream", "--description", LONG, cwd=repo, check=True)  # fmt: skip
    else:
        (repo / "old.py").write_text(OLD_MANIFEST)
        cli("migrate", "old.py", "-o", "params.yaml", cwd=repo, check=True)


@pytest.mark.parametrize("how", ["add", "migrate"])
def test_dvc_exp_run_set_param_changes_only_that_line(how: str, repo: Path) -> None:
    (repo / "params.yaml").write_text(TRAIN)
    (repo / "dvc.yaml").write_text(STAGE)
    _write_with(how, repo)
    assert "resources:" in (repo / "params.yaml").read_text()
    commit_all(repo)

    dvc("exp", "run", "-S", "train.lr=0.2", cwd=repo)

    diff = run("git", "diff", "-U0", "--", "params.yaml", cwd=repo).stdout.splitlines()
    changed = [line for line in diff if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert changed == ["-  lr: 0.1", "+  lr: 0.2"], "\n".join(diff)
    cli("validate", cwd=repo, check=True)
