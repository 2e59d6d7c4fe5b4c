"""The resources manifest: parsing, every validation rule, messages, and `gcsdvc validate`.

Rules are checked through :func:`gcsdvc.manifest.parse_manifest` (fast, parametrized);
a few subprocess tests pin the exact command-line output.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import cli, snapshot

from gcsdvc import DvcRepoError, Manifest, ManifestError, Resource, UnknownResourceError
from gcsdvc.manifest import (
    DEFAULT_DATA_DIR,
    ENTRY_KEYS,
    Room,
    load_manifest,
    manifest_path,
    parse_manifest,
    room,
    unsafe_name,
)

FILE = Path("params.yaml")  # shown as "params.yaml" in messages (relative to any cwd)
ROOT = Path("/repo")

BASE: dict[str, Any] = {
    "name": "exp1",
    "bucket": "bucket1",
    "blob": "project1",
    "subblob": "experiment1",
    "files": ["parent_dir/file1", "file2"],
    "destination": "project1/experiment1",
    "skip_if_exist": True,
    "description": "learning rate 0.1",
}


def parse(text: str) -> Manifest:
    return parse_manifest(textwrap.dedent(text), FILE, ROOT)


def problems(text: str) -> list[str]:
    with pytest.raises(ManifestError) as info:
        parse(text)
    assert info.value.exit_code == 2
    assert info.value.problems
    assert all("\n" not in problem for problem in info.value.problems)
    return info.value.problems


def dump(*entries: dict[str, Any], **top: Any) -> str:
    # PyYAML's default (ASCII) output escapes NEL and U+2028 safely, unlike allow_unicode.
    return yaml.safe_dump({**top, "resources": list(entries)}, sort_keys=False)


def entry(**changes: Any) -> dict[str, Any]:
    """BASE with some fields replaced; a value of ``...`` removes the field."""
    out = {**BASE, **changes}
    return {key: value for key, value in out.items() if value is not ...}


def entry_problems(**changes: Any) -> list[str]:
    """The problems of a manifest holding one entry (BASE with ``changes``)."""
    return problems(dump(entry(**changes)))


# -- a valid manifest -------------------------------------------------------


def test_valid_manifest_gives_resources_with_every_field() -> None:
    manifest = parse(
        """\
        # params.yaml may hold DVC params too; other top-level keys are left alone.
        train:
          lr: 0.1
        gcsdvc:
          data_dir: raw/
          pin_generations: true
        resources:
          - name: exp1
            bucket: bucket1
            blob: project1/
            subblob: experiment1-yyyymmd'd'/
            files:
              - parent_dir/file1
              - file2
            destination: path/to/save/experiment1/
            skip_if_exist: false
            description: |
              学習率を変えた
              second line
          - bucket: my.bucket.example.com
            blob: p
            destination: whole
        """
    )
    assert manifest.path == FILE
    assert manifest.root == ROOT
    assert manifest.data_dir == "raw"
    assert manifest.data_path == ROOT / "raw"
    assert manifest.pin_generations is True
    assert manifest.warnings == ()
    first, second = manifest.resources
    assert first == Resource(
        name="exp1",
        bucket="bucket1",
        blob="project1",
        subblob="experiment1-yyyymmd'd'",
        files=("parent_dir/file1", "file2"),
        destination="path/to/save/experiment1",
        skip_if_exist=False,
        description="学習率を変えた\nsecond line\n",
        index=0,
        line=8,
    )
    assert first.prefix == "project1/experiment1-yyyymmd'd'"
    assert first.url == "gs://bucket1/project1/experiment1-yyyymmd'd'"
    assert first.source("parent_dir/file1") == (
        "gs://bucket1/project1/experiment1-yyyymmd'd'/parent_dir/file1"
    )
    assert first.label == "resources[0] (exp1)"
    assert manifest.local(first, "parent_dir/file1") == (
        "raw/path/to/save/experiment1/parent_dir/file1"
    )
    assert manifest.local(first) == "raw/path/to/save/experiment1"
    # Defaults: name is the destination, no subblob, whole prefix, skip, no description.
    assert second == Resource(
        name="whole",
        bucket="my.bucket.example.com",
        blob="p",
        subblob="",
        files=None,
        destination="whole",
        skip_if_exist=True,
        description="",
        index=1,
        line=20,
    )
    assert second.url == "gs://my.bucket.example.com/p"
    assert manifest.names == ["exp1", "whole"]


def test_settings_default() -> None:
    manifest = parse(dump(BASE))
    assert manifest.data_dir == DEFAULT_DATA_DIR == "data"
    assert manifest.pin_generations is None  # "auto"
    assert manifest.local(manifest.resources[0], "file2") == "data/project1/experiment1/file2"


@pytest.mark.parametrize(
    ("setting", "expected"),
    [("true", True), ("false", False), ("auto", None)],
)
def test_pin_generations_values(setting: str, expected: bool | None) -> None:
    text = f"gcsdvc:\n  pin_generations: {setting}\n" + dump(BASE)
    assert parse(text).pin_generations is expected


def test_empty_settings_mapping_and_empty_resources_are_fine() -> None:
    manifest = parse("gcsdvc: {}\nresources: []\n")
    assert manifest.resources == ()
    assert manifest.data_dir == "data"


def test_name_defaults_to_destination_without_trailing_slash() -> None:
    (res,) = parse(dump(entry(name=..., destination="a/b/"))).resources
    assert res.name == res.destination == "a/b"
    assert res.label == "resources[0] (a/b)"


@pytest.mark.parametrize("subblob", [..., None, "", "/"])
def test_subblob_may_be_missing_or_empty(subblob: Any) -> None:
    (res,) = parse(dump(entry(subblob=subblob))).resources
    assert res.subblob == ""
    assert res.url == "gs://bucket1/project1"


def test_quotes_spaces_and_non_ascii_in_paths_are_kept() -> None:
    files = ["it's here.csv", 'say "hi".txt', "データ/結果.json", "a b/c d"]
    (res,) = parse(dump(entry(files=files, destination="path/yyyymmd'd'"))).resources
    assert res.files == tuple(files)
    assert res.destination == "path/yyyymmd'd'"


@pytest.mark.parametrize(
    "name",
    [
        "abc",
        "bucket1",
        "my_bucket-2",
        "1bucket",
        "a" * 63,
        "example.com",
        "a.b.c",
        ".".join(["a" * 63] * 3),
        "1.2.3.4.5",
    ],
)
def test_valid_bucket_names(name: str) -> None:
    (res,) = parse(dump(entry(bucket=name))).resources
    assert res.bucket == name


def test_merge_keys_share_fields_without_false_duplicates() -> None:
    manifest = parse(
        """\
        defaults: &defaults
          bucket: bucket1
          blob: project1
          skip_if_exist: false
        resources:
          - <<: *defaults
            destination: a
          - <<: *defaults
            blob: project2
            destination: b
        """
    )
    a, b = manifest.resources
    assert (a.bucket, a.blob, a.skip_if_exist) == ("bucket1", "project1", False)
    assert (b.bucket, b.blob) == ("bucket1", "project2")


# -- the legacy key -----------------------------------------------------------


def test_legacy_key_is_accepted_with_a_warning_naming_the_new_key() -> None:
    manifest = parse(
        """\
        resources:
          - bucket: bucket1
            blob: project1
            destination: exp
            skil_if_exist: false
        """
    )
    assert manifest.resources[0].skip_if_exist is False
    assert manifest.warnings == (
        "params.yaml:5: resources[0] (exp): 'skil_if_exist' is the old misspelling of "
        "'skip_if_exist'; please rename it",
    )


def test_legacy_and_new_key_together_are_refused() -> None:
    assert entry_problems(skil_if_exist=False) == [
        "params.yaml:12: resources[0] (exp1) field 'skil_if_exist': give only 'skip_if_exist' "
        "(the old spelling 'skil_if_exist' is also present)"
    ]


def test_legacy_key_value_is_still_checked() -> None:
    (problem,) = entry_problems(skip_if_exist=..., skil_if_exist="yes")
    assert problem.endswith("field 'skip_if_exist': must be true or false, not 'yes'")


# -- every problem, one line each -------------------------------------------


def test_all_problems_are_collected_one_line_each_with_file_line_entry_and_field() -> None:
    found = problems(
        """\
        resources:
          - name: exp-a
            bucket: Bucket_1
            blob: /abs/blob
            destination: out
            descripton: typo
          - bucket: bucket1
            blob: project1
            destination: ../outside
            files: []
          - name: exp-c
            bucket: bucket1
            destination: c
            skip_if_exist: "no"
            files: [a, 7, a\\b]
        """
    )
    assert found == [  # in line order
        "params.yaml:3: resources[0] (exp-a) field 'bucket': invalid bucket name 'Bucket_1': "
        "use lowercase letters, digits, '-', '_' and '.', starting and ending with a letter "
        "or digit",
        "params.yaml:4: resources[0] (exp-a) field 'blob': '/abs/blob' is absolute; "
        "give a path relative to the prefix or data folder",
        "params.yaml:6: resources[0] (exp-a) field 'descripton': unknown field; "
        "did you mean 'description'?",
        "params.yaml:9: resources[1] (../outside) field 'destination': '../outside' has a "
        "'..' segment, which would leave the data folder",
        "params.yaml:10: resources[1] (../outside) field 'files': is empty; list the files, "
        "or omit 'files' to import the whole prefix",
        "params.yaml:11: resources[2] (exp-c) field 'blob': is required",
        "params.yaml:14: resources[2] (exp-c) field 'skip_if_exist': must be true or false, "
        "not 'no'",
        "params.yaml:15: resources[2] (exp-c) field 'files': item 1 must be a string, not 7",
        "params.yaml:15: resources[2] (exp-c) field 'files': 'a\\\\b' contains a backslash; "
        "use '/' to separate folders",
    ]


@pytest.mark.parametrize("field", ["bucket", "blob", "destination"])
@pytest.mark.parametrize("value", [..., None])
def test_required_fields(field: str, value: Any) -> None:
    (problem,) = entry_problems(**{field: value})
    assert problem.startswith("params.yaml:")
    assert f"resources[0] (exp1) field '{field}': is required" in problem


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("bucket", 12345, "must be a string, not int 12345 (quote it in YAML)"),
        ("bucket", ["bucket1"], "must be a string, not list ['bucket1'] (quote it in YAML)"),
        ("blob", 2024, "must be a string, not int 2024 (quote it in YAML)"),
        ("blob", True, "must be a string, not bool True (quote it in YAML)"),
        ("subblob", 0, "must be a string, not int 0 (quote it in YAML)"),
        ("subblob", False, "must be a string, not bool False (quote it in YAML)"),
        ("subblob", [], "must be a string, not list [] (quote it in YAML)"),
        ("destination", {"a": 1}, "must be a string, not dict {'a': 1} (quote it in YAML)"),
        ("description", 3.5, "must be a string, not float 3.5 (quote it in YAML)"),
        ("files", "file1", "must be a list of object paths (omit it to import the whole prefix)"),
        ("files", {"a": "b"}, "must be a list of object paths"),
        ("files", None, "must be a list of object paths"),
        ("files", [], "is empty; list the files, or omit 'files' to import the whole prefix"),
        ("files", ["a", 1], "item 1 must be a string, not 1"),
        ("files", [["a"]], "item 0 must be a string, not ['a']"),
        ("files", ["a", "b", "a"], "'a' is listed twice"),
        ("skip_if_exist", "yes", "must be true or false, not 'yes'"),
        ("skip_if_exist", 1, "must be true or false, not 1"),
        ("skip_if_exist", 0, "must be true or false, not 0"),
        ("skip_if_exist", None, "must be true or false, not None"),
        ("skip_if_exist", "true", "must be true or false, not 'true'"),
    ],
)
def test_wrong_types_and_values(field: str, value: Any, message: str) -> None:
    found = entry_problems(**{field: value})
    assert len(found) == 1, found
    assert found[0].startswith("params.yaml:")
    assert f": resources[0] (exp1) field '{field}': {message}" in found[0]


@pytest.mark.parametrize(
    ("name", "label", "shown"),
    [
        (7, "resources[0]", "7"),
        ("", "resources[0]", "''"),
        ("  ", "resources[0]", "'  '"),
        (["a"], "resources[0]", "['a']"),
        ("two\nlines", "resources[0] (two\\nlines)", "'two\\nlines'"),
        ("tab\there", "resources[0] (tab\\there)", "'tab\\there'"),
    ],
)
def test_invalid_names(name: Any, label: str, shown: str) -> None:
    assert entry_problems(name=name) == [
        f"params.yaml:2: {label} field 'name': must be a non-empty single-line string, not {shown}"
    ]


def test_the_line_of_a_problem_is_the_line_of_its_key() -> None:
    found = problems(
        """\
        resources:
          - name: ok
            bucket: bucket1
            blob: p
            destination: ok
          - name: bad


            bucket: bucket1
            blob: p

            destination: /etc
        """
    )
    assert found == [
        "params.yaml:12: resources[1] (bad) field 'destination': '/etc' is absolute; "
        "give a path relative to the prefix or data folder"
    ]


@pytest.mark.parametrize(
    ("key", "hint"),
    [
        ("descripton", "did you mean 'description'?"),
        ("destinaton", "did you mean 'destination'?"),
        ("skip_if_exists", "did you mean 'skip_if_exist'?"),
        ("file", "did you mean 'files'?"),
        ("Bucket", "did you mean 'bucket'?"),
        ("zzz", "known fields: " + ", ".join(ENTRY_KEYS)),
    ],
)
def test_unknown_fields_suggest_the_right_one(key: str, hint: str) -> None:
    (problem,) = entry_problems(**{key: "x"})
    assert problem == f"params.yaml:12: resources[0] (exp1) field '{key}': unknown field; {hint}"


def test_non_string_keys_are_unknown_fields() -> None:
    found = problems(
        """\
        resources:
          - bucket: bucket1
            blob: p
            destination: d
            1: x
            null: y
        """
    )
    assert found == [
        "params.yaml:2: resources[0] (d) field 'None': unknown field; known fields: "
        + ", ".join(ENTRY_KEYS),
        "params.yaml:5: resources[0] (d) field '1': unknown field; known fields: "
        + ", ".join(ENTRY_KEYS),
    ]


# -- bucket names ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("ab", "must be 3 to 63 characters (222 with dots)"),
        ("a" * 64, "must be at most 63 characters without dots"),
        (".".join(["a" * 60] * 4), "must be 3 to 63 characters (222 with dots)"),
        ("a" * 64 + ".com", "each dot-separated part must be at most 63 characters"),
        ("Bucket1", "use lowercase letters"),
        ("bucket_", "starting and ending with a letter or digit"),
        ("-bucket", "starting and ending with a letter or digit"),
        ("bucket-", "starting and ending with a letter or digit"),
        ("my..bucket", "use lowercase letters"),
        (".bucket", "use lowercase letters"),
        ("bu cket", "use lowercase letters"),
        ("bucket/x", "use lowercase letters"),
        ("gs://bucket", "use lowercase letters"),
        ("bücket", "use lowercase letters"),
        ("goog-data", "must not start with 'goog' or contain 'google'"),
        ("my-google-data", "must not start with 'goog' or contain 'google'"),
        ("192.168.1.1", "must not look like an IP address"),
    ],
)
def test_invalid_bucket_names(name: str, why: str) -> None:
    (problem,) = entry_problems(bucket=name)
    assert problem.startswith(
        "params.yaml:3: resources[0] (exp1) field 'bucket': invalid bucket name '"
    )
    assert why in problem


@pytest.mark.parametrize("name", ["", "bu\x00cket", "bucket\n"])
def test_empty_or_control_bucket_name(name: str) -> None:
    found = entry_problems(bucket=name)
    assert found
    assert all("field 'bucket'" in p and "\n" not in p for p in found)


# -- paths --------------------------------------------------------------------

BAD_PATHS = [
    ("/abs/path", "is absolute; give a path relative to the prefix or data folder"),
    ("C:/Users/x", "is absolute"),
    ("c:relative", "is absolute"),
    ("..", "has a '..' segment, which would leave the data folder"),
    ("a/../../b", "has a '..' segment"),
    ("../sibling", "has a '..' segment"),
    ("a\\b", "contains a backslash; use '/' to separate folders"),
    ("..\\..\\x", "contains a backslash"),
    ("a\x00b", "contains a NUL or control character"),
    ("a\tb", "contains a NUL or control character"),
    ("a\nb", "contains a NUL or control character"),
    ("a\rb", "contains a NUL or control character"),
    ("a\x1bb", "contains a NUL or control character"),
    ("a\x7fb", "contains a NUL or control character"),
    ("a\x85b", "contains a NUL or control character"),
    ("a\u2028b", "contains a NUL or control character"),
    ("a//b", "has an empty or '.' segment"),
    ("./a", "has an empty or '.' segment"),
    ("a/./b", "has an empty or '.' segment"),
    (".", "has an empty or '.' segment"),
]


@pytest.mark.parametrize("field", ["blob", "subblob", "destination"])
@pytest.mark.parametrize(("path", "why"), BAD_PATHS)
def test_unsafe_prefix_and_destination_paths(field: str, path: str, why: str) -> None:
    found = entry_problems(**{field: path})
    assert len(found) == 1, found
    assert f"field '{field}': {path!r} {why}" in found[0]
    assert "\n" not in found[0]


@pytest.mark.parametrize(
    ("path", "why"),
    [
        *BAD_PATHS,
        ("dir/", "has an empty or '.' segment"),
        ("", "must not be empty"),
        ("model.dvc", "ends with '.dvc', which would clash with DVC's stage files"),
        ("sub/model.dvc", "ends with '.dvc'"),
        ("sub.dvc/model", "has a folder ending in '.dvc'"),
        (".gitignore", "is named '.gitignore', which DVC writes itself"),
        ("sub/.gitignore", "is named '.gitignore'"),
        (".gitignore/x", "has a folder named '.gitignore', which DVC writes as a file"),
        (".git/config", "has a part named '.git', which git never tracks"),
        ("sub/.git", "has a part named '.git'"),
    ],
)
def test_unsafe_file_paths(path: str, why: str) -> None:
    (problem,) = entry_problems(files=["ok", path])
    assert problem.startswith("params.yaml:")
    assert f"resources[0] (exp1) field 'files': {path!r} {why}" in problem


# -- object names DVC cannot carry (issue 23, item 2) -----------------------------------------

# Each verified against `dvc import-url gs://BUCKET/PREFIX/NAME` on the emulator: refused ones make
# it fail, or succeed and leave DVC blind to the folder; the kept ones import and `dvc status` is
# quiet.
LONG_OK = "n" * 228  # + DVC's NAME.<22 characters>.tmp beside it = 255
UNSAFE_NAMES = [
    ("dvc.yaml", "is named 'dvc.yaml', which DVC reads as a pipeline file"),
    ("eval/dvc.yaml", "is named 'dvc.yaml'"),
    ("dvc.lock", "is named 'dvc.lock', which DVC takes for the lock file of a pipeline"),
    (".dvcignore", "is named '.dvcignore', which DVC reads as ignore rules"),
    ("sub/.dvcignore", "is named '.dvcignore'"),
    (".gitignore", "is named '.gitignore', which DVC writes itself"),
    ("model.dvc", "ends with '.dvc'"),
    ("x#12", "ends with '#12', which DVC reads as an object generation"),
    ("run/x#0", "ends with '#0'"),
    ("x#-3", "ends with '#-3'"),  # int() reads it
    ("x#", "ends with '#', which DVC drops from the URL"),
    ("a?b", "has a '?', which DVC reads as the start of a URL query"),
    ("q?.txt", "has a '?'"),
    ("eval/a?/b", "has a '?'"),
    ("n" * 229, "has a name of 229 bytes; DVC writes a name 27 bytes longer beside it"),
    ("é" * 115, "has a name of 230 bytes"),  # bytes, not characters
    ("d" * 256 + "/f", "has a folder name of 256 bytes"),
    ("../x", "has a '..' segment"),
]
SAFE_NAMES = [
    "hash#1.txt",  # '1.txt' is no number: the '#' stays in the path
    "x#a",
    "run#1/x",
    "x#12#3",
    "a b#3.txt",
    "pct%20.txt",
    "a+b~c[1].txt",
    "lit*eral",
    "ünïcode-日本.txt",
    "dvc.yaml.bak",
    "my.dvcignore",
    "dvc.yaml/inner",  # a folder: DVC looks for the file
    LONG_OK,
    "d" * 255 + "/f",
]


@pytest.mark.parametrize(("name", "why"), UNSAFE_NAMES)
def test_names_dvc_cannot_carry(name: str, why: str) -> None:
    found = unsafe_name(name, "project1/run1")
    assert found is not None and found.startswith(why), found


@pytest.mark.parametrize("name", SAFE_NAMES)
def test_names_dvc_carries(name: str) -> None:
    assert unsafe_name(name, "project1/run1") is None


@pytest.mark.parametrize("name", SAFE_NAMES)
def test_a_pinned_stage_cannot_carry_any_hash_mark(name: str) -> None:
    """DVC appends '#<generation>' to a pinned stage's URL; gcsfs splits at the first '#'."""
    found = unsafe_name(name, "project1/run1", pinned=True)
    if "#" in name:
        assert found is not None and found.startswith("has a '#': DVC adds '#<generation>'")
    else:
        assert found is None
    assert unsafe_name("x", "run#1", pinned=True) is not None  # the prefix is in the URL too


