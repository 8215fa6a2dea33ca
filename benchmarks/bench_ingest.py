"""ingest (DESIGN section 7): bulk upsert of generated assets into a fresh catalogue, on each
catalogue backend side by side in one run.

One client sends ``POST /api/v1/assets/bulk`` batches of 5,000 one after the other; request
bodies are encoded before the clock starts, so the figure is the catalogue's rate, not the
client's JSON encoding. Target >= 10,000 assets/s on the embedded (SQLite) backend, whose
figure is the median of 3 loads, each into a fresh catalogue; the ``mongo`` backend (MongoDB +
Elasticsearch) is loaded once, the same way, with the same batches.
The catalogue's peak resident set (VmHWM) is read after the ingest for the footprint.

Where the time goes on ``mongo``: the catalogue runs with a tracer (``serve_traced`` below,
started instead of ``python -m cairn``) that times every MongoDB command through PyMongo's
command monitoring and every Elasticsearch bulk, attributed to the bulk request that issued
it or to the store's background indexer. The CPU time of the catalogue, FerretDB and
Elasticsearch over the ingest is read from ``/proc``. After the ingest, FerretDB's ``explain``
says which of the store's query shapes it pushes down to SQLite.

Run alone: ``python -m benchmarks.bench_ingest [--quick] [--assets N] [--backend B]``
(B = sqlite, mongo or both; default both).
"""

from __future__ import annotations

import contextvars
import functools
import json
import os
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from benchmarks.common import (
    BACKEND_TITLES,
    WORK_DIR,
    BackendServers,
    CatalogueProcess,
    MongoServers,
    OtherLoad,
    Section,
    Sizes,
    median_by,
    parse_sizes,
    process_cpu_seconds,
    table,
    verdict,
    write_section,
)
from benchmarks.gen_tree import make_assets

BATCH = 5000
REQUEST_TIMEOUT_S = 600  # one 5,000-item batch takes about a second on sqlite; catches a hang
# A whole ingest stops sending batches after this long (the figures then say how far it got),
# so a slow backend cannot stretch a run without bound.
INGEST_BUDGET_S = 900
# Loads into the embedded backend, each into a fresh catalogue, whose median is reported: one
# load alone moved by 4% between runs on an idle machine (9,610 and 9,962 assets/s).
SQLITE_LOADS = 3
# The catalogue's MongoDB timeout (CAIRN_MONGO_TIMEOUT, seconds; the socket timeout is 6x, at
# least 30 s). The default (5) ends a command after 30 s, and on FerretDB a bulk request's
# lookup of its batch (`_id $in`, not pushed down to SQLite: a scan) passed that at 75,000
# assets in a first full run, so the request answered 503. 30 gives it 180 s.
MONGO_TIMEOUT_S = 30
TRACE_ENV = "BENCH_TRACE_PATH"
TRACED_ENTRY = ("-c", "from benchmarks.bench_ingest import serve_traced; serve_traced()")


# --- the tracer, inside the mongo catalogue's process ---------------------------------------------


