"""When CPython's cyclic garbage collector runs in the ``gcsdvc`` program.

The collector walks every live object each time the heap grows by a quarter.
While a command starts (importing DVC, gcsfs and aiohttp, reading the manifest,
planning) the heap only grows and makes few reference cycles: the walks were
0.1 s of a 1,000-file sync, and tearing the heap down at exit 0.3 s more.
So the program (:func:`hold`, from ``cli.run``) keeps the collector off until
DVC's repository is open, since DVC's commands and the downloads make cycles
per file; then :func:`resume` freezes what is loaded (later walks skip it) and
turns the collector back on. At exit the heap is frozen and left to the OS.
A library caller's collector is never touched: without :func:`hold` (the
program's entry point alone calls it), :func:`resume` and :func:`heap_frozen`
do nothing, so a caller's frozen heap, thresholds and on/off switch stay as
they were.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
from collections.abc import Iterator

_held = False  # hold() turned the collector off, resume() has not turned it back on
_program = False  # hold() was called: this process is the gcsdvc program


def hold() -> None:
    """Keep the collector off until :func:`resume`, and skip the heap's teardown at exit.

    Nothing is lost at exit: files are written and closed before then, stdio is
    flushed by the interpreter and the atexit handlers still run.
    """
    global _held, _program
    _program = True
    if gc.isenabled():
        gc.disable()
        _held = True
    atexit.register(gc.freeze)


def resume() -> None:
    """Turn a held collector back on, for work that makes reference cycles per file."""
    global _held
    if _held:
        _held = False
        gc.freeze()  # what start-up left, garbage included, is not walked again
        gc.enable()


@contextlib.contextmanager
def heap_frozen() -> Iterator[None]:
    """The heap of before frozen while thousands of files are placed: shorter collector passes.

    Everything from before (DVC, gcsfs, the plan) moves to the permanent generation,
    so a full pass walks only what the transfer made: the collector took about 5% of
    the CPU of a 10,000-file sync (``perf record``). Only in the program (see
    :func:`hold`): ``gc.unfreeze`` would also thaw what a library caller froze.
    """
    if not _program:
        yield
        return
    gc.freeze()
    thresholds = gc.get_threshold()
    gc.set_threshold(50_000, *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
