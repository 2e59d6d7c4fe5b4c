"""Authoring: glob patterns in ``files``, ``gcsdvc add``, ``gcsdvc discover``, migrate merges.

Pure logic is tested in process and table-driven; the commands run in process with
click's CliRunner against the emulator, with real DVC in a temporary repository.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from conftest import conforms, dvc_main, without_git_hint, without_progress, write_manifest

import gcsdvc as api
from gcsdvc import ManifestError
from gcsdvc.authoring import (
    Source,
    new_entry,
    parse_url,
    source_of,
    unique_destination,
    unique_name,
)
from gcsdvc.cli import main
from gcsdvc.errors import UsageError
from gcsdvc.manifest import match_files, parse_manifest, pattern_problem, pattern_root
from gcsdvc.stages import ImportStage

# -- the pattern matcher --------------------------------------------------------------

NAMES = [
    "metrics.json",
    "history.csv",
    "eval/test.csv",
    "eval/deep/val.csv",
    "eval/notes.txt",
    "ckpt/model-1.bin",
    "ckpt/model-12.bin",
    "q?.txt",
    "a[1].txt",
]


@pytest.mark.parametrize(
    ("pattern", "matched"),
    [
        ("*.json", ["metrics.json"]),
        ("*.csv", ["history.csv"]),  # '*' stays within one folder
        ("eval/*.csv", ["eval/test.csv"]),
        ("**/*.csv", ["eval/deep/val.csv", "eval/test.csv", "history.csv"]),  # also at the top
        ("eval/**", ["eval/deep/val.csv", "eval/notes.txt", "eval/test.csv"]),
        ("eval/**/*.csv", ["eval/deep/val.csv", "eval/test.csv"]),
        ("ckpt/model-?.bin", ["ckpt/model-1.bin"]),
        ("ckpt/model-[0-9]*.bin", ["ckpt/model-1.bin", "ckpt/model-12.bin"]),
        ("ckpt/model-[!1]*.bin", []),
        ("*/*.txt", ["eval/notes.txt"]),
        ("q?.txt", ["q?.txt"]),  # the object literally called 'q?.txt'
        ("a[1].txt", ["a[1].txt"]),
        ("*.parquet", []),
    ],
)
def test_patterns_match_object_paths(pattern: str, matched: list[str]) -> None:
    assert match_files([pattern], NAMES) == {pattern: matched}


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("*.json", None),
        ("eval/[abc].csv", None),
        ("[]].txt", None),
        ("x**.csv", "uses '**' inside a name"),
        ("eval/**x/a", "uses '**' inside a name"),
        ("run[1.csv", "has a '[' without its closing ']'"),
        ("[!]", "has a '[' without its closing ']'"),
    ],
)
def test_pattern_syntax(pattern: str, problem: str | None) -> None:
    found = pattern_problem(pattern)
    assert found is None if problem is None else found is not None and found.startswith(problem)


@pytest.mark.parametrize(
    ("pattern", "root"),
    [("*.json", ""), ("eval/*.csv", "eval"), ("a/b/**/x", "a/b"), ("a/*/b/*.c", "a"), ("x", "")],
)
def test_pattern_root_is_the_fixed_leading_folder(pattern: str, root: str) -> None:
    assert pattern_root(pattern) == root


def test_validate_checks_pattern_syntax() -> None:
    text = yaml.safe_dump(
        {"resources": [{"bucket": "bk1", "blob": "p", "destination": "d", "files": ["x[1.csv"]}]}
    )
    with pytest.raises(ManifestError) as info:
        parse_manifest(text, Path("params.yaml"), Path("."))
    assert info.value.problems == [
        "params.yaml:5: resources[0] (d) field 'files': 'x[1.csv' has a '[' without its closing ']'"
    ]


# -- entry defaults ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "source"),
    [
        ("gs://b1/mnist/lr-0.1", Source("b1", "mnist", "lr-0.1")),
        ("gs://b1/mnist/lr-0.1/", Source("b1", "mnist", "lr-0.1")),
        ("gs://b1/a/b/run 7", Source("b1", "a/b", "run 7")),
        ("gs://b1/mnist", Source("b1", "mnist", "")),
    ],
)
def test_source_of_url(url: str, source: Source) -> None:
    assert source_of(url) == source


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("b1/mnist", "is not a gs:// URL"),
        ("gs://b1", "names no folder"),
        ("gs://b1/", "names no folder"),
        ("gs:///x", "names no folder"),
        ("gs://b1/a//b", "has an empty folder name"),
    ],
)
def test_bad_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_url(url)


@pytest.mark.parametrize(
    ("source", "taken", "name"),
    [
        (Source("b", "mnist", "lr-0.1"), set(), "lr-0.1"),
        (Source("b", "mnist", "lr-0.1"), {"lr-0.1"}, "mnist-lr-0.1"),
        (Source("b", "x/mnist", "lr-0.1"), {"lr-0.1", "mnist-lr-0.1"}, "x-mnist-lr-0.1"),
        (Source("b", "mnist", "lr-0.1"), {"lr-0.1", "mnist-lr-0.1", "lr-0.1-2"}, "lr-0.1-3"),
        (Source("b", "mnist", ""), set(), "mnist"),
    ],
)
def test_default_names_are_unique_and_readable(source: Source, taken: set[str], name: str) -> None:
    assert unique_name(source, taken) == name


@pytest.mark.parametrize(
    ("taken", "destination"),
    [
        (set(), "runs/r1"),
        ({"runs/r2", "runs/r10"}, "runs/r1"),  # a longer name is no folder of it
        ({"runs/r1"}, "b2/runs/r1"),  # the same run in a second bucket
        ({"runs"}, "b2/runs/r1"),  # inside a taken folder
        ({"runs/r1/eval"}, "b2/runs/r1"),  # holding a taken folder
        ({"runs/r1", "b2/runs/r1"}, "b2/runs/r1-2"),
        ({"runs/r1", "b2/runs/r1", "b2/runs/r1-2"}, "b2/runs/r1-3"),
    ],
)
def test_default_destinations_are_unique_as_names_are(taken: set[str], destination: str) -> None:
    assert unique_destination(Source("b2", "runs", "r1"), taken) == destination


def test_add_names_the_new_entry_and_the_option_when_a_destination_clashes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No line of the file is cited that the file does not have; --destination is offered."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".dvc").mkdir()
    manifest = tmp_path / "params.yaml"
    manifest.write_text(
        "resources:\n  - name: a\n    bucket: b1x\n    blob: runs\n    subblob: r1\n"
        "    destination: runs/r1\n    files: [x.txt]\n"
    )
    before = manifest.read_text()
    same = ["add", "gs://b2x/runs/r1", "-f", "x.txt", "--no-check"]
    res = cli(*same, "-n")
    assert res.exit_code == 0, res.output
    assert "  destination: b2x/runs/r1\n" in res.stdout  # made unique, as the name is
    res = cli(*same, "--destination", "runs/r1")
    assert (res.exit_code, res.stdout) == (2, "")
    assert res.stderr == (
        "error: params.yaml (new entry): resources[1] (r1): saves to 'data/runs/r1/x.txt', as "
        "resources[0] (a) does; pass --destination FOLDER to save it elsewhere\n"
    )
    assert manifest.read_text() == before


def test_new_entry_defaults_and_options() -> None:
    source = Source("b1", "mnist", "lr-0.1")
    assert new_entry(source, []) == {
        "name": "lr-0.1",
        "bucket": "b1",
        "blob": "mnist",
        "subblob": "lr-0.1",
        "destination": "mnist/lr-0.1",
        "skip_if_exist": True,
    }
    assert new_entry(
        Source("b1", "mnist"),
        ["mnist"],
        files=["*.json", "a.csv", "*.json"],
        name="mine",
        destination="x/y",
        description="d",
        follow_upstream=True,
    ) == {
        "name": "mine",
        "bucket": "b1",
        "blob": "mnist",
        "files": ["*.json", "a.csv"],
        "destination": "x/y",
        "skip_if_exist": False,
        "description": "d",
    }


# -- the commands, against the emulator --------------------------------------------------

PARAMS = """\
# DVC params for dvc.yaml; gcsdvc keeps its entries below.
train:
  lr: 0.01        # tuned by hand
  name: 'cnn'
  tags: ["a", 'b']

