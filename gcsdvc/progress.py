"""Progress reporters for the CLI: a tqdm bar on a terminal, plain lines in a log.

Both implement :class:`gcsdvc.sync.Reporter` (``start``/``advance``/``finish``)
and are safe to call from the download threads. ``start`` may be called again
for a new phase (the files, then each whole-prefix import); a total of 0 bytes
means the size is not known in advance. :class:`Tally` counts what every phase
downloaded, for the summary, with or without a display. Sizes read as
:func:`gcsdvc.render.human_size` writes them, on the bar too.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import IO, Any

from gcsdvc.render import elapsed as elapsed_text
from gcsdvc.render import human_size

DEFAULT_INTERVAL = 5.0  # seconds between plain lines: a CI log shows life within seconds


class TerminalProgress:
    """A self-rewriting tqdm bar: bytes with rate and ETA, files done in the postfix."""

    def __init__(self, stream: IO[str] | None = None, mininterval: float = 0.2) -> None:
        self.stream = stream or sys.stderr
        self.mininterval = mininterval  # seconds between redraws
        self.lock = threading.Lock()
        self.bar: Any = None
        self.files = self.total_files = 0

    def start(self, files: int, nbytes: int, what: str = "downloading") -> None:
        from tqdm import tqdm

        with self.lock:
            self._close()
            self.files, self.total_files = 0, files
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
            self.bar.set_postfix_str(self._files(), refresh=False)

    def advance(self, files: int = 0, nbytes: int = 0) -> None:
        with self.lock:
            if self.bar is None:
                return
            if files:
                self.files += files
                self.bar.set_postfix_str(self._files(), refresh=False)
            self.bar.update(nbytes)

    def finish(self) -> None:
        with self.lock:
            if self.bar is not None and _interrupted():
                self.bar.set_description_str("Interrupted", refresh=False)
            self._close()

    def _files(self) -> str:
        return f"{self.files}/{self.total_files} files"

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
        self.files = self.total_files = self.nbytes = self.total_bytes = 0
        self.began = self.last = 0.0
        self.active = False

    def start(self, files: int, nbytes: int, what: str = "downloading") -> None:
        with self.lock:
            self.files, self.nbytes = 0, 0
            self.total_files, self.total_bytes = files, nbytes
            self.began = self.last = self.clock()
            self.active = True
            self._print(what)

    def advance(self, files: int = 0, nbytes: int = 0) -> None:
        with self.lock:
            self.files += files
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
        line = f"{word}: {self.files}/{self.total_files} files, {size}"
        if self.files or self.nbytes:
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

    def start(self, files: int, nbytes: int, what: str = "downloading") -> None:
        with self.lock:  # bytes archived into the DVC remote are no download: not counted
            self.active = what == "downloading"
        if self.display is not None:
            self.display.start(files, nbytes, what)

    def advance(self, files: int = 0, nbytes: int = 0) -> None:
        with self.lock:
            if not self.active:
                return
            self.files += files
            self.nbytes += nbytes
        if self.display is not None:
            self.display.advance(files, nbytes)

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
