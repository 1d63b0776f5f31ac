"""The typed configuration tree: every default lives in its sections, each field with a
description; a YAML file, then `--set KEY=VALUE` overrides, change it. Everything is validated
at load time (unknown keys, wrong types, NaN, out-of-range values), so a bad config is a
one-line error before anything runs.

Per-camera sections (`cameras: {ID: {...}}`) are merged over the global pipeline sections
(`scorers`, `window`, `postprocess`, `events`, `live`): a camera lists only what differs.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, Field, StringConstraints, ValidationError, model_validator

from vad.config.base import Section, shorthand
from vad.config.patrol import PatrolConfig
from vad.config.evidence import ClipConfig
from vad.config.outputs import OutputsConfig
from vad.config.reasoning import ReasoningConfig
from vad.config.scorers import (FrameDiffEntry, ScorerEntry, SnippetEncoding, fixed_fields,
                                params_model, scorer_entry)
from vad.config.sections import (DashboardConfig, DataConfig, EventConfig, KafkaConfig,
                                 PostprocessConfig, PublishConfig, ServeConfig, StoreConfig,
                                 WindowConfig)
from vad.config.sources import LiveSourceConfig
from vad.config.vane import VaneConfig
from vad.config.workers import WorkersConfig
from vad.errors import VadError

__all__ = ["CameraConfig", "EventConfig", "LiveSourceConfig", "PipelineSettings",
           "PostprocessConfig", "ReasoningConfig", "ScorerEntry", "Section", "VadConfig",
           "VaneConfig", "config_data", "config_yaml", "default_of", "fixed_fields",
           "load_config", "params_model", "scorer_entry", "set_value", "validated"]

CameraId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]


class PipelineSettings(Section):
    """What one camera runs: how its live stream is read, its scorers and the post-processing
    of their scores."""

    scorers: list[ScorerEntry] = Field(default_factory=lambda: [FrameDiffEntry()], min_length=1,
                                       description="scorers fused into one score")
    window: WindowConfig = Field(default_factory=WindowConfig)
    postprocess: PostprocessConfig = Field(default_factory=PostprocessConfig)
    events: EventConfig = Field(default_factory=EventConfig)
    live: LiveSourceConfig = Field(default_factory=LiveSourceConfig)


PIPELINE_FIELDS = tuple(PipelineSettings.model_fields)


class CameraConfig(PipelineSettings):
    """One camera: where its frames come from, and what differs from the global sections."""

    source: str | None = Field(None, description=(
        "video file, frame folder or stream URL (rtsp://, http://, ...) of this camera"))


class VadConfig(PipelineSettings):
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description=(
        "where models run; auto = the GPU when one is present"))
    store: StoreConfig = Field(default_factory=StoreConfig)
    reasoning: ReasoningConfig = Field(default_factory=ReasoningConfig)
    kafka: KafkaConfig = Field(default_factory=KafkaConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    publish: PublishConfig = Field(default_factory=PublishConfig)
    dashboard: DashboardConfig = Field(default_factory=DashboardConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    patrol: PatrolConfig = Field(default_factory=PatrolConfig)
    features: SnippetEncoding = Field(default_factory=SnippetEncoding, description=(
        "snippet embeddings written by `vad features` (the vadclip scorer's input)"))
    vane: VaneConfig = Field(default_factory=VaneConfig)
    clips: ClipConfig = Field(default_factory=ClipConfig)
    outputs: OutputsConfig = Field(default_factory=OutputsConfig)
    workers: WorkersConfig = Field(default_factory=WorkersConfig)
    cameras: dict[CameraId, CameraConfig] = Field(default_factory=dict, description=(
        "per-camera sections, merged over the global scorers/window/postprocess/events/live"))

    @model_validator(mode="before")
    @classmethod
    def _shorthands_and_inheritance(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if "store" in data:
            data["store"] = shorthand(data["store"], "url")
        cameras = data.get("cameras")
        if isinstance(cameras, dict):
            inherited = {key: data[key] for key in PIPELINE_FIELDS if key in data}
            data["cameras"] = {camera: _merged(inherited, overrides or {})
                               for camera, overrides in cameras.items()}
        return data

    def camera(self, camera_id: str) -> PipelineSettings:
        """The settings a camera runs with: its own section, else the global ones."""
        if camera_id in self.cameras:
            return self.cameras[camera_id]
        return PipelineSettings(**{key: getattr(self, key) for key in PIPELINE_FIELDS})

    def all_settings(self) -> list[PipelineSettings]:
        """The global settings and every camera's: what a pipeline may run."""
        return [self.camera(""), *self.cameras.values()]


def _merged(base: Any, override: Any) -> Any:
    """Mappings merge key by key; anything else (lists included) replaces."""
    if isinstance(base, BaseModel):
        base = base.model_dump(exclude_unset=True)
    if isinstance(override, BaseModel):
        override = override.model_dump(exclude_unset=True)
    if not isinstance(base, dict) or not isinstance(override, dict):
        return copy.deepcopy(override)
    merged = copy.deepcopy(base)
    for key, value in override.items():
        merged[key] = _merged(base[key], value) if key in base else copy.deepcopy(value)
    return merged