resources:
  - name: "run-1"
    bucket: {bucket}
    blob: 'mnist'
    subblob: "run-1"
    files:
      - metrics.json
    destination: mnist/run-1
    description: "première"

# evaluation settings
evaluate:
  split: "test"
"""


@pytest.fixture
def runs(bucket: str, put: Any) -> str:
    """Three runs under gs://BUCKET/mnist/, each a metrics JSON, a CSV and nested eval files."""
    for run in ("run-1", "run-2", "run-3"):
        base = f"{bucket}/mnist/{run}"
        put(f"{base}/metrics.json", json.dumps({"run": run}))
        put(f"{base}/history.csv", f"epoch,loss\n1,{len(run)}\n")
        put(f"{base}/eval/test.csv", "a,b\n")
        put(f"{base}/eval/deep/val.csv", "c,d\n")
    return bucket


@pytest.fixture
def params(repo: Path, runs: str) -> Path:
    path = repo / "params.yaml"
    path.write_text(PARAMS.format(bucket=runs), encoding="utf-8")
    return path


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_add_appends_one_entry_and_keeps_every_other_byte(params: Path, runs: str) -> None:
    before = params.read_text(encoding="utf-8")
    url = f"gs://{runs}/mnist/run-2"
    result = cli("add", url, "-f", "*.json", "-f", "eval/**/*.csv", "-d", "deuxième: lr 0.1")
    assert (result.exit_code, result.stdout, result.stderr) == (
        0,
        f"added run-2: {url}\nwrote params.yaml; 'gcsdvc sync run-2' downloads\n",
        "",
    )
    entry = (
        '  - name: "run-2"\n'
        f"    bucket: {runs}\n"
        "    blob: 'mnist'\n"
        '    subblob: "run-2"\n'
        "    files:\n"
        "      - '*.json'\n"
        "      - eval/**/*.csv\n"
        "    destination: mnist/run-2\n"
        "    skip_if_exist: true\n"
        '    description: "deuxième: lr 0.1"\n'
    )
    cut = before.index("\n# evaluation")
    assert params.read_text(encoding="utf-8") == before[:cut] + entry + before[cut:]


