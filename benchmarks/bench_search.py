"""search, search-broad and footprint (DESIGN section 7), on a catalogue holding N assets,
on each catalogue backend side by side in one run.

search: three kinds of selective query over HTTP, each with the API's defaults (``limit=20``,
``facets=true``), the query values varied from request to request:

- name-prefix: ``name=<domain>_<entity>_`` (about 0.1 % of assets each);
- tag: ``tag=<t>`` cycling over every tag in use (Zipf-like: a few tags are on a large share of
  the assets, most on few);
- text: ``q=<code word>`` (about 0.1 % each; the run checks that none matches more than 1 %).

search-typo: ``q=<code word with two neighbouring letters swapped>``, which matches nothing,
so each request pays the typo fallback (``catalogue_service/spelling``): the search as typed,
a spelling lookup, then the corrected search. It runs through the same loops as the other
kinds and is reported beside "text" (the same words spelt right), as a ratio from the same run.
Its 500 values need twice as many kept answers (as typed, corrected) as the embedded store
keeps, so that wrk run pays every step; one more wrk run, "typo asked again", cycles over
``TYPO_AGAIN`` of them, whose answers and spelling lookups the store keeps until a write.

The embedded catalogue keeps each filter's total and facets until the next write (up to
``COUNT_CACHE_SIZE`` filters), and each search's whole answer too (``PageCache``, as many; the
mongo backend keeps whole answers the same way, under ``IndexGeneration``), and each kind's
values are asked once (untimed) just before its wrk run, so the 16-connection figures above are
for repeated queries. Two more wrk runs per targeted kind on each backend show the rest:
"answers not kept", against a second catalogue on the same store started with
``CAIRN_SEARCH_CACHE_MIB=0`` (sqlite: counts kept, every page searched; mongo: every request
sent to Elasticsearch), and "cold", the miss-only
figure: name-prefix and text cycle over more distinct values, never asked before, than either
cache holds, so every request searches and counts afresh; tag (200 tags in use, fewer than the
caches hold) runs while another client rewrites an asset over and over, each write dropping
what was kept.

Latency at 1 connection is a sequential httpx loop (p50/p99 over the requests, client time
included). Requests/s at 16 connections uses ``wrk -t2 -c16`` with a Lua script cycling over
the same query values, against the catalogue and then against a bare FastAPI endpoint
(``benchmarks/bare_app.py``, one uvicorn worker) answering a stored search response of the
same kind (each backend's own). Targets: p99 <= 25 ms at 1 connection; rps >= 0.4x bare.

Where the CPU goes (sqlite): the same bodies served by uvicorn with a plain ASGI callable and no
FastAPI (``create_plain_app``: uvicorn's and the kernel's share of any request), and the SQL the
store runs for each kind's values with their counts cached, replayed through a plain
``sqlite3`` connection and timed with the thread's CPU clock (raw SQLite's share), beside the
catalogue that keeps no answers (which runs those statements for every request). Beside the
budget 0.4x of the bare endpoint allows (its CPU per request / 0.4), they show what no Python
in between can win back.

Backends: ``sqlite`` (embedded) and ``mongo`` (MongoDB + Elasticsearch; FerretDB stands in
for MongoDB here). Each gets a fresh catalogue loaded with the same assets. On ``mongo`` the
same query bodies are also sent straight to Elasticsearch (the engine's share of a search),
and Elasticsearch's CPU per request is read during the wrk runs.

search-broad (sqlite only): text matching >= 30 % of the assets, with facets, p50 over HTTP
against the same SQL statements run straight through sqlite3 on the same database file. The
statements are the ones the catalogue's SQLite store executes for that query, recorded by
running the store's search in this process with a recording connection. Target <= 1.5x the
raw engine.

footprint: the sqlite catalogue's VmHWM after the ingest and after the search benchmarks.

Run alone (it loads the assets first):
``python -m benchmarks.bench_search [--quick] [--assets N] [--backend sqlite|mongo|both]``.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson

from benchmarks import bench_ingest
from benchmarks.common import (
    BACKEND_TITLES,
    PYTHON,
    WORK_DIR,
    BackendServers,
    Budget,
    CatalogueProcess,
    MongoServers,
    OtherLoad,
    Section,
    Server,
    Sizes,
    bench_env,
    free_port,
    fresh_dir,
    median,
    ms,
    parse_sizes,
    percentile,
    process_cpu_seconds,
    table,
    verdict,
    write_section,
)
from benchmarks.gen_tree import BROAD_WORDS, make_assets
from cairn.sqlite import READER_CACHE_KIB, UPKEEP_QUIET_S
from catalogue_service.backends.page_cache import ANSWERS
from catalogue_service.backends.sqlite import COUNT_CACHE_SIZE

KINDS = ("name-prefix", "tag", "text", "typo")
# The kinds DESIGN section 7 sets targets for; "typo" is measured against "text" instead.
TARGETED = ("name-prefix", "tag", "text")
SEARCH_PATH = "/api/v1/assets"
WRK_THREADS, WRK_CONNECTIONS = 2, 16
BROAD_QUERIES = ("daily", "weekly")  # 45 % and 35 % of the assets (benchmarks/gen_tree.py)
# Searches whose counts or whole answers the embedded catalogue keeps, at most.
KEPT = max(COUNT_CACHE_SIZE, ANSWERS)
COLD_VALUES = 4 * KEPT
# Typo values of the "asked again" run: each keeps two answers and a spelling lookup.
TYPO_AGAIN = ANSWERS // 4
BUMP_SECONDS = 0.02  # the tag kind's cold run: 50 writes/s, one per ~100 requests or fewer
LOOP_SECONDS = 120  # per kind: stops a slow server from stretching the run without bound
# Searches each catalogue answers before the first timed one, with values no timed run asks.
# Elasticsearch's JIT compiles its search code over its first few thousand queries: in a probe
# at 100,000 assets, straight to Elasticsearch, 300 first-asked name prefixes took p99 25-33 ms
# right after its start (10-17 ms for the next 300, on another index), and 6-9 ms once 3,000
# other searches had run, whatever the mapping (`benchmarks/probe_es_search.py`).
# Without these, the first kind timed (name-prefix) pays for the server's start; they are timed
# too, and reported beside the rest.
SERVER_WARMUP = 2_000
# Filters together (the UI's facet links add a type, tag or label to a tag; the API and
# `cairn assets search` take a name prefix with any): each value asked once, so each is a first
# ask (nothing kept), timed as the kinds are at 1 connection.
COMBINED = (
    "name + type",
    "name + tag",
    "name + label",
    "name + owner",
    "tag + type",
    "tag + label",
)
COMBINED_VALUES = 100


@dataclass(slots=True)
class Loops:
    latency_requests: int
    warmup_requests: int
    wrk_seconds: int
    broad_runs: int
    server_warmup: int

    @classmethod
    def for_sizes(cls, sizes: Sizes) -> Loops:
        if sizes.quick:
            return cls(100, 10, 3, 15, server_warmup=40)
        return cls(500, 30, 10, 50, server_warmup=SERVER_WARMUP)


@dataclass(slots=True)
class Latency:
    seconds: list[float] = field(default_factory=list)
    body_sizes: list[int] = field(default_factory=list)
    totals: list[int] = field(default_factory=list)
    typical_body: bytes = b""
    errors: int = 0
    took_ms: list[float] = field(default_factory=list)  # Elasticsearch's own, when straight to it

    def p(self, q: float) -> float:
        return percentile(self.seconds, q)


@dataclass(slots=True)
class WrkFigures:
    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p99_ms: float
    server_cpu_s: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def cpu_ms_per_request(self) -> float:
        return self.server_cpu_s * 1000 / self.requests if self.requests else 0.0


@dataclass(slots=True)
class Broad:
    word: str
    total: int
    http_s: list[float]  # cold: a write just before each request dropped the cached counts
    raw_s: list[float]
    statements: int
    warm_s: list[float]  # the same request again, counts served from the cache

    @property
    def ratio(self) -> float:
        return median(self.http_s) / median(self.raw_s)


# --- query values --------------------------------------------------------------------------------


def query_values(assets: list[dict[str, Any]], count: int, seed: int = 11) -> dict[str, list[str]]:
    """Query strings per kind, ``count`` of each, drawn from the loaded assets."""
    rng = random.Random(seed)
    sample = [assets[rng.randrange(len(assets))] for _ in range(count)]
    prefixes = [a["name"].rsplit("_", 1)[0] + "_" for a in sample]
    codes = [a["description"].split()[-1].rstrip(".") for a in sample]
    tags_in_use = sorted({t for a in assets for t in a["tags"]})
    rng.shuffle(tags_in_use)
    tags = [tags_in_use[i % len(tags_in_use)] for i in range(count)]
    return {
        "name-prefix": [_path(name=p) for p in prefixes],
        "tag": [_path(tag=t) for t in tags],
        "text": [_path(q=c) for c in codes],
        "typo": [_path(q=misspell(c, rng, set(codes))) for c in codes],
    }


def warmup_values(
    assets: list[dict[str, Any]], timed: dict[str, list[str]], count: int, seed: int = 41
) -> list[str]:
    """``count`` searches no timed run asks: name prefixes and words outside ``timed``'s, alone
    and with each type filter, shuffled (so neither answers kept nor counts serve them)."""
    rng = random.Random(seed)
    drawn = query_values(assets, count, seed=seed)
    asked = set(timed["name-prefix"]) | set(timed["text"])
    bases = [p for p in dict.fromkeys(drawn["name-prefix"] + drawn["text"]) if p not in asked]
    types = sorted({a["type"] for a in assets})
    paths = [base + suffix for base in bases for suffix in ["", *(f"&type={t}" for t in types)]]
    rng.shuffle(paths)
    return paths[:count]


def combined_values(
    assets: list[dict[str, Any]], count: int, asked: set[str], seed: int = 53
) -> dict[str, list[str]]:
    """Up to ``count`` paths per COMBINED combination, none in ``asked`` nor repeated, each
    from one asset's own values (so most match; a popular tag, label or type often)."""
    rng = random.Random(seed)
    out: dict[str, list[str]] = {k: [] for k in COMBINED}
    for _ in range(count * 3):
        a = assets[rng.randrange(len(assets))]
        prefix = a["name"].rsplit("_", 1)[0] + "_"
        zone = f"zone:{a['labels']['zone']}"  # a third of the assets each
        tag = a["tags"][0]
        paths = {
            "name + type": _path(name=prefix, type=a["type"]),
            "name + tag": _path(name=prefix, tag=tag),
            "name + label": _path(name=prefix, label=zone),
            "name + owner": _path(name=prefix, owner=a["owners"][0]),
            "tag + type": _path(tag=tag, type=a["type"]),
            "tag + label": _path(tag=tag, label=zone),
        }
        for k, path in paths.items():
            if len(out[k]) < count and path not in asked:
                out[k].append(path)
                asked.add(path)
    return out


