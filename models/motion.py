"""Hawk-style motion-aware scorer: appearance and motion branches per grid cell, k-NN density.

Every frame is cut into 16-pixel blocks; a cell is a 2x2-block window (32 px, stride 16).
Two hand-crafted branches describe each cell (closed-form fits only, so that fitting takes
minutes on a CPU; each feature choice was measured on Ped2, see docs/motion.md):

* appearance branch: a histogram of gradient orientations of the frame (what is there);
* motion branch: a speed x direction histogram of the optical flow (how fast, which way, how
  much of the cell moves) plus a gradient histogram of Hawk's flow-masked frame (what moves).

Fitting on normal video keeps a random memory bank of moving cells' motion-aware vectors
(motion branch + cell position; the density model AI-VAD uses) and fits the cross-branch
consistency in closed form: canonical correlation projections of the two branches, the linear
maps that minimise the mean `1 - cosine` between the branches' compressed features under a
whitening constraint (which prevents the collapse a free cosine objective would find). A
cell's anomaly is its k-NN distance to the bank (in units of the typical normal distance)
plus the weighted consistency error; the frame's score is the largest cell anomaly.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from tqdm import tqdm

from models.base import (InputSpec, LearningType, Scorer, checked_tensor,
                         register_scorer)
from models.flow import DenseFlow, to_uint8
from models.motion_cells import CellFeatures, CellFeaturizer, Geometry, fit_geometry
from models.motion_text import MotionDescription, describe_motion
from models.scoring import ScoringSession, progress_frames
from streams.windows import preprocess
from vad.config.scorers import MotionParams
from vad.data.training import TrainingSet
from vad.errors import VadError
from vad.types import Calibration, Clip, Frame, ScoreResult

log = logging.getLogger(__name__)

GEOMETRY_PAIRS = 300  # frame pairs of the normal videos, spread evenly, that fit the geometry
FIT_CHUNK = 64  # frames whose cell features are computed together while fitting
MIN_BLOCK_SAMPLES = 5  # moving pixels a block needs for its own normal speed
KNN_CHUNK_ELEMENTS = 1 << 24  # query x bank distances held at once (64 MB)


class _Consistency:
    """Closed-form cross-branch consistency: CCA projections, error = 1 - cosine."""

    def __init__(self, tensors: dict[str, np.ndarray] | None = None):
        self.tensors = tensors or {}

    @classmethod
    def fit(cls, appearance: np.ndarray, motion: np.ndarray, dim: int) -> _Consistency:
        mean_a, mean_m = appearance.mean(0), motion.mean(0)
        white_a = _whitener(appearance - mean_a)
        white_m = _whitener(motion - mean_m)
        cross = ((appearance - mean_a) @ white_a).T @ ((motion - mean_m) @ white_m) / len(motion)
        u, _, vt = np.linalg.svd(cross, full_matrices=False)
        return cls({"app_mean": mean_a, "motion_mean": mean_m,
                    "app_proj": (white_a @ u[:, :dim]).astype(np.float32),
                    "motion_proj": (white_m @ vt[:dim].T).astype(np.float32)})

    def error(self, appearance: np.ndarray, motion: np.ndarray) -> np.ndarray:
        t = self.tensors
        a = (appearance - t["app_mean"]) @ t["app_proj"]
        m = (motion - t["motion_mean"]) @ t["motion_proj"]
        cosine = (a * m).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(m, axis=-1) + 1e-6)
        return 1.0 - cosine


def _whitener(centred: np.ndarray, ridge: float = 1e-3) -> np.ndarray:
    covariance = centred.T @ centred / len(centred)
    values, vectors = np.linalg.eigh(covariance + ridge * np.eye(len(covariance)))
    return vectors / np.sqrt(values)


@register_scorer("motion")
class MotionScorer(Scorer):
    Config = MotionParams
    learning_type = LearningType.ONE_CLASS

    def __init__(self, config: MotionParams | None = None, device: str = "auto"):
        super().__init__(config, device)
        self.flow = DenseFlow(self.config.flow, self.config.flow_scale, self.config.flow_change)
        self.bank = np.zeros((0, 0), np.float32)
        self.distance_scale = np.float32(1.0)
        self.consistency = _Consistency()
        self.cells = CellFeaturizer(self.config, Geometry.uniform(1.0))
        self.normal_speed = np.ones(self._block_grid, np.float32)

    @property
    def _block_grid(self) -> tuple[int, int]:
        return self.config.size[0] // self.config.block, self.config.size[1] // self.config.block

    @property
    def input_spec(self) -> InputSpec:
        # A frame's keyframe is up to spacing - 1 frames back and needs the frame flow_stride
        # before it.
        return InputSpec(size=self.config.size, grayscale=True,
                         context=self._key_spacing - 1 + self.config.flow_stride)

    @property
    def _key_spacing(self) -> int:
        """Frame-index spacing of the keyframes, the frames whose features are computed."""
        return self.config.flow_stride * self.config.score_every

    def bank_width(self) -> int:
        """Length of a memory-bank vector: flow histogram, masked-frame gradients, position
        and, when weighted in, the appearance branch."""
        cfg = self.config
        width = cfg.orientations * (len(cfg.speed_edges) + 1) + cfg.gradient_bins + 2
        return width + (cfg.gradient_bins if cfg.appearance_weight > 0 else 0)

    @property
    def fitted(self) -> bool:
        return len(self.bank) > 0

    # -- features -----------------------------------------------------------------------
    def features(self, frames: np.ndarray, steps: np.ndarray | None = None,
                 whole: bool | None = None) -> tuple[CellFeatures, np.ndarray]:
        """Cell features of frames[1:] (each against its predecessor) and their flows.

        `steps` (T-1,) are frame-index gaps between the frames: flows are divided by them so
        that speeds stay in pixels per source frame when frames are sampled sparsely.
        `whole` forces whole-frame flow (default: when any step exceeds the flow stride).
        """
        frames = to_uint8(frames)
        if whole is None:
            # Sampled frames are far apart: their flow is taken over the whole frame (measured
            # on Ped2 04's event: crops read the cart at 1.6x normal speed, the whole frame at
            # 2.0x).
            whole = steps is not None and bool((np.asarray(steps) > self.config.flow_stride).any())
        flows = self.flow.sequence(frames, whole=whole)
        if steps is not None:
            flows = flows / np.asarray(steps, np.float32).reshape(-1, 1, 1, 1)
        return self.cells.features(frames[1:], flows), flows

    def _keyframes(self, clip: Clip) -> tuple[np.ndarray, np.ndarray]:
        """Positions in the clip of the keyframes its targets take their score from, and each
        target's row among them. A target's keyframe is the last frame at or before it whose
        index is a multiple of the keyframe spacing (so the choice does not depend on clip
        boundaries); a target without one in the clip (frames were dropped) is its own
        keyframe."""
        spacing, span = self._key_spacing, self.config.flow_stride
        targets = np.arange(clip.context, len(clip.frames))
        offsets = clip.indices[targets] % spacing
        keys = targets - offsets
        held = (keys >= span) & (clip.indices[np.maximum(keys, 0)] == clip.indices[targets]
                                 - offsets)
        return np.unique(np.where(held, keys, targets), return_inverse=True)

    def _keyframe_features(self, clip: Clip, keys: np.ndarray) -> CellFeatures:
        span = self.config.flow_stride
        frames = to_uint8(clip.frames)
        flows = np.stack([self.flow(frames[k - span], frames[k]) for k in keys])
        steps = (clip.indices[keys] - clip.indices[keys - span]).astype(np.float32)
        return self.cells.features(frames[keys], flows / steps.reshape(-1, 1, 1, 1))

    # -- scoring --------------------------------------------------------------------------
    def cell_scores(self, cells: CellFeatures) -> np.ndarray:
        """(N, n) anomaly of each cell; cells that barely move score 0."""
        if not self.fitted:
            raise VadError("motion: the scorer is not fitted; run `vad fit` or load a checkpoint")
        scores = np.zeros(cells.moving.shape, np.float32)
        if cells.moving.any():
            scores[cells.moving] = self._anomaly(cells)
        return scores

    def _anomaly(self, cells: CellFeatures, distance: np.ndarray | None = None) -> np.ndarray:
        """(m,) anomaly of the moving cells: k-NN distance (computed unless given) in units of
        the normal distance, plus the weighted consistency error."""
        if distance is None:
            distance = self._knn_distance(cells.joint(self.config))
        consistency = self.consistency.error(cells.appearance, cells.motion)
        return distance / self.distance_scale + self.config.consistency_weight * consistency

    def _knn_distance(self, queries: np.ndarray, exclude_self: np.ndarray | None = None,
                      ) -> np.ndarray:
        """Mean distance to the k nearest bank cells; `exclude_self` marks bank members.

        Squared distances as |q|^2 + |b|^2 - 2 q.b, one matrix product per chunk of queries
        (several times faster than cdist), and a min instead of a sort when one is needed."""
        k = self.config.k
        nearest = k + (exclude_self is not None)
        bank = torch.from_numpy(self.bank)
        bank_norms = (bank * bank).sum(1)[None, :]
        rows = max(1, KNN_CHUNK_ELEMENTS // len(bank))
        out = []
        for start in range(0, len(queries), rows):
            chunk = torch.from_numpy(queries[start:start + rows])
            squared = torch.addmm(bank_norms, chunk, bank.T, alpha=-2)
            if nearest == 1:
                values = squared.amin(1, keepdim=True)  # amin: ~6x faster than min's indices
            else:
                values = squared.topk(nearest, largest=False, sorted=True).values
            values = (values + (chunk * chunk).sum(1, keepdim=True)).clamp_min(0).sqrt()
            if exclude_self is not None:
                member = torch.from_numpy(exclude_self[start:start + rows])[:, None]
                values = torch.where(member, values[:, 1:], values[:, :k])
            out.append(values[:, :k].mean(1).numpy())
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def score(self, clip: Clip, last: _Keyframe | None = None) -> ScoreResult:
        """`last`: a camera's session's last keyframe, reused when the clip starts from it
        (consecutive clips share it when the batch is not a multiple of the stride)."""
        keys, rows = self._keyframes(clip)
        indices = clip.indices[keys]
        known = (indices == last.index) if last is not None else np.zeros(len(keys), bool)
        cells = np.zeros((len(keys), len(self.cells.grid.centres)), np.float32)
        if known.any():
            cells[known] = last.scores
        if not known.all():
            cells[~known] = self.cell_scores(self._keyframe_features(clip, keys[~known]))
        if last is not None:
            last.index, last.scores = int(indices[-1]), cells[-1]
        cells = cells[rows]
        return ScoreResult(clip.camera_id, clip.target_indices,
                           cells.max(1).astype(np.float64), self.cells.grid.heatmap(cells))

    def session(self, camera_id: str, batch: int) -> ScoringSession:
        return _KeyframeSession(self, camera_id, batch)

    # -- fitting --------------------------------------------------------------------------
    def _normal_frames(self, training: TrainingSet, progress: bool) -> list[np.ndarray]:
        """Each normal video as uint8 frames at the analysis size, decoded once."""
        videos = []
        for source in training.normal_sources():
            frames = progress_frames(source, f"fit motion {source.camera_id}", progress)
            videos.append(np.stack([to_uint8(preprocess(f.image, self.config.size, True))
                                    for f in frames]))
        if not videos or max(len(v) for v in videos) < 2:
            raise VadError("motion: the normal videos need at least 2 frames")
        return videos

    def _sample_pairs(self, videos: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray, int]]:
        """GEOMETRY_PAIRS (frame, frame `gap` later, gap) pairs spread over the normal videos,
        `gap` the flow stride, as scored."""
        pairs = [(v, t) for v, frames in enumerate(videos) for t in range(len(frames) - 1)]
        step = max(1, len(pairs) // GEOMETRY_PAIRS)
        stride = self.config.flow_stride
        pairs = [(v, t) for v, t in pairs if t + stride < len(videos[v])] or pairs
        sampled = []
        for v, t in pairs[::step]:
            gap = min(stride, len(videos[v]) - 1 - t)
            sampled.append((videos[v][t], videos[v][t + gap], gap))
        return sampled

    def _pair_speeds(self, pairs: list[tuple[np.ndarray, np.ndarray, int]]) -> np.ndarray:
        """(N, H, W) whole-frame flow speeds of the pairs, in pixels per frame."""
        speeds = []
        for previous, current, gap in pairs:
            flow = self.flow(previous, current, whole=True) / gap
            speeds.append(cv2.magnitude(flow[..., 0], flow[..., 1]))
        return np.stack(speeds)

    def _change_mask_share(self, pairs: list[tuple[np.ndarray, np.ndarray, int]],
                           speeds: np.ndarray) -> float:
        """Share of the whole-frame flow's moving pixels that lie in the changed blocks."""
        height, width = self.cells.crop
        kept = moving_total = 0
        for (previous, current, _), speed in zip(pairs, speeds):
            moving = speed[:height, :width] > self.cells.threshold
            inside = np.zeros(previous.shape, bool)
            for top, left, bottom, right in self.flow.changed_regions(previous, current):
                inside[top:bottom, left:right] = True
            kept += int((moving & inside[:height, :width]).sum())
            moving_total += int(moving.sum())
        return kept / moving_total if moving_total else 1.0

    def _settle_change_mask(self, pairs: list[tuple[np.ndarray, np.ndarray, int]],
                            speeds: np.ndarray) -> None:
        """Keeps the change mask only where, on this camera's normal footage, it keeps enough
        of what moves; the checkpoint records the outcome as its flow_change."""
        if not self.config.flow_change:
            return
        share = self._change_mask_share(pairs, speeds)
        keep = share >= self.config.flow_change_min_share
        log.info("motion: the change mask keeps %.3f of the moving pixels of the normal "
                 "footage: %s", share, "kept" if keep else "dropped (whole-frame flow)")
        if not keep:
            self.config = self.config.model_copy(update={"flow_change": 0})
            self.flow = DenseFlow(self.config.flow, self.config.flow_scale, 0)

    def fit(self, training: TrainingSet, progress: bool = True) -> None:
        cfg = self.config
        videos = self._normal_frames(training, progress)
        pairs = self._sample_pairs(videos)
        speeds = self._pair_speeds(pairs)
        self.cells = CellFeaturizer(cfg, fit_geometry(speeds, cfg))
        self._settle_change_mask(pairs, speeds)
        cfg = self.config
        chunks, speed_sums, counts = [], 0.0, 0.0
        stride = cfg.flow_stride
        for frames in tqdm(videos, desc="fit motion: cell features", disable=not progress,
                           leave=False):
            keyframes = frames[::stride]  # as scored: every stride-th frame against the one before
            for start in range(0, len(keyframes) - 1, FIT_CHUNK):
                part = keyframes[start:start + FIT_CHUNK + 1]
                cells, flows = self.features(part, np.full(len(part) - 1, stride), whole=False)
                chunks.append(cells)
                for flow in flows:
                    sums, seen = self.cells.block_speed(flow)
                    speed_sums, counts = speed_sums + sums, counts + seen
        cells = CellFeatures.concatenate(chunks)
        if len(cells.motion) < 2 * cfg.k + 2:
            raise VadError("motion: the normal videos show almost no motion to learn from")
        joint = cells.joint(cfg)
        chosen = _bank_sample(joint, cfg)
        self.bank = np.ascontiguousarray(joint[chosen])
        self.consistency = _Consistency.fit(cells.appearance, cells.motion, cfg.consistency_dim)
        self.normal_speed = _normal_block_speed(speed_sums, counts,
                                                self.cells.geometry.speed_map(self._block_grid))
        # Distances in units of the typical normal k-NN distance (leave-self-out), and the
        # calibration on the same leave-self-out scores, so that it is not optimistic.
        in_bank = np.zeros(len(joint), bool)
        in_bank[chosen] = True
        distance = self._knn_distance(joint, in_bank)
        self.distance_scale = np.float32(np.median(distance) or 1.0)
        scores = np.zeros(cells.moving.shape, np.float32)
        scores[cells.moving] = self._anomaly(cells, distance)
        self.calibration = Calibration.from_scores(scores.max(1))

    # -- descriptions ---------------------------------------------------------------------
    def describe_motion(self, frames: np.ndarray | Sequence[Frame]) -> MotionDescription | None:
        """The most unusual moving blob of a frame range, or None when nothing moves.

        `frames`: consecutive images (T, H, W) or (T, H, W, 3) (BGR; uint8 or float in [0, 1]),
        or `Frame`s of one camera, possibly sampled: their index gaps scale the flow.
        """
        if len(frames) < 2:
            raise VadError(f"motion: describing needs at least 2 frames, got {len(frames)}")
        steps = None
        if not isinstance(frames, np.ndarray):
            steps = np.maximum(np.diff([frame.index for frame in frames]), 1)
            frames = [frame.image for frame in frames]
        gray = np.stack([preprocess(to_uint8(np.asarray(f)), self.config.size, grayscale=True)
                         for f in frames])
        cells, flows = self.features(gray, steps)
        scores = self.cell_scores(cells)
        floor = self.calibration.mean + self.config.describe_min_z * self.calibration.std
        return describe_motion(flows, np.where(scores >= floor, scores, 0.0), self.cells,
                               self.normal_speed, steps)

    def describe(self, frames: np.ndarray | Sequence[Frame]) -> str | None:
        """A short factual sentence on what moves unusually in `frames` (see describe_motion)."""
        if len(frames) < 2:
            return None  # motion needs two frames
        description = self.describe_motion(frames)
        return description.text if description is not None else "no unusual motion"

    # -- checkpoint -----------------------------------------------------------------------
    def tensors(self) -> dict[str, np.ndarray]:
        return {"bank": self.bank, "distance_scale": np.asarray([self.distance_scale]),
                "normal_speed": self.normal_speed, "geometry": self.cells.geometry.to_array(),
                **{f"consistency.{k}": v for k, v in self.consistency.tensors.items()}}

    def load_tensors(self, tensors: dict[str, np.ndarray]) -> None:
        width = self.bank_width()
        self.bank = checked_tensor(tensors, "bank", (None, width))
        if len(self.bank) <= self.config.k:
            raise VadError(f"tensor 'bank' holds {len(self.bank)} cells, k is {self.config.k}")
        self.distance_scale = np.float32(checked_tensor(tensors, "distance_scale", (1,))[0])
        if self.distance_scale <= 0:
            raise VadError("tensor 'distance_scale' must be positive")
        self.normal_speed = checked_tensor(tensors, "normal_speed", self._block_grid)
        geometry = checked_tensor(tensors, "geometry", (4,))
        if geometry[3] <= 0:
            raise VadError("tensor 'geometry' must hold a positive reference speed")
        self.cells = CellFeaturizer(self.config, Geometry.from_array(geometry))
        self.consistency = _Consistency({k.split(".", 1)[1]: v for k, v in tensors.items()
                                         if k.startswith("consistency.")})


