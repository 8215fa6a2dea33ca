"""Typed clients of the feature store (sync and async).

Values come back as pydantic models (``FeatureSet``, ``FeatureSetVersions``, ...); tables as
``pyarrow.Table`` (over the Arrow IPC stream) or ``pandas.DataFrame`` (``pip install
'cairn-catalogue[pandas]'``). Parquet uploads and downloads stream from and to files.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import anyio
import anyio.to_thread
import httpx
import pyarrow as pa
import pyarrow.parquet as pq

from cairn.client._http import (
    AsyncServiceClient,
    AsyncTransport,
    Call,
    SyncTransport,
    afile_chunks,
    file_chunks,
    headers,
)
from cairn.client.metrics import AsyncMetricsMixin, MetricsMixin
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
from cairn.settings import get_settings

if TYPE_CHECKING:
    import pandas

ARROW = "application/vnd.apache.arrow.stream"
PARQUET = "application/vnd.apache.parquet"
TableData = pa.Table | str | Path | bytes | Any  # Any: a pandas.DataFrame


def _seg(value: str) -> str:
    return quote(value, safe="")


def _featureset(response: httpx.Response) -> FeatureSet:
    return FeatureSet.model_validate_json(response.content)


def _arrow(response: httpx.Response) -> pa.Table:
    return pa.ipc.open_stream(response.content).read_all()


def _where(
    name: str, version: int | None, as_of: datetime | str | None
) -> tuple[str, list[tuple[str, str]]]:
    if version is not None and as_of is not None:
        raise ValueError("give either version or as_of, not both")
    if version is not None:
        return f"/api/v1/featuresets/{_seg(name)}/versions/{int(version)}", []
    path = f"/api/v1/featuresets/{_seg(name)}"
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


class FeatureStoreCalls:
    """The feature store's API as ``Call``s; both clients send these."""

    @staticmethod
    def put(write: FeatureSetWrite) -> Call[FeatureSet]:
        body = write.model_dump(mode="json", exclude_none=True)
        return Call("POST", "/api/v1/featuresets", _featureset, json=body, ok=(201,))

    @staticmethod
    def put_table(meta: FeatureSetMeta, content: Any) -> Call[FeatureSet]:
        params = [("depends_on", d) for d in meta.depends_on]
        params += [("label", f"{k}:{label_text(v)}") for k, v in meta.labels.items()]
        for key in ("description", "version_label", "created_by", "version"):
            value = getattr(meta, key)
            if value:
                params.append((key, str(value)))
        return Call(
            "POST",
            f"/api/v1/featuresets/{_seg(meta.name)}/versions",
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
            f"/api/v1/featuresets/{_seg(name)}/versions",
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
            "DELETE", f"/api/v1/featuresets/{_seg(name)}/versions/{int(version)}", _featureset
        )

    @staticmethod
    def diff(name: str, old: int, new: int) -> Call[FeatureSetDiff]:
        return Call(
            "GET",
            f"/api/v1/featuresets/{_seg(name)}/diff",
            lambda r: FeatureSetDiff.model_validate_json(r.content),
            [("from", str(old)), ("to", str(new))],
        )


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
        timeout: float = 60.0,
        **httpx_options: Any,
    ):
        settings = get_settings()
        key = api_key or (settings.api_key.get_secret_value() if settings.api_key else None)
        self._t = SyncTransport(
            base_url or settings.featurestore_url,
            headers(key, "featurestore"),
            timeout,
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
    ) -> FeatureSet:
        """Stores the next version of a table: a pyarrow Table, a DataFrame, a path or bytes."""
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
            return self._t.send(FeatureStoreCalls.put_table(meta, file_chunks(path)))

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

        For a table, ``data`` holds a page of rows (``limit``, ``offset``, ``columns``).
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
        """Streams a table's Parquet bytes into ``target``."""
        call = FeatureStoreCalls.table(name, version, as_of, columns, limit, PARQUET)
        target = Path(target)
        with target.open("wb") as handle:
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
        timeout: float = 60.0,
        connect_timeout: float | None = None,
        retries: int = 0,
        **httpx_options: Any,
    ):
        settings = get_settings()
        key = api_key or (settings.api_key.get_secret_value() if settings.api_key else None)
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
    ) -> FeatureSet:
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
            return await self._t.send(FeatureStoreCalls.put_table(meta, afile_chunks(path)))
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
        """Streams a table's Parquet bytes into ``target`` (written off the event loop)."""
        call = FeatureStoreCalls.table(name, version, as_of, columns, limit, PARQUET)
        target = Path(target)
        async with await anyio.open_file(target, "wb") as handle:
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

    async def aclose(self) -> None:
        await self._t.aclose()

    async def __aenter__(self) -> AsyncFeatureStoreClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
