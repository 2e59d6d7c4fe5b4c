"""Converting the old Python-list manifest to YAML: faithful, and never running the file."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import cli

from gcsdvc import ManifestError
from gcsdvc.manifest import parse_manifest
from gcsdvc.migrate import migrate_source

# The example of /work/shared/context/original-workflow.md, byte for byte: tab-indented,
# trailing commas, quotes inside paths, and the misspelt key.
ORIGINAL = (
    "resources = [\n"
    "\t{\n"
    '\t\t"bucket": "bucket1",\n'
    '\t\t"blob": "project1",\n'
    '\t\t"subblob": "experiment1-yyyymmd\'d\'",\n'
    '\t\t"files": [\n'
    '\t\t\t"parent_dir/file1",\n'
    '\t\t\t"file2",\n'
    '\t\t\t"file3",\n'
    "\t\t],\n"
    '\t\t"destination": "path/to/save/experiment1/yyyymmd\'d\'",\n'
    '\t\t"skil_if_exist": True,\n'
    '\t\t"description": "(what was varied in this run, in the user\'s language)",\n'
    "\t},\n"
    "]\n"
)

ORIGINAL_YAML = """\
# Resources manifest for gcsdvc, converted from old_resources.py.
# One entry per experiment: 'gcsdvc validate' checks it, 'gcsdvc sync' downloads it.
resources:
- bucket: bucket1
  blob: project1
  subblob: experiment1-yyyymmd'd'
  files:
  - parent_dir/file1
  - file2
  - file3
  destination: path/to/save/experiment1/yyyymmd'd'
  skip_if_exist: true
  description: (what was varied in this run, in the user's language)
"""

# A bigger old manifest as researchers wrote them: several entries, both quote styles,
# Japanese descriptions, multi-line strings, comments, and code around the list.
LARGER = """\
# -*- coding: utf-8 -*-
import os  # the old download script imported things; nothing here may run

PROJECT = "project1"

resources = [
\t{
\t\t"bucket": "bucket1",
\t\t"blob": "project1",
\t\t"subblob": "experiment1-yyyymmd'd'",
\t\t"files": [
\t\t\t"parent_dir/file1",  # the main output
\t\t\t"file2",
\t\t],
\t\t"destination": "path/to/save/experiment1/yyyymmd'd'",
\t\t"skil_if_exist": True,
\t\t"description": "学習率を0.1から0.01に変更した",
\t},
    {
        'name': 'exp2',
        'bucket': 'bucket1',
        'blob': 'project1',
        'subblob': 'experiment2 "quoted" dir',
        'files': ['with space.csv', "it's.txt", 'résumé.json', 'データ/結果.npy',],
        'destination': 'path/to/save/experiment2',
        'skil_if_exist': False,
        'description': '''複数行の
説明: "引用" と 'quote' # not a comment
    indented: line\twith tab  ''',
    },
\t{"bucket": "bucket-3", "blob": "p3", "destination": "d3", "description": "- starts like a list"},
\t{
\t\t"bucket": "bucket-3", "blob": "p3", "subblob": "yes", "destination": "d4",
\t\t"description": 'null', "files": ("a", "b"),
\t},
]

if __name__ == "__main__":
    os.system("touch PWNED")
"""


def renamed(value: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The old entries as the YAML manifest should hold them: key renamed, tuples as lists."""

    def plain(item: Any) -> Any:
        return [plain(i) for i in item] if isinstance(item, list | tuple) else item

    return [
        {("skip_if_exist" if k == "skil_if_exist" else k): plain(v) for k, v in entry.items()}
        for entry in value
    ]


def old_list(source: str) -> list[dict[str, Any]]:
    """``resources`` of an old manifest, read the safe way (for comparison only)."""
    tree = ast.parse(source)
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and getattr(stmt.targets[0], "id", None) == "resources":
            value = ast.literal_eval(stmt.value)
            assert isinstance(value, list)
            return value
    raise AssertionError("no resources")


def refused(source: str, filename: str = "old.py") -> list[str]:
    with pytest.raises(ManifestError) as info:
        migrate_source(source, filename)
    assert info.value.exit_code == 2
    assert all("\n" not in problem for problem in info.value.problems)
    return info.value.problems


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty current directory: whatever the old file might create would land here."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


# -- faithful conversion -------------------------------------------------------------


def test_original_example_converts_exactly() -> None:
    assert migrate_source(ORIGINAL, "old_resources.py") == ORIGINAL_YAML


@pytest.mark.parametrize("source", [ORIGINAL, LARGER], ids=["original", "larger"])
def test_conversion_preserves_order_text_and_quotes(source: str) -> None:
    text = migrate_source(source, "old.py")
    loaded = yaml.safe_load(text)["resources"]
    expected = renamed(old_list(source))
    assert loaded == expected
    assert [list(entry) for entry in loaded] == [list(entry) for entry in expected]
    assert all("skil_if_exist" not in entry for entry in loaded)


@pytest.mark.parametrize("source", [ORIGINAL, LARGER], ids=["original", "larger"])
def test_converted_manifest_validates_without_warnings(source: str) -> None:
    manifest = parse_manifest(migrate_source(source), Path("params.yaml"), Path("/repo"))
    assert manifest.warnings == ()
    expected = renamed(old_list(source))
    assert [r.destination for r in manifest.resources] == [e["destination"] for e in expected]
    assert [r.description for r in manifest.resources] == [
        e.get("description", "") for e in expected
    ]
    assert [r.skip_if_exist for r in manifest.resources] == [
        e.get("skip_if_exist", True) for e in expected
    ]


def test_larger_example_details() -> None:
    manifest = parse_manifest(migrate_source(LARGER), Path("params.yaml"), Path("/repo"))
    first, second, third, fourth = manifest.resources
    assert first.name == "path/to/save/experiment1/yyyymmd'd'"
    assert first.subblob == "experiment1-yyyymmd'd'"
    assert first.description == "学習率を0.1から0.01に変更した"
    assert second.name == "exp2"
    assert second.subblob == 'experiment2 "quoted" dir'
    assert second.files == ("with space.csv", "it's.txt", "résumé.json", "データ/結果.npy")
    assert second.description == (
        "複数行の\n説明: \"引用\" と 'quote' # not a comment\n    indented: line\twith tab  "
    )
    assert second.skip_if_exist is False
    assert third.description == "- starts like a list"
    assert third.files is None
    assert fourth.subblob == "yes"  # a string that YAML would otherwise read as true
    assert fourth.description == "null"
    assert fourth.files == ("a", "b")


def test_non_ascii_is_written_as_is() -> None:
    text = migrate_source(LARGER)
    assert "学習率を0.1から0.01に変更した" in text
    assert "\\u" not in text


def test_header_names_the_source_file_on_one_line() -> None:
    text = migrate_source(ORIGINAL, "evil\nresources: []")
    assert text.splitlines()[0] == (
        "# Resources manifest for gcsdvc, converted from evil\\nresources: []."
    )
    assert yaml.safe_load(text)["resources"][0]["bucket"] == "bucket1"


@pytest.mark.parametrize(
    "value",
    [
        "plain",
        "it's",
        'say "hi"',
        "yes",
        "no",
        "null",
        "~",
        "123",
        "0x1F",
        "1e3",
        "2024-01-01",
        "- dash",
        "# hash",
        "a: b",
        "{x}",
        "[x]",
        "*alias",
        "&anchor",
        "!tag",
        "%percent",
        "@at",
        "`tick",
        "trailing space ",
        " leading space",
        "",
        "tab\there",
        "line\nbreak\n",
        "crlf\r\n",
        "nel\x85x",
        "ls\u2028x",
        "ps\u2029x",
        "bom\ufeffx",
        "nul\x00x",
        "bell\x07x",
        "surrogate\ud800x",
        "emoji 🎉",
        "日本語の説明",
        "x" * 300,
        "word " * 60,
        "back\\slash",
    ],
)
def test_any_string_survives_the_round_trip(value: str) -> None:
    source = f"resources = [{{'description': {value!r}, 'files': [{value!r}]}}]"
    loaded = yaml.safe_load(migrate_source(source))
    assert loaded == {"resources": [{"description": value, "files": [value]}]}


def test_other_literal_values_are_kept() -> None:
    """Validation, not migration, decides whether they make sense."""
    source = (
        "resources = [{'a': None, 'b': 1, 'c': -2.5, 'd': False, 'e': [], 'f': {},"
        " 'g': {'nested': [1, (2, 3)]}, 'h': 1e999}]"
    )
    assert yaml.safe_load(migrate_source(source))["resources"] == [
        {
            "a": None,
            "b": 1,
            "c": -2.5,
            "d": False,
            "e": [],
            "f": {},
            "g": {"nested": [1, [2, 3]]},
            "h": float("inf"),
        }
    ]


@pytest.mark.parametrize(
    "source",
    [
        "resources: list[dict] = [{'bucket': 'b'}]",
        "resources = ({'bucket': 'b'},)",
        "resources = other = [{'bucket': 'b'}]",
        "resources: list\nresources = [{'bucket': 'b'}]",
        "def helper():\n    resources = []\n    resources.append(1)\nresources = [{'bucket': 'b'}]",
        "resources = [{'bucket': 'b'}]\nfor r in resources:\n    print(r)\n",
        "\ufeffresources = [{'bucket': 'b'}]",
        "resources = [{'bucket': 'C:\\data'}]",  # an invalid escape: a warning, not an error
    ],
)
def test_accepted_forms(source: str) -> None:
    assert yaml.safe_load(migrate_source(source))["resources"][0]["bucket"] in ("b", "C:\\data")


def test_empty_list() -> None:
    assert yaml.safe_load(migrate_source("resources = []")) == {"resources": []}


# -- never running the file --------------------------------------------------------

RUNS_CODE = [
    ("__import__('os').system('touch PWNED')", "a function call on line 3 in field 'files'"),
    ("open('PWNED', 'w').write('x')", "a function call on line 3 in field 'files'"),
    ("exec(\"open('PWNED', 'w')\")", "a function call on line 3 in field 'files'"),
    ("[open('PWNED', 'w')]", "a function call on line 3 in field 'files'"),
    ("FILES", "the name 'FILES' on line 3 in field 'files'"),
    ("os.listdir('.')", "a function call on line 3 in field 'files'"),
    ("os.sep", "an expression on line 3 in field 'files'"),
    ("FILES[0]", "an expression on line 3 in field 'files'"),
    ("f'file-{n}'", "an f-string on line 3 in field 'files'"),
    ("f'plain'", "an f-string on line 3 in field 'files'"),
    ("[f for f in FILES]", "a comprehension on line 3 in field 'files'"),
    ("list(f for f in 'ab')", "a function call on line 3 in field 'files'"),
    ("{f: 1 for f in 'ab'}", "a comprehension on line 3 in field 'files'"),
    ("(lambda: open('PWNED', 'w'))()", "a function call on line 3 in field 'files'"),
    ("lambda: 0", "a lambda on line 3 in field 'files'"),
    ("(x := ['a'])", "the name 'x' on line 3 in field 'files'"),
    ("['a'] + ['b']", "an expression that is not a literal in field 'files'"),
    ("'a' * 3", "an expression that is not a literal in field 'files'"),
    ("[*FILES]", "an expression on line 3 in field 'files'"),
]


@pytest.mark.parametrize(("code", "found"), RUNS_CODE)
def test_code_in_a_field_is_refused_and_never_run(workdir: Path, code: str, found: str) -> None:
    source = (
        "resources = [\n"
        "    {'bucket': 'b1', 'blob': 'p', 'destination': 'exp/one',\n"
        f"     'files': {code}}},\n"
        "]\n"
    )
    assert refused(source) == [
        f"old.py:2: resources[0] (exp/one): only literal data (strings, numbers, booleans, "
        f"lists, dicts) is allowed, found {found}; nothing was run"
    ]
    assert list(workdir.iterdir()) == []


@pytest.mark.parametrize(
    ("element", "found"),
    [
        ("make_entry('x')", "a function call on line 2"),
        ("ENTRY", "the name 'ENTRY' on line 2"),
        ("{**BASE, 'destination': 'd'}", "'**' unpacking on line 2"),
        ("{KEY: 'v'}", "the name 'KEY' on line 2"),
        ("dict(bucket='b')", "a function call on line 2"),
    ],
)
def test_code_as_an_entry_is_refused(workdir: Path, element: str, found: str) -> None:
    source = f"resources = [\n    {element},\n]\n"
    (problem,) = refused(source)
    assert problem.startswith("old.py:2: resources[0]")
    assert f"found {found}" in problem
    assert list(workdir.iterdir()) == []


def test_every_bad_entry_is_reported_and_named(workdir: Path) -> None:
    source = (
        "resources = [\n"
        "    {'name': 'ok', 'bucket': 'b1', 'blob': 'p', 'destination': 'a'},\n"
        "    {'name': 'bad-one', 'files': [os.getcwd()]},\n"
        "    {'destination': 'where/to', 'description': f'{1}'},\n"
        "    'not a dict',\n"
        "    {1: 'int key'},\n"
        "]\n"
    )
    assert refused(source) == [
        "old.py:3: resources[1] (bad-one): only literal data (strings, numbers, booleans, "
        "lists, dicts) is allowed, found a function call on line 3 in field 'files'; "
        "nothing was run",
        "old.py:4: resources[2] (where/to): only literal data (strings, numbers, booleans, "
        "lists, dicts) is allowed, found an f-string on line 4 in field 'description'; "
        "nothing was run",
        "old.py:5: resources[3]: must be a dictionary with string keys",
        "old.py:6: resources[4]: must be a dictionary with string keys",
    ]


def test_code_elsewhere_in_the_file_is_ignored_and_not_run(workdir: Path) -> None:
    source = (
        "import os\n"
        "os.system('touch PWNED')\n"
        "open('PWNED2', 'w')\n"
        "resources = [{'bucket': 'b1', 'blob': 'p', 'destination': 'd'}]\n"
        "__import__('os').system('touch PWNED3')\n"
    )
    assert yaml.safe_load(migrate_source(source))["resources"] == [
        {"bucket": "b1", "blob": "p", "destination": "d"}
    ]
    assert list(workdir.iterdir()) == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("x = 1\n", "old.py: no top-level 'resources = [...]' assignment found"),
        ("", "old.py: no top-level 'resources = [...]' assignment found"),
        ("resources: list\n", "old.py: no top-level 'resources = [...]' assignment found"),
        (
            "def f():\n    resources = [{}]\n",
            "old.py: no top-level 'resources = [...]' assignment found",
        ),
        ("resources = load()\n", "old.py:1: 'resources' must be a list of dictionaries"),
        ("resources = {'a': {}}\n", "old.py:1: 'resources' must be a list of dictionaries"),
        ("resources = 'text'\n", "old.py:1: 'resources' must be a list of dictionaries"),
        ("resources = [\n  {'a': 1},\n", "old.py:1: not valid Python: '[' was never closed"),
        ("resources = [{'a': 1}]\n\tx = 1\n", "old.py:2: not valid Python: unexpected indent"),
        (
            "resources = [{'a': 1}\x00]\n",
            "old.py: not valid Python: source code string cannot contain null bytes",
        ),
    ],
)
def test_files_that_are_not_an_old_manifest(source: str, expected: str) -> None:
    assert refused(source) == [expected]