def misspell(word: str, rng: random.Random, taken: set[str]) -> str:
    """``word`` with two neighbouring letters swapped (the commonest typo), never another
    query word; the first letter stays, as people rarely get it wrong."""
    for _ in range(20):
        i = rng.randrange(1, len(word) - 1)
        typo = word[:i] + word[i + 1] + word[i] + word[i + 2 :]
        if typo != word and typo not in taken:
            return typo
    raise ValueError(f"no typo of {word!r} differs from every query word")


def _path(**params: str) -> str:
    return f"{SEARCH_PATH}?{urlencode(params)}"


# --- 1 connection --------------------------------------------------------------------------------


def latency(
    base_url: str,
    paths: Sequence[str],
    warmup: int,
    between: Callable[[int, bool], None] | None = None,
) -> Latency:
    """Sequential GETs of ``paths``; ``between(i, warming)``, when given, runs after each
    request, outside its time (the mongo run interleaves Elasticsearch's own there)."""
    out = Latency()
    with httpx.Client(base_url=base_url, timeout=30) as client:
        # Warm-up values come from the end of the list, so timed requests are not all repeats.
        for i in range(max(0, len(paths) - warmup), len(paths)):
            client.get(paths[i])
            if between is not None:
                between(i, True)
        budget = Budget(len(paths), LOOP_SECONDS)
        bodies: list[bytes] = []
        while budget.more():
            i = budget.done - 1
            t0 = time.perf_counter()
            response = client.get(paths[i])
            elapsed = time.perf_counter() - t0
            if between is not None:
                between(i, False)
            if response.status_code != 200:
                out.errors += 1
                continue
            out.seconds.append(elapsed)
            out.body_sizes.append(len(response.content))
            out.totals.append(response.json()["total"])
            bodies.append(response.content)
    if bodies:
        mean = sum(out.body_sizes) / len(out.body_sizes)
        out.typical_body = min(bodies, key=lambda b: abs(len(b) - mean))
    return out


class EsDirect:
    """The catalogue's own Elasticsearch request bodies for ``paths`` (its query-string parser
    and ``build_search``), posted straight to the index by a sequential httpx client: the
    engine's share of a search. Called between the catalogue's requests, so both sides run
    under the same load and the same warm-up. ``seconds`` is the client's time per request,
    ``took_ms`` Elasticsearch's own."""

    def __init__(self, es_url: str, alias: str, paths: Sequence[str]) -> None:
        from urllib.parse import urlsplit

        from starlette.datastructures import QueryParams

        from catalogue_service.api.search_params import parse_search
        from catalogue_service.backends.es_index import build_search

        self.bodies = []
        for path in paths:
            body = build_search(parse_search(QueryParams(urlsplit(path).query)))
            if body is None:
                raise RuntimeError(f"{path} makes no Elasticsearch query")
            self.bodies.append(orjson.dumps(body))
        self.url = f"{es_url}/{alias}/_search"
        self.client = httpx.Client(timeout=30, headers={"content-type": "application/json"})
        self.out = Latency()

    def __call__(self, i: int, warming: bool) -> None:
        t0 = time.perf_counter()
        response = self.client.post(self.url, content=self.bodies[i])
        elapsed = time.perf_counter() - t0
        if warming:
            return
        if response.status_code != 200:
            self.out.errors += 1
            return
        answer = response.json()
        self.out.seconds.append(elapsed)
        self.out.took_ms.append(float(answer["took"]))
        self.out.totals.append(int(answer["hits"]["total"]["value"]))

    def close(self) -> None:
        self.client.close()


# --- 16 connections (wrk) ------------------------------------------------------------------------

# What every wrk script ends with: the run's summary as one WRKJSON line that run_wrk reads.
WRK_DONE = """\
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %%.0f, "duration_us": %%.0f, "errors": %%.0f, "p50_us": %%.0f, '
    .. '"p99_us": %%.0f}\\n',
    summary.requests, summary.duration,
    e.connect + e.read + e.write + e.timeout + e.status,
    latency:percentile(50), latency:percentile(99)))
end
"""

_LUA = (
    """\
local paths = {%(paths)s}
local n = #paths
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("offset", threads * 7919)
end
local i = 0
function init(args)
  i = offset or 0
end
function request()
  i = i + 1
  return wrk.format("GET", paths[(i %% n) + 1])
end
"""
    + WRK_DONE
)


