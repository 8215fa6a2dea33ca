"""A bounded mixed read/write load on a catalogue, shared by the load test and the write
benchmark (``benchmarks/bench_writes.py``): many concurrent clients, a fixed number of requests
each, so it stops by itself.

Each client owns a few asset ids and is the only one to write them, one request at a time, so
the last write it had acknowledged for an id is what the catalogue must hold afterwards.
Reads (by id, any client's; searches) run among the writes.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

API = "/api/v1"
IDS_PER_CLIENT = 8
BULK_ITEMS = 5
TAG = "load"
RETRIES_503 = 5
# Share of each kind of request, in order; reads are the rest.
MIX = (("put", 0.30), ("delete", 0.05), ("bulk", 0.10), ("get", 0.35), ("search", 0.20))


@dataclass(slots=True)
class Expected:
    description: str
    deleted: bool
    revision: int


@dataclass(slots=True)
class LoadResult:
    clients: int
    requests: int
    seconds: float = 0.0
    # request kind -> latencies in seconds
    latencies: dict[str, list[float]] = field(default_factory=dict)
    # asset id -> the last write acknowledged for it
    acked: dict[str, Expected] = field(default_factory=dict)
    # unexpected answers: (kind, status, body head)
    failures: list[tuple[str, int, str]] = field(default_factory=list)
    retried: int = 0  # requests sent again after a 503

    @property
    def all_latencies(self) -> list[float]:
        return [s for values in self.latencies.values() for s in values]


def asset_id(client: int, slot: int) -> str:
    return f"load-{client}-{slot}"


def _body(client: int, slot: int, text: str) -> dict[str, Any]:
    return {
        "id": asset_id(client, slot),
        "name": f"load_{client}_{slot}",
        "type": "dataset",
        "description": text,
        "tags": [TAG, f"c{client}"],
        "labels": {"client": client},
    }


def _kind(rng: random.Random) -> str:
    roll = rng.random()
    for kind, share in MIX:
        if roll < share:
            return kind
        roll -= share
    return "get"


async def _client(
    number: int, http: httpx.AsyncClient, clients: int, requests: int, result: LoadResult
) -> None:
    rng = random.Random(number)
    for i in range(requests):
        kind = _kind(rng)
        text = f"client {number} request {i}"
        slot = rng.randrange(IDS_PER_CLIENT)
        items: list[dict[str, Any]] = []
        request: httpx.Request
        if kind == "put":
            own = f"{API}/assets/{asset_id(number, slot)}"
            request = http.build_request("PUT", own, json=_body(number, slot, text))
        elif kind == "delete":
            request = http.build_request("DELETE", f"{API}/assets/{asset_id(number, slot)}")
        elif kind == "bulk":
            slots = rng.sample(range(IDS_PER_CLIENT), BULK_ITEMS)
            items = [_body(number, s, f"{text} item {s}") for s in slots]
            request = http.build_request("POST", f"{API}/assets/bulk", json=items)
        elif kind == "get":
            other = rng.randrange(clients)
            request = http.build_request("GET", f"{API}/assets/{asset_id(other, slot)}")
        else:
            params = {"tag": f"c{rng.randrange(clients)}", "limit": "20"}
            request = http.build_request("GET", f"{API}/assets", params=params)
        started = time.perf_counter()
        for attempt in range(RETRIES_503 + 1):
            # 503 means "not done, retry" (a busy or unreachable database): a client that
            # wants its write to land sends it again, as Cairn's own client does.
            response = await http.send(request)
            if response.status_code != 503 or attempt == RETRIES_503:
                break
            result.retried += 1
            await asyncio.sleep(0.2 * (attempt + 1))
        result.latencies.setdefault(kind, []).append(time.perf_counter() - started)
        _record(kind, response, items, result)


def _record(
    kind: str, response: httpx.Response, items: list[dict[str, Any]], result: LoadResult
) -> None:
    status = response.status_code
    expected_status = {200, 201} | ({404} if kind in ("get", "delete") else set())
    if status not in expected_status:
        result.failures.append((kind, status, response.text[:300]))
        return
    if status == 404:
        return
    body = response.json()
    if kind in ("put", "delete"):
        result.acked[body["id"]] = Expected(body["description"], body["deleted"], body["revision"])
    elif kind == "bulk":
        for item in body["results"]:
            if item["status"] == "error":
                result.failures.append((kind, status, str(item)[:300]))
        # A bulk answer carries revisions, not content: the content is what was sent.
        for item, sent in zip(body["results"], items, strict=True):
            if item["status"] != "error":
                result.acked[item["id"]] = Expected(sent["description"], False, item["revision"])


async def run(base_url: str, clients: int, requests: int, timeout: float = 120) -> LoadResult:
    """``clients`` concurrent clients, ``requests`` requests each, on one connection each."""
    result = LoadResult(clients, clients * requests)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base_url, timeout=timeout, limits=limits) as http:
        started = time.perf_counter()
        await asyncio.gather(*(_client(n, http, clients, requests, result) for n in range(clients)))
        result.seconds = time.perf_counter() - started
    return result


def mismatches(base_url: str, result: LoadResult) -> list[str]:
    """Every acknowledged write that does not read back as acknowledged."""
    wrong = []
    with httpx.Client(base_url=base_url + API, timeout=30) as http:
        for asset, expected in sorted(result.acked.items()):
            response = http.get(f"/assets/{asset}")
            if response.status_code != 200:
                wrong.append(f"{asset}: acknowledged {expected}, read {response.status_code}")
                continue
            body = response.json()
            found = Expected(body["description"], body["deleted"], body["revision"])
            if found != expected:
                wrong.append(f"{asset}: acknowledged {expected}, read {found}")
    return wrong
