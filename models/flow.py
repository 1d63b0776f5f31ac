"""Motion modality: dense optical flow (OpenCV DIS), optionally on downscaled frames.

Hawk's flow-masked frame (moving pixels kept, the rest zeroed) is made where the moving
threshold is known, per position: models/motion_cells.py.

DIS at its MEDIUM preset on full-resolution Ped2 frames is the default: measured on Ped2
test it is both faster and more accurate than Farneback (see docs/motion.md).

With a `change_threshold` (0, the whole frame, is this class's default) flow is computed only
where the picture changed: 8-px blocks where most pixels' grey level changed by more than it
are marked, grown by CHANGE_MARGIN blocks, and each connected region's bounding box gets its
own flow; everywhere else the flow is zero. Measured (docs/motion.md): on Ped2 no AUC loss and
half the flow time, but on a perspective view faint far walkers rarely change half a block
and get no flow (9 AUC points lost), so the motion scorer keeps the mask only where its fit
finds that the changed blocks hold enough of the normal footage's movers.
"""

from __future__ import annotations

import threading

import cv2
import numpy as np

from vad.errors import VadError

DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}
FLOW_METHODS = (*(f"dis-{p}" for p in DIS_PRESETS), "farneback")
CHANGE_BLOCK = 8  # pixels per side of the blocks that mark where the picture changed
CHANGE_MARGIN = 3  # blocks added around changed ones, so whole moving objects get flow


def to_uint8(image: np.ndarray) -> np.ndarray:
    """An image as uint8: float images are taken to be in [0, 1]."""
    if image.dtype == np.uint8:
        return image
    return np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)


class DenseFlow:
    """Dense optical flow between consecutive grayscale frames, (H, W, 2) float32 in pixels."""

    def __init__(self, method: str = "dis-medium", scale: float = 1.0,
                 change_threshold: int = 0):
        if method not in FLOW_METHODS:
            raise VadError(f"unknown flow method {method!r}; available: {', '.join(FLOW_METHODS)}")
        if not 0 < scale <= 1:
            raise VadError(f"flow scale must be in (0, 1], got {scale}")
        self.method = method
        self.scale = scale  # flow is computed on frames resized by it (its cost goes as scale^2)
        if change_threshold < 0:
            raise VadError(f"flow change threshold must be >= 0, got {change_threshold}")
        self.change_threshold = change_threshold  # grey levels; 0 = flow over the whole frame
        # One DIS instance per thread: the pipeline describes events on a worker thread while
        # the main thread scores, and an OpenCV algorithm object is not safe to share.
        self._local = threading.local()

    @property
    def _dis(self):
        if not self.method.startswith("dis-"):
            return None
        if not hasattr(self._local, "dis"):
            self._local.dis = cv2.DISOpticalFlow_create(DIS_PRESETS[self.method[4:]])
            self._local.finest = self._local.dis.getFinestScale()
        return self._local.dis

    def __call__(self, previous: np.ndarray, current: np.ndarray, whole: bool = False,
                 ) -> np.ndarray:
        """Flow from `previous` to `current`; `whole`: over the whole frame even when a change
        threshold is set (frames far apart: a crop's shallower DIS pyramid misses large
        displacements)."""
        if previous.ndim != 2 or previous.shape != current.shape:
            raise VadError(f"optical flow needs two grayscale frames of one size, got shapes "
                           f"{previous.shape} and {current.shape}")
        previous, current = to_uint8(previous), to_uint8(current)
        if self.scale == 1:
            return self._flow(previous, current, whole)
        height, width = previous.shape
        small = (max(1, round(width * self.scale)), max(1, round(height * self.scale)))
        flow = self._flow(cv2.resize(previous, small, interpolation=cv2.INTER_AREA),
                          cv2.resize(current, small, interpolation=cv2.INTER_AREA), whole)
        # Back at full size, in full-size pixels per frame.
        return cv2.resize(flow, (width, height), interpolation=cv2.INTER_LINEAR) / np.float32(
            self.scale)

    def _flow(self, previous: np.ndarray, current: np.ndarray, whole: bool) -> np.ndarray:
        if whole or not self.change_threshold:
            return self._dense(previous, current)
        flow = np.zeros((*previous.shape, 2), np.float32)
        for top, left, bottom, right in self.changed_regions(previous, current):
            region = np.s_[top:bottom, left:right]
            flow[region] = self._dense(np.ascontiguousarray(previous[region]),
                                       np.ascontiguousarray(current[region]))
        return flow

    def changed_regions(self, previous: np.ndarray, current: np.ndarray,
                        ) -> list[tuple[int, int, int, int]]:
        """(top, left, bottom, right) pixel boxes of the connected regions that changed."""
        height, width = previous.shape
        changed = (cv2.absdiff(previous, current) > self.change_threshold).astype(np.float32)
        # A block counts when most of its pixels changed: compression noise and flicker
        # change scattered pixels, a moving textured object most of those it covers.
        blocks = cv2.resize(changed, (-(-width // CHANGE_BLOCK), -(-height // CHANGE_BLOCK)),
                            interpolation=cv2.INTER_AREA) > 0.5
        side = 2 * CHANGE_MARGIN + 1
        grown = cv2.dilate(blocks.astype(np.uint8), np.ones((side, side), np.uint8))
        _, _, stats, _ = cv2.connectedComponentsWithStats(grown, connectivity=8)
        return [(y * CHANGE_BLOCK, x * CHANGE_BLOCK, min(height, (y + h) * CHANGE_BLOCK),
                 min(width, (x + w) * CHANGE_BLOCK)) for x, y, w, h, _ in stats[1:]]

    def _dense(self, previous: np.ndarray, current: np.ndarray) -> np.ndarray:
        dis = self._dis
        if dis is not None:
            # OpenCV's DIS lowers its finest scale for good on an image too small for it (a
            # crop under 46 px): every later call then ran at full resolution, 4x slower and
            # with other flows, so each call starts from the preset's.
            dis.setFinestScale(self._local.finest)
            return dis.calc(previous, current, None)
        return cv2.calcOpticalFlowFarneback(previous, current, None, 0.5, 3, 15, 3, 5, 1.2, 0)

    def sequence(self, frames: np.ndarray, whole: bool = False) -> np.ndarray:
        """(T, H, W) frames -> (T-1, H, W, 2) flows, flow t from frame t to frame t+1."""
        if len(frames) < 2:
            raise VadError(f"optical flow needs at least 2 frames, got {len(frames)}")
        return np.stack([self(frames[t], frames[t + 1], whole) for t in range(len(frames) - 1)])
