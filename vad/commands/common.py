"""Argument helpers shared by subcommands."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from streams.sources import VIDEO_SUFFIXES, Source, open_source
from vad.config import ScorerSpec, VadConfig, load_config
from vad.errors import VadError


def add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="YAML config file (see configs/)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a config value, e.g. events.threshold=2.5")


def add_scorer_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scorer", help="scorer name, or several joined by '+' to fuse them "
                                         "(default: the config's scorers)")
    parser.add_argument("--checkpoint", action="append", default=[], metavar="DIR",
                        help="checkpoint directory; repeat once per fused scorer, in order")


def config_from_args(args: argparse.Namespace) -> VadConfig:
    config = load_config(args.config, args.overrides)
    names = args.scorer.split("+") if getattr(args, "scorer", None) else None
    checkpoints = getattr(args, "checkpoint", [])
    if names is None:
        if checkpoints:
            if len(checkpoints) != len(config.scorers):
                raise VadError(f"{len(checkpoints)} --checkpoint for {len(config.scorers)} "
                               "configured scorers")
            for spec, checkpoint in zip(config.scorers, checkpoints):
                spec.checkpoint = checkpoint
        return config
    if checkpoints and len(checkpoints) != len(names):
        raise VadError(f"{len(checkpoints)} --checkpoint for {len(names)} scorers "
                       f"({args.scorer}): give one per scorer, in order")
    configured = {spec.name: spec for spec in config.scorers}
    config.scorers = [
        ScorerSpec(name=name, weight=configured[name].weight if name in configured else 1.0,
                   checkpoint=checkpoints[i] if checkpoints else None,
                   params=configured[name].params if name in configured else {})
        for i, name in enumerate(names)]
    return config


def parse_params(pairs: list[str]) -> dict[str, object]:
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise VadError(f"--param {pair!r}: expected KEY=VALUE")
        params[key] = yaml.safe_load(value)
    return params


def expand_sources(inputs: list[str]) -> list[Source]:
    """Videos, frame folders and URLs; a folder holding videos stands for each of them."""
    sources = []
    for item in inputs:
        path = Path(item)
        videos = sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES) \
            if path.is_dir() else []
        sources += [open_source(v) for v in videos] if videos else [open_source(item)]
    if not sources:
        raise VadError("no input videos")
    return sources
