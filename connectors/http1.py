"""A bare HTTP/1.1 GET over a socket, for the WebHDFS calls a crawl makes by the thousand.

A crawl of an HDFS volume makes one LISTSTATUS_BATCH per folder and two OPENs per manifest;
through requests each cost 0.5-0.7 ms of the crawler's CPU, and through http.client still
0.2 ms, most of it in building the request and parsing the answer's headers with the
``email`` package. Here a request is one formatted string and the head of the answer is
read in one piece and split by hand. Only what WebHDFS answers is understood (a body sized
by Content-Length, sent chunked, or ended by the server closing the connection); anything
else is a :class:`BadAnswer`, and the caller asks again the ordinary way.
"""

from __future__ import annotations

import socket
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# A head, or a chunk-size line, longer than this is not WebHDFS's.
_MAX_HEAD = 64 * 1024
_MAX_LINE = 1024
_RECV = 256 * 1024


# (family, type, proto, sockaddr) of a getaddrinfo answer
Address = tuple[socket.AddressFamily, socket.SocketKind, int, Any]


def resolve(host: str, port: int) -> list[Address]:
    """Where ``host:port`` is, to connect to it again and again without asking each time
    (raises OSError)."""
    return [(f, t, p, a) for f, t, p, _, a in socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)]


class BadAnswer(Exception):
    """An answer this module does not read (or a connection that broke mid-answer)."""


@dataclass(slots=True)
class Answer:
    status: int
    headers: dict[str, str]  # names lower-cased; a repeated header keeps its last value
    body: bytes
    keep_alive: bool  # whether the connection can carry the next request


class Connection:
    """One connection to ``host:port``; ``get`` sends a request and reads its answer."""

    def __init__(
        self, host: str, port: int, timeout: float, addresses: Sequence[Address] = ()
    ) -> None:
        """``addresses``: where ``host`` was found (``resolve``); looked up when empty."""
        self.host = host
        self.port = port
        self._sock = (
            _connect(addresses, timeout)
            if addresses
            else socket.create_connection((host, port), timeout=timeout)
        )
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buf = b""  # received, not yet read
        self.used = 0  # answers read on this connection

    def close(self) -> None:
        self._sock.close()

    def get(self, target: str, limit: int | None = None) -> Answer:
        """GET ``target`` (path and query, already quoted). ``limit``: read no more than
        this much of the body (a body left unread ends the connection's use)."""
        host = self.host if ":" not in self.host else f"[{self.host}]"
        self._sock.sendall(
            f"GET {target} HTTP/1.1\r\nHost: {host}:{self.port}\r\n"
            "Accept-Encoding: identity\r\n\r\n".encode("latin-1")
        )
        answer = self._answer(limit)
        self.used += 1
        return answer

    def _more(self) -> bytes:
        data = self._sock.recv(_RECV)
        if not data:
            raise BadAnswer("connection closed mid-answer")
        return data

    def _until(self, separator: bytes, most: int) -> bytes:
        """What comes before ``separator``, which is consumed too."""
        buf = self._buf
        while (at := buf.find(separator)) < 0:
            if len(buf) > most:
                raise BadAnswer("head or line too long")
            buf += self._more()
        self._buf = buf[at + len(separator) :]
        return buf[:at]

    def _exactly(self, n: int) -> bytes:
        buf = self._buf
        if len(buf) >= n:
            self._buf = buf[n:]
            return buf[:n]
        parts = [buf]
        got = len(buf)
        while got < n:
            data = self._more()
            parts.append(data)
            got += len(data)
        whole = b"".join(parts)
        self._buf = whole[n:]
        return whole[:n]

    def _to_close(self, limit: int | None) -> bytes:
        parts = [self._buf]
        got = len(self._buf)
        while limit is None or got < limit:
            data = self._sock.recv(_RECV)
            if not data:
                break
            parts.append(data)
            got += len(data)
        self._buf = b""
        whole = b"".join(parts)
        return whole if limit is None else whole[:limit]

    def _answer(self, limit: int | None) -> Answer:
        lines = self._until(b"\r\n\r\n", _MAX_HEAD).decode("latin-1").split("\r\n")
        status_line = lines[0].split(None, 2)
        if len(status_line) < 2 or not status_line[0].startswith("HTTP/1."):
            raise BadAnswer("not an HTTP/1.x status line")
        try:
            status = int(status_line[1])
        except ValueError:
            raise BadAnswer("not an HTTP status") from None
        if status < 200:
            raise BadAnswer("interim answer")  # never asked for (no Expect: 100-continue)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise BadAnswer("malformed header line")
            headers[name.strip().lower()] = value.strip()
        keep_alive = status_line[0] != "HTTP/1.0" and "close" not in [
            token.strip() for token in headers.get("connection", "").lower().split(",")
        ]
        encoding = headers.get("transfer-encoding", "").lower()
        if encoding:
            if encoding != "chunked":
                raise BadAnswer(f"transfer encoding {encoding!r}")
            body, complete = self._chunked(limit)
            keep_alive = keep_alive and complete
        elif "content-length" in headers:
            try:
                length = int(headers["content-length"])
            except ValueError:
                raise BadAnswer("malformed Content-Length") from None
            if length < 0:
                raise BadAnswer("negative Content-Length")
            body = self._exactly(length if limit is None else min(length, limit))
            keep_alive = keep_alive and len(body) == length
        elif status in (204, 304):
            body = b""
        else:
            body = self._to_close(limit)
            keep_alive = False
        return Answer(status, headers, body, keep_alive)

    def _chunked(self, limit: int | None) -> tuple[bytes, bool]:
        """The body, and whether all of it was read."""
        parts: list[bytes] = []
        got = 0
        while True:
            size_text = self._until(b"\r\n", _MAX_LINE).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise BadAnswer("malformed chunk size") from None
            if size < 0:
                raise BadAnswer("malformed chunk size")
            if size == 0:
                while self._until(b"\r\n", _MAX_HEAD):  # trailers, if any
                    pass
                return b"".join(parts), True
            parts.append(self._exactly(size))
            got += size
            if limit is not None and got >= limit:
                return b"".join(parts)[:limit], False
            if self._exactly(2) != b"\r\n":
                raise BadAnswer("chunk not followed by CRLF")


def _connect(addresses: Sequence[Address], timeout: float) -> socket.socket:
    """A socket connected to the first of ``addresses`` that takes it, as
    ``socket.create_connection`` does with what it looked up."""
    error: OSError | None = None
    for family, kind, proto, address in addresses:
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(address)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
    assert error is not None
    raise error


class Pool:
    """Idle kept-alive connections to one server, taken by one thread at a time."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self._idle: list[Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        # A pool dropped without close() (a volume nobody closed) still closes its sockets,
        # before they would be collected open: the finalizer holds the list, not the pool.
        weakref.finalize(self, _close_all, self._idle)

    def take(self) -> Connection:
        """An idle connection, or a new one (which may raise OSError)."""
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return self.connect()

    def connect(self) -> Connection:
        """A new connection (which may raise OSError), never one kept alive."""
        return Connection(self.host, self.port, self.timeout)

    def give_back(self, connection: Connection) -> None:
        with self._lock:
            if not self._closed:
                self._idle.append(connection)
                return
        connection.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle = self._idle[:]
            self._idle.clear()
        _close_all(idle)


def _close_all(connections: list[Connection]) -> None:
    for connection in connections:
        connection.close()
