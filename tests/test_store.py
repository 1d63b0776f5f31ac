import numpy as np
import pytest

from vad.errors import VadError
from vad.stores import AlertQuery, open_store
from vad.types import Alert


def make_alert(camera="cam", start=10, score=5.0, start_time=1.0, **extra):
    return Alert(id=f"{camera}:{start}", camera_id=camera, start_frame=start, end_frame=start + 9,
                 start_time=start_time, end_time=start_time + 0.9, peak_frame=start + 3,
                 peak_score=score, mean_score=score - 1, **extra)


@pytest.fixture
def store(tmp_path):
    with open_store(f"sqlite:///{tmp_path}/alerts.db") as s:
        yield s


def test_reprocessing_never_duplicates_and_keeps_operator_state(store):
    assert store.put(make_alert()) is True
    store.set_status("cam:10", "acknowledged", "checked on site")
    updated = make_alert(score=7.0, explanation="a cyclist", keyframe_jpeg=b"\xff\xd8jpeg")
    assert store.put(updated) is False
    assert store.get("cam:10").explanation == ""  # the reasoner's field: `explain` writes it
    store.explain(updated)
    store.put(make_alert(score=7.0, keyframe_jpeg=b"\xff\xd8jpeg"))  # a later update keeps it
    (alert,) = store.query()
    assert alert.peak_score == 7.0 and alert.explanation == "a cyclist"
    assert alert.status == "acknowledged" and alert.note == "checked on site"
    assert alert.keyframe_jpeg == b"\xff\xd8jpeg"


def test_query_filters_and_newest_first(store):
    store.put(make_alert("a", 1, 3.0, start_time=1, created_at=100.0))
    store.put(make_alert("a", 50, 9.0, start_time=5, created_at=200.0))
    store.put(make_alert("b", 7, 6.0, start_time=0.7, created_at=150.0))
    store.set_status("b:7", "resolved")
    assert [a.id for a in store.query()] == ["a:50", "b:7", "a:1"]
    assert [a.id for a in store.query(AlertQuery(camera_id="a"))] == ["a:50", "a:1"]
    assert [a.id for a in store.query(AlertQuery(min_score=5))] == ["a:50", "b:7"]
    assert [a.id for a in store.query(AlertQuery(status="resolved"))] == ["b:7"]
    assert [a.id for a in store.query(AlertQuery(since=0.8, until=4))] == ["a:1"]
    assert store.cameras() == ["a", "b"]


def test_status_must_be_known_and_alert_must_exist(store):
    store.put(make_alert())
    with pytest.raises(VadError, match="unknown alert status"):
        store.set_status("cam:10", "ignored")
    with pytest.raises(VadError, match="no alert"):
        store.set_status("cam:99", "resolved")


def test_score_timeline_overwrites_reprocessed_frames(store):
    store.record_scores("cam", [0, 1, 2], [0.0, 0.1, 0.2], [1.0, 2.0, 3.0])
    store.record_scores("cam", [2, 3], [0.2, 0.3], [5.0, 4.0])
    series = store.scores("cam", start_frame=1)
    assert series.indices.tolist() == [1, 2, 3]
    np.testing.assert_allclose(series.scores, [2.0, 5.0, 4.0])
    assert store.scores("other").scores.size == 0


def test_unknown_scheme_and_broken_file(tmp_path):
    with pytest.raises(VadError, match="unknown alert store scheme 'mongo'"):
        open_store("mongo://x")
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(VadError, match="not a usable SQLite alert store"):
        open_store(f"sqlite:///{bad}")


def test_a_vad_db_of_release_0_1_0_is_migrated_and_read(tmp_path):
    """tests/data/vad-0.1.0.db was written by release 0.1.0 (before schema versions)."""
    import shutil
    import sqlite3
    from pathlib import Path

    from vad.stores.sqlite import SCHEMA_VERSION
    from vad.types import Box

    db = tmp_path / "vad.db"
    shutil.copy(Path(__file__).parent / "data" / "vad-0.1.0.db", db)
    with open_store(f"sqlite:///{db}") as store:
        old = store.get("cam1:30")
        assert (old.status, old.note, old.rule) == ("acknowledged", "checked on site", "no bicycles")
        assert (old.status_by, old.status_at) == ("", 0.0)  # who triaged: not recorded then
        assert old.keyframe_jpeg.startswith(b"\xff\xd8") and old.boxes == () and old.label == ""
        assert (old.reference_frame, old.reference_jpeg) == (-1, None)
        assert (old.lifecycle, old.close_reason) == ("closed", "")  # before the lifecycle
        assert store.scores("cam1").scores.tolist() == [0.5, 3.5, 4.0]
        assert sorted(a.id for a in store.query()) == ["cam1:30", "cam2:5"]
        old.boxes, old.label, old.label_confidence = (Box(0.1, 0.2, 0.5, 0.9, 3.0, "cart"),), \
            "Vehicle", 0.8
        old.reference_frame, old.reference_jpeg = 17, b"\xff\xd8reference\xff\xd9"
        store.put(old)
        again = store.get("cam1:30")
        assert again.boxes == old.boxes and (again.label, again.label_confidence) == ("Vehicle", 0.8)
        assert (again.reference_frame, again.reference_jpeg) == (17, old.reference_jpeg)
        assert again.status == "acknowledged"  # the operator's triage survives the update
    assert sqlite3.connect(db).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    with open_store(f"sqlite:///{db}") as store:  # opening again migrates nothing
        assert store.get("cam1:30").label == "Vehicle"


def test_a_database_from_a_newer_release_is_refused(tmp_path):
    import sqlite3

    db = tmp_path / "future.db"
    sqlite3.connect(db).execute("PRAGMA user_version = 99")
    with pytest.raises(VadError, match="written by a newer vad"):
        open_store(f"sqlite:///{db}")


def test_stores_opened_at_once_migrate_the_new_file_once(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from vad.stores.sqlite import SQLiteAlertStore

    path = tmp_path / "shared.db"
    with ThreadPoolExecutor(4) as pool:  # e.g. `vad run` and the dashboard starting together
        stores = list(pool.map(lambda _: SQLiteAlertStore(path), range(4)))
    stores[0].put(make_alert())
    assert all(store.get("cam:10") is not None for store in stores)
    for store in stores:
        store.close()
