"""Shared fixtures: the emulator, per-test buckets, throw-away git + DVC repositories."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
import yaml
from faultproxy import FaultProxy
from gcslayer import GcsLayer
from hypothesis import HealthCheck, settings

from gcsdvc.emulator import GIT_IDENTITY, LEAKY_VARS, OFFLINE_ENV, Emulator, client_env, sandbox_env

# Everything gcsfs and DVC read must be in place before either is imported.
os.environ.update({**OFFLINE_ENV, **GIT_IDENTITY})
for _var in LEAKY_VARS:
    os.environ.pop(_var, None)


# Hypothesis: a small profile for the inner loop, a larger one in CI (CI=true).
settings.register_profile(
    "dev",
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile("ci", settings.get_profile("dev"), max_examples=300)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that reach the emulator are the end-to-end tier (marker ``e2e``)."""
    for item in items:
        if {"emulator", "bare_emulator"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)


# GCSDVC_TEST_BARE_EMULATOR=1 runs the suite against fake-gcs-server itself, without the
# layer that answers as Cloud Storage does (tests that need that layer are then skipped).
BARE = os.environ.get("GCSDVC_TEST_BARE_EMULATOR", "") not in ("", "0")


@pytest.fixture(scope="session")
def bare_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """fake-gcs-server on 127.0.0.1, one per session (so one per xdist worker).

    Tests use their own buckets. The free port is picked before the server binds it:
    workers starting together can race for one, so a server that cannot start gets another.
    """
    seed = tmp_path_factory.mktemp("seed")
    for tries_left in reversed(range(3)):
        try:
            server = Emulator(seed=seed).start()
            break
        except RuntimeError:
            if not tries_left:
                raise
    yield server
    server.stop()


@pytest.fixture(scope="session")
def emulator(bare_emulator: Emulator) -> Iterator[Emulator | GcsLayer]:
    """What the tests talk to: by default the Cloud Storage layer in front of the emulator."""
    server: Emulator | GcsLayer = bare_emulator if BARE else GcsLayer(bare_emulator.url)
    os.environ.update(client_env(server.url))
    yield server
    if isinstance(server, GcsLayer):
        server.stop()


@pytest.fixture
def layer(emulator: Emulator | GcsLayer) -> GcsLayer:
    """The Cloud Storage layer, for tests of what only real Cloud Storage does."""
    if not isinstance(emulator, GcsLayer):
        pytest.skip("needs the Cloud Storage layer (GCSDVC_TEST_BARE_EMULATOR is set)")
    return emulator


@pytest.fixture
def proxy(emulator: Emulator | GcsLayer) -> Iterator[FaultProxy]:
    """A proxy in front of the emulator that injects faults (``proxy.faults``)."""
    server = FaultProxy(emulator.port)
    yield server
    server.close()


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No user config, no home dotfiles, no credentials leak into a test."""
    home = tmp_path / "home"
    home.mkdir()
    for key, value in sandbox_env(home).items():
        monkeypatch.setenv(key, value)


@pytest.fixture(autouse=True)
def _snapshots_agree_with_the_full_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """Wherever a snapshot answers (:mod:`gcsdvc.snapshot`), the full check must agree.

    Every in-process plan and offline status in the suite is an oracle for the snapshot.
    """
    from gcsdvc import plan, snapshot, status, sync
    from gcsdvc.storage import Storage

    real_plan, real_check = plan.build_plan, status.check

    def plan_view(p: plan.Plan) -> Any:
        items = [(i.action, i.local, i.file, i.state, i.note, i.name) for i in p.items]
        return items, p.unfrozen, p.leftovers, p.unignored, p.warnings, p.pinned

    def build_plan(*args: Any, **kwargs: Any) -> plan.Plan:
        got = real_plan(*args, **kwargs)
        if got.quick:
            with monkeypatch.context() as m:
                m.setattr(snapshot, "unchanged", lambda *a: None)
                full = real_plan(*args, **kwargs)
            assert plan_view(got) == plan_view(full)
            assert not full.looked_up or args[2] is None  # a quick answer skipped no lookup
        return got

    def report_view(r: status.Report, detail: bool) -> Any:
        files = [
            (f.local, f.source, f.file, f.state, f.note, f.upstream, detail and f.md5)
            for s in r.resources
            for f in s.files
        ]
        errors = [s.upstream_error for s in r.resources]
        others = r.orphans, r.untracked, r.unignored, r.warnings, r.pinned, r.upstream_error
        return files, errors, others

    def check(*args: Any, **kwargs: Any) -> status.Report:
        if not kwargs.get("offline") and kwargs.get("storage") is None:
            kwargs["storage"] = Storage()  # asks each object once for both checks
        got = real_check(*args, **kwargs)
        if got.quick:
            with monkeypatch.context() as m:
                m.setattr(snapshot, "unchanged", lambda *a: None)
                full = real_check(*args, **kwargs)
            detail = kwargs.get("detail", True)
            assert report_view(got, detail) == report_view(full, detail)
        return got

    monkeypatch.setattr(plan, "build_plan", build_plan)
    monkeypatch.setattr(sync, "build_plan", build_plan)
    monkeypatch.setattr(status, "check", check)


@pytest.fixture
def gcs(emulator: Emulator | GcsLayer) -> Any:
    """A gcsfs filesystem talking to the emulator."""
    import gcsfs

    fs = gcsfs.GCSFileSystem(token="anon", endpoint_url=emulator.url)
    yield fs
    fs.invalidate_cache()


@pytest.fixture
def bucket(gcs: Any) -> str:
    """A fresh, empty bucket for this test."""
    name = f"t-{uuid.uuid4().hex[:12]}"
    gcs.mkdir(name)
    return name


@pytest.fixture
def put(gcs: Any) -> Callable[[str, bytes | str], None]:
    """Write one object: put('bucket/path/to/obj', b'bytes')."""

    def _put(path: str, data: bytes | str) -> None:
        gcs.pipe(path, data.encode() if isinstance(data, str) else data)
        gcs.invalidate_cache()

    return _put


def run(
    *args: str, cwd: Path, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **env} if env else None
    res = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=full_env)
    if check and res.returncode:
        pytest.fail(f"{' '.join(args)} exited {res.returncode}:\n{res.stdout}\n{res.stderr}")
    return res


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty git + DVC repository as the working directory."""
    root = new_repo(tmp_path / "repo")
    monkeypatch.chdir(root)
    return root


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Mount a tmpfs of the given size (``"2m"``): a real full disk, a real read-only folder.

    Needs the right to mount (root, as CI runs); skipped where it is not given.
    """
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        point = tmp_path / f"disk{len(mounted)}"
        point.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
            capture_output=True,
            check=False,
        )
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], check=False)


def read_only(point: Path) -> None:
    """Remount a :func:`small_disk` read-only: EROFS for every write, even root's."""
    subprocess.run(["mount", "-o", "remount,ro", str(point)], check=True)