def ensure_wrk() -> str:
    """Path of wrk, installing the Debian package when it is missing (the brief allows root)."""
    found = shutil.which("wrk")
    if found:
        return found
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update"], check=True, timeout=600, env=env)
    subprocess.run(["apt-get", "install", "-y", "wrk"], check=True, timeout=600, env=env)
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError("wrk is still missing after `apt-get install -y wrk`")
    return found


def wrk(server: Server, paths: Sequence[str], seconds: int, name: str) -> WrkFigures:
    # Paths are urlencoded, so they hold no quote or backslash to escape for Lua.
    script = _LUA % {"paths": ", ".join(f'"{p}"' for p in paths)}
    return run_wrk(server, script, seconds, name)


def run_wrk(
    server: Server,
    script_text: str,
    seconds: int,
    name: str,
    url: str | None = None,
    connections: int = WRK_CONNECTIONS,
) -> WrkFigures:
    """Runs wrk with a Lua script that prints a WRKJSON summary; counts the server's CPU."""
    script = WORK_DIR / "wrk" / f"{name}.lua"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(script_text)
    argv = [
        ensure_wrk(),
        f"-t{min(WRK_THREADS, connections)}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        url or server.url,
    ]
    cpu_before = server.cpu_seconds()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=True)
    cpu = server.cpu_seconds() - cpu_before
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{proc.stdout}\n{proc.stderr}")
    data = json.loads(line.removeprefix("WRKJSON "))
    return WrkFigures(
        requests=int(data["requests"]),
        seconds=data["duration_us"] / 1e6,
        errors=int(data["errors"]),
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        server_cpu_s=cpu,
    )


def wrk_references(
    figures: SearchFigures, kinds: Sequence[str], reference: str, backend: str, loops: Loops
) -> dict[str, WrkFigures]:
    """wrk against a reference server (``bare``: FastAPI; ``plain``: a plain ASGI callable)
    answering each kind's typical Cairn body."""
    factory = "create_app" if reference == "bare" else "create_plain_app"
    server = start_bare({k: figures.lat[k].typical_body for k in kinds}, factory)
    try:
        return {
            k: wrk(server, [f"/{reference}/{k}"], loops.wrk_seconds, f"{reference}-{backend}-{k}")
            for k in kinds
        }
    finally:
        server.stop()


