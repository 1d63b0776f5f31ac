"""Event clips: each alert keeps a short H.264 MP4 of its event, pre-roll included.

Per camera, a `ClipRecorder` keeps the most recent frames (scaled to `clips.max_width`): the
pre-roll, plus the frames scored while the event was being recognised (`lookback_frames`: an
alert opens some frames after its event started). When an alert opens, a clip starts from
`clips.pre_roll_s` before the event's first frame and every frame that arrives is encoded at
once (PyAV, libx264, presentation times from the frames' timestamps, so dropped frames and
gaps keep their real timing); when the alert closes the clip is finished. A clip stops
growing at `clips.max_seconds`; the encoder's bit rate is capped so that it stays under
`clips.max_mb`, and one that is larger all the same is not kept. Memory per camera: the
buffer of scaled frames, and one encoder per open alert."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from collections import deque
from collections.abc import Callable
from fractions import Fraction

import cv2
import numpy as np

from vad.config.evidence import ClipConfig
from vad.errors import VadError
from vad.types import ClipInfo, EventClip, Frame

log = logging.getLogger(__name__)

TIME_BASE = Fraction(1, 1000)  # presentation times in milliseconds
MAX_BUFFER_FRAMES = 4000  # a bound whatever the timestamps say


def scaled(image: np.ndarray, max_width: int) -> np.ndarray:
    """The frame at most `max_width` wide, with even sides (yuv420p needs them)."""
    height, width = image.shape[:2]
    if width > max_width:
        height, width = max(2, round(height * max_width / width)), max_width
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(image[: height - height % 2, : width - width % 2])


class _ClipEncoder:
    """One clip being written: frames in, H.264 MP4 bytes out."""

    def __init__(self, alert_id: str, camera_id: str, config: ClipConfig):
        import av

        self.alert_id, self.camera_id, self.config = alert_id, camera_id, config
        handle, self.path = tempfile.mkstemp(prefix="vad-clip-", suffix=".mp4")
        os.close(handle)
        # faststart: the index first, so that a browser plays the clip before it has it all.
        self.container = av.open(self.path, "w", options={"movflags": "+faststart"})
        self.stream = None
        self.first_time: float | None = None
        self.last_pts = -1
        self.first_frame = self.last_frame = -1
        self.frames = 0
        self.full = False
        self.late = False  # started after its alert opened (see ClipRecorder.start)

    def add(self, frame: Frame, image: np.ndarray) -> None:
        import av

        if self.full or frame.index <= self.last_frame:
            return
        if self.first_time is None:
            self.first_time, self.first_frame = frame.timestamp, frame.index
            self.stream = self._open_stream(image.shape[:2])
        elapsed = frame.timestamp - self.first_time
        if elapsed > self.config.max_seconds:
            self.full = True
            return
        if image.shape[:2] != (self.stream.height, self.stream.width):
            image = cv2.resize(image, (self.stream.width, self.stream.height))
        video_frame = av.VideoFrame.from_ndarray(image, format="gray" if image.ndim == 2
                                                 else "bgr24")
        self.last_pts = max(self.last_pts + 1, round(elapsed / TIME_BASE))
        video_frame.pts, video_frame.time_base = self.last_pts, TIME_BASE
        self.container.mux(self.stream.encode(video_frame))
        self.last_frame = frame.index
        self.frames += 1

    def _open_stream(self, size: tuple[int, int]):
        config = self.config
        stream = self.container.add_stream("libx264", rate=25)
        stream.height, stream.width = size
        stream.pix_fmt = "yuv420p"
        stream.time_base = stream.codec_context.time_base = TIME_BASE
        # The bit rate that fills max_mb over max_seconds, with headroom for the container.
        kbps = max(50, int(config.max_mb * 8 * 1024 * 0.9 / config.max_seconds))
        stream.options = {"crf": str(config.crf), "preset": "veryfast",
                          "maxrate": f"{kbps}k", "bufsize": f"{2 * kbps}k"}
        # One thread per clip: cameras already keep every core busy, and x264's own pool
        # (1.5 threads per core for each open clip) cost a fifth more CPU per frame.
        stream.codec_context.thread_count = 1
        return stream

    def finish(self) -> EventClip | None:
        try:
            if self.stream is None:
                self.container.close()
                return None
            self.container.mux(self.stream.encode(None))
            self.container.close()
            with open(self.path, "rb") as handle:
                data = handle.read()
        finally:
            os.unlink(self.path)
        duration = self.last_pts * float(TIME_BASE)
        if len(data) > self.config.max_mb * 2**20:
            log.warning("clip of alert %s is %.1f MB, over clips.max_mb: not kept", self.alert_id,
                        len(data) / 2**20)
            return None
        info = ClipInfo(self.alert_id, self.camera_id, self.first_frame, self.last_frame,
                        self.frames, round(duration, 3), len(data),
                        hashlib.sha256(data).hexdigest(), time.time())
        return EventClip(info, data)

    def abandon(self) -> None:
        try:
            self.container.close()
        except Exception:  # noqa: BLE001 - the file goes anyway
            pass
        if os.path.exists(self.path):
            os.unlink(self.path)


class ClipRecorder:
    """One camera's pre-roll buffer and the clips of its open alerts."""

    def __init__(self, camera_id: str, config: ClipConfig, lookback_frames: int = 0):
        self.camera_id, self.config, self.lookback_frames = camera_id, config, lookback_frames
        self._buffer: deque[tuple[Frame, np.ndarray]] = deque()
        self._open: dict[str, _ClipEncoder] = {}

    def push(self, frame: Frame) -> None:
        """Every frame of the camera, as it arrives."""
        image = scaled(frame.image, self.config.max_width)
        self._buffer.append((frame, image))
        self._evict()
        for encoder in self._open.values():
            encoder.add(frame, image)

    def _evict(self) -> None:
        """Keep `lookback_frames` frames, and `pre_roll_s` of frames before the oldest of
        those: where a clip that opens now may have to start."""
        buffer, keep = self._buffer, self.lookback_frames + 1
        while len(buffer) > MAX_BUFFER_FRAMES or (
                len(buffer) > keep + 1 and buffer[-keep][0].timestamp - buffer[1][0].timestamp
                >= self.config.pre_roll_s):
            buffer.popleft()

    def start(self, alert_id: str, start_frame: int, late: bool = False) -> None:
        """An alert opened on this camera: its clip starts with the pre-roll before
        `start_frame` (the event's first frame) from the buffer. `late`: it opened before
        this recorder knew of it (the clip starts where the buffer does)."""
        if alert_id in self._open:
            return
        encoder = _ClipEncoder(alert_id, self.camera_id, self.config)
        encoder.late = late
        start = next((f.timestamp for f, _ in self._buffer if f.index >= start_frame), None)
        for frame, image in self._buffer:
            if start is None or frame.timestamp >= start - self.config.pre_roll_s:
                encoder.add(frame, image)
        self._open[alert_id] = encoder

    def recording(self, alert_id: str) -> bool:
        return alert_id in self._open

    def started_late(self, alert_id: str) -> bool:
        return alert_id in self._open and self._open[alert_id].late

    def finish(self, alert_id: str) -> EventClip | None:
        """The alert closed: its clip (None when it has none, or it came out too large)."""
        encoder = self._open.pop(alert_id, None)
        if encoder is None:
            return None
        try:
            return encoder.finish()
        except Exception:  # noqa: BLE001 - a failed clip must not lose the alert
            log.exception("clip of alert %s could not be finished", alert_id)
            encoder.abandon()
            return None

    def close(self) -> None:
        """Drop unfinished clips (their alerts did not close)."""
        for encoder in self._open.values():
            encoder.abandon()
        self._open.clear()
        self._buffer.clear()


