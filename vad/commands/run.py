"""`vad run SOURCE... [--checkpoint DIR] [--store URL]`: score videos or streams, store alerts.

Without SOURCE, every camera of the config's `cameras:` section that names a `source` runs,
all at once. Live streams run until they give up (live.give_up_after_s) or until Ctrl-C or
SIGTERM, which close and store the open events; their status is stored per camera."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from vad.commands.common import (add_config_args, add_scorer_args, build_reasoner_for, config_flag,
                                 config_from_args, open_sources)


def register(subparsers) -> None:
    parser = subparsers.add_parser("run", help="detect anomalies in videos, folders or streams",
                                   description=__doc__)
    parser.add_argument("sources", nargs="*", metavar="SOURCE",
                        help="video file, folder of frames, or rtsp/http URL")
    add_scorer_args(parser)
    add_config_args(parser)
    config_flag(parser, "--store", key="store.url", help="alert store URL")
    config_flag(parser, "--workers", key="workers.processes", type=int, metavar="N",
                help="processes scoring the cameras (groups of cameras, one per core)")
    parser.add_argument("--camera", help="camera id of a single SOURCE (default: the file or "
                                         "folder name)")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import threading

    from vad.errors import VadError
    from vad.stores import open_store, redacted
    from vad.workers import worker_count

    config = config_from_args(args)
    if args.camera and len(args.sources) != 1:
        raise VadError("--camera names the camera of a single SOURCE")
    sources = open_sources(config, args.sources, [args.camera] * len(args.sources))
    if not sources:
        raise VadError("nothing to run: give a SOURCE or cameras with a source in the config")
    stop = threading.Event()
    workers = worker_count(config.workers, len(sources))
    with open_store(config.store) as store:
        with _stopped_by_signals(stop):
            if workers > 1:
                result, failures = _run_in_processes(config, sources, workers, store, stop,
                                                     not args.no_progress)
            else:
                result, failures = _run_here(config, sources, store, stop, not args.no_progress)
        alerts = [store.get(alert.id) or alert for alert in result.alerts]
    for source in sources:
        print_alerts([a for a in alerts if a.camera_id == source.camera_id], source.camera_id)
    print(f"alerts stored in {redacted(config.store.url)}")
    if result.stopped:
        print("stopped: open events were closed and stored")
    if failures:
        print(f"warning: {failures} alert(s) could not be explained "
              "(see the log and the alerts' explanation)")
    for error in result.errors.values():
        if not isinstance(error, VadError):
            raise error
    if result.errors:
        for camera, error in result.errors.items():
            print(f"error: camera {camera}: {error}", file=sys.stderr)
        return 2
    return 0


def _run_here(config, sources, store, stop, progress: bool):
    """All cameras in this process: the CameraRun and the explanation failures."""
    from vad.cameras import run_cameras
    from vad.pipeline import Pipeline, alert_listeners

    pipeline = Pipeline.from_config(config, store, build_reasoner_for(config))
    pipeline.listeners += alert_listeners(config, store)  # event clips, alert outputs
    try:
        result = run_cameras(sources, pipeline, store, stop, progress=progress)
    finally:
        pipeline.close()
    return result, pipeline.explanation_failures


def _run_in_processes(config, sources, workers: int, store, stop, progress: bool):
    """Camera groups in worker processes: their alerts (read back from the store), errors and
    explanation failures, as one CameraRun."""
    from vad.cameras import CameraRun
    from vad.errors import VadError
    from vad.workers import run_camera_groups

    cameras = [(source.location, source.camera_id) for source in sources]
    groups = run_camera_groups(config, cameras, workers, build_reasoner_for, stop, progress)
    result = CameraRun(stopped=any(group.stopped for group in groups))
    for group in groups:
        result.alerts += [alert for alert in map(store.get, group.alert_ids) if alert]
        result.errors.update({camera: VadError(text) if is_vad else RuntimeError(text)
                              for camera, (is_vad, text) in group.errors.items()})
    return result, sum(group.explanation_failures for group in groups)


@contextmanager
def _stopped_by_signals(stop) -> Iterator[None]:
    """SIGTERM and a first Ctrl-C stop the run gracefully (open events are closed and
    stored); a second Ctrl-C interrupts at once."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def graceful(signum, frame) -> None:
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = {sig: signal.signal(sig, graceful) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def print_alerts(alerts, camera_id: str) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(highlight=False)
    if not alerts:
        console.print(Text(f"no anomalous events on camera {camera_id}"))
        return
    table = Table(title=Text(f"{len(alerts)} anomalous event(s) on camera {camera_id}"))
    for column in ("alert id", "frames", "time", "peak z", "mean z", "explanation"):
        table.add_column(column)
    for alert in alerts:
        # Text, not markup: alert fields are data and must show literally.
        table.add_row(Text(alert.id), f"{alert.start_frame}-{alert.end_frame}",
                      _times(alert.start_time, alert.end_time),
                      f"{alert.peak_score:.2f}", f"{alert.mean_score:.2f}",
                      Text("\n".join(filter(None, [alert.label, alert.rule, alert.explanation
                                                    if alert.kind != "anomaly" else "",
                                                    alert.motion_description]))))
    console.print(table)


def _times(start: float, end: float) -> str:
    """Seconds into a video, or UTC clock times for a live camera (Unix timestamps)."""
    if start < 1e9:
        return f"{start:.1f}-{end:.1f} s"
    from datetime import datetime, timezone

    return "-".join(datetime.fromtimestamp(t, timezone.utc).strftime("%H:%M:%S")
                    for t in (start, end)) + " UTC"
