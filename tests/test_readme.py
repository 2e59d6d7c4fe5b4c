"""The README as a user manual: its Python examples run as written against a synced copy of the
sample manifest, it names every command, stays short and leaves dated figures to benchmarks/."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from gcsdvc.cli import main
from gcsdvc.demo import sample
from gcsdvc.emulator import BUCKET, seed_runs

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


def test_readme_names_every_command_with_an_example() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = [name for name, cmd in main.commands.items() if not cmd.hidden]
    assert "sync" in commands
    examples = re.findall(r"^\$ gcsdvc ([\w-]+)", readme, flags=re.M)
    assert [name for name in commands if name not in examples] == []
    assert [name for name in commands if f"**`gcsdvc {name}" not in readme] == []


def test_readme_is_a_short_manual_without_figures() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 300
    # Dated benchmark figures live in benchmarks/RESULTS.md only, not in the README or docs/.
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text(encoding="utf-8")
        assert not re.findall(r"\b20\d\d-\d\d-\d\d\b", text), path.name
        assert not re.findall(r"\|[^|\n]*\d s \|", text), path.name  # a table of timings
    assert re.search(
        r"^## 20\d\d-\d\d-\d\d",
        (ROOT / "benchmarks" / "RESULTS.md").read_text(encoding="utf-8"),
        flags=re.M,
    )


def test_the_docs_the_readme_names_exist_and_ship_in_the_sdist() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    named = set(re.findall(r"\b(docs/[\w-]+\.md|benchmarks/RESULTS\.md)\b", readme))
    assert {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")} <= named
    assert [name for name in named if not (ROOT / name).is_file()] == []
    shipped = (ROOT / "MANIFEST.in").read_text(encoding="utf-8")
    assert "recursive-include docs *.md" in shipped
    assert re.search(r"^recursive-include benchmarks .*\*\.md", shipped, flags=re.M)
