"""What the benchmarks measure: seeded runs, manifests, baselines and the file-set scenarios.

fake-gcs-server's memory backend scans a whole bucket per object lookup, so a bucket
holds at most about 1,000 objects and a large seed spreads over many buckets (one
seed folder each); otherwise the emulator, not gcsdvc, would be measured.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import (
    BIN,
    KB,
    PYTHON,
    BenchError,
    Measure,
    Row,
    Sandbox,
    Scenarios,
    measure,
)

GCSDVC = str(BIN / "gcsdvc")
OBJECTS_PER_BUCKET = 1000
# B: the start-up floor of any command that needs DVC and gcsfs.
B_CMD = [PYTHON, "-c", "import dvc.repo, gcsfs"]
# B plus a plain read of the manifest: the floor for commands that only read it.
B_YAML = "import sys, yaml, dvc.repo, gcsfs\nwith open(sys.argv[1]) as f:\n    yaml.safe_load(f)\n"

# The raw copy: one listing per prefix (all at once), then one GET per object.
# concurrency=1 keeps gcsfs 2026.10 on _get_file_request (a single media GET);
# its default path first asks for each object's metadata (_get_file_concurrent -> _info).
RAW = """\
import asyncio, json, sys
import gcsfs
from fsspec.asyn import sync
spec = json.load(open(sys.argv[1]))
fs = gcsfs.GCSFileSystem(token="anon")
async def list_all():
    return await asyncio.gather(*(fs._find(p) for p in spec["prefixes"]))
listed = {path for found in sync(fs.loop, list_all) for path in found}
missing = set(spec["rpaths"]) - listed
if missing:
    sys.exit(f"not listed: {sorted(missing)[:3]}")
if not spec["list_only"]:
    fs.get(spec["rpaths"], spec["lpaths"], concurrency=1)
"""

# The raw copy plus what a sync cannot leave out: DVC's start-up and, per object, a copy for
# DVC's cache (in one of 256 folders, as DVC's) and a small stage file beside the data.
RAW_WITH_DVC = (
    RAW.replace("import gcsfs\n", "import gcsfs, dvc.repo\n")
    + """\
    import os
    cache = os.path.join(spec["cache"], "%02x")
    for i, path in enumerate(spec["lpaths"]):
        with open(path, "rb") as f:
            data = f.read()
        os.makedirs(cache % (i % 256), exist_ok=True)
        with open(os.path.join(cache % (i % 256), str(i)), "wb") as f:
            f.write(data)
        with open(path + ".dvc", "w") as f:
            f.write("outs:\\n- md5: " + 32 * "0" + "\\n" + 300 * "#" + "\\n")
"""
)


@dataclass(frozen=True)
class Run:
    """One experiment run in the bucket: ``gs://bucket/runs/<name>/<files>``."""

    bucket: str
    name: str
    files: tuple[str, ...]

    @property
    def prefix(self) -> str:
        return f"{self.bucket}/runs/{self.name}"


def file_names(count: int) -> tuple[str, ...]:
    """Names inside a run: half nested, a quarter deeper, a quarter plain."""
    names = []
    for i in range(count):
        if i % 2 == 0:
            names.append(f"metrics/step-{i:04d}.json")
        elif i % 4 == 1:
            names.append(f"eval/plots/fig-{i:04d}.png")
        else:
            names.append(f"out-{i:04d}.txt")
    return tuple(names)


