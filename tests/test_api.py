"""The Python API (gcsdvc.path, open, resources) on a synced repository."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import cli

import gcsdvc as api
from gcsdvc import GcsdvcError, ModifiedError, NotSyncedError, UnknownResourceError


def write_manifest(root: Path, bucket: str) -> None:
    resources = [
        {
            "name": name,
            "bucket": bucket,
            "blob": "runs",
            "subblob": name,
            "files": ["metrics.json", "plots/loss.csv"],
            "destination": f"runs/{name}",
            "description": f"the {name} run",
        }
        for name in ("lr-0.1", "lr-0.01")
    ]
    (root / "params.yaml").write_text(yaml.safe_dump({"resources": resources}))


@pytest.fixture
def project(repo: Path, bucket: str, put: Any) -> Path:
    """Two experiments in the manifest; only lr-0.1 is synced."""
    for name in ("lr-0.1", "lr-0.01"):
        put(f"{bucket}/runs/{name}/metrics.json", f'{{"run": "{name}"}}')
        put(f"{bucket}/runs/{name}/plots/loss.csv", "epoch,loss\n1,0.5\n")
    write_manifest(repo, bucket)
    assert cli("sync", "lr-0.1", cwd=repo).returncode == 0
    return repo


def test_path_open_and_resources(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    local = project / "data" / "runs" / "lr-0.1" / "plots" / "loss.csv"
    assert api.path("lr-0.1", "plots/loss.csv") == local
    with api.open("lr-0.1", "metrics.json", "r", encoding="utf-8") as fobj:
        assert fobj.read() == '{"run": "lr-0.1"}'
    with pytest.raises(ValueError, match="read-only"):
        api.open("lr-0.1", "metrics.json", "wb")

    first, second = api.resources()
    assert (first.name, first.description) == ("lr-0.1", "the lr-0.1 run")
    assert first.source.startswith("gs://") and first.source.endswith("/runs/lr-0.1")
    assert first.folder == project / "data" / "runs" / "lr-0.1"
    assert first.paths == (first.folder / "metrics.json", local)
    assert second.files == ("metrics.json", "plots/loss.csv")

    # Outside the repository the manifest must be named.
    monkeypatch.chdir(project.parent)
    with pytest.raises(GcsdvcError, match=r"no DVC repository found.*or pass manifest=PATH$"):
        api.resources()
    assert api.path("lr-0.1", "metrics.json", manifest=project / "params.yaml").is_file()


def test_errors_name_the_problem(project: Path) -> None:
    with pytest.raises(UnknownResourceError, match=r"unknown experiment 'lr-0\.2'; did you mean"):
        api.path("lr-0.2", "metrics.json")
    with pytest.raises(GcsdvcError, match=r"no file 'metric\.json'; did you mean 'metrics\.json'"):
        api.path("lr-0.1", "metric.json")
    with pytest.raises(NotSyncedError, match=r"is not synced yet; run: gcsdvc sync lr-0\.01$"):
        api.path("lr-0.01", "metrics.json")

    local = api.path("lr-0.1", "metrics.json")
    local.unlink()
    local.write_text('{"run": "LR-0.1"}')  # same size, other bytes
    with pytest.raises(ModifiedError, match=r"differs from .*metrics\.json\.dvc \(md5 "):
        api.path("lr-0.1", "metrics.json")
    local.unlink()
    with pytest.raises(NotSyncedError, match=r"is not on disk; run: gcsdvc sync lr-0\.1$"):
        api.path("lr-0.1", "metrics.json")


def test_sync_on_demand(project: Path) -> None:
    path = api.path("lr-0.01", "plots/loss.csv", sync=True)
    assert path.read_text() == "epoch,loss\n1,0.5\n"
    assert (path.parent.parent / "metrics.json.dvc").is_file()  # the whole experiment
    api.path("lr-0.1", "metrics.json").unlink()
    assert api.path("lr-0.1", "metrics.json", sync=True).is_file()  # restored


def test_import_is_light() -> None:
    code = (
        "import sys, gcsdvc; "
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('dvc', 'dvc_data', 'gcsfs')]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout == "[]\n"


def test_manifest_is_read_again_only_when_it_changes(project: Path) -> None:
    from gcsdvc import api as module

    api.path("lr-0.1", "metrics.json")
    manifest_file = project / "params.yaml"
    cached = module._MANIFESTS[manifest_file][1]
    api.path("lr-0.1", "plots/loss.csv")
    assert module._MANIFESTS[manifest_file][1] is cached  # not parsed again
    text = manifest_file.read_text().replace("the lr-0.1 run", "the fast run")
    manifest_file.write_text(text)
    assert api.resources()[0].description == "the fast run"  # the change is seen


def test_storage_installs_one_log_handler() -> None:
    import logging

    from gcsdvc.storage import Storage

    Storage()
    before = list(logging.getLogger("gcsfs").handlers)
    Storage()
    Storage()
    assert logging.getLogger("gcsfs").handlers == before


def test_path_answers_the_new_truth_when_things_change_between_calls(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One survey per process, keyed by what it read: the manifest's stat, the hash and
    stage caches' stats and each file's and stage's stat. A change to any is seen."""
    from gcsdvc import survey

    real_survey = survey.survey_local
    full: list[str] = []

    def counted(*args: Any) -> Any:
        full.extend(local for _, _, local in args[1])
        return real_survey(*args)

    monkeypatch.setattr(survey, "survey_local", counted)
    synced = project / "data" / "runs" / "lr-0.1"
    assert api.path("lr-0.1", "metrics.json") == synced / "metrics.json"
    assert api.path("lr-0.1", "plots/loss.csv") == synced / "plots" / "loss.csv"
    assert full == []  # the caches a sync leaves vouch for both: no full check

    # The manifest changes: another destination, not synced there.
    manifest_file = project / "params.yaml"
    before = manifest_file.read_text()
    manifest_file.write_text(before.replace("destination: runs/lr-0.1", "destination: moved"))
    with pytest.raises(NotSyncedError, match=r"data/moved/metrics\.json is not synced yet"):
        api.path("lr-0.1", "metrics.json")
    manifest_file.write_text(before)
    assert api.path("lr-0.1", "metrics.json") == synced / "metrics.json"

    # A stage changes (another md5 recorded): the file no longer is its bytes (which the
    # DVC cache keeps: not an edit of the user's, a sync replaces it).
    stage_file = synced / "metrics.json.dvc"
    stage_text = stage_file.read_text()
    recorded = yaml.safe_load(stage_text)["outs"][0]["md5"]
    stage_file.write_text(stage_text.replace(recorded, "f" * 32))
    with pytest.raises(NotSyncedError, match=r"metrics\.json is not the recorded version \(md5 "):
        api.path("lr-0.1", "metrics.json")
    stage_file.write_text(stage_text)
    assert api.path("lr-0.1", "metrics.json") == synced / "metrics.json"

    # Another sync between calls: its files are vouched for by the caches it rewrote.
    with pytest.raises(NotSyncedError, match=r"is not synced yet; run: gcsdvc sync lr-0\.01$"):
        api.path("lr-0.01", "metrics.json")
    assert cli("sync", "lr-0.01", cwd=project).returncode == 0
    full.clear()
    assert api.path("lr-0.01", "metrics.json").read_text() == '{"run": "lr-0.01"}'
    assert full == []
