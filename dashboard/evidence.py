"""The evidence image an operator sees: the alert's keyframe with its heatmap overlaid."""

from __future__ import annotations

import cv2
import numpy as np

from vad.errors import VadError
from vad.evidence import decode_image, overlay_heatmap
from vad.types import Alert

# Per-pixel heatmaps (frame differences, reconstruction errors) light up an object's edges in
# speckles; blurring by this fraction of the heatmap's larger side joins them into one region,
# so the overlay reads as blobs and the box covers the whole object, not one speckle.
SMOOTHING_FRACTION = 0.04


def smooth_heatmap(heatmap: np.ndarray, fraction: float = SMOOTHING_FRACTION) -> np.ndarray:
    return cv2.GaussianBlur(heatmap.astype(np.float32), (0, 0), fraction * max(heatmap.shape))


def decode_evidence(data: object, what: str, flags: int) -> np.ndarray:
    """Stored image bytes -> array; VadError saying what is wrong with a missing or bad image."""
    if not data:
        raise VadError(f"the alert has no {what}")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise VadError(f"the {what} is stored as {type(data).__name__}, not image bytes")
    image = decode_image(bytes(data), flags)
    if image is None:
        raise VadError(f"the {what} is not a readable image ({len(data)} bytes)")
    return image


def evidence_image(alert: Alert) -> tuple[np.ndarray, str]:
    """(BGR image, caption): the keyframe with the heatmap (any resolution) overlaid and the
    hottest region boxed, or the bare keyframe with the reason when the heatmap is unusable.
    VadError when the keyframe itself is missing or unreadable. The caption holds only the
    app's words and numbers, never stored text."""
    keyframe = decode_evidence(alert.keyframe_jpeg, "keyframe", cv2.IMREAD_COLOR)
    peak = alert.peak_frame
    caption = (f"Keyframe (frame {peak})" if isinstance(peak, int) and not isinstance(peak, bool)
               else "Keyframe")
    try:
        heatmap = decode_evidence(alert.heatmap_png, "heatmap", cv2.IMREAD_GRAYSCALE)
    except VadError as exc:
        return keyframe, f"{caption} — no heatmap overlay: {exc}"
    return (overlay_heatmap(keyframe, smooth_heatmap(heatmap)),
            f"{caption} with the anomaly heatmap; the box marks the most anomalous region")


def draw_boxes(image: np.ndarray, alert: Alert) -> np.ndarray:
    """The alert's boxes (fractions of the frame) outlined in red."""
    out = image.copy()
    h, w = out.shape[:2]
    for box in alert.boxes:
        x0, y0, x1, y1 = box.pixels(h, w)
        cv2.rectangle(out, (x0, y0), (max(x0, x1 - 1), max(y0, y1 - 1)), (0, 0, 255), 2)
    return out


def reference_pair(alert: Alert) -> tuple[tuple[np.ndarray, str], tuple[np.ndarray, str]]:
    """A reference-based (patrol) alert side by side: the matched reference frame, aligned to
    the query's view, and the query keyframe with the change heatmap and the changed regions
    boxed. VadError when either image is missing or unreadable."""
    reference = decode_evidence(alert.reference_jpeg, "reference frame", cv2.IMREAD_COLOR)
    keyframe = decode_evidence(alert.keyframe_jpeg, "keyframe", cv2.IMREAD_COLOR)
    try:
        heatmap = decode_evidence(alert.heatmap_png, "heatmap", cv2.IMREAD_GRAYSCALE)
        query = overlay_heatmap(keyframe, heatmap.astype(np.float32), box_threshold=None)
    except VadError:
        query = keyframe
    reference = cv2.resize(reference, (keyframe.shape[1], keyframe.shape[0]))
    return ((reference, f"Reference frame {alert.reference_frame}, aligned to the query's view"),
            (draw_boxes(query, alert), f"Query (frame {alert.peak_frame}): what changed, boxed"))
