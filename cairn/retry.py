"""Retries with exponential backoff and full jitter for calls between Cairn's parts.

One mechanism for every HTTP caller (the crawler's pusher, the Python clients and the commands
built on them): ``call_with_retries`` and its async twin send an attempt, ask the caller's
``RetryPolicy`` whether its outcome may be tried again, and wait a jittered backoff (at least
the answer's ``Retry-After``) before the next one.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass

import httpx

log = logging.getLogger("cairn.retry")

RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
# A server that asks for a longer pause than this gets its answer handed back instead of a
# caller silently stuck for minutes.
MAX_RETRY_AFTER = 60.0


class RetryableStatus(Exception):
    def __init__(self, response: httpx.Response):
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


def backoff_delay(attempt: int, base: float = 0.25, cap: float = 8.0) -> float:
    """Full jitter: random in [0, min(cap, base * 2**attempt)]."""
    return random.uniform(0, min(cap, base * 2 ** min(attempt, 32)))


def backoff_delays(attempts: int, base: float = 0.25, cap: float = 8.0) -> list[float]:
    """Full-jitter delays between ``attempts`` attempts."""
    return [backoff_delay(n, base, cap) for n in range(max(0, attempts - 1))]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Which outcomes of an attempt are tried again, and how many attempts there are.

    ``resend``: False when sending the request twice could do harm (a write that is not
    idempotent, a streamed body that cannot be read again): then only a failure to connect,
    after which nothing was sent, is retried. ``timeouts``: whether an attempt that ran out
    of time is tried again (a caller with a person waiting may rather hear of it at once).
    """

    attempts: int
    statuses: Collection[int] = RETRY_STATUSES
    resend: bool = True
    timeouts: bool = True

    def retries(self, error: httpx.TransportError) -> bool:
        if isinstance(error, httpx.UnsupportedProtocol):
            return False  # a URL without http(s)://: no retry can reach it
        if isinstance(error, httpx.TimeoutException):
            return self.timeouts and (self.resend or isinstance(error, httpx.ConnectTimeout))
        if isinstance(error, httpx.ConnectError):
            return True  # no connection, so the request was not sent
        return self.resend  # dropped mid-request: the server may have acted on it

    def wait(
        self, attempt: int, response: httpx.Response | None, error: Exception | None
    ) -> float | None:
        """Seconds to wait before trying again after attempt ``attempt`` (from 0), or None
        when its outcome is final."""
        if attempt + 1 >= self.attempts:
            return None
        if isinstance(error, httpx.TransportError):
            return backoff_delay(attempt) if self.retries(error) else None
        if response is None or response.status_code not in self.statuses:
            return None
        asked = _retry_after(response)
        if asked is not None and asked > MAX_RETRY_AFTER:
            return None
        return max(backoff_delay(attempt), asked or 0.0)


def _retry_after(response: httpx.Response) -> float | None:
    """The answer's ``Retry-After`` in seconds; an HTTP date is ignored (the backoff applies)."""
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def call_with_retries(
    fn: Callable[[], httpx.Response],
    *,
    attempts: int = 1,
    what: str,
    policy: RetryPolicy | None = None,
) -> httpx.Response:
    """Calls ``fn`` until it answers with a status ``policy`` does not retry (default: every
    retryable status and transport error over ``attempts``); raises the last transport error,
    or RetryableStatus when the last answer's status was a retryable one."""
    policy = policy or RetryPolicy(attempts)
    attempt = 0
    while True:
        response, error = None, None
        try:
            response = fn()
        except httpx.TransportError as exc:
            error = exc
        delay = policy.wait(attempt, response, error)
        if delay is None:
            return _final(policy, response, error)
        _log(what, response, error, attempt, policy)
        if response is not None:
            response.close()  # a streamed answer holds its connection until closed
        time.sleep(delay)
        attempt += 1


async def acall_with_retries(
    fn: Callable[[], Awaitable[httpx.Response]], *, what: str, policy: RetryPolicy
) -> httpx.Response:
    """``call_with_retries`` for an async ``fn``."""
    attempt = 0
    while True:
        response, error = None, None
        try:
            response = await fn()
        except httpx.TransportError as exc:
            error = exc
        delay = policy.wait(attempt, response, error)
        if delay is None:
            return _final(policy, response, error)
        _log(what, response, error, attempt, policy)
        if response is not None:
            await response.aclose()
        await asyncio.sleep(delay)
        attempt += 1


def _final(
    policy: RetryPolicy, response: httpx.Response | None, error: Exception | None
) -> httpx.Response:
    if error is not None:
        raise error
    assert response is not None
    if response.status_code in policy.statuses:
        raise RetryableStatus(response)
    return response


def _log(
    what: str,
    response: httpx.Response | None,
    error: Exception | None,
    attempt: int,
    policy: RetryPolicy,
) -> None:
    reason = error or f"HTTP {response.status_code if response is not None else '?'}"
    log.warning("%s failed (%s); retry %d of %d", what, reason, attempt + 1, policy.attempts - 1)
