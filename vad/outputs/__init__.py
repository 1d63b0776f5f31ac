"""Alerts out to other systems: each lifecycle change of an alert (opened, updated, closed)
and each triage (acknowledged, resolved, reopened) as a versioned JSON event
(`vad.outputs.events`, docs/outputs.md) to every configured target (`outputs.targets`: Kafka
topics, webhooks), through a bounded on-disk queue per target.

    outputs = build_outputs(config.outputs, config.kafka, store)   # a pipeline listener
    outputs("acknowledged", alert)            # or outputs.changed(change), an AlertChange
"""

from __future__ import annotations

import logging
from typing import Any

from vad.config.outputs import OutputsConfig
from vad.config.sections import KafkaConfig
from vad.errors import VadError
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
    """Every configured output as one, and a `vad.pipeline.PipelineListener`: each alert
    change the pipeline stores (`changed`) goes out as an event, `explained` as `updated` with
    the alert as the store has it then (a late explanation of a closed alert stays closed).
    Called with an event type and an alert for the dashboard's triage. Failing to queue for
    one output never stops the others."""

    def __init__(self, outputs: list[AlertOutput], dashboard_url: str | None = None,
                 store: Any = None):
        self.outputs, self.dashboard_url, self.store = outputs, dashboard_url, store

    def __bool__(self) -> bool:
        return bool(self.outputs)

    def __call__(self, kind: str, alert: Alert) -> dict[str, Any] | None:
        if not self.outputs:
            return None
        clip = self._clip_info(alert.id) if kind == "closed" else None
        event = alert_event(kind, alert, clip, self.dashboard_url)
        for output in self.outputs:
            try:
                output.send(event)
            except Exception:  # noqa: BLE001 - an output must not stop the pipeline
                log.exception("%s: cannot queue event %s", output.name, event["event_id"])
        return event

    def changed(self, change: Any) -> None:
        """A pipeline change (an object with `kind` and `alert`)."""
        if not self.outputs:
            return
        alert = change.alert
        if change.kind == "explained":
            alert = self._stored(alert)
        self("updated" if change.kind == "explained" else change.kind, alert)

    def status_changed(self, alert: Alert) -> dict[str, Any] | None:
        """An operator's triage, after the store has it."""
        return self(STATUS_EVENTS[alert.status], alert)

    def _stored(self, alert: Alert) -> Alert:
        try:
            return (self.store.get(alert.id) if self.store is not None else None) or alert
        except VadError as exc:  # the store is down: the explained alert as the pipeline has it
            log.warning("alert %s as explained, not as stored: %s", alert.id, exc)
            return alert

    def _clip_info(self, alert_id: str) -> ClipInfo | None:
        try:
            return self.store.clip_info(alert_id) if self.store is not None else None
        except VadError as exc:
            log.warning("alert %s: event without its clip: %s", alert_id, exc)
            return None

    def frame(self, frame: Any) -> None:
        pass

    def forget(self, camera_id: str) -> None:
        pass

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
    return AlertOutputs(outputs, settings.dashboard_url, store)
