"""Every ``CAIRN_*`` environment variable is read here and nowhere else.

Each field's description is the documentation; ``tests/test_docs_and_cli.py`` checks that
every setting appears in the README's configuration table with its default.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings import SettingsError as _SourceError

DEFAULT_MANIFEST_PATTERNS = ["MANIFEST.yaml", "MANIFEST.yml", "*.cairn.yaml", "*.cairn.yml"]

# The Mastro asset types; CAIRN_EXTRA_TYPES can widen the set.
ASSET_TYPES = (
    "database",
    "dataset",
    "featureset",
    "embedding",
    "model",
    "notebook",
    "pipeline",
    "report",
    "service",
    "stream",
    "table",
    "user",
    "workflow",
)

# Names both uvicorn and the logging module know (lower-case: uvicorn's own spelling).
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
_LOG_LEVEL_ALIASES = {"warn": "warning", "fatal": "critical"}  # the logging module's aliases


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CAIRN_", extra="ignore")

    data_dir: Path = Field(
        Path(".cairn"), description="Folder for the embedded databases and crawl state."
    )
    backend: str = Field(
        "sqlite",
        description=(
            "Store backend of both services: `sqlite` (embedded, one file each under the data "
            "dir) or `mongo` (MongoDB as the source of truth, Elasticsearch as the catalogue's "
            "search index; `pip install 'cairn-catalogue[mongo]'`)."
        ),
    )
    mongo_url: SecretStr = Field(
        SecretStr("mongodb://127.0.0.1:27017"),
        description="MongoDB connection string (`mongo` backend); may carry credentials.",
    )
    mongo_db: str = Field(
        "cairn", description="MongoDB database that holds the catalogue and feature store."
    )
    mongo_timeout: float = Field(
        5.0, description="Seconds to find a MongoDB server before a request answers 503."
    )
    es_url: str = Field(
        "http://127.0.0.1:9200", description="Elasticsearch base URL (`mongo` backend)."
    )
    es_index: str = Field(
        "cairn-assets",
        description="Elasticsearch index (an alias over versioned indexes) of the catalogue.",
    )
    catalogue_host: str = Field("127.0.0.1", description="Address the catalogue listens on.")
    catalogue_port: int = Field(8001, ge=1, le=65535, description="Port of the catalogue service.")
    featurestore_host: str = Field("127.0.0.1", description="Address the feature store listens on.")
    featurestore_port: int = Field(
        8002, ge=1, le=65535, description="Port of the feature store service."
    )
    ui_host: str = Field("127.0.0.1", description="Address the web UI listens on.")
    ui_port: int = Field(8080, ge=1, le=65535, description="Port of the web UI.")
    featurestore_url: str = Field(
        "http://127.0.0.1:8002", description="Feature store base URL used by the UI and clients."
    )
    max_upload_bytes: int = Field(
        256 * 1024 * 1024, description="Largest Parquet upload the feature store accepts."
    )
    table_max_rows: int = Field(
        100_000_000,
        ge=1,
        description="Most rows a Parquet upload to the feature store may hold (more gets 413).",
    )
    table_max_row_group_bytes: int = Field(
        512 * 1024 * 1024,
        ge=1,
        description=(
            "Largest decoded (in-memory Arrow) size of one row group of a Parquet upload; the "
            "most one read decodes at a time. Larger gets 413: write smaller row groups."
        ),
    )
    table_max_decoded_bytes: int = Field(
        4 * 1024 * 1024 * 1024,
        ge=1,
        description="Largest decoded (in-memory Arrow) size of a whole Parquet upload (413 past).",
    )
    table_decode_concurrency: int = Field(
        2,
        ge=1,
        description=(
            "Parquet decodes the feature store runs at once (uploads checked, tables served); "
            "more requests wait, so parallel reads cannot multiply memory."
        ),
    )
    blobs_url: str | None = Field(
        None,
        description=(
            "Where the feature store keeps the Parquet files of tables: a local folder "
            "(default: `featurestore-blobs` in the data folder), `s3://bucket/prefix`, "
            "`abfss://fs@account.dfs.core.windows.net/path` or `hdfs://namenode:9870/path`. "
            "With object storage, several feature-store processes can share one store."
        ),
    )
    blobs_cache_bytes: int = Field(
        2 * 1024**3,
        ge=0,
        description=(
            "Bound of the local read-through cache of tables from a remote blob store (in the "
            "data folder); least recently read files are evicted first."
        ),
    )
    blobs_sweep_grace: float = Field(
        3600.0,
        ge=0,
        description=(
            "Seconds a blob no version names is kept before the sweeper deletes it (covers "
            "uploads between their store write and their version row); also the age past "
            "which a temporary upload file is a crash's leftover."
        ),
    )
    blobs_sweep_interval: float = Field(
        3600.0,
        gt=0,
        description="Seconds between sweeps for orphan blobs (one also runs at start-up).",
    )
    max_entity_frame_bytes: int = Field(
        4 * 1024 * 1024 * 1024,
        description=(
            "Largest entity frame (Parquet or Arrow body) `POST /api/v1/historical-features` "
            "accepts; larger ones get a 413. The frame is spooled to the data dir and read in "
            "batches, so it may be larger than the service's memory."
        ),
    )
    historical_cache_bytes: int = Field(
        512 * 1024 * 1024,
        description=(
            "Memory for the point-in-time indexes of feature tables (keys, times and the "
            "requested feature columns), kept between historical calls."
        ),
    )
    metrics_profiling: bool = Field(
        True,
        description=(
            "Profile every feature-set version in the background after it is written "
            "(column statistics, drift against the previous version, checks; named values as "
            "a one-row table, without drift)."
        ),
    )
    metrics_sample_rows: int = Field(
        1_000_000,
        ge=0,
        description="Rows a profile reads at most; larger tables are sampled (0: read all).",
    )
    metrics_drift_p_value: float = Field(
        0.01,
        gt=0,
        lt=1,
        description=(
            "A column drifts when its KS or chi-squared p-value is below this and its PSI "
            "reaches CAIRN_METRICS_DRIFT_PSI."
        ),
    )
    metrics_drift_psi: float = Field(
        0.1,
        ge=0,
        description="Population stability index from which a significant change counts as drift.",
    )
    metrics_skew_sample_rate: float = Field(
        0.0,
        ge=0,
        le=1,
        description=(
            "Fraction of online feature responses sampled into a rolling profile for "
            "training/serving skew (0: off)."
        ),
    )
    metrics_skew_rows: int = Field(
        10_000, ge=1, le=1_000_000, description="Rows the skew sample keeps per feature set."
    )
    crawl_profiles: bool = Field(
        False,
        description=(
            "The crawler profiles the Parquet and CSV file of each changed asset (sampled past "
            "CAIRN_METRICS_SAMPLE_ROWS), evaluates its manifest's checks, and sends the result "
            "to the feature store's metric store (CAIRN_FEATURESTORE_URL)."
        ),
    )
    crawl_profile_workers: int = Field(
        2,
        ge=1,
        le=64,
        description=(
            "Threads that profile crawled data files beside the crawl (reading, statistics, "
            "sending); at most twice as many files wait for one, so memory stays bounded."
        ),
    )
    crawl_fail_on_checks: bool = Field(
        False,
        description=(
            "A failed manifest check is a crawl error (exit code 2) rather than a warning "
            "(`cairn crawl --fail-on-checks`)."
        ),
    )
    crawl_allow_empty: bool = Field(
        False,
        description=(
            "A crawl that finds no file at all, or no manifest, where its last crawl found "
            "manifests (or a source that lists no asset where it listed some) soft-deletes "
            "their assets rather than failing (`cairn crawl --allow-empty`); off, an empty "
            "root (say an unmounted mount point) or a pattern that matches nothing fails the "
            "crawl and keeps them."
        ),
    )
    catalogue_url: str = Field(
        "http://127.0.0.1:8001",
        description="Catalogue base URL used by the crawler, the feature store and the UI.",
    )
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description=(
            "Comma-separated keys; when set, every write needs `Authorization: Bearer <key>`."
        ),
    )
    read_needs_key: bool = Field(
        False,
        description=(
            "When true, reads need a key as well; the web UI then asks each visitor for their "
            "own key and reads with it."
        ),
    )
    open_docs: bool = Field(
        False,
        description=(
            "When API keys are set, `/docs`, `/redoc` and `/openapi.json` need a key too, "
            "unless this is true (a browser cannot send the key to `/docs`)."
        ),
    )
    open_metrics: bool = Field(
        False,
        description=(
            "When API keys are set, `/metrics` needs a key too (Prometheus can send one as a "
            "bearer token), unless this is true."
        ),
    )
    api_key: SecretStr | None = Field(
        None, description="Key the crawler and the feature store send to the catalogue."
    )
    extra_types: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated asset types allowed besides Mastro's."
    )
    mastro_root_routes: bool = Field(
        True,
        description=(
            "Serve the Mastro-compatible routes at the root, as Mastro does, as well as under "
            "`/api/v1`; false serves them under `/api/v1` only."
        ),
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description=(
            "Comma-separated origins a browser may call the APIs from (e.g. Mastro's UI served "
            "elsewhere); `*` allows any origin. None by default."
        ),
    )
    manifest_patterns: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_MANIFEST_PATTERNS),
        description="Comma-separated file-name globs the crawler treats as manifests.",
    )
    max_body_bytes: int = Field(16 * 1024 * 1024, description="Largest JSON request body accepted.")
    online_max_entities: int = Field(
        1000,
        ge=1,
        description="Most entity rows one online-features request may ask for (more gets 422).",
    )
    bulk_max_items: int = Field(5000, description="Most assets accepted by one bulk request.")
    search_cache_mib: int = Field(
        16,
        ge=0,
        description=(
            "Memory for whole search answers kept until the next write (the last 512 "
            "searches; the documents' bytes count). mongo: a write through another catalogue "
            "process shows in this one's kept answers within 1 s. 0 keeps none."
        ),
    )
    search_typo_below: int = Field(
        3,
        ge=0,
        description=(
            "Typo tolerance of text search: when `q` finds fewer assets than this, its misspelt "
            "words are corrected and the corrected query offered as `did_you_mean`; when it "
            "finds none, the corrected query's results are returned (`fuzzy: true`). 0 is off."
        ),
    )
    crawl_batch_size: int = Field(1000, description="Assets the crawler pushes per bulk request.")
    crawl_workers: int = Field(
        0, description="Processes that parse manifests; 0 means one per core."
    )
    crawl_list_concurrency: int = Field(
        8,
        ge=1,
        le=64,
        description=(
            "Listings a walk of a remote volume runs at once: HDFS folders (one "
            "LISTSTATUS_BATCH request each), S3 and ADLS prefixes (each listed flat, in "
            "pages); 1 lists one folder after another (S3, ADLS: one flat listing)."
        ),
    )
    crawl_read_concurrency: int = Field(
        8,
        ge=1,
        le=64,
        description=(
            "Files a crawl of a remote volume (HDFS, S3, ADLS) reads at once: manifests and "
            "the heads or footers of the data files beside them, on as many threads."
        ),
    )
    http_timeout: float = Field(
        30.0, gt=0, description="Seconds before an outbound HTTP call times out."
    )
    http_retries: int = Field(
        8,
        ge=1,
        description="Attempts for an outbound HTTP call before giving up (backoff with jitter).",
    )
    log_level: str = Field(
        "info",
        description=(
            "Log level of services and the crawler: `debug`, `info`, `warning`, `error` or "
            "`critical` (any case; `warn` is `warning`)."
        ),
    )
    # -- remote volumes (connectors/webhdfs.py, connectors/adls.py, connectors/s3.py) --
    hdfs_user: str | None = Field(
        None,
        description="User name sent to WebHDFS with simple authentication (default: login user).",
    )
    hdfs_auth: Literal["simple", "kerberos"] = Field(
        "simple",
        description=(
            "`simple` (the user name only) or `kerberos` (SPNEGO with a ticket from `kinit`; "
            "needs `pip install 'cairn-catalogue[kerberos]'`)."
        ),
    )
    # NoDecode: _json_map reads it, so text that is no JSON is an error naming the variable
    # (pydantic-settings' own decoding raised a traceback for every command).
    hdfs_nameservices: Annotated[dict[str, list[str]], NoDecode] = Field(
        default_factory=dict,
        description=(
            'JSON map of HA names to NameNode HTTP addresses, e.g. `{"prod": ["nn1:9870", '
            '"nn2:9870"]}`: `hdfs://prod/path` then tries each NameNode in turn.'
        ),
    )
    # -- crawler sources (crawler/sources/) --
    kafka_schema_registry_url: str | None = Field(
        None,
        description=(
            "Schema registry (Confluent API) for `kafka://` crawls: a topic's schema comes from "
            "its `<topic>-value` subject; without one, or without that subject, it is inferred "
            "from sampled JSON messages."
        ),
    )
    kafka_sample_messages: int = Field(
        100,
        ge=0,
        description=(
            "Newest messages read per topic (spread over its partitions) to infer a JSON "
            "schema; 0 reads none."
        ),
    )
    azure_account_key: SecretStr | None = Field(
        None, description="Storage account key for `abfss://` and `az://` volumes."
    )
    azure_sas_token: SecretStr | None = Field(
        None, description="SAS token (the query string, without `?`) for ADLS volumes."
    )
    azure_connection_string: SecretStr | None = Field(
        None, description="Storage connection string for ADLS volumes (carries its own endpoint)."
    )
    azure_account_name: str | None = Field(
        None, description="Storage account of `az://container/path` URLs, which do not name one."
    )
    azure_endpoint: str | None = Field(
        None,
        description=(
            "Blob endpoint to use instead of `https://{account}.blob.<cloud suffix>`, for "
            "emulators and private endpoints; `{account}` is replaced by the account name."
        ),
    )
    s3_endpoint: str | None = Field(
        None,
        description=(
            "Endpoint of an S3-compatible store for `s3://` volumes (MinIO, Ceph, R2, "
            "SeaweedFS), e.g. `http://minio:9000`; unset: AWS S3."
        ),
    )
    s3_addressing_style: Literal["auto", "path", "virtual"] = Field(
        "auto",
        description=(
            "`path` (`endpoint/bucket/key`, what most S3-compatible stores need), `virtual` "
            "(`bucket.endpoint/key`) or `auto` (virtual where the bucket name allows it)."
        ),
    )
    s3_region: str | None = Field(
        None,
        description=(
            "Region S3 requests are signed for; unset: `AWS_DEFAULT_REGION`, else the "
            "profile's, else `us-east-1` (boto3 does not read `AWS_REGION`)."
        ),
    )

    @field_validator("data_dir")
    @classmethod
    def _folder(cls, value: Path) -> Path:
        # Every service and the crawler create files below it: a file here fails them all,
        # each with a traceback of its own.
        if value.exists() and not value.is_dir():
            raise ValueError(f"{value} is a file, not a folder")
        return value

    @field_validator("hdfs_nameservices", mode="before")
    @classmethod
    def _json_map(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        if not value.strip():
            return {}  # an env file's empty line: unset
        try:
            return json.loads(value)
        except ValueError:
            raise ValueError(
                'takes JSON, a map of names to NameNode addresses: {"prod": ["nn1:9870", '
                '"nn2:9870"]}'
            ) from None

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level(cls, value: object) -> object:
        # uvicorn takes only its lower-case names (KeyError 'warn' deep in its start-up, a
        # traceback), while the crawler's logging fell back to INFO on any unknown name.
        if not isinstance(value, str):
            return value
        name = value.strip().lower()
        name = _LOG_LEVEL_ALIASES.get(name, name)
        if name not in LOG_LEVELS:
            raise ValueError(f"takes {', '.join(LOG_LEVELS)} (any case; warn for warning)")
        return name

    @field_validator(
        "azure_account_key",
        "azure_sas_token",
        "azure_connection_string",
        "azure_account_name",
        "azure_endpoint",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        # An env file's "CAIRN_AZURE_ACCOUNT_KEY=" line, left empty beside a SAS token, made
        # two credentials "given" (refused as such), or an empty key to sign with.
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("api_keys", "extra_types", "manifest_patterns", "cors_origins", mode="before")
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @property
    def asset_types(self) -> frozenset[str]:
        # Every asset written is checked against this set: build it once per extra list.
        return _asset_types(tuple(self.extra_types))

    @property
    def catalogue_db(self) -> Path:
        return self.data_dir / "catalogue.db"

    @property
    def featurestore_db(self) -> Path:
        return self.data_dir / "featurestore.db"

    @property
    def featurestore_blobs(self) -> Path:
        """Content-addressed Parquet files of tabular feature sets."""
        return self.data_dir / "featurestore-blobs"

    @property
    def crawl_state_dir(self) -> Path:
        return self.data_dir / "crawl-state"


@lru_cache(maxsize=8)
def _asset_types(extra: tuple[str, ...]) -> frozenset[str]:
    return frozenset(ASSET_TYPES) | frozenset(extra)


class SettingsError(ValueError):
    """A CAIRN_* variable holds a value its setting cannot take; the message names each one."""


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    try:
        return Settings()
    except _SourceError as exc:
        # pydantic-settings could not decode a variable (a JSON one) before validating it:
        # its message names the field, and its cause may quote the value.
        field = re.search(r'field "(\w+)"', str(exc))
        name = f"CAIRN_{field.group(1).upper()}" if field else "a CAIRN_* variable"
        raise SettingsError(f"{name}: cannot be read as its setting's type") from None
    except ValidationError as exc:
        # Named by variable, without the value: it may be a key or a connection string.
        problems = "; ".join(
            f"CAIRN_{str(error['loc'][0]).upper() if error['loc'] else '?'}: "
            + str(error["msg"]).removeprefix("Value error, ")
            for error in exc.errors()
        )
        raise SettingsError(problems) from None
