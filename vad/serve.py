"""The streaming worker behind `vad serve`: a Kafka consumer-group member that scores camera
frames with the `Pipeline` and commits an offset only once everything before it is settled.

Threads: the consumer thread polls, decodes and dead-letters, and commits; one processing
thread feeds the pipeline through a bounded queue (back-pressure: polling waits for room).
A record's offset becomes committable when its frame is at or before the pipeline's
`settled_frame` for that camera (its alerts stored, its state rebuildable from later frames),
when it was dead-lettered and the dead-letter topic acknowledged it, or when its camera's
stream ended. Delivery is at least once; stable alert ids make replays invisible.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
from kafka import ConsumerRebalanceListener, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from streams.kafka import ensure_topic, make_consumer, make_producer
from streams.messages import (H_ERROR, H_ERROR_DETAIL, H_ORIGIN, EndOfStream, MessageError,
                              decode_message)
from vad.config.sections import KafkaConfig, ServeConfig
from vad.errors import VadError
from vad.pipeline import Pipeline
from vad.stores.redis import StoreUnavailableError
from vad.types import Frame

log = logging.getLogger(__name__)

LATENCY_SAMPLES = 100_000


@dataclass
class WorkerStats:
    frames: int = 0
    alerts: int = 0
    commits: int = 0
    dead_lettered: Counter = field(default_factory=Counter)  # by reason
    # Seconds from a record's producer timestamp to its frame processed / its alert stored.
    frame_latency: deque = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))
    alert_latency: deque = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))


def percentile(values: Iterable[float], q: float) -> float:
    values = list(values)
    return float(np.percentile(values, q)) if values else float("nan")


@dataclass(eq=False)
class _Entry:
    offset: int
    camera: str | None = None
    index: int | None = None  # the frame index, None for other records
    processed: bool = False
    settled: bool = False  # done whatever the pipeline says (dead-lettered, stream ended)


class OffsetTracker:
    """Per partition, the records handed out, in offset order, and how far they are done."""

    def __init__(self) -> None:
        self._entries: dict[TopicPartition, deque[_Entry]] = {}
        self._next: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._lock = threading.Lock()

    def add(self, tp: TopicPartition, offset: int, camera: str | None = None,
            index: int | None = None) -> _Entry:
        entry = _Entry(offset, camera, index)
        with self._lock:
            self._entries.setdefault(tp, deque()).append(entry)
        return entry

    def mark(self, entry: _Entry, processed: bool = False, settled: bool = False) -> None:
        with self._lock:
            entry.processed |= processed
            entry.settled |= settled

    def settle_camera(self, camera: str) -> None:
        """The camera's stream ended: all its processed frames are done."""
        with self._lock:
            for entries in self._entries.values():
                for entry in entries:
                    if entry.camera == camera and entry.processed:
                        entry.settled = True

    def committable(self, partitions: Iterable[TopicPartition],
                    settled_frame: Callable[[str], int]) -> dict[TopicPartition, int]:
        """Next offsets to commit, for partitions that advanced since the last commit.

        Asks every camera with records here, not only those at the head: `settled_frame` also
        stores a camera's pending scores, and a camera whose commit point is held back by
        another one replays from its own last settled frame, whose score must be stored."""
        def done(entry: _Entry) -> bool:
            if entry.settled:
                return True
            if not entry.processed or entry.index is None:
                return False
            return entry.index <= settled[entry.camera]

        offsets = {}
        with self._lock:
            settled = {camera: settled_frame(camera) for camera in
                       {e.camera for tp in partitions for e in self._entries.get(tp, ())
                        if e.camera is not None}}
            for tp in partitions:
                entries = self._entries.get(tp, deque())
                while entries and done(entries[0]):
                    self._next[tp] = entries.popleft().offset + 1
                if self._next.get(tp, -1) > self._committed.get(tp, -1):
                    offsets[tp] = self._next[tp]
        return offsets

    def resume_offset(self, tp: TopicPartition) -> int | None:
        """Where consumption must resume to miss nothing: the first record not settled (call
        `committable` first), or None when nothing was handed out."""
        with self._lock:
            entries = self._entries.get(tp)
            return entries[0].offset if entries else self._next.get(tp)

    def committed(self, offsets: dict[TopicPartition, int]) -> None:
        with self._lock:
            self._committed.update(offsets)

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        with self._lock:
            for tp in partitions:
                for table in (self._entries, self._next, self._committed):
                    table.pop(tp, None)


