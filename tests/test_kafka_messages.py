"""Frame message format v1, the offset bookkeeping of the worker and the publisher's
schedule: fast unit tests, no server."""

import numpy as np
import pytest
from kafka import TopicPartition

from streams.messages import (H_CAMERA, H_FRAME, H_KIND, H_SCHEMA, H_TIMESTAMP, SCHEMA_VERSION,
                              EndOfStream, MessageError, decode_message, encode_end,
                              encode_frame, jpeg_size)
from streams.publisher import _scheduled
from vad.config import validated
from vad.config.sections import PublishConfig
from vad.commands.publish import camera_ids
from vad.errors import VadError
from vad.serve import OffsetTracker
from vad.types import Frame


def gradient(height: int = 48, width: int = 64, colour: bool = True) -> np.ndarray:
    image = np.add.outer(np.arange(height), np.arange(width)).astype(np.uint8) * 2
    return np.dstack([image, image // 2, 255 - image]) if colour else image


@pytest.mark.parametrize("colour", [True, False])
def test_frame_round_trip(colour):
    frame = Frame("gate-3", 42, 1_700_000_000.25, gradient(colour=colour))
    key, value, headers = encode_frame(frame, quality=95)
    assert key == b"gate-3" and value[:2] == b"\xff\xd8"
    assert dict(headers)[H_SCHEMA] == str(SCHEMA_VERSION).encode()
    decoded = decode_message(key, value, headers)
    assert (decoded.camera_id, decoded.index, decoded.timestamp) == ("gate-3", 42, frame.timestamp)
    assert decoded.image.shape == frame.image.shape
    assert np.abs(decoded.image.astype(int) - frame.image).mean() < 3  # JPEG is lossy


def test_grey_frames_travel_as_one_channel():
    grey = np.repeat(gradient(colour=False)[..., None], 3, axis=2)
    decoded = decode_message(*encode_frame(Frame("cam", 0, 0.0, grey)))
    assert decoded.image.shape == grey.shape[:2]
    assert np.abs(decoded.image.astype(int) - grey[..., 0]).mean() < 3


def test_end_of_stream_round_trip():
    end = EndOfStream("gate-3", 180, 12.5)
    assert decode_message(*encode_end(end)) == end


def _headers(**changes: bytes | None) -> list[tuple[str, bytes]]:
    headers = {H_SCHEMA: b"1", H_KIND: b"frame", H_CAMERA: b"cam", H_FRAME: b"7",
               H_TIMESTAMP: b"1.5"}
    headers.update(changes)
    return [(name, value) for name, value in headers.items() if value is not None]


JPEG = encode_frame(Frame("cam", 0, 0.0, gradient()))[1]


@pytest.mark.parametrize("key, value, headers, reason", [
    (b"cam", b"hello", _headers(), "undecodable-image"),
    (b"cam", JPEG[:-300], _headers(), "undecodable-image"),
    (b"cam", JPEG, _headers(**{H_FRAME: None}), "missing-header"),
    (b"cam", JPEG, [], "missing-header"),
    (b"cam", JPEG, _headers(**{H_SCHEMA: b"2"}), "unknown-version"),
    (b"cam", JPEG, _headers(**{H_SCHEMA: b"v1"}), "unknown-version"),
    (b"cam", JPEG, _headers(**{H_FRAME: b"seven"}), "bad-header"),
    (b"cam", JPEG, _headers(**{H_FRAME: b"-1"}), "bad-header"),
    (b"cam", JPEG, _headers(**{H_TIMESTAMP: b"nan"}), "bad-header"),
    (b"cam", JPEG, _headers(**{H_CAMERA: b"\xff\xfe"}), "bad-header"),
    (b"cam", JPEG, _headers(**{H_KIND: b"keyframe"}), "bad-header"),
    (b"other", JPEG, _headers(), "camera-mismatch"),
    (b"cam", b"\xff\xd8" + bytes(5000) + b"\xff\xd9", _headers(), "oversize"),
    # passes str.isdigit(), fails int(): once a crash loop
    (b"cam", JPEG, _headers(**{H_SCHEMA: "\u00b9".encode()}), "unknown-version"),
    # decodes, then overflowed int64 in the windower: once a crash loop
    (b"cam", JPEG, _headers(**{H_FRAME: str(2**63).encode()}), "bad-header"),
    (b"cam", JPEG, _headers(**{H_FRAME: "\u0663".encode()}), "bad-header"),  # Arabic-Indic 3
    (b"cam", JPEG, _headers(**{H_TIMESTAMP: b"1e400"}), "bad-header"),
    (b"cam", JPEG, _headers(**{H_TIMESTAMP: b" 1.5"}), "bad-header"),
    (b"c" * 300, JPEG, _headers(**{H_CAMERA: b"c" * 300}), "bad-header"),
])
def test_malformed_messages_raise_a_typed_error(key, value, headers, reason):
    with pytest.raises(MessageError) as caught:
        decode_message(key, value, headers, max_bytes=4096)
    assert caught.value.reason == reason
    assert isinstance(caught.value, VadError)


def test_damaged_jpeg_is_rejected_or_decoded_never_crashes():
    # Kafka's record CRC catches transport damage; libjpeg decodes what it can of the rest.
    rng = np.random.default_rng(0)
    for _ in range(50):
        damaged = bytearray(JPEG)
        for position in rng.integers(2, len(JPEG) - 2, size=20):
            damaged[position] = rng.integers(0, 256)
        try:
            frame = decode_message(b"cam", bytes(damaged), _headers())
        except MessageError as exc:
            assert exc.reason == "undecodable-image"
        else:
            assert frame.image.dtype == np.uint8 and frame.image.size > 0


def bomb_header(jpeg: bytes, height: int, width: int) -> bytes:
    """The JPEG with its frame header claiming another size (a decompression bomb's
    header on a small file)."""
    data = bytearray(jpeg)
    position = 2
    while data[position + 1] not in (0xC0, 0xC1, 0xC2):
        position += 2 + int.from_bytes(data[position + 2:position + 4], "big")
    data[position + 5:position + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def test_the_pixel_limit_is_read_from_the_jpeg_header_before_decoding():
    assert jpeg_size(JPEG) == gradient().shape[:2]
    bomb = bomb_header(JPEG, 7000, 7000)
    assert jpeg_size(bomb) == (7000, 7000)
    with pytest.raises(MessageError) as caught:
        decode_message(b"cam", bomb, _headers(), max_pixels=4096 * 2160)
    assert caught.value.reason == "oversize-image" and "7000x7000" in str(caught.value)
    frame = decode_message(b"cam", JPEG, _headers(), max_pixels=gradient().size)
    assert frame.encoded == JPEG  # kept for exact state snapshots


def test_encoding_refuses_a_frame_over_the_limit():
    with pytest.raises(VadError, match="exceed"):
        encode_frame(Frame("cam", 0, 0.0, gradient()), max_bytes=100)


def test_offset_tracker_commits_up_to_the_first_record_not_done():
    tp, other = TopicPartition("t", 0), TopicPartition("t", 1)
    tracker = OffsetTracker()
    frames = [tracker.add(tp, offset) for offset in range(5)]
    letter = tracker.add(tp, 5)  # dead letter, not yet acknowledged
    later = tracker.add(tp, 6)
    for entry in frames[:3] + [later]:
        tracker.done(entry)
    assert tracker.committable([tp, other]) == {tp: 3} and not tracker.idle(tp)
    tracker.committed({tp: 3})
    assert tracker.committable([tp]) == {}  # nothing new to commit
    for entry in frames[3:]:
        tracker.done(entry)
    assert tracker.committable([tp]) == {tp: 5}
    tracker.done(letter)
    assert tracker.committable([tp]) == {tp: 7} and tracker.idle(tp)
    tracker.forget([tp])
    assert tracker.committable([tp]) == {}


class Clip:
    camera_id = "cam"

    def __iter__(self):
        return iter(Frame("cam", i, 10.0 + i * 0.04, gradient(4, 4)) for i in range(3))


def test_schedule_follows_the_source_clock_or_a_rate_and_loops_with_rising_indices():
    def plan(**options):
        frames = _scheduled(Clip(), PublishConfig(**options))
        return [(frame.index, round(offset, 3)) for frame, offset in
                (next(frames) for _ in range(6 if options.get("loop") else 3))]

    assert plan() == [(0, 0.0), (1, 0.04), (2, 0.08)]
    assert plan(fps=10) == [(0, 0.0), (1, 0.1), (2, 0.2)]
    assert plan(loop=True) == [(0, 0.0), (1, 0.04), (2, 0.08), (3, 0.12), (4, 0.16), (5, 0.2)]


def test_publish_options_and_camera_ids_are_checked():
    with pytest.raises(VadError, match="fps: Input should be greater than 0"):
        validated(PublishConfig, {"fps": 0}, "publish")
    with pytest.raises(VadError, match="exclude"):
        validated(PublishConfig, {"fps": 5, "max_rate": True}, "publish")
    with pytest.raises(VadError, match="limit: Input should be greater than or equal to 1"):
        validated(PublishConfig, {"limit": 0}, "publish")
    assert camera_ids(["a,b", "c"], 3) == ["a", "b", "c"]
    assert camera_ids([], 2) == [None, None]
    with pytest.raises(VadError, match="2 camera ids for 3 sources"):
        camera_ids(["a", "b"], 3)
