"""Cloud Storage: one client per command that lists (:mod:`gcsdvc.listing`) and downloads
(:mod:`gcsdvc.download`) through one connection (:mod:`gcsdvc.cloud`); bytes are verified
in :mod:`gcsdvc.hashes`. The types and helpers imported here with ``as`` stay importable
from this module, where callers found them before the split.
"""

from __future__ import annotations

from gcsdvc.cloud import describe as describe
from gcsdvc.download import Downloads
from gcsdvc.download import Fetched as Fetched
from gcsdvc.hashes import file_md5 as file_md5
from gcsdvc.hashes import hash_file as hash_file
from gcsdvc.listing import Listing
from gcsdvc.listing import Looked as Looked
from gcsdvc.listing import PrefixStats as PrefixStats
from gcsdvc.model import RemoteObject as RemoteObject


class Storage(Listing, Downloads):
    """A Cloud Storage client for one command; the filesystem is created on first use."""
