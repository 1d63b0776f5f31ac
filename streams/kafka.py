"""Kafka clients with the settings the service relies on (kafka-python, standard protocol only).

`session_timeout_ms=6000, heartbeat_interval_ms=1000`: a short session makes rebalances and
crash recovery take seconds (some brokers hold JoinGroup for half the session); never `acks=0`
(messages get lost); `batch_size` above one frame and a small `linger_ms` for throughput.
"""

from __future__ import annotations

import logging
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from vad.config.sections import KafkaConfig
from vad.errors import VadError

log = logging.getLogger(__name__)

# Room for headers and the record batch around a value of max_message_bytes.
_ENVELOPE_BYTES = 64 * 1024


def make_producer(settings: KafkaConfig) -> KafkaProducer:
    request_bytes = settings.max_message_bytes + _ENVELOPE_BYTES
    return _connect(KafkaProducer, settings, acks=settings.acks, linger_ms=settings.linger_ms,
                    batch_size=max(1_048_576, 2 * request_bytes), max_request_size=request_bytes,
                    retries=5)


def make_consumer(settings: KafkaConfig, group: str, max_poll_records: int,
                  ) -> KafkaConsumer:
    """A group member that commits and positions itself by hand (`enable_auto_commit=False`,
    no automatic offset reset: an offset out of range raises, it is never skipped silently)."""
    return _connect(KafkaConsumer, settings, group_id=group, enable_auto_commit=False,
                    auto_offset_reset="none", max_poll_records=max_poll_records,
                    session_timeout_ms=settings.session_timeout_ms,
                    heartbeat_interval_ms=settings.heartbeat_interval_ms,
                    fetch_max_wait_ms=settings.fetch_max_wait_ms,
                    max_partition_fetch_bytes=max(1_048_576,
                                                  settings.max_message_bytes + _ENVELOPE_BYTES))


def _connect(client: type, settings: KafkaConfig, **options: object):
    try:
        return client(bootstrap_servers=settings.servers(), client_id=settings.client_id, **options)
    except KafkaError as exc:
        raise VadError(f"{settings.bootstrap}: cannot reach Kafka ({exc})") from None


def ensure_topic(bootstrap: str, topic: str, partitions: int) -> bool:
    """Create the topic unless it exists; True when created."""
    admin = _admin(bootstrap)
    try:
        admin.create_topics([NewTopic(topic, partitions, 1)])
        log.info("created topic %s with %d partitions", topic, partitions)
        return True
    except TopicAlreadyExistsError:
        return False
    except KafkaError as exc:
        raise VadError(f"{bootstrap}: cannot create topic {topic!r} ({exc})") from None
    finally:
        admin.close()


def topic_id(admin: KafkaAdminClient, topic: str) -> str | None:
    """The topic's id (a recreated topic gets a new one), None when unknown."""
    (description,) = admin.describe_topics([topic])
    return description.get("topic_id") or None


def admin_client(bootstrap: str) -> KafkaAdminClient:
    return _admin(bootstrap)


def delete_topics(bootstrap: str, topics: list[str]) -> None:
    admin = _admin(bootstrap)
    try:
        admin.delete_topics(topics)
    finally:
        admin.close()


def _admin(bootstrap: str) -> KafkaAdminClient:
    try:
        return KafkaAdminClient(bootstrap_servers=bootstrap, client_id="vad-admin")
    except KafkaError as exc:
        raise VadError(f"{bootstrap}: cannot reach Kafka ({exc})") from None