class _Tracer:
    """Times the mongo store's work: MongoDB commands (PyMongo command monitoring) and
    Elasticsearch bulks, each attributed to the ``MongoStore.upsert`` call (one per bulk
    request) that issued it, or else to the background indexer. Written to a JSON file after
    every event, so the benchmark reads it at any time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.current: contextvars.ContextVar[dict[str, float] | None] = contextvars.ContextVar(
            "bench_upsert", default=None
        )
        self.upserts: list[dict[str, float]] = []
        self.background: dict[str, float] = defaultdict(float)
        self.started: dict[int, tuple[dict[str, float], str]] = {}

    def target(self) -> dict[str, float]:
        ops = self.current.get()
        return self.background if ops is None else ops

    def dump(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps({"upserts": self.upserts, "background": self.background}))
        os.replace(tmp, self.path)

    # PyMongo's CommandListener interface (duck-typed; registered below).
    def command_started(self, event: Any) -> None:
        name = event.command_name
        value = event.command.get(name)
        collection = value if isinstance(value, str) else event.command.get("collection", "")
        if name == "getMore":
            name = "find"  # the rest of a find's answer
        self.started[event.request_id] = (self.target(), f"mongo {name} {collection}".strip())

    def command_finished(self, event: Any) -> None:
        found = self.started.pop(event.request_id, None)
        if found is not None:
            ops, key = found
            ops[key] = ops.get(key, 0.0) + event.duration_micros / 1e6
            if ops is self.background:
                self.dump()

    def install(self) -> None:
        from elasticsearch import AsyncElasticsearch
        from pymongo import monitoring

        from catalogue_service.backends.es_index import SearchIndex
        from catalogue_service.backends.mongo import MongoStore

        tracer = self

        class Listener(monitoring.CommandListener):
            def started(self, event: monitoring.CommandStartedEvent) -> None:
                tracer.command_started(event)

            def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
                tracer.command_finished(event)

            def failed(self, event: monitoring.CommandFailedEvent) -> None:
                tracer.command_finished(event)

        monitoring.register(Listener())

        upsert = MongoStore.upsert
        index_bulk = SearchIndex.bulk
        es_bulk = AsyncElasticsearch.bulk

        async def traced_upsert(store: Any, writes: Any, now: Any) -> Any:
            ops: dict[str, float] = {"items": float(len(writes))}
            token = tracer.current.set(ops)
            start = time.perf_counter()
            try:
                return await upsert(store, writes, now)
            finally:
                ops["total"] = time.perf_counter() - start
                tracer.current.reset(token)
                tracer.upserts.append(ops)
                tracer.dump()

        async def traced_index_bulk(index: Any, docs: Any, **kwargs: Any) -> Any:
            ops = tracer.target()
            start = time.perf_counter()
            try:
                return await index_bulk(index, docs, **kwargs)
            finally:
                ops["es bulk"] = ops.get("es bulk", 0.0) + time.perf_counter() - start
                ops["es docs"] = ops.get("es docs", 0.0) + len(docs)
                ops["es bulks"] = ops.get("es bulks", 0.0) + 1
                if ops is tracer.background:
                    tracer.dump()

        async def traced_es_bulk(client: Any, *args: Any, **kwargs: Any) -> Any:
            answer = await es_bulk(client, *args, **kwargs)
            ops = tracer.target()
            ops["es took"] = ops.get("es took", 0.0) + answer["took"] / 1000
            return answer

        MongoStore.upsert = traced_upsert  # type: ignore[method-assign, assignment]
        SearchIndex.bulk = traced_index_bulk  # type: ignore[method-assign, assignment]
        AsyncElasticsearch.bulk = traced_es_bulk  # type: ignore[method-assign, assignment]


def serve_traced() -> None:
    """``python -m cairn <args>`` with the tracer installed (the catalogue's code unchanged)."""
    _Tracer(Path(os.environ[TRACE_ENV])).install()
    from cairn.cli import app

    app(prog_name="cairn", args=sys.argv[1:])


def catalogue_for(name: str, servers: MongoServers | None) -> CatalogueProcess:
    """A catalogue on sqlite (no servers) or on mongo (traced, a fresh database and index)."""
    if servers is None:
        return CatalogueProcess(name)
    trace = WORK_DIR / "trace" / f"{name}.json"
    trace.parent.mkdir(parents=True, exist_ok=True)
    trace.unlink(missing_ok=True)
    env = {TRACE_ENV: str(trace), "CAIRN_MONGO_TIMEOUT": str(MONGO_TIMEOUT_S)}
    return CatalogueProcess(name, servers, entry=TRACED_ENTRY, **env)


# --- where the catalogue's CPU goes (sqlite), measured in this process ---------------------------


@dataclass(slots=True)
class CpuSplit:
    """CPU microseconds per asset of each step of a bulk request, run in the benchmark's own
    process (thread CPU time, so other processes on the machine do not count) on the same
    batches, into a fresh SQLite file: the catalogue's work without HTTP."""

    assets: int = 0
    us: dict[str, float] = field(default_factory=dict)
    batches: int = 0
    commit_wall_s: float = 0.0  # the commits' wall time (WAL written and fsync'd), summed
    # CPU microseconds per asset of the store's statements by verb and table, commit aside.
    statements: dict[str, float] = field(default_factory=dict)


class _TimedConnection:
    """The store's writer connection, with the CPU time of its statements added up."""

    def __init__(self, conn: Any, spent: dict[str, float]) -> None:
        self._conn = conn
        self._spent = spent

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def _timed(self, fn: Any, *args: Any) -> Any:
        start = time.thread_time()
        try:
            return fn(*args)
        finally:
            took = time.thread_time() - start
            self._spent["sql"] = self._spent.get("sql", 0.0) + took
            kind = _statement_kind(args[0])
            self._spent[kind] = self._spent.get(kind, 0.0) + took

    def execute(self, *args: Any) -> Any:
        return self._timed(self._conn.execute, *args)

    def executemany(self, *args: Any) -> Any:
        return self._timed(self._conn.executemany, *args)


@functools.cache
def _statement_kind(sql: str) -> str:
    """A statement's verb and table (``INSERT asset_tags``), to add up its CPU by kind.
    Cached: a statement of many rows is kilobytes of text, and splitting it per call was
    counted as the store's Python."""
    words = sql.replace("(", " ").split()
    verb = words[0].upper() if words else "?"
    upper = [w.upper() for w in words]
    for index, word in enumerate(upper[:-1]):
        if word in ("INTO", "FROM", "UPDATE"):
            return f"{verb} {words[index + 1]}"
    return verb


def cpu_split(bodies: list[bytes]) -> CpuSplit:
    """Parses, validates, prepares and stores ``bodies`` step by step, timing each step."""
    import tempfile
    from contextlib import contextmanager
    from datetime import UTC, datetime

    from cairn.collector import collector_paused
    from cairn.models import AssetWrite, BulkResponse
    from catalogue_service.backends.base import PreparedWrite
    from catalogue_service.backends.sqlite import SQLiteStore
    from catalogue_service.service import WRITE_CHUNK, all_valid

    spent: dict[str, float] = {}

    def validate(raw: list[Any]) -> list[AssetWrite]:
        # As the catalogue validates: a chunk's items in one call (Catalogue.bulk).
        items: list[AssetWrite] = []
        for start in range(0, len(raw), WRITE_CHUNK):
            valid = all_valid(raw[start : start + WRITE_CHUNK])
            if valid is None:
                raise SystemExit("a generated asset is not valid")
            items += valid
        return items

    def step(name: str, fn: Any, *args: Any) -> Any:
        start = time.thread_time()
        answer = fn(*args)
        spent[name] = spent.get(name, 0.0) + time.thread_time() - start
        return answer

    split = CpuSplit()
    with tempfile.TemporaryDirectory(dir=WORK_DIR) as folder:
        store = SQLiteStore(Path(folder) / "catalogue.db")
        store._open()
        plain = store.db.transaction
        sql: dict[str, float] = {}

        @contextmanager
        def timed_transaction(**kwargs: Any) -> Any:
            start = time.thread_time()
            with plain(**kwargs) as conn:
                yield _TimedConnection(conn, sql)
                begun, begun_wall = time.thread_time(), time.perf_counter()
            # The commit (WAL pages written, fsync'd) is SQLite's work too.
            sql["sql"] = sql.get("sql", 0.0) + time.thread_time() - begun
            split.commit_wall_s += time.perf_counter() - begun_wall
            spent["store"] = spent.get("store", 0.0) + time.thread_time() - start

        store.db.transaction = timed_transaction  # type: ignore[method-assign]
        process_before, main_before = time.process_time(), time.thread_time()
        # As in the catalogue: the collector waits over a bulk request (cairn.collector), and
        # a big request's commit leaves the WAL's copy to the background (big=True).
        try:
            for body in bodies:
                with collector_paused():
                    raw = step("parse", orjson.loads, body)
                    items = step("validate", validate, raw)
                    writes = step(
                        "prepare",
                        lambda its: [PreparedWrite.of(i, it) for i, it in enumerate(its)],
                        items,
                    )
                    # Handed to the store in the catalogue's chunks, one transaction per body.
                    chunks = [
                        writes[i : i + WRITE_CHUNK] for i in range(0, len(writes), WRITE_CHUNK)
                    ]
                    results = store._write_chunks(
                        iter([*chunks, None]).__next__, datetime.now(UTC), big=True
                    )
                    step("answer", lambda r: BulkResponse(results=r).model_dump_json(), results)
                    split.assets += len(raw)
                    split.batches += 1
                    del raw, items, writes, results
        finally:
            # Closing waits for the background checkpoint thread, whose CPU is the process's
            # minus this thread's (nothing else runs here).
            store.db.close()
            spent["checkpoint"] = (time.process_time() - process_before) - (
                time.thread_time() - main_before
            )
    statements = sql.pop("sql", 0.0)
    spent["store: SQLite statements and commit"] = statements
    split.statements = {k: v / max(1, split.assets) * 1e6 for k, v in sql.items()}
    spent["store: its Python (rows, facets, results)"] = spent["store"] - statements
    del spent["store"]
    split.us = {k: v / max(1, split.assets) * 1e6 for k, v in spent.items()}
    return split


# --- figures -----------------------------------------------------------------------------------


@dataclass(slots=True)
class MongoProbe:
    """FerretDB's answer to ``explain`` for the store's query shapes, and their time at the
    final size (one run each)."""

    shapes: list[tuple[str, bool | None, float | None]] = field(default_factory=list)
    error: str | None = None


@dataclass(slots=True)
class IngestFigures:
    backend: str
    assets: int  # sent (fewer than planned when the budget ran out)
    planned: int = 0
    seconds: float = 0.0
    created: int = 0
    failed: int = 0
    batch_seconds: list[float] = field(default_factory=list)
    request_bytes: int = 0
    server_cpu_s: float = 0.0
    client_cpu_s: float = 0.0
    other_cores: float = 0.0  # CPU of processes outside this benchmark, averaged
    store_cpu_s: dict[str, float] = field(default_factory=dict)
    memory_kb: dict[str, int] = field(default_factory=dict)
    store_memory_kb: dict[str, dict[str, int]] = field(default_factory=dict)
    db_bytes: int = 0
    es_docs: int = -1
    es_bytes: int = 0
    upserts: list[dict[str, float]] = field(default_factory=list)
    background: dict[str, float] = field(default_factory=dict)
    probe: MongoProbe | None = None
    split: CpuSplit | None = None
    error: str | None = None
    # assets/s of every load when several were made (these figures are the median one's)
    load_rates: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.assets / self.seconds if self.seconds else 0.0

    @property
    def complete(self) -> bool:
        return self.assets == self.planned

    @property
    def ok(self) -> bool:
        return (
            self.error is None
            and self.complete
            and self.created == self.assets
            and self.failed == 0
        )


def encode_batches(assets: list[dict[str, Any]], size: int = BATCH) -> list[bytes]:
    return [orjson.dumps(assets[i : i + size]) for i in range(0, len(assets), size)]


def load(
    catalogue: CatalogueProcess,
    assets: list[dict[str, Any]],
    servers: MongoServers | None = None,
    budget_s: float = INGEST_BUDGET_S,
) -> IngestFigures:
    """Bulk-loads ``assets`` into an empty catalogue and times it."""
    bodies = encode_batches(assets)
    figures = IngestFigures(catalogue.backend, assets=0, planned=len(assets))
    cpu_before = catalogue.cpu_seconds()
    store_before = servers.cpu_seconds() if servers is not None else {}
    client_before = process_cpu_seconds(os.getpid())
    other = OtherLoad()
    headers = {"content-type": "application/json"}
    with httpx.Client(base_url=catalogue.url, timeout=REQUEST_TIMEOUT_S) as client:
        start = time.perf_counter()
        for i, body in enumerate(bodies):
            if time.perf_counter() - start > budget_s:
                figures.error = (
                    f"stopped after {budget_s:.0f} s (the run's budget): "
                    f"{figures.assets:,} of {len(assets):,} assets sent"
                )
                break
            t0 = time.perf_counter()
            response = client.post("/api/v1/assets/bulk", content=body, headers=headers)
            figures.batch_seconds.append(time.perf_counter() - t0)
            if response.status_code != 200:
                figures.error = f"HTTP {response.status_code}: {response.text[:500]}"
                break
            result = response.json()
            figures.assets += min(BATCH, len(assets) - i * BATCH)
            figures.request_bytes += len(body)
            figures.created += result["created"]
            figures.failed += result["failed"]
            if (i + 1) % 4 == 0:
                print(
                    f"  {catalogue.backend}: {figures.assets:,} assets sent, last batch "
                    f"{figures.batch_seconds[-1]:.1f} s",
                    flush=True,
                )
            if result["failed"] and figures.error is None:
                bad = next(r for r in result["results"] if r["status"] == "error")
                figures.error = f"item {bad['index']} of a batch failed: {bad.get('error')}"
        figures.seconds = time.perf_counter() - start
    figures.server_cpu_s = catalogue.cpu_seconds() - cpu_before
    figures.client_cpu_s = process_cpu_seconds(os.getpid()) - client_before
    if servers is not None:
        after = servers.cpu_seconds()
        figures.store_cpu_s = {k: after[k] - store_before[k] for k in after}
    figures.other_cores = other.cores(figures.server_cpu_s + sum(figures.store_cpu_s.values()))
    figures.memory_kb = catalogue.memory_kb()
    if servers is None:
        figures.db_bytes = sum(
            p.stat().st_size for p in catalogue.data_dir.glob("catalogue.db*") if p.is_file()
        )
    else:
        _mongo_after(catalogue, servers, figures)
    return figures


def _mongo_after(
    catalogue: CatalogueProcess, servers: MongoServers, figures: IngestFigures
) -> None:
    """Index count and sizes, the trace of the store's work, and FerretDB's explain."""
    alias = catalogue.mongo_env["CAIRN_ES_INDEX"]
    database = catalogue.mongo_env["CAIRN_MONGO_DB"]
    # Every bulk request indexes its batch before it answers; the count is read at once, then
    # again after the background indexer's poll interval to let it finish.
    for _ in range(30):
        answer = httpx.get(f"{servers.es.url}/{alias}/_count", timeout=30)
        figures.es_docs = int(answer.json().get("count", -1)) if answer.status_code == 200 else -1
        if figures.es_docs >= figures.assets:
            break
        time.sleep(1)
    time.sleep(2)  # the background indexer polls every second: let its last round land
    stats = httpx.get(f"{servers.es.url}/{alias}/_stats/store", timeout=30).json()
    figures.es_bytes = int(stats["_all"]["primaries"]["store"]["size_in_bytes"])
    figures.db_bytes = sum(
        p.stat().st_size for p in servers.mongo_data_dir.glob(f"{database}*") if p.is_file()
    )
    figures.store_memory_kb = servers.memory_kb()
    trace = json.loads(Path(catalogue.env[TRACE_ENV]).read_text())
    figures.upserts = trace["upserts"]
    figures.background = trace["background"]
    figures.probe = probe_mongo(servers.mongo.url, database)


def probe_mongo(url: str, database: str) -> MongoProbe:
    """Asks FerretDB how it runs the store's query shapes on the loaded assets collection."""
    import pymongo

    probe = MongoProbe()
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        url, serverSelectionTimeoutMS=10_000
    )
    try:
        assets = client[database]["assets"]
        ids = [row["_id"] for row in assets.find({}, {"_id": 1}).limit(BATCH)]
        head = {"hash": 1, "revision": 1, "deleted": 1, "name": 1}
        shapes: list[tuple[str, Any, bool]] = [
            (
                f"`{{_id: {{$in: [{len(ids):,} ids]}}}}` (a bulk request's lookup)",
                {"$in": ids},
                False,
            ),
            (
                "`{_id: {$eq: id}}` (the store's single-asset reads and writes)",
                {"$eq": ids[-1]},
                True,
            ),
            ("`{_id: id}` (plain equality)", ids[-1], True),
        ]
        for label, condition, timed in shapes:
            explained = client[database].command(
                "explain", {"find": "assets", "filter": {"_id": condition}, "projection": head}
            )
            pushed = explained.get("filterPushdown")
            seconds = None
            if timed:  # the lookup's own time is in the trace; a second one would cost as much
                start = time.perf_counter()
                list(assets.find({"_id": condition}, head))
                seconds = time.perf_counter() - start
            probe.shapes.append((label, pushed if isinstance(pushed, bool) else None, seconds))
    except Exception as exc:  # the probe explains; it must not cost the figures
        probe.error = f"{type(exc).__name__}: {exc}"
    finally:
        client.close()
    return probe


