"""writes: a mixed read/write load on the catalogue, beside a bare endpoint under the same load.

64 concurrent clients on loopback (asyncio + httpx, one connection each), a fixed number of
requests per client, so the run stops by itself. The mix (``tests/mixed_load.py``, the same
load the test ``tests/test_catalogue_load.py`` runs): 30 % PUT of one asset, 5 % DELETE,
10 % bulk upserts of 5 assets, 35 % GET by id, 20 % search by tag. Each client writes only
its own 8 asset ids; afterwards every acknowledged write is read back and compared, and the
run says whether all of them matched.

Reference in the same run: a bare FastAPI endpoint (``benchmarks/bare_app.py``, one uvicorn
worker) answering a stored asset of the same size, under the same 64 clients and the same
number of requests, all GETs. Both loads share one Python client process, which saturates its
core near 500 requests/s (DESIGN 7): the bare figure shows where that ceiling is on this
machine, and the catalogue's server CPU per request is reported beside it.

There is no target for this load in DESIGN section 7; the figures are p50/p99 per kind of
request, requests/s, and the catalogue's CPU per request. Writes are durable before they are
acknowledged (SQLite ``synchronous=FULL``; MongoDB ``w=majority, j=true``), so the write
latency includes an fsync.

Run: ``python -m benchmarks.bench_writes [--quick] [--requests N] [--backend sqlite|mongo|both]``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass, field

import httpx

from benchmarks.bench_search import start_bare
from benchmarks.common import (
    BACKEND_TITLES,
    BACKENDS,
    BackendServers,
    CatalogueProcess,
    Section,
    Sizes,
    add_backend_arg,
    command_line,
    ms,
    percentile,
    table,
    write_section,
)
from tests import mixed_load

CLIENTS = 64
FULL_REQUESTS, QUICK_REQUESTS = 100, 10  # per client
TIMEOUT_S = 120  # per request: a stalled server fails the run instead of hanging it


@dataclass(slots=True)
class Figures:
    title: str
    requests: int
    seconds: float
    latencies: dict[str, list[float]] = field(default_factory=dict)
    server_cpu_s: float = 0.0
    failures: int = 0
    retried: int = 0  # requests sent again after a 503 (busy database)
    checked: int = 0
    mismatched: int = 0
    error: str | None = None

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def p(self, q: float, kind: str | None = None) -> float:
        if kind:
            values = self.latencies.get(kind, [])
        else:
            values = [s for kind_values in self.latencies.values() for s in kind_values]
        return percentile(values, q)


def catalogue_load(backend: str, servers: BackendServers, requests: int) -> tuple[Figures, bytes]:
    """The mixed load on a fresh catalogue; returns its figures and one asset's JSON."""
    mongo = servers.for_backend(backend)
    with CatalogueProcess(f"writes-{backend}", mongo) as catalogue:
        before = catalogue.cpu_seconds()
        extra_before = sum(mongo.cpu_seconds().values()) if mongo else 0.0
        result = asyncio.run(mixed_load.run(catalogue.url, CLIENTS, requests, TIMEOUT_S))
        cpu = catalogue.cpu_seconds() - before
        if mongo:
            cpu += sum(mongo.cpu_seconds().values()) - extra_before
        wrong = mixed_load.mismatches(catalogue.url, result)
        sample = next(iter(sorted(result.acked)), "load-0-0")
        body = httpx.get(f"{catalogue.url}/api/v1/assets/{sample}", timeout=30).content
    figures = Figures(
        BACKEND_TITLES[backend],
        result.requests,
        result.seconds,
        result.latencies,
        server_cpu_s=cpu,
        failures=len(result.failures),
        retried=result.retried,
        checked=len(result.acked),
        mismatched=len(wrong),
    )
    return figures, body


async def _bare_run(url: str, requests: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=url, timeout=TIMEOUT_S, limits=limits) as http:

        async def client() -> None:
            for _ in range(requests):
                started = time.perf_counter()
                response = await http.get("/bare/asset")
                latencies.append(time.perf_counter() - started)
                response.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(CLIENTS)))
        return time.perf_counter() - started, latencies


