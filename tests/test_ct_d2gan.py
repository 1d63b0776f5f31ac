import numpy as np
import pytest
import torch
from conftest import moving_square, write_video

from models import get_scorer, load_scorer
from models.ct_d2gan import (
    CTD2GANScorer,
    Generator,
    ImageDiscriminator,
    VideoDiscriminator,
)
from models.ct_d2gan_train import GanParts, sample_batch, train_step
from streams.sources import open_source
from vad.errors import VadError
from models.scoring import iter_scores, score_source
from vad.config.scorers import CTD2GANParams
from vad.data.training import TrainingSet
from vad.types import Clip, Frame

TINY = {"size": (32, 48), "frames": 3, "width": 4, "heads": 2, "disc_width": 4,
        "batch_size": 4, "checkpoint_every": 2}
SIZE = (32, 48)
DOCUMENTED_PED2_AUC = 0.9643  # docs/ct_d2gan.md, checkpoints/ct-d2gan-ped2
DOCUMENTED_PED2_ONLINE_AUC = 0.8799


def toy_frames(n: int = 16, intruder: bool = False) -> np.ndarray:
    """A square drifting right; with `intruder`, a second bright block appears mid-clip."""
    frames = moving_square(n=n, size=SIZE, side=8, speed=2)
    if intruder:
        frames[n // 2:, 4:14, 30:40] = 255
    return frames


def clip_of(frames: np.ndarray, context: int) -> Clip:
    n = len(frames)
    return Clip("toy", frames.astype(np.float32) / 255.0, np.arange(n), np.arange(n) / 10.0,
                context)


@pytest.fixture(scope="module")
def normal_video(tmp_path_factory):
    return open_source(write_video(tmp_path_factory.mktemp("ctd") / "normal.mp4", toy_frames(24)))


@pytest.fixture(scope="module")
def trained(normal_video, tmp_path_factory):
    scorer = get_scorer("ct-d2gan", dict(TINY, iterations=120, lr_generator=2e-3))
    scorer.work_dir = tmp_path_factory.mktemp("ctd-work")
    scorer.fit(TrainingSet.from_sources([normal_video]), progress=False)
    return scorer


@pytest.mark.parametrize("grayscale", [True, False])
def test_network_output_shapes(grayscale):
    config = CTD2GANParams(**TINY, grayscale=grayscale)
    c = config.channels
    past = torch.rand(2, config.frames, c, *SIZE)
    prediction = Generator(config)(past)
    assert prediction.shape == (2, c, *SIZE)
    assert ImageDiscriminator(c, 4)(prediction).shape == (2, 1, SIZE[0] // 8, SIZE[1] // 8)
    clip = torch.cat([past, prediction[:, None]], 1)
    assert VideoDiscriminator(c, 4)(clip).shape[:2] == (2, 1)


def test_score_gives_one_score_and_heatmap_per_target_frame():
    scorer = CTD2GANScorer(CTD2GANParams(**TINY))
    result = scorer.score(clip_of(toy_frames(10), context=3))
    assert list(result.indices) == list(range(3, 10))
    assert result.scores.shape == (7,) and np.isfinite(result.scores).all()
    assert result.heatmaps.shape == (7, *SIZE) and (result.heatmaps >= 0).all()
    with pytest.raises(VadError, match="needs 3 frames of context"):
        scorer.score(clip_of(toy_frames(10), context=2))
    with pytest.raises(VadError, match="do not match the model input"):
        scorer.score(clip_of(moving_square(n=6, size=(16, 24)), context=3))


def test_invalid_config_is_a_one_line_error():
    with pytest.raises(VadError, match="multiples of 8"):
        get_scorer("ct-d2gan", {"size": (30, 48)})
    with pytest.raises(VadError, match="heads"):
        get_scorer("ct-d2gan", {"width": 4, "heads": 3})


def test_training_steps_reduce_the_prediction_loss():
    torch.manual_seed(0)
    scorer = CTD2GANScorer(CTD2GANParams(**TINY, lr_generator=2e-3))
    parts = GanParts.create(scorer)
    frames = toy_frames(24)[:, None]
    batch = torch.from_numpy(sample_batch([frames], scorer.config, iteration=0))
    losses = [train_step(scorer, parts, batch)["int"] for _ in range(10)]
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3])