# --- RESULTS.md ---------------------------------------------------------------------------------

# Store operations of one bulk request, in the order the store runs them.
_OPS = (
    ("mongo find assets", "MongoDB: read the batch's current assets (`find _id $in`)"),
    ("mongo insert asset_names", "MongoDB: claim the names (`insert_many` into asset_names)"),
    ("mongo insert asset_outbox", "MongoDB: index intents (`insert_many` into asset_outbox)"),
    ("mongo insert assets", "MongoDB: the assets (`insert_many`)"),
    ("es bulk", "Elasticsearch: index the batch (`_bulk`, `refresh=true`)"),
    ("mongo delete asset_outbox", "MongoDB: clear the intents (`delete_many`)"),
)
_NOT_OPS = {"items", "total", "es took", "es docs", "es bulks"}


def _sum(rows: Sequence[dict[str, float]], key: str) -> float:
    return sum(r.get(key, 0.0) for r in rows)


def _s(seconds: float) -> str:
    return f"{seconds:.2f} s"


def _mib(kb: int) -> str:
    return f"{kb / 1024:.0f} MiB"


def _headline(figures: dict[str, IngestFigures]) -> list[str]:
    backends = list(figures)

    def row(label: str, fn: Any) -> list[str]:
        return [label, *(fn(figures[b]) for b in backends)]

    def batches(f: IngestFigures) -> str:
        b = f.batch_seconds
        if not b:
            return "-"
        return f"{b[0]:.2f} / {min(b):.2f} / {max(b):.2f} / {b[-1]:.2f}"

    def store_cpu(f: IngestFigures) -> str:
        if not f.store_cpu_s:
            return "- (in the catalogue's process)"
        return ", ".join(
            f"{k} {v:.1f} s ({v / f.seconds:.2f} cores)" for k, v in f.store_cpu_s.items()
        )

    def on_disk(f: IngestFigures) -> str:
        if f.backend == "sqlite":
            return f"{f.db_bytes / 1e6:.1f} MB (db + WAL + shm)"
        return (
            f"FerretDB's SQLite file {f.db_bytes / 1e6:.1f} MB; ES index {f.es_bytes / 1e6:.1f} MB"
        )

    def met(f: IngestFigures) -> str:
        if f.backend != "sqlite":
            return "n/a (the target is the embedded backend's)"
        return verdict(f.ok and f.rate >= 10_000)

    rows = [
        row("**assets/s**", lambda f: f"**{f.rate:,.0f}**"),
        row("target (DESIGN §7)", lambda f: ">= 10,000 assets/s" if f.backend == "sqlite" else "-"),
        row("met", met),
        row(
            "assets, time",
            lambda f: (
                f"{f.assets:,} in {f.seconds:.2f} s"
                + ("" if f.complete else f" (**of {f.planned:,} planned**)")
            ),
        ),
        row("created / failed", lambda f: f"{f.created:,} / {f.failed:,}"),
        row(
            "loads (assets/s; the median one's figures here)",
            lambda f: " / ".join(f"{r:,.0f}" for r in f.load_rates) if f.load_rates else "one",
        ),
        row("batch time first / min / max / last", batches),
        row(
            "catalogue CPU",
            lambda f: (
                f"{f.server_cpu_s:.1f} s ({f.server_cpu_s / f.seconds:.2f} cores)"
                if f.seconds
                else "-"
            ),
        ),
        row("store servers' CPU", store_cpu),
        row("benchmark client CPU", lambda f: f"{f.client_cpu_s:.1f} s"),
        row("other processes on the machine (average)", lambda f: f"{f.other_cores:.2f} cores"),
        row("on disk afterwards", on_disk),
        row(
            "searchable afterwards",
            lambda f: (
                "yes (same database)"
                if f.backend == "sqlite"
                else f"{f.es_docs:,} documents in Elasticsearch"
            ),
        ),
        row(
            "catalogue VmHWM / VmRSS",
            lambda f: f"{_mib(f.memory_kb.get('VmHWM', 0))} / {_mib(f.memory_kb.get('VmRSS', 0))}",
        ),
    ]
    return table(["ingest", *(BACKEND_TITLES[b] for b in backends)], rows)


