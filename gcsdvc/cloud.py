"""Cloud Storage access: the environment, credentials, one connection, and what errors mean.

All access goes through dvc-gs's filesystem, so credentials and settings are the
ones ``dvc import-url`` would use. Listing (:mod:`gcsdvc.listing`) and downloading
(:mod:`gcsdvc.download`) build on :class:`Connection`.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import urllib.parse
import weakref
from pathlib import Path
from typing import Any

from gcsdvc.errors import (
    GcsdvcError,
    StorageError,
    UsageError,
    local_fault,
)
from gcsdvc.model import RemoteObject

_DEFAULT_ENV = {
    # gcsfs otherwise probes every bucket's type over gRPC, a minute per call off GCP.
    "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
}
_EMULATOR_ENV = {
    # Against a local emulator never probe the cloud metadata server.
    "NO_GCE_CHECK": "true",
    "GCE_METADATA_HOST": "127.0.0.1:9",
    "GCE_METADATA_IP": "127.0.0.1:9",
}


READ_TIMEOUT = 60  # seconds without a byte before a request counts as failed
RETRIES_VAR = "GCSDVC_RETRIES"  # attempts per download, counted as gcsfs's ``retries``


CREDENTIALS_HINT = (
    "run 'gcloud auth application-default login', or set GOOGLE_APPLICATION_CREDENTIALS "
    "to a service-account key file"
)
_DMI_PRODUCT = Path("/sys/class/dmi/id/product_name")


def prepare_environment() -> None:
    """Set gcsfs defaults; must run before gcsfs (and google-auth) is imported."""
    for key, value in _DEFAULT_ENV.items():
        os.environ.setdefault(key, value)
    emulator = os.environ.get("STORAGE_EMULATOR_HOST", "")
    if emulator.endswith("/"):
        # gcsfs appends "/storage/v1/...": "host//storage" answers 404, "bucket not found".
        os.environ["STORAGE_EMULATOR_HOST"] = emulator.rstrip("/")
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        for key, value in _EMULATOR_ENV.items():
            os.environ.setdefault(key, value)
    elif surely_off_gcp() and not has_credentials_file():
        # Without credentials google-auth asks the metadata server whether this is GCE
        # (google/auth/compute_engine/_metadata.py: ping() 3 x 3 s), and gcsfs then asks it
        # again for a token (gcsfs/credentials.py: the "cloud" method): about 17 s per
        # process before an anonymous request. Off GCP nothing answers; skip both.
        os.environ.setdefault("NO_GCE_CHECK", "true")


# The kinds of credentials file google-auth reads (google/auth/_default.py, _VALID_TYPES).
CREDENTIAL_TYPES = frozenset(
    {
        "authorized_user",
        "service_account",
        "external_account",
        "external_account_authorized_user",
        "impersonated_service_account",
        "gdch_service_account",
    }
)


def check_credentials_file() -> None:
    """Refuse a ``GOOGLE_APPLICATION_CREDENTIALS`` that names no usable credentials.

    gcsfs would fall back to anonymous access without a word (a missing file, an
    OAuth client file instead of a key). Only the file is read, as google-auth
    reads it first: nothing is asked of Google.
    """
    path = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    if not path:
        return
    why = None
    try:
        info = json.loads(Path(path).read_bytes())
    except FileNotFoundError:
        why = "no such file"
    except OSError as exc:
        why = f"cannot read it ({exc.strerror or exc})"
    except ValueError:
        why = "not a JSON file"
    else:
        kind = info.get("type") if isinstance(info, dict) else None
        if kind not in CREDENTIAL_TYPES:
            client = isinstance(info, dict) and ("installed" in info or "web" in info)
            why = (
                "an OAuth client file, not credentials"
                if client
                else f"holds no credentials (type {kind!r})"
            )
    if why:
        raise StorageError(
            f"GOOGLE_APPLICATION_CREDENTIALS={path}: {why}; point it at a service-account "
            "key file, or unset it and run 'gcloud auth application-default login'"
        )


def credentials_hint() -> str:
    """What to do about refused credentials, from where they came."""
    path = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    if path:
        return f"the credentials in GOOGLE_APPLICATION_CREDENTIALS={path} were refused"
    return CREDENTIALS_HINT


def _sign_in(fs: Any) -> None:
    """Get a token once, before any request: credentials Google refuses for good (a revoked
    or deleted key) fail in one line with Google's reason, not after gcsfs's retries of
    "Invalid Credentials" (about 34 s). Anything else is left to the requests."""
    try:
        fs.credentials.maybe_refresh()
    except Exception as exc:
        refused = refresh_error(exc)
        if refused is not None and not getattr(refused, "retryable", False):
            raise StorageError(describe(refused)) from None


def refresh_error(exc: BaseException) -> BaseException | None:
    """google-auth's ``RefreshError`` behind ``exc`` (gcsfs raises "Invalid Credentials"
    from it), or None."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return None
        if type(seen).__name__ == "RefreshError":
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def refused_credentials(refused: BaseException) -> str:
    """One line for credentials Google's token endpoint refused, with its reason."""
    said = refused.args[0] if refused.args and isinstance(refused.args[0], str) else str(refused)
    path = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    if path:
        fix = (
            f"the key in GOOGLE_APPLICATION_CREDENTIALS={path} is no longer valid (revoked or "
            "deleted?): create a new key, or unset it and run "
            "'gcloud auth application-default login'"
        )
    else:
        fix = "run 'gcloud auth application-default login' again"
    return f"Google refused the credentials ({said}); {fix}"


