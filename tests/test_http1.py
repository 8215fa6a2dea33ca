"""connectors.http1, the bare HTTP/1.1 GET the HDFS connector lists and reads with: what it
reads of an answer, and every answer it refuses (for the caller to ask the ordinary way)."""

from __future__ import annotations

import gc
import socket
import threading
from collections.abc import Iterator

import pytest

from connectors.http1 import BadAnswer, Connection, Pool


class Canned:
    """A server on a free port that answers each request on a connection with the next of
    ``answers`` (raw bytes), then closes the connection; the requests it got are kept."""

    def __init__(self, *answers: bytes) -> None:
        self.answers = list(answers)
        self.requests: list[bytes] = []
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while self.answers:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                buf = b""
                while self.answers:
                    while b"\r\n\r\n" not in buf:
                        data = conn.recv(65536)
                        if not data:
                            break
                        buf += data
                    if b"\r\n\r\n" not in buf:
                        break
                    request, _, buf = buf.partition(b"\r\n\r\n")
                    self.requests.append(request)
                    answer = self.answers.pop(0)
                    conn.sendall(answer)
                    if b"Connection: close" in answer or answer.endswith(b"<close>"):
                        break

    def close(self) -> None:
        self._listener.close()


@pytest.fixture
def canned() -> Iterator[list[Canned]]:
    made: list[Canned] = []
    yield made
    for server in made:
        server.close()


def serve(made: list[Canned], *answers: bytes) -> Canned:
    server = Canned(*answers)
    made.append(server)
    return server


def test_a_sized_body_and_keep_alive(canned: list[Canned]) -> None:
    server = serve(
        canned,
        b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{"a":1}',
        b"HTTP/1.1 404 Not Found\r\nCONTENT-LENGTH: 2\r\nX-Odd:  spaced \r\n\r\nno",
    )
    connection = Connection("127.0.0.1", server.port, 10)
    try:
        first = connection.get("/webhdfs/v1/a%20b?op=LISTSTATUS_BATCH&user.name=x")
        assert (first.status, first.body, first.keep_alive) == (200, b'{"a":1}', True)
        assert first.headers["content-type"] == "application/json"
        second = connection.get("/two")
        assert (second.status, second.body, second.headers["x-odd"]) == (404, b"no", "spaced")
        assert connection.used == 2 and server.connections == 1
    finally:
        connection.close()
    assert server.requests[0].split(b"\r\n")[:2] == [
        b"GET /webhdfs/v1/a%20b?op=LISTSTATUS_BATCH&user.name=x HTTP/1.1",
        f"Host: 127.0.0.1:{server.port}".encode(),
    ]


def test_a_chunked_body_with_extensions_and_trailers(canned: list[Canned]) -> None:
    server = serve(
        canned,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: t\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext",
    )
    connection = Connection("127.0.0.1", server.port, 10)
    try:
        answer = connection.get("/c")
        assert (answer.body, answer.keep_alive) == (b"hello world", True)
        assert connection.get("/d").body == b"next"  # the chunked answer was read to its end
    finally:
        connection.close()


def test_limits_and_bodies_ended_by_closing(canned: list[Canned]) -> None:
    server = serve(
        canned,
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789",
    )
    connection = Connection("127.0.0.1", server.port, 10)
    try:
        answer = connection.get("/x", limit=4)
        # What is left of the body cannot be skipped on the wire: the connection is done.
        assert (answer.body, answer.keep_alive) == (b"0123", False)
    finally:
        connection.close()
    server = serve(canned, b"HTTP/1.0 200 OK\r\n\r\nall of it<close>")
    connection = Connection("127.0.0.1", server.port, 10)
    try:
        answer = connection.get("/y")
        assert (answer.body, answer.keep_alive) == (b"all of it<close>", False)
    finally:
        connection.close()
    server = serve(
        canned, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n"
    )
    connection = Connection("127.0.0.1", server.port, 10)
    try:
        answer = connection.get("/z", limit=2)
        assert (answer.body, answer.keep_alive) == (b"ab", False)
    finally:
        connection.close()


@pytest.mark.parametrize(
    "raw",
    [
        b"SSH-2.0-OpenSSH\r\n\r\n<close>",
        b"HTTP/1.1 abc OK\r\n\r\n<close>",
        b"HTTP/1.1 100 Continue\r\n\r\n<close>",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n<close>",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n<close>",
        b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n<close>",
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort<close>",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n<close>",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY<close>",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n<close>",  # head never ends
    ],
)
def test_answers_it_does_not_read(canned: list[Canned], raw: bytes) -> None:
    server = serve(canned, raw)
    connection = Connection("127.0.0.1", server.port, 10)
    try:
        with pytest.raises(BadAnswer):
            connection.get("/")
    finally:
        connection.close()


def test_pool_reuses_idle_connections_and_closes_them(canned: list[Canned]) -> None:
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    server = serve(canned, ok, ok, ok)
    pool = Pool("127.0.0.1", server.port, 10)
    first = pool.take()
    assert first.get("/").body == b"ok"
    pool.give_back(first)
    again = pool.take()
    assert again is first and again.get("/").body == b"ok"
    pool.give_back(again)
    pool.close()
    assert first._sock.fileno() == -1
    # Given back after close: closed, not kept.
    late = Pool("127.0.0.1", server.port, 10)
    connection = late.take()
    late.close()
    late.give_back(connection)
    assert connection._sock.fileno() == -1


def test_a_pool_dropped_unclosed_closes_its_sockets(canned: list[Canned]) -> None:
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    server = serve(canned, ok)
    pool = Pool("127.0.0.1", server.port, 10)
    connection = pool.take()
    connection.get("/")
    pool.give_back(connection)
    sock = connection._sock
    del pool, connection
    gc.collect()
    # Closed by the pool's finalizer, not left to be collected open (a ResourceWarning).
    assert sock.fileno() == -1


def test_connects_to_the_first_address_looked_up_that_answers(canned: list[Canned]) -> None:
    from connectors.http1 import resolve
    from tests.conftest import refused_port

    server = serve(canned, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    dead = resolve("127.0.0.1", refused_port())
    live = resolve("127.0.0.1", server.port)
    connection = Connection("127.0.0.1", server.port, 10, [*dead, *live])
    try:
        assert connection.get("/").body == b"ok"
    finally:
        connection.close()
    with pytest.raises(ConnectionRefusedError):
        Connection("127.0.0.1", server.port, 10, dead)
