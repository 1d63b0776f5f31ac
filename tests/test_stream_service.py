"""The Kafka streaming service against real servers (Tansu broker, redis-server): consumer
groups, crash recovery, dead letters and a Redis outage, checked frame by frame against the
same pipeline run in-process on the same (JPEG round-tripped) frames."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import redis as redis_client
import yaml
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.partitioner.default import murmur2

from models import get_scorer
from test_kafka_messages import bomb_header
from streams.kafka import make_producer
from streams.messages import (H_ERROR, H_FRAME, H_ORIGIN, H_SCHEMA, EndOfStream, decode_message,
                              encode_end, encode_frame)
from streams.publisher import publish
from streams.sources import Source
from vad.config import load_config
from vad.pipeline import Pipeline
from vad.config.sections import (KafkaConfig, PublishConfig, RedisStoreConfig, ServeConfig,
                                 StoreConfig)
from vad.data.training import TrainingSet
from vad.serve import StreamWorker
from vad.stores import AlertQuery, open_store
from vad.types import Frame

REPO = Path(__file__).resolve().parents[1]
N_FRAMES = 120


# -- synthetic cameras -------------------------------------------------------------------------
def camera_frames(camera: str, n: int = N_FRAMES, anomaly: tuple[int, int] | None = (50, 70),
                  seed: int = 0) -> list[Frame]:
    """A small square drifting over a noisy static scene; during `anomaly` a big bright block
    sweeps across fast."""
    rng = np.random.default_rng(seed)
    background = rng.integers(30, 90, size=(96, 128), dtype=np.uint8)
    frames = []
    for t in range(n):
        image = background + rng.integers(0, 4, size=background.shape, dtype=np.uint8)
        image[40:48, 10 + t // 2:18 + t // 2] = 200  # never wraps: no borderline spike
        if anomaly and anomaly[0] <= t < anomaly[1]:
            left = (t - anomaly[0]) * 6 % 90
            image[20:60, left:left + 30] = 250
        frames.append(Frame(camera, t, t / 10, np.repeat(image[..., None], 3, axis=2)))
    return frames


class FrameList(Source):
    def __init__(self, frames: list[Frame]):
        self.frames, self.camera_id, self.location = frames, frames[0].camera_id, "memory"

    def __iter__(self):
        return iter(self.frames)

    def __len__(self) -> int:
        return len(self.frames)


def on_the_wire(frames: list[Frame]) -> list[Frame]:
    """What a worker decodes: the frames after the JPEG round trip."""
    return [decode_message(*encode_frame(frame)) for frame in frames]


def cameras_on_partitions(partitions: int, prefix: str = "cam") -> list[str]:
    """One camera id per partition, as Kafka's default partitioner places keys."""
    chosen: dict[int, str] = {}
    for i in range(1000):
        name = f"{prefix}{i}"
        chosen.setdefault((murmur2(name.encode()) & 0x7FFFFFFF) % partitions, name)
        if len(chosen) == partitions:
            return [chosen[p] for p in range(partitions)]
    raise AssertionError("no spread of camera ids found")


@pytest.fixture(scope="module")
def config_path(tmp_path_factory) -> Path:
    """A frame-diff checkpoint fitted on normal footage as the workers see it."""
    directory = tmp_path_factory.mktemp("stream")
    scorer = get_scorer("frame-diff")
    normal = FrameList(on_the_wire(camera_frames("normal", 160, anomaly=None, seed=1)))
    scorer.fit(TrainingSet.from_sources([normal]), progress=False)
    scorer.save(directory / "frame-diff")
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump({"scorers": [{"name": "frame-diff",
                                                 "checkpoint": str(directory / "frame-diff")}]}))
    return path


def reference(config_path: Path, cameras: dict[str, list[Frame]]):
    """Alerts {id: (start, end)} and scored frame indices per camera of an in-process run."""
    with open_store("sqlite:///:memory:") as store:
        pipeline = Pipeline.from_config(load_config(config_path), store)
        for frames in cameras.values():
            pipeline.process_all(on_the_wire(frames))
        alerts = {a.id: (a.start_frame, a.end_frame) for a in store.query(AlertQuery(limit=10**6))}
        scored = {camera: store.scores(camera).indices.tolist() for camera in cameras}
    assert alerts, "the synthetic anomalies must raise alerts"
    return alerts, scored


# -- observing the servers ---------------------------------------------------------------------
def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what} "
                                 f"{getattr(predicate, 'missing', '')}")
        time.sleep(0.1)


