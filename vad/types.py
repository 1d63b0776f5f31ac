"""Core value types shared by every stage: frames, clips, scores, events, alerts."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Frame:
    """One decoded frame of a camera. `image` is HxWx3 BGR uint8 or HxW uint8."""

    camera_id: str
    index: int
    timestamp: float
    image: np.ndarray


@dataclass(frozen=True)
class Clip:
    """Consecutive preprocessed frames of one camera.

    `frames` is float32 in [0, 1], shape (T, H, W) for grayscale or (T, H, W, 3) for colour.
    `context` leading frames are history only: the scorer scores frames[context:].
    """

    camera_id: str
    frames: np.ndarray
    indices: np.ndarray
    timestamps: np.ndarray
    context: int = 0

    def __post_init__(self) -> None:
        if len(self.frames) != len(self.indices) or len(self.indices) != len(self.timestamps):
            raise ValueError("frames, indices and timestamps must have the same length")
        if not 0 <= self.context < len(self.frames):
            raise ValueError(f"context {self.context} must be in [0, {len(self.frames)})")

    @property
    def target_indices(self) -> np.ndarray:
        """Frame indices this clip asks a scorer to score."""
        return self.indices[self.context :]


@dataclass(frozen=True)
class ScoreResult:
    """Anomaly scores (higher = more anomalous) for some frames of one camera.

    `heatmaps`, when given, is (N, h, w) float32 per-pixel anomaly, any resolution.
    """

    camera_id: str
    indices: np.ndarray
    scores: np.ndarray
    heatmaps: np.ndarray | None = None

    def __post_init__(self) -> None:
        if len(self.indices) != len(self.scores):
            raise ValueError("indices and scores must have the same length")
        if self.heatmaps is not None and len(self.heatmaps) != len(self.scores):
            raise ValueError("one heatmap per scored frame is required")


@dataclass
class Event:
    """A contiguous anomalous interval of one camera."""

    camera_id: str
    start_frame: int
    end_frame: int
    start_time: float
    end_time: float
    peak_frame: int
    peak_score: float
    mean_score: float
    keyframe: np.ndarray | None = None
    heatmap: np.ndarray | None = None

    @property
    def duration_frames(self) -> int:
        return self.end_frame - self.start_frame + 1


@dataclass(frozen=True)
class Explanation:
    """An event in words, for operators: the verdict, the broken rule, a one-sentence reason,
    the objects seen and what moved."""

    verdict: bool
    rule: str = ""
    reason: str = ""
    objects: str = ""
    motion_description: str = ""


def alert_id(camera_id: str, start_frame: int) -> str:
    """Stable id: re-processing the same stream gives the same alert ids."""
    return f"{camera_id}:{start_frame}"


ALERT_STATUSES = ("new", "acknowledged", "resolved")


@dataclass
class Alert:
    """An event as stored and shown to operators, with evidence and explanation."""

    id: str
    camera_id: str
    start_frame: int
    end_frame: int
    start_time: float
    end_time: float
    peak_frame: int
    peak_score: float
    mean_score: float
    created_at: float = field(default_factory=time.time)
    status: str = "new"
    note: str = ""
    explanation: str = ""
    rule: str = ""
    motion_description: str = ""
    objects: str = ""
    keyframe_jpeg: bytes | None = None
    heatmap_png: bytes | None = None

    @classmethod
    def from_event(cls, event: Event, keyframe_jpeg: bytes | None = None,
                   heatmap_png: bytes | None = None) -> "Alert":
        return cls(
            id=alert_id(event.camera_id, event.start_frame),
            camera_id=event.camera_id,
            start_frame=event.start_frame,
            end_frame=event.end_frame,
            start_time=event.start_time,
            end_time=event.end_time,
            peak_frame=event.peak_frame,
            peak_score=event.peak_score,
            mean_score=event.mean_score,
            keyframe_jpeg=keyframe_jpeg,
            heatmap_png=heatmap_png,
        )