def test_the_url_rules_read_the_whole_object_key() -> None:
    assert unsafe_name("x", "a?b") == "has a '?', which DVC reads as the start of a URL query"
    assert unsafe_name("x", "run#1") is None  # fragment '1/x': no generation


def test_name_limits_come_from_the_file_system(tmp_path: Path) -> None:
    here = room(tmp_path / "not" / "made" / "yet")
    assert here.name_max == os.pathconf(tmp_path, "PC_NAME_MAX")
    assert 0 < here.path_max < os.pathconf(tmp_path, "PC_PATH_MAX")
    assert unsafe_name("abcdef", space=Room(name_max=33)) is None
    assert unsafe_name("abcdef", space=Room(name_max=32)) == (
        "has a name of 6 bytes; DVC writes a name 27 bytes longer beside it "
        "and the file system holds 32"
    )
    assert unsafe_name("a/b/c", space=Room(path_max=5 + 27)) is None
    assert unsafe_name("a/b/c", space=Room(path_max=5 + 26)) == (
        "makes a local path too long for the file system (31 bytes left)"
    )


def test_validate_refuses_each_listed_name_dvc_cannot_carry() -> None:
    found = entry_problems(files=["ok", "x#12", "dvc.yaml", "n" * 229, "hash#1.txt", "*.csv"])
    assert found == [
        "params.yaml:6: resources[0] (exp1) field 'files': 'dvc.yaml' is named 'dvc.yaml', "
        "which DVC reads as a pipeline file and refuses as an output",
    ]
    hashed, long = entry_problems(files=["ok", "x#12", "n" * 229, "hash#1.txt", "*.csv"])
    assert hashed == (
        "params.yaml:6: resources[0] (exp1) field 'files': 'x#12' "
        "(gs://bucket1/project1/experiment1/x#12) ends with '#12', which DVC reads as an object "
        "generation; DVC cannot carry it: rename the object or leave it out of 'files'"
    )
    assert long.startswith("params.yaml:6: resources[0] (exp1) field 'files': 'nnnn")
    assert long.endswith(
        f"(gs://bucket1/project1/experiment1/{'n' * 229}) has a name of 229 bytes; DVC writes a "
        "name 27 bytes longer beside it and the file system holds 255; DVC cannot carry it: "
        "rename the object or leave it out of 'files'"
    )


