"""The live pipeline: frames of any camera in, scored, fused, events out as stored alerts.

Per camera it keeps each scorer's clip window and running normaliser, fuses the scorers'
z-scores per frame, smooths causally, detects events and writes alerts with evidence. An
optional reasoner explains each alert on its own bounded worker so scoring never waits for it.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from models.base import Scorer, load_scorer
from streams.windows import ClipWindower
from vad.config import VadConfig
from vad.errors import VadError
from vad.events import EventDetector
from vad.evidence import encode_heatmap, encode_jpeg
from vad.postprocess import CausalSmoother, RunningNormalizer
from vad.stores.base import AlertStore
from vad.types import Alert, Event, Frame

log = logging.getLogger(__name__)

REASONING_SAMPLES = 8  # frames of an event handed to the reasoner
SCORE_FLUSH_ROWS = 64  # score timeline rows buffered before a store write


class Reasoner(Protocol):
    """Explains an event from its frames; the result has `rule`, `reason`, `objects`,
    `motion_description` attributes (see `reasoning`)."""

    def explain(self, event: Event, frames: list[Frame]) -> Any: ...


@dataclass
class ScorerSlot:
    key: str
    scorer: Scorer
    weight: float


def load_slots(config: VadConfig) -> list[ScorerSlot]:
    slots = []
    for i, spec in enumerate(config.scorers):
        if spec.checkpoint is None:
            raise VadError(f"scorer {spec.name!r} has no checkpoint: train one with "
                           f"`vad fit NORMAL_VIDEOS... --scorer {spec.name} --out DIR` "
                           "and pass --checkpoint DIR")
        scorer = load_scorer(spec.checkpoint)
        if scorer.name != spec.name:
            raise VadError(f"{spec.checkpoint}: holds a {scorer.name!r} scorer, "
                           f"not {spec.name!r}")
        slots.append(ScorerSlot(f"{spec.name}#{i}", scorer, spec.weight))
    return slots


class _Samples:
    """Up to `size` frames spread evenly over an event of unknown length (stride doubling)."""

    def __init__(self, size: int = REASONING_SAMPLES):
        self.size, self.stride, self.frames, self._seen = size, 1, [], 0

    def add(self, frame: Frame) -> None:
        if self._seen % self.stride == 0:
            self.frames.append(frame)
            if len(self.frames) > self.size:
                self.frames, self.stride = self.frames[::2], self.stride * 2
        self._seen += 1


@dataclass
class _Camera:
    windowers: dict[str, ClipWindower]
    normalizers: dict[str, RunningNormalizer]
    smoother: CausalSmoother
    detector: EventDetector
    history: int
    arrived: deque[Frame] = field(default_factory=deque)
    history_only: dict[str, int] = field(default_factory=dict)  # slot -> frames still to skip
    z: dict[int, dict[str, float]] = field(default_factory=dict)
    heatmaps: dict[int, np.ndarray] = field(default_factory=dict)
    last_fused: int = -1
    score_rows: list[tuple[int, float, float]] = field(default_factory=list)
    peak_frame: Frame | None = None
    # The frame fused just before the peak: with it the reasoner measures speed at the peak.
    before_peak: Frame | None = None
    previous: Frame | None = None
    peak_heatmap: np.ndarray | None = None
    samples: _Samples | None = None


class Pipeline:
    def __init__(self, slots: list[ScorerSlot], config: VadConfig, store: AlertStore,
                 reasoner: Reasoner | None = None):
        if not slots:
            raise VadError("the pipeline needs at least one scorer")
        self.slots, self.config, self.store = slots, config, store
        self._cameras: dict[str, _Camera] = {}
        scorers = [slot.scorer for slot in slots]
        self._explainer = _ExplainWorker(reasoner, scorers, store)

    @classmethod
    def from_config(cls, config: VadConfig, store: AlertStore,
                    reasoner: Reasoner | None = None) -> "Pipeline":
        """Scorers from their checkpoints; the reasoner from `config.reasoning` unless given."""
        if reasoner is None and config.reasoning is not None:
            from reasoning.reasoner import build_reasoner

            reasoner = build_reasoner(config.reasoning)
        return cls(load_slots(config), config, store, reasoner)

    def process(self, frame: Frame) -> list[Alert]:
        """Feed one frame; returns the alerts stored because of it."""
        camera = self._camera(frame.camera_id)
        camera.arrived.append(frame)
        for slot in self.slots:
            self._score(camera, slot, camera.windowers[slot.key].push(frame))
        return self._fuse_ready(camera, frame.camera_id)

    def process_all(self, frames: Iterable[Frame]) -> list[Alert]:
        alerts = [alert for frame in frames for alert in self.process(frame)]
        return alerts + self.finish()

    def finish(self, camera_id: str | None = None) -> list[Alert]:
        """End of stream: score the last frames and close open events."""
        alerts = []
        for cid in [camera_id] if camera_id else list(self._cameras):
            camera = self._cameras.get(cid)
            if camera is None:
                continue
            for slot in self.slots:
                self._score(camera, slot, camera.windowers[slot.key].flush())
            alerts += self._fuse_ready(camera, cid, final=True)
            event = camera.detector.finish()
            if event is not None:
                alerts.append(self._raise(camera, event))
            self._flush_scores(camera, cid)
        return alerts

    def reset_camera(self, camera_id: str) -> None:
        """Forget a camera's state (its partition moved to another worker)."""
        self._cameras.pop(camera_id, None)

    def settled_frame(self, camera_id: str) -> int:
        """Highest frame index that is fully processed and stored, and that a restarted worker
        resuming after it can rebuild the remaining state without (-1 if none)."""
        camera = self._cameras.get(camera_id)
        if camera is None:
            return -1
        open_start = camera.detector.open_start
        done = camera.last_fused if open_start is None else open_start - 1
        self._flush_scores(camera, camera_id)  # settled frames' scores must be stored too
        return done - camera.history

    def close(self) -> None:
        """Wait for pending explanations to be stored."""
        self._explainer.close()

    def _camera(self, camera_id: str) -> _Camera:
        if camera_id not in self._cameras:
            post = self.config.postprocess
            smoother = CausalSmoother(post.online_smoothing_sigma)
            self._cameras[camera_id] = _Camera(
                windowers={s.key: ClipWindower(s.scorer.input_spec.context,
                                               self.config.window.batch,
                                               s.scorer.input_spec.size,
                                               s.scorer.input_spec.grayscale)
                           for s in self.slots},
                normalizers={s.key: RunningNormalizer(s.scorer.calibration,
                                                      post.calibration_weight,
                                                      post.adapt_below)
                             for s in self.slots},
                smoother=smoother,
                detector=EventDetector(self.config.events, camera_id),
                history=max(s.scorer.input_spec.context for s in self.slots)
                + len(smoother.kernel),
                history_only={s.key: s.scorer.input_spec.context for s in self.slots},
            )
        return self._cameras[camera_id]

    def _score(self, camera: _Camera, slot: ScorerSlot, clip) -> None:
        if clip is None:
            return
        result = slot.scorer.score(clip)
        normalize = camera.normalizers[slot.key]
        for i, (index, raw) in enumerate(zip(result.indices, result.scores)):
            camera.z.setdefault(int(index), {})[slot.key] = normalize(float(raw))
            if result.heatmaps is not None and int(index) not in camera.heatmaps:
                camera.heatmaps[int(index)] = result.heatmaps[i]

    def _ready(self, camera: _Camera, index: int) -> bool:
        scored = camera.z.get(index, {})
        return all(slot.key in scored or camera.history_only[slot.key] > 0 for slot in self.slots)

    def _fuse_ready(self, camera: _Camera, camera_id: str, final: bool = False) -> list[Alert]:
        alerts = []
        while camera.arrived and (final or self._ready(camera, camera.arrived[0].index)):
            frame = camera.arrived.popleft()
            scored = camera.z.pop(frame.index, {})
            heatmap = camera.heatmaps.pop(frame.index, None)
            for slot in self.slots:
                if slot.key not in scored and camera.history_only[slot.key] > 0:
                    camera.history_only[slot.key] -= 1
            if not scored:
                continue  # history only: no scorer could score this frame yet
            weights = {s.key: s.weight for s in self.slots if s.key in scored}
            fused = sum(weights[k] * scored[k] for k in weights) / sum(weights.values())
            score = camera.smoother(fused)
            camera.last_fused = frame.index
            camera.score_rows.append((frame.index, frame.timestamp, score))
            alert = self._detect(camera, frame, heatmap, score)
            camera.previous = frame
            if alert is not None:
                alerts.append(alert)
            if len(camera.score_rows) >= SCORE_FLUSH_ROWS:
                self._flush_scores(camera, camera_id)
        return alerts

    def _detect(self, camera: _Camera, frame: Frame, heatmap: np.ndarray | None,
                score: float) -> Alert | None:
        was_open = camera.detector.open_start is not None
        event = camera.detector.update(frame.index, frame.timestamp, score)
        if event is not None:
            return self._raise(camera, event)
        if camera.detector.open_start is None:
            return None
        if not was_open:
            camera.samples, camera.peak_frame, camera.peak_heatmap = _Samples(), None, None
        if score >= self.config.events.release_threshold:  # dips in a merge gap are not the event
            camera.samples.add(frame)
        if camera.detector.open_peak == frame.index:
            camera.peak_frame, camera.peak_heatmap = frame, heatmap
            camera.before_peak = camera.previous
        return None

    def _raise(self, camera: _Camera, event: Event) -> Alert:
        if camera.peak_frame is not None:
            event.keyframe, event.heatmap = camera.peak_frame.image, camera.peak_heatmap
        alert = Alert.from_event(
            event,
            keyframe_jpeg=encode_jpeg(event.keyframe) if event.keyframe is not None else None,
            heatmap_png=encode_heatmap(event.heatmap) if event.heatmap is not None else None)
        self._flush_scores(camera, event.camera_id)
        self.store.put(alert)
        if camera.samples:
            self._explainer.submit(alert, event, _reasoning_frames(camera))
        camera.samples, camera.peak_frame, camera.peak_heatmap = None, None, None
        camera.before_peak = None
        return alert

    def _flush_scores(self, camera: _Camera, camera_id: str) -> None:
        if camera.score_rows:
            indices, timestamps, scores = zip(*camera.score_rows)
            self.store.record_scores(camera_id, indices, timestamps, scores)
            camera.score_rows.clear()


