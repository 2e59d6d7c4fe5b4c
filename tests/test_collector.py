"""When the garbage collector runs (gcsdvc.collector): held through start-up, back once DVC is open.

In process, with the interpreter's collector state restored after each test;
the exit behaviour in a subprocess, since only a real exit shows it.
"""

from __future__ import annotations

import atexit
import gc
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import entry, write_manifest

from gcsdvc import cli, collector


@pytest.fixture(autouse=True)
def _collector_restored(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    enabled = gc.isenabled()
    monkeypatch.setattr(collector, "_held", False)
    monkeypatch.setattr(collector, "_program", False)
    try:
        yield
    finally:
        atexit.unregister(gc.freeze)
        gc.unfreeze()
        (gc.enable if enabled else gc.disable)()


def test_a_held_collector_comes_back_once_with_the_heap_frozen() -> None:
    gc.enable()
    collector.hold()
    assert not gc.isenabled()
    collector.resume()
    assert gc.isenabled()
    frozen = gc.get_freeze_count()
    assert frozen > 0
    made = [[n] for n in range(1000)]  # tracked objects a second freeze would take
    collector.resume()
    # No second freeze: the count never grows (frozen objects other threads free make it shrink).
    assert gc.get_freeze_count() <= frozen
    assert len(made) == 1000


@pytest.mark.parametrize(
    ("enabled", "hold"),
    [(True, False), (False, False), (False, True)],
    ids=["library, collector on", "library, collector off", "program, collector already off"],
)
def test_a_callers_own_setting_is_kept(enabled: bool, hold: bool) -> None:
    """Without hold (a library caller), or with the collector off already, resume does nothing."""
    (gc.enable if enabled else gc.disable)()
    if hold:
        collector.hold()
    collector.resume()
    assert gc.isenabled() is enabled
    assert gc.get_freeze_count() == 0


def _program(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["gcsdvc", *args])
    with pytest.raises(SystemExit) as exited:
        cli.run()
    code = exited.value.code
    return code if isinstance(code, int) else 1


def test_the_program_holds_the_collector_until_dvc_is_open(
    repo: Path, seeded: str, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    gc.enable()
    write_manifest(repo, [entry(seeded)])
    assert _program(monkeypatch, "validate") == 0
    assert not gc.isenabled()  # validate never opens the repository
    assert _program(monkeypatch, "sync", "-q") == 0
    assert gc.isenabled()
    assert (repo / "data" / "project1").is_dir()
    capsys.readouterr()


@pytest.mark.parametrize(("hold", "finalized"), [(False, True), (True, False)])
def test_at_exit_the_heap_is_left_to_the_os(hold: bool, finalized: bool) -> None:
    """A cycle still alive at exit is finalized by CPython's last collection, unless held."""
    code = "\n".join(
        [
            "import os",
            "from gcsdvc import collector",
            "collector.hold()" if hold else "",
            "class Cycle:",
            "    def __del__(self):",
            "        os.write(1, b'finalized')",
            "c = Cycle()",
            "c.me = c",
            "del c",
            "import gc; gc.disable()",  # the held case's state, for both rows
        ]
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert (res.stdout == "finalized") is finalized


def test_a_library_sync_leaves_the_process_as_it_found_it(repo: Path, seeded: str) -> None:
    """gcsdvc.sync.sync() as a library: the caller's collector, frozen heap and thresholds,
    DVC's UI switch and its logger's level are what they were."""
    import logging
    import shutil

    from dvc.ui import ui

    from gcsdvc.manifest import load_manifest
    from gcsdvc.sync import sync

    whole = entry(seeded, name="whole", destination="whole")
    del whole["files"]
    write_manifest(repo, [entry(seeded), whole])
    log = logging.getLogger("dvc")
    level, shown = log.level, ui._enabled
    kept = [[n] for n in range(1000)]  # the caller's heap, frozen
    gc.freeze()
    frozen, thresholds = gc.get_freeze_count(), gc.get_threshold()
    assert frozen >= len(kept)
    try:
        for enabled in (True, False):
            (gc.enable if enabled else gc.disable)()
            gc.set_threshold(1234, 11, 12)
            log.setLevel(logging.ERROR)
            ui._enabled = not enabled
            shutil.rmtree(repo / "data", ignore_errors=True)  # each round imports anew
            result = sync(load_manifest(repo / "params.yaml"))
            assert result.ok, result.failures
            assert result.done, result.plan.items  # files downloaded, the folder imported
            # Still in the permanent generation, which gc.get_objects() leaves out (a frozen
            # object that sync freed leaves it too: the count may only shrink by those).
            walked = {id(o) for o in gc.get_objects()}
            assert not {id(kept), id(kept[0]), id(kept[-1])} & walked
            assert frozen >= gc.get_freeze_count() > frozen * 0.9
            assert gc.get_threshold() == (1234, 11, 12)
            assert gc.isenabled() is enabled
            assert (log.level, ui._enabled) == (logging.ERROR, not enabled)
    finally:
        gc.set_threshold(*thresholds)
        log.setLevel(level)
        ui._enabled = shown
