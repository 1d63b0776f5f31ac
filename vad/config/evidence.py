"""Evidence beyond the keyframe: a short H.264 clip of each event with a pre-roll, and how long
the store keeps evidence (docs/outputs.md)."""

from __future__ import annotations

from pydantic import Field

from vad.config.base import Section


class ClipConfig(Section):
    """Each alert keeps a clip of its event, encoded while it happens (PyAV, libx264)."""

    enabled: bool = Field(True, description="record a clip of each alert's event")
    pre_roll_s: float = Field(2.0, ge=0, description=(
        "seconds before the event that the clip starts with"))
    max_seconds: float = Field(30.0, gt=0, description=(
        "longest clip, pre-roll included; a longer event's clip covers its beginning"))
    max_mb: float = Field(8.0, gt=0, description=(
        "largest clip; the encoder's bit rate is capped to fit it, and a clip still larger "
        "is not kept"))
    max_width: int = Field(640, ge=32, description=(
        "frames wider than this are scaled down (height in proportion) before encoding and "
        "in the pre-roll buffer"))
    crf: int = Field(28, ge=0, le=51, description="x264 constant rate factor (lower = better)")


class RetentionConfig(Section):
    """How long the store keeps evidence; applied by the store whenever it stores a clip."""

    max_age_days: float | None = Field(30.0, gt=0, description=(
        "clips, keyframes and heatmaps of alerts older than this are deleted (the alert "
        "record stays); none = kept however old"))
    max_mb: float | None = Field(2048.0, gt=0, description=(
        "total size of the clips kept; beyond it the oldest are deleted first; none = no "
        "limit"))
