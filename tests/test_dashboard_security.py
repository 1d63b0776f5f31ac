"""The dashboard as an attacker and an operator meet it: alert fields with Markdown/HTML
payloads show literally and make the browser fetch nothing (headless Chromium, with an
"outside" HTTP server that records every request), no password of the store on the page or in
the logs, sign-in with Argon2 hashes and rate-limited failures, an exposed dashboard refusing
to serve without sign-in, and acknowledgements recording who made them."""

from __future__ import annotations

import io
import logging
import shutil
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from argon2 import PasswordHasher

from dashboard.auth import (PasswordCheck, SignInLimiter, check_exposure, is_loopback,
                            operators)
from dashboard.screenshot import (click_button, headless_chromium, open_tab, page_url, serve,
                                  type_into, wait_for_text)
from vad.cli import main as vad
from vad.config import load_config
from vad.config.auth import DashboardAuthConfig
from vad.errors import VadError
from vad.stores import open_store
from vad.types import CameraStatus

from test_dashboard import (APP, assert_no_exception, feed_ids, make_alert, populate,
                            run_app, texts)
from test_dashboard import populated_sqlite_url  # noqa: F401 (registers the sqlite_url fixture)

PASSWORD = "correct horse battery staple"
HASH = PasswordHasher().hash(PASSWORD)


class OutsideServer:
    """An HTTP server standing for the attacker's: it answers every GET with a 1x1 PNG and
    records the path, so a test sees whatever the page made the browser fetch."""

    PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                        "1f15c4890000000d4944415478da63f8cfc0f01f0005000201a5f6a7a0"
                        "0000000049454e44ae426082")

    def __init__(self) -> None:
        self.requests: list[str] = []
        outside = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server hook
                outside.requests.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(outside.PNG)))
                self.end_headers()
                self.wfile.write(outside.PNG)

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def outside():
    server = OutsideServer()
    yield server
    server.close()


def spoofing_payloads(outside: str) -> dict[str, str]:
    """What an attacker who can write alert fields (a camera name, a description, a rule
    file, a note) would put there: each must show as these exact characters."""
    return {
        "camera": f"lobby ![cam]({outside}/camera-image.png)",
        "explanation": f"Nothing here ![evidence]({outside}/markdown-image.png) "
                       ":green[**FALSE ALARM — auto-resolved**]",
        "rule": f"[Official notice: ignore this alert]({outside}/link) :red[**URGENT**]",
        "objects": f'<img src="{outside}/html-image.png"> <a href="{outside}/a">two people</a>',
        "motion": f"<script>fetch('{outside}/script')</script> $x^2$ :material/check: "
                  f"{outside}/autolink www.example.com",
        "label": ":blue-badge[Verified] **Fighting**",
        "note": f"Resolved by HQ ![ok]({outside}/note-image.png) <b>bold</b>",
        "source": f"rtsp://cam/1 ![src]({outside}/status-image.png)",
        "last_error": f"<iframe src='{outside}/iframe'></iframe> :orange[reconnected]",
    }


def spoofed_store(url: str, payloads: dict[str, str]) -> str:
    """A store holding the usual alerts plus one whose every text field carries a payload;
    returns that alert's id."""
    with open_store(url) as store:
        populate(store)
        alert = make_alert(payloads["camera"], 300, 12.0, created_at=1_800_000_000)
        alert.explanation, alert.rule = payloads["explanation"], payloads["rule"]
        alert.objects, alert.motion_description = payloads["objects"], payloads["motion"]
        alert.label, alert.label_confidence = payloads["label"], 0.75
        store.put(alert)
        store.set_status(alert.id, "acknowledged", payloads["note"],
                         by=f"![op]({payloads['camera']})")
        store.set_camera_status(CameraStatus(payloads["camera"], "reconnecting", since=1e9,
                                             updated_at=1e9, source=payloads["source"],
                                             last_error=payloads["last_error"]))
    return alert.id


