"""The feature store's core logic; routes stay a few lines and call this facade.

It turns writes into ``NewVersion``s for the backend, keeps the latest-version cache that makes
``GET /featuresets/{name}`` cheap, computes diffs, and builds the catalogue asset that stands
for each feature set (``featureset:<name>``).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import orjson
from pydantic import ValidationError

from cairn.errors import Conflict, NotFound, Unavailable
from cairn.models import (
    Check,
    ColumnChange,
    FeatureChange,
    FeatureSet,
    FeatureSetDiff,
    FeatureSetMeta,
    FeatureSetWrite,
    FeatureTableSpec,
    MapDiff,
    RowCounts,
    SchemaDiff,
    TableInfo,
)
from cairn.settings import Settings
from cairn.web import invalid_request
from featurestore_service.backends.base import (
    FeatureSetQuery,
    FeatureSetStore,
    Hits,
    NewVersion,
    StoredVersion,
)
from featurestore_service.blobstore import Lease, TableBlobs
from featurestore_service.feature_tables import check_table
from featurestore_service.tables import DecodeSlots

CACHE_MAX_BYTES = 64 * 1024 * 1024
CACHE_MAX_ITEMS = 10_000


def catalogue_id(name: str) -> str:
    """The id (and name) of the catalogue asset that stands for feature set ``name``."""
    return f"featureset:{name}"


class LatestCache:
    """Latest version per name, ready to send; emptied whenever the store's generation moves.

    The generation is the store's commit counter, so a write by this process, another worker
    or another process on the same file is seen on the next request.
    """

    def __init__(self, max_bytes: int = CACHE_MAX_BYTES, max_items: int = CACHE_MAX_ITEMS):
        self.max_bytes = max_bytes
        self.max_items = max_items
        self.generation = -1
        self._items: dict[str, StoredVersion] = {}
        self._bytes = 0

    def get(self, name: str, generation: int) -> StoredVersion | None:
        if generation != self.generation:
            self.clear()
            self.generation = generation
            return None
        return self._items.get(name)

    def put(self, stored: StoredVersion, generation: int) -> None:
        if generation != self.generation or len(stored.doc) > self.max_bytes // 8:
            return  # read under an older generation, or too big to be worth keeping
        old = self._items.pop(stored.name, None)
        if old is not None:
            self._bytes -= len(old.doc)
        while self._items and (
            self._bytes + len(stored.doc) > self.max_bytes or len(self._items) >= self.max_items
        ):
            evicted = self._items.pop(next(iter(self._items)))
            self._bytes -= len(evicted.doc)
        self._items[stored.name] = stored
        self._bytes += len(stored.doc)

    def drop(self, name: str) -> None:
        old = self._items.pop(name, None)
        if old is not None:
            self._bytes -= len(old.doc)

    def clear(self) -> None:
        self._items.clear()
        self._bytes = 0


def _body(
    meta: FeatureSetMeta,
    kind: str,
    *,
    features: list[dict[str, Any]],
    table: TableInfo | None,
    feature_count: int,
    feature_table: FeatureTableSpec | None = None,
) -> dict[str, Any]:
    """Every FeatureSet field in order; the store fills in version, times and etag."""
    return {
        "name": meta.name,
        "version": 0,
        "version_label": meta.version_label,
        "kind": kind,
        "description": meta.description,
        "labels": meta.labels,
        "depends_on": meta.depends_on,
        "feature_count": feature_count,
        "table": table.model_dump(mode="json") if table else None,
        "feature_table": feature_table.model_dump(mode="json") if feature_table else None,
        "created_at": None,
        "created_by": meta.created_by,
        "deleted": False,
        "deleted_at": None,
        "etag": "",
        "features": features,
    }


T = TypeVar("T")
# Awaited with a set's name, what is written, and the checks the write declared.
BeforeWrite = Callable[[str, T, list[Check] | None], Awaitable[None]]


class FeatureStore:
    def __init__(self, store: FeatureSetStore, blobs: TableBlobs, settings: Settings):
        self.store = store
        self.blobs = blobs
        self.settings = settings
        self.cache = LatestCache()
        # Called after every committed write (the catalogue registrar's wake-up).
        self.on_write: Callable[[], None] = lambda: None
        # Called with the set's name after a committed write (online materialization).
        self.on_change: Callable[[str], None] = lambda name: None
        # Called with each committed version (the metric store's profiling queue).
        self.on_version: Callable[[StoredVersion], None] = lambda stored: None
        # Awaited with a table's name, file and the checks its write declared (None: keep the
        # set's) before its version is stored; raising refuses the write (on_fail: reject).
        self.before_table: BeforeWrite[Path] | None = None
        # The same for a set of named values, held to the checks as a one-row table.
        self.before_values: BeforeWrite[list[dict[str, Any]]] | None = None
        # Awaited with a set's name and the checks its write declared once the version is
        # committed (the metric store keeps them as the set's); never for a refused write.
        self.after_commit: Callable[[str, list[Check] | None], Awaitable[None]] | None = None
        # Extra catalogue tags of a set (the metric store's "drifted", "checks-failed").
        self.asset_tags: Callable[[str], Awaitable[list[str]]] | None = None

    # --- writes -------------------------------------------------------------------------------

    async def create(self, write: FeatureSetWrite) -> StoredVersion:
        features = [f.model_dump(mode="json") for f in write.features]
        if write.version is not None:
            await self._check_expected(write.name, write.version)  # 409 before checks run
        if self.before_values is not None:
            await self.before_values(write.name, features, write.checks)
        payload = orjson.dumps(features)
        new = NewVersion(
            name=write.name,
            kind="values",
            body=_body(write, "values", features=features, table=None, feature_count=len(features)),
            content_hash=hashlib.sha256(payload).hexdigest(),
            search_text=" ".join(f.name for f in write.features),
            expected_version=write.version,
        )
        return await self._commit(new, write.checks)

    async def create_table(
        self,
        meta: FeatureSetMeta,
        chunks: AsyncIterator[bytes],
        declared: dict[str, Any] | None = None,
    ) -> StoredVersion:
        """Streams a Parquet upload to disk, checks it, then stores the next version.

        ``declared`` holds the feature-table fields given with this upload; those left out are
        inherited from the latest live version. The result is checked against the file before
        anything is stored.
        """
        if meta.version is not None:
            await self._check_expected(meta.name, meta.version)  # fail before 256 MiB arrive
        feature_table, origin = await self._feature_table(meta.name, declared or {})
        check = None
        if feature_table is not None:
            spec = feature_table

            def check(path: Path, info: TableInfo) -> None:
                check_table(path, info, spec, origin)

        # A failed write removes the blob this upload stored (blobstore.TableBlobs.ingest).
        async with self.blobs.ingest(chunks, self.store.named_blobs, check) as blob:
            info = blob.info
            if self.before_table is not None:
                await self.before_table(meta.name, blob.path, meta.checks)
            new = NewVersion(
                name=meta.name,
                kind="table",
                body=_body(
                    meta,
                    "table",
                    features=[],
                    table=info,
                    feature_count=len(info.columns),
                    feature_table=feature_table,
                ),
                content_hash=info.sha256,
                search_text=" ".join(c.name for c in info.columns),
                blob=info.sha256,
                expected_version=meta.version,
            )
            try:
                stored = await self._commit(new, meta.checks)
                blob.written(stored.name, stored.version)
                return stored
            except BaseException:
                if not await self._surely_not_stored(meta.name, info.sha256):
                    blob.keep()
                raise

    async def _surely_not_stored(self, name: str, sha256: str) -> bool:
        """After a failed write: whether the store surely has no new version naming ``sha256``.

        A write can land and still fail on its way back (a lost acknowledgement); then, or when
        the store cannot answer, the file stays: an orphan file is harmless, a version whose
        file is gone is not.
        """
        try:
            newest = await self.store.newest(name)
        except Exception:
            return False
        return newest is None or newest.blob != sha256

    async def _feature_table(
        self, name: str, declared: dict[str, Any]
    ) -> tuple[FeatureTableSpec | None, str]:
        """The declaration of a new version: ``declared`` over the previous version's."""
        previous = await self.store.latest(name)
        inherited = previous.model().feature_table if previous is not None else None
        if inherited is None and not declared:
            return None, ""
        fields = inherited.model_dump() if inherited is not None else {}
        fields.update(declared)
        origin = "declared with this upload"
        if previous is not None and inherited is not None and set(declared) != set(fields):
            origin = (
                f"inherited from version {previous.version}"
                if not declared
                else (f"declared, the rest inherited from version {previous.version}")
            )
        try:
            return FeatureTableSpec.model_validate(fields), origin
        except ValidationError as exc:
            raise invalid_request(exc) from None

    async def _commit(self, new: NewVersion, checks: list[Check] | None) -> StoredVersion:
        stored = await self.store.create(new, datetime.now(UTC))
        try:
            # Before on_version: the version's profile reads the checks it declared.
            if self.after_commit is not None:
                await self.after_commit(new.name, checks)
        except Exception as exc:
            # The version is stored: say so, or a client would send it again as a new one.
            raise Unavailable(
                f"Version {stored.version} of {new.name!r} was stored, but the checks it "
                f"declared were not kept ({exc}); PUT /api/v1/featuresets/{new.name}/checks "
                "to declare them, rather than sending the version again."
            ) from exc
        finally:
            self.cache.drop(new.name)
            self.on_write()
            self.on_change(new.name)
            self.on_version(stored)
        return stored

    async def _check_expected(self, name: str, expected: int) -> None:
        newest = await self.store.newest(name)
        next_version = (newest.version if newest else 0) + 1
        if expected != next_version:
            if expected < next_version:
                raise Conflict(
                    f"Version {expected} of {name!r} already exists and versions are immutable;"
                    f" leave version out to create version {next_version}."
                )
            raise Conflict(
                f"The next version of {name!r} is {next_version}, not {expected}; leave version "
                "out to get the next one."
            )

    async def delete(self, name: str, version: int) -> StoredVersion:
        stored = await self.store.delete(name, version, datetime.now(UTC))
        if stored is None:
            await self._missing(name, version)
        self.cache.drop(name)
        self.on_write()
        self.on_change(name)
        assert stored is not None
        return stored

    async def refuse_overwrite(self, name: str, version: int) -> NoReturn:
        newest = await self.store.newest(name)
        next_version = (newest.version if newest else 0) + 1
        if newest is not None and version <= newest.version:
            raise Conflict(
                f"Version {version} of {name!r} exists and versions are immutable; POST "
                f"/api/v1/featuresets to create version {next_version} instead."
            )
        raise Conflict(
            f"Versions are assigned by the service and never written in place; POST "
            f"/api/v1/featuresets to create version {next_version} of {name!r}."
        )

    # --- reads --------------------------------------------------------------------------------

    def cached_latest(self, name: str) -> StoredVersion | None:
        """The latest version if it is in the cache: no thread hop, no query."""
        return self.cache.get(name, self.store.generation())

    async def latest(self, name: str) -> StoredVersion:
        generation = self.store.generation()
        hit = self.cache.get(name, generation)
        if hit is not None:
            return hit
        stored = await self.store.latest(name)
        if stored is None:
            newest = await self.store.newest(name)
            if newest is not None:
                raise NotFound(
                    f"Every version of feature set {name!r} is deleted; ask for one by number "
                    f"(GET /api/v1/featuresets/{name}/versions lists them)."
                )
            raise NotFound(
                f"No feature set is named {name!r}; names are case-sensitive "
                "(GET /api/v1/featuresets?name=... searches by prefix)."
            )
        self.cache.put(stored, generation)
        return stored

    async def get(self, name: str, version: int) -> StoredVersion:
        stored = await self.store.get(name, version)
        if stored is None:
            await self._missing(name, version)
        assert stored is not None
        return stored

    async def as_of(self, name: str, at: datetime) -> StoredVersion:
        stored = await self.store.as_of(name, at)
        if stored is None:
            await self.latest(name)  # 404 when the set does not exist at all
            raise NotFound(
                f"Feature set {name!r} had no live version at {at.isoformat()}; its first "
                f"version was created later (GET /api/v1/featuresets/{name}/versions lists them)."
            )
        return stored

    async def _missing(self, name: str, version: int) -> NoReturn:
        newest = await self.store.newest(name)
        if newest is None:
            raise NotFound(f"No feature set is named {name!r}; names are case-sensitive.")
        raise NotFound(
            f"Feature set {name!r} has no version {version}; its versions are 1 to "
            f"{newest.version}."
        )

    async def versions(self, name: str, limit: int, before: int | None) -> bytes:
        hits = await self.store.versions(name, limit, before)
        if hits.total == 0:
            raise NotFound(f"No feature set is named {name!r}; names are case-sensitive.")
        head = orjson.dumps({"total": hits.total, "next_cursor": hits.next_cursor})
        return (
            b'{"name":'
            + orjson.dumps(name)
            + b',"items":['
            + b",".join(hits.docs)
            + b"],"
            + head[1:]
        )

    async def search(self, query: FeatureSetQuery) -> Hits:
        return await self.store.search(query)

    @property
    def decodes(self) -> DecodeSlots:
        """The slots every Parquet decode of this service runs in."""
        return self.blobs.decodes

    async def checkout(self, stored: StoredVersion) -> Lease:
        """A local path to the version's Parquet file until the lease is released (503 when
        the blob store cannot give it)."""
        assert stored.blob is not None, "not a table"
        size = orjson.loads(stored.doc)["table"]["size_bytes"]
        what = f"{stored.name} version {stored.version}"
        return await self.blobs.checkout(stored.blob, what, size)

    # --- diff ---------------------------------------------------------------------------------

    async def diff(self, name: str, old_version: int, new_version: int) -> FeatureSetDiff:
        old_stored = await self.get(name, old_version)
        new_stored = await self.get(name, new_version)
        return diff_versions(
            old_stored.model(),
            new_stored.model(),
            data_changed=old_stored.content_hash != new_stored.content_hash,
        )

    # --- the catalogue asset ------------------------------------------------------------------

    async def catalogue_asset(self, name: str) -> dict[str, Any] | None:
        """The asset that stands for ``name`` in the catalogue: its latest live version."""
        live = await self.store.latest(name)
        shown = live or await self.store.newest(name)
        if shown is None:
            return None
        fs = shown.model()
        labels: dict[str, Any] = {**fs.labels, "version": fs.version, "kind": fs.kind}
        if fs.version_label:
            labels["version_label"] = fs.version_label
        if fs.table is not None:
            schema = [c.model_dump() for c in fs.table.columns]
        else:
            schema = [{"name": f.name, "type": f.dtype} for f in fs.features]
        base = self.settings.featurestore_url.rstrip("/")
        return {
            "id": catalogue_id(name),
            "name": catalogue_id(name),
            "type": "featureset",
            "description": fs.description or f"Feature set {name} in the Cairn feature store.",
            "tags": ["featurestore", *(await self.asset_tags(name) if self.asset_tags else [])],
            "labels": labels,
            "location": f"{base}/api/v1/featuresets/{name}",
            "format": "parquet" if fs.kind == "table" else "json",
            "schema": schema,
            "depends_on": fs.depends_on,
            "published_on": fs.created_at.isoformat(),
            "deleted": live is None,
        }


