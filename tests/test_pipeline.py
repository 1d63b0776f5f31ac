import numpy as np
import pytest

from conftest import moving_square, write_video

from streams.sources import open_source
from vad.cli import main
from vad.config import load_config
from vad.errors import VadError
from vad.evidence import decode_image
from vad.pipeline import OnChange, Pipeline
from vad.stores import open_store
from vad.types import Explanation


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

        alerts = pipeline.process_all(open_source(test))
        pipeline.close()
        stored = store.get(alerts[0].id)
    assert stored.rule == "no vehicles on the walkway" and stored.objects == "1 object"
    assert stored.explanation == f"peak at {stored.peak_frame}"
    # explained once explain_after (8) frames were in, again at the close: the peak moved
    early, seen = reasoner.frames_seen
    assert len(early) <= 10 and early[-1] < stored.peak_frame
    assert 2 <= len(seen) <= 10 and seen == sorted(seen)
    assert stored.peak_frame in seen and stored.peak_frame - 1 in seen  # speed at the peak
    assert stored.start_frame - 1 <= seen[0] and seen[-1] <= stored.end_frame


def test_an_alert_is_stored_ongoing_updated_then_closed(setup, tmp_path):
    """Two fused scorers; the alert is in the store from the frame its event lasted
    min_duration frames, ongoing, and closed at its end."""
    root, test, checkpoint = setup
    config = load_config(None, [
        f"scorers=[{{name: frame-diff, checkpoint: '{checkpoint}', weight: 2}},"
        f" {{name: frame-diff, checkpoint: '{checkpoint}'}}]", "events.min_duration=3",
        "events.update_interval_s=0"])
    seen = []
    with open_store(f"sqlite:///{tmp_path}/b.db") as store:
        pipeline = Pipeline.from_config(config, store, listeners=[OnChange(seen.append)])
        stored_while = {}
        for frame in open_source(test):
            changes = pipeline.process(frame)
            for change in changes:
                stored_while[change.kind] = store.get(change.alert.id)
        assert pipeline.finish() == [] and len(store.query()) == 1  # closed at its end before
        (alert,) = store.query()
    kinds = [c.kind for c in seen]
    assert kinds[0] == "opened" and kinds[-1] == "closed" and "updated" in kinds
    assert kinds.count("opened") == kinds.count("closed") == 1
    opened = seen[0].alert
    assert opened.ongoing and opened.end_frame - opened.start_frame + 1 == 3  # min_duration
    assert stored_while["opened"].ongoing and stored_while["updated"].ongoing
    assert stored_while["updated"].end_frame > opened.end_frame
    assert not alert.ongoing and alert.close_reason == "end" and alert.id == opened.id
    assert alert.end_frame >= stored_while["updated"].end_frame


def test_a_pipeline_restored_from_a_snapshot_goes_on_exactly(setup, tmp_path):
    from vad.snapshots import pack, unpack
    from streams.messages import decode_message, encode_frame

    root, test, checkpoint = setup
    config = _config(checkpoint, "events.update_interval_s=0")
    frames = [decode_message(*encode_frame(f)) for f in open_source(test)]  # as streamed
    with open_store(f"sqlite:///{tmp_path}/whole.db") as store:
        reasoner = CountingReasoner()
        whole = Pipeline.from_config(config, store, reasoner)
        expected = [(c.kind, c.alert) for f in frames for c in whole.process(f)]
        expected += [(c.kind, c.alert) for c in whole.finish()]
        whole.close()
        expected_scores = store.scores("cam7")
    for cut in (40, 45):  # inside the event (36-5x)
        got, reasoner_b = [], CountingReasoner()
        with open_store(f"sqlite:///{tmp_path}/cut{cut}.db") as store:
            first = Pipeline.from_config(config, store, CountingReasoner())
            got += [(c.kind, c.alert) for f in frames[:cut] for c in first.process(f)]
            snapshot = pack(first.state("cam7"))
            first.close()
            second = Pipeline.from_config(config, store, reasoner_b)
            second.restore("cam7", unpack(snapshot))
            got += [(c.kind, c.alert) for f in frames[cut:] for c in second.process(f)]
            got += [(c.kind, c.alert) for c in second.finish()]
            second.close()
            scores = store.scores("cam7")
        strip = lambda changes: [(k, {**vars(a), "created_at": 0}) for k, a in changes]  # noqa: E731
        assert strip(got) == strip(expected) and any(k == "opened" for k, _ in got)
        np.testing.assert_array_equal(scores.scores, expected_scores.scores)
        assert len(reasoner_b.frames_seen) >= 1  # the close is explained from restored frames


