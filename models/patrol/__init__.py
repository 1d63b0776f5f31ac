"""Patrol mode: anomalies as changes against a reference pass along the same route."""

from models.patrol import scorer  # noqa: F401  (registers "patrol")
