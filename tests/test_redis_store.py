"""The Redis alert store against a real redis-server: the AlertStore contract (shared with
SQLite), idempotent puts, the alert stream, and the on-disk spool across an outage."""

import os
import signal
import time

import pytest
import redis as redis_client

from vad.config import load_config
from vad.config.sections import RedisStoreConfig, StoreConfig
from vad.errors import VadError
from vad.stores import AlertQuery, open_store
from vad.stores.redis import StoreUnavailableError
from vad.types import Alert, CameraStatus, Gap


def redis_store(url: str, **options):
    return open_store(StoreConfig(url=url, redis=RedisStoreConfig(**options)))


def make_alert(camera: str = "cam1", start: int = 10, peak: float = 5.0, **changes) -> Alert:
    values = dict(id=f"{camera}:{start}", camera_id=camera, start_frame=start,
                  end_frame=start + 9, start_time=start / 10, end_time=(start + 9) / 10,
                  peak_frame=start + 3, peak_score=peak, mean_score=peak / 2,
                  keyframe_jpeg=b"\xff\xd8jpeg\xff\xd9", heatmap_png=b"\x89PNG\0data")
    values.update(changes)
    return Alert(**values)


@pytest.fixture(params=["sqlite", "redis"])
def store(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'alerts.db'}"
    else:
        url = request.getfixturevalue("redis_server").url
        with redis_store(url, spool=str(tmp_path / "spool.sqlite")) as opened:
            yield opened
        return
    with open_store(url) as opened:
        yield opened


def test_put_is_idempotent_and_keeps_operator_fields(store):
    alert = make_alert()
    assert store.put(alert) is True
    before = time.time()
    store.set_status(alert.id, "acknowledged", "seen it", by="alice")
    after = time.time()
    assert store.put(make_alert(end_frame=40, created_at=alert.created_at + 60)) is False
    stored = store.get(alert.id)
    assert (stored.end_frame, stored.status, stored.note) == (40, "acknowledged", "seen it")
    # Who triaged it and when survive re-processing too.
    assert stored.status_by == "alice" and before <= stored.status_at <= after
    assert stored.created_at == pytest.approx(alert.created_at)
    assert stored.keyframe_jpeg == alert.keyframe_jpeg and stored.heatmap_png == alert.heatmap_png
    assert store.get("nope:1") is None


def test_query_filters_and_orders_newest_first(store):
    now = time.time()
    store.put(make_alert("a", 10, peak=2.0, created_at=now))
    store.put(make_alert("a", 50, peak=8.0, created_at=now + 1))
    store.put(make_alert("b", 30, peak=6.0, created_at=now + 2))
    store.set_status("b:30", "resolved")
    assert [a.id for a in store.query()] == ["b:30", "a:50", "a:10"]
    assert [a.id for a in store.query(AlertQuery(camera_id="a"))] == ["a:50", "a:10"]
    assert [a.id for a in store.query(AlertQuery(status="new", min_score=3))] == ["a:50"]
    assert [a.id for a in store.query(AlertQuery(since=2.0, until=4.0))] == ["b:30"]
    assert [a.id for a in store.query(AlertQuery(limit=1))] == ["b:30"]


def test_scores_overwrite_per_frame_and_cameras(store):
    store.record_scores("cam1", [0, 1, 2], [0.0, 0.1, 0.2], [1.0, 2.0, 3.0])
    store.record_scores("cam1", [2, 3], [0.2, 0.3], [9.0, 4.0])
    series = store.scores("cam1")
    assert series.indices.tolist() == [0, 1, 2, 3]
    assert series.scores.tolist() == [1.0, 2.0, 9.0, 4.0]
    assert store.scores("cam1", 1, 2).indices.tolist() == [1, 2]
    assert len(store.scores("other").indices) == 0
    store.put(make_alert("cam2"))
    assert store.cameras() == ["cam1", "cam2"]


def test_camera_statuses_round_trip_and_list_the_camera(store):
    gap = Gap(last_frame=41, next_frame=60, start_time=100.0, end_time=101.9)
    store.set_camera_status(CameraStatus("gate", "reconnecting", since=90.0, updated_at=90.0,
                                         source="rtsp://u:***@cam/1", down_since=90.0))
    online = CameraStatus("gate", "online", since=101.9, updated_at=101.9,
                          source="rtsp://u:***@cam/1", last_error="cannot open (Connection "
                          "refused)", last_frame=60, reconnects=1, gap_count=1,
                          total_gap_s=1.9, gaps=(gap,))
    store.set_camera_status(online)  # replaces the camera's previous status
    store.set_camera_status(CameraStatus("yard", "offline", since=5.0, updated_at=9.0))
    assert store.camera_statuses() == {"gate": online,
                                       "yard": CameraStatus("yard", "offline", 5.0, 9.0)}
    assert store.cameras() == ["gate", "yard"]  # known by their status alone


