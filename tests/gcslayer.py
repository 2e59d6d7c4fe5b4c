"""An HTTP proxy in front of fake-gcs-server that answers as Cloud Storage does.

fake-gcs-server is kinder than Cloud Storage. This layer rewrites its JSON API
answers and download headers where the two differ:

* ``etag`` is base64 of a protobuf holding the generation (field 1) and the
  metageneration (field 2), e.g. ``CKishJ+i+/ICEAE=``, on object resources,
  listings and downloads (``ETag`` header), not the md5;
* a metadata ``PATCH`` bumps the metageneration (and so the etag);
* composite objects (made by ``compose`` here, or marked with
  :meth:`GcsLayer.mark_composite`) have ``componentCount`` and no ``md5Hash``,
  and their downloads carry no ``md5=`` in ``x-goog-hash``.

What the emulator already does as Cloud Storage does is passed through:
``contentEncoding: gzip`` objects are listed with the stored (compressed) size
and hashes and decompressed on download unless the request sends
``Accept-Encoding: gzip`` (decompressive transcoding); versioned buckets
(``versioning.enabled``) keep old generations, readable with ``generation=``.

``rewriteTo`` answers as Cloud Storage does: the resource in the answer is
rewritten as any other, and an object larger than ``rewrite_chunk`` bytes takes
several calls, each but the last answering ``done: false`` with a
``rewriteToken`` (fake-gcs-server copies in one call); ``rewrite_calls`` counts
them, ``most_rewriting`` is the most under way at once, and the rewrites of
``held`` objects wait until ``released`` is set. ``no_create``
buckets refuse a rewrite into them with Cloud Storage's 403 text naming
``storage.objects.create``. ``media_bytes`` counts the object bytes downloaded
through the layer.

``encrypted`` objects are stored with a customer-supplied encryption key (CSEK).
``decode_media`` plays a proxy on the way that decodes gzip answers and drops
their ``Content-Encoding``. Buckets in ``requester_pays`` refuse every request
that names no ``userProject`` (400, Cloud Storage's text); ``billed`` lists the
(bucket, project) requests named.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import io
import json
import re
import threading
import urllib.parse
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from faultproxy import FORBIDDEN_TEXT

_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "host", "upgrade"}
_OBJECT = re.compile(r"^/(?:upload/)?storage/v1/b/([^/]+)/o/([^/?]+)(/compose)?$")
_BUCKET = re.compile(r"^/(?:upload/|download/)?storage/v1/b/([^/?]+)")
_NO_USER_PROJECT = "Bucket is a requester pays bucket but no user project provided."
_CSEK_TEXT = "The target object is encrypted by a customer-supplied encryption key."
_KEY_SHA = "H8DqAC1k9J1sK2aY1hV9u6bI3u5n0i6QxRkZ0s0Ppqg="
_MEDIA = re.compile(r"^/(?:download/)?storage/v1/b/([^/]+)/o/([^/?]+)$")
_REWRITE = re.compile(r"^/storage/v1/b/([^/]+)/o/([^/?]+)/rewriteTo/b/([^/]+)/o/([^/?]+)$")
NO_CREATE_TEXT = (
    "sandbox@example.invalid does not have storage.objects.create access to the Google Cloud "
    "Storage object. Permission 'storage.objects.create' denied on resource (or it may not exist)."
)

Key = tuple[str, str, str]  # bucket, object name, generation


def real_etag(generation: int | str, metageneration: int | str) -> str:
    """Cloud Storage's etag: base64 of ``{1: generation, 2: metageneration}`` as protobuf."""
    return base64.b64encode(
        b"\x08" + _varint(int(generation)) + b"\x10" + _varint(int(metageneration))
    ).decode()


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


