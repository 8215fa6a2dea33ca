"""Hive's standalone metastore (4.0) with an embedded Derby database, over Thrift.

First use resolves ``hive-standalone-metastore-server`` with the shaded Hadoop client from
Maven Central into ``~/.cache/cairn/hive/`` (about 450 MB, once), with the metastore's binary
distribution for its schema scripts. Each start creates a fresh Derby database with the
metastore's schema tool (``MetastoreSchemaTool -initSchema``) and runs ``HiveMetaStore`` on a
free loopback port. Needs Java 17 and Maven on the PATH.
"""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path
from typing import IO, Any
from xml.sax.saxutils import escape

from tests.servers.maven import classpath, resolve_libs
from tests.servers.processes import (
    free_port,
    locked,
    patient,
    run_step,
    stop_group,
    wait_ready,
)

HERE = Path(__file__).resolve().parent / "hive"
JVM = ["java", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"]


def _schema_scripts(libs: Path) -> Path:
    """METASTORE_HOME for the schema tool: the distribution's scripts/ folder, unpacked once."""
    home = libs / "metastore-home"
    with locked(libs / ".scripts.lock"):
        if not (home / "scripts").is_dir():
            (tarball,) = libs.glob("*-bin.tar.gz")
            partial = libs / "metastore-home.partial"
            with tarfile.open(tarball) as tar:
                members = []
                for member in tar.getmembers():
                    rest = member.name.partition("/")[2]
                    if rest.startswith("scripts/metastore/upgrade/derby/") and member.isfile():
                        member.name = rest
                        members.append(member)
                tar.extractall(partial, members=members, filter="data")
            partial.replace(home)
    return home


def install() -> tuple[Path, Path]:
    """(jars, schema-tool home) of the metastore, resolved from Maven Central once."""
    libs = resolve_libs("hive", HERE, what="the Hive standalone metastore")
    return libs, _schema_scripts(libs)


class HiveMetastore:
    """``java HiveMetaStore`` as a child process; ``url`` is its ``thrift://host:port``."""

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = base_dir / "metastore.log"

    @property
    def url(self) -> str:
        return f"thrift://127.0.0.1:{self.port}"

    @property
    def warehouse(self) -> Path:
        return self.base_dir / "warehouse"

    def _conf(self) -> Path:
        conf = self.base_dir / "conf"
        conf.mkdir(parents=True, exist_ok=True)
        props = {
            "javax.jdo.option.ConnectionURL": (
                f"jdbc:derby:;databaseName={self.base_dir / 'metastore_db'};create=true"
            ),
            "javax.jdo.option.ConnectionDriverName": "org.apache.derby.jdbc.EmbeddedDriver",
            "metastore.warehouse.dir": self.warehouse.as_uri(),
            "metastore.thrift.port": str(self.port),
            # No compactor, statistics or event housekeeping threads: a test server needs
            # none, and they cost CPU on a shared machine.
            "metastore.compactor.initiator.on": "false",
            "metastore.compactor.cleaner.on": "false",
            "metastore.stats.auto.gather": "false",
        }
        body = "".join(
            f"  <property><name>{escape(k)}</name><value>{escape(v)}</value></property>\n"
            for k, v in props.items()
        )
        (conf / "metastore-site.xml").write_text(f"<configuration>\n{body}</configuration>\n")
        return conf

    def start(self, timeout: float = 240) -> HiveMetastore:
        libs, home = install()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        conf = self._conf()
        cp = classpath(conf, libs=libs)
        logging = f"-Dlog4j2.configurationFile={HERE / 'log4j2.properties'}"
        run_step(
            "creating the metastore's Derby schema (MetastoreSchemaTool -initSchema)",
            [
                *JVM,
                logging,
                "-cp",
                cp,
                "org.apache.hadoop.hive.metastore.tools.schematool.MetastoreSchemaTool",
                "-dbType",
                "derby",
                "-initSchema",
            ],
            timeout=patient(300),
            cwd=self.base_dir,
            env={"METASTORE_HOME": str(home)},
        )
        log: IO[bytes]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    *JVM,
                    logging,
                    "-cp",
                    cp,
                    "org.apache.hadoop.hive.metastore.HiveMetaStore",
                    "-p",
                    str(self.port),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=self.base_dir,
                start_new_session=True,
            )
        try:
            self._wait_ready(patient(timeout))
        except BaseException:
            self.stop()
            raise
        return self

    def client(self) -> MetastoreClient:
        return MetastoreClient("127.0.0.1", self.port)

    def _wait_ready(self, timeout: float) -> None:
        from thrift.transport.TTransport import TTransportException

        def probe() -> None:
            with self.client() as client:
                client.api.get_all_databases()

        assert self.proc is not None
        wait_ready(
            self.proc,
            "the metastore",
            probe,
            (TTransportException, OSError),
            timeout,
            self.log_tail,
        )

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc, first=15)
            self.proc = None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"


class MetastoreClient:
    """Test-side set-up over the metastore's Thrift API (pymetastore's generated bindings)."""

    def __init__(self, host: str, port: int) -> None:
        from pymetastore.hive_metastore import ThriftHiveMetastore
        from thrift.protocol.TBinaryProtocol import TBinaryProtocol
        from thrift.transport.TSocket import TSocket
        from thrift.transport.TTransport import TBufferedTransport

        socket = TSocket(host, port)
        socket.setTimeout(30_000)
        self._transport = TBufferedTransport(socket)
        self.api: Any = ThriftHiveMetastore.Client(TBinaryProtocol(self._transport))

    def __enter__(self) -> MetastoreClient:
        self._transport.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self._transport.close()

    def create_database(self, name: str, *, owner: str, location: str, comment: str = "") -> None:
        from pymetastore.hive_metastore import ttypes

        self.api.create_database(
            ttypes.Database(
                name=name,
                description=comment,
                locationUri=location,
                ownerName=owner,
                ownerType=ttypes.PrincipalType.USER,
            )
        )

    def create_table(
        self,
        db: str,
        name: str,
        *,
        columns: list[tuple[str, str, str | None]],
        location: str,
        owner: str,
        storage: str = "parquet",
        partition_keys: list[tuple[str, str]] = (),  # type: ignore[assignment]
        comment: str | None = None,
    ) -> None:
        from pymetastore.hive_metastore import ttypes

        formats = STORAGE[storage]
        sd = ttypes.StorageDescriptor(
            cols=[ttypes.FieldSchema(n, t, c) for n, t, c in columns],
            location=location,
            inputFormat=formats[0],
            outputFormat=formats[1],
            serdeInfo=ttypes.SerDeInfo(serializationLib=formats[2], parameters={}),
        )
        params = {"EXTERNAL": "TRUE", **({"comment": comment} if comment else {})}
        self.api.create_table(
            ttypes.Table(
                tableName=name,
                dbName=db,
                owner=owner,
                sd=sd,
                partitionKeys=[ttypes.FieldSchema(n, t, None) for n, t in partition_keys],
                tableType="EXTERNAL_TABLE",
                parameters=params,
            )
        )

    def drop_table(self, db: str, name: str) -> None:
        self.api.drop_table(db, name, False)


# (input format, output format, serde) as Hive's DDL writes them for STORED AS ...
STORAGE = {
    "parquet": (
        "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
        "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
        "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
    ),
    "textfile": (
        "org.apache.hadoop.mapred.TextInputFormat",
        "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
        "org.apache.hadoop.hive.serde2.lazy.LazySimpleSerDe",
    ),
}
