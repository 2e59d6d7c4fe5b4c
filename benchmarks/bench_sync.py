#!/usr/bin/env python
"""Benchmark ``gcsdvc sync`` against raw gcsfs, bare imports, DVC and (if installed) gsutil/rclone.

Everything is local: fake-gcs-server on 127.0.0.1 (see :mod:`gcsdvc.emulator`),
seeded from a generated folder, and every measured command runs as a fresh
subprocess with the emulator's environment, timed with ``time.perf_counter``
around ``subprocess.run`` (process start included). Each figure is the median of
``--runs`` runs; ratios are against baselines measured in the same invocation.

Scenarios (full size; ``--quick`` shrinks every count for a smoke test):

* seed: bucket ``bench``, 10 experiments ``proj/exp-NN/`` x 100 listed 10 KB files
  (nested and plain names) plus 2 unlisted 20 MB objects each, which must not be
  downloaded; the manifest lists the 100 files of each experiment.
* baseline A: a fresh ``python -c`` doing one gcsfs ``fs.get`` of the same 1,000 objects.
* baseline B: a bare ``python -c "import dvc.repo, gcsfs"``.
* cold ``gcsdvc sync -q`` into a fresh git + DVC repository per run (vs A, target <= 3x).
* no-op re-sync (vs B, target <= 2.5x), and the same with ``skip_if_exist: false``.
* scaling: the no-op with 10,000 tiny files in 10 experiments vs the 1,000-file no-op.
* DVC: a ``dvc import-url`` loop over 100 files, ``dvc status`` and
  ``dvc update -R data`` on the synced 1,000-file repository.
* a 1 GB object (``--no-big`` skips it): sync time and peak RSS of the process tree
  (target <= 300 MB).
* ``gsutil -m rsync`` / ``rclone copy`` of the 1,000 files, when on PATH.

Usage::

    python benchmarks/bench_sync.py [--runs N] [--quick] [--no-big]

The table goes to standard output, progress and command failures to standard error.
The exit status is 1 when a measured command failed, else 0 (missed targets show
as FAIL in the table).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

from gcsdvc.emulator import HOST, Emulator, client_env, free_port

KB = 1024
MB = 1024 * KB
GB = 1024 * MB
TIMEOUT = 3600.0  # seconds, per measured command
BUCKET = "bench"
SCALE_BUCKET = "bench-scale"
BIG_BUCKET = "bench-big"
PREFIX = "proj"
BIG_BLOB = "model"
BIG_FILE = "weights.bin"
UNLISTED_DIR = "raw"

CHILD_GET = """\
import json, sys
import gcsfs
paths = json.load(open(sys.argv[1]))
fs = gcsfs.GCSFileSystem()
fs.get(paths["rpaths"], paths["lpaths"])
"""
# Fallback for /usr/bin/time -f %M: run a command, write the children's peak RSS (KB).
CHILD_RUSAGE = """\
import resource, subprocess, sys
rc = subprocess.call(sys.argv[2:])
with open(sys.argv[1], "w") as out:
    out.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(rc)
