#!/usr/bin/env python
"""`make bench`: the main table, a cold sync of 1,000 files and the commands that follow it.

10 runs x 100 files (1 KB to 10 KB) in one bucket. Against baselines measured in the
same invocation: the one-request raw copy (a listing per prefix, then one GET per
object), B = ``python -c "import dvc.repo, gcsfs"``, and a raw listing of the prefixes.
``--quick``: 3 runs x 20 files, one run each, no target verdicts (CI's smoke test).
"""

from __future__ import annotations

import sys

from _common import Sandbox, Scenarios, log, measure, parser, report, work_folder
from _workloads import B_CMD, file_set, seed_runs


def main() -> int:
    args = parser(__doc__.splitlines()[0]).parse_args()
    runs = 1 if args.quick else args.runs
    experiments, files = (3, 20) if args.quick else (10, 100)
    sx = Scenarios()
    with work_folder() as work:
        seed = work / "seed"
        made = seed_runs(seed, "bench", experiments, files)
        box = Sandbox(work, seed)
        try:
            log("B ...")
            b = measure("B", runs, lambda _: box.run(B_CMD, work).seconds)
            file_set(sx, box, seed, made, runs, b)
        finally:
            box.stop()
    return report("gcsdvc benchmark (make bench)", sx.rows, runs, args.quick)


if __name__ == "__main__":
    sys.exit(main())
