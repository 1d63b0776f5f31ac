"""`vad dashboard`: serve the Streamlit security dashboard for an alert store."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import dashboard
from dashboard.settings import DashboardSettings
from vad.commands.common import add_config_args
from vad.config import load_config

APP = Path(dashboard.__file__).resolve().parent / "app.py"
# The repository (or site-packages) root, so `streamlit run` can import vad and dashboard.
IMPORT_ROOT = APP.parents[1]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("dashboard", help="serve the security dashboard (Streamlit)",
                                   description=__doc__)
    add_config_args(parser)
    parser.add_argument("--store", help="alert store URL, e.g. sqlite:///vad.db or "
                                         "redis://host:6379/0 (default from config: store)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1: this machine only; "
                             "0.0.0.0 exposes the dashboard to the network)")
    parser.add_argument("--port", type=_port, default=8501, help="port (default 8501)")
    parser.add_argument("--threshold", type=float,
                        help="event threshold drawn on the timelines "
                             "(default from config: events.threshold)")
    parser.add_argument("--refresh", type=float, default=DashboardSettings.refresh,
                        help="seconds between feed refreshes "
                             f"(default {DashboardSettings.refresh:g})")
    parser.set_defaults(func=run)


def _port(text: str) -> int:
    port = int(text)
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"{text} is not a TCP port")
    return port


def streamlit_command(args: argparse.Namespace) -> list[str]:
    return [sys.executable, "-m", "streamlit", "run", str(APP),
            "--server.headless", "true",
            "--server.address", args.host,
            "--server.port", str(args.port),
            "--server.fileWatcherType", "none",
            "--browser.gatherUsageStats", "false",
            "--client.toolbarMode", "minimal"]


def settings_from_args(args: argparse.Namespace) -> DashboardSettings:
    """Options first, then the config (the same file `vad run` used), then defaults."""
    config = load_config(args.config, args.overrides)
    return DashboardSettings(
        store=args.store or config.store, refresh=args.refresh,
        threshold=config.events.threshold if args.threshold is None else args.threshold)


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    env = {**os.environ, **settings.to_env()}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(IMPORT_ROOT), env.get("PYTHONPATH")]))
    command = streamlit_command(args)
    print(f"vad dashboard: http://{args.host}:{args.port}  (store {settings.store})", flush=True)
    # Become the Streamlit server: signals (Ctrl-C, SIGTERM from a supervisor) reach it directly.
    os.execve(command[0], command, env)
    return 0  # not reached
