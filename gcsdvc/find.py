"""Finding things: experiments by text (``list --grep``), a local path's origin (``which``).

Only lookups live here; a path's state comes from a survey of it
(:func:`gcsdvc.survey.survey_local`) read as status reads it.
"""

from __future__ import annotations

import dataclasses
import os
import posixpath
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gcsdvc import stages
from gcsdvc.errors import NotTrackedError
from gcsdvc.expand import expand_offline
from gcsdvc.manifest import Manifest, Resource
from gcsdvc.stages import ImportStage
from gcsdvc.status import FileStatus, ResourceStatus, State, local_states
from gcsdvc.survey import desired, survey_local


def exact_pattern(name: str) -> str:
    """A shell-glob pattern that matches ``name`` and nothing else."""
    return re.sub(r"([*?[])", r"[\1]", name)


def search(statuses: Sequence[ResourceStatus], text: str) -> list[ResourceStatus]:
    """Experiments whose name or description contains ``text``, ignoring case and width."""
    needle = _fold(text)
    return [
        s
        for s in statuses
        if needle in _fold(s.resource.name) or needle in _fold(s.resource.description)
    ]


def _fold(text: str) -> str:
    import unicodedata

    return unicodedata.normalize("NFKC", text).casefold()


@dataclass
class Which:
    """What gcsdvc knows about one local path."""

    item: FileStatus  # the file, or the whole-prefix import that holds it
    name: str
    description: str
    in_manifest: bool
    inner: str | None = None  # the path inside a whole-prefix import

    @property
    def source(self) -> str:
        return f"{self.item.source}/{self.inner}" if self.inner else self.item.source

    def as_json(self) -> dict[str, Any]:
        return {
            "path": self.item.local + (f"/{self.inner}" if self.inner else ""),
            "name": self.name,
            "description": self.description,
            "in_manifest": self.in_manifest,
            "source": self.source,
            "stage": self.item.stage_file,
            "md5": self.item.md5,
            "size": self.item.size,
            "state": str(self.item.state),
            "current": self.item.state is State.OK,
            "note": self.item.note,
            "remote": self.item.stage.remote if self.item.stage is not None else None,
        }


def which(manifest: Manifest, path: str | os.PathLike[str]) -> Which:
    """The experiment, source and state of a local file (or its ``.dvc``)."""
    shown = os.fspath(path)
    data = shown[: -len(stages.STAGE_SUFFIX)] if shown.endswith(stages.STAGE_SUFFIX) else shown
    given = Path(os.path.normpath(Path.cwd() / data))
    absolute = given.parent.resolve() / given.name  # the file itself may be a cache symlink
    root = manifest.root.resolve()
    if not absolute.is_relative_to(root) or absolute == root:
        raise NotTrackedError(f"{shown} is outside the repository at {root}")
    local = absolute.relative_to(root).as_posix()
    for candidate in _self_and_parents(local, manifest.data_dir):
        stage_file = root / stages.stage_path(candidate)
        if stage_file.is_file():
            stage = ImportStage.load(stage_file) or ImportStage.from_dict({})
            return _which(manifest, candidate, stage, local, shown)
    raise NotTrackedError(
        f"{shown} is not tracked by gcsdvc: there is no {stages.stage_path(local)}; "
        "'gcsdvc list' shows what the manifest holds"
    )


def _self_and_parents(local: str, data_dir: str) -> Iterator[str]:
    parts = local.split("/")
    for cut in range(len(parts), 0, -1):
        candidate = "/".join(parts[:cut])
        if candidate == data_dir:
            return
        yield candidate


def _which(manifest: Manifest, local: str, stage: ImportStage, asked: str, shown: str) -> Which:
    source = stage.source
    ident = stage.identity
    entry = desired(expand_offline(manifest)).get(local)
    listed = entry is not None and entry[0].source(entry[1]) == source
    if ident is None and not listed:
        raise NotTrackedError(
            f"{stages.stage_path(local)} is a DVC stage, but not one gcsdvc wrote "
            "or the manifest lists"
        )
    is_file = not stage.is_folder
    inner = asked[len(local) + 1 :] or None
    if inner is not None and (is_file or not (manifest.root / asked).exists()):
        raise NotTrackedError(f"{shown} is not part of the import {stages.stage_path(local)}")
    name = (ident.name if ident else "") or (entry[0].name if entry else "?")
    if entry is not None and listed and entry[0].name == name:
        description, in_manifest = entry[0].description, True
    else:
        description, in_manifest = stage.description, False
    if entry is not None and listed:
        res, file = entry
    else:  # an orphan: the entry its stage records
        assert ident is not None  # refused above otherwise
        file = (ident.file or posixpath.basename(local)) if is_file else None
        res = Resource(ident.name, ident.bucket, ident.blob, ident.subblob, None, "", False, "")
    # As its own manifest sees it.
    res = dataclasses.replace(res, manifest=ident.manifest if ident else None)
    (item,) = local_states(survey_local(manifest, [(res, file, local)]))
    return Which(item, name, description, in_manifest, inner)
