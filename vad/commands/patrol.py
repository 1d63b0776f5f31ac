"""`vad patrol index|run|synth|eval`: patrol mode, anomalies as changes against a reference
pass along the same route (docs/patrol.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from vad.commands.common import add_config_args, config_flag, config_from_args, provenance

SOURCE_HELP = "video file, folder of frames, or rtsp/http URL"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("patrol", help="reference-based change detection along a "
                                                  "patrol route", description=__doc__)
    commands = parser.add_subparsers(dest="patrol_command", required=True)

    index = commands.add_parser("index", help="index a reference pass",
                                description="Index a reference pass (descriptors for matching, "
                                            "keypoints for alignment, frames, poses) into a "
                                            "checkpoint folder for `vad patrol run`.")
    index.add_argument("reference", metavar="REFERENCE", help=SOURCE_HELP)
    index.add_argument("--out", required=True, type=Path, help="index folder to write")
    index.add_argument("--poses", type=Path, metavar="CSV",
                       help="poses.csv (split,frame,x,y,yaw): its reference rows")
    add_config_args(index)
    index.add_argument("--no-progress", action="store_true")
    index.set_defaults(func=run_index)

    run = commands.add_parser("run", help="run a query pass against a reference index",
                              description="Match, align and compare every query frame with "
                                          "the reference; alerts go to the store like `vad "
                                          "run`'s, with the matched reference as evidence.")
    run.add_argument("query", metavar="QUERY", help=SOURCE_HELP)
    run.add_argument("--reference", required=True, type=Path, metavar="DIR",
                     help="index folder written by `vad patrol index`")
    config_flag(run, "--store", key="store.url", help="alert store URL")
    run.add_argument("--out", type=Path, metavar="DIR",
                     help="write per-frame predictions here (mask/*.png, frames.jsonl) for "
                          "`vad patrol eval --predictions`")
    run.add_argument("--poses", type=Path, metavar="CSV",
                     help="the query's own poses (poses.csv query rows, e.g. odometry) to "
                          "help the matching")
    run.add_argument("--camera", help="camera id (default: the source's name; a layout's "
                                      "SEQUENCE/query folder is camera SEQUENCE)")
    add_config_args(run)
    run.add_argument("--no-progress", action="store_true")
    run.set_defaults(func=run_query)

    synth = commands.add_parser(
        "synth", help="synthesise patrol sequences from static-camera footage",
        description="Synthetic patrol sequences in the patrol layout: background plates of "
                    "the scene videos, routes of perspective views, query passes with pose "
                    "error, lighting change, noise and JPEG, new objects cut from the masked "
                    "source (docs/patrol.md).")
    synth.add_argument("scenes", nargs="+", metavar="SCENE_VIDEO",
                       help="static-camera videos or frame folders, one background each")
    synth.add_argument("--objects", required=True, type=Path, metavar="MASKED_SOURCE",
                       help="benchmark folder with test/*.mp4 and test_masks/*.npz pixel "
                            "masks (e.g. ../shared/data/ped2)")
    synth.add_argument("--object-videos", metavar="NAME[,NAME...]",
                       help="cut objects only from these test videos (default: all masked)")
    synth.add_argument("--out", required=True, type=Path, metavar="ROOT",
                       help="patrol root to create (must not hold anything)")
    config_flag(synth, "--seed", key="patrol.synth.seed", type=int, help="random seed")
    add_config_args(synth)
    synth.add_argument("--no-progress", action="store_true")
    synth.set_defaults(func=run_synth)

    evaluate = commands.add_parser(
        "eval", help="score patrol sequences with UMAD's metric",
        description="For each sequence of ROOT: index its reference, run its query and score "
                    "it (or score saved predictions); prints a per-sequence table, writes "
                    "report.json and an image strip per sequence, and prints f1= last.")
    evaluate.add_argument("root", type=Path, metavar="ROOT", help="patrol root (docs/patrol.md)")
    evaluate.add_argument("--predictions", type=Path, metavar="DIR",
                          help="score DIR/<sequence> (written by `vad patrol run --out`) "
                               "instead of running")
    evaluate.add_argument("--out", type=Path, metavar="DIR",
                          help="report folder (default runs/patrol-eval-ROOT)")
    add_config_args(evaluate)
    evaluate.add_argument("--no-progress", action="store_true")
    evaluate.set_defaults(func=run_eval)


def _poses(path: Path | None, split: str):
    from vad.data.patrol import read_poses
    from vad.errors import VadError

    if path is None:
        return None
    poses = read_poses(path)
    if split not in poses:
        raise VadError(f"{path}: no {split} rows")
    return poses[split]


def run_index(args: argparse.Namespace) -> int:
    from streams.sources import open_source
    from vad.patrol import index_reference

    config = config_from_args(args)
    source = open_source(args.reference)
    poses = _poses(args.poses, "reference")
    out = index_reference(config, source, args.out, poses,
                          provenance(args, {"reference": str(args.reference)}),
                          progress=not args.no_progress)
    print(f"indexed the reference {args.reference}{' with its poses' if poses else ''}: {out}")
    return 0


def run_query(args: argparse.Namespace) -> int:
    from streams.sources import open_source
    from vad.commands.run import print_alerts
    from vad.patrol import PatrolRecorder, patrol_config, run_query as run_patrol
    from vad.stores import open_store, redacted

    config = patrol_config(config_from_args(args), args.reference)
    path = Path(args.query)
    camera = args.camera or (path.parent.name if path.name == "query" and path.is_dir()
                             else None)
    source = open_source(args.query, camera)
    recorder = PatrolRecorder(args.out)
    with open_store(config.store) as store:
        alerts = run_patrol(config, source, store, recorder, _poses(args.poses, "query"),
                            progress=not args.no_progress)
        alerts = [store.get(alert.id) or alert for alert in alerts]
    print_alerts(alerts, source.camera_id)
    counts = ", ".join(f"{recorder.statuses[s]} {s}" for s in ("aligned", "lost", "unaligned"))
    print(f"{sum(recorder.statuses.values())} query frames: {counts}")
    if args.out:
        print(f"predictions: {args.out}")
    print(f"alerts stored in {redacted(config.store.url)}")
    return 0


def run_synth(args: argparse.Namespace) -> int:
    import shlex

    from vad.data.patrol_synth import synthesize

    config = config_from_args(args)
    videos = args.object_videos.split(",") if args.object_videos else None
    summary = synthesize(args.scenes, args.objects, args.out, config.patrol.synth, videos,
                         progress=not args.no_progress,
                         command=shlex.join(["vad", *args.argv]))
    sequences = summary["sequences"]
    anomalous = sum(s["anomalous"] for s in sequences.values())
    print(f"{len(sequences)} sequences ({anomalous} with new objects, "
          f"{len(sequences) - anomalous} without; {summary['objects_available']} objects cut) "
          f"in {args.out}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from vad.patrol import evaluate_patrol

    config = config_from_args(args)
    out = args.out or Path("runs") / f"patrol-eval-{args.root.name}"
    report = evaluate_patrol(args.root, config, out, args.predictions,
                             progress=not args.no_progress,
                             provenance=provenance(args, {"root": str(args.root)}))
    _print_report(report, out)
    print(f"iou={_fmt(report['iou'])}")
    print(f"f1={_fmt(report['f1'])}")
    return 0


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def _print_report(report: dict, out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False, width=max(Console().width, 120))
    table = Table(title="patrol sequences: pixel IoU / F1 of the anomaly class")
    columns = ("sequence", "frames", "anomalous", "iou", "f1", "box_precision", "box_recall",
               "match_accuracy", "unaligned_share", "lost_share", "alerts")
    for column in columns:
        table.add_column(column.replace("_", " "), justify="right")
    for row in report["per_sequence"]:
        table.add_row(*(str(row[c]) if c in ("sequence", "frames", "anomalous", "alerts")
                        else _fmt(row[c]) for c in columns))
    console.print(table)
    console.print(f"all {report['frames']} query frames: IoU {_fmt(report['iou'])}  F1 "
                  f"{_fmt(report['f1'])}  boxes P {_fmt(report['box_precision'])} R "
                  f"{_fmt(report['box_recall'])}  matching {_fmt(report['match_accuracy'])}  "
                  f"unaligned {_fmt(report['unaligned_share'])}  lost "
                  f"{_fmt(report['lost_share'])}")
    if report["normal_sequences_with_alerts"] is not None:
        console.print(f"sequences without anomalies that raised an alert: "
                      f"{report['normal_sequences_with_alerts']} of {report['normal_sequences']}")
    console.print(f"report: {out / 'report.json'}  strips: {out / 'strips'}")
