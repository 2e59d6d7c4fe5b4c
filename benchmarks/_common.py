"""Shared helpers for the benchmark scripts: a sandbox, timed commands, medians, one table.

Every measured command runs as a fresh process against fake-gcs-server on 127.0.0.1,
started through :mod:`gcsdvc.emulator` (the same environment as the demo and the tests),
timed around ``subprocess`` (process start included). A figure is the median of its
runs; a ratio is against a baseline measured in the same invocation.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import yaml

from gcsdvc.emulator import LEAKY_VARS, Emulator, client_env, sandbox_env

KB = 1024
MB = 1024 * KB
GB = 1024 * MB
TIMEOUT = 3600.0  # seconds, per measured command
BROKEN = "error"  # the verdict of a scenario whose command failed
PYTHON = sys.executable
BIN = Path(sys.executable).parent


class BenchError(Exception):
    """A measured or setup command failed; the message says which and why."""


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# -- figures and the table -----------------------------------------------------------


@dataclass
class Measure:
    """Samples of one quantity: seconds (``s``) or megabytes (``MB``)."""

    name: str
    unit: str = "s"
    samples: list[float] = field(default_factory=list)

    @property
    def median(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None

    def text(self) -> str:
        value = self.median
        if value is None:
            return "—"
        return f"{value:.2f} s" if self.unit == "s" else f"{value:.0f} {self.unit}"


@dataclass
class Row:
    """One line of the table: a measure against a baseline, with a ratio target (at most)."""

    scenario: str
    measure: Measure
    baseline: Measure | None = None
    target: float | None = None
    error: str = ""

    @property
    def ratio(self) -> float | None:
        value = self.measure.median
        base = self.baseline.median if self.baseline else None
        return value / base if value is not None and base else None

    def verdict(self, check: bool) -> str:
        if self.error:
            return self.error
        if not check or self.target is None or self.ratio is None:
            return "—"
        return "pass" if self.ratio <= self.target else "FAIL"


def render(rows: Sequence[Row], check: bool = True) -> str:
    """A Markdown table: scenario, median, baseline, ratio, target, verdict."""
    head = ["scenario", "median", "baseline", "ratio", "target", "verdict"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for row in rows:
        ratio = row.ratio
        cells = [
            row.scenario,
            row.measure.text(),
            f"{row.baseline.name}: {row.baseline.text()}" if row.baseline else "—",
            f"{ratio:.2f}x" if ratio is not None else "—",
            f"≤ {row.target:.3g}x" if row.target is not None else "—",
            row.verdict(check),
        ]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def machine_note(runs: int) -> str:
    """Date, CPU, cores, memory, versions: what a reader needs to compare tables."""
    from importlib.metadata import PackageNotFoundError, version

    cpu = platform.processor() or "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    packages = []
    for name in ("gcsdvc", "dvc", "gcsfs"):
        try:
            packages.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            packages.append(f"{name} ?")
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    memory = psutil.virtual_memory().total / GB
    return (
        f"{now}; {cpu}, {os.cpu_count()} cores, {memory:.0f} GB; "
        f"{platform.python_implementation()} {platform.python_version()}; "
        f"{', '.join(packages)}; fake-gcs-server (memory backend) on 127.0.0.1; "
        f"median of {runs} run(s)"
    )


# -- command line --------------------------------------------------------------------


def parser(description: str) -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(description=description)
    parse.add_argument("--runs", type=int, default=3, help="runs per figure; the median shows [3]")
    parse.add_argument(
        "--quick",
        action="store_true",
        help="small counts, one run, no target verdicts: a smoke test for CI",
    )
    return parse


def report(title: str, rows: Sequence[Row], runs: int, quick: bool) -> int:
    """Print the table; exit status 1 only when a benchmark broke (never for a slow machine)."""
    print(f"{title}\n{machine_note(runs)}\n")
    print(render(rows, check=not quick))
    return 1 if any(row.error == BROKEN for row in rows) else 0


# -- processes -----------------------------------------------------------------------


def _tree_rss(root: psutil.Process) -> int:
    total = 0
    for proc in (root, *root.children(recursive=True)):
        with contextlib.suppress(psutil.Error):
            total += proc.memory_info().rss
    return total


class PeakRss:
    """Samples the summed RSS of a process and its descendants every ``interval`` seconds."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.peak = 0  # bytes
        self._root = psutil.Process(pid)
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                self.peak = max(self.peak, _tree_rss(self._root))
            self._stop.wait(self._interval)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


