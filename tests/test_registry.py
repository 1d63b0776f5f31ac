import json

import numpy as np
import pytest

from conftest import moving_square, write_video
from models import get_scorer, list_scorers, load_scorer, register_scorer
from models.base import InputSpec, LearningType, Scorer
from models.scoring import score_source
from streams.sources import open_source
from vad.config import Section
from vad.data.training import TrainingSet
from vad.errors import VadError


@pytest.fixture(scope="module")
def normal_videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("normal")
    return [open_source(write_video(folder / f"n{i}.mp4", moving_square(n=16, speed=2 + i)))
            for i in range(2)]


def test_builtin_scorers_are_registered():
    assert "frame-diff" in list_scorers()
    with pytest.raises(VadError, match="unknown scorer 'nope'; available: .*frame-diff"):
        get_scorer("nope")


def test_register_get_and_duplicate_name():
    class Cfg(Section):
        gain: float = 1.0

    @register_scorer("test-constant")
    class Constant(Scorer):
        Config = Cfg
        learning_type = LearningType.TRAINING_FREE

        @property
        def input_spec(self):
            return InputSpec(None, True, 0)

        def score(self, clip):
            raise NotImplementedError

        def fit(self, training, progress=True):
            raise NotImplementedError

    assert get_scorer("test-constant", gain=2.0).config.gain == 2.0
    with pytest.raises(ValueError, match="already registered"):
        register_scorer("test-constant")(type("Other", (Constant,), {}))
    with pytest.raises(VadError, match="gian: Extra inputs are not permitted"):
        get_scorer("test-constant", gian=2.0)
    with pytest.raises(TypeError, match="Config must be FrameDiffParams"):
        register_scorer("frame-diff")(Constant)


def test_frame_diff_save_load_round_trip_gives_identical_scores(tmp_path, normal_videos):
    scorer = get_scorer("frame-diff", size=(32, 48), cell=8)
    scorer.fit(TrainingSet.from_sources(normal_videos), progress=False)
    assert scorer.calibration.count > 0 and scorer.calibration.std > 0
    checkpoint = scorer.save(tmp_path / "ckpt")
    assert json.loads((checkpoint / "config.json").read_text())["scorer"] == "frame-diff"
    loaded = load_scorer(checkpoint)
    assert loaded.config == scorer.config and loaded.calibration == scorer.calibration
    before = score_source(scorer, normal_videos[0])
    after = score_source(loaded, normal_videos[0])
    np.testing.assert_array_equal(before.scores, after.scores)
    np.testing.assert_array_equal(before.indices, np.arange(1, 16))


def test_frame_diff_scores_unusual_motion_higher(tmp_path, normal_videos):
    scorer = get_scorer("frame-diff", size=(32, 48), cell=8)
    scorer.fit(TrainingSet.from_sources(normal_videos), progress=False)
    fast = open_source(write_video(tmp_path / "fast.mp4", moving_square(n=16, speed=6, side=20)))
    assert score_source(scorer, fast).scores.mean() > score_source(scorer, normal_videos[0]).scores.mean()


def test_loading_a_bad_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(VadError, match="not a checkpoint"):
        load_scorer(tmp_path)
    (tmp_path / "config.json").write_text("{broken")
    with pytest.raises(VadError, match="invalid JSON"):
        load_scorer(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"scorer": "frame-diff",
                                                       "config": {"cells": 3}}))
    with pytest.raises(VadError, match="cells: Extra inputs are not permitted"):
        load_scorer(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"scorer": "frame-diff",
                                                       "calibration": {"std": 0.0}}))
    with pytest.raises(VadError, match="calibration: .*positive std"):
        load_scorer(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"scorer": "frame-diff"}))
    with pytest.raises(VadError, match="incomplete checkpoint"):
        load_scorer(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(VadError, match="unreadable tensors"):
        load_scorer(tmp_path)
    from safetensors.numpy import save_file

    save_file({"cell_mean": np.zeros((2, 2), np.float32)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(VadError, match="tensor 'cell_mean' has shape \\(2, 2\\), expected 15x22"):
        load_scorer(tmp_path)
    good = np.zeros((15, 22), np.float32)
    save_file({"cell_mean": good}, str(tmp_path / "model.safetensors"))
    with pytest.raises(VadError, match="missing tensor 'cell_std'"):
        load_scorer(tmp_path)
    save_file({"cell_mean": good, "cell_std": good.astype(np.float64)},
              str(tmp_path / "model.safetensors"))
    with pytest.raises(VadError, match="'cell_std' is float64, expected float32"):
        load_scorer(tmp_path)
    save_file({"cell_mean": good, "cell_std": good + np.nan}, str(tmp_path / "model.safetensors"))
    with pytest.raises(VadError, match="NaN"):
        load_scorer(tmp_path)


def test_training_sets_give_each_learning_type_what_it_learns_from(normal_videos):
    from vad.data.training import ANOMALOUS, NORMAL, TrainingVideo

    videos = (TrainingVideo("n", lambda: normal_videos[0], NORMAL),
              TrainingVideo("a", lambda: normal_videos[1], ANOMALOUS),
              TrainingVideo("u", lambda: normal_videos[1], None))
    training = TrainingSet(videos)
    assert [s.location for s in training.normal_sources()] == [
        normal_videos[0].location, normal_videos[1].location]  # normal and unlabelled
    with pytest.raises(VadError, match="unlabelled: u"):
        training.labelled()
    assert training.summary() == {"videos": ["n", "a", "u"], "normal": 1, "anomalous": 1,
                                  "unlabelled": 1}
    with pytest.raises(VadError, match="no normal videos"):
        TrainingSet(videos[1:2]).normal_sources()
    with pytest.raises(VadError, match="label 2"):
        TrainingVideo("x", lambda: normal_videos[0], 2)
