"""`vad fit NORMAL... --scorer NAME --out DIR`: learn normality from normal footage."""

from __future__ import annotations

import argparse
from pathlib import Path

from models import get_scorer
from vad.commands.common import expand_sources, parse_params


def register(subparsers) -> None:
    parser = subparsers.add_parser("fit", help="train or fit a scorer on normal videos",
                                   description=__doc__)
    parser.add_argument("inputs", nargs="+", help="normal videos, frame folders, or folders of videos")
    parser.add_argument("--scorer", required=True, help="registered scorer name")
    parser.add_argument("--out", required=True, type=Path, help="checkpoint directory to write")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="scorer config field, e.g. --param epochs=20")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    sources = expand_sources(args.inputs)
    scorer = get_scorer(args.scorer, **parse_params(args.param))
    # Scorers that train for long write periodic checkpoints here and resume from them.
    scorer.work_dir = args.out
    scorer.fit(sources, progress=not args.no_progress)
    scorer.save(args.out)
    print(f"fitted {args.scorer} on {len(sources)} source(s); checkpoint: {args.out}")
    return 0
