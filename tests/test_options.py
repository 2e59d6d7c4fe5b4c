"""-q, -v, --json and -m before or after the command name, for every command (issue 24, item 2).

One synced repository whose manifest is not at the default place (so -m matters);
every command runs with each option before and after its name, and both must
print the same. The JSON documents are checked against the shipped schemas by
:func:`conftest.cli`.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import (
    QUOTED,
    Ran,
    cli,
    conforms,
    entry,
    schema_registry,
    shipped_schemas,
    write_manifest,
)

MANIFEST = "conf/m.yaml"
OLD = (
    "resources = [{'name': 'old', 'bucket': 'bkt', 'blob': 'x', 'subblob': 'y', "
    "'files': ['a.txt'], 'destination': 'old'}]\n"
)


def arguments(bucket: str) -> dict[str, list[str]]:
    """A run of each command that succeeds in the synced repository (and changes nothing)."""
    return {
        "add": ["add", f"gs://{bucket}/project1/{QUOTED}", "-n", "--destination", "exp2"],
        "discover": ["discover", f"gs://{bucket}/project1"],
        "migrate": ["migrate", "old.py", "-o", "out.yaml", "--force"],
        "validate": ["validate"],
        "sync": ["sync"],
        "update": ["update", "exp1"],
        "status": ["status"],
        "list": ["list"],
        "show": ["show", "exp1"],
        "which": ["which", f"data/project1/{QUOTED}/file1"],
        "rm": ["rm", "exp1", "-n"],
        "doctor": ["doctor"],
        "install": ["install"],
    }


@pytest.fixture
def synced(repo: Path, seeded: str) -> Path:
    write_manifest(repo, [entry(seeded)])
    (repo / "conf").mkdir()
    (repo / "params.yaml").rename(repo / MANIFEST)
    (repo / "old.py").write_text(OLD)
    cli("sync", "-m", MANIFEST, cwd=repo, check=True)
    cli("install", "-m", MANIFEST, cwd=repo, check=True)
    return repo


TOOK = re.compile(r"^(\S+): took (\d+\.\ds|\d+s|\d+m\d\ds|\d+h\d\dm)(, (\d+) storage retries)?$")


def placed(args: list[str], option: list[str], before: bool) -> list[str]:
    return [*option, *args] if before else [*args, *option]


def timeless_took(err: str) -> str:
    """Standard error with -v's closing line's time and retries as <t> and <n>, once its shape
    is checked (neither is the same from run to run)."""
    lines = err.splitlines()
    assert lines, "-v printed nothing"
    took = TOOK.match(lines[-1])
    assert took, lines[-1]
    lines[-1] = f"{took[1]}: took <t>" + (", <n> storage retries" if took[3] else "")
    return "\n".join(lines)


def both(root: Path, args: list[str], option: list[str]) -> tuple[Ran, Ran]:
    first = cli(*placed(args, option, before=True), cwd=root)
    second = cli(*placed(args, option, before=False), cwd=root)
    return first, second


@pytest.mark.parametrize(
    "name",
    [
        "add",
        "discover",
        "migrate",
        "validate",
        "sync",
        "update",
        "status",
        "list",
        "show",
        "which",
        "rm",
        "doctor",
        "install",
    ],
)
def test_every_option_works_before_and_after_every_command(
    synced: Path, seeded: str, name: str
) -> None:
    """The table of issue 24 item 2: COMMAND x {-q, -v, --json, -m} x {before, after}."""
    args = arguments(seeded)[name]
    takes_m = name != "migrate"
    m = ["-m", MANIFEST] if takes_m else []
    normal = cli(*args, *m, cwd=synced)
    assert normal.returncode == 0, normal.stderr

    # -m: the manifest named before or after the name; without it there is none to find.
    if takes_m:
        first, second = both(synced, args, ["-m", MANIFEST])
        assert first == second == normal
        assert cli(*args, cwd=synced) != normal  # params.yaml: none, or (add, discover) empty
    else:  # migrate writes -o, it reads no manifest: -m is a usage error wherever it is
        first, second = both(synced, args, ["-m", MANIFEST])
        assert first.returncode == second.returncode == 2
        assert "'gcsdvc migrate' takes no --manifest" in first.stderr
        assert re.search(
            r"No such option:? '?-m'?", second.stderr
        )  # click 8.1 says it without quotes

    # -q: nothing but errors, on either side.
    first, second = both(synced, [*args, *m], ["-q"])
    assert first == second == Ran(0, "", "")

    # -v: more detail, and the time the command took (and storage's retries where it was asked).
    first, second = both(synced, [*args, *m], ["-v"])
    assert first.returncode == second.returncode == 0
    assert first.stdout == second.stdout
    assert timeless_took(first.stderr) == timeless_took(second.stderr)
    assert len(first.stdout + first.stderr) > len(normal.stdout + normal.stderr)
    took = TOOK.match(first.stderr.splitlines()[-1])
    assert took is not None and took.group(1) == name
    asks_storage = name in ("add", "discover", "status")
    assert bool(took.group(3)) is asks_storage

    # --json: one document, the same either side, valid against the command's schema.
    first, second = both(synced, [*args, *m], ["--json"])
    assert first.returncode == second.returncode == 0
    a, b = conforms(args, first.stdout), conforms(args, second.stdout)
    if name in ("sync", "update"):  # the time a sync took is its own each run
        assert a.pop("elapsed") >= 0 and b.pop("elapsed") >= 0
    assert a == b and a["schema"] == 1
    if name == "migrate":  # repository-relative, as every path of every document
        assert (a["output"], a["names"], a["yaml"]) == ("out.yaml", ["old"], None)
    if name == "validate":
        assert a["manifests"][0]["path"] == MANIFEST


@pytest.mark.parametrize(
    "args",
    [["validate"], ["sync"], ["status"], ["list"], ["show", "exp1"], ["which", "x"],
     ["add", "gs://b/x/y"], ["discover", "gs://b/x"], ["install"]],
    ids=lambda args: args[0],
)  # fmt: skip
def test_a_failing_json_command_prints_one_document_with_the_error(
    tmp_path: Path, args: list[str]
) -> None:
    """Outside a DVC repository every command fails; with --json, on standard output too."""
    for json_first in (True, False):
        argv = ["--json", *args] if json_first else [*args, "--json"]
        res = cli(*argv, cwd=tmp_path)
        assert res.returncode == 2
        doc = conforms(args, res.stdout)  # against error.json
        problem = "no DVC repository found from "
        assert doc["problems"][0].startswith(problem) and doc["exit_code"] == 2
        assert res.stderr.startswith(f"error: {problem}")


def test_the_top_level_help_lists_the_commands_in_workflow_order_uncut() -> None:
    from click.testing import CliRunner

    from gcsdvc.cli import main

    res = CliRunner().invoke(main, ["--help"], terminal_width=80)
    commands = res.stdout.split("Commands:\n", 1)[1]
    names = re.findall(r"^  (\S+)", commands, flags=re.MULTILINE)
    assert names == [
        "add", "discover", "migrate", "validate", "sync", "update", "status", "list", "show",
        "which", "rm", "doctor", "install",
    ]  # fmt: skip
    one_line = " ".join(commands.split())
    assert "sync Download the manifest's files and write one DVC import stage per file." in one_line


def test_one_valid_schema_per_command_ships_as_package_data() -> None:
    import jsonschema

    from gcsdvc.cli import main

    schemas = shipped_schemas()
    visible = [name for name, cmd in main.commands.items() if not cmd.hidden]
    assert sorted(schemas) == sorted([*visible, "error"])
    registry = schema_registry(schemas)
    for schema in schemas.values():
        jsonschema.Draft202012Validator.check_schema(schema)
        if "$ref" in schema:  # another shipped schema (update's is sync's)
            registry.resolver(schema["$id"]).lookup(schema["$ref"])
        assert schema["properties"]["schema"] == {
            "const": 1,
            "description": "The version of gcsdvc's JSON vocabulary (CHANGELOG.md).",
        }
    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert re.search(r'^gcsdvc = \[.*"schemas/\*\.json".*\]', pyproject, flags=re.M)


def test_a_usage_error_after_json_is_a_document_too(tmp_path: Path) -> None:
    import click

    # click's own wording, which changed between the declared floor (8.1) and now.
    unknown = [click.NoSuchOption(name).format_message() for name in ("--zzz", "-m")]
    for argv, problem in (
        (["--json", "show"], "Missing argument 'NAME'."),
        (["--json", "sync", "--zzz"], unknown[0]),
        (["--json", "migrate", "-m", "x.yaml", "old.py"], unknown[1]),
    ):
        res = cli(*argv, cwd=tmp_path)
        assert res.returncode == 2
        doc = conforms(argv, res.stdout)
        assert doc["problems"] == [problem]
        assert res.stderr.endswith(f"Error: {problem}\n")
