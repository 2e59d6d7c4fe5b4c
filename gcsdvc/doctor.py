"""``gcsdvc doctor``: the environment a sync depends on, and what is wrong with it.

Each :class:`Check` says what was found and, for a problem, what is wrong and
the fix. The checks reuse the rules the commands apply (manifest validation,
the data folder's refusals, the pinning decision, the credentials file check),
so doctor fails where a sync would. Storage is asked once per bucket of the
manifest (one delimiter listing of an entry's prefix).
"""

from __future__ import annotations

import dataclasses
import os
import platform
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from gcsdvc.errors import GcsdvcError, ManifestError
from gcsdvc.manifest import Manifest, find_root, init_hint, load_manifest, manifest_path

PACKAGES = ("gcsdvc", "dvc", "dvc-gs", "gcsfs")


@dataclass(frozen=True)
class Check:
    """One topic: what was found, and when something is wrong, what and how to fix it."""

    topic: str
    found: str
    problem: str | None = None
    fix: str | None = None


@dataclass
class Report:
    versions: dict[str, str | None]  # a package's version (None: not installed), and Python's
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.problem is None for c in self.checks)

    @property
    def problems(self) -> list[Check]:
        return [c for c in self.checks if c.problem is not None]

    def as_json(self) -> dict[str, Any]:
        """``gcsdvc doctor --json`` (docs/reference.md)."""
        checks = [dataclasses.asdict(c) for c in self.checks]
        return {"ok": self.ok, "versions": self.versions, "checks": checks}


def doctor(manifest_file: str | os.PathLike[str] | None = None) -> Report:
    """Check the environment (for the manifest ``manifest_file``, else the default one)."""
    report = Report(_versions())
    missing = [name for name, version in report.versions.items() if version is None]
    if missing:
        report.checks.append(
            Check(
                "packages",
                f"not installed: {', '.join(missing)}",
                "gcsdvc cannot reach Cloud Storage or DVC without them",
                "pip install --force-reinstall gcsdvc (it brings dvc, dvc-gs and gcsfs)",
            )
        )
    manifest = _repository_and_manifest(report, manifest_file)
    if manifest is not None:
        report.checks += [_data_folder(manifest), _remote(manifest)]
    report.checks.append(_credentials())
    report.checks.append(_storage(manifest))
    return report


def _versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    found["Python"] = platform.python_version()
    return found


def _repository_and_manifest(
    report: Report, manifest_file: str | os.PathLike[str] | None
) -> Manifest | None:
    start = Path(manifest_file).absolute().parent if manifest_file is not None else Path.cwd()
    root = find_root(start)
    if root is None:
        fix = f"{init_hint(start)}, or pass --manifest PATH"
        report.checks.append(
            Check("repository", "none", f"no DVC repository at or above {start}", fix)
        )
    else:
        git = any((folder / ".git").exists() for folder in (root, *root.parents))
        report.checks.append(
            Check("repository", f"{root} ({'git and DVC' if git else 'DVC, no git'})")
        )
    if root is None and manifest_file is None:
        return None
    path = manifest_path(manifest_file)
    try:
        manifest = load_manifest(path)
    except ManifestError as exc:
        validate = "'gcsdvc validate' lists every problem"
        if len(exc.problems) == 1:  # its own fix, if it names one
            report.checks.append(_split("manifest", str(path), exc.problems[0], validate))
        else:
            more = f"{exc.problems[0]} (and {len(exc.problems) - 1} more)"
            report.checks.append(Check("manifest", str(path), more, validate))
        return None
    count = len(manifest.resources)
    shown = path.relative_to(root) if root is not None and path.is_relative_to(root) else path
    report.checks.append(Check("manifest", f"{shown} ({count} entr{'y' if count == 1 else 'ies'})"))
    return manifest


