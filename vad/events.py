"""Event detection on a fused score stream: threshold, hysteresis, minimum duration, merge gap,
maximum duration. An event becomes an alert (`opened`) once it lasted `min_duration` frames,
and is `closed` at its end, or after `max_duration_s` of stream time (a new event then
continues it), or when the caller closes it (end of stream, idle camera)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from vad.config import EventConfig
from vad.types import Event


@dataclass
class _OpenEvent:
    start_frame: int
    start_time: float
    last_active_frame: int
    last_active_time: float
    peak_frame: int
    peak_score: float
    score_sum: float = 0.0
    frames: int = 0
    # Sum and count up to the last active frame: trailing sub-threshold frames are not the event.
    active_sum: float = 0.0
    active_frames: int = 0
    reported: bool = False  # lasted min_duration frames: it is an alert


@dataclass(frozen=True)
class EventChange:
    """An alert's event opened (became an alert) or closed (`reason` in CLOSE_REASONS)."""

    kind: str  # "opened" | "closed"
    event: Event
    reason: str = ""


class EventDetector:
    """Online, per camera. An event opens when the score reaches `threshold`, stays open while
    it is at least `release_threshold`, survives dips of up to `merge_gap` frames, is reported
    once it lasted `min_duration` frames, and closes after `max_duration_s` (the next frame at
    or above `release_threshold` opens its continuation, reported at once)."""

    def __init__(self, config: EventConfig, camera_id: str):
        self.config = config
        self.camera_id = camera_id
        self._open: _OpenEvent | None = None
        self._continues = False  # the last event closed at its maximum duration

    @property
    def open_start(self) -> int | None:
        return self._open.start_frame if self._open else None

    @property
    def open_peak(self) -> int | None:
        return self._open.peak_frame if self._open else None

    @property
    def open_active_frames(self) -> int:
        return self._open.active_frames if self._open else 0

    def current(self) -> Event | None:
        """The open event as it stands, once it is an alert."""
        return self._event(self._open) if self._open and self._open.reported else None

    def update(self, index: int, timestamp: float, score: float) -> list[EventChange]:
        """Feed one frame; the changes it causes, in order."""
        event = self._open
        if event is None:
            continues, self._continues = self._continues, False
            opens_at = self.config.release_threshold if continues else self.config.threshold
            if score < opens_at:
                return []
            self._open = _OpenEvent(index, timestamp, index, timestamp, index, score, score, 1,
                                    score, 1)
            return self._report(at_once=continues) + self._limit(timestamp)
        event.score_sum += score
        event.frames += 1
        if score >= self.config.release_threshold:
            event.last_active_frame, event.last_active_time = index, timestamp
            event.active_sum, event.active_frames = event.score_sum, event.frames
            if score > event.peak_score:
                event.peak_frame, event.peak_score = index, score
            return self._report() + self._limit(timestamp)
        if index - event.last_active_frame > self.config.merge_gap:
            return self._close("end")
        return []

    def close(self, reason: str) -> list[EventChange]:
        """Close the open event now (end of stream, idle camera, restart)."""
        self._continues = False
        return self._close(reason) if self._open else []

    def _report(self, at_once: bool = False) -> list[EventChange]:
        """The event becomes an alert once it lasted min_duration frames (a continuation at
        once)."""
        event = self._open
        lasted = event.last_active_frame - event.start_frame + 1
        if event.reported or (lasted < self.config.min_duration and not at_once):
            return []
        event.reported = True
        return [EventChange("opened", self._event(event))]

    def _limit(self, timestamp: float) -> list[EventChange]:
        if timestamp - self._open.start_time < self.config.max_duration_s:
            return []
        changes = self._close("max-duration")
        self._continues = True
        return changes

    def _close(self, reason: str) -> list[EventChange]:
        event, self._open = self._open, None
        return [EventChange("closed", self._event(event), reason)] if event.reported else []

    def _event(self, event: _OpenEvent) -> Event:
        return Event(self.camera_id, event.start_frame, event.last_active_frame,
                     event.start_time, event.last_active_time, event.peak_frame,
                     event.peak_score, event.active_sum / event.active_frames)

    def state(self) -> dict:
        return {"open": asdict(self._open) if self._open else None, "continues": self._continues}

    def restore(self, state: dict) -> None:
        self._open = _OpenEvent(**state["open"]) if state["open"] else None
        self._continues = state["continues"]