def surely_off_gcp() -> bool:
    """Whether this Linux machine says it is no Google machine (google-auth's own fallback test).

    google-auth reads the same file in ``detect_gce_residency_linux``. Unreadable
    (macOS, Windows, sandboxes) means "cannot tell", and the metadata check stays.
    """
    try:
        product = _DMI_PRODUCT.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return False
    return bool(product) and not product.startswith("Google")


def has_credentials_file() -> bool:
    """Whether google-auth finds credentials before it would ask the metadata server."""
    if os.environ.get("GOOGLE_APPLICATION_CREDENTIALS"):
        return True
    return gcloud_credentials_file().is_file()


def gcloud_credentials_file() -> Path:
    """Where ``gcloud auth application-default login`` keeps its credentials."""
    config = os.environ.get("CLOUDSDK_CONFIG") or str(Path.home() / ".config" / "gcloud")
    return Path(config) / "application_default_credentials.json"


class RetryCounter:
    """The retries gcsfs made for one :class:`Storage`."""

    def __init__(self) -> None:
        self.retries = 0
        _RetryLog.watch(self)


class _RetryLog(logging.Handler):
    """The one handler on gcsfs's logger: counts retries, keeps tracebacks off the terminal.

    Installed once per process (not once per Storage), and counting for every
    live :class:`RetryCounter`.
    """

    installed: _RetryLog | None = None

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.counters: weakref.WeakSet[RetryCounter] = weakref.WeakSet()

    @classmethod
    def watch(cls, counter: RetryCounter) -> None:
        if cls.installed is None:
            cls.installed = cls()
            gcsfs_log = logging.getLogger("gcsfs")
            gcsfs_log.addHandler(cls.installed)
            gcsfs_log.setLevel(logging.DEBUG)
            gcsfs_log.propagate = False
        cls.installed.counters.add(counter)

    def emit(self, record: logging.LogRecord) -> None:
        if "retrying after exception" in record.getMessage():
            for counter in list(self.counters):
                counter.retries += 1


class Connection:
    """A Cloud Storage client for one command; the filesystem is created on first use."""

    def __init__(self, jobs: int = 16) -> None:
        self.jobs = max(1, jobs)
        self._fs: Any = None
        # A sync plans twice (before and under the repository lock): ask once.
        self._objects: dict[tuple[str, str], RemoteObject | BaseException | None] = {}
        self._listings: dict[tuple[str, str], list[str] | StorageError] = {}
        self.retries = RetryCounter()

    @property
    def fs(self) -> Any:
        if self._fs is None:
            prepare_environment()
            retries = attempts()
            check_credentials_file()
            self._check_reachable()
            try:
                from dvc_gs import GSFileSystem

                fs = GSFileSystem().fs
                # A stalled connection must fail (and be retried), not hang the sync.
                fs.requests_timeout = _timeout()
                fs.retries = retries  # gcsfs's name; its own requests keep their 6
                self._fs = fs
            except Exception as exc:
                raise StorageError(f"cannot set up Cloud Storage access: {describe(exc)}") from None
            _sign_in(self._fs)
        return self._fs

    def _check_reachable(self, timeout: float = 10.0) -> None:
        """Fail in seconds, not after a minute of retries, when storage is down."""
        if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY")):
            return
        endpoint = os.environ.get("STORAGE_EMULATOR_HOST") or "https://storage.googleapis.com"
        parts = urllib.parse.urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
        host = parts.hostname or "storage.googleapis.com"
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            socket.create_connection((host, port), timeout=timeout).close()
        except OSError as exc:
            raise StorageError(
                f"cannot reach Cloud Storage at {parts.scheme}://{host}:{port}: "
                f"{exc.strerror or exc}"
            ) from None


