"""Motion modality: dense optical flow (OpenCV DIS), optionally on downscaled frames.

Hawk's flow-masked frame (moving pixels kept, the rest zeroed) is made where the moving
threshold is known, per position: models/motion_cells.py.

DIS at its MEDIUM preset on full-resolution Ped2 frames is the default: measured on Ped2
test it is both faster and more accurate than Farneback (see docs/motion.md).
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


def to_uint8(image: np.ndarray) -> np.ndarray:
    """An image as uint8: float images are taken to be in [0, 1]."""
    if image.dtype == np.uint8:
        return image
    return np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)


class DenseFlow:
    """Dense optical flow between consecutive grayscale frames, (H, W, 2) float32 in pixels."""

    def __init__(self, method: str = "dis-medium", scale: float = 1.0):
        if method not in FLOW_METHODS:
            raise VadError(f"unknown flow method {method!r}; available: {', '.join(FLOW_METHODS)}")
        if not 0 < scale <= 1:
            raise VadError(f"flow scale must be in (0, 1], got {scale}")
        self.method = method
        self.scale = scale  # flow is computed on frames resized by it (its cost goes as scale^2)
        # One DIS instance per thread: the pipeline describes events on a worker thread while
        # the main thread scores, and an OpenCV algorithm object is not safe to share.
        self._local = threading.local()

    @property
    def _dis(self):
        if not self.method.startswith("dis-"):
            return None
        if not hasattr(self._local, "dis"):
            self._local.dis = cv2.DISOpticalFlow_create(DIS_PRESETS[self.method[4:]])
        return self._local.dis

    def __call__(self, previous: np.ndarray, current: np.ndarray) -> np.ndarray:
        if previous.ndim != 2 or previous.shape != current.shape:
            raise VadError(f"optical flow needs two grayscale frames of one size, got shapes "
                           f"{previous.shape} and {current.shape}")
        previous, current = to_uint8(previous), to_uint8(current)
        if self.scale == 1:
            return self._flow(previous, current)
        height, width = previous.shape
        small = (max(1, round(width * self.scale)), max(1, round(height * self.scale)))
        flow = self._flow(cv2.resize(previous, small, interpolation=cv2.INTER_AREA),
                          cv2.resize(current, small, interpolation=cv2.INTER_AREA))
        # Back at full size, in full-size pixels per frame.
        return cv2.resize(flow, (width, height), interpolation=cv2.INTER_LINEAR) / np.float32(
            self.scale)

    def _flow(self, previous: np.ndarray, current: np.ndarray) -> np.ndarray:
        if self._dis is not None:
            return self._dis.calc(previous, current, None)
        return cv2.calcOpticalFlowFarneback(previous, current, None, 0.5, 3, 15, 3, 5, 1.2, 0)

    def sequence(self, frames: np.ndarray) -> np.ndarray:
        """(T, H, W) frames -> (T-1, H, W, 2) flows, flow t from frame t to frame t+1."""
        if len(frames) < 2:
            raise VadError(f"optical flow needs at least 2 frames, got {len(frames)}")
        return np.stack([self(frames[t], frames[t + 1]) for t in range(len(frames) - 1)])
