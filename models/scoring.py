"""Running a scorer over frames: per-camera scoring sessions, and whole sources at once.

A `ScoringSession` keeps one camera's state for one scorer across calls: the clip window of
preprocessed frames and whatever the scorer caches between clips (a frame-prediction model
keeps its context frames' encodings, so each frame is encoded once). Every path (live
pipeline, evaluation, fitting, benchmarks) scores through sessions.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from streams.sources import Source
from streams.windows import ClipWindower
from vad.config.sections import WindowConfig
from vad.types import Clip, Frame, ScoreResult

DEFAULT_BATCH = WindowConfig.model_fields["batch"].default


class ScoringSession:
    """One camera, one scorer. `push` frames in order; a result comes back each time `batch`
    new frames can be scored; `flush` scores the rest at the end of the stream."""

    def __init__(self, scorer: Any, camera_id: str, batch: int):
        spec = scorer.input_spec
        self.scorer = scorer
        self.camera_id = camera_id
        self.windower = ClipWindower(spec.context, batch, spec.size, spec.grayscale)

    def push(self, frame: Frame) -> ScoreResult | None:
        clip = self.windower.push(frame)
        return None if clip is None else self.score(clip)

    def flush(self) -> ScoreResult | None:
        clip = self.windower.flush()
        return None if clip is None else self.score(clip)

    def score(self, clip: Clip) -> ScoreResult:
        """Scores of the clip's targets; scorers with state to keep between clips override."""
        return self.scorer.score(clip)

    def state(self) -> dict:
        """What the session holds, for `vad.snapshots`; sessions with more state extend it."""
        return {"window": self.windower.state()}

    def restore(self, state: dict) -> None:
        self.windower.restore(state["window"])


def iter_clips(scorer: Any, frames: Iterable[Frame], batch: int = DEFAULT_BATCH,
               ) -> Iterator[Clip]:
    """The clips a scorer needs from a frame stream, the last one possibly shorter."""
    spec = scorer.input_spec
    windower = ClipWindower(spec.context, batch, spec.size, spec.grayscale)
    for frame in frames:
        clip = windower.push(frame)
        if clip is not None:
            yield clip
    clip = windower.flush()
    if clip is not None:
        yield clip


def iter_scores(session: ScoringSession, frames: Iterable[Frame]) -> Iterator[ScoreResult]:
    """Score a frame stream through a session as frames arrive, then flush."""
    for frame in frames:
        result = session.push(frame)
        if result is not None:
            yield result
    result = session.flush()
    if result is not None:
        yield result


def progress_frames(source: Source, desc: str, progress: bool) -> Iterable[Frame]:
    return tqdm(source, total=len(source) or None, desc=desc, unit="frame",
                disable=not progress, leave=False)


def score_source(scorer: Any, source: Source, batch: int = DEFAULT_BATCH,
                 progress: bool = False,
                 heatmap_size: tuple[int, int] | None = None) -> ScoreResult:
    """All scores of one source; heatmaps resized to `heatmap_size` (h, w) when asked for."""
    frames = progress_frames(source, f"{scorer.name} {source.camera_id}", progress)
    results = list(iter_scores(scorer.session(source.camera_id, batch), frames))
    if not results:
        return ScoreResult(source.camera_id, np.zeros(0, np.int64), np.zeros(0))
    heatmaps = None
    if heatmap_size is not None and all(r.heatmaps is not None for r in results):
        heatmaps = np.concatenate([resize_heatmaps(r.heatmaps, heatmap_size) for r in results])
    boxes = (sum((r.boxes for r in results), ())
             if all(r.boxes is not None for r in results) else None)
    labels = (sum((r.labels for r in results), ())
              if all(r.labels is not None for r in results) else None)
    references = (sum((r.references for r in results), ())
                  if all(r.references is not None for r in results) else None)
    return ScoreResult(source.camera_id, np.concatenate([r.indices for r in results]),
                       np.concatenate([r.scores for r in results]).astype(np.float64),
                       heatmaps, boxes, labels, references)


def resize_heatmaps(heatmaps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.stack([cv2.resize(h.astype(np.float32), (size[1], size[0]),
                                interpolation=cv2.INTER_LINEAR) for h in heatmaps])
