"""`vad reason`: AnomalyRuler-style reasoning — describe, induce rules, evaluate deduction."""

from __future__ import annotations

import argparse

from vad.commands.common import (add_config_args, config_flag, config_from_args, positive_int,
                                 unit_fraction)


def register(subparsers: argparse._SubParsersAction) -> None:
    from reasoning.deduction import DEFAULT_DEDUCER
    from reasoning.smoothing import SCORES, PipelineConfig

    # The stage settings default to reasoning/smoothing.py's dataclasses (one place each)
    # until the config tree has them.
    pipeline = PipelineConfig()
    smoothing = pipeline.smoothing
    parser = subparsers.add_parser("reason", help="rule-based reasoning over frame descriptions")
    commands = parser.add_subparsers(dest="reason_command", required=True)

    ev = commands.add_parser("eval", help="frame AUC of deduction + smoothing on descriptions")
    ev.add_argument("descriptions", help="directory of per-video .txt files, one line per frame")
    ev.add_argument("--labels", required=True, help="CSV video,frame,label (frame 0-based)")
    config_flag(ev, "--rules", key="reasoning.rules", help="rules file (four sections)")
    ev.add_argument("--deduction", default=DEFAULT_DEDUCER,
                    help="keyword | fast | embed | llm (default %(default)s; embed and llm "
                         "take their settings from the config's reasoning.deduction)")
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
    ev.add_argument("--alpha", type=unit_fraction, default=smoothing.alpha,
                    help="perception EMA alpha")
    ev.add_argument("--window", type=positive_int, default=smoothing.window,
                    help="majority-vote window in frames")
    ev.add_argument("--threshold", default=str(smoothing.threshold),
                    help="perception threshold on the EMA, or video-mean (the reference "
                         "code's per-video mean, for its ablation)")
    ev.add_argument("--span", type=positive_int, default=smoothing.span,
                    help="EWM span of the score")
    config_flag(ev, "--llm", key="reasoning.llm.spec",
                help="for --deduction llm or --robust: transformers:DIR or openai:URL[#MODEL]")
    add_config_args(ev)
    ev.add_argument("--limit", type=positive_int,
                    help="judge only the first N frames of each video")
    ev.add_argument("--videos", nargs="+", help="evaluate only these video ids")
    ev.add_argument("--plot", help="save a PNG of per-video scores and labels here")
    ev.set_defaults(func=run_eval)
    register_more(commands)


def _threshold(text: str) -> float | None:
    import math

    from vad.errors import VadError

    if text == "video-mean":
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise VadError(f"--threshold {text!r}: expected a finite number or video-mean")
    return value