class GcsLayer:
    """The proxy, on 127.0.0.1 and a free port; ``url``/``port`` as an emulator has them."""

    def __init__(self, upstream_url: str) -> None:
        parts = urllib.parse.urlsplit(upstream_url)
        self.upstream_url = upstream_url.rstrip("/")
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.metagenerations: dict[Key, int] = {}
        self.components: dict[Key, int] = {}  # composite objects and their componentCount
        # What clients asked for, to measure what a command costs.
        self.media_requests = 0  # object downloads
        self.media_bytes = 0  # object bytes sent by those downloads
        self.rewrite_calls = 0  # rewriteTo requests
        self.rewriting = self.most_rewriting = 0  # rewriteTo requests under way, and the most
        self.rewrite_chunk: int | None = None  # bytes one rewriteTo call copies (None: all)
        self.no_create: set[str] = set()  # buckets no rewrite may write into (403)
        # Objects (bucket, name) whose rewrites wait until ``released`` is set.
        self.held: set[tuple[str, str]] = set()
        self.released = threading.Event()
        self._rewrites: dict[str, int] = {}  # rewriteToken -> bytes rewritten so far
        self.objects_served = 0  # object resources answered (one per stat, one per listed item)
        self.stats = 0  # requests for one object's metadata
        self.listings = 0  # listing pages
        self.lock = threading.Lock()
        # A proxy on the way that decodes gzip answers (and drops Content-Encoding).
        self.decode_media = False
        # Requester-pays buckets: a request without ``userProject`` is refused, as Cloud
        # Storage refuses it; the projects that requests named, to check who is billed.
        self.requester_pays: set[str] = set()
        self.billed: list[tuple[str, str]] = []  # (bucket, project)
        # Objects (bucket, name) whose downloads always answer 503, as one sick object would,
        # or 403, as one the caller may not read.
        self.unavailable: set[tuple[str, str]] = set()
        self.forbidden: set[tuple[str, str]] = set()
        self.downloads: Counter[tuple[str, str]] = Counter()  # download requests per object
        # Objects (bucket, name) stored with a customer-supplied encryption key (CSEK): listed
        # with ``customerEncryption`` and without hashes, their downloads refused (no key sent).
        self.encrypted: set[tuple[str, str]] = set()
        layer = self

        class Handler(_Handler):
            owner = layer

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def env(self) -> dict[str, str]:
        from gcsdvc.emulator import client_env

        return client_env(self.url)

    # -- what tests do to the bucket --------------------------------------

    def current(self, bucket: str, name: str) -> dict[str, Any]:
        """The object's resource as Cloud Storage would answer it."""
        status, body = self._upstream_json("GET", f"/storage/v1/b/{bucket}/o/{_quote(name)}")
        assert status == 200, (status, body)
        return self.rewrite_object(body)

    def mark_composite(self, bucket: str, name: str, components: int = 2) -> None:
        """Treat the object's current generation as a parallel composite upload."""
        raw = self._upstream_json("GET", f"/storage/v1/b/{bucket}/o/{_quote(name)}")[1]
        with self.lock:
            self.components[(bucket, name, str(raw["generation"]))] = components

    def patch_metadata(self, bucket: str, name: str, metadata: dict[str, str]) -> dict[str, Any]:
        """A metadata-only change (same bytes, same generation, new metageneration)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            body = json.dumps({"metadata": metadata}).encode()
            conn.request(
                "PATCH",
                f"/storage/v1/b/{bucket}/o/{_quote(name)}",
                body,
                {"Content-Type": "application/json"},
            )
            resp = conn.getresponse()
            data = json.loads(resp.read())
            assert resp.status == 200, data
            return data  # type: ignore[no-any-return]
        finally:
            conn.close()

    def upload(
        self,
        bucket: str,
        name: str,
        data: bytes,
        *,
        content_encoding: str | None = None,
        content_type: str = "application/octet-stream",
    ) -> dict[str, Any]:
        """A simple media upload, optionally stored with a ``Content-Encoding``."""
        query = {"uploadType": "media", "name": name}
        if content_encoding:
            query["contentEncoding"] = content_encoding
        path = f"/upload/storage/v1/b/{bucket}/o?{urllib.parse.urlencode(query)}"
        status, body = self._upstream_json("POST", path, data, {"Content-Type": content_type})
        assert status == 200, (status, body)
        return self.rewrite_object(body)

    # -- rewriting --------------------------------------------------------

    def rewrite_object(self, obj: dict[str, Any]) -> dict[str, Any]:
        key = (str(obj.get("bucket")), str(obj.get("name")), str(obj.get("generation")))
        with self.lock:
            meta = self.metagenerations.get(key, 1)
            components = self.components.get(key)
        obj["metageneration"] = str(meta)
        if obj.get("generation"):
            obj["etag"] = real_etag(obj["generation"], meta)
        if components:
            obj.pop("md5Hash", None)
            obj["componentCount"] = components
        if key[:2] in self.encrypted:
            obj.pop("md5Hash", None)
            obj.pop("crc32c", None)
            obj["customerEncryption"] = {"encryptionAlgorithm": "AES256", "keySha256": _KEY_SHA}
        return obj

    def rewrite(self, doc: Any) -> Any:
        if isinstance(doc, dict):
            if doc.get("kind") == "storage#object":
                self.count(objects=1, stats=1)
                return self.rewrite_object(doc)
            if doc.get("kind") == "storage#rewriteResponse" and doc.get("resource"):
                doc["resource"] = self.rewrite_object(doc["resource"])
            if doc.get("kind") == "storage#objects":
                doc["items"] = [self.rewrite_object(o) for o in doc.get("items", [])]
                self.count(objects=len(doc["items"]), listings=1)
        return doc

    def count(
        self, objects: int = 0, media: int = 0, stats: int = 0, listings: int = 0, nbytes: int = 0
    ) -> None:
        with self.lock:
            self.objects_served += objects
            self.media_requests += media
            self.stats += stats
            self.listings += listings
            self.media_bytes += nbytes

    def create_bucket(self, name: str, versioning: bool = False) -> None:
        """A bucket; with ``versioning`` it keeps overwritten and deleted generations."""
        body = json.dumps({"name": name, "versioning": {"enabled": versioning}}).encode()
        status, doc = self._upstream_json(
            "POST", "/storage/v1/b", body, {"Content-Type": "application/json"}
        )
        assert status == 200, (status, doc)

    def _upstream_json(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        conn = http.client.HTTPConnection(*self.upstream, timeout=60)
        try:
            conn.request(method, path, body, headers or {})
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read() or b"null")
        finally:
            conn.close()


def _quote(name: str) -> str:
    return urllib.parse.quote(name, safe="")


class _Server(ThreadingHTTPServer):
    # socketserver's default backlog is 5: a burst of connections (gcsfs opens dozens at
    # once) overflows it and the kernel drops SYNs, which clients resend after 1, 3, 7 ... s.
    request_queue_size = 1024


class _Handler(BaseHTTPRequestHandler):
    owner: GcsLayer
    protocol_version = "HTTP/1.1"
    # Headers and body are two writes: with Nagle's algorithm the body waits for the
    # client's delayed ACK, 40 ms on every answer.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def handle(self) -> None:
        # A client that hangs up mid-answer (a cancelled sync) is not an error here.
        with contextlib.suppress(ConnectionError):
            super().handle()

    def do_GET(self) -> None:
        self._proxy()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                chunk = self.rfile.read(size + 2)[:size]
                if not size:
                    break
                chunks.append(chunk)
            while self.rfile.readline().strip():
                pass
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _proxy(self) -> None:
        layer = self.owner
        match = _REWRITE.match(urllib.parse.urlsplit(self.path).path)
        if self.command != "POST" or not match:
            return self._forward()
        with layer.lock:
            layer.rewriting += 1
            layer.most_rewriting = max(layer.most_rewriting, layer.rewriting)
        try:
            if tuple(urllib.parse.unquote(g) for g in match.group(1, 2)) in layer.held:
                layer.released.wait(120)
            return self._forward()
        finally:
            with layer.lock:
                layer.rewriting -= 1

    def _forward(self) -> None:
        layer = self.owner
        body = self._body()
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
        headers["Host"] = "{}:{}".format(*layer.upstream)
        split = urllib.parse.urlsplit(self.path)
        path = split.path
        query = urllib.parse.parse_qs(split.query)
        named = _BUCKET.match(path)
        bucket = urllib.parse.unquote(named.group(1)) if named else ""
        if bucket in layer.requester_pays:
            project = query.get("userProject", [""])[0]
            if not project:
                return self._error(400, _NO_USER_PROJECT, "required")
            with layer.lock:
                layer.billed.append((bucket, project))
        rewrite = _REWRITE.match(path) if self.command == "POST" else None
        if rewrite:
            with layer.lock:
                layer.rewrite_calls += 1
            if urllib.parse.unquote(rewrite.group(3)) in layer.no_create:
                return self._error(403, NO_CREATE_TEXT, "forbidden")
            if self._rewrite_in_steps(rewrite, query):
                return
        download = _MEDIA.match(path)
        if download and query.get("alt") == ["media"]:
            wanted = tuple(urllib.parse.unquote(g) for g in download.group(1, 2))
            with layer.lock:
                layer.downloads[(wanted[0], wanted[1])] += 1
            if wanted in layer.unavailable:
                return self._error(503, "Backend Error", "backendError")
            if wanted in layer.forbidden:
                return self._error(403, FORBIDDEN_TEXT, "forbidden")
            if wanted in layer.encrypted:
                return self._error(400, _CSEK_TEXT, "resourceIsEncryptedWithCustomerEncryptionKey")
        conn = http.client.HTTPConnection(*layer.upstream, timeout=120)
        try:
            conn.request(self.command, self.path, body or None, headers)
            resp = conn.getresponse()
            media = query.get("alt") == ["media"]
            if media:
                layer.count(media=1)
            if media and resp.status < 300:
                self._stream_media(resp, path)
            else:
                self._send_rewritten(resp, path, query, body)
        finally:
            conn.close()

    def _rewrite_in_steps(self, match: re.Match[str], query: dict[str, list[str]]) -> bool:
        """Answer a step of a rewrite that is not the last (``done: false``); False for the last
        step, which the emulator then does in one go (its own token handling is not Cloud
        Storage's: it copies at once)."""
        layer = self.owner
        if layer.rewrite_chunk is None:
            return False
        bucket, name = (urllib.parse.unquote(g) for g in match.group(1, 2))
        size = int(layer.current(bucket, name)["size"])
        token = query.get("rewriteToken", [""])[0]
        with layer.lock:
            done = layer._rewrites.pop(token, 0) if token else 0
        done += layer.rewrite_chunk
        if done >= size:
            return False
        token = f"token-{uuid.uuid4().hex}"
        with layer.lock:
            layer._rewrites[token] = done
        answer = {
            "kind": "storage#rewriteResponse",
            "totalBytesRewritten": str(done),
            "objectSize": str(size),
            "done": False,
            "rewriteToken": token,
        }
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        return True

    def _error(self, status: int, message: str, reason: str) -> None:
        """An error as Cloud Storage's JSON API words it."""
        error = {
            "code": status,
            "message": message,
            "errors": [{"message": message, "reason": reason}],
        }
        data = json.dumps({"error": error}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _send_rewritten(
        self, resp: http.client.HTTPResponse, path: str, query: dict[str, list[str]], sent: bytes
    ) -> None:
        layer = self.owner
        data = resp.read()
        is_json = "json" in (resp.getheader("Content-Type") or "")
        match = _OBJECT.match(path)
        if resp.status == 200 and match and self.command == "PATCH":
            bucket, name = (urllib.parse.unquote(g) for g in match.group(1, 2))
            raw = layer._upstream_json("GET", f"/storage/v1/b/{bucket}/o/{match.group(2)}")[1]
            key = (bucket, name, str(raw["generation"]))
            with layer.lock:
                layer.metagenerations[key] = layer.metagenerations.get(key, 1) + 1
            data = json.dumps(raw).encode()  # the emulator's PATCH answer is not a resource
        elif resp.status == 200 and match and match.group(3):  # compose
            doc = json.loads(data)
            sources = json.loads(sent).get("sourceObjects", [])
            count = 0
            for src in sources:
                src_key = (doc["bucket"], src["name"], str(src.get("generation") or ""))
                with layer.lock:
                    found = [n for k, n in layer.components.items() if k[:2] == src_key[:2]]
                count += found[-1] if found else 1
            with layer.lock:
                layer.components[(doc["bucket"], doc["name"], str(doc["generation"]))] = count
        if is_json and data and resp.status < 300:
            text = json.dumps(layer.rewrite(json.loads(data)))
            data = text.replace(layer.upstream_url, layer.url).encode()
        self.send_response(resp.status, resp.reason)
        for header, value in resp.getheaders():
            if header.lower() in _HOP or header.lower() == "content-length":
                continue
            self.send_header(header, value.replace(layer.upstream_url, layer.url))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _stream_media(self, resp: Any, path: str) -> None:
        layer = self.owner
        match = _MEDIA.match(path)
        generation = resp.getheader("X-Goog-Generation") or ""
        key = ("", "", generation)
        if match:
            key = (
                urllib.parse.unquote(match.group(1)),
                urllib.parse.unquote(match.group(2)),
                key[2],
            )
        with layer.lock:
            meta = layer.metagenerations.get(key, 1)
            composite = key in layer.components
        decode = layer.decode_media and resp.getheader("Content-Encoding", "").lower() == "gzip"
        if decode:
            resp = _Decoded(resp)
        self.send_response(resp.status, resp.reason)
        for name, value in resp.getheaders():
            low = name.lower()
            if low in _HOP or low in ("etag", "x-goog-hash", "x-goog-metageneration"):
                continue
            self.send_header(name, value)
        if generation:
            self.send_header("ETag", f'"{real_etag(generation, meta)}"')
            self.send_header("X-Goog-Metageneration", str(meta))
        hashes = [
            h.strip()
            for h in (resp.getheader("X-Goog-Hash") or "").split(",")
            if h.strip() and not (composite and h.strip().startswith("md5="))
        ]
        if hashes:
            self.send_header("X-Goog-Hash", ",".join(hashes))
        chunked = resp.getheader("Content-Length") is None
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if self.command == "HEAD":
            return
        while chunk := resp.read(1 << 14):  # small writes, as the emulator makes them
            layer.count(nbytes=len(chunk))
            if chunked:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            else:
                self.wfile.write(chunk)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")


class _Decoded:
    """A gzip answer as a decoding proxy passes it on: decoded, without Content-Encoding."""

    def __init__(self, resp: http.client.HTTPResponse) -> None:
        import gzip

        self.status, self.reason = resp.status, resp.reason
        self.body = io.BytesIO(gzip.decompress(resp.read()))
        self.headers = [
            (k, v)
            for k, v in resp.getheaders()
            if k.lower() not in ("content-encoding", "content-length")
        ]
        self.headers.append(("Content-Length", str(len(self.body.getvalue()))))

    def getheaders(self) -> list[tuple[str, str]]:
        return self.headers

    def getheader(self, name: str, default: str | None = None) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), default)

    def read(self, size: int = -1) -> bytes:
        return self.body.read(size)
