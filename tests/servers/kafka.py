"""An Apache Kafka 4 broker in KRaft mode (combined broker and controller, no ZooKeeper).

First use resolves ``kafka_2.13`` and its dependencies from Maven Central into
``~/.cache/cairn/kafka/`` (about 110 MB, once). Each start formats a fresh log folder with a
random cluster id (``kafka.tools.StorageTool format``) and runs ``kafka.Kafka`` on two free
loopback ports. Needs Java 17+ and Maven on the PATH.
"""

from __future__ import annotations

import base64
import socket
import subprocess
import uuid
from pathlib import Path
from typing import IO

from tests.servers.maven import classpath, resolve_libs
from tests.servers.processes import (
    free_port,
    patient,
    run_step,
    stop_group,
    wait_ready,
)

HERE = Path(__file__).resolve().parent / "kafka"
JVM = ["java", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"]


def install() -> Path:
    """The broker's jars, resolved from Maven Central into the cache once."""
    return resolve_libs("kafka", HERE, what="the Kafka broker")


class KafkaBroker:
    """``java kafka.Kafka`` as a child process; ``bootstrap`` is its ``host:port``."""

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir
        self.port = 0
        self.controller_port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = base_dir / "broker.log"
        self._formatted = False

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _properties(self) -> Path:
        path = self.base_dir / "server.properties"
        lines = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": (
                f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}"
            ),
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.base_dir / "logs"),
            "num.partitions": "1",
            # One broker: the internal topics cannot have more replicas than that.
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
        }
        path.write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
        return path

    def start(self, timeout: float = 180) -> KafkaBroker:
        """Starts the broker; a second start after ``stop`` reuses the ports and the data."""
        libs = install()
        cp = classpath(libs=libs)
        self.base_dir.mkdir(parents=True, exist_ok=True)
        if not self._formatted:
            self.port, self.controller_port = free_port(), free_port()
            props = self._properties()
            cluster_id = _cluster_id()
            run_step(
                "formatting the Kafka log folder (kafka.tools.StorageTool format)",
                [
                    *JVM,
                    "-cp",
                    cp,
                    "kafka.tools.StorageTool",
                    "format",
                    "-t",
                    cluster_id,
                    "-c",
                    str(props),
                ],
                timeout=patient(120),
            )
            self._formatted = True
        log: IO[bytes]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    *JVM,
                    f"-Dlog4j2.configurationFile={HERE / 'log4j2.properties'}",
                    "-cp",
                    cp,
                    "kafka.Kafka",
                    str(self.base_dir / "server.properties"),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        try:
            self._wait_ready(patient(timeout))
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        from kafka.admin import KafkaAdminClient
        from kafka.errors import KafkaError

        def probe() -> None:
            # A plain connect first: kafka-python leaks the sockets of connections that are
            # refused, and the test run treats a leaked socket as an error.
            socket.create_connection(("127.0.0.1", self.port), timeout=2).close()
            admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5000)
            try:
                admin.list_topics()
            finally:
                admin.close()

        assert self.proc is not None
        wait_ready(
            self.proc, "the Kafka broker", probe, (OSError, KafkaError), timeout, self.log_tail
        )

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc, first=15)  # SIGTERM: the broker's own clean shutdown
            self.proc = None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def __enter__(self) -> KafkaBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _cluster_id() -> str:
    """A random cluster id as Kafka writes one (a UUID in URL-safe base64), never starting
    with '-': the storage tool's argument parser would read such an id as an option and stop
    with "expected one argument" (1 run in 64 failed so). Kafka's own Uuid.randomUuid skips
    those ids for the same reason."""
    while True:
        found = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not found.startswith("-"):
            return found
