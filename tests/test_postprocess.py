import numpy as np
import pytest

from vad.config import EventConfig, load_config
from vad.errors import VadError
from vad.events import EventDetector
from vad.types import Calibration
from vad.postprocess import (CausalSmoother, RunningNormalizer, fuse, gaussian_smooth,
                             minmax_normalize)


def run(stateful, values) -> np.ndarray:
    """A causal stage fed value by value."""
    return np.array([stateful(float(v)) for v in values])


def detect_events(scores, config, camera_id="", timestamps=None):
    """All events of a score series: the online detector run to its end."""
    timestamps = np.arange(len(scores), dtype=float) if timestamps is None else timestamps
    detector = EventDetector(config, camera_id)
    changes = [c for i, (t, s) in enumerate(zip(timestamps, scores))
               for c in detector.update(i, float(t), float(s))] + detector.close("stream-end")
    return [c.event for c in changes if c.kind == "closed"]


def test_minmax_and_constant_video():
    np.testing.assert_allclose(minmax_normalize(np.array([2.0, 4.0, 3.0])), [0, 1, 0.5])
    np.testing.assert_array_equal(minmax_normalize(np.ones(3)), np.zeros(3))


def test_gaussian_smooth_keeps_mass_and_spreads_a_spike():
    spike = np.zeros(21)
    spike[10] = 1.0
    smooth = gaussian_smooth(spike, 2.0)
    assert smooth.sum() == pytest.approx(1.0)
    assert smooth.argmax() == 10 and smooth[10] < 0.25 and smooth[8] > 0


def test_running_normalizer_is_causal_and_starts_from_calibration():
    norm = RunningNormalizer(Calibration(mean=10.0, std=2.0), prior_weight=100, adapt_below=2.0)
    assert norm(14.0) == pytest.approx(2.0)
    a = run(RunningNormalizer(Calibration(10.0, 2.0), 100, 2.0), [9, 11, 30, 10.0])
    b = run(RunningNormalizer(Calibration(10.0, 2.0), 100, 2.0), [9, 11, 30, 99.0])
    np.testing.assert_array_equal(a[:3], b[:3])  # the future never changes the past


def test_running_normalizer_does_not_adapt_to_anomalies():
    norm = RunningNormalizer(Calibration(0.0, 1.0), prior_weight=10, adapt_below=2.0)
    for _ in range(200):
        norm(50.0)  # a long anomaly
    assert norm.mean == 0.0 and norm(50.0) == pytest.approx(50.0)
    for _ in range(200):
        norm(1.5)  # slow drift of normal scores is followed
    assert 1.0 < norm.mean < 1.5


def test_causal_smoother_weights_only_the_past():
    smoother = CausalSmoother(sigma=1.0)
    out = run(smoother, [0, 0, 1.0, 0, 0])
    # at frame 2 only three frames exist: the kernel is renormalised over them
    assert out[:2].tolist() == [0, 0] and out[2] == pytest.approx(1 / smoother.kernel[:3].sum())
    assert 0 < out[3] < out[2]


def test_fuse_is_a_weighted_mean():
    fused = fuse({"a": np.array([1.0, 0.0]), "b": np.array([0.0, 1.0])}, {"a": 3.0, "b": 1.0})
    np.testing.assert_allclose(fused, [0.75, 0.25])


CFG = EventConfig(threshold=3.0, release_threshold=2.0, min_duration=3, merge_gap=2)


def test_event_threshold_hysteresis_and_statistics():
    scores = np.array([0, 3.5, 2.5, 4.0, 2.1, 1, 0, 0, 0, 0], float)
    (event,) = detect_events(scores, CFG, "cam", timestamps=np.arange(10) / 10)
    assert (event.start_frame, event.end_frame, event.peak_frame) == (1, 4, 3)
    assert event.peak_score == 4.0 and event.mean_score == pytest.approx(np.mean(scores[1:5]))
    assert event.start_time == pytest.approx(0.1) and event.end_time == pytest.approx(0.4)


