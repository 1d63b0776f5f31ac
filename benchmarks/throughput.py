"""Throughput of any registered scorer on a Ped2 test video: decode, preprocess and score fps.

    python benchmarks/throughput.py --scorer ct-d2gan --checkpoint checkpoints/ct-d2gan-ped2
    python benchmarks/throughput.py --scorer motion --checkpoint checkpoints/motion-ped2 \
        --threads 1 --size 720x1280   # the video upscaled to a 1280x720 camera's (made once)

The video is decoded once (timed), cut into the scorer's clips (timed: colour conversion and
resizing), then the clips are scored after a warm-up of a few clips, which leaves out one-off
costs (lazy initialisation, memory allocation). The last line, `fps=<n>`, is the end-to-end
steady-state rate: frames per second of decode + preprocess + score run one after the other.
The same is measured first for a baseline scorer (`frame-diff`, untrained: same speed) on the
same video in the same run, and `ratio=` (fps over the baseline's) printed before `fps=`: on a
shared machine the absolute figures move with the load, the ratio much less.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from models import get_scorer, list_scorers, load_scorer
from models.scoring import DEFAULT_BATCH, iter_clips
from streams.sources import open_source
from vad.errors import VadError

DEFAULT_VIDEO = REPO.parent / "shared" / "data" / "ped2" / "test" / "04.mp4"
WARMUP_CLIPS = 3
BASELINE = "frame-diff"
TINT = np.array([1.0, 0.93, 0.86], np.float32)  # B, G, R gains: a colour camera's image


def upscaled_video(video: Path, size: tuple[int, int], work: Path) -> Path:
    """`video` resized to (height, width), tinted into colour, as an H.264 file made once in
    `work`: what a camera of that size sends, so that decoding it is timed too."""
    from streams.sources import VideoFileSource
    from vad.data.ucsd import write_h264

    target = work / f"{video.stem}-{size[1]}x{size[0]}.mp4"
    if not target.is_file():
        work.mkdir(parents=True, exist_ok=True)
        frames = (camera_image(frame.image, size) for frame in VideoFileSource(video))
        part = target.with_suffix(".part.mp4")
        write_h264(part, frames, 10)
        part.rename(target)
    return target


def camera_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    big = cv2.resize(image, size[::-1], interpolation=cv2.INTER_LINEAR).astype(np.float32)
    return np.clip(big * TINT, 0, 255).astype(np.uint8)


def parse_size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH, got {text!r}") from None
    if height < 16 or width < 16:
        raise argparse.ArgumentTypeError(f"size {text} is too small")
    return height, width


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scorer", required=True, help=f"one of {', '.join(list_scorers())}")
    parser.add_argument("--checkpoint", type=Path, help="checkpoint directory (default: the "
                        "scorer's untrained default config, same speed for neural scorers)")
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH,
                        help="frames scored per call after the scorer's context")
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    parser.add_argument("--passes", type=int, default=2, help="timed passes over the clips")
    parser.add_argument("--threads", type=int, help="torch and OpenCV threads (default: "
                        "theirs; 1 measures one core, and on a loaded machine 1 can be much "
                        "faster than several)")
    parser.add_argument("--size", type=parse_size, metavar="HxW", help="upscale the video to "
                        "this camera size first (a file made once under runs/throughput)")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="a scorer setting that the checkpoint does not fix (e.g. "
                        "score_every=2); repeatable")
    parser.add_argument("--baseline", default=BASELINE, help="scorer measured first for the "
                        "ratio ('none': skip)")
    return parser.parse_args(argv)


def scorer_params(name: str, pairs: list[str]):
    """`--param KEY=VALUE`s as the scorer's settings (values read as YAML: 2, [128, 192])."""
    import yaml

    from vad.config import params_model, validated

    values = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise VadError(f"--param {pair!r}: expected KEY=VALUE")
        values[key] = yaml.safe_load(value)
    return validated(params_model(name), values, "--param") if values else None


def measure(scorer, args: argparse.Namespace) -> dict[str, float]:
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
        cv2.setNumThreads(args.threads)
    try:
        params = scorer_params(args.scorer, args.param)
        scorer = (load_scorer(args.checkpoint, params) if args.checkpoint
                  else get_scorer(args.scorer, params))
        if scorer.name != args.scorer:
            raise VadError(f"{args.checkpoint}: holds a {scorer.name!r} scorer, "
                           f"not {args.scorer!r}")
        if args.size:
            args.video = upscaled_video(args.video, args.size, REPO / "runs" / "throughput")
        baseline = None if args.baseline == "none" else measure(get_scorer(args.baseline), args)
        result = measure(scorer, args)
    except VadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"scorer={args.scorer} checkpoint={args.checkpoint or '-'} video={args.video.name} "
          f"frames={result['frames']} batch={args.batch} torch_threads={torch.get_num_threads()} "
          f"opencv_threads={cv2.getNumThreads()} load_average={os.getloadavg()[0]:.1f}")
    if baseline is not None:
        print(f"baseline={args.baseline} baseline_fps={baseline['fps']:.1f} "
              f"baseline_score_fps={baseline['score_fps']:.1f}")
    print(f"decode_fps={result['decode_fps']:.1f}")
    print(f"preprocess_fps={result['preprocess_fps']:.1f}")
    print(f"score_fps={result['score_fps']:.1f}")
    # Frames per CPU-second of this process: what the scorer costs, whatever else runs.
    print(f"score_cpu_fps={result['score_cpu_fps']:.1f}")
    if baseline is not None:
        print(f"ratio={result['fps'] / baseline['fps']:.3f}")
    print(f"fps={result['fps']:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
