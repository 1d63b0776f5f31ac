"""A strong-perspective scene made from UCSD Ped2: every frame warped by one homography.

    python benchmarks/perspective_scene.py [--ped2 ../shared/data/ped2] [--out runs/ped2-perspective]
    vad fit runs/ped2-perspective/train --scorer motion --out runs/motion-persp
    vad eval runs/ped2-perspective --scorer motion --checkpoint runs/motion-persp

The frame's rectangle is mapped onto a trapezoid whose top edge is `--top` (0.25) of the
bottom's width, as a camera looking down a walkway sees the ground: people at the top are
about 4x smaller (a few pixels tall) and 4x slower in pixels than at the bottom, the rows
foreshortened as well. The same homography warps the train and test videos (a fixed camera);
the frame labels are Ped2's. The output has the layout `vad eval` reads (train/, test/,
test_labels.csv; no pixel masks).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from streams.sources import VideoFileSource  # noqa: E402
from vad.data.ucsd import write_h264  # noqa: E402


def homography(size: tuple[int, int], top: float) -> np.ndarray:
    """The rectangle (height, width) onto a centred trapezoid with a top edge `top` wide."""
    height, width = size
    inset = width * (1 - top) / 2
    corners = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
    trapezoid = np.float32([[inset, 0], [width - inset, 0], [width, height], [0, height]])
    return cv2.getPerspectiveTransform(corners, trapezoid)


def warp_video(source: Path, target: Path, top: float) -> int:
    frames = [frame.image for frame in VideoFileSource(source)]
    size = frames[0].shape[:2]
    matrix = homography(size, top)
    warped = (cv2.warpPerspective(image, matrix, size[::-1], flags=cv2.INTER_AREA)
              for image in frames)
    return write_h264(target, warped, 10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ped2", type=Path, default=REPO.parent / "shared" / "data" / "ped2")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "ped2-perspective")
    parser.add_argument("--top", type=float, default=0.25,
                        help="width of the far (top) edge over the near (bottom) edge")
    args = parser.parse_args()
    if not 0 < args.top <= 1:
        sys.exit(f"error: --top: must be in (0, 1], got {args.top}")
    for split in ("train", "test"):
        videos = sorted((args.ped2 / split).glob("*.mp4"))
        if not videos:
            sys.exit(f"error: {args.ped2 / split}: no Ped2 videos")
        (args.out / split).mkdir(parents=True, exist_ok=True)
        for video in videos:
            warp_video(video, args.out / split / video.name, args.top)
    shutil.copy(args.ped2 / "test_labels.csv", args.out / "test_labels.csv")
    print(f"wrote {args.out} (top edge {args.top:g} of the bottom's width)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
