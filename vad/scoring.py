"""Running a scorer over a stream of frames, clip by clip."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import cv2
import numpy as np
from tqdm import tqdm

from streams.sources import Source
from streams.windows import ClipWindower
from vad.types import Clip, Frame, ScoreResult

DEFAULT_BATCH = 8


def windower_for(scorer, batch: int = DEFAULT_BATCH) -> ClipWindower:
    spec = scorer.input_spec
    return ClipWindower(spec.context, batch, spec.size, spec.grayscale)


def iter_clips(scorer, frames: Iterable[Frame], batch: int = DEFAULT_BATCH) -> Iterator[Clip]:
    """The clips a scorer needs from a frame stream, the last one possibly shorter."""
    windower = windower_for(scorer, batch)
    for frame in frames:
        clip = windower.push(frame)
        if clip is not None:
            yield clip
    clip = windower.flush()
    if clip is not None:
        yield clip


def iter_scores(scorer, frames: Iterable[Frame], batch: int = DEFAULT_BATCH,
                ) -> Iterator[ScoreResult]:
    """Score a frame stream clip by clip as frames arrive (the online path)."""
    for clip in iter_clips(scorer, frames, batch):
        yield scorer.score(clip)


def progress_frames(source: Source, desc: str, progress: bool) -> Iterable[Frame]:
    return tqdm(source, total=len(source) or None, desc=desc, unit="frame",
                disable=not progress, leave=False)


def score_source(scorer, source: Source, batch: int = DEFAULT_BATCH, progress: bool = False,
                 heatmap_size: tuple[int, int] | None = None) -> ScoreResult:
    """All scores of one source; heatmaps resized to `heatmap_size` (h, w) when asked for."""
    frames = progress_frames(source, f"{scorer.name} {source.camera_id}", progress)
    results = list(iter_scores(scorer, frames, batch))
    indices = np.concatenate([r.indices for r in results]) if results else np.zeros(0, np.int64)
    scores = np.concatenate([r.scores for r in results]) if results else np.zeros(0)
    heatmaps = None
    if heatmap_size is not None and results and all(r.heatmaps is not None for r in results):
        heatmaps = np.concatenate([resize_heatmaps(r.heatmaps, heatmap_size) for r in results])
    return ScoreResult(source.camera_id, indices, scores.astype(np.float64), heatmaps)


def resize_heatmaps(heatmaps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.stack([cv2.resize(h.astype(np.float32), (size[1], size[0]),
                                interpolation=cv2.INTER_LINEAR) for h in heatmaps])
