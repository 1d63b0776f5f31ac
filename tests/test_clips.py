"""Event clips: the recorder's clip decodes and covers the event with its pre-roll (each frame
carries its index as a barcode that survives H.264), bounded in length and size; the stores
keep clips apart from the alerts and apply the retention policy, oldest first."""

from __future__ import annotations

import io

import numpy as np
import pytest

from vad.clips import ClipRecorder
from vad.config.evidence import ClipConfig, RetentionConfig
from vad.config.sections import StoreConfig
from vad.stores import open_store
from vad.types import Alert, ClipInfo, EventClip, Frame

FPS = 10.0
BITS = 12
SIZE = (64, 128)


def barcode_frame(camera: str, index: int, size: tuple[int, int] = SIZE,
                  timestamp: float | None = None) -> Frame:
    """A frame whose top row of 8x8 blocks spells its index in binary."""
    image = np.full((*size, 3), 60, np.uint8)
    for bit in range(BITS):
        if index >> bit & 1:
            image[8:16, 8 * bit + 4:8 * bit + 12] = 255
        else:
            image[8:16, 8 * bit + 4:8 * bit + 12] = 0
    return Frame(camera, index, index / FPS if timestamp is None else timestamp, image)


def decoded_indices(data: bytes) -> tuple[list[int], list[float]]:
    import av

    indices, times = [], []
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        for frame in container.decode(stream):
            image = frame.to_ndarray(format="gray")
            scale = image.shape[1] / SIZE[1]
            row = image[int(12 * scale)]
            bits = [row[int((8 * bit + 8) * scale)] > 128 for bit in range(BITS)]
            indices.append(sum(1 << bit for bit, on in enumerate(bits) if on))
            times.append(float(frame.time))
    return indices, times


def record(recorder: ClipRecorder, frames: range, opened_at: int, start_frame: int,
           closed_at: int) -> EventClip | None:
    clip = None
    for index in frames:
        recorder.push(barcode_frame("gate", index))
        if index == opened_at:
            recorder.start("gate:%d" % start_frame, start_frame)
        if index == closed_at:
            clip = recorder.finish("gate:%d" % start_frame)
    return clip


def test_the_clip_decodes_and_covers_the_event_with_its_pre_roll():
    # The alert opens at frame 60 for an event that began at frame 50 (10 frames of
    # lookback); the pre-roll is 1.5 s = 15 frames, so the clip starts at frame 35.
    recorder = ClipRecorder("gate", ClipConfig(pre_roll_s=1.5), lookback_frames=12)
    clip = record(recorder, range(0, 120), opened_at=60, start_frame=50, closed_at=90)
    assert clip is not None
    indices, times = decoded_indices(clip.data)
    assert indices == list(range(35, 91))  # every frame, in order, pre-roll to close
    assert times[0] == 0 and times[-1] == pytest.approx(5.5, abs=0.01)  # 10 fps kept
    info = clip.info
    assert (info.first_frame, info.last_frame, info.frames) == (35, 90, 56)
    assert info.size == len(clip.data) and info.duration_s == pytest.approx(5.5, abs=0.01)
    assert recorder.finish("gate:50") is None  # finished once


def test_gaps_keep_their_timing_and_long_events_stop_at_max_seconds():
    recorder = ClipRecorder("gate", ClipConfig(pre_roll_s=0, max_seconds=3.0))
    recorder.start("gate:0", 0)
    for index in range(80):  # 8 s of frames, with 2 s missing from frame 10 on
        timestamp = index / FPS + (2.0 if index >= 10 else 0.0)
        frame = barcode_frame("gate", index, timestamp=timestamp)
        recorder.push(frame)
    clip = recorder.finish("gate:0")
    indices, times = decoded_indices(clip.data)
    assert indices == list(range(0, 11))  # frame 10 is at 3.0 s; later ones are cut
    assert times[9] == pytest.approx(0.9, abs=0.01) and times[10] == pytest.approx(3.0, abs=0.01)


