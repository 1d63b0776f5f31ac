"""Preprocessing and sliding clip windows, kept per camera."""

from __future__ import annotations

from collections import deque

import cv2
import numpy as np

from vad.types import Clip, Frame


def preprocess(image: np.ndarray, size: tuple[int, int] | None, grayscale: bool) -> np.ndarray:
    """BGR/gray uint8 -> float32 in [0, 1], resized to `size` = (height, width)."""
    if grayscale and image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    elif not grayscale and image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if size is not None and image.shape[:2] != tuple(size):
        image = cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_AREA)
    return image.astype(np.float32) / 255.0


class ClipWindower:
    """Turns one camera's frames into overlapping clips.

    Each clip holds `context` frames of history followed by up to `batch` new frames, so
    consecutive clips advance by `batch` (the stride) and every frame is a target exactly once.
    The first `context` frames of a stream are history only.
    """

    def __init__(self, context: int, batch: int, size: tuple[int, int] | None = None,
                 grayscale: bool = True):
        if context < 0 or batch < 1:
            raise ValueError("context must be >= 0 and batch >= 1")
        self.context = context
        self.batch = batch
        self.size = size
        self.grayscale = grayscale
        self._buffer: deque[tuple[Frame, np.ndarray]] = deque()  # (frame, preprocessed)
        self._pending = 0
        self._camera_id = ""

    @property
    def length(self) -> int:
        return self.context + self.batch

    def push(self, frame: Frame) -> Clip | None:
        """Add a frame; return a clip when `batch` new frames are ready."""
        self._camera_id = frame.camera_id
        self._buffer.append((frame, preprocess(frame.image, self.size, self.grayscale)))
        if len(self._buffer) > self.length:
            self._buffer.popleft()
        if len(self._buffer) > self.context:
            self._pending += 1
        if self._pending == self.batch:
            return self._emit()
        return None

    def flush(self) -> Clip | None:
        """The remaining new frames at the end of a stream, if any."""
        return self._emit() if self._pending else None

    def _emit(self) -> Clip:
        items = list(self._buffer)[-(self.context + self._pending):]
        self._pending = 0
        return Clip(
            camera_id=self._camera_id,
            frames=np.stack([image for _, image in items]),
            indices=np.array([frame.index for frame, _ in items], dtype=np.int64),
            timestamps=np.array([frame.timestamp for frame, _ in items], dtype=np.float64),
            context=self.context,
        )

    def state(self) -> dict:
        """The frames the next clip needs (context and pending ones) and how many are still
        to score; preprocessing is redone on restoring (it is deterministic)."""
        keep = self.context + self._pending
        frames = [frame for frame, _ in self._buffer]
        return {"frames": frames[len(frames) - keep:] if keep else [],
                "pending": self._pending, "camera": self._camera_id}

    def restore(self, state: dict) -> None:
        self._buffer = deque((frame, preprocess(frame.image, self.size, self.grayscale))
                             for frame in state["frames"])
        self._pending, self._camera_id = state["pending"], state["camera"]
