"""OpenLineage events into the catalogue: datasets and jobs become assets, runs become lineage.

A dataset maps to an asset by (namespace, name): first the asset this mapping created before
(its id is derived from the pair), then, where the namespace is a storage URL Cairn crawls, the
live asset whose ``location`` is that URL (a crawled one first), then a live asset named as the
dataset, and only then a new ``dataset`` asset. A job becomes a ``pipeline`` asset the same way.
Assets found by location or name belong to their manifests or writers and are never changed
here; what the event says of them (schema, column lineage) is kept beside them as reported
facets. A run's inputs -> job -> outputs become reported edges (origin "openlineage", with the
run that last reported them), kept apart from ``depends_on``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from cairn.errors import Conflict, InvalidRequest
from cairn.models import (
    MAX_COLUMNS,
    MAX_LIST,
    MAX_NAME,
    MAX_SHORT,
    OL_MAX_TRANSFORMATIONS,
    Asset,
    AssetWrite,
    ColumnSource,
    LineageReceipt,
    OpenLineageDataset,
    OpenLineageDatasetEvent,
    OpenLineageEvent,
    OpenLineageJobEvent,
    OpenLineageKind,
    OpenLineageNamed,
    OpenLineageRunEvent,
    ReportedEdge,
    ReportedFacet,
    RunUpdate,
    SchemaField,
    check_entries,
)
from cairn.web import body_not_shaped, validated
from catalogue_service.backends.base import AssetStore, LineageReport, PreparedWrite
from connectors.local import file_url

# Namespaces that are storage URLs of a kind Cairn's connectors crawl (OpenLineage's dataset
# naming: ``file``, ``hdfs://host:port``, ``abfss://container@account...``, ``s3://bucket``).
STORAGE_SCHEMES = ("file", "hdfs", "abfss", "s3")
TAG = "openlineage"
DATASET, JOB = "dataset", "job"

EVENT_MODELS: dict[OpenLineageKind, type[OpenLineageEvent]] = {
    "RunEvent": OpenLineageRunEvent,
    "JobEvent": OpenLineageJobEvent,
    "DatasetEvent": OpenLineageDatasetEvent,
}


def event_kind(raw: Any) -> OpenLineageKind:
    """Which of the spec's three events ``raw`` is, from the fields each one requires."""
    if not isinstance(raw, dict):
        raise body_not_shaped(
            "one OpenLineage event, a JSON object (RunEvent, JobEvent or DatasetEvent)"
        )
    if "run" in raw:
        return "RunEvent"
    if "job" in raw:
        return "JobEvent"
    if "dataset" in raw:
        return "DatasetEvent"
    message = "an event needs run and job (RunEvent), job (JobEvent) or dataset (DatasetEvent)"
    raise InvalidRequest(
        f"Fix these fields and send again: run: {message}",
        errors=[{"field": "run", "message": message}],
    )


def ol_id(kind: str, namespace: str, name: str) -> str:
    """The id of the asset this mapping creates for a dataset or job."""
    return "ol-" + hashlib.sha256(f"{kind}\n{namespace}\n{name}".encode()).hexdigest()[:24]


def storage_url(namespace: str, name: str) -> str | None:
    """The URL of a dataset whose namespace is a storage location Cairn crawls, else None."""
    scheme, sep, rest = namespace.partition("://")
    if scheme == "file":
        # ``file`` (or ``file://host``) with the absolute path as the name, written as the
        # local connector writes a crawled file's location.
        return file_url("/" + name.lstrip("/"))
    if not sep or scheme not in STORAGE_SCHEMES or not rest:
        return None
    return namespace.rstrip("/") + "/" + name.lstrip("/")


def asset_name(namespace: str, name: str) -> str:
    """A readable, unique asset name; a long one keeps its end (the table or file) and a hash."""
    text = storage_url(namespace, name) or f"{namespace}/{name}"
    if len(text) <= MAX_NAME:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return "…" + text[-(MAX_NAME - 10) :] + "~" + digest


@dataclass(slots=True)
class Entity:
    """A dataset or job of the event, and the asset it maps to."""

    kind: str
    namespace: str
    name: str
    facets: dict[str, Any]
    where: str  # its place in the event, for messages
    asset: Asset | None = None
    twin: Entity | None = None  # the first mention of the same dataset in the event

    @property
    def own_id(self) -> str:
        return ol_id(self.kind, self.namespace, self.name)

    @property
    def owned(self) -> bool:
        """Whether the asset is the one this mapping created (and so may be rewritten)."""
        return self.asset is None or self.asset.id == self.own_id


