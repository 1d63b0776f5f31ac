"""vad: video anomaly surveillance pipeline."""

__version__ = "0.1.0"
