"""Core value types shared by every stage: frames, clips, scores, events, alerts, camera
status."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Frame:
    """One decoded frame of a camera. `image` is HxWx3 BGR uint8 or HxW uint8; `encoded` is
    the JPEG it was decoded from, when it came as one (stream messages): a state snapshot
    keeps those bytes instead of the pixels."""

    camera_id: str
    index: int
    timestamp: float
    image: np.ndarray
    encoded: bytes | None = field(default=None, repr=False, compare=False)


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
class Box:
    """An anomalous region of a frame, in fractions of its width and height (0..1), so that it
    holds at any resolution; `label` names what is there when the scorer knows."""

    x0: float
    y0: float
    x1: float
    y1: float
    score: float = 1.0
    label: str = ""

    def __post_init__(self) -> None:
        if not 0 <= self.x0 <= self.x1 <= 1 or not 0 <= self.y0 <= self.y1 <= 1:
            raise ValueError(f"box {self.x0, self.y0, self.x1, self.y1} is not inside [0, 1]")

    def pixels(self, height: int, width: int) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) in pixels of a `height` x `width` image."""
        return (round(self.x0 * width), round(self.y0 * height),
                round(self.x1 * width), round(self.y1 * height))


@dataclass(frozen=True)
class Label:
    """What kind of anomaly a frame shows (e.g. "Fighting"), with the scorer's confidence."""

    name: str
    confidence: float


REFERENCE_STATUSES = ("aligned", "lost", "unaligned")


@dataclass(frozen=True)
class ReferenceMatch:
    """What a reference-based scorer compared a frame with: the matched frame of the reference
    route (-1 when lost), how it went (`aligned`; `lost`: no reference frame is close enough;
    `unaligned`: the match could not be aligned, so the frame is not compared), and the
    reference frame warped into the frame's view (evidence, when aligned)."""

    frame: int
    status: str
    image: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.status not in REFERENCE_STATUSES:
            raise ValueError(f"reference status {self.status!r} is not one of "
                             f"{', '.join(REFERENCE_STATUSES)}")


@dataclass(frozen=True)
class ScoreResult:
    """Anomaly scores (higher = more anomalous) for some frames of one camera.

    Optional, one entry per scored frame: `heatmaps` (N, h, w) float32 per-pixel anomaly at
    any resolution; `boxes`, the anomalous regions; `labels`, the predicted anomaly class;
    `references`, what a reference-based scorer compared each frame with.
    """

    camera_id: str
    indices: np.ndarray
    scores: np.ndarray
    heatmaps: np.ndarray | None = None
    boxes: tuple[tuple[Box, ...], ...] | None = None
    labels: tuple[Label | None, ...] | None = None
    references: tuple[ReferenceMatch | None, ...] | None = None

    def __post_init__(self) -> None:
        if len(self.indices) != len(self.scores):
            raise ValueError("indices and scores must have the same length")
        for name in ("heatmaps", "boxes", "labels", "references"):
            value = getattr(self, name)
            if value is not None and len(value) != len(self.scores):
                raise ValueError(f"{name}: one entry per scored frame is required")

    def frame(self, i: int) -> FrameResult:
        """What the scorer found in its i-th scored frame."""
        return FrameResult(
            int(self.indices[i]), float(self.scores[i]),
            None if self.heatmaps is None else self.heatmaps[i],
            () if self.boxes is None else self.boxes[i],
            None if self.labels is None else self.labels[i],
            None if self.references is None else self.references[i])


@dataclass(frozen=True)
class FrameResult:
    """One frame of a `ScoreResult`."""

    index: int
    score: float
    heatmap: np.ndarray | None = None
    boxes: tuple[Box, ...] = ()
    label: Label | None = None
    reference: ReferenceMatch | None = None