def test_run_errors_are_one_line_without_traceback(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.mp4"), "--store", f"{tmp_path}/x.db"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"error: {tmp_path / 'nope.mp4'}: no such file or folder"
    video = write_video(tmp_path / "v.mp4", moving_square(n=5))
    assert main(["run", str(video), "--store", f"{tmp_path}/x.db"]) == 2
    assert "has no checkpoint: train one with `vad fit" in capsys.readouterr().err
    assert main(["run", str(video), "--checkpoint", str(tmp_path),
                 "--store", f"{tmp_path}/x.db"]) == 2
    assert "not a checkpoint" in capsys.readouterr().err


def test_scorer_descriptions_reach_the_alert_without_a_reasoner(setup, tmp_path):
    root, test, checkpoint = setup
    with open_store(f"sqlite:///{tmp_path}/c.db") as store:
        pipeline = Pipeline.from_config(_config(checkpoint), store)
        (scorer,) = pipeline.scorers.scorers()
        scorer.describe = lambda frames: (f"{len(frames)} frames from {frames[0].index} "
                                          f"to {frames[-1].index}")
        (alert,) = pipeline.process_all(open_source(test))
        pipeline.close()
        stored = store.get(alert.id)
    count, _, _, first, _, last = stored.motion_description.split()
    count, first, last = int(count), int(first), int(last)
    assert count >= 2 and stored.start_frame - 1 <= first < last <= stored.end_frame
    assert stored.rule == ""  # no reasoner configured


class FailingReasoner:
    def explain(self, event, frames):
        raise RuntimeError("the describer model is gone")


def test_an_explanation_failure_is_recorded_on_the_alert_and_counted(setup, tmp_path):
    root, test, checkpoint = setup
    with open_store(f"sqlite:///{tmp_path}/f.db") as store:
        pipeline = Pipeline.from_config(_config(checkpoint), store, FailingReasoner())
        (alert,) = pipeline.process_all(open_source(test))
        pipeline.close()
        stored = store.get(alert.id)
    assert stored.explanation == "explanation failed: the describer model is gone"
    assert pipeline.explanation_failures == 2 and stored.rule == ""  # early and at the close


def test_each_camera_runs_its_own_section(setup, tmp_path):
    root, test, checkpoint = setup
    config = _config(checkpoint, "cameras={quiet: {events: {threshold: 1000, "
                                 "release_threshold: 1000}}}")
    with open_store(f"sqlite:///{tmp_path}/cams.db") as store:
        pipeline = Pipeline.from_config(config, store)
        alerts = pipeline.process_all(open_source(test, "quiet"))
        alerts += pipeline.process_all(open_source(test, "busy"))
        pipeline.close()
    assert [a.camera_id for a in alerts] == ["busy"]
    with pytest.raises(VadError, match="not a checkpoint"):  # loaded at start, not later
        Pipeline.from_config(_config(checkpoint, "cameras={bad: {scorers: "
                                     f"[{{name: frame-diff, checkpoint: '{tmp_path}'}}]}}}}"),
                             store)


def test_boxes_and_labels_reach_the_alert(setup, tmp_path):
    from dataclasses import replace

    from vad.types import Box, Label

    root, test, checkpoint = setup
    with open_store(f"sqlite:///{tmp_path}/boxes.db") as store:
        pipeline = Pipeline.from_config(_config(checkpoint), store)
        (scorer,) = pipeline.scorers.scorers()
        plain = scorer.score

        def labelled(clip):
            result = plain(clip)
            n = len(result.scores)
            return replace(result,
                           boxes=tuple((Box(0.1, 0.2, 0.3, float(s) / 1e3 % 0.5 + 0.4),)
                                       for s in result.indices),
                           labels=tuple(Label("Speeding", 0.5 + 0.01 * (i % 7))
                                        for i in range(n)))

        scorer.score = labelled
        (alert,) = pipeline.process_all(open_source(test))
        pipeline.close()
        stored = store.get(alert.id)
    (box,) = stored.boxes
    assert box.y1 == pytest.approx(stored.peak_frame / 1e3 % 0.5 + 0.4)  # the peak frame's box
    assert stored.label == "Speeding" and stored.label_confidence == pytest.approx(0.56)


def test_the_pipeline_and_the_online_protocol_fuse_alike(setup, tmp_path):
    """One fusion implementation: `vad eval`'s online scores are the pipeline's, frame for
    frame, for a camera's first video."""
    from vad.data.benchmarks import TestVideo
    from vad.evaluation import online_scores, score_benchmark
    from vad.pipeline import ScorerCache

    root, test, checkpoint = setup
    config = _config(checkpoint, f"scorers=[{{name: frame-diff, checkpoint: '{checkpoint}', "
                                 f"weight: 2}}, {{name: frame-diff, checkpoint: '{checkpoint}', "
                                 "params: {cell: 8}}]")
    with open_store(f"sqlite:///{tmp_path}/fuse.db") as store:
        pipeline = Pipeline.from_config(config, store)
        pipeline.process_all(open_source(test))
        live = store.scores("cam7")
    slots = ScorerCache("cpu").slots(config)
    video = TestVideo("cam7", lambda: open_source(test), np.zeros(85, np.int64))
    (offline,) = online_scores(score_benchmark(slots, [video], 8, progress=False), slots,
                               config.postprocess)
    np.testing.assert_allclose(offline[live.indices], live.scores, rtol=1e-9)
    assert (offline[:live.indices[0]] == 0).all()  # frames no scorer could score: normal
