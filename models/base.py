"""The `Scorer` contract, its checkpoint format and the registry by name.

A scorer declares its `learning_type` (anomalib's distinction: what it learns from), its
params model (a section of the config tree, `vad.config.scorers`), what it needs from the
clip window (`input_spec`), and scores clips; per camera it runs in a `ScoringSession` that
may keep state across calls. Results carry per-frame scores and, optionally, heatmaps,
boxes and labels.

A checkpoint is a directory with `config.json` (scorer name, params, calibration, provenance:
the command that made it, the commit, the training data, measured figures) and
`model.safetensors`. Loading validates all of it and never executes pickled code.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
from safetensors.numpy import load_file, save_file

from models.scoring import ScoringSession, score_source
from streams.sources import Source
from vad.config import Section, fixed_fields, params_model, validated
from vad.config.scorers import SCORER_ENTRIES
from vad.data.training import TrainingSet
from vad.errors import VadError
from vad.registry import Registry
from vad.types import Calibration, Clip, Frame, ScoreResult

CONFIG_FILE = "config.json"
TENSORS_FILE = "model.safetensors"


class LearningType(str, Enum):
    ONE_CLASS = "one-class"  # normality from normal videos
    WEAKLY_SUPERVISED = "weakly-supervised"  # video-level labels only
    REFERENCE_BASED = "reference-based"  # differences from a reference recording
    TRAINING_FREE = "training-free"  # nothing learnt but the calibration


@dataclass(frozen=True)
class InputSpec:
    """What a scorer wants from the clip window."""

    size: tuple[int, int] | None  # (height, width); None keeps the source size
    grayscale: bool
    context: int  # frames of history needed before the first scored frame


def resolve_device(device: str) -> str:
    """`auto` is the GPU when one is present; asking for `cuda` without one is an error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise VadError("device cuda: no GPU is available (use device: auto or cpu)")
    return device


