#!/usr/bin/env python
"""`make bench-scale`: issue 13's scenarios in one table, each against its baseline.

* file sets of 1,000 / 10,000 / 100,000 files (1 KB to 10 KB, 100 per run, at most
  1,000 objects per bucket): cold sync vs the one-request raw copy (and its peak RSS),
  the first and later no-ops and ``status --offline`` vs B, ``status`` vs a raw listing,
  and each size's cold time against the next smaller one (linear: at most 1.1x the size ratio);
* one 1 GB object vs ``curl`` of it, 4 x 512 MB vs 4 parallel curls: the time the bytes add
  (each side's time less its time for as many 1-byte objects), the whole command, peak RSS;
* a 2,000-entry manifest (5 files each): ``validate``, ``list``, no-op and dry-run after a
  sync vs (B + ``yaml.safe_load`` of the file); the first dry-run vs a raw listing.

``--quick`` shrinks every count (a CI smoke test: fails only when a command errors).
"""

from __future__ import annotations

import itertools
import shlex
import shutil
import sys
from pathlib import Path
from urllib.parse import quote

from _common import (
    MB,
    PYTHON,
    BenchError,
    Measure,
    Row,
    Sandbox,
    Scenarios,
    Timing,
    log,
    measure,
    parser,
    report,
    rmtree,
    work_folder,
)
from _workloads import (
    B_CMD,
    B_YAML,
    GCSDVC,
    against_listing,
    count,
    file_set,
    manifest,
    repeat,
    seed_runs,
)

BIG_BUCKET = "bench-big"


