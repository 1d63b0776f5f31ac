"""Per-video score curves with the ground truth shaded, for a quick look at where it fails."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_scores(result, labels: dict[str, np.ndarray], path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    videos = result.videos
    cols = 3
    rows = (len(videos) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.2 * rows), squeeze=False)
    for ax, video in zip(axes.flat, videos):
        truth = labels[video.video][:len(video.scores)]
        ax.fill_between(np.arange(len(truth)), 0, truth, color="tab:red", alpha=0.15, step="mid")
        ax.plot([j.score for j in video.judgements], color="0.6", lw=0.8, label="raw")
        ax.plot(video.scores, color="tab:blue", lw=1.2, label="smoothed")
        title = f"{video.video}" + (f"  AUC {video.auc:.3f}" if video.auc is not None else "")
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(videos):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
