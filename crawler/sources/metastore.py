"""``thrift://metastore:9083``: a Hive Metastore's databases and tables.

Each database is a ``database`` asset; each table a ``table`` asset named ``db.table``, with
its columns and partition keys as the schema, its storage location, a format read from its
input format or SerDe, and its owner. The database -> table link is a lineage edge of origin
``metastore``, sent by the crawl apart from the asset (with the link from the crawled asset at
the table's location), so the lineage picture tells it from manifests' edges.

Calls go through the Thrift bindings pymetastore ships, using the request-style calls
(``get_table_objects_by_name_req``) that Hive 4 serves; Hive 4 dropped the older ``get_table``.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from pymetastore.hive_metastore import ThriftHiveMetastore, ttypes
from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.protocol.TProtocol import TProtocolException
from thrift.Thrift import TException
from thrift.transport.TSocket import TSocket
from thrift.transport.TTransport import TBufferedTransport, TTransportException

from cairn.models import MAX_COLUMNS, CrawlerEdgeOrigin
from cairn.settings import Settings
from crawler.problems import Problem
from crawler.sources.base import SourceAsset, SourceError, SourceListing

TABLES_PER_CALL = 100
# Table parameters the metastore rewrites on its own (DDL times, statistics): kept out of the
# asset, or every ALTER and ANALYZE would look like a change of the asset.
VOLATILE_PARAMETERS = (
    "transient_lastDdlTime",
    "numFiles",
    "numRows",
    "rawDataSize",
    "totalSize",
    "COLUMN_STATS_ACCURATE",
    "numFilesErasureCoded",
)
# Formats by the class names in a table's storage descriptor, most specific first.
FORMATS = (
    ("iceberg", "iceberg"),
    ("parquet", "parquet"),
    ("orc", "orc"),
    ("avro", "avro"),
    ("opencsvserde", "csv"),
    ("jsonserde", "json"),
    ("sequencefile", "sequencefile"),
    ("rcfile", "rcfile"),
    ("textinputformat", "text"),
)


def database_key(name: str) -> str:
    return f"database:{name}"


class MetastoreSource:
    edge_origin: CrawlerEdgeOrigin | None = "metastore"

    def __init__(self, host: str, port: int, settings: Settings) -> None:
        self.host, self.port = host, port
        self.url = f"thrift://{host}:{port}"
        self.timeout_ms = int(settings.http_timeout * 1000)
        if not logging.getLogger("cairn.crawler").isEnabledFor(logging.DEBUG):
            # Thrift logs a refused connection as an error before raising it; the crawl
            # reports it once, with the address and what to check.
            logging.getLogger("thrift").setLevel(logging.CRITICAL)

    @classmethod
    def from_url(cls, url: str, settings: Settings) -> MetastoreSource:
        parts = urlsplit(url)
        if "@" in parts.netloc:
            raise SourceError("a metastore URL carries no credentials; write thrift://host:9083")
        if not parts.hostname or parts.path.strip("/") or parts.query or parts.fragment:
            raise SourceError(f"{url!r}: write a metastore URL as thrift://host:9083")
        try:
            port = parts.port or 9083
        except ValueError as exc:
            raise SourceError(f"{url!r}: the port is not a number") from exc
        return cls(parts.hostname, port, settings)

    def list_assets(self) -> SourceListing:
        sock = TSocket(self.host, self.port)
        sock.setTimeout(self.timeout_ms)
        transport = TBufferedTransport(sock)
        try:
            transport.open()
        except TTransportException as exc:
            raise SourceError(
                f"cannot reach the Hive Metastore at {self.host}:{self.port} ({exc}); is it "
                "running, and is that its Thrift port (metastore.thrift.port, 9083 by default)?"
            ) from exc
        client = ThriftHiveMetastore.Client(TBinaryProtocol(transport))
        try:
            return self._list(client)
        except (TTransportException, TProtocolException) as exc:
            # Another server on the port (an HTTP one answers with what reads as a 16 MB
            # frame), a metastore that wants SASL, or a connection cut mid-crawl.
            raise SourceError(
                f"the Hive Metastore at {self.url} failed a call: {exc!r}; the connection broke "
                "or the server does not speak plain Thrift: is that the metastore's Thrift port "
                "(metastore.thrift.port, 9083 by default)? A metastore that requires SASL "
                "(Kerberos) is not supported"
            ) from exc
        except (TException, OSError) as exc:  # socket timeouts are OSErrors
            raise SourceError(f"the Hive Metastore at {self.url} failed a call: {exc!r}") from exc
        finally:
            transport.close()

    def _list(self, client: Any) -> SourceListing:
        listing = SourceListing()
        for db_name in sorted(client.get_all_databases()):
            try:
                db = client.get_database(db_name)
            except ttypes.NoSuchObjectException:
                continue  # dropped between the two calls
            listed = len(listing.assets)
            listing.assets.append(SourceAsset(database_key(db_name), self._database(db)))
            tables = sorted(client.get_all_tables(db_name))
            for start in range(0, len(tables), TABLES_PER_CALL):
                chunk = tables[start : start + TABLES_PER_CALL]
                try:
                    found = client.get_table_objects_by_name_req(
                        ttypes.GetTablesRequest(dbName=db_name, tblNames=chunk)
                    ).tables
                except (ttypes.UnknownDBException, ttypes.NoSuchObjectException):
                    # Dropped since it was described: gone with its tables, as if it had
                    # been dropped before the crawl (the whole crawl failed on this).
                    del listing.assets[listed:]
                    break
                except ttypes.MetaException as exc:
                    listing.unreadable.update(f"table:{db_name}.{t}" for t in chunk)
                    listing.problems.append(
                        Problem(
                            path=f"{self.url} {db_name}",
                            reason=f"tables {chunk[0]}..{chunk[-1]} not read: {exc.message}",
                            severity="warning",
                        )
                    )
                    continue
                for table in found or ():
                    key = f"table:{db_name}.{table.tableName}"
                    listing.assets.append(
                        SourceAsset(key, self._table(db_name, table), [database_key(db_name)])
                    )
        return listing

    def _database(self, db: Any) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "name": db.name,
            "type": "database",
            "description": db.description or "",
            "owners": [db.ownerName] if db.ownerName else [],
            "labels": {"metastore_catalog": db.catalogName or "hive"},
        }
        if db.locationUri:
            fields["location"] = normalize_location(db.locationUri)
        if db.parameters:
            fields["extra"] = {"metastore": {"parameters": dict(sorted(db.parameters.items()))}}
        return fields

    def _table(self, db_name: str, table: Any) -> dict[str, Any]:
        sd = table.sd or ttypes.StorageDescriptor()
        given = sorted((table.parameters or {}).items())
        params = {k: v for k, v in given if k not in VOLATILE_PARAMETERS}
        partition_keys = [k.name for k in table.partitionKeys or ()]
        columns = [_column(c) for c in sd.cols or ()]
        columns += [_column(k, "partition key") for k in table.partitionKeys or ()]
        serde = sd.serdeInfo.serializationLib if sd.serdeInfo else None
        labels: dict[str, Any] = {
            "table_type": table.tableType or "MANAGED_TABLE",
            "partitioned": bool(partition_keys),
        }
        extra: dict[str, Any] = {
            "database": db_name,
            "partition_keys": partition_keys,
            "input_format": sd.inputFormat,
            "output_format": sd.outputFormat,
            "serde": serde,
            "parameters": params,
        }
        if table.viewOriginalText:
            extra["view_text"] = table.viewOriginalText
        fields: dict[str, Any] = {
            "name": f"{db_name}.{table.tableName}",
            "type": "table",
            "description": params.get("comment", ""),
            "owners": [table.owner] if table.owner else [],
            "labels": labels,
            "schema": columns[:MAX_COLUMNS],
            "extra": {"metastore": {k: v for k, v in extra.items() if v is not None}},
        }
        if sd.location:
            fields["location"] = normalize_location(sd.location)
        table_format = format_of(params, sd.inputFormat, serde)
        if table_format:
            fields["format"] = table_format
        return fields

    def close(self) -> None:
        return None


def _column(col: Any, note: str | None = None) -> dict[str, Any]:
    column: dict[str, Any] = {"name": col.name, "type": col.type or "unknown"}
    description = " - ".join(p for p in (note, col.comment) if p)
    if description:
        column["description"] = description
    return column


def format_of(params: dict[str, str], input_format: str | None, serde: str | None) -> str | None:
    if params.get("table_type", "").lower() == "iceberg":
        return "iceberg"
    text = f"{input_format or ''} {serde or ''}".lower()
    for needle, name in FORMATS:
        if needle in text:
            return name
    return None


def normalize_location(url: str) -> str:
    """Hadoop writes local paths as ``file:/x``; Cairn's volumes as ``file:///x``."""
    if url.startswith("file:/") and not url.startswith("file://"):
        url = "file://" + url[len("file:") :]
    return url.rstrip("/") if url.count("/") > 3 else url
