"""Where a first-asked name-prefix search's time goes in Elasticsearch (issue 13).

Starts Elasticsearch (the tests' integ-test-zip server), indexes ``--assets`` generated assets
straight into it, once per mapping below (each index force-merged to one segment, as the
benchmark's are once settled), then asks each index ``--asks`` name prefixes it was never asked
before, with the body the catalogue builds for ``?name=<prefix>`` (limit 20, facets), through a
sequential httpx client, rounds after rounds:

- ``as built``: the catalogue's mapping (the prefix is a ``prefix`` query on the keyword field
  ``name_lc``);
- ``name_prefix``: a text twin of ``name_lc`` with ``index_prefixes``, so a prefix of up to 19
  characters is one term lookup;
- ``slim source``: ``_source`` holding only the stored document (the fields the query reads are
  indexed, not kept in ``_source``), so each hit's fetch parses less;
- ``both`` of the last two.

The first round runs right after the server started, the next after ``--warmup`` searches on
other prefixes: Elasticsearch's JIT compiles its search code over its first few thousand
queries, which is why ``bench_search`` answers searches it does not time before timing any.
The mappings are asked in a rotating order, so none is always first. Prints wall p50 / p99 (the
client's), Elasticsearch's own ``took`` and the index size. Run:
``python -m benchmarks.probe_es_search [--assets N] [--asks N] [--warmup N] [--rounds N]``.
"""

from __future__ import annotations

import argparse
import copy
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from benchmarks.common import percentile
from benchmarks.gen_tree import make_assets
from catalogue_service.backends import es_index
from catalogue_service.backends.base import SearchQuery
from tests.servers.elasticsearch import Elasticsearch

BATCH = 5_000
TWIN = "name_prefix"
MAPPINGS = ("as built", "name_prefix", "slim source", "both")


def mapping(kind: str) -> dict[str, Any]:
    body = copy.deepcopy(es_index.MAPPINGS)
    if kind in ("name_prefix", "both"):
        body["properties"][TWIN] = {
            "type": "text",
            "analyzer": "keyword",  # the value is name_lc: already lower case, one token
            "index_prefixes": {"min_chars": 1, "max_chars": 19},
        }
    if kind in ("slim source", "both"):
        body["_source"] = {"includes": ["doc"]}
    return body


def index_name(kind: str) -> str:
    return "probe-" + kind.replace(" ", "-").replace("_", "-")


def load(client: httpx.Client, kind: str, docs: list[dict[str, Any]]) -> float:
    name = index_name(kind)
    settings = {**es_index.SETTINGS, "refresh_interval": "-1"}
    client.put(
        f"/{name}", json={"settings": settings, "mappings": mapping(kind)}
    ).raise_for_status()
    started = time.perf_counter()
    for start in range(0, len(docs), BATCH):
        lines = []
        for doc in docs[start : start + BATCH]:
            body = es_index.index_doc(doc)
            if kind in ("name_prefix", "both"):
                body[TWIN] = body["name_lc"]
            lines += [
                orjson.dumps({"index": {"_index": name, "_id": doc["id"]}}),
                orjson.dumps(body),
            ]
        answer = client.post(
            "/_bulk",
            content=b"\n".join(lines) + b"\n",
            headers={"content-type": "application/x-ndjson"},
        )
        answer.raise_for_status()
        if answer.json()["errors"]:
            raise RuntimeError(f"{kind}: Elasticsearch refused a document")
    client.post(f"/{name}/_refresh").raise_for_status()
    client.post(f"/{name}/_forcemerge", params={"max_num_segments": 1}).raise_for_status()
    return time.perf_counter() - started


def body_for(kind: str, prefix: str) -> bytes:
    body = es_index.build_search(SearchQuery(name=prefix, limit=20, facets=True))
    assert body is not None
    if kind in ("name_prefix", "both"):
        for clause in body["query"]["bool"]["filter"]:
            if "prefix" in clause:
                clause["prefix"] = {TWIN: clause["prefix"]["name_lc"]}
    return orjson.dumps(body)


def ask(client: httpx.Client, kind: str, prefixes: list[str]) -> tuple[list[float], list[float]]:
    """Wall milliseconds and ``took`` of each search, its shard results not kept before."""
    name = index_name(kind)
    client.post(f"/{name}/_cache/clear", params={"request": "true"}).raise_for_status()
    walls: list[float] = []
    tooks: list[float] = []
    for prefix in prefixes:
        started = time.perf_counter()
        answer = client.post(
            f"/{name}/_search",
            params={"request_cache": "true"},
            content=body_for(kind, prefix),
            headers={"content-type": "application/json"},
        )
        walls.append((time.perf_counter() - started) * 1000)
        answer.raise_for_status()
        tooks.append(float(answer.json()["took"]))
    return walls, tooks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--assets", type=int, default=100_000)
    parser.add_argument("--asks", type=int, default=300, help="prefixes per mapping and round")
    parser.add_argument("--warmup", type=int, default=3_000, help="searches after round 1")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()

    docs = []
    for i, asset in enumerate(make_assets(args.assets)):
        doc = {**asset, "id": f"a{i:06d}", "revision": 1, "deleted": False}
        docs.append({**doc, "updated_at": "2026-12-01T00:00:00Z"})
    prefixes = sorted({doc["name"].rsplit("_", 1)[0] + "_" for doc in docs})
    rng = random.Random(5)
    server = Elasticsearch(Path(tempfile.mkdtemp(prefix="cairn-probe-es-"))).start()
    try:
        with httpx.Client(base_url=server.url, timeout=300) as client:
            for kind in MAPPINGS:
                seconds = load(client, kind, docs)
                stats = client.get(f"/{index_name(kind)}/_stats/store").json()
                size = stats["_all"]["primaries"]["store"]["size_in_bytes"] / (1 << 20)
                print(f"{kind:12s} indexed in {seconds:5.1f} s, {size:5.1f} MiB", flush=True)
            print(f"{len(prefixes)} distinct prefixes; {args.asks} asked per mapping and round")
            for number in range(args.rounds):
                if number == 1:
                    started = time.perf_counter()
                    for i in range(args.warmup):
                        kind = MAPPINGS[i % len(MAPPINGS)]
                        client.post(
                            f"/{index_name(kind)}/_search",
                            params={"request_cache": "false"},
                            content=body_for(kind, rng.choice(prefixes)),
                            headers={"content-type": "application/json"},
                        ).raise_for_status()
                    took = time.perf_counter() - started
                    print(f"-- {args.warmup} other searches ({took:.1f} s)")
                order = MAPPINGS[number % len(MAPPINGS) :] + MAPPINGS[: number % len(MAPPINGS)]
                for kind in order:
                    walls, tooks = ask(client, kind, rng.sample(prefixes, args.asks))
                    print(
                        f"round {number + 1} {kind:12s} wall p50 {percentile(walls, 50):5.2f} "
                        f"p99 {percentile(walls, 99):5.2f} max {max(walls):6.1f} ms | took p50 "
                        f"{percentile(tooks, 50):.0f} p99 {percentile(tooks, 99):.0f} ms",
                        flush=True,
                    )
    finally:
        server.close()


if __name__ == "__main__":
    main()
