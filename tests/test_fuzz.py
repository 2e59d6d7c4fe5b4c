"""Property tests: whatever the input, validation and migration fail only with ManifestError.

Every problem must also stay one line that names the file, so `gcsdvc validate` output
stays readable; valid input must come through unchanged.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from gcsdvc import Manifest, ManifestError
from gcsdvc.manifest import ENTRY_KEYS, LEGACY_KEYS, SETTING_KEYS, parse_manifest
from gcsdvc.migrate import migrate_source

FILE = Path("params.yaml")
ROOT = Path("/repo")

FUZZ = settings()  # the loaded profile's (tests/conftest.py): small by default, larger in CI

# -- strategies -----------------------------------------------------------------------

KEYS = [*ENTRY_KEYS, *LEGACY_KEYS, *SETTING_KEYS, "resources", "gcsdvc", "<<"]
TRICKY_TEXT = [
    "",
    " ",
    ".",
    "..",
    "/",
    "a/../b",
    "/abs",
    "C:/x",
    "a\\b",
    "a\x00b",
    "a\nb",
    "\x85",
    "\u2028",
    "x.dvc",
    ".gitignore",
    "Bucket",
    "goog",
    "1.2.3.4",
    "bucket1",
    "data",
    ".dvc",
    "auto",
    "yes",
    "~",
    "*",
    "exp-*",
    "データ",
    "it's",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=20),
    st.sampled_from(TRICKY_TEXT),
    st.dates(),
)
keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=10), st.integers(), st.booleans())
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=20,
)
entries = st.dictionaries(
    st.sampled_from([*ENTRY_KEYS, *LEGACY_KEYS]) | keys, values | scalars, max_size=9
)
manifest_like = st.fixed_dictionaries(
    {"resources": st.lists(entries | values, max_size=4) | values},
    optional={
        "gcsdvc": st.dictionaries(st.sampled_from([*SETTING_KEYS, "x"]), values, max_size=3)
        | values,
        "other": values,
    },
)
YAML_BITS = [
    "resources:",
    "gcsdvc:",
    "\n",
    "\n  ",
    "\n    ",
    "- ",
    ": ",
    "bucket",
    "blob: p",
    "destination: d",
    "files:",
    "[",
    "]",
    "{",
    "}",
    ", ",
    "&a ",
    "*a",
    "<<: *a",
    "? ",
    "!!binary ",
    "!!python/object:os.system ",
    "!!set ",
    "!!omap ",
    "!!timestamp ",
    "!!int ",
    "'",
    '"',
    "\\",
    "#",
    "---\n",
    "...",
    "|\n",
    ">-\n",
    "\t",
    "2023-02-30",
    "0x",
    "1e999",
    "~",
    "é",
    "\x00",
    "\ufeff",
]
yaml_soup = st.lists(st.sampled_from(YAML_BITS) | st.text(max_size=5), max_size=40).map("".join)

# A marker the Python soup tries to create: migration must never run any of it.
MARKER = Path(tempfile.mkdtemp(prefix="gcsdvc-fuzz-")) / "PWNED"
PY_BITS = [
    "resources",
    " = ",
    "[",
    "]",
    "{",
    "}",
    "(",
    ")",
    ", ",
    ": ",
    "\n",
    "\t",
    "    ",
    "'bucket'",
    "'files'",
    "'skil_if_exist'",
    "True",
    "None",
    "...",
    "1j",
    "b'x'",
    "0x" + "f" * 1200,
    "f'{x}'",
    "*",
    "**",
    "lambda: ",
    "for x in y",
    ":=",
    "+=",
    ".append(",
    "#",
    '"""',
    "'",
    '"',
    "\\",
    "\\x00",
    "\x00",
    "\ufeff",
    "def f():\n    ",
    "if True:\n    ",
    "import os\n",
    "resources: list = ",
    f"__import__('os').system('touch {MARKER}')",
    f"open({str(MARKER)!r}, 'w')",
]
python_soup = st.lists(st.sampled_from(PY_BITS) | st.text(max_size=5), max_size=40).map("".join)
python_literals = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        st.text(max_size=20),
        st.binary(max_size=3),
        st.complex_numbers(max_magnitude=10),
        st.just(...),
    ),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=3).map(tuple)
        | st.frozensets(st.integers(), max_size=3).map(set)
        | st.dictionaries(st.text(max_size=8) | st.integers(), inner, max_size=4)
    ),
    max_leaves=20,
)


def check(text: str) -> Manifest | None:
    """parse_manifest either returns a Manifest or raises ManifestError with one-line problems."""
    try:
        manifest = parse_manifest(text, FILE, ROOT)
    except ManifestError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert problem.startswith("params.yaml"), problem
            assert "\n" not in problem and "\r" not in problem, problem
            assert len(problem) < 2000, problem
        return None
    assert isinstance(manifest, Manifest)
    for warning in manifest.warnings:
        assert "\n" not in warning
    return manifest


# -- parse_manifest never crashes ------------------------------------------------------