def test_add_sync_json_prints_one_document(params: Path, runs: str) -> None:
    for argv in (
        ["add", f"gs://{runs}/mnist/run-2", "-f", "*.json", "--sync", "--json"],
        ["--json", "add", f"gs://{runs}/mnist/run-3", "-f", "*.json", "--sync"],
    ):
        result = cli(*argv)
        assert result.exit_code == 0, result.output
        doc = conforms(argv, result.stdout)  # one document: json.loads refuses a second
        assert (doc["added"], doc["written"]) == ([argv[argv.index("add") + 1][-5:]], True)
    assert (params.parent / "data" / "mnist" / "run-3" / "metrics.json").is_file()


def test_add_sync_then_globs_pick_up_new_objects(params: Path, runs: str, put: Any) -> None:
    repo = params.parent
    result = cli("add", f"gs://{runs}/mnist/run-2", "-f", "*.json", "-f", "eval/**", "--sync")
    assert result.exit_code == 0, result.output
    assert without_git_hint(result.stdout)[-2:] == [
        "run-2  add 3",
        "sync: 3 added, 0 unchanged; 24 bytes downloaded in <t>, 0 retries",
    ]
    local = repo / "data" / "mnist" / "run-2"
    assert sorted(p.relative_to(local).as_posix() for p in local.rglob("*.dvc")) == [
        "eval/deep/val.csv.dvc",
        "eval/test.csv.dvc",
        "metrics.json.dvc",
    ]
    stage = yaml.safe_load((local / "eval" / "test.csv.dvc").read_text())
    assert stage["meta"]["gcsdvc"]["file"] == "eval/test.csv"

    # A new matching object is added on the next sync; a changed one is kept (skip_if_exist).
    put(f"{runs}/mnist/run-2/eval/extra.csv", "new\n")
    put(f"{runs}/mnist/run-2/metrics.json", "changed upstream")
    result = cli("sync", "run-2")
    assert without_git_hint(result.stdout) == [
        "run-2  add 1, unchanged 3",
        "sync: 1 added, 3 unchanged; 4 bytes downloaded in <t>, 0 retries",
    ]
    assert (local / "eval" / "extra.csv").read_text() == "new\n"
    assert json.loads((local / "metrics.json").read_text()) == {"run": "run-2"}
    # DVC agrees: the new file is current, the kept one has an update available.
    assert json.loads(dvc_main("status", "--json", cwd=repo).stdout) == {
        "data/mnist/run-2/metrics.json.dvc": [
            {"changed deps": {f"gs://{runs}/mnist/run-2/metrics.json": "update available"}}
        ]
    }

    # The matched files are listed files for status, list, show, which and the API.
    online = json.loads(cli("status", "run-2", "--json").stdout)["resources"][0]["files"]
    assert [(f["path"].rsplit("/", 1)[-1], f["state"]) for f in online] == [
        ("metrics.json", "changed-upstream"),
        ("val.csv", "ok"),
        ("extra.csv", "ok"),
        ("test.csv", "ok"),
    ]
    status = json.loads(cli("status", "run-2", "--offline", "--json").stdout)
    (res,) = status["resources"]
    assert [f["path"] for f in res["files"]] == [
        "data/mnist/run-2/metrics.json",
        "data/mnist/run-2/eval/deep/val.csv",
        "data/mnist/run-2/eval/extra.csv",
        "data/mnist/run-2/eval/test.csv",
    ]
    assert res["state"] == "ok"
    assert "ok  4 file(s)" in cli("list").stdout
    assert "  ok  data/mnist/run-2/eval/extra.csv" in cli("show", "run-2").stdout
    which = cli("which", "data/mnist/run-2/eval/extra.csv").stdout
    assert "  experiment:  run-2\n" in which
    assert api.path("run-2", "eval/extra.csv") == local / "eval" / "extra.csv"
    (exp,) = [e for e in api.resources() if e.name == "run-2"]
    assert exp.files == ("metrics.json", "eval/deep/val.csv", "eval/extra.csv", "eval/test.csv")

    # Deleted upstream: kept, not orphaned.
    from gcsdvc.storage import Storage

    Storage().fs.rm(f"{runs}/mnist/run-2/eval/extra.csv")
    result = cli("sync", "run-2", "-v")
    assert result.stdout.splitlines()[0] == "run-2  unchanged 4"
    assert "    unchanged data/mnist/run-2/eval/extra.csv  <- " in result.stdout


