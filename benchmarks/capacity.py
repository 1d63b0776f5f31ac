"""Capacity: how many simulated 1280x720 cameras at 10 fps the default pipeline keeps up with.

    python benchmarks/capacity.py [--config configs/demo.yaml] [--paths in-process,kafka]

Cameras: the Ped2 test videos upscaled to 1280x720 and tinted (three distinct colour channels,
as a colour camera gives), looped; camera i plays video i mod 12 from its own offset. The
pipeline is the config's scorers (configs/demo.yaml: the committed motion scorer; the
reasoning section is left out, the motion descriptions of alerts are not), with as many
worker processes as this process may use cores (`vad.workers`, what `vad run` and
`vad serve` do):
- in-process, as `vad run CAM...`: each camera an H.264 720p file decoded in real time (a
  source that waits for each frame's due time, then decodes it), the cameras dealt over the
  worker processes, alerts in SQLite;
- Kafka, as `vad serve --workers`: the same frames as JPEG messages (encoded beforehand, as
  cameras encode their own) published at 10 fps per camera to a Tansu broker started here,
  members of one consumer group in worker processes (`vad.commands.serve.serve_member`'s
  StreamWorker), alerts in a redis-server started here. Each run's topic has one partition
  per camera (rounded up to a multiple of the members) and camera ids are chosen so that
  camera i goes to partition i: the members get equal shares.
A frame's lag: from its due time (its capture time) to the pipeline having taken it (and
scored its clip when it completes one; the clip batch of 8 frames waits 0.7 s on top, in
every deployment). A run keeps up when the p99 lag after the warm-up stays below
LAG_LIMIT_S. The camera count grows (STEPS) while runs keep up; the largest that kept up is
run again (--repeat) and must keep up every time. Reported per run: frames/s, lag, worker CPU
and RSS per camera, and the CPU other processes used meanwhile (the machine is shared). The
Kafka path's capacity over the in-process path's comes next; last line: `cameras=<N>` of
the in-process path (with --paths kafka alone: of the Kafka path).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.throughput import upscaled_video  # noqa: E402
from streams.sources import Source, VideoFileSource  # noqa: E402
from vad.config import VadConfig, load_config  # noqa: E402
from vad.types import Frame  # noqa: E402
from vad.workers import available_cores, run_processes, worker_count  # noqa: E402

FPS = 10.0
SIZE = (720, 1280)
STEPS = (1, 2, 4, 6, 8, 10, 12, 14, 16, 20, 24, 32)
LAG_LIMIT_S = 2.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "demo.yaml")
    parser.add_argument("--ped2", type=Path, default=REPO.parent / "shared" / "data" / "ped2")
    parser.add_argument("--paths", default="in-process,kafka",
                        help="comma-separated: in-process, kafka")
    parser.add_argument("--workers", type=int, help="worker processes (default: one per core)")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds before lags count")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured seconds per run")
    parser.add_argument("--repeat", type=int, default=2,
                        help="runs of the largest camera count that kept up")
    parser.add_argument("--min-cameras", type=int, default=STEPS[0],
                        help="first camera count tried (smaller ones are skipped; if it falls "
                             "behind, the smaller steps are tried downwards)")
    parser.add_argument("--max-cameras", type=int, default=STEPS[-1])
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "capacity",
                        help="where the 720p videos are made once")
    args = parser.parse_args()
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    if not paths or set(paths) - {"in-process", "kafka"}:
        sys.exit(f"error: --paths: expected in-process and/or kafka, got {args.paths!r}")
    videos = sorted((args.ped2 / "test").glob("*.mp4"))
    if not videos:
        sys.exit(f"error: no Ped2 test videos in {args.ped2 / 'test'}")
    config = load_config(args.config)
    workers = worker_count(config.workers.model_copy(update={"processes": args.workers}))
    clips = make_videos(videos, args.work)
    print(f"{len(clips)} simulated {SIZE[1]}x{SIZE[0]} cameras' videos in {args.work}; "
          f"scorers {', '.join(e.name for e in config.scorers)}; {workers} worker process(es) "
          f"on {available_cores()} core(s); load average {os.getloadavg()[0]:.1f}")
    found = {}
    for path in paths:
        measure = InProcess(config, clips, workers) if path == "in-process" else \
            Kafka(config, clips, workers, args.work)
        try:
            found[path] = search(measure, path, args)
        finally:
            measure.close()
    if len(found) == 2:
        ratio = found["kafka"].rate / found["in-process"].rate
        print(f"kafka_vs_in_process={ratio:.2f} (sustained frames/s at capacity: "
              f"{found['kafka'].rate:.1f} vs {found['in-process'].rate:.1f})")
    print(f"cameras={found.get('in-process', found.get('kafka')).cameras}")
    return 0


@dataclass
class Run:
    cameras: int
    rate: float  # frames/s taken by the pipeline after the warm-up
    lag_p50: float
    lag_p99: float
    cpu_per_camera: float  # cores
    rss_per_camera_mb: float
    others_cpu: float  # cores used by other processes meanwhile
    extra: str = ""

    @property
    def kept_up(self) -> bool:
        return self.lag_p99 < LAG_LIMIT_S and self.rate > 0.95 * FPS * self.cameras

    def line(self, path: str) -> str:
        return (f"{path}: cameras={self.cameras} frames/s={self.rate:.1f} "
                f"lag p50={self.lag_p50:.2f}s p99={self.lag_p99:.2f}s "
                f"cpu/camera={self.cpu_per_camera:.3f} cores rss/camera="
                f"{self.rss_per_camera_mb:.0f} MB other load={self.others_cpu:.2f} cores"
                f"{self.extra} -> {'keeps up' if self.kept_up else 'falls behind'}")


def search(measure, path: str, args) -> Run:
    best = None
    steps = [n for n in STEPS if n <= args.max_cameras]
    upwards = [n for n in steps if n >= args.min_cameras]
    for cameras in upwards:
        run = measure(cameras, args.warmup, args.seconds)
        print(run.line(path), flush=True)
        if not run.kept_up:
            break
        best = run
    for cameras in reversed([n for n in steps if n < args.min_cameras] if best is None else []):
        run = measure(cameras, args.warmup, args.seconds)  # the first count fell behind
        print(run.line(path), flush=True)
        if run.kept_up:
            best = run
            break
    while best is not None:  # the largest count must keep up again, every time
        repeats = [measure(best.cameras, args.warmup, args.seconds) for _ in range(args.repeat)]
        for run in repeats:
            print(run.line(path) + " (repeat)", flush=True)
        if all(run.kept_up for run in repeats):
            break
        smaller = [n for n in STEPS if n < best.cameras]
        best = measure(smaller[-1], args.warmup, args.seconds) if smaller else None
        if best is not None:
            print(best.line(path), flush=True)
            best = best if best.kept_up else None
    if best is None:
        return Run(0, 0.0, float("nan"), float("nan"), 0.0, 0.0, 0.0)
    print(f"{path}: capacity {best.cameras} cameras at {FPS:g} fps")
    return best


# -- simulated cameras -----------------------------------------------------------------------
def make_videos(videos: list[Path], work: Path) -> list[Path]:
    """Each Ped2 test video as a tinted 1280x720 H.264 file (made once)."""
    return [upscaled_video(video, SIZE, work) for video in videos]


class PacedCamera(Source):
    """A camera looping a video in real time: each frame is decoded at its due time."""

    live = False

    def __init__(self, video: Path, camera_id: str, offset: int, start_at: float, frames: int):
        self.video, self.camera_id, self.location = video, camera_id, str(video)
        self.offset, self.start_at, self.frames = offset, start_at, frames

    def __len__(self) -> int:
        return self.frames

    def __iter__(self):
        index, skip = 0, self.offset
        while True:
            decoded = iter(VideoFileSource(self.video))
            while True:
                due = self.start_at + index / FPS
                time.sleep(max(0.0, due - time.time()))
                frame = next(decoded, None)
                if frame is None:
                    break
                if skip:
                    skip -= 1
                    continue
                yield Frame(self.camera_id, index, due, frame.image)
                index += 1
                if index >= self.frames:
                    return


def plan(cameras: int, clips: list[Path], warmup: float, seconds: float,
         names: list[str]) -> list[tuple[str, str, int]]:
    """(video, camera id, offset) of each camera."""
    return [(str(clips[i % len(clips)]), names[i], (37 * i) % 100) for i in range(cameras)]


# -- measuring processes ---------------------------------------------------------------------
class LagMeter:
    """Lags of the frames a pipeline takes after `measure_from` (wrapping `Pipeline.process`),
    and this process's CPU seconds from the first of them."""

    def __init__(self, pipeline, measure_from: float):
        self.lags: list[float] = []
        self.first = self.last = self.cpu_first = None
        process = pipeline.process

        def timed(frame: Frame):
            alerts = process(frame)
            now = time.time()
            if frame.timestamp >= measure_from:
                if self.first is None:
                    self.first, self.cpu_first = now, own_usage()[0]
                self.lags.append(now - frame.timestamp)
                self.last = now
            return alerts

        pipeline.process = timed

    def result(self, **more) -> dict:
        cpu, rss = own_usage()
        return {"lags": self.lags, "first": self.first, "last": self.last,
                "cpu": cpu - (self.cpu_first if self.cpu_first is not None else cpu),
                "rss": rss, **more}


