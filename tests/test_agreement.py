"""The agreement property (issue 21): status and sync say the same thing about every state.

Over generated workspace states (file and whole-prefix entries, pinned and unpinned; files
deleted, edited, added; stages removed, edited by hand, re-recorded by DVC; ``.gitignore``
lines missing; upstream changed, overwritten (same bytes), deleted, added; ``skip_if_exist``
flipped):

* ``gcsdvc status --check`` passes if and only if ``gcsdvc sync --dry-run`` plans nothing and
  reports nothing;
* after ``gcsdvc sync`` (``--force`` where it reported a conflict) ``status --check`` passes,
  the dry run is quiet again and ``dvc status`` reports nothing for the synced stages.

A base repository is synced and committed once per mode; each example works on a copy of it
(a fresh bucket and base when the example changes upstream, since generations cannot be put
back).
"""

from __future__ import annotations

import json
import math
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import cli, dvc_main, new_repo, run, without_progress
from hypothesis import given, settings
from hypothesis import strategies as st

# entry -> (skip_if_exist, files; None: the whole prefix). Objects are gs://BUCKET/proj/<local>.
ENTRIES: dict[str, tuple[bool, list[str] | None]] = {
    "keep": (True, ["a.txt", "sub/b.txt"]),
    "follow": (False, ["c.txt"]),
    "whole": (True, None),
}
OBJECTS = ["keep/a.txt", "keep/sub/b.txt", "follow/c.txt", "whole/x.txt", "whole/sub/y.txt"]
STAGES = ["keep/a.txt", "keep/sub/b.txt", "follow/c.txt", "whole"]  # data/<stage>.dvc
NEW_FILES = ["keep/new.txt", "whole/new.txt", "whole/sub/new.txt"]
GITIGNORES = ["keep", "keep/sub", "follow", "."]  # data/<folder>/.gitignore
DVC_COMMANDS = ["exp run", "commit", "update keep/a.txt", "update follow/c.txt", "update whole"]
PIPELINE = (  # for `dvc exp run`: a stage that uses a synced file
    "stages:\n  use:\n    cmd: echo used > used.txt\n"
    "    deps: [data/keep/a.txt]\n    outs: [used.txt]\n"
)


@dataclass(frozen=True)
class Mutation:
    """One change to the synced, committed base; applied in the order of ``PHASES``."""

    kind: str
    target: str
    how: str = ""


PHASES = ["skip", "upstream", "dvc", "rm-stage", "hand-edit", "delete", "edit", "add", "gitignore"]

MUTATIONS = [
    *(Mutation("skip", name) for name in ENTRIES),
    *(
        Mutation("upstream", obj, how)
        for obj in [*OBJECTS, "whole/z.txt"]
        for how in ("change", "overwrite", "delete")
    ),
    *(Mutation("dvc", command) for command in DVC_COMMANDS),
    *(Mutation("rm-stage", stage) for stage in STAGES),
    *(Mutation("hand-edit", stage, how) for stage in STAGES for how in ("desc", "md5")),
    *(Mutation(kind, obj) for kind in ("delete", "edit") for obj in OBJECTS),
    *(Mutation("add", path) for path in NEW_FILES),
    *(Mutation("gitignore", folder) for folder in GITIGNORES),
]
MAX_CHANGES = 4
states = st.tuples(
    st.booleans(), st.lists(st.sampled_from(MUTATIONS), max_size=MAX_CHANGES, unique=True)
)

