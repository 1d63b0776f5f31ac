"""Frame sources: a video file, a folder of frames, or an RTSP/HTTP stream.

Sequential decoding goes through PyAV so that a damaged packet costs only its own frames;
`read_frames` uses decord for random access to frames of a file.
"""

from __future__ import annotations

import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

from vad.errors import SourceError
from vad.types import Frame

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}
STREAM_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://", "tcp://")


class Source(ABC):
    """An ordered stream of frames of one camera."""

    camera_id: str
    location: str

    @abstractmethod
    def __iter__(self) -> Iterator[Frame]: ...

    def __len__(self) -> int:
        """Number of frames when known in advance (for progress bars), else 0."""
        return 0


def _av_frames(location: str, camera_id: str, options: dict[str, str] | None = None,
               ) -> Iterator[Frame]:
    import av

    try:
        container = av.open(location, options=options or {}, timeout=10.0)
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
    """A live network stream (RTSP, HTTP, RTMP ...) decoded by PyAV."""

    def __init__(self, url: str, camera_id: str | None = None):
        self.location = url
        self.camera_id = camera_id or re.sub(r"[^A-Za-z0-9_.-]+", "_", url.split("://", 1)[1])

    def __iter__(self) -> Iterator[Frame]:
        options = {"rtsp_transport": "tcp"} if self.location.startswith("rtsp") else {}
        return _av_frames(self.location, self.camera_id, options)


def open_source(spec: str | Path, camera_id: str | None = None) -> Source:
    """Choose the source for a path or URL, with a clear error when none fits."""
    text = str(spec)
    if text.startswith(STREAM_SCHEMES):
        return StreamSource(text, camera_id)
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