def test_a_pattern_matching_nothing_fails_and_others_still_sync(repo: Path, runs: str) -> None:
    entries = [
        {"name": "good", "bucket": runs, "blob": "mnist", "subblob": "run-1",
         "files": ["*.json"], "destination": "good"},
        {"name": "bad", "bucket": runs, "blob": "mnist", "subblob": "run-2",
         "files": ["history.csv", "*.parquet"], "destination": "bad"},
    ]  # fmt: skip
    write_manifest(repo, entries)
    result = cli("sync")
    assert result.exit_code == 1
    assert without_git_hint(result.stdout) == [
        "good  add 1",
        "bad   add 1, failed 1",
        "sync: 2 added, 0 unchanged, 1 failed; 31 bytes downloaded in <t>, 0 retries",
    ]
    assert without_progress(result.stderr) == [
        f"failed: bad: gs://{runs}/mnist/run-2/*.parquet: pattern '*.parquet' matched nothing "
        f"in gs://{runs}/mnist/run-2/",
    ]
    assert (repo / "data" / "good" / "metrics.json").exists()
    assert (repo / "data" / "bad" / "history.csv").exists()
    offline = json.loads(cli("status", "bad", "--offline", "--json").stdout)
    assert [(f["path"], f["state"], f["note"]) for f in offline["resources"][0]["files"]] == [
        ("data/bad/history.csv", "ok", ""),
        ("data/bad/*.parquet", "not-synced", "no synced file matches pattern '*.parquet' yet"),
    ]


