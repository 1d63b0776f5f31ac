"""Localisation along the reference route: which reference frame a query frame shows.

An online max-product filter over the reference frames: a frame's belief is the best belief
of the frames it could have come from (the patrol advances up to `max_step` frames and steps
back up to `max_back`; relocalising anywhere costs `jump_cost`), plus the descriptor
similarity (and, when given, the agreement of the query's own pose). A frame whose best
reference is not similar enough is reported lost rather than matched to a guess. A position
reached by a jump (more than one frame's move: `max_back` back, or ahead the tracker's
`max_step` plus the geometric correction the scorer trusts, `max_step` again; the first
localisation too) is trusted only once `confirm_frames` matches in a row continue from it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.patrol.index import ReferenceIndex
from vad.config.scorers import PatrolParams


@dataclass(frozen=True)
class Match:
    frame: int  # -1 when lost
    similarity: float

    @property
    def lost(self) -> bool:
        return self.frame < 0


class RouteMatcher:
    """One camera's position along the route, frame after frame."""

    def __init__(self, index: ReferenceIndex, params: PatrolParams):
        self.index, self.params = index, params
        self.belief: np.ndarray | None = None  # log belief per reference frame
        self._similarity = np.zeros(len(index), np.float32)  # of the last frame
        self.previous: int | None = None  # the last settled-on match
        self.streak = 0  # frames in a row continuing from one another up to `previous`

    def match(self, descriptor: np.ndarray, pose: np.ndarray | None = None) -> Match:
        p = self.params
        similarity = self._similarity = self.index.descriptors @ descriptor
        evidence = p.similarity_weight * similarity
        if pose is not None and self.index.poses is not None:
            distance = np.linalg.norm(self.index.poses[:, :2] - pose[:2], axis=1)
            evidence = evidence - 0.5 * (distance / p.pose_sigma) ** 2
        if self.belief is None:
            belief = evidence
        else:
            reach = _reachable(self.belief, p.max_back, p.max_step)
            belief = np.maximum(reach, self.belief.max() - p.jump_cost) + evidence
        self.belief = belief - belief.max()
        best = int(np.argmax(self.belief))
        if similarity[best] < p.min_similarity:
            return Match(-1, float(similarity[best]))
        return Match(best, float(similarity[best]))

    def similarity(self, frame: int) -> float:
        """The last query frame's descriptor similarity to a reference frame."""
        return float(self._similarity[frame])

    def reject(self, frame: int) -> Match | None:
        """The matched frame would not align: lower the belief around it and return the next
        best match, or None when none is similar enough."""
        if self.belief is None:
            return None
        reach = self.params.max_step + self.params.max_back
        self.belief[max(0, frame - reach):frame + reach + 1] -= self.params.jump_cost
        self.belief -= self.belief.max()
        best = int(np.argmax(self.belief))
        if best == frame or self._similarity[best] < self.params.min_similarity:
            return None
        return Match(best, float(self._similarity[best]))

    def relocate(self, frame: int) -> None:
        """Geometry found the frame to be `frame`: make it the belief's peak."""
        if self.belief is not None:
            self.belief[frame] = self.belief.max() + 1.0
            self.belief -= self.belief.max()


    def settle(self, frame: int) -> bool:
        """The query frame's final match is `frame`: whether the position is confirmed, i.e.
        the last `confirm_frames` matches each continue from the one before."""
        p = self.params
        continues = (self.previous is not None
                     and -p.max_back <= frame - self.previous <= 2 * p.max_step)
        self.streak = self.streak + 1 if continues else 1
        self.previous = frame
        return self.streak >= p.confirm_frames

    def state(self) -> dict:
        belief = None if self.belief is None else self.belief.copy()  # updated in place
        return {"belief": belief, "similarity": self._similarity.copy(),
                "previous": self.previous, "streak": self.streak}

    def restore(self, state: dict) -> None:
        belief = state["belief"]
        self.belief = None if belief is None else np.array(belief)
        self._similarity = np.array(state["similarity"])
        self.previous, self.streak = state["previous"], state["streak"]


def _reachable(belief: np.ndarray, back: int, forward: int) -> np.ndarray:
    """Per frame i, the best belief of the frames i - d, -back <= d <= forward."""
    reach, n = np.full_like(belief, -np.inf), len(belief)
    for d in range(-back, forward + 1):
        if d >= 0:
            reach[d:] = np.maximum(reach[d:], belief[:n - d])
        else:
            reach[:n + d] = np.maximum(reach[:n + d], belief[-d:])
    return reach
