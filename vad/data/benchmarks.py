"""Benchmark datasets on disk, in two layouts.

- The shared layout: `train/*.mp4`, `test/*.mp4`, `test_labels.csv` (video,frame,label),
  optional `test_masks/NN.npz` (`masks`: frames x H x W, 1 = anomalous pixel).
- The official UCSD layout: `Train/TrainNNN/*.tif`, `Test/TestNNN/*.tif`, optional
  `Test/TestNNN_gt/*.bmp` pixel masks, and `Test/UCSDpedN.m` with
  `TestVideoFile{end+1}.gt_frame = [a:b];` (read by `vad.data.ucsd`).
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streams.sources import FolderSource, Source, VideoFileSource
from vad.data.training import NORMAL, TrainingSet, TrainingVideo
from vad.data.ucsd import find_gt_file, read_mask_folder, read_official_layout
from vad.errors import VadError

VIDEO_GLOB = "*.mp4"


@dataclass
class TestVideo:
    name: str
    open: Callable[[], Source]
    labels: np.ndarray  # (frames,) 0/1
    load_masks: Callable[[], np.ndarray] | None = None  # (frames, H, W) 0/1


@dataclass
class Benchmark:
    root: Path
    train: TrainingSet  # normal videos
    test: list[TestVideo]


def load_benchmark(root: str | Path) -> Benchmark:
    root = Path(root)
    if not root.is_dir():
        raise VadError(f"{root}: no such dataset folder")
    if (root / "test_labels.csv").is_file():
        return _load_shared_layout(root)
    if (root / "Test").is_dir() and find_gt_file(root):
        return _load_ucsd_layout(root)
    raise VadError(f"{root}: not a benchmark folder (expected test/*.mp4 + test_labels.csv, "
                   "or the official UCSD Test/TestNNN + Test/UCSDpedN.m layout)")


def read_frame_labels(path: str | Path) -> dict[str, np.ndarray]:
    """`video,frame,label` rows (frame 0-based) -> per-video 0/1 label arrays."""
    path = Path(path)
    rows: dict[str, dict[int, int]] = {}
    try:
        with path.open(newline="") as handle:
            for row in csv.DictReader(handle):
                rows.setdefault(row["video"], {})[int(row["frame"])] = int(row["label"])
    except OSError as exc:
        raise VadError(f"{path}: cannot read labels ({exc.strerror})") from None
    except (KeyError, ValueError, TypeError):
        raise VadError(f"{path}: expected a CSV with integer columns video,frame,label") from None
    labels = {}
    for video, frames in rows.items():
        if sorted(frames) != list(range(len(frames))):
            raise VadError(f"{path}: video {video} frames are not 0..{len(frames) - 1}")
        labels[video] = np.array([frames[i] for i in range(len(frames))], dtype=np.int64)
    return labels


def _load_shared_layout(root: Path) -> Benchmark:
    labels = read_frame_labels(root / "test_labels.csv")
    test = []
    for name in sorted(labels):
        path = root / "test" / f"{name}.mp4"
        if not path.is_file():
            raise VadError(f"{path}: labelled in test_labels.csv but missing")
        mask_path = root / "test_masks" / f"{name}.npz"
        test.append(TestVideo(
            name, lambda p=path, n=name: VideoFileSource(p, camera_id=n),
            labels[name],
            (lambda p=mask_path, n=len(labels[name]): read_masks(p, n))
            if mask_path.is_file() else None))
    train = [TrainingVideo(p.stem, lambda p=p: VideoFileSource(p), NORMAL)
             for p in sorted((root / "train").glob(VIDEO_GLOB))]
    return Benchmark(root, TrainingSet(tuple(train)), test)


def read_masks(path: Path, frames: int) -> np.ndarray:
    """The `masks` array of an .npz (frames x H x W, nonzero = anomalous pixel), one mask per
    labelled frame; nothing is unpickled."""
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as archive:
            masks = archive["masks"]
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise VadError(f"{path}: not a readable .npz of masks ({exc})") from None
    except KeyError:
        raise VadError(f"{path}: no 'masks' array in the archive") from None
    if masks.ndim != 3 or len(masks) != frames or masks.dtype.kind not in "biuf":
        raise VadError(f"{path}: masks are {masks.dtype} {masks.shape}, expected {frames} "
                       "frames x height x width of numbers")
    return masks


def _load_ucsd_layout(root: Path) -> Benchmark:
    layout = read_official_layout(root)
    test = [TestVideo(video.folder.name, lambda f=video.folder: FolderSource(f), video.labels,
                      (lambda g=video.gt_dir: read_mask_folder(g)) if video.gt_dir else None)
            for video in layout.test]
    train = [TrainingVideo(f.name, lambda f=f: FolderSource(f), NORMAL) for f in layout.train]
    return Benchmark(root, TrainingSet(tuple(train)), test)
