"""`vad reason`: AnomalyRuler-style reasoning — describe, induce rules, evaluate deduction."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    from reasoning.deduction import DEFAULT_DEDUCER
    from reasoning.smoothing import SCORES, PipelineConfig

    pipeline = PipelineConfig()
    smoothing = pipeline.smoothing
    parser = subparsers.add_parser("reason", help="rule-based reasoning over frame descriptions")
    commands = parser.add_subparsers(dest="reason_command", required=True)

    ev = commands.add_parser("eval", help="frame AUC of deduction + smoothing on descriptions")
    ev.add_argument("descriptions", help="directory of per-video .txt files, one line per frame")
    ev.add_argument("--labels", required=True, help="CSV video,frame,label (frame 0-based)")
    ev.add_argument("--rules", required=True, help="rules file (four sections)")
    ev.add_argument("--deduction", default=DEFAULT_DEDUCER,
                    help="keyword | fast | embed | llm (default %(default)s)")
    ev.add_argument("--normal", metavar="DIR",
                    help="fast: descriptions of normal frames (those the rules were induced "
                         "from); an atom that matches often there counts less")
    ev.add_argument("--perception", action=argparse.BooleanOptionalAction,
                    default=pipeline.perception,
                    help="perception smoothing: EMA, fixed threshold, majority vote")
    ev.add_argument("--robust", action=argparse.BooleanOptionalAction, default=pipeline.robust,
                    help="robust reasoning: the LLM (--llm) double-checks frames decided normal")
    ev.add_argument("--score", choices=SCORES, default=pipeline.score,
                    help="final score: EWM of the per-frame values, or them as they are")
    ev.add_argument("--alpha", type=float, default=smoothing.alpha, help="perception EMA alpha")
    ev.add_argument("--window", type=int, default=smoothing.window,
                    help="majority-vote window in frames")
    ev.add_argument("--threshold", default=str(smoothing.threshold),
                    help="perception threshold on the EMA, or video-mean (the reference "
                         "code's per-video mean, for its ablation)")
    ev.add_argument("--span", type=int, default=smoothing.span, help="EWM span of the score")
    ev.add_argument("--llm", help="transformers:DIR or openai:URL[#MODEL], for --deduction llm "
                                  "or --robust")
    ev.add_argument("--limit", type=int, help="judge only the first N frames of each video")
    ev.add_argument("--videos", nargs="+", help="evaluate only these video ids")
    ev.add_argument("--plot", help="save a PNG of per-video scores and labels here")
    ev.set_defaults(func=run_eval)
    register_more(commands)


def _threshold(text: str) -> float | None:
    from vad.errors import VadError

    if text == "video-mean":
        return None
    try:
        return float(text)
    except ValueError:
        raise VadError(f"--threshold {text!r}: expected a number or video-mean") from None


def run_eval(args: argparse.Namespace) -> int:
    import time

    from reasoning.deduction import build_deducer
    from reasoning.descriptions import descriptions_for, read_descriptions
    from reasoning.evaluation import evaluate
    from reasoning.llm import build_llm
    from reasoning.robust import RobustReasoner
    from reasoning.rules import load_rules
    from reasoning.smoothing import PipelineConfig, SmoothingConfig
    from vad.datasets import read_frame_labels
    from vad.errors import VadError

    labels = read_frame_labels(args.labels)
    if args.videos:
        unknown = sorted(set(args.videos) - set(labels))
        if unknown:
            raise VadError(f"--videos: not in the labels: {', '.join(unknown)}")
        labels = {v: labels[v] for v in args.videos}
    descriptions = descriptions_for(read_descriptions(args.descriptions), labels,
                                    args.descriptions)
    rules = load_rules(args.rules)
    llm = build_llm(args.llm) if args.llm else None
    params = {}
    if args.deduction == "llm":
        if llm is None:
            raise VadError("--deduction llm needs --llm (transformers:DIR or openai:URL)")
        params["llm"] = llm
    if args.normal:
        if args.deduction != "fast":
            raise VadError("--normal applies to --deduction fast")
        params["normal_descriptions"] = [line for lines in read_descriptions(
            args.normal).values() for line in lines]
    deducer = build_deducer(args.deduction, rules, **params)
    robust = None
    if args.robust:
        if llm is None:
            raise VadError("--robust needs --llm (transformers:DIR or openai:URL)")
        robust = RobustReasoner(rules, llm)
    config = PipelineConfig(args.perception, args.robust, args.score, SmoothingConfig(
        args.alpha, args.window, _threshold(args.threshold), args.span))
    print(f"{'video':>6} {'frames':>6} {'anom':>5} {'auc':>7}  top rule")

    def show(result) -> None:
        fired = [j.rule for j in result.judgements if j.verdict and j.rule]
        top = max(set(fired), key=fired.count) if fired else "-"
        auc = f"{result.auc:.4f}" if result.auc is not None else "   n/a"
        print(f"{result.video:>6} {result.frames:>6} {result.anomalous:>5} {auc:>7}  {top[:60]}",
              flush=True)

    start = time.perf_counter()
    result = evaluate(descriptions, labels, deducer, config, robust, args.limit, on_video=show)
    seconds = time.perf_counter() - start
    if args.plot:
        from reasoning.evaluation import plot_result

        print(f"plot: {plot_result(result, labels, args.plot)}")
    frames = sum(v.frames for v in result.videos)
    print(f"deduction={args.deduction} perception={args.perception} robust={args.robust} "
          f"score={args.score} invalid_answers={result.invalid} llm_calls={result.llm_calls} "
          f"seconds_per_frame={seconds / max(frames, 1):.4f}")
    print(f"raw_micro_auc={result.raw_micro_auc:.4f} macro_auc={result.macro_auc:.4f} "
          f"ap={result.ap:.4f}")
    print(f"micro_auc={result.micro_auc:.4f}")
    return 0


def register_more(commands: argparse._SubParsersAction) -> None:
    de = commands.add_parser("describe", help="write per-frame descriptions of videos")
    de.add_argument("videos", nargs="+", help="video files or frame folders")
    de.add_argument("--out", required=True, help="directory for <prefix>_<video>.txt files")
    de.add_argument("--describer", choices=("detector", "vlm"), default="detector")
    de.add_argument("--model", help="detector: YOLOX ONNX path; vlm: HF id or directory")
    de.add_argument("--prefix", default="test", help="file name prefix (default test)")
    de.add_argument("--calibrate", nargs="+", metavar="NORMAL_VIDEO",
                    help="detector: measure normal walking speed on these normal videos")
    de.add_argument("--normal-speed", type=float,
                    help="detector: normal walking speed in body heights/s (as --calibrate prints)")
    de.set_defaults(func=run_describe)

    ind = commands.add_parser("induce", help="rules from descriptions of normal frames")
    ind.add_argument("descriptions", nargs="+", help="description files or directories")
    ind.add_argument("--llm", required=True, help="transformers:DIR or openai:URL[#MODEL]")
    ind.add_argument("--out", required=True, help="rules file to write")
    ind.add_argument("--batches", type=int, default=5)
    ind.add_argument("--batch-size", type=int, default=5)
    ind.add_argument("--min-fraction", type=float, default=0.5,
                     help="keep a normal rule found in at least this fraction of batches")
    ind.add_argument("--seed", type=int, default=0)
    ind.set_defaults(func=run_induce)


def run_describe(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from reasoning.describers import MotionConfig, build_describer, calibrate_normal_speed
    from reasoning.descriptions import write_descriptions
    from streams.sources import open_source
    from vad.errors import VadError

    params = {}
    if args.describer == "detector":
        params["model_path"] = args.model
    elif args.describer == "vlm":
        if not args.model:
            raise VadError("--describer vlm needs --model (a Hugging Face id or directory)")
        params["model"] = args.model
    describer = build_describer(args.describer, **params)
    if args.calibrate:
        if args.describer != "detector":
            raise VadError("--calibrate applies to --describer detector only")
        speed = calibrate_normal_speed(describer, [open_source(v) for v in args.calibrate])
        print(f"normal walking speed: {speed:.3f} body heights/s")
        args.normal_speed = speed
    if args.normal_speed:
        if args.describer != "detector":
            raise VadError("--normal-speed applies to --describer detector only")
        describer.motion = MotionConfig(normal_speed=args.normal_speed)
    for video in args.videos:
        source = open_source(video)
        if hasattr(describer, "reset"):
            describer.reset()
        frames = tqdm(source, total=len(source) or None, desc=source.camera_id, unit="frame")
        lines = [describer.describe([frame])[0] for frame in frames]
        path = write_descriptions(args.out, source.camera_id, lines, args.prefix)
        print(f"{path}: {len(lines)} frames")
    return 0


def run_induce(args: argparse.Namespace) -> int:
    from pathlib import Path

    from reasoning.descriptions import read_descriptions
    from reasoning.induction import induce_rules
    from reasoning.llm import build_llm
    from reasoning.rules import save_rules
    from vad.errors import VadError

    lines: list[str] = []
    for spec in args.descriptions:
        path = Path(spec)
        if path.is_dir():
            lines += [line for video in read_descriptions(path).values() for line in video]
        elif path.is_file():
            lines += path.read_text().splitlines()
        else:
            raise VadError(f"{path}: no such description file or directory")
    rules, batches = induce_rules(lines, build_llm(args.llm), args.batches, args.batch_size,
                                  args.min_fraction, args.seed)
    print(f"{len(batches)}/{args.batches} batches gave rules; kept {len(rules.normal)} normal "
          f"and {len(rules.anomaly)} anomaly rules")
    print(f"rules: {save_rules(rules, args.out)}")
    return 0
