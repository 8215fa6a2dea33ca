"""Typed clients of the feature store (sync and async).

Values come back as pydantic models (``FeatureSet``, ``FeatureSetVersions``, ...); tables as
``pyarrow.Table`` (over the Arrow IPC stream) or ``pandas.DataFrame`` (``pip install
'cairn-catalogue[pandas]'``). Parquet uploads and downloads stream from and to files.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import anyio
import anyio.to_thread
import httpx

from cairn.client._http import (
    AsyncServiceClient,
    AsyncTransport,
    Call,
    ServiceUnreachable,
    SyncTransport,
    afile_chunks,
    client_limits,
    file_chunks,
    headers,
)
from cairn.client._lazy import LazyModule
from cairn.client.metrics import AsyncMetricsMixin, MetricsMixin
from cairn.client.online import OnlineFeatures, online_body
from cairn.models import (
    Feature,
    FeatureSet,
    FeatureSetDiff,
    FeatureSetMeta,
    FeatureSetPage,
    FeatureSetVersions,
    FeatureSetWrite,
    label_text,
)
from cairn.segments import path_segment
from cairn.settings import get_settings

if TYPE_CHECKING:
    import pandas
    import pyarrow as pa
    import pyarrow.parquet as pq

    TableData: TypeAlias = pa.Table | str | Path | bytes | Any  # Any: a pandas.DataFrame
else:
    # Imported on first use (cairn.client._lazy): the UI never touches a table.
    pa = LazyModule("pyarrow")
    pq = LazyModule("pyarrow.parquet")

ARROW = "application/vnd.apache.arrow.stream"
PARQUET = "application/vnd.apache.parquet"


def _featureset(response: httpx.Response) -> FeatureSet:
    return FeatureSet.model_validate_json(response.content)


def _arrow(response: httpx.Response) -> pa.Table:
    return pa.ipc.open_stream(response.content).read_all()


def _training_set(response: httpx.Response) -> pa.Table:
    """The answer, checked to hold every row of the entity frame (a cut stream may not say)."""
    table = _arrow(response)
    expected = response.headers.get("x-cairn-rows")
    if expected is not None and int(expected) != table.num_rows:
        raise ServiceUnreachable(
            f"The training set stopped after {table.num_rows} of {expected} rows; ask again."
        )
    return table


def _where(
    name: str, version: int | None, as_of: datetime | str | None
) -> tuple[str, list[tuple[str, str]]]:
    if version is not None and as_of is not None:
        raise ValueError("give either version or as_of, not both")
    if version is not None:
        return f"/api/v1/featuresets/{path_segment(name)}/versions/{int(version)}", []
    path = f"/api/v1/featuresets/{path_segment(name)}"
    if as_of is None:
        return path, []
    text = as_of.isoformat() if isinstance(as_of, datetime) else as_of
    return path, [("as_of", text)]


def _table_params(
    columns: list[str] | None, limit: int | None, offset: int | None = None
) -> list[tuple[str, str]]:
    params = []
    if columns:
        params.append(("columns", ",".join(columns)))
    if limit is not None:
        params.append(("limit", str(limit)))
    if offset:
        params.append(("offset", str(offset)))
    return params


def feature_table_params(declared: dict[str, Any]) -> list[tuple[str, str]]:
    """Query parameters of a feature-table declaration; fields left out are inherited."""
    params = [("entities", e) for e in declared.get("entities") or ()]
    for key in ("timestamp", "created_timestamp"):
        if declared.get(key):
            params.append((key, str(declared[key])))
    ttl = declared.get("ttl")
    if isinstance(ttl, timedelta):
        ttl = int(ttl.total_seconds())
    if ttl:
        params.append(("ttl", str(ttl)))
    return params


def _declared(
    entities: list[str] | str | None,
    timestamp: str | None,
    created_timestamp: str | None,
    ttl: int | str | timedelta | None,
) -> dict[str, Any]:
    if isinstance(entities, str):
        entities = [entities]
    return {
        "entities": entities,
        "timestamp": timestamp,
        "created_timestamp": created_timestamp,
        "ttl": ttl,
    }


class FeatureStoreCalls:
    """The feature store's API as ``Call``s; both clients send these."""

    @staticmethod
    def put(write: FeatureSetWrite) -> Call[FeatureSet]:
        body = write.model_dump(mode="json", exclude_none=True)
        return Call("POST", "/api/v1/featuresets", _featureset, json=body, ok=(201,))

    @staticmethod
    def put_table(
        meta: FeatureSetMeta, content: Any, feature_table: dict[str, Any] | None = None
    ) -> Call[FeatureSet]:
        params = [("depends_on", d) for d in meta.depends_on]
        params += [("label", f"{k}:{label_text(v)}") for k, v in meta.labels.items()]
        for key in ("description", "version_label", "created_by", "version"):
            value = getattr(meta, key)
            if value:
                params.append((key, str(value)))
        params += feature_table_params(feature_table or {})
        return Call(
            "POST",
            f"/api/v1/featuresets/{path_segment(meta.name)}/versions",
            _featureset,
            params=params,
            content=content,
            headers={"content-type": PARQUET},
            ok=(201,),
        )

    @staticmethod
    def get(
        name: str,
        version: int | None,
        as_of: datetime | str | None,
        columns: list[str] | None,
        limit: int | None,
        offset: int | None,
    ) -> Call[FeatureSet]:
        path, params = _where(name, version, as_of)
        params += _table_params(columns, limit, offset)
        return Call("GET", path, _featureset, params, headers={"accept": "application/json"})

    @staticmethod
    def table(
        name: str,
        version: int | None,
        as_of: datetime | str | None,
        columns: list[str] | None,
        limit: int | None,
        media: str = ARROW,
    ) -> Call[pa.Table]:
        path, params = _where(name, version, as_of)
        params += _table_params(columns, limit)
        return Call("GET", path, _arrow, params, headers={"accept": media})

    @staticmethod
    def versions(name: str, limit: int, cursor: str | None) -> Call[FeatureSetVersions]:
        params = [("limit", str(limit))] + ([("cursor", cursor)] if cursor else [])
        return Call(
            "GET",
            f"/api/v1/featuresets/{path_segment(name)}/versions",
            lambda r: FeatureSetVersions.model_validate_json(r.content),
            params,
        )

    @staticmethod
    def search(
        name: str | None,
        labels: dict[str, Any] | None,
        q: str | None,
        limit: int,
        cursor: str | None,
    ) -> Call[FeatureSetPage]:
        params = [("limit", str(limit))]
        if name:
            params.append(("name", name))
        if q:
            params.append(("q", q))
        params += [("label", f"{k}:{label_text(v)}") for k, v in (labels or {}).items()]
        if cursor:
            params.append(("cursor", cursor))
        return Call(
            "GET",
            "/api/v1/featuresets",
            lambda r: FeatureSetPage.model_validate_json(r.content),
            params,
        )

    @staticmethod
    def delete(name: str, version: int) -> Call[FeatureSet]:
        return Call(
            "DELETE",
            f"/api/v1/featuresets/{path_segment(name)}/versions/{int(version)}",
            _featureset,
        )

    @staticmethod
    def online(
        features: list[str], entities: dict[str, list[Any]], full_feature_names: bool
    ) -> Call[OnlineFeatures]:
        return Call(
            "POST",
            "/api/v1/online-features",
            OnlineFeatures.from_response,
            json=online_body(features, entities, full_feature_names),
            idempotent=True,  # a lookup
        )

    @staticmethod
    def materialize(name: str, version: int | None) -> Call[dict[str, Any]]:
        params = [("version", str(int(version)))] if version is not None else []
        return Call(
            "POST",
            f"/api/v1/featuresets/{path_segment(name)}/materialize",
            lambda r: r.json(),
            params,
            idempotent=True,  # writes the version online; again, the same rows
        )

    @staticmethod
    def online_state(name: str) -> Call[dict[str, Any]]:
        return Call("GET", f"/api/v1/featuresets/{path_segment(name)}/online", lambda r: r.json())

    @staticmethod
    def diff(name: str, old: int, new: int) -> Call[FeatureSetDiff]:
        return Call(
            "GET",
            f"/api/v1/featuresets/{path_segment(name)}/diff",
            lambda r: FeatureSetDiff.model_validate_json(r.content),
            [("from", str(old)), ("to", str(new))],
        )

    @staticmethod
    def historical(
        features: list[str], full_feature_names: bool, content: Any, media: str, accept: str = ARROW
    ) -> Call[pa.Table]:
        """``POST /api/v1/historical-features``: the entity frame as the body, Arrow back."""
        if isinstance(features, str):
            features = [features]
        params = [("features", f) for f in features]
        if full_feature_names:
            params.append(("full_feature_names", "true"))
        return Call(
            "POST",
            "/api/v1/historical-features",
            _training_set,
            params,
            content=content,
            headers={"content-type": media, "accept": accept},
            idempotent=True,  # a lookup (the body is the entity frame)
        )


