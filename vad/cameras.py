"""Cameras into one pipeline, all at once: a reader thread per camera feeds one queue that the
caller's thread scores, so a live camera never waits for another. A gap in a camera's frames
ends its open event and restarts its scoring state, and each live camera's status is stored,
with a camera-offline alert while it is offline (docs/cameras.md)."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from streams.sources import Source
from vad.pipeline import Pipeline
from vad.stores.base import AlertStore
from vad.errors import VadError
from vad.types import Alert, CameraStatus, Frame

log = logging.getLogger(__name__)

FRAMES_QUEUED_PER_CAMERA = 32  # decoded frames waiting for the pipeline, per camera
OFFLINE = "camera-offline"  # the kind of the alerts of an outage


class CameraFeeds:
    """Frames of many cameras into one pipeline. Frames whose indices are not consecutive (a
    live camera's gap) never share an event or a scorer's clip: the camera's open event ends
    at the gap and its scoring state starts afresh after it."""

    def __init__(self, pipeline: Pipeline):
        self.pipeline = pipeline
        self._last: dict[str, int] = {}

    def feed(self, frame: Frame) -> list[Alert]:
        """The alerts closed because of this frame (ongoing ones are stored as they go)."""
        alerts = []
        last = self._last.get(frame.camera_id)
        if last is not None and frame.index != last + 1:
            alerts += self.end(frame.camera_id, "idle")
        self._last[frame.camera_id] = frame.index
        return alerts + _closed(self.pipeline.process(frame))

    def end(self, camera_id: str, reason: str = "stream-end") -> list[Alert]:
        """The camera's frames stopped: score the last ones, close its alert, forget it."""
        self._last.pop(camera_id, None)
        alerts = _closed(self.pipeline.finish(camera_id, reason))
        self.pipeline.reset_camera(camera_id)
        return alerts

    def cameras(self) -> list[str]:
        return list(self._last)


def _closed(changes) -> list[Alert]:
    return [change.alert for change in changes if change.kind == "closed"]


class CameraStatusRecorder:
    """Stores each live camera's status as it changes; while a camera is offline, one
    camera-offline alert per outage, updated until frames come back. Called from the
    cameras' reader threads."""

    def __init__(self, store: AlertStore):
        self.store = store
        self.alerts: dict[str, Alert] = {}  # every offline alert raised, by id
        self._outages: dict[str, Alert] = {}  # camera -> the alert of its current outage
        self._lock = threading.Lock()

    def __call__(self, status: CameraStatus) -> None:
        self.store.set_camera_status(status)
        with self._lock:
            alert = self._offline_alert(status)
            if alert is not None:
                self.alerts[alert.id] = alert
        if alert is not None:
            self.store.put(alert)
            self.store.explain(alert)  # its text says how long, and `put` keeps explanations

    def _offline_alert(self, status: CameraStatus) -> Alert | None:
        camera = status.camera_id
        current = self._outages.get(camera)
        if status.state == "offline" and status.down_since is not None:
            first_missing = status.last_frame + 1
            seconds = status.updated_at - status.down_since
            alert = Alert(id=f"{camera}:offline:{first_missing}", camera_id=camera,
                          start_frame=first_missing, end_frame=first_missing,
                          start_time=status.down_since, end_time=status.updated_at,
                          peak_frame=first_missing, peak_score=0.0, mean_score=0.0, kind=OFFLINE,
                          explanation=f"camera offline for {seconds:.0f} s so far "
                                      f"({status.last_error})", lifecycle="ongoing")
            self._outages[camera] = alert
            return alert
        if status.state == "online" and current is not None:
            del self._outages[camera]
            resumed = status.last_frame
            current.end_frame = max(current.start_frame, resumed - 1)
            current.end_time = status.since
            current.lifecycle, current.close_reason = "closed", "end"
            current.explanation = (f"camera offline for {status.since - current.start_time:.0f} "
                                   f"s ({status.last_error}); frames resumed at frame {resumed}")
            return current
        return None


@dataclass
class CameraRun:
    """What `run_cameras` did: the alerts stored, the cameras that failed, and whether it was
    stopped before every camera ended."""

    alerts: list[Alert] = field(default_factory=list)
    errors: dict[str, BaseException] = field(default_factory=dict)
    stopped: bool = False


def run_cameras(sources: Sequence[Source], pipeline: Pipeline, store: AlertStore,
                stop: threading.Event | None = None, progress: bool = True,
                first_bar: int = 0) -> CameraRun:
    """Score every source at once until all have ended, `stop` is set or Ctrl-C; open events
    are closed and stored either way. A camera that fails ends alone: the others go on.
    `first_bar`: the terminal line of the first camera's progress bar (several processes)."""
    from tqdm import tqdm

    stop = stop or threading.Event()
    recorder = CameraStatusRecorder(store)
    frames: queue.Queue = queue.Queue(FRAMES_QUEUED_PER_CAMERA * len(sources))
    for source in sources:
        if source.live:
            source.on_status, source.stop = recorder, stop
    readers = [threading.Thread(target=_read, args=(source, frames, stop), daemon=True,
                                name=f"camera-{source.camera_id}") for source in sources]
    bars = {source.camera_id: tqdm(total=len(source) or None, desc=f"camera {source.camera_id}",
                                   unit="frame", position=first_bar + position, disable=not progress)
            for position, source in enumerate(sources)}
    feeds, run, running = CameraFeeds(pipeline), CameraRun(), len(sources)
    for reader in readers:
        reader.start()
    try:
        while running and not stop.is_set():
            try:
                kind, camera, payload = frames.get(timeout=0.2)
            except queue.Empty:
                continue
            if kind == "frame":
                run.alerts += feeds.feed(payload)
                bars[camera].update()
                continue
            running -= 1
            run.alerts += feeds.end(camera)
            if payload is not None:
                run.errors[camera] = payload
    except KeyboardInterrupt:
        stop.set()
    finally:
        run.stopped = bool(running)
        stop.set()
        for camera in feeds.cameras():
            run.alerts += feeds.end(camera)
        for bar in bars.values():
            bar.close()
    run.alerts += recorder.alerts.values()
    return run


def _read(source: Source, frames: queue.Queue, stop: threading.Event) -> None:
    error = None
    try:
        for frame in source:
            if not _put(frames, ("frame", source.camera_id, frame), stop):
                return
    except Exception as exc:  # the camera ends with its error; the others go on
        error = exc
        if not isinstance(exc, VadError):
            log.exception("camera %s failed", source.camera_id)
    _put(frames, ("end", source.camera_id, error), stop)


def _put(frames: queue.Queue, item: tuple, stop: threading.Event) -> bool:
    """Queue an item unless the run stops first (the pipeline is busy: the reader waits)."""
    while not stop.is_set():
        try:
            frames.put(item, timeout=0.2)
            return True
        except queue.Full:
            continue
    return False
