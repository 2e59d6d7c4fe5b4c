"""Get verified bytes into the workspace: which object to fetch, fetch several at a time,
place each while the others download.

Order per file, so that an interruption at any point leaves nothing recorded
that is not on disk and verified: download the listed generation to
``.dvc/tmp/gcsdvc``, checking the stored bytes against the object's md5 (or
crc32c) as they stream -> move into the DVC cache -> link or copy into the data
folder with an atomic rename -> write the stage. A restore takes the DVC cache's
copy when there is one, else fetches the recorded generation and checks the
recorded md5 too. Each verified file is placed in the download thread while the other
downloads go on.
Fetching is :mod:`gcsdvc.storage`'s, placing :mod:`gcsdvc.workspace`'s; which
items to transfer, and when, is :mod:`gcsdvc.sync`'s.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from pathlib import Path

from gcsdvc import stages
from gcsdvc.collector import heap_frozen
from gcsdvc.compare import Change, object_change, recorded_generation
from gcsdvc.download import Fetched
from gcsdvc.errors import ChecksumMismatch, GcsdvcError, StorageError
from gcsdvc.model import RemoteObject
from gcsdvc.plan import Action, Item
from gcsdvc.storage import Storage
from gcsdvc.workspace import Reporter, Workspace

# Told once per fetched item: None when it is done, else its failure, type kept.
Outcome = Callable[[Item, Exception | None], None]


class Transfer:
    """The file imports of one sync: from the bucket (or the DVC cache) into ``ws``, with stages."""

    def __init__(
        self, ws: Workspace, storage: Storage, pinned: bool, reporter: Reporter | None = None
    ) -> None:
        self.ws = ws
        self.storage = storage
        self.pinned = pinned  # whether stages pin the object generation (see stages.conform)
        self.reporter = reporter

    def from_cache(self, item: Item) -> bool:
        """Put the recorded bytes of a RESTORE back in place from the DVC cache, if it has them."""
        stage = item.stage
        if stage is None or stage.md5 is None or stage.source != item.source:
            return False
        return self.ws.restore(item.local, stage.md5)

    def recorded_object(self, item: Item) -> RemoteObject:
        """The object a stage records, to restore or check: listed now, else its generation.

        Raises :class:`StorageError` naming the fix when the recorded bytes are
        nowhere to be had.
        """
        stage, obj, res = item.stage, item.obj, item.resource
        assert stage is not None and res is not None and item.file is not None
        if obj is not None and object_change(stage, obj) is not Change.CONTENT:
            return obj
        generation = recorded_generation(stage)
        if generation:
            name = f"{res.prefix}/{item.file}".lstrip("/")
            older = self.storage.stat_generation(res.bucket, name, generation)
            if older is not None:
                return older
        what = f"generation {generation}" if generation else "version"
        gone = f"the recorded {what} of {item.source} is gone from the bucket"
        if stage.md5 is None:
            gone += " (it was recorded with --no-download)"
        if not self.pinned:
            fix = "'dvc pull' it from your DVC remote"
        elif obj is None:  # no current object to take either
            fix = (
                f"{item.source} itself is deleted too: restore it in the bucket, or take "
                f"the file out of the manifest and remove {stages.stage_path(item.local)}"
            )
        else:
            fix = (
                f"take the current object with 'gcsdvc update {shlex.quote(item.name)}' "
                "or skip_if_exist: false"
            )
        raise StorageError(f"{gone} and not in the DVC cache; {fix}")

    def adopt(self, item: Item) -> None:
        """Record a copy placed without its stage, once checked: by ``dvc pull`` of a
        --no-download stage (the recorded object), or by a sync cut short (the listed one)."""
        obj = self.recorded_object(item) if item.stage is not None else item.obj
        assert obj is not None
        got = self.ws.adopt(item.local, obj)
        self.write_stage(item, obj, got)

    def write_stage(self, item: Item, obj: RemoteObject, got: Fetched | None) -> None:
        """Write the stage of a file import; without ``got`` (--no-download) it has no md5."""
        assert item.resource is not None and item.file is not None
        md5, size = (got.md5, got.size) if got else (None, None)
        frozen = item.stage.frozen if item.stage is not None else True  # a user's unfreeze stays
        stage = stages.file_stage(
            item.resource, item.file, item.local, obj, md5, self.pinned, frozen, size=size
        )
        self.ws.write_stage(item.local, stage, ignore=md5 is None)

    @heap_frozen()
    def fetch(self, todo: Sequence[tuple[Item, RemoteObject]], outcome: Outcome) -> None:
        """Download, and place each verified file (cache, link, stage) as it comes.

        Placing runs in the download thread, between downloads (see
        ``Storage.download``); so do ``outcome`` and the progress. A failure to
        place that is neither a :class:`GcsdvcError` nor an :class:`OSError` is a
        bug: it stops the transfer and propagates.
        """
        pairs = [(obj, self.ws.scratch(n)) for n, (_, obj) in enumerate(todo)]
        reporter = self.reporter
        if reporter:
            reporter.start(len(pairs), sum(obj.size for obj, _ in pairs))
        on_bytes = (lambda n: reporter.advance(nbytes=n)) if reporter else None

        def done(index: int, got: Fetched | Exception) -> None:
            (item, obj), tmp = todo[index], pairs[index][1]
            error = got if isinstance(got, Exception) else None
            if isinstance(got, Fetched):
                try:
                    self._place(item, tmp, obj, got)
                except (GcsdvcError, OSError) as exc:
                    error = exc
            outcome(item, error)
            if reporter:
                reporter.advance(files=1)

        try:
            self.storage.download(pairs, done, on_bytes, self.ws.copies())
        finally:
            if reporter:
                reporter.finish()

    def _place(self, item: Item, tmp: Path, obj: RemoteObject, got: Fetched) -> None:
        """Cache, link and record one verified download (a restore only with its recorded bytes)."""
        recorded = item.stage.md5 if item.stage is not None else None
        if item.action is Action.RESTORE and recorded and got.md5 != recorded:
            for path in (tmp, got.copy):
                if path is not None:
                    path.unlink(missing_ok=True)
            raise ChecksumMismatch(f"{obj.url}: the bytes are not the recorded ones (md5 differs)")
        self.ws.place(tmp, item.local, got)
        self.write_stage(item, obj, got)
