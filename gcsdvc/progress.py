"""Progress reporters for the CLI: a tqdm bar on a terminal, plain lines in a log.

Both implement :class:`gcsdvc.sync.Reporter` (``start``/``advance``/``finish``)
and are safe to call from the download threads. ``start`` may be called again
for a new phase (the files, then each whole-prefix import); a total of 0 bytes
means the size is not known in advance. :class:`Tally` counts what every phase
downloaded, for the summary, with or without a display. Sizes read as
:func:`gcsdvc.render.human_size` writes them, on the bar too. While archiving,
both count objects, and the objects and bytes copied server-side and streamed
apart (``advance``'s ``how``, a :class:`gcsdvc.archive.Method`).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

from gcsdvc.render import elapsed as elapsed_text
from gcsdvc.render import human_size

if TYPE_CHECKING:
    from gcsdvc.archive import Tally as Ways

DEFAULT_INTERVAL = 5.0  # seconds between plain lines: a CI log shows life within seconds


class _Phase:
    """What one phase has counted: files, or (archiving) objects by how they reached the remote."""

    def __init__(self, what: str = "downloading", total: int = 0) -> None:
        from gcsdvc.archive import Tally as Ways

        self.total = total
        self.files = 0
        self.ways: Ways | None = Ways("") if what == "archiving" else None

    def add(self, files: int, nbytes: int, how: str) -> None:
        self.files += files
        if self.ways is not None and how:
            from gcsdvc.archive import Method

            self.ways.add(Method(how), nbytes)

    def count(self) -> str:
        """``3/7 files``; archiving: ``3/7 objects (2 server-side 6.00M, 1 streamed 8.00M)``."""
        if self.ways is None:
            return f"{self.files}/{self.total} files"
        from gcsdvc.archive import Method

        objects, nbytes = self.ways.objects, self.ways.nbytes
        parts = [
            f"{objects[how]} {label} {human_size(nbytes[how])}"
            for how, label in ((Method.SERVER, "server-side"), (Method.STREAM, "streamed"))
        ]
        if objects[Method.PRESENT]:
            parts.append(f"{objects[Method.PRESENT]} already there")
        failed = self.files - sum(objects.values())  # a failed copy is counted with no ``how``
        if failed:
            parts.append(f"{failed} failed")
        return f"{self.files}/{self.total} objects ({', '.join(parts)})"


class TerminalProgress:
    """A self-rewriting tqdm bar: bytes with rate and ETA, files done in the postfix."""

    def __init__(self, stream: IO[str] | None = None, mininterval: float = 0.2) -> None:
        self.stream = stream or sys.stderr
        self.mininterval = mininterval  # seconds between redraws
        self.lock = threading.Lock()
        self.bar: Any = None
        self.phase = _Phase()

    def start(self, files: int, nbytes: int, what: str = "downloading") -> None:
        from tqdm import tqdm

        with self.lock:
            self._close()
            self.phase = _Phase(what, files)
            self.bar = tqdm(
                total=nbytes or None,
                unit="",  # sizes as every other line prints them: 3.00M, 410k/s
                unit_scale=True,
                unit_divisor=1024,
                dynamic_ncols=True,  # follows the terminal's width, even when it changes
                leave=True,  # the last state stays above the summary
                file=self.stream,
                desc=what.capitalize(),
                mininterval=self.mininterval,
                miniters=1,
            )
            self.bar.set_postfix_str(self.phase.count(), refresh=False)

    def advance(self, files: int = 0, nbytes: int = 0, how: str = "") -> None:
        with self.lock:
            if self.bar is None:
                return
            if files:
                self.phase.add(files, nbytes, how)
                self.bar.set_postfix_str(self.phase.count(), refresh=False)
            self.bar.update(nbytes)

    def finish(self) -> None:
        with self.lock:
            if self.bar is not None and _interrupted():
                self.bar.set_description_str("Interrupted", refresh=False)
            self._close()

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class PlainProgress:
    """One plain line every ``interval`` seconds, for logs (CI) where a bar would be noise.

    ``clock`` is injectable so tests need not sleep.
    """

    def __init__(
        self,
        stream: IO[str] | None = None,
        interval: float = DEFAULT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream or sys.stderr
        self.interval = interval
        self.clock = clock
        self.lock = threading.Lock()
        self.phase = _Phase()
        self.nbytes = self.total_bytes = 0
        self.began = self.last = 0.0
        self.active = False

    def start(self, files: int, nbytes: int, what: str = "downloading") -> None:
        with self.lock:
            self.phase = _Phase(what, files)
            self.nbytes, self.total_bytes = 0, nbytes
            self.began = self.last = self.clock()
            self.active = True
            self._print(what)

    def advance(self, files: int = 0, nbytes: int = 0, how: str = "") -> None:
        with self.lock:
            self.phase.add(files, nbytes, how)
            self.nbytes += nbytes
            if self.active and self.clock() - self.last >= self.interval:
                self.last = self.clock()
                self._print("progress")

    def finish(self) -> None:
        with self.lock:
            if self.active:
                self.active = False
                self._print("interrupted" if _interrupted() else "done")

    def _print(self, word: str) -> None:
        elapsed = self.clock() - self.began
        size = human_size(self.nbytes)
        if self.total_bytes:
            size += f"/{human_size(self.total_bytes)}"
        line = f"{word}: {self.phase.count()}, {size}"
        if self.phase.files or self.nbytes:
            line += f", {human_size(self.nbytes / max(elapsed, 1e-3))}/s"
        if word in ("done", "interrupted"):
            line += f", {elapsed_text(elapsed)}"
        print(line, file=self.stream, flush=True)


def _interrupted() -> bool:
    # finish() runs in the transfer's ``finally``: during Ctrl-C the exception is the current one.
    return isinstance(sys.exc_info()[1], KeyboardInterrupt)


class Tally:
    """Counts the files and bytes of every phase and the time since it was made.

    Passes each call on to ``display`` (the bar or the lines), if any.
    """

    def __init__(
        self,
        display: TerminalProgress | PlainProgress | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.display = display
        self.clock = clock
        self.began = clock()
        self.lock = threading.Lock()
        self.files = self.nbytes = 0
        self.active = False  # DVC reports more than its download; only a phase's calls count
        self.counting = False  # bytes archived into the DVC remote are no download: not counted

    def start(self, files: int, nbytes: int, what: str = "downloading") -> None:
        with self.lock:
            self.active, self.counting = True, what == "downloading"
        if self.display is not None:
            self.display.start(files, nbytes, what)

    def advance(self, files: int = 0, nbytes: int = 0, how: str = "") -> None:
        with self.lock:
            if not self.active:
                return
            if self.counting:
                self.files += files
                self.nbytes += nbytes
        if self.display is not None:
            self.display.advance(files, nbytes, how)

    def finish(self) -> None:
        with self.lock:
            self.active = False
        if self.display is not None:
            self.display.finish()

    @property
    def elapsed(self) -> float:
        """Seconds since the tally was made."""
        return self.clock() - self.began


def make_reporter(
    quiet: bool, interval: float = DEFAULT_INTERVAL, stream: IO[str] | None = None
) -> Tally:
    """A tally drawing nothing with ``quiet``, a bar on a terminal, else lines."""
    stream = stream or sys.stderr
    if quiet:
        return Tally()
    if stream.isatty():
        return Tally(TerminalProgress(stream))
    return Tally(PlainProgress(stream, interval))