def _reasoning_frames(camera: _Camera) -> list[Frame]:
    """Frames spread over the event plus the pair at its peak, in order."""
    frames = camera.samples.frames + [camera.before_peak, camera.peak_frame]
    return sorted({f.index: f for f in frames if f is not None}.values(), key=lambda f: f.index)


class _ExplainWorker:
    """Explains alerts on a background thread through a bounded queue: the reasoner's rule and
    reason, and the scorers' own descriptions (the motion scorer says what moves unusually).
    When the queue is full the alert keeps no explanation rather than holding up scoring."""

    def __init__(self, reasoner: Reasoner | None, scorers: list[Scorer], store: AlertStore,
                 maxsize: int = 16):
        self.reasoner, self.scorers, self.store = reasoner, scorers, store
        self._queue: queue.Queue = queue.Queue(maxsize)
        self._thread = threading.Thread(target=self._run, name="vad-explainer", daemon=True)
        self._thread.start()

    def submit(self, alert: Alert, event: Event, frames: list[Frame]) -> None:
        try:
            self._queue.put_nowait((alert, event, frames))
        except queue.Full:
            log.warning("explanation queue full: alert %s stays unexplained", alert.id)

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                if self._explain(*item):
                    self.store.put(item[0])
            except Exception:  # an explanation failure must never take the pipeline down
                log.exception("explaining alert %s failed", item[0].id)
            finally:
                self._queue.task_done()

    def _explain(self, alert: Alert, event: Event, frames: list[Frame]) -> bool:
        """Fill the alert's explanation fields; True when anything was added."""
        if self.reasoner is not None:
            explanation = self.reasoner.explain(event, frames)
            alert.rule = explanation.rule
            alert.explanation = explanation.reason
            alert.objects = explanation.objects
            alert.motion_description = explanation.motion_description
        descriptions = [d for d in (s.describe(frames) for s in self.scorers) if d]
        if descriptions:
            alert.motion_description = " ".join(descriptions)
        return self.reasoner is not None or bool(descriptions)

    def close(self) -> None:
        self._queue.join()
        self._queue.put(None)
        self._thread.join()
