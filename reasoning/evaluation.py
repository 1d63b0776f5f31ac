"""Frame-level evaluation of reasoning on a benchmark's per-video descriptions.

Per video, AnomalyRuler's deduction stages, each one selectable so that the paper's
ablations can be reproduced:
1. deduction: a `Deducer` judges every frame (binary or continuous);
2. perception smoothing (`perception`): EMA, fixed threshold, majority vote -> decisions;
3. robust reasoning (`robust`, needs an LLM): frames decided normal are double-checked;
4. the score (`score`): EWM with span 10 of what the stages before it give, or nothing.
Nothing here reads the labels before the metrics.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reasoning.deduction import Deducer, Judgement
from reasoning.robust import RobustReasoner
from reasoning.smoothing import SCORES, PipelineConfig, ewm_span, perception_decisions
from vad.errors import VadError
from vad.metrics import frame_metrics, video_auc

@dataclass
class VideoResult:
    video: str
    frames: int
    anomalous: int
    auc: float | None  # None when the video has a single class
    judgements: list[Judgement]  # after robust reasoning, where it ran
    raw: np.ndarray  # the deducer's per-frame scores
    scores: np.ndarray  # the final per-frame scores


@dataclass
class EvalResult:
    videos: list[VideoResult]
    micro_auc: float
    macro_auc: float
    ap: float
    raw_micro_auc: float
    invalid: int
    llm_calls: int


def judge_video(lines: list[str], deducer: Deducer, config: PipelineConfig,
                robust: RobustReasoner | None = None
                ) -> tuple[list[Judgement], np.ndarray, np.ndarray]:
    """(judgements, raw scores, final scores) of one video's descriptions."""
    judgements = deducer.judge(lines, progress=True)
    raw = np.array([j.score for j in judgements], dtype=np.float64)
    values = raw
    if config.perception or config.robust:
        decisions = perception_decisions(raw, config.smoothing)
        values = decisions.astype(np.float64) if config.perception else raw
        if config.robust:
            if robust is None:
                raise VadError("robust reasoning needs an LLM (--llm)")
            # without perception smoothing the deducer's own verdicts are the initial result
            initial = decisions if config.perception else np.array(
                [j.verdict for j in judgements], dtype=np.int64)
            values, judgements = robust.recheck(lines, judgements, initial, deducer, True)
    if config.score == "ewm":
        values = ewm_span(values, config.smoothing.span)
    elif config.score != "none":
        raise VadError(f"unknown score {config.score!r}; expected one of {', '.join(SCORES)}")
    return judgements, raw, values


def evaluate(descriptions: dict[str, list[str]], labels: dict[str, np.ndarray],
             deducer: Deducer, config: PipelineConfig = PipelineConfig(),
             robust: RobustReasoner | None = None, limit: int | None = None,
             on_video: Callable[[VideoResult], None] | None = None) -> EvalResult:
    """Judge every labelled video (the first `limit` frames when given) and score with
    micro (all frames) and macro (per-video mean) AUC and AP. `descriptions` is keyed by
    video (`reasoning.descriptions.descriptions_for`)."""
    results = []
    for video in sorted(labels):
        lines, truth = descriptions[video], labels[video]
        if len(lines) != len(truth):
            raise VadError(f"video {video}: {len(lines)} descriptions for {len(truth)} labels")
        lines, truth = lines[:limit], truth[:limit]
        judgements, raw, scores = judge_video(lines, deducer, config, robust)
        result = VideoResult(video, len(truth), int(truth.sum()), video_auc(truth, scores),
                             judgements, raw, scores)
        results.append(result)
        if on_video:
            on_video(result)
    names = [r.video for r in results]
    truths = [labels[r.video][:limit] for r in results]
    smoothed = frame_metrics(names, truths, [r.scores for r in results])
    raw = frame_metrics(names, truths, [r.raw for r in results])
    return EvalResult(results, smoothed["micro_auc"],
                      smoothed["macro_auc"] if smoothed["macro_auc"] is not None else float("nan"),
                      smoothed["ap"], raw["micro_auc"],
                      sum(not j.valid for r in results for j in r.judgements),
                      robust.calls if robust is not None else 0)


def plot_result(result: EvalResult, labels: dict[str, np.ndarray], path: str | Path) -> Path:
    """Per-video raw and final scores over the ground truth."""
    from vad.plots import plot_video_scores

    videos = result.videos
    return plot_video_scores(
        [v.video for v in videos], [labels[v.video][:v.frames] for v in videos],
        {"raw": [v.raw for v in videos], "final": [v.scores for v in videos]},
        path, [f"{v.video}  AUC {'-' if v.auc is None else f'{v.auc:.3f}'}" for v in videos])
