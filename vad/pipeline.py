"""The live pipeline: frames of any camera in, scored, fused, events out as stored alerts.

Per camera it runs the camera's settings (`VadConfig.camera`: its own section, else the
global one): one scoring session per scorer, the online fusion, event detection, and alerts
with evidence (keyframe, heatmap, boxes, label). An optional reasoner, built by the caller,
explains alerts on its own bounded worker so scoring never waits for it.

Alert lifecycle: an alert is stored `ongoing` as soon as its event lasted `min_duration`
frames, re-stored while it lasts (end, peak, evidence at the peak so far; at most every
`events.update_interval_s` of stream time), explained once `reasoning.explain_after` frames
are in (again at the close if the peak moved), and stored `closed` at the event's end, after
`events.max_duration_s`, after an `events.idle_s` gap in the camera's frames, or at the end
of its stream. Every step is one `AlertChange` passed through `Pipeline._emit`, the one place
that writes alerts to the store and then tells the listeners (`Pipeline(listeners=...)`,
`PipelineListener`): the hook of the event clips and the alert outputs (`alert_listeners`).

A camera's whole state (scoring sessions, normalisers, smoother, open event, evidence, open
alert) is `Pipeline.state(camera)`, a tree for `vad.snapshots.pack`, and comes back with
`Pipeline.restore`: processing then goes on exactly as if it had never stopped.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

from models.base import Scorer, load_scorer
from models.scoring import ScoringSession
from vad.config import PipelineSettings, VadConfig
from vad.errors import VadError
from vad.events import EventDetector
from vad.evidence import encode_heatmap, encode_jpeg
from vad.fusion import OnlineFusion, ScorerSlot
from vad.stores.base import AlertStore
from vad.types import (Alert, Box, Event, Explanation, Frame, FrameResult, Label,
                       ReferenceMatch)

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

    def state(self) -> dict:
        return {"size": self.size, "stride": self.stride, "frames": self.frames,
                "seen": self._seen}

    @classmethod
    def from_state(cls, state: dict) -> _Samples:
        samples = cls(state["size"])
        samples.stride, samples.frames, samples._seen = (state["stride"], list(state["frames"]),
                                                         state["seen"])
        return samples


@dataclass(frozen=True)
class AlertChange:
    """One step of an alert's lifecycle, as stored: `opened` (its event lasted min_duration
    frames; ongoing), `updated` (it goes on), `explained` (the reasoner's explanation came),
    `closed` (`alert.close_reason` says why)."""

    kind: str
    alert: Alert


class PipelineListener(Protocol):
    """What the pipeline tells its listeners, in the thread that caused it: each frame as it
    arrives, before it is scored (`frame`); each alert change once the store has it
    (`changed`; `explained` comes from the reasoner's thread); a camera's state dropped
    (`forget`: its stream ended, its partition moved, it was evicted); the end (`close`, after
    the last explanation). A listener that raises is logged and the pipeline goes on."""

    def frame(self, frame: Frame) -> None: ...

    def changed(self, change: AlertChange) -> None: ...

    def forget(self, camera_id: str) -> None: ...

    def close(self) -> None: ...


class OnChange:
    """A listener of alert changes only: `OnChange(callback)`, called with each change."""

    def __init__(self, callback: Callable[[AlertChange], None]):
        self.callback = callback

    def frame(self, frame: Frame) -> None:
        pass

    def changed(self, change: AlertChange) -> None:
        self.callback(change)

    def forget(self, camera_id: str) -> None:
        pass

    def close(self) -> None:
        pass


def alert_listeners(config: VadConfig, store: AlertStore) -> list[PipelineListener]:
    """The listeners of a deployed pipeline (`vad run`, `vad serve`): the event clips, then the
    configured alert outputs (after the clips: a closed alert's event links its clip)."""
    from vad.clips import EventClips
    from vad.outputs import build_outputs

    def alert_delay(camera_id: str) -> int:
        """Frames at most between an event's first frame and its alert opening: the event
        must last min_duration frames, each scored after up to a batch of frames arrived."""
        settings = config.camera(camera_id)
        return settings.events.min_duration + settings.window.batch

    clips = EventClips(config.clips, store, alert_delay)
    return [clips, build_outputs(config.outputs, config.kafka, store)]


@dataclass
class _Camera:
    settings: PipelineSettings
    slots: list[ScorerSlot]
    sessions: dict[str, ScoringSession]
    fusion: OnlineFusion
    detector: EventDetector
    arrived: deque[Frame] = field(default_factory=deque)
    history_only: dict[str, int] = field(default_factory=dict)  # slot -> frames still to skip
    raw: dict[int, dict[str, float]] = field(default_factory=dict)
    found: dict[int, list[FrameResult]] = field(default_factory=dict)  # heatmaps, boxes, labels
    last_fused: int = -1
    last_timestamp: float | None = None  # of the last frame that arrived
    score_rows: list[tuple[int, float, float]] = field(default_factory=list)
    # Evidence of the open event (candidate or alert):
    peak_frame: Frame | None = None
    # The frame fused just before the peak: with it the reasoner measures speed at the peak.
    before_peak: Frame | None = None
    previous: Frame | None = None
    peak_found: FrameResult | None = None
    label: Label | None = None
    samples: _Samples | None = None
    # The open alert as last stored, when (stream time) and at which peak it was explained.
    alert: Alert | None = None
    written_at: float = 0.0
    explained_peak: int | None = None

    def clear_evidence(self) -> None:
        self.samples, self.peak_frame, self.peak_found = None, None, None
        self.before_peak, self.label = None, None


FrameObserver = Callable[[Frame, FrameResult, float], None]
"""Called with every fused frame, what the scorers found in it and its fused score (writers
of per-frame predictions, e.g. `vad patrol run --out`)."""


class Pipeline:
    def __init__(self, config: VadConfig, store: AlertStore, scorers: ScorerCache,
                 reasoner: Reasoner | None = None, listeners: Iterable[PipelineListener] = (),
                 observer: FrameObserver | None = None):
        self.config, self.store, self.scorers = config, store, scorers
        self.listeners, self.observer = list(listeners), observer
        self._cameras: dict[str, _Camera] = {}
        # Load what the config names now: a bad checkpoint is an error before any frame.
        for settings in config.all_settings():
            scorers.slots(settings)
        self._emit_lock = threading.Lock()  # the explainer thread emits too
        self._explainer = _ExplainWorker(reasoner, self._explained)

    @classmethod
    def from_config(cls, config: VadConfig, store: AlertStore,
                    reasoner: Reasoner | None = None,
                    listeners: Iterable[PipelineListener] = (),
                    observer: FrameObserver | None = None) -> Pipeline:
        """Scorers from their checkpoints, on the configured device."""
        return cls(config, store, ScorerCache(config.device), reasoner, listeners, observer)

    @property
    def explanation_failures(self) -> int:
        return self._explainer.failures

    def cameras(self) -> list[str]:
        return list(self._cameras)

    def process(self, frame: Frame) -> list[AlertChange]:
        """Feed one frame; returns the alert changes it caused (already stored)."""
        cid = frame.camera_id
        camera = self._camera(cid)
        changes = []
        if camera.last_timestamp is not None and \
                frame.timestamp - camera.last_timestamp >= camera.settings.events.idle_s:
            changes += self._finish(camera, cid, "idle")
        self._tell("frame", frame)  # after an idle close: the frame is not of that alert
        camera.last_timestamp = frame.timestamp
        camera.arrived.append(frame)
        for slot in camera.slots:
            self._collect(camera, slot, camera.sessions[slot.key].push(frame))
        return changes + self._fuse_ready(camera, cid)

    def process_all(self, frames: Iterable[Frame]) -> list[Alert]:
        """A whole stream; returns its alerts as closed at the end."""
        changes = [change for frame in frames for change in self.process(frame)]
        changes += self.finish()
        return [change.alert for change in changes if change.kind == "closed"]

    def finish(self, camera_id: str | None = None, reason: str = "stream-end",
               ) -> list[AlertChange]:
        """Score the frames still waiting and close open alerts (`reason`: stream-end, idle,
        restart). The cameras' state stays: they can go on."""
        changes = []
        for cid in [camera_id] if camera_id else list(self._cameras):
            if cid in self._cameras:
                changes += self._finish(self._cameras[cid], cid, reason)
        return changes

    def reset_camera(self, camera_id: str, close_reason: str | None = None,
                     ) -> list[AlertChange]:
        """Forget a camera's state (its partition moved, it was checkpointed and evicted, its
        stream ended); with `close_reason`, its open alert is closed as it was last stored
        (after an error its state cannot be trusted to finish it)."""
        camera = self._cameras.pop(camera_id, None)
        changes = []
        if camera is not None and camera.alert is not None and close_reason is not None:
            changes.append(self._emit("closed", replace(camera.alert, lifecycle="closed",
                                                        close_reason=close_reason)))
        self._tell("forget", camera_id)
        return changes

    def state(self, camera_id: str) -> dict[str, Any] | None:
        """The camera's whole state (for `vad.snapshots.pack`); its pending scores are
        stored first, so a snapshot never runs ahead of the store."""
        camera = self._cameras.get(camera_id)
        if camera is None:
            return None
        self._flush_scores(camera, camera_id)
        explained = (camera.explained_peak if camera.alert is None
                     or not self._explainer.pending(camera.alert.id) else None)
        return {
            "sessions": {key: session.state() for key, session in camera.sessions.items()},
            "fusion": camera.fusion.state(),
            "detector": camera.detector.state(),
            "arrived": list(camera.arrived),
            "history_only": camera.history_only,
            "raw": [[index, scores] for index, scores in camera.raw.items()],
            "found": [[index, [_result_state(f) for f in found]]
                      for index, found in camera.found.items()],
            "last_fused": camera.last_fused,
            "last_timestamp": camera.last_timestamp,
            "peak_frame": camera.peak_frame,
            "before_peak": camera.before_peak,
            "previous": camera.previous,
            "peak_found": _result_state(camera.peak_found) if camera.peak_found else None,
            "label": asdict(camera.label) if camera.label else None,
            "samples": camera.samples.state() if camera.samples else None,
            "alert": _alert_state(camera.alert) if camera.alert else None,
            "written_at": camera.written_at,
            "explained_peak": explained,  # an explanation still running is redone at the close
        }

    def restore(self, camera_id: str, state: dict[str, Any]) -> None:
        """Put back a camera's `state()` (the camera's settings must be the same)."""
        self._cameras.pop(camera_id, None)
        camera = self._camera(camera_id)
        for key, session in camera.sessions.items():
            session.restore(state["sessions"][key])
        camera.fusion.restore(state["fusion"])
        camera.detector.restore(state["detector"])
        camera.arrived = deque(state["arrived"])
        camera.history_only = dict(state["history_only"])
        camera.raw = {index: scores for index, scores in state["raw"]}
        camera.found = {index: [_result(f) for f in found] for index, found in state["found"]}
        camera.last_fused, camera.last_timestamp = state["last_fused"], state["last_timestamp"]
        camera.peak_frame, camera.before_peak = state["peak_frame"], state["before_peak"]
        camera.previous = state["previous"]
        camera.peak_found = _result(state["peak_found"]) if state["peak_found"] else None
        camera.label = Label(**state["label"]) if state["label"] else None
        camera.samples = _Samples.from_state(state["samples"]) if state["samples"] else None
        camera.alert = _alert(state["alert"]) if state["alert"] else None
        camera.written_at, camera.explained_peak = state["written_at"], state["explained_peak"]

    def close(self) -> None:
        """Wait for pending explanations to be stored, then close the listeners."""
        self._explainer.close()
        self._tell("close")

    def _camera(self, camera_id: str) -> _Camera:
        if camera_id not in self._cameras:
            settings = self.config.camera(camera_id)
            slots = self.scorers.slots(settings)
            self._cameras[camera_id] = _Camera(
                settings=settings, slots=slots,
                sessions={s.key: s.scorer.session(camera_id, settings.window.batch)
                          for s in slots},
                fusion=OnlineFusion(slots, settings.postprocess),
                detector=EventDetector(settings.events, camera_id),
                history_only={s.key: s.scorer.input_spec.context for s in slots},
            )
        return self._cameras[camera_id]

    def _finish(self, camera: _Camera, camera_id: str, reason: str) -> list[AlertChange]:
        for slot in camera.slots:
            self._collect(camera, slot, camera.sessions[slot.key].flush())
        changes = self._fuse_ready(camera, camera_id, final=True)
        changes += [self._close(camera, change.event, change.reason)
                    for change in camera.detector.close(reason)]
        camera.clear_evidence()
        self._flush_scores(camera, camera_id)
        return changes

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

    def _fuse_ready(self, camera: _Camera, camera_id: str, final: bool = False,
                    ) -> list[AlertChange]:
        changes = []
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
            changes += self._detect(camera, frame, found, score)
            camera.previous = frame
            if len(camera.score_rows) >= SCORE_FLUSH_ROWS:
                self._flush_scores(camera, camera_id)
        return changes

    def _detect(self, camera: _Camera, frame: Frame, found: FrameResult,
                score: float) -> list[AlertChange]:
        detector = camera.detector
        was_open = detector.open_start is not None
        events = detector.update(frame.index, frame.timestamp, score)
        # The event this frame belongs to: the open one, or one it closed at max duration.
        owner = next((c.event for c in events if c.reason == "max-duration"), None)
        if detector.open_start is not None and not was_open:
            camera.clear_evidence()
            camera.samples = _Samples(self.config.reasoning.keyframes)
        if detector.open_start is not None or owner is not None:
            self._observe(camera, frame, found, score,
                          owner.peak_frame if owner else detector.open_peak)
        changes = []
        for change in events:
            if change.kind == "opened":
                changes.append(self._store(camera, "opened", change.event, frame.timestamp))
            else:
                changes.append(self._close(camera, change.event, change.reason))
                if detector.open_start is None:
                    camera.clear_evidence()
        current = detector.current()
        if not events and current is not None and self._due(camera, current, frame.timestamp):
            changes.append(self._store(camera, "updated", current, frame.timestamp))
        if current is not None and camera.explained_peak is None and \
                detector.open_active_frames >= self.config.reasoning.explain_after:
            self._explain(camera, current)
        return changes

    def _observe(self, camera: _Camera, frame: Frame, found: FrameResult, score: float,
                 peak: int | None) -> None:
        """Gather the open event's evidence from one of its frames."""
        if score >= camera.settings.events.release_threshold:  # dips in a merge gap are not it
            camera.samples.add(frame)
            if found.label and (camera.label is None
                                or found.label.confidence > camera.label.confidence):
                camera.label = found.label
        if peak == frame.index:
            camera.peak_frame, camera.peak_found = frame, found
            camera.before_peak = camera.previous

    def _due(self, camera: _Camera, event: Event, now: float) -> bool:
        """An ongoing alert is re-stored when it changed, at most every update_interval_s."""
        alert = camera.alert
        changed = (event.end_frame, event.peak_frame) != (alert.end_frame, alert.peak_frame)
        return changed and now - camera.written_at >= camera.settings.events.update_interval_s

    def _store(self, camera: _Camera, kind: str, event: Event, now: float) -> AlertChange:
        alert = self._alert(camera, event, None)
        camera.alert, camera.written_at = alert, now
        self._flush_scores(camera, event.camera_id)  # the timeline up to it first
        return self._emit(kind, alert)

    def _close(self, camera: _Camera, event: Event, reason: str) -> AlertChange:
        alert = self._alert(camera, event, reason)
        self._flush_scores(camera, event.camera_id)
        change = self._emit("closed", alert)
        if camera.explained_peak != event.peak_frame:
            self._explain(camera, event, alert)
        camera.alert, camera.explained_peak = None, None
        return change

    def _alert(self, camera: _Camera, event: Event, close_reason: str | None) -> Alert:
        """The alert of an event with the evidence at its peak (encoded once per peak)."""
        if camera.peak_frame is not None and camera.peak_frame.index == event.peak_frame:
            event.keyframe = camera.peak_frame.image
            event.heatmap, event.boxes = camera.peak_found.heatmap, camera.peak_found.boxes
            event.reference = camera.peak_found.reference
        event.label = camera.label
        previous = camera.alert
        if previous is not None and previous.peak_frame == event.peak_frame:
            keyframe, heatmap = previous.keyframe_jpeg, previous.heatmap_png
            reference = previous.reference_jpeg
        else:
            keyframe = encode_jpeg(event.keyframe) if event.keyframe is not None else None
            heatmap = encode_heatmap(event.heatmap) if event.heatmap is not None else None
            image = event.reference.image if event.reference is not None else None
            reference = encode_jpeg(image) if image is not None else None
        return Alert.from_event(event, keyframe_jpeg=keyframe, heatmap_png=heatmap,
                                reference_jpeg=reference, close_reason=close_reason)

    def _explain(self, camera: _Camera, event: Event, alert: Alert | None = None) -> None:
        if not camera.samples:
            return
        alert = alert or camera.alert
        if self._explainer.submit(replace(alert), event, _reasoning_frames(camera),
                                  [slot.scorer for slot in camera.slots]):
            camera.explained_peak = event.peak_frame

    def _explained(self, alert: Alert, explanation: Explanation) -> None:
        alert.explain(explanation)
        self._emit("explained", alert)

    def _emit(self, kind: str, alert: Alert) -> AlertChange:
        """The one place alert changes go out: stored, then told to the listeners."""
        change = AlertChange(kind, alert)
        with self._emit_lock:
            if kind == "explained":
                self.store.explain(alert)
            else:
                self.store.put(alert)
            self._tell("changed", change)
        return change

    def _tell(self, method: str, *args: Any) -> None:
        for listener in self.listeners:
            try:
                getattr(listener, method)(*args)
            except Exception:  # a clip or an output failing must not stop the pipeline
                log.exception("pipeline listener %r failed in %s", listener, method)

    def _flush_scores(self, camera: _Camera, camera_id: str) -> None:
        if camera.score_rows:
            indices, timestamps, scores = zip(*camera.score_rows)
            self.store.record_scores(camera_id, indices, timestamps, scores)
            camera.score_rows.clear()


def _result_state(found: FrameResult) -> dict:
    return {"index": found.index, "score": found.score, "heatmap": found.heatmap,
            "boxes": [asdict(box) for box in found.boxes],
            "label": asdict(found.label) if found.label else None,
            "reference": asdict(found.reference) if found.reference else None}


def _result(state: dict) -> FrameResult:
    reference = state.get("reference")  # absent from checkpoints of older releases
    return FrameResult(state["index"], state["score"], state["heatmap"],
                       tuple(Box(**box) for box in state["boxes"]),
                       Label(**state["label"]) if state["label"] else None,
                       ReferenceMatch(**reference) if reference else None)


def _alert_state(alert: Alert) -> dict:
    return asdict(alert)


def _alert(state: dict) -> Alert:
    return Alert(**{**state, "boxes": tuple(Box(**box) for box in state["boxes"])})


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

    def __init__(self, reasoner: Reasoner | None,
                 explained: Callable[[Alert, Explanation], None], maxsize: int = 16):
        self.reasoner, self.explained = reasoner, explained
        self.failures = 0
        self.failure_reasons: Counter = Counter()
        self._queue: queue.Queue = queue.Queue(maxsize)
        self._pending: Counter = Counter()  # alert id -> explanations queued or running
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="vad-explainer", daemon=True)
        self._thread.start()

    def submit(self, alert: Alert, event: Event, frames: list[Frame],
               scorers: list[Scorer]) -> bool:
        """Queue an explanation; False when the queue is full (it stays unexplained)."""
        with self._lock:
            try:
                self._queue.put_nowait((alert, event, frames, scorers))
            except queue.Full:
                log.warning("explanation queue full: alert %s stays unexplained", alert.id)
                return False
            self._pending[alert.id] += 1
        return True

    def pending(self, alert_id: str) -> bool:
        with self._lock:
            return self._pending[alert_id] > 0

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
                    self.explained(alert, explanation)
            except Exception:
                log.exception("storing the explanation of alert %s failed", alert.id)
            finally:
                with self._lock:
                    self._pending[alert.id] -= 1
                    if not self._pending[alert.id]:
                        del self._pending[alert.id]
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