@dataclass
class _Item:
    tp: TopicPartition
    epoch: int
    entry: _Entry
    record: ConsumerRecord
    payload: Frame | EndOfStream


class StreamWorker:
    def __init__(self, pipeline: Pipeline, settings: KafkaConfig, options: ServeConfig):
        self.pipeline = pipeline
        self.settings = settings
        self.options = options
        self.dead_letters = options.dead_letter_topic or f"{settings.topic}.dead-letter"
        self.stats = WorkerStats()
        self._queue: queue.Queue[_Item | None] = queue.Queue(options.queue_size)
        self._tracker = OffsetTracker()
        # Guards the pipeline, the partition epochs and the camera maps across the consumer,
        # processing and Kafka IO (rebalance callback) threads.
        self._lock = threading.RLock()
        self._epochs: Counter = Counter()  # bumped when a partition is revoked
        self._camera_partition: dict[str, TopicPartition] = {}
        self._last: dict[str, tuple[int, tuple]] = {}  # camera -> last frame index, image shape
        self._fetched: dict[TopicPartition, int] = {}
        # Revoked partitions -> offset to resume from if they come back to this member: kafka-
        # python keeps the fetch position of a partition that stays, past the frames dropped.
        self._rewind: dict[TopicPartition, int] = {}
        self.assigned: set[TopicPartition] = set()  # this member's partitions now
        self._stop = threading.Event()
        self._failure: BaseException | None = None
        self._metrics_mark = (time.monotonic(), 0)  # (time, frames) of the last metrics line
        self._consumer = None
        self._producer = None

    def stop(self) -> None:
        """Finish the frames in flight, commit and leave the group (safe from a signal handler)."""
        self._stop.set()

    def run(self) -> WorkerStats:
        for topic in (self.settings.topic, self.dead_letters):
            ensure_topic(self.settings.bootstrap, topic, self.options.partitions)
        self._producer = make_producer(self.settings)
        self._consumer = make_consumer(self.settings, self.options.group,
                                       self.options.queue_size, self.options.offset_reset)
        self._consumer.subscribe([self.settings.topic], listener=_Rebalance(self))
        processor = threading.Thread(target=self._process_loop, name="vad-process", daemon=True)
        processor.start()
        log.info("worker of group %s consuming %s (dead letters to %s)", self.options.group,
                 self.settings.topic, self.dead_letters)
        try:
            self._consume_loop()
        finally:
            self._shutdown(processor)
        if self._failure is not None:
            raise VadError(f"worker stopped: {self._failure}") from self._failure
        return self.stats

    # -- consumer thread ---------------------------------------------------------------------
    def _consume_loop(self) -> None:
        next_commit = time.monotonic() + self.options.commit_interval
        next_metrics = time.monotonic() + self.options.metrics_interval
        while not self._stop.is_set() and self._failure is None:
            room = self._queue.maxsize - self._queue.qsize()
            batches = self._consumer.poll(timeout_ms=200, max_records=max(1, room))
            rewinding = self._apply_rewinds()
            for tp, records in batches.items():
                if tp in rewinding:
                    continue  # fetched from the kept position: they come again after the seek
                epoch = self._epochs[tp]
                for record in records:
                    self._accept(tp, epoch, record)
            now = time.monotonic()
            if now >= next_commit:
                self._commit()
                next_commit = now + self.options.commit_interval
            if now >= next_metrics:
                self._log_metrics()
                next_metrics = now + self.options.metrics_interval

    def _apply_rewinds(self) -> set[TopicPartition]:
        """Seek partitions that came back after a revocation; all partitions still waiting."""
        with self._lock:
            waiting = set(self._rewind)
            ready = {tp: self._rewind.pop(tp) for tp in waiting & self.assigned}
        for tp, offset in ready.items():
            self._consumer.seek(tp, offset)
            log.debug("partition %d resumes at offset %d", tp.partition, offset)
        return waiting

    def _accept(self, tp: TopicPartition, epoch: int, record: ConsumerRecord) -> None:
        self._fetched[tp] = record.offset + 1
        try:
            payload = decode_message(record.key, record.value, record.headers,
                                     self.settings.max_message_bytes)
        except MessageError as exc:
            self._dead_letter(record, self._tracker.add(tp, record.offset), exc.reason, exc.detail)
            return
        index = payload.index if isinstance(payload, Frame) else None
        entry = self._tracker.add(tp, record.offset, payload.camera_id, index)
        item = _Item(tp, epoch, entry, record, payload)
        while self._failure is None:  # a full queue holds polling back
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def _dead_letter(self, record: ConsumerRecord, entry: _Entry, reason: str,
                     detail: str) -> None:
        headers = list(record.headers or []) + [
            (H_ERROR, reason.encode()), (H_ERROR_DETAIL, detail.encode()[:1000]),
            (H_ORIGIN, f"{record.topic}/{record.partition}/{record.offset}".encode())]
        # An oversize value would be refused again: its headers say what it was.
        value = b"" if reason == "oversize" else record.value
        future = self._producer.send(self.dead_letters, key=record.key, value=value,
                                     headers=headers)
        future.add_callback(lambda _: self._tracker.mark(entry, settled=True))
        future.add_errback(self._fail)
        self.stats.dead_lettered[reason] += 1
        log.debug("dead-lettered %s/%d/%d: %s: %s", record.topic, record.partition,
                  record.offset, reason, detail)

    def _fail(self, exc: BaseException) -> None:
        if self._failure is None:
            self._failure = exc
        self._stop.set()

    def _commit(self) -> None:
        with self._lock:
            offsets = self._tracker.committable(self._consumer.assignment(),
                                                self.pipeline.settled_frame)
        if not offsets:
            return
        try:
            self._consumer.commit({tp: OffsetAndMetadata(offset, "", -1)
                                   for tp, offset in offsets.items()})
        except KafkaError as exc:  # e.g. a rebalance in progress: records will be replayed
            log.warning("offset commit failed (%s); uncommitted records will be redelivered", exc)
            return
        self._tracker.committed(offsets)
        self.stats.commits += 1

    def _log_metrics(self) -> None:
        now, frames = time.monotonic(), self.stats.frames
        then, before = self._metrics_mark
        self._metrics_mark = (now, frames)
        lags = [self._consumer.highwater(tp) - self._fetched[tp]
                for tp in self._consumer.assignment()
                if tp in self._fetched and self._consumer.highwater(tp) is not None]
        spooled = getattr(self.pipeline.store, "spooled", lambda: 0)()
        log.info("frames/s=%.1f frames=%d lag=%s queue=%d/%d alerts=%d dead-lettered=%d%s "
                 "latency p50=%.3fs p99=%.3fs spooled=%d",
                 (frames - before) / max(now - then, 1e-9), frames,
                 sum(lags) if lags else "?", self._queue.qsize(), self._queue.maxsize,
                 self.stats.alerts, sum(self.stats.dead_lettered.values()),
                 f" {dict(self.stats.dead_lettered)}" if self.stats.dead_lettered else "",
                 percentile(self.stats.frame_latency, 50),
                 percentile(self.stats.frame_latency, 99), spooled)

    def _shutdown(self, processor: threading.Thread) -> None:
        self._queue.put(None)
        processor.join()
        try:
            self._producer.flush(timeout=30)
            self._commit()
        finally:
            self._consumer.close(autocommit=False)
            self._producer.close()
            self.pipeline.close()
        self._log_metrics()

    # -- processing thread -------------------------------------------------------------------
    def _process_loop(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                if self._failure is None:
                    self._handle(item)
            except StoreUnavailableError as exc:  # its spool is full: stop before losing alerts
                log.error("%s", exc)
                self._fail(exc)
            except Exception as exc:  # a bug: stop uncommitted, restarting replays the frames
                log.exception("processing failed at %s/%d/%d", item.record.topic,
                              item.record.partition, item.record.offset)
                self._fail(exc)

    def _handle(self, item: _Item) -> None:
        with self._lock:
            if item.epoch != self._epochs[item.tp]:
                return  # revoked since it was polled: the partition's new owner replays it
            camera = item.payload.camera_id
            self._camera_partition[camera] = item.tp
            if isinstance(item.payload, EndOfStream):
                alerts = self._close_camera(camera)
                del self._camera_partition[camera]
                self._tracker.mark(item.entry, settled=True)
                self._count(item, alerts, frames=0)
                return
            frame = item.payload
            last_index, last_shape = self._last.get(camera, (-1, frame.image.shape))
            alerts = []
            if frame.index <= last_index or frame.image.shape != last_shape:
                log.warning("camera %s restarted (frame %d %s after frame %d %s): closing its "
                            "previous stream", camera, frame.index, frame.image.shape,
                            last_index, last_shape)
                alerts = self._close_camera(camera)
            alerts += self.pipeline.process(frame)
            self._last[camera] = (frame.index, frame.image.shape)
            self._tracker.mark(item.entry, processed=True)
        self._count(item, alerts, frames=1)

    def _count(self, item: _Item, alerts: list, frames: int) -> None:
        latency = time.time() - item.record.timestamp / 1000
        self.stats.frames += frames
        self.stats.frame_latency.extend([latency] * frames)
        self.stats.alerts += len(alerts)
        self.stats.alert_latency.extend([latency] * len(alerts))

    def _close_camera(self, camera: str) -> list:
        """End of a camera's stream: close its open events and drop its state."""
        alerts = self.pipeline.finish(camera)
        self.pipeline.reset_camera(camera)
        self._last.pop(camera, None)
        self._tracker.settle_camera(camera)
        return alerts

    # -- rebalances (called on kafka-python's IO thread, during the consumer's poll) ---------
    def revoke(self, partitions: set[TopicPartition], commit: bool) -> None:
        """Hand partitions over: commit what is settled, drop their cameras' state; queued
        frames of these partitions are skipped, the new owner replays them (this member too,
        when they come back: see `_rewind`)."""
        with self._lock:
            for tp in partitions:
                self._epochs[tp] += 1
            offsets = self._tracker.committable(partitions, self.pipeline.settled_frame)
            for tp in partitions:
                resume = self._tracker.resume_offset(tp)
                if resume is not None:
                    self._rewind[tp] = resume
            cameras = [c for c, tp in self._camera_partition.items() if tp in partitions]
            for camera in cameras:
                self.pipeline.reset_camera(camera)
                del self._camera_partition[camera]
                self._last.pop(camera, None)
            self._tracker.forget(partitions)
            for tp in partitions:
                self._fetched.pop(tp, None)
            self.assigned -= partitions
        if offsets and commit:  # the blocking commit is not allowed on the IO thread
            self._consumer.commit_async({tp: OffsetAndMetadata(offset, "", -1)
                                         for tp, offset in offsets.items()})
        if partitions:
            log.info("partitions %s revoked: state of %d camera(s) dropped",
                     sorted(tp.partition for tp in partitions), len(cameras))


    def assign(self, partitions: set[TopicPartition]) -> None:
        """New assignment: partitions that went to other members need no rewind here."""
        with self._lock:
            self.assigned |= partitions
            for tp in set(self._rewind) - partitions:
                del self._rewind[tp]


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, worker: StreamWorker):
        self.worker = worker

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.worker.revoke(revoked, commit=True)

    def on_partitions_lost(self, lost: set[TopicPartition]) -> None:
        self.worker.revoke(lost, commit=False)  # already reassigned: committing is refused

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.worker.assign(assigned)
        log.info("partitions %s assigned", sorted(tp.partition for tp in assigned))