@dataclass(frozen=True)
class Timing:
    seconds: float
    peak_rss: int  # bytes, 0 when not sampled
    stdout: str


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def rmtree(path: Path) -> None:
    """Remove a tree even where DVC made files or folders read-only."""

    def fix(func: Callable[..., Any], target: str, _exc: Any) -> None:
        with contextlib.suppress(OSError):
            Path(target).parent.chmod(0o755)
            func(target)

    if path.exists():
        shutil.rmtree(path, onerror=fix)  # onexc needs Python 3.12


def settle() -> None:
    """Write out what earlier commands left in the page cache, before a timed one starts.

    Otherwise the kernel throttles a command's writes while it flushes the previous
    command's: a curl of 1 GB right after a sync that wrote 2 GB took 3.4 s instead of 0.9.
    """
    os.sync()


def byte_compile_gcsdvc() -> None:
    """gcsdvc's modules byte-compiled, as pip installs a wheel: an editable install in a shell
    with PYTHONDONTWRITEBYTECODE (this machine's) compiles them in every measured command, 35 ms
    that DVC's and gcsfs's modules (compiled when pip installed them) do not pay."""
    import compileall

    import gcsdvc

    compileall.compile_dir(str(Path(gcsdvc.__file__).parent), quiet=1)


class Sandbox:
    """A work folder, a throw-away HOME and the emulator serving ``seed`` (a folder per bucket)."""

    def __init__(self, work: Path, seed: Path, start_timeout: float = 600) -> None:
        self.work = work
        self.repos = work / "repos"
        self.repos.mkdir(parents=True, exist_ok=True)
        home = work / "home"
        home.mkdir(exist_ok=True)
        started = time.perf_counter()
        self.emulator = Emulator(seed=seed).start(timeout=start_timeout)
        log(f"emulator ready in {time.perf_counter() - started:.1f} s on {self.emulator.url}")
        env = {k: v for k, v in os.environ.items() if k not in LEAKY_VARS}
        env.update(sandbox_env(home))
        env.update(client_env(self.emulator.url))
        env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
        self.env = env
        byte_compile_gcsdvc()

    @property
    def url(self) -> str:
        return self.emulator.url

    def stop(self) -> None:
        self.emulator.stop()

    def run(self, cmd: Sequence[str], cwd: Path, rss: bool = False) -> Timing:
        """Run one command to completion; raise BenchError unless it exits 0."""
        settle()
        started = time.perf_counter()
        with subprocess.Popen(
            list(cmd),
            cwd=cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        ) as proc:
            sampler = PeakRss(proc.pid) if rss else None
            try:
                out, err = proc.communicate(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                raise BenchError(f"no result after {TIMEOUT:.0f} s: {' '.join(cmd)}") from None
            except BaseException:  # interrupted: do not wait for the command
                proc.kill()
                raise
            finally:
                peak = sampler.stop() if sampler else 0
        elapsed = time.perf_counter() - started
        if proc.returncode:
            shown = " ".join(cmd)[:300]
            raise BenchError(
                f"exit code {proc.returncode}: {shown}\n{_tail(err)}\n{_tail(out, 10)}".rstrip()
                + self._emulator_gone()
            )
        return Timing(elapsed, peak, out)

    def _emulator_gone(self) -> str:
        """A note when the emulator died under the command: its clients (through a proxy such
        as the Cloud Storage layer, which then hangs up) see only a dropped connection."""
        status = self.emulator.exit_status()
        if status is None:
            return ""
        why = " (SIGKILL: out of memory? see dmesg)" if status == -signal.SIGKILL else ""
        return f"\nthe emulator had exited with status {status}{why}"

    def run_all(self, cmds: Sequence[Sequence[str]], cwd: Path) -> float:
        """Start the commands together; seconds until the last one has finished."""
        settle()
        started = time.perf_counter()
        procs = [
            subprocess.Popen(list(c), cwd=cwd, env=self.env, stderr=subprocess.PIPE, text=True)
            for c in cmds
        ]
        failed = []
        for cmd, proc in zip(cmds, procs, strict=True):
            _, err = proc.communicate(timeout=TIMEOUT)
            if proc.returncode:
                failed.append(f"exit code {proc.returncode}: {' '.join(cmd)}\n{_tail(err)}")
        elapsed = time.perf_counter() - started
        if failed:
            raise BenchError("\n".join(failed))
        return elapsed

    def discard(self, path: Path) -> None:
        """Set ``path`` aside; it is removed with the work folder, after the last measurement.

        On ext4 without a journal, creating a file within a minute (five, while the
        inode table is not yet written out) of thousands being deleted scans past the
        freed inodes (``recently_deleted`` in ``ext4_create``; 45% of a cold sync's
        kernel time in ``perf`` when each run's clean-up preceded the next): deleting
        between measurements would charge it to whichever command creates the most files.
        """
        if path.exists():
            trash = self.work / "trash"
            trash.mkdir(exist_ok=True)
            path.rename(trash / f"{len(list(trash.iterdir()))}-{path.name}")

    def new_repo(self, name: str, manifest: dict[str, Any] | None = None) -> Path:
        """A fresh git + DVC repository, with ``manifest`` as its params.yaml."""
        root = self.repos / name
        self.discard(root)
        root.mkdir(parents=True)
        self.run(["git", "init", "-q"], root)
        self.run([PYTHON, "-m", "dvc", "init", "-q"], root)
        if manifest is not None:
            write_yaml(root / "params.yaml", manifest)
        return root


def write_yaml(path: Path, data: Any) -> None:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def work_folder() -> Iterator[Path]:
    """A temporary folder, removed (emulators stopped first) even on SIGTERM or SIGINT."""
    # A background job starts with SIGINT ignored; both signals must unwind the finally blocks.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _exit_on_signal)
    work = Path(tempfile.mkdtemp(prefix="gcsdvc-bench-"))
    try:
        yield work
    finally:
        rmtree(work)


class Scenarios:
    """Collects rows; a scenario that raises BenchError becomes an error row, the rest go on."""

    def __init__(self) -> None:
        self.rows: list[Row] = []

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        if row.measure.samples:
            shown = ", ".join(f"{v:.3g}" for v in row.measure.samples)
            log(f"{row.scenario}: {shown} {row.measure.unit}")
        return row

    @contextlib.contextmanager
    def guard(self, scenario: str) -> Iterator[None]:
        """Run a block of measurements; on failure record ``scenario`` as an error row."""
        log(f"{scenario} ...")
        try:
            yield
        except BenchError as exc:
            print(f"[bench] ERROR in {scenario}:\n{exc}", file=sys.stderr, flush=True)
            self.rows.append(Row(scenario, Measure(scenario), error=BROKEN))

    def skip(self, scenario: str, why: str) -> None:
        self.rows.append(Row(scenario, Measure(scenario), error=f"skipped ({why})"))


def measure(name: str, runs: int, once: Callable[[int], float], unit: str = "s") -> Measure:
    """Call ``once(run_index)`` ``runs`` times; collect what it returns."""
    return Measure(name, unit, [once(n) for n in range(runs)])
