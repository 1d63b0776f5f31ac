"""Alerts out: the versioned event schema, webhooks against a local HTTP receiver that fails
for a while (retries, backoff, HMAC signatures, the on-disk queue across a restart, refusals,
a full queue), and the Kafka alerts topic against the real broker."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from streams.local_servers import free_port
from vad.config import load_config
from vad.errors import VadError
from vad.outputs import SCHEMA, SCHEMA_VERSION, AlertOutputs, alert_event, build_outputs
from vad.outputs.queue import DeliveryQueue
from vad.types import Alert, Box, ClipInfo

SECRET = "receiver-and-sender-share-this"


def make_alert(camera: str = "gate", start: int = 40, **extra) -> Alert:
    values = dict(id=f"{camera}:{start}", camera_id=camera, start_frame=start,
                  end_frame=start + 20, start_time=start / 10, end_time=(start + 20) / 10,
                  peak_frame=start + 8, peak_score=6.5, mean_score=4.0, created_at=1_700_000_000,
                  keyframe_jpeg=b"\xff\xd8jpeg", heatmap_png=b"\x89PNG")
    return Alert(**{**values, **extra})


class Receiver:
    """A webhook receiver on loopback: answers `statuses` in turn (then 200), records what it
    accepted, and can be down (not listening) until `start`."""

    def __init__(self, statuses: list[int] = (), port: int | None = None, up: bool = True):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/hooks/vad"
        self.statuses = list(statuses)
        self.accepted: list[dict] = []
        self.attempts = 0
        self._server = None
        if up:
            self.start()

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.attempts += 1
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                if status == 200:
                    receiver.accepted.append({"headers": dict(self.headers), "body": body})
                self.send_response(status)
                if status in (429, 503):
                    self.send_header("Retry-After", "0")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def events(self) -> list[dict]:
        return [json.loads(item["body"]) for item in self.accepted]


def webhook_config(tmp_path, url: str, *more: str):
    return load_config(None, [f"outputs.targets=[{{kind: webhook, url: '{url}', timeout_s: 2}}]",
                              f"outputs.queue_dir={tmp_path}/queues", "outputs.retry_initial_s=0.05",
                              "outputs.retry_max_s=0.2", *more])


@pytest.fixture
def secret(monkeypatch):
    monkeypatch.setenv("VAD_WEBHOOK_SECRET", SECRET)


def wait_until(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


# --- the event ---------------------------------------------------------------------------------

def test_events_are_versioned_small_and_idempotent():
    alert = make_alert(boxes=(Box(0.1, 0.2, 0.3, 0.4, 2.0, "cart"),), label="Vehicle",
                       reference_frame=7, reference_jpeg=b"\xff\xd8reference")
    clip = ClipInfo(alert.id, alert.camera_id, 20, 65, 46, 4.6, 123_456, "ab" * 32, 1.7e9)
    event = alert_event("closed", alert, clip, "https://cctv.example.org", at=1_700_000_100)
    assert (event["schema"], event["version"], event["type"]) == (SCHEMA, SCHEMA_VERSION, "closed")
    assert event["event_id"] == "gate:40/closed" and event["time"] == 1_700_000_100
    assert event["alert"]["boxes"] == [{"x0": 0.1, "y0": 0.2, "x1": 0.3, "y1": 0.4,
                                        "score": 2.0, "label": "cart"}]
    assert "keyframe_jpeg" not in event["alert"] and "heatmap_png" not in event["alert"]
    assert "reference_jpeg" not in event["alert"] and event["alert"]["reference_frame"] == 7
    assert event["links"] == {"alert": "https://cctv.example.org/?alert=gate%3A40"}
    assert event["clip"]["url"] == event["links"]["alert"]
    assert (event["clip"]["first_frame"], event["clip"]["last_frame"], event["clip"]["size"]) == \
        (20, 65, 123_456)
    json.dumps(event, allow_nan=False)  # plain JSON
    # The same change twice has the same id; a different update has another.
    updated = [alert_event("updated", make_alert(end_frame=e)) for e in (50, 50, 55)]
    assert updated[0]["event_id"] == updated[1]["event_id"] != updated[2]["event_id"]
    # A worker replaying the stream after a crash stores the alert at another time: same id.
    replayed = alert_event("updated", make_alert(end_frame=50, created_at=1_800_000_000))
    assert replayed["event_id"] == updated[0]["event_id"]
    with pytest.raises(ValueError, match="unknown alert event"):
        alert_event("deleted", alert)


def test_a_late_explanation_goes_out_as_the_stored_alert(tmp_path, secret):
    """The reasoner's explanation of an alert can come after its close: it goes out as an
    update of the alert as stored (closed, explained), never as the ongoing one it explained."""
    from types import SimpleNamespace

    from vad.stores import open_store
    from vad.types import Explanation

    receiver = Receiver()
    with open_store(f"sqlite:///{tmp_path}/alerts.db") as store:
        outputs = build_outputs(webhook_config(tmp_path, receiver.url).outputs, store=store)
        try:
            ongoing = make_alert(lifecycle="ongoing")
            closed = make_alert(end_frame=75, close_reason="end")
            for kind, alert in (("opened", ongoing), ("closed", closed)):
                store.put(alert)
                outputs.changed(SimpleNamespace(kind=kind, alert=alert))
            ongoing.explain(Explanation(True, "no carts", "a cart", "1 cart", "fast"))
            store.explain(ongoing)
            outputs.changed(SimpleNamespace(kind="explained", alert=ongoing))
            assert outputs.outputs[0].wait_delivered(30)
        finally:
            outputs.close()
            receiver.stop()
    events = receiver.events()
    assert [e["type"] for e in events] == ["opened", "closed", "updated"]
    update = events[2]["alert"]
    assert (update["lifecycle"], update["end_frame"], update["rule"]) == ("closed", 75, "no carts")


# --- webhooks ----------------------------------------------------------------------------------

def test_webhook_retries_a_failing_receiver_and_delivers_each_event_once_in_order(
        tmp_path, secret):
    receiver = Receiver(statuses=[503, 500, 429, 502])  # four failures before it works
    outputs = build_outputs(webhook_config(tmp_path, receiver.url, "outputs.dashboard_url="
                                           "http://dash.example:8501/").outputs)
    try:
        alert = make_alert()
        sent = [outputs("opened", alert), outputs("updated", make_alert(end_frame=70)),
                outputs("closed", make_alert(end_frame=75))]
        alert.status, alert.status_by = "acknowledged", "alice"
        sent.append(outputs.status_changed(alert))
        wait_until(lambda: len(receiver.accepted) == 4)
        assert outputs.outputs[0].wait_delivered(10)
    finally:
        outputs.close()
        receiver.stop()
    got = receiver.events()
    assert [e["event_id"] for e in got] == [e["event_id"] for e in sent]  # in order, once each
    assert [e["type"] for e in got] == ["opened", "updated", "closed", "acknowledged"]
    assert got[3]["alert"]["status_by"] == "alice"
    assert got[0]["links"]["alert"] == "http://dash.example:8501/?alert=gate%3A40"
    assert receiver.attempts == 8 and outputs.outputs[0].failures == 4
    for item in receiver.accepted:
        headers = item["headers"]
        expected = hmac.new(SECRET.encode(), headers["X-Vad-Timestamp"].encode() + b"." +
                            item["body"], hashlib.sha256).hexdigest()
        assert headers["X-Vad-Signature"] == f"sha256={expected}"
        assert headers["Content-Type"] == "application/json"
        assert headers["X-Vad-Event-Id"] == json.loads(item["body"])["event_id"]


def test_events_wait_on_disk_while_the_receiver_is_down_even_across_a_restart(tmp_path, secret):
    receiver = Receiver(up=False)
    config = webhook_config(tmp_path, receiver.url)
    outputs = build_outputs(config.outputs, config.kafka)
    for start in (10, 20, 30):
        outputs("opened", make_alert(start=start))
    time.sleep(0.3)  # a few refused connections
    assert outputs.outputs[0].pending() == 3 and outputs.outputs[0].failures >= 1
    outputs.close(timeout=0.1)  # the sender stops with the receiver still down
    receiver.start()
    try:
        restarted = build_outputs(config.outputs, config.kafka)  # same queue file
        restarted("opened", make_alert(start=40))
        wait_until(lambda: len(receiver.accepted) == 4)
        restarted.close()
    finally:
        receiver.stop()
    assert [e["alert"]["id"] for e in receiver.events()] == ["gate:10", "gate:20", "gate:30",
                                                            "gate:40"]


def test_a_refused_event_is_dropped_and_the_next_goes_on(tmp_path, secret):
    receiver = Receiver(statuses=[400, 301])
    outputs = build_outputs(webhook_config(tmp_path, receiver.url).outputs)
    try:
        for start in (1, 2, 3):
            outputs("opened", make_alert(start=start))
        wait_until(lambda: len(receiver.accepted) == 1)
        assert outputs.outputs[0].wait_delivered(10)
    finally:
        outputs.close()
        receiver.stop()
    assert [e["alert"]["id"] for e in receiver.events()] == ["gate:3"]
    assert outputs.outputs[0].refused == 2 and outputs.outputs[0].failures == 0


def test_a_full_queue_drops_its_oldest_events(tmp_path):
    queue = DeliveryQueue(tmp_path / "q.sqlite", max_bytes=3_000)
    for i in range(10):
        queue.append({"n": i, "pad": "x" * 500})
    assert queue.pending() == 5 and queue.dropped == 5
    assert queue.oldest()[1]["n"] == 5
    queue.close()


def test_a_webhook_needs_its_secret(tmp_path, monkeypatch):
    monkeypatch.delenv("VAD_WEBHOOK_SECRET", raising=False)
    with pytest.raises(VadError, match=r"webhook http://h:\*\*\*@x/: set the HMAC key in "
                                       r"\$VAD_WEBHOOK_SECRET"):
        build_outputs(webhook_config(tmp_path, "http://h:pw@x/").outputs)
    with pytest.raises(VadError, match="outputs.targets.0.url: String should match pattern"):
        webhook_config(tmp_path, "ftp://x/")


def test_no_targets_no_events():
    outputs = build_outputs(load_config().outputs)
    assert not outputs and outputs("opened", make_alert()) is None
    assert isinstance(outputs, AlertOutputs)


# --- Kafka -------------------------------------------------------------------------------------

def test_kafka_alerts_topic_keyed_by_camera(kafka_broker, tmp_path):
    from kafka import KafkaConsumer, TopicPartition

    topic = f"alerts-{free_port()}"
    config = load_config(None, [f"kafka.bootstrap={kafka_broker.bootstrap}",
                                f"outputs.targets=[{{kind: kafka, topic: {topic}, partitions: 2}}]",
                                f"outputs.queue_dir={tmp_path}/queues"])
    outputs = build_outputs(config.outputs, config.kafka)
    try:
        sent = []
        for camera in ("gate", "lobby"):
            alert = make_alert(camera)
            sent += [outputs("opened", alert), outputs("closed", make_alert(camera, end_frame=80))]
            alert.status = "acknowledged"
            sent.append(outputs.status_changed(alert))
        assert outputs.outputs[0].wait_delivered(60)
    finally:
        outputs.close()
    consumer = KafkaConsumer(bootstrap_servers=kafka_broker.bootstrap,
                             auto_offset_reset="earliest", consumer_timeout_ms=5000)
    consumer.assign([TopicPartition(topic, p) for p in range(2)])
    try:
        messages = list(consumer)
    finally:
        consumer.close()
    assert len(messages) == 6
    by_camera: dict[str, list[dict]] = {}
    for message in messages:
        event = json.loads(message.value)
        assert message.key.decode() == event["alert"]["camera_id"]
        assert dict(message.headers)["vad-schema"] == f"{SCHEMA}/{SCHEMA_VERSION}".encode()
        assert dict(message.headers)["event-id"].decode() == event["event_id"]
        by_camera.setdefault(event["alert"]["camera_id"], []).append(event)
    for camera, events in by_camera.items():  # a camera's events, in order
        assert [e["type"] for e in events] == ["opened", "closed", "acknowledged"], camera
    assert sorted(e["event_id"] for es in by_camera.values() for e in es) == \
        sorted(e["event_id"] for e in sent)


def test_the_dashboard_publishes_acknowledgements(monkeypatch, tmp_path, secret):
    from test_dashboard import assert_no_exception, populate, run_app

    from vad.stores import open_store

    url = f"sqlite:///{tmp_path}/alerts.db"
    with open_store(url) as store:
        populate(store)
    receiver = Receiver()
    try:
        app = run_app(monkeypatch, url, f"outputs.targets=[{{kind: webhook, url: '{receiver.url}'}}]",
                      f"outputs.queue_dir={tmp_path}/queues", alert="cam-a:20")
        app.button(key="acknowledged-cam-a:20").click().run()
        assert_no_exception(app)
        wait_until(lambda: len(receiver.accepted) == 1)
    finally:
        receiver.stop()  # the dashboard's delivery thread (a daemon) idles until the end
    (event,) = receiver.events()
    assert (event["type"], event["alert"]["id"]) == ("acknowledged", "cam-a:20")
    assert event["alert"]["status"] == "acknowledged" and event["alert"]["status_by"] == "anonymous"