def test_alerts_filter_by_kind(store):
    store.put(make_alert("gate", 10))
    store.put(make_alert("gate", 20, kind="camera-offline", id="gate:offline:20"))
    assert [a.id for a in store.query(AlertQuery(kind="camera-offline"))] == ["gate:offline:20"]
    assert [a.id for a in store.query(AlertQuery(kind="anomaly"))] == ["gate:10"]
    assert store.get("gate:offline:20").kind == "camera-offline"


def test_unknown_status_and_alert_are_clear_errors(store):
    with pytest.raises(VadError, match="unknown alert status"):
        store.set_status("x:1", "done")
    with pytest.raises(VadError, match="no alert"):
        store.set_status("x:1", "resolved")


def test_stream_has_one_entry_per_alert_and_per_acknowledgement(redis_server, tmp_path):
    with redis_store(redis_server.url, prefix="t", spool=str(tmp_path / "s.sqlite")) as store:
        for _ in range(3):  # at-least-once redelivery
            store.put(make_alert())
        store.set_status("cam1:10", "acknowledged")
    entries = redis_client.Redis.from_url(redis_server.url).xrange("t:alerts")
    assert [(e[b"type"], e[b"id"]) for _, e in entries] == [(b"alert", b"cam1:10"),
                                                             (b"status", b"cam1:10")]


def test_outage_spools_to_disk_and_replays_in_order(redis_server, tmp_path):
    options = {"spool": str(tmp_path / "spool.sqlite"), "retry_seconds": 0.2}
    store = redis_store(redis_server.url, **options)
    store.put(make_alert(start=1))
    redis_server.stop()
    store.put(make_alert(start=20))
    store.record_scores("cam1", [20, 21], [2.0, 2.1], [7.0, 8.0])
    store.put(make_alert(start=20, end_frame=35))  # the update must win over the insert
    assert store.spooled() == 3
    with pytest.raises(StoreUnavailableError, match="unreachable"):
        store.query()
    store.close()  # the spool outlives the process that wrote it

    redis_server.start()
    with redis_store(redis_server.url, **options) as reopened:
        deadline = time.monotonic() + 10
        while reopened.spooled() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert reopened.spooled() == 0
        assert sorted(a.id for a in reopened.query()) == ["cam1:1", "cam1:20"]
        assert reopened.get("cam1:20").end_frame == 35
        assert reopened.scores("cam1").scores.tolist() == [7.0, 8.0]


def test_full_spool_refuses_writes(redis_server, tmp_path):
    store = redis_store(redis_server.url, spool=str(tmp_path / "s.sqlite"), spool_max_mb=0.001)
    redis_server.stop()
    with pytest.raises(StoreUnavailableError, match="spool .* is full"):
        for start in range(100):
            store.put(make_alert(start=start))
    store.close()


def test_bad_url_is_a_clear_error():
    with pytest.raises(VadError, match="needs a host"):
        open_store("redis:///0")
    with pytest.raises(VadError, match="store.redis.spool_max_mb: Input should be a valid number"):
        load_config(None, ["store.redis.spool_max_mb=lots"])
    with pytest.raises(VadError, match=r"redis://:\*\*\*@/0: a Redis URL needs a host") as info:
        open_store("redis://:secret@/0")
    assert "secret" not in str(info.value)


def test_boxes_and_labels_round_trip(store):
    from vad.types import Box

    boxes = (Box(0.1, 0.2, 0.4, 0.9, 2.5, "cart"), Box(0.5, 0.5, 0.6, 0.7))
    store.put(make_alert(boxes=boxes, label="Vehicle", label_confidence=0.75, reference_frame=42,
                         reference_jpeg=b"\xff\xd8reference\xff\xd9"))
    stored = store.get("cam1:10")
    assert stored.boxes == boxes and (stored.label, stored.label_confidence) == ("Vehicle", 0.75)
    assert (stored.reference_frame, stored.reference_jpeg) == (42, b"\xff\xd8reference\xff\xd9")