def start_bare(bodies: dict[str, bytes], factory: str = "create_app") -> Server:
    """The bare FastAPI reference (``create_app``), or uvicorn with a plain ASGI callable
    (``create_plain_app``), answering ``bodies``."""
    folder = fresh_dir(WORK_DIR / f"bare-bodies-{factory}")
    for kind, body in bodies.items():
        (folder / f"{kind}.json").write_bytes(body)
    port = free_port()
    argv = [
        PYTHON,
        "-m",
        "uvicorn",
        f"benchmarks.bare_app:{factory}",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    env = bench_env(BENCH_BARE_BODIES=str(folder))
    return Server(f"bare-{factory}", argv, port, env).start()


def answers_not_kept(catalogue: CatalogueProcess) -> Server:
    """A second catalogue on ``catalogue``'s store that keeps no whole search answers
    (``CAIRN_SEARCH_CACHE_MIB=0``): each request runs the store's statements (sqlite, counts
    kept) or goes to Elasticsearch (mongo)."""
    port = free_port()
    argv = [*catalogue.argv[:-1], str(port)]  # the port is the last argument
    env = dict(catalogue.env, CAIRN_SEARCH_CACHE_MIB="0")
    return Server(f"{catalogue.name}-answers-not-kept", argv, port, env).start()


def es_settled(es_url: str, alias: str, timeout: float = 120) -> None:
    """Returns once Elasticsearch has merged the load's segments (none merging for 2 s):
    searched as the index stays after a load, as sqlite is after its own merge."""
    deadline = time.monotonic() + timeout
    quiet = 0
    while quiet < 4 and time.monotonic() < deadline:
        stats = httpx.get(f"{es_url}/{alias}/_stats/merge", timeout=30).json()
        merging = stats["_all"]["total"]["merges"]["current"]
        quiet = quiet + 1 if merging == 0 else 0
        time.sleep(0.5)


def wrk_kinds(
    server: Server,
    values: dict[str, list[str]],
    kinds: Sequence[str],
    seconds: int,
    name: str,
    es_pid: int | None,
) -> tuple[dict[str, WrkFigures], dict[str, float]]:
    """A wrk run per kind, its values asked once just before; with ``es_pid``, also
    Elasticsearch's CPU seconds over each run."""
    runs: dict[str, WrkFigures] = {}
    es_cpu: dict[str, float] = {}
    for k in kinds:
        warm(server.url, values[k])
        before = process_cpu_seconds(es_pid) if es_pid is not None else 0.0
        runs[k] = wrk(server, values[k], seconds, f"{name}-{k}")
        if es_pid is not None:
            es_cpu[k] = process_cpu_seconds(es_pid) - before
    return runs, es_cpu


def warm(base_url: str, paths: Sequence[str]) -> None:
    """Asks each of ``paths`` once, untimed: the count cache holds fewer filters than all the
    kinds ask together, so each kind's wrk run starts with its own values asked."""
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for path in dict.fromkeys(paths):
            client.get(path)


class Bumper:
    """A thread that rewrites one asset every ``BUMP_SECONDS`` while it is entered."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.writes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=30) as client:
            while not self._stop.wait(BUMP_SECONDS):
                bump = {"name": "bench_bump", "type": "dataset", "description": str(self.writes)}
                client.put("/api/v1/assets/bench-bump", json=bump).raise_for_status()
                self.writes += 1

    def __enter__(self) -> Bumper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# --- search-broad --------------------------------------------------------------------------------


class _RecordingConnection:
    """Stands in for the store's reader connection and notes every statement it runs."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.calls: list[tuple[str, list[Any]]] = []

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        self.calls.append((sql, list(params)))
        return self.conn.execute(sql, params)


@contextlib.contextmanager
def searching_store(db_path: Path) -> Iterator[Any]:
    """A ``SQLiteStore`` on the catalogue's file that can run ``_search_sync`` on a connection
    given to it: only its write-generation probe (``_generation``, the counts cache's key) is
    opened, read-only, beside the running catalogue; nothing is written."""
    from catalogue_service.backends.sqlite import SQLiteStore

    store = SQLiteStore(db_path)
    store._probe = store.db.new_reader()
    try:
        yield store
    finally:
        store.db.close()


def service_statements(db_path: Path, word: str) -> list[tuple[str, list[Any]]]:
    """The SQL the catalogue runs for ``GET /api/v1/assets?q=<word>`` (limit 20, facets on).

    Recorded from the store's own search code, so the raw reference cannot drift from what
    the service does. It leans on ``SQLiteStore._search_sync(conn, query)``, a private name;
    if it changes, this fails loudly rather than timing a different query.
    """
    from catalogue_service.backends.base import SearchQuery

    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        recorder = _RecordingConnection(conn)
        with searching_store(db_path) as store:
            store._search_sync(recorder, SearchQuery(q=word, limit=20, facets=True))
    finally:
        conn.close()
    return recorder.calls


def raw_connection(db_path: Path) -> sqlite3.Connection:
    # The same settings the catalogue gives its reader connections (cairn/sqlite.py).
    conn = sqlite3.connect(db_path, isolation_level=None)
    for pragma in (
        "journal_mode=WAL",
        "busy_timeout=10000",
        f"cache_size=-{READER_CACHE_KIB}",
        "temp_store=MEMORY",
        "query_only=1",
    ):
        conn.execute(f"PRAGMA {pragma}")
    return conn


def page_statements(
    db_path: Path, conn: sqlite3.Connection, queries: Sequence[Any]
) -> list[tuple[str, list[Any]]]:
    """The statements ``_search_sync`` runs on ``conn`` for each of ``queries`` (SearchQuery)
    with its counts cached, as the catalogue's are after one ask: the page alone."""
    recorder = _RecordingConnection(conn)
    with searching_store(db_path) as store:
        for query in queries:  # counts into this store's cache
            store._search_sync(conn, query)
        for query in queries:
            store._search_sync(recorder, query)
    return recorder.calls


def engine_cpu_ms(db_path: Path, paths: Sequence[str], rounds: int = 3) -> float:
    """Raw SQLite's CPU per request for ``paths``, counts cached: the statements the store's
    ``_search_sync`` runs for each (recorded as in ``service_statements``; with the counts
    cached that is the page alone), replayed through a plain ``sqlite3`` connection and timed
    with this thread's CPU clock. What no HTTP layer in front of SQLite can go below."""
    from urllib.parse import urlsplit

    from starlette.datastructures import QueryParams

    from catalogue_service.api.search_params import parse_search

    conn = raw_connection(db_path)
    try:
        queries = [parse_search(QueryParams(urlsplit(p).query)) for p in paths]
        calls = page_statements(db_path, conn, queries)
        for sql, params in calls:  # warm the page cache
            conn.execute(sql, params).fetchall()
        start = time.thread_time()
        for _ in range(rounds):
            for sql, params in calls:
                conn.execute(sql, params).fetchall()
        return (time.thread_time() - start) * 1000 / (rounds * len(queries))
    finally:
        conn.close()


def broad(catalogue: CatalogueProcess, word: str, runs: int) -> Broad:
    statements = service_statements(catalogue.db_path, word)
    conn = raw_connection(catalogue.db_path)
    path = _path(q=word)
    http_s: list[float] = []
    warm_s: list[float] = []
    raw_s: list[float] = []
    total = -1
    try:
        with httpx.Client(base_url=catalogue.url, timeout=60) as client:
            for _ in range(3):  # warm both sides: page cache, SQLite cache, code paths
                total = client.get(path).json()["total"]
                for sql, params in statements:
                    conn.execute(sql, params).fetchall()
            # Alternating keeps both sides under the same background load.
            budget = Budget(runs, LOOP_SECONDS)
            while budget.more():
                # An untimed write first: the catalogue caches counts until the next write,
                # and the comparison with raw SQLite must time the counting, not the cache.
                bump = {"name": "bench_bump", "type": "dataset", "description": str(len(http_s))}
                client.put("/api/v1/assets/bench-bump", json=bump).raise_for_status()
                t0 = time.perf_counter()
                response = client.get(path)
                http_s.append(time.perf_counter() - t0)
                response.raise_for_status()
                t0 = time.perf_counter()
                client.get(path).raise_for_status()
                warm_s.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                for sql, params in statements:
                    conn.execute(sql, params).fetchall()
                raw_s.append(time.perf_counter() - t0)
    finally:
        conn.close()
    return Broad(word, total, http_s, raw_s, len(statements), warm_s)


# --- the run -------------------------------------------------------------------------------------


@dataclass(slots=True)
class SearchFigures:
    """One backend's search figures (the catalogue loaded with ``n`` assets)."""

    backend: str
    n: int
    lat: dict[str, Latency] = field(default_factory=dict)
    first: Latency | None = None  # the server warm-up's searches, in the order asked
    combined: dict[str, Latency] = field(default_factory=dict)  # COMBINED, first asks
    cairn_wrk: dict[str, WrkFigures] = field(default_factory=dict)
    cold_wrk: dict[str, WrkFigures] = field(default_factory=dict)  # counts never cached
    typo_again_wrk: WrkFigures | None = None  # TYPO_AGAIN typo values, asked again
    # A catalogue keeping no whole answers (CAIRN_SEARCH_CACHE_MIB=0); sqlite: counts cached
    unkept_wrk: dict[str, WrkFigures] = field(default_factory=dict)
    unkept_es_cpu_s: dict[str, float] = field(default_factory=dict)  # mongo: ES CPU, unkept
    cold_writes: dict[str, int] = field(default_factory=dict)  # writes made during a cold run
    tags_in_use: int = 0
    bare_wrk: dict[str, WrkFigures] = field(default_factory=dict)
    plain_wrk: dict[str, WrkFigures] = field(default_factory=dict)  # sqlite: uvicorn alone
    engine_ms: dict[str, float] = field(default_factory=dict)  # sqlite: raw SQLite per request
    es: dict[str, Latency] = field(default_factory=dict)  # mongo: straight to Elasticsearch
    unkept_lat: dict[str, Latency] = field(default_factory=dict)  # mongo: beside ``es``
    es_cpu_s: dict[str, float] = field(default_factory=dict)  # mongo: ES CPU over each wrk run
    broads: list[Broad] = field(default_factory=list)  # sqlite only
    after_ingest_kb: dict[str, int] = field(default_factory=dict)
    after_search_kb: dict[str, int] = field(default_factory=dict)
    store_memory_kb: dict[str, dict[str, int]] = field(default_factory=dict)
    other_cores: float = 0.0  # CPU of processes outside this benchmark, averaged
    note: str | None = None
    error: str | None = None

    def ok(self, kind: str) -> bool | None:
        if kind not in TARGETED:
            return None
        la, cw = self.lat[kind], self.cairn_wrk[kind]
        worst_share = max(la.totals, default=0) / self.n
        return (
            la.errors == 0
            and cw.errors == 0
            and la.p(99) * 1000 <= 25
            and self.ratio(kind) >= 0.4
            and (kind != "text" or worst_share <= 0.01)
        )

    def ratio(self, kind: str) -> float:
        bare = self.bare_wrk[kind].rps
        return self.cairn_wrk[kind].rps / bare if bare else 0.0

    def es_cpu_ms(self, kind: str, kept: bool = True) -> float:
        """Elasticsearch's CPU per request of the wrk run with answers kept, or not kept."""
        requests = (self.cairn_wrk if kept else self.unkept_wrk)[kind].requests
        cpu = (self.es_cpu_s if kept else self.unkept_es_cpu_s)[kind]
        return cpu * 1000 / requests if requests else 0.0

    @property
    def complete(self) -> bool:
        return self.error is None and all(k in self.bare_wrk for k in KINDS)


def measure(
    catalogue: CatalogueProcess,
    assets: list[dict[str, Any]],
    sizes: Sizes,
    servers: MongoServers | None = None,
    after_ingest_kb: dict[str, int] | None = None,
) -> SearchFigures:
    """search (and search-broad on sqlite) on a catalogue loaded with ``assets``."""
    if catalogue.backend == "sqlite":
        # Once writes pause, the catalogue merges the load's FTS segments in the background
        # (cairn/sqlite.py, _Upkeep; under a second at 100k): searched as it stays after a
        # load, with that work left out of the figures below, as it is the load's.
        time.sleep(UPKEEP_QUIET_S + 3)
    if servers is not None:
        es_settled(servers.es.url, catalogue.mongo_env["CAIRN_ES_INDEX"])
    loops = Loops.for_sizes(sizes)
    figures = SearchFigures(catalogue.backend, len(assets), after_ingest_kb=after_ingest_kb or {})
    other = OtherLoad()
    servers_before = catalogue.cpu_seconds() + (
        sum(servers.cpu_seconds().values()) if servers is not None else 0.0
    )
    values = query_values(assets, loops.latency_requests)
    warmups = warmup_values(assets, values, loops.server_warmup)
    figures.first = latency(catalogue.url, warmups, warmup=0)
    for k in KINDS:
        figures.lat[k] = latency(catalogue.url, values[k], loops.warmup_requests)
    asked = {path for paths in values.values() for path in paths} | set(warmups)
    count = COMBINED_VALUES if not sizes.quick else COMBINED_VALUES // 5
    for k, paths in combined_values(assets, count, asked).items():
        figures.combined[k] = latency(catalogue.url, paths, warmup=0)
    es_pid = servers.es_pid if servers is not None else None
    figures.cairn_wrk, figures.es_cpu_s = wrk_kinds(
        catalogue, values, KINDS, loops.wrk_seconds, f"cairn-{catalogue.backend}", es_pid
    )
    again = values["typo"][:TYPO_AGAIN]
    warm(catalogue.url, again)
    figures.typo_again_wrk = wrk(
        catalogue, again, loops.wrk_seconds, f"cairn-{catalogue.backend}-typo-again"
    )
    fresh = query_values(assets, COLD_VALUES, seed=23)
    for k in TARGETED:
        name = f"cairn-{catalogue.backend}-{k}-cold"
        distinct = list(dict.fromkeys(fresh[k]))
        if k == "tag":
            figures.tags_in_use = len(distinct)
        if len(distinct) > KEPT:
            # More distinct values than the caches hold, cycled in order: their
            # least-recently-used entry is always the next one asked, so nothing hits.
            figures.cold_wrk[k] = wrk(catalogue, distinct, loops.wrk_seconds, name)
        elif servers is not None:
            # A single-asset rewrite on FerretDB at 100k assets takes seconds (its lookup of
            # the asset, `_id $in`, is not pushed down: the ingest section), too few to drop
            # what was kept;
            # the mongo catalogue keeps no counts, so "answers not kept" is its cold figure.
            continue
        else:
            # Too few values (every tag in use): a write every BUMP_SECONDS drops the
            # cached counts, more often than any one value comes round again.
            with Bumper(catalogue.url) as bumper:
                figures.cold_wrk[k] = wrk(catalogue, distinct, loops.wrk_seconds, name)
            figures.cold_writes[k] = bumper.writes
    unkept = answers_not_kept(catalogue)
    try:
        if servers is not None:
            # Where a search's time goes: each request against the catalogue that keeps no
            # answers (so every one reaches Elasticsearch), then the same body straight to ES.
            for k in KINDS:
                index = catalogue.mongo_env["CAIRN_ES_INDEX"]
                direct = EsDirect(servers.es.url, index, values[k])
                try:
                    figures.unkept_lat[k] = latency(
                        unkept.url, values[k], loops.warmup_requests, direct
                    )
                finally:
                    direct.close()
                figures.es[k] = direct.out
        name = f"cairn-{catalogue.backend}-answers-not-kept"
        figures.unkept_wrk, figures.unkept_es_cpu_s = wrk_kinds(
            unkept, values, TARGETED, loops.wrk_seconds, name, es_pid
        )
        unkept_cpu_s = unkept.cpu_seconds()
    finally:
        unkept.stop()
    figures.bare_wrk = wrk_references(figures, KINDS, "bare", catalogue.backend, loops)
    if catalogue.backend == "sqlite":
        figures.plain_wrk = wrk_references(figures, TARGETED, "plain", catalogue.backend, loops)
        for k in TARGETED:
            figures.engine_ms[k] = engine_cpu_ms(catalogue.db_path, values[k])
        figures.broads = [broad(catalogue, w, loops.broad_runs) for w in BROAD_QUERIES]
    figures.after_search_kb = catalogue.memory_kb()
    servers_after = catalogue.cpu_seconds() + unkept_cpu_s
    if servers is not None:
        figures.store_memory_kb = servers.memory_kb()
        servers_after += sum(servers.cpu_seconds().values())
    figures.other_cores = other.cores(servers_after - servers_before)
    return figures


def search_loaded(
    catalogue: CatalogueProcess | None,
    loaded: bench_ingest.IngestFigures,
    assets: list[dict[str, Any]],
    sizes: Sizes,
    servers: BackendServers,
) -> SearchFigures:
    """Searches a catalogue that ``bench_ingest.measure`` loaded; when the ingest stopped
    early (its time budget, a failed batch), on the assets it holds, and the section says so."""
    backend = loaded.backend
    if catalogue is None or loaded.assets == 0 or loaded.failed or loaded.created != loaded.assets:
        return SearchFigures(backend, loaded.assets, error=f"loading failed: {loaded.error}")
    held = assets[: loaded.assets]
    try:
        figures = measure(catalogue, held, sizes, servers.for_backend(backend), loaded.memory_kb)
    except Exception as exc:
        return SearchFigures(backend, loaded.assets, error=f"{type(exc).__name__}: {exc}")
    if not loaded.complete:
        figures.note = (
            f"the ingest stopped at {loaded.assets:,} of {loaded.planned:,} assets "
            f"({loaded.error}), so this backend was searched at that size"
        )
    return figures


def _split_by_share(la: Latency, n: int, title: str) -> str:
    """Tag queries split by how much they match: facets over a popular tag cost the most."""
    narrow = [t for t, total in zip(la.seconds, la.totals, strict=True) if total <= n / 100]
    wide = [t for t, total in zip(la.seconds, la.totals, strict=True) if total > n / 100]

    def fmt(values: list[float]) -> str:
        if not values:
            return "none"
        return f"{len(values)} requests, p50 {ms(median(values))}, p99 {ms(percentile(values, 99))}"

    return (
        f"- {title}: tag queries at 1 conn matching <= 1 % of assets: {fmt(narrow)}; matching "
        f"more (popular tags, facets counted over every match): {fmt(wide)}."
    )


def _server_warmup(results: dict[str, SearchFigures], loops: Loops) -> list[str]:
    """The searches each catalogue answered before the timed ones, and what they took."""
    parts = []
    for backend, f in results.items():
        if f.first is None or not f.first.seconds:
            continue
        head = f.first.seconds[: loops.latency_requests]
        tail = f.first.seconds[-loops.latency_requests :]
        parts.append(
            f"{BACKEND_TITLES[backend]}: {len(f.first.seconds):,} searches ({f.first.errors} "
            f"failed), the first {len(head)} p50 / p99 {_ms(head, 50)} / {_ms(head, 99)} ms, "
            f"the last {len(tail)} {_ms(tail, 50)} / {_ms(tail, 99)} ms"
        )
    if not parts:
        return []
    return [
        f"- Before any timed request, each catalogue answered {loops.server_warmup:,} searches "
        "no timed run asks (name prefixes and words outside the timed values, each alone and "
        "with each type filter): Elasticsearch's JIT compiles its search code over its first "
        "few thousand queries, and the first kind timed would otherwise pay for the server's "
        "start. Those searches, timed the same way: " + "; ".join(parts) + "."
    ]


def _combined_lines(results: dict[str, SearchFigures]) -> list[str]:
    measured = {b: f for b, f in results.items() if f.complete and f.combined}
    titles = [BACKEND_TITLES[b] for b in measured]
    lines = [
        "### filters together (first asks)",
        "",
        "| filters | "
        + " | ".join(f"{t}: requests, p50 / p99 at 1 conn" for t in titles)
        + " | matches min / median / max |",
        "|---|" + "---|" * (len(titles) + 1),
    ]
    for k in COMBINED:
        cells = []
        totals: list[int] = []
        for f in measured.values():
            la = f.combined.get(k)
            if la is None or not la.seconds:
                cells.append("-")
                continue
            cells.append(
                f"{len(la.seconds)} ({la.errors} failed), {_ms(la.seconds, 50)} / "
                f"{_ms(la.seconds, 99)} ms"
            )
            totals = totals or sorted(la.totals)
        spread = f"{totals[0]:,} / {totals[len(totals) // 2]:,} / {totals[-1]:,}" if totals else "-"
        lines.append(f"| {k} | " + " | ".join(cells) + f" | {spread} |")
    lines += [
        "",
        "- Each value (a name prefix `<domain>_<entity>_`, an asset's first tag, its type, its "
        "`zone` label, held by a third of the assets, its first owner) comes from one asset, so "
        "most match and the tags, types and labels are often popular ones; each is asked once, "
        "after the kinds above, and none was asked before, so neither backend has its answer "
        "or (sqlite) its counts kept: every request finds its page, total and facets. No "
        "target; the UI's facet links ask tag + type and tag + label, the API and `cairn "
        "assets search` any of them.",
        "",
    ]
    return lines


def _ms(seconds: list[float], q: float) -> str:
    return f"{percentile(seconds, q) * 1000:.1f}"


def _cold_writes(f: SearchFigures) -> str:
    writes, tag = f.cold_writes.get("tag", 0), f.cold_wrk["tag"]
    per = tag.requests / writes if writes else float("inf")
    return (
        f"{BACKEND_TITLES[f.backend]}: {writes} writes, one per {per:,.0f} requests, "
        f"{f.tags_in_use} tags cycled; the writes' CPU is in the figure"
    )


def _mib(kb: int) -> str:
    return f"{kb / 1024:.0f} MiB"


def _side_by_side(results: dict[str, SearchFigures]) -> list[str]:
    done = {b: f for b, f in results.items() if f.complete}
    headers = ["search kind"]
    for b in done:
        headers.append(f"{BACKEND_TITLES[b]}: p50 / p99 at 1 conn")
    for b in done:
        headers.append(f"{BACKEND_TITLES[b]}: rps at 16 conns / bare (ratio)")
    headers.append("met (" + " / ".join(BACKEND_TITLES[b] for b in done) + ")")
    rows = []
    for k in KINDS:
        row = [k]
        row += [
            f"{f.lat[k].p(50) * 1000:.2f} / {f.lat[k].p(99) * 1000:.2f} ms" for f in done.values()
        ]
        row += [
            f"{f.cairn_wrk[k].rps:,.0f} / {f.bare_wrk[k].rps:,.0f} ({f.ratio(k):.2f}x)"
            for f in done.values()
        ]
        row.append(" / ".join(verdict(f.ok(k)) for f in done.values()))
        rows.append(row)
    return table(headers, rows)


def _against_bare(figures: WrkFigures | None, bare: WrkFigures) -> str:
    if figures is None:
        return "-"
    ratio = figures.rps / bare.rps if bare.rps else 0
    return f"{figures.rps:,.0f} ({ratio:.2f}x) / {figures.cpu_ms_per_request:.2f} ms"


def _detail(results: dict[str, SearchFigures]) -> list[str]:
    rows = []
    for k in KINDS:
        for b, f in results.items():
            if not f.complete:
                continue
            la, cw, bw = f.lat[k], f.cairn_wrk[k], f.bare_wrk[k]
            cold_text = _against_bare(f.cold_wrk.get(k), bw)
            unkept_text = _against_bare(f.unkept_wrk.get(k), bw)
            rows.append(
                [
                    k,
                    BACKEND_TITLES[b],
                    f"{len(la.seconds)} ({la.errors} failed)",
                    f"{min(la.totals, default=0):,} / {median(la.totals):,.0f} / "
                    f"{max(la.totals, default=0):,} ({max(la.totals, default=0) / f.n:.2%})",
                    f"{sum(la.body_sizes) / max(1, len(la.body_sizes)) / 1024:.1f} KiB",
                    f"{cw.p50_ms:.1f} / {cw.p99_ms:.1f} ms ({cw.errors} errors)",
                    f"{cw.cpu_ms_per_request:.2f} ms",
                    unkept_text,
                    cold_text,
                    f"{bw.p50_ms:.1f} / {bw.p99_ms:.1f} ms",
                    f"{bw.cpu_ms_per_request:.2f} ms",
                ]
            )
    return table(
        [
            "kind",
            "backend",
            "requests at 1 conn",
            "matches min / median / max (max share)",
            "mean body",
            "Cairn p50 / p99 at 16 conns",
            "Cairn CPU per request",
            "answers not kept: rps (vs bare) / CPU per request",
            "cold: rps (vs bare) / CPU per request",
            "bare p50 / p99 at 16 conns",
            "bare CPU per request",
        ],
        rows,
    )


def _where_mongo(f: SearchFigures) -> list[str]:
    rows = []
    for k in KINDS:
        la, es = f.unkept_lat[k], f.es[k]
        took = median(es.took_ms)
        rows.append(
            [
                k,
                f"{la.p(50) * 1000:.2f} / {la.p(99) * 1000:.2f} ms",
                f"{es.p(50) * 1000:.2f} / {es.p(99) * 1000:.2f} ms ({es.errors} failed)",
                f"{took:.0f} ms",
                f"{(la.p(50) - es.p(50)) * 1000:.2f} ms",
                f"{f.cairn_wrk[k].cpu_ms_per_request:.2f} / "
                + (f"{f.unkept_wrk[k].cpu_ms_per_request:.2f} ms" if k in f.unkept_wrk else "-"),
                f"{f.es_cpu_ms(k):.2f} / "
                + (f"{f.es_cpu_ms(k, kept=False):.2f} ms" if k in f.unkept_wrk else "-"),
            ]
        )
    mem = f.store_memory_kb
    return [
        "### mongo + es: where a search's time goes",
        "",
        *table(
            [
                "kind",
                "Cairn p50 / p99 at 1 conn, answers not kept",
                "same query straight to ES, p50 / p99 (httpx)",
                "ES `took` p50",
                "Cairn's share of p50",
                "Cairn CPU per request (16 conns): answers kept / not kept",
                "ES CPU per request (16 conns): answers kept / not kept",
            ],
            rows,
        ),
        "- Straight to ES: the request body the catalogue builds for the same query string "
        "(its own parser and `build_search`), posted to `/<index>/_search` by a sequential "
        "httpx client after each timed request of a catalogue that keeps no answers "
        "(`CAIRN_SEARCH_CACHE_MIB=0`, so each of its searches reaches Elasticsearch), so both "
        "sides share the load and the warm-up; `took` is Elasticsearch's own figure (whole "
        "milliseconds). Cairn's share is the difference of the p50s: the route, the ES "
        "client in the catalogue and the answer's JSON. CPU per request: each process's "
        "user + system time over the Cairn wrk run, divided by the requests served; answers "
        "not kept: the same wrk run against that second catalogue, every request sent to "
        "Elasticsearch (whose request cache still keeps shard results).",
        f"- Memory after the searches: catalogue VmHWM {_mib(f.after_search_kb.get('VmHWM', 0))}; "
        + ", ".join(f"{name} VmRSS {_mib(kb.get('VmRSS', 0))}" for name, kb in sorted(mem.items()))
        + ".",
        "",
    ]


def _where_sqlite(f: SearchFigures) -> list[str]:
    """Where a search's CPU goes on sqlite, beside what 0.4x of the bare endpoint allows."""
    rows = []
    for k in TARGETED:
        cairn, bare, plain = f.unkept_wrk[k], f.bare_wrk[k], f.plain_wrk[k]
        budget = bare.cpu_ms_per_request / 0.4
        engine = f.engine_ms[k]
        rest = cairn.cpu_ms_per_request - plain.cpu_ms_per_request - engine
        rows.append(
            [
                k,
                f"{f.cairn_wrk[k].cpu_ms_per_request:.3f} ms",
                f"{cairn.cpu_ms_per_request:.3f} ms",
                f"{plain.cpu_ms_per_request:.3f} ms ({plain.rps:,.0f} rps)",
                f"{engine:.3f} ms",
                f"{rest:.3f} ms",
                f"{bare.cpu_ms_per_request:.3f} ms",
                f"{budget:.3f} ms",
                f"{(plain.cpu_ms_per_request + engine) / budget:.0%}",
            ]
        )
    return [
        "### sqlite: where a search's CPU goes (counts cached)",
        "",
        *table(
            [
                "kind",
                "Cairn CPU per request (16 conns), answers kept",
                "the same, answers not kept",
                "uvicorn alone: plain ASGI, same body",
                "raw SQLite alone",
                "the rest: Cairn's Python",
                "bare FastAPI CPU per request",
                "budget at 0.4x (bare / 0.4)",
                "uvicorn + raw SQLite, share of the budget",
            ],
            rows,
        ),
        "- uvicorn alone: the same uvicorn (one worker, uvloop, httptools) serving a plain ASGI "
        "callable that sends the kind's stored body (`benchmarks/bare_app.py`, "
        "`create_plain_app`), under the same wrk load: the HTTP server's and the kernel's share "
        "of a request, which every server in front of SQLite pays. raw SQLite: the statements "
        "`SQLiteStore._search_sync` runs for the kind's query values with their counts cached "
        "(the page), replayed through a plain `sqlite3` connection with the reader's settings "
        "and timed with the thread's CPU clock in this process. The rest is the catalogue's "
        "own Python (query parsing, the store's plan, the answer's bytes, metrics): the CPU of "
        "the catalogue that keeps no answers (each request runs those statements) minus the "
        "other two. Where uvicorn + raw SQLite take more than the budget, 0.4x cannot be "
        "reached by a one-worker Python server on this engine whatever the Python does, unless "
        "the answer was kept: a kept answer skips the statements and the store's plan.",
        "",
    ]


def _broad_lines(f: SearchFigures, loops: Loops) -> list[str]:
    broad_rows = []
    shares = ", ".join(f"{w} {s:.0%}" for w, s in BROAD_WORDS.items())
    for b in f.broads:
        ok = b.total >= 0.3 * f.n and b.ratio <= 1.5
        broad_rows.append(
            [
                f"`q={b.word}`",
                f"{b.total:,} ({b.total / f.n:.0%})",
                f"{median(b.http_s) * 1000:.1f} ms",
                f"{median(b.raw_s) * 1000:.1f} ms",
                f"{b.ratio:.2f}x",
                verdict(ok),
                f"{median(b.warm_s) * 1000:.1f} ms",
            ]
        )
    return [
        "### search-broad",
        "",
        *table(
            [
                "query (limit 20, facets)",
                "matches",
                "HTTP p50",
                "raw sqlite3 p50",
                "ratio (target <= 1.5x)",
                "met",
                "HTTP p50, asked again (answer kept)",
            ],
            broad_rows,
        ),
        f"- sqlite only. {f.broads[0].statements} statements per query (the page; the total "
        "and the tag, type and drift facets), recorded from `SQLiteStore._search_sync` and "
        "replayed through "
        "a plain `sqlite3` connection with the reader's PRAGMAs on the same file; "
        f"{loops.broad_runs} alternating runs of each side after 3 warm-up runs. "
        f"Expected shares by construction: {shares}.",
        "- The catalogue keeps each filter's total and facets, and each search's answer, until "
        "the next write. The HTTP p50 compared with raw SQLite is cold: an untimed write before "
        "each timed request drops what was kept. The last column is the same request asked "
        "again, answered from the kept answer.",
    ]


def write(
    results: dict[str, SearchFigures],
    sizes: Sizes,
    command: str,
    own: bool,
    servers: MongoServers | None = None,
) -> bool:
    """Writes the search section (and footprint, from sqlite); True when targets were met."""
    loops = Loops.for_sizes(sizes)
    all_ok = True
    section = Section("search", "search, search-broad", command, sizes)
    sizes_text = ", ".join(f"{BACKEND_TITLES[b]} {f.n:,}" for b, f in results.items())
    section.add(
        f"Catalogue: generated assets (`benchmarks/gen_tree.py`; {sizes_text}), one uvicorn "
        f"worker, a fresh catalogue per backend, loaded with `POST /api/v1/assets/bulk`"
        f"{' by this script' if own else ''}. Every query uses the API defaults "
        "`limit=20&facets=true`.",
    )
    if "mongo" in results:
        where = (
            servers.describe()
            if servers is not None
            else "FerretDB 1.24 (SQLite) and Elasticsearch 8.19 (512 MB heap)"
        )
        section.add(
            "",
            f"mongo + es: {where}. Searches are answered by Elasticsearch (the real server, "
            "single node), each asked to keep its shard result (`request_cache=true`; a "
            "refresh that changed the index drops it); MongoDB (here FerretDB, not a real "
            "MongoDB) is not on the search path.",
        )
    section.add(
        "",
        f"**The catalogue (or the bare server), the store's servers and the load generator "
        f"share this machine's {os.cpu_count()} cores**: wrk's two threads take CPU the servers "
        "would otherwise have, for Cairn and the bare endpoint alike.",
        "",
        "Targets: p99 <= 25 ms at 1 conn; rps at 16 conns >= 0.4x a bare endpoint answering "
        "the same body (measured per backend, with that backend's body).",
        "",
    )
    for b, f in results.items():
        if f.complete:
            all_ok &= all(f.ok(k) for k in TARGETED)
        else:
            all_ok = False
            section.add(f"- **{BACKEND_TITLES[b]}: not measured**: `{f.error}`", "")
        if f.note:
            section.add(f"- **{BACKEND_TITLES[b]}**: {f.note}.", "")
    if any(f.complete for f in results.values()):
        section.add(
            *_side_by_side(results),
            *_detail(results),
            f"- sqlite: searched {UPKEEP_QUIET_S + 3:.0f} s after the load's last request, once "
            "the catalogue's background merge of the FTS index's segments (which starts when "
            "writes pause) has run; its CPU is the load's, not in these figures. mongo + es: "
            "searched once Elasticsearch had merged the load's segments (none merging for 2 s).",
            f"- 1 connection: sequential httpx client, {loops.latency_requests} requests per "
            f"kind after {loops.warmup_requests} warm-up requests; the time includes the "
            "client's own overhead.",
            *_server_warmup(results, loops),
            f"- 16 connections: `wrk -t{WRK_THREADS} -c{WRK_CONNECTIONS} "
            f"-d{loops.wrk_seconds}s` with a Lua script cycling over the same query values; the "
            "bare endpoint answers the stored Cairn response nearest the kind's mean size. CPU "
            "per request is the server process's user + system time over the run divided by "
            "the requests served.",
            "- Both backends keep each search's answer until the next write (the last "
            f"{ANSWERS} answers, `CAIRN_SEARCH_CACHE_MIB`; mongo: until a write through any "
            "catalogue process, seen by the others within 1 s), so the 16-connection figures "
            "above are for answers asked again. answers not kept: the same wrk run against a "
            "second catalogue on the same store started with `CAIRN_SEARCH_CACHE_MIB=0`: on "
            "sqlite each request searches its page (counts kept), on mongo each request goes to "
            "Elasticsearch.",
            "- cold: a third wrk run per kind that never finds its counts or its answer kept, so "
            "each request searches and counts its total and facets: name-prefix and text cycle "
            "over more distinct values, never asked before, than the caches hold "
            f"({KEPT}); tag "
            f"(every tag in use is fewer) runs while one client rewrites an asset again "
            f"{BUMP_SECONDS * 1000:.0f} ms after each write returns, each write dropping what "
            "was kept; a tag's counts are counted afresh when a write came since it was last "
            "asked"
            + "".join(
                f" ({_cold_writes(f)})"
                for f in results.values()
                if f.complete and "tag" in f.cold_wrk
            )
            + ". mongo + es keeps no counts, only whole answers: its tag row has no cold run "
            "(a single-asset write on FerretDB at 100k assets takes seconds, too few writes to "
            "drop what was kept), and its answers not kept are its cold figure.",
            *(
                _split_by_share(f.lat["tag"], f.n, BACKEND_TITLES[b])
                for b, f in results.items()
                if f.complete
            ),
            "- Other processes on the machine (not this benchmark's) used on average "
            + ", ".join(
                f"{f.other_cores:.2f} cores during the {BACKEND_TITLES[b]} run"
                for b, f in results.items()
                if f.complete
            )
            + " (the machine's busy time minus the client, wrk, the servers measured).",
            "",
        )
    mongo = results.get("mongo")
    if mongo is not None and mongo.complete:
        section.add(*_where_mongo(mongo))
    sqlite = results.get("sqlite")
    if sqlite is not None and sqlite.complete and sqlite.engine_ms:
        section.add(*_where_sqlite(sqlite))
    if any(f.complete and f.combined for f in results.values()):
        section.add(*_combined_lines(results))
    if sqlite is not None and sqlite.complete and sqlite.broads:
        for broad in sqlite.broads:
            all_ok &= broad.total >= 0.3 * sqlite.n and broad.ratio <= 1.5
        section.add(*_broad_lines(sqlite, loops))
    write_section(section)
    if any(f.complete for f in results.values()):
        _write_typo(results, sizes, command)
    if sqlite is not None and sqlite.complete:
        _write_footprint(sqlite, sizes, command, own)
    return all_ok


def _write_typo(results: dict[str, SearchFigures], sizes: Sizes, command: str) -> None:
    """The typo fallback's cost: misspelt code words against the same words spelt right."""
    section = Section("search-typo", "search-typo (typo fallback)", command, sizes)
    rows = []
    for b, f in results.items():
        if not f.complete:
            continue
        typo, text = f.lat["typo"], f.lat["text"]
        tw, xw = f.cairn_wrk["typo"], f.cairn_wrk["text"]
        ta = f.typo_again_wrk
        rows.append(
            [
                BACKEND_TITLES[b],
                f"{f.n:,}",
                f"{typo.p(50) * 1000:.2f} / {typo.p(99) * 1000:.2f} ms",
                f"{text.p(50) * 1000:.2f} / {text.p(99) * 1000:.2f} ms",
                f"{typo.p(50) / text.p(50):.2f}x",
                f"{tw.rps:,.0f} / {xw.rps:,.0f} ({tw.rps / xw.rps if xw.rps else 0:.2f}x)",
                f"{tw.cpu_ms_per_request:.2f} / {xw.cpu_ms_per_request:.2f} ms",
                f"{ta.rps:,.0f} / {ta.cpu_ms_per_request:.2f} ms" if ta else "-",
                f"{typo.errors + tw.errors + (ta.errors if ta else 0)}",
                f"{sum(1 for t in typo.totals if t) / max(1, len(typo.totals)):.0%}",
            ]
        )
    section.add(
        *table(
            [
                "backend",
                "assets",
                "typo p50 / p99 at 1 conn",
                "text p50 / p99 at 1 conn",
                "p50 ratio",
                "rps at 16 conns typo / text (ratio)",
                "catalogue CPU per request typo / text",
                f"typo asked again ({TYPO_AGAIN} values): rps / CPU per request",
                "errors",
                "typo queries answered with results",
            ],
            rows,
        ),
        "- typo: a code word of the text kind with two neighbouring letters swapped (one edit), "
        "so the search as typed finds nothing and the catalogue asks its spelling index for "
        "near words, then answers with the corrected query's results (`fuzzy: true`). text: "
        "the same code words spelt right, in the same run. No target: this is the price of "
        "the fallback, paid only by searches that find fewer than `CAIRN_SEARCH_TYPO_BELOW` "
        "assets.",
        f"- typo asked again: wrk over the first {TYPO_AGAIN} typo values only, each asked "
        "once before the run. Both backends keep both answers of each (as typed, "
        "corrected) and its spelling lookup until the next write (a page of a fuzzy answer, "
        "a search asked again; mongo + es: under the index's generation, as its answers).",
        "- sqlite: the near words come from RapidFuzz over the vocabulary list "
        "(`search_terms`); mongo + es: one more Elasticsearch request (term suggesters and "
        "per-word counts), then the corrected search. On mongo + es, the main search "
        'section\'s "straight to ES" row for typo is the search as typed only.',
    )
    write_section(section)


def _write_footprint(f: SearchFigures, sizes: Sizes, command: str, own: bool) -> None:
    # Its own key: bench_footprint owns "footprint" (all of `cairn up`), and one run must not
    # replace the other's figures.
    footprint = Section("search-footprint", "footprint (catalogue, search run)", command, sizes)
    footprint.add(
        *table(
            ["process", "after ingest (VmHWM)", "after search (VmHWM)", "VmRSS now", "target"],
            [
                [
                    "catalogue (sqlite)",
                    _mib(f.after_ingest_kb.get("VmHWM", 0)),
                    _mib(f.after_search_kb.get("VmHWM", 0)),
                    _mib(f.after_search_kb.get("VmRSS", 0)),
                    "<= 300 MB for all embedded processes",
                ]
            ],
        ),
        f"- {f.n:,} assets; the same catalogue process served the ingest and every search "
        f"benchmark{' (loaded by bench_search itself)' if own else ''}. Only the catalogue is "
        "measured here: the feature store and UI processes are not part of these benchmarks, "
        "so this is one term of the footprint total, not the total. The target is the "
        "embedded backend's; the mongo backend's memory is in the search section.",
    )
    write_section(footprint)


def run(sizes: Sizes, command: str) -> bool:
    """Loads a fresh catalogue per backend, runs the searches on it and writes the sections.
    True when the targets were met."""
    assets = make_assets(sizes.assets)
    results: dict[str, SearchFigures] = {}
    with BackendServers() as servers:
        for backend in sizes.backends:
            print(f"search on {backend}: loading {len(assets):,} assets ...", flush=True)
            loaded, catalogue = bench_ingest.measure(backend, f"search-{backend}", servers, assets)
            print(f"  loaded at {loaded.rate:,.0f} assets/s; searching ...", flush=True)
            try:
                results[backend] = search_loaded(catalogue, loaded, assets, sizes, servers)
            finally:
                if catalogue is not None:
                    catalogue.stop()
        return write(results, sizes, command, own=True, servers=servers.mongo)


def main(argv: list[str] | None = None) -> int:
    sizes, command = parse_sizes(__doc__, "benchmarks.bench_search", argv, backends=True)
    ok = run(sizes, command)
    print(f"search benchmarks written to benchmarks/RESULTS.md; targets met: {ok}")
    # Missed targets are findings, written to RESULTS.md; the run itself succeeded.
    return 0


if __name__ == "__main__":
    sys.exit(main())
