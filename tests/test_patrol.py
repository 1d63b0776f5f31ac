"""Patrol mode: alignment and matching on real frames, UMAD's metric on hand-made masks, the
synthetic generator, synth -> index -> run -> eval end to end (and through `vad serve` from
Kafka), and bad references as one-line errors."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from models import get_scorer
from models.patrol.aligner import Aligner
from models.patrol.index import Features
from streams.sources import open_source
from vad.cli import main
from vad.config.patrol import PatrolEvalConfig
from vad.config.scorers import PatrolParams
from vad.data.patrol import ANOMALOUS, IGNORE, PatrolSequence, load_patrol_root, write_poses
from vad.data.patrol_synth import Lighting, Route, background_plate, camera, render
from vad.metrics import PixelCounts, mask_boxes, matched_boxes
from vad.patrol import score_sequence
from vad.stores import AlertQuery, open_store

REPO = Path(__file__).resolve().parents[1]
SIZE = (240, 360)


def one_line_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    return err.strip()


@pytest.fixture(scope="module")
def plate(ped2_dir) -> np.ndarray:
    """The background of a real static-camera video (Ped2 train 01)."""
    return background_plate([f.image for f in open_source(ped2_dir / "train" / "01.mp4")], 40)


@pytest.fixture(scope="module")
def small_root(ped2_dir, tmp_path_factory) -> Path:
    """Two short sequences synthesised from one Ped2 test video: one without anomaly, one
    with objects cut from another video's masks."""
    root = tmp_path_factory.mktemp("patrol") / "root"
    assert main(["patrol", "synth", str(ped2_dir / "test" / "02.mp4"), "--objects", str(ped2_dir),
                 "--object-videos", "07", "--out", str(root), "--seed", "3", "--no-progress",
                 "--set", "patrol.synth.reference_frames=24",
                 "--set", "patrol.synth.normal_every=2",
                 "--set", "patrol.synth.object_frame_step=20"]) == 0
    return root


# -- alignment and matching on real frames ------------------------------------------------------

def test_alignment_recovers_a_known_homography_on_real_frames(ped2_dir):
    frame = next(iter(open_source(ped2_dir / "test" / "05.mp4"))).image
    reference = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    # Query pixels -> reference pixels: a turn of 2 degrees, 4 % zoom, a shift, a slight tilt.
    angle = np.deg2rad(2.0)
    truth = np.array([[1.04 * np.cos(angle), -1.04 * np.sin(angle), 6.0],
                      [1.04 * np.sin(angle), 1.04 * np.cos(angle), -4.0],
                      [2e-5, -1e-5, 1.0]])
    query = cv2.warpPerspective(reference, truth, (SIZE[1], SIZE[0]),
                                flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                borderMode=cv2.BORDER_REFLECT)
    lit = Lighting(gain=0.8, gamma=1.2, ramp=0.15, ramp_angle=0.5).apply(query[..., None])
    query = camera(lit, np.random.default_rng(0), 3.0)[..., 0]
    params = PatrolParams()
    aligner, features = Aligner(params), Features(params.features)
    homography, inliers = aligner.coarse(features(query), features(reference))
    alignment = aligner.refine(query, reference, homography, inliers)
    assert alignment.aligned and alignment.inliers >= 30
    ys, xs = np.mgrid[0:SIZE[0]:20, 0:SIZE[1]:20]
    points = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float64).reshape(-1, 1, 2)
    error = np.linalg.norm(cv2.perspectiveTransform(points, alignment.homography)
                           - cv2.perspectiveTransform(points, truth), axis=2)
    assert error.mean() < 0.5 and error.max() < 1.5, (error.mean(), error.max())


def test_an_unrelated_view_is_not_aligned(ped2_dir):
    reference = cv2.cvtColor(next(iter(open_source(ped2_dir / "test" / "05.mp4"))).image,
                             cv2.COLOR_BGR2GRAY)
    rng = np.random.default_rng(1)
    query = cv2.GaussianBlur(rng.integers(0, 255, SIZE, dtype=np.uint8), (0, 0), 3)
    params = PatrolParams()
    aligner, features = Aligner(params), Features(params.features)
    homography, inliers = aligner.coarse(features(query), features(reference))
    assert not aligner.refine(query, reference, homography, inliers).aligned


