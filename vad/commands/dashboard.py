"""`vad dashboard`: serve the Streamlit security dashboard for an alert store."""

from __future__ import annotations

import argparse

from vad.commands.common import add_config_args, config_flag, config_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("dashboard", help="serve the security dashboard (Streamlit)",
                                   description=__doc__)
    add_config_args(parser)
    config_flag(parser, "--store", key="store.url",
                help="alert store URL, e.g. sqlite:///vad.db or redis://host:6379/0")
    config_flag(parser, "--host", key="dashboard.host",
                help="address to bind (127.0.0.1: this machine only; 0.0.0.0 exposes it)")
    config_flag(parser, "--port", key="dashboard.port", type=_port, help="TCP port")
    config_flag(parser, "--threshold", key="dashboard.threshold", type=float,
                help="event threshold drawn on the timelines (none: events.threshold)")
    config_flag(parser, "--refresh", key="dashboard.refresh", type=float,
                help="seconds between feed refreshes")
    parser.set_defaults(func=run)


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text} is not a TCP port") from None
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"{text} is not a TCP port")
    return port


def streamlit_command(app: str, host: str, port: int) -> list[str]:
    import sys

    return [sys.executable, "-m", "streamlit", "run", app,
            "--server.headless", "true",
            "--server.address", host,
            "--server.port", str(port),
            "--server.fileWatcherType", "none",
            "--browser.gatherUsageStats", "false",
            "--client.toolbarMode", "minimal"]


def run(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    import dashboard
    from dashboard.settings import DashboardSettings
    from vad.stores import redacted

    config = config_from_args(args)
    app = Path(dashboard.__file__).resolve().parent / "app.py"
    env = {**os.environ, **DashboardSettings.to_env(config)}
    # The repository (or site-packages) root, so `streamlit run` can import vad and dashboard.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(app.parents[1]),
                                                      env.get("PYTHONPATH")]))
    host, port = config.dashboard.host, config.dashboard.port
    command = streamlit_command(str(app), host, port)
    print(f"vad dashboard: http://{host}:{port}  (store {redacted(config.store.url)})",
          flush=True)
    # Become the Streamlit server: signals (Ctrl-C, SIGTERM from a supervisor) reach it directly.
    os.execve(command[0], command, env)
    return 0  # not reached