def file_sets(sx: Scenarios, work: Path, sizes: list[int], per_run: int, runs: int) -> None:
    """Every file-set scenario at each size, against B and the raw copy of this sandbox."""
    seed = work / "seed"
    log(f"seeding {sizes[-1]:,} files ...")
    made = seed_runs(seed, "files", sizes[-1] // per_run, per_run)
    box = Sandbox(work, seed)
    try:
        b = measure("B", runs, lambda _: box.run(B_CMD, work).seconds)
        colds: list[tuple[int, Measure]] = []
        for size in sizes:
            cold, _, _ = file_set(sx, box, seed, made[: size // per_run], runs, b)
            if cold is not None:
                colds.append((size, cold))
        for (small, fast), (big, slow) in itertools.pairwise(colds):
            row = Row(
                f"cold sync {big:,} / {small:,} files (linear)", slow, fast, 1.1 * big / small
            )
            sx.add(row)
    finally:
        box.stop()


def write_big(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    block = (path.name.encode() * MB)[: MB - 8]
    with path.open("wb") as out:
        for i in range(0, size, MB):
            out.write(((i // MB).to_bytes(8, "big") + block)[: size - i])


def large(sx: Scenarios, work: Path, big: int, part: int, runs: int) -> None:
    """Throughput of large objects: the time the bytes add, against curl's.

    Each round times curl and ``gcsdvc sync`` of the large objects and of as many
    1-byte objects: the difference is what the bytes cost each side (start-up,
    listing and the stage are the same for a tiny object). The whole command is
    reported too, against curl alone, and the bytes' time against curl then ``cp``
    of each object: the two copies a sync writes where DVC's cache type is copy
    (no reflink), the floor that the target against curl alone does not allow
    for. Each scenario has an emulator holding only
    its own objects: with all 3 GB in one, the sync of 1 GB (which writes 2 GB,
    the DVC cache's copy and the data folder's) took twice as long, curl 1.5x.
    """
    one = f"one {big // MB:,} MB object"
    with sx.guard(one):
        _large_rows(sx, work / "one", one, {"weights.bin": big}, 1 / 0.6, "curl", runs)
    four = f"4 x {part // MB:,} MB objects"
    with sx.guard(four):
        parts = {f"part-{i}.bin": part for i in range(4)}
        _large_rows(sx, work / "four", four, parts, 1 / 0.5, "4 curls at once", runs)


def _large_rows(
    sx: Scenarios,
    work: Path,
    label: str,
    sizes: dict[str, int],
    target: float,
    what: str,
    runs: int,
) -> None:
    names, tiny = list(sizes), [f"tiny-{i}.bin" for i in range(len(sizes))]
    seed = work / "seed"
    for name, size in {**sizes, **dict.fromkeys(tiny, 1)}.items():
        write_big(seed / BIG_BUCKET / "blobs" / name, size)
    box = Sandbox(work, seed)

    def curl(files: list[str], copy: bool = False) -> float:
        """curl ``files`` at once; ``copy``: then ``cp`` each (DVC's copy cache keeps two)."""
        base = f"{box.url}/download/storage/v1/b/{BIG_BUCKET}/o/"
        out = [work / f"curl-{f}" for f in files]
        cmds = [
            ["curl", "-sSf", "-o", str(o), f"{base}{quote('blobs/' + f, safe='')}?alt=media"]
            for f, o in zip(files, out, strict=True)
        ]
        if copy:
            cmds = [
                ["sh", "-c", f'{shlex.join(c)} && cp "$1" "$1.copy"', "sh", str(o)]
                for c, o in zip(cmds, out, strict=True)
            ]
        seconds = box.run_all(cmds, work) if len(cmds) > 1 else box.run(cmds[0], work).seconds
        for o in out:
            o.unlink()
            o.with_name(o.name + ".copy").unlink(missing_ok=True)
        return seconds

    def sync(files: list[str], k: int) -> Timing:
        entry = {"name": "big", "bucket": BIG_BUCKET, "blob": "blobs", "files": files}
        repo = box.new_repo(f"big-{k}", {"resources": [{**entry, "destination": "big"}]})
        timing = box.run([GCSDVC, "sync", "-q"], repo, rss=True)
        got = {f: (repo / "data" / "big" / f).stat().st_size for f in files}
        rmtree(repo)  # a few files: no inode scan for the next command to pay
        expected = {f: sizes.get(f, 1) for f in files}
        if got != expected:
            raise BenchError(f"synced sizes {got}, expected {expected}")
        return timing

    whole, rss = Measure(label), Measure(label, "MB")
    added, curl_added, curls = Measure(label), Measure(what), Measure(what)
    two_added = Measure(f"{what}, each then cp")
    try:
        b_rss = measure("B", runs, lambda _: box.run(B_CMD, work, rss=True).peak_rss / MB, "MB")
        for k in range(runs):
            curl_big, curl_tiny = curl(names), curl(tiny)
            two_added.samples.append(curl(names, copy=True) - curl(tiny, copy=True))
            timing, small = sync(names, k), sync(tiny, k)
            curls.samples.append(curl_big)
            curl_added.samples.append(curl_big - curl_tiny)
            whole.samples.append(timing.seconds)
            added.samples.append(timing.seconds - small.seconds)
            rss.samples.append(timing.peak_rss / MB)
    finally:
        box.stop()
    throughput = f"{label}: time the bytes add (throughput ≥ {1 / target:.0%} of curl's)"
    sx.add(Row(throughput, added, curl_added, target))
    # The floor where DVC's cache type is copy (no reflink): the bytes written twice.
    sx.add(Row(f"{label}: time the bytes add, against two copies", added, two_added))
    sx.add(Row(f"{label}: whole command, start-up included", whole, curls))
    sx.add(Row(f"peak RSS, {label}", rss, b_rss))


def many_entries(sx: Scenarios, work: Path, entries: int, runs: int) -> None:
    seed = work / "seed"
    made = seed_runs(seed, "entries", entries, 5)
    box = Sandbox(work, seed)
    n = f"{entries:,} entries"
    try:
        repo = box.new_repo("entries", manifest(made))
        byaml_cmd = [PYTHON, "-c", B_YAML, str(repo / "params.yaml")]
        byaml = measure("B + yaml.safe_load", runs, lambda _: box.run(byaml_cmd, repo).seconds)
        with sx.guard(f"validate, {n}"):
            validate = repeat(box, "validate", runs, [GCSDVC, "validate"], repo)
            sx.add(Row(f"`gcsdvc validate`, {n}", validate, byaml, 3.0))
        with sx.guard(f"list, {n}"):
            listed = repeat(box, "list", runs, [GCSDVC, "list"], repo)
            sx.add(Row(f"`gcsdvc list`, {n}", listed, byaml, 3.0))
        with sx.guard(f"first dry-run, {n}"):
            dry_run = [GCSDVC, "sync", "--dry-run"]
            listing, first = against_listing(box, made, runs, dry_run, repo, "first dry-run")
            sx.add(Row(f"first dry-run (nothing synced), {n}", first, listing))
        with sx.guard(f"sync, {n}"):
            cold = measure("sync", 1, lambda _: box.run([GCSDVC, "sync", "-q"], repo).seconds)
            sx.add(Row(f"cold sync, {n} x 5 = {count(made):,} files (setup, 1 run)", cold))
            noop = repeat(box, "no-op", runs, [GCSDVC, "sync", "-q"], repo)
            sx.add(Row(f"no-op re-sync, {n}", noop, byaml, 3.0))
            dry = repeat(box, "dry-run", runs, [GCSDVC, "sync", "--dry-run"], repo)
            sx.add(Row(f"dry-run after a sync, {n}", dry, byaml, 3.0))
    finally:
        box.stop()


def main() -> int:
    parse = parser(__doc__.splitlines()[0])
    parse.add_argument(
        "--sizes",
        default="1000,10000,100000",
        help="file-set sizes, ascending multiples of 100 [1000,10000,100000]",
    )
    parse.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=["large", "entries"],
        help="leave out the large objects or the 2,000-entry manifest (repeatable)",
    )
    args = parse.parse_args()
    runs = 1 if args.quick else args.runs
    if args.quick:
        sizes, per_run, big, part, entries = [100, 300], 20, 16 * MB, 8 * MB, 40
    else:
        sizes, per_run, big, part, entries = (
            sorted(int(s) for s in args.sizes.split(",")),
            100,
            1024 * MB,
            512 * MB,
            2000,
        )
    sx = Scenarios()
    with work_folder() as work:
        # The large objects first, on a machine closer to a user's: the file sets leave
        # 1.5 million files (set aside, not deleted) and a full page cache behind them.
        if "large" in args.skip:
            sx.skip("one large object, 4 large objects", "--skip large")
        elif shutil.which("curl") is None:
            sx.skip("one large object, 4 large objects", "curl not installed")
        else:
            large(sx, work / "large", big, part, runs)
        file_sets(sx, work / "files", sizes, per_run, runs)
        if "entries" not in args.skip:
            many_entries(sx, work / "entries", entries, runs)
    return report("gcsdvc scale benchmark (make bench-scale)", sx.rows, runs, args.quick)


if __name__ == "__main__":
    sys.exit(main())
