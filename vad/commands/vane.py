"""`vad vane`: VANE-Bench offline evaluation of any answerer, and question sets built from
labelled datasets (docs/vane.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from vad.commands.common import add_config_args, config_flag, config_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("vane", help="VANE-Bench: evaluate answerers, build "
                                                "question sets")
    commands = parser.add_subparsers(dest="vane_command", required=True)

    ev = commands.add_parser("eval", help="ask every question, score like the official script",
                             description="Reads either VANE-Bench form (folder with "
                             "<clip>_qa.txt files, or Hugging Face parquet), asks every "
                             "question, writes the official GT<tab>Pred prediction files, "
                             "report.json and accuracy.png; prints accuracy= last.")
    ev.add_argument("data", help="VQA_Data folder (or any folder above the _qa.txt files), "
                                 "a .parquet file or a folder of them")
    ev.add_argument("--answerer", required=True, metavar="SPEC",
                    help="openai:URL#MODEL, hf:ID_OR_DIR or vad:CONFIG.yaml")
    ev.add_argument("--subset", action="append", default=[], metavar="NAME",
                    help="only this subset (repeatable), e.g. UCSD-Ped2")
    config_flag(ev, "--frames", key="vane.frames", type=int, metavar="N",
                help="frames per clip")
    config_flag(ev, "--timeout", key="vane.timeout_s", type=float, metavar="S",
                help="seconds per question attempt")
    config_flag(ev, "--retries", key="vane.retries", type=int, metavar="N",
                help="re-asks of a failed question")
    ev.add_argument("--free-form", action="store_const", const=True,
                    dest="config:vane.free_form", default=None,
                    help="openai/hf: ask for a sentence, map it to a letter, report it "
                         "separately (config vane.free_form)")
    ev.add_argument("--out", required=True, type=Path,
                    help="output folder (answers.jsonl there is the cache a rerun resumes)")
    ev.add_argument("--no-progress", action="store_true")
    add_config_args(ev)
    ev.set_defaults(func=run_eval)

    build = commands.add_parser("build", help="a VANE-format question set from a labelled "
                                              "dataset and annotations")
    build.add_argument("dataset", help="labelled benchmark folder, e.g. ../shared/data/ped2")
    build.add_argument("--annotations", required=True, type=Path,
                       help="annotations YAML, e.g. datasets/vane/ped2.yaml")
    build.add_argument("--out", required=True, type=Path,
                       help="output folder (VQA_Data/<category>/<subset>/ is written in it)")
    config_flag(build, "--frames", key="vane.build.frames", type=int, metavar="N",
                help="frames sampled per clip")
    config_flag(build, "--seed", key="vane.build.seed", type=int, metavar="N",
                help="seed of distractors and answer letters")
    add_config_args(build)
    build.set_defaults(func=run_build)


def run_eval(args: argparse.Namespace) -> int:
    from vad.vane.answerers import build_answerer
    from vad.vane.questions import read_questions
    from vad.vane.report import build_report, summary_lines, write_outputs
    from vad.vane.runner import ask_all

    config = config_from_args(args).vane
    questions = read_questions(args.data, args.subset)
    clips = len({(q.subset, q.clip) for q in questions})
    print(f"{len(questions)} questions over {clips} clips "
          f"({', '.join(sorted({q.subset for q in questions}))})")
    answerer = build_answerer(args.answerer, config)
    records = ask_all(questions, answerer, config, args.out, progress=not args.no_progress)
    report = build_report(records, args.answerer, config.free_form)
    paths = write_outputs(records, report, args.out)
    for line in summary_lines(report):
        print(line)
    print("written: " + ", ".join(str(p) for p in paths))
    print(f"accuracy={report['overall']['accuracy']:.2f}")
    return 0


def run_build(args: argparse.Namespace) -> int:
    from vad.vane.builder import build

    config = config_from_args(args).vane.build
    written = build(args.dataset, args.annotations, args.out, config)
    for clip, folder, anomalous in written:
        print(f"{folder}: frames {clip.frames[0] + 1}-{clip.frames[1] + 1} of video "
              f"{clip.video} ({100 * anomalous:.0f} % labelled anomalous), "
              f"{len(clip.questions)} questions")
    questions = sum(len(clip.questions) for clip, _, _ in written)
    print(f"{len(written)} clips, {questions} questions")
    return 0