def _where_sqlite(f: IngestFigures) -> list[str]:
    """The sqlite catalogue's CPU per asset, step by step (``cpu_split``)."""
    assert f.split is not None
    us = f.split.us
    steps = sum(us.values())
    labels = {
        "parse": "parse the body (`orjson.loads`)",
        "validate": "validate the items (`AssetWrite`, pydantic, a chunk per call)",
        "prepare": "storage document and content hash (`PreparedWrite.of`)",
        "store: SQLite statements and commit": "store: SQLite statements and the commit",
        "store: its Python (rows, facets, results)": "store: its Python (rows, tag facets, "
        "results)",
        "checkpoint": "copy of the WAL into the database file (background thread)",
        "answer": "encode the answer (a result per item)",
    }
    rows = [
        [label, f"{us.get(key, 0.0):.1f}", f"{us.get(key, 0.0) / steps:.0%}"]
        for key, label in labels.items()
    ]
    rows.append(["**the steps together**", f"**{steps:.1f}**", "100%"])
    python = steps - us.get("store: SQLite statements and commit", 0.0) - us.get("checkpoint", 0.0)
    served = f.server_cpu_s / max(1, f.assets) * 1e6
    rows.append(
        [
            "the catalogue over HTTP (its whole process's CPU in the ingest above)",
            f"{served:.1f}",
            "",
        ]
    )
    commit_ms = f.split.commit_wall_s / max(1, f.split.batches) * 1000
    statements = sorted(f.split.statements.items(), key=lambda kv: -kv[1])
    commit = us.get("store: SQLite statements and commit", 0.0) - sum(f.split.statements.values())
    by_statement = [[f"`{kind}`", f"{spent:.1f}"] for kind, spent in statements if spent >= 0.1]
    by_statement.append(["`COMMIT` (and what SQLite flushes in it)", f"{commit:.1f}"])
    return [
        *table(["sqlite: catalogue CPU per asset", "µs", "share of the steps"], rows),
        *table(["sqlite: the store's statements, by kind", "µs per asset"], by_statement),
        f"- The steps are run again in the benchmark's process on the same {f.split.assets:,} "
        "assets into a fresh file, each timed by thread CPU time (`time.thread_time`, so other "
        "processes on the machine do not count, though they slow a shared core), with the "
        "garbage collector paused as the catalogue pauses it over a bulk request. The steps and "
        "the HTTP ingest ran at different moments: on a busy machine their CPU per asset "
        "differs by more than what HTTP adds, so compare shares within the table.",
        f"- At {steps:.0f} µs of CPU per asset one core does at most {1e6 / steps:,.0f} "
        "assets/s. The catalogue splits a request into chunks of 500 items (as the steps "
        "here do): a writer thread applies one chunk while the event loop parses and validates "
        "the next, and writes the side tables of all chunks after the last one. SQLite's "
        "statements run without the GIL, the rest of the steps hold it, so with perfect overlap "
        f"two cores would allow about {1e6 / max(python, 1.0):,.0f} assets/s (1e6 / the "
        f"{python:.0f} µs of Python per asset; SQLite's statements, commit and checkpoint, "
        f"{steps - python:.0f} µs, beside it). In practice they hardly overlap: `executemany` "
        "gives up the GIL for each row's few microseconds of SQLite and then waits for it while "
        "the event loop validates, so the catalogue's process stays near one core (the "
        "headline's catalogue cores; an in-process probe of 2026-12-02 measured 1.00 cores and "
        "3% more assets/s than writing each request in one piece).",
        f"- Each batch's commit took {commit_ms:.0f} ms of wall time here (WAL pages written "
        "and fsync'd; `synchronous=FULL`), not counted in the CPU above; copying the WAL into "
        "the database file happens after the commit in a background thread.",
    ]