def diff_versions(old: FeatureSet, new: FeatureSet, *, data_changed: bool) -> FeatureSetDiff:
    old_features = {f.name: f for f in old.features}
    new_features = {f.name: f for f in new.features}
    changed: list[FeatureChange] = []
    unchanged = 0
    for name in old_features.keys() & new_features.keys():
        before, after = old_features[name], new_features[name]
        what: list[Any] = []
        if before.dtype != after.dtype:
            what.append("dtype")
        if orjson.dumps(before.value) != orjson.dumps(after.value):
            what.append("value")
        if what:
            changed.append(FeatureChange(name=name, changed=what, old=before, new=after))
        else:
            unchanged += 1
    columns = None
    rows = None
    if old.table is not None or new.table is not None:
        old_cols = {c.name: c for c in (old.table.columns if old.table else [])}
        new_cols = {c.name: c for c in (new.table.columns if new.table else [])}
        columns = SchemaDiff(
            added=[c for n, c in new_cols.items() if n not in old_cols],
            removed=[c for n, c in old_cols.items() if n not in new_cols],
            changed=[
                ColumnChange(name=n, old=old_cols[n], new=c)
                for n, c in new_cols.items()
                if n in old_cols and old_cols[n] != c
            ],
        )
        old_rows = old.table.rows if old.table else 0
        new_rows = new.table.rows if new.table else 0
        rows = RowCounts(old=old_rows, new=new_rows, delta=new_rows - old_rows)
    return FeatureSetDiff(
        name=new.name,
        old_version=old.version,
        new_version=new.version,
        old_kind=old.kind,
        new_kind=new.kind,
        added=[f for n, f in new_features.items() if n not in old_features],
        removed=[f for n, f in old_features.items() if n not in new_features],
        changed=sorted(changed, key=lambda c: c.name),
        unchanged=unchanged,
        columns=columns,
        rows=rows,
        data_changed=data_changed,
        description_changed=old.description != new.description,
        labels=_map_diff(old.labels, new.labels),
        depends_on_added=[d for d in new.depends_on if d not in old.depends_on],
        depends_on_removed=[d for d in old.depends_on if d not in new.depends_on],
    )


def _map_diff(old: dict[str, Any], new: dict[str, Any]) -> MapDiff:
    return MapDiff(
        added={k: v for k, v in new.items() if k not in old},
        removed={k: v for k, v in old.items() if k not in new},
        changed={k: [old[k], v] for k, v in new.items() if k in old and old[k] != v},
    )
