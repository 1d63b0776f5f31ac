"""Embedded SQLite alert store: the default, no server needed."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

import numpy as np

from vad.errors import VadError
from vad.config.sections import StoreConfig
from vad.config.evidence import RetentionConfig
from vad.stores.base import (EXPLANATION_FIELDS, OPERATOR_FIELDS, AlertQuery, AlertStore,
                             ScoreSeries, boxes_from_json, boxes_to_json, check_status,
                             clip_info_from_json, clip_info_to_json, register_store,
                             status_from_json, status_to_json)
from vad.types import Alert, CameraStatus, ClipInfo, EventClip

_ALERT_FIELDS = [f.name for f in fields(Alert)]
# Columns `put` leaves alone on a known alert: re-processing a stream must not reset them.
_KEPT_FIELDS = {"id", *OPERATOR_FIELDS, *EXPLANATION_FIELDS}

# Schema migrations: version N is reached by running _MIGRATIONS[N - 1] on version N - 1. The
# 0.1.0 release wrote version 0 (no user_version) with the tables of the first step, so that
# step only creates what is missing.
_MIGRATIONS = [
    """
    CREATE TABLE IF NOT EXISTS alerts (
        id TEXT PRIMARY KEY, camera_id TEXT NOT NULL, start_frame INTEGER, end_frame INTEGER,
        start_time REAL, end_time REAL, peak_frame INTEGER, peak_score REAL, mean_score REAL,
        created_at REAL, status TEXT, note TEXT, explanation TEXT, rule TEXT,
        motion_description TEXT, objects TEXT, keyframe_jpeg BLOB, heatmap_png BLOB
    );
    CREATE INDEX IF NOT EXISTS alerts_camera_time ON alerts (camera_id, start_time);
    CREATE TABLE IF NOT EXISTS scores (
        camera_id TEXT NOT NULL, frame INTEGER NOT NULL, timestamp REAL, score REAL,
        PRIMARY KEY (camera_id, frame)
    );
    """,
    # Scorer results beyond the score: boxes at the peak (JSON) and the anomaly class.
    """
    ALTER TABLE alerts ADD COLUMN boxes TEXT NOT NULL DEFAULT '';
    ALTER TABLE alerts ADD COLUMN label TEXT NOT NULL DEFAULT '';
    ALTER TABLE alerts ADD COLUMN label_confidence REAL NOT NULL DEFAULT 0;
    """,
    # Live cameras: what raised an alert (an anomaly or a camera offline), and each camera's
    # last status (a CameraStatus as JSON).
    """
    ALTER TABLE alerts ADD COLUMN kind TEXT NOT NULL DEFAULT 'anomaly';
    CREATE TABLE camera_status (
        camera_id TEXT PRIMARY KEY, state TEXT NOT NULL, updated_at REAL, status TEXT NOT NULL
    );
    """,
    # Alert lifecycle (alerts stored before it are closed) and streaming workers' checkpoints.
    """
    ALTER TABLE alerts ADD COLUMN lifecycle TEXT NOT NULL DEFAULT 'closed';
    ALTER TABLE alerts ADD COLUMN close_reason TEXT NOT NULL DEFAULT '';
    CREATE TABLE IF NOT EXISTS checkpoints (
        scope TEXT NOT NULL, key TEXT NOT NULL, state BLOB NOT NULL, PRIMARY KEY (scope, key)
    );
    """,
    # Who triaged an alert, and when.
    """
    ALTER TABLE alerts ADD COLUMN status_by TEXT NOT NULL DEFAULT '';
    ALTER TABLE alerts ADD COLUMN status_at REAL NOT NULL DEFAULT 0;
    """,
    # Event clips: kept apart from the alerts, so that queries never read the videos.
    """
    CREATE TABLE clips (
        alert_id TEXT PRIMARY KEY, created_at REAL NOT NULL, size INTEGER NOT NULL,
        info TEXT NOT NULL, data BLOB NOT NULL
    );
    CREATE INDEX clips_created ON clips (created_at);
    """,
    # Reference-based scorers (patrol mode): the matched reference frame, as evidence.
    """
    ALTER TABLE alerts ADD COLUMN reference_frame INTEGER NOT NULL DEFAULT -1;
    ALTER TABLE alerts ADD COLUMN reference_jpeg BLOB;
    """,
]
SCHEMA_VERSION = len(_MIGRATIONS)


def migrate(db: sqlite3.Connection, path: str) -> int:
    """Bring the database to SCHEMA_VERSION; returns the version it had. One transaction
    holding the write lock from the version check on: a failed migration leaves the version
    it found, and processes opening a store at once migrate it once."""
    db.execute("BEGIN IMMEDIATE")
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise VadError(f"{path}: written by a newer vad (schema {version}, this one knows "
                           f"{SCHEMA_VERSION}); upgrade vad to read it")
        for target in range(version + 1, SCHEMA_VERSION + 1):
            for statement in (s for s in _MIGRATIONS[target - 1].split(";") if s.strip()):
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {target}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return version


class SQLiteAlertStore(AlertStore):
    def __init__(self, path: str | Path, retention: RetentionConfig | None = None):
        self.path = str(path)
        self.retention = retention or RetentionConfig()
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            migrate(self._db, self.path)
        except (sqlite3.DatabaseError, OSError) as exc:
            raise VadError(f"{self.path}: not a usable SQLite alert store ({exc})") from None
        self._lock = threading.Lock()

    def put(self, alert: Alert) -> bool:
        values = {name: getattr(alert, name) for name in _ALERT_FIELDS}
        values["boxes"] = boxes_to_json(alert.boxes)
        updates = ", ".join(f"{n}=excluded.{n}" for n in _ALERT_FIELDS if n not in _KEPT_FIELDS)
        with self._lock, self._db:
            existed = self._db.execute("SELECT 1 FROM alerts WHERE id=?", (alert.id,)).fetchone()
            self._db.execute(
                f"INSERT INTO alerts ({', '.join(_ALERT_FIELDS)}) "
                f"VALUES ({', '.join('?' * len(_ALERT_FIELDS))}) "
                f"ON CONFLICT(id) DO UPDATE SET {updates}",
                [values[n] for n in _ALERT_FIELDS])
        return existed is None

    def explain(self, alert: Alert) -> None:
        with self._lock, self._db:
            self._db.execute(
                f"UPDATE alerts SET {', '.join(f'{n}=?' for n in EXPLANATION_FIELDS)} WHERE id=?",
                [getattr(alert, n) for n in EXPLANATION_FIELDS] + [alert.id])

    def save_states(self, scope: str, states: dict[str, bytes | None]) -> None:
        with self._lock, self._db:
            for key, state in states.items():
                if state is None:
                    self._db.execute("DELETE FROM checkpoints WHERE scope=? AND key=?",
                                     (scope, key))
                else:
                    self._db.execute("INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?)",
                                     (scope, key, state))

    def load_state(self, scope: str, key: str) -> bytes | None:
        with self._lock:
            row = self._db.execute("SELECT state FROM checkpoints WHERE scope=? AND key=?",
                                   (scope, key)).fetchone()
        return row[0] if row else None

    def state_keys(self, scope: str) -> set[str]:
        with self._lock:
            rows = self._db.execute("SELECT key FROM checkpoints WHERE scope=?", (scope,))
            return {row[0] for row in rows.fetchall()}

    def clear_states(self, scope: str) -> None:
        with self._lock, self._db:
            self._db.execute("DELETE FROM checkpoints WHERE scope=?", (scope,))

    def get(self, alert_id: str) -> Alert | None:
        rows = self._select("WHERE id=?", [alert_id])
        return rows[0] if rows else None

    def query(self, query: AlertQuery = AlertQuery()) -> list[Alert]:
        clauses, params = [], []
        for column, op, value in (("camera_id", "=", query.camera_id),
                                  ("status", "=", query.status),
                                  ("peak_score", ">=", query.min_score),
                                  ("start_time", ">=", query.since),
                                  ("start_time", "<=", query.until),
                                  ("kind", "=", query.kind)):
            if value is not None:
                clauses.append(f"{column} {op} ?")
                params.append(value)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        return self._select(f"{where} ORDER BY created_at DESC, start_time DESC LIMIT ?",
                            params + [query.limit])

    def _select(self, tail: str, params: list[object]) -> list[Alert]:
        with self._lock:
            rows = self._db.execute(f"SELECT {', '.join(_ALERT_FIELDS)} FROM alerts {tail}",
                                    params).fetchall()
        alerts = []
        for row in rows:
            values = dict(zip(_ALERT_FIELDS, row))
            values["boxes"] = boxes_from_json(values["boxes"])
            alerts.append(Alert(**values))
        return alerts

    def set_status(self, alert_id: str, status: str, note: str = "", by: str = "") -> None:
        check_status(status)
        with self._lock, self._db:
            cursor = self._db.execute(
                "UPDATE alerts SET status=?, note=?, status_by=?, status_at=? WHERE id=?",
                (status, note, by, time.time(), alert_id))
        if cursor.rowcount == 0:
            raise VadError(f"no alert with id {alert_id!r}")

    def record_scores(self, camera_id: str, indices: Sequence[int], timestamps: Sequence[float],
                      scores: Sequence[float]) -> None:
        rows = [(camera_id, int(i), float(t), float(s))
                for i, t, s in zip(indices, timestamps, scores)]
        with self._lock, self._db:
            self._db.executemany("INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?)", rows)

    def scores(self, camera_id: str, start_frame: int | None = None,
               end_frame: int | None = None) -> ScoreSeries:
        lo = -1 if start_frame is None else start_frame
        hi = 2**62 if end_frame is None else end_frame
        with self._lock:
            rows = self._db.execute(
                "SELECT frame, timestamp, score FROM scores WHERE camera_id=? AND frame BETWEEN ? AND ?"
                " ORDER BY frame", (camera_id, lo, hi)).fetchall()
        array = np.array(rows, dtype=np.float64).reshape(-1, 3)
        return ScoreSeries(camera_id, array[:, 0].astype(np.int64), array[:, 1], array[:, 2])

    def cameras(self) -> list[str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT camera_id FROM alerts UNION SELECT camera_id FROM scores "
                "UNION SELECT camera_id FROM camera_status ORDER BY 1")
            return [row[0] for row in rows.fetchall()]

    def set_camera_status(self, status: CameraStatus) -> None:
        with self._lock, self._db:
            self._db.execute("INSERT OR REPLACE INTO camera_status VALUES (?, ?, ?, ?)",
                             (status.camera_id, status.state, status.updated_at,
                              status_to_json(status)))

    def camera_statuses(self) -> dict[str, CameraStatus]:
        with self._lock:
            rows = self._db.execute("SELECT status FROM camera_status ORDER BY camera_id")
            statuses = [status_from_json(row[0]) for row in rows.fetchall()]
        return {status.camera_id: status for status in statuses}

    def put_clip(self, clip: EventClip) -> None:
        info = clip.info
        with self._lock, self._db:
            self._db.execute("INSERT OR REPLACE INTO clips VALUES (?, ?, ?, ?, ?)",
                             (info.alert_id, info.created_at, info.size,
                              clip_info_to_json(info), clip.data))
        self.apply_retention()

    def clip(self, alert_id: str) -> EventClip | None:
        with self._lock:
            row = self._db.execute("SELECT info, data FROM clips WHERE alert_id=?",
                                   (alert_id,)).fetchone()
        return None if row is None else EventClip(clip_info_from_json(row[0]), bytes(row[1]))

    def clip_info(self, alert_id: str) -> ClipInfo | None:
        with self._lock:
            row = self._db.execute("SELECT info FROM clips WHERE alert_id=?",
                                   (alert_id,)).fetchone()
        return None if row is None else clip_info_from_json(row[0])

    def apply_retention(self, now: float | None = None) -> int:
        retention, now = self.retention, time.time() if now is None else now
        with self._lock, self._db:
            deleted = 0
            if retention.max_age_days is not None:
                cutoff = now - retention.max_age_days * 86400
                deleted += self._db.execute("DELETE FROM clips WHERE created_at < ?",
                                            (cutoff,)).rowcount
                self._db.execute("UPDATE alerts SET keyframe_jpeg=NULL, heatmap_png=NULL "
                                 "WHERE created_at < ? AND (keyframe_jpeg IS NOT NULL OR "
                                 "heatmap_png IS NOT NULL)", (cutoff,))
            if retention.max_mb is not None:
                excess = self._db.execute("SELECT COALESCE(SUM(size), 0) FROM clips"
                                          ).fetchone()[0] - retention.max_mb * 2**20
                oldest = self._db.execute("SELECT alert_id, size FROM clips "
                                          "ORDER BY created_at, alert_id").fetchall()
                for alert_id, size in oldest:
                    if excess <= 0:
                        break
                    self._db.execute("DELETE FROM clips WHERE alert_id=?", (alert_id,))
                    excess -= size
                    deleted += 1
        return deleted

    def close(self) -> None:
        with self._lock:
            self._db.close()


@register_store("sqlite")
def _open_sqlite(config: StoreConfig) -> SQLiteAlertStore:
    # sqlite:///relative.db, sqlite:////absolute.db, sqlite:///:memory:
    path = config.url.split("://", 1)[1]
    path = path[1:] if path.startswith("/") else path
    if not path:
        raise VadError(f"{config.url}: a SQLite store URL needs a file, e.g. sqlite:///vad.db")
    return SQLiteAlertStore(path, config.retention)
