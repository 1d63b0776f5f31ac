"""`vad eval DATASET --scorer NAME[+NAME] [--checkpoint DIR]...`: frame AUC on a benchmark.

DATASET may instead be a VadCLIP list CSV of test videos (snippet features or videos) for a
`vadclip` checkpoint, with its ground truth (--labels, --annotations or --gt): frame AUC, AUC
on the anomalous videos, AP and fine-grained mAP in VadCLIP's protocols (docs/vadclip.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from vad.commands.common import (add_config_args, add_scorer_args, config_from_args, provenance,
                                 writable_dir)


def register(subparsers) -> None:
    parser = subparsers.add_parser("eval", help="evaluate scorers on a benchmark dataset",
                                   description=__doc__)
    parser.add_argument("dataset", type=Path, help="benchmark folder, e.g. ../shared/data/ped2, "
                                                   "or a list CSV of test videos")
    truth = parser.add_argument_group("ground truth of a list CSV (one of)")
    truth.add_argument("--labels", type=Path, help="frame labels CSV: video,frame,label")
    truth.add_argument("--annotations", type=Path, help="VadCLIP/UCF-Crime/XD-Violence temporal "
                                                        "annotation text file")
    truth.add_argument("--gt", type=Path, help="upstream's concatenated frame ground truth .npy")
    add_scorer_args(parser)
    add_config_args(parser)
    parser.add_argument("--out", type=Path, help="report folder (default runs/eval-SCORER)")
    parser.add_argument("--record", action="store_true",
                        help="add the measured figures to each checkpoint's provenance")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run)


def _fit_missing(config, benchmark, out: Path, args: argparse.Namespace) -> None:
    """Scorers without a checkpoint are fitted on the benchmark's train split first."""
    from models import get_scorer
    from vad.errors import VadError

    for i, entry in enumerate(config.scorers):
        if entry.checkpoint is not None:
            continue
        if not len(benchmark.train):
            raise VadError(f"{benchmark.root}: no train split to fit {entry.name!r}; "
                           "pass --checkpoint")
        scorer = get_scorer(entry.name, entry.params, config.device)
        scorer.work_dir = out / "checkpoints" / entry.name
        scorer.fit(benchmark.train, progress=not args.no_progress)
        saved = scorer.save(scorer.work_dir, provenance(args, benchmark.train.summary()))
        config.scorers[i] = entry.model_copy(update={"checkpoint": str(saved)})


def run_list(args: argparse.Namespace) -> int:
    from models import load_scorer
    from models.base import record_figures
    from vad.errors import VadError
    from vad.weak_eval import evaluate_list

    config = config_from_args(args)
    entry = config.scorers[0]
    if len(config.scorers) != 1 or entry.name != "vadclip" or entry.checkpoint is None:
        raise VadError("a list CSV is evaluated with one vadclip checkpoint: "
                       "--scorer vadclip --checkpoint DIR")
    scorer = load_scorer(entry.checkpoint, entry.params, config.device)
    out = args.out or Path("runs") / f"eval-vadclip-{args.dataset.stem}"
    report = evaluate_list(scorer, args.dataset, out, labels=args.labels,
                           annotations=args.annotations, gt=args.gt,
                           progress=not args.no_progress)
    for protocol, branches in report["protocols"].items():
        for branch, m in branches.items():
            print(f"{protocol:>7} {branch}: AUC {_fmt(m['auc'])}  AUC on anomalous videos "
                  f"{_fmt(m['auc_anomalous'])}  AP {_fmt(m['ap'])}")
    fine = report.get("fine_grained")
    if fine:
        print("fine-grained mAP@IoU " + "  ".join(f"{iou:.1f}: {_fmt(m, 2)}" for iou, m in
                                                 zip(fine["iou"], fine["map"]))
              + f"  average: {_fmt(fine['average'], 2)}")
    print(f"report: {out / 'report.json'}  plot: {out / 'scores.png'}")
    if args.record:
        record_figures(entry.checkpoint, {f"{args.dataset.name}:vadclip": {
            **{k: report[k] for k in ("auc", "auc_anomalous", "ap")},
            "map_average": fine["average"] if fine else None,
            "command": _reproducing_command(args.argv)}})
    print(f"ap={report['ap']:.4f}")
    print(f"auc={report['auc']:.4f}")
    return 0


def run(args: argparse.Namespace) -> int:
    from models.base import record_figures
    from vad.data.benchmarks import load_benchmark
    from vad.errors import VadError
    from vad.evaluation import evaluate
    from vad.pipeline import ScorerCache

    if args.dataset.suffix.lower() == ".csv":
        return run_list(args)
    if args.labels or args.annotations or args.gt:
        raise VadError("--labels, --annotations and --gt are for a list CSV; a benchmark folder "
                       "has its own labels")
    config = config_from_args(args)
    benchmark = load_benchmark(args.dataset)
    name = "+".join(entry.name for entry in config.scorers)
    out = writable_dir(args.out or Path("runs") / f"eval-{name}", "report")
    _fit_missing(config, benchmark, out, args)
    slots = ScorerCache(config.device).slots(config)
    report = evaluate(slots, benchmark, config.postprocess, out, config.window.batch,
                      progress=not args.no_progress)
    _print_report(report, out)
    if args.record:
        figures = {f"{benchmark.root.name}:{name}": {
            "micro_auc": report["micro_auc"], "online_micro_auc": report["online"]["micro_auc"],
            "macro_auc": report["macro_auc"], "ap": report["ap"],
            "pixel_auc": report["pixel_auc"], "command": _reproducing_command(args.argv)}}
        for entry in config.scorers:
            record_figures(entry.checkpoint, figures)
    print(f"online_micro_auc={report['online']['micro_auc']:.4f}")
    print(f"micro_auc={report['micro_auc']:.4f}")
    return 0


def _reproducing_command(argv: list[str]) -> str:
    """The command line without what does not change the figures (where they were written)."""
    import shlex

    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--out":
            skip = True
        elif arg not in ("--record", "--no-progress") and not arg.startswith("--out="):
            kept.append(arg)
    return shlex.join(["vad", *kept])


def _fmt(value, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _print_report(report: dict, out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False, width=max(Console().width, 110))
    table = Table(title="per-video frame AUC / AP")
    for column in ("video", "frames", "anomalous", "offline AUC", "offline AP", "online AUC",
                   "online AP"):
        table.add_column(column, justify="right")
    for off, on in zip(report["offline"]["per_video"], report["online"]["per_video"]):
        table.add_row(off["video"], str(off["frames"]), str(off["anomalous"]), _fmt(off["auc"]),
                      _fmt(off["ap"]), _fmt(on["auc"]), _fmt(on["ap"]))
    console.print(table)
    for protocol in ("offline", "online"):
        m = report[protocol]
        console.print(f"{protocol:>7}: micro AUC {_fmt(m['micro_auc'])}  macro AUC "
                      f"{_fmt(m['macro_auc'])} (over {m['macro_videos']} videos with both "
                      f"classes)  AP {_fmt(m['ap'])}")
    console.print(f"  pixel: AUC {_fmt(report['pixel_auc'])} at "
                  f"{report['heatmap_size'][0]}x{report['heatmap_size'][1]}")
    console.print(f"report: {out / 'report.json'}  plots: {out / 'scores.png'}, {out / 'roc.png'}")
