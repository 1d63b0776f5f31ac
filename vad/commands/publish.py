"""`vad publish`: simulate cameras by publishing videos, frame folders or streams to Kafka."""

from __future__ import annotations

import argparse

from vad.commands.common import add_config_args, config_flag, config_from_args, open_sources
from vad.errors import VadError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "publish", help="publish videos/folders/streams to Kafka as cameras",
        description="Publish each SOURCE as one camera to a Kafka topic (JPEG frame messages, "
                    "docs/kafka.md), all cameras at once. Without SOURCE, every camera of the "
                    "config's cameras: section that names a source is published. Live streams "
                    "are reopened when they drop or stall (the live: section, docs/cameras.md) "
                    "and published as their frames arrive.")
    parser.add_argument("sources", nargs="*", metavar="SOURCE",
                        help="video file, folder of frames, or rtsp/http URL")
    config_flag(parser, "--bootstrap", key="kafka.bootstrap", metavar="HOST:PORT[,HOST:PORT]",
                help="Kafka brokers")
    config_flag(parser, "--topic", key="kafka.topic", help="topic of frame messages")
    parser.add_argument("--camera", action="append", default=[], metavar="ID[,ID...]",
                        help="camera id per source, in order (default: the file or folder name)")
    rate = parser.add_mutually_exclusive_group()
    config_flag(rate, "--fps", key="publish.fps", type=float, help="frames/s per camera")
    config_flag(rate, "--max", key="publish.max_rate", action="store_const", const=True,
                help="as fast as possible")
    config_flag(parser, "--loop", key="publish.loop", action="store_const", const=True,
                help="replay files forever")
    config_flag(parser, "--limit", key="publish.limit", type=int, metavar="N",
                help="stop after N frames per camera")
    config_flag(parser, "--partitions", key="serve.partitions", type=int,
                help="partitions when the topic must be created")
    config_flag(parser, "--jpeg-quality", key="publish.jpeg_quality", type=int,
                help="JPEG quality")
    config_flag(parser, "--max-message-bytes", key="kafka.max_message_bytes", type=int,
                help="larger frames are refused")
    add_config_args(parser)
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run)


def camera_ids(values: list[str], count: int) -> list[str | None]:
    """`--camera a --camera b` or `--camera a,b`; one per source, or none at all."""
    ids = [part.strip() for value in values for part in value.split(",") if part.strip()]
    if ids and len(ids) != count:
        raise VadError(f"{len(ids)} camera ids for {count} sources; give one per source")
    return ids or [None] * count


def run(args: argparse.Namespace) -> int:
    import time

    from streams.kafka import ensure_topic, make_producer
    from streams.publisher import publish

    config = config_from_args(args)
    sources = open_sources(config, args.sources, camera_ids(args.camera, len(args.sources)))
    if not sources:
        raise VadError("nothing to publish: give a SOURCE or cameras with a source in the config")
    kafka = config.kafka
    ensure_topic(kafka.bootstrap, kafka.topic, config.serve.partitions)
    producer = make_producer(kafka)
    start = time.perf_counter()
    try:
        counts = publish(sources, producer, kafka.topic, config.publish, kafka.max_message_bytes,
                         progress=not args.no_progress)
    finally:
        producer.close()
    elapsed = time.perf_counter() - start
    for camera, count in counts.items():
        print(f"{camera}: {count} frames -> {kafka.topic}")
    total = sum(counts.values())
    print(f"published {total} frames in {elapsed:.1f} s ({total / elapsed:.1f} frames/s)")
    return 0
