"""Change detection between a query frame and its aligned reference, in a space that lighting,
sensor noise and small parallax do not move:

1. lighting: a global tone mapping (quantile matching of the reference to the query: gain,
   offset, gamma) and a local brightness ratio on a coarse grid (cell medians, then a median
   across cells, so that an object does not become lighting);
2. parallax and residual misalignment: a query pixel differs only by how far it lies outside
   the range of the reference within `tolerance_px`;
3. noise: the difference is blurred and expressed in units of the pair's own residual level
   (a robust statistic, floored), so thresholds mean the same in clean and noisy pairs;
4. regions: hysteresis (a region reaches `high_threshold` somewhere and extends over pixels
   above `low_threshold`), holes filled, small regions dropped; one box per region.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.ndimage import median_filter

from vad.config.scorers import PatrolParams

QUANTILES = np.linspace(0, 100, 41)


@dataclass(frozen=True)
class Region:
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive) in pixels
    area: int
    strength: float  # mean change inside, noise units


@dataclass(frozen=True)
class Change:
    change: np.ndarray  # (H, W) float32 change in noise units, 0 where not compared
    mask: np.ndarray  # (H, W) bool: the changed regions
    regions: tuple[Region, ...]

    @property
    def strength(self) -> float:
        return max((r.strength for r in self.regions), default=0.0)


class ChangeDetector:
    def __init__(self, params: PatrolParams):
        self.params = params
        side = 2 * params.tolerance_px + 1
        self.kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (side, side))
        closing = 2 * params.closing_px + 1
        self.closing = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (closing, closing))

    def detect(self, query: np.ndarray, reference: np.ndarray, valid: np.ndarray) -> Change:
        """`reference` aligned to `query` (both grey uint8), compared where `valid`."""
        p = self.params
        h, w = query.shape
        valid = self._shrink(valid)
        if valid.sum() < 0.05 * h * w:
            return Change(np.zeros((h, w), np.float32), np.zeros((h, w), bool), ())
        q, r = query.astype(np.float32), _tone_map(query, reference, valid)
        if p.blur_sigma > 0:
            q, r = (cv2.GaussianBlur(image, (0, 0), p.blur_sigma) for image in (q, r))
        r = self._relight(q, r, valid)
        noise = max(p.noise_floor, 1.4826 * float(np.median(np.abs(q - r)[::2, ::2][
            valid[::2, ::2]])))
        highest, lowest = cv2.dilate(r, self.kernel), cv2.erode(r, self.kernel)
        difference = np.maximum(np.maximum(q - highest, lowest - q), 0)
        difference = cv2.GaussianBlur(difference, (0, 0), 1.0)
        # Where the reference has edges or thin lines, a sub-pixel misalignment or a blur
        # mismatch leaves a residual growing with the local contrast: expected, not a change.
        expected = np.sqrt(noise ** 2 + (p.edge_contrast * (highest - lowest)) ** 2)
        change = np.where(valid, difference / expected, 0).astype(np.float32)
        mask, regions = self._regions(change)
        return Change(np.where(mask, change, 0).astype(np.float32), mask, regions)

    def _shrink(self, valid: np.ndarray) -> np.ndarray:
        h, w = valid.shape
        margin = int(round(self.params.border * min(h, w)))
        valid = valid.copy()
        if margin:
            valid = cv2.erode(valid.astype(np.uint8), np.ones((2 * margin + 1,) * 2, np.uint8),
                              borderType=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)
        return valid

    def _relight(self, q: np.ndarray, r: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """The tone-mapped reference under the query's local lighting: a brightness ratio per
        cell of a coarse grid (robust medians), smoothly interpolated."""
        rows, cols = self.params.light_cells
        h, w = q.shape
        ratio = np.where(valid, (q + 1) / (r + 1), np.nan)
        gain = cv2.resize(_cell_medians(ratio, rows, cols), (w, h), interpolation=cv2.INTER_LINEAR)
        return (r + 1) * gain - 1

    def _regions(self, change: np.ndarray) -> tuple[np.ndarray, tuple[Region, ...]]:
        p = self.params
        h, w = change.shape
        low = (change >= p.low_threshold).astype(np.uint8)
        count, labels = cv2.connectedComponents(low, connectivity=8)
        if count <= 1:
            return np.zeros((h, w), bool), ()
        peaks = np.zeros(count, np.float32)
        np.maximum.at(peaks, labels.ravel(), change.ravel())
        keep = peaks >= p.high_threshold
        keep[0] = False
        seeded = cv2.morphologyEx(keep[labels].astype(np.uint8), cv2.MORPH_CLOSE, self.closing)
        contours, _ = cv2.findContours(seeded, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        mask = np.zeros((h, w), np.uint8)
        regions = []
        for contour in contours:
            x, y, cw, ch = cv2.boundingRect(contour)
            filled = np.zeros((ch, cw), np.uint8)
            cv2.drawContours(filled, [contour], -1, 1, cv2.FILLED, offset=(-x, -y))
            area = int(filled.sum())
            if area < p.min_area * h * w:
                continue
            inside = filled.astype(bool)
            mask[y:y + ch, x:x + cw] |= filled
            regions.append(Region((x, y, x + cw, y + ch), area,
                                  float(change[y:y + ch, x:x + cw][inside].mean())))
        return mask.astype(bool), tuple(regions)


def _tone_map(query: np.ndarray, reference: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The reference's grey levels mapped so that their distribution matches the query's
    (quantile matching over the compared pixels: gain, offset, gamma), float32."""
    step = max(1, int(np.sqrt(valid.sum() / 8000)))  # quantiles from ~8k pixels
    sample = valid[::step, ::step]
    ranks = np.rint(QUANTILES / 100 * (sample.sum() - 1)).astype(int)
    q_levels = np.sort(query[::step, ::step][sample])[ranks].astype(np.float64)
    r_levels = np.sort(reference[::step, ::step][sample])[ranks].astype(np.float64)
    r_levels = np.maximum.accumulate(r_levels + np.arange(len(r_levels)) * 1e-3)
    table = np.interp(np.arange(256), r_levels, q_levels).astype(np.float32)
    return table[reference]


def _cell_medians(values: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Median of the finite values of each cell of a rows x cols grid (every other pixel),
    then a 3x3 median across cells, so an object filling a cell does not set its value;
    cells without values get 1."""
    h, w = values.shape
    ch, cw = h // rows, w // cols
    cells = values[:ch * rows, :cw * cols].reshape(rows, ch, cols, cw)[:, ::2, :, ::2]
    cells = np.sort(cells.transpose(0, 2, 1, 3).reshape(rows * cols, -1), axis=1)  # NaN last
    counts = np.isfinite(cells).sum(axis=1)
    medians = np.where(counts > 0, cells[np.arange(len(cells)), counts // 2], 1.0)
    medians = median_filter(medians.reshape(rows, cols), size=3, mode="nearest")
    return medians.astype(np.float32)
