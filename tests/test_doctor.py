"""``gcsdvc doctor``: every topic a sync depends on, and each problem with its fix."""

from __future__ import annotations

import json
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from conftest import Ran, cli, dvc_main
from gcslayer import GcsLayer
from test_rm import FILES, MANIFEST

from gcsdvc.doctor import doctor

PINNED = (
    "no default remote in .dvc/config; pin_generations: auto, so stages pinned: "
    "'dvc pull' fetches each object's generation from the bucket"
)


def versions() -> str:
    named = [f"{name} {metadata.version(name)}" for name in ("gcsdvc", "dvc", "dvc-gs", "gcsfs")]
    return ", ".join([*named, f"Python {platform.python_version()}"])


def test_doctor_reports_every_topic_of_a_synced_repository(
    repo: Path, bucket: str, put: Any, layer: GcsLayer
) -> None:
    for name, text in FILES.items():
        put(f"{bucket}/{name}", text)
    (repo / "params.yaml").write_text(MANIFEST.format(bucket=bucket))
    cli("sync", cwd=repo, check=True)
    res = cli("doctor", cwd=repo)
    assert (res.returncode, res.stderr) == (0, "")
    assert res.stdout.splitlines() == [
        versions(),
        f"repository:   {repo} (git and DVC)",
        "manifest:     params.yaml (2 entries)",
        "data folder:  data/ (3 stage(s))",
        f"DVC remote:   {PINNED}",
        f"credentials:  none needed: the emulator at {layer.url} (STORAGE_EMULATOR_HOST)",
        f"storage:      answers for gs://{bucket}",
        "no problem found",
    ]
    doc = json.loads(cli("doctor", "--json", cwd=repo).stdout)
    assert doc["ok"] is True
    assert doc["versions"]["Python"] == platform.python_version()
    assert doc["checks"][1] == {
        "topic": "manifest",
        "found": "params.yaml (2 entries)",
        "problem": None,
        "fix": None,
    }
    assert cli("doctor", "-q", cwd=repo) == Ran(0, "", "")

    report = doctor(repo / "params.yaml")  # the library call the command prints
    assert report.ok
    topics = ["repository", "manifest", "data folder", "DVC remote", "credentials", "storage"]
    assert [(c.topic, c.problem) for c in report.checks] == [(t, None) for t in topics]


def test_doctor_names_each_problem_with_its_fix(
    repo: Path, bucket: str, put: Any, tmp_path: Path
) -> None:
    put(f"{bucket}/mnist/lr-0.1/metrics.json", "{}")
    (repo / "params.yaml").write_text(MANIFEST.format(bucket=bucket))
    dvc_main("remote", "add", "--local", "-d", "mine", str(tmp_path / "store"), cwd=repo)
    key = tmp_path / "key.json"
    res = cli("doctor", cwd=repo, env={"GOOGLE_APPLICATION_CREDENTIALS": str(key)})
    assert res.returncode == 1
    lines = res.stdout.splitlines()
    assert lines[3:] == [
        "data folder:  data/ (not made yet)",
        "DVC remote:   no default remote in .dvc/config; pin_generations: auto, so stages "
        "pinned: 'dvc pull' fetches each object's generation from the bucket",
        "              problem: the default DVC remote 'mine' is set in .dvc/config.local only, "
        "so the stages stay pinned and 'dvc push' skips them",
        "              fix: make it the team's default with 'dvc remote default mine' (and "
        "'dvc remote add' if only you have it), commit .dvc/config, then run 'gcsdvc sync'",
        f"credentials:  GOOGLE_APPLICATION_CREDENTIALS={key}",
        f"              problem: GOOGLE_APPLICATION_CREDENTIALS={key}: no such file",
        "              fix: point it at a service-account key file, or unset it and run "
        "'gcloud auth application-default login'",
        "storage:      does not answer",
        f"              problem: GOOGLE_APPLICATION_CREDENTIALS={key}: no such file",
        "              fix: point it at a service-account key file, or unset it and run "
        "'gcloud auth application-default login'",
    ]
    assert res.stderr == "3 problem(s) found\n"

    res = cli("doctor", "-q", cwd=repo, env={"GOOGLE_APPLICATION_CREDENTIALS": str(key)})
    assert (res.returncode, res.stdout) == (1, "")
    assert res.stderr.splitlines()[0] == (
        "error: DVC remote: the default DVC remote 'mine' is set in .dvc/config.local only, so "
        "the stages stay pinned and 'dvc push' skips them; make it the team's default with "
        "'dvc remote default mine' (and 'dvc remote add' if only you have it), commit "
        ".dvc/config, then run 'gcsdvc sync'"
    )


def test_doctor_outside_a_repository_with_storage_down(tmp_path: Path) -> None:
    down = "http://127.0.0.1:9"
    res = cli("doctor", cwd=tmp_path, env={"STORAGE_EMULATOR_HOST": down})
    assert res.returncode == 1
    assert res.stdout.splitlines()[1:] == [
        "repository:   none",
        f"              problem: no DVC repository at or above {tmp_path}",
        "              fix: run 'git init && dvc init' there, or pass --manifest PATH",
        f"credentials:  none needed: the emulator at {down} (STORAGE_EMULATOR_HOST)",
        "storage:      does not answer",
        f"              problem: cannot reach Cloud Storage at {down}: Connection refused",
        "              fix: check the network and any proxy (HTTPS_PROXY), or "
        "STORAGE_EMULATOR_HOST for an emulator",
    ]
    assert res.stderr == "2 problem(s) found\n"


def test_doctor_points_an_invalid_manifest_to_validate(repo: Path, emulator: Any) -> None:
    res = cli("doctor", cwd=repo)
    assert res.returncode == 1
    assert res.stdout.splitlines()[2:5] == [
        "manifest:     " + str(repo / "params.yaml"),
        "              problem: params.yaml: manifest not found",
        "              fix: 'gcsdvc add gs://BUCKET/PATH' or 'gcsdvc discover gs://BUCKET/PATH "
        "--add' creates it",
    ]
    (repo / "params.yaml").write_text("resources:\n- name: a\n  bucket: B\n")
    res = cli("doctor", cwd=repo)
    assert res.returncode == 1
    manifest = res.stdout.splitlines()[2:5]
    assert manifest[0] == "manifest:     " + str(repo / "params.yaml")
    assert manifest[1].startswith("              problem: params.yaml:")
    assert manifest[1].endswith(" more)")
    assert manifest[2] == "              fix: 'gcsdvc validate' lists every problem"
    assert res.stdout.splitlines()[-1] == (
        "storage:      reachable (no bucket asked: no valid manifest names one)"
    )
