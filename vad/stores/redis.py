"""Redis alert store for the streaming service and the dashboard.

Layout (prefix `vad` by default, `?prefix=` in the URL changes it):
- `vad:alert:<id>`            hash: every `Alert` field (images as raw bytes) + `status_at`
- `vad:alerts`                stream: one `alert` entry per new alert, one `status` entry per
                              acknowledgement; what a live consumer tails (XREAD)
- `vad:alerts:index`          sorted set of alert ids by `created_at` (newest first queries)
- `vad:camera:<cam>:alerts`   the same, per camera
- `vad:scores:<cam>`          sorted set: the camera's fused score timeline, by frame index
- `vad:cameras`               set of camera ids

When Redis cannot be reached, writes go to a bounded on-disk spool (SQLite) in order and are
replayed when it answers again, so an outage loses nothing; reads raise `StoreUnavailableError`.
"""

from __future__ import annotations

import base64
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from vad.errors import VadError
from vad.config.sections import RedisStoreConfig, StoreConfig
from vad.stores.base import (AlertQuery, AlertStore, ScoreSeries, boxes_from_json, boxes_to_json,
                             check_status, redacted, register_store)
from vad.types import Alert

log = logging.getLogger(__name__)

_FIELD_TYPES = {f.name: f.type for f in fields(Alert)}
# Fields an operator owns: re-processing a stream must not reset them.
_OPERATOR_FIELDS = ("status", "note", "created_at")
_BYTES_FIELDS = ("keyframe_jpeg", "heatmap_png", "reference_jpeg")
_UNREACHABLE = (redis.ConnectionError, redis.TimeoutError, OSError)

# Atomic idempotent insert: fields refreshed on every put, operator fields and the stream
# entry only the first time, so at-least-once delivery never shows a duplicate.
_PUT_SCRIPT = """
local created = redis.call('EXISTS', KEYS[1]) == 0
local last_always = 5 + 2 * tonumber(ARGV[5])
redis.call('HSET', KEYS[1], unpack(ARGV, 6, last_always))
if created then
  redis.call('HSET', KEYS[1], unpack(ARGV, last_always + 1))
  redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
  redis.call('ZADD', KEYS[4], ARGV[2], ARGV[1])
  redis.call('SADD', KEYS[5], ARGV[3])
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'type', 'alert', 'id', ARGV[1],
             'camera_id', ARGV[3])
end
return created and 1 or 0
"""


class StoreUnavailableError(VadError):
    """The store cannot be reached and (for writes) its spool is full."""


