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

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from models.base import (InputSpec, LearningType, Scorer, checked_tensor,
                         register_scorer)
from models.flow import DenseFlow, flow_masked_frame, to_uint8
from models.motion_text import MotionDescription, describe_motion
from models.scoring import iter_clips, progress_frames
from streams.sources import Source
from streams.windows import preprocess
from vad.config.scorers import MotionParams
from vad.data.training import TrainingSet
from vad.errors import VadError
from vad.types import Calibration, Clip, Frame, ScoreResult


@dataclass
class CellFeatures:
    """Per-cell features of N frames: (N, h, w, ...) arrays on the cell grid."""

    appearance: np.ndarray  # (N, h, w, A)
    motion: np.ndarray  # (N, h, w, M)
    moving_fraction: np.ndarray  # (N, h, w)
    block_speed: np.ndarray  # (N, H/block, W/block) mean speed of moving pixels, 0 if none

    def joint(self, config: MotionParams) -> np.ndarray:
        """The motion-aware vector the memory bank holds: (N, h, w, M + 2 [+ A])."""
        n, h, w = self.moving_fraction.shape
        rows, cols = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
        position = np.broadcast_to(np.stack([rows, cols], -1), (n, h, w, 2))
        parts = [self.motion, config.position_weight * position]
        if config.appearance_weight > 0:
            parts.append(config.appearance_weight * self.appearance)
        return np.concatenate(parts, -1).astype(np.float32)


def _block_sums(values: np.ndarray, block: int) -> np.ndarray:
    """(H, W, C) -> (H//block, W//block, C) sums over non-overlapping blocks."""
    h, w = values.shape[0] // block, values.shape[1] // block
    return values[:h * block, :w * block].reshape(h, block, w, block, -1).sum((1, 3))


def _windows(blocks: np.ndarray) -> np.ndarray:
    """Block sums -> sums over 2x2-block windows with a stride of one block."""
    return blocks[:-1, :-1] + blocks[1:, :-1] + blocks[:-1, 1:] + blocks[1:, 1:]


