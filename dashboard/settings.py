"""What the dashboard is told at launch. `vad dashboard` passes it in environment variables
because `streamlit run` owns the command line and AppTest has none."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields

from vad.config import EventConfig, VadConfig
from vad.errors import VadError

ENV_PREFIX = "VAD_DASHBOARD_"


@dataclass(frozen=True)
class DashboardSettings:
    store: str = VadConfig().store
    # Event threshold drawn on the score timelines (fused, normalised score units).
    threshold: float = EventConfig().threshold
    # Seconds between automatic refreshes of the alert feed; the camera overview refreshes
    # at three times this interval (its plots are heavier).
    refresh: float = 5.0
    # Rows of the alert feed shown at once, newest first.
    feed_rows: int = 30

    def to_env(self) -> dict[str, str]:
        return {ENV_PREFIX + f.name.upper(): str(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "DashboardSettings":
        values = {}
        for f in fields(cls):
            text = environ.get(ENV_PREFIX + f.name.upper())
            if text is None:
                continue
            kind = type(getattr(cls, f.name))
            try:
                values[f.name] = kind(text)
            except ValueError:
                raise VadError(f"{ENV_PREFIX}{f.name.upper()}={text!r}: "
                               f"expected {kind.__name__}") from None
        settings = cls(**values)
        if settings.refresh <= 0 or settings.feed_rows <= 0:
            raise VadError("the dashboard refresh interval and feed rows must be positive")
        return settings
