"""Round-trip edits of the manifest text: appending entries, merging a migrated manifest."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from ruamel.yaml import YAML
from test_fuzz import FUZZ, bucket, path, valid_entries

from gcsdvc import ManifestError
from gcsdvc.manifest import parse_manifest
from gcsdvc.manifest_edit import append_entries, entry_text, merge_resources, write_atomic

NEW = {
    "name": "lr-0.5",
    "bucket": "b1",
    "blob": "mnist",
    "subblob": "lr-0.5",
    "files": ["*.json", "eval/a b.csv"],
    "destination": "mnist/lr-0.5",
    "skip_if_exist": True,
    "description": "学習率 0.5: fast",
}
NEW_LINES = """\
  - name: lr-0.5
    bucket: b1
    blob: mnist
    subblob: lr-0.5
    files:
      - '*.json'
      - eval/a b.csv
    destination: mnist/lr-0.5
    skip_if_exist: true
    description: '学習率 0.5: fast'
"""
# The same entry in a new list: DVC's layout (ruamel.yaml's defaults, as `dvc exp run -S`
# writes params.yaml back), where YAML 1.2 reads plain what PyYAML's output quoted.
DVC_LINES = """\
- name: lr-0.5
  bucket: b1
  blob: mnist
  subblob: lr-0.5
  files:
  - '*.json'
  - eval/a b.csv
  destination: mnist/lr-0.5
  skip_if_exist: true
  description: '学習率 0.5: fast'
"""

# A params.yaml as users keep it: DVC params around the manifest, comments everywhere,
# odd quoting, blank lines, a trailing comment after the list, no newline at the end.
PARAMS = """\
# Parameters of the training pipeline (dvc.yaml reads train.*)
train:
  lr: 0.01      # tuned by hand
  layers: [64, 32]
  name: 'cnn'   # single quotes kept

gcsdvc:
  data_dir: "data"

resources:
  # the first run
  - name: "exp-1"
    bucket: b1
    blob: 'mnist'
    subblob: "lr-0.1"
    files:
      - metrics.json   # the summary
    destination: mnist/lr-0.1
    description: "only the metrics, 'quoted'"

  - name: "exp-2"
    bucket: b1
    blob: 'mnist'
    subblob: "lr-0.01"
    destination: mnist/lr-0.01
    description: "whole prefix"
