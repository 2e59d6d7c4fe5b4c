"""``gcsdvc update``: take upstream for entries whose copies are kept (``skip_if_exist: true``).

One sync of the named entries as if they followed upstream (``skip_if_exist:
false``), the manifest left as it is: each file whose object changed is
fetched and its stage records the newest object (pinned: its generation as
``version_id``); an unchanged object is a no-op, and a local edit is kept
unless ``force``, as a sync keeps it. The plan and transfers are
:mod:`gcsdvc.sync`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from gcsdvc.manifest import Manifest
from gcsdvc.sync import Reporter, SyncResult, sync


def update(
    manifest: Manifest,
    names: Sequence[str],
    *,
    dry_run: bool = False,
    force: bool = False,
    jobs: int = 16,
    reporter: Reporter | None = None,
) -> SyncResult:
    """Bring the entries ``names`` (names or shell globs, at least one) up to their upstream."""
    chosen = {res.name for res in manifest.select(names)}
    following = replace(
        manifest,
        resources=tuple(
            replace(res, skip_if_exist=False) if res.name in chosen else res
            for res in manifest.resources
        ),
    )
    return sync(following, names, dry_run=dry_run, force=force, jobs=jobs, reporter=reporter)
