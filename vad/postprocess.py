"""Score post-processing: normalisation, temporal smoothing and fusion.

Offline functions see a whole video (evaluation as in papers); the stateful classes are causal:
a frame's output depends on past frames only (the live path and the online protocol).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping

import numpy as np
from scipy.ndimage import gaussian_filter1d

from vad.types import Calibration


def minmax_normalize(scores: np.ndarray) -> np.ndarray:
    """Per-video min-max to [0, 1]; a constant video maps to zeros."""
    scores = np.asarray(scores, dtype=np.float64)
    span = scores.max() - scores.min() if scores.size else 0.0
    return (scores - scores.min()) / span if span > 0 else np.zeros_like(scores)


def gaussian_smooth(scores: np.ndarray, sigma: float) -> np.ndarray:
    """Symmetric Gaussian smoothing over the whole video (not causal)."""
    scores = np.asarray(scores, dtype=np.float64)
    return gaussian_filter1d(scores, sigma, mode="nearest") if sigma > 0 and scores.size else scores


def fuse(scores: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> np.ndarray:
    """Weighted mean of several scorers' normalised scores (same frames, same order)."""
    total = sum(weights[name] for name in scores)
    return sum(weights[name] * np.asarray(s, np.float64) for name, s in scores.items()) / total


class RunningNormalizer:
    """Causal z-score against normal-footage statistics that keep adapting to drift.

    Starts from the scorer's calibration (counted as `prior_weight` frames) and updates its
    running mean/variance (Welford) only with frames that look normal (z < `adapt_below`),
    so a long anomaly does not teach the normaliser that it is normal.
    """

    def __init__(self, calibration: Calibration, prior_weight: int, adapt_below: float):
        self.count = float(max(prior_weight, 1))
        self.mean = calibration.mean
        self._m2 = (calibration.std ** 2) * self.count
        self.adapt_below = adapt_below

    @property
    def std(self) -> float:
        return max(float(np.sqrt(self._m2 / self.count)), 1e-6)

    def __call__(self, score: float) -> float:
        z = (score - self.mean) / self.std
        if z < self.adapt_below:
            self.count += 1
            delta = score - self.mean
            self.mean += delta / self.count
            self._m2 += delta * (score - self.mean)
        return z

    def state(self) -> dict:
        return {"count": self.count, "mean": self.mean, "m2": self._m2}

    def restore(self, state: dict) -> None:
        self.count, self.mean, self._m2 = state["count"], state["mean"], state["m2"]


class CausalSmoother:
    """Half-Gaussian weighted mean of the current and past `3 * sigma` frames."""

    def __init__(self, sigma: float):
        radius = int(np.ceil(3 * sigma)) if sigma > 0 else 0
        self.kernel = np.exp(-0.5 * (np.arange(radius + 1) / max(sigma, 1e-9)) ** 2)
        self._past: deque[float] = deque(maxlen=radius + 1)

    def __call__(self, score: float) -> float:
        self._past.appendleft(score)
        weights = self.kernel[: len(self._past)]
        return float(np.dot(weights, np.fromiter(self._past, float)) / weights.sum())

    def state(self) -> dict:
        return {"past": list(self._past)}

    def restore(self, state: dict) -> None:
        self._past = deque(state["past"], maxlen=self._past.maxlen)