class Scorer(ABC):
    """Scores clips of frames; higher = more anomalous.

    Subclasses are registered with `register_scorer(name)`, declare `Config` (their params
    model) and `learning_type`, and implement `input_spec`, `score`, `fit` and, when they
    learn tensors, `tensors` and `load_tensors`.
    """

    name: ClassVar[str]
    Config: ClassVar[type[Section]]
    learning_type: ClassVar[LearningType]

    def __init__(self, config: Section | None = None, device: str = "auto"):
        self.config = config if config is not None else self.Config()
        self.device = device
        self.calibration = Calibration()
        self.provenance: dict[str, Any] = {}
        # Where a long `fit` writes periodic checkpoints and resumes from (set by callers).
        self.work_dir: Path | None = None

    @property
    @abstractmethod
    def input_spec(self) -> InputSpec: ...

    @abstractmethod
    def score(self, clip: Clip) -> ScoreResult:
        """Scores for `clip.target_indices` (and optional heatmaps, boxes, labels)."""

    @abstractmethod
    def fit(self, training: TrainingSet, progress: bool = True) -> None:
        """Learn from the training set (what from: see `learning_type`), then calibrate."""

    def session(self, camera_id: str, batch: int) -> ScoringSession:
        """Per-camera scoring state; scorers that cache between clips return their own."""
        return ScoringSession(self, camera_id, batch)

    def describe(self, frames: Sequence[Frame]) -> str | None:
        """A short text of what is unusual in an event's frames, for scorers that can say."""
        return None

    def calibrate(self, sources: Sequence[Source], progress: bool = True) -> None:
        """Raw-score statistics on normal footage, for online normalisation."""
        scores = [score_source(self, source, progress=progress).scores for source in sources]
        try:
            self.calibration = Calibration.from_scores(np.concatenate(scores) if scores
                                                       else np.zeros(0))
        except ValueError as exc:
            raise VadError(f"{self.name}: {exc}") from None

    def tensors(self) -> dict[str, np.ndarray]:
        return {}

    def load_tensors(self, tensors: dict[str, np.ndarray]) -> None:
        if tensors:
            raise VadError(f"unexpected tensors {sorted(tensors)}")

    def save(self, directory: str | Path, provenance: dict[str, Any] | None = None) -> Path:
        directory = Path(directory)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            save_file({k: np.ascontiguousarray(v) for k, v in self.tensors().items()},
                      str(directory / TENSORS_FILE))
            meta = {"scorer": self.name, "learning_type": self.learning_type.value,
                    "config": self.config.model_dump(mode="json"),
                    "calibration": asdict(self.calibration),
                    "provenance": {**self.provenance, **(provenance or {})}}
            (directory / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        except OSError as exc:
            raise VadError(f"{directory}: cannot write the checkpoint "
                           f"({exc.strerror or exc})") from None
        return directory


def checked_tensor(tensors: dict[str, np.ndarray], name: str,
                   shape: tuple[int | None, ...] | None = None,
                   dtype: type = np.float32) -> np.ndarray:
    """`tensors[name]`, refused unless it has the dtype, the shape (None: any length on that
    axis) and finite values a model expects."""
    if name not in tensors:
        raise VadError(f"missing tensor {name!r}")
    tensor = tensors[name]
    if tensor.dtype != dtype:
        raise VadError(f"tensor {name!r} is {tensor.dtype}, expected {np.dtype(dtype)}")
    if shape is not None and (len(shape) != tensor.ndim or any(
            want is not None and want != got for want, got in zip(shape, tensor.shape))):
        expected = "x".join("N" if s is None else str(s) for s in shape)
        raise VadError(f"tensor {name!r} has shape {tensor.shape}, expected {expected}")
    if np.issubdtype(tensor.dtype, np.floating) and not np.isfinite(tensor).all():
        raise VadError(f"tensor {name!r} holds NaN or infinite values")
    return tensor


SCORERS: Registry[type[Scorer]] = Registry("scorer")
S = TypeVar("S", bound=type[Scorer])


def register_scorer(name: str) -> Callable[[S], S]:
    """Class decorator: make a scorer available to `get_scorer(name)`. Its `Config` must be
    the params model of its entry in the config tree."""

    def wrap(cls: S) -> S:
        if name in SCORER_ENTRIES and cls.Config is not params_model(name):
            raise TypeError(f"scorer {name!r}: Config must be {params_model(name).__name__}")
        cls.name = name
        SCORERS.register(name)(cls)
        return cls

    return wrap


def list_scorers() -> list[str]:
    return SCORERS.names()


def get_scorer_class(name: str) -> type[Scorer]:
    return SCORERS.get(name)


def get_scorer(name: str, params: Section | dict[str, Any] | None = None,
               device: str = "auto", **fields: Any) -> Scorer:
    """A new, unfitted scorer; `params` (a params model or dict) and `fields` set its params."""
    cls = get_scorer_class(name)
    if fields or isinstance(params, dict):
        base = params.model_dump() if isinstance(params, Section) else dict(params or {})
        params = validated(cls.Config, base | fields, f"{name} params")
    return cls(params, device)


def load_scorer(directory: str | Path, params: Section | None = None,
                device: str = "auto") -> Scorer:
    """A fitted scorer from its checkpoint. `params`, the config's entry for it, may change
    the fields a checkpoint does not fix; asking for another value of a fixed one is an error."""
    directory = Path(directory)
    meta = read_checkpoint_meta(directory)
    cls = get_scorer_class(meta["scorer"])
    config_path = directory / CONFIG_FILE
    saved = validated(cls.Config, meta.get("config", {}), f"{config_path}: config")
    if params is not None:
        saved = _with_runtime_params(saved, params, directory)
    try:
        calibration = Calibration(**meta.get("calibration", {}))
    except (TypeError, ValueError) as exc:
        raise VadError(f"{config_path}: calibration: {exc}") from None
    scorer = cls(saved, device)
    scorer.calibration = calibration
    scorer.provenance = meta.get("provenance", {})
    tensors_path = directory / TENSORS_FILE
    if not tensors_path.is_file():
        raise VadError(f"{directory}: incomplete checkpoint (no {TENSORS_FILE})")
    try:
        tensors = load_file(str(tensors_path))
    except Exception as exc:  # safetensors raises its own error type for damaged files
        raise VadError(f"{tensors_path}: unreadable tensors ({exc})") from None
    try:
        scorer.load_tensors(tensors)
    except VadError as exc:
        raise VadError(f"{tensors_path}: {exc}") from None
    return scorer


def read_checkpoint_meta(directory: Path) -> dict[str, Any]:
    config_path = directory / CONFIG_FILE
    if not config_path.is_file():
        raise VadError(f"{directory}: not a checkpoint (no {CONFIG_FILE})")
    try:
        meta = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise VadError(f"{config_path}: invalid JSON ({exc})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("scorer"), str):
        raise VadError(f"{config_path}: missing the 'scorer' name")
    return meta


def record_figures(directory: str | Path, figures: dict[str, Any]) -> None:
    """Add measured figures (e.g. `vad eval --record`) to a checkpoint's provenance."""
    config_path = Path(directory) / CONFIG_FILE
    meta = read_checkpoint_meta(Path(directory))
    meta.setdefault("provenance", {}).setdefault("figures", {}).update(figures)
    config_path.write_text(json.dumps(meta, indent=2) + "\n")


def _with_runtime_params(saved: Section, params: Section, directory: Path) -> Section:
    fixed = fixed_fields(type(saved))
    changes = {}
    for name in params.model_fields_set:
        wanted, have = getattr(params, name), getattr(saved, name)
        if wanted == have:
            continue
        if name in fixed:
            raise VadError(f"{directory}: params.{name}={wanted!r} differs from the "
                           f"checkpoint's {have!r}, which it was trained with; train a new "
                           "checkpoint to change it")
        changes[name] = wanted
    return saved.model_copy(update=changes) if changes else saved