# evaluation settings follow
evaluate:
  split: test"""

PARAMS_AFTER = PARAMS.replace(
    '    description: "whole prefix"\n',
    '    description: "whole prefix"\n'
    "\n"
    '  - name: "lr-0.5"\n'
    "    bucket: b1\n"
    "    blob: 'mnist'\n"
    '    subblob: "lr-0.5"\n'
    "    files:\n"
    "      - '*.json'\n"
    "      - eval/a b.csv\n"
    "    destination: mnist/lr-0.5\n"
    "    skip_if_exist: true\n"
    '    description: "学習率 0.5: fast"\n',
)


@pytest.mark.parametrize(
    ("before", "after"),
    [
        pytest.param(PARAMS, PARAMS_AFTER, id="params-with-comments-and-quoting"),
        pytest.param("", "resources:\n" + DVC_LINES, id="empty-file"),
        pytest.param("train:\n  lr: 1\n", "train:\n  lr: 1\nresources:\n" + DVC_LINES, id="no-key"),
        pytest.param("a: 1", "a: 1\nresources:\n" + DVC_LINES, id="no-key-no-newline"),
        pytest.param("resources:\n", "resources:\n" + DVC_LINES, id="null"),
        pytest.param(
            "resources:  # here\nx: 1\n",
            "resources:  # here\n" + DVC_LINES + "x: 1\n",
            id="null-commented",
        ),
        pytest.param("resources: ~\n", "resources:\n" + DVC_LINES, id="tilde"),
        pytest.param(
            "resources: []\nx: 1\n", "resources:\n" + DVC_LINES + "x: 1\n", id="empty-flow"
        ),
        pytest.param(
            "resources:\n- name: a\n  bucket: b1\n  blob: c\n  destination: d\n",
            "resources:\n- name: a\n  bucket: b1\n  blob: c\n  destination: d\n" + entry_text(NEW),
            id="indentless",
        ),
        pytest.param(
            "resources:\r\n    -   name: a\r\n        bucket: b1\r\n        blob: c\r\n"
            "        destination: d\r\n",
            "resources:\r\n    -   name: a\r\n        bucket: b1\r\n        blob: c\r\n"
            "        destination: d\r\n    -   name: lr-0.5\r\n        bucket: b1\r\n"
            "        blob: mnist\r\n        subblob: lr-0.5\r\n        files:\r\n"
            "          - '*.json'\r\n          - eval/a b.csv\r\n"
            "        destination: mnist/lr-0.5\r\n        skip_if_exist: true\r\n"
            "        description: '学習率 0.5: fast'\r\n",
            id="crlf-wide-indent",
        ),
        pytest.param(
            "resources:\n  - {name: a, bucket: b1, blob: c, destination: d}\n",
            "resources:\n  - {name: a, bucket: b1, blob: c, destination: d}\n" + NEW_LINES,
            id="flow-entry",
        ),
        pytest.param(
            "resources:\n  - name: a\n    files: [x, 'y']\n    bucket: b1\n    blob: c\n"
            "    destination: d\n",
            "resources:\n  - name: a\n    files: [x, 'y']\n    bucket: b1\n    blob: c\n"
            "    destination: d\n  - name: lr-0.5\n    files: ['*.json', 'eval/a b.csv']\n"
            "    bucket: b1\n    blob: mnist\n    subblob: lr-0.5\n    destination: mnist/lr-0.5\n"
            "    skip_if_exist: true\n    description: '学習率 0.5: fast'\n",
            id="flow-files-and-key-order",
        ),
        pytest.param(
            "resources:\n  - name: a\n    bucket: b1\n    blob: c\n    destination: d\n"
            "    description: |\n      two\n      lines\n\nafter: 1\n",
            "resources:\n  - name: a\n    bucket: b1\n    blob: c\n    destination: d\n"
            "    description: |\n      two\n      lines\n" + NEW_LINES + "\nafter: 1\n",
            id="block-scalar-last",
        ),
        pytest.param(
            "resources:\n  - name: a\n    files:\n      - x\n      # - y, for later\n"
            "  # next: b\n# top-level comment\n",
            "resources:\n  - name: a\n    files:\n      - x\n      # - y, for later\n"
            + NEW_LINES
            + "  # next: b\n# top-level comment\n",
            id="the-last-entry-keeps-its-comments",
        ),
        pytest.param(
            "resources: [{name: a, bucket: b1, blob: c, destination: d}]\n",
            "resources: [{name: a, bucket: b1, blob: c, destination: d}, "
            '{"name": "lr-0.5", "bucket": "b1", "blob": "mnist", "subblob": "lr-0.5", '
            '"files": ["*.json", "eval/a b.csv"], "destination": "mnist/lr-0.5", '
            '"skip_if_exist": true, "description": "学習率 0.5: fast"}]\n',
            id="flow-list",
        ),
    ],
)
def test_append_changes_only_the_new_lines(before: str, after: str) -> None:
    assert append_entries(before, [NEW]) == after


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("plain text", "plain text"),
        ("true", "'true'"),
        ("123", "'123'"),
        ("a: b", "'a: b'"),
        ("#hash", "'#hash'"),
        ("日本語の説明", "日本語の説明"),
        ("two\nlines", '"two\\nlines"'),
        ("line\u2028separator", '"line\\Lseparator"'),
        ("tab\there", '"tab\\there"'),
        ("", "''"),
    ],
)
def test_descriptions_are_readable_and_read_back(value: str, written: str) -> None:
    entry = {"bucket": "b1", "blob": "c", "destination": "d", "description": value}
    text = append_entries("", [entry])
    assert text.splitlines()[-1] == f"  description: {written}"
    assert yaml.safe_load(text)["resources"][0]["description"] == value


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{resources: []}", "the manifest must be a block mapping"),
        ("- a\n- b\n", "the manifest must be a block mapping"),
        ("resources: 3\n", "'resources' must be a list of entries"),
        ("resources: [\n", "invalid YAML"),
    ],
)
def test_append_refuses_what_it_cannot_edit_in_place(text: str, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        append_entries(text, [NEW], "params.yaml")


def test_entry_text_is_the_list_item_at_column_zero() -> None:
    assert entry_text(NEW) == DVC_LINES


MIGRATED = "# converted\nresources:\n- bucket: b1\n  blob: c\n  destination: d\n"


@pytest.mark.parametrize(
    ("existing", "force", "merged"),
    [
        ("", False, MIGRATED),
        (
            "# dvc params\ntrain:\n  lr: 0.1  # hand-tuned\n",
            False,
            "# dvc params\ntrain:\n  lr: 0.1  # hand-tuned\n" + MIGRATED,
        ),
        ("train: {lr: 1}", False, "train: {lr: 1}\n" + MIGRATED),
        (
            "# top\nresources:\n- bucket: old\n  blob: x\n  destination: y\n# keep\nother: 'x'\n",
            True,
            "# top\n" + MIGRATED.removeprefix("# converted\n") + "# keep\nother: 'x'\n",
        ),
        ("just text\n", True, MIGRATED),
    ],
)
def test_merge_keeps_the_other_keys_and_comments(existing: str, force: bool, merged: str) -> None:
    assert merge_resources(existing, MIGRATED, force=force, shown="params.yaml") == merged


@pytest.mark.parametrize(
    ("existing", "message"),
    [
        ("resources: []\n", "params.yaml already has a 'resources' list; pass --force"),
        ("just text\n", "params.yaml exists and is not a YAML mapping; pass --force"),
    ],
)
def test_merge_refuses_without_force(existing: str, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        merge_resources(existing, MIGRATED, force=False, shown="params.yaml")


def test_write_atomic_keeps_the_mode_and_leaves_no_temporary(tmp_path: Path) -> None:
    (tmp_path / "work").mkdir()
    target = tmp_path / "work" / "params.yaml"
    target.write_text("a: 1\n")
    target.chmod(0o640)
    write_atomic(target, "a: 2\r\n")
    assert target.read_bytes() == b"a: 2\r\n"
    assert target.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in target.parent.iterdir()] == ["params.yaml"]


# -- any valid manifest + add = the same manifest plus one entry ---------------------

FILE = Path("params.yaml")


@st.composite
def styled_manifests(draw: st.DrawFn) -> str:
    """A valid manifest, dumped in one of many styles, with comments and other keys around."""
    doc: dict[str, Any] = {"resources": draw(valid_entries())}
    if draw(st.booleans()):
        doc = {"train": {"lr": 0.1, "name": "it's"}, **doc}
    if draw(st.booleans()):
        doc["evaluate"] = {"split": "test"}
    dumper = YAML()
    dumper.allow_unicode = True
    dumper.width = 4096
    mapping = draw(st.sampled_from([2, 4]))
    offset = draw(st.sampled_from([0, 2]))
    dumper.indent(mapping=mapping, sequence=offset + 2, offset=offset)
    out = io.StringIO()
    dumper.dump(doc, out)
    text = out.getvalue()
    if draw(st.booleans()):
        text = "# a comment at the top\n" + text
    if draw(st.booleans()):
        text = text.replace("\n- ", "\n\n- ").replace("\n  - ", "\n\n  - ")
    if draw(st.booleans()):
        text = text.rstrip("\n")
    return text


new_entries = st.fixed_dictionaries(
    {
        "name": st.just("added"),
        "bucket": bucket,
        "blob": path,
        "destination": path.map("new/{}".format),
    },
    optional={
        "subblob": path,
        "files": st.lists(path, min_size=1, max_size=3, unique=True).filter(
            lambda fs: not any(g.startswith(f + "/") for f in fs for g in fs)
        ),
        "skip_if_exist": st.booleans(),
        "description": st.text(st.characters(blacklist_categories=["Cs"]), max_size=30),
    },
)


@FUZZ
@given(styled_manifests(), new_entries)
def test_any_manifest_plus_add_is_that_manifest_plus_one_entry(
    text: str, entry: dict[str, Any]
) -> None:
    before = parse_manifest(text, FILE, FILE.parent)
    new = append_entries(text, [entry])
    after = parse_manifest(new, FILE, FILE.parent)
    assert [replace(r, line=None) for r in after.resources[:-1]] == [
        replace(r, line=None) for r in before.resources
    ]
    added = after.resources[-1]
    assert (added.name, added.bucket, added.blob, added.destination) == (
        entry["name"],
        entry["bucket"],
        entry["blob"],
        entry["destination"],
    )
    assert added.subblob == entry.get("subblob", "")
    assert added.files == (tuple(entry["files"]) if "files" in entry else None)
    assert added.description == entry.get("description", "")
    # Every byte of the old text is still there, in one piece before and one after the entry
    # (but for the '[]' of an empty list, which becomes a block list).
    text = text.replace("resources: []", "resources:")
    assert _common(text, new) + _common(text[::-1], new[::-1]) >= len(text)


def _common(a: str, b: str) -> int:
    """How many leading characters two strings share."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _dvc_round_trip(text: str) -> str:
    """What DVC writes back when it changes a param (``modify_yaml``: load, then dump)."""
    from dvc.utils.serialize._yaml import _dump, parse_yaml_for_update

    out = io.StringIO()
    _dump(parse_yaml_for_update(text, "params.yaml"), out)
    return out.getvalue()


