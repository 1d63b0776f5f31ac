"""Scene geometry and per-cell features of the `motion` scorer (docs/motion.md).

Perspective: for objects on a ground plane the image scale is affine in image coordinates
(inverse depth is), and normal objects (people walking) move at similar real speeds, so the
normal speed of moving pixels, fitted as `v(x, y) = a + b x + c y` on normal footage, measures
the local scale of the view. The features follow it: speeds are binned in multiples of the
normal speed at that position, the moving-pixel threshold is a fraction of it, and cells are
sized by it (a far person fills a small cell as a near one fills a large cell). On a view
without perspective `v` is flat and the cells form a regular grid.

Speed: every per-pixel quantity is accumulated once per frame into micro-blocks (half a block
on a side) with one `bincount` per histogram; cells are windows of micro-blocks, summed with an
integral image, so any cell layout costs the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import cv2
import numpy as np

from vad.config.scorers import MotionParams

SCALE_RANGE = 4.0  # the local scale stays within 1/4..4x the reference (guards extrapolation)
MAX_CELL_FACTOR = 4  # cells grow to at most 4x the base cell side


@dataclass(frozen=True)
class Geometry:
    """Normal speed of moving pixels across the view: v(x, y) = a + b x + c y, x and y in
    0..1 across the frame, clipped to 1/4..4x `reference` (the speed at the typical depth)."""

    coefficients: tuple[float, float, float]
    reference: float

    @classmethod
    def uniform(cls, speed: float) -> Geometry:
        return cls((speed, 0.0, 0.0), speed)

    @classmethod
    def fit(cls, speed_sums: np.ndarray, counts: np.ndarray, perspective: bool) -> Geometry:
        """From per-block sums of moving pixels' speeds and their counts on normal footage.

        Least squares weighted by sqrt(count): busy blocks count more, but no few of them
        decide alone. The reference is the count-weighted median of the fitted speed."""
        seen = counts > 0
        if not seen.any():
            return cls.uniform(1.0)
        mean = speed_sums[seen] / counts[seen]
        weights = np.sqrt(counts[seen])
        overall = float(np.average(mean, weights=counts[seen]))
        if not perspective or seen.sum() < 3:
            return cls.uniform(overall)
        rows, cols = _centres(counts.shape)
        design = np.stack([np.ones(seen.sum()), cols[seen], rows[seen]], 1)
        solution, *_ = np.linalg.lstsq(design * weights[:, None], mean * weights, rcond=None)
        fitted = design @ solution
        if not np.isfinite(solution).all() or (fitted <= 0).all():
            return cls.uniform(overall)
        reference = _weighted_median(np.maximum(fitted, 1e-6), counts[seen])
        return cls(tuple(float(c) for c in solution), reference)

    def speed_map(self, shape: tuple[int, int]) -> np.ndarray:
        """(h, w) normal speed at the centres of an h x w grid over the frame."""
        rows, cols = _centres(shape)
        a, b, c = self.coefficients
        speed = a + b * cols + c * rows
        return np.clip(speed, self.reference / SCALE_RANGE,
                       self.reference * SCALE_RANGE).astype(np.float32)

    def scale_map(self, shape: tuple[int, int]) -> np.ndarray:
        """(h, w) local scale relative to the typical depth (1 = the reference)."""
        return self.speed_map(shape) / np.float32(self.reference)

    def spread(self, shape: tuple[int, int]) -> float:
        """Largest over smallest local scale on an (h, w) grid over the frame."""
        speed = self.speed_map(shape)
        return float(speed.max() / speed.min())

    def to_array(self) -> np.ndarray:
        return np.asarray([*self.coefficients, self.reference], np.float32)

    @classmethod
    def from_array(cls, values: np.ndarray) -> Geometry:
        return cls(tuple(float(v) for v in values[:3]), float(values[3]))


def _centres(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Row and column of each cell centre of an (h, w) grid, in 0..1 of the frame."""
    h, w = shape
    return np.meshgrid((np.arange(h) + 0.5) / h, (np.arange(w) + 0.5) / w, indexing="ij")


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, cumulative[-1] / 2)])