def test_lifecycle_and_explanation_have_their_own_writers(store):
    from vad.types import Explanation

    ongoing = make_alert(lifecycle="ongoing")
    store.put(ongoing)
    assert store.get(ongoing.id).ongoing
    explained = make_alert(lifecycle="ongoing")
    explained.explain(Explanation(True, "no carts", "a cart", "1 cart", "fast"))
    store.explain(explained)
    store.put(make_alert(end_frame=40, lifecycle="closed", close_reason="max-duration"))
    stored = store.get(ongoing.id)
    assert (stored.lifecycle, stored.close_reason, stored.end_frame) == (
        "closed", "max-duration", 40)
    assert (stored.rule, stored.explanation, stored.objects, stored.motion_description) == (
        "no carts", "a cart", "1 cart", "fast")
    store.explain(make_alert(start=99))  # an unknown alert gains nothing
    assert store.get("cam1:99") is None


def test_checkpoints_are_saved_loaded_deleted_by_scope(store):
    store.save_states("g/t/0", {"cam1": b"\x00state-1", "cam2": b"state-2"})
    store.save_states("g/t/1", {"cam1": b"other partition"})
    store.save_states("g/t/0", {"cam1": b"newer", "cam2": None})
    assert store.load_state("g/t/0", "cam1") == b"newer"
    assert store.load_state("g/t/0", "cam2") is None
    assert store.state_keys("g/t/0") == {"cam1"} and store.state_keys("g/t/9") == set()
    store.clear_states("g/t/0")
    assert store.load_state("g/t/0", "cam1") is None
    assert store.load_state("g/t/1", "cam1") == b"other partition"


def test_checkpoints_wait_for_spooled_writes_and_a_hung_redis_spools(redis_server, tmp_path):
    """A checkpoint must never be in Redis before the alerts it follows; a stopped (hung)
    Redis makes writes spool after the socket timeout instead of stalling them."""
    store = redis_store(redis_server.url, spool=str(tmp_path / "s.sqlite"), retry_seconds=0.2,
                        socket_timeout_s=0.3)
    os.kill(redis_server.process.pid, signal.SIGSTOP)
    try:
        store.put(make_alert(start=5))
        assert store.spooled() == 1
        with pytest.raises(StoreUnavailableError):
            store.save_states("g/t/0", {"cam1": b"state"})
    finally:
        os.kill(redis_server.process.pid, signal.SIGCONT)
    deadline = time.monotonic() + 10
    while True:  # once the spool drained, checkpoints go through
        try:
            store.save_states("g/t/0", {"cam1": b"state"})
            break
        except StoreUnavailableError:
            assert time.monotonic() < deadline, "the spool never drained"
            time.sleep(0.1)
    assert store.spooled() == 0 and store.get("cam1:5") is not None
    store.close()


def test_the_spool_is_made_only_when_needed_and_fails_in_one_line(redis_server, tmp_path):
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the spool folder should be")
    spool = blocked / "spool.sqlite"
    with redis_store(redis_server.url, spool=str(spool)) as store:  # Redis up: never needed
        store.put(make_alert())
        redis_server.stop()
        with pytest.raises(StoreUnavailableError) as info:
            store.put(make_alert(start=30))
    assert str(info.value).startswith(f"spool {spool}: cannot be opened")
    assert "\n" not in str(info.value)


def test_a_spool_file_belongs_to_one_store(redis_server, tmp_path):
    spool = str(tmp_path / "shared.sqlite")
    with redis_store(redis_server.url, spool=spool, retry_seconds=60) as store:
        redis_server.stop()
        store.put(make_alert())  # spooled for prefix vad
    with pytest.raises(StoreUnavailableError, match="holds writes for .* prefix vad"):
        with redis_store(redis_server.url, spool=spool, prefix="other") as other:
            other.put(make_alert())


def test_an_alert_hash_of_the_previous_release_reads_with_defaults(redis_server, tmp_path):
    with redis_store(redis_server.url, spool=str(tmp_path / "s.sqlite")) as store:
        store.put(make_alert())
        client = redis_client.Redis.from_url(redis_server.url)
        client.hdel("vad:alert:cam1:10", "boxes", "label", "label_confidence", "status_by",
                    "reference_frame", "reference_jpeg")
        old = store.get("cam1:10")
    assert old.boxes == () and old.label == "" and old.label_confidence == 0.0
    assert old.status_by == ""  # nobody recorded before operators signed in
    assert (old.reference_frame, old.reference_jpeg) == (-1, None)
