"""Alerts as the operator reads them: validated, formatted rows of the feed."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from vad.types import ALERT_STATUSES, Alert

# Timestamps from live cameras are Unix times; those from video files count seconds from the
# start of the video. Anything after 2001-09-09 is read as a Unix time.
EPOCH_TIMESTAMP_MIN = 1e9

STATUS_COLORS = {"new": "red", "acknowledged": "orange", "resolved": "green"}


class MalformedAlert(ValueError):
    """A stored alert record whose fields cannot be shown."""


@dataclass(frozen=True)
class FeedRow:
    alert_id: str
    camera_id: str
    start_frame: int
    end_frame: int
    peak_frame: int
    severity: float
    event_time: str
    duration: str
    frames: int
    status: str
    raised: str
    ongoing: bool = False  # the event goes on: end and duration so far

    def severity_color(self, threshold: float) -> str:
        if self.severity >= 2 * threshold:
            return "red"
        return "orange" if self.severity >= threshold else "gray"


def _number(alert: Alert, name: str) -> float:
    value = getattr(alert, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise MalformedAlert(f"alert {alert.id!r}: {name} is {value!r}, not a finite number")
    return float(value)


def feed_row(alert: Alert, now: float | None = None) -> FeedRow:
    """The feed row of an alert; MalformedAlert when a field a row shows is unusable."""
    if not isinstance(alert.camera_id, str) or not alert.camera_id:
        raise MalformedAlert(f"alert {alert.id!r}: no camera id")
    if alert.status not in ALERT_STATUSES:
        raise MalformedAlert(f"alert {alert.id!r}: unknown status {alert.status!r}")
    start, end = _number(alert, "start_time"), _number(alert, "end_time")
    first, last = int(_number(alert, "start_frame")), int(_number(alert, "end_frame"))
    return FeedRow(
        alert_id=str(alert.id),
        camera_id=alert.camera_id,
        start_frame=first,
        end_frame=last,
        peak_frame=int(_number(alert, "peak_frame")),
        severity=_number(alert, "peak_score"),
        event_time=format_timestamp(start),
        duration=f"{max(0.0, end - start):.1f} s" + (" so far" if alert.ongoing else ""),
        frames=last - first + 1,
        status=alert.status,
        raised=format_age(_number(alert, "created_at"), now),
        ongoing=alert.ongoing,
    )


def format_timestamp(timestamp: float) -> str:
    if timestamp >= EPOCH_TIMESTAMP_MIN:
        return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"video t={timestamp:.1f} s"


def format_age(timestamp: float, now: float | None = None) -> str:
    seconds = max(0.0, (time.time() if now is None else now) - timestamp)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"