def stored(redis_url: str, cameras) -> tuple[dict, dict]:
    with open_store(redis_url) as store:
        alerts = {a.id: (a.start_frame, a.end_frame) for a in store.query(AlertQuery(limit=10**6))}
        scored = {camera: store.scores(camera).indices.tolist() for camera in cameras}
    return alerts, scored


def stream_alert_ids(redis_url: str) -> Counter:
    entries = redis_client.Redis.from_url(redis_url).xrange("vad:alerts")
    return Counter(e[b"id"].decode() for _, e in entries if e[b"type"] == b"alert")


def committed_offsets(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                             enable_auto_commit=False)
    try:
        offsets = {p: consumer.committed(TopicPartition(topic, p)) for p in range(partitions)}
    finally:
        consumer.close()
    return {p: offset for p, offset in offsets.items() if offset}


def end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    """Records per partition, counted by reading them (no consumer group)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=3000)
    consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
    counts = Counter(record.partition for record in consumer)
    consumer.close()
    return {p: counts[p] for p in range(partitions) if counts[p]}


def publish_cameras(bootstrap: str, topic: str, cameras: dict[str, list[Frame]],
                    options: PublishConfig = PublishConfig(max_rate=True)) -> None:
    producer = make_producer(KafkaConfig(bootstrap=bootstrap))
    try:
        publish([FrameList(frames) for frames in cameras.values()], producer, topic, options,
                KafkaConfig().max_message_bytes, progress=False)
    finally:
        producer.close()


class WorkerThread:
    """A `StreamWorker` with its own pipeline and store, in a thread of this process."""

    def __init__(self, bootstrap: str, topic: str, group: str, store: StoreConfig | str,
                 config_path: Path, max_message_bytes: int | None = None,
                 overrides: tuple[str, ...] = (), **serve):
        self.store = open_store(store)
        settings = KafkaConfig(bootstrap=bootstrap, topic=topic,
                               **({"max_message_bytes": max_message_bytes}
                                  if max_message_bytes else {}))
        options = ServeConfig(group=group, commit_interval=0.2, metrics_interval=1.0,
                              metrics_port=0, **serve)
        pipeline = Pipeline.from_config(load_config(config_path, list(overrides)), self.store)
        self.worker = StreamWorker(pipeline, settings, options)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.worker.run()
        except BaseException as exc:  # reported by the test
            self.error = exc

    def __enter__(self) -> "WorkerThread":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.worker.stop()
        self.thread.join(timeout=60)
        self.store.close()
        assert not self.thread.is_alive(), "the worker did not stop"
        assert self.error is None, self.error


def assert_matches_reference(redis_url: str, expected_alerts: dict, expected_scored: dict):
    alerts, scored = stored(redis_url, expected_scored)
    assert alerts == expected_alerts
    assert scored == expected_scored
    assert stream_alert_ids(redis_url) == Counter(list(expected_alerts))  # never a duplicate


def complete(redis_url: str, expected_alerts: dict, expected_scored: dict):
    def check() -> bool:
        alerts, scored = stored(redis_url, expected_scored)
        check.missing = {  # what a timeout reports
            "alerts": sorted(set(expected_alerts) - set(alerts)),
            "unexpected alerts": sorted(set(alerts) - set(expected_alerts)),
            "frames": {camera: sorted(set(frames) - set(scored[camera]))[:20]
                       for camera, frames in expected_scored.items()
                       if set(frames) - set(scored[camera])}}
        return set(alerts) >= set(expected_alerts) and scored == expected_scored
    return check


# -- tests -------------------------------------------------------------------------------------
def test_two_workers_in_one_group_share_partitions(kafka_broker, redis_server, config_path):
    """The second worker joins mid-stream: partitions move, their cameras' state is rebuilt
    by the new owner from the committed offsets, and the result is that of one run."""
    topic, n = kafka_broker.new_topic(partitions=4), 150
    names = cameras_on_partitions(4) + cameras_on_partitions(4, "lens")  # two per partition
    cameras = {name: camera_frames(name, n, anomaly=(30 + 12 * i, 50 + 12 * i), seed=10 + i)
               for i, name in enumerate(names)}
    expected = reference(config_path, cameras)
    with WorkerThread(kafka_broker.bootstrap, topic, "pair", redis_server.url, config_path) as a:
        wait_until(lambda: len(a.worker.assigned) == 4, 60, "the first worker's partitions")
        publisher = threading.Thread(target=publish_cameras, args=(
            kafka_broker.bootstrap, topic, cameras, PublishConfig(fps=30)))
        publisher.start()
        wait_until(lambda: a.worker.stats.frames >= n, 60, "frames before the second worker")
        with WorkerThread(kafka_broker.bootstrap, topic, "pair", redis_server.url,
                          config_path) as b:
            wait_until(lambda: len(a.worker.assigned) == len(b.worker.assigned) == 2, 60,
                       "the partitions to be shared")
            assert not a.worker.assigned & b.worker.assigned
            publisher.join()
            wait_until(complete(redis_server.url, *expected), 60, "all frames and alerts")
            frames = (a.worker.stats.frames, b.worker.stats.frames)
    assert min(frames) > 0 and sum(frames) >= len(cameras) * n  # at least once
    assert_matches_reference(redis_server.url, *expected)
    kafka_broker.delete_topics(topic, f"{topic}.dead-letter")


def serve_process(kafka_broker, topic: str, group: str, redis_url: str, config_path: Path,
                  log: Path, *overrides: str, env: dict | None = None) -> subprocess.Popen:
    """A `vad serve` worker process (SIGKILL-able), its output in `log`."""
    sets = [item for value in ("serve.metrics_port=0", *overrides) for item in ("--set", value)]
    return subprocess.Popen(
        [sys.executable, "-m", "vad.cli", "serve", "--bootstrap", kafka_broker.bootstrap,
         "--topic", topic, "--group", group, "--store", redis_url,
         "--config", str(config_path), "--commit-interval", "0.2",
         "--metrics-interval", "1", *sets],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        stdout=log.open("w"), stderr=subprocess.STDOUT)


def scored_count(redis_url: str, cameras) -> int:
    return sum(map(len, stored(redis_url, cameras)[1].values()))


def assert_all_closed(redis_url: str) -> None:
    with open_store(redis_url) as store:
        alerts = store.query(AlertQuery(limit=10**6))
    assert alerts and all(not a.ongoing for a in alerts), [a.id for a in alerts if a.ongoing]


def test_kill_9_while_one_camera_is_in_an_alert_and_another_closed_one(
        kafka_broker, redis_server, config_path, tmp_path):
    """Two cameras on one partition, killed while A's alert is closed and B's ongoing: once
    the worker replayed A from inside B's event with fresh state and stored A's alert again
    under a new id. Now both resume from their checkpoints: the in-process result exactly."""
    topic, group, n = kafka_broker.new_topic(partitions=1), "pair-kill", 150
    cameras = {"cam-a": camera_frames("cam-a", n, anomaly=(20, 40), seed=61),
               "cam-b": camera_frames("cam-b", n, anomaly=(30, 110), seed=62)}
    expected = reference(config_path, cameras)
    first = serve_process(kafka_broker, topic, group, redis_server.url, config_path,
                          tmp_path / "first.log")
    wait_until(lambda: "assigned" in (tmp_path / "first.log").read_text(), 60,
               "the first worker's partition")
    publisher = threading.Thread(target=publish_cameras, args=(
        kafka_broker.bootstrap, topic, cameras, PublishConfig(fps=20)))
    publisher.start()

    def a_closed_b_ongoing() -> bool:
        with open_store(redis_server.url) as store:
            a = store.query(AlertQuery(camera_id="cam-a"))
            b = store.query(AlertQuery(camera_id="cam-b"))
        return bool(a and not a[0].ongoing and b and b[0].ongoing)

    wait_until(a_closed_b_ongoing, 60, "A's alert closed while B's is ongoing")
    first.send_signal(signal.SIGKILL)
    first.wait()
    second = serve_process(kafka_broker, topic, group, redis_server.url, config_path,
                           tmp_path / "second.log")
    publisher.join()
    wait_until(complete(redis_server.url, *expected), 90, "all frames after the restart")
    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=60) == 0
    assert_matches_reference(redis_server.url, *expected)
    assert_all_closed(redis_server.url)
    kafka_broker.delete_topics(topic, f"{topic}.dead-letter")


def test_twelve_cameras_killed_three_times_equal_the_in_process_run(
        kafka_broker, redis_server, config_path, tmp_path):
    """SIGKILL at three points of a 12-camera run on 4 partitions (events open on some
    cameras, closed on others): alerts, extents and ids equal to the in-process reference,
    no alert twice in the stream, every frame scored, everything committed at the end."""
    topic, group, n = kafka_broker.new_topic(partitions=4), "crash", 150
    cameras = {f"cam{i}": camera_frames(f"cam{i}", n, anomaly=(25 + 8 * i, 50 + 8 * i),
                                        seed=20 + i) for i in range(12)}
    expected = reference(config_path, cameras)
    total = sum(map(len, expected[1].values()))
    publisher = threading.Thread(target=publish_cameras, args=(
        kafka_broker.bootstrap, topic, cameras, PublishConfig(fps=15)))
    publisher.start()
    for run, fraction in enumerate((0.2, 0.45, 0.7)):
        log = tmp_path / f"run{run}.log"
        worker = serve_process(kafka_broker, topic, group, redis_server.url, config_path, log)
        wait_until(lambda: scored_count(redis_server.url, cameras) >= fraction * total, 90,
                   f"{fraction:.0%} of the frames scored")
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        assert scored_count(redis_server.url, cameras) < total, "the kill must be mid-stream"
    assert committed_offsets(kafka_broker.bootstrap, group, topic, 4), "commits follow frames"
    last = serve_process(kafka_broker, topic, group, redis_server.url, config_path,
                         tmp_path / "last.log")
    publisher.join()
    wait_until(complete(redis_server.url, *expected), 90, "all frames after the restarts")
    last.send_signal(signal.SIGTERM)
    assert last.wait(timeout=60) == 0
    log = (tmp_path / "last.log").read_text()
    assert "frames/s=" in log and "lag=" in log and "dead-lettered=0" in log  # metrics lines
    replayed = int(log.rsplit("stopped after ", 1)[1].split()[0])
    assert replayed < total, "the last worker resumes from committed offsets"
    assert_matches_reference(redis_server.url, *expected)
    assert_all_closed(redis_server.url)
    assert committed_offsets(kafka_broker.bootstrap, group, topic, 4) == end_offsets(
        kafka_broker.bootstrap, topic, 4), "everything committed after a graceful stop"
    kafka_broker.delete_topics(topic, f"{topic}.dead-letter")


def test_malformed_messages_are_dead_lettered_while_frames_flow(kafka_broker, redis_server,
                                                                config_path):
    topic, camera = kafka_broker.new_topic(partitions=1), "cam-bad"
    frames = camera_frames(camera, seed=30)
    expected = reference(config_path, {camera: frames})
    key, jpeg, headers = encode_frame(frames[0])
    without_frame = [h for h in headers if h[0] != H_FRAME]
    future_version = [(H_SCHEMA, b"99")] + [h for h in headers if h[0] != H_SCHEMA]
    malformed = [  # (key, value, headers, expected reason)
        (key, b"not a jpeg at all", headers, "undecodable-image"),
        (key, jpeg[: len(jpeg) // 2], headers, "undecodable-image"),
        (key, jpeg, without_frame, "missing-header"),
        (key, jpeg, future_version, "unknown-version"),
        (key, b"\xff\xd8" + bytes(150_000) + b"\xff\xd9", headers, "oversize"),
        (b"another-camera", jpeg, headers, "camera-mismatch"),
        (key, jpeg, [], "missing-header"),
        # each once crash-looped every worker of the partition:
        (key, jpeg, [(H_SCHEMA, "\u00b9".encode())] + headers[1:], "unknown-version"),
        (key, jpeg, [h if h[0] != H_FRAME else (H_FRAME, str(2**63).encode())
                     for h in headers], "bad-header"),
        (key, bomb_header(jpeg, 7000, 7000), headers, "oversize-image"),
    ]
    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap, acks="all")
    for i, frame in enumerate(on_the_wire(frames)):  # a malformed message after every 10 frames
        producer.send(topic, **_message(encode_frame(frame)))
        if i % 10 == 9 and i // 10 < len(malformed):
            producer.send(topic, **_message(malformed[i // 10][:3]))
    producer.send(topic, **_message(encode_end(EndOfStream(camera, N_FRAMES, time.time()))))
    producer.flush()
    producer.close()

    with WorkerThread(kafka_broker.bootstrap, topic, "dlq", redis_server.url, config_path,
                      max_message_bytes=100_000) as worker:
        wait_until(complete(redis_server.url, *expected), 60, "every valid frame and alert")
        wait_until(lambda: committed_offsets(kafka_broker.bootstrap, "dlq", topic, 1)
                   == end_offsets(kafka_broker.bootstrap, topic, 1), 10,
                   "dead letters not to hold back commits")
        port, last = worker.worker.metrics.port, N_FRAMES + len(malformed) + 1
        wait_until(lambda: scrape(port).get('vad_committed_offset{partition="0"}') == last, 10,
                   "the metrics' next refresh")
        metrics = scrape(port)
    assert worker.worker.stats.frames == N_FRAMES
    assert worker.worker.stats.dead_lettered == Counter(m[3] for m in malformed)
    for reason, count in Counter(m[3] for m in malformed).items():
        assert metrics[f'vad_dead_letters_total{{reason="{reason}"}}'] == count
    assert metrics["vad_frames_total"] == N_FRAMES
    assert metrics['vad_partition_lag{partition="0"}'] == 0
    assert metrics["vad_spooled_writes"] == 0 and metrics["vad_open_alerts"] == 0
    assert metrics["process_resident_memory_bytes"] > 10 * 2**20
    assert_matches_reference(redis_server.url, *expected)

    dead = KafkaConsumer(f"{topic}.dead-letter", bootstrap_servers=kafka_broker.bootstrap,
                         auto_offset_reset="earliest", consumer_timeout_ms=3000)
    letters = sorted((dict(record.headers) for record in dead),  # in their original order
                     key=lambda headers: int(headers[H_ORIGIN].rsplit(b"/", 1)[1]))
    dead.close()
    assert [h[H_ERROR].decode() for h in letters] == [m[3] for m in malformed]
    assert all(h[H_ORIGIN].startswith(f"{topic}/0/".encode()) for h in letters)
    kafka_broker.delete_topics(topic, f"{topic}.dead-letter")


def _message(message: tuple) -> dict:
    key, value, headers = message
    return {"key": key, "value": value, "headers": headers, "partition": 0}


def test_redis_outage_spools_alerts_and_delivers_them_all(kafka_broker, redis_server,
                                                          config_path, tmp_path):
    topic = kafka_broker.new_topic(partitions=2)
    cameras = {name: camera_frames(name, anomaly=(40, 60), seed=40 + i)
               for i, name in enumerate(cameras_on_partitions(2, "outage"))}
    expected = reference(config_path, cameras)
    store = StoreConfig(url=redis_server.url, redis=RedisStoreConfig(
        spool=str(tmp_path / "spool.sqlite"), retry_seconds=0.3))
    with WorkerThread(kafka_broker.bootstrap, topic, "outage", store, config_path) as worker:
        wait_until(lambda: len(worker.worker.assigned) == 2, 60, "partitions assigned")
        time.sleep(1)  # positioned, checkpoint keys read
        redis_server.stop()
        publish_cameras(kafka_broker.bootstrap, topic, cameras)
        total = sum(map(len, cameras.values()))
        wait_until(lambda: worker.worker.stats.frames == total, 60,
                   "every frame processed while Redis is down")
        assert worker.store.spooled() > 0 and worker.error is None
        # commits wait: a checkpoint never reaches Redis before the alerts it follows
        assert committed_offsets(kafka_broker.bootstrap, "outage", topic, 2) != end_offsets(
            kafka_broker.bootstrap, topic, 2)
        redis_server.start()
        wait_until(lambda: worker.store.spooled() == 0, 30, "the spool to drain")
        wait_until(lambda: committed_offsets(kafka_broker.bootstrap, "outage", topic, 2)
                   == end_offsets(kafka_broker.bootstrap, topic, 2), 30,
                   "commits to resume once the spool drained")
    assert_matches_reference(redis_server.url, *expected)
    kafka_broker.delete_topics(topic, f"{topic}.dead-letter")


def test_a_camera_restarting_from_frame_zero_closes_its_previous_stream(
        kafka_broker, redis_server, config_path):
    topic, camera = kafka_broker.new_topic(partitions=1), "restarts"
    first = camera_frames(camera, 60, anomaly=(40, 60), seed=50)  # ends during an event
    second = camera_frames(camera, 60, anomaly=(10, 30), seed=51)
    alerts = {**reference(config_path, {camera: first})[0],
              **reference(config_path, {camera: second})[0]}
    producer = make_producer(KafkaConfig(bootstrap=kafka_broker.bootstrap))
    for frame in on_the_wire(first) + on_the_wire(second):  # no end-of-stream in between
        producer.send(topic, **_message(encode_frame(frame)))
    producer.send(topic, **_message(encode_end(EndOfStream(camera, 60, time.time()))))
    producer.close()
    with WorkerThread(kafka_broker.bootstrap, topic, "restarts", redis_server.url,
                      config_path) as worker:
        wait_until(lambda: worker.worker.stats.alerts == len(alerts), 60, "both streams' alerts")
    assert alerts["restarts:40"] == (40, 59)  # the first stream's event ran to its end
    assert stored(redis_server.url, [camera])[0] == alerts
    kafka_broker.delete_topics(topic, f"{topic}.dead-letter")


def read_topic(bootstrap: str, topic: str) -> list:
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=3000)
    records = list(consumer)
    consumer.close()
    return records


def test_publish_command_sends_each_source_as_a_camera(kafka_broker, tmp_path):
    from conftest import moving_square, write_video
    from vad.cli import main

    videos = [write_video(tmp_path / f"{name}.mp4", moving_square(12)) for name in "ab"]
    topic = f"publish-{tmp_path.name[-12:]}"
    assert main(["publish", *map(str, videos), "--bootstrap", kafka_broker.bootstrap,
                 "--topic", topic, "--camera", "north,south", "--limit", "5", "--max",
                 "--partitions", "2", "--no-progress"]) == 0
    messages = [decode_message(r.key, r.value, r.headers) for r in
                read_topic(kafka_broker.bootstrap, topic)]
    for camera in ("north", "south"):
        mine = [m for m in messages if m.camera_id == camera]
        assert [m.index for m in mine[:-1]] == [0, 1, 2, 3, 4]
        assert mine[-1] == EndOfStream(camera, 5, mine[-1].timestamp)
        assert mine[0].image.shape == (64, 96)  # grey footage travels as one channel
        assert mine[0].timestamp <= mine[-1].timestamp <= time.time()
    kafka_broker.delete_topics(topic)


@pytest.mark.slow
def test_ped2_video_published_then_served_into_redis(ped2_dir, kafka_broker, redis_server,
                                                     tmp_path):
    from streams.sources import open_source
    from vad.cli import main

    scorer = get_scorer("frame-diff")
    scorer.fit(TrainingSet.from_sources([open_source(ped2_dir / "train" / name)
                                         for name in ("01.mp4", "02.mp4")]), progress=False)
    scorer.save(tmp_path / "frame-diff")
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump({"scorers": [
        {"name": "frame-diff", "checkpoint": str(tmp_path / "frame-diff")}]}))
    video, camera = ped2_dir / "test" / "04.mp4", "ped2-04"
    expected = reference(config_file, {camera: list(open_source(video, camera))})
    topic = kafka_broker.new_topic(partitions=2)

    with WorkerThread(kafka_broker.bootstrap, topic, "ped2", redis_server.url, config_file):
        assert main(["publish", str(video), "--bootstrap", kafka_broker.bootstrap,
                     "--topic", topic, "--camera", camera, "--max", "--no-progress"]) == 0
        wait_until(complete(redis_server.url, *expected), 120, "the video's alerts")
    assert_matches_reference(redis_server.url, *expected)
    with open_store(redis_server.url) as store:
        alerts = store.query()
    labels = np.loadtxt(ped2_dir / "test_labels.csv", delimiter=",", skiprows=1, dtype=int)
    anomalous = set(labels[(labels[:, 0] == 4) & (labels[:, 2] == 1), 1])
    for alert in alerts:
        assert alert.keyframe_jpeg.startswith(b"\xff\xd8")
        assert alert.heatmap_png.startswith(b"\x89PNG")
    assert any(anomalous & set(range(a.start_frame, a.end_frame + 1)) for a in alerts)
    kafka_broker.delete_topics(topic, f"{topic}.dead-letter")


def scrape(port: int) -> dict[str, float]:
    """The worker's Prometheus metrics, `name{labels}` -> value."""
    from urllib.request import urlopen

    text = urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines() if line and not line.startswith("#")}


