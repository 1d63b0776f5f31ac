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
