"""The pinning rules in process: stage shape, the mode from config levels, what --check fails on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gcsdvc import stages
from gcsdvc.errors import DvcRepoError
from gcsdvc.manifest import Resource
from gcsdvc.model import RemoteObject
from gcsdvc.remote import _config_files, pinning
from gcsdvc.stages import ImportStage
from gcsdvc.status import FileStatus, State

IDENT = {"name": "e", "bucket": "b", "blob": "p", "subblob": "", "file": "a"}
DEP = {"etag": "e1", "size": 3, "hash": "md5", "path": "gs://b/p/a"}
OUT = {"md5": "m1", "size": 3, "hash": "md5", "path": "a"}
LISTED = RemoteObject(
    "b", "p/a", 3, None, None, {"etag": "e1", "size": 3, "version_id": "7"}, generation="7"
)
RES = {keep: Resource("e", "b", "p", "", ("a",), "e", keep, "") for keep in (True, False)}


def stage(frozen: bool | None = True, **dep: Any) -> ImportStage:
    out: dict[str, Any] = {"md5": "x"}
    if frozen is not None:
        out["frozen"] = frozen
    raw = out | {"deps": [DEP | dep], "outs": [OUT], "meta": {"gcsdvc": IDENT}}
    return ImportStage.from_dict(raw)


def update(before: ImportStage, **raw: Any) -> ImportStage:
    return ImportStage.from_dict(before.raw | raw)


def shape(result: ImportStage) -> tuple[bool, str | None, str | None]:
    return result.frozen, result.generation, result.etag


@pytest.mark.parametrize(
    ("before", "pinned", "committed", "expected"),
    [
        # pinned: DVC's own import-url shape, the generation added from the listing
        (stage(), True, None, (True, "7", "e1")),
        # unpinned: no generation, still frozen
        (stage(version_id="7"), False, None, (True, None, "e1")),
        # a user's `dvc unfreeze` is kept in both modes
        (stage(frozen=None, version_id="7"), True, None, (False, "7", "e1")),
        (stage(frozen=None), False, None, (False, None, "e1")),
        # `dvc commit -f` / `exp run` re-recorded the dep from upstream: the committed one returns
        (stage(etag="e2", size=9, version_id="8"), False, stage(), (True, None, "e1")),
        # ... pinned too: DVC re-pinned it to the newest generation
        (stage(etag="e2", version_id="8"), True, stage(version_id="7"), (True, "7", "e1")),
        # another source than the committed one: the stage's own record stays
        (stage(etag="e2", path="gs://b/p/other"), False, stage(), (True, None, "e2")),
        # `dvc update` took upstream (new outs): its record stays, unpinned
        (
            update(stage(etag="e2", version_id="8"), outs=[OUT | {"md5": "m2"}]),
            False,
            stage(),
            (True, None, "e2"),
        ),
    ],
)
def test_conform_shape(
    before: ImportStage,
    pinned: bool,
    committed: ImportStage | None,
    expected: tuple[bool, str | None, str],
) -> None:
    after = stages.conform(before, RES[True], "a", pinned, LISTED, committed)
    assert shape(after) == expected
    assert after.raw["md5"] == stages.stage_md5(after.raw)


def write_config(path: Path, remote: str | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = f"[core]\n    remote = {remote}\n" if remote else ""
    path.write_text(text + "['remote \"store\"']\n    url = /tmp/store\n")


@pytest.mark.parametrize(
    ("repo_default", "local_default", "setting", "pinned", "warns"),
    [
        (None, None, None, True, ""),
        ("store", None, None, False, ""),
        (None, "store", None, True, ".dvc/config.local only"),  # one machine's config: ignored
        ("store", "other", None, False, ""),
        (None, None, False, False, "a fresh clone cannot 'dvc pull'"),
        ("store", None, True, True, ""),
    ],
)
def test_pinning_reads_committed_config_only(
    tmp_path: Path,
    repo_default: str | None,
    local_default: str | None,
    setting: bool | None,
    pinned: bool,
    warns: str,
) -> None:
    write_config(tmp_path / ".dvc" / "config", repo_default)
    if local_default:
        write_config(tmp_path / ".dvc" / "config.local", local_default)
    mode = pinning(tmp_path, setting)
    assert mode.pinned is pinned
    assert (warns in " ".join(mode.warnings)) if warns else mode.warnings == ()


@pytest.mark.parametrize(
    "env",
    [{}, {"DVC_GLOBAL_CONFIG_DIR": "/srv/dvc-user", "DVC_SYSTEM_CONFIG_DIR": "/srv/dvc-site"}],
)
def test_the_config_files_are_the_ones_dvc_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    """gcsdvc finds DVC's config files without importing DVC: the same four as DVC's."""
    from dvc.config import Config

    for name in ("DVC_GLOBAL_CONFIG_DIR", "DVC_SYSTEM_CONFIG_DIR"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    (tmp_path / ".dvc").mkdir()
    assert _config_files(tmp_path) == Config(dvc_dir=str(tmp_path / ".dvc"), validate=False).files


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("[core\n", "cannot read the DVC config: config file error: "),
        (b"\xff\xfe[core]", "cannot read the DVC config: config file error: "),
    ],
)
def test_an_unreadable_config_is_one_line(tmp_path: Path, text: str | bytes, error: str) -> None:
    config = tmp_path / ".dvc" / "config"
    config.parent.mkdir()
    if isinstance(text, bytes):
        config.write_bytes(text)
    else:
        config.write_text(text)
    with pytest.raises(DvcRepoError, match=error):
        pinning(tmp_path, None)


def test_a_default_remote_is_read_whatever_the_case_of_its_key(tmp_path: Path) -> None:
    config = tmp_path / ".dvc" / "config"
    config.parent.mkdir()
    config.write_text("[CORE]\n    Remote = team\n")
    assert pinning(tmp_path, None).pinned is False


@pytest.mark.parametrize(
    ("state", "skip", "check", "strict"),
    [
        (State.OK, True, False, False),
        (State.CHANGED_UPSTREAM, True, False, True),
        (State.DELETED_UPSTREAM, True, False, True),
        (State.CHANGED_UPSTREAM, False, True, True),
        (State.DELETED_UPSTREAM, False, False, True),  # a sync keeps the copy all the same
        (State.MISSING, True, True, True),
        (State.MODIFIED, True, True, True),
        (State.NOT_SYNCED, True, True, True),
    ],
)
def test_check_fails_only_when_action_is_needed(
    state: State, skip: bool, check: bool, strict: bool
) -> None:
    item = FileStatus("data/e/a", "gs://b/p/a", "a", None, state)
    assert item.needs_action(RES[skip]) is check
    assert item.needs_action(RES[skip], strict=True) is strict


@pytest.mark.parametrize(
    ("state", "skip", "pinned", "fix"),
    [
        (State.CHANGED_UPSTREAM, True, True, ["gcsdvc update e"]),
        (State.CHANGED_UPSTREAM, True, False, ["gcsdvc update e", "dvc push "]),
        (State.CHANGED_UPSTREAM, False, False, ["gcsdvc sync e", "dvc push "]),
        (State.MODIFIED, True, False, ["rm data/e/a", "gcsdvc sync e"]),
        (State.DELETED_UPSTREAM, True, False, []),
        (State.MISSING, True, False, ["gcsdvc sync e"]),
        (State.NOT_SYNCED, True, False, ["gcsdvc sync e", "dvc push "]),
    ],
)
def test_fix_is_a_complete_sequence(state: State, skip: bool, pinned: bool, fix: list[str]) -> None:
    item = FileStatus("data/e/a", "gs://b/p/a", "a", None, state)
    assert [f"{c} {a}" for c, a in item.fix(RES[skip], pinned)] == fix