def _parse_value(assignment: str, text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        reason = str(getattr(exc, "problem", None) or exc).splitlines()[0]
        raise VadError(f"--set {assignment!r}: the value is not YAML ({reason})") from None


def _apply_override(data: dict[str, Any], assignment: str) -> None:
    """`a.b.c=VALUE`; a number part indexes a list (`scorers.0.weight=2`)."""
    key, sep, value = assignment.partition("=")
    if not sep or not key or any(not part for part in key.split(".")):
        raise VadError(f"--set {assignment!r}: expected KEY=VALUE, e.g. events.threshold=2.5")
    node: Any = data
    *parents, leaf = key.split(".")
    for part in parents:
        node = _child(node, part, assignment)
    if isinstance(node, list):
        index = _index(node, leaf, assignment)
        node[index] = _parse_value(assignment, value)
    else:
        node[leaf] = _parse_value(assignment, value)


def _child(node: Any, part: str, assignment: str) -> Any:
    if isinstance(node, list):
        return node[_index(node, part, assignment)]
    if not isinstance(node, dict):
        raise VadError(f"--set {assignment!r}: {part!r} is inside a value, not a section")
    child = node.get(part)
    if child is None:  # the section keeps its defaults but for this key
        child = node[part] = ([{"name": entry.name} for entry in VadConfig().scorers]
                              if part == "scorers" else {})
    elif isinstance(child, str) and part in _SHORTHANDS:
        child = node[part] = shorthand(child, _SHORTHANDS[part])
    if not isinstance(child, dict | list):
        raise VadError(f"--set {assignment!r}: {part!r} is a value, not a section")
    return child


# Sections a bare string may stand for, and the field it fills.
_SHORTHANDS = {"store": "url", "describer": "kind", "deduction": "kind", "llm": "spec"}


def _index(node: list, part: str, assignment: str) -> int:
    if not part.isascii() or not part.isdigit() or int(part) >= len(node):
        raise VadError(f"--set {assignment!r}: {part!r} is not an index of a list of "
                       f"{len(node)} item(s)")
    return int(part)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise VadError(f"{path}: cannot read config ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise VadError(f"{path}: not a text file") from None
    except yaml.YAMLError as exc:
        raise VadError(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from None
    except RecursionError:
        raise VadError(f"{path}: nested too deeply to be a config") from None
    if loaded is not None and not isinstance(loaded, dict):
        raise VadError(f"{path}: the config must be a mapping of sections")
    return loaded or {}


def config_data(path: str | Path | None = None, overrides: list[str] | None = None,
                data: dict[str, Any] | None = None) -> dict[str, Any]:
    """The YAML file (or `data`) with `KEY=VALUE` overrides applied (dotted keys), not
    validated yet."""
    if data is None:
        data = _read_yaml(Path(path)) if path is not None else {}
    for assignment in overrides or []:
        _apply_override(data, assignment)
    return data


def set_value(data: dict[str, Any], key: str, value: Any) -> None:
    """Set a dotted key of unvalidated config data to a Python value (a command-line flag)."""
    *parents, leaf = key.split(".")
    node: Any = data
    for part in parents:
        node = _child(node, part, key)
    node[leaf] = value


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> VadConfig:
    """Defaults, then the YAML file, then `KEY=VALUE` overrides (dotted keys)."""
    return validated(VadConfig, config_data(path, overrides), str(path or "config"))


def default_of(key: str) -> Any:
    """The default of a dotted config key, for help texts (`kafka.bootstrap`)."""
    node: Any = VadConfig()
    for part in key.split("."):
        node = getattr(node, part, None)  # inside an absent optional section: no default
    return node


def validated(model: type[Section], data: Any, where: str) -> Any:
    """`model` from `data`, a validation error as one `VadError` line."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise VadError(f"{where}: {validation_message(exc)}") from None
    except RecursionError:
        raise VadError(f"{where}: nested too deeply") from None


def validation_message(exc: ValidationError) -> str:
    first = exc.errors()[0]
    loc = first["loc"]
    location = ".".join(str(part) for i, part in enumerate(loc)
                        if not (i and part in _UNION_TAGS and _tagged(loc[i - 1])))
    message = first["msg"].removeprefix("Value error, ")
    return f"{location}: {message}" if location else message


# Discriminated unions name the chosen member in error locations, right after the union's
# field (a scorers list index, describer, deduction); users never wrote it. The same word
# elsewhere is a field (`reasoning.llm`).
_UNION_TAGS = {"frame-diff", "ct-d2gan", "motion", "patrol", "vadclip", "detector", "files", "vlm",
               "embed", "llm", "kafka", "webhook"}


def _tagged(part: object) -> bool:
    return isinstance(part, int) or part in ("describer", "deduction", "targets")


def config_yaml(config: Section, comments: bool = True) -> str:
    """The config as YAML; with `comments`, each field's description beside it."""
    if not comments:
        return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
    return "\n".join(_commented(config, 0)) + "\n"


def _commented(section: BaseModel, indent: int) -> list[str]:
    pad, lines = " " * indent, []
    fields = type(section).model_fields
    for name in sorted(fields, key=lambda n: n not in ("name", "kind")):  # the tag first
        info, value = fields[name], getattr(section, name)
        described = info.description or (isinstance(value, BaseModel) and value.__doc__
                                          and value.__doc__.split("\n")[0])
        note = f"  # {described}" if described else ""
        if isinstance(value, BaseModel):
            lines += [f"{pad}{name}:{note}", *_commented(value, indent + 2)]
        elif isinstance(value, list) and value and isinstance(value[0], BaseModel):
            lines.append(f"{pad}{name}:{note}")
            for item in value:
                item_lines = _commented(item, indent + 4)
                lines += [f"{pad}  - {item_lines[0].lstrip()}", *item_lines[1:]]
        elif isinstance(value, dict) and value and isinstance(next(iter(value.values())),
                                                              BaseModel):
            lines.append(f"{pad}{name}:{note}")
            for key, item in value.items():
                lines += [f"{pad}  {_scalar(key)}:", *_commented(item, indent + 4)]
        else:
            lines.append(f"{pad}{name}: {_scalar(_jsonable(value))}{note}")
    return lines


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def _scalar(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix(
        "\n...").removesuffix("...").strip()
