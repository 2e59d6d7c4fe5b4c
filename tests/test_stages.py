"""The typed import stage and stage I/O, in process.

That the stages match what ``dvc import-url`` writes and DVC's own stage md5 is
checked end to end in ``test_sync.py::test_stage_matches_dvc_import_url``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from gcsdvc import files, stages
from gcsdvc.errors import DvcRepoError
from gcsdvc.git import IgnoreBatch
from gcsdvc.hashes import dvc_tree
from gcsdvc.manifest import Resource
from gcsdvc.model import RemoteObject
from gcsdvc.stages import ImportStage, StageCache

RES = Resource("exp1", "bkt", "proj", "run", ("sub/a.txt",), "exp1", True, "学習率 0.01")
DEP = {"etag": "abc", "size": 5, "version_id": "1700000000000001"}
MD5 = "d41d8cd98f00b204e9800998ecf8427e"
OBJ = RemoteObject("bkt", "proj/run/sub/a.txt", 5, MD5, None, DEP, generation="1700000000000001")

# What `dvc import-url gs://bkt/proj/run/sub/a.txt a.txt` writes, plus desc and meta.
PINNED = """\
desc: 学習率 0.01
md5: {md5}
frozen: true
deps:
- etag: abc
  size: 5
  version_id: '1700000000000001'
  hash: md5
  path: gs://bkt/proj/run/sub/a.txt
outs:
- md5: d41d8cd98f00b204e9800998ecf8427e
  size: 5
  hash: md5
  path: a.txt
meta:
  gcsdvc:
    name: exp1
    bucket: bkt
    blob: proj
    subblob: run
    file: sub/a.txt