def _yaml11_safe(value: Any) -> bool:
    """A value DVC writes back so that PyYAML reads the same (no 'on', '1:20', line separators)."""
    if isinstance(value, list):
        return all(_yaml11_safe(v) for v in value)
    if not isinstance(value, str):
        return True
    if any(c in value for c in "\x85\u2028\u2029"):
        return False
    try:  # ruamel cannot read some plain scalars PyYAML writes ('-_' reads as a broken int)
        back = _dvc_round_trip(yaml.safe_dump({"v": value}))
    except (ValueError, IndexError):
        return False
    return bool(yaml.safe_load(back) == {"v": value})


@FUZZ
@given(valid_entries(), new_entries, st.booleans())
def test_add_to_a_manifest_in_dvc_layout_is_what_dvc_writes_back(
    entries: list[dict[str, Any]], entry: dict[str, Any], params: bool
) -> None:
    doc: dict[str, Any] = {"train": {"lr": 0.1}} if params else {}
    text = append_entries(_dvc_round_trip(yaml.safe_dump(doc)) if doc else "", entries)
    new = append_entries(text, [entry])
    _dvc_round_trip(new)  # DVC reads whatever gcsdvc writes
    if all(_yaml11_safe(v) for e in [*entries, entry] for v in e.values()):
        assert _dvc_round_trip(new) == new


