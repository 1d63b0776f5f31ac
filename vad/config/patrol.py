"""Patrol mode (docs/patrol.md): the synthetic benchmark generator and the patrol evaluation.

The patrol scorer's own settings (matching, alignment, change detection) are its params in
`vad.config.scorers` (`PatrolParams`), like every scorer's.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from vad.config.base import Section

Fraction = Annotated[float, Field(ge=0, le=1)]
Positive = Annotated[float, Field(gt=0)]


def _ordered(name: str, pair: tuple[float, float]) -> None:
    if pair[0] > pair[1]:
        raise ValueError(f"{name}: the low end {pair[0]} exceeds the high end {pair[1]}")


class SynthConfig(Section):
    """`vad patrol synth`: synthetic patrol sequences from static-camera footage. The
    defaults are the benchmark's default difficulty."""

    seed: int = Field(0, description="seed of every random choice: the same seed and inputs "
                                     "give the same sequences")
    sequences_per_scene: int = Field(2, ge=1, description="sequences drawn from each scene video")
    normal_every: int | None = Field(4, ge=1, description=(
        "sequences 1, n+1, 2n+1, ... have no anomaly at all (none: every sequence has one)"))
    reference_frames: int = Field(100, ge=4, description="frames of the reference pass")
    median_frames: int = Field(60, ge=1, description=(
        "frames, spread over the scene video, whose temporal median is the background plate"))
    zoom: tuple[Positive, Positive] = Field((1.35, 1.7), description=(
        "magnification of the plate in the views at the start and at the end of the route "
        "(the patrol walks forward)"))
    route_yaw_deg: float = Field(6.0, ge=0, description="yaw swept along the route, degrees")
    keystone: tuple[Fraction, Fraction] = Field((0.0, 0.2), description=(
        "range of the views' perspective tilt (top edge narrower by this fraction), per sequence"))
    query_speed: tuple[Positive, Positive] = Field((0.6, 1.6), description=(
        "speed of the query pass relative to the reference pass, drawn per sequence"))
    speed_jitter: float = Field(0.15, ge=0, le=0.9, description=(
        "relative frame-to-frame variation of the query speed"))
    start_offset: Fraction = Field(0.08, description=(
        "the query pass starts up to this fraction of the route late"))
    translation_px: float = Field(6.0, ge=0, description=(
        "pose error of the query: std of its smooth position offset, plate pixels"))
    rotation_deg: float = Field(1.5, ge=0, description="pose error: std of the yaw offset, degrees")
    scale_error: float = Field(0.03, ge=0, lt=0.5, description=(
        "pose error: std of the relative zoom offset"))
    jitter_px: float = Field(0.7, ge=0, description=(
        "pose error: std of the independent per-frame shake, plate pixels"))
    gain: tuple[Positive, Positive] = Field((0.7, 1.3), description=(
        "lighting change of the query: brightness gain range"))
    gamma: tuple[Positive, Positive] = Field((0.75, 1.35), description=(
        "lighting change of the query: gamma range"))
    gradient: float = Field(0.25, ge=0, lt=1, description=(
        "lighting change of the query: largest relative brightness ramp across the view"))
    noise_sigma: float = Field(4.0, ge=0, description="sensor noise std of the query, grey levels")
    reference_noise_sigma: float = Field(2.0, ge=0, description=(
        "sensor noise std of the reference pass, grey levels"))
    jpeg_quality: tuple[Annotated[int, Field(ge=1, le=100)],
                        Annotated[int, Field(ge=1, le=100)]] = Field((60, 90), description=(
                            "JPEG quality range of the query frames (the reference: the top)"))
    objects_per_sequence: tuple[Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)]] = Field(
        (1, 3), description="new objects placed in an anomalous sequence")
    object_scale: tuple[Positive, Positive] = Field((0.9, 1.2), description=(
        "scale of a placed object relative to where it was cut"))
    object_min_area: int = Field(250, ge=1, description=(
        "smallest object cut from the masked source, pixels of its refined mask"))
    object_frame_step: int = Field(10, ge=1, description=(
        "cut objects from every n-th masked frame of the source"))
    object_difference: float = Field(14.0, gt=0, description=(
        "a source mask is refined to the pixels differing from that video's own plate by more "
        "than this (grey levels): a coarse polygon brings no pavement along"))

    @model_validator(mode="after")
    def _ranges(self) -> SynthConfig:
        for name in ("keystone", "query_speed", "gain", "gamma", "jpeg_quality",
                     "objects_per_sequence", "object_scale"):
            _ordered(name, getattr(self, name))
        return self


class PatrolEvalConfig(Section):
    """`vad patrol eval`: UMAD's metric and the patrol diagnostics."""

    box_iou: float = Field(0.5, gt=0, le=1, description=(
        "a predicted box is a true positive when it overlaps a ground-truth box by this IoU"))
    min_box_area: int = Field(64, ge=1, description=(
        "ground-truth regions smaller than this (pixels) are not counted as boxes to find"))
    match_tolerance: int = Field(3, ge=0, description=(
        "a match is right when it is within this many reference frames of the reference frame "
        "nearest to the query's pose (poses.csv)"))
    query_poses: bool = Field(False, description=(
        "give the matcher the query's poses (as odometry would); off, poses.csv only scores "
        "the matching"))
    strip_frames: int = Field(4, ge=1, description="query frames shown in each sequence's strip")


class PatrolConfig(Section):
    """Patrol mode: a reference route against a query route (docs/patrol.md)."""

    synth: SynthConfig = Field(default_factory=SynthConfig)
    eval: PatrolEvalConfig = Field(default_factory=PatrolEvalConfig)
