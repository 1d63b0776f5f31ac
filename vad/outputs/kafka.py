"""The Kafka alerts topic: each alert event as one JSON message, keyed by camera id (a
camera's events stay in order in one partition), with `vad-schema` and `event-id` headers.
The producer and the topic are made on the first delivery, in the output's own thread, so a
broker that is down when the pipeline starts holds up nothing: its events wait in the queue."""

from __future__ import annotations

from typing import Any

from vad.config.outputs import KafkaOutputConfig, OutputsConfig
from vad.config.sections import KafkaConfig
from vad.outputs.base import DeliveryError, QueuedOutput, register_output
from vad.outputs.events import SCHEMA, SCHEMA_VERSION, encode_event

SEND_TIMEOUT_S = 30.0


@register_output("kafka")
class KafkaAlertOutput(QueuedOutput):
    def __init__(self, target: KafkaOutputConfig, settings: OutputsConfig,
                 kafka: KafkaConfig | None = None):
        kafka = kafka or KafkaConfig()
        if target.bootstrap:
            kafka = kafka.model_copy(update={"bootstrap": target.bootstrap})
        KafkaConfig.model_validate(kafka.model_dump())  # the override is HOST:PORT too
        self.target, self.kafka = target, kafka
        self._producer = None
        super().__init__(f"kafka {kafka.bootstrap}/{target.topic}",
                         f"{kafka.bootstrap}/{target.topic}", settings)

    def deliver(self, event: dict[str, Any]) -> None:
        from kafka.errors import KafkaError

        from vad.errors import VadError

        try:
            if self._producer is None:
                from streams.kafka import ensure_topic, make_producer

                ensure_topic(self.kafka.bootstrap, self.target.topic, self.target.partitions)
                self._producer = make_producer(self.kafka)
            headers = [("vad-schema", f"{SCHEMA}/{SCHEMA_VERSION}".encode()),
                       ("event-id", event["event_id"].encode())]
            self._producer.send(self.target.topic, key=event["alert"]["camera_id"].encode(),
                                value=encode_event(event), headers=headers
                                ).get(timeout=SEND_TIMEOUT_S)
        except (KafkaError, VadError) as exc:
            raise DeliveryError(str(exc)) from None

    def close(self, timeout: float = 10.0) -> None:
        super().close(timeout)
        if self._producer is not None:
            self._producer.close(timeout=5)
