"""The Kafka message format of camera frames, version 1 (documented in docs/kafka.md).

A frame message: key = camera id (UTF-8), value = one JPEG image, headers (ASCII/UTF-8 text):
`vad.schema` (format version), `vad.kind` (`frame` or `end`), `vad.camera`, `vad.frame`
(0-based frame index), `vad.timestamp` (capture time, seconds since the epoch).
An `end` message (empty value) says that a camera's stream is over: its open events close.
"""

from __future__ import annotations

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

H_SCHEMA, H_KIND, H_CAMERA, H_FRAME, H_TIMESTAMP = (
    "vad.schema", "vad.kind", "vad.camera", "vad.frame", "vad.timestamp")
KIND_FRAME, KIND_END = "frame", "end"
# Headers a dead-lettered message gains.
H_ERROR, H_ERROR_DETAIL, H_ORIGIN = "vad.error", "vad.error.detail", "vad.origin"

Headers = list[tuple[str, bytes]]


class MessageError(VadError):
    """A message that cannot become a frame. `reason` is a short stable code."""

    REASONS = ("missing-header", "bad-header", "unknown-version", "oversize", "undecodable-image",
               "camera-mismatch")

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
                   max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> Frame | EndOfStream:
    """The frame (or end of stream) of a message; raises `MessageError`, never anything else."""
    size = len(value or b"")
    if size > max_bytes:
        raise MessageError("oversize", f"{size} bytes exceed the {max_bytes}-byte limit")
    fields = _header_map(headers or [])
    version = _text(fields, H_SCHEMA)
    if not version.isdigit() or int(version) not in SUPPORTED_VERSIONS:
        raise MessageError("unknown-version", f"schema version {version!r} is not one of "
                           f"{sorted(SUPPORTED_VERSIONS)}")
    kind = fields.get(H_KIND, KIND_FRAME.encode()).decode("utf-8", "replace")
    camera_id = _text(fields, H_CAMERA)
    if key is not None and key != camera_id.encode("utf-8"):
        raise MessageError("camera-mismatch", f"key {key!r} but {H_CAMERA} {camera_id!r}")
    index = _number(fields, H_FRAME, int)
    timestamp = _number(fields, H_TIMESTAMP, float)
    if index < 0:
        raise MessageError("bad-header", f"{H_FRAME} {index} is negative")
    if kind == KIND_END:
        return EndOfStream(camera_id, index, timestamp)
    if kind != KIND_FRAME:
        raise MessageError("bad-header", f"{H_KIND} {kind!r} is neither {KIND_FRAME!r} nor "
                           f"{KIND_END!r}")
    return Frame(camera_id, index, timestamp, _decode_jpeg(value or b""))


def _header_map(headers: Headers) -> dict[str, bytes]:
    return {name: bytes(raw or b"") for name, raw in headers}


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


def _number(fields: dict[str, bytes], name: str, kind: type) -> int | float:
    text = _text(fields, name)
    try:
        value = kind(text)
    except ValueError:
        raise MessageError("bad-header", f"{name} {text!r} is not a number") from None
    if kind is float and not np.isfinite(value):
        raise MessageError("bad-header", f"{name} {text!r} is not finite")
    return value


def _decode_jpeg(value: bytes) -> np.ndarray:
    if not value.startswith(b"\xff\xd8"):
        raise MessageError("undecodable-image", f"{len(value)} bytes are not a JPEG image")
    if not value.endswith(b"\xff\xd9"):
        # libjpeg would return a truncated image half grey, with only a warning.
        raise MessageError("undecodable-image", f"{len(value)} bytes of a truncated JPEG image")
    image = decode_image(value)
    if image is None or image.size == 0:
        raise MessageError("undecodable-image", f"{len(value)} bytes of a damaged JPEG image")
    return image