def test_validate_refuses_a_whole_prefix_dvc_would_read_as_a_generation() -> None:
    (found,) = entry_problems(files=..., subblob="run#7")
    assert found == (
        "params.yaml:5: resources[0] (exp1): gs://bucket1/project1/run#7 ends with '#7', "
        "which DVC reads as an object generation; rename the prefix"
    )


@pytest.mark.parametrize(
    ("destination", "why"),
    [
        ("exp.dvc", "ends with '.dvc'"),
        ("exp.dvc/run1", "has a folder ending in '.dvc'"),
        ("a/.gitignore", "is named '.gitignore'"),
        ("exp/.git/x", "has a part named '.git', which git never tracks"),
    ],
)
def test_destinations_clashing_with_dvc_files(destination: str, why: str) -> None:
    (problem,) = entry_problems(destination=destination)
    assert f"field 'destination': {destination!r} {why}" in problem


def test_a_bad_path_names_the_offending_value_in_an_escaped_single_line() -> None:
    (problem,) = entry_problems(destination="x\n../../etc")
    assert problem == (
        "params.yaml:9: resources[0] (exp1) field 'destination': 'x\\n../../etc' "
        "contains a NUL or control character"
    )


def test_control_characters_are_allowed_in_descriptions_only() -> None:
    (res,) = parse(dump(entry(description="tab\there\nand a new line"))).resources
    assert res.description == "tab\there\nand a new line"