def test_an_alert_is_stored_while_its_anomaly_lasts_and_closes_when_the_camera_goes_quiet(
        kafka_broker, redis_server, config_path):
    """The camera stops mid-anomaly, without an end message: its alert was stored ongoing
    within frames of its start, and closes after events.idle_s of silence."""
    topic, camera = kafka_broker.new_topic(partitions=1), "goes-quiet"
    frames = camera_frames(camera, 120, anomaly=(40, 120), seed=70)
    producer = make_producer(KafkaConfig(bootstrap=kafka_broker.bootstrap))
    with WorkerThread(kafka_broker.bootstrap, topic, "quiet", redis_server.url, config_path,
                      overrides=("events.idle_s=1.5",)) as worker:
        for frame in on_the_wire(frames[:60]):
            producer.send(topic, **_message(encode_frame(frame)))
        producer.flush()

        def ongoing():
            with open_store(redis_server.url) as store:
                found = store.query(AlertQuery(camera_id=camera))
            return found[0] if found and found[0].ongoing else None

        wait_until(ongoing, 30, "the ongoing alert")
        alert = ongoing()
        assert 40 <= alert.start_frame <= 45 and alert.end_frame < 60
        assert alert.keyframe_jpeg.startswith(b"\xff\xd8")  # evidence at the peak so far
        metrics = scrape(worker.worker.metrics.port)
        assert metrics["vad_open_alerts"] == 1 and metrics['vad_alert_changes_total{kind="opened"}'] == 1

        def closed():
            with open_store(redis_server.url) as store:
                stored_alert = store.get(alert.id)
            return stored_alert if not stored_alert.ongoing else None

        wait_until(closed, 30, "the alert closed by the camera's silence")
        assert closed().close_reason == "idle" and closed().end_frame == 59
        assert scrape(worker.worker.metrics.port)["vad_open_alerts"] == 0
        assert worker.worker.stats.frames == 60
    producer.close()
    kafka_broker.delete_topics(topic, f"{topic}.dead-letter")