@pytest.mark.parametrize("value", ["-_", "._", "+_", "0x_", "1_0"])
def test_a_string_ruamel_reads_as_a_number_is_quoted(value: str) -> None:
    """Plain, ruamel's YAML 1.2 resolver takes it for a number and fails to read it back."""
    entry = {"name": "x", "bucket": "bkt", "blob": "b", "subblob": value, "destination": "d"}
    text = append_entries("", [entry])
    assert f"subblob: '{value}'" in text
    assert _dvc_round_trip(text) == text
    assert yaml.safe_load(text)["resources"][0]["subblob"] == value


# -- removing entries ----------------------------------------------------------

THREE = """\
# the runs
gcsdvc:
  data_dir: data
resources:   # one per run
- name: a
  bucket: b
  # about a
  files:
  - x

# before b
- name: b
  bucket: b

-
  name: c
  bucket: b
train:
  lr: 0.1   # DVC's own param
"""


@pytest.mark.parametrize(
    ("indexes", "after"),
    [
        (
            [0],
            "# the runs\ngcsdvc:\n  data_dir: data\nresources:   # one per run\n# before b\n"
            "- name: b\n  bucket: b\n\n-\n  name: c\n  bucket: b\n"
            "train:\n  lr: 0.1   # DVC's own param\n",
        ),
        (
            [2],
            "# the runs\ngcsdvc:\n  data_dir: data\nresources:   # one per run\n- name: a\n"
            "  bucket: b\n  # about a\n  files:\n  - x\n\n# before b\n- name: b\n  bucket: b\n"
            "train:\n  lr: 0.1   # DVC's own param\n",
        ),
        (
            [0, 2],
            "# the runs\ngcsdvc:\n  data_dir: data\nresources:   # one per run\n# before b\n"
            "- name: b\n  bucket: b\ntrain:\n  lr: 0.1   # DVC's own param\n",
        ),
        (
            [0, 1, 2],
            "# the runs\ngcsdvc:\n  data_dir: data\nresources: []   # one per run\n# before b\n"
            "train:\n  lr: 0.1   # DVC's own param\n",
        ),
        ([], THREE),
    ],
    ids=["first", "last", "first and last", "all", "none"],
)
def test_remove_entries_takes_out_only_their_lines(indexes: list[int], after: str) -> None:
    from gcsdvc.manifest_edit import remove_entries

    assert remove_entries(THREE, indexes) == after