MARKUP_ELEMENTS = ("markdown", "caption", "subheader", "title", "header", "info", "error",
                   "warning", "success")


def test_alert_fields_reach_the_app_as_plain_text_only(monkeypatch, tmp_path):
    """Every payload is in a text element, exactly; no element that renders Markdown holds
    any of it (AppTest sees what Streamlit is asked to draw)."""
    url = f"sqlite:///{tmp_path}/spoof.db"
    payloads = spoofing_payloads("http://outside.invalid")
    spoofed = spoofed_store(url, payloads)
    app = run_app(monkeypatch, url, alert=spoofed)
    assert_no_exception(app)
    plain = {str(t.value) for t in app.text}
    for name in ("camera", "explanation", "rule", "objects", "motion"):
        assert payloads[name] in plain, name
    assert f"{payloads['label']} (confidence 75%)" in plain
    assert f"Last error: {payloads['last_error']}" in plain
    assert app.text_area(key=f"note-{spoofed}").value == payloads["note"]
    markup = "\n".join(str(e.value) for kind in MARKUP_ELEMENTS for e in getattr(app, kind))
    markup += "\n".join(str(b.label) + str(b.help) for b in app.button)
    for name, payload in payloads.items():
        for piece in payload.split():
            if len(piece) > 6 and not piece.isalpha():
                assert piece not in markup, (name, piece)
    # A crafted ?alert= link: the id is shown as what it is, not rendered.
    crafted = ":green[**Verified by HQ**] ![x](http://outside.invalid/reflected.png)"
    reflected = run_app(monkeypatch, url, alert=crafted)
    assert_no_exception(reflected)
    assert "No alert with this id is in the store:" in [i.value for i in reflected.info]
    assert crafted in {str(t.value) for t in reflected.text}
    assert "Verified by HQ" not in "\n".join(
        str(e.value) for kind in MARKUP_ELEMENTS for e in getattr(reflected, kind))


def chromium_available() -> None:
    pytest.importorskip("selenium")
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.skip("chromium and chromium-driver are not installed")


def test_spoofed_alerts_in_chromium_show_literally_and_fetch_nothing(tmp_path, outside):
    chromium_available()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    url = f"sqlite:///{tmp_path}/spoof.db"
    payloads = spoofing_payloads(outside.url)
    spoofed = spoofed_store(url, payloads)
    crafted = f":green[**Verified by HQ**] ![x]({outside.url}/reflected.png) " \
              f"[details]({outside.url}/reflected-link)"
    with serve(url, refresh=2.0, timeout=180) as base, headless_chromium() as driver:
        driver.get(page_url(base, spoofed))
        page = wait_for_text(driver, payloads["explanation"], timeout=120)
        for name in ("camera", "rule", "objects", "motion"):
            assert payloads[name] in page, name
        assert f"{payloads['label']} (confidence 75%)" in page
        # The triage form comes after the clip and the timeline: on a loaded machine the page
        # may show the explanation before it.
        note = WebDriverWait(driver, 60).until(lambda d: d.find_element(
            By.CSS_SELECTOR, "textarea[aria-label='Operator note']"))
        assert note.get_attribute("value") == payloads["note"]
        # The camera filter lists the spoofed camera id as it is.
        driver.find_element(By.XPATH, "//input[@aria-label='Camera']/following-sibling::button"
                            ).click()
        options = WebDriverWait(driver, 60).until(
            lambda d: [o.text for o in d.find_elements(By.CSS_SELECTOR, "[role=option]")])
        assert payloads["camera"] in options, options
        driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
        open_tab(driver, "Cameras")
        page = wait_for_text(driver, f"Last error: {payloads['last_error']}", timeout=120)
        assert payloads["source"] in page
        # A crafted link to the dashboard reflects its parameter as text.
        driver.get(page_url(base, crafted))
        page = wait_for_text(driver, "No alert with this id is in the store:", timeout=120)
        assert crafted in page
        links = [a.get_attribute("href") or "" for a in driver.find_elements(By.TAG_NAME, "a")]
        images = [i.get_attribute("src") or "" for i in driver.find_elements(By.TAG_NAME, "img")]
        driver.save_screenshot(str(tmp_path / "spoofed.png"))
        assert not [u for u in links + images if outside.url in u]
        assert outside.requests == [], "the page made the browser fetch from outside"
        # The browser could have reached the outside server: the check above means something.
        driver.get(f"{outside.url}/reachable.png")  # (Chromium may then ask it for a favicon)
        assert outside.requests[:1] == ["/reachable.png"]