# A third of the loaded profile's examples (tests/conftest.py): 20 in dev, about a minute;
# 100 in CI. Each example is a repository copy and five to seven commands.
AGREEMENT = settings(max_examples=max(1, settings().max_examples // 3))


def manifest_doc(bucket: str, skips: dict[str, bool]) -> dict[str, Any]:
    resources = []
    for name, (_, files) in ENTRIES.items():
        res: dict[str, Any] = {
            "name": name,
            "bucket": bucket,
            "blob": "proj",
            "subblob": name,
            "destination": name,
            "skip_if_exist": skips[name],
            "description": f"the {name} run",
        }
        if files is not None:
            res["files"] = files
        resources.append(res)
    return {"resources": resources}


def write_manifest(root: Path, bucket: str, skips: dict[str, bool]) -> None:
    text = yaml.safe_dump(manifest_doc(bucket, skips), sort_keys=False)
    (root / "params.yaml").write_text(text)


def commit_all(root: Path, message: str) -> None:
    run("git", "add", "-A", cwd=root)
    run("git", "commit", "-qm", message, cwd=root)


class Bases:
    """Synced, committed base repositories, one per (mode, bucket), copied per example."""

    def __init__(self, tmp_path: Path, gcs: Any, put: Callable[[str, str], None]) -> None:
        self.tmp, self.gcs, self.put = tmp_path, gcs, put
        self.built: dict[tuple[bool, str], Path] = {}
        self.shared = {pinned: self.new_bucket() for pinned in (True, False)}
        self.copies = 0

    def new_bucket(self) -> str:
        name = f"a-{uuid.uuid4().hex[:12]}"
        self.gcs.mkdir(name)
        for obj in OBJECTS:
            self.put(f"{name}/proj/{obj}", f"{obj} v1\n")
        return name

    def base(self, pinned: bool, bucket: str) -> Path:
        if (pinned, bucket) not in self.built:
            root = new_repo(self.tmp / f"base-{len(self.built)}")
            if not pinned:
                store = self.tmp / f"store-{len(self.built)}"
                dvc_main("remote", "add", "-d", "store", str(store), cwd=root)
            write_manifest(root, bucket, {name: skip for name, (skip, _) in ENTRIES.items()})
            (root / "dvc.yaml").write_text(PIPELINE)
            cli("sync", cwd=root, check=True)
            dvc_main("repro", cwd=root)
            commit_all(root, "synced")
            self.built[(pinned, bucket)] = root
        return self.built[(pinned, bucket)]

    def copy(self, pinned: bool, fresh_bucket: bool) -> tuple[Path, str]:
        bucket = self.new_bucket() if fresh_bucket else self.shared[pinned]
        self.copies += 1
        root = self.tmp / f"case-{self.copies}"
        shutil.copytree(self.base(pinned, bucket), root, symlinks=True)
        return root, bucket


def apply(root: Path, bucket: str, change: Mutation, put: Any, gcs: Any) -> None:
    data = root / "data"
    if change.kind == "skip":
        doc = yaml.safe_load((root / "params.yaml").read_text())
        for res in doc["resources"]:
            if res["name"] == change.target:
                res["skip_if_exist"] = not res["skip_if_exist"]
        (root / "params.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    elif change.kind == "upstream":
        obj = f"{bucket}/proj/{change.target}"
        if change.how == "delete":
            if gcs.exists(obj):
                gcs.rm(obj)
                gcs.invalidate_cache()
        elif change.how == "overwrite":  # the same bytes, a new generation
            put(obj, f"{change.target} v1\n")
        else:
            put(obj, f"{change.target} v2\n")
    elif change.kind == "dvc":
        command, *target = change.target.split()
        args = ["exp", "run"] if command == "exp" else [command]
        if command == "commit":
            args += ["-f"]
        args += [str(data / f"{t}.dvc") for t in target]
        # A DVC command may refuse a state (an object gone upstream): then it changed nothing
        # we rely on, and the state is still one a user can reach.
        dvc_main(*args, cwd=root, check=False)
    elif change.kind == "rm-stage":
        (data / f"{change.target}.dvc").unlink(missing_ok=True)
    elif change.kind == "hand-edit":
        stage = data / f"{change.target}.dvc"
        if stage.exists():
            text = stage.read_text()
            if change.how == "desc":
                text = text.replace("desc: the", "desc: my own words on the")
            else:
                text = re.sub(r"md5: [0-9a-f]{8}", "md5: 00000000", text, count=1)
            stage.write_text(text)
    elif change.kind in ("delete", "edit"):
        path = data / change.target
        if path.is_file():
            path.unlink()
            if change.kind == "edit":
                path.write_text("my edit\n")
    elif change.kind == "add":
        path = data / change.target
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("my own file\n")
    elif change.kind == "gitignore":
        (data / change.target / ".gitignore").unlink(missing_ok=True)


UNCHANGED = re.compile(r"^\S+ +unchanged \d+$")
DRY_QUIET = "dry run: 0 change(s) planned, nothing to download, nothing written"


def quiet_dry_run(root: Path) -> tuple[bool, str]:
    """Whether ``sync --dry-run`` plans nothing and reports nothing, and what it printed."""
    res = cli("sync", "--dry-run", cwd=root)
    lines = res.stdout.splitlines()
    quiet = (
        res.returncode == 0
        and not without_progress(res.stderr)
        and lines[-1:] == [DRY_QUIET]
        and all(UNCHANGED.match(line) for line in lines[:-1])
    )
    return quiet, f"exit {res.returncode}\n{res.stdout}{res.stderr}"


def check_passes(root: Path) -> tuple[bool, str]:
    res = cli("status", "--check", cwd=root)
    assert res.returncode in (0, 1), res.stderr
    return res.returncode == 0, f"exit {res.returncode}\n{res.stdout}{res.stderr}"


def dvc_changes(root: Path, changes: list[Mutation]) -> dict[str, Any]:
    """What ``dvc status`` reports for the synced stages, but a newer object upstream.

    A kept upstream change (``skip_if_exist: true``) is "update available" to DVC, as it is
    changed-upstream to status (which passes); for a pinned whole-prefix import (DVC's
    versioned folder import) DVC words the same fact "modified", and only a folder whose
    objects changed upstream may say it. DVC cannot check a stage whose object is deleted
    upstream (``dvc status`` exits 255): those stages are left out.
    """
    gone = {m.target for m in changes if m.kind == "upstream" and m.how == "delete"}
    targets = [
        f"data/{stage}.dvc"
        for stage in STAGES
        if (root / "data" / f"{stage}.dvc").exists()
        and not any(obj == stage or obj.startswith(f"{stage}/") for obj in gone)
    ]
    if not targets:
        return {}
    got = json.loads(dvc_main("status", "--json", *targets, cwd=root).stdout or "{}")
    moved = {
        f"data/{stage}.dvc"
        for stage in STAGES
        for m in changes
        if m.kind == "upstream" and m.target.startswith(f"{stage}/")
    }
    return {k: v for k, v in got.items() if not all(_newer_upstream(c, k in moved) for c in v)}


def _newer_upstream(change: Any, folder_moved: bool = False) -> bool:
    words = {"update available", "modified"} if folder_moved else {"update available"}
    return (
        isinstance(change, dict)
        and list(change) == ["changed deps"]
        and set(change["changed deps"].values()) <= words
    )


def assert_agree(root: Path, when: str) -> tuple[bool, str]:
    """That status --check and sync --dry-run agree; whether status passes, and both outputs."""
    passes, status_out = check_passes(root)
    quiet, sync_out = quiet_dry_run(root)
    shown = f"--- status --check\n{status_out}--- sync --dry-run\n{sync_out}"
    assert passes == quiet, (
        f"{when}: status --check {'passes' if passes else 'fails'}, sync --dry-run is "
        f"{'quiet' if quiet else 'not quiet'}\n{shown}"
    )
    return passes, shown


def check_agreement(root: Path, changes: list[Mutation]) -> None:
    assert_agree(root, "before sync")
    res = cli("sync", cwd=root)
    if res.returncode and re.search(r"\bconflict \d+", res.stdout):
        res = cli("sync", "--force", cwd=root)
    assert res.returncode == 0, f"sync failed:\n{res.stdout}{res.stderr}"
    # A file of the user's that no stage owns is reported and kept, never removed (not
    # even by --force): the user's to add or delete, as the warning says.
    for change in changes:
        if change.kind == "add" and not change.target.startswith("whole/"):
            shown = f"warning: data/{change.target}: no stage owns it"
            assert shown in res.stderr, res.stderr
            (root / "data" / change.target).unlink()
    passes, shown = assert_agree(root, "after sync")
    assert passes, f"status --check fails after the sync:\n{res.stdout}{res.stderr}{shown}"
    assert dvc_changes(root, changes) == {}


def ordered(changes: list[Mutation]) -> list[Mutation]:
    return sorted(changes, key=lambda m: PHASES.index(m.kind))


def space() -> int:
    """How many states the strategy can generate: a mode and a set of distinct mutations
    (applied in phase order, so each set is one state)."""
    return 2 * sum(math.comb(len(MUTATIONS), k) for k in range(MAX_CHANGES + 1))


@pytest.fixture
def bases(tmp_path: Path, gcs: Any, put: Any, request: pytest.FixtureRequest) -> Iterator[Bases]:
    made = Bases(tmp_path, gcs, put)
    yield made
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if capture is not None and made.copies > 1:  # the property's size, for the closing note
        with capture.global_and_fixture_disabled():
            print(f"\n{request.node.name}: {made.copies} state(s) of {space():,} checked")


@pytest.mark.slow
@AGREEMENT
@given(state=states)
def test_status_and_sync_agree(
    bases: Bases, put: Any, gcs: Any, state: tuple[bool, list[Mutation]]
) -> None:
    pinned, changes = state
    replay(bases, put, gcs, pinned, changes)


def replay(bases: Bases, put: Any, gcs: Any, pinned: bool, changes: list[Mutation]) -> None:
    """One state, as the property checks it: the regression tests of what it found."""
    root, bucket = bases.copy(pinned, any(m.kind == "upstream" for m in changes))
    for change in ordered(changes):
        apply(root, bucket, change, put, gcs)
    check_agreement(root, changes)
    shutil.rmtree(root)


# -- what the property found -----------------------------------------------------------


@pytest.mark.parametrize("pinned", [True, False], ids=["pinned", "unpinned"])
def test_a_folder_entry_that_follows_upstream_is_unchanged_while_upstream_is(
    bases: Bases, put: Any, gcs: Any, pinned: bool
) -> None:
    """skip_if_exist: false on a whole-prefix entry: status --check passed (upstream the
    same) while every sync planned "update 1"."""
    replay(bases, put, gcs, pinned, [Mutation("skip", "whole")])


def test_a_restore_rewrites_a_stage_edited_by_hand(bases: Bases, put: Any, gcs: Any) -> None:
    """A file deleted and its stage's description edited by hand: status and the dry run
    agree (missing), but the sync only restored the file and left the stage as edited."""
    changes = [Mutation("delete", "keep/a.txt"), Mutation("hand-edit", "keep/a.txt", "desc")]
    replay(bases, put, gcs, False, changes)


def test_a_folder_import_without_its_gitignore_line_is_kept(
    bases: Bases, put: Any, gcs: Any
) -> None:
    """The data folder's .gitignore (with the folder import's line) deleted: status and the
    dry run agreed that something needs doing, but the sync took the folder's files for
    leftovers no stage owns and removed them, then status said missing."""
    replay(bases, put, gcs, False, [Mutation("gitignore", ".")])


@pytest.mark.parametrize("pinned", [True, False], ids=["pinned", "unpinned"])
def test_an_object_uploaded_again_fails_the_check_where_a_sync_records_it(
    bases: Bases, put: Any, gcs: Any, pinned: bool
) -> None:
    """skip_if_exist: false, the object uploaded again with the same bytes (a new etag and
    generation): status --check passed (the bytes are the same) while the sync planned
    "metadata 1" (it records the new etag, and pinned the new generation)."""
    changes = [Mutation("skip", "keep"), Mutation("upstream", "keep/a.txt", "overwrite")]
    replay(bases, put, gcs, pinned, changes)


def test_an_object_deleted_upstream_passes_the_check_whatever_skip_if_exist_says(
    bases: Bases, put: Any, gcs: Any
) -> None:
    """skip_if_exist: false, the object deleted upstream: status --check failed (with no fix)
    while the sync kept the local copy and had nothing to do or say, before and after."""
    changes = [Mutation("skip", "keep"), Mutation("upstream", "keep/sub/b.txt", "delete")]
    replay(bases, put, gcs, False, changes)


def test_a_stage_edited_by_hand_fails_the_check_while_an_upstream_change_is_kept(
    bases: Bases, put: Any, gcs: Any
) -> None:
    """skip_if_exist: true, the object changed upstream and the stage's description edited by
    hand: status said changed-upstream (kept, passes) while the sync planned "metadata 1"."""
    changes = [
        Mutation("upstream", "keep/a.txt", "change"),
        Mutation("hand-edit", "keep/a.txt", "desc"),
    ]
    replay(bases, put, gcs, False, changes)


def test_a_re_record_of_the_same_bytes_is_judged_as_the_sync_sees_it(
    bases: Bases, put: Any, gcs: Any
) -> None:
    """Pinned, skip_if_exist: true, the object uploaded again and `dvc commit -f` recording
    it: status (which lists every object) kept the new record and said ok, while the sync
    (which does not look the object up) planned "metadata 1" to put back HEAD's record."""
    changes = [Mutation("upstream", "keep/a.txt", "overwrite"), Mutation("dvc", "commit")]
    replay(bases, put, gcs, True, changes)


def test_force_replaces_a_folder_whose_stage_was_removed(bases: Bases, put: Any, gcs: Any) -> None:
    """The folder of a whole-prefix entry without its stage: status and sync agree (untracked,
    a conflict), but ``sync --force`` failed: DVC imported into the folder in the way."""
    replay(bases, put, gcs, True, [Mutation("rm-stage", "whole")])


def test_bytes_force_saves_do_not_make_a_users_file_a_leftover(
    bases: Bases, put: Any, gcs: Any
) -> None:
    """The same new file added beside a file entry's data and inside a folder import: the
    sync --force saved the folder's copy into the DVC cache first, which made the other one
    look like a cached leftover, removed with no warning. Leftovers are judged before the
    sync writes anything."""
    changes = [Mutation("add", "keep/new.txt"), Mutation("add", "whole/new.txt")]
    replay(bases, put, gcs, False, changes)
