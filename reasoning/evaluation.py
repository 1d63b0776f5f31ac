"""Frame-level evaluation of reasoning on a benchmark's per-video descriptions."""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from reasoning.deduction import Deducer, Judgement
from reasoning.smoothing import SmoothingConfig, smooth_scores
from vad.errors import VadError


def read_labels(path: str | Path) -> dict[str, np.ndarray]:
    """`video,frame,label` rows (frame 0-based) -> per-video label arrays."""
    path = Path(path)
    rows: dict[str, dict[int, int]] = defaultdict(dict)
    try:
        with path.open(newline="") as handle:
            for row in csv.DictReader(handle):
                rows[row["video"]][int(row["frame"])] = int(row["label"])
    except OSError as exc:
        raise VadError(f"{path}: cannot read labels ({exc.strerror})") from None
    except (KeyError, ValueError, TypeError):
        raise VadError(f"{path}: expected a CSV with integer columns video,frame,label") from None
    labels = {}
    for video, frames in rows.items():
        if sorted(frames) != list(range(len(frames))):
            raise VadError(f"{path}: video {video} frames are not 0..{len(frames) - 1}")
        labels[video] = np.array([frames[i] for i in range(len(frames))], dtype=np.int64)
    return labels


def video_key(stem: str) -> str:
    """`test_01` -> `01`: the trailing id of a description file's name."""
    match = re.search(r"([A-Za-z0-9]+)$", stem)
    return match.group(1) if match else stem


def read_descriptions(directory: str | Path) -> dict[str, list[str]]:
    """One `.txt` per video, line i = the description of frame i."""
    directory = Path(directory)
    if not directory.is_dir():
        raise VadError(f"{directory}: not a directory of description files")
    videos = {}
    for path in sorted(directory.glob("*.txt")):
        if path.stem.lower().startswith("rule"):
            continue
        videos[video_key(path.stem)] = path.read_text().splitlines()
    if not videos:
        raise VadError(f"{directory}: no description files (*.txt, one line per frame)")
    return videos


def write_descriptions(directory: str | Path, video: str, lines: Sequence[str],
                       prefix: str = "test") -> Path:
    path = Path(directory) / f"{prefix}_{video}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line.replace("\n", " ") + "\n" for line in lines))
    return path


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
             deducer: Deducer, smoothing: str = "paper",
             config: SmoothingConfig = SmoothingConfig(), limit: int | None = None,
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
        scores = smooth_scores(raw, smoothing, config)
        auc = roc_auc_score(truth, scores) if 0 < truth.sum() < len(truth) else None
        result = VideoResult(video, len(truth), int(truth.sum()), auc, judgements, scores)
        results.append(result)
        if on_video:
            on_video(result)
    truth = np.concatenate([labels[r.video][:limit] for r in results])
    scores = np.concatenate([r.scores for r in results])
    raw = np.concatenate([[j.score for j in r.judgements] for r in results])
    if not 0 < truth.sum() < len(truth):
        raise VadError("the labels need both normal and anomalous frames for an AUC")
    per_video = [r.auc for r in results if r.auc is not None]
    return EvalResult(results, float(roc_auc_score(truth, scores)),
                      float(np.mean(per_video)) if per_video else float("nan"),
                      float(average_precision_score(truth, scores)),
                      float(roc_auc_score(truth, raw)),
                      sum(not j.valid for r in results for j in r.judgements))