"""


def pinned() -> ImportStage:
    return stages.file_stage(RES, "sub/a.txt", "data/exp1/sub/a.txt", OBJ, MD5, pinned=True)


def test_file_stage_is_written_in_dvc_import_url_shape() -> None:
    stage = pinned()
    assert stage.dump() == PINNED.format(md5=stage.raw["md5"])
    assert stage.raw["md5"] == stages.stage_md5(stage.raw)


@pytest.mark.parametrize("pinned", [True, False])
@pytest.mark.parametrize("frozen", [True, False])
@pytest.mark.parametrize("md5", [MD5, None])
@pytest.mark.parametrize("remote", [None, "store"])
def test_a_new_file_stage_is_what_conform_makes_of_the_bare_import(
    pinned: bool, frozen: bool, md5: str | None, remote: str | None
) -> None:
    """file_stage builds the conformed mapping at once; conform of the bare ``dvc import-url``
    stage is the rule it must give."""
    local = "data/exp1/sub/a.txt"
    out: dict[str, Any] = {"md5": md5, "size": OBJ.size} if md5 else {}
    out = {**out, "hash": "md5", "path": "a.txt", **({"remote": remote} if remote else {})}
    bare = ImportStage.from_dict(
        {
            "frozen": frozen,
            "deps": [{**OBJ.dep_info, "hash": "md5", "path": RES.source("sub/a.txt")}],
            "outs": [out],
        }
    )
    made = stages.file_stage(RES, "sub/a.txt", local, OBJ, md5, pinned, frozen, remote=remote)
    assert made.raw == stages.conform(bare, RES, "sub/a.txt", pinned).raw
    assert list(made.raw) == list(stages.conform(bare, RES, "sub/a.txt", pinned).raw)


def test_fields_are_read_once() -> None:
    stage = pinned()
    assert (stage.source, stage.etag, stage.generation) == (
        "gs://bkt/proj/run/sub/a.txt",
        "abc",
        "1700000000000001",
    )
    assert (stage.md5, stage.size, stage.out, stage.frozen, stage.is_folder) == (
        MD5,
        5,
        "a.txt",
        True,
        False,
    )
    assert stage.identity == stages.Identity("exp1", "bkt", "proj", "run", "sub/a.txt")
    assert (stage.name, stage.description, stage.nfiles) == ("exp1", "学習率 0.01", None)


def test_load_and_dump_round_trip_byte_for_byte(tmp_path: Path) -> None:
    path = tmp_path / "a.txt.dvc"
    text = PINNED.format(md5="a" * 32)
    path.write_text(text, encoding="utf-8")
    stage = ImportStage.load(path)
    assert stage is not None
    stage.write(tmp_path / "b.txt.dvc")
    assert (tmp_path / "b.txt.dvc").read_text(encoding="utf-8") == text
    assert ImportStage.load(tmp_path / "missing.dvc") is None


def test_unpinned_drops_generation_keeps_frozen_and_the_data_hash() -> None:
    stage = pinned()
    loose = stages.conform(stage, RES, "sub/a.txt", pinned=False)
    # Frozen in both modes (issue 8): no DVC command but `dvc update` follows upstream.
    assert (loose.generation, loose.frozen) == (None, True)
    assert loose.raw["md5"] != stage.raw["md5"]
    again = stages.conform(loose, RES, "sub/a.txt", pinned=True, obj=OBJ)
    assert again == stage  # the generation comes back from the listing, in DVC's key order
    other = RemoteObject("bkt", "x", 5, None, None, {**DEP, "etag": "new"})
    assert stages.conform(loose, RES, "sub/a.txt", pinned=True, obj=other).generation is None


def test_folder_imports_stay_frozen_and_have_no_file() -> None:
    folder = ImportStage.from_dict(
        {
            "frozen": True,  # as `dvc import-url` writes it
            "deps": [{"md5": "x.dir", "path": "gs://bkt/proj/run"}],
            "outs": [{"path": "exp1"}],
        }
    )
    assert folder.is_folder
    shaped = stages.conform(folder, RES, None, pinned=False)
    assert shaped.frozen
    unfrozen = ImportStage.from_dict({k: v for k, v in folder.raw.items() if k != "frozen"})
    assert not stages.conform(unfrozen, RES, None, pinned=True).frozen  # a user's unfreeze stays
    assert shaped.identity == stages.Identity("exp1", "bkt", "proj", "run")
    assert "file" not in shaped.raw["meta"]["gcsdvc"]


FOLDER_RES = Resource("exp1", "bkt", "proj", "run", None, "exp1", True, "")
FOLDER_OBJECTS = {
    rel: RemoteObject("bkt", f"proj/run/{rel}", size, None, None, info, generation=gen)
    for rel, size, gen in (("b/x.txt", 4, "1700000000000002"), ("a.txt", 5, "1700000000000001"))
    for info in [{"etag": f"e-{rel}", "size": size, "version_id": gen}]
}


def folder(pinned: bool) -> ImportStage:
    """A folder stage as a sync writes it for ``FOLDER_OBJECTS``, in either mode."""
    records = {rel: obj.dep_info for rel, obj in FOLDER_OBJECTS.items()}
    out = {"md5": "f.dir", "size": 9, "nfiles": 2, "hash": "md5", "path": "exp1"}
    raw = {
        "frozen": True,
        "deps": [stages.folder_dep("gs://bkt/proj/run", records, pinned)],
        "outs": [out],
    }
    return stages.conform(ImportStage.from_dict(raw), FOLDER_RES, None, pinned)


def test_a_folder_stage_is_written_as_dvc_import_url_writes_it_in_either_mode() -> None:
    """Pinned: `dvc import-url --version-aware`'s shape; unpinned: the `.dir` of etags."""
    etags = dvc_tree("etag", {"a.txt": "e-a.txt", "b/x.txt": "e-b/x.txt"}).oid
    assert folder(True).dump().split("meta:")[0] == (
        f"md5: {folder(True).raw['md5']}\nfrozen: true\ndeps:\n- hash: md5\n"
        "  path: gs://bkt/proj/run\n  fs_config:\n    version_aware: true\n  files:\n"
        "  - relpath: a.txt\n    etag: e-a.txt\n    size: 5\n    version_id: '1700000000000001'\n"
        "  - relpath: b/x.txt\n    etag: e-b/x.txt\n    size: 4\n"
        "    version_id: '1700000000000002'\n"
        "outs:\n- md5: f.dir\n  size: 9\n  nfiles: 2\n  hash: md5\n  path: exp1\n  push: false\n"
    )
    assert folder(False).dump().split("meta:")[0] == (
        f"md5: {folder(False).raw['md5']}\nfrozen: true\ndeps:\n- md5: {etags}\n  size: 9\n"
        "  nfiles: 2\n  hash: md5\n  path: gs://bkt/proj/run\n"
        "outs:\n- md5: f.dir\n  size: 9\n  nfiles: 2\n  hash: md5\n  path: exp1\n"
    )
    assert (folder(True).versioned, folder(False).versioned) == (True, False)
    for pinned in (True, False):
        assert stages.folder_sources(stages.first_entry(folder(pinned).raw["deps"])) == etags


