"""The security dashboard: evidence rendering, the Streamlit app against real SQLite and Redis
stores (AppTest), and `vad dashboard` served to headless Chromium."""

from __future__ import annotations

import re
import shutil
import sqlite3
import time
from datetime import timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest

from dashboard.evidence import evidence_image, reference_pair
from dashboard.feed import MalformedAlert, feed_row
from dashboard.screenshot import click_button, headless_chromium, page_url, serve, wait_for_text
from dashboard.settings import DashboardSettings
from vad.commands.common import config_from_args
from vad.config import VadConfig, load_config
from vad.errors import VadError
from vad.stores import AlertQuery, AlertStore, open_store
from vad.types import Alert, CameraStatus, Gap
from streams.local_servers import free_port

APP = Path(__file__).resolve().parents[1] / "dashboard" / "app.py"
FRAME_SHAPE = (240, 360)
BOX = (200, 80, 60, 50)  # x, y, w, h of the synthetic anomaly in the keyframe


# --- synthetic alerts ------------------------------------------------------------------------

def evidence() -> tuple[bytes, bytes]:
    """A keyframe with a bright object at BOX and a low-resolution heatmap peaking there."""
    frame = np.full((*FRAME_SHAPE, 3), 70, np.uint8)
    x, y, w, h = BOX
    frame[y:y + h, x:x + w] = 230
    heat = np.zeros((FRAME_SHAPE[0] // 8, FRAME_SHAPE[1] // 8), np.uint8)
    heat[y // 8:(y + h) // 8, x // 8:(x + w) // 8] = 255
    heat = cv2.GaussianBlur(heat, (3, 3), 0)
    return cv2.imencode(".jpg", frame)[1].tobytes(), cv2.imencode(".png", heat)[1].tobytes()


# (camera, start frame, peak score, status, explanation)
ALERTS = [("cam-a", 20, 4.0, "new", ""),
          ("cam-b", 50, 3.2, "resolved", ""),
          ("cam-a", 100, 8.5, "acknowledged", ""),
          ("cam-b", 150, 6.0, "new", "A cyclist rides through the pedestrian walkway.")]
FPS = 10.0


def make_alert(camera: str, start: int, peak: float, status: str = "new", explanation: str = "",
               created_at: float | None = None) -> Alert:
    keyframe, heatmap = evidence()
    return Alert(id=f"{camera}:{start}", camera_id=camera, start_frame=start, end_frame=start + 20,
                 start_time=start / FPS, end_time=(start + 20) / FPS, peak_frame=start + 10,
                 peak_score=peak, mean_score=peak / 2, status=status,
                 created_at=created_at if created_at is not None else 1_700_000_000 + start,
                 explanation=explanation,
                 rule="Only pedestrians may use the walkway." if explanation else "",
                 motion_description="fast, straight motion" if explanation else "",
                 objects="bicycle, person" if explanation else "",
                 keyframe_jpeg=keyframe, heatmap_png=heatmap)


def populate(store: AlertStore) -> None:
    frames = np.arange(200)
    for camera in ("cam-a", "cam-b"):
        scores = np.zeros(200)
        for cam, start, peak, _, _ in ALERTS:
            if cam == camera:
                scores[start:start + 21] = peak * np.hanning(21)
        store.record_scores(camera, frames, frames / FPS, scores)
    for camera, start, peak, status, explanation in ALERTS:
        store.put(make_alert(camera, start, peak, explanation=explanation))
        if status != "new":
            store.set_status(f"{camera}:{start}", status)


@pytest.fixture(name="sqlite_url")
def populated_sqlite_url(tmp_path) -> str:
    """A SQLite alert store holding the `populate` alerts (also used by other modules)."""
    url = f"sqlite:///{tmp_path}/alerts.db"
    with open_store(url) as store:
        populate(store)
    return url


@pytest.fixture
def redis_url(redis_server) -> str:
    with open_store(redis_server.url) as store:
        populate(store)
    return redis_server.url


# --- evidence and feed rows ------------------------------------------------------------------

def test_evidence_overlays_the_heatmap_and_boxes_the_object():
    alert = make_alert("cam-a", 20, 4.0)
    image, caption = evidence_image(alert)
    assert image.shape == (*FRAME_SHAPE, 3) and "heatmap" in caption
    red = (image[..., 2] > 200) & (image[..., 0] < 60) & (image[..., 1] < 60)
    ys, xs = np.nonzero(red)
    x, y, w, h = BOX
    # The box outline is drawn around the object, within the heatmap's 8-pixel resolution.
    assert abs(xs.min() - x) <= 12 and abs(xs.max() - (x + w)) <= 12
    assert abs(ys.min() - y) <= 12 and abs(ys.max() - (y + h)) <= 12


def test_unusable_evidence_is_explained():
    alert = make_alert("cam-a", 20, 4.0)
    alert.heatmap_png = b"not a png"
    image, caption = evidence_image(alert)
    assert image.shape == (*FRAME_SHAPE, 3) and "heatmap is not a readable image" in caption
    alert.keyframe_jpeg = None
    with pytest.raises(VadError, match="no keyframe"):
        evidence_image(alert)


def test_feed_row_rejects_malformed_records():
    row = feed_row(make_alert("cam-a", 20, 4.0), now=1_700_000_100)
    assert (row.severity, row.status, row.event_time) == (4.0, "new", "video t=2.0 s")
    assert (row.duration, row.frames) == ("2.0 s", 21) and row.raised == "1 min ago"
    bad = make_alert("cam-a", 20, 4.0)
    bad.peak_score = "high"
    with pytest.raises(MalformedAlert, match="peak_score"):
        feed_row(bad)


def test_an_ongoing_alert_shows_as_ongoing(monkeypatch, tmp_path):
    url = f"sqlite:///{tmp_path}/ongoing.db"
    alert = make_alert("cam-a", 20, 4.0)
    alert.lifecycle = "ongoing"
    with open_store(url) as store:
        store.put(alert)
    row = feed_row(alert, now=1_700_000_100)
    assert row.ongoing and row.duration == "2.0 s so far"
    app = run_app(monkeypatch, url)
    assert_no_exception(app)
    ongoing = ":red-badge[:material/radio_button_checked: ongoing]"
    assert [str(e.value) for e in app.markdown].count(ongoing) == 2  # in the feed and detail


def test_settings_round_trip_through_the_environment():
    config = load_config(None, ["store.url=redis://:pw@h:1/0", "dashboard.threshold=2.5",
                                "dashboard.refresh=1", "dashboard.feed_rows=7"])
    settings = DashboardSettings.from_env(DashboardSettings.to_env(config))
    assert settings == DashboardSettings(config.store, 2.5, 1.0, 7)
    assert settings.store_label == "redis://:***@h:1/0"
    with pytest.raises(VadError, match="VAD_DASHBOARD_CONFIG: dashboard.refresh"):
        DashboardSettings.from_env({"VAD_DASHBOARD_CONFIG": '{"dashboard": {"refresh": -1}}'})
    with pytest.raises(VadError, match="not the JSON of a config"):
        DashboardSettings.from_env({"VAD_DASHBOARD_CONFIG": "{"})


# --- the Streamlit app (AppTest) -------------------------------------------------------------

def test_vad_dashboard_serves_streamlit_headless_on_loopback():
    from vad.cli import build_parser
    from vad.commands.dashboard import streamlit_command

    args = build_parser().parse_args(["dashboard", "--store", "redis://h:6379/0", "--port", "8600"])
    config = config_from_args(args)
    command = streamlit_command("dashboard/app.py", config.dashboard.host, config.dashboard.port)
    assert command[1:4] == ["-m", "streamlit", "run"] and command[4].endswith("dashboard/app.py")
    options = dict(zip(command[5::2], command[6::2]))
    assert options["--server.address"] == "127.0.0.1" and options["--server.port"] == "8600"
    assert options["--server.headless"] == "true"
    # No tracebacks in the browser, no agent API beside the page.
    assert options["--client.showErrorDetails"] == "none"
    assert options["--server.enableAgentApi"] == "false"
    with pytest.raises(VadError, match="--port: 70000 is not a TCP port"):
        build_parser().parse_args(["dashboard", "--port", "70000"])


def test_vad_dashboard_settings_come_from_options_then_config(tmp_path):
    from vad.cli import build_parser
    def settings_from_args(args):
        return DashboardSettings.from_config(config_from_args(args))

    config = tmp_path / "site.yaml"
    config.write_text("store: redis://cctv:6379/1\n"
                      "events: {threshold: 4.0, release_threshold: 2.0}\n")
    parse = build_parser().parse_args
    assert settings_from_args(parse(["dashboard"])) == DashboardSettings.from_config(VadConfig())
    from_config = settings_from_args(parse(["dashboard", "--config", str(config)]))
    assert (from_config.store.url, from_config.threshold) == ("redis://cctv:6379/1", 4.0)
    overridden = settings_from_args(parse(["dashboard", "--config", str(config), "--store",
                                           "sqlite:///x.db", "--set", "events.threshold=3.5"]))
    assert (overridden.store.url, overridden.threshold) == ("sqlite:///x.db", 3.5)
    drawn = settings_from_args(parse(["dashboard", "--threshold", "5"]))
    assert drawn.threshold == 5.0


@pytest.fixture(autouse=True)
def _restore_bound_address():
    """run_app sets Streamlit's server.address, a process-wide option."""
    from streamlit import config as streamlit_config

    previous = streamlit_config.get_option("server.address")
    yield
    streamlit_config.set_option("server.address", previous)


def run_app(monkeypatch, store_url: str, *overrides: str, address: str = "127.0.0.1",
            **query_params: str):
    from streamlit import config as streamlit_config
    from streamlit.testing.v1 import AppTest

    import streamlit as st

    st.cache_resource.clear()  # a fresh server: no store connection kept from another test
    config = load_config(None, [f"store.url={store_url}", *overrides])
    for key, value in DashboardSettings.to_env(config).items():
        monkeypatch.setenv(key, value)
    streamlit_config.set_option("server.address", address)  # as `vad dashboard --host` does
    monkeypatch.delenv("VAD_DASHBOARD_USERS", raising=False)
    app = AppTest.from_file(str(APP), default_timeout=120)
    app.query_params.update(query_params)
    return app.run()


def feed_ids(app) -> list[str]:
    return [b.key.removeprefix("open-") for b in app.button if b.key and b.key.startswith("open-")]


def texts(app) -> str:
    return "\n".join(str(e.value) for kind in ("markdown", "caption", "info", "error", "warning",
                                               "success", "subheader", "text")
                     for e in getattr(app, kind))


def assert_no_exception(app) -> None:
    assert not app.exception, [e.value for e in app.exception]


def check_feed_filters_and_triage(monkeypatch, url: str) -> None:
    app = run_app(monkeypatch, url)
    assert_no_exception(app)
    # Newest first (created_at), every alert listed.
    assert feed_ids(app) == ["cam-b:150", "cam-a:100", "cam-b:50", "cam-a:20"]
    # The newest alert is opened by default, with its evidence, timeline and explanation.
    assert "A cyclist rides through the pedestrian walkway." in texts(app)
    assert "Only pedestrians may use the walkway." in texts(app)
    assert len(app.get("image")) == 1
    assert app.get("vega_lite_chart")  # score timelines are plotted

    app.selectbox(key="camera").set_value("cam-a").run()
    assert feed_ids(app) == ["cam-a:100", "cam-a:20"]
    app.selectbox(key="status").set_value("new").run()
    assert feed_ids(app) == ["cam-a:20"]
    app.selectbox(key="camera").set_value("Any").run()
    app.number_input(key="min_severity").set_value(5.0).run()
    assert feed_ids(app) == ["cam-b:150"]
    app.selectbox(key="status").set_value("Any").run()
    assert feed_ids(app) == ["cam-b:150", "cam-a:100"]
    app.number_input(key="min_severity").set_value(None).run()
    time_slider = app.slider[0]
    assert time_slider.value == (2.0, 15.0)
    time_slider.set_value((4.0, 12.0)).run()  # event times 2, 5, 10, 15 s
    assert feed_ids(app) == ["cam-a:100", "cam-b:50"]
    app.selectbox(key="status").set_value("new").run()
    assert "No alert matches these filters." in texts(app)

    # Acknowledge an alert with a note: stored, and seen by another viewer.
    app = run_app(monkeypatch, url)
    app.button(key="open-cam-a:20").click().run()
    assert app.query_params["alert"] == "cam-a:20"  # a shareable link
    app.text_area(key="note-cam-a:20").input("Cart on the walkway, security informed.")
    before = time.time()
    app.button(key="acknowledged-cam-a:20").click().run()
    after = time.time()
    assert_no_exception(app)
    assert "Marked acknowledged." in texts(app)
    with open_store(url) as store:
        stored = store.get("cam-a:20")
    assert stored.status == "acknowledged"
    assert stored.note == "Cart on the walkway, security informed."
    # Nobody signs in on loopback without operators: recorded as anonymous, when it happened.
    assert stored.status_by == "anonymous" and before <= stored.status_at <= after
    assert re.search(r"^acknowledged by anonymous, \d+ s ago$", texts(app), re.M)
    other_viewer = run_app(monkeypatch, url, alert="cam-a:20")
    assert other_viewer.text_area(key="note-cam-a:20").value == stored.note
    other_viewer.selectbox(key="status").set_value("acknowledged").run()
    assert feed_ids(other_viewer) == ["cam-a:100", "cam-a:20"]


def test_app_on_sqlite_filters_and_persists_triage(monkeypatch, sqlite_url):
    check_feed_filters_and_triage(monkeypatch, sqlite_url)


def test_app_on_redis_filters_and_persists_triage(monkeypatch, redis_url):
    check_feed_filters_and_triage(monkeypatch, redis_url)


def test_live_cameras_show_wall_clock_times_and_lag(monkeypatch, tmp_path):
    """Live streams carry Unix timestamps: times are UTC, the time filter is a datetime range,
    and the camera overview knows the worker lag."""
    url = f"sqlite:///{tmp_path}/live.db"
    now = time.time()
    with open_store(url) as store:
        for start, minutes_ago in ((100, 50), (400, 20), (700, 5)):
            alert = make_alert("gate", start, 5.0, created_at=now - minutes_ago * 60)
            alert.start_time, alert.end_time = now - minutes_ago * 60, now - minutes_ago * 60 + 2
            store.put(alert)
        store.record_scores("gate", [699, 700], [now - 301, now - 300], [1.0, 5.0])
    app = run_app(monkeypatch, url)
    assert_no_exception(app)
    assert feed_ids(app) == ["gate:700", "gate:400", "gate:100"]
    assert "UTC" in texts(app)
    low, high = app.slider[0].value
    app.slider[0].set_value((low + timedelta(minutes=10), high)).run()
    assert feed_ids(app) == ["gate:700", "gate:400"]
    lag = next(m.value for m in app.metric if m.label == "Worker lag")
    assert lag.endswith(" s") and 299 <= float(lag.split()[0]) < 400


def test_camera_overview_counts_alerts(monkeypatch, sqlite_url):
    app = run_app(monkeypatch, sqlite_url)
    metrics = {(m.label, m.value) for m in app.metric}
    assert ("Alerts", "2") in metrics and ("Open (new)", "1") in metrics
    assert ("Last frame seen", "199") in metrics
    assert len(app.get("vega_lite_chart")) >= 3  # the detail timeline and one per camera


def test_alert_detail_shows_the_predicted_class(monkeypatch, tmp_path):
    url = f"sqlite:///{tmp_path}/labelled.db"
    with open_store(url) as store:
        labelled = make_alert("cam-a", 20, 4.0)
        labelled.label, labelled.label_confidence = "Fighting", 0.82
        store.put(labelled)
        store.put(make_alert("cam-b", 50, 3.0, created_at=1_600_000_000))
    app = run_app(monkeypatch, url)
    assert_no_exception(app)
    assert "Predicted class" in [c.value for c in app.caption]
    assert "Fighting (confidence 82%)" in [t.value for t in app.text]  # data: plain text
    app.button(key="open-cam-b:50").click().run()
    assert "Predicted class" not in texts(app)  # an alert without a class shows none


def test_camera_tab_shows_each_live_cameras_status(monkeypatch, sqlite_url):
    gap = Gap(last_frame=41, next_frame=60, start_time=1_700_000_100.0,
              end_time=1_700_000_101.9)
    with open_store(sqlite_url) as store:
        store.set_camera_status(CameraStatus(
            "cam-a", "online", since=1_700_000_101.9, updated_at=1_700_000_101.9,
            source="rtsp://admin:***@10.0.0.7/stream1", last_error="cannot open (Connection "
            "refused)", last_frame=60, reconnects=1, gap_count=1, total_gap_s=1.9, gaps=(gap,)))
        store.set_camera_status(CameraStatus("gate", "offline", since=1_700_000_200.0,
                                             updated_at=1_700_000_230.0,
                                             down_since=1_700_000_170.0,
                                             last_error="no answer within 10 s"))
    app = run_app(monkeypatch, sqlite_url)
    assert_no_exception(app)
    shown = texts(app)
    assert "rtsp://admin:***@10.0.0.7/stream1 · 1 reconnection(s) · 1 gap(s), 1.9 s in all · " \
           "latest: 1.9 s" in shown
    assert "Last error: cannot open (Connection refused)" in shown
    assert ":green-badge[online]" in shown and ":red-badge[offline]" in shown
    assert "Last error: no answer within 10 s" in shown  # a camera known by its status only


def test_empty_store_says_so(monkeypatch, tmp_path):
    app = run_app(monkeypatch, f"sqlite:///{tmp_path}/empty.db")
    assert_no_exception(app)
    assert "No alerts yet: the store is empty." in texts(app)
    assert "No camera has reported scores or alerts yet." in texts(app)


def text_file_url(tmp: Path) -> str:
    (tmp / "notes.txt").write_text("not a database " * 20)
    return f"sqlite:///{tmp}/notes.txt"


@pytest.mark.parametrize("make_url", [
    lambda tmp: f"sqlite:///{tmp}",  # a directory
    text_file_url,
    lambda tmp: "postgres://nowhere/alerts",  # no such store
], ids=["directory", "not-sqlite", "unknown-scheme"])
def test_unusable_store_is_an_error_message(monkeypatch, tmp_path, make_url):
    app = run_app(monkeypatch, make_url(tmp_path))
    assert_no_exception(app)
    assert len(app.error) == 1 and "Cannot read the alert store" in app.error[0].value


def test_redis_down_is_an_error_message(monkeypatch, redis_server):
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    app = run_app(monkeypatch, url)
    assert_no_exception(app)
    assert app.error and "Cannot read the alert store" in app.error[0].value


def test_malformed_records_are_reported_not_raised(monkeypatch, sqlite_url):
    database = sqlite_url.removeprefix("sqlite:///")
    with sqlite3.connect(database) as db:
        db.execute("UPDATE alerts SET peak_score='very high' WHERE id='cam-b:50'")
        db.execute("UPDATE alerts SET keyframe_jpeg=x'00ff00', heatmap_png=NULL "
                   "WHERE id='cam-a:100'")
    app = run_app(monkeypatch, sqlite_url)
    assert_no_exception(app)
    assert "1 malformed alert record(s) skipped" in app.warning[0].value
    assert feed_ids(app) == ["cam-b:150", "cam-a:100", "cam-a:20"]
    app.button(key="open-cam-a:100").click().run()
    assert_no_exception(app)
    assert "No evidence image:" in [w.value for w in app.warning]
    assert "the keyframe is not a readable image (3 bytes)" in texts(app)
    detail = run_app(monkeypatch, sqlite_url, alert="cam-b:50")
    assert_no_exception(detail)
    assert "This alert record is malformed and cannot be shown:" in [e.value for e in detail.error]
    assert "peak_score is 'very high', not a finite number" in texts(detail)


def patrol_alert() -> Alert:
    """A reference-based alert: the matched reference frame beside the query keyframe."""
    from vad.types import Box

    alert = make_alert("patrol-1", 40, 9.0)
    reference = np.full((*FRAME_SHAPE, 3), 70, np.uint8)  # the scene before the object
    alert.reference_jpeg = cv2.imencode(".jpg", reference)[1].tobytes()
    alert.reference_frame = 12
    x, y, w, h = BOX
    alert.boxes = (Box(x / FRAME_SHAPE[1], y / FRAME_SHAPE[0], (x + w) / FRAME_SHAPE[1],
                       (y + h) / FRAME_SHAPE[0], 9.0),)
    return alert


def test_patrol_evidence_puts_reference_and_query_side_by_side():
    (reference, left), (query, right) = reference_pair(patrol_alert())
    assert reference.shape == query.shape == (*FRAME_SHAPE, 3)
    assert "Reference frame 12" in left and "frame 50" in right
    assert abs(int(reference[100, 220].mean()) - 70) < 5  # no object in the reference
    red = (query[..., 2] > 200) & (query[..., 0] < 60) & (query[..., 1] < 60)
    ys, xs = np.nonzero(red)
    x, y, w, h = BOX  # the alert's own box is drawn, where the object is
    assert abs(xs.min() - x) <= 2 and abs(xs.max() - (x + w - 1)) <= 2
    assert abs(ys.min() - y) <= 2 and abs(ys.max() - (y + h - 1)) <= 2
    broken = patrol_alert()
    broken.reference_jpeg = b"not a jpeg"
    with pytest.raises(VadError, match="reference frame is not a readable image"):
        reference_pair(broken)


def test_app_shows_patrol_alerts_side_by_side(monkeypatch, tmp_path):
    url = f"sqlite:///{tmp_path}/patrol.db"
    with open_store(url) as store:
        store.put(patrol_alert())
        store.put(make_alert("cam-a", 20, 4.0, created_at=1))
    app = run_app(monkeypatch, url)
    assert_no_exception(app)
    assert len(app.get("image")) == 2  # reference | query
    assert "Reference frame 12" in str(app.get("image")[0].proto)
    app.button(key="open-cam-a:20").click().run()
    assert len(app.get("image")) == 1  # other alerts keep their single evidence image


# --- served to a real browser ----------------------------------------------------------------

def test_vad_dashboard_in_headless_chromium(sqlite_url, tmp_path):
    pytest.importorskip("selenium")
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.skip("chromium and chromium-driver are not installed")
    # Generous waits: they only matter on a heavily loaded machine.
    with serve(sqlite_url, refresh=1.0, timeout=180) as base, headless_chromium() as driver:
        driver.get(page_url(base))
        wait_for_text(driver, "Alert feed · 4 alert(s)", timeout=120)
        page = wait_for_text(driver, "Operator note", timeout=120)
        for text in ("cam-a", "cam-b", "acknowledged", "resolved", "video t=15.0 s",
                     "A cyclist rides through the pedestrian walkway."):
            assert text in page
        # Acknowledging in the browser reaches the store.
        click_button(driver, "Acknowledge")
        wait_for_text(driver, "Marked acknowledged.", timeout=120)
        with open_store(sqlite_url) as store:
            assert store.get("cam-b:150").status == "acknowledged"
        # The feed refreshes itself: a new alert shows without reloading the page.
        with open_store(sqlite_url) as store:
            store.put(make_alert("cam-c", 5, 9.9, created_at=time.time()))
        page = wait_for_text(driver, "Alert feed · 5 alert(s)", timeout=120)
        assert "cam-c" in page
        driver.save_screenshot(str(tmp_path / "dashboard.png"))
    screenshot = cv2.imread(str(tmp_path / "dashboard.png"))
    assert screenshot is not None and screenshot.shape[0] > 500


@pytest.mark.slow
def test_ped2_alert_evidence_boxes_the_ground_truth_anomaly(monkeypatch, ped2_dir, tmp_path):
    """`vad fit` + `vad run` on Ped2 test video 04 (a cart among pedestrians), then the
    dashboard: the alert is listed and its evidence box lies on the ground-truth mask."""
    from vad.cli import main as vad

    url = f"sqlite:///{tmp_path}/ped2.db"
    assert vad(["fit", str(ped2_dir / "train"), "--scorer", "frame-diff",
                "--out", str(tmp_path / "fd")]) == 0
    assert vad(["run", str(ped2_dir / "test" / "04.mp4"), "--checkpoint", str(tmp_path / "fd"),
                "--store", url, "--no-progress"]) == 0
    with open_store(url) as store:
        alert = max(store.query(AlertQuery()), key=lambda a: a.peak_score)
    app = run_app(monkeypatch, url, alert=alert.id)
    assert_no_exception(app)
    assert alert.id in feed_ids(app) and len(app.get("image")) == 1

    image, caption = evidence_image(alert)
    assert "heatmap" in caption
    ys, xs = np.nonzero(np.all(image == (0, 0, 255), axis=-1))  # the box outline
    box = np.zeros(image.shape[:2], bool)
    box[ys.min():ys.max() + 1, xs.min():xs.max() + 1] = True
    mask = np.load(ped2_dir / "test_masks" / "04.npz")["masks"][alert.peak_frame].astype(bool)
    assert mask.sum() > 0
    # Most of the box is anomalous ground truth, and it holds most of the anomalous pixels.
    assert (box & mask).sum() / box.sum() > 0.3 and (box & mask).sum() / mask.sum() > 0.5
