"""Live cameras against a real RTSP server (GStreamer's, run by the system python3 and killed
by its PID): frames at the stream's rate, a server killed and restarted, a frozen server, a
silent TCP server, unreachable and wrong URLs, HTTP MJPEG, and `vad run` on live cameras.
Relative checks only (counts, indices, timestamps against each other); the hard time limits
below only turn a hang into a failure."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import PED2, REPO, moving_square, write_video
from streams.local_servers import RtspServer, free_port
from streams.sources import StreamSource
from vad.cameras import CameraFeeds, CameraStatusRecorder
from vad.cli import main
from vad.config import LiveSourceConfig, load_config
from vad.errors import SourceError
from vad.pipeline import Pipeline
from vad.stores import AlertQuery, open_store
from vad.types import CameraStatus, Frame

UNAVAILABLE = RtspServer.available()
pytestmark = pytest.mark.skipif(UNAVAILABLE is not None, reason=str(UNAVAILABLE))

# Short timeouts: every test takes seconds.
FAST = LiveSourceConfig(probe_s=0.2, open_timeout_s=1.0, stall_timeout_s=1.0,
                        reconnect_initial_s=0.1, reconnect_max_s=0.4, offline_after_s=0.6)
HANG = 30.0  # seconds after which a test that should end in a few counts as hung
FPS = 10


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    """A Ped2 test video (10 fps, 360x240); a synthetic one of the same kind without it."""
    ped2 = PED2 / "test" / "01.mp4"
    if ped2.is_file():
        return ped2
    frames = np.concatenate([moving_square(n=90, size=(240, 360), side=30, speed=3)] * 2)
    return write_video(tmp_path_factory.mktemp("rtsp") / "synthetic.mp4", frames, FPS)


@pytest.fixture
def server(video) -> Iterator[RtspServer]:
    rtsp = RtspServer(video)
    yield rtsp
    rtsp.stop()


@pytest.fixture(scope="module")
def checkpoint(video, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ckpt") / "frame-diff"
    assert main(["fit", str(video), "--scorer", "frame-diff", "--out", str(out),
                 "--param", "size=[32,48]", "--no-progress"]) == 0
    return out


def read(source: StreamSource, count: int, each=None) -> list[Frame]:
    """`count` frames of the source, read on a thread so that a hang fails the test;
    `each(frame)` runs on that thread as each one arrives."""
    frames: list[Frame] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            for frame in source:
                frames.append(frame)
                if each is not None:
                    each(frame)
                if len(frames) == count:
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            failure.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(HANG)
    source.stop.set()
    assert not thread.is_alive(), f"no {count} frames after {HANG} s: {len(frames)} came"
    if failure:
        raise failure[0]
    return frames


def test_frames_arrive_at_the_streams_rate(server):
    statuses: list[CameraStatus] = []
    frames = read(StreamSource(server.url, "cam", FAST, statuses.append), 15)
    assert [f.index for f in frames] == list(range(15))
    assert frames[0].image.shape == (240, 360, 3)
    steps = np.diff([f.timestamp for f in frames])[1:]  # the first frame has no stream time
    assert np.allclose(steps, 1 / FPS, atol=0.005)  # the stream's clock, 10 fps
    assert [s.state for s in statuses] == ["reconnecting", "online"]
    assert statuses[-1].reconnects == 0 and statuses[-1].gap_count == 0


def test_detect_fps_drops_frames_to_the_configured_rate(server):
    frames = read(StreamSource(server.url, "cam", FAST.model_copy(update={"detect_fps": 5.0})),
                  8)
    assert [f.index for f in frames] == list(range(8))  # scored frames count on
    assert np.allclose(np.diff([f.timestamp for f in frames])[1:], 1 / 5, atol=0.005)


def test_a_killed_and_restarted_server_leaves_a_recorded_gap_and_clean_events(
        server, checkpoint, tmp_path):
    """SIGTERM to the server mid-stream; it is restarted on the same port once the camera has
    seen it refuse a connection. Frames continue, indices jump over the gap, the status
    records it, and the pipeline neither scores across it nor lets an event span it."""
    # Every scored frame is anomalous: one event runs for as long as the frames are
    # consecutive, whatever the video shows.
    config = load_config(None, [f"scorers=[{{name: frame-diff, checkpoint: '{checkpoint}'}}]",
                                "events.threshold=-1000", "events.release_threshold=-1000",
                                "events.min_duration=1"])
    restarted = threading.Event()
    with open_store(f"sqlite:///{tmp_path}/alerts.db") as store:
        recorder = CameraStatusRecorder(store)

        def on_status(status: CameraStatus) -> None:
            recorder(status)
            if "refused" in status.last_error and not restarted.is_set():
                restarted.set()
                server.start()

        source = StreamSource(server.url, "door", FAST, on_status)
        feeds = CameraFeeds(Pipeline.from_config(config, store))
        alerts = []

        def feed(frame: Frame) -> None:
            alerts.extend(feeds.feed(frame))
            if frame.index == 19:
                server.stop()  # by PID, mid-stream

        frames = read(source, 45, feed)
        alerts += feeds.end("door")
        (status,) = store.camera_statuses().values()
        series = store.scores("door")

    assert restarted.is_set()
    indices = [f.index for f in frames]
    jumps = [(a, b) for a, b in zip(indices, indices[1:]) if b != a + 1]
    assert len(jumps) == 1 and all(b > a for a, b in zip(indices, indices[1:]))
    (gap,) = status.gaps
    assert (gap.last_frame, gap.next_frame) == jumps[0]
    before, after = (next(f for f in frames if f.index == i) for i in jumps[0])
    assert gap.seconds == pytest.approx(after.timestamp - before.timestamp) and gap.seconds > 0
    # The indices skipped are the frames the gap's duration held at the stream's rate.
    assert abs((gap.next_frame - gap.last_frame) - max(2, gap.seconds * FPS)) <= 1.5
    assert status.state == "online" and status.reconnects == 1 and status.gap_count == 1
    assert status.total_gap_s == pytest.approx(gap.seconds)
    # The frame after the gap is history for a fresh scorer, not scored against the last one
    # before it; every other frame after the first is scored.
    scored = set(series.indices.tolist())
    assert gap.next_frame not in scored and gap.next_frame + 1 in scored
    assert scored == set(indices) - {indices[0], gap.next_frame}
    # The event open when the server died ended at the gap; a new one began after it.
    assert [(a.start_frame, a.end_frame) for a in alerts] == [
        (indices[1], gap.last_frame), (gap.next_frame + 1, indices[-1])]


def test_a_frozen_server_is_a_stall_and_the_camera_comes_back(server):
    """SIGSTOP keeps the connection open and sends nothing: the camera turns stalled and
    reconnects once the server runs again."""
    statuses: list[CameraStatus] = []

    def on_status(status: CameraStatus) -> None:
        statuses.append(status)
        if status.state == "stalled":
            server.thaw()

    settings = FAST.model_copy(update={"offline_after_s": 10.0})  # stalled, not yet offline
    source = StreamSource(server.url, "cam", settings, on_status)
    frames = read(source, 25, lambda frame: frame.index == 5 and server.freeze())
    stalled = next(s for s in statuses if s.state == "stalled")
    assert stalled.last_error == "no frame for 1 s" and stalled.last_frame >= 5
    (gap,) = statuses[-1].gaps
    assert statuses[-1].state == "online" and gap.last_frame == stalled.last_frame
    indices = [f.index for f in frames]
    assert gap.next_frame in indices and gap.next_frame - gap.last_frame > 1
    assert gap.seconds >= FAST.stall_timeout_s  # no frame came for the stall timeout at least


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP server that accepts connections and never sends a byte."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    listener.close()


def gives_up(url: str, **settings) -> tuple[SourceError, list[CameraStatus]]:
    statuses: list[CameraStatus] = []
    settings = FAST.model_copy(update={"give_up_after_s": 1.5, **settings})
    source = StreamSource(url, "cam", settings, statuses.append)
    with pytest.raises(SourceError) as error:
        read(source, 1)
    return error.value, statuses


def test_a_silent_server_is_detected_as_a_stall(silent_server):
    error, statuses = gives_up(f"rtsp://127.0.0.1:{silent_server}/cam", offline_after_s=1.5)
    assert "gave up (last error: no answer within 1 s)" in str(error)
    states = [s.state for s in statuses]
    assert "stalled" in states and states[-1] == "offline"
    assert statuses[-1].last_error == "gave up: no answer within 1 s"


@pytest.mark.parametrize("where, reason", [
    ("closed port", "cannot open (Connection refused)"),
    ("wrong path", "cannot open (Server returned 404 Not Found)"),
])
def test_unreachable_or_wrong_urls_are_offline_then_a_clear_error(server, where, reason):
    url = (f"rtsp://127.0.0.1:{free_port()}/cam" if where == "closed port"
           else server.url.replace("/cam", "/no-such-camera"))
    error, statuses = gives_up(url)
    assert str(error).startswith(f"{url}: no frames for ") and f"(last error: {reason})" in str(
        error)
    assert [s.state for s in statuses][-2:] == ["offline", "offline"]
    assert statuses[0].state == "reconnecting" and statuses[-1].last_frame == -1


def test_passwords_stay_out_of_statuses_and_errors():
    port = free_port()
    error, statuses = gives_up(f"rtsp://admin:secret@127.0.0.1:{port}/cam")
    assert "secret" not in str(error) and f"admin:***@127.0.0.1:{port}" in str(error)
    assert all("secret" not in s.source for s in statuses)


# --- HTTP MJPEG -------------------------------------------------------------------------------

class MjpegCamera(BaseHTTPRequestHandler):
    """multipart/x-mixed-replace JPEGs at 10 frames/s; each connection ends after 12."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        for value in range(0, 240, 20):
            jpeg = cv2.imencode(".jpg", np.full((48, 64, 3), value, np.uint8))[1].tobytes()
            self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                             % len(jpeg) + jpeg + b"\r\n")
            self.wfile.flush()
            time.sleep(1 / FPS)

    def log_message(self, *args) -> None:
        pass


