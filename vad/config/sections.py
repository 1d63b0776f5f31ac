"""Pipeline, store, streaming and dashboard sections."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from vad.config.auth import DashboardAuthConfig
from vad.config.base import Section
from vad.config.evidence import RetentionConfig


class WindowConfig(Section):
    """How frames are batched into clips for the scorers."""

    batch: int = Field(8, ge=1, description=(
        "frames scored per scorer call after each scorer's own history context"))


class PostprocessConfig(Section):
    """Normalisation and smoothing of scores (offline and online protocols)."""

    smoothing_sigma: float = Field(3.0, ge=0, description=(
        "offline (evaluation) protocol: Gaussian sigma in frames over the whole video"))
    online_smoothing_sigma: float = Field(3.0, ge=0, description=(
        "online protocol: causal half-Gaussian over the past 3 * sigma frames"))
    calibration_weight: int = Field(500, ge=0, description=(
        "weight of the scorer's calibration (normal footage) statistics in the running "
        "normaliser, counted as this many frames of history"))
    adapt_below: float = Field(1.0, description=(
        "the running normaliser adapts only to frames below this z-score (normal-looking ones)"))


class EventConfig(Section):
    """Event detection on the fused, normalised score (z-score units in the online path)."""

    threshold: float = Field(3.0, description="an event opens when the score reaches this")
    release_threshold: float = Field(2.0, description=(
        "hysteresis: an open event continues while the score stays at or above this"))
    min_duration: int = Field(5, ge=1, description="frames an event must last to be an alert")
    merge_gap: int = Field(10, ge=0, description=(
        "frames below release_threshold an event survives (shorter dips are merged)"))
    max_duration_s: float = Field(300.0, gt=0, description=(
        "an alert closes after this many seconds of stream time; a new one continues it while "
        "the score stays at or above release_threshold"))
    idle_s: float = Field(10.0, gt=0, description=(
        "an open alert closes when its camera sends nothing for this long: a gap in frame "
        "timestamps, or (vad serve) wall time once the camera's partition is caught up"))
    update_interval_s: float = Field(1.0, ge=0, description=(
        "an ongoing alert is re-stored (end, peak, evidence at the peak) at most this often, in "
        "seconds of stream time, when it changed"))

    @model_validator(mode="after")
    def _release_not_above_threshold(self) -> EventConfig:
        if self.release_threshold > self.threshold:
            raise ValueError("release_threshold must not exceed threshold")
        return self


class RedisStoreConfig(Section):
    """Options of `redis://` stores (docs/kafka.md)."""

    prefix: str = Field("vad", pattern=r"^[A-Za-z0-9_.-]{1,64}$",
                        description="key prefix: several deployments can share one Redis")
    spool: str | None = Field(None, description=(
        "on-disk spool for writes while Redis is unreachable; default "
        "~/.cache/vad/redis-spool-<host>-<port>-<db>-<prefix>.sqlite"))
    spool_max_mb: float = Field(512.0, gt=0, description="spool size limit")
    retry_seconds: float = Field(2.0, gt=0, description="how often an unreachable Redis is retried")
    stream_maxlen: int = Field(100_000, ge=1, description="approximate length of the alerts stream")
    connect_timeout_s: float = Field(1.0, gt=0, description="socket connect timeout")
    socket_timeout_s: float = Field(1.0, gt=0, description=(
        "socket read/write timeout: a hung Redis makes writes spool after this long"))


class StoreConfig(Section):
    """Where alerts and score timelines are kept."""

    url: str = Field("sqlite:///vad.db", description=(
        "alert store URL: sqlite:///relative.db, sqlite:////absolute.db, redis://host:6379/0 "
        "(a bare path means SQLite)"))
    redis: RedisStoreConfig = Field(default_factory=RedisStoreConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)


def host_ports(value: str) -> str:
    """`value` if it is HOST:PORT[,HOST:PORT...] (a ValueError says which part is not)."""
    for server in value.split(","):
        host, _, port = server.strip().rpartition(":")
        if not host or not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536 \
                or (":" in host and not (host.startswith("[") and host.endswith("]"))):
            raise ValueError(f"{server.strip()!r} is not HOST:PORT")
    return value


class KafkaConfig(Section):
    """The broker and topic of camera frames (message format: docs/kafka.md)."""

    bootstrap: str = Field("localhost:9092", description="HOST:PORT[,HOST:PORT] of the brokers")
    topic: str = Field("frames", description="topic of frame messages")
    max_message_bytes: int = Field(1_000_000, ge=1024, description=(
        "larger frame messages are refused by the publisher and dead-lettered by workers "
        "(under Kafka's default message.max.bytes)"))
    session_timeout_ms: int = Field(6000, ge=1000, description=(
        "consumer session: short, so that rebalances and crash recovery take seconds"))
    heartbeat_interval_ms: int = Field(1000, ge=100, description="consumer heartbeat")
    acks: Literal["all", 1] = Field("all", description="producer acks (never 0: it loses messages)")
    linger_ms: int = Field(5, ge=0, description="producer batching delay")
    fetch_max_wait_ms: int = Field(100, ge=0, description=(
        "how long a fetch waits for data: bounds idle latency"))
    max_frame_pixels: int = Field(3840 * 2160, ge=1, description=(
        "frames with more pixels (read from the JPEG header, before decoding) are "
        "dead-lettered as oversize-image"))
    client_id: str = Field("vad", description="Kafka client id")

    @field_validator("bootstrap")
    @classmethod
    def _host_ports(cls, value: str) -> str:
        return host_ports(value)

    def servers(self) -> list[str]:
        return [server.strip() for server in self.bootstrap.split(",") if server.strip()]


class ServeConfig(Section):
    """`vad serve`: a consumer-group worker."""

    group: str = Field("vad-workers", description="consumer group id")
    dead_letter_topic: str | None = Field(None, description=(
        "where undecodable messages go; default <topic>.dead-letter"))
    partitions: int = Field(4, ge=1, description="partitions of the topics a worker creates")
    queue_size: int = Field(256, ge=1, description="decoded frames waiting for the pipeline")
    commit_interval: float = Field(1.0, gt=0, description="seconds between offset commits")
    metrics_interval: float = Field(10.0, gt=0, description="seconds between metrics log lines")
    offset_reset: Literal["earliest", "latest"] = Field("earliest", description=(
        "where a new consumer group starts"))
    state_scope: str | None = Field(None, description=(
        "name under which camera state checkpoints are kept in the alert store; "
        "default <group>/<topic>"))
    max_cameras: int = Field(1000, ge=1, description=(
        "cameras whose state a worker keeps in memory; beyond it the least recently seen is "
        "checkpointed and freed"))
    evict_idle_s: float = Field(300.0, gt=0, description=(
        "a camera silent this long (wall time) is checkpointed and freed from memory"))
    max_restarts: int = Field(3, ge=1, description=(
        "restarts at the same committed offset before a partition is processed carefully "
        "(each record's offset recorded first): a record that kills the worker then is "
        "dead-lettered as crashed-worker"))
    topic_check_s: float = Field(10.0, gt=0, description=(
        "how often the topic's id is checked: a recreated topic restarts from its earliest "
        "record"))
    metrics_port: int | None = Field(9180, ge=0, lt=65536, description=(
        "Prometheus metrics on http://metrics_host:PORT/metrics; 0 = a free port (logged), "
        "none = off"))
    metrics_host: str = Field("127.0.0.1", description="address of the metrics endpoint")


class PublishConfig(Section):
    """`vad publish`: cameras (or files standing for them) to the frames topic."""

    fps: float | None = Field(None, gt=0, description=(
        "frames/s per camera; none = the source's own timing"))
    max_rate: bool = Field(False, description="as fast as the broker takes them (excludes fps)")
    loop: bool = Field(False, description="replay files and folders forever; indices keep counting")
    limit: int | None = Field(None, ge=1, description="frames per camera")
    jpeg_quality: int = Field(90, ge=1, le=100, description="JPEG quality of frame messages")

    @model_validator(mode="after")
    def _one_rate(self) -> PublishConfig:
        if self.fps is not None and self.max_rate:
            raise ValueError("fps and max_rate exclude each other")
        return self


class DashboardConfig(Section):
    """`vad dashboard`: the Streamlit security dashboard."""

    host: str = Field("127.0.0.1", description=(
        "address to bind: 127.0.0.1 is this machine only; 0.0.0.0 exposes the dashboard"))
    port: int = Field(8501, gt=0, lt=65536, description="TCP port")
    refresh: float = Field(5.0, gt=0, description=(
        "seconds between refreshes of the alert feed (the camera overview: 3x this)"))
    feed_rows: int = Field(30, ge=1, description="rows of the alert feed shown, newest first")
    threshold: float | None = Field(None, description=(
        "event threshold drawn on timelines; none = events.threshold"))
    auth: DashboardAuthConfig = Field(default_factory=DashboardAuthConfig)


class DataConfig(Section):
    """`vad data fetch`: public benchmark archives and their conversions."""

    cache_dir: str = Field("~/.cache/vad", description=(
        "keeps downloaded archives; a fetched dataset goes to <cache_dir>/<dataset> by default"))
    ucsd_url: str = Field("http://www.svcl.ucsd.edu/projects/anomaly/UCSD_Anomaly_Dataset.tar.gz",
                          description="the UCSD Anomaly Detection archive (Ped1 and Ped2)")
    yolox_url: str = Field(
        "https://github.com/Megvii-BaseDetection/YOLOX/releases/download/0.1.1rc0/yolox_nano.onnx",
        description="YOLOX-nano ONNX (Megvii's release); goes to <cache_dir>/models by default")
