"""The parts of live cameras that need no server: backoff, the detect-fps limiter, the status
state machine, camera-offline alerts, gaps in the pipeline, and the per-camera `live` config.
(tests/test_rtsp.py runs them against a real RTSP server.)"""

from __future__ import annotations

import random

import pytest

from conftest import moving_square, write_video
from streams.live import Backoff, FrameRateLimiter, StatusTracker
from vad.cameras import CameraFeeds, CameraStatusRecorder
from vad.cli import main
from vad.config import LiveSourceConfig, load_config
from vad.errors import VadError
from vad.pipeline import Pipeline
from vad.stores import AlertQuery, open_store
from vad.types import CameraStatus, Frame, Gap


def test_backoff_grows_exponentially_with_bounded_jitter_and_resets():
    settings = LiveSourceConfig(reconnect_initial_s=1, reconnect_factor=2, reconnect_max_s=8,
                                reconnect_jitter=0.2)
    backoff = Backoff(settings, random.Random(1))
    delays = [backoff.next_delay() for _ in range(6)]
    for delay, base in zip(delays, [1, 2, 4, 8, 8, 8]):
        assert base * 0.8 <= delay <= base * 1.2
    assert len(set(delays[3:])) == 3  # jitter: capped waits still differ
    backoff.reset()
    assert 0.8 <= backoff.next_delay() <= 1.2
    exact = Backoff(settings.model_copy(update={"reconnect_jitter": 0.0}))
    assert [exact.next_delay() for _ in range(5)] == [1, 2, 4, 8, 8]


@pytest.mark.parametrize("camera_fps, detect_fps, kept_every", [(25, 5, 5), (30, 10, 3),
                                                                 (10, 10, 1), (10, None, 1)])
def test_frame_rate_limiter_keeps_the_detect_rate(camera_fps, detect_fps, kept_every):
    limiter = FrameRateLimiter(detect_fps)
    kept = [k for k in range(120) if limiter.keep(k / camera_fps)]
    assert kept == list(range(0, 120, kept_every))


def test_frame_rate_limiter_restarts_its_schedule_after_a_gap():
    limiter = FrameRateLimiter(5)
    assert [limiter.keep(t) for t in (0.0, 0.1, 0.2)] == [True, False, True]
    assert [limiter.keep(t) for t in (7.05, 7.15, 7.25)] == [True, False, True]


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_status_goes_through_every_state_and_records_the_gap():
    clock, seen = Clock(), []
    settings = LiveSourceConfig(offline_after_s=30)
    tracker = StatusTracker("gate", "rtsp://cam/1", settings, seen.append, clock)
    tracker.opened()
    clock.now += 1
    tracker.frame(0, 1001.0, None)
    tracker.frame(1, 1001.1, None)  # no change: not reported
    clock.now += 5
    tracker.failed("the stream ended", stalled=False)
    clock.now += 10
    tracker.failed("no answer within 10 s", stalled=True)
    clock.now += 20
    tracker.check_offline()
    tracker.check_offline()  # already offline: not reported again
    tracker.opened()
    clock.now += 4
    tracker.frame(400, 1040.0, Gap(1, 400, 1001.1, 1040.0))
    assert [(s.state, s.last_error) for s in seen] == [
        ("reconnecting", ""), ("online", ""), ("reconnecting", "the stream ended"),
        ("stalled", "no answer within 10 s"), ("offline", "no answer within 10 s"),
        ("online", "no answer within 10 s")]
    went_down = seen[2]
    assert went_down.down_since == 1001.0 and went_down.last_frame == 1  # the last frame's time
    back = seen[-1]
    assert back.down_since is None and back.since == clock.now and back.reconnects == 1
    assert back.gap_count == 1 and back.total_gap_s == pytest.approx(38.9)
    assert back.last_frame == 400


def test_a_status_that_cannot_be_stored_does_not_stop_the_camera():
    def broken(status):
        raise OSError("disk full")

    tracker = StatusTracker("gate", "rtsp://cam/1", LiveSourceConfig(), broken)
    tracker.failed("the stream ended", stalled=False)
    assert tracker.status.state == "reconnecting"


def status(state: str, at: float, **fields) -> CameraStatus:
    return CameraStatus("gate", state, since=at, updated_at=at, **fields)