class RedisAlertStore(AlertStore):
    def __init__(self, url: str, options: RedisStoreConfig):
        self.url = url
        self.options = options
        self._client = redis.Redis.from_url(
            url, socket_connect_timeout=options.connect_timeout_s,
            socket_timeout=options.socket_timeout_s, health_check_interval=15,
            # One immediate retry re-dials a pooled connection of a restarted server.
            retry=Retry(NoBackoff(), 1))
        self._put_script = self._client.register_script(_PUT_SCRIPT)
        self._spool = _Spool(Path(options.spool or _default_spool(url, options.prefix)),
                             int(options.spool_max_mb * 1024 * 1024))
        self._lock = threading.RLock()
        self._retry_at = 0.0
        self._closed = threading.Event()
        self._flusher: threading.Thread | None = None
        if self._spool.pending():
            self._start_flusher()

    # -- keys -------------------------------------------------------------------------------
    def _key(self, *parts: str) -> str:
        return ":".join((self.options.prefix, *parts))

    # -- writes (spooled while Redis is unreachable) ------------------------------------------
    def put(self, alert: Alert) -> bool:
        """True when the alert was new (or spooled: whether it is new is not known yet)."""
        return self._write("put", _alert_to_json(alert))

    def record_scores(self, camera_id: str, indices: Sequence[int], timestamps: Sequence[float],
                      scores: Sequence[float]) -> None:
        self._write("scores", {"camera_id": camera_id, "indices": [int(i) for i in indices],
                               "timestamps": [float(t) for t in timestamps],
                               "scores": [float(s) for s in scores]})

    def set_status(self, alert_id: str, status: str, note: str = "") -> None:
        check_status(status)
        if self._apply("exists", {"id": alert_id}) == 0:
            raise VadError(f"no alert with id {alert_id!r}")
        self._write("status", {"id": alert_id, "status": status, "note": note,
                               "at": time.time()})

    def _write(self, op: str, payload: dict[str, Any]) -> Any:
        with self._lock:
            if self._spool.pending() and not self._flush_spool():
                self._spool.append(op, payload)
                return True
            try:
                return self._apply(op, payload)
            except _UNREACHABLE as exc:
                self._mark_down(exc)
                self._spool.append(op, payload)
                self._start_flusher()
                return True

    def _apply(self, op: str, payload: dict[str, Any]) -> Any:
        return getattr(self, f"_apply_{op}")(payload)

    def _apply_exists(self, payload: dict[str, Any]) -> int:
        try:
            return self._client.exists(self._key("alert", payload["id"]))
        except _UNREACHABLE as exc:
            raise self._unavailable(exc) from None

    def _apply_put(self, payload: dict[str, Any]) -> bool:
        alert = _alert_from_json(payload)
        camera = alert.camera_id
        always = [(name, _to_redis(name, getattr(alert, name))) for name in _FIELD_TYPES
                  if name not in _OPERATOR_FIELDS]
        once = [(name, _to_redis(name, getattr(alert, name))) for name in _OPERATOR_FIELDS]
        once.append(("status_at", _to_redis("status_at", alert.created_at)))
        args = [alert.id, alert.created_at, camera, self.options.stream_maxlen, len(always)]
        args += [item for pair in always + once for item in pair]
        keys = [self._key("alert", alert.id), self._key("alerts"), self._key("alerts", "index"),
                self._key("camera", camera, "alerts"), self._key("cameras")]
        return bool(self._put_script(keys=keys, args=args))

    def _apply_scores(self, payload: dict[str, Any]) -> None:
        key = self._key("scores", payload["camera_id"])
        with self._client.pipeline(transaction=True) as pipe:
            for index, timestamp, score in zip(payload["indices"], payload["timestamps"],
                                               payload["scores"]):
                pipe.zremrangebyscore(key, index, index)  # overwrite a re-scored frame
                pipe.zadd(key, {f"{index}|{timestamp!r}|{score!r}": index})
            pipe.sadd(self._key("cameras"), payload["camera_id"])
            pipe.execute()

    def _apply_status(self, payload: dict[str, Any]) -> None:
        with self._client.pipeline(transaction=True) as pipe:
            pipe.hset(self._key("alert", payload["id"]),
                      mapping={"status": payload["status"], "note": payload["note"],
                               "status_at": repr(payload["at"])})
            pipe.xadd(self._key("alerts"), {"type": "status", "id": payload["id"],
                                            "status": payload["status"]},
                      maxlen=self.options.stream_maxlen, approximate=True)
            pipe.execute()

    # -- the spool ----------------------------------------------------------------------------
    def _mark_down(self, exc: Exception) -> None:
        if not self._retry_at:
            log.warning("%s unreachable (%s): spooling alerts to %s", self._safe_url(), exc,
                        self._spool.path)
        self._retry_at = time.monotonic() + self.options.retry_seconds

    def _flush_spool(self) -> bool:
        """Replay the spool in order; True when it is empty afterwards."""
        with self._lock:
            if time.monotonic() < self._retry_at:
                return False
            try:
                replayed = self._spool.drain(self._apply)
            except _UNREACHABLE as exc:
                self._mark_down(exc)
                return False
            if replayed:
                log.warning("%s is back: replayed %d spooled writes", self._safe_url(), replayed)
            self._retry_at = 0.0
            return True

    def _start_flusher(self) -> None:
        if self._flusher is None or not self._flusher.is_alive():
            self._flusher = threading.Thread(target=self._flush_loop, name="redis-spool",
                                             daemon=True)
            self._flusher.start()

    def _flush_loop(self) -> None:
        while not self._closed.wait(self.options.retry_seconds / 2):
            if self._flush_spool():
                return

    def spooled(self) -> int:
        """Writes waiting in the spool for Redis to come back."""
        return self._spool.pending()

    # -- reads --------------------------------------------------------------------------------
    def _read(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except _UNREACHABLE as exc:
            raise self._unavailable(exc) from None

    def _unavailable(self, exc: Exception) -> StoreUnavailableError:
        return StoreUnavailableError(f"{self._safe_url()}: Redis unreachable ({exc})")

    def get(self, alert_id: str) -> Alert | None:
        raw = self._read(lambda: self._client.hgetall(self._key("alert", alert_id)))
        return _alert_from_redis(raw) if raw else None

    def query(self, query: AlertQuery = AlertQuery()) -> list[Alert]:
        index = (self._key("camera", query.camera_id, "alerts") if query.camera_id
                 else self._key("alerts", "index"))
        found: list[Alert] = []
        page, start = 500, 0
        while len(found) < query.limit:
            ids = self._read(lambda: self._client.zrevrange(index, start, start + page - 1))
            if not ids:
                break
            start += page
            with self._client.pipeline(transaction=False) as pipe:
                for alert_id in ids:
                    pipe.hgetall(self._key("alert", alert_id.decode()))
                rows = self._read(pipe.execute)
            found += [alert for alert in map(_alert_from_redis, filter(None, rows))
                      if _matches(alert, query)]
        return found[: query.limit]

    def scores(self, camera_id: str, start_frame: int | None = None,
               end_frame: int | None = None) -> ScoreSeries:
        lo = "-inf" if start_frame is None else start_frame
        hi = "+inf" if end_frame is None else end_frame
        members = self._read(lambda: self._client.zrangebyscore(self._key("scores", camera_id),
                                                                lo, hi))
        rows = [tuple(float(part) for part in member.split(b"|")) for member in members]
        array = np.array(rows, dtype=np.float64).reshape(-1, 3)
        return ScoreSeries(camera_id, array[:, 0].astype(np.int64), array[:, 1], array[:, 2])

    def cameras(self) -> list[str]:
        members = self._read(lambda: self._client.smembers(self._key("cameras")))
        return sorted(member.decode() for member in members)

    def close(self) -> None:
        self._closed.set()
        if self._flusher is not None:
            self._flusher.join(timeout=5)
        with self._lock:
            if self._spool.pending() and self._flush_spool() is False:
                log.warning("%s unreachable at close: %d writes stay spooled in %s",
                            self._safe_url(), self._spool.pending(), self._spool.path)
            self._spool.close()
            self._client.close()

    def _safe_url(self) -> str:
        return redacted(self.url)


def _matches(alert: Alert, query: AlertQuery) -> bool:
    return ((query.status is None or alert.status == query.status)
            and (query.min_score is None or alert.peak_score >= query.min_score)
            and (query.since is None or alert.start_time >= query.since)
            and (query.until is None or alert.start_time <= query.until))


# -- (de)serialisation --------------------------------------------------------------------------
def _to_redis(name: str, value: Any) -> bytes | str:
    if name == "boxes":
        return boxes_to_json(value)
    if isinstance(value, bytes):
        return value
    if value is None:
        return b""
    return repr(value) if isinstance(value, float) else str(value)


# Defaults of fields an older release did not write.
_DEFAULTS = {f.name: f.default for f in fields(Alert) if f.default is not MISSING}


def _alert_from_redis(raw: dict[bytes, bytes]) -> Alert:
    values = {}
    for name, kind in _FIELD_TYPES.items():
        data = raw.get(name.encode())
        if data is None and name in _DEFAULTS:
            values[name] = _DEFAULTS[name]
        elif name == "boxes":
            values[name] = boxes_from_json(data)
        elif name in _BYTES_FIELDS:
            values[name] = data or None
        elif kind in ("int", int):
            values[name] = int(data or 0)
        elif kind in ("float", float):
            values[name] = float(data or 0)
        else:
            values[name] = (data or b"").decode()
    return Alert(**values)


def _alert_to_json(alert: Alert) -> dict[str, Any]:
    values = {name: getattr(alert, name) for name in _FIELD_TYPES}
    values["boxes"] = boxes_to_json(alert.boxes)
    for name in _BYTES_FIELDS:
        if values[name] is not None:
            values[name] = base64.b64encode(values[name]).decode()
    return values


def _alert_from_json(values: dict[str, Any]) -> Alert:
    values = dict(values)
    values["boxes"] = boxes_from_json(values.get("boxes"))
    for name in _BYTES_FIELDS:  # a spool written by an older release may lack some
        if values.get(name) is not None:
            values[name] = base64.b64decode(values[name])
    return Alert(**values)


class _Spool:
    """An ordered, bounded, crash-safe queue of pending writes in SQLite. Several processes
    may share one file: a drain holds the write lock, so each entry is replayed once."""

    def __init__(self, path: Path, max_bytes: int):
        self.path = path
        self.max_bytes = max_bytes
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, timeout=30,
                                   isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a spooled alert survives a crash
        self._db.execute("CREATE TABLE IF NOT EXISTS ops (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
                         " op TEXT NOT NULL, payload TEXT NOT NULL, size INTEGER NOT NULL)")
        self._lock = threading.Lock()

    def pending(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM ops").fetchone()[0]

    def append(self, op: str, payload: dict[str, Any]) -> None:
        text = json.dumps(payload)
        with self._lock:
            used = self._db.execute("SELECT COALESCE(SUM(size), 0) FROM ops").fetchone()[0]
            if used + len(text) > self.max_bytes:
                raise StoreUnavailableError(
                    f"Redis unreachable and the spool {self.path} is full "
                    f"({used / 2**20:.0f} MiB); raise spool_max_mb or restore Redis")
            self._db.execute("INSERT INTO ops (op, payload, size) VALUES (?, ?, ?)",
                             (op, text, len(text)))

    def drain(self, apply: Callable[[str, dict[str, Any]], Any], batch: int = 200) -> int:
        """Apply entries oldest first, deleting each once applied; stops at the first error."""
        done = 0
        with self._lock:
            while True:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    rows = self._db.execute("SELECT seq, op, payload FROM ops ORDER BY seq LIMIT ?",
                                            (batch,)).fetchall()
                    for seq, op, payload in rows:
                        apply(op, json.loads(payload))
                        self._db.execute("DELETE FROM ops WHERE seq=?", (seq,))
                        done += 1
                finally:
                    self._db.execute("COMMIT")
                if len(rows) < batch:
                    return done

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _default_spool(url: str, prefix: str) -> Path:
    parsed = urlparse(url)
    name = (f"redis-spool-{parsed.hostname}-{parsed.port or 6379}-"
            f"{parsed.path.strip('/') or 0}-{prefix}")
    return Path.home() / ".cache" / "vad" / f"{name}.sqlite"


@register_store("redis", "rediss")
def _open_redis(config: StoreConfig) -> RedisAlertStore:
    """`redis://[:password@]host:port/db` (query parameters go to redis-py) with the options
    of the `store.redis` section."""
    if not urlparse(config.url).hostname:
        raise VadError(f"{redacted(config.url)}: a Redis URL needs a host, "
                       "e.g. redis://localhost:6379/0")
    return RedisAlertStore(config.url, config.redis)
