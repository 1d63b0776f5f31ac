"""Worker processes: `vad run` camera groups and the process runner behind `vad serve`."""

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from conftest import REPO, moving_square, write_video
from test_stream_service import config_path  # noqa: F401 (the frame-diff config fixture)
from test_stream_service import (assert_matches_reference, camera_frames, cameras_on_partitions,
                                 committed_offsets, complete, end_offsets, publish_cameras,
                                 reference, wait_until)

from vad.cli import main
from vad.config.sections import PublishConfig
from vad.config.workers import WorkersConfig
from vad.errors import VadError
from vad.stores import open_store
from vad.workers import camera_groups, run_processes, worker_count


def report_pid(delay: float, stop) -> int:
    time.sleep(delay)
    return os.getpid()


def fail_or_wait(fail: bool, stop) -> str:
    if fail:
        raise VadError("camera 3: no such file")
    stop.wait(60)
    return "stopped" if stop.is_set() else "not stopped"


def test_jobs_run_in_their_own_processes_and_return_in_order():
    pids = run_processes(report_pid, [(0.3,), (0.0,), (0.1,)], 1, threading.Event())
    assert len(set(pids)) == 3 and os.getpid() not in pids


def test_a_failure_stops_the_other_processes_and_is_raised():
    start = time.monotonic()
    with pytest.raises(VadError, match="camera 3: no such file"):
        run_processes(fail_or_wait, [(False,), (True,)], 1, threading.Event())
    assert time.monotonic() - start < 50  # the waiting one was stopped, not timed out


def test_the_caller_stop_reaches_every_process():
    stop = threading.Event()
    threading.Timer(1.0, stop.set).start()
    assert run_processes(fail_or_wait, [(False,), (False,)], 1, stop) == ["stopped"] * 2


def test_worker_count_and_groups():
    assert worker_count(WorkersConfig(processes=3), jobs=2) == 2
    assert worker_count(WorkersConfig(processes=1), jobs=5) == 1
    assert worker_count(WorkersConfig(), jobs=64) == len(os.sched_getaffinity(0))
    assert camera_groups(list("abcde"), 2) == [["a", "c", "e"], ["b", "d"]]
    assert camera_groups(list("ab"), 3) == [["a"], ["b"]]


@pytest.fixture(scope="module")
def cameras(tmp_path_factory):
    """Four cameras, each with one fast square at its own time; a frame-diff checkpoint."""
    root = tmp_path_factory.mktemp("workers")
    normal = [write_video(root / f"normal{i}.mp4", moving_square(n=30, speed=2)) for i in range(2)]
    videos = []
    for i in range(4):
        parts = [moving_square(n=20 + 8 * i, speed=2), moving_square(n=20, speed=7, side=24),
                 moving_square(n=30, speed=2)]
        videos.append(write_video(root / f"cam{i}.mp4", np.concatenate(parts)))
    checkpoint = root / "ckpt"
    assert main(["fit", *map(str, normal), "--scorer", "frame-diff", "--out", str(checkpoint),
                 "--param", "size=[32,48]", "--no-progress"]) == 0
    return videos, checkpoint


def _run(videos, checkpoint, store_url, workers: int) -> tuple[list, dict]:
    assert main(["run", *map(str, videos), "--checkpoint", str(checkpoint), "--store", store_url,
                 "--workers", str(workers), "--no-progress",
                 "--set", "events.min_duration=3"]) == 0
    with open_store(store_url) as store:
        alerts = sorted((a.id, a.start_frame, a.end_frame, a.peak_frame, round(a.peak_score, 6))
                        for a in store.query())
        scores = {v.stem: list(np.round(store.scores(v.stem).scores, 6)) for v in videos}
    return alerts, scores


def test_vad_run_over_two_processes_stores_what_one_process_stores(cameras, tmp_path, capsys):
    videos, checkpoint = cameras
    alone = _run(videos, checkpoint, f"sqlite:///{tmp_path}/one.db", 1)
    shared = _run(videos, checkpoint, f"sqlite:///{tmp_path}/two.db", 2)
    assert len(alone[0]) == 4 and {a[0].split(":")[0] for a in alone[0]} == {v.stem for v in videos}
    assert shared == alone  # same alerts, same per-frame scores: each camera scored in order
    out = capsys.readouterr().out
    assert all(f"anomalous event(s) on camera {v.stem}" in out for v in videos)


def test_a_bad_checkpoint_in_a_worker_process_is_a_one_line_error(cameras, tmp_path, capsys):
    videos, _ = cameras
    assert main(["run", *map(str, videos), "--checkpoint", str(tmp_path), "--workers", "2",
                 "--store", f"sqlite:///{tmp_path}/x.db", "--no-progress"]) == 2
    assert capsys.readouterr().err.startswith(f"error: {tmp_path}")


def test_vad_serve_members_in_processes_share_the_partitions_and_miss_nothing(
        kafka_broker, redis_server, config_path, tmp_path):  # noqa: F811
    """`vad serve --workers 2`: two members of one group in their own processes; every frame
    scored, every alert stored once, everything committed after SIGTERM."""
    topic, group, n = kafka_broker.new_topic(partitions=4), "members", 100
    cameras = {name: camera_frames(name, n, anomaly=(30 + 10 * i, 50 + 10 * i), seed=40 + i)
               for i, name in enumerate(cameras_on_partitions(4, "member"))}
    expected = reference(config_path, cameras)
    log = tmp_path / "serve.log"
    serve = subprocess.Popen(
        [sys.executable, "-m", "vad.cli", "serve", "--bootstrap", kafka_broker.bootstrap,
         "--topic", topic, "--group", group, "--store", redis_server.url,
         "--config", str(config_path), "--workers", "2", "--commit-interval", "0.2",
         "--metrics-interval", "1"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: all(_assigned(log.read_text(), member) for member in (0, 1)), 120,
                   "both members' partitions")
        publish_cameras(kafka_broker.bootstrap, topic, cameras, PublishConfig(fps=30))
        wait_until(complete(redis_server.url, *expected), 120, "all frames and alerts")
    finally:
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=60) == 0
    text = log.read_text()
    first, second = (_assigned(text, member) for member in (0, 1))
    assert first and second and not first & second  # the group split the partitions
    assert int(text.rsplit("stopped after ", 1)[1].split()[0]) >= len(cameras) * n
    assert_matches_reference(redis_server.url, *expected)
    assert committed_offsets(kafka_broker.bootstrap, group, topic, 4) == end_offsets(
        kafka_broker.bootstrap, topic, 4)
    kafka_broker.delete_topics(topic, f"{topic}.dead-letter")


def _assigned(log: str, member: int) -> set[int]:
    """The partitions a member's last assignment in the log gave it."""
    lines = [line for line in log.splitlines()
             if line.startswith(f"worker {member}:") and "assigned" in line]
    if not lines:
        return set()
    listed = lines[-1].split("partitions [", 1)[1].split("]", 1)[0]
    return {int(p) for p in listed.split(",") if p.strip()}
