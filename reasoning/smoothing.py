"""AnomalyRuler's perception smoothing of per-frame judgements of one video.

1. EMA of the per-frame anomaly judgements (alpha 0.33, bias-corrected like pandas'
   `ewm(adjust=True)`), so that a judgement needs support from its recent past;
2. decisions: the EMA above its own mean, by majority vote in a centred window
   (causal at the edges, as in the reference code);
3. the score: an EMA of the decisions whose alpha is that mean (the reference code's
   choice: videos with frequent anomalies react faster).
"""

from __future__ import annotations

import numpy as np

from vad.config.reasoning import SmoothingConfig


def ema(values: np.ndarray, alpha: float) -> np.ndarray:
    """Bias-corrected exponential moving average: sum_i (1-a)^i x_{t-i} / sum_i (1-a)^i."""
    out = np.empty(len(values), dtype=np.float64)
    numerator = denominator = 0.0
    for t, value in enumerate(np.asarray(values, dtype=np.float64)):
        numerator = numerator * (1 - alpha) + value
        denominator = denominator * (1 - alpha) + 1
        out[t] = numerator / denominator
    return out


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


def smooth_decisions(judgements: np.ndarray, config: SmoothingConfig = SmoothingConfig(),
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(decisions, scores) for one video's per-frame judgements (binary or continuous)."""
    judgements = np.asarray(judgements, dtype=np.float64)
    if judgements.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    trend = ema(judgements, config.alpha)
    threshold = float(trend.mean())
    decisions = majority_vote(trend > threshold, config.window | 1)
    return decisions, ema(decisions, max(threshold, 1e-7))


def smooth_scores(judgements: np.ndarray, config: SmoothingConfig = SmoothingConfig()
                  ) -> np.ndarray:
    """`paper`: the three steps above; `ema`: step 1 only (keeps a continuous score's
    ranking inside a video); `none`: unchanged."""
    mode = config.mode
    if mode == "paper":
        return smooth_decisions(judgements, config)[1]
    if mode == "ema":
        return ema(judgements, config.alpha)
    if mode == "none":
        return np.asarray(judgements, dtype=np.float64)
    raise ValueError(f"unknown smoothing {mode!r}")