@pytest.mark.parametrize(
    ("source", "lines"),
    [
        ("resources = [{'a': 1}]\nresources = []\n", "1, 2"),
        ("resources = [{'a': 1}]\nresources += [{'b': 2}]\n", "1, 2"),
        ("resources = [{'a': 1}]\nresources.append({'b': 2})\n", "1, 2"),
        ("resources = [{'a': 1}]\nresources.extend(more)\n", "1, 2"),
        ("resources = [{'a': 1}]\nresources[0] = {}\n", "1, 2"),
        ("resources = [{'a': 1}]\ndel resources[0]\n", "1, 2"),
        ("resources = [{'a': 1}]\nif True:\n    resources = []\n", "1, 3"),
        ("resources = [{'a': 1}]\nfor resources in []:\n    pass\n", "1, 2"),
        ("resources = [{'a': 1}]\nfrom elsewhere import resources\n", "1, 2"),
        ("resources = [{'a': 1}]\nresources.x = 1\n", "1, 2"),
    ],
)
def test_a_list_changed_after_its_assignment_is_refused(source: str, lines: str) -> None:
    """Converting only the first list would silently drop what the old script added."""
    (problem,) = refused(source)
    assert problem.startswith(f"old.py:{lines.split(', ')[1]}: 'resources' is assigned or changed")
    assert f"on lines {lines};" in problem


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("{'a': 1, 'a': 2}", "key 'a' appears twice"),
        (
            "{'skil_if_exist': True, 'skip_if_exist': False}",
            "has both 'skil_if_exist' and 'skip_if_exist'; keep only 'skip_if_exist'",
        ),
        ("{'a': b'bytes'}", "field 'a': bytes b'bytes' is not supported"),
        ("{'files': {'a', 'b'}}", "field 'files': set "),
        ("{'files': set()}", "field 'files': set set() is not supported"),
        ("{'a': 1j}", "field 'a': complex 1j is not supported"),
        ("{'a': ...}", "field 'a': ellipsis Ellipsis is not supported"),
        ("{'a': [('x', b'')]}", "field 'a': bytes b'' is not supported"),
        ("{'a': {1: 2}}", "field 'a': a dict with non-string keys {1: 2} is not supported"),
        ("{'a': 0x" + "f" * 2000 + "}", "field 'a': the integer is too large"),
    ],
)
def test_values_yaml_cannot_hold_faithfully_are_refused(entry: str, message: str) -> None:
    (problem,) = refused(f"resources = [\n    {entry},\n]\n")
    assert problem.startswith("old.py:2: resources[0]: ")
    assert message in problem


