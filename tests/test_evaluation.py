import json

import cv2
import numpy as np
import pytest

from conftest import moving_square, write_video
from vad.cli import main
from vad.data.benchmarks import load_benchmark
from vad.data.ucsd import parse_ucsd_gt
from vad.errors import VadError
from vad.evaluation import VideoScores, pixel_auc
from vad.metrics import frame_metrics


def test_frame_metrics_match_hand_computed_values():
    videos = [VideoScores("a", np.array([0, 0, 1, 1]), {}, None),
              VideoScores("b", np.array([0, 1]), {}, None),
              VideoScores("c", np.array([1, 1]), {}, None)]
    scores = [np.array([0.1, 0.4, 0.35, 0.8]), np.array([0.2, 0.9]), np.array([0.5, 0.6])]
    metrics = frame_metrics([v.name for v in videos], [v.labels for v in videos], scores)
    # negatives 0.1 0.4 0.2; positives 0.35 0.8 0.9 0.5 0.6: 2+3+3+3+3 of 15 pairs ordered
    assert metrics["micro_auc"] == pytest.approx(14 / 15)
    # per video: a = 3/4, b = 1; c has one class and is left out of the macro mean
    assert metrics["macro_auc"] == pytest.approx(0.875) and metrics["macro_videos"] == 2
    assert [row["auc"] for row in metrics["per_video"]] == [0.75, 1.0, None]
    # ranking 0.9+ 0.8+ 0.6+ 0.5+ 0.4- 0.35+ 0.2- 0.1-: AP = (1+1+1+1+5/6)/5
    assert metrics["ap"] == pytest.approx((4 + 5 / 6) / 5)


def test_pixel_auc_on_a_known_heatmap():
    masks = np.zeros((2, 240, 360), np.uint8)
    masks[:, :120, :180] = 1
    heat = np.zeros((2, 60, 90), np.float32)
    heat[0, :30, :45] = 1.0  # exactly the anomalous quarter
    heat[1] = np.nan  # frame 1 unscored: left out
    assert pixel_auc([VideoScores("a", np.array([1, 1]), {}, heat)], {"a": masks}) == 1.0
    inverted = heat.copy()
    inverted[0] = 1 - heat[0]
    assert pixel_auc([VideoScores("a", np.array([1, 1]), {}, inverted)], {"a": masks}) == 0.0


def test_ucsd_ground_truth_parsing():
    text = """TestDataset = {};
TestDataset{1}.gt_frame = [61:180];
TestDataset{2}.gt_frame = [1:20, 40:50];"""
    assert parse_ucsd_gt(text) == [[(61, 180)], [(1, 20), (40, 50)]]
    with pytest.raises(VadError):
        parse_ucsd_gt("nothing here")


def test_official_ucsd_layout(tmp_path):
    for split, name, n in (("Train", "Train001", 4), ("Test", "Test001", 5)):
        folder = tmp_path / split / name
        folder.mkdir(parents=True)
        for i in range(n):
            cv2.imwrite(str(folder / f"{i + 1:03d}.tif"), np.zeros((24, 36), np.uint8))
    gt = tmp_path / "Test" / "Test001_gt"
    gt.mkdir()
    for i in range(5):
        cv2.imwrite(str(gt / f"{i + 1:03d}.bmp"), np.full((24, 36), 255 * (i >= 2), np.uint8))
    (tmp_path / "UCSDped2.m").write_text("TestDataset{1}.gt_frame = [3:5];")
    bench = load_benchmark(tmp_path)
    assert len(bench.train) == 1 and len(bench.test) == 1
    assert bench.test[0].labels.tolist() == [0, 0, 1, 1, 1]
    assert bench.test[0].load_masks()[:, 0, 0].tolist() == [0, 0, 1, 1, 1]
    assert len(list(bench.test[0].open())) == 5


def test_not_a_benchmark_is_a_clear_error(tmp_path):
    with pytest.raises(VadError, match="not a benchmark folder"):
        load_benchmark(tmp_path)


@pytest.fixture(scope="module")
def synthetic_benchmark(tmp_path_factory):
    """Normal = a slow square; test videos turn fast half way (the anomaly)."""
    root = tmp_path_factory.mktemp("bench")
    (root / "train").mkdir()
    (root / "test").mkdir()
    (root / "test_masks").mkdir()
    for i in range(2):
        write_video(root / "train" / f"{i:02d}.mp4", moving_square(n=24, speed=2))
    rows = ["video,frame,label"]
    for name in ("01", "02"):
        slow = moving_square(n=12, speed=2)
        fast = moving_square(n=12, speed=6, side=20)
        write_video(root / "test" / f"{name}.mp4", np.concatenate([slow, fast]))
        masks = np.zeros((24, 64, 96), np.uint8)
        for t in range(12, 24):
            left = 4 + 6 * (t - 12)
            masks[t, 22:42, left:left + 20] = 1
        np.savez_compressed(root / "test_masks" / f"{name}.npz", masks=masks)
        rows += [f"{name},{t},{int(t >= 12)}" for t in range(24)]
    (root / "test_labels.csv").write_text("\n".join(rows) + "\n")
    return root


def test_vad_eval_end_to_end_on_a_synthetic_benchmark(synthetic_benchmark, tmp_path, capsys):
    out = tmp_path / "report"
    code = main(["eval", str(synthetic_benchmark), "--scorer", "frame-diff", "--out", str(out),
                 "--no-progress", "--set", "postprocess.smoothing_sigma=1"])
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("micro_auc=") and lines[-2].startswith("online_micro_auc=")
    report = json.loads((out / "report.json").read_text())
    assert {"micro_auc", "macro_auc", "ap", "per_video", "online", "offline"} <= set(report)
    assert report["micro_auc"] > 0.9 and report["online"]["micro_auc"] > 0.9
    assert report["pixel_auc"] > 0.8
    assert float(lines[-1].split("=")[1]) == pytest.approx(report["micro_auc"], abs=1e-4)
    assert (out / "scores.png").stat().st_size > 10_000 and (out / "roc.png").is_file()
    assert (out / "checkpoints" / "frame-diff" / "model.safetensors").is_file()


def test_checkpoints_carry_their_provenance_and_recorded_figures(synthetic_benchmark, tmp_path,
                                                                 capsys):
    checkpoint = tmp_path / "fd"
    assert main(["fit", str(synthetic_benchmark / "train"), "--scorer", "frame-diff",
                 "--out", str(checkpoint), "--param", "cell=4", "--no-progress"]) == 0
    meta = json.loads((checkpoint / "config.json").read_text())
    provenance = meta["provenance"]
    assert provenance["command"].startswith("vad fit ") and "--param cell=4" in provenance["command"]
    assert provenance["training_data"]["videos"] == ["00", "01"]
    assert provenance["commit"] is None or len(provenance["commit"].split("-")[0]) == 40
    assert meta["config"]["cell"] == 4 and meta["learning_type"] == "one-class"
    assert main(["eval", str(synthetic_benchmark), "--checkpoint", str(checkpoint), "--out",
                 str(tmp_path / "report"), "--record", "--no-progress"]) == 0
    micro = float(capsys.readouterr().out.strip().splitlines()[-1].split("=")[1])
    figures = json.loads((checkpoint / "config.json").read_text())["provenance"]["figures"]
    (recorded,) = figures.values()
    assert recorded["micro_auc"] == pytest.approx(micro, abs=1e-4)
    assert recorded["command"].startswith("vad eval ")
