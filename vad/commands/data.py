"""`vad data fetch ped2|ped1 [--to DIR]`: download the official UCSD Anomaly Detection archive
(once, resumably, kept in the cache), check its structure and convert the subset into the
layout `vad eval` reads (train/NN.mp4, test/NN.mp4, test_labels.csv, test_masks/, meta.json)."""

from __future__ import annotations

import argparse
from pathlib import Path

from vad.commands.common import add_config_args, config_flag, config_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="download and prepare benchmark datasets",
                                   description=__doc__)
    commands = parser.add_subparsers(dest="data_command", required=True)
    fetch = commands.add_parser(
        "fetch", help="download a UCSD benchmark and convert it for `vad eval`",
        description=__doc__)
    fetch.add_argument("dataset", metavar="WHAT",
                       help="ped2 or ped1 (UCSD Ped2 / Ped1, both in the same archive), or "
                            "yolox-nano (the reasoning describer's detector)")
    fetch.add_argument("--to", type=Path, metavar="DIR", help="dataset folder to write (default: CACHE/DATASET)")
    config_flag(fetch, "--cache", key="data.cache_dir", metavar="DIR",
                help="folder that keeps the downloaded archive")
    config_flag(fetch, "--url", key="data.ucsd_url", help="archive URL")
    add_config_args(fetch)
    fetch.add_argument("--force", action="store_true",
                       help="convert again even if --to already holds a conversion")
    fetch.add_argument("--no-progress", action="store_true")
    fetch.set_defaults(func=run_fetch)


def run_fetch(args: argparse.Namespace) -> int:
    from vad.data.ucsd import SUBSETS, fetch_ucsd
    from vad.errors import VadError

    data = config_from_args(args).data
    cache = Path(data.cache_dir).expanduser()
    if args.dataset == "yolox-nano":
        from vad.data.models import fetch_yolox

        target = args.to or cache / "models" / "yolox_nano.onnx"
        digest = fetch_yolox(data.yolox_url, target, progress=not args.no_progress)
        print(f"yolox-nano: {target} (sha256 {digest}); use it with "
              f"--set reasoning.describer.model_path={target}")
        return 0
    if args.dataset not in SUBSETS:
        raise VadError(f"{args.dataset}: unknown dataset (known: "
                       f"{', '.join(sorted(SUBSETS))}, yolox-nano)")
    target = args.to or cache / args.dataset
    meta = fetch_ucsd(SUBSETS[args.dataset], target, cache, data.ucsd_url, force=args.force,
                      progress=not args.no_progress)
    train = sum(video["frames"] for video in meta["train"].values())
    test = sum(video["frames"] for video in meta["test"].values())
    print(f"{args.dataset}: {target} ({len(meta['train'])} train / {len(meta['test'])} test "
          f"videos, {train:,} / {test:,} frames; archive sha256 {meta['archive_sha256']})")
    return 0
