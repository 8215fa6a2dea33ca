"""Retries with exponential backoff and full jitter for calls between Cairn's parts."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

import httpx

T = TypeVar("T")
log = logging.getLogger("cairn.retry")

RETRY_STATUSES = {408, 425, 429, 500, 502, 503, 504}


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


def call_with_retries(
    fn: Callable[[], httpx.Response], *, attempts: int, what: str
) -> httpx.Response:
    """Calls ``fn`` until it answers with a non-retryable status; raises the last error."""
    delays = backoff_delays(attempts)
    for n in range(attempts):
        try:
            response = fn()
            if response.status_code not in RETRY_STATUSES:
                return response
            error: Exception = RetryableStatus(response)
        except httpx.UnsupportedProtocol:
            raise  # a URL without http(s)://: no retry can reach it
        except httpx.TransportError as exc:
            error = exc
        if n == attempts - 1:
            raise error
        log.warning("%s failed (%s); retry %d of %d", what, error, n + 1, attempts - 1)
        time.sleep(delays[n])
    raise AssertionError("unreachable")