def _where_mongo(f: IngestFigures) -> list[str]:
    """The mongo ingest's time, split by the tracer."""
    ups = f.upserts
    if not ups:
        return ["- No trace of the store's work was read (see the error above)."]
    store = _sum(ups, "total")
    first, last = ups[0], ups[-1]
    rows = [
        [
            "bulk requests, as the client timed them",
            _s(f.seconds),
            "100%",
            _s(f.batch_seconds[0]),
            _s(f.batch_seconds[-1]),
        ],
        [
            "catalogue outside the store (HTTP, JSON, validation, answer)",
            _s(f.seconds - store),
            f"{(f.seconds - store) / f.seconds:.0%}",
            _s(f.batch_seconds[0] - first.get("total", 0)),
            _s(f.batch_seconds[-1] - last.get("total", 0)),
        ],
        [
            "`MongoStore.upsert`, all of it",
            _s(store),
            f"{store / f.seconds:.0%}",
            _s(first["total"]),
            _s(last["total"]),
        ],
    ]
    known = 0.0
    for key, label in _OPS:
        total = _sum(ups, key)
        known += total
        rows.append(
            [
                f"- {label}",
                _s(total),
                f"{total / f.seconds:.0%}",
                _s(first.get(key, 0.0)),
                _s(last.get(key, 0.0)),
            ]
        )
    others = sorted({k for r in ups for k in r} - _NOT_OPS - {k for k, _ in _OPS})
    for key in others:
        total = _sum(ups, key)
        known += total
        rows.append([f"- other: `{key}`", _s(total), f"{total / f.seconds:.0%}", "", ""])
    rest = store - known
    rows.append(
        [
            "- the store's own Python between the calls (diff, rows, results)",
            _s(rest),
            f"{rest / f.seconds:.0%}",
            "",
            "",
        ]
    )
    took = _sum(ups, "es took")
    es = _sum(ups, "es bulk")
    out = [
        *table(
            [
                "mongo + es: where a bulk request's time goes",
                "total",
                "share",
                "first batch",
                "last batch" + (" (failed)" if (f.error or "").startswith("HTTP") else ""),
            ],
            rows,
        ),
        f"- Elasticsearch's own `took` for the request path's bulks: {_s(took)} of the "
        f"{_s(es)} spent in `SearchIndex.bulk` (the rest: building the index documents, "
        "JSON, HTTP in the catalogue's client).",
        _background_line(f.background),
    ]
    if f.probe is not None:
        if f.probe.error:
            out.append(f"- FerretDB explain failed: `{f.probe.error}`")
        else:
            shapes = "; ".join(
                f"{label}: pushdown {'yes' if pushed else 'no' if pushed is False else '?'}"
                + (f", one find {seconds * 1000:,.0f} ms" if seconds is not None else "")
                for label, pushed, seconds in f.probe.shapes
            )
            out.append(
                f"- FerretDB `explain` on the {f.assets:,}-asset collection (`filterPushdown`; "
                f"then the time of one such find): {shapes}. Without pushdown FerretDB reads and "
                "decodes every document of the collection (and tests each against the whole "
                "`$in` list), so the lookup each bulk request makes grows with the collection "
                "(first vs last batch above). MongoDB answers both shapes from its `_id` index."
            )
    return out