class EventClips:
    """The pipeline's clips, a `vad.pipeline.PipelineListener`: every camera's recorder, fed
    each arriving frame (`frame`); a clip starts when an alert opens and is stored when it
    closes (`changed`). `lookback_frames(camera_id)` says how many frames pass at most between
    an event's start and its alert opening on that camera.

    An alert that goes on after a restart (a worker restored the camera from a checkpoint: its
    `opened` was told to another process) gets a late clip, from the first of its frames this
    process saw; a late clip never replaces one already stored, so a replayed close does not
    shorten the clip of the process that saw the whole event."""

    def __init__(self, config: ClipConfig, store, lookback_frames: Callable[[str], int]):
        self.config, self.store, self.lookback_frames = config, store, lookback_frames
        self._recorders: dict[str, ClipRecorder] = {}

    def frame(self, frame: Frame) -> None:
        if self.config.enabled:
            self._recorder(frame.camera_id).push(frame)

    def changed(self, change) -> None:
        if not self.config.enabled or change.kind not in ("opened", "updated", "closed"):
            return
        alert = change.alert
        recorder = self._recorder(alert.camera_id)
        if not recorder.recording(alert.id):
            recorder.start(alert.id, alert.start_frame, late=change.kind != "opened")
        if change.kind == "closed":
            late = recorder.started_late(alert.id)
            clip = recorder.finish(alert.id)
            if clip is not None and not (late and self._has_clip(alert.id)):
                self.store.put_clip(clip)

    def _has_clip(self, alert_id: str) -> bool:
        try:
            return self.store.clip_info(alert_id) is not None
        except VadError as exc:  # unknown: a late clip must not risk replacing a whole one
            log.warning("late clip of alert %s not stored: %s", alert_id, exc)
            return True

    def _recorder(self, camera_id: str) -> ClipRecorder:
        if camera_id not in self._recorders:
            self._recorders[camera_id] = ClipRecorder(camera_id, self.config,
                                                      self.lookback_frames(camera_id))
        return self._recorders[camera_id]

    def forget(self, camera_id: str) -> None:
        """The camera left this pipeline: its buffer and unfinished clips go."""
        recorder = self._recorders.pop(camera_id, None)
        if recorder is not None:
            recorder.close()

    def close(self) -> None:
        for camera_id in list(self._recorders):
            self.forget(camera_id)
