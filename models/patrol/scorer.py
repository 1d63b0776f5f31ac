"""The `patrol` scorer: anomalies as changes against a reference pass along the same route
(UMAD's setting, docs/patrol.md). Fitting indexes the reference pass; per query frame a
session matches it to a reference frame (continuity along the route), aligns the two and
compares them. Its raw score is the strength of the strongest change region in noise units
of the pair (0 without one): already normalised, so its calibration is the identity.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np

from models.base import InputSpec, LearningType, Scorer, register_scorer
from models.patrol.aligner import Aligner, Alignment, warp_reference
from models.patrol.change import Change, ChangeDetector
from models.patrol.index import Features, ReferenceIndex, global_descriptor
from models.patrol.matcher import Match, RouteMatcher
from models.scoring import ScoringSession, progress_frames
from streams.sources import Source
from streams.windows import preprocess
from vad.config.scorers import PatrolParams
from vad.data.patrol import RoutePoses
from vad.data.training import TrainingSet
from vad.errors import VadError
from vad.types import Box, Clip, ReferenceMatch, ScoreResult


@dataclass(frozen=True)
class PatrolFrame:
    """Everything the scorer found about one query frame."""

    match: Match
    alignment: Alignment | None  # None when lost
    change: Change | None  # None unless aligned
    reference: np.ndarray | None  # the matched reference warped into the query's view

    @property
    def status(self) -> str:
        if self.match.lost:
            return "lost"
        return "aligned" if self.change is not None else "unaligned"

    @property
    def score(self) -> float:
        return self.change.strength if self.change is not None else 0.0

    def boxes(self) -> tuple[Box, ...]:
        if self.change is None:
            return ()
        h, w = self.change.mask.shape
        return tuple(Box(r.box[0] / w, r.box[1] / h, r.box[2] / w, r.box[3] / h, r.strength)
                     for r in self.change.regions)


def to_gray(frame: np.ndarray) -> np.ndarray:
    """A preprocessed float [0, 1] grey frame back to uint8, as ORB and ECC want it."""
    return np.clip(frame * 255 + 0.5, 0, 255).astype(np.uint8)


@register_scorer("patrol")
class PatrolScorer(Scorer):
    Config = PatrolParams
    learning_type = LearningType.REFERENCE_BASED

    def __init__(self, config: PatrolParams | None = None, device: str = "auto"):
        super().__init__(config, device)
        self.index: ReferenceIndex | None = None
        self.features = Features(self.config.features)
        self.aligner = Aligner(self.config)
        self.detector = ChangeDetector(self.config)
        # The query's own poses (odometry, ground truth) by camera, when the caller has them.
        self.query_poses: dict[str, RoutePoses] = {}

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec(size=self.config.size, grayscale=True, context=0)

    @property
    def descriptor_size(self) -> int:
        rows, cols = self.config.descriptor_grid
        return 2 * rows * cols

    def fit(self, training: TrainingSet, progress: bool = True) -> None:
        sources = training.normal_sources()
        if len(sources) != 1:
            raise VadError(f"the patrol scorer indexes one reference pass, not {len(sources)} "
                           "videos")
        self.build_index(sources[0], progress=progress)

    def build_index(self, source: Source, poses: RoutePoses | None = None,
                    progress: bool = True) -> None:
        """Index a reference pass (and its poses, by frame index)."""
        frames = [to_gray(preprocess(frame.image, self.config.size, True))
                  for frame in progress_frames(source, f"indexing {source.camera_id}", progress)]
        if not frames:
            raise VadError(f"{source.location}: the reference has no frames")
        dense = None if poses is None else poses.dense(len(frames))
        self.index = ReferenceIndex.build(frames, self.config.descriptor_grid,
                                          self.config.features, dense)
        self.provenance["reference"] = {"source": source.location, "frames": len(frames),
                                        "poses": poses is not None}

    def session(self, camera_id: str, batch: int) -> PatrolSession:
        return PatrolSession(self, camera_id, batch)

    def score(self, clip: Clip) -> ScoreResult:
        """Without a session there is no route history: each clip is localised afresh."""
        return PatrolSession(self, clip.camera_id, len(clip.frames)).score(clip)

    def analyse(self, gray: np.ndarray, matcher: RouteMatcher,
                pose: np.ndarray | None = None) -> PatrolFrame:
        """Match, align and compare one grey query frame at the working size."""
        match = matcher.match(global_descriptor(gray, self.config.descriptor_grid), pose)
        if match.lost:
            return PatrolFrame(match, None, None, None)
        features = self.features(gray)
        match, alignment = self._align(gray, features, *self._locate(features, match, matcher),
                                       matcher)
        confirmed = matcher.settle(match.frame)
        if not alignment.aligned:
            return PatrolFrame(match, alignment, None, None)
        if not confirmed:
            # A jump along the route may be a look-alike place: compare once it holds.
            return PatrolFrame(match, Alignment(None, alignment.inliers, alignment.correlation,
                                                "relocalised along the route, not yet confirmed"),
                               None, None)
        warped, valid = warp_reference(self._index().frames[match.frame], alignment.homography,
                                       gray.shape)
        change = self.detector.detect(gray, warped, valid)
        changed = change.mask.mean()
        if changed > self.config.max_changed:
            # Change everywhere is a wrong match or a wrong alignment, not an object.
            matcher.reject(match.frame)
            return PatrolFrame(match, Alignment(None, alignment.inliers, alignment.correlation,
                                                f"{changed:.0%} of the frame changed"),
                               None, None)
        return PatrolFrame(match, alignment, change, warped)

    def _locate(self, features: tuple[np.ndarray, np.ndarray], match: Match,
                matcher: RouteMatcher) -> tuple[Match, np.ndarray | None, int]:
        """The match and its keypoint transform: the route tracker's next best when its best
        will not align, then the frame that transform says is nearest."""
        index = self._index()
        homography, inliers = self.aligner.coarse(features, index.features(match.frame))
        if homography is None:
            other = matcher.reject(match.frame)
            if other is not None:
                found, found_inliers = self.aligner.coarse(features, index.features(other.frame))
                if found is not None:
                    match, homography, inliers = other, found, found_inliers
        if homography is not None:
            nearer = self._along_route(match.frame, homography, 1.0)
            if nearer != match.frame:
                closer, closer_inliers = self.aligner.coarse(features, index.features(nearer))
                if closer is not None:
                    match, homography, inliers = (Match(nearer, matcher.similarity(nearer)),
                                                  closer, closer_inliers)
                    matcher.relocate(nearer)
        return match, homography, inliers

    def _align(self, gray: np.ndarray, features: tuple[np.ndarray, np.ndarray], match: Match,
               homography: np.ndarray | None, inliers: int,
               matcher: RouteMatcher) -> tuple[Match, Alignment]:
        """The refined alignment; one that puts the view elsewhere on the route moves the
        match there, or, when it would be farther than the route tracking can step, is not
        trusted."""
        index = self._index()
        alignment = self.aligner.refine(gray, index.frames[match.frame], homography, inliers)
        if not alignment.aligned:
            return match, alignment
        nearer = self._along_route(match.frame, alignment.homography, 2.0)
        if nearer == match.frame:
            return match, alignment
        moved = self.aligner.refine(gray, index.frames[nearer],
                                    *self.aligner.coarse(features, index.features(nearer)))
        if moved.aligned:
            matcher.relocate(nearer)
            return Match(nearer, matcher.similarity(nearer)), moved
        if abs(nearer - match.frame) > self.config.max_step:
            return match, Alignment(None, inliers, alignment.correlation,
                                    f"aligned as if {nearer - match.frame:+d} frames along the "
                                    "route, which does not align")
        return match, alignment

    def _along_route(self, frame: int, homography: np.ndarray, least: float) -> int:
        """The reference frame nearest the query's view: the query centre's offset in the
        matched frame, in steps of the route (when the route moves the view at all); the
        matched frame itself unless at least `least` steps away."""
        index = self._index()
        step = index.steps[frame].astype(np.float64)
        length = float(step @ step)
        if length < 0.25:
            return frame
        h, w = index.frames.shape[1:]
        centre = np.array([[[w / 2, h / 2]]], np.float64)
        offset = (cv2.perspectiveTransform(centre, homography) - centre).ravel()
        ahead = float(offset @ step) / length
        if abs(ahead) < least:
            return frame
        return int(np.clip(frame + round(ahead), 0, len(index) - 1))

    def matcher(self) -> RouteMatcher:
        return RouteMatcher(self._index(), self.config)

    def _index(self) -> ReferenceIndex:
        if self.index is None:
            raise VadError("the patrol scorer has no reference index: run `vad patrol index`")
        return self.index

    def tensors(self) -> dict[str, np.ndarray]:
        return self._index().tensors()

    def load_tensors(self, tensors: dict[str, np.ndarray]) -> None:
        self.index = ReferenceIndex.from_tensors(tensors, self.config.size, self.descriptor_size)


class PatrolSession(ScoringSession):
    """One camera's patrol: its position along the route carries over from frame to frame."""

    def __init__(self, scorer: PatrolScorer, camera_id: str, batch: int):
        super().__init__(scorer, camera_id, batch)
        self.route = scorer.matcher()
        self.poses = scorer.query_poses.get(camera_id)

    def analyse(self, frames: Iterable[tuple[int, np.ndarray]]) -> list[PatrolFrame]:
        return [self.scorer.analyse(to_gray(frame), self.route,
                                    None if self.poses is None else self.poses.of(index))
                for index, frame in frames]

    def state(self) -> dict:
        return super().state() | {"route": self.route.state()}

    def restore(self, state: dict) -> None:
        super().restore(state)
        self.route.restore(state["route"])

    def score(self, clip: Clip) -> ScoreResult:
        targets = clip.target_indices
        found = self.analyse(zip(targets, clip.frames[clip.context:]))
        shape = clip.frames.shape[1:3]
        return ScoreResult(
            clip.camera_id, targets, np.array([f.score for f in found]),
            np.stack([f.change.change if f.change is not None else np.zeros(shape, np.float32)
                      for f in found]),
            tuple(f.boxes() for f in found), None,
            tuple(ReferenceMatch(f.match.frame, f.status, f.reference) for f in found))
