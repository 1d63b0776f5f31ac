"""Frame-level evaluation of reasoning on a benchmark's per-video descriptions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reasoning.deduction import Deducer, Judgement
from reasoning.smoothing import smooth_scores
from vad.config.reasoning import SmoothingConfig
from vad.errors import VadError
from vad.metrics import frame_metrics, video_auc


@dataclass
class VideoResult:
    video: str
    frames: int
    anomalous: int
    auc: float | None  # None when the video has a single class
    judgements: list[Judgement]
    scores: np.ndarray


@dataclass
class EvalResult:
    videos: list[VideoResult]
    micro_auc: float
    macro_auc: float
    ap: float
    raw_micro_auc: float
    invalid: int


def evaluate(descriptions: dict[str, list[str]], labels: dict[str, np.ndarray],
             deducer: Deducer, smoothing: SmoothingConfig = SmoothingConfig(),
             limit: int | None = None,
             on_video: Callable[[VideoResult], None] | None = None) -> EvalResult:
    """Judge every labelled video (the first `limit` frames when given), smooth per video,
    and score with micro (all frames) and macro (per-video mean) AUC and AP."""
    missing = sorted(set(labels) - set(descriptions))
    if missing:
        raise VadError(f"no descriptions for labelled videos {', '.join(missing)}")
    results = []
    for video in sorted(labels):
        lines, truth = descriptions[video], labels[video]
        if len(lines) != len(truth):
            raise VadError(f"video {video}: {len(lines)} descriptions for {len(truth)} labels")
        lines, truth = lines[:limit], truth[:limit]
        judgements = deducer.judge(lines, progress=True)
        raw = np.array([j.score for j in judgements])
        scores = smooth_scores(raw, smoothing)
        auc = video_auc(truth, scores)
        result = VideoResult(video, len(truth), int(truth.sum()), auc, judgements, scores)
        results.append(result)
        if on_video:
            on_video(result)
    names = [r.video for r in results]
    truths = [labels[r.video][:limit] for r in results]
    smoothed = frame_metrics(names, truths, [r.scores for r in results])
    raw = frame_metrics(names, truths, [np.array([j.score for j in r.judgements])
                                        for r in results])
    return EvalResult(results, smoothed["micro_auc"],
                      smoothed["macro_auc"] if smoothed["macro_auc"] is not None else float("nan"),
                      smoothed["ap"], raw["micro_auc"],
                      sum(not j.valid for r in results for j in r.judgements))


def plot_result(result: EvalResult, labels: dict[str, np.ndarray], path: str | Path) -> Path:
    """Per-video raw and smoothed scores over the ground truth."""
    from vad.plots import plot_video_scores

    videos = result.videos
    return plot_video_scores(
        [v.video for v in videos], [labels[v.video][:v.frames] for v in videos],
        {"raw": [np.array([j.score for j in v.judgements]) for v in videos],
         "smoothed": [v.scores for v in videos]},
        path, [f"{v.video}  AUC {'-' if v.auc is None else f'{v.auc:.3f}'}" for v in videos])