@pytest.mark.parametrize(
    ("text", "indexes", "after"),
    [
        # indented list, CRLF line ends
        (
            "resources:\r\n  - name: a\r\n    bucket: b\r\n  - name: b\r\n    bucket: b\r\n",
            [0],
            "resources:\r\n  - name: b\r\n    bucket: b\r\n",
        ),
        # no final newline, a block scalar in the entry removed
        (
            "resources:\n- name: a\n  description: |\n    two\n    lines\n- name: b",
            [0],
            "resources:\n- name: b",
        ),
        (
            "resources:\n- name: a\n- name: b\n  description: >\n    folded\n",
            [1],
            "resources:\n- name: a\n",
        ),
    ],
    ids=["indented, CRLF", "block scalar first", "block scalar last"],
)
def test_remove_entries_keeps_the_layout_around_them(
    text: str, indexes: list[int], after: str
) -> None:
    from gcsdvc.manifest_edit import remove_entries

    assert remove_entries(text, indexes) == after


def test_remove_entries_refuses_a_flow_list() -> None:
    from gcsdvc.manifest_edit import remove_entries

    with pytest.raises(ManifestError, match="not a block list; please remove them by hand"):
        remove_entries("resources: [{name: a}, {name: b}]\n", [0], "params.yaml")


@FUZZ
@given(entries=valid_entries(), data=st.data())
def test_any_manifest_minus_rm_is_that_manifest_without_those_entries(
    entries: list[dict[str, Any]], data: st.DataObject
) -> None:
    from gcsdvc.manifest_edit import remove_entries, resources_text

    if not entries:
        return
    text = "train:\n  lr: 0.1\n" + resources_text(entries)
    gone = data.draw(st.sets(st.integers(0, len(entries) - 1)))
    kept = [e for n, e in enumerate(yaml.safe_load(text)["resources"]) if n not in gone]
    assert yaml.safe_load(remove_entries(text, gone)) == {"train": {"lr": 0.1}, "resources": kept}