OTHER_ETAGS = {
    rel: RemoteObject("bkt", obj.name, obj.size, None, None, {**obj.dep_info, "etag": "new"})
    for rel, obj in FOLDER_OBJECTS.items()
}


@pytest.mark.parametrize(
    ("was", "pinned", "objects", "becomes"),
    [
        (True, False, None, False),  # the records at hand make the .dir of etags
        (False, True, FOLDER_OBJECTS, True),  # the listing holds the recorded objects
        (False, True, None, False),  # not listed: left for a sync that lists it
        (False, True, OTHER_ETAGS, False),  # other objects: no generation to record
        (True, True, OTHER_ETAGS, True),
        (False, False, FOLDER_OBJECTS, False),
    ],
)
def test_conform_converts_a_folder_stage_between_the_modes(
    was: bool, pinned: bool, objects: Any, becomes: bool
) -> None:
    shaped = stages.conform(folder(was), FOLDER_RES, None, pinned, objects=objects)
    assert shaped == folder(becomes)


def test_with_out_renames_the_output_only() -> None:
    moved = pinned().with_out("b.txt")
    assert moved.out == "b.txt"
    assert moved.raw["deps"] == pinned().raw["deps"]


@pytest.mark.parametrize("meta", [None, "text", {"gcsdvc": "text"}, {"other": {}}])
def test_foreign_stages_have_no_identity(meta: Any) -> None:
    raw: dict[str, Any] = {"deps": [{"path": "gs://b/o", "etag": "e"}], "outs": [{}]}
    if meta is not None:
        raw["meta"] = meta
    stage = ImportStage.from_dict(raw)
    assert stage.identity is None and stage.name == ""


def test_odd_shapes_read_without_crashing() -> None:
    stage = ImportStage.from_dict({"deps": "nonsense", "outs": [None], "desc": 3})
    assert (stage.source, stage.md5, stage.size, stage.description) == ("?", None, None, "3")


@pytest.mark.parametrize(
    ("text", "message"),
    [("a: [", "not a valid DVC stage file: "), ("- a list\n", "not a valid DVC stage file")],
)
def test_unreadable_stage_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "x.dvc"
    path.write_text(text)
    with pytest.raises(DvcRepoError, match=message):
        stages.read_stage(path)
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(DvcRepoError, match="cannot read stage"):
        stages.read_stage(path)


def test_stage_cache_uses_an_entry_only_while_the_file_is_unchanged(tmp_path: Path) -> None:
    (tmp_path / ".dvc" / "tmp").mkdir(parents=True)
    path = tmp_path / "a.txt.dvc"
    pinned().write(path)
    first = StageCache(tmp_path)
    assert first.read(path, "a.txt") == pinned()
    first.save()
    second = StageCache(tmp_path)
    parsed: list[Path] = []
    real = stages.read_stage

    def counting(p: Path) -> dict[str, Any] | None:
        parsed.append(p)
        return real(p)

    stages.read_stage = counting  # type: ignore[assignment]
    try:
        assert second.read(path, "a.txt") == pinned()
        assert parsed == []  # served from the cache
        path.write_text(PINNED.format(md5="b" * 32))
        os.utime(path, ns=(1, 1))
        assert second.read(path, "a.txt").raw["md5"] == "b" * 32  # type: ignore[union-attr]
        assert parsed == [path]
    finally:
        stages.read_stage = real
    (tmp_path / ".dvc" / "tmp" / "gcsdvc-stages.json").write_text("[not a mapping]")
    assert StageCache(tmp_path).old == {}