def entity_frame(entity_df: Any) -> tuple[Any, str, Any]:
    """The body and its media type for an entity frame, and the DataFrame's index when pandas
    came in (else None).

    A pyarrow Table or a DataFrame goes as an Arrow IPC stream (no Parquet encoding on either
    side); a path goes as the Parquet file it names, streamed from disk.
    """
    if isinstance(entity_df, str | Path):
        return Path(entity_df), PARQUET, None
    if isinstance(entity_df, pa.Table):
        table, index = entity_df, None
    else:
        table, index = pa.Table.from_pandas(entity_df, preserve_index=False), entity_df.index
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes(), ARROW, index


def training_set(table: pa.Table, pandas_index: Any) -> Any:
    """The answer as asked: a DataFrame (versions in ``attrs``) or the Arrow table."""
    if pandas_index is None:
        return table
    frame = _pandas(table)
    # One row per entity row, in order: the entity frame's own index lets
    # ``entity_df["x"] = answer["x"]`` line up, as it would not with a fresh 0..n one.
    if len(frame) == len(pandas_index):
        frame.index = pandas_index
    metadata = table.schema.metadata or {}
    for key in (b"cairn.feature_versions", b"cairn.features"):
        if key in metadata:
            frame.attrs[key.decode()] = metadata[key].decode()
    return frame