# -- the command line (in process, click's CliRunner) --------------------------------


def test_cli_migrate_prints_writes_and_refuses_to_overwrite(workdir: Path) -> None:
    (workdir / "old_resources.py").write_text(ORIGINAL, encoding="utf-8")

    shown = cli("migrate", "old_resources.py", cwd=workdir)
    assert (shown.returncode, shown.stdout, shown.stderr) == (0, ORIGINAL_YAML, "")
    assert sorted(p.name for p in workdir.iterdir()) == ["old_resources.py"]

    written = cli("migrate", "old_resources.py", "-o", "params.yaml", cwd=workdir)
    assert (written.returncode, written.stdout, written.stderr) == (
        0,
        "",
        "wrote 1 experiment(s) to params.yaml\n",
    )
    assert (workdir / "params.yaml").read_text(encoding="utf-8") == ORIGINAL_YAML

    (workdir / "params.yaml").write_text("mine\n", encoding="utf-8")
    again = cli("migrate", "old_resources.py", "-o", "params.yaml", cwd=workdir)
    assert (again.returncode, again.stdout, again.stderr) == (
        2,
        "",
        "error: params.yaml exists and is not a YAML mapping; pass --force to overwrite it\n",
    )
    assert (workdir / "params.yaml").read_text(encoding="utf-8") == "mine\n"

    forced = cli("migrate", "old_resources.py", "-o", "params.yaml", "--force", cwd=workdir)
    assert forced.returncode == 0
    assert (workdir / "params.yaml").read_text(encoding="utf-8") == ORIGINAL_YAML