@pytest.mark.parametrize(
    ("args", "code", "error"),
    [
        (
            ["gs://{b}/mnist/run-1", "--name", "other", "-f", "metrics.json"],
            2,
            "error: params.yaml (new entry): resources[1] (other): saves to "
            "'data/mnist/run-1/metrics.json', as resources[0] (run-1) does; pass --destination "
            "FOLDER to save it elsewhere",
        ),
        (
            ["gs://{b}/mnist/run-2", "--name", "run-1"],
            2,
            "error: params.yaml (new entry): resources[1] (run-1): name 'run-1' is also used by "
            "resources[0]",
        ),
        (
            ["gs://{b}/mnist/run-9"],
            1,
            "error: gs://{b}/mnist/run-9/: no objects under this prefix; did you mean 'run-3', "
            "'run-2', 'run-1'? (the manifest is unchanged)",
        ),
        (
            ["gs://{b}/mnist/run-2", "-f", "metrics.jsn", "-f", "history.csv"],
            1,
            "error: gs://{b}/mnist/run-2/metrics.jsn: no such object; did you mean "
            "'metrics.json'? (the manifest is unchanged)",
        ),
        (
            ["gs://{b}/mnist/run-2", "-f", "eval/*.jsn"],
            1,
            "error: gs://{b}/mnist/run-2/eval/*.jsn: pattern matched nothing (the manifest is "
            "unchanged)",
        ),
        (["gs://nosuch-bucket-x/mnist/run-2"], 1, "error: bucket 'nosuch-bucket-x' not found"),
        (["mnist/run-2"], 2, "error: 'mnist/run-2' is not a gs:// URL (expected gs://BUCKET/PATH)"),
        (
            ["gs://{b}/mnist/run-2", "-f", "x[1.csv"],
            2,
            "error: params.yaml (new entry): resources[1] (run-2) field 'files': 'x[1.csv' has a "
            "'[' without its closing ']'",
        ),
    ],
)
def test_add_refusals_change_nothing(
    params: Path, runs: str, args: list[str], code: int, error: str
) -> None:
    before = params.read_bytes()
    result = cli("add", *(a.format(b=runs) for a in args))
    assert (result.exit_code, result.stdout) == (code, "")
    assert result.stderr.splitlines() == [error.format(b=runs)]
    assert params.read_bytes() == before


def test_add_dry_run_and_no_check(params: Path, runs: str) -> None:
    before = params.read_bytes()
    result = cli("add", "gs://offline-bucket/exp/r1", "--dry-run", "--no-check", "-f", "a.csv")
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == (
        "would add to params.yaml:\n"
        "- name: r1\n"
        "  bucket: offline-bucket\n"
        "  blob: exp\n"
        "  subblob: r1\n"
        "  files:\n"
        "  - a.csv\n"
        "  destination: exp/r1\n"
        "  skip_if_exist: true\n"
        "dry run: nothing written\n"
    )
    assert params.read_bytes() == before
    result = cli("add", "gs://offline-bucket/exp/r1", "--no-check", "--follow-upstream")
    assert result.exit_code == 0, result.output
    assert params.read_text().endswith(
        '  - name: "r1"\n    bucket: offline-bucket\n    blob: \'exp\'\n    subblob: "r1"\n'
        "    destination: exp/r1\n    skip_if_exist: false\n\n# evaluation settings\n"
        'evaluate:\n  split: "test"\n'
    )


def test_add_creates_a_missing_manifest(repo: Path, runs: str) -> None:
    result = cli("add", f"gs://{runs}/mnist/run-3", "-f", "metrics.json", "--name", "日本")
    assert result.exit_code == 0, result.output
    assert (repo / "params.yaml").read_text(encoding="utf-8") == (
        "resources:\n"
        "- name: 日本\n"
        f"  bucket: {runs}\n"
        "  blob: mnist\n"
        "  subblob: run-3\n"
        "  files:\n"
        "  - metrics.json\n"
        "  destination: mnist/run-3\n"
        "  skip_if_exist: true\n"
    )


def test_discover_lists_runs_and_marks_the_tracked_ones(params: Path, runs: str, put: Any) -> None:
    url = f"gs://{runs}/mnist"
    result = cli("discover", url)
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == (
        "run-1  tracked (run-1)\n"
        "run-2  new\n"
        "run-3  new\n"
        f"3 run(s), 1 tracked, 2 new; 'gcsdvc discover {url} --add' adds them\n"
    )
    stats = json.loads(cli("discover", url, "--stats", "--json").stdout)
    assert stats["added"] == [] and stats["written"] is False
    first = stats["runs"][0]
    assert {k: first[k] for k in ("name", "source", "tracked_by", "objects", "size")} == {
        "name": "run-1",
        "source": f"{url}/run-1",
        "tracked_by": ["run-1"],
        "objects": 4,
        "size": len(json.dumps({"run": "run-1"})) + len("epoch,loss\n1,5\n") + 4 + 4,
    }
    assert first["updated"].startswith("20")
    # At the top of a bucket each folder is a run; one holding a tracked run counts as tracked.
    put(f"{runs}/other/x.txt", "x")
    top = cli("discover", f"gs://{runs}/", "--add", "--dry-run")
    assert top.stdout.splitlines()[:3] == [
        "mnist  tracked (run-1)",
        "other  new",
        "2 run(s), 1 tracked, 1 new",
    ]
    assert f"- name: other\n  bucket: {runs}\n  blob: other\n  destination: other\n" in top.stdout
    missing = cli("discover", f"gs://{runs}/mnsit")
    assert (missing.exit_code, missing.stderr) == (
        1,
        f"error: gs://{runs}/mnsit/: no objects under this prefix; did you mean 'mnist'?\n",
    )


