"""End-to-end on the real UCSD Ped2 benchmark (skips where ../shared is absent)."""

import json

import pytest

from vad.cli import main


@pytest.mark.slow
def test_frame_diff_baseline_on_ped2(ped2_dir, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["eval", str(ped2_dir), "--scorer", "frame-diff", "--out", str(out),
                 "--no-progress"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    report = json.loads((out / "report.json").read_text())
    assert last == f"micro_auc={report['micro_auc']:.4f}"
    assert len(report["per_video"]) == 12 and sum(r["frames"] for r in report["per_video"]) == 2010
    # A real, if weak, detector: well above chance on both protocols and at pixel level.
    assert report["micro_auc"] > 0.75 and report["online"]["micro_auc"] > 0.7
    assert report["pixel_auc"] > 0.9
    assert (out / "scores.png").is_file() and (out / "roc.png").is_file()


@pytest.mark.slow
def test_demo_config_raises_explained_alerts_on_ped2(ped2_dir, tmp_path, monkeypatch, capsys):
    """The README's demo: committed motion checkpoint + AnomalyRuler rules on a test video."""
    from pathlib import Path

    from vad.stores import open_store

    monkeypatch.chdir(Path(__file__).resolve().parents[1])  # config paths are repo-relative
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    store_url = f"sqlite:///{tmp_path}/demo.db"
    assert main(["run", str(ped2_dir / "test" / "04.mp4"), "--config", "configs/demo.yaml",
                 "--store", store_url, "--no-progress"]) == 0
    assert "anomalous event(s) on camera 04" in capsys.readouterr().out
    with open_store(store_url) as store:
        alerts = store.query()
    assert alerts, "the cart crossing video 04 (frames 30-179) must raise an alert"
    alert = max(alerts, key=lambda a: a.end_frame - a.start_frame)
    assert alert.start_frame < 90 and alert.end_frame > 150
    assert alert.rule and alert.explanation and alert.objects
    assert "faster than usual" in alert.motion_description
    assert alert.keyframe_jpeg and alert.heatmap_png
