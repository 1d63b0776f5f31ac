"""The `AlertStore` interface and the registry of stores by URL scheme."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from urllib.parse import urlparse

import numpy as np

from vad.config.sections import StoreConfig
from vad.errors import VadError
from vad.registry import Registry
from vad.types import ALERT_STATUSES, Alert, Box, CameraStatus, ClipInfo, EventClip, Gap


@dataclass(frozen=True)
class AlertQuery:
    camera_id: str | None = None
    status: str | None = None
    min_score: float | None = None
    since: float | None = None  # event start time (s) lower bound
    until: float | None = None
    kind: str | None = None  # one of vad.types.ALERT_KINDS
    limit: int = 200


@dataclass(frozen=True)
class ScoreSeries:
    """One camera's score timeline (frame index, timestamp, fused score)."""

    camera_id: str
    indices: np.ndarray
    timestamps: np.ndarray
    scores: np.ndarray


# Alert fields with their own writers: the operator's (`set_status`) and the reasoner's
# (`explain`); `put` sets them only on a new alert.
OPERATOR_FIELDS = ("status", "note", "created_at", "status_by", "status_at")
EXPLANATION_FIELDS = ("explanation", "rule", "motion_description", "objects")


class AlertStore(ABC):
    """Where alerts and score timelines live, and the checkpoints of the streaming workers'
    camera state. `put` is idempotent per alert id."""

    @abstractmethod
    def put(self, alert: Alert) -> bool:
        """Insert or update an alert; True when it was new. Operator status and note, and the
        explanation, survive."""

    @abstractmethod
    def explain(self, alert: Alert) -> None:
        """Store the alert's explanation fields (EXPLANATION_FIELDS) on the stored alert."""

    @abstractmethod
    def get(self, alert_id: str) -> Alert | None: ...

    @abstractmethod
    def query(self, query: AlertQuery = AlertQuery()) -> list[Alert]:
        """Alerts matching the query, newest event first."""

    @abstractmethod
    def set_status(self, alert_id: str, status: str, note: str = "", by: str = "") -> None:
        """An operator's triage: the status, their note, who (`by`) and when (now)."""

    @abstractmethod
    def record_scores(self, camera_id: str, indices: Sequence[int], timestamps: Sequence[float],
                      scores: Sequence[float]) -> None:
        """Append (or overwrite) fused scores of frames for the camera's timeline."""

    @abstractmethod
    def scores(self, camera_id: str, start_frame: int | None = None,
               end_frame: int | None = None) -> ScoreSeries: ...

    @abstractmethod
    def cameras(self) -> list[str]:
        """Cameras with alerts, scores or a status, sorted."""

    @abstractmethod
    def set_camera_status(self, status: CameraStatus) -> None:
        """Replace the camera's live status."""

    @abstractmethod
    def camera_statuses(self) -> dict[str, CameraStatus]:
        """The last status of every live camera, by camera id."""

    # -- evidence: event clips and the retention policy (store.retention) ---------------------
    @abstractmethod
    def put_clip(self, clip: EventClip) -> None:
        """Keep an alert's event clip (replacing one it had), then apply the retention."""

    @abstractmethod
    def clip(self, alert_id: str) -> EventClip | None: ...

    @abstractmethod
    def clip_info(self, alert_id: str) -> ClipInfo | None:
        """What `clip` would give, without the video bytes."""

    @abstractmethod
    def apply_retention(self, now: float | None = None) -> int:
        """Delete clips (and keyframes and heatmaps) older than `retention.max_age_days`, then
        the oldest clips while they hold more than `retention.max_mb`; returns how many clips
        went."""

    # -- checkpoints: opaque blobs by (scope, key), e.g. a worker's camera states ------------
    @abstractmethod
    def save_states(self, scope: str, states: dict[str, bytes | None]) -> None:
        """Write (None: delete) several checkpoints at once, durably: when it returns they
        are in the store itself with every write made before (never only in a spool), or it
        raises `StoreUnavailableError`."""

    @abstractmethod
    def load_state(self, scope: str, key: str) -> bytes | None: ...

    @abstractmethod
    def state_keys(self, scope: str) -> set[str]: ...

    @abstractmethod
    def clear_states(self, scope: str) -> None:
        """Delete every checkpoint of the scope."""

    def close(self) -> None:
        """Release connections."""

    def __enter__(self) -> "AlertStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StoreUnavailableError(VadError):
    """The store cannot be reached (for writes: and its spool is full or unusable)."""


def boxes_to_json(boxes: Sequence[Box]) -> str:
    return json.dumps([asdict(box) for box in boxes]) if boxes else ""


def boxes_from_json(text: str | bytes | None) -> tuple[Box, ...]:
    return tuple(Box(**item) for item in json.loads(text)) if text else ()


def status_to_json(status: CameraStatus) -> str:
    return json.dumps(asdict(status))


def status_from_json(text: str | bytes) -> CameraStatus:
    values = json.loads(text)
    values["gaps"] = tuple(Gap(**gap) for gap in values.get("gaps", ()))
    return CameraStatus(**values)


def clip_info_to_json(info: ClipInfo) -> str:
    return json.dumps(asdict(info))


def clip_info_from_json(text: str | bytes) -> ClipInfo:
    return ClipInfo(**json.loads(text))


def check_status(status: str) -> None:
    if status not in ALERT_STATUSES:
        raise VadError(f"unknown alert status {status!r}; expected one of {', '.join(ALERT_STATUSES)}")


STORES: Registry[AlertStore] = Registry("alert store scheme")


def register_store(*schemes: str) -> Callable[[Callable[[StoreConfig], AlertStore]],
                                             Callable[[StoreConfig], AlertStore]]:
    """Register a store factory taking the store section, for the given URL schemes."""

    def wrap(factory: Callable[[StoreConfig], AlertStore]) -> Callable[[StoreConfig], AlertStore]:
        for scheme in schemes:
            STORES.register(scheme)(factory)
        return factory

    return wrap


def open_store(config: StoreConfig | str) -> AlertStore:
    """The store of a `store:` section, or of a URL (`sqlite:///path.db`, `redis://host:port/db`;
    a bare path means SQLite) with the default options."""
    if isinstance(config, str):
        config = StoreConfig(url=config)
    url = config.url if "://" in config.url else f"sqlite:///{config.url}"
    config = config.model_copy(update={"url": url})
    return STORES.get(urlparse(url).scheme)(config)
