"""Session fixtures for the real servers behind the remote connectors.

Each server is installed (cached under ``~/.cache/cairn/``) and started on first use, on a free
loopback port, and stopped when the session ends. A server that cannot be installed or started
fails the tests that need it, with the step that failed; nothing is skipped.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from tests.servers import seaweedfs
from tests.servers.azurite import ACCOUNT, KEY, Azurite, TokenEndpoint
from tests.servers.elasticsearch import Elasticsearch
from tests.servers.ferretdb import FerretDB
from tests.servers.kafka import KafkaBroker
from tests.servers.metastore import HiveMetastore
from tests.servers.minihdfs import MiniHdfs, WebHdfsAdmin
from tests.servers.processes import ServerSetupError, start_together, untimed
from tests.servers.seaweedfs import ACCESS_KEY, REGION, SECRET_KEY, SeaweedFS

# Identity variables the connectors' client libraries read besides CAIRN_* settings.
_AZURE_IDENTITY_VARS = ("IDENTITY_ENDPOINT", "IDENTITY_HEADER", "REQUESTS_CA_BUNDLE")
_AWS_IDENTITY_VARS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_EC2_METADATA_DISABLED",
)
TEST_USER = "cairn"  # not the HDFS superuser, so permissions apply to it
LS_LIMIT = 500  # entries per LISTSTATUS_BATCH answer: small, so tests cross batches


@dataclass
class HdfsServer:
    cluster: MiniHdfs
    admin: WebHdfsAdmin
    startup_s: float

    def fresh_dir(self, name: str = "t") -> str:
        """A new, empty, world-readable folder; returns its absolute path."""
        path = f"/{name}-{uuid.uuid4().hex[:8]}"
        self.admin.mkdirs(path, permission="755")
        return path

    def url(self, path: str, scheme: str = "hdfs") -> str:
        return f"{scheme}://{self.cluster.authority}{path}"


@dataclass
class AzuriteServer:
    server: Azurite
    tokens: TokenEndpoint
    account: str = ACCOUNT
    key: str = KEY
    containers: list[str] = field(default_factory=list)

    def fresh_container(self) -> str:
        name = f"c{uuid.uuid4().hex[:12]}"
        self.server.service().create_container(name)
        return name

    def container(self, name: str):
        return self.server.service().get_container_client(name)

    def url(self, container: str, path: str = "") -> str:
        return f"abfss://{container}@{ACCOUNT}.dfs.core.windows.net/{path.lstrip('/')}"

    def env(self, **extra: str) -> dict[str, str]:
        """Settings for the connector: the emulator's endpoint, its CA, and (by default) the
        account key; pass CAIRN_AZURE_ACCOUNT_KEY="" to leave the key out."""
        env = {
            "CAIRN_AZURE_ENDPOINT": self.server.endpoint,
            "CAIRN_AZURE_ACCOUNT_KEY": self.key,
            "REQUESTS_CA_BUNDLE": str(self.server.ca_file),
            # DefaultAzureCredential must find the stand-in managed identity, never probe the
            # cloud's instance metadata address.
            **self.tokens.env(),
        }
        env.update(extra)
        return {k: v for k, v in env.items() if v != ""}


@dataclass
class S3Server:
    """A real SeaweedFS S3 gateway; requests must be signed with :attr:`access_key`."""

    server: SeaweedFS
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    region: str = REGION

    @property
    def endpoint(self) -> str:
        return self.server.endpoint

    def client(self, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY):
        """A boto3 S3 client with the test identity, for setting up buckets in tests."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
        )

    def fresh_bucket(self, name: str = "b") -> str:
        bucket = f"{name}-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=bucket)
        return bucket

    def url(self, bucket: str, path: str = "") -> str:
        return f"s3://{bucket}/{path.lstrip('/')}".rstrip("/")

    def env(self, **extra: str) -> dict[str, str]:
        """Settings for the connector: the endpoint, path-style addressing and the test key
        pair through boto3's standard chain (environment); no shared config file, no instance
        metadata probe."""
        env = {
            "CAIRN_S3_ENDPOINT": self.endpoint,
            "CAIRN_S3_ADDRESSING_STYLE": "path",
            "CAIRN_S3_REGION": self.region,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        env.update(extra)
        return {k: v for k, v in env.items() if v != ""}


@dataclass
class ProductionServers:
    """FerretDB (the MongoDB wire protocol) and Elasticsearch, shared by a test session.

    Each test gets its own database and index names, so tests never see each other's data.
    """

    mongo: FerretDB
    es: Elasticsearch

    def settings(self) -> dict[str, str]:
        """Keyword arguments of ``Settings`` for a fresh, empty mongo backend."""
        tag = uuid.uuid4().hex[:12]
        return {
            "backend": "mongo",
            "mongo_url": self.mongo.url,
            "mongo_db": f"cairn_{tag}",
            "mongo_timeout": "3",
            "es_url": self.es.url,
            "es_index": f"cairn-{tag}",
        }

    def env(self) -> dict[str, str]:
        """The same, as CAIRN_* variables for a child process."""
        return {f"CAIRN_{key.upper()}": value for key, value in self.settings().items()}


@pytest.fixture(scope="session")
def production_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProductionServers]:
    mongo = FerretDB(tmp_path_factory.mktemp("ferretdb"))
    es = Elasticsearch(tmp_path_factory.mktemp("elasticsearch"))
    try:
        start_together(mongo, es)
    except ServerSetupError as exc:
        mongo.stop()
        es.close()
        pytest.fail(f"MongoDB/Elasticsearch test servers could not be set up: {exc}", pytrace=False)
    try:
        yield ProductionServers(mongo, es)
    finally:
        mongo.stop()
        es.close()


