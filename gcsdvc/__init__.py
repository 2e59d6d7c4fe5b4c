"""gcsdvc: experiment outputs from Google Cloud Storage as DVC import stages.

For analysis code: ``gcsdvc.path(name, file)``, ``gcsdvc.open(name, file)`` and
``gcsdvc.resources()`` (see :mod:`gcsdvc.api`). Importing gcsdvc loads neither
DVC nor gcsfs.
"""

from gcsdvc.api import Experiment, open, path, resources
from gcsdvc.errors import (
    DvcRepoError,
    GcsdvcError,
    LockedError,
    ManifestError,
    ModifiedError,
    NotSyncedError,
    StorageError,
    UnknownResourceError,
)
from gcsdvc.manifest import Manifest, Resource, load_manifest

__all__ = [
    "DvcRepoError",
    "Experiment",
    "GcsdvcError",
    "LockedError",
    "Manifest",
    "ManifestError",
    "ModifiedError",
    "NotSyncedError",
    "Resource",
    "StorageError",
    "UnknownResourceError",
    "load_manifest",
    "open",
    "path",
    "resources",
]
