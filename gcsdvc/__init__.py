"""gcsdvc: experiment outputs from Google Cloud Storage as DVC import stages."""

from gcsdvc.errors import (
    DvcRepoError,
    GcsdvcError,
    LockedError,
    ManifestError,
    ModifiedError,
    NotSyncedError,
    StorageError,
    SyncFailedError,
    UnknownResourceError,
)
from gcsdvc.manifest import Manifest, Resource, load_manifest

__all__ = [
    "DvcRepoError",
    "GcsdvcError",
    "LockedError",
    "Manifest",
    "ManifestError",
    "ModifiedError",
    "NotSyncedError",
    "Resource",
    "StorageError",
    "SyncFailedError",
    "UnknownResourceError",
    "load_manifest",
]