def test_events_shorter_than_min_duration_are_dropped():
    assert detect_events(np.array([0, 5, 5, 0, 0, 0, 0], float), CFG) == []


def test_dips_within_merge_gap_merge_longer_gaps_split():
    merged = detect_events(np.array([5, 5, 5, 0, 0, 5, 5, 5, 0, 0, 0, 0], float), CFG)
    assert [(e.start_frame, e.end_frame) for e in merged] == [(0, 7)]
    split = detect_events(np.array([5, 5, 5, 0, 0, 0, 5, 5, 5, 0, 0, 0], float), CFG)
    assert [(e.start_frame, e.end_frame) for e in split] == [(0, 2), (6, 8)]


def test_an_alert_opens_at_min_duration_and_closes_at_end_of_stream():
    detector = EventDetector(CFG, "cam")
    changes = [detector.update(i, i, 4.0) for i in range(5)]
    assert changes[:CFG.min_duration - 1] == [[]] * (CFG.min_duration - 1)
    (opened,) = changes[CFG.min_duration - 1]
    assert opened.kind == "opened" and (opened.event.start_frame, opened.event.end_frame) == (
        0, CFG.min_duration - 1)
    assert detector.current().end_frame == 4 and detector.open_start == 0
    (closed,) = detector.close("stream-end")
    assert (closed.kind, closed.reason, closed.event.end_frame) == ("closed", "stream-end", 4)
    assert detector.open_start is None and detector.current() is None


def test_max_duration_closes_an_event_and_a_new_one_continues_it():
    config = CFG.model_copy(update={"max_duration_s": 4.0})
    detector = EventDetector(config, "cam")
    changes = [(i, c) for i in range(12) for c in detector.update(i, float(i), 4.0)]
    summary = [(i, c.kind, c.reason, c.event.start_frame) for i, c in changes]
    # closed at 4 s of stream time; the next frame continues it, reported at once
    assert summary == [(CFG.min_duration - 1, "opened", "", 0), (4, "closed", "max-duration", 0),
                       (5, "opened", "", 5), (9, "closed", "max-duration", 5),
                       (10, "opened", "", 10)]
    # a continuation needs only the release threshold; a normal score ends the chain
    detector.close("stream-end")
    assert detector.update(20, 20.0, 0.0) == [] and detector.open_start is None


def test_detector_state_round_trip_continues_identically():
    scores = np.array([0, 4, 5, 5, 2.5, 5, 1, 1, 5, 5, 5, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], float)
    whole = EventDetector(CFG, "cam")
    expected = [c for i, s in enumerate(scores) for c in whole.update(i, float(i), s)]
    first = EventDetector(CFG, "cam")
    got = [c for i, s in enumerate(scores[:7]) for c in first.update(i, float(i), s)]
    second = EventDetector(CFG, "cam")
    second.restore(first.state())
    got += [c for i, s in enumerate(scores[7:], 7) for c in second.update(i, float(i), s)]
    assert got == expected and any(c.kind == "closed" for c in got)


def test_config_yaml_overrides_and_errors(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("events:\n  threshold: 4\nscorers:\n  - name: frame-diff\n    weight: 2\n")
    config = load_config(path, ["events.min_duration=7", "postprocess.smoothing_sigma=0"])
    assert config.events.threshold == 4 and config.events.min_duration == 7
    assert config.scorers[0].weight == 2 and config.postprocess.smoothing_sigma == 0
    assert config.events.release_threshold == 2.0  # default kept
    with pytest.raises(VadError, match="events.min_duration"):
        load_config(path, ["events.min_duration=0"])
    with pytest.raises(VadError, match="release_threshold must not exceed threshold"):
        load_config(None, ["events.release_threshold=9"])
    with pytest.raises(VadError, match="expected KEY=VALUE"):
        load_config(None, ["events.threshold"])
    path.write_text("events: [1, 2")
    with pytest.raises(VadError, match="invalid YAML"):
        load_config(path)
