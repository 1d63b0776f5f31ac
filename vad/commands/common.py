"""Argument helpers shared by subcommands: the config file, `--set` overrides, and flags that
stand for config keys (their defaults are the config's own, shown in the help)."""

from __future__ import annotations

import argparse
import shlex
import subprocess
from pathlib import Path
from typing import Any

import yaml

from vad.config import VadConfig, config_data, default_of, set_value, validated
from vad.errors import VadError

CONFIG_DEST = "config:"  # argparse dest prefix of flags that set a config key


def add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="YAML config file (see configs/ and "
                                                    "`vad config show`)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="override a config value, e.g. events.threshold=2.5")


def config_flag(parser: argparse.ArgumentParser, *flags: str, key: str, help: str,
                **options: Any) -> None:
    """A flag for the config key `key`; unset, the config (file, --set, default) decides."""
    default = default_of(key)
    shown = "none" if default is None else default
    parser.add_argument(*flags, dest=CONFIG_DEST + key, default=None,
                        help=f"{help} (config {key}, default {shown})", **options)


def add_scorer_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scorer", help="scorer name, or several joined by '+' to fuse them "
                                         "(default: the config's scorers)")
    parser.add_argument("--checkpoint", action="append", default=[], metavar="DIR",
                        help="checkpoint directory; repeat once per fused scorer, in order")


def config_from_args(args: argparse.Namespace, extra: dict[str, Any] | None = None) -> VadConfig:
    """The effective config: defaults, the file, `--set`, then the command's own flags (and
    `extra` dotted keys a command derives from its other arguments)."""
    # --scorer and --checkpoint say which scorers run; --set then tunes them (a --set on
    # scorers.0 applies to the scorer --scorer names, not to one it replaced).
    data = config_data(args.config)
    _apply_scorer_args(data, args)
    data = config_data(None, args.overrides, data)
    flags = {name.removeprefix(CONFIG_DEST): value for name, value in vars(args).items()
             if name.startswith(CONFIG_DEST) and value is not None}
    for key, value in {**flags, **(extra or {})}.items():
        set_value(data, key, value)
    return validated(VadConfig, data, str(args.config or "config"))


def _apply_scorer_args(data: dict[str, Any], args: argparse.Namespace) -> None:
    entries = data.get("scorers")
    if entries is None:
        entries = [{"name": entry.name} for entry in VadConfig().scorers]
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise VadError("config: scorers must be a list of scorer entries")
    checkpoints = getattr(args, "checkpoint", [])
    if getattr(args, "scorer", None):
        names = args.scorer.split("+")
        configured = {entry.get("name"): entry for entry in entries}
        entries = [dict(configured.get(name, {"name": name})) for name in names]
        if checkpoints and len(checkpoints) != len(names):
            raise VadError(f"{len(checkpoints)} --checkpoint for {len(names)} scorers "
                           f"({args.scorer}): give one per scorer, in order")
    elif checkpoints and len(checkpoints) != len(entries):
        raise VadError(f"{len(checkpoints)} --checkpoint for {len(entries)} configured scorers")
    for entry, checkpoint in zip(entries, checkpoints):
        entry["checkpoint"] = checkpoint
    for pair in getattr(args, "param", None) or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise VadError(f"--param {pair!r}: expected KEY=VALUE")
        try:
            entries[0].setdefault("params", {})[key] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise VadError(f"--param {pair!r}: the value is not YAML") from None
    data["scorers"] = entries


def writable_dir(path: Path, what: str) -> Path:
    """Make the output folder now, so a run that cannot write its result fails before the
    work rather than after it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VadError(f"{path}: cannot write the {what} ({exc.strerror or exc})") from None
    return path


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not at least 1")
    return value


def unit_fraction(text: str) -> float:
    """argparse type: a number in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value <= 1:  # NaN fails this too
        raise argparse.ArgumentTypeError(f"{text} is not in (0, 1]")
    return value


def open_sources(config: VadConfig, specs: list[str], camera_ids: list[str | None]) -> list:
    """The SOURCEs given (with their camera ids), or else every configured camera that names a
    `source`; a stream is read with its camera's `live` settings (the global ones for a camera
    the config does not name)."""
    from streams.sources import open_source

    pairs = (list(zip(specs, camera_ids)) if specs else
             [(camera.source, cid) for cid, camera in config.cameras.items() if camera.source])
    sources = [open_source(spec, cid, config.camera(cid or "").live) for spec, cid in pairs]
    cameras = [source.camera_id for source in sources]
    if len(set(cameras)) != len(cameras):
        raise VadError(f"camera ids must be unique, got {', '.join(cameras)}")
    return sources


def expand_sources(inputs: list[str]) -> list:
    """Videos, frame folders and URLs; a folder holding videos stands for each of them."""
    from streams.sources import VIDEO_SUFFIXES, open_source

    sources = []
    for item in inputs:
        path = Path(item)
        videos = sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES) \
            if path.is_dir() else []
        sources += [open_source(v) for v in videos] if videos else [open_source(item)]
    if not sources:
        raise VadError("no input videos")
    return sources


def build_reasoner_for(config: VadConfig):
    """The configured reasoner (None without rules), built before any frame is read."""
    from models.base import resolve_device
    from reasoning.reasoner import build_reasoner

    return build_reasoner(config.reasoning, resolve_device(config.device))


def provenance(args: argparse.Namespace, training: dict[str, object]) -> dict[str, object]:
    """Where a checkpoint comes from: the command line, the commit, the training data."""
    return {"command": shlex.join(["vad", *args.argv]), "commit": _commit(),
            "training_data": training}


def _commit() -> str | None:
    """The repository's commit, with `-dirty` when it has uncommitted changes."""
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}-dirty" if dirty else head
