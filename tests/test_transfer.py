"""File imports (gcsdvc.transfer) in process, against the emulator and a real DVC repository.

Sync drives them end to end; these pin what sync tests cannot reach cheaply: a
restore whose bytes are not the recorded ones, and an interruption mid-fetch.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from conftest import looked_up

from gcsdvc import stages
from gcsdvc.errors import ChecksumMismatch, StorageError
from gcsdvc.manifest import Resource
from gcsdvc.model import RemoteObject
from gcsdvc.plan import Action, Item
from gcsdvc.storage import Storage
from gcsdvc.transfer import Transfer
from gcsdvc.workspace import Workspace, locked_repo

Outcomes = list[tuple[str, Exception | None]]


@pytest.fixture
def res(bucket: str, put: Any) -> Resource:
    for name in ("a.txt", "b.txt"):
        put(f"{bucket}/proj/{name}", f"{name}\n")
    return Resource("exp1", bucket, "proj", "", ("a.txt", "b.txt"), "exp1", True, "")


@pytest.fixture
def ws(repo: Path) -> Iterator[Workspace]:
    with locked_repo(repo) as dvc_repo, Workspace(dvc_repo, repo, repo / "data") as ws:
        yield ws


def listed(storage: Storage, res: Resource) -> dict[str, RemoteObject]:
    return looked_up(storage, res.bucket, res.prefix, res.files or ())


def item(action: Action, res: Resource, file: str, obj: RemoteObject, md5: str = "") -> Item:
    local = f"data/{file}"
    stage = stages.file_stage(res, file, local, obj, md5, pinned=True) if md5 else None
    return Item(action, local, res, file, stage=stage, obj=obj)


def placed(root: Path, local: str) -> tuple[bool, bool]:
    return (root / local).exists(), (root / stages.stage_path(local)).exists()


def test_a_restore_takes_only_the_recorded_bytes(ws: Workspace, res: Resource) -> None:
    storage = Storage()
    objs = listed(storage, res)
    wrong = item(Action.RESTORE, res, "a.txt", objs["a.txt"], md5="0" * 32)
    new = item(Action.ADD, res, "b.txt", objs["b.txt"])
    outcomes: Outcomes = []
    Transfer(ws, storage, pinned=True).fetch(
        [(wrong, objs["a.txt"]), (new, objs["b.txt"])], lambda i, e: outcomes.append((i.local, e))
    )
    errors = dict(outcomes)
    assert isinstance(errors["data/a.txt"], ChecksumMismatch)
    assert str(errors["data/a.txt"]).endswith("the bytes are not the recorded ones (md5 differs)")
    assert errors["data/b.txt"] is None  # the others go on
    assert placed(ws.root, "data/a.txt") == (False, False)
    assert placed(ws.root, "data/b.txt") == (True, True)
    assert list(ws.work.iterdir()) == []  # the unverified download is not kept


class Interrupting:
    """A progress reporter that sends Ctrl-C to the main thread once the first file is placed.

    It runs in the download thread; the main thread, waiting for the downloads,
    gets the KeyboardInterrupt, as it does from a terminal.
    """

    def __init__(self) -> None:
        self.sent = False

    def start(self, files: int, nbytes: int, what: str = "downloading") -> None:
        pass

    def advance(self, files: int = 0, nbytes: int = 0, how: str = "") -> None:
        if files and not self.sent:
            self.sent = True
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

    def finish(self) -> None:
        pass


def test_an_interrupted_fetch_records_nothing_half_placed(ws: Workspace, res: Resource) -> None:
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    storage = Storage(jobs=1)
    objs = listed(storage, res)
    todo = [(item(Action.ADD, res, f, objs[f]), objs[f]) for f in ("a.txt", "b.txt")]
    outcomes: Outcomes = []
    try:
        with pytest.raises(KeyboardInterrupt):
            Transfer(ws, storage, True, Interrupting()).fetch(
                todo, lambda i, e: outcomes.append((i.local, e))
            )
            time.sleep(5)  # the interruption may land just after the fetch returned
    finally:
        signal.signal(signal.SIGINT, previous)
    assert outcomes[:1] == [("data/a.txt", None)]  # told once placed
    for local in ("data/a.txt", "data/b.txt"):
        assert placed(ws.root, local) in ((False, False), (True, True))  # a stage only with data
    assert placed(ws.root, "data/a.txt") == (True, True)
    assert listed(storage, res)  # the download thread outlives the interruption


@pytest.mark.parametrize("deleted", [False, True], ids=["overwritten", "deleted"])
def test_a_gone_generation_names_a_fix_that_can_work(
    ws: Workspace, res: Resource, deleted: bool
) -> None:
    """'gcsdvc update' takes the current object: no fix when there is none."""
    obj = listed(Storage(), res)["a.txt"]
    gone = item(Action.RESTORE, res, "a.txt", obj, md5="1" * 32)  # other bytes than listed
    assert gone.stage is not None
    stage = replace(gone.stage, generation="1", etag="00")  # a generation the bucket lost
    gone = replace(gone, stage=stage, obj=None if deleted else obj)
    with pytest.raises(StorageError) as raised:
        Transfer(ws, Storage(), pinned=True).recorded_object(gone)
    stage_file = "data/a.txt.dvc"
    if deleted:
        assert str(raised.value).endswith(
            f"; gs://{res.bucket}/proj/a.txt itself is deleted too: restore it in the bucket, "
            f"or take the file out of the manifest and remove {stage_file}"
        )
    else:
        assert str(raised.value).endswith(
            f"; take the current object with 'gcsdvc update {res.name}' or skip_if_exist: false"
        )


def test_a_recorded_version_without_generation_names_the_dvc_remote(
    ws: Workspace, res: Resource
) -> None:
    obj = RemoteObject(res.bucket, "proj/a.txt", 6, "1" * 32, None, {"etag": "e", "size": 6})
    gone = replace(item(Action.RESTORE, res, "a.txt", obj, md5="1" * 32), obj=None)  # deleted
    with pytest.raises(StorageError) as raised:
        Transfer(ws, Storage(), pinned=False).recorded_object(gone)
    assert str(raised.value) == (
        f"the recorded version of gs://{res.bucket}/proj/a.txt is gone from the bucket and "
        "not in the DVC cache; 'dvc pull' it from your DVC remote"
    )


@pytest.mark.parametrize(
    "name", ["runs/a/b.txt", "x/y_z-1.~ok", "a b/c", "p#q/r?s", "ü/ß.json", "%41", "", "a+b=c"]
)
def test_an_object_name_is_encoded_as_gcsfs_encodes_it(name: str) -> None:
    from gcsfs.core import quote

    from gcsdvc.download import _quoted

    assert _quoted(name) == quote(name)
