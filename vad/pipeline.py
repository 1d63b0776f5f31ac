"""The live pipeline: frames of any camera in, scored, fused, events out as stored alerts.

Per camera it runs the camera's settings (`VadConfig.camera`: its own section, else the
global one): one scoring session per scorer, the online fusion, event detection, and alerts
with evidence (keyframe, heatmap, boxes, label). An optional reasoner, built by the caller,
explains each alert on its own bounded worker so scoring never waits for it.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from models.base import Scorer, load_scorer
from models.scoring import ScoringSession
from vad.config import PipelineSettings, VadConfig
from vad.errors import VadError
from vad.events import EventDetector
from vad.evidence import encode_heatmap, encode_jpeg
from vad.fusion import OnlineFusion, ScorerSlot
from vad.stores.base import AlertStore
from vad.types import Alert, Box, Event, Explanation, Frame, FrameResult, Label

log = logging.getLogger(__name__)

SCORE_FLUSH_ROWS = 64  # score timeline rows buffered before a store write


class Reasoner(Protocol):
    """Explains an event from its frames (see `reasoning.reasoner`)."""

    def explain(self, event: Event, frames: list[Frame]) -> Explanation: ...


class ScorerCache:
    """Loads each distinct configured scorer once (cameras may share or differ)."""

    def __init__(self, device: str):
        self.device = device
        self._loaded: dict[str, Scorer] = {}

    def slots(self, settings: PipelineSettings) -> list[ScorerSlot]:
        slots = []
        for i, entry in enumerate(settings.scorers):
            if entry.checkpoint is None:
                raise VadError(f"scorer {entry.name!r} has no checkpoint: train one with "
                               f"`vad fit NORMAL_VIDEOS... --scorer {entry.name} --out DIR` "
                               "and pass --checkpoint DIR")
            key = entry.model_dump_json(exclude={"weight"})
            if key not in self._loaded:
                scorer = load_scorer(entry.checkpoint, entry.params, self.device)
                if scorer.name != entry.name:
                    raise VadError(f"{entry.checkpoint}: holds a {scorer.name!r} scorer, "
                                   f"not {entry.name!r}")
                self._loaded[key] = scorer
            slots.append(ScorerSlot(f"{entry.name}#{i}", self._loaded[key], entry.weight))
        return slots

    def scorers(self) -> list[Scorer]:
        return list(self._loaded.values())


class _Samples:
    """Up to `size` frames spread evenly over an event of unknown length (stride doubling)."""

    def __init__(self, size: int):
        self.size, self.stride, self.frames, self._seen = size, 1, [], 0

    def add(self, frame: Frame) -> None:
        if self._seen % self.stride == 0:
            self.frames.append(frame)
            if len(self.frames) > self.size:
                self.frames, self.stride = self.frames[::2], self.stride * 2
        self._seen += 1


@dataclass
class _Camera:
    settings: PipelineSettings
    slots: list[ScorerSlot]
    sessions: dict[str, ScoringSession]
    fusion: OnlineFusion
    detector: EventDetector
    history: int
    arrived: deque[Frame] = field(default_factory=deque)
    history_only: dict[str, int] = field(default_factory=dict)  # slot -> frames still to skip
    raw: dict[int, dict[str, float]] = field(default_factory=dict)
    found: dict[int, list[FrameResult]] = field(default_factory=dict)  # heatmaps, boxes, labels
    last_fused: int = -1
    score_rows: list[tuple[int, float, float]] = field(default_factory=list)
    peak_frame: Frame | None = None
    # The frame fused just before the peak: with it the reasoner measures speed at the peak.
    before_peak: Frame | None = None
    previous: Frame | None = None
    peak_found: FrameResult | None = None
    label: Label | None = None
    samples: _Samples | None = None


FrameObserver = Callable[[Frame, FrameResult, float], None]
"""Called with every fused frame, what the scorers found in it and its fused score (writers
of per-frame predictions, e.g. `vad patrol run --out`)."""


class Pipeline:
    def __init__(self, config: VadConfig, store: AlertStore, scorers: ScorerCache,
                 reasoner: Reasoner | None = None, observer: FrameObserver | None = None):
        self.config, self.store, self.scorers = config, store, scorers
        self.observer = observer
        self._cameras: dict[str, _Camera] = {}
        # Load what the config names now: a bad checkpoint is an error before any frame.
        for settings in config.all_settings():
            scorers.slots(settings)
        self._explainer = _ExplainWorker(reasoner, store)

    @classmethod
    def from_config(cls, config: VadConfig, store: AlertStore,
                    reasoner: Reasoner | None = None,
                    observer: FrameObserver | None = None) -> Pipeline:
        """Scorers from their checkpoints, on the configured device."""
        return cls(config, store, ScorerCache(config.device), reasoner, observer)

    @property
    def explanation_failures(self) -> int:
        return self._explainer.failures

    def process(self, frame: Frame) -> list[Alert]:
        """Feed one frame; returns the alerts stored because of it."""
        camera = self._camera(frame.camera_id)
        camera.arrived.append(frame)
        for slot in camera.slots:
            self._collect(camera, slot, camera.sessions[slot.key].push(frame))
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
            for slot in camera.slots:
                self._collect(camera, slot, camera.sessions[slot.key].flush())
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
            settings = self.config.camera(camera_id)
            slots = self.scorers.slots(settings)
            fusion = OnlineFusion(slots, settings.postprocess)
            contexts = {s.key: s.scorer.input_spec.context for s in slots}
            self._cameras[camera_id] = _Camera(
                settings=settings, slots=slots,
                sessions={s.key: s.scorer.session(camera_id, settings.window.batch)
                          for s in slots},
                fusion=fusion,
                detector=EventDetector(settings.events, camera_id),
                history=max(contexts.values()) + fusion.history,
                history_only=contexts,
            )
        return self._cameras[camera_id]

    def _collect(self, camera: _Camera, slot: ScorerSlot, result) -> None:
        if result is None:
            return
        for i in range(len(result.indices)):
            found = result.frame(i)
            camera.raw.setdefault(found.index, {})[slot.key] = found.score
            camera.found.setdefault(found.index, []).append(found)

    def _ready(self, camera: _Camera, index: int) -> bool:
        scored = camera.raw.get(index, {})
        return all(slot.key in scored or camera.history_only[slot.key] > 0
                   for slot in camera.slots)

    def _fuse_ready(self, camera: _Camera, camera_id: str, final: bool = False) -> list[Alert]:
        alerts = []
        while camera.arrived and (final or self._ready(camera, camera.arrived[0].index)):
            frame = camera.arrived.popleft()
            raw = camera.raw.pop(frame.index, {})
            found = _merge_found(camera.found.pop(frame.index, []))
            for slot in camera.slots:
                if slot.key not in raw and camera.history_only[slot.key] > 0:
                    camera.history_only[slot.key] -= 1
            if not raw:
                continue  # history only: no scorer could score this frame yet
            score = camera.fusion(raw)
            if self.observer is not None:
                self.observer(frame, found, score)
            camera.last_fused = frame.index
            camera.score_rows.append((frame.index, frame.timestamp, score))
            alert = self._detect(camera, frame, found, score)
            camera.previous = frame
            if alert is not None:
                alerts.append(alert)
            if len(camera.score_rows) >= SCORE_FLUSH_ROWS:
                self._flush_scores(camera, camera_id)
        return alerts

    def _detect(self, camera: _Camera, frame: Frame, found: FrameResult,
                score: float) -> Alert | None:
        was_open = camera.detector.open_start is not None
        event = camera.detector.update(frame.index, frame.timestamp, score)
        if event is not None:
            return self._raise(camera, event)
        if camera.detector.open_start is None:
            return None
        if not was_open:
            camera.samples = _Samples(self.config.reasoning.keyframes)
            camera.peak_frame, camera.peak_found, camera.label = None, None, None
        events = camera.settings.events
        if score >= events.release_threshold:  # dips in a merge gap are not the event
            camera.samples.add(frame)
            if found.label and (camera.label is None
                                or found.label.confidence > camera.label.confidence):
                camera.label = found.label
        if camera.detector.open_peak == frame.index:
            camera.peak_frame, camera.peak_found = frame, found
            camera.before_peak = camera.previous
        return None

    def _raise(self, camera: _Camera, event: Event) -> Alert:
        if camera.peak_frame is not None:
            event.keyframe = camera.peak_frame.image
            event.heatmap, event.boxes = camera.peak_found.heatmap, camera.peak_found.boxes
            event.reference = camera.peak_found.reference
        event.label = camera.label
        reference = event.reference.image if event.reference is not None else None
        alert = Alert.from_event(
            event,
            keyframe_jpeg=encode_jpeg(event.keyframe) if event.keyframe is not None else None,
            heatmap_png=encode_heatmap(event.heatmap) if event.heatmap is not None else None,
            reference_jpeg=encode_jpeg(reference) if reference is not None else None)
        self._flush_scores(camera, event.camera_id)
        self.store.put(alert)
        if camera.samples:
            self._explainer.submit(alert, event, _reasoning_frames(camera),
                                   [slot.scorer for slot in camera.slots])
        camera.samples, camera.peak_frame, camera.peak_found = None, None, None
        camera.before_peak, camera.label = None, None
        return alert

    def _flush_scores(self, camera: _Camera, camera_id: str) -> None:
        if camera.score_rows:
            indices, timestamps, scores = zip(*camera.score_rows)
            self.store.record_scores(camera_id, indices, timestamps, scores)
            camera.score_rows.clear()


def _merge_found(found: list[FrameResult]) -> FrameResult:
    """One frame's findings across scorers: the first heatmap, every box, the most confident
    label, the first reference match."""
    if not found:
        return FrameResult(-1, 0.0)
    heatmap = next((f.heatmap for f in found if f.heatmap is not None), None)
    boxes: tuple[Box, ...] = sum((f.boxes for f in found), ())
    labels = [f.label for f in found if f.label is not None]
    label = max(labels, key=lambda lb: lb.confidence) if labels else None
    reference = next((f.reference for f in found if f.reference is not None), None)
    return FrameResult(found[0].index, found[0].score, heatmap, boxes, label, reference)


def _reasoning_frames(camera: _Camera) -> list[Frame]:
    """Frames spread over the event plus the pair at its peak, in order."""
    frames = camera.samples.frames + [camera.before_peak, camera.peak_frame]
    return sorted({f.index: f for f in frames if f is not None}.values(), key=lambda f: f.index)


class _ExplainWorker:
    """Explains alerts on a background thread through a bounded queue: the reasoner's rule and
    reason, and the scorers' own descriptions of the motion (the motion scorer says what moves
    unusually). When the queue is full the alert keeps no explanation rather than holding up
    scoring; when explaining fails, the alert says so and the failure is counted."""

    def __init__(self, reasoner: Reasoner | None, store: AlertStore, maxsize: int = 16):
        self.reasoner, self.store = reasoner, store
        self.failures = 0
        self.failure_reasons: Counter = Counter()
        self._queue: queue.Queue = queue.Queue(maxsize)
        self._thread = threading.Thread(target=self._run, name="vad-explainer", daemon=True)
        self._thread.start()

    def submit(self, alert: Alert, event: Event, frames: list[Frame],
               scorers: list[Scorer]) -> None:
        try:
            self._queue.put_nowait((alert, event, frames, scorers))
        except queue.Full:
            log.warning("explanation queue full: alert %s stays unexplained", alert.id)

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            alert = item[0]
            try:
                explanation = self._explain(*item)
            except Exception as exc:  # an explanation failure must never take the pipeline down
                log.exception("explaining alert %s failed", alert.id)
                self.failures += 1
                self.failure_reasons[type(exc).__name__] += 1
                explanation = Explanation(False, reason=f"explanation failed: {exc}")
            try:
                if explanation is not None:
                    alert.explain(explanation)
                    self.store.put(alert)
            except Exception:
                log.exception("storing the explanation of alert %s failed", alert.id)
            finally:
                self._queue.task_done()

    def _explain(self, alert: Alert, event: Event, frames: list[Frame],
                 scorers: list[Scorer]) -> Explanation | None:
        """The reasoner's explanation, its motion text replaced by the scorers' when they
        have one; None when there is nothing to say."""
        explanation = self.reasoner.explain(event, frames) if self.reasoner else None
        described = " ".join(d for d in (s.describe(frames) for s in scorers) if d)
        if explanation is None:
            return Explanation(True, motion_description=described) if described else None
        if described:
            explanation = Explanation(explanation.verdict, explanation.rule, explanation.reason,
                                      explanation.objects, described)
        return explanation

    def close(self) -> None:
        self._queue.join()
        self._queue.put(None)
        self._thread.join()

