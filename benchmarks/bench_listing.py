#!/usr/bin/env python
"""`make bench-listing`: issue 9's listing cost, a run with 2 listed files beside many unlisted.

Two buckets differ only in what the run folder holds: ``clean`` has the 2 listed
files, ``crowded`` has them beside N unlisted objects (half one level below).
``gcsdvc status`` and a new-file ``gcsdvc sync`` (the manifest gains the second
file) run in a repository on each, interleaved; a row is crowded against clean,
time and peak RSS, target at most 1.3x.

fake-gcs-server's memory backend slows down with many objects in one bucket whatever
the client asks, so its own cost (loading the seed, one object read, one listing page
per bucket) is printed apart, below the table.
``--quick``: 2,000 unlisted objects, one run, no target verdicts (CI's smoke test).
"""

from __future__ import annotations

import statistics
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import (
    MB,
    BenchError,
    Measure,
    Row,
    Sandbox,
    Scenarios,
    Timing,
    log,
    parser,
    report,
    work_folder,
    write_yaml,
)
from _workloads import GCSDVC

TARGET = 1.3
BLOB, SUBBLOB = "project", "run-7"
FILES = ("metrics.json", "model.bin")
MODEL = bytes(range(256)) * 256  # 64 KB
BUCKETS = ("clean", "crowded")


def seed(root: Path, unlisted: int) -> None:
    """One seed folder per bucket: the 2 listed files, and the unlisted ones in ``crowded``."""
    for bucket in BUCKETS:
        run = root / bucket / BLOB / SUBBLOB
        run.mkdir(parents=True)
        (run / FILES[0]).write_text('{"acc": 0.9}\n')
        (run / FILES[1]).write_bytes(MODEL)
    crowded = root / "crowded" / BLOB / SUBBLOB
    (crowded / "shards").mkdir()
    for n in range(unlisted):
        folder = crowded if n % 2 else crowded / "shards"
        (folder / f"events-{n:06d}.tfevents").write_bytes(b"e")


def manifest(bucket: str, files: tuple[str, ...]) -> dict[str, Any]:
    entry = {
        "name": "run7",
        "bucket": bucket,
        "blob": BLOB,
        "subblob": SUBBLOB,
        "files": list(files),
        "destination": "run7",
        "skip_if_exist": True,
        "description": "listing benchmark",
    }
    return {"resources": [entry]}


def new_file_sync(box: Sandbox, repo: Path, bucket: str) -> Timing:
    """Sync with the second file new to the repo (its stage and data removed first)."""
    data = repo / "data" / "run7"
    for path in (data / FILES[1], data / f"{FILES[1]}.dvc"):
        if path.exists():
            path.chmod(0o644)
            path.unlink()
    write_yaml(repo / "params.yaml", manifest(bucket, FILES))
    timing = box.run([GCSDVC, "sync", "-q"], repo, rss=True)
    if (data / FILES[1]).read_bytes() != MODEL or not (data / f"{FILES[1]}.dvc").is_file():
        raise BenchError(f"the new-file sync in {repo} did not place {FILES[1]}")
    return timing


def compare(sx: Scenarios, box: Sandbox, repos: dict[str, Path], runs: int, n: str) -> None:
    """Each command on clean and crowded, interleaved so drift hits both alike."""
    commands: dict[str, Callable[[str], Timing]] = {
        "`gcsdvc status`": lambda b: box.run([GCSDVC, "status"], repos[b], rss=True),
        "`gcsdvc sync` (one new file)": lambda b: new_file_sync(box, repos[b], b),
    }
    for label, once in commands.items():
        with sx.guard(label):
            times = {b: Measure(b) for b in BUCKETS}
            rss = {b: Measure(b, "MB") for b in BUCKETS}
            for _ in range(runs):
                for bucket in BUCKETS:
                    timing = once(bucket)
                    times[bucket].samples.append(timing.seconds)
                    rss[bucket].samples.append(timing.peak_rss / MB)
            where = f"2 listed files beside {n} unlisted"
            sx.add(Row(f"{label}, {where}", times["crowded"], times["clean"], TARGET))
            sx.add(Row(f"peak RSS, {label}, {where}", rss["crowded"], rss["clean"], TARGET))


def emulator_cost(url: str, bucket: str, requests: int) -> tuple[float, float]:
    """Median ms of one object read and one one-level listing page, straight to the emulator."""
    name = urllib.parse.quote(f"{BLOB}/{SUBBLOB}/{FILES[0]}", safe="")
    stat = f"{url}/storage/v1/b/{bucket}/o/{name}"
    page = f"{url}/storage/v1/b/{bucket}/o?prefix={BLOB}/{SUBBLOB}/&delimiter=/&maxResults=1000"
    medians = []
    for target in (stat, page):
        times = []
        for _ in range(requests):
            start = time.perf_counter()
            with urllib.request.urlopen(target) as resp:
                resp.read()
            times.append(time.perf_counter() - start)
        medians.append(statistics.median(times) * 1000)
    return medians[0], medians[1]


def main() -> int:
    parse = parser(__doc__.splitlines()[0])
    parse.add_argument(
        "--objects", type=int, default=20_000, help="unlisted objects in the crowded run [20000]"
    )
    args = parse.parse_args()
    runs = 1 if args.quick else args.runs
    unlisted = 2_000 if args.quick else args.objects
    requests = 5 if args.quick else 20
    sx = Scenarios()
    with work_folder() as work:
        log(f"seeding {unlisted:,} unlisted objects ...")
        seed(work / "seed", unlisted)
        started = time.perf_counter()
        # Loading many objects into one bucket takes the emulator minutes: its cost, not ours.
        box = Sandbox(work, work / "seed", start_timeout=3600)
        loaded = time.perf_counter() - started
        try:
            repos = {}
            with sx.guard("setup: a synced repository on each bucket"):
                for bucket in BUCKETS:
                    repos[bucket] = box.new_repo(bucket, manifest(bucket, FILES[:1]))
                    box.run([GCSDVC, "sync", "-q"], repos[bucket])
            if len(repos) == len(BUCKETS):
                compare(sx, box, repos, runs, f"{unlisted:,}")
            costs = {b: emulator_cost(box.url, b, requests) for b in BUCKETS}
        finally:
            box.stop()
    status = report("gcsdvc listing-cost benchmark (make bench-listing)", sx.rows, runs, args.quick)
    print(
        f"\nThe emulator alone (not gcsdvc): {loaded:.1f} s to start with the seed; "
        f"median of {requests} requests:"
    )
    for bucket, (stat_ms, page_ms) in costs.items():
        print(f"- {bucket}: one object read {stat_ms:.1f} ms, one listing page {page_ms:.1f} ms")
    return status


if __name__ == "__main__":
    sys.exit(main())
