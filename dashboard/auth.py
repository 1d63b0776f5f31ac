"""Who is at the dashboard: operators and their Argon2 password hashes (from the config and
an environment variable), checked with argon2-cffi; failed sign-ins limited per operator name
and per client address; whether a bind address keeps the dashboard on this machine.

Nothing here imports Streamlit: `vad dashboard` checks the exposure before it starts the
server, and the app (dashboard/signin.py) signs operators in with the same code."""

from __future__ import annotations

import ipaddress
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from vad.config.auth import DashboardAuthConfig, OperatorName, check_password_hash
from vad.config import validated
from vad.config.base import Section
from vad.errors import VadError

ANONYMOUS = "anonymous"  # who acknowledged, when nobody signs in


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _Operator(Section):
    name: OperatorName


def operators(auth: DashboardAuthConfig, environ: Mapping[str, str] = os.environ,
              ) -> dict[str, str]:
    """Operator name -> Argon2 hash: the config's, then those of `auth.users_env`."""
    users = dict(auth.users)
    for entry in environ.get(auth.users_env, "").split():
        name, sep, hashed = entry.partition(":")
        if not sep:
            raise VadError(f"{auth.users_env}: an entry is not NAME:HASH")
        validated(_Operator, {"name": name}, f"{auth.users_env}: operator")
        try:
            users[name] = check_password_hash(name, hashed)
        except ValueError as exc:
            raise VadError(f"{auth.users_env}: {exc}") from None
    return users


def check_exposure(auth: DashboardAuthConfig, host: str,
                   environ: Mapping[str, str] = os.environ) -> None:
    """VadError when binding to `host` would let the network in without signing in."""
    if is_loopback(host) or auth.disabled or auth.oidc or operators(auth, environ):
        return
    raise VadError(f"dashboard.host {host}: an exposed dashboard needs sign-in: configure "
                   f"operators (dashboard.auth.users or ${auth.users_env}; `vad dashboard "
                   "--hash-password` makes a hash) or OIDC (dashboard.auth.oidc), or pass "
                   "--no-auth to serve it open on purpose")


def hash_password(password: str) -> str:
    if not password:
        raise VadError("--hash-password: the password is empty")
    return PasswordHasher().hash(password)


class PasswordCheck:
    """Verifies an operator's password. An unknown name costs one verification too, so the
    answer's timing does not tell which names exist."""

    def __init__(self, users: Mapping[str, str]):
        self.users = dict(users)
        self._hasher = PasswordHasher()
        self._decoy = self._hasher.hash("no operator has this password")

    def verify(self, name: str, password: str) -> bool:
        known = self.users.get(name)
        try:
            self._hasher.verify(known or self._decoy, password)
        except (VerificationError, InvalidHashError):
            return False
        return known is not None


class SignInLimiter:
    """At most `max_failures` failed sign-ins per key (an operator name, a client address)
    within `window_s`; then attempts with that key are refused until the oldest failure
    leaves the window. Shared by every session of one dashboard server."""

    def __init__(self, max_failures: int, window_s: float,
                 clock: Callable[[], float] = time.monotonic):
        self.max_failures, self.window_s, self.clock = max_failures, window_s, clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, *keys: str) -> float:
        """Seconds until an attempt with these keys is allowed (0: now)."""
        with self._lock:
            now = self.clock()
            waits = [0.0]
            for key in keys:
                failures = self._recent(key, now)
                if len(failures) >= self.max_failures:
                    waits.append(failures[0] + self.window_s - now)
            return max(waits)

    def failed(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._failures.setdefault(key, deque()).append(self.clock())

    def succeeded(self, key: str) -> None:
        """An operator who signed in starts afresh (their address does not)."""
        with self._lock:
            self._failures.pop(key, None)

    def _recent(self, key: str, now: float) -> deque[float]:
        failures = self._failures.get(key, deque())
        while failures and failures[0] <= now - self.window_s:
            failures.popleft()
        if not failures:
            self._failures.pop(key, None)
        return failures
