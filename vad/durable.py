"""Crash-safe SQLite files for the on-disk queues (the Redis store's spool, the alert
outputs' delivery queues): what they share is how the file is opened."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def open_durable(path: Path, *schema: str) -> sqlite3.Connection:
    """An autocommit connection, usable from any thread, to `path` (its folder made), with
    each `schema` statement run. A rollback journal, not WAL: no memory-mapped index that a
    full disk turns into SIGBUS; every commit synced, so a queued item survives a crash.
    Raises `sqlite3.Error` or `OSError` for the caller to name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(path), check_same_thread=False, timeout=30, isolation_level=None)
    db.execute("PRAGMA journal_mode=DELETE")
    db.execute("PRAGMA synchronous=FULL")
    for statement in schema:
        db.execute(statement)
    return db
