"""Frame sources: a video file, a folder of frames, or a live RTSP/HTTP/RTMP stream that
survives drops and stalls (docs/cameras.md).

Sequential decoding goes through PyAV so that a damaged packet costs only its own frames;
`read_frames` uses decord for random access to frames of a file.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import urlparse

import cv2
import numpy as np

from streams.live import Backoff, FrameRateLimiter, StatusCallback, StatusTracker
from vad.config.sources import LiveSourceConfig
from vad.errors import SourceError
from vad.types import Frame, Gap
from vad.urls import redacted

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}
STREAM_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://", "tcp://")


class Source(ABC):
    """An ordered stream of frames of one camera."""

    camera_id: str
    location: str
    live = False  # a camera stream: frames arrive in real time and never end on their own

    @abstractmethod
    def __iter__(self) -> Iterator[Frame]: ...

    def __len__(self) -> int:
        """Number of frames when known in advance (for progress bars), else 0."""
        return 0


def _av_frames(location: str, camera_id: str) -> Iterator[Frame]:
    """The frames of a video file, keeping those around a damaged packet."""
    import av

    try:
        container = av.open(location, timeout=10.0)
    except (av.error.FFmpegError, OSError) as exc:
        raise SourceError(location, f"cannot open ({_av_reason(exc)})") from None
    with container:
        if not container.streams.video:
            raise SourceError(location, "no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        fps = float(stream.average_rate or 0) or 25.0
        index = 0
        packets = container.demux(stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.error.FFmpegError as exc:
                log.warning("%s: stopped after %d frames: %s", location, index, _av_reason(exc))
                break
            try:
                decoded = packet.decode()
            except av.error.FFmpegError as exc:
                log.warning("%s: skipped a damaged packet after frame %d: %s",
                            location, index, _av_reason(exc))
                continue
            for frame in decoded:
                timestamp = float(frame.time) if frame.time is not None else index / fps
                yield Frame(camera_id, index, timestamp, _to_bgr(frame))
                index += 1
        if index == 0:
            raise SourceError(location, "no frame could be decoded")


def _to_bgr(frame) -> np.ndarray:
    # OpenCV converts I420 several times faster than libswscale's bgr24 path.
    if frame.format.name == "yuv420p" and frame.width % 2 == 0 and frame.height % 2 == 0:
        return cv2.cvtColor(frame.to_ndarray(), cv2.COLOR_YUV2BGR_I420)
    return frame.to_ndarray(format="bgr24")


def _av_reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


class VideoFileSource(Source):
    def __init__(self, path: str | Path, camera_id: str | None = None):
        self.path = Path(path)
        self.location = str(self.path)
        self.camera_id = camera_id or self.path.stem
        if not self.path.is_file():
            raise SourceError(self.location, "no such file")
        if self.path.stat().st_size == 0:
            raise SourceError(self.location, "empty file")
        self._length = _probe_length(self.path)

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[Frame]:
        return _av_frames(self.location, self.camera_id)


def _probe_length(path: Path) -> int:
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise SourceError(str(path), "no video stream")
            return int(container.streams.video[0].frames or 0)
    except av.error.FFmpegError as exc:
        raise SourceError(str(path), f"not a readable video ({_av_reason(exc)})") from None


class FolderSource(Source):
    """A folder of still images in natural sort order (UCSD's 001.tif, 002.tif, ...)."""

    def __init__(self, path: str | Path, camera_id: str | None = None, fps: float = 10.0):
        self.path = Path(path)
        self.location = str(self.path)
        self.camera_id = camera_id or self.path.name
        self.fps = fps
        if not self.path.is_dir():
            raise SourceError(self.location, "no such folder")
        self.files = sorted((p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES),
                            key=natural_key)
        if not self.files:
            raise SourceError(self.location, "no image files (png, jpg, tif, bmp)")

    def __len__(self) -> int:
        return len(self.files)

    def __iter__(self) -> Iterator[Frame]:
        for index, file in enumerate(self.files):
            image = cv2.imread(str(file), cv2.IMREAD_COLOR)
            if image is None:
                log.warning("%s: skipped unreadable image", file)
                continue
            yield Frame(self.camera_id, index, index / self.fps, image)


def natural_key(path: Path) -> list[object]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


class StreamSource(Source):
    """A live network stream (RTSP, RTSPS, HTTP/MJPEG, RTMP ...) decoded by PyAV, read for as
    long as it is iterated: it is reopened whenever it fails to open, breaks, ends or stalls,
    after an exponential backoff with jitter. Frame indices keep increasing across reopenings
    and jump over a gap by the frames it missed; the camera's status is reported to
    `on_status` at every change. Setting `stop` ends the iteration between frames."""

    live = True

    def __init__(self, url: str, camera_id: str | None = None,
                 settings: LiveSourceConfig | None = None,
                 on_status: StatusCallback | None = None, stop: threading.Event | None = None):
        self.url = url
        self.location = redacted(url)
        self.camera_id = camera_id or _camera_id_of(url)
        self.settings = settings or LiveSourceConfig()
        self.on_status = on_status
        self.stop = stop or threading.Event()

    def __iter__(self) -> Iterator[Frame]:
        return _LiveReader(self).frames()


def _camera_id_of(url: str) -> str:
    """host_port_path of a URL, without its credentials."""
    parsed = urlparse(url)
    place = parsed.netloc.rsplit("@", 1)[-1] + parsed.path
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", place).strip("_")[:64] or "camera"


_AVFMT_NOTIMESTAMPS = 0x80  # libavformat: the format carries no timestamps


class _Failure(Exception):
    """A connection that failed; `stalled` when the stream was silent rather than refused."""

    def __init__(self, reason: str, stalled: bool = False):
        super().__init__(reason)
        self.stalled = stalled


class _LiveReader:
    """One iteration of a StreamSource: its connections, indices, timestamps and status."""

    def __init__(self, source: StreamSource):
        self.source, self.settings = source, source.settings
        self.tracker = StatusTracker(source.camera_id, source.location, self.settings,
                                     source.on_status)
        self.backoff = Backoff(self.settings)
        self.limiter = FrameRateLimiter(self.settings.detect_fps)
        self.next_index = 0
        self.last_timestamp: float | None = None
        self.interval: float | None = None  # seconds between delivered frames

    def frames(self) -> Iterator[Frame]:
        stop = self.source.stop
        while not stop.is_set():
            try:
                yield from self._connection()
                failure = _Failure("the stream ended")
            except _Failure as exc:
                failure = exc
            if stop.is_set():
                return
            self.tracker.failed(str(failure), failure.stalled)
            self._wait(self.backoff.next_delay())

    def _wait(self, delay: float) -> None:
        """Sleep before the next attempt, turning offline on time; give up when configured."""
        give_up = self.settings.give_up_after_s
        deadline = time.monotonic() + delay
        while (remaining := deadline - time.monotonic()) > 0:
            slice_ = min(remaining, self.tracker.offline_in() or remaining)
            if give_up is not None:
                slice_ = min(slice_, max(0.0, give_up - self.tracker.down_for()))
            if self.source.stop.wait(slice_):
                return
            self.tracker.check_offline()
            if give_up is not None and self.tracker.down_for() >= give_up:
                reason = (f"no frames for {self.tracker.down_for():.1f} s, gave up "
                          f"(last error: {self.tracker.status.last_error})")
                self.tracker.gave_up()
                raise SourceError(self.source.location, reason)

    def _connection(self) -> Iterator[Frame]:
        import av

        s = self.settings
        options = {"analyzeduration": str(int(s.probe_s * 1e6))}
        if self.source.url.startswith(("rtsp://", "rtsps://")):
            options["rtsp_transport"] = s.transport
        started = time.monotonic()
        try:
            container = av.open(self.source.url, options=options,
                                timeout=(s.open_timeout_s, s.stall_timeout_s))
        except (av.error.FFmpegError, OSError) as exc:
            # PyAV's timeout interrupts the open; ffmpeg then names whatever it was doing.
            if isinstance(exc, av.error.ExitError) or time.monotonic() - started >= s.open_timeout_s:
                raise _Failure(f"no answer within {s.open_timeout_s:g} s", stalled=True) from None
            raise _Failure(f"cannot open ({_av_reason(exc)})") from None
        with container:
            if not container.streams.video:
                raise _Failure("no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            if self.interval is None:
                self.interval = 1 / (s.detect_fps or float(stream.average_rate or 0) or 25.0)
            # Formats without timestamps (MJPEG over HTTP) get made-up ones: the wall clock
            # is truer.
            clock = "wall" if container.format.flags & _AVFMT_NOTIMESTAMPS else s.timestamps
            self.tracker.opened()
            anchor: list[float | None] = [None, None]  # wall time of pts 0, the last pts
            waiting_since = time.monotonic()
            for packet in _packets(container, stream, s.stall_timeout_s):
                try:
                    decoded = packet.decode()
                except av.error.FFmpegError as exc:
                    log.warning("%s: skipped a damaged packet: %s", self.source.location,
                                _av_reason(exc))
                    continue
                for av_frame in decoded:
                    waiting_since = time.monotonic()
                    timestamp = self._timestamp(av_frame.time, anchor, clock)
                    if self.limiter.keep(timestamp):
                        yield self._deliver(av_frame, timestamp)
                        self.backoff.reset()
                        waiting_since = time.monotonic()  # the consumer's time is not a stall
                if time.monotonic() - waiting_since > s.stall_timeout_s:
                    raise _Failure(f"no frame for {s.stall_timeout_s:g} s", stalled=True)

    def _timestamp(self, pts: float | None, anchor: list[float | None], clock: str) -> float:
        """The frame's time: the stream clock, anchored to the wall clock at the connection's
        first frame (and again when the clock restarts or leaps), or the wall clock."""
        now = time.time()
        if clock == "wall" or pts is None:
            timestamp = now
        else:
            zero, last_pts = anchor
            if zero is None or not 0 <= pts - last_pts <= self.settings.stall_timeout_s:
                zero = now - pts
            anchor[:] = [zero, pts]
            timestamp = zero + pts
        if self.last_timestamp is not None and timestamp <= self.last_timestamp:
            timestamp = self.last_timestamp + 1e-3  # times only increase, across reconnections
        return timestamp

    def _deliver(self, av_frame, timestamp: float) -> Frame:
        gap = None
        if self.last_timestamp is not None:
            elapsed = timestamp - self.last_timestamp
            if self.tracker.down:  # at least one index is skipped: a gap always shows
                missed = max(1, round(elapsed / self.interval) - 1)
                gap = Gap(self.next_index - 1, self.next_index + missed, self.last_timestamp,
                          timestamp)
                self.next_index += missed
            else:  # the delivered frame interval, smoothed: it sizes the next gap
                self.interval += 0.1 * (elapsed - self.interval)
        frame = Frame(self.source.camera_id, self.next_index, timestamp, _to_bgr(av_frame))
        self.tracker.frame(self.next_index, timestamp, gap)
        self.next_index += 1
        self.last_timestamp = timestamp
        return frame


def _packets(container, stream, stall_timeout_s: float) -> Iterator:
    """The stream's packets; a read timeout is a stall, any other read error a failure."""
    import av

    packets = container.demux(stream)
    while True:
        try:
            yield next(packets)
        except StopIteration:
            return
        except av.error.ExitError:
            raise _Failure(f"no frame for {stall_timeout_s:g} s", stalled=True) from None
        except (av.error.FFmpegError, OSError) as exc:
            raise _Failure(f"read failed ({_av_reason(exc)})") from None


def open_source(spec: str | Path, camera_id: str | None = None,
                live: LiveSourceConfig | None = None) -> Source:
    """Choose the source for a path or URL, with a clear error when none fits; `live` is how
    a stream URL is read."""
    text = str(spec)
    if text.startswith(STREAM_SCHEMES):
        return StreamSource(text, camera_id, live)
    path = Path(text)
    if path.is_dir():
        return FolderSource(path, camera_id)
    if not path.exists():
        raise SourceError(text, "no such file or folder")
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise SourceError(text, f"unsupported file type {path.suffix or '(none)'!r}; "
                                f"expected a video ({', '.join(sorted(VIDEO_SUFFIXES))}), "
                                "a folder of frames or a stream URL")
    return VideoFileSource(path, camera_id)


def read_frames(path: str | Path, indices: Sequence[int]) -> np.ndarray:
    """Random access to frames of a video file (N, H, W, 3) BGR uint8, via decord."""
    import decord

    try:
        reader = decord.VideoReader(str(path))
    except decord.DECORDError as exc:
        raise SourceError(str(path), f"cannot open for random access ({exc})") from None
    rgb = reader.get_batch(list(indices)).asnumpy()
    return rgb[..., ::-1].copy()

