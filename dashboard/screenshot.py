"""Serve the dashboard and look at it in headless Chromium: the end-to-end test and the
documentation screenshot share this.

    python -m dashboard.screenshot --store sqlite:////tmp/ped2.db --out docs/dashboard.png

Needs the Debian packages `chromium` and `chromium-driver`, and selenium (the `test` extra).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from streams.local_servers import free_port
from vad.errors import VadError

if TYPE_CHECKING:
    from selenium import webdriver

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage")
IMPORT_ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def serve(store: str, port: int | None = None, refresh: float = 5.0, timeout: float = 60.0,
          args: Sequence[str] = (), env: Mapping[str, str] | None = None) -> Iterator[str]:
    """Run `vad dashboard` on 127.0.0.1 (with more `args`, e.g. a --config) until the block
    ends; yields its base URL."""
    port = port or free_port()
    env = {**(os.environ if env is None else env),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(IMPORT_ROOT),
                                                       os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "vad.cli", "dashboard", "--store", store,
               "--port", str(port), "--refresh", str(refresh), *args]
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_healthy(base, server, log, timeout)
            yield base
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def _wait_healthy(base: str, server: subprocess.Popen, log, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            log.seek(0)
            raise VadError(f"vad dashboard exited with {server.returncode}: "
                           f"{log.read().decode(errors='replace')[-2000:]}")
        try:
            with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise VadError(f"vad dashboard did not answer at {base} within {timeout:.0f} s")


@contextlib.contextmanager
def headless_chromium(width: int = 1600, height: int = 1200) -> Iterator["webdriver.Chrome"]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            raise VadError(f"{path} not found: apt-get install chromium chromium-driver")
    with tempfile.TemporaryDirectory(prefix="vad-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        flags = (*CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}")
        for flag in flags:
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        try:
            yield driver
        finally:
            driver.quit()


def wait_for_text(driver, text: str, timeout: float = 60.0) -> str:
    """Wait until the rendered page shows `text`; returns the page's visible text."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        WebDriverWait(driver, timeout, poll_frequency=0.25).until(
            lambda d: text in d.find_element(By.TAG_NAME, "body").text)
    except TimeoutException:
        shown = driver.find_element(By.TAG_NAME, "body").text[-1500:]
        raise VadError(f"the dashboard did not show {text!r} within {timeout:.0f} s; "
                       f"it shows: {shown!r}") from None
    return driver.find_element(By.TAG_NAME, "body").text


def open_tab(driver, name: str) -> None:
    from selenium.webdriver.common.by import By

    tabs = [t for t in driver.find_elements(By.CSS_SELECTOR, "[role=tab]") if t.text == name]
    if not tabs:
        raise VadError(f"the dashboard has no {name!r} tab")
    tabs[0].click()


def click_button(driver, label: str, timeout: float = 60.0) -> None:
    """Click the button labelled `label`, retrying while a refresh re-renders it."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def clicked(d) -> bool:
        try:
            d.find_element(By.XPATH, f"//button[normalize-space()='{label}']").click()
            return True
        except (StaleElementReferenceException, WebDriverException):
            return False

    WebDriverWait(driver, timeout, poll_frequency=0.25).until(clicked)


def wait_for_videos(driver, timeout: float = 60.0) -> int:
    """Wait until every <video> on the page has its first frame (readyState >= 2); returns
    how many there are."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    script = ("const v = [...document.querySelectorAll('video')];"
              "return v.length && v.every(e => e.readyState >= 2) ? v.length : 0;")
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.25).until(
            lambda d: d.execute_script(script))
    except TimeoutException:
        states = driver.execute_script(
            "return [...document.querySelectorAll('video')].map(e => [e.readyState, "
            "e.error && e.error.message]);")
        raise VadError(f"the clip did not load within {timeout:.0f} s: {states}") from None


def type_into(driver, label: str, text: str) -> None:
    """Type into the text input labelled `label` (Streamlit sets it as aria-label)."""
    from selenium.webdriver.common.by import By

    field = driver.find_element(By.CSS_SELECTOR, f"input[aria-label='{label}']")
    field.clear()
    field.send_keys(text)


def page_url(base: str, alert_id: str | None = None) -> str:
    return f"{base}/?alert={quote(alert_id, safe='')}" if alert_id else base


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", required=True, help="alert store URL")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    parser.add_argument("--alert", help="alert id to open (default: the newest)")
    parser.add_argument("--tab", choices=["Alerts", "Cameras"], default="Alerts")
    parser.add_argument("--width", type=int, default=1600)
    parser.add_argument("--height", type=int, default=1700)
    parser.add_argument("--clip", action="store_true", help="wait for the alert's clip to load")
    args = parser.parse_args(argv)
    with serve(args.store) as base, headless_chromium(args.width, args.height) as driver:
        driver.get(page_url(base, args.alert))
        wait_for_text(driver, "Alert feed")
        wait_for_text(driver, "Operator note")
        if args.clip:
            wait_for_videos(driver)
        if args.tab != "Alerts":
            open_tab(driver, args.tab)
            wait_for_text(driver, "Last frame seen")
        time.sleep(2)  # images and charts finish drawing after the text
        args.out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(args.out))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