def new_repo(root: Path) -> Path:
    """An empty git + DVC repository at ``root``."""
    root.mkdir(exist_ok=True)
    run("git", "init", "-q", "-b", "main", cwd=root)
    from dvc.repo import Repo  # in process: `dvc init` in a subprocess shows nothing more

    Repo.init(str(root)).close()
    run("git", "commit", "-qm", "init", cwd=root)
    return root


def gcsdvc(
    *args: str, cwd: Path, check: bool = False, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess, as a user would."""
    return run(sys.executable, "-m", "gcsdvc", *args, cwd=cwd, check=check, env=env)


@dataclass(frozen=True)
class Ran:
    """What a command printed and returned, as ``subprocess.CompletedProcess`` names it."""

    returncode: int
    stdout: str
    stderr: str


def cli(*args: str, cwd: Path, check: bool = False, env: dict[str, str] | None = None) -> Ran:
    """Run the CLI in process with click's CliRunner: the same output, no interpreter start.

    A traceback is not caught: it fails the test. ``env`` (e.g. another
    ``STORAGE_EMULATOR_HOST``) applies to this call only.
    """
    from click.testing import CliRunner

    from gcsdvc.cli import main

    old = Path.cwd()
    os.chdir(cwd)
    if env:
        _fresh_gcsfs()  # gcsfs caches clients by arguments, not by environment
    try:
        res = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    finally:
        os.chdir(old)
        if env:
            _fresh_gcsfs()
    if check and res.exit_code:
        pytest.fail(f"gcsdvc {' '.join(args)} exited {res.exit_code}:\n{res.stdout}\n{res.stderr}")
    if "--json" in args and res.stdout:
        conforms(args, res.stdout)
    return Ran(res.exit_code, res.stdout, res.stderr)


def conforms(args: Sequence[str], out: str) -> dict[str, Any]:
    """The ``--json`` document in ``out``, checked against its command's shipped JSON Schema.

    Every test that runs a command with ``--json`` through :func:`cli` checks its
    document so; a failed command's document is checked against ``error.json``.
    """
    import jsonschema

    from gcsdvc.cli import main

    doc = json.loads(out)
    assert isinstance(doc, dict), out
    name = "error" if "exit_code" in doc else next(a for a in args if a in main.commands)
    schemas = shipped_schemas()
    jsonschema.Draft202012Validator(schemas[name], registry=schema_registry(schemas)).validate(doc)
    return doc


def shipped_schemas() -> dict[str, dict[str, Any]]:
    """Every JSON Schema the package ships, by command name."""
    folder = files("gcsdvc") / "schemas"
    return {
        p.name.removesuffix(".json"): json.loads(p.read_text())
        for p in folder.iterdir()
        if p.name.endswith(".json")
    }


def schema_registry(schemas: dict[str, dict[str, Any]]) -> Any:
    """The shipped schemas by their ``$id``, so that one may refer to another ("sync.json")."""
    from referencing import Registry, Resource

    return Registry().with_resources(
        (s["$id"], Resource.from_contents(s)) for s in schemas.values()
    )


def _fresh_gcsfs() -> None:
    import gcsfs

    gcsfs.GCSFileSystem.clear_instance_cache()


def dvc_main(*args: str, cwd: Path, check: bool = True) -> Ran:
    """Run a DVC command in process through DVC's own ``main``: same code, no interpreter start.

    ``DVC_TEST`` (as DVC's own test suite sets it) keeps colorama from swapping
    ``sys.stdout`` back, skips update checks and analytics.
    """
    import contextlib
    import io

    from dvc.cli import main as dvc_entry

    out, err = io.StringIO(), io.StringIO()
    old = Path.cwd()
    os.chdir(cwd)
    os.environ["DVC_TEST"] = "1"
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = dvc_entry(list(args))
    finally:
        os.environ.pop("DVC_TEST", None)
        os.chdir(old)
    if check and code:
        pytest.fail(f"dvc {' '.join(args)} exited {code}:\n{out.getvalue()}\n{err.getvalue()}")
    return Ran(code, out.getvalue(), err.getvalue())


def dvc(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(sys.executable, "-m", "dvc", *args, cwd=cwd, check=check)


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file below ``root`` except git's and DVC's internals, with its bytes."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith((".git/", ".dvc/tmp/", ".dvc/cache/")) or not path.is_file():
            continue
        out[rel] = path.read_bytes()
    return out


# -- a sample experiment modelled on the original manifest -----------------

DESC = "学習率 0.01 — the run where we varied the learning rate"
QUOTED = "experiment1-yyyymmd'd'"


def write_manifest(root: Path, resources: list[dict[str, Any]], **settings: Any) -> None:
    doc: dict[str, Any] = {"resources": resources}
    if settings:
        doc["gcsdvc"] = settings
    (root / "params.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))


def entry(bucket: str, **over: Any) -> dict[str, Any]:
    base = {
        "name": "exp1",
        "bucket": bucket,
        "blob": "project1",
        "subblob": QUOTED,
        "files": ["parent_dir/file1", "file1", "metrics.json"],
        "destination": f"project1/{QUOTED}",
        "skip_if_exist": True,
        "description": DESC,
    }
    base.update(over)
    return base


@pytest.fixture
def seeded(bucket: str, put: Any) -> str:
    prefix = f"{bucket}/project1/{QUOTED}"
    put(f"{prefix}/parent_dir/file1", "nested file1\n")
    put(f"{prefix}/file1", "top file1\n")
    put(f"{prefix}/metrics.json", json.dumps({"acc": 0.9}))
    put(f"{prefix}/checkpoint.bin", b"\0" * (3 << 20))  # unlisted: must stay in the cloud
    return bucket


def looked_up(client: Any, bucket: str, prefix: str, names: Any) -> dict[str, Any]:
    """``Storage.lookup`` of ``names``, each of them found (a ``RemoteObject``)."""
    from gcsdvc.model import RemoteObject

    found = client.lookup({(bucket, prefix): names})[(bucket, prefix)]
    assert isinstance(found, dict)
    assert all(isinstance(obj, RemoteObject) for obj in found.values()), found
    return found


def data(root: Path, rel: str) -> Path:
    return root / "data" / "project1" / QUOTED / rel


def load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


@pytest.fixture
def hash_reads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The files gcsdvc reads to hash them, in order (``workspace._hash_all`` counted)."""
    from gcsdvc import workspace

    read: list[Path] = []
    real = workspace._hash_all

    def counted(paths: list[Path]) -> dict[Path, str]:
        read.extend(paths)
        return real(paths)

    monkeypatch.setattr(workspace, "_hash_all", counted)
    return read


ELAPSED = re.compile(r" in (\d+\.\ds|\d+s|\d+m\d\ds|\d+h\d\dm), (\d+ retr(?:y|ies))$")


def timeless(out: str) -> list[str]:
    """Output lines with the time a sync took shown as ``<t>``, once its shape is checked.

    The bytes and retries stay: tests compare them exactly, never a duration.
    """
    lines = out.splitlines()
    for n, line in enumerate(lines):
        if line.startswith("sync: ") and " downloaded in " in line:
            assert ELAPSED.search(line), line
            lines[n] = ELAPSED.sub(r" in <t>, \2", line)
    return lines


def without_git_hint(out: str) -> list[str]:
    """A sync's output lines before DVC's "git add" hint (the hint itself: tests/test_sync.py),
    the time it took as ``<t>`` (see :func:`timeless`)."""
    lines = timeless(out)
    heads = [n for n, line in enumerate(lines) if line.startswith("To track the changes with git")]
    if not heads:
        return lines
    at = heads[0]
    assert lines[at - 1] == "" and lines[at + 2].startswith("\tgit add ")
    return lines[: at - 1]


def without_progress(err: str) -> list[str]:
    """Standard error's lines without the plain progress lines a piped sync prints."""
    return [
        line
        for line in err.splitlines()
        if not line.startswith(("downloading: ", "archiving: ", "progress: ", "done: "))
    ]