def attempts() -> int:
    """How often a download is tried: ``$GCSDVC_RETRIES``, default 6 (as gcsfs's requests).

    gcsfs waits about 1, 2, 4, 8, 16 s between tries; fewer give up sooner in an outage.
    """
    value = os.environ.get(RETRIES_VAR, "").strip() or "6"
    if not value.isdigit() or int(value) < 1:
        raise UsageError(f"{RETRIES_VAR}={value!r}: expected a whole number, at least 1")
    return int(value)


def billed_project(fs: Any) -> str | None:
    """The project requests bill for requester-pays buckets, as gcsfs's own requests name it.

    gcsfs and DVC take it from ``FSSPEC_GS_REQUESTER_PAYS=<project>`` (fsspec's
    configuration of the ``gs`` file system), so ``dvc pull`` bills the same project.
    """
    pays = fs.requester_pays
    if isinstance(pays, str):
        return pays
    return str(fs.project) if pays and fs.project else None


def _timeout() -> Any:
    import aiohttp

    return aiohttp.ClientTimeout(sock_connect=30, sock_read=READ_TIMEOUT)


def http_status(exc: BaseException) -> object:
    """The HTTP status an exception carries: gcsfs's ``code``, aiohttp's ``status``
    (whose ``code`` alias warns of its deprecation)."""
    if type(exc).__module__.startswith("aiohttp"):
        return getattr(exc, "status", None)
    return getattr(exc, "code", None)


def is_outage(exc: BaseException) -> bool:
    """Whether the error means storage is unreachable (after gcsfs's own retries)."""
    import asyncio  # Python 3.10's asyncio.TimeoutError is no TimeoutError

    if isinstance(exc, ConnectionError | TimeoutError | asyncio.TimeoutError):
        return True
    code = http_status(exc)
    return type(exc).__module__.startswith("aiohttp") or (isinstance(code, int) and code >= 500)


def refusal(exc: BaseException) -> str | None:
    """Cloud Storage's text of a 403 ("" when it gave none), or None for any other error.

    gcsfs raises "Forbidden: <path>" then Cloud Storage's text, which names the
    principal and the permission it lacks.
    """
    text = str(exc).strip()
    forbidden = text.startswith("Forbidden") or http_status(exc) == 403
    if not (isinstance(exc, PermissionError) or forbidden):
        return None
    return " ".join(text.splitlines()[1:]).strip()


def describe(exc: BaseException) -> str:
    """One line for a storage exception, without a traceback."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, GcsdvcError):
        return text
    if isinstance(exc, OSError) and exc.filename is not None:
        return local_fault(exc)  # this machine's file, not Cloud Storage
    if isinstance(exc, FileNotFoundError):
        return "not found"
    said = refusal(exc)
    if said is not None:
        said = f": {said}" if said else ""
        return f"permission denied{said} (check your credentials: {credentials_hint()})"
    if "requester pays" in text.lower():
        return (
            "the bucket is requester pays: set FSSPEC_GS_REQUESTER_PAYS to the project to "
            "bill (gcsfs and DVC read it too)"
        )
    refused = refresh_error(exc)
    if refused is not None:
        return refused_credentials(refused)
    name = type(exc).__name__
    code = http_status(exc)
    if code == 401 or "Anonymous caller" in text:
        return f"not signed in to Google Cloud ({text}); {credentials_hint()}"
    if "Credentials" in name or "RefreshError" in name:
        return f"no usable Google Cloud credentials ({text})"
    if isinstance(code, int):
        return f"HTTP {code}: {text.removesuffix(f', {code}')}"  # gcsfs's "message, 503"
    if name == "ClientPayloadError":
        return f"the download broke off before its end, after every retry ({text})"
    import asyncio

    if isinstance(exc, OSError | asyncio.TimeoutError) or "Connect" in name:
        return f"connection failed ({name}: {text})"
    return f"{name}: {text}"
