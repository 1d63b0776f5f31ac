"""The parts of reading a live camera that do not decode video: the reconnection backoff, the
detect-fps frame limiter and the camera's status (online / reconnecting / stalled / offline,
with its gaps), reported to a callback at every change."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import replace

from vad.config.sources import LiveSourceConfig
from vad.types import CameraStatus, Gap

log = logging.getLogger(__name__)

MAX_GAPS = 20  # gaps a status keeps (the most recent)

StatusCallback = Callable[[CameraStatus], None]


class Backoff:
    """Exponential waits between reconnection attempts, each scaled by random jitter."""

    def __init__(self, settings: LiveSourceConfig, rng: random.Random | None = None):
        self.settings = settings
        self.rng = rng or random.Random()
        self.failures = 0

    def next_delay(self) -> float:
        s = self.settings
        base = min(s.reconnect_max_s, s.reconnect_initial_s * s.reconnect_factor ** self.failures)
        self.failures += 1
        return base * self.rng.uniform(1 - s.reconnect_jitter, 1 + s.reconnect_jitter)

    def reset(self) -> None:
        self.failures = 0


class FrameRateLimiter:
    """Keeps frames `1 / fps` apart by their timestamps (every frame without an fps)."""

    def __init__(self, fps: float | None):
        self.period = 1 / fps if fps else 0.0
        self._due: float | None = None

    def keep(self, timestamp: float) -> bool:
        if not self.period:
            return True
        # A frame up to a tenth of a period early is on time: stream clocks are rounded.
        if self._due is not None and timestamp < self._due - self.period / 10:
            return False
        # Behind by more than a period (a gap): the schedule restarts from this frame.
        self._due = (timestamp if self._due is None or timestamp - self._due > self.period
                     else self._due) + self.period
        return True


class StatusTracker:
    """A live camera's status, changed by what its reader sees and reported on every change."""

    def __init__(self, camera_id: str, source: str, settings: LiveSourceConfig,
                 on_status: StatusCallback | None = None, clock: Callable[[], float] = time.time):
        self.settings, self.on_status, self.clock = settings, on_status, clock
        now = clock()
        self.status = CameraStatus(camera_id, "reconnecting", since=now, updated_at=now,
                                   source=source, down_since=now)
        self._opened = 0
        self._last_frame_at: float | None = None
        self._report()

    @property
    def down(self) -> bool:
        return self.status.down_since is not None

    def down_for(self) -> float:
        return self.clock() - self.status.down_since if self.down else 0.0

    def offline_in(self) -> float:
        """Seconds until a camera without frames counts as offline (0: it does)."""
        return max(0.0, self.settings.offline_after_s - self.down_for()) if self.down else 0.0

    def opened(self) -> None:
        self._opened += 1

    def frame(self, index: int, timestamp: float, gap: Gap | None) -> None:
        """A frame was delivered: the camera is online (again)."""
        self._last_frame_at = self.clock()
        if not self.down:
            self.status = replace(self.status, last_frame=index)
            return
        status = self.status
        if gap is not None:
            status = replace(status, gap_count=status.gap_count + 1,
                             total_gap_s=status.total_gap_s + gap.seconds,
                             gaps=(*status.gaps, gap)[-MAX_GAPS:])
        self.status = replace(status, last_frame=index, down_since=None,
                              reconnects=max(0, self._opened - 1))
        self._set_state("online")

    def failed(self, error: str, stalled: bool) -> None:
        """The stream could not be opened, ended, broke or stalled."""
        if not self.down:
            self.status = replace(self.status, down_since=self._last_frame_at or self.clock())
        self.status = replace(self.status, last_error=error)
        log.warning("camera %s (%s): %s", self.status.camera_id, self.status.source, error)
        self._set_state("offline" if self.offline_in() == 0 else
                        "stalled" if stalled else "reconnecting", force=True)

    def check_offline(self) -> None:
        if self.down and self.offline_in() == 0 and self.status.state != "offline":
            self._set_state("offline")

    def gave_up(self) -> None:
        self.status = replace(self.status, last_error=f"gave up: {self.status.last_error}")
        self._set_state("offline", force=True)

    def _set_state(self, state: str, force: bool = False) -> None:
        if state == self.status.state and not force:
            return
        now = self.clock()
        since = self.status.since if state == self.status.state else now
        self.status = replace(self.status, state=state, since=since, updated_at=now)
        self._report()

    def _report(self) -> None:
        if self.on_status is None:
            return
        try:
            self.on_status(self.status)
        except Exception:  # a status that cannot be stored must not stop the camera's frames
            log.exception("camera %s: reporting its status failed", self.status.camera_id)
