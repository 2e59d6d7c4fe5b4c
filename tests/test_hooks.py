"""The pre-commit hooks, run as pre-commit runs them: the entries of .pre-commit-hooks.yaml."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import yaml
from conftest import Ran, cli, entry, run, write_manifest

from gcsdvc.cli import main

HOOKS = {
    hook["id"]: hook
    for hook in yaml.safe_load((Path(__file__).parents[1] / ".pre-commit-hooks.yaml").read_text())
}
THREE = ("vision/params.yaml", "nlp/params.yaml", "empty/params.yaml")
DVC_PARAMS = "# DVC params of one project\ntrain:\n  lr: 0.01\n  epochs: 20\n"


def hook(hook_id: str, cwd: Path, *files: str) -> Ran:
    """Run a hook's entry in process, with the files pre-commit would pass it."""
    spec = HOOKS[hook_id]
    words = shlex.split(spec["entry"])
    assert words[0] == "gcsdvc"
    if spec.get("pass_filenames", True):
        files = tuple(f for f in files if re.search(spec["files"], f))
    else:
        files = ()
    return cli(*words[1:], *files, cwd=cwd)


def test_hooks_file() -> None:
    assert set(HOOKS) == {"gcsdvc-validate", "gcsdvc-status", "gcsdvc-status-strict"}
    assert HOOKS["gcsdvc-validate"]["pass_filenames"] is True
    assert re.search(HOOKS["gcsdvc-validate"]["files"], "sub/params.yaml")
    assert re.search(HOOKS["gcsdvc-validate"]["files"], "params.yml")
    assert not re.search(HOOKS["gcsdvc-validate"]["files"], "dvc.yaml")
    for hook_id in ("gcsdvc-status", "gcsdvc-status-strict"):
        assert HOOKS[hook_id]["pass_filenames"] is False
        assert HOOKS[hook_id]["always_run"] is True
        assert " -q" not in HOOKS[hook_id]["entry"]  # the hook says what it found
    assert all(h["language"] == "python" for h in HOOKS.values())
    for spec in HOOKS.values():  # the entries parse as written
        words = shlex.split(spec["entry"])
        command = main.get_command(click.Context(main), words[1])
        assert command is not None
        command.make_context(words[1], words[2:])


def test_validate_hook_in_a_monorepo(repo: Path) -> None:
    """Two DVC projects' params.yaml pass; a manifest is checked; a broken one fails."""
    for project in ("vision", "nlp"):
        (repo / project).mkdir()
        (repo / project / "params.yaml").write_text(DVC_PARAMS)
    (repo / "empty").mkdir()
    (repo / "empty" / "params.yaml").write_text("")
    res = hook("gcsdvc-validate", repo, *THREE)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [
        f"{p}: not a gcsdvc manifest (no 'resources' or 'gcsdvc' key)"
        for p in ("vision/params.yaml", "nlp/params.yaml", "empty/params.yaml")
    ]

    # One project keeps a manifest beside its DVC params: that file is checked.
    write_manifest(repo / "vision", [entry("bkt")])
    text = (repo / "vision" / "params.yaml").read_text()
    (repo / "vision" / "params.yaml").write_text(DVC_PARAMS + text)
    res = hook("gcsdvc-validate", repo, "vision/params.yaml", "nlp/params.yaml", "dvc.yaml")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[1] == "vision/params.yaml: 1 experiment(s), 3 file(s): OK"

    # Broken manifests still fail: a wrong field, a 'gcsdvc' block alone, invalid YAML.
    (repo / "vision" / "params.yaml").write_text(
        text.replace("description:", "descripton:", 1), encoding="utf-8"
    )
    (repo / "nlp" / "params.yaml").write_text("gcsdvc:\n  data_dir: data\n")
    (repo / "empty" / "params.yaml").write_text("resources:\n  - name: [unclosed\n")
    res = hook("gcsdvc-validate", repo, *THREE)
    assert res.returncode == 2
    errors = res.stderr.splitlines()
    assert any("vision/params.yaml:" in e and "'descripton'" in e for e in errors), errors
    assert "error: nlp/params.yaml: no 'resources' list" in errors
    assert any(e.startswith("error: empty/params.yaml:3:") and "YAML" in e for e in errors)

    # Without --manifests-only, validate still reports a non-manifest as such.
    (repo / "nlp" / "params.yaml").write_text(DVC_PARAMS)
    res = cli("validate", "nlp/params.yaml", cwd=repo)
    assert (res.returncode, res.stderr) == (2, "error: nlp/params.yaml: no 'resources' list\n")


def test_status_hook_without_a_manifest(repo: Path, tmp_path: Path) -> None:
    # A DVC repository whose params.yaml holds DVC params only, or none at all.
    (repo / "params.yaml").write_text(DVC_PARAMS)
    for hook_id in ("gcsdvc-status", "gcsdvc-status-strict"):
        res = hook(hook_id, repo)
        assert res.returncode == 0, res.stderr
        assert res.stdout == (
            "gcsdvc status: params.yaml is not a gcsdvc manifest (no 'resources' or 'gcsdvc' "
            "key); nothing to check\n"
        )
    (repo / "params.yaml").unlink()
    res = hook("gcsdvc-status", repo)
    assert res.returncode == 0
    assert res.stdout == "gcsdvc status: no manifest at params.yaml; nothing to check\n"
    # A git repository with DVC projects in folders only (dvc init --subdir).
    plain = tmp_path / "plain"
    plain.mkdir()
    run("git", "init", "-q", cwd=plain)
    res = hook("gcsdvc-status", plain)
    assert res.returncode == 0
    assert res.stdout.startswith("gcsdvc status: no DVC repository here")


def test_status_hook_in_a_fresh_clone(repo: Path, tmp_path: Path, seeded: str) -> None:
    """Committed stages without their data (a fresh clone) pass, saying so; the strict hook
    and a real problem (a local edit) fail, saying what they found."""
    write_manifest(repo, [entry(seeded), entry(seeded, name="exp2", destination="exp2")])
    cli("sync", "-q", "exp1", cwd=repo, check=True)  # exp2 not synced by anyone yet
    run("git", "add", "-A", cwd=repo)
    run("git", "commit", "-qm", "synced", cwd=repo)
    clone = tmp_path / "clone"
    run("git", "clone", "-q", str(repo), str(clone), cwd=tmp_path)

    res = hook("gcsdvc-status", clone)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "exp1" in res.stdout and "exp2" in res.stdout
    assert res.stdout.splitlines()[-1] == (
        "pre-commit: passes: 6 file(s) only not synced yet "
        "('gcsdvc sync' or 'dvc pull' brings them; --strict fails on them)"
    )
    res = hook("gcsdvc-status-strict", clone)
    assert res.returncode == 1
    assert "3 missing" in res.stdout and "not synced" in res.stdout

    # In the original: exp1 synced, exp2 not; a local edit fails either hook.
    assert hook("gcsdvc-status", repo).returncode == 0
    edited = next((repo / "data").rglob("metrics.json"))
    edited.write_text("{}")
    res = hook("gcsdvc-status", repo)
    assert res.returncode == 1
    assert "modified" in res.stdout


def test_status_hook_fails_on_a_broken_manifest(repo: Path) -> None:
    (repo / "params.yaml").write_text("resources:\n  - bucket: BAD_NAME\n")
    res = hook("gcsdvc-status", repo)
    assert res.returncode == 2
    assert res.stderr.startswith("error: params.yaml")