def _data_folder(manifest: Manifest) -> Check:
    from gcsdvc.stages import find_stages
    from gcsdvc.sync import refuse_untrackable

    data = manifest.data_path
    stages = sum(1 for _ in find_stages(data)) if data.is_dir() else 0
    found = (
        f"{manifest.data_dir}/ ({stages} stage(s))"
        if data.is_dir()
        else f"{manifest.data_dir}/ (not made yet)"
    )
    try:
        refuse_untrackable(manifest, manifest.resources)
    except GcsdvcError as exc:
        return _split("data folder", found, str(exc))
    return Check("data folder", found)


def _remote(manifest: Manifest) -> Check:
    from gcsdvc.remote import default_remote, pinning

    setting = {None: "auto", True: "true", False: "false"}[manifest.pin_generations]
    try:
        remote, mode = (
            default_remote(manifest.root),
            pinning(manifest.root, manifest.pin_generations),
        )
    except GcsdvcError as exc:
        return _split("DVC remote", "unknown", str(exc))
    where = f"default remote '{remote}'" if remote else "no default remote in .dvc/config"
    how = (
        "stages pinned: 'dvc pull' fetches each object's generation from the bucket"
        if mode.pinned
        else "stages unpinned: 'dvc push' and 'dvc pull' go through the remote"
    )
    found = f"{where}; pin_generations: {setting}, so {how}"
    if mode.warnings:
        return _split("DVC remote", found, mode.warnings[0])
    return Check("DVC remote", found)


def _credentials() -> Check:
    from gcsdvc.cloud import check_credentials_file, gcloud_credentials_file, surely_off_gcp

    pays = os.environ.get("FSSPEC_GS_REQUESTER_PAYS")
    billed = f"; requester-pays requests bill {pays} (FSSPEC_GS_REQUESTER_PAYS)" if pays else ""
    key = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    if key:
        try:
            check_credentials_file()
        except GcsdvcError as exc:
            return _split("credentials", f"GOOGLE_APPLICATION_CREDENTIALS={key}", str(exc))
        return Check("credentials", f"the key file GOOGLE_APPLICATION_CREDENTIALS={key}{billed}")
    emulator = os.environ.get("STORAGE_EMULATOR_HOST")
    if emulator:
        return Check(
            "credentials",
            f"none needed: the emulator at {emulator} (STORAGE_EMULATOR_HOST){billed}",
        )
    adc = gcloud_credentials_file()
    if adc.is_file():
        return Check("credentials", f"gcloud's application-default login ({adc}){billed}")
    if surely_off_gcp():
        return Check(
            "credentials", f"none: anonymous requests, which read public buckets only{billed}"
        )
    return Check(
        "credentials", f"the metadata server's service account, on Google Cloud (else none){billed}"
    )


def _storage(manifest: Manifest | None) -> Check:
    from gcsdvc.storage import Storage

    storage = Storage(jobs=1)
    try:
        _ = storage.fs  # settings, the credentials file and the endpoint's reachability
    except GcsdvcError as exc:
        return _split("storage", "does not answer", str(exc), _REACH)
    asked: dict[str, str] = {}  # bucket -> the prefix listed
    for res in manifest.resources if manifest is not None else ():
        asked.setdefault(res.bucket, res.prefix)
    for bucket, prefix in asked.items():
        try:
            storage.list_folder(bucket, prefix)
        except GcsdvcError as exc:
            return _split("storage", f"gs://{bucket}/{prefix} does not answer", str(exc), _ASK)
    if not asked:
        why = "the manifest names none" if manifest is not None else "no valid manifest names one"
        return Check("storage", f"reachable (no bucket asked: {why})")
    return Check("storage", f"answers for {', '.join(f'gs://{b}' for b in asked)}")


_REACH = "check the network and any proxy (HTTPS_PROXY), or STORAGE_EMULATOR_HOST for an emulator"
_ASK = "check the bucket's name in the manifest and that your credentials may list it"


def _split(topic: str, found: str, message: str, fix: str | None = None) -> Check:
    """A problem from one of gcsdvc's error lines, which end with their fix after '; '."""
    problem, _, said = message.partition("; ")
    return Check(topic, found, problem, said or fix)