@dataclass(frozen=True)
class Calibration:
    """Statistics of a scorer's raw score on normal footage, for online normalisation."""

    mean: float = 0.0
    std: float = 1.0
    count: int = 0

    def __post_init__(self) -> None:
        if not (np.isfinite(self.mean) and np.isfinite(self.std) and self.std > 0):
            raise ValueError(f"calibration needs a finite mean and a positive std, got "
                             f"mean={self.mean}, std={self.std}")

    @classmethod
    def from_scores(cls, scores: np.ndarray) -> Calibration:
        scores = np.asarray(scores, dtype=np.float64)
        if scores.size == 0 or not np.isfinite(scores).all():
            raise ValueError("calibration needs finite scores of normal footage")
        return cls(float(scores.mean()), float(scores.std()) or 1.0, int(scores.size))


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
    boxes: tuple[Box, ...] = ()  # at the peak
    label: Label | None = None  # the most confident label seen during the event
    reference: ReferenceMatch | None = None  # at the peak, for reference-based scorers

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
# What raised an alert: the anomaly pipeline, or a live camera without frames for too long.
ALERT_KINDS = ("anomaly", "camera-offline")
# An alert is stored as soon as its event lasted min_duration frames (ongoing), re-stored
# while it lasts and closed at its end; why it closed:
CLOSE_REASONS = ("end", "max-duration", "idle", "stream-end", "restart", "error")


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
    boxes: tuple[Box, ...] = ()
    label: str = ""
    label_confidence: float = 0.0
    # Reference-based scorers: the matched reference frame (aligned to the keyframe's view).
    reference_frame: int = -1
    reference_jpeg: bytes | None = None
    kind: str = "anomaly"  # one of ALERT_KINDS
    status_by: str = ""  # the operator who last set the status (signed-in name or anonymous)
    status_at: float = 0.0  # when (Unix time); 0 = never triaged
    # "ongoing" while the event lasts, then "closed" (alerts of older releases are closed).
    lifecycle: str = "closed"
    close_reason: str = ""  # one of CLOSE_REASONS once closed

    @property
    def ongoing(self) -> bool:
        return self.lifecycle == "ongoing"

    @classmethod
    def from_event(cls, event: Event, keyframe_jpeg: bytes | None = None,
                   heatmap_png: bytes | None = None, reference_jpeg: bytes | None = None,
                   close_reason: str | None = None) -> Alert:
        """The alert of an event: ongoing, or closed when `close_reason` is given."""
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
            boxes=event.boxes,
            label=event.label.name if event.label else "",
            label_confidence=event.label.confidence if event.label else 0.0,
            reference_frame=event.reference.frame if event.reference else -1,
            reference_jpeg=reference_jpeg,
            lifecycle="ongoing" if close_reason is None else "closed",
            close_reason=close_reason or "",
        )

    def explain(self, explanation: Explanation) -> None:
        """Copy an explanation onto the alert (the one writer of its explanation fields)."""
        self.rule = explanation.rule
        self.explanation = explanation.reason
        self.objects = explanation.objects
        self.motion_description = explanation.motion_description


# online: frames arrive. reconnecting: no frames, the stream is being (re)opened (also before
# the first frame). stalled: the stream opened or was open but sent no frame in time; it is
# reopened. offline: no frames for `live.offline_after_s` or more (still retried unless the
# camera gave up).
CAMERA_STATES = ("online", "reconnecting", "stalled", "offline")


@dataclass(frozen=True)
class Gap:
    """Frames a live camera did not deliver: after `last_frame` and before `next_frame`, from
    `start_time` to `end_time` (s, the frames' clock)."""

    last_frame: int
    next_frame: int
    start_time: float
    end_time: float

    @property
    def seconds(self) -> float:
        return self.end_time - self.start_time


@dataclass(frozen=True)
class CameraStatus:
    """Where a live camera stands, as stored per camera and shown to operators."""

    camera_id: str
    state: str  # one of CAMERA_STATES
    since: float  # wall time the camera entered this state
    updated_at: float
    source: str = ""  # its URL, password redacted
    last_error: str = ""
    down_since: float | None = None  # no frames since (wall time; the start when none yet)
    last_frame: int = -1  # the last frame delivered when this status was reported
    reconnects: int = 0  # connections opened after the first
    gap_count: int = 0
    total_gap_s: float = 0.0
    gaps: tuple[Gap, ...] = ()  # the most recent ones, oldest first

    def __post_init__(self) -> None:
        if self.state not in CAMERA_STATES:
            raise ValueError(f"unknown camera state {self.state!r}; expected one of "
                             f"{', '.join(CAMERA_STATES)}")


@dataclass(frozen=True)
class ClipInfo:
    """What is known of an alert's event clip without its bytes."""

    alert_id: str
    camera_id: str
    first_frame: int  # the pre-roll's first frame
    last_frame: int
    frames: int
    duration_s: float
    size: int  # bytes
    sha256: str
    created_at: float


@dataclass(frozen=True)
class EventClip:
    """An alert's event as a short H.264 MP4 (pre-roll included)."""

    info: ClipInfo
    data: bytes
