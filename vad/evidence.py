"""Evidence images for alerts: JPEG keyframes, heatmap PNGs and overlays."""

from __future__ import annotations

import cv2
import numpy as np


def encode_jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return data.tobytes()


def decode_image(data: bytes, flags: int = cv2.IMREAD_UNCHANGED) -> np.ndarray | None:
    """Decode JPEG/PNG bytes; None when they are not an image."""
    if not data:
        return None
    return cv2.imdecode(np.frombuffer(data, np.uint8), flags)


def encode_heatmap(heatmap: np.ndarray) -> bytes:
    """A float heatmap as an 8-bit single-channel PNG (scaled to its own maximum)."""
    heatmap = np.nan_to_num(np.asarray(heatmap, np.float32))
    peak = float(heatmap.max())
    scaled = np.clip(heatmap / peak, 0, 1) if peak > 0 else np.zeros_like(heatmap)
    ok, data = cv2.imencode(".png", (scaled * 255).astype(np.uint8))
    if not ok:
        raise ValueError("PNG encoding failed")
    return data.tobytes()


def overlay_heatmap(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45,
                    box_threshold: float | None = 0.5) -> np.ndarray:
    """The keyframe with the heatmap in colour over it and the hottest region boxed (no box
    with `box_threshold` None)."""
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    heat = cv2.resize(heatmap.astype(np.float32), (image.shape[1], image.shape[0]))
    heat = heat / heat.max() if heat.max() > 0 else heat
    colour = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET)
    blended = cv2.addWeighted(image, 1 - alpha, colour, alpha, 0)
    box = hottest_region(heat, box_threshold) if box_threshold is not None else None
    if box is not None:
        x, y, w, h = box
        cv2.rectangle(blended, (x, y), (x + w, y + h), (0, 0, 255), 2)
    return blended


def hottest_region(heat: np.ndarray, threshold: float) -> tuple[int, int, int, int] | None:
    """Bounding box (x, y, w, h) of the largest blob above `threshold` of the maximum."""
    mask = (heat >= threshold * heat.max()).astype(np.uint8) if heat.max() > 0 else None
    if mask is None:
        return None
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None
    return cv2.boundingRect(max(contours, key=cv2.contourArea))
