"""``kafka://broker:9092[,broker2:9092]``: each topic is a ``stream`` asset.

What a topic's asset holds: partitions, replication factor, retention and cleanup policy as
labels; the topic's non-default configs under ``extra.kafka.configs``; a schema from the schema
registry (``CAIRN_KAFKA_SCHEMA_REGISTRY_URL``, subject ``<topic>-value``) or, without one,
inferred from the newest JSON messages (``CAIRN_KAFKA_SAMPLE_MESSAGES``). Internal topics
(``__consumer_offsets`` and the like) are left out.
"""

from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import urlsplit

from kafka import KafkaConsumer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient
from kafka.errors import KafkaError, UnknownTopicOrPartitionError, for_code

from cairn.models import CrawlerEdgeOrigin
from cairn.settings import Settings
from crawler.problems import Problem
from crawler.sources.base import SourceAsset, SourceError, SourceListing
from crawler.sources.json_schema import infer_json_schema
from crawler.sources.registry_schema import (
    RegistrySchema,
    RegistryTrouble,
    RegistryUnreachable,
    fetch_registry_schema,
)

log = logging.getLogger("cairn.crawler")

# Config sources that mean someone set the value for this topic, not a broker default.
TOPIC_SET = {"DYNAMIC_TOPIC_CONFIG", "TOPIC_CONFIG"}
SAMPLE_SECONDS = 10.0  # at most this long reading sample messages of one topic