def test_a_frame_that_breaks_the_pipeline_is_dead_lettered_and_the_worker_goes_on(
        kafka_broker, redis_server, config_path):
    topic, camera = kafka_broker.new_topic(partitions=1), "breaks"
    frames = camera_frames(camera, 40, anomaly=None, seed=71)
    publish_cameras(kafka_broker.bootstrap, topic, {camera: frames})
    with WorkerThread(kafka_broker.bootstrap, topic, "breaks", redis_server.url,
                      config_path) as worker:
        process = worker.worker.pipeline.process

        def flaky(frame):
            if frame.index == 20:
                raise ValueError("a scorer bug")
            return process(frame)

        worker.worker.pipeline.process = flaky
        wait_until(lambda: committed_offsets(kafka_broker.bootstrap, "breaks", topic, 1)
                   == end_offsets(kafka_broker.bootstrap, topic, 1), 60, "the whole partition")
    assert worker.worker.stats.dead_lettered == Counter({"processing-error": 1})
    assert worker.worker.stats.frames == 39
    letters = read_topic(kafka_broker.bootstrap, f"{topic}.dead-letter")
    assert [dict(r.headers)[H_ERROR] for r in letters] == [b"processing-error"]
    assert dict(letters[0].headers)[H_FRAME] == b"20"
    assert stored(redis_server.url, [camera])[1][camera][-1] == 39  # scored on after it
    kafka_broker.delete_topics(topic, f"{topic}.dead-letter")


