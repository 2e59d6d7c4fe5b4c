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

Each scenario has an emulator holding only its own objects, and each run's remote
bucket is deleted once measured. fake-gcs-server keeps every object in its Go heap
(never returned while the bucket lives), lets the heap grow to twice what is live
before collecting, and copies an object several times per resumable upload (every
chunk appended, the whole md5 and crc32c recomputed, the object buffered again when
stored): with every bucket kept in one emulator it reached 23.8 GB and the kernel
killed it, mid-request, in the composite scenario's ``dvc import-url`` (aiohttp's
"Server disconnected"). Both sides still write into a fresh bucket of the same
emulator, the same object, at the same concurrency.

``--quick``: 50 small objects, 4 x 8 MB, 8 MB composite, one run, no target verdicts.
``--skip NAME`` (repeatable) leaves out a scenario: small, large or composite.
"""

from __future__ import annotations

import contextlib
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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
COMPOSITE = "comp/composite.bin"
RAW_COPY = """
import sys, gcsfs
fs = gcsfs.GCSFileSystem(token="anon")
src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
names = [f"{src}/small/obj-{i:05d}.bin" for i in range(n)]
fs.copy(names, [f"{dst}/{p.split('/', 1)[1]}" for p in names], batch_size=int(sys.argv[4]))
"""


def seed_small(bucket: Path, count: int) -> None:
    (bucket / "small").mkdir(parents=True)
    for i in range(count):
        (bucket / "small" / f"obj-{i:05d}.bin").write_bytes(f"{i}\n".encode() * 200)


def seed_large(bucket: Path, size: int) -> None:
    (bucket / "large").mkdir(parents=True)
    block = bytes(range(256)) * (MB // 256)
    for i in range(4):
        with (bucket / "large" / f"shard-{i}.bin").open("wb") as out:
            for n in range(size // MB):
                out.write(bytes([i, n % 256]) + block[2:])


def seed_halves(bucket: Path, part: int) -> None:
    """The two halves ``merge`` composes into the composite object."""
    bucket.mkdir(parents=True)
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

    @contextlib.contextmanager
    def remote_bucket(self) -> Iterator[str]:
        """A new bucket, deleted with all it holds once the block is done."""
        name = f"remote-{uuid.uuid4().hex[:10]}"
        self.fs.mkdir(name)
        try:
            yield name
        finally:
            self.fs.rm(name, recursive=True)

    @contextlib.contextmanager
    def repo(self, files: list[str], blob: str) -> Iterator[Path]:
        """A repository whose default remote is a new bucket; one archived entry."""
        with self.remote_bucket() as bucket:
            entry: dict[str, Any] = {"name": "run", "bucket": SOURCE, "blob": blob}
            entry |= {"destination": "run", "files": files, "to_remote": True}
            root = self.box.new_repo(f"r-{bucket}", {"resources": [entry]})
            self.box.run(
                [PYTHON, "-m", "dvc", "remote", "add", "-d", "team", f"gs://{bucket}/dvc"], root
            )
            yield root

    def gcsdvc(self, files: list[str], blob: str) -> tuple[float, int]:
        """Seconds of one archive, and the media bytes it downloaded."""
        with self.repo(files, blob) as root:
            before = self.layer.media_bytes
            cmd = [PYTHON, "-m", "gcsdvc", "sync", "-q", "-j", str(JOBS)]
            took = self.box.run(cmd, root).seconds
            return took, self.layer.media_bytes - before

    def dvc_import(self, names: list[str]) -> float:
        """``dvc import-url --to-remote`` of each object, one after the other."""
        took = 0.0
        with self.repo(["x"], "x") as root:
            for n, name in enumerate(names):
                cmd = [PYTHON, "-m", "dvc", "import-url", "-q", "--to-remote"]
                took += self.box.run([*cmd, f"gs://{SOURCE}/{name}", f"f{n}"], root).seconds
        return took

    def raw_copy(self, small: int) -> float:
        with self.remote_bucket() as dst:
            cmd = [PYTHON, "-c", RAW_COPY, SOURCE, dst, str(small), str(JOBS)]
            return self.box.run(cmd, self.box.work).seconds


@contextlib.contextmanager
def bench_on(work: Path, seed: Callable[[Path], None]) -> Iterator[Bench]:
    """An emulator behind the layer holding only what ``seed`` writes into the source bucket."""
    seed(work / "seed" / SOURCE)
    box = Sandbox(work, work / "seed")
    try:
        layer = GcsLayer(box.url)
        try:
            box.env.update(client_env(layer.url))
            yield Bench(box, layer)
        finally:
            layer.stop()
    finally:
        box.stop()


@dataclass(frozen=True)
class Scenario:
    key: str  # what --skip names
    label: str
    files: list[str]
    blob: str
    seed: Callable[[Path], None]
    baseline: Callable[[Bench], tuple[str, float]]
    target: float


def scenarios(small: int, large: int, part: int) -> list[Scenario]:
    shards = [f"large/shard-{i}.bin" for i in range(4)]
    dvc = "dvc import-url --to-remote"
    return [
        Scenario(
            "small",
            f"{small} small objects",
            ["*.bin"],
            "small",
            lambda bucket: seed_small(bucket, small),
            lambda bench: ("gcsfs fs.copy", bench.raw_copy(small)),
            1.5,
        ),
        Scenario(
            "large",
            f"4 x {large // MB} MB objects",
            ["*.bin"],
            "large",
            lambda bucket: seed_large(bucket, large),
            lambda bench: (dvc, bench.dvc_import(shards)),
            0.2,
        ),
        Scenario(
            "composite",
            f"composite object of {2 * part // MB} MB (streamed)",
            ["composite.bin"],
            "comp",
            lambda bucket: seed_halves(bucket, part),
            lambda bench: (dvc, bench.dvc_import([COMPOSITE])),
            1.0,
        ),
    ]


def main() -> int:
    parse = parser(__doc__.splitlines()[0])
    parse.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=["small", "large", "composite"],
        help="leave out the small objects, the 4 large ones or the composite one (repeatable)",
    )
    args = parse.parse_args()
    runs = 1 if args.quick else args.runs
    small, large, part = (50, 8 * MB, 4 * MB) if args.quick else (1000, 256 * MB, 128 * MB)
    sx = Scenarios()
    with work_folder() as work:
        for sc in scenarios(small, large, part):
            if sc.key in args.skip:
                sx.skip(sc.label, f"--skip {sc.key}")
                continue
            with sx.guard(sc.label), bench_on(work / sc.key, sc.seed) as bench:
                if sc.key == "composite":
                    bench.fs.merge(
                        f"{SOURCE}/{COMPOSITE}", [f"{SOURCE}/half-0", f"{SOURCE}/half-1"]
                    )
                ours = Measure("gcsdvc sync --to-remote")
                media = Measure("media bytes", "bytes")
                base = Measure("?")
                for _ in range(runs):
                    took, moved = bench.gcsdvc(sc.files, sc.blob)
                    ours.samples.append(took)
                    media.samples.append(moved)
                    base.name, seconds = sc.baseline(bench)
                    base.samples.append(seconds)
                sx.add(Row(sc.label, ours, base, sc.target))
                sx.add(Row(f"{sc.label}: media bytes through the machine", media))
                log(f"{sc.label}: media bytes {media.samples}")
    return report("gcsdvc archive benchmark (make bench-archive)", sx.rows, runs, args.quick)


if __name__ == "__main__":
    sys.exit(main())
