"""Sign-in to the dashboard: operators with Argon2 password hashes, or Streamlit's OIDC
(`st.login`), rate-limited failures, and the explicit opt-out (docs/dashboard.md)."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field, StringConstraints, field_validator

from vad.config.base import Section

# What argon2-cffi's PasswordHasher writes: $argon2id$v=19$m=65536,t=3,p=4$SALT$HASH.
ARGON2_HASH = re.compile(r"^\$argon2(id|i|d)\$v=\d+\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]+\$"
                         r"[A-Za-z0-9+/]+$")
OperatorName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.@-]{1,64}$")]


def check_password_hash(name: str, value: str) -> str:
    if not ARGON2_HASH.match(value):
        raise ValueError(f"the password of {name!r} is not an Argon2 hash (make one with "
                         "`vad dashboard --hash-password`; passwords never go in the config)")
    return value


class DashboardAuthConfig(Section):
    """Who may use the dashboard. Bound to anything but loopback, it refuses to start without
    operators or OIDC unless `disabled` (`vad dashboard --no-auth`) says it is on purpose."""

    users: dict[OperatorName, str] = Field(default_factory=dict, description=(
        "operators who sign in with a password: name -> Argon2 hash of it (`vad dashboard "
        "--hash-password` prints one); with any operator configured, sign-in is required "
        "even on loopback"))
    users_env: str = Field("VAD_DASHBOARD_USERS", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                           description=(
        "environment variable holding more operators as NAME:HASH entries separated by "
        "whitespace, so that hashes can stay out of config files"))
    oidc: bool = Field(False, description=(
        "offer Streamlit's OpenID Connect sign-in (st.login); the provider is set up in the "
        "[auth] section of a Streamlit secrets file (oidc_secrets)"))
    oidc_provider: str | None = Field(None, description=(
        "the [auth.NAME] provider of the secrets file; none = its single [auth] provider"))
    oidc_secrets: str | None = Field(None, description=(
        "Streamlit secrets TOML with the [auth] section (redirect_uri, cookie_secret, "
        "client_id, client_secret, server_metadata_url); none = Streamlit's own lookup "
        "(.streamlit/secrets.toml)"))
    oidc_allow: list[str] = Field(default_factory=list, description=(
        "e-mail addresses, or @domain suffixes, let in through OIDC; empty = everyone the "
        "provider signs in"))
    disabled: bool = Field(False, description=(
        "serve without sign-in even when exposed (`vad dashboard --no-auth`): only behind a "
        "proxy that authenticates; acknowledgements are then recorded as anonymous"))
    max_failures: int = Field(5, ge=1, description=(
        "failed sign-ins allowed per operator name and per client address within "
        "failure_window_s; further attempts are refused until the window has passed"))
    failure_window_s: float = Field(300.0, gt=0, description=(
        "seconds over which failed sign-ins are counted"))

    @field_validator("users")
    @classmethod
    def _argon2_hashes(cls, users: dict[str, str]) -> dict[str, str]:
        for name, value in users.items():
            check_password_hash(name, value)
        return users
