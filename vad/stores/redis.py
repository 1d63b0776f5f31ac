"""Redis alert store for the streaming service and the dashboard.

Layout (prefix `vad` by default, `?prefix=` in the URL changes it):
- `vad:alert:<id>`            hash: every `Alert` field (images as raw bytes)
- `vad:alerts`                stream: one `alert` entry per new alert, one `status` entry per
                              acknowledgement (with who: `by`); what a live consumer tails (XREAD)
- `vad:alerts:index`          sorted set of alert ids by `created_at` (newest first queries)
- `vad:camera:<cam>:alerts`   the same, per camera
- `vad:scores:<cam>`          sorted set: the camera's fused score timeline, by frame index
- `vad:cameras`               set of camera ids
- `vad:checkpoints:<scope>`   hash: checkpoint blobs by key (streaming workers' camera states)
- `vad:camera-status`         hash: camera id -> its last live status (JSON)
- `vad:clip:<id>`             hash: an alert's event clip (`data`, MP4) and its `info` (JSON)
- `vad:clips`                 sorted set of alert ids with a clip, by the clip's created_at
- `vad:clips:size`            hash: alert id -> its clip's bytes (the retention's budget)
- `vad:retention:images`      how far back keyframes and heatmaps were already deleted

When Redis cannot be reached, writes go to a bounded on-disk spool (SQLite, created when first
needed) in order and are replayed when it answers again, so an outage loses nothing; reads
raise `StoreUnavailableError`, and so do checkpoint writes, which must reach Redis itself.
"""

from __future__ import annotations

import base64
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from vad.durable import open_durable
from vad.errors import VadError
from vad.config.evidence import RetentionConfig
from vad.config.sections import RedisStoreConfig, StoreConfig
from vad.stores.base import (EXPLANATION_FIELDS, OPERATOR_FIELDS, AlertQuery, AlertStore,
                             ScoreSeries, StoreUnavailableError, boxes_from_json, boxes_to_json,
                             check_status, clip_info_from_json, clip_info_to_json, register_store,
                             status_from_json, status_to_json)
from vad.types import Alert, CameraStatus, ClipInfo, EventClip
from vad.urls import redacted

log = logging.getLogger(__name__)

__all__ = ["RedisAlertStore", "StoreUnavailableError"]

_FIELD_TYPES = {f.name: f.type for f in fields(Alert)}
# Fields `put` sets only on a new alert: re-processing a stream must not reset them.
_KEPT_FIELDS = (*OPERATOR_FIELDS, *EXPLANATION_FIELDS)
_BYTES_FIELDS = ("keyframe_jpeg", "heatmap_png", "reference_jpeg")
_UNREACHABLE = (redis.ConnectionError, redis.TimeoutError, OSError)
# A wrong or missing password is a configuration error, not an outage: nothing is spooled.
_REFUSED = (redis.exceptions.AuthenticationError, redis.exceptions.AuthorizationError)

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