@pytest.fixture(scope="session")
def hdfs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HdfsServer]:
    cluster = MiniHdfs(tmp_path_factory.mktemp("minihdfs"), ha=True, ls_limit=LS_LIMIT)
    try:
        cluster.start()
    except ServerSetupError as exc:
        pytest.fail(f"HDFS minicluster could not be set up: {exc}", pytrace=False)
    admin = cluster.admin()
    try:
        yield HdfsServer(cluster, admin, cluster.startup_s)
    finally:
        admin.close()
        cluster.stop()


@pytest.fixture(scope="session")
def azurite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzuriteServer]:
    server = Azurite(tmp_path_factory.mktemp("azurite"))
    try:
        server.start()
    except ServerSetupError as exc:
        pytest.fail(f"Azurite could not be set up: {exc}", pytrace=False)
    tokens = TokenEndpoint().start()
    try:
        yield AzuriteServer(server, tokens)
    finally:
        tokens.stop()
        server.stop()


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """A Kafka 4 broker (KRaft, one node); ``bootstrap`` is its address. Tests that stop it
    start it again before they end."""
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka"))
    try:
        broker.start()
    except ServerSetupError as exc:
        pytest.fail(f"Kafka broker could not be set up: {exc}", pytrace=False)
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def hive_metastore(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HiveMetastore]:
    """Hive's standalone metastore on embedded Derby; ``url`` is its thrift:// address."""
    metastore = HiveMetastore(tmp_path_factory.mktemp("metastore"))
    try:
        metastore.start()
    except ServerSetupError as exc:
        pytest.fail(f"Hive Metastore could not be set up: {exc}", pytrace=False)
    try:
        yield metastore
    finally:
        metastore.stop()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = SeaweedFS(tmp_path_factory.mktemp("seaweedfs"))
    try:
        untimed(seaweedfs.install)  # about 5 minutes the first time, on 2 idle cores
        server.start()
    except ServerSetupError as exc:
        pytest.fail(f"SeaweedFS (S3) could not be set up: {exc}", pytrace=False)
    try:
        yield S3Server(server)
    finally:
        server.stop()


@pytest.fixture
def use_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[dict[str, str]], None]]:
    """``use_env({...})`` sets connector settings in this process for one test, replacing the
    caller's CAIRN_*, Azure and AWS identity variables (and the settings cache)."""
    from cairn.settings import get_settings

    def clear() -> None:
        for name in list(os.environ):
            if (
                name.startswith("CAIRN_")
                or name in _AZURE_IDENTITY_VARS
                or name in _AWS_IDENTITY_VARS
            ):
                monkeypatch.delenv(name)

    clear()

    def apply(env: dict[str, str]) -> None:
        clear()  # each call replaces the previous settings
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        get_settings.cache_clear()

    get_settings.cache_clear()
    yield apply
    get_settings.cache_clear()