def _entity(kind: str, item: OpenLineageNamed, where: str) -> Entity:
    return Entity(kind, item.namespace, item.name, item.facets, where)


class OpenLineageIngest:
    def __init__(self, store: AssetStore):
        self.store = store

    async def ingest(self, raw: Any) -> LineageReceipt:
        kind = event_kind(raw)
        event = validated(EVENT_MODELS[kind], raw)
        job: Entity | None = None
        inputs: list[Entity] = []
        outputs: list[Entity] = []
        if isinstance(event, OpenLineageRunEvent | OpenLineageJobEvent):
            job = _entity(JOB, event.job, "job")
            inputs = [_entity(DATASET, d, f"inputs.{i}") for i, d in enumerate(event.inputs)]
            outputs = [_entity(DATASET, d, f"outputs.{i}") for i, d in enumerate(event.outputs)]
        elif isinstance(event, OpenLineageDatasetEvent):
            outputs = [_entity(DATASET, event.dataset, "dataset")]
        datasets = _unique([*inputs, *outputs])
        facets = _facets([*inputs, *outputs])  # validates before anything is written
        await self._map([*datasets, *([job] if job else [])], facets)

        run_id = event.run.runId if isinstance(event, OpenLineageRunEvent) else None
        at = event.eventTime
        edges: list[ReportedEdge] = []
        if job is not None:
            assert job.asset is not None
            edges += [_edge(_asset_id(e), job.asset.id, run_id, at) for e in inputs]
            edges += [_edge(job.asset.id, _asset_id(e), run_id, at) for e in outputs]
        run = None
        if isinstance(event, OpenLineageRunEvent) and job is not None and job.asset is not None:
            run = RunUpdate(
                job_id=job.asset.id,
                run_id=event.run.runId,
                event_type=event.eventType or "OTHER",
                event_time=at,
                error=_error_message(event.run.facets),
            )
        reported = [
            ReportedFacet(
                asset_id=_asset_id(entity), kind=kind_, value=value, run_id=run_id, reported_at=at
            )
            for entity, kind_, value in facets.resolved(datasets)
        ]
        report = LineageReport(
            event_key=_event_key(kind, event), edges=edges, run=run, facets=reported
        )
        recorded = await self.store.record_lineage(report)
        return LineageReceipt(
            kind=kind,
            duplicate=not recorded,
            job=job.asset.id if job and job.asset else None,
            inputs=[_asset_id(e) for e in inputs],
            outputs=[_asset_id(e) for e in outputs],
            edges=len(edges),
        )

    # --- assets -------------------------------------------------------------------------------

    async def _map(self, entities: list[Entity], facets: _Facets) -> None:
        """Finds or creates each entity's asset (see the module's docstring for the order)."""
        by_id = await self.store.resolve([e.own_id for e in entities])
        rest = []
        for entity in entities:
            entity.asset = by_id.get(entity.own_id)
            if entity.asset is None:
                rest.append(entity)
        # Only entities seen for the first time go further: a known job's next run costs
        # one read here.
        urls = {e.own_id: storage_url(e.namespace, e.name) for e in rest if e.kind == DATASET}
        wanted = [u for u in urls.values() if u]
        located = await self.store.by_location(wanted) if wanted else {}
        for entity in rest:
            url = urls.get(entity.own_id)
            entity.asset = located[url][0] if url and url in located else None
        unnamed = [e for e in rest if e.asset is None]
        names = [asset_name(e.namespace, e.name) for e in unnamed]
        named = await self.store.resolve(names) if names else {}
        for entity in unnamed:
            found = named.get(asset_name(entity.namespace, entity.name))
            # resolve() also answers by id; only a live asset of exactly that name counts.
            if found is not None and found.name == asset_name(entity.namespace, entity.name):
                entity.asset = found
        schemas = {(e.namespace, e.name): cols for e, cols in facets.schemas.values()}
        writes: list[tuple[Entity, PreparedWrite]] = []
        for entity in entities:
            if not entity.owned:
                continue
            item = _asset_write(entity, schemas.get((entity.namespace, entity.name)))
            if item is not None:
                writes.append((entity, PreparedWrite.of(len(writes), item)))
        if not writes:
            return
        results = await self.store.upsert([w for _, w in writes], datetime.now(UTC))
        for (entity, write), result in zip(writes, results, strict=True):
            if result.status == "error" or write.stored is None:
                raise Conflict(
                    f"{entity.where} ({entity.namespace}, {entity.name}) cannot be recorded as "
                    f"asset {entity.own_id}: {result.error}"
                )
            entity.asset = Asset.model_validate(write.stored)