def bare_load(body: bytes, requests: int) -> Figures:
    # Started already: entering it with ``with`` started a second server, which lost the
    # port to the first and exited; its CPU was read, and the first was never stopped.
    bare = start_bare({"asset": body})
    try:
        before = bare.cpu_seconds()
        seconds, latencies = asyncio.run(_bare_run(bare.url, requests))
        cpu = bare.cpu_seconds() - before
    finally:
        bare.stop()
    title = f"bare endpoint ({len(body):,} B body, GET only)"
    return Figures(title, CLIENTS * requests, seconds, {"get": latencies}, server_cpu_s=cpu)


def write(results: list[Figures], sizes: Sizes, command: str, requests: int) -> None:
    section = Section("writes", "writes (mixed read/write load)", command, sizes)
    section.add(
        f"{CLIENTS} concurrent clients, {requests} requests each ({CLIENTS * requests:,} in all), "
        "one Python client process on loopback; mix: 30 % PUT, 5 % DELETE, 10 % bulk of 5, "
        "35 % GET by id, 20 % search by tag. No target in DESIGN section 7.",
        "",
    )
    bare = results[-1]
    rows = []
    for f in results:
        if f.error:
            rows.append([f.title, f.error, "", "", "", "", ""])
            continue
        cpu = ms(f.server_cpu_s / f.requests) if f.requests else "n/a"
        rows.append(
            [
                f.title,
                f"{f.rps:,.0f}",
                f"{f.rps / bare.rps:.2f}x" if bare.rps and f is not bare else "1.00x",
                ms(f.p(50)),
                ms(f.p(99)),
                cpu,
                "n/a"
                if f is bare
                else f"{f.checked - f.mismatched}/{f.checked}, {f.failures} failed",
            ]
        )
    section.add(
        *table(
            [
                "server",
                "requests/s",
                "vs bare",
                "p50",
                "p99",
                "server CPU / request",
                "acknowledged writes read back",
            ],
            rows,
        )
    )
    kinds = [k for k, _ in mixed_load.MIX]
    detail = []
    for f in results[:-1]:
        if f.error:
            continue
        for kind in kinds:
            if f.latencies.get(kind):
                n = len(f.latencies[kind])
                detail.append([f.title, kind, f"{n:,}", ms(f.p(50, kind)), ms(f.p(99, kind))])
    section.add(
        "Per kind of request:", "", *table(["server", "kind", "requests", "p50", "p99"], detail)
    )
    section.add(
        "Server CPU on mongo counts the catalogue, FerretDB and Elasticsearch processes. "
        "Latencies are client-side and include waiting for a free connection slot in the "
        "client; with 64 clients on 2 cores the client and the server share the CPU."
    )
    write_section(section)


def run(sizes: Sizes, command: str, requests: int) -> bool:
    results: list[Figures] = []
    body = b"{}"
    with BackendServers() as servers:
        for backend in sizes.backends:
            print(f"writes on {backend}: {CLIENTS} clients x {requests} requests ...", flush=True)
            try:
                figures, body = catalogue_load(backend, servers, requests)
            except Exception as exc:  # one backend failing still writes the other's figures
                figures = Figures(BACKEND_TITLES[backend], 0, 0.0, error=f"failed: {exc}")
            results.append(figures)
    print("bare endpoint under the same load ...", flush=True)
    results.append(bare_load(body, requests))
    write(results, sizes, command, requests)
    return all(f.error is None and f.mismatched == 0 and f.failures == 0 for f in results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help=f"{QUICK_REQUESTS} requests per client"
    )
    parser.add_argument(
        "--requests", type=int, help=f"requests per client (default {FULL_REQUESTS})"
    )
    add_backend_arg(parser)
    args = parser.parse_args(argv)
    requests = args.requests or (QUICK_REQUESTS if args.quick else FULL_REQUESTS)
    backends = BACKENDS if args.backend == "both" else (args.backend,)
    sizes = Sizes(files=0, manifests=0, assets=0, quick=bool(args.quick), backends=backends)
    ok = run(sizes, command_line("benchmarks.bench_writes", argv), requests)
    print(f"writes benchmark written to benchmarks/RESULTS.md; every write read back: {ok}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
