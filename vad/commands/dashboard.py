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
    config_flag(parser, "--no-auth", key="dashboard.auth.disabled", action="store_const",
                const=True, help="serve without sign-in even on a non-loopback --host (behind "
                                 "a proxy that authenticates)")
    parser.add_argument("--hash-password", action="store_true",
                        help="read a password (from the terminal, or one line of stdin) and "
                             "print its Argon2 hash for dashboard.auth.users, then exit")
    parser.set_defaults(func=run)


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text} is not a TCP port") from None
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"{text} is not a TCP port")
    return port


def streamlit_command(app: str, host: str, port: int,
                      secrets: str | None = None) -> list[str]:
    import sys

    return [sys.executable, "-m", "streamlit", "run", app,
            "--server.headless", "true",
            "--server.address", host,
            "--server.port", str(port),
            "--server.fileWatcherType", "none",
            # Nothing but the page: no tracebacks in the browser, no programmatic agent API.
            "--client.showErrorDetails", "none",
            "--server.enableAgentApi", "false",
            "--browser.gatherUsageStats", "false",
            "--client.toolbarMode", "minimal",
            *(["--secrets.files", secrets] if secrets else [])]


def _hash_password() -> int:
    import getpass
    import sys

    from dashboard.auth import hash_password
    from vad.errors import VadError

    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            raise VadError("--hash-password: the two passwords differ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    print(hash_password(password))
    return 0


def run(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    import dashboard
    from dashboard.auth import check_exposure
    from dashboard.settings import DashboardSettings
    from vad.errors import VadError
    from vad.stores import redacted

    if args.hash_password:
        return _hash_password()
    config = config_from_args(args)
    auth = config.dashboard.auth
    check_exposure(auth, config.dashboard.host)
    if auth.oidc_secrets and not Path(auth.oidc_secrets).is_file():
        raise VadError(f"dashboard.auth.oidc_secrets {auth.oidc_secrets}: no such file")
    app = Path(dashboard.__file__).resolve().parent / "app.py"
    env = {**os.environ, **DashboardSettings.to_env(config)}
    # The repository (or site-packages) root, so `streamlit run` can import vad and dashboard.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(app.parents[1]),
                                                      env.get("PYTHONPATH")]))
    host, port = config.dashboard.host, config.dashboard.port
    command = streamlit_command(str(app), host, port, auth.oidc_secrets)
    print(f"vad dashboard: http://{host}:{port}  (store {redacted(config.store.url)})",
          flush=True)
    # Become the Streamlit server: signals (Ctrl-C, SIGTERM from a supervisor) reach it directly.
    os.execve(command[0], command, env)
    return 0  # not reached