class KafkaSource:
    edge_origin: CrawlerEdgeOrigin | None = None  # a topic's lineage comes from OpenLineage

    def __init__(self, bootstrap: list[str], settings: Settings) -> None:
        self.bootstrap = bootstrap
        self.settings = settings
        self.url = "kafka://" + ",".join(bootstrap)
        self._timeout_ms = int(settings.http_timeout * 1000)
        # Set by a listing once the schema registry did not answer: not asked again for the
        # listing's other topics, each of which would wait out the timeout in turn.
        self._registry_down = False
        if not log.isEnabledFor(logging.DEBUG):
            # kafka-python logs every refused connection as an error while it retries; the
            # crawl reports the outcome once, with the address and what to check.
            logging.getLogger("kafka").setLevel(logging.CRITICAL)

    @classmethod
    def from_url(cls, url: str, settings: Settings) -> KafkaSource:
        parts = urlsplit(url)
        if parts.path.strip("/") or parts.query or parts.fragment:
            raise SourceError(
                f"{url!r}: a Kafka URL names brokers only, like kafka://broker:9092 or "
                "kafka://b1:9092,b2:9092"
            )
        if "@" in parts.netloc:
            raise SourceError(
                "a Kafka URL carries no credentials; write kafka://broker:9092 (the URL is "
                "stored on every topic's asset)"
            )
        hosts = [h.strip() for h in parts.netloc.split(",") if h.strip()]
        if not hosts:
            raise SourceError(f"{url!r} names no broker; write kafka://broker:9092")
        bootstrap = [h if ":" in h.rpartition("]")[2] else f"{h}:9092" for h in hosts]
        return cls(bootstrap, settings)

    def list_assets(self) -> SourceListing:
        admin = self._admin()
        try:
            try:
                topics = sorted(t for t in admin.list_topics() if not t.startswith("__"))
                described = admin.describe_topics(topics) if topics else []
                configs = self._configs(admin, topics)
            except KafkaError as exc:
                raise SourceError(f"cannot list the topics of {self.url}: {exc!r}") from exc
        finally:
            admin.close()
        listing = SourceListing()
        self._registry_down = False
        by_name = {d["name"]: d for d in described}
        samples = self._samples(topics, listing) if self.settings.kafka_sample_messages else {}
        for topic in topics:
            info = by_name.get(topic)
            code = info.get("error_code") if info is not None else None
            if code == UnknownTopicOrPartitionError.errno:
                continue  # deleted since it was listed: gone, as if before the crawl
            if info is None or code:
                why = for_code(code).__name__ if code else "not in the answer"
                listing.unreadable.add(f"topic:{topic}")
                listing.problems.append(
                    Problem(
                        path=f"{self.url}/{topic}",
                        reason=f"the broker did not describe this topic ({why}); kept as it was",
                        severity="warning",
                    )
                )
                continue
            listing.assets.append(
                SourceAsset(f"topic:{topic}", self._asset(topic, info, configs.get(topic, {})))
            )
            fields = listing.assets[-1].fields
            registry = self._registry(topic, listing)
            if registry is not None:
                fields["format"] = registry.format
                if registry.columns is not None:
                    fields["schema"] = registry.columns
                fields["extra"]["kafka"]["schema_registry"] = registry.reference()
            elif samples.get(topic):
                columns = infer_json_schema(samples[topic])
                if columns:
                    fields["format"] = "json"
                    fields["schema"] = columns
        return listing

    # -- pieces --

    def _admin(self) -> KafkaAdminClient:
        try:
            return KafkaAdminClient(
                bootstrap_servers=self.bootstrap,
                client_id="cairn-crawler",
                request_timeout_ms=self._timeout_ms,
                # kafka-python's own default is 30 s, whatever CAIRN_HTTP_TIMEOUT says.
                bootstrap_timeout_ms=self._timeout_ms,
            )
        except KafkaError as exc:
            raise SourceError(
                f"cannot reach the Kafka brokers at {', '.join(self.bootstrap)} ({exc!r}); "
                "are they running, and is the address the one they advertise?"
            ) from exc

    def _configs(self, admin: KafkaAdminClient, topics: list[str]) -> dict[str, dict[str, Any]]:
        if not topics:
            return {}
        resources = [ConfigResource(ConfigResourceType.TOPIC, t) for t in topics]
        answer = admin.describe_configs(resources, config_filter="all")
        found: dict[str, dict[str, Any]] = answer.get("topic", {})
        return found

    def _asset(self, topic: str, info: dict[str, Any], configs: dict[str, Any]) -> dict[str, Any]:
        partitions = info.get("partitions") or []
        replication = max((len(p.get("replica_nodes") or ()) for p in partitions), default=0)
        value = {k: c.get("value") for k, c in configs.items()}
        labels: dict[str, Any] = {
            "partitions": len(partitions),
            "replication_factor": replication,
        }
        for key in ("retention.ms", "retention.bytes"):
            label = key.replace(".", "_")
            if value.get(key) not in (None, ""):
                labels[label] = int(value[key])
        if value.get("cleanup.policy"):
            labels["cleanup_policy"] = value["cleanup.policy"]
        set_here = {
            k: c.get("value")
            for k, c in sorted(configs.items())
            if c.get("config_source") in TOPIC_SET and not c.get("is_sensitive")
        }
        return {
            "name": topic,
            "type": "stream",
            "location": f"{self.url}/{topic}",
            "labels": labels,
            "extra": {"kafka": {"topic_id": str(info.get("topic_id") or ""), "configs": set_here}},
        }

    def _registry(self, topic: str, listing: SourceListing) -> RegistrySchema | None:
        """The topic's schema in the registry, or None when it has none; a topic whose
        schema could not be read is ``partial`` (catalogued before, it is kept as it was)."""
        url = self.settings.kafka_schema_registry_url
        if not url:
            return None
        if self._registry_down:
            listing.partial.add(f"topic:{topic}")
            return None
        try:
            return fetch_registry_schema(url, f"{topic}-value", self.settings.http_timeout)
        except RegistryUnreachable as exc:
            self._registry_down = True
            listing.partial.add(f"topic:{topic}")
            listing.problems.append(
                Problem(
                    path=self.url,
                    reason=f"{exc}; no topic's schema was read from it in this crawl: topics "
                    "catalogued before keep what they had, new ones are catalogued without "
                    "it (CAIRN_KAFKA_SCHEMA_REGISTRY_URL)",
                    severity="warning",
                )
            )
            return None
        except RegistryTrouble as exc:
            listing.partial.add(f"topic:{topic}")
            listing.problems.append(
                Problem(
                    path=f"{self.url}/{topic}",
                    reason=f"{exc}; the topic keeps what it had, if it was catalogued before",
                    severity="warning",
                )
            )
            return None
        except SourceError as exc:
            # The registry answered, and its answer is no schema Cairn can read (a refused
            # key, a malformed document): the topic is described without it, as it will be
            # until that changes.
            listing.problems.append(
                Problem(path=f"{self.url}/{topic}", reason=str(exc), severity="warning")
            )
            return None

    def _samples(self, topics: list[str], listing: SourceListing) -> dict[str, list[bytes]]:
        """The newest messages of each topic, at most CAIRN_KAFKA_SAMPLE_MESSAGES each."""
        wanted = self.settings.kafka_sample_messages
        try:
            consumer = KafkaConsumer(
                bootstrap_servers=self.bootstrap,
                client_id="cairn-crawler",
                group_id=None,  # no group: nothing is committed, no consumer offsets change
                enable_auto_commit=False,
                request_timeout_ms=self._timeout_ms,
                bootstrap_timeout_ms=self._timeout_ms,
            )
        except KafkaError as exc:
            raise SourceError(f"cannot read messages from {self.url}: {exc!r}") from exc
        out: dict[str, list[bytes]] = {}
        try:
            for topic in topics:
                try:
                    out[topic] = _sample_topic(consumer, topic, wanted)
                except KafkaError as exc:
                    listing.problems.append(
                        Problem(
                            path=f"{self.url}/{topic}",
                            reason=f"no messages sampled for a schema: {exc!r}",
                            severity="warning",
                        )
                    )
        finally:
            consumer.close()
        return out

    def close(self) -> None:
        return None


def _sample_topic(consumer: KafkaConsumer, topic: str, wanted: int) -> list[bytes]:
    partitions = sorted(consumer.partitions_for_topic(topic) or ())
    if not partitions:
        return []
    tps = [TopicPartition(topic, p) for p in partitions]
    consumer.assign(tps)
    ends = consumer.end_offsets(tps)
    starts = consumer.beginning_offsets(tps)
    per_partition = max(1, -(-wanted // len(tps)))
    remaining: dict[TopicPartition, int] = {}
    for tp in tps:
        first = max(starts[tp], ends[tp] - per_partition)
        if ends[tp] > first:
            consumer.seek(tp, first)
            remaining[tp] = ends[tp]
    values: list[bytes] = []
    deadline = time.monotonic() + SAMPLE_SECONDS
    while remaining and len(values) < wanted and time.monotonic() < deadline:
        batch = consumer.poll(timeout_ms=500, max_records=wanted)
        for records in batch.values():
            values += [r.value for r in records if r.value is not None]
        # By position, not by the last record's offset: transaction markers and compacted
        # gaps leave offsets that no record carries.
        for tp in [tp for tp, end in remaining.items() if consumer.position(tp) >= end]:
            remaining.pop(tp)
    return values[:wanted]