def run_eval(args: argparse.Namespace) -> int:
    import time

    from reasoning.deduction import build_deducer
    from reasoning.descriptions import descriptions_for, read_descriptions
    from reasoning.evaluation import evaluate
    from reasoning.llm import build_llm
    from reasoning.robust import RobustReasoner
    from reasoning.rules import load_rules
    from reasoning.smoothing import PipelineConfig, SmoothingConfig
    from vad.data.benchmarks import read_frame_labels
    from vad.errors import VadError

    config = config_from_args(args).reasoning
    if config.rules is None:
        raise VadError("--rules: a rules file is needed (or reasoning.rules in the config)")

    labels = read_frame_labels(args.labels)
    if args.videos:
        unknown = sorted(set(args.videos) - set(labels))
        if unknown:
            raise VadError(f"--videos: not in the labels: {', '.join(unknown)}")
        labels = {v: labels[v] for v in args.videos}
    descriptions = descriptions_for(read_descriptions(args.descriptions), labels,
                                    args.descriptions)
    rules = load_rules(config.rules)
    llm = build_llm(config.llm) if config.llm else None
    params = {}
    if args.normal:
        if args.deduction != "fast":
            raise VadError("--normal applies to --deduction fast")
        params["normal_descriptions"] = [line for lines in read_descriptions(
            args.normal).values() for line in lines]
    section = config.deduction if config.deduction.kind == args.deduction else args.deduction
    deducer = build_deducer(section, rules, llm, **params)
    robust = None
    if args.robust:
        if llm is None:
            raise VadError("--robust needs --llm (transformers:DIR or openai:URL)")
        robust = RobustReasoner(rules, llm)
    stages = PipelineConfig(args.perception, args.robust, args.score, SmoothingConfig(
        args.alpha, args.window, _threshold(args.threshold), args.span))
    print(f"{'video':>6} {'frames':>6} {'anom':>5} {'auc':>7}  top rule")

    def show(result) -> None:
        fired = [j.rule for j in result.judgements if j.verdict and j.rule]
        top = max(set(fired), key=fired.count) if fired else "-"
        auc = f"{result.auc:.4f}" if result.auc is not None else "   n/a"
        print(f"{result.video:>6} {result.frames:>6} {result.anomalous:>5} {auc:>7}  {top[:60]}",
              flush=True)

    start = time.perf_counter()
    result = evaluate(descriptions, labels, deducer, stages, robust, args.limit, on_video=show)
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
    config_flag(de, "--describer", key="reasoning.describer.kind", choices=("detector", "vlm"),
                help="describer")
    de.add_argument("--model", help="detector: YOLOX ONNX path (config "
                                    "reasoning.describer.model_path); vlm: HF id or directory "
                                    "(reasoning.describer.model)")
    de.add_argument("--prefix", default="test", help="file name prefix (default test)")
    de.add_argument("--calibrate", nargs="+", metavar="NORMAL_VIDEO",
                    help="detector: measure normal walking speed on these normal videos")
    config_flag(de, "--normal-speed", key="reasoning.describer.motion.normal_speed", type=float,
                help="detector: normal walking speed in body heights/s (as --calibrate prints)")
    add_config_args(de)
    de.set_defaults(func=run_describe)

    ind = commands.add_parser("induce", help="rules from descriptions of normal frames")
    ind.add_argument("descriptions", nargs="+", help="description files or directories")
    config_flag(ind, "--llm", key="reasoning.llm.spec", help="transformers:DIR or openai:URL[#MODEL]")
    ind.add_argument("--out", required=True, help="rules file to write")
    config_flag(ind, "--batches", key="reasoning.induction.batches", type=int,
                help="batches of sampled descriptions")
    config_flag(ind, "--batch-size", key="reasoning.induction.batch_size", type=int,
                help="descriptions per batch")
    config_flag(ind, "--min-fraction", key="reasoning.induction.min_fraction", type=float,
                help="keep a normal rule found in at least this fraction of batches")
    config_flag(ind, "--seed", key="reasoning.induction.seed", type=int, help="sampling seed")
    add_config_args(ind)
    ind.set_defaults(func=run_induce)


def run_describe(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from reasoning.describers import build_describer, calibrate_normal_speed
    from reasoning.descriptions import write_descriptions
    from streams.sources import open_source
    from vad.errors import VadError

    extra = {}
    if args.model:  # one flag, the field of whichever describer runs
        kind = config_from_args(args).reasoning.describer.kind
        extra[f"reasoning.describer.{'model' if kind == 'vlm' else 'model_path'}"] = args.model
    config = config_from_args(args, extra).reasoning.describer
    if args.calibrate and config.kind != "detector":
        raise VadError("--calibrate applies to --describer detector only")
    describer = build_describer(config)
    if args.calibrate:
        speed = calibrate_normal_speed(describer, [open_source(v) for v in args.calibrate])
        print(f"normal walking speed: {speed:.3f} body heights/s")
        describer.motion = describer.motion.model_copy(update={"normal_speed": speed})
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

    config = config_from_args(args).reasoning
    if config.llm is None:
        raise VadError("--llm: an LLM is needed (or reasoning.llm in the config)")
    lines: list[str] = []
    for spec in args.descriptions:
        path = Path(spec)
        if path.is_dir():
            lines += [line for video in read_descriptions(path).values() for line in video]
        elif path.is_file():
            lines += path.read_text().splitlines()
        else:
            raise VadError(f"{path}: no such description file or directory")
    induction = config.induction
    rules, batches = induce_rules(lines, build_llm(config.llm), induction.batches,
                                  induction.batch_size, induction.min_fraction, induction.seed)
    print(f"{len(batches)}/{induction.batches} batches gave rules; kept {len(rules.normal)} "
          f"normal and {len(rules.anomaly)} anomaly rules")
    print(f"rules: {save_rules(rules, args.out)}")
    return 0
