"""The CLI's shared behaviour: options, JSON, progress, pre-commit, completion, output details."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import warnings
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from click.testing import CliRunner
from conftest import cli, dvc_main, entry, run, timeless, write_manifest
from faultproxy import FaultProxy, Faults

from gcsdvc.archive import Method
from gcsdvc.cli import main, quiet_google_warnings
from gcsdvc.manifest import parse_manifest
from gcsdvc.plan import Action, Item, Plan
from gcsdvc.progress import PlainProgress, Tally, TerminalProgress, make_reporter
from gcsdvc.render import elapsed, human_size, pad, plan_lines

GOOD = {
    "resources": [
        {
            "name": "exp1",
            "bucket": "bkt",
            "blob": "runs",
            "subblob": "exp1",
            "files": ["metrics.json", "loss.csv"],
            "destination": "exp1",
        }
    ]
}


def invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


# -- progress ----------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_plain_progress_prints_a_line_per_interval() -> None:
    out, clock = io.StringIO(), Clock()
    progress = PlainProgress(out, interval=5, clock=clock)
    progress.start(3, 3 << 20)
    clock.now += 1
    progress.advance(nbytes=1 << 20)  # within the interval: nothing
    progress.advance(files=1)
    clock.now += 4
    progress.advance(nbytes=1 << 20)  # 5 s since the last line
    clock.now += 5
    progress.advance(files=2, nbytes=1 << 20)
    progress.finish()
    assert out.getvalue().splitlines() == [
        "downloading: 0/3 files, 0/3.00M",
        "progress: 1/3 files, 2.00M/3.00M, 410k/s",
        "progress: 3/3 files, 3.00M/3.00M, 307k/s",
        "done: 3/3 files, 3.00M/3.00M, 307k/s, 10s",
    ]


def test_plain_progress_of_archiving_counts_server_side_and_streamed_apart(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # the bar follows the terminal's width: a wide one
    out, clock = io.StringIO(), Clock()
    progress = PlainProgress(out, interval=5, clock=clock)
    progress.start(7, 20 << 20, "archiving")
    clock.now += 5
    progress.advance(files=1, nbytes=2 << 20, how=Method.SERVER)
    progress.advance(files=1, nbytes=4 << 20, how=Method.SERVER)
    progress.advance(files=1, nbytes=8 << 20, how=Method.STREAM)
    clock.now += 5
    progress.advance(files=1, nbytes=1 << 20, how=Method.PRESENT)
    progress.advance(files=1, nbytes=1 << 20)  # a failed copy
    progress.finish()
    assert out.getvalue().splitlines() == [
        "archiving: 0/7 objects (0 server-side 0, 0 streamed 0), 0/20.0M",
        "progress: 1/7 objects (1 server-side 2.00M, 0 streamed 0), 2.00M/20.0M, 410k/s",
        "progress: 4/7 objects (2 server-side 6.00M, 1 streamed 8.00M, 1 already there), "
        "15.0M/20.0M, 1.50M/s",
        "done: 5/7 objects (2 server-side 6.00M, 1 streamed 8.00M, 1 already there, 1 failed), "
        "16.0M/20.0M, 1.60M/s, 10s",
    ]
    bar_out = io.StringIO()
    bar = TerminalProgress(bar_out, mininterval=0)
    bar.start(2, 3 << 20, "archiving")
    bar.advance(files=1, nbytes=1 << 20, how=Method.SERVER)
    bar.advance(files=1, nbytes=2 << 20, how=Method.STREAM)
    bar.finish()
    last = bar_out.getvalue().split("\r")[-1]
    assert last.startswith("Archiving: 100%")
    assert "2/2 objects (1 server-side 1.00M, 1 streamed 2.00M)" in last, last


def test_plain_progress_with_unknown_total_bytes() -> None:
    out, clock = io.StringIO(), Clock()
    progress = PlainProgress(out, interval=5, clock=clock)
    progress.start(2, 0)  # a whole-prefix import: sizes are not known in advance
    clock.now += 2
    progress.advance(files=2, nbytes=4096)
    progress.finish()
    progress.finish()  # a second finish prints nothing
    assert out.getvalue().splitlines() == [
        "downloading: 0/2 files, 0",
        "done: 2/2 files, 4.00k, 2.00k/s, 2.0s",
    ]


def test_terminal_progress_shows_files_bytes_rate_and_stays() -> None:
    out = io.StringIO()
    progress = TerminalProgress(out, mininterval=0)
    progress.start(2, 2048)
    progress.advance(files=2)
    progress.advance(nbytes=2048)
    progress.finish()
    last = out.getvalue().split("\r")[-1]
    assert last.endswith("\n")  # the bar's last state stays on the terminal
    assert last.startswith("Downloading: 100%") and "2/2 files" in last
    # One unit style: the plain lines' (DVC's `dvc du`), never tqdm's "kB" or "MB/s".
    assert f"{human_size(2048)}/{human_size(2048)}" in last
    assert re.search(r", \d+(\.\d+)?[kMGT]?/s,", last), last


def interrupt(progress: PlainProgress | TerminalProgress) -> None:
    try:
        raise KeyboardInterrupt
    finally:
        progress.finish()  # as the transfer's ``finally`` calls it under Ctrl-C


def test_an_interrupted_sync_ends_its_progress_with_interrupted_not_done() -> None:
    out, clock = io.StringIO(), Clock()
    plain = PlainProgress(out, interval=5, clock=clock)
    plain.start(454, 1 << 20)
    clock.now += 2
    plain.advance(files=128, nbytes=1 << 19)
    with pytest.raises(KeyboardInterrupt):
        interrupt(plain)
    assert out.getvalue().splitlines()[-1] == "interrupted: 128/454 files, 512k/1.00M, 256k/s, 2.0s"
    out = io.StringIO()
    bar = TerminalProgress(out, mininterval=0)
    bar.start(454, 1 << 20)
    bar.advance(files=128, nbytes=1 << 19)
    with pytest.raises(KeyboardInterrupt):
        interrupt(bar)
    last = out.getvalue().split("\r")[-1]
    assert last.startswith("Interrupted:  50%") and "128/454 files" in last and last.endswith("\n")


def test_the_tally_counts_every_phase_with_or_without_a_display() -> None:
    clock = Clock()
    for display in (None, PlainProgress(io.StringIO(), clock=clock)):
        tally = Tally(display, clock=clock)
        tally.start(2, 100)
        tally.advance(files=2, nbytes=100)
        tally.finish()
        tally.start(1, 0)  # a whole-prefix import
        tally.advance(files=1, nbytes=50)
        tally.finish()
        clock.now += 3
        assert (tally.files, tally.nbytes, tally.elapsed) == (3, 150, 3.0)


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0.04, "0.0s"), (1.25, "1.2s"), (9.96, "10.0s"), (12.4, "12s"), (59.6, "1m00s"),
     (185, "3m05s"), (3725, "1h02m")],
)  # fmt: skip
def test_elapsed_time_reads_as_rclone_prints_it(seconds: float, shown: str) -> None:
    assert elapsed(seconds) == shown


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_reporter_choice() -> None:
    assert make_reporter(quiet=True, stream=Tty()).display is None
    assert isinstance(make_reporter(quiet=False, stream=Tty()).display, TerminalProgress)
    plain = make_reporter(quiet=False, interval=2.5, stream=io.StringIO()).display
    assert isinstance(plain, PlainProgress) and plain.interval == 2.5


# -- shared options, env var, validate ---------------------------------------


def test_every_command_takes_the_output_options() -> None:
    assert isinstance(main, click.Group)
    for name, command in main.commands.items():
        flags = {opt for param in command.params for opt in getattr(param, "opts", [])}
        assert {"-q", "-v", "--debug"} <= flags, name
        if name not in ("migrate", "merge-manifest"):  # merge-manifest: git's interface
            assert {"--manifest", "--json"} <= flags or name == "migrate", name


def test_validate_files_and_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("params.yaml").write_text(yaml.safe_dump(GOOD))
    Path("bad.yaml").write_text("resources:\n  - name: x\n")
    res = invoke("validate", "params.yaml")
    assert (res.exit_code, res.output) == (0, "params.yaml: 1 experiment(s), 2 file(s): OK\n")
    res = invoke("validate", "params.yaml", "bad.yaml")
    assert res.exit_code == 2
    assert res.stdout == "params.yaml: 1 experiment(s), 2 file(s): OK\n"
    assert res.stderr.startswith("error: bad.yaml:2: ")
    res = invoke("validate", "params.yaml", "bad.yaml", "--json")
    assert res.exit_code == 2
    doc = json.loads(res.stdout)
    assert doc["ok"] is False
    good, bad = doc["manifests"]
    assert good == {
        "path": str(tmp_path / "params.yaml"),
        "ok": True,
        "problems": [],
        "warnings": [],
        "experiment_count": 1,
        "file_count": 2,
        "prefix_count": 0,
    }
    assert bad["ok"] is False and bad["problems"] and bad["experiment_count"] is None
    assert invoke("validate", "-q", "params.yaml").output == ""


def test_manifest_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(GOOD))
    res = invoke("validate", env={"GCSDVC_MANIFEST": "m.yaml"})
    assert res.output == "m.yaml: 1 experiment(s), 2 file(s): OK\n"
    res = invoke("validate")  # no repository, no variable
    assert res.exit_code == 2
    assert "or pass --manifest PATH (or set GCSDVC_MANIFEST)" in res.stderr
    # A real process reads the variable too.
    done = subprocess.run(
        [sys.executable, "-m", "gcsdvc", "validate"],
        cwd=tmp_path,
        env={**os.environ, "GCSDVC_MANIFEST": str(tmp_path / "m.yaml")},
        capture_output=True,
        text=True,
    )
    assert (done.returncode, done.stdout) == (0, "m.yaml: 1 experiment(s), 2 file(s): OK\n")


def test_debug_before_or_after_the_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    show = ["show", "x", "-m", "missing.yaml"]
    for args in (["--debug", *show], [*show, "--debug"]):
        res = CliRunner().invoke(main, args)
        assert type(res.exception).__name__ == "ManifestError"
    res = CliRunner().invoke(main, show)
    assert (res.exit_code, res.stderr) == (
        2,
        "error: missing.yaml: manifest not found; 'gcsdvc add gs://BUCKET/PATH' or "
        "'gcsdvc discover gs://BUCKET/PATH --add' creates it\n",
    )


def test_experiment_names_complete(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    doc = {
        "resources": [
            dict(GOOD["resources"][0], name=n, destination=n) for n in ("exp1", "exp2", "base")
        ]
    }
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(doc))
    for words in ("gcsdvc sync ex", "gcsdvc status -m m.yaml ex", "gcsdvc show ex"):
        env = {
            "_GCSDVC_COMPLETE": "bash_complete",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(words.split()) - 1),
            "GCSDVC_MANIFEST": "m.yaml",
        }
        done = subprocess.run(  # as the shell runs it: the gcsdvc script, the variables set
            [str(Path(sys.executable).with_name("gcsdvc"))],
            cwd=tmp_path,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
        )
        assert done.stdout.splitlines() == ["plain,exp1", "plain,exp2"], words


def test_google_future_warnings_are_hidden() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_google_warnings()
        warnings.warn_explicit("old python", FutureWarning, "x.py", 1, module="google.auth")
        warnings.warn_explicit("ours", FutureWarning, "x.py", 1, module="gcsdvc.cli")
    assert [str(w.message) for w in caught] == ["ours"]


def test_status_outside_a_dvc_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(GOOD))
    res = invoke("status", "-m", "params.yaml", "--offline")
    assert res.exit_code == 2
    assert res.stderr == (
        f"error: {tmp_path.name and '.'} is not in a DVC repository; "
        "run 'git init && dvc init' there\n"
    )


# -- output details ----------------------------------------------------------


def test_sizes_as_dvc_prints_them() -> None:
    from dvc.utils.humanize import naturalsize

    for n in (0, 77, 1023, 1024, 1536, 10_540, 300 << 20, (3 << 30) + 5, 5 << 40):
        assert human_size(n) == naturalsize(n), n


def test_tables_align_by_display_width(tmp_path: Path) -> None:
    names = ["学習率", "exp-1", "🚀run"]
    doc = {"resources": [dict(GOOD["resources"][0], name=n, destination=n) for n in names]}
    manifest = parse_manifest(yaml.safe_dump(doc, allow_unicode=True), tmp_path / "p", tmp_path)
    items = [Item(Action.ADD, f"data/{r.name}/a", r, "metrics.json") for r in manifest.resources]
    lines = list(plan_lines(Plan(pinned=False, items=items)))
    assert lines == ["学習率  add 1", "exp-1   add 1", "🚀run   add 1"]
    assert pad("学習", 5) == "学習 "


# -- end to end --------------------------------------------------------------


def test_piped_progress_shows_before_the_sync_ends(
    repo: Path, seeded: str, proxy: FaultProxy
) -> None:
    gate = threading.Event()
    proxy.faults = Faults(hold_media=gate)
    write_manifest(repo, [entry(seeded)])
    proc = subprocess.Popen(
        [sys.executable, "-m", "gcsdvc", "sync", "--progress-interval", "0.5"],
        cwd=repo,
        env={**os.environ, "STORAGE_EMULATOR_HOST": proxy.url},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()
        assert first.startswith("downloading: 0/3 files, 0/")
        assert proc.poll() is None  # the downloads are held: the sync cannot have ended
    finally:
        gate.set()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert err.splitlines()[-1].startswith("done: 3/3 files, ")
    lines = timeless(out)
    assert lines[0] == "exp1  add 3"
    # Held answers may be tried again (the floor's gcsfs gives up waiting sooner): any count.
    assert re.fullmatch(
        r"sync: 3 added, 0 unchanged; 35 bytes downloaded in <t>, \d+ retr(y|ies)", lines[1]
    )


def test_sync_json_and_did_you_mean(repo: Path, seeded: str) -> None:
    write_manifest(repo, [entry(seeded, files=["file1", "metric.json"])])
    res = CliRunner().invoke(main, ["sync", "--json"])
    assert res.exit_code == 1
    doc = json.loads(res.stdout)
    assert set(doc) == {
        "schema", "ok", "dry_run", "done", "bytes", "elapsed", "items", "failures", "removed",
        "untracked", "to_git_add", "staged", "warnings", "errors", "repaired", "saved", "retries",
        "archived",
    }  # fmt: skip
    assert doc["archived"] is None  # no entry archived into the DVC remote
    assert (doc["schema"], doc["bytes"]) == (1, 10)
    assert isinstance(doc["elapsed"], float) and doc["elapsed"] >= 0
    assert (doc["removed"], doc["untracked"]) == ([], [])
    assert (doc["errors"], doc["repaired"]) == ([], [])
    assert (doc["ok"], doc["dry_run"]) == (False, False)
    assert doc["done"]["add"] == 1
    (failure,) = doc["failures"]
    assert failure["message"].endswith("metric.json; did you mean 'metrics.json'?")
    assert [i["action"] for i in doc["items"]] == ["add", "failed"]
    assert any(p.endswith("file1.dvc") for p in doc["to_git_add"])


def test_autostage(repo: Path, seeded: str) -> None:
    dvc_main("config", "core.autostage", "true", cwd=repo)
    (repo / "notes.txt").write_text("v1\n")
    run("git", "add", "notes.txt", ".dvc/config", cwd=repo)
    run("git", "commit", "-qm", "notes", cwd=repo)
    (repo / "notes.txt").write_text("v2\n")  # the user's own change: never staged by us
    write_manifest(
        repo,
        [
            entry(seeded, files=["file1"]),
            entry(seeded, name="exp2", destination="exp2", files=["file1"]),
        ],
    )
    res = CliRunner().invoke(main, ["sync"])
    assert res.exit_code == 0, res.output
    assert "git add" not in res.stdout
    staged = run("git", "diff", "--cached", "--name-only", cwd=repo).stdout.splitlines()
    assert sum(p.endswith("file1.dvc") for p in staged) == 2
    assert any(p.endswith(".gitignore") for p in staged)
    assert "notes.txt" not in staged
    run("git", "commit", "-qm", "synced", cwd=repo)

    write_manifest(repo, [entry(seeded, files=["file1"])])
    assert CliRunner().invoke(main, ["sync", "--prune", "-q"]).exit_code == 0
    staged = run("git", "diff", "--cached", "--name-status", cwd=repo).stdout.splitlines()
    assert [line.split("\t")[0] for line in staged if line.endswith("file1.dvc")] == ["D"]
    assert not any(line.endswith("notes.txt") for line in staged)


def test_no_gitignore_in_a_no_scm_repo(tmp_path: Path, seeded: str, monkeypatch: Any) -> None:
    root = tmp_path / "noscm"
    root.mkdir()
    dvc_main("init", "--no-scm", "-q", cwd=root)
    monkeypatch.chdir(root)
    write_manifest(root, [entry(seeded)])
    res = CliRunner().invoke(main, ["sync"])
    assert res.exit_code == 0, res.output
    assert "git add" not in res.stdout
    assert not list(root.rglob(".gitignore"))
    assert len([p for p in root.rglob("*.dvc") if p.is_file()]) == 3


def test_no_line_for_what_a_root_rule_ignores(repo: Path, seeded: str) -> None:
    (repo / ".gitignore").write_text("*.json\n")
    write_manifest(repo, [entry(seeded)])
    assert CliRunner().invoke(main, ["sync", "-q"]).exit_code == 0
    folder = next(p.parent for p in repo.rglob("metrics.json.dvc"))
    assert (folder / ".gitignore").read_text() == "/file1\n"
    untracked = run("git", "status", "--porcelain", "-uall", cwd=repo).stdout.splitlines()
    assert not [line for line in untracked if line.endswith(("/metrics.json", "/file1"))]


def test_whole_prefix_shows_our_progress_and_none_of_dvcs(
    repo: Path, bucket: str, put: Any
) -> None:
    put(f"{bucket}/project1/whole/a.txt", "a\n")
    put(f"{bucket}/project1/whole/sub/b.txt", "bb\n")
    whole = entry(bucket, name="whole", subblob="whole", destination="whole")
    del whole["files"]
    gone = entry(bucket, name="gone", subblob="nothing-here", destination="gone")
    del gone["files"]
    write_manifest(repo, [whole])
    res = run(sys.executable, "-m", "gcsdvc", "sync", cwd=repo, check=False)
    assert res.returncode == 0, res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 2 and lines[0] == "downloading: 0/2 files, 0/5"
    assert lines[1].startswith("done: 2/2 files, 5/5, ")
    assert "Importing" not in res.stdout + res.stderr
    assert timeless(res.stdout)[:2] == [
        "whole  add 1",
        "sync: 1 added, 0 unchanged; 5 bytes downloaded in <t>, 0 retries",
    ]
    (repo / "data" / "whole" / "a.txt").unlink()
    write_manifest(repo, [whole, gone])
    res = run(sys.executable, "-m", "gcsdvc", "sync", "-q", cwd=repo, check=False)
    assert (res.returncode, res.stdout) == (1, "")
    assert res.stderr.splitlines() == [
        f"failed: gone: gs://{bucket}/project1/nothing-here: object not found: nothing below "
        f"gs://{bucket}/project1/nothing-here/"
    ]
    again = cli("sync", cwd=repo)
    assert again.stdout.splitlines()[:3] == [
        "whole  unchanged 1",
        "gone   failed 1",
        "sync: 1 unchanged, 1 failed",
    ]


def test_unauthenticated_gets_a_credentials_hint(
    repo: Path, seeded: str, proxy: FaultProxy
) -> None:
    proxy.faults = Faults(fail_first=1_000_000, status=401)
    write_manifest(repo, [entry(seeded, files=["file1"])])
    res = run(
        sys.executable, "-m", "gcsdvc", "sync", "-q",
        cwd=repo, check=False, env={"STORAGE_EMULATOR_HOST": proxy.url},
    )  # fmt: skip
    assert res.returncode == 1
    (line,) = res.stderr.splitlines()
    assert line.startswith("failed: exp1: gs://")
    assert "401" in line
    assert line.endswith(
        "run 'gcloud auth application-default login', or set "
        "GOOGLE_APPLICATION_CREDENTIALS to a service-account key file"
    )


def test_a_manifest_that_is_no_regular_file_is_refused_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "params.yaml"
    os.mkfifo(fifo)
    res = invoke("validate", str(fifo))
    assert res.exit_code == 2
    assert res.stderr == f"error: {fifo}: not a regular file\n"  # outside the working folder


@pytest.mark.parametrize(
    ("layout", "hint"),
    [
        ("", "run 'git init && dvc init' there"),
        (".", "run 'dvc init' there"),
        ("..", "run 'dvc init' in {top}, the top of its git repository"),
    ],
    ids=["no git", "git here", "git above"],
)
def test_the_init_hint_fits_where_git_is(tmp_path: Path, layout: str, hint: str) -> None:
    from gcsdvc.manifest import init_hint

    here = tmp_path / "sub"
    here.mkdir()
    if layout:
        ((here / layout).resolve() / ".git").mkdir()
    assert init_hint(here) == hint.format(top=tmp_path)


def test_validate_lists_the_problems_in_line_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A settings problem at the end of the file comes last, as the file reads."""
    monkeypatch.chdir(tmp_path)
    Path("m.yaml").write_text(
        "resources:\n"
        "  - name: a\n"
        "    bucket: bkt\n"
        "    blob: runs\n"
        "    files: [x.txt, x.txt]\n"
        "gcsdvc:\n"
        "  data_dir: ../out\n"
    )
    res = invoke("validate", "m.yaml")
    assert (res.exit_code, res.stdout) == (2, "")
    assert res.stderr.splitlines() == [
        "error: m.yaml:2: resources[0] (a) field 'destination': is required",
        "error: m.yaml:5: resources[0] (a) field 'files': 'x.txt' is listed twice",
        "error: m.yaml:7: gcsdvc.data_dir: has a '..' segment, which would leave the data folder "
        "(got '../out')",
    ]