def sizes_cells(config: MotionParams, geometry: Geometry, shape: tuple[int, int]) -> bool:
    """Whether cell sizes follow the view's scale (decided from the fitted geometry, so a
    checkpoint always decides the same)."""
    if config.perspective == "auto":
        return geometry.spread(shape) > config.cells_above
    return config.perspective == "cells"


@dataclass(frozen=True)
class CellGrid:
    """Square cells as windows of micro-blocks, laid out in row bands whose cell side follows
    the local scale (stride: half a cell). `boxes` (n, 4): top, left, bottom, right in
    micro-blocks; `cover` (mh, mw, k): the cells covering each micro-block (n pads)."""

    boxes: np.ndarray
    centres: np.ndarray  # (n, 2) row, column of each cell centre in 0..1
    cover: np.ndarray
    micro: int  # micro-block side in pixels
    shape: tuple[int, int]  # (mh, mw) micro-blocks

    @classmethod
    def build(cls, scale: np.ndarray, base: int, micro: int) -> CellGrid:
        """`scale` (mh, mw): local scale per micro-block; `base`: cell side at scale 1, in
        micro-blocks."""
        mh, mw = scale.shape
        row_scale = scale.mean(1)
        largest = max(2, min(MAX_CELL_FACTOR * base, mh, mw))

        def side_at(top: int) -> int:
            side = int(np.clip(round(base * row_scale[top]), 2, largest))
            band = row_scale[top:top + side].mean()  # the band's own scale, not its top row's
            return int(np.clip(round(base * band), 2, largest))

        boxes, top = [], 0
        while True:
            side = side_at(top)
            top = min(top, mh - side)
            for left in _starts(mw, side):
                boxes.append((top, left, top + side, left + side))
            if top + side >= mh:
                break
            top += max(1, side // 2)
        boxes = np.asarray(boxes, np.int64)
        centres = np.stack([(boxes[:, 0] + boxes[:, 2]) / (2 * mh),
                            (boxes[:, 1] + boxes[:, 3]) / (2 * mw)], 1).astype(np.float32)
        return cls(boxes, centres, _cover(boxes, (mh, mw)), micro, (mh, mw))

    def __len__(self) -> int:
        return len(self.boxes)

    @property
    def areas(self) -> np.ndarray:
        """(n,) cell areas in pixels."""
        sides = self.boxes[:, 2:] - self.boxes[:, :2]
        return (sides[:, 0] * sides[:, 1] * self.micro * self.micro).astype(np.float32)

    @property
    def pixel_boxes(self) -> np.ndarray:
        return self.boxes * self.micro

    def moving_fraction(self, moving_counts: np.ndarray) -> np.ndarray:
        """(N, mh, mw) moving pixels per micro-block -> (N, n) moving share of each cell."""
        n = len(moving_counts)
        integral = np.zeros((n, self.shape[0] + 1, self.shape[1] + 1), np.float32)
        integral[:, 1:, 1:] = moving_counts.cumsum(1).cumsum(2)
        top, left, bottom, right = self.boxes.T
        counts = (integral[:, bottom, right] - integral[:, top, right]
                  - integral[:, bottom, left] + integral[:, top, left])
        return counts / self.areas

    def sums(self, micro_sums: np.ndarray, frames: np.ndarray, cells: np.ndarray) -> np.ndarray:
        """Sums over the micro-blocks of the given (frame, cell) pairs: (N, mh, mw, C) ->
        (m, C); cells of one side are gathered together."""
        flat = micro_sums.reshape(len(micro_sums), -1, micro_sums.shape[-1])
        out = np.empty((len(cells), flat.shape[-1]), np.float32)
        for side, (members, windows) in self._windows.items():
            chosen = np.flatnonzero(np.isin(cells, members))
            if chosen.size:
                rows = np.searchsorted(members, cells[chosen])
                out[chosen] = flat[frames[chosen, None], windows[rows]].sum(1)
        return out

    def covered(self, frames: int, frame_index: np.ndarray, cells: np.ndarray) -> np.ndarray:
        """(frames, mh * mw) bool: the micro-blocks under the given (frame, cell) pairs."""
        out = np.zeros((frames, self.shape[0] * self.shape[1]), bool)
        for members, windows in self._windows.values():
            chosen = np.flatnonzero(np.isin(cells, members))
            if chosen.size:
                rows = np.searchsorted(members, cells[chosen])
                out[frame_index[chosen, None], windows[rows]] = True
        return out

    @cached_property
    def _windows(self) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Cell side -> (its cells, (cells, side^2) flat micro-block indices of each)."""
        sides = self.boxes[:, 2] - self.boxes[:, 0]
        out = {}
        for side in np.unique(sides):
            members = np.flatnonzero(sides == side)
            dy, dx = np.divmod(np.arange(side * side), side)
            windows = ((self.boxes[members, :1] + dy) * self.shape[1]
                       + self.boxes[members, 1:2] + dx)
            out[int(side)] = (members, windows)
        return out

    def heatmap(self, cell_scores: np.ndarray) -> np.ndarray:
        """(N, n) cell scores -> (N, mh, mw): each micro-block the max of the cells over it."""
        padded = np.concatenate([cell_scores, np.zeros((len(cell_scores), 1), np.float32)], 1)
        return padded[:, self.cover].max(-1)


def _starts(length: int, side: int) -> list[int]:
    """Window starts at a stride of half a window; the last one flush with the end."""
    starts = list(range(0, length - side + 1, max(1, side // 2)))
    if starts[-1] != length - side:
        starts.append(length - side)
    return starts


def _cover(boxes: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    covering = [[[] for _ in range(shape[1])] for _ in range(shape[0])]
    for index, (top, left, bottom, right) in enumerate(boxes):
        for row in range(top, bottom):
            for col in range(left, right):
                covering[row][col].append(index)
    depth = max(len(c) for row in covering for c in row)
    cover = np.full((*shape, depth), len(boxes), np.int64)
    for row in range(shape[0]):
        for col in range(shape[1]):
            cover[row, col, :len(covering[row][col])] = covering[row][col]
    return cover


@dataclass
class CellFeatures:
    """Cell features of N frames on a CellGrid of n cells; the branches only for the m cells
    that move (more than `min_moving_fraction`), in frame-major order."""

    moving_fraction: np.ndarray  # (N, n)
    moving: np.ndarray  # (N, n) bool: the cells described below
    appearance: np.ndarray  # (m, A) gradient histogram of the frame
    motion: np.ndarray  # (m, M) flow histogram + weighted masked-frame gradient histogram
    position: np.ndarray  # (m, 2) cell centre, row and column in 0..1

    def joint(self, config: MotionParams) -> np.ndarray:
        """The motion-aware vectors the memory bank holds: (m, M + 2 [+ A])."""
        parts = [self.motion, config.position_weight * self.position]
        if config.appearance_weight > 0:
            parts.append(config.appearance_weight * self.appearance)
        return np.concatenate(parts, -1).astype(np.float32)

    @classmethod
    def concatenate(cls, parts: list[CellFeatures]) -> CellFeatures:
        return cls(*(np.concatenate([getattr(p, name) for p in parts])
                     for name in ("moving_fraction", "moving", "appearance", "motion",
                                  "position")))


class CellFeaturizer:
    """Per-cell features of frames and their flows, for one geometry at one frame size."""

    def __init__(self, config: MotionParams, geometry: Geometry):
        self.config = config
        self.geometry = geometry
        height, width = config.size
        self.micro = max(1, config.block // 2)
        mh, mw = height // self.micro, width // self.micro
        self.crop = (mh * self.micro, mw * self.micro)
        scale = (geometry.scale_map((mh, mw)) if sizes_cells(config, geometry, (mh, mw))
                 else np.ones((mh, mw), np.float32))
        self.grid = CellGrid.build(scale, 2 * config.block // self.micro, self.micro)
        pixel = (np.arange(self.crop[0])[:, None] // self.micro * mw
                 + np.arange(self.crop[1])[None, :] // self.micro)
        self.speed_bins = len(config.speed_edges) + 1
        self.flow_bins = config.orientations * self.speed_bins
        self._flow_index = pixel * (self.flow_bins + 1)  # + 1: the "not moving" bin
        self._pixel_block = pixel  # (H, W): each pixel's micro-block
        self.blocks = mh * mw
        speed = cv2.resize(geometry.speed_map((mh, mw)), self.crop[::-1],
                           interpolation=cv2.INTER_LINEAR)
        self.inverse_speed = (1.0 / speed).astype(np.float32)
        self.threshold = np.maximum(config.noise_floor,
                                    config.move_fraction * speed).astype(np.float32)
        self.edges = np.asarray(config.speed_edges, np.float32)
        # Gradient histograms are L2-normalised with a floor that grows with the cell's area,
        # so that small and large cells with the same content read the same.
        self._gradient_floor = 1.0 / float(4 * config.block * config.block)

    def moving(self, flow: np.ndarray) -> np.ndarray:
        """(H, W) pixels moving faster than the local threshold."""
        speed = np.sqrt(flow[..., 0] ** 2 + flow[..., 1] ** 2)
        h, w = self.crop
        out = np.zeros(speed.shape, bool)
        out[:h, :w] = speed[:h, :w] > self.threshold
        return out

    def micro_sums(self, frame: np.ndarray, flow: np.ndarray) -> np.ndarray:
        """(mh, mw, F + 1 + G) per micro-block: moving pixels per direction x relative speed
        bin (and the not-moving count), then the masked frame's gradient histogram
        (magnitude-weighted). `frame` uint8 (H, W), `flow` (H, W, 2)."""
        cfg = self.config
        h, w = self.crop
        frame = frame[:h, :w]
        speed, angle = cv2.cartToPolar(flow[:h, :w, 0], flow[:h, :w, 1])
        moving = speed > self.threshold
        # Only the moving pixels are binned (a small share of a frame); the rest of each
        # micro-block is its "not moving" count.
        where = np.flatnonzero(moving)
        direction = (angle.ravel()[where] * (cfg.orientations / (2 * np.pi))).astype(np.int32)
        direction[direction == cfg.orientations] = 0
        relative = speed.ravel()[where] * self.inverse_speed.ravel()[where]
        bins = direction * self.speed_bins + np.searchsorted(self.edges, relative)
        flow_hist = np.bincount(self._flow_index.ravel()[where] + bins,
                                minlength=self.blocks * (self.flow_bins + 1))
        flow_hist = flow_hist.reshape(self.blocks, -1).astype(np.float32)
        flow_hist[:, -1] = self.micro * self.micro - flow_hist[:, :-1].sum(1)
        masked = frame * moving.astype(np.uint8)
        # Beyond a pixel above and below the moving rows the masked frame has no gradient.
        rows = np.flatnonzero(moving.any(1))
        band = (max(0, rows[0] - 1), min(h, rows[-1] + 2)) if rows.size else None
        return np.concatenate([flow_hist, self._gradient_hist(masked, band)], 1).reshape(
            *self.grid.shape, -1)

    def _gradient_hist(self, image: np.ndarray, band: tuple[int, int] | None,
                       blocks: np.ndarray | None = None) -> np.ndarray:
        """(mh * mw, G) magnitude-weighted gradient orientation histogram per micro-block of
        the pixels with a gradient in the rows `band` (top, bottom; None: no pixel) and in
        the given micro-blocks (all unless given). Gradients are computed on those rows and
        one more on each side, whole rows, which gives exactly the whole frame's values there
        (a crop narrower than the frame does not: OpenCV's vector and scalar paths round
        differently); only those pixels are binned, a small share of a frame (a masked
        frame, the blocks of moving cells)."""
        bins = self.config.gradient_bins
        if band is None:
            return np.zeros((self.blocks, bins), np.float32)
        top, bottom = band
        y0 = max(0, top - 1)
        rows = image[y0:min(len(image), bottom + 1)]
        gx = cv2.Sobel(rows, cv2.CV_32F, 1, 0, scale=1 / 255)
        gy = cv2.Sobel(rows, cv2.CV_32F, 0, 1, scale=1 / 255)
        magnitude, angle = cv2.cartToPolar(gx[top - y0:bottom - y0], gy[top - y0:bottom - y0])
        magnitude, angle = magnitude.ravel(), angle.ravel()
        block = self._pixel_block[top:bottom].ravel()
        keep = magnitude > 0
        if blocks is not None:
            keep &= blocks[block]
        where = np.flatnonzero(keep)
        orientation = (angle[where] * (bins / np.pi)).astype(np.int32) % bins  # unsigned
        hist = np.bincount(block[where] * bins + orientation, magnitude[where],
                           minlength=self.blocks * bins)
        return hist.reshape(self.blocks, bins).astype(np.float32)

    def features(self, frames: np.ndarray, flows: np.ndarray) -> CellFeatures:
        """Cell features of uint8 frames (N, H, W), each with its flow from the previous."""
        cfg = self.config
        micro = np.stack([self.micro_sums(f, flow) for f, flow in zip(frames, flows)])
        fraction = self.grid.moving_fraction(micro[..., :self.flow_bins].sum(-1))
        moving = fraction > cfg.min_moving_fraction
        frame_index, cell_index = np.nonzero(moving)
        # The frame's own gradients only where a moving cell needs them.
        needed = self.grid.covered(len(frames), frame_index, cell_index)
        h, w = self.crop
        appearance = np.stack([self._gradient_hist(frame[:h, :w], self._block_rows(blocks), blocks)
                               for frame, blocks in zip(frames, needed)])
        micro = np.concatenate([micro, appearance.reshape(*micro.shape[:3], -1)], -1)
        sums = self.grid.sums(micro, frame_index, cell_index)
        area = self.grid.areas[cell_index, None]
        start = self.flow_bins + 1
        masked = self._normalise(sums[:, start:start + cfg.gradient_bins], area)
        appearance = self._normalise(sums[:, start + cfg.gradient_bins:], area)
        motion = np.concatenate([sums[:, :self.flow_bins] / area, cfg.masked_weight * masked], 1)
        return CellFeatures(fraction, moving, appearance, motion, self.grid.centres[cell_index])

    def _block_rows(self, blocks: np.ndarray) -> tuple[int, int] | None:
        """Pixel rows (top, bottom) of the marked micro-blocks; None: none is."""
        rows = np.flatnonzero(blocks.reshape(self.grid.shape).any(1))
        return (rows[0] * self.micro, (rows[-1] + 1) * self.micro) if rows.size else None

    def _normalise(self, hist: np.ndarray, area: np.ndarray) -> np.ndarray:
        return hist / (np.linalg.norm(hist, axis=-1, keepdims=True)
                       + area * self._gradient_floor)

    def block_speed(self, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per block of the config: sum of moving pixels' speeds and their count."""
        block = self.config.block
        bh, bw = self.config.size[0] // block, self.config.size[1] // block
        speed = np.sqrt(flow[..., 0] ** 2 + flow[..., 1] ** 2)
        moving = self.moving(flow)
        crop = (slice(0, bh * block), slice(0, bw * block))
        both = np.stack([speed * moving, moving], -1)[crop].astype(np.float32)
        sums = both.reshape(bh, block, bw, block, 2).sum((1, 3))
        return sums[..., 0], sums[..., 1]


GEOMETRY_ROUNDS = 3  # threshold -> normal speed -> threshold ...: settles in two or three


def fit_geometry(speeds: np.ndarray, config: MotionParams) -> Geometry:
    """The normal-speed geometry of (N, H, W) flow speeds of normal footage.

    The moving threshold is a fraction of the normal speed it measures, so the two are found
    together, starting from the mean speed of all pixels above the noise floor."""
    above = speeds[speeds > config.noise_floor]
    geometry = Geometry.uniform(float(above.mean()) if above.size else 1.0)
    block = config.block
    bh, bw = speeds.shape[1] // block, speeds.shape[2] // block
    crop = speeds[:, :bh * block, :bw * block]
    for _ in range(GEOMETRY_ROUNDS):
        normal = cv2.resize(geometry.speed_map((bh, bw)), (bw * block, bh * block),
                            interpolation=cv2.INTER_LINEAR)
        moving = crop > np.maximum(config.noise_floor, config.move_fraction * normal)
        sums = (crop * moving).reshape(len(crop), bh, block, bw, block).sum((0, 2, 4))
        counts = moving.reshape(len(crop), bh, block, bw, block).sum((0, 2, 4))
        geometry = Geometry.fit(sums, counts.astype(np.float64), config.perspective != "none")
    return geometry
