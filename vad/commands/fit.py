"""`vad fit VIDEOS... --scorer NAME --out DIR`: train or fit a scorer.

One-class scorers learn from normal videos. Weakly supervised ones (`vadclip`) need
video-level labels: give a VadCLIP list CSV (`path,label`, paths to snippet-feature .npy
files or videos; see docs/vadclip.md), or normal videos plus `--anomalous VIDEO...`."""

from __future__ import annotations

import argparse
from pathlib import Path

from vad.commands.common import (add_config_args, config_from_args, expand_sources, provenance,
                                 writable_dir)


def register(subparsers) -> None:
    parser = subparsers.add_parser("fit", help="train or fit a scorer on (labelled) videos",
                                   description=__doc__)
    parser.add_argument("inputs", nargs="+", help="normal videos, frame folders, folders of "
                                                  "videos, or a labelled list CSV")
    parser.add_argument("--anomalous", nargs="+", default=[], metavar="VIDEO",
                        help="anomalous videos (video-level label), for weakly supervised "
                             "scorers; the inputs are then the normal ones")
    parser.add_argument("--scorer", required=True, help="registered scorer name")
    parser.add_argument("--out", required=True, type=Path, help="checkpoint directory to write")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="scorer params field, e.g. --param iterations=2000 "
                             "(same as --set scorers.0.params.KEY=VALUE)")
    add_config_args(parser)
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run)


def training_set(args: argparse.Namespace):
    """The videos to learn from, labelled when the command line says how."""
    from vad.data.training import ANOMALOUS, NORMAL, TrainingSet
    from vad.data.video_lists import training_set_from_list
    from vad.errors import VadError

    lists = [item for item in args.inputs if Path(item).suffix.lower() == ".csv"]
    if lists:
        if len(lists) != len(args.inputs) or args.anomalous:
            raise VadError("a list CSV holds the labels: give only list CSVs, without --anomalous")
        return TrainingSet(sum((training_set_from_list(item).videos for item in lists), ()))
    if not args.anomalous:
        return TrainingSet.from_sources(expand_sources(args.inputs))
    return TrainingSet(TrainingSet.from_sources(expand_sources(args.inputs), NORMAL).videos
                       + TrainingSet.from_sources(expand_sources(args.anomalous),
                                                  ANOMALOUS).videos)


def run(args: argparse.Namespace) -> int:
    from models import get_scorer
    from models.base import LearningType
    from vad.errors import VadError

    config = config_from_args(args)
    entry = config.scorers[0]
    training = training_set(args)
    writable_dir(args.out, "checkpoint")
    scorer = get_scorer(entry.name, entry.params, config.device)
    if args.anomalous and scorer.learning_type is LearningType.ONE_CLASS:
        raise VadError(f"--anomalous: {entry.name} is one-class, it learns from normal videos "
                       "only (anomalous ones are for weakly supervised scorers, e.g. vadclip)")
    # Scorers that train for long write periodic checkpoints here and resume from them.
    scorer.work_dir = args.out
    scorer.fit(training, progress=not args.no_progress)
    scorer.save(args.out, provenance(args, training.summary()))
    print(f"fitted {entry.name} on {len(training)} video(s); checkpoint: {args.out}")
    return 0
