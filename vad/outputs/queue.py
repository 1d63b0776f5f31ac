"""A bounded, crash-safe FIFO of events waiting for one output, in SQLite.

Unlike the Redis store's spool (which refuses writes when full, since a store must not lose
an alert silently), a full delivery queue drops its oldest events: a receiver that has been
down for so long gets the newest alerts first when it is back, and the log counts what was
dropped. Several processes (workers, the dashboard) may share one queue file."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from pathlib import Path
from typing import Any

from vad.durable import open_durable
from vad.errors import VadError

log = logging.getLogger(__name__)


class DeliveryQueue:
    def __init__(self, path: Path, max_bytes: int):
        self.path, self.max_bytes = path, max_bytes
        self.dropped = 0
        self._lock = threading.Lock()
        try:
            self._db = open_durable(path, "CREATE TABLE IF NOT EXISTS events (seq INTEGER "
                                    "PRIMARY KEY AUTOINCREMENT, event TEXT NOT NULL, "
                                    "size INTEGER NOT NULL)")
        except (sqlite3.Error, OSError) as exc:
            raise VadError(f"{path}: cannot open the delivery queue ({exc})") from None

    def append(self, event: dict[str, Any]) -> None:
        text = json.dumps(event)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                used = self._db.execute("SELECT COALESCE(SUM(size), 0) FROM events").fetchone()[0]
                dropped = 0
                while used + len(text) > self.max_bytes:
                    oldest = self._db.execute(
                        "SELECT seq, size FROM events ORDER BY seq LIMIT 1").fetchone()
                    if oldest is None:
                        break  # one event larger than the queue: it is kept all the same
                    self._db.execute("DELETE FROM events WHERE seq=?", (oldest[0],))
                    used -= oldest[1]
                    dropped += 1
                self._db.execute("INSERT INTO events (event, size) VALUES (?, ?)",
                                 (text, len(text)))
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        if dropped:
            self.dropped += dropped
            log.error("%s is full: dropped the %d oldest undelivered event(s)", self.path,
                      dropped)

    def oldest(self) -> tuple[int, dict[str, Any]] | None:
        with self._lock:
            row = self._db.execute("SELECT seq, event FROM events ORDER BY seq LIMIT 1").fetchone()
        return None if row is None else (row[0], json.loads(row[1]))

    def remove(self, seq: int) -> None:
        with self._lock:
            self._db.execute("DELETE FROM events WHERE seq=?", (seq,))

    def pending(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