def test_save_load_round_trip_gives_identical_scores(trained, normal_video, tmp_path):
    loaded = load_scorer(trained.save(tmp_path / "ckpt"))
    assert loaded.config == trained.config and loaded.calibration == trained.calibration
    before = score_source(trained, normal_video, 8)
    after = score_source(loaded, normal_video, 8)
    np.testing.assert_array_equal(before.scores, after.scores)


def test_fit_calibrates_and_checkpoints_into_work_dir(trained):
    assert trained.calibration.count == 24 - 3 and trained.calibration.std > 0
    checkpoint = load_scorer(trained.work_dir)
    assert checkpoint.training_state["train.iteration"][0] == 120


def test_resumed_training_matches_an_uninterrupted_run(normal_video, tmp_path):
    whole = get_scorer("ct-d2gan", dict(TINY, iterations=4))
    whole.fit(TrainingSet.from_sources([normal_video]), progress=False)
    halves = get_scorer("ct-d2gan", dict(TINY, iterations=2))
    halves.work_dir = tmp_path
    halves.fit(TrainingSet.from_sources([normal_video]), progress=False)
    resumed = get_scorer("ct-d2gan", dict(TINY, iterations=4))
    resumed.work_dir = tmp_path
    resumed.fit(TrainingSet.from_sources([normal_video]), progress=False)
    for name, value in whole.tensors().items():
        np.testing.assert_array_equal(resumed.tensors()[name], value, err_msg=name)


def test_resume_refuses_a_different_architecture(normal_video, tmp_path):
    first = get_scorer("ct-d2gan", dict(TINY, iterations=2))
    first.work_dir = tmp_path
    first.fit(TrainingSet.from_sources([normal_video]), progress=False)
    other = get_scorer("ct-d2gan", TINY | {"width": 8, "iterations": 4})
    other.work_dir = tmp_path
    with pytest.raises(VadError, match="other width"):
        other.fit(TrainingSet.from_sources([normal_video]), progress=False)


def test_an_unexpected_object_scores_higher_than_normal_motion(trained):
    context = trained.config.frames
    normal = trained.score(clip_of(toy_frames(), context)).scores
    anomalous = trained.score(clip_of(toy_frames(intruder=True), context)).scores
    onset = 16 // 2 - context  # the first scored frame that shows the intruder
    assert anomalous[onset] > normal.max()


def test_shared_frame_encoding_predicts_like_the_plain_forward_pass():
    scorer = CTD2GANScorer(CTD2GANParams(**TINY, inference_batch=2))
    frames = scorer.to_tensor(toy_frames(9).astype(np.float32) / 255.0)
    windows = frames.unfold(0, 3, 1)[:-1].permute(0, 4, 1, 2, 3)
    with torch.no_grad():
        expected = scorer.generator(windows)
    encoded = scorer.generator.encode(frames[:-1])
    torch.testing.assert_close(scorer.decode_windows(encoded), expected, rtol=1e-4, atol=1e-5)


def test_a_session_encodes_each_frame_once_and_scores_like_whole_clips(trained):
    frames = [Frame("toy", i, i / 10, image) for i, image in enumerate(toy_frames(30))]
    encoded = []
    original = trained.generator.encode

    def counting(batch):
        encoded.append(len(batch))
        return original(batch)

    trained.generator.encode = counting
    try:
        session = list(iter_scores(trained.session("toy", 4), frames))
    finally:
        del trained.generator.encode
    whole = trained.score(clip_of(toy_frames(30), trained.config.frames))
    np.testing.assert_allclose(np.concatenate([r.scores for r in session]), whole.scores,
                               rtol=1e-5, atol=1e-5)
    assert sum(encoded) == 30 - 1  # every frame but the last (a target only) encoded once


@pytest.mark.slow
def test_committed_ped2_checkpoint_reaches_its_documented_auc(ped2_dir, tmp_path, capsys):
    from pathlib import Path

    from vad.cli import main

    checkpoint = Path(__file__).resolve().parents[1] / "checkpoints" / "ct-d2gan-ped2"
    out = tmp_path / "eval"
    assert main(["eval", str(ped2_dir), "--scorer", "ct-d2gan", "--checkpoint", str(checkpoint),
                 "--out", str(out), "--no-progress"]) == 0
    online, offline = capsys.readouterr().out.strip().splitlines()[-2:]
    assert float(offline.removeprefix("micro_auc=")) >= DOCUMENTED_PED2_AUC - 0.005
    assert float(online.removeprefix("online_micro_auc=")) >= DOCUMENTED_PED2_ONLINE_AUC - 0.005


