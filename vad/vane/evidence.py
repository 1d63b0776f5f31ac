"""What the pipeline knows about one VANE clip: its frames scored by the configured scorers,
the detected object the scorers' heatmaps point at, and that object's make-up, pace,
direction and place, in words and as numbers.

VANE frames are sampled sparsely (10 over seconds of video) and, in the parquet form,
without their frame numbers, so nothing here relies on absolute speeds: an object's pace is
measured against the other people in the same clip, its direction is its displacement from
first to last sighting, and tracks link detections of one class by predicted position and
looks. Speeds are in object heights per frame, scaled by the frame-number gaps when known.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from models.motion_text import direction_name, region_name
from reasoning.yolox import Detection, YoloxDetector
from vad.config.reasoning import DetectorDescriberConfig, ReasoningConfig
from vad.config.vane import PipelineAnswererConfig
from vad.errors import VadError
from vad.fusion import ScorerSlot
from vad.types import Frame
from vad.vane.attributes import FASTER, SAME, SLOWER, STILL, read_attributes

# Pixels displaced by more than this between two given frames (seconds apart) moved; the
# rest of an object's box is background.
FLOW_MOVING_PX = 1.0

# The pace categories (slowest first) said against the clip's people.
PACES = ("standing still", "moving slower than the people walking",
         "moving at about the same pace as the people walking",
         "moving faster than the people walking")


@dataclass
class Track:
    """One object followed over the clip: (position in the clip, detection) sightings."""

    label: str
    sightings: list[tuple[int, Detection]] = field(default_factory=list)

    @property
    def last(self) -> tuple[int, Detection]:
        return self.sightings[-1]


@dataclass(frozen=True)
class ClipEvidence:
    anomaly: tuple[str, ...]  # sentences about the anomalous object
    normal: tuple[str, ...]  # sentences about what else the clip shows
    direction: tuple[float, float] | None  # unit image vector (x right, y down)
    region: tuple[float, float] | None  # centre (x, y) in fractions of the frame
    pace: int | None  # index into PACES
    text: str  # all of it as prose, for an LLM and for the report


def track(images: Sequence[np.ndarray], detections: Sequence[list[Detection]],
          reach: float, appearance_weight: float = 1.0,
          flows: Sequence[np.ndarray] | None = None) -> list[Track]:
    """Links same-class detections between consecutive given frames by an optimal
    assignment on: distance from where the track is predicted to be, in object heights per
    given frame, at most `reach`, plus `appearance_weight` x (1 - correlation of the two
    boxes' grey patches). On frames seconds apart a walker is often nearer to where a fast
    object was than the object itself is now; motion and looks tell them apart.

    With `flows` (flow t: (H, W, 2) from given frame t to t + 1) a track is predicted to
    move as the optical flow inside its box says; without, with its last velocity, which
    a single mismatched link makes wrong: the track then runs on at the jump's speed and
    picks up more strangers along the way (walkers chained into a fake fast mover)."""
    from scipy.optimize import linear_sum_assignment

    tracks: list[Track] = []
    open_tracks: list[Track] = []
    patches: dict[int, np.ndarray] = {}  # id(track) -> its last patch
    for position, found in enumerate(detections):
        found_patches = [_patch(images[position], det) for det in found]
        cost = np.full((len(open_tracks), len(found)), np.inf)
        for t, candidate in enumerate(open_tracks):
            steps = position - candidate.last[0]
            predicted = (_predicted(candidate, steps) if flows is None
                         else _flow_predicted(candidate, position, flows))
            last = candidate.last[1]
            for d, det in enumerate(found):
                if det.label != candidate.label:
                    continue
                height = max((det.height + last.height) / 2, 1.0)
                distance = np.hypot(det.center[0] - predicted[0],
                                    det.center[1] - predicted[1]) / height / steps
                if distance <= reach:
                    looks = float(np.dot(patches[id(candidate)], found_patches[d]))
                    cost[t, d] = distance + appearance_weight * (1.0 - looks)
        linked: dict[int, Track] = {}
        if cost.size and np.isfinite(cost).any():
            rows, cols = linear_sum_assignment(np.where(np.isfinite(cost), cost, 1e9))
            linked = {d: open_tracks[t] for t, d in zip(rows, cols) if np.isfinite(cost[t, d])}
        current = []
        for d, det in enumerate(found):
            owner = linked.get(d)
            if owner is None:
                owner = Track(det.label)
                tracks.append(owner)
            owner.sightings.append((position, det))
            patches[id(owner)] = found_patches[d]
            current.append(owner)
        # A track missed in one frame may continue in the next.
        open_tracks = current + [t for t in open_tracks
                                 if t not in current and position - t.last[0] <= 1]
    return tracks


def _predicted(track_: Track, steps: int) -> tuple[float, float]:
    """Where the track should be `steps` given frames after its last sighting."""
    (p1, b) = track_.sightings[-1]
    if len(track_.sightings) < 2:
        return b.center
    (p0, a) = track_.sightings[-2]
    per_step = [(b.center[k] - a.center[k]) / (p1 - p0) for k in (0, 1)]
    return b.center[0] + per_step[0] * steps, b.center[1] + per_step[1] * steps


def _flow_predicted(track_: Track, position: int, flows: Sequence[np.ndarray],
                    ) -> tuple[float, float]:
    """Where the track should be at given frame `position`: its last box carried along by
    the flow, one given frame at a time."""
    start, det = track_.last
    (x, y) = det.center
    half_w, half_h = (det.box[2] - det.box[0]) / 2, det.height / 2
    for step in range(start, position):
        dx, dy = _box_flow(flows[step], (x - half_w, y - half_h, x + half_w, y + half_h))
        x, y = x + dx, y + dy
    return x, y


def _box_flow(flow: np.ndarray, box: tuple[float, float, float, float]) -> tuple[float, float]:
    """Median flow of the box's pixels that moved (more than FLOW_MOVING_PX): the object's
    displacement, not its background's; none moved: (0, 0)."""
    height, width = flow.shape[:2]
    x0, y0 = max(0, int(box[0])), max(0, int(box[1]))
    x1, y1 = min(width, int(np.ceil(box[2]))), min(height, int(np.ceil(box[3])))
    vectors = flow[y0:y1, x0:x1].reshape(-1, 2)
    moved = vectors[np.hypot(vectors[:, 0], vectors[:, 1]) > FLOW_MOVING_PX]
    if not len(moved):
        return 0.0, 0.0
    dx, dy = np.median(moved, 0)
    return float(dx), float(dy)


def _patch(image: np.ndarray, det: Detection, size: tuple[int, int] = (12, 24)) -> np.ndarray:
    """The box's grey pixels at a fixed size, zero mean and unit norm (for correlation)."""
    import cv2

    x0, y0, x1, y1 = (int(round(v)) for v in det.box)
    height, width = image.shape[:2]
    x0, x1 = max(0, min(x0, width - 1)), max(1, min(x1, width))
    y0, y1 = max(0, min(y0, height - 1)), max(1, min(y1, height))
    crop = image[y0:max(y1, y0 + 1), x0:max(x1, x0 + 1)]
    grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 else crop
    vector = cv2.resize(grey, size, interpolation=cv2.INTER_AREA).astype(np.float32).ravel()
    vector -= vector.mean()
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


def track_speed(track_: Track, gaps: Sequence[float]) -> float | None:
    """Median displacement per frame step in object heights; None when seen once."""
    steps = []
    for (p0, a), (p1, b) in zip(track_.sightings, track_.sightings[1:]):
        height = max((a.height + b.height) / 2, 1.0)
        elapsed = sum(gaps[p0:p1]) or 1.0
        steps.append(np.hypot(b.center[0] - a.center[0], b.center[1] - a.center[1])
                     / height / elapsed)
    return float(np.median(steps)) if steps else None


def _overlap(a: Detection, b: Detection) -> float:
    """Intersection over the smaller box."""
    x0, y0 = max(a.box[0], b.box[0]), max(a.box[1], b.box[1])
    x1, y1 = min(a.box[2], b.box[2]), min(a.box[3], b.box[3])
    inter = max(x1 - x0, 0) * max(y1 - y0, 0)
    smaller = min((a.box[2] - a.box[0]) * (a.box[3] - a.box[1]),
                  (b.box[2] - b.box[0]) * (b.box[3] - b.box[1]))
    return inter / smaller if smaller > 0 else 0.0


def _article(label: str) -> str:
    return f"an {label}" if label[0] in "aeiou" else f"a {label}"


def object_phrase(labels: Sequence[str]) -> str:
    """"a person with a bicycle", "a car", "a truck with a person"."""
    if not labels:
        return "an unidentified moving object"
    ordered = ["person", *[lb for lb in labels if lb != "person"]] if "person" in labels \
        else list(labels)
    head, rest = ordered[0], ordered[1:]
    return _article(head) + (" with " + " and ".join(_article(lb) for lb in rest)
                             if rest else "")


def place_phrase(x: float, y: float) -> str:
    name = region_name(x, y, 1, 1)
    return "in the centre of the view" if name == "middle-middle" else f"in the {name} of " \
        "the view"


def direction_phrase(dx: float, dy: float) -> str:
    name = direction_name(dx, dy)
    depth = (" (towards the camera)" if "down" in name else
             " (away from the camera)" if "up" in name else "")
    return f"it moves {name} across the view{depth}"


class EvidenceExtractor:
    """Scores a clip with the pipeline's scorers and describes its anomalous object."""

    def __init__(self, slots: Sequence[ScorerSlot], reasoning: ReasoningConfig,
                 settings: PipelineAnswererConfig, device: str = "cpu"):
        describer = reasoning.describer
        if describer.kind == "files":
            raise VadError("vad answerer: reasoning.describer files cannot describe new clips; "
                           "use detector or vlm")
        detector = describer if describer.kind == "detector" else DetectorDescriberConfig()
        self.detector = YoloxDetector(detector.model_path, detector.score_threshold)
        self.vlm = None
        if describer.kind == "vlm":
            from reasoning.describers import build_describer

            self.vlm = build_describer(describer, device)
        self.slots = list(slots)
        self.settings = settings

    # -- scoring -----------------------------------------------------------------------
    def score(self, frames: Sequence[Frame]) -> tuple[np.ndarray, list[np.ndarray | None]]:
        """Fused z-scores per frame (NaN where no scorer could score yet) and the first
        scorer's heatmap per frame that has one."""
        n = len(frames)
        total, weight = np.zeros(n), np.zeros(n)
        heatmaps: list[np.ndarray | None] = [None] * n
        position = {frame.index: i for i, frame in enumerate(frames)}
        for slot in self.slots:
            session = slot.scorer.session(frames[0].camera_id, n)
            results = [r for r in (session.push(f) for f in frames) if r is not None]
            results += [r for r in [session.flush()] if r is not None]
            calibration = slot.scorer.calibration
            for result in results:
                for j in range(len(result.indices)):
                    found = result.frame(j)
                    i = position[found.index]
                    z = (found.score - calibration.mean) / max(calibration.std, 1e-6)
                    total[i] += slot.weight * z
                    weight[i] += slot.weight
                    if found.heatmap is not None and heatmaps[i] is None:
                        heatmaps[i] = np.asarray(found.heatmap, np.float32)
        with np.errstate(invalid="ignore"):
            return np.where(weight > 0, total / np.maximum(weight, 1e-12), np.nan), heatmaps

    # -- evidence ----------------------------------------------------------------------
    def evidence(self, frames: Sequence[Frame]) -> ClipEvidence:
        if len(frames) < 2:
            raise VadError(f"clip {frames[0].camera_id if frames else '?'}: the pipeline needs "
                           "at least 2 frames")
        fused, heatmaps = self.score(frames)
        gaps = [float(max(b.index - a.index, 1)) for a, b in zip(frames, frames[1:])]
        detections = [self.detector(frame.image) for frame in frames]
        images = [f.image for f in frames]
        flows = given_frame_flows(images) if self.settings.track_prediction == "flow" else None
        tracks = track(images, detections, self.settings.track_reach,
                       self.settings.appearance_weight, flows)
        height, width = frames[0].image.shape[:2]
        motion = " ".join(d for d in (s.scorer.describe(list(frames)) for s in self.slots) if d)
        anomalous = self._anomalous(tracks, heatmaps, (height, width), gaps)
        if anomalous is None:
            return self._without_object(motion)
        companions = self._companions(tracks, anomalous)
        labels = list(dict.fromkeys([anomalous.label, *(t.label for t in companions)]))
        what = object_phrase(labels)
        pace, pace_text = self._pace(anomalous, tracks, companions, gaps)
        direction, direction_text = self._direction(anomalous)
        centres = np.array([det.center for _, det in anomalous.sightings])
        region = (float(centres[:, 0].mean() / width), float(centres[:, 1].mean() / height))
        place = place_phrase(*region)
        anomaly = [what, " ".join(filter(None, (what, pace_text, place)))]
        if self.vlm is not None:
            from reasoning.deduction import split_clauses

            peak = int(np.nanargmax(fused)) if np.isfinite(fused).any() else len(frames) // 2
            anomaly += split_clauses(self.vlm.describe([frames[peak]])[0])
        others = [t for t in tracks if t is not anomalous and t not in companions]
        normal = self._normal(others, labels)
        prose = (f"The scorers point at {what} (the most unusual of {len(tracks)} objects "
                 f"tracked over {len(frames)} frames), {pace_text or 'pace unknown'}; "
                 f"{direction_text}; it is {place}. "
                 + (f"Unusual motion: {motion}. " if motion else "")
                 + (f"Also in the clip: {', '.join(normal)}." if normal else ""))
        if self.vlm is not None:
            prose += f" The vision-language model describes the peak frame: {anomaly[2:]}."
        return ClipEvidence(tuple(anomaly), tuple(normal), direction, region, pace, prose)

    def _anomalous(self, tracks: list[Track], heatmaps: list[np.ndarray | None],
                   shape: tuple[int, int], gaps: Sequence[float]) -> Track | None:
        """The most unusual track: its share of the frames' peak heat under its boxes (the
        scorers) times its speed relative to the clip's people. On frames seconds apart a
        scorer trained on consecutive frames finds every mover unusual (on normal Ped2
        training clips the walkers get 0.8-0.95 of the peak heat), so speed is what sets the
        anomalous object apart there; each factor is 1 when it cannot be measured. Tracks
        seen in fewer than 3 frames (one mismatched link can fake a speed) compete only when
        none is seen longer."""
        if not tracks:
            return None
        longest = max(len(t.sightings) for t in tracks)
        candidates = [t for t in tracks if len(t.sightings) >= min(3, longest)]
        peaks = [float(h.max()) for h in heatmaps if h is not None]
        peak = float(np.mean(peaks)) if peaks and np.mean(peaks) > 0 else None
        people = people_speed(tracks, gaps)

        def unusual(t: Track) -> float:
            heat = [_box_heat(heatmaps[p], det, shape) for p, det in t.sightings
                    if heatmaps[p] is not None]
            share = float(np.mean(heat)) / peak if heat and peak else 1.0
            speed = track_speed(t, gaps)
            ratio = speed / people if speed is not None and people else 1.0
            return share * ratio

        return max(candidates, key=unusual)

    def _companions(self, tracks: list[Track], anomalous: Track) -> list[Track]:
        """Other-class tracks overlapping the anomalous one in enough of its frames (the
        bicycle under a person), most overlapping first, at most two."""
        at = dict(anomalous.sightings)
        need = max(1, self.settings.companion_share * len(anomalous.sightings))
        shared = [(sum(1 for p, det in t.sightings if p in at and _overlap(det, at[p]) > 0.3), t)
                  for t in tracks if t.label != anomalous.label]
        ranked = sorted((pair for pair in shared if pair[0] >= need), key=lambda pair: -pair[0])
        return [t for _, t in ranked[:2]]

    def _pace(self, anomalous: Track, tracks: list[Track], companions: list[Track],
              gaps: Sequence[float]) -> tuple[int | None, str]:
        speed = track_speed(anomalous, gaps)
        people = people_speed([t for t in tracks if t not in companions], gaps, anomalous)
        if speed is None or not people:
            return None, ""
        ratio = speed / people
        words = self.settings.pace
        pace = (STILL if ratio < words.still_below else SLOWER if ratio < words.slower_below
                else FASTER if ratio > words.faster_above else SAME)
        return pace, f"{PACES[pace]} ({ratio:.1f}x their speed)"

    def _direction(self, anomalous: Track) -> tuple[tuple[float, float] | None, str]:
        (_, first), (_, last) = anomalous.sightings[0], anomalous.sightings[-1]
        dx, dy = last.center[0] - first.center[0], last.center[1] - first.center[1]
        height = np.mean([det.height for _, det in anomalous.sightings])
        if np.hypot(dx, dy) < self.settings.min_displacement * max(height, 1.0):
            return None, "it stays in about the same place"
        norm = float(np.hypot(dx, dy))
        return (dx / norm, dy / norm), direction_phrase(dx, dy)

    @staticmethod
    def _normal(others: list[Track], anomaly_labels: list[str]) -> list[str]:
        """What else is there: the other people walk; another object of a kind the anomaly
        is made of (a second bicycle) is no evidence of normality."""
        labels = list(dict.fromkeys(t.label for t in others))
        out = ["a person walking"] if "person" in labels else []
        return out + [_article(lb) for lb in labels if lb not in anomaly_labels
                      and lb != "person"]

    def _without_object(self, motion: str) -> ClipEvidence:
        """No detection: the scorers' own motion description is all there is."""
        attributes = read_attributes(motion) if motion else None
        region = None
        if attributes is not None and attributes.x is not None and attributes.y is not None:
            region = (attributes.x, attributes.y)
        what = object_phrase([])
        text = f"The scorers point at {what}. " + (f"Unusual motion: {motion}." if motion else "")
        return ClipEvidence((what, motion or what), (),
                            attributes.direction if attributes else None, region,
                            None, text)


def given_frame_flows(images: Sequence[np.ndarray]) -> list[np.ndarray] | None:
    """Optical flow between consecutive given frames over the whole frame (DIS medium: its
    pyramid follows displacements of tens of pixels between frames seconds apart); None
    when the frames differ in size."""
    import cv2

    from models.flow import DenseFlow

    if len({image.shape[:2] for image in images}) > 1:
        return None
    grey = np.stack([cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
                     for image in images])
    return list(DenseFlow("dis-medium").sequence(grey, whole=True))


def people_speed(tracks: Sequence[Track], gaps: Sequence[float],
                  leaving: Track | None = None) -> float | None:
    """Median speed of the people tracked (but `leaving`), None when none moves."""
    speeds = [s for t in tracks if t.label == "person" and t is not leaving
              and (s := track_speed(t, gaps)) is not None]
    median = float(np.median(speeds)) if speeds else 0.0
    return median if median > 0 else None


def _box_heat(heatmap: np.ndarray, det: Detection, shape: tuple[int, int]) -> float:
    """Peak heat of the heatmap cells under a detection box (any heatmap resolution)."""
    rows, cols = heatmap.shape[:2]
    height, width = shape
    r0 = int(np.clip(det.box[1] / height * rows, 0, rows - 1))
    r1 = int(np.clip(np.ceil(det.box[3] / height * rows), r0 + 1, rows))
    c0 = int(np.clip(det.box[0] / width * cols, 0, cols - 1))
    c1 = int(np.clip(np.ceil(det.box[2] / width * cols), c0 + 1, cols))
    return float(heatmap[r0:r1, c0:c1].max())
