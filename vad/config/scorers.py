"""Scorer sections: one params model per registered scorer, and the `scorers:` list entry.

A params field marked `fixed` is learnt with: a checkpoint fixes it, and a config that asks
for another value is refused when the checkpoint loads (retrain instead). The other fields
(training schedule, inference batching, description thresholds) may differ from the
checkpoint's and then apply.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from vad.config.base import Section

Size = tuple[Annotated[int, Field(ge=8)], Annotated[int, Field(ge=8)]]


def fixed(default: Any, description: str, **constraints: Any) -> Any:
    """A params field that a checkpoint fixes (the weights or statistics depend on it)."""
    return Field(default, description=description, json_schema_extra={"fixed": True},
                 **constraints)


def fixed_fields(params: type[Section]) -> set[str]:
    return {name for name, info in params.model_fields.items()
            if isinstance(info.json_schema_extra, dict) and info.json_schema_extra.get("fixed")}


class FrameDiffParams(Section):
    """Frame-difference baseline: per-cell change against normal footage."""

    model_config = {"frozen": True}
    size: Size = fixed((120, 180), "input (height, width) in pixels")
    cell: int = fixed(8, "grid cell side in pixels", ge=1)


class CTD2GANParams(Section):
    """CT-D2GAN frame prediction (docs/ct_d2gan.md)."""

    model_config = {"frozen": True}
    size: Size = fixed((64, 96), "input (height, width); multiples of 8")
    grayscale: bool = fixed(True, "grey input (else BGR)")
    frames: int = fixed(4, "T: past frames per prediction", ge=1)
    width: int = fixed(16, "base channel width, doubled twice down the encoder", ge=1)
    heads: int = fixed(4, "temporal self-attention heads; must divide 4 * width", ge=1)
    disc_width: int = fixed(16, "discriminators' base channel width", ge=1)
    intensity_weight: float = Field(4.0, ge=0, description=(
        "L2 intensity loss weight (Liu et al.'s 1 for frames in [-1, 1], x4 for [0, 1] frames)"))
    gradient_weight: float = Field(2.0, ge=0, description="gradient difference loss weight")
    image_adv_weight: float = Field(0.05, ge=0, description="image discriminator loss weight")
    video_adv_weight: float = Field(0.05, ge=0, description="video discriminator loss weight")
    score_quantile: float = fixed(0.99, (
        "the score compares this quantile of the per-pixel prediction error with the same "
        "quantile of the frame's change (docs/ct_d2gan.md)"), gt=0, lt=1)
    change_floor: float = fixed(1e-4, (
        "squared-intensity floor of the frame's change in the score, so a still scene does not "
        "divide by noise"), gt=0)
    iterations: int = Field(5000, ge=0, description="training iterations")
    batch_size: int = Field(8, ge=1, description="training clips per iteration")
    lr_generator: float = Field(2e-4, gt=0, description="generator Adam learning rate")
    lr_discriminator: float = Field(2e-5, gt=0, description="discriminators' Adam learning rate")
    seed: int = Field(0, description="seed of the initial weights and of the batch sampler")
    checkpoint_every: int = Field(250, ge=1, description="iterations between training checkpoints")
    inference_batch: int = Field(16, ge=1, description="predictions per generator call")
    precision: Literal["auto", "float32", "bfloat16"] = Field("auto", description=(
        "arithmetic of training and scoring: bfloat16 autocast (about 1.6x faster on CPUs "
        "with native bfloat16, e.g. AMX) or float32; auto = bfloat16 on a GPU or such a CPU, "
        "else float32"))

    @model_validator(mode="after")
    def _shapes_fit(self) -> CTD2GANParams:
        if self.size[0] % 8 or self.size[1] % 8:
            raise ValueError(f"size {self.size} must be multiples of 8")
        if (4 * self.width) % self.heads:
            raise ValueError(f"4 * width ({4 * self.width}) must divide into {self.heads} heads")
        return self

    @property
    def channels(self) -> int:
        return 1 if self.grayscale else 3


class MotionParams(Section):
    """Hawk-style motion-aware scorer (docs/motion.md)."""

    model_config = {"frozen": True}
    size: Size = fixed((240, 360), "input (height, width); flow is most accurate at full Ped2 size")
    flow: Literal["dis-ultrafast", "dis-fast", "dis-medium", "farneback"] = fixed(
        "dis-medium", "optical flow method")
    block: int = fixed(16, "block side in pixels; a cell is a 2x2-block window", ge=2)
    move_threshold: float = fixed(0.4, "px/frame: Hawk's mask keeps pixels moving faster", ge=0)
    speed_edges: tuple[float, ...] = fixed((1.0, 2.0, 3.5, 6.0),
                                           "speed bin edges (px/frame) above move_threshold")
    orientations: int = fixed(8, "flow direction bins", ge=1)
    gradient_bins: int = fixed(9, "unsigned gradient orientation bins of each appearance histogram",
                               ge=1)
    masked_weight: float = fixed(0.3, "weight of the flow-masked frame's gradient histogram "
                                      "inside the motion branch (what moves)", ge=0)
    appearance_weight: float = fixed(0.0, "appearance branch inside the memory-bank vector; 0 = "
                                          "it only feeds the consistency error", ge=0)
    position_weight: float = fixed(0.3, "cell centre (0..1) in the bank vector: position aware",
                                   ge=0)
    min_moving_fraction: float = fixed(0.05, "cells with less moving area are normal (score 0)",
                                       ge=0, le=1)
    bank_size: int = fixed(20000, "normal cells kept in the k-NN memory bank", ge=2)
    k: int = fixed(1, "nearest neighbours averaged", ge=1)
    consistency_dim: int = fixed(8, "canonical correlation dimensions of the consistency", ge=1)
    consistency_weight: float = fixed(0.25, "weight of the appearance-motion consistency error",
                                      ge=0)
    seed: int = fixed(0, "seed of the memory-bank sample")
    describe_min_z: float = Field(2.0, description=(
        "descriptions report only cells this many calibration std above the normal mean"))

    @model_validator(mode="after")
    def _cells_fit(self) -> MotionParams:
        if self.bank_size <= self.k:
            raise ValueError(f"bank_size ({self.bank_size}) must exceed k ({self.k})")
        if min(self.size) < 2 * self.block:
            raise ValueError(f"size {self.size} is smaller than one 2x2-block cell")
        return self


class _ScorerEntry(Section):
    checkpoint: str | None = Field(None, description=(
        "checkpoint directory written by `vad fit`; without one, `vad eval` fits the scorer "
        "on the benchmark's training split and `vad run` refuses to start"))
    weight: float = Field(1.0, gt=0, description="weight of this scorer in the fused score")


class FrameDiffEntry(_ScorerEntry):
    name: Literal["frame-diff"] = Field("frame-diff", description="registered scorer name")
    params: FrameDiffParams = Field(default_factory=FrameDiffParams)


class CTD2GANEntry(_ScorerEntry):
    name: Literal["ct-d2gan"] = Field(description="registered scorer name")
    params: CTD2GANParams = Field(default_factory=CTD2GANParams)


class MotionEntry(_ScorerEntry):
    name: Literal["motion"] = Field(description="registered scorer name")
    params: MotionParams = Field(default_factory=MotionParams)


ScorerEntry = Annotated[FrameDiffEntry | CTD2GANEntry | MotionEntry, Field(discriminator="name")]
"""One scorer of the pipeline: a registered name, its checkpoint, fusion weight and params."""

SCORER_ENTRIES: dict[str, type[_ScorerEntry]] = {
    entry.model_fields["name"].annotation.__args__[0]: entry
    for entry in (FrameDiffEntry, CTD2GANEntry, MotionEntry)}


def scorer_entry(name: str, **values: Any) -> _ScorerEntry:
    """A validated `scorers:` entry for a scorer name (`vad fit --scorer`, `--scorer a+b`)."""
    if name not in SCORER_ENTRIES:
        raise ValueError(f"unknown scorer {name!r}; available: {', '.join(sorted(SCORER_ENTRIES))}")
    return SCORER_ENTRIES[name].model_validate({"name": name, **values})


def params_model(name: str) -> type[Section]:
    return SCORER_ENTRIES[name].model_fields["params"].annotation
