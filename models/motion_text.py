"""Motion descriptions: a short factual sentence on what moves unusually in a frame range.

Used by the reasoning stage and the alerts through `MotionScorer.describe(frames)`.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from models.motion_cells import CellFeaturizer

# Image-space compass: 0 degrees = rightwards, 90 = downwards (image rows grow downwards).
DIRECTIONS = ("left to right", "down and to the right", "downwards", "down and to the left",
              "right to left", "up and to the left", "upwards", "up and to the right")
ROWS = ("upper", "middle", "lower")
COLUMNS = ("left", "middle", "right")
# Frames whose peak cell reaches this share of the range's peak describe the event.
PEAK_SHARE = 0.5


@dataclass(frozen=True)
class MotionDescription:
    """The most unusual moving blob of a frame range, in the scorer's frame coordinates."""

    region: str  # e.g. "lower-middle"
    direction: str  # e.g. "left to right"
    speed_ratio: float  # blob speed / normal speed of moving pixels in the same blocks
    speed: float  # pixels per frame
    box: tuple[int, int, int, int]  # x, y, width, height of the blob at the peak frame
    area_fraction: float  # blob area / frame area
    frames: int  # frames of the range in which it is unusual

    @property
    def text(self) -> str:
        if self.speed_ratio >= 1.3:
            pace = f"{self.speed_ratio:.1f}x faster than usual"
        elif self.speed_ratio <= 0.7:
            pace = f"{1 / self.speed_ratio:.1f}x slower than usual"
        else:
            pace = f"at about the usual speed ({self.speed_ratio:.1f}x) but unusual for the area"
        where = "the centre" if self.region == "middle-middle" else f"the {self.region}"
        _, _, width, height = self.box
        return (f"an object {pace} moves {self.direction} across {where} of the view "
                f"(blob about {width}x{height} px, {100 * self.area_fraction:.1f}% of the frame, "
                f"unusual in {self.frames} frame{'s' if self.frames != 1 else ''})")


def region_name(x: float, y: float, width: int, height: int) -> str:
    """3x3 grid name of an image point, e.g. "upper-left" or "lower-middle"."""
    row = ROWS[min(int(3 * y / height), 2)]
    column = COLUMNS[min(int(3 * x / width), 2)]
    return f"{row}-{column}"


def direction_name(dx: float, dy: float) -> str:
    angle = np.degrees(np.arctan2(dy, dx)) % 360
    return DIRECTIONS[int((angle + 22.5) // 45) % 8]


def _blob(moving: np.ndarray, window: tuple[slice, slice]) -> np.ndarray:
    """Mask of the connected moving blob with the most pixels inside the peak cell window."""
    _, labels = cv2.connectedComponents(moving.astype(np.uint8), connectivity=8)
    inside = labels[window]
    counts = np.bincount(inside[inside > 0])
    if counts.size == 0:
        return np.zeros_like(moving)
    return labels == int(np.argmax(counts))


def describe_motion(flows: np.ndarray, cell_scores: np.ndarray, cells: CellFeaturizer,
                    normal_speed: np.ndarray, steps: np.ndarray | None = None,
                    ) -> MotionDescription | None:
    """Describe the most unusual moving blob.

    flows: (T, H, W, 2) optical flow in pixels per source frame; cell_scores: (T, n) anomaly
    of each cell of `cells.grid`; normal_speed: (h, w) normal speed of moving pixels per block
    of the grid over the frame; steps: (T,) frame-index gaps the flows were taken over (1s
    when None).
    """
    peaks = cell_scores.max(1)
    if peaks.max() <= 0:
        return None
    observations = [seen for t in np.flatnonzero(peaks >= PEAK_SHARE * peaks.max())
                    if (seen := _observe(flows[t], cell_scores[t], cells, normal_speed, t))]
    if not observations:
        return None
    peak = max(observations, key=lambda seen: peaks[seen.offset])
    dx, dy = np.mean([seen.vector for seen in observations], axis=0)
    # Speeds from the shortest gaps of a sampled clip: over long gaps a fast object moves
    # beyond what DIS's pyramid finds, and its speed reads low (Ped2 04's cart: 2.6-2.8x the
    # usual over gaps of 1-2 frames, 0.9-1.0x over 29-32).
    gaps = np.ones(len(flows)) if steps is None else np.asarray(steps, np.float64)
    shortest = min(gaps[seen.offset] for seen in observations)
    paced = [seen for seen in observations if gaps[seen.offset] <= 2 * shortest]
    height, width = flows.shape[1:3]
    x, y, w, h = peak.box
    return MotionDescription(
        region=region_name(x + w / 2, y + h / 2, width, height), direction=direction_name(dx, dy),
        speed_ratio=float(np.median([seen.ratio for seen in paced])),
        speed=float(np.median([seen.speed for seen in paced])), box=peak.box,
        area_fraction=peak.area_fraction, frames=len(observations))


@dataclass(frozen=True)
class _Observation:
    offset: int
    vector: np.ndarray
    speed: float
    ratio: float
    box: tuple[int, int, int, int]
    area_fraction: float


def _observe(flow: np.ndarray, scores: np.ndarray, cells: CellFeaturizer,
             normal_speed: np.ndarray, offset: int) -> _Observation | None:
    """The blob under the most unusual cell of one frame, or None when it does not move."""
    top, left, bottom, right = cells.grid.pixel_boxes[int(np.argmax(scores))]
    blob = _blob(cells.moving(flow), (slice(top, bottom), slice(left, right)))
    if not blob.any():
        return None
    vectors = flow[blob]
    speed = float(np.linalg.norm(vectors, axis=1).mean())
    under = cv2.resize(blob.astype(np.float32), normal_speed.shape[::-1],
                       interpolation=cv2.INTER_AREA) > 0
    usual = float(normal_speed[under].mean()) if under.any() else float(normal_speed.mean())
    ys, xs = np.nonzero(blob)
    box = (int(xs.min()), int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1)
    return _Observation(offset, vectors.mean(0), speed, speed / max(usual, 1e-3), box,
                        float(blob.mean()))