# -- the data folder and settings ---------------------------------------------


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("/abs", "is absolute; give a path relative to the prefix or data folder"),
        ("../outside", "has a '..' segment, which would leave the data folder"),
        ("data/../..", "has a '..' segment, which would leave the data folder"),
        ("a\\b", "contains a backslash; use '/' to separate folders"),
        (".", "has an empty or '.' segment"),
        ("", "must not be empty"),
        (".dvc", "must not be inside .dvc or .git"),
        (".dvc/cache", "must not be inside .dvc or .git"),
        (".git/", "must not be inside .dvc or .git"),
        ("raw/.git", "must not be inside .dvc or .git"),
        (5, "must be a string, not int"),
        (None, "must be a string, not NoneType"),
    ],
)
def test_invalid_data_dir(value: Any, why: str) -> None:
    assert problems(dump(BASE, gcsdvc={"data_dir": value})) == [
        f"params.yaml:2: gcsdvc.data_dir: {why} (got {value!r})"
    ]


@pytest.mark.parametrize("value", ["yes please", 1, 0, [True], "True", None])
def test_invalid_pin_generations(value: Any) -> None:
    assert problems(dump(BASE, gcsdvc={"pin_generations": value})) == [
        f"params.yaml:2: gcsdvc.pin_generations: must be auto, true or false, not {value!r}"
    ]


