#!/usr/bin/env python
"""`make bench-archive`: `gcsdvc sync --to-remote` against what else copies into a DVC remote.

On the emulator behind the Cloud Storage layer (tests/gcslayer.py: rewrite tokens,
composite objects, media bytes counted), each run into a fresh remote bucket:

* 1,000 small objects archived, against a raw gcsfs server-side copy (``fs.copy``) of
  the same objects at the same concurrency (16): target at most 1.5x;
* 4 x 256 MB objects, against ``dvc import-url --to-remote`` of each: at least 5x faster;
* a composite object of 256 MB (no md5, so streamed), against ``dvc import-url --to-remote``
  of it: at least as fast;
* the media bytes each gcsdvc run downloaded (zero for objects with a stored md5).

``--quick``: 50 small objects, 4 x 8 MB, 8 MB composite, one run, no target verdicts.
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path
from typing import Any

from _common import (
    MB,
    PYTHON,
    Measure,
    Row,
    Sandbox,
    Scenarios,
    log,
    parser,
    report,
    work_folder,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from gcslayer import GcsLayer  # the test layer, beside the benchmarks

from gcsdvc.emulator import OFFLINE_ENV, client_env

JOBS = 16
SOURCE = "archive-src"
RAW_COPY = """
import sys, gcsfs
fs = gcsfs.GCSFileSystem(token="anon")
src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
names = [f"{src}/small/obj-{i:05d}.bin" for i in range(n)]
fs.copy(names, [f"{dst}/{p.split('/', 1)[1]}" for p in names], batch_size=int(sys.argv[4]))
"""


def seed(folder: Path, small: int, large: int, part: int) -> None:
    """Small objects, 4 large ones and the two halves of the composite one, as files."""
    bucket = folder / SOURCE
    (bucket / "small").mkdir(parents=True)
    (bucket / "large").mkdir()
    for i in range(small):
        (bucket / "small" / f"obj-{i:05d}.bin").write_bytes(f"{i}\n".encode() * 200)
    block = bytes(range(256)) * (MB // 256)
    for i in range(4):
        with (bucket / "large" / f"shard-{i}.bin").open("wb") as out:
            for n in range(large // MB):
                out.write(bytes([i, n % 256]) + block[2:])
    for i in range(2):
        with (bucket / f"half-{i}").open("wb") as out:
            for _ in range(part // MB):
                out.write(bytes([i]) * MB)


class Bench:
    def __init__(self, box: Sandbox, layer: GcsLayer) -> None:
        # This process lists and deletes through gcsfs too: as every process near the
        # emulator, it must not probe the bucket type over gRPC (a minute per bucket).
        os.environ.update(OFFLINE_ENV)
        import gcsfs

        self.box = box
        self.layer = layer
        self.fs = gcsfs.GCSFileSystem(token="anon", endpoint_url=layer.url)

    def remote_bucket(self) -> str:
        name = f"remote-{uuid.uuid4().hex[:10]}"
        self.fs.mkdir(name)
        return name

    def repo(self, files: list[str], blob: str) -> tuple[Path, str]:
        """A repository whose default remote is a new bucket; one archived entry."""
        bucket = self.remote_bucket()
        entry: dict[str, Any] = {"name": "run", "bucket": SOURCE, "blob": blob}
        entry |= {"destination": "run", "files": files, "to_remote": True}
        root = self.box.new_repo(f"r-{bucket}", {"resources": [entry]})
        self.box.run(
            [PYTHON, "-m", "dvc", "remote", "add", "-d", "team", f"gs://{bucket}/dvc"], root
        )
        return root, bucket

    def gcsdvc(self, files: list[str], blob: str) -> tuple[float, int]:
        """Seconds of one archive, and the media bytes it downloaded."""
        root, _ = self.repo(files, blob)
        before = self.layer.media_bytes
        took = self.box.run([PYTHON, "-m", "gcsdvc", "sync", "-q", "-j", str(JOBS)], root).seconds
        return took, self.layer.media_bytes - before

    def dvc_import(self, names: list[str]) -> float:
        """``dvc import-url --to-remote`` of each object, one after the other."""
        root, _ = self.repo(["x"], "x")
        took = 0.0
        for n, name in enumerate(names):
            cmd = [PYTHON, "-m", "dvc", "import-url", "-q", "--to-remote", f"gs://{SOURCE}/{name}"]
            took += self.box.run([*cmd, f"f{n}"], root).seconds
        return took

    def raw_copy(self, small: int) -> float:
        dst = self.remote_bucket()
        cmd = [PYTHON, "-c", RAW_COPY, SOURCE, dst, str(small), str(JOBS)]
        return self.box.run(cmd, self.box.work).seconds


def main() -> int:
    args = parser(__doc__.splitlines()[0]).parse_args()
    runs = 1 if args.quick else args.runs
    small, large, part = (50, 8 * MB, 4 * MB) if args.quick else (1000, 256 * MB, 128 * MB)
    sx = Scenarios()
    with work_folder() as work:
        seed(work / "seed", small, large, part)
        box = Sandbox(work, work / "seed")
        layer = GcsLayer(box.url)
        box.env.update(client_env(layer.url))
        try:
            bench = Bench(box, layer)
            halves = [f"{SOURCE}/half-0", f"{SOURCE}/half-1"]
            bench.fs.merge(f"{SOURCE}/comp/composite.bin", halves)
            scenarios: list[tuple[str, list[str], str, Any, float]] = [
                (
                    f"{small} small objects",
                    ["*.bin"],
                    "small",
                    lambda: ("gcsfs fs.copy", bench.raw_copy(small)),
                    1.5,
                ),
                (
                    f"4 x {large // MB} MB objects",
                    ["*.bin"],
                    "large",
                    lambda: (
                        "dvc import-url --to-remote",
                        bench.dvc_import([f"large/shard-{i}.bin" for i in range(4)]),
                    ),
                    0.2,
                ),
                (
                    f"composite object of {2 * part // MB} MB (streamed)",
                    ["composite.bin"],
                    "comp",
                    lambda: (
                        "dvc import-url --to-remote",
                        bench.dvc_import(["comp/composite.bin"]),
                    ),
                    1.0,
                ),
            ]
            for scenario, files, blob, baseline_of, target in scenarios:
                with sx.guard(scenario):
                    ours = Measure("gcsdvc sync --to-remote")
                    media = Measure("media bytes", "bytes")
                    base = Measure("?")
                    for _ in range(runs):
                        took, moved = bench.gcsdvc(files, blob)
                        ours.samples.append(took)
                        media.samples.append(moved)
                        base.name, seconds = baseline_of()
                        base.samples.append(seconds)
                    sx.add(Row(scenario, ours, base, target))
                    sx.add(Row(f"{scenario}: media bytes through the machine", media))
                    log(f"{scenario}: media bytes {media.samples}")
        finally:
            layer.stop()
            box.stop()
    return report("gcsdvc archive benchmark (make bench-archive)", sx.rows, runs, args.quick)


if __name__ == "__main__":
    sys.exit(main())