def _background_line(bg: dict[str, float]) -> str:
    """What the store's background indexer did while the bulk requests ran."""
    mongo = sum(v for k, v in bg.items() if k.startswith("mongo "))
    how = (
        "The indexer polls `asset_outbox` every second; an intent it finds between a bulk "
        "request's insert of the intents and the request's own delete makes it re-read that "
        "asset (on FerretDB an `_id $in` scan of the collection) and index it a second time, "
        "on the same two cores, while the request does the same."
    )
    if not bg.get("es bulks"):
        return (
            "- The store's **background indexer** indexed nothing during this ingest "
            f"({mongo:.1f} s of MongoDB commands, its polls): none of its polls caught a "
            f"batch's intents. {how}"
        )
    return (
        f"- Meanwhile the store's **background indexer** ran {bg.get('es bulks', 0):.0f} bulks "
        f"of {bg.get('es docs', 0):,.0f} documents ({bg.get('es bulk', 0):.1f} s in "
        f"`SearchIndex.bulk`, {bg.get('es took', 0):.1f} s of ES `took`) and {mongo:.1f} s of "
        f"MongoDB commands ({bg.get('mongo find assets', 0):.1f} s reading assets), concurrently "
        f"with the requests; every bulk request indexed its own batch too. {how}"
    )


