"""Typed configuration tree. Every default lives here; YAML files and `--set` override it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from vad.errors import VadError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ScorerSpec(_Section):
    """One scorer of the pipeline: a registered name, its checkpoint, its fusion weight."""

    name: str = "frame-diff"
    checkpoint: str | None = None
    weight: float = Field(1.0, gt=0)
    params: dict[str, Any] = Field(default_factory=dict)


class PostprocessConfig(_Section):
    # Offline (evaluation) protocol: Gaussian sigma in frames over the whole video.
    smoothing_sigma: float = Field(3.0, ge=0)
    # Online protocol: causal smoothing uses the past `3 * sigma` frames of a half-Gaussian.
    online_smoothing_sigma: float = Field(3.0, ge=0)
    # Weight of the scorer's calibration (normal footage) statistics in the running
    # normaliser, counted as this many frames of history.
    calibration_weight: int = Field(500, ge=0)
    # The running normaliser adapts only to frames below this z-score (normal-looking ones).
    adapt_below: float = 1.0


class EventConfig(_Section):
    """Event detection on the fused, normalised score (z-score units in the online path)."""

    threshold: float = 3.0
    # Hysteresis: an open event continues while the score stays above this.
    release_threshold: float = 2.0
    min_duration: int = Field(5, ge=1, description="frames")
    merge_gap: int = Field(10, ge=0, description="frames")

    @model_validator(mode="after")
    def _release_not_above_threshold(self) -> "EventConfig":
        if self.release_threshold > self.threshold:
            raise ValueError("release_threshold must not exceed threshold")
        return self


class WindowConfig(_Section):
    # Frames scored per call after each scorer's own history context.
    batch: int = Field(8, ge=1)


class ReasoningConfig(_Section):
    """Explained alerts (`reasoning.reasoner.build_reasoner`); absent = no explanations."""

    rules: str = Field(description="rules file (four sections, see docs/reasoning.md)")
    describer: str = "detector"  # files | detector | vlm
    describer_params: dict[str, Any] = Field(default_factory=dict)
    deduction: str = "embed"  # embed | llm
    llm: str | None = None  # transformers:DIR or openai:URL[#MODEL], for deduction llm
    keyframes: int = Field(8, ge=1, description="event frames judged, peak included")


class VadConfig(_Section):
    scorers: list[ScorerSpec] = Field(default_factory=lambda: [ScorerSpec()])
    window: WindowConfig = Field(default_factory=WindowConfig)
    postprocess: PostprocessConfig = Field(default_factory=PostprocessConfig)
    events: EventConfig = Field(default_factory=EventConfig)
    store: str = "sqlite:///vad.db"
    camera_id: str | None = None
    reasoning: ReasoningConfig | None = None


def _parse_value(text: str) -> Any:
    return yaml.safe_load(text)


def _apply_override(data: dict[str, Any], assignment: str) -> None:
    key, sep, value = assignment.partition("=")
    if not sep or not key:
        raise VadError(f"--set {assignment!r}: expected KEY=VALUE, e.g. events.threshold=2.5")
    node = data
    *parents, leaf = key.split(".")
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise VadError(f"--set {assignment!r}: {part!r} is not a section")
        node = child
    node[leaf] = _parse_value(value)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> VadConfig:
    """Defaults, then the YAML file, then `KEY=VALUE` overrides (dotted keys)."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            loaded = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise VadError(f"{path}: cannot read config ({exc.strerror})") from None
        except yaml.YAMLError as exc:
            raise VadError(f"{path}: invalid YAML ({exc})") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise VadError(f"{path}: the config must be a mapping of sections")
        data = loaded or {}
    for assignment in overrides or []:
        _apply_override(data, assignment)
    try:
        return VadConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "config"
        raise VadError(f"{path or 'config'}: {where}: {first['msg']}") from None
