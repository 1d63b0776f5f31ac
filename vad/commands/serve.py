"""`vad serve`: a Kafka consumer-group worker scoring camera frames into an alert store."""

from __future__ import annotations

import argparse
import logging
import signal

from streams.messages import DEFAULT_MAX_MESSAGE_BYTES
from vad.commands.common import add_config_args, add_scorer_args, config_from_args
from vad.serve import ServeOptions


def register(subparsers: argparse._SubParsersAction) -> None:
    defaults = ServeOptions(topic="", group="")
    parser = subparsers.add_parser(
        "serve", help="score camera frames from Kafka as a consumer-group worker",
        description="Consume frame messages (docs/kafka.md) as a member of GROUP, score them "
                    "and store alerts; run several workers to share the topic's partitions. "
                    "SIGTERM finishes the frames in flight, commits and exits.")
    parser.add_argument("--bootstrap", required=True, metavar="HOST:PORT[,HOST:PORT]")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True, help="consumer group id")
    parser.add_argument("--store", help="alert store URL, e.g. redis://localhost:6379/0 "
                                        "(default from config)")
    add_scorer_args(parser)
    add_config_args(parser)
    parser.add_argument("--dead-letter-topic",
                        help="where undecodable messages go (default: TOPIC.dead-letter)")
    parser.add_argument("--partitions", type=int, default=defaults.partitions,
                        help=f"partitions of topics it creates (default: {defaults.partitions})")
    parser.add_argument("--queue-size", type=int, default=defaults.queue_size,
                        help=f"decoded frames in flight (default: {defaults.queue_size})")
    parser.add_argument("--commit-interval", type=float, default=defaults.commit_interval,
                        metavar="S")
    parser.add_argument("--metrics-interval", type=float, default=defaults.metrics_interval,
                        metavar="S", help="seconds between metrics log lines")
    parser.add_argument("--from", dest="offset_reset", choices=["earliest", "latest"],
                        default=defaults.offset_reset, help="where a new group starts")
    parser.add_argument("--max-message-bytes", type=int, default=DEFAULT_MAX_MESSAGE_BYTES,
                        help="larger messages are dead-lettered")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streams.kafka import KafkaSettings
    from vad.pipeline import Pipeline
    from vad.serve import StreamWorker
    from vad.stores import open_store

    for name in ("vad", "streams"):
        logging.getLogger(name).setLevel(logging.DEBUG if args.verbose else logging.INFO)
    config = config_from_args(args)
    options = ServeOptions(topic=args.topic, group=args.group,
                           dead_letter_topic=args.dead_letter_topic, partitions=args.partitions,
                           queue_size=args.queue_size, commit_interval=args.commit_interval,
                           metrics_interval=args.metrics_interval,
                           offset_reset=args.offset_reset)
    settings = KafkaSettings(args.bootstrap, max_message_bytes=args.max_message_bytes)
    with open_store(args.store or config.store) as store:
        worker = StreamWorker(Pipeline.from_config(config, store), settings, options)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: worker.stop())
        stats = worker.run()
    print(f"stopped after {stats.frames} frames, {stats.alerts} alerts, "
          f"{sum(stats.dead_lettered.values())} dead-lettered")
    return 0
