"""`vad config show`: the effective configuration (defaults, the file, `--set`) as YAML."""

from __future__ import annotations

import argparse

from vad.commands.common import add_config_args, config_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("config", help="show the effective configuration",
                                   description=__doc__)
    commands = parser.add_subparsers(dest="config_command", required=True)
    show = commands.add_parser("show", help="print the effective config as YAML, each field "
                                            "with its description")
    add_config_args(show)
    show.add_argument("--plain", action="store_true", help="YAML without the descriptions")
    show.set_defaults(func=run_show)


def run_show(args: argparse.Namespace) -> int:
    from vad.config import config_yaml

    print(config_yaml(config_from_args(args), comments=not args.plain), end="")
    return 0