def test_a_reader_that_stops_early_is_no_error(repo: Path) -> None:
    """`gcsdvc list | head -1`: exit 0 and nothing on standard error, as `cat` would."""
    entries = [
        {"name": f"e{n}", "bucket": "bkt", "blob": "runs", "subblob": f"r{n}",
         "files": ["x.txt"], "destination": f"r{n}"}
        for n in range(3000)
    ]  # fmt: skip
    write_manifest(repo, entries)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gcsdvc", "list"],
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline() == "e0     not synced  1 file(s)\n"
    proc.stdout.close()  # as `head -1` does
    with proc.stderr:
        assert (proc.wait(timeout=120), proc.stderr.read()) == (0, "")


def test_ctrl_c_ends_a_sync_with_interrupted_not_done(
    repo: Path, seeded: str, proxy: FaultProxy
) -> None:
    gate = threading.Event()
    proxy.faults = Faults(hold_media=gate)
    write_manifest(repo, [entry(seeded)])
    proc = subprocess.Popen(
        [sys.executable, "-m", "gcsdvc", "sync"],
        cwd=repo,
        env={**os.environ, "STORAGE_EMULATOR_HOST": proxy.url},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        assert proc.stderr.readline().startswith("downloading: 0/3 files, 0/")
        assert proxy.faults.held.wait(60)  # a download is under way, and held
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        gate.set()
    assert proc.returncode == 130, err
    assert out == ""
    last, message = err.splitlines()
    assert re.fullmatch(r"interrupted: 0/3 files, 0/35, \d+\.\ds", last), last  # the time: shape
    assert message == "interrupted; run the same command again to finish"


def _hint(root: Path, paths: list[str]) -> list[str]:
    from gcsdvc.render import git_hint_lines
    from gcsdvc.sync import SyncResult

    for path in paths:
        if "gone" not in path:
            (root / path).parent.mkdir(parents=True, exist_ok=True)
    result = SyncResult(Plan(pinned=True), to_git_add=paths)
    lines = list(git_hint_lines(result, root))
    assert lines[4:] == ["", "To enable auto staging, run:", "", "\tdvc config core.autostage true"]
    assert lines[0] == lines[2] == ""
    return [lines[1], lines[3]]


@pytest.mark.parametrize(
    ("paths", "hint"),
    [
        (  # few: the files, as DVC prints them
            ["data/a/x.dvc", "data/a/.gitignore"],
            ["To track the changes with git, run:", "\tgit add data/a/x.dvc data/a/.gitignore"],
        ),
        (  # 454 files of two experiments: their folders
            [f"data/{e}/f{n:03}.dvc" for e in ("a", "b") for n in range(227)],
            [
                "To track the changes with git (454 files in 2 folder(s)), run:",
                "\tgit add data/a data/b",
            ],
        ),
        (  # nested folders: the outermost
            [f"data/a/{n}/{m}/f.dvc" for n in range(30) for m in range(3)] + ["data/a/.gitignore"],
            ["To track the changes with git (91 files in 1 folder(s)), run:", "\tgit add data/a"],
        ),
        (  # folders too many to list: the one holding them all
            [f"data/exp-{n:03}/f.dvc" for n in range(40)],
            ["To track the changes with git (40 files in 1 folder(s)), run:", "\tgit add data"],
        ),
        (  # a pruned folder: its removal is staged from the folder above
            [f"data/gone-{n:02}/f{m:02}.dvc" for n in range(2) for m in range(20)],
            ["To track the changes with git (40 files in 1 folder(s)), run:", "\tgit add data"],
        ),
    ],
    ids=["files", "folders", "nested", "common folder", "pruned"],
)  # fmt: skip
def test_the_git_hint_is_one_short_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, paths: list[str], hint: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    assert _hint(tmp_path, paths) == hint
    assert len(hint[1]) <= 100
