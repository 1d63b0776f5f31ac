"""Training sets: videos to learn from, each with an optional video-level label (and, for
weakly supervised scorers, the anomaly classes the video shows), given as frames or as
precomputed snippet features."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from streams.sources import Source
from vad.errors import VadError

NORMAL, ANOMALOUS = 0, 1


@dataclass(frozen=True)
class TrainingVideo:
    name: str
    open: Callable[[], Source] | None  # None: the video is given as features only
    label: int | None = None  # video level: NORMAL, ANOMALOUS, or None (unlabelled)
    classes: tuple[str, ...] = ()  # anomaly classes as the dataset names them ("Fighting")
    features: Callable[[], np.ndarray] | None = None  # precomputed (snippets, dim) embeddings

    def __post_init__(self) -> None:
        if self.label not in (None, NORMAL, ANOMALOUS):
            raise VadError(f"{self.name}: video label {self.label!r} is not 0, 1 or none")
        if self.open is None and self.features is None:
            raise VadError(f"{self.name}: a training video needs frames or features")

    def source(self) -> Source:
        if self.open is None:
            raise VadError(f"{self.name}: given as snippet features only, not as frames")
        return self.open()


@dataclass(frozen=True)
class TrainingSet:
    """What `Scorer.fit` learns from. One-class scorers learn from the normal (or unlabelled)
    videos; weakly supervised ones need every video labelled."""

    videos: tuple[TrainingVideo, ...]

    @classmethod
    def from_sources(cls, sources: Sequence[Source], label: int | None = None) -> TrainingSet:
        """Already opened sources (each is iterated afresh by `open`)."""
        return cls(tuple(TrainingVideo(s.camera_id, lambda s=s: s, label) for s in sources))

    def __len__(self) -> int:
        return len(self.videos)

    def normal_sources(self) -> list[Source]:
        """The sources a one-class scorer learns normality from."""
        normal = [video.source() for video in self.videos if video.label != ANOMALOUS]
        if not normal:
            raise VadError("the training set has no normal videos to learn from")
        return normal

    def labelled(self) -> list[TrainingVideo]:
        """Every video, which must all carry labels (weak supervision)."""
        missing = [video.name for video in self.videos if video.label is None]
        if missing:
            raise VadError(f"weakly supervised training needs a label for every video; "
                           f"unlabelled: {', '.join(missing[:5])}")
        return list(self.videos)

    def summary(self) -> dict[str, object]:
        """For checkpoint provenance: which videos, how many of each label."""
        return {"videos": [video.name for video in self.videos],
                "normal": sum(video.label == NORMAL for video in self.videos),
                "anomalous": sum(video.label == ANOMALOUS for video in self.videos),
                "unlabelled": sum(video.label is None for video in self.videos)}