# --- secrets -----------------------------------------------------------------------------------

def test_a_wrong_redis_password_names_the_host_never_the_password(monkeypatch, tmp_path,
                                                                   caplog):
    from streams.local_servers import RedisServer

    (tmp_path / "redis").mkdir()
    server = RedisServer(tmp_path / "redis", password="Sup3r-secret-pw")
    try:
        wrong = server.url.replace("Sup3r-secret-pw", "Wr0ng-guess-pw")
        with caplog.at_level(logging.DEBUG):
            app = run_app(monkeypatch, wrong)
        assert_no_exception(app)
        shown = texts(app)
        assert f"127.0.0.1:{server.port}" in shown and "refused the credentials" in shown
        assert f"redis://:***@127.0.0.1:{server.port}/0" in shown  # the sidebar label too
        logged = "\n".join(record.getMessage() + (record.exc_text or "")
                           for record in caplog.records)
        for secret in ("Wr0ng-guess-pw", "Sup3r-secret-pw"):
            assert secret not in shown and secret not in logged
        # The right password opens the store, so the message above was about the password.
        with open_store(server.url) as store:
            store.put(make_alert("cam-a", 1, 4.0))
        assert feed_ids(run_app(monkeypatch, server.url)) == ["cam-a:1"]
        # A write with the wrong password is an error now, not a spool that never drains.
        with open_store(load_config(None, [f"store.url={wrong}",
                                           f"store.redis.spool={tmp_path}/spool.db"]).store) as s:
            with pytest.raises(VadError, match=r"redis://:\*\*\*@127.0.0.1:\d+/0: Redis refused"):
                s.put(make_alert("cam-a", 2, 4.0))
            assert s.spooled() == 0
    finally:
        server.stop()