POISON_SITE = '''
import os, signal
import vad.pipeline

_process = vad.pipeline.Pipeline.process


def _process_or_die(self, frame):
    if frame.camera_id == "poison" and frame.index == 7:  # a record that kills the worker
        os.kill(os.getpid(), signal.SIGKILL)
    return _process(self, frame)


vad.pipeline.Pipeline.process = _process_or_die
'''


def test_a_record_that_keeps_killing_the_worker_is_dead_lettered(
        kafka_broker, redis_server, config_path, tmp_path):
    """A hard crash (SIGKILL from inside, as a segfault would) on one record: after
    serve.max_restarts starts at the same offset the partition is processed carefully, the
    next death names the record, and the worker after it dead-letters it and goes on."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(POISON_SITE)
    topic, group = kafka_broker.new_topic(partitions=1), "poison"
    frames = camera_frames("poison", 30, anomaly=None, seed=72)
    publish_cameras(kafka_broker.bootstrap, topic, {"poison": frames})
    env = {"PYTHONPATH": f"{site}:{REPO}"}
    codes = []
    for run in range(5):  # an orchestrator restarting it
        worker = serve_process(kafka_broker, topic, group, redis_server.url, config_path,
                               tmp_path / f"run{run}.log", "serve.max_restarts=1", env=env)
        all_committed = lambda: committed_offsets(  # noqa: E731
            kafka_broker.bootstrap, group, topic, 1) == end_offsets(kafka_broker.bootstrap,
                                                                    topic, 1)
        wait_until(lambda: worker.poll() is not None or all_committed(), 60,
                   "the worker to die or get past the record")
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            codes.append(worker.wait(timeout=60))
            break
        codes.append(worker.returncode)
    assert codes == [-signal.SIGKILL] * 2 + [0], codes  # died twice, then went on
    log = (tmp_path / f"run{len(codes) - 1}.log").read_text()
    assert "killed the worker" in log
    letters = read_topic(kafka_broker.bootstrap, f"{topic}.dead-letter")
    assert [(dict(r.headers)[H_ERROR], dict(r.headers)[H_FRAME]) for r in letters] == [
        (b"crashed-worker", b"7")]
    scored = stored(redis_server.url, ["poison"])[1]["poison"]
    assert 7 not in scored and scored[-1] == 29
    kafka_broker.delete_topics(topic, f"{topic}.dead-letter")


def test_a_flood_of_camera_ids_keeps_memory_flat(kafka_broker, redis_server, config_path):
    """3,000 camera ids of a few frames each: beyond serve.max_cameras the least recently
    seen are checkpointed and freed, so memory stays flat; their checkpoints are stored."""
    import psutil

    topic, n_ids = kafka_broker.new_topic(partitions=1), 3000
    image = camera_frames("x", 1, anomaly=None)[0].image
    key, jpeg, headers = encode_frame(Frame("x", 0, 0.0, image))
    producer = make_producer(KafkaConfig(bootstrap=kafka_broker.bootstrap))

    def flood(first: int, last: int) -> None:
        for i in range(first, last):
            for index in range(2):
                message = encode_frame(Frame(f"flood{i}", index, index / 10, image))
                producer.send(topic, **_message(message))
        producer.flush()

    rss = psutil.Process().memory_info
    with WorkerThread(kafka_broker.bootstrap, topic, "flood", redis_server.url, config_path,
                      max_cameras=200) as worker:
        flood(0, 1000)
        wait_until(lambda: worker.worker.stats.frames == 2000, 120, "the first 1,000 ids")
        before = rss().rss
        flood(1000, n_ids)
        wait_until(lambda: worker.worker.stats.frames == 2 * n_ids, 240, "all 3,000 ids")
        after = rss().rss
        assert len(worker.worker._cameras) <= 200 and len(worker.worker.pipeline.cameras()) <= 200
        wait_until(lambda: committed_offsets(kafka_broker.bootstrap, "flood", topic, 1)
                   == end_offsets(kafka_broker.bootstrap, topic, 1), 60, "all committed")
    print(f"RSS growth over 2,000 more ids: {(after - before) / 2**20:.1f} MiB")
    # 2,000 more ids cost ~213 KB each without eviction (416 MiB measured)
    assert after - before < 60 * 2**20, f"RSS grew {(after - before) / 2**20:.0f} MiB"
    with open_store(redis_server.url) as store:
        assert len(store.state_keys(f"flood/{topic}/0")) >= n_ids - 200
    producer.close()
    kafka_broker.delete_topics(topic, f"{topic}.dead-letter")


def test_a_topic_recreated_under_a_running_worker_is_read_again_from_its_start(
        kafka_broker, redis_server, config_path, tmp_path, caplog):
    """The broker lost the topic and the cameras published again: the worker notices (its
    position is past the new log's end), warns, drops the partition's state and reads the new
    log from its first record: no frame skipped, no second alert for a known event."""
    topic = kafka_broker.new_topic(partitions=2)
    cameras = {name: camera_frames(name, 100, anomaly=(30, 50), seed=80 + i)
               for i, name in enumerate(cameras_on_partitions(2, "again"))}
    expected = reference(config_path, cameras)
    with WorkerThread(kafka_broker.bootstrap, topic, "again", redis_server.url,
                      config_path) as worker:
        wait_until(lambda: len(worker.worker.assigned) == 2, 60, "partitions assigned")
        publish_cameras(kafka_broker.bootstrap, topic, cameras)
        wait_until(complete(redis_server.url, *expected), 60, "the first stream")
        with open_store(redis_server.url) as store:  # the second stream must score again
            for camera in cameras:
                store._client.delete(f"vad:scores:{camera}")
        kafka_broker.delete_topics(topic)
        time.sleep(0.5)
        from streams.kafka import ensure_topic
        ensure_topic(kafka_broker.bootstrap, topic, 2)
        publish_cameras(kafka_broker.bootstrap, topic, cameras)
        wait_until(complete(redis_server.url, *expected), 60, "the republished stream")
        frames = worker.worker.stats.frames
    assert "restarting from its earliest record" in caplog.text
    assert frames == 2 * sum(map(len, cameras.values()))  # every frame of both logs, once
    assert_matches_reference(redis_server.url, *expected)
    kafka_broker.delete_topics(topic, f"{topic}.dead-letter")


def test_a_full_spool_stops_the_worker_with_one_line_and_exit_2(
        kafka_broker, redis_server, config_path, tmp_path):
    topic = kafka_broker.new_topic(partitions=1)
    log = tmp_path / "worker.log"
    worker = serve_process(kafka_broker, topic, "full", redis_server.url, config_path, log,
                           f"store.redis.spool={tmp_path / 'spool.sqlite'}",
                           "store.redis.spool_max_mb=0.01")
    wait_until(lambda: "assigned" in log.read_text(), 60, "the partition")
    redis_server.stop()
    publish_cameras(kafka_broker.bootstrap, topic,
                    {"full": camera_frames("full", 150, anomaly=(20, 60), seed=90)})
    assert worker.wait(timeout=60) == 2
    text = log.read_text()
    assert "Traceback" not in text
    assert text.strip().splitlines()[-1].startswith("error: Redis unreachable and the spool ")
    kafka_broker.delete_topics(topic, f"{topic}.dead-letter")
