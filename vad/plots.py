"""Evaluation figures: per-video score curves against ground truth, ROC curves."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from vad.postprocess import minmax_normalize  # noqa: E402


def plot_video_scores(names: list[str], labels: list[np.ndarray],
                      curves: dict[str, list[np.ndarray]], path: str | Path,
                      titles: list[str] | None = None) -> Path:
    """One panel per video: each named score curve (min-max scaled for display) over the
    ground truth shaded."""
    cols = 3
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 2.4 * rows), squeeze=False)
    for ax, (i, name) in zip(axes.flat, enumerate(names)):
        frames = np.arange(len(labels[i]))
        ax.fill_between(frames, 0, labels[i], step="mid", color="tab:red", alpha=0.18,
                        label="anomalous (ground truth)")
        for curve, scores in curves.items():
            ax.plot(np.arange(len(scores[i])), minmax_normalize(scores[i]), lw=1.2,
                    label=f"{curve} score")
        ax.set_title(titles[i] if titles else f"video {name}", fontsize=9)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("frame", fontsize=8)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, loc="lower right")
    fig.suptitle("anomaly score (min-max scaled for display) vs ground truth")
    return save_figure(fig, path)


def plot_roc(videos, protocols: dict[str, list[np.ndarray]], report: dict[str, Any],
             path: Path) -> Path:
    labels = np.concatenate([v.labels for v in videos])
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, scores in protocols.items():
        fpr, tpr, _ = roc_curve(labels, np.concatenate(scores))
        ax.plot(fpr, tpr, label=f"{name}: micro AUC {report[name]['micro_auc']:.4f}")
    ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("frame-level ROC")
    ax.legend(loc="lower right")
    return save_figure(fig, path)


def plot_losses(entries: list[dict[str, float]], path: str | Path, title: str) -> Path:
    """Each loss of a training log (`{"iteration": i, NAME: value, ...}` per step) against
    the iteration, raw and as a running mean over 5% of the run."""
    names = [k for k in entries[0] if k != "iteration"]
    steps = np.array([e["iteration"] for e in entries])
    fig, axes = plt.subplots(len(names), 1, figsize=(7, 1.9 * len(names) + 0.6), squeeze=False,
                             sharex=True)
    width = max(1, len(entries) // 20)
    for ax, name in zip(axes[:, 0], names):
        values = np.array([e.get(name, np.nan) for e in entries], dtype=np.float64)
        ax.plot(steps, values, lw=0.6, alpha=0.45, color="tab:blue")
        if len(values) >= width > 1:
            mean = np.convolve(values, np.ones(width) / width, mode="valid")
            ax.plot(steps[width - 1:], mean, lw=1.4, color="tab:blue",
                    label=f"running mean of {width}")
            ax.legend(fontsize=7, loc="upper right")
        ax.set_ylabel(name, fontsize=8)
    axes[-1, 0].set_xlabel("step")
    fig.suptitle(title)
    return save_figure(fig, path)


def save_figure(fig, path: str | Path, dpi: int = 110) -> Path:
    """Lay out, write (making the folder) and free one figure."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
