"""Publish sources to a Kafka topic as frame messages, several at once: live cameras as their
frames arrive (reopened when they drop or stall), and, as camera simulators, files and frame
folders in real time, at a fixed rate or as fast as possible."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from kafka import KafkaProducer
from tqdm import tqdm

from streams.messages import EndOfStream, encode_end, encode_frame
from streams.sources import Source
from vad.config.sections import PublishConfig
from vad.errors import SourceError, VadError
from vad.types import Frame


def publish(sources: Sequence[Source], producer: KafkaProducer, topic: str,
            options: PublishConfig, max_message_bytes: int, progress: bool = True,
            ) -> dict[str, int]:
    """Publish every source as one camera; frames sent per camera. Each camera ends with an
    end-of-stream message unless it loops or is interrupted. A live camera that gives up ends
    alone; the first such error is raised once the others are done."""
    cameras = [source.camera_id for source in sources]
    if len(set(cameras)) != len(cameras):
        raise VadError(f"camera ids must be unique, got {', '.join(cameras)}")
    stop = threading.Event()
    for source in sources:
        if source.live:
            source.stop = stop
    failures: list[BaseException] = []
    with ThreadPoolExecutor(len(sources), thread_name_prefix="publish") as pool:
        futures = [pool.submit(_publish_camera, source, producer, topic, options,
                               max_message_bytes, position, progress, stop, failures)
                   for position, source in enumerate(sources)]
        try:
            outcomes = [_outcome(future, source) for future, source in zip(futures, sources)]
        except BaseException:
            stop.set()
            raise
        finally:
            producer.flush()
    if failures:
        raise VadError(f"the broker refused a message: {failures[0]}")
    gave_up = [outcome for outcome in outcomes if isinstance(outcome, SourceError)]
    if gave_up:
        raise gave_up[0]
    return dict(zip(cameras, outcomes))


def _outcome(future, source: Source) -> int | SourceError:
    """Frames a camera sent, or the error a live camera gave up with."""
    try:
        return future.result()
    except SourceError as exc:
        if not source.live:
            raise
        return exc


def _publish_camera(source: Source, producer: KafkaProducer, topic: str,
                    options: PublishConfig, max_message_bytes: int, position: int,
                    progress: bool,
                    stop: threading.Event, failures: list[BaseException]) -> int:
    total = options.limit or (None if options.loop else len(source) or None)
    bar = tqdm(total=total, desc=source.camera_id, unit="frame", position=position,
               disable=not progress, leave=True)
    start, wall_start = time.monotonic(), time.time()
    sent, offset = 0, 0.0
    with bar:
        try:
            for sent, (frame, offset) in enumerate(_scheduled(source, options), start=1):
                if stop.is_set() or failures:
                    return sent - 1
                if source.live:  # frames come at the camera's own pace, with their own times
                    stamped = replace(frame, camera_id=source.camera_id)
                else:
                    if not options.max_rate:
                        time.sleep(max(0.0, start + offset - time.monotonic()))
                    stamped = replace(frame, camera_id=source.camera_id,
                                      timestamp=wall_start + offset)
                _send(producer, topic,
                      encode_frame(stamped, options.jpeg_quality, max_message_bytes), failures)
                bar.update()
                if sent == options.limit:
                    break
        except SourceError:  # the camera failed or gave up: its stream ends here
            _send(producer, topic, encode_end(EndOfStream(source.camera_id, sent, time.time())),
                  failures)
            raise
        if not options.loop or options.limit:
            end = EndOfStream(source.camera_id, sent, wall_start + offset)
            _send(producer, topic, encode_end(end), failures)
    return sent


def _scheduled(source: Source, options: PublishConfig) -> Iterator[tuple[Frame, float]]:
    """Frames with continuous indices across loops, and their send time after the start (s)."""
    base_index, base_time = 0, 0.0
    while True:
        count, first_time, index, offset = 0, None, base_index - 1, base_time
        for frame in source:
            first_time = frame.timestamp if first_time is None else first_time
            index = base_index + frame.index
            offset = (index / options.fps if options.fps
                      else base_time + frame.timestamp - first_time)
            count += 1
            yield replace(frame, index=index), offset
        if not options.loop or count == 0:
            return
        # The next pass starts one mean frame interval after this one's last frame.
        base_index, base_time = index + 1, offset + (offset - base_time) / max(1, count - 1)


def _send(producer: KafkaProducer, topic: str, message: tuple[bytes, bytes, list],
          failures: list[BaseException]) -> None:
    key, value, headers = message
    future = producer.send(topic, key=key, value=value, headers=headers,
                           timestamp_ms=int(time.time() * 1000))
    future.add_errback(failures.append)