"""


# -- sizes -------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    experiments: int
    files: int  # listed files per experiment
    small: int  # bytes per listed file
    unlisted: int  # unlisted large objects per experiment
    unlisted_size: int
    scale_files: int  # listed files per experiment in the scaling bucket
    tiny: int  # bytes per scaling file
    import_subset: int  # files for the `dvc import-url` loop
    big: int  # bytes of the single big object

    @property
    def total(self) -> int:
        return self.experiments * self.files

    @property
    def scale_total(self) -> int:
        return self.experiments * self.scale_files


FULL = Sizes(10, 100, 10 * KB, 2, 20 * MB, 1000, 100, 100, 1 * GB)
QUICK = Sizes(3, 20, 10 * KB, 2, 1 * MB, 200, 100, 10, 64 * MB)


def file_names(count: int) -> list[str]:
    """Listed object names inside one experiment: half nested, a quarter deeper, a quarter plain."""
    width = max(3, len(str(count - 1)))
    names = []
    for i in range(count):
        n = f"{i:0{width}d}"
        if i % 2 == 0:
            names.append(f"metrics/step-{n}.json")
        elif i % 4 == 1:
            names.append(f"eval/plots/fig-{n}.png")
        else:
            names.append(f"out-{n}.txt")
    return names


def experiment(i: int) -> str:
    return f"exp-{i:02d}"


# -- results -----------------------------------------------------------------


class BenchError(Exception):
    """A measured or setup command failed; the message says which and why."""


@dataclass
class Row:
    scenario: str
    samples: list[float] = field(default_factory=list)
    unit: str = "s"
    baseline: Row | None = None
    target: float | None = None  # a ratio (unit "s") or an absolute bound (other units)
    status: str = ""  # set for errors, skips, missing tools and failed checks
    tag: str = ""  # how other rows name this one as their baseline
    notes: list[str] = field(default_factory=list)

    @property
    def median(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None

    @property
    def ratio(self) -> float | None:
        base = self.baseline.median if self.baseline else None
        if self.median is None or not base:
            return None
        return self.median / base

    def value_text(self) -> str:
        if self.median is None:
            return "—"
        if self.unit == "s":
            return f"{self.median:.3f}"
        return f"{self.median:.0f} {self.unit}"

    def baseline_text(self) -> str:
        if self.baseline is None:
            return "—"
        tag = self.baseline.tag or self.baseline.scenario
        if self.baseline.median is None:
            return f"{tag} (n/a)"
        return f"{tag} {self.baseline.value_text()}"

    def target_text(self) -> str:
        if self.target is None:
            return "—"
        if self.unit == "s":
            return f"≤ {self.target:g}x"
        return f"≤ {self.target:g} {self.unit}"

    def verdict(self) -> str:
        if self.status:
            return self.status
        if self.target is None or self.median is None:
            return "—"
        measured = self.ratio if self.unit == "s" else self.median
        if measured is None:
            return "—"
        return "pass" if measured <= self.target else "FAIL"


def render_table(rows: Sequence[Row]) -> str:
    head = ["scenario", "median s", "baseline", "ratio", "target", "pass/fail"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for row in rows:
        ratio = row.ratio
        cells = [
            row.scenario,
            row.value_text(),
            row.baseline_text(),
            f"{ratio:.2f}x" if ratio is not None else "—",
            row.target_text(),
            row.verdict(),
        ]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# -- helpers -----------------------------------------------------------------


def rmtree(path: Path) -> None:
    """Remove a tree even where DVC made cache files or folders read-only."""

    def fix(func: Callable[..., Any], target: str, _exc: Any) -> None:
        try:
            Path(target).parent.chmod(0o755)
            Path(target).chmod(0o755)
            func(target)
        except OSError:
            pass

    if path.exists():
        shutil.rmtree(path, onerror=fix)  # onexc needs Python 3.12


def write_random(path: Path, size: int, chunk: int = 16 * MB) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        left = size
        while left > 0:
            n = min(chunk, left)
            out.write(os.urandom(n))
            left -= n


def tool(name: str) -> str:
    """A console script of this venv, else one on PATH."""
    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    found = shutil.which(name)
    if found is None:
        raise BenchError(f"'{name}' is not installed")
    return found


def tail(text: str, lines: int = 30) -> str:
    parts = text.rstrip().splitlines()
    cut = parts[-lines:]
    prefix = [f"... ({len(parts) - lines} more lines)"] if len(parts) > lines else []
    return "\n".join(prefix + cut)


def failure(label: str, cmd: Sequence[str], proc: subprocess.CompletedProcess[str]) -> BenchError:
    shown = " ".join(cmd)
    if len(shown) > 300:
        shown = shown[:300] + " ..."
    message = f"{label}: exit code {proc.returncode}\n  command: {shown}"
    if proc.stderr.strip():
        message += "\n  stderr:\n" + tail(proc.stderr)
    if proc.stdout.strip():
        message += "\n  stdout:\n" + tail(proc.stdout, 10)
    return BenchError(message)


def files_below(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()]


def stage_mtimes(data: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in data.rglob("*.dvc")} if data.exists() else {}


class TreeRss:
    """Samples the summed RSS of a process and all its descendants (needs psutil)."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = 0  # bytes
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        try:
            import psutil
        except ImportError:
            self.available = False
            return
        self.available = True
        self._psutil = psutil
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        psutil = self._psutil
        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self._stop.is_set():
            total = 0
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                break
            for proc in procs:
                with contextlib.suppress(psutil.Error):
                    total += proc.memory_info().rss
            self.peak = max(self.peak, total)
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


