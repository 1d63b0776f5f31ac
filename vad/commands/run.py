"""`vad run SOURCE... [--checkpoint DIR] [--store URL]`: score videos or streams, store alerts.

Without SOURCE, every camera of the config's `cameras:` section that names a `source` runs."""

from __future__ import annotations

import argparse

from vad.commands.common import (add_config_args, add_scorer_args, build_reasoner_for, config_flag,
                                 config_from_args)


def register(subparsers) -> None:
    parser = subparsers.add_parser("run", help="detect anomalies in videos, folders or streams",
                                   description=__doc__)
    parser.add_argument("sources", nargs="*", metavar="SOURCE",
                        help="video file, folder of frames, or rtsp/http URL")
    add_scorer_args(parser)
    add_config_args(parser)
    config_flag(parser, "--store", key="store.url", help="alert store URL")
    parser.add_argument("--camera", help="camera id of a single SOURCE (default: the file or "
                                         "folder name)")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streams.sources import open_source
    from vad.errors import VadError
    from vad.pipeline import Pipeline
    from vad.stores import open_store, redacted

    config = config_from_args(args)
    if args.camera and len(args.sources) != 1:
        raise VadError("--camera names the camera of a single SOURCE")
    sources = ([open_source(spec, args.camera) for spec in args.sources] if args.sources else
               [open_source(cam.source, cid) for cid, cam in config.cameras.items() if cam.source])
    if not sources:
        raise VadError("nothing to run: give a SOURCE or cameras with a source in the config")
    reasoner = build_reasoner_for(config)
    with open_store(config.store) as store:
        pipeline = Pipeline.from_config(config, store, reasoner)
        try:
            alerts = [a for source in sources for a in _run_source(pipeline, source, args)]
        finally:
            pipeline.close()
        alerts = [store.get(alert.id) or alert for alert in alerts]
    for source in sources:
        print_alerts([a for a in alerts if a.camera_id == source.camera_id], source.camera_id)
    print(f"alerts stored in {redacted(config.store.url)}")
    if pipeline.explanation_failures:
        print(f"warning: {pipeline.explanation_failures} alert(s) could not be explained "
              "(see the log and the alerts' explanation)")
    return 0


def _run_source(pipeline, source, args) -> list:
    from tqdm import tqdm

    frames = tqdm(source, total=len(source) or None, desc=f"camera {source.camera_id}",
                  unit="frame", disable=args.no_progress)
    alerts = [alert for frame in frames for alert in pipeline.process(frame)]
    return alerts + pipeline.finish(source.camera_id)


def print_alerts(alerts, camera_id: str) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(highlight=False)
    if not alerts:
        console.print(Text(f"no anomalous events on camera {camera_id}"))
        return
    table = Table(title=Text(f"{len(alerts)} anomalous event(s) on camera {camera_id}"))
    for column in ("alert id", "frames", "time (s)", "peak z", "mean z", "explanation"):
        table.add_column(column)
    for alert in alerts:
        # Text, not markup: alert fields are data and must show literally.
        table.add_row(Text(alert.id), f"{alert.start_frame}-{alert.end_frame}",
                      f"{alert.start_time:.1f}-{alert.end_time:.1f}",
                      f"{alert.peak_score:.2f}", f"{alert.mean_score:.2f}",
                      Text("\n".join(filter(None, [alert.label, alert.rule,
                                                    alert.motion_description]))))
    console.print(table)