class MachineLoad:
    """Machine-wide busy CPU seconds from `at` (a timer thread samples /proc/stat then)."""

    def __init__(self, at: float):
        self.start = None
        self.timer = threading.Timer(max(0.0, at - time.time()), self._sample)
        self.timer.start()

    def _sample(self) -> None:
        self.start = busy_cpu_seconds()

    def since(self) -> float:
        self.timer.join()
        return busy_cpu_seconds() - self.start


def own_usage() -> tuple[float, float]:
    """CPU seconds and resident MB of this process."""
    usage = os.times()
    rss = next(int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines()
               if line.startswith("VmRSS:"))
    return usage.user + usage.system, rss / 1024


def busy_cpu_seconds() -> float:
    """CPU seconds every process of the machine has used (from /proc/stat)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    jiffies = [int(f) for f in fields]
    return (sum(jiffies[:3]) + sum(jiffies[5:8])) / os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def summarise(cameras: int, results: list[dict], busy: float, measure_from: float,
              extra: str = "") -> Run:
    """`busy`: machine-wide CPU seconds from `measure_from` until now."""
    lags = np.concatenate([r["lags"] for r in results]) if results else np.zeros(0)
    firsts = [r["first"] for r in results if r["first"]]
    lasts = [r["last"] for r in results if r["last"]]
    span = (max(lasts) - min(firsts)) if firsts and lasts else 0.0
    ours = sum(r["cpu"] for r in results)
    wall = time.time() - measure_from
    return Run(cameras, len(lags) / span if span > 0 else 0.0,
               float(np.percentile(lags, 50)) if lags.size else float("inf"),
               float(np.percentile(lags, 99)) if lags.size else float("inf"),
               ours / max(span, 1e-9) / cameras, sum(r["rss"] for r in results) / cameras,
               max(0.0, (busy - ours) / max(wall, 1e-9)), extra)


def _camera_group(config: VadConfig, cameras: list[tuple[str, str, int]], start_at: float,
                  measure_from: float, frames: int, stop) -> dict:
    """One worker process of the in-process path: its cameras through `run_cameras`."""
    from vad.cameras import run_cameras
    from vad.pipeline import Pipeline
    from vad.stores import open_store

    with open_store(config.store) as store:
        pipeline = Pipeline.from_config(config, store)
        meter = LagMeter(pipeline, measure_from)
        sources = [PacedCamera(Path(video), camera, offset, start_at, frames)
                   for video, camera, offset in cameras]
        run_cameras(sources, pipeline, store, stop, progress=False)
        pipeline.close()
    return meter.result()


class InProcess:
    def __init__(self, config: VadConfig, clips: list[Path], workers: int):
        self.clips, self.workers = clips, workers
        self.scratch = tempfile.TemporaryDirectory()
        self.config = config.model_copy(update={"store": config.store.model_copy(
            update={"url": f"sqlite:///{self.scratch.name}/capacity.db"})})

    def __call__(self, cameras: int, warmup: float, seconds: float) -> Run:
        from vad.workers import camera_groups

        names = [f"cam{i:02d}" for i in range(cameras)]
        groups = camera_groups(plan(cameras, self.clips, warmup, seconds, names), self.workers)
        start_at = time.time() + startup_seconds()
        measure_from = start_at + warmup
        frames = int((warmup + seconds) * FPS)
        load = MachineLoad(measure_from)
        results = run_processes(_camera_group, [(self.config, group, start_at, measure_from,
                                                 frames) for group in groups],
                                self.config.workers.threads, threading.Event())
        return summarise(cameras, results, load.since(), measure_from)

    def close(self) -> None:
        self.scratch.cleanup()


def startup_seconds() -> float:
    """Time given to the worker processes to start and load the scorers before the cameras
    start (spawned interpreters import torch; slow on a loaded machine)."""
    return float(os.environ.get("CAPACITY_STARTUP_S", "30"))


# -- Kafka path ------------------------------------------------------------------------------
def _member(config: VadConfig, measure_from: float, stop) -> dict:
    """One `vad serve` member (the StreamWorker `serve_member` runs) with its lags measured."""
    from vad.pipeline import Pipeline
    from vad.serve import StreamWorker
    from vad.stores import open_store

    with open_store(config.store) as store:
        pipeline = Pipeline.from_config(config, store)
        meter = LagMeter(pipeline, measure_from)
        worker = StreamWorker(pipeline, config.kafka, config.serve)
        threading.Thread(target=lambda: stop.wait() and worker.stop(), daemon=True).start()
        worker.run()
    return meter.result()


class Kafka:
    def __init__(self, config: VadConfig, clips: list[Path], workers: int, work: Path):
        from streams.local_servers import KafkaBroker, RedisServer

        self.clips, self.workers = clips, workers
        self.scratch = tempfile.TemporaryDirectory()
        self.broker = KafkaBroker()
        self.redis = RedisServer(Path(self.scratch.name))
        self.config = config.model_copy(update={"store": config.store.model_copy(
            update={"url": self.redis.url})})
        self.messages = [encode_video(clip) for clip in clips]

    def __call__(self, cameras: int, warmup: float, seconds: float) -> Run:
        from streams.kafka import delete_topics, ensure_topic
        from vad.config.sections import KafkaConfig, ServeConfig

        topic = f"capacity-{cameras}-{int(time.time())}"
        # One partition per camera, rounded up to a multiple of the members: each member
        # then owns an equal share of cameras (within one) under the range and the
        # round-robin assignors alike. (With a fixed 2 x members, 6 cameras filled the
        # partitions 2, 2, 1, 1 and the range assignor gave one member 4 cameras, the other 2.)
        partitions = self.workers * -(-cameras // self.workers)
        ensure_topic(self.broker.bootstrap, topic, partitions)
        ensure_topic(self.broker.bootstrap, f"{topic}.dead-letter", partitions)
        config = self.config.model_copy(update={
            "kafka": KafkaConfig(bootstrap=self.broker.bootstrap, topic=topic),
            "serve": ServeConfig(group=topic, partitions=partitions, metrics_port=None)})
        names = spread_ids(cameras, partitions)
        start_at = time.time() + startup_seconds()
        measure_from = start_at + warmup
        frames = int((warmup + seconds) * FPS)
        stop = threading.Event()
        load = MachineLoad(measure_from)
        servers = [self.broker.process.pid, self.redis.process.pid]
        server_cpu = sum(map(process_cpu_seconds, servers))
        publisher = Publisher(self.broker.bootstrap, topic, [
            (self.messages[i % len(self.messages)], names[i], (37 * i) % 100)
            for i in range(cameras)], start_at, frames)
        threading.Thread(target=publisher.run, args=(stop,), daemon=True).start()
        results = run_processes(_member, [(config, measure_from)] * self.workers,
                                config.workers.threads, stop)
        server_cpu = sum(map(process_cpu_seconds, servers)) - server_cpu
        busy = load.since()
        delete_topics(self.broker.bootstrap, [topic, f"{topic}.dead-letter"])
        elapsed = time.time() - start_at + startup_seconds()
        return summarise(cameras, results, busy, measure_from,
                         f" broker+redis cpu={server_cpu / elapsed:.2f} cores, publisher late "
                         f"p99={publisher.late_p99():.2f}s")

    def close(self) -> None:
        self.broker.stop()
        self.redis.stop()
        self.scratch.cleanup()


def encode_video(clip: Path) -> list[tuple[bytes, list]]:
    """(JPEG, headers) of each frame of a 720p video, encoded once (with camera 'template')."""
    from streams.messages import encode_frame

    return [encode_frame(Frame("template", frame.index, 0.0, frame.image))[1:]
            for frame in VideoFileSource(clip)]


def spread_ids(cameras: int, partitions: int) -> list[str]:
    """Camera ids that Kafka's default partitioner puts on partition i mod `partitions`."""
    from kafka.partitioner.default import murmur2

    wanted, names, i = [n % partitions for n in range(cameras)], [], 0
    while len(names) < cameras:
        name = f"cam{i:03d}"
        if (murmur2(name.encode()) & 0x7FFFFFFF) % partitions == wanted[len(names)]:
            names.append(name)
        i += 1
    return names


