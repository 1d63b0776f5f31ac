"""Event detection on a fused score stream: threshold, hysteresis, minimum duration, merge gap."""

from __future__ import annotations

from dataclasses import dataclass

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


class EventDetector:
    """Online, per camera. An event opens when the score reaches `threshold`, stays open while
    it is at least `release_threshold`, survives dips of up to `merge_gap` frames, and is
    reported on closing if it lasted `min_duration` frames."""

    def __init__(self, config: EventConfig, camera_id: str):
        self.config = config
        self.camera_id = camera_id
        self._open: _OpenEvent | None = None

    @property
    def open_start(self) -> int | None:
        return self._open.start_frame if self._open else None

    @property
    def open_peak(self) -> int | None:
        return self._open.peak_frame if self._open else None

    def update(self, index: int, timestamp: float, score: float) -> Event | None:
        """Feed one frame; returns an event when one closes with this frame."""
        event = self._open
        if event is None:
            if score >= self.config.threshold:
                self._open = _OpenEvent(index, timestamp, index, timestamp, index, score, score, 1,
                                        score, 1)
            return None
        event.score_sum += score
        event.frames += 1
        if score >= self.config.release_threshold:
            event.last_active_frame, event.last_active_time = index, timestamp
            event.active_sum, event.active_frames = event.score_sum, event.frames
            if score > event.peak_score:
                event.peak_frame, event.peak_score = index, score
            return None
        if index - event.last_active_frame > self.config.merge_gap:
            return self._close()
        return None

    def finish(self) -> Event | None:
        """Close an open event at the end of the stream."""
        return self._close() if self._open else None

    def _close(self) -> Event | None:
        event, self._open = self._open, None
        if event.last_active_frame - event.start_frame + 1 < self.config.min_duration:
            return None
        return Event(self.camera_id, event.start_frame, event.last_active_frame,
                     event.start_time, event.last_active_time, event.peak_frame,
                     event.peak_score, event.active_sum / event.active_frames)