def route_views(plate: np.ndarray, positions: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    """Grey views along a fixed route across the plate, each moved by its pose offset."""
    route = Route(start=(128.0, 100.0), end=(232.0, 110.0), zoom=(1.4, 1.6), yaw=(-2.0, 3.0),
                  keystone=0.1, sway=2.0, sway_phase=0.0)
    views = []
    for s, (dx, dy) in zip(positions, offsets):
        pose = route.pose(s) + np.array([dx, dy, 0, 0])
        views.append(cv2.cvtColor(render(plate, pose, route.keystone), cv2.COLOR_BGR2GRAY))
    return views


def test_matching_follows_the_route_at_another_speed_with_jitter(plate):
    n = 60
    reference = route_views(plate, np.linspace(0, 1, n), np.zeros((n, 2)))
    rng = np.random.default_rng(2)
    steps = 1.6 / (n - 1) * (1 + 0.3 * rng.standard_normal(40)).clip(0.2)
    positions = 0.05 + np.cumsum(steps)
    positions = positions[positions <= 1]
    query = route_views(plate, positions, rng.normal(0, 1.5, (len(positions), 2)))
    lighting = Lighting(gain=1.2, gamma=0.85, ramp=-0.1, ramp_angle=2.0)
    query = [camera(lighting.apply(q[..., None]), rng, 3.0)[..., 0] for q in query]
    scorer = get_scorer("patrol")
    scorer.build_index(FrameSource(reference), progress=False)
    route = scorer.matcher()
    found = [scorer.analyse(q, route) for q in query]
    truth = np.rint(positions * (n - 1)).astype(int)
    matched = np.array([f.match.frame for f in found])
    # The first localisation is a jump: compared once confirmed by the next matches.
    assert [f.status for f in found] == ["unaligned"] * 2 + ["aligned"] * (len(found) - 2)
    assert np.mean(np.abs(matched - truth) <= 2) >= 0.9, (matched, truth)
    assert not any(f.change.regions for f in found[2:]), "an unchanged scene has no change region"
    # Back to the start of the route: a jump, trusted only once three matches continue it.
    state = route.state()
    back = [scorer.analyse(view, route) for view in reference[5:9]]
    assert [f.match.frame for f in back] == [5, 6, 7, 8]
    assert [f.status for f in back] == ["unaligned", "unaligned", "aligned", "aligned"]
    # A restored route (checkpoints of `vad serve`) goes on exactly as the original did.
    restored = scorer.matcher()
    restored.restore(state)
    again = [scorer.analyse(view, restored) for view in reference[5:9]]
    assert [(f.match, f.status) for f in again] == [(f.match, f.status) for f in back]


class FrameSource:
    """Grey uint8 frames as a source (what `build_index` reads)."""

    def __init__(self, frames: list[np.ndarray]):
        from vad.types import Frame

        self.frames = [Frame("ref", i, i / 10, f) for i, f in enumerate(frames)]
        self.camera_id, self.location = "ref", "memory"

    def __iter__(self):
        return iter(self.frames)

    def __len__(self) -> int:
        return len(self.frames)


def test_frames_of_another_scene_are_lost(plate):
    n = 30
    scorer = get_scorer("patrol")
    scorer.build_index(FrameSource(route_views(plate, np.linspace(0, 1, n), np.zeros((n, 2)))),
                       progress=False)
    route = scorer.matcher()
    rng = np.random.default_rng(4)
    elsewhere = [cv2.GaussianBlur(rng.integers(0, 255, SIZE, dtype=np.uint8), (0, 0), 4)
                 for _ in range(5)]
    assert [scorer.analyse(view, route).status for view in elsewhere] == ["lost"] * 5


# -- UMAD's metric on hand-made masks -----------------------------------------------------------

def test_pixel_metric_and_boxes_on_hand_made_masks():
    truth = np.zeros((4, 4), np.uint8)
    truth[:2, :2] = ANOMALOUS
    truth[3, 3] = IGNORE
    predicted = np.zeros((4, 4), bool)
    predicted[0, :2] = predicted[1, 2] = predicted[3, 3] = True
    counts = PixelCounts()
    counts.add(predicted, truth)
    assert (counts.tp, counts.fp, counts.fn) == (2, 1, 2)  # the ignored pixel counts nowhere
    assert counts.iou == pytest.approx(2 / 5) and counts.f1 == pytest.approx(4 / 7)
    assert PixelCounts().iou is None  # nothing anomalous anywhere: undefined, not perfect
    assert mask_boxes(truth == ANOMALOUS) == [(0, 0, 2, 2)]
    assert matched_boxes([(0, 0, 2, 3), (2, 2, 4, 4)], [(0, 0, 2, 2)], 0.5) == 1  # IoU 4/6
    assert matched_boxes([(0, 0, 2, 4)], [(0, 0, 2, 2)], 0.5) == 1  # IoU 0.5 exactly
    assert matched_boxes([(0, 0, 3, 3)], [(0, 0, 2, 2)], 0.5) == 0  # IoU 4/9
    assert matched_boxes([(0, 0, 2, 2), (0, 0, 2, 2)], [(0, 0, 2, 2)], 0.5) == 1  # one each


def test_a_sequence_is_scored_frame_by_frame(tmp_path):
    root = tmp_path / "root" / "seq"
    for part in ("reference", "query", "mask"):
        (root / part).mkdir(parents=True)
    truths, predictions = [], []
    for i in range(3):
        cv2.imwrite(str(root / "reference" / f"{i:06d}.jpg"), np.full((8, 8), 100, np.uint8))
    for i in range(2):
        cv2.imwrite(str(root / "query" / f"{i:06d}.jpg"), np.full((8, 8), 100, np.uint8))
        truth = np.zeros((8, 8), np.uint8)
        truth[2:6, 2:6] = ANOMALOUS if i == 0 else 0
        truths.append(truth)
        cv2.imwrite(str(root / "mask" / f"{i:06d}.png"), truth)
        predicted = np.zeros((8, 8), np.uint8)
        predicted[2:6, 2:4] = ANOMALOUS if i == 0 else 0
        predictions.append(predicted)
    write_poses(root / "poses.csv", {"reference": np.array([[0, 0, 0], [10, 0, 0], [20, 0, 0]]),
                                     "query": np.array([[1, 0, 0], [19, 0, 0]])})
    out = tmp_path / "pred" / "seq"
    (out / "mask").mkdir(parents=True)
    for i, predicted in enumerate(predictions):
        cv2.imwrite(str(out / "mask" / f"{i:06d}.png"), predicted)
    lines = [{"frame": 0, "status": "aligned", "reference": 0, "score": 9.0,
              "boxes": [[2, 2, 4, 6, 9.0]]},
             {"frame": 1, "status": "unaligned", "reference": 0, "score": 0.0, "boxes": []}]
    (out / "frames.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    (sequence,) = load_patrol_root(tmp_path / "root")
    row = score_sequence(sequence, out, PatrolEvalConfig(match_tolerance=0, min_box_area=1)).row()
    assert (row["iou"], row["f1"]) == (0.5, pytest.approx(2 / 3))
    assert (row["box_precision"], row["box_recall"]) == (1.0, 1.0)  # IoU 0.5 with 2:6 x 2:6
    assert row["match_accuracy"] == 0.5  # frame 1 is nearest reference 2, matched to 0
    assert (row["unaligned_share"], row["lost_share"]) == (0.5, 0.0)
    (out / "mask" / "000001.png").unlink()
    with pytest.raises(Exception, match="1 predicted masks for 2 query frames"):
        score_sequence(sequence, out, PatrolEvalConfig())


# -- the generator, and synth -> index -> run -> eval -------------------------------------------

def test_synth_writes_the_layout_seeded(small_root, ped2_dir, tmp_path):
    sequences = load_patrol_root(small_root)
    assert [s.name for s in sequences] == ["02-0", "02-1"]
    summary = json.loads((small_root / "synth.json").read_text())
    normal, anomalous = (summary["sequences"][s.name] for s in sequences)
    assert not normal["anomalous"] and anomalous["anomalous"] and anomalous["objects"]
    for sequence, drawn in zip(sequences, (normal, anomalous)):
        masks = np.stack(list(sequence.masks(SIZE)))
        assert len(masks) == drawn["query_frames"] == len(list(sequence.query()))
        assert len(list(sequence.reference())) == 24
        assert int((masks == ANOMALOUS).any(axis=(1, 2)).sum()) == drawn["anomalous_frames"]
        poses = sequence.poses()
        assert len(poses["reference"].frames) == 24
        assert len(poses["query"].frames) == len(masks)
    assert anomalous["anomalous_frames"] > 0 and normal["anomalous_frames"] == 0
    again = tmp_path / "again"
    assert main(["patrol", "synth", str(ped2_dir / "test" / "02.mp4"), "--objects", str(ped2_dir),
                 "--object-videos", "07", "--out", str(again), "--seed", "3", "--no-progress",
                 "--set", "patrol.synth.reference_frames=24",
                 "--set", "patrol.synth.normal_every=2",
                 "--set", "patrol.synth.object_frame_step=20"]) == 0
    for path in sorted((small_root / "02-1").rglob("*.*")):
        assert path.read_bytes() == (again / path.relative_to(small_root)).read_bytes(), path


def test_synth_index_run_eval_end_to_end(small_root, tmp_path, capsys):
    store = f"sqlite:///{tmp_path}/alerts.db"
    for sequence in load_patrol_root(small_root):
        index = tmp_path / "index" / sequence.name
        assert main(["patrol", "index", str(sequence.reference_dir), "--out", str(index),
                     "--poses", str(sequence.root / "poses.csv"), "--no-progress"]) == 0
        assert main(["patrol", "run", str(sequence.query_dir), "--reference", str(index),
                     "--store", store, "--out", str(tmp_path / "pred" / sequence.name),
                     "--no-progress"]) == 0
    summaries = re.findall(r"(\d+) query frames: (\d+) aligned, (\d+) lost, (\d+) unaligned",
                           capsys.readouterr().out)
    assert [int(total) for total, *_ in summaries] == [
        len(list(s.query())) for s in load_patrol_root(small_root)]
    with open_store(store) as alerts_store:
        alerts = alerts_store.query(AlertQuery(limit=100))
    assert alerts and {a.camera_id for a in alerts} == {"02-1"}, "no alert without an anomaly"
    for alert in alerts:
        reference = cv2.imdecode(np.frombuffer(alert.reference_jpeg, np.uint8), cv2.IMREAD_GRAYSCALE)
        assert reference.shape == SIZE and alert.reference_frame >= 0 and alert.boxes
        assert alert.keyframe_jpeg.startswith(b"\xff\xd8") and alert.heatmap_png
    assert main(["patrol", "eval", str(small_root), "--predictions", str(tmp_path / "pred"),
                 "--out", str(tmp_path / "eval-saved"), "--no-progress"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[-1].startswith("f1=")
    saved = json.loads((tmp_path / "eval-saved" / "report.json").read_text())
    assert saved["f1"] > 0.6 and saved["iou"] > 0.45 and saved["match_accuracy"] > 0.8
    assert (tmp_path / "eval-saved" / "strips" / "02-1.jpg").stat().st_size > 10_000
    # Evaluating afresh (index, run, score) gives the same figures, and counts the alerts.
    assert main(["patrol", "eval", str(small_root), "--out", str(tmp_path / "eval-fresh"),
                 "--no-progress"]) == 0
    fresh = json.loads((tmp_path / "eval-fresh" / "report.json").read_text())
    assert fresh["f1"] == pytest.approx(saved["f1"]) and fresh["iou"] == pytest.approx(saved["iou"])
    assert fresh["normal_sequences_with_alerts"] == 0
    assert [row["alerts"] > 0 for row in fresh["per_sequence"]] == [False, True]


def test_patrol_alerts_through_vad_serve_from_kafka(small_root, kafka_broker, redis_server,
                                                   tmp_path):
    sequence = PatrolSequence("02-1", small_root / "02-1")
    index = tmp_path / "index"
    assert main(["patrol", "index", str(sequence.reference_dir), "--out", str(index),
                 "--no-progress"]) == 0
    config = tmp_path / "patrol.yaml"
    config.write_text(yaml.safe_dump({"scorers": [{"name": "patrol", "checkpoint": str(index)}]}))
    topic = kafka_broker.new_topic(partitions=1)
    log = tmp_path / "serve.log"
    worker = subprocess.Popen(
        [sys.executable, "-m", "vad.cli", "serve", "--bootstrap", kafka_broker.bootstrap,
         "--topic", topic, "--group", "patrol", "--store", redis_server.url,
         "--config", str(config), "--commit-interval", "0.2"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=log.open("w"),
        stderr=subprocess.STDOUT)
    try:
        assert main(["publish", str(sequence.query_dir), "--bootstrap", kafka_broker.bootstrap,
                     "--topic", topic, "--camera", "patrol-1", "--max", "--no-progress"]) == 0
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with open_store(redis_server.url) as store:
                alerts = store.query()
            if alerts:
                break
            assert worker.poll() is None, log.read_text()
            time.sleep(0.5)
        assert alerts, f"no patrol alert from the stream\n{log.read_text()}"
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
    alert = alerts[0]
    assert alert.camera_id == "patrol-1" and alert.boxes and alert.reference_frame >= 0
    assert cv2.imdecode(np.frombuffer(alert.reference_jpeg, np.uint8),
                        cv2.IMREAD_GRAYSCALE).shape == SIZE
    kafka_broker.delete_topics(topic, f"{topic}.dead-letter")


# -- bad references -----------------------------------------------------------------------------

def test_empty_and_corrupt_references_are_one_line_errors(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "empty: no image files" in one_line_error(
        capsys, ["patrol", "index", str(empty), "--out", str(tmp_path / "i")])
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(os.urandom(4096))
    assert "corrupt.mp4: not a readable video" in one_line_error(
        capsys, ["patrol", "index", str(corrupt), "--out", str(tmp_path / "i")])
    query = tmp_path / "query"
    query.mkdir()
    cv2.imwrite(str(query / "000000.jpg"), np.zeros(SIZE, np.uint8))
    store = ["--store", f"sqlite:///{tmp_path / 'alerts.db'}"]
    assert "not a checkpoint (no config.json)" in one_line_error(
        capsys, ["patrol", "run", str(query), "--reference", str(empty), *store])
    index = tmp_path / "index"
    scorer = get_scorer("patrol")
    scorer.build_index(FrameSource([np.zeros(SIZE, np.uint8)]), progress=False)
    scorer.save(index)
    (index / "model.safetensors").write_bytes(b"\0" * 100)
    assert "unreadable tensors" in one_line_error(
        capsys, ["patrol", "run", str(query), "--reference", str(index), *store])
    from safetensors.numpy import save_file

    save_file({**scorer.tensors(), "frames": np.zeros((0, *SIZE), np.uint8)},
              str(index / "model.safetensors"))
    assert "holds no reference frames" in one_line_error(
        capsys, ["patrol", "run", str(query), "--reference", str(index), *store])
    assert "no such patrol folder" in one_line_error(
        capsys, ["patrol", "eval", str(tmp_path / "nowhere"), "--out", str(tmp_path / "e")])
    assert "no sequences" in one_line_error(
        capsys, ["patrol", "eval", str(empty), "--out", str(tmp_path / "e")])


def test_synth_refuses_to_overwrite_a_root_and_needs_masked_objects(tmp_path, capsys):
    out = tmp_path / "root"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert "exists and is not empty" in one_line_error(
        capsys, ["patrol", "synth", "x.mp4", "--objects", str(tmp_path), "--out", str(out)])
    assert (out / "keep.txt").read_text() == "mine"
    from conftest import moving_square, write_video

    scene = write_video(tmp_path / "scene.mp4", moving_square(12))
    assert "root: not a benchmark folder" in one_line_error(
        capsys, ["patrol", "synth", str(scene), "--objects", str(out), "--out",
                 str(tmp_path / "new")])
    assert not (tmp_path / "new").exists() and not (tmp_path / "new.partial").exists()