def test_command_line_errors_never_echo_a_password(capsys):
    assert vad(["config", "show", "--store", "redis://:Sup3r-secret-pw@h:1/0", "--bogus"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Sup3r-secret-pw" not in err and "redis://:***@h:1/0" in err


def test_logs_are_redacted():
    from vad.urls import RedactingFilter, redacted_text

    assert redacted_text("at rediss://user:p%40ss@h:1/0 and http://a:b@c/") == \
        "at rediss://user:***@h:1/0 and http://a:***@c/"
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("vad.test-redaction")
    logger.addHandler(handler)
    try:
        try:
            raise ValueError("cannot open redis://:Sup3r-secret-pw@h:1/0")
        except ValueError:
            logger.exception("store %s failed", "redis://:Sup3r-secret-pw@h:1/0")
    finally:
        logger.removeHandler(handler)
    assert "Sup3r-secret-pw" not in stream.getvalue()
    assert stream.getvalue().count("redis://:***@h:1/0") == 3  # message, source, exception


# --- sign-in -----------------------------------------------------------------------------------

def test_passwords_are_checked_against_argon2_hashes():
    check = PasswordCheck({"alice": HASH})
    assert check.verify("alice", PASSWORD)
    assert not check.verify("alice", PASSWORD.upper()) and not check.verify("bob", PASSWORD)
    with pytest.raises(VadError, match="alice.* is not an Argon2 hash"):
        load_config(None, ["dashboard.auth.users={alice: plaintext}"])


def test_operators_come_from_the_config_and_the_environment():
    auth = load_config(None, [f"dashboard.auth.users={{alice: '{HASH}'}}"]).dashboard.auth
    environ = {"VAD_DASHBOARD_USERS": f"bob:{HASH}\n  carol:{HASH}"}
    assert sorted(operators(auth, environ)) == ["alice", "bob", "carol"]
    with pytest.raises(VadError, match="VAD_DASHBOARD_USERS: an entry is not NAME:HASH"):
        operators(auth, {"VAD_DASHBOARD_USERS": "bob"})
    with pytest.raises(VadError, match="VAD_DASHBOARD_USERS: the password of 'bob' is not"):
        operators(auth, {"VAD_DASHBOARD_USERS": "bob:secret"})


def test_failed_sign_ins_are_limited_per_name_and_per_address():
    now = [0.0]
    limiter = SignInLimiter(3, 60.0, clock=lambda: now[0])
    for _ in range(3):
        assert limiter.retry_after("operator:alice", "address:a") == 0
        limiter.failed("operator:alice", "address:a")
        now[0] += 1
    assert limiter.retry_after("operator:alice", "address:b") == pytest.approx(57)
    assert limiter.retry_after("operator:bob", "address:a") == pytest.approx(57)
    assert limiter.retry_after("operator:bob", "address:b") == 0
    now[0] = 60.5  # the first failure left the window
    assert limiter.retry_after("operator:alice", "address:a") == 0
    limiter.failed("operator:alice")
    assert limiter.retry_after("operator:alice") > 0
    limiter.succeeded("operator:alice")
    assert limiter.retry_after("operator:alice") == 0


def test_only_loopback_may_go_without_sign_in(capsys):
    for host in ("127.0.0.1", "127.3.2.1", "::1", "[::1]", "localhost"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "", "::", "192.168.1.20", "cctv.example.org"):
        assert not is_loopback(host), host
    open_auth = DashboardAuthConfig()
    with pytest.raises(VadError, match="dashboard.host 0.0.0.0: an exposed dashboard needs "
                                       "sign-in"):
        check_exposure(open_auth, "0.0.0.0", {})
    check_exposure(open_auth, "127.0.0.1", {})
    check_exposure(DashboardAuthConfig(disabled=True), "0.0.0.0", {})
    check_exposure(DashboardAuthConfig(oidc=True), "0.0.0.0", {})
    check_exposure(open_auth, "0.0.0.0", {"VAD_DASHBOARD_USERS": f"bob:{HASH}"})
    assert vad(["dashboard", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--no-auth" in err


def test_hash_password_prints_an_argon2_hash(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO(PASSWORD + "\n"))
    assert vad(["dashboard", "--hash-password"]) == 0
    printed = capsys.readouterr().out.strip()
    assert PasswordCheck({"alice": printed}).verify("alice", PASSWORD)
    load_config(None, [f"dashboard.auth.users={{alice: '{printed}'}}"])  # the config takes it


def sign_in(app, name: str, password: str):
    app.text_input[0].set_value(name)
    app.text_input[1].set_value(password)
    return app.button[0].click().run()


def test_sign_in_gates_the_page_limits_failures_and_records_who_acknowledged(monkeypatch,
                                                                                 tmp_path):
    url = f"sqlite:///{tmp_path}/alerts.db"
    with open_store(url) as store:
        populate(store)
    settings = [f"dashboard.auth.users={{alice: '{HASH}', bob: '{HASH}'}}",
                "dashboard.auth.max_failures=3"]
    app = run_app(monkeypatch, url, *settings, alert="cam-a:20")
    assert_no_exception(app)
    assert feed_ids(app) == [] and "Sign in" in [s.value for s in app.subheader]
    app = sign_in(app, "alice", PASSWORD)
    assert_no_exception(app)
    assert feed_ids(app) == ["cam-b:150", "cam-a:100", "cam-b:50", "cam-a:20"]
    assert "alice" in {t.value for t in app.text}  # signed in as
    app.button(key="acknowledged-cam-a:20").click().run()
    with open_store(url) as store:
        assert (store.get("cam-a:20").status, store.get("cam-a:20").status_by) == \
            ("acknowledged", "alice")
    assert "acknowledged by alice" in texts(app)
    app.button(key="sign-out").click().run()
    assert feed_ids(app) == []

    # Another browser session of the same server: failures are counted across sessions.
    from streamlit.testing.v1 import AppTest

    for attempt in range(3):
        other = AppTest.from_file(str(APP), default_timeout=120)
        other = sign_in(other.run(), "bob", f"guess {attempt}")
        assert "Wrong operator name or password." in [e.value for e in other.error]
    other = sign_in(other, "bob", PASSWORD)
    assert feed_ids(other) == []
    assert any(e.value.startswith("Too many failed sign-ins: try again in ")
               for e in other.error)


def test_an_exposed_dashboard_without_sign_in_shows_nothing(monkeypatch, sqlite_url):
    app = run_app(monkeypatch, sqlite_url, address="0.0.0.0")
    assert_no_exception(app)
    assert feed_ids(app) == []
    assert app.error[0].value.startswith("This dashboard is reachable from the network without "
                                         "sign-in")
    # Streamlit's own default (no address: every interface) counts as exposed too.
    assert feed_ids(run_app(monkeypatch, sqlite_url, address="")) == []
    opened = run_app(monkeypatch, sqlite_url, "dashboard.auth.disabled=true", address="0.0.0.0")
    assert len(feed_ids(opened)) == 4


def test_oidc_sign_in_is_offered_when_configured(monkeypatch, sqlite_url):
    app = run_app(monkeypatch, sqlite_url, "dashboard.auth.oidc=true",
                  "dashboard.auth.oidc_provider=corp", address="0.0.0.0")
    assert_no_exception(app)
    assert feed_ids(app) == []
    assert [b.label for b in app.button] == ["Sign in with single sign-on"]


def test_sign_in_in_chromium(tmp_path, sqlite_url):
    chromium_available()
    config = tmp_path / "dashboard.yaml"
    config.write_text(f"dashboard:\n  auth:\n    users: {{alice: '{HASH}'}}\n"
                      "    max_failures: 2\n")
    with serve(sqlite_url, refresh=2.0, timeout=180, args=["--config", str(config)]) as base, \
            headless_chromium() as driver:
        driver.get(page_url(base, "cam-a:20"))
        wait_for_text(driver, "Sign in", timeout=120)
        assert "Alert feed" not in wait_for_text(driver, "Password")
        type_into(driver, "Operator", "alice")
        type_into(driver, "Password", PASSWORD)
        click_button(driver, "Sign in")
        wait_for_text(driver, "Operator note", timeout=120)
        click_button(driver, "Acknowledge")
        wait_for_text(driver, "acknowledged by alice", timeout=120)
        with open_store(sqlite_url) as store:
            assert store.get("cam-a:20").status_by == "alice"
        # A reload is a new session: signed out; two failures lock the name and the address.
        driver.get(base)
        for guess in ("guess-1", "guess-2"):
            wait_for_text(driver, "Password", timeout=120)
            type_into(driver, "Operator", "alice")
            type_into(driver, "Password", guess)
            click_button(driver, "Sign in")
            wait_for_text(driver, "Wrong operator name or password.", timeout=60)
            driver.get(base)
        wait_for_text(driver, "Password", timeout=120)
        type_into(driver, "Operator", "alice")
        type_into(driver, "Password", PASSWORD)
        click_button(driver, "Sign in")
        page = wait_for_text(driver, "Too many failed sign-ins", timeout=60)
        assert "Alert feed" not in page
