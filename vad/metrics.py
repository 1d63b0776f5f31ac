"""Frame-level metrics shared by every evaluation: AUC, AP, per-video tables."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from vad.errors import VadError


def video_auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Frame AUC of one video; None when it has a single class (no AUC is defined)."""
    return float(roc_auc_score(labels, scores)) if 0 < labels.sum() < len(labels) else None


def frame_metrics(names: list[str], labels: list[np.ndarray],
                  scores: list[np.ndarray]) -> dict[str, Any]:
    """Micro AUC (all frames concatenated), macro AUC (mean over videos with both classes),
    AP and a per-video table."""
    flat_labels, flat = np.concatenate(labels), np.concatenate(scores)
    if not 0 < flat_labels.sum() < len(flat_labels):
        raise VadError("the labels need both normal and anomalous frames for an AUC")
    per_video = [{
        "video": name, "frames": int(len(truth)), "anomalous": int(truth.sum()),
        "auc": video_auc(truth, s),
        "ap": float(average_precision_score(truth, s)) if truth.any() else None,
    } for name, truth, s in zip(names, labels, scores)]
    aucs = [row["auc"] for row in per_video if row["auc"] is not None]
    return {
        "micro_auc": float(roc_auc_score(flat_labels, flat)),
        "macro_auc": float(np.mean(aucs)) if aucs else None,
        "macro_videos": len(aucs),
        "ap": float(average_precision_score(flat_labels, flat)),
        "per_video": per_video,
    }


# -- segmentation and boxes (patrol mode, UMAD's metric) ------------------------------------------

ANOMALOUS_PIXEL, IGNORED_PIXEL = 128, 255


@dataclass
class PixelCounts:
    """Confusion counts of the anomaly class over pixels, accumulated over frames; ground-truth
    pixels marked 255 are ignored."""

    tp: int = 0
    fp: int = 0
    fn: int = 0

    def add(self, predicted: np.ndarray, truth: np.ndarray) -> None:
        if predicted.shape != truth.shape:
            raise VadError(f"a predicted mask is {predicted.shape}, its ground truth "
                           f"{truth.shape}")
        cared = truth != IGNORED_PIXEL
        anomalous = truth == ANOMALOUS_PIXEL
        self.tp += int(np.count_nonzero(predicted & anomalous))
        self.fp += int(np.count_nonzero(predicted & cared & ~anomalous))
        self.fn += int(np.count_nonzero(~predicted & anomalous))

    def __iadd__(self, other: PixelCounts) -> PixelCounts:
        self.tp, self.fp, self.fn = self.tp + other.tp, self.fp + other.fp, self.fn + other.fn
        return self

    @property
    def iou(self) -> float | None:
        """None when neither prediction nor truth has an anomalous pixel."""
        total = self.tp + self.fp + self.fn
        return self.tp / total if total else None

    @property
    def f1(self) -> float | None:
        total = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / total if total else None

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None


PixelBox = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive)


def mask_boxes(mask: np.ndarray, min_area: int = 1) -> list[PixelBox]:
    """Bounding boxes of the 8-connected regions of a boolean mask of at least `min_area`."""
    import cv2

    count, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    return [(int(x), int(y), int(x + w), int(y + h))
            for x, y, w, h, area in stats[1:count] if area >= min_area]


def box_iou(a: PixelBox, b: PixelBox) -> float:
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def matched_boxes(predicted: list[PixelBox], truth: list[PixelBox], threshold: float) -> int:
    """Pairs of predicted and true boxes overlapping by at least `threshold` IoU, each box in
    at most one pair (greedy, best overlaps first)."""
    pairs = sorted(((box_iou(p, t), i, j) for i, p in enumerate(predicted)
                    for j, t in enumerate(truth)), reverse=True)
    used_p, used_t, matched = set(), set(), 0
    for overlap, i, j in pairs:
        if overlap < threshold:
            break
        if i not in used_p and j not in used_t:
            used_p.add(i)
            used_t.add(j)
            matched += 1
    return matched