def test_unknown_settings_suggest_the_right_one() -> None:
    assert problems(dump(BASE, gcsdvc={"datadir": "x", "zzz": 1, 3: 4})) == [
        "params.yaml:2: gcsdvc.datadir: unknown setting; did you mean 'data_dir'?",
        "params.yaml:3: gcsdvc.zzz: unknown setting; known settings: data_dir, pin_generations",
        "params.yaml:4: gcsdvc.3: unknown setting; known settings: data_dir, pin_generations",
    ]


@pytest.mark.parametrize("value", ["[data]", "data", "1"])
def test_settings_must_be_a_mapping(value: str) -> None:
    assert problems(f"gcsdvc: {value}\nresources: []\n") == [
        "params.yaml:1: gcsdvc: must be a mapping of settings"
    ]


def test_data_dir_appears_in_collision_messages() -> None:
    found = problems(
        dump(entry(name="a", files=["f"]), entry(name="b", files=["f"]), gcsdvc={"data_dir": "d"})
    )
    assert found == [
        "params.yaml:13: resources[1] (b): saves to 'd/project1/experiment1/f', "
        "as resources[0] (a) does"
    ]


# -- the document as a whole ----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "params.yaml: the manifest must be a mapping with a 'resources' list"),
        (
            "# only a comment\n",
            "params.yaml: the manifest must be a mapping with a 'resources' list",
        ),
        ("- a\n- b\n", "params.yaml: the manifest must be a mapping with a 'resources' list"),
        ("just text\n", "params.yaml: the manifest must be a mapping with a 'resources' list"),
        ("train: {lr: 1}\n", "params.yaml: no 'resources' list"),
        ("gcsdvc: {}\n", "params.yaml: no 'resources' list"),
        ("resources:\n", "params.yaml:1: resources: must be a list of entries"),
        ("resources: {a: 1}\n", "params.yaml:1: resources: must be a list of entries"),
        ("resources: text\n", "params.yaml:1: resources: must be a list of entries"),
        ("resources:\n  - text\n", "params.yaml:2: resources[0]: must be a mapping of fields"),
        ("resources:\n  - [a]\n", "params.yaml:2: resources[0]: must be a mapping of fields"),
        ("resources:\n  - null\n", "params.yaml:2: resources[0]: must be a mapping of fields"),
        ("resources: [{}]\n", "params.yaml:1: resources[0] field 'bucket': is required"),
    ],
)
def test_document_shape(text: str, expected: str) -> None:
    assert problems(text)[0] == expected