def test_cli_migrate_refuses_code_and_runs_nothing(workdir: Path) -> None:
    (workdir / "old.py").write_text(
        "import os\n"
        "resources = [\n"
        "    {'bucket': 'b1', 'blob': 'p', 'destination': 'd',\n"
        "     'files': [__import__('os').system('touch PWNED')]},\n"
        "]\n",
        encoding="utf-8",
    )
    result = cli("migrate", "old.py", "-o", "params.yaml", cwd=workdir)
    assert (result.returncode, result.stdout, result.stderr) == (
        2,
        "",
        "error: old.py:3: resources[0] (d): only literal data (strings, numbers, booleans, "
        "lists, dicts) is allowed, found a function call on line 4 in field 'files'; "
        "nothing was run\n",
    )
    assert sorted(p.name for p in workdir.iterdir()) == ["old.py"]


def test_cli_migrate_validates_the_result(workdir: Path) -> None:
    (workdir / "old.py").write_text(
        "resources = [{'bucket': 'Bad_Bucket', 'blob': 'p', 'destination': '../up'}]\n",
        encoding="utf-8",
    )
    result = cli("migrate", "old.py", "-o", "params.yaml", cwd=workdir)
    assert result.returncode == 2
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stderr.splitlines() == [
        "error: params.yaml:4: resources[0] (../up) field 'bucket': invalid bucket name "
        "'Bad_Bucket': use lowercase letters, digits, '-', '_' and '.', starting and ending "
        "with a letter or digit",
        "error: params.yaml:6: resources[0] (../up) field 'destination': '../up' has a '..' "
        "segment, which would leave the data folder",
    ]
    assert not (workdir / "params.yaml").exists()
