"""How stages meet DVC remotes: the pinning decision, and DVC's push cache.

Pinned stages (``version_id``) are fetched from the bucket and never pushed
(``dvc/repo/index.py``, ``_load_storage_from_import``); unpinned ones go
through the default DVC remote. The decision reads only the committed config
(``.dvc/config``), so two people syncing the same commit write the same bytes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gcsdvc.errors import DvcRepoError

if TYPE_CHECKING:
    from dvc.repo import Repo


@dataclass(frozen=True)
class Pinning:
    """Whether file stages pin the object generation, and what the user should know."""

    pinned: bool
    warnings: tuple[str, ...] = field(default=())


def _config_files(root: Path) -> dict[str, str]:
    """DVC's config file of each level, as ``dvc.config.Config.files`` names them
    (``tests/test_pinning.py`` checks they agree), found without importing DVC: its
    config module brings its file systems, a third of a no-op sync's own time."""
    import platformdirs

    # dvc.dirs's system_config_dir and global_config_dir, with dvc.env's variables.
    system = os.getenv("DVC_SYSTEM_CONFIG_DIR") or platformdirs.site_config_dir("dvc", "iterative")
    user = os.getenv("DVC_GLOBAL_CONFIG_DIR") or platformdirs.user_config_dir("dvc", "iterative")
    dvc_dir = root / ".dvc"
    return {
        "repo": str(dvc_dir / "config"),
        "local": str(dvc_dir / "config.local"),
        "global": os.path.join(user, "config"),  # noqa: PTH118 - platformdirs gives a str
        "system": os.path.join(system, "config"),  # noqa: PTH118
    }


def _levels(root: Path) -> dict[str, dict[str, Any]]:
    """Each level's DVC config, keys lower-cased as DVC reads them (``Config.load_file``)."""
    from configobj import ConfigObj, ConfigObjError

    levels: dict[str, dict[str, Any]] = {}
    for level, path in _config_files(root).items():
        try:
            with open(path, encoding="utf-8") as text:  # noqa: PTH123 - a str path
                levels[level] = _lower_keys(ConfigObj(text).dict())
        except FileNotFoundError:
            levels[level] = {}
        except (ConfigObjError, UnicodeDecodeError) as exc:
            raise DvcRepoError(f"cannot read the DVC config: config file error: {exc}") from None
        except OSError as exc:
            raise DvcRepoError(f"cannot read the DVC config {path}: {exc.strerror}") from None
    return levels


def _lower_keys(data: dict[str, Any]) -> dict[str, Any]:
    return {k.lower(): _lower_keys(v) if isinstance(v, dict) else v for k, v in data.items()}


def _default(level: dict[str, Any]) -> str | None:
    value = (level.get("core") or {}).get("remote")
    return str(value) if value else None


def default_remote(root: Path) -> str | None:
    """The default DVC remote the committed ``.dvc/config`` names, if any."""
    return _default(_levels(root)["repo"])


def pinning(root: Path, setting: bool | None) -> Pinning:
    """The pinning mode for ``pin_generations: setting`` (None: auto).

    Auto pins while the committed ``.dvc/config`` names no default remote; a
    default set only in ``.dvc/config.local`` or the user's config does not count.
    """
    levels = _levels(root)
    committed = _default(levels["repo"])
    elsewhere = next(
        (
            (name, level)
            for level in ("local", "global", "system")
            if (name := _default(levels[level]))
        ),
        None,
    )
    warnings: list[str] = []
    if setting is None and committed is None and elsewhere is not None:
        name, level = elsewhere
        shown = ".dvc/config.local" if level == "local" else f"your {level} DVC config"
        warnings.append(
            f"the default DVC remote '{name}' is set in {shown} only, so the stages stay "
            "pinned and 'dvc push' skips them; make it the team's default with "
            f"'dvc remote default {name}' (and 'dvc remote add' if only you have it), "
            "commit .dvc/config, then run 'gcsdvc sync'"
        )
    if setting is False and committed is None:
        warnings.append(
            "pin_generations: false, but .dvc/config names no default DVC remote: a fresh "
            "clone cannot 'dvc pull' these files; add one with 'dvc remote add -d NAME URL', "
            "commit .dvc/config, then 'gcsdvc sync' and 'dvc push'"
        )
    pinned = setting if setting is not None else committed is None
    return Pinning(pinned, tuple(warnings))


def forget_push_cache(repo: Repo) -> None:
    """Drop DVC's cached push/fetch collections after stages changed.

    ``dvc push`` reuses a collection keyed by the hash of the data tree, which
    does not change when only ``version_id`` does; DVC itself drops it only
    after a push that transferred something. Without this, a push after the
    stages were unpinned says "Everything is up to date" and uploads nothing.
    """
    repo.drop_data_index()