def write(figures: dict[str, IngestFigures], sizes: Sizes, command: str) -> None:
    section = Section("ingest", "ingest", command, sizes)
    any_f = next(iter(figures.values()))
    section.add(
        f"{any_f.planned:,} generated assets (`benchmarks/gen_tree.py`) per backend, "
        f"`POST /api/v1/assets/bulk` in batches of {BATCH:,} "
        f"({any_f.request_bytes / max(1, any_f.assets):.0f} bytes of JSON per asset), "
        "one client, one uvicorn worker, loopback; the client, the catalogue and the store's "
        "servers share the machine's cores. Each backend starts from an empty catalogue.",
        "",
        *_headline(figures),
        "- Batch times: a growing last batch means the write cost grows with what is stored.",
    )
    if "sqlite" in figures:
        section.add("- sqlite: `PRAGMA synchronous=FULL`, each batch is one committed transaction.")
        if figures["sqlite"].split is not None:
            section.add("", *_where_sqlite(figures["sqlite"]))
    if "mongo" in figures:
        section.add(
            "- mongo + es: the MongoDB-wire server is **FerretDB 1.24 on SQLite, not a real "
            "MongoDB**: its writes and lookups, not MongoDB's, set the mongo-side figures, which "
            "are a floor set by FerretDB. Elasticsearch is the real server (8.19, single node, "
            "512 MB heap). The store writes with `w=majority, j=true`, inserts new assets with "
            "`insert_many` and indexes each batch into Elasticsearch before it answers "
            "(`refresh=true`), so a batch is searchable when its request returns.",
            f"- mongo + es: the catalogue runs with `CAIRN_MONGO_TIMEOUT={MONGO_TIMEOUT_S}` "
            f"(socket timeout {MONGO_TIMEOUT_S * 6} s) instead of the default 5 (30 s): with "
            "the default, a first full run on this machine got a 503 at 75,000 assets, when "
            "the batch's lookup on FerretDB passed 30 s twice (PyMongo retries a read once).",
            "",
        )
        section.add(*_where_mongo(figures["mongo"]))
    for backend, f in figures.items():
        if f.error:
            section.add(f"- {BACKEND_TITLES[backend]} error: `{f.error}`")
    write_section(section)


