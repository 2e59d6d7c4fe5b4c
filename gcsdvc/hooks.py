"""What the pre-commit hooks (``.pre-commit-hooks.yaml``) need beyond the commands themselves.

A repository has many YAML files named ``params.yaml`` (DVC's params, one per
project of a monorepo); only those with a ``resources`` or a ``gcsdvc`` key at
the top are gcsdvc manifests, and only those are validated. A clone that has
not synced yet (files ``missing`` or ``not-synced``) is a normal state, not a
reason to refuse a commit, unless the hook is asked to be strict.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from gcsdvc.model import State

if TYPE_CHECKING:
    from gcsdvc.status import Report

MANIFEST_KEYS = ("resources", "gcsdvc")
# A top-level ``resources:`` or ``gcsdvc:`` key, for files that are not valid YAML.
_KEY_LINE = re.compile(r"^[\"']?(resources|gcsdvc)[\"']?[ \t]*:", re.M)


def is_manifest(path: Path) -> bool:
    """Whether ``path`` is meant as a gcsdvc manifest: a ``resources`` or ``gcsdvc`` key on top.

    A file that cannot be read, or is not valid YAML, counts as a manifest when a
    line starts with one of those keys (so a broken manifest is still checked);
    a file that is not there counts as one (so its absence is reported).
    """
    if not path.is_file():
        return not path.exists()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return True
    try:
        data = yaml.safe_load(text)
    except (yaml.YAMLError, ValueError, TypeError, RecursionError):
        return bool(_KEY_LINE.search(text))
    if not isinstance(data, dict):
        return False
    return any(key in data for key in MANIFEST_KEYS)


UNSYNCED = (State.MISSING, State.NOT_SYNCED)


def unsynced_count(report: Report) -> int:
    """How many files of the report are only not synced yet (``missing`` or ``not-synced``)."""
    return sum(1 for r in report.resources for f in r.files if f.state in UNSYNCED)


def blocks_commit(report: Report, strict: bool) -> bool:
    """Whether the status hook fails: what ``status --check`` fails on, but files only
    not synced yet (``missing``, ``not-synced``) pass unless ``strict``."""
    if strict:
        return report.needs_action(strict=True)
    if report.orphans or report.upstream_error or report.untracked:
        return True
    return any(
        r.upstream_error is not None
        or any(f.needs_action(r.resource) and f.state not in UNSYNCED for f in r.files)
        for r in report.resources
    )
