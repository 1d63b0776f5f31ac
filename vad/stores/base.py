"""The `AlertStore` interface and the registry of stores by URL scheme."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlparse

import numpy as np

from vad.errors import VadError
from vad.types import ALERT_STATUSES, Alert


@dataclass(frozen=True)
class AlertQuery:
    camera_id: str | None = None
    status: str | None = None
    min_score: float | None = None
    since: float | None = None  # event start time (s) lower bound
    until: float | None = None
    limit: int = 200


@dataclass(frozen=True)
class ScoreSeries:
    """One camera's score timeline (frame index, timestamp, fused score)."""

    camera_id: str
    indices: np.ndarray
    timestamps: np.ndarray
    scores: np.ndarray


class AlertStore(ABC):
    """Where alerts and score timelines live. `put` is idempotent per alert id."""

    @abstractmethod
    def put(self, alert: Alert) -> bool:
        """Insert or update an alert; True when it was new. Operator status and note survive."""

    @abstractmethod
    def get(self, alert_id: str) -> Alert | None: ...

    @abstractmethod
    def query(self, query: AlertQuery = AlertQuery()) -> list[Alert]:
        """Alerts matching the query, newest event first."""

    @abstractmethod
    def set_status(self, alert_id: str, status: str, note: str = "") -> None: ...

    @abstractmethod
    def record_scores(self, camera_id: str, indices: Sequence[int], timestamps: Sequence[float],
                      scores: Sequence[float]) -> None:
        """Append (or overwrite) fused scores of frames for the camera's timeline."""

    @abstractmethod
    def scores(self, camera_id: str, start_frame: int | None = None,
               end_frame: int | None = None) -> ScoreSeries: ...

    @abstractmethod
    def cameras(self) -> list[str]: ...

    def close(self) -> None:
        """Release connections."""

    def __enter__(self) -> "AlertStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_status(status: str) -> None:
    if status not in ALERT_STATUSES:
        raise VadError(f"unknown alert status {status!r}; expected one of {', '.join(ALERT_STATUSES)}")


_STORES: dict[str, Callable[[str], AlertStore]] = {}


def register_store(*schemes: str) -> Callable[[Callable[[str], AlertStore]], Callable[[str], AlertStore]]:
    """Register a store factory taking the full URL, for the given URL schemes."""

    def wrap(factory: Callable[[str], AlertStore]) -> Callable[[str], AlertStore]:
        for scheme in schemes:
            _STORES[scheme] = factory
        return factory

    return wrap


def open_store(url: str) -> AlertStore:
    """`sqlite:///path.db`, `redis://host:port/db`, ... A bare path means SQLite."""
    scheme = urlparse(url).scheme if "://" in url else "sqlite"
    if scheme not in _STORES:
        raise VadError(f"{url}: unknown alert store scheme {scheme!r}; "
                       f"available: {', '.join(sorted(_STORES))}")
    return _STORES[scheme](url if "://" in url else f"sqlite:///{url}")