class Publisher:
    """Cameras sending their frames at 10 fps: each message at its due time, its headers
    the camera's own (id, frame index, capture time = the due time)."""

    def __init__(self, bootstrap: str, topic: str, cameras: list[tuple[list, str, int]],
                 start_at: float, frames: int):
        from streams.kafka import make_producer
        from vad.config.sections import KafkaConfig

        self.producer = make_producer(KafkaConfig(bootstrap=bootstrap))
        self.topic, self.cameras, self.start_at, self.frames = topic, cameras, start_at, frames
        self.late: list[float] = []

    def run(self, stop: threading.Event) -> None:
        from streams.messages import H_CAMERA, H_FRAME, H_TIMESTAMP

        for index in range(self.frames):
            due = self.start_at + index / FPS
            time.sleep(max(0.0, due - time.time()))
            self.late.append(time.time() - due)
            for messages, camera, offset in self.cameras:
                value, headers = messages[(offset + index) % len(messages)]
                own = {H_CAMERA: camera.encode(), H_FRAME: str(index).encode(),
                       H_TIMESTAMP: repr(due).encode()}
                self.producer.send(self.topic, key=camera.encode(), value=value,
                                   headers=[(name, own.get(name, raw)) for name, raw in headers])
        self.producer.flush()
        time.sleep(LAG_LIMIT_S * 3)  # the members drain what is left, then stop
        stop.set()

    def late_p99(self) -> float:
        return float(np.percentile(self.late, 99)) if self.late else float("nan")


if __name__ == "__main__":
    sys.exit(main())