def test_one_offline_alert_per_outage_updated_until_the_camera_is_back(tmp_path):
    with open_store(f"sqlite:///{tmp_path}/a.db") as store:
        record = CameraStatusRecorder(store)
        record(status("online", 100.0, last_frame=0))
        record(status("reconnecting", 105.0, down_since=100.0, last_frame=49,
                      last_error="the stream ended"))
        record(status("offline", 130.0, down_since=100.0, last_frame=49,
                      last_error="cannot open (Connection refused)"))
        (alert,) = store.query(AlertQuery(kind="camera-offline"))
        assert alert.id == "gate:offline:50" and (alert.start_frame, alert.end_frame) == (50, 50)
        assert alert.explanation == ("camera offline for 30 s so far "
                                     "(cannot open (Connection refused))")
        store.set_status(alert.id, "acknowledged", "switch rebooted")
        record(replace_time(status("offline", 130.0, down_since=100.0, last_frame=49,
                                   last_error="cannot open (Connection refused)"), 160.0))
        record(status("online", 170.0, last_frame=750, last_error="cannot open (Connection "
                      "refused)"))
        (alert,) = store.query(AlertQuery(kind="camera-offline"))
        assert (alert.start_time, alert.end_time) == (100.0, 170.0)
        assert (alert.start_frame, alert.end_frame) == (50, 749)
        assert alert.explanation.startswith("camera offline for 70 s (cannot open")
        assert alert.explanation.endswith("frames resumed at frame 750")
        assert (alert.status, alert.note) == ("acknowledged", "switch rebooted")
        record(status("offline", 300.0, down_since=290.0, last_frame=800))  # a new outage
        assert len(store.query(AlertQuery(kind="camera-offline"))) == 2
        assert store.camera_statuses()["gate"].state == "offline"


def replace_time(status: CameraStatus, at: float) -> CameraStatus:
    from dataclasses import replace

    return replace(status, updated_at=at)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("live")
    video = write_video(root / "normal.mp4", moving_square(n=30, speed=2))
    out = root / "frame-diff"
    assert main(["fit", str(video), "--scorer", "frame-diff", "--out", str(out),
                 "--param", "size=[32,48]", "--no-progress"]) == 0
    return out


def test_a_gap_in_indices_ends_the_event_and_restarts_scoring(checkpoint, tmp_path):
    """An event open when a camera's frames stop ends there; the first frame after the gap
    is history for the scorer, never compared with the last one before it."""
    images = moving_square(n=40, speed=2)
    images[15:40] = moving_square(n=25, speed=9, side=24)  # an anomaly across the gap
    frames = [Frame("gate", i if i < 25 else i + 100, i / 10, image)
              for i, image in enumerate(images)]
    config = load_config(None, [f"scorers=[{{name: frame-diff, checkpoint: '{checkpoint}'}}]",
                                "events.min_duration=2"])
    with open_store(f"sqlite:///{tmp_path}/a.db") as store:
        feeds = CameraFeeds(Pipeline.from_config(config, store))
        alerts = [alert for frame in frames for alert in feeds.feed(frame)]
        alerts += feeds.end("gate")
        scored = store.scores("gate").indices.tolist()
    assert 125 not in scored and scored == [i for i in range(1, 25)] + list(range(126, 140))
    assert alerts and all(a.end_frame <= 24 or a.start_frame >= 125 for a in alerts)
    assert any(a.end_frame == 24 for a in alerts)  # the open event closed at the gap


def test_cameras_override_the_global_live_section():
    config = load_config(None, [
        "live.stall_timeout_s=4", "live.offline_after_s=60",
        "cameras.gate.source=rtsp://cam/1", "cameras.gate.live.detect_fps=5",
        "cameras.yard.source=http://cam/2.mjpg"])
    gate, yard = config.cameras["gate"].live, config.cameras["yard"].live
    assert (gate.detect_fps, gate.stall_timeout_s, gate.offline_after_s) == (5.0, 4.0, 60.0)
    assert (yard.detect_fps, yard.stall_timeout_s) == (None, 4.0)
    assert config.camera("elsewhere").live == config.live
    with pytest.raises(VadError, match="live.stall_timeout_s"):
        load_config(None, ["cameras.gate.live.stall_timeout_s=0"])
    with pytest.raises(VadError, match="reconnect_max_s must not be below"):
        load_config(None, ["live.reconnect_initial_s=60"])
    with pytest.raises(VadError, match="live.retries"):
        load_config(None, ["live.retries=3"])


def test_duplicate_camera_ids_are_refused(capsys):
    assert main(["run", "rtsp://127.0.0.1:1/cam", "rtsp://127.0.0.1:1/cam"]) == 2
    assert "camera ids must be unique, got 127.0.0.1_1_cam, 127.0.0.1_1_cam" in \
        capsys.readouterr().err