def test_a_written_stage_is_recorded_so_the_next_run_parses_nothing(tmp_path: Path) -> None:
    (tmp_path / ".dvc" / "tmp").mkdir(parents=True)
    path = tmp_path / "a.txt.dvc"
    StageCache(tmp_path).save()  # nothing read, nothing changed: no file
    assert not (tmp_path / ".dvc" / "tmp" / "gcsdvc-stages.json").exists()
    first = StageCache(tmp_path, keep=True)
    written = pinned().write(path, make_parent=False)
    assert files.file_signature(written) == files.file_signature(path.stat())  # as renamed
    first.record("a.txt", pinned(), written)
    first.save()
    kept = StageCache(tmp_path, keep=True)
    assert kept.new == kept.old and "a.txt" in kept.old
    assert kept.read(path, "a.txt") == ImportStage.load(path) == pinned()


def test_the_stage_index_holds_what_the_api_checks(tmp_path: Path) -> None:
    (tmp_path / ".dvc" / "tmp").mkdir(parents=True)
    path = tmp_path / "a.txt.dvc"
    cache = StageCache(tmp_path, keep=True)
    written = pinned().write(path, make_parent=False)
    cache.record("a.txt", pinned(), written)
    cache.save()
    sig = files.file_signature(written)
    index = files.read_json_cache(files.stage_index_path(tmp_path))
    assert index == {"a.txt": [sig, MD5, pinned().source]}
    files.stage_index_path(tmp_path).unlink()
    read = StageCache(tmp_path)  # the cache unchanged, the index gone: written again
    assert read.read(path, "a.txt") == pinned()
    read.save()
    assert files.read_json_cache(files.stage_index_path(tmp_path)) == index


@pytest.mark.parametrize(
    ("data", "stage", "hashed", "source"),
    [
        ([1, 2, 3], [4, 5, 6], [[1, 2, 3], MD5], "gs://b/a"),
        ([1, 2, 9], [4, 5, 6], [[1, 2, 3], MD5], None),  # the file changed since it was hashed
        ([1, 2, 3], [4, 5, 9], [[1, 2, 3], MD5], None),  # the stage changed since
        ([1, 2, 3], [4, 5, 6], [[1, 2, 3], "f" * 32], None),  # other bytes than recorded
        ([1, 2, 3], [4, 5, 6], None, None),  # never hashed
    ],
)
def test_vouched(data: list[int], stage: list[int], hashed: Any, source: str | None) -> None:
    assert stages.vouched(data, stage, hashed, [[4, 5, 6], MD5, "gs://b/a"]) == source


def test_a_new_stage_is_one_write_an_old_one_is_replaced_and_empty_is_none(
    tmp_path: Path,
) -> None:
    path = tmp_path / "d" / "a.txt.dvc"
    first = pinned().write(path)
    assert path.read_text() == pinned().dump()
    assert files.file_signature(first) == files.file_signature(path.stat())
    path.write_text("")  # what a kill while creating it leaves
    assert ImportStage.load(path) is None
    again = pinned().write(path)  # over an existing file: through a rename
    assert again.st_ino != first.st_ino and ImportStage.load(path) == pinned()
    assert [p.name for p in path.parent.iterdir()] == ["a.txt.dvc"]  # no temporary left


ODD_TEXT = [
    "plain words, (with) a-b_c/d.e+f=g@h:i",
    "",
    " leading space",
    "trailing space ",
    "true",
    "null",
    "~",
    "123",
    "0x1F",
    "1e3",
    "2024-01-01",
    "key: value",
    "ends with colon:",
    "a #comment",
    "#hash",
    "- dash",
    "-dash",
    "? question",
    "...dots",
    "---dashes",
    "'quoted'",
    '"double"',
    "multi\nline",
    "tab\there",
    "学習率 0.01",
    "=",
    "yes",
    "<<",
    "x" * 1500,
    "ok" + " ok" * 600,
]


