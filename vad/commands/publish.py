"""`vad publish`: simulate cameras by publishing videos, frame folders or streams to Kafka."""

from __future__ import annotations

import argparse
import time

from streams.messages import DEFAULT_JPEG_QUALITY, DEFAULT_MAX_MESSAGE_BYTES
from vad.errors import VadError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "publish", help="publish videos/folders/streams to Kafka as cameras",
        description="Publish each SOURCE as one camera to a Kafka topic (JPEG frame messages, "
                    "docs/kafka.md), all cameras at once.")
    parser.add_argument("sources", nargs="+", metavar="SOURCE",
                        help="video file, folder of frames, or rtsp/http URL")
    parser.add_argument("--bootstrap", required=True, metavar="HOST:PORT[,HOST:PORT]")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--camera", action="append", default=[], metavar="ID[,ID...]",
                        help="camera id per source, in order (default: the file or folder name)")
    rate = parser.add_mutually_exclusive_group()
    rate.add_argument("--fps", type=float, help="frames/s per camera (default: real time)")
    rate.add_argument("--max", action="store_true", help="as fast as possible")
    parser.add_argument("--loop", action="store_true", help="replay files forever")
    parser.add_argument("--limit", type=int, metavar="N", help="stop after N frames per camera")
    parser.add_argument("--partitions", type=int, default=4,
                        help="partitions when the topic must be created (default: 4)")
    parser.add_argument("--jpeg-quality", type=int, default=DEFAULT_JPEG_QUALITY)
    parser.add_argument("--max-message-bytes", type=int, default=DEFAULT_MAX_MESSAGE_BYTES)
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run)


def camera_ids(values: list[str], count: int) -> list[str | None]:
    """`--camera a --camera b` or `--camera a,b`; one per source, or none at all."""
    ids = [part.strip() for value in values for part in value.split(",") if part.strip()]
    if ids and len(ids) != count:
        raise VadError(f"{len(ids)} camera ids for {count} sources; give one per source")
    return ids or [None] * count


def run(args: argparse.Namespace) -> int:
    from streams.kafka import KafkaSettings, ensure_topic, make_producer
    from streams.publisher import PublishOptions, publish
    from streams.sources import open_source

    options = PublishOptions(fps=args.fps, max_rate=args.max, loop=args.loop, limit=args.limit,
                             jpeg_quality=args.jpeg_quality,
                             max_message_bytes=args.max_message_bytes)
    sources = [open_source(spec, camera) for spec, camera
               in zip(args.sources, camera_ids(args.camera, len(args.sources)))]
    ensure_topic(args.bootstrap, args.topic, args.partitions)
    producer = make_producer(KafkaSettings(args.bootstrap,
                                           max_message_bytes=args.max_message_bytes))
    start = time.perf_counter()
    try:
        counts = publish(sources, producer, args.topic, options, progress=not args.no_progress)
    finally:
        producer.close()
    elapsed = time.perf_counter() - start
    for camera, count in counts.items():
        print(f"{camera}: {count} frames -> {args.topic}")
    total = sum(counts.values())
    print(f"published {total} frames in {elapsed:.1f} s ({total / elapsed:.1f} frames/s)")
    return 0