def test_wide_frames_are_scaled_and_oversize_clips_are_not_kept():
    recorder = ClipRecorder("gate", ClipConfig(pre_roll_s=0, max_width=64))
    recorder.start("gate:0", 0)
    for index in range(10):
        recorder.push(barcode_frame("gate", index, size=(128, 256)))
    import av

    with av.open(io.BytesIO(recorder.finish("gate:0").data)) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (64, 32)
    noisy = ClipRecorder("gate", ClipConfig(pre_roll_s=0, max_mb=0.001))
    noisy.start("gate:0", 0)
    rng = np.random.default_rng(0)
    for index in range(30):
        noisy.push(Frame("gate", index, index / FPS,
                         rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)))
    assert noisy.finish("gate:0") is None


def test_the_pre_roll_buffer_stays_bounded():
    recorder = ClipRecorder("gate", ClipConfig(pre_roll_s=1.0), lookback_frames=5)
    for index in range(500):
        recorder.push(barcode_frame("gate", index))
    # 5 frames of lookback plus 1 s (10 frames) before them, and the frame on the edge.
    assert len(recorder._buffer) <= 17


# --- stores ------------------------------------------------------------------------------------

def make_clip(alert_id: str, created_at: float, size: int) -> EventClip:
    data = bytes([len(alert_id)]) * size
    return EventClip(ClipInfo(alert_id, "gate", 0, 9, 10, 1.0, size, "0" * 64, created_at), data)


