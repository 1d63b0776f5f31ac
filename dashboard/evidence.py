"""Evidence images: the keyframe with the anomaly heatmap overlaid and its region boxed."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from vad.errors import VadError


@dataclass(frozen=True)
class OverlayStyle:
    colormap: int = cv2.COLORMAP_JET
    # Opacity of the hottest pixels; cooler pixels blend in proportionally less, so the
    # scene stays readable where nothing is anomalous.
    alpha: float = 0.6
    # The boxed region: heatmap pixels at or above this fraction of the heatmap's maximum.
    box_fraction: float = 0.5
    box_color: tuple[int, int, int] = (0, 0, 255)  # BGR red


def decode_keyframe(jpeg: bytes | None) -> np.ndarray:
    """JPEG/PNG bytes -> HxWx3 BGR uint8."""
    return _decode(jpeg, cv2.IMREAD_COLOR, "keyframe")


def decode_heatmap(png: bytes | None) -> np.ndarray:
    """Single-channel PNG bytes -> HxW uint8 (0 = normal, 255 = most anomalous)."""
    return _decode(png, cv2.IMREAD_GRAYSCALE, "heatmap")


def _decode(data: bytes | None, flags: int, what: str) -> np.ndarray:
    if not data:
        raise VadError(f"the alert has no {what}")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise VadError(f"the {what} is stored as {type(data).__name__}, not image bytes")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if image is None:
        raise VadError(f"the {what} is not a readable image ({len(data)} bytes)")
    return image


def anomaly_box(heatmap: np.ndarray, fraction: float = OverlayStyle.box_fraction,
                ) -> tuple[int, int, int, int] | None:
    """(x, y, w, h) of the largest connected region at >= `fraction` of the peak, or None
    when the heatmap is flat (nothing stands out to box)."""
    peak = int(heatmap.max())
    if peak == 0 or peak == int(heatmap.min()):
        return None
    mask = (heatmap >= max(1, round(fraction * peak))).astype(np.uint8)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    largest = max(contours, key=cv2.contourArea)
    return tuple(int(v) for v in cv2.boundingRect(largest))


def overlay_heatmap(keyframe: np.ndarray, heatmap: np.ndarray,
                    style: OverlayStyle = OverlayStyle()) -> np.ndarray:
    """BGR keyframe with the heatmap (any resolution, resized to the frame) colour-mapped
    over it and the anomalous region boxed. Returns BGR uint8."""
    height, width = keyframe.shape[:2]
    heat = cv2.resize(heatmap, (width, height), interpolation=cv2.INTER_LINEAR)
    colored = cv2.applyColorMap(heat, style.colormap)
    weight = style.alpha * (heat.astype(np.float32) / 255.0)[..., None]
    blended = (keyframe * (1.0 - weight) + colored * weight).round().astype(np.uint8)
    box = anomaly_box(heat, style.box_fraction)
    if box is not None:
        x, y, w, h = box
        thickness = max(2, round(min(height, width) / 160))
        cv2.rectangle(blended, (x, y), (x + w - 1, y + h - 1), style.box_color, thickness)
    return blended
