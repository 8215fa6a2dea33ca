"""The catalogue's Elasticsearch index: mappings, documents, queries and facets.

Only Elasticsearch's core is relied on (the standard tokenizer, the lowercase filter and
``index_prefixes``), so the same index works on the full server image and on the small
integ-test distribution the tests run. Text is split into words here, in Python, the way the
embedded backend's FTS5 tokenizer splits it (letters and digits; ``sales_daily`` is two words),
so both backends match the same assets for the same query.

No user value reaches Elasticsearch as query syntax: words become ``term`` and ``prefix``
queries on analysed fields, filters are ``term`` queries on keyword fields.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from cairn.errors import InvalidCursor, InvalidRequest, Unavailable
from cairn.models import Facets, label_text, searchable_labels
from catalogue_service.backends.base import SearchHits, SearchQuery, encode_cursor, tag_keys
from catalogue_service.backends.words import words

try:
    from elastic_transport import ConnectionError as TransportConnectionError
    from elastic_transport import ConnectionTimeout, TransportError
    from elasticsearch import ApiError, AsyncElasticsearch, NotFoundError
    from elasticsearch.serializer import NdjsonSerializer, OrjsonSerializer
except ImportError as exc:  # pragma: no cover - the registry turns this into a clear message
    raise ImportError(
        f"{exc}; the mongo backend needs pip install 'cairn-catalogue[mongo]'"
    ) from exc

log = logging.getLogger("cairn.catalogue.es")

TEMPLATE_VERSION = 2
FACET_LIMIT = 50  # as the embedded backend
MAX_WORDS = 32
# Field weights of a text match, as the embedded backend's bm25 weights.
WEIGHTS = {"words.name": 10.0, "words.tags": 5.0, "words.columns": 2.0, "words.description": 1.0}
EXACT_NAME_BOOST = 1000.0
# Elasticsearch refuses from + size beyond this; cursors have no such limit.
MAX_RESULT_WINDOW = 10_000

_WORDS_FIELD = {
    "type": "text",
    "analyzer": "standard",
    # Indexed prefixes make the last word of a query ("sal" -> sales_daily) a cheap lookup.
    "index_prefixes": {"min_chars": 1, "max_chars": 10},
}

MAPPINGS: dict[str, Any] = {
    "dynamic": "strict",
    "properties": {
        "id": {"type": "keyword"},
        "name": {"type": "keyword"},
        "name_lc": {"type": "keyword"},
        "type": {"type": "keyword"},
        "tags": {"type": "keyword"},
        "owners": {"type": "keyword"},
        "labels": {"type": "keyword"},  # "key=value" strings
        "columns": {"type": "keyword"},  # schema column names
        "description": {"type": "text", "analyzer": "standard"},
        "deleted": {"type": "boolean"},
        "revision": {"type": "long"},
        "updated_at": {"type": "date"},
        "drift": {"type": "keyword"},  # "drifted" or "stable" once a profile compared
        "words": {
            "properties": {
                field: _WORDS_FIELD for field in ("name", "tags", "columns", "description")
            }
        },
        # The asset as stored, returned with each hit; never indexed.
        "doc": {"type": "object", "enabled": False},
    },
}

# Fields added to MAPPINGS after the first template: put on existing indexes at start-up.
ADDED_FIELDS = {"drift": MAPPINGS["properties"]["drift"]}

SETTINGS: dict[str, Any] = {
    # One shard: counts and facets are exact, as the embedded backend's.
    "number_of_shards": 1,
    "number_of_replicas": 0,
    "max_result_window": MAX_RESULT_WINDOW,
}


def label_pair(key: str, value: Any) -> str:
    return f"{key}={label_text(value)}"


def index_doc(doc: dict[str, Any]) -> dict[str, Any]:
    """The indexed form of a stored asset document (tags in lower case, as searched)."""
    tags = tag_keys(doc.get("tags") or [])
    columns = [field["name"] for field in doc.get("schema") or ()]
    description = doc.get("description") or ""
    return {
        "id": doc["id"],
        "name": doc["name"],
        "name_lc": doc["name"].lower(),
        "type": doc["type"],
        "tags": tags,
        "owners": doc.get("owners") or [],
        "labels": [f"{k}={v}" for k, v in searchable_labels(doc.get("labels"))],
        "columns": columns,
        "description": description,
        "deleted": bool(doc.get("deleted")),
        "revision": doc["revision"],
        "updated_at": doc["updated_at"],
        "drift": _drift_value(doc.get("drift")),
        "words": {
            "name": " ".join(words(doc["name"])),
            "tags": " ".join(w for tag in tags for w in words(tag)),
            "columns": " ".join(w for column in columns for w in words(column)),
            "description": " ".join(words(description)),
        },
        "doc": doc,
    }


def _drift_value(flag: dict[str, Any] | None) -> str | None:
    if not flag:
        return None
    return "drifted" if flag.get("drifted") else "stable"


@dataclass(slots=True)
class Indexed:
    """The outcome of indexing one document: done (or superseded) or failed."""

    id: str
    revision: int
    ok: bool
    error: str | None = None


def unreachable(exc: Exception) -> Unavailable:
    return Unavailable(
        f"Elasticsearch cannot be reached ({type(exc).__name__}), so search is unavailable. "
        "Writes are still accepted and will be searchable once the index is back."
    )


class _OrjsonNdjsonSerializer(NdjsonSerializer):
    """Bulk bodies' lines through orjson, as the client's JSON: the stdlib json took 23 us per
    indexed asset, orjson 2.5 us, for the same bytes (5,000 generated assets)."""

    def json_dumps(self, data: Any) -> bytes:
        return orjson.dumps(data, default=self.default)

    def json_loads(self, data: bytes) -> Any:
        return orjson.loads(data)


class SearchIndex:
    """The index behind an alias (``CAIRN_ES_INDEX``), so a rebuild can swap it atomically."""

    def __init__(self, url: str, alias: str, timeout: float = 10.0):
        # The client's aiohttp transport and orjson: a search's CPU in the catalogue went
        # from 1.5 to 0.6 ms with them (httpx's async stack is about 2,000 Python calls a
        # request, the stdlib json a few hundred microseconds per page of hits).
        self.es = AsyncElasticsearch(
            url,
            node_class="aiohttp",  # type: ignore[arg-type]  # a name the client resolves
            serializers={
                OrjsonSerializer.mimetype: OrjsonSerializer(),
                _OrjsonNdjsonSerializer.mimetype: _OrjsonNdjsonSerializer(),
            },
            request_timeout=timeout,
            max_retries=1,
        )
        self.alias = alias
        self.timeout = timeout

    async def close(self) -> None:
        await self.es.close()

    # --- index life cycle ---------------------------------------------------------------------

    async def ensure(self) -> None:
        """Installs the template and creates the first index and alias if there is none."""
        await self.es.indices.put_index_template(
            name=self.alias,
            index_patterns=[f"{self.alias}-v*"],
            template={"settings": SETTINGS, "mappings": MAPPINGS},
            version=TEMPLATE_VERSION,
            meta={"owner": "cairn catalogue"},
        )
        if not await self.es.indices.exists_alias(name=self.alias):
            first = f"{self.alias}-v1"
            try:
                await self.es.indices.create(index=first, aliases={self.alias: {}})
            except ApiError as exc:
                if exc.meta.status != 400 or "already_exists" not in str(exc):
                    raise
        else:
            # An index made by an older template lacks the fields added since (the mapping
            # is strict): adding a field to a live index is allowed and changes nothing else.
            await self.es.indices.put_mapping(index=self.alias, properties=ADDED_FIELDS)

    async def create_generation(self, number: int) -> str:
        name = f"{self.alias}-v{number}"
        await self.es.indices.create(index=name, settings={"refresh_interval": "-1"})
        return name

    async def current_indexes(self) -> list[str]:
        try:
            found = await self.es.indices.get_alias(name=self.alias)
        except NotFoundError:
            return []
        return sorted(found)

    async def swap(self, new_index: str) -> list[str]:
        """Points the alias at ``new_index`` alone, in one step; returns the old indexes."""
        old = await self.current_indexes()
        await self.es.indices.put_settings(index=new_index, settings={"refresh_interval": "1s"})
        await self.es.indices.refresh(index=new_index)
        actions: list[dict[str, Any]] = [{"add": {"index": new_index, "alias": self.alias}}]
        actions += [{"remove": {"index": name, "alias": self.alias}} for name in old]
        await self.es.indices.update_aliases(actions=actions)
        return [name for name in old if name != new_index]

    async def drop(self, indexes: Iterable[str]) -> None:
        for name in indexes:
            await self.es.indices.delete(index=name, ignore_unavailable=True)

    # --- writes -------------------------------------------------------------------------------

    async def bulk(
        self, docs: list[dict[str, Any]], *, refresh: bool = False, index: str | None = None
    ) -> list[Indexed]:
        """Indexes stored documents; an older revision never replaces a newer one.

        Raises when Elasticsearch cannot be reached; per-document failures come back as
        ``Indexed(ok=False)``.
        """
        if not docs:
            return []
        operations: list[dict[str, Any]] = []
        for doc in docs:
            operations.append(
                {
                    "index": {
                        "_index": index or self.alias,
                        "_id": doc["id"],
                        # A revision indexed late (a retry, a second catalogue process) must
                        # not overwrite a newer one.
                        "version": doc["revision"],
                        "version_type": "external_gte",
                    }
                }
            )
            operations.append(index_doc(doc))
        # Through the alias only: a write to a missing alias must fail (and stay queued)
        # rather than let Elasticsearch create a stray index under the alias's name.
        answer = await self.es.bulk(
            operations=operations, refresh=refresh, require_alias=index is None
        )
        results: list[Indexed] = []
        for doc, item in zip(docs, answer["items"], strict=True):
            outcome = item["index"]
            status = outcome.get("status", 500)
            # 409: a newer revision is already there, which is as good as done.
            ok = status < 300 or status == 409
            error = None if ok else orjson.dumps(outcome.get("error")).decode()[:500]
            results.append(Indexed(doc["id"], doc["revision"], ok, error))
        return results

    # --- reads --------------------------------------------------------------------------------

    async def search(self, query: SearchQuery) -> SearchHits:
        body = build_search(query)
        if body is None:
            return SearchHits(docs=[], total=0, facets=Facets(), next_cursor=None)
        if query.q and query.cursor is not None:
            await self._rescore_cursor(body)
        answer = await self._search(body)
        hits = answer["hits"]["hits"]
        next_cursor = None
        if len(hits) > query.limit:
            hits = hits[: query.limit]
            next_cursor = encode_cursor(list(hits[-1]["sort"]))
        docs = [orjson.dumps(hit["_source"]["doc"]) for hit in hits]
        facets = Facets()
        if query.facets:
            aggs = answer.get("aggregations") or {}
            facets = Facets(
                tags=_buckets(aggs.get("tags")),
                types=_buckets(aggs.get("types")),
                drift=_buckets(aggs.get("drift")),
            )
        total = answer["hits"]["total"]["value"]
        return SearchHits(docs=docs, total=total, facets=facets, next_cursor=next_cursor)

    async def _search(self, body: dict[str, Any], *, keep: bool = True) -> Any:
        try:
            # Elasticsearch keeps a search's shard result (hits, total, facets) only when
            # asked to for a request with hits, and drops it at the next refresh that changed
            # the shard: a search asked again costs it about 40% less CPU (2.4 against 4.0 ms
            # on 100k assets), and answers exactly as an uncached one. No body here holds
            # `now`, which would make it uncacheable. ``keep=False`` for one-off requests,
            # which would only push kept ones out of the cache (1% of the heap).
            return await self.es.search(index=self.alias, request_cache=keep, **body)
        except (TransportConnectionError, ConnectionTimeout) as exc:
            raise unreachable(exc) from exc
        except (ApiError, TransportError) as exc:
            raise self._refused(exc) from exc

    async def _rescore_cursor(self, body: dict[str, Any]) -> None:
        """A text page goes on after the previous page's last hit as it scores now: a write
        between two pages moves every match's score (BM25 weighs a word by how many assets
        hold it), and the score the cursor kept would skip or repeat matches. The kept score
        stays when that hit no longer matches."""
        _kept, name_lc, asset_id = body["search_after"]
        probe = {
            "query": {"bool": {"must": [body["query"]], "filter": [{"term": {"id": asset_id}}]}},
            "size": 1,
            "track_total_hits": False,
            "_source": False,
        }
        hits = (await self._search(probe, keep=False))["hits"]["hits"]
        if hits:
            body["search_after"] = [hits[0]["_score"], name_lc, asset_id]

    async def counts(self, field: str, limit: int) -> dict[str, int]:
        """Live assets per value of a keyword field, most first."""
        try:
            answer = await self.es.search(
                index=self.alias,
                size=0,
                query={"term": {"deleted": False}},
                aggs={"values": _terms(field, limit)},
            )
        except (TransportConnectionError, ConnectionTimeout) as exc:
            raise unreachable(exc) from exc
        except (ApiError, TransportError) as exc:
            raise self._refused(exc) from exc
        return _buckets(answer["aggregations"]["values"])

    async def ping(self) -> None:
        """Raises ``Unavailable`` while searches cannot be answered: Elasticsearch does not
        answer, or the index is gone (the readiness check)."""
        try:
            found = await self.es.indices.exists_alias(name=self.alias)
        except (TransportConnectionError, ConnectionTimeout) as exc:
            raise unreachable(exc) from exc
        except (ApiError, TransportError) as exc:
            raise self._refused(exc, "the readiness check") from exc
        if not found:
            raise self._missing()

    def _missing(self) -> Unavailable:
        return Unavailable(
            f"The search index {self.alias!r} does not exist in Elasticsearch; "
            "run `cairn reindex` to rebuild it from MongoDB. Writes are still accepted."
        )

    def _refused(self, exc: Exception, what: str = "the search") -> Unavailable:
        if isinstance(exc, NotFoundError):
            return self._missing()
        log.error("Elasticsearch refused %s: %s", what, exc)
        return Unavailable(f"Elasticsearch did not answer {what}: {exc}")


def _terms(field: str, size: int) -> dict[str, Any]:
    return {"terms": {"field": field, "size": size, "order": [{"_count": "desc"}, {"_key": "asc"}]}}


def _buckets(agg: dict[str, Any] | None) -> dict[str, int]:
    if not agg:
        return {}
    return {bucket["key"]: bucket["doc_count"] for bucket in agg["buckets"]}


def _any_field(kind: str, term: str) -> dict[str, Any]:
    """``term`` matched by a ``kind`` query in some field, scored by its best field."""
    return {
        "dis_max": {
            "queries": [
                {kind: {field: {"value": term, "boost": weight}}}
                for field, weight in WEIGHTS.items()
            ]
        }
    }


def _text_query(text: str) -> dict[str, Any] | None:
    """Every word must match some field; the last word also matches as a prefix."""
    terms = words(text)[:MAX_WORDS]
    if not terms:
        return None
    must = [_any_field("term", term) for term in terms[:-1]]
    must.append(_any_field("prefix", terms[-1]))
    exact = {"term": {"name_lc": {"value": text.strip().lower(), "boost": EXACT_NAME_BOOST}}}
    # A prefix match scores the same whatever the word: the last word found whole scores
    # again, so "sales" ranks sales_daily above salesforce_crm (as bm25 does on SQLite).
    return {"bool": {"must": must, "should": [exact, _any_field("term", terms[-1])]}}


def _check_cursor(cursor: list[Any], text: bool) -> None:
    """A cursor is the sort key of a hit: [score,] name_lc, id; anything else is refused."""
    size = 3 if text else 2
    if len(cursor) != size or not all(isinstance(v, str) for v in cursor[-2:]):
        raise InvalidCursor("The cursor does not belong to this kind of search.")
    if text and (not isinstance(cursor[0], int | float) or isinstance(cursor[0], bool)):
        raise InvalidCursor("The cursor does not belong to this kind of search.")


def build_search(query: SearchQuery) -> dict[str, Any] | None:
    """The request body of a search, or None when nothing can match."""
    filters: list[dict[str, Any]] = []
    if not query.include_deleted:
        filters.append({"term": {"deleted": False}})
    if query.type:
        filters.append({"term": {"type": query.type}})
    if query.name:
        filters.append({"prefix": {"name_lc": query.name.lower()}})
    filters += [{"term": {"tags": tag}} for tag in query.tags]
    filters += [{"term": {"labels": label_pair(key, value)}} for key, value in query.labels]
    if query.owner:
        filters.append({"term": {"owners": query.owner}})
    if query.drifted is not None:
        filters.append({"term": {"drift": "drifted" if query.drifted else "stable"}})

    text = None
    if query.q:
        text = _text_query(query.q)
        if text is None:
            return None  # only punctuation: nothing matches, as on the embedded backend
    sort: list[Any] = [{"name_lc": "asc"}, {"id": "asc"}]
    if text is not None:
        sort.insert(0, {"_score": "desc"})
    body: dict[str, Any] = {
        "query": {"bool": {"filter": filters, **({"must": [text]} if text else {})}},
        "sort": sort,
        "size": query.limit + 1,
        "track_total_hits": True,
        "_source": ["doc"],
    }
    if query.cursor is not None:
        _check_cursor(query.cursor, text is not None)
        body["search_after"] = query.cursor
    if query.offset + query.limit > MAX_RESULT_WINDOW:
        raise InvalidRequest(
            f"Page offsets stop at {MAX_RESULT_WINDOW} results on this backend; "
            "follow next_cursor (the /api/v1/assets routes) to read further."
        )
    # The extra hit that tells whether more follow must fit in the window too (a full
    # 10,000-result Mastro page asks for exactly the window).
    body["size"] = min(query.limit + 1, MAX_RESULT_WINDOW - query.offset)
    if query.offset:
        body["from"] = query.offset
    if query.facets:
        body["aggs"] = {
            "tags": _terms("tags", FACET_LIMIT),
            "types": _terms("type", FACET_LIMIT),
            "drift": _terms("drift", 2),
        }
    return body