@FUZZ
@given(values)
def test_any_yaml_structure(value: Any) -> None:
    check(yaml.safe_dump(value, allow_unicode=True))


@FUZZ
@given(manifest_like)
def test_any_manifest_shaped_structure(value: dict[str, Any]) -> None:
    check(yaml.safe_dump(value, allow_unicode=True, sort_keys=False))


@FUZZ
@given(st.text())
def test_any_text(text: str) -> None:
    check(text)


@FUZZ
@given(yaml_soup)
def test_yaml_token_soup(text: str) -> None:
    check(text)


# -- valid manifests come through intact ---------------------------------------------

segment = st.text(alphabet=st.sampled_from("abcxyz019_-. 'データ"), min_size=1, max_size=6).filter(
    lambda s: s not in (".", "..") and not s.endswith(".dvc") and s != ".gitignore"
)
path = st.lists(segment, min_size=1, max_size=3).map("/".join)
bucket = st.from_regex(r"\A[a-z0-9][a-z0-9_-]{1,20}[a-z0-9]\Z").filter(
    lambda b: not b.startswith("goog") and "google" not in b
)
# Without NEL and the Unicode line separators: PyYAML's own dumper, used to write these test
# documents, does not read them back unchanged (gcsdvc.migrate works around that itself).
description = st.text(
    st.characters(blacklist_categories=["Cs"], blacklist_characters="\x85\u2028\u2029"),
    max_size=40,
)


@st.composite
def valid_entries(draw: st.DrawFn) -> list[dict[str, Any]]:
    out = []
    for index in range(draw(st.integers(0, 4))):
        entry: dict[str, Any] = {
            "bucket": draw(bucket),
            "blob": draw(path),
            # An index-only folder per entry, so entries never collide with each other.
            "destination": f"e{index}/{draw(path)}",
        }
        if draw(st.booleans()):
            entry["name"] = f"exp-{index}"
        if draw(st.booleans()):
            entry["subblob"] = draw(path)
        files = draw(st.none() | st.lists(path, min_size=1, max_size=4, unique=True))
        if files is not None:
            # Drop files that would also be a folder of another file.
            kept = [f for f in files if not any(g.startswith(f + "/") for g in files)]
            entry["files"] = kept
        if draw(st.booleans()):
            entry[draw(st.sampled_from(["skip_if_exist", "skil_if_exist"]))] = draw(st.booleans())
        if draw(st.booleans()):
            entry["description"] = draw(description)
        out.append(entry)
    return out


@FUZZ
@given(valid_entries())
def test_valid_manifests_parse_to_what_was_written(entries: list[dict[str, Any]]) -> None:
    manifest = check(yaml.safe_dump({"resources": entries}, allow_unicode=True))
    assert manifest is not None
    assert len(manifest.resources) == len(entries)
    legacy = sum("skil_if_exist" in e for e in entries)
    assert len(manifest.warnings) == legacy
    for res, entry in zip(manifest.resources, entries, strict=True):
        assert res.bucket == entry["bucket"]
        assert res.blob == entry["blob"]
        assert res.subblob == entry.get("subblob", "")
        assert res.destination == entry["destination"]
        assert res.name == entry.get("name", entry["destination"])
        assert res.files == (tuple(entry["files"]) if "files" in entry else None)
        skip = entry.get("skip_if_exist", entry.get("skil_if_exist", True))
        assert res.skip_if_exist is skip
        assert res.description == entry.get("description", "")


@FUZZ
@given(valid_entries())
def test_migrating_a_valid_old_manifest_gives_the_same_entries(
    entries: list[dict[str, Any]],
) -> None:
    source = "resources = [\n" + "".join(f"\t{entry!r},\n" for entry in entries) + "]\n"
    text = migrate_source(source, "old.py")
    direct = check(yaml.safe_dump({"resources": entries}, allow_unicode=True))
    migrated = check(text)
    assert direct is not None and migrated is not None
    # Identical but for the lines (the converted file starts with a comment header).
    assert [replace(r, line=None) for r in migrated.resources] == [
        replace(r, line=None) for r in direct.resources
    ]
    assert migrated.warnings == ()  # the old key was renamed


# -- migrate_source never crashes and never runs anything --------------------------------


def check_migrate(source: str) -> str | None:
    try:
        text = migrate_source(source, "old.py")
    except ManifestError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert problem.startswith("old.py"), problem
            assert "\n" not in problem, problem
        return None
    assert isinstance(text, str)
    assert isinstance(yaml.safe_load(text), dict)
    return text


@FUZZ
@given(st.text())
def test_migrate_any_text(source: str) -> None:
    check_migrate(source)


@FUZZ
@given(python_soup)
def test_migrate_python_soup(source: str) -> None:
    check_migrate(source)
    assert not MARKER.exists()


def plain(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


@FUZZ
@given(st.lists(python_literals, max_size=4) | python_literals)
def test_migrate_any_literal(value: Any) -> None:
    text = check_migrate(f"resources = {value!r}")
    if text is not None:  # NaN and infinities are names in a repr, so refused: == works
        assert yaml.safe_load(text)["resources"] == plain(list(value))
