"""`vad fit VIDEOS... --scorer NAME --out DIR`: train or fit a scorer."""

from __future__ import annotations

import argparse
from pathlib import Path

from vad.commands.common import (add_config_args, config_from_args, expand_sources, provenance,
                                 writable_dir)


def register(subparsers) -> None:
    parser = subparsers.add_parser("fit", help="train or fit a scorer on normal videos",
                                   description=__doc__)
    parser.add_argument("inputs", nargs="+", help="normal videos, frame folders, or folders of "
                                                  "videos")
    parser.add_argument("--scorer", required=True, help="registered scorer name")
    parser.add_argument("--out", required=True, type=Path, help="checkpoint directory to write")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="scorer params field, e.g. --param iterations=2000 "
                             "(same as --set scorers.0.params.KEY=VALUE)")
    add_config_args(parser)
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from models import get_scorer
    from vad.data.training import TrainingSet

    config = config_from_args(args)
    entry = config.scorers[0]
    training = TrainingSet.from_sources(expand_sources(args.inputs))
    writable_dir(args.out, "checkpoint")
    scorer = get_scorer(entry.name, entry.params, config.device)
    # Scorers that train for long write periodic checkpoints here and resume from them.
    scorer.work_dir = args.out
    scorer.fit(training, progress=not args.no_progress)
    scorer.save(args.out, provenance(args, training.summary()))
    print(f"fitted {entry.name} on {len(training)} video(s); checkpoint: {args.out}")
    return 0