def _histogram(bins: np.ndarray, weights: np.ndarray, count: int, block: int) -> np.ndarray:
    """Per-window histograms of integer `bins` (H, W) weighted by `weights`; bins >= count drop."""
    h, w = bins.shape[0] // block, bins.shape[1] // block
    bins, weights = bins[:h * block, :w * block], weights[:h * block, :w * block]
    block_index = ((np.arange(h * block) // block)[:, None] * w
                   + (np.arange(w * block) // block)[None, :])
    keep = bins < count
    sums = np.bincount((block_index * count + bins)[keep], weights[keep].astype(np.float64),
                       minlength=h * w * count)
    return _windows(sums.reshape(h, w, count).astype(np.float32))


def _gradient_histogram(image: np.ndarray, bins: int, block: int) -> np.ndarray:
    gx = cv2.Sobel(image, cv2.CV_32F, 1, 0)
    gy = cv2.Sobel(image, cv2.CV_32F, 0, 1)
    magnitude, angle = cv2.cartToPolar(gx, gy)
    orientation = (angle * (bins / np.pi)).astype(np.int64) % bins  # unsigned: mod 180 deg
    hist = _histogram(orientation, magnitude, bins, block)
    return hist / (np.linalg.norm(hist, axis=-1, keepdims=True) + 1.0)


def frame_features(frame: np.ndarray, flow: np.ndarray, config: MotionParams,
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Appearance, motion, moving fraction and block speed of one frame and its flow."""
    block = config.block
    speed, angle = cv2.cartToPolar(flow[..., 0], flow[..., 1])
    moving = speed > config.move_threshold
    direction = (angle * (config.orientations / (2 * np.pi))).astype(np.int64) % config.orientations
    speed_bin = sum((speed > edge).astype(np.int64) for edge in config.speed_edges)
    n_speeds = len(config.speed_edges) + 1
    flow_bins = np.where(moving, direction * n_speeds + speed_bin, config.orientations * n_speeds)
    area = 4 * block * block
    flow_hist = _histogram(flow_bins, np.ones_like(speed), config.orientations * n_speeds,
                           block) / area
    masked = flow_masked_frame(frame, flow, config.move_threshold)
    motion = np.concatenate(
        [flow_hist, config.masked_weight
         * _gradient_histogram(masked, config.gradient_bins, block)], -1)
    appearance = _gradient_histogram(frame, config.gradient_bins, block)
    moving_blocks = _block_sums(np.stack([moving, speed * moving], -1).astype(np.float32), block)
    moving_fraction = _windows(moving_blocks[..., :1])[..., 0] / area
    block_speed = moving_blocks[..., 1] / np.maximum(moving_blocks[..., 0], 1.0)
    return appearance, motion, moving_fraction, block_speed


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
        self.flow = DenseFlow(self.config.flow)
        self.bank = np.zeros((0, 0), np.float32)
        self.distance_scale = np.float32(1.0)
        self.consistency = _Consistency()
        grid = (self.config.size[0] // self.config.block, self.config.size[1] // self.config.block)
        self.normal_speed = np.ones(grid, np.float32)

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec(size=self.config.size, grayscale=True, context=1)

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
                 ) -> tuple[CellFeatures, np.ndarray]:
        """Cell features of frames[1:] (each against its predecessor) and their flows.

        `steps` (T-1,) are frame-index gaps between the frames: flows are divided by them so
        that speeds stay in pixels per source frame when frames are sampled sparsely.
        """
        flows = self.flow.sequence(frames)
        if steps is not None:
            flows = flows / np.asarray(steps, np.float32).reshape(-1, 1, 1, 1)
        parts = [frame_features(frame, flow, self.config) for frame, flow in zip(frames[1:], flows)]
        return CellFeatures(*(np.stack(p) for p in zip(*parts))), flows

    def _clip_features(self, clip: Clip) -> CellFeatures:
        return self.features(clip.frames[clip.context - 1:])[0]

    # -- scoring --------------------------------------------------------------------------
    def cell_scores(self, cells: CellFeatures) -> np.ndarray:
        """(N, h, w) anomaly of each cell; cells that barely move score 0."""
        if not self.fitted:
            raise VadError("motion: the scorer is not fitted; run `vad fit` or load a checkpoint")
        moving = cells.moving_fraction > self.config.min_moving_fraction
        scores = np.zeros(moving.shape, np.float32)
        if moving.any():
            joint = cells.joint(self.config)[moving]
            distance = self._knn_distance(joint) / self.distance_scale
            consistency = self.consistency.error(cells.appearance[moving], cells.motion[moving])
            scores[moving] = distance + self.config.consistency_weight * consistency
        return scores

    def _knn_distance(self, queries: np.ndarray, exclude_self: np.ndarray | None = None,
                      ) -> np.ndarray:
        """Mean distance to the k nearest bank cells; `exclude_self` marks bank members."""
        k = self.config.k
        bank = torch.from_numpy(self.bank)
        out = []
        for start in range(0, len(queries), 8192):
            chunk = torch.from_numpy(queries[start:start + 8192])
            nearest = torch.cdist(chunk, bank).topk(k + 1, largest=False).values
            if exclude_self is not None:
                member = torch.from_numpy(exclude_self[start:start + 8192])[:, None]
                nearest = torch.where(member, nearest[:, 1:], nearest[:, :k])
            out.append(nearest[:, :k].mean(1).numpy())
        return np.concatenate(out)

    def score(self, clip: Clip) -> ScoreResult:
        cells = self.cell_scores(self._clip_features(clip))
        return ScoreResult(clip.camera_id, clip.target_indices,
                           cells.reshape(len(cells), -1).max(1).astype(np.float64),
                           self._heatmaps(cells))

    def _heatmaps(self, cells: np.ndarray) -> np.ndarray:
        """Cell scores -> per-block map (each block the max of the cells covering it)."""
        padded = np.pad(cells, ((0, 0), (1, 1), (1, 1)))
        return np.maximum.reduce([padded[:, 1:, 1:], padded[:, :-1, 1:],
                                  padded[:, 1:, :-1], padded[:, :-1, :-1]])

    # -- fitting --------------------------------------------------------------------------
    def _iter_features(self, sources: Sequence[Source], progress: bool) -> Iterator[CellFeatures]:
        for source in sources:
            frames = progress_frames(source, f"fit motion {source.camera_id}", progress)
            for clip in iter_clips(self, frames):
                yield self._clip_features(clip)

    def fit(self, training: TrainingSet, progress: bool = True) -> None:
        sources = training.normal_sources()
        cfg = self.config
        chunks = list(self._iter_features(sources, progress))
        cells = CellFeatures(*(np.concatenate(parts) for parts in zip(*(
            (c.appearance, c.motion, c.moving_fraction, c.block_speed) for c in chunks))))
        moving = cells.moving_fraction > cfg.min_moving_fraction
        if moving.sum() < 2 * cfg.k + 2:
            raise VadError("motion: the normal videos show almost no motion to learn from")
        joint = cells.joint(cfg)[moving]
        rng = np.random.default_rng(cfg.seed)
        chosen = rng.choice(len(joint), min(cfg.bank_size, len(joint)), replace=False)
        self.bank = np.ascontiguousarray(joint[chosen])
        self.consistency = _Consistency.fit(cells.appearance[moving], cells.motion[moving],
                                            cfg.consistency_dim)
        self.normal_speed = _normal_block_speed(cells.block_speed)
        # Distances in units of the typical normal k-NN distance (leave-self-out).
        in_bank = np.zeros(len(joint), bool)
        in_bank[chosen] = True
        distance = self._knn_distance(joint, in_bank)
        self.distance_scale = np.float32(np.median(distance) or 1.0)
        scores = np.zeros(moving.shape, np.float32)
        consistency = self.consistency.error(cells.appearance[moving], cells.motion[moving])
        scores[moving] = distance / self.distance_scale + cfg.consistency_weight * consistency
        self.calibration = Calibration.from_scores(scores.reshape(len(scores), -1).max(1))

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
        return describe_motion(flows, np.where(scores >= floor, scores, 0.0), self.normal_speed,
                               self.config)

    def describe(self, frames: np.ndarray | Sequence[Frame]) -> str | None:
        """A short factual sentence on what moves unusually in `frames` (see describe_motion)."""
        if len(frames) < 2:
            return None  # motion needs two frames
        description = self.describe_motion(frames)
        return description.text if description is not None else "no unusual motion"

    # -- checkpoint -----------------------------------------------------------------------
    def tensors(self) -> dict[str, np.ndarray]:
        return {"bank": self.bank, "distance_scale": np.asarray([self.distance_scale]),
                "normal_speed": self.normal_speed,
                **{f"consistency.{k}": v for k, v in self.consistency.tensors.items()}}

    def load_tensors(self, tensors: dict[str, np.ndarray]) -> None:
        grid = (self.config.size[0] // self.config.block, self.config.size[1] // self.config.block)
        width = self.bank_width()
        self.bank = checked_tensor(tensors, "bank", (None, width))
        if len(self.bank) <= self.config.k:
            raise VadError(f"tensor 'bank' holds {len(self.bank)} cells, k is {self.config.k}")
        self.distance_scale = np.float32(checked_tensor(tensors, "distance_scale", (1,))[0])
        if self.distance_scale <= 0:
            raise VadError("tensor 'distance_scale' must be positive")
        self.normal_speed = checked_tensor(tensors, "normal_speed", grid)
        self.consistency = _Consistency({k.split(".", 1)[1]: v for k, v in tensors.items()
                                         if k.startswith("consistency.")})


def _normal_block_speed(block_speed: np.ndarray) -> np.ndarray:
    """Typical speed of moving pixels per block on normal video; blocks never seen moving
    take the median of the others."""
    moving = block_speed > 0
    counts = moving.sum(0)
    mean = np.where(counts > 0, block_speed.sum(0) / np.maximum(counts, 1), 0.0)
    fallback = np.median(mean[counts > 0]) if (counts > 0).any() else 1.0
    return np.where(counts >= 5, mean, fallback).astype(np.float32)