def test_a_file_without_resources_is_not_silently_empty() -> None:
    with pytest.raises(ManifestError, match="no 'resources' list"):
        parse("resource:\n  - bucket: bucket1\n")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "resources:\n  - bucket: a\n   blob: b\n",
            "params.yaml:3:4: YAML syntax error: did not find expected '-' indicator",
        ),
        (
            "resources:\n  bucket: a\n   blob: b\n",
            "params.yaml:3:8: YAML syntax error: mapping values are not allowed in this context",
        ),
        (
            "resources: [a, b\n",
            "params.yaml:2:1: YAML syntax error: did not find expected ',' or ']'",
        ),
        (
            "resources:\n\t- a\n",
            "params.yaml:2:1: YAML syntax error: found character that cannot start any token",
        ),
        (
            'resources: ["unterminated]\n',
            "params.yaml:2:1: YAML syntax error: found unexpected end of stream",
        ),
        (
            "resources: []\n---\nresources: []\n",
            "params.yaml:2:1: YAML syntax error: but found another document",
        ),
        (
            "resources: *nowhere\n",
            "params.yaml:1:12: YAML syntax error: found undefined alias",
        ),
        (
            "a: 1\nresources:\n  - !!python/object:os.system {}\n",
            "params.yaml:3:5: YAML error: could not determine a constructor for the tag "
            "'tag:yaml.org,2002:python/object:os.system'",
        ),
        (
            "resources:\n  - description: !!int 'abc'\n",
            "params.yaml:2:18: YAML error: cannot read 'abc': "
            "invalid literal for int() with base 10: 'abc'",
        ),
        (
            "resources:\n  - {a: 1, [x]: 3}\n",
            "params.yaml:2:12: YAML error: found unhashable key",
        ),
        (
            "resources:\n  - subblob: 2023-02-30\n",
            "params.yaml:2:14: YAML error: cannot read '2023-02-30': day is out of range for month",
        ),
        (
            "resources:\n  - {bucket: a\x00}\n",
            "params.yaml:2:15: YAML error: character #x0000 is not allowed (control characters "
            "are not allowed); quote it as an escape in a double-quoted string",
        ),
        (
            "é: ü\nresources: [\x07]\n",
            "params.yaml:2:13: YAML error: character #x0007 is not allowed (control characters "
            "are not allowed); quote it as an escape in a double-quoted string",
        ),
    ],
)
def test_yaml_errors_give_line_and_column(text: str, expected: str) -> None:
    assert problems(text) == [expected]


def test_deep_nesting_is_a_problem_not_a_crash() -> None:
    (problem,) = problems("resources: " + "[" * 5000 + "]" * 5000 + "\n")
    assert problem.startswith("params.yaml:1:")
    assert "YAML" in problem


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "resources: []\nresources: []\n",
            ["params.yaml:2: key 'resources' appears twice"],
        ),
        (
            "gcsdvc:\n  data_dir: a\n  data_dir: b\nresources: []\n",
            ["params.yaml:3: gcsdvc: key 'data_dir' appears twice"],
        ),
        (
            "resources:\n  - bucket: bucket1\n    blob: p\n    destination: d\n    blob: q\n",
            ["params.yaml:5: resources[0] (d): key 'blob' appears twice"],
        ),
        (
            "resources:\n  - name: n\n    bucket: bucket1\n    blob: p\n    destination: d\n"
            "    name: m\n",
            ["params.yaml:6: resources[0] (m): key 'name' appears twice"],
        ),
        (
            # Different lengths: the last value wins in YAML, and the report must still work.
            "resources:\n  - bucket: bucket1\n    blob: p\n    destination: d\nresources: [1, 2]\n",
            [
                "params.yaml:5: key 'resources' appears twice",
                "params.yaml:5: resources[0]: must be a mapping of fields",
                "params.yaml:5: resources[1]: must be a mapping of fields",
            ],
        ),
    ],
)
def test_duplicate_yaml_keys(text: str, expected: list[str]) -> None:
    assert problems(text) == expected


def test_keys_that_only_look_alike_are_not_duplicates() -> None:
    found = problems('resources:\n  - 1: a\n    "1": b\n    bucket: bucket1\n')
    assert not any("appears twice" in p for p in found)


