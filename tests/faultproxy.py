"""A small fault-injecting TCP proxy in front of the emulator, on 127.0.0.1.

Each new client connection reads the request head and then, depending on the
mode, forwards it, answers with a canned error, slows the response down or
flips one byte of the response body. Connections are the unit: gcsfs opens a
new one after an error, so "fail the first N connections" models transient
faults.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Faults:
    fail_first: int = 0  # answer the first N connections with `status`
    status: int = 503
    forbid: tuple[str, ...] = ()  # answer 403 to requests whose request line contains one
    unavailable: str = ""  # answer 503 to requests whose request line contains this
    cut_media: int = 0  # hang up the first N object downloads after 256 KiB of the answer
    anonymous: str = ""  # answer 401 "Anonymous caller" to requests whose line contains this
    delay: float = 0.0  # seconds to sleep per 64 KiB of response
    corrupt_media: bool = False  # flip a byte of every object download
    down: bool = False  # refuse to serve: close at once
    hold_media: threading.Event | None = None  # object downloads wait until it is set
    held: threading.Event = field(default_factory=threading.Event)  # set as one starts waiting
    seen: int = field(default=0)


class FaultProxy:
    def __init__(self, upstream_port: int, faults: Faults | None = None) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.faults = faults or Faults()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self.sock.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        f = self.faults
        _no_delay(client)
        with client:
            if f.down:
                return
            head = _read_head(client)
            if head is None:
                return
            f.seen += 1
            line = head.split(b"\r\n", 1)[0].decode("latin-1")
            if f.seen <= f.fail_first:
                return _answer(client, f.status)
            if any(part in line for part in f.forbid):
                return _answer(client, 403, FORBIDDEN_TEXT)
            if f.unavailable and f.unavailable in line:
                return _answer(client, 503)
            if f.anonymous and f.anonymous in line:
                return _answer(client, 401, _ANONYMOUS)
            if f.hold_media is not None and "alt=media" in line:
                f.held.set()
                f.hold_media.wait(60)
            with socket.create_connection(self.upstream) as up:
                _no_delay(up)
                up.sendall(_one_request_per_connection(head))
                pump = threading.Thread(target=_copy, args=(client, up), daemon=True)
                pump.start()
                media = "alt=media" in line
                flipped = not (f.corrupt_media and media)
                body = False
                cut_after = None
                if media and f.cut_media > 0:
                    f.cut_media -= 1
                    cut_after = 256 << 10
                sent = 0
                while chunk := _recv(up):
                    if _is_down(f) or (cut_after is not None and sent >= cut_after):
                        _hang_up(client, up)  # storage died, or this answer is cut short
                        return
                    sent += len(chunk)
                    if not flipped:
                        if not body and b"\r\n\r\n" in chunk:
                            body, cut = True, chunk.index(b"\r\n\r\n") + 4
                        else:
                            cut = 0
                        if body and cut < len(chunk):
                            chunk = chunk[:cut] + bytes([chunk[cut] ^ 1]) + chunk[cut + 1 :]
                            flipped = True
                    if f.delay:
                        time.sleep(f.delay)
                    try:
                        client.sendall(chunk)
                    except OSError:
                        return


def _no_delay(sock: socket.socket) -> None:
    """Forward each write at once: Nagle's algorithm would hold it for the peer's delayed ACK."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _is_down(faults: Faults) -> bool:
    """Read afresh: the test flips ``down`` from another thread mid-transfer."""
    return faults.down


def _hang_up(*socks: socket.socket) -> None:
    # close() alone does not wake a thread blocked in recv(); shutdown() sends the FIN.
    for sock in socks:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""


def _copy(src: socket.socket, dst: socket.socket) -> None:
    while chunk := _recv(src):
        try:
            dst.sendall(chunk)
        except OSError:
            return


def _read_head(sock: socket.socket) -> bytes | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = _recv(sock)
        if not chunk:
            return None
        data += chunk
    return data


def _one_request_per_connection(head: bytes) -> bytes:
    """Ask for ``Connection: close`` so that every request passes the fault checks."""
    lines = [
        line
        for line in head[:-4].split(b"\r\n")
        if not line.lower().startswith((b"connection:", b"keep-alive:"))
    ]
    return b"\r\n".join([*lines, b"Connection: close"]) + b"\r\n\r\n"


_ANONYMOUS = (
    "Anonymous caller does not have storage.objects.get access to the Google Cloud "
    "Storage object. Permission 'storage.objects.get' denied on resource (or it may not exist)."
)


# Cloud Storage's text for a 403: it names the principal and the permission it lacks.
FORBIDDEN_TEXT = (
    "sandbox@example.invalid does not have storage.objects.get access to the Google Cloud "
    "Storage object. Permission 'storage.objects.get' denied on resource (or it may not exist)."
)


def _answer(sock: socket.socket, status: int, message: str = "injected fault") -> None:
    body = b'{"error": {"code": %d, "message": "%s"}}' % (status, message.encode())
    sock.sendall(
        b"HTTP/1.1 %d Injected\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (status, len(body), body)
    )