def test_discover_add_appends_the_new_runs_in_one_write(params: Path, runs: str) -> None:
    before = params.read_text(encoding="utf-8")
    url = f"gs://{runs}/mnist"
    result = cli("discover", url, "--add", "-f", "*.json", "-d", "MNIST {run}", "--sync")
    assert result.exit_code == 0, result.output
    assert without_git_hint(result.stdout) == [
        "run-1  tracked (run-1)",
        "run-2  new",
        "run-3  new",
        "3 run(s), 1 tracked, 2 new",
        f"added run-2: {url}/run-2",
        f"added run-3: {url}/run-3",
        "run-2  add 1",
        "run-3  add 1",
        "sync: 2 added, 0 unchanged; 32 bytes downloaded in <t>, 0 retries",
    ]
    after = params.read_text(encoding="utf-8")
    cut = before.index("\n# evaluation")
    assert after.startswith(before[:cut]) and after.endswith(before[cut:])
    added = yaml.safe_load(after)["resources"][1:]
    assert [(e["name"], e["subblob"], e["description"], e["files"]) for e in added] == [
        ("run-2", "run-2", "MNIST run-2", ["*.json"]),
        ("run-3", "run-3", "MNIST run-3", ["*.json"]),
    ]
    again = cli("discover", url, "--add", "--json")
    assert json.loads(again.stdout)["added"] == []
    assert params.read_text(encoding="utf-8") == after


def test_discover_add_refuses_when_a_pattern_misses_in_one_run(
    params: Path, runs: str, put: Any
) -> None:
    put(f"{runs}/mnist/run-4/other.txt", "x")
    before = params.read_bytes()
    result = cli("discover", f"gs://{runs}/mnist", "--add", "-f", "*.json")
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: gs://{runs}/mnist/run-4/*.json: pattern matched nothing (the manifest is "
        "unchanged)\n"
    )
    assert params.read_bytes() == before


def test_an_empty_run_made_in_the_console_is_skipped_not_a_block(
    params: Path, runs: str, put: Any
) -> None:
    """A run folder holding only placeholders ('run-4/', 'run-4/eval/') has no objects yet."""
    put(f"{runs}/mnist/run-4/", b"")
    put(f"{runs}/mnist/run-2/eval/", b"")
    stats = json.loads(cli("discover", f"gs://{runs}/mnist", "--stats", "--json").stdout)
    counted = {run["name"]: run["objects"] for run in stats["runs"]}
    assert (counted["run-2"], counted["run-4"]) == (4, 0)  # placeholders are no files
    result = cli("discover", f"gs://{runs}/mnist", "--add")
    assert result.exit_code == 0, result.output
    assert (
        result.stderr
        == f"skipped run-4: no objects under gs://{runs}/mnist/run-4/ yet; not added\n"
    )
    assert [line for line in result.stdout.splitlines() if line.startswith("added ")] == [
        f"added run-2: gs://{runs}/mnist/run-2",
        f"added run-3: gs://{runs}/mnist/run-3",
    ]
    names = [e["name"] for e in yaml.safe_load(params.read_text(encoding="utf-8"))["resources"]]
    assert names == ["run-1", "run-2", "run-3"]


# -- migrate into an existing params.yaml -------------------------------------------------

OLD = "resources = [{'bucket': 'bk1', 'blob': 'p', 'subblob': 's', 'destination': 'd'}]\n"


