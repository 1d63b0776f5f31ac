"""Frame-level metrics shared by every evaluation: AUC, AP, per-video tables."""

from __future__ import annotations

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
