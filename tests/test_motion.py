from pathlib import Path

import numpy as np
import pytest
from conftest import moving_square, write_video

from models import get_scorer, load_scorer
from models.flow import DenseFlow
from models.motion_cells import CellFeaturizer, CellGrid, Geometry, fit_geometry, sizes_cells
from models.motion_text import direction_name, region_name
from streams.sources import VideoFileSource
from models.scoring import score_source
from vad.data.training import TrainingSet
from vad.errors import VadError
from vad.types import Frame

SIZE = (64, 96)
TINY = {"size": SIZE, "block": 8, "bank_size": 400, "consistency_dim": 4}


def square_clip(n: int, speed: int, top: int, start: int, side: int = 12) -> np.ndarray:
    """A bright square moving horizontally (negative speed: right to left) at row `top`."""
    rng = np.random.default_rng(1)
    frames = np.repeat(rng.integers(20, 60, size=SIZE, dtype=np.uint8)[None], n, axis=0)
    for t in range(n):
        left = start + speed * t
        frames[t, top:top + side, left:left + side] = 220
    return frames


def fitted_on_squares(folder: Path, speed: int = 2, **params):
    """The tiny scorer fitted on three videos of a square moving at `speed` px/frame."""
    n = min(24, (SIZE[1] - 28) // speed)  # the square stays in view
    normal = [VideoFileSource(write_video(folder / f"normal{i}.mp4",
                                          square_clip(n, speed, top, 4 + 6 * i)))
              for i, top in enumerate((8, 26, 44))]
    fitted = get_scorer("motion", **TINY, **params)
    fitted.fit(TrainingSet.from_sources(normal), progress=False)
    return fitted


@pytest.fixture(scope="module")
def scorer(tmp_path_factory):
    return fitted_on_squares(tmp_path_factory.mktemp("motion"))


def test_moving_mask_keeps_only_the_moving_square():
    frames = moving_square(n=8, size=SIZE, side=12, speed=3)
    flow = DenseFlow()(frames[6], frames[7])
    moving = get_scorer("motion", **TINY).cells.moving(flow)
    top, left = SIZE[0] // 2 - 6, 4 + 3 * 7
    square = np.zeros(SIZE, bool)
    square[top:top + 12, left:left + 12] = True
    near = np.zeros(SIZE, bool)
    near[top - 8:top + 20, left - 8:left + 20] = True
    assert moving[square].mean() > 0.5  # the square moves ...
    assert not moving[~near].any()  # ... and the static background far from it does not


def test_fast_object_scores_above_the_normal_motion(scorer, tmp_path):
    normal = score_source(scorer, VideoFileSource(write_video(
        tmp_path / "normal.mp4", square_clip(24, 2, 30, 10)))).scores
    fast = score_source(scorer, VideoFileSource(write_video(
        tmp_path / "fast.mp4", square_clip(10, 8, 30, 4)))).scores
    assert fast.min() > normal.max()
    assert fast.mean() > 2 * normal.mean()
    assert scorer.calibration.count > 0


def test_save_load_round_trip_gives_identical_scores(scorer, tmp_path):
    source = VideoFileSource(write_video(tmp_path / "fast.mp4", square_clip(10, 8, 30, 4)))
    loaded = load_scorer(scorer.save(tmp_path / "ckpt"))
    before, after = score_source(scorer, source), score_source(loaded, source)
    np.testing.assert_array_equal(before.scores, after.scores)
    assert loaded.calibration == scorer.calibration


@pytest.fixture(scope="module")
def strided(tmp_path_factory):
    """The tiny scorer fitted with flow on every 3rd frame."""
    return fitted_on_squares(tmp_path_factory.mktemp("motion-strided"), flow_stride=3)


def test_flow_stride_scores_keyframes_whatever_the_clip_boundaries(strided, tmp_path):
    source = VideoFileSource(write_video(tmp_path / "fast.mp4", square_clip(12, 6, 30, 4)))
    assert strided.input_spec.context == 5  # the keyframe of frame 5 is 3, its flow is from 0
    by_four, by_seven = score_source(strided, source, batch=4), score_source(strided, source,
                                                                            batch=7)
    np.testing.assert_array_equal(by_four.indices, np.arange(5, 12))
    np.testing.assert_array_equal(by_four.scores, by_seven.scores)
    np.testing.assert_array_equal(by_four.heatmaps, by_seven.heatmaps)
    # frames 6, 7, 8 share keyframe 6 and 9, 10, 11 keyframe 9; the two keyframes differ
    scores = dict(zip(by_four.indices.tolist(), by_four.scores))
    assert scores[6] == scores[7] == scores[8] and scores[9] == scores[10] == scores[11]
    assert scores[6] != scores[9] and scores[5] != scores[6]


def test_a_session_reuses_the_keyframe_that_consecutive_clips_share(strided, tmp_path,
                                                                     monkeypatch):
    """Batches of 2 with stride 3: clips often start inside a keyframe's frames; the session
    computes each keyframe's flow once (and snapshots carry it) with the same scores."""
    source = VideoFileSource(write_video(tmp_path / "fast.mp4", square_clip(18, 4, 30, 4)))
    whole = score_source(strided, source, batch=64)
    pairs = []
    flow = strided.flow.__class__.__call__
    monkeypatch.setattr(type(strided.flow), "__call__",
                        lambda self, a, b, *rest: pairs.append(1) or flow(self, a, b, *rest))
    first = strided.session("cam", 2)
    results = [r for r in map(first.push, list(source)[:9]) if r is not None]
    second = strided.session("cam", 2)
    second.restore(first.state())  # a restart between clips, as from a snapshot
    results += [r for r in map(second.push, list(source)[9:]) if r is not None]
    results += [second.flush()]
    np.testing.assert_array_equal(np.concatenate([r.scores for r in results]), whole.scores)
    # targets 5-17 take keyframes 3, 6, 9, 12, 15: one flow each (clip by clip it was 8)
    assert len(pairs) == 5


def test_score_every_scores_each_nth_frame_as_if_every_frame_were_scored(scorer, tmp_path,
                                                                          monkeypatch):
    """A runtime setting on the same fitted scorer: frames 2, 4, ... score exactly as with
    score_every=1 (their flow is still against the frame before), the frames between take
    the last one's score and heatmap, and one flow is computed per two frames."""
    source = VideoFileSource(write_video(tmp_path / "fast.mp4", square_clip(12, 6, 30, 4)))
    every = score_source(scorer, source, heatmap_size=SIZE)
    halved = load_scorer(scorer.save(tmp_path / "ckpt"), type(scorer.config)(score_every=2))
    assert halved.input_spec.context == 2  # the keyframe of frame 3 is 2, its flow is from 1
    pairs = []
    flow = halved.flow.__class__.__call__
    monkeypatch.setattr(type(halved.flow), "__call__",
                        lambda self, a, b, *rest: pairs.append(1) or flow(self, a, b, *rest))
    half = score_source(halved, source, batch=3, heatmap_size=SIZE)
    assert len(pairs) == 5  # keyframes 2, 4, 6, 8, 10, each once across the clips of 3
    np.testing.assert_array_equal(half.indices, np.arange(2, 12))
    by_index = dict(zip(every.indices.tolist(), zip(every.scores, every.heatmaps)))
    for index, score, heatmap in zip(half.indices.tolist(), half.scores, half.heatmaps):
        key_score, key_heatmap = by_index[index - index % 2]
        assert score == key_score
        np.testing.assert_array_equal(heatmap, key_heatmap)


def test_flow_stride_keeps_speeds_in_pixels_per_frame(scorer, strided, tmp_path):
    """Flow over 3 frames, divided by 3: the normal square moves as fast as with stride 1, so
    the strided scorer learns the same normal speed and still flags a fast square."""
    np.testing.assert_allclose(strided.normal_speed.max(), scorer.normal_speed.max(), rtol=0.25)
    normal = score_source(strided, VideoFileSource(write_video(
        tmp_path / "normal.mp4", square_clip(24, 2, 30, 10)))).scores
    fast = score_source(strided, VideoFileSource(write_video(
        tmp_path / "fast.mp4", square_clip(14, 6, 30, 4)))).scores
    assert fast.min() > normal.max()


def test_description_names_direction_and_region(scorer):
    frames = square_clip(8, -8, 46, 80)  # fast, right to left, in the lower third
    description = scorer.describe_motion(frames)
    assert description.direction == "right to left"
    assert description.region.startswith("lower-")
    assert description.speed_ratio > 2
    text = scorer.describe(frames)
    assert "right to left" in text and "lower-" in text and "faster than usual" in text
    # The same clip as float frames or as the pipeline's Frame objects reads the same.
    assert scorer.describe(frames.astype(np.float32) / 255) == text
    sampled = [Frame("cam", i, i / 10, image) for i, image in enumerate(frames)]
    assert scorer.describe(sampled) == text


def test_still_or_normal_motion_is_described_as_no_unusual_motion(scorer):
    still = np.repeat(square_clip(1, 0, 30, 30), 4, axis=0)
    assert scorer.describe(still) == "no unusual motion"
    assert scorer.describe(square_clip(8, 2, 26, 20)) == "no unusual motion"


def test_names_and_errors():
    assert direction_name(1, 0) == "left to right"
    assert direction_name(0, -1) == "upwards"
    assert region_name(10, 230, 360, 240) == "lower-left"
    with pytest.raises(VadError, match="not fitted"):
        get_scorer("motion", **TINY).describe(square_clip(3, 2, 10, 10))
    with pytest.raises(VadError, match="bank_size"):
        get_scorer("motion", k=5, bank_size=5)


def test_downscaled_flow_measures_speed_in_full_size_pixels():
    frames = moving_square(n=8, size=(96, 128), side=24, speed=4)
    flow = DenseFlow(scale=0.5)(frames[6], frames[7])
    assert flow.shape == (96, 128, 2)
    top, left = 48 - 12, 4 + 4 * 7
    inside = flow[top + 6:top + 18, left + 6:left + 18, 0]
    assert 3.0 < np.median(inside) < 5.0  # 4 px/frame at full size, not 2
    with pytest.raises(VadError, match="scale"):
        DenseFlow(scale=0)


def test_flow_is_computed_only_where_the_picture_changed():
    rng = np.random.default_rng(0)
    texture = rng.integers(100, 255, (16, 16), dtype=np.uint8)
    frames = np.repeat(rng.integers(20, 60, (96, 128), dtype=np.uint8)[None], 8, axis=0)
    for t, frame in enumerate(frames):
        frame[40:56, 4 + 3 * t:4 + 3 * t + 16] = texture  # a textured square, 3 px/frame
    masked, whole = DenseFlow(change_threshold=4), DenseFlow()
    assert masked.changed_regions(frames[0], frames[0]) == []
    assert not masked(frames[0], frames[0]).any()  # a static scene costs no flow at all
    (top, left, bottom, right), = masked.changed_regions(frames[6], frames[7])
    square = np.s_[40:56, 4 + 3 * 7:4 + 3 * 7 + 16]
    assert top <= 40 and bottom >= 56 and left <= 25 and right >= 41  # the square, and more
    assert bottom - top < 96 or right - left < 128  # ... but not the whole frame
    flow = masked(frames[6], frames[7])
    assert not flow[:, right:].any() and not flow[:, :left].any()
    assert np.median(flow[square][..., 0]) == pytest.approx(
        np.median(whole(frames[6], frames[7])[square][..., 0]), abs=0.5)
    with pytest.raises(VadError, match="change threshold"):
        DenseFlow(change_threshold=-1)


def test_a_small_crop_does_not_change_the_flow_of_later_frames():
    # OpenCV's DIS lowers its finest scale for good on an image under 46 px: the flow of
    # every later frame pair changed (and cost 4x) after one small changed box.
    frames = moving_square(n=8, size=(96, 128), side=24, speed=4)
    flow = DenseFlow()
    before = flow(frames[6], frames[7])
    flow(np.ascontiguousarray(frames[6][:40, :40]), np.ascontiguousarray(frames[7][:40, :40]))
    np.testing.assert_array_equal(flow(frames[6], frames[7]), before)


def test_sampled_frames_get_whole_frame_flow_even_with_a_change_threshold():
    frames = moving_square(n=12, size=SIZE, side=12, speed=2)[::4]  # every 4th frame
    scorer = get_scorer("motion", **TINY, flow_change=4)
    _, flows = scorer.features(frames, steps=np.full(len(frames) - 1, 4))
    np.testing.assert_allclose(flows, DenseFlow().sequence(frames) / 4)
    _, consecutive = scorer.features(frames)
    assert not np.allclose(consecutive, flows * 4)  # consecutive frames: only changed boxes


def test_geometry_follows_speed_that_grows_down_the_view():
    """Normal speed 4x larger at the bottom than at the top (a ground plane seen in
    perspective): the fitted geometry says so, and cells grow down the view."""
    config = get_scorer("motion", size=(96, 128), block=8).config
    rows = np.linspace(0, 1, 96)[:, None]
    speed = np.broadcast_to(0.5 + 1.5 * rows, (96, 128))
    geometry = fit_geometry(np.stack([speed] * 3).astype(np.float32), config)
    scale = geometry.scale_map((4, 4))
    assert scale[-1].mean() / scale[0].mean() > 2.5
    assert np.allclose(scale[:, 0], scale[:, -1], rtol=0.05)  # no slope across
    grid = CellGrid.build(geometry.scale_map((24, 32)), 4, 4)
    sides = grid.boxes[:, 2] - grid.boxes[:, 0]
    top_cells = grid.boxes[:, 0] == 0
    assert sides[top_cells].max() < sides[~top_cells].max()
    flat = fit_geometry(np.stack([np.full((96, 128), 1.2, np.float32)] * 3), config)
    assert np.allclose(flat.scale_map((4, 4)), 1.0, atol=0.05)
    assert np.array_equal(Geometry.from_array(geometry.to_array()).to_array(),
                          geometry.to_array())


def test_auto_perspective_sizes_cells_only_where_the_scale_varies_strongly():
    """'auto' decides from the fitted geometry: a view whose normal speed grows 8x down the
    frame gets perspective-sized cells, a mild 1.5x slope keeps the regular grid."""
    config = get_scorer("motion", size=(96, 128), block=8, perspective="auto").config
    steep = Geometry((0.25, 0.0, 1.75), 1.0)  # 0.25 at the top row .. 2.0 at the bottom
    mild = Geometry((0.8, 0.0, 0.4), 1.0)
    assert steep.spread((24, 32)) > config.cells_above > mild.spread((24, 32))
    assert sizes_cells(config, steep, (24, 32)) and not sizes_cells(config, mild, (24, 32))
    regular = CellFeaturizer(config.model_copy(update={"perspective": "speed"}), steep).grid
    assert len(CellFeaturizer(config, steep).grid.boxes) != len(regular.boxes)
    assert len(CellFeaturizer(config, mild).grid.boxes) == len(regular.boxes)


def test_fitting_keeps_the_change_mask_only_where_it_keeps_the_movers(tmp_path):
    """A flat square at 6 px/frame changes most of the blocks at its edges, whose grown boxes
    cover it: the mask stays. At 2 px/frame only thin strips change, no block mostly (the
    flat inside moves without changing): fitting drops the mask, and the saved checkpoint
    scores with whole-frame flow, unless no share is asked for."""
    kept = fitted_on_squares(tmp_path, speed=6, flow_change=4)
    assert kept.config.flow_change == 4 and kept.flow.change_threshold == 4
    dropped = fitted_on_squares(tmp_path, flow_change=4)
    assert dropped.config.flow_change == 0 and dropped.flow.change_threshold == 0
    dropped.save(tmp_path / "checkpoint")
    assert load_scorer(tmp_path / "checkpoint").flow.change_threshold == 0
    forced = fitted_on_squares(tmp_path, flow_change=4, flow_change_min_share=0)
    assert forced.config.flow_change == 4


def test_a_sampled_clip_reads_speed_from_its_shortest_gaps(scorer):
    """Over long gaps a fast object's flow under-reads (it moved beyond DIS's reach): the
    speed comes from the pairs with the shortest gaps, the direction from all of them."""
    from models.motion_text import describe_motion

    flows = np.zeros((3, *SIZE, 2), np.float32)
    flows[:, 20:40, 30:50, 0] = np.array([3.0, 1.0, 1.0])[:, None, None]  # px per frame
    boxes = scorer.cells.grid.pixel_boxes
    inside = (boxes[:, 0] >= 16) & (boxes[:, 2] <= 44) & (boxes[:, 1] >= 26) & (boxes[:, 3] <= 54)
    scores = np.zeros((3, len(boxes)), np.float32)
    scores[:, np.flatnonzero(inside)[0]] = 1.0
    sampled = describe_motion(flows, scores, scorer.cells, scorer.normal_speed,
                              steps=np.array([1, 30, 30]))
    consecutive = describe_motion(flows, scores, scorer.cells, scorer.normal_speed)
    assert sampled.speed == pytest.approx(3.0) and consecutive.speed == pytest.approx(1.0)
    assert sampled.direction == consecutive.direction == "left to right"


def test_knn_distance_is_the_exact_nearest_neighbour(scorer):
    import torch

    queries = np.random.default_rng(2).normal(size=(50, scorer.bank.shape[1])).astype(np.float32)
    expected = torch.cdist(torch.from_numpy(queries), torch.from_numpy(scorer.bank)).min(1)
    np.testing.assert_allclose(scorer._knn_distance(queries), expected.values.numpy(),
                               rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_ped2_checkpoint_separates_a_test_video_and_describes_it(ped2_dir):
    from sklearn.metrics import roc_auc_score

    scorer = load_scorer(Path(__file__).resolve().parents[1] / "checkpoints" / "motion-ped2")
    source = VideoFileSource(ped2_dir / "test" / "02.mp4")
    result = score_source(scorer, source)
    rows = np.loadtxt(ped2_dir / "test_labels.csv", delimiter=",", skiprows=1,
                      dtype=str)
    labels = rows[rows[:, 0] == "02", 2].astype(int)
    assert roc_auc_score(labels[result.indices], result.scores) > 0.95
    frames = np.stack([frame.image for frame in source][120:130])  # the cyclist crosses
    assert "faster than usual" in scorer.describe(frames)
