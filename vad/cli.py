"""`vad` command line: a thin layer over the library. Each subcommand lives in
`vad.commands.<name>` and exposes `register(subparsers)`, which sets `func(args) -> int`."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from vad import __version__
from vad.errors import VadError

COMMAND_MODULES = [
    "vad.commands.fit",
    "vad.commands.features",
    "vad.commands.run",
    "vad.commands.eval",
    "vad.commands.dashboard",
    "vad.commands.publish",
    "vad.commands.serve",
    "vad.commands.reason",
    "vad.commands.vane",
    "vad.commands.config",
    "vad.commands.data",
    "vad.commands.patrol",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vad", description="Video anomaly surveillance: fit scorers, run them on videos and "
        "streams, evaluate on benchmarks, explain and show alerts.")
    parser.add_argument("--version", action="version", version=f"vad {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # for checkpoint provenance
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except VadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
