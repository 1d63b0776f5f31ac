"""`vad` command line: a thin layer over the library. Each subcommand lives in
`vad.commands.<name>` and exposes `register(subparsers)`, which sets `func(args) -> int`."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from vad import __version__
from vad.errors import VadError
from vad.urls import RedactingFilter, redacted_text

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


class ArgumentParser(argparse.ArgumentParser):
    """Usage errors are bad input like any other: one line, `error: vad CMD: <why>`, exit 2
    (subcommand parsers are made of this class too)."""

    def error(self, message: str):
        raise VadError(f"{self.prog}: {message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
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
    try:
        args = build_parser().parse_args(argv)
        args.argv = argv  # for checkpoint provenance
        _log_to_stderr(args.verbose)
        return int(args.func(args) or 0)
    except VadError as exc:
        # One line whatever the message holds, and never a URL's password.
        print(f"error: {redacted_text(' '.join(str(exc).split()))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _log_to_stderr(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


if __name__ == "__main__":
    sys.exit(main())
