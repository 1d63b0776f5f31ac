"""Online fusion, the one implementation shared by the live pipeline and `vad eval`'s online
protocol: each scorer's raw score is z-normalised by its running normaliser, the scorers that
scored a frame are averaged by weight, and the result is smoothed causally."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from models.base import Scorer
from vad.config import PostprocessConfig
from vad.postprocess import CausalSmoother, RunningNormalizer


@dataclass(frozen=True)
class ScorerSlot:
    """A loaded scorer in a pipeline, under a key unique in it, with its fusion weight."""

    key: str
    scorer: Scorer
    weight: float


class OnlineFusion:
    """One camera's normalise -> fuse -> smooth. Frames are fed in order, each with the raw
    scores of the scorers that could score it (a scorer still gathering its history context
    gives none: the others' weights then share the frame)."""

    def __init__(self, slots: Sequence[ScorerSlot], post: PostprocessConfig):
        self.weights = {slot.key: slot.weight for slot in slots}
        self.normalizers = {slot.key: RunningNormalizer(slot.scorer.calibration,
                                                        post.calibration_weight,
                                                        post.adapt_below) for slot in slots}
        self.sigma = post.online_smoothing_sigma
        self.smoother = CausalSmoother(self.sigma)

    @property
    def history(self) -> int:
        """Past frames that shape the smoothed score of a frame."""
        return len(self.smoother.kernel)

    def __call__(self, raw: Mapping[str, float]) -> float:
        if not raw:
            raise ValueError("a fused frame needs at least one scorer's score")
        z = {key: self.normalizers[key](score) for key, score in raw.items()}
        total = sum(self.weights[key] for key in z)
        return self.smoother(sum(self.weights[key] * value for key, value in z.items()) / total)

    def state(self) -> dict:
        return {"normalizers": {key: n.state() for key, n in self.normalizers.items()},
                "smoother": self.smoother.state()}

    def restore(self, state: dict) -> None:
        for key, normalizer in self.normalizers.items():
            normalizer.restore(state["normalizers"][key])
        self.smoother.restore(state["smoother"])

    def restart_smoothing(self) -> None:
        """A new video of the same camera: keep the normalisers, forget the recent scores."""
        self.smoother = CausalSmoother(self.sigma)
