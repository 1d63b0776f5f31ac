"""VadCLIP: the adapter's parts on CPU, training, checkpoints, the online scorer, snippet
features, the list protocol and its fine-grained mAP, all with a tiny random CLIP saved to a
directory (no CLIP weights exist here; a real id loads through the same `clip:` path)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import moving_square, write_video

from models import get_scorer, load_scorer
from models.scoring import score_source
from models.vadclip.encoders import SnippetPooler, open_frame_encoder, source_features
from models.vadclip.model import (VadCLIPNet, binary_mil_loss, distance_adjacency,
                                  similarity_adjacency, topk_mean, window_mask)
from models.vadclip.train import epoch_batches, fit_length, learning_rate
from streams.sources import open_source
from streams.windows import preprocess
from vad.cli import main
from vad.config import load_config
from vad.config.scorers import VADCLIP_XD_CLASSES, SnippetEncoding, VadCLIPParams
from vad.data.training import ANOMALOUS, NORMAL, TrainingSet, TrainingVideo
from vad.data.video_lists import read_annotations, read_video_list, training_set_from_list
from vad.errors import VadError
from vad.types import Clip
from vad.weak_eval import VideoTruth, detection_map

DIM = 16
CLASSES = {"Normal": "normal", "Fighting": "fighting", "Arson": "arson"}


def tiny(clip_dir, **values) -> dict:
    return {"encoder": f"clip:{clip_dir}", "feature_dim": DIM, "visual_length": 32, "window": 4,
            "prompt_prefix": 2, "prompt_postfix": 2, "classes": CLASSES, "batch_size": 4,
            "epochs": 12, "lr": 1e-3, "checkpoint_every": 5, **values}


def synthetic_set(n: int = 16, seed: int = 0) -> tuple[TrainingSet, list[np.ndarray]]:
    """Separable snippet features: anomalous videos carry a shifted span (class Fighting)."""
    rng = np.random.default_rng(seed)
    videos, arrays = [], []
    for i in range(n):
        features = rng.normal(size=(40, DIM)).astype(np.float32)
        anomalous = i % 2 == 1
        if anomalous:
            features[10:20, :4] += 3.0
        arrays.append(features)
        videos.append(TrainingVideo(f"v{i}", None, ANOMALOUS if anomalous else NORMAL,
                                    ("Fighting",) if anomalous else (), lambda f=features: f))
    return TrainingSet(tuple(videos)), arrays


@pytest.fixture(scope="module")
def trained(tiny_clip, tmp_path_factory):
    scorer = get_scorer("vadclip", tiny(tiny_clip), "cpu")
    scorer.work_dir = tmp_path_factory.mktemp("vadclip-work")
    scorer.fit(synthetic_set()[0], progress=False)
    return scorer


# --- the adapter's parts --------------------------------------------------------------------

def test_window_mask_is_block_diagonal_or_overlapping():
    mask = window_mask(10, 4, overlap=False)
    expected = torch.zeros(10, 10, dtype=torch.bool)
    for start in (0, 4, 8):  # upstream's blocks, the last one shorter
        expected[start:start + 4, start:start + 4] = True
    assert torch.equal(mask, expected)
    overlapping = window_mask(10, 4, overlap=True)  # windows at 0, 2, 4, 6, 8
    assert overlapping[3, 4] and overlapping[1, 3] and not overlapping[1, 4]
    assert torch.equal(overlapping, overlapping.T) and overlapping.diagonal().all()


def test_adjacencies_on_cpu():
    distance = distance_adjacency(5)
    assert distance.device.type == "cpu"
    assert torch.allclose(distance[0], torch.exp(-torch.arange(5.0) / math.e))
    x = torch.tensor([[[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [5.0, 5.0]]])
    valid = torch.tensor([[True, True, True, False]])
    similarity = similarity_adjacency(x, valid, 0.7)
    cosine_01 = 0.9 / math.hypot(0.9, 0.1)
    row = torch.softmax(torch.tensor([1.0, cosine_01, 0.0]), 0)  # cosine 0 <= 0.7 -> 0
    assert torch.allclose(similarity[0, 0, :3], row)
    assert torch.allclose(similarity[0, :3].sum(-1), torch.ones(3))
    assert not similarity[0, 3].any() and not similarity[0, :, 3].any()  # padding unused


def test_mil_top_k_is_length_over_16_plus_1():
    values = torch.arange(40.0)
    assert topk_mean(values, 40) == torch.tensor([37.0, 38.0, 39.0]).mean()  # k = 3
    assert topk_mean(values, 15) == 14.0  # k = 1 among the first 15
    per_class = torch.stack([values, -values], 1)
    assert torch.equal(topk_mean(per_class, 40), torch.tensor([38.0, -1.0]))
    logits = torch.full((2, 40), -9.0)
    logits[1, :3] = 9.0
    low = binary_mil_loss(logits, torch.tensor([40, 40]), torch.tensor([0, 1]))
    assert low < 1e-3 < binary_mil_loss(logits, torch.tensor([40, 40]), torch.tensor([1, 0]))


def test_padding_does_not_change_a_videos_scores():
    config = VadCLIPParams(feature_dim=DIM, visual_length=32, window=4, text_encoder="off")
    torch.manual_seed(0)
    net = VadCLIPNet(config).eval()
    x = torch.randn(1, 20, DIM)
    alone = net(x, torch.ones(1, 20, dtype=torch.bool)).logits
    padded = torch.cat([x, torch.randn(1, 12, DIM) * 50], 1)
    valid = torch.arange(32)[None] < 20
    with torch.no_grad():
        assert torch.allclose(net(padded, valid).logits[:, :20], alone, atol=1e-5)


def test_fit_length_averages_long_videos_and_pads_short_ones():
    features = np.arange(10, dtype=np.float32)[:, None]
    rows, n = fit_length(features, 4)
    assert n == 4 and rows[:, 0].tolist() == [0.5, 3.0, 5.5, 8.0]  # spans 0-2, 2-5, 5-7, 7-10
    rows, n = fit_length(features[:3], 4)
    assert n == 3 and rows[:, 0].tolist() == [0.0, 1.0, 2.0, 0.0]


def test_batches_and_learning_rate_follow_upstream():
    config = VadCLIPParams(batch_size=2, seed=1)
    anomalous = np.array([False] * 5 + [True] * 3)
    batches = epoch_batches(anomalous, config, 0)
    assert len(batches) == 1 and anomalous[batches[0]].tolist() == [False, False, True, True]
    assert [b.tolist() for b in epoch_batches(anomalous, config, 0)] == \
        [b.tolist() for b in batches]  # the same for a given (seed, epoch)
    mixed = epoch_batches(anomalous, VadCLIPParams(preset="xd", batch_size=3), 0)
    assert sorted(np.concatenate(mixed).tolist()) == list(range(8)) and len(mixed) == 3
    assert [learning_rate(config, e) for e in (0, 3, 4, 8)] == pytest.approx(
        [2e-5, 2e-5, 2e-6, 2e-7])


def test_presets_fill_what_the_config_leaves_unset():
    xd = VadCLIPParams(preset="xd")
    assert (xd.layers, xd.window, xd.lr, xd.classes) == (1, 64, 1e-5, VADCLIP_XD_CLASSES)
    assert VadCLIPParams(preset="xd", window=16).window == 16
    assert xd.model_fields_set == {"preset"}  # a checkpoint compares only what was asked
    assert VadCLIPParams.model_validate(xd.model_dump()) == xd
    with pytest.raises(VadError, match="unknown preset"):
        load_config(None, ["scorers=[{name: vadclip, params: {preset: sh}}]"])
    with pytest.raises(VadError, match="frames_per_snippet"):
        load_config(None, ["features.frames_per_snippet=20"])


# --- CLIP, snippets, training, checkpoints ----------------------------------------------------

def test_tiny_clip_loads_from_a_directory_and_nothing_is_downloaded(tiny_clip):
    encoder = open_frame_encoder(f"clip:{tiny_clip}", torch.device("cpu"), batch=4)
    frames = np.random.default_rng(0).random((6, 48, 64, 3), dtype=np.float32)
    embedded = encoder.stream().encode(frames)
    assert embedded.shape == (6, DIM) and np.isfinite(embedded).all()
    assert not np.allclose(embedded[0], embedded[1])
    with pytest.raises(VadError, match="nothing is downloaded"):
        open_frame_encoder("clip:openai/clip-vit-base-patch16-not-here", torch.device("cpu"), 4)


class _Counting:
    """A stream embedding frame i as the vector [i, i, ...] (i counted over the stream)."""

    def __init__(self):
        self.seen = 0

    def encode(self, frames):
        out = np.arange(self.seen, self.seen + len(frames), dtype=np.float32)[:, None]
        self.seen += len(frames)
        return np.repeat(out, 2, 1)


def test_snippet_embedding_is_the_mean_of_its_sampled_frames():
    pooler = SnippetPooler(_Counting(), SnippetEncoding(snippet=4, frames_per_snippet=2))
    done, partial, before = pooler.push(np.zeros((6, 2, 2)))
    # Sampled offsets 0 and 2: frames 0, 2 | 4 are embedded as 0, 1 | 2.
    assert [d[0] for d in done] == [0.5] and partial[:, 0].tolist() == [0, 0, 0.5, 0.5, 2, 2]
    assert before.tolist() == [0, 0, 0, 0, 1, 1]
    assert pooler.finish()[0] == 2.0 and pooler.finish() is None


def test_training_lowers_the_losses_and_separates_the_classes(trained):
    log = [json.loads(line)
           for line in (trained.work_dir / "losses.jsonl").read_text().splitlines()]
    assert len(log) == 12 * 2  # epochs x min(8 normal, 8 anomalous) // 4
    for name in ("loss", "binary", "align"):
        assert np.mean([e[name] for e in log[-4:]]) < 0.7 * np.mean([e[name] for e in log[:4]])
    assert (trained.work_dir / "losses.png").stat().st_size > 1000
    _, arrays = synthetic_set(4, seed=7)
    normal, anomalous = trained.score_features(arrays[0]), trained.score_features(arrays[1])
    from sklearn.metrics import roc_auc_score
    truth = np.r_[np.zeros(40), np.zeros(10), np.ones(10), np.zeros(20)]
    assert roc_auc_score(truth, np.r_[normal.binary, anomalous.binary]) > 0.9
    labels = trained.labels(anomalous)
    assert {labels[i].name for i in range(10, 20)} == {"Fighting"}


def test_checkpoint_round_trip_and_refusals(trained, tmp_path):
    _, arrays = synthetic_set(2, seed=3)
    trained.save(tmp_path)
    loaded = load_scorer(tmp_path, device="cpu")
    for features in arrays:
        a, b = trained.score_features(features), loaded.score_features(features)
        assert np.allclose(a.binary, b.binary, atol=1e-6) and np.allclose(a.classes, b.classes)
    assert loaded.calibration == trained.calibration and loaded.calibration.count > 0
    wider = VadCLIPParams.model_validate(tiny("x", window=8))
    with pytest.raises(VadError, match="window=8 differs"):
        load_scorer(tmp_path, wider, device="cpu")
    from safetensors.numpy import load_file, save_file
    tensors = load_file(str(tmp_path / "model.safetensors"))
    del tensors["text_features"]
    save_file(tensors, str(tmp_path / "model.safetensors"))
    with pytest.raises(VadError, match="missing tensor 'text_features'"):
        load_scorer(tmp_path, device="cpu")


def test_training_resumes_where_it_stopped(tiny_clip, trained, tmp_path):
    training = synthetic_set()[0]
    scorer = get_scorer("vadclip", tiny(tiny_clip, epochs=5), "cpu")
    scorer.work_dir = tmp_path
    scorer.fit(training, progress=False)
    resumed = get_scorer("vadclip", tiny(tiny_clip), "cpu")  # 12 epochs, from step 10
    resumed.work_dir = tmp_path
    resumed.fit(training, progress=False)
    log = [json.loads(line)["iteration"]
           for line in (tmp_path / "losses.jsonl").read_text().splitlines()]
    assert log == list(range(1, 25))
    for (name, a), b in zip(resumed.net.state_dict().items(), trained.net.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-5), name


def test_weak_supervision_needs_every_label_and_class(tiny_clip):
    scorer = get_scorer("vadclip", tiny(tiny_clip), "cpu")
    features = np.zeros((8, DIM), np.float32)
    unlabelled = TrainingSet((TrainingVideo("u", None, None, (), lambda: features),))
    with pytest.raises(VadError, match="needs a label for every video"):
        scorer.fit(unlabelled, progress=False)
    classless = TrainingSet((TrainingVideo("a", None, ANOMALOUS, (), lambda: features),))
    with pytest.raises(VadError, match="without its class"):
        scorer.fit(classless, progress=False)
    unknown = TrainingSet((TrainingVideo("a", None, ANOMALOUS, ("Riot",), lambda: features),))
    with pytest.raises(VadError, match="'Riot' is not an anomaly class"):
        scorer.fit(unknown, progress=False)


# --- online -----------------------------------------------------------------------------------

def _frames_of(source):
    return [frame for frame in source]


def test_online_scorer_on_a_ped2_video(trained, ped2_dir):
    frames = _frames_of(open_source(ped2_dir / "test" / "04.mp4"))
    full = score_source(trained, open_source(ped2_dir / "test" / "04.mp4"), batch=8)
    assert full.indices.tolist() == list(range(len(frames))) and np.isfinite(full.scores).all()
    assert {label.name for label in full.labels} <= {"Fighting", "Arson"}
    assert all(0 <= label.confidence <= 1 for label in full.labels)
    # Causal: the first 50 frames score the same whether or not more frames follow.
    session = trained.session("cam", 8)
    prefix = []
    for start in range(0, 50, 10):
        chunk = frames[start:start + 10]
        images = np.stack([preprocess(f.image, None, grayscale=False) for f in chunk])
        prefix.append(session.score(Clip("cam", images, np.array([f.index for f in chunk]),
                                         np.zeros(len(chunk)))).scores)
    assert np.allclose(np.concatenate(prefix), full.scores[:50], atol=1e-5)
    assert len(set(np.round(full.scores, 6))) > 10  # scores follow the frames


# --- lists, ground truth, fine-grained mAP -------------------------------------------------------

def test_video_lists_and_annotations(tmp_path):
    np.save(tmp_path / "Abuse028_x264__5.npy", np.ones((3, 4), np.float32))
    np.save(tmp_path / "v__0.npy", np.ones((2, 4), np.float32))
    (tmp_path / "list.csv").write_text("path,label\nAbuse028_x264__5.npy,Abuse\n"
                                       f"{tmp_path}/v__0.npy,B2-G-0\n")
    videos = read_video_list(tmp_path / "list.csv")
    assert [(v.name, v.classes, v.anomalous) for v in videos] == [
        ("Abuse028_x264", ("Abuse",), True), ("v", ("B2", "G"), True)]
    training = training_set_from_list(tmp_path / "list.csv")
    assert training.videos[0].features().shape == (3, 4) and training.videos[1].name == "v__0"
    (tmp_path / "ann.txt").write_text(
        "Abuse028_x264  Abuse  165  240  -1  -1  \nNormal_Videos_003_x264  Normal  -1  -1  -1  -1\n"
        "v=x__#1_label_B4-0-0 B4 0 1517 B4 1970 3038\nv=y__#1_label_G-0-0.mp4 77 1430\n")
    assert read_annotations(tmp_path / "ann.txt") == {
        "Abuse028_x264": [(165, 240, "Abuse")], "Normal_Videos_003_x264": [],
        "v=x__#1_label_B4-0-0": [(0, 1517, "B4"), (1970, 3038, "B4")],
        "v=y__#1_label_G-0-0": [(77, 1430, None)]}
    (tmp_path / "bad.csv").write_text("file,kind\nx,y\n")
    with pytest.raises(VadError, match="path,label header"):
        read_video_list(tmp_path / "bad.csv")
    np.save(tmp_path / "obj.npy", np.array([[1], [1, 2]], dtype=object), allow_pickle=True)
    (tmp_path / "obj.csv").write_text("path,label\nobj.npy,Normal\n")
    with pytest.raises(VadError, match="not a numeric .npy"):
        training_set_from_list(tmp_path / "obj.csv").videos[0].features()


def test_detection_map_matches_segments_per_class():
    frames = 160
    probs = np.full((frames, 2), 0.1)
    probs[:, 0] = 0.9
    probs[40:80, 1], probs[40:80, 0] = 0.9, 0.1
    truth = VideoTruth(np.zeros(frames, np.int64), [(40, 80, 1)])
    exact = detection_map([probs], [truth])
    assert exact["per_class"][1] == [100.0] * 5 and exact["per_class"][0] == [None] * 5
    assert exact["average"] == 100.0
    half = VideoTruth(truth.labels, [(60, 140, 1)])  # IoU of [40, 80) and [60, 140): 0.2
    assert detection_map([probs], [half])["per_class"][1] == [100.0, 100.0, 0.0, 0.0, 0.0]


# --- the command line, end to end ----------------------------------------------------------------

@pytest.mark.slow
def test_features_fit_eval_end_to_end(tiny_clip, tmp_path, capsys):
    data = tmp_path / "videos"
    data.mkdir()
    for i in range(3):
        write_video(data / f"n{i}.mp4", moving_square(n=40, speed=1))
        frames = moving_square(n=40, speed=1)
        frames[16:32, 5:40, 5:40] = 255
        write_video(data / f"a{i}.mp4", frames)
    out = tmp_path / "features"
    assert main(["features", str(data), "--encoder", f"clip:{tiny_clip}", "--out", str(out),
                 "--no-progress"]) == 0
    meta = json.loads((out / "features.json").read_text())
    assert meta["videos"]["a0"] == {"frames": 40, "snippets": 3} and meta["dim"] == DIM
    assert np.load(out / "a0.npy").shape == (3, DIM)
    stamp = (out / "a0.npy").stat().st_mtime_ns
    assert main(["features", str(data), "--encoder", f"clip:{tiny_clip}", "--out", str(out),
                 "--no-progress"]) == 0  # resumed: nothing left to do
    assert (out / "a0.npy").stat().st_mtime_ns == stamp
    rows = [f"{k}{i}.npy,{'Fighting' if k == 'a' else 'Normal'}" for i in range(2) for k in "na"]
    (out / "train.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    (out / "test.csv").write_text("path,label\na2.npy,Fighting\nn2.npy,Normal\n")
    labels = ["video,frame,label"] + [f"a2,{f},{int(16 <= f < 32)}" for f in range(40)] \
        + [f"n2,{f},0" for f in range(40)]
    (tmp_path / "labels.csv").write_text("\n".join(labels) + "\n")
    params = [f"--param={k}={v}" for k, v in tiny(tiny_clip, batch_size=2, epochs=2).items()
              if k != "classes"] + ["--param=classes={Normal: normal, Fighting: fighting}"]
    checkpoint = tmp_path / "ckpt"
    assert main(["fit", str(out / "train.csv"), "--scorer", "vadclip", "--out", str(checkpoint),
                 "--no-progress", *params]) == 0
    meta = json.loads((checkpoint / "config.json").read_text())
    assert meta["learning_type"] == "weakly-supervised"
    assert meta["provenance"]["training_data"]["anomalous"] == 2
    capsys.readouterr()
    assert main(["eval", str(out / "test.csv"), "--scorer", "vadclip", "--checkpoint",
                 str(checkpoint), "--labels", str(tmp_path / "labels.csv"), "--out",
                 str(tmp_path / "eval"), "--no-progress", "--record"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert printed[-1] == f"auc={report['auc']:.4f}" and report["frames"] == 80
    assert report["protocols"]["offline"]["c-branch"]["auc"] == report["auc"]
    assert report["protocols"]["causal"]["a-branch"]["per_video"][0]["frames"] == 40
    assert len(report["fine_grained"]["map"]) == 5
    recorded = json.loads((checkpoint / "config.json").read_text())["provenance"]["figures"]
    assert recorded["test.csv:vadclip"]["auc"] == report["auc"]
    # The same checkpoint runs on a video as the online scorer and labels its alerts.
    assert main(["run", str(data / "a2.mp4"), "--scorer", "vadclip", "--checkpoint",
                 str(checkpoint), "--store", f"sqlite:///{tmp_path}/alerts.db", "--no-progress",
                 "--set", "events.threshold=0", "--set", "events.release_threshold=0",
                 "--set", "events.min_duration=1"]) == 0
    from vad.stores import AlertQuery, open_store
    with open_store(f"sqlite:///{tmp_path}/alerts.db") as store:
        alerts = store.query(AlertQuery())
    assert alerts and alerts[0].label == "Fighting" and 0 < alerts[0].label_confidence <= 1


def test_list_eval_needs_one_ground_truth(tmp_path, trained, capsys):
    trained.save(tmp_path / "ckpt")
    np.save(tmp_path / "v.npy", np.zeros((3, DIM), np.float32))
    (tmp_path / "list.csv").write_text("path,label\nv.npy,Fighting\n")
    assert main(["eval", str(tmp_path / "list.csv"), "--scorer", "vadclip", "--checkpoint",
                 str(tmp_path / "ckpt"), "--no-progress"]) == 2
    assert "needs one ground truth" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "list.csv"), "--scorer", "vadclip", "--checkpoint",
                 str(tmp_path / "ckpt"), "--annotations", str(tmp_path / "list.csv"),
                 "--no-progress"]) == 2
    assert "no segments for anomalous video v" in capsys.readouterr().err


def test_source_features_count_snippets(tiny_clip, tmp_path):
    video = write_video(tmp_path / "v.mp4", moving_square(n=35))
    encoder = open_frame_encoder(f"clip:{tiny_clip}", torch.device("cpu"), batch=8)
    features, frames = source_features(encoder, open_source(video), SnippetEncoding())
    assert frames == 35 and features.shape == (3, DIM)  # ceil(35 / 16)


def test_prompts_through_the_sentence_encoder_learn_only_the_prompts():
    from models.vadclip.text import PromptTextEncoder, SentenceTextTower
    from vad.data.models import sentence_model_dir

    tower = SentenceTextTower(sentence_model_dir(), torch.device("cpu"))
    prompts = PromptTextEncoder(tower, ["normal", "car accident"], 3, 2, DIM, torch.device("cpu"))
    assert sorted(prompts.state_dict()) == ["projection.bias", "projection.weight",
                                            "prompt_embeddings"]
    text = prompts()
    assert text.shape == (2, DIM)
    text.sum().backward()
    assert prompts.prompt_embeddings.grad.abs().sum() > 0
    assert all(p.grad is None for p in tower.model.parameters())  # the encoder stays frozen


def test_fit_and_features_inputs_carry_video_labels(tmp_path):
    import argparse

    from vad.commands.features import _inputs
    from vad.commands.fit import training_set

    normal = write_video(tmp_path / "n.mp4", moving_square(n=8))
    odd = write_video(tmp_path / "a.mp4", moving_square(n=8, speed=5))
    training = training_set(argparse.Namespace(inputs=[str(normal)], anomalous=[str(odd)]))
    assert [(v.name, v.label) for v in training.videos] == [("n", NORMAL), ("a", ANOMALOUS)]
    assert training_set(argparse.Namespace(inputs=[str(normal)], anomalous=[])).videos[0].label \
        is None  # one-class scorers keep unlabelled inputs
    (tmp_path / "list.csv").write_text("path,label\nn.mp4,Normal\na.mp4,Fighting\n")
    listed = training_set(argparse.Namespace(inputs=[str(tmp_path / "list.csv")], anomalous=[]))
    assert [(v.label, v.classes, v.features) for v in listed.videos] == [
        (NORMAL, (), None), (ANOMALOUS, ("Fighting",), None)]
    assert len(_frames_of(listed.videos[1].source())) == 8
    with pytest.raises(VadError, match="list CSV holds the labels"):
        training_set(argparse.Namespace(inputs=[str(tmp_path / "list.csv")],
                                        anomalous=[str(odd)]))
    (tmp_path / "videos.txt").write_text("n.mp4\n\na.mp4\n")
    assert _inputs([str(tmp_path / "videos.txt"), str(tmp_path / "list.csv")]) == [
        str(tmp_path / "n.mp4"), str(tmp_path / "a.mp4")] * 2