# -- the benchmark -----------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.runs: int = args.runs
        self.sizes = QUICK if args.quick else FULL
        self.work = work
        self.seed = work / "seed"
        self.home = work / "home"
        self.repos = work / "repos"
        self.scratch = work / "scratch"
        self.emulator: Emulator | None = None
        self.https: subprocess.Popen[bytes] | None = None
        self.env: dict[str, str] = {}
        self.rows: list[Row] = []
        self.errors = 0
        self.listed: dict[str, list[str]] = {}  # experiment -> listed names
        self.synced: Path | None = None  # the repository the cold sync left behind
        self.python = sys.executable
        self.gcsdvc = tool("gcsdvc")
        self.dvc = tool("dvc")

    # -- setup -------------------------------------------------------------

    def make_seed(self) -> None:
        s = self.sizes
        started = time.perf_counter()
        names = file_names(s.files)
        for i in range(s.experiments):
            exp = experiment(i)
            self.listed[exp] = names
            base = self.seed / BUCKET / PREFIX / exp
            for name in names:
                write_random(base / name, s.small)
            for k in range(s.unlisted):
                write_random(base / UNLISTED_DIR / f"big-{k}.bin", s.unlisted_size)
        tiny_names = file_names(s.scale_files)
        for i in range(s.experiments):
            base = self.seed / SCALE_BUCKET / PREFIX / experiment(i)
            for name in tiny_names:
                (base / name).parent.mkdir(parents=True, exist_ok=True)
                (base / name).write_bytes(os.urandom(s.tiny))
        if self.args.big:
            log(f"writing the {s.big / GB:.2f} GB object ...")
            write_random(self.seed / BIG_BUCKET / BIG_BLOB / BIG_FILE, s.big)
        log(f"seed folder written in {time.perf_counter() - started:.1f} s")

    def start(self) -> None:
        for folder in (self.home, self.repos, self.scratch, self.seed):
            folder.mkdir(parents=True, exist_ok=True)
        log(f"work folder {self.work}")
        self.make_seed()
        started = time.perf_counter()
        self.emulator = Emulator(seed=self.seed).start(timeout=300)
        log(f"emulator on {self.emulator.url}, ready in {time.perf_counter() - started:.1f} s")
        self.env = self.child_env(self.emulator.env())
        # Warm the page cache and byte-code once, so the first measured run is not special.
        self.check([self.python, "-c", "import dvc.repo, gcsfs, gcsdvc.cli"], self.work, "warm-up")

    def child_env(self, emulator_env: dict[str, str]) -> dict[str, str]:
        drop_prefixes = ("GOOGLE_", "CLOUDSDK_", "BOTO", "GCSFS_", "DVC_", "GIT_", "RCLONE_")
        proxies = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(drop_prefixes) and k.lower() not in proxies
        }
        env.update(emulator_env)
        env.update(client_env(emulator_env["STORAGE_EMULATOR_HOST"]))
        venv_bin = str(Path(sys.executable).parent)
        env.update(
            {
                "PATH": venv_bin + os.pathsep + os.environ.get("PATH", ""),
                "HOME": str(self.home),
                "XDG_CONFIG_HOME": str(self.home / ".config"),
                "XDG_CACHE_HOME": str(self.home / ".cache"),
                "DVC_GLOBAL_CONFIG_DIR": str(self.home / ".config" / "dvc"),
                "DVC_SYSTEM_CONFIG_DIR": str(self.home / ".config" / "dvc-system"),
                "DVC_SITE_CACHE_DIR": str(self.home / "dvc-site-cache"),
                "DVC_NO_ANALYTICS": "1",
                "DVC_STUDIO_OFFLINE": "true",
                "DVC_UPDATER_ENDPOINT": f"http://{HOST}:9/",
                "DVC_ANALYTICS_ENDPOINT": f"http://{HOST}:9/",
                "GIT_CONFIG_NOSYSTEM": "1",
                "GIT_AUTHOR_NAME": "gcsdvc bench",
                "GIT_AUTHOR_EMAIL": "bench@example.invalid",
                "GIT_COMMITTER_NAME": "gcsdvc bench",
                "GIT_COMMITTER_EMAIL": "bench@example.invalid",
                "NO_PROXY": f"{HOST},localhost",
                "no_proxy": f"{HOST},localhost",
            }
        )
        return env

    def stop(self) -> None:
        if self.https is not None:
            self.https.terminate()
            try:
                self.https.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.https.kill()
                self.https.wait()
            self.https = None
        if self.emulator is not None:
            self.emulator.stop()
            self.emulator = None

    # -- running commands ----------------------------------------------------

    def run(
        self,
        cmd: Sequence[str],
        cwd: Path,
        label: str,
        env: dict[str, str] | None = None,
        stdin: str | None = None,
    ) -> tuple[float, subprocess.CompletedProcess[str]]:
        """Run one command; return its wall time; raise BenchError on failure."""
        started = time.perf_counter()
        try:
            proc = subprocess.run(
                list(cmd),
                cwd=cwd,
                env=env or self.env,
                input=stdin,
                capture_output=True,
                text=True,
                timeout=TIMEOUT,
            )
        except subprocess.TimeoutExpired:
            raise BenchError(f"{label}: no result after {TIMEOUT:.0f} s: {' '.join(cmd)}") from None
        elapsed = time.perf_counter() - started
        if proc.returncode != 0:
            raise failure(label, cmd, proc)
        return elapsed, proc

    def timed(self, cmd: Sequence[str], cwd: Path, label: str, **kw: Any) -> float:
        return self.run(cmd, cwd, label, **kw)[0]

    def check(self, cmd: Sequence[str], cwd: Path, label: str) -> str:
        return self.run(cmd, cwd, label)[1].stdout

    def new_repo(self, name: str) -> Path:
        root = self.repos / name
        rmtree(root)
        root.mkdir(parents=True)
        self.check(["git", "init", "-q"], root, f"git init {name}")
        self.check([self.dvc, "init", "-q"], root, f"dvc init {name}")
        return root

    # -- manifests -------------------------------------------------------------

    def manifest(
        self, bucket: str, names: list[str], skip: bool = True, blob: str = PREFIX
    ) -> dict[str, Any]:
        entries = []
        for i in range(self.sizes.experiments):
            exp = experiment(i)
            entries.append(
                {
                    "name": exp,
                    "bucket": bucket,
                    "blob": blob,
                    "subblob": exp,
                    "destination": exp,
                    "skip_if_exist": skip,
                    "description": f"benchmark experiment {i}",
                    "files": names,
                }
            )
        return {"resources": entries}

    @staticmethod
    def write_manifest(path: Path, data: dict[str, Any]) -> None:
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")

    def main_manifest(self, skip: bool = True) -> dict[str, Any]:
        return self.manifest(BUCKET, file_names(self.sizes.files), skip)

    # -- checks ------------------------------------------------------------------

    def verify_sync(self, repo: Path) -> None:
        """All listed files present with the seed's bytes; nothing unlisted or large."""
        data = repo / "data"
        problems = []
        for exp, names in self.listed.items():
            for name in names:
                got = data / exp / name
                want = self.seed / BUCKET / PREFIX / exp / name
                if not got.is_file():
                    problems.append(f"missing {got.relative_to(repo)}")
                elif got.read_bytes() != want.read_bytes():
                    problems.append(f"wrong bytes in {got.relative_to(repo)}")
        stages = list(data.rglob("*.dvc")) if data.exists() else []
        if len(stages) != self.sizes.total:
            problems.append(f"{len(stages)} stage files, expected {self.sizes.total}")
        limit = min(self.sizes.unlisted_size, 1 * MB)
        for path in files_below(repo):
            if ".git" in path.relative_to(repo).parts:
                continue
            if path.stat().st_size >= limit:
                problems.append(f"unlisted large object downloaded: {path.relative_to(repo)}")
        if problems:
            more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
            raise BenchError("sync result is wrong: " + "; ".join(problems[:10]) + more)

    # -- scenario plumbing ---------------------------------------------------------

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        return row

    def scenario(self, row: Row, body: Callable[[Row], None]) -> Row:
        """Run ``body`` to fill ``row``; a BenchError marks the row as an error."""
        self.add(row)
        log(f"{row.scenario} ...")
        try:
            body(row)
        except BenchError as exc:
            self.errors += 1
            row.status = "error"
            print(f"\n[bench] ERROR in '{row.scenario}':\n{exc}\n", file=sys.stderr, flush=True)
        else:
            if row.samples:
                shown = ", ".join(
                    f"{v:.3f}" if row.unit == "s" else f"{v:.0f}" for v in row.samples
                )
                log(f"  {row.unit}: {shown}")
        return row

    def skipped(self, name: str, why: str) -> Row:
        return self.add(Row(name, status=f"skipped ({why})"))

    # -- scenarios -------------------------------------------------------------------

    def baseline_a(self, row: Row) -> None:
        rpaths = [
            f"{BUCKET}/{PREFIX}/{exp}/{name}"
            for exp, names in self.listed.items()
            for name in names
        ]
        for n in range(self.runs):
            dest = self.scratch / f"gcsfs-{n}"
            rmtree(dest)
            dest.mkdir(parents=True)
            lpaths = [str(dest / p.split("/", 2)[2]) for p in rpaths]
            spec = self.scratch / f"gcsfs-{n}.json"
            spec.write_text(json.dumps({"rpaths": rpaths, "lpaths": lpaths}), encoding="utf-8")
            row.samples.append(
                self.timed([self.python, "-c", CHILD_GET, str(spec)], self.scratch, "gcsfs get")
            )
            got = len(files_below(dest))
            rmtree(dest)
            if got != len(rpaths):
                raise BenchError(f"gcsfs get wrote {got} files, expected {len(rpaths)}")

    def baseline_b(self, row: Row) -> None:
        cmd = [self.python, "-c", "import dvc.repo, gcsfs"]
        for _ in range(self.runs):
            row.samples.append(self.timed(cmd, self.scratch, "bare import"))

    def cold(self, row: Row) -> None:
        for n in range(self.runs):
            repo = self.new_repo(f"cold-{n}")
            self.write_manifest(repo / "params.yaml", self.main_manifest())
            row.samples.append(self.timed([self.gcsdvc, "sync", "-q"], repo, "gcsdvc sync (cold)"))
            self.verify_sync(repo)
            if self.synced is None:
                self.synced = repo
            else:
                rmtree(repo)

    def repeat_noop(self, row: Row, cmd: list[str], repo: Path, label: str) -> None:
        """An untimed warm-up, then the timed runs, which must write nothing."""
        self.timed(cmd, repo, f"{label} (warm-up)")
        before = stage_mtimes(repo / "data")
        for _ in range(self.runs):
            row.samples.append(self.timed(cmd, repo, label))
        after = stage_mtimes(repo / "data")
        changed = sum(1 for k, v in after.items() if before.get(k) != v) + len(
            set(before) - set(after)
        )
        if changed:
            row.status = "FAIL (not a no-op)"
            row.notes.append(f"the timed runs rewrote or removed {changed} stage file(s)")

    def noop(self, row: Row) -> None:
        assert self.synced is not None
        self.repeat_noop(row, [self.gcsdvc, "sync", "-q"], self.synced, "gcsdvc sync (no-op)")

    def noop_noskip(self, row: Row) -> None:
        assert self.synced is not None
        manifest = self.synced / "params-noskip.yaml"
        self.write_manifest(manifest, self.main_manifest(skip=False))
        cmd = [self.gcsdvc, "sync", "-q", "--manifest", manifest.name]
        self.repeat_noop(row, cmd, self.synced, "gcsdvc sync (no-op, skip_if_exist: false)")

    def scale_cold(self, row: Row) -> None:
        repo = self.new_repo("scale")
        names = file_names(self.sizes.scale_files)
        self.write_manifest(repo / "params.yaml", self.manifest(SCALE_BUCKET, names))
        row.samples.append(
            self.timed([self.gcsdvc, "sync", "-q"], repo, "gcsdvc sync (scale, cold)")
        )
        got = len(list((repo / "data").rglob("*.dvc")))
        if got != self.sizes.scale_total:
            raise BenchError(f"{got} stage files after the sync, expected {self.sizes.scale_total}")

    def scale_noop(self, row: Row) -> None:
        repo = self.repos / "scale"
        self.repeat_noop(row, [self.gcsdvc, "sync", "-q"], repo, "gcsdvc sync (scale, no-op)")

    def import_loop(self, row: Row) -> None:
        exp = experiment(0)
        names = self.listed[exp][: self.sizes.import_subset]
        for n in range(self.runs):
            repo = self.new_repo(f"import-url-{n}")
            for name in names:
                (repo / "data" / exp / name).parent.mkdir(parents=True, exist_ok=True)
            total = 0.0
            for name in names:
                cmd = [
                    self.dvc,
                    "import-url",
                    "-q",
                    f"gs://{BUCKET}/{PREFIX}/{exp}/{name}",
                    f"data/{exp}/{name}",
                ]
                total += self.timed(cmd, repo, "dvc import-url")
            row.samples.append(total)
            rmtree(repo)
        per_file = statistics.median(row.samples) / max(1, len(names))
        row.notes.append(f"{per_file:.3f} s per file ({len(names)} processes per run)")

    def dvc_status(self, row: Row) -> None:
        assert self.synced is not None
        cmd = [self.dvc, "status"]
        self.timed(cmd, self.synced, "dvc status (warm-up)")
        for _ in range(self.runs):
            elapsed, proc = self.run(cmd, self.synced, "dvc status")
            row.samples.append(elapsed)
            if "up to date" not in proc.stdout:
                row.status = "FAIL (changes reported)"
                row.notes.append("dvc status on the synced repo:\n" + tail(proc.stdout, 15))

    def dvc_update(self, row: Row) -> None:
        assert self.synced is not None
        before = stage_mtimes(self.synced / "data")
        for _ in range(self.runs):
            row.samples.append(
                self.timed([self.dvc, "update", "-q", "-R", "data"], self.synced, "dvc update")
            )
        after = stage_mtimes(self.synced / "data")
        changed = sum(1 for k, v in after.items() if before.get(k) != v)
        if changed:
            row.notes.append(f"dvc update rewrote {changed} of {len(after)} stage files")

    def big(self, time_row: Row, rss_row: Row) -> None:
        timer = Path("/usr/bin/time")
        peaks: list[tuple[int, int]] = []
        try:
            self._big_runs(time_row, rss_row, timer, peaks)
        finally:
            if peaks:
                one = ", ".join(f"{a / MB:.0f}" for a, _ in peaks)
                tree = ", ".join(f"{b / MB:.0f}" for _, b in peaks)
                how = "/usr/bin/time -f %M" if timer.exists() else "getrusage(RUSAGE_CHILDREN)"
                note = f"largest single process {one} MB ({how})"
                if any(b for _, b in peaks):
                    note += f"; whole process tree {tree} MB (psutil, sampled every 20 ms)"
                rss_row.notes.append(note)

    def _big_runs(
        self, time_row: Row, rss_row: Row, timer: Path, peaks: list[tuple[int, int]]
    ) -> None:
        for n in range(self.runs):
            repo = self.new_repo(f"big-{n}")
            data = {
                "resources": [
                    {
                        "name": "big",
                        "bucket": BIG_BUCKET,
                        "blob": BIG_BLOB,
                        "destination": "big",
                        "files": [BIG_FILE],
                    }
                ]
            }
            self.write_manifest(repo / "params.yaml", data)
            rss_file = self.scratch / f"rss-{n}.txt"
            cmd = [self.gcsdvc, "sync", "-q"]
            if timer.exists():
                wrapped = [str(timer), "-f", "%M", "-o", str(rss_file), *cmd]
            else:
                wrapped = [self.python, "-c", CHILD_RUSAGE, str(rss_file), *cmd]
            elapsed, peak_tree = self.run_sampled(wrapped, repo, "gcsdvc sync (1 GB)")
            kb = rss_file.read_text(encoding="utf-8").strip().splitlines()[-1]
            peak_one = int(kb) * KB
            time_row.samples.append(elapsed)
            rss_row.samples.append(max(peak_one, peak_tree) / MB)
            peaks.append((peak_one, peak_tree))
            got = repo / "data" / "big" / BIG_FILE
            size = got.stat().st_size if got.is_file() else -1
            rmtree(repo)
            if size != self.sizes.big:
                raise BenchError(f"{got}: {size} bytes after the sync, expected {self.sizes.big}")

    def run_sampled(self, cmd: Sequence[str], cwd: Path, label: str) -> tuple[float, int]:
        """Like run(), sampling the process tree's RSS meanwhile; returns (seconds, peak bytes)."""
        started = time.perf_counter()
        with subprocess.Popen(
            list(cmd),
            cwd=cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as proc:
            sampler = TreeRss(proc.pid)
            try:
                out, err = proc.communicate(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                raise BenchError(f"{label}: no result after {TIMEOUT:.0f} s") from None
            finally:
                sampler.stop()
        elapsed = time.perf_counter() - started
        done = subprocess.CompletedProcess(list(cmd), proc.returncode, out, err)
        if done.returncode != 0:
            raise failure(label, cmd, done)
        return elapsed, sampler.peak

    # -- other tools -------------------------------------------------------------------

    def start_https_emulator(self) -> str:
        """A second fake-gcs-server, over HTTPS (gsutil needs it), with the listed files only."""
        from gcsdvc.emulator import _binary

        seed = self.work / "seed-https"
        for exp, names in self.listed.items():
            for name in names:
                src = self.seed / BUCKET / PREFIX / exp / name
                dest = seed / BUCKET / PREFIX / exp / name
                dest.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(src, dest)
                except OSError:
                    shutil.copyfile(src, dest)
        port = free_port()
        url = f"https://{HOST}:{port}"
        log_path = self.work / "fake-gcs-https.log"
        log_file = log_path.open("wb")
        argv = [
            str(_binary()), "-scheme", "https", "-backend", "memory",
            "-host", HOST, "-port", str(port), "-external-url", url,
            "-public-host", f"{HOST}:{port}", "-data", str(seed), "-log-level", "error",
        ]  # fmt: skip
        self.https = subprocess.Popen(
            argv,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log_file.close()
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.https.poll() is not None:
                raise BenchError(f"the HTTPS emulator exited early:\n{log_path.read_text()}")
            try:
                with urllib.request.urlopen(
                    f"{url}/storage/v1/b", timeout=2, context=context
                ) as resp:
                    if resp.status == 200:
                        return str(port)
            except OSError:
                pass
            time.sleep(0.05)
        raise BenchError(f"the HTTPS emulator is not ready on {url}")

    def gsutil(self, row: Row) -> None:
        port = self.start_https_emulator()
        config = self.work / "boto.cfg"
        config.write_text(
            "[Credentials]\n"
            f"gs_json_host = {HOST}\n"
            f"gs_json_port = {port}\n"
            "[Boto]\n"
            "https_validate_certificates = False\n"
            "[GSUtil]\n"
            "prefer_api = json\n"
            "software_update_check_period = 0\n"
            "default_project_id = bench\n",
            encoding="utf-8",
        )
        env = dict(self.env)
        env.update(
            {
                "BOTO_CONFIG": str(config),
                "CLOUDSDK_CONFIG": str(self.home / "gcloud"),
                "CLOUDSDK_CORE_PASS_CREDENTIALS_TO_GSUTIL": "false",
                "CLOUDSDK_CORE_DISABLE_USAGE_REPORTING": "true",
                "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK": "true",
                "STORAGE_EMULATOR_HOST": f"https://{HOST}:{port}",
            }
        )
        binary = shutil.which("gsutil")
        assert binary is not None
        # cp -I flattens names (metrics/step-000.json of every experiment would collide),
        # so copy the listed files with rsync, excluding the unlisted objects.
        exclude = rf"^[^/]+/{UNLISTED_DIR}/.*"
        for n in range(self.runs):
            dest = self.scratch / f"gsutil-{n}"
            rmtree(dest)
            dest.mkdir(parents=True)
            cmd = [
                binary,
                "-q",
                "-m",
                "rsync",
                "-r",
                "-x",
                exclude,
                f"gs://{BUCKET}/{PREFIX}",
                str(dest),
            ]
            row.samples.append(self.timed(cmd, self.scratch, "gsutil rsync", env=env))
            got = len(files_below(dest))
            rmtree(dest)
            if got != self.sizes.total:
                raise BenchError(f"gsutil copied {got} files, expected {self.sizes.total}")

    def rclone(self, row: Row) -> None:
        assert self.emulator is not None
        binary = shutil.which("rclone")
        assert binary is not None
        listing = self.scratch / "rclone-files.txt"
        listing.write_text(
            "".join(f"{exp}/{name}\n" for exp, names in self.listed.items() for name in names),
            encoding="utf-8",
        )
        config = self.scratch / "rclone.conf"
        config.write_text("", encoding="utf-8")
        for n in range(self.runs):
            dest = self.scratch / f"rclone-{n}"
            rmtree(dest)
            dest.mkdir(parents=True)
            cmd = [
                binary, "copy", "--config", str(config),
                "--files-from-raw", str(listing), "--transfers", "16",
                "--gcs-anonymous", "--gcs-endpoint", f"{self.emulator.url}/storage/v1/",
                f":gcs:{BUCKET}/{PREFIX}", str(dest),
            ]  # fmt: skip
            row.samples.append(self.timed(cmd, self.scratch, "rclone copy"))
            got = len(files_below(dest))
            rmtree(dest)
            if got != self.sizes.total:
                raise BenchError(f"rclone copied {got} files, expected {self.sizes.total}")

    # -- all of it -------------------------------------------------------------------------

    def run_all(self) -> None:
        s = self.sizes
        n, n_scale = f"{s.total:,}", f"{s.scale_total:,}"
        a = self.scenario(
            Row(f"A: gcsfs fs.get of {n} files (fresh process)", tag="A"), self.baseline_a
        )
        b = self.scenario(Row("B: python -c 'import dvc.repo, gcsfs'", tag="B"), self.baseline_b)
        self.scenario(Row(f"gcsdvc sync, cold, {n} files", baseline=a, target=3.0), self.cold)
        noop = status = None
        if self.synced is None:
            for name in ("no-op", "no-op, skip_if_exist: false", "dvc status", "dvc update"):
                self.skipped(f"gcsdvc/dvc {name}", "cold sync failed")
        else:
            noop = self.scenario(
                Row(f"gcsdvc sync, no-op, {n} files", baseline=b, target=2.5, tag="no-op"),
                self.noop,
            )
            self.scenario(
                Row(f"gcsdvc sync, no-op, skip_if_exist: false, {n} files", baseline=b),
                self.noop_noskip,
            )
        scale_cold = self.scenario(
            Row(f"gcsdvc sync, cold, {n_scale} tiny files (setup, 1 run)"), self.scale_cold
        )
        if scale_cold.status:
            self.skipped(f"gcsdvc sync, no-op, {n_scale} files", "its cold sync failed")
        else:
            self.scenario(
                Row(f"gcsdvc sync, no-op, {n_scale} files", baseline=noop, target=1.5),
                self.scale_noop,
            )
        self.scenario(
            Row(f"dvc import-url loop, {s.import_subset} files (fresh repo)"), self.import_loop
        )
        if self.synced is not None:
            status = self.scenario(
                Row(f"dvc status, gcsdvc-synced {n} files", tag="dvc status"), self.dvc_status
            )
            if noop is not None:
                ratio = Row(f"gcsdvc no-op vs dvc status ({n} files)", baseline=status)
                ratio.samples = noop.samples
                self.add(ratio)
            self.scenario(Row(f"dvc update -R data, gcsdvc-synced {n} files"), self.dvc_update)
        if self.args.big:
            size = f"{s.big / GB:g} GB" if s.big >= GB else f"{s.big // MB} MB"
            time_row = Row(f"gcsdvc sync, 1 object of {size}")
            rss_row = Row(f"gcsdvc sync, {size}: peak RSS of the process tree", unit="MB")
            rss_row.target = 300.0
            self.scenario(time_row, lambda row: self.big(row, rss_row))
            self.add(rss_row)
            if time_row.status:
                rss_row.status = time_row.status
        else:
            self.skipped("gcsdvc sync, big object, peak RSS", "--no-big")
        for name, label, body in (
            ("gsutil", f"gsutil -m rsync -x of {n} files", self.gsutil),
            ("rclone", f"rclone copy --files-from of {n} files", self.rclone),
        ):
            if shutil.which(name) is None:
                self.add(Row(label, status="not installed"))
            else:
                self.scenario(Row(label, baseline=a), body)


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    parts = []
    for name in ("gcsdvc", "dvc", "dvc-gs", "gcsfs"):
        try:
            parts.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            parts.append(f"{name} ?")
    return ", ".join(parts)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark gcsdvc sync against local baselines (fake-gcs-server on 127.0.0.1)."
    )
    parser.add_argument(
        "--runs", type=int, default=3, help="runs per scenario; the median is shown [3]"
    )
    parser.add_argument(
        "--quick", action="store_true", help="far fewer and smaller files, for a smoke test"
    )
    parser.add_argument(
        "--big",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="include the big-object scenario (1 GB; 64 MB with --quick) [on]",
    )
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    work = Path(tempfile.mkdtemp(prefix="gcsdvc-bench-"))
    bench: Bench | None = None
    try:
        bench = Bench(args, work)
        bench.start()
        bench.run_all()
    except BenchError as exc:
        print(f"[bench] setup failed:\n{exc}", file=sys.stderr)
        return 1
    finally:
        if bench is not None:
            bench.stop()
        rmtree(work)
    s = bench.sizes
    print(
        f"gcsdvc sync benchmark: median of {args.runs} run(s); "
        f"{'quick' if args.quick else 'full'} sizes ({s.experiments} experiments x {s.files} "
        f"files of {s.small // KB} KB, {s.unlisted} unlisted x {s.unlisted_size // MB} MB each); "
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} CPUs; {versions()}\n"
    )
    print(render_table(bench.rows))
    notes = [(row.scenario, note) for row in bench.rows for note in row.notes]
    if notes:
        print("\nNotes:")
        for scenario, note in notes:
            print(f"- {scenario}: {note}")
    return 1 if bench.errors else 0


if __name__ == "__main__":
    sys.exit(main())