def test_migrate_merges_into_params_and_refuses_to_clobber(repo: Path) -> None:
    (repo / "old.py").write_text(OLD)
    params = repo / "params.yaml"
    dvc_params = "# pipeline params\ntrain:\n  lr: 0.1   # hand-tuned\n  name: 'x'\n"
    params.write_text(dvc_params)
    result = cli("migrate", "old.py", "-o", "params.yaml")
    assert (result.exit_code, result.stderr) == (0, "wrote 1 experiment(s) to params.yaml\n")
    merged = params.read_text()
    assert merged == (
        dvc_params + "# Resources manifest for gcsdvc, converted from old.py.\n"
        "# One entry per experiment: 'gcsdvc validate' checks it, 'gcsdvc sync' downloads it.\n"
        "resources:\n- bucket: bk1\n  blob: p\n  subblob: s\n  destination: d\n"
    )

    refused = cli("migrate", "old.py", "-o", "params.yaml")
    assert (refused.exit_code, refused.stderr) == (
        2,
        "error: params.yaml already has a 'resources' list; pass --force to replace it (its "
        "other keys and comments are kept)\n",
    )
    assert params.read_text() == merged

    params.write_text(merged.replace("destination: d\n", "destination: d\n# tail\nmore: 1\n"))
    (repo / "old.py").write_text(OLD.replace("'d'", "'e'"))
    forced = cli("migrate", "old.py", "-o", "params.yaml", "--force")
    assert forced.exit_code == 0, forced.output
    assert params.read_text() == merged.replace(
        "destination: d\n", "destination: e\n# tail\nmore: 1\n"
    )


# -- expansion without storage: from the synced stages -------------------------------------


def _stage(url: str, file: str) -> ImportStage:
    raw = {"deps": [{"path": f"{url}/{file}"}], "meta": {"gcsdvc": {"file": file}}}
    return ImportStage.from_dict(raw)


def _manifest(*entries: dict[str, Any]) -> Any:
    resources = [{"bucket": "bk1", "blob": "runs", "skip_if_exist": True, **e} for e in entries]
    return parse_manifest(yaml.safe_dump({"resources": resources}), Path("params.yaml"), Path("/r"))


@pytest.mark.parametrize(
    ("files", "synced", "expanded", "failures"),
    [
        (["*.json"], ["a.json", "b.json", "c.csv"], ("a.json", "b.json"), []),
        (["x.csv", "*.csv"], ["c.csv", "x.csv"], ("x.csv", "c.csv"), []),  # listed first, once
        (["**"], ["a.txt", "eval/"], ("a.txt",), []),  # a folder placeholder is no file
        (["*.json"], [], (), ["no synced file matches pattern '*.json' yet"]),
        (["**"], ["ok.txt", "bad.dvc"], ("ok.txt",), ["matched by '**', but DVC cannot"]),
        (["*"], ["ok", "x#1", "dvc.yaml"], ("ok",), ["matched by '*', but", "matched by '*', but"]),
        (["*.csv"], ["other.csv"], (), ["matches 'other.csv', which another entry saves to"]),
    ],
)
def test_offline_expansion_uses_the_synced_stages(
    files: list[str], synced: list[str], expanded: tuple[str, ...], failures: list[str]
) -> None:
    from gcsdvc.expand import expand_patterns

    manifest = _manifest(
        {"name": "e", "subblob": "r1", "files": files, "destination": "d"},
        {"name": "other", "subblob": "r2", "files": ["other.csv"], "destination": "d"},
    )
    url = "gs://bk1/runs/r1"
    stages = {f"data/d/{f}": _stage(url, f) for f in synced}
    stages["data/elsewhere"] = _stage("gs://bk1/runs/r9", "a.json")  # another prefix's stage
    result = expand_patterns(manifest, manifest.resources[:1], None, stages)
    assert result.selected[0].files == expanded
    assert result.manifest.resources[0].files == expanded
    assert result.manifest.resources[1] == manifest.resources[1]
    messages = [f.message for f in result.failures]
    assert len(messages) == len(failures)
    assert all(m.startswith(f) for m, f in zip(messages, failures, strict=True)), messages


def test_api_path_syncs_a_file_a_pattern_matches(repo: Path, runs: str) -> None:
    write_manifest(
        repo,
        [{"name": "g", "bucket": runs, "blob": "mnist", "subblob": "run-3",
          "files": ["eval/*.csv"], "destination": "g"}],
    )  # fmt: skip
    with pytest.raises(api.NotSyncedError, match="not synced yet; run: gcsdvc sync g"):
        api.path("g", "eval/test.csv")
    with pytest.raises(api.UnknownResourceError, match=r"has no file 'metrics\.json'"):
        api.path("g", "metrics.json")
    assert api.path("g", "eval/test.csv", sync=True).read_text() == "a,b\n"