def make_write(
    name: str,
    features: list[Feature | dict[str, Any]],
    **meta: Any,
) -> FeatureSetWrite:
    """A ``FeatureSetWrite`` checked on the client: bad dtypes fail before any request."""
    data = {k: v for k, v in meta.items() if v is not None}
    data["features"] = [f.model_dump() if isinstance(f, Feature) else f for f in features]
    return FeatureSetWrite.model_validate({"name": name, **data})


def make_meta(name: str, **meta: Any) -> FeatureSetMeta:
    return FeatureSetMeta.model_validate(
        {"name": name, **{k: v for k, v in meta.items() if v is not None}}
    )


@contextlib.contextmanager
def parquet_file(data: TableData) -> Iterator[str]:
    """A path to Parquet bytes for ``data``: the file itself, or a temporary file."""
    if isinstance(data, str | Path):
        yield str(data)
        return
    handle, path = tempfile.mkstemp(suffix=".parquet", prefix="cairn-upload-")
    os.close(handle)
    try:
        if isinstance(data, bytes | bytearray):
            Path(path).write_bytes(data)
        else:
            table = (
                data
                if isinstance(data, pa.Table)
                else pa.Table.from_pandas(data, preserve_index=False)
            )
            pq.write_table(table, path)
        yield path
    finally:
        os.unlink(path)


def _in_place(target: Path) -> bool:
    """A target written as the answer arrives rather than renamed over: a pipe or a device,
    and any symlink (``/dev/stdout`` is one), since a rename would replace the link itself."""
    return target.is_symlink() or (target.exists() and not target.is_file())


@contextlib.contextmanager
def _replacing(target: Path) -> Iterator[Path]:
    """The path to write ``target``'s new content to: a ``.part`` file beside it (one file
    system, so the rename is atomic) that replaces ``target`` only when the block ends without
    an error, so a refused download leaves the old file whole; ``target`` itself when it is
    written in place. Close the file inside the block."""
    if _in_place(target):
        yield target
        return
    part = Path(f"{target}.part")
    try:
        yield part
        os.replace(part, target)
    finally:
        part.unlink(missing_ok=True)


def _pandas(table: pa.Table) -> pandas.DataFrame:
    try:
        import pandas  # noqa: F401
    except ImportError:
        raise ImportError(
            "DataFrames need pandas: pip install 'cairn-catalogue[pandas]' (or use get_table for a "
            "pyarrow.Table)"
        ) from None
    return table.to_pandas()


