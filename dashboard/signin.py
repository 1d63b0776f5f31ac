"""The dashboard's sign-in gate: who the operator is, or a sign-in form and nothing else.

With operators configured (dashboard.auth.users or its environment variable), each browser
session signs in with a name and password (checked against Argon2 hashes); with OIDC, through
Streamlit's `st.login`. Without either, the page opens only on a loopback address or when
sign-in was disabled on purpose (`--no-auth`): an exposed dashboard without sign-in shows
nothing, whoever started it. Failed sign-ins are limited per name and per client address by
one limiter shared by every session of the server."""

from __future__ import annotations

import logging
import math

import streamlit as st

from dashboard.auth import ANONYMOUS, PasswordCheck, SignInLimiter, is_loopback, operators
from dashboard.settings import DashboardSettings
from dashboard.text import notice, plain
from vad.config.auth import DashboardAuthConfig

log = logging.getLogger("vad.dashboard")

OPERATOR_KEY = "operator"  # session state: the signed-in operator's name


@st.cache_resource(show_spinner=False)
def _limiter(max_failures: int, window_s: float) -> SignInLimiter:
    return SignInLimiter(max_failures, window_s)


@st.cache_resource(show_spinner=False)
def _password_check(users: tuple[tuple[str, str], ...]) -> PasswordCheck:
    return PasswordCheck(dict(users))


def signed_in_operator(settings: DashboardSettings) -> str | None:
    """The operator's name (ANONYMOUS when nobody needs to sign in), or None after drawing the
    sign-in form or a refusal: the caller then draws nothing else."""
    auth = settings.auth
    users = operators(auth)
    if st.session_state.get(OPERATOR_KEY):
        return st.session_state[OPERATOR_KEY]
    if auth.oidc and _oidc_signed_in():
        return _oidc_operator(auth)
    if not users and not auth.oidc:
        bound = st.get_option("server.address")
        if auth.disabled or (bound and is_loopback(bound)):
            return ANONYMOUS
        notice(st, "error", "This dashboard is reachable from the network without sign-in, "
                            "so it shows nothing. Configure operators or OIDC "
                            "(docs/dashboard.md), or start it with `--no-auth` behind a proxy "
                            "that authenticates.")
        return None
    _sign_in_form(auth, users)
    return None


def _oidc_signed_in() -> bool:
    # st.user has no is_logged_in at all where no OIDC provider is set up.
    return bool(st.user.get("is_logged_in", False))


def _oidc_operator(auth: DashboardAuthConfig) -> str | None:
    identity = str(st.user.get("email") or st.user.get("sub") or "")
    if not auth.oidc_allow or any(identity == allowed or (allowed.startswith("@")
                                                           and identity.endswith(allowed))
                                  for allowed in auth.oidc_allow):
        return identity
    notice(st, "error", "This account may not use the dashboard:", identity)
    st.button("Sign out", on_click=st.logout)
    return None


def _sign_in_form(auth: DashboardAuthConfig, users: dict[str, str]) -> None:
    st.subheader("Sign in")
    if users:
        with st.form("sign-in", clear_on_submit=True):
            name = st.text_input("Operator")
            password = st.text_input("Password", type="password")
            submitted = st.form_submit_button("Sign in")
        if submitted:
            _check(auth, users, name.strip(), password)
    if auth.oidc:
        st.button("Sign in with single sign-on", on_click=st.login, args=(auth.oidc_provider,))


def _check(auth: DashboardAuthConfig, users: dict[str, str], name: str, password: str) -> None:
    limiter = _limiter(auth.max_failures, auth.failure_window_s)
    address = st.context.ip_address or "this machine"
    keys = (f"operator:{name}", f"address:{address}")
    wait = limiter.retry_after(*keys)
    if wait > 0:
        log.warning("sign-in refused: too many failures (%s)", address)
        notice(st, "error", f"Too many failed sign-ins: try again in {math.ceil(wait)} s.")
        return
    if _password_check(tuple(sorted(users.items()))).verify(name, password):
        limiter.succeeded(keys[0])
        st.session_state[OPERATOR_KEY] = name
        log.info("operator %s signed in from %s", name, address)
        st.rerun()
    limiter.failed(*keys)
    # The name is logged only when it is an operator's: a password typed into it stays out.
    log.warning("failed sign-in for %s from %s", name if name in users else "an unknown name",
                address)
    notice(st, "error", "Wrong operator name or password.")


def sign_out() -> None:
    st.session_state.pop(OPERATOR_KEY, None)
    if _oidc_signed_in():
        st.logout()


def operator_badge(operator: str) -> None:
    """Who is signed in, in the sidebar, with the way out."""
    if operator == ANONYMOUS:
        st.sidebar.caption("No sign-in: acknowledgements are recorded as anonymous.")
        return
    st.sidebar.caption("Signed in as")
    plain(st.sidebar, operator)
    st.sidebar.button("Sign out", on_click=sign_out, key="sign-out")
