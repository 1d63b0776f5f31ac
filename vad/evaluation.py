"""Frame-level (and pixel-level) evaluation of scorers on a benchmark, under two protocols.

- offline: each video's scores are min-max normalised and Gaussian-smoothed over the whole
  video, as papers report;
- online: causal, as a live deployment sees it: running normalisation against the scorer's
  calibration across the test videos in order (one camera), causal smoothing per video, and
  frames a scorer cannot score yet (its history) count as normal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from sklearn.metrics import roc_auc_score
from tqdm import tqdm

from models.scoring import score_source
from vad.config import PostprocessConfig
from vad.data.benchmarks import Benchmark, TestVideo
from vad.errors import VadError
from vad.fusion import OnlineFusion, ScorerSlot
from vad.metrics import frame_metrics
from vad.plots import plot_roc, plot_video_scores
from vad.postprocess import fuse, gaussian_smooth, minmax_normalize

HEATMAP_SIZE = (60, 90)  # pixel-level AUC resolution (h, w): a quarter of Ped2's 240x360


@dataclass
class VideoScores:
    name: str
    labels: np.ndarray
    raw: dict[str, np.ndarray]  # slot key -> raw score per frame (NaN where unscored)
    heatmaps: np.ndarray | None  # (frames, h, w) of the first scorer giving heatmaps


def score_benchmark(slots: list[ScorerSlot], videos: list[TestVideo], batch: int,
                    progress: bool = True) -> list[VideoScores]:
    results = []
    for video in tqdm(videos, desc="scoring test videos", unit="video", disable=not progress):
        raw, heatmaps = {}, None
        for slot in slots:
            result = score_source(slot.scorer, video.open(), batch=batch,
                                  heatmap_size=HEATMAP_SIZE if heatmaps is None else None)
            if len(result.indices) and result.indices.max() >= len(video.labels):
                raise VadError(f"{video.name}: more frames decoded than labelled "
                               f"({result.indices.max() + 1} > {len(video.labels)})")
            scores = np.full(len(video.labels), np.nan)
            scores[result.indices] = result.scores
            raw[slot.key] = scores
            if result.heatmaps is not None:
                heatmaps = np.zeros((len(video.labels), *HEATMAP_SIZE), np.float32)
                heatmaps[:] = np.nan
                heatmaps[result.indices] = result.heatmaps
        results.append(VideoScores(video.name, video.labels, raw, heatmaps))
    return results


def _backfill(scores: np.ndarray) -> np.ndarray:
    """Unscored leading frames take the first score (offline protocol only)."""
    valid = np.flatnonzero(~np.isnan(scores))
    if valid.size == 0:
        raise VadError("a scorer produced no score for a whole video (too few frames?)")
    filled = scores.copy()
    filled[: valid[0]] = scores[valid[0]]
    nan = np.isnan(filled)
    filled[nan] = np.interp(np.flatnonzero(nan), valid, scores[valid])
    return filled


def offline_scores(videos: list[VideoScores], weights: dict[str, float],
                   post: PostprocessConfig) -> list[np.ndarray]:
    return [gaussian_smooth(fuse({k: minmax_normalize(_backfill(s)) for k, s in v.raw.items()},
                                 weights), post.smoothing_sigma) for v in videos]


def online_scores(videos: list[VideoScores], slots: list[ScorerSlot],
                  post: PostprocessConfig) -> list[np.ndarray]:
    """The pipeline's own fusion over the test videos in order, as one camera whose smoothing
    restarts with each video; a frame no scorer could score yet counts as normal (0)."""
    fusion = OnlineFusion(slots, post)
    fused_videos = []
    for video in videos:
        fusion.restart_smoothing()
        fused = np.zeros(len(video.labels))
        for i in range(len(fused)):
            raw = {key: float(s[i]) for key, s in video.raw.items() if not np.isnan(s[i])}
            if raw:
                fused[i] = fusion(raw)
        fused_videos.append(fused)
    return fused_videos


def pixel_auc(videos: list[VideoScores], masks: dict[str, np.ndarray]) -> float | None:
    """Pixel-wise AUROC at HEATMAP_SIZE over every scored frame that has a mask."""
    heat, truth = [], []
    for video in videos:
        if video.heatmaps is None or video.name not in masks:
            continue
        scored = ~np.isnan(video.heatmaps[:, 0, 0])
        small = np.stack([cv2.resize(m.astype(np.float32), HEATMAP_SIZE[::-1],
                                     interpolation=cv2.INTER_AREA) >= 0.5
                          for m in masks[video.name][scored]])
        heat.append(video.heatmaps[scored].ravel())
        truth.append(small.ravel())
    if not heat:
        return None
    truth_all = np.concatenate(truth)
    if truth_all.all() or not truth_all.any():
        return None
    return float(roc_auc_score(truth_all, np.concatenate(heat)))


def evaluate(slots: list[ScorerSlot], benchmark: Benchmark, post: PostprocessConfig,
             out: Path, batch: int, progress: bool = True) -> dict[str, Any]:
    videos = score_benchmark(slots, benchmark.test, batch, progress)
    weights = {s.key: s.weight for s in slots}
    protocols = {"offline": offline_scores(videos, weights, post),
                 "online": online_scores(videos, slots, post)}
    has_heatmaps = any(v.heatmaps is not None for v in videos)
    masks = {t.name: t.load_masks() for t in benchmark.test
             if t.load_masks is not None and has_heatmaps}
    pix = pixel_auc(videos, masks)
    report: dict[str, Any] = {
        "dataset": str(benchmark.root),
        "scorers": [{"name": s.scorer.name, "weight": s.weight} for s in slots],
        "postprocess": post.model_dump(),
        "pixel_auc": pix,
        "heatmap_size": list(HEATMAP_SIZE),
    }
    for name, scores in protocols.items():
        report[name] = frame_metrics([v.name for v in videos], [v.labels for v in videos],
                                     scores)
    # The offline figures are the headline keys, as papers report them.
    report.update({k: report["offline"][k] for k in ("micro_auc", "macro_auc", "ap", "per_video")})
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    except OSError as exc:
        raise VadError(f"{out}: cannot write the report ({exc.strerror or exc})") from None
    plot_video_scores([v.name for v in videos], [v.labels for v in videos], protocols,
                      out / "scores.png")
    plot_roc(videos, protocols, report, out / "roc.png")
    return report
