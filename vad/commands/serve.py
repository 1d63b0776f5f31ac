"""`vad serve`: a Kafka consumer-group worker scoring camera frames into an alert store."""

from __future__ import annotations

import argparse

from vad.commands.common import (add_config_args, add_scorer_args, build_reasoner_for, config_flag,
                                 config_from_args)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve", help="score camera frames from Kafka as a consumer-group worker",
        description="Consume frame messages (docs/kafka.md) as a member of GROUP, score them "
                    "and store alerts while they last; run several workers to share the topic's "
                    "partitions. Camera state is checkpointed in the store with the offsets. "
                    "SIGTERM finishes the frames in flight, commits and exits.")
    config_flag(parser, "--bootstrap", key="kafka.bootstrap", metavar="HOST:PORT[,HOST:PORT]",
                help="Kafka brokers")
    config_flag(parser, "--topic", key="kafka.topic", help="topic of frame messages")
    config_flag(parser, "--group", key="serve.group", help="consumer group id")
    config_flag(parser, "--store", key="store.url", help="alert store URL, e.g. "
                                                         "redis://localhost:6379/0")
    add_scorer_args(parser)
    add_config_args(parser)
    config_flag(parser, "--dead-letter-topic", key="serve.dead_letter_topic",
                help="where undecodable messages go (none: TOPIC.dead-letter)")
    config_flag(parser, "--partitions", key="serve.partitions", type=int,
                help="partitions of topics it creates")
    config_flag(parser, "--queue-size", key="serve.queue_size", type=int,
                help="decoded frames in flight")
    config_flag(parser, "--commit-interval", key="serve.commit_interval", type=float,
                metavar="S", help="seconds between offset commits")
    config_flag(parser, "--metrics-interval", key="serve.metrics_interval", type=float,
                metavar="S", help="seconds between metrics log lines")
    config_flag(parser, "--from", key="serve.offset_reset", choices=["earliest", "latest"],
                help="where a new group starts")
    config_flag(parser, "--max-message-bytes", key="kafka.max_message_bytes", type=int,
                help="larger messages are dead-lettered")
    config_flag(parser, "--workers", key="workers.processes", type=int, metavar="N",
                help="group members this command runs, one process each (default 1; one per "
                     "core uses them all)")
    config_flag(parser, "--metrics-port", key="serve.metrics_port", type=int,
                help="Prometheus metrics port (0: a free one, logged)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import signal
    import threading

    from vad.workers import run_processes

    config = config_from_args(args)
    # One member unless asked for more: a lone `vad serve` stays one consumer whose crash its
    # orchestrator sees (and restarts), as before worker processes existed.
    workers = config.workers.processes or 1
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if workers == 1:
        totals = serve_member(config, args.verbose, stop)
    else:  # members of one group, one process each: Kafka balances the partitions
        members = run_processes(serve_member, [(_member_config(config, index), args.verbose)
                                               for index in range(workers)],
                                config.workers.threads, stop)
        totals = tuple(map(sum, zip(*members)))
    print(f"stopped after {totals[0]} frames, {totals[1]} alerts, {totals[2]} dead-lettered")
    return 0


def _member_config(config, index: int):
    """Member `index`'s config: a fixed metrics port becomes PORT + index, so that every
    member serves its own metrics (0, a free port, and none stay as they are)."""
    port = config.serve.metrics_port
    if not port:
        return config
    serve = config.serve.model_copy(update={"metrics_port": port + index})
    return config.model_copy(update={"serve": serve})


def serve_member(config, verbose: bool, stop) -> tuple[int, int, int]:
    """One consumer-group member until `stop` is set: its frames, alerts and dead letters."""
    import logging
    import threading

    from vad.pipeline import Pipeline, alert_listeners
    from vad.serve import StreamWorker
    from vad.stores import open_store

    for name in ("vad", "streams"):
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.INFO)
    reasoner = build_reasoner_for(config)
    with open_store(config.store) as store:
        pipeline = Pipeline.from_config(config, store, reasoner)
        pipeline.listeners += alert_listeners(config, store)  # event clips, alert outputs
        worker = StreamWorker(pipeline, config.kafka, config.serve)
        threading.Thread(target=lambda: stop.wait() and worker.stop(), daemon=True).start()
        stats = worker.run()
    return stats.frames, stats.alerts, sum(stats.dead_lettered.values())
