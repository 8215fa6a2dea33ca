"""The Elasticsearch client's bodies (``catalogue_service.backends.es_index``): bulk bodies are
encoded with orjson, byte for byte as the client's stdlib encoder would write them, for every
way the client may name the NDJSON content type."""

from __future__ import annotations

import asyncio
from typing import Any

from elasticsearch.serializer import NdjsonSerializer

from benchmarks.gen_tree import make_assets
from cairn.models import AssetWrite
from catalogue_service.backends.es_index import SearchIndex, _OrjsonNdjsonSerializer, index_doc


def _operations(assets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    operations: list[dict[str, Any]] = []
    for revision, item in enumerate(assets, start=1):
        doc = AssetWrite.model_validate(item).storage_doc()
        doc |= {"revision": revision, "updated_at": "2026-12-04T20:00:00.000000Z"}
        action = {"_index": "assets", "_id": doc["id"], "version": revision}
        operations += [{"index": action}, index_doc(doc)]
    return operations


def test_bulk_bodies_are_the_bytes_the_stdlib_writes() -> None:
    odd = {
        "name": "umsätze_täglich",
        "type": "dataset",
        "description": 'Zürich "quoted" \\ back\tslash, emoji \U0001f4ca, CJK 売上',
        "tags": ["naïve", "sales"],
        "labels": {"ratio": 0.1 + 0.2, "big": 2**62, "flag": False, "nested": {"k": [1.5, None]}},
        "schema": [{"name": "prix_€", "type": "double"}],
    }
    operations = _operations([*make_assets(300), odd])
    fast = _OrjsonNdjsonSerializer().dumps(operations)
    assert fast == NdjsonSerializer().dumps(operations)
    assert fast.count(b"\n") == len(operations)
    assert _OrjsonNdjsonSerializer().loads(fast) == operations


def test_the_client_uses_it_for_both_ndjson_content_types() -> None:
    async def serializers() -> dict[str, str]:
        index = SearchIndex("http://127.0.0.1:9", "assets")
        try:
            found = index.es.transport.serializers.serializers
            return {mimetype: type(s).__name__ for mimetype, s in found.items()}
        finally:
            await index.close()

    found = asyncio.run(serializers())
    assert found["application/x-ndjson"] == "_OrjsonNdjsonSerializer"
    assert found["application/vnd.elasticsearch+x-ndjson"] == "_OrjsonNdjsonSerializer"
    assert found["application/json"] == "OrjsonSerializer"