def test_huge_aliased_values_give_short_messages() -> None:
    """A "billion laughs" document must not blow up the report."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    text = "\n".join(lines) + "\nresources:\n  - {bucket: *a8, blob: p, destination: d}\n"
    (problem,) = problems(text)
    assert problem.startswith("params.yaml:11: resources[0] (d) field 'bucket': must be a string")
    assert len(problem) < 1000


def test_a_huge_value_is_shortened_in_messages() -> None:
    (problem,) = entry_problems(destination="/" + "x" * 100_000)
    assert len(problem) < 400
    assert "is absolute" in problem


# -- checks across entries -----------------------------------------------------


def test_duplicate_names() -> None:
    found = problems(dump(entry(destination="a"), entry(destination="b")))
    assert found == [
        "params.yaml:12: resources[1] (exp1): name 'exp1' is also used by resources[0]"
    ]


def test_same_destination_without_names_asks_for_names() -> None:
    found = problems(dump(entry(name=..., files=["a"]), entry(name=..., files=["b"])))
    assert found == [
        "params.yaml:10: resources[1] (project1/experiment1): name 'project1/experiment1' "
        "is also used by resources[0]; give each entry a 'name'"
    ]


def test_two_entries_saving_the_same_local_file() -> None:
    found = problems(
        dump(
            entry(name="a", files=["x", "shared"]),
            entry(name="b", blob="other", files=["shared"]),
        )
    )
    assert found == [
        "params.yaml:12: resources[1] (b): saves to 'data/project1/experiment1/shared', "
        "as resources[0] (a) does"
    ]


def test_same_file_through_different_destination_and_file_paths() -> None:
    found = problems(
        dump(
            entry(name="a", destination="exp", files=["run/out.csv"]),
            entry(name="b", destination="exp/run", files=["out.csv"]),
        )
    )
    assert found == [
        "params.yaml:11: resources[1] (b): saves to 'data/exp/run/out.csv', "
        "as resources[0] (a) does"
    ]


def test_two_whole_prefix_imports_into_one_folder() -> None:
    found = problems(dump(entry(name="a", files=...), entry(name="b", files=..., blob="q")))
    assert found == [
        "params.yaml:9: resources[1] (b): saves to 'data/project1/experiment1', "
        "as resources[0] (a) does"
    ]


def test_whole_prefix_folder_containing_another_entrys_file() -> None:
    found = problems(
        dump(
            entry(name="all", destination="exp", files=...),
            entry(name="one", destination="exp/sub", files=["f"]),
        )
    )
    assert found == [
        "params.yaml:9: resources[1] (one): 'data/exp' would be both a folder and a file "
        "or whole-prefix import of resources[0] (all)"
    ]


def test_a_file_that_is_also_a_folder() -> None:
    found = problems(dump(entry(files=["a", "a/b"])))
    assert found == [
        "params.yaml:2: resources[0] (exp1): 'data/project1/experiment1/a' would be both a "
        "folder and a file or whole-prefix import of resources[0] (exp1)"
    ]


def test_the_same_file_in_different_destinations_is_fine() -> None:
    manifest = parse(dump(entry(name="a", destination="x"), entry(name="b", destination="y")))
    assert manifest.names == ["a", "b"]


def test_invalid_entries_are_left_out_of_cross_checks() -> None:
    found = problems(dump(entry(name="a", bucket="BAD"), entry(name="a")))
    assert len(found) == 1
    assert "invalid bucket name 'BAD'" in found[0]


def test_an_aliased_entry_is_a_duplicate() -> None:
    found = problems(
        """\
        resources:
          - &one {bucket: bucket1, blob: p, destination: d}
          - *one
        """
    )
    assert found == [
        "params.yaml:2: resources[1] (d): name 'd' is also used by resources[0]; "
        "give each entry a 'name'",
        "params.yaml:2: resources[1] (d): saves to 'data/d', as resources[0] (d) does",
    ]


# -- selecting entries ---------------------------------------------------------


@pytest.fixture
def three() -> Manifest:
    return parse(
        dump(
            entry(name="bert-base", destination="a"),
            entry(name="bert-large", destination="b"),
            entry(name="gpt", destination="c"),
        )
    )


def test_get_and_select(three: Manifest) -> None:
    assert three.get("gpt").destination == "c"
    assert [r.name for r in three.select([])] == ["bert-base", "bert-large", "gpt"]
    assert [r.name for r in three.select(["gpt", "bert-*"])] == ["bert-base", "bert-large", "gpt"]
    assert [r.name for r in three.select(["bert-?ase"])] == ["bert-base"]


def test_unknown_names_suggest_close_ones(three: Manifest) -> None:
    with pytest.raises(UnknownResourceError) as info:
        three.get("bert-bas")
    assert (
        str(info.value) == "unknown experiment 'bert-bas'; did you mean 'bert-base', 'bert-large'?"
    )
    with pytest.raises(UnknownResourceError, match=r"^unknown experiment 'xyz\*'$"):
        three.select(["xyz*"])


def test_unknown_name_in_an_empty_manifest() -> None:
    with pytest.raises(UnknownResourceError, match="the manifest has no resources"):
        parse("resources: []\n").get("x")


# -- finding and reading the file ---------------------------------------------


def test_load_manifest_reads_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.yaml").write_text(dump(BASE), encoding="utf-8")
    manifest = load_manifest("m.yaml")
    assert manifest.path == tmp_path / "m.yaml"
    assert manifest.root == tmp_path  # no DVC repository: the manifest's folder
    assert manifest.names == ["exp1"]


def test_load_manifest_names_the_file_relative_to_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "m.yaml").write_text(dump(entry(bucket="BAD")), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ManifestError) as info:
        load_manifest(tmp_path / "conf" / "m.yaml")
    assert info.value.problems[0].startswith("conf/m.yaml:3: resources[0] (exp1) field 'bucket'")


def test_missing_and_unreadable_manifests(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ManifestError) as info:
        load_manifest("nope.yaml")
    assert info.value.problems == [
        "nope.yaml: manifest not found; 'gcsdvc add gs://BUCKET/PATH' or "
        "'gcsdvc discover gs://BUCKET/PATH --add' creates it"
    ]
    assert info.value.exit_code == 2
    (tmp_path / "latin1.yaml").write_bytes("resources: [é]\n".encode("latin-1"))
    with pytest.raises(ManifestError) as info:
        load_manifest("latin1.yaml")
    assert info.value.problems[0].startswith("latin1.yaml: cannot read manifest: ")
    (tmp_path / "folder.yaml").mkdir()
    with pytest.raises(ManifestError, match=r"^folder.yaml: cannot read manifest: "):
        load_manifest("folder.yaml")


def test_a_byte_order_mark_is_fine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bom.yaml").write_text("\ufeff" + dump(BASE), encoding="utf-8")
    assert load_manifest("bom.yaml").names == ["exp1"]


def test_default_manifest_is_params_yaml_at_the_dvc_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".dvc").mkdir()
    (tmp_path / "params.yaml").write_text(dump(BASE), encoding="utf-8")
    (tmp_path / "src" / "deep").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "src" / "deep")
    assert manifest_path() == tmp_path / "params.yaml"
    manifest = load_manifest()
    assert manifest.root == tmp_path
    assert manifest.names == ["exp1"]
    # An explicit manifest elsewhere in the repository still has the repository as root.
    (tmp_path / "src" / "other.yaml").write_text(dump(BASE), encoding="utf-8")
    assert load_manifest("../other.yaml").root == tmp_path


def test_without_a_dvc_repository_the_manifest_must_be_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DvcRepoError, match=r"no DVC repository found .* or pass --manifest PATH"):
        load_manifest()


# -- the command line (in process, click's CliRunner) --------------------------------

VALID = """\
resources:
  - name: exp1
    bucket: bucket1
    blob: project1
    files: [a.csv, b.csv]
    destination: exp1
  - bucket: bucket1
    blob: project1/run2
    destination: exp2
    skil_if_exist: true
