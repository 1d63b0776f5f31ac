"""The streaming worker behind `vad serve`: a Kafka consumer-group member that scores camera
frames with the `Pipeline`, checkpoints each camera's exact state in the alert store and
commits offsets right behind the frames it processed.

Threads: the consumer thread polls, decodes and dead-letters, checkpoints and commits; one
processing thread feeds the pipeline through a bounded queue (back-pressure: polling waits for
room). A commit first writes the checkpoint of every camera of the partition that changed
(`Pipeline.state` packed with `vad.snapshots`, plus `as_of`: the offset after the camera's last
record in it) and then commits the offset after the longest processed prefix. A camera's
checkpoint is loaded when its first record comes after an assignment; its records below
`as_of` are skipped (already in the state), so a replay from any committed offset reproduces
the uninterrupted run exactly. Delivery is at least once; stable alert ids and idempotent store
writes make replays invisible.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from kafka import ConsumerRebalanceListener, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError, NoOffsetForPartitionError, OffsetOutOfRangeError
from kafka.structs import OffsetAndMetadata

from streams.kafka import admin_client, ensure_topic, make_consumer, make_producer, topic_id
from streams.messages import (H_ERROR, H_ERROR_DETAIL, H_ORIGIN, EndOfStream, MessageError,
                              decode_message)
from vad.config.sections import KafkaConfig, ServeConfig
from vad.errors import VadError
from vad.pipeline import AlertChange, OnChange, Pipeline
from vad.snapshots import SnapshotError, pack, unpack
from vad.stores.base import StoreUnavailableError
from vad.types import Frame

log = logging.getLogger(__name__)

LATENCY_SAMPLES = 100_000
RECENT_FRAMES = 256  # per camera: producer times of its last frames, for alert latency
# Dead-letter reasons of the worker itself (decoding ones: `MessageError.REASONS`).
PROCESSING_ERROR, CRASHED_WORKER, DECODE_ERROR = "processing-error", "crashed-worker", \
    "decode-error"


@dataclass
class WorkerStats:
    frames: int = 0
    alerts: int = 0  # alerts opened
    commits: int = 0
    dead_lettered: Counter = field(default_factory=Counter)  # by reason
    # Seconds from a record's producer timestamp to its frame processed; from the producer
    # timestamp of an event's first frame to its alert stored (opened); and from that of the
    # frame that opened the alert (its event then lasted min_duration frames).
    frame_latency: deque = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))
    alert_latency: deque = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))
    open_latency: deque = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))
    # Frames from an event's first frame to the frame whose processing stored its alert: the
    # pipeline's own delay (min_duration, clip batch), whatever the machine's speed.
    alert_frames: deque = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))


def percentile(values: Iterable[float], q: float) -> float:
    values = list(values)
    return float(np.percentile(values, q)) if values else float("nan")


@dataclass(eq=False)
class _Entry:
    offset: int
    done: bool = False  # processed into its camera's state, dead-lettered, or skipped


class OffsetTracker:
    """Per partition, the records handed out, in offset order, and which are done."""

    def __init__(self) -> None:
        self._entries: dict[TopicPartition, deque[_Entry]] = {}
        self._next: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._lock = threading.Lock()

    def add(self, tp: TopicPartition, offset: int) -> _Entry:
        entry = _Entry(offset)
        with self._lock:
            self._entries.setdefault(tp, deque()).append(entry)
        return entry

    def done(self, entry: _Entry) -> None:
        with self._lock:
            entry.done = True

    def idle(self, tp: TopicPartition) -> bool:
        """Nothing of the partition is waiting to be processed."""
        with self._lock:
            return all(entry.done for entry in self._entries.get(tp, ()))

    def committable(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """Next offsets to commit (after the longest done prefix), where they advanced."""
        offsets = {}
        with self._lock:
            for tp in partitions:
                entries = self._entries.get(tp, deque())
                while entries and entries[0].done:
                    self._next[tp] = entries.popleft().offset + 1
                if self._next.get(tp, -1) > self._committed.get(tp, -1):
                    offsets[tp] = self._next[tp]
        return offsets

    def committed(self, offsets: dict[TopicPartition, int]) -> None:
        with self._lock:
            self._committed.update(offsets)

    def committed_offset(self, tp: TopicPartition) -> int | None:
        with self._lock:
            return self._committed.get(tp)

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


@dataclass
class _Camera:
    """What the worker keeps of a camera besides its pipeline state."""

    tp: TopicPartition
    as_of: int = 0  # offset after the last record in its state
    last_index: int = -1
    shape: tuple = ()
    seen: float = field(default_factory=time.monotonic)  # wall time of its last record
    dirty: bool = False  # changed since its last checkpoint
    idle_closed: bool = False
    sent: deque = field(default_factory=lambda: deque(maxlen=RECENT_FRAMES))  # (index, time)

    def checkpoint(self, topic: str | None, pipeline_state: dict | None) -> bytes:
        return pack({"topic_id": topic, "as_of": self.as_of, "last_index": self.last_index,
                     "shape": list(self.shape), "pipeline": pipeline_state})


class _Metrics:
    """Prometheus metrics of one worker, on their own registry and HTTP port."""

    def __init__(self, options: ServeConfig):
        from prometheus_client import (CollectorRegistry, Counter as PCounter, Gauge, Histogram,
                                       start_http_server)
        from prometheus_client.process_collector import ProcessCollector

        self.registry = registry = CollectorRegistry()
        ProcessCollector(registry=registry)  # process_resident_memory_bytes and co.
        self.frames = PCounter("vad_frames", "frames processed", registry=registry)
        self.changes = PCounter("vad_alert_changes", "alert lifecycle changes stored",
                                ["kind"], registry=registry)
        self.dead_letters = PCounter("vad_dead_letters", "messages dead-lettered", ["reason"],
                                     registry=registry)
        self.lag = Gauge("vad_partition_lag", "records of the partition not yet fetched",
                         ["partition"], registry=registry)
        self.committed = Gauge("vad_committed_offset", "last committed offset",
                               ["partition"], registry=registry)
        self.open_alerts = Gauge("vad_open_alerts", "ongoing alerts", registry=registry)
        self.cameras = Gauge("vad_cameras", "cameras whose state is in memory",
                             registry=registry)
        self.spooled = Gauge("vad_spooled_writes", "store writes waiting in the spool",
                             registry=registry)
        self.queue = Gauge("vad_queue_frames", "decoded frames waiting for the pipeline",
                           registry=registry)
        buckets = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)
        self.frame_latency = Histogram("vad_frame_latency_seconds",
                                       "producer timestamp -> frame processed", buckets=buckets,
                                       registry=registry)
        self.alert_latency = Histogram("vad_alert_latency_seconds",
                                       "producer timestamp of an event's first frame -> its "
                                       "alert stored", buckets=buckets, registry=registry)
        self.port = None
        if options.metrics_port is not None:
            server, _ = start_http_server(options.metrics_port, options.metrics_host,
                                          registry=registry)
            self.server = server
            self.port = server.server_address[1]

    def close(self) -> None:
        if self.port is not None:
            self.server.shutdown()
            self.server.server_close()


class StreamWorker:
    def __init__(self, pipeline: Pipeline, settings: KafkaConfig, options: ServeConfig):
        self.pipeline = pipeline
        self.store = pipeline.store
        self.settings = settings
        self.options = options
        self.dead_letters = options.dead_letter_topic or f"{settings.topic}.dead-letter"
        self.scope = options.state_scope or f"{options.group}/{settings.topic}"
        self.stats = WorkerStats()
        self._queue: queue.Queue[_Item | None] = queue.Queue(options.queue_size)
        self._tracker = OffsetTracker()
        # Guards the pipeline, the cameras and the partition tables across the consumer,
        # processing and Kafka IO (rebalance callback) threads.
        self._lock = threading.RLock()
        self._epochs: Counter = Counter()  # bumped when a partition is revoked or restarted
        self._cameras: OrderedDict[str, _Camera] = OrderedDict()  # least recently seen first
        self._unsaved: dict[TopicPartition, dict[str, bytes]] = {}  # evicted, ended cameras
        self._to_position: set[TopicPartition] = set()  # assigned, not positioned yet
        self._fetched: dict[TopicPartition, int] = {}  # next offset to fetch
        self._careful: set[TopicPartition] = set()
        self._poison: dict[TopicPartition, int] = {}  # offset that killed the worker
        self._restarts: dict[TopicPartition, dict] = {}  # progress marker per partition
        # Cameras with a checkpoint in the store, per partition (read once when assigned): a
        # camera not among them starts fresh without asking the store.
        self._checkpointed: dict[TopicPartition, set[str]] = {}
        self._open_alerts: set[str] = set()
        self.assigned: set[TopicPartition] = set()  # this member's partitions now
        self._stop = threading.Event()
        self._failure: BaseException | None = None
        self._metrics_mark = (time.monotonic(), 0)  # (time, frames) of the last metrics line
        self._store_warned = False
        self._topic_id: str | None = None
        self.metrics: _Metrics | None = None
        self._consumer = None
        self._producer = None
        self._admin = None
        pipeline.listeners.append(OnChange(self._on_change))

    def stop(self) -> None:
        """Finish the frames in flight, commit and leave the group (safe from a signal handler)."""
        self._stop.set()

    def run(self) -> WorkerStats:
        for topic in (self.settings.topic, self.dead_letters):
            ensure_topic(self.settings.bootstrap, topic, self.options.partitions)
        self._admin = admin_client(self.settings.bootstrap)
        self._topic_id = topic_id(self._admin, self.settings.topic)
        self.metrics = _Metrics(self.options)
        if self.metrics.port is not None:
            log.info("metrics on http://%s:%d/metrics", self.options.metrics_host,
                     self.metrics.port)
        self._producer = make_producer(self.settings)
        self._consumer = make_consumer(self.settings, self.options.group,
                                       self.options.queue_size)
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
            if isinstance(self._failure, VadError):
                raise self._failure
            raise VadError(f"worker stopped: {self._failure}") from self._failure
        return self.stats

    # -- consumer thread ---------------------------------------------------------------------
    def _consume_loop(self) -> None:
        now = time.monotonic()
        next_commit = now + self.options.commit_interval
        next_metrics = now + self.options.metrics_interval
        next_topic_check = now + self.options.topic_check_s
        while not self._stop.is_set() and self._failure is None:
            room = self._queue.maxsize - self._queue.qsize()
            batches = {}
            try:
                batches = self._consumer.poll(timeout_ms=200, max_records=max(1, room))
            except NoOffsetForPartitionError:
                pass  # a partition without a committed offset: positioned right below
            except OffsetOutOfRangeError as exc:
                for tp, offset in dict(exc.args[0] if exc.args else {}).items():
                    self._restart_partition(tp, f"offset {offset} is out of range")
            positioned = self._position_assigned()
            for tp, records in batches.items():
                if tp in positioned or tp not in self.assigned:
                    continue  # fetched from a position not validated yet: they come again
                epoch = self._epochs[tp]
                for record in records:
                    self._accept(tp, epoch, record)
            self._check_log_ends()
            now = time.monotonic()
            if now >= next_commit:
                self._close_idle(now)
                self._commit()
                self._leave_careful()
                next_commit = now + self.options.commit_interval
            if now >= next_metrics:
                self._log_metrics()
                next_metrics = now + self.options.metrics_interval
            if now >= next_topic_check:
                self._check_topic()
                next_topic_check = now + self.options.topic_check_s

    def _position_assigned(self) -> set[TopicPartition]:
        """Seek newly assigned partitions to where they must resume; returns them."""
        with self._lock:
            todo, self._to_position = self._to_position & self.assigned, set()
        for tp in todo:
            position = self._start_position(tp)
            self._checkpointed[tp] = self._read_store(
                lambda: self.store.state_keys(self._scope(tp)), f"partition {tp.partition}"
            ) or set()
            self._consumer.seek(tp, position)
            self._fetched[tp] = position
            self._count_restart(tp, position)
            log.debug("partition %d resumes at offset %d", tp.partition, position)
        return todo

    def _start_position(self, tp: TopicPartition) -> int:
        committed = self._consumer.committed(tp, metadata=True)
        start = self._consumer.beginning_offsets([tp])[tp]
        if committed is None or committed.offset is None or committed.offset < 0:
            if self.options.offset_reset == "latest":
                return self._consumer.end_offsets([tp])[tp]
            return start
        made_for = _commit_metadata(committed.metadata).get("topic_id")
        if made_for and self._topic_id and made_for != self._topic_id:
            self._warn_restart(tp, f"the topic was recreated (id {made_for} -> "
                                   f"{self._topic_id})", start)
            self._clear_checkpoints(tp)
            return start
        if committed.offset < start:
            self._warn_restart(tp, f"the log starts at {start}, after the committed offset "
                                   f"{committed.offset}: {start - committed.offset} records "
                                   "were deleted before being processed", start)
            return start
        return committed.offset

    def _warn_restart(self, tp: TopicPartition, why: str, start: int) -> None:
        log.warning("partition %d of %s: %s; restarting from its earliest record (offset %d)",
                    tp.partition, tp.topic, why, start)

    def _check_log_ends(self) -> None:
        """A position past the log's end: the topic was recreated or truncated under us."""
        for tp in list(self.assigned):
            highwater = self._consumer.highwater(tp)
            fetched = self._fetched.get(tp)
            if highwater is not None and fetched is not None and fetched > highwater:
                self._restart_partition(tp, f"the log ends at offset {highwater}, before the "
                                            f"position {fetched}")

    def _check_topic(self) -> None:
        try:
            current = topic_id(self._admin, self.settings.topic)
        except KafkaError as exc:
            log.debug("topic id check failed: %s", exc)
            return
        if current and self._topic_id and current != self._topic_id:
            previous, self._topic_id = self._topic_id, current
            for tp in list(self.assigned):
                self._restart_partition(tp, f"the topic was recreated (id {previous} -> "
                                            f"{current})")
        self._topic_id = current or self._topic_id

    def _restart_partition(self, tp: TopicPartition, why: str) -> None:
        """Recreated or truncated under a running worker: drop what this worker holds of the
        partition (open alerts closed as `restart`) and start again from its first record."""
        if tp not in self.assigned:
            return
        try:
            self._topic_id = topic_id(self._admin, self.settings.topic) or self._topic_id
            start = self._consumer.beginning_offsets([tp])[tp]
        except KafkaError as exc:
            log.warning("partition %d: %s, but its log cannot be read now (%s)", tp.partition,
                        why, exc)
            return
        self._warn_restart(tp, why, start)
        with self._lock:
            self._drop_partitions({tp}, close_reason="restart")
        self._clear_checkpoints(tp)
        self._consumer.seek(tp, start)
        self._fetched[tp] = start

    def _clear_checkpoints(self, tp: TopicPartition) -> None:
        try:
            self.store.clear_states(self._scope(tp))
        except StoreUnavailableError as exc:  # they carry the old topic id: ignored anyway
            log.warning("old checkpoints of partition %d not deleted: %s", tp.partition, exc)

    def _accept(self, tp: TopicPartition, epoch: int, record: ConsumerRecord) -> None:
        self._fetched[tp] = record.offset + 1
        entry = self._tracker.add(tp, record.offset)
        if self._poison.get(tp) == record.offset:
            del self._poison[tp]
            self._dead_letter(record, entry, CRASHED_WORKER,
                              "the worker died processing this record")
            return
        try:
            payload = decode_message(record.key, record.value, record.headers,
                                     self.settings.max_message_bytes,
                                     self.settings.max_frame_pixels)
        except MessageError as exc:
            self._dead_letter(record, entry, exc.reason, exc.detail)
            return
        except Exception as exc:  # a decoder bug must not stop the partition
            self._dead_letter(record, entry, DECODE_ERROR, f"{type(exc).__name__}: {exc}")
            return
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
        future.add_callback(lambda _: self._tracker.done(entry))
        future.add_errback(self._fail)
        self.stats.dead_lettered[reason] += 1
        self.metrics.dead_letters.labels(reason).inc()
        log.debug("dead-lettered %s/%d/%d: %s: %s", record.topic, record.partition,
                  record.offset, reason, detail)

    def _fail(self, exc: BaseException) -> None:
        if self._failure is None:
            self._failure = exc
        self._stop.set()

    # -- checkpoints and commits -------------------------------------------------------------
    def _scope(self, tp: TopicPartition) -> str:
        return f"{self.scope}/{tp.partition}"

    def _take_checkpoints(self, partitions: set[TopicPartition],
                          ) -> dict[TopicPartition, dict[str, bytes]]:
        """Under the lock: the checkpoints to write before committing these partitions (the
        unsaved ones stay readable until they are stored)."""
        saves = {tp: dict(self._unsaved.get(tp, {})) for tp in partitions}
        for camera_id, camera in self._cameras.items():
            if camera.dirty and camera.tp in partitions:
                saves[camera.tp][camera_id] = camera.checkpoint(
                    self._topic_id, self.pipeline.state(camera_id))
                camera.dirty = False
        return saves

    def _save_checkpoints(self, saves: dict[TopicPartition, dict[str, bytes]],
                          ) -> set[TopicPartition]:
        """Write them; the partitions whose checkpoints are all stored."""
        saved = set()
        for tp, states in saves.items():
            try:
                if states:
                    self.store.save_states(self._scope(tp), states)
                saved.add(tp)
                with self._lock:
                    self._checkpointed.setdefault(tp, set()).update(states)
                    unsaved = self._unsaved.get(tp, {})
                    for camera_id, state in states.items():
                        if unsaved.get(camera_id) is state:
                            del unsaved[camera_id]
            except StoreUnavailableError as exc:
                if not self._store_warned:
                    log.warning("checkpoints cannot be stored (%s): commits wait", exc)
                    self._store_warned = True
                with self._lock:  # write them again next time
                    for camera_id, state in states.items():
                        camera = self._cameras.get(camera_id)
                        if camera is not None and camera.tp == tp:
                            camera.dirty = True
                        elif tp in self.assigned:
                            self._unsaved.setdefault(tp, {}).setdefault(camera_id, state)
        if saved == set(saves) and self._store_warned:
            log.warning("checkpoints stored again: commits resume")
            self._store_warned = False
        return saved

    def _commit(self) -> None:
        partitions = set(self._consumer.assignment()) & self.assigned - self._to_position
        with self._lock:
            offsets = self._tracker.committable(partitions)
            saves = self._take_checkpoints(partitions)
        saved = self._save_checkpoints(saves)
        offsets = {tp: offset for tp, offset in offsets.items() if tp in saved}
        if not offsets:
            return
        try:
            self._consumer.commit(self._offsets_with_metadata(offsets))
        except KafkaError as exc:  # e.g. a rebalance in progress: records will be replayed
            log.warning("offset commit failed (%s); uncommitted records will be redelivered", exc)
            return
        self._tracker.committed(offsets)
        self.stats.commits += 1

    def _offsets_with_metadata(self, offsets: dict[TopicPartition, int]) -> dict:
        metadata = json.dumps({"topic_id": self._topic_id})
        return {tp: OffsetAndMetadata(offset, metadata, -1) for tp, offset in offsets.items()}

    # -- the crash counter -------------------------------------------------------------------
    def _count_restart(self, tp: TopicPartition, position: int) -> None:
        """Starts at the same committed offset in a row: past `max_restarts`, the partition is
        processed carefully (each record's offset stored first), so that a record that kills
        the worker is known at the next start and dead-lettered."""
        scope = f"{self._scope(tp)}/worker"
        try:
            marker = json.loads(self.store.load_state(scope, "progress") or b"{}")
        except (StoreUnavailableError, ValueError) as exc:
            log.warning("partition %d: crash counter unavailable (%s)", tp.partition, exc)
            return
        restarts = marker.get("restarts", 0) + 1 if marker.get("offset") == position else 1
        inflight = marker.get("inflight")
        if inflight is not None and inflight >= position:
            log.warning("partition %d: the record at offset %d killed the worker %d times: it "
                        "will be dead-lettered as %s", tp.partition, inflight, restarts - 1,
                        CRASHED_WORKER)
            self._poison[tp] = inflight
        if restarts > self.options.max_restarts:
            log.warning("partition %d: started %d times at offset %d: processing it carefully "
                        "until it catches up", tp.partition, restarts, position)
            self._careful.add(tp)
        self._restarts[tp] = {"offset": position, "restarts": restarts}
        self._save_marker(tp, self._restarts[tp])

    def _save_marker(self, tp: TopicPartition, marker: dict) -> None:
        try:
            self.store.save_states(f"{self._scope(tp)}/worker",
                                   {"progress": json.dumps(marker).encode()})
        except StoreUnavailableError as exc:
            log.warning("partition %d: crash counter not stored (%s)", tp.partition, exc)

    def _leave_careful(self) -> None:
        for tp in list(self._careful):
            highwater = self._consumer.highwater(tp)
            if highwater is not None and self._fetched.get(tp, -1) >= highwater and \
                    self._tracker.idle(tp):
                self._careful.discard(tp)
                self._save_marker(tp, {**self._restarts.get(tp, {}), "restarts": 0})
                log.info("partition %d caught up: processing normally", tp.partition)

    # -- idle cameras ------------------------------------------------------------------------
    def _close_idle(self, now: float) -> None:
        """Close the open alerts of cameras silent for `events.idle_s` (their partition caught
        up, so the silence is theirs) and free those silent for `serve.evict_idle_s`."""
        caught_up = {tp for tp in self.assigned
                     if self._tracker.idle(tp) and self._consumer.highwater(tp) is not None
                     and self._fetched.get(tp, -1) >= self._consumer.highwater(tp)}
        with self._lock:
            for camera_id, camera in list(self._cameras.items()):
                silent = now - camera.seen
                if camera.tp not in caught_up:
                    continue
                if not camera.idle_closed and \
                        silent >= self.pipeline.config.camera(camera_id).events.idle_s:
                    self.pipeline.finish(camera_id, "idle")
                    camera.idle_closed = camera.dirty = True
                if silent >= self.options.evict_idle_s:
                    self._evict(camera_id)

    def _evict(self, camera_id: str) -> None:
        """Checkpoint a camera (written with the next commit) and free its state."""
        camera = self._cameras.pop(camera_id)
        self._unsaved.setdefault(camera.tp, {})[camera_id] = camera.checkpoint(
            self._topic_id, self.pipeline.state(camera_id))
        self.pipeline.reset_camera(camera_id)

    # -- metrics -----------------------------------------------------------------------------
    def _on_change(self, change: AlertChange) -> None:
        alert = change.alert
        if change.kind == "opened":
            self._open_alerts.add(alert.id)
        elif change.kind == "closed":
            self._open_alerts.discard(alert.id)
        self.metrics.changes.labels(change.kind).inc()
        self.metrics.open_alerts.set(len(self._open_alerts))

    def _log_metrics(self) -> None:
        now, frames = time.monotonic(), self.stats.frames
        then, before = self._metrics_mark
        self._metrics_mark = (now, frames)
        lags = {}
        for tp in self._consumer.assignment():
            highwater = self._consumer.highwater(tp)
            if tp in self._fetched and highwater is not None:
                lags[tp] = max(0, highwater - self._fetched[tp])
                self.metrics.lag.labels(str(tp.partition)).set(lags[tp])
            committed = self._tracker.committed_offset(tp)
            if committed is not None:
                self.metrics.committed.labels(str(tp.partition)).set(committed)
        spooled = getattr(self.store, "spooled", lambda: 0)()
        self.metrics.spooled.set(spooled)
        self.metrics.cameras.set(len(self._cameras))
        self.metrics.queue.set(self._queue.qsize())
        log.info("frames/s=%.1f frames=%d lag=%s queue=%d/%d cameras=%d open-alerts=%d "
                 "alerts=%d dead-lettered=%d%s latency p50=%.3fs p99=%.3fs spooled=%d",
                 (frames - before) / max(now - then, 1e-9), frames,
                 sum(lags.values()) if lags else "?", self._queue.qsize(), self._queue.maxsize,
                 len(self._cameras), len(self._open_alerts), self.stats.alerts,
                 sum(self.stats.dead_lettered.values()),
                 f" {dict(self.stats.dead_lettered)}" if self.stats.dead_lettered else "",
                 percentile(self.stats.frame_latency, 50),
                 percentile(self.stats.frame_latency, 99), spooled)

    def _shutdown(self, processor: threading.Thread) -> None:
        self._queue.put(None)
        processor.join()
        try:
            self._producer.flush(timeout=30)
            if self._failure is None:
                self._commit()
        finally:
            self._consumer.close(autocommit=False)
            self._producer.close()
            self._admin.close()
            self.pipeline.close()
            self.metrics.close()
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
        camera_id = item.payload.camera_id
        checkpoint = None if camera_id in self._cameras else self._load_checkpoint(item.tp,
                                                                                  camera_id)
        with self._lock:
            if item.epoch != self._epochs[item.tp]:
                return  # revoked or restarted since it was polled: it comes again
            camera = self._cameras.get(camera_id) or self._admit(item.tp, camera_id, checkpoint)
            if item.entry.offset < camera.as_of:
                self._tracker.done(item.entry)  # already in its checkpointed state
                return
            if item.tp in self._careful:
                self._save_marker(item.tp, {**self._restarts.get(item.tp, {}),
                                            "inflight": item.entry.offset})
            if isinstance(item.payload, EndOfStream):
                changes = self._end_camera(camera_id, camera, item.entry.offset)
                frames = 0
            else:
                changes = self._process_frame(camera_id, camera, item)
                frames = 1
                if changes is None:
                    return  # dead-lettered
            camera.as_of, camera.dirty, camera.idle_closed = item.entry.offset + 1, True, False
            self._tracker.done(item.entry)
            while len(self._cameras) > self.options.max_cameras:
                self._evict(next(iter(self._cameras)))
        self._count(item, camera, changes, frames)

    def _load_checkpoint(self, tp: TopicPartition, camera_id: str) -> dict | None:
        """The camera's checkpoint for this topic, waiting while the store is unreachable."""
        with self._lock:
            data = self._unsaved.get(tp, {}).get(camera_id)
            known = camera_id in self._checkpointed.get(tp, ())
        if data is None and known:
            data = self._read_store(lambda: self.store.load_state(self._scope(tp), camera_id),
                                    f"camera {camera_id}")
        if data is None:
            return None
        try:
            checkpoint = unpack(data)
        except SnapshotError as exc:
            log.warning("camera %s: checkpoint ignored (%s)", camera_id, exc)
            return None
        if checkpoint.get("topic_id") != self._topic_id:
            return None  # of a topic since recreated
        return checkpoint

    def _read_store(self, read, what: str):
        """A checkpoint read, retried while the store is unreachable (nothing is known
        without it); None when stopping."""
        while not self._stop.is_set():
            try:
                return read()
            except StoreUnavailableError as exc:
                log.warning("%s: checkpoints unreadable (%s); retrying", what, exc)
                self._stop.wait(1.0)
        return None

    def _admit(self, tp: TopicPartition, camera_id: str, checkpoint: dict | None) -> _Camera:
        camera = _Camera(tp)
        self._unsaved.get(tp, {}).pop(camera_id, None)
        if checkpoint is not None:
            camera.as_of, camera.last_index = checkpoint["as_of"], checkpoint["last_index"]
            camera.shape = tuple(checkpoint["shape"])
            if checkpoint["pipeline"] is not None:
                self.pipeline.restore(camera_id, checkpoint["pipeline"])
        self._cameras[camera_id] = camera
        return camera

    def _end_camera(self, camera_id: str, camera: _Camera, offset: int) -> list[AlertChange]:
        """End of a camera's stream: close its alerts; its checkpoint becomes an empty state
        (with as_of, so that a replay of its earlier records skips them)."""
        changes = self.pipeline.finish(camera_id, "stream-end")
        self.pipeline.reset_camera(camera_id)
        camera.last_index, camera.shape, camera.as_of = -1, (), offset + 1
        return changes

    def _process_frame(self, camera_id: str, camera: _Camera,
                       item: _Item) -> list[AlertChange] | None:
        frame = item.payload
        changes = []
        if frame.index <= camera.last_index or (camera.shape and frame.image.shape
                                                != camera.shape):
            log.warning("camera %s restarted (frame %d %s after frame %d %s): closing its "
                        "previous stream", camera_id, frame.index, frame.image.shape,
                        camera.last_index, camera.shape)
            changes = self.pipeline.finish(camera_id, "restart")
            self.pipeline.reset_camera(camera_id)
        try:
            changes += self.pipeline.process(frame)
        except StoreUnavailableError:
            raise
        except Exception as exc:  # this frame, not the worker: dead letter, camera restarts
            log.exception("camera %s frame %d: processing failed; dead-lettered, the camera "
                          "starts over", camera_id, frame.index)
            self.pipeline.reset_camera(camera_id, close_reason="error")
            camera.last_index, camera.shape = -1, ()
            camera.as_of, camera.dirty = item.entry.offset + 1, True
            self._dead_letter(item.record, item.entry, PROCESSING_ERROR,
                              f"{type(exc).__name__}: {exc}")
            return None
        camera.last_index, camera.shape = frame.index, frame.image.shape
        camera.sent.append((frame.index, item.record.timestamp / 1000))
        self._cameras.move_to_end(camera_id)
        camera.seen = time.monotonic()
        return changes

    def _count(self, item: _Item, camera: _Camera, changes: list[AlertChange],
               frames: int) -> None:
        now = time.time()
        latency = now - item.record.timestamp / 1000
        self.stats.frames += frames
        self.stats.frame_latency.extend([latency] * frames)
        self.metrics.frames.inc(frames)
        if frames:
            self.metrics.frame_latency.observe(latency)
        sent = dict(camera.sent)
        for change in changes:
            if change.kind != "opened":
                continue
            self.stats.alerts += 1
            start = sent.get(change.alert.start_frame)
            if start is not None:
                self.stats.alert_latency.append(now - start)
                self.metrics.alert_latency.observe(now - start)
            if change.alert.end_frame in sent:
                self.stats.open_latency.append(now - sent[change.alert.end_frame])
            if frames:
                self.stats.alert_frames.append(item.payload.index - change.alert.start_frame)

    # -- rebalances (called on kafka-python's IO thread, during the consumer's poll) ---------
    def _drop_partitions(self, partitions: set[TopicPartition],
                         close_reason: str | None = None) -> list[str]:
        """Under the lock: forget the partitions' cameras and records; queued frames of them
        are skipped (a new epoch)."""
        for tp in partitions:
            self._epochs[tp] += 1
        cameras = [c for c, camera in self._cameras.items() if camera.tp in partitions]
        for camera_id in cameras:
            self.pipeline.reset_camera(camera_id, close_reason)
            del self._cameras[camera_id]
        self._tracker.forget(partitions)
        for tp in partitions:
            for table in (self._unsaved, self._fetched, self._poison, self._restarts,
                          self._checkpointed):
                table.pop(tp, None)
            self._careful.discard(tp)
        return cameras

    def revoke(self, partitions: set[TopicPartition], commit: bool) -> None:
        """Hand partitions over: checkpoint and commit what was processed (not when they are
        lost: another member owns them already), then drop them."""
        with self._lock:
            offsets = self._tracker.committable(partitions) if commit else {}
            saves = self._take_checkpoints(partitions) if commit else {}
            cameras = self._drop_partitions(partitions)
            self.assigned -= partitions
            self._to_position -= partitions
        saved = self._save_checkpoints(saves)
        offsets = {tp: offset for tp, offset in offsets.items() if tp in saved}
        if offsets:  # the blocking commit is not allowed on the IO thread
            self._consumer.commit_async(self._offsets_with_metadata(offsets))
        for tp in partitions:
            for gauge in (self.metrics.lag, self.metrics.committed):
                try:
                    gauge.remove(str(tp.partition))
                except KeyError:
                    pass
        if partitions:
            log.info("partitions %s revoked: %d camera(s) checkpointed and dropped",
                     sorted(tp.partition for tp in partitions), len(cameras))

    def assign(self, partitions: set[TopicPartition]) -> None:
        """New partitions: positioned (and their cameras restored) by the consumer thread."""
        with self._lock:
            self.assigned |= partitions
            self._to_position |= partitions


def _commit_metadata(text: str | None) -> dict:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


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
