"""Alerts out to other systems: each lifecycle change of an alert (opened, updated, closed)
and each triage (acknowledged, resolved, reopened) as a versioned JSON event
(`vad.outputs.events`, docs/outputs.md) to every configured target (`outputs.targets`: Kafka
topics, webhooks), through a bounded on-disk queue per target.

    outputs = build_outputs(config.outputs, config.kafka, store)   # an alert listener
    outputs("closed", alert)                  # or outputs(change) with an AlertChange
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from vad.config.outputs import OutputsConfig
from vad.config.sections import KafkaConfig
import vad.outputs.kafka  # noqa: F401  (registers kind kafka)
import vad.outputs.webhook  # noqa: F401  (registers kind webhook)
from vad.outputs.base import OUTPUTS, AlertOutput, DeliveryError, QueuedOutput, register_output
from vad.outputs.events import (EVENT_TYPES, SCHEMA, SCHEMA_VERSION, STATUS_EVENTS, alert_event,
                                encode_event)
from vad.types import Alert, ClipInfo

log = logging.getLogger(__name__)

__all__ = ["EVENT_TYPES", "OUTPUTS", "SCHEMA", "SCHEMA_VERSION", "STATUS_EVENTS", "AlertOutput",
           "AlertOutputs", "DeliveryError", "QueuedOutput", "alert_event", "build_outputs",
           "encode_event", "register_output"]


class AlertOutputs:
    """Every configured output as one. Called with a change (an object with `kind` and
    `alert`, as the pipeline's listeners are; `explained` goes out as `updated`) or with an
    event type and an alert. Failing to queue for one output never stops the others."""

    def __init__(self, outputs: list[AlertOutput], dashboard_url: str | None = None,
                 clip_info: Callable[[str], ClipInfo | None] | None = None):
        self.outputs, self.dashboard_url, self.clip_info = outputs, dashboard_url, clip_info

    def __bool__(self) -> bool:
        return bool(self.outputs)

    def __call__(self, change: Any, alert: Alert | None = None) -> dict[str, Any] | None:
        kind, alert = (change, alert) if alert is not None else (change.kind, change.alert)
        if not self.outputs:
            return None
        kind = "updated" if kind == "explained" else kind
        clip = self.clip_info(alert.id) if self.clip_info and kind == "closed" else None
        event = alert_event(kind, alert, clip, self.dashboard_url)
        for output in self.outputs:
            try:
                output.send(event)
            except Exception:  # noqa: BLE001 - an output must not stop the pipeline
                log.exception("%s: cannot queue event %s", output.name, event["event_id"])
        return event

    def status_changed(self, alert: Alert) -> dict[str, Any] | None:
        """An operator's triage, after the store has it."""
        return self(STATUS_EVENTS[alert.status], alert)

    def close(self, timeout: float = 10.0) -> None:
        for output in self.outputs:
            output.close(timeout)


def build_outputs(settings: OutputsConfig, kafka: KafkaConfig | None = None,
                  store: Any = None) -> AlertOutputs:
    """The outputs of an `outputs` section (Kafka targets default to the `kafka` section's
    brokers); `store` (an AlertStore) adds clip details to closed alerts' events."""
    outputs = []
    try:
        for target in settings.targets:
            outputs.append(OUTPUTS.get(target.kind)(target, settings, kafka))
    except BaseException:
        for output in outputs:
            output.close(0)
        raise
    clip_info = getattr(store, "clip_info", None)
    return AlertOutputs(outputs, settings.dashboard_url, clip_info)
