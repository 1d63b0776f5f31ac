"""Score timeline plots (Altair: drawn in the browser, cheap to refresh)."""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import numpy as np
import pandas as pd

from vad.stores import ScoreSeries

# Longer timelines are max-pooled to this many points so that short peaks stay visible.
MAX_POINTS = 1500


def downsample_max(series: ScoreSeries, max_points: int = MAX_POINTS) -> pd.DataFrame:
    frames, scores = series.indices, series.scores
    if len(frames) > max_points:
        bins = np.array_split(np.arange(len(frames)), max_points)
        keep = [b[np.argmax(scores[b])] for b in bins]
        frames, scores = frames[keep], scores[keep]
    return pd.DataFrame({"frame": frames, "score": scores})


def score_timeline(series: ScoreSeries, threshold: float,
                   spans: Sequence[tuple[int, int]] = (), peak_frame: int | None = None,
                   height: int = 220) -> alt.LayerChart:
    """Score against frame index, the event threshold dashed, alert spans shaded."""
    data = downsample_max(series)
    x = alt.X("frame:Q", title="frame", scale=alt.Scale(zero=False, nice=False))
    layers = []
    if spans:
        bands = pd.DataFrame(spans, columns=["start", "end"])
        layers.append(alt.Chart(bands).mark_rect(color="#e4572e", opacity=0.18)
                      .encode(x="start:Q", x2="end:Q"))
    layers.append(alt.Chart(data).mark_line(color="#1f77b4").encode(
        x, alt.Y("score:Q", title="anomaly score"),
        tooltip=["frame:Q", alt.Tooltip("score:Q", format=".2f")]))
    layers.append(alt.Chart(pd.DataFrame({"threshold": [threshold]}))
                  .mark_rule(color="#e4572e", strokeDash=[6, 4], size=1.5).encode(y="threshold:Q"))
    if peak_frame is not None:
        peak = data.iloc[[int(np.argmin(np.abs(data["frame"].to_numpy() - peak_frame)))]]
        layers.append(alt.Chart(peak).mark_point(color="#e4572e", size=80, filled=True)
                      .encode(x="frame:Q", y="score:Q"))
    return alt.layer(*layers).properties(height=height)
