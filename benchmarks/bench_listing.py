"""Listing cost: a run folder with 2 listed files beside many unlisted objects, against one without.

Measures ``gcsdvc status`` and a new-file ``gcsdvc sync`` (the manifest gains a
second file) in two repositories that differ only in the bucket: ``clean`` holds
the two listed files, ``crowded`` holds them beside N unlisted objects in the
same run folder and below it. Prints medians of several runs (wall time and the
child's peak RSS) and the crowded/clean ratio; the target is at most 1.3x.

The emulator's own cost is measured apart (one object read and one one-level
listing page in each bucket), since its memory backend slows down with many
objects in a bucket whatever the client asks.

    .venv/bin/python benchmarks/bench_listing.py [--objects 20000] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

import yaml

from gcsdvc.emulator import Emulator, client_env

RUN = "project/run-7"
FILES = ["metrics.json", "model.bin"]


def seed(root: Path, unlisted: int) -> None:
    """Bucket folders for the emulator: ``clean`` and ``crowded``."""
    for bucket in ("clean", "crowded"):
        run = root / bucket / RUN
        run.mkdir(parents=True)
        (run / FILES[0]).write_text('{"acc": 0.9}\n')
        (run / FILES[1]).write_bytes(os.urandom(1 << 16))
    crowded = root / "crowded" / RUN
    for n in range(unlisted):
        folder = crowded if n % 2 else crowded / "shards"
        folder.mkdir(exist_ok=True)
        (folder / f"events-{n:06d}.tfevents").write_bytes(b"e")


def sh(*args: str, cwd: Path, env: dict[str, str]) -> None:
    subprocess.run(args, cwd=cwd, env=env, check=True, capture_output=True)


def make_repo(path: Path, bucket: str, env: dict[str, str]) -> None:
    path.mkdir()
    sh("git", "init", "-q", cwd=path, env=env)
    sh(sys.executable, "-m", "dvc", "init", "-q", cwd=path, env=env)
    write_manifest(path, bucket, FILES[:1])
    sh(sys.executable, "-m", "gcsdvc", "sync", cwd=path, env=env)


def write_manifest(path: Path, bucket: str, files: list[str]) -> None:
    entry = {
        "name": "run7",
        "bucket": bucket,
        "blob": "project",
        "subblob": "run-7",
        "files": files,
        "destination": "run7",
        "skip_if_exist": True,
        "description": "listing benchmark",
    }
    (path / "params.yaml").write_text(yaml.safe_dump({"resources": [entry]}))


def timed(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{' '.join(args)} failed in {cwd}")
    return elapsed, usage.ru_maxrss


def status_run(repo: Path, env: dict[str, str]) -> tuple[float, int]:
    return timed([sys.executable, "-m", "gcsdvc", "status"], repo, env)


def sync_run(repo: Path, bucket: str, env: dict[str, str]) -> tuple[float, int]:
    """A sync that adds the second file (its stage and data are removed first)."""
    data = repo / "data" / "run7"
    for path in (data / FILES[1], data / f"{FILES[1]}.dvc"):
        if path.exists():
            path.chmod(0o644)
            path.unlink()
    write_manifest(repo, bucket, FILES)
    return timed([sys.executable, "-m", "gcsdvc", "sync"], repo, env)


def emulator_cost(url: str, bucket: str, runs: int) -> tuple[float, float]:
    """Median ms of one object read and of one one-level listing page, straight to the emulator."""
    name = urllib.parse.quote(f"{RUN}/{FILES[0]}", safe="")
    stat = f"{url}/storage/v1/b/{bucket}/o/{name}"
    page = f"{url}/storage/v1/b/{bucket}/o?prefix={RUN}/&delimiter=/&maxResults=1000"
    out = []
    for target in (stat, page):
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            with urllib.request.urlopen(target) as resp:
                resp.read()
            times.append(time.perf_counter() - start)
        out.append(statistics.median(times) * 1000)
    return out[0], out[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=20_000, help="unlisted objects")
    parser.add_argument("--runs", type=int, default=5, help="runs per measurement (>= 3)")
    args = parser.parse_args()
    runs = max(3, args.runs)

    work = Path(tempfile.mkdtemp(prefix="gcsdvc-bench-listing-"))
    try:
        seed(work / "seed", args.objects)
        start = time.perf_counter()
        # Loading many seeded objects takes the emulator a while; that is its cost, not ours.
        emulator = Emulator(seed=work / "seed").start(timeout=1200)
        loaded = time.perf_counter() - start
        try:
            env = {**os.environ, **client_env(emulator.url), "HOME": str(work)}
            repos = {}
            for bucket in ("clean", "crowded"):
                repos[bucket] = work / bucket
                make_repo(repos[bucket], bucket, env)
            rows = []
            scenarios: list[tuple[str, Callable[[str], tuple[float, int]]]] = [
                ("gcsdvc status", lambda b: status_run(repos[b], env)),
                ("gcsdvc sync (new file)", lambda b: sync_run(repos[b], b, env)),
            ]
            for label, measure in scenarios:
                results: dict[str, list[tuple[float, int]]] = {"clean": [], "crowded": []}
                for _ in range(runs):  # interleaved, so drift hits both alike
                    for bucket in ("clean", "crowded"):
                        results[bucket].append(measure(bucket))
                clean_t = statistics.median(t for t, _ in results["clean"])
                crowd_t = statistics.median(t for t, _ in results["crowded"])
                clean_m = statistics.median(m for _, m in results["clean"]) / 1024
                crowd_m = statistics.median(m for _, m in results["crowded"]) / 1024
                rows.append((label, clean_t, crowd_t, clean_m, crowd_m))
            costs = {b: emulator_cost(emulator.url, b, 20) for b in ("clean", "crowded")}
        finally:
            emulator.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"{args.objects} unlisted objects beside 2 listed files; medians of {runs} runs")
    head = f"{'command':<24} {'clean s':>8} {'crowded s':>10} {'ratio':>6}"
    head += f" {'clean MiB':>10} {'crowded MiB':>12} {'ratio':>6}"
    print(head)
    for label, clean_t, crowd_t, clean_m, crowd_m in rows:
        print(
            f"{label:<24} {clean_t:>8.2f} {crowd_t:>10.2f} {crowd_t / clean_t:>5.2f}x"
            f" {clean_m:>10.0f} {crowd_m:>12.0f} {crowd_m / clean_m:>5.2f}x"
        )
    print(f"emulator alone: {loaded:.1f} s to load the seeded objects; median of 20 requests:")
    for bucket, (stat_ms, page_ms) in costs.items():
        print(f"  {bucket:<8} object read {stat_ms:6.1f} ms, one listing page {page_ms:7.1f} ms")


if __name__ == "__main__":
    main()