def usual(pin: bool = True) -> ImportStage:
    res = Resource("exp1", "bkt", "proj", "", ("a.txt",), "exp1", True, "run 7")
    return stages.file_stage(res, "a.txt", "data/a.txt", OBJ, MD5, pinned=pin)


def test_usual_stages_are_written_without_pyyaml() -> None:
    for pin in (True, False):
        stage = usual(pin)
        assert "".join(stages._block(stage.raw, "")) == yaml.dump(
            stage.raw, sort_keys=False, allow_unicode=True, width=4096
        )


@pytest.mark.parametrize("text", ODD_TEXT)
def test_dump_is_what_pyyaml_writes(text: str) -> None:
    res = Resource("exp1", "bkt", "proj", "run", ("sub/a.txt",), "exp1", True, text)
    stage = stages.file_stage(res, "sub/a.txt", "data/a.txt", OBJ, MD5, pinned=True)
    for raw in (stage.raw, {**stage.raw, "meta": {"gcsdvc": {"name": text}}}):
        dumped = ImportStage.from_dict(raw).dump()
        assert dumped == yaml.dump(raw, sort_keys=False, allow_unicode=True, width=4096)
        assert yaml.safe_load(dumped) == raw


@pytest.mark.parametrize(
    "extra",
    [
        {"outs": [{"path": "a", "cache": False, "remote": "r"}]},
        {"outs": []},
        {"wdir": {}},
        {"size": 1.5},
        {"deps": [["nested"]]},
        {"deps": [{"path": "a", "x": [{"y": 1}]}]},
        {"deps": [{"path": "a", "x": {"y": {"z": 1}}}]},
        {"md5": None},
    ],
)
def test_dump_of_other_shapes_is_what_pyyaml_writes(extra: dict[str, Any]) -> None:
    raw = {**usual().raw, **extra}
    dumped = ImportStage.from_dict(raw).dump()
    assert dumped == yaml.dump(raw, sort_keys=False, allow_unicode=True, width=4096)


def test_ignore_batch_writes_each_gitignore_once_and_drops_empty_folders(tmp_path: Path) -> None:
    data = tmp_path / "data"
    keep, gone = data / "keep", data / "gone" / "deep"
    keep.mkdir(parents=True)
    gone.mkdir(parents=True)
    (keep / ".gitignore").write_text("/old\n/mine\n")
    batch = IgnoreBatch()
    batch.add(tmp_path, ["data/keep/new file[1]", "data/keep/mine"])
    batch.drop(keep / "old")
    batch.drop(gone / "x")
    assert batch.flush(data, tmp_path) == {keep / ".gitignore"}
    assert (keep / ".gitignore").read_text() == "/mine\n/new file\\[1\\]\n"
    assert not (data / "gone").exists() and data.exists()
    batch.drop(keep / "mine")
    batch.drop(keep / "new file[1]")
    batch.flush(data, tmp_path)
    assert not (keep / ".gitignore").exists()
    assert yaml.safe_load(pinned().dump())["outs"][0]["path"] == "a.txt"


def test_ignore_batch_writes_nothing_without_git_or_for_paths_a_rule_ignores(
    tmp_path: Path,
) -> None:
    import subprocess

    data = tmp_path / "data"
    data.mkdir()
    batch = IgnoreBatch()
    batch.add(tmp_path, ["data/a.csv"])
    assert batch.flush(data, None) == set()  # `dvc init --no-scm`: DVC writes none either
    assert not (data / ".gitignore").exists()
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text("*.csv\n")
    batch.add(tmp_path, ["data/a.csv", "data/b.txt"])
    assert batch.flush(data, tmp_path) == {data / ".gitignore"}
    assert (data / ".gitignore").read_text() == "/b.txt\n"