"""

INVALID = """\
resources:
  - name: exp1
    bucket: Bucket1
    blob: project1
    files: []
    destination: /tmp/exp1
    descripton: typo
  - name: exp1
    blob: project1
    destination: exp2
"""


def test_cli_validate_valid_manifest_exact_output(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text(VALID, encoding="utf-8")
    result = cli("validate", "--manifest", "m.yaml", cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        "m.yaml: 2 experiment(s), 2 file(s) and 1 whole prefix(es): OK\n",
        "warning: m.yaml:10: resources[1] (exp2): 'skil_if_exist' is the old misspelling of "
        "'skip_if_exist'; please rename it\n",
    )


def test_cli_validate_invalid_manifest_exact_output(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text(INVALID, encoding="utf-8")
    result = cli("validate", "--manifest", "m.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        "error: m.yaml:3: resources[0] (exp1) field 'bucket': invalid bucket name 'Bucket1': "
        "use lowercase letters, digits, '-', '_' and '.', starting and ending with a letter "
        "or digit\n"
        "error: m.yaml:5: resources[0] (exp1) field 'files': is empty; list the files, "
        "or omit 'files' to import the whole prefix\n"
        "error: m.yaml:6: resources[0] (exp1) field 'destination': '/tmp/exp1' is absolute; "
        "give a path relative to the prefix or data folder\n"
        "error: m.yaml:7: resources[0] (exp1) field 'descripton': unknown field; "
        "did you mean 'description'?\n"
        "error: m.yaml:8: resources[1] (exp1) field 'bucket': is required\n"
    )


def test_cli_validate_yaml_syntax_error(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text("resources:\n  bucket: a\n   blob: b\n", encoding="utf-8")
    result = cli("validate", "-m", "m.yaml", cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (
        2,
        "",
        "error: m.yaml:3:8: YAML syntax error: mapping values are not allowed in this context\n",
    )


def test_cli_sync_with_an_invalid_manifest_changes_nothing(repo: Path) -> None:
    (repo / "params.yaml").write_text(INVALID, encoding="utf-8")
    before = snapshot(repo)
    result = cli("sync", "--manifest", "params.yaml", cwd=repo)
    assert result.returncode == 2
    assert "Traceback" not in result.stdout + result.stderr
    assert "error: params.yaml:7: resources[0] (exp1) field 'descripton'" in result.stderr
    assert "field 'destination': '/tmp/exp1' is absolute" in result.stderr
    assert snapshot(repo) == before
    assert not (repo / "data").exists()


NFC, NFD = "caf\u00e9.csv", "cafe\u0301.csv"  # the same on screen


@pytest.mark.parametrize(
    ("name", "choices", "hint"),
    [
        ("metrcs.json", ["metrics.json", "x.bin"], "did you mean 'metrics.json'?"),
        ("zzz", ["metrics.json"], ""),
        (
            NFC,
            [NFD, "cafe.csv"],
            f"did you mean '{NFD}' (the same letters in another Unicode form: "
            "'cafe\\u0301.csv'), 'cafe.csv'?",
        ),
        (NFC, [NFC], ""),  # the name itself is not suggested
    ],
    ids=["close", "none", "another Unicode form first", "itself"],
)
def test_did_you_mean_tells_names_apart_that_look_the_same(
    name: str, choices: list[str], hint: str
) -> None:
    from gcsdvc.manifest import did_you_mean

    assert did_you_mean(name, choices) == hint
