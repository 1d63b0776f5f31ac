"""AnomalyRuler's temporal stages for one video's per-frame judgements.

Perception smoothing (paper §3.3, reference code `majority_smooth.py`):
1. EMA of the per-frame judgements (alpha 0.33, bias-corrected like pandas'
   `ewm(adjust=True)`), so that a judgement needs support from its recent past;
2. decisions: the EMA above a threshold, by majority vote in a centred window (5 frames in
   the paper's text, 1 in the reference code that produced its figures: the default),
   causal at the video's edges.
   The threshold is fixed (0.5: most of the recent, weighted evidence says anomaly). The
   reference code's threshold, the mean of the video's own EMA, makes every video that is
   anomalous (or normal) throughout come out half anomalous; it is kept as
   `threshold=None` only to reproduce that code.

Score (paper, deduction): an EWM with span 10 (alpha 2/11) of the per-frame decisions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class SmoothingConfig:
    alpha: float = 0.33  # EMA of the per-frame judgements (perception smoothing)
    window: int = 1  # majority-vote window (reference code 1, which gave the paper figures; text 5)
    threshold: float | None = 0.5  # EMA above this is an anomaly; None = the video's mean
    span: int = 10  # EWM span of the final score


def ema(values: np.ndarray, alpha: float) -> np.ndarray:
    """Bias-corrected exponential moving average: sum_i (1-a)^i x_{t-i} / sum_i (1-a)^i."""
    out = np.empty(len(values), dtype=np.float64)
    numerator = denominator = 0.0
    for t, value in enumerate(np.asarray(values, dtype=np.float64)):
        numerator = numerator * (1 - alpha) + value
        denominator = denominator * (1 - alpha) + 1
        out[t] = numerator / denominator
    return out


def ewm_span(values: np.ndarray, span: int) -> np.ndarray:
    """pandas' `ewm(span=span).mean()`: alpha = 2 / (span + 1)."""
    return ema(values, 2.0 / (span + 1))


def majority_vote(above: np.ndarray, window: int) -> np.ndarray:
    """1 where most of the window is 1: centred inside, only the past `window//2` at the edges."""
    half = window // 2
    n = len(above)
    padded = np.pad(above.astype(np.int64), half, mode="edge")
    out = np.zeros(n, dtype=np.int64)
    for i in range(n):
        if i < half or i >= n - half:
            votes = padded[max(0, i - half):i + 1]
        else:
            votes = padded[i:i + 2 * half + 1]
        out[i] = int(votes.sum() * 2 > len(votes))
    return out


def perception_decisions(judgements: np.ndarray,
                         config: SmoothingConfig = SmoothingConfig()) -> np.ndarray:
    """0/1 per frame from one video's judgements (binary or continuous in [0, 1])."""
    judgements = np.asarray(judgements, dtype=np.float64)
    if judgements.size == 0:
        return np.zeros(0, dtype=np.int64)
    trend = ema(judgements, config.alpha)
    threshold = float(trend.mean()) if config.threshold is None else config.threshold
    return majority_vote(trend > threshold, config.window | 1)


SCORES = ("ewm", "none")


@dataclass(frozen=True)
class PipelineConfig:
    """Which of AnomalyRuler's deduction stages run (`reasoning.evaluation.judge_video`);
    the defaults are the LLM-free path."""

    perception: bool = True  # perception smoothing of the deducer's judgements
    robust: bool = False  # LLM double-check of the frames decided normal
    score: str = "ewm"  # "ewm": EWM (span `smoothing.span`) of the per-frame values; "none"
    smoothing: SmoothingConfig = field(default_factory=SmoothingConfig)
