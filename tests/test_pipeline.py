import numpy as np
import pytest

from conftest import moving_square, write_video
from vad.types import Explanation
from vad.cli import main
from vad.config import load_config
from vad.evidence import decode_image
from vad.pipeline import Pipeline
from vad.stores import open_store


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipe")
    normal = [write_video(root / f"normal{i}.mp4", moving_square(n=30, speed=2)) for i in range(2)]
    test = write_video(root / "cam7.mp4", np.concatenate([
        moving_square(n=30, speed=2), moving_square(n=25, speed=7, side=24),
        moving_square(n=30, speed=2)]))
    checkpoint = root / "ckpt"
    assert main(["fit", *map(str, normal), "--scorer", "frame-diff", "--out", str(checkpoint),
                 "--param", "size=[32,48]", "--no-progress"]) == 0
    return root, test, checkpoint


def _config(checkpoint, *overrides):
    return load_config(None, [f"scorers=[{{name: frame-diff, checkpoint: '{checkpoint}'}}]",
                              "events.min_duration=3", *overrides])


def test_vad_run_stores_one_alert_with_evidence_and_no_duplicates(setup, tmp_path, capsys):
    root, test, checkpoint = setup
    store_url = f"sqlite:///{tmp_path}/alerts.db"
    args = ["run", str(test), "--checkpoint", str(checkpoint), "--store", store_url,
            "--no-progress", "--set", "events.min_duration=3"]
    assert main(args) == 0
    assert "anomalous event(s) on camera cam7" in capsys.readouterr().out
    assert main(args) == 0
    with open_store(store_url) as store:
        alerts = store.query()
        assert len(alerts) == 1
        alert = alerts[0]
        assert 28 <= alert.start_frame <= 36 and 50 <= alert.end_frame <= 62
        assert alert.id == f"cam7:{alert.start_frame}"
        assert decode_image(alert.keyframe_jpeg).shape == (64, 96, 3)
        assert decode_image(alert.heatmap_png).ndim == 2
        assert len(store.scores("cam7").scores) == 84  # every frame after the first


class CountingReasoner:
    def __init__(self):
        self.frames_seen = []

    def explain(self, event, frames):
        self.frames_seen.append([f.index for f in frames])
        return Explanation(True, "no vehicles on the walkway", f"peak at {event.peak_frame}",
                           "1 object", "fast, left to right")


def test_alerts_are_explained_by_the_reasoner(setup, tmp_path):
    root, test, checkpoint = setup
    reasoner = CountingReasoner()
    with open_store(f"sqlite:///{tmp_path}/a.db") as store:
        pipeline = Pipeline.from_config(_config(checkpoint), store, reasoner)
        from streams.sources import open_source

        alerts = pipeline.process_all(open_source(test))
        pipeline.close()
        stored = store.get(alerts[0].id)
    assert stored.rule == "no vehicles on the walkway" and stored.objects == "1 object"
    assert stored.explanation == f"peak at {stored.peak_frame}"
    seen = reasoner.frames_seen[0]
    assert 2 <= len(seen) <= 10 and seen == sorted(seen)
    assert stored.peak_frame in seen and stored.peak_frame - 1 in seen  # speed at the peak
    assert stored.start_frame - 1 <= seen[0] and seen[-1] <= stored.end_frame


def test_fusion_of_two_scorers_and_settled_frames(setup, tmp_path):
    root, test, checkpoint = setup
    config = load_config(None, [
        f"scorers=[{{name: frame-diff, checkpoint: '{checkpoint}', weight: 2}},"
        f" {{name: frame-diff, checkpoint: '{checkpoint}'}}]", "events.min_duration=3"])
    from streams.sources import open_source

    with open_store(f"sqlite:///{tmp_path}/b.db") as store:
        pipeline = Pipeline.from_config(config, store)
        settled = []
        for frame in open_source(test):
            pipeline.process(frame)
            settled.append(pipeline.settled_frame("cam7"))
        alerts = pipeline.finish()
        # settled never moves back, and never past the start of the open event
        assert settled == sorted(settled)
        assert max(settled) < alerts[0].start_frame if alerts else True
        assert len(store.query()) == 1


def test_run_errors_are_one_line_without_traceback(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.mp4"), "--store", f"{tmp_path}/x.db"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"error: {tmp_path / 'nope.mp4'}: no such file or folder"
    video = write_video(tmp_path / "v.mp4", moving_square(n=5))
    assert main(["run", str(video), "--store", f"{tmp_path}/x.db"]) == 2
    assert "has no checkpoint: train one with `vad fit" in capsys.readouterr().err
    assert main(["run", str(video), "--checkpoint", str(tmp_path)]) == 2
    assert "not a checkpoint" in capsys.readouterr().err


def test_scorer_descriptions_reach_the_alert_without_a_reasoner(setup, tmp_path):
    from models import load_scorer
    from models.frame_diff import FrameDiffScorer
    from streams.sources import open_source
    from vad.pipeline import ScorerSlot

    class DescribingScorer(FrameDiffScorer):
        def describe(self, frames):
            return f"{len(frames)} frames from {frames[0].index} to {frames[-1].index}"

    root, test, checkpoint = setup
    fitted = load_scorer(checkpoint)
    scorer = DescribingScorer(fitted.config)
    scorer.load_tensors(fitted.tensors())
    scorer.calibration = fitted.calibration
    with open_store(f"sqlite:///{tmp_path}/c.db") as store:
        pipeline = Pipeline([ScorerSlot("d", scorer, 1.0)], _config(checkpoint), store)
        (alert,) = pipeline.process_all(open_source(test))
        pipeline.close()
        stored = store.get(alert.id)
    count, _, _, first, _, last = stored.motion_description.split()
    count, first, last = int(count), int(first), int(last)
    assert count >= 2 and stored.start_frame - 1 <= first < last <= stored.end_frame
    assert stored.rule == ""  # no reasoner configured