@dataclass
class _Keyframe:
    """A camera's last scored keyframe: its frame index and cell scores."""

    index: int = -1
    scores: np.ndarray | None = None


class _KeyframeSession(ScoringSession):
    def __init__(self, scorer: MotionScorer, camera_id: str, batch: int):
        super().__init__(scorer, camera_id, batch)
        self.last = _Keyframe()

    def score(self, clip: Clip) -> ScoreResult:
        return self.scorer.score(clip, self.last)

    def state(self) -> dict:
        return super().state() | {"keyframe": {"index": self.last.index,
                                               "scores": self.last.scores}}

    def restore(self, state: dict) -> None:
        super().restore(state)
        self.last = _Keyframe(**state["keyframe"])


def _bank_sample(joint: np.ndarray, config: MotionParams) -> np.ndarray:
    """Indices of the memory bank's cells: a random sample of the normal moving cells."""
    rng = np.random.default_rng(config.seed)
    return rng.choice(len(joint), min(config.bank_size, len(joint)), replace=False)


def _normal_block_speed(speed_sums: np.ndarray, counts: np.ndarray,
                        fitted: np.ndarray) -> np.ndarray:
    """Typical speed of moving pixels per block on normal video; blocks seen moving too
    rarely take the fitted geometry's speed."""
    mean = speed_sums / np.maximum(counts, 1.0)
    return np.where(counts >= MIN_BLOCK_SAMPLES, mean, fitted).astype(np.float32)
