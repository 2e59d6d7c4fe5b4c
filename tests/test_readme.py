"""The README's Python examples, run as written against a synced copy of the sample manifest."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from gcsdvc.cli import main
from gcsdvc.demo import BUCKET, sample, seed_runs

ROOT = Path(__file__).parents[1]


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_readme_python_examples_run(
    repo: Path, gcs: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed = tmp_path / "seed"
    seed_runs(seed)
    if not gcs.exists(BUCKET):
        gcs.mkdir(BUCKET)
    for path in (seed / BUCKET).rglob("*"):
        if path.suffix in (".json", ".csv"):  # what the manifest lists; not the checkpoints
            gcs.pipe(f"{BUCKET}/{path.relative_to(seed / BUCKET).as_posix()}", path.read_bytes())
    gcs.invalidate_cache()
    (repo / "params.yaml").write_text(sample("params.yaml"), encoding="utf-8")
    result = CliRunner().invoke(main, ["sync", "-q", "mnist-lr-0.1", "mnist-lr-0.01"])
    assert result.exit_code == 0, result.output

    blocks = python_blocks((ROOT / "README.md").read_text(encoding="utf-8"))
    assert blocks
    for block in blocks:
        scope: dict[str, Any] = {}
        exec(compile(block, "README.md", "exec"), scope)
    assert scope["metrics"]["lr"] == 0.1
    assert len(scope["history"]) == 20
    assert (repo / "data" / "mnist" / "lr-0.001" / "history.csv").is_file()  # sync=True
    assert "mnist-lr-0.001" in capsys.readouterr().out
