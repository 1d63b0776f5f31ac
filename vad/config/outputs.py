"""Alerts out to other systems: each lifecycle change of an alert as versioned JSON to a Kafka
alerts topic and to webhooks, through a bounded on-disk queue per target (docs/outputs.md)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from vad.config.base import Section
from vad.config.sections import host_ports


class KafkaOutputConfig(Section):
    """Alert events to a Kafka topic, keyed by camera id (a camera's events stay in order)."""

    kind: Literal["kafka"] = Field("kafka", description="which output")
    topic: str = Field("alerts", pattern=r"^[A-Za-z0-9._-]{1,249}$",
                       description="topic of alert events")
    bootstrap: str | None = Field(None, description=(
        "HOST:PORT[,HOST:PORT] of the brokers; none = kafka.bootstrap"))
    partitions: int = Field(4, ge=1, description="partitions when the topic must be created")

    @field_validator("bootstrap")
    @classmethod
    def _host_ports(cls, value: str | None) -> str | None:
        return value if value is None else host_ports(value)


class WebhookOutputConfig(Section):
    """Alert events POSTed as JSON to a URL, signed with HMAC-SHA256 (X-Vad-Signature)."""

    kind: Literal["webhook"] = Field(description="which output")
    url: str = Field(pattern=r"^https?://[^\s/]+", description=(
        "http(s) URL the events are POSTed to"))
    secret_env: str = Field("VAD_WEBHOOK_SECRET", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                            description=(
        "environment variable holding the HMAC key the receiver checks signatures with "
        "(secrets never live in the config); it must be set when the output starts"))
    timeout_s: float = Field(5.0, gt=0, description="seconds a POST may take")


OutputTarget = Annotated[KafkaOutputConfig | WebhookOutputConfig, Field(discriminator="kind")]
"""One receiver of alert events."""


class OutputsConfig(Section):
    """Where alert events go besides the store (Kafka topics, webhooks; docs/outputs.md).

    Events: opened, updated, closed, acknowledged, resolved, reopened. Each target has its own
    on-disk queue, so nothing is lost while it is down; delivery is at least once, in order,
    retried with exponential backoff."""

    targets: list[OutputTarget] = Field(default_factory=list, description=(
        "Kafka topics and webhooks, e.g. [{kind: kafka, topic: alerts}, {kind: webhook, url: "
        "https://example.org/hook}]; none = alerts stay in the store"))
    dashboard_url: str | None = Field(None, pattern=r"^https?://", description=(
        "the dashboard's address as receivers reach it; events then link the alert (which "
        "plays its clip) as <dashboard_url>/?alert=ID"))
    queue_dir: str = Field("~/.cache/vad/outputs", description=(
        "folder of the per-target delivery queues (SQLite)"))
    queue_max_mb: float = Field(256.0, gt=0, description=(
        "per target; when a target has been down so long that its queue is full, the "
        "oldest events are dropped (and counted in the log)"))
    retry_initial_s: float = Field(1.0, gt=0, description="first wait after a failed delivery")
    retry_max_s: float = Field(60.0, gt=0, description=(
        "longest wait between attempts (the wait doubles per failure, with 20% jitter)"))

    @field_validator("dashboard_url")
    @classmethod
    def _no_trailing_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _retry_bounds(self) -> OutputsConfig:
        if self.retry_max_s < self.retry_initial_s:
            raise ValueError("retry_max_s must not be below retry_initial_s")
        return self
