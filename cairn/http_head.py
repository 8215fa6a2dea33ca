"""The HTTP protocol the services are served with: uvicorn's httptools parser, bounded.

uvicorn's httptools protocol buffers a request line and headers of any size (a 200 MB header
grew a catalogue by 200 MB before a route could refuse anything) and waits for them forever (a
client that opens a connection and sends a byte now and then holds it, and a file descriptor,
indefinitely). h11 has a size limit but no time limit, and parses slower. This protocol keeps
httptools and adds both limits to the head of each request:

- more than ``MAX_HEAD_BYTES`` of request line and headers gets a 431 and the connection closed;
- a head not complete ``HEAD_TIMEOUT`` seconds after its connection opened or its first byte
  arrived gets a 408 and the connection closed;
- a body that stops arriving (nothing for ``BODY_IDLE_TIMEOUT`` seconds while the server waits
  for more) gets a 408 too, and the connection closed: the request ends as a disconnect.

Body sizes are not counted here: the services' body limits (``BodyLimitMiddleware``) see them.
"""

from __future__ import annotations

import asyncio
import json

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

# Larger than any URL or header a client of the services sends (h11 allows 16 KiB, nginx 32
# KiB), small enough that a thousand connections at the limit cost 64 MB.
MAX_HEAD_BYTES = 64 * 1024
HEAD_TIMEOUT = 30.0
# Seconds without a byte of an unfinished body before it is given up (nginx's
# client_body_timeout is 60): long enough for any client that is still sending.
BODY_IDLE_TIMEOUT = 30.0
# How long a refused connection is still read (and what arrives dropped) before it is closed.
REFUSED_LINGER = 5.0


def _problem(status: int, title: str, detail: str) -> bytes:
    body = json.dumps(
        {
            "type": "about:blank",
            "title": title,
            "status": status,
            "detail": detail,
        }
    ).encode()
    return b"".join(
        [
            STATUS_LINE[status],
            b"content-type: application/problem+json\r\n",
            b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
            b"connection: close\r\n\r\n",
            body,
        ]
    )


HEAD_TOO_LARGE = _problem(
    431,
    "Request header fields too large",
    f"The request line and headers are over {MAX_HEAD_BYTES // 1024} KiB: send a shorter URL "
    "(put long searches in a POST body) and fewer or smaller headers.",
)
BODY_TOO_SLOW = _problem(
    408,
    "Request timeout",
    f"Nothing of the request body arrived for {BODY_IDLE_TIMEOUT:g} seconds; send the body "
    "without pauses (or a Content-Length that matches it).",
)
HEAD_TOO_SLOW = _problem(
    408,
    "Request timeout",
    f"The request line and headers did not arrive within {HEAD_TIMEOUT:g} seconds; send the "
    "whole request head at once.",
)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a size and a time limit on each request's head."""

    max_head_bytes = MAX_HEAD_BYTES
    head_timeout = HEAD_TIMEOUT
    body_idle_timeout = BODY_IDLE_TIMEOUT

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._head_open = False
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        # The server kept the client from sending (no 100 Continue yet, or reading paused)
        # when the body timer last looked: the client's idle time starts after that.
        self._server_held = False
        self._refused = False
        super().connection_made(transport)
        # A connection that never sends a byte would otherwise be held forever.
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        self._disarm_body_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        super().data_received(data)
        if self._body_timer is not None:
            self._disarm_body_timer()  # the body moves: its idle time starts again
            self._arm_body_timer()
        if not self._head_open or self.transport.is_closing():
            return
        # The head is still incomplete after this chunk, so the chunk belongs to it (httptools
        # keeps the partial header in its own buffer until the header ends).
        self._head_bytes += len(data)
        if self._head_bytes > self.max_head_bytes:
            self._refuse(HEAD_TOO_LARGE)

    def eof_received(self) -> None:
        if self._refused:
            self.transport.close()
            return
        super().eof_received()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_open = True
        self._head_bytes = 0
        self._arm_head_timer()

    def on_headers_complete(self) -> None:
        self._head_open = False
        self._disarm_head_timer()
        super().on_headers_complete()
        self._server_held = self.expect_100_continue
        self._arm_body_timer()  # disarmed by on_message_complete, at once for a GET

    def on_message_complete(self) -> None:
        self._disarm_body_timer()
        super().on_message_complete()

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _arm_body_timer(self) -> None:
        if self._body_timer is None:
            self._body_timer = self.loop.call_later(self.body_idle_timeout, self._body_timed_out)

    def _disarm_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _body_timed_out(self) -> None:
        self._body_timer = None
        cycle = self.cycle
        if self.flow.read_paused or (cycle is not None and cycle.waiting_for_100_continue):
            # The app has not taken what came, or not yet asked for the body a client waits
            # to send (Expect: 100-continue): the wait is the server's, not the client's.
            self._server_held = True
            self._arm_body_timer()
            return
        if self._server_held:
            # The server let go since the last look (the 100 Continue may have gone out a
            # moment ago): the client gets a whole interval from now to start sending.
            self._server_held = False
            self._arm_body_timer()
            return
        if self.transport.is_closing() or self._refused:
            return
        self._refused = True
        if cycle is not None and not cycle.response_started:
            self.transport.write(BODY_TOO_SLOW)
        # Nothing unread is waiting (the client is silent), so closing loses no answer; the
        # app's next receive() is a disconnect.
        self.transport.close()

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing() and not self._refused:
            self._refuse(HEAD_TOO_SLOW)

    def _refuse(self, answer: bytes) -> None:
        self._disarm_head_timer()
        self._refused = True
        self.transport.write(answer)
        # Closing now, with the client's bytes unread, would reset the connection and lose the
        # answer: the write side is shut (the client sees the end of the answer), what still
        # arrives is dropped, and the connection closes when the client closes it or soon after.
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(REFUSED_LINGER, self.transport.close)