class RedisAlertStore(AlertStore):
    def __init__(self, url: str, options: RedisStoreConfig,
                 retention: RetentionConfig | None = None):
        self.url = url
        self.options = options
        self.retention = retention or RetentionConfig()
        self._client = redis.Redis.from_url(
            url, socket_connect_timeout=options.connect_timeout_s,
            socket_timeout=options.socket_timeout_s, health_check_interval=15,
            # One immediate retry re-dials a pooled connection of a restarted server.
            retry=Retry(NoBackoff(), 1))
        self._put_script = self._client.register_script(_PUT_SCRIPT)
        self._spool_path = Path(options.spool or _default_spool(url, options.prefix))
        self._spool: _Spool | None = None  # opened when first needed
        self._lock = threading.RLock()
        self._retry_at = 0.0
        self._closed = threading.Event()
        self._flusher: threading.Thread | None = None
        if self._spool_path.exists():  # left by a stopped process: replay it
            try:
                self._open_spool()
            except StoreUnavailableError as exc:
                log.warning("%s (nothing is spooled unless Redis becomes unreachable)", exc)
            else:
                if self._spool.pending():
                    self._start_flusher()

    def _open_spool(self) -> _Spool:
        if self._spool is None:
            self._spool = _Spool(self._spool_path, int(self.options.spool_max_mb * 1024 * 1024),
                                 f"{self._safe_url()} prefix {self.options.prefix}")
        return self._spool

    def _spooled_count(self) -> int:
        return self._spool.pending() if self._spool is not None else 0

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

    def explain(self, alert: Alert) -> None:
        self._write("explain", {"id": alert.id, "fields": {
            name: getattr(alert, name) for name in EXPLANATION_FIELDS}})

    def set_camera_status(self, status: CameraStatus) -> None:
        self._write("camera_status", {"camera_id": status.camera_id,
                                      "status": status_to_json(status)})

    def put_clip(self, clip: EventClip) -> None:
        self._write("clip", {"info": clip_info_to_json(clip.info),
                             "data": base64.b64encode(clip.data).decode()})

    def set_status(self, alert_id: str, status: str, note: str = "", by: str = "") -> None:
        check_status(status)
        if self._apply("exists", {"id": alert_id}) == 0:
            raise VadError(f"no alert with id {alert_id!r}")
        self._write("status", {"id": alert_id, "status": status, "note": note, "by": by,
                               "at": time.time()})

    def _write(self, op: str, payload: dict[str, Any]) -> Any:
        with self._lock:
            if self._spooled_count() and not self._flush_spool():
                self._spool.append(op, payload)
                return True
            if time.monotonic() >= self._retry_at:  # a down Redis is not waited for again
                try:
                    return self._apply(op, payload)
                except _REFUSED as exc:
                    raise self._refused(exc) from None
                except _UNREACHABLE as exc:
                    self._mark_down(exc)
            self._open_spool().append(op, payload)
            self._start_flusher()
            return True

    def _apply(self, op: str, payload: dict[str, Any]) -> Any:
        return getattr(self, f"_apply_{op}")(payload)

    def _apply_exists(self, payload: dict[str, Any]) -> int:
        try:
            return self._client.exists(self._key("alert", payload["id"]))
        except _REFUSED as exc:
            raise self._refused(exc) from None
        except _UNREACHABLE as exc:
            raise self._unavailable(exc) from None

    def _apply_put(self, payload: dict[str, Any]) -> bool:
        alert = _alert_from_json(payload)
        camera = alert.camera_id
        always = [(name, _to_redis(name, getattr(alert, name))) for name in _FIELD_TYPES
                  if name not in _KEPT_FIELDS]
        once = [(name, _to_redis(name, getattr(alert, name))) for name in _KEPT_FIELDS]
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

    def _apply_explain(self, payload: dict[str, Any]) -> None:
        key = self._key("alert", payload["id"])
        with self._client.pipeline(transaction=True) as pipe:
            pipe.exists(key)
            pipe.hset(key, mapping=payload["fields"])
            if not pipe.execute()[0]:  # only known alerts: never a half alert
                self._client.delete(key)

    def _apply_status(self, payload: dict[str, Any]) -> None:
        with self._client.pipeline(transaction=True) as pipe:
            by = payload.get("by", "")  # spooled by an older release: nobody recorded
            pipe.hset(self._key("alert", payload["id"]),
                      mapping={"status": payload["status"], "note": payload["note"],
                               "status_by": by, "status_at": repr(payload["at"])})
            pipe.xadd(self._key("alerts"), {"type": "status", "id": payload["id"],
                                            "status": payload["status"], "by": by},
                      maxlen=self.options.stream_maxlen, approximate=True)
            pipe.execute()

    # -- checkpoints: straight to Redis, after every spooled write ------------------------------
    def save_states(self, scope: str, states: dict[str, bytes | None]) -> None:
        with self._lock:
            if self._spooled_count() and not self._flush_spool():
                raise StoreUnavailableError(
                    f"{self._safe_url()}: {self._spooled_count()} writes still spooled")
            if time.monotonic() < self._retry_at:
                raise StoreUnavailableError(f"{self._safe_url()}: Redis unreachable")
            key = self._key("checkpoints", scope)
            try:
                with self._client.pipeline(transaction=True) as pipe:
                    deleted = [k for k, state in states.items() if state is None]
                    written = {k: state for k, state in states.items() if state is not None}
                    if deleted:
                        pipe.hdel(key, *deleted)
                    if written:
                        pipe.hset(key, mapping=written)
                    pipe.execute()
            except _UNREACHABLE as exc:
                self._mark_down(exc)
                raise self._unavailable(exc) from None

    def load_state(self, scope: str, key: str) -> bytes | None:
        return self._read(lambda: self._client.hget(self._key("checkpoints", scope), key))

    def state_keys(self, scope: str) -> set[str]:
        keys = self._read(lambda: self._client.hkeys(self._key("checkpoints", scope)))
        return {key.decode() for key in keys}

    def clear_states(self, scope: str) -> None:
        self._read(lambda: self._client.delete(self._key("checkpoints", scope)))

    def _apply_camera_status(self, payload: dict[str, Any]) -> None:
        with self._client.pipeline(transaction=True) as pipe:
            pipe.hset(self._key("camera-status"), payload["camera_id"], payload["status"])
            pipe.sadd(self._key("cameras"), payload["camera_id"])
            pipe.execute()

    def _apply_clip(self, payload: dict[str, Any]) -> None:
        info = clip_info_from_json(payload["info"])
        with self._client.pipeline(transaction=True) as pipe:
            pipe.hset(self._key("clip", info.alert_id),
                      mapping={"info": payload["info"], "data": base64.b64decode(payload["data"])})
            pipe.zadd(self._key("clips"), {info.alert_id: info.created_at})
            pipe.hset(self._key("clips", "size"), info.alert_id, info.size)
            pipe.execute()
        self._retain(time.time())

    def apply_retention(self, now: float | None = None) -> int:
        try:
            return self._retain(time.time() if now is None else now)
        except _REFUSED as exc:
            raise self._refused(exc) from None
        except _UNREACHABLE as exc:
            raise self._unavailable(exc) from None

    def _retain(self, now: float) -> int:
        retention, client = self.retention, self._client
        doomed: list[str] = []
        if retention.max_age_days is not None:
            cutoff = now - retention.max_age_days * 86400
            doomed += [m.decode() for m in client.zrangebyscore(self._key("clips"), "-inf",
                                                                 f"({cutoff}")]
            done = float(client.get(self._key("retention", "images")) or "-inf")
            since = "-inf" if done == float("-inf") else f"({done}"
            old = client.zrangebyscore(self._key("alerts", "index"), since, f"({cutoff}")
            with client.pipeline(transaction=False) as pipe:
                for alert_id in old:
                    pipe.hdel(self._key("alert", alert_id.decode()), *_BYTES_FIELDS)
                pipe.set(self._key("retention", "images"), repr(max(done, cutoff)))
                pipe.execute()
        if retention.max_mb is not None:
            sizes = {k.decode(): int(v) for k, v in
                     client.hgetall(self._key("clips", "size")).items()}
            excess = sum(size for key, size in sizes.items() if key not in doomed) \
                - retention.max_mb * 2**20
            for member in client.zrange(self._key("clips"), 0, -1):
                if excess <= 0:
                    break
                alert_id = member.decode()
                if alert_id not in doomed:
                    doomed.append(alert_id)
                    excess -= sizes.get(alert_id, 0)
        if doomed:
            with client.pipeline(transaction=True) as pipe:
                for alert_id in doomed:
                    pipe.delete(self._key("clip", alert_id))
                pipe.zrem(self._key("clips"), *doomed)
                pipe.hdel(self._key("clips", "size"), *doomed)
                pipe.execute()
        return len(doomed)

    # -- the spool ----------------------------------------------------------------------------
    def _mark_down(self, exc: Exception) -> None:
        if not self._retry_at:
            log.warning("%s unreachable (%s): spooling alerts to %s", self._safe_url(), exc,
                        self._spool_path)
        self._retry_at = time.monotonic() + self.options.retry_seconds

    def _flush_spool(self) -> bool:
        """Replay the spool in order; True when it is empty afterwards."""
        with self._lock:
            if self._spool is None:
                return True
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
        return self._spooled_count()

    # -- reads --------------------------------------------------------------------------------
    def _read(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except _REFUSED as exc:
            raise self._refused(exc) from None
        except _UNREACHABLE as exc:
            raise self._unavailable(exc) from None

    def _unavailable(self, exc: Exception) -> StoreUnavailableError:
        return StoreUnavailableError(f"{self._safe_url()}: Redis unreachable ({exc})")

    def _refused(self, exc: Exception) -> VadError:
        return VadError(f"{self._safe_url()}: Redis refused the credentials ({exc})")

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

    def clip(self, alert_id: str) -> EventClip | None:
        raw = self._read(lambda: self._client.hmget(self._key("clip", alert_id), "info", "data"))
        return None if raw[0] is None else EventClip(clip_info_from_json(raw[0]), raw[1])

    def clip_info(self, alert_id: str) -> ClipInfo | None:
        info = self._read(lambda: self._client.hget(self._key("clip", alert_id), "info"))
        return None if info is None else clip_info_from_json(info)

    def cameras(self) -> list[str]:
        members = self._read(lambda: self._client.smembers(self._key("cameras")))
        return sorted(member.decode() for member in members)

    def camera_statuses(self) -> dict[str, CameraStatus]:
        raw = self._read(lambda: self._client.hgetall(self._key("camera-status")))
        statuses = sorted(map(status_from_json, raw.values()), key=lambda s: s.camera_id)
        return {status.camera_id: status for status in statuses}

    def close(self) -> None:
        self._closed.set()
        if self._flusher is not None:
            self._flusher.join(timeout=5)
        with self._lock:
            try:
                if self._spooled_count() and self._flush_spool() is False:
                    log.warning("%s unreachable at close: %d writes stay spooled in %s",
                                self._safe_url(), self._spooled_count(), self._spool_path)
            finally:
                if self._spool is not None:
                    self._spool.close()
                self._client.close()

    def _safe_url(self) -> str:
        return redacted(self.url)


def _matches(alert: Alert, query: AlertQuery) -> bool:
    return ((query.status is None or alert.status == query.status)
            and (query.min_score is None or alert.peak_score >= query.min_score)
            and (query.since is None or alert.start_time >= query.since)
            and (query.until is None or alert.start_time <= query.until)
            and (query.kind is None or alert.kind == query.kind))


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
    may share one file: a drain holds the write lock, so each entry is replayed once. A
    rollback journal, not WAL: no memory-mapped file that a read-only or full disk turns into
    SIGBUS. Every failure is a `StoreUnavailableError` naming the file."""

    def __init__(self, path: Path, max_bytes: int, target: str):
        self.path = path
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        with self._errors("cannot be opened"):
            self._db = open_durable(
                path, "CREATE TABLE IF NOT EXISTS ops (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                "op TEXT NOT NULL, payload TEXT NOT NULL, size INTEGER NOT NULL)",
                "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('target', ?)", (target,))
            owner = self._db.execute("SELECT value FROM meta WHERE key='target'").fetchone()[0]
        if owner != target:
            self._db.close()
            raise StoreUnavailableError(f"spool {path}: holds writes for {owner}, not {target}; "
                                        "give this store its own store.redis.spool")

    @contextmanager
    def _errors(self, what: str):
        try:
            yield
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailableError(f"spool {self.path}: {what} ({exc})") from None

    def pending(self) -> int:
        with self._lock, self._errors("cannot be read"):
            return self._db.execute("SELECT COUNT(*) FROM ops").fetchone()[0]

    def append(self, op: str, payload: dict[str, Any]) -> None:
        text = json.dumps(payload)
        with self._lock:
            with self._errors("cannot be read"):
                used = self._db.execute("SELECT COALESCE(SUM(size), 0) FROM ops").fetchone()[0]
            if used + len(text) > self.max_bytes:
                raise StoreUnavailableError(
                    f"Redis unreachable and the spool {self.path} is full "
                    f"({used / 2**20:.0f} MiB); raise store.redis.spool_max_mb or restore Redis")
            with self._errors("cannot be written"):
                self._db.execute("INSERT INTO ops (op, payload, size) VALUES (?, ?, ?)",
                                 (op, text, len(text)))

    def drain(self, apply: Callable[[str, dict[str, Any]], Any], batch: int = 200) -> int:
        """Apply entries oldest first, deleting each once applied; stops at the first error."""
        done = 0
        with self._lock:
            while True:
                with self._errors("cannot be replayed"):
                    self._db.execute("BEGIN IMMEDIATE")
                try:
                    rows = self._db.execute("SELECT seq, op, payload FROM ops ORDER BY seq LIMIT ?",
                                            (batch,)).fetchall()
                    for seq, op, payload in rows:
                        apply(op, json.loads(payload))
                        self._db.execute("DELETE FROM ops WHERE seq=?", (seq,))
                        done += 1
                finally:
                    with self._errors("cannot be replayed"):
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
    return RedisAlertStore(config.url, config.redis, config.retention)
