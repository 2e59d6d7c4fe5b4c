#!/usr/bin/env python
"""`python benchmarks/bench_api.py`: the notebook API (gcsdvc.path) on a 3,000-file manifest.

3 runs x 1,000 files (1 KB to 10 KB), synced once. Then, each in a fresh process (the API
keeps what it read per process): (a) one ``gcsdvc.resources()`` call; (b) one
``gcsdvc.path(name, file)`` call for each of the 3,000 files, first pass included. Each is
timed inside its process around the calls (the interpreter's start and ``import gcsdvc``
left out). Target: (b) at most 5x (a), so that a loop of path() calls costs about a
dictionary look-up each. ``--quick``: 3 runs x 20 files, one run, no verdicts.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from _common import (
    PYTHON,
    BenchError,
    Measure,
    Row,
    Sandbox,
    Scenarios,
    log,
    parser,
    report,
    work_folder,
)
from _workloads import GCSDVC, Run, count, manifest, seed_runs, verify

# argv: the mode ("resources" or "path") and, for "path", a JSON list of [name, file].
CALLS = """\
import json, sys, time
import gcsdvc
mode = sys.argv[1]
if mode == "resources":
    started = time.perf_counter()
    gcsdvc.resources()
    elapsed = time.perf_counter() - started
else:
    with open(sys.argv[2], encoding="utf-8") as f:
        pairs = json.load(f)
    started = time.perf_counter()
    found = [gcsdvc.path(name, file) for name, file in pairs]
    elapsed = time.perf_counter() - started
    bad = [str(p) for p in found if not p.is_file()]
    if bad:
        sys.exit(f"not files: {bad[:3]}")
print(elapsed * 1000)
"""


def timed(box: Sandbox, repo: Path, *args: str) -> float:
    """Milliseconds the calls took, as the measured process reports them."""
    out = box.run([PYTHON, "-c", CALLS, *args], repo).stdout.strip()
    try:
        return float(out.splitlines()[-1])
    except (IndexError, ValueError):
        raise BenchError(f"no timing in the output: {out[:300]!r}") from None


def api_calls(sx: Scenarios, box: Sandbox, seed: Path, runs_list: list[Run], runs: int) -> None:
    n = f"{count(runs_list):,}"
    with sx.guard(f"the API on {n} files"):
        repo = box.new_repo("api", manifest(runs_list))
        box.run([GCSDVC, "sync", "-q"], repo)
        verify(repo, seed, runs_list)
        pairs = box.work / "pairs.json"
        pairs.write_text(json.dumps([[r.name, f] for r in runs_list for f in r.files]))
        one, every = Measure("resources()", "ms"), Measure(f"{n} path()", "ms")
        for _ in range(runs):  # interleaved, so that both see the same machine
            one.samples.append(timed(box, repo, "resources"))
            every.samples.append(timed(box, repo, "path", str(pairs)))
        sx.add(Row(f"one `gcsdvc.resources()`, {n}-file manifest", one))
        sx.add(Row(f"{n} `gcsdvc.path()` calls, first pass included", every, one, 5.0))


def main() -> int:
    args = parser(__doc__.splitlines()[0]).parse_args()
    runs = 1 if args.quick else args.runs
    experiments, files = (3, 20) if args.quick else (3, 1000)
    sx = Scenarios()
    with work_folder() as work:
        seed = work / "seed"
        made = seed_runs(seed, "api", experiments, files)
        box = Sandbox(work, seed)
        try:
            log("API ...")
            api_calls(sx, box, seed, made, runs)
        finally:
            box.stop()
    return report("gcsdvc API benchmark (benchmarks/bench_api.py)", sx.rows, runs, args.quick)


if __name__ == "__main__":
    sys.exit(main())
