"""`vad features VIDEOS_OR_LIST... --encoder clip:ID_OR_DIR --out DIR`: snippet embeddings.

Writes DIR/NAME.npy, a (snippets, dim) float32 array per video (one row per 16-frame snippet:
the mean of its frames' embeddings), and DIR/features.json. Inputs are videos, frame folders,
folders of videos, or lists: a .txt with one path per line, or a VadCLIP list CSV (path,label)
whose paths are videos. Batched, on the GPU when there is one, resumable (videos already in
DIR are skipped)."""

from __future__ import annotations

import argparse
from pathlib import Path

from vad.commands.common import add_config_args, config_flag, config_from_args


def register(subparsers) -> None:
    parser = subparsers.add_parser("features", help="write snippet embeddings of videos (VadCLIP "
                                                    "input)", description=__doc__)
    parser.add_argument("inputs", nargs="+", metavar="VIDEOS_OR_LIST",
                        help="videos, frame folders, folders of videos, .txt or .csv lists")
    config_flag(parser, "--encoder", key="features.encoder",
                help="clip:HF_ID_OR_DIR (local files only) or motion:CHECKPOINT_DIR (not CLIP)")
    config_flag(parser, "--frames-per-snippet", key="features.frames_per_snippet", type=int,
                help="frames of each snippet that are embedded and averaged")
    config_flag(parser, "--batch", key="features.encoder_batch", type=int,
                help="frames per encoder call")
    parser.add_argument("--out", required=True, type=Path, help="folder of the .npy files")
    add_config_args(parser)
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run)


def _inputs(items: list[str]) -> list[str]:
    """Lists replaced by the paths they hold."""
    from vad.data.video_lists import read_video_list
    from vad.errors import VadError

    expanded = []
    for item in items:
        path = Path(item)
        if path.suffix.lower() == ".csv":
            expanded += [str(video.path) for video in read_video_list(path)]
        elif path.suffix.lower() == ".txt":
            try:
                lines = [line.strip() for line in path.read_text().splitlines()]
            except (OSError, UnicodeDecodeError) as exc:
                raise VadError(f"{path}: cannot read the list ({exc})") from None
            expanded += [line if Path(line).is_absolute() else str(path.parent / line)
                         for line in lines if line]
        else:
            expanded.append(item)
    return expanded


def run(args: argparse.Namespace) -> int:
    import torch

    from models.base import resolve_device
    from models.vadclip.features import write_features
    from vad.commands.common import expand_sources

    config = config_from_args(args)
    sources = expand_sources(_inputs(args.inputs))
    meta = write_features(sources, config.features, args.out,
                          torch.device(resolve_device(config.device)),
                          progress=not args.no_progress)
    print(f"{len(meta['videos'])} video(s), {meta.get('dim', '?')}-d snippet features: {args.out}")
    return 0