@pytest.fixture(params=["sqlite", "redis"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/alerts.db"
    return request.getfixturevalue("redis_server").url


def open_with(url: str, tmp_path, **retention) -> object:
    config = StoreConfig(url=url, retention=RetentionConfig(**retention))
    config.redis.spool = str(tmp_path / "spool.sqlite")
    return open_store(config)


def test_clips_round_trip_apart_from_the_alerts(store_url, tmp_path):
    import time

    with open_with(store_url, tmp_path) as store:
        store.put(Alert("gate:0", "gate", 0, 9, 0.0, 0.9, 4, 5.0, 4.0, keyframe_jpeg=b"jpg"))
        clip = make_clip("gate:0", time.time(), 1000)
        store.put_clip(clip)
        assert store.clip("gate:0") == clip and store.clip_info("gate:0") == clip.info
        assert store.clip("gate:1") is None and store.clip_info("gate:1") is None
        assert store.get("gate:0").keyframe_jpeg == b"jpg"


def test_retention_deletes_by_age_then_the_oldest_first(store_url, tmp_path):
    import time

    now = time.time()
    day = 86400
    with open_with(store_url, tmp_path, max_age_days=10, max_mb=3000 / 2**20) as store:
        for i, age_days in enumerate((20, 5, 4, 3)):
            created = now - age_days * day
            store.put(Alert(f"gate:{i}", "gate", i, i, 0.0, 0.1, i, 5.0, 4.0, created_at=created,
                            keyframe_jpeg=b"jpg", heatmap_png=b"png"))
            store.put_clip(make_clip(f"gate:{i}", created, 1000))
        # Storing the fourth clip: gate:0 is too old; then 3 x 1000 bytes fit in 3000.
        assert [store.clip_info(f"gate:{i}") is not None for i in range(4)] == \
            [False, True, True, True]
        old = store.get("gate:0")
        assert (old.keyframe_jpeg, old.heatmap_png) == (None, None)  # its images went too
        assert store.get("gate:1").keyframe_jpeg == b"jpg"
        store.put_clip(make_clip("gate:9", now, 1500))  # over the budget: the oldest go first
        assert [store.clip_info(f"gate:{i}") is not None for i in (1, 2, 3, 9)] == \
            [False, False, True, True]
        # Ten days on, everything but what is younger than ten days is gone.
        assert store.apply_retention(now + 8 * day) == 1
        assert store.clip_info("gate:3") is None and store.clip_info("gate:9") is not None


def test_the_dashboard_plays_the_clip(monkeypatch, tmp_path):
    from test_dashboard import assert_no_exception, make_alert, run_app

    url = f"sqlite:///{tmp_path}/alerts.db"
    recorder = ClipRecorder("cam-a", ClipConfig(pre_roll_s=1.0), lookback_frames=5)
    for index in range(40):
        recorder.push(barcode_frame("cam-a", index))
        if index == 25:
            recorder.start("cam-a:20", 20)
    clip = recorder.finish("cam-a:20")
    with open_store(url) as store:
        store.put(make_alert("cam-a", 20, 6.0))
        store.put(make_alert("cam-a", 60, 5.0))
        store.put_clip(clip)
    app = run_app(monkeypatch, url, alert="cam-a:20")
    assert_no_exception(app)
    videos = app.get("video")
    assert len(videos) == 1
    assert "Event clip: frames 10–39 (30 frames, 2.9 s," in "\n".join(c.value for c in app.caption)
    other = run_app(monkeypatch, url, alert="cam-a:60")
    assert not other.get("video") and "No event clip for this alert." in \
        [c.value for c in other.caption]


def test_event_clips_follow_the_alert_lifecycle(tmp_path):
    """As the pipeline drives them: frames told as they arrive, a clip started when an alert
    opens (some frames after its event began) and stored when it closes; an alert already
    open when its camera came (a restored checkpoint) gets a late clip, which never replaces
    a clip already stored."""
    from types import SimpleNamespace

    from vad.clips import EventClips

    def change(kind, alert):
        return SimpleNamespace(kind=kind, alert=alert)

    with open_store(f"sqlite:///{tmp_path}/alerts.db") as store:
        clips = EventClips(ClipConfig(pre_roll_s=0.5), store, lambda camera: 8)
        alert = Alert("gate:30", "gate", 30, 30, 3.0, 3.0, 30, 5.0, 5.0)
        for index in range(80):
            clips.frame(barcode_frame("gate", index))
            if index == 38:  # the event began at 30
                clips.changed(change("opened", alert))
            if index == 50:
                clips.changed(change("updated", alert))
                clips.changed(change("explained", alert))
            if index == 60:
                clips.changed(change("closed", alert))
        clips.close()
        whole = store.clip("gate:30")
        assert decoded_indices(whole.data)[0] == list(range(25, 61))  # pre-roll, event, close

        # A restarted worker replays the end of gate:30 and goes on with lobby:10's event.
        restarted = EventClips(ClipConfig(pre_roll_s=0.5), store, lambda camera: 8)
        lobby = Alert("lobby:10", "lobby", 10, 10, 1.0, 1.0, 10, 5.0, 5.0)
        for index in range(45, 70):
            restarted.frame(barcode_frame("gate", index))
            restarted.frame(barcode_frame("lobby", index))
            if index == 50:
                restarted.changed(change("updated", lobby))
            if index == 60:
                restarted.changed(change("closed", alert))
            if index == 65:
                restarted.changed(change("closed", lobby))
        restarted.close()
        assert store.clip("gate:30").data == whole.data  # the whole clip stays
        late = store.clip("lobby:10")
    assert decoded_indices(late.data)[0] == list(range(45, 66))  # from its first frame here
    assert (late.info.first_frame, late.info.last_frame) == (45, 65)
    disabled = EventClips(ClipConfig(enabled=False), None, lambda camera: 0)
    disabled.frame(barcode_frame("gate", 0))
    disabled.changed(change("opened", alert))  # nothing recorded, nothing stored
    assert not disabled._recorders


def test_chromium_plays_the_clip(tmp_path):
    import shutil
    import time

    pytest.importorskip("selenium")
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.skip("chromium and chromium-driver are not installed")
    from test_dashboard import make_alert

    from dashboard.screenshot import (headless_chromium, page_url, serve, wait_for_text,
                                      wait_for_videos)

    url = f"sqlite:///{tmp_path}/alerts.db"
    recorder = ClipRecorder("cam-a", ClipConfig(pre_roll_s=1.0), lookback_frames=5)
    for index in range(0, 45):
        recorder.push(barcode_frame("cam-a", index, size=(240, 360)))
        if index == 22:
            recorder.start("cam-a:20", 20)
    with open_store(url) as store:
        store.put(make_alert("cam-a", 20, 6.0, created_at=time.time()))
        store.put_clip(recorder.finish("cam-a:20"))
    with serve(url, timeout=180) as base, headless_chromium() as driver:
        driver.get(page_url(base, "cam-a:20"))
        wait_for_text(driver, "Event clip: frames 10–44 (35 frames", timeout=120)
        assert wait_for_videos(driver, timeout=60) == 1  # decoded by the browser itself
        assert driver.execute_script("return document.querySelector('video').duration") == \
            pytest.approx(3.4, abs=0.1)
