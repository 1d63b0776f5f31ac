"""Throughput of any registered scorer on a Ped2 test video: decode, preprocess and score fps.

    python benchmarks/throughput.py --scorer ct-d2gan --checkpoint checkpoints/ct-d2gan-ped2

The video is decoded once (timed), cut into the scorer's clips (timed: colour conversion and
resizing), then the clips are scored after a warm-up of a few clips, which leaves out one-off
costs (lazy initialisation, memory allocation). The last line, `fps=<n>`, is the end-to-end
steady-state rate: frames per second of decode + preprocess + score run one after the other.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from models import get_scorer, list_scorers, load_scorer
from models.scoring import DEFAULT_BATCH, iter_clips
from streams.sources import open_source
from vad.errors import VadError

DEFAULT_VIDEO = REPO.parent / "shared" / "data" / "ped2" / "test" / "04.mp4"
WARMUP_CLIPS = 3


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scorer", required=True, help=f"one of {', '.join(list_scorers())}")
    parser.add_argument("--checkpoint", type=Path, help="checkpoint directory (default: the "
                        "scorer's untrained default config, same speed for neural scorers)")
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH,
                        help="frames scored per call after the scorer's context")
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    parser.add_argument("--passes", type=int, default=2, help="timed passes over the clips")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's; "
                        "on a loaded machine 1 can be much faster than several)")
    return parser.parse_args(argv)


def measure(args: argparse.Namespace) -> dict[str, float]:
    scorer = load_scorer(args.checkpoint) if args.checkpoint else get_scorer(args.scorer)
    if scorer.name != args.scorer:
        raise VadError(f"{args.checkpoint}: holds a {scorer.name!r} scorer, not {args.scorer!r}")
    start = time.perf_counter()
    frames = list(open_source(args.video))
    decode_s = time.perf_counter() - start
    start = time.perf_counter()
    clips = list(iter_clips(scorer, frames, args.batch))
    preprocess_s = time.perf_counter() - start
    if len(clips) <= WARMUP_CLIPS:
        raise VadError(f"{args.video}: too short to benchmark ({len(frames)} frames)")
    # Scored through a camera session, as the pipeline does (a scorer may cache between clips).
    session = scorer.session("benchmark", args.batch)
    for clip in clips[:WARMUP_CLIPS]:
        session.score(clip)
    timed = clips[WARMUP_CLIPS:] * args.passes
    start, start_cpu = time.perf_counter(), time.process_time()
    for clip in timed:
        session.score(clip)
    score_s = time.perf_counter() - start
    score_cpu_s = time.process_time() - start_cpu
    scored = sum(len(clip.target_indices) for clip in timed)
    per_frame = decode_s / len(frames) + preprocess_s / len(frames) + score_s / scored
    return {"frames": len(frames), "decode_fps": len(frames) / decode_s,
            "preprocess_fps": len(frames) / preprocess_s, "score_fps": scored / score_s,
            "score_cpu_fps": scored / score_cpu_s,
            "fps": 1.0 / per_frame}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        result = measure(args)
    except VadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"scorer={args.scorer} checkpoint={args.checkpoint or '-'} video={args.video.name} "
          f"frames={result['frames']} batch={args.batch} torch_threads={torch.get_num_threads()}")
    print(f"decode_fps={result['decode_fps']:.1f}")
    print(f"preprocess_fps={result['preprocess_fps']:.1f}")
    print(f"score_fps={result['score_fps']:.1f}")
    # Frames per CPU-second of this process: what the scorer costs, whatever else runs.
    print(f"score_cpu_fps={result['score_cpu_fps']:.1f}")
    print(f"fps={result['fps']:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