class FeatureStoreClient(MetricsMixin):
    """``with FeatureStoreClient() as fs: fs.get("churn_model_serving").features``"""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float | None = None,
        retries: int | None = None,
        **httpx_options: Any,
    ):
        settings = get_settings()
        key = api_key or (settings.api_key.get_secret_value() if settings.api_key else None)
        timeout, retries = client_limits(settings, timeout, retries)
        self._t = SyncTransport(
            base_url or settings.featurestore_url,
            headers(key, "featurestore"),
            timeout,
            retries=retries,
            **httpx_options,
        )

    def put(
        self,
        name: str,
        features: list[Feature | dict[str, Any]],
        *,
        description: str | None = None,
        labels: dict[str, Any] | None = None,
        depends_on: list[str] | None = None,
        version_label: str | None = None,
        created_by: str | None = None,
        version: int | None = None,
    ) -> FeatureSet:
        """Stores the next version of a set of named values; ``version`` guards a race."""
        write = make_write(
            name,
            features,
            description=description,
            labels=labels,
            depends_on=depends_on,
            version_label=version_label,
            created_by=created_by,
            version=version,
        )
        return self._t.send(FeatureStoreCalls.put(write))

    def put_table(
        self,
        name: str,
        data: TableData,
        *,
        description: str | None = None,
        labels: dict[str, Any] | None = None,
        depends_on: list[str] | None = None,
        version_label: str | None = None,
        created_by: str | None = None,
        version: int | None = None,
        entities: list[str] | str | None = None,
        timestamp: str | None = None,
        created_timestamp: str | None = None,
        ttl: int | str | timedelta | None = None,
    ) -> FeatureSet:
        """Stores the next version of a table: a pyarrow Table, a DataFrame, a path or bytes.

        ``entities``, ``timestamp``, ``created_timestamp`` and ``ttl`` declare a feature table
        (DESIGN 9); those left out are inherited from the previous version.
        """
        declared = _declared(entities, timestamp, created_timestamp, ttl)
        meta = make_meta(
            name,
            description=description,
            labels=labels,
            depends_on=depends_on,
            version_label=version_label,
            created_by=created_by,
            version=version,
        )
        with parquet_file(data) as path:
            return self._t.send(FeatureStoreCalls.put_table(meta, file_chunks(path), declared))

    def get(
        self,
        name: str,
        *,
        version: int | None = None,
        as_of: datetime | str | None = None,
        columns: list[str] | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> FeatureSet:
        """The latest live version, a numbered one, or the one current ``as_of``.

        For a table, ``data`` holds a page of rows (``limit``, ``offset``, ``columns``); for
        a set of named values, ``columns`` keeps only the features named.
        """
        return self._t.send(FeatureStoreCalls.get(name, version, as_of, columns, limit, offset))

    def get_table(
        self,
        name: str,
        *,
        version: int | None = None,
        as_of: datetime | str | None = None,
        columns: list[str] | None = None,
        limit: int | None = None,
    ) -> pa.Table:
        return self._t.send(FeatureStoreCalls.table(name, version, as_of, columns, limit))

    def get_dataframe(
        self,
        name: str,
        *,
        version: int | None = None,
        as_of: datetime | str | None = None,
        columns: list[str] | None = None,
        limit: int | None = None,
    ) -> pandas.DataFrame:
        return _pandas(
            self.get_table(name, version=version, as_of=as_of, columns=columns, limit=limit)
        )

    def download(
        self,
        name: str,
        target: str | Path,
        *,
        version: int | None = None,
        as_of: datetime | str | None = None,
        columns: list[str] | None = None,
        limit: int | None = None,
    ) -> Path:
        """Streams a table's Parquet bytes into ``target``, which is replaced only once the
        whole answer is in (a refused or broken download leaves it as it was)."""
        call = FeatureStoreCalls.table(name, version, as_of, columns, limit, PARQUET)
        target = Path(target)
        with _replacing(target) as path, path.open("wb") as handle:
            self._t.stream_to(call, handle.write)
        return target

    def versions(
        self, name: str, *, limit: int = 100, cursor: str | None = None
    ) -> FeatureSetVersions:
        return self._t.send(FeatureStoreCalls.versions(name, limit, cursor))

    def search(
        self,
        *,
        name: str | None = None,
        labels: dict[str, Any] | None = None,
        q: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> FeatureSetPage:
        return self._t.send(FeatureStoreCalls.search(name, labels, q, limit, cursor))

    def delete(self, name: str, version: int) -> FeatureSet:
        return self._t.send(FeatureStoreCalls.delete(name, version))

    def diff(self, name: str, old: int, new: int) -> FeatureSetDiff:
        return self._t.send(FeatureStoreCalls.diff(name, old, new))

    def get_historical_features(
        self, entity_df: Any, features: list[str], *, full_feature_names: bool = False
    ) -> Any:
        """A point-in-time correct training set (DESIGN 9), one row per entity-frame row.

        ``entity_df``: a DataFrame, a pyarrow Table or the path of a Parquet file, with the
        join keys and ``event_timestamp`` (naive times are UTC). A DataFrame comes back as a
        DataFrame, anything else as a pyarrow Table; the versions used are in the Arrow schema
        metadata (``cairn.feature_versions``) or the DataFrame's ``attrs``.
        """
        body, media, pandas_index = entity_frame(entity_df)
        if isinstance(body, Path):
            body = file_chunks(str(body))
        table = self._t.send(
            FeatureStoreCalls.historical(features, full_feature_names, body, media)
        )
        return training_set(table, pandas_index)

    def download_historical_features(
        self,
        entity_path: str | Path,
        features: list[str],
        target: str | Path,
        *,
        full_feature_names: bool = False,
        progress: Callable[[str, int], object] | None = None,
    ) -> httpx.Headers:
        """Streams a Parquet entity frame up and the training set down into ``target`` (Parquet).

        ``progress("sent" | "received", bytes)`` is called as the bytes move.
        """
        report = progress or (lambda what, count: None)

        def sent() -> Iterator[bytes]:
            for chunk in file_chunks(str(entity_path)):
                yield chunk
                report("sent", len(chunk))

        call = FeatureStoreCalls.historical(
            features, full_feature_names, sent(), PARQUET, accept=PARQUET
        )
        with _replacing(Path(target)) as path, path.open("wb") as out:

            def write(chunk: bytes) -> None:
                out.write(chunk)
                report("received", len(chunk))

            return self._t.stream_to(call, write)

    def get_online_features(
        self,
        features: list[str],
        entities: dict[str, list[Any]],
        full_feature_names: bool = False,
    ) -> OnlineFeatures:
        """Latest values of ``entities`` (``{"customer_id": [...]}``) from the online store.

        ``features`` are references: ``set:feature``, ``set:*`` or ``set@3:feature``. The
        answer has ``to_dict()``, ``to_arrow()``, ``to_df()`` and Feast's JSON in ``raw``.
        """
        return self._t.send(FeatureStoreCalls.online(features, entities, full_feature_names))

    def materialize(self, name: str, version: int | None = None) -> dict[str, Any]:
        """Writes the latest (or ``version``) of a feature table online now; its online state."""
        return self._t.send(FeatureStoreCalls.materialize(name, version))

    def online_state(self, name: str) -> dict[str, Any]:
        """Live version, key count, materialized_at and pending work of a feature table."""
        return self._t.send(FeatureStoreCalls.online_state(name))

    def close(self) -> None:
        self._t.close()

    def __enter__(self) -> FeatureStoreClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncFeatureStoreClient(AsyncServiceClient, AsyncMetricsMixin):
    """``async with AsyncFeatureStoreClient() as fs: await fs.get("churn_model_serving")``"""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float | None = None,
        connect_timeout: float | None = None,
        retries: int | None = None,
        **httpx_options: Any,
    ):
        settings = get_settings()
        key = api_key or (settings.api_key.get_secret_value() if settings.api_key else None)
        timeout, retries = client_limits(settings, timeout, retries)
        self._t = AsyncTransport(
            base_url or settings.featurestore_url,
            headers(key, "featurestore"),
            timeout,
            connect_timeout=connect_timeout,
            retries=retries,
            **httpx_options,
        )

    async def put(
        self,
        name: str,
        features: list[Feature | dict[str, Any]],
        *,
        description: str | None = None,
        labels: dict[str, Any] | None = None,
        depends_on: list[str] | None = None,
        version_label: str | None = None,
        created_by: str | None = None,
        version: int | None = None,
    ) -> FeatureSet:
        write = make_write(
            name,
            features,
            description=description,
            labels=labels,
            depends_on=depends_on,
            version_label=version_label,
            created_by=created_by,
            version=version,
        )
        return await self._t.send(FeatureStoreCalls.put(write))

    async def put_table(
        self,
        name: str,
        data: TableData,
        *,
        description: str | None = None,
        labels: dict[str, Any] | None = None,
        depends_on: list[str] | None = None,
        version_label: str | None = None,
        created_by: str | None = None,
        version: int | None = None,
        entities: list[str] | str | None = None,
        timestamp: str | None = None,
        created_timestamp: str | None = None,
        ttl: int | str | timedelta | None = None,
    ) -> FeatureSet:
        declared = _declared(entities, timestamp, created_timestamp, ttl)
        meta = make_meta(
            name,
            description=description,
            labels=labels,
            depends_on=depends_on,
            version_label=version_label,
            created_by=created_by,
            version=version,
        )
        files = parquet_file(data)
        path = await anyio.to_thread.run_sync(files.__enter__)
        try:
            return await self._t.send(
                FeatureStoreCalls.put_table(meta, afile_chunks(path), declared)
            )
        finally:
            await anyio.to_thread.run_sync(files.__exit__, None, None, None)

    async def get(
        self,
        name: str,
        *,
        version: int | None = None,
        as_of: datetime | str | None = None,
        columns: list[str] | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> FeatureSet:
        return await self._t.send(
            FeatureStoreCalls.get(name, version, as_of, columns, limit, offset)
        )

    async def get_table(
        self,
        name: str,
        *,
        version: int | None = None,
        as_of: datetime | str | None = None,
        columns: list[str] | None = None,
        limit: int | None = None,
    ) -> pa.Table:
        return await self._t.send(FeatureStoreCalls.table(name, version, as_of, columns, limit))

    async def get_dataframe(
        self,
        name: str,
        *,
        version: int | None = None,
        as_of: datetime | str | None = None,
        columns: list[str] | None = None,
        limit: int | None = None,
    ) -> pandas.DataFrame:
        table = await self.get_table(
            name, version=version, as_of=as_of, columns=columns, limit=limit
        )
        return _pandas(table)

    async def download(
        self,
        name: str,
        target: str | Path,
        *,
        version: int | None = None,
        as_of: datetime | str | None = None,
        columns: list[str] | None = None,
        limit: int | None = None,
    ) -> Path:
        """Streams a table's Parquet bytes into ``target`` (written off the event loop), which
        is replaced only once the whole answer is in."""
        call = FeatureStoreCalls.table(name, version, as_of, columns, limit, PARQUET)
        target = Path(target)
        with _replacing(target) as path:
            async with await anyio.open_file(path, "wb") as handle:
                await self._t.stream_to(call, handle.write)
        return target

    async def versions(
        self, name: str, *, limit: int = 100, cursor: str | None = None
    ) -> FeatureSetVersions:
        return await self._t.send(FeatureStoreCalls.versions(name, limit, cursor))

    async def search(
        self,
        *,
        name: str | None = None,
        labels: dict[str, Any] | None = None,
        q: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> FeatureSetPage:
        return await self._t.send(FeatureStoreCalls.search(name, labels, q, limit, cursor))

    async def delete(self, name: str, version: int) -> FeatureSet:
        return await self._t.send(FeatureStoreCalls.delete(name, version))

    async def diff(self, name: str, old: int, new: int) -> FeatureSetDiff:
        return await self._t.send(FeatureStoreCalls.diff(name, old, new))

    async def get_historical_features(
        self, entity_df: Any, features: list[str], *, full_feature_names: bool = False
    ) -> Any:
        """The async twin of ``FeatureStoreClient.get_historical_features``."""
        body, media, pandas_index = entity_frame(entity_df)
        if isinstance(body, Path):
            body = afile_chunks(str(body))
        table = await self._t.send(
            FeatureStoreCalls.historical(features, full_feature_names, body, media)
        )
        return training_set(table, pandas_index)

    async def get_online_features(
        self,
        features: list[str],
        entities: dict[str, list[Any]],
        full_feature_names: bool = False,
    ) -> OnlineFeatures:
        return await self._t.send(FeatureStoreCalls.online(features, entities, full_feature_names))

    async def materialize(self, name: str, version: int | None = None) -> dict[str, Any]:
        return await self._t.send(FeatureStoreCalls.materialize(name, version))

    async def online_state(self, name: str) -> dict[str, Any]:
        return await self._t.send(FeatureStoreCalls.online_state(name))

    async def aclose(self) -> None:
        await self._t.aclose()

    async def __aenter__(self) -> AsyncFeatureStoreClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
