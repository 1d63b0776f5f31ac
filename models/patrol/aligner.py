"""Geometric alignment of a matched reference frame to a query frame: ORB keypoint matches and
a RANSAC homography, refined by ECC (enhanced correlation coefficient, invariant to brightness
gain and offset) on a reduced pair. A pair that will not align is reported, not compared."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from vad.config.scorers import PatrolParams


@dataclass(frozen=True)
class Alignment:
    """`homography` maps query pixels to reference pixels (None when not aligned)."""

    homography: np.ndarray | None
    inliers: int
    correlation: float
    reason: str = ""

    @property
    def aligned(self) -> bool:
        return self.homography is not None


class Aligner:
    def __init__(self, params: PatrolParams):
        self.params = params
        self.matcher = cv2.BFMatcher(cv2.NORM_HAMMING)

    def coarse(self, query: tuple[np.ndarray, np.ndarray],
               reference: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray | None, int]:
        """Keypoint transform (query -> reference) and its RANSAC inliers: a homography when
        many keypoints agree, a similarity (rotation, scale, shift) when few do; None when too
        few agree."""
        (q_xy, q_desc), (r_xy, r_desc) = query, reference
        if len(q_desc) < 2 or len(r_desc) < 2:
            return None, 0
        pairs = self.matcher.knnMatch(q_desc, r_desc, k=2)
        good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < self.params.ratio
                * p[1].distance]
        if len(good) < self.params.min_inliers:
            return None, len(good)
        src = q_xy[[m.queryIdx for m in good]]
        dst = r_xy[[m.trainIdx for m in good]]
        homography, inlier_mask = cv2.findHomography(src, dst, cv2.RANSAC, self.params.ransac_px)
        inliers = int(inlier_mask.sum()) if inlier_mask is not None else 0
        if homography is not None and inliers >= 2 * self.params.min_inliers:
            return homography, inliers
        similarity, inlier_mask = cv2.estimateAffinePartial2D(
            src, dst, method=cv2.RANSAC, ransacReprojThreshold=self.params.ransac_px)
        inliers = int(inlier_mask.sum()) if inlier_mask is not None else 0
        if similarity is None or inliers < self.params.min_inliers:
            return None, inliers
        return np.vstack([similarity, [0, 0, 1]]), inliers

    def refine(self, query: np.ndarray, reference: np.ndarray, initial: np.ndarray | None,
               inliers: int) -> Alignment:
        """ECC on the reduced pair from the keypoint transform (without one, or when that
        fails, from the identity: the matched frame is the nearest view); the best correlated
        of starts and results among the plausible ones, unless none correlates well enough."""
        p = self.params
        small = [cv2.resize(image, None, fx=p.ecc_scale, fy=p.ecc_scale,
                            interpolation=cv2.INTER_AREA) for image in (query, reference)]
        scale = np.diag([p.ecc_scale, p.ecc_scale, 1.0])
        starts = [np.eye(3)] if initial is None else [scale @ initial @ np.linalg.inv(scale)]
        best, correlation = self._best(small, starts)
        if correlation < p.min_correlation and initial is not None:
            # Keypoints on new objects can mislead RANSAC: try from the nearest view itself.
            best, correlation = max([(best, correlation), self._best(small, [np.eye(3)], [])],
                                    key=lambda c: c[1])
        if best is None:
            return Alignment(None, inliers, -1.0, "no plausible alignment")
        if correlation < p.min_correlation:
            return Alignment(None, inliers, correlation,
                             f"correlation {correlation:.2f} after alignment")
        return Alignment(np.linalg.inv(scale) @ best @ scale, inliers, correlation)

    def _best(self, small: list[np.ndarray], starts: list[np.ndarray],
              keep: list[np.ndarray] | None = None) -> tuple[np.ndarray | None, float]:
        """The best correlated plausible transform among ECC's results from `starts` and the
        starts themselves (`keep`, default: all of them)."""
        candidates = list(starts if keep is None else keep)
        for start in starts:
            refined = self._ecc(small, start)
            if refined is not None:
                candidates.append(refined)
        scored = [(c, _correlation(small[0], small[1], c)) for c in candidates
                  if _corner_motion(c, small[0].shape) <= self.params.max_motion]
        return max(scored, key=lambda c: c[1], default=(None, -1.0))

    def _ecc(self, small: list[np.ndarray], start: np.ndarray) -> np.ndarray | None:
        if self.params.ecc_iterations == 0:
            return None
        warp = (start / start[2, 2]).astype(np.float32)
        try:
            _, warp = cv2.findTransformECC(
                small[0], small[1], warp, cv2.MOTION_HOMOGRAPHY,
                (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, self.params.ecc_iterations,
                 1e-4), None, 5)
        except cv2.error:  # did not converge
            return None
        return warp.astype(np.float64)


def warp_reference(reference: np.ndarray, homography: np.ndarray,
                   size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The reference seen from the query's view, and where it has data (bool)."""
    h, w = size
    warped = cv2.warpPerspective(reference, homography, (w, h),
                                 flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                 borderMode=cv2.BORDER_REPLICATE)
    inside = cv2.warpPerspective(np.full(reference.shape[:2], 255, np.uint8), homography, (w, h),
                                 flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return warped, inside > 0


def _correlation(query: np.ndarray, reference: np.ndarray, homography: np.ndarray) -> float:
    """Correlation coefficient of the query and the aligned reference where they overlap;
    an overlap under half the frame counts as no alignment."""
    warped, inside = warp_reference(reference, homography, query.shape[:2])
    if inside.sum() < inside.size / 2:
        return -1.0
    a = query[inside].astype(np.float32)
    b = warped[inside].astype(np.float32)
    a -= a.mean()
    b -= b.mean()
    return float((a * b).sum() / (np.sqrt((a * a).sum() * (b * b).sum()) + 1e-9))


def _corner_motion(homography: np.ndarray, shape: tuple[int, ...]) -> float:
    """Largest displacement of a frame corner, as a fraction of the frame's diagonal."""
    h, w = shape[:2]
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float64).reshape(-1, 1, 2)
    moved = cv2.perspectiveTransform(corners, homography)
    return float(np.abs(moved - corners).reshape(-1, 2).max() / np.hypot(w, h))
