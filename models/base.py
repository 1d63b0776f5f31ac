"""The `Scorer` interface, its checkpoint format and the registry by name.

A checkpoint is a directory with `config.json` (scorer name, its config, calibration) and
`model.safetensors` (its tensors). Loading never executes pickled code.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
from safetensors.numpy import load_file, save_file

from streams.sources import Source
from vad.errors import VadError
from vad.types import Clip, Frame, ScoreResult

CONFIG_FILE = "config.json"
TENSORS_FILE = "model.safetensors"


@dataclass(frozen=True)
class InputSpec:
    """What a scorer wants from the windower."""

    size: tuple[int, int] | None  # (height, width); None keeps the source size
    grayscale: bool
    context: int  # frames of history needed before the first scored frame


@dataclass
class Calibration:
    """Statistics of the raw score on normal footage, for online normalisation."""

    mean: float = 0.0
    std: float = 1.0
    count: int = 0

    @classmethod
    def from_scores(cls, scores: np.ndarray) -> "Calibration":
        scores = np.asarray(scores, dtype=np.float64)
        return cls(float(scores.mean()), float(scores.std()) or 1.0, int(scores.size))


class Scorer(ABC):
    """Scores clips of frames; higher = more anomalous.

    Subclasses declare `name` and a dataclass `Config`, and implement `input_spec`,
    `score` and, when they learn, `fit`, `tensors` and `load_tensors`.
    """

    name: ClassVar[str]
    Config: ClassVar[type] = dict

    def __init__(self, config: Any | None = None):
        self.config = config if config is not None else self.Config()
        self.calibration = Calibration()
        # Where a long `fit` may write periodic checkpoints and resume from (set by callers).
        self.work_dir: Path | None = None

    @property
    @abstractmethod
    def input_spec(self) -> InputSpec: ...

    @abstractmethod
    def score(self, clip: Clip) -> ScoreResult:
        """Scores for `clip.target_indices` (and optional per-pixel heatmaps)."""

    def describe(self, frames: Sequence[Frame]) -> str | None:
        """A short text of what is unusual in an event's frames, for scorers that can say."""
        return None

    def fit(self, sources: Sequence[Source], progress: bool = True) -> None:
        """Learn normality from normal footage. Stateless scorers only calibrate."""
        self.calibration = Calibration.from_scores(self.raw_scores(sources, progress))

    def raw_scores(self, sources: Sequence[Source], progress: bool = True) -> np.ndarray:
        from vad.scoring import score_source

        scores = [score_source(self, source, progress=progress).scores for source in sources]
        return np.concatenate(scores) if scores else np.zeros(0)

    def tensors(self) -> dict[str, np.ndarray]:
        return {}

    def load_tensors(self, tensors: dict[str, np.ndarray]) -> None:
        if tensors:
            raise VadError(f"{self.name}: checkpoint has unexpected tensors {sorted(tensors)}")

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {"scorer": self.name, "config": _config_dict(self.config),
                "calibration": asdict(self.calibration)}
        save_file({k: np.ascontiguousarray(v) for k, v in self.tensors().items()},
                  str(directory / TENSORS_FILE))
        (directory / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        return directory

    @classmethod
    def from_checkpoint(cls, directory: Path, meta: dict[str, Any]) -> "Scorer":
        scorer = cls(_config_from_dict(cls.Config, meta.get("config", {}), directory))
        scorer.calibration = Calibration(**meta.get("calibration", {}))
        tensors_path = directory / TENSORS_FILE
        if not tensors_path.is_file():
            raise VadError(f"{directory}: incomplete checkpoint (no {TENSORS_FILE})")
        try:
            tensors = load_file(str(tensors_path))
        except Exception as exc:  # safetensors raises its own error type for damaged files
            raise VadError(f"{tensors_path}: unreadable tensors ({exc})") from None
        try:
            scorer.load_tensors(tensors)
        except KeyError as exc:
            raise VadError(f"{tensors_path}: missing tensor {exc}") from None
        return scorer


def _config_dict(config: Any) -> dict[str, Any]:
    return asdict(config) if hasattr(config, "__dataclass_fields__") else dict(config)


def _config_from_dict(config_cls: type, values: dict[str, Any], where: Path) -> Any:
    if not hasattr(config_cls, "__dataclass_fields__"):
        return config_cls(values)
    known = {f.name for f in fields(config_cls)}
    unknown = set(values) - known
    if unknown:
        raise VadError(f"{where}: unknown config keys {sorted(unknown)}")
    try:
        return config_cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
    except (TypeError, ValueError) as exc:
        raise VadError(f"{where}: invalid config ({exc})") from None


_REGISTRY: dict[str, type[Scorer]] = {}
S = TypeVar("S", bound=type[Scorer])


def register_scorer(name: str) -> Callable[[S], S]:
    """Class decorator: make a scorer available to `get_scorer(name)`."""

    def wrap(cls: S) -> S:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"scorer {name!r} is already registered")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def list_scorers() -> list[str]:
    return sorted(_REGISTRY)


def get_scorer_class(name: str) -> type[Scorer]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise VadError(f"unknown scorer {name!r}; available: {', '.join(list_scorers())}") from None


def get_scorer(name: str, **params: Any) -> Scorer:
    """A new, unfitted scorer; `params` override fields of its config."""
    cls = get_scorer_class(name)
    return cls(_config_from_dict(cls.Config, params, Path(f"<{name} params>")) if params else None)


def load_scorer(directory: str | Path) -> Scorer:
    directory = Path(directory)
    config_path = directory / CONFIG_FILE
    if not config_path.is_file():
        raise VadError(f"{directory}: not a checkpoint (no {CONFIG_FILE})")
    try:
        meta = json.loads(config_path.read_text())
    except json.JSONDecodeError as exc:
        raise VadError(f"{config_path}: invalid JSON ({exc})") from None
    if "scorer" not in meta:
        raise VadError(f"{config_path}: missing the 'scorer' name")
    return get_scorer_class(meta["scorer"]).from_checkpoint(directory, meta)
