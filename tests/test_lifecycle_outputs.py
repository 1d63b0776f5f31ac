"""The alert lifecycle out to other systems, end to end: `vad run`, and `vad serve` killed
with SIGKILL and replaced, publish every change of every alert (opened, updated, closed) to
the real Kafka alerts topic and a local webhook receiver that fails for a while, and store a
clip of each event. Frames carry their index as a barcode (tests/test_clips.py), so the
decoded clip says which frames it covers. A replay repeats event ids, never invents any."""

from __future__ import annotations

import hashlib
import hmac
import json
import signal
import threading

import numpy as np
import pytest
import yaml
from kafka import KafkaConsumer, TopicPartition

from conftest import write_video
from test_clips import BITS, decoded_indices
from test_outputs import SECRET, Receiver
from test_stream_service import (FrameList, camera_frames, complete, on_the_wire,
                                 publish_cameras, reference, serve_process, wait_until)

from models import get_scorer
from streams.local_servers import free_port
from vad.cli import main
from vad.config.sections import PublishConfig
from vad.data.training import TrainingSet
from vad.stores import AlertQuery, open_store
from vad.types import Frame



def barcoded(frames: list[Frame]) -> list[Frame]:
    """The frames with their index spelt in binary in the top rows (as test_clips draws it)."""
    for frame in frames:
        for bit in range(BITS):
            frame.image[8:16, 8 * bit + 4:8 * bit + 12] = 255 if frame.index >> bit & 1 else 0
    return frames


def output_settings(tmp_path, topic: str) -> list[str]:
    return [f"outputs.targets=[{{kind: kafka, topic: {topic}, partitions: 2}}, "
            f"{{kind: webhook, url: '{{url}}', timeout_s: 2}}]",
            f"outputs.queue_dir={tmp_path}/queues", "outputs.retry_initial_s=0.05",
            "outputs.retry_max_s=0.2", "clips.pre_roll_s=1", "events.update_interval_s=0.5"]


def signed_events(receiver: Receiver) -> list[dict]:
    """The events the receiver accepted, each checked against its HMAC signature."""
    events = []
    for item in receiver.accepted:
        headers, body = item["headers"], item["body"]
        expected = hmac.new(SECRET.encode(), headers["X-Vad-Timestamp"].encode() + b"." + body,
                            hashlib.sha256).hexdigest()
        assert headers["X-Vad-Signature"] == f"sha256={expected}"
        events.append(json.loads(body))
    return events


def topic_events(bootstrap: str, topic: str) -> list[tuple[str, dict]]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=5000)
    consumer.assign([TopicPartition(topic, p) for p in range(2)])
    try:
        return [(m.key.decode(), json.loads(m.value)) for m in consumer]
    finally:
        consumer.close()


def said(event: dict) -> dict:
    """What an event says about its change: all but the times of the process that sent it."""
    alert = {k: v for k, v in event["alert"].items() if k != "created_at"}
    clip = {k: v for k, v in (event["clip"] or {}).items() if k != "created_at"}
    return {"type": event["type"], "alert": alert, "clip": clip}


def assert_lifecycles(events: list[dict], alert_ids: set[str]) -> dict[str, list[dict]]:
    """Applied once per event id (what a receiver does): each alert opened first, updated
    while it lasted, closed last; an id seen twice said the same thing both times."""
    first: dict[str, dict] = {}
    for event in events:
        assert event["schema"] == "vad.alert-event" and event["version"] == 1
        if event["event_id"] in first:
            assert said(event) == said(first[event["event_id"]]), event["event_id"]
        else:
            first[event["event_id"]] = event
    by_alert: dict[str, list[dict]] = {}
    for event in first.values():
        by_alert.setdefault(event["alert"]["id"], []).append(event)
    assert set(by_alert) == alert_ids  # no alert under a new id after a replay
    for alert_id, lifecycle in by_alert.items():
        kinds = [e["type"] for e in lifecycle]
        assert kinds[0] == "opened" and kinds[-1] == "closed", (alert_id, kinds)
        assert "updated" in kinds and kinds.count("opened") == kinds.count("closed") == 1
        assert lifecycle[0]["alert"]["lifecycle"] == "ongoing"
        assert lifecycle[-1]["alert"]["lifecycle"] == "closed"
    return by_alert


def assert_clip_covers(store, alert, closed_event: dict, pre_roll: int | None) -> None:
    """The stored clip decodes to consecutive frames up to the event's end, from its pre-roll
    (clips.pre_roll_s=1: `pre_roll` frames, give or take a frame of timestamp jitter) or, with
    None, from wherever a restarted worker began it; the closed event describes it."""
    clip = store.clip(alert.id)
    assert clip is not None, alert.id
    indices, _ = decoded_indices(clip.data)
    assert indices == list(range(clip.info.first_frame, clip.info.last_frame + 1))
    assert clip.info.last_frame >= alert.end_frame
    if pre_roll is not None:
        assert max(0, alert.start_frame - pre_roll - 1) <= clip.info.first_frame <= \
            max(0, alert.start_frame - pre_roll + 1)
    assert closed_event["clip"]["sha256"] == clip.info.sha256 == \
        hashlib.sha256(clip.data).hexdigest()
    assert closed_event["clip"]["first_frame"] == clip.info.first_frame