def test_training_keeps_a_loss_log_that_a_resumed_run_continues(normal_video, tmp_path):
    import json

    first = get_scorer("ct-d2gan", dict(TINY, iterations=3, checkpoint_every=2))
    first.work_dir = tmp_path
    first.fit(TrainingSet.from_sources([normal_video]), progress=False)
    log = tmp_path / "losses.jsonl"
    assert [json.loads(line)["iteration"] for line in log.read_text().splitlines()] == [1, 2, 3]
    second = get_scorer("ct-d2gan", dict(TINY, iterations=5, checkpoint_every=2))
    second.work_dir = tmp_path
    second.fit(TrainingSet.from_sources([normal_video]), progress=False)
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["iteration"] for e in entries] == [1, 2, 3, 4, 5]
    assert all(np.isfinite(e["int"]) and e["int"] >= 0 for e in entries)


def test_a_config_may_change_what_a_checkpoint_does_not_fix(trained, tmp_path):
    saved = trained.save(tmp_path / "ckpt")
    faster = load_scorer(saved, CTD2GANParams(**TINY, inference_batch=1))
    assert faster.config.inference_batch == 1 and faster.config.width == TINY["width"]
    with pytest.raises(VadError, match="params.width=8 differs from the checkpoint's 4"):
        load_scorer(saved, CTD2GANParams(**(TINY | {"width": 8})))


def test_a_session_restored_from_its_state_scores_identically(trained):
    """The encoding cache travels in the session state: a restored session goes on with the
    very same scores (vad serve checkpoints)."""
    from vad.snapshots import pack, unpack

    frames = [Frame("toy", i, i / 10, image) for i, image in enumerate(toy_frames(24, True))]
    whole = trained.session("toy", 4)
    expected = np.concatenate([r.scores for r in iter_scores(whole, frames)])
    first = trained.session("toy", 4)
    got = [r.scores for f in frames[:10] if (r := first.push(f)) is not None]
    second = trained.session("toy", 4)
    second.restore(unpack(pack(first.state())))
    assert len(second.cache.encoded) and len(second.cache.indices)
    got += [r.scores for r in iter_scores(second, frames[10:])]
    np.testing.assert_array_equal(np.concatenate(got), expected)


def test_the_training_script_trains_evaluates_and_records_in_one_run(tmp_path):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    data = tmp_path / "bench"
    for split in ("train", "test"):
        (data / split).mkdir(parents=True)
    write_video(data / "train" / "00.mp4", toy_frames(24))
    write_video(data / "test" / "01.mp4", toy_frames(24, intruder=True))
    (data / "test_labels.csv").write_text("video,frame,label\n" + "".join(
        f"01,{t},{int(t >= 12)}\n" for t in range(24)))
    config = tmp_path / "tiny.yaml"
    config.write_text(json.dumps({"scorers": [{"name": "ct-d2gan", "params": TINY | {
        "iterations": 6, "checkpoint_every": 3}}], "device": "cpu"}))
    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "ckpt"
    run = subprocess.run(
        [str(repo / "scripts" / "train_ct_d2gan_gpu.sh"), "--data", str(data), "--out", str(out),
         "--config", str(config), "--no-progress"],
        env={**os.environ, "VAD": f"{sys.executable} -m vad.cli"},
        cwd=repo, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1].startswith("train_seconds=")
    meta = json.loads((out / "config.json").read_text())
    assert meta["config"]["iterations"] == 6 and meta["config"]["size"] == [32, 48]
    assert load_scorer(out).training_state["train.iteration"][0] == 6
    (figures,) = meta["provenance"]["figures"].values()
    report = json.loads((tmp_path / "ckpt-eval" / "report.json").read_text())
    assert figures["micro_auc"] == pytest.approx(report["micro_auc"])
    assert figures["online_micro_auc"] == pytest.approx(report["online"]["micro_auc"])
