"""Streaming throughput and latency on UCSD Ped2: the test videos go through a Kafka broker to
one `vad serve` worker that stores alerts in Redis; compared with the same pipeline in-process.

    python benchmarks/stream_throughput.py [--ped2 ../shared/data/ped2] [--checkpoint DIR]

Four measurements, all with the Redis store (1 and 2 repeated, interleaved, best and median
reported: the build machines are shared and noisy):
1. in-process, frame-diff: decode each video and run the pipeline (what `vad run` does);
2. throughput, frame-diff: all test videos published first (flat out, one camera each), then
   one worker drains the backlog: frames/s from its first to its last frame;
3. frame latency, frame-diff: the worker running, the 12 cameras publish in real time (10 fps
   each, together): seconds from a frame's producer timestamp to the pipeline having
   processed it;
4. alert latency, the default scorer (configs/demo.yaml's motion scorer, no reasoner: it runs
   off the scoring path): the cameras publish in real time, `--wave` at a time (one worker
   scores what one CPU core can), and for each alert the seconds from the producer timestamp
   of its event's first frame (anomaly start) to the ongoing alert stored in Redis, and from
   that of the frame that opened it (the event then lasted events.min_duration frames). The
   pipeline's own delays (min_duration, the clip batch of window.batch frames) are inside.
Starts a Tansu broker and a redis-server on loopback unless --bootstrap/--redis are given.
Last line: `fps=<worker throughput>` (`--alerts-only` runs measurement 4 alone).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from statistics import median

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
PARTITIONS = 4

from streams import publisher  # noqa: E402
from streams.kafka import delete_topics, ensure_topic, make_producer  # noqa: E402
from streams.local_servers import KafkaBroker, RedisServer  # noqa: E402
from streams.sources import open_source  # noqa: E402
from vad.config import VadConfig, load_config  # noqa: E402
from vad.config.sections import (KafkaConfig, PublishConfig, RedisStoreConfig,  # noqa: E402
                                 ServeConfig, StoreConfig)
from vad.pipeline import Pipeline  # noqa: E402
from vad.serve import StreamWorker, percentile  # noqa: E402
from vad.stores import open_store  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ped2", type=Path, default=REPO.parent / "shared" / "data" / "ped2")
    parser.add_argument("--checkpoint", type=Path, default=REPO / "runs" / "frame-diff-ped2",
                        help="frame-diff checkpoint (fitted on Ped2 train when missing)")
    parser.add_argument("--bootstrap", help="an existing broker (default: start Tansu)")
    parser.add_argument("--redis", help="an existing Redis URL (default: start redis-server)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="throughput runs; the best and the median are reported")
    parser.add_argument("--fps", type=float, default=10.0,
                        help="per-camera rate of the latency runs (Ped2 is 10 fps)")
    parser.add_argument("--alert-config", type=Path, default=REPO / "configs" / "demo.yaml",
                        help="config of the alert latency run (its scorers)")
    parser.add_argument("--wave", type=int, default=1,
                        help="cameras publishing at once in the alert latency run")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="config override of the alert latency run")
    parser.add_argument("--alerts-only", action="store_true",
                        help="only the alert latency run (measurement 4)")
    args = parser.parse_args()

    videos = sorted((args.ped2 / "test").glob("*.mp4"))
    if not videos:
        sys.exit(f"error: no Ped2 test videos in {args.ped2 / 'test'}")
    ensure_checkpoint(args.checkpoint, args.ped2)
    config = load_config(None, [f"scorers=[{{name: frame-diff, checkpoint: '{args.checkpoint}'}}]"])
    with tempfile.TemporaryDirectory() as scratch:
        broker = None if args.bootstrap else KafkaBroker()
        redis = None if args.redis else RedisServer(Path(scratch))
        bootstrap = args.bootstrap or broker.bootstrap
        redis_url = args.redis or redis.url
        try:
            frames = sum(len(open_source(v)) for v in videos)
            print(f"{len(videos)} Ped2 test videos, {frames} frames; broker {bootstrap}, "
                  f"store {redis_url}")
            if args.alerts_only:
                print_alert_latency(args, videos, bootstrap, redis_url)
                return 0
            inproc, worker, published = [], [], []
            for run in range(args.repeat):  # interleaved, so that load changes hit both
                inproc.append(in_process_fps(config, videos, redis_url))
                fps, publish_fps = throughput(config, videos, bootstrap, redis_url, frames, run)
                worker.append(fps)
                published.append(publish_fps)
                print(f"run {run + 1}: in-process {inproc[-1]:.1f} frames/s, stream worker "
                      f"{fps:.1f} frames/s, publish flat out {publish_fps:.1f} frames/s")
            worker_fps = max(worker)
            print(f"in-process pipeline: best {max(inproc):.1f}, median {median(inproc):.1f} "
                  "frames/s")
            print(f"stream worker:       best {worker_fps:.1f}, median {median(worker):.1f} "
                  f"frames/s ({worker_fps / max(inproc):.0%} of in-process, best vs best)")
            print(f"publish flat out:    best {max(published):.1f} frames/s "
                  "(JPEG encoding included)")
            stats = latency(config, videos, bootstrap, redis_url, frames, args.fps)
            print(f"publish -> frame processed latency, frame-diff, {args.fps:g} fps x "
                  f"{len(videos)} cameras: {_quantiles(stats.frame_latency)}")
            print_alert_latency(args, videos, bootstrap, redis_url)
        finally:
            for server in (broker, redis):
                if server is not None:
                    server.stop()
    print(f"fps={worker_fps:.1f}")
    return 0


def print_alert_latency(args: argparse.Namespace, videos: list[Path], bootstrap: str,
                        redis_url: str) -> None:
    alert_config = load_config(args.alert_config, args.overrides)
    stats = alert_latency(alert_config, videos, bootstrap, redis_url, args.fps,
                          args.wave)
    scorers = "+".join(entry.name for entry in alert_config.scorers)
    for name, values in (("anomaly start", stats.alert_latency),
                         ("alert-opening frame", stats.open_latency)):
        print(f"{name} -> alert stored latency, {scorers}, {args.fps:g} fps x "
              f"{args.wave} cameras at a time, window.batch="
              f"{alert_config.window.batch}: {_quantiles(values)}")
    delay = stats.alert_frames
    print(f"frames from anomaly start to the frame that stored its alert (the "
          f"pipeline's own delay): p50={percentile(delay, 50):.0f} "
          f"max={max(delay, default=float('nan')):.0f} (n={len(delay)}); publish -> frame "
          f"processed: {_quantiles(stats.frame_latency)}")


def ensure_checkpoint(checkpoint: Path, ped2: Path) -> None:
    if (checkpoint / "config.json").is_file():
        return
    print(f"fitting frame-diff on {ped2 / 'train'} -> {checkpoint}")
    subprocess.run([sys.executable, "-m", "vad.cli", "fit", str(ped2 / "train"), "--scorer",
                    "frame-diff", "--out", str(checkpoint), "--no-progress"],
                   cwd=REPO, env=_env(), check=True)


def in_process_fps(config: VadConfig, videos: list[Path], redis_url: str) -> float:
    with open_store(_store(redis_url, "bench-inprocess")) as store:
        pipeline = Pipeline.from_config(config, store)
        start, count = time.perf_counter(), 0
        for video in videos:
            frames = list(open_source(video, f"inproc-{video.stem}"))
            count += len(frames)
            pipeline.process_all(frames)
        return count / (time.perf_counter() - start)


def publish(videos: list[Path], bootstrap: str, topic: str, fps: float | None = None) -> float:
    """Publish every video as one camera, flat out (in this process) or at `fps` per camera
    (a `vad publish` process, so that it does not share the worker's interpreter)."""
    cameras = [f"ped2-{video.stem}" for video in videos]
    if fps is None:
        ensure_topic(bootstrap, topic, PARTITIONS)
        producer = make_producer(KafkaConfig(bootstrap=bootstrap))
        start = time.perf_counter()
        counts = publisher.publish([open_source(v, c) for v, c in zip(videos, cameras)],
                                   producer, topic, PublishConfig(max_rate=True),
                                   KafkaConfig().max_message_bytes, progress=False)
        producer.close()
        return sum(counts.values()) / (time.perf_counter() - start)
    subprocess.run([sys.executable, "-m", "vad.cli", "publish", *map(str, videos),
                    "--bootstrap", bootstrap, "--topic", topic, "--partitions", str(PARTITIONS),
                    "--camera", ",".join(cameras), "--fps", str(fps), "--no-progress"],
                   cwd=REPO, env=_env(), check=True, stdout=subprocess.DEVNULL)
    return fps * len(videos)


class Worker:
    """One worker in a thread of this process, its stats at hand."""

    def __init__(self, config: VadConfig, bootstrap: str, topic: str, redis_url: str):
        self.store = open_store(_store(redis_url, topic))
        self.worker = StreamWorker(Pipeline.from_config(config, self.store),
                                   KafkaConfig(bootstrap=bootstrap, topic=topic),
                                   ServeConfig(group=f"{topic}-group", partitions=PARTITIONS,
                                               metrics_port=None))
        self.thread = threading.Thread(target=self.worker.run, daemon=True)
        self.thread.start()

    def wait(self, predicate, timeout: float = 600) -> float:
        deadline = time.monotonic() + timeout
        while not predicate(self.worker):
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise SystemExit("error: the worker stopped or timed out")
            time.sleep(0.01)
        return time.perf_counter()

    def stop(self) -> None:
        self.worker.stop()
        self.thread.join()
        self.store.close()


def throughput(config: VadConfig, videos: list[Path], bootstrap: str, redis_url: str,
               frames: int, run: int) -> tuple[float, float]:
    topic = f"bench-throughput-{os.getpid()}-{run}"
    publish_fps = publish(videos, bootstrap, topic)
    worker = Worker(config, bootstrap, topic, redis_url)
    try:
        first = worker.wait(lambda w: w.stats.frames > 0)
        last = worker.wait(lambda w: w.stats.frames >= frames)
    finally:
        worker.stop()
        delete_topics(bootstrap, [topic, f"{topic}.dead-letter"])
    return (frames - 1) / (last - first), publish_fps


def latency(config: VadConfig, videos: list[Path], bootstrap: str, redis_url: str,
            frames: int, fps: float):
    topic = f"bench-latency-{os.getpid()}"
    worker = Worker(config, bootstrap, topic, redis_url)
    try:
        worker.wait(lambda w: len(w.assigned) == PARTITIONS)
        publish(videos, bootstrap, topic, fps)
        worker.wait(lambda w: w.stats.frames >= frames)
    finally:
        worker.stop()
        delete_topics(bootstrap, [topic, f"{topic}.dead-letter"])
    return worker.worker.stats


def alert_latency(config: VadConfig, videos: list[Path], bootstrap: str, redis_url: str,
                  fps: float, wave: int):
    """One worker with the given scorers; the videos published in real time, `wave` at a
    time."""
    topic = f"bench-alerts-{os.getpid()}"
    worker = Worker(config, bootstrap, topic, redis_url)
    try:
        worker.wait(lambda w: len(w.assigned) == PARTITIONS)
        done = 0
        for first in range(0, len(videos), wave):
            group = videos[first:first + wave]
            publish(group, bootstrap, topic, fps)
            done += sum(len(open_source(v)) for v in group)
            worker.wait(lambda w: w.stats.frames >= done)
    finally:
        worker.stop()
        delete_topics(bootstrap, [topic, f"{topic}.dead-letter"])
    return worker.worker.stats


def _quantiles(values) -> str:
    return (f"p50={percentile(values, 50):.3f}s p99={percentile(values, 99):.3f}s "
            f"max={max(values, default=float('nan')):.3f}s (n={len(values)})")


def _store(redis_url: str, prefix: str) -> StoreConfig:
    return StoreConfig(url=redis_url, redis=RedisStoreConfig(prefix=prefix))


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


if __name__ == "__main__":
    sys.exit(main())