class _Facets:
    """The schema and column-lineage facets of an event's datasets, validated."""

    def __init__(self) -> None:
        self.schemas: dict[str, tuple[Entity, list[SchemaField]]] = {}
        self.columns: dict[str, tuple[Entity, dict[str, list[dict[str, Any]]]]] = {}

    def resolved(self, datasets: list[Entity]) -> Iterable[tuple[Entity, str, Any]]:
        """(entity, kind, value) to store, once assets are mapped; upstream columns name the
        asset of their dataset when the event maps it."""
        ids = {(e.namespace, e.name): _asset_id(e) for e in datasets}
        for entity, columns in self.schemas.values():
            yield entity, "schema", [c.model_dump(mode="json") for c in columns]
        for entity, lineage in self.columns.values():
            value = {
                column: [
                    {**source, "asset_id": ids.get((source["namespace"], source["name"]))}
                    for source in sources
                ]
                for column, sources in lineage.items()
            }
            yield entity, "columnLineage", value


def _facets(entities: list[Entity]) -> _Facets:
    """The schema and column-lineage facets of the event's datasets, validated."""
    found = _Facets()
    for entity in entities:
        schema = entity.facets.get("schema")
        if schema is not None:
            found.schemas[entity.where] = (entity, _schema(schema, f"{entity.where}.facets"))
        lineage = entity.facets.get("columnLineage")
        if lineage is not None:
            where = f"{entity.where}.facets.columnLineage"
            found.columns[entity.where] = (entity, _column_lineage(lineage, where))
    return found


def _unique(entities: list[Entity]) -> list[Entity]:
    """One entity per (namespace, name); a dataset both read and written maps once, and its
    other mentions read their asset through the first (``Entity.twin``)."""
    first: dict[tuple[str, str], Entity] = {}
    for entity in entities:
        key = (entity.namespace, entity.name)
        if key in first:
            entity.twin = first[key]
        else:
            first[key] = entity
    return list(first.values())


def _asset_id(entity: Entity) -> str:
    asset = (entity.twin or entity).asset
    assert asset is not None, "assets are mapped before their ids are read"
    return asset.id


def _edge(upstream: str, downstream: str, run_id: str | None, at: datetime) -> ReportedEdge:
    return ReportedEdge(
        upstream=upstream, downstream=downstream, origin=TAG, run_id=run_id, reported_at=at
    )


def _asset_write(entity: Entity, schema: list[SchemaField] | None) -> AssetWrite | None:
    """The asset this mapping keeps for ``entity``; None when the stored one says it all."""
    current = entity.asset
    unchanged = schema is None or schema == (current.schema_ if current else None)
    if current is not None and not current.deleted and unchanged:
        return None
    description = _description(entity.facets)
    data: dict[str, Any] = {
        "id": entity.own_id,
        "name": asset_name(entity.namespace, entity.name),
        "type": "pipeline" if entity.kind == JOB else "dataset",
        "description": description if description is not None else _default_description(entity),
        "tags": [TAG],
        "labels": {"openlineage_namespace": entity.namespace, "openlineage_name": entity.name},
        "location": storage_url(entity.namespace, entity.name) if entity.kind == DATASET else None,
    }
    columns = schema if schema is not None else (current.schema_ if current else None)
    if columns is not None:
        data["schema"] = [c.model_dump(mode="json") for c in columns]
    try:
        return AssetWrite.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first.get("loc", ()))
        raise InvalidRequest(
            f"{entity.where} cannot be recorded as an asset: {field}: {first.get('msg')}",
            errors=[{"field": entity.where, "message": str(first.get("msg"))}],
        ) from None


def _default_description(entity: Entity) -> str:
    what = "Job" if entity.kind == JOB else "Dataset"
    return f"{what} {entity.name!r} in namespace {entity.namespace!r}, reported by OpenLineage."


def _description(facets: dict[str, Any]) -> str | None:
    documentation = facets.get("documentation")
    if isinstance(documentation, dict) and isinstance(documentation.get("description"), str):
        text = documentation["description"].strip()
        return text or None
    return None


def _error_message(facets: dict[str, Any]) -> str | None:
    error = facets.get("errorMessage")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return error["message"][:MAX_SHORT]
    return None


def _invalid(field: str, message: str) -> InvalidRequest:
    return InvalidRequest(
        f"Fix these fields and send again: {field}: {message}",
        errors=[{"field": field, "message": message}],
    )


