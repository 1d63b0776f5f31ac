"""The alert event: one lifecycle change of an alert as versioned JSON (schema in
docs/outputs.md). Its `event_id` is a function of the change alone, so a change sent twice
(a retried delivery, a replayed stream) carries the same id and receivers apply it once."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, fields
from typing import Any
from urllib.parse import quote

from vad.types import Alert, ClipInfo

SCHEMA = "vad.alert-event"
SCHEMA_VERSION = 1
# Pipeline changes, then operator triage (an alert set back to `new` is `reopened`).
EVENT_TYPES = ("opened", "updated", "closed", "acknowledged", "resolved", "reopened")
STATUS_EVENTS = {"acknowledged": "acknowledged", "resolved": "resolved", "new": "reopened"}
# Evidence images stay in the store (the dashboard link shows them); events stay small.
_LEFT_OUT = {"keyframe_jpeg", "heatmap_png", "reference_jpeg"}
ALERT_FIELDS = tuple(f.name for f in fields(Alert) if f.name not in _LEFT_OUT)


def alert_fields(alert: Alert) -> dict[str, Any]:
    values = {name: getattr(alert, name) for name in ALERT_FIELDS}
    values["boxes"] = [asdict(box) for box in alert.boxes]
    return values


def alert_event(kind: str, alert: Alert, clip: ClipInfo | None = None,
                dashboard_url: str | None = None, at: float | None = None) -> dict[str, Any]:
    """The event of one change (`kind`, one of EVENT_TYPES) of `alert` as it now is."""
    if kind not in EVENT_TYPES:
        raise ValueError(f"unknown alert event {kind!r}; expected one of {', '.join(EVENT_TYPES)}")
    body = alert_fields(alert)
    links = {}
    if dashboard_url:
        links["alert"] = f"{dashboard_url}/?alert={quote(alert.id, safe='')}"
    return {
        "schema": SCHEMA,
        "version": SCHEMA_VERSION,
        "event_id": event_id(kind, body),
        "type": kind,
        "time": time.time() if at is None else at,
        "alert": body,
        "clip": None if clip is None else _clip(clip, links.get("alert")),
        "links": links,
    }


def event_id(kind: str, body: dict[str, Any]) -> str:
    """`<alert id>/opened` and `<alert id>/closed` happen once per alert; updates and triage
    are told apart by what they say, `created_at` aside: it is when a process first stored
    the alert, so a worker replaying a stream after a crash would give it anew."""
    if kind in ("opened", "closed"):
        return f"{body['id']}/{kind}"
    said = {key: value for key, value in body.items() if key != "created_at"}
    digest = hashlib.sha256(json.dumps(said, sort_keys=True, default=str).encode()).hexdigest()
    return f"{body['id']}/{kind}/{digest[:16]}"


def _clip(clip: ClipInfo, alert_link: str | None) -> dict[str, Any]:
    info = {key: value for key, value in asdict(clip).items() if key != "alert_id"}
    info["format"] = "video/mp4 (H.264)"
    if alert_link:
        info["url"] = alert_link  # the dashboard's alert detail plays and downloads it
    return info


def encode_event(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()