# --- the run -------------------------------------------------------------------------------------


def measure(
    backend: str,
    name: str,
    servers: BackendServers,
    assets: list[dict[str, Any]],
) -> tuple[IngestFigures, CatalogueProcess | None]:
    """Starts a fresh catalogue on ``backend`` and loads ``assets``; returns the figures and
    the still-running catalogue (the caller stops it), or no catalogue when it failed."""
    catalogue = None
    try:
        mongo = servers.for_backend(backend)
        catalogue = catalogue_for(name, mongo).start()
        return load(catalogue, assets, mongo), catalogue
    except Exception as exc:
        if catalogue is not None:
            catalogue.stop()
        failed = IngestFigures(backend, assets=0, planned=len(assets))
        failed.error = f"{type(exc).__name__}: {str(exc)[:1500]}"
        return failed, None


def run(sizes: Sizes, command: str) -> dict[str, IngestFigures]:
    """Ingests into a fresh catalogue per backend and writes the section."""
    assets = make_assets(sizes.assets)
    figures: dict[str, IngestFigures] = {}
    with BackendServers() as servers:
        for backend in sizes.backends:
            loads = []
            for i in range(SQLITE_LOADS if backend == "sqlite" else 1):
                print(f"ingest on {backend} ...", flush=True)
                loaded, catalogue = measure(backend, f"ingest-{backend}-{i}", servers, assets)
                if catalogue is not None:
                    catalogue.stop()
                loads.append(loaded)
            failed = [f for f in loads if not f.ok]
            # A failed load is the result; otherwise the median one by rate.
            chosen = failed[0] if failed else median_by(loads, lambda f: f.rate)
            chosen.load_rates = [f.rate for f in loads] if len(loads) > 1 else []
            figures[backend] = chosen
            if backend == "sqlite":
                print("sqlite: CPU per step, in this process ...", flush=True)
                figures[backend].split = cpu_split(encode_batches(assets))
    write(figures, sizes, command)
    return figures


def main(argv: list[str] | None = None) -> int:
    sizes, command = parse_sizes(__doc__, "benchmarks.bench_ingest", argv, backends=True)
    figures = run(sizes, command)
    for backend, f in figures.items():
        print(f"ingest on {backend}: {f.rate:,.0f} assets/s ({f.assets:,} in {f.seconds:.2f} s)")
        if f.error:
            print(f"  error: {f.error}", file=sys.stderr)
    print("written to benchmarks/RESULTS.md")
    return 0 if all(f.ok for f in figures.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
