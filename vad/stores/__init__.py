"""Alert stores by URL scheme: `open_store("sqlite:///vad.db")` or `open_store(config.store)`."""

from vad.stores.base import AlertQuery, AlertStore, ScoreSeries, open_store, register_store
from vad.urls import redacted
from vad.stores import sqlite  # noqa: F401  (registers sqlite://)
from vad.stores import redis  # noqa: F401  (registers redis://)

__all__ = ["AlertQuery", "AlertStore", "ScoreSeries", "open_store", "redacted",
           "register_store"]