@pytest.fixture(scope="module")
def barcode_config(tmp_path_factory):
    """frame-diff fitted on barcoded normal footage as the workers see it (JPEG)."""
    directory = tmp_path_factory.mktemp("lifecycle")
    scorer = get_scorer("frame-diff")
    normal = barcoded(camera_frames("normal", 160, anomaly=None, seed=1))
    scorer.fit(TrainingSet.from_sources([FrameList(on_the_wire(normal))]), progress=False)
    scorer.save(directory / "frame-diff")
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump({"scorers": [{"name": "frame-diff",
                                                 "checkpoint": str(directory / "frame-diff")}]}))
    return path


def test_vad_run_publishes_each_change_and_stores_the_clip(kafka_broker, barcode_config,
                                                           tmp_path, monkeypatch):
    monkeypatch.setenv("VAD_WEBHOOK_SECRET", SECRET)
    frames = barcoded(camera_frames("cam7", 120, anomaly=(50, 75), seed=7))
    video = write_video(tmp_path / "cam7.mp4", np.stack([f.image for f in frames]))
    topic = f"alerts-{free_port()}"
    receiver = Receiver(statuses=[503, 500])  # down for a while first
    store_url = f"sqlite:///{tmp_path}/alerts.db"
    sets = [f"kafka.bootstrap={kafka_broker.bootstrap}"] + [
        s.replace("{url}", receiver.url) for s in output_settings(tmp_path, topic)]
    args = ["run", str(video), "--config", str(barcode_config), "--store", store_url,
            "--no-progress", *[item for s in sets for item in ("--set", s)]]
    try:
        assert main(args) == 0
        first_run = signed_events(receiver)
        assert main(args) == 0  # the same video again: a replay
        events = signed_events(receiver)
    finally:
        receiver.stop()
    assert receiver.attempts == len(events) + 2  # the two failures were retried
    with open_store(store_url) as store:
        alerts = store.query()
        assert alerts and all(not alert.ongoing for alert in alerts)
        by_alert = assert_lifecycles(events, {alert.id for alert in alerts})
        for alert in alerts:
            assert_clip_covers(store, alert, by_alert[alert.id][-1], pre_roll=10)  # 10 fps
    replay = events[len(first_run):]
    assert [e["event_id"] for e in replay] == [e["event_id"] for e in first_run]
    published = topic_events(kafka_broker.bootstrap, topic)
    assert [event["event_id"] for _, event in published] == [e["event_id"] for e in events]
    assert all(key == event["alert"]["camera_id"] == "cam7" for key, event in published)
    kafka_broker.delete_topics(topic)


def test_vad_serve_killed_mid_alert_publishes_each_change_of_each_alert(
        kafka_broker, redis_server, barcode_config, tmp_path):
    """Two cameras on one partition, the worker SIGKILLed once A's alert is closed (its clip
    stored) and B's is ongoing; its replacement replays from the checkpoints. Receivers that
    apply each event id once see every alert opened, updated and closed exactly once, with
    nothing contradicting; A keeps its whole clip, B gets one from the restart on."""
    topic, group, n = kafka_broker.new_topic(partitions=1), "outputs-kill", 150
    alerts_topic = f"alerts-{free_port()}"
    cameras = {"cam-a": barcoded(camera_frames("cam-a", n, anomaly=(35, 50), seed=61)),
               "cam-b": barcoded(camera_frames("cam-b", n, anomaly=(30, 110), seed=62))}
    expected = reference(barcode_config, cameras)
    receiver = Receiver(statuses=[503])
    sets = [s.replace("{url}", receiver.url) for s in output_settings(tmp_path, alerts_topic)]
    env = {"VAD_WEBHOOK_SECRET": SECRET}
    try:
        first = serve_process(kafka_broker, topic, group, redis_server.url, barcode_config,
                              tmp_path / "first.log", *sets, env=env)
        wait_until(lambda: "assigned" in (tmp_path / "first.log").read_text(), 60,
                   "the first worker's partition")
        publisher = threading.Thread(target=publish_cameras, args=(
            kafka_broker.bootstrap, topic, cameras, PublishConfig(fps=20)))
        publisher.start()

        def a_closed_with_its_clip_b_ongoing() -> bool:
            with open_store(redis_server.url) as store:
                a = store.query(AlertQuery(camera_id="cam-a"))
                b = store.query(AlertQuery(camera_id="cam-b"))
                return bool(a and not a[0].ongoing and store.clip_info(a[0].id)
                            and b and b[0].ongoing)

        wait_until(a_closed_with_its_clip_b_ongoing, 60, "A closed with its clip, B ongoing")
        first.send_signal(signal.SIGKILL)
        first.wait()
        second = serve_process(kafka_broker, topic, group, redis_server.url, barcode_config,
                               tmp_path / "second.log", *sets, env=env)
        publisher.join()
        wait_until(complete(redis_server.url, *expected), 90, "all frames after the restart")
        wait_until(lambda: sum(e["type"] == "closed" for e in receiver.events()) >= 2, 60,
                   "both alerts closed at the receiver")
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=60) == 0, (tmp_path / "second.log").read_text()[-3000:]
        events = signed_events(receiver)
    finally:
        receiver.stop()
    by_alert = assert_lifecycles(events, set(expected[0]))
    with open_store(redis_server.url) as store:
        for alert in store.query(AlertQuery(limit=100)):
            assert_clip_covers(store, alert, by_alert[alert.id][-1],  # published at 20 fps
                               pre_roll=20 if alert.camera_id == "cam-a" else None)
    published = topic_events(kafka_broker.bootstrap, alerts_topic)
    assert {event["event_id"] for _, event in published} == {e["event_id"] for e in events}
    assert all(key == event["alert"]["camera_id"] for key, event in published)
    kafka_broker.delete_topics(topic, f"{topic}.dead-letter", alerts_topic)
