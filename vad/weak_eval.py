"""Evaluation of a snippet scorer (`vadclip`) on a video list in VadCLIP's test protocols.

Each listed video (snippet features `.npy`, or a video the scorer embeds) is scored offline
as upstream's `*_test.py` does (chunks of `visual_length` snippets, each snippet's score
repeated over its 16 frames) and causally (each snippet with only the snippets before it, as
the online scorer sees it). Reported for both branches:

* frame AUC over all videos (UCF-Crime's headline), AUC over the anomalous videos' frames
  only (UCF-Crime's AUC_abn), frame AP (XD-Violence's headline);
* fine-grained detection mAP at IoU 0.1..0.5 from the A-branch class probabilities
  (upstream's `*_detectionMAP.py`): per class and video, the frames above
  max - 0.6 (max - min) form proposals of 2 frames or more, scored by their maximum plus
  0.7 x the mean of the class's top 1/16 frames, non-maximum suppressed at IoU 0.6; across
  videos they are matched greedily to the class's ground-truth segments.

Ground truth comes from a frame-label CSV (`video,frame,label`), VadCLIP's annotation text
files (`vad.data.video_lists.read_annotations`) or upstream's concatenated frame array
(`gt_ucf.npy`, one value per frame of each listed video's snippets x 16). Two deliberate
differences from upstream's mAP code: a class without ground truth is left out of the
average instead of counting as 0 (upstream's UCF ground truth names normal videos 'A', which
is no UCF class, so its Normal AP is always 0), and a class without proposals has AP 0
instead of zeroing the whole average.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from models.vadclip.encoders import source_features
from models.vadclip.scorer import SnippetScores, VadCLIPScorer
from streams.sources import open_source
from vad.data.benchmarks import read_frame_labels
from vad.data.video_lists import ListedVideo, read_annotations, read_video_list
from vad.errors import VadError
from vad.metrics import frame_metrics
from vad.plots import plot_video_scores

IOU_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5)
BRANCHES = ("c-branch", "a-branch")


@dataclass
class VideoTruth:
    labels: np.ndarray  # (frames,) 0/1
    segments: list[tuple[int, int, int]]  # start, end (excluded), class index


@dataclass
class ScoredVideo:
    video: ListedVideo
    frames: int  # frames the scores cover: the video's, or snippets x snippet length
    offline: SnippetScores
    causal: SnippetScores


def score_list(scorer: VadCLIPScorer, videos: list[ListedVideo],
               progress: bool = True) -> list[ScoredVideo]:
    scored = []
    for video in tqdm(videos, desc="scoring", unit="video", disable=not progress):
        if video.is_features:
            features = video.load_features()
            frames = len(features) * scorer.config.snippet
        else:
            features, frames = source_features(scorer.frame_encoder(), open_source(video.path),
                                               scorer.config)
        if features.shape[1] != scorer.config.feature_dim:
            raise VadError(f"{video.path}: {features.shape[1]}-d features, the scorer reads "
                           f"{scorer.config.feature_dim}-d")
        scored.append(ScoredVideo(video, frames, scorer.score_features(features),
                                  scorer.causal_scores(features)))
    return scored


def frame_values(values: np.ndarray, snippet: int, frames: int) -> np.ndarray:
    """Per-snippet values repeated over each snippet's frames, cut to the video's frames."""
    return np.repeat(values, snippet, axis=0)[:frames]


def ground_truth(scored: list[ScoredVideo], class_keys: list[str], *, labels: Path | None = None,
                 annotations: Path | None = None, gt: Path | None = None) -> list[VideoTruth]:
    """Frame labels and class segments of each scored video, from exactly one source."""
    if sum(x is not None for x in (labels, annotations, gt)) != 1:
        raise VadError("evaluating a list needs one ground truth: --labels, --annotations or --gt")
    if labels is not None:
        per_video = read_frame_labels(labels)
        frames = []
        for s in scored:
            if s.video.name not in per_video:
                raise VadError(f"{labels}: no labels for video {s.video.name}")
            frames.append(per_video[s.video.name])
        return [_truth(s.video, f, _runs(f, s.video, class_keys), class_keys)
                for s, f in zip(scored, frames)]
    if gt is not None:
        return _from_frame_array(scored, gt, class_keys)
    found = read_annotations(annotations)
    truths = []
    for s in scored:
        segments = found.get(s.video.name, [])
        if s.video.anomalous and not segments:
            raise VadError(f"{annotations}: no segments for anomalous video {s.video.name}")
        flags = np.zeros(s.frames, np.int64)
        for start, end, _ in segments:
            flags[max(start, 0):end] = 1
        classed = [(a, b, _class_index(label, s.video, class_keys)) for a, b, label in segments]
        truths.append(_truth(s.video, flags, classed, class_keys))
    return truths


def _truth(video: ListedVideo, labels: np.ndarray, segments: list[tuple[int, int, int | None]],
           class_keys: list[str]) -> VideoTruth:
    if not video.anomalous:  # as upstream: a normal video is one normal segment
        segments = [(0, len(labels), 0)]
    return VideoTruth(labels, [seg for seg in segments if seg[2] is not None])


def _class_index(label: str | None, video: ListedVideo, class_keys: list[str]) -> int | None:
    """A segment's class column; unlabelled segments take the video's class when it has one."""
    if label is None:
        label = video.classes[0] if len(video.classes) == 1 else None
        if label is None and len(class_keys) == 2:
            return 1
    return class_keys.index(label) if label in class_keys else None


def _runs(labels: np.ndarray, video: ListedVideo, class_keys: list[str]):
    padded = np.concatenate([[0], labels, [0]])
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b), _class_index(None, video, class_keys))
            for a, b in zip(edges[::2], edges[1::2])]


def _from_frame_array(scored: list[ScoredVideo], path: Path,
                      class_keys: list[str]) -> list[VideoTruth]:
    try:
        flat = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise VadError(f"{path}: not a numeric .npy array ({exc})") from None
    if flat.ndim != 1 or len(flat) != sum(s.frames for s in scored):
        raise VadError(f"{path}: {flat.shape} frame labels for {sum(s.frames for s in scored)} "
                       "frames (snippets x 16) of the listed videos")
    bounds = np.cumsum([0] + [s.frames for s in scored])
    truths = []
    for s, a, b in zip(scored, bounds, bounds[1:]):
        labels = (flat[a:b] > 0.5).astype(np.int64)
        truths.append(_truth(s.video, labels, _runs(labels, s.video, class_keys), class_keys))
    return truths


# --- fine-grained detection mAP (upstream's getLocMAP) --------------------------------------

def _nms(proposals: np.ndarray, threshold: float = 0.6) -> np.ndarray:
    """Indices kept of (start, end) proposals sorted by score, suppressing IoU > threshold."""
    keep, order = [], np.arange(len(proposals))
    starts, ends = proposals[:, 0], proposals[:, 1]
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        inter = np.maximum(0.0, np.minimum(ends[best], ends[rest])
                           - np.maximum(starts[best], starts[rest]))
        union = (ends[best] - starts[best]) + (ends[rest] - starts[rest]) - inter
        order = rest[inter / union <= threshold]
    return np.array(keep, np.int64)


def _proposals(values: np.ndarray, class_score: float) -> np.ndarray:
    """(start, end, score) rows for one class of one video."""
    threshold = values.max() - (values.max() - values.min()) * 0.6
    above = np.concatenate([[0], (values > threshold).astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(above))
    rows = [(a, b, values[a:b].max() + 0.7 * class_score)
            for a, b in zip(edges[::2], edges[1::2]) if b - a >= 2]
    if not rows:
        return np.zeros((0, 3))
    rows = np.array(rows, np.float64)
    rows = rows[np.argsort(-rows[:, 2], kind="stable")]
    return rows[_nms(rows[:, :2])]


def _interval_iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(0.0, a[1] - a[0]) + max(0.0, b[1] - b[0]) - inter
    return inter / union if union > 0 else 0.0


def _class_ap(predictions: list[np.ndarray], truths: list[VideoTruth], c: int,
              class_scores: list[np.ndarray], iou: float) -> float | None:
    gt = [(v, float(s), float(e)) for v, t in enumerate(truths) for s, e, k in t.segments
          if k == c]
    if not gt:
        return None
    found = [(v, *row) for v, p in enumerate(predictions)
             for row in _proposals(p[:, c], class_scores[v][c])]
    found.sort(key=lambda row: -row[3])
    positives, tp = len(gt), []
    for v, start, end, _ in found:
        ious = [(_interval_iou((start, end), (gs, ge)), j) for j, (gv, gs, ge) in enumerate(gt)
                if gv == v]
        best = max((pair for pair in ious if pair[0] >= iou), key=lambda p: p[0], default=None)
        if best is not None:
            del gt[best[1]]  # each ground-truth segment is matched once
        tp.append(best is not None)
    hits = np.array(tp, np.float64)
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precision * hits).sum() / positives)


def detection_map(predictions: list[np.ndarray], truths: list[VideoTruth],
                  ious: tuple[float, ...] = IOU_THRESHOLDS) -> dict[str, Any]:
    """mAP (%) per IoU threshold over the classes with ground truth; predictions are
    (frames, C) class probabilities per video."""
    classes = predictions[0].shape[1]
    # A video's class score: the mean of each class's top 1/16 frame values.
    class_scores = [np.sort(p, axis=0)[::-1][:max(1, len(p) // 16)].mean(0) for p in predictions]
    per_class = [[_class_ap(predictions, truths, c, class_scores, iou) for iou in ious]
                 for c in range(classes)]
    maps = [100 * float(np.mean([aps[i] for aps in per_class if aps[i] is not None]))
            if any(aps[i] is not None for aps in per_class) else None for i in range(len(ious))]
    return {"iou": list(ious), "map": maps,
            "average": None if None in maps else float(np.mean(maps)),
            "per_class": [[None if ap is None else 100 * ap for ap in aps] for aps in per_class]}


# --- the report -----------------------------------------------------------------------------

def _branch_metrics(names, truths: list[VideoTruth], scores: list[np.ndarray]) -> dict[str, Any]:
    metrics = frame_metrics(names, [t.labels for t in truths], scores)
    abnormal = [i for i, t in enumerate(truths) if t.labels.any()]
    subset = frame_metrics([names[i] for i in abnormal], [truths[i].labels for i in abnormal],
                           [scores[i] for i in abnormal])
    return {"auc": metrics["micro_auc"], "auc_anomalous": subset["micro_auc"], "ap": metrics["ap"],
            "macro_auc": metrics["macro_auc"], "per_video": metrics["per_video"]}


def evaluate_list(scorer: VadCLIPScorer, list_path: Path, out: Path, *, labels: Path | None = None,
                  annotations: Path | None = None, gt: Path | None = None,
                  progress: bool = True) -> dict[str, Any]:
    videos = read_video_list(list_path)
    scored = score_list(scorer, videos, progress)
    keys = list(scorer.config.classes)
    truths = ground_truth(scored, keys, labels=labels, annotations=annotations, gt=gt)
    for s, t in zip(scored, truths):
        if len(t.labels) > len(s.offline.binary) * scorer.config.snippet:
            raise VadError(f"{s.video.name}: {len(t.labels)} labelled frames, the features cover "
                           f"{len(s.offline.binary) * scorer.config.snippet}")
    names = [s.video.name for s in scored]
    snippet = scorer.config.snippet
    branches = BRANCHES if scorer.text_branch else BRANCHES[:1]
    curves = {(protocol, branch): [frame_values(getattr(s, protocol).anomaly(branch), snippet,
                                                len(t.labels)) for s, t in zip(scored, truths)]
              for protocol in ("offline", "causal") for branch in branches}
    report: dict[str, Any] = {
        "list": str(list_path), "videos": len(scored),
        "frames": int(sum(len(t.labels) for t in truths)),
        "snippet": snippet, "score": scorer.config.score, "encoder": scorer.config.encoder,
        "protocols": {protocol: {branch: _branch_metrics(names, truths, curves[protocol, branch])
                                 for branch in branches} for protocol in ("offline", "causal")}}
    headline = report["protocols"]["offline"][scorer.config.score]
    report.update({k: headline[k] for k in ("auc", "auc_anomalous", "ap")})
    if scorer.text_branch and any(t.segments for t in truths):
        report["fine_grained"] = detection_map(
            [frame_values(s.offline.classes, snippet, len(t.labels))
             for s, t in zip(scored, truths)], truths)
        report["fine_grained"]["classes"] = scorer.config.class_names
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    except OSError as exc:
        raise VadError(f"{out}: cannot write the report ({exc.strerror or exc})") from None
    plot_video_scores(names, [t.labels for t in truths],
                      {f"{p} {b}": c for (p, b), c in curves.items() if b == scorer.config.score},
                      out / "scores.png")
    return report
