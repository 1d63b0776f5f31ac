"""`vad run SOURCE [--checkpoint DIR] [--store URL]`: score a video or stream, store alerts."""

from __future__ import annotations

import argparse
from datetime import datetime

from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from streams.sources import open_source
from vad.commands.common import add_config_args, add_scorer_args, config_from_args
from vad.pipeline import Pipeline
from vad.stores import open_store


def register(subparsers) -> None:
    parser = subparsers.add_parser("run", help="detect anomalies in a video, folder or stream",
                                   description=__doc__)
    parser.add_argument("source", help="video file, folder of frames, or rtsp/http URL")
    add_scorer_args(parser)
    add_config_args(parser)
    parser.add_argument("--store", help="alert store URL (default from config: sqlite:///vad.db)")
    parser.add_argument("--camera", help="camera id (default: the file or folder name)")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    source = open_source(args.source, camera_id=args.camera or config.camera_id)
    with open_store(args.store or config.store) as store:
        pipeline = Pipeline.from_config(config, store)
        frames = tqdm(source, total=len(source) or None, desc=f"camera {source.camera_id}",
                      unit="frame", disable=args.no_progress)
        try:
            alerts = pipeline.process_all(frames)
        finally:
            pipeline.close()
        alerts = [store.get(alert.id) or alert for alert in alerts]
    _print_alerts(alerts, source.camera_id, args.store or config.store)
    return 0


def _print_alerts(alerts, camera_id: str, store_url: str) -> None:
    console = Console(highlight=False)
    if not alerts:
        console.print(f"no anomalous events on camera {camera_id}")
        return
    table = Table(title=f"{len(alerts)} anomalous event(s) on camera {camera_id}")
    for column in ("alert id", "frames", "time (s)", "peak z", "mean z", "explanation"):
        table.add_column(column)
    for alert in alerts:
        table.add_row(alert.id, f"{alert.start_frame}-{alert.end_frame}",
                      f"{alert.start_time:.1f}-{alert.end_time:.1f}",
                      f"{alert.peak_score:.2f}", f"{alert.mean_score:.2f}",
                      "\n".join(filter(None, [alert.rule, alert.motion_description])))
    console.print(table)
    console.print(f"alerts stored in {store_url} at {datetime.now():%H:%M:%S}")
