"""The Kafka message format of camera frames, version 1 (documented in docs/kafka.md).

A frame message: key = camera id (UTF-8), value = one JPEG image, headers (ASCII/UTF-8 text):
`vad.schema` (format version), `vad.kind` (`frame` or `end`), `vad.camera`, `vad.frame`
(0-based frame index), `vad.timestamp` (capture time, seconds since the epoch).
An `end` message (empty value) says that a camera's stream is over: its open events close.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from vad.config.sections import KafkaConfig, PublishConfig
from vad.errors import VadError
from vad.evidence import decode_image, encode_jpeg
from vad.types import Frame

SCHEMA_VERSION = 1
SUPPORTED_VERSIONS = frozenset({SCHEMA_VERSION})
# The config's defaults (`publish.jpeg_quality`, `kafka.max_message_bytes`).
DEFAULT_JPEG_QUALITY = PublishConfig.model_fields["jpeg_quality"].default
DEFAULT_MAX_MESSAGE_BYTES = KafkaConfig.model_fields["max_message_bytes"].default
DEFAULT_MAX_PIXELS = KafkaConfig.model_fields["max_frame_pixels"].default
# Limits of format version 1: headers are short ASCII numbers and a bounded camera id.
MAX_CAMERA_ID_BYTES = 256
MAX_FRAME_INDEX = 2**53 - 1  # exact as a float and in JSON
MAX_TIMESTAMP = 1e11  # seconds since the epoch (year 5138)
_UNSIGNED = re.compile(r"[0-9]{1,16}")
_UNSIGNED_FLOAT = re.compile(r"[0-9]{1,16}(\.[0-9]{1,20})?([eE][-+]?[0-9]{1,3})?")

H_SCHEMA, H_KIND, H_CAMERA, H_FRAME, H_TIMESTAMP = (
    "vad.schema", "vad.kind", "vad.camera", "vad.frame", "vad.timestamp")
KIND_FRAME, KIND_END = "frame", "end"
# Headers a dead-lettered message gains.
H_ERROR, H_ERROR_DETAIL, H_ORIGIN = "vad.error", "vad.error.detail", "vad.origin"

Headers = list[tuple[str, bytes]]


class MessageError(VadError):
    """A message that cannot become a frame. `reason` is a short stable code."""

    REASONS = ("missing-header", "bad-header", "unknown-version", "oversize", "undecodable-image",
               "oversize-image", "camera-mismatch")

    def __init__(self, reason: str, detail: str):
        assert reason in self.REASONS, reason
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class EndOfStream:
    """A camera announced the end of its stream after `frames` frames."""

    camera_id: str
    frames: int
    timestamp: float


def encode_frame(frame: Frame, quality: int = DEFAULT_JPEG_QUALITY,
                 max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> tuple[bytes, bytes, Headers]:
    """(key, value, headers) of a frame message. A grey image in three equal channels (what
    video decoders give for grey footage) goes as a one-channel JPEG: a third of the bytes
    and of the decoding time, the same pixels."""
    try:
        value = encode_jpeg(_one_channel_if_grey(frame.image), quality)
    except ValueError:
        raise VadError(f"{frame.camera_id} frame {frame.index}: JPEG encoding failed") from None
    if len(value) > max_bytes:
        raise VadError(f"{frame.camera_id} frame {frame.index}: {len(value)} bytes of JPEG exceed "
                       f"the {max_bytes}-byte message limit; lower the JPEG quality or the size")
    return _key(frame.camera_id), value, _headers(KIND_FRAME, frame.camera_id, frame.index,
                                                  frame.timestamp)


def _one_channel_if_grey(image: np.ndarray) -> np.ndarray:
    if image.ndim == 3 and image.shape[2] == 3 and np.array_equal(image[..., 0], image[..., 1]) \
            and np.array_equal(image[..., 0], image[..., 2]):
        return image[..., 0]
    return image


def encode_end(end: EndOfStream) -> tuple[bytes, bytes, Headers]:
    return _key(end.camera_id), b"", _headers(KIND_END, end.camera_id, end.frames, end.timestamp)


def _key(camera_id: str) -> bytes:
    return camera_id.encode("utf-8")


def _headers(kind: str, camera_id: str, index: int, timestamp: float) -> Headers:
    return [(H_SCHEMA, str(SCHEMA_VERSION).encode()), (H_KIND, kind.encode()),
            (H_CAMERA, camera_id.encode("utf-8")), (H_FRAME, str(int(index)).encode()),
            (H_TIMESTAMP, repr(float(timestamp)).encode())]


def decode_message(key: bytes | None, value: bytes | None, headers: Headers | None,
                   max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                   max_pixels: int = DEFAULT_MAX_PIXELS) -> Frame | EndOfStream:
    """The frame (or end of stream) of a message; raises `MessageError`, never anything else."""
    size = len(value or b"")
    if size > max_bytes:
        raise MessageError("oversize", f"{size} bytes exceed the {max_bytes}-byte limit")
    fields = _header_map(headers or [])
    version = _text(fields, H_SCHEMA)
    if not _UNSIGNED.fullmatch(version) or int(version) not in SUPPORTED_VERSIONS:
        raise MessageError("unknown-version", f"schema version {version[:20]!r} is not one of "
                           f"{sorted(SUPPORTED_VERSIONS)}")
    kind = _text(fields, H_KIND) if H_KIND in fields else KIND_FRAME
    if kind not in (KIND_FRAME, KIND_END):
        raise MessageError("bad-header", f"{H_KIND} {kind[:20]!r} is neither {KIND_FRAME!r} "
                           f"nor {KIND_END!r}")
    camera_id = _text(fields, H_CAMERA)
    if len(fields[H_CAMERA]) > MAX_CAMERA_ID_BYTES:
        raise MessageError("bad-header", f"{H_CAMERA} is longer than {MAX_CAMERA_ID_BYTES} bytes")
    if key is not None and key != camera_id.encode("utf-8"):
        raise MessageError("camera-mismatch", f"key {key[:40]!r} but {H_CAMERA} "
                           f"{camera_id[:40]!r}")
    index = _number(fields, H_FRAME, _UNSIGNED, int, MAX_FRAME_INDEX)
    timestamp = _number(fields, H_TIMESTAMP, _UNSIGNED_FLOAT, float, MAX_TIMESTAMP)
    if kind == KIND_END:
        return EndOfStream(camera_id, index, timestamp)
    value = value or b""
    return Frame(camera_id, index, timestamp, _decode_jpeg(value, max_pixels), encoded=value)


def _header_map(headers: Headers) -> dict[str, bytes]:
    try:
        return {str(name): bytes(raw or b"") for name, raw in headers}
    except (TypeError, ValueError):
        raise MessageError("bad-header", "headers are not (name, bytes) pairs") from None


def _text(fields: dict[str, bytes], name: str) -> str:
    if name not in fields:
        raise MessageError("missing-header", f"no {name} header")
    try:
        text = fields[name].decode("utf-8")
    except UnicodeDecodeError:
        raise MessageError("bad-header", f"{name} is not UTF-8") from None
    if not text:
        raise MessageError("bad-header", f"{name} is empty")
    return text


def _number(fields: dict[str, bytes], name: str, pattern: re.Pattern, kind: type,
            limit: float) -> int | float:
    """A non-negative ASCII number (digits only, bounded length and value)."""
    text = _text(fields, name)
    if not pattern.fullmatch(text):
        raise MessageError("bad-header", f"{name} {text[:40]!r} is not a non-negative ASCII "
                           "number")
    value = kind(text)
    if not value <= limit:
        raise MessageError("bad-header", f"{name} {text[:40]!r} exceeds {limit:g}")
    return value


# Start-of-frame markers of baseline, progressive and lossless JPEG (not DHT, JPG, DAC).
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) from a JPEG's start-of-frame header, without decoding; None when the
    markers before it are malformed."""
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        length = int.from_bytes(data[position + 2:position + 4], "big")
        if marker in _SOF_MARKERS:
            if position + 9 > len(data):
                return None
            return (int.from_bytes(data[position + 5:position + 7], "big"),
                    int.from_bytes(data[position + 7:position + 9], "big"))
        if length < 2:
            return None
        position += 2 + length
    return None


def _decode_jpeg(value: bytes, max_pixels: int) -> np.ndarray:
    if not value.startswith(b"\xff\xd8"):
        raise MessageError("undecodable-image", f"{len(value)} bytes are not a JPEG image")
    if not value.endswith(b"\xff\xd9"):
        # libjpeg would return a truncated image half grey, with only a warning.
        raise MessageError("undecodable-image", f"{len(value)} bytes of a truncated JPEG image")
    size = jpeg_size(value)
    if size is None:
        raise MessageError("undecodable-image", f"{len(value)} bytes: no JPEG frame header")
    if size[0] * size[1] > max_pixels:
        raise MessageError("oversize-image", f"{size[1]}x{size[0]} pixels exceed the "
                           f"{max_pixels}-pixel limit")
    try:
        image = decode_image(value)
    except Exception as exc:  # cv2.error on what libjpeg refuses outright
        raise MessageError("undecodable-image", f"{len(value)} bytes: {exc}") from None
    if image is None or image.size == 0:
        raise MessageError("undecodable-image", f"{len(value)} bytes of a damaged JPEG image")
    return image
