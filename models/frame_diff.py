"""Frame-difference baseline: how much a grid cell changes against normal footage.

The raw score of frame t is the largest per-cell z-score of the mean absolute difference
|I_t - I_{t-1}|, with each cell's mean and spread learnt from normal videos.
"""

from __future__ import annotations

import numpy as np

from models.base import (InputSpec, LearningType, Scorer, checked_tensor,
                         register_scorer)
from models.scoring import iter_clips, progress_frames
from vad.config.scorers import FrameDiffParams
from vad.data.training import TrainingSet
from vad.types import Clip, ScoreResult


def cell_means(images: np.ndarray, cell: int) -> np.ndarray:
    """(N, H, W) -> (N, H//cell, W//cell) mean over non-overlapping cells."""
    n, h, w = images.shape
    h, w = h - h % cell, w - w % cell
    cells = images[:, :h, :w].reshape(n, h // cell, cell, w // cell, cell)
    return cells.mean(axis=(2, 4))


@register_scorer("frame-diff")
class FrameDiffScorer(Scorer):
    Config = FrameDiffParams
    learning_type = LearningType.ONE_CLASS

    def __init__(self, config: FrameDiffParams | None = None, device: str = "auto"):
        super().__init__(config, device)
        self.cell_mean = np.zeros(self.grid, np.float32)
        self.cell_std = np.ones(self.grid, np.float32)

    @property
    def grid(self) -> tuple[int, int]:
        return self.config.size[0] // self.config.cell, self.config.size[1] // self.config.cell

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec(size=self.config.size, grayscale=True, context=1)

    def _differences(self, clip: Clip) -> np.ndarray:
        return np.abs(np.diff(clip.frames, axis=0))[clip.context - 1:]

    def score(self, clip: Clip) -> ScoreResult:
        diffs = self._differences(clip)
        z = (cell_means(diffs, self.config.cell) - self.cell_mean) / self.cell_std
        return ScoreResult(clip.camera_id, clip.target_indices,
                           z.reshape(len(z), -1).max(axis=1).astype(np.float64), diffs)

    def fit(self, training: TrainingSet, progress: bool = True) -> None:
        sources = training.normal_sources()
        cells = [cell_means(self._differences(clip), self.config.cell)
                 for source in sources
                 for clip in iter_clips(self, progress_frames(source, f"fit {source.camera_id}",
                                                              progress))]
        stacked = np.concatenate(cells)
        self.cell_mean = stacked.mean(axis=0).astype(np.float32)
        self.cell_std = (stacked.std(axis=0) + 1e-3).astype(np.float32)
        self.calibrate(sources, progress=False)

    def tensors(self) -> dict[str, np.ndarray]:
        return {"cell_mean": self.cell_mean, "cell_std": self.cell_std}

    def load_tensors(self, tensors: dict[str, np.ndarray]) -> None:
        self.cell_mean = checked_tensor(tensors, "cell_mean", self.grid)
        self.cell_std = checked_tensor(tensors, "cell_std", self.grid)