def _schema(facet: Any, where: str) -> list[SchemaField]:
    """The schema facet's fields as columns; nested fields are named ``parent.child``."""
    where = f"{where}.schema"
    if not isinstance(facet, dict) or not isinstance(facet.get("fields", []), list):
        raise _invalid(f"{where}.fields", "must be a list of fields")
    columns: list[SchemaField] = []
    seen: set[str] = set()
    top = list(enumerate(facet.get("fields", [])))
    stack: list[tuple[str, str, Any]] = [("", f"{where}.fields.{i}", f) for i, f in reversed(top)]
    while stack:
        prefix, place, field = stack.pop()
        if not isinstance(field, dict) or not isinstance(field.get("name"), str):
            raise _invalid(place, "a field is an object with a name")
        name = prefix + field["name"]
        try:
            # Column names are shown and searched: the rules of other short text apply.
            check_entries([name])
        except ValueError as exc:
            raise _invalid(f"{place}.name", str(exc).replace("an entry", "the name")) from None
        if name in seen:  # the asset would be refused for it: say which field, here
            raise _invalid(
                f"{place}.name", f"the schema names column {name!r} twice; give each column once"
            )
        seen.add(name)
        try:
            columns.append(
                SchemaField(
                    name=name,
                    type=field.get("type") or "unknown",
                    description=field.get("description") or None,
                )
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(p) for p in first.get("loc", ()))
            raise _invalid(f"{place}.{loc}", str(first.get("msg"))) from None
        if len(columns) > MAX_COLUMNS:
            raise _invalid(where, f"holds more than {MAX_COLUMNS} fields")
        nested = field.get("fields") or []
        if isinstance(nested, list):
            stack += [
                (f"{name}.", f"{place}.fields.{i}", f) for i, f in reversed(list(enumerate(nested)))
            ]
    return columns


def _column_lineage(facet: Any, where: str) -> dict[str, list[dict[str, Any]]]:
    """``{column: [upstream column, ...]}`` from a columnLineage facet."""
    fields = facet.get("fields") if isinstance(facet, dict) else None
    if not isinstance(fields, dict):
        raise _invalid(f"{where}.fields", "must map each column to its inputFields")
    if len(fields) > MAX_COLUMNS:
        raise _invalid(f"{where}.fields", f"holds more than {MAX_COLUMNS} columns")
    lineage: dict[str, list[dict[str, Any]]] = {}
    for column, spec in fields.items():
        place = f"{where}.fields.{column}"
        inputs = spec.get("inputFields") if isinstance(spec, dict) else None
        if not isinstance(inputs, list):
            raise _invalid(f"{place}.inputFields", "must be a list of upstream fields")
        if len(inputs) > MAX_LIST:
            raise _invalid(f"{place}.inputFields", f"holds more than {MAX_LIST} fields")
        sources = []
        for i, item in enumerate(inputs):
            try:
                source = ColumnSource(
                    namespace=item["namespace"],
                    name=item["name"],
                    field=item["field"],
                    transformations=_transformations(item.get("transformations")),
                )
                OpenLineageDataset(namespace=source.namespace, name=source.name)
                if not source.field or len(source.field) > MAX_SHORT:
                    raise ValueError(f"field must be 1 to {MAX_SHORT} characters")
            except (KeyError, TypeError, ValueError) as exc:
                reason = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
                raise _invalid(f"{place}.inputFields.{i}", reason.split("\n")[0]) from None
            sources.append(source.model_dump(mode="json", exclude={"asset_id"}))
        lineage[column] = sources
    return lineage


def _transformations(value: Any) -> list[str]:
    if not isinstance(value, list):
        return []
    names = []
    for item in value[:OL_MAX_TRANSFORMATIONS]:
        if isinstance(item, dict):
            parts = [str(item.get(k)) for k in ("type", "subtype") if item.get(k)]
            if parts:
                names.append("/".join(parts)[:64])
    return names


def _event_key(kind: OpenLineageKind, event: OpenLineageEvent) -> str:
    """What makes an event the same event: a RunEvent's run id, time and type; a JobEvent's
    job and time; a DatasetEvent's dataset and time."""
    if isinstance(event, OpenLineageRunEvent):
        parts = [event.run.runId.lower(), str(event.eventType)]
    elif isinstance(event, OpenLineageJobEvent):
        parts = [event.job.namespace, event.job.name]
    else:
        assert isinstance(event, OpenLineageDatasetEvent)
        parts = [event.dataset.namespace, event.dataset.name]
    text = "\n".join([kind, *parts, event.eventTime.isoformat()])
    return hashlib.sha256(text.encode()).hexdigest()


__all__ = ["OpenLineageIngest", "asset_name", "event_kind", "ol_id", "storage_url"]