def seed_runs(seed: Path, group: str, runs: int, files: int) -> list[Run]:
    """Write ``runs`` runs of ``files`` files (1 KB to 10 KB, distinct bytes) below ``seed``."""
    per_bucket = max(1, OBJECTS_PER_BUCKET // files)
    names = file_names(files)
    block = random.Random(13).randbytes(64 * KB)
    made = []
    for r in range(runs):
        run = Run(f"{group}-{r // per_bucket:03d}", f"run-{r:05d}", names)
        folder = seed / run.bucket / "runs" / run.name
        for i, name in enumerate(names):
            path = folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            head = f"{run.prefix}/{name}\n".encode()
            size = KB + (r * 7919 + i * 104729) % (9 * KB)
            start = (r * 31 + i * 17) % (len(block) - size)
            path.write_bytes(head + block[start : start + size - len(head)])
        made.append(run)
    return made


def manifest(runs: list[Run], skip: bool = True) -> dict[str, Any]:
    """One entry per run, listing its files; a run lands in data/<run name>/."""
    return {
        "resources": [
            {
                "name": run.name,
                "bucket": run.bucket,
                "blob": "runs",
                "subblob": run.name,
                "destination": run.name,
                "files": list(run.files),
                "skip_if_exist": skip,
                "description": f"benchmark run {run.name}",
            }
            for run in runs
        ]
    }


def count(runs: list[Run]) -> int:
    return sum(len(run.files) for run in runs)


def raw_spec(box: Sandbox, runs: list[Run], dest: Path | None, with_dvc: bool = False) -> list[str]:
    """The raw copy (or, without ``dest``, the raw listing) of exactly what ``runs`` name;
    ``with_dvc``: :data:`RAW_WITH_DVC`, its cache folders in ``dest``."""
    spec = {
        "prefixes": [run.prefix + "/" for run in runs],
        "rpaths": [f"{run.prefix}/{f}" for run in runs for f in run.files],
        "lpaths": [str(dest / run.name / f) for run in runs for f in run.files] if dest else [],
        "list_only": dest is None,
        "cache": str(dest / ".cache") if dest else "",
    }
    path = box.work / ("raw-copy.json" if dest else "raw-list.json")
    path.write_text(json.dumps(spec), encoding="utf-8")
    return [PYTHON, "-c", RAW_WITH_DVC if with_dvc else RAW, str(path)]


def verify(repo: Path, seed: Path, runs: list[Run]) -> None:
    """Every listed file synced with the seed's bytes, one stage each."""
    data = repo / "data"
    bad = [
        f"{run.name}/{name}"
        for run in runs
        for name in run.files
        if not (data / run.name / name).is_file()
        or (data / run.name / name).read_bytes()
        != (seed / run.bucket / "runs" / run.name / name).read_bytes()
    ]
    stages = sum(1 for _ in data.rglob("*.dvc"))
    if bad or stages != count(runs):
        raise BenchError(f"sync result wrong: {len(bad)} bad files {bad[:3]}, {stages} stages")


def stage_mtimes(repo: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in (repo / "data").rglob("*.dvc")}


def repeat(box: Sandbox, name: str, runs: int, cmd: list[str], repo: Path) -> Measure:
    """Time ``cmd`` in ``repo``; it must leave every stage untouched."""
    before = stage_mtimes(repo)
    result = measure(name, runs, lambda _: box.run(cmd, repo).seconds)
    if stage_mtimes(repo) != before:
        raise BenchError(f"{' '.join(cmd)} rewrote stages in {repo}")
    return result


def against_listing(
    box: Sandbox, runs_list: list[Run], runs: int, cmd: list[str], repo: Path, name: str
) -> tuple[Measure, Measure]:
    """``cmd`` in ``repo`` and a raw listing of the same prefixes, interleaved: (listing, cmd)."""
    listing_cmd = raw_spec(box, runs_list, None)
    listing, result = Measure("raw listing"), Measure(name)
    for _ in range(runs):
        listing.samples.append(box.run(listing_cmd, box.work).seconds)
        result.samples.append(box.run(cmd, repo).seconds)
    return listing, result


def file_set(
    sx: Scenarios, box: Sandbox, seed: Path, runs_list: list[Run], runs: int, b: Measure
) -> tuple[Measure | None, Measure | None, Measure | None]:
    """Cold sync vs the raw copy (interleaved), then no-op and status on the synced repo.

    Returns the cold sync's time and peak RSS and the raw copy's peak RSS (None on failure).
    """
    n = f"{count(runs_list):,}"
    cold = Measure(f"cold {n}")
    raw = Measure("raw copy")
    floor = Measure("raw copy with DVC's start-up and files")
    cold_rss = Measure(f"cold {n}", "MB")
    raw_rss = Measure("raw copy", "MB")
    first_noop = Measure("first no-op")
    repo = None
    with sx.guard(f"cold sync, {n} files"):
        dest = box.work / "raw-copy"
        raw_cmd = raw_spec(box, runs_list, dest)
        for k in range(runs):
            timing = box.run(raw_cmd, box.work, rss=True)
            got = sum(1 for p in dest.rglob("*") if p.is_file())
            box.discard(dest)
            if got != count(runs_list):
                raise BenchError(f"the raw copy wrote {got} files, expected {n}")
            raw.samples.append(timing.seconds)
            raw_rss.samples.append(timing.peak_rss / 2**20)
            floor.samples.append(box.run(raw_spec(box, runs_list, dest, True), box.work).seconds)
            box.discard(dest)
            if repo is not None:
                box.discard(repo)
            repo = box.new_repo(f"cold-{k}", manifest(runs_list))
            timing = box.run([GCSDVC, "sync", "-q"], repo, rss=True)
            cold.samples.append(timing.seconds)
            cold_rss.samples.append(timing.peak_rss / 2**20)
            if k == 0:
                verify(repo, seed, runs_list)
            first_noop.samples.append(box.run([GCSDVC, "sync", "-q"], repo).seconds)
        sx.add(Row(f"cold sync, {n} files (1-10 KB)", cold, raw, 1.5))
        sx.add(Row(f"cold sync, {n} files, against DVC's floor", cold, floor))
        sx.add(Row(f"peak RSS, cold sync of {n} files", cold_rss, raw_rss, 1.5))
        sx.add(Row(f"first no-op right after the cold sync, {n} files", first_noop, b, 2.5))
    if repo is None or not cold.samples:
        return None, None, None
    with sx.guard(f"no-op, {n} files"):
        noop = repeat(box, "no-op", runs, [GCSDVC, "sync", "-q"], repo)
        sx.add(Row(f"no-op re-sync, {n} files", noop, b, 2.5))
    with sx.guard(f"status --offline, {n} files"):
        offline = repeat(box, "offline", runs, [GCSDVC, "status", "--offline"], repo)
        sx.add(Row(f"`gcsdvc status --offline`, {n} files", offline, b, 2.5))
    with sx.guard(f"status, {n} files"):
        listing, status = against_listing(box, runs_list, runs, [GCSDVC, "status"], repo, "status")
        sx.add(Row(f"`gcsdvc status`, {n} files", status, listing, 3.0))
    return cold, cold_rss, raw_rss