def test_http_mjpeg_camera_reconnects_with_wall_clock_times():
    http = ThreadingHTTPServer(("127.0.0.1", 0), MjpegCamera)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    statuses: list[CameraStatus] = []
    try:
        frames = read(StreamSource(f"http://127.0.0.1:{http.server_address[1]}/video.mjpg",
                                   "gate", FAST, statuses.append), 18)
    finally:
        http.shutdown()
    assert [int(f.image[0, 0, 0]) // 20 for f in frames[:12]] == list(range(12))  # in order
    (gap,) = statuses[-1].gaps
    assert frames[12].index == gap.next_frame > 12 and frames[11].index == gap.last_frame == 11
    times = np.array([f.timestamp for f in frames])
    assert (np.diff(times) > 0).all()
    # MJPEG has no clock: frames carry wall-clock times, spaced like the camera sends them.
    assert np.median(np.diff(times[:12])) == pytest.approx(1 / FPS, rel=0.3)


# --- vad run on live cameras ---------------------------------------------------------------

def test_vad_run_on_an_unreachable_camera_stores_offline_and_fails_clearly(
        checkpoint, tmp_path, capsys):
    store_url = f"sqlite:///{tmp_path}/alerts.db"
    url = f"rtsp://127.0.0.1:{free_port()}/cam"
    code = main(["run", url, "--camera", "door", "--checkpoint", str(checkpoint), "--store",
                 store_url, "--no-progress", "--set", "live.give_up_after_s=1",
                 "--set", "live.offline_after_s=0.3", "--set", "live.reconnect_initial_s=0.1"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: camera door: {url}: no frames for ")
    assert err[-1].endswith("gave up (last error: cannot open (Connection refused))")
    with open_store(store_url) as store:
        assert store.camera_statuses()["door"].state == "offline"
        (alert,) = store.query(AlertQuery(kind="camera-offline"))
    assert alert.id == "door:offline:0" and alert.camera_id == "door"
    assert alert.explanation.startswith("camera offline for ")
    assert alert.end_time > alert.start_time


def test_vad_run_config_runs_every_camera_at_once(server, checkpoint, tmp_path, capsys):
    """Two cameras from the config: one streams while the other fails (its own `live`
    section gives up quickly); SIGTERM then stops the run, events closed and stored."""
    store_url = f"sqlite:///{tmp_path}/alerts.db"
    config = tmp_path / "cameras.yaml"
    config.write_text(f"""
scorers: [{{name: frame-diff, checkpoint: '{checkpoint}'}}]
store: {store_url}
live: {{probe_s: 0.2, reconnect_initial_s: 0.1, offline_after_s: 0.5}}
workers: {{processes: 1}}  # one pipeline: the cameras start together (test_workers: several)
cameras:
  door:
    source: {server.url}
  yard:
    source: rtsp://127.0.0.1:{free_port()}/cam
    live: {{give_up_after_s: 1.0}}
""")
    def door_online_yard_gave_up(statuses: dict[str, CameraStatus]) -> bool:
        door, yard = statuses.get("door"), statuses.get("yard")
        return door is not None and door.state == "online" and yard is not None \
            and yard.last_error.startswith("gave up")

    running = threading.Event()
    stopper = threading.Thread(target=stop_when, args=(store_url, running, door_online_yard_gave_up),
                               daemon=True)
    running.set()
    stopper.start()
    try:
        assert main(["run", "--config", str(config), "--no-progress"]) == 2
    finally:
        running.clear()
    stopper.join()
    out, err = capsys.readouterr()
    assert "stopped: open events were closed and stored" in out
    assert "error: camera yard: rtsp://127.0.0.1:" in err
    with open_store(store_url) as store:
        statuses = store.camera_statuses()
        scored = len(store.scores("door").scores)
    assert statuses["door"].state == "online" and statuses["yard"].state == "offline"
    # The door camera was online while the yard camera was still trying.
    assert statuses["door"].since < statuses["yard"].updated_at
    assert scored > 0


def stop_when(store_url: str, running: threading.Event, condition) -> None:
    """SIGTERM this process (vad run's graceful stop) once the stored camera statuses meet
    `condition`, or after HANG s, while vad run is running."""
    deadline = time.monotonic() + HANG
    while time.monotonic() < deadline and running.is_set():
        with open_store(store_url) as store:
            if condition(store.camera_statuses()):
                break
        time.sleep(0.1)
    if running.is_set():
        os.kill(os.getpid(), signal.SIGTERM)


@pytest.mark.slow
def test_vad_run_on_the_rtsp_stream_of_a_ped2_video_stores_its_alert(ped2_dir, tmp_path):
    """`vad run rtsp://...` with the committed motion scorer on Ped2 test video 04 served at
    its 10 fps: the cart crossing the walkway from frame 30 is an alert. The run ends as a
    live one does: stopped by SIGINT once the stream ended."""
    rtsp = RtspServer(ped2_dir / "test" / "04.mp4")
    store_url = f"sqlite:///{tmp_path}/alerts.db"
    command = [sys.executable, "-m", "vad.cli", "run", rtsp.url, "--camera", "ped2-04",
               "--scorer", "motion", "--checkpoint", str(REPO / "checkpoints" / "motion-ped2"),
               "--store", store_url, "--no-progress", "--set", "live.reconnect_initial_s=60",
               "--set", "live.reconnect_max_s=60"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    vad = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        ended = wait_for_status(store_url, "ped2-04", vad,
                                lambda status: status.last_error == "the stream ended")
        rtsp.stop()  # no replay when the camera reconnects
        vad.send_signal(signal.SIGINT)
        out, err = vad.communicate(timeout=60)
    finally:
        rtsp.stop()
        vad.kill()
    assert vad.returncode == 0, err
    assert "stopped: open events were closed and stored" in out
    with open_store(store_url) as store:
        alerts = store.query(AlertQuery(kind="anomaly"))
        series = store.scores("ped2-04")
    assert ended.last_frame >= 170  # the whole 180-frame video came through
    labels = np.loadtxt(ped2_dir / "test_labels.csv", delimiter=",", skiprows=1, dtype=str)
    anomalous = {int(frame) for video, frame, label in labels if video == "04" and label == "1"}
    assert alerts and any(set(range(a.start_frame, a.end_frame + 1)) & anomalous
                          for a in alerts)
    assert len(series.scores) >= 150


def wait_for_status(store_url: str, camera: str, process: subprocess.Popen,
                    condition) -> CameraStatus:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        with open_store(store_url) as store:
            status = store.camera_statuses().get(camera)
        if status is not None and condition(status):
            return status
        time.sleep(0.2)
    raise AssertionError(f"camera {camera}: not the status awaited; vad run: "
                         f"{process.poll() and process.communicate()}")


def test_vad_publish_config_bridges_a_camera_across_a_server_restart(kafka_broker, server,
                                                                      tmp_path):
    from kafka import KafkaConsumer

    from streams.messages import EndOfStream, decode_message

    topic = kafka_broker.new_topic(1)
    config = tmp_path / "cameras.yaml"
    config.write_text(f"""
kafka: {{bootstrap: '{kafka_broker.bootstrap}', topic: {topic}}}
publish: {{limit: 30}}
live: {{probe_s: 0.2, reconnect_initial_s: 0.1, reconnect_max_s: 0.4}}
cameras:
  door: {{source: '{server.url}'}}
""")
    codes: list[int] = []
    publisher = threading.Thread(target=lambda: codes.append(
        main(["publish", "--config", str(config), "--no-progress"])), daemon=True)
    publisher.start()
    consumer = KafkaConsumer(topic, bootstrap_servers=kafka_broker.bootstrap,
                             auto_offset_reset="earliest", consumer_timeout_ms=int(HANG * 1000))
    messages = []
    for record in consumer:
        messages.append(decode_message(record.key, record.value, record.headers))
        if getattr(messages[-1], "index", None) == 10:
            server.stop()  # the camera reboots
            server.start()
        if isinstance(messages[-1], EndOfStream):
            break
    consumer.close()
    publisher.join(HANG)
    kafka_broker.delete_topics(topic)
    assert codes == [0]
    *frames, end = messages
    assert end == EndOfStream("door", 30, end.timestamp) and len(frames) == 30
    indices = [frame.index for frame in frames]
    steps = np.diff(indices)
    assert (steps >= 1).all() and (steps > 1).sum() == 1  # one gap, skipped in the indices
    assert (np.diff([frame.timestamp for frame in frames]) > 0).all()
    assert all(frame.camera_id == "door" for frame in frames)
